//! `capget`/`capset`: capabilities follow the user id here, as in a Linux
//! process that never changed them: a task with effective uid 0 holds every
//! capability, others none. `capset` may drop what a root task holds only
//! as far as the credential allows to express (requests to keep the full
//! set, or to change nothing, succeed; a non-root task can never gain any).

use hal::Hal;

use super::SysCtx;
use crate::{Errno, SysResult};

/// `_LINUX_CAPABILITY_VERSION_1/2/3`.
const V1: u32 = 0x1998_0330;
const V2: u32 = 0x2007_1026;
const V3: u32 = 0x2008_0522;
/// Capabilities Linux 6.x knows (`CAP_LAST_CAP` + 1 = 41).
const FULL: [u32; 2] = [u32::MAX, (1 << (41 - 32)) - 1];

/// Read the header: (version, pid, words of data). An unknown version is
/// answered with the preferred one written back and `EINVAL`.
fn header<H: Hal>(cx: &mut SysCtx<'_, H>, hdr: u64) -> Result<(i32, usize), Errno> {
    let b = cx.read_array::<8>(hdr)?;
    let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let pid = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let words = match version {
        V1 => 1,
        V2 | V3 => 2,
        _ => {
            cx.write_user(hdr, &V3.to_le_bytes())?;
            return Err(Errno::EINVAL);
        }
    };
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    Ok((pid, words))
}

/// The capability sets of process `pid` (0: the caller).
fn caps_of<H: Hal>(cx: &SysCtx<'_, H>, pid: i32) -> Result<[u32; 2], Errno> {
    let euid = if pid == 0 || pid as u32 == cx.t.pid || pid as u32 == cx.t.tgid {
        cx.t.cred.euid
    } else {
        cx.k.procs.get(pid as u32).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?.cred.euid
    };
    Ok(if euid == 0 { FULL } else { [0, 0] })
}

/// `capget(hdr, data)`.
pub fn capget<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    // Asking with no data buffer is how programs learn the version: 0.
    let (pid, words) = match header(cx, a[0]) {
        Err(Errno::EINVAL) if a[1] == 0 => return Ok(0),
        r => r?,
    };
    let caps = caps_of(cx, pid)?;
    if a[1] == 0 {
        return Ok(0);
    }
    // struct __user_cap_data_struct { effective, permitted, inheritable } per word.
    let mut out = [0u8; 24];
    for w in 0..words {
        out[w * 12..w * 12 + 4].copy_from_slice(&caps[w].to_le_bytes());
        out[w * 12 + 4..w * 12 + 8].copy_from_slice(&caps[w].to_le_bytes());
    }
    cx.write_user(a[1], &out[..words * 12])?;
    Ok(0)
}

/// `capset(hdr, data)`: only the caller (`EPERM` for another pid); the
/// permitted and effective sets may not grow (`EPERM`); the inheritable set
/// may not exceed the permitted one.
pub fn capset<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, words) = header(cx, a[0])?;
    if pid != 0 && pid as u32 != cx.t.tgid && pid as u32 != cx.t.pid {
        return Err(Errno::EPERM);
    }
    let have = caps_of(cx, 0)?;
    let mut b = [0u8; 24];
    cx.read_user(a[1], &mut b[..words * 12])?;
    for w in 0..words {
        let r = |o: usize| u32::from_le_bytes([b[w * 12 + o], b[w * 12 + o + 1], b[w * 12 + o + 2], b[w * 12 + o + 3]]);
        let (eff, perm, inh) = (r(0), r(4), r(8));
        if perm & !have[w] != 0 || eff & !perm != 0 || inh & !(perm | have[w]) != 0 {
            return Err(Errno::EPERM);
        }
    }
    Ok(0)
}
