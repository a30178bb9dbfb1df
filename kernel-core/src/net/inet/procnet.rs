//! `/proc/net/dev`, `/proc/net/tcp` and `/proc/net/udp` in Linux's formats
//! (what `ifconfig` and `netstat` read).

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use smoltcp::socket::{tcp::State, Socket as AnySock};
use smoltcp::wire::IpAddress;

use super::Stack;

/// The files of `/proc/net` generated here.
pub const FILES: [&str; 6] = ["dev", "tcp", "udp", "tcp6", "udp6", "route"];

fn hex_v4(a: Option<IpAddress>, port: u16) -> String {
    let raw = match a {
        Some(IpAddress::Ipv4(x)) => u32::from_le_bytes(x.octets()),
        _ => 0,
    };
    format!("{raw:08X}:{port:04X}")
}

/// An address as Linux prints it: IPv6 as four native-endian words.
fn hex(a: Option<IpAddress>, port: u16, v6: bool) -> String {
    if !v6 {
        return hex_v4(a, port);
    }
    let o = match a {
        Some(IpAddress::Ipv6(x)) => x.octets(),
        _ => [0; 16],
    };
    let mut s = String::new();
    for w in o.chunks(4) {
        let _ = write!(s, "{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    format!("{s}:{port:04X}")
}

/// Does an endpoint address belong in the IPv6 files? (The wildcard is shown in the IPv4 ones.)
fn is_v6(a: Option<IpAddress>) -> bool {
    matches!(a, Some(IpAddress::Ipv6(_)))
}

fn tcp_state(s: State) -> u8 {
    match s {
        State::Established => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::FinWait1 => 4,
        State::FinWait2 => 5,
        State::TimeWait => 6,
        State::Closed => 7,
        State::CloseWait => 8,
        State::LastAck => 9,
        State::Listen => 10,
        State::Closing => 11,
    }
}

/// The contents of `/proc/net/<name>`.
pub fn file(s: &Stack, name: &str) -> Option<String> {
    let mut out = String::new();
    match name {
        "route" => out = super::forward::proc_route(s),
        "dev" => {
            out.push_str("Inter-|   Receive                                                |  Transmit\n");
            out.push_str(" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n");
            for i in &s.ifaces {
                let t = &i.port.stats;
                let _ = writeln!(
                    out,
                    "{:>6}:{:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>7} {:>10}",
                    i.name, t.rx_bytes, t.rx_packets, t.rx_errors, t.rx_dropped, 0, 0, 0, 0, t.tx_bytes, t.tx_packets, 0, 0, 0, 0, 0, 0
                );
            }
        }
        "tcp" | "tcp6" => {
            let v6 = name == "tcp6";
            out.push_str("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n");
            // A listener shows once, as Linux's one listening socket (its
            // listen queue's smoltcp sockets are not shown apart).
            let mut listeners = BTreeSet::new();
            let mut n = 0;
            for l in s.listeners.values() {
                let l = l.lep;
                if is_v6(l.addr) != v6 || !listeners.insert(hex(l.addr, l.port, v6)) {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{n:>4}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000     0        0 0",
                    hex(l.addr, l.port, v6),
                    hex(None, 0, v6),
                    tcp_state(State::Listen),
                    0,
                    0
                );
                n += 1;
            }
            for i in &s.ifaces {
                for (_, sock) in i.sockets.iter() {
                    let AnySock::Tcp(t) = sock else { continue };
                    let st = t.state();
                    let (local, remote) = match st {
                        State::Listen | State::Closed => continue,
                        _ => {
                            let l = t.local_endpoint();
                            if is_v6(l.map(|e| e.addr)) != v6 {
                                continue;
                            }
                            let r = t.remote_endpoint();
                            (hex(l.map(|e| e.addr), l.map_or(0, |e| e.port), v6), hex(r.map(|e| e.addr), r.map_or(0, |e| e.port), v6))
                        }
                    };
                    let _ = writeln!(
                        out,
                        "{n:>4}: {local} {remote} {:02X} {:08X}:{:08X} 00:00000000 00000000     0        0 0",
                        tcp_state(st),
                        t.send_queue(),
                        t.recv_queue()
                    );
                    n += 1;
                }
            }
        }
        "udp" | "udp6" => {
            let v6 = name == "udp6";
            out.push_str("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n");
            let mut seen = BTreeSet::new();
            let mut n = 0;
            for i in &s.ifaces {
                for (_, sock) in i.sockets.iter() {
                    let AnySock::Udp(u) = sock else { continue };
                    let e = u.endpoint();
                    if is_v6(e.addr) != v6 {
                        continue;
                    }
                    let local = hex(e.addr, e.port, v6);
                    // A wildcard socket has one smoltcp socket per interface: show it once.
                    if !seen.insert(local.clone()) {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "{n:>5}: {local} {} 07 {:08X}:{:08X} 00:00000000 00000000     0        0 0 2 0000000000000000 0",
                        hex(None, 0, v6),
                        u.send_queue(),
                        u.recv_queue()
                    );
                    n += 1;
                }
            }
        }
        _ => return None,
    }
    Some(out)
}
