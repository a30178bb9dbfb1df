//! Socket options common to the IP sockets: the ones programs set are
//! accepted, remembered and reported back as Linux reports them; the few
//! that change behaviour are read by the protocols from here.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use linux_raw_sys::net as n;

use crate::Errno;

/// `SOL_SOCKET`.
pub const SOL_SOCKET: u32 = n::SOL_SOCKET;
/// `SOL_IP` / `IPPROTO_IP`.
pub const SOL_IP: u32 = n::SOL_IP;
/// `SOL_TCP` / `IPPROTO_TCP`.
pub const SOL_TCP: u32 = n::SOL_TCP;
/// `SOL_UDP`.
pub const SOL_UDP: u32 = n::SOL_UDP;
/// `SOL_IPV6`.
pub const SOL_IPV6: u32 = n::SOL_IPV6;

/// How a known option's value is shaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An int reported as 0/1.
    Bool,
    /// An int kept as given.
    Int,
    /// A buffer size: Linux doubles what is set.
    BufSize,
    /// Bytes kept as given (`struct linger`, `timeval`, names).
    Bytes(usize),
}

/// The accepted options and their defaults.
fn known(level: u32, name: u32, tcp: bool) -> Option<(Shape, i64)> {
    use Shape::*;
    Some(match (level, name) {
        (SOL_SOCKET, n::SO_REUSEADDR | n::SO_KEEPALIVE | n::SO_BROADCAST | n::SO_DONTROUTE | n::SO_OOBINLINE) => (Bool, 0),
        (SOL_SOCKET, n::SO_REUSEPORT | n::SO_TIMESTAMP_OLD | n::SO_TIMESTAMPNS_OLD | n::SO_PASSCRED) => (Bool, 0),
        (SOL_SOCKET, n::SO_RCVBUF) => (BufSize, if tcp { 131072 } else { 212992 }),
        (SOL_SOCKET, n::SO_SNDBUF) => (BufSize, if tcp { 16384 } else { 212992 }),
        (SOL_SOCKET, n::SO_PRIORITY | n::SO_MARK) => (Int, 0),
        (SOL_SOCKET, n::SO_RCVLOWAT | n::SO_SNDLOWAT) => (Int, 1),
        (SOL_SOCKET, n::SO_LINGER) => (Bytes(8), 0),
        (SOL_SOCKET, n::SO_RCVTIMEO_OLD | n::SO_SNDTIMEO_OLD) => (Bytes(16), 0),
        (SOL_SOCKET, n::SO_BINDTODEVICE) => (Bytes(0), 0),
        (SOL_TCP, n::TCP_NODELAY | n::TCP_CORK | n::TCP_QUICKACK) if tcp => (Bool, 0),
        (SOL_TCP, n::TCP_MAXSEG) if tcp => (Int, 536),
        (SOL_TCP, n::TCP_KEEPIDLE) if tcp => (Int, 7200),
        (SOL_TCP, n::TCP_KEEPINTVL) if tcp => (Int, 75),
        (SOL_TCP, n::TCP_KEEPCNT) if tcp => (Int, 9),
        (SOL_TCP, n::TCP_SYNCNT) if tcp => (Int, 6),
        (SOL_TCP, n::TCP_LINGER2) if tcp => (Int, 60),
        (SOL_TCP, n::TCP_DEFER_ACCEPT | n::TCP_USER_TIMEOUT | n::TCP_FASTOPEN | n::TCP_WINDOW_CLAMP) if tcp => (Int, 0),
        (SOL_TCP, n::TCP_NOTSENT_LOWAT) if tcp => (Int, u32::MAX as i64),
        (SOL_TCP, n::TCP_CONGESTION) if tcp => (Bytes(0), 0),
        (SOL_IP, n::IP_TTL) => (Int, 64),
        (SOL_IP, n::IP_TOS | n::IP_MULTICAST_IF) => (Int, 0),
        (SOL_IP, n::IP_MULTICAST_TTL | n::IP_MULTICAST_LOOP) => (Int, 1),
        (SOL_IP, n::IP_MTU_DISCOVER) => (Int, n::IP_PMTUDISC_WANT as i64),
        (SOL_IP, n::IP_RECVERR | n::IP_PKTINFO | n::IP_RECVTOS | n::IP_RECVTTL | n::IP_FREEBIND | n::IP_TRANSPARENT) => (Bool, 0),
        (SOL_IP, n::IP_BIND_ADDRESS_NO_PORT | n::IP_HDRINCL | n::IP_RECVORIGDSTADDR) => (Bool, 0),
        (SOL_IPV6, n::IPV6_V6ONLY | n::IPV6_RECVPKTINFO | n::IPV6_RECVERR | n::IPV6_RECVTCLASS | n::IPV6_FREEBIND) => (Bool, 0),
        (SOL_IPV6, n::IPV6_UNICAST_HOPS | n::IPV6_MULTICAST_HOPS) => (Int, 64),
        (SOL_IPV6, n::IPV6_TCLASS) => (Int, 0),
        (SOL_IPV6, n::IPV6_MULTICAST_LOOP) => (Int, 1),
        (SOL_IPV6, n::IPV6_MTU_DISCOVER) => (Int, n::IPV6_PMTUDISC_WANT as i64),
        _ => return None,
    })
}

/// The options set on one socket.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    tcp: bool,
    set: BTreeMap<(u32, u32), Vec<u8>>,
}

fn int(v: &[u8]) -> Result<i32, Errno> {
    // Linux takes a shorter value for ints as its first byte; shorter than that is EINVAL.
    match v.len() {
        0 => Err(Errno::EINVAL),
        1..=3 => Ok(v[0] as i32),
        _ => Ok(i32::from_le_bytes([v[0], v[1], v[2], v[3]])),
    }
}

impl Opts {
    /// Options of a TCP (`tcp`) or datagram socket.
    pub fn new(tcp: bool) -> Opts {
        Opts { tcp, set: BTreeMap::new() }
    }

    /// `setsockopt` of an accepted option (ENOPROTOOPT otherwise).
    pub fn set(&mut self, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        let (shape, _) = known(level, name, self.tcp).ok_or(Errno::ENOPROTOOPT)?;
        let stored = match shape {
            Shape::Bool => (int(value)? != 0) as i32 as u32,
            Shape::Int => {
                let v = int(value)?;
                if (level, name) == (SOL_IP, n::IP_TTL) && (!(-1..=255).contains(&v) || v == 0) {
                    return Err(Errno::EINVAL);
                }
                if (level, name) == (SOL_IP, n::IP_TTL) && v == -1 {
                    64
                } else {
                    v as u32
                }
            }
            Shape::BufSize => {
                let v = int(value)?.max(0) as u32;
                let min = if name == n::SO_RCVBUF { 2304 } else { 4608 };
                v.min(16 << 20).saturating_mul(2).max(min)
            }
            Shape::Bytes(len) => {
                if len != 0 && value.len() < len {
                    return Err(Errno::EINVAL);
                }
                let keep = if len == 0 { value.len().min(64) } else { len };
                self.set.insert((level, name), value[..keep].to_vec());
                return Ok(());
            }
        };
        self.set.insert((level, name), stored.to_le_bytes().to_vec());
        Ok(())
    }

    /// `getsockopt` of an accepted option.
    pub fn get(&self, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        let (shape, default) = known(level, name, self.tcp).ok_or(Errno::ENOPROTOOPT)?;
        if let Some(v) = self.set.get(&(level, name)) {
            return Ok(v.clone());
        }
        Ok(match shape {
            Shape::Bytes(0) if (level, name) == (SOL_TCP, n::TCP_CONGESTION) => b"reno\0".to_vec(),
            Shape::Bytes(len) => alloc::vec![0u8; len],
            _ => (default as u32).to_le_bytes().to_vec(),
        })
    }

    /// An int-valued option (its default when unset).
    pub fn int(&self, level: u32, name: u32) -> i64 {
        self.get(level, name).ok().and_then(|v| v.get(..4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)).unwrap_or(0)
    }

    /// A boolean option.
    pub fn flag(&self, level: u32, name: u32) -> bool {
        self.int(level, name) != 0
    }

    /// `SO_LINGER` on with a zero timeout: close resets the connection.
    pub fn linger_abort(&self) -> bool {
        self.set.get(&(SOL_SOCKET, n::SO_LINGER)).is_some_and(|v| v.len() >= 8 && v[..4] != [0; 4] && v[4..8] == [0; 4])
    }
}

/// An int option value as bytes.
pub fn int_bytes(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}
