//! Memory management: physical frames, per-process memory maps (VMAs and the
//! software page table), demand paging, copy-on-write, user copies, and the
//! page cache that holds file data (and shared anonymous memory) in frames.
//!
//! kernel-core is the MMU: [`MemoryMap`] keeps the VMAs and a software page
//! table and decides every mapping; the hal [`AddressSpace`](hal::AddressSpace)
//! only mirrors those decisions (queued, applied in one batch before the task
//! next runs). Guest memory is reached through [`hal::PhysMem`] copies.
//!
//! Ownership rule: a [`MemoryMap`] holds frame references; call
//! [`MemoryMap::clear`] before dropping it, or its frames leak (the map cannot
//! reach the [`Frames`] allocator from `Drop`).

mod frames;
mod map_ops;
mod memory_map;
pub mod page_cache;
mod user_copy;
mod vma;

pub use frames::Frames;
pub use memory_map::{check_refcounts, check_refcounts_with, MemoryMap, MMAP_MIN_ADDR, STACK_GROW_GAP, STACK_RESERVE};
pub use map_ops::VmaStats;
pub use page_cache::{CacheSet, PageCache};
pub use vma::{Backing, FaultError, MapFlags, MappedFile, VecFile, VmaInfo, VmaKind};

/// Page size as a `u64`.
pub const PAGE: u64 = hal::PAGE_SIZE as u64;

/// Round `x` down to a page boundary.
pub const fn page_floor(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Round `x` up to a page boundary; `None` on overflow.
pub const fn page_ceil(x: u64) -> Option<u64> {
    match x.checked_add(PAGE - 1) {
        Some(v) => Some(v & !(PAGE - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests;
