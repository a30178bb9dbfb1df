//! `timerfd_create`, `timerfd_settime`, `timerfd_gettime`: a timer whose
//! expirations are read as a count.

use alloc::rc::Rc;
use core::any::Any;
use core::cell::Cell;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::install_special;
use super::SysCtx;
use crate::time::{parse_timespec, timespec_bytes};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLRDNORM};
use crate::{Errno, SysResult};

const TFD_TIMER_ABSTIME: u32 = 1;
const TFD_TIMER_CANCEL_ON_SET: u32 = 2;

/// What a timerfd costs (the timer, its inode and file).
const TIMERFD_COST: usize = 512;

/// A timerfd object. Times are in its clock's ns (`realtime` or monotonic).
pub struct TimerFd {
    realtime: bool,
    /// Next expiry, in the timer's clock.
    next: Cell<Option<u64>>,
    interval: Cell<u64>,
    /// Expirations not yet read.
    ticks: Cell<u64>,
    wq: WaitRef,
    /// The timer, charged to the guest's budget.
    _charge: crate::budget::Charge,
}

impl TimerFd {
    /// A disarmed timer on `CLOCK_REALTIME` (`realtime`) or `CLOCK_MONOTONIC`.
    pub fn new(realtime: bool, charge: crate::budget::Charge) -> Rc<TimerFd> {
        Rc::new(TimerFd { realtime, next: Cell::new(None), interval: Cell::new(0), ticks: Cell::new(0), wq: WaitQueue::new(), _charge: charge })
    }
    fn clock(&self, mono: u64, real: u64) -> u64 {
        if self.realtime {
            real
        } else {
            mono
        }
    }
    /// Account the expirations up to `now` (the timer's clock).
    pub fn update(&self, now: u64) {
        let Some(next) = self.next.get() else { return };
        if now < next {
            return;
        }
        let iv = self.interval.get();
        match (now - next).checked_div(iv) {
            None => {
                self.ticks.set(self.ticks.get().saturating_add(1));
                self.next.set(None);
            }
            Some(k) => {
                let n = k + 1;
                self.ticks.set(self.ticks.get().saturating_add(n));
                self.next.set(Some(next.saturating_add(n.saturating_mul(iv))));
            }
        }
        self.wq.notify();
    }
    /// Arm (`value` is an absolute expiry in the timer's clock, or `None` to
    /// disarm) with `interval`; pending expirations are dropped.
    pub fn arm(&self, value: Option<u64>, interval: u64) {
        self.next.set(value);
        self.interval.set(interval);
        self.ticks.set(0);
        self.wq.notify();
    }
    /// (time to the next expiry, interval) at `now`.
    pub fn get(&self, now: u64) -> (u64, u64) {
        self.update(now);
        (self.next.get().map_or(0, |n| n.saturating_sub(now)), self.interval.get())
    }
}

impl FileOps for TimerFd {
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        self.update(self.clock(io.now, io.realtime));
        let t = self.ticks.replace(0);
        if t == 0 {
            return Err(Errno::EAGAIN);
        }
        buf[..8].copy_from_slice(&t.to_le_bytes());
        Ok(8)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn poll(&self, io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let now = self.clock(io.now, io.realtime);
        self.update(now);
        if let Some(ws) = ws {
            ws.add(&self.wq);
            if let Some(n) = self.next.get() {
                // The kernel's timer runs on the monotonic clock.
                ws.wake_at(io.now.saturating_add(n.saturating_sub(now)));
            }
        }
        if self.ticks.get() > 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `timerfd_create(clockid, flags)`.
pub fn timerfd_create<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let realtime = match a[0] as u32 {
        g::CLOCK_REALTIME | g::CLOCK_REALTIME_ALARM => true,
        g::CLOCK_MONOTONIC | g::CLOCK_BOOTTIME | g::CLOCK_BOOTTIME_ALARM => false,
        _ => return Err(Errno::EINVAL),
    };
    let flags = a[1] as u32;
    if flags & !(g::O_CLOEXEC | g::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let charge = crate::budget::Charge::new(cx.k.frames.budget(), crate::budget::Kind::Timer, TIMERFD_COST)?;
    install_special(cx, TimerFd::new(realtime, charge), g::O_RDWR | flags, "anon_inode:[timerfd]")
}

fn timer_of<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64) -> Result<(Rc<dyn FileOps>, u64), Errno> {
    let f = cx.t.fds.file(fd)?;
    let crate::fs::Kind::Special(s) = &f.inode.kind else { return Err(Errno::EINVAL) };
    let t = s.as_any().downcast_ref::<TimerFd>().ok_or(Errno::EINVAL)?;
    let now = t.clock(cx.hal.now_ns(), cx.hal.realtime_ns());
    Ok((s.clone(), now))
}

fn itimerspec(cur: (u64, u64)) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&timespec_bytes(cur.1));
    b[16..].copy_from_slice(&timespec_bytes(cur.0));
    b
}

/// `timerfd_settime(fd, flags, new, old)`.
pub fn timerfd_settime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let (s, now) = timer_of(cx, a[0])?;
    let b = cx.read_array::<32>(a[2])?;
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&b[..16]);
    let mut val = [0u8; 16];
    val.copy_from_slice(&b[16..]);
    let interval = parse_timespec(&iv)?;
    let value = parse_timespec(&val)?;
    let t = s.as_any().downcast_ref::<TimerFd>().ok_or(Errno::EINVAL)?;
    let old = t.get(now);
    if a[3] != 0 {
        cx.write_user(a[3], &itimerspec(old))?;
    }
    let at = if value == 0 {
        None
    } else if flags & TFD_TIMER_ABSTIME != 0 {
        Some(value)
    } else {
        Some(now.saturating_add(value))
    };
    t.arm(at, interval);
    Ok(0)
}

/// `timerfd_gettime(fd, cur)`.
pub fn timerfd_gettime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (s, now) = timer_of(cx, a[0])?;
    let t = s.as_any().downcast_ref::<TimerFd>().ok_or(Errno::EINVAL)?;
    let cur = t.get(now);
    cx.write_user(a[1], &itimerspec(cur))?;
    Ok(0)
}
