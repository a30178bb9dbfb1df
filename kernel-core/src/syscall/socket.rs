//! The socket system calls: guest arguments (sockaddrs, iovecs, `msghdr`,
//! control messages) decoded into the plain values of [`crate::net`] and
//! handed to the family's [`Socket`]; blocking, `SIGPIPE`, fd passing.
//!
//! A socket call that cannot proceed gets `EAGAIN` from the socket; unless
//! the description is `O_NONBLOCK` or the call says `MSG_DONTWAIT`, the
//! caller then blocks on the socket's readiness (plus, for AF_UNIX, the
//! queue of the socket it sends to or connects to) and the call is re-run.
//! `SO_RCVTIMEO`/`SO_SNDTIMEO` bound that wait.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

use super::poll::{block_on, file_poll};
use super::{Flow, SysCtx};
use crate::fs::path::Follow;
use crate::fs::perm::{permission, MAY_WRITE};
use crate::fs::{FileRef, Kind, OpenFile};
use crate::net::addr::{self, Unnamed, SOCKADDR_MAX};
use crate::net::unix::{collect_garbage, UnixNode, UnixSocket, SCM_MAX_FD};
use crate::net::{Control, SockAddr, SockCtx, Socket, Ucred, UnixAddr};
use crate::wait::{SpecialRef, WaitRef, WaitSet};
use crate::{Errno, SysResult};

/// `SOCK_TYPE_MASK`.
const SOCK_TYPE_MASK: u32 = 0xf;
/// `SOCK_MAX`: types at or above are `EINVAL`.
const SOCK_MAX: u32 = 11;
/// `NPROTO`: families at or above are `EAFNOSUPPORT`.
const NPROTO: u32 = 46;
/// `SOCK_NONBLOCK` / `SOCK_CLOEXEC`.
const SOCK_NONBLOCK: u32 = g::O_NONBLOCK;
const SOCK_CLOEXEC: u32 = g::O_CLOEXEC;
/// `MSG_WAITFORONE` (recvmmsg).
const MSG_WAITFORONE: u32 = 0x10000;
/// `UIO_MAXIOV`.
const UIO_MAXIOV: u64 = 1024;
/// Linux's `MAX_RW_COUNT`.
const MAX_RW: u64 = 0x7fff_f000;
/// Most bytes gathered for one send / offered to one receive: above every
/// socket buffer, so a datagram that large is `EMSGSIZE` and a stream
/// write is simply partial.
const IO_CAP: usize = 1 << 20;
/// Largest control buffer a send may pass (Linux's `optmem_max` order).
const CTL_MAX: u64 = 128 * 1024;
/// `sizeof(struct cmsghdr)`.
const CMSG_HDR: usize = 16;
/// `sizeof(struct msghdr)`.
const MSGHDR: usize = 56;
/// `sizeof(struct mmsghdr)`.
const MMSGHDR: u64 = 64;
/// `AT_FDCWD` as a call argument.
const AT_FDCWD: u64 = g::AT_FDCWD as i64 as u64;

fn cmsg_align(l: usize) -> usize {
    (l + 7) & !7
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// An fd argument (an `int`: the upper half of the register is noise).
fn fd_arg(v: u64) -> u64 {
    v as u32 as u64
}

/// The open description and socket object behind `fd` (`EBADF`, `ENOTSOCK`).
fn sock_of<H: Hal>(cx: &SysCtx<'_, H>, fd: u64) -> Result<(FileRef, SpecialRef), Errno> {
    let f = cx.t.fds.file(fd_arg(fd))?;
    let sp = match &f.inode.kind {
        Kind::Special(s) if crate::net::socket_of(s.as_ref()).is_some() => s.clone(),
        _ => return Err(Errno::ENOTSOCK),
    };
    Ok((f, sp))
}

/// The caller's credentials as sockets report them (pid, effective ids).
fn ucred<H: Hal>(cx: &SysCtx<'_, H>) -> Ucred {
    Ucred { pid: cx.t.tgid, uid: cx.t.cred.euid, gid: cx.t.cred.egid }
}

/// Run `f` on the socket with a [`SockCtx`] for the caller.
fn with_sock<H: Hal, R>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, f: impl FnOnce(&mut SockCtx<'_>, &dyn Socket) -> Result<R, Errno>) -> Result<R, Errno> {
    let cred = ucred(cx);
    let now_ns = cx.hal.now_ns();
    let s = crate::net::socket_of(sp.as_ref()).ok_or(Errno::ENOTSOCK)?;
    let mut sc = SockCtx { now_ns, cred, net: &mut cx.k.net };
    f(&mut sc, s)
}

fn unix_of(sp: &SpecialRef) -> Option<&UnixSocket> {
    sp.as_any().downcast_ref::<UnixSocket>()
}

/// Copy a sockaddr argument in (`EINVAL` for a negative or too long length).
fn read_sockaddr<H: Hal>(cx: &mut SysCtx<'_, H>, ptr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    let len = len as u32 as i32;
    if len < 0 || len as usize > SOCKADDR_MAX {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; len as usize];
    if len > 0 {
        cx.read_user(ptr, &mut raw)?;
    }
    Ok(raw)
}

/// Copy an address out as Linux's `move_addr_to_user`: at most `*lenp`
/// bytes, and the full length into `*lenp`.
fn write_sockaddr<H: Hal>(cx: &mut SysCtx<'_, H>, bytes: &[u8], ptr: u64, lenp: u64) -> Result<(), Errno> {
    let ulen = cx.read_u32(lenp)? as i32;
    if ulen < 0 {
        return Err(Errno::EINVAL);
    }
    let n = bytes.len().min(ulen as usize);
    if n > 0 {
        cx.write_user(ptr, &bytes[..n])?;
    }
    cx.write_user(lenp, &(bytes.len() as u32).to_le_bytes())
}

/// A blocking wait's deadline from `SO_RCVTIMEO`/`SO_SNDTIMEO` (kept across
/// re-runs); `Err` when it has passed.
fn sock_deadline<H: Hal>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, opt: u32) -> Result<Option<u64>, Errno> {
    let tv = with_sock(cx, sp, |sc, s| s.getsockopt(sc, n::SOL_SOCKET, opt)).unwrap_or_default();
    if tv.len() < 16 {
        return Ok(None);
    }
    let sec = le_u64(&tv, 0) as i64;
    let usec = le_u64(&tv, 8) as i64;
    if sec <= 0 && usec <= 0 {
        return Ok(None);
    }
    let t = (sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(usec.max(0) as u64 * 1000);
    let now = cx.hal.now_ns();
    let d = cx.t.restart_deadline.unwrap_or(now.saturating_add(t));
    if d <= now {
        return Err(Errno::EAGAIN);
    }
    Ok(Some(d))
}

/// Block until the socket (or `extra`, the queue of the socket we send or
/// connect to) changes, then re-run the call.
fn block_sock<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, sp: &SpecialRef, extra: Option<WaitRef>, timeo_opt: u32) -> Flow {
    let deadline = match sock_deadline(cx, sp, timeo_opt) {
        Ok(d) => d,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let mut ws = WaitSet::default();
    file_poll(cx, f, Some(&mut ws));
    if let Some(u) = unix_of(sp) {
        u.send_waits(&mut ws);
    }
    if let Some(q) = extra {
        ws.add(&q);
    }
    block_on(cx, ws, deadline)
}

fn nonblocking(f: &FileRef, flags: u32) -> bool {
    f.flags.get() & g::O_NONBLOCK != 0 || flags & n::MSG_DONTWAIT != 0
}

// ------------------------------------------------------------------ create

fn create<H: Hal>(cx: &mut SysCtx<'_, H>, domain: u32, ty: u32, protocol: u32) -> Result<Rc<dyn Socket>, Errno> {
    if domain >= NPROTO {
        return Err(Errno::EAFNOSUPPORT);
    }
    if ty >= SOCK_MAX {
        return Err(Errno::EINVAL);
    }
    match domain {
        n::AF_UNIX => {
            if protocol != 0 && protocol != n::AF_UNIX {
                return Err(Errno::EPROTONOSUPPORT);
            }
            let ty = match ty {
                n::SOCK_STREAM | n::SOCK_DGRAM | n::SOCK_SEQPACKET => ty,
                // BSD has AF_UNIX SOCK_RAW; Linux makes it a datagram socket.
                n::SOCK_RAW => n::SOCK_DGRAM,
                _ => return Err(Errno::ESOCKTNOSUPPORT),
            };
            Ok(UnixSocket::new(ty, ucred(cx), Some(cx.k.frames.budget()))?)
        }
        n::AF_INET | n::AF_INET6 => with_net(cx, |sc| crate::net::inet::socket(sc, domain, ty, protocol)),
        n::AF_NETLINK => with_net(cx, |sc| crate::net::netlink::socket(sc, domain, ty, protocol)),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// Run `f` with a [`SockCtx`] for the caller (socket creation).
fn with_net<H: Hal, R>(cx: &mut SysCtx<'_, H>, f: impl FnOnce(&mut SockCtx<'_>) -> R) -> R {
    let cred = ucred(cx);
    let now_ns = cx.hal.now_ns();
    f(&mut SockCtx { now_ns, cred, net: &mut cx.k.net })
}

/// Open `s` as a new description (`socket:[ino]`, mode 0777 as a Linux
/// socket inode) at the lowest free fd.
fn install_sock<H: Hal>(cx: &mut SysCtx<'_, H>, s: Rc<dyn Socket>, flags: u32) -> SysResult {
    let obj: SpecialRef = s;
    let now = cx.hal.realtime_ns();
    let inode = cx.k.fs.anon_inode(Kind::Special(obj), 0o777, now)?;
    let name = alloc::format!("socket:[{}]", inode.ino);
    let f = OpenFile::new(inode, g::O_RDWR | (flags & SOCK_NONBLOCK), name);
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, f, flags & SOCK_CLOEXEC != 0, limit)
}

/// `socket(domain, type, protocol)`.
pub fn socket<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (domain, t, protocol) = (a[0] as u32, a[1] as u32, a[2] as u32);
    let flags = t & !SOCK_TYPE_MASK;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    collect_garbage(&mut cx.k.net.unix_inflight);
    let s = create(cx, domain, t & SOCK_TYPE_MASK, protocol)?;
    install_sock(cx, s, flags)
}

/// `socketpair(domain, type, protocol, sv)`.
pub fn socketpair<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (domain, t, protocol) = (a[0] as u32, a[1] as u32, a[2] as u32);
    let flags = t & !SOCK_TYPE_MASK;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    collect_garbage(&mut cx.k.net.unix_inflight);
    let first = create(cx, domain, t & SOCK_TYPE_MASK, protocol)?;
    let ty = first.sock_type();
    drop(first);
    if domain != n::AF_UNIX {
        return Err(Errno::EOPNOTSUPP);
    }
    let (x, y) = UnixSocket::pair(ty, ucred(cx), Some(cx.k.frames.budget()))?;
    let fd1 = install_sock(cx, x, flags)?;
    let fd2 = match install_sock(cx, y, flags) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = cx.t.fds.close(fd1 as u64);
            return Err(e);
        }
    };
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&(fd1 as i32).to_le_bytes());
    b[4..8].copy_from_slice(&(fd2 as i32).to_le_bytes());
    if let Err(e) = cx.write_user(a[3], &b) {
        let _ = cx.t.fds.close(fd1 as u64);
        let _ = cx.t.fds.close(fd2 as u64);
        return Err(e);
    }
    Ok(0)
}

// ------------------------------------------------------------------ names

/// Create the filesystem node of an AF_UNIX path and bind to it (the
/// node goes again if the bind fails, as Linux's `unix_bind_bsd`).
fn bind_unix_path<H: Hal>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, u: &UnixSocket, p: &[u8]) -> Result<(), Errno> {
    let path = core::str::from_utf8(p).map_err(|_| Errno::ENOENT)?;
    let par = super::fs_ops::resolve_parent(cx, AT_FDCWD, path).map_err(|e| if e == Errno::EEXIST { Errno::EADDRINUSE } else { e })?;
    if par.name.is_empty() || par.name == "." || par.name == ".." || par.dir.inode().lookup(&par.name)?.is_some() {
        return Err(Errno::EADDRINUSE);
    }
    if par.slash {
        return Err(Errno::ENOENT);
    }
    super::fs_ops::may_create(cx, par.dir.inode())?;
    if cx.k.fs.is_host(par.dir.inode().sb) {
        return Err(Errno::EPERM);
    }
    let perm = 0o777 & !cx.t.umask;
    let node = super::fs_ops::new_node(cx, par.dir.inode(), Kind::Special(UnixNode::new(u)), perm)?;
    par.dir.inode().insert(&par.name, node)?;
    let now = cx.hal.realtime_ns();
    super::fs_ops::touch_dir(par.dir.inode(), now);
    let addr = SockAddr::Unix(UnixAddr::Path(p.to_vec()));
    if let Err(e) = with_sock(cx, sp, |sc, s| s.bind(sc, &addr)) {
        if let Kind::Dir(d) = &par.dir.inode().kind {
            d.borrow_mut().remove(&par.name);
        }
        return Err(e);
    }
    Ok(())
}

/// The socket an AF_UNIX name refers to: a path is looked up (the caller
/// needs write permission on the node), an abstract name in the namespace.
fn unix_target<H: Hal>(cx: &mut SysCtx<'_, H>, a: &UnixAddr) -> Result<Rc<UnixSocket>, Errno> {
    match a {
        UnixAddr::Unnamed => Err(Errno::EINVAL),
        UnixAddr::Abstract(name) => {
            let cred = ucred(cx);
            let sc = SockCtx { now_ns: 0, cred, net: &mut cx.k.net };
            UnixSocket::find_abstract(&sc, name)
        }
        UnixAddr::Path(p) => {
            let path = core::str::from_utf8(p).map_err(|_| Errno::ENOENT)?;
            let loc = super::fs_ops::resolve(cx, AT_FDCWD, path, Follow::Yes)?;
            let inode = loc.inode().clone();
            permission(&inode, &super::fs_ops::cred(cx), MAY_WRITE)?;
            let Kind::Special(s) = &inode.kind else { return Err(Errno::ECONNREFUSED) };
            let node = s.as_any().downcast_ref::<UnixNode>().ok_or(Errno::ECONNREFUSED)?;
            node.socket().ok_or(Errno::ECONNREFUSED)
        }
    }
}

/// `bind(fd, addr, addrlen)`.
pub fn bind<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    let raw = read_sockaddr(cx, a[1], a[2])?;
    let s = crate::net::socket_of(sp.as_ref()).ok_or(Errno::ENOTSOCK)?;
    let addr = addr::decode(s.family(), &raw)?;
    cx.audit_net("bind", &addr);
    if let (Some(u), SockAddr::Unix(UnixAddr::Path(p))) = (unix_of(&sp), &addr) {
        return bind_unix_path(cx, &sp, u, p).map(|_| 0);
    }
    if s.family() == n::AF_UNIX && addr == SockAddr::Unspec {
        return Err(Errno::EINVAL);
    }
    with_sock(cx, &sp, |sc, s| s.bind(sc, &addr)).map(|_| 0)
}

/// `listen(fd, backlog)`.
pub fn listen<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    // The backlog is an int; anything above somaxconn (negative included) is capped.
    let backlog = (a[1] as u32).min(crate::net::unix::SOMAXCONN);
    with_sock(cx, &sp, |sc, s| s.listen(sc, backlog)).map(|_| 0)
}

/// `connect(fd, addr, addrlen)`.
pub fn connect<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let r = (|| -> Result<Result<(), (Errno, Option<WaitRef>)>, Errno> {
        let (_, sp) = sock_of(cx, a[0])?;
        let raw = read_sockaddr(cx, a[1], a[2])?;
        let fam = crate::net::socket_of(sp.as_ref()).map_or(0, |s| s.family());
        let addr = addr::decode(fam, &raw)?;
        cx.audit_net("connect", &addr);
        if let (Some(u), SockAddr::Unix(ua)) = (unix_of(&sp), &addr) {
            let target = unix_target(cx, ua)?;
            let cred = ucred(cx);
            let mut sc = SockCtx { now_ns: 0, cred, net: &mut cx.k.net };
            return Ok(u.connect_to(&mut sc, &target).map_err(|e| (e, Some(target.wait_queue().clone()))));
        }
        Ok(with_sock(cx, &sp, |sc, s| Ok(s.connect(sc, &addr)))?.map_err(|e| (e, None)))
    })();
    match r {
        Err(e) => Flow::Ret(Err(e)),
        Ok(Ok(())) => Flow::Ret(Ok(0)),
        Ok(Err((e @ (Errno::EAGAIN | Errno::EINPROGRESS), extra))) => {
            let Ok((f, sp)) = sock_of(cx, a[0]) else { return Flow::Ret(Err(Errno::EBADF)) };
            if nonblocking(&f, 0) {
                return Flow::Ret(Err(e));
            }
            block_sock(cx, &f, &sp, extra, n::SO_SNDTIMEO)
        }
        Ok(Err((e, _))) => Flow::Ret(Err(e)),
    }
}

fn do_accept<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], flags: u32) -> Flow {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let (f, sp) = match sock_of(cx, a[0]) {
        Ok(x) => x,
        Err(e) => return Flow::Ret(Err(e)),
    };
    // As Linux, the fd is reserved before a connection is taken.
    let limit = cx.t.fd_limit();
    let mut free = 0usize;
    for fd in cx.t.fds.fds() {
        if fd != free {
            break;
        }
        free += 1;
    }
    if free >= limit {
        return Flow::Ret(Err(Errno::EMFILE));
    }
    match with_sock(cx, &sp, |sc, s| s.accept(sc)) {
        Err(Errno::EAGAIN) if !nonblocking(&f, 0) => block_sock(cx, &f, &sp, None, n::SO_RCVTIMEO),
        Err(e) => Flow::Ret(Err(e)),
        Ok((ns, peer)) => {
            cx.audit_net("accept", &peer);
            if a[1] != 0 {
                let bytes = addr::encode(&peer, Unnamed::Family);
                if let Err(e) = write_sockaddr(cx, &bytes, a[1], a[2]) {
                    // The connection is lost, as on Linux.
                    if let Some(u) = ns.as_any().downcast_ref::<UnixSocket>() {
                        u.release();
                    }
                    return Flow::Ret(Err(e));
                }
            }
            let keep = ns.clone();
            let r = install_sock(cx, ns, flags);
            if r.is_err() {
                if let Some(u) = keep.as_any().downcast_ref::<UnixSocket>() {
                    u.release();
                }
            }
            Flow::Ret(r)
        }
    }
}

/// `accept(fd, addr, addrlen)`.
pub fn accept<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_accept(cx, a, 0)
}

/// `accept4(fd, addr, addrlen, flags)`.
pub fn accept4<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_accept(cx, a, a[3] as u32)
}

fn do_getname<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], peer: bool) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    let addr = with_sock(cx, &sp, |sc, s| if peer { s.peer_addr(sc) } else { s.local_addr(sc) })?;
    let bytes = addr::encode(&addr, Unnamed::Family);
    write_sockaddr(cx, &bytes, a[1], a[2])?;
    Ok(0)
}

/// `getsockname(fd, addr, addrlen)`.
pub fn getsockname<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_getname(cx, a, false)
}

/// `getpeername(fd, addr, addrlen)`.
pub fn getpeername<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_getname(cx, a, true)
}

// ------------------------------------------------------------------ send

/// A decoded outgoing message.
struct OutMsg {
    data: Vec<u8>,
    to: Option<Vec<u8>>,
    control: Control,
}

/// Validate iovecs as Linux's `import_iovec` (`EINVAL` for a negative
/// length, `EFAULT` for a bad segment) and return them with their total.
fn iovecs<H: Hal>(cx: &mut SysCtx<'_, H>, iov: u64, cnt: u64) -> Result<(Vec<(u64, u64)>, u64), Errno> {
    if cnt > UIO_MAXIOV {
        return Err(Errno::EMSGSIZE);
    }
    let mut raw = vec![0u8; cnt as usize * 16];
    cx.read_user(iov, &mut raw)?;
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total = 0u64;
    for c in raw.chunks_exact(16) {
        let (base, len) = (le_u64(c, 0), le_u64(c, 8));
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        cx.access_ok(base, len)?;
        let len = len.min(MAX_RW - total);
        total += len;
        v.push((base, len));
    }
    Ok((v, total))
}

fn gather<H: Hal>(cx: &mut SysCtx<'_, H>, iov: &[(u64, u64)], total: u64) -> Result<Vec<u8>, Errno> {
    let want = (total as usize).min(IO_CAP + 1);
    let mut data = vec![0u8; want];
    let mut at = 0usize;
    for &(base, len) in iov {
        if at >= want {
            break;
        }
        let n = (len as usize).min(want - at);
        cx.read_user(base, &mut data[at..at + n])?;
        at += n;
    }
    Ok(data)
}

/// Parse a send's control messages (`SCM_RIGHTS`, `SCM_CREDENTIALS`) as
/// Linux's `__scm_send`.
fn parse_control<H: Hal>(cx: &mut SysCtx<'_, H>, ptr: u64, len: u64) -> Result<Control, Errno> {
    let mut c = Control::default();
    if len > i32::MAX as u64 {
        return Err(Errno::ENOBUFS);
    }
    if (len as usize) < CMSG_HDR {
        return Ok(c);
    }
    if len > CTL_MAX {
        return Err(Errno::ENOBUFS);
    }
    let mut buf = vec![0u8; len as usize];
    cx.read_user(ptr, &mut buf)?;
    let mut off = 0usize;
    while off + CMSG_HDR <= buf.len() {
        let clen = le_u64(&buf, off);
        if clen < CMSG_HDR as u64 || clen > (buf.len() - off) as u64 {
            return Err(Errno::EINVAL);
        }
        let clen = clen as usize;
        let (level, ty) = (le_u32(&buf, off + 8), le_u32(&buf, off + 12));
        let body = &buf[off + CMSG_HDR..off + clen];
        if level == n::SOL_SOCKET {
            match ty {
                n::SCM_RIGHTS => {
                    for fdb in body.chunks_exact(4) {
                        if c.rights.len() >= SCM_MAX_FD {
                            return Err(Errno::EINVAL);
                        }
                        let fd = i32::from_le_bytes([fdb[0], fdb[1], fdb[2], fdb[3]]);
                        let f = if fd < 0 { Err(Errno::EBADF) } else { cx.t.fds.file(fd as u64) }?;
                        c.rights.push(f);
                    }
                }
                n::SCM_CREDENTIALS => {
                    if clen != CMSG_HDR + 12 {
                        return Err(Errno::EINVAL);
                    }
                    let (pid, uid, gid) = (le_u32(body, 0), le_u32(body, 4), le_u32(body, 8));
                    let cr = &cx.t.cred;
                    let root = cr.euid == 0;
                    let ok = root || (pid == cx.t.tgid && [cr.uid, cr.euid, cr.suid].contains(&uid) && [cr.gid, cr.egid, cr.sgid].contains(&gid));
                    if !ok {
                        return Err(Errno::EPERM);
                    }
                    c.creds = Some(Ucred { pid, uid, gid });
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        off += cmsg_align(clen);
    }
    Ok(c)
}

/// Send one message; `extra` gets the queue of an AF_UNIX destination to
/// wait on if the send would block.
fn send_one<H: Hal>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, m: OutMsg, flags: u32, extra: &mut Option<WaitRef>) -> SysResult {
    let s = crate::net::socket_of(sp.as_ref()).ok_or(Errno::ENOTSOCK)?;
    let to = match &m.to {
        Some(raw) if !raw.is_empty() => Some(addr::decode(s.family(), raw)?),
        _ => None,
    };
    if let Some(u) = unix_of(sp) {
        let target = match (&to, u.sock_type()) {
            (None, _) => None,
            // Seqpacket ignores a destination.
            (Some(_), n::SOCK_SEQPACKET) => None,
            // Stream refuses one before looking it up.
            (Some(_), n::SOCK_STREAM) => u.rc(),
            (Some(SockAddr::Unix(ua)), _) => Some(unix_target(cx, ua)?),
            (Some(_), _) => return Err(Errno::EINVAL),
        };
        if let Some(t) = &target {
            *extra = Some(t.wait_queue().clone());
        }
        let cred = ucred(cx);
        let passes_files = !m.control.rights.is_empty();
        let receiver = if passes_files { target.clone().or_else(|| u.peer_socket()) } else { None };
        let r = u.send_to(cred, &m.data, target, m.control, flags);
        if let (Ok(_), Some(rcv)) = (&r, receiver) {
            // Files in flight: let the collector know where, and look for
            // cycles that earlier closes left behind.
            cx.k.net.unix_inflight.push(Rc::downgrade(&rcv));
            collect_garbage(&mut cx.k.net.unix_inflight);
        }
        return r;
    }
    with_sock(cx, sp, |sc, s| s.send(sc, &m.data, to.as_ref(), m.control, flags))
}

/// Finish a send: would-block handling and `SIGPIPE`.
fn send_flow<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, r: SysResult, flags: u32, extra: Option<WaitRef>) -> Flow {
    match r {
        Err(Errno::EAGAIN) => {
            let Ok((f, sp)) = sock_of(cx, fd) else { return Flow::Ret(Err(Errno::EBADF)) };
            if nonblocking(&f, flags) {
                return Flow::Ret(Err(Errno::EAGAIN));
            }
            block_sock(cx, &f, &sp, extra, n::SO_SNDTIMEO)
        }
        Err(Errno::EPIPE) => {
            let stream = sock_of(cx, fd).ok().and_then(|(_, sp)| crate::net::socket_of(sp.as_ref()).map(|s| s.sock_type() == n::SOCK_STREAM));
            if flags & n::MSG_NOSIGNAL == 0 && stream == Some(true) {
                cx.t.kill_pending = Some(g::SIGPIPE);
            }
            Flow::Ret(Err(Errno::EPIPE))
        }
        r => Flow::Ret(r),
    }
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`.
pub fn sendto<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[3] as u32;
    let mut extra = None;
    let r = (|| -> SysResult {
        let len = a[2].min(MAX_RW);
        cx.access_ok(a[1], len)?;
        let (_, sp) = sock_of(cx, a[0])?;
        let to = if a[4] != 0 { Some(read_sockaddr(cx, a[4], a[5])?) } else { None };
        let data = gather(cx, &[(a[1], len)], len)?;
        send_one(cx, &sp, OutMsg { data, to, control: Control::default() }, flags, &mut extra)
    })();
    send_flow(cx, a[0], r, flags, extra)
}

/// Read a `msghdr` and everything it points to for a send.
fn read_out_msg<H: Hal>(cx: &mut SysCtx<'_, H>, ptr: u64) -> Result<OutMsg, Errno> {
    let h = cx.read_array::<MSGHDR>(ptr)?;
    let (name, namelen) = (le_u64(&h, 0), le_u32(&h, 8) as i32);
    let (iov, iovlen) = (le_u64(&h, 16), le_u64(&h, 24));
    let (ctl, ctllen) = (le_u64(&h, 32), le_u64(&h, 40));
    if namelen < 0 {
        return Err(Errno::EINVAL);
    }
    let to = if name != 0 && namelen > 0 {
        let l = (namelen as usize).min(SOCKADDR_MAX);
        let mut raw = vec![0u8; l];
        cx.read_user(name, &mut raw)?;
        Some(raw)
    } else {
        None
    };
    let (v, total) = iovecs(cx, iov, iovlen)?;
    let control = parse_control(cx, ctl, ctllen)?;
    let data = gather(cx, &v, total)?;
    Ok(OutMsg { data, to, control })
}

/// `sendmsg(fd, msg, flags)`.
pub fn sendmsg<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[2] as u32;
    let mut extra = None;
    let r = (|| -> SysResult {
        let (_, sp) = sock_of(cx, a[0])?;
        let m = read_out_msg(cx, a[1])?;
        send_one(cx, &sp, m, flags, &mut extra)
    })();
    send_flow(cx, a[0], r, flags, extra)
}

/// `sendmmsg(fd, msgvec, vlen, flags)`: messages in order until one fails
/// or would block; only a first failure is reported.
pub fn sendmmsg<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[3] as u32;
    let vlen = (a[2] as u32 as u64).min(UIO_MAXIOV);
    let (f, sp) = match sock_of(cx, a[0]) {
        Ok(x) => x,
        Err(e) => return Flow::Ret(Err(e)),
    };
    let _ = f;
    let mut done = 0u64;
    let mut extra = None;
    while done < vlen {
        let at = a[1].wrapping_add(done * MMSGHDR);
        let r = read_out_msg(cx, at).and_then(|m| send_one(cx, &sp, m, flags, &mut extra));
        match r {
            Ok(len) => {
                if let Err(e) = cx.write_user(at + MSGHDR as u64, &(len as u32).to_le_bytes()) {
                    return Flow::Ret(if done > 0 { Ok(done as usize) } else { Err(e) });
                }
                done += 1;
            }
            Err(_) if done > 0 => break,
            Err(e) => return send_flow(cx, a[0], Err(e), flags, extra),
        }
    }
    Flow::Ret(Ok(done as usize))
}

// ------------------------------------------------------------------ receive

/// Where a receive puts things.
struct InMsg {
    iov: Vec<(u64, u64)>,
    total: u64,
    name: u64,
    namelen: u32,
    ctl: u64,
    ctllen: u64,
}

/// What a receive reports besides the byte count.
struct InResult {
    ret: usize,
    name: Option<Vec<u8>>,
    ctl_used: usize,
    msg_flags: u32,
}

/// Build the control messages of a receive (credentials, then files),
/// installing received files as Linux's `scm_detach_fds`: as many as fit,
/// `MSG_CTRUNC` for the rest (which are closed).
/// Appends one control message to `out`, within `room` bytes in all: cut
/// short (and `MSG_CTRUNC`) when it does not fit.
fn push_cmsg(out: &mut Vec<u8>, room: usize, level: u32, ty: u32, data: &[u8], msg_flags: &mut u32) {
    let left = room.saturating_sub(out.len());
    if left < CMSG_HDR {
        *msg_flags |= n::MSG_CTRUNC;
        return;
    }
    let full = CMSG_HDR + data.len();
    let mut m = Vec::with_capacity(cmsg_align(full));
    m.extend_from_slice(&(full as u64).to_le_bytes());
    m.extend_from_slice(&level.to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(data);
    if left < full {
        *msg_flags |= n::MSG_CTRUNC;
        m.truncate(left);
        m[0..8].copy_from_slice(&(left as u64).to_le_bytes());
    } else {
        m.resize(cmsg_align(full).min(left), 0);
    }
    out.extend_from_slice(&m);
}

fn put_control<H: Hal>(cx: &mut SysCtx<'_, H>, c: Control, ctl: u64, ctllen: u64, flags: u32, msg_flags: &mut u32) -> Result<usize, Errno> {
    let room = if ctl == 0 { 0 } else { ctllen.min(CTL_MAX) as usize };
    let mut out: Vec<u8> = Vec::new();
    if let Some(cr) = c.creds {
        let data: Vec<u8> = [cr.pid, cr.uid, cr.gid].iter().flat_map(|v| v.to_le_bytes()).collect();
        push_cmsg(&mut out, room, n::SOL_SOCKET, n::SCM_CREDENTIALS, &data, msg_flags);
    }
    if let Some(p) = c.pktinfo {
        let data: Vec<u8> = if p.v6 {
            // struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
            p.dst.iter().copied().chain(p.ifindex.to_le_bytes()).collect()
        } else {
            // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst, ipi_addr; }
            p.ifindex.to_le_bytes().into_iter().chain(p.dst[..4].iter().copied()).chain(p.dst[..4].iter().copied()).collect()
        };
        let (level, ty) = if p.v6 { (n::SOL_IPV6, n::IPV6_PKTINFO) } else { (n::SOL_IP, n::IP_PKTINFO) };
        push_cmsg(&mut out, room, level, ty, &data, msg_flags);
    }
    let mut installed: Vec<usize> = Vec::new();
    if !c.rights.is_empty() {
        let left = room.saturating_sub(out.len());
        let fdmax = if left > CMSG_HDR { (left - CMSG_HDR) / 4 } else { 0 };
        let cloexec = flags & n::MSG_CMSG_CLOEXEC != 0;
        let limit = cx.t.fd_limit();
        let count = c.rights.len();
        for f in c.rights.into_iter().take(fdmax) {
            match cx.t.fds.alloc_from(0, f, cloexec, limit) {
                Ok(fd) => installed.push(fd),
                Err(_) => break,
            }
        }
        if installed.len() < count {
            *msg_flags |= n::MSG_CTRUNC;
        }
        if !installed.is_empty() {
            let clen = CMSG_HDR + 4 * installed.len();
            let mut m = Vec::with_capacity(cmsg_align(clen));
            m.extend_from_slice(&(clen as u64).to_le_bytes());
            m.extend_from_slice(&n::SOL_SOCKET.to_le_bytes());
            m.extend_from_slice(&n::SCM_RIGHTS.to_le_bytes());
            for fd in &installed {
                m.extend_from_slice(&(*fd as i32).to_le_bytes());
            }
            m.resize(cmsg_align(clen).min(left), 0);
            out.extend_from_slice(&m);
        }
    }
    if !out.is_empty() {
        if let Err(e) = cx.write_user(ctl, &out) {
            for fd in installed {
                let _ = cx.t.fds.close(fd as u64);
            }
            return Err(e);
        }
    }
    Ok(out.len())
}

/// Receive one message into `m`. `Err(EAGAIN)`: would block.
fn recv_one<H: Hal>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, m: &InMsg, flags: u32) -> Result<InResult, Errno> {
    let mut buf = vec![0u8; (m.total as usize).min(IO_CAP)];
    let r = with_sock(cx, sp, |sc, s| s.recv(sc, &mut buf, flags))?;
    let stream = crate::net::socket_of(sp.as_ref()).is_some_and(|s| s.sock_type() == n::SOCK_STREAM);
    let mut at = 0usize;
    for &(base, len) in &m.iov {
        if at >= r.len {
            break;
        }
        let k = (len as usize).min(r.len - at);
        cx.write_user(base, &buf[at..at + k])?;
        at += k;
    }
    let mut msg_flags = 0;
    if r.full_len > r.len && !stream {
        msg_flags |= n::MSG_TRUNC;
    }
    let name = if m.name != 0 { Some(r.from.as_ref().map(|a| addr::encode(a, Unnamed::Empty)).unwrap_or_default()) } else { None };
    let ctl_used = put_control(cx, r.control, m.ctl, m.ctllen, flags, &mut msg_flags)?;
    let ret = if flags & n::MSG_TRUNC != 0 && !stream { r.full_len } else { r.len };
    let _ = m.namelen;
    Ok(InResult { ret, name, ctl_used, msg_flags })
}

fn recv_flow<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, flags: u32, r: Result<usize, Errno>) -> Flow {
    match r {
        Err(Errno::EAGAIN) => {
            let Ok((f, sp)) = sock_of(cx, fd) else { return Flow::Ret(Err(Errno::EBADF)) };
            if nonblocking(&f, flags) {
                return Flow::Ret(Err(Errno::EAGAIN));
            }
            block_sock(cx, &f, &sp, None, n::SO_RCVTIMEO)
        }
        r => Flow::Ret(r),
    }
}

fn sock_flags(f: &FileRef, flags: u32) -> u32 {
    if f.flags.get() & g::O_NONBLOCK != 0 {
        flags | n::MSG_DONTWAIT
    } else {
        flags
    }
}

/// `recvfrom(fd, buf, len, flags, addr, addrlen)`.
pub fn recvfrom<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[3] as u32;
    let r = (|| -> Result<usize, Errno> {
        let len = a[2].min(MAX_RW);
        cx.access_ok(a[1], len)?;
        let (f, sp) = sock_of(cx, a[0])?;
        let m = InMsg { iov: vec![(a[1], len)], total: len, name: a[4], namelen: 0, ctl: 0, ctllen: 0 };
        let res = recv_one(cx, &sp, &m, sock_flags(&f, flags))?;
        if let Some(name) = res.name {
            write_sockaddr(cx, &name, a[4], a[5])?;
        }
        Ok(res.ret)
    })();
    recv_flow(cx, a[0], flags, r)
}

fn read_in_msg<H: Hal>(cx: &mut SysCtx<'_, H>, ptr: u64) -> Result<InMsg, Errno> {
    let h = cx.read_array::<MSGHDR>(ptr)?;
    let (name, namelen) = (le_u64(&h, 0), le_u32(&h, 8));
    if (namelen as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let (iov, total) = iovecs(cx, le_u64(&h, 16), le_u64(&h, 24))?;
    let (ctl, ctllen) = (le_u64(&h, 32), le_u64(&h, 40));
    Ok(InMsg { iov, total, name, namelen: namelen.min(SOCKADDR_MAX as u32), ctl, ctllen })
}

/// Write back what `recvmsg` reports in the `msghdr`.
fn finish_in_msg<H: Hal>(cx: &mut SysCtx<'_, H>, ptr: u64, m: &InMsg, res: &InResult) -> Result<(), Errno> {
    if let (Some(name), true) = (&res.name, m.name != 0) {
        let k = name.len().min(m.namelen as usize);
        if k > 0 {
            cx.write_user(m.name, &name[..k])?;
        }
        cx.write_user(ptr + 8, &(name.len() as u32).to_le_bytes())?;
    }
    cx.write_user(ptr + 40, &(res.ctl_used as u64).to_le_bytes())?;
    cx.write_user(ptr + 48, &res.msg_flags.to_le_bytes())
}

/// `recvmsg(fd, msg, flags)`.
pub fn recvmsg<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[2] as u32;
    let r = (|| -> Result<usize, Errno> {
        let (f, sp) = sock_of(cx, a[0])?;
        let m = read_in_msg(cx, a[1])?;
        let res = recv_one(cx, &sp, &m, sock_flags(&f, flags))?;
        finish_in_msg(cx, a[1], &m, &res)?;
        Ok(res.ret)
    })();
    recv_flow(cx, a[0], flags, r)
}

/// `recvmmsg(fd, msgvec, vlen, flags, timeout)`: up to `vlen` messages;
/// blocks only for the first (`MSG_WAITFORONE`) or as the flags say. The
/// timeout is not supported beyond being validated.
pub fn recvmmsg<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let mut flags = a[3] as u32;
    let vlen = (a[2] as u32 as u64).min(UIO_MAXIOV);
    let (f, sp) = match sock_of(cx, a[0]) {
        Ok(x) => x,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if a[4] != 0 {
        if let Err(e) = cx.read_array::<16>(a[4]) {
            return Flow::Ret(Err(e));
        }
    }
    let mut done = 0u64;
    while done < vlen {
        let at = a[1].wrapping_add(done * MMSGHDR);
        let r = read_in_msg(cx, at).and_then(|m| {
            let res = recv_one(cx, &sp, &m, sock_flags(&f, flags))?;
            finish_in_msg(cx, at, &m, &res)?;
            cx.write_user(at + MSGHDR as u64, &(res.ret as u32).to_le_bytes())
        });
        match r {
            Ok(()) => {
                done += 1;
                if flags & MSG_WAITFORONE != 0 {
                    flags |= n::MSG_DONTWAIT;
                }
            }
            Err(_) if done > 0 => break,
            Err(e) => return recv_flow(cx, a[0], flags, Err(e)),
        }
    }
    Flow::Ret(Ok(done as usize))
}

// ------------------------------------------------------------------ the rest

/// `shutdown(fd, how)`.
pub fn shutdown<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    let how = a[1] as u32;
    with_sock(cx, &sp, |sc, s| s.shutdown(sc, how)).map(|_| 0)
}

/// `getsockopt(fd, level, name, value, lenp)`.
pub fn getsockopt<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    let len = cx.read_u32(a[4])? as i32;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let (level, name) = (a[1] as u32, a[2] as u32);
    let v = with_sock(cx, &sp, |sc, s| s.getsockopt(sc, level, name))?;
    let k = v.len().min(len as usize);
    if k > 0 {
        cx.write_user(a[3], &v[..k])?;
    }
    cx.write_user(a[4], &(k as u32).to_le_bytes())?;
    Ok(0)
}

/// `setsockopt(fd, level, name, value, len)`.
pub fn setsockopt<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (_, sp) = sock_of(cx, a[0])?;
    let (level, name) = (a[1] as u32, a[2] as u32);
    let len = a[4] as u32 as i32;
    if len < 0 || (level == n::SOL_SOCKET && len < 4) {
        return Err(Errno::EINVAL);
    }
    let mut v = vec![0u8; (len as usize).min(256)];
    if !v.is_empty() {
        cx.read_user(a[3], &mut v)?;
    }
    with_sock(cx, &sp, |sc, s| s.setsockopt(sc, level, name, &v)).map(|_| 0)
}

/// `ioctl` on a socket: the family's (`FIONREAD`, `SIOC*`). Interface
/// requests (`0x89xx`) pass the 40-byte `struct ifreq` in and out
/// (`SIOCGIFCONF` its 16-byte `struct ifconf`).
pub fn ioctl<H: Hal>(cx: &mut SysCtx<'_, H>, sp: &SpecialRef, req: u32, arg: u64) -> SysResult {
    const SIOCGIFCONF: u32 = 0x8912;
    let inlen = match req {
        SIOCGIFCONF => 16,
        0x8900..=0x89ff => 40,
        _ => 0,
    };
    let mut input = vec![0u8; inlen];
    if inlen > 0 {
        cx.read_user(arg, &mut input)?;
    }
    if req == SIOCGIFCONF {
        // The records go to the guest buffer ifc_buf points to (NULL: just the length).
        let (len, buf) = (le_u32(&input, 0) as i32, le_u64(&input, 8));
        let room = (buf != 0).then_some(len.max(0) as usize);
        let (n, recs) = crate::net::inet::ioctl::ifconf(&cx.k.net.inet.borrow(), room);
        if !recs.is_empty() {
            cx.write_user(buf, &recs)?;
        }
        return cx.write_user(arg, &(n as i32).to_le_bytes()).map(|_| 0);
    }
    if (0x8910..=0x89ff).contains(&req) {
        // Interface requests work on a socket of any family, as on Linux.
        let root = cx.t.cred.euid == 0;
        let r = crate::net::inet::ioctl::ifreq(&mut cx.k.net.inet.borrow_mut(), root, req, &input);
        if r != Err(Errno::ENOTTY) {
            let (ret, out) = r?;
            if let Some(out) = out {
                cx.write_user(arg, &out)?;
            }
            return Ok(ret);
        }
    }
    let (ret, out) = with_sock(cx, sp, |sc, s| s.ioctl(sc, req, &input))?;
    if let Some(out) = out {
        cx.write_user(arg, &out)?;
    }
    Ok(ret)
}
