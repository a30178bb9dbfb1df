//! IPv4 forwarding between interfaces (`/proc/sys/net/ipv4/ip_forward`).
//!
//! smoltcp has no forwarding, so while it is on, each Ethernet port takes
//! the IPv4 packets sent to its hardware address but to none of the
//! machine's addresses out of the receive path ([`super::dev::Divert`]) and
//! keeps copies of the ARP frames it sees. After the interfaces are polled,
//! [`run`] learns next hops' hardware addresses from those ARP frames and
//! sends each diverted packet on: the outgoing interface is the longest
//! prefix over the interfaces' subnets and routes ([`Route4`], from
//! `ip route add NET/LEN via GW`), the TTL is decremented (a packet at TTL 1
//! is dropped and its sender gets an ICMP time exceeded), the header
//! checksum updated incrementally, and the Ethernet header rewritten for the
//! next hop. A next hop whose address is unknown is asked for with an ARP
//! request, and a few packets wait for the answer (more are dropped); a
//! stale one is still used while it is asked for again. No fragmentation:
//! a packet too big for the outgoing link is dropped.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::iface::Route;
use smoltcp::wire::{HardwareAddress, Icmpv4Packet, IpAddress, IpCidr, Ipv4Packet};

use super::Stack;

/// How long a learned hardware address is trusted (ns), as Linux's
/// reachable time; after that it is still used while it is asked for again.
const ARP_FRESH: u64 = 30_000_000_000;
/// A hardware address not confirmed for this long (ns) is forgotten.
const ARP_LIFETIME: u64 = 120_000_000_000;
/// How often an unanswered next hop is asked again (ns).
const ARP_RETRY: u64 = 1_000_000_000;
/// Packets for an unanswered next hop are dropped after this long (ns).
const PENDING_LIFETIME: u64 = 3_000_000_000;
/// Packets waiting per next hop.
const PENDING_PER_HOP: usize = 4;
/// Next hops being asked for at once.
const PENDING_HOPS: usize = 64;
/// Hardware addresses remembered.
const ARP_MAX: usize = 256;

/// A static IPv4 route to a prefix through a gateway (`ip route add
/// NET/LEN via GW`); the default route is smoltcp's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route4 {
    /// `ifindex` of the interface the gateway is reached through.
    pub oif: u32,
    /// The destination prefix (host bits clear).
    pub dst: [u8; 4],
    /// Its length (1 to 32).
    pub len: u8,
    /// The gateway.
    pub gw: [u8; 4],
}

impl Route4 {
    /// Does the route cover `a`?
    pub fn covers(&self, a: [u8; 4]) -> bool {
        let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len.min(32))) };
        u32::from_be_bytes(a) & mask == u32::from_be_bytes(self.dst)
    }
    /// smoltcp's form of the route.
    pub fn smoltcp(&self) -> Route {
        let g = self.gw;
        Route {
            cidr: IpCidr::new(IpAddress::v4(self.dst[0], self.dst[1], self.dst[2], self.dst[3]), self.len),
            via_router: IpAddress::v4(g[0], g[1], g[2], g[3]),
            preferred_until: None,
            expires_at: None,
        }
    }
}

/// Counters of what forwarding did (for tests and diagnosis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwdStats {
    /// Packets sent on.
    pub forwarded: u64,
    /// Packets dropped because their TTL ran out.
    pub ttl_expired: u64,
    /// Packets dropped for lack of a route (or a usable outgoing link).
    pub no_route: u64,
    /// Packets dropped waiting for a next hop's hardware address.
    pub unresolved: u64,
    /// Packets too big for the outgoing link (no fragmentation).
    pub too_big: u64,
}

/// A next hop's hardware address, when it was learned and when it was last
/// asked for again (ns).
type Neighbour = ([u8; 6], u64, u64);

struct Pending {
    /// When the last ARP request went out (ns).
    asked: u64,
    /// When the first packet started waiting (ns).
    since: u64,
    frames: Vec<Vec<u8>>,
}

/// Forwarding state: the switch and the next hops' hardware addresses.
#[derive(Default)]
pub struct Forwarder {
    /// `net.ipv4.ip_forward`.
    pub enabled: bool,
    /// Counters.
    pub stats: FwdStats,
    /// (interface, IPv4 address) -> (hardware address, learned at ns).
    arp: BTreeMap<(usize, [u8; 4]), Neighbour>,
    /// Packets waiting for a next hop's hardware address.
    pending: BTreeMap<(usize, [u8; 4]), Pending>,
}

impl Forwarder {
    /// Are packets waiting for an ARP answer (so the stack needs a timer)?
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The divert filters for the ports: set while forwarding is on, cleared otherwise.
pub fn arm(s: &mut Stack) {
    if !s.fwd.enabled {
        for i in s.ifaces.iter_mut() {
            i.port.divert = None;
            i.port.diverted.clear();
            i.port.arp_seen.clear();
        }
        s.fwd.pending.clear();
        return;
    }
    let mut local: Vec<[u8; 4]> = Vec::new();
    for i in &s.ifaces {
        for (a, p) in i.ipv4() {
            local.push(a);
            if p < 31 {
                let host = u32::MAX >> p;
                local.push((u32::from_be_bytes(a) | host).to_be_bytes());
            }
        }
    }
    for i in s.ifaces.iter_mut().filter(|i| !i.is_loopback()) {
        i.port.divert = match i.iface.hardware_addr() {
            HardwareAddress::Ethernet(m) => Some(super::dev::Divert { mac: m.0, local: local.clone() }),
            #[allow(unreachable_patterns)]
            _ => None,
        };
    }
}

/// Learn from the ARP frames seen, send the diverted packets on, and ask
/// again for next hops still unanswered.
pub fn run(s: &mut Stack) {
    if !s.fwd.enabled {
        return;
    }
    let now = s.now;
    for k in 0..s.ifaces.len() {
        let seen = core::mem::take(&mut s.ifaces[k].port.arp_seen);
        for f in seen {
            learn(s, k, &f, now);
        }
    }
    for k in 0..s.ifaces.len() {
        let frames = core::mem::take(&mut s.ifaces[k].port.diverted);
        for f in frames {
            forward(s, k, f, now);
        }
    }
    // Retry or give up on unanswered next hops.
    let mut ask = Vec::new();
    let mut dropped = 0;
    s.fwd.pending.retain(|&key, p| {
        if now.saturating_sub(p.since) > PENDING_LIFETIME {
            dropped += p.frames.len() as u64;
            return false;
        }
        if now.saturating_sub(p.asked) >= ARP_RETRY {
            p.asked = now;
            ask.push(key);
        }
        true
    });
    s.fwd.stats.unresolved += dropped;
    for (k, ip) in ask {
        arp_request(s, k, ip);
    }
}

/// Remember the sender of ARP frame `f` received on interface `k`, and send
/// what waited for it.
fn learn(s: &mut Stack, k: usize, f: &[u8], now: u64) {
    // Ethernet/IPv4 ARP: 14 bytes of Ethernet, then 28 of ARP.
    if f.len() < 42 || f[14..20] != [0, 1, 8, 0, 6, 4] {
        return;
    }
    let sha: [u8; 6] = [f[22], f[23], f[24], f[25], f[26], f[27]];
    let spa: [u8; 4] = [f[28], f[29], f[30], f[31]];
    if spa == [0; 4] || sha[0] & 1 != 0 || sha == [0; 6] {
        return;
    }
    if s.fwd.arp.len() >= ARP_MAX && !s.fwd.arp.contains_key(&(k, spa)) {
        // Make room: forget the oldest entry.
        if let Some(old) = s.fwd.arp.iter().min_by_key(|(_, v)| v.1).map(|(key, _)| *key) {
            s.fwd.arp.remove(&old);
        }
    }
    s.fwd.arp.insert((k, spa), (sha, now, 0));
    if let Some(p) = s.fwd.pending.remove(&(k, spa)) {
        for mut f in p.frames {
            f[..6].copy_from_slice(&sha);
            if s.ifaces[k].port.send_frame(&f) {
                s.fwd.stats.forwarded += 1;
            } else {
                s.fwd.stats.no_route += 1;
            }
        }
    }
}

/// The outgoing interface and next hop for `dst`: the longest matching
/// prefix over the up Ethernet interfaces' subnets and routes.
fn lookup(s: &mut Stack, dst: [u8; 4]) -> Option<(usize, [u8; 4])> {
    let a = IpAddress::v4(dst[0], dst[1], dst[2], dst[3]);
    let mut best: Option<(u8, usize, [u8; 4])> = None;
    for (k, i) in s.ifaces.iter_mut().enumerate() {
        if !i.port.up || i.is_loopback() {
            continue;
        }
        let mut cands: Vec<(u8, [u8; 4])> = Vec::new();
        for c in i.iface.ip_addrs() {
            if matches!(c, IpCidr::Ipv4(_)) && c.contains_addr(&a) {
                cands.push((c.prefix_len(), dst));
            }
        }
        let mut routes: Vec<Route> = Vec::new();
        i.iface.routes_mut().update(|v| routes.extend(v.iter().copied()));
        for r in routes {
            if let (IpCidr::Ipv4(_), IpAddress::Ipv4(gw)) = (r.cidr, r.via_router) {
                if r.cidr.contains_addr(&a) {
                    cands.push((r.cidr.prefix_len(), gw.octets()));
                }
            }
        }
        for (p, hop) in cands {
            if best.is_none_or(|b| p > b.0) {
                best = Some((p, k, hop));
            }
        }
    }
    best.map(|(_, k, hop)| (k, hop))
}

/// RFC 1624's incremental update of checksum `hc` for a 16-bit word going
/// from `old` to `new`.
fn csum_update(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Send diverted frame `f` (a checked Ethernet/IPv4 frame received on
/// interface `from`) on.
fn forward(s: &mut Stack, from: usize, mut f: Vec<u8>, now: u64) {
    let ihl = usize::from(f[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    if ihl < 20 || total < ihl || 14 + total > f.len() {
        return;
    }
    f.truncate(14 + total); // Ethernet padding
    let ttl = f[22];
    if ttl <= 1 {
        s.fwd.stats.ttl_expired += 1;
        time_exceeded(s, from, &f[14..], now);
        return;
    }
    // TTL shares a 16-bit word with the protocol number.
    let old = u16::from_be_bytes([ttl, f[23]]);
    f[22] = ttl - 1;
    let new = u16::from_be_bytes([ttl - 1, f[23]]);
    let hc = csum_update(u16::from_be_bytes([f[24], f[25]]), old, new);
    f[24..26].copy_from_slice(&hc.to_be_bytes());
    send(s, f, now);
}

/// Answer IPv4 packet `ip`, received on interface `from` with its TTL run
/// out, with an ICMP time exceeded (what `traceroute` counts on), unless
/// it is itself an ICMP error, a later fragment, or from no single host.
fn time_exceeded(s: &mut Stack, from: usize, ip: &[u8], now: u64) {
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
    let icmp_error = ip[9] == 1 && ip.len() > ihl && matches!(ip[ihl], 3 | 4 | 5 | 11 | 12);
    if later_fragment || icmp_error || src[0] == 0 || src[0] >= 224 || src[0] == 127 {
        return;
    }
    let a = IpAddress::v4(src[0], src[1], src[2], src[3]);
    // From the receiving interface's address (on the sender's subnet if it has one).
    let me = s.ifaces[from]
        .iface
        .ip_addrs()
        .iter()
        .filter_map(|c| match c.address() {
            IpAddress::Ipv4(x) => Some((c.contains_addr(&a), x.octets())),
            _ => None,
        })
        .max_by_key(|c| c.0)
        .map(|c| c.1);
    let Some(me) = me else { return };
    // The offending header and the first 8 bytes of its payload.
    let quote = &ip[..(ihl + 8).min(ip.len())];
    let total = 20 + 8 + quote.len();
    let mut f = alloc::vec![0u8; 14 + total];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let p = &mut f[14..];
    p[0] = 0x45;
    p[1] = 0xc0; // internetwork control, as Linux
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&me);
    p[16..20].copy_from_slice(&src);
    p[20] = 11; // time exceeded, code 0: TTL exceeded in transit
    p[28..].copy_from_slice(quote);
    Icmpv4Packet::new_unchecked(&mut p[20..]).fill_checksum();
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    send(s, f, now);
}

/// Route IPv4 frame `f` (its Ethernet addresses still to fill) and send it,
/// or queue it until its next hop's hardware address is known.
fn send(s: &mut Stack, mut f: Vec<u8>, now: u64) {
    let dst = [f[30], f[31], f[32], f[33]];
    let Some((k, hop)) = lookup(s, dst) else {
        s.fwd.stats.no_route += 1;
        return;
    };
    let out = &s.ifaces[k];
    if f.len() > out.port.mtu() + 14 {
        s.fwd.stats.too_big += 1;
        return;
    }
    let HardwareAddress::Ethernet(mac) = out.iface.hardware_addr() else {
        s.fwd.stats.no_route += 1;
        return;
    };
    f[6..12].copy_from_slice(&mac.0);
    match s.fwd.arp.get(&(k, hop)) {
        Some(&(hw, at, asked)) if now.saturating_sub(at) < ARP_LIFETIME => {
            // Stale: keep using it, and ask again (the answer refreshes it).
            if now.saturating_sub(at) >= ARP_FRESH && now.saturating_sub(asked) >= ARP_RETRY {
                s.fwd.arp.insert((k, hop), (hw, at, now));
                arp_request(s, k, hop);
            }
            f[..6].copy_from_slice(&hw);
            if s.ifaces[k].port.send_frame(&f) {
                s.fwd.stats.forwarded += 1;
            } else {
                s.fwd.stats.no_route += 1;
            }
        }
        _ => {
            let room = s.fwd.pending.len() < PENDING_HOPS;
            let ask = match s.fwd.pending.get_mut(&(k, hop)) {
                Some(p) => {
                    if p.frames.len() < PENDING_PER_HOP {
                        p.frames.push(f);
                    } else {
                        s.fwd.stats.unresolved += 1;
                    }
                    false
                }
                None if room => {
                    s.fwd.pending.insert((k, hop), Pending { asked: now, since: now, frames: alloc::vec![f] });
                    true
                }
                None => {
                    s.fwd.stats.unresolved += 1;
                    false
                }
            };
            if ask {
                arp_request(s, k, hop);
            }
        }
    }
}

/// Broadcast "who has `ip`?" on interface `k`.
fn arp_request(s: &mut Stack, k: usize, ip: [u8; 4]) {
    let i = &mut s.ifaces[k];
    let HardwareAddress::Ethernet(mac) = i.iface.hardware_addr() else { return };
    let a = IpAddress::v4(ip[0], ip[1], ip[2], ip[3]);
    let v4 = i.ipv4();
    // Ask from the address on the next hop's subnet, else the first one.
    let Some(spa) = i
        .iface
        .ip_addrs()
        .iter()
        .find_map(|c| match c.address() {
            IpAddress::Ipv4(x) if c.contains_addr(&a) => Some(x.octets()),
            _ => None,
        })
        .or_else(|| v4.first().map(|v| v.0))
    else {
        return;
    };
    let mut f = alloc::vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac.0);
    f[28..32].copy_from_slice(&spa);
    f[38..42].copy_from_slice(&ip);
    i.port.send_frame(&f);
}

/// `/proc/net/route` (what `route -n` and `netstat -r` read): the default
/// routes, static routes and on-link subnets, addresses as native-endian hex.
pub fn proc_route(s: &Stack) -> String {
    use core::fmt::Write;
    const RTF_UP: u16 = 1;
    const RTF_GATEWAY: u16 = 2;
    let mask = |len: u8| if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    // (interface, destination, gateway, prefix length)
    let mut rows: Vec<(&str, [u8; 4], [u8; 4], u8)> = Vec::new();
    for i in s.ifaces.iter().filter(|i| i.port.up && !i.is_loopback()) {
        if let Some(r) = i.iface.routes().get_default_ipv4_route() {
            if let IpAddress::Ipv4(gw) = r.via_router {
                rows.push((&i.name, [0; 4], gw.octets(), 0));
            }
        }
    }
    let mut rest: Vec<(&str, [u8; 4], [u8; 4], u8)> = Vec::new();
    for i in s.ifaces.iter().filter(|i| i.port.up && !i.is_loopback()) {
        for r in s.routes.iter().filter(|r| r.oif == i.index) {
            rest.push((&i.name, r.dst, r.gw, r.len));
        }
        for (a, p) in i.ipv4() {
            rest.push((&i.name, (u32::from_be_bytes(a) & mask(p)).to_be_bytes(), [0; 4], p));
        }
    }
    rest.sort_by_key(|r| (u32::from_be_bytes(r.1), r.3));
    rows.extend(rest);
    let mut out = String::new();
    let _ = writeln!(out, "{:<127}", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT");
    for (name, dst, gw, len) in rows {
        let flags = if gw == [0; 4] { RTF_UP } else { RTF_UP | RTF_GATEWAY };
        let line = alloc::format!(
            "{name}\t{:08X}\t{:08X}\t{flags:04X}\t0\t0\t0\t{:08X}\t0\t0\t0",
            u32::from_le_bytes(dst),
            u32::from_le_bytes(gw),
            mask(len).swap_bytes()
        );
        let _ = writeln!(out, "{line:<127}");
    }
    out
}
