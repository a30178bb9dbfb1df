//! The physical frame allocator.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use hal::PhysMem;

use super::PAGE;
use crate::budget::{Budget, BudgetRef};

/// Reference-counted allocator of the frames of the physical-memory region.
///
/// Allocation is next-fit from just after the last frame handed out, among
/// the frames used before (see `alloc_index`), so consecutive allocations get
/// consecutive frames while memory is not fragmented: the host then sees
/// contiguous offsets of its memory file behind contiguous user pages, and
/// merges them into one host VMA.
/// A free-bitmap makes the search 64 frames per step.
///
/// The region reads as zeros when created (see [`hal::PhysMem`]), so a frame
/// that was never handed out is already zeroed: [`Frames::alloc_zeroed`]
/// does not write it. On the real backends that matters: the first write to
/// a page of the memory file makes the host allocate and clear it, so
/// zeroing it here too would double the cost of fresh memory.
///
/// Every frame handed out takes a page of the guest's [`Budget`], which the
/// kernel's own objects draw from too: frames the kernel's bytes stand for
/// are never handed out, and [`Frames::free_frames`] does not count them.
pub struct Frames {
    budget: BudgetRef,
    refs: Vec<u32>,
    /// Bit set = frame free.
    free_bits: Vec<u64>,
    free: u64,
    /// Where the next search starts.
    cursor: usize,
    /// Frames at or above this index were never handed out (still zero).
    pristine: usize,
    /// Bit set = the frame was used and not given back to the host since:
    /// the host holds memory for it.
    resident_bits: Vec<u64>,
    /// Free frames the host still holds memory for.
    free_resident: u64,
    /// Free resident frames to keep for quick reuse (see [`Frames::trim`]).
    low_water: u64,
}

impl Frames {
    /// An allocator over a region of `phys_size` bytes (whole pages used).
    pub fn new(phys_size: u64) -> Frames {
        let n = usize::try_from(phys_size / PAGE).unwrap_or(usize::MAX);
        let mut free_bits = vec![u64::MAX; n.div_ceil(64)];
        if n % 64 != 0 {
            if let Some(last) = free_bits.last_mut() {
                *last = (1u64 << (n % 64)) - 1;
            }
        }
        let words = free_bits.len();
        // Keep 1/64 of memory (at least 1 MiB) of freed frames backed for reuse.
        // Enough free memory stays backed that a fork/exit or mmap/munmap
        // churn reuses it instead of faulting it in again from the host.
        let low_water = (n as u64 / 16).max(256);
        Frames {
            budget: Budget::new(n as u64),
            refs: vec![0; n],
            free_bits,
            free: n as u64,
            cursor: 0,
            pristine: 0,
            resident_bits: vec![0; words],
            free_resident: 0,
            low_water,
        }
    }

    /// The guest's memory budget (shared with every charged kernel object).
    pub fn budget(&self) -> &BudgetRef {
        &self.budget
    }

    fn index(&self, paddr: u64) -> Option<usize> {
        if !paddr.is_multiple_of(PAGE) {
            return None;
        }
        let i = usize::try_from(paddr / PAGE).ok()?;
        (i < self.refs.len()).then_some(i)
    }

    /// Allocate a frame: its physical address, refcount 1, contents undefined.
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_index().map(|(i, _)| i as u64 * PAGE)
    }

    /// The first free frame in `[start, limit)`, else in `[0, start)`.
    fn find_free_below(&self, start: usize, limit: usize) -> Option<usize> {
        let scan = |from: usize, to: usize| -> Option<usize> {
            let mut w = from / 64;
            while w * 64 < to {
                let mut bits = self.free_bits[w];
                if w == from / 64 {
                    bits &= u64::MAX << (from % 64);
                }
                if bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    return (i < to).then_some(i);
                }
                w += 1;
            }
            None
        };
        scan(start, limit).or_else(|| scan(0, start.min(limit)))
    }

    /// Allocate: the frame's index, and whether it was never handed out before.
    ///
    /// Frames that were used before are preferred (next-fit among them):
    /// on the real backends they are already backed by host memory, while a
    /// never-used frame costs a host page allocation and clearing on first
    /// touch — for a fork/exec/exit churn that would be paid on every
    /// allocation until the cursor had gone round the whole region. So the
    /// used part of the region grows (by one frame at a time, keeping
    /// consecutive allocations consecutive) only when it has no free frame.
    fn alloc_index(&mut self) -> Option<(usize, bool)> {
        if self.free == 0 {
            return None;
        }
        // Invariant: every frame at or above `pristine` is free.
        let free_used = self.free as usize - (self.refs.len() - self.pristine);
        let (i, fresh) = if free_used > 0 {
            (self.find_free_below(self.cursor.min(self.pristine), self.pristine)?, false)
        } else {
            (self.pristine, true)
        };
        if !self.budget.take_guest_page() {
            return None;
        }
        let bit = 1u64 << (i % 64);
        if self.resident_bits[i / 64] & bit != 0 {
            self.free_resident -= 1;
        }
        self.resident_bits[i / 64] |= bit;
        self.free_bits[i / 64] &= !(1u64 << (i % 64));
        self.refs[i] = 1;
        self.free -= 1;
        self.cursor = i + 1;
        if fresh {
            self.pristine = i + 1;
        }
        Some((i, fresh))
    }

    /// Allocate a zero-filled frame (written only if it was used before).
    pub fn alloc_zeroed(&mut self, phys: &impl PhysMem) -> Option<u64> {
        let (i, fresh) = self.alloc_index()?;
        let p = i as u64 * PAGE;
        if !fresh {
            phys.fill(p, PAGE, 0);
        }
        Some(p)
    }

    /// Take one more reference to an allocated frame. A free or invalid frame
    /// is ignored (a kernel bug that [`Frames::refcount`] checks reveal).
    pub fn get(&mut self, paddr: u64) {
        if let Some(i) = self.index(paddr) {
            if self.refs[i] > 0 {
                self.refs[i] = self.refs[i].saturating_add(1);
            }
        }
    }

    /// Drop one reference; the frame is freed when none remain.
    pub fn put(&mut self, paddr: u64) {
        if let Some(i) = self.index(paddr) {
            match self.refs[i] {
                0 => {}
                1 => {
                    self.budget.put_guest_page();
                    self.free_resident += 1;
                    self.refs[i] = 0;
                    self.free_bits[i / 64] |= 1u64 << (i % 64);
                    self.free += 1;
                }
                _ => self.refs[i] -= 1,
            }
        }
    }

    /// Are there so many freed frames still backed by host memory that
    /// [`Frames::trim`] should give some back?
    pub fn wants_trim(&self) -> bool {
        self.free_resident > 2 * self.low_water
    }

    /// Free frames still backed by host memory.
    pub fn free_resident(&self) -> u64 {
        self.free_resident
    }

    /// Give the host memory of free frames back (hole punching, see
    /// [`hal::PhysMem::release`]) until only the low-water mark stays
    /// backed, highest frames first, so a guest that had a burst does not
    /// keep its memory for ever. Released frames read as zeros again but
    /// stay "used before" for the allocator (they are zeroed when reused,
    /// so nothing depends on the host having cleared them).
    pub fn trim(&mut self, phys: &impl PhysMem) {
        let mut w = self.resident_bits.len();
        while self.free_resident > self.low_water && w > 0 {
            w -= 1;
            let mut cand = self.resident_bits[w] & self.free_bits[w];
            while cand != 0 && self.free_resident > self.low_water {
                // A run of consecutive candidates, released with one call.
                let hi = 63 - cand.leading_zeros() as usize;
                let mut lo = hi;
                while lo > 0 && cand >> (lo - 1) & 1 == 1 && self.free_resident > self.low_water + (hi - lo + 1) as u64 {
                    lo -= 1;
                }
                let run = (hi - lo + 1) as u64;
                let mask = if run == 64 { u64::MAX } else { ((1u64 << run) - 1) << lo };
                phys.release((w * 64 + lo) as u64 * PAGE, run * PAGE);
                self.resident_bits[w] &= !mask;
                cand &= !mask;
                self.free_resident -= run;
            }
        }
    }

    /// The reference count of a frame (0: free or not a frame).
    pub fn refcount(&self, paddr: u64) -> u32 {
        self.index(paddr).map_or(0, |i| self.refs[i])
    }

    /// How many frames are free: neither the guest's nor standing for the
    /// kernel's own objects.
    pub fn free_frames(&self) -> u64 {
        self.free.min(self.budget.free_pages())
    }

    /// How many frames the region has.
    pub fn total_frames(&self) -> u64 {
        self.refs.len() as u64
    }

    /// Leak check: `Ok` if every frame is free (after every map was cleared).
    pub fn check_all_free(&self) -> Result<(), String> {
        self.check_consistent()?;
        match self.refs.iter().position(|&r| r != 0) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{} frames leaked, first at {:#x} (refcount {})",
                self.total_frames() - self.free,
                i as u64 * PAGE,
                self.refs[i]
            )),
        }
    }

    /// Internal consistency: bitmap, counts and refcounts agree.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut free = 0u64;
        for (i, &r) in self.refs.iter().enumerate() {
            let bit = self.free_bits[i / 64] >> (i % 64) & 1 == 1;
            if bit != (r == 0) {
                return Err(format!("frame {i}: free bit {bit} but refcount {r}"));
            }
            free += u64::from(r == 0);
        }
        if free != self.free {
            return Err(format!("free count {} but {} frames free", self.free, free));
        }
        Ok(())
    }

    /// Every allocated frame with its reference count (for invariant checks).
    pub fn allocated(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.refs.iter().enumerate().filter(|(_, &r)| r != 0).map(|(i, &r)| (i as u64 * PAGE, r))
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;
    use core::cell::RefCell;

    /// A region that records what was given back to the host.
    struct Phys(RefCell<Vec<(u64, u64)>>);
    impl PhysMem for Phys {
        fn size(&self) -> u64 {
            1 << 30
        }
        fn read(&self, _p: u64, buf: &mut [u8]) {
            buf.fill(0);
        }
        fn write(&self, _p: u64, _d: &[u8]) {}
        fn fill(&self, _p: u64, _l: u64, _b: u8) {}
        fn copy(&self, _s: u64, _d: u64, _l: u64) {}
        fn release(&self, p: u64, l: u64) {
            self.0.borrow_mut().push((p, l));
        }
    }

    #[test]
    fn a_freed_burst_goes_back_to_the_host_down_to_the_low_water_mark() {
        let mut f = Frames::new(4096 * PAGE);
        let phys = Phys(RefCell::new(Vec::new()));
        let got: Vec<u64> = (0..3000).map(|_| f.alloc_zeroed(&phys).unwrap()).collect();
        assert!(!f.wants_trim());
        for p in &got {
            f.put(*p);
        }
        assert_eq!(f.free_resident(), 3000);
        assert!(f.wants_trim());
        f.trim(&phys);
        assert_eq!(f.free_resident(), f.low_water);
        let released: u64 = phys.0.borrow().iter().map(|&(_, l)| l / PAGE).sum();
        assert_eq!(released, 3000 - f.low_water);
        // Runs are merged: far fewer calls than frames.
        assert!(phys.0.borrow().len() < 100, "{} calls", phys.0.borrow().len());
        // Released frames are reusable, and counted resident again when used.
        let again: Vec<u64> = (0..3000).map(|_| f.alloc_zeroed(&phys).unwrap()).collect();
        assert_eq!(f.free_resident(), 0);
        for p in again {
            f.put(p);
        }
        f.check_all_free().unwrap();
    }

    #[test]
    fn kernel_bytes_take_frames_from_the_guest() {
        let mut f = Frames::new(1024 * PAGE);
        let phys = Phys(RefCell::new(Vec::new()));
        let b = f.budget().clone();
        let c = crate::budget::Charge::new(&b, crate::budget::Kind::Socket, 512 * PAGE as usize).unwrap();
        assert_eq!(f.free_frames(), 512);
        let got: Vec<u64> = core::iter::from_fn(|| f.alloc_zeroed(&phys)).collect();
        assert_eq!(got.len(), 512, "the guest gets what the kernel does not hold");
        drop(c);
        assert!(f.alloc_zeroed(&phys).is_some());
    }
}
