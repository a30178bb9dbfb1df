//! The physical frame allocator.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use hal::PhysMem;

use super::PAGE;

/// Reference-counted allocator of the frames of the physical-memory region.
///
/// Allocation is next-fit from just after the last frame handed out, so
/// consecutive allocations get consecutive frames while memory is not
/// fragmented: the host then sees contiguous offsets of its memory file
/// behind contiguous user pages, and merges them into one host VMA.
/// A free-bitmap makes the search 64 frames per step.
pub struct Frames {
    refs: Vec<u32>,
    /// Bit set = frame free.
    free_bits: Vec<u64>,
    free: u64,
    /// Where the next search starts.
    cursor: usize,
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
        Frames { refs: vec![0; n], free_bits, free: n as u64, cursor: 0 }
    }

    fn index(&self, paddr: u64) -> Option<usize> {
        if !paddr.is_multiple_of(PAGE) {
            return None;
        }
        let i = usize::try_from(paddr / PAGE).ok()?;
        (i < self.refs.len()).then_some(i)
    }

    fn find_free_from(&self, start: usize) -> Option<usize> {
        let words = self.free_bits.len();
        if words == 0 {
            return None;
        }
        let first = start / 64;
        // The first word, masked to bits at or after `start`.
        let masked = self.free_bits.get(first).copied().unwrap_or(0) & (u64::MAX << (start % 64));
        if masked != 0 {
            return Some(first * 64 + masked.trailing_zeros() as usize);
        }
        for k in 1..=words {
            let w = (first + k) % words;
            let bits = self.free_bits[w];
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }

    /// Allocate a frame: its physical address, refcount 1, contents undefined.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let start = if self.cursor >= self.refs.len() { 0 } else { self.cursor };
        let i = self.find_free_from(start)?;
        self.free_bits[i / 64] &= !(1u64 << (i % 64));
        self.refs[i] = 1;
        self.free -= 1;
        self.cursor = i + 1;
        Some(i as u64 * PAGE)
    }

    /// Allocate a zero-filled frame.
    pub fn alloc_zeroed(&mut self, phys: &impl PhysMem) -> Option<u64> {
        let p = self.alloc()?;
        phys.fill(p, PAGE, 0);
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

    /// How many frames are free.
    pub fn free_frames(&self) -> u64 {
        self.free
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
