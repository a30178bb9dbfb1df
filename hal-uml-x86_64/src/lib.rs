//! The skas backend ("separate kernel address space") for x86_64 Linux hosts.
//!
//! - Physical memory is one memfd, mapped shared in the kernel process.
//! - Every guest address space is a host "stub" process created from a tiny
//!   in-memory ELF ([`stub`]): it never has kernel memory mapped, and it
//!   holds nothing but the stub area above [`stub::STUB_BASE`] and the guest
//!   mappings of the physical-memory memfd.
//! - Map operations are queued per space, merged when contiguous, and applied
//!   by the stub before the space next runs: under ptrace in one extra round
//!   trip per batch, under seccomp in the same switch that resumes the
//!   guest. Small mappings (up to [`POPULATE_MAX`]) of small batches (a
//!   fault's worth, [`ops::mark_populate`]) are made with `MAP_POPULATE`, so
//!   the guest's first touch takes no host fault.
//! - Guest code runs under a trap [`Mechanism`], chosen by [`TrapMode`]
//!   (`--trap`): [`seccomp::SeccompMechanism`] (the default where the host
//!   offers `SECCOMP_RET_TRAP`: traps handled in the stub, handed over on a
//!   shared page with adaptive spinning, map operations applied by the
//!   stub's executor thread in the same switch) or
//!   [`ptrace::PtraceMechanism`] (`PTRACE_SYSEMU`, the baseline).
//! - Stubs are created by [`spawn`] in their own namespaces with an empty
//!   root and run under seccomp filters ([`filter`]) allowing only the
//!   calls the stub itself makes.
//! - By default the kernel thread is pinned to the CPU it starts on (stubs
//!   inherit it): a ptrace round trip across CPUs costs about six times
//!   more, and a seccomp hand-off is then a cheap same-CPU wake-up. Other
//!   placements: [`Placement`].
//!
//! What this backend shares with the tt backend (`hal-uml-tt`) is the host
//! layer both stand on, `hal-uml-host`: the physical-memory memfd, queued
//! and merged map operations, the ptrace [`Tracer`](hal_uml_host::tracer::Tracer)
//! (register/FPU transfer, `waitpid` decoding into traps, the `SIGSEGV`
//! access-kind detour), clocks, timer, console, idle wait, and the command
//! line of both kernel binaries. Neither backend depends on the other.
//!
//! Known limits: the stub area (code readable, data/alt-stack writable) is
//! visible to guest code, as in UML (harmless under `PTRACE_SYSEMU`; under
//! seccomp see the residual risks in [`seccomp`]); the host's `[vsyscall]`
//! page (execute-only emulation of time/gettimeofday/getcpu) cannot be
//! unmapped (under seccomp its calls trap like any other); `int $0x80`
//! is reported as an ordinary [`Trap::Syscall`]. Every [`UserContext`]
//! carries its thread's whole XSAVE state ([`xstate`]), so threads that
//! share one stub never see each other's vector registers.

pub mod filter;
pub mod ptrace;
pub mod seccomp;
pub mod spawn;
pub mod stub;

// The host layer's modules, under the names this crate has always used.
use hal_uml_host::{host, ops, timer, xstate};

use hal::{AddressSpace, HalError, Interrupts, Prot, Trap, UserContext};
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

pub use hal_uml_host::ops::{Op, OpQueue};
pub use hal_uml_host::phys::MemfdPhys;
pub use hal_uml_host::POPULATE_MAX;
pub use ptrace::{PtraceMechanism, PtraceStub, Stats};
pub use seccomp::{SeccompMechanism, SeccompStub};

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
    /// Apply queued map operations (at most one round trip per batch; a
    /// mechanism may defer the last batch to the next switch into the
    /// guest). An error is the trap to report (the context is gone).
    fn apply(&mut self, stub: &mut Self::Stub, ops: &[Op]) -> Result<(), Trap>;
    /// Run `ctx` until the next trap; stops promptly when the timer fires.
    fn run(&mut self, stub: &mut Self::Stub, ctx: &mut UserContext, timer: &timer::TimerShared) -> Trap;
    /// The kernel is about to run `next` (or, with `None`, nothing): a
    /// mechanism whose stubs could run unsupervised makes sure the one that
    /// ran last cannot. True if it had to kill one for it.
    fn leave(&mut self, _next: Option<&Self::Stub>) -> bool {
        false
    }
}

/// How guest code is trapped (`--trap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapMode {
    /// `PTRACE_SYSEMU`: the kernel traces every stub (the baseline).
    Ptrace,
    /// `SECCOMP_RET_TRAP` handled in the stub, over a shared mailbox.
    Seccomp,
}

impl std::str::FromStr for TrapMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ptrace" => Ok(TrapMode::Ptrace),
            "seccomp" => Ok(TrapMode::Seccomp),
            _ => Err(format!("'{s}' is not a trap mechanism (ptrace or seccomp)")),
        }
    }
}

/// 0: no choice made (seccomp where available), 1: ptrace, 2: seccomp.
static DEFAULT_TRAP: AtomicU8 = AtomicU8::new(0);

/// Choose the mechanism [`SkasHal::new`] uses (the `--trap` option).
pub fn set_default_trap(mode: TrapMode) {
    DEFAULT_TRAP.store(if mode == TrapMode::Ptrace { 1 } else { 2 }, Ordering::Relaxed);
}

/// `--trap MODE` of the command line ([`hal_uml_host::cli::Backend::set_trap`]).
pub fn set_trap_option(mode: &str) -> Result<(), String> {
    set_default_trap(mode.parse()?);
    Ok(())
}

/// Where the kernel thread and the stubs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// All on the CPU the kernel thread starts on: every switch is a cheap
    /// same-CPU wake-up, nothing spins. Robust on a loaded host.
    SameCpu,
    /// Seccomp only: the kernel on its CPU, the stubs on another one, and
    /// the hand-off spins (adaptively) across the two. Fastest on an idle
    /// host; a spinner competes with other host work.
    SplitCpus,
    /// Nothing pinned; seccomp spins adaptively. At the scheduler's mercy:
    /// when it puts both sides on one CPU, spinning only delays the other.
    Free,
}

/// How a [`SkasHal`] runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkasConfig {
    /// The trap mechanism.
    pub trap: TrapMode,
    /// CPU placement of the kernel thread and its stubs.
    pub placement: Placement,
}

impl SkasConfig {
    /// The defaults: the mechanism chosen by [`set_default_trap`] or the
    /// `RUSTUML_TRAP` environment variable, else seccomp where the host
    /// allows it; [`Placement::SameCpu`] (measured: a ptrace round trip
    /// across CPUs costs about six times more, and spinning seccomp
    /// hand-offs lose badly as soon as the host is busy).
    /// `RUSTUML_PIN=same|split|free` overrides the placement. (Diagnostics:
    /// `RUSTUML_STUB_NS=0` spawns stubs without namespaces; `SKAS_STATS=1`
    /// prints the round-trip counters when the HAL is dropped, and
    /// `SKAS_PROFILE=1` adds the seccomp hand-off profile, [`seccomp::PROF`].)
    pub fn from_env() -> SkasConfig {
        let trap = match DEFAULT_TRAP.load(Ordering::Relaxed) {
            1 => TrapMode::Ptrace,
            2 => TrapMode::Seccomp,
            _ => std::env::var("RUSTUML_TRAP").ok().and_then(|v| v.parse().ok()).unwrap_or(TrapMode::Seccomp),
        };
        let placement = match std::env::var("RUSTUML_PIN").ok().as_deref() {
            Some("free") | Some("0") => Placement::Free,
            Some("split") => Placement::SplitCpus,
            _ => Placement::SameCpu,
        };
        SkasConfig { trap, placement }
    }
}

enum Mech {
    Ptrace(PtraceMechanism),
    Seccomp(SeccompMechanism),
}

enum AnyStub {
    Ptrace(PtraceStub),
    Seccomp(SeccompStub),
}

/// A guest address space: a stub process plus its queued map operations.
pub struct SkasSpace {
    stub: AnyStub,
    ops: OpQueue,
    phys_size: u64,
}

impl SkasSpace {
    /// The host pid of the stub process (for tests and diagnostics).
    pub fn stub_pid(&self) -> i32 {
        match &self.stub {
            AnyStub::Ptrace(s) => s.pid(),
            AnyStub::Seccomp(s) => s.pid(),
        }
    }

    /// Operations queued and not yet applied.
    pub fn pending_ops(&self) -> usize {
        self.ops.len()
    }

    /// Queue a raw host system call for the stub's executor, unchecked: only
    /// for tests of the stubs' seccomp filters (a call they must refuse).
    #[doc(hidden)]
    pub fn debug_queue_raw_op(&mut self, op: Op) {
        self.ops.push_raw(op);
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

    fn user_cpu_ns(&self) -> Option<u64> {
        host::process_user_cpu_ns(self.stub_pid())
    }

    fn is_lost(&self) -> bool {
        match &self.stub {
            AnyStub::Ptrace(s) => s.is_dead(),
            AnyStub::Seccomp(s) => s.is_dead(),
        }
    }
}

/// The skas HAL.
pub struct SkasHal {
    phys: SkasPhys,
    mech: Mech,
    host: host::HostMachine,
    config: SkasConfig,
}

impl SkasHal {
    /// A HAL with `mem_bytes` of guest physical memory and the default
    /// configuration ([`SkasConfig::from_env`]). Must be created and used on
    /// one thread: that thread runs the stubs and gets the timer.
    pub fn new(mem_bytes: u64) -> io::Result<SkasHal> {
        Self::with_config(mem_bytes, SkasConfig::from_env())
    }

    /// A HAL with an explicit configuration. Seccomp falls back to ptrace,
    /// with a one-line warning, where the host does not offer it.
    pub fn with_config(mem_bytes: u64, mut config: SkasConfig) -> io::Result<SkasHal> {
        if config.trap == TrapMode::Seccomp && !seccomp::available() {
            eprintln!("skas: seccomp traps unavailable on this host; using ptrace");
            config.trap = TrapMode::Ptrace;
        }
        if config.trap == TrapMode::Ptrace && config.placement == Placement::SplitCpus {
            config.placement = Placement::SameCpu;
        }
        spawn::prepare();
        let phys = SkasPhys::new(mem_bytes)?;
        // Where stubs run once set up (they pin themselves at the end of
        // their set-up, which runs wherever the host puts it).
        host::allowed_cpus();
        let here = host::current_cpu();
        let stub_cpu = match config.placement {
            Placement::SameCpu => here,
            Placement::SplitCpus => host::other_cpu(),
            Placement::Free => None,
        };
        if config.placement != Placement::Free {
            if let Some(cpu) = here {
                host::pin_to(cpu);
            }
        }
        let mech = match config.trap {
            TrapMode::Ptrace => Mech::Ptrace(PtraceMechanism::new(phys.fd(), stub_cpu, config.placement == Placement::SameCpu)?),
            TrapMode::Seccomp => Mech::Seccomp(SeccompMechanism::new(phys.fd(), config.placement, stub_cpu)?),
        };
        // The kernel thread keeps the ordinary policy even beside its
        // stubs: a batch thread woken by its timer or an event does not
        // preempt the guest code running on its CPU, so a sleeper beside a
        // busy process waited out the host's time slice (4-6 ms for a 1 ms
        // nanosleep). The stubs are batch: one woken by the kernel does not
        // preempt it before it parks.
        let host = host::HostMachine::new()?;
        Ok(SkasHal { phys, mech, host, config })
    }

    /// The configuration in use (after any fallback).
    pub fn config(&self) -> SkasConfig {
        self.config
    }

    /// Counters of stub round trips.
    pub fn stats(&self) -> Stats {
        match &self.mech {
            Mech::Ptrace(m) => m.tracer.stats,
            Mech::Seccomp(m) => m.stats,
        }
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: drivers::console::HostConsole) {
        self.host.set_console(console);
    }
}

impl Drop for SkasHal {
    fn drop(&mut self) {
        if std::env::var_os("SKAS_STATS").is_some() {
            eprintln!("skas: {:?} {:?}", self.config, self.stats());
            if let Some(p) = seccomp::PROF.get() {
                let v: Vec<u64> = p.iter().map(|a| a.load(Ordering::Relaxed)).collect();
                eprintln!("skas: profile {v:?}");
            }
        }
    }
}

impl hal::Hal for SkasHal {
    type Phys = SkasPhys;
    type Space = SkasSpace;

    fn phys(&self) -> &SkasPhys {
        &self.phys
    }

    fn new_space(&mut self) -> Result<SkasSpace, HalError> {
        let stub = match &mut self.mech {
            Mech::Ptrace(m) => AnyStub::Ptrace(m.spawn()?),
            Mech::Seccomp(m) => AnyStub::Seccomp(m.spawn()?),
        };
        Ok(SkasSpace { stub, ops: OpQueue::default(), phys_size: hal::PhysMem::size(&self.phys) })
    }

    fn run(&mut self, ctx: &mut UserContext, space: &mut SkasSpace) -> Trap {
        let timer = self.host.timer();
        if let (Mech::Seccomp(m), AnyStub::Seccomp(s)) = (&mut self.mech, &space.stub) {
            if m.leave(Some(s)) {
                // The stub that ran last had to be killed: the kernel learns
                // it first (this space's operations wait in its queue).
                return Trap::Interrupt(Interrupts::LOST);
            }
        }
        let mut ops = if space.ops.is_empty() { Vec::new() } else { space.ops.take() };
        // Small mappings (a fault's worth) are populated in the same host
        // call: the guest's first touch then takes no host fault.
        ops::mark_populate(&mut ops, POPULATE_MAX);
        match (&mut self.mech, &mut space.stub) {
            (Mech::Ptrace(m), AnyStub::Ptrace(s)) => {
                if !ops.is_empty() {
                    if let Err(t) = m.apply(s, &ops) {
                        return t;
                    }
                }
                m.run(s, ctx, timer)
            }
            (Mech::Seccomp(m), AnyStub::Seccomp(s)) => {
                if !ops.is_empty() {
                    if let Err(t) = m.apply(s, &ops) {
                        return t;
                    }
                }
                m.run(s, ctx, timer)
            }
            // A space of another HAL: not ours to run.
            _ => Trap::Lost { signal: None },
        }
    }

    fn stop_guests(&mut self) -> Interrupts {
        match &mut self.mech {
            Mech::Seccomp(m) => {
                if m.leave(None) {
                    Interrupts::LOST
                } else {
                    Interrupts::empty()
                }
            }
            Mech::Ptrace(_) => Interrupts::empty(),
        }
    }

    hal_uml_host::host_hal_methods!();
}
