//! Scheduling attributes programs read and set: `getpriority`/
//! `setpriority` (the nice value, kept per task and inherited) and the
//! POSIX scheduling queries (`sched_getscheduler`, `sched_getparam`,
//! `sched_get_priority_min/max`, `sched_rr_get_interval`). The scheduler
//! itself is round-robin and does not weigh nice values yet; every task
//! reports `SCHED_OTHER`, and real-time policies are refused with `EPERM`
//! (see [`sched_setscheduler`]).

use hal::Hal;

use super::SysCtx;
use crate::task::Pid;
use crate::{Errno, SysResult};

const PRIO_PROCESS: u64 = 0;
const PRIO_PGRP: u64 = 1;
const PRIO_USER: u64 = 2;
const SCHED_OTHER: u64 = 0;
const SCHED_FIFO: u64 = 1;
const SCHED_RR: u64 = 2;
const SCHED_BATCH: u64 = 3;
const SCHED_IDLE: u64 = 5;

/// The tasks `which`/`who` name (`ESRCH` when none), as pids; the caller is `None`.
fn targets<H: Hal>(cx: &SysCtx<'_, H>, which: u64, who: u64) -> Result<(bool, alloc::vec::Vec<Pid>), Errno> {
    let who = who as u32;
    let me = |t: &crate::task::Task<_>| -> bool { t.is_leader() && !t.is_zombie() };
    let (self_in, others): (bool, alloc::vec::Vec<Pid>) = match which {
        PRIO_PROCESS => {
            let pid = if who == 0 { cx.t.tgid } else { who };
            (pid == cx.t.tgid, cx.k.procs.iter().filter(|t| t.tgid == pid && !t.is_zombie()).map(|t| t.pid).collect())
        }
        PRIO_PGRP => {
            let g = if who == 0 { cx.t.pgid } else { who };
            (cx.t.pgid == g, cx.k.procs.iter().filter(|t| me(t) && t.pgid == g).map(|t| t.pid).collect())
        }
        PRIO_USER => {
            let u = if who == 0 { cx.t.cred.uid } else { who };
            (cx.t.cred.uid == u, cx.k.procs.iter().filter(|t| me(t) && t.cred.uid == u).map(|t| t.pid).collect())
        }
        _ => return Err(Errno::EINVAL),
    };
    if !self_in && others.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok((self_in, others))
}

/// `getpriority(which, who)`: `20 - nice` of the highest-priority target
/// (the raw system call's convention; libc turns it back into the nice value).
pub fn getpriority<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (self_in, others) = targets(cx, a[0], a[1])?;
    let mut best = if self_in { Some(cx.t.nice) } else { None };
    for p in others {
        if let Some(t) = cx.k.procs.get(p) {
            best = Some(best.map_or(t.nice, |b: i32| b.min(t.nice)));
        }
    }
    Ok((20 - best.unwrap_or(0)) as usize)
}

/// `setpriority(which, who, prio)`: the nice value, clamped to -20..19;
/// lowering it takes root (`EACCES`), changing another user's process too
/// (`EPERM`).
pub fn setpriority<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let nice = (a[2] as i32).clamp(-20, 19);
    let (self_in, others) = targets(cx, a[0], a[1])?;
    let c = cx.t.cred.clone();
    let check = |cur: i32, owner: u32| -> Result<(), Errno> {
        if c.euid != 0 && c.euid != owner && c.uid != owner {
            return Err(Errno::EPERM);
        }
        if c.euid != 0 && nice < cur {
            return Err(Errno::EACCES);
        }
        Ok(())
    };
    if self_in {
        check(cx.t.nice, cx.t.cred.uid)?;
    }
    for p in &others {
        if let Some(t) = cx.k.procs.get(*p) {
            check(t.nice, t.cred.uid)?;
        }
    }
    if self_in {
        cx.t.nice = nice;
    }
    for p in others {
        if let Some(t) = cx.k.procs.get_mut(p) {
            t.nice = nice;
        }
    }
    Ok(0)
}

fn task_exists<H: Hal>(cx: &SysCtx<'_, H>, pid: u64) -> Result<(), Errno> {
    let pid = pid as i32;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    if pid == 0 || pid as u32 == cx.t.pid || cx.k.procs.get(pid as u32).is_some_and(|t| !t.is_zombie()) {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

/// `sched_getscheduler(pid)`: `SCHED_OTHER`.
pub fn sched_getscheduler<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    task_exists(cx, a[0])?;
    Ok(SCHED_OTHER as usize)
}

/// `sched_getparam(pid, param)`: priority 0.
pub fn sched_getparam<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[1] == 0 {
        return Err(Errno::EINVAL);
    }
    task_exists(cx, a[0])?;
    cx.write_user(a[1], &0u32.to_le_bytes())?;
    Ok(0)
}

/// `sched_setscheduler(pid, policy, param)` and `sched_setparam`: the
/// normal policies with priority 0 are accepted (nothing changes); the
/// real-time ones are not supported: `EPERM`.
pub fn sched_setscheduler<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[2] == 0 {
        return Err(Errno::EINVAL);
    }
    let policy = a[1] & !0x4000_0000; // SCHED_RESET_ON_FORK
    let prio = cx.read_u32(a[2])? as i32;
    task_exists(cx, a[0])?;
    match policy {
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE if prio == 0 => Ok(0),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Err(Errno::EINVAL),
        SCHED_FIFO | SCHED_RR if (1..=99).contains(&prio) => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_setparam(pid, param)`.
pub fn sched_setparam<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    sched_setscheduler(cx, [a[0], SCHED_OTHER, a[1], 0, 0, 0])
}

/// `sched_get_priority_max(policy)`.
pub fn sched_get_priority_max<H: Hal>(_cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    match a[0] {
        SCHED_FIFO | SCHED_RR => Ok(99),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_get_priority_min(policy)`.
pub fn sched_get_priority_min<H: Hal>(_cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    match a[0] {
        SCHED_FIFO | SCHED_RR => Ok(1),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_rr_get_interval(pid, tp)`: the timeslice.
pub fn sched_rr_get_interval<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    task_exists(cx, a[0])?;
    let ns = crate::task::sched::TIMESLICE_NS;
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    b[8..16].copy_from_slice(&((ns % 1_000_000_000) as i64).to_le_bytes());
    cx.write_user(a[1], &b)?;
    Ok(0)
}
