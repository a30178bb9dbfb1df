//! Every timer a process can arm: the interval timers (`ITIMER_REAL`,
//! `ITIMER_VIRTUAL`, `ITIMER_PROF`: `setitimer`, `alarm`) and POSIX timers
//! (`timer_create` on the wall, monotonic and CPU-time clocks).
//!
//! Timers on a clock sit in one queue ordered by their monotonic deadline,
//! so the kernel finds the next one to arm the host timer for, and the due
//! ones, without looking at the others. CPU-time timers count down as the
//! kernel charges CPU time to a process ([`Timers::charge`]); only the
//! processes that have one are looked up.
//!
//! Expiry produces [`Fire`]s; the kernel turns them into signals
//! (`Kernel::fire_timers`). A POSIX timer has at most one signal queued: an
//! expiry while it is still pending counts as an overrun (`si_overrun`,
//! `timer_getoverrun`), as on Linux.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use linux_raw_sys::general as g;

use crate::budget::Charge;
use crate::task::Pid;
use crate::Errno;

/// What a POSIX timer costs the guest's memory budget.
pub const POSIX_TIMER_COST: usize = 256;

/// `sigev_notify` values.
const SIGEV_SIGNAL: u32 = 0;
const SIGEV_NONE: u32 = 1;
const SIGEV_THREAD: u32 = 2;
const SIGEV_THREAD_ID: u32 = 4;

/// The clock a POSIX timer counts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerClock {
    /// `CLOCK_REALTIME` (and its aliases): absolute times are wall-clock.
    Real,
    /// `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME` (and aliases).
    Mono,
    /// The process's CPU time (user + system).
    ProcessCpu,
    /// One thread's CPU time.
    ThreadCpu(Pid),
}

impl TimerClock {
    fn is_cpu(self) -> bool {
        matches!(self, TimerClock::ProcessCpu | TimerClock::ThreadCpu(_))
    }
}

/// How a timer makes itself known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// `SIGEV_NONE`: only `timer_gettime` shows it.
    None,
    /// `SIGEV_SIGNAL` (to the process) or `SIGEV_THREAD_ID` (to `tid`).
    Signal {
        /// The signal.
        signo: u32,
        /// `sigev_value`.
        value: u64,
        /// The thread for `SIGEV_THREAD_ID`.
        tid: Option<Pid>,
    },
}

/// A parsed `struct sigevent`, before the thread is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigEvent {
    /// `sigev_notify`.
    pub notify: u32,
    /// `sigev_signo`.
    pub signo: u32,
    /// `sigev_value`.
    pub value: u64,
    /// `sigev_notify_thread_id`.
    pub tid: i32,
}

impl SigEvent {
    /// Parse the 64-byte `struct sigevent`.
    pub fn parse(b: &[u8; 64]) -> SigEvent {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[0..8]);
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        SigEvent { value: u64::from_le_bytes(v), signo: w(8), notify: w(12), tid: w(16) as i32 }
    }

    /// The notification it asks for; `EINVAL` for a bad signal or kind
    /// (`SIGEV_THREAD` is glibc's business: to the kernel it is a signal, as
    /// on Linux). `is_thread` says whether a tid is a thread of the caller's
    /// process.
    pub fn notify(&self, is_thread: impl Fn(Pid) -> bool) -> Result<Notify, Errno> {
        let sig_ok = (1..=64).contains(&self.signo);
        match self.notify {
            SIGEV_NONE => Ok(Notify::None),
            SIGEV_SIGNAL | SIGEV_THREAD if sig_ok => Ok(Notify::Signal { signo: self.signo, value: self.value, tid: None }),
            n if n == SIGEV_SIGNAL | SIGEV_THREAD_ID && sig_ok => {
                let tid = Pid::try_from(self.tid).map_err(|_| Errno::EINVAL)?;
                if !is_thread(tid) {
                    return Err(Errno::EINVAL);
                }
                Ok(Notify::Signal { signo: self.signo, value: self.value, tid: Some(tid) })
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

struct PosixTimer {
    clock: TimerClock,
    notify: Notify,
    /// Clock timers: the monotonic deadline. CPU timers: the CPU time left.
    armed: Option<u64>,
    interval: u64,
    /// The overrun count of the last signal delivered (`timer_getoverrun`).
    overrun_last: i32,
    _charge: Charge,
}

/// What to do about an expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fire {
    /// The process.
    pub tgid: Pid,
    /// The thread, for thread-directed signals.
    pub tid: Option<Pid>,
    /// The signal.
    pub signo: u32,
    /// A POSIX timer: (id, `sigev_value`); `None`: a kernel signal
    /// (`ITIMER_*`, `SI_KERNEL`).
    pub posix: Option<(i32, u64)>,
    /// Expirations beyond the first one since the last check.
    pub missed: u64,
}

/// A queued deadline's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Real(Pid),
    Posix(Pid, i32),
}

/// `ITIMER_VIRTUAL` (index 0) and `ITIMER_PROF` (1): (CPU time left, interval).
type CpuItimers = [(u64, u64); 2];

/// All timers of all processes.
#[derive(Default)]
pub struct Timers {
    /// `ITIMER_REAL`: (monotonic deadline, interval) per process.
    real: BTreeMap<Pid, (u64, u64)>,
    /// `ITIMER_VIRTUAL`, `ITIMER_PROF` per process (only armed ones).
    cpu_itimers: BTreeMap<Pid, CpuItimers>,
    posix: BTreeMap<(Pid, i32), PosixTimer>,
    /// Next id to try per process.
    next_id: BTreeMap<Pid, i32>,
    /// Armed CPU-clock POSIX timers per process.
    cpu_posix: BTreeMap<Pid, BTreeSet<i32>>,
    /// Clock deadlines, earliest first.
    queue: BTreeSet<(u64, Key)>,
}

/// How many intervals past `deadline` `now` is (0: just due), and the next
/// deadline after `now`.
fn reload(deadline: u64, interval: u64, now: u64) -> (u64, u64) {
    let missed = (now - deadline) / interval;
    (missed, deadline.saturating_add((missed + 1).saturating_mul(interval)))
}

impl Timers {
    /// The earliest clock deadline of any timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.first().map(|(d, _)| *d)
    }

    // ---- ITIMER_REAL ----

    /// `ITIMER_REAL` of `tgid` at `now`: (time left, interval).
    pub fn real_get(&self, tgid: Pid, now: u64) -> (u64, u64) {
        match self.real.get(&tgid) {
            Some(&(d, iv)) => (d.saturating_sub(now).max(1), iv),
            None => (0, 0),
        }
    }

    /// Arm `ITIMER_REAL` of `tgid` (`value` 0 disarms).
    pub fn real_set(&mut self, tgid: Pid, now: u64, value: u64, interval: u64) {
        if let Some((d, _)) = self.real.remove(&tgid) {
            self.queue.remove(&(d, Key::Real(tgid)));
        }
        if value != 0 {
            let d = now.saturating_add(value).min(super::MAX_DEADLINE);
            self.real.insert(tgid, (d, interval));
            self.queue.insert((d, Key::Real(tgid)));
        }
    }

    // ---- ITIMER_VIRTUAL / ITIMER_PROF ----

    /// `which` (`ITIMER_VIRTUAL` or `ITIMER_PROF`) of `tgid`: (left, interval).
    pub fn cpu_itimer_get(&self, tgid: Pid, which: u32) -> (u64, u64) {
        let i = (which == g::ITIMER_PROF) as usize;
        self.cpu_itimers.get(&tgid).map_or((0, 0), |t| t[i])
    }

    /// Arm `which` of `tgid` for `value` ns of CPU time (0 disarms).
    pub fn cpu_itimer_set(&mut self, tgid: Pid, which: u32, value: u64, interval: u64) {
        let i = (which == g::ITIMER_PROF) as usize;
        let t = self.cpu_itimers.entry(tgid).or_default();
        t[i] = if value == 0 { (0, 0) } else { (value, interval) };
        if t.iter().all(|&(v, _)| v == 0) {
            self.cpu_itimers.remove(&tgid);
        }
    }

    // ---- POSIX timers ----

    /// `timer_create`: a disarmed timer; its id. `notify` `None` is the
    /// default (`SIGALRM` with the timer's id as its value). `limit` is the
    /// most timers one process may have (`EAGAIN` past it).
    pub fn create(&mut self, tgid: Pid, clock: TimerClock, notify: Option<Notify>, charge: Charge, limit: u64) -> Result<i32, Errno> {
        let have = self.posix.range((tgid, 0)..=(tgid, i32::MAX)).count() as u64;
        if have >= limit {
            return Err(Errno::EAGAIN);
        }
        let mut id = self.next_id.get(&tgid).copied().unwrap_or(0);
        while self.posix.contains_key(&(tgid, id)) {
            id = if id == i32::MAX { 0 } else { id + 1 };
        }
        self.next_id.insert(tgid, if id == i32::MAX { 0 } else { id + 1 });
        let notify = notify.unwrap_or(Notify::Signal { signo: g::SIGALRM, value: id as u64, tid: None });
        self.posix.insert((tgid, id), PosixTimer { clock, notify, armed: None, interval: 0, overrun_last: 0, _charge: charge });
        Ok(id)
    }

    fn disarm(&mut self, tgid: Pid, id: i32) {
        let Some(t) = self.posix.get_mut(&(tgid, id)) else { return };
        if let Some(a) = t.armed.take() {
            if t.clock.is_cpu() {
                if let Some(s) = self.cpu_posix.get_mut(&tgid) {
                    s.remove(&id);
                    if s.is_empty() {
                        self.cpu_posix.remove(&tgid);
                    }
                }
            } else {
                self.queue.remove(&(a, Key::Posix(tgid, id)));
            }
        }
    }

    /// `timer_gettime`: (left, interval) at `now` (monotonic).
    pub fn gettime(&self, tgid: Pid, id: i32, now: u64) -> Result<(u64, u64), Errno> {
        let t = self.posix.get(&(tgid, id)).ok_or(Errno::EINVAL)?;
        let left = match t.armed {
            None => 0,
            Some(a) if t.clock.is_cpu() => a,
            // Due but not yet handled: still armed, so not 0.
            Some(d) => d.saturating_sub(now).max(1),
        };
        Ok((left, t.interval))
    }

    /// The clock of timer `id` (`EINVAL` when it does not exist).
    pub fn clock_of(&self, tgid: Pid, id: i32) -> Result<TimerClock, Errno> {
        self.posix.get(&(tgid, id)).map(|t| t.clock).ok_or(Errno::EINVAL)
    }

    /// `timer_settime`: arm for `value` ns (0 disarms) — a monotonic
    /// deadline for clock timers, CPU time left for CPU timers — with
    /// `interval`; returns the old setting.
    pub fn settime(&mut self, tgid: Pid, id: i32, value: Option<u64>, interval: u64, now: u64) -> Result<(u64, u64), Errno> {
        let old = self.gettime(tgid, id, now)?;
        self.disarm(tgid, id);
        let Some(t) = self.posix.get_mut(&(tgid, id)) else { return Err(Errno::EINVAL) };
        t.interval = if value.is_some() { interval } else { 0 };
        t.overrun_last = 0;
        if let Some(v) = value {
            if t.clock.is_cpu() {
                t.armed = Some(v.max(1));
                self.cpu_posix.entry(tgid).or_default().insert(id);
            } else {
                let d = v.min(super::MAX_DEADLINE);
                t.armed = Some(d);
                self.queue.insert((d, Key::Posix(tgid, id)));
            }
        }
        Ok(old)
    }

    /// `timer_getoverrun`.
    pub fn getoverrun(&self, tgid: Pid, id: i32) -> Result<i32, Errno> {
        self.posix.get(&(tgid, id)).map(|t| t.overrun_last).ok_or(Errno::EINVAL)
    }

    /// `timer_delete`.
    pub fn delete(&mut self, tgid: Pid, id: i32) -> Result<(), Errno> {
        if !self.posix.contains_key(&(tgid, id)) {
            return Err(Errno::EINVAL);
        }
        self.disarm(tgid, id);
        self.posix.remove(&(tgid, id));
        Ok(())
    }

    /// The signal of timer `id` was delivered with `overrun` missed expirations.
    pub fn delivered(&mut self, tgid: Pid, id: i32, overrun: i32) {
        if let Some(t) = self.posix.get_mut(&(tgid, id)) {
            t.overrun_last = overrun;
        }
    }

    /// How many POSIX timers `tgid` has.
    pub fn count(&self, tgid: Pid) -> usize {
        self.posix.range((tgid, 0)..=(tgid, i32::MAX)).count()
    }

    /// A thread exits: timers signalling it alone stop.
    pub fn thread_exit(&mut self, tgid: Pid, tid: Pid) {
        let ids: Vec<i32> = self
            .posix
            .range((tgid, 0)..=(tgid, i32::MAX))
            .filter(|(_, t)| t.clock == TimerClock::ThreadCpu(tid))
            .map(|(&(_, id), _)| id)
            .collect();
        for id in ids {
            self.disarm(tgid, id);
        }
    }

    /// `execve`: the POSIX timers go (the interval timers stay).
    pub fn exec(&mut self, tgid: Pid) {
        let ids: Vec<i32> = self.posix.range((tgid, 0)..=(tgid, i32::MAX)).map(|(&(_, id), _)| id).collect();
        for id in ids {
            let _ = self.delete(tgid, id);
        }
        self.next_id.remove(&tgid);
    }

    /// The process is gone: every timer goes.
    pub fn process_exit(&mut self, tgid: Pid) {
        self.exec(tgid);
        self.real_set(tgid, 0, 0, 0);
        self.cpu_itimers.remove(&tgid);
    }

    // ---- expiry ----

    /// Clock timers due at `now` (monotonic): reloaded or disarmed.
    pub fn expire(&mut self, now: u64) -> Vec<Fire> {
        let mut fires = Vec::new();
        while let Some(&(d, key)) = self.queue.first() {
            if d > now {
                break;
            }
            self.queue.pop_first();
            match key {
                Key::Real(tgid) => {
                    let Some(&(_, iv)) = self.real.get(&tgid) else { continue };
                    if iv == 0 {
                        self.real.remove(&tgid);
                    } else {
                        let (_, next) = reload(d, iv, now);
                        self.real.insert(tgid, (next, iv));
                        self.queue.insert((next, key));
                    }
                    // Linux queues one SIGALRM however late: no overruns.
                    fires.push(Fire { tgid, tid: None, signo: g::SIGALRM, posix: None, missed: 0 });
                }
                Key::Posix(tgid, id) => {
                    let Some(t) = self.posix.get_mut(&(tgid, id)) else { continue };
                    let missed = if t.interval == 0 {
                        t.armed = None;
                        0
                    } else {
                        let (missed, next) = reload(d, t.interval, now);
                        t.armed = Some(next);
                        self.queue.insert((next, key));
                        missed
                    };
                    if let Notify::Signal { signo, value, tid } = t.notify {
                        fires.push(Fire { tgid, tid, signo, posix: Some((id, value)), missed });
                    }
                }
            }
        }
        fires
    }

    /// Charge `user` and `sys` ns of CPU time of thread `tid` of `tgid` to
    /// its CPU-time timers; what expired.
    pub fn charge(&mut self, tgid: Pid, tid: Pid, user: u64, sys: u64) -> Vec<Fire> {
        let mut fires = Vec::new();
        if let Some(t) = self.cpu_itimers.get_mut(&tgid) {
            for (i, (spent, signo)) in [(user, g::SIGVTALRM), (user + sys, g::SIGPROF)].into_iter().enumerate() {
                let (left, iv) = t[i];
                if left == 0 || spent == 0 {
                    continue;
                }
                if spent < left {
                    t[i].0 = left - spent;
                    continue;
                }
                let over = spent - left;
                t[i].0 = if iv == 0 { 0 } else { iv - over % iv };
                fires.push(Fire { tgid, tid: None, signo, posix: None, missed: 0 });
            }
            if t.iter().all(|&(v, _)| v == 0) {
                self.cpu_itimers.remove(&tgid);
            }
        }
        let Some(ids) = self.cpu_posix.get(&tgid) else { return fires };
        let ids: Vec<i32> = ids.iter().copied().collect();
        for id in ids {
            let Some(t) = self.posix.get_mut(&(tgid, id)) else { continue };
            let spent = match t.clock {
                TimerClock::ThreadCpu(who) if who != tid => continue,
                _ => user + sys,
            };
            let Some(left) = t.armed else { continue };
            if spent < left {
                t.armed = Some(left - spent);
                continue;
            }
            let over = spent - left;
            let (notify, interval) = (t.notify, t.interval);
            let missed = if interval == 0 {
                self.disarm(tgid, id);
                0
            } else {
                t.armed = Some(interval - over % interval);
                over / interval
            };
            if let Notify::Signal { signo, value, tid: to } = notify {
                fires.push(Fire { tgid, tid: to, signo, posix: Some((id, value)), missed });
            }
        }
        fires
    }

    /// The least CPU time thread `tid` of `tgid` may use before one of its
    /// CPU-time timers expires (to arm the host timer for it).
    pub fn cpu_left(&self, tgid: Pid, tid: Pid) -> Option<u64> {
        let mut left: Option<u64> = None;
        let mut take = |v: u64| left = Some(left.map_or(v, |l| l.min(v)));
        if let Some(t) = self.cpu_itimers.get(&tgid) {
            for &(v, _) in t.iter() {
                if v != 0 {
                    take(v);
                }
            }
        }
        if let Some(ids) = self.cpu_posix.get(&tgid) {
            for id in ids {
                if let Some(t) = self.posix.get(&(tgid, *id)) {
                    match (t.clock, t.armed) {
                        (TimerClock::ThreadCpu(who), _) if who != tid => {}
                        (_, Some(a)) => take(a),
                        _ => {}
                    }
                }
            }
        }
        left
    }

    /// Every armed timer's deadline is in the queue and nothing else is
    /// (for invariant checks).
    pub fn check(&self) -> Result<(), &'static str> {
        let mut n = 0;
        for (&tgid, &(d, _)) in &self.real {
            n += 1;
            if !self.queue.contains(&(d, Key::Real(tgid))) {
                return Err("ITIMER_REAL not queued");
            }
        }
        for (&(tgid, id), t) in &self.posix {
            match (t.clock.is_cpu(), t.armed) {
                (false, Some(d)) => {
                    n += 1;
                    if !self.queue.contains(&(d, Key::Posix(tgid, id))) {
                        return Err("POSIX timer not queued");
                    }
                }
                (true, Some(_)) if !self.cpu_posix.get(&tgid).is_some_and(|s| s.contains(&id)) => {
                    return Err("CPU timer not indexed");
                }
                _ => {}
            }
        }
        if n != self.queue.len() {
            return Err("stale deadlines queued");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, Kind};

    fn charge() -> Charge {
        let b = Budget::new(1 << 30);
        Charge::new(&b, Kind::Timer, POSIX_TIMER_COST).unwrap()
    }

    fn sig(signo: u32) -> Option<Notify> {
        Some(Notify::Signal { signo, value: 77, tid: None })
    }

    #[test]
    fn posix_clock_timer_fires_reloads_and_counts_missed() {
        let mut t = Timers::default();
        let id = t.create(7, TimerClock::Mono, sig(g::SIGALRM), charge(), 10).unwrap();
        assert_eq!(id, 0);
        t.settime(7, id, Some(1_000), 100, 0).unwrap();
        assert_eq!(t.next_deadline(), Some(1_000));
        assert!(t.expire(999).is_empty());
        let f = t.expire(1_250);
        assert_eq!(f, [Fire { tgid: 7, tid: None, signo: g::SIGALRM, posix: Some((0, 77)), missed: 2 }]);
        assert_eq!(t.gettime(7, id, 1_250).unwrap(), (50, 100));
        t.check().unwrap();
        t.delete(7, id).unwrap();
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.delete(7, id), Err(Errno::EINVAL));
        t.check().unwrap();
    }

    #[test]
    fn cpu_timers_count_cpu_time() {
        let mut t = Timers::default();
        t.cpu_itimer_set(3, g::ITIMER_VIRTUAL, 100, 100);
        t.cpu_itimer_set(3, g::ITIMER_PROF, 150, 0);
        assert_eq!(t.cpu_left(3, 3), Some(100));
        assert!(t.charge(3, 3, 60, 0).is_empty());
        // 60 more user: VIRTUAL fires (and reloads), PROF (120 of 150) not.
        let f = t.charge(3, 3, 60, 0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].signo, g::SIGVTALRM);
        assert_eq!(t.cpu_itimer_get(3, g::ITIMER_VIRTUAL), (80, 100));
        // System time counts for PROF only.
        let f = t.charge(3, 3, 0, 40);
        assert_eq!(f.iter().map(|f| f.signo).collect::<Vec<_>>(), [g::SIGPROF]);
        assert_eq!(t.cpu_itimer_get(3, g::ITIMER_PROF), (0, 0));
        let id = t.create(3, TimerClock::ThreadCpu(4), sig(g::SIGUSR1), charge(), 10).unwrap();
        t.settime(3, id, Some(50), 0, 0).unwrap();
        assert!(t.charge(3, 3, 100, 0).iter().all(|f| f.posix.is_none()), "another thread's time");
        let f = t.charge(3, 4, 30, 30);
        assert!(f.iter().any(|f| f.posix == Some((id, 77))));
        assert_eq!(t.gettime(3, id, 0).unwrap(), (0, 0));
        t.check().unwrap();
    }

    #[test]
    fn limits_ids_and_exit() {
        let mut t = Timers::default();
        for i in 0..3 {
            assert_eq!(t.create(9, TimerClock::Real, Some(Notify::None), charge(), 3), Ok(i));
        }
        assert_eq!(t.create(9, TimerClock::Real, Some(Notify::None), charge(), 3), Err(Errno::EAGAIN));
        t.real_set(9, 0, 500, 0);
        t.settime(9, 1, Some(700), 0, 0).unwrap();
        t.check().unwrap();
        // SIGEV_NONE timers never signal.
        let f = t.expire(800);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].signo, g::SIGALRM);
        assert_eq!(t.gettime(9, 1, 800).unwrap(), (0, 0));
        t.process_exit(9);
        assert_eq!(t.count(9), 0);
        assert_eq!(t.next_deadline(), None);
        t.check().unwrap();
    }

    #[test]
    fn sigevent_parse_and_checks() {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&42u64.to_le_bytes());
        b[8..12].copy_from_slice(&10u32.to_le_bytes());
        b[12..16].copy_from_slice(&4u32.to_le_bytes());
        b[16..20].copy_from_slice(&5i32.to_le_bytes());
        let e = SigEvent::parse(&b);
        assert_eq!(e.notify(|_| false), Err(Errno::EINVAL));
        assert_eq!(e.notify(|t| t == 5), Ok(Notify::Signal { signo: 10, value: 42, tid: Some(5) }));
        b[12..16].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(SigEvent::parse(&b).notify(|_| true), Err(Errno::EINVAL));
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        b[8..12].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(SigEvent::parse(&b).notify(|_| true), Err(Errno::EINVAL));
    }
}
