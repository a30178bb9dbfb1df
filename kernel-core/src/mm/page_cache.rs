//! The page cache: a file's data in guest frames.
//!
//! Every regular file (the root file system, tmpfs, memfd, hostfs) and every
//! `MAP_SHARED|MAP_ANONYMOUS` object keeps its data in one [`PageCache`]:
//! page index -> frame of the physical-memory region. `read`/`write` copy
//! between user memory and those frames, and mappings map the very same
//! frames (shared mappings writable, private ones copy-on-write), so a
//! `write` and a store through a shared mapping always agree, and the data
//! is charged to guest memory like any other page.
//!
//! A page that is not in the cache comes from the file's [`Source`]: a hole
//! (zeros: tmpfs files are sparse), read-only bytes (the initramfs archive
//! or generated proc text: never copied until written or mapped, so boot
//! copies nothing), or a [`Store`] (a host file: pages are read on demand,
//! and dirty pages are written back).
//!
//! # Frame references
//! The cache holds one reference per page; a page-table entry that maps a
//! cache page holds its own. A page no page-table entry maps (refcount 1)
//! and that equals its source (`!dirty`) can be evicted under memory
//! pressure ([`CacheSet::shrink`]). A page can change behind the kernel's
//! back only through a writable page-table entry of a shared mapping, and
//! such an entry is only made by a write fault, which marks the page dirty
//! first (the mappings keep other entries write-protected: "write notify").
//!
//! # Lifetime
//! Caches are reached from inodes (and VMAs, through their file) by `Rc`. A
//! cache cannot give its frames back when it is dropped (the allocator is
//! not reachable from `Drop`), so it leaves them on its [`CacheSet`]'s
//! orphan list, which [`CacheSet::service`] (every turn of the kernel loop)
//! and [`CacheSet::shrink`] return to the allocator. The invariant checker
//! counts the orphans as references.
//!
//! Lock order: none (single-threaded kernel). Borrows of a cache's state are
//! never held across user copies or across a call into another cache,
//! except [`CacheSet::shrink`], which skips caches already borrowed.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::rc::{Rc, Weak};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use hal::PhysMem;

use super::frames::Frames;
use super::vma::FaultError;
use super::PAGE;
use crate::Errno;

/// Read-only bytes that many files can share: the initramfs archive (a
/// `Vec<u8>`, or a host file the backend mapped), which the files unpacked
/// from it point into instead of holding copies.
pub type SharedBytes = Arc<dyn AsRef<[u8]>>;

/// The largest file size (Linux's `MAX_LFS_FILESIZE` on 64-bit).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Pages read from a [`Store`] at once when one is missing (read-ahead).
const READ_AHEAD: u64 = 16;

/// The backing store of a cache whose pages live elsewhere too (a host file).
pub trait Store {
    /// Read up to `buf.len()` bytes at `off`; returns how many (short only at
    /// end of file).
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Write all of `data` at `off`.
    fn write(&self, off: u64, data: &[u8]) -> Result<(), Errno>;
    /// Set the size.
    fn truncate(&self, len: u64) -> Result<(), Errno>;
}

/// Where the pages that are not in the cache come from.
#[derive(Clone)]
pub enum Source {
    /// Nowhere: a missing page is a hole and reads as zeros (tmpfs, memfd,
    /// shared anonymous memory).
    Zero,
    /// `bytes[start..start + len]` are the first `len` bytes of the file
    /// (the initramfs archive, generated text); pages beyond are holes.
    Bytes {
        /// The shared bytes.
        bytes: SharedBytes,
        /// Where the file starts in them.
        start: usize,
        /// How many of them belong to the file (shrinks with truncation).
        len: u64,
    },
    /// A store that keeps the data (a host file).
    Store(Rc<dyn Store>),
}

/// Frames that memory files (tmpfs, shared memory) leave to the guest's
/// processes: a sixteenth of guest memory, at least 1 MiB.
fn shmem_reserve(total_frames: u64) -> u64 {
    (total_frames / 16).max(256.min(total_frames / 2))
}

/// A size limit shared by the caches of one file system (tmpfs `size=`).
/// It counts the pages that hold data nothing else has (dirty pages): a
/// clean page (a copy of archive bytes, a hole read through a mapping) can
/// be dropped at any time, so it takes no space.
pub struct Quota {
    /// Limit in pages; `None`: half of guest memory (Linux's tmpfs default).
    limit: Cell<Option<u64>>,
    used: Cell<u64>,
}

impl Quota {
    /// A quota of `limit` pages (`None`: half of guest memory).
    pub fn new(limit: Option<u64>) -> Rc<Quota> {
        Rc::new(Quota { limit: Cell::new(limit), used: Cell::new(0) })
    }
    /// The limit in pages, given the whole guest's frame count (0: not
    /// known yet, no default limit).
    pub fn limit(&self, total_frames: u64) -> u64 {
        match (self.limit.get(), total_frames) {
            (Some(l), _) => l,
            (None, 0) => u64::MAX,
            (None, t) => t / 2,
        }
    }
    /// Change the limit (`mount -o remount,size=`).
    pub fn set_limit(&self, limit: Option<u64>) {
        self.limit.set(limit);
    }
    /// Pages charged now.
    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

/// One cached page.
#[derive(Clone, Copy, Debug)]
struct Page {
    frame: u64,
    /// May differ from the source: never evicted; written back if the
    /// source is a store.
    dirty: bool,
}

struct State {
    size: u64,
    pages: BTreeMap<u64, Page>,
    source: Source,
    quota: Option<Rc<Quota>>,
    /// `F_SEAL_*` bits.
    seals: u32,
    ndirty: u64,
}

impl State {
    fn is_shmem(&self) -> bool {
        !matches!(self.source, Source::Store(_))
    }
    /// Does page `idx` (not in the cache) have data in the source?
    fn in_source(&self, idx: u64) -> bool {
        match &self.source {
            Source::Zero => false,
            Source::Bytes { len, .. } => idx.checked_mul(PAGE).is_some_and(|o| o < *len),
            Source::Store(_) => idx.checked_mul(PAGE).is_some_and(|o| o < self.size),
        }
    }
    /// The page count covering `size`.
    fn last_page_end(&self) -> u64 {
        self.size.div_ceil(PAGE)
    }
}

/// What a piece of a read is (see [`PageCache::piece`]).
pub enum Piece {
    /// Bytes in this frame (a physical address, page offset included).
    Frame(u64),
    /// A hole.
    Zeros,
    /// `bytes[at..]` of read-only shared bytes.
    Bytes(SharedBytes, usize),
    /// Bytes read from a store without caching them (memory was short).
    Owned(Vec<u8>),
}

/// One file's pages. Reach it through `Rc`.
pub struct PageCache {
    id: u64,
    /// Itself, for the set's lists.
    me: Weak<PageCache>,
    set: CacheSet,
    st: RefCell<State>,
    /// VMAs that map it (each holds a [`MapRef`]).
    maps: Cell<u32>,
    /// Of those, shared and writable.
    writers: Cell<u32>,
}

struct SetInner {
    caches: RefCell<BTreeMap<u64, Weak<PageCache>>>,
    /// Frame references of dropped caches, not yet given back.
    orphans: RefCell<Vec<u64>>,
    /// Caches whose writable shared mappings went away with dirty pages.
    writeback: RefCell<Vec<Weak<PageCache>>>,
    next_id: Cell<u64>,
    total_frames: Cell<u64>,
    /// Pages in all caches.
    pages: Cell<u64>,
    /// Of those, dirty pages of memory-only caches (no store): data with no
    /// other copy.
    shmem: Cell<u64>,
    /// Pages that are not dirty (evictable unless mapped).
    clean: Cell<u64>,
    /// Dirty pages of caches with a store (to be written back).
    dirty_store: Cell<u64>,
    /// Pages as they became clean, oldest first: what the shrinker evicts
    /// (entries whose page went or got dirty since are skipped; mapped pages
    /// get a second chance at the back). Compacted when it holds far more
    /// entries than there are clean pages, so it stays proportional to them.
    lru: RefCell<VecDeque<(Weak<PageCache>, u64)>>,
    /// Caches with a store that have had dirty pages (sync, writeback).
    dirty_caches: RefCell<BTreeMap<u64, Weak<PageCache>>>,
}

/// Every page cache of one kernel: the registry the shrinker, the invariant
/// checker, writeback and `/proc/meminfo` go through.
#[derive(Clone)]
pub struct CacheSet(Rc<SetInner>);

impl Default for CacheSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Page-cache figures for `/proc/meminfo` (pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Pages in all caches.
    pub pages: u64,
    /// Pages of memory-only caches (tmpfs, memfd, shared anonymous memory)
    /// that hold data with no other copy (written, not archive copies).
    pub shmem: u64,
    /// Pages equal to their source (evictable when not mapped).
    pub clean: u64,
    /// Pages to be written back to a store.
    pub dirty: u64,
}

impl CacheSet {
    /// An empty set (guest memory size unknown until [`CacheSet::set_memory`]).
    pub fn new() -> CacheSet {
        CacheSet(Rc::new(SetInner {
            caches: RefCell::new(BTreeMap::new()),
            orphans: RefCell::new(Vec::new()),
            writeback: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            total_frames: Cell::new(0),
            pages: Cell::new(0),
            shmem: Cell::new(0),
            clean: Cell::new(0),
            dirty_store: Cell::new(0),
            lru: RefCell::new(VecDeque::new()),
            dirty_caches: RefCell::new(BTreeMap::new()),
        }))
    }

    /// Tell the set how many frames the guest has (tmpfs default sizes).
    pub fn set_memory(&self, total_frames: u64) {
        self.0.total_frames.set(total_frames);
    }

    /// The guest's frame count.
    pub fn total_frames(&self) -> u64 {
        self.0.total_frames.get()
    }

    /// The figures for `/proc/meminfo`.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            pages: self.0.pages.get(),
            shmem: self.0.shmem.get(),
            clean: self.0.clean.get(),
            dirty: self.0.dirty_store.get(),
        }
    }

    fn add_counts(&self, shmem: bool, dirty: bool, store: bool, sign: i64) {
        let add = |c: &Cell<u64>| c.set(c.get().wrapping_add_signed(sign));
        add(&self.0.pages);
        // Shmem: data whose only copy is this page (a clean page is a copy
        // of its source, evictable).
        if shmem && dirty {
            add(&self.0.shmem);
        }
        if !dirty {
            add(&self.0.clean);
        } else if store {
            add(&self.0.dirty_store);
        }
    }

    /// Page `idx` of `cache` became clean: it joins the eviction queue.
    fn note_clean(&self, cache: &Weak<PageCache>, idx: u64) {
        let Ok(mut lru) = self.0.lru.try_borrow_mut() else { return };
        lru.push_back((cache.clone(), idx));
        if lru.len() as u64 > 2 * self.0.clean.get() + 4096 {
            // Drop the stale entries (their page went, or got dirty).
            lru.retain(|(w, i)| match w.upgrade() {
                Some(c) => c.st.try_borrow().map_or(true, |st| st.pages.get(i).is_some_and(|p| !p.dirty)),
                None => false,
            });
        }
    }

    /// `cache` (with a store) has a dirty page.
    fn note_dirty(&self, id: u64, cache: &Weak<PageCache>) {
        if let Ok(mut d) = self.0.dirty_caches.try_borrow_mut() {
            d.entry(id).or_insert_with(|| cache.clone());
        }
    }

    /// The caches with a store that may have dirty pages (a snapshot).
    fn dirty_caches(&self) -> Vec<Rc<PageCache>> {
        let mut v = Vec::new();
        if let Ok(mut m) = self.0.dirty_caches.try_borrow_mut() {
            m.retain(|_, w| match w.upgrade() {
                Some(c) if c.st.try_borrow().map_or(true, |st| st.ndirty > 0) => {
                    v.push(c);
                    true
                }
                _ => false,
            });
        }
        v
    }

    /// Evict clean pages no mapping holds, oldest first, until `want`
    /// frames are free past `before` (or the queue went round once).
    fn evict_lru(&self, frames: &mut Frames, before: u64, want: u64) {
        let mut budget = self.0.lru.borrow().len();
        while budget > 0 && frames.free_frames().saturating_sub(before) < want {
            budget -= 1;
            let Some((w, idx)) = self.0.lru.borrow_mut().pop_front() else { break };
            let Some(c) = w.upgrade() else { continue };
            let Ok(mut st) = c.st.try_borrow_mut() else {
                self.0.lru.borrow_mut().push_back((w, idx));
                continue;
            };
            match st.pages.get(&idx) {
                Some(p) if !p.dirty && frames.refcount(p.frame) <= 1 => c.remove_page(&mut st, idx, frames),
                // Mapped: a second chance.
                Some(p) if !p.dirty => self.0.lru.borrow_mut().push_back((w, idx)),
                _ => {}
            }
        }
    }

    /// Live caches (a snapshot: no borrow is held while the caller works).
    fn live(&self) -> Vec<Rc<PageCache>> {
        let mut v = Vec::new();
        if let Ok(mut m) = self.0.caches.try_borrow_mut() {
            m.retain(|_, w| match w.upgrade() {
                Some(c) => {
                    v.push(c);
                    true
                }
                None => false,
            });
        }
        v
    }

    /// Give the frames of dropped caches back and write back caches whose
    /// writable shared mappings went away. Called every turn of the kernel
    /// loop; cheap when there is nothing to do.
    pub fn service(&self, frames: &mut Frames, phys: &impl PhysMem) {
        self.reap(frames);
        let pending = core::mem::take(&mut *self.0.writeback.borrow_mut());
        let mut done: Vec<u64> = Vec::new();
        for w in pending {
            if let Some(c) = w.upgrade() {
                if !done.contains(&c.id) {
                    done.push(c.id);
                    // Errors are the store's to report; the pages stay dirty
                    // and are tried again at the next writeback.
                    let _ = c.writeback(0, u64::MAX, frames, phys);
                }
            }
        }
    }

    /// Return orphaned frame references to the allocator.
    pub fn reap(&self, frames: &mut Frames) {
        if self.0.orphans.borrow().is_empty() {
            return;
        }
        let orphans = core::mem::take(&mut *self.0.orphans.borrow_mut());
        for f in orphans {
            frames.put(f);
        }
    }

    /// Free at least `want` frames if possible: orphans first, then clean
    /// pages no mapping holds (oldest clean first), then dirty pages of
    /// caches with a store that no mapping holds, after writing them back.
    /// Returns how many frames became free. The work is proportional to
    /// the pages looked at, not to the number of files.
    pub fn shrink(&self, frames: &mut Frames, phys: &impl PhysMem, want: u64) -> u64 {
        let before = frames.free_frames();
        self.reap(frames);
        self.evict_lru(frames, before, want);
        if frames.free_frames().saturating_sub(before) < want {
            for c in self.dirty_caches() {
                let _ = c.writeback_unmapped(frames, phys);
            }
            self.evict_lru(frames, before, want);
        }
        frames.free_frames().saturating_sub(before)
    }

    /// Write every dirty page back to its store (sync, umount, shutdown).
    pub fn writeback_all(&self, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let mut r = Ok(());
        for c in self.dirty_caches() {
            if let Err(e) = c.writeback(0, u64::MAX, frames, phys) {
                r = Err(e);
            }
        }
        r
    }

    /// Drop every page of every cache (shutdown: after [`CacheSet::writeback_all`]).
    pub fn release_all(&self, frames: &mut Frames) {
        for c in self.live() {
            if let Ok(mut st) = c.st.try_borrow_mut() {
                let keys: Vec<u64> = st.pages.keys().copied().collect();
                for idx in keys {
                    c.remove_page(&mut st, idx, frames);
                }
            }
        }
        self.reap(frames);
    }

    /// The frame references of dropped caches not yet given back.
    pub fn orphans(&self) -> Vec<u64> {
        self.0.orphans.borrow().clone()
    }

    /// Every live cache of the set.
    pub fn caches(&self) -> Vec<Rc<PageCache>> {
        self.live()
    }

    /// The set's identity (two handles of one set compare equal).
    pub fn identity(&self) -> *const () {
        Rc::as_ptr(&self.0) as *const ()
    }

    /// Check the counters against the caches (invariant checker).
    pub fn check(&self) -> Result<(), alloc::string::String> {
        let mut s = CacheStats::default();
        // quota -> (pages charged, dirty pages of its caches)
        let mut quotas: BTreeMap<*const Quota, (u64, u64)> = BTreeMap::new();
        for c in self.live() {
            let st = c.st.try_borrow().map_err(|_| alloc::string::String::from("cache borrowed"))?;
            if let Some(q) = &st.quota {
                quotas.entry(Rc::as_ptr(q)).or_insert((q.used(), 0)).1 += st.ndirty;
            }
            let mut nd = 0;
            for p in st.pages.values() {
                s.pages += 1;
                s.shmem += u64::from(st.is_shmem() && p.dirty);
                if p.dirty {
                    nd += 1;
                    s.dirty += u64::from(!st.is_shmem());
                } else {
                    s.clean += 1;
                }
            }
            if nd != st.ndirty {
                return Err(alloc::format!("cache {}: {} dirty pages, counted {}", c.id, nd, st.ndirty));
            }
        }
        if s != self.stats() {
            return Err(alloc::format!("cache counters {:?}, caches hold {:?}", self.stats(), s));
        }
        // (Files whose caches share a quota all live in this set.)
        if let Some((used, dirty)) = quotas.values().find(|(u, d)| u != d) {
            return Err(alloc::format!("a file system quota counts {used} pages, its files have {dirty} dirty"));
        }
        Ok(())
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        let shmem = st.is_shmem();
        let pages = core::mem::take(&mut st.pages);
        if let Some(q) = &st.quota {
            q.used.set(q.used.get().saturating_sub(st.ndirty));
        }
        let mut orphans = self.set.0.orphans.borrow_mut();
        for p in pages.values() {
            self.set.add_counts(shmem, p.dirty, !shmem, -1);
            orphans.push(p.frame);
        }
        drop(orphans);
        if let Ok(mut m) = self.set.0.caches.try_borrow_mut() {
            m.remove(&self.id);
        }
    }
}

impl PageCache {
    /// A cache of a file of `size` bytes over `source`, charged to `quota`.
    pub fn new(set: &CacheSet, source: Source, size: u64, quota: Option<Rc<Quota>>) -> Rc<PageCache> {
        let id = set.0.next_id.get();
        set.0.next_id.set(id + 1);
        let size = match &source {
            Source::Bytes { len, .. } => size.max(*len),
            _ => size,
        };
        let c = Rc::new_cyclic(|me| PageCache {
            id,
            me: me.clone(),
            set: set.clone(),
            st: RefCell::new(State { size, pages: BTreeMap::new(), source, quota, seals: 0, ndirty: 0 }),
            maps: Cell::new(0),
            writers: Cell::new(0),
        });
        set.0.caches.borrow_mut().insert(id, Rc::downgrade(&c));
        c
    }

    /// A unique id (futex keys, `/proc` output, the invariant checker).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.st.borrow().size
    }

    /// Pages in the cache.
    pub fn resident_pages(&self) -> u64 {
        self.st.borrow().pages.len() as u64
    }

    /// Is page `idx` in the cache (`mincore`)? Pages of read-only bytes
    /// count as resident (they are in memory).
    pub fn resident(&self, idx: u64) -> bool {
        let st = self.st.borrow();
        st.pages.contains_key(&idx) || matches!(st.source, Source::Bytes { .. }) && st.in_source(idx)
    }

    /// `st_blocks` (512-byte units): the pages that hold data, cached or in
    /// the source. A sparse file's holes cost nothing.
    pub fn blocks(&self) -> u64 {
        let st = self.st.borrow();
        let from_source = match &st.source {
            Source::Zero => 0,
            Source::Bytes { len, .. } => {
                let n = len.div_ceil(PAGE);
                n - st.pages.range(..n).count() as u64
            }
            Source::Store(_) => {
                let n = st.last_page_end();
                n - st.pages.range(..n).count() as u64
            }
        };
        (st.pages.len() as u64 + from_source) * (PAGE / 512)
    }

    /// Does the cache keep its data in a store (a host file)?
    pub fn has_store(&self) -> bool {
        matches!(self.st.borrow().source, Source::Store(_))
    }

    /// The `F_SEAL_*` bits.
    pub fn seals(&self) -> u32 {
        self.st.borrow().seals
    }

    /// Set the `F_SEAL_*` bits (the caller checked the rules).
    pub fn set_seals(&self, seals: u32) {
        self.st.borrow_mut().seals = seals;
    }

    /// Shared writable mappings of this cache now.
    pub fn writable_mappings(&self) -> u32 {
        self.writers.get()
    }

    /// Mappings of this cache now.
    pub fn mappings(&self) -> u32 {
        self.maps.get()
    }

    /// The frame of page `idx`, if cached.
    pub fn frame_at(&self, idx: u64) -> Option<u64> {
        self.st.borrow().pages.get(&idx).map(|p| p.frame)
    }

    /// Whether page `idx` is cached and dirty.
    pub fn is_dirty(&self, idx: u64) -> bool {
        self.st.borrow().pages.get(&idx).is_some_and(|p| p.dirty)
    }

    fn charge(&self, st: &State) -> Result<(), Errno> {
        if let Some(q) = &st.quota {
            if q.used.get() >= q.limit(self.set.total_frames()) {
                return Err(Errno::ENOSPC);
            }
            q.used.set(q.used.get() + 1);
        }
        Ok(())
    }

    fn uncharge(&self, st: &State) {
        if let Some(q) = &st.quota {
            q.used.set(q.used.get().saturating_sub(1));
        }
    }

    /// Insert a page (a dirty one must have been charged).
    fn insert_page(&self, st: &mut State, idx: u64, frame: u64, dirty: bool) {
        st.pages.insert(idx, Page { frame, dirty });
        st.ndirty += u64::from(dirty);
        self.set.add_counts(st.is_shmem(), dirty, !st.is_shmem(), 1);
        self.noted(st, idx, dirty);
    }

    /// Tell the set about a page that became clean (evictable) or a store's
    /// page that became dirty (to write back).
    fn noted(&self, st: &State, idx: u64, dirty: bool) {
        if !dirty {
            self.set.note_clean(&self.me, idx);
        } else if !st.is_shmem() {
            self.set.note_dirty(self.id, &self.me);
        }
    }

    fn remove_page(&self, st: &mut State, idx: u64, frames: &mut Frames) {
        if let Some(p) = st.pages.remove(&idx) {
            st.ndirty -= u64::from(p.dirty);
            self.set.add_counts(st.is_shmem(), p.dirty, !st.is_shmem(), -1);
            if p.dirty {
                self.uncharge(st);
            }
            frames.put(p.frame);
        }
    }

    /// Mark a cached page dirty or clean; becoming dirty is charged to the
    /// quota (`ENOSPC` when it is full).
    fn set_dirty(&self, st: &mut State, idx: u64, dirty: bool) -> Result<(), Errno> {
        let shmem = st.is_shmem();
        let Some(was) = st.pages.get(&idx).map(|p| p.dirty) else { return Ok(()) };
        if was == dirty {
            return Ok(());
        }
        if dirty {
            self.charge(st)?;
            st.ndirty += 1;
        } else {
            self.uncharge(st);
            st.ndirty -= 1;
        }
        self.set.add_counts(shmem, was, !shmem, -1);
        self.set.add_counts(shmem, dirty, !shmem, 1);
        if let Some(p) = st.pages.get_mut(&idx) {
            p.dirty = dirty;
        }
        self.noted(st, idx, dirty);
        Ok(())
    }

    /// A frame for a new page (zero-filled when `zeroed`), shrinking the
    /// other caches when memory is short.
    fn alloc_frame(&self, frames: &mut Frames, phys: &impl PhysMem, zeroed: bool) -> Option<u64> {
        let try_alloc = |frames: &mut Frames| if zeroed { frames.alloc_zeroed(phys) } else { frames.alloc() };
        if let Some(f) = try_alloc(frames) {
            return Some(f);
        }
        self.set.shrink(frames, phys, 32);
        try_alloc(frames)
    }

    /// Fill `frame` with page `idx` of the source (zero-padded).
    fn fill_from_source(st: &State, idx: u64, frame: u64, phys: &impl PhysMem) -> Result<(), Errno> {
        let off = idx.checked_mul(PAGE).ok_or(Errno::EFBIG)?;
        match &st.source {
            Source::Zero => phys.fill(frame, PAGE, 0),
            Source::Bytes { bytes, start, len } => {
                let b = (**bytes).as_ref();
                let n = len.saturating_sub(off).min(PAGE) as usize;
                let from = start.saturating_add(off as usize);
                match b.get(from..from + n) {
                    Some(s) => phys.write(frame, s),
                    None => return Err(Errno::EIO),
                }
                if n < PAGE as usize {
                    phys.fill(frame + n as u64, PAGE - n as u64, 0);
                }
            }
            Source::Store(s) => {
                let mut buf = vec![0u8; PAGE as usize];
                let want = st.size.saturating_sub(off).min(PAGE) as usize;
                read_full(&**s, off, &mut buf[..want])?;
                phys.write(frame, &buf);
            }
        }
        Ok(())
    }

    /// Read the missing pages `[idx, idx + n)` of a store-backed cache in one
    /// store read and cache them (stopping early when memory is short).
    /// Returns how many pages were added.
    fn read_ahead(&self, st: &mut State, idx: u64, n: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<u64, Errno> {
        let Source::Store(s) = &st.source else { return Ok(0) };
        let s = s.clone();
        let off = idx * PAGE;
        let want = (st.size.saturating_sub(off)).min(n * PAGE) as usize;
        if want == 0 {
            return Ok(0);
        }
        let mut buf = vec![0u8; want.div_ceil(PAGE as usize) * PAGE as usize];
        read_full(&*s, off, &mut buf[..want])?;
        let mut added = 0;
        for (i, chunk) in buf.chunks(PAGE as usize).enumerate() {
            let pi = idx + i as u64;
            if st.pages.contains_key(&pi) {
                break;
            }
            // Neighbours only while memory is plentiful.
            if i > 0 && frames.free_frames() < frames.total_frames() / 16 {
                break;
            }
            let Some(f) = self.alloc_frame(frames, phys, false) else { break };
            phys.write(f, chunk);
            self.insert_page(st, pi, f, false);
            added += 1;
        }
        Ok(added)
    }

    /// The next piece of a read at `off` of at most `max` bytes (`off` below
    /// the size): what it is and how many bytes it has (at least one). A
    /// missing page of a store is read into the cache (with read-ahead).
    /// Holds no borrow on return; a [`Piece::Frame`] stays valid until the
    /// cache is changed (the caller copies it out at once).
    pub fn piece(&self, off: u64, max: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(Piece, u64), Errno> {
        let mut st = self.st.borrow_mut();
        let max = max.min(st.size.saturating_sub(off));
        if max == 0 {
            return Ok((Piece::Zeros, 0));
        }
        let idx = off / PAGE;
        let in_page = off % PAGE;
        if let Some(p) = st.pages.get(&idx) {
            return Ok((Piece::Frame(p.frame + in_page), max.min(PAGE - in_page)));
        }
        // Up to the next cached page, the piece comes from the source.
        let next_cached = st.pages.range(idx..).next().map_or(u64::MAX, |(&i, _)| i.saturating_mul(PAGE));
        let span = max.min(next_cached - off);
        match &st.source {
            Source::Zero => Ok((Piece::Zeros, span)),
            Source::Bytes { bytes, start, len } => {
                if off >= *len {
                    return Ok((Piece::Zeros, span));
                }
                let n = span.min(len - off);
                Ok((Piece::Bytes(bytes.clone(), start + off as usize), n))
            }
            Source::Store(_) => {
                let pages = span.div_ceil(PAGE).clamp(1, READ_AHEAD);
                let pages = pages.min(next_cached.saturating_sub(idx * PAGE) / PAGE).max(1);
                if self.read_ahead(&mut st, idx, pages, frames, phys)? > 0 {
                    if let Some(p) = st.pages.get(&idx) {
                        return Ok((Piece::Frame(p.frame + in_page), max.min(PAGE - in_page)));
                    }
                }
                // No memory to cache it: read around the cache.
                let Source::Store(s) = &st.source else { return Err(Errno::EIO) };
                let n = span.min(PAGE - in_page) as usize;
                let mut buf = vec![0u8; n];
                read_full(&**s, off, &mut buf)?;
                Ok((Piece::Owned(buf), n as u64))
            }
        }
    }

    /// Make page `off / PAGE` ready for a write of `n` bytes at `off` (inside
    /// one page) through the cache: created if missing (filled from the
    /// source unless the write covers it whole), marked dirty. Returns its
    /// frame and whether the frame's contents are undefined (a whole-page
    /// write into a fresh frame: if the copy fails the caller zeroes it).
    /// The size is not changed (see [`PageCache::wrote`]). `ENOSPC` past the
    /// file system's size, `ENOMEM` without memory.
    pub fn page_for_write(&self, off: u64, n: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(u64, bool), Errno> {
        let mut st = self.st.borrow_mut();
        let idx = off / PAGE;
        if let Some(p) = st.pages.get(&idx) {
            let f = p.frame;
            self.set_dirty(&mut st, idx, true)?;
            return Ok((f, false));
        }
        self.charge(&st)?;
        // Memory files (tmpfs, shared memory) all together stop short of
        // the guest's last frames: a full tmpfs gives its writer ENOSPC and
        // leaves the guest room to run `rm`.
        if st.is_shmem() && frames.free_frames() <= shmem_reserve(frames.total_frames()) {
            self.set.shrink(frames, phys, 32);
            if frames.free_frames() <= shmem_reserve(frames.total_frames()) {
                self.uncharge(&st);
                return Err(Errno::ENOSPC);
            }
        }
        let whole = off.is_multiple_of(PAGE) && n == PAGE;
        let fill = !whole && st.in_source(idx);
        let zero = !whole && !fill;
        let Some(f) = self.alloc_frame(frames, phys, zero) else {
            self.uncharge(&st);
            return Err(Errno::ENOMEM);
        };
        if fill {
            if let Err(e) = Self::fill_from_source(&st, idx, f, phys) {
                self.uncharge(&st);
                frames.put(f);
                return Err(e);
            }
        }
        self.insert_page(&mut st, idx, f, true);
        Ok((f, whole))
    }

    /// A write through the cache reached `end`: the file grows to it.
    pub fn wrote(&self, end: u64) {
        let mut st = self.st.borrow_mut();
        if end > st.size {
            st.size = end;
        }
    }

    /// A write to a cache with a store: written to the store first (so a
    /// failed write changes nothing), then into the cached pages it covers.
    pub fn write_through(&self, off: u64, data: &[u8], phys: &impl PhysMem) -> Result<(), Errno> {
        let store = match &self.st.borrow().source {
            Source::Store(s) => s.clone(),
            _ => return Err(Errno::EINVAL),
        };
        store.write(off, data)?;
        let mut st = self.st.borrow_mut();
        let end = off + data.len() as u64;
        let first = off / PAGE;
        let last = end.div_ceil(PAGE);
        for (&idx, p) in st.pages.range(first..last) {
            let ps = idx * PAGE;
            let lo = ps.max(off);
            let hi = (ps + PAGE).min(end);
            phys.write(p.frame + (lo - ps), &data[(lo - off) as usize..(hi - off) as usize]);
        }
        if end > st.size {
            st.size = end;
        }
        Ok(())
    }

    /// Write `data` (a kernel buffer) at `off`: through to the store for a
    /// cache with one, else page by page into the cache. Returns the bytes
    /// written; an error (`ENOSPC`, `ENOMEM`, the store's) only if none were.
    pub fn write_bytes(&self, off: u64, data: &[u8], frames: &mut Frames, phys: &impl PhysMem) -> Result<usize, Errno> {
        if self.has_store() {
            self.write_through(off, data, phys)?;
            return Ok(data.len());
        }
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let n = (data.len() - done).min((PAGE - pos % PAGE) as usize);
            match self.page_for_write(pos, n as u64, frames, phys) {
                Ok((frame, _)) => phys.write(frame + pos % PAGE, &data[done..done + n]),
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
            done += n;
            self.wrote(pos + n as u64);
        }
        Ok(done)
    }

    /// The frame of page `idx` for a mapping (page fault). A missing page is
    /// created from the source; a hole only when `create` (the faulting
    /// page itself, not a fault-around neighbour: `Ok(None)` then). `Bus`
    /// when the page is wholly past the end of the file or the file system
    /// is full (as Linux's shmem fault), `OutOfMemory` without frames.
    pub fn fault_page(&self, idx: u64, create: bool, frames: &mut Frames, phys: &impl PhysMem) -> Result<Option<u64>, FaultError> {
        let mut st = self.st.borrow_mut();
        if idx.checked_mul(PAGE).is_none_or(|o| o >= st.size) {
            return Err(FaultError::Bus);
        }
        if let Some(p) = st.pages.get(&idx) {
            return Ok(Some(p.frame));
        }
        let from_source = st.in_source(idx);
        if !create && !from_source {
            return Ok(None);
        }
        let Some(f) = self.alloc_frame(frames, phys, !from_source) else {
            return if create { Err(FaultError::OutOfMemory) } else { Ok(None) };
        };
        if from_source && Self::fill_from_source(&st, idx, f, phys).is_err() {
            frames.put(f);
            return if create { Err(FaultError::Bus) } else { Ok(None) };
        }
        self.insert_page(&mut st, idx, f, false);
        Ok(Some(f))
    }

    /// A page is about to be written through a shared mapping: `ENOSPC`
    /// (the fault is `SIGBUS`, as Linux's) when its file system is full.
    pub fn mark_dirty(&self, idx: u64) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        self.set_dirty(&mut st, idx, true)
    }

    /// Set the size to `len` (`truncate`, `ftruncate`, `O_TRUNC`): the store
    /// first, then pages wholly past the end are dropped and the tail of a
    /// partial last page is zeroed (so growing again shows zeros). Mappings
    /// of the dropped range must have been removed by the caller (see
    /// [`crate::mm::MemoryMap::invalidate_cache`]).
    pub fn truncate(&self, len: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        if len > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let store = match &self.st.borrow().source {
            Source::Store(s) => Some(s.clone()),
            _ => None,
        };
        if let Some(s) = store {
            s.truncate(len)?;
        }
        let mut st = self.st.borrow_mut();
        if len < st.size {
            let first_gone = len.div_ceil(PAGE);
            let gone: Vec<u64> = st.pages.range(first_gone..).map(|(&i, _)| i).collect();
            for idx in gone {
                self.remove_page(&mut st, idx, frames);
            }
            if !len.is_multiple_of(PAGE) {
                if let Some(p) = st.pages.get(&(len / PAGE)) {
                    phys.fill(p.frame + len % PAGE, PAGE - len % PAGE, 0);
                }
            }
            if let Source::Bytes { len: blen, .. } = &mut st.source {
                *blen = (*blen).min(len);
            }
        }
        st.size = len;
        Ok(())
    }

    /// Deallocate `[start, end)` (`fallocate(PUNCH_HOLE)`, `MADV_REMOVE`):
    /// whole pages leave the cache (they read as zeros again), partial ones
    /// are zeroed. Only for memory-only caches (`EOPNOTSUPP` otherwise).
    /// Mappings of the range must have been removed by the caller.
    pub fn punch_hole(&self, start: u64, end: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        if !st.is_shmem() {
            return Err(Errno::EOPNOTSUPP);
        }
        let end = end.min(st.size);
        if start >= end {
            return Ok(());
        }
        // Archive bytes cannot be punched: copy the pages that keep data first.
        let (first_whole, last_whole) = (start.div_ceil(PAGE), end / PAGE);
        let mut p = start / PAGE;
        while p * PAGE < end {
            let whole = p >= first_whole && p < last_whole;
            if !st.pages.contains_key(&p) && st.in_source(p) {
                if whole {
                    // Turned into a hole below by cutting the source.
                } else {
                    drop(st);
                    self.page_for_write(p * PAGE, 1, frames, phys)?;
                    st = self.st.borrow_mut();
                }
            }
            if let Some(pg) = st.pages.get(&p).copied() {
                if whole {
                    self.remove_page(&mut st, p, frames);
                } else {
                    let ps = p * PAGE;
                    let lo = ps.max(start);
                    let hi = (ps + PAGE).min(end);
                    phys.fill(pg.frame + (lo - ps), hi - lo, 0);
                    self.set_dirty(&mut st, p, true)?;
                }
            }
            p += 1;
        }
        // Whole pages of read-only source bytes in the range: the file keeps
        // its source only below the hole (pages above are copied first).
        if let Source::Bytes { len, .. } = st.source.clone() {
            if first_whole * PAGE < len && first_whole < last_whole {
                let above: Vec<u64> = (last_whole..len.div_ceil(PAGE)).filter(|i| !st.pages.contains_key(i)).collect();
                drop(st);
                for i in above {
                    self.page_for_write(i * PAGE, 1, frames, phys)?;
                }
                st = self.st.borrow_mut();
                if let Source::Bytes { len, .. } = &mut st.source {
                    *len = (*len).min(first_whole * PAGE);
                }
            }
        }
        Ok(())
    }

    /// Allocate the pages of `[start, end)` (`fallocate`): holes become
    /// zeroed pages charged to the file system, so later writes there
    /// cannot fail for lack of space. Memory-only caches only
    /// (`EOPNOTSUPP`); on `ENOSPC`/`ENOMEM` what this call added is given
    /// back. The size is not changed.
    pub fn allocate(&self, start: u64, end: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        if !self.st.borrow().is_shmem() {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut added: Vec<u64> = Vec::new();
        let mut r = Ok(());
        for idx in start / PAGE..end.div_ceil(PAGE) {
            let present = self.st.borrow().pages.contains_key(&idx);
            if present {
                // Archive copies and holes read through a mapping become the file's own.
                if let Err(e) = self.mark_dirty(idx) {
                    r = Err(e);
                    break;
                }
                continue;
            }
            match self.page_for_write(idx * PAGE, 1, frames, phys) {
                Ok(_) => added.push(idx),
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        if r.is_err() {
            let mut st = self.st.borrow_mut();
            for idx in added {
                self.remove_page(&mut st, idx, frames);
            }
        }
        r
    }

    /// Write the dirty pages of `[start, end)` back to the store (`msync`,
    /// `fsync`, unmapping, memory pressure, shutdown). A page stays dirty if
    /// a writable shared mapping may still change it. No-op without a store.
    pub fn writeback(&self, start: u64, end: u64, frames: &Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        let Source::Store(s) = &st.source else { return Ok(()) };
        if st.ndirty == 0 {
            return Ok(());
        }
        let s = s.clone();
        let (first, last) = (start / PAGE, end.div_ceil(PAGE).min(st.last_page_end()));
        let dirty: Vec<(u64, u64)> = st.pages.range(first..last).filter(|(_, p)| p.dirty).map(|(&i, p)| (i, p.frame)).collect();
        let mut buf = vec![0u8; PAGE as usize];
        let mut result = Ok(());
        for (idx, frame) in dirty {
            let off = idx * PAGE;
            let n = st.size.saturating_sub(off).min(PAGE) as usize;
            phys.read(frame, &mut buf[..n]);
            if let Err(e) = s.write(off, &buf[..n]) {
                result = Err(e);
                continue;
            }
            if self.writers.get() == 0 || frames.refcount(frame) <= 1 {
                self.set_dirty(&mut st, idx, false)?;
            }
        }
        result
    }

    /// Write back the dirty pages no mapping holds (shrinking).
    fn writeback_unmapped(&self, frames: &Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let Ok(st) = self.st.try_borrow() else { return Ok(()) };
        if !matches!(st.source, Source::Store(_)) || st.ndirty == 0 {
            return Ok(());
        }
        let pages: Vec<u64> = st.pages.iter().filter(|(_, p)| p.dirty && frames.refcount(p.frame) == 1).map(|(&i, _)| i).collect();
        drop(st);
        for idx in pages {
            self.writeback(idx * PAGE, idx * PAGE + PAGE, frames, phys)?;
        }
        Ok(())
    }

    /// Evict up to `want` clean pages that no mapping holds.
    fn evict_clean(&self, frames: &mut Frames, want: u64) -> u64 {
        let Ok(mut st) = self.st.try_borrow_mut() else { return 0 };
        let victims: Vec<u64> = st
            .pages
            .iter()
            .filter(|(_, p)| !p.dirty && frames.refcount(p.frame) == 1)
            .map(|(&i, _)| i)
            .take(usize::try_from(want).unwrap_or(usize::MAX))
            .collect();
        let n = victims.len() as u64;
        for idx in victims {
            self.remove_page(&mut st, idx, frames);
        }
        n
    }

    /// Forget every page that no mapping holds and that is not dirty (a
    /// host file changed under the cache), and take the new size.
    pub fn revalidate(&self, size: u64, frames: &mut Frames) {
        self.evict_clean(frames, u64::MAX);
        self.st.borrow_mut().size = size;
    }

    /// [`PageCache::revalidate`] where no allocator is at hand (a lookup saw
    /// the host file change): only when nothing maps the cache and no page
    /// is dirty, in which case every page is clean and unmapped and goes to
    /// the orphan list. Returns whether it was done (else the caller
    /// revalidates at the next open).
    pub fn revalidate_unmapped(&self, size: u64) -> bool {
        if self.maps.get() != 0 {
            return false;
        }
        let Ok(mut st) = self.st.try_borrow_mut() else { return false };
        if st.ndirty != 0 {
            return false;
        }
        let shmem = st.is_shmem();
        let pages = core::mem::take(&mut st.pages);
        let mut orphans = self.set.0.orphans.borrow_mut();
        for p in pages.values() {
            self.set.add_counts(shmem, false, !shmem, -1);
            orphans.push(p.frame);
        }
        st.size = size;
        true
    }

    /// Dirty pages (not yet written back, or the only copy of the data).
    pub fn dirty_pages(&self) -> u64 {
        self.st.borrow().ndirty
    }

    /// Turn a cache with a store into a memory-only one charged to `quota`
    /// (an overlay copies a lower host file up): with `keep_data`, every
    /// page of the file that is not cached is read from the store first
    /// (pages of zeros stay holes), and all pages become the data's only
    /// copy (dirty); without, the file becomes empty. The store is then
    /// forgotten. On failure (`ENOSPC` past the quota, `ENOMEM`, a store
    /// error) the cache is as it was. No-op without a store.
    pub fn detach_store(&self, quota: Option<Rc<Quota>>, keep_data: bool, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        // The borrow is held throughout, so the shrinker (run when a frame
        // allocation comes up short) leaves this cache alone.
        let mut st = self.st.borrow_mut();
        let Source::Store(store) = &st.source else { return Ok(()) };
        let store = store.clone();
        if !keep_data {
            // (The caller removed the mappings of the pages first.)
            let keys: Vec<u64> = st.pages.keys().copied().collect();
            for idx in keys {
                self.remove_page(&mut st, idx, frames);
            }
            st.size = 0;
        }
        let old_quota = core::mem::replace(&mut st.quota, quota);
        let old_size = st.size;
        // Dirty pages already there (none for a read-only lower file) are
        // charged to the new quota first.
        let mut charged = 0u64;
        let mut added: Vec<u64> = Vec::new();
        let mut dirtied: Vec<u64> = Vec::new();
        let mut buf = vec![0u8; (READ_AHEAD * PAGE) as usize];
        let mut result = Ok(());
        for _ in 0..st.ndirty {
            if let Err(e) = self.charge(&st) {
                result = Err(e);
                break;
            }
            charged += 1;
        }
        let last = st.last_page_end();
        let mut idx = 0;
        while result.is_ok() && idx < last {
            match st.pages.get(&idx).map(|p| p.dirty) {
                Some(true) => idx += 1,
                Some(false) => {
                    match self.set_dirty(&mut st, idx, true) {
                        Ok(()) => dirtied.push(idx),
                        Err(e) => result = Err(e),
                    }
                    idx += 1;
                }
                None => {
                    // The run of missing pages up to the next cached one, in
                    // reads of up to READ_AHEAD pages.
                    let next = st.pages.range(idx..).next().map_or(last, |(&i, _)| i).min(last);
                    let n = (next - idx).min(READ_AHEAD);
                    let chunk = &mut buf[..(n * PAGE) as usize];
                    chunk.fill(0);
                    let want = st.size.saturating_sub(idx * PAGE).min(n * PAGE) as usize;
                    if let Err(e) = read_full(&*store, idx * PAGE, &mut chunk[..want]) {
                        result = Err(e);
                        break;
                    }
                    for (i, page) in chunk.chunks(PAGE as usize).enumerate() {
                        // Pages of zeros stay holes.
                        if page.iter().all(|&b| b == 0) {
                            continue;
                        }
                        if let Err(e) = self.charge(&st) {
                            result = Err(e);
                            break;
                        }
                        let Some(f) = self.alloc_frame(frames, phys, false) else {
                            self.uncharge(&st);
                            result = Err(Errno::ENOMEM);
                            break;
                        };
                        phys.write(f, page);
                        self.insert_page(&mut st, idx + i as u64, f, true);
                        added.push(idx + i as u64);
                    }
                    idx += n;
                }
            }
        }
        if let Err(e) = result {
            for idx in added {
                self.remove_page(&mut st, idx, frames);
            }
            for idx in dirtied {
                let _ = self.set_dirty(&mut st, idx, false);
            }
            for _ in 0..charged {
                self.uncharge(&st);
            }
            st.quota = old_quota;
            st.size = old_size;
            return Err(e);
        }
        // The pages are now a memory file's (dirty ones its data): move the counts.
        for p in st.pages.values() {
            self.set.add_counts(false, p.dirty, true, -1);
            self.set.add_counts(true, p.dirty, false, 1);
        }
        st.source = Source::Zero;
        Ok(())
    }

    /// Replace the contents by `bytes[start..start + len]` (generated proc
    /// text at open, a hard link's data in an archive). Cached pages (none,
    /// unless the file was written) are given up.
    pub fn set_bytes(&self, bytes: SharedBytes, start: usize, len: usize) {
        let mut st = self.st.borrow_mut();
        let shmem = st.is_shmem();
        let pages = core::mem::take(&mut st.pages);
        for p in pages.values() {
            self.set.add_counts(shmem, p.dirty, !shmem, -1);
            if p.dirty {
                self.uncharge(&st);
            }
            self.set.0.orphans.borrow_mut().push(p.frame);
        }
        st.ndirty = 0;
        let len = len.min((*bytes).as_ref().len().saturating_sub(start)) as u64;
        st.size = len;
        st.source = Source::Bytes { bytes, start, len };
    }

    /// Whether the whole file is still its read-only source bytes (never
    /// written or mapped since unpacking).
    pub fn is_shared_bytes(&self) -> bool {
        let st = self.st.borrow();
        st.pages.is_empty() && matches!(st.source, Source::Bytes { len, .. } if len == st.size)
    }

    /// The read-only bytes behind the whole file, if it is nothing else
    /// (zero-copy access for exec).
    pub fn shared_bytes(&self) -> Option<(SharedBytes, usize, usize)> {
        let st = self.st.borrow();
        match &st.source {
            Source::Bytes { bytes, start, len } if st.pages.is_empty() && *len == st.size => {
                Some((bytes.clone(), *start, usize::try_from(*len).ok()?))
            }
            _ => None,
        }
    }

    /// Read `buf.len()` bytes at `off` (short at end of file).
    pub fn read_to(&self, off: u64, buf: &mut [u8], frames: &mut Frames, phys: &impl PhysMem) -> Result<usize, Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let (piece, n) = self.piece(off + done as u64, (buf.len() - done) as u64, frames, phys)?;
            if n == 0 {
                break;
            }
            let n = n as usize;
            let dst = &mut buf[done..done + n];
            match piece {
                Piece::Frame(p) => phys.read(p, dst),
                Piece::Zeros => dst.fill(0),
                Piece::Bytes(b, at) => match (*b).as_ref().get(at..at + n) {
                    Some(s) => dst.copy_from_slice(s),
                    None => return Err(Errno::EIO),
                },
                Piece::Owned(v) => dst.copy_from_slice(&v[..n]),
            }
            done += n;
        }
        Ok(done)
    }

    /// Read without frames: only pages not in the cache can be served from
    /// the source bytes (`read_at` of [`super::MappedFile`] for callers with
    /// no physical memory at hand). Stops at the first cached page or store.
    pub fn read_source(&self, off: u64, buf: &mut [u8]) -> usize {
        let st = self.st.borrow();
        let end = st.size.min(off.saturating_add(buf.len() as u64));
        let mut pos = off;
        while pos < end {
            let idx = pos / PAGE;
            if st.pages.contains_key(&idx) {
                break;
            }
            let n = (end - pos).min(PAGE - pos % PAGE);
            let dst = &mut buf[(pos - off) as usize..(pos - off + n) as usize];
            match &st.source {
                Source::Zero => dst.fill(0),
                Source::Bytes { bytes, start, len } => {
                    let have = len.saturating_sub(pos).min(n) as usize;
                    let from = start + pos as usize;
                    match (**bytes).as_ref().get(from..from + have) {
                        Some(s) => dst[..have].copy_from_slice(s),
                        None => break,
                    }
                    dst[have..].fill(0);
                }
                Source::Store(_) => break,
            }
            pos += n;
        }
        (pos.max(off) - off) as usize
    }

    /// `SEEK_DATA` (`hole` false) or `SEEK_HOLE` (`hole` true) from `off`
    /// (below the size): the offset found, or `None` (`ENXIO`) when no data
    /// follows. Data is what is cached or in the source; the end of the
    /// file counts as a hole.
    pub fn seek(&self, off: u64, hole: bool) -> Option<u64> {
        let st = self.st.borrow();
        if off >= st.size {
            return None;
        }
        let src_end = match &st.source {
            Source::Zero => 0,
            Source::Bytes { len, .. } => len.div_ceil(PAGE),
            Source::Store(_) => st.last_page_end(),
        };
        let is_data = |i: u64| i < src_end || st.pages.contains_key(&i);
        let mut idx = off / PAGE;
        let last = st.last_page_end();
        if hole {
            while idx < last && is_data(idx) {
                // Skip runs quickly: inside the source, jump to its end.
                if idx < src_end {
                    idx = src_end;
                    continue;
                }
                idx += 1;
            }
            Some((idx * PAGE).max(off).min(st.size))
        } else {
            if is_data(idx) {
                return Some(off);
            }
            let next = st.pages.range(idx..).next().map(|(&i, _)| i);
            next.filter(|&i| i < last).map(|i| i * PAGE)
        }
    }

    /// Bring `[start, end)` into the cache from its source (`MADV_WILLNEED`):
    /// best effort, while memory is plentiful.
    pub fn prefetch(&self, start: u64, end: u64, frames: &mut Frames, phys: &impl PhysMem) {
        let mut idx = start / PAGE;
        let last = end.div_ceil(PAGE);
        while idx < last && frames.free_frames() > frames.total_frames() / 16 {
            let present = self.frame_at(idx).is_some();
            let from_source = self.st.borrow().in_source(idx);
            if !present && from_source && self.fault_page(idx, false, frames, phys).is_err() {
                return;
            }
            idx += 1;
        }
    }

    /// Every cached page: (index, frame, dirty), for checks and `/proc`.
    pub fn pages(&self) -> Vec<(u64, u64, bool)> {
        self.st.borrow().pages.iter().map(|(&i, p)| (i, p.frame, p.dirty)).collect()
    }

    /// The indexes of cached pages in `[first, last)`.
    pub fn indexes_in(&self, first: u64, last: u64) -> BTreeSet<u64> {
        self.st.borrow().pages.range(first..last).map(|(&i, _)| i).collect()
    }
}

/// Fill `buf` from `store` at `off`; what lies past the store's end stays
/// as it is (zeros). Returns the bytes read.
fn read_full(store: &dyn Store, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut got = 0;
    while got < buf.len() {
        let n = store.read(off + got as u64, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// A VMA's reference to the cache it maps: counts mappings and writable
/// shared mappings (for `F_SEAL_WRITE`, and so that unmapping the last
/// writable mapping of a store-backed file schedules its writeback).
pub(crate) struct MapRef {
    pub(crate) cache: Rc<PageCache>,
    writable: bool,
}

impl MapRef {
    pub(crate) fn new(cache: Rc<PageCache>, writable: bool) -> MapRef {
        cache.maps.set(cache.maps.get() + 1);
        if writable {
            cache.writers.set(cache.writers.get() + 1);
        }
        MapRef { cache, writable }
    }

    /// The mapping became (or stopped being) shared and writable.
    pub(crate) fn set_writable(&mut self, w: bool) {
        if w == self.writable {
            return;
        }
        if w {
            self.cache.writers.set(self.cache.writers.get() + 1);
        } else {
            self.drop_writer();
        }
        self.writable = w;
    }

    fn drop_writer(&self) {
        let c = &self.cache;
        c.writers.set(c.writers.get().saturating_sub(1));
        let pending = c.st.try_borrow().map_or(true, |st| st.ndirty > 0 && !st.is_shmem());
        if pending {
            if let Ok(mut w) = c.set.0.writeback.try_borrow_mut() {
                w.push(Rc::downgrade(c));
            }
        }
    }
}

impl Clone for MapRef {
    fn clone(&self) -> MapRef {
        MapRef::new(self.cache.clone(), self.writable)
    }
}

impl Drop for MapRef {
    fn drop(&mut self) {
        self.cache.maps.set(self.cache.maps.get().saturating_sub(1));
        if self.writable {
            self.drop_writer();
        }
    }
}
