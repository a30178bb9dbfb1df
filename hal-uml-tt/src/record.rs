//! A space's record of its mappings: maximal runs of pages that are
//! contiguous in both user and physical address and share one protection.
//! The tt backend keeps one per address space (what must be mapped when it is
//! switched in) and one for the window (what is mapped on the host now, so
//! it can be unmapped when another space is switched in).

use hal::Prot;
use std::collections::BTreeMap;

/// One mapped run `[start, end)` backed by physical memory from `paddr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    /// End of the run (exclusive).
    pub end: u64,
    /// Physical address of `start`.
    pub paddr: u64,
    /// Protection of the whole run.
    pub prot: Prot,
}

/// Mappings of one address space, keyed by start address; runs never
/// overlap and adjacent compatible runs are always merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    segs: BTreeMap<u64, Seg>,
}

impl Record {
    /// An empty record.
    pub const fn new() -> Record {
        Record { segs: BTreeMap::new() }
    }

    /// Split the run containing `at` (if it starts before `at`) in two.
    fn split(&mut self, at: u64) {
        let found = self.segs.range(..at).next_back().map(|(&s, &g)| (s, g));
        if let Some((s, g)) = found {
            if g.end > at {
                self.segs.insert(s, Seg { end: at, ..g });
                self.segs.insert(at, Seg { end: g.end, paddr: g.paddr + (at - s), prot: g.prot });
            }
        }
    }

    /// Remove everything in `[start, end)`.
    fn cut(&mut self, start: u64, end: u64) {
        self.split(start);
        self.split(end);
        let keys: Vec<u64> = self.segs.range(start..end).map(|(&k, _)| k).collect();
        for k in keys {
            self.segs.remove(&k);
        }
    }

    /// Merge compatible neighbours among the runs touching `[start, end]`.
    fn coalesce(&mut self, start: u64, end: u64) {
        let from = self.segs.range(..start).next_back().map_or(start, |(&k, _)| k);
        let keys: Vec<u64> = self.segs.range(from..=end).map(|(&k, _)| k).collect();
        let mut prev: Option<u64> = None;
        for k in keys {
            let cur = self.segs[&k];
            if let Some(p) = prev {
                let pg = self.segs[&p];
                if pg.end == k && pg.prot == cur.prot && pg.paddr + (k - p) == cur.paddr {
                    self.segs.insert(p, Seg { end: cur.end, ..pg });
                    self.segs.remove(&k);
                    continue;
                }
            }
            prev = Some(k);
        }
    }

    /// Record a mapping, replacing what was there.
    pub fn map(&mut self, start: u64, len: u64, paddr: u64, prot: Prot) {
        let end = start + len;
        self.cut(start, end);
        self.segs.insert(start, Seg { end, paddr, prot });
        self.coalesce(start, end);
    }

    /// Record the removal of `[start, start + len)`.
    pub fn unmap(&mut self, start: u64, len: u64) {
        self.cut(start, start + len);
    }

    /// Change the protection of the mapped pages in `[start, start + len)`
    /// (holes stay holes).
    pub fn protect(&mut self, start: u64, len: u64, prot: Prot) {
        let end = start + len;
        self.split(start);
        self.split(end);
        for (_, g) in self.segs.range_mut(start..end) {
            g.prot = prot;
        }
        self.coalesce(start, end);
    }

    /// The runs, in address order: `(start, run)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Seg)> + '_ {
        self.segs.iter().map(|(&s, &g)| (s, g))
    }

    /// Maximal address ranges covered, ignoring physical address and
    /// protection (what `munmap` needs).
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, g) in self.iter() {
            match out.last_mut() {
                Some(l) if l.1 == s => l.1 = g.end,
                _ => out.push((s, g.end)),
            }
        }
        out
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.segs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: u64 = 4096;
    const R: Prot = Prot::READ;
    fn rw() -> Prot {
        Prot::READ | Prot::WRITE
    }

    fn segs(r: &Record) -> Vec<(u64, u64, u64, Prot)> {
        r.iter().map(|(s, g)| (s, g.end, g.paddr, g.prot)).collect()
    }

    #[test]
    fn pages_mapped_one_by_one_merge() {
        let mut r = Record::new();
        for i in 0..64 {
            r.map(0x10000 + i * P, P, i * P, R);
        }
        assert_eq!(segs(&r), vec![(0x10000, 0x10000 + 64 * P, 0, R)]);
        // Out of order too.
        let mut r = Record::new();
        for i in [3u64, 1, 0, 2] {
            r.map(i * P, P, 0x100000 + i * P, R);
        }
        assert_eq!(segs(&r), vec![(0, 4 * P, 0x100000, R)]);
    }

    #[test]
    fn discontiguous_physical_or_prot_stay_apart() {
        let mut r = Record::new();
        r.map(0, P, 0, R);
        r.map(P, P, 5 * P, R);
        r.map(2 * P, P, 6 * P, rw());
        assert_eq!(r.len(), 3);
        assert_eq!(r.ranges(), vec![(0, 3 * P)]);
    }

    #[test]
    fn unmap_and_protect_split_and_remerge() {
        let mut r = Record::new();
        r.map(0, 8 * P, 0, R);
        r.unmap(2 * P, 2 * P);
        assert_eq!(segs(&r), vec![(0, 2 * P, 0, R), (4 * P, 8 * P, 4 * P, R)]);
        r.protect(P, 5 * P, rw()); // covers a hole: holes stay holes
        assert_eq!(
            segs(&r),
            vec![(0, P, 0, R), (P, 2 * P, P, rw()), (4 * P, 6 * P, 4 * P, rw()), (6 * P, 8 * P, 6 * P, R)]
        );
        r.protect(0, 8 * P, R);
        r.map(2 * P, 2 * P, 2 * P, R);
        assert_eq!(segs(&r), vec![(0, 8 * P, 0, R)]);
        r.map(2 * P, P, 0x9000 * P, R); // replaces the middle
        assert_eq!(r.len(), 3);
        r.unmap(0, 8 * P);
        assert!(r.is_empty());
    }

    /// Random operations against a page-by-page model: same pages, and runs
    /// always maximal (no two adjacent runs that could be one).
    #[test]
    fn random_operations_match_a_page_model() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let prots = [Prot::READ, Prot::READ | Prot::WRITE, Prot::empty()];
        let mut r = Record::new();
        let mut model: std::collections::BTreeMap<u64, (u64, Prot)> = Default::default();
        for _ in 0..5000 {
            let start = next(64);
            let len = 1 + next(8);
            let prot = prots[next(3) as usize];
            match next(3) {
                0 => {
                    let pa = next(16) * 4;
                    r.map(start * P, len * P, pa * P, prot);
                    for i in 0..len {
                        model.insert(start + i, (pa + i, prot));
                    }
                }
                1 => {
                    r.unmap(start * P, len * P);
                    for i in 0..len {
                        model.remove(&(start + i));
                    }
                }
                _ => {
                    r.protect(start * P, len * P, prot);
                    for i in 0..len {
                        if let Some(e) = model.get_mut(&(start + i)) {
                            e.1 = prot;
                        }
                    }
                }
            }
            let mut pages = std::collections::BTreeMap::new();
            let mut last: Option<(u64, Seg)> = None;
            for (s, g) in r.iter() {
                assert!(s < g.end);
                if let Some((ls, lg)) = last {
                    assert!(lg.end <= s, "overlap");
                    let mergeable = lg.end == s && lg.prot == g.prot && lg.paddr + (s - ls) == g.paddr;
                    assert!(!mergeable, "runs not merged: {ls:#x} {lg:?} / {s:#x} {g:?}");
                }
                for va in (s..g.end).step_by(P as usize) {
                    pages.insert(va / P, ((g.paddr + (va - s)) / P, g.prot));
                }
                last = Some((s, g));
            }
            assert_eq!(pages, model);
        }
    }
}
