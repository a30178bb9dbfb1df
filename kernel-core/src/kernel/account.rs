//! CPU-time accounting and the processes' timers as the kernel loop runs
//! them (the clocks themselves are [`crate::time::account`]'s).

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;

use super::Kernel;
use crate::time::account::*;
use crate::time::timers::Fire;
use crate::task::signal::{SigInfo, SI_TIMER};
use crate::task::{Pid, Task, TaskState};

fn user_cpu<S: AddressSpace>(t: &mut Task<S>) -> Option<u64> {
    t.mm.as_mut().and_then(|mm| mm.host().user_cpu_ns())
}

impl<S: AddressSpace> Kernel<S> {
    /// The task is about to run (again): open its stint.
    pub fn stint_begin(&mut self, t: &mut Task<S>, now: u64) {
        self.clock.min_vruntime = self.clock.min_vruntime.max(t.cpu.vruntime);
        self.clock.running_vruntime = t.cpu.vruntime;
        if t.cpu.on_cpu {
            return;
        }
        t.cpu.on_cpu = true;
        t.cpu.user_mark = user_cpu(t);
        t.cpu.settled_at = now;
    }

    /// Charge `run_ns` in user code (as far as the kernel can tell) and
    /// `kernel_ns` in the kernel to `t`; settle when it is time, firing the
    /// CPU-time timers and limits that expired.
    pub fn charge<H: Hal<Space = S>>(&mut self, hal: &mut H, t: &mut Task<S>, run_ns: u64, kernel_ns: u64) {
        t.cpu.run_ns += run_ns;
        t.cpu.kernel_ns += kernel_ns;
        t.cpu.vruntime += run_ns + kernel_ns;
        self.clock.running_vruntime = t.cpu.vruntime;
        let now = hal.now_ns();
        let pending = t.cpu.run_ns + t.cpu.kernel_ns;
        let due = self.clock.timers.cpu_left(t.tgid, t.pid).is_some_and(|l| pending >= l.max(CPU_TIMER_RESOLUTION_NS))
            || self.xcpu_due(t, pending);
        if due || now.saturating_sub(t.cpu.settled_at) >= SETTLE_NS {
            self.settle(t, now);
        }
    }

    /// The task leaves the CPU (blocks, is preempted, exits): settle.
    pub fn stint_end(&mut self, t: &mut Task<S>, now: u64) {
        if t.cpu.on_cpu {
            self.settle(t, now);
            t.cpu.on_cpu = false;
        }
    }

    /// Split the unsettled time into user and system time and charge it.
    fn settle(&mut self, t: &mut Task<S>, now: u64) {
        let (run, kern) = (core::mem::take(&mut t.cpu.run_ns), core::mem::take(&mut t.cpu.kernel_ns));
        let reading = if t.cpu.on_cpu { user_cpu(t) } else { None };
        // What the host saw the guest use in user mode, never more than the
        // time it could have: the rest of the time in `run` is the trap's.
        // The host's figure moves in ticks: what exceeds `run` now is kept
        // for the next settlements (a bounded credit), not lost.
        let user = match (reading, t.cpu.user_mark) {
            (Some(r), Some(m)) => {
                let credit = t.cpu.user_credit.saturating_add(r.saturating_sub(m));
                let user = credit.min(run);
                t.cpu.user_credit = (credit - user).min(USER_CREDIT_MAX);
                user
            }
            _ => run,
        };
        if reading.is_some() {
            t.cpu.user_mark = reading;
        }
        t.cpu.settled_at = now;
        let sys = run + kern - user;
        t.utime_ns += user;
        t.stime_ns += sys;
        self.clock.user_ns += user;
        self.clock.system_ns += sys;
        if user + sys == 0 {
            return;
        }
        let mut fires = self.clock.timers.charge(t.tgid, t.pid, user, sys);
        self.rlimit_cpu(t, &mut fires);
        self.fire_timers(Some(t), fires);
    }

    /// Whether `pending` more ns would cross the process's next `RLIMIT_CPU` mark.
    fn xcpu_due(&self, t: &Task<S>, pending: u64) -> bool {
        let soft = t.rlimits[g::RLIMIT_CPU as usize].0;
        soft != u64::MAX && {
            let used = self.process_cpu(Some(t), t.tgid);
            used + pending >= self.clock.xcpu_next.get(&t.tgid).copied().unwrap_or(soft.saturating_mul(1_000_000_000))
        }
    }

    /// `RLIMIT_CPU`: `SIGXCPU` at the soft limit and every second after,
    /// `SIGKILL` at the hard limit.
    fn rlimit_cpu(&mut self, t: &Task<S>, fires: &mut alloc::vec::Vec<Fire>) {
        let (soft, hard) = t.rlimits[g::RLIMIT_CPU as usize];
        if soft == u64::MAX && hard == u64::MAX {
            return;
        }
        let used = self.process_cpu(Some(t), t.tgid);
        let secs = |s: u64| s.saturating_mul(1_000_000_000);
        let fire = |signo| Fire { tgid: t.tgid, tid: None, signo, posix: None, missed: 0 };
        if hard != u64::MAX && used >= secs(hard) {
            fires.push(fire(g::SIGKILL));
            return;
        }
        if soft == u64::MAX {
            return;
        }
        let next = self.clock.xcpu_next.get(&t.tgid).copied().unwrap_or(secs(soft));
        if used >= next {
            fires.push(fire(g::SIGXCPU));
            self.clock.xcpu_next.insert(t.tgid, used.max(next).saturating_add(secs(1)));
        }
    }

    /// CPU time (user + system, settled) of every live thread of `tgid`
    /// and of its exited threads. `cur` is the task out of the table, if any.
    pub fn process_cpu(&self, cur: Option<&Task<S>>, tgid: Pid) -> u64 {
        let mut n: u64 = self.procs.iter().filter(|o| o.tgid == tgid).map(|o| o.utime_ns + o.stime_ns).sum();
        if let Some(c) = cur.filter(|c| c.tgid == tgid && !self.procs.contains(c.pid)) {
            n += c.utime_ns + c.stime_ns;
        }
        n
    }

    /// When the host timer must fire for the running task's CPU-time timers
    /// (its CPU time runs out at best as fast as wall time).
    pub fn cpu_deadline(&self, t: &Task<S>, now: u64) -> Option<u64> {
        let pending = t.cpu.run_ns + t.cpu.kernel_ns;
        let mut left = self.clock.timers.cpu_left(t.tgid, t.pid).map(|l| l.max(CPU_TIMER_RESOLUTION_NS).saturating_sub(pending));
        let soft = t.rlimits[g::RLIMIT_CPU as usize].0;
        if soft != u64::MAX {
            let used = self.process_cpu(Some(t), t.tgid) + pending;
            let next = self.clock.xcpu_next.get(&t.tgid).copied().unwrap_or(soft.saturating_mul(1_000_000_000));
            let l = next.saturating_sub(used);
            left = Some(left.map_or(l, |x| x.min(l)));
        }
        left.map(|l| now.saturating_add(l.max(CPU_TIMER_RESOLUTION_NS)))
    }

    /// Clock timers due at `now`: their signals.
    pub fn check_itimers(&mut self, now: u64) {
        let fires = self.clock.timers.expire(now);
        if !fires.is_empty() {
            self.fire_timers(None, fires);
        }
    }

    /// Send the signals of expired timers. `cur` is the task out of the
    /// table, if any. A POSIX timer whose signal is still pending counts an
    /// overrun instead of queueing another.
    pub fn fire_timers(&mut self, mut cur: Option<&mut Task<S>>, fires: alloc::vec::Vec<Fire>) {
        for f in fires {
            let alive = |t: &Task<S>| t.tgid == f.tgid && !t.is_zombie();
            let exists = self.procs.get(f.tgid).is_some_and(|t| alive(t)) || cur.as_deref().is_some_and(alive);
            if !exists {
                // A process that is gone (or a zombie leader): its timers go too.
                if !self.procs.iter().any(|t| alive(t)) {
                    self.clock.timers.process_exit(f.tgid);
                }
                continue;
            }
            let Some((id, value)) = f.posix else {
                let info = SigInfo::kernel(f.signo);
                self.post_signal(cur.as_deref_mut(), f.tgid, info, false);
                continue;
            };
            let missed = i32::try_from(f.missed).unwrap_or(i32::MAX);
            if self.bump_pending_overrun(cur.as_deref_mut(), f.tgid, f.signo, id, missed.saturating_add(1)) {
                continue;
            }
            let info = SigInfo { signo: f.signo, code: SI_TIMER, timerid: id, overrun: missed, value, ..SigInfo::default() };
            match f.tid {
                Some(tid) => self.post_signal(cur.as_deref_mut(), tid, info, true),
                None => self.post_signal(cur.as_deref_mut(), f.tgid, info, false),
            }
        }
    }

    /// If timer `id`'s signal is still pending in process `tgid`, add `n`
    /// to its overrun and say so.
    fn bump_pending_overrun(&mut self, cur: Option<&mut Task<S>>, tgid: Pid, signo: u32, id: i32, n: i32) -> bool {
        let bit = crate::task::signal::sigbit(signo);
        let i = (signo - 1) as usize;
        let hit = |t: &mut Task<S>| {
            let info = &mut t.signals.info[i];
            if t.tgid == tgid && t.signals.pending & bit != 0 && info.code == SI_TIMER && info.timerid == id {
                info.overrun = info.overrun.saturating_add(n);
                true
            } else {
                false
            }
        };
        if let Some(c) = cur {
            if hit(c) {
                return true;
            }
        }
        self.procs.iter_mut().any(|t| hit(t))
    }

    /// A task was woken: it goes first, and takes the CPU from the running
    /// task if that one has had more than its share (Linux's wake-up
    /// preemption; the sleeper's credit is bounded).
    pub fn wakeup_preempt(&mut self, pid: Pid) {
        let min = self.clock.min_vruntime.saturating_sub(SLEEPER_CREDIT_NS);
        let Some(t) = self.procs.get_mut(pid) else { return };
        if t.state != TaskState::Runnable {
            return;
        }
        t.cpu.vruntime = t.cpu.vruntime.max(min);
        let v = t.cpu.vruntime;
        if self.current.is_some_and(|c| c != pid) && self.clock.running_vruntime > v.saturating_add(WAKEUP_GRANULARITY_NS) {
            self.clock.preempt = true;
            self.procs.to_front(pid);
        }
    }

    /// A signal was dequeued: a POSIX timer's records its overrun.
    pub fn signal_taken(&mut self, tgid: Pid, info: &SigInfo) {
        if info.code == SI_TIMER {
            self.clock.timers.delivered(tgid, info.timerid, info.overrun);
        }
    }
}
