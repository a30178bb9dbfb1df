//! Small calls that real userlands make on every start and that no
//! subsystem owns: `sysinfo` (procps, python, coreutils' `sort`), `prctl`
//! (procps, bash, python threads), `fadvise64` (coreutils' `cat`, `tar`),
//! `getcpu` hints.

use alloc::vec;

use hal::Hal;

use super::SysCtx;
use crate::{Errno, SysResult};

/// Guest page size.
const PAGE: u64 = 4096;

/// `sysinfo(info)`: uptime, memory in pages of 4 KiB (`mem_unit` 4096), the
/// number of processes; loads are 0 (no load average is kept).
pub fn sysinfo<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    // struct sysinfo on x86_64: 112 bytes.
    let mut b = vec![0u8; 112];
    let uptime = cx.hal.now_ns() / 1_000_000_000;
    let total = cx.k.frames.total_frames();
    let free = cx.k.frames.free_frames();
    let procs = cx.k.procs.len() as u64 + 1; // the caller is taken out of the table while it runs
    b[0..8].copy_from_slice(&uptime.to_le_bytes());
    // loads[3] at 8..32 stay 0
    b[32..40].copy_from_slice(&total.to_le_bytes()); // totalram
    b[40..48].copy_from_slice(&free.to_le_bytes()); // freeram
    b[48..56].copy_from_slice(&cx.k.fs.caches.stats().shmem.to_le_bytes()); // sharedram
    // bufferram, totalswap, freeswap at 56..80 stay 0
    b[80..82].copy_from_slice(&(procs.min(u16::MAX as u64) as u16).to_le_bytes());
    // totalhigh, freehigh at 88..104 stay 0
    b[104..108].copy_from_slice(&(PAGE as u32).to_le_bytes()); // mem_unit
    cx.write_user(a[0], &b)?;
    Ok(0)
}

// linux/prctl.h
const PR_SET_PDEATHSIG: u64 = 1;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_GET_KEEPCAPS: u64 = 7;
const PR_SET_KEEPCAPS: u64 = 8;
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
const PR_CAPBSET_READ: u64 = 23;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_NO_NEW_PRIVS: u64 = 39;
const PR_SET_VMA: u64 = 0x53564d41;

/// `prctl(option, ...)`: the options runtimes set. The name, death
/// signal, dumpability, "no new privileges" and child-subreaper flag are
/// kept per task and act as on Linux (the death signal is sent when the
/// parent process exits; orphans go to the nearest subreaper ancestor).
pub fn prctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    match a[0] {
        PR_SET_PDEATHSIG => {
            if a[1] > 64 {
                return Err(Errno::EINVAL);
            }
            cx.t.pdeathsig = a[1] as u32;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            cx.write_user(a[1], &cx.t.pdeathsig.to_le_bytes())?;
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            cx.write_user(a[1], &u32::from(cx.t.subreaper).to_le_bytes())?;
            Ok(0)
        }
        PR_GET_DUMPABLE => Ok(usize::from(cx.t.dumpable)),
        PR_SET_DUMPABLE => {
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            cx.t.dumpable = a[1] == 1;
            Ok(0)
        }
        PR_GET_KEEPCAPS => Ok(0),
        PR_GET_NO_NEW_PRIVS => {
            if a[1] != 0 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(usize::from(cx.t.no_new_privs))
        }
        PR_SET_KEEPCAPS => {
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            Ok(0)
        }
        PR_SET_NAME => {
            // Linux copies 16 bytes and keeps 15 and a NUL: a longer name is cut.
            let name = match cx.read_cstring(a[1], 15) {
                Err(Errno::ENAMETOOLONG) => {
                    let mut b = [0u8; 15];
                    cx.read_user(a[1], &mut b)?;
                    b.to_vec()
                }
                r => r?,
            };
            cx.t.comm = alloc::string::String::from_utf8_lossy(&name[..name.len().min(15)]).into_owned();
            Ok(0)
        }
        PR_GET_NAME => {
            let mut name = [0u8; 16];
            let c = cx.t.comm.as_bytes();
            let n = c.len().min(15);
            name[..n].copy_from_slice(&c[..n]);
            cx.write_user(a[1], &name)?;
            Ok(0)
        }
        // Root inside the guest holds every capability.
        PR_CAPBSET_READ => {
            if a[1] > 40 {
                return Err(Errno::EINVAL);
            }
            Ok(1)
        }
        PR_SET_CHILD_SUBREAPER => {
            cx.t.subreaper = a[1] != 0;
            Ok(0)
        }
        PR_SET_NO_NEW_PRIVS => {
            if a[1] != 1 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            cx.t.no_new_privs = true;
            Ok(0)
        }
        PR_SET_VMA => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// `fadvise64(fd, offset, len, advice)`: advice only; checks the fd and
/// the advice as Linux does (pipes: ESPIPE is not reported by Linux 6.x
/// for every file type, so only EBADF and EINVAL are).
pub fn fadvise64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    cx.t.fds.file(a[0])?;
    if a[3] > 5 || (a[2] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// `getcpu(cpu, node, cache)`: one CPU, one node.
pub fn getcpu<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] != 0 {
        cx.write_user(a[0], &0u32.to_le_bytes())?;
    }
    if a[1] != 0 {
        cx.write_user(a[1], &0u32.to_le_bytes())?;
    }
    Ok(0)
}

/// `uretprobe()`: the return-probe trampoline's call, valid only from a
/// trampoline the kernel placed, which guests never have; Linux answers
/// any other caller with `SIGILL` (forced: a blocked or ignored `SIGILL`
/// kills) and -1.
pub fn uretprobe<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    cx.k.fault_signal(cx.t, crate::task::signal::SigInfo::kernel(linux_raw_sys::general::SIGILL));
    Ok(usize::MAX)
}

/// `uprobe()`: the uprobe trampoline's call; from anywhere else Linux gives
/// `ENXIO`.
pub fn uprobe<H: Hal>(_cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Err(Errno::ENXIO)
}
