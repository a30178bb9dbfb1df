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
//! Shared with the tt backend (`hal-uml-tt`), which depends on this crate:
//! [`phys`] (the memfd), [`ops`] (queued, merged map operations),
//! [`ptrace`]'s [`ptrace::Tracee`]/[`ptrace::Tracer`] (register/FPU transfer,
//! `waitpid` decoding into traps, the `SIGSEGV` access-kind detour),
//! [`timer`] and [`host`] (clocks, timer, console, idle wait), and `cli`
//! (the command line and boot glue of both kernel binaries, feature
//! `kernel`).
//!
//! Known limits: the stub area (code readable, data/alt-stack writable) is
//! visible to guest code, as in UML — harmless because guest code only runs
//! under `PTRACE_SYSEMU`; the host's `[vsyscall]` page (execute-only
//! emulation of time/gettimeofday/getcpu) cannot be unmapped; `int $0x80`
//! is reported as an ordinary [`Trap::Syscall`]; AVX/AVX-512 upper state
//! is kept per stub, not per [`UserContext`] (the hal's `FpuState` is the
//! 512-byte FXSAVE area), so threads sharing one address space share it.

#[cfg(feature = "kernel")]
pub mod cli;
pub mod host;
pub mod ops;
pub mod phys;
pub mod ptrace;
pub mod stub;
pub mod timer;

use hal::{AddressSpace, Console, HalError, Interrupts, Prot, Trap, UserContext};
use std::io;

pub use ops::{Op, OpQueue};
pub use phys::MemfdPhys;
pub use ptrace::{PtraceMechanism, PtraceStub, Stats};

/// The skas name of the shared physical-memory region.
pub type SkasPhys = MemfdPhys;

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

/// A guest address space: a stub process plus its queued map operations.
pub struct SkasSpace {
    stub: PtraceStub,
    ops: OpQueue,
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
        let ok = ops::in_window(vaddr, len, stub::STUB_BASE);
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
        self.ops.map(vaddr, len, paddr, prot, ptrace::PHYS_FD);
    }

    fn unmap(&mut self, vaddr: u64, len: u64) {
        if len == 0 || !self.in_user(vaddr, len) {
            return;
        }
        self.ops.unmap(vaddr, len);
    }

    fn protect(&mut self, vaddr: u64, len: u64, prot: Prot) {
        if len == 0 || !self.in_user(vaddr, len) {
            return;
        }
        self.ops.protect(vaddr, len, prot);
    }

    fn user_end(&self) -> u64 {
        stub::STUB_BASE
    }
}

/// The skas HAL.
pub struct SkasHal {
    phys: SkasPhys,
    mech: PtraceMechanism,
    host: host::HostMachine,
}

impl SkasHal {
    /// A HAL with `mem_bytes` of guest physical memory. Must be created and
    /// used on one thread: that thread traces the stubs and gets the timer.
    pub fn new(mem_bytes: u64) -> io::Result<SkasHal> {
        host::pin_to_current_cpu();
        let phys = SkasPhys::new(mem_bytes)?;
        let mech = PtraceMechanism::new(phys.fd())?;
        Ok(SkasHal { phys, mech, host: host::HostMachine::new()? })
    }

    /// Counters of stub round trips.
    pub fn stats(&self) -> Stats {
        self.mech.tracer.stats
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: drivers::console::HostConsole) {
        self.host.set_console(console);
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
        Ok(SkasSpace { stub, ops: OpQueue::default(), phys_size: hal::PhysMem::size(&self.phys) })
    }

    fn run(&mut self, ctx: &mut UserContext, space: &mut SkasSpace) -> Trap {
        if !space.ops.is_empty() {
            let ops = space.ops.take();
            if let Err(t) = self.mech.apply(&mut space.stub, &ops) {
                return t;
            }
        }
        self.mech.run(&mut space.stub, ctx, self.host.timer())
    }

    fn now_ns(&self) -> u64 {
        self.host.now_ns()
    }

    fn realtime_ns(&self) -> u64 {
        self.host.realtime_ns()
    }

    fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.host.set_timer(deadline_ns);
    }

    fn wait_for_interrupt(&mut self) -> Interrupts {
        self.host.wait_for_interrupt()
    }

    fn console(&mut self) -> &mut dyn Console {
        self.host.console()
    }

    fn random(&mut self, buf: &mut [u8]) {
        self.host.random(buf);
    }

    fn log(&mut self, line: &str) {
        self.host.log(line);
    }
}
