//! AF_INET over loopback against Linux: a TCP echo server and client in two
//! processes, nonblocking connect, refused connections, poll/epoll
//! readiness, half-close, UDP datagrams with addresses, MSG_PEEK/MSG_TRUNC,
//! socket options and errno cases. Prints one line per check; exits 1 on a
//! failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{errno, exit_now, fork, wait_for};

const IN: i16 = libc::POLLIN;
const OUT: i16 = libc::POLLOUT;
const ERR: i16 = libc::POLLERR;
const HUP: i16 = libc::POLLHUP;
const RDHUP: i16 = libc::POLLRDHUP;

fn sin(a: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a) },
        sin_zero: [0; 8],
    }
}

const LO: [u8; 4] = [127, 0, 0, 1];
const SLEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn sock(ty: i32) -> i32 {
    // SAFETY: plain call.
    unsafe { libc::socket(libc::AF_INET, ty, 0) }
}

fn bind(fd: i32, a: [u8; 4], port: u16) -> i32 {
    let s = sin(a, port);
    // SAFETY: valid sockaddr.
    unsafe { libc::bind(fd, (&s as *const libc::sockaddr_in).cast(), SLEN) }
}

fn connect(fd: i32, a: [u8; 4], port: u16) -> i32 {
    let s = sin(a, port);
    // SAFETY: valid sockaddr.
    unsafe { libc::connect(fd, (&s as *const libc::sockaddr_in).cast(), SLEN) }
}

/// (address, port) from getsockname/getpeername/accept/recvfrom results.
fn parts(s: &libc::sockaddr_in) -> ([u8; 4], u16) {
    (s.sin_addr.s_addr.to_ne_bytes(), u16::from_be(s.sin_port))
}

fn name(fd: i32, peer: bool) -> Result<([u8; 4], u16), i32> {
    let mut s = sin([0; 4], 0);
    let mut len = SLEN;
    // SAFETY: valid out-buffers.
    let rc = unsafe {
        if peer {
            libc::getpeername(fd, (&mut s as *mut libc::sockaddr_in).cast(), &mut len)
        } else {
            libc::getsockname(fd, (&mut s as *mut libc::sockaddr_in).cast(), &mut len)
        }
    };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(parts(&s))
    }
}

fn port_of(fd: i32) -> u16 {
    name(fd, false).map(|x| x.1).unwrap_or(0)
}

fn poll1(fd: i32, ms: i32) -> i16 {
    let mut p = libc::pollfd { fd, events: IN | OUT | RDHUP, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        -1
    } else {
        p.revents
    }
}

fn w(fd: i32, b: &[u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) }
}

fn rd(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn geti(fd: i32, level: i32, opt: i32) -> i32 {
    let mut v: i32 = -1;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: valid out-buffers.
    let rc = unsafe { libc::getsockopt(fd, level, opt, (&mut v as *mut i32).cast(), &mut len) };
    if rc < 0 {
        -errno()
    } else {
        v
    }
}

fn seti(fd: i32, level: i32, opt: i32, v: i32) -> i32 {
    // SAFETY: valid buffer.
    unsafe { libc::setsockopt(fd, level, opt, (&v as *const i32).cast(), 4) }
}

fn set_nonblock(fd: i32) {
    // SAFETY: plain fcntl.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
}

/// Reads exactly `n` bytes (blocking) or until EOF; returns what it got.
fn read_n(fd: i32, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    while v.len() < n {
        let k = rd(fd, &mut buf[..(n - v.len()).min(65536)]);
        if k <= 0 {
            break;
        }
        v.extend_from_slice(&buf[..k as usize]);
    }
    v
}

fn write_all(fd: i32, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let k = w(fd, b);
        if k <= 0 {
            return false;
        }
        b = &b[k as usize..];
    }
    true
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 997) as u8).collect()
}

const BIG: usize = 3 << 20;

/// A forked echo server and a client: the client sends BIG bytes, the
/// server echoes them back, the client checks them.
fn echo_over_fork() {
    let l = sock(libc::SOCK_STREAM);
    t("bind 127.0.0.1:0", bind(l, LO, 0) == 0, r(-1));
    let port = port_of(l);
    t("getsockname gives an ephemeral port", port >= 1024, format!("{port}"));
    // SAFETY: plain call.
    t("listen", unsafe { libc::listen(l, 8) } == 0, r(-1));
    t("listening socket reports SO_ACCEPTCONN", geti(l, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 1, String::new());
    t("nothing to accept yet: no POLLIN", poll1(l, 0) == 0, format!("{:#x}", poll1(l, 0)));
    let pid = fork();
    if pid == 0 {
        // Child: the server.
        let mut peer = sin([0; 4], 0);
        let mut len = SLEN;
        // SAFETY: valid out-buffers.
        let s = unsafe { libc::accept4(l, (&mut peer as *mut libc::sockaddr_in).cast(), &mut len, libc::SOCK_CLOEXEC) };
        if s < 0 || parts(&peer).0 != LO || len != SLEN {
            exit_now(10);
        }
        let mut buf = vec![0u8; 65536];
        loop {
            let k = rd(s, &mut buf);
            if k < 0 {
                exit_now(11);
            }
            if k == 0 {
                break;
            }
            if !write_all(s, &buf[..k as usize]) {
                exit_now(12);
            }
        }
        // SAFETY: plain close.
        unsafe { libc::close(s) };
        exit_now(0);
    }
    let c = sock(libc::SOCK_STREAM);
    t("blocking connect", connect(c, LO, port) == 0, r(-1));
    t("getpeername of the client", name(c, true) == Ok((LO, port)), format!("{:?}", name(c, true)));
    let (la, lp) = name(c, false).unwrap_or(([0; 4], 0));
    t("client got an address and port", la == LO && lp >= 1024 && lp != port, format!("{la:?} {lp}"));
    t("connected socket is writable", poll1(c, 0) == OUT, format!("{:#x}", poll1(c, 0)));
    let data = pattern(BIG);
    // The reader side runs in this process after the writer finishes only if
    // the echo fits the buffers; so interleave: write a chunk, read it back.
    // A chunk must fit what the loop holds (both directions' send and
    // receive buffers, 64 KiB each until send buffers autotune): 256 KiB
    // did not, and deadlocked whenever the server ran as soon as data came.
    let mut back = Vec::with_capacity(BIG);
    let mut ok_all = true;
    for chunk in data.chunks(64 * 1024) {
        ok_all &= write_all(c, chunk);
        back.extend(read_n(c, chunk.len()));
    }
    t("3 MiB echoed back intact", ok_all && back == data, format!("{} bytes back", back.len()));
    // SAFETY: plain call.
    t("shutdown(SHUT_WR)", unsafe { libc::shutdown(c, libc::SHUT_WR) } == 0, r(-1));
    let mut b = [0u8; 8];
    t("server closes after EOF: read returns 0", rd(c, &mut b) == 0, String::new());
    t("send after shutdown is EPIPE", w(c, b"x") == -1 && errno() == libc::EPIPE, r(-1));
    let st = wait_for(pid);
    t("server exited 0", st == Ok((pid, 0)), format!("{st:?}"));
    // SAFETY: plain close.
    unsafe {
        libc::close(c);
        libc::close(l);
    }
}

fn connect_cases() {
    // A bound port nobody listens on refuses.
    let d = sock(libc::SOCK_STREAM);
    bind(d, LO, 0);
    let dp = port_of(d);
    let c = sock(libc::SOCK_STREAM);
    let rc = connect(c, LO, dp);
    t("blocking connect to a closed port is ECONNREFUSED", rc == -1 && errno() == libc::ECONNREFUSED, r(rc));
    let c2 = sock(libc::SOCK_STREAM);
    set_nonblock(c2);
    let rc = connect(c2, LO, dp);
    t("nonblocking connect: EINPROGRESS", rc == -1 && errno() == libc::EINPROGRESS, r(rc));
    let p = poll1(c2, 1000);
    t("refused: POLLIN|POLLOUT|POLLERR|POLLHUP|POLLRDHUP", p == IN | OUT | ERR | HUP | RDHUP, format!("{p:#x}"));
    t("SO_ERROR is ECONNREFUSED", geti(c2, libc::SOL_SOCKET, libc::SO_ERROR) == libc::ECONNREFUSED, String::new());
    t("SO_ERROR is cleared by reading it", geti(c2, libc::SOL_SOCKET, libc::SO_ERROR) == 0, String::new());
    let rc = connect(c2, LO, dp);
    t("connect after a reported failure: ECONNABORTED", rc == -1 && errno() == libc::ECONNABORTED, r(rc));
    // Nonblocking success.
    let l = sock(libc::SOCK_STREAM);
    bind(l, LO, 0);
    let lp = port_of(l);
    // SAFETY: plain call.
    unsafe { libc::listen(l, 1) };
    let c3 = sock(libc::SOCK_STREAM);
    set_nonblock(c3);
    let rc = connect(c3, LO, lp);
    t("nonblocking connect to a listener: EINPROGRESS", rc == -1 && errno() == libc::EINPROGRESS, r(rc));
    let p = poll1(c3, 1000);
    t("then writable", p == OUT, format!("{p:#x}"));
    t("SO_ERROR 0", geti(c3, libc::SOL_SOCKET, libc::SO_ERROR) == 0, String::new());
    let rc = connect(c3, LO, lp);
    t("connect again reports success once", rc == 0, r(rc));
    let rc = connect(c3, LO, lp);
    t("then EISCONN", rc == -1 && errno() == libc::EISCONN, r(rc));
    t("listener has a connection: POLLIN", poll1(l, 1000) == IN, format!("{:#x}", poll1(l, 0)));
    set_nonblock(l);
    // SAFETY: null address is allowed.
    let s = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
    t("accept", s >= 0, r(s));
    // SAFETY: null address is allowed.
    let s2 = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
    t("nonblocking accept with nothing pending is EAGAIN", s2 == -1 && errno() == libc::EAGAIN, r(s2));
    // Readiness through a conversation.
    t("accepted: writable, not readable", poll1(s, 0) == OUT, format!("{:#x}", poll1(s, 0)));
    w(c3, b"hello");
    t("data: readable", poll1(s, 1000) == IN | OUT, format!("{:#x}", poll1(s, 0)));
    let mut n: i32 = -1;
    // SAFETY: valid out-int.
    unsafe { libc::ioctl(s, libc::FIONREAD, &mut n) };
    t("FIONREAD", n == 5, format!("{n}"));
    let mut b = [0u8; 16];
    // SAFETY: valid buffer.
    let k = unsafe { libc::recv(s, b.as_mut_ptr().cast(), 3, libc::MSG_PEEK) };
    t("MSG_PEEK", k == 3 && &b[..3] == b"hel", r(k));
    let k = rd(s, &mut b);
    t("read", k == 5 && &b[..5] == b"hello", r(k));
    t("drained: writable only", poll1(s, 0) == OUT, format!("{:#x}", poll1(s, 0)));
    // SAFETY: plain call.
    unsafe { libc::shutdown(c3, libc::SHUT_WR) };
    let p = poll1(s, 1000);
    t("peer SHUT_WR: POLLIN|POLLRDHUP", p == IN | OUT | RDHUP, format!("{p:#x}"));
    t("read at EOF is 0", rd(s, &mut b) == 0, String::new());
    // SAFETY: plain close.
    unsafe { libc::close(s) };
    let p = poll1(c3, 1000);
    t("peer closed too: POLLHUP", p == IN | OUT | HUP | RDHUP, format!("{p:#x}"));
    // SAFETY: plain closes.
    unsafe {
        libc::close(c);
        libc::close(c2);
        libc::close(c3);
        libc::close(d);
        libc::close(l);
    }
}

fn epoll_listener() {
    let l = sock(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    bind(l, LO, 0);
    // SAFETY: plain calls on valid buffers.
    unsafe {
        libc::listen(l, 4);
        let ep = libc::epoll_create1(0);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, l, &mut ev);
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 0);
        t("epoll: idle listener not ready", n == 0, r(n));
        let c = sock(libc::SOCK_STREAM);
        connect(c, LO, port_of(l));
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 1000);
        let (e0, d0) = (out[0].events, out[0].u64);
        t("epoll: listener ready after a connect", n == 1 && e0 == libc::EPOLLIN as u32 && d0 == 7, format!("{n}"));
        let s = libc::accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK);
        t("accept4(SOCK_NONBLOCK)", s >= 0 && libc::fcntl(s, libc::F_GETFL) & libc::O_NONBLOCK != 0, r(s));
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 0);
        t("epoll: listener idle again", n == 0, r(n));
        let mut b = [0u8; 4];
        let k = rd(s, &mut b);
        t("nonblocking read with no data is EAGAIN", k == -1 && errno() == libc::EAGAIN, r(k));
        libc::close(s);
        libc::close(c);
        libc::close(ep);
        libc::close(l);
    }
}

fn backlog() {
    let l = sock(libc::SOCK_STREAM);
    bind(l, LO, 0);
    let p = port_of(l);
    // SAFETY: plain call.
    unsafe { libc::listen(l, 3) };
    let cs: Vec<i32> = (0..3).map(|_| sock(libc::SOCK_STREAM)).collect();
    let all = cs.iter().all(|&c| connect(c, LO, p) == 0);
    t("three connects complete before any accept (backlog 3)", all, String::new());
    let mut got = 0;
    for (i, &c) in cs.iter().enumerate() {
        w(c, &[b'a' + i as u8]);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        // SAFETY: null address is allowed.
        let s = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
        if s >= 0 {
            got += 1;
            let mut b = [0u8; 1];
            rd(s, &mut b);
            seen.push(b[0]);
            // SAFETY: plain close.
            unsafe { libc::close(s) };
        }
    }
    seen.sort();
    t("each accepted connection has its own client's byte", got == 3 && seen == b"abc", format!("{got} {seen:?}"));
    for c in cs {
        // SAFETY: plain close.
        unsafe { libc::close(c) };
    }
    // SAFETY: plain close.
    unsafe { libc::close(l) };
}

fn addresses_and_options() {
    let a = sock(libc::SOCK_STREAM);
    let b = sock(libc::SOCK_STREAM);
    bind(a, LO, 0);
    let p = port_of(a);
    let rc = bind(b, LO, p);
    t("bind to a taken port is EADDRINUSE", rc == -1 && errno() == libc::EADDRINUSE, r(rc));
    let rc = bind(b, [0; 4], p);
    t("...also through the wildcard", rc == -1 && errno() == libc::EADDRINUSE, r(rc));
    let rc = bind(a, LO, 0);
    t("binding twice is EINVAL", rc == -1 && errno() == libc::EINVAL, r(rc));
    let rc = bind(b, [192, 0, 2, 77], 0);
    t("a foreign address is EADDRNOTAVAIL", rc == -1 && errno() == libc::EADDRNOTAVAIL, r(rc));
    t("SO_TYPE", geti(a, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM, String::new());
    t("SO_REUSEADDR default 0", geti(a, libc::SOL_SOCKET, libc::SO_REUSEADDR) == 0, String::new());
    seti(a, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    t("SO_REUSEADDR set", geti(a, libc::SOL_SOCKET, libc::SO_REUSEADDR) == 1, String::new());
    seti(a, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    t("TCP_NODELAY set", geti(a, libc::IPPROTO_TCP, libc::TCP_NODELAY) == 1, String::new());
    seti(a, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    t("SO_KEEPALIVE set", geti(a, libc::SOL_SOCKET, libc::SO_KEEPALIVE) == 1, String::new());
    seti(a, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536);
    t("SO_RCVBUF is doubled", geti(a, libc::SOL_SOCKET, libc::SO_RCVBUF) == 131072, format!("{}", geti(a, libc::SOL_SOCKET, libc::SO_RCVBUF)));
    seti(a, libc::IPPROTO_IP, libc::IP_TTL, 33);
    t("IP_TTL set", geti(a, libc::IPPROTO_IP, libc::IP_TTL) == 33, String::new());
    let rc = seti(a, libc::IPPROTO_IP, libc::IP_TTL, 256);
    t("IP_TTL 256 is EINVAL", rc == -1 && errno() == libc::EINVAL, r(rc));
    let rc = geti(a, libc::SOL_SOCKET, 12345);
    t("an unknown option is ENOPROTOOPT", rc == -libc::ENOPROTOOPT, format!("{rc}"));
    let mut buf = [0u8; 4];
    let k = rd(b, &mut buf);
    t("read on an unconnected stream socket is ENOTCONN", k == -1 && errno() == libc::ENOTCONN, r(k));
    let k = w(b, b"x");
    t("send on an unconnected stream socket is EPIPE", k == -1 && errno() == libc::EPIPE, r(k));
    t("getpeername unconnected is ENOTCONN", name(b, true) == Err(libc::ENOTCONN), String::new());
    // SAFETY: plain calls.
    unsafe {
        let rc = libc::shutdown(b, libc::SHUT_RDWR);
        t("shutdown unconnected is ENOTCONN", rc == -1 && errno() == libc::ENOTCONN, r(rc));
        let rc = libc::accept(b, std::ptr::null_mut(), std::ptr::null_mut());
        t("accept on a non-listening socket is EINVAL", rc == -1 && errno() == libc::EINVAL, r(rc));
        let rc = libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_UDP);
        t("TCP socket with IPPROTO_UDP is EPROTONOSUPPORT", rc == -1 && errno() == libc::EPROTONOSUPPORT, r(rc));
        let u = sock(libc::SOCK_DGRAM);
        let rc = libc::listen(u, 1);
        t("listen on UDP is EOPNOTSUPP", rc == -1 && errno() == libc::EOPNOTSUPP, r(rc));
        libc::close(u);
    }
    // Linux records a shutdown even when it fails with ENOTCONN.
    t("after a failed shutdown: POLLIN|POLLOUT|POLLHUP|POLLRDHUP", poll1(b, 0) == IN | OUT | HUP | RDHUP, format!("{:#x}", poll1(b, 0)));
    let f = sock(libc::SOCK_STREAM);
    t("fresh socket poll: POLLOUT|POLLHUP", poll1(f, 0) == OUT | HUP, format!("{:#x}", poll1(f, 0)));
    // SAFETY: plain close.
    unsafe { libc::close(f) };
    // SAFETY: plain closes.
    unsafe {
        libc::close(a);
        libc::close(b);
    }
}

fn udp() {
    let a = sock(libc::SOCK_DGRAM);
    let b = sock(libc::SOCK_DGRAM);
    bind(a, LO, 0);
    let ap = port_of(a);
    let k = w(b, b"nowhere");
    t("send unconnected UDP is EDESTADDRREQ", k == -1 && errno() == libc::EDESTADDRREQ, r(k));
    let to = sin(LO, ap);
    // SAFETY: valid buffers and addresses throughout.
    unsafe {
        let k = libc::sendto(b, b"datagram!".as_ptr().cast(), 9, 0, (&to as *const libc::sockaddr_in).cast(), SLEN);
        t("sendto", k == 9, r(k));
        let bp = port_of(b);
        t("sendto bound an ephemeral port", bp >= 1024, String::new());
        t("receiver readable", poll1(a, 1000) == IN | OUT, format!("{:#x}", poll1(a, 0)));
        let mut from = sin([0; 4], 0);
        let mut len = SLEN;
        let mut buf = [0u8; 64];
        let k = libc::recvfrom(a, buf.as_mut_ptr().cast(), 4, libc::MSG_PEEK, (&mut from as *mut libc::sockaddr_in).cast(), &mut len);
        t("MSG_PEEK part of a datagram", k == 4 && &buf[..4] == b"data", r(k));
        t("recvfrom gives the sender", parts(&from) == (LO, bp) && len == SLEN, format!("{:?}", parts(&from)));
        let k = libc::recv(a, buf.as_mut_ptr().cast(), 4, libc::MSG_TRUNC);
        t("MSG_TRUNC returns the full length", k == 9, r(k));
        let k = libc::recv(a, buf.as_mut_ptr().cast(), 64, libc::MSG_DONTWAIT);
        t("the truncated rest is gone", k == -1 && errno() == libc::EAGAIN, r(k));
        // Connected UDP.
        t("connect UDP", connect(a, LO, bp) == 0, r(-1));
        t("getpeername of connected UDP", name(a, true) == Ok((LO, bp)), String::new());
        let k = w(a, b"pong");
        t("send on connected UDP", k == 4, r(k));
        let k = libc::recv(b, buf.as_mut_ptr().cast(), 64, 0);
        t("reply arrives", k == 4 && &buf[..4] == b"pong", r(k));
        let k = libc::sendto(b, b"".as_ptr().cast(), 0, 0, (&to as *const libc::sockaddr_in).cast(), SLEN);
        t("empty datagram sent", k == 0, r(k));
        let k = libc::recv(a, buf.as_mut_ptr().cast(), 64, 0);
        t("empty datagram received", k == 0, r(k));
        let third = sock(libc::SOCK_DGRAM);
        libc::sendto(third, b"stranger".as_ptr().cast(), 8, 0, (&to as *const libc::sockaddr_in).cast(), SLEN);
        libc::sendto(b, b"friend".as_ptr().cast(), 6, 0, (&to as *const libc::sockaddr_in).cast(), SLEN);
        let k = libc::recv(a, buf.as_mut_ptr().cast(), 64, 0);
        t("connected UDP hears only its peer", k == 6 && &buf[..6] == b"friend", r(k));
        // IP_PKTINFO: where each datagram arrived (the interface, the address).
        t("setsockopt IP_PKTINFO", seti(third, libc::IPPROTO_IP, libc::IP_PKTINFO, 1) == 0, r(-1));
        let to3 = sin(LO, port_of(third));
        libc::sendto(b, b"info".as_ptr().cast(), 4, 0, (&to3 as *const libc::sockaddr_in).cast(), SLEN);
        let mut ctl = [0u8; 64];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 64 };
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.as_mut_ptr().cast();
        mh.msg_controllen = ctl.len();
        let k = libc::recvmsg(third, &mut mh, 0);
        let c = libc::CMSG_FIRSTHDR(&mh);
        let info = if c.is_null() { None } else { Some(((*c).cmsg_level, (*c).cmsg_type, std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo))) };
        let ok = info.is_some_and(|(l, ty, p)| l == libc::IPPROTO_IP && ty == libc::IP_PKTINFO && p.ipi_ifindex == 1 && p.ipi_addr.s_addr == u32::from_ne_bytes(LO) && p.ipi_spec_dst.s_addr == u32::from_ne_bytes(LO));
        t("IP_PKTINFO gives lo and 127.0.0.1", k == 4 && ok, format!("{k} {:?}", info.map(|(l, ty, p)| (l, ty, p.ipi_ifindex, p.ipi_addr.s_addr))));
        mh.msg_controllen = 4;
        libc::sendto(b, b"info".as_ptr().cast(), 4, 0, (&to3 as *const libc::sockaddr_in).cast(), SLEN);
        let k = libc::recvmsg(third, &mut mh, 0);
        t("IP_PKTINFO with no room is MSG_CTRUNC", k == 4 && mh.msg_flags & libc::MSG_CTRUNC != 0, r(k));
        let fourth = sock(libc::SOCK_DGRAM);
        let rc = bind(fourth, LO, ap);
        t("UDP port in use is EADDRINUSE", rc == -1 && errno() == libc::EADDRINUSE, r(rc));
        libc::close(fourth);
        libc::close(third);
        libc::close(a);
        libc::close(b);
    }
}

const LO6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const S6LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

fn sin6(a: [u8; 16], port: u16) -> libc::sockaddr_in6 {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    s.sin6_family = libc::AF_INET6 as u16;
    s.sin6_port = port.to_be();
    s.sin6_addr.s6_addr = a;
    s
}

/// (address, port) of a socket's own (`peer` false) or peer's IPv6 name.
fn name6(fd: i32, peer: bool) -> Result<([u8; 16], u16), i32> {
    let mut s = sin6([0; 16], 0);
    let mut len = S6LEN;
    // SAFETY: valid out-buffers.
    let rc = unsafe {
        if peer {
            libc::getpeername(fd, (&mut s as *mut libc::sockaddr_in6).cast(), &mut len)
        } else {
            libc::getsockname(fd, (&mut s as *mut libc::sockaddr_in6).cast(), &mut len)
        }
    };
    if rc < 0 {
        Err(errno())
    } else {
        Ok((s.sin6_addr.s6_addr, u16::from_be(s.sin6_port)))
    }
}

fn ipv6() {
    const MAPPED_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    // SAFETY: plain calls on valid local buffers throughout.
    unsafe {
        let l = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        let a = sin6(LO6, 0);
        let rc = libc::bind(l, (&a as *const libc::sockaddr_in6).cast(), S6LEN);
        t("v6: bind [::1]:0", rc == 0, r(rc));
        libc::listen(l, 2);
        let port = name6(l, false).map(|x| x.1).unwrap_or(0);
        let c = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        let to = sin6(LO6, port);
        let rc = libc::connect(c, (&to as *const libc::sockaddr_in6).cast(), S6LEN);
        t("v6: connect to [::1]", rc == 0, r(rc));
        let s = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
        t("v6: accept", s >= 0, r(s));
        t("v6: peer is ::1", name6(s, true).map(|x| x.0) == Ok(LO6), format!("{:?}", name6(s, true)));
        t("v6: client's own address is ::1", name6(c, false).map(|x| x.0) == Ok(LO6), String::new());
        w(c, b"six");
        let mut b = [0u8; 8];
        let k = rd(s, &mut b);
        t("v6: data", k == 3 && &b[..3] == b"six", r(k));
        t("v6: bound to ::1, IPV6_V6ONLY reads 1", geti(l, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == 1, String::new());
        let fresh = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        t("v6: IPV6_V6ONLY default 0", geti(fresh, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == 0, String::new());
        libc::close(fresh);
        libc::close(s);
        libc::close(c);
        libc::close(l);
        // A wildcard IPv6 listener takes IPv4 clients, seen as v4-mapped addresses.
        let l = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        let any = sin6([0; 16], 0);
        libc::bind(l, (&any as *const libc::sockaddr_in6).cast(), S6LEN);
        libc::listen(l, 2);
        let port = name6(l, false).map(|x| x.1).unwrap_or(0);
        let c = sock(libc::SOCK_STREAM);
        t("v6: IPv4 client of a [::] listener connects", connect(c, LO, port) == 0, r(-1));
        let s = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
        t("v6: its peer is ::ffff:127.0.0.1", name6(s, true).map(|x| x.0) == Ok(MAPPED_LO), format!("{:?}", name6(s, true)));
        t("v6: and its own address too", name6(s, false).map(|x| x.0) == Ok(MAPPED_LO), format!("{:?}", name6(s, false)));
        libc::close(s);
        libc::close(c);
        libc::close(l);
        // UDP.
        let u = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        libc::bind(u, (&a as *const libc::sockaddr_in6).cast(), S6LEN);
        let up = name6(u, false).map(|x| x.1).unwrap_or(0);
        let v = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        let to = sin6(LO6, up);
        let k = libc::sendto(v, b"dgram6".as_ptr().cast(), 6, 0, (&to as *const libc::sockaddr_in6).cast(), S6LEN);
        t("v6: sendto", k == 6, r(k));
        let mut from = sin6([0; 16], 0);
        let mut len = S6LEN;
        let k = libc::recvfrom(u, b.as_mut_ptr().cast(), 8, 0, (&mut from as *mut libc::sockaddr_in6).cast(), &mut len);
        let vp = name6(v, false).map(|x| x.1).unwrap_or(0);
        t("v6: recvfrom gives [::1]:port", k == 6 && from.sin6_addr.s6_addr == LO6 && u16::from_be(from.sin6_port) == vp && len == S6LEN, r(k));
        let v4 = sin(LO, 9);
        let rc = libc::connect(u, (&v4 as *const libc::sockaddr_in).cast(), SLEN);
        t("v6: an AF_INET address on an AF_INET6 socket", rc == 0 || errno() == libc::EAFNOSUPPORT || errno() == libc::EINVAL, r(rc));
        libc::close(u);
        libc::close(v);
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    echo_over_fork();
    connect_cases();
    epoll_listener();
    backlog();
    addresses_and_options();
    udp();
    ipv6();
    // SAFETY: single-threaded program.
    if unsafe { FAILED } {
        1
    } else {
        0
    }
}
