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
        Frames { budget: Budget::new(n as u64), refs: vec![0; n], free_bits, free: n as u64, cursor: 0, pristine: 0 }
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
                    self.refs[i] = 0;
                    self.free_bits[i / 64] |= 1u64 << (i % 64);
                    self.free += 1;
                }
                _ => self.refs[i] -= 1,
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
