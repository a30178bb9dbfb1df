//! Where the NAT's host sockets come from.
//!
//! [`Opener::Direct`] makes them in this process. [`Opener::Broker`] asks a
//! separate process, the *socket broker*, over a `SOCK_SEQPACKET` pair: it
//! checks each request against the same policy ([`NatConfig::allows`] and
//! the DNS forwarder's address), makes the socket, starts its connect and
//! passes the descriptor back (`SCM_RIGHTS`). The kernel process then needs
//! no host network of its own and lives in an empty network namespace, so
//! even a kernel an attacker took over reaches only what the policy names
//! (the broker is as gVisor's gofer is for files). The broker itself runs
//! confined (see the kernel binary's `--internal-nat-broker`).
//!
//! Request: 24 bytes — protocol (1 TCP, 2 UDP), family (4 or 6), port
//! (big-endian), 4 bytes of padding, 16 bytes of address (IPv4 in the
//! first four). Answer: an `i32` errno (0: the descriptor is attached).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::config::{resolv_conf_nameserver, NatConfig, Proto};
use super::sys;

const REQUEST: usize = 24;

/// Makes the NAT's host sockets.
pub(crate) enum Opener {
    /// In this process.
    Direct,
    /// Through the socket broker on the other end of this channel.
    Broker(Mutex<OwnedFd>),
}

impl Opener {
    /// A TCP socket whose non-blocking connect to `to` has started.
    pub(crate) fn tcp(&self, to: SocketAddr) -> io::Result<TcpStream> {
        match self {
            Opener::Direct => connect_tcp(to),
            Opener::Broker(chan) => ask(chan, Proto::Tcp, to).map(TcpStream::from),
        }
    }

    /// A non-blocking UDP socket connected to `to` (bound to the host's
    /// loopback when `to` is there, so that replies come from where the
    /// guest expects).
    pub(crate) fn udp(&self, to: SocketAddr) -> io::Result<UdpSocket> {
        match self {
            Opener::Direct => connect_udp(to),
            Opener::Broker(chan) => ask(chan, Proto::Udp, to).map(UdpSocket::from),
        }
    }
}

/// Where DNS queries to 10.0.2.3 go: `cfg.dns_server`, else the first IPv4
/// nameserver of the host's /etc/resolv.conf, else 127.0.0.1:53.
pub fn dns_target(cfg: &NatConfig) -> SocketAddr {
    cfg.dns_server.unwrap_or_else(|| {
        let ns = std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|t| resolv_conf_nameserver(&t))
            .unwrap_or(Ipv4Addr::LOCALHOST);
        SocketAddr::V4(SocketAddrV4::new(ns, 53))
    })
}

fn connect_tcp(to: SocketAddr) -> io::Result<TcpStream> {
    match to {
        SocketAddr::V4(v4) => sys::connect_nonblocking(v4),
        // Only a `dns=` server can be IPv6; a blocking connect is brief there.
        SocketAddr::V6(_) => {
            let s = TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5))?;
            s.set_nonblocking(true)?;
            Ok(s)
        }
    }
}

fn connect_udp(to: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match to.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind)?;
    sock.set_nonblocking(true)?;
    sock.connect(to)?;
    Ok(sock)
}

fn encode(proto: Proto, to: SocketAddr) -> [u8; REQUEST] {
    let mut r = [0u8; REQUEST];
    r[0] = if proto == Proto::Tcp { 1 } else { 2 };
    r[2..4].copy_from_slice(&to.port().to_be_bytes());
    match to.ip() {
        IpAddr::V4(a) => {
            r[1] = 4;
            r[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            r[1] = 6;
            r[8..24].copy_from_slice(&a.octets());
        }
    }
    r
}

fn decode(r: &[u8]) -> Option<(Proto, SocketAddr)> {
    if r.len() != REQUEST {
        return None;
    }
    let proto = match r[0] {
        1 => Proto::Tcp,
        2 => Proto::Udp,
        _ => return None,
    };
    let port = u16::from_be_bytes([r[2], r[3]]);
    let ip = match r[1] {
        4 => IpAddr::V4(Ipv4Addr::new(r[8], r[9], r[10], r[11])),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&r[8..24]).ok()?)),
        _ => return None,
    };
    Some((proto, SocketAddr::new(ip, port)))
}

fn ask(chan: &Mutex<OwnedFd>, proto: Proto, to: SocketAddr) -> io::Result<OwnedFd> {
    let chan = chan.lock().unwrap_or_else(|e| e.into_inner());
    let req = encode(proto, to);
    // SAFETY: a plain send of a local buffer on a descriptor we own.
    if unsafe { libc::send(chan.as_raw_fd(), req.as_ptr().cast(), req.len(), libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let (errno, fd) = recv_with_fd(chan.as_raw_fd())?;
    match (errno, fd) {
        (0, Some(fd)) => Ok(fd),
        (0, None) => Err(io::Error::other("the socket broker sent no descriptor")),
        (e, _) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Space for one descriptor's control message.
#[repr(C, align(8))]
struct Cmsg([u8; 64]);

/// Receive an `i32` and at most one descriptor. End of file is an error.
fn recv_with_fd(sock: RawFd) -> io::Result<(i32, Option<OwnedFd>)> {
    let mut word = [0u8; 4];
    let mut iov = libc::iovec { iov_base: word.as_mut_ptr().cast(), iov_len: word.len() };
    let mut cbuf = Cmsg([0; 64]);
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: walking the control buffer the host filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    // Every descriptor received is ours to close; keep the first.
                    let got = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                    if fd.is_none() {
                        fd = Some(got);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the socket broker is gone"));
    }
    if n != 4 {
        return Err(io::Error::other("a malformed answer from the socket broker"));
    }
    Ok((i32::from_ne_bytes(word), fd))
}

fn send_answer(sock: RawFd, errno: i32, fd: Option<RawFd>) -> io::Result<()> {
    let word = errno.to_ne_bytes();
    let mut iov = libc::iovec { iov_base: word.as_ptr() as *mut libc::c_void, iov_len: word.len() };
    let mut cbuf = Cmsg([0; 64]);
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // The libc macros compute the header's place in the buffer.
        // SAFETY: the control buffer is large and aligned enough for one descriptor.
        unsafe {
            msg.msg_control = cbuf.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            libc::CMSG_DATA(c).cast::<RawFd>().write_unaligned(fd);
        }
    }
    // SAFETY: msg points at live buffers of the sizes given.
    if unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the broker may make a socket to `to` for `proto`: what
/// [`NatConfig::allows`] lets through, and the DNS forwarder's server on
/// port 53 (`dns`).
fn permitted(cfg: &NatConfig, dns: SocketAddr, proto: Proto, to: SocketAddr) -> bool {
    if to == dns {
        return true;
    }
    match to {
        SocketAddr::V4(v4) => to.port() != 0 && cfg.allows(proto, *v4.ip(), v4.port()),
        SocketAddr::V6(_) => false,
    }
}

/// The socket broker's loop: answer requests on `chan` until the kernel
/// closes it. Requests outside the policy get `EACCES` and nothing is made;
/// a malformed request ends the broker (the kernel on the other end is not
/// the one that started it).
pub fn serve(chan: OwnedFd, cfg: &NatConfig) -> io::Result<()> {
    let dns = dns_target(cfg);
    let mut req = [0u8; REQUEST + 1];
    loop {
        // SAFETY: a plain receive into a local buffer.
        let n = unsafe { libc::recv(chan.as_raw_fd(), req.as_mut_ptr().cast(), req.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        let Some((proto, to)) = decode(&req[..n as usize]) else {
            return Err(io::Error::other("a malformed request"));
        };
        let made: io::Result<OwnedFd> = if !permitted(cfg, dns, proto, to) {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        } else if proto == Proto::Tcp {
            connect_tcp(to).map(OwnedFd::from)
        } else {
            connect_udp(to).map(OwnedFd::from)
        };
        match made {
            Ok(fd) => send_answer(chan.as_raw_fd(), 0, Some(fd.as_raw_fd()))?,
            Err(e) => send_answer(chan.as_raw_fd(), e.raw_os_error().unwrap_or(libc::EIO), None)?,
        }
    }
}

/// A connected `SOCK_SEQPACKET` pair (close-on-exec): the NAT's end and
/// the broker's.
pub fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        for to in ["127.0.0.1:5432", "[::1]:53", "192.0.2.1:80"] {
            let to: SocketAddr = to.parse().unwrap();
            for p in [Proto::Tcp, Proto::Udp] {
                assert_eq!(decode(&encode(p, to)), Some((p, to)));
            }
        }
        assert_eq!(decode(&[0u8; REQUEST]), None);
        assert_eq!(decode(&[1u8; 3]), None);
        let mut bad = encode(Proto::Tcp, "127.0.0.1:1".parse().unwrap());
        bad[1] = 5;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn the_broker_makes_only_what_the_policy_names() {
        let named = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let np = named.local_addr().unwrap().port();
        let cfg = NatConfig::parse(&format!("allow=tcp:127.0.0.1:{np},dns=127.0.0.1:5353")).unwrap();
        let (ours, theirs) = channel().unwrap();
        let server = std::thread::spawn(move || serve(theirs, &cfg));
        let opener = Opener::Broker(Mutex::new(ours));
        let s = opener.tcp(named.local_addr().unwrap()).expect("the named port");
        assert!(s.peer_addr().is_ok() || s.take_error().is_ok());
        assert_eq!(named.accept().unwrap().1.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let e = opener.tcp(other.local_addr().unwrap()).expect_err("an unnamed port");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        other.set_nonblocking(true).unwrap();
        assert!(other.accept().is_err(), "the unnamed port saw a connection");
        let e = opener.udp("192.0.2.1:53".parse().unwrap()).expect_err("not the DNS server");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        let u = opener.udp("127.0.0.1:5353".parse().unwrap()).expect("the DNS server");
        assert_eq!(u.peer_addr().unwrap(), "127.0.0.1:5353".parse().unwrap());
        drop(opener);
        assert!(server.join().unwrap().is_ok(), "the broker ends when the NAT closes its end");
    }
}
