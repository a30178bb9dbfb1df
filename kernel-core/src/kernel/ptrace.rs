//! The ptrace stops woven into the kernel loop (the tracee state is
//! [`crate::task::ptrace`]'s; the `ptrace` call is `syscall::ptrace`'s).

use alloc::vec::Vec;

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;

use super::Kernel;
use crate::task::ptrace::*;
use crate::task::signal::{sigbit, SigInfo};
use crate::task::{ExitStatus, Pid, Task, TaskState};

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
        let Some(t) = self.procs.either(cur, pid) else { return };
        let Some(p) = t.ptrace.as_mut() else { return };
        p.stop = Some(stop);
        p.report = Some(status);
        let tracer = p.tracer;
        t.stopped = true;
        t.ctx.regs.eflags &= !EFLAGS_TF;
        let is_cur = cur.as_ref().is_some_and(|c| c.pid == pid);
        if !is_cur {
            self.procs.dequeue(pid);
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
        let Some(t) = self.procs.get_mut(pid) else { return };
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
            self.procs.enqueue(pid);
        }
    }

    /// Attach `tracee` to `tracer` (either may be `cur`, the task being
    /// handled; the caller made the permission checks).
    pub(crate) fn ptrace_link(&mut self, cur: &mut Task<S>, tracer: Pid, tracee: Pid, options: u32, seized: bool) {
        let mut c = Some(cur);
        let Some(tr) = self.procs.either(&mut c, tracer) else { return };
        let tracer_tgid = tr.tgid;
        if !tr.tracees.contains(&tracee) {
            tr.tracees.push(tracee);
        }
        if let Some(t) = self.procs.either(&mut c, tracee) {
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
        let Some(c) = self.procs.get_mut(child) else { return };
        let mut link = Tracee::new(tracer, tracer_tgid, options, seized);
        if seized {
            link.interrupt = true;
        } else {
            c.signals.post(SigInfo::kernel(g::SIGSTOP));
        }
        c.ptrace = Some(alloc::boxed::Box::new(link));
        if let Some(tr) = self.procs.get_mut(tracer) {
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
        let Some(t) = self.procs.get_mut(pid) else { return };
        let Some(p) = t.ptrace.take() else { return };
        if let Some(tr) = self.procs.get_mut(p.tracer) {
            tr.tracees.retain(|&x| x != pid);
        }
        let Some(t) = self.procs.get_mut(pid) else { return };
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
            self.procs.enqueue(pid);
        }
    }

    /// Tracer `t` exits: its tracees are detached, or killed with `EXITKILL`.
    pub(crate) fn ptrace_tracer_exit(&mut self, t: &mut Task<S>) {
        let tracees = core::mem::take(&mut t.tracees);
        for pid in tracees {
            let kill = self.procs.get(pid).and_then(|x| x.ptrace.as_ref()).is_some_and(|p| p.options & pt::PTRACE_O_EXITKILL != 0);
            let (tgid, zombie) = self.procs.get(pid).map_or((0, true), |x| (x.tgid, x.is_zombie()));
            let ppid = self.procs.get(pid).map_or(0, |x| x.ppid);
            self.ptrace_unlink(None, pid, 0);
            if kill && !zombie {
                let group = self.procs.group_pids(None, tgid);
                self.group_kill(&mut None, &group, ExitStatus::Signal(g::SIGKILL));
            } else if zombie {
                self.ptrace_zombie_released(pid, ppid);
            }
        }
    }

    /// A traced zombie the tracer is done with: a thread leaves the table, a
    /// process goes to its real parent's wait.
    pub(crate) fn ptrace_zombie_released(&mut self, pid: Pid, ppid: Pid) {
        let Some(z) = self.procs.get(pid) else { return };
        if !z.is_leader() {
            self.procs.take(pid);
            return;
        }
        let (state, exit_signal) = (z.state, z.exit_signal);
        self.wake_child_waiters(ppid);
        if let Some(parent) = self.procs.get(ppid) {
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
        let Some(t) = self.procs.get_mut(pid) else { return false };
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
        for t in self.procs.iter().filter(|t| t.tgid == cur.tgid && !t.tracees.is_empty()) {
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
