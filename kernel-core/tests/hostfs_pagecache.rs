//! hostfs files on the page cache, against a scripted host directory: data
//! is read page by page (a 1 GiB file costs the pages read), a change the
//! host makes is seen at the next lookup without reopening (the clean pages
//! go), writes go through to the host, and the inode cache never evicts a
//! file whose cache holds pages not written back.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use hal::mock::MockPhys;
use hal::{HostAttr, HostDir, HostDirEntry, HostError, HostFileKind, HostSetAttr, PhysMem};
use kernel_core::fs::{Fs, Kind};
use kernel_core::mm::Frames;

const MEM: usize = 4 << 20;

/// What the host holds: file index -> (generation, size). The byte at
/// offset `o` of file `i` is `(i + 7 * generation + o / 4096) as u8`.
#[derive(Default)]
struct HostFiles {
    files: BTreeMap<usize, (u64, u64)>,
    /// Pages read by the kernel.
    reads: u64,
    /// Bytes written by the kernel: (file, offset, bytes).
    writes: Vec<(usize, u64, Vec<u8>)>,
}

fn byte(i: usize, generation: u64, off: u64) -> u8 {
    (i as u64 + 7 * generation + off / 4096) as u8
}

/// One directory (handle 1) of files named 0, 1, ...; file `i` has inode
/// number `i + 2` and handle `i + 2` (handles are not released here).
struct Files(Rc<RefCell<HostFiles>>);

impl Files {
    fn attr(&self, h: u64) -> Result<HostAttr, HostError> {
        if h == 1 {
            return Ok(HostAttr { kind: HostFileKind::Dir, perm: 0o755, size: 0, blocks: 0, nlink: 2, ino: 1, uid: 0, gid: 0, rdev: 0, mtime_ns: 0, atime_ns: 0, ctime_ns: 0 });
        }
        let (generation, size) = *self.0.borrow().files.get(&(h as usize - 2)).ok_or(HostError::Stale)?;
        let t = generation as i64 * 1_000_000_000;
        Ok(HostAttr { kind: HostFileKind::File, perm: 0o644, size, blocks: size.div_ceil(512), nlink: 1, ino: h, uid: 0, gid: 0, rdev: 0, mtime_ns: t, atime_ns: t, ctime_ns: t })
    }
    fn index(name: &[u8]) -> Option<u64> {
        std::str::from_utf8(name).ok()?.parse::<u64>().ok().map(|i| i + 2)
    }
}

impl HostDir for Files {
    fn root(&self) -> u64 {
        1
    }
    fn readonly(&self) -> bool {
        false
    }
    fn lookup(&mut self, _dir: u64, name: &[u8]) -> Result<(u64, HostAttr), HostError> {
        let h = Files::index(name).ok_or(HostError::NotFound)?;
        let a = self.attr(h).map_err(|_| HostError::NotFound)?;
        Ok((h, a))
    }
    fn revalidate(&mut self, _dir: u64, name: &[u8], handle: u64) -> Result<HostAttr, HostError> {
        if Files::index(name) != Some(handle) {
            return Err(HostError::Stale);
        }
        self.attr(handle)
    }
    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        self.attr(handle)
    }
    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        let i = handle as usize - 2;
        let (generation, size) = *self.0.borrow().files.get(&i).ok_or(HostError::Stale)?;
        let n = (size.saturating_sub(off) as usize).min(buf.len());
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = byte(i, generation, off + k as u64);
        }
        self.0.borrow_mut().reads += n.div_ceil(4096) as u64;
        Ok(n)
    }
    fn write(&mut self, handle: u64, off: u64, data: &[u8]) -> Result<usize, HostError> {
        let i = handle as usize - 2;
        let mut h = self.0.borrow_mut();
        let f = h.files.get_mut(&i).ok_or(HostError::Stale)?;
        f.0 += 1;
        f.1 = f.1.max(off + data.len() as u64);
        h.writes.push((i, off, data.to_vec()));
        Ok(data.len())
    }
    fn readdir(&mut self, _: u64, index: usize, name: &mut [u8]) -> Result<Option<HostDirEntry>, HostError> {
        let Some(&i) = self.0.borrow().files.keys().nth(index) else { return Ok(None) };
        let n = i.to_string();
        name[..n.len()].copy_from_slice(n.as_bytes());
        Ok(Some(HostDirEntry { name_len: n.len(), kind: HostFileKind::File, ino: i as u64 + 2 }))
    }
    fn create(&mut self, _: u64, _: &[u8], _: u32) -> Result<(u64, HostAttr), HostError> {
        Err(HostError::ReadOnly)
    }
    fn mkdir(&mut self, _: u64, _: &[u8], _: u32) -> Result<(u64, HostAttr), HostError> {
        Err(HostError::ReadOnly)
    }
    fn symlink(&mut self, _: u64, _: &[u8], _: &[u8]) -> Result<(u64, HostAttr), HostError> {
        Err(HostError::ReadOnly)
    }
    fn tmpfile(&mut self, _: u64, _: u32) -> Result<(u64, HostAttr), HostError> {
        Err(HostError::ReadOnly)
    }
    fn link(&mut self, _: u64, _: u64, _: &[u8]) -> Result<HostAttr, HostError> {
        Err(HostError::ReadOnly)
    }
    fn unlink(&mut self, _: u64, _: &[u8], _: bool, _: Option<u64>) -> Result<(), HostError> {
        Err(HostError::ReadOnly)
    }
    fn rename(&mut self, _: u64, _: &[u8], _: u64, _: &[u8], _: u32, _: Option<u64>, _: Option<u64>) -> Result<(), HostError> {
        Err(HostError::ReadOnly)
    }
    fn setattr(&mut self, _: u64, _: &HostSetAttr) -> Result<HostAttr, HostError> {
        Err(HostError::ReadOnly)
    }
    fn truncate(&mut self, handle: u64, len: u64) -> Result<(), HostError> {
        let mut h = self.0.borrow_mut();
        let f = h.files.get_mut(&(handle as usize - 2)).ok_or(HostError::Stale)?;
        f.0 += 1;
        f.1 = len;
        Ok(())
    }
    fn readlink(&mut self, _: u64, _: &mut [u8]) -> Result<usize, HostError> {
        Err(HostError::Invalid)
    }
    fn fsync(&mut self, _: u64, _: bool) -> Result<(), HostError> {
        Ok(())
    }
    fn statfs(&mut self) -> Result<[u64; 6], HostError> {
        Ok([4096, 0, 0, 0, 0, 0])
    }
    fn release(&mut self, _: u64) {}
}

fn setup(files: &[(usize, u64)]) -> (Fs, Rc<RefCell<HostFiles>>, kernel_core::fs::InodeRef) {
    let host = Rc::new(RefCell::new(HostFiles::default()));
    for &(i, size) in files {
        host.borrow_mut().files.insert(i, (1, size));
    }
    let mut fs = Fs::new();
    fs.caches.set_memory((MEM / 4096) as u64);
    fs.mount_host("/h", Box::new(Files(host.clone()))).unwrap();
    let dir = kernel_core::fs::path::cross_mounts(fs.root.lookup("h").unwrap().unwrap());
    (fs, host, dir)
}

fn data(node: &kernel_core::fs::InodeRef) -> &kernel_core::fs::inode::FileData {
    match &node.kind {
        Kind::File(d) => d,
        _ => panic!("not a file"),
    }
}

#[test]
fn pages_are_read_on_demand_and_host_changes_seen_at_the_next_lookup() {
    let (fs, host, dir) = setup(&[(0, 1 << 30), (1, 10_000)]);
    let (mut frames, phys) = (Frames::new(MEM as u64), MockPhys::new(MEM));
    // The end of a 1 GiB file: a few pages read, not the file.
    let big = dir.lookup("0").unwrap().unwrap();
    assert_eq!(big.size(), 1 << 30);
    let mut buf = [0u8; 8];
    let off = (1u64 << 30) - 8;
    assert_eq!(data(&big).read_to(off, &mut buf, &mut frames, &phys), Ok(8));
    assert_eq!(buf, [byte(0, 1, off); 8]);
    assert!(host.borrow().reads <= 16, "{} pages read", host.borrow().reads);
    // A small file, read, changed on the host (longer, other bytes).
    let f = dir.lookup("1").unwrap().unwrap();
    let mut all = vec![0u8; 10_000];
    data(&f).read_to(0, &mut all, &mut frames, &phys).unwrap();
    assert!(all.iter().enumerate().all(|(o, &b)| b == byte(1, 1, o as u64)));
    host.borrow_mut().files.insert(1, (2, 12_000));
    // Not asked yet: the cached pages stand.
    data(&f).read_to(0, &mut buf, &mut frames, &phys).unwrap();
    assert_eq!(buf[0], byte(1, 1, 0));
    // The next lookup (a stat, a path walk) sees the change.
    let again = dir.lookup("1").unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&f, &again));
    assert_eq!(f.size(), 12_000);
    let mut all = vec![0u8; 12_000];
    assert_eq!(data(&f).read_to(0, &mut all, &mut frames, &phys), Ok(12_000));
    assert!(all.iter().enumerate().all(|(o, &b)| b == byte(1, 2, o as u64)));
    // A write goes through to the host and into the cached page.
    data(&f).write_through(10, b"guest", &phys).unwrap();
    assert_eq!(host.borrow().writes.last(), Some(&(1, 10, b"guest".to_vec())));
    data(&f).read_to(10, &mut buf[..5], &mut frames, &phys).unwrap();
    assert_eq!(&buf[..5], b"guest");
    // The open of a file checks it again.
    host.borrow_mut().files.insert(1, (9, 4096));
    fs.host_revalidate(&f, &mut frames).unwrap();
    assert_eq!(f.size(), 4096);
    data(&f).read_to(0, &mut buf, &mut frames, &phys).unwrap();
    assert_eq!(buf[0], byte(1, 9, 0));
    drop((big, f, again, dir));
    fs.caches.writeback_all(&mut frames, &phys).unwrap();
    fs.caches.release_all(&mut frames);
    frames.check_all_free().unwrap();
}

#[test]
fn the_inode_cache_keeps_files_with_pages_not_written_back() {
    let files: Vec<(usize, u64)> = (0..200).map(|i| (i, 100)).collect();
    let (fs, host, dir) = setup(&files);
    let (mut frames, phys) = (Frames::new(MEM as u64), MockPhys::new(MEM));
    fs.set_host_cache_limit(dir.sb, 16);
    // A page dirtied as a store through a shared mapping would dirty it.
    let f = dir.lookup("5").unwrap().unwrap();
    let (frame, _) = data(&f).page_for_write(0, 1, &mut frames, &phys).unwrap();
    phys.write(frame, b"D");
    let cache = std::rc::Rc::downgrade(data(&f).cache());
    drop(f);
    for i in 0..200 {
        dir.lookup(&i.to_string()).unwrap().unwrap();
    }
    let mount = fs.host_mount(dir.sb).unwrap();
    assert!(mount.live_inodes() <= 16 + 16, "{} inodes cached", mount.live_inodes());
    let kept = cache.upgrade().expect("the file with a dirty page was evicted");
    assert_eq!(kept.dirty_pages(), 1);
    // Once written back it may go like the others.
    fs.caches.writeback_all(&mut frames, &phys).unwrap();
    assert_eq!(host.borrow().writes.last().map(|w| (w.0, w.2[0])), Some((5, b'D')));
    drop(kept);
    for i in (0..200).rev() {
        dir.lookup(&i.to_string()).unwrap().unwrap();
    }
    assert!(cache.upgrade().is_none(), "a clean, unused file stays cached past the limit");
    drop((dir, mount));
    fs.caches.release_all(&mut frames);
    frames.check_all_free().unwrap();
}
