//! The block layer: the guest's disks (`/dev/ubda`, `/dev/ubdb`, ...).
//!
//! A [`Disk`] wraps one [`hal::BlockDevice`] and gives the kernel three ways
//! to its sectors:
//!
//! - **metadata** ([`Disk::read_meta`], [`Disk::write_meta`]) through the
//!   disk's [`buffer::BufferCache`]: bytes at any offset, cached in kernel
//!   memory charged to the guest, changed in the cache and written back (or
//!   committed to a journal) later by the file system that owns them;
//! - **file data** ([`Disk::read_data`], [`Disk::write_data`]) straight
//!   between the device and a file's page cache, batched into one request per
//!   contiguous run (a cached copy of the same sectors is kept in step);
//! - **the device node** (`/dev/ubdX`): a page cache over the whole disk
//!   ([`DiskStore`]), so `read`, `write`, `mmap` and `fsync` of the node are
//!   those of any cached file, and `mkfs.ext4`, `dd` or `blkid` in the guest
//!   work on it. While a file system is mounted from the disk, writing the
//!   node is refused (`EBUSY`, as Linux without `BLK_DEV_WRITE_MOUNTED`)
//!   while that file system is read-write.
//!
//! Requests are completed by the backend before [`hal::BlockDevice::submit`]
//! returns (see `hal::block`), so a read needs no wait queue.

pub mod buffer;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use hal::{BlockDevice, BlockError, BlockRequest, SECTOR_SIZE};

use crate::budget::BudgetRef;
use crate::mm::page_cache::{Source, Store};
use crate::mm::{CacheSet, PageCache};
use crate::Errno;
pub use buffer::{BufferCache, UNIT};

/// Linux's major number of UML's `ubd` disks (16 minors per disk).
pub const UBD_MAJOR: u32 = 98;

/// The guest's view of a device error.
pub fn errno_of(e: BlockError) -> Errno {
    match e {
        BlockError::Io => Errno::EIO,
        BlockError::ReadOnly => Errno::EROFS,
        BlockError::OutOfRange => Errno::EIO,
        BlockError::NoSpace => Errno::ENOSPC,
    }
}

/// I/O figures of one disk (`/proc/diskstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Read requests.
    pub reads: u64,
    /// Sectors read.
    pub read_sectors: u64,
    /// Write requests.
    pub writes: u64,
    /// Sectors written.
    pub write_sectors: u64,
    /// Flushes.
    pub flushes: u64,
}

/// The file system mounted read-write from a disk: what it keeps in
/// memory reaches the disk's buffer cache at each sync.
pub trait DiskOwner {
    /// Put every change into the buffer cache (`sync`, `syncfs`).
    fn sync_fs(&self) -> Result<(), Errno>;
    /// As [`DiskOwner::sync_fs`], and record a clean unmount (unmount, shutdown).
    fn unmount(&self) -> Result<(), Errno>;
}

/// One disk.
pub struct Disk {
    /// `N` of `ubdN`.
    pub index: u32,
    /// `ubda`, `ubdb`, ...
    pub name: String,
    size: u64,
    read_only: bool,
    dev: RefCell<Box<dyn BlockDevice>>,
    cache: RefCell<BufferCache>,
    /// A file system is mounted from it.
    claimed: Cell<bool>,
    /// Bumped when the disk was written other than through the node's page
    /// cache (a file system): the node's cached pages are checked at open.
    generation: Cell<u64>,
    /// The generation the node's pages were last checked at.
    node_generation: Cell<u64>,
    /// The device node's page cache (made at boot).
    node: RefCell<Option<Rc<PageCache>>>,
    stats: Cell<DiskStats>,
    /// Lines for the kernel log (errors found on the disk), taken by the kernel loop.
    log: RefCell<Vec<String>>,
    /// The file system writing it, if any.
    owner: RefCell<Option<alloc::rc::Weak<dyn DiskOwner>>>,
}

/// A shared disk.
pub type DiskRef = Rc<Disk>;

impl Disk {
    /// Disk `index` over `dev`.
    pub fn new(index: u32, dev: Box<dyn BlockDevice>) -> DiskRef {
        let info = dev.info();
        Rc::new(Disk {
            index,
            name: disk_name(index),
            size: info.size - info.size % SECTOR_SIZE,
            read_only: info.read_only,
            dev: RefCell::new(dev),
            cache: RefCell::new(BufferCache::new(256, None)),
            claimed: Cell::new(false),
            generation: Cell::new(0),
            node_generation: Cell::new(0),
            node: RefCell::new(None),
            stats: Cell::new(DiskStats::default()),
            log: RefCell::new(Vec::new()),
            owner: RefCell::new(None),
        })
    }

    /// Queue a line for the kernel log (at most 64 wait; more are dropped).
    pub fn report(&self, line: &str) {
        let mut l = self.log.borrow_mut();
        if l.len() < 64 {
            l.push(String::from(line));
        }
    }

    /// The queued log lines (taken).
    pub fn take_log(&self) -> Vec<String> {
        core::mem::take(&mut *self.log.borrow_mut())
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Attached read-only?
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// (major, minor).
    pub fn rdev(&self) -> (u32, u32) {
        (UBD_MAJOR, self.index * 16)
    }

    /// I/O figures.
    pub fn stats(&self) -> DiskStats {
        self.stats.get()
    }

    /// Is a file system mounted from it?
    pub fn is_claimed(&self) -> bool {
        self.claimed.get()
    }

    /// A file system is mounted from it (`EBUSY` if one already is).
    pub fn claim(&self) -> Result<(), Errno> {
        if self.claimed.replace(true) {
            return Err(Errno::EBUSY);
        }
        self.generation.set(self.generation.get() + 1);
        Ok(())
    }

    /// The file system that writes the disk (`None`: none does).
    pub fn set_owner(&self, owner: Option<alloc::rc::Weak<dyn DiskOwner>>) {
        *self.owner.borrow_mut() = owner;
    }

    fn owner(&self) -> Option<Rc<dyn DiskOwner>> {
        self.owner.borrow().as_ref().and_then(alloc::rc::Weak::upgrade)
    }

    /// The owner's changes into the cache, all written back and flushed;
    /// `clean`: as at unmount.
    pub fn sync(&self, clean: bool) -> Result<(), Errno> {
        let r = match self.owner() {
            Some(o) if clean => o.unmount(),
            Some(o) => o.sync_fs(),
            None => Ok(()),
        };
        r.and_then(|_| self.writeback()).and_then(|_| self.flush())
    }

    /// The file system let it go: its changes are written, and its
    /// metadata cache goes.
    pub fn release(&self) {
        if let Err(e) = self.sync(true) {
            self.report(&format!("{}: writing back at unmount failed: {}", self.name, e.name()));
        }
        self.set_owner(None);
        self.claimed.set(false);
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            c.clear();
        }
        self.generation.set(self.generation.get() + 1);
    }

    /// Run `queue` on the device, counting it.
    pub fn submit(&self, queue: &mut [BlockRequest<'_>]) -> Result<(), Errno> {
        let mut st = self.stats.get();
        for r in queue.iter() {
            match r {
                BlockRequest::Read { buf, .. } => {
                    st.reads += 1;
                    st.read_sectors += buf.len() as u64 / SECTOR_SIZE;
                }
                BlockRequest::Write { data, .. } => {
                    st.writes += 1;
                    st.write_sectors += data.len() as u64 / SECTOR_SIZE;
                }
                BlockRequest::Flush => st.flushes += 1,
                BlockRequest::Discard { .. } => {}
            }
        }
        self.stats.set(st);
        let mut dev = self.dev.try_borrow_mut().map_err(|_| Errno::EIO)?;
        dev.submit(queue).map_err(|(_, e)| errno_of(e))
    }

    /// Check that `[off, off + len)` lies on the disk.
    fn check(&self, off: u64, len: u64) -> Result<(), Errno> {
        match off.checked_add(len) {
            Some(e) if e <= self.size => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    /// Bring the units covering `[off, off + len)` into the buffer cache:
    /// each run of missing units in one request (and up to 7 units more
    /// after a miss, while they are missing too: inode tables and
    /// directories are read in order).
    fn load(&self, off: u64, len: u64) -> Result<(), Errno> {
        let (first, last) = (off / UNIT, (off + len).div_ceil(UNIT));
        let units = self.size.div_ceil(UNIT);
        let mut idx = first;
        while idx < last {
            if self.cache.borrow().contains(idx) {
                idx += 1;
                continue;
            }
            let mut end = idx + 1;
            while end < units && end < last.max(idx + 8) && !self.cache.borrow().contains(end) {
                end += 1;
            }
            let start = idx * UNIT;
            let bytes = (end * UNIT).min(self.size) - start;
            let mut buf = vec![0u8; ((end - idx) * UNIT) as usize];
            self.submit(&mut [BlockRequest::Read { offset: start, buf: &mut buf[..bytes as usize] }])?;
            let mut c = self.cache.borrow_mut();
            for (k, chunk) in buf.chunks(UNIT as usize).enumerate() {
                c.insert(idx + k as u64, chunk.to_vec())?;
            }
            idx = end;
        }
        Ok(())
    }

    /// Read metadata bytes `[off, off + buf.len())` through the cache.
    pub fn read_meta(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check(off, buf.len() as u64)?;
        self.load(off, buf.len() as u64)?;
        let mut c = self.cache.borrow_mut();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let (idx, at) = (pos / UNIT, (pos % UNIT) as usize);
            let n = (buf.len() - done).min(UNIT as usize - at);
            let unit = c.get(idx).ok_or(Errno::EIO)?;
            buf[done..done + n].copy_from_slice(&unit[at..at + n]);
            done += n;
        }
        Ok(())
    }

    /// Change metadata bytes at `off` in the cache (written back later).
    pub fn write_meta(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        self.check(off, data.len() as u64)?;
        // Units the write covers whole need not be read first.
        let (first, last) = (off / UNIT, (off + data.len() as u64).div_ceil(UNIT));
        for idx in first..last {
            let (us, ue) = (idx * UNIT, (idx * UNIT + UNIT).min(self.size));
            let whole = off <= us && off + data.len() as u64 >= ue;
            if self.cache.borrow().contains(idx) {
                continue;
            }
            if whole {
                self.cache.borrow_mut().insert(idx, vec![0u8; UNIT as usize])?;
            } else {
                self.load(us, ue - us)?;
            }
        }
        let mut c = self.cache.borrow_mut();
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let (idx, at) = (pos / UNIT, (pos % UNIT) as usize);
            let n = (data.len() - done).min(UNIT as usize - at);
            c.modify(idx, at, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Read file data: each `(offset, buffer)` (sector-aligned) straight
    /// from the device in one batch, then overlaid with any cached copy of
    /// the same sectors (newer than the device's until written back).
    pub fn read_data(&self, runs: &mut [(u64, &mut [u8])]) -> Result<(), Errno> {
        let mut queue: Vec<BlockRequest<'_>> = Vec::with_capacity(runs.len());
        for (off, buf) in runs.iter_mut() {
            self.check(*off, buf.len() as u64)?;
            queue.push(BlockRequest::Read { offset: *off, buf });
        }
        if queue.is_empty() {
            return Ok(());
        }
        self.submit(&mut queue)?;
        drop(queue);
        let c = self.cache.borrow();
        if c.is_empty() {
            return Ok(());
        }
        for (off, buf) in runs.iter_mut() {
            let (first, last) = (*off / UNIT, (*off + buf.len() as u64).div_ceil(UNIT));
            for idx in first..last {
                let Some(unit) = c.peek(idx) else { continue };
                let (us, ue) = (idx * UNIT, idx * UNIT + UNIT);
                let lo = (*off).max(us);
                let hi = (*off + buf.len() as u64).min(ue);
                buf[(lo - *off) as usize..(hi - *off) as usize].copy_from_slice(&unit[(lo - us) as usize..(hi - us) as usize]);
            }
        }
        Ok(())
    }

    /// Write file data (sector-aligned runs) straight to the device in one
    /// batch, keeping any cached copy of those sectors in step.
    pub fn write_data(&self, runs: &[(u64, &[u8])]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let mut queue: Vec<BlockRequest<'_>> = Vec::with_capacity(runs.len());
        for (off, data) in runs {
            self.check(*off, data.len() as u64)?;
            queue.push(BlockRequest::Write { offset: *off, data });
        }
        if queue.is_empty() {
            return Ok(());
        }
        self.submit(&mut queue)?;
        let mut c = self.cache.borrow_mut();
        if !c.is_empty() {
            for (off, data) in runs {
                let (first, last) = (*off / UNIT, (*off + data.len() as u64).div_ceil(UNIT));
                for idx in first..last {
                    let (us, ue) = (idx * UNIT, idx * UNIT + UNIT);
                    let lo = (*off).max(us);
                    let hi = (*off + data.len() as u64).min(ue);
                    c.update_if_cached(idx, (lo - us) as usize, &data[(lo - *off) as usize..(hi - *off) as usize]);
                }
            }
        }
        self.generation.set(self.generation.get() + 1);
        Ok(())
    }

    /// `[off, off + len)` holds no metadata any more (freed blocks).
    pub fn forget(&self, off: u64, len: u64) {
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            c.forget(off, len);
        }
    }

    /// Units of metadata not yet written back, and the count past which the
    /// owner should write them back.
    pub fn dirty_units(&self) -> (usize, usize) {
        let c = self.cache.borrow();
        (c.dirty_units(), c.dirty_limit())
    }

    /// The `bs`-byte blocks holding dirty metadata, with their bytes (for a
    /// journal commit).
    pub fn dirty_blocks(&self, bs: u64) -> Vec<(u64, Vec<u8>)> {
        self.cache.borrow().dirty_blocks(bs)
    }

    /// Write every dirty metadata sector to its place (one batch).
    pub fn writeback(&self) -> Result<(), Errno> {
        let runs = self.cache.borrow().dirty_runs();
        if runs.is_empty() {
            return Ok(());
        }
        let mut queue: Vec<BlockRequest<'_>> = runs.iter().map(|(o, d)| BlockRequest::Write { offset: *o, data: d }).collect();
        self.submit(&mut queue)?;
        self.cache.borrow_mut().mark_clean();
        self.generation.set(self.generation.get() + 1);
        Ok(())
    }

    /// Everything written so far reaches stable storage.
    pub fn flush(&self) -> Result<(), Errno> {
        if self.read_only {
            return Ok(());
        }
        self.submit(&mut [BlockRequest::Flush])
    }

    /// Size the buffer cache for a guest of `total_frames` pages (a
    /// sixteenth of its memory, at least 1 MiB) and charge it to `budget`.
    pub fn set_budget(&self, budget: &BudgetRef, total_frames: u64) {
        let mut c = self.cache.borrow_mut();
        c.set_budget(budget);
        c.set_limit(((total_frames / 16) as usize).max(256));
    }

    /// Units in the buffer cache (tests, `/proc`).
    pub fn cached_units(&self) -> usize {
        self.cache.borrow().len()
    }

    /// The device node's page cache (made on first use).
    pub fn node_cache(self: &Rc<Self>, caches: &CacheSet) -> Rc<PageCache> {
        if let Some(c) = self.node.borrow().as_ref() {
            return c.clone();
        }
        let c = PageCache::new(caches, Source::Store(Rc::new(DiskStore(self.clone()))), self.size, None);
        *self.node.borrow_mut() = Some(c.clone());
        c
    }

    /// At an open of the device node: if a file system wrote the disk since
    /// the node's pages were checked, forget the clean ones nothing maps.
    pub fn node_revalidate(&self, frames: &mut crate::mm::Frames) {
        if self.node_generation.get() == self.generation.get() {
            return;
        }
        if let Some(c) = self.node.borrow().as_ref() {
            c.revalidate(self.size, frames);
        }
        self.node_generation.set(self.generation.get());
    }

    /// Forget the node's clean pages nothing maps (`BLKFLSBUF`).
    pub fn invalidate_node(&self, frames: &mut crate::mm::Frames) {
        if let Some(c) = self.node.borrow().as_ref() {
            c.revalidate(self.size, frames);
        }
        self.node_generation.set(self.generation.get());
    }

    /// Read any bytes (unaligned) through the buffer cache's view: cached
    /// units win, the rest comes from the device without being cached.
    fn read_bytes(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let len = (buf.len() as u64).min(self.size.saturating_sub(off));
        let (a, b) = (off - off % SECTOR_SIZE, (off + len).div_ceil(SECTOR_SIZE) * SECTOR_SIZE);
        if a == off && b == off + len {
            return self.read_data(&mut [(off, &mut buf[..len as usize])]);
        }
        let mut tmp = vec![0u8; (b - a) as usize];
        self.read_data(&mut [(a, &mut tmp[..])])?;
        buf[..len as usize].copy_from_slice(&tmp[(off - a) as usize..(off - a + len) as usize]);
        Ok(())
    }

    /// Write any bytes (unaligned: the edge sectors are read first).
    fn write_bytes(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(off, data.len() as u64)?;
        let len = data.len() as u64;
        let (a, b) = (off - off % SECTOR_SIZE, (off + len).div_ceil(SECTOR_SIZE) * SECTOR_SIZE);
        if a == off && b == off + len {
            return self.write_data(&[(off, data)]);
        }
        let mut tmp = vec![0u8; (b - a) as usize];
        self.read_data(&mut [(a, &mut tmp[..SECTOR_SIZE as usize])])?;
        if b - a > SECTOR_SIZE {
            let n = tmp.len();
            self.read_data(&mut [(b - SECTOR_SIZE, &mut tmp[n - SECTOR_SIZE as usize..])])?;
        }
        tmp[(off - a) as usize..(off - a + len) as usize].copy_from_slice(data);
        self.write_data(&[(a, &tmp)])
    }
}

/// The device node's page cache store: the whole disk.
pub struct DiskStore(DiskRef);

impl Store for DiskStore {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = (buf.len() as u64).min(self.0.size.saturating_sub(off)) as usize;
        self.0.read_bytes(off, &mut buf[..n])?;
        Ok(n)
    }
    fn write(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        if self.0.owner().is_some() {
            // A file system mounted read-write: its sectors are its own.
            // (Read-only, the node may be written: e2fsck of a root
            // mounted read-only, as Linux allows.)
            return Err(Errno::EBUSY);
        }
        if off.checked_add(data.len() as u64).is_none_or(|e| e > self.0.size) {
            return Err(Errno::ENOSPC);
        }
        self.0.write_bytes(off, data)?;
        // The node itself wrote: its pages are current.
        self.0.node_generation.set(self.0.generation.get());
        Ok(())
    }
    fn truncate(&self, _len: u64) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }
}

impl crate::budget::Shrinker for Disk {
    fn shrink(&self, pages: u64) -> u64 {
        match self.cache.try_borrow_mut() {
            Ok(mut c) => c.shrink(pages),
            Err(_) => 0,
        }
    }
}

/// The device name of disk `index`: `ubda`, `ubdb`, ...
pub fn disk_name(index: u32) -> String {
    format!("ubd{}", (b'a' + (index % 26) as u8) as char)
}

/// The disks of one guest.
#[derive(Default)]
pub struct Disks {
    list: Vec<DiskRef>,
}

impl Disks {
    /// Add a disk (kept in index order).
    pub fn add(&mut self, disk: DiskRef) {
        self.list.push(disk);
        self.list.sort_by_key(|d| d.index);
    }
    /// The kernel log lines every disk queued (taken).
    pub fn take_log(&self) -> Vec<String> {
        self.list.iter().flat_map(|d| core::mem::take(&mut *d.log.borrow_mut())).collect()
    }
    /// Every disk.
    pub fn all(&self) -> &[DiskRef] {
        &self.list
    }
    /// The disk with (major, minor), if any.
    pub fn by_rdev(&self, maj: u32, min: u32) -> Option<DiskRef> {
        self.list.iter().find(|d| d.rdev() == (maj, min)).cloned()
    }
    /// The disk named `ubdX`.
    pub fn by_name(&self, name: &str) -> Option<DiskRef> {
        self.list.iter().find(|d| d.name == name).cloned()
    }
    /// Charge every disk's buffer cache to `budget` and register them as
    /// its shrinkers.
    pub fn set_budget(&self, budget: &BudgetRef, total_frames: u64) {
        for d in &self.list {
            d.set_budget(budget, total_frames);
            let w: alloc::rc::Weak<dyn crate::budget::Shrinker> = Rc::downgrade(&(d.clone() as Rc<dyn crate::budget::Shrinker>));
            budget.add_shrinker(w);
        }
    }
    /// Write every disk's dirty metadata back and flush each one to stable
    /// storage (`sync`, `syncfs`, shutdown). Every disk is tried; the first
    /// error is returned.
    pub fn sync_all(&self) -> Result<(), Errno> {
        let mut first = Ok(());
        for d in &self.list {
            if let Err(e) = d.sync(false) {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// [`Disks::sync_all`] at power-off: the file systems still mounted
    /// record a clean unmount.
    pub fn shutdown(&self) -> Result<(), Errno> {
        let mut first = Ok(());
        for d in &self.list {
            if let Err(e) = d.sync(true) {
                first = first.and(Err(e));
            }
        }
        first
    }
    /// `/proc/partitions`.
    pub fn partitions_text(&self) -> String {
        let mut s = String::from("major minor  #blocks  name\n\n");
        for d in &self.list {
            let (maj, min) = d.rdev();
            s.push_str(&format!("{:4}  {:7} {:10} {}\n", maj, min, d.size / 1024, d.name));
        }
        s
    }
    /// `/proc/diskstats`.
    pub fn diskstats_text(&self) -> String {
        let mut s = String::new();
        for d in &self.list {
            let (maj, min) = d.rdev();
            let st = d.stats();
            s.push_str(&format!(
                "{:4} {:7} {} {} 0 {} 0 {} 0 {} 0 0 0 0 0 0 0 0 {} 0\n",
                maj, min, d.name, st.reads, st.read_sectors, st.writes, st.write_sectors, st.flushes
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::MemDisk;

    fn disk(bytes: usize) -> DiskRef {
        let v: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        Disk::new(0, Box::new(MemDisk::new(v)))
    }

    #[test]
    fn metadata_is_cached_and_written_back_data_goes_direct() {
        let d = disk(64 << 10);
        let mut b = [0u8; 10];
        d.read_meta(4095, &mut b).unwrap();
        assert_eq!(b[0], (4095 % 251) as u8);
        d.write_meta(5000, &[7; 3000]).unwrap();
        let mut c = vec![0u8; 4096];
        // Data reads see the newer cached bytes.
        d.read_data(&mut [(4096, &mut c[..])]).unwrap();
        assert_eq!(c[5000 - 4096], 7);
        // A data write keeps the cached copy in step.
        d.write_data(&[(4096, &[9u8; 1024][..])]).unwrap();
        d.read_meta(5000, &mut b).unwrap();
        assert_eq!(b, [9; 10]);
        assert_eq!(d.dirty_units().0, 1);
        d.writeback().unwrap();
        assert_eq!(d.dirty_units().0, 0);
        d.release();
        let mut e = [0u8; 3];
        d.read_meta(7000, &mut e).unwrap();
        assert_eq!(e, [7; 3]);
        assert!(d.read_meta(64 << 10, &mut e).is_err());
        assert!(d.write_data(&[((64 << 10) - 512, &[0u8; 1024][..])]).is_err());
    }

    #[test]
    fn node_store_writes_unaligned_and_refuses_while_claimed() {
        let d = disk(16 << 10);
        let s = DiskStore(d.clone());
        s.write(100, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 5];
        s.read(99, &mut b).unwrap();
        assert_eq!(b, [99u8, 1, 2, 3, 103]);
        d.claim().unwrap();
        assert_eq!(d.claim(), Err(Errno::EBUSY));
        // Mounted read-only: the node may be written (fsck of a read-only root).
        s.write(0, &[0]).unwrap();
        struct Rw;
        impl DiskOwner for Rw {
            fn sync_fs(&self) -> Result<(), Errno> {
                Ok(())
            }
            fn unmount(&self) -> Result<(), Errno> {
                Ok(())
            }
        }
        let owner: Rc<dyn DiskOwner> = Rc::new(Rw);
        d.set_owner(Some(Rc::downgrade(&owner)));
        assert_eq!(s.write(0, &[0]), Err(Errno::EBUSY));
        d.release();
        assert_eq!(s.write(16 << 10, &[0]), Err(Errno::ENOSPC));
    }
}
