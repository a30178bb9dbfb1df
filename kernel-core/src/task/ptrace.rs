//! Tracer and tracee state (`ptrace`), and the stops woven into the loop.
//!
//! A traced task carries a [`Tracee`] (boxed, so an untraced task pays one
//! null pointer, tested once on the way into a system call and once on the
//! way back to user mode). A tracee in a ptrace stop is `stopped` like a
//! group-stopped task (the loop does not pick it) and its [`Tracee::stop`]
//! says which stop it is in; only the tracer's `PTRACE_CONT`/`SYSCALL`/
//! `SINGLESTEP`/`DETACH` (or `SIGKILL`) lets it go — `SIGCONT` does not.
//!
//! The stops, as Linux has them:
//! - syscall-enter and syscall-exit stops (`PTRACE_SYSCALL`), reported as
//!   `SIGTRAP` (`| 0x80` with `TRACESYSGOOD`). The enter stop happens
//!   before dispatch; the call then runs with the registers the tracer left
//!   (`orig_rax == -1` skips it, `rax` stays what the tracer put there). The
//!   exit stop happens when the call is complete, however it completed
//!   (result, timeout, interrupted), on the way back to user mode.
//! - signal-delivery stops: every signal but `SIGKILL` the tracee dequeues
//!   is shown to the tracer first, which resumes with the signal to deliver
//!   (0: none).
//! - event stops: fork/vfork/clone (the child is attached too), exec, exit.
//! - group stops, and `PTRACE_INTERRUPT`/the first stop of a seized child
//!   (`PTRACE_EVENT_STOP`).
//!
//! The tracer finds its tracees' reports with `wait4`/`waitid` (see
//! `syscall::process`), and its own `tracees` list is what its exit walks to
//! detach them (or kill them, with `PTRACE_O_EXITKILL`).

use alloc::vec::Vec;

use hal::AddressSpace;
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;

use super::signal::SigInfo;
use super::{ExitStatus, Pid, Task};

/// `eflags.TF`: the CPU traps after the next instruction.
pub const EFLAGS_TF: u64 = 0x100;
/// `si_code` of a single-step trap.
pub const TRAP_TRACE: i32 = 2;

/// How the tracer last resumed the tracee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// `PTRACE_CONT` (or not resumed yet).
    Cont,
    /// `PTRACE_SYSCALL`: stop at the next syscall entry or exit.
    Syscall,
    /// `PTRACE_SINGLESTEP`: stop after one instruction.
    Step,
}

/// Which ptrace stop a tracee is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Before a system call runs.
    SyscallEnter,
    /// After a system call completed.
    SyscallExit,
    /// Holding a signal about to be delivered.
    Signal,
    /// A `PTRACE_EVENT_*` stop.
    Event(u32),
    /// Group stop (or `PTRACE_EVENT_STOP` of a seized tracee).
    Group,
}

/// The tracee side of a ptrace link.
#[derive(Clone, Debug)]
pub struct Tracee {
    /// The tracing thread.
    pub tracer: Pid,
    /// Its thread group (whose `wait` sees this tracee).
    pub tracer_tgid: Pid,
    /// `PTRACE_O_*`.
    pub options: u32,
    /// Attached with `PTRACE_SEIZE` (no SIGSTOP at attach, `PTRACE_EVENT_STOP`).
    pub seized: bool,
    /// How it was last resumed.
    pub resume: Resume,
    /// Between syscall entry and completion (so a re-run of a blocked call
    /// does not stop at entry again, and the exit stop is owed).
    pub in_syscall: bool,
    /// The stop it is in (None: running).
    pub stop: Option<Stop>,
    /// A status word not yet collected by the tracer's wait.
    pub report: Option<u32>,
    /// The signal of the last signal-delivery stop (`PTRACE_GETSIGINFO`).
    pub siginfo: SigInfo,
    /// A signal the tracer handed back: delivered without another stop.
    pub inject: Option<SigInfo>,
    /// `PTRACE_GETEVENTMSG`.
    pub event_msg: u64,
    /// An event the call being handled raised (fork/clone/vfork child), to
    /// stop for before the call returns: (event, message).
    pub pending_event: Option<(u32, u64)>,
    /// A `PTRACE_EVENT_EXIT` stop was shown: end with this status on resume.
    pub exiting: Option<ExitStatus>,
    /// The system call of the current syscall stop (nr, args), for
    /// `PTRACE_GET_SYSCALL_INFO`.
    pub syscall: (u64, [u64; 6]),
    /// `PTRACE_INTERRUPT` asked for a `PTRACE_EVENT_STOP`.
    pub interrupt: bool,
    /// The current call was shown at an enter stop (the tracer may have
    /// rewritten it).
    pub entry_stopped: bool,
}

impl Tracee {
    /// A fresh link to `tracer` (of group `tracer_tgid`).
    pub fn new(tracer: Pid, tracer_tgid: Pid, options: u32, seized: bool) -> Tracee {
        Tracee {
            tracer,
            tracer_tgid,
            options,
            seized,
            resume: Resume::Cont,
            in_syscall: false,
            stop: None,
            report: None,
            siginfo: SigInfo::default(),
            inject: None,
            event_msg: 0,
            pending_event: None,
            exiting: None,
            syscall: (0, [0; 6]),
            interrupt: false,
            entry_stopped: false,
        }
    }
    /// The `SIGTRAP` of a syscall stop (`| 0x80` with `TRACESYSGOOD`).
    pub fn syscall_trap(&self) -> u32 {
        if self.options & pt::PTRACE_O_TRACESYSGOOD != 0 {
            g::SIGTRAP | 0x80
        } else {
            g::SIGTRAP
        }
    }
}

/// The wait status of a stop with signal byte `sig` and event `event`.
pub fn stop_status(sig: u32, event: u32) -> u32 {
    0x7f | ((sig & 0xff) << 8) | (event << 16)
}

/// The option bit that asks for `event` stops.
pub fn option_for(event: u32) -> u32 {
    match event {
        pt::PTRACE_EVENT_FORK => pt::PTRACE_O_TRACEFORK,
        pt::PTRACE_EVENT_VFORK => pt::PTRACE_O_TRACEVFORK,
        pt::PTRACE_EVENT_CLONE => pt::PTRACE_O_TRACECLONE,
        pt::PTRACE_EVENT_EXEC => pt::PTRACE_O_TRACEEXEC,
        pt::PTRACE_EVENT_VFORK_DONE => pt::PTRACE_O_TRACEVFORKDONE,
        pt::PTRACE_EVENT_EXIT => pt::PTRACE_O_TRACEEXIT,
        _ => 0,
    }
}


/// Can a task with credentials `from` (not root) trace one with `to`?
/// Linux's `__ptrace_may_access` without capabilities: every id of the
/// target's real, effective and saved set is the caller's real uid (and
/// likewise for gids), and the target is dumpable.
pub fn may_access<S: AddressSpace>(from: &Task<S>, to: &Task<S>) -> bool {
    if from.tgid == to.tgid {
        return true;
    }
    if from.cred.euid == 0 {
        return true;
    }
    let (f, c) = (&from.cred, &to.cred);
    let uids = f.uid == c.uid && f.uid == c.euid && f.uid == c.suid;
    let gids = f.gid == c.gid && f.gid == c.egid && f.gid == c.sgid;
    uids && gids && to.dumpable
}

/// The auxiliary vector `exec` just laid out on `t`'s stack (above argc,
/// the `nptrs` argv and envp pointers and their two NULLs), up to and with
/// its `AT_NULL` pair: one copy at exec, so `/proc/<pid>/auxv` never reads
/// a stack the program may have changed since.
pub fn read_auxv<S: AddressSpace>(t: &mut Task<S>, nptrs: usize, frames: &mut crate::mm::Frames, phys: &impl hal::PhysMem) -> Vec<u8> {
    /// More pairs than exec writes.
    const MAX_PAIRS: usize = 32;
    let at = t.ctx.regs.rsp.saturating_add(8 * (nptrs as u64 + 3));
    let Some(mm) = t.mm.as_mut() else { return Vec::new() };
    let room = mm.stack_top().saturating_sub(at).min(MAX_PAIRS as u64 * 16);
    let mut b = alloc::vec![0u8; room as usize];
    if mm.copy_from_user(at, &mut b, frames, phys).is_err() {
        return Vec::new();
    }
    let end = b.chunks(16).position(|p| p[..8] == [0; 8]).map_or(b.len(), |i| (i + 1) * 16);
    b.truncate(end);
    b
}
