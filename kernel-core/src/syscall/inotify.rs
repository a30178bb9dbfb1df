//! inotify: `inotify_init1`, `inotify_add_watch`, `inotify_rm_watch`, and
//! the events.
//!
//! Events are derived from system calls that succeeded, in one place
//! ([`before`] and [`after`], called by the dispatcher only while some
//! watch exists, so a guest without watches pays nothing): the call's
//! arguments name the files, and the entries are looked up before (what a
//! deletion or rename removes) and after (what a creation made). Directory
//! watches get the child's name, watches on the file itself get none,
//! as Linux. Queues are bounded (`max_queued_events`, then one
//! `IN_Q_OVERFLOW`), identical unread events coalesce, instances and
//! watches are bounded and charged to the guest's budget.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::install_special;
use super::{Flow, SysCtx};
use crate::budget::{Charge, Kind as Cost};
use crate::fs::path::Follow;
use crate::fs::{FileRef, InodeRef, Kind};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLRDNORM};
use crate::{Errno, SysResult};

/// Linux's default `fs.inotify.max_queued_events`.
const MAX_QUEUED: usize = 16384;
/// Linux's default `fs.inotify.max_user_instances`.
const MAX_INSTANCES: usize = 128;
/// Watches per instance (Linux bounds them per user, 8192 at least).
const MAX_WATCHES: usize = 8192;
/// Bytes an instance and a watch cost the budget; each queued event its size.
const INSTANCE_COST: usize = 1024;
const WATCH_COST: usize = 128;

/// A file: (superblock, inode number).
type Key = (u32, u64);

fn key(i: &InodeRef) -> Key {
    (i.sb, i.ino)
}

struct Event {
    wd: i32,
    mask: u32,
    cookie: u32,
    name: String,
    _charge: Charge,
}

impl Event {
    fn len(&self) -> usize {
        16 + padded(&self.name)
    }
}

/// The name field's length: NUL-terminated, padded to 16 bytes, as Linux.
fn padded(name: &str) -> usize {
    if name.is_empty() {
        0
    } else {
        (crate::fs::path::raw_len(name) + 1).div_ceil(16) * 16
    }
}

struct Watch {
    inode: InodeRef,
    mask: u32,
    _charge: Charge,
}

/// An inotify instance.
pub struct Inotify {
    events: RefCell<VecDeque<Event>>,
    overflowed: Cell<bool>,
    watches: RefCell<BTreeMap<i32, Watch>>,
    next_wd: Cell<i32>,
    wq: WaitRef,
    budget: crate::budget::BudgetRef,
    _charge: Charge,
}

impl Inotify {
    fn push(&self, wd: i32, mask: u32, cookie: u32, name: &str) {
        let mut q = self.events.borrow_mut();
        if let Some(last) = q.back() {
            if last.wd == wd && last.mask == mask && last.cookie == cookie && last.name == name {
                return;
            }
        }
        if self.overflowed.get() {
            return;
        }
        let charge = Charge::new(&self.budget, Cost::Other, 48 + name.len());
        match charge {
            Ok(c) if q.len() < MAX_QUEUED => q.push_back(Event { wd, mask, cookie, name: String::from(name), _charge: c }),
            _ => {
                self.overflowed.set(true);
                q.push_back(Event { wd: -1, mask: g::IN_Q_OVERFLOW, cookie: 0, name: String::new(), _charge: Charge::none(Cost::Other) });
            }
        }
        drop(q);
        self.wq.notify();
    }
}

impl FileOps for Inotify {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut q = self.events.borrow_mut();
        let Some(first) = q.front() else { return Err(Errno::EAGAIN) };
        if first.len() > buf.len() {
            return Err(Errno::EINVAL);
        }
        let mut n = 0;
        while let Some(e) = q.front() {
            let len = e.len();
            if n + len > buf.len() {
                break;
            }
            let b = &mut buf[n..n + len];
            b.fill(0);
            b[0..4].copy_from_slice(&e.wd.to_le_bytes());
            b[4..8].copy_from_slice(&e.mask.to_le_bytes());
            b[8..12].copy_from_slice(&e.cookie.to_le_bytes());
            b[12..16].copy_from_slice(&((len - 16) as u32).to_le_bytes());
            let raw = crate::fs::path::name_to_bytes(&e.name);
            b[16..16 + raw.len()].copy_from_slice(&raw);
            if e.mask == g::IN_Q_OVERFLOW {
                self.overflowed.set(false);
            }
            n += len;
            q.pop_front();
        }
        Ok(n)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        if self.events.borrow().is_empty() {
            0
        } else {
            POLLIN | POLLRDNORM
        }
    }
    fn size(&self) -> u64 {
        0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Every watch by file, for delivering events.
#[derive(Default)]
pub struct Watches {
    by_file: BTreeMap<Key, Vec<(Weak<Inotify>, i32)>>,
    instances: Vec<Weak<Inotify>>,
    /// Last rename cookie.
    cookie: u32,
    /// `fcntl(F_NOTIFY)` registrations (dnotify).
    dnotify: Vec<DnReg>,
    /// Signals dnotify owes, sent once the call is done.
    dn_signals: Vec<crate::task::Pid>,
}

/// A directory's dnotify registration: who gets `SIGIO` for what.
struct DnReg {
    dir: Key,
    file: Weak<crate::fs::OpenFile>,
    pid: crate::task::Pid,
    mask: u32,
}

/// The `DN_*` bits an inotify event of a directory's child stands for.
fn dn_bits(mask: u32) -> u32 {
    let mut b = 0;
    for (i, d) in [
        (g::IN_ACCESS, g::DN_ACCESS),
        (g::IN_MODIFY, g::DN_MODIFY),
        (g::IN_CREATE, g::DN_CREATE),
        (g::IN_DELETE, g::DN_DELETE),
        (g::IN_MOVED_FROM | g::IN_MOVED_TO, g::DN_RENAME),
        (g::IN_ATTRIB, g::DN_ATTRIB),
    ] {
        if mask & i != 0 {
            b |= d;
        }
    }
    b
}

impl Watches {
    /// Is any watch set (the dispatcher's fast path)?
    pub fn active(&self) -> bool {
        !self.by_file.is_empty() || !self.dnotify.is_empty()
    }
    /// Deliver `mask` for file `k` (with `name` for a directory's child).
    fn deliver(&mut self, k: Key, mask: u32, cookie: u32, name: &str) {
        if !name.is_empty() && !self.dnotify.is_empty() {
            let bits = dn_bits(mask);
            self.dnotify.retain(|r| r.file.strong_count() > 0);
            let mut fired = false;
            for r in self.dnotify.iter_mut().filter(|r| r.dir == k && r.mask & bits != 0) {
                self.dn_signals.push(r.pid);
                if r.mask & g::DN_MULTISHOT == 0 {
                    r.mask = 0;
                    fired = true;
                }
            }
            if fired {
                self.dnotify.retain(|r| r.mask != 0);
            }
        }
        let Some(list) = self.by_file.get_mut(&k) else { return };
        list.retain(|(w, wd)| w.upgrade().is_some_and(|i| i.watches.borrow().contains_key(wd)));
        let targets: Vec<(Rc<Inotify>, i32)> = list.iter().filter_map(|(w, wd)| w.upgrade().map(|i| (i, *wd))).collect();
        if list.is_empty() {
            self.by_file.remove(&k);
        }
        for (ino, wd) in targets {
            let wmask = match ino.watches.borrow().get(&wd) {
                Some(w) => w.mask,
                None => continue,
            };
            let ev = mask & !g::IN_ISDIR;
            let forced = mask & (g::IN_IGNORED | g::IN_Q_OVERFLOW) != 0;
            if wmask & ev == 0 && !forced {
                continue;
            }
            ino.push(wd, mask, cookie, name);
            if wmask & g::IN_ONESHOT != 0 && !forced {
                ino.watches.borrow_mut().remove(&wd);
                ino.push(wd, g::IN_IGNORED, 0, "");
            }
        }
    }
    /// The file `k` is gone: its watches end with `IN_IGNORED`.
    fn gone(&mut self, k: Key) {
        if let Some(list) = self.by_file.remove(&k) {
            for (w, wd) in list {
                if let Some(i) = w.upgrade() {
                    if i.watches.borrow_mut().remove(&wd).is_some() {
                        i.push(wd, g::IN_IGNORED, 0, "");
                    }
                }
            }
        }
    }
}

/// `inotify_init1(flags)`.
pub fn inotify_init1<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = u32::try_from(a[0]).map_err(|_| Errno::EINVAL)?;
    if flags & !(g::IN_CLOEXEC | g::IN_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let w = &mut cx.k.inotify;
    w.instances.retain(|i| i.strong_count() > 0);
    if w.instances.len() >= MAX_INSTANCES {
        return Err(Errno::EMFILE);
    }
    let budget = cx.k.frames.budget().clone();
    let charge = Charge::new(&budget, Cost::Other, INSTANCE_COST).map_err(|_| Errno::ENOMEM)?;
    let obj = Rc::new(Inotify {
        events: RefCell::new(VecDeque::new()),
        overflowed: Cell::new(false),
        watches: RefCell::new(BTreeMap::new()),
        next_wd: Cell::new(1),
        wq: WaitQueue::new(),
        budget,
        _charge: charge,
    });
    cx.k.inotify.instances.push(Rc::downgrade(&obj));
    install_special(cx, obj, g::O_RDONLY | (flags & (g::O_CLOEXEC | g::O_NONBLOCK)), "anon_inode:inotify")
}

/// `inotify_init()`.
pub fn inotify_init<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    inotify_init1(cx, [0; 6])
}

fn instance<H: Hal>(cx: &SysCtx<'_, H>, fd: u64) -> Result<Rc<dyn FileOps>, Errno> {
    let f = cx.t.fds.file(fd)?;
    match &f.inode.kind {
        Kind::Special(s) if s.as_any().is::<Inotify>() => Ok(s.clone()),
        _ => Err(Errno::EINVAL),
    }
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add_watch<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let obj = instance(cx, a[0])?;
    let Some(ino) = obj.as_any().downcast_ref::<Inotify>() else { return Err(Errno::EINVAL) };
    let mask = a[2] as u32;
    let valid = g::IN_ALL_EVENTS | g::IN_ONLYDIR | g::IN_DONT_FOLLOW | g::IN_EXCL_UNLINK | g::IN_MASK_CREATE | g::IN_MASK_ADD | g::IN_ONESHOT;
    if mask & g::IN_ALL_EVENTS == 0 || mask & !valid != 0 || mask & (g::IN_MASK_CREATE | g::IN_MASK_ADD) == g::IN_MASK_CREATE | g::IN_MASK_ADD {
        return Err(Errno::EINVAL);
    }
    let p = cx.read_path(a[1])?;
    let follow = if mask & g::IN_DONT_FOLLOW != 0 { Follow::No } else { Follow::Yes };
    let loc = super::file::lookup(cx, g::AT_FDCWD as i64 as u64, &p, follow)?;
    let inode = loc.inode().clone();
    if mask & g::IN_ONLYDIR != 0 && !inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let k = key(&inode);
    let keep = mask & (g::IN_ALL_EVENTS | g::IN_ONESHOT | g::IN_EXCL_UNLINK);
    let existing = ino.watches.borrow().iter().find(|(_, w)| key(&w.inode) == k).map(|(wd, _)| *wd);
    if let Some(wd) = existing {
        if mask & g::IN_MASK_CREATE != 0 {
            return Err(Errno::EEXIST);
        }
        if let Some(w) = ino.watches.borrow_mut().get_mut(&wd) {
            w.mask = if mask & g::IN_MASK_ADD != 0 { w.mask | keep } else { keep };
        }
        return Ok(wd as usize);
    }
    if ino.watches.borrow().len() >= MAX_WATCHES {
        return Err(Errno::ENOSPC);
    }
    let charge = Charge::new(&ino.budget, Cost::Other, WATCH_COST).map_err(|_| Errno::ENOSPC)?;
    let wd = ino.next_wd.get();
    ino.next_wd.set(wd.checked_add(1).unwrap_or(1));
    ino.watches.borrow_mut().insert(wd, Watch { inode, mask: keep, _charge: charge });
    // The index holds the instance weakly: closing the fd ends its watches.
    let weak = cx.k.inotify.instances.iter().find(|w| w.upgrade().is_some_and(|i| core::ptr::eq(Rc::as_ptr(&i), ino))).cloned();
    if let Some(w) = weak {
        cx.k.inotify.by_file.entry(k).or_default().push((w, wd));
    }
    Ok(wd as usize)
}

/// `inotify_rm_watch(fd, wd)`: `IN_IGNORED` is queued.
pub fn inotify_rm_watch<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let obj = instance(cx, a[0])?;
    let Some(ino) = obj.as_any().downcast_ref::<Inotify>() else { return Err(Errno::EINVAL) };
    let wd = a[1] as i32;
    let w = ino.watches.borrow_mut().remove(&wd).ok_or(Errno::EINVAL)?;
    ino.push(wd, g::IN_IGNORED, 0, "");
    let k = key(&w.inode);
    if let Some(list) = cx.k.inotify.by_file.get_mut(&k) {
        list.retain(|(w, x)| *x != wd || !w.upgrade().is_some_and(|i| core::ptr::eq(Rc::as_ptr(&i), ino)));
        if list.is_empty() {
            cx.k.inotify.by_file.remove(&k);
        }
    }
    Ok(0)
}

// ------------------------------------------------------------------ events

/// What a call about to run may need afterwards.
pub struct Pending {
    n: u32,
    a: [u64; 6],
    /// An entry the call may remove or move: (parent, name, inode).
    old: Option<(InodeRef, String, InodeRef)>,
    /// Whether the created path existed before (`open` with `O_CREAT`).
    existed: bool,
    /// The description a `close` releases.
    file: Option<FileRef>,
}

/// (parent, name, inode) of `path` relative to `dirfd`, not following a final symlink.
fn entry<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64) -> Option<(InodeRef, String, InodeRef)> {
    let p = cx.read_path(pathp).ok()?;
    let loc = super::file::lookup(cx, dirfd, &p, Follow::No).ok()?;
    let n = loc.stack.len();
    if n < 2 {
        return None;
    }
    let (name, inode) = loc.stack[n - 1].clone();
    Some((loc.stack[n - 2].1.clone(), name, inode))
}

const CWD: u64 = g::AT_FDCWD as i64 as u64;

/// The (dirfd, path pointer) argument of a call that names one entry.
fn path_arg(n: u32, a: &[u64; 6]) -> Option<(u64, u64)> {
    use super::nr::*;
    Some(match n {
        x if x == __NR_open || x == __NR_creat || x == __NR_mkdir || x == __NR_mknod || x == __NR_unlink || x == __NR_rmdir
            || x == __NR_truncate || x == __NR_chmod || x == __NR_chown || x == __NR_lchown || x == __NR_utimes || x == __NR_utime
            || x == __NR_setxattr || x == __NR_lsetxattr || x == __NR_removexattr || x == __NR_lremovexattr || x == __NR_rename => (CWD, a[0]),
        x if x == __NR_openat || x == __NR_mkdirat || x == __NR_mknodat || x == __NR_unlinkat || x == __NR_fchmodat || x == __NR_fchmodat2
            || x == __NR_fchownat || x == __NR_futimesat || x == __NR_renameat || x == __NR_renameat2 => (a[0], a[1]),
        x if x == __NR_utimensat && a[1] != 0 => (a[0], a[1]),
        x if x == __NR_symlink || x == __NR_link => (CWD, a[1]),
        x if x == __NR_symlinkat => (a[1], a[2]),
        x if x == __NR_linkat => (a[2], a[3]),
        _ => return None,
    })
}

/// Before call `n` runs (only while watches exist).
pub fn before<H: Hal>(cx: &mut SysCtx<'_, H>, n: u64, a: &[u64; 6]) -> Option<Pending> {
    use super::nr::*;
    let n = u32::try_from(n).ok()?;
    let mut p = Pending { n, a: *a, old: None, existed: false, file: None };
    if n == __NR_close {
        p.file = cx.t.fds.file(a[0]).ok();
    } else if n == __NR_unlink || n == __NR_unlinkat || n == __NR_rmdir || n == __NR_rename || n == __NR_renameat || n == __NR_renameat2 {
        let (d, pp) = path_arg(n, a)?;
        p.old = entry(cx, d, pp);
    } else if n == __NR_open || n == __NR_openat || n == __NR_creat {
        let (d, pp) = path_arg(n, a)?;
        p.existed = entry(cx, d, pp).is_some();
    }
    Some(p)
}

/// Deliver `mask` for `inode` (no name) and its directory `parent` (with `name`).
fn emit<H: Hal>(cx: &mut SysCtx<'_, H>, parent: Option<&InodeRef>, name: &str, inode: &InodeRef, mask: u32, cookie: u32) {
    // Linux tells the directory's watches first, then the file's.
    let dir = if inode.is_dir() { g::IN_ISDIR } else { 0 };
    if let Some(pd) = parent {
        cx.k.inotify.deliver(key(pd), mask | dir, cookie, name);
    }
    cx.k.inotify.deliver(key(inode), mask | dir, cookie, "");
}

/// The event for a description `f`: on its inode, and on its directory when
/// its path says which (absolute paths).
fn emit_file<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, mask: u32) {
    let inode = f.inode.clone();
    let parent = if f.path.starts_with('/') {
        super::file::lookup(cx, CWD, &f.path, Follow::No).ok().and_then(|l| {
            let n = l.stack.len();
            (n >= 2 && alloc::sync::Arc::ptr_eq(&l.stack[n - 1].1, &inode)).then(|| (l.stack[n - 2].1.clone(), l.stack[n - 1].0.clone()))
        })
    } else {
        None
    };
    match parent {
        Some((pd, name)) => emit(cx, Some(&pd), &name, &inode, mask, 0),
        None => emit(cx, None, "", &inode, mask, 0),
    }
}

/// `fcntl(fd, F_NOTIFY, mask)` (dnotify): `SIGIO` to the caller's process
/// when an entry of directory `fd` is accessed, modified, created,
/// deleted, renamed or changes attributes (`DN_*`); once, or every time
/// with `DN_MULTISHOT`; mask 0 removes the registration. `ENOTDIR` for
/// anything but a directory.
pub fn dnotify<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, arg: u64) -> SysResult {
    let f = cx.t.fds.file(fd)?;
    if !f.inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let mask = arg as u32;
    let w = &mut cx.k.inotify;
    w.dnotify.retain(|r| r.file.strong_count() > 0 && !core::ptr::eq(r.file.as_ptr(), Rc::as_ptr(&f)));
    if mask & !g::DN_MULTISHOT == 0 {
        return Ok(0);
    }
    if w.dnotify.len() >= MAX_WATCHES {
        return Err(Errno::ENOSPC);
    }
    w.dnotify.push(DnReg { dir: key(&f.inode), file: Rc::downgrade(&f), pid: cx.t.tgid, mask });
    Ok(0)
}

/// After call `p.n` returned `flow`: queue its events.
pub fn after<H: Hal>(cx: &mut SysCtx<'_, H>, p: Pending, flow: &Flow) {
    after_inner(cx, p, flow);
    for pid in core::mem::take(&mut cx.k.inotify.dn_signals) {
        let info = crate::task::signal::SigInfo::kernel(g::SIGIO);
        cx.k.post_signal(Some(&mut *cx.t), pid, info, false);
    }
}

fn after_inner<H: Hal>(cx: &mut SysCtx<'_, H>, p: Pending, flow: &Flow) {
    use super::nr::*;
    let Flow::Ret(Ok(ret)) = flow else { return };
    let (n, a) = (p.n, p.a);
    let fd_event = |n: u32| -> Option<(u64, u32)> {
        Some(match n {
            x if x == __NR_write || x == __NR_writev || x == __NR_pwrite64 || x == __NR_pwritev || x == __NR_pwritev2 || x == __NR_ftruncate || x == __NR_fallocate => (a[0], g::IN_MODIFY),
            x if x == __NR_copy_file_range => (a[2], g::IN_MODIFY),
            x if x == __NR_read || x == __NR_readv || x == __NR_pread64 || x == __NR_preadv || x == __NR_preadv2 => (a[0], g::IN_ACCESS),
            x if x == __NR_fchmod || x == __NR_fchown || x == __NR_fsetxattr || x == __NR_fremovexattr => (a[0], g::IN_ATTRIB),
            x if x == __NR_utimensat && a[1] == 0 => (a[0], g::IN_ATTRIB),
            _ => return None,
        })
    };
    if let Some((fd, mask)) = fd_event(n) {
        if (mask == g::IN_MODIFY || mask == g::IN_ACCESS) && *ret == 0 && n != __NR_ftruncate && n != __NR_fallocate {
            return;
        }
        if let Ok(f) = cx.t.fds.file(fd) {
            emit_file(cx, &f, mask);
        }
        return;
    }
    if n == __NR_close {
        if let Some(f) = p.file {
            // The last reference: ours.
            if Rc::strong_count(&f) == 1 && !matches!(f.inode.kind, Kind::Special(_)) {
                let mask = if f.writable() { g::IN_CLOSE_WRITE } else { g::IN_CLOSE_NOWRITE };
                emit_file(cx, &f, mask);
            }
        }
        return;
    }
    if n == __NR_unlink || n == __NR_unlinkat || n == __NR_rmdir {
        if let Some((parent, name, inode)) = p.old {
            // Linux: the file's link count changed (IN_ATTRIB), a file with
            // no links left (a directory: always) is gone, then the
            // directory has lost the entry.
            if !inode.is_dir() {
                cx.k.inotify.deliver(key(&inode), g::IN_ATTRIB, 0, "");
            }
            if inode.is_dir() || inode.meta.borrow().nlink == 0 {
                cx.k.inotify.deliver(key(&inode), g::IN_DELETE_SELF, 0, "");
                cx.k.inotify.gone(key(&inode));
            }
            let dir = if inode.is_dir() { g::IN_ISDIR } else { 0 };
            cx.k.inotify.deliver(key(&parent), g::IN_DELETE | dir, 0, &name);
        }
        return;
    }
    if n == __NR_rename || n == __NR_renameat || n == __NR_renameat2 {
        let Some((oparent, oname, inode)) = p.old else { return };
        let (nd, np) = if n == __NR_rename { (CWD, a[1]) } else { (a[2], a[3]) };
        cx.k.inotify.cookie = cx.k.inotify.cookie.wrapping_add(1).max(1);
        let cookie = cx.k.inotify.cookie;
        let dir = if inode.is_dir() { g::IN_ISDIR } else { 0 };
        cx.k.inotify.deliver(key(&oparent), g::IN_MOVED_FROM | dir, cookie, &oname);
        if let Some((nparent, nname, _)) = entry(cx, nd, np) {
            cx.k.inotify.deliver(key(&nparent), g::IN_MOVED_TO | dir, cookie, &nname);
        }
        cx.k.inotify.deliver(key(&inode), g::IN_MOVE_SELF, 0, "");
        return;
    }
    let Some((d, pp)) = path_arg(n, &a) else { return };
    let Some((parent, name, inode)) = entry(cx, d, pp) else { return };
    let mask = if n == __NR_open || n == __NR_openat || n == __NR_creat {
        let flags = if n == __NR_creat { g::O_CREAT } else if n == __NR_open { a[1] as u32 } else { a[2] as u32 };
        if flags & g::O_CREAT != 0 && !p.existed {
            emit(cx, Some(&parent), &name, &inode, g::IN_CREATE, 0);
        } else if flags & g::O_TRUNC != 0 && flags & g::O_ACCMODE != g::O_RDONLY {
            emit(cx, Some(&parent), &name, &inode, g::IN_MODIFY, 0);
        }
        g::IN_OPEN
    } else if n == __NR_mkdir || n == __NR_mkdirat || n == __NR_mknod || n == __NR_mknodat || n == __NR_symlink || n == __NR_symlinkat {
        g::IN_CREATE
    } else if n == __NR_link || n == __NR_linkat {
        cx.k.inotify.deliver(key(&inode), g::IN_ATTRIB, 0, "");
        g::IN_CREATE
    } else if n == __NR_truncate {
        g::IN_MODIFY
    } else {
        g::IN_ATTRIB
    };
    emit(cx, Some(&parent), &name, &inode, mask, 0);
}
