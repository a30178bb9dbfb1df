//! AF_UNIX sockets against Linux: socket/socketpair argument rules, stream,
//! datagram and seqpacket semantics, filesystem and abstract names,
//! autobind, listen backlogs, blocking and nonblocking transfer, shutdown,
//! EOF/EPIPE/SIGPIPE/ECONNRESET, poll/epoll readiness, SCM_RIGHTS,
//! SCM_CREDENTIALS, socket options, FIONREAD and bad arguments.
//! Prints one line per check (no pids or paths); exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::ffi::CString;
use std::mem::size_of;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicI32, Ordering};
use userland_tests::{errno, errno_name, exit_now, fork, sleep_ms, wait_for};

static SIGPIPES: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigpipe(_: i32) {
    SIGPIPES.fetch_add(1, Ordering::SeqCst);
}

/// Errno names, socket ones included.
fn ename(e: i32) -> String {
    match e {
        libc::ENOTSOCK => "ENOTSOCK".into(),
        libc::EPROTOTYPE => "EPROTOTYPE".into(),
        libc::ENOPROTOOPT => "ENOPROTOOPT".into(),
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT".into(),
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        libc::EADDRINUSE => "EADDRINUSE".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::EISCONN => "EISCONN".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::EMSGSIZE => "EMSGSIZE".into(),
        libc::EDESTADDRREQ => "EDESTADDRREQ".into(),
        e => errno_name(e),
    }
}

/// A return value, or `-ENAME`.
fn rv(v: isize) -> String {
    if v < 0 {
        format!("-{}", ename(errno()))
    } else {
        format!("{v}")
    }
}

/// `t` on "the call failed with `e`".
fn te(name: &str, v: isize, e: i32) {
    t(name, v == -1 && errno() == e, rv(v));
}

fn sock(domain: i32, ty: i32) -> i32 {
    // SAFETY: plain call.
    unsafe { libc::socket(domain, ty, 0) }
}

fn pair(ty: i32) -> (i32, i32) {
    let mut sv = [0i32; 2];
    // SAFETY: sv has room for two ints.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) };
    if rc != 0 {
        t("socketpair", false, rv(rc as isize));
    }
    (sv[0], sv[1])
}

fn write(fd: i32, b: &[u8]) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

fn read(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn send(fd: i32, b: &[u8], flags: i32) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), flags) }
}

fn recv(fd: i32, b: &mut [u8], flags: i32) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), flags) }
}

fn close(fd: i32) {
    // SAFETY: plain call.
    unsafe { libc::close(fd) };
}

fn revents(fd: i32, events: i16) -> i16 {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents
}

const ALL: i16 = libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP | libc::POLLPRI | libc::POLLRDNORM | libc::POLLWRNORM | libc::POLLWRBAND;

/// A `sockaddr_un` for `path` (a leading NUL makes it abstract) and its length.
fn sun(path: &[u8]) -> (libc::sockaddr_un, u32) {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as u16;
    for (i, &c) in path.iter().enumerate() {
        a.sun_path[i] = c as c_char;
    }
    let len = 2 + path.len() + if path.first() == Some(&0) { 0 } else { 1 };
    (a, len as u32)
}

fn bind_to(fd: i32, path: &[u8]) -> isize {
    let (a, len) = sun(path);
    // SAFETY: a is a valid sockaddr_un of at least len bytes.
    unsafe { libc::bind(fd, (&a as *const libc::sockaddr_un).cast(), len) as isize }
}

fn connect_to(fd: i32, path: &[u8]) -> isize {
    let (a, len) = sun(path);
    // SAFETY: as above.
    unsafe { libc::connect(fd, (&a as *const libc::sockaddr_un).cast(), len) as isize }
}

fn sendto(fd: i32, b: &[u8], path: &[u8]) -> isize {
    let (a, len) = sun(path);
    // SAFETY: as above.
    unsafe { libc::sendto(fd, b.as_ptr().cast(), b.len(), 0, (&a as *const libc::sockaddr_un).cast(), len) }
}

/// getsockname/getpeername: (length, path bytes as reported).
fn name_of(fd: i32, peer: bool) -> Result<(u32, Vec<u8>), String> {
    // SAFETY: zeroed sockaddr_un is valid; len is its size.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as u32;
    let p = (&mut a as *mut libc::sockaddr_un).cast();
    // SAFETY: p/len describe a writable buffer.
    let rc = unsafe { if peer { libc::getpeername(fd, p, &mut len) } else { libc::getsockname(fd, p, &mut len) } };
    if rc != 0 {
        return Err(rv(rc as isize));
    }
    let path: Vec<u8> = a.sun_path.iter().take((len as usize).saturating_sub(2)).map(|&c| c as u8).collect();
    Ok((len, path))
}

fn getopt(fd: i32, level: i32, name: i32) -> Result<i32, String> {
    let mut v = 0i32;
    let mut len = 4u32;
    // SAFETY: v/len are valid.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    if rc != 0 {
        return Err(rv(rc as isize));
    }
    Ok(v)
}

fn setopt(fd: i32, level: i32, name: i32, v: i32) -> isize {
    // SAFETY: v is a valid int.
    unsafe { libc::setsockopt(fd, level, name, (&v as *const i32).cast(), 4) as isize }
}

fn peercred(fd: i32) -> libc::ucred {
    let mut c = libc::ucred { pid: -5, uid: 5, gid: 5 };
    let mut len = size_of::<libc::ucred>() as u32;
    // SAFETY: c/len are valid.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut c as *mut libc::ucred).cast(), &mut len) };
    c
}

/// sendmsg with `data` and SCM_RIGHTS for `fds` (none: no control).
fn send_fds(fd: i32, data: &[u8], fds: &[i32]) -> isize {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    let mut ctl = vec![0u64; 2 + (fds.len() * 4).div_ceil(8)];
    // SAFETY: zeroed msghdr is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes: &mut [u8] = bytemuck_u8(&mut ctl);
        let clen = 16 + 4 * fds.len();
        bytes[0..8].copy_from_slice(&(clen as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&libc::SOL_SOCKET.to_le_bytes());
        bytes[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_le_bytes());
        for (i, f) in fds.iter().enumerate() {
            bytes[16 + 4 * i..20 + 4 * i].copy_from_slice(&f.to_le_bytes());
        }
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = ctl.len() * 8;
    }
    // SAFETY: m points at valid buffers.
    unsafe { libc::sendmsg(fd, &m, libc::MSG_NOSIGNAL) }
}

fn bytemuck_u8(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 slices are valid u8 slices of 8x the length.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len() * 8) }
}

/// What a recvmsg got.
struct Got {
    n: isize,
    data: Vec<u8>,
    fds: Vec<i32>,
    creds: Option<(i32, u32, u32)>,
    flags: i32,
    namelen: u32,
    ctllen: usize,
}

/// recvmsg with `cap` data bytes and `ctl_bytes` of control space.
fn recv_msg(fd: i32, cap: usize, ctl_bytes: usize, flags: i32) -> Got {
    let mut data = vec![0u8; cap];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: cap };
    let mut ctl = vec![0u64; ctl_bytes.div_ceil(8).max(1)];
    // SAFETY: zeroed values are valid.
    let mut name: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_name = (&mut name as *mut libc::sockaddr_un).cast();
    m.msg_namelen = size_of::<libc::sockaddr_un>() as u32;
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if ctl_bytes > 0 {
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = ctl_bytes;
    }
    // SAFETY: m points at valid buffers.
    let n = unsafe { libc::recvmsg(fd, &mut m, flags) };
    let mut g = Got { n, data: Vec::new(), fds: Vec::new(), creds: None, flags: m.msg_flags, namelen: m.msg_namelen, ctllen: m.msg_controllen };
    if n >= 0 {
        g.data = data[..(n as usize).min(cap)].to_vec();
    }
    let used = m.msg_controllen.min(ctl_bytes);
    let bytes = bytemuck_u8(&mut ctl);
    let mut off = 0;
    while off + 16 <= used {
        let clen = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8])) as usize;
        let level = i32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap_or([0; 4]));
        let ty = i32::from_le_bytes(bytes[off + 12..off + 16].try_into().unwrap_or([0; 4]));
        if clen < 16 || off + clen > used {
            break;
        }
        let body = &bytes[off + 16..off + clen];
        if level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS {
            for c in body.chunks_exact(4) {
                g.fds.push(i32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        if level == libc::SOL_SOCKET && ty == libc::SCM_CREDENTIALS && body.len() >= 12 {
            let w = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            g.creds = Some((w(0) as i32, w(4), w(8)));
        }
        off += (clen + 7) & !7;
    }
    g
}

fn fd_cloexec(fd: i32) -> bool {
    // SAFETY: plain call.
    unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
}

fn fionread(fd: i32) -> isize {
    let mut v = -1i32;
    // SAFETY: v is a valid int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut v) };
    if rc < 0 {
        rc as isize
    } else {
        v as isize
    }
}

fn creation() {
    // SAFETY: plain calls.
    unsafe {
        te("socket(AF_UNIX, 99) is EINVAL", libc::socket(libc::AF_UNIX, 99, 0) as isize, libc::EINVAL);
        te("socket with an unknown type flag is EINVAL", libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | 0x100, 0) as isize, libc::EINVAL);
        te("socket(AF_UNIX, SOCK_RDM) is ESOCKTNOSUPPORT", libc::socket(libc::AF_UNIX, libc::SOCK_RDM, 0) as isize, libc::ESOCKTNOSUPPORT);
        te("socket(AF_UNIX, STREAM, 6) is EPROTONOSUPPORT", libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 6) as isize, libc::EPROTONOSUPPORT);
        te("socket(4242) is EAFNOSUPPORT", libc::socket(4242, libc::SOCK_STREAM, 0) as isize, libc::EAFNOSUPPORT);
        te("socket(45 (unregistered)) is EAFNOSUPPORT", libc::socket(45, libc::SOCK_STREAM, 0) as isize, libc::EAFNOSUPPORT);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, libc::AF_UNIX);
        t("protocol PF_UNIX is accepted", s >= 0, rv(s as isize));
        close(s);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_RAW, 0);
        t("AF_UNIX SOCK_RAW is a datagram socket", getopt(s, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_DGRAM), format!("{:?}", getopt(s, libc::SOL_SOCKET, libc::SO_TYPE)));
        close(s);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        let fl = libc::fcntl(s, libc::F_GETFL);
        t("SOCK_NONBLOCK sets O_NONBLOCK, O_RDWR", fl & libc::O_NONBLOCK != 0 && fl & libc::O_ACCMODE == libc::O_RDWR, format!("{fl:#x}"));
        t("SOCK_CLOEXEC sets FD_CLOEXEC", fd_cloexec(s), String::new());
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(s, &mut st);
        t("fstat of a socket is S_IFSOCK", st.st_mode & libc::S_IFMT == libc::S_IFSOCK, format!("{:o}", st.st_mode));
        close(s);
        let mut sv = [0i32; 2];
        te("socketpair(AF_UNIX, 99) is EINVAL", libc::socketpair(libc::AF_UNIX, 99, 0, sv.as_mut_ptr()) as isize, libc::EINVAL);
        te("socketpair into a bad pointer is EFAULT", libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, 8 as *mut i32) as isize, libc::EFAULT);
        let p = pair(libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
        t("socketpair SOCK_CLOEXEC", fd_cloexec(p.0) && fd_cloexec(p.1), String::new());
        close(p.0);
        close(p.1);
    }
}

fn stream_pair() {
    let (a, b) = pair(libc::SOCK_STREAM);
    t("SO_TYPE of a stream pair", getopt(a, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM), String::new());
    t("SO_DOMAIN", getopt(a, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_UNIX), String::new());
    t("SO_PROTOCOL", getopt(a, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Ok(0), String::new());
    t("SO_ACCEPTCONN of a pair is 0", getopt(a, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(0), String::new());
    t("SO_ERROR is 0", getopt(a, libc::SOL_SOCKET, libc::SO_ERROR) == Ok(0), String::new());
    let c = peercred(a);
    // SAFETY: plain calls.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
    t("SO_PEERCRED of a pair is ours", c.pid == pid && c.uid == uid && c.gid == gid, String::new());
    let n = name_of(a, false);
    t("getsockname of a pair: family only", n == Ok((2, vec![])), format!("{n:?}"));
    let n = name_of(a, true);
    t("getpeername of a pair: family only", n == Ok((2, vec![])), format!("{n:?}"));
    t("fresh pair: writable only", revents(a, ALL) == libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(a, ALL)));
    t("write 5", write(a, b"hello") == 5, String::new());
    t("peer readable", revents(b, ALL) == libc::POLLIN | libc::POLLRDNORM | libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(b, ALL)));
    t("FIONREAD on a stream", fionread(b) == 5, rv(fionread(b)));
    t("write 3 more", send(a, b"abc", 0) == 3, String::new());
    t("FIONREAD counts both writes", fionread(b) == 8, rv(fionread(b)));
    let mut buf = [0u8; 64];
    let n = recv(b, &mut buf, libc::MSG_PEEK);
    t("MSG_PEEK sees both writes glued", n == 8 && &buf[..8] == b"helloabc", rv(n));
    let n = recv(b, &mut buf[..4], 0);
    t("a short read takes part", n == 4 && &buf[..4] == b"hell", rv(n));
    let n = read(b, &mut buf);
    t("the rest", n == 4 && &buf[..4] == b"oabc", rv(n));
    te("empty, MSG_DONTWAIT is EAGAIN", recv(b, &mut buf, libc::MSG_DONTWAIT), libc::EAGAIN);
    // writev / readv.
    let parts = [libc::iovec { iov_base: b"ab".as_ptr() as *mut _, iov_len: 2 }, libc::iovec { iov_base: b"cde".as_ptr() as *mut _, iov_len: 3 }];
    // SAFETY: iovecs point at static bytes.
    let n = unsafe { libc::writev(a, parts.as_ptr(), 2) };
    t("writev", n == 5, rv(n));
    let mut x = [0u8; 3];
    let mut y = [0u8; 3];
    let rparts = [libc::iovec { iov_base: x.as_mut_ptr().cast(), iov_len: 3 }, libc::iovec { iov_base: y.as_mut_ptr().cast(), iov_len: 3 }];
    // SAFETY: iovecs point at local buffers.
    let n = unsafe { libc::readv(b, rparts.as_ptr(), 2) };
    t("readv", n == 5 && &x == b"abc" && &y[..2] == b"de", rv(n));
    // shutdown.
    // SAFETY: plain calls.
    unsafe {
        te("shutdown(how=5) is EINVAL", libc::shutdown(a, 5) as isize, libc::EINVAL);
        t("shutdown(SHUT_WR)", libc::shutdown(a, libc::SHUT_WR) == 0, String::new());
    }
    t("peer after SHUT_WR: EOF readable", revents(b, ALL) == libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP | libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(b, ALL)));
    t("read after the peer's SHUT_WR is 0", read(b, &mut buf) == 0, String::new());
    te("send after SHUT_WR is EPIPE", send(a, b"x", libc::MSG_NOSIGNAL), libc::EPIPE);
    t("the other way still works", write(b, b"back") == 4 && read(a, &mut buf) == 4, String::new());
    // SAFETY: plain call.
    unsafe { libc::shutdown(a, libc::SHUT_RD) };
    t("shut both ways: HUP", revents(a, ALL) & (libc::POLLHUP | libc::POLLRDHUP) == libc::POLLHUP | libc::POLLRDHUP, format!("{:#x}", revents(a, ALL)));
    te("peer's write after our SHUT_RD is EPIPE", send(b, b"x", libc::MSG_NOSIGNAL), libc::EPIPE);
    close(a);
    close(b);

    // Close: EOF, EPIPE and SIGPIPE.
    let (a, b) = pair(libc::SOCK_STREAM);
    write(a, b"last");
    close(a);
    t("after the peer closed: IN|OUT|HUP|RDHUP", revents(b, ALL) == libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP | libc::POLLHUP | libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(b, ALL)));
    t("data sent before close is still read", read(b, &mut buf) == 4, String::new());
    t("then EOF", read(b, &mut buf) == 0, String::new());
    SIGPIPES.store(0, Ordering::SeqCst);
    te("write to a closed peer is EPIPE", write(b, b"x"), libc::EPIPE);
    t("and raises SIGPIPE", SIGPIPES.load(Ordering::SeqCst) == 1, format!("{}", SIGPIPES.load(Ordering::SeqCst)));
    te("send MSG_NOSIGNAL is EPIPE", send(b, b"x", libc::MSG_NOSIGNAL), libc::EPIPE);
    t("without a signal", SIGPIPES.load(Ordering::SeqCst) == 1, String::new());
    close(b);

    // Closing with unread data resets the peer.
    let (a, b) = pair(libc::SOCK_STREAM);
    write(b, b"unread");
    close(a);
    t("peer of a close with unread data: POLLERR", revents(b, ALL) & libc::POLLERR != 0, format!("{:#x}", revents(b, ALL)));
    te("its read is ECONNRESET", read(b, &mut buf), libc::ECONNRESET);
    t("then EOF", read(b, &mut buf) == 0, String::new());
    close(b);

    // Unconnected stream sockets.
    let s = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    t("fresh stream socket: OUT|HUP", revents(s, ALL) == libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLHUP, format!("{:#x}", revents(s, ALL)));
    te("read on an unconnected stream is EINVAL", read(s, &mut buf), libc::EINVAL);
    te("send on an unconnected stream is ENOTCONN", send(s, b"x", libc::MSG_NOSIGNAL), libc::ENOTCONN);
    te("getpeername unconnected is ENOTCONN", name_of(s, true).map(|_| 0).unwrap_or(-1), libc::ENOTCONN);
    // SAFETY: plain calls.
    unsafe {
        te("accept on a non-listening socket is EINVAL", libc::accept(s, std::ptr::null_mut(), std::ptr::null_mut()) as isize, libc::EINVAL);
        te("listen unbound is EINVAL", libc::listen(s, 5) as isize, libc::EINVAL);
        te("accept4 with bad flags is EINVAL", libc::accept4(s, std::ptr::null_mut(), std::ptr::null_mut(), 0x4) as isize, libc::EINVAL);
    }
    close(s);
}

fn flood() {
    // A nonblocking flood stops at EAGAIN; a blocking writer then waits for the reader.
    let (a, b) = pair(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let chunk = vec![1u8; 4096];
    let mut total = 0usize;
    loop {
        let n = write(a, &chunk);
        if n < 0 {
            break;
        }
        total += n as usize;
        if total > 64 << 20 {
            break;
        }
    }
    t("a nonblocking flood ends in EAGAIN", errno() == libc::EAGAIN && total > 0 && total < 8 << 20, format!("{total} {}", ename(errno())));
    t("full: not writable", revents(a, ALL) & libc::POLLOUT == 0, format!("{:#x}", revents(a, ALL)));
    let mut buf = vec![0u8; 1 << 16];
    while read(b, &mut buf) > 0 {}
    t("drained: writable again", revents(a, ALL) & libc::POLLOUT != 0, format!("{:#x}", revents(a, ALL)));
    close(a);
    close(b);

    let (a, b) = pair(libc::SOCK_STREAM);
    let pid = fork();
    if pid == 0 {
        close(a);
        let mut got = 0usize;
        let mut buf = vec![0u8; 30000];
        let mut good = true;
        loop {
            let n = read(b, &mut buf);
            if n <= 0 {
                break;
            }
            good &= buf[..n as usize].iter().all(|&c| c == 9);
            got += n as usize;
        }
        exit_now(if got == 3_000_000 && good { 0 } else { 3 });
    }
    close(b);
    let chunk = vec![9u8; 100_000];
    let mut left = 3_000_000usize;
    while left > 0 {
        let n = write(a, &chunk[..left.min(chunk.len())]);
        if n <= 0 {
            break;
        }
        left -= n as usize;
    }
    close(a);
    let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
    t("3 MB through a blocking stream pair across fork", left == 0 && st == 0, format!("{left} {st}"));
}

fn dgram_and_seqpacket() {
    let (a, b) = pair(libc::SOCK_DGRAM);
    let mut buf = [0u8; 64];
    send(a, b"abc", 0);
    send(a, b"defgh", 0);
    send(a, b"", 0);
    t("FIONREAD on a datagram socket is the next size", fionread(b) == 3, rv(fionread(b)));
    let n = recv(b, &mut buf, 0);
    t("datagram boundaries kept", n == 3, rv(n));
    let g = recv_msg(b, 2, 0, 0);
    t("a short datagram read: MSG_TRUNC, rest dropped", g.n == 2 && g.flags & libc::MSG_TRUNC != 0 && g.data == b"de", format!("{} {:#x}", g.n, g.flags));
    t("recvmsg of an unnamed sender: namelen 0", g.namelen == 0, format!("{}", g.namelen));
    let n = recv(b, &mut buf, 0);
    t("an empty datagram reads as 0", n == 0, rv(n));
    send(a, b"123456", 0);
    let n = recv(b, &mut buf[..2], libc::MSG_TRUNC | libc::MSG_PEEK);
    t("MSG_TRUNC returns the full length", n == 6, rv(n));
    let n = recv(b, &mut buf, 0);
    t("peek left it queued", n == 6, rv(n));
    te("empty dgram socket, MSG_DONTWAIT", recv(b, &mut buf, libc::MSG_DONTWAIT), libc::EAGAIN);
    let big = vec![0u8; 300_000];
    te("an oversized datagram is EMSGSIZE", send(a, &big, 0), libc::EMSGSIZE);
    // SAFETY: plain call.
    unsafe { libc::shutdown(a, libc::SHUT_WR) };
    te("datagram send after SHUT_WR is EPIPE", send(a, b"x", libc::MSG_NOSIGNAL), libc::EPIPE);
    close(a);
    te("datagram peer gone: send ECONNREFUSED", send(b, b"x", libc::MSG_NOSIGNAL), libc::ECONNREFUSED);
    te("then ENOTCONN", send(b, b"x", libc::MSG_NOSIGNAL), libc::ENOTCONN);
    te("no EOF on datagram sockets", recv(b, &mut buf, libc::MSG_DONTWAIT), libc::EAGAIN);
    close(b);

    // A datagram flood into a pair blocks (EAGAIN) instead of growing.
    let (a, b) = pair(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK);
    let mut count = 0;
    while send(a, b"", 0) == 0 && count < 1_000_000 {
        count += 1;
    }
    t("a flood of empty datagrams ends in EAGAIN", errno() == libc::EAGAIN && count > 10 && count < 1_000_000, format!("{count}"));
    t("full datagram sender: not writable", revents(a, ALL) & libc::POLLOUT == 0, format!("{:#x}", revents(a, ALL)));
    close(a);
    close(b);

    let (a, b) = pair(libc::SOCK_SEQPACKET);
    t("SO_TYPE seqpacket", getopt(a, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_SEQPACKET), String::new());
    send(a, b"one", 0);
    send(a, b"three", 0);
    let g = recv_msg(b, 10, 0, 0);
    t("seqpacket records", g.n == 3 && g.data == b"one", format!("{}", g.n));
    let g = recv_msg(b, 2, 0, 0);
    t("seqpacket truncation sets MSG_TRUNC", g.n == 2 && g.flags & libc::MSG_TRUNC != 0, format!("{} {:#x}", g.n, g.flags));
    close(a);
    t("seqpacket peer closed: IN|HUP|RDHUP", revents(b, ALL) & (libc::POLLIN | libc::POLLHUP | libc::POLLRDHUP) == libc::POLLIN | libc::POLLHUP | libc::POLLRDHUP, format!("{:#x}", revents(b, ALL)));
    t("seqpacket EOF", recv(b, &mut buf, 0) == 0, String::new());
    SIGPIPES.store(0, Ordering::SeqCst);
    te("seqpacket send to a closed peer is EPIPE", send(b, b"x", 0), libc::EPIPE);
    t("seqpacket EPIPE raises no SIGPIPE", SIGPIPES.load(Ordering::SeqCst) == 0, format!("{}", SIGPIPES.load(Ordering::SeqCst)));
    close(b);
    let s = sock(libc::AF_UNIX, libc::SOCK_SEQPACKET);
    te("seqpacket unconnected send is ENOTCONN", send(s, b"x", libc::MSG_NOSIGNAL), libc::ENOTCONN);
    te("seqpacket unconnected recv is ENOTCONN", recv(s, &mut buf, libc::MSG_DONTWAIT), libc::ENOTCONN);
    close(s);
    let s = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    // SAFETY: plain call.
    unsafe { libc::shutdown(s, libc::SHUT_RD) };
    te("datagram SHUT_RD, MSG_DONTWAIT: still EAGAIN", recv(s, &mut buf, libc::MSG_DONTWAIT), libc::EAGAIN);
    t("datagram SHUT_RD, blocking: 0", recv(s, &mut buf, 0) == 0, String::new());
    t("datagram SHUT_RD: readable with RDHUP", revents(s, ALL) == libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP | libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(s, ALL)));
    close(s);
    let s = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    t("fresh datagram socket: writable", revents(s, ALL) == libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND, format!("{:#x}", revents(s, ALL)));
    te("datagram send without a destination is ENOTCONN", send(s, b"x", 0), libc::ENOTCONN);
    // SAFETY: plain call.
    te("listen on a datagram socket is EOPNOTSUPP", unsafe { libc::listen(s, 1) } as isize, libc::EOPNOTSUPP);
    close(s);
}

fn names(dir: &str) {
    let path = format!("{dir}/srv");
    let p = path.as_bytes();
    let l = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    t("bind to a path", bind_to(l, p) == 0, rv(bind_to(l, p)));
    let cp = CString::new(path.clone()).unwrap_or_default();
    // SAFETY: cp is a valid C string; st is a valid out-buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let rc = libc::stat(cp.as_ptr(), &mut st);
        t("the path is a socket node", rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK, format!("{rc} {:o}", st.st_mode));
        te("open() of a socket node is ENXIO", libc::open(cp.as_ptr(), libc::O_RDWR) as isize, libc::ENXIO);
        let cd = CString::new(dir).unwrap_or_default();
        let d = libc::opendir(cd.as_ptr());
        let mut dtype = None;
        while !d.is_null() {
            let e = libc::readdir(d);
            if e.is_null() {
                break;
            }
            if std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_bytes() == b"srv" {
                dtype = Some((*e).d_type);
            }
        }
        if !d.is_null() {
            libc::closedir(d);
        }
        t("readdir reports DT_SOCK", dtype == Some(libc::DT_SOCK), format!("{dtype:?}"));
    }
    let n = name_of(l, false);
    t("getsockname: the path, NUL counted", n.as_ref().map(|x| x.0 as usize) == Ok(2 + p.len() + 1), format!("{:?}", n.map(|x| x.0)));
    t("bind again is EINVAL", bind_to(l, format!("{dir}/other").as_bytes()) == -1 && errno() == libc::EINVAL, rv(bind_to(l, b"x")));
    // SAFETY: plain call.
    let gone = unsafe { libc::access(CString::new(format!("{dir}/other")).unwrap_or_default().as_ptr(), libc::F_OK) };
    t("a failed bind leaves no node", gone == -1, String::new());
    let l2 = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    te("bind to an existing path is EADDRINUSE", bind_to(l2, p), libc::EADDRINUSE);
    let c = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    te("connect before listen is ECONNREFUSED", connect_to(c, p), libc::ECONNREFUSED);
    te("connect to a missing path is ENOENT", connect_to(c, format!("{dir}/nope").as_bytes()), libc::ENOENT);
    let file = format!("{dir}/file");
    // SAFETY: valid C string.
    unsafe { close(libc::open(CString::new(file.clone()).unwrap_or_default().as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644)) };
    te("connect to a regular file is ECONNREFUSED", connect_to(c, file.as_bytes()), libc::ECONNREFUSED);
    let d = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    // SAFETY: plain calls.
    unsafe {
        t("listen", libc::listen(l, 1) == 0, String::new());
        t("SO_ACCEPTCONN of a listener is 1", getopt(l, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(1), String::new());
        te("a datagram socket connecting to a stream listener: EPROTOTYPE", connect_to(d, p), libc::EPROTOTYPE);
        t("listener: not readable, not writable", revents(l, ALL) == 0, format!("{:#x}", revents(l, ALL)));
        t("connect", connect_to(c, p) == 0, rv(connect_to(c, p)));
        te("connect again is EISCONN", connect_to(c, p), libc::EISCONN);
        t("a pending connection makes the listener readable", revents(l, ALL) == libc::POLLIN | libc::POLLRDNORM, format!("{:#x}", revents(l, ALL)));
        let n = name_of(c, true);
        t("getpeername of the client: the listener's path", n.as_ref().map(|x| x.1.starts_with(p)) == Ok(true), String::new());
        let cr = peercred(c);
        t("client's SO_PEERCRED: the listener's", cr.pid == libc::getpid(), String::new());
        t("write before accept", write(c, b"early") == 5, String::new());
        let mut a: libc::sockaddr_un = std::mem::zeroed();
        let mut alen = size_of::<libc::sockaddr_un>() as u32;
        let s = libc::accept4(l, (&mut a as *mut libc::sockaddr_un).cast(), &mut alen, libc::SOCK_CLOEXEC);
        t("accept4", s >= 0, rv(s as isize));
        t("accept of an unnamed client: family only", alen == 2, format!("{alen}"));
        t("accept4 SOCK_CLOEXEC", fd_cloexec(s), String::new());
        let n = name_of(s, false);
        t("accepted socket's name is the listener's", n.as_ref().map(|x| x.1.starts_with(p)) == Ok(true), String::new());
        let mut buf = [0u8; 16];
        t("data written before accept arrives", read(s, &mut buf) == 5 && &buf[..5] == b"early", String::new());
        let cr = peercred(s);
        t("server's SO_PEERCRED: the client", cr.pid == libc::getpid() && cr.uid == libc::geteuid(), String::new());
        te("accept with nothing pending (nonblocking)", {
            libc::fcntl(l, libc::F_SETFL, libc::O_NONBLOCK);
            libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) as isize
        }, libc::EAGAIN);
        close(s);
        close(c);
        // Backlog: listen(1) queues two connections; the third would block.
        let mut queued = Vec::new();
        let mut last = 0;
        for _ in 0..5 {
            let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            last = connect_to(c, p);
            if last != 0 {
                close(c);
                break;
            }
            queued.push(c);
        }
        t("listen(1) queues 2, then connect is EAGAIN", queued.len() == 2 && last == -1 && errno() == libc::EAGAIN, format!("{} {}", queued.len(), rv(last)));
        // A blocking connect waits until the listener accepts one.
        let pid = fork();
        if pid == 0 {
            let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let r = connect_to(c, p);
            exit_now(if r == 0 { 0 } else { 2 });
        }
        sleep_ms(50);
        let s = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
        let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
        t("a blocking connect waits for room in the backlog", s >= 0 && st == 0, format!("{s} {st}"));
        close(s);
        close(l);
        t("a queued client of a closed listener reads EOF", read(queued[0], &mut buf) == 0, String::new());
        te("and cannot write", send(queued[0], b"x", libc::MSG_NOSIGNAL), libc::EPIPE);
        for c in queued {
            close(c);
        }
        let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        te("connect to a closed listener's path is ECONNREFUSED", connect_to(c, p), libc::ECONNREFUSED);
        libc::unlink(cp.as_ptr());
        te("after unlink: ENOENT", connect_to(c, p), libc::ENOENT);
        close(c);
        close(l2);
    }

    // Datagram sockets by name.
    let dpath = format!("{dir}/dg");
    let srv = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    bind_to(srv, dpath.as_bytes());
    t("sendto a path", sendto(d, b"hi", dpath.as_bytes()) == 2, String::new());
    let g = recv_msg(srv, 16, 0, 0);
    t("from an unbound sender: namelen 0", g.n == 2 && g.namelen == 0, format!("{} {}", g.n, g.namelen));
    let abs = format!("\0conf_unix_c{}", std::process::id());
    t("bind an abstract name", bind_to(d, abs.as_bytes()) == 0, String::new());
    sendto(d, b"hi", dpath.as_bytes());
    let g = recv_msg(srv, 16, 0, 0);
    t("from a bound sender: its name", g.namelen as usize == 2 + abs.len(), format!("{}", g.namelen));
    te("sendto a missing path is ENOENT", sendto(d, b"x", format!("{dir}/none").as_bytes()), libc::ENOENT);
    t("connect a datagram socket", connect_to(d, dpath.as_bytes()) == 0, String::new());
    t("send without an address", send(d, b"c", 0) == 1, String::new());
    let n = name_of(d, true);
    t("datagram getpeername", n.as_ref().map(|x| x.1.starts_with(dpath.as_bytes())) == Ok(true), String::new());
    let other = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    // srv -> connected to d's abstract name; then `other` may not send to srv.
    t("server connects back", connect_to(srv, abs.as_bytes()) == 0, String::new());
    te("sending to a socket connected elsewhere is EPERM", sendto(other, b"x", dpath.as_bytes()), libc::EPERM);
    // SAFETY: an AF_UNSPEC sockaddr dissolves the association.
    unsafe {
        let un = libc::sockaddr { sa_family: libc::AF_UNSPEC as u16, sa_data: [0; 14] };
        t("connect(AF_UNSPEC) dissolves it", libc::connect(d, &un, 16) == 0, String::new());
    }
    te("then send is ENOTCONN", send(d, b"x", 0), libc::ENOTCONN);
    let mut buf = [0u8; 16];
    while recv(srv, &mut buf, libc::MSG_DONTWAIT) >= 0 {}
    // Receiver queue limit for senders it is not connected to.
    // SAFETY: plain call.
    unsafe { libc::fcntl(other, libc::F_SETFL, libc::O_NONBLOCK) };
    let s2 = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    bind_to(s2, format!("{dir}/dg2").as_bytes());
    let mut count = 0;
    while sendto(other, b"q", format!("{dir}/dg2").as_bytes()) == 1 && count < 100_000 {
        count += 1;
    }
    t("a datagram receiver takes max_dgram_qlen+1 from strangers", count == 11 && errno() == libc::EAGAIN, format!("{count} {}", ename(errno())));
    close(s2);
    // A blocking sendto into a full receiver waits until the receiver reads.
    let p3 = format!("{dir}/dg3");
    let r = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
    bind_to(r, p3.as_bytes());
    let pid = fork();
    if pid == 0 {
        let s = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
        for _ in 0..20 {
            if sendto(s, b"z", p3.as_bytes()) != 1 {
                exit_now(2);
            }
        }
        exit_now(0);
    }
    sleep_ms(50);
    let queued = fionread(r);
    let mut got = 0;
    while got < 20 && recv(r, &mut buf, 0) == 1 {
        got += 1;
    }
    let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
    t("a blocked datagram sender resumes as the receiver reads", got == 20 && st == 0 && queued == 1, format!("{got} {st} {queued}"));
    close(r);
    close(other);
    close(srv);
    close(d);

    // A seqpacket listener; a client that binds after connecting.
    let name = format!("\0conf_unix_sq{}", std::process::id());
    let l = sock(libc::AF_UNIX, libc::SOCK_SEQPACKET);
    bind_to(l, name.as_bytes());
    // SAFETY: plain call.
    unsafe { libc::listen(l, 2) };
    t("seqpacket listener: no events", revents(l, ALL) == 0, format!("{:#x}", revents(l, ALL)));
    te("recv on a seqpacket listener is ENOTCONN", recv(l, &mut buf, libc::MSG_DONTWAIT), libc::ENOTCONN);
    let c = sock(libc::AF_UNIX, libc::SOCK_SEQPACKET);
    connect_to(c, name.as_bytes());
    // SAFETY: plain call.
    te("listen on a connected socket is EINVAL", unsafe { libc::listen(c, 1) } as isize, libc::EINVAL);
    let cname = format!("\0conf_unix_sc{}", std::process::id());
    t("bind after connect", bind_to(c, cname.as_bytes()) == 0, String::new());
    // SAFETY: plain call.
    let s = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
    let n = name_of(s, true);
    t("the accepted side sees the client's later name", n.as_ref().map(|x| x.0 as usize) == Ok(2 + cname.len()), format!("{n:?}"));
    close(s);
    close(c);
    close(l);

    // Abstract names.
    let name = format!("\0conf_unix_a{}", std::process::id());
    let l = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    t("bind abstract", bind_to(l, name.as_bytes()) == 0, String::new());
    let n = name_of(l, false);
    t("abstract getsockname: no NUL added", n.as_ref().map(|x| x.0 as usize) == Ok(2 + name.len()), format!("{:?}", n.map(|x| x.0)));
    let l2 = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    te("the same abstract name again is EADDRINUSE", bind_to(l2, name.as_bytes()), libc::EADDRINUSE);
    // SAFETY: plain call.
    unsafe { libc::listen(l, 4) };
    let c = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    t("connect to an abstract name", connect_to(c, name.as_bytes()) == 0, String::new());
    close(c);
    close(l);
    t("a closed socket's abstract name is free again", bind_to(l2, name.as_bytes()) == 0, rv(bind_to(l2, name.as_bytes())));
    close(l2);
    let c = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    te("connect to an unused abstract name is ECONNREFUSED", connect_to(c, b"\0conf_unix_nobody"), libc::ECONNREFUSED);
    // Autobind.
    // SAFETY: a sockaddr of just the family.
    let rc = unsafe {
        let a = libc::sockaddr { sa_family: libc::AF_UNIX as u16, sa_data: [0; 14] };
        libc::bind(c, &a, 2)
    };
    let n = name_of(c, false);
    t("autobind: a 5-digit abstract name", rc == 0 && n.as_ref().map(|x| (x.0, x.1.first().copied())) == Ok((8, Some(0))), format!("{rc} {n:?}"));
    // SAFETY: as above.
    let rc = unsafe {
        let a = libc::sockaddr { sa_family: libc::AF_UNIX as u16, sa_data: [0; 14] };
        libc::bind(c, &a, 2)
    };
    t("autobind of a bound socket is a no-op", rc == 0 && name_of(c, false) == n, String::new());
    close(c);
}

fn rights() {
    let (a, b) = pair(libc::SOCK_STREAM);
    let mut p = [0i32; 2];
    // SAFETY: p has room for two fds.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    t("send a pipe's write end", send_fds(a, b"F", &[p[1]]) == 1, String::new());
    close(p[1]);
    let g = recv_msg(b, 16, 64, libc::MSG_CMSG_CLOEXEC);
    t("receive it", g.n == 1 && g.fds.len() == 1 && g.flags & libc::MSG_CTRUNC == 0, format!("{} {:?} {:#x}", g.n, g.fds, g.flags));
    if let Some(&w) = g.fds.first() {
        t("MSG_CMSG_CLOEXEC", fd_cloexec(w), String::new());
        t("the received file works", write(w, b"via") == 3, String::new());
        let mut buf = [0u8; 8];
        t("read through the pipe", read(p[0], &mut buf) == 3 && &buf[..3] == b"via", String::new());
        close(w);
    }
    t("controllen reports what was used", g.ctllen == 24, format!("{}", g.ctllen));
    let mut buf = [0u8; 8];
    t("the pipe's last writer is gone: EOF", read(p[0], &mut buf) == 0, String::new());
    close(p[0]);
    // Three files, room for one.
    // SAFETY: plain calls.
    let fds: Vec<i32> = (0..3).map(|_| unsafe { libc::dup(0) }).collect();
    send_fds(a, b"3", &fds);
    let g = recv_msg(b, 16, 24, 0);
    t("room for two of three: two, MSG_CTRUNC", g.fds.len() == 2 && g.flags & libc::MSG_CTRUNC != 0, format!("{:?} {:#x}", g.fds, g.flags));
    t("without MSG_CMSG_CLOEXEC: no FD_CLOEXEC", g.fds.first().is_some_and(|&f| !fd_cloexec(f)), String::new());
    for f in g.fds {
        close(f);
    }
    send_fds(a, b"n", &fds);
    let g = recv_msg(b, 16, 0, 0);
    t("no control buffer: MSG_CTRUNC", g.n == 1 && g.flags & libc::MSG_CTRUNC != 0, format!("{:#x}", g.flags));
    for f in fds {
        close(f);
    }
    te("SCM_RIGHTS with a bad fd is EBADF", send_fds(a, b"x", &[999]), libc::EBADF);
    // Stream reads stop after a message with files.
    send(a, b"ab", 0);
    send_fds(a, b"cd", &[0]);
    send(a, b"ef", 0);
    let g = recv_msg(b, 16, 64, 0);
    t("a stream read takes data up to and including the files' message", g.n == 4 && g.data == b"abcd" && g.fds.len() == 1, format!("{} {:?}", g.n, g.data));
    for f in g.fds {
        close(f);
    }
    let g = recv_msg(b, 16, 64, 0);
    t("then the rest", g.n == 2 && g.fds.is_empty(), String::new());
    // Peek duplicates the files.
    send_fds(a, b"p", &[0]);
    let g1 = recv_msg(b, 16, 64, libc::MSG_PEEK);
    let g2 = recv_msg(b, 16, 64, 0);
    t("MSG_PEEK gets its own copy of the files", g1.fds.len() == 1 && g2.fds.len() == 1 && g1.fds != g2.fds, format!("{:?} {:?}", g1.fds, g2.fds));
    for f in g1.fds.into_iter().chain(g2.fds) {
        close(f);
    }
    // Credentials.
    setopt(b, libc::SOL_SOCKET, libc::SO_PASSCRED, 1);
    t("SO_PASSCRED reads back", getopt(b, libc::SOL_SOCKET, libc::SO_PASSCRED) == Ok(1), String::new());
    send(a, b"c", 0);
    let g = recv_msg(b, 16, 64, 0);
    // SAFETY: plain calls.
    let me = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
    t("SO_PASSCRED: SCM_CREDENTIALS of the sender", g.creds == Some((me.0, me.1, me.2)), format!("{:?}", g.creds));
    // A socket sent over itself, then closed: a cycle the kernel must survive.
    send_fds(a, b"s", &[a, b]);
    close(a);
    close(b);
    t("a socket pair sent over itself and closed", true, String::new());
}

fn options_and_errors(dir: &str) {
    let s = sock(libc::AF_UNIX, libc::SOCK_STREAM);
    setopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, 8192);
    t("SO_SNDBUF is doubled", getopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF) == Ok(16384), format!("{:?}", getopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF)));
    setopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, 100);
    t("SO_RCVBUF has a minimum", getopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF) == Ok(2304), format!("{:?}", getopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF)));
    setopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, 5);
    setopt(s, libc::SOL_SOCKET, libc::SO_BROADCAST, 7);
    t("SO_BROADCAST is remembered (as 1)", getopt(s, libc::SOL_SOCKET, libc::SO_BROADCAST) == Ok(1), String::new());
    t("SO_RCVLOWAT defaults to 1", getopt(s, libc::SOL_SOCKET, libc::SO_RCVLOWAT) == Ok(1), String::new());
    t("SO_REUSEADDR reads back as 1", getopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR) == Ok(1), String::new());
    t("unknown SOL_SOCKET option: ENOPROTOOPT", getopt(s, libc::SOL_SOCKET, 9999) == Err("-ENOPROTOOPT".into()), format!("{:?}", getopt(s, libc::SOL_SOCKET, 9999)));
    t("setsockopt of SO_TYPE: ENOPROTOOPT", setopt(s, libc::SOL_SOCKET, libc::SO_TYPE, 1) == -1 && errno() == libc::ENOPROTOOPT, String::new());
    t("IPPROTO_TCP level on AF_UNIX: EOPNOTSUPP", getopt(s, libc::IPPROTO_TCP, 1) == Err("-EOPNOTSUPP".into()), format!("{:?}", getopt(s, libc::IPPROTO_TCP, 1)));
    // SAFETY: valid small buffers, deliberately short lengths, bad pointers.
    unsafe {
        let v = 1i32;
        te("setsockopt with optlen 2 is EINVAL", libc::setsockopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&v as *const i32).cast(), 2) as isize, libc::EINVAL);
        let mut b = [0u8; 8];
        let mut len = 2u32;
        let rc = libc::getsockopt(s, libc::SOL_SOCKET, libc::SO_TYPE, b.as_mut_ptr().cast(), &mut len);
        t("getsockopt truncates to optlen", rc == 0 && len == 2 && b[0] == 1, format!("{rc} {len}"));
        let mut len = -1i32 as u32;
        te("getsockopt with a negative optlen is EINVAL", libc::getsockopt(s, libc::SOL_SOCKET, libc::SO_TYPE, b.as_mut_ptr().cast(), &mut len) as isize, libc::EINVAL);
        te("getsockopt with a bad optlen pointer is EFAULT", libc::getsockopt(s, libc::SOL_SOCKET, libc::SO_TYPE, b.as_mut_ptr().cast(), 8 as *mut u32) as isize, libc::EFAULT);
        let mut c = libc::ucred { pid: 1, uid: 1, gid: 1 };
        let mut len = size_of::<libc::ucred>() as u32;
        libc::getsockopt(s, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut c as *mut libc::ucred).cast(), &mut len);
        t("SO_PEERCRED unconnected: pid 0, ids -1", c.pid == 0 && c.uid == u32::MAX && c.gid == u32::MAX && len == 12, format!("{} {} {} {len}", c.pid, c.uid, c.gid));

        let (a, len) = sun(b"/x");
        te("bind with addrlen 200 is EINVAL", libc::bind(s, (&a as *const libc::sockaddr_un).cast(), 200) as isize, libc::EINVAL);
        te("bind with addrlen 1 is EINVAL", libc::bind(s, (&a as *const libc::sockaddr_un).cast(), 1) as isize, libc::EINVAL);
        te("bind from a bad pointer is EFAULT", libc::bind(s, 8 as *const libc::sockaddr, len) as isize, libc::EFAULT);
        let inet = libc::sockaddr { sa_family: libc::AF_INET as u16, sa_data: [0; 14] };
        te("bind of an AF_INET address to AF_UNIX is EINVAL", libc::bind(s, &inet, 16) as isize, libc::EINVAL);
        te("connect of an AF_INET address to AF_UNIX is EINVAL", libc::connect(s, &inet, 16) as isize, libc::EINVAL);
        let long = [b'a'; 108];
        let (a, _) = sun(&long[..107]);
        let mut a = a;
        a.sun_path[107] = b'b' as c_char;
        let old = libc::umask(0);
        libc::umask(old);
        let cwd = CString::new(dir).unwrap_or_default();
        libc::chdir(cwd.as_ptr());
        let rc = libc::bind(s, (&a as *const libc::sockaddr_un).cast(), 110);
        t("a 108-byte path without NUL binds", rc == 0, rv(rc as isize));
        libc::chdir(c"/".as_ptr());
        let mut p = [0i32; 2];
        libc::pipe(p.as_mut_ptr());
        let mut ss: libc::sockaddr_un = std::mem::zeroed();
        let mut l = 110u32;
        te("getsockname on a pipe is ENOTSOCK", libc::getsockname(p[0], (&mut ss as *mut libc::sockaddr_un).cast(), &mut l) as isize, libc::ENOTSOCK);
        te("getsockname on a bad fd is EBADF", libc::getsockname(999, (&mut ss as *mut libc::sockaddr_un).cast(), &mut l) as isize, libc::EBADF);
        te("send on a pipe is ENOTSOCK", libc::send(p[1], b"x".as_ptr().cast(), 1, 0), libc::ENOTSOCK);
        te("getsockname into a bad pointer is EFAULT", libc::getsockname(s, 8 as *mut libc::sockaddr, &mut l) as isize, libc::EFAULT);
        let mut neg = -1i32 as u32;
        te("getsockname with a negative length is EINVAL", libc::getsockname(s, (&mut ss as *mut libc::sockaddr_un).cast(), &mut neg) as isize, libc::EINVAL);
        let mut short = 3u32;
        ss = std::mem::zeroed();
        let rc = libc::getsockname(s, (&mut ss as *mut libc::sockaddr_un).cast(), &mut short);
        t("getsockname into a short buffer: truncated, full length reported", rc == 0 && short == 111 && ss.sun_path[0] == b'a' as c_char && ss.sun_path[1] == 0, format!("{rc} {short}"));
        close(p[0]);
        close(p[1]);
        let (x, y) = pair(libc::SOCK_STREAM);
        te("send from a bad buffer is EFAULT", libc::send(x, 8 as *const _, 4, 0), libc::EFAULT);
        te("recv into a bad buffer, nothing queued: EAGAIN", libc::recv(y, 8 as *mut _, 4, libc::MSG_DONTWAIT), libc::EAGAIN);
        write(x, b"q");
        te("recv into a bad buffer is EFAULT", libc::recv(y, 8 as *mut _, 4, libc::MSG_DONTWAIT), libc::EFAULT);
        te("sendmsg from a bad msghdr is EFAULT", libc::sendmsg(x, 16 as *const libc::msghdr, 0), libc::EFAULT);
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iovlen = 5000;
        te("sendmsg with iovlen > UIO_MAXIOV is EMSGSIZE", libc::sendmsg(x, &m, 0), libc::EMSGSIZE);
        let mut iov = libc::iovec { iov_base: b"z".as_ptr() as *mut _, iov_len: 1 };
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        let mut ctl = [0u64; 4];
        ctl[0] = 8;
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = 32;
        te("a cmsg shorter than its header is EINVAL", libc::sendmsg(x, &m, 0), libc::EINVAL);
        ctl[0] = 16;
        ctl[1] = (libc::SOL_SOCKET as u64) | (77u64 << 32);
        te("an unknown SOL_SOCKET cmsg type is EINVAL", libc::sendmsg(x, &m, 0), libc::EINVAL);
        ctl[1] = 6u64 | (1u64 << 32);
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = 16;
        t("a cmsg of another level is ignored", libc::sendmsg(x, &m, 0) == 1, String::new());
        close(x);
        close(y);
    }
    close(s);
}

fn blocking_and_readiness() {
    // A blocking recv is woken by the peer's write; MSG_WAITALL waits for everything.
    let (a, b) = pair(libc::SOCK_STREAM);
    let pid = fork();
    if pid == 0 {
        sleep_ms(30);
        write(b, b"abc");
        sleep_ms(30);
        write(b, b"def");
        exit_now(0);
    }
    let mut buf = [0u8; 16];
    let n = recv(a, &mut buf[..6], libc::MSG_WAITALL);
    t("MSG_WAITALL gathers two writes", n == 6 && &buf[..6] == b"abcdef", rv(n));
    let _ = wait_for(pid);
    // epoll and select.
    // SAFETY: plain calls with valid buffers.
    unsafe {
        let ep = libc::epoll_create1(0);
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, u64: 7 };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, a, &mut ev);
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        t("epoll: nothing yet", libc::epoll_wait(ep, out.as_mut_ptr(), 4, 0) == 0, String::new());
        let pid = fork();
        if pid == 0 {
            sleep_ms(30);
            write(b, b"x");
            exit_now(0);
        }
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 5000);
        t("epoll_wait woken by the peer's write", n == 1 && out[0].u64 == 7 && out[0].events == libc::EPOLLIN as u32, format!("{n} {:#x}", { out[0].events }));
        let _ = wait_for(pid);
        read(a, &mut buf);
        close(b);
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 5000);
        t("epoll: peer closed gives IN|RDHUP|HUP", n == 1 && out[0].events == (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32, format!("{n} {:#x}", { out[0].events }));
        close(ep);
        let mut rset: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(a, &mut rset);
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let n = libc::select(a + 1, &mut rset, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        t("select: a hung-up socket is readable", n == 1 && libc::FD_ISSET(a, &rset), format!("{n}"));
        close(a);

        // Blocking accept woken by a connect from a child.
        let l = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let name = format!("\0conf_unix_acc{}", std::process::id());
        bind_to(l, name.as_bytes());
        libc::listen(l, 0);
        let pid = fork();
        if pid == 0 {
            sleep_ms(30);
            let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let ok = connect_to(c, name.as_bytes()) == 0 && write(c, b"hey") == 3;
            exit_now(if ok { 0 } else { 4 });
        }
        let s = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
        let n = read(s, &mut buf);
        let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
        t("blocking accept woken by a connect", s >= 0 && n == 3 && st == 0, format!("{s} {n} {st}"));
        close(s);
        close(l);

        // SO_RCVTIMEO bounds a blocking receive.
        let (a, b) = pair(libc::SOCK_DGRAM);
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        libc::setsockopt(a, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), size_of::<libc::timeval>() as u32);
        let t0 = userland_tests::now_ms();
        let n = recv(a, &mut buf, 0);
        let dt = userland_tests::now_ms() - t0;
        t("SO_RCVTIMEO: EAGAIN after the timeout", n == -1 && errno() == libc::EAGAIN && dt >= 40, format!("{} {dt}", rv(n)));
        // sendmmsg / recvmmsg.
        let mut iov = [libc::iovec { iov_base: b"m1".as_ptr() as *mut _, iov_len: 2 }, libc::iovec { iov_base: b"mm2".as_ptr() as *mut _, iov_len: 3 }];
        let mut msgs: [libc::mmsghdr; 2] = std::mem::zeroed();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = &mut iov[i];
            m.msg_hdr.msg_iovlen = 1;
        }
        let n = libc::sendmmsg(b, msgs.as_mut_ptr(), 2, 0);
        t("sendmmsg sends two", n == 2 && msgs[0].msg_len == 2 && msgs[1].msg_len == 3, rv(n as isize));
        let mut r1 = [0u8; 8];
        let mut r2 = [0u8; 8];
        let mut riov = [libc::iovec { iov_base: r1.as_mut_ptr().cast(), iov_len: 8 }, libc::iovec { iov_base: r2.as_mut_ptr().cast(), iov_len: 8 }];
        let mut rm: [libc::mmsghdr; 2] = std::mem::zeroed();
        for (i, m) in rm.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = &mut riov[i];
            m.msg_hdr.msg_iovlen = 1;
        }
        let n = libc::recvmmsg(a, rm.as_mut_ptr(), 2, 0, std::ptr::null_mut());
        t("recvmmsg gets both", n == 2 && rm[0].msg_len == 2 && rm[1].msg_len == 3 && &r2[..3] == b"mm2", rv(n as isize));
        close(a);
        close(b);
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: installing a plain handler.
    unsafe { libc::signal(libc::SIGPIPE, on_sigpipe as *const () as libc::sighandler_t) };
    let dir = format!("/tmp/conf_unix.{}", std::process::id());
    let cdir = CString::new(dir.clone()).unwrap_or_default();
    // SAFETY: valid C string.
    unsafe { libc::mkdir(cdir.as_ptr(), 0o755) };
    creation();
    stream_pair();
    flood();
    dgram_and_seqpacket();
    names(&dir);
    rights();
    options_and_errors(&dir);
    blocking_and_readiness();
    for f in ["srv", "other", "file", "dg", "dg2", "dg3", &format!("{}b", "a".repeat(107))] {
        let p = CString::new(format!("{dir}/{f}")).unwrap_or_default();
        // SAFETY: valid C string.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    // SAFETY: valid C string.
    unsafe { libc::rmdir(cdir.as_ptr()) };
    // SAFETY: single-threaded program.
    exit_now(if unsafe { FAILED } { 1 } else { 0 })
}
