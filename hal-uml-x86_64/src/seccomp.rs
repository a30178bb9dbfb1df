//! The seccomp trap mechanism: no ptrace on the hot path.
//!
//! A stub process ([`crate::stub`], entry `entry_sc`) has two threads:
//! - the **guest thread** runs guest code under a seccomp filter that
//!   returns `SECCOMP_RET_TRAP` for every system call made outside the
//!   stub's code. The resulting `SIGSYS` — and `SIGSEGV`, `SIGBUS`, `SIGILL`,
//!   `SIGFPE`, `SIGTRAP`, and `SIGALRM` (the timer kick) — run the stub's
//!   `trap` handler on its alternate stack. It copies the signal frame's
//!   registers, FPU area, fault data (error code and trap number straight
//!   from the frame: no second round trip for a page fault's access kind)
//!   and a time stamp into the **mailbox**, a page of a per-stub memfd shared
//!   with the kernel; hands the mailbox over (`state = KERNEL`, `FUTEX_WAKE`
//!   only if the kernel sleeps); spins up to the kernel's hint, then sleeps
//!   with `FUTEX_WAIT` (a shared futex: the word lives in a shared memfd);
//!   and, once answered, loads the (possibly changed) registers, FXSAVE
//!   registers and `fs`/`gs` bases into the frame and `rt_sigreturn`s.
//! - the **executor thread** has every signal blocked and runs under its own
//!   filter (the same one ptrace stubs get: `mmap` of the physical-memory fd
//!   only, `munmap`, `mprotect`, `futex`, `exit`). It applies the map
//!   operations the kernel publishes on the **control page**, which the stub
//!   maps read-only, under a sequence lock, then hands the mailbox to the
//!   guest thread. Queued map operations are therefore applied in the same
//!   round trip as the answer that resumes the guest.
//!
//! The kernel side ([`SeccompMechanism::run`]) writes the registers, flips
//! the state, and waits the same way: an adaptive spin, then `FUTEX_WAIT`.
//! The spin is adaptive on both sides and never outlasts
//! [`MAX_SPIN_NS`]: each side spins only while its recent waits for the
//! other (wake-up latency included) were short — a stub whose process is
//! not the next to run, or a guest that went idle, sleeps at once. Nothing
//! spins with [`crate::Placement::SameCpu`] (the default: kernel and stubs
//! on one CPU), and the kernel never spins in `wait_for_interrupt`.
//!
//! Preemption: the timer's signal handler kicks the running stub with
//! `SIGALRM` (as for ptrace); its handler traps like any other signal and
//! reports [`Trap::Interrupt`]. Kicks that arrive late are absorbed.
//!
//! # Security of the trap path
//! What a guest controls: every register, every byte of memory it can reach
//! — including the stub's data page, signal stack and the mailbox — and it
//! can jump to any byte of the stub's code. What it does not control: the
//! code page (read+execute), the control page and operation list (mapped
//! read-only; no system call it can make changes a mapping), and the
//! executor thread (it cannot run code on it; it only reads the control
//! page and keeps its state in registers, without a stack).
//!
//! - Host system calls the guest thread can make, by jumping into the stub
//!   with its own registers: `futex` (wait/wake only), `rt_sigreturn`,
//!   `sched_yield`, `arch_prctl(ARCH_SET_FS / ARCH_SET_GS)` and
//!   `exit_group`. Everything
//!   else from the stub's code kills the stub; everything from elsewhere
//!   traps. `mmap` of the physical-memory fd is impossible on this thread.
//! - The executor maps only what the control page says, checks that every
//!   range lies below the stub, reads each record under the sequence lock
//!   (so a record is never a mix of two the kernel wrote), and its filter
//!   allows `mmap` only of fd 3 with `MAP_SHARED | MAP_FIXED`.
//! - Everything the kernel reads from the mailbox is untrusted input: it is
//!   only copied into the guest's own [`UserContext`] or decoded into a
//!   [`Trap`]; no pointer is followed, no size is taken from it.
//! - Both filters and the namespaces/empty root of [`crate::spawn`] bound
//!   what even code that reaches a stub's `syscall` can do.
//!
//! Residual risks, honestly:
//! - A guest can forge a trap: write a fake frame into the mailbox, set
//!   `state` and wake the kernel while its own code keeps running. The
//!   kernel then handles a fake system call for that guest and considers it
//!   stopped while it runs. This only confuses the kernel's view of that
//!   guest's own threads (and its CPU accounting: it runs outside the
//!   kernel's time slice until its next trap); it cannot reach host calls,
//!   other guests' memory, or the kernel's memory.
//! - With a forged `rt_sigreturn` frame a guest can block signals on its own
//!   thread, including the timer kick: it then cannot be preempted. The
//!   kernel detects a kick that stays unanswered for [`KICK_GRACE`] and kills
//!   the stub (the guest sees `SIGKILL`); until then it is stuck waiting
//!   for that guest (so a malicious guest can stall the whole kernel for up
//!   to that long per time slice). Blocking `SIGSYS`/`SIGSEGV` just gets
//!   the stub killed by the host on its next trap.
//! - A guest can `FUTEX_WAKE` any futex word in its own space or the
//!   mailbox (spurious wake-ups, which every waiter re-checks), and
//!   `FUTEX_WAIT` itself (then a timer kick interrupts it).
//! - A guest can redirect its signal stack (forged `rt_sigreturn`): the
//!   trap handler then runs on guest memory. It follows no pointer there
//!   but the frame the host kernel wrote, and nothing else runs on that
//!   thread meanwhile, so this only lets it corrupt its own state.
//! - Spinning is bounded per trap by [`MAX_SPIN_NS`] on each side; the
//!   stub's spin budget is on the read-only control page. A guest can forge
//!   the time stamps the kernel's spin policy learns from (its own stub's
//!   budget, and the kernel's shared one — at worst the kernel spins up to
//!   [`MAX_SPIN_NS`] per trap, or never).
//! - A stub that dies is noticed by a 20 ms futex timeout plus
//!   `waitpid(WNOHANG)`, not instantly.
//! - A guest can wake the executor thread at will (spurious: it re-checks
//!   the sequence number on the read-only page and sleeps again).
//! - The `[vsyscall]` page cannot be unmapped; a guest call into it is
//!   checked by the host against the filter like any other call from
//!   outside the stub (it traps; not tested).

use crate::stub::{self, ctrl, mb, Layout, OPS_PER_BATCH};
use crate::timer::{TimerShared, TIMER_SIGNAL};
use crate::{Mechanism, Op, Stats};
use hal::{Access, CpuFaultKind, HalError, Trap, UserContext};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest either side spins before sleeping, per trap.
pub const MAX_SPIN_NS: u64 = 50_000;
/// How long a timer kick may stay unanswered before the stub is killed.
pub const KICK_GRACE: Duration = Duration::from_millis(500);
/// The futex timeout after which the kernel checks that the stub lives.
const POLL: Duration = Duration::from_millis(20);
const SYS_SECCOMP_CODE: i64 = 1;
const SI_KERNEL: i64 = 0x80;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

/// TSC ticks per microsecond (calibrated once against `CLOCK_MONOTONIC`).
fn tsc_per_us() -> u64 {
    static F: OnceLock<u64> = OnceLock::new();
    *F.get_or_init(|| {
        let t0 = Instant::now();
        let c0 = rdtsc();
        while t0.elapsed() < Duration::from_micros(300) {
            std::hint::spin_loop();
        }
        let c1 = rdtsc();
        let us = t0.elapsed().as_nanos() as u64 / 1000;
        ((c1 - c0) / us.max(1)).max(1)
    })
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Profile (env `SKAS_PROFILE`): TSC sums of resume→stub sees answer,
/// guest run, trap→kernel notices, for switches with and without map
/// operations, and their counts.
pub static PROF: OnceLock<[AtomicU64; 8]> = OnceLock::new();

fn profiling() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    *P.get_or_init(|| std::env::var_os("SKAS_PROFILE").is_some())
}

/// Whether the host offers `SECCOMP_RET_TRAP` (probed without installing anything).
pub fn available() -> bool {
    let action: u32 = crate::filter::RET_TRAP;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL (2) reads one u32 from a valid pointer.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 2, 0, &action as *const u32) };
    r == 0
}

fn host_has_fsgsbase() -> bool {
    // SAFETY: getauxval has no preconditions. HWCAP2_FSGSBASE is bit 1.
    unsafe { libc::getauxval(libc::AT_HWCAP2) & 2 != 0 }
}

fn futex(word: &AtomicU32, op: i32, val: u32, timeout: Option<Duration>) -> isize {
    let ts = timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as i64, tv_nsec: t.subsec_nanos() as i64 });
    let tp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 in a shared mapping; `tp` is null or a valid timespec.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, tp, 0usize, 0u32) as isize }
}

/// Adaptive spinning: an exponentially weighted mean of measured times,
/// and a budget derived from it.
#[derive(Clone, Copy, Debug, Default)]
struct Ewma {
    cycles: u64,
}

impl Ewma {
    fn add(&mut self, c: u64) {
        self.cycles = (self.cycles * 7 + c.min(1 << 40)) / 8;
    }
    /// Spin budget in TSC cycles: twice the mean plus slack, while the mean
    /// is below the maximum; nothing once it is above.
    fn budget(&self, max: u64) -> u64 {
        if self.cycles >= max {
            0
        } else {
            (self.cycles * 2 + max / 25).min(max)
        }
    }
}

/// One seccomp stub: the process, its shared memfd and what the kernel
/// knows of the state it holds. Dropping it kills and reaps the process.
pub struct SeccompStub {
    pid: i32,
    dead: Option<Option<u32>>,
    memfd: i32,
    map: *mut u8,
    /// Last sequence number published on the control page (even).
    seq: u32,
    /// Map operations to apply in the next switch.
    pending: Vec<Op>,
    /// FXSAVE state the stub holds now, if known.
    fpu: Option<hal::FpuState>,
    fs_base: Option<u64>,
    gs_base: Option<u64>,
    /// The kernel's handling times of this stub's traps.
    handling: Ewma,
    /// TSC when the kernel noticed the last trap.
    noticed: u64,
    /// The stub's time stamp of its last trap.
    last_trap_tsc: u64,
}

impl std::fmt::Debug for SeccompStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompStub").field("pid", &self.pid).field("dead", &self.dead).finish()
    }
}

impl SeccompStub {
    /// The host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn mb_u64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: the mailbox page is mapped for the life of `self`; `off` is an 8-aligned offset inside it (the `mb` constants).
        unsafe { &*(self.map.add(stub::COMM_MB_OFF as usize + off) as *const AtomicU64) }
    }
    fn mb_u32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as in `mb_u64`.
        unsafe { &*(self.map.add(stub::COMM_MB_OFF as usize + off) as *const AtomicU32) }
    }
    fn ctrl_u64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: the control page is mapped for the life of `self`; `off` is 8-aligned inside it.
        unsafe { &*(self.map.add(off) as *const AtomicU64) }
    }
    fn ctrl_u32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as in `ctrl_u64`.
        unsafe { &*(self.map.add(off) as *const AtomicU32) }
    }
    fn get(&self, off: usize) -> u64 {
        self.mb_u64(off).load(Ordering::Relaxed)
    }
    fn set(&self, off: usize, v: u64) {
        self.mb_u64(off).store(v, Ordering::Relaxed)
    }
    fn mb_bytes(&self, off: usize, len: usize) -> *mut u8 {
        assert!(off + len <= 4096);
        // SAFETY: inside the mailbox page (checked).
        unsafe { self.map.add(stub::COMM_MB_OFF as usize + off) }
    }

    /// Collect the process's status if it has ended.
    fn reap_if_dead(&mut self) -> Option<Trap> {
        if self.dead.is_some() {
            return Some(Trap::Lost { signal: self.dead.flatten() });
        }
        let mut st = 0;
        // SAFETY: `st` is a valid out-parameter; `pid` is our child.
        let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG | libc::__WALL) };
        if r == self.pid || r < 0 {
            let sig = if r == self.pid && libc::WIFSIGNALED(st) { Some(libc::WTERMSIG(st) as u32) } else { None };
            self.dead = Some(sig);
            return Some(Trap::Lost { signal: sig });
        }
        None
    }

    /// Kill it (if alive) and return the [`Trap::Lost`] to report.
    fn lost(&mut self, signal: Option<u32>) -> Trap {
        if self.dead.is_none() {
            self.kill();
            self.dead = Some(signal);
        }
        Trap::Lost { signal: self.dead.flatten() }
    }

    fn kill(&mut self) {
        if self.dead.is_some() {
            return;
        }
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut st = 0;
            while libc::waitpid(self.pid, &mut st, libc::__WALL) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        self.dead = Some(Some(libc::SIGKILL as u32));
    }

    /// Publish `ops` on the control page (sequence lock); wake the executor
    /// if `wake`.
    fn publish(&mut self, ops: &[Op], mode: u64, wake: bool) {
        self.ctrl_u32(ctrl::SEQ).store(self.seq.wrapping_add(1), Ordering::SeqCst);
        self.ctrl_u64(ctrl::COUNT).store(ops.len() as u64, Ordering::Relaxed);
        self.ctrl_u64(ctrl::MODE).store(mode, Ordering::Relaxed);
        let bytes = std::mem::size_of_val(ops);
        // SAFETY: the operation list follows the control page in our mapping and holds OPS_PER_BATCH records; callers pass at most that many.
        unsafe { std::ptr::copy_nonoverlapping(ops.as_ptr() as *const u8, self.map.add(4096), bytes) };
        self.seq = self.seq.wrapping_add(2);
        let seq = self.ctrl_u32(ctrl::SEQ);
        seq.store(self.seq, Ordering::SeqCst);
        if wake {
            futex(seq, libc::FUTEX_WAKE, i32::MAX as u32, None);
        }
    }

    fn wake_executor(&self) {
        futex(self.ctrl_u32(ctrl::SEQ), libc::FUTEX_WAKE, i32::MAX as u32, None);
    }
}

impl Drop for SeccompStub {
    fn drop(&mut self) {
        self.kill();
        // SAFETY: unmapping and closing what `spawn` created.
        unsafe {
            libc::munmap(self.map.cast(), stub::COMM_SIZE as usize);
            libc::close(self.memfd);
        }
    }
}

/// The seccomp mechanism.
pub struct SeccompMechanism {
    phys_fd: i32,
    image_fd: i32,
    layout: Layout,
    kernel_pid: i32,
    fsgsbase: bool,
    /// Spinning allowed at all (more than one CPU, not all pinned to one).
    spin: bool,
    /// The CPU stubs are pinned to, if any.
    stub_cpu: Option<usize>,
    max_spin: u64,
    /// The guests' run times between traps (stamped by the stubs).
    running: Ewma,
    /// Counters.
    pub stats: Stats,
}

fn canonical_user(v: u64) -> bool {
    v < 0x0000_8000_0000_0000
}

impl SeccompMechanism {
    /// Prepare the mechanism: write the stub image to a memfd. Called
    /// before the kernel thread pins itself (`placement`).
    pub fn new(phys_fd: i32, placement: crate::Placement) -> io::Result<Self> {
        let (image, layout) = stub::build_image_for(true);
        let image_fd = crate::ptrace::image_memfd(&image)?;
        // SAFETY: getpid has no preconditions.
        let kernel_pid = unsafe { libc::getpid() };
        let stub_cpu = match placement {
            crate::Placement::SplitCpus => crate::host::other_cpu(),
            _ => None,
        };
        let spin = std::thread::available_parallelism().map_or(1, |n| n.get()) > 1
            && match placement {
                crate::Placement::SameCpu => false,
                crate::Placement::SplitCpus => stub_cpu.is_some(),
                crate::Placement::Free => true,
            };
        Ok(SeccompMechanism {
            phys_fd,
            image_fd,
            layout,
            kernel_pid,
            fsgsbase: host_has_fsgsbase(),
            spin,
            stub_cpu,
            max_spin: MAX_SPIN_NS * tsc_per_us() / 1000,
            running: Ewma::default(),
            stats: Stats::default(),
        })
    }

    /// The stub's routine addresses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Wait until the stub hands the mailbox back (`state == KERNEL`), or
    /// (`exec_done`) until the executor reports batch `until`.
    fn wait(&mut self, s: &mut SeccompStub, timer: Option<&TimerShared>, exec_done: Option<u32>) -> Result<(), Trap> {
        let done = |v: u32| match exec_done {
            None => v == mb::KERNEL,
            Some(seq) => v == seq,
        };
        let word: *const AtomicU32 = s.mb_u32(if exec_done.is_none() { mb::STATE } else { mb::EXEC_DONE });
        // SAFETY: the mailbox outlives this call (it belongs to `s`, which is not dropped here).
        let word = unsafe { &*word };
        let budget = if self.spin && exec_done.is_none() { self.running.budget(self.max_spin) } else { 0 };
        if budget > 0 {
            let end = rdtsc() + budget;
            loop {
                if done(word.load(Ordering::Acquire)) {
                    return Ok(());
                }
                std::hint::spin_loop();
                if rdtsc() > end {
                    break;
                }
            }
        }
        let kwait = s.mb_u32(mb::KWAIT);
        let kwait: *const AtomicU32 = kwait;
        // SAFETY: as above.
        let kwait = unsafe { &*kwait };
        let mut kicked: Option<Instant> = None;
        self.stats.kernel_sleeps += 1;
        loop {
            kwait.store(1, Ordering::SeqCst);
            let v = word.load(Ordering::SeqCst);
            if done(v) {
                kwait.store(0, Ordering::Relaxed);
                return Ok(());
            }
            futex(word, libc::FUTEX_WAIT, v, Some(POLL));
            kwait.store(0, Ordering::Relaxed);
            if done(word.load(Ordering::Acquire)) {
                return Ok(());
            }
            if let Some(t) = s.reap_if_dead() {
                return Err(t);
            }
            if let Some(timer) = timer {
                if crate::host::interrupt_pending(timer) {
                    let k = *kicked.get_or_insert_with(Instant::now);
                    if k.elapsed() > KICK_GRACE {
                        // It does not answer the timer: it blocked the kick.
                        return Err(s.lost(Some(libc::SIGKILL as u32)));
                    }
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(s.pid, TIMER_SIGNAL) };
                }
            }
        }
    }

    /// Hand the mailbox to the stub: through the executor when `ops` are
    /// pending, else directly.
    fn resume(&mut self, s: &mut SeccompStub, ops: &[Op]) {
        let hint = if self.spin { s.handling.budget(self.max_spin) } else { 0 };
        s.ctrl_u64(ctrl::SPIN).store(hint, Ordering::Relaxed);
        if !ops.is_empty() {
            // Publish, then hand over: the executor waits for EXEC before it
            // sets RUN. The guest thread, if awake (spinning), wakes the
            // executor itself — usually on its own CPU, which is cheaper
            // than waking it from here; if it sleeps, we do.
            self.stats.map_batches += 1;
            self.stats.map_ops += ops.len() as u64;
            s.publish(ops, ctrl::MODE_GO, false);
            s.mb_u32(mb::STATE).store(mb::EXEC, Ordering::SeqCst);
            if s.mb_u32(mb::SWAIT).load(Ordering::SeqCst) != 0 {
                s.wake_executor();
            }
        } else {
            s.mb_u32(mb::STATE).store(mb::RUN, Ordering::SeqCst);
            if s.mb_u32(mb::SWAIT).load(Ordering::SeqCst) != 0 {
                self.stats.stub_wakeups += 1;
                futex(s.mb_u32(mb::STATE), libc::FUTEX_WAKE, i32::MAX as u32, None);
            }
        }
    }

    /// Copy the published frame into `ctx`.
    fn read_frame(&self, s: &mut SeccompStub, ctx: &mut UserContext) {
        let g = |i: usize| s.get(mb::GREGS + 8 * i);
        let r = &mut ctx.regs;
        r.r8 = g(0);
        r.r9 = g(1);
        r.r10 = g(2);
        r.r11 = g(3);
        r.r12 = g(4);
        r.r13 = g(5);
        r.r14 = g(6);
        r.r15 = g(7);
        r.rdi = g(8);
        r.rsi = g(9);
        r.rbp = g(10);
        r.rbx = g(11);
        r.rdx = g(12);
        r.rax = g(13);
        r.rcx = g(14);
        r.rsp = g(15);
        r.rip = g(16);
        r.eflags = g(17);
        let csgsfs = g(18);
        r.cs = csgsfs & 0xffff;
        r.ss = match csgsfs >> 48 {
            0 => 0x2b,
            ss => ss,
        };
        r.orig_rax = u64::MAX;
        if self.fsgsbase {
            r.fs_base = s.get(mb::FS_BASE);
            r.gs_base = s.get(mb::GS_BASE);
            s.fs_base = Some(r.fs_base);
            s.gs_base = Some(r.gs_base);
        }
        let mut area = [0u8; 576];
        // SAFETY: reading 576 bytes of the mailbox (inside the page).
        unsafe { std::ptr::copy_nonoverlapping(s.mb_bytes(mb::FPU, 576), area.as_mut_ptr(), 576) };
        let f = &mut ctx.fpu.0;
        f.copy_from_slice(&area[..512]);
        // The software-reserved bytes describe the signal frame, not the guest.
        f[416..512].fill(0);
        if u32::from_le_bytes(area[464..468].try_into().unwrap_or_default()) == FP_XSTATE_MAGIC1 {
            let bv = u64::from_le_bytes(area[512..520].try_into().unwrap_or_default());
            if bv & 2 == 0 {
                f[160..416].fill(0); // SSE in its initial state
            }
            if bv & 1 == 0 {
                // x87 in its initial state.
                f[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
                f[2..24].fill(0);
                f[32..160].fill(0);
            }
        }
        s.fpu = Some(ctx.fpu);
    }
}

impl Drop for SeccompMechanism {
    fn drop(&mut self) {
        // SAFETY: closing the memfd this mechanism owns.
        unsafe { libc::close(self.image_fd) };
    }
}

enum Decoded {
    Trap(Trap),
    Syscall,
    Spurious,
    Lost,
}

fn decode(s: &SeccompStub) -> Decoded {
    let signo = s.get(mb::SIGNO);
    let code = s.get(mb::CODE) as i64;
    let addr = s.get(mb::ADDR);
    let rip = s.get(mb::GREGS + 8 * 16);
    let err = s.get(mb::GREGS + 8 * 19);
    let trapno = s.get(mb::GREGS + 8 * 20);
    if signo == mb::EXEC_FAIL {
        return Decoded::Lost;
    }
    if code <= 0 || signo == TIMER_SIGNAL as u64 {
        // Sent by a process (our timer kick, or anyone on the host).
        return Decoded::Spurious;
    }
    let fault = |kind| Decoded::Trap(Trap::CpuFault { kind, addr });
    match signo as i32 {
        libc::SIGSYS if code == SYS_SECCOMP_CODE => Decoded::Syscall,
        libc::SIGSEGV if code == SI_KERNEL => {
            Decoded::Trap(Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: rip })
        }
        libc::SIGSEGV if trapno == 14 => {
            let access = if err & 0x10 != 0 {
                Access::Execute
            } else if err & 0x2 != 0 {
                Access::Write
            } else {
                Access::Read
            };
            Decoded::Trap(Trap::PageFault { addr, access })
        }
        libc::SIGSEGV => Decoded::Trap(Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: rip }),
        libc::SIGTRAP => Decoded::Trap(Trap::CpuFault { kind: CpuFaultKind::Breakpoint, addr: rip }),
        libc::SIGILL => fault(CpuFaultKind::IllegalInstruction),
        libc::SIGFPE if code == 1 || code == 2 => fault(CpuFaultKind::DivideError),
        libc::SIGFPE => fault(CpuFaultKind::FloatingPoint),
        libc::SIGBUS => fault(CpuFaultKind::BusError),
        _ => Decoded::Spurious,
    }
}

impl Mechanism for SeccompMechanism {
    type Stub = SeccompStub;

    fn spawn(&mut self) -> Result<SeccompStub, HalError> {
        let t0 = Instant::now();
        // SAFETY: valid C string; result checked.
        let memfd = unsafe { libc::memfd_create(c"rustuml-skas-mailbox".as_ptr(), libc::MFD_CLOEXEC) };
        if memfd < 0 {
            return Err(HalError::OutOfResources);
        }
        // SAFETY: sizing and mapping our own memfd; results checked.
        let map = unsafe {
            if libc::ftruncate(memfd, stub::COMM_SIZE as i64) != 0 {
                libc::close(memfd);
                return Err(HalError::OutOfResources);
            }
            libc::mmap(
                std::ptr::null_mut(),
                stub::COMM_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            // SAFETY: closing our own fd.
            unsafe { libc::close(memfd) };
            return Err(HalError::OutOfResources);
        }
        let mut s = SeccompStub {
            pid: 0,
            dead: None,
            memfd,
            map: map.cast(),
            seq: 0,
            pending: Vec::new(),
            fpu: None,
            fs_base: None,
            gs_base: None,
            handling: Ewma::default(),
            noticed: 0,
            last_trap_tsc: 0,
        };
        s.ctrl_u64(ctrl::FSGSBASE).store(self.fsgsbase as u64, Ordering::Relaxed);
        s.mb_u32(mb::STATE).store(mb::EXEC, Ordering::SeqCst);
        let fds = crate::spawn::ChildFds { phys: self.phys_fd, image: self.image_fd, comm: Some(memfd) };
        let t1 = Instant::now();
        s.pid = match crate::spawn::spawn(self.kernel_pid, fds, false, self.stub_cpu) {
            Ok(p) => p,
            Err(_) => {
                s.dead = Some(None);
                return Err(HalError::OutOfResources);
            }
        };
        let t2 = Instant::now();
        // The stub parks itself with `ud2` once set up.
        if self.wait(&mut s, None, None).is_err() {
            return Err(HalError::OutOfResources);
        }
        if profiling() {
            eprintln!("spawn: memfd {:?} clone {:?} setup {:?}", t1 - t0, t2 - t1, t2.elapsed());
        }
        if s.get(mb::SIGNO) != libc::SIGILL as u64 {
            s.lost(None);
            return Err(HalError::OutOfResources);
        }
        s.noticed = rdtsc();
        self.stats.stubs += 1;
        Ok(s)
    }

    fn apply(&mut self, s: &mut SeccompStub, ops: &[Op]) -> Result<(), Trap> {
        if let Some(t) = s.dead.map(|d| Trap::Lost { signal: d }) {
            return Err(t);
        }
        let mut chunks = ops.chunks(OPS_PER_BATCH).peekable();
        while let Some(chunk) = chunks.next() {
            if chunks.peek().is_none() {
                // The last batch goes with the switch into the guest.
                s.pending.extend_from_slice(chunk);
                break;
            }
            self.stats.map_batches += 1;
            self.stats.map_ops += chunk.len() as u64;
            s.publish(chunk, ctrl::MODE_REPORT, true);
            let seq = s.seq;
            self.wait(s, None, Some(seq))?;
            if s.get(mb::EXEC_RESULT) != 0 {
                return Err(s.lost(None));
            }
        }
        Ok(())
    }

    fn run(&mut self, s: &mut SeccompStub, ctx: &mut UserContext, timer: &TimerShared) -> Trap {
        if let Some(d) = s.dead {
            return Trap::Lost { signal: d };
        }
        let regs = &ctx.regs;
        let mxcsr = u32::from_le_bytes([ctx.fpu.0[24], ctx.fpu.0[25], ctx.fpu.0[26], ctx.fpu.0[27]]);
        if !canonical_user(regs.fs_base) || !canonical_user(regs.gs_base) || mxcsr & 0xffff_0000 != 0 {
            return Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: regs.rip };
        }
        let words = [
            regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.rdi, regs.rsi,
            regs.rbp, regs.rbx, regs.rdx, regs.rax, regs.rcx, regs.rsp, regs.rip, regs.eflags,
        ];
        for (i, w) in words.iter().enumerate() {
            s.set(mb::GREGS + 8 * i, *w);
        }
        let mut flags = 0;
        if s.fpu.as_ref() != Some(&ctx.fpu) {
            // SAFETY: 416 bytes into the mailbox's FPU area (inside the page).
            unsafe { std::ptr::copy_nonoverlapping(ctx.fpu.0.as_ptr(), s.mb_bytes(mb::FPU, 416), 416) };
            flags |= mb::LOAD_FPU;
        }
        if s.fs_base != Some(regs.fs_base) {
            s.set(mb::FS_BASE, regs.fs_base);
            flags |= mb::SET_FS;
        }
        if s.gs_base != Some(regs.gs_base) {
            s.set(mb::GS_BASE, regs.gs_base);
            flags |= mb::SET_GS;
        }
        s.set(mb::FLAGS, flags);
        let mut ops = std::mem::take(&mut s.pending);
        loop {
            timer.set_current(s.pid);
            let irq = crate::host::take_interrupts(timer);
            if !irq.is_empty() {
                timer.set_current(0);
                s.pending = ops;
                return Trap::Interrupt(irq);
            }
            // From here the stub holds what we wrote.
            s.fpu = Some(ctx.fpu);
            s.fs_base = Some(ctx.regs.fs_base);
            s.gs_base = Some(ctx.regs.gs_base);
            let resumed = rdtsc();
            let had_ops = !ops.is_empty();
            self.resume(s, &ops);
            ops.clear();
            let r = self.wait(s, Some(timer), None);
            timer.set_current(0);
            if let Err(t) = r {
                return t;
            }
            // What each side waited for the other, wake-up latency included:
            // spin while that is typically short (a side that sleeps makes
            // the other wait for its wake-up too, so both must see it).
            let noticed = rdtsc();
            self.running.add(noticed.saturating_sub(resumed));
            let (trap_tsc, resume_tsc) = (s.get(mb::TRAP_TSC), s.get(mb::RESUME_TSC));
            if s.noticed != 0 && resume_tsc > s.noticed.saturating_sub(self.max_spin) {
                // The stub's wait for the previous answer (its own stamps; a
                // forged value only changes its own spinning).
                s.handling.add(resume_tsc.wrapping_sub(s.last_trap_tsc).min(1 << 40));
            }
            s.last_trap_tsc = trap_tsc;
            if profiling() {
                let e = PROF.get_or_init(Default::default);
                let i = if had_ops { 0 } else { 3 };
                e[i].fetch_add(resume_tsc.wrapping_sub(resumed), Ordering::Relaxed);
                e[i + 1].fetch_add(trap_tsc.wrapping_sub(resume_tsc), Ordering::Relaxed);
                e[i + 2].fetch_add(noticed.wrapping_sub(trap_tsc), Ordering::Relaxed);
                e[6 + (i / 3)].fetch_add(1, Ordering::Relaxed);
            }
            s.noticed = noticed;
            match decode(s) {
                Decoded::Spurious => {
                    let irq = crate::host::take_interrupts(timer);
                    if !irq.is_empty() {
                        self.read_frame(s, ctx);
                        return Trap::Interrupt(irq);
                    }
                    // Resume exactly where it was: the mailbox holds its
                    // frame (and `ctx` follows it, should the timer fire
                    // before the resume).
                    self.read_frame(s, ctx);
                    s.set(mb::FLAGS, 0);
                }
                Decoded::Lost => return s.lost(None),
                Decoded::Syscall => {
                    self.read_frame(s, ctx);
                    ctx.regs.orig_rax = ctx.regs.rax;
                    ctx.regs.rax = (-(libc::ENOSYS as i64)) as u64;
                    return Trap::Syscall;
                }
                Decoded::Trap(t) => {
                    self.read_frame(s, ctx);
                    return t;
                }
            }
        }
    }
}
