//! Time calls: clocks, sleeps, and a minimal futex.

use hal::Hal;
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::kernel::block;
use crate::task::WaitOn;
use crate::time::{clock, cpu_clock, parse_timespec, timespec_bytes, timeval_bytes, Clock, NS_PER_SEC};
use crate::{Errno, SysResult};

fn clock_now<H: Hal>(cx: &SysCtx<'_, H>, c: Clock) -> u64 {
    match c {
        Clock::Realtime => cx.hal.realtime_ns(),
        Clock::Monotonic | Clock::Cpu => cx.hal.now_ns(),
    }
}

/// The CPU time clock `id` reads (`EINVAL` for a thread of another
/// process or a task that does not exist): the per-task accounting of
/// [`crate::time::account`], the caller's not yet settled time included.
fn cpu_time<H: Hal>(cx: &SysCtx<'_, H>, id: u64) -> Result<u64, Errno> {
    let (pid, thread, user_only) = match cpu_clock(id) {
        Some(c) => (c.pid, c.thread, c.which == 1),
        None => (0, id as u32 == g::CLOCK_THREAD_CPUTIME_ID, false),
    };
    let me = &*cx.t;
    let pid = if pid == 0 { if thread { me.pid } else { me.tgid } } else { pid };
    let task = if pid == me.pid { Some(me) } else { cx.k.procs.get(pid) };
    let task = task.ok_or(Errno::EINVAL)?;
    let own = |t: &crate::task::Task<H::Space>| if user_only { t.utime_ns } else { t.utime_ns + t.stime_ns };
    let pending = if user_only { me.cpu.unsettled().0 } else { me.cpu.unsettled().0 + me.cpu.unsettled().1 };
    if thread {
        if task.tgid != me.tgid {
            return Err(Errno::EINVAL);
        }
        return Ok(own(task) + if task.pid == me.pid { pending } else { 0 });
    }
    let tgid = task.tgid;
    let mut n: u64 = cx.k.procs.iter().filter(|t| t.tgid == tgid).map(|t| own(t)).sum();
    if me.tgid == tgid {
        n += own(me) + pending;
    }
    Ok(n)
}

/// `clock_gettime(clk, tp)`.
pub fn clock_gettime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let c = clock(a[0])?;
    let now = match c {
        Clock::Cpu => cpu_time(cx, a[0])?,
        _ => clock_now(cx, c),
    };
    cx.write_user(a[1], &timespec_bytes(now))?;
    Ok(0)
}

/// `clock_getres(clk, res)`: 1 ns.
pub fn clock_getres<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if clock(a[0])? == Clock::Cpu {
        cpu_time(cx, a[0])?;
    }
    if a[1] != 0 {
        cx.write_user(a[1], &timespec_bytes(1))?;
    }
    Ok(0)
}

/// `gettimeofday(tv, tz)`.
pub fn gettimeofday<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] != 0 {
        let now = cx.hal.realtime_ns();
        cx.write_user(a[0], &timeval_bytes(now))?;
    }
    if a[1] != 0 {
        cx.write_user(a[1], &[0u8; 8])?;
    }
    Ok(0)
}

/// `time(tloc)`.
pub fn time<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let s = cx.hal.realtime_ns() / NS_PER_SEC;
    if a[0] != 0 {
        cx.write_user(a[0], &s.to_le_bytes())?;
    }
    Ok(s as usize)
}

fn sleep_until<H: Hal>(cx: &mut SysCtx<'_, H>, deadline: u64) -> Flow {
    let deadline = cx.t.restart_deadline.unwrap_or(deadline);
    if deadline <= cx.hal.now_ns() {
        return Flow::Ret(Ok(0));
    }
    block(WaitOn::Nothing, Some(deadline), Ok(0), false)
}

/// `nanosleep(req, rem)`: blocks the task (no spinning); a handled signal
/// interrupts it with EINTR and the time left in `rem`.
pub fn nanosleep<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let ns = match cx.read_array::<16>(a[0]).and_then(|b| parse_timespec(&b)) {
        Ok(ns) => ns,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let d = cx.hal.now_ns().saturating_add(ns);
    cx.t.sleep_rem = Some((a[1], d));
    sleep_until(cx, d)
}

/// `clock_nanosleep(clk, flags, req, rem)`.
pub fn clock_nanosleep<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let c = match clock(a[0]) {
        Ok(Clock::Cpu) if a[0] as u32 == g::CLOCK_THREAD_CPUTIME_ID => return Flow::Ret(Err(Errno::EINVAL)),
        Ok(c) => c,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let flags = a[1] as u32;
    if flags & !g::TIMER_ABSTIME != 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let ns = match cx.read_array::<16>(a[2]).and_then(|b| parse_timespec(&b)) {
        Ok(ns) => ns,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let now = cx.hal.now_ns();
    let deadline = if flags & g::TIMER_ABSTIME != 0 {
        // Convert an absolute time on `c` into a monotonic deadline.
        let clk_now = clock_now(cx, c);
        now.saturating_add(ns.saturating_sub(clk_now))
    } else {
        now.saturating_add(ns)
    };
    // rem is written only for relative sleeps.
    cx.t.sleep_rem = if flags & g::TIMER_ABSTIME != 0 { None } else { Some((a[3], deadline)) };
    sleep_until(cx, deadline)
}
