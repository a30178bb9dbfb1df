//! The skas backend ("separate kernel address space") for x86_64 Linux hosts.
//!
//! - Physical memory is one memfd, mapped shared in the kernel process.
//! - Every guest address space is a host "stub" process created from a tiny
//!   in-memory ELF ([`stub`]): it never has kernel memory mapped, and it
//!   holds nothing but the stub area above [`stub::STUB_BASE`] and the guest
//!   mappings of the physical-memory memfd.
//! - Map operations are queued per space, merged when contiguous, and applied
//!   in one round trip into the stub before the space next runs.
//! - Guest code runs under a trap [`Mechanism`]; today that is
//!   [`ptrace::PtraceMechanism`] (`PTRACE_SYSEMU`).
//! - The kernel thread is pinned to the CPU it starts on (stubs inherit it):
//!   a ptrace round trip across CPUs costs about six times more.
//!
//! Known limits: the stub area (code readable, data/alt-stack writable) is
//! visible to guest code, as in UML — harmless because guest code only runs
//! under `PTRACE_SYSEMU`; the host's `[vsyscall]` page (execute-only
//! emulation of time/gettimeofday/getcpu) cannot be unmapped; `int $0x80`
//! is reported as an ordinary [`Trap::Syscall`]; AVX/AVX-512 upper state
//! is kept per stub, not per [`UserContext`] (the hal's `FpuState` is the
//! 512-byte FXSAVE area), so threads sharing one address space share it.

pub mod ptrace;
pub mod stub;
pub mod timer;

use drivers::console::HostConsole;
use hal::{AddressSpace, Console, HalError, Interrupts, PhysMem, Prot, Trap, UserContext, PAGE_SIZE};
use std::io::{self, Write};

pub use ptrace::{PtraceMechanism, PtraceStub, Stats};

/// One queued host operation for a stub: a system call number and its six
/// arguments, executed by the stub's executor routine.
pub type Op = [u64; stub::OP_WORDS];

const SYS_MMAP: u64 = libc::SYS_mmap as u64;
const SYS_MPROTECT: u64 = libc::SYS_mprotect as u64;
const SYS_MUNMAP: u64 = libc::SYS_munmap as u64;

/// The seam between the backend and the way guest code is run and trapped,
/// so that another mechanism (seccomp in the stub, a shared-page hand-off)
/// can replace ptrace without touching memory, time or console code.
pub trait Mechanism {
    /// The host context of one address space. Dropping it ends the context.
    type Stub;
    /// Create an empty address space's context.
    fn spawn(&mut self) -> Result<Self::Stub, HalError>;
    /// Apply queued map operations (one round trip per batch). An error is
    /// the trap to report (the context is gone).
    fn apply(&mut self, stub: &mut Self::Stub, ops: &[Op]) -> Result<(), Trap>;
    /// Run `ctx` until the next trap; stops promptly when the timer fires.
    fn run(&mut self, stub: &mut Self::Stub, ctx: &mut UserContext, timer: &timer::TimerShared) -> Trap;
}

/// The physical-memory region: a memfd mapped shared into the kernel.
pub struct SkasPhys {
    fd: i32,
    base: *mut u8,
    size: u64,
}

impl SkasPhys {
    /// Create a region of `size` bytes (rounded up to whole pages).
    pub fn new(size: u64) -> io::Result<SkasPhys> {
        let size = size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "memory size is zero"));
        }
        // SAFETY: valid C string; result checked.
        let fd = unsafe { libc::memfd_create(c"rustuml-phys".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is our memfd.
        if unsafe { libc::ftruncate(fd, size as i64) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        // SAFETY: a fresh shared mapping of the whole memfd; the kernel owns it for the life of this value. NORESERVE: guest memory is sparse.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        Ok(SkasPhys { fd, base: base.cast(), size })
    }

    /// The host fd of the memfd.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    fn check(&self, paddr: u64, len: u64) {
        assert!(
            paddr.checked_add(len).is_some_and(|e| e <= self.size),
            "physical access {paddr:#x}+{len:#x} outside {:#x}",
            self.size
        );
    }
}

impl Drop for SkasPhys {
    fn drop(&mut self) {
        // SAFETY: unmapping and closing what `new` created.
        unsafe {
            libc::munmap(self.base.cast(), self.size as usize);
            libc::close(self.fd);
        }
    }
}

impl PhysMem for SkasPhys {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, paddr: u64, buf: &mut [u8]) {
        self.check(paddr, buf.len() as u64);
        // SAFETY: the range is inside the mapping (checked); guest code only writes it while it runs, and the kernel is not reading then.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(paddr as usize), buf.as_mut_ptr(), buf.len()) };
    }
    fn write(&self, paddr: u64, data: &[u8]) {
        self.check(paddr, data.len() as u64);
        // SAFETY: as in `read`; `data` cannot alias the region (it would be a reference into it, which this type never hands out).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(paddr as usize), data.len()) };
    }
    fn fill(&self, paddr: u64, len: u64, byte: u8) {
        self.check(paddr, len);
        // SAFETY: the range is inside the mapping (checked).
        unsafe { std::ptr::write_bytes(self.base.add(paddr as usize), byte, len as usize) };
    }
    fn copy(&self, src: u64, dst: u64, len: u64) {
        self.check(src, len);
        self.check(dst, len);
        // SAFETY: both ranges are inside the mapping (checked); `copy` tolerates overlap should a caller break the no-overlap contract.
        unsafe { std::ptr::copy(self.base.add(src as usize), self.base.add(dst as usize), len as usize) };
    }
}

/// A guest address space: a stub process plus its queued map operations.
pub struct SkasSpace {
    stub: PtraceStub,
    ops: Vec<Op>,
    phys_size: u64,
}

impl SkasSpace {
    /// The host pid of the stub process (for tests and diagnostics).
    pub fn stub_pid(&self) -> i32 {
        self.stub.pid()
    }

    /// Operations queued and not yet applied.
    pub fn pending_ops(&self) -> usize {
        self.ops.len()
    }

    fn in_user(&self, vaddr: u64, len: u64) -> bool {
        let ok = vaddr.is_multiple_of(PAGE_SIZE as u64)
            && len.is_multiple_of(PAGE_SIZE as u64)
            && vaddr.checked_add(len).is_some_and(|e| e <= stub::STUB_BASE);
        if !ok {
            // A kernel-core bug; never let it reach the stub area.
            eprintln!("skas: ignoring map operation at {vaddr:#x}+{len:#x} (outside user range)");
        }
        ok
    }
}

impl AddressSpace for SkasSpace {
    fn map(&mut self, vaddr: u64, len: u64, paddr: u64, prot: Prot) {
        if len == 0 || !self.in_user(vaddr, len) || paddr.checked_add(len).is_none_or(|e| e > self.phys_size) {
            return;
        }
        let prot = prot.bits() as u64;
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MMAP && l[3] == prot && l[1] + l[2] == vaddr && l[6] + l[2] == paddr {
                l[2] += len;
                return;
            }
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        self.ops.push([SYS_MMAP, vaddr, len, prot, flags, ptrace::PHYS_FD as u64, paddr]);
    }

    fn unmap(&mut self, vaddr: u64, len: u64) {
        if len == 0 || !self.in_user(vaddr, len) {
            return;
        }
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MUNMAP && l[1] + l[2] == vaddr {
                l[2] += len;
                return;
            }
            if l[0] == SYS_MUNMAP && vaddr + len == l[1] {
                l[1] = vaddr;
                l[2] += len;
                return;
            }
        }
        self.ops.push([SYS_MUNMAP, vaddr, len, 0, 0, 0, 0]);
    }

    fn protect(&mut self, vaddr: u64, len: u64, prot: Prot) {
        if len == 0 || !self.in_user(vaddr, len) {
            return;
        }
        let prot = prot.bits() as u64;
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MPROTECT && l[3] == prot && l[1] + l[2] == vaddr {
                l[2] += len;
                return;
            }
        }
        self.ops.push([SYS_MPROTECT, vaddr, len, prot, 0, 0, 0]);
    }

    fn user_end(&self) -> u64 {
        stub::STUB_BASE
    }
}

/// The skas HAL.
pub struct SkasHal {
    phys: SkasPhys,
    mech: PtraceMechanism,
    timer: timer::Timer,
    console: HostConsole,
    boot_mono: u64,
    deadline: Option<u64>,
}

/// Pin the calling thread (and so the stubs it forks) to the CPU it runs on.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed before use and passed with its size.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

impl SkasHal {
    /// A HAL with `mem_bytes` of guest physical memory. Must be created and
    /// used on one thread: that thread traces the stubs and gets the timer.
    pub fn new(mem_bytes: u64) -> io::Result<SkasHal> {
        pin_to_current_cpu();
        let phys = SkasPhys::new(mem_bytes)?;
        let mech = PtraceMechanism::new(phys.fd())?;
        let timer = timer::Timer::new()?;
        Ok(SkasHal {
            phys,
            mech,
            timer,
            console: HostConsole::new(),
            boot_mono: timer::clock_ns(libc::CLOCK_MONOTONIC),
            deadline: None,
        })
    }

    /// Counters of stub round trips.
    pub fn stats(&self) -> Stats {
        self.mech.stats
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: HostConsole) {
        self.console = console;
    }
}

impl hal::Hal for SkasHal {
    type Phys = SkasPhys;
    type Space = SkasSpace;

    fn phys(&self) -> &SkasPhys {
        &self.phys
    }

    fn new_space(&mut self) -> Result<SkasSpace, HalError> {
        let stub = self.mech.spawn()?;
        Ok(SkasSpace { stub, ops: Vec::new(), phys_size: self.phys.size })
    }

    fn run(&mut self, ctx: &mut UserContext, space: &mut SkasSpace) -> Trap {
        if !space.ops.is_empty() {
            let ops = std::mem::take(&mut space.ops);
            if let Err(t) = self.mech.apply(&mut space.stub, &ops) {
                return t;
            }
        }
        self.mech.run(&mut space.stub, ctx, self.timer.shared())
    }

    fn now_ns(&self) -> u64 {
        timer::clock_ns(libc::CLOCK_MONOTONIC) - self.boot_mono
    }

    fn realtime_ns(&self) -> u64 {
        timer::clock_ns(libc::CLOCK_REALTIME)
    }

    fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.deadline = deadline_ns;
        self.timer.set(deadline_ns.map(|d| d.saturating_add(self.boot_mono)));
    }

    fn wait_for_interrupt(&mut self) -> Interrupts {
        loop {
            if self.timer.shared().take_fired() {
                return Interrupts::TIMER;
            }
            let timeout = match self.deadline {
                Some(d) => {
                    let now = self.now_ns();
                    if now >= d {
                        // Due by our clock: report it now; the POSIX timer's
                        // own signal may still follow as a spurious tick.
                        self.deadline = None;
                        return Interrupts::TIMER;
                    }
                    let left = d - now;
                    Some(libc::timespec { tv_sec: (left / 1_000_000_000) as i64, tv_nsec: (left % 1_000_000_000) as i64 })
                }
                None => None,
            };
            let mut pfd = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }];
            let n = match self.console.input_armed() {
                Some(fd) => {
                    pfd[0].fd = fd;
                    1
                }
                None => 0,
            };
            let tp = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `pfd` holds `n` valid entries; `tp` is null or valid.
            let r = unsafe { libc::ppoll(pfd.as_mut_ptr(), n, tp, std::ptr::null()) };
            if r > 0 && pfd[0].revents != 0 {
                self.console.input_reported(pfd[0].revents & libc::POLLNVAL != 0);
                let mut irq = Interrupts::CONSOLE;
                if self.timer.shared().take_fired() {
                    irq |= Interrupts::TIMER;
                }
                return irq;
            }
            // Timeout, EINTR (the timer's signal), or nothing: re-check.
        }
    }

    fn console(&mut self) -> &mut dyn Console {
        &mut self.console
    }

    fn random(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        while off < buf.len() {
            // SAFETY: writing into the valid remainder of `buf`.
            let n = unsafe { libc::getrandom(buf[off..].as_mut_ptr().cast(), buf.len() - off, 0) };
            if n > 0 {
                off += n as usize;
            } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                panic!("getrandom failed: {}", io::Error::last_os_error());
            }
        }
    }

    fn log(&mut self, line: &str) {
        let mut e = io::stderr().lock();
        let _ = writeln!(e, "{line}");
    }
}
