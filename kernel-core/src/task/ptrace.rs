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

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;

use super::signal::{sigbit, SigInfo};
use super::{engine::tmut, ExitStatus, Pid, Task, TaskState};
use crate::kernel::Kernel;

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
    fn syscall_trap(&self) -> u32 {
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

impl<S: AddressSpace> Kernel<S> {
    /// A system call of traced `task`: the enter stop, the call, its events,
    /// a `TRACEEXIT` stop (the exit stop comes on the way back to user mode).
    pub(crate) fn traced_syscall<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>) {
        if self.ptrace_syscall_enter(task) {
            return;
        }
        let nr = task.ctx.regs.orig_rax;
        let args = task.ctx.regs.syscall_args();
        let pid = task.pid;
        let flow = crate::syscall::dispatch(hal, self, task, nr, args);
        let exec = matches!(flow, crate::syscall::Flow::Exec);
        if let crate::syscall::Flow::Exit(st) = flow {
            if self.ptrace_exit_stop(task, st) {
                return;
            }
        }
        self.finish_syscall(hal, task, nr, &args, flow);
        if !task.is_zombie() {
            self.ptrace_syscall_done(task, exec, pid);
        }
    }

    /// Put `t` (current or in the table via `cur`) into ptrace stop `stop`
    /// reporting `status`, and tell its tracer (SIGCHLD `CLD_TRAPPED`, its
    /// wait woken). The single-step flag never shows to the tracer.
    pub(crate) fn ptrace_stop(&mut self, cur: &mut Option<&mut Task<S>>, pid: Pid, stop: Stop, status: u32) {
        let Some(t) = tmut(&mut self.tasks, cur, pid) else { return };
        let Some(p) = t.ptrace.as_mut() else { return };
        p.stop = Some(stop);
        p.report = Some(status);
        let tracer = p.tracer;
        t.stopped = true;
        t.ctx.regs.eflags &= !EFLAGS_TF;
        let is_cur = cur.as_ref().is_some_and(|c| c.pid == pid);
        if !is_cur {
            self.runq.remove(pid);
        }
        self.notify_stop_cont(cur, pid, tracer, g::CLD_TRAPPED as i32, ((status >> 8) & 0xff) as i32);
    }

    /// Syscall entry of traced `t` (the current task): the enter stop if the
    /// tracer asked for it. Returns true when the call must not be
    /// dispatched now (stopped: it is re-run on resume; or skipped by the
    /// tracer with `orig_rax = -1`).
    pub(crate) fn ptrace_syscall_enter(&mut self, t: &mut Task<S>) -> bool {
        let Some(p) = t.ptrace.as_mut() else { return false };
        if !p.in_syscall {
            p.in_syscall = true;
            p.syscall = (t.ctx.regs.orig_rax, t.ctx.regs.syscall_args());
            p.entry_stopped = false;
            if p.resume == Resume::Syscall {
                p.entry_stopped = true;
                let status = stop_status(p.syscall_trap(), 0);
                // As on Linux, the tracer sees -ENOSYS in rax at the enter stop.
                t.ctx.regs.rax = crate::Errno::ENOSYS.as_return();
                t.redo_syscall = true;
                let pid = t.pid;
                self.ptrace_stop(&mut Some(t), pid, Stop::SyscallEnter, status);
                return true;
            }
        }
        // After an enter stop the tracer may have changed the call: -1
        // skips it, and rax is the result. (A program's own syscall(-1) is
        // dispatched, and is ENOSYS.)
        p.entry_stopped && t.ctx.regs.orig_rax == u64::MAX
    }

    /// After traced `t`'s call was dispatched: the event it raised (a
    /// fork's child), exec's stop or SIGTRAP.
    pub(crate) fn ptrace_syscall_done(&mut self, t: &mut Task<S>, exec: bool, old_tid: Pid) {
        let Some(p) = t.ptrace.as_mut() else { return };
        let pid = t.pid;
        if let Some((ev, msg)) = p.pending_event.take() {
            p.event_msg = msg;
            self.ptrace_stop(&mut Some(t), pid, Stop::Event(ev), stop_status(g::SIGTRAP, ev));
            return;
        }
        if exec {
            if p.options & pt::PTRACE_O_TRACEEXEC != 0 {
                p.event_msg = u64::from(old_tid);
                let ev = pt::PTRACE_EVENT_EXEC;
                self.ptrace_stop(&mut Some(t), pid, Stop::Event(ev), stop_status(g::SIGTRAP, ev));
            } else if !p.seized {
                // The legacy SIGTRAP after a successful exec.
                t.kill_pending = Some(g::SIGTRAP);
            }
        }
    }

    /// Traced `t` calls exit: with `TRACEEXIT` it stops first and ends when
    /// resumed. Returns true when it stopped.
    pub(crate) fn ptrace_exit_stop(&mut self, t: &mut Task<S>, st: ExitStatus) -> bool {
        let Some(p) = t.ptrace.as_mut() else { return false };
        if p.options & pt::PTRACE_O_TRACEEXIT == 0 || p.exiting.is_some() {
            return false;
        }
        p.exiting = Some(st);
        p.event_msg = u64::from(st.wait_status());
        let pid = t.pid;
        let ev = pt::PTRACE_EVENT_EXIT;
        self.ptrace_stop(&mut Some(t), pid, Stop::Event(ev), stop_status(g::SIGTRAP, ev));
        true
    }

    /// On the way back to user mode (traced `t`, current): the owed
    /// syscall-exit stop, a pending `PTRACE_EVENT_EXIT` end, a
    /// `PTRACE_INTERRUPT`. Returns true when `t` must not run now.
    pub(crate) fn ptrace_return(&mut self, t: &mut Task<S>) -> bool {
        let Some(p) = t.ptrace.as_mut() else { return false };
        if let Some(st) = p.exiting {
            t.group_exit = Some(st);
            return true;
        }
        let pid = t.pid;
        if p.in_syscall && !t.redo_syscall && t.state == TaskState::Runnable {
            p.in_syscall = false;
            if p.resume == Resume::Syscall || p.resume == Resume::Step {
                if p.resume == Resume::Step {
                    // A stepped `syscall` instruction: the step ends after it.
                    p.inject = None;
                    t.signals.post(SigInfo { signo: g::SIGTRAP, code: TRAP_TRACE, pid: 0, ..SigInfo::default() });
                    return false;
                }
                let status = stop_status(p.syscall_trap(), 0);
                self.ptrace_stop(&mut Some(t), pid, Stop::SyscallExit, status);
                return true;
            }
        }
        if p.interrupt && t.state == TaskState::Runnable && !t.redo_syscall {
            p.interrupt = false;
            let status = stop_status(g::SIGTRAP, pt::PTRACE_EVENT_STOP);
            self.ptrace_stop(&mut Some(t), pid, Stop::Group, status);
            return true;
        }
        false
    }

    /// Traced `t` took `info` off its pending set: the signal-delivery stop
    /// (true), unless it is the signal the tracer handed back or SIGKILL.
    pub(crate) fn ptrace_signal_stop(&mut self, t: &mut Task<S>, info: SigInfo) -> bool {
        let pid = t.pid;
        let Some(p) = t.ptrace.as_mut() else { return false };
        if info.signo == g::SIGKILL {
            return false;
        }
        if p.inject.is_some_and(|i| i.signo == info.signo) {
            p.inject = None;
            return false;
        }
        p.siginfo = info;
        self.ptrace_stop(&mut Some(t), pid, Stop::Signal, stop_status(info.signo, 0));
        true
    }

    /// Resume tracee `pid` (in the table) from its ptrace stop, delivering
    /// `sig` if it was held at a signal-delivery stop.
    pub(crate) fn ptrace_resume(&mut self, pid: Pid, how: Resume, sig: u32) {
        let Some(t) = self.tasks.get_mut(&pid) else { return };
        let Some(p) = t.ptrace.as_mut() else { return };
        let was = p.stop.take();
        p.report = None;
        p.resume = how;
        if was == Some(Stop::Signal) && sig != 0 {
            let mut info = p.siginfo;
            if info.signo != sig {
                info = SigInfo { signo: sig, code: 0, pid: p.tracer_tgid, ..SigInfo::default() };
            }
            // Queued again, marked so that it is delivered without a stop
            // (a blocked one waits in the pending set, as on Linux).
            p.inject = Some(info);
            t.signals.post(info);
        }
        if how == Resume::Step {
            t.ctx.regs.eflags |= EFLAGS_TF;
        } else {
            t.ctx.regs.eflags &= !EFLAGS_TF;
        }
        t.stopped = false;
        if t.state == TaskState::Runnable && self.current != Some(pid) {
            self.runq.push(pid);
        }
    }

    /// Attach `tracee` to `tracer` (either may be `cur`, the task being
    /// handled; the caller made the permission checks).
    pub(crate) fn ptrace_link(&mut self, cur: &mut Task<S>, tracer: Pid, tracee: Pid, options: u32, seized: bool) {
        let mut c = Some(cur);
        let Some(tr) = tmut(&mut self.tasks, &mut c, tracer) else { return };
        let tracer_tgid = tr.tgid;
        if !tr.tracees.contains(&tracee) {
            tr.tracees.push(tracee);
        }
        if let Some(t) = tmut(&mut self.tasks, &mut c, tracee) {
            t.ptrace = Some(alloc::boxed::Box::new(Tracee::new(tracer, tracer_tgid, options, seized)));
        }
    }

    /// A new child `child` of traced `parent` (current), made by a call
    /// raising `event`: attached to the same tracer if the options ask,
    /// starting in a stop; the parent stops for the event before returning.
    pub(crate) fn ptrace_new_child(&mut self, parent: &mut Task<S>, child: Pid, event: u32) {
        let Some(p) = parent.ptrace.as_mut() else { return };
        if p.options & option_for(event) == 0 {
            return;
        }
        p.pending_event = Some((event, u64::from(child)));
        let (tracer, tracer_tgid, options, seized) = (p.tracer, p.tracer_tgid, p.options, p.seized);
        let Some(c) = self.tasks.get_mut(&child) else { return };
        let mut link = Tracee::new(tracer, tracer_tgid, options, seized);
        if seized {
            link.interrupt = true;
        } else {
            c.signals.post(SigInfo::kernel(g::SIGSTOP));
        }
        c.ptrace = Some(alloc::boxed::Box::new(link));
        if let Some(tr) = self.tasks.get_mut(&tracer) {
            if !tr.tracees.contains(&child) {
                tr.tracees.push(child);
            }
        }
    }

    /// Break the link of tracee `pid` (in the table): it runs again (with
    /// `sig` if it was held at a signal-delivery stop), and its real parent
    /// hears of it if it already died.
    pub(crate) fn ptrace_unlink(&mut self, tracer: Option<&mut Task<S>>, pid: Pid, sig: u32) {
        if let Some(tr) = tracer {
            tr.tracees.retain(|&p| p != pid);
        }
        let Some(t) = self.tasks.get_mut(&pid) else { return };
        let Some(p) = t.ptrace.take() else { return };
        if let Some(tr) = self.tasks.get_mut(&p.tracer) {
            tr.tracees.retain(|&x| x != pid);
        }
        let Some(t) = self.tasks.get_mut(&pid) else { return };
        t.ctx.regs.eflags &= !EFLAGS_TF;
        if t.is_zombie() {
            return;
        }
        if p.stop == Some(Stop::Signal) && sig != 0 {
            t.signals.post(SigInfo { signo: sig, ..p.siginfo });
        }
        if let Some(st) = p.exiting {
            t.group_exit = Some(st);
        }
        // A ptrace stop ends; a group stop in force stays.
        if p.stop.is_some() && t.stop_event.is_none() {
            t.stopped = false;
        }
        if p.stop.is_some() && (!t.stopped || t.group_exit.is_some()) && t.state == TaskState::Runnable && self.current != Some(pid) {
            self.runq.push(pid);
        }
    }

    /// Tracer `t` exits: its tracees are detached, or killed with `EXITKILL`.
    pub(crate) fn ptrace_tracer_exit(&mut self, t: &mut Task<S>) {
        let tracees = core::mem::take(&mut t.tracees);
        for pid in tracees {
            let kill = self.tasks.get(&pid).and_then(|x| x.ptrace.as_ref()).is_some_and(|p| p.options & pt::PTRACE_O_EXITKILL != 0);
            let (tgid, zombie) = self.tasks.get(&pid).map_or((0, true), |x| (x.tgid, x.is_zombie()));
            let ppid = self.tasks.get(&pid).map_or(0, |x| x.ppid);
            self.ptrace_unlink(None, pid, 0);
            if kill && !zombie {
                let group = self.group_pids(None, tgid);
                self.group_kill(&mut None, &group, ExitStatus::Signal(g::SIGKILL));
            } else if zombie {
                self.ptrace_zombie_released(pid, ppid);
            }
        }
    }

    /// A traced zombie the tracer is done with: a thread leaves the table, a
    /// process goes to its real parent's wait.
    pub(crate) fn ptrace_zombie_released(&mut self, pid: Pid, ppid: Pid) {
        let Some(z) = self.tasks.get(&pid) else { return };
        if !z.is_leader() {
            self.tasks.remove(&pid);
            return;
        }
        let (state, exit_signal) = (z.state, z.exit_signal);
        self.wake_child_waiters(ppid);
        if let Some(parent) = self.tasks.get(&ppid) {
            let ptgid = parent.tgid;
            if let (TaskState::Zombie(st), sig) = (state, exit_signal) {
                if sig != 0 {
                    let (code, status) = match st {
                        ExitStatus::Code(c) => (g::CLD_EXITED as i32, c as i32),
                        ExitStatus::Signal(s) => (g::CLD_KILLED as i32, (s & 0x7f) as i32),
                    };
                    let info = SigInfo { signo: sig, code, pid, status, ..SigInfo::default() };
                    self.post_signal(None, ptgid, info, false);
                }
            }
        }
    }

    /// Traced `pid` died (back in the table as a zombie): its tracer's wait
    /// reports it. Returns true when the tracer, not the real parent, is to
    /// collect it first (the caller then leaves it in the table).
    pub(crate) fn ptrace_tracee_died(&mut self, pid: Pid) -> bool {
        let Some(t) = self.tasks.get_mut(&pid) else { return false };
        let TaskState::Zombie(st) = t.state else { return false };
        let ppid_tgid = t.ppid;
        let Some(p) = t.ptrace.as_mut() else { return false };
        p.stop = None;
        p.report = Some(st.wait_status());
        let tracer = p.tracer;
        let tracer_tgid = p.tracer_tgid;
        t.stopped = false;
        let info = SigInfo {
            signo: g::SIGCHLD,
            code: if matches!(st, ExitStatus::Code(_)) { g::CLD_EXITED as i32 } else { g::CLD_KILLED as i32 },
            pid,
            status: match st {
                ExitStatus::Code(c) => c as i32,
                ExitStatus::Signal(s) => (s & 0x7f) as i32,
            },
            ..SigInfo::default()
        };
        let leader = t.is_leader();
        if tracer_tgid != ppid_tgid || !leader {
            self.post_signal(None, tracer_tgid, info, false);
        }
        self.wake_child_waiters(tracer);
        tracer_tgid != ppid_tgid || !leader
    }

    /// Tracees of thread group `tgid`'s threads (for wait).
    pub fn tracees_of(&self, cur: &Task<S>) -> Vec<Pid> {
        let mut v: Vec<Pid> = cur.tracees.clone();
        for t in self.tasks.values().filter(|t| t.tgid == cur.tgid && !t.tracees.is_empty()) {
            v.extend_from_slice(&t.tracees);
        }
        v
    }

    /// A fault signal for traced `t`: unblocked so the tracer sees it at
    /// the signal-delivery stop (Linux's force_sig), with the single-step
    /// code when the tracer asked for a step.
    pub(crate) fn ptrace_fault(&mut self, t: &mut Task<S>, mut info: SigInfo) {
        if let Some(p) = t.ptrace.as_ref() {
            if info.signo == g::SIGTRAP && p.resume == Resume::Step {
                info.code = TRAP_TRACE;
                info.addr = t.ctx.regs.rip;
            }
        }
        t.signals.mask &= !sigbit(info.signo);
        t.signals.post(info);
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
