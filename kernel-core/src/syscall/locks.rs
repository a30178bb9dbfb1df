//! File lock calls: `flock`, and `fcntl`'s `F_GETLK`/`F_SETLK`/`F_SETLKW`
//! (POSIX record locks, with deadlock detection) and `F_OFD_GETLK`/
//! `F_OFD_SETLK`/`F_OFD_SETLKW` (locks of the open file description). The
//! table lives in [`crate::filelock`]; a blocked `F_SETLKW` or `flock` is
//! re-run when the file's locks change.

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::block_on;
use super::{Flow, SysCtx};
use crate::filelock::{self, FileKey, Owner};
use crate::fs::FileRef;
use crate::task::TaskState;
use crate::wait::WaitSet;
use crate::{Errno, SysResult};

/// Linux's `OFFSET_MAX`: a lock "to the end of the file".
const OFFSET_MAX: u64 = i64::MAX as u64;

fn key_of(f: &FileRef) -> FileKey {
    (f.inode.sb, f.inode.ino)
}

fn ret(r: SysResult) -> Flow {
    Flow::Ret(r)
}

/// Block the caller until the locks of `key` change.
fn wait_on<H: Hal>(cx: &mut SysCtx<'_, H>, key: FileKey) -> Flow {
    let q = cx.k.locks.queue(key);
    let mut ws = WaitSet::default();
    ws.add(&q);
    block_on(cx, ws, None)
}

/// `flock(fd, op)`.
pub fn flock<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let f = match cx.t.fds.file(a[0]) {
        Ok(f) => f,
        Err(e) => return ret(Err(e)),
    };
    let op = a[1] as u32;
    let nb = op & g::LOCK_NB != 0;
    let write = match op & !g::LOCK_NB {
        g::LOCK_SH => false,
        g::LOCK_EX => true,
        g::LOCK_UN => {
            let _ = cx.k.locks.set(key_of(&f), filelock::flock_owner(&f), None, 0, OFFSET_MAX, None);
            return ret(Ok(0));
        }
        _ => return ret(Err(Errno::EINVAL)),
    };
    if f.flags.get() & g::O_PATH != 0 {
        return ret(Err(Errno::EBADF));
    }
    let (key, owner) = (key_of(&f), filelock::flock_owner(&f));
    match cx.k.locks.flock_held(key, &owner) {
        Some(w) if w == write => return ret(Ok(0)),
        // A conversion drops the old lock first, as Linux does.
        Some(_) => {
            let _ = cx.k.locks.set(key, owner.clone(), None, 0, OFFSET_MAX, None);
        }
        None => {}
    }
    if cx.k.locks.conflict(key, &owner, write, 0, OFFSET_MAX).is_some() {
        if nb {
            return ret(Err(Errno::EAGAIN));
        }
        return wait_on(cx, key);
    }
    let budget = cx.k.frames.budget().clone();
    ret(cx.k.locks.set(key, owner, Some(write), 0, OFFSET_MAX, Some(&budget)).map(|_| 0))
}

/// A `struct flock` as a range: (type, first, last).
fn parse<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, p: u64, ofd: bool) -> Result<(u32, u64, u64), Errno> {
    let b = cx.read_array::<32>(p)?;
    let ty = i16::from_le_bytes([b[0], b[1]]) as i32 as u32;
    let whence = i16::from_le_bytes([b[2], b[3]]) as u32;
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[8..16]);
    let l_start = i64::from_le_bytes(s);
    s.copy_from_slice(&b[16..24]);
    let l_len = i64::from_le_bytes(s);
    let l_pid = i32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if ty != g::F_RDLCK && ty != g::F_WRLCK && ty != g::F_UNLCK {
        return Err(Errno::EINVAL);
    }
    if ofd && l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let base: i128 = match whence {
        g::SEEK_SET => 0,
        g::SEEK_CUR => i128::from(f.offset.get()),
        g::SEEK_END => i128::from(f.inode.size()),
        _ => return Err(Errno::EINVAL),
    };
    let start = base + i128::from(l_start);
    if start < 0 {
        return Err(Errno::EINVAL);
    }
    if start > i128::from(i64::MAX) {
        return Err(Errno::EOVERFLOW);
    }
    let (s, e) = match l_len {
        0 => (start, i128::from(i64::MAX)),
        n if n > 0 => {
            let e = start + i128::from(n) - 1;
            if e > i128::from(i64::MAX) {
                return Err(Errno::EOVERFLOW);
            }
            (start, e)
        }
        n => {
            let s = start + i128::from(n);
            if s < 0 {
                return Err(Errno::EINVAL);
            }
            (s, start - 1)
        }
    };
    Ok((ty, s as u64, e as u64))
}

/// `fcntl(fd, F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK |
/// F_OFD_SETLKW, struct flock *)`.
pub fn fcntl_lock<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, cmd: u32, arg: u64) -> Flow {
    let f = match cx.t.fds.file(fd) {
        Ok(f) => f,
        Err(e) => return ret(Err(e)),
    };
    let ofd = matches!(cmd, g::F_OFD_GETLK | g::F_OFD_SETLK | g::F_OFD_SETLKW);
    let (ty, start, end) = match parse(cx, &f, arg, ofd) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let tgid = cx.t.tgid;
    cx.k.locks.set_waiting(tgid, None);
    let owner = if ofd { filelock::ofd_owner(&f) } else { Owner::Process(tgid) };
    let key = key_of(&f);
    if matches!(cmd, g::F_GETLK | g::F_OFD_GETLK) {
        if ty == g::F_UNLCK {
            return ret(Err(Errno::EINVAL));
        }
        let mut out = [0u8; 32];
        if let Err(e) = cx.read_user(arg, &mut out) {
            return ret(Err(e));
        }
        match cx.k.locks.conflict(key, &owner, ty == g::F_WRLCK, start, end) {
            None => out[0..2].copy_from_slice(&(g::F_UNLCK as i16).to_le_bytes()),
            Some((w, s, e, pid)) => {
                let t = if w { g::F_WRLCK } else { g::F_RDLCK };
                out[0..2].copy_from_slice(&(t as i16).to_le_bytes());
                out[2..4].copy_from_slice(&(g::SEEK_SET as i16).to_le_bytes());
                out[8..16].copy_from_slice(&s.to_le_bytes());
                let len = if e >= OFFSET_MAX { 0 } else { e - s + 1 };
                out[16..24].copy_from_slice(&len.to_le_bytes());
                out[24..28].copy_from_slice(&pid.to_le_bytes());
            }
        }
        return ret(cx.write_user(arg, &out).map(|_| 0));
    }
    let wait = matches!(cmd, g::F_SETLKW | g::F_OFD_SETLKW);
    if ty == g::F_UNLCK {
        return ret(cx.k.locks.set(key, owner, None, start, end, None).map(|_| 0));
    }
    let write = ty == g::F_WRLCK;
    if (write && !f.writable()) || (!write && !f.readable()) {
        return ret(Err(Errno::EBADF));
    }
    if let Some((_, _, _, holder)) = cx.k.locks.conflict(key, &owner, write, start, end) {
        if !wait {
            return ret(Err(Errno::EAGAIN));
        }
        // Deadlock detection follows POSIX lock holders that are blocked themselves.
        if !ofd && holder > 0 {
            let holder = holder as u32;
            let tasks = &cx.k.procs;
            let blocked = |p: u32| tasks.iter().any(|t| t.tgid == p && matches!(t.state, TaskState::Blocked(_)));
            if cx.k.locks.would_deadlock(tgid, holder, blocked) {
                return ret(Err(Errno::EDEADLK));
            }
            cx.k.locks.set_waiting(tgid, Some(holder));
        }
        return wait_on(cx, key);
    }
    let budget = cx.k.frames.budget().clone();
    ret(cx.k.locks.set(key, owner, Some(write), start, end, Some(&budget)).map(|_| 0))
}

/// `fd` of process `tgid` was closed: its POSIX locks on the file go.
pub fn closed<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef) {
    let tgid = cx.t.tgid;
    cx.k.locks.closed(key_of(f), tgid);
}

/// `fcntl(fd, cmd, arg)`: the lock commands here (they may block), dnotify
/// in [`super::inotify::dnotify`], the rest in [`super::fd::fcntl`].
pub fn fcntl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    match a[1] as u32 {
        c @ (g::F_GETLK | g::F_SETLK | g::F_SETLKW | g::F_OFD_GETLK | g::F_OFD_SETLK | g::F_OFD_SETLKW) => fcntl_lock(cx, a[0], c, a[2]),
        g::F_NOTIFY => ret(super::inotify::dnotify(cx, a[0], a[2])),
        _ => ret(super::fd::fcntl(cx, a)),
    }
}
