//! The physical-memory region: one memfd, mapped shared into the kernel.
//! Shared by both backends: skas maps it into stubs, tt into the kernel's own
//! address space at guest addresses.

use hal::{PhysMem, PAGE_SIZE};
use std::io;

/// The physical-memory region: a memfd mapped shared into the kernel.
pub struct MemfdPhys {
    mem: crate::sys::SharedMemfd,
    base: *mut u8,
    size: u64,
}

impl MemfdPhys {
    /// Create a region of `size` bytes (rounded up to whole pages).
    pub fn new(size: u64) -> io::Result<MemfdPhys> {
        let size = size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "memory size is zero"));
        }
        // NORESERVE: guest memory is sparse.
        let mem = crate::sys::SharedMemfd::new(c"rustuml-phys", size as usize, true)?;
        // The kernel's heap is bounded by the guest's memory too (the backstop).
        crate::heap::set_guest_memory(size);
        Ok(MemfdPhys { base: mem.as_ptr(), mem, size })
    }

    /// The host fd of the memfd.
    pub fn fd(&self) -> i32 {
        self.mem.fd()
    }

    /// The kernel's own mapping of the region (for diagnostics and tests).
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    fn check(&self, paddr: u64, len: u64) {
        assert!(
            paddr.checked_add(len).is_some_and(|e| e <= self.size),
            "physical access {paddr:#x}+{len:#x} outside {:#x}",
            self.size
        );
    }
}

impl PhysMem for MemfdPhys {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, paddr: u64, buf: &mut [u8]) {
        self.check(paddr, buf.len() as u64);
        // SAFETY: the range is inside the mapping (checked); guest code only writes it while it runs, and the kernel is not reading then.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(paddr as usize), buf.as_mut_ptr(), buf.len()) };
    }
    fn write(&self, paddr: u64, data: &[u8]) {
        self.check(paddr, data.len() as u64);
        // SAFETY: as in `read`; `data` cannot alias the region (it would be a reference into it, which this type never hands out).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(paddr as usize), data.len()) };
    }
    fn fill(&self, paddr: u64, len: u64, byte: u8) {
        self.check(paddr, len);
        // SAFETY: the range is inside the mapping (checked).
        unsafe { std::ptr::write_bytes(self.base.add(paddr as usize), byte, len as usize) };
    }
    fn copy(&self, src: u64, dst: u64, len: u64) {
        self.check(src, len);
        self.check(dst, len);
        // SAFETY: both ranges are inside the mapping (checked); `copy` tolerates overlap should a caller break the no-overlap contract.
        unsafe { std::ptr::copy(self.base.add(src as usize), self.base.add(dst as usize), len as usize) };
    }
    fn release(&self, paddr: u64, len: u64) {
        self.check(paddr, len);
        // Punch the pages out of the memfd: the host frees them, and every
        // mapping of the range (ours, stale ones in stubs) reads zeros again.
        // SAFETY: fallocate on our own memfd, range checked; no memory of ours is touched.
        let r = unsafe { libc::fallocate(self.mem.fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, paddr as i64, len as i64) };
        if r != 0 {
            // A host without hole punching on memfds: at least clear the range.
            self.fill(paddr, len, 0);
        }
    }
}
