//! The signal engine of the kernel loop: posting signals to threads and
//! processes, group stop/continue/kill, and delivery on the way back to
//! user mode. It lives in the kernel layer because it joins the process
//! table with signalfds, ptrace stops and the re-run of system calls.
//!
//! Killing is lazy: a fatal signal marks every thread of the group with
//! `group_exit` and makes it runnable; the loop ends each one when it picks
//! it, outside any system call, so parents are notified with every task in
//! the table.

use alloc::vec::Vec;

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;

use crate::task::frame;
use crate::task::signal::{default_action, sigbit, DefaultAction, SigInfo, NSIG, SIG_DFL, SIG_IGN, UNBLOCKABLE};
use crate::task::{ExitStatus, Pid, Task, TaskState, WaitOn};
use super::Kernel;
use crate::syscall::Restart;
use crate::Errno;

/// The exit status of a "core" default action: the core-dump bit (0x80) is
/// reported when `RLIMIT_CORE` allows a dump, as Linux does with a file
/// `core_pattern` (no core file is actually written: limitation).
pub fn core_status(core_limit: u64, sig: u32) -> ExitStatus {
    if core_limit > 0 {
        ExitStatus::Signal(sig | 0x80)
    } else {
        ExitStatus::Signal(sig)
    }
}

impl<S: AddressSpace> Kernel<S> {
    /// Post `info` to thread `tid` (`thread`) or to the process whose thread
    /// group is `tid` (any thread not blocking it). `cur` is the task being
    /// handled (not in the table), if any. Applies the immediate effects:
    /// SIGKILL and fatal default actions kill the group, stop signals stop
    /// it, SIGCONT continues it, a handled signal interrupts a blocked call.
    pub fn post_signal(&mut self, mut cur: Option<&mut Task<S>>, tid: Pid, info: SigInfo, thread: bool) {
        let sig = info.signo;
        if sig == 0 || sig as usize > NSIG {
            return;
        }
        // Find the receiving thread and its group.
        let (tgid, act, blocked) = match self.procs.either(&mut cur, tid) {
            Some(t) if !t.is_zombie() || !thread => {
                (t.tgid, t.signals.actions[(sig - 1) as usize], t.signals.mask & sigbit(sig) != 0)
            }
            // (A zombie leader: a process whose leader exited while other threads live.)
            _ => return,
        };
        // Init is unkillable from outside (Linux's SIGNAL_UNKILLABLE):
        // signals it has no handler for are dropped, SIGKILL included, when
        // another process or the kernel sends them; blocked ones stay
        // pending (the handler may change before they are unblocked; see
        // `deliver_signals`). Signals init raises on itself (kill/tgkill of
        // itself, SIGPIPE of its own write) take effect, so a program run as
        // init ends as it does natively.
        if tgid == 1 && act.handler == SIG_DFL && info.pid != 1 && !(blocked && sig != g::SIGKILL) {
            return;
        }
        let group = self.procs.group_pids(cur.as_deref(), tgid);
        if group.is_empty() {
            return;
        }
        if sig == g::SIGCONT {
            self.group_continue(&mut cur, tgid, &group);
        }
        if sig == g::SIGKILL {
            self.group_kill(&mut cur, &group, ExitStatus::Signal(sig));
            return;
        }
        if sig == g::SIGSTOP || sig == g::SIGTSTP || sig == g::SIGTTIN || sig == g::SIGTTOU {
            // A pending stop is cancelled by SIGCONT and vice versa.
            for &p in &group {
                if let Some(t) = self.procs.either(&mut cur, p) {
                    t.signals.pending &= !sigbit(g::SIGCONT);
                }
            }
        }
        if sig == g::SIGCONT {
            let stops = sigbit(g::SIGSTOP) | sigbit(g::SIGTSTP) | sigbit(g::SIGTTIN) | sigbit(g::SIGTTOU);
            for &p in &group {
                if let Some(t) = self.procs.either(&mut cur, p) {
                    t.signals.pending &= !stops;
                }
            }
        }
        // Ignored signals are discarded at once (unless blocked: the
        // disposition may change before they are unblocked).
        let ignored = act.handler == SIG_IGN || (act.handler == SIG_DFL && default_action(sig) == DefaultAction::Ignore);
        // The thread to receive it.
        let target = if thread {
            tid
        } else {
            let mut pick = None;
            for &p in &group {
                if let Some(t) = self.procs.either(&mut cur, p) {
                    if t.signals.mask & sigbit(sig) == 0 {
                        pick = Some(p);
                        if p == tgid {
                            break;
                        }
                    }
                }
            }
            pick.or(group.first().copied()).unwrap_or(tgid)
        };
        let Some(t) = self.procs.either(&mut cur, target) else { return };
        // rt_sigtimedwait waiting for exactly this signal: it takes it.
        if let TaskState::Blocked(b) = t.state {
            if b.on == WaitOn::Signal && b.restart && t.wait_set & sigbit(sig) != 0 {
                t.signals.post(info);
                let p = t.pid;
                self.signalfds.posted(tgid, sig);
                if cur.as_ref().is_some_and(|c| c.pid == p) {
                    return;
                }
                self.wake(p, None);
                return;
            }
        }
        let blocked = t.signals.mask & sigbit(sig) != 0;
        // A tracer sees even ignored signals, and decides default actions
        // at the signal-delivery stop (Linux's sig_ignored / ptrace_signal).
        let traced = t.ptrace.is_some();
        if ignored && !blocked && sig != g::SIGSTOP && !traced {
            return;
        }
        // A waiter in rt_sigtimedwait for this signal: wake it to re-check.
        if blocked {
            t.signals.post(info);
            // A signalfd of the process becomes readable.
            self.signalfds.posted(tgid, sig);
            return;
        }
        if act.handler == SIG_DFL && !traced {
            match default_action(sig) {
                DefaultAction::Terminate => {
                    self.group_kill(&mut cur, &group, ExitStatus::Signal(sig));
                    return;
                }
                DefaultAction::Core => {
                    let st = core_status(t.rlimits[g::RLIMIT_CORE as usize].0, sig);
                    self.group_kill(&mut cur, &group, st);
                    return;
                }
                DefaultAction::Stop => {
                    self.group_stop(&mut cur, tgid, &group, sig);
                    return;
                }
                DefaultAction::Ignore => return,
            }
        }
        // A handler: pending until the thread returns to user mode; a
        // blocked call is interrupted.
        t.signals.post(info);
        let pid = t.pid;
        if let TaskState::Blocked(b) = t.state {
            if b.on == WaitOn::Child && b.restart {
                // A wait for children re-scans them before the handler
                // interrupts it (see `deliver_signals`).
                t.state = TaskState::Runnable;
                t.redo_syscall = true;
                if cur.as_ref().is_none_or(|c| c.pid != pid) {
                    self.procs.enqueue(pid);
                }
            } else if !matches!(b.on, WaitOn::Vfork(_)) {
                t.state = TaskState::Runnable;
                t.redo_syscall = false;
                t.restart_deadline = None;
                t.interrupted = Some(b.restart);
                t.ctx.regs.rax = Errno::EINTR.as_return();
                self.procs.take_wait(pid);
                if cur.as_ref().is_none_or(|c| c.pid != pid) {
                    self.procs.enqueue(pid);
                }
            }
        }
    }

    /// Is a signal pending that `t` would run a handler for?
    fn handler_pending(&self, t: &Task<S>) -> bool {
        let ready = t.signals.pending & !(t.signals.mask & !UNBLOCKABLE);
        (1..=NSIG as u32).any(|sig| {
            let h = t.signals.actions[(sig - 1) as usize].handler;
            ready & sigbit(sig) != 0 && h != SIG_DFL && h != SIG_IGN
        })
    }

    /// Kill every thread in `group` with `st` (lazily, see the module doc).
    pub(crate) fn group_kill(&mut self, cur: &mut Option<&mut Task<S>>, group: &[Pid], st: ExitStatus) {
        self.procs.group_kill(cur, group, st);
    }

    /// Stop every thread of the group; the leader records the event for the
    /// parent's `wait(WUNTRACED)` and the parent gets SIGCHLD (CLD_STOPPED).
    fn group_stop(&mut self, cur: &mut Option<&mut Task<S>>, tgid: Pid, group: &[Pid], sig: u32) {
        let mut was_running = false;
        let mut traced = Vec::new();
        for &p in group {
            if let Some(t) = self.procs.either(cur, p) {
                was_running |= !t.stopped;
                t.stopped = true;
                t.cont_event = false;
                if let Some(pt) = t.ptrace.as_ref() {
                    if pt.stop.is_none() {
                        traced.push((p, pt.seized));
                    }
                }
            }
        }
        // Traced threads report the group stop to their tracer, which
        // resumes them (Linux's group-stop under ptrace).
        for (p, seized) in traced {
            let ev = if seized { linux_raw_sys::ptrace::PTRACE_EVENT_STOP } else { 0 };
            self.ptrace_stop(cur, p, crate::task::ptrace::Stop::Group, crate::task::ptrace::stop_status(sig, ev));
        }
        if !was_running {
            return;
        }
        let mut ppid = 0;
        if let Some(l) = self.procs.either(cur, tgid) {
            l.stop_event = Some(sig);
            ppid = l.ppid;
        }
        self.notify_stop_cont(cur, tgid, ppid, g::CLD_STOPPED as i32, sig as i32);
    }

    /// SIGCONT: resume a stopped group (even if SIGCONT is blocked or caught).
    fn group_continue(&mut self, cur: &mut Option<&mut Task<S>>, tgid: Pid, group: &[Pid]) {
        let mut was_stopped = false;
        for &p in group {
            let is_cur = cur.as_ref().is_some_and(|c| c.pid == p);
            if let Some(t) = self.procs.either(cur, p) {
                was_stopped |= t.stopped;
                if let Some(pt) = t.ptrace.as_mut() {
                    match pt.stop {
                        // A ptrace stop ends only at the tracer's word.
                        Some(s) if s != crate::task::ptrace::Stop::Group => continue,
                        // A group stop under ptrace ends with the group's.
                        Some(_) => {
                            pt.stop = None;
                            pt.report = None;
                        }
                        None => {}
                    }
                }
                t.stopped = false;
                if t.state == TaskState::Runnable && !is_cur {
                    self.procs.enqueue(p);
                }
            }
        }
        if !was_stopped {
            return;
        }
        let mut ppid = 0;
        if let Some(l) = self.procs.either(cur, tgid) {
            l.stop_event = None;
            l.cont_event = true;
            ppid = l.ppid;
        }
        self.notify_stop_cont(cur, tgid, ppid, g::CLD_CONTINUED as i32, g::SIGCONT as i32);
    }

    /// SIGCHLD for a stop/continue (unless the parent set SA_NOCLDSTOP), and
    /// wake the parent's wait.
    pub(crate) fn notify_stop_cont(&mut self, cur: &mut Option<&mut Task<S>>, child: Pid, ppid: Pid, code: i32, status: i32) {
        let Some(p) = self.procs.either(cur, ppid) else { return };
        let act = p.signals.actions[(g::SIGCHLD - 1) as usize];
        let (ptgid, ppid_pid) = (p.tgid, p.pid);
        if act.flags & g::SA_NOCLDSTOP as u64 == 0 {
            let info = SigInfo { signo: g::SIGCHLD, code, pid: child, status, ..SigInfo::default() };
            self.post_signal(cur.as_deref_mut(), ptgid, info, false);
        }
        self.wake_child_waiters(ppid_pid);
    }

    /// Wake every task of `ppid`'s group blocked in wait4/waitid.
    pub fn wake_child_waiters(&mut self, ppid: Pid) {
        let tgid = self.procs.get(ppid).map_or(ppid, |t| t.tgid);
        let waiting: Vec<Pid> = self
            .procs
            .iter()
            .filter(|t| t.tgid == tgid && matches!(t.state, TaskState::Blocked(b) if b.on == WaitOn::Child))
            .map(|t| t.pid)
            .collect();
        for p in waiting {
            self.wake(p, None);
        }
    }

    /// Deliver pending unblocked signals to `t`, which is about to return
    /// to user mode (its memory map adopted). Handlers get a frame; default
    /// actions kill, stop or are ignored.
    pub fn deliver_signals<H: Hal<Space = S>>(&mut self, hal: &mut H, t: &mut Task<S>) {
        // A traced task may owe its tracer a stop first (syscall exit, exit
        // event, interrupt): the one ptrace test on the way to user mode.
        if t.ptrace.is_some() && self.ptrace_return(t) {
            return;
        }
        let mut handled = false;
        // A woken wait4/waitid re-scans the children before a handler
        // interrupts it, as Linux's do_wait does: a child that is ready is
        // reported (the handler runs after); only a wait that would block
        // again becomes EINTR (or restarts, with SA_RESTART).
        let nr = t.ctx.regs.orig_rax;
        if t.redo_syscall && crate::syscall::restart_class(nr) == Restart::Rescan && self.handler_pending(t) {
            t.redo_syscall = false;
            let args = t.ctx.regs.syscall_args();
            match crate::syscall::dispatch(hal, self, t, nr, args) {
                crate::syscall::Flow::Ret(r) => super::complete(hal, self.trace, t, r),
                _ => {
                    t.interrupted = Some(true);
                    t.ctx.regs.rax = Errno::EINTR.as_return();
                }
            }
        }
        for _ in 0..NSIG {
            if t.group_exit.is_some() || t.stopped || t.is_zombie() {
                break;
            }
            let Some(info) = t.signals.take(!t.signals.mask | UNBLOCKABLE) else { break };
            self.signal_taken(t.tgid, &info);
            if t.ptrace.is_some() && self.ptrace_signal_stop(t, info) {
                break;
            }
            let sig = info.signo;
            let act = t.signals.actions[(sig - 1) as usize];
            if act.handler == SIG_IGN {
                continue;
            }
            if act.handler == SIG_DFL {
                let tgid = t.tgid;
                if tgid == 1 && info.pid != 1 && !info.fault {
                    // Init is unkillable from outside (see `post_signal`).
                    continue;
                }
                let group = self.procs.group_pids(Some(t), tgid);
                let core = core_status(t.rlimits[g::RLIMIT_CORE as usize].0, sig);
                let mut cur = Some(&mut *t);
                match default_action(sig) {
                    DefaultAction::Ignore => {}
                    DefaultAction::Terminate => self.group_kill(&mut cur, &group, ExitStatus::Signal(sig)),
                    DefaultAction::Core => self.group_kill(&mut cur, &group, core),
                    DefaultAction::Stop => self.group_stop(&mut cur, tgid, &group, sig),
                }
                continue;
            }
            // A call interrupted (or woken to re-run) becomes EINTR or restarts.
            if t.redo_syscall {
                t.redo_syscall = false;
                t.interrupted = Some(true);
                t.ctx.regs.rax = Errno::EINTR.as_return();
            }
            if let Some(restartable) = t.interrupted.take() {
                let nr = t.ctx.regs.orig_rax;
                let no_restart = crate::syscall::restart_class(nr) == Restart::NoHand;
                if restartable && !no_restart && act.flags & g::SA_RESTART as u64 != 0 {
                    t.ctx.regs.rip = t.ctx.regs.rip.wrapping_sub(2);
                    t.ctx.regs.rax = nr;
                } else if let Some((rem, deadline)) = t.sleep_rem.take() {
                    let left = deadline.saturating_sub(hal.now_ns());
                    if rem != 0 {
                        if let Some(mm) = t.mm.as_mut() {
                            let _ = mm.copy_to_user(rem, &crate::time::timespec_bytes(left), &mut self.frames, hal.phys());
                        }
                    }
                }
            }
            let old_mask = t.saved_mask.take().unwrap_or(t.signals.mask);
            match frame::setup(t, &mut self.frames, hal.phys(), &info, &act, old_mask, &hal.fpu_layout()) {
                Ok(()) => {
                    t.signals.mask = frame::handler_mask(old_mask, &act, sig);
                    if act.flags & g::SA_RESETHAND as u64 != 0 {
                        self.set_action(t, sig, crate::task::signal::SigAction::default());
                    }
                    handled = true;
                }
                Err(_) => {
                    if self.trace {
                        hal.log(&alloc::format!("[{}] cannot set up the frame for signal {sig}: SIGSEGV", t.pid));
                    }
                    let tgid = t.tgid;
                    let group = self.procs.group_pids(Some(t), tgid);
                    let st = core_status(t.rlimits[g::RLIMIT_CORE as usize].0, g::SIGSEGV);
                    self.group_kill(&mut Some(&mut *t), &group, st);
                    return;
                }
            }
        }
        if let Some(r) = t.interrupted.take() {
            // Interrupted, but no handler ran after all (disposition changed):
            // restart transparently if the call allows it.
            if r && t.group_exit.is_none() {
                t.ctx.regs.rip = t.ctx.regs.rip.wrapping_sub(2);
                t.ctx.regs.rax = t.ctx.regs.orig_rax;
            }
        }
        if !handled {
            if let Some(m) = t.saved_mask.take() {
                t.signals.mask = m;
            }
        }
    }

    /// Set the disposition of `sig` for `t` and every task sharing its
    /// handler table.
    pub fn set_action(&mut self, t: &mut Task<S>, sig: u32, act: crate::task::signal::SigAction) {
        let idx = (sig - 1) as usize;
        t.signals.actions[idx] = act;
        let id = t.sighand_id;
        let ignore = act.handler == SIG_IGN || (act.handler == SIG_DFL && default_action(sig) == DefaultAction::Ignore);
        for o in self.procs.iter_mut().filter(|o| o.sighand_id == id) {
            o.signals.actions[idx] = act;
            if ignore {
                o.signals.pending &= !sigbit(sig);
            }
        }
        if ignore {
            t.signals.pending &= !sigbit(sig);
        }
    }

    /// A synchronous fault of `t` (the running task): a handler gets it,
    /// unless it is blocked or ignored or a fault hits while delivering one,
    /// which kill (as Linux's force_sig).
    pub fn fault_signal(&mut self, t: &mut Task<S>, info: SigInfo) {
        if t.ptrace.is_some() {
            self.ptrace_fault(t, info);
            return;
        }
        let sig = info.signo;
        let idx = (sig - 1) as usize;
        let act = t.signals.actions[idx];
        let blocked = t.signals.mask & sigbit(sig) != 0;
        if act.handler <= SIG_IGN || blocked || t.in_fault {
            let tgid = t.tgid;
            let group = self.procs.group_pids(Some(t), tgid);
            let st = if sig == g::SIGKILL { ExitStatus::Signal(sig) } else { core_status(t.rlimits[g::RLIMIT_CORE as usize].0, sig) };
            self.group_kill(&mut Some(&mut *t), &group, st);
            return;
        }
        t.signals.post(info);
    }
}
