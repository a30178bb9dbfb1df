//! CPU time: who used it (user or system time, per task and machine-wide),
//! what it sets off (CPU-time timers, `RLIMIT_CPU`), and the fair share it
//! earns a task that wakes up (`vruntime`).
//!
//! The kernel measures the time it spends on a task's behalf: wall time in
//! `Hal::run` and in handling the trap. How much of the time in `run` the
//! guest really spent in user mode only the host knows (the rest is the
//! trap's round trip, which Linux would count as system time): the HAL
//! tells it per address space ([`hal::AddressSpace::user_cpu_ns`], the host's
//! own tick-sampled user time of the stub). Reading it costs a host system
//! call, so the kernel settles a task's time when it leaves the CPU and at
//! least every [`SETTLE_NS`] while it runs, not at every trap.

use alloc::collections::BTreeMap;

use super::timers::Timers;
use crate::task::Pid;

/// The longest a running task's time stays unsettled (and so the
/// granularity of `top`, CPU-time timers and `RLIMIT_CPU`).
pub const SETTLE_NS: u64 = 10_000_000;
/// How finely CPU-time timers and `RLIMIT_CPU` are checked (Linux checks
/// them at its ticks). A user-time timer can only be checked against the
/// host's figure, which moves in ticks: checking more often would only
/// interrupt the guest for nothing.
pub const CPU_TIMER_RESOLUTION_NS: u64 = 1_000_000;
/// The most host-reported user time carried from one settlement to the
/// next (a few host ticks).
pub(crate) const USER_CREDIT_MAX: u64 = 20_000_000;
/// A woken task preempts the running one if it is this much behind it in
/// virtual runtime (Linux's wake-up granularity).
pub const WAKEUP_GRANULARITY_NS: u64 = 1_000_000;
/// How far behind the least virtual runtime a sleeper may come back (half
/// of Linux's scheduling latency): sleeping earns a bounded credit.
pub const SLEEPER_CREDIT_NS: u64 = 3_000_000;

/// One task's CPU clock (updated by the kernel loop, `kernel/account.rs`).
#[derive(Clone, Debug, Default)]
pub struct CpuClock {
    /// Wall time in `Hal::run` not settled yet.
    pub(crate) run_ns: u64,
    /// Wall time in the kernel on its behalf not settled yet.
    pub(crate) kernel_ns: u64,
    /// The address space's user CPU time when the task last settled.
    pub(crate) user_mark: Option<u64>,
    /// User time the host reported and not yet matched by time in `run`:
    /// the host samples at its ticks, so its figure comes in steps.
    pub(crate) user_credit: u64,
    /// When it last settled.
    pub(crate) settled_at: u64,
    /// It is on the CPU (between the kernel loop's `stint_begin` and `stint_end`).
    pub(crate) on_cpu: bool,
    /// Virtual runtime: CPU time used, for fair wake-ups.
    pub vruntime: u64,
    /// System calls made (`rustuml-ctl NAME stats`).
    pub syscalls: u64,
}

impl CpuClock {
    /// Time used and not yet settled: (in `Hal::run`, in the kernel).
    pub fn unsettled(&self) -> (u64, u64) {
        (self.run_ns, self.kernel_ns)
    }
}

/// Machine-wide accounting and every timer. (The kernel loop's side of the
/// accounting, `kernel/account.rs`, updates the `pub(crate)` fields.)
#[derive(Default)]
pub struct KernelClock {
    /// The timers of all processes.
    pub timers: Timers,
    /// CPU time spent in user mode, all tasks (ns).
    pub user_ns: u64,
    /// CPU time spent in the kernel for tasks (ns).
    pub system_ns: u64,
    /// The least virtual runtime a runnable task may claim.
    pub(crate) min_vruntime: u64,
    /// The running task's virtual runtime.
    pub(crate) running_vruntime: u64,
    /// A woken task should take the CPU from the running one.
    pub preempt: bool,
    /// `RLIMIT_CPU`: the process CPU time at which its next `SIGXCPU` is due.
    pub(crate) xcpu_next: BTreeMap<Pid, u64>,
    /// The vDSO every process image gets, if the backend offers one.
    pub vdso: Option<super::vdso::Vdso>,
}

