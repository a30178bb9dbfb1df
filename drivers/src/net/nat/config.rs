//! The NAT's configuration and its `--net user,...` option parser.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{GUEST_IP, GUEST_MAC};

/// Transport protocol of a port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP: the host listens, each accepted connection is connected into the guest.
    Tcp,
    /// UDP: datagrams to the host port are relayed to the guest port, and the
    /// guest's replies back to whichever host peer sent them.
    Udp,
}

/// One `hostfwd` rule: the host listens on `host` and forwards into the
/// guest's `guest_port` at 10.0.2.15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwd {
    /// TCP or UDP.
    pub proto: Proto,
    /// Where the host side listens. Port 0 picks a free port (see
    /// [`super::UserNat::hostfwd_addrs`]).
    pub host: SocketAddrV4,
    /// The guest port connections are forwarded to.
    pub guest_port: u16,
}

/// One `allow` rule: a host destination the guest may reach although
/// [`NatConfig::restrict`] is on. The host's loopback is reached from the
/// guest as 10.0.2.2, so `allow=tcp:127.0.0.1:5432` opens 10.0.2.2:5432.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    /// TCP or UDP.
    pub proto: Proto,
    /// The host address (127.0.0.1 for the host's loopback).
    pub addr: Ipv4Addr,
    /// The port; `None` (written `*`) is every port.
    pub port: Option<u16>,
}

/// Configuration of a [`super::UserNat`].
///
/// Build it by hand or with [`NatConfig::parse`]; [`NatConfig::default`] is a
/// restricted NAT with no forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Host ports forwarded into the guest.
    pub hostfwd: Vec<HostFwd>,
    /// When true (the default) the guest reaches only the DNS forwarder
    /// (10.0.2.3:53) and what [`NatConfig::allow`] names: not even the
    /// host's loopback, where databases and admin ports listen. When false
    /// any IPv4 destination is reachable through host sockets, the host's
    /// loopback as 10.0.2.2.
    pub restrict: bool,
    /// Destinations reachable although `restrict` is on.
    pub allow: Vec<Allow>,
    /// Where DNS queries to 10.0.2.3:53 go. `None`: the first IPv4
    /// `nameserver` of the host's `/etc/resolv.conf`, or 127.0.0.1:53.
    pub dns_server: Option<SocketAddr>,
    /// The guest interface's MAC address ([`hal::NetDevice::mac`]).
    pub guest_mac: [u8; 6],
    /// A UDP flow (or UDP port-forward session) idle this long is closed.
    pub udp_timeout: Duration,
    /// At most this many TCP connections (guest-initiated plus forwarded)
    /// at once; further SYNs are answered with RST, further host connections
    /// to a forwarded port wait in its listen backlog until one closes.
    pub max_tcp: usize,
    /// At most this many UDP flows at once; datagrams of further flows are dropped.
    pub max_udp: usize,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            hostfwd: Vec::new(),
            restrict: true,
            allow: Vec::new(),
            dns_server: None,
            guest_mac: GUEST_MAC,
            udp_timeout: Duration::from_secs(60),
            max_tcp: 256,
            max_udp: 256,
        }
    }
}

/// Why a `--net user,...` option string was rejected; its `Display` is a
/// message fit for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(msg: String) -> Result<T, ParseError> {
    Err(ParseError(msg))
}

impl NatConfig {
    /// Parse the comma-separated options of `--net user,OPTIONS` (a leading
    /// `user` item is accepted and ignored). Options:
    ///
    /// - `hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`, any
    ///   number of times. The protocol defaults to tcp. An empty HOSTADDR
    ///   means 127.0.0.1 (unlike QEMU, a forward is exposed beyond the host
    ///   only when asked, e.g. `0.0.0.0`). GUESTADDR may be empty or 10.0.2.15.
    /// - `restrict=on|off` (also yes/no, true/false, 1/0): whether only the
    ///   DNS forwarder and the `allow` rules are reachable (default on).
    /// - `allow=[tcp|udp:]ADDR:PORT`, any number of times: a host
    ///   destination reachable under `restrict` (PORT `*`: every port). The
    ///   host's loopback, `127.0.0.1`, is 10.0.2.2 for the guest.
    /// - `dns=IP[:PORT]`: the resolver DNS queries to 10.0.2.3 are forwarded
    ///   to (default: from /etc/resolv.conf).
    /// - `mac=XX:XX:XX:XX:XX:XX`: the guest interface's MAC address.
    /// - `udp_timeout=SECONDS`, `max_tcp=N`, `max_udp=N`: limits.
    ///
    /// ```
    /// use drivers::net::nat::{NatConfig, Proto};
    /// let c = NatConfig::parse("hostfwd=tcp:127.0.0.1:8080-:80,restrict=off").unwrap();
    /// assert_eq!(c.hostfwd[0].proto, Proto::Tcp);
    /// assert_eq!(c.hostfwd[0].host.port(), 8080);
    /// assert_eq!(c.hostfwd[0].guest_port, 80);
    /// assert!(!c.restrict);
    /// assert!(NatConfig::parse("hostfwd=tcp:8080-80").is_err());
    /// ```
    pub fn parse(options: &str) -> Result<NatConfig, ParseError> {
        let mut cfg = NatConfig::default();
        for (i, item) in options.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() || (i == 0 && item == "user") {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return err(format!(
                    "net user: option `{item}` needs a value (KEY=VALUE)"
                ));
            };
            match key {
                "hostfwd" => cfg.hostfwd.push(parse_hostfwd(value)?),
                "allow" => cfg.allow.push(parse_allow(value)?),
                "restrict" => {
                    cfg.restrict = match value {
                        "on" | "yes" | "true" | "1" => true,
                        "off" | "no" | "false" | "0" => false,
                        _ => return err(format!("net user: restrict={value}: expected on or off")),
                    }
                }
                "dns" => {
                    let addr = if let Ok(ip) = value.parse::<Ipv4Addr>() {
                        SocketAddr::V4(SocketAddrV4::new(ip, 53))
                    } else if let Ok(sa) = value.parse::<SocketAddr>() {
                        sa
                    } else {
                        return err(format!("net user: dns={value}: expected IP or IP:PORT"));
                    };
                    cfg.dns_server = Some(addr);
                }
                "mac" => cfg.guest_mac = parse_mac(value)?,
                "udp_timeout" => {
                    let s: u64 = parse_num(key, value)?;
                    if s == 0 {
                        return err("net user: udp_timeout must be at least 1 second".into());
                    }
                    cfg.udp_timeout = Duration::from_secs(s);
                }
                "max_tcp" => cfg.max_tcp = parse_num(key, value)?,
                "max_udp" => cfg.max_udp = parse_num(key, value)?,
                _ => {
                    return err(format!(
                        "net user: unknown option `{key}` (known: hostfwd, allow, restrict, dns, mac, \
                         udp_timeout, max_tcp, max_udp)"
                    ))
                }
            }
        }
        Ok(cfg)
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ParseError> {
    value
        .parse()
        .or_else(|_| err(format!("net user: {key}={value}: expected a number")))
}

fn parse_mac(value: &str) -> Result<[u8; 6], ParseError> {
    let bad = || {
        ParseError(format!(
            "net user: mac={value}: expected six hex bytes like 52:54:00:12:34:56"
        ))
    };
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    // A multicast or all-zero MAC cannot be an interface's own address.
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return err(format!("net user: mac={value}: not a unicast address"));
    }
    Ok(mac)
}

impl NatConfig {
    /// Whether a flow to the host's `addr:port` is allowed.
    pub fn allows(&self, proto: Proto, addr: Ipv4Addr, port: u16) -> bool {
        !self.restrict
            || self
                .allow
                .iter()
                .any(|a| a.proto == proto && a.addr == addr && a.port.is_none_or(|p| p == port))
    }
}

fn parse_allow(value: &str) -> Result<Allow, ParseError> {
    let usage = "expected [tcp|udp:]ADDR:PORT, e.g. tcp:127.0.0.1:5432 (PORT * for every port)";
    let (proto, rest) = match value.split_once(':') {
        Some(("tcp", rest)) => (Proto::Tcp, rest),
        Some(("udp", rest)) => (Proto::Udp, rest),
        _ => (Proto::Tcp, value),
    };
    let Some((addr, port)) = rest.rsplit_once(':') else {
        return err(format!("net user: allow={value}: {usage}"));
    };
    let addr: Ipv4Addr = addr
        .parse()
        .or_else(|_| err(format!("net user: allow={value}: `{addr}` is not an IPv4 address; {usage}")))?;
    let port = match port {
        "*" => None,
        p => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
            ParseError(format!("net user: allow={value}: `{p}` is not a port number; {usage}"))
        })?),
    };
    Ok(Allow { proto, addr, port })
}

fn parse_hostfwd(value: &str) -> Result<HostFwd, ParseError> {
    let usage = "expected [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT";
    let (proto, rest) = match value.split_once(':') {
        Some(("tcp", rest)) => (Proto::Tcp, rest),
        Some(("udp", rest)) => (Proto::Udp, rest),
        Some(("", rest)) => (Proto::Tcp, rest),
        _ => (Proto::Tcp, value),
    };
    let Some((host, guest)) = rest.split_once('-') else {
        return err(format!("net user: hostfwd={value}: {usage}"));
    };
    let Some((haddr, hport)) = host.rsplit_once(':') else {
        return err(format!(
            "net user: hostfwd={value}: host side `{host}`: {usage}"
        ));
    };
    let Some((gaddr, gport)) = guest.rsplit_once(':') else {
        return err(format!(
            "net user: hostfwd={value}: guest side `{guest}`: {usage}"
        ));
    };
    let haddr = if haddr.is_empty() {
        Ipv4Addr::LOCALHOST
    } else {
        haddr.parse().or_else(|_| {
            err(format!(
                "net user: hostfwd={value}: host address `{haddr}` is not an IPv4 address"
            ))
        })?
    };
    let hport: u16 = hport.parse().or_else(|_| {
        err(format!(
            "net user: hostfwd={value}: host port `{hport}` is not a port number"
        ))
    })?;
    if !gaddr.is_empty() {
        let g: Ipv4Addr = gaddr.parse().or_else(|_| {
            err(format!(
                "net user: hostfwd={value}: guest address `{gaddr}` is not an IPv4 address"
            ))
        })?;
        if g != GUEST_IP {
            return err(format!(
                "net user: hostfwd={value}: the guest is {GUEST_IP}, not {g}"
            ));
        }
    }
    let gport: u16 = gport.parse().or_else(|_| {
        err(format!(
            "net user: hostfwd={value}: guest port `{gport}` is not a port number"
        ))
    })?;
    if gport == 0 {
        return err(format!(
            "net user: hostfwd={value}: guest port 0 is not a port"
        ));
    }
    Ok(HostFwd {
        proto,
        host: SocketAddrV4::new(haddr, hport),
        guest_port: gport,
    })
}

/// The first IPv4 `nameserver` of a resolv.conf text.
pub(crate) fn resolv_conf_nameserver(text: &str) -> Option<Ipv4Addr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "nameserver" {
            return None;
        }
        words.next()?.parse::<Ipv4Addr>().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let c = NatConfig::parse("user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-10.0.2.15:53,restrict=off,dns=192.0.2.53:5300")
            .unwrap();
        assert_eq!(c.hostfwd.len(), 2);
        assert_eq!(
            c.hostfwd[1],
            HostFwd {
                proto: Proto::Udp,
                host: "127.0.0.1:5353".parse().unwrap(),
                guest_port: 53
            }
        );
        assert!(!c.restrict);
        assert_eq!(c.dns_server, Some("192.0.2.53:5300".parse().unwrap()));
        let c = NatConfig::parse("hostfwd=:0.0.0.0:2222-:22,mac=52:54:00:aa:bb:cc").unwrap();
        assert_eq!(c.hostfwd[0].host, "0.0.0.0:2222".parse().unwrap());
        assert_eq!(c.guest_mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
        assert!(NatConfig::parse("").unwrap().restrict);
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for (bad, needle) in [
            ("hostfwd=tcp:8080-80", "host side"),
            ("hostfwd=tcp::80808-:80", "host port"),
            ("hostfwd=tcp::8080-10.0.2.16:80", "the guest is"),
            ("hostfwd=tcp::8080-:0", "guest port 0"),
            ("hostfwd=tcp:localhost:8080-:80", "not an IPv4"),
            ("hostfwd=tcp::8080", "expected"),
            ("restrict=maybe", "on or off"),
            ("bogus=1", "unknown option"),
            ("restrict", "needs a value"),
            ("mac=01:00:00:00:00:01", "unicast"),
            ("mac=zz", "six hex"),
            ("dns=resolver", "IP or IP:PORT"),
            ("max_tcp=-1", "number"),
        ] {
            let e = NatConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn reads_resolv_conf() {
        let t = "# c\nsearch x\nnameserver ::1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        assert_eq!(resolv_conf_nameserver(t), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(resolv_conf_nameserver("nameserver"), None);
    }
}
