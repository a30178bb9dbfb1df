//! Physical memory and user address spaces.

bitflags::bitflags! {
    /// Page protection of a user mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u32 {
        /// Readable.
        const READ = 1;
        /// Writable.
        const WRITE = 2;
        /// Executable.
        const EXEC = 4;
    }
}

/// Size of a page and of a physical frame.
pub const PAGE_SIZE: usize = 4096;

/// The physical-memory region: one block of bytes shared between the kernel
/// and running guest code. Frames are byte offsets into it.
///
/// The region reads as zeros when created (`kernel-core` relies on it to
/// skip zeroing frames it never used).
///
/// Guest code may change the bytes at any time while it runs, so the region
/// hands out copy operations, never references. Offsets and lengths are always
/// within [`PhysMem::size`]: `kernel-core` only passes frames it allocated,
/// and an out-of-range access is a kernel bug (implementations may panic).
pub trait PhysMem {
    /// Size of the region in bytes (a multiple of [`PAGE_SIZE`]).
    fn size(&self) -> u64;
    /// Copy `buf.len()` bytes starting at `paddr` into `buf`.
    fn read(&self, paddr: u64, buf: &mut [u8]);
    /// Copy `data` to the region starting at `paddr`.
    fn write(&self, paddr: u64, data: &[u8]);
    /// Set `len` bytes starting at `paddr` to `byte`.
    fn fill(&self, paddr: u64, len: u64, byte: u8);
    /// Copy `len` bytes from `src` to `dst` inside the region (ranges do not
    /// overlap); used for copy-on-write.
    fn copy(&self, src: u64, dst: u64, len: u64);
    /// Give the host memory behind `len` bytes at `paddr` back to the host
    /// (free frames past the allocator's low-water mark): afterwards the
    /// range reads as zeros. The default only zeroes it.
    fn release(&self, paddr: u64, len: u64) {
        self.fill(paddr, len, 0);
    }
}

/// A user address space as the host sees it.
///
/// `kernel-core` keeps the page tables and decides every mapping; the backend
/// only mirrors those decisions into the host. Operations are *queued* and
/// applied together before user code next runs in this space ([`crate::Hal::run`]),
/// so an implementation may merge contiguous operations and must not make one
/// host round trip per call. All addresses and lengths are page-aligned and
/// below [`AddressSpace::user_end`].
pub trait AddressSpace {
    /// Map `len` bytes of physical memory starting at `paddr` at user address
    /// `vaddr` with protection `prot`, replacing whatever was mapped there.
    ///
    /// Frames stop being reachable from a host space only once its queued
    /// operations are applied. A backend confirms that before its next
    /// [`crate::Hal::run`] returns for operations that take access away
    /// ([`AddressSpace::unmap`], [`AddressSpace::protect`]), and before it
    /// runs another space for the rest; so a frame whose mapping `map`
    /// replaced must stay allocated until the kernel runs another space (a
    /// copy-on-write break keeps it: another process still holds it).
    fn map(&mut self, vaddr: u64, len: u64, paddr: u64, prot: Prot);
    /// Remove any mapping in `[vaddr, vaddr + len)`.
    fn unmap(&mut self, vaddr: u64, len: u64);
    /// Change the protection of mapped pages in `[vaddr, vaddr + len)`.
    fn protect(&mut self, vaddr: u64, len: u64, prot: Prot);
    /// The first address user mappings may not reach (the backend keeps what
    /// lies above, e.g. its stub, for itself).
    fn user_end(&self) -> u64;
    /// CPU time (ns) the host has seen this space's guest code use in user
    /// mode so far, if the backend can tell (the kernel uses it to split its
    /// tasks' time into user and system time). Costs a host system call:
    /// the kernel asks at most once per task switch or tick.
    fn user_cpu_ns(&self) -> Option<u64> {
        None
    }
    /// Whether the backend has lost the host context of this space (see
    /// [`crate::Interrupts::LOST`]); the next [`crate::Hal::run`] would
    /// return [`crate::Trap::Lost`].
    fn is_lost(&self) -> bool {
        false
    }
}
