//! hostfs: a host directory (a [`hal::HostDir`]) mounted into the guest.
//!
//! A hostfs inode carries its backend handle ([`HostNode`], in
//! [`Inode::fsdata`]); the handle is released when the last guest reference
//! to the inode goes, so an unlinked file costs the host nothing once the
//! guest closed it. A directory's children map is only a cache: every
//! lookup of a name asks the host again (close-to-open coherence, as NFS:
//! the cached inode is kept when the host still has the same inode number
//! under that name, its attributes refreshed, and dropped otherwise), so
//! files created, changed, removed or renamed on the host are seen at the
//! next lookup or open. Listings come from the host
//! ([`super::readdir`]) and create no inodes. Cached entries nobody uses
//! are evicted once a mount caches more than one inode per 16 KiB of guest
//! memory ([`Fs::size_host_caches`]), oldest first, so walking a tree of
//! any size takes bounded kernel memory.
//!
//! A regular file's data is a page cache whose store is the host file
//! ([`HostStore`], through the inode's handle): pages are read when first
//! needed (any file size, never a whole-file load), `write` goes through to
//! the host and into the cached pages, pages dirtied through shared
//! mappings are written back on `msync`/`fsync`/unmapping/exit/unmount and
//! under memory pressure. The file's size is the cache's. Coherence with
//! the host has one rule for attributes and data: whenever the kernel asks
//! the host about a file (a lookup revalidating it, an open or exec), a
//! change of its size, modification or change time since the pages were
//! last checked drops the clean pages nothing maps ([`refresh`]), so the
//! next read sees the host's bytes (close-to-open coherence, as NFS). At
//! open the backend also opens the host file ([`hal::HostDir::open`]), so an
//! open file keeps reading the file it named even if the host renames
//! another over it. Host FIFOs, sockets and device nodes are listed and
//! stat'ed but never opened: `ENXIO` for FIFOs and sockets, `EACCES` for
//! devices.
//!
//! Names are guest strings (see [`super::path::name_to_bytes`] for how any
//! byte string is carried); guest paths never reach the host: `..` and
//! symlinks are resolved by the guest's own path walk, and the backend
//! refuses anything but single names.
#![allow(clippy::arc_with_non_send_sync)]

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell, RefMut};

use hal::{HostAttr, HostDir, HostError, HostFileKind, HostSetAttr, PhysMem};
use linux_raw_sys::general as g;

use super::inode::{FileData, FsData, Fs, Inode, InodeRef, Kind, Meta};
use super::mount::FsType;
use super::path::{name_from_bytes, name_to_bytes, walk, Follow, Loc};
use crate::mm::page_cache::{Source, Store};
use crate::mm::{CacheSet, Frames, PageCache};
use crate::wait::{FileOps, IoCtx, WaitSet};
use crate::Errno;

/// Cached hostfs inodes per mount before unused ones are evicted (until
/// [`Fs::size_host_caches`] sizes it for the guest's memory).
pub const MAX_CACHED_INODES: usize = 32768;

/// One hostfs mount: the backend and the caches in front of it.
pub struct HostMount {
    /// Superblock id.
    pub sb: u32,
    dir: RefCell<Box<dyn HostDir>>,
    /// Where the page caches of its files are registered.
    caches: CacheSet,
    /// Live inodes by inode number (so a file has one inode however it is
    /// reached: hard links, re-lookups after eviction).
    icache: RefCell<BTreeMap<u64, Weak<Inode>>>,
    /// Handles of inodes that died, released at the next backend call.
    dead: RefCell<Vec<(u64, u64)>>,
    /// Live hostfs inodes of this mount.
    live: Cell<usize>,
    /// Cached (directory, name) entries, oldest first, for eviction.
    entries: RefCell<VecDeque<(Weak<Inode>, String)>>,
    /// Eviction threshold (tests lower it).
    max_cached: Cell<usize>,
}

/// What a hostfs inode keeps: its backend handle and what the host last
/// said about it. (A regular file's data and size are its page cache's.)
pub struct HostNode {
    /// Shared with the file's [`HostStore`] (a re-lookup may replace it).
    handle: Rc<Cell<u64>>,
    /// Its inode number (the icache key).
    ino: u64,
    mount: Rc<HostMount>,
    /// Size on the host as last seen (what `stat` shows for a directory).
    size: Cell<u64>,
    /// 512-byte blocks on the host as last seen (`st_blocks`, while the
    /// cache agrees with the host about the size).
    blocks: Cell<u64>,
    /// The host's (mtime, ctime, size) when the cached pages were last
    /// checked against it.
    stamp: Cell<(i64, i64, u64)>,
    /// Changed on the host while its pages could not be dropped (mapped,
    /// or dirty): revalidated at the next open.
    stale: Cell<bool>,
    /// Copied up into an overlay: the inode is the guest's own from now on
    /// (its cache holds all its data; never refreshed from the host again).
    detached: Cell<bool>,
}

impl Drop for HostNode {
    fn drop(&mut self) {
        self.mount.live.set(self.mount.live.get().saturating_sub(1));
        // The icache's entry goes too (a dead Weak still holds the inode's
        // allocation): now, or at the next backend call if it is borrowed.
        let gone = match self.mount.icache.try_borrow_mut() {
            Ok(mut ic) => {
                if ic.get(&self.ino).is_some_and(|w| w.strong_count() == 0) {
                    ic.remove(&self.ino);
                }
                true
            }
            Err(_) => false,
        };
        if let Ok(mut d) = self.mount.dead.try_borrow_mut() {
            d.push((self.handle.get(), if gone { u64::MAX } else { self.ino }));
        }
    }
}

impl HostNode {
    /// The backend handle.
    pub fn handle(&self) -> u64 {
        self.handle.get()
    }
    /// Copied up into an overlay (no longer the host's)?
    pub fn detached(&self) -> bool {
        self.detached.get()
    }
    /// Size on the host.
    pub fn size(&self) -> u64 {
        self.size.get()
    }
    /// Blocks on the host.
    pub fn blocks(&self) -> u64 {
        self.blocks.get()
    }
}

/// A host FIFO, socket or device node: visible, never opened. (A 0/0
/// character device is also what an overlay's whiteout is.)
pub(crate) struct HostSpecial {
    pub(crate) type_bits: u32,
    pub(crate) rdev: (u32, u32),
}

impl FileOps for HostSpecial {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        0
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<crate::wait::Opened, Errno> {
        // The host's object is never the guest's: a FIFO or socket has no
        // reader or listener here (ENXIO), a device is not to be touched.
        Err(if self.type_bits == g::S_IFCHR || self.type_bits == g::S_IFBLK { Errno::EACCES } else { Errno::ENXIO })
    }
    fn type_bits(&self) -> u32 {
        self.type_bits
    }
    fn rdev(&self) -> (u32, u32) {
        self.rdev
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A host file as the store of its page cache: reaches the backend through
/// the handle its inode holds, at each call.
pub struct HostStore {
    mount: Rc<HostMount>,
    handle: Rc<Cell<u64>>,
}

impl HostStore {
    fn with<R>(&self, f: impl FnOnce(&mut dyn HostDir, u64) -> Result<R, HostError>) -> Result<R, Errno> {
        // Never re-entered from a backend call; EIO rather than a panic if it were.
        let mut d = self.mount.try_backend().ok_or(Errno::EIO)?;
        f(&mut **d, self.handle.get()).map_err(errno_of)
    }
}

impl Store for HostStore {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.with(|d, h| d.read(h, off, buf))
    }
    fn write(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        self.with(|d, h| {
            let mut done = 0;
            while done < data.len() {
                let n = d.write(h, off + done as u64, &data[done..])?;
                if n == 0 {
                    return Err(HostError::Io);
                }
                done += n;
            }
            Ok(())
        })
    }
    fn truncate(&self, len: u64) -> Result<(), Errno> {
        self.with(|d, h| d.truncate(h, len))
    }
}

/// The host side of every hostfs mount.
#[derive(Default)]
pub struct HostState {
    mounts: BTreeMap<u32, Rc<HostMount>>,
    /// Overlay roots whose upper layer is written to a host directory at
    /// shutdown (`do --overlay DIR`).
    pub(crate) persist: Vec<InodeRef>,
}

/// The guest's view of a host error.
pub fn errno_of(e: HostError) -> Errno {
    match e {
        HostError::NotFound => Errno::ENOENT,
        HostError::NotDir => Errno::ENOTDIR,
        HostError::IsDir => Errno::EISDIR,
        HostError::Exists => Errno::EEXIST,
        HostError::NotEmpty => Errno::ENOTEMPTY,
        HostError::Access => Errno::EACCES,
        HostError::Perm => Errno::EPERM,
        HostError::ReadOnly => Errno::EROFS,
        HostError::Invalid => Errno::EINVAL,
        HostError::NoSpace => Errno::ENOSPC,
        HostError::Stale => Errno::ESTALE,
        HostError::CrossDevice => Errno::EXDEV,
        HostError::Busy => Errno::EBUSY,
        HostError::NameTooLong => Errno::ENAMETOOLONG,
        HostError::TooManyLinks => Errno::EMLINK,
        HostError::TooBig => Errno::EFBIG,
        HostError::NotSupported => Errno::EOPNOTSUPP,
        HostError::TooManyFiles => Errno::ENFILE,
        HostError::Io => Errno::EIO,
        HostError::Corrupted => Errno::EUCLEAN,
    }
}

fn ns_to_meta(ns: i64) -> u64 {
    // Meta keeps unsigned ns; times before 1970 clamp to the epoch.
    ns.max(0) as u64
}

impl HostMount {
    /// A mount of backend `dir` whose inodes carry superblock `sb` and
    /// whose files' page caches join `caches`.
    pub fn new(sb: u32, dir: Box<dyn HostDir>, caches: &CacheSet) -> Rc<HostMount> {
        Rc::new(HostMount {
            sb,
            dir: RefCell::new(dir),
            caches: caches.clone(),
            icache: RefCell::new(BTreeMap::new()),
            dead: RefCell::new(Vec::new()),
            live: Cell::new(0),
            entries: RefCell::new(VecDeque::new()),
            max_cached: Cell::new(MAX_CACHED_INODES),
        })
    }

    /// The inode of the export's root (`handle`, with `attr`).
    pub fn root_inode(self: &Rc<Self>, handle: u64, attr: &HostAttr) -> Result<InodeRef, Errno> {
        self.inode_for(handle, attr)
    }

    /// The backend, after releasing the handles of inodes that died.
    fn backend(&self) -> RefMut<'_, Box<dyn HostDir>> {
        self.release_dead();
        self.dir.borrow_mut()
    }

    /// [`HostMount::backend`], or `None` if it is in use (a page cache's
    /// store must not panic).
    fn try_backend(&self) -> Option<RefMut<'_, Box<dyn HostDir>>> {
        if self.dir.try_borrow_mut().is_err() {
            return None;
        }
        self.release_dead();
        self.dir.try_borrow_mut().ok()
    }

    fn release_dead(&self) {
        let dead = match self.dead.try_borrow_mut() {
            Ok(mut d) => core::mem::take(&mut *d),
            Err(_) => return,
        };
        if dead.is_empty() {
            return;
        }
        if dead.iter().any(|&(_, ino)| ino != u64::MAX) {
            if let Ok(mut ic) = self.icache.try_borrow_mut() {
                for &(_, ino) in &dead {
                    if ic.get(&ino).is_some_and(|w| w.strong_count() == 0) {
                        ic.remove(&ino);
                    }
                }
            }
        }
        let Ok(mut d) = self.dir.try_borrow_mut() else {
            // In use: keep them for the next call.
            if let Ok(mut q) = self.dead.try_borrow_mut() {
                q.extend(dead);
            }
            return;
        };
        for (h, _) in dead {
            d.release(h);
        }
    }

    /// Host descriptors the backend holds now.
    pub fn open_fds(&self) -> usize {
        self.dir.borrow().open_fds()
    }

    /// Live hostfs inodes.
    pub fn live_inodes(&self) -> usize {
        self.live.get()
    }

    /// Entries of the inode-number index (live inodes, and dead ones not
    /// yet swept).
    pub fn indexed_inodes(&self) -> usize {
        self.icache.borrow().len()
    }

    fn is_readonly(&self) -> bool {
        self.dir.borrow().readonly()
    }

    /// The inode for `handle` with `attr`: the live one with that inode
    /// number if there is one (then `handle` is released), else a new one.
    fn inode_for(self: &Rc<Self>, handle: u64, attr: &HostAttr) -> Result<InodeRef, Errno> {
        let existing = self.icache.borrow().get(&attr.ino).and_then(Weak::upgrade);
        if let Some(node) = existing {
            if let Some(FsData::Host(hn)) = &node.fsdata {
                if host_kind(&node) == Some(attr.kind) {
                    let old = hn.handle.replace(handle);
                    self.backend().release(old);
                    refresh(&node, attr);
                    return Ok(node);
                }
            }
        }
        let handle = Rc::new(Cell::new(handle));
        let kind = match attr.kind {
            HostFileKind::Dir => Kind::Dir(RefCell::new(BTreeMap::new())),
            HostFileKind::File => {
                let store = HostStore { mount: self.clone(), handle: handle.clone() };
                Kind::File(FileData::new(PageCache::new(&self.caches, Source::Store(Rc::new(store)), attr.size, None)))
            }
            HostFileKind::Symlink => {
                let mut buf = vec![0u8; super::path::PATH_MAX];
                let r = self.backend().readlink(handle.get(), &mut buf);
                match r {
                    Ok(n) => Kind::Symlink(name_from_bytes(&buf[..n.min(buf.len())])),
                    Err(e) => {
                        self.backend().release(handle.get());
                        return Err(errno_of(e));
                    }
                }
            }
            k => {
                let type_bits = match k {
                    HostFileKind::Fifo => g::S_IFIFO,
                    HostFileKind::Socket => g::S_IFSOCK,
                    HostFileKind::BlockDev => g::S_IFBLK,
                    _ => g::S_IFCHR,
                };
                let r = attr.rdev;
                let rdev = ((((r >> 8) & 0xfff) | ((r >> 32) & !0xfff)) as u32, ((r & 0xff) | ((r >> 12) & !0xff)) as u32);
                Kind::Special(Rc::new(HostSpecial { type_bits, rdev }))
            }
        };
        let mut meta = Meta::new(attr.perm, ns_to_meta(attr.mtime_ns), attr.nlink);
        meta.atime_ns = ns_to_meta(attr.atime_ns);
        meta.ctime_ns = ns_to_meta(attr.ctime_ns);
        meta.uid = attr.uid;
        meta.gid = attr.gid;
        let hn = HostNode {
            handle,
            ino: attr.ino,
            mount: self.clone(),
            size: Cell::new(attr.size),
            blocks: Cell::new(attr.blocks),
            stamp: Cell::new(stamp_of(attr)),
            stale: Cell::new(false),
            detached: Cell::new(false),
        };
        self.live.set(self.live.get() + 1);
        // Inode numbers are the host's, so they are stable across lookups.
        let node = Arc::new(Inode {
            ino: attr.ino,
            meta: RefCell::new(meta),
            kind,
            sb: self.sb,
            mounted: RefCell::new(None),
            fsdata: Some(FsData::Host(hn)),
            charge: Default::default(),
        });
        self.icache.borrow_mut().insert(attr.ino, Arc::downgrade(&node));
        Ok(node)
    }

    /// Remember that `dir` caches `name`, and evict old unused entries
    /// while over the limit.
    fn cached(&self, dir: &InodeRef, name: &str) {
        let mut q = self.entries.borrow_mut();
        q.push_back((Arc::downgrade(dir), String::from(name)));
        let max = self.max_cached.get();
        // Each entry is looked at a bounded number of times per insertion.
        let mut budget = 8;
        while self.live.get() > max && budget > 0 {
            budget -= 1;
            let Some((d, n)) = q.pop_front() else { break };
            let Some(d) = d.upgrade() else { continue };
            let Kind::Dir(children) = &d.kind else { continue };
            let victim = children.borrow().get(&n).cloned();
            let Some(v) = victim else { continue };
            // In use (open, a working directory, a mount point, below one
            // that is), or holding data not written back yet: keep it,
            // look again later.
            if Arc::strong_count(&v) > 2 || v.mounted.borrow().is_some() || v.file_data().is_some_and(|d| d.dirty_pages() > 0) {
                q.push_back((Arc::downgrade(&d), n));
                continue;
            }
            drop(v);
            children.borrow_mut().remove(&n);
        }
        // Entries whose directory died are dropped as they come up; keep
        // the queue from growing past a few times the cache.
        while q.len() > 4 * max.max(16) {
            q.pop_front();
        }
    }
}

fn host_kind(node: &Inode) -> Option<HostFileKind> {
    Some(match &node.kind {
        Kind::Dir(_) => HostFileKind::Dir,
        Kind::File(_) => HostFileKind::File,
        Kind::Symlink(_) => HostFileKind::Symlink,
        Kind::Special(s) => match s.type_bits() {
            g::S_IFIFO => HostFileKind::Fifo,
            g::S_IFSOCK => HostFileKind::Socket,
            g::S_IFBLK => HostFileKind::BlockDev,
            _ => HostFileKind::CharDev,
        },
        Kind::Device(_) => return None,
    })
}

/// What says whether a host file's data changed: (mtime, ctime, size).
fn stamp_of(attr: &HostAttr) -> (i64, i64, u64) {
    (attr.mtime_ns, attr.ctime_ns, attr.size)
}

/// Bring a cached inode's attributes in line with the host's; if the
/// host's file changed since its cached pages were checked, drop them (or,
/// when they are mapped or dirty, leave that to the next open).
fn refresh(node: &Inode, attr: &HostAttr) {
    let Some((hn, _)) = host_of(node) else { return };
    if hn.detached.get() {
        return;
    }
    set_meta(node, attr);
    if hn.stamp.get() == stamp_of(attr) {
        return;
    }
    hn.stamp.set(stamp_of(attr));
    if let Kind::File(d) = &node.kind {
        if !d.revalidate_unmapped(attr.size) {
            hn.stale.set(true);
        }
    }
}

/// Take the host's attributes without looking at the data: after the
/// kernel changed only metadata itself (chmod, chown, utimes, link), the
/// cached pages are still the host's.
fn refresh_meta(node: &Inode, attr: &HostAttr) {
    let Some((hn, _)) = host_of(node) else { return };
    if hn.detached.get() {
        return;
    }
    set_meta(node, attr);
    let (_, _, size) = hn.stamp.get();
    hn.stamp.set((attr.mtime_ns, attr.ctime_ns, size));
}

fn set_meta(node: &Inode, attr: &HostAttr) {
    let Some((hn, _)) = host_of(node) else { return };
    let mut m = node.meta.borrow_mut();
    m.perm = attr.perm;
    m.uid = attr.uid;
    m.gid = attr.gid;
    m.nlink = attr.nlink;
    m.mtime_ns = ns_to_meta(attr.mtime_ns);
    m.atime_ns = ns_to_meta(attr.atime_ns);
    m.ctime_ns = ns_to_meta(attr.ctime_ns);
    drop(m);
    hn.size.set(attr.size);
    hn.blocks.set(attr.blocks);
}

fn host_of(node: &Inode) -> Option<(&HostNode, &Rc<HostMount>)> {
    match &node.fsdata {
        Some(FsData::Host(hn)) => Some((hn, &hn.mount)),
        _ => None,
    }
}

/// `Inode::lookup` of a hostfs directory: revalidate a cached entry or ask
/// the host.
pub(crate) fn lookup(dir: &Inode, name: &str) -> Result<Option<InodeRef>, Errno> {
    let (Some((dh, mount)), Kind::Dir(children)) = (host_of(dir), &dir.kind) else { return Ok(None) };
    if name == "." || name == ".." || name.is_empty() {
        return Ok(None);
    }
    let bytes = name_to_bytes(name);
    let cached = children.borrow().get(name).cloned();
    if let Some(c) = cached {
        // Mount points and nodes the guest put here itself stay as they are.
        let Some((ch, _)) = host_of(&c).filter(|_| c.mounted.borrow().is_none()) else { return Ok(Some(c)) };
        let r = mount.backend().revalidate(dh.handle(), &bytes, ch.handle());
        match r {
            Ok(attr) => {
                refresh(&c, &attr);
                return Ok(Some(c));
            }
            Err(HostError::Stale | HostError::NotFound) => {
                children.borrow_mut().remove(name);
            }
            Err(e) => return Err(errno_of(e)),
        }
    }
    let r = mount.backend().lookup(dh.handle(), &bytes);
    let (h, attr) = match r {
        Ok(x) => x,
        Err(HostError::NotFound) => return Ok(None),
        Err(e) => return Err(errno_of(e)),
    };
    let node = mount.inode_for(h, &attr)?;
    children.borrow_mut().insert(String::from(name), node.clone());
    // The directory's own reference (every hostfs inode is in the icache).
    let me = mount.icache.borrow().get(&dir.ino).and_then(Weak::upgrade);
    if let Some(me) = me {
        mount.cached(&me, name);
    }
    Ok(Some(node))
}

impl Fs {
    /// Mount host directory `dir` at guest path `at`. Missing directories
    /// on the way are created in the root file system; `/` makes the
    /// export the root itself (the packed root is then unreachable).
    pub fn mount_host(&mut self, at: &str, mut dir: Box<dyn HostDir>) -> Result<(), Errno> {
        let sb = self.new_sb(FsType::Hostfs, dir.readonly());
        let root_handle = dir.root();
        let attr = dir.getattr(root_handle).map_err(errno_of)?;
        let mount = HostMount::new(sb, dir, &self.caches);
        let root = mount.root_inode(root_handle, &attr)?;
        self.register_host(sb, mount);
        if at.split('/').all(|c| c.is_empty()) {
            self.set_root(root, sb, "hostfs");
            return Ok(());
        }
        let mut cur = self.root.clone();
        for c in at.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." {
                return Err(Errno::EINVAL);
            }
            cur = match cur.lookup(c)? {
                Some(d) => super::path::cross_mounts(d),
                None => {
                    if self.is_readonly(cur.sb) || self.is_host(cur.sb) {
                        return Err(Errno::ENOENT);
                    }
                    let d = self.new_dir_in(cur.sb, 0o755, 0);
                    cur.insert(c, d.clone())?;
                    cur.meta.borrow_mut().nlink += 1;
                    d
                }
            };
        }
        let start = Loc::root(self.root.clone());
        let target = walk(&self.root.clone(), &start, at, Follow::Yes)?;
        self.attach(&target, root, sb, "hostfs")?;
        Ok(())
    }

    /// Keep `mount` as the host side of superblock `sb`.
    pub(crate) fn register_host(&mut self, sb: u32, mount: Rc<HostMount>) {
        self.host.borrow_mut().mounts.insert(sb, mount);
    }

    /// Keep `mount` as one layer of an overlay (its superblock is the
    /// overlay's; the first layer answers `statfs`).
    pub(crate) fn register_host_layer(&mut self, mount: Rc<HostMount>) {
        self.host.borrow_mut().mounts.entry(mount.sb).or_insert(mount);
    }

    /// The hostfs mount of superblock `sb`.
    pub fn host_mount(&self, sb: u32) -> Option<Rc<HostMount>> {
        self.host.borrow().mounts.get(&sb).cloned()
    }

    /// Set the number of cached inodes past which a hostfs mount evicts.
    pub fn set_host_cache_limit(&self, sb: u32, max: usize) {
        if let Some(m) = self.host_mount(sb) {
            m.max_cached.set(max.max(1));
        }
    }

    /// Size every hostfs mount's inode cache for a guest of `mem_bytes`:
    /// one cached inode per 16 KiB of guest memory, at least 4,096, so a
    /// small guest walking a huge tree evicts sooner.
    pub fn size_host_caches(&self, mem_bytes: u64) {
        let max = ((mem_bytes / (16 << 10)) as usize).clamp(4096, 1 << 20);
        for m in self.host.borrow().mounts.values() {
            m.max_cached.set(max);
        }
    }

    /// Record that `dir` (a hostfs directory) now caches `name`.
    pub(crate) fn host_cached(dir: &InodeRef, name: &str) {
        if let Some((_, m)) = host_of(dir) {
            m.cached(dir, name);
        }
    }

    /// At open and exec of a host file: open it on the host and take its
    /// attributes; if it changed on the host since its pages were checked
    /// (or a lookup saw it change while they could not be dropped), forget
    /// the clean pages nothing maps and take the host's size (close-to-open
    /// coherence). Nothing for other files and for files an overlay copied up.
    pub fn host_revalidate(&self, node: &InodeRef, frames: &mut Frames) -> Result<(), Errno> {
        let Kind::File(data) = &node.kind else { return Ok(()) };
        let Some((hn, mount)) = host_of(node) else { return Ok(()) };
        if hn.detached.get() {
            return Ok(());
        }
        let r = mount.backend().open(hn.handle());
        let attr = r.map_err(errno_of)?;
        let changed = hn.stamp.get() != stamp_of(&attr) || hn.stale.get();
        set_meta(node, &attr);
        if changed {
            hn.stamp.set(stamp_of(&attr));
            hn.stale.set(false);
            data.revalidate(attr.size, frames);
        }
        Ok(())
    }

    /// Flush a host file (`fsync`, `fdatasync`).
    pub fn host_fsync(&self, node: &Inode, data_only: bool) -> Result<(), Errno> {
        let Some((hn, mount)) = host_of(node).filter(|(hn, _)| !hn.detached.get()) else { return Ok(()) };
        mount.backend().fsync(hn.handle(), data_only).map_err(errno_of)
    }

    /// Create `name` (a file, or a directory when `dir_kind`) on the host
    /// in hostfs directory `dir`; the new inode (already inserted).
    pub fn host_create(&self, dir: &InodeRef, name: &str, perm: u32, dir_kind: bool) -> Result<InodeRef, Errno> {
        let (dh, mount) = host_of(dir).ok_or(Errno::EIO)?;
        let bytes = name_to_bytes(name);
        let r = {
            let mut d = mount.backend();
            if dir_kind { d.mkdir(dh.handle(), &bytes, perm) } else { d.create(dh.handle(), &bytes, perm) }
        };
        let (h, attr) = r.map_err(errno_of)?;
        let node = mount.inode_for(h, &attr)?;
        insert_child(dir, name, node.clone());
        Ok(node)
    }

    /// Create symbolic link `name` -> `target` on the host in `dir`.
    pub fn host_symlink(&self, dir: &InodeRef, name: &str, target: &str) -> Result<InodeRef, Errno> {
        let (dh, mount) = host_of(dir).ok_or(Errno::EIO)?;
        let r = mount.backend().symlink(dh.handle(), &name_to_bytes(name), &name_to_bytes(target));
        let (h, attr) = r.map_err(errno_of)?;
        let node = mount.inode_for(h, &attr)?;
        insert_child(dir, name, node.clone());
        Ok(node)
    }

    /// An unnamed host file in `dir` (`O_TMPFILE`).
    pub fn host_tmpfile(&self, dir: &InodeRef, perm: u32) -> Result<InodeRef, Errno> {
        let (dh, mount) = host_of(dir).ok_or(Errno::EIO)?;
        let r = mount.backend().tmpfile(dh.handle(), perm);
        let (h, attr) = r.map_err(errno_of)?;
        mount.inode_for(h, &attr)
    }

    /// Hard link: `node` also named `name` in `dir` (same hostfs mount).
    pub fn host_link(&self, node: &InodeRef, dir: &InodeRef, name: &str) -> Result<(), Errno> {
        let (hn, mount) = host_of(node).ok_or(Errno::EXDEV)?;
        let (dh, _) = host_of(dir).ok_or(Errno::EXDEV)?;
        let r = mount.backend().link(hn.handle(), dh.handle(), &name_to_bytes(name));
        let attr = r.map_err(errno_of)?;
        refresh_meta(node, &attr);
        insert_child(dir, name, node.clone());
        Ok(())
    }

    /// Remove `name` from hostfs directory `dir` on the host. `node` is what
    /// it named; kept usable on the host while the guest still holds it.
    pub fn host_unlink(&self, dir: &InodeRef, name: &str, is_dir: bool, node: &InodeRef) -> Result<(), Errno> {
        let (dh, mount) = host_of(dir).ok_or(Errno::EIO)?;
        // Held by more than the directory's map and this call: in use.
        let keep = host_of(node).filter(|_| Arc::strong_count(node) > 2).map(|(h, _)| h.handle());
        let r = mount.backend().unlink(dh.handle(), &name_to_bytes(name), is_dir, keep);
        r.map_err(errno_of)
    }

    /// `renameat2` on the host, both directories on hostfs mount `sdir.sb`.
    #[allow(clippy::too_many_arguments)]
    pub fn host_rename(
        &self,
        sdir: &InodeRef,
        sname: &str,
        ddir: &InodeRef,
        dname: &str,
        flags: u32,
        moved: &InodeRef,
        other: Option<&InodeRef>,
    ) -> Result<(), Errno> {
        let (sh, mount) = host_of(sdir).ok_or(Errno::EXDEV)?;
        let (dh, _) = host_of(ddir).ok_or(Errno::EXDEV)?;
        let mh = host_of(moved).map(|(h, _)| h.handle());
        let oh = other.and_then(|o| host_of(o).filter(|_| flags & 2 != 0 || Arc::strong_count(o) > 2)).map(|(h, _)| h.handle());
        let r = mount.backend().rename(sh.handle(), &name_to_bytes(sname), dh.handle(), &name_to_bytes(dname), flags, mh, oh);
        r.map_err(errno_of)
    }

    /// chmod/chown/utimes of a hostfs inode, written through to the host;
    /// the inode takes the host's answer.
    pub fn host_setattr(&self, node: &InodeRef, a: &HostSetAttr) -> Result<(), Errno> {
        let Some((hn, mount)) = host_of(node) else { return Ok(()) };
        let r = mount.backend().setattr(hn.handle(), a);
        let attr = r.map_err(errno_of)?;
        // Only metadata changed: the pages held are still the host's.
        refresh_meta(node, &attr);
        Ok(())
    }

    /// `statfs` numbers of a hostfs mount: the host file system's.
    pub fn host_statfs(&self, sb: u32) -> Option<[u64; 6]> {
        self.host_mount(sb)?.backend().statfs().ok()
    }

    /// Is `sb` a hostfs mount?
    pub fn is_host(&self, sb: u32) -> bool {
        self.fstype(sb) == FsType::Hostfs
    }

    /// Is `sb` mounted from a read-only export?
    pub fn host_readonly(&self, sb: u32) -> bool {
        self.host_mount(sb).is_some_and(|m| m.is_readonly())
    }
}

/// Insert `name` -> `node` in hostfs directory `dir`'s cache.
fn insert_child(dir: &InodeRef, name: &str, node: InodeRef) {
    if let Kind::Dir(c) = &dir.kind {
        c.borrow_mut().insert(String::from(name), node);
        Fs::host_cached(dir, name);
    }
}

/// The entry at `index` of hostfs directory `dir`'s listing (index 0 takes
/// a fresh listing from the host): (name, inode number, `d_type`).
pub(crate) fn readdir_at(dir: &Inode, index: usize) -> Result<Option<(String, u64, u8)>, Errno> {
    let Some((dh, mount)) = host_of(dir) else { return Ok(None) };
    let mut buf = [0u8; 256];
    let r = mount.backend().readdir(dh.handle(), index, &mut buf);
    let Some(e) = r.map_err(errno_of)? else { return Ok(None) };
    let name = name_from_bytes(&buf[..e.name_len.min(buf.len())]);
    let dtype = match e.kind {
        HostFileKind::File => g::DT_REG,
        HostFileKind::Dir => g::DT_DIR,
        HostFileKind::Symlink => g::DT_LNK,
        HostFileKind::Fifo => g::DT_FIFO,
        HostFileKind::Socket => g::DT_SOCK,
        HostFileKind::CharDev => g::DT_CHR,
        HostFileKind::BlockDev => g::DT_BLK,
    } as u8;
    Ok(Some((name, e.ino, dtype)))
}

/// Size and blocks of a hostfs file, directory or symbolic link as `stat`
/// shows them: a directory's and a link's are the host's (a fast link has
/// no blocks); a file's size is its cache's, and its
/// blocks the host's while the cache agrees with the host about the size
/// and holds nothing unwritten (else counted from the cache).
pub(crate) fn file_size(node: &Inode) -> Option<(u64, u64)> {
    let (hn, _) = host_of(node)?;
    if hn.detached.get() {
        return None;
    }
    match &node.kind {
        Kind::Dir(_) | Kind::Symlink(_) => Some((hn.size(), hn.blocks())),
        Kind::File(d) => {
            let size = d.size();
            let blocks = if size == hn.size() && d.dirty_pages() == 0 { hn.blocks() } else { d.blocks() };
            Some((size, blocks))
        }
        _ => None,
    }
}

/// Is hostfs inode `node` an overlayfs whiteout on the host?
pub(crate) fn is_host_whiteout(node: &Inode) -> bool {
    let Some((hn, m)) = host_of(node) else { return false };
    let candidate = match &node.kind {
        Kind::Special(s) => s.type_bits() == g::S_IFCHR,
        Kind::File(d) => d.size() == 0,
        _ => false,
    };
    candidate && m.backend().is_whiteout(hn.handle())
}

/// Is hostfs directory `node` marked opaque (overlayfs' xattr)?
pub(crate) fn is_host_opaque(node: &Inode) -> bool {
    let Some((hn, m)) = host_of(node) else { return false };
    m.backend().is_opaque(hn.handle())
}

/// Host operations an overlay's flush needs on hostfs directory `dir`.
pub(crate) fn host_remove_tree(dir: &InodeRef, name: &str) -> Result<(), Errno> {
    let (dh, m) = host_of(dir).ok_or(Errno::EIO)?;
    if let Kind::Dir(c) = &dir.kind {
        c.borrow_mut().remove(name);
    }
    let r = m.backend().remove_tree(dh.handle(), &name_to_bytes(name));
    r.map_err(errno_of)
}

/// Create an overlayfs whiteout `name` in hostfs directory `dir`.
pub(crate) fn host_whiteout(dir: &InodeRef, name: &str) -> Result<(), Errno> {
    let (dh, m) = host_of(dir).ok_or(Errno::EIO)?;
    let r = m.backend().whiteout(dh.handle(), &name_to_bytes(name));
    r.map_err(errno_of)
}

/// Mark hostfs directory `dir` opaque.
pub(crate) fn host_set_opaque(dir: &InodeRef) -> Result<(), Errno> {
    let (dh, m) = host_of(dir).ok_or(Errno::EIO)?;
    let r = m.backend().set_opaque(dh.handle());
    r.map_err(errno_of)
}

/// Is `node` a hostfs inode of the mount whose superblock is... the same
/// backend as directory `dir` (an untouched file of that layer)?
pub(crate) fn same_mount(node: &Inode, dir: &Inode) -> bool {
    match (host_of(node), host_of(dir)) {
        (Some((a, _)), Some((_, m))) => Rc::ptr_eq(&a.mount, m) && !a.detached.get(),
        _ => false,
    }
}

/// Make hostfs inode `node` the guest's own (an overlay copied it up in
/// place): a file's page cache becomes a memory file's, charged to the
/// overlay's size limit, holding the host file's data read through it
/// (with `keep_data`; else empty: an `O_TRUNC` open), and the host is not
/// asked about the inode again. On failure nothing changed.
pub(crate) fn detach(fs: &Fs, node: &InodeRef, keep_data: bool, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
    let Some((hn, _)) = host_of(node) else { return Ok(()) };
    if hn.detached.get() {
        return Ok(());
    }
    if let Kind::File(d) = &node.kind {
        if keep_data {
            // The host's bytes as they are now.
            fs.host_revalidate(node, frames)?;
        }
        d.detach_store(fs.quota(node.sb), keep_data, frames, phys)?;
        // As every memory file (only memfd_create makes sealable ones).
        d.set_seals(g::F_SEAL_SEAL);
    }
    hn.detached.set(true);
    Ok(())
}

/// Keep the `HostState` type nameable from `Fs` (see [`Fs::host`]).
pub type HostCell = RefCell<HostState>;
