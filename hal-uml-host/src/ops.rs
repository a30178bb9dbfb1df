//! Queued host map operations, merged when contiguous: the batching both
//! backends do before a space runs (skas executes the list in the stub, tt
//! in the kernel itself).

use hal::{Prot, PAGE_SIZE};

/// Words of one operation: a system call number and its six arguments.
pub const OP_WORDS: usize = 7;

/// One queued host operation: `[nr, a0, a1, a2, a3, a4, a5]`.
pub type Op = [u64; OP_WORDS];

/// `mmap` system call number.
pub const SYS_MMAP: u64 = libc::SYS_mmap as u64;
/// `mprotect` system call number.
pub const SYS_MPROTECT: u64 = libc::SYS_mprotect as u64;
/// `munmap` system call number.
pub const SYS_MUNMAP: u64 = libc::SYS_munmap as u64;

/// Batches with more map operations than this are bulk copies of an address
/// space (a fork's child); their mappings are not populated.
pub const POPULATE_MAX_OPS: usize = 4;

/// Add `MAP_POPULATE` to the small mappings (up to `max_len` bytes) of a
/// batch that is a fault's worth of work (at most [`POPULATE_MAX_OPS`] map
/// operations): the guest is about to touch them, and populating them in
/// the same host call saves it a host fault each. A bigger batch is a fork's
/// copy of the parent's mappings, most of which the child never touches
/// before it execs or exits: populating them all costs more than the few
/// host faults it would save (measured: ~10 % of a stub's fork+exit time).
#[inline]
pub fn mark_populate(ops: &mut [Op], max_len: u64) {
    if ops.iter().filter(|op| op[0] == SYS_MMAP).count() > POPULATE_MAX_OPS {
        return;
    }
    for op in ops.iter_mut() {
        if op[0] == SYS_MMAP && op[2] <= max_len {
            op[4] |= libc::MAP_POPULATE as u64;
        }
    }
}

/// Whether `[vaddr, vaddr + len)` is page-aligned and inside `[0, end)`.
#[inline]
pub fn in_window(vaddr: u64, len: u64, end: u64) -> bool {
    vaddr.is_multiple_of(PAGE_SIZE as u64)
        && len.is_multiple_of(PAGE_SIZE as u64)
        && vaddr.checked_add(len).is_some_and(|e| e <= end)
}

/// A list of map operations; each push merges with the last one when the
/// two describe one contiguous range with the same effect.
#[derive(Clone, Debug, Default)]
pub struct OpQueue {
    ops: Vec<Op>,
}

impl OpQueue {
    /// Queue `mmap(vaddr, len, prot, MAP_SHARED | MAP_FIXED, fd, paddr)`.
    #[inline]
    pub fn map(&mut self, vaddr: u64, len: u64, paddr: u64, prot: Prot, fd: i32) {
        let prot = prot.bits() as u64;
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MMAP && l[3] == prot && l[5] == fd as u64 && l[1] + l[2] == vaddr && l[6] + l[2] == paddr {
                l[2] += len;
                return;
            }
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        self.ops.push([SYS_MMAP, vaddr, len, prot, flags, fd as u64, paddr]);
    }

    /// Queue `munmap(vaddr, len)`.
    #[inline]
    pub fn unmap(&mut self, vaddr: u64, len: u64) {
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MUNMAP && l[1] + l[2] == vaddr {
                l[2] += len;
                return;
            }
            if l[0] == SYS_MUNMAP && vaddr + len == l[1] {
                l[1] = vaddr;
                l[2] += len;
                return;
            }
        }
        self.ops.push([SYS_MUNMAP, vaddr, len, 0, 0, 0, 0]);
    }

    /// Queue `mprotect(vaddr, len, prot)`.
    #[inline]
    pub fn protect(&mut self, vaddr: u64, len: u64, prot: Prot) {
        let prot = prot.bits() as u64;
        if let Some(l) = self.ops.last_mut() {
            if l[0] == SYS_MPROTECT && l[3] == prot && l[1] + l[2] == vaddr {
                l[2] += len;
                return;
            }
        }
        self.ops.push([SYS_MPROTECT, vaddr, len, prot, 0, 0, 0]);
    }

    /// Queue an operation as is (no merging, no checks): tests only.
    pub fn push_raw(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Number of queued operations.
    #[inline]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Take the queued operations, leaving the queue empty.
    #[inline]
    pub fn take(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.ops)
    }

    /// Drop everything queued.
    #[inline]
    pub fn clear(&mut self) {
        self.ops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE as u64;

    fn populated(q: &[Op]) -> Vec<bool> {
        q.iter().map(|op| op[4] & libc::MAP_POPULATE as u64 != 0).collect()
    }

    #[test]
    fn populate_only_small_maps_of_small_batches() {
        let mut q = OpQueue::default();
        q.map(0x10000, 16 * P, 0, Prot::READ, 3);
        q.map(0x40000, 17 * P, 0x100000, Prot::READ, 3);
        q.protect(0x90000, P, Prot::READ);
        let mut ops = q.take();
        mark_populate(&mut ops, 16 * P);
        assert_eq!(populated(&ops), vec![true, false, false]);
        // A fork's bulk copy: nothing populated.
        let mut q = OpQueue::default();
        for i in 0..=POPULATE_MAX_OPS as u64 {
            q.map(0x10000 + 2 * i * P, P, 2 * i * P, Prot::READ, 3);
        }
        let mut ops = q.take();
        mark_populate(&mut ops, 16 * P);
        assert!(populated(&ops).iter().all(|&p| !p));
    }
}
