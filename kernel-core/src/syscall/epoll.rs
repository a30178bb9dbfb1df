//! `epoll`: an interest list over files, level- or edge-triggered.

use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::cell::RefCell;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::{block_on, install_special, with_io};
use super::{Flow, SysCtx};
use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::fs::{FileRef, Kind, OpenFile};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::{Errno, SysResult};

const EPOLLET: u32 = 1 << 31;
const EPOLLONESHOT: u32 = 1 << 30;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLWAKEUP: u32 = 1 << 29;
/// Most events one `epoll_wait` may ask for (Linux: INT_MAX / sizeof(epoll_event)).
const EP_MAX_EVENTS: u64 = (i32::MAX / 12) as u64;

struct Entry {
    file: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// `EPOLLONESHOT` fired: nothing is reported until `EPOLL_CTL_MOD`.
    disabled: bool,
    /// Edge-triggered: the state signature when last reported.
    last: Option<u64>,
}

/// An epoll instance.
pub struct Epoll {
    /// Keyed by (fd, description address), as Linux keys by (file, fd).
    entries: RefCell<BTreeMap<(i32, usize), Entry>>,
    wq: WaitRef,
    /// The instance and its items, charged to the guest's budget.
    charge: RefCell<Charge>,
}

/// What an epoll instance costs (the object, its inode and file).
const EPOLL_OBJECT: usize = 512;
/// What one item costs (its entry and its share of the tree).
const EPOLL_ITEM: usize = 128;

/// Readiness of a watched description (files that are not special objects never block).
fn poll_file(io: &mut IoCtx<'_>, f: &FileRef, ws: Option<&mut WaitSet>) -> u32 {
    match &f.inode.kind {
        Kind::Special(s) => s.poll(io, (f.readable(), f.writable()), ws),
        _ => POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM,
    }
}

impl Epoll {
    fn new(budget: &BudgetRef) -> Result<Rc<Epoll>, Errno> {
        let charge = RefCell::new(Charge::new(budget, Cost::Epoll, EPOLL_OBJECT)?);
        Ok(Rc::new(Epoll { entries: RefCell::new(BTreeMap::new()), wq: WaitQueue::new(), charge }))
    }

    /// Charge for `n` items.
    fn charge_items(&self, n: usize) -> Result<(), Errno> {
        self.charge.borrow_mut().resize(EPOLL_OBJECT + n * EPOLL_ITEM)
    }

    /// Collect up to `max` ready events; `consume` applies edge-triggered and
    /// one-shot bookkeeping (a real `epoll_wait`), else it only peeks. With
    /// `ws`, register the queues of every watched file.
    fn collect(&self, io: &mut IoCtx<'_>, max: usize, consume: bool, mut ws: Option<&mut WaitSet>) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut entries = self.entries.borrow_mut();
        // Closed descriptions leave the interest list.
        let before = entries.len();
        entries.retain(|_, e| e.file.upgrade().is_some());
        if entries.len() != before {
            let _ = self.charge_items(entries.len());
        }
        for e in entries.values_mut() {
            let Some(f) = e.file.upgrade() else { continue };
            let mut mine = WaitSet::default();
            let rev = poll_file(io, &f, Some(&mut mine));
            if let Some(ws) = ws.as_deref_mut() {
                ws.merge(&mine);
            }
            if e.disabled || out.len() >= max {
                continue;
            }
            let got = rev & (e.events | POLLERR | POLLHUP);
            if got == 0 {
                continue;
            }
            if e.events & EPOLLET != 0 {
                let sig = mine.signature();
                if e.last == Some(sig) {
                    continue;
                }
                if consume {
                    e.last = Some(sig);
                }
            }
            if consume && e.events & EPOLLONESHOT != 0 {
                e.disabled = true;
            }
            out.push((got, e.data));
        }
        out
    }
}

impl FileOps for Epoll {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn poll(&self, io: &mut IoCtx<'_>, _rw: (bool, bool), mut ws: Option<&mut WaitSet>) -> u32 {
        if let Some(w) = ws.as_deref_mut() {
            w.add(&self.wq);
        }
        if self.collect(io, 1, false, ws).is_empty() {
            0
        } else {
            POLLIN | POLLRDNORM
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `epoll_create1(flags)`.
pub fn epoll_create1<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[0] as u32;
    if flags & !g::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let ep = Epoll::new(cx.k.frames.budget())?;
    install_special(cx, ep, g::O_RDWR | flags, "anon_inode:[eventpoll]")
}

/// `epoll_create(size)`.
pub fn epoll_create<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    epoll_create1(cx, [0; 6])
}

fn epoll_of<H: Hal>(cx: &mut SysCtx<'_, H>, epfd: u64) -> Result<Rc<dyn FileOps>, Errno> {
    let f = cx.t.fds.file(epfd)?;
    match &f.inode.kind {
        Kind::Special(s) if s.as_any().is::<Epoll>() => Ok(s.clone()),
        _ => Err(Errno::EINVAL),
    }
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub fn epoll_ctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let op = a[1] as u32;
    let fd = a[2] as i32;
    let ev = if op == g::EPOLL_CTL_DEL {
        None
    } else {
        let b = cx.read_array::<12>(a[3])?;
        Some((u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]])))
    };
    let epf = cx.t.fds.file(a[0])?;
    let target = cx.t.fds.file(a[2])?;
    let ep_obj = epoll_of(cx, a[0])?;
    let ep = ep_obj.as_any().downcast_ref::<Epoll>().ok_or(Errno::EINVAL)?;
    if Rc::ptr_eq(&epf, &target) || a[0] == a[2] {
        return Err(Errno::EINVAL);
    }
    // Files that cannot block (regular files, directories) cannot be watched.
    if !matches!(target.inode.kind, Kind::Special(_) | Kind::Device(crate::fs::Device::Console | crate::fs::Device::ConsoleErr)) {
        return Err(Errno::EPERM);
    }
    let key = (fd, Rc::as_ptr(&target) as usize);
    let mut entries = ep.entries.borrow_mut();
    match op {
        g::EPOLL_CTL_ADD => {
            if entries.contains_key(&key) {
                return Err(Errno::EEXIST);
            }
            let (events, data) = ev.unwrap_or_default();
            if events & EPOLLEXCLUSIVE != 0 && events & EPOLLONESHOT != 0 {
                return Err(Errno::EINVAL);
            }
            ep.charge_items(entries.len() + 1)?;
            entries.insert(key, Entry { file: Rc::downgrade(&target), events: events & !EPOLLWAKEUP, data, disabled: false, last: None });
        }
        g::EPOLL_CTL_MOD => {
            let e = entries.get_mut(&key).ok_or(Errno::ENOENT)?;
            let (events, data) = ev.unwrap_or_default();
            if events & EPOLLEXCLUSIVE != 0 || e.events & EPOLLEXCLUSIVE != 0 {
                return Err(Errno::EINVAL);
            }
            e.events = events & !EPOLLWAKEUP;
            e.data = data;
            e.disabled = false;
            e.last = None;
        }
        g::EPOLL_CTL_DEL => {
            entries.remove(&key).ok_or(Errno::ENOENT)?;
            let _ = ep.charge_items(entries.len());
        }
        _ => return Err(Errno::EINVAL),
    }
    drop(entries);
    ep.wq.notify();
    Ok(0)
}

fn do_wait<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let max = a[2] as i32;
    if max <= 0 || max as u64 > EP_MAX_EVENTS {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    if let Err(e) = cx.access_ok(a[1], max as u64 * 12) {
        return Flow::Ret(Err(e));
    }
    let ep_obj = match epoll_of(cx, a[0]) {
        Ok(e) => e,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let Some(ep) = ep_obj.as_any().downcast_ref::<Epoll>() else { return Flow::Ret(Err(Errno::EINVAL)) };
    let ms = a[3] as i32;
    let now = cx.hal.now_ns();
    let timeout = if ms < 0 { None } else { Some(ms as u64 * 1_000_000) };
    let deadline = cx.t.restart_deadline.or(timeout.map(|t| now.saturating_add(t)));
    let expired = timeout == Some(0) || deadline.is_some_and(|d| d <= now);
    let mut ws = WaitSet::default();
    ws.add(&ep.wq);
    let evs = with_io(cx, |io| ep.collect(io, max as usize, true, if expired { None } else { Some(&mut ws) }));
    if evs.is_empty() && !expired {
        return block_on(cx, ws, deadline);
    }
    let mut raw = Vec::with_capacity(evs.len() * 12);
    for (e, d) in &evs {
        raw.extend_from_slice(&e.to_le_bytes());
        raw.extend_from_slice(&d.to_le_bytes());
    }
    if let Err(e) = cx.write_user(a[1], &raw) {
        return Flow::Ret(Err(e));
    }
    Flow::Ret(Ok(evs.len()))
}

/// `epoll_wait(epfd, events, maxevents, timeout_ms)`.
pub fn epoll_wait<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_wait(cx, a)
}

/// `epoll_pwait(epfd, events, maxevents, timeout_ms, sigmask, sigsetsize)`.
pub fn epoll_pwait<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    if a[4] != 0 {
        if a[5] != 8 {
            return Flow::Ret(Err(Errno::EINVAL));
        }
        match cx.read_u64(a[4]) {
            Ok(m) => {
                if cx.t.saved_mask.is_none() {
                    cx.t.saved_mask = Some(cx.t.signals.mask);
                }
                cx.t.signals.mask = m & !crate::task::signal::UNBLOCKABLE;
            }
            Err(e) => return Flow::Ret(Err(e)),
        }
    }
    do_wait(cx, a)
}
