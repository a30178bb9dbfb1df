//! The hostfs inode cache against a scripted host directory: a walk of
//! 100,000 files keeps at most the configured number of inodes, entries in
//! use are never evicted, every dropped inode's handle goes back to the
//! host, and a name replaced on the host is looked up afresh.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use hal::{HostAttr, HostDir, HostDirEntry, HostError, HostFileKind, HostSetAttr};
use kernel_core::fs::Fs;

/// One directory (handle 1) of `files` empty files named 0, 1, ...; a
/// file's inode number is its index plus 2 (plus `gen` after a replace).
struct Flat {
    files: usize,
    /// Handles the kernel holds: handle -> inode number.
    held: Rc<RefCell<BTreeMap<u64, u64>>>,
    next: u64,
    /// Names replaced on the host (new inode numbers).
    replaced: Rc<RefCell<BTreeSet<usize>>>,
}

impl Flat {
    fn ino(&self, i: usize) -> u64 {
        i as u64 + 2 + if self.replaced.borrow().contains(&i) { 1 << 40 } else { 0 }
    }
    fn attr(&self, ino: u64) -> HostAttr {
        let kind = if ino == 1 { HostFileKind::Dir } else { HostFileKind::File };
        HostAttr { kind, perm: 0o755, size: 0, blocks: 0, nlink: 1, ino, uid: 0, gid: 0, rdev: 0, mtime_ns: 0, atime_ns: 0, ctime_ns: 0 }
    }
    fn index(&self, name: &[u8]) -> Option<usize> {
        std::str::from_utf8(name).ok()?.parse().ok().filter(|&i| i < self.files)
    }
}

impl HostDir for Flat {
    fn root(&self) -> u64 {
        1
    }
    fn readonly(&self) -> bool {
        true
    }
    fn lookup(&mut self, dir: u64, name: &[u8]) -> Result<(u64, HostAttr), HostError> {
        assert_eq!(dir, 1);
        let i = self.index(name).ok_or(HostError::NotFound)?;
        self.next += 1;
        self.held.borrow_mut().insert(self.next, self.ino(i));
        Ok((self.next, self.attr(self.ino(i))))
    }
    fn revalidate(&mut self, _dir: u64, name: &[u8], handle: u64) -> Result<HostAttr, HostError> {
        let i = self.index(name).ok_or(HostError::NotFound)?;
        let have = *self.held.borrow().get(&handle).ok_or(HostError::Stale)?;
        if have != self.ino(i) {
            return Err(HostError::Stale);
        }
        Ok(self.attr(have))
    }
    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        let ino = if handle == 1 { 1 } else { *self.held.borrow().get(&handle).ok_or(HostError::Stale)? };
        Ok(self.attr(ino))
    }
    fn read(&mut self, _: u64, _: u64, _: &mut [u8]) -> Result<usize, HostError> {
        Ok(0)
    }
    fn readdir(&mut self, _: u64, index: usize, name: &mut [u8]) -> Result<Option<HostDirEntry>, HostError> {
        if index >= self.files {
            return Ok(None);
        }
        let n = index.to_string();
        name[..n.len()].copy_from_slice(n.as_bytes());
        Ok(Some(HostDirEntry { name_len: n.len(), kind: HostFileKind::File, ino: self.ino(index) }))
    }
    read_only_host_dir!();
    fn release(&mut self, handle: u64) {
        assert!(self.held.borrow_mut().remove(&handle).is_some(), "handle {handle} released twice or never given");
    }
}

#[test]
fn walking_many_files_keeps_the_cache_bounded_and_handles_balanced() {
    let held = Rc::new(RefCell::new(BTreeMap::new()));
    let mut fs = Fs::new();
    fs.mount_host("/h", Box::new(Flat { files: 100_000, held: held.clone(), next: 1, replaced: Default::default() })).unwrap();
    let dir = kernel_core::fs::path::cross_mounts(fs.root.lookup("h").unwrap().unwrap());
    let sb = dir.sb;
    fs.set_host_cache_limit(sb, 1000);
    let pinned = dir.lookup("7").unwrap().unwrap();
    for i in 0..100_000 {
        let n = dir.lookup(&i.to_string()).unwrap().unwrap();
        assert_eq!(n.ino, i as u64 + 2);
    }
    let mount = fs.host_mount(sb).unwrap();
    assert!(mount.live_inodes() <= 1000 + 16, "{} inodes cached", mount.live_inodes());
    // Dead inodes leave the inode-number index too (a dead Weak still
    // holds an inode's memory).
    assert!(mount.indexed_inodes() <= 1000 + 32, "{} index entries", mount.indexed_inodes());
    // The one in use survived eviction: the same inode comes back.
    let again = dir.lookup("7").unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&pinned, &again));
    assert!(dir.lookup("100000").unwrap().is_none());
    // Every inode the kernel dropped gave its handle back (at the next call).
    let _ = dir.lookup("1");
    assert!(held.borrow().len() <= mount.live_inodes() + 2, "{} handles held for {} inodes", held.borrow().len(), mount.live_inodes());
    drop((pinned, again));
}

#[test]
fn a_name_replaced_on_the_host_is_looked_up_afresh() {
    let held = Rc::new(RefCell::new(BTreeMap::new()));
    let mut fs = Fs::new();
    let replaced: Rc<RefCell<BTreeSet<usize>>> = Default::default();
    fs.mount_host("/h", Box::new(Flat { files: 10, held: held.clone(), next: 1, replaced: replaced.clone() })).unwrap();
    let dir = kernel_core::fs::path::cross_mounts(fs.root.lookup("h").unwrap().unwrap());
    let a = dir.lookup("3").unwrap().unwrap();
    assert_eq!(a.ino, 5);
    let b = dir.lookup("3").unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "unchanged on the host: the cached inode");
    replaced.borrow_mut().insert(3);
    let c = dir.lookup("3").unwrap().unwrap();
    assert_eq!(c.ino, 5 + (1 << 40), "replaced on the host: a new inode");
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
}
