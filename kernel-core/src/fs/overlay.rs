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
//! copies it up ([`copy_up`]): the lower file's page cache reads in the
//! data it does not hold yet and becomes a memory file's (charged to the
//! overlay's size limit, like a tmpfs), the inode is cut loose from the
//! host and put in the map, so descriptions and mappings made before the
//! copy-up see what is written after it.
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
use core::cell::RefCell;

use hal::{HostDir, PhysMem};
use linux_raw_sys::general as g;

use super::hostfs::{errno_of, HostMount, HostSpecial};
use super::inode::{FsData, Fs, Inode, InodeRef, Kind};
use super::mount::FsType;
use crate::mm::Frames;
use crate::Errno;

/// Inode numbers of files created in an overlay start here.
pub const OVL_INO_BASE: u64 = 1 << 62;

/// What an overlay directory keeps besides its map (the upper layer).
pub struct OvlDir {
    /// The lower directory merged under this one (`None`: opaque).
    lower: RefCell<Option<InodeRef>>,
    /// With `do --overlay DIR`: this directory in DIR (the upper layer a
    /// previous run left), between the map and the lower directory.
    middle: RefCell<Option<InodeRef>>,
    /// The merged listing, taken when a listing starts.
    listing: RefCell<Vec<(String, u64, u8)>>,
}

/// A whiteout hides a lower name: a character device 0/0, as overlayfs
/// stores one (never opened).
fn whiteout() -> crate::wait::SpecialRef {
    Rc::new(HostSpecial { type_bits: g::S_IFCHR, rdev: (0, 0) })
}

fn is_whiteout(n: &Inode) -> bool {
    matches!(&n.kind, Kind::Special(s) if s.as_any().downcast_ref::<HostSpecial>().is_some_and(|h| h.type_bits == g::S_IFCHR && h.rdev == (0, 0)))
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

/// A wrapper (an upper directory) merging `middle` and `lower`.
fn wrap(sb: u32, middle: Option<InodeRef>, lower: Option<InodeRef>) -> Option<InodeRef> {
    // The inode number of the lower directory where there is one (stable
    // whether or not a previous run stored the directory); the metadata of
    // the upper one (a chmod of a previous run).
    let meta = *middle.as_ref().or(lower.as_ref())?.meta.borrow();
    let ino = lower.as_ref().or(middle.as_ref())?.ino;
    Some(Arc::new(Inode {
        ino,
        meta: RefCell::new(meta),
        kind: Kind::Dir(RefCell::new(BTreeMap::new())),
        sb,
        mounted: RefCell::new(None),
        fsdata: Some(FsData::Overlay(OvlDir { lower: RefCell::new(lower), middle: RefCell::new(middle), listing: RefCell::new(Vec::new()) })),
        charge: Default::default(),
    }))
}

/// Size and blocks of overlay directory `dir` as `stat` shows them: those
/// of the directory below it whose metadata it shows (the middle layer's,
/// else the lower's), as overlayfs shows a merged directory's; `None` for
/// a directory made in the overlay.
pub(crate) fn dir_size(dir: &Inode) -> Option<(u64, u64)> {
    let o = ovl_of(dir)?;
    let src = o.middle.borrow().clone().or_else(|| o.lower.borrow().clone())?;
    Some((src.size(), src.blocks()))
}

/// What the layers below the map have at `name`: the middle layer's entry
/// (unless a whiteout, which hides the lower one too), else the lower's.
/// A directory of either comes back as a new wrapper.
fn below(dir: &Inode, name: &str) -> Result<Option<InodeRef>, Errno> {
    let Some(o) = ovl_of(dir) else { return Ok(None) };
    let middle = o.middle.borrow().clone();
    let lower = o.lower.borrow().clone();
    let mut mid_dir = None;
    if let Some(md) = middle {
        if let Some(x) = md.lookup(name)? {
            if super::hostfs::is_host_whiteout(&x) {
                return Ok(None);
            }
            if !x.is_dir() {
                return Ok(Some(x));
            }
            if super::hostfs::is_host_opaque(&x) {
                return Ok(wrap(dir.sb, Some(x), None));
            }
            mid_dir = Some(x);
        }
    }
    let l = match lower {
        Some(l) => l.lookup(name)?,
        None => None,
    };
    match (mid_dir, l) {
        (Some(m), l) => Ok(wrap(dir.sb, Some(m), l.filter(|l| l.is_dir()))),
        (None, Some(l)) if l.is_dir() => Ok(wrap(dir.sb, None, Some(l))),
        // Lower files are not kept in the map: the lower file system
        // caches (and evicts) them itself.
        (None, l) => Ok(l),
    }
}

/// `Inode::lookup` of an overlay directory: the upper map, then (unless a
/// whiteout or opacity hides it) the layers below.
pub(crate) fn lookup(dir: &Inode, name: &str) -> Result<Option<InodeRef>, Errno> {
    let Some(m) = map(dir).filter(|_| is_overlay_dir(dir)) else { return Ok(None) };
    if let Some(c) = m.borrow().get(name).cloned() {
        return Ok(if is_whiteout(&c) { None } else { Some(c) });
    }
    let found = below(dir, name)?;
    if let Some(w) = found.as_ref().filter(|w| is_overlay_dir(w)) {
        m.borrow_mut().insert(String::from(name), w.clone());
    }
    Ok(found)
}

/// Do the layers below overlay directory `dir`'s map have `name`?
fn lower_has(dir: &Inode, name: &str) -> Result<bool, Errno> {
    Ok(below(dir, name)?.is_some())
}

/// Is `node` (named `name` in `dir`) a lower file not copied up yet?
pub fn is_lower(dir: &Inode, name: &str, node: &InodeRef) -> bool {
    let Some(m) = map(dir).filter(|_| is_overlay_dir(dir)) else { return false };
    !m.borrow().get(name).is_some_and(|c| Arc::ptr_eq(c, node))
}

/// Copy `node`, named `name` in overlay directory `dir`, up into the
/// upper layer if it is a lower file; the inode to change from now on.
///
/// A lower hostfs inode is copied up in place: the same inode, its page
/// cache made a memory file's holding all its data (none without
/// `keep_data`: the caller empties it) and cut loose from the host,
/// becomes the map's entry, so descriptions opened before the copy-up see
/// the changes too (as overlayfs does since Linux 4.19). Other lower inodes
/// are copied. On failure (`ENOSPC` past the overlay's size, `ENOMEM`)
/// nothing changed.
pub fn copy_up(fs: &Fs, dir: &InodeRef, name: &str, node: &InodeRef, keep_data: bool, frames: &mut Frames, phys: &impl PhysMem) -> Result<InodeRef, Errno> {
    if !is_lower(dir, name, node) || node.is_dir() {
        return Ok(node.clone());
    }
    let Some(m) = map(dir) else { return Ok(node.clone()) };
    if matches!(node.fsdata, Some(FsData::Host(_))) {
        super::hostfs::detach(fs, node, keep_data, frames, phys)?;
        m.borrow_mut().insert(String::from(name), node.clone());
        return Ok(node.clone());
    }
    let kind = match &node.kind {
        Kind::File(d) => {
            let up = fs.new_file_data(dir.sb);
            let mut off = 0u64;
            let mut buf = alloc::vec![0u8; 64 << 10];
            while keep_data && off < d.size() {
                let n = d.read_to(off, &mut buf, frames, phys)?;
                if n == 0 {
                    break;
                }
                if buf[..n].iter().any(|&b| b != 0) {
                    let mut done = 0;
                    while done < n {
                        done += up.write_bytes(off + done as u64, &buf[done..n], frames, phys)?;
                    }
                }
                off += n as u64;
            }
            if keep_data && up.size() < d.size() {
                up.truncate(d.size(), frames, phys)?;
            }
            Kind::File(up)
        }
        Kind::Symlink(t) => Kind::Symlink(t.clone()),
        Kind::Special(s) => Kind::Special(s.clone()),
        Kind::Device(d) => Kind::Device(*d),
        Kind::Dir(_) => return Ok(node.clone()),
    };
    let up = Arc::new(Inode { ino: node.ino, meta: RefCell::new(*node.meta.borrow()), kind, sb: dir.sb, mounted: RefCell::new(None), fsdata: None, charge: Default::default() });
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
            kind: Kind::Special(whiteout()),
            sb: dir.sb,
            mounted: RefCell::new(None),
            fsdata: None,
            charge: Default::default(),
        });
        m.insert(String::from(name), w);
    }
    Ok(())
}

/// All entries of `dir` (`.` and `..` excluded).
fn all_entries(dir: &InodeRef) -> Result<Vec<(String, u64, u8)>, Errno> {
    let Some(m) = map(dir) else { return Ok(Vec::new()) };
    super::readdir::entries(dir, m, 2, usize::MAX)
}

/// The merged listing of overlay directory `dir`: the map's names, then
/// the middle layer's (its whiteouts hide names), then the lower's unless
/// something above made the directory opaque.
fn merged(dir: &Inode) -> Result<Vec<(String, u64, u8)>, Errno> {
    let (Some(o), Some(m)) = (ovl_of(dir), map(dir)) else { return Ok(Vec::new()) };
    let mut v: Vec<(String, u64, u8)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, c) in m.borrow().iter() {
        seen.insert(n.clone());
        if !is_whiteout(c) {
            v.push((n.clone(), c.ino, c.dtype()));
        }
    }
    let middle = o.middle.borrow().clone();
    if let Some(md) = middle {
        for e in all_entries(&md)? {
            if !seen.insert(e.0.clone()) {
                continue;
            }
            // A possible whiteout (a 0/0 device, an empty marked file).
            let white = e.2 == g::DT_CHR as u8 || e.2 == g::DT_REG as u8 && md.lookup(&e.0)?.is_some_and(|x| super::hostfs::is_host_whiteout(&x));
            if !white {
                v.push(e);
            }
        }
    }
    let lower = o.lower.borrow().clone();
    if let Some(l) = lower {
        for e in all_entries(&l)? {
            if !seen.contains(&e.0) {
                v.push(e);
            }
        }
    }
    Ok(v)
}

/// Is directory `node` empty as the guest sees it (whiteouts and the
/// lower names they hide do not count)?
pub fn is_empty(node: &Inode) -> Result<bool, Errno> {
    if !is_overlay_dir(node) {
        return Ok(map(node).is_some_and(|m| m.borrow().is_empty()));
    }
    Ok(merged(node)?.is_empty())
}

/// The entry at `index` of overlay directory `dir`'s merged listing
/// (index 0 takes a fresh one).
pub(crate) fn readdir_at(dir: &Inode, index: usize) -> Result<Option<(String, u64, u8)>, Errno> {
    let Some(o) = ovl_of(dir) else { return Ok(None) };
    if index == 0 {
        let v = merged(dir)?;
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
        self.mount_host_overlay_with(at, dir, None)
    }

    /// [`Fs::mount_host_overlay`], with the upper layer a previous run
    /// left in host directory `upper` (overlayfs' format: whiteouts,
    /// opaque directories) read below the guest's changes, and the guest's
    /// changes written back to it at [`Fs::flush_overlays`].
    pub fn mount_host_overlay_with(&mut self, at: &str, dir: Box<dyn HostDir>, upper: Option<Box<dyn HostDir>>) -> Result<u32, Errno> {
        let sb = self.new_sb(FsType::Overlay, false);
        // The host layers carry the overlay's superblock (they are mounted
        // for the overlay alone), so lower and copied-up files share st_dev.
        let layer = |fs: &mut Fs, mut d: Box<dyn HostDir>| -> Result<InodeRef, Errno> {
            let h = d.root();
            let attr = d.getattr(h).map_err(errno_of)?;
            let mount = HostMount::new(sb, d, &fs.caches);
            let root = mount.root_inode(h, &attr)?;
            fs.register_host_layer(mount);
            Ok(root)
        };
        let lower_root = layer(self, dir)?;
        let middle_root = match upper {
            Some(u) => Some(layer(self, u)?),
            None => None,
        };
        let root = wrap(sb, middle_root.clone(), Some(lower_root.clone())).ok_or(Errno::EIO)?;
        // The root is the lower root as it is (DIR's own mode is not the guest's `/`).
        *root.meta.borrow_mut() = *lower_root.meta.borrow();
        if middle_root.is_some() {
            self.host.borrow_mut().persist.push(root.clone());
        }
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

impl Fs {
    /// Write the guest's changes of every overlay with a host upper
    /// directory back to it, in overlayfs' format (whiteouts for deleted
    /// lower names, opaque directories made over them); the problems met,
    /// one line each.
    pub fn flush_overlays(&self, frames: &mut Frames, phys: &impl PhysMem) -> Vec<String> {
        let roots: Vec<InodeRef> = self.host.borrow().persist.clone();
        let mut errs = Vec::new();
        for r in roots {
            let md = ovl_of(&r).and_then(|o| o.middle.borrow().clone());
            if let Some(md) = md {
                let mut cx = Flush { fs: self, frames: &mut *frames, phys, errs: &mut errs };
                flush_dir(&mut cx, &r, &md);
            }
        }
        errs
    }
}

/// What writing an overlay back needs.
struct Flush<'a, P: PhysMem> {
    fs: &'a Fs,
    frames: &'a mut Frames,
    phys: &'a P,
    /// The problems met, one line each.
    errs: &'a mut Vec<String>,
}

/// Write overlay directory `w`'s map into host directory `md`.
fn flush_dir<P: PhysMem>(cx: &mut Flush<'_, P>, w: &InodeRef, md: &InodeRef) {
    let Some(m) = map(w) else { return };
    let entries: Vec<(String, InodeRef)> = m.borrow().iter().map(|(n, c)| (n.clone(), c.clone())).collect();
    let real_lower = ovl_of(w).and_then(|o| o.lower.borrow().clone());
    let lower_has = |name: &str| real_lower.as_ref().is_some_and(|l| l.lookup(name).ok().flatten().is_some());
    for (name, node) in entries {
        let r = flush_entry(cx, w, md, &name, &node, lower_has(&name));
        if let Err(e) = r {
            cx.errs.push(alloc::format!("{name}: {}", e.name()));
        }
    }
}

/// Write `name` -> `node` (an entry of overlay directory `_w`'s map) into
/// host directory `md`.
fn flush_entry<P: PhysMem>(cx: &mut Flush<'_, P>, _w: &InodeRef, md: &InodeRef, name: &str, node: &InodeRef, lower_has: bool) -> Result<(), Errno> {
    let fs = cx.fs;
    use super::hostfs::{host_remove_tree, host_set_opaque, host_whiteout, same_mount};
    if is_whiteout(node) {
        host_remove_tree(md, name)?;
        if lower_has {
            host_whiteout(md, name)?;
        }
        return Ok(());
    }
    if let Some(o) = ovl_of(node) {
        if !changed(node) {
            return Ok(()); // only looked at: nothing to keep
        }
        // A merged directory: its own place in DIR, then its entries.
        let existing = md.lookup(name)?;
        let child = match (existing, o.middle.borrow().clone()) {
            (Some(x), Some(_)) if x.is_dir() => x,
            _ => {
                host_remove_tree(md, name)?;
                fs.host_create(md, name, node.meta.borrow().perm, true)?
            }
        };
        set_meta(fs, &child, node);
        flush_dir(cx, node, &child);
        return Ok(());
    }
    if same_mount(node, md) {
        return Ok(()); // DIR's own file, untouched
    }
    host_remove_tree(md, name)?;
    match &node.kind {
        Kind::Dir(_) => {
            // Made by the guest: opaque over whatever the lower has there.
            let child = fs.host_create(md, name, node.meta.borrow().perm, true)?;
            if lower_has {
                host_set_opaque(&child)?;
            }
            set_meta(fs, &child, node);
            if let Some(m) = map(node) {
                let kids: Vec<(String, InodeRef)> = m.borrow().iter().map(|(n, c)| (n.clone(), c.clone())).collect();
                for (n, c) in kids {
                    if let Err(e) = flush_entry(cx, node, &child, &n, &c, false) {
                        cx.errs.push(alloc::format!("{name}/{n}: {}", e.name()));
                    }
                }
            }
        }
        Kind::File(d) => {
            let f = fs.host_create(md, name, node.meta.borrow().perm, false)?;
            let Kind::File(to) = &f.kind else { return Err(Errno::EIO) };
            // Through the caches, a chunk at a time; holes stay holes.
            let size = d.size();
            let mut buf = alloc::vec![0u8; 64 << 10];
            let mut off = 0u64;
            while off < size {
                let n = d.read_to(off, &mut buf, cx.frames, cx.phys)?;
                if n == 0 {
                    break;
                }
                if buf[..n].iter().any(|&b| b != 0) {
                    to.write_through(off, &buf[..n], cx.phys)?;
                }
                off += n as u64;
            }
            if to.size() != size {
                to.truncate(size, cx.frames, cx.phys)?;
            }
            set_meta(fs, &f, node);
        }
        Kind::Symlink(t) => {
            fs.host_symlink(md, name, t)?;
        }
        // FIFOs and sockets made in the guest live only while it runs.
        Kind::Special(_) | Kind::Device(_) => cx.errs.push(alloc::format!("{name}: special files are not kept")),
    }
    Ok(())
}

/// Has anything in merged directory `w` (or below) changed since the
/// layers below were read?
fn changed(w: &Inode) -> bool {
    let Some(o) = ovl_of(w) else { return true };
    let src = o.middle.borrow().clone().or_else(|| o.lower.borrow().clone());
    let meta_changed = src.is_some_and(|s| {
        let (a, b) = (*s.meta.borrow(), *w.meta.borrow());
        (a.perm, a.uid, a.gid, a.mtime_ns) != (b.perm, b.uid, b.gid, b.mtime_ns)
    });
    meta_changed || map(w).is_some_and(|m| m.borrow().values().any(|c| !is_overlay_dir(c) || changed(c)))
}

/// Renaming merged directory `node` gives `EXDEV` when the overlay keeps
/// its upper layer on the host (as overlayfs without `redirect_dir`: the
/// upper directory could not say where its lower contents are); `mv`
/// then copies. In guest memory such a rename is complete.
pub fn rename_is_exdev(fs: &Fs, node: &Inode) -> bool {
    let Some(o) = ovl_of(node) else { return false };
    if o.lower.borrow().is_none() && o.middle.borrow().is_none() {
        return false;
    }
    fs.host.borrow().persist.iter().any(|r| r.sb == node.sb)
}

/// Give host inode `to` the mode, owner and times of `from` (as far as the
/// kernel process may).
fn set_meta(fs: &Fs, to: &InodeRef, from: &InodeRef) {
    let m = *from.meta.borrow();
    let _ = fs.host_setattr(to, &hal::HostSetAttr { perm: Some(m.perm), atime_ns: Some(m.atime_ns as i64), mtime_ns: Some(m.mtime_ns as i64), ..Default::default() });
    let _ = fs.host_setattr(to, &hal::HostSetAttr { uid: Some(m.uid), gid: Some(m.gid), ..Default::default() });
}

/// Keep the lower layer of overlay directory `dir` (for tests).
pub fn lower_of(dir: &Inode) -> Option<InodeRef> {
    ovl_of(dir).and_then(|o| o.lower.borrow().clone())
}
