//! What tasks share and stop sharing: `unshare` (fd table, working
//! directory and umask, System V undo list), `close_range`, and keeping a
//! `CLONE_FS` group's working directory and umask in step.

use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::{Errno, SysResult};

/// After the caller changed its working directory or umask: every task
/// sharing them (`CLONE_FS`) sees the change.
pub fn sync_fs<H: Hal>(cx: &mut SysCtx<'_, H>) {
    if !cx.t.fs_shared {
        return;
    }
    let (id, me) = (cx.t.fs_id, cx.t.pid);
    let mut any = false;
    for t in cx.k.procs.iter_mut() {
        if t.fs_id == id && t.pid != me && !t.is_zombie() {
            t.cwd = cx.t.cwd.clone();
            t.umask = cx.t.umask;
            any = true;
        }
    }
    if !any {
        cx.t.fs_shared = false;
    }
}

/// Namespace flags: not supported (one namespace of each kind).
const NAMESPACES: u32 = g::CLONE_NEWNS | g::CLONE_NEWUTS | g::CLONE_NEWIPC | g::CLONE_NEWNET | g::CLONE_NEWUSER | g::CLONE_NEWPID | g::CLONE_NEWCGROUP | g::CLONE_NEWTIME;

/// `unshare(flags)`: `CLONE_FILES` copies a shared fd table, `CLONE_FS` a
/// shared working directory and umask, `CLONE_SYSVSEM` applies and drops
/// the `SEM_UNDO` list; `CLONE_VM`, `CLONE_SIGHAND` and `CLONE_THREAD` are
/// fine for a single-threaded process and `EINVAL` otherwise, as Linux.
/// New namespaces are not supported: `EINVAL`.
pub fn unshare<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let known = g::CLONE_THREAD | g::CLONE_FS | g::CLONE_SIGHAND | g::CLONE_VM | g::CLONE_FILES | g::CLONE_SYSVSEM | NAMESPACES;
    let f = u32::try_from(a[0]).map_err(|_| Errno::EINVAL)?;
    if f & !known != 0 || f & NAMESPACES != 0 {
        return Err(Errno::EINVAL);
    }
    if f & (g::CLONE_THREAD | g::CLONE_SIGHAND | g::CLONE_VM) != 0 {
        let (tgid, me) = (cx.t.tgid, cx.t.pid);
        if cx.k.procs.group_has_live(tgid, me) {
            return Err(Errno::EINVAL);
        }
    }
    if f & g::CLONE_FILES != 0 {
        super::process::unshare_files(cx);
    }
    if f & g::CLONE_FS != 0 && cx.t.fs_shared {
        cx.t.fs_id = cx.k.procs.new_share_id();
        cx.t.fs_shared = false;
    }
    if f & g::CLONE_SYSVSEM != 0 {
        cx.k.ipc.process_exit(cx.t.tgid);
    }
    Ok(0)
}

/// `CLOSE_RANGE_UNSHARE`, `CLOSE_RANGE_CLOEXEC` (linux/close_range.h).
const CLOSE_RANGE_UNSHARE: u32 = 1 << 1;
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// `close_range(first, last, flags)`: close (or with `CLOSE_RANGE_CLOEXEC`
/// mark close-on-exec) every open fd in `[first, last]`, after unsharing
/// the table with `CLOSE_RANGE_UNSHARE`.
pub fn close_range<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (first, last) = (a[0] as u32, a[1] as u32);
    let flags = u32::try_from(a[2]).map_err(|_| Errno::EINVAL)?;
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    if flags & CLOSE_RANGE_UNSHARE != 0 {
        super::process::unshare_files(cx);
    }
    let fds: Vec<usize> = cx.t.fds.fds().filter(|&fd| fd >= first as usize && fd <= last as usize).collect();
    for fd in fds {
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            if let Ok(e) = cx.t.fds.get_mut(fd as u64) {
                e.cloexec = true;
            }
            continue;
        }
        if let Ok(f) = cx.t.fds.file(fd as u64) {
            let _ = cx.t.fds.close(fd as u64);
            super::locks::closed(cx, &f);
        }
    }
    Ok(0)
}
