//! Tasks (for now one thread per process), their states, signal bookkeeping
//! and the round-robin run queue.

pub mod sched;
pub mod signal;

use alloc::string::String;

use hal::{AddressSpace, UserContext};

use crate::fs::{FdTable, Loc};
use crate::mm::MemoryMap;
use crate::SysResult;

pub use sched::RunQueue;
pub use signal::SignalState;

/// A process / thread id.
pub type Pid = u32;

/// What a blocked task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// Only its deadline (nanosleep).
    Nothing,
    /// A child changing state (wait4/waitid): the call is re-run.
    Child,
    /// Console input (read, poll): the call is re-run.
    Console,
    /// A futex wake on this user address (in its own address space).
    Futex(u64),
    /// A change on one of the pipes in `Kernel::pipe_waits` (read, write,
    /// poll): the call is re-run.
    Pipe,
}

/// A blocked system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The event that wakes it.
    pub on: WaitOn,
    /// A monotonic deadline, if the call has a timeout.
    pub deadline: Option<u64>,
    /// The result if the deadline passes first.
    pub on_timeout: SysResult,
    /// When woken by the event: re-run the call (true) or return 0 (false).
    pub restart: bool,
}

/// How a process ended (for wait status encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(u8),
    /// Killed by a signal.
    Signal(u32),
}

impl ExitStatus {
    /// The `wait4` status word.
    pub fn wait_status(self) -> u32 {
        match self {
            ExitStatus::Code(c) => (c as u32) << 8,
            ExitStatus::Signal(s) => s & 0x7f,
        }
    }
    /// What a shell's `$?` shows.
    pub fn shell_status(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c as i32,
            ExitStatus::Signal(s) => 128 + s as i32,
        }
    }
}

/// Scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Can run (in the run queue or running).
    Runnable,
    /// Waiting in a system call.
    Blocked(Blocked),
    /// Dead, waiting for its parent to reap it.
    Zombie(ExitStatus),
}

/// Resource limits (`RLIMIT_*`), (soft, hard).
pub const RLIM_NLIMITS: usize = 16;

/// One task.
pub struct Task<S: AddressSpace> {
    /// Thread id (= pid while there is one thread per process).
    pub pid: Pid,
    /// Parent pid (0 for init).
    pub ppid: Pid,
    /// Process group.
    pub pgid: Pid,
    /// Session.
    pub sid: Pid,
    /// User registers and FPU state.
    pub ctx: UserContext,
    /// Memory; `None` once dead.
    pub mm: Option<MemoryMap<S>>,
    /// File descriptors.
    pub fds: FdTable,
    /// Working directory.
    pub cwd: Loc,
    /// File-creation mask.
    pub umask: u32,
    /// Scheduling state.
    pub state: TaskState,
    /// `set_tid_address` pointer (cleared and futex-woken at exit).
    pub clear_child_tid: u64,
    /// `set_robust_list` head (stored only).
    pub robust_list: (u64, u64),
    /// Signal dispositions, mask, pending set.
    pub signals: SignalState,
    /// Resource limits.
    pub rlimits: [(u64, u64); RLIM_NLIMITS],
    /// Path of the running executable.
    pub exe: String,
    /// Deadline of an interrupted blocking call being re-run, so a restart
    /// does not extend its timeout.
    pub restart_deadline: Option<u64>,
    /// The signal that kills it as soon as it is back in the kernel.
    pub kill_pending: Option<u32>,
    /// End of the current timeslice (monotonic ns).
    pub slice_end: u64,
    /// Re-run the blocked system call (woken with restart) before user code.
    pub redo_syscall: bool,
}

/// Default resource limits (Linux's defaults for a root login).
pub fn default_rlimits() -> [(u64, u64); RLIM_NLIMITS] {
    use linux_raw_sys::general as g;
    let inf = u64::MAX;
    let mut r = [(inf, inf); RLIM_NLIMITS];
    r[g::RLIMIT_STACK as usize] = (8 << 20, inf);
    r[g::RLIMIT_CORE as usize] = (0, inf);
    r[g::RLIMIT_NOFILE as usize] = (1024, 4096);
    r[g::RLIMIT_NPROC as usize] = (4096, 4096);
    r[g::RLIMIT_MEMLOCK as usize] = (8 << 20, 8 << 20);
    r[g::RLIMIT_SIGPENDING as usize] = (4096, 4096);
    r[g::RLIMIT_MSGQUEUE as usize] = (819_200, 819_200);
    r[g::RLIMIT_NICE as usize] = (0, 0);
    r[g::RLIMIT_RTPRIO as usize] = (0, 0);
    r
}

impl<S: AddressSpace> Task<S> {
    /// Is it dead?
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, TaskState::Zombie(_))
    }
    /// The fd limit (soft `RLIMIT_NOFILE`).
    pub fn fd_limit(&self) -> usize {
        let l = self.rlimits[linux_raw_sys::general::RLIMIT_NOFILE as usize].0;
        usize::try_from(l.min(1 << 20)).unwrap_or(1 << 20)
    }
}
