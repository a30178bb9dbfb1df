//! The ptrace tracer both backends run guest code with: register and FPU
//! transfer, `waitpid` decoding into a [`Trap`], the `SIGSEGV` detour that
//! learns a fault's access kind, timer kicks. What the traced process is —
//! a skas stub (`hal-uml-x86_64`'s `ptrace`) or a tt guest host process
//! sharing the kernel's address space (`hal-uml-tt`) — is the backend's.
//!
//! Guest code only ever runs under `PTRACE_SYSEMU`, so every `syscall` it
//! executes stops the tracee before the host runs it, and the host never
//! executes it. Tracee code runs with `PTRACE_CONT` only when the tracer has
//! itself pointed `rip` at it ([`Tracer::run_routine`]).

use crate::timer::{TimerShared, TIMER_SIGNAL};
use hal::{CpuFaultKind, Trap, UserContext, UserRegs};
use std::io;

const _: () = assert!(std::mem::size_of::<UserRegs>() == std::mem::size_of::<libc::user_regs_struct>());

/// `si_code`s of an integer divide error and overflow (asm-generic/siginfo.h).
const FPE_INTDIV: i32 = 1;
const FPE_INTOVF: i32 = 2;

/// How a tracee stopped or ended, from `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Killed(i32),
    /// Stop signal (with 0x80 for a syscall stop) and ptrace event.
    Stopped(i32, i32),
}

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stubs created.
    pub stubs: u64,
    /// Round trips into a stub to apply queued map operations.
    pub map_batches: u64,
    /// Map operations applied (after merging).
    pub map_ops: u64,
    /// Round trips into a stub's `SIGSEGV` handler to learn a fault's access kind.
    pub fault_round_trips: u64,
    /// Seccomp: times the kernel slept waiting for a stub (its spin ran out).
    pub kernel_sleeps: u64,
    /// Seccomp: times the kernel had to wake a sleeping stub.
    pub stub_wakeups: u64,
}

/// One stub process (skas) or guest host process (tt), traced by the kernel
/// thread. Dropping it kills and reaps the process.
#[derive(Debug)]
pub struct Tracee {
    pid: i32,
    /// Registers of the tracee at its entry stop: valid segment selectors and
    /// flags for running guest code and tracee routines.
    template: UserRegs,
    /// `Some(signal)` once the process is gone (and reaped).
    dead: Option<Option<u32>>,
    /// The FPU state the tracee holds now, if known: `PTRACE_SETREGSET` is
    /// skipped when the context to run carries exactly this state.
    fpu: crate::xstate::Held,
}

impl Tracee {
    /// A traced child `pid` of the calling thread, stopped now: its current
    /// registers become the template (segment selectors, flags) for running
    /// guest code in it.
    pub fn new_stopped(pid: i32) -> io::Result<Tracee> {
        let mut t = Tracee::unstarted(pid);
        let r = t.set_options().and_then(|_| get_regs(pid, &mut t.template));
        match r {
            Ok(()) => Ok(t),
            Err(e) => {
                t.kill();
                Err(e)
            }
        }
    }

    /// A traced child `pid` of the calling thread, not set up yet: the
    /// caller sets its options ([`Tracee::set_options`]) and its register
    /// template ([`Tracee::set_template`]) once it has stopped. Dropping it
    /// kills and reaps it already.
    pub fn unstarted(pid: i32) -> Tracee {
        Tracee { pid, template: UserRegs::default(), dead: None, fpu: Default::default() }
    }

    /// Kill the tracee when the tracer goes, and mark system-call stops.
    pub fn set_options(&self) -> io::Result<()> {
        let opts = libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD;
        ptrace(libc::PTRACE_SETOPTIONS, self.pid, 0, opts as u64)
    }

    /// The registers guest code and routines start from (selectors, flags).
    #[inline]
    pub fn template(&self) -> &UserRegs {
        &self.template
    }

    /// Set the register template (the registers at the tracee's entry stop).
    pub fn set_template(&mut self, regs: UserRegs) {
        self.template = regs;
    }

    /// The [`Trap::Lost`] to report if the process is gone already.
    #[inline]
    pub fn gone(&self) -> Option<Trap> {
        self.dead.map(|signal| Trap::Lost { signal })
    }

    /// The host pid.
    #[inline]
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process is gone (it was reaped).
    #[inline]
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Kill it (if alive) and return the [`Trap::Lost`] to report.
    pub fn lost(&mut self, signal: Option<u32>) -> Trap {
        self.kill();
        if self.dead.is_none() {
            self.dead = Some(signal);
        }
        Trap::Lost { signal: self.dead.flatten() }
    }

    /// Kill and reap the process (no-op once it is gone).
    pub fn kill(&mut self) {
        if self.dead.is_some() {
            return;
        }
        let _ = crate::sys::kill(self.pid, libc::SIGKILL);
        loop {
            match wait(self.pid) {
                Ok(Wait::Exited(_)) | Ok(Wait::Killed(_)) | Err(_) => break,
                Ok(Wait::Stopped(..)) => continue,
            }
        }
        self.dead = Some(Some(libc::SIGKILL as u32));
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs guest code in [`Tracee`]s: the part of the mechanism shared by skas
/// and tt. Must be used from the thread that created the tracees.
#[derive(Debug, Default)]
pub struct Tracer {
    /// Counters.
    pub stats: Stats,
    /// Scratch buffer for a whole host XSAVE area, where the host's is
    /// larger than the guests' (see [`set_xstate`]).
    xstate: Vec<u8>,
}

/// Wait for child `pid` (traced, or about to be) to stop; its stop signal,
/// or `None` if it exited, was killed, or is not our child.
pub fn wait_for_stop(pid: i32) -> Option<i32> {
    match wait(pid) {
        Ok(Wait::Stopped(s, _)) => Some(s),
        _ => None,
    }
}

/// `waitpid(pid, __WALL)`, decoded; retries on `EINTR`.
pub fn wait(pid: i32) -> io::Result<Wait> {
    let mut st = 0;
    loop {
        // SAFETY: `st` is a valid out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(st) {
        Wait::Exited(libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Wait::Killed(libc::WTERMSIG(st))
    } else {
        Wait::Stopped(libc::WSTOPSIG(st), st >> 16)
    })
}

/// One ptrace request on `pid`.
pub fn ptrace(req: libc::c_uint, pid: i32, addr: u64, data: u64) -> io::Result<()> {
    // SAFETY: requests used here take integer arguments or point `data` at a buffer of the size the request needs (checked by the callers).
    let r = unsafe { libc::ptrace(req, pid, addr as *mut libc::c_void, data as *mut libc::c_void) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `PTRACE_GETREGS`.
pub fn get_regs(pid: i32, regs: &mut UserRegs) -> io::Result<()> {
    ptrace(libc::PTRACE_GETREGS, pid, 0, regs as *mut UserRegs as u64)
}
/// `PTRACE_SETREGS`.
pub fn set_regs(pid: i32, regs: &UserRegs) -> io::Result<()> {
    ptrace(libc::PTRACE_SETREGS, pid, 0, regs as *const UserRegs as u64)
}
fn get_siginfo(pid: i32) -> io::Result<libc::siginfo_t> {
    // SAFETY: all-zero is a valid siginfo_t.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si as *mut libc::siginfo_t as u64)?;
    Ok(si)
}
/// `NT_X86_XSTATE`: the full XSAVE area of a tracee.
const NT_X86_XSTATE: u64 = 0x202;

/// The size of the host's `NT_X86_XSTATE` regset: every user component the
/// host kernel supports, dynamic ones (AMX) included, so it may exceed the
/// guests' layout. `PTRACE_SETREGSET` takes exactly this many bytes.
fn regset_size(pid: i32) -> io::Result<usize> {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(n) = SIZE.get() {
        return Ok(*n);
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    ptrace(libc::PTRACE_GETREGSET, pid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as u64)?;
    Ok(*SIZE.get_or_init(|| iov.iov_len))
}

/// Read the tracee's extended state into `fpu` (the guests' layout: a
/// prefix of the host's area).
fn get_xstate(pid: i32, fpu: &mut hal::FpuState) -> io::Result<()> {
    let n = crate::xstate::layout().size;
    let mut iov = libc::iovec { iov_base: fpu.0.as_mut_ptr().cast(), iov_len: n };
    ptrace(libc::PTRACE_GETREGSET, pid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as u64)?;
    // The software-reserved bytes describe the host's regset, not the guest.
    fpu.0[hal::context::XSAVE_SW_BYTES..hal::context::XSAVE_HEADER].fill(0);
    Ok(())
}

/// Load `fpu` into the tracee. The host wants its whole area: components
/// beyond the guests' layout stay in their initial state (their
/// `xstate_bv` bits are clear), through the zeroed tail of `scratch`.
fn set_xstate(pid: i32, fpu: &hal::FpuState, scratch: &mut Vec<u8>) -> io::Result<()> {
    let n = crate::xstate::layout().size;
    let host = regset_size(pid)?;
    let mut iov = if host == n {
        libc::iovec { iov_base: fpu.0.as_ptr() as *mut libc::c_void, iov_len: n }
    } else {
        scratch.clear();
        scratch.resize(host.max(n), 0);
        scratch[..n].copy_from_slice(&fpu.0[..n]);
        libc::iovec { iov_base: scratch.as_mut_ptr().cast(), iov_len: host }
    };
    ptrace(libc::PTRACE_SETREGSET, pid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as u64)
}

fn si_addr(si: &libc::siginfo_t) -> u64 {
    // SAFETY: called only for fault signals, whose siginfo carries si_addr.
    unsafe { si.si_addr() as u64 }
}

impl Tracer {
    /// Resume a stub stopped in a stub routine until its next `int3` stop at
    /// `done`, absorbing host signals. Returns its registers there.
    pub fn run_routine(&mut self, stub: &mut Tracee, inject: i32, done: u64) -> Result<UserRegs, Trap> {
        let mut sig = inject;
        loop {
            if ptrace(libc::PTRACE_CONT, stub.pid, 0, sig as u64).is_err() {
                return Err(stub.lost(None));
            }
            sig = 0;
            match wait(stub.pid) {
                Ok(Wait::Stopped(libc::SIGTRAP, 0)) => {
                    let mut r = UserRegs::default();
                    if get_regs(stub.pid, &mut r).is_err() || r.rip != done {
                        return Err(stub.lost(None));
                    }
                    return Ok(r);
                }
                Ok(Wait::Stopped(s, 0)) => {
                    // A host signal (a timer kick, or sent from outside):
                    // suppress it. A fault inside the routine is fatal.
                    match get_siginfo(stub.pid) {
                        Ok(si) if si.si_code <= 0 || s == TIMER_SIGNAL => continue,
                        _ => return Err(stub.lost(Some(s as u32))),
                    }
                }
                Ok(Wait::Stopped(..)) => continue,
                // Already reaped: record, never signal the pid again.
                Ok(Wait::Exited(_)) => {
                    stub.dead = Some(None);
                    return Err(Trap::Lost { signal: None });
                }
                Ok(Wait::Killed(s)) => {
                    stub.dead = Some(Some(s as u32));
                    return Err(Trap::Lost { signal: Some(s as u32) });
                }
                Err(_) => return Err(stub.lost(None)),
            }
        }
    }

    /// A `SIGSEGV` stop of guest code: deliver the signal to the tracee's
    /// handler at `segv` (which ends in `int3` at `segv_done` with the fault's
    /// error code in `rbx` and trap number in `rcx`) and decode the access.
    fn fault(&mut self, stub: &mut Tracee, ctx: &UserContext, si: &libc::siginfo_t, done: u64) -> Trap {
        let addr = si_addr(si);
        if si.si_code == libc::SI_KERNEL {
            // #GP (non-canonical address, privileged instruction): no address.
            return Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: ctx.regs.rip };
        }
        self.stats.fault_round_trips += 1;
        // Signal delivery gives the handler a fresh FPU state: the stub no
        // longer holds the guest's (`ctx` does; the next run loads it).
        stub.fpu.forget();
        let r = match self.run_routine(stub, libc::SIGSEGV, done) {
            Ok(r) => r,
            Err(t) => return t,
        };
        // rbx/rcx were copied by the stub from its signal frame: checked, not
        // trusted. The address comes from the host's own siginfo.
        let (err, trapno) = (r.rbx, r.rcx);
        match trapno {
            14 => {
                Trap::PageFault { addr, access: crate::fault_access(err) }
            }
            _ => Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: ctx.regs.rip },
        }
    }

    /// Run `ctx` in `stub` under `PTRACE_SYSEMU` until the next trap, with
    /// the timer kicking it; `segv_done` is where the tracee's `SIGSEGV`
    /// handler stops (see [`Tracer::run_routine`]).
    pub fn run_guest(&mut self, stub: &mut Tracee, ctx: &mut UserContext, timer: &TimerShared, segv_done: u64) -> Trap {
        if stub.dead.is_some() {
            return Trap::Lost { signal: stub.dead.flatten() };
        }
        let pid = stub.pid;
        let mut regs = ctx.regs;
        // The guest cannot choose segments: user code and data selectors,
        // no TLS selectors (fs_base/gs_base carry TLS).
        regs.cs = stub.template.cs;
        regs.ss = stub.template.ss;
        regs.ds = stub.template.ds;
        regs.es = stub.template.es;
        regs.fs = stub.template.fs;
        regs.gs = stub.template.gs;
        // Not in a system call: keeps the host from restarting anything.
        regs.orig_rax = u64::MAX;
        let fpu_current = stub.fpu.is(&ctx.fpu);
        stub.fpu.forget();
        let loaded = set_regs(pid, &regs).and_then(|_| if fpu_current { Ok(()) } else { set_xstate(pid, &ctx.fpu, &mut self.xstate) });
        if let Err(e) = loaded {
            if e.raw_os_error() == Some(libc::ESRCH) {
                // Killed on the host while stopped: collect its status.
                return match wait(pid) {
                    Ok(Wait::Killed(s)) => {
                        stub.dead = Some(Some(s as u32));
                        Trap::Lost { signal: Some(s as u32) }
                    }
                    _ => stub.lost(None),
                };
            }
            // E.g. a non-canonical fs_base, or reserved MXCSR bits.
            return Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: ctx.regs.rip };
        }
        loop {
            timer.set_current(pid);
            let irq = crate::host::take_interrupts(timer);
            if !irq.is_empty() {
                timer.set_current(0);
                return Trap::Interrupt(irq);
            }
            let resumed = ptrace(libc::PTRACE_SYSEMU, pid, 0, 0);
            let w = wait(pid);
            timer.set_current(0);
            if resumed.is_err() {
                return stub.lost(None);
            }
            let (sig, event) = match w {
                Ok(Wait::Stopped(s, e)) => (s, e),
                Ok(Wait::Exited(_)) | Err(_) => {
                    stub.dead = Some(None);
                    return Trap::Lost { signal: None };
                }
                Ok(Wait::Killed(s)) => {
                    stub.dead = Some(Some(s as u32));
                    return Trap::Lost { signal: Some(s as u32) };
                }
            };
            if event != 0 {
                continue;
            }
            if get_regs(pid, &mut ctx.regs).is_err() || get_xstate(pid, &mut ctx.fpu).is_err() {
                return stub.lost(None);
            }
            stub.fpu.set(&ctx.fpu);
            if sig == libc::SIGTRAP | 0x80 {
                return Trap::Syscall;
            }
            let si = match get_siginfo(pid) {
                Ok(si) => si,
                Err(_) => return stub.lost(None),
            };
            if si.si_code <= 0 {
                // Sent by a process (our timer kick, or anyone on the host):
                // never delivered to the guest.
                continue;
            }
            let addr = si_addr(&si);
            let kind = match sig {
                libc::SIGSEGV => return self.fault(stub, ctx, &si, segv_done),
                libc::SIGTRAP => {
                    return Trap::CpuFault { kind: CpuFaultKind::Breakpoint, addr: ctx.regs.rip };
                }
                libc::SIGILL => CpuFaultKind::IllegalInstruction,
                libc::SIGFPE if si.si_code == FPE_INTDIV || si.si_code == FPE_INTOVF => {
                    CpuFaultKind::DivideError
                }
                libc::SIGFPE => CpuFaultKind::FloatingPoint,
                libc::SIGBUS => CpuFaultKind::BusError,
                // Kernel-generated but not a fault of the guest's (e.g.
                // SIGXCPU, SIGCHLD): suppress.
                _ => continue,
            };
            return Trap::CpuFault { kind, addr };
        }
    }
}

