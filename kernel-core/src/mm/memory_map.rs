//! Per-process memory map: VMAs, software page table, faults, mmap family.
//!
//! # Model
//! - VMAs live in a `BTreeMap` keyed by start address; they never overlap.
//! - The software page table maps a page address to a [`Pte`]: the frame and
//!   the protection the host was told to use (`prot`), and whether the page
//!   is copy-on-write (`cow`: the frame may be shared with another process,
//!   so the host mapping is read-only even if the VMA is writable).
//!   Invariant: `pte.prot == host_prot(vma.prot, pte.cow)`.
//! - A page-table entry means "mapped in the host" (queued or applied), and
//!   nothing else is mapped in the host: removing a VMA without entries
//!   costs no host operation. Every
//!   entry holds one frame reference; a page cache holds one more per page
//!   it owns.
//!
//! # Stack
//! exec reserves an 8 MiB `[stack]` VMA up front (`RLIMIT_STACK`'s default;
//! demand paging makes the reservation free). A `GROWSDOWN` VMA additionally
//! grows when a fault lands at most [`STACK_GROW_GAP`] below it, as long as one
//! page of gap to the mapping below remains. There is no `RLIMIT_STACK` check.
//!
//! # File and shared mappings
//! A file mapping maps the frames of the file's [`PageCache`], and so does
//! `MAP_SHARED|MAP_ANONYMOUS` (an anonymous cache, like Linux's shmem
//! object): a shared mapping maps them as they are, and every process
//! mapping the file (or sharing the object across `fork`) and every `read`
//! and `write` of the file see the same bytes. A private mapping maps them
//! copy-on-write (`cow` entries): it sees the file until it writes a page
//! (one exception: in a *writable* private mapping, the pages fault-around
//! brings in next to a faulting page are private copies at once, since in
//! practice such a mapping is a program's data segment, written soon, and a
//! write fault costs a host round trip; POSIX leaves unspecified whether a
//! private mapping sees later changes to the file).
//! Entries of shared mappings that were never written through are
//! write-protected too (`cow`), and their first write fault marks the cache
//! page dirty without copying ("write notify"), so that only pages written
//! through a mapping are written back to a host file.
//!
//! Removing pages from a cache (truncation, hole punching) first removes the
//! entries that map them, in every map ([`MemoryMap::invalidate_cache`]):
//! an access past the new end of the file then gives `SIGBUS`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use hal::{Access, AddressSpace, PhysMem, Prot};

use super::frames::Frames;
use super::page_cache::{CacheSet, MapRef, PageCache, Source};
use super::vma::{Backing, FaultError, MapFlags, Vma, VmaBacking, VmaInfo, VmaKind};
use super::{page_ceil, page_floor, PAGE};
use crate::Errno;

/// How far below a `GROWSDOWN` VMA (the stack) a fault may land and still
/// grow it.
pub const STACK_GROW_GAP: u64 = 64 * 1024;

/// Size of the stack VMA exec reserves.
pub const STACK_RESERVE: u64 = 8 * 1024 * 1024;

/// Lowest address a mapping may start at (Linux's default `mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;

/// Gap between the top of the stack and the highest `mmap` placement.
const MMAP_GAP: u64 = 128 * 1024 * 1024;

/// The aligned window around a fault whose missing pages are filled at the
/// same time (Linux's file fault-around is 64 KiB too): fewer host round
/// trips for program text and for sequential touches of fresh memory. It
/// equals the backends' `MAP_POPULATE` limit, so the host fills a whole
/// window in the one `mmap` that maps it.
const FAULT_AROUND: u64 = 64 * 1024;
// The window's present pages are tracked in a `u64` bit set.
const _: () = assert!(FAULT_AROUND / PAGE <= 64);

/// A page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pte {
    pub(crate) frame: u64,
    /// Protection the host mapping has.
    pub(crate) prot: Prot,
    /// The frame may be shared: copy before writing.
    pub(crate) cow: bool,
}

/// The host protection for a page of a VMA with `prot`: x86 cannot map
/// write-only or execute-only, and copy-on-write pages are read-only.
pub(crate) fn host_prot(prot: Prot, cow: bool) -> Prot {
    let mut p = prot;
    if p.intersects(Prot::WRITE | Prot::EXEC) {
        p |= Prot::READ;
    }
    if cow {
        p.remove(Prot::WRITE);
    }
    p
}

/// Whether a VMA with `prot` allows `access` (x86: anything mapped is readable).
fn allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => !prot.is_empty(),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Execute => prot.contains(Prot::EXEC),
    }
}

/// Accumulates host map operations, merging runs that are contiguous both in
/// user addresses and in frames with one protection.
#[derive(Default)]
pub(super) struct MapRun {
    run: Option<(u64, u64, u64, Prot)>, // vaddr, len, paddr, prot
}

impl MapRun {
    pub(super) fn push<S: AddressSpace>(&mut self, host: &mut S, vaddr: u64, paddr: u64, prot: Prot) {
        if let Some((v, l, p, pr)) = &mut self.run {
            if *v + *l == vaddr && *p + *l == paddr && *pr == prot {
                *l += PAGE;
                return;
            }
        }
        self.flush(host);
        self.run = Some((vaddr, PAGE, paddr, prot));
    }
    pub(super) fn flush<S: AddressSpace>(&mut self, host: &mut S) {
        if let Some((v, l, p, pr)) = self.run.take() {
            host.map(v, l, p, pr);
        }
    }
}

/// Accumulates host protect operations over contiguous pages.
#[derive(Default)]
struct ProtectRun {
    run: Option<(u64, u64, Prot)>,
}

impl ProtectRun {
    fn push<S: AddressSpace>(&mut self, host: &mut S, vaddr: u64, prot: Prot) {
        if let Some((v, l, pr)) = &mut self.run {
            if *v + *l == vaddr && *pr == prot {
                *l += PAGE;
                return;
            }
        }
        self.flush(host);
        self.run = Some((vaddr, PAGE, prot));
    }
    fn flush<S: AddressSpace>(&mut self, host: &mut S) {
        if let Some((v, l, pr)) = self.run.take() {
            host.protect(v, l, pr);
        }
    }
}

/// One guest address space: VMAs, the software page table and the brk, plus
/// the hal space that mirrors them.
///
/// Call [`MemoryMap::clear`] before dropping a map: it holds frame references.
pub struct MemoryMap<S: AddressSpace> {
    pub(super) host: S,
    pub(crate) vmas: BTreeMap<u64, Vma>,
    pub(crate) pages: BTreeMap<u64, Pte>,
    brk_base: u64,
    brk: u64,
    user_end: u64,
    /// Where the caches of `MAP_SHARED|MAP_ANONYMOUS` objects are registered.
    shm: CacheSet,
}

impl<S: AddressSpace> MemoryMap<S> {
    /// An empty memory map over a fresh hal address space, with a cache set
    /// of its own for shared anonymous memory (tests; the kernel uses
    /// [`MemoryMap::with_caches`]).
    pub fn new(host: S) -> Self {
        Self::with_caches(host, CacheSet::new())
    }

    /// An empty memory map whose shared anonymous memory is registered in
    /// `shm` (the kernel's set: `/proc/meminfo`, shrinking, checks).
    pub fn with_caches(host: S, shm: CacheSet) -> Self {
        let user_end = page_floor(host.user_end());
        MemoryMap { host, vmas: BTreeMap::new(), pages: BTreeMap::new(), brk_base: 0, brk: 0, user_end, shm }
    }

    /// The hal space, to ask about.
    pub fn host_ref(&self) -> &S {
        &self.host
    }

    /// The hal space, for `Hal::run`.
    pub fn host(&mut self) -> &mut S {
        &mut self.host
    }

    /// The first address mappings may not reach (page-aligned).
    pub fn user_end(&self) -> u64 {
        self.user_end
    }

    /// The top of the initial stack exec builds.
    pub fn stack_top(&self) -> u64 {
        self.user_end
    }

    /// The highest address top-down `mmap` placement starts from.
    fn mmap_base(&self) -> u64 {
        self.user_end.saturating_sub(MMAP_GAP).max(MMAP_MIN_ADDR)
    }

    /// The current break and its base.
    pub fn brk_range(&self) -> (u64, u64) {
        (self.brk_base, self.brk)
    }

    /// Number of present (mapped) pages.
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    pub(crate) fn find_vma(&self, addr: u64) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| addr < v.end)
    }

    /// Whether any VMA intersects `[start, end)`.
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.vmas.range(..end).next_back().is_some_and(|(_, v)| v.end > start)
    }

    // ---------------------------------------------------------------- fork

    /// Duplicate for `fork`: private pages become copy-on-write in both maps
    /// (one batch of merged `protect`s queued on this space, one batch of
    /// merged `map`s on the child's); shared anonymous pages stay shared.
    pub fn fork(&mut self, child_host: S, frames: &mut Frames) -> Result<MemoryMap<S>, Errno> {
        let mut child = MemoryMap::with_caches(child_host, self.shm.clone());
        child.vmas = self.vmas.clone();
        child.brk_base = self.brk_base;
        child.brk = self.brk;
        let mut protect = ProtectRun::default();
        let mut map = MapRun::default();
        // Built in address order and bulk-loaded: cheaper than inserting
        // one entry at a time.
        let mut child_pages = Vec::with_capacity(self.pages.len());
        let mut vmas = self.vmas.values().peekable();
        for (&va, pte) in self.pages.iter_mut() {
            while vmas.peek().is_some_and(|v| v.end <= va) {
                vmas.next();
            }
            let Some(vma) = vmas.peek().filter(|v| v.start <= va) else {
                // Not inside a VMA: an invariant violation; leave it out of the child.
                continue;
            };
            frames.get(pte.frame);
            // Shared pages stay as they are in both maps (a writable entry
            // of a shared mapping is already marked dirty in its cache).
            if !(vma.shared && matches!(vma.backing, VmaBacking::Cache { .. })) {
                pte.cow = true;
                let prot = host_prot(vma.prot, true);
                if pte.prot != prot {
                    pte.prot = prot;
                    protect.push(&mut self.host, va, prot);
                }
            }
            child_pages.push((va, *pte));
            map.push(&mut child.host, va, pte.frame, pte.prot);
        }
        protect.flush(&mut self.host);
        map.flush(&mut child.host);
        child.pages = child_pages.into_iter().collect();
        Ok(child)
    }

    // ---------------------------------------------------------------- faults

    /// Resolve a page fault the host reported at `addr`.
    ///
    /// Outside any VMA, or an access the VMA forbids: `Segv`. A file page
    /// wholly beyond the end of the file: `Bus`. No free frame: `OutOfMemory`.
    /// A fault on a page that is already mapped with the needed protection
    /// (the host lost it, or a stale fault) maps it again.
    pub fn handle_fault(
        &mut self,
        addr: u64,
        access: Access,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<(), FaultError> {
        let (pte, changed) = self.fault_page(addr, access, false, true, frames, phys)?;
        if !changed {
            self.host.map(page_floor(addr), PAGE, pte.frame, pte.prot);
        }
        Ok(())
    }

    /// Make the page at `addr` present and usable for `access`. `force`
    /// skips the VMA protection check (exec writing into read-only segments).
    /// Returns the entry, and whether anything was changed (a host op queued).
    pub(crate) fn fault_page(
        &mut self,
        addr: u64,
        access: Access,
        force: bool,
        around: bool,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<(Pte, bool), FaultError> {
        if addr >= self.user_end {
            return Err(FaultError::Segv { maperr: true });
        }
        let page = page_floor(addr);
        let vma = match self.find_vma(page) {
            Some(v) => v.clone(),
            None => self.grow_stack(page)?,
        };
        if !force && !allows(vma.prot, access) {
            return Err(FaultError::Segv { maperr: false });
        }
        if let Some(pte) = self.pages.get_mut(&page) {
            if access != Access::Write || !pte.cow {
                return Ok((*pte, false));
            }
            if let (true, VmaBacking::Cache { map, offset, .. }) = (vma.shared, &vma.backing) {
                // Write notify: the page of a shared mapping is written
                // through it from now on.
                map.cache.mark_dirty((offset + (page - vma.start)) / PAGE).map_err(|_| FaultError::Bus)?;
                pte.cow = false;
                pte.prot = host_prot(vma.prot, false);
                self.host.protect(page, PAGE, pte.prot);
                return Ok((*pte, true));
            }
            // Copy-on-write.
            if frames.refcount(pte.frame) == 1 {
                pte.cow = false;
                pte.prot = host_prot(vma.prot, false);
                self.host.protect(page, PAGE, pte.prot);
            } else {
                let new = match frames.alloc() {
                    Some(f) => f,
                    None if self.shm.shrink(frames, phys, 64) > 0 => frames.alloc().ok_or(FaultError::OutOfMemory)?,
                    None => return Err(FaultError::OutOfMemory),
                };
                phys.copy(pte.frame, new, PAGE);
                frames.put(pte.frame);
                pte.frame = new;
                pte.cow = false;
                pte.prot = host_prot(vma.prot, false);
                self.host.map(page, PAGE, new, pte.prot);
            }
            let pte = *pte;
            if around {
                self.unshare_around(&vma, page, frames);
            }
            return Ok((pte, true));
        }
        match self.fault_in(&vma, page, around, access == Access::Write, frames, phys) {
            // Clean page-cache pages make room before a fault fails (the
            // shrink keeps pages this map's entries hold).
            Err(FaultError::OutOfMemory) if self.shm.shrink(frames, phys, 64) > 0 => {
                self.fault_in(&vma, page, false, access == Access::Write, frames, phys).map(|pte| (pte, true))
            }
            r => r.map(|pte| (pte, true)),
        }
    }

    /// After a copy-on-write fault at `page`: the copy-on-write pages of its
    /// [`FAULT_AROUND`] window whose frame is no longer shared (the other
    /// process exited or exec'd, as after most forks) become writable now,
    /// in place, in one merged host operation — instead of one fault each.
    /// Pages still shared stay copy-on-write (they are copied on their own
    /// write fault).
    fn unshare_around(&mut self, vma: &Vma, page: u64, frames: &Frames) {
        let wlo = (page & !(FAULT_AROUND - 1)).max(vma.start);
        let whi = (page & !(FAULT_AROUND - 1)).saturating_add(FAULT_AROUND).min(vma.end);
        let prot = host_prot(vma.prot, false);
        let mut run = ProtectRun::default();
        for (&va, pte) in self.pages.range_mut(wlo..whi) {
            if va != page && pte.cow && frames.refcount(pte.frame) == 1 {
                pte.cow = false;
                pte.prot = prot;
                run.push(&mut self.host, va, prot);
            }
        }
        run.flush(&mut self.host);
    }

    /// A frame for the missing page `p` of `vma` and whether to map it
    /// copy-on-write: zeroed (private anonymous); the cache's page (created
    /// from its source, a hole only if `create`), write-protected unless
    /// `write` (a shared mapping's first write marks it dirty, a private
    /// mapping's gets a copy); or a copy of the file page (a file without a
    /// cache). `Ok(None)`: nothing to map (a hole and not `create`). `Bus`:
    /// wholly beyond end of file.
    fn new_frame(
        vma: &Vma,
        p: u64,
        create: bool,
        write: bool,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<Option<(u64, bool)>, FaultError> {
        Ok(Some(match &vma.backing {
            VmaBacking::Anon => (frames.alloc_zeroed(phys).ok_or(FaultError::OutOfMemory)?, false),
            VmaBacking::Cache { map, offset, .. } => {
                let idx = offset.checked_add(p - vma.start).ok_or(FaultError::Bus)? / PAGE;
                let Some(f) = map.cache.fault_page(idx, create, frames, phys)? else { return Ok(None) };
                if !write {
                    frames.get(f);
                    (f, true)
                } else if vma.shared {
                    map.cache.mark_dirty(idx).map_err(|_| FaultError::Bus)?;
                    frames.get(f);
                    (f, false)
                } else {
                    let new = frames.alloc().ok_or(FaultError::OutOfMemory)?;
                    phys.copy(f, new, PAGE);
                    (new, false)
                }
            }
            VmaBacking::File { file, offset } => {
                let off = offset.checked_add(p - vma.start).ok_or(FaultError::Bus)?;
                if off >= file.size() {
                    return Err(FaultError::Bus);
                }
                let f = frames.alloc().ok_or(FaultError::OutOfMemory)?;
                fill_from_file(&**file, off, f, phys);
                (f, false)
            }
        }))
    }

    /// Make the missing page `page` of `vma` present and, with `around`, the
    /// missing pages of the aligned [`FAULT_AROUND`] window around it inside
    /// the VMA (fault-around): sequential touches then take one host fault
    /// per window instead of one per page. Neighbours are best effort — zero
    /// pages for private anonymous memory, file pages up to end of file,
    /// shared anonymous pages the object already has — and only taken when
    /// enough frames are free for all of them plus a reserve of a sixteenth
    /// of memory, so they never cost the faulting page its frame. Every page is private to this map (or the
    /// shared object's), so mapping it with the VMA's protection is exactly
    /// what a later fault would do; copy-on-write pages are never touched
    /// here (they are present). Frames are taken in address order so the
    /// host gets one merged map operation for the window.
    fn fault_in(
        &mut self,
        vma: &Vma,
        page: u64,
        around: bool,
        write: bool,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<Pte, FaultError> {
        let (mut lo, mut hi) = (page, page + PAGE);
        // Present pages of the window, one bit per page from `lo`.
        let mut present = 0u64;
        if around {
            let wlo = (page & !(FAULT_AROUND - 1)).max(vma.start);
            let whi = (page & !(FAULT_AROUND - 1)).saturating_add(FAULT_AROUND).min(vma.end);
            for (&va, _) in self.pages.range(wlo..whi) {
                present |= 1 << ((va - wlo) / PAGE);
            }
            let missing = (whi - wlo) / PAGE - u64::from(present.count_ones());
            // Neighbours only while memory is plentiful: the last sixteenth
            // is kept for pages actually touched (sparse access patterns
            // would otherwise fill memory with untouched zero pages).
            if frames.free_frames() >= missing + frames.total_frames() / 16 {
                (lo, hi) = (wlo, whi);
            } else {
                present = 0;
            }
        }
        let mut run = MapRun::default();
        let mut result = None;
        let mut p = lo;
        while p < hi {
            if p == page {
                let (frame, cow) = match Self::new_frame(vma, p, true, write, frames, phys) {
                    Ok(Some(f)) => f,
                    // (`None` cannot happen with `create`.)
                    r => {
                        run.flush(&mut self.host);
                        return Err(r.err().unwrap_or(FaultError::OutOfMemory));
                    }
                };
                let pte = Pte { frame, prot: host_prot(vma.prot, cow), cow };
                self.pages.insert(p, pte);
                run.push(&mut self.host, p, frame, pte.prot);
                result = Some(pte);
            } else if present & (1 << ((p - lo) / PAGE)) == 0 {
                // Neighbours in a writable private file mapping (a
                // program's data segment) get their private copies now: a
                // write fault each later would cost far more than the copy.
                let copy = !vma.shared && vma.prot.contains(Prot::WRITE);
                match Self::new_frame(vma, p, false, copy, frames, phys) {
                    Ok(Some((frame, cow))) => {
                        let prot = host_prot(vma.prot, cow);
                        self.pages.insert(p, Pte { frame, prot, cow });
                        run.push(&mut self.host, p, frame, prot);
                    }
                    Ok(None) => {}
                    // Beyond end of file (or out of frames): no neighbours
                    // above; the faulting page (if below) reports its own.
                    Err(_) if p > page => break,
                    Err(_) => {}
                }
            }
            p += PAGE;
        }
        run.flush(&mut self.host);
        result.ok_or(FaultError::Bus)
    }

    /// A fault at `page` outside every VMA: grow the `GROWSDOWN` VMA just
    /// above it if the fault is within [`STACK_GROW_GAP`] and a page of gap to
    /// the mapping below remains.
    fn grow_stack(&mut self, page: u64) -> Result<Vma, FaultError> {
        let segv = FaultError::Segv { maperr: true };
        let (&start, above) = self.vmas.range(page..).next().ok_or(segv)?;
        if !above.growsdown || start - page > STACK_GROW_GAP || page < MMAP_MIN_ADDR {
            return Err(segv);
        }
        if let Some((_, below)) = self.vmas.range(..page).next_back() {
            if below.end.saturating_add(PAGE) > page {
                return Err(segv);
            }
        }
        // Only private anonymous stacks grow (offsets of other backings
        // cannot move down).
        if !matches!(above.backing, VmaBacking::Anon) {
            return Err(segv);
        }
        let mut vma = self.vmas.remove(&start).ok_or(segv)?;
        vma.start = page;
        self.vmas.insert(page, vma.clone());
        Ok(vma)
    }

    // ---------------------------------------------------------------- VMA surgery

    /// Split the VMA containing `at` (if `at` is strictly inside one).
    pub(super) fn split_at(&mut self, at: u64) {
        let Some((&start, vma)) = self.vmas.range_mut(..at).next_back() else { return };
        if vma.end <= at || start == at {
            return;
        }
        let hi = vma.split_off(at);
        self.vmas.insert(at, hi);
    }

    /// Merge neighbouring VMAs that continue each other, from the VMA
    /// ending at or containing `from` through `to`.
    pub(super) fn merge_range(&mut self, from: u64, to: u64) {
        let mut cur = match self.vmas.range(..from).next_back() {
            Some((&s, _)) => s,
            None => match self.vmas.range(from..).next() {
                Some((&s, _)) => s,
                None => return,
            },
        };
        loop {
            let Some(vma) = self.vmas.get(&cur) else { return };
            let end = vma.end;
            let Some(next) = self.vmas.get(&end) else {
                // Not adjacent: continue with the next VMA if still in range.
                match self.vmas.range(end..).next() {
                    Some((&s, _)) if s <= to => {
                        cur = s;
                        continue;
                    }
                    _ => return,
                }
            };
            if vma.can_merge(next) {
                let next_end = next.end;
                // Same backing object: dropping `next` releases nothing.
                self.vmas.remove(&end);
                if let Some(v) = self.vmas.get_mut(&cur) {
                    v.end = next_end;
                }
            } else if end > to {
                return;
            } else {
                cur = end;
            }
        }
    }

    /// Remove every mapping in `[start, end)` (page-aligned, `start < end`).
    pub(super) fn remove_range(&mut self, start: u64, end: u64, frames: &mut Frames) {
        if !self.overlaps(start, end) {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        let doomed: Vec<u64> = self.pages.range(start..end).map(|(&va, _)| va).collect();
        for &va in &doomed {
            if let Some(pte) = self.pages.remove(&va) {
                frames.put(pte.frame);
            }
        }
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(&s, _)| s).collect();
        for k in keys {
            if let Some(vma) = self.vmas.remove(&k) {
                // The backends' op queues merge contiguous unmaps already.
                if any_in(&doomed, vma.start, vma.end) {
                    self.host.unmap(vma.start, vma.end - vma.start);
                }
            }
        }
        // A shared anonymous object whose last mapping went gives its frames back now.
        self.shm.reap(frames);
    }

    /// Find a free range of `len` bytes, top-down below `hi`, above `lo`.
    fn find_free_below(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut top = hi;
        for (_, v) in self.vmas.range(..hi).rev() {
            if v.end <= top && top - v.end >= len {
                let s = top - len;
                if s >= lo {
                    return Some(s);
                }
                return None;
            }
            top = top.min(v.start);
            if top < lo {
                return None;
            }
        }
        let s = top.checked_sub(len)?;
        (s >= lo).then_some(s)
    }

    /// Choose where a non-fixed mapping of `len` bytes goes.
    pub(crate) fn find_free_area(&self, len: u64, hint: u64, below_2g: bool) -> Option<u64> {
        if hint != 0 {
            if let Some(h) = page_ceil(hint) {
                if h >= MMAP_MIN_ADDR
                    && h.checked_add(len).is_some_and(|e| e <= self.user_end && !self.overlaps(h, e))
                {
                    return Some(h);
                }
            }
        }
        if below_2g {
            return self.find_free_below(len, MMAP_MIN_ADDR, 0x8000_0000.min(self.user_end));
        }
        self.find_free_below(len, MMAP_MIN_ADDR, self.mmap_base())
            .or_else(|| self.find_free_below(len, MMAP_MIN_ADDR, self.user_end))
    }

    /// Insert a VMA over a range known to be free, merging with neighbours.
    pub(crate) fn insert_vma(&mut self, vma: Vma) {
        let (s, e) = (vma.start, vma.end);
        self.vmas.insert(s, vma);
        self.merge_range(s, e);
    }

    // ---------------------------------------------------------------- mmap family

    /// `mmap(addr, len, prot, flags, fd, offset)` with the backing already
    /// resolved from `fd`/`MAP_ANONYMOUS` by the caller. Returns the address.
    ///
    /// Errors as Linux: `EINVAL` (zero length, unaligned fixed address or file
    /// offset, no or both of shared/private, `MAP_HUGETLB`), `ENOMEM` (no room,
    /// beyond the user end, or `MAP_POPULATE` out of frames), `EEXIST`
    /// (`MAP_FIXED_NOREPLACE` over a mapping), `EPERM` (fixed below
    /// [`MMAP_MIN_ADDR`]), `EOVERFLOW` (offset + length overflows), `EACCES`
    /// (writable `MAP_SHARED` mapping of a file that may not be written),
    /// `ENODEV` (writable `MAP_SHARED` mapping of a file without a page cache).
    ///
    /// `MAP_POPULATE` is ignored here (no physical memory at hand): use
    /// [`MemoryMap::mmap_with_phys`] to honour it.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        backing: Backing,
        frames: &mut Frames,
    ) -> Result<u64, Errno> {
        self.mmap_inner(addr, len, prot, flags, backing, frames)
    }

    /// [`MemoryMap::mmap`] that also honours `MAP_POPULATE`: the pages are
    /// faulted in now (write faults for writable private mappings); running
    /// out of frames undoes the mapping and gives `ENOMEM`.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap_with_phys(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        backing: Backing,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<u64, Errno> {
        let start = self.mmap_inner(addr, len, prot, flags, backing, frames)?;
        if flags.contains(MapFlags::POPULATE) {
            let end = start + page_ceil(len).ok_or(Errno::ENOMEM)?;
            self.populate(start, end, frames, phys)?;
        }
        Ok(start)
    }

    fn mmap_inner(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        backing: Backing,
        frames: &mut Frames,
    ) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_ceil(len).ok_or(Errno::ENOMEM)?;
        let shared = match flags.bits() & linux_raw_sys::general::MAP_TYPE {
            t if t == MapFlags::SHARED.bits() || t == MapFlags::SHARED_VALIDATE.bits() => true,
            t if t == MapFlags::PRIVATE.bits() => false,
            _ => return Err(Errno::EINVAL),
        };
        if flags.contains(MapFlags::HUGETLB) {
            return Err(Errno::EINVAL);
        }
        let writable = shared && prot.contains(Prot::WRITE);
        let (vbacking, kind, may_write, name) = match backing {
            Backing::Anonymous if shared => {
                let cache = PageCache::new(&self.shm, Source::Zero, len, None);
                (VmaBacking::Cache { map: MapRef::new(cache, writable), offset: 0, file: None }, VmaKind::Anonymous, true, None)
            }
            Backing::Anonymous => (VmaBacking::Anon, VmaKind::Anonymous, true, None),
            Backing::File(file, offset) => {
                let name = file.path().map(Rc::from);
                Self::file_backing(file, offset, len, shared, false, writable, name)?
            }
            Backing::Open { file, offset, writable: may, name } => {
                Self::file_backing(file, offset, len, shared, may, writable, Some(Rc::from(name)))?
            }
        };
        let fixed = flags.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(Errno::EINVAL);
            }
            let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > self.user_end {
                return Err(Errno::ENOMEM);
            }
            if addr < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
            if self.overlaps(addr, end) {
                if flags.contains(MapFlags::FIXED_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                self.remove_range(addr, end, frames);
            }
            addr
        } else {
            if len > self.user_end {
                return Err(Errno::ENOMEM);
            }
            self.find_free_area(len, addr, flags.contains(MapFlags::MAP_32BIT)).ok_or(Errno::ENOMEM)?
        };
        let vma = Vma {
            start,
            end: start + len,
            prot,
            shared,
            may_write,
            name,
            kind,
            growsdown: flags.contains(MapFlags::GROWSDOWN),
            backing: vbacking,
        };
        self.insert_vma(vma);
        Ok(start)
    }

    /// The backing of a file mapping: through the file's page cache if it
    /// has one. `EACCES` for a writable shared mapping of a file that may
    /// not be written (`may_write`), `ENODEV` if it has no cache.
    #[allow(clippy::type_complexity)]
    fn file_backing(
        file: alloc::sync::Arc<dyn super::MappedFile>,
        offset: u64,
        len: u64,
        shared: bool,
        may_write: bool,
        writable: bool,
        name: Option<Rc<str>>,
    ) -> Result<(VmaBacking, VmaKind, bool, Option<Rc<str>>), Errno> {
        if !offset.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if offset.checked_add(len).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        let may_write = !shared || may_write;
        let backing = match file.page_cache() {
            Some(cache) => {
                if writable && !may_write {
                    return Err(Errno::EACCES);
                }
                VmaBacking::Cache { map: MapRef::new(cache, writable), offset, file: Some(file) }
            }
            None if writable => return Err(Errno::ENODEV),
            None => VmaBacking::File { file, offset },
        };
        Ok((backing, VmaKind::File, may_write, name))
    }

    /// Fault in `[start, end)`; out of frames undoes the mapping (`ENOMEM`).
    fn populate(&mut self, start: u64, end: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let mut p = start;
        while p < end {
            let Some(vma) = self.find_vma(p) else { break };
            let access = if vma.prot.contains(Prot::WRITE) && !vma.shared { Access::Write } else { Access::Read };
            match self.fault_page(p, access, false, false, frames, phys) {
                Ok(_) => {}
                Err(FaultError::OutOfMemory) => {
                    self.remove_range(start, end, frames);
                    return Err(Errno::ENOMEM);
                }
                // Beyond end of file, or PROT_NONE: nothing to populate.
                Err(_) => break,
            }
            p += PAGE;
        }
        Ok(())
    }

    /// `munmap`: `EINVAL` for an unaligned address, zero length or a range
    /// beyond the user end; unmapping holes is fine.
    pub fn munmap(&mut self, addr: u64, len: u64, frames: &mut Frames) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_ceil(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).filter(|&e| e <= self.user_end).ok_or(Errno::EINVAL)?;
        self.remove_range(addr, end, frames);
        Ok(())
    }

    /// `mprotect`: `EINVAL` for an unaligned address, `ENOMEM` if part of the
    /// range is unmapped, `EACCES` for `PROT_WRITE` on a shared mapping of a
    /// file not opened for writing.
    /// As on Linux, the VMAs before the first hole (or refused VMA) are
    /// changed even when the call then fails. Present pages get their host
    /// protection changed (copy-on-write pages stay read-only).
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_ceil(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).filter(|&e| e <= self.user_end).ok_or(Errno::ENOMEM)?;
        // Walk the range: the covered prefix is changed, the first hole or
        // refused VMA ends it with the error (Linux's mprotect_fixup loop).
        let mut p = addr;
        let mut result = Ok(());
        while p < end {
            let Some(vma) = self.find_vma(p) else {
                result = Err(Errno::ENOMEM);
                break;
            };
            if prot.contains(Prot::WRITE) && vma.shared && !vma.may_write {
                result = Err(Errno::EACCES);
                break;
            }
            p = vma.end;
        }
        let end = end.min(p);
        if end > addr {
            self.protect_range(addr, end, prot);
        }
        result
    }

    /// Set the protection of `[addr, end)`, which VMAs cover without holes.
    fn protect_range(&mut self, addr: u64, end: u64, prot: Prot) {
        self.split_at(addr);
        self.split_at(end);
        for (_, v) in self.vmas.range_mut(addr..end) {
            v.prot = prot;
            if let (true, VmaBacking::Cache { map, .. }) = (v.shared, &mut v.backing) {
                map.set_writable(prot.contains(Prot::WRITE));
            }
        }
        let mut run = ProtectRun::default();
        for (&va, pte) in self.pages.range_mut(addr..end) {
            let hp = host_prot(prot, pte.cow);
            if pte.prot != hp {
                pte.prot = hp;
                run.push(&mut self.host, va, hp);
            }
        }
        run.flush(&mut self.host);
        self.merge_range(addr, end);
    }

    /// `madvise(MADV_DONTNEED)`: drop the present pages of `[addr, addr+len)`
    /// while keeping the VMAs. Afterwards private anonymous pages read as
    /// zeros, private file pages are read from the file again, and shared
    /// anonymous pages show the shared object's contents (as on Linux).
    /// `EINVAL` for an unaligned address or a range beyond the user end,
    /// `ENOMEM` if part of the range is unmapped (the mapped parts are still
    /// discarded, as on Linux).
    pub fn discard(&mut self, addr: u64, len: u64, frames: &mut Frames) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_ceil(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).filter(|&e| e <= self.user_end).ok_or(Errno::EINVAL)?;
        let doomed: Vec<u64> = self.pages.range(addr..end).map(|(&va, _)| va).collect();
        self.drop_entries(&doomed, frames);
        let mut p = addr;
        while p < end {
            match self.find_vma(p) {
                Some(v) => p = v.end,
                None => return Err(Errno::ENOMEM),
            }
        }
        Ok(())
    }

    /// Set the start of the heap (exec: end of the data segment; rounded up
    /// to a page). The break starts there.
    pub fn set_brk_base(&mut self, base: u64) {
        self.brk_base = page_ceil(base).unwrap_or(self.user_end);
        self.brk = self.brk_base;
    }

    /// `brk` with Linux semantics: returns the new break, or the unchanged
    /// one when the request is refused (below the base, overlapping another
    /// mapping, beyond the user end). Shrinking unmaps whole pages.
    pub fn brk(&mut self, new: u64, frames: &mut Frames) -> u64 {
        if self.brk_base == 0 || new < self.brk_base {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) = (page_ceil(self.brk), page_ceil(new)) else { return self.brk };
        if new_end > self.user_end {
            return self.brk;
        }
        if new_end > old_end {
            // Keep a page of gap to whatever lies above (like Linux's guard).
            let guard_end = new_end.saturating_add(PAGE).min(self.user_end);
            if self.overlaps(old_end, guard_end) {
                return self.brk;
            }
            self.insert_vma(Vma {
                start: old_end,
                end: new_end,
                prot: Prot::READ | Prot::WRITE,
                shared: false,
                may_write: true,
                name: None,
                kind: VmaKind::Heap,
                growsdown: false,
                backing: VmaBacking::Anon,
            });
        } else if new_end < old_end {
            self.remove_range(new_end, old_end, frames);
        }
        self.brk = new;
        new
    }

    /// Drop every mapping (exec, exit): frames are released and the host
    /// space is unmapped (one op per contiguous run of VMAs).
    pub fn clear(&mut self, frames: &mut Frames) {
        let mut present = Vec::with_capacity(self.pages.len());
        for (va, pte) in core::mem::take(&mut self.pages) {
            frames.put(pte.frame);
            present.push(va);
        }
        for (_, vma) in core::mem::take(&mut self.vmas) {
            if any_in(&present, vma.start, vma.end) {
                self.host.unmap(vma.start, vma.end - vma.start);
            }
        }
        self.shm.reap(frames);
        self.brk_base = 0;
        self.brk = 0;
    }

    /// The VMAs, in address order (for `/proc/pid/maps`).
    pub fn vmas(&self) -> impl Iterator<Item = VmaInfo> + '_ {
        self.vmas.values().map(Vma::info)
    }

    /// Mark the VMA starting at `start` as the `[stack]`.
    pub(crate) fn set_kind(&mut self, start: u64, kind: VmaKind) {
        if let Some(v) = self.vmas.get_mut(&start) {
            v.kind = kind;
        }
    }

    /// Check the internal invariants of this map: VMAs sorted, aligned,
    /// disjoint, below the user end; every page-table entry inside a VMA, with
    /// the host protection its VMA implies, on an allocated frame, exclusive
    /// (refcount 1) unless copy-on-write or shared.
    pub fn check_invariants(&self, frames: &Frames) -> Result<(), String> {
        let mut prev_end = 0;
        for (&k, v) in &self.vmas {
            if k != v.start || v.start >= v.end || v.start % PAGE != 0 || v.end % PAGE != 0 {
                return Err(format!("bad vma {:#x}..{:#x} (key {k:#x})", v.start, v.end));
            }
            if v.start < prev_end {
                return Err(format!("vma {:#x} overlaps the previous one", v.start));
            }
            if v.end > self.user_end {
                return Err(format!("vma {:#x}..{:#x} beyond user end", v.start, v.end));
            }
            prev_end = v.end;
        }
        for (&va, pte) in &self.pages {
            let vma = self.find_vma(va).ok_or_else(|| format!("pte {va:#x} outside every vma"))?;
            if pte.prot != host_prot(vma.prot, pte.cow) {
                return Err(format!("pte {va:#x}: prot {:?} but vma {:?} cow {}", pte.prot, vma.prot, pte.cow));
            }
            let rc = frames.refcount(pte.frame);
            if rc == 0 {
                return Err(format!("pte {va:#x}: frame {:#x} is free", pte.frame));
            }
            let cache_frame = match &vma.backing {
                VmaBacking::Cache { map, offset, .. } => map.cache.frame_at((offset + (va - vma.start)) / PAGE),
                _ => None,
            };
            match &vma.backing {
                VmaBacking::Cache { map, offset, .. } if vma.shared => {
                    if cache_frame != Some(pte.frame) {
                        return Err(format!("pte {va:#x}: not the shared cache's frame"));
                    }
                    let idx = (offset + (va - vma.start)) / PAGE;
                    if !pte.cow && vma.prot.contains(Prot::WRITE) && !map.cache.is_dirty(idx) {
                        return Err(format!("pte {va:#x}: writable shared page not marked dirty"));
                    }
                }
                _ if cache_frame == Some(pte.frame) => {
                    if !pte.cow {
                        return Err(format!("pte {va:#x}: a cache page mapped writable by a private mapping"));
                    }
                }
                _ => {
                    if !pte.cow && rc != 1 {
                        return Err(format!("pte {va:#x}: private writable frame with refcount {rc}"));
                    }
                }
            }
        }
        if self.brk < self.brk_base {
            return Err(format!("brk {:#x} below base {:#x}", self.brk, self.brk_base));
        }
        Ok(())
    }

    /// The page-table entries, for tests and checks: (page, frame, host prot, cow).
    pub fn ptes(&self) -> impl Iterator<Item = (u64, u64, Prot, bool)> + '_ {
        self.pages.iter().map(|(&va, p)| (va, p.frame, p.prot, p.cow))
    }
}

/// Whether the sorted `pages` has one in `[start, end)`. Only pages with a
/// page-table entry are ever mapped in the host, so a VMA without one needs
/// no host `munmap` when it goes (an untouched `mmap` + `munmap` then costs
/// the host nothing).
fn any_in(pages: &[u64], start: u64, end: u64) -> bool {
    pages.get(pages.partition_point(|&p| p < start)).is_some_and(|&p| p < end)
}

/// Copy a file page (zero-padded past end of file) into `frame`.
fn fill_from_file(file: &dyn super::MappedFile, off: u64, frame: u64, phys: &impl PhysMem) {
    let mut buf = [0u8; PAGE as usize];
    let n = file.read_at(off, &mut buf).min(buf.len());
    buf[n..].fill(0);
    phys.write(frame, &buf);
}

/// Check that every frame's reference count equals the references held by
/// `maps` (page-table entries), by the page caches they map or that are
/// registered in their cache sets (pages and orphans), and every other frame
/// is free. `maps` must be every live map.
pub fn check_refcounts<S: AddressSpace>(maps: &[&MemoryMap<S>], frames: &Frames) -> Result<(), String> {
    check_refcounts_with(maps, &[], frames)
}

/// [`check_refcounts`], also counting the caches of `sets` (the file
/// systems' caches, which no map may reach).
pub fn check_refcounts_with<S: AddressSpace>(maps: &[&MemoryMap<S>], sets: &[&CacheSet], frames: &Frames) -> Result<(), String> {
    frames.check_consistent()?;
    let mut want: BTreeMap<u64, u32> = BTreeMap::new();
    let mut all_sets: Vec<&CacheSet> = sets.to_vec();
    for m in maps {
        m.check_invariants(frames)?;
        for pte in m.pages.values() {
            *want.entry(pte.frame).or_default() += 1;
        }
        all_sets.push(&m.shm);
    }
    // Each set once (maps usually share the kernel's), each cache once.
    let mut seen_sets: Vec<*const ()> = Vec::new();
    let mut seen_caches: alloc::collections::BTreeSet<*const PageCache> = alloc::collections::BTreeSet::new();
    for set in all_sets {
        let p = set.identity();
        if seen_sets.contains(&p) {
            continue;
        }
        seen_sets.push(p);
        set.check()?;
        for f in set.orphans() {
            *want.entry(f).or_default() += 1;
        }
        for c in set.caches() {
            if seen_caches.insert(Rc::as_ptr(&c)) {
                for (_, f, _) in c.pages() {
                    *want.entry(f).or_default() += 1;
                }
            }
        }
    }
    for m in maps {
        for v in m.vmas.values() {
            if let Some(c) = v.backing.cache() {
                if seen_caches.insert(Rc::as_ptr(c)) {
                    for (_, f, _) in c.pages() {
                        *want.entry(f).or_default() += 1;
                    }
                }
            }
        }
    }
    for (paddr, rc) in frames.allocated() {
        match want.remove(&paddr) {
            Some(w) if w == rc => {}
            w => return Err(format!("frame {paddr:#x}: refcount {rc}, references {}", w.unwrap_or(0))),
        }
    }
    if let Some((paddr, w)) = want.into_iter().next() {
        return Err(format!("frame {paddr:#x}: free but referenced {w} times"));
    }
    Ok(())
}
