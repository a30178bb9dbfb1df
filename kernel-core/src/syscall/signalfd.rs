//! `signalfd`, `signalfd4`: pending signals read as `signalfd_siginfo`
//! records from a descriptor.
//!
//! `read` dequeues the reader's own pending signals in the fd's mask (the
//! dispatcher routes `read` on a signalfd here, since reading needs the
//! task), blocking until one arrives unless `O_NONBLOCK`. Readiness for
//! `poll`/`select`/`epoll` comes from a view of the creating process's
//! pending signals that the signal code updates when a blocked signal is
//! queued and that every read refreshes; a signal the process consumes some
//! other way (a handler, `sigwaitinfo`) can leave it readable until the
//! next read says `EAGAIN`, which event loops handle.

use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::cell::Cell;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::install_special;
use super::{Flow, SysCtx};
use crate::fs::Kind;
use crate::kernel::block;
use crate::task::signal::{sigbit, SigInfo, UNBLOCKABLE};
use crate::task::{Pid, WaitOn};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLRDNORM};
use crate::{Errno, SysResult};

/// Size of `struct signalfd_siginfo`.
const SIGINFO_SIZE: usize = 128;

/// A signalfd.
pub struct SignalFd {
    mask: Cell<u64>,
    /// Signals of the creating process that may be pending.
    view: Cell<u64>,
    wq: WaitRef,
}

impl FileOps for SignalFd {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        // `read` itself goes through [`read`]; vectored reads are not supported.
        Err(Errno::EINVAL)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        if self.view.get() & self.mask.get() != 0 {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The signalfds of each process, for readiness.
#[derive(Default)]
pub struct SignalFds(BTreeMap<Pid, Vec<Weak<SignalFd>>>);

impl SignalFds {
    /// A blocked signal `sig` was queued for process `tgid`.
    pub fn posted(&mut self, tgid: Pid, sig: u32) {
        let Some(v) = self.0.get_mut(&tgid) else { return };
        v.retain(|w| w.strong_count() > 0);
        for s in v.iter().filter_map(Weak::upgrade) {
            s.view.set(s.view.get() | sigbit(sig));
            s.wq.notify();
        }
        if v.is_empty() {
            self.0.remove(&tgid);
        }
    }
    /// Process `tgid`'s pending set is now `pending`.
    fn refresh(&mut self, tgid: Pid, pending: u64) {
        if let Some(v) = self.0.get(&tgid) {
            for s in v.iter().filter_map(Weak::upgrade) {
                if s.view.get() != pending {
                    s.view.set(pending);
                    s.wq.notify();
                }
            }
        }
    }
}

/// `SFD_CLOEXEC`, `SFD_NONBLOCK`.
const SFD_FLAGS: u32 = g::O_CLOEXEC | g::O_NONBLOCK;

/// `signalfd4(fd, mask, sizemask, flags)`: a new signalfd (`fd` -1) or a
/// new mask for an existing one.
pub fn signalfd4<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = u32::try_from(a[3]).map_err(|_| Errno::EINVAL)?;
    if flags & !SFD_FLAGS != 0 || a[2] != 8 {
        return Err(Errno::EINVAL);
    }
    let mask = cx.read_u64(a[1])? & !UNBLOCKABLE;
    let fd = a[0] as i32;
    if fd != -1 {
        let f = cx.t.fds.file(a[0])?;
        let Kind::Special(s) = &f.inode.kind else { return Err(Errno::EINVAL) };
        let sfd = s.as_any().downcast_ref::<SignalFd>().ok_or(Errno::EINVAL)?;
        sfd.mask.set(mask);
        sfd.wq.notify();
        return Ok(fd as usize);
    }
    let obj = Rc::new(SignalFd { mask: Cell::new(mask), view: Cell::new(cx.t.signals.pending), wq: WaitQueue::new() });
    let v = cx.k.signalfds.0.entry(cx.t.tgid).or_default();
    v.retain(|w| w.strong_count() > 0);
    v.push(Rc::downgrade(&obj));
    install_special(cx, obj, g::O_RDWR | flags, "anon_inode:[signalfd]")
}

/// `signalfd(fd, mask, sizemask)`.
pub fn signalfd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    signalfd4(cx, [a[0], a[1], a[2], 0, 0, 0])
}

fn record(i: &SigInfo) -> [u8; SIGINFO_SIZE] {
    let mut b = [0u8; SIGINFO_SIZE];
    b[0..4].copy_from_slice(&i.signo.to_le_bytes());
    b[8..12].copy_from_slice(&i.code.to_le_bytes());
    if i.fault {
        b[72..80].copy_from_slice(&i.addr.to_le_bytes());
    } else {
        b[12..16].copy_from_slice(&i.pid.to_le_bytes());
        b[16..20].copy_from_slice(&i.uid.to_le_bytes());
    }
    if i.signo == g::SIGCHLD {
        b[40..44].copy_from_slice(&i.status.to_le_bytes());
        b[56..64].copy_from_slice(&i.times.0.to_le_bytes());
        b[64..72].copy_from_slice(&i.times.1.to_le_bytes());
    }
    b
}

/// `read(fd, buf, count)`: a signalfd's records here, anything else as usual.
pub fn read<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let is_sfd = cx.t.fds.get(a[0]).is_ok_and(|e| matches!(&e.file.inode.kind, Kind::Special(s) if s.as_any().is::<SignalFd>()));
    if !is_sfd {
        return super::file::read(cx, a);
    }
    let r = (|| -> Result<Option<usize>, Errno> {
        let f = cx.t.fds.file(a[0])?;
        let Kind::Special(s) = &f.inode.kind else { return Err(Errno::EBADF) };
        let sfd = s.as_any().downcast_ref::<SignalFd>().ok_or(Errno::EBADF)?;
        let n = a[2] as usize / SIGINFO_SIZE;
        if n == 0 {
            return Err(Errno::EINVAL);
        }
        cx.access_ok(a[1], (n * SIGINFO_SIZE) as u64)?;
        let mask = sfd.mask.get();
        let mut out = Vec::new();
        while out.len() < n * SIGINFO_SIZE {
            match cx.t.signals.take(mask) {
                Some(i) => out.extend_from_slice(&record(&i)),
                None => break,
            }
        }
        let (tgid, pending) = (cx.t.tgid, cx.t.signals.pending);
        cx.k.signalfds.refresh(tgid, pending);
        if out.is_empty() {
            if f.flags.get() & g::O_NONBLOCK != 0 {
                return Err(Errno::EAGAIN);
            }
            cx.t.wait_set = mask;
            return Ok(None);
        }
        cx.write_user(a[1], &out)?;
        Ok(Some(out.len()))
    })();
    match r {
        Ok(Some(n)) => Flow::Ret(Ok(n)),
        Ok(None) => block(WaitOn::Signal, None, Err(Errno::EINTR), true),
        Err(e) => Flow::Ret(Err(e)),
    }
}
