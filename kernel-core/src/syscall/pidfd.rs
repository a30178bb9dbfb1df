//! Process file descriptors: `pidfd_open`, `pidfd_send_signal`,
//! `pidfd_getfd`, and `waitid(P_PIDFD)`'s lookup. A pidfd names one process
//! (its pid and start time, so a reused pid is not taken for it) and polls
//! readable once that process has exited.

use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::cell::Cell;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::install_special;
use super::SysCtx;
use crate::fs::Kind;
use crate::task::Pid;
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLRDNORM};
use crate::{Errno, SysResult};

/// A pidfd's object.
pub struct PidFd {
    /// The process (thread-group id).
    pub pid: Pid,
    /// Its start time, telling it from a later process with the same pid.
    pub start_ns: u64,
    exited: Cell<bool>,
    wq: WaitRef,
}

impl FileOps for PidFd {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        if self.exited.get() {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The open pidfds by process, so its exit makes them readable.
#[derive(Default)]
pub struct PidFdWatch(BTreeMap<Pid, Vec<Weak<PidFd>>>);

impl PidFdWatch {
    /// Process `tgid` exited.
    pub fn exited(&mut self, tgid: Pid) {
        if let Some(v) = self.0.remove(&tgid) {
            for p in v.iter().filter_map(Weak::upgrade) {
                p.exited.set(true);
                p.wq.notify();
            }
        }
    }
    fn add(&mut self, p: &Rc<PidFd>) {
        let v = self.0.entry(p.pid).or_default();
        // Drop the entries of closed pidfds while here (bounded by the fds that exist).
        v.retain(|w| w.strong_count() > 0);
        v.push(Rc::downgrade(p));
    }
}

/// `PIDFD_NONBLOCK`.
const PIDFD_NONBLOCK: u32 = g::O_NONBLOCK;

/// `pidfd_open(pid, flags)`: `ESRCH` unless `pid` is a live process (a
/// thread-group leader), `EINVAL` for other flags.
pub fn pidfd_open<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, flags) = (a[0] as i32, a[1]);
    if flags & !u64::from(PIDFD_NONBLOCK) != 0 || pid <= 0 {
        return Err(Errno::EINVAL);
    }
    let pid = pid as Pid;
    let start_ns = if pid == cx.t.tgid && cx.t.is_leader() {
        cx.t.start_ns
    } else {
        match cx.k.procs.get(pid) {
            Some(t) if t.is_leader() && !t.is_zombie() => t.start_ns,
            Some(t) if t.is_leader() => {
                // A zombie: the pidfd is readable at once.
                let p = Rc::new(PidFd { pid, start_ns: t.start_ns, exited: Cell::new(true), wq: WaitQueue::new() });
                return install_special(cx, p, g::O_RDWR | g::O_CLOEXEC | flags as u32, "anon_inode:[pidfd]");
            }
            _ => return Err(Errno::ESRCH),
        }
    };
    let p = Rc::new(PidFd { pid, start_ns, exited: Cell::new(false), wq: WaitQueue::new() });
    cx.k.pidfds.add(&p);
    install_special(cx, p, g::O_RDWR | g::O_CLOEXEC | flags as u32, "anon_inode:[pidfd]")
}

/// The process a pidfd names: `EBADF` if `fd` is not a pidfd, `ESRCH` once
/// the process is reaped.
pub fn pid_of<H: Hal>(cx: &SysCtx<'_, H>, fd: u64) -> Result<Pid, Errno> {
    let f = cx.t.fds.file(fd)?;
    // A `/proc/PID` directory works as a pidfd too, as on Linux.
    if f.inode.is_dir() && cx.k.fs.fstype(f.inode.sb) == crate::fs::mount::FsType::Proc {
        let last = f.path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let pid = if last == "self" { Some(cx.t.tgid) } else { last.parse::<Pid>().ok() };
        let pid = pid.ok_or(Errno::EBADF)?;
        let alive = pid == cx.t.tgid || cx.k.procs.get(pid).is_some_and(|t| t.is_leader());
        return if alive { Ok(pid) } else { Err(Errno::ESRCH) };
    }
    let Kind::Special(s) = &f.inode.kind else { return Err(Errno::EBADF) };
    let p = s.as_any().downcast_ref::<PidFd>().ok_or(Errno::EBADF)?;
    let alive = if p.pid == cx.t.tgid && cx.t.is_leader() {
        cx.t.start_ns == p.start_ns
    } else {
        cx.k.procs.get(p.pid).is_some_and(|t| t.start_ns == p.start_ns)
    };
    if !alive {
        return Err(Errno::ESRCH);
    }
    Ok(p.pid)
}

/// `PIDFD_SIGNAL_THREAD`, `PIDFD_SIGNAL_THREAD_GROUP`, `PIDFD_SIGNAL_PROCESS_GROUP`.
const PIDFD_SIGNAL_THREAD: u64 = 1;
const PIDFD_SIGNAL_THREAD_GROUP: u64 = 2;
const PIDFD_SIGNAL_PROCESS_GROUP: u64 = 4;

/// `pidfd_send_signal(pidfd, sig, info, flags)`: as `kill` to the process,
/// or its process group with `PIDFD_SIGNAL_PROCESS_GROUP` (`info` must be
/// NULL here: a caller-made siginfo is `EINVAL`).
pub fn pidfd_send_signal<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[3];
    if flags & !(PIDFD_SIGNAL_THREAD | PIDFD_SIGNAL_THREAD_GROUP | PIDFD_SIGNAL_PROCESS_GROUP) != 0 || flags.count_ones() > 1 {
        return Err(Errno::EINVAL);
    }
    let pid = pid_of(cx, a[0])?;
    if a[2] != 0 {
        return Err(Errno::EINVAL);
    }
    if flags == PIDFD_SIGNAL_PROCESS_GROUP {
        let pgid = if pid == cx.t.tgid { cx.t.pgid } else { cx.k.procs.get(pid).map_or(pid, |t| t.pgid) };
        return super::signal::kill(cx, [(-(pgid as i64)) as u64, a[1], 0, 0, 0, 0]);
    }
    super::signal::kill(cx, [u64::from(pid), a[1], 0, 0, 0, 0])
}

/// `pidfd_getfd(pidfd, targetfd, flags)`: a duplicate of the process's fd
/// `targetfd` in the caller's table, close-on-exec.
pub fn pidfd_getfd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[2] != 0 {
        return Err(Errno::EINVAL);
    }
    let pid = pid_of(cx, a[0])?;
    let f = if pid == cx.t.tgid {
        cx.t.fds.file(a[1])?
    } else {
        let t = cx.k.procs.get(pid).ok_or(Errno::ESRCH)?;
        if t.is_zombie() {
            return Err(Errno::ESRCH);
        }
        // The table may be held by another thread of the process (CLONE_FILES).
        let fid = t.files_id;
        let holder = cx.k.procs.iter().find(|o| o.files_id == fid && o.fds_held && !o.is_zombie()).ok_or(Errno::ESRCH)?;
        holder.fds.file(a[1])?
    };
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, f, true, limit)
}
