//! The interface ioctls (`SIOCGIF*`/`SIOCSIF*`) that `ifconfig` and friends
//! issue on any IP socket, on `struct ifreq` (40 bytes: a 16-byte name and
//! a 24-byte union), and `SIOCGIFCONF`'s records.

use alloc::vec::Vec;

use linux_raw_sys::ioctl as io;
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Address};

use super::Stack;
use crate::Errno;

/// `sizeof(struct ifreq)`.
pub const IFREQ: usize = 40;

/// `IFF_*` flags.
pub const IFF_UP: u32 = 0x1;
/// Broadcast address valid.
pub const IFF_BROADCAST: u32 = 0x2;
/// Loopback.
pub const IFF_LOOPBACK: u32 = 0x8;
/// Resources allocated (link up).
pub const IFF_RUNNING: u32 = 0x40;
/// Multicast capable.
pub const IFF_MULTICAST: u32 = 0x1000;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;

/// The `IFF_*` flags of interface `k`.
pub fn flags(s: &Stack, k: usize) -> u32 {
    let i = &s.ifaces[k];
    let mut f = if i.is_loopback() { IFF_LOOPBACK } else { IFF_BROADCAST | IFF_MULTICAST };
    if i.port.up {
        f |= IFF_UP | IFF_RUNNING;
    }
    f
}

/// The MTU `ifconfig`/`ip` report for interface `k` (Linux's 65536 on lo).
pub fn mtu(s: &Stack, k: usize) -> u32 {
    if s.ifaces[k].is_loopback() {
        65536
    } else {
        s.ifaces[k].port.mtu() as u32
    }
}

/// The addresses interface `k` reports as its own (not the host routes `lo`
/// carries for the other interfaces' addresses).
pub fn own_v4(s: &Stack, k: usize) -> Vec<([u8; 4], u8)> {
    s.ifaces[k]
        .ipv4()
        .into_iter()
        .filter(|(a, p)| k != 0 || !s.is_mirror(&IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(*a)), *p)))
        .collect()
}

/// IPv6 addresses of interface `k`, as [`own_v4`].
pub fn own_v6(s: &Stack, k: usize) -> Vec<([u8; 16], u8)> {
    s.ifaces[k]
        .ipv6()
        .into_iter()
        .filter(|(a, p)| k != 0 || !s.is_mirror(&IpCidr::new(IpAddress::Ipv6(smoltcp::wire::Ipv6Address::from(*a)), *p)))
        .collect()
}

/// A netmask for a prefix length.
pub fn mask(prefix: u8) -> [u8; 4] {
    let m: u32 = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    m.to_be_bytes()
}

fn sockaddr_in(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&2u16.to_le_bytes());
    b[4..8].copy_from_slice(&a);
    b
}

fn name_of(arg: &[u8]) -> &[u8] {
    let n = &arg[..arg.len().min(16)];
    let end = n.iter().position(|&c| c == 0).unwrap_or(n.len());
    &n[..end]
}

/// Set interface `k`'s IPv4 address (replacing the first one), keeping lo's mirror in step.
pub fn set_v4(s: &mut Stack, k: usize, addr: [u8; 4], prefix: u8) {
    s.ifaces[k].iface.update_ip_addrs(|v| {
        let cidr = IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(addr)), prefix.min(32));
        if let Some(c) = v.iter_mut().find(|c| matches!(c.address(), IpAddress::Ipv4(_))) {
            *c = cidr;
        } else {
            let _ = v.push(cidr);
        }
    });
    s.sync_lo();
    s.dirty = true;
}

/// Handle an interface ioctl whose argument (`arg`, the guest's `ifreq`)
/// was copied in; returns the bytes to copy back.
pub fn ifreq(s: &mut Stack, root: bool, cmd: u32, arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
    let known = matches!(
        cmd,
        io::SIOCGIFNAME
            | io::SIOCGIFFLAGS
            | io::SIOCSIFFLAGS
            | io::SIOCGIFADDR
            | io::SIOCSIFADDR
            | io::SIOCGIFNETMASK
            | io::SIOCSIFNETMASK
            | io::SIOCGIFBRDADDR
            | io::SIOCSIFBRDADDR
            | io::SIOCGIFDSTADDR
            | io::SIOCGIFHWADDR
            | io::SIOCGIFMTU
            | io::SIOCSIFMTU
            | io::SIOCGIFINDEX
            | io::SIOCGIFMETRIC
            | io::SIOCGIFTXQLEN
            | io::SIOCGIFMAP
    );
    if !known {
        return Err(Errno::ENOTTY);
    }
    if arg.len() < IFREQ {
        return Err(Errno::EFAULT);
    }
    let mut out = arg[..IFREQ].to_vec();
    if cmd == io::SIOCGIFNAME {
        let idx = u32::from_le_bytes([arg[16], arg[17], arg[18], arg[19]]);
        let k = s.by_index(idx).ok_or(Errno::ENODEV)?;
        out[..16].fill(0);
        let nm = s.ifaces[k].name.as_bytes();
        out[..nm.len().min(15)].copy_from_slice(&nm[..nm.len().min(15)]);
        return Ok((0, Some(out)));
    }
    let k = s.by_name(name_of(arg)).ok_or(Errno::ENODEV)?;
    let setter = matches!(cmd, io::SIOCSIFFLAGS | io::SIOCSIFADDR | io::SIOCSIFNETMASK | io::SIOCSIFBRDADDR | io::SIOCSIFMTU);
    if setter && !root {
        return Err(Errno::EPERM);
    }
    let u = &mut out[16..IFREQ];
    let v4 = own_v4(s, k).first().copied();
    match cmd {
        io::SIOCGIFFLAGS => {
            u.fill(0);
            u[..2].copy_from_slice(&(flags(s, k) as u16).to_le_bytes());
        }
        io::SIOCSIFFLAGS => {
            let f = u16::from_le_bytes([u[0], u[1]]) as u32;
            let up = f & IFF_UP != 0;
            if s.ifaces[k].port.up != up {
                s.ifaces[k].port.up = up;
                s.dirty = true;
            }
            return Ok((0, None));
        }
        io::SIOCGIFADDR | io::SIOCGIFNETMASK | io::SIOCGIFBRDADDR | io::SIOCGIFDSTADDR => {
            let (a, p) = v4.ok_or(Errno::EADDRNOTAVAIL)?;
            let v = match cmd {
                io::SIOCGIFADDR | io::SIOCGIFDSTADDR => a,
                io::SIOCGIFNETMASK => mask(p),
                _ => {
                    let m = u32::from_be_bytes(mask(p));
                    (u32::from_be_bytes(a) | !m).to_be_bytes()
                }
            };
            u.fill(0);
            u[..16].copy_from_slice(&sockaddr_in(v));
        }
        io::SIOCSIFADDR | io::SIOCSIFNETMASK => {
            if u16::from_le_bytes([u[0], u[1]]) != 2 {
                return Err(Errno::EINVAL);
            }
            let a = [u[4], u[5], u[6], u[7]];
            if cmd == io::SIOCSIFADDR {
                // A new address takes its classful mask, as Linux does.
                let p = match a[0] {
                    0..=127 => 8,
                    128..=191 => 16,
                    _ => 24,
                };
                set_v4(s, k, a, p);
            } else {
                let (addr, _) = v4.ok_or(Errno::EADDRNOTAVAIL)?;
                let m = u32::from_be_bytes(a);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return Err(Errno::EINVAL);
                }
                set_v4(s, k, addr, m.leading_ones() as u8);
            }
            return Ok((0, None));
        }
        io::SIOCSIFBRDADDR | io::SIOCSIFMTU => return Ok((0, None)),
        io::SIOCGIFHWADDR => {
            u.fill(0);
            let fam = if s.ifaces[k].is_loopback() { ARPHRD_LOOPBACK } else { ARPHRD_ETHER };
            u[..2].copy_from_slice(&fam.to_le_bytes());
            u[2..8].copy_from_slice(&s.ifaces[k].port.mac());
        }
        io::SIOCGIFMTU => {
            u.fill(0);
            u[..4].copy_from_slice(&mtu(s, k).to_le_bytes());
        }
        io::SIOCGIFINDEX => {
            u.fill(0);
            u[..4].copy_from_slice(&s.ifaces[k].index.to_le_bytes());
        }
        io::SIOCGIFMETRIC => u.fill(0),
        io::SIOCGIFTXQLEN => {
            u.fill(0);
            let q: u32 = 1000;
            u[..4].copy_from_slice(&q.to_le_bytes());
        }
        io::SIOCGIFMAP => u.fill(0),
        _ => return Err(Errno::ENOTTY),
    }
    Ok((0, Some(out)))
}

/// `SIOCGIFCONF`: the `ifreq` records (name and IPv4 address) of the
/// interfaces with an address, at most `room` bytes of them; with `room`
/// None, only the length all of them need.
pub fn ifconf(s: &Stack, room: Option<usize>) -> (usize, Vec<u8>) {
    let mut out = Vec::new();
    let mut need = 0;
    for k in 0..s.ifaces.len() {
        if !s.ifaces[k].port.up {
            continue;
        }
        if let Some((a, _)) = own_v4(s, k).first() {
            need += IFREQ;
            if room.is_some_and(|r| out.len() + IFREQ <= r) {
                let mut rec = [0u8; IFREQ];
                let nm = s.ifaces[k].name.as_bytes();
                rec[..nm.len().min(15)].copy_from_slice(&nm[..nm.len().min(15)]);
                rec[16..32].copy_from_slice(&sockaddr_in(*a));
                out.extend_from_slice(&rec);
            }
        }
    }
    (if room.is_some() { out.len() } else { need }, out)
}
