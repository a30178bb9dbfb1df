//! Virtual memory areas and the public types describing mappings.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use hal::Prot;
use linux_raw_sys::general as g;

use super::page_cache::{MapRef, PageCache};

/// A file that can back a mapping: the VFS hands one out for `mmap` and exec.
pub trait MappedFile {
    /// Current size of the file in bytes.
    fn size(&self) -> u64;
    /// Read up to `buf.len()` bytes at `off`; returns how many were read
    /// (short only at end of file).
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize;
    /// The file's page cache: mappings then map its frames (shared
    /// mappings write into them). Without one, pages are private copies
    /// taken with [`MappedFile::read_at`].
    fn page_cache(&self) -> Option<Rc<PageCache>> {
        None
    }
    /// The path `/proc/<pid>/maps` shows, if known.
    fn path(&self) -> Option<String> {
        None
    }
    /// (device, inode number) for `/proc/<pid>/maps`.
    fn ident(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// A [`MappedFile`] over bytes in memory (tests, and in-kernel images).
pub struct VecFile(pub Vec<u8>);

impl MappedFile for VecFile {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        let Ok(off) = usize::try_from(off) else { return 0 };
        let Some(src) = self.0.get(off..) else { return 0 };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        n
    }
}

/// What a new mapping is backed by.
#[derive(Clone)]
pub enum Backing {
    /// Zero-filled memory.
    Anonymous,
    /// A file, from this byte offset (page-aligned) on; a shared mapping of
    /// it can never be writable (opened read-only).
    File(Arc<dyn MappedFile>, u64),
    /// A file opened by `mmap`'s caller: `writable` says whether a shared
    /// mapping may be (or later become) writable (opened for writing, no
    /// write seal); `name` is the path `/proc/<pid>/maps` shows.
    Open {
        /// The file.
        file: Arc<dyn MappedFile>,
        /// Byte offset (page-aligned) of the mapping's start.
        offset: u64,
        /// A shared mapping may be writable.
        writable: bool,
        /// The path it was opened by.
        name: String,
    },
}

bitflags::bitflags! {
    /// `mmap` flags, with Linux's values (pass the raw argument through
    /// [`MapFlags::from_bits_retain`]; unknown bits are ignored like Linux does).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MapFlags: u32 {
        /// Changes are shared with every other mapping of the object.
        const SHARED = g::MAP_SHARED;
        /// Changes are private (copy-on-write).
        const PRIVATE = g::MAP_PRIVATE;
        /// `MAP_SHARED` with validation of unknown flags.
        const SHARED_VALIDATE = g::MAP_SHARED_VALIDATE;
        /// Place exactly at `addr`, replacing existing mappings.
        const FIXED = g::MAP_FIXED;
        /// Not backed by a file.
        const ANONYMOUS = g::MAP_ANONYMOUS;
        /// A stack that grows down on faults just below it.
        const GROWSDOWN = g::MAP_GROWSDOWN;
        /// Ignored (Linux ignores it too).
        const DENYWRITE = g::MAP_DENYWRITE;
        /// Ignored.
        const EXECUTABLE = g::MAP_EXECUTABLE;
        /// Ignored (no swapping here).
        const LOCKED = g::MAP_LOCKED;
        /// Ignored: memory is never reserved up front.
        const NORESERVE = g::MAP_NORESERVE;
        /// Fault the whole mapping in now.
        const POPULATE = g::MAP_POPULATE;
        /// Ignored.
        const NONBLOCK = g::MAP_NONBLOCK;
        /// A thread stack (a hint only).
        const STACK = g::MAP_STACK;
        /// Huge pages: not supported, refused with `EINVAL`.
        const HUGETLB = g::MAP_HUGETLB;
        /// Like `FIXED` but fail with `EEXIST` instead of replacing.
        const FIXED_NOREPLACE = g::MAP_FIXED_NOREPLACE;
        /// Place below 2 GiB.
        const MAP_32BIT = g::MAP_32BIT;
    }
}

/// Why a page fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// `SIGSEGV`: `maperr` true for `SEGV_MAPERR` (no mapping), false for
    /// `SEGV_ACCERR` (mapping forbids the access).
    Segv {
        /// No mapping at the address (as opposed to a protection violation).
        maperr: bool,
    },
    /// No free frame: the process side kills the faulting process.
    OutOfMemory,
    /// `SIGBUS`: file page entirely beyond the end of the file (or its file
    /// system is full, or its host file failed).
    Bus,
}

/// What kind of area a VMA is, for `/proc/pid/maps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// Anonymous memory (private or shared).
    Anonymous,
    /// The `brk` heap: `[heap]`.
    Heap,
    /// The main stack: `[stack]`.
    Stack,
    /// A file mapping.
    File,
    /// The vDSO's clock data page: `[vvar]`.
    Vvar,
    /// The vDSO: `[vdso]`.
    Vdso,
}

/// A description of one VMA (see [`super::MemoryMap::vmas`]).
#[derive(Clone)]
pub struct VmaInfo {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Protection.
    pub prot: Prot,
    /// `MAP_SHARED` (as opposed to private).
    pub shared: bool,
    /// What it is.
    pub kind: VmaKind,
    /// File offset of `start` (0 for anonymous memory).
    pub offset: u64,
    /// The backing file, if any.
    pub file: Option<Arc<dyn MappedFile>>,
    /// The path the file was mapped by, if known.
    pub name: Option<Rc<str>>,
    /// A shared mapping that may be made writable (private ones: true).
    pub may_write: bool,
    /// Grows down (a stack).
    pub growsdown: bool,
}

/// What a VMA maps.
#[derive(Clone)]
pub(crate) enum VmaBacking {
    /// Private zero-fill memory.
    Anon,
    /// A page cache: a file's (with `file`) or the object behind
    /// `MAP_SHARED|MAP_ANONYMOUS` (every VMA in every process mapping it
    /// sees the same frames); `offset` is the byte offset of the VMA start.
    Cache { map: MapRef, offset: u64, file: Option<Arc<dyn MappedFile>> },
    /// A file without a page cache (tests, in-kernel images): every page is
    /// a private copy; `offset` is the byte offset of the VMA start.
    File { file: Arc<dyn MappedFile>, offset: u64 },
}

impl VmaBacking {
    /// The page cache mapped, if any.
    pub(crate) fn cache(&self) -> Option<&Rc<PageCache>> {
        match self {
            VmaBacking::Cache { map, .. } => Some(&map.cache),
            _ => None,
        }
    }
}

/// One virtual memory area: `[start, end)`, page-aligned.
#[derive(Clone)]
pub(crate) struct Vma {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) prot: Prot,
    /// Created with `MAP_SHARED`.
    pub(crate) shared: bool,
    /// A shared mapping may be made writable (the file was opened for
    /// writing): `mprotect(PROT_WRITE)` gives `EACCES` otherwise.
    pub(crate) may_write: bool,
    /// The path `/proc/<pid>/maps` shows.
    pub(crate) name: Option<Rc<str>>,
    pub(crate) kind: VmaKind,
    pub(crate) growsdown: bool,
    pub(crate) backing: VmaBacking,
}

impl Vma {
    /// Split at `at` (strictly inside): `self` keeps `[start, at)`, the
    /// returned VMA is `[at, end)`.
    pub(crate) fn split_off(&mut self, at: u64) -> Vma {
        let delta = at - self.start;
        let mut hi = self.clone();
        hi.start = at;
        self.end = at;
        match &mut hi.backing {
            VmaBacking::Anon => {}
            VmaBacking::Cache { offset, .. } | VmaBacking::File { offset, .. } => *offset += delta,
        }
        // Only the lowest piece of a stack grows.
        hi.growsdown = false;
        hi
    }

    /// Whether `next` (starting at `self.end`) continues `self` exactly.
    pub(crate) fn can_merge(&self, next: &Vma) -> bool {
        if self.end != next.start
            || self.prot != next.prot
            || self.shared != next.shared
            || self.kind != next.kind
            || self.may_write != next.may_write
            || self.name != next.name
            || next.growsdown
        {
            return false;
        }
        let len = self.end - self.start;
        match (&self.backing, &next.backing) {
            (VmaBacking::Anon, VmaBacking::Anon) => true,
            (VmaBacking::Cache { map: a, offset: oa, .. }, VmaBacking::Cache { map: b, offset: ob, .. }) => {
                Rc::ptr_eq(&a.cache, &b.cache) && oa.checked_add(len) == Some(*ob)
            }
            (VmaBacking::File { file: a, offset: oa }, VmaBacking::File { file: b, offset: ob }) => {
                core::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)) && oa.checked_add(len) == Some(*ob)
            }
            _ => false,
        }
    }

    pub(crate) fn info(&self) -> VmaInfo {
        let (offset, file) = match &self.backing {
            VmaBacking::Anon => (0, None),
            VmaBacking::Cache { offset, file, .. } => (*offset, file.clone()),
            VmaBacking::File { file, offset } => (*offset, Some(file.clone())),
        };
        VmaInfo {
            start: self.start,
            end: self.end,
            prot: self.prot,
            shared: self.shared,
            kind: self.kind,
            offset,
            file,
            name: self.name.clone(),
            may_write: self.may_write,
            growsdown: self.growsdown,
        }
    }
}
