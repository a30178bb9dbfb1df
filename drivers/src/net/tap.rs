//! A guest link on a host TAP device (`--net tap,ifname=NAME`).
//!
//! The device is opened through `/dev/net/tun` with `TUNSETIFF`
//! (`IFF_TAP | IFF_NO_PI`: whole Ethernet frames, no packet-information
//! header), non-blocking. Creating a device needs `CAP_NET_ADMIN`; a device
//! made beforehand for the user (`ip tuntap add NAME mode tap user USER`)
//! does not. Configuring the host side (addresses, bridges, `ip link set
//! NAME up`) is the host administrator's business.

use super::HostLink;
use hal::NetDevice;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Frames longer than this (the host side can raise its MTU) are read whole
/// and dropped, never cut.
const READ_BUF: usize = 65536;

/// Counters of one TAP link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames written to the device.
    pub sent: u64,
    /// Frames the device refused (down, or its queue full).
    pub send_dropped: u64,
    /// Frames received.
    pub received: u64,
    /// Frames dropped on receipt: shorter than a header or longer than the
    /// guest's buffer.
    pub recv_dropped: u64,
}

/// A guest link on a host TAP device.
pub struct TapLink {
    fd: OwnedFd,
    name: String,
    mac: [u8; 6],
    buf: Vec<u8>,
    stats: TapStats,
}

impl TapLink {
    /// Attach to (creating it if allowed) the TAP device `ifname`; the
    /// guest's interface gets hardware address `mac`.
    pub fn open(ifname: &str, mac: [u8; 6]) -> io::Result<TapLink> {
        // SAFETY: ifreq is plain data; all zeroes is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        if ifname.is_empty()
            || ifname.len() >= ifr.ifr_name.len()
            || ifname
                .bytes()
                .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{ifname}' is not an interface name (1 to 15 characters)"),
            ));
        }
        // SAFETY: the path is a NUL-terminated literal.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("/dev/net/tun: {e}")));
        }
        // SAFETY: fd was just returned by open(2).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {ifname}: {e}")));
        }
        Ok(TapLink {
            fd,
            name: ifname.to_string(),
            mac,
            buf: vec![0; READ_BUF],
            stats: TapStats::default(),
        })
    }

    /// The host interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link's counters.
    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

impl NetDevice for TapLink {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn send(&mut self, frame: &[u8]) {
        if frame.len() < 14 || frame.len() > self.max_frame() {
            self.stats.send_dropped += 1;
            return;
        }
        // SAFETY: frame is valid for its length.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n == frame.len() as isize {
            self.stats.sent += 1;
        } else {
            // EIO while the host side is down, EAGAIN when its queue is full.
            self.stats.send_dropped += 1;
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: self.buf is valid for its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                return None;
            }
            let n = n as usize;
            if n < 14 || n > buf.len() {
                self.stats.recv_dropped += 1;
                continue;
            }
            buf[..n].copy_from_slice(&self.buf[..n]);
            self.stats.received += 1;
            return Some(n);
        }
    }
}

impl HostLink for TapLink {
    fn readiness_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// An ethertype from the local experimental range, so that the host's
    /// own traffic on the new interface (IPv6 solicitations) is told apart.
    const ETHERTYPE: u16 = 0x88b5;

    fn ifindex(name: &str) -> i32 {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: c is NUL-terminated.
        unsafe { libc::if_nametoindex(c.as_ptr()) as i32 }
    }

    /// Bring the host side of `name` up (SIOCSIFFLAGS); false if refused.
    fn set_up(name: &str) -> bool {
        // SAFETY: plain socket/ioctl calls on a zeroed ifreq naming `name`.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                return false;
            }
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
                *d = b as libc::c_char;
            }
            let ok = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) == 0 && {
                ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(s, libc::SIOCSIFFLAGS, &mut ifr) == 0
            };
            libc::close(s);
            ok
        }
    }

    /// A raw packet socket bound to interface `index`.
    fn packet_socket(index: i32) -> OwnedFd {
        // SAFETY: plain socket/bind calls; sockaddr_ll is zeroed then filled.
        unsafe {
            let s = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                (ETHERTYPE.to_be()) as i32,
            );
            assert!(s >= 0, "AF_PACKET: {}", io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(s);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETHERTYPE.to_be();
            sll.sll_ifindex = index;
            let r = libc::bind(
                s,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind AF_PACKET: {}", io::Error::last_os_error());
            fd
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
        let mut f = vec![tag; 80];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        f
    }

    #[test]
    fn rejects_bad_names() {
        assert!(TapLink::open("", [2, 0, 0, 0, 0, 1]).is_err());
        assert!(TapLink::open("a/b", [2, 0, 0, 0, 0, 1]).is_err());
        assert!(TapLink::open("waytoolongname0123", [2, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn frames_cross_a_tap_both_ways() {
        let name = format!("rutap{}", std::process::id() % 100_000);
        let guest_mac = [2, 0, 0, 0, 0x7a, 0x01];
        let mut tap = match TapLink::open(&name, guest_mac) {
            Ok(t) => t,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EACCES | libc::ENOENT | libc::ENODEV)
                ) =>
            {
                eprintln!("note: skipping the TAP test: cannot create a TAP device here ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(tap.name(), name);
        let index = ifindex(&name);
        assert!(index > 0, "the device {name} appears on the host");
        if !set_up(&name) {
            eprintln!("note: skipping the frame exchange: cannot bring {name} up");
            return;
        }
        let host = packet_socket(index);
        // Host -> guest: a frame written on the host side arrives on the link.
        let to_guest = frame(guest_mac, [2, 0, 0, 0, 0x7a, 0x02], 0x11);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 1514];
        let mut got = false;
        'outer: while Instant::now() < deadline {
            // SAFETY: to_guest is valid for its length.
            unsafe {
                libc::send(
                    host.as_raw_fd(),
                    to_guest.as_ptr().cast(),
                    to_guest.len(),
                    0,
                )
            };
            let mut p = libc::pollfd {
                fd: tap.readiness_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 100) };
            while let Some(n) = tap.recv(&mut buf) {
                if buf[..n] == to_guest[..] {
                    got = true;
                    break 'outer;
                }
            }
        }
        assert!(got, "the host's frame reached the guest's link");
        // Guest -> host.
        let to_host = frame([0xff; 6], guest_mac, 0x22);
        tap.send(&to_host);
        assert_eq!(tap.stats().sent, 1);
        let mut got = false;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !got {
            let mut p = libc::pollfd {
                fd: host.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; buf valid for its length.
            unsafe {
                libc::poll(&mut p, 1, 100);
                let n = libc::recv(host.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
                got = n == to_host.len() as isize && buf[..n as usize] == to_host[..];
            }
        }
        assert!(got, "the guest's frame reached the host");
        // Runts are dropped, not sent.
        tap.send(&[1, 2, 3]);
        assert_eq!(tap.stats().send_dropped, 1);
    }
}
