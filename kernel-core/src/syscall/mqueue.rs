//! POSIX message queue calls: `mq_open`, `mq_unlink`, `mq_timedsend`,
//! `mq_timedreceive`, `mq_notify`, `mq_getsetattr`. The queues are
//! [`crate::ipc::mqueue::MsgQueue`] objects behind file descriptors.

use alloc::string::String;
use alloc::vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::{block_on, install_special};
use super::{Flow, SysCtx};
use crate::fs::{FileRef, Kind};
use crate::ipc::mqueue::{self, MsgQueue, Notify};
use crate::task::signal::SigInfo;
use crate::wait::{SpecialRef, WaitSet};
use crate::{Errno, SysResult};

/// `si_code` of a message-queue notification.
const SI_MESGQ: i32 = -3;
/// `sigev_notify` values.
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;

fn ret(r: SysResult) -> Flow {
    Flow::Ret(r)
}

/// The queue object behind `fd` (`EBADF` if it is not one).
fn queue_of<H: Hal>(cx: &SysCtx<'_, H>, fd: u64) -> Result<(FileRef, SpecialRef), Errno> {
    let f = cx.t.fds.file(fd)?;
    let obj = match &f.inode.kind {
        Kind::Special(s) if s.as_any().is::<MsgQueue>() => s.clone(),
        _ => return Err(Errno::EBADF),
    };
    Ok((f, obj))
}

/// Check a queue name as Linux's mqueue file system looks it up.
fn read_name<H: Hal>(cx: &mut SysCtx<'_, H>, p: u64) -> Result<String, Errno> {
    let b = cx.read_cstring(p, super::PATH_MAX)?;
    if b.is_empty() {
        return Err(Errno::ENOENT);
    }
    if b.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    if b.contains(&b'/') || b == b"." || b == b".." {
        return Err(Errno::EACCES);
    }
    Ok(crate::fs::path::name_from_bytes(&b))
}

fn may(q: &MsgQueue, c: &crate::task::Cred, want: u32) -> bool {
    if c.euid == 0 {
        return true;
    }
    let bits = if c.euid == q.uid {
        q.mode >> 6
    } else if c.egid == q.gid || c.groups.contains(&q.gid) {
        q.mode >> 3
    } else {
        q.mode
    } & 7;
    bits & want == want
}

/// `mq_open(name, oflag, mode, attr)`.
pub fn mq_open<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (oflag, mode, attr) = (a[1] as u32, a[2] as u32, a[3]);
    let name = read_name(cx, a[0])?;
    let acc = oflag & g::O_ACCMODE;
    if acc == g::O_ACCMODE {
        return Err(Errno::EINVAL);
    }
    let want = match acc {
        g::O_RDONLY => 4,
        g::O_WRONLY => 2,
        _ => 6,
    };
    let c = cx.t.cred.clone();
    let q = match cx.k.ipc.mq.0.get(&name) {
        Some(_) if oflag & (g::O_CREAT | g::O_EXCL) == g::O_CREAT | g::O_EXCL => return Err(Errno::EEXIST),
        Some(q) => {
            if !may(q, &c, want) {
                return Err(Errno::EACCES);
            }
            q.clone()
        }
        None if oflag & g::O_CREAT == 0 => return Err(Errno::ENOENT),
        None => {
            let root = c.euid == 0;
            let (maxmsg, msgsize) = if attr != 0 {
                let b = cx.read_array::<64>(attr)?;
                let w = |i: usize| i64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
                let (m, s) = (w(8), w(16));
                if m <= 0 || s <= 0 {
                    return Err(Errno::EINVAL);
                }
                let (m, s) = (m as u64, s as u64);
                if m > mqueue::HARD_MSGMAX || s > mqueue::HARD_MSGSIZEMAX || (!root && (m > mqueue::MSG_MAX || s > mqueue::MSGSIZE_MAX)) {
                    return Err(Errno::EINVAL);
                }
                (m, s)
            } else {
                (mqueue::MSG_MAX, mqueue::MSGSIZE_MAX)
            };
            let n = cx.k.ipc.mq.0.len();
            if n >= mqueue::HARD_QUEUES_MAX || (!root && n >= mqueue::QUEUES_MAX) {
                return Err(Errno::ENOSPC);
            }
            let limit = cx.t.rlimits[g::RLIMIT_MSGQUEUE as usize].0;
            let need = maxmsg.saturating_mul(msgsize.saturating_add(8));
            if cx.k.ipc.mq.bytes_of(c.euid).saturating_add(need) > limit {
                return Err(Errno::EMFILE);
            }
            let perm = mode & 0o777 & !cx.t.umask;
            let q = MsgQueue::new(maxmsg, msgsize, c.euid, c.egid, perm, Some(cx.k.frames.budget()))?;
            cx.k.ipc.mq.0.insert(name.clone(), q.clone());
            q
        }
    };
    let flags = acc | (oflag & (g::O_NONBLOCK | g::O_CLOEXEC));
    install_special(cx, q, flags, &alloc::format!("/{name}"))
}

/// `mq_unlink(name)`: the queue lives on while open.
pub fn mq_unlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let name = read_name(cx, a[0])?;
    let c = cx.t.cred.clone();
    let q = cx.k.ipc.mq.0.get(&name).ok_or(Errno::ENOENT)?;
    // /dev/mqueue is sticky and world-writable: owners and root remove.
    if c.euid != 0 && c.euid != q.uid {
        return Err(Errno::EPERM);
    }
    cx.k.ipc.mq.0.remove(&name);
    Ok(0)
}

/// An absolute `CLOCK_REALTIME` timeout as a monotonic deadline (`EINVAL`
/// for a malformed one).
fn abs_deadline<H: Hal>(cx: &mut SysCtx<'_, H>, p: u64) -> Result<Option<u64>, Errno> {
    if p == 0 {
        return Ok(None);
    }
    if let Some(d) = cx.t.restart_deadline {
        return Ok(Some(d));
    }
    let b = cx.read_array::<16>(p)?;
    let abs = crate::time::parse_timespec(&b)?;
    let (mono, real) = (cx.hal.now_ns(), cx.hal.realtime_ns());
    Ok(Some(mono.saturating_add(abs.saturating_sub(real))))
}

fn wait_for_queue<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, q: &MsgQueue, deadline: Option<u64>) -> Flow {
    if f.flags.get() & g::O_NONBLOCK != 0 {
        return ret(Err(Errno::EAGAIN));
    }
    if deadline.is_some_and(|d| d <= cx.hal.now_ns()) {
        return ret(Err(Errno::ETIMEDOUT));
    }
    let mut ws = WaitSet::default();
    ws.add(q.wq());
    block_on(cx, ws, deadline)
}

/// What `mq_timedsend` and `mq_timedreceive` start from: the deadline of
/// `abs_timeout` (a[4]) and the queue's description and object (a[0]).
fn timed_call<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Result<(Option<u64>, FileRef, SpecialRef), Errno> {
    let deadline = abs_deadline(cx, a[4])?;
    let (f, obj) = queue_of(cx, a[0])?;
    Ok((deadline, f, obj))
}

/// `mq_timedsend(fd, msg, len, prio, abs_timeout)`.
pub fn mq_timedsend<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (len, prio) = (a[2], a[3]);
    if prio >= u64::from(mqueue::MQ_PRIO_MAX) {
        return ret(Err(Errno::EINVAL));
    }
    let (deadline, f, obj) = match timed_call(cx, a) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let Some(q) = obj.as_any().downcast_ref::<MsgQueue>() else { return ret(Err(Errno::EBADF)) };
    if !f.writable() {
        return ret(Err(Errno::EBADF));
    }
    if len > q.msgsize {
        return ret(Err(Errno::EMSGSIZE));
    }
    let mut text = vec![0u8; len as usize];
    if let Err(e) = cx.read_user(a[1], &mut text) {
        return ret(Err(e));
    }
    match q.send(text, prio as u32) {
        Ok(Some(Notify { pid, signo })) if signo != 0 => {
            let info = SigInfo::user(signo, SI_MESGQ, cx.t.tgid, cx.t.cred.uid);
            cx.k.post_signal(Some(&mut *cx.t), pid, info, false);
            ret(Ok(0))
        }
        Ok(_) => ret(Ok(0)),
        Err(Errno::EAGAIN) => wait_for_queue(cx, &f, q, deadline),
        Err(e) => ret(Err(e)),
    }
}

/// `mq_timedreceive(fd, msg, len, prio, abs_timeout)`.
pub fn mq_timedreceive<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (deadline, f, obj) = match timed_call(cx, a) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    let Some(q) = obj.as_any().downcast_ref::<MsgQueue>() else { return ret(Err(Errno::EBADF)) };
    if !f.readable() {
        return ret(Err(Errno::EBADF));
    }
    if a[2] < q.msgsize {
        return ret(Err(Errno::EMSGSIZE));
    }
    if q.is_empty() {
        return wait_for_queue(cx, &f, q, deadline);
    }
    if let Err(e) = cx.access_ok(a[1], q.msgsize.min(a[2])) {
        return ret(Err(e));
    }
    match q.receive(a[2]) {
        Ok((text, prio)) => {
            if let Err(e) = cx.write_user(a[1], &text) {
                return ret(Err(e));
            }
            if a[3] != 0 {
                if let Err(e) = cx.write_user(a[3], &prio.to_le_bytes()) {
                    return ret(Err(e));
                }
            }
            ret(Ok(text.len()))
        }
        Err(e) => ret(Err(e)),
    }
}

/// `mq_notify(fd, sevp)`: `SIGEV_SIGNAL` and `SIGEV_NONE` (the signal
/// carries `SI_MESGQ` and the sender, not yet `sigev_value`); `SIGEV_THREAD`
/// (glibc's netlink-based helper) is `EINVAL`.
pub fn mq_notify<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, obj) = queue_of(cx, a[0])?;
    let Some(q) = obj.as_any().downcast_ref::<MsgQueue>() else { return Err(Errno::EBADF) };
    let me = cx.t.tgid;
    if a[1] == 0 {
        if q.notify.get().is_some_and(|n| n.pid == me) {
            q.notify.set(None);
        }
        return Ok(0);
    }
    let b = cx.read_array::<16>(a[1])?;
    let signo = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    let how = i32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let signo = match how {
        SIGEV_NONE => 0,
        SIGEV_SIGNAL if (1..=64).contains(&signo) => signo,
        SIGEV_THREAD => return Err(Errno::EINVAL),
        _ => return Err(Errno::EINVAL),
    };
    if q.notify.get().is_some_and(|n| cx.k.procs.get(n.pid).is_some_and(|t| !t.is_zombie()) || n.pid == me) {
        return Err(Errno::EBUSY);
    }
    q.notify.set(Some(Notify { pid: me, signo }));
    Ok(0)
}

/// `mq_getsetattr(fd, new, old)`: only `O_NONBLOCK` can change.
pub fn mq_getsetattr<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (f, obj) = queue_of(cx, a[0])?;
    let Some(q) = obj.as_any().downcast_ref::<MsgQueue>() else { return Err(Errno::EBADF) };
    let new = if a[1] != 0 {
        let b = cx.read_array::<64>(a[1])?;
        let fl = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        if fl & !u64::from(g::O_NONBLOCK) != 0 {
            return Err(Errno::EINVAL);
        }
        Some(fl)
    } else {
        None
    };
    if a[2] != 0 {
        let cur = u64::from(f.flags.get() & g::O_NONBLOCK);
        cx.write_user(a[2], &q.attr(cur))?;
    }
    if let Some(fl) = new {
        let v = (f.flags.get() & !g::O_NONBLOCK) | fl as u32;
        f.flags.set(v);
    }
    Ok(0)
}
