//! Memory calls: brk, mmap, munmap, mprotect, madvise (the MM does the work).

use alloc::vec::Vec;

use hal::{Hal, Prot};
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::fs::{Device, Kind};
use crate::mm::{Backing, MapFlags, MappedFile, VmaKind, PAGE};
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
            Kind::File(_) => {
                if shared && prot.contains(Prot::WRITE) {
                    if !f.writable() {
                        return Err(Errno::EACCES);
                    }
                    // Writes through the mapping would not reach the ramfs file.
                    cx.log_once("mmap-shared-write", "kernel: MAP_SHARED writable file mappings are not supported yet (ENODEV)");
                    return Err(Errno::ENODEV);
                }
                let file: alloc::sync::Arc<dyn MappedFile> = f.inode.clone();
                Backing::File(file, off)
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
    Ok(mm.mmap(addr, len, prot, mflags, backing, &mut cx.k.frames)? as usize)
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

/// `madvise(addr, len, advice)`. Hints are accepted; `MADV_DONTNEED` on
/// private anonymous memory really drops the pages (they read back as
/// zeros, which programs rely on).
pub fn madvise<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (addr, len, advice) = (a[0], a[1], a[2] as u32);
    if addr % PAGE != 0 || (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let end = addr.checked_add(len).and_then(|e| e.checked_add(PAGE - 1)).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    match advice {
        g::MADV_NORMAL | g::MADV_RANDOM | g::MADV_SEQUENTIAL | g::MADV_WILLNEED | g::MADV_FREE
        | g::MADV_MERGEABLE | g::MADV_UNMERGEABLE | g::MADV_HUGEPAGE | g::MADV_NOHUGEPAGE
        | g::MADV_DONTFORK | g::MADV_DOFORK | g::MADV_DONTDUMP | g::MADV_DODUMP | g::MADV_COLD
        | g::MADV_PAGEOUT | g::MADV_KEEPONFORK | g::MADV_WIPEONFORK => Ok(0),
        g::MADV_DONTNEED => {
            if len == 0 {
                return Ok(0);
            }
            let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
            // Replace each private anonymous piece with fresh zero memory.
            let pieces: Vec<(u64, u64, Prot)> = mm
                .vmas()
                .filter(|v| v.end > addr && v.start < end && !v.shared && v.kind == VmaKind::Anonymous)
                .map(|v| (v.start.max(addr), v.end.min(end), v.prot))
                .collect();
            for (s, e, p) in pieces {
                let fl = MapFlags::FIXED | MapFlags::PRIVATE | MapFlags::ANONYMOUS;
                mm.mmap(s, e - s, p, fl, Backing::Anonymous, &mut cx.k.frames)?;
            }
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
