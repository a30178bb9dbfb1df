//! The buffer cache of one disk: its metadata blocks in kernel memory.
//!
//! File data never comes here: it lives in the files' page caches (guest
//! frames) and moves between them and the device directly. What a file
//! system reads and changes piecemeal — superblock, group descriptors,
//! bitmaps, inode tables, extent and directory blocks — is kept in units of
//! [`UNIT`] bytes with a dirty mask of 512-byte sectors, so that writeback
//! and the journal touch exactly the sectors that changed.
//!
//! Every unit is charged to the guest's budget before it is allocated;
//! clean units are evicted, oldest first, past the cache's limit and when
//! the budget asks (the disk is a [`crate::budget::Shrinker`]). Dirty units
//! stay until their file system writes them back (or commits them to its
//! journal): it watches [`BufferCache::dirty_units`] and does so past
//! [`BufferCache::dirty_limit`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use crate::budget::{BudgetRef, Charge, Kind};
use crate::Errno;

/// Bytes per cache unit (a page).
pub const UNIT: u64 = 4096;
/// Sectors per unit.
const SECTORS: u64 = UNIT / 512;
/// What one unit costs the budget: its bytes and its bookkeeping.
const UNIT_COST: usize = UNIT as usize + 64;

struct Unit {
    data: Vec<u8>,
    /// Bit `s`: sector `s` of the unit differs from the device.
    dirty: u8,
    /// Last use, for the eviction queue.
    tick: u64,
}

/// One disk's cached units.
pub struct BufferCache {
    units: BTreeMap<u64, Unit>,
    /// (unit, tick of the use that queued it): stale entries are skipped.
    lru: VecDeque<(u64, u64)>,
    tick: u64,
    ndirty: usize,
    /// Units kept at most (clean ones go first past it).
    limit: usize,
    charge: Charge,
}

impl BufferCache {
    /// An empty cache of at most `limit` units, charged to `budget`.
    pub fn new(limit: usize, budget: Option<&BudgetRef>) -> BufferCache {
        BufferCache {
            units: BTreeMap::new(),
            lru: VecDeque::new(),
            tick: 0,
            ndirty: 0,
            limit: limit.max(16),
            charge: Charge::empty(budget, Kind::Buffers),
        }
    }

    /// Charge the budget from now on (it is known after the cache is made).
    pub fn set_budget(&mut self, budget: &BudgetRef) {
        if self.units.is_empty() {
            self.charge = Charge::empty(Some(budget), Kind::Buffers);
        }
    }

    /// Change the limit (sized for the guest's memory at boot).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(16);
    }

    /// Units held.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Units with dirty sectors.
    pub fn dirty_units(&self) -> usize {
        self.ndirty
    }

    /// Dirty units past which the file system should write back or commit:
    /// half the limit.
    pub fn dirty_limit(&self) -> usize {
        self.limit / 2
    }

    fn touch(&mut self, idx: u64) {
        self.tick += 1;
        let t = self.tick;
        if let Some(u) = self.units.get_mut(&idx) {
            u.tick = t;
            self.lru.push_back((idx, t));
        }
        if self.lru.len() > 4 * self.units.len() + 64 {
            let units = &self.units;
            self.lru.retain(|(i, t)| units.get(i).is_some_and(|u| u.tick == *t));
        }
    }

    /// Is unit `idx` cached?
    pub fn contains(&self, idx: u64) -> bool {
        self.units.contains_key(&idx)
    }

    /// The bytes of unit `idx`, if cached (marks it used).
    pub fn get(&mut self, idx: u64) -> Option<&[u8]> {
        if !self.units.contains_key(&idx) {
            return None;
        }
        self.touch(idx);
        self.units.get(&idx).map(|u| &u.data[..])
    }

    /// The bytes of unit `idx` without marking it used (overlaying data reads).
    pub fn peek(&self, idx: u64) -> Option<&[u8]> {
        self.units.get(&idx).map(|u| &u.data[..])
    }

    /// Make room for one more unit: evict clean units past the limit.
    fn make_room(&mut self) {
        while self.units.len() >= self.limit {
            if self.evict_one() == 0 {
                break;
            }
        }
    }

    /// Evict the oldest clean unit; 1 if one went.
    fn evict_one(&mut self) -> u64 {
        let mut budget = self.lru.len();
        while budget > 0 {
            budget -= 1;
            let Some((idx, t)) = self.lru.pop_front() else { return 0 };
            match self.units.get(&idx) {
                Some(u) if u.tick == t && u.dirty == 0 => {
                    self.units.remove(&idx);
                    let _ = self.charge.resize(self.charge.bytes().saturating_sub(UNIT_COST));
                    return 1;
                }
                // Dirty: it comes back into the queue when it is cleaned.
                _ => {}
            }
        }
        0
    }

    /// Give back up to `n` clean units (the budget's shrinker).
    pub fn shrink(&mut self, n: u64) -> u64 {
        let mut got = 0;
        while got < n && self.evict_one() == 1 {
            got += 1;
        }
        got
    }

    /// Insert unit `idx` with `data` (clean). `ENOMEM` if the budget refuses.
    pub fn insert(&mut self, idx: u64, data: Vec<u8>) -> Result<(), Errno> {
        if let Some(u) = self.units.get_mut(&idx) {
            // Already there (and possibly newer): keep what is cached.
            let _ = u;
            return Ok(());
        }
        self.make_room();
        self.charge.grow(UNIT_COST)?;
        self.units.insert(idx, Unit { data, dirty: 0, tick: 0 });
        self.touch(idx);
        Ok(())
    }

    /// Change bytes `[at, at + data.len())` of cached unit `idx` and mark
    /// their sectors dirty (the unit must be cached).
    pub fn modify(&mut self, idx: u64, at: usize, data: &[u8]) -> Result<(), Errno> {
        let u = self.units.get_mut(&idx).ok_or(Errno::EIO)?;
        let end = at.checked_add(data.len()).filter(|&e| e <= u.data.len()).ok_or(Errno::EIO)?;
        u.data[at..end].copy_from_slice(data);
        let was = u.dirty;
        for s in at as u64 / 512..(end as u64).div_ceil(512) {
            u.dirty |= 1 << s;
        }
        if was == 0 && u.dirty != 0 {
            self.ndirty += 1;
        }
        self.touch(idx);
        Ok(())
    }

    /// Copy `data` into unit `idx` if it is cached, without changing its
    /// dirty mask (a data write went to the device directly: the cached
    /// copy must not go stale).
    pub fn update_if_cached(&mut self, idx: u64, at: usize, data: &[u8]) {
        if let Some(u) = self.units.get_mut(&idx) {
            if let Some(dst) = u.data.get_mut(at..at + data.len()) {
                dst.copy_from_slice(data);
            }
        }
    }

    /// The sectors of `[off, off + len)` no longer hold metadata (freed
    /// blocks): forget that they are dirty, and drop units wholly inside.
    pub fn forget(&mut self, off: u64, len: u64) {
        let end = off.saturating_add(len);
        let (first, last) = (off / UNIT, end.div_ceil(UNIT));
        let idxs: Vec<u64> = self.units.range(first..last).map(|(&i, _)| i).collect();
        for idx in idxs {
            let (us, ue) = (idx * UNIT, idx * UNIT + UNIT);
            let Some(u) = self.units.get_mut(&idx) else { continue };
            let was = u.dirty;
            if off <= us && ue <= end {
                self.units.remove(&idx);
                let _ = self.charge.resize(self.charge.bytes().saturating_sub(UNIT_COST));
            } else {
                let lo = off.max(us) - us;
                let hi = end.min(ue) - us;
                // Only sectors wholly inside the range stop being dirty.
                for s in lo.div_ceil(512)..hi / 512 {
                    u.dirty &= !(1 << s);
                }
                if u.dirty == 0 && was != 0 {
                    self.ndirty -= 1;
                    self.touch(idx);
                }
                continue;
            }
            if was != 0 {
                self.ndirty -= 1;
            }
        }
    }

    /// Every dirty run of sectors: (byte offset, bytes), in order, merged
    /// across units, with copies of the bytes.
    pub fn dirty_runs(&self) -> Vec<(u64, Vec<u8>)> {
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (&idx, u) in self.units.iter().filter(|(_, u)| u.dirty != 0) {
            for s in 0..SECTORS {
                if u.dirty & (1 << s) == 0 {
                    continue;
                }
                let off = idx * UNIT + s * 512;
                let bytes = &u.data[(s * 512) as usize..((s + 1) * 512) as usize];
                match runs.last_mut() {
                    Some((o, v)) if *o + v.len() as u64 == off && v.len() < (1 << 20) => v.extend_from_slice(bytes),
                    _ => runs.push((off, bytes.to_vec())),
                }
            }
        }
        runs
    }

    /// The dirty sectors' offsets, grouped by `bs`-byte blocks: the blocks
    /// (numbers, with their current bytes) that hold a dirty sector.
    pub fn dirty_blocks(&self, bs: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for (&idx, u) in self.units.iter().filter(|(_, u)| u.dirty != 0) {
            let base = idx * UNIT;
            let mut b = base / bs;
            while b * bs < base + UNIT {
                let (bo, be) = (b * bs, b * bs + bs);
                let dirty = (0..SECTORS).any(|s| u.dirty & (1 << s) != 0 && bo <= base + s * 512 && base + s * 512 < be);
                if dirty && out.last().is_none_or(|(x, _)| *x != b) {
                    // A block larger than a unit spans several units.
                    let mut bytes = vec![0u8; bs as usize];
                    for (k, chunk) in bytes.chunks_mut(UNIT.min(bs) as usize).enumerate() {
                        let at = bo + (k as u64) * UNIT.min(bs);
                        if let Some(src) = self.units.get(&(at / UNIT)) {
                            let o = (at % UNIT) as usize;
                            chunk.copy_from_slice(&src.data[o..o + chunk.len()]);
                        }
                    }
                    out.push((b, bytes));
                }
                b += 1;
            }
        }
        out
    }

    /// Everything was written back: no unit is dirty any more.
    pub fn mark_clean(&mut self) {
        let dirty: Vec<u64> = self.units.iter().filter(|(_, u)| u.dirty != 0).map(|(&i, _)| i).collect();
        for idx in dirty {
            if let Some(u) = self.units.get_mut(&idx) {
                u.dirty = 0;
            }
            self.touch(idx);
        }
        self.ndirty = 0;
    }

    /// Drop every unit, dirty ones too (the device was written around the
    /// cache, or the file system is gone).
    pub fn clear(&mut self) {
        self.units.clear();
        self.lru.clear();
        self.ndirty = 0;
        let _ = self.charge.resize(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_sectors_runs_and_blocks() {
        let mut c = BufferCache::new(16, None);
        c.insert(1, vec![0u8; UNIT as usize]).unwrap();
        c.insert(2, vec![0u8; UNIT as usize]).unwrap();
        c.modify(1, 4096 - 10, &[1; 10]).unwrap();
        c.modify(2, 0, &[2; 600]).unwrap();
        assert_eq!(c.dirty_units(), 2);
        let runs = c.dirty_runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0, 2 * 4096 - 512);
        assert_eq!(runs[0].1.len(), 512 * 3);
        let blocks = c.dirty_blocks(1024);
        assert_eq!(blocks.iter().map(|b| b.0).collect::<Vec<_>>(), vec![7, 8]);
        c.forget(2 * 4096, 1024);
        assert_eq!(c.dirty_blocks(1024).iter().map(|b| b.0).collect::<Vec<_>>(), vec![7]);
        c.mark_clean();
        assert_eq!(c.dirty_units(), 0);
        assert!(c.dirty_runs().is_empty());
    }

    #[test]
    fn clean_units_are_evicted_past_the_limit_dirty_ones_stay() {
        let mut c = BufferCache::new(16, None);
        for i in 0..16 {
            c.insert(i, vec![0u8; UNIT as usize]).unwrap();
            c.modify(i, 0, &[1]).unwrap();
        }
        // All dirty: the cache grows past its limit rather than lose data.
        c.insert(100, vec![0u8; UNIT as usize]).unwrap();
        assert_eq!(c.len(), 17);
        c.mark_clean();
        c.insert(101, vec![0u8; UNIT as usize]).unwrap();
        assert!(c.len() <= 17);
        let n = c.len() as u64;
        assert_eq!(c.shrink(100), n);
        assert!(c.is_empty());
    }
}
