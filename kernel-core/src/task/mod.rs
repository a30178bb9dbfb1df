//! Tasks (for now one thread per process), their states, signal bookkeeping,
//! the round-robin run queue, and the process table that owns them all
//! ([`ProcessTable`]). Signal delivery and the ptrace stops of the loop are
//! the kernel layer's (`kernel/signals.rs`, `kernel/ptrace.rs`).

pub mod frame;
pub mod ptrace;
pub mod sched;
pub mod signal;
pub mod table;
#[cfg(test)]
mod tests;

use alloc::string::String;

use hal::{AddressSpace, UserContext};

use crate::fs::{FdTable, Loc};
use crate::mm::MemoryMap;
use crate::SysResult;

pub use sched::RunQueue;
pub use signal::SignalState;
pub use table::ProcessTable;

pub use crate::Pid;

/// What a blocked task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// Only its deadline (nanosleep).
    Nothing,
    /// A child changing state (wait4/waitid): the call is re-run.
    Child,
    /// Console input (read, poll): the call is re-run.
    Console,
    /// A futex wake on this key (see `syscall::futex`).
    Futex(FutexKey),
    /// A `vfork` child (this pid) to exec or exit.
    Vfork(Pid),
    /// A signal (`rt_sigsuspend`, `rt_sigtimedwait`, `pause`).
    Signal,
    /// A change on one of the pipes in `Kernel::pipe_waits` (read, write,
    /// poll): the call is re-run.
    Pipe,
}

/// What identifies a futex: (mm id, user address) for private ones,
/// (`u64::MAX`, physical address) for shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FutexKey(pub u64, pub u64);

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
    /// Killed by a signal (`| 0x80` when the default action dumps core).
    Signal(u32),
}

impl ExitStatus {
    /// The `wait4` status word.
    pub fn wait_status(self) -> u32 {
        match self {
            ExitStatus::Code(c) => (c as u32) << 8,
            // Bit 0x80 of the signal value is the core-dump flag (WCOREDUMP).
            ExitStatus::Signal(s) => s & 0xff,
        }
    }
    /// What a shell's `$?` shows.
    pub fn shell_status(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c as i32,
            ExitStatus::Signal(s) => 128 + (s & 0x7f) as i32,
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

/// Every task by id. Boxed: a task is taken out of the table while the
/// kernel handles it and put back after, at every system call, and moving
/// its ~6 KiB inline (and the B-tree's node shifts with it) showed up as a
/// tenth of the kernel's time per trap.
pub type TaskTable<S> = alloc::collections::BTreeMap<Pid, alloc::boxed::Box<Task<S>>>;

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
    /// argv of the last exec, NUL-terminated strings (`/proc/<pid>/cmdline`).
    /// A copy taken at exec: a program rewriting its argv in place is not
    /// seen, unlike Linux, which reads the stack.
    pub cmdline: alloc::vec::Vec<u8>,
    /// The environment of the last exec, likewise (`/proc/<pid>/environ`).
    pub environ: alloc::vec::Vec<u8>,
    /// Command name: base name of the path given to execve, 15 bytes at most.
    pub comm: String,
    /// Deadline of an interrupted blocking call being re-run, so a restart
    /// does not extend its timeout.
    pub restart_deadline: Option<u64>,
    /// A signal to raise on itself as soon as it is back in the kernel loop
    /// (SIGPIPE from a write, SIGSEGV after a failed exec).
    pub kill_pending: Option<u32>,
    /// End of the current timeslice (monotonic ns).
    pub slice_end: u64,
    /// Re-run the blocked system call (woken with restart) before user code.
    pub redo_syscall: bool,
    /// Thread group id (= pid of the group leader; what `getpid` returns).
    pub tgid: Pid,
    /// Which memory map it uses: tasks with the same id share one
    /// [`MemoryMap`], held in `mm` by exactly one of them (the kernel moves it
    /// to the task about to run, see [`ProcessTable::adopt_shared`]).
    pub mm_id: u64,
    /// Which fd table it uses (`CLONE_FILES`), held like `mm`.
    pub files_id: u64,
    /// Which signal-handler table it uses (`CLONE_SIGHAND`): `rt_sigaction`
    /// updates every task with the same id.
    pub sighand_id: u64,
    /// Which working directory and umask it uses (`CLONE_FS`): `chdir`,
    /// `fchdir` and `umask` update every task with the same id while
    /// `fs_shared` says another task may have it.
    pub fs_id: u64,
    /// See [`Task::fs_id`].
    pub fs_shared: bool,
    /// The nice value (`setpriority`), -20..19; inherited.
    pub nice: i32,
    /// `PR_SET_PDEATHSIG`: the signal it gets when its parent exits (0: none).
    pub pdeathsig: u32,
    /// `PR_SET_DUMPABLE`.
    pub dumpable: bool,
    /// `PR_SET_NO_NEW_PRIVS` (inherited, never cleared).
    pub no_new_privs: bool,
    /// `PR_SET_CHILD_SUBREAPER`: orphaned descendants are re-parented here
    /// rather than to init.
    pub subreaper: bool,
    /// Stopped by a stop signal (orthogonal to `state`: a stopped task runs
    /// no user code until `SIGCONT`).
    pub stopped: bool,
    /// A stop not yet reported to `wait(WUNTRACED)`: the signal.
    pub stop_event: Option<u32>,
    /// A continue not yet reported to `wait(WCONTINUED)`.
    pub cont_event: bool,
    /// Signal sent to the parent at exit (`SIGCHLD`, or 0 for threads).
    pub exit_signal: u32,
    /// `vfork` parent waiting for this task to exec or exit.
    pub vfork_parent: Option<Pid>,
    /// Set when a signal with a handler interrupted its blocked call: whether
    /// the call may be restarted (`SA_RESTART`).
    pub interrupted: Option<bool>,
    /// Mask to restore after a `rt_sigsuspend`/`ppoll` temporary mask.
    pub saved_mask: Option<u64>,
    /// An interrupted `nanosleep`: (user `rem` pointer, deadline).
    pub sleep_rem: Option<(u64, u64)>,
    /// Nesting of synchronous-fault deliveries (a fault while delivering one kills).
    pub in_fault: bool,
    /// User CPU time used (ns), measured around `Hal::run`.
    pub utime_ns: u64,
    /// System CPU time used (ns), measured around trap handling.
    pub stime_ns: u64,
    /// CPU time of reaped children (user, system).
    pub child_times: (u64, u64),
    /// Credentials.
    pub cred: Cred,
    /// Futex wait bitset (`FUTEX_WAIT_BITSET`).
    pub futex_bitset: u32,
    /// Order in which it blocked (FIFO futex wake-up).
    pub block_seq: u64,
    /// Start time (monotonic ns).
    pub start_ns: u64,
    /// Whether `fds` holds the (possibly shared) fd table of `files_id`.
    pub fds_held: bool,
    /// The whole thread group is dying with this status: the loop ends the
    /// task as soon as it picks it.
    pub group_exit: Option<ExitStatus>,
    /// The set an `rt_sigtimedwait` waits for.
    pub wait_set: u64,
    /// It has called execve (setpgid on it by its parent fails with EACCES).
    pub execed: bool,
    /// What the task costs the guest's memory budget (given back when the
    /// task is reaped).
    pub charge: Option<crate::budget::Charge>,
    /// CPU time not yet split into user and system time, and the fair-share
    /// clock (see [`crate::time::account`]).
    pub cpu: crate::time::account::CpuClock,
    /// Its tracer's hold on it (`ptrace`); `None` for an untraced task, the
    /// one thing the system-call path tests.
    pub ptrace: Option<alloc::boxed::Box<ptrace::Tracee>>,
    /// The tasks it traces (detached or killed when it exits).
    pub tracees: alloc::vec::Vec<Pid>,
    /// The auxiliary vector of the last exec (`/proc/<pid>/auxv`, which
    /// debuggers read to find where a PIE was loaded).
    pub auxv: alloc::vec::Vec<u8>,
    /// `personality(2)` flags (stored and reported; none changes behaviour).
    pub personality: u32,
}

/// User and group ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    /// Real, effective, saved, filesystem uid.
    pub uid: u32,
    #[allow(missing_docs)]
    pub euid: u32,
    #[allow(missing_docs)]
    pub suid: u32,
    #[allow(missing_docs)]
    pub fsuid: u32,
    /// Real, effective, saved, filesystem gid.
    pub gid: u32,
    #[allow(missing_docs)]
    pub egid: u32,
    #[allow(missing_docs)]
    pub sgid: u32,
    #[allow(missing_docs)]
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: alloc::vec::Vec<u32>,
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
    /// A task with everything default but the given ids and context.
    pub fn new(pid: Pid, ppid: Pid, ctx: UserContext, mm: Option<MemoryMap<S>>, fds: FdTable, cwd: Loc) -> Task<S> {
        Task {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            ctx,
            mm,
            fds,
            cwd,
            umask: 0o022,
            state: TaskState::Runnable,
            clear_child_tid: 0,
            robust_list: (0, 0),
            signals: SignalState::default(),
            rlimits: default_rlimits(),
            exe: String::new(),
            cmdline: alloc::vec::Vec::new(),
            environ: alloc::vec::Vec::new(),
            comm: String::new(),
            restart_deadline: None,
            kill_pending: None,
            slice_end: 0,
            redo_syscall: false,
            tgid: pid,
            mm_id: 0,
            files_id: 0,
            sighand_id: 0,
            fs_id: 0,
            fs_shared: false,
            nice: 0,
            pdeathsig: 0,
            dumpable: true,
            no_new_privs: false,
            subreaper: false,
            stopped: false,
            stop_event: None,
            cont_event: false,
            exit_signal: linux_raw_sys::general::SIGCHLD,
            vfork_parent: None,
            interrupted: None,
            saved_mask: None,
            sleep_rem: None,
            in_fault: false,
            utime_ns: 0,
            stime_ns: 0,
            child_times: (0, 0),
            cred: Cred::default(),
            futex_bitset: 0,
            block_seq: 0,
            start_ns: 0,
            fds_held: true,
            group_exit: None,
            wait_set: 0,
            execed: false,
            charge: None,
            cpu: Default::default(),
            ptrace: None,
            tracees: alloc::vec::Vec::new(),
            auxv: alloc::vec::Vec::new(),
            personality: 0,
        }
    }
    /// Is it a thread group leader (a process as `wait` sees it)?
    pub fn is_leader(&self) -> bool {
        self.pid == self.tgid
    }
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
