//! The **tt** ("traced thread") backend of the `hal`: the legacy User-mode
//! Linux model, rebuilt for A/B comparison with the skas backend
//! (`hal-uml-x86_64`). Both stand on the host layer, `hal-uml-host`; neither
//! depends on the other.
//!
//! # Kernel memory is not protected from the guest
//!
//! Guest code runs in host processes created with `clone(CLONE_VM)`: they
//! share the kernel's one host address space. **A guest can read and write
//! every byte of the kernel** — its code, its heap, its page tables, other
//! guests' saved registers — by simply using the address. That is the point
//! of this backend: it is the historical model whose cost and (lack of)
//! protection the project measures against skas. Do not use it to run code
//! you do not trust.
//!
//! # How it works
//! - Physical memory is the same memfd as skas ([`hal_uml_host::phys`]).
//! - Guest user memory lives in a fixed window `[0, USER_END)` of the
//!   kernel's own address space ([`USER_END`] = 64 TiB). At start-up the HAL
//!   reads `/proc/self/maps` and refuses to run if any host mapping lies in
//!   the window (for instance with `ulimit -s unlimited`, when Linux uses the
//!   legacy bottom-up layout at `0x2aaa…`). The kernel binary (PIE, at
//!   `0x55…`) and its libraries, heap and thread stacks (near `0x7f…`) lie
//!   above. A map operation outside the window loses the address space
//!   ([`Trap::Lost`]); it never reaches the host.
//! - Each address space owns one traced host process (a `clone(CLONE_VM)`
//!   child with its own small stack and signal stack, in kernel memory). It
//!   runs guest code under `PTRACE_SYSEMU`, exactly as a skas stub does: the
//!   register/FPU transfer, `waitpid` decoding, timer kicks and the
//!   `SIGSEGV` detour for a fault's access kind are the shared
//!   [`hal_uml_host::tracer::Tracer`]. The `SIGSEGV` handler is a few
//!   instructions of the kernel binary's own code (this crate's
//!   `rustuml_tt_segv`), installed by the child for itself before it stops.
//! - Map operations are applied by the kernel itself with `mmap`/`mprotect`/
//!   `munmap` (`MAP_SHARED | MAP_FIXED` of the memfd): no round trip to any
//!   other process. They are queued and merged as in skas, and applied
//!   before the space runs.
//!
//! # The cost model: one window, switched
//! All guest processes share one host address space, so only one of them
//! can have its memory mapped at a time. Every space keeps a [`Record`] of
//! its mappings (runs merged when contiguous in both virtual and physical
//! address with one protection); the window keeps a record of what is mapped
//! on the host now. Running a space other than the one installed **unmaps
//! every range of the old one and maps every run of the new one**: one host
//! system call per range, plus the page faults the host takes to refill its
//! page tables afterwards. This is the historical tt cost — cheap system
//! calls and user-memory access, expensive switches between guest processes
//! (fork/exec/pipe ping-pong) — and it is deliberately not optimised away.
//! Switching spaces also hides the old space's memory from the new one: a
//! guest cannot read another guest's memory by address *through the window*
//! — but it can through the kernel's own mapping of physical memory, which
//! it can find and read like any other kernel memory.
//!
//! The window is process-wide: several [`TtHal`]s in one process (tests) are
//! correct but take turns — each `run` holds a process-wide lock while the
//! guest runs.
//!
//! Known limits: those of skas (AVX upper state per host process, `int $0x80`
//! reported as a system call), and the host's vDSO and `[vsyscall]` are
//! callable by guest code (they only read time).

pub mod record;

use hal::{AddressSpace, HalError, PhysMem, Prot, Trap, UserContext, PAGE_SIZE};
use hal_uml_host::host::{self, HostMachine};
use hal_uml_host::ops::{self, Op, OpQueue, SYS_MMAP, SYS_MPROTECT, SYS_MUNMAP};
use hal_uml_host::phys::MemfdPhys;
use hal_uml_host::sys::{self, AnonMap};
use hal_uml_host::tracer::{self as pt, Stats, Tracee, Tracer};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use record::Record;

/// End of the guest window and [`AddressSpace::user_end`]: 64 TiB, well below
/// the kernel binary (PIE, `0x55…`) and its mappings (`0x7f…`).
pub const USER_END: u64 = 0x4000_0000_0000;

/// Queued operations beyond which a space that is not running stops queueing
/// and is reinstalled from its record when it next runs.
const MAX_PENDING: usize = 4096;

/// Size of each guest host process's stack and of its signal stack.
const CHILD_STACK: usize = 64 << 10;

// The SIGSEGV handler of the guest host processes, in the kernel's own text:
// the host layer's detour (see `hal_uml_host::segv_detour`), as in the skas
// stub.
core::arch::global_asm!(
    ".pushsection .text.rustuml_tt_segv,\"ax\",@progbits",
    ".balign 16",
    ".globl rustuml_tt_segv",
    ".hidden rustuml_tt_segv",
    "rustuml_tt_segv:",
    hal_uml_host::segv_detour_asm!(),
    ".globl rustuml_tt_segv_done",
    ".hidden rustuml_tt_segv_done",
    "rustuml_tt_segv_done:",
    // The restorer: never reached, but x86_64 requires SA_RESTORER.
    "ud2",
    ".popsection",
    options(att_syntax),
);

extern "C" {
    fn rustuml_tt_segv();
    static rustuml_tt_segv_done: u8;
}

fn segv_done() -> u64 {
    core::ptr::addr_of!(rustuml_tt_segv_done) as u64
}

/// What is mapped in the process's one guest window now, and for whom.
struct Window {
    /// The space whose memory is in the window.
    owner: Option<u64>,
    /// The host's mappings in the window.
    host: Record,
    /// Counters.
    stats: SwitchStats,
}

static WINDOW: Mutex<Window> = Mutex::new(Window { owner: None, host: Record::new(), stats: SwitchStats::ZERO });
static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

fn window() -> MutexGuard<'static, Window> {
    // A panic while holding it (a test) leaves a consistent enough state:
    // the host record is only updated after the host calls succeed.
    WINDOW.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of address-space switches (process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Runs that had to switch the window to another space.
    pub switches: u64,
    /// `munmap` calls made by switches.
    pub switch_unmaps: u64,
    /// `mmap` calls made by switches.
    pub switch_maps: u64,
    /// Queued operations applied to the installed space (after merging).
    pub ops_applied: u64,
}

impl SwitchStats {
    const ZERO: SwitchStats = SwitchStats { switches: 0, switch_unmaps: 0, switch_maps: 0, ops_applied: 0 };
}

fn raw_syscall(op: &Op) -> i64 {
    // SAFETY: only mmap/mprotect/munmap reach here, always inside the guest window (checked when queued and verified free of kernel mappings at start-up); they cannot touch memory the kernel uses.
    unsafe { libc::syscall(op[0] as i64, op[1], op[2], op[3], op[4], op[5], op[6]) }
}

impl Window {
    /// Apply one operation to the host and the host record.
    fn apply(&mut self, op: &Op) -> bool {
        debug_assert!(matches!(op[0], SYS_MMAP | SYS_MPROTECT | SYS_MUNMAP));
        let r = raw_syscall(op);
        if r < 0 && op[0] != SYS_MMAP || op[0] == SYS_MMAP && r as u64 != op[1] {
            return false;
        }
        match op[0] {
            SYS_MMAP => self.host.map(op[1], op[2], op[6], Prot::from_bits_truncate(op[3] as u32)),
            SYS_MUNMAP => self.host.unmap(op[1], op[2]),
            _ => self.host.protect(op[1], op[2], Prot::from_bits_truncate(op[3] as u32)),
        }
        true
    }

    /// Unmap everything in the window (one call per merged range).
    fn clear(&mut self, counted: bool) {
        for (s, e) in self.host.ranges() {
            // SAFETY: a range inside the guest window that we mapped.
            unsafe { libc::munmap(s as *mut libc::c_void, (e - s) as usize) };
            if counted {
                self.stats.switch_unmaps += 1;
            }
        }
        self.host.clear();
        self.owner = None;
    }

    /// After a failed host call the record may be wrong: empty the whole
    /// window with one call.
    fn reset(&mut self) {
        // SAFETY: the window holds nothing but guest mappings (checked at start-up).
        unsafe { libc::munmap(std::ptr::null_mut(), USER_END as usize) };
        self.host.clear();
        self.owner = None;
    }
}

/// Fail unless `[0, USER_END)` is free of host mappings other than guest
/// memory already installed by this backend.
fn check_window(w: &Window) -> io::Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        if a >= USER_END {
            continue;
        }
        let ours = w.host.iter().any(|(s, g)| s <= a && b <= g.end);
        if !ours {
            return Err(io::Error::other(format!(
                "host mapping '{}' lies in the tt guest window below {USER_END:#x} \
                 (is `ulimit -s` unlimited? that selects the legacy bottom-up layout)",
                line.trim()
            )));
        }
    }
    Ok(())
}

/// The stack, signal stack and start-up arguments of a guest host process,
/// in kernel memory. Freed only after the process is gone.
struct ChildMem {
    _stacks: AnonMap,
    args: Box<ChildArgs>,
}

#[repr(C)]
struct ChildArgs {
    kernel_pid: i64,
    /// `stack_t` for sigaltstack.
    ss: libc::stack_t,
    /// `struct kernel_sigaction` for SIGSEGV: handler, flags, restorer, mask.
    ksa: [u64; 4],
    /// Signal mask to set: nothing blocked.
    mask: u64,
}

/// A raw system call that touches neither errno nor TLS (the child shares
/// the parent's thread pointer).
#[inline(always)]
fn sys(n: i64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    let r: i64;
    // SAFETY: a system call instruction with its arguments in registers; the callers pass numbers and pointers valid for the call.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") n => r, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// The child side of `clone`: prepare for tracing, then stop. Runs on its
/// own stack in the kernel's memory, so it only makes raw system calls.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    let a = arg as *const ChildArgs;
    // SAFETY: `arg` is the parent's `ChildArgs`, alive until this process is dead.
    let a = unsafe { &*a };
    sys(libc::SYS_prctl, libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64, 0, 0);
    // The kernel may have died before PDEATHSIG was armed.
    if sys(libc::SYS_getppid, 0, 0, 0, 0) != a.kernel_pid {
        sys(libc::SYS_exit, 1, 0, 0, 0);
    }
    // Out of the kernel's session: terminal signals go to the kernel only.
    sys(libc::SYS_setsid, 0, 0, 0, 0);
    let mut bad = sys(libc::SYS_sigaltstack, &a.ss as *const _ as u64, 0, 0, 0);
    bad |= sys(libc::SYS_rt_sigaction, libc::SIGSEGV as u64, a.ksa.as_ptr() as u64, 0, 8);
    bad |= sys(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as u64, &a.mask as *const u64 as u64, 0, 8);
    bad |= sys(libc::SYS_ptrace, libc::PTRACE_TRACEME as u64, 0, 0, 0);
    if bad != 0 {
        sys(libc::SYS_exit, 1, 0, 0, 0);
    }
    let me = sys(libc::SYS_getpid, 0, 0, 0, 0);
    sys(libc::SYS_kill, me as u64, libc::SIGSTOP as u64, 0, 0);
    // Never resumed here: the tracer only ever runs guest code in us.
    sys(libc::SYS_exit, 1, 0, 0, 0);
    0
}

/// The host process of one address space, and its memory.
struct GuestProcess {
    // Field order matters: the process dies before its stack is freed.
    tracee: Tracee,
    _mem: ChildMem,
}

fn spawn(kernel_pid: i32) -> io::Result<GuestProcess> {
    // The host chooses where: above the window, which holds no free range
    // of the sizes it picks (checked at start-up to hold no host mapping).
    let stacks = AnonMap::new(2 * CHILD_STACK)?;
    let base = stacks.as_ptr();
    let handler = rustuml_tt_segv as *const () as usize as u64;
    let args = Box::new(ChildArgs {
        kernel_pid: kernel_pid as i64,
        // SAFETY: the signal stack is the upper half of the region just mapped.
        ss: libc::stack_t { ss_sp: unsafe { base.add(CHILD_STACK) }.cast(), ss_flags: 0, ss_size: CHILD_STACK },
        ksa: [handler, hal_uml_host::segv_detour::SA_FLAGS, segv_done(), 0],
        mask: 0,
    });
    let mem = ChildMem { _stacks: stacks, args };
    // SAFETY: the child runs `child_main` on the top of the lower half of `mem` (16-byte aligned) with a pointer to `mem.args`; CLONE_VM without CLONE_THREAD makes it a separate process sharing our memory, which we may trace; `mem` outlives it (see `GuestProcess`).
    let pid = unsafe {
        libc::clone(
            child_main,
            base.add(CHILD_STACK).cast(),
            libc::CLONE_VM | libc::SIGCHLD,
            &*mem.args as *const ChildArgs as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    match pt::wait_for_stop(pid) {
        Some(libc::SIGSTOP) => {}
        _ => {
            sys::kill_and_reap(pid);
            return Err(io::Error::other("guest host process did not start"));
        }
    }
    let tracee = Tracee::new_stopped(pid)?;
    Ok(GuestProcess { tracee, _mem: mem })
}

/// A guest address space: its host process, the record of its mappings, and
/// the operations queued for the host while it is installed.
pub struct TtSpace {
    id: u64,
    proc: GuestProcess,
    record: Record,
    pending: OpQueue,
    /// Too many operations queued while not running: reinstall from the record.
    overflow: bool,
    /// A refused operation (outside the window or physical memory).
    broken: bool,
    phys_fd: i32,
    phys_size: u64,
}

impl TtSpace {
    /// The host pid of the process that runs this space's guest code.
    pub fn host_pid(&self) -> i32 {
        self.proc.tracee.pid()
    }

    /// The record of this space's mappings.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Operations queued and not yet applied.
    pub fn pending_ops(&self) -> usize {
        self.pending.len()
    }

    fn check(&mut self, vaddr: u64, len: u64) -> bool {
        if ops::in_window(vaddr, len, USER_END) {
            return true;
        }
        // A kernel-core bug: never let it reach kernel memory.
        eprintln!("tt: refusing map operation at {vaddr:#x}+{len:#x} (outside the guest window); the space is lost");
        self.broken = true;
        false
    }

    fn queue(&mut self, f: impl FnOnce(&mut OpQueue)) {
        if self.overflow {
            return;
        }
        f(&mut self.pending);
        if self.pending.len() > MAX_PENDING {
            self.pending.clear();
            self.overflow = true;
        }
    }
}

impl AddressSpace for TtSpace {
    fn map(&mut self, vaddr: u64, len: u64, paddr: u64, prot: Prot) {
        if len == 0 || !self.check(vaddr, len) {
            return;
        }
        if paddr.checked_add(len).is_none_or(|e| e > self.phys_size) || !paddr.is_multiple_of(PAGE_SIZE as u64) {
            eprintln!("tt: refusing map of physical {paddr:#x}+{len:#x}; the space is lost");
            self.broken = true;
            return;
        }
        self.record.map(vaddr, len, paddr, prot);
        let fd = self.phys_fd;
        self.queue(|q| q.map(vaddr, len, paddr, prot, fd));
    }

    fn unmap(&mut self, vaddr: u64, len: u64) {
        if len == 0 || !self.check(vaddr, len) {
            return;
        }
        self.record.unmap(vaddr, len);
        self.queue(|q| q.unmap(vaddr, len));
    }

    fn protect(&mut self, vaddr: u64, len: u64, prot: Prot) {
        if len == 0 || !self.check(vaddr, len) {
            return;
        }
        self.record.protect(vaddr, len, prot);
        self.queue(|q| q.protect(vaddr, len, prot));
    }

    fn user_end(&self) -> u64 {
        USER_END
    }

    fn user_cpu_ns(&self) -> Option<u64> {
        host::process_user_cpu_ns(self.host_pid())
    }
}

impl Drop for TtSpace {
    fn drop(&mut self) {
        let mut w = window();
        if w.owner == Some(self.id) {
            w.clear(false);
        }
    }
}

/// The tt HAL.
pub struct TtHal {
    phys: MemfdPhys,
    tracer: Tracer,
    host: HostMachine,
    kernel_pid: i32,
}

impl TtHal {
    /// A HAL with `mem_bytes` of guest physical memory. Must be created and
    /// used on one thread: that thread traces the guest processes and gets
    /// the timer. Fails if a host mapping lies in the guest window.
    pub fn new(mem_bytes: u64) -> io::Result<TtHal> {
        check_window(&window())?;
        if let Some(cpu) = host::current_cpu() {
            host::pin_to(cpu);
        }
        let phys = MemfdPhys::new(mem_bytes)?;
        let kernel_pid = sys::getpid();
        Ok(TtHal { phys, tracer: Tracer::default(), host: HostMachine::new()?, kernel_pid })
    }

    /// Counters of the shared ptrace code (fault round trips, processes).
    pub fn stats(&self) -> Stats {
        self.tracer.stats
    }

    /// Process-wide counters of address-space switches.
    pub fn switch_stats() -> SwitchStats {
        window().stats
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: drivers::console::HostConsole) {
        self.host.set_console(console);
    }

    /// Make `space` the one mapped in the window, applying what it queued.
    fn install(w: &mut Window, space: &mut TtSpace) -> bool {
        if w.owner != Some(space.id) || space.overflow {
            // The switch: the old space's ranges out, the new one's runs in.
            w.stats.switches += 1;
            w.clear(true);
            space.pending.clear();
            space.overflow = false;
            let fd = space.phys_fd as u64;
            let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
            for (s, g) in space.record.iter() {
                w.stats.switch_maps += 1;
                if !w.apply(&[SYS_MMAP, s, g.end - s, g.prot.bits() as u64, flags, fd, g.paddr]) {
                    w.reset();
                    return false;
                }
            }
            w.owner = Some(space.id);
            return true;
        }
        let mut batch = space.pending.take();
        // Small mappings of a fault's worth of work are populated in the
        // same host call, as skas does: the guest's first touch then takes
        // no host fault.
        ops::mark_populate(&mut batch, hal_uml_host::POPULATE_MAX);
        for op in batch {
            w.stats.ops_applied += 1;
            if !w.apply(&op) {
                w.reset();
                return false;
            }
        }
        true
    }
}

impl hal::Hal for TtHal {
    type Phys = MemfdPhys;
    type Space = TtSpace;

    fn phys(&self) -> &MemfdPhys {
        &self.phys
    }

    fn new_space(&mut self) -> Result<TtSpace, HalError> {
        let proc = spawn(self.kernel_pid).map_err(|_| HalError::OutOfResources)?;
        self.tracer.stats.stubs += 1;
        Ok(TtSpace {
            id: NEXT_SPACE_ID.fetch_add(1, Ordering::Relaxed),
            proc,
            record: Record::new(),
            pending: OpQueue::default(),
            overflow: false,
            broken: false,
            phys_fd: self.phys.fd(),
            phys_size: self.phys.size(),
        })
    }

    fn run(&mut self, ctx: &mut UserContext, space: &mut TtSpace) -> Trap {
        if space.broken {
            return space.proc.tracee.lost(None);
        }
        let mut w = window();
        if !Self::install(&mut w, space) {
            space.broken = true;
            return space.proc.tracee.lost(None);
        }
        // The window stays locked while the guest runs: another HAL of this
        // process must not switch it under us.
        self.tracer.run_guest(&mut space.proc.tracee, ctx, self.host.timer(), segv_done())
    }

    hal_uml_host::host_hal_methods!();
}
