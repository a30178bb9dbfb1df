//! The links under the smoltcp interfaces: the loopback queue and an
//! adapter for the HAL's [`hal::NetDevice`] (untrusted frames are checked
//! here and dropped with a count before smoltcp sees them).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{ArpPacket, EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet};

/// The loopback MTU smoltcp can carry (an IPv4 datagram's largest size);
/// `ifconfig` reports Linux's 65536.
pub const LO_MTU: usize = 65535;

/// Per-interface counters, as `/proc/net/dev` and netlink report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Malformed frames dropped before the stack saw them.
    pub rx_errors: u64,
    /// Frames dropped because the interface was down.
    pub rx_dropped: u64,
}

/// A link: loopback or a HAL network device.
pub enum Link {
    /// Packets sent are received again, in order (IP medium, no framing).
    Loopback(VecDeque<Vec<u8>>),
    /// A NIC: Ethernet frames to and from the backend.
    Nic(Box<dyn hal::NetDevice>),
}

/// A link with its counters and administrative state.
pub struct Port {
    /// The link.
    pub link: Link,
    /// Counters.
    pub stats: Stats,
    /// `IFF_UP`: a down link neither sends nor receives.
    pub up: bool,
    /// The last receive stopped at its bound of bad frames: more may wait.
    more: bool,
    /// The next packet (IP, without any link header), fetched by
    /// [`Port::stage`] so the stack can look at it before smoltcp does.
    staged: Option<Vec<u8>>,
    /// Offset of the IP header in `staged` (14 on Ethernet).
    staged_ip: usize,
    /// Forwarding is on: which frames to take away from smoltcp.
    pub divert: Option<Divert>,
    /// IPv4 frames to forward, taken out of the receive path.
    pub diverted: Vec<Vec<u8>>,
    /// Copies of the ARP frames received while forwarding is on (to learn
    /// next hops' hardware addresses).
    pub arp_seen: Vec<Vec<u8>>,
}

/// What a forwarding port must not hand to smoltcp: IPv4 packets sent to its
/// hardware address but to none of the machine's addresses.
pub struct Divert {
    /// The interface's hardware address.
    pub mac: [u8; 6],
    /// The machine's IPv4 addresses and the directed broadcasts of its subnets.
    pub local: Vec<[u8; 4]>,
}

/// At most this many frames wait to be forwarded or looked at per port and poll.
const DIVERT_MAX: usize = 1024;

impl Divert {
    /// Should frame `f` (already checked by [`frame_ok`]) be forwarded?
    fn takes(&self, f: &[u8]) -> bool {
        if f.len() < 34 || f[..6] != self.mac || f[12..14] != [0x08, 0x00] {
            return false;
        }
        let dst = [f[30], f[31], f[32], f[33]];
        // Broadcast, multicast, "this network" and loopback are never forwarded.
        !(dst[0] >= 224 || dst[0] == 0 || dst[0] == 127 || self.local.contains(&dst))
    }
}

impl Port {
    /// A loopback port.
    pub fn loopback() -> Port {
        Port { link: Link::Loopback(VecDeque::new()), stats: Stats::default(), up: true, more: false, staged: None, staged_ip: 0, divert: None, diverted: Vec::new(), arp_seen: Vec::new() }
    }
    /// A port over a HAL device.
    pub fn nic(dev: Box<dyn hal::NetDevice>) -> Port {
        Port { link: Link::Nic(dev), stats: Stats::default(), up: true, more: false, staged: None, staged_ip: 0, divert: None, diverted: Vec::new(), arp_seen: Vec::new() }
    }
    /// Loopback packets are waiting to be received.
    pub fn rx_queued(&self) -> bool {
        self.more || self.staged.is_some() || matches!(&self.link, Link::Loopback(q) if !q.is_empty())
    }

    /// The staged packet, if it is a TCP SYN (without ACK): its source
    /// address and port, destination address and port.
    pub fn staged_syn(&self) -> Option<(smoltcp::wire::IpAddress, u16, smoltcp::wire::IpAddress, u16)> {
        syn_of(self.staged.as_deref()?.get(self.staged_ip..)?)
    }

    /// Drop the staged packet (the stack refused it: a SYN beyond a backlog).
    pub fn drop_staged(&mut self) {
        if self.staged.take().is_some() {
            self.stats.rx_dropped += 1;
        }
    }

    /// Fetch the next packet for smoltcp (checked, counted, forwarded ones
    /// taken away); false if none waits. Only the staged packet is handed to
    /// smoltcp, so the stack decides on it first (see [`Port::staged_syn`]).
    pub fn stage(&mut self) -> bool {
        if self.staged.is_some() {
            return true;
        }
        if !self.up {
            return false;
        }
        self.more = false;
        let pkt = match &mut self.link {
            Link::Loopback(q) => {
                let Some(p) = q.pop_front() else { return false };
                self.staged_ip = 0;
                p
            }
            Link::Nic(d) => {
                let max = d.max_frame().clamp(64, 65550);
                let mut buf = vec![0u8; max];
                // Skip (and count) malformed frames: they come from outside.
                let mut got = None;
                for _ in 0..256 {
                    let Some(n) = d.recv(&mut buf) else { return false };
                    if n <= buf.len() && frame_ok(&buf[..n]) {
                        if let Some(dv) = &self.divert {
                            if dv.takes(&buf[..n]) {
                                self.stats.rx_packets += 1;
                                self.stats.rx_bytes += n as u64;
                                if self.diverted.len() < DIVERT_MAX {
                                    self.diverted.push(buf[..n].to_vec());
                                } else {
                                    self.stats.rx_dropped += 1;
                                }
                                continue;
                            }
                            if buf[12..14] == [0x08, 0x06] && self.arp_seen.len() < DIVERT_MAX {
                                self.arp_seen.push(buf[..n].to_vec());
                            }
                        }
                        got = Some(n);
                        break;
                    }
                    self.stats.rx_errors += 1;
                }
                let Some(n) = got else {
                    self.more = true;
                    return false;
                };
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += n as u64;
                buf.truncate(n);
                self.staged_ip = if buf[12..14] == [0x08, 0x00] || buf[12..14] == [0x86, 0xdd] { 14 } else { usize::MAX };
                buf
            }
        };
        self.staged = Some(pkt);
        true
    }
    /// The hardware address (zero for loopback).
    pub fn mac(&self) -> [u8; 6] {
        match &self.link {
            Link::Loopback(_) => [0; 6],
            Link::Nic(d) => d.mac(),
        }
    }
    /// The IP MTU.
    pub fn mtu(&self) -> usize {
        match &self.link {
            Link::Loopback(_) => LO_MTU,
            Link::Nic(d) => d.max_frame().clamp(64, 65535 + 14) - 14,
        }
    }
    /// Send a ready Ethernet frame (forwarding); loopback and down links drop it.
    pub fn send_frame(&mut self, f: &[u8]) -> bool {
        match &mut self.link {
            Link::Nic(d) if self.up => {
                d.send(f);
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += f.len() as u64;
                true
            }
            _ => false,
        }
    }
    /// Drop whatever a down interface has queued, counting it.
    pub fn drain(&mut self) {
        match &mut self.link {
            Link::Loopback(q) => {
                self.stats.rx_dropped += q.len() as u64;
                q.clear();
            }
            Link::Nic(d) => {
                let mut buf = vec![0u8; d.max_frame().clamp(64, 65550)];
                for _ in 0..4096 {
                    if d.recv(&mut buf).is_none() {
                        break;
                    }
                    self.stats.rx_dropped += 1;
                }
            }
        }
    }
}

/// Is `f` a frame smoltcp may be given? (Well-formed Ethernet carrying ARP,
/// IPv4 with a valid header checksum, or IPv6.)
pub fn frame_ok(f: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(f) else { return false };
    match eth.ethertype() {
        EthernetProtocol::Arp => ArpPacket::new_checked(eth.payload()).is_ok(),
        EthernetProtocol::Ipv4 => Ipv4Packet::new_checked(eth.payload()).is_ok_and(|p| p.verify_checksum()),
        EthernetProtocol::Ipv6 => Ipv6Packet::new_checked(eth.payload()).is_ok(),
        _ => false,
    }
}

/// If IP packet `p` is a TCP SYN (without ACK): (source address, source
/// port, destination address, destination port).
fn syn_of(p: &[u8]) -> Option<(smoltcp::wire::IpAddress, u16, smoltcp::wire::IpAddress, u16)> {
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv6Address};
    let (src, dst, tcp) = match p.first()? >> 4 {
        4 if p.len() >= 20 && p[9] == 6 => {
            let a = |i: usize| IpAddress::Ipv4(Ipv4Address::new(p[i], p[i + 1], p[i + 2], p[i + 3]));
            (a(12), a(16), p.get(((p[0] & 0xf) as usize * 4)..)?)
        }
        6 if p.len() >= 40 && p[6] == 6 => {
            let a = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&p[i..i + 16]);
                IpAddress::Ipv6(Ipv6Address::from(o))
            };
            (a(8), a(24), &p[40..])
        }
        _ => return None,
    };
    if tcp.len() < 14 || tcp[13] & 0x12 != 0x02 {
        return None;
    }
    Some((src, u16::from_be_bytes([tcp[0], tcp[1]]), dst, u16::from_be_bytes([tcp[2], tcp[3]])))
}

/// A received packet.
pub struct Rx(Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Permission to send one packet.
pub struct Tx<'a> {
    link: &'a mut Link,
    stats: &'a mut Stats,
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        match self.link {
            Link::Loopback(q) => {
                // Loopback receives what it sends: count it both ways, as Linux.
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += len as u64;
                q.push_back(buf);
            }
            Link::Nic(d) => d.send(&buf),
        }
        r
    }
}

impl Device for Port {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx<'_>)> {
        if !self.up || !self.stage() {
            return None;
        }
        let pkt = self.staged.take()?;
        Some((Rx(pkt), Tx { link: &mut self.link, stats: &mut self.stats }))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        if !self.up {
            return None;
        }
        Some(Tx { link: &mut self.link, stats: &mut self.stats })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        match &self.link {
            Link::Loopback(_) => {
                caps.medium = Medium::Ip;
                caps.max_transmission_unit = LO_MTU;
                // Nothing corrupts memory-to-memory copies: skip checksums, as Linux does on lo.
                caps.checksum = ChecksumCapabilities::ignored();
            }
            Link::Nic(d) => {
                caps.medium = Medium::Ethernet;
                caps.max_transmission_unit = d.max_frame().clamp(64, 65535 + 14);
            }
        }
        caps
    }
}
