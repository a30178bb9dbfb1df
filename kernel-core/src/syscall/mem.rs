//! Memory calls: brk, mmap, munmap, mprotect, mremap, madvise, msync,
//! mincore (the MM does the work).

use alloc::rc::Rc;

use hal::{Hal, Prot};
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::fs::mount::FsType;
use crate::fs::{Device, Kind};
use crate::mm::{Backing, MapFlags, PageCache, PAGE};
use crate::{Errno, SysResult};

/// `brk(addr)`: returns the (possibly unchanged) break, never an error.
pub fn brk<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
    Ok(mm.brk(a[0], &mut cx.k.frames) as usize)
}

fn prot_of(p: u64) -> Result<Prot, Errno> {
    let known = (g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC) as u64;
    // PROT_GROWSDOWN/GROWSUP are accepted and ignored (mprotect only).
    let extra = (g::PROT_GROWSDOWN | g::PROT_GROWSUP) as u64;
    if p & !(known | extra) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Prot::from_bits_truncate(p as u32))
}

/// `mmap(addr, len, prot, flags, fd, off)`.
pub fn mmap<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (addr, len, prot, flags, fd, off) = (a[0], a[1], a[2], a[3] as u32, a[4], a[5]);
    if len == 0 || off % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let prot = prot_of(prot)?;
    let kind = flags & (g::MAP_SHARED | g::MAP_PRIVATE | g::MAP_SHARED_VALIDATE);
    if kind != g::MAP_SHARED && kind != g::MAP_PRIVATE && kind != g::MAP_SHARED_VALIDATE {
        return Err(Errno::EINVAL);
    }
    let shared = kind != g::MAP_PRIVATE;
    let mut mflags = MapFlags::from_bits_retain(flags);
    let backing = if flags & g::MAP_ANONYMOUS != 0 {
        Backing::Anonymous
    } else {
        let f = cx.t.fds.file(fd as i32 as i64 as u64)?;
        if f.flags.get() & g::O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        if !f.readable() {
            return Err(Errno::EACCES);
        }
        match &f.inode.kind {
            // Generated text is no file data (Linux: ENODEV for proc files).
            Kind::File(_) if matches!(cx.k.fs.fstype(f.inode.sb), FsType::Proc | FsType::Sysfs) => return Err(Errno::ENODEV),
            Kind::File(d) => {
                let sealed = d.seals() & (g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE) != 0;
                let append = f.flags.get() & g::O_APPEND != 0;
                if shared && prot.contains(Prot::WRITE) {
                    if !f.writable() || append {
                        return Err(Errno::EACCES);
                    }
                    if sealed {
                        return Err(Errno::EPERM);
                    }
                }
                Backing::Open { file: f.inode.clone(), offset: off, writable: f.writable() && !append && !sealed, name: f.path.clone() }
            }
            // /dev/zero maps as anonymous memory, as on Linux.
            Kind::Device(Device::Zero) => {
                mflags |= MapFlags::ANONYMOUS;
                Backing::Anonymous
            }
            _ => return Err(Errno::ENODEV),
        }
    };
    let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
    Ok(mm.mmap_with_phys(addr, len, prot, mflags, backing, &mut cx.k.frames, cx.hal.phys())? as usize)
}

/// `mremap(old, old_len, new_len, flags, new_addr)`.
pub fn mremap<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mm = cx.t.mm.as_mut().ok_or(Errno::EFAULT)?;
    Ok(mm.mremap(a[0], a[1], a[2], a[3] as u32, a[4], &mut cx.k.frames)? as usize)
}

/// `msync(addr, len, flags)`: the dirty pages of host files mapped shared in
/// the range are written back (for `MS_ASYNC` too: now rather than later).
/// Memory-only files have nothing to write; `MS_INVALIDATE` has nothing to
/// do (the mappings are the cache's own pages).
pub fn msync<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (addr, len, flags) = (a[0], a[1], a[2]);
    let known = u64::from(g::MS_ASYNC | g::MS_INVALIDATE | g::MS_SYNC);
    if flags & !known != 0 || (flags & u64::from(g::MS_ASYNC) != 0 && flags & u64::from(g::MS_SYNC) != 0) {
        return Err(Errno::EINVAL);
    }
    let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
    let (ranges, hole) = mm.cache_ranges(addr, len)?;
    for (c, s, e, shared) in ranges {
        if shared {
            c.writeback(s, e, &cx.k.frames, cx.hal.phys()).map_err(|_| Errno::EIO)?;
        }
    }
    if hole {
        return Err(Errno::ENOMEM);
    }
    Ok(0)
}

/// `mincore(addr, len, vec)`: a byte per page, 1 when resident (mapped, or
/// in the page cache of a mapped file).
pub fn mincore<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (addr, len, out) = (a[0], a[1], a[2]);
    if addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let pages = len.div_ceil(PAGE);
    cx.access_ok(out, pages)?;
    // A bounded piece at a time: a huge range never needs a huge buffer.
    const STEP: u64 = 1 << 16;
    let mut done = 0u64;
    while done < pages {
        let n = (pages - done).min(STEP);
        let mm = cx.t.mm.as_ref().ok_or(Errno::ENOMEM)?;
        let v = mm.mincore(addr + done * PAGE, n * PAGE)?;
        cx.write_user(out + done, &v)?;
        done += n;
    }
    Ok(0)
}

/// Remove the mappings of pages `[first, last)` of `cache` from every
/// memory map (before a truncation or hole punch drops them from the cache).
pub(super) fn invalidate_everywhere<H: Hal>(cx: &mut SysCtx<'_, H>, cache: &Rc<PageCache>, first: u64, last: u64, even_cows: bool) {
    if cache.mappings() == 0 {
        return;
    }
    if let Some(mm) = cx.t.mm.as_mut() {
        mm.invalidate_cache(cache, first, last, even_cows, &mut cx.k.frames);
    }
    for t in cx.k.procs.iter_mut() {
        if let Some(mm) = t.mm.as_mut() {
            mm.invalidate_cache(cache, first, last, even_cows, &mut cx.k.frames);
        }
    }
}

/// `munmap(addr, len)`.
pub fn munmap<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mm = cx.t.mm.as_mut().ok_or(Errno::EINVAL)?;
    // A deliberately broken kernel for checking the invariant checker
    // (feature `planted-leak`, never in a real build): munmap keeps a
    // reference to the first present frame it unmaps.
    #[cfg(feature = "planted-leak")]
    if let Some((_, frame, _, _)) = mm.ptes().find(|p| p.0 >= a[0] && p.0 < a[0].saturating_add(a[1])) {
        cx.k.frames.get(frame);
    }
    mm.munmap(a[0], a[1], &mut cx.k.frames)?;
    Ok(0)
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let prot = prot_of(a[2])?;
    let mm = cx.t.mm.as_mut().ok_or(Errno::EINVAL)?;
    mm.mprotect(a[0], a[1], prot)?;
    Ok(0)
}

/// `madvise(addr, len, advice)`. `MADV_DONTNEED` drops the pages (private
/// anonymous memory reads back as zeros, file pages read the file again);
/// `MADV_FREE` does the same for private anonymous memory; `MADV_WILLNEED`
/// reads file pages into their caches; `MADV_REMOVE` punches a hole in the
/// file or shared memory behind a shared writable mapping. Other known
/// hints are accepted and ignored.
pub fn madvise<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (addr, len, advice) = (a[0], a[1], a[2] as u32);
    if addr % PAGE != 0 || (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let end = addr.checked_add(len).and_then(|e| e.checked_add(PAGE - 1)).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    let len = end - addr;
    match advice {
        g::MADV_NORMAL | g::MADV_RANDOM | g::MADV_SEQUENTIAL | g::MADV_MERGEABLE | g::MADV_UNMERGEABLE
        | g::MADV_HUGEPAGE | g::MADV_NOHUGEPAGE | g::MADV_DONTFORK | g::MADV_DOFORK | g::MADV_DONTDUMP
        | g::MADV_DODUMP | g::MADV_COLD | g::MADV_PAGEOUT | g::MADV_KEEPONFORK | g::MADV_WIPEONFORK => Ok(0),
        _ if len == 0 => Ok(0),
        g::MADV_DONTNEED => {
            let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
            mm.discard(addr, len, &mut cx.k.frames)?;
            Ok(0)
        }
        g::MADV_FREE => {
            let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
            mm.private_anon_only(addr, len)?;
            mm.discard(addr, len, &mut cx.k.frames)?;
            Ok(0)
        }
        g::MADV_WILLNEED => {
            let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
            let (_, hole) = mm.cache_ranges(addr, len)?;
            mm.prefetch(addr, len, &mut cx.k.frames, cx.hal.phys());
            if hole {
                return Err(Errno::ENOMEM);
            }
            Ok(0)
        }
        g::MADV_REMOVE => {
            let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
            let (ranges, hole) = mm.cache_ranges(addr, len)?;
            if hole {
                return Err(Errno::ENOMEM);
            }
            // Every piece must be a shared writable mapping of a file or shmem.
            let mut p = addr;
            while p < end {
                let Some((vs, ve, shared, writable, cached)) = mm.vma_at(p) else { return Err(Errno::ENOMEM) };
                if !cached {
                    return Err(Errno::EINVAL);
                }
                if !shared || !writable {
                    return Err(Errno::EACCES);
                }
                p = ve.max(vs + PAGE);
            }
            for (c, s, e, _) in ranges {
                if c.has_store() {
                    return Err(Errno::EOPNOTSUPP);
                }
                invalidate_everywhere(cx, &c, s.div_ceil(PAGE), e / PAGE, false);
                c.punch_hole(s, e, &mut cx.k.frames, cx.hal.phys())?;
            }
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
