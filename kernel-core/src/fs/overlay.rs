//! overlay: a writable view of a read-only lower tree, as Linux's
//! overlayfs, with the upper layer in guest memory.
//!
//! An overlay directory is an in-memory directory ([`OvlDir`] in its
//! [`Inode::fsdata`]) whose map holds the upper layer: files created or
//! copied up, wrappers of lower directories (made as they are looked up,
//! and then upper directories themselves), and whiteouts (character
//! devices 0/0, as overlayfs stores them) that hide lower names. A lookup
//! that misses the map falls through to the lower directory unless the
//! directory is opaque (made over a whiteout, or new). Lower files are
//! handed out as they are, read-only; everything that would change one
//! (open for writing, truncate, chmod, chown, utimes, link, rename) first
//! copies it up ([`copy_up`]): the lower file's contents are loaded into
//! its inode, which is cut loose from the host and put in the map, so
//! descriptions opened before the copy-up see what is written after it.
//!
//! All inodes of an overlay carry its superblock, lower ones included (the
//! lower hostfs is mounted for the overlay alone), and a copied-up file
//! keeps its inode number, so `st_dev`/`st_ino` never change for the life
//! of the guest; new files get numbers above [`OVL_INO_BASE`], where no
//! host file system hands any out. Renaming a directory is full (the
//! wrapper moves and keeps merging its lower directory, what overlayfs
//! calls `redirect_dir`), since the upper layer is the kernel's own memory.
//! Nothing ever reaches the lower tree: `rm -rf /` leaves the host as it was.
#![allow(clippy::arc_with_non_send_sync)]

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::RefCell;

use hal::HostDir;

use super::hostfs::{errno_of, HostMount};
use super::inode::{FsData, Fs, Inode, InodeRef, Kind};
use super::mount::FsType;
use crate::wait::{FileOps, IoCtx, WaitSet};
use crate::Errno;

/// Inode numbers of files created in an overlay start here.
pub const OVL_INO_BASE: u64 = 1 << 62;

/// What an overlay directory keeps besides its map (the upper layer).
pub struct OvlDir {
    /// The lower directory merged under this one (`None`: opaque).
    lower: RefCell<Option<InodeRef>>,
    /// The merged listing, taken when a listing starts.
    listing: RefCell<Vec<(String, u64, u8)>>,
}

/// A whiteout: hides a lower name (a 0/0 character device, as overlayfs).
struct Whiteout;

impl FileOps for Whiteout {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn is_whiteout(n: &Inode) -> bool {
    matches!(&n.kind, Kind::Special(s) if s.as_any().is::<Whiteout>())
}

fn ovl_of(dir: &Inode) -> Option<&OvlDir> {
    match &dir.fsdata {
        Some(FsData::Overlay(o)) => Some(o),
        _ => None,
    }
}

/// Is `dir` an overlay directory?
pub fn is_overlay_dir(dir: &Inode) -> bool {
    ovl_of(dir).is_some()
}

fn map(dir: &Inode) -> Option<&RefCell<BTreeMap<String, InodeRef>>> {
    match &dir.kind {
        Kind::Dir(m) => Some(m),
        _ => None,
    }
}

/// A wrapper (an upper directory) for lower directory `lower`.
fn wrap(sb: u32, lower: &InodeRef) -> InodeRef {
    Arc::new(Inode {
        ino: lower.ino,
        meta: RefCell::new(*lower.meta.borrow()),
        kind: Kind::Dir(RefCell::new(BTreeMap::new())),
        sb,
        mounted: RefCell::new(None),
        fsdata: Some(FsData::Overlay(OvlDir { lower: RefCell::new(Some(lower.clone())), listing: RefCell::new(Vec::new()) })),
    })
}

/// `Inode::lookup` of an overlay directory: the upper map, then (unless a
/// whiteout or opacity hides it) the lower directory.
pub(crate) fn lookup(dir: &Inode, name: &str) -> Result<Option<InodeRef>, Errno> {
    let (Some(o), Some(m)) = (ovl_of(dir), map(dir)) else { return Ok(None) };
    if let Some(c) = m.borrow().get(name).cloned() {
        return Ok(if is_whiteout(&c) { None } else { Some(c) });
    }
    let lower = o.lower.borrow().clone();
    let Some(lower) = lower else { return Ok(None) };
    let Some(l) = lower.lookup(name)? else { return Ok(None) };
    if l.is_dir() {
        let w = wrap(dir.sb, &l);
        m.borrow_mut().insert(String::from(name), w.clone());
        return Ok(Some(w));
    }
    // Lower files are not kept in the map: the lower file system caches
    // (and evicts) them itself.
    Ok(Some(l))
}

/// Does the lower layer under overlay directory `dir` have `name`?
fn lower_has(dir: &Inode, name: &str) -> Result<bool, Errno> {
    let lower = ovl_of(dir).and_then(|o| o.lower.borrow().clone());
    match lower {
        Some(l) => Ok(l.lookup(name)?.is_some()),
        None => Ok(false),
    }
}

/// Is `node` (named `name` in `dir`) a lower file not copied up yet?
pub fn is_lower(dir: &Inode, name: &str, node: &InodeRef) -> bool {
    let Some(m) = map(dir).filter(|_| is_overlay_dir(dir)) else { return false };
    !m.borrow().get(name).is_some_and(|c| Arc::ptr_eq(c, node))
}

/// Copy `node`, named `name` in overlay directory `dir`, up into the
/// upper layer if it is a lower file; the inode to change from now on.
///
/// A lower hostfs inode is copied up in place: the same inode, its
/// contents loaded and cut loose from the host, becomes the map's entry,
/// so descriptions opened before the copy-up see the changes too (as
/// overlayfs does since Linux 4.19). Other lower inodes are copied.
pub fn copy_up(fs: &Fs, dir: &InodeRef, name: &str, node: &InodeRef) -> Result<InodeRef, Errno> {
    if !is_lower(dir, name, node) || node.is_dir() {
        return Ok(node.clone());
    }
    let Some(m) = map(dir) else { return Ok(node.clone()) };
    if matches!(node.fsdata, Some(FsData::Host(_))) {
        super::hostfs::detach(fs, node)?;
        m.borrow_mut().insert(String::from(name), node.clone());
        return Ok(node.clone());
    }
    let kind = match &node.kind {
        Kind::File(d) => Kind::File(RefCell::new(d.borrow().to_vec().into())),
        Kind::Symlink(t) => Kind::Symlink(t.clone()),
        Kind::Special(s) => Kind::Special(s.clone()),
        Kind::Device(d) => Kind::Device(*d),
        Kind::Dir(_) => return Ok(node.clone()),
    };
    let up = Arc::new(Inode { ino: node.ino, meta: RefCell::new(*node.meta.borrow()), kind, sb: dir.sb, mounted: RefCell::new(None), fsdata: None });
    m.borrow_mut().insert(String::from(name), up.clone());
    Ok(up)
}

/// Remove `name` from directory `dir`: from its map, and for an overlay
/// directory whose lower layer has the name, leave a whiteout.
pub fn remove_name(dir: &Inode, name: &str) -> Result<(), Errno> {
    let Some(m) = map(dir) else { return Ok(()) };
    let white = is_overlay_dir(dir) && lower_has(dir, name)?;
    let mut m = m.borrow_mut();
    m.remove(name);
    if white {
        let w = Arc::new(Inode {
            ino: 0,
            meta: RefCell::new(super::inode::Meta::new(0, 0, 1)),
            kind: Kind::Special(Rc::new(Whiteout)),
            sb: dir.sb,
            mounted: RefCell::new(None),
            fsdata: None,
        });
        m.insert(String::from(name), w);
    }
    Ok(())
}

/// Is directory `node` empty as the guest sees it (whiteouts and the
/// lower names they hide do not count)?
pub fn is_empty(node: &Inode) -> Result<bool, Errno> {
    let Some(m) = map(node) else { return Ok(false) };
    if m.borrow().values().any(|c| !is_whiteout(c)) {
        return Ok(false);
    }
    let lower = ovl_of(node).and_then(|o| o.lower.borrow().clone());
    let Some(lower) = lower else { return Ok(true) };
    let Some(lm) = map(&lower) else { return Ok(true) };
    let names = super::readdir::entries(&lower, lm, 2, usize::MAX)?;
    let m = m.borrow();
    Ok(names.iter().all(|(n, _, _)| m.contains_key(n)))
}

/// The entry at `index` of overlay directory `dir`'s merged listing
/// (index 0 takes a fresh one): the upper names, then the lower names not
/// hidden.
pub(crate) fn readdir_at(dir: &Inode, index: usize) -> Result<Option<(String, u64, u8)>, Errno> {
    let (Some(o), Some(m)) = (ovl_of(dir), map(dir)) else { return Ok(None) };
    if index == 0 {
        let mut v: Vec<(String, u64, u8)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (n, c) in m.borrow().iter() {
            seen.insert(n.clone());
            if !is_whiteout(c) {
                v.push((n.clone(), c.ino, c.dtype()));
            }
        }
        let lower = o.lower.borrow().clone();
        if let Some(l) = lower {
            if let Some(lm) = map(&l) {
                for e in super::readdir::entries(&l, lm, 2, usize::MAX)? {
                    if !seen.contains(&e.0) {
                        v.push(e);
                    }
                }
            }
        }
        *o.listing.borrow_mut() = v;
    }
    let mut l = o.listing.borrow_mut();
    match l.get(index) {
        Some(e) => Ok(Some(e.clone())),
        None => {
            *l = Vec::new();
            Ok(None)
        }
    }
}

impl Fs {
    /// Mount host directory `dir` read-only at `at` under an overlay whose
    /// upper layer is guest memory (`/` makes it the root). The guest may
    /// change anything; the host never sees a change.
    pub fn mount_host_overlay(&mut self, at: &str, dir: Box<dyn HostDir>) -> Result<u32, Errno> {
        let sb = self.new_sb(FsType::Overlay, false);
        let mut dir = dir;
        let root_handle = dir.root();
        let attr = dir.getattr(root_handle).map_err(errno_of)?;
        // The lower hostfs carries the overlay's superblock (it is mounted
        // for the overlay alone), so lower and copied-up files share st_dev.
        let mount = HostMount::new(sb, dir);
        let lower_root = mount.root_inode(root_handle, &attr)?;
        self.register_host(sb, mount);
        let root = wrap(sb, &lower_root);
        if at.split('/').all(|c| c.is_empty()) {
            self.set_root(root, sb, "overlay");
            return Ok(sb);
        }
        let start = super::path::Loc::root(self.root.clone());
        let target = super::path::walk(&self.root.clone(), &start, at, super::path::Follow::Yes)?;
        self.attach(&target, root, sb, "overlay")?;
        Ok(sb)
    }
}

/// Keep the lower layer of overlay directory `dir` (for tests).
pub fn lower_of(dir: &Inode) -> Option<InodeRef> {
    ovl_of(dir).and_then(|o| o.lower.borrow().clone())
}
