//! Time calls: clocks, sleeps, and a minimal futex.

use hal::Hal;
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::kernel::block;
use crate::task::WaitOn;
use crate::time::{clock, parse_timespec, timespec_bytes, timeval_bytes, Clock, NS_PER_SEC};
use crate::{Errno, SysResult};

fn clock_now<H: Hal>(cx: &SysCtx<'_, H>, c: Clock) -> u64 {
    match c {
        Clock::Realtime => cx.hal.realtime_ns(),
        Clock::Monotonic | Clock::Cpu => cx.hal.now_ns(),
    }
}

/// `clock_gettime(clk, tp)`.
pub fn clock_gettime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let c = clock(a[0])?;
    let now = clock_now(cx, c);
    cx.write_user(a[1], &timespec_bytes(now))?;
    Ok(0)
}

/// `clock_getres(clk, res)`: 1 ns.
pub fn clock_getres<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    clock(a[0])?;
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

/// `nanosleep(req, rem)`: blocks the task (no spinning); nothing interrupts
/// it yet, so `rem` is never written.
pub fn nanosleep<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let ns = match cx.read_array::<16>(a[0]).and_then(|b| parse_timespec(&b)) {
        Ok(ns) => ns,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let d = cx.hal.now_ns().saturating_add(ns);
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
    sleep_until(cx, deadline)
}

/// `futex(uaddr, op, val, timeout, uaddr2, val3)`: WAIT/WAKE (and the
/// bitset forms) on private futexes. With one thread per process nobody
/// else can wake a waiter yet, so a wait ends only by its timeout.
pub fn futex<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (uaddr, op, val, timeout) = (a[0], a[1] as u32, a[2] as u32, a[3]);
    let cmd = op & !(g::FUTEX_PRIVATE_FLAG | g::FUTEX_CLOCK_REALTIME);
    if uaddr % 4 != 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    match cmd {
        g::FUTEX_WAIT | g::FUTEX_WAIT_BITSET => {
            if cmd == g::FUTEX_WAIT_BITSET && a[5] as u32 == 0 {
                return Flow::Ret(Err(Errno::EINVAL));
            }
            let cur = match cx.read_u32(uaddr) {
                Ok(v) => v,
                Err(e) => return Flow::Ret(Err(e)),
            };
            if cur != val {
                return Flow::Ret(Err(Errno::EAGAIN));
            }
            let deadline = if timeout == 0 {
                None
            } else {
                let ns = match cx.read_array::<16>(timeout).and_then(|b| parse_timespec(&b)) {
                    Ok(ns) => ns,
                    Err(e) => return Flow::Ret(Err(e)),
                };
                let now = cx.hal.now_ns();
                Some(if cmd == g::FUTEX_WAIT_BITSET {
                    let c = if op & g::FUTEX_CLOCK_REALTIME != 0 { Clock::Realtime } else { Clock::Monotonic };
                    now.saturating_add(ns.saturating_sub(clock_now(cx, c)))
                } else {
                    now.saturating_add(ns)
                })
            };
            let deadline = cx.t.restart_deadline.or(deadline);
            block(WaitOn::Futex(uaddr), deadline, Err(Errno::ETIMEDOUT), false)
        }
        g::FUTEX_WAKE | g::FUTEX_WAKE_BITSET => Flow::Ret(Ok(0)),
        _ => {
            cx.log_once("futex-op", "kernel: futex operation other than WAIT/WAKE is not supported yet (ENOSYS)");
            Flow::Ret(Err(Errno::ENOSYS))
        }
    }
}
