//! The memory-map calls beyond mmap/munmap/mprotect: `mremap`, `mincore`,
//! the ranges `msync` and `madvise` act on, the per-VMA figures of
//! `/proc/<pid>/smaps`, and removing the entries that map pages a page
//! cache is about to drop (truncation, hole punching).

use alloc::rc::Rc;
use alloc::vec::Vec;
use hal::AddressSpace;
use linux_raw_sys::general as g;

use super::frames::Frames;
use super::memory_map::{MapRun, MemoryMap, MMAP_MIN_ADDR};
use super::page_cache::PageCache;
use super::vma::VmaBacking;
use super::{page_ceil, PAGE};
use crate::Errno;

/// Resident-memory figures of one VMA (bytes), as `/proc/<pid>/smaps` shows
/// them. `pss` is in bytes too (each page divided by its number of maps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaStats {
    /// Present pages.
    pub rss: u64,
    /// Proportional share.
    pub pss: u64,
    /// Present pages mapped by other maps too, unchanged since read.
    pub shared_clean: u64,
    /// Present pages mapped by other maps too, written.
    pub shared_dirty: u64,
    /// Present pages only this map maps, unchanged since read.
    pub private_clean: u64,
    /// Present pages only this map maps, written.
    pub private_dirty: u64,
    /// Pages that belong to no file (private anonymous or private copies).
    pub anonymous: u64,
}

impl<S: AddressSpace> MemoryMap<S> {
    /// Remove the entries that map pages `[first, last)` of `cache`, in every
    /// VMA of this map that maps it. With `even_cows` the private copies of
    /// private mappings go too (truncation: an access past the new end of
    /// the file then gives `SIGBUS`, as on Linux); without, only entries of
    /// the cache's own frames (hole punching: private copies keep their data).
    pub fn invalidate_cache(&mut self, cache: &Rc<PageCache>, first: u64, last: u64, even_cows: bool, frames: &mut Frames) {
        let mut doomed: Vec<u64> = Vec::new();
        for v in self.vmas.values() {
            let VmaBacking::Cache { map, offset, .. } = &v.backing else { continue };
            if !Rc::ptr_eq(&map.cache, cache) {
                continue;
            }
            let vfirst = offset / PAGE;
            let vlast = vfirst + (v.end - v.start) / PAGE;
            let (lo, hi) = (first.max(vfirst), last.min(vlast));
            if lo >= hi {
                continue;
            }
            let (a0, a1) = (v.start + (lo - vfirst) * PAGE, v.start + (hi - vfirst) * PAGE);
            for (&va, pte) in self.pages.range(a0..a1) {
                let own = cache.frame_at(vfirst + (va - v.start) / PAGE) == Some(pte.frame);
                if even_cows || v.shared || own {
                    doomed.push(va);
                }
            }
        }
        self.drop_entries(&doomed, frames);
    }

    /// Remove the entries at `pages` (sorted) and unmap them in the host,
    /// one operation per contiguous run.
    pub(super) fn drop_entries(&mut self, pages: &[u64], frames: &mut Frames) {
        let mut run: Option<(u64, u64)> = None;
        for &va in pages {
            if let Some(pte) = self.pages.remove(&va) {
                frames.put(pte.frame);
            }
            match &mut run {
                Some((_, e)) if *e == va => *e += PAGE,
                _ => {
                    if let Some((s, e)) = run.take() {
                        self.host.unmap(s, e - s);
                    }
                    run = Some((va, va + PAGE));
                }
            }
        }
        if let Some((s, e)) = run {
            self.host.unmap(s, e - s);
        }
    }

    /// The page caches `[addr, addr + len)` maps and the byte ranges of them
    /// it covers (`msync`, `madvise`): `(cache, start, end, shared)`.
    /// `EINVAL` for an unaligned address or a range beyond the user end,
    /// `ENOMEM` if part of the range is unmapped (after collecting what is).
    #[allow(clippy::type_complexity)]
    pub fn cache_ranges(&self, addr: u64, len: u64) -> Result<(Vec<(Rc<PageCache>, u64, u64, bool)>, bool), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let len = page_ceil(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).filter(|&e| e <= self.user_end()).ok_or(Errno::ENOMEM)?;
        let mut out = Vec::new();
        let mut p = addr;
        let mut hole = false;
        for (_, v) in self.vmas.range(..end) {
            if v.end <= addr {
                continue;
            }
            if v.start > p {
                hole = true;
            }
            let (s, e) = (v.start.max(addr), v.end.min(end));
            if let VmaBacking::Cache { map, offset, .. } = &v.backing {
                out.push((map.cache.clone(), offset + (s - v.start), offset + (e - v.start), v.shared));
            }
            p = v.end;
        }
        Ok((out, hole || p < end))
    }

    /// Whether `[addr, addr + len)` (page-aligned) has only private
    /// anonymous VMAs (`MADV_FREE`'s condition): `EINVAL` otherwise,
    /// `ENOMEM` for holes.
    pub fn private_anon_only(&self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        let mut p = addr;
        for (_, v) in self.vmas.range(..end) {
            if v.end <= addr {
                continue;
            }
            if v.start > p {
                return Err(Errno::ENOMEM);
            }
            if !matches!(v.backing, VmaBacking::Anon) {
                return Err(Errno::EINVAL);
            }
            p = v.end;
        }
        if p < end {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `mincore`: one byte per page of `[addr, addr + len)`, 1 if resident
    /// (mapped here, or in the page cache of a file mapping). `EINVAL` for
    /// an unaligned address, `ENOMEM` if part of the range is not mapped.
    pub fn mincore(&self, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let len = page_ceil(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).filter(|&e| e <= self.user_end()).ok_or(Errno::ENOMEM)?;
        let mut out = Vec::with_capacity((len / PAGE) as usize);
        let mut p = addr;
        while p < end {
            let v = self.find_vma(p).ok_or(Errno::ENOMEM)?;
            let stop = v.end.min(end);
            while p < stop {
                let resident = self.pages.contains_key(&p)
                    || match &v.backing {
                        VmaBacking::Cache { map, offset, .. } => map.cache.resident((offset + (p - v.start)) / PAGE),
                        _ => false,
                    };
                out.push(u8::from(resident));
                p += PAGE;
            }
        }
        Ok(out)
    }

    /// The resident-memory figures of the VMA `[start, end)`.
    pub fn vma_stats(&self, start: u64, end: u64, frames: &Frames) -> VmaStats {
        let mut s = VmaStats::default();
        let Some(v) = self.find_vma(start) else { return s };
        for (&va, pte) in self.pages.range(start..end) {
            let (cache_page, dirty) = match &v.backing {
                VmaBacking::Cache { map, offset, .. } => {
                    let idx = (offset + (va - v.start)) / PAGE;
                    if map.cache.frame_at(idx) == Some(pte.frame) {
                        (true, map.cache.is_dirty(idx))
                    } else {
                        (false, true)
                    }
                }
                VmaBacking::Anon => (false, true),
                VmaBacking::File { .. } => (false, !pte.cow),
            };
            let maps = u64::from(frames.refcount(pte.frame)).saturating_sub(u64::from(cache_page)).max(1);
            s.rss += PAGE;
            s.pss += PAGE / maps;
            match (maps > 1, dirty) {
                (true, false) => s.shared_clean += PAGE,
                (true, true) => s.shared_dirty += PAGE,
                (false, false) => s.private_clean += PAGE,
                (false, true) => s.private_dirty += PAGE,
            }
            if !(cache_page || v.shared && matches!(v.backing, VmaBacking::Cache { .. })) {
                s.anonymous += PAGE;
            }
        }
        s
    }

    /// `mremap(old, old_len, new_len, flags, new_addr)` with Linux's rules:
    /// shrinking unmaps the tail; growing extends in place when the space
    /// after is free, else moves with `MREMAP_MAYMOVE` (or to `new_addr`
    /// with `MREMAP_FIXED`, replacing what is there); `MREMAP_DONTUNMAP`
    /// moves the pages and leaves the old range mapped but empty; an
    /// `old_len` of 0 maps a shared mapping a second time. The pages move
    /// with their frames (no copy). Errors: `EINVAL` (bad flags or
    /// alignment, zero new length, overlapping fixed ranges, `old_len` 0 of
    /// a private mapping), `EFAULT` (the old range is not one VMA), `ENOMEM`
    /// (cannot grow in place without `MREMAP_MAYMOVE`, no room).
    pub fn mremap(&mut self, old: u64, old_len: u64, new_len: u64, flags: u32, new_addr: u64, frames: &mut Frames) -> Result<u64, Errno> {
        let (maymove, fixed, dontunmap) =
            (flags & g::MREMAP_MAYMOVE != 0, flags & g::MREMAP_FIXED != 0, flags & g::MREMAP_DONTUNMAP != 0);
        if flags & !(g::MREMAP_MAYMOVE | g::MREMAP_FIXED | g::MREMAP_DONTUNMAP) != 0
            || (fixed && !maymove)
            || (dontunmap && (!maymove || old_len != new_len))
            || !old.is_multiple_of(PAGE)
        {
            return Err(Errno::EINVAL);
        }
        let old_len = page_ceil(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_ceil(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old.checked_add(old_len).filter(|&e| e <= self.user_end()).ok_or(Errno::EFAULT)?;
        if fixed {
            let new_end = new_addr.checked_add(new_len).filter(|&e| e <= self.user_end()).ok_or(Errno::EINVAL)?;
            if !new_addr.is_multiple_of(PAGE) || (old_end > new_addr && new_end > old) {
                return Err(Errno::EINVAL);
            }
            if new_addr < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
        }
        let vma = self.find_vma(old).cloned().ok_or(Errno::EFAULT)?;
        if old_len == 0 {
            // A second mapping of a shared object.
            if !vma.shared || !maymove {
                return Err(Errno::EINVAL);
            }
        } else if old_end > vma.end {
            return Err(Errno::EFAULT);
        }
        if !fixed && !dontunmap && new_len <= old_len && old_len > 0 {
            if new_len < old_len {
                self.remove_range(old + new_len, old_end, frames);
            }
            return Ok(old);
        }
        // Grow in place.
        if !fixed && !dontunmap && old_len > 0 && old_end == vma.end {
            let grown = old.checked_add(new_len).filter(|&e| e <= self.user_end());
            if let Some(e) = grown {
                if !self.overlaps(old_end, e) {
                    let mut piece = vma.clone();
                    piece.start = old_end;
                    piece.end = e;
                    piece.growsdown = false;
                    if let VmaBacking::Cache { offset, .. } | VmaBacking::File { offset, .. } = &mut piece.backing {
                        *offset += old_end - vma.start;
                    }
                    self.insert_vma(piece);
                    return Ok(old);
                }
            }
        }
        if !maymove {
            return Err(Errno::ENOMEM);
        }
        let dest = if fixed {
            self.remove_range(new_addr, new_addr + new_len, frames);
            new_addr
        } else {
            self.find_free_area(new_len, 0, false).ok_or(Errno::ENOMEM)?
        };
        // The moved VMA: the old range's piece, at `dest`, `new_len` long.
        let mut moved = vma.clone();
        moved.start = dest;
        moved.end = dest + new_len;
        moved.growsdown = false;
        if let VmaBacking::Cache { offset, .. } | VmaBacking::File { offset, .. } = &mut moved.backing {
            *offset += old - vma.start;
        }
        if matches!(moved.backing, VmaBacking::Anon) && old_len == 0 {
            return Err(Errno::EINVAL);
        }
        // Move the page-table entries with their frames (shrinking moves
        // drop the tail first).
        if new_len < old_len {
            self.remove_range(old + new_len, old_end, frames);
        }
        let moving: Vec<(u64, super::memory_map::Pte)> =
            self.pages.range(old..old + old_len.min(new_len)).map(|(&va, p)| (va, *p)).collect();
        if !moving.is_empty() {
            self.host.unmap(old, old_len.min(new_len));
        }
        let mut run = MapRun::default();
        for (va, pte) in &moving {
            self.pages.remove(va);
            let to = dest + (va - old);
            self.pages.insert(to, *pte);
            run.push(&mut self.host, to, pte.frame, pte.prot);
        }
        run.flush(&mut self.host);
        if old_len > 0 && !dontunmap {
            // No entries are left in the old range: this only drops the VMA.
            self.remove_range(old, old + old_len.min(new_len), frames);
        }
        self.insert_vma(moved);
        Ok(dest)
    }

    /// Fault in the file pages of `[addr, addr + len)` into their caches
    /// (`MADV_WILLNEED`), without mapping them.
    pub fn prefetch(&self, addr: u64, len: u64, frames: &mut Frames, phys: &impl hal::PhysMem) {
        let Ok((ranges, _)) = self.cache_ranges(addr, len) else { return };
        for (c, s, e, _) in ranges {
            c.prefetch(s, e, frames, phys);
        }
    }

    /// The VMA at `addr`: (start, end, shared, may be written, maps a page
    /// cache).
    pub fn vma_at(&self, addr: u64) -> Option<(u64, u64, bool, bool, bool)> {
        self.find_vma(addr).map(|v| (v.start, v.end, v.shared, v.may_write, matches!(v.backing, VmaBacking::Cache { .. })))
    }
}
