//! Guest `sockaddr` layouts: decoding what a program passes to `bind`,
//! `connect`, `sendto`, `sendmsg`, and encoding what the kernel hands back
//! (`getsockname`, `getpeername`, `accept`, `recvfrom`, `recvmsg`).
//!
//! The length and family rules are Linux's, per socket family: an AF_UNIX
//! socket rejects a foreign family with `EINVAL`, an AF_INET/AF_INET6
//! socket with `EAFNOSUPPORT`; a too-short address is `EINVAL`.

use alloc::vec::Vec;

use linux_raw_sys::net as n;

use super::{SockAddr, UnixAddr};
use crate::Errno;

/// `sizeof(struct sockaddr_storage)`: the longest address a call accepts.
pub const SOCKADDR_MAX: usize = 128;
/// `sizeof(struct sockaddr_un)`.
pub const SUN_LEN_MAX: usize = 110;
/// `offsetof(struct sockaddr_un, sun_path)`.
pub const SUN_PATH_OFF: usize = 2;
/// `sizeof(struct sockaddr_in)`.
pub const SIN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SIN6_LEN: usize = 28;
/// The shorter `sockaddr_in6` of RFC 2133 (no scope id), still accepted.
pub const SIN6_LEN_RFC2133: usize = 24;
/// `sizeof(struct sockaddr_nl)`.
pub const SNL_LEN: usize = 12;

fn u16_le(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The `sa_family` of a raw address (`EINVAL` when shorter than the field).
pub fn family_of(raw: &[u8]) -> Result<u32, Errno> {
    if raw.len() < 2 {
        return Err(Errno::EINVAL);
    }
    Ok(u16_le(raw, 0) as u32)
}

/// Decode `raw` (already copied in, at most [`SOCKADDR_MAX`] bytes) for a
/// socket of family `domain`. `AF_UNSPEC` is returned as [`SockAddr::Unspec`]
/// for every family (datagram `connect` uses it to dissolve an association;
/// AF_INET's `bind` accepts it as "any"), and the caller decides.
///
/// AF_UNIX: exactly the family field means "no name" (autobind for `bind`,
/// `EINVAL` elsewhere, as the caller decides); a leading NUL makes an
/// abstract name (every byte up to the length counts); otherwise a path,
/// up to the first NUL.
pub fn decode(domain: u32, raw: &[u8]) -> Result<SockAddr, Errno> {
    let fam = family_of(raw)?;
    if raw.len() > SOCKADDR_MAX {
        return Err(Errno::EINVAL);
    }
    if fam == n::AF_UNSPEC {
        return Ok(SockAddr::Unspec);
    }
    match domain {
        n::AF_UNIX => {
            if fam != n::AF_UNIX || raw.len() > SUN_LEN_MAX {
                return Err(Errno::EINVAL);
            }
            let path = &raw[SUN_PATH_OFF..];
            Ok(SockAddr::Unix(if path.is_empty() {
                UnixAddr::Unnamed
            } else if path[0] == 0 {
                UnixAddr::Abstract(path[1..].to_vec())
            } else {
                let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                UnixAddr::Path(path[..end].to_vec())
            }))
        }
        n::AF_INET => {
            if raw.len() < SIN_LEN {
                return Err(Errno::EINVAL);
            }
            if fam != n::AF_INET {
                return Err(Errno::EAFNOSUPPORT);
            }
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            Ok(SockAddr::Inet([raw[4], raw[5], raw[6], raw[7]], port))
        }
        n::AF_INET6 => {
            if fam == n::AF_INET && raw.len() >= SIN_LEN {
                // An IPv4 address on an IPv6 socket: the caller maps it (or refuses).
                let port = u16::from_be_bytes([raw[2], raw[3]]);
                return Ok(SockAddr::Inet([raw[4], raw[5], raw[6], raw[7]], port));
            }
            if raw.len() < SIN6_LEN_RFC2133 {
                return Err(Errno::EINVAL);
            }
            if fam != n::AF_INET6 {
                return Err(Errno::EAFNOSUPPORT);
            }
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let flow = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[8..24]);
            let scope = if raw.len() >= SIN6_LEN { u32_le(raw, 24) } else { 0 };
            Ok(SockAddr::Inet6(a, port, flow, scope))
        }
        n::AF_NETLINK => {
            if raw.len() < SNL_LEN || fam != n::AF_NETLINK {
                return Err(Errno::EINVAL);
            }
            Ok(SockAddr::Netlink(u32_le(raw, 4), u32_le(raw, 8)))
        }
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// How an unnamed AF_UNIX address is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unnamed {
    /// As `getsockname`/`getpeername`/`accept` report it: the family alone (2 bytes).
    Family,
    /// As `recvfrom`/`recvmsg` report a sender without a name: nothing (0 bytes).
    Empty,
}

/// The guest bytes of `addr` (their length is the `addrlen` to report).
pub fn encode(addr: &SockAddr, unnamed: Unnamed) -> Vec<u8> {
    let mut v = Vec::new();
    match addr {
        SockAddr::Unspec => v.extend_from_slice(&(n::AF_UNSPEC as u16).to_le_bytes()),
        SockAddr::Unix(u) => {
            if *u == UnixAddr::Unnamed && unnamed == Unnamed::Empty {
                return v;
            }
            v.extend_from_slice(&(n::AF_UNIX as u16).to_le_bytes());
            match u {
                UnixAddr::Unnamed => {}
                UnixAddr::Path(p) => {
                    v.extend_from_slice(p);
                    // Linux reports the terminating NUL as part of the length.
                    v.push(0);
                }
                UnixAddr::Abstract(a) => {
                    v.push(0);
                    v.extend_from_slice(a);
                }
            }
        }
        SockAddr::Inet(a, port) => {
            v.extend_from_slice(&(n::AF_INET as u16).to_le_bytes());
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(a);
            v.resize(SIN_LEN, 0);
        }
        SockAddr::Inet6(a, port, flow, scope) => {
            v.extend_from_slice(&(n::AF_INET6 as u16).to_le_bytes());
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&flow.to_be_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(&scope.to_le_bytes());
        }
        SockAddr::Netlink(pid, groups) => {
            v.extend_from_slice(&(n::AF_NETLINK as u16).to_le_bytes());
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&pid.to_le_bytes());
            v.extend_from_slice(&groups.to_le_bytes());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn unix_round_trip() {
        let mut raw = vec![1u8, 0];
        raw.extend_from_slice(b"/tmp/s\0junk");
        let a = decode(n::AF_UNIX, &raw).unwrap();
        assert_eq!(a, SockAddr::Unix(UnixAddr::Path(b"/tmp/s".to_vec())));
        assert_eq!(encode(&a, Unnamed::Family), b"\x01\x00/tmp/s\0".to_vec());
        let a = decode(n::AF_UNIX, b"\x01\x00\x00ab\x00").unwrap();
        assert_eq!(a, SockAddr::Unix(UnixAddr::Abstract(b"ab\0".to_vec())));
        assert_eq!(decode(n::AF_UNIX, b"\x01\x00").unwrap(), SockAddr::Unix(UnixAddr::Unnamed));
        assert_eq!(encode(&SockAddr::Unix(UnixAddr::Unnamed), Unnamed::Empty).len(), 0);
        assert_eq!(decode(n::AF_UNIX, b"\x02\x00abc"), Err(Errno::EINVAL));
        assert_eq!(decode(n::AF_UNIX, b"\x01"), Err(Errno::EINVAL));
        assert_eq!(decode(n::AF_UNIX, &[1u8; 111]), Err(Errno::EINVAL));
    }

    #[test]
    fn inet_rules() {
        let mut raw = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        raw.resize(16, 0);
        assert_eq!(decode(n::AF_INET, &raw).unwrap(), SockAddr::Inet([127, 0, 0, 1], 8080));
        assert_eq!(encode(&SockAddr::Inet([127, 0, 0, 1], 8080), Unnamed::Family), raw);
        assert_eq!(decode(n::AF_INET, &raw[..15]), Err(Errno::EINVAL));
        let mut bad = raw.clone();
        bad[0] = 1;
        assert_eq!(decode(n::AF_INET, &bad), Err(Errno::EAFNOSUPPORT));
        let six = encode(&SockAddr::Inet6([0; 16], 80, 0, 3), Unnamed::Family);
        assert_eq!(six.len(), SIN6_LEN);
        assert_eq!(decode(n::AF_INET6, &six).unwrap(), SockAddr::Inet6([0; 16], 80, 0, 3));
        let nl = encode(&SockAddr::Netlink(5, 1), Unnamed::Family);
        assert_eq!(decode(n::AF_NETLINK, &nl).unwrap(), SockAddr::Netlink(5, 1));
        assert_eq!(decode(99, &nl), Err(Errno::EAFNOSUPPORT));
    }
}
