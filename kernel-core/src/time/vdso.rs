//! The vDSO in every process: the backend's image (an ELF shared object
//! whose routines read the clock without a system call, see
//! [`hal::Hal::vdso_image`]) and, one page below it, the clock data page the
//! backend keeps current ([`hal::Hal::publish_clock`]).
//!
//! Both live in kernel-owned page caches made once at boot, so every
//! process maps the same frames: the data page as a read-only shared
//! mapping of a file opened read-only (so `mprotect` can never make it
//! writable: `EACCES`, as Linux's `[vvar]`), the code as a private mapping
//! (a debugger's breakpoint gets a private copy, as on Linux). Only the
//! backend writes the data page, through its own mapping of guest memory.
//! `AT_SYSINFO_EHDR` names the image.

use alloc::rc::Rc;
use alloc::sync::Arc;
use hal::{AddressSpace, Hal, Prot};

use crate::mm::page_cache::Source;
use crate::mm::{Backing, CacheSet, Frames, MapFlags, MappedFile, MemoryMap, PageCache, VmaKind, PAGE};
use crate::Errno;

/// The largest image the kernel accepts from a backend.
const MAX_IMAGE: usize = 16 * PAGE as usize;

/// A page cache seen as a file the MM can map.
struct CacheFile(Rc<PageCache>);

impl MappedFile for CacheFile {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        self.0.read_source(off, buf)
    }
    fn page_cache(&self) -> Option<Rc<PageCache>> {
        Some(self.0.clone())
    }
}

/// The vDSO's two parts, made once per kernel.
pub struct Vdso {
    data: Arc<dyn MappedFile>,
    code: Arc<dyn MappedFile>,
    code_len: u64,
}

impl Vdso {
    /// Copy the backend's image into guest frames and give the backend the
    /// data page to keep current. `None` when the backend has no vDSO (or
    /// offers something unusable) or memory is short: processes then get
    /// no `AT_SYSINFO_EHDR` and their C library makes system calls.
    pub fn new<H: Hal>(hal: &mut H, caches: &CacheSet, frames: &mut Frames) -> Option<Vdso> {
        let image = hal.vdso_image()?.to_vec();
        if image.is_empty() || image.len() % PAGE as usize != 0 || image.len() > MAX_IMAGE || !image.starts_with(b"\x7fELF") {
            return None;
        }
        let data = PageCache::new(caches, Source::Zero, PAGE, None);
        data.write_bytes(0, &[0u8; PAGE as usize], frames, hal.phys()).ok().filter(|&n| n == PAGE as usize)?;
        let frame = data.frame_at(0)?;
        let code = PageCache::new(caches, Source::Zero, image.len() as u64, None);
        code.write_bytes(0, &image, frames, hal.phys()).ok().filter(|&n| n == image.len())?;
        hal.publish_clock(frame);
        Some(Vdso { data: Arc::new(CacheFile(data)), code: Arc::new(CacheFile(code)), code_len: image.len() as u64 })
    }

    /// Map the data page and the image into `mm` (a fresh process image)
    /// where mappings without an address go; returns the image's address
    /// (`AT_SYSINFO_EHDR`).
    pub fn map<S: AddressSpace>(&self, mm: &mut MemoryMap<S>, frames: &mut Frames) -> Result<u64, Errno> {
        let len = PAGE + self.code_len;
        let at = mm.find_free_area(len, 0, false).ok_or(Errno::ENOMEM)?;
        let fixed = MapFlags::FIXED;
        mm.mmap(at, PAGE, Prot::READ, fixed | MapFlags::SHARED, Backing::File(self.data.clone(), 0), frames)?;
        mm.set_kind(at, VmaKind::Vvar);
        let code_at = at + PAGE;
        let rx = Prot::READ | Prot::EXEC;
        mm.mmap(code_at, self.code_len, rx, fixed | MapFlags::PRIVATE, Backing::File(self.code.clone(), 0), frames)?;
        mm.set_kind(code_at, VmaKind::Vdso);
        Ok(code_at)
    }
}
