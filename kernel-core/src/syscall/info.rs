//! Identity and environment calls: arch_prctl, tid address, robust list,
//! rlimits, getrandom, uname, scheduling hints, ids.

use alloc::vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::task::RLIM_NLIMITS;
use crate::{Errno, SysResult};

// asm/prctl.h; linux-raw-sys (0.12) exports only ARCH_SET_FS of these.
const ARCH_SET_GS: u32 = 0x1001;
const ARCH_GET_FS: u32 = 0x1003;
const ARCH_GET_GS: u32 = 0x1004;

/// First non-canonical user address (47-bit user space).
const USER_TOP: u64 = 0x0000_8000_0000_0000;

/// `arch_prctl(code, addr)`.
pub fn arch_prctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (code, addr) = (a[0] as u32, a[1]);
    match code {
        g::ARCH_SET_FS | ARCH_SET_GS => {
            if addr >= USER_TOP {
                return Err(Errno::EPERM);
            }
            if code == g::ARCH_SET_FS {
                cx.t.ctx.regs.fs_base = addr;
            } else {
                cx.t.ctx.regs.gs_base = addr;
            }
            Ok(0)
        }
        ARCH_GET_FS | ARCH_GET_GS => {
            let v = if code == ARCH_GET_FS { cx.t.ctx.regs.fs_base } else { cx.t.ctx.regs.gs_base };
            cx.write_user(addr, &v.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `set_tid_address(tidptr)`.
pub fn set_tid_address<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    cx.t.clear_child_tid = a[0];
    Ok(cx.t.pid as usize)
}

/// `set_robust_list(head, len)`: stored only (no threads yet).
pub fn set_robust_list<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    cx.t.robust_list = (a[0], a[1]);
    Ok(0)
}

/// `rseq`: not supported; libcs fall back when it fails with ENOSYS.
pub fn rseq<H: Hal>(_cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Err(Errno::ENOSYS)
}

fn rlimit_bytes(l: (u64, u64)) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&l.0.to_le_bytes());
    b[8..16].copy_from_slice(&l.1.to_le_bytes());
    b
}

/// `prlimit64(pid, resource, new, old)`.
pub fn prlimit64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, res, new, old) = (a[0] as u32, a[1], a[2], a[3]);
    if res >= RLIM_NLIMITS as u64 {
        return Err(Errno::EINVAL);
    }
    let res = res as usize;
    let newl = if new != 0 {
        let b = cx.read_array::<16>(new)?;
        let cur = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let max = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        if cur > max {
            return Err(Errno::EINVAL);
        }
        Some((cur, max))
    } else {
        None
    };
    let cur = if pid == 0 || pid == cx.t.pid {
        cx.t.rlimits[res]
    } else {
        cx.k.procs.get(pid).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?.rlimits[res]
    };
    if old != 0 {
        cx.write_user(old, &rlimit_bytes(cur))?;
    }
    if let Some(l) = newl {
        if res == g::RLIMIT_NOFILE as usize && l.1 > 1 << 20 {
            return Err(Errno::EPERM);
        }
        if pid == 0 || pid == cx.t.pid {
            cx.t.rlimits[res] = l;
        } else if let Some(t) = cx.k.procs.get_mut(pid) {
            t.rlimits[res] = l;
        }
    }
    Ok(0)
}

/// `getrlimit(resource, rlim)`.
pub fn getrlimit<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    prlimit64(cx, [0, a[0], 0, a[1], 0, 0])
}

/// `setrlimit(resource, rlim)`.
pub fn setrlimit<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[1] == 0 {
        return Err(Errno::EFAULT);
    }
    prlimit64(cx, [0, a[0], a[1], 0, 0, 0])
}

/// `getrandom(buf, len, flags)`.
pub fn getrandom<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[2] as u32;
    if flags & !(g::GRND_NONBLOCK | g::GRND_RANDOM | g::GRND_INSECURE) != 0
        || flags & (g::GRND_RANDOM | g::GRND_INSECURE) == (g::GRND_RANDOM | g::GRND_INSECURE)
    {
        return Err(Errno::EINVAL);
    }
    // Linux returns at most 32 MiB - 1 per call.
    let len = a[1].min((32 << 20) - 1) as usize;
    let mut buf = vec![0u8; len.min(4096)];
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(buf.len());
        cx.hal.random(&mut buf[..n]);
        if let Err(e) = cx.write_user(a[0] + done as u64, &buf[..n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n;
    }
    Ok(done)
}

/// `uname(buf)`: sysname Linux, the configured release and hostname.
pub fn uname<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mut b = [0u8; 65 * 6];
    let fields: [&[u8]; 6] = [
        b"Linux",
        cx.k.hostname.as_bytes(),
        cx.k.release.as_bytes(),
        b"#1 SMP rustuml",
        b"x86_64",
        b"(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        b[i * 65..i * 65 + n].copy_from_slice(&f[..n]);
    }
    cx.write_user(a[0], &b)?;
    Ok(0)
}

/// `sched_yield()`: give up the rest of the timeslice.
pub fn sched_yield<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    cx.t.slice_end = 0;
    Ok(0)
}

/// `sched_getaffinity(pid, size, mask)`: one CPU.
pub fn sched_getaffinity<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, size) = (a[0] as u32, a[1]);
    if size < 8 || size % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    if pid != 0 && pid != cx.t.pid && !cx.k.procs.contains(pid) {
        return Err(Errno::ESRCH);
    }
    cx.write_user(a[2], &1u64.to_le_bytes())?;
    Ok(8)
}

/// `sched_setaffinity(pid, size, mask)`: one CPU, so any mask that includes
/// CPU 0 is accepted (the other bits name CPUs that do not exist and are
/// ignored, as Linux intersects the mask with the online CPUs) and any other
/// is `EINVAL`. As in Linux, a short `size` reads only that many bytes (the
/// rest counts as zero), a longer one only the first 8.
pub fn sched_setaffinity<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, size) = (a[0] as u32, a[1]);
    let mut mask = [0u8; 8];
    let n = size.min(8) as usize;
    // Linux copies the mask in before looking the task up: EFAULT wins.
    cx.read_user(a[2], &mut mask[..n])?;
    if pid != 0 && pid != cx.t.pid && !cx.k.procs.contains(pid) {
        return Err(Errno::ESRCH);
    }
    if mask[0] & 1 == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

