//! hostfs: a host directory (a [`hal::HostDir`]) mounted into the guest.
//!
//! Directories are filled on demand: the path walk asks for one name at a
//! time ([`Fs::host_lookup`]), a listing syncs the whole directory
//! ([`Fs::host_sync_dir`]). A regular file's data is a page cache whose
//! store is the host file ([`HostStore`]): pages are read when first needed
//! (any file size, no whole-file load), `write` goes through to the host
//! and into the cached pages, pages dirtied through shared mappings are
//! written back on `msync`/`fsync`/unmapping/exit/unmount and under memory
//! pressure, and clean pages are evicted under memory pressure. At each open
//! the cache is revalidated against the host's size and modification time
//! ([`Fs::host_revalidate`]: close-to-open coherence).
//! Guest paths never reach the host: `..` and symlinks are resolved by the
//! guest's own path walk, and the backend refuses anything but single names.
#![allow(clippy::arc_with_non_send_sync)]

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::{HostDir, HostError, HostFileKind};

use super::inode::{FileData, Fs, Inode, InodeRef, Kind, Meta};
use super::mount::FsType;
use super::path::{walk, Follow, Loc};
use crate::mm::page_cache::{Source, Store};
use crate::mm::{Frames, PageCache};
use crate::Errno;

/// A host file as the store of its page cache: reaches the backend through
/// the handle hostfs keeps for (superblock, inode number), at each call.
pub struct HostStore {
    host: HostCell,
    sb: u32,
    ino: u64,
}

impl HostStore {
    fn with<R>(&self, f: impl FnOnce(&mut dyn HostDir, u64) -> Result<R, HostError>) -> Result<R, Errno> {
        let mut guard = self.host.try_borrow_mut().map_err(|_| Errno::EIO)?;
        let hs = &mut *guard;
        let h = *hs.handles.get(&(self.sb, self.ino)).ok_or(Errno::EIO)?;
        let d = hs.dirs.get_mut(&self.sb).ok_or(Errno::EIO)?;
        f(&mut **d, h).map_err(errno_of)
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
    /// Exports by superblock id.
    dirs: BTreeMap<u32, Box<dyn HostDir>>,
    /// (superblock, inode number) -> backend handle.
    handles: BTreeMap<(u32, u64), u64>,
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
        HostError::ReadOnly => Errno::EROFS,
        HostError::Invalid => Errno::EINVAL,
        HostError::NoSpace => Errno::ENOSPC,
        HostError::Stale | HostError::Io => Errno::EIO,
    }
}

impl Fs {
    /// Mount host directory `dir` at guest path `at` (created in the root
    /// file system if missing).
    pub fn mount_host(&mut self, at: &str, mut dir: Box<dyn HostDir>) -> Result<(), Errno> {
        let mut cur = self.root.clone();
        for c in at.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." {
                return Err(Errno::EINVAL);
            }
            cur = match cur.lookup(c)? {
                Some(d) => super::path::cross_mounts(d),
                None => {
                    let d = self.new_dir_in(cur.sb, 0o755, 0);
                    cur.insert(c, d.clone())?;
                    cur.meta.borrow_mut().nlink += 1;
                    d
                }
            };
        }
        let start = Loc::root(self.root.clone());
        let target = walk(&self.root.clone(), &start, at, Follow::Yes)?;
        let sb = self.new_sb(FsType::Hostfs, dir.readonly());
        let root_handle = dir.root();
        let attr = dir.getattr(root_handle).map_err(errno_of)?;
        let root = self.new_dir_in(sb, attr.perm, attr.mtime_ns);
        {
            let mut hs = self.host.borrow_mut();
            hs.dirs.insert(sb, dir);
            hs.handles.insert((sb, root.ino), root_handle);
        }
        self.attach(&target, root, sb, "hostfs")?;
        Ok(())
    }

    fn host_handle(&self, node: &Inode) -> Option<u64> {
        self.host.borrow().handles.get(&(node.sb, node.ino)).copied()
    }

    /// Make the inode for host handle `h` (`None` for kinds the guest
    /// cannot use).
    fn host_inode(&self, sb: u32, h: u64) -> Result<Option<InodeRef>, Errno> {
        let mut guard = self.host.borrow_mut();
        let hs = &mut *guard;
        let d = hs.dirs.get_mut(&sb).ok_or(Errno::EIO)?;
        let attr = d.getattr(h).map_err(errno_of)?;
        let kind = match attr.kind {
            HostFileKind::Dir => Kind::Dir(RefCell::new(BTreeMap::new())),
            HostFileKind::File => {
                let store = HostStore { host: self.host.clone(), sb, ino: attr.ino };
                Kind::File(FileData::new(PageCache::new(&self.caches, Source::Store(Rc::new(store)), attr.size, None)))
            }
            HostFileKind::Symlink => {
                let mut buf = vec![0u8; 4096];
                let n = d.readlink(h, &mut buf).map_err(errno_of)?;
                Kind::Symlink(String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned())
            }
            HostFileKind::Other => {
                d.release(h);
                return Ok(None);
            }
        };
        let mut meta = Meta::new(attr.perm, attr.mtime_ns, attr.nlink);
        meta.atime_ns = attr.atime_ns;
        meta.ctime_ns = attr.ctime_ns;
        // Inode numbers are the host's, so they are stable across lookups.
        let node = Arc::new(Inode { ino: attr.ino, meta: RefCell::new(meta), kind, sb, mounted: RefCell::new(None) });
        if let Some(old) = hs.handles.insert((sb, attr.ino), h) {
            if old != h {
                d.release(old);
            }
        }
        drop(guard);
        Ok(Some(node))
    }

    /// Look `name` up on the host if `dir` is a hostfs directory that does
    /// not have it cached (the path-walk hook).
    pub fn host_lookup(&self, dir: &InodeRef, name: &str) -> Result<(), Errno> {
        if self.fstype(dir.sb) != FsType::Hostfs || name == ".." || dir.lookup(name)?.is_some() {
            return Ok(());
        }
        let Some(dh) = self.host_handle(dir) else { return Ok(()) };
        let h = {
            let mut hs = self.host.borrow_mut();
            let d = hs.dirs.get_mut(&dir.sb).ok_or(Errno::EIO)?;
            match d.lookup(dh, name) {
                Ok(h) => h,
                Err(HostError::NotFound | HostError::Invalid) => return Ok(()),
                Err(e) => return Err(errno_of(e)),
            }
        };
        if let Some(node) = self.host_inode(dir.sb, h)? {
            dir.insert(name, node)?;
        }
        Ok(())
    }

    /// Bring the listing of hostfs directory `dir` in line with the host.
    pub fn host_sync_dir(&self, dir: &InodeRef) -> Result<(), Errno> {
        if self.fstype(dir.sb) != FsType::Hostfs {
            return Ok(());
        }
        let Some(dh) = self.host_handle(dir) else { return Ok(()) };
        let mut names = Vec::new();
        {
            let mut hs = self.host.borrow_mut();
            let d = hs.dirs.get_mut(&dir.sb).ok_or(Errno::EIO)?;
            let mut buf = [0u8; 256];
            let mut i = 0;
            while let Some((n, _)) = d.readdir(dh, i, &mut buf).map_err(errno_of)? {
                if n <= buf.len() {
                    if let Ok(s) = core::str::from_utf8(&buf[..n]) {
                        names.push(String::from(s));
                    }
                }
                i += 1;
            }
        }
        if let Kind::Dir(children) = &dir.kind {
            children.borrow_mut().retain(|k, _| names.contains(k));
        }
        for n in &names {
            self.host_lookup(dir, n)?;
        }
        Ok(())
    }

    /// At open: take the host's size and times, and if the file changed on
    /// the host since its pages were cached (size or modification time),
    /// forget the clean pages no mapping holds (close-to-open coherence).
    pub fn host_revalidate(&self, node: &InodeRef, frames: &mut Frames) -> Result<(), Errno> {
        let Kind::File(data) = &node.kind else { return Ok(()) };
        let Some(h) = self.host_handle(node) else { return Ok(()) };
        let attr = {
            let mut hs = self.host.borrow_mut();
            let d = hs.dirs.get_mut(&node.sb).ok_or(Errno::EIO)?;
            d.getattr(h).map_err(errno_of)?
        };
        let changed = {
            let m = node.meta.borrow();
            m.mtime_ns != attr.mtime_ns || data.size() != attr.size
        };
        if changed {
            data.revalidate(attr.size, frames);
        }
        let mut m = node.meta.borrow_mut();
        m.mtime_ns = attr.mtime_ns;
        m.perm = attr.perm;
        m.nlink = attr.nlink;
        Ok(())
    }

    /// The host file system's size and free space in pages, if known.
    pub fn host_statfs(&self, sb: u32) -> Option<(u64, u64)> {
        let mut hs = self.host.try_borrow_mut().ok()?;
        hs.dirs.get_mut(&sb)?.statfs()
    }

    /// Create `name` (a file, or a directory when `dir_kind`) on the host
    /// in hostfs directory `dir`; the new inode (already inserted).
    pub fn host_create(&self, dir: &InodeRef, name: &str, perm: u32, dir_kind: bool) -> Result<InodeRef, Errno> {
        let dh = self.host_handle(dir).ok_or(Errno::EIO)?;
        let h = {
            let mut hs = self.host.borrow_mut();
            let d = hs.dirs.get_mut(&dir.sb).ok_or(Errno::EIO)?;
            if dir_kind { d.mkdir(dh, name, perm) } else { d.create(dh, name, perm) }.map_err(errno_of)?
        };
        let node = self.host_inode(dir.sb, h)?.ok_or(Errno::EIO)?;
        dir.insert(name, node.clone())?;
        Ok(node)
    }

    /// Remove `name` from hostfs directory `dir` on the host.
    pub fn host_unlink(&self, dir: &InodeRef, name: &str, is_dir: bool) -> Result<(), Errno> {
        let dh = self.host_handle(dir).ok_or(Errno::EIO)?;
        let mut hs = self.host.borrow_mut();
        let d = hs.dirs.get_mut(&dir.sb).ok_or(Errno::EIO)?;
        d.unlink(dh, name, is_dir).map_err(errno_of)
    }

    /// Is `sb` a hostfs mount?
    pub fn is_host(&self, sb: u32) -> bool {
        self.fstype(sb) == FsType::Hostfs
    }
}

/// Keep the `HostState` type nameable from `Fs` (see [`Fs::host`]); shared
/// with the page caches' [`HostStore`]s.
pub type HostCell = Rc<RefCell<HostState>>;
