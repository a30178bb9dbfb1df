//! The user-mode NAT driven from a "guest" smoltcp interface (10.0.2.15)
//! that talks to it through its `hal::NetDevice` side, against real host
//! sockets on the loopback. No guest kernel is involved.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use drivers::net::nat::{NatConfig, Proto, UserNat, GATEWAY_MAC, GUEST_MAC};
use drivers::net::HostLink;
use hal::NetDevice;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
    UdpRepr,
};

const GW: IpAddress = IpAddress::Ipv4(Ipv4Addr::new(10, 0, 2, 2));
const DNS: IpAddress = IpAddress::Ipv4(Ipv4Addr::new(10, 0, 2, 3));

/// The guest's NIC: smoltcp frames in and out of the NAT's NetDevice side.
struct Dev<'a>(&'a mut UserNat);

struct Rx(Vec<u8>);
impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a>(&'a mut UserNat);
impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.send(&buf);
        r
    }
}

impl phy::Device for Dev<'_> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let mut buf = vec![0u8; 1514];
        let n = self.0.recv(&mut buf)?;
        buf.truncate(n);
        Some((Rx(buf), Tx(self.0)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(self.0))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

struct Guest {
    nat: UserNat,
    iface: Interface,
    sockets: SocketSet<'static>,
    start: Instant,
}

impl Guest {
    fn new(cfg: NatConfig) -> Guest {
        let mut nat = UserNat::new(cfg).expect("start NAT");
        let start = Instant::now();
        let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        let mut iface = Interface::new(cfg, &mut Dev(&mut nat), smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24))
                .unwrap();
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Addr::new(10, 0, 2, 2))
            .unwrap();
        Guest {
            nat,
            iface,
            sockets: SocketSet::new(Vec::new()),
            start,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// One round: run the guest stack, then sleep until the NAT has a frame
    /// for us or a guest timer is due (at most 5 ms).
    fn step(&mut self) {
        let now = self.now();
        self.iface
            .poll(now, &mut Dev(&mut self.nat), &mut self.sockets);
        let delay = self
            .iface
            .poll_delay(self.now(), &self.sockets)
            .map_or(5, |d| d.total_millis().min(5)) as i32;
        let mut pfd = libc::pollfd {
            fd: self.nat.readiness_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, delay) };
    }

    /// Step until `cond` holds; false on timeout.
    fn until(&mut self, secs: u64, mut cond: impl FnMut(&mut Guest) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            self.step();
            if cond(self) {
                return true;
            }
        }
        false
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    fn new_tcp(&mut self) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        self.sockets.add(s)
    }

    fn connect(&mut self, dst: IpAddress, port: u16, local: u16) -> SocketHandle {
        let h = self.new_tcp();
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, (dst, port), local)
            .unwrap();
        h
    }

    /// Outcome of a connect: true once established, false once reset.
    fn connect_outcome(&mut self, h: SocketHandle) -> Option<bool> {
        let mut out = None;
        self.until(4, |g| {
            match g.tcp(h).state() {
                tcp::State::Established => out = Some(true),
                tcp::State::Closed => out = Some(false),
                _ => {}
            }
            out.is_some()
        });
        out
    }

    /// Read from a guest socket until `n` bytes came.
    fn read_exact(&mut self, h: SocketHandle, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        assert!(
            self.until(10, |g| {
                let s = g.tcp(h);
                while s.can_recv() {
                    s.recv(|b| {
                        got.extend_from_slice(b);
                        (b.len(), ())
                    })
                    .unwrap();
                }
                got.len() >= n
            }),
            "guest got {} of {n} bytes",
            got.len()
        );
        got
    }

    fn write_all(&mut self, h: SocketHandle, data: &[u8]) {
        let mut off = 0;
        assert!(self.until(10, |g| {
            let s = g.tcp(h);
            if s.can_send() {
                off += s.send_slice(&data[off..]).unwrap();
            }
            off == data.len()
        }));
    }
}

/// The default policy plus the host's whole loopback, which the tests'
/// servers listen on (the default reaches none of it).
fn loopback() -> NatConfig {
    NatConfig::parse("allow=tcp:127.0.0.1:*,allow=udp:127.0.0.1:*").unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn guest_tcp_to_gateway_reaches_host_loopback_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    const N: usize = 200_000;
    let host = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![0u8; N];
        s.read_exact(&mut got).unwrap();
        s.write_all(&pattern(N, 7)).unwrap();
        // Guest closes its side: we see EOF.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        (peer, got, rest.len())
    });
    let mut g = Guest::new(loopback());
    let h = g.connect(GW, port, 40000);
    assert_eq!(g.connect_outcome(h), Some(true));
    g.write_all(h, &pattern(N, 1));
    let back = g.read_exact(h, N);
    assert!(back == pattern(N, 7), "host->guest data differs");
    g.tcp(h).close();
    let (peer, got, rest) = {
        let mut r = None;
        let mut host = Some(host);
        assert!(g.until(10, |_| {
            if host.as_ref().unwrap().is_finished() {
                r = Some(host.take().unwrap().join().unwrap());
            }
            r.is_some()
        }));
        r.unwrap()
    };
    assert!(got == pattern(N, 1), "guest->host data differs");
    assert_eq!(rest, 0);
    // The host saw a connection from its own loopback, made by this process.
    assert!(peer.ip().is_loopback());
    assert!(g.nat.stats().tcp_connections >= 1);
}

#[test]
fn connection_to_closed_host_port_is_refused() {
    let port = free_port();
    let mut g = Guest::new(loopback());
    let h = g.connect(GW, port, 40001);
    assert_eq!(g.connect_outcome(h), Some(false));
    assert_eq!(g.nat.stats().tcp_refused, 1);
}

#[test]
fn restrict_blocks_everything_not_named() {
    // By default not even the host's loopback is reachable: databases and
    // admin ports listen there.
    let gw_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_port = gw_listener.local_addr().unwrap().port();
    let named = TcpListener::bind("127.0.0.1:0").unwrap();
    let named_port = named.local_addr().unwrap().port();
    // 127.0.0.2 is a host address that is not reached through 10.0.2.2.
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let other = IpAddress::v4(127, 0, 0, 2);

    let mut g = Guest::new(NatConfig::parse(&format!("allow=tcp:127.0.0.1:{named_port}")).unwrap());
    let h = g.connect(GW, gw_port, 40004);
    assert_eq!(g.connect_outcome(h), Some(false), "an unnamed loopback port must be refused");
    let h = g.connect(other, port, 40002);
    assert_eq!(g.connect_outcome(h), Some(false), "restrict=on must refuse");
    let h = g.connect(IpAddress::v4(192, 0, 2, 1), 80, 40003);
    assert_eq!(g.connect_outcome(h), Some(false), "restrict=on must refuse");
    assert!(g.nat.stats().dropped_policy >= 3);
    // The named port works, through the gateway address.
    let h = g.connect(GW, named_port, 40006);
    assert_eq!(g.connect_outcome(h), Some(true));
    gw_listener.set_nonblocking(true).unwrap();
    assert!(gw_listener.accept().is_err(), "the unnamed port saw a connection");
    drop(g);

    let mut g = Guest::new(NatConfig::parse("restrict=off").unwrap());
    let h = g.connect(other, port, 40005);
    assert_eq!(
        g.connect_outcome(h),
        Some(true),
        "restrict=off must connect"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok());
}

#[test]
fn connection_limit_refuses_extra_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut g = Guest::new(NatConfig {
        max_tcp: 2,
        ..loopback()
    });
    let a = g.connect(GW, port, 41000);
    assert_eq!(g.connect_outcome(a), Some(true));
    let b = g.connect(GW, port, 41001);
    assert_eq!(g.connect_outcome(b), Some(true));
    let c = g.connect(GW, port, 41002);
    assert_eq!(g.connect_outcome(c), Some(false));
}

#[test]
fn hostfwd_tcp_reaches_guest_listener() {
    let mut g = Guest::new(NatConfig::parse("hostfwd=tcp:127.0.0.1:0-:8080").unwrap());
    let (proto, addr) = g.nat.hostfwd_addrs()[0];
    assert_eq!(proto, Proto::Tcp);
    let h = g.new_tcp();
    g.tcp(h).listen(8080).unwrap();
    let host = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        // Half-close: the guest sees EOF and can still answer.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        (buf, rest)
    });
    assert_eq!(g.read_exact(h, 4), b"ping");
    // The connection comes from the gateway, as slirp does it.
    assert_eq!(g.tcp(h).remote_endpoint().unwrap().addr, GW);
    assert!(
        g.until(4, |g| g.tcp(h).state() == tcp::State::CloseWait),
        "host FIN not passed on"
    );
    g.write_all(h, b"pong");
    g.tcp(h).close();
    let mut host = Some(host);
    let mut r = None;
    assert!(g.until(10, |_| {
        if host.as_ref().unwrap().is_finished() {
            r = Some(host.take().unwrap().join().unwrap());
        }
        r.is_some()
    }));
    let (buf, rest) = r.unwrap();
    assert_eq!(&buf, b"pong");
    assert!(rest.is_empty());
}

/// More host clients than the connection limit: the extra ones wait in
/// the forwarded port's listen backlog and are served in turn, none reset.
#[test]
fn hostfwd_clients_past_the_limit_wait_their_turn() {
    let mut cfg = NatConfig::parse("hostfwd=tcp:127.0.0.1:0-:8080").unwrap();
    cfg.max_tcp = 2;
    let mut g = Guest::new(cfg);
    let addr = g.nat.hostfwd_addrs()[0].1;
    const CLIENTS: usize = 6;
    let host = std::thread::spawn(move || {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).map_err(|e| format!("client {i}: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
                    s.write_all(b"ping").map_err(|e| format!("client {i}: {e}"))?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).map_err(|e| format!("client {i}: {e}"))?;
                    Ok::<Vec<u8>, String>(answer)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>()
    });
    // As a guest stack's listener does, keep a socket listening for every
    // connection the NAT may have open (kernel-core keeps a pool): a SYN
    // with none free is refused, and the NAT resets that host client.
    let listen = |g: &mut Guest| {
        let h = g.new_tcp();
        g.tcp(h).listen(8080).unwrap();
        h
    };
    let mut listening: Vec<SocketHandle> = (0..2).map(|_| listen(&mut g)).collect();
    for _ in 0..CLIENTS {
        let mut first = None;
        assert!(g.until(10, |g| {
            first = listening.iter().position(|&h| g.tcp(h).recv_queue() >= 4);
            first.is_some()
        }), "no connection reached the guest");
        let h = listening.remove(first.unwrap());
        listening.push(listen(&mut g));
        assert_eq!(g.read_exact(h, 4), b"ping");
        g.write_all(h, b"pong");
        g.tcp(h).close();
        assert!(g.until(10, |g| matches!(g.tcp(h).state(), tcp::State::Closed | tcp::State::TimeWait)), "guest close did not finish");
    }
    let mut host = Some(host);
    let mut answers = None;
    assert!(g.until(20, |_| {
        if host.as_ref().unwrap().is_finished() {
            answers = Some(host.take().unwrap().join().unwrap());
        }
        answers.is_some()
    }));
    for a in answers.unwrap() {
        assert_eq!(a.as_deref(), Ok(&b"pong"[..]));
    }
}

/// A forwarded connection the guest refuses (nothing listens) is reset
/// towards the host client, not closed as if served.
#[test]
fn hostfwd_to_closed_guest_port_resets_host_connection() {
    let mut g = Guest::new(NatConfig::parse("hostfwd=tcp::0-:9").unwrap());
    let addr = g.nat.hostfwd_addrs()[0].1;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let mut got = None;
    assert!(g.until(4, |_| {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => got = Some(r.map_err(|e| e.kind())),
        }
        got.is_some()
    }));
    assert_eq!(got, Some(Err(std::io::ErrorKind::ConnectionReset)));
}

fn udp_socket(g: &mut Guest, port: u16) -> SocketHandle {
    let s = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    let h = g.sockets.add(s);
    g.sockets.get_mut::<udp::Socket>(h).bind(port).unwrap();
    h
}

fn udp_recv(g: &mut Guest, h: SocketHandle) -> Option<(Vec<u8>, IpEndpoint)> {
    udp_recv_within(g, h, 4)
}

fn udp_recv_within(g: &mut Guest, h: SocketHandle, secs: u64) -> Option<(Vec<u8>, IpEndpoint)> {
    let mut out = None;
    g.until(secs, |g| {
        if let Ok((d, meta)) = g.sockets.get_mut::<udp::Socket>(h).recv() {
            out = Some((d.to_vec(), meta.endpoint));
        }
        out.is_some()
    });
    out
}

fn spawn_udp_echo(sock: UdpSocket, prefix: &'static [u8]) -> std::thread::JoinHandle<SocketAddr> {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (n, peer) = sock.recv_from(&mut buf).unwrap();
        let mut reply = prefix.to_vec();
        reply.extend_from_slice(&buf[..n]);
        sock.send_to(&reply, peer).unwrap();
        peer
    })
}

#[test]
fn udp_echo_through_the_gateway() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let echo = spawn_udp_echo(host, b"echo:");
    let mut g = Guest::new(loopback());
    let h = udp_socket(&mut g, 5000);
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"hello", (GW, port))
        .unwrap();
    let (data, from) = udp_recv(&mut g, h).expect("no UDP reply");
    assert_eq!(data, b"echo:hello");
    assert_eq!(from, IpEndpoint::new(GW, port));
    assert!(echo.join().unwrap().ip().is_loopback());
    assert_eq!(g.nat.stats().udp_flows, 1);
}

#[test]
fn dns_is_forwarded_to_the_configured_resolver() {
    let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let raddr = resolver.local_addr().unwrap();
    let echo = spawn_udp_echo(resolver, b"answer:");
    let mut g = Guest::new(NatConfig::parse(&format!("dns={raddr}")).unwrap());
    let h = udp_socket(&mut g, 5353);
    // Only port 53 of the DNS address is served.
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"nope", (DNS, 54))
        .unwrap();
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"query", (DNS, 53))
        .unwrap();
    let (data, from) = udp_recv(&mut g, h).expect("no DNS reply");
    assert_eq!(data, b"answer:query");
    assert_eq!(from, IpEndpoint::new(DNS, 53));
    echo.join().unwrap();
    assert!(g.nat.stats().dropped_policy >= 1);
}

#[test]
fn udp_times_out_and_restrict_drops_udp() {
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let mut g = Guest::new(NatConfig::parse("udp_timeout=1,allow=udp:127.0.0.1:*").unwrap());
    let h = udp_socket(&mut g, 5001);
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"x", (IpAddress::v4(192, 0, 2, 1), 9))
        .unwrap();
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"y", (GW, port))
        .unwrap();
    host.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let mut got = None;
    assert!(g.until(4, |_| {
        got = host.recv_from(&mut buf).ok();
        got.is_some()
    }));
    let (n, peer) = got.unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(g.nat.stats().dropped_policy >= 1);
    // After the idle timeout the flow's host socket is closed: replies to
    // it are refused, so they never reach the guest.
    let flows_closed = Instant::now() + Duration::from_millis(2100);
    while Instant::now() < flows_closed {
        g.step();
    }
    assert!(host.send_to(b"late", peer).is_err() || udp_recv_within(&mut g, h, 1).is_none());
}

#[test]
fn hostfwd_udp_relays_both_ways() {
    let mut g = Guest::new(NatConfig::parse("hostfwd=udp:127.0.0.1:0-:6000").unwrap());
    let (proto, addr) = g.nat.hostfwd_addrs()[0];
    assert_eq!(proto, Proto::Udp);
    let h = udp_socket(&mut g, 6000);
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.send_to(b"to guest", addr).unwrap();
    let (data, from) = udp_recv(&mut g, h).expect("forwarded datagram");
    assert_eq!(data, b"to guest");
    assert_eq!(from.addr, GW);
    g.sockets
        .get_mut::<udp::Socket>(h)
        .send_slice(b"to host", from)
        .unwrap();
    host.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 32];
    let mut got = None;
    g.until(4, |_| {
        if let Ok(r) = host.recv_from(&mut buf) {
            got = Some(r);
        }
        got.is_some()
    });
    let (n, src) = got.expect("reply on the host");
    assert_eq!(&buf[..n], b"to host");
    assert_eq!(src, addr);
}

// ---- raw frames ----

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(GUEST_MAC),
        source_protocol_addr: Ipv4Addr::new(10, 0, 2, 15),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut f = vec![0u8; 14 + repr.buffer_len()];
    EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f));
    repr.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    f
}

fn ipv4_frame(
    dst: Ipv4Addr,
    proto: IpProtocol,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 2, 15),
        dst_addr: dst,
        next_header: proto,
        payload_len: len,
        hop_limit: 64,
    };
    let mut f = vec![0u8; 14 + 20 + len];
    EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress(GATEWAY_MAC),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f));
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut f[14..]),
        &ChecksumCapabilities::default(),
    );
    fill(&mut f[34..]);
    f
}

fn echo_request(dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x42,
        seq_no: seq,
        data: b"ping-data",
    };
    ipv4_frame(dst, IpProtocol::Icmp, repr.buffer_len(), |b| {
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(b),
            &ChecksumCapabilities::default(),
        )
    })
}

fn syn_frame(dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    ipv4_frame(dst, IpProtocol::Tcp, repr.buffer_len(), |b| {
        repr.emit(
            &mut TcpPacket::new_unchecked(b),
            &IpAddress::v4(10, 0, 2, 15),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::default(),
        )
    })
}

fn udp_frame(dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: 7777,
        dst_port: dport,
    };
    ipv4_frame(dst, IpProtocol::Udp, 8 + payload.len(), |b| {
        repr.emit(
            &mut UdpPacket::new_unchecked(b),
            &IpAddress::v4(10, 0, 2, 15),
            &IpAddress::Ipv4(dst),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        )
    })
}

/// Wait for the next frame the NAT sends to the guest.
fn next_frame(nat: &mut UserNat, within: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + within;
    let mut buf = vec![0u8; 1514];
    loop {
        if let Some(n) = nat.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut pfd = libc::pollfd {
            fd: nat.readiness_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
    }
}

fn drain(nat: &mut UserNat) {
    while next_frame(nat, Duration::from_millis(50)).is_some() {}
}

fn is_arp_reply_for(f: &[u8], ip: Ipv4Addr) -> bool {
    let eth = EthernetFrame::new_checked(f).unwrap();
    if eth.ethertype() != EthernetProtocol::Arp {
        return false;
    }
    matches!(
        ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()),
        Ok(ArpRepr::EthernetIpv4 { operation: ArpOperation::Reply, source_hardware_addr, source_protocol_addr, .. })
            if source_protocol_addr == ip && source_hardware_addr == EthernetAddress(GATEWAY_MAC)
    )
}

fn is_echo_reply(f: &[u8], from: Ipv4Addr, seq: u16) -> bool {
    let eth = EthernetFrame::new_checked(f).unwrap();
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.src_addr() != from || ip.next_header() != IpProtocol::Icmp {
        return false;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()),
        Ok(Icmpv4Repr::EchoReply { seq_no, data: b"ping-data", .. }) if seq_no == seq
    )
}

#[test]
fn arp_and_ping_for_gateway_and_dns_only() {
    let mut nat = UserNat::new(NatConfig::default()).unwrap();
    for ip in [Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 3)] {
        nat.send(&arp_request(ip));
        let f = next_frame(&mut nat, Duration::from_secs(2)).expect("ARP reply");
        assert!(is_arp_reply_for(&f, ip));
        nat.send(&echo_request(ip, 9));
        let f = next_frame(&mut nat, Duration::from_secs(2)).expect("echo reply");
        assert!(is_echo_reply(&f, ip, 9));
    }
    // Nobody else is on the link, and the guest's own address is not claimed.
    nat.send(&arp_request(Ipv4Addr::new(10, 0, 2, 4)));
    nat.send(&arp_request(Ipv4Addr::new(10, 0, 2, 15)));
    nat.send(&echo_request(Ipv4Addr::new(192, 0, 2, 1), 1));
    assert!(next_frame(&mut nat, Duration::from_millis(200)).is_none());
}

/// xorshift64*: deterministic noise, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzzed_frames_are_dropped_and_counted_never_fatal() {
    let mut nat = UserNat::new(NatConfig::default()).unwrap();
    let port = free_port();
    let gw = Ipv4Addr::new(10, 0, 2, 2);
    let seeds: Vec<Vec<u8>> = vec![
        arp_request(gw),
        echo_request(gw, 1),
        syn_frame(gw, 1234, port),
        syn_frame(Ipv4Addr::new(192, 0, 2, 1), 1235, 80),
        udp_frame(gw, port, b"datagram"),
        udp_frame(Ipv4Addr::new(10, 0, 2, 3), 53, b"dns?"),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let total = 6000;
    for i in 0..total {
        let frame: Vec<u8> = match i % 4 {
            // Pure noise, sometimes with a plausible Ethernet header.
            0 => {
                let mut f: Vec<u8> = (0..rng.below(1600)).map(|_| rng.next() as u8).collect();
                if f.len() >= 14 && rng.below(2) == 0 {
                    f[..6].copy_from_slice(&GATEWAY_MAC);
                    f[12..14].copy_from_slice(if rng.below(2) == 0 { &[8, 0] } else { &[8, 6] });
                }
                f
            }
            // A valid frame cut short.
            1 => {
                let s = &seeds[rng.below(seeds.len())];
                s[..rng.below(s.len())].to_vec()
            }
            // A valid frame with a flipped byte past the Ethernet header.
            2 => {
                let mut s = seeds[rng.below(seeds.len())].clone();
                let at = 14 + rng.below(s.len() - 14);
                s[at] ^= 1 << rng.below(8);
                s
            }
            // Oversize.
            _ => vec![0xab; 1515 + rng.below(9000)],
        };
        nat.send(&frame);
        if i % 256 == 0 {
            drain(&mut nat);
        }
    }
    drain(&mut nat);
    let st = nat.stats();
    let dropped = st.dropped_malformed
        + st.dropped_oversize
        + st.dropped_unsupported
        + st.dropped_policy
        + st.dropped_queue_full;
    assert!(st.dropped_oversize >= (total / 4) as u64, "{st:?}");
    assert!(st.dropped_malformed >= (total / 4) as u64, "{st:?}");
    assert!(dropped >= (total / 2) as u64, "{st:?}");
    // The NAT thread survived: it still answers.
    nat.send(&arp_request(gw));
    let f = next_frame(&mut nat, Duration::from_secs(2)).expect("NAT died");
    assert!(is_arp_reply_for(&f, gw));
}

#[test]
fn guest_flood_is_bounded() {
    let mut nat = UserNat::new(NatConfig::default()).unwrap();
    // The guest never reads: the queue towards it stays bounded.
    for _ in 0..5000 {
        nat.send(&echo_request(Ipv4Addr::new(10, 0, 2, 2), 1));
    }
    std::thread::sleep(Duration::from_millis(300));
    let st = nat.stats();
    assert!(st.dropped_queue_full > 0, "{st:?}");
    let mut n = 0;
    let mut buf = vec![0u8; 1514];
    while nat.recv(&mut buf).is_some() {
        n += 1;
    }
    assert!(n <= 512, "{n} frames queued");
    // Readiness follows the queue: not readable once drained.
    let mut pfd = libc::pollfd {
        fd: nat.readiness_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
}

#[test]
fn dropping_the_nat_closes_host_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut g = Guest::new(NatConfig::parse(&format!("hostfwd=tcp::0-:8080,allow=tcp:127.0.0.1:{port}")).unwrap());
    let fwd = g.nat.hostfwd_addrs()[0].1;
    let h = g.connect(GW, port, 42000);
    assert_eq!(g.connect_outcome(h), Some(true));
    let (mut host_side, _) = listener.accept().unwrap();
    drop(g);
    host_side
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 8];
    match host_side.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The forwarded port's listener is gone too.
    assert!(TcpStream::connect(fwd).is_err());
    let _ = host_side.as_raw_fd();
}

#[test]
fn dhcp_hands_out_the_guest_address() {
    use smoltcp::socket::dhcpv4;
    let mut nat = UserNat::new(NatConfig::default()).unwrap();
    let start = Instant::now();
    let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
    let mut iface = Interface::new(cfg, &mut Dev(&mut nat), smoltcp::time::Instant::ZERO);
    let mut sockets = SocketSet::new(Vec::new());
    let h = sockets.add(dhcpv4::Socket::new());
    let end = start + Duration::from_secs(4);
    let mut config = None;
    while Instant::now() < end && config.is_none() {
        let now = smoltcp::time::Instant::from_micros(start.elapsed().as_micros() as i64);
        iface.poll(now, &mut Dev(&mut nat), &mut sockets);
        if let Some(dhcpv4::Event::Configured(c)) = sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            config = Some((c.address, c.router, c.dns_servers.to_vec()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (address, router, dns) = config.expect("no DHCP lease");
    assert_eq!(
        address,
        smoltcp::wire::Ipv4Cidr::new(Ipv4Addr::new(10, 0, 2, 15), 24)
    );
    assert_eq!(router, Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(dns, [Ipv4Addr::new(10, 0, 2, 3)]);
}

#[test]
fn dns_over_tcp_is_forwarded_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let raddr = listener.local_addr().unwrap();
    let host = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"tcp-answer").unwrap();
    });
    let mut g = Guest::new(NatConfig::parse(&format!("dns={raddr}")).unwrap());
    let h = g.connect(DNS, 53, 43000);
    assert_eq!(g.connect_outcome(h), Some(true));
    assert_eq!(g.read_exact(h, 10), b"tcp-answer");
    host.join().unwrap();
    // Other ports of the DNS address are closed.
    let h = g.connect(DNS, 80, 43001);
    assert_eq!(g.connect_outcome(h), Some(false));
}

#[test]
fn hostfwd_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = UserNat::new(NatConfig::parse(&format!("hostfwd=tcp::{port}-:80")).unwrap())
        .err()
        .expect("bind must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string()
            .contains(&format!("hostfwd tcp 127.0.0.1:{port}")),
        "{err}"
    );
}
