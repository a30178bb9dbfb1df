//! The seccomp trap mechanism: no ptrace on the hot path.
//!
//! A stub process ([`crate::stub`], entry `entry_sc`) has two threads:
//! - the **guest thread** runs guest code under a seccomp filter that
//!   returns `SECCOMP_RET_TRAP` for every system call made outside the
//!   stub's code. The resulting `SIGSYS` — and `SIGSEGV`, `SIGBUS`, `SIGILL`,
//!   `SIGFPE`, `SIGTRAP`, and `SIGALRM` (the timer kick) — run the stub's
//!   `trap` handler on its signal stack. It copies the signal frame's
//!   registers, the address of its XSAVE area, fault data (error code and
//!   trap number straight from the frame: no second round trip for a page
//!   fault's access kind) and a time stamp into the **mailbox**, a page of a
//!   per-stub memfd shared with the kernel; hands the mailbox over (`state =
//!   KERNEL`, `FUTEX_WAKE` only if the kernel sleeps); spins up to the
//!   kernel's hint, then sleeps with `FUTEX_WAIT` on the state word; and,
//!   once answered, loads the (possibly changed) registers and `fs`/`gs`
//!   bases into the frame and `rt_sigreturn`s. The signal stack lives in the
//!   same memfd, so the kernel reads and writes the thread's whole XSAVE
//!   state (AVX-512 included) in the frame itself.
//! - the **executor thread** has every signal blocked and runs under its own
//!   filter (the same one ptrace stubs get: `mmap` of the physical-memory fd
//!   only, `munmap`, `mprotect`, `futex`, `exit`). It applies the map
//!   operations the kernel publishes on the **control page**, which the stub
//!   maps read-only, under a sequence lock, then hands the mailbox to the
//!   guest thread (or reports to the kernel) and sleeps on the control
//!   page's sequence word. A failed operation ends the whole process.
//!
//! The kernel side ([`SeccompMechanism::run`]) writes the registers, flips
//! the state, and waits the same way: an adaptive spin, then `FUTEX_WAIT`.
//! The spin is adaptive on both sides and never outlasts [`MAX_SPIN_NS`].
//! Nothing spins with [`crate::Placement::SameCpu`] (the default).
//!
//! # Threat model
//! Guest code controls every register of the guest thread and every byte it
//! can write — the mailbox, the signal stack, the stub's data page — may run
//! on any host CPU at any time, and can jump to any byte of the stub's code
//! (with its own registers). It cannot write the code page, the control
//! page or the operation list (mapped read-only; no system call it can make
//! changes a mapping), and it cannot run code on the executor thread.
//!
//! So the kernel takes nothing from the mailbox but the trapping thread's
//! own registers and fault data (decoded into a [`Trap`], never followed as
//! a pointer, except the XSAVE area's address, accepted only inside the
//! signal stack), and it decides three things only from what the host
//! kernel says:
//! - **that a change to the host address space has taken effect**: the
//!   executor sleeps on the control page's sequence word only when every
//!   batch published so far has been applied, and only the executor can
//!   wait there (the guest thread's filter allows `FUTEX_WAIT` on nothing
//!   but the mailbox's state word). A waiter on that word, counted with
//!   `FUTEX_CMP_REQUEUE` onto itself (which wakes nobody), is the proof.
//!   The kernel takes it before it goes on after any batch that unmaps or
//!   protects, and before it leaves a stub for another or for idleness; so
//!   a frame kernel-core frees is never reused while a stub may still map
//!   it ([`hal::AddressSpace::map`] documents the rule for replaced frames).
//! - **that a thread is stopped**: when the kernel leaves a stub, it counts
//!   a waiter on the mailbox's state word. The filter allows that wait only
//!   without a timeout, signals reach a parked stub only as the kernel's own
//!   timer kick (sent to the running stub only), and only the kernel (a
//!   resume without operations) or the executor (after applying a batch)
//!   wake that word — so a parked guest thread runs no guest code until the
//!   kernel resumes it, and then only after the resume's batch is applied,
//!   wherever in the stub's code it chose to wait. A stub that does not
//!   park within [`PARK_GRACE`] (a forged trap: its code still runs) is
//!   killed.
//! - **that a stub is alive**: `waitpid`. Every wait on a stub has a
//!   deadline; a stub that misses one is killed (the guest process sees
//!   `SIGKILL`, the kernel logs one line) and every other stub keeps running.
//!
//! What a guest can still do, all to itself: forge a trap (write a frame
//! into the mailbox and set `state`) — the kernel then handles a system call
//! or fault for that process as if it had made it, which a real call could
//! do too; lie in the spin/sleep hints and time stamps (its own spinning and
//! the kernel's bounded spin policy change, never past [`MAX_SPIN_NS`]);
//! block its own timer kick with a forged `rt_sigreturn` mask (killed after
//! [`KICK_GRACE`] unanswered); wake the kernel or itself spuriously (every
//! waiter re-checks); move its signal stack (the trap handler then writes
//! its own memory; an XSAVE address outside the signal stack kills it).
//! Host system calls it can make by jumping into the stub's code: `futex`
//! as above, `rt_sigreturn`, `sched_yield`, `arch_prctl(ARCH_SET_FS /
//! ARCH_SET_GS)` and `exit_group`; everything else from the stub's code
//! kills the stub, everything from elsewhere traps. `mmap` of the
//! physical-memory fd is impossible on the guest thread.
//!
//! Exempt from every seccomp filter by host kernels (`kernel/seccomp.c`):
//! `uretprobe` (335, since 6.11) and `uprobe` (336, since 6.16). The host
//! runs them, and outside a probe trampoline they do what Linux does for
//! any program: `SIGILL` (which traps here and reaches the guest as its own
//! `SIGILL`) and `ENXIO`. The guest kernel answers them the same way under
//! ptrace and tt.
//!
//! The `[vsyscall]` page cannot be unmapped; a guest call into it is
//! checked by the host against the filter like any other call from outside
//! the stub (it traps).

use crate::stub::{self, ctrl, mb, Layout, OPS_PER_BATCH};
use crate::timer::{TimerShared, TIMER_SIGNAL};
use crate::{Mechanism, Op, Stats};
use hal::context::{XSAVE_HEADER, XSAVE_SW_BYTES};
use hal::{CpuFaultKind, HalError, Trap, UserContext};
use hal_uml_host::sys::{self, futex, futex_waiters, SharedMemfd};
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest either side spins before sleeping, per trap.
pub const MAX_SPIN_NS: u64 = 50_000;
/// How long a timer kick may stay unanswered before the stub is killed.
pub const KICK_GRACE: Duration = Duration::from_millis(500);
/// How long the executor may take to apply a batch before the stub is killed.
pub const EXEC_DEADLINE: Duration = Duration::from_secs(2);
/// How long a stub the kernel leaves may take to park its guest thread
/// (a genuine trap handler needs a few instructions once it has a CPU).
pub const PARK_GRACE: Duration = Duration::from_millis(100);
/// The futex timeout after which the kernel checks that the stub lives.
const POLL: Duration = Duration::from_millis(20);
const SYS_SECCOMP_CODE: i64 = 1;
const SI_KERNEL: i64 = 0x80;

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
    sys::seccomp_action_available(crate::filter::RET_TRAP)
}

fn host_has_fsgsbase() -> bool {
    // HWCAP2_FSGSBASE is bit 1.
    sys::getauxval(libc::AT_HWCAP2) & 2 != 0
}

/// Let the stub's threads run: yield the CPU (they may share it), then,
/// the longer a wait goes on, sleep a little.
fn let_stub_run(round: u32) {
    if round < 32 {
        sys::sched_yield();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
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

/// What the kernel shares with one stub process: the memfd mapping
/// (control page, operation list, mailbox, signal stack) and what the host
/// says about the process. Shared between the stub's handle and the
/// mechanism, which parks the stub it ran last when it runs another.
/// Dropping it unmaps and closes the memfd (the handle kills the process).
struct Comm {
    pid: i32,
    /// Owns the memfd and the mapping (unmapped when dropped).
    _mem: SharedMemfd,
    /// `_mem`'s mapping.
    map: *mut u8,
    /// `Some(signal)` once the process is gone (and reaped).
    dead: std::cell::Cell<Option<Option<u32>>>,
    /// A batch was published and not yet confirmed applied.
    unconfirmed: std::cell::Cell<bool>,
    /// The guest thread is known to be parked (counted as a waiter).
    parked: std::cell::Cell<bool>,
}

impl Comm {
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

    /// Collect the process's status if it has ended.
    fn reap_if_dead(&self) -> Option<Trap> {
        if let Some(d) = self.dead.get() {
            return Some(Trap::Lost { signal: d });
        }
        let sig = sys::reap_if_ended(self.pid)?;
        self.dead.set(Some(sig));
        Some(Trap::Lost { signal: sig })
    }

    /// Kill it (if alive) and return the [`Trap::Lost`] to report.
    fn lost(&self, signal: Option<u32>) -> Trap {
        if self.dead.get().is_none() {
            self.kill();
            self.dead.set(Some(signal));
        }
        Trap::Lost { signal: self.dead.get().flatten() }
    }

    /// Kill it for missing a deadline: one line in the log.
    fn overdue(&self, what: &str) -> Trap {
        if self.dead.get().is_none() {
            eprintln!("skas: stub {} {what}: killed", self.pid);
        }
        self.lost(Some(libc::SIGKILL as u32))
    }

    fn kill(&self) {
        if self.dead.get().is_some() {
            return;
        }
        sys::kill_and_reap(self.pid);
        self.dead.set(Some(Some(libc::SIGKILL as u32)));
    }

    /// Wait until every published batch is applied: the executor asleep on
    /// the sequence word (a host fact, see the module's threat model).
    fn settle(&self) -> Result<(), Trap> {
        if !self.unconfirmed.get() {
            return Ok(());
        }
        let start = Instant::now();
        let mut round = 0;
        loop {
            if futex_waiters(self.ctrl_u32(ctrl::SEQ)) > 0 {
                self.unconfirmed.set(false);
                return Ok(());
            }
            if let Some(t) = self.reap_if_dead() {
                return Err(t);
            }
            if start.elapsed() > EXEC_DEADLINE {
                return Err(self.overdue("did not apply its map operations in time"));
            }
            let_stub_run(round);
            round += 1;
        }
    }

    /// The kernel leaves this stub (for another, or to sleep): make sure
    /// its batches are applied and its guest thread is parked, or kill it.
    /// True if it had to be killed (or died meanwhile): news for the
    /// kernel, unlike a death it was already told of by `run`.
    fn park(&self) -> bool {
        if self.dead.get().is_some() {
            return false;
        }
        if self.settle().is_err() {
            return true;
        }
        if self.parked.get() {
            return false;
        }
        let state = self.mb_u32(mb::STATE);
        let start = Instant::now();
        let mut round = 0;
        loop {
            if futex_waiters(state) > 0 {
                self.parked.set(true);
                return false;
            }
            if self.reap_if_dead().is_some() {
                return true;
            }
            if start.elapsed() > PARK_GRACE {
                // Its trap was forged, or it blocks its own handler: its
                // code runs while the kernel would think it asleep.
                self.overdue("did not park its guest thread");
                return true;
            }
            // A spinning handler sleeps at once on PARK (only while the
            // mailbox is the kernel's: never overwrite a RUN or EXEC).
            let _ = state.compare_exchange(mb::KERNEL, mb::PARK, Ordering::SeqCst, Ordering::SeqCst);
            let_stub_run(round);
            round += 1;
        }
    }
}

/// One seccomp stub: the process, its shared memfd and what the kernel
/// knows of the state it holds. Dropping it kills and reaps the process.
pub struct SeccompStub {
    comm: Rc<Comm>,
    /// Last sequence number published on the control page (even).
    seq: u32,
    /// Map operations to apply in the next switch.
    pending: Vec<Op>,
    /// Offset in the mapping of the XSAVE area of the frame the stub's
    /// guest thread will return through.
    frame_fpu: Option<usize>,
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
        f.debug_struct("SeccompStub").field("pid", &self.comm.pid).field("dead", &self.comm.dead.get()).finish()
    }
}

impl SeccompStub {
    /// The host pid.
    pub fn pid(&self) -> i32 {
        self.comm.pid
    }

    /// Whether the process is gone (it was killed or it died and was reaped).
    pub fn is_dead(&self) -> bool {
        self.comm.dead.get().is_some()
    }

    fn get(&self, off: usize) -> u64 {
        self.comm.get(off)
    }

    /// Publish `ops` on the control page (sequence lock) and wake the
    /// executor; `mode` says what it does after the batch.
    fn publish(&mut self, ops: &[Op], mode: u64) {
        let c = &self.comm;
        c.ctrl_u32(ctrl::SEQ).store(self.seq.wrapping_add(1), Ordering::SeqCst);
        c.ctrl_u64(ctrl::COUNT).store(ops.len() as u64, Ordering::Relaxed);
        c.ctrl_u64(ctrl::MODE).store(mode, Ordering::Relaxed);
        let bytes = std::mem::size_of_val(ops);
        // SAFETY: the operation list follows the control page in our mapping and holds OPS_PER_BATCH records; callers pass at most that many.
        unsafe { std::ptr::copy_nonoverlapping(ops.as_ptr() as *const u8, c.map.add(4096), bytes) };
        self.seq = self.seq.wrapping_add(2);
        let seq = c.ctrl_u32(ctrl::SEQ);
        seq.store(self.seq, Ordering::SeqCst);
        c.unconfirmed.set(true);
        // Always woken by us: whether it sleeps is not for the guest to say.
        futex(seq, libc::FUTEX_WAKE, i32::MAX as u32, None);
    }
}

impl Drop for SeccompStub {
    fn drop(&mut self) {
        self.comm.kill();
    }
}

/// Does a batch take anything away (an unmap, a protection change)? Then
/// the kernel confirms it applied before it goes on, because kernel-core may
/// already have freed the frames concerned.
fn removes(ops: &[Op]) -> bool {
    ops.iter().any(|op| op[0] != crate::ops::SYS_MMAP)
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
    max_spin: u64,
    /// The guests' run times between traps (stamped by the stubs).
    running: Ewma,
    /// The stub that ran last: parked before any other runs.
    last: Weak<Comm>,
    /// Make each fork's stub ahead of it (more than one CPU).
    prespawn: bool,
    /// The stub made ahead for the next fork.
    next: Option<Prespawned>,
    /// Counters.
    pub stats: Stats,
}

fn canonical_user(v: u64) -> bool {
    v < 0x0000_8000_0000_0000
}

impl SeccompMechanism {
    /// Prepare the mechanism: write the stub image to a memfd. Stubs pin
    /// themselves to `stub_cpu` once set up, and take `SCHED_BATCH` when
    /// they share the kernel's CPU (a woken stub then does not preempt it).
    pub fn new(phys_fd: i32, placement: crate::Placement, stub_cpu: Option<usize>) -> io::Result<Self> {
        let batch = placement == crate::Placement::SameCpu;
        let (image, layout) = stub::build_image_with(true, stub_cpu, batch);
        let image_fd = crate::ptrace::image_memfd(&image)?;
        let kernel_pid = sys::getpid();
        // Counted before the kernel pinned itself.
        let cpus = crate::host::cpu_count();
        let spin = cpus > 1
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
            max_spin: MAX_SPIN_NS * tsc_per_us() / 1000,
            running: Ewma::default(),
            last: Weak::new(),
            prespawn: cpus > 1 && std::env::var_os("RUSTUML_STUB_PRESPAWN").is_none_or(|v| v != "0"),
            next: None,
            stats: Stats::default(),
        })
    }

    /// The stub's routine addresses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }


    /// Wait until the stub hands the mailbox back (`state == KERNEL`),
    /// kicking it when the timer fires (`timer`).
    fn wait(&mut self, s: &mut SeccompStub, timer: Option<&TimerShared>) -> Result<(), Trap> {
        let c = s.comm.clone();
        let word = c.mb_u32(mb::STATE);
        let done = |v: u32| v == mb::KERNEL;
        let budget = if self.spin { self.running.budget(self.max_spin) } else { 0 };
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
        let kwait = c.mb_u32(mb::KWAIT);
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
            if let Some(t) = c.reap_if_dead() {
                return Err(t);
            }
            match timer {
                Some(timer) if crate::host::interrupt_pending(timer) => {
                    let k = *kicked.get_or_insert_with(Instant::now);
                    if k.elapsed() > KICK_GRACE {
                        // It does not answer the timer: it blocked the kick.
                        return Err(c.overdue("did not answer the timer"));
                    }
                    let _ = sys::kill(c.pid, TIMER_SIGNAL);
                }
                // Only a stub starting up is waited for without a timer.
                None if kicked.get_or_insert_with(Instant::now).elapsed() > EXEC_DEADLINE => {
                    return Err(c.overdue("did not start"));
                }
                _ => {}
            }
        }
    }

    /// Hand the mailbox to the stub: through the executor when `ops` are
    /// pending (it wakes the guest thread once they are applied), else
    /// directly.
    fn resume(&mut self, s: &mut SeccompStub, ops: &[Op]) {
        let hint = if self.spin { s.handling.budget(self.max_spin) } else { 0 };
        let c = s.comm.clone();
        c.ctrl_u64(ctrl::SPIN).store(hint, Ordering::Relaxed);
        let parked = c.parked.replace(false);
        if !ops.is_empty() {
            self.stats.map_batches += 1;
            self.stats.map_ops += ops.len() as u64;
            // EXEC before the batch: the executor's RUN must come after it.
            c.mb_u32(mb::STATE).store(mb::EXEC, Ordering::SeqCst);
            s.publish(ops, ctrl::MODE_GO);
        } else {
            c.mb_u32(mb::STATE).store(mb::RUN, Ordering::SeqCst);
            if parked || c.mb_u32(mb::SWAIT).load(Ordering::SeqCst) != 0 {
                self.stats.stub_wakeups += 1;
                futex(c.mb_u32(mb::STATE), libc::FUTEX_WAKE, i32::MAX as u32, None);
            }
        }
    }

    /// Copy the published frame into `ctx`. A frame whose FPU area is not
    /// where the stub keeps it is a forgery: the stub is killed.
    fn read_frame(&self, s: &mut SeccompStub, ctx: &mut UserContext) -> Result<(), Trap> {
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
        // The thread's extended state, straight from the XSAVE area the host
        // wrote into the signal frame on the shared signal stack.
        let Some(off) = frame_fpu(&s.comm) else { return Err(s.comm.overdue("moved its signal frame")) };
        s.frame_fpu = Some(off);
        let n = crate::xstate::layout().size;
        // SAFETY: `frame_fpu` checked that `off..off + n` lies in the signal stack, inside our mapping.
        unsafe { std::ptr::copy_nonoverlapping(s.comm.map.add(off), ctx.fpu.0.as_mut_ptr(), n) };
        // The software-reserved bytes describe the signal frame, not the guest.
        ctx.fpu.0[XSAVE_SW_BYTES..XSAVE_HEADER].fill(0);
        Ok(())
    }
}

/// Where, in the stub's shared mapping, the current trap frame keeps its
/// XSAVE area. The pointer comes from the mailbox: guest-writable, so it is
/// only accepted 64-byte aligned and wholly inside the signal stack (a guest
/// that moved it only ever reaches its own stack).
fn frame_fpu(c: &Comm) -> Option<usize> {
    let p = c.get(mb::FPREGS);
    let end = p.checked_add(crate::xstate::layout().size as u64 + 4)?;
    if !p.is_multiple_of(64) || p < stub::ALTSTACK_ADDR || end > stub::STUB_END {
        return None;
    }
    Some((stub::COMM_MB_OFF + (p - stub::MB_ADDR)) as usize)
}

/// Make the trap frame's XSAVE area hold `fpu` (its register bytes and
/// header; the host's software-reserved bytes stay), so `rt_sigreturn`
/// loads it. Written only where it differs: usually it does not.
fn load_fpu(s: &SeccompStub, fpu: &hal::FpuState) {
    let Some(off) = s.frame_fpu else { return };
    let n = crate::xstate::layout().size;
    for (from, to) in [(0, XSAVE_SW_BYTES), (XSAVE_HEADER, n)] {
        // SAFETY: `off..off + n` was checked by `frame_fpu` to lie inside our mapping of the signal stack; the stub may write it concurrently (then the guest only corrupts its own state).
        let frame = unsafe { std::slice::from_raw_parts_mut(s.comm.map.add(off + from), to - from) };
        if *frame != fpu.0[from..to] {
            frame.copy_from_slice(&fpu.0[from..to]);
        }
    }
}

impl SeccompMechanism {
    /// Begin a stub: its shared memfd, and the request to the zygote.
    fn start_spawn(&mut self) -> Result<Prespawned, HalError> {
        let t0 = Instant::now();
        let mem = SharedMemfd::new(c"rustuml-skas-mailbox", stub::COMM_SIZE as usize, false).map_err(|_| HalError::OutOfResources)?;
        let memfd = mem.fd();
        let comm = Comm {
            pid: 0,
            map: mem.as_ptr(),
            _mem: mem,
            dead: Default::default(),
            unconfirmed: Default::default(),
            parked: Default::default(),
        };
        comm.ctrl_u64(ctrl::FSGSBASE).store(self.fsgsbase as u64, Ordering::Relaxed);
        comm.mb_u32(mb::STATE).store(mb::EXEC, Ordering::SeqCst);
        let fds = crate::spawn::ChildFds { phys: self.phys_fd, image: self.image_fd, comm: Some(memfd) };
        let spawning = crate::spawn::start(self.kernel_pid, fds, false, None);
        Ok(Prespawned { comm, spawning, t0 })
    }

    /// The stub's pid, then wait until it parks itself (`ud2`) set up.
    fn finish_spawn(&mut self, p: Prespawned) -> Result<SeccompStub, HalError> {
        let Prespawned { mut comm, spawning, t0 } = p;
        let t1 = Instant::now();
        match spawning.finish() {
            Ok(pid) => comm.pid = pid,
            Err(_) => {
                comm.dead.set(Some(None));
                return Err(HalError::OutOfResources);
            }
        };
        let t2 = Instant::now();
        let mut s = SeccompStub {
            comm: Rc::new(comm),
            seq: 0,
            pending: Vec::new(),
            frame_fpu: None,
            fs_base: None,
            gs_base: None,
            handling: Ewma::default(),
            noticed: 0,
            last_trap_tsc: 0,
        };
        if self.wait(&mut s, None).is_err() {
            return Err(HalError::OutOfResources);
        }
        if profiling() {
            eprintln!("spawn: begun {:?} before, pid {:?} setup {:?}", t1 - t0, t2 - t1, t2.elapsed());
        }
        s.frame_fpu = frame_fpu(&s.comm);
        if s.get(mb::SIGNO) != libc::SIGILL as u64 || s.frame_fpu.is_none() {
            s.comm.lost(None);
            return Err(HalError::OutOfResources);
        }
        s.noticed = rdtsc();
        self.stats.stubs += 1;
        Ok(s)
    }
}

/// A stub begun ahead of its fork ([`SeccompMechanism::start_spawn`]).
struct Prespawned {
    comm: Comm,
    spawning: crate::spawn::Spawning,
    t0: Instant,
}

impl Drop for SeccompMechanism {
    fn drop(&mut self) {
        crate::spawn::close_image(self.image_fd);
    }
}

enum Decoded {
    Trap(Trap),
    Syscall,
    Spurious,
}

fn decode(s: &SeccompStub) -> Decoded {
    let signo = s.get(mb::SIGNO);
    let code = s.get(mb::CODE) as i64;
    let addr = s.get(mb::ADDR);
    let rip = s.get(mb::GREGS + 8 * 16);
    let err = s.get(mb::GREGS + 8 * 19);
    let trapno = s.get(mb::GREGS + 8 * 20);
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
            Decoded::Trap(Trap::PageFault { addr, access: hal_uml_host::fault_access(err) })
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
        let started = match self.next.take() {
            Some(p) => self.finish_spawn(p),
            None => Err(HalError::OutOfResources),
        };
        // The one made in advance may have died meanwhile: a fresh one then.
        let stub = match started {
            Ok(s) => Ok(s),
            Err(_) => self.start_spawn().and_then(|p| self.finish_spawn(p)),
        };
        if stub.is_ok() && self.prespawn {
            // The next fork's stub forks, execs and sets itself up while
            // this one's guest runs (on another CPU where there is one).
            self.next = self.start_spawn().ok();
        }
        stub
    }

    fn apply(&mut self, s: &mut SeccompStub, ops: &[Op]) -> Result<(), Trap> {
        let c = s.comm.clone();
        if let Some(d) = c.dead.get() {
            return Err(Trap::Lost { signal: d });
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
            // The guest thread stays where it is (trapped or parked): only
            // the executor runs, and reports.
            s.publish(chunk, ctrl::MODE_REPORT);
            c.settle()?;
        }
        Ok(())
    }

    fn run(&mut self, s: &mut SeccompStub, ctx: &mut UserContext, timer: &TimerShared) -> Trap {
        let c = s.comm.clone();
        if let Some(d) = c.dead.get() {
            return Trap::Lost { signal: d };
        }
        self.last = Rc::downgrade(&c);
        let regs = &ctx.regs;
        if !canonical_user(regs.fs_base) || !canonical_user(regs.gs_base) || ctx.fpu.mxcsr() & 0xffff_0000 != 0 {
            return Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: regs.rip };
        }
        let words = [
            regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.rdi, regs.rsi,
            regs.rbp, regs.rbx, regs.rdx, regs.rax, regs.rcx, regs.rsp, regs.rip, regs.eflags,
        ];
        for (i, w) in words.iter().enumerate() {
            c.set(mb::GREGS + 8 * i, *w);
        }
        let mut flags = 0;
        if s.fs_base != Some(regs.fs_base) {
            c.set(mb::FS_BASE, regs.fs_base);
            flags |= mb::SET_FS;
        }
        if s.gs_base != Some(regs.gs_base) {
            c.set(mb::GS_BASE, regs.gs_base);
            flags |= mb::SET_GS;
        }
        c.set(mb::FLAGS, flags);
        let mut ops = std::mem::take(&mut s.pending);
        loop {
            timer.set_current(c.pid);
            let irq = crate::host::take_interrupts(timer);
            if !irq.is_empty() {
                timer.set_current(0);
                s.pending = ops;
                return Trap::Interrupt(irq);
            }
            // From here the stub holds what we wrote.
            load_fpu(s, &ctx.fpu);
            s.fs_base = Some(ctx.regs.fs_base);
            s.gs_base = Some(ctx.regs.gs_base);
            let resumed = rdtsc();
            let had_ops = !ops.is_empty();
            let confirm = removes(&ops);
            self.resume(s, &ops);
            ops.clear();
            let r = self.wait(s, Some(timer));
            timer.set_current(0);
            if let Err(t) = r {
                return t;
            }
            // Frames the batch unmapped may be reused as soon as we return.
            if confirm {
                if let Err(t) = c.settle() {
                    return t;
                }
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
            if let Err(t) = self.read_frame(s, ctx) {
                return t;
            }
            match decode(s) {
                Decoded::Spurious => {
                    let irq = crate::host::take_interrupts(timer);
                    if !irq.is_empty() {
                        return Trap::Interrupt(irq);
                    }
                    // Resume exactly where it was: the mailbox holds its
                    // frame (and `ctx` follows it, should the timer fire
                    // before the resume).
                    c.set(mb::FLAGS, 0);
                }
                Decoded::Syscall => {
                    ctx.regs.orig_rax = ctx.regs.rax;
                    ctx.regs.rax = (-(libc::ENOSYS as i64)) as u64;
                    return Trap::Syscall;
                }
                Decoded::Trap(t) => return t,
            }
        }
    }

    fn leave(&mut self, next: Option<&SeccompStub>) -> bool {
        let Some(last) = self.last.upgrade() else { return false };
        if next.is_some_and(|n| Rc::ptr_eq(&n.comm, &last)) {
            return false;
        }
        self.last = Weak::new();
        last.park()
    }
}
