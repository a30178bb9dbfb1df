//! POSIX timers: `timer_create`, `timer_settime`, `timer_gettime`,
//! `timer_getoverrun`, `timer_delete` (the timers themselves are in
//! [`crate::time::timers`]).

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::time::timers::{SigEvent, TimerClock, POSIX_TIMER_COST};
use crate::time::{cpu_clock, parse_timespec, timespec_bytes, CpuClockId};
use crate::{Errno, SysResult};

/// The clock `id` names for a timer of the calling thread.
fn timer_clock<H: Hal>(cx: &SysCtx<'_, H>, id: u64) -> Result<TimerClock, Errno> {
    if let Some(CpuClockId { pid, thread, .. }) = cpu_clock(id) {
        let me = (cx.t.tgid, cx.t.pid);
        return match (pid, thread) {
            (0, false) => Ok(TimerClock::ProcessCpu),
            (0, true) => Ok(TimerClock::ThreadCpu(me.1)),
            (p, false) if p == me.0 => Ok(TimerClock::ProcessCpu),
            (p, true) if p == me.1 || cx.k.procs.get(p).is_some_and(|t| t.tgid == me.0 && !t.is_zombie()) => {
                Ok(TimerClock::ThreadCpu(p))
            }
            _ => Err(Errno::EINVAL),
        };
    }
    match u32::try_from(id).map_err(|_| Errno::EINVAL)? {
        g::CLOCK_REALTIME | g::CLOCK_TAI | g::CLOCK_REALTIME_ALARM => Ok(TimerClock::Real),
        g::CLOCK_MONOTONIC | g::CLOCK_BOOTTIME | g::CLOCK_BOOTTIME_ALARM => Ok(TimerClock::Mono),
        g::CLOCK_PROCESS_CPUTIME_ID => Ok(TimerClock::ProcessCpu),
        g::CLOCK_THREAD_CPUTIME_ID => Ok(TimerClock::ThreadCpu(cx.t.pid)),
        // Clocks without timers (Linux: no timer_create for them).
        g::CLOCK_MONOTONIC_RAW | g::CLOCK_REALTIME_COARSE | g::CLOCK_MONOTONIC_COARSE => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}

/// The timer id argument (`timer_t` is an `int` to the kernel).
fn timer_id(a: u64) -> Result<i32, Errno> {
    let id = a as u32 as i32;
    if id < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(id)
}

/// `timer_create(clockid, sevp, timerid)`.
pub fn timer_create<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let clock = timer_clock(cx, a[0])?;
    let notify = if a[1] == 0 {
        None
    } else {
        let ev = SigEvent::parse(&cx.read_array::<64>(a[1])?);
        let tgid = cx.t.tgid;
        let me = cx.t.pid;
        let tasks = &cx.k.procs;
        Some(ev.notify(|tid| tid == me || tasks.get(tid).is_some_and(|t| t.tgid == tgid && !t.is_zombie()))?)
    };
    cx.access_ok(a[2], 4)?;
    let charge = crate::budget::Charge::new(cx.k.frames.budget(), crate::budget::Kind::Timer, POSIX_TIMER_COST)?;
    let limit = cx.t.rlimits[g::RLIMIT_SIGPENDING as usize].0;
    let tgid = cx.t.tgid;
    let id = cx.k.clock.timers.create(tgid, clock, notify, charge, limit)?;
    if let Err(e) = cx.write_user(a[2], &id.to_le_bytes()) {
        let _ = cx.k.clock.timers.delete(tgid, id);
        return Err(e);
    }
    Ok(0)
}

fn itimerspec_bytes((value, interval): (u64, u64)) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&timespec_bytes(interval));
    b[16..].copy_from_slice(&timespec_bytes(value));
    b
}

/// `timer_settime(timerid, flags, new, old)`.
pub fn timer_settime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let id = timer_id(a[0])?;
    let flags = a[1] as u32;
    let tgid = cx.t.tgid;
    let clock = cx.k.clock.timers.clock_of(tgid, id)?;
    let b = cx.read_array::<32>(a[2])?;
    let (mut iv, mut val) = ([0u8; 16], [0u8; 16]);
    iv.copy_from_slice(&b[..16]);
    val.copy_from_slice(&b[16..]);
    let interval = parse_timespec(&iv)?;
    let value = parse_timespec(&val)?;
    let abs = flags & g::TIMER_ABSTIME != 0;
    let now = cx.hal.now_ns();
    let arm = if value == 0 {
        None
    } else {
        Some(match clock {
            TimerClock::Real if abs => now.saturating_add(value.saturating_sub(cx.hal.realtime_ns())),
            TimerClock::Mono if abs => value,
            TimerClock::Real | TimerClock::Mono => now.saturating_add(value),
            TimerClock::ProcessCpu | TimerClock::ThreadCpu(_) if abs => {
                let used = match clock {
                    TimerClock::ThreadCpu(tid) if tid == cx.t.pid => cx.t.utime_ns + cx.t.stime_ns,
                    TimerClock::ThreadCpu(tid) => cx.k.procs.get(tid).map_or(0, |t| t.utime_ns + t.stime_ns),
                    _ => cx.k.process_cpu(Some(cx.t), tgid),
                };
                value.saturating_sub(used)
            }
            TimerClock::ProcessCpu | TimerClock::ThreadCpu(_) => value,
        })
    };
    if a[3] != 0 {
        cx.access_ok(a[3], 32)?;
    }
    let old = cx.k.clock.timers.settime(tgid, id, arm, interval, now)?;
    if a[3] != 0 {
        cx.write_user(a[3], &itimerspec_bytes(old))?;
    }
    Ok(0)
}

/// `timer_gettime(timerid, cur)`.
pub fn timer_gettime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let id = timer_id(a[0])?;
    let cur = cx.k.clock.timers.gettime(cx.t.tgid, id, cx.hal.now_ns())?;
    cx.write_user(a[1], &itimerspec_bytes(cur))?;
    Ok(0)
}

/// `timer_getoverrun(timerid)`.
pub fn timer_getoverrun<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let id = timer_id(a[0])?;
    Ok(cx.k.clock.timers.getoverrun(cx.t.tgid, id)? as usize)
}

/// `timer_delete(timerid)`.
pub fn timer_delete<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let id = timer_id(a[0])?;
    cx.k.clock.timers.delete(cx.t.tgid, id)?;
    Ok(0)
}
