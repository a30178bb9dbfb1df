//! `eventfd`, `eventfd2`: a 64-bit counter as a file.

use alloc::rc::Rc;
use core::any::Any;
use core::cell::Cell;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::install_special;
use super::SysCtx;
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::{Errno, SysResult};

/// `EFD_SEMAPHORE`.
const EFD_SEMAPHORE: u32 = 1;
/// The largest value the counter may hold.
const MAX: u64 = u64::MAX - 1;

/// An eventfd object.
pub struct EventFd {
    count: Cell<u64>,
    semaphore: bool,
    wq: WaitRef,
}

impl EventFd {
    /// A counter starting at `init`.
    pub fn new(init: u64, semaphore: bool) -> Rc<EventFd> {
        Rc::new(EventFd { count: Cell::new(init), semaphore, wq: WaitQueue::new() })
    }
}

impl FileOps for EventFd {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let c = self.count.get();
        if c == 0 {
            return Err(Errno::EAGAIN);
        }
        let v = if self.semaphore { 1 } else { c };
        self.count.set(c - v);
        buf[..8].copy_from_slice(&v.to_le_bytes());
        self.wq.notify();
        Ok(8)
    }
    fn write(&self, _io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        if data.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let v = u64::from_le_bytes([data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7]]);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let c = self.count.get();
        if MAX - c < v {
            return Err(Errno::EAGAIN);
        }
        self.count.set(c + v);
        self.wq.notify();
        Ok(8)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let c = self.count.get();
        let mut r = 0;
        if c > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if c < MAX {
            r |= POLLOUT | POLLWRNORM;
        }
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        r
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `eventfd2(initval, flags)`.
pub fn eventfd2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    if flags & !(EFD_SEMAPHORE | g::O_CLOEXEC | g::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let obj = EventFd::new(a[0] as u32 as u64, flags & EFD_SEMAPHORE != 0);
    install_special(cx, obj, g::O_RDWR | (flags & (g::O_CLOEXEC | g::O_NONBLOCK)), "anon_inode:[eventfd]")
}

/// `eventfd(initval)`.
pub fn eventfd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    eventfd2(cx, [a[0], 0, 0, 0, 0, 0])
}
