//! The NAT thread: guest frames in, host sockets out, and back.
//!
//! ARP, ICMP echo and UDP are handled here directly; guest TCP segments go
//! to a smoltcp interface on the NAT's side of the link, in any-IP mode so it
//! terminates connections to whatever address the guest dialled. A guest SYN
//! for a new connection is held while the host connect runs: on success a
//! smoltcp socket listening on exactly that (address, port) is created and
//! the SYN replayed into it; on failure the SYN is replayed with no socket
//! listening, and smoltcp answers RST.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpOpCode, DhcpOption, DhcpPacket,
    DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
    UdpPacket, UdpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT,
};

use super::broker::Opener;
use super::fragment::{self, Reassembly, Refused};
use super::sys;
use super::{
    NatConfig, Proto, Shared, Stat, DNS_IP, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, PREFIX_LEN,
};

/// Guest frames handled per loop turn, so host sockets are served between bursts.
const FRAMES_PER_TURN: usize = 256;
/// How long a guest SYN waits for the host connect before it is refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The listen backlog of a `hostfwd` port (the host's `somaxconn` caps it).
const HOSTFWD_BACKLOG: i32 = 4096;
/// smoltcp buffer sizes of one proxied connection. The receive side stays
/// below 64 KiB so no window scaling is negotiated: with a scaled window
/// smoltcp's rounding can move the advertised right edge back a few bytes,
/// which strands data until the 1 s retransmit timer (see the guest stack's
/// `MAX_RCV` in kernel-core's inet/tcp.rs).
const TCP_RX_BUFFER: usize = 65535;
/// See [`TCP_RX_BUFFER`]; the send side may be larger.
const TCP_TX_BUFFER: usize = 64 * 1024;
/// Datagrams taken from one host UDP socket per loop turn.
const DATAGRAMS_PER_TURN: usize = 64;
/// Local ports the gateway uses for forwarded connections.
const FWD_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// (guest port, address the guest talks to, port the guest talks to).
type Key = (u16, Ipv4Addr, u16);

enum Phase {
    /// Host connect in progress; the guest's SYN waits here.
    Connecting { syn: Vec<u8>, deadline: Instant },
    /// Proxying through this smoltcp socket.
    Open(SocketHandle),
}

struct TcpConn {
    key: Key,
    host: TcpStream,
    phase: Phase,
    /// The host side sent FIN (read returned 0) or failed.
    host_eof: bool,
    /// The guest's FIN was passed on (host write side shut).
    host_wr_shut: bool,
    /// Writing to the host failed: nothing more can be delivered.
    host_broken: bool,
    /// poll reported HUP/ERR: leave the fd out of poll unless data must move,
    /// or it would wake the loop forever.
    hup: bool,
    /// The smoltcp socket was aborted this turn: keep it until the
    /// interface has sent the guest its RST (removing it at once would
    /// lose the reset, and a guest blocked in recv would wait for ever).
    rst_pending: bool,
    /// The guest's side took the connection (always, for those the guest
    /// opened). A forwarded one it refuses is reset towards the host
    /// client, as close to a refused connect as an accepted socket allows.
    guest_answered: bool,
}

struct UdpFlow {
    sock: UdpSocket,
    last: Instant,
}

struct UdpFwdSession {
    gw_port: u16,
    last: Instant,
}

struct UdpForward {
    sock: UdpSocket,
    guest_port: u16,
    sessions: HashMap<SocketAddr, UdpFwdSession>,
}

pub(crate) struct Engine {
    cfg: NatConfig,
    /// Makes the host sockets of guest flows (here, or by the broker).
    opener: Opener,
    shared: Arc<Shared>,
    start: Instant,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// IP packets (TCP) waiting to be fed to smoltcp.
    ingress: VecDeque<Vec<u8>>,
    /// smoltcp wanted to send but the guest queue was full.
    tx_blocked: bool,
    guest_mac: EthernetAddress,
    dns: SocketAddr,
    tcp_fwds: Vec<(TcpListener, u16)>,
    /// accept() failed for lack of resources: retry after this.
    accept_paused: Option<Instant>,
    udp_fwds: Vec<UdpForward>,
    /// gateway port -> (index into udp_fwds, host peer).
    udp_fwd_ports: HashMap<u16, (usize, SocketAddr)>,
    conns: HashMap<u64, TcpConn>,
    by_key: HashMap<Key, u64>,
    next_id: u64,
    flows: HashMap<Key, UdpFlow>,
    next_gw_port: u16,
    hostfwd_addrs: Vec<(Proto, SocketAddr)>,
    buf: Vec<u8>,
    /// A reset is on its way to the guest: run another turn at once to
    /// drop its connection (see `TcpConn::rst_pending`).
    rst_flush: bool,
    /// When the guest was last told the gateway's MAC (see `announce_gateway`).
    announced: Option<Instant>,
    /// Datagrams the guest sent in fragments.
    reassembly: Reassembly,
}

/// The smoltcp side of the link: IP packets (medium IP), wrapped in
/// Ethernet towards the guest.
struct Link<'a> {
    ingress: &'a mut VecDeque<Vec<u8>>,
    shared: &'a Shared,
    guest_mac: EthernetAddress,
    tx_blocked: &'a mut bool,
}

struct RxTok(Vec<u8>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxTok<'a> {
    shared: &'a Shared,
    guest_mac: EthernetAddress,
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; 14 + len];
        eth_header(&mut frame, self.guest_mac, EthernetProtocol::Ipv4);
        let r = f(&mut frame[14..]);
        self.shared.push_to_guest(frame);
        r
    }
}

impl phy::Device for Link<'_> {
    type RxToken<'b>
        = RxTok
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b>
    where
        Self: 'b;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.ingress.pop_front()?;
        Some((
            RxTok(p),
            TxTok {
                shared: self.shared,
                guest_mac: self.guest_mac,
            },
        ))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        if !self.shared.guest_queue_has_room() {
            *self.tx_blocked = true;
            return None;
        }
        Some(TxTok {
            shared: self.shared,
            guest_mac: self.guest_mac,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

fn eth_header(frame: &mut [u8], dst: EthernetAddress, ethertype: EthernetProtocol) {
    EthernetRepr {
        src_addr: EthernetAddress(GATEWAY_MAC),
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(frame));
}

fn to_smol_instant(start: Instant, now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.duration_since(start).as_micros() as i64)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.octets()[0] == 0)
}

fn in_nat_net(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> (32 - PREFIX_LEN) == u32::from(GATEWAY_IP) >> (32 - PREFIX_LEN)
}

impl Engine {
    pub(crate) fn new(cfg: NatConfig, shared: Arc<Shared>, opener: Opener) -> io::Result<Engine> {
        let mut tcp_fwds = Vec::new();
        let mut udp_fwds = Vec::new();
        let mut hostfwd_addrs = Vec::new();
        for f in &cfg.hostfwd {
            match f.proto {
                Proto::Tcp => {
                    let l = TcpListener::bind(f.host).map_err(|e| {
                        io::Error::new(e.kind(), format!("hostfwd tcp {}: {e}", f.host))
                    })?;
                    l.set_nonblocking(true)?;
                    // std listens with a backlog of 128: a burst of clients
                    // (ab -c 500) overflows it and some see resets. Linux
                    // lets a listening socket's backlog be raised in place.
                    // SAFETY: listen(2) on a socket this listener owns.
                    unsafe { libc::listen(l.as_raw_fd(), HOSTFWD_BACKLOG) };
                    hostfwd_addrs.push((Proto::Tcp, l.local_addr()?));
                    tcp_fwds.push((l, f.guest_port));
                }
                Proto::Udp => {
                    let s = UdpSocket::bind(f.host).map_err(|e| {
                        io::Error::new(e.kind(), format!("hostfwd udp {}: {e}", f.host))
                    })?;
                    s.set_nonblocking(true)?;
                    hostfwd_addrs.push((Proto::Udp, s.local_addr()?));
                    udp_fwds.push(UdpForward {
                        sock: s,
                        guest_port: f.guest_port,
                        sessions: HashMap::new(),
                    });
                }
            }
        }
        let dns = super::broker::dns_target(&cfg);
        let start = Instant::now();
        let mut ingress = VecDeque::new();
        let mut tx_blocked = false;
        let guest_mac = EthernetAddress(cfg.guest_mac);
        let mut link = Link {
            ingress: &mut ingress,
            shared: &shared,
            guest_mac,
            tx_blocked: &mut tx_blocked,
        };
        let mut config = Config::new(HardwareAddress::Ip);
        // The seed picks initial sequence numbers; it need not be secret,
        // only differ between runs.
        config.random_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        let mut iface = Interface::new(config, &mut link, to_smol_instant(start, start));
        iface.update_ip_addrs(|a| {
            for ip in [GATEWAY_IP, DNS_IP] {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), PREFIX_LEN));
            }
        });
        // Terminate TCP for any destination the guest dials.
        iface.set_any_ip(true);
        Ok(Engine {
            cfg,
            opener,
            shared,
            start,
            iface,
            sockets: SocketSet::new(Vec::new()),
            ingress,
            tx_blocked,
            guest_mac,
            dns,
            tcp_fwds,
            accept_paused: None,
            udp_fwds,
            udp_fwd_ports: HashMap::new(),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            flows: HashMap::new(),
            next_gw_port: *FWD_PORTS.start(),
            hostfwd_addrs,
            buf: vec![0u8; 65536],
            rst_flush: false,
            announced: None,
            reassembly: Reassembly::default(),
        })
    }

    pub(crate) fn hostfwd_addrs(&self) -> Vec<(Proto, SocketAddr)> {
        self.hostfwd_addrs.clone()
    }

    /// The thread body: until the device side is dropped.
    pub(crate) fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut fd_conns: Vec<u64> = Vec::new();
        loop {
            if self.shared.stopping() {
                break;
            }
            self.shared.clear_wake();
            let frames = self.shared.take_from_guest(FRAMES_PER_TURN);
            let busy = frames.len() == FRAMES_PER_TURN;
            for f in &frames {
                self.guest_frame(f);
            }
            self.poll_iface();
            self.accept_forwards();
            self.service_conns();
            self.poll_iface();
            self.service_udp();
            self.expire_udp();

            // Sleep until a guest frame, a host socket or a timer needs us.
            fds.clear();
            fd_conns.clear();
            let pfd = |fd, events| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            fds.push(pfd(self.shared.wake_fd(), libc::POLLIN));
            // At the connection limit, host clients wait in the listen
            // backlog (as at a busy server) until one of ours closes.
            if self.accept_paused.is_none() && self.conns.len() < self.cfg.max_tcp {
                for (l, _) in &self.tcp_fwds {
                    fds.push(pfd(l.as_raw_fd(), libc::POLLIN));
                }
            }
            for f in &self.udp_fwds {
                fds.push(pfd(f.sock.as_raw_fd(), libc::POLLIN));
            }
            for f in self.flows.values() {
                fds.push(pfd(f.sock.as_raw_fd(), libc::POLLIN));
            }
            let first_conn = fds.len();
            let now = Instant::now();
            let mut deadline: Option<Instant> = None;
            let mut earliest = |t: Instant| {
                deadline = Some(deadline.map_or(t, |d: Instant| d.min(t)));
            };
            for (&id, c) in &self.conns {
                let events = match &c.phase {
                    Phase::Connecting { deadline, .. } => {
                        earliest(*deadline);
                        libc::POLLOUT
                    }
                    Phase::Open(h) => {
                        let s = self.sockets.get::<tcp::Socket>(*h);
                        let mut ev = 0;
                        if !c.host_eof && s.can_send() {
                            ev |= libc::POLLIN;
                        }
                        if s.can_recv() && !c.host_broken {
                            ev |= libc::POLLOUT;
                        }
                        ev
                    }
                };
                if events == 0 && c.hup {
                    continue;
                }
                fds.push(pfd(c.host.as_raw_fd(), events));
                fd_conns.push(id);
            }
            if let Some(t) = self.accept_paused {
                earliest(t);
            }
            for f in self.flows.values() {
                earliest(f.last + self.cfg.udp_timeout);
            }
            for f in &self.udp_fwds {
                for s in f.sessions.values() {
                    earliest(s.last + self.cfg.udp_timeout);
                }
            }
            let mut timeout = deadline.map(|d| d.saturating_duration_since(now));
            let sn = to_smol_instant(self.start, now);
            if let Some(d) = self.iface.poll_delay(sn, &self.sockets) {
                let d = Duration::from_micros(d.total_micros());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if self.tx_blocked {
                // The guest is not draining its queue: retry later, not in a spin.
                timeout = Some(timeout.map_or(Duration::from_millis(5), |t| {
                    t.max(Duration::from_millis(5))
                }));
                self.tx_blocked = false;
            } else if let Some(t) = timeout {
                timeout = Some(t.max(Duration::from_millis(1)));
            }
            if busy || std::mem::take(&mut self.rst_flush) {
                timeout = Some(Duration::ZERO);
            }
            if sys::poll(&mut fds, timeout).is_err() {
                // Cannot wait (EINVAL/ENOMEM): degrade to a slow loop.
                std::thread::sleep(Duration::from_millis(10));
            }
            for (pfd, id) in fds[first_conn..].iter().zip(&fd_conns) {
                if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.hup = true;
                    }
                }
            }
        }
        // Dropping self closes every host socket.
    }

    fn now_smol(&self) -> smoltcp::time::Instant {
        to_smol_instant(self.start, Instant::now())
    }

    fn poll_iface(&mut self) {
        let now = self.now_smol();
        let mut link = Link {
            ingress: &mut self.ingress,
            shared: &self.shared,
            guest_mac: self.guest_mac,
            tx_blocked: &mut self.tx_blocked,
        };
        self.iface.poll(now, &mut link, &mut self.sockets);
        // Packets smoltcp could not take (it always drains) must not pile up.
        self.ingress.clear();
    }

    fn drop_frame(&self, s: Stat) {
        self.shared.stats.bump(s);
    }

    // ---- guest -> NAT ----

    fn guest_frame(&mut self, f: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(f) else {
            return self.drop_frame(Stat::Malformed);
        };
        let dst = eth.dst_addr();
        if dst != EthernetAddress(GATEWAY_MAC) && !dst.is_broadcast() {
            return self.drop_frame(Stat::Unsupported);
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.guest_arp(eth.payload()),
            EthernetProtocol::Ipv4 => self.guest_ipv4(eth.payload()),
            _ => self.drop_frame(Stat::Unsupported),
        }
    }

    fn guest_arp(&mut self, p: &[u8]) {
        let Ok(Ok(repr)) = ArpPacket::new_checked(p).map(|p| ArpRepr::parse(&p)) else {
            return self.drop_frame(Stat::Malformed);
        };
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = repr
        else {
            return self.drop_frame(Stat::Unsupported);
        };
        if operation != ArpOperation::Request
            || !(target_protocol_addr == GATEWAY_IP || target_protocol_addr == DNS_IP)
            || !source_hardware_addr.is_unicast()
        {
            // Replies, and requests for addresses nobody here owns: ignored.
            return;
        }
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(GATEWAY_MAC),
            source_protocol_addr: target_protocol_addr,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let mut frame = vec![0u8; 14 + reply.buffer_len()];
        eth_header(&mut frame, source_hardware_addr, EthernetProtocol::Arp);
        reply.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
        self.shared.push_to_guest(frame);
    }

    /// Before a forwarded connection or datagram starts towards the guest,
    /// an ARP request from the gateway for the guest's address, so that the
    /// guest's stack knows the gateway's MAC when it answers: otherwise its
    /// first answer (a reset from a closed port, say) waits for its own ARP
    /// and is lost, and the client sees it only at the SYN's retransmission,
    /// a second later. Repeated at most every 20 s (a neighbour entry lives
    /// a minute).
    fn announce_gateway(&mut self) {
        let now = Instant::now();
        if self.announced.is_some_and(|t| now.duration_since(t) < Duration::from_secs(20)) {
            return;
        }
        self.announced = Some(now);
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(GATEWAY_MAC),
            source_protocol_addr: GATEWAY_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: GUEST_IP,
        };
        let mut frame = vec![0u8; 14 + req.buffer_len()];
        eth_header(&mut frame, self.guest_mac, EthernetProtocol::Arp);
        req.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
        self.shared.push_to_guest(frame);
    }

    fn guest_ipv4(&mut self, p: &[u8]) {
        let Ok(pkt) = Ipv4Packet::new_checked(p) else {
            return self.drop_frame(Stat::Malformed);
        };
        if pkt.version() != 4 || !pkt.verify_checksum() {
            return self.drop_frame(Stat::Malformed);
        }
        let caps = ChecksumCapabilities::default();
        let Ok(ip) = Ipv4Repr::parse(&pkt, &caps) else {
            return self.drop_frame(Stat::Malformed);
        };
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr), IpAddress::Ipv4(ip.dst_addr));
        let whole;
        let payload = if pkt.more_frags() || pkt.frag_offset() != 0 {
            // A UDP datagram larger than the link's MTU, in pieces. (The
            // guest's TCP keeps to the MSS; ICMP echo answers are one frame.)
            if ip.next_header != IpProtocol::Udp {
                return self.drop_frame(Stat::Unsupported);
            }
            let id = (ip.src_addr, ip.dst_addr, pkt.ident(), u8::from(ip.next_header));
            match self.reassembly.add(id, usize::from(pkt.frag_offset()), pkt.more_frags(), pkt.payload(), Instant::now()) {
                Ok(Some(d)) => {
                    whole = d;
                    &whole[..]
                }
                Ok(None) => return,
                Err(Refused::Malformed) => return self.drop_frame(Stat::Malformed),
                Err(Refused::Evicted) => return self.drop_frame(Stat::QueueFull),
            }
        } else {
            pkt.payload()
        };
        if ip.next_header == IpProtocol::Udp {
            // DHCP comes from 0.0.0.0 to the broadcast address: before the checks below.
            if let Ok(udp) = UdpPacket::new_checked(payload) {
                if udp.dst_port() == DHCP_SERVER_PORT {
                    if UdpRepr::parse(&udp, &src, &dst, &caps).is_err() {
                        return self.drop_frame(Stat::Malformed);
                    }
                    return self.guest_dhcp(udp.payload());
                }
            }
        }
        if ip.src_addr != GUEST_IP {
            return self.drop_frame(Stat::Unsupported);
        }
        if !is_unicast(ip.dst_addr) {
            return self.drop_frame(Stat::Unsupported);
        }
        match ip.next_header {
            IpProtocol::Icmp => {
                let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
                    return self.drop_frame(Stat::Malformed);
                };
                let Ok(repr) = Icmpv4Repr::parse(&icmp, &caps) else {
                    return self.drop_frame(Stat::Malformed);
                };
                match repr {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    } if ip.dst_addr == GATEWAY_IP || ip.dst_addr == DNS_IP => {
                        let reply = Icmpv4Repr::EchoReply {
                            ident,
                            seq_no,
                            data,
                        };
                        let frame = ip_frame(
                            self.guest_mac,
                            ip.dst_addr,
                            GUEST_IP,
                            IpProtocol::Icmp,
                            reply.buffer_len(),
                            |b| reply.emit(&mut Icmpv4Packet::new_unchecked(b), &caps),
                        );
                        self.shared.push_to_guest(frame);
                    }
                    Icmpv4Repr::EchoRequest { .. } => self.drop_frame(Stat::Policy),
                    _ => self.drop_frame(Stat::Unsupported),
                }
            }
            IpProtocol::Udp => {
                let Ok(udp) = UdpPacket::new_checked(payload) else {
                    return self.drop_frame(Stat::Malformed);
                };
                let Ok(repr) = UdpRepr::parse(&udp, &src, &dst, &caps) else {
                    return self.drop_frame(Stat::Malformed);
                };
                self.guest_udp(ip.dst_addr, repr.src_port, repr.dst_port, udp.payload());
            }
            IpProtocol::Tcp => {
                let Ok(tcp) = TcpPacket::new_checked(payload) else {
                    return self.drop_frame(Stat::Malformed);
                };
                if !tcp.verify_checksum(&src, &dst) || tcp.dst_port() == 0 || tcp.src_port() == 0 {
                    return self.drop_frame(Stat::Malformed);
                }
                let whole = p[..pkt.total_len() as usize].to_vec();
                if tcp.syn() && !tcp.ack() && !tcp.rst() {
                    self.guest_syn((tcp.src_port(), ip.dst_addr, tcp.dst_port()), whole);
                } else {
                    self.ingress.push_back(whole);
                }
            }
            _ => self.drop_frame(Stat::Unsupported),
        }
    }

    /// A minimal DHCP server: the one address there is, 10.0.2.15, with
    /// the gateway as router and 10.0.2.3 as DNS server.
    fn guest_dhcp(&mut self, payload: &[u8]) {
        let Ok(pkt) = DhcpPacket::new_checked(payload) else {
            return self.drop_frame(Stat::Malformed);
        };
        let Ok(req) = DhcpRepr::parse(&pkt) else {
            return self.drop_frame(Stat::Malformed);
        };
        if pkt.opcode() != DhcpOpCode::Request {
            return self.drop_frame(Stat::Unsupported);
        }
        let message_type = match req.message_type {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request => {
                let wanted = req.requested_ip.unwrap_or(req.client_ip);
                let ours = req.server_identifier.is_none_or(|s| s == GATEWAY_IP);
                if !ours {
                    return; // The client chose another server.
                }
                if wanted == GUEST_IP || wanted.is_unspecified() {
                    DhcpMessageType::Ack
                } else {
                    DhcpMessageType::Nak
                }
            }
            // Release, decline, inform: nothing to track for a single lease.
            _ => return,
        };
        let dns = DNS_IP.octets();
        let extra = [DhcpOption {
            kind: 6,
            data: &dns,
        }];
        let ack = message_type != DhcpMessageType::Nak;
        let reply = DhcpRepr {
            message_type,
            transaction_id: req.transaction_id,
            secs: 0,
            client_hardware_address: req.client_hardware_address,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: if ack { GUEST_IP } else { Ipv4Addr::UNSPECIFIED },
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: ack.then_some(GATEWAY_IP),
            subnet_mask: ack.then_some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(GATEWAY_IP),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: ack.then_some(24 * 3600),
            renew_duration: None,
            rebind_duration: None,
            additional_options: if ack { &extra } else { &[] },
        };
        let mut body = vec![0u8; reply.buffer_len()];
        if reply
            .emit(&mut DhcpPacket::new_unchecked(&mut body[..]))
            .is_err()
        {
            return;
        }
        let mac = if req.client_hardware_address.is_unicast() {
            req.client_hardware_address
        } else {
            self.guest_mac
        };
        for frame in udp_frame_to(mac, (GATEWAY_IP, DHCP_SERVER_PORT), (Ipv4Addr::BROADCAST, DHCP_CLIENT_PORT), &body) {
            self.shared.push_to_guest(frame);
        }
    }

    /// Where a guest flow to `dst:port` goes on the host, or `None` if policy forbids it.
    fn nat_target(&self, proto: Proto, dst: Ipv4Addr, port: u16) -> Option<SocketAddr> {
        if port == 0 {
            return None;
        }
        if dst == DNS_IP {
            return (port == 53).then_some(self.dns);
        }
        let host = if dst == GATEWAY_IP {
            Ipv4Addr::LOCALHOST
        } else if in_nat_net(dst) || !is_unicast(dst) {
            return None;
        } else {
            dst
        };
        self.cfg.allows(proto, host, port).then_some(SocketAddr::V4(SocketAddrV4::new(host, port)))
    }

    fn guest_syn(&mut self, key: Key, syn: Vec<u8>) {
        if let Some(&id) = self.by_key.get(&key) {
            let Some(c) = self.conns.get(&id) else { return };
            match c.phase {
                // A retransmitted SYN while the host connect runs: the first one is kept.
                Phase::Connecting { .. } => return,
                Phase::Open(h) => {
                    let st = self.sockets.get::<tcp::Socket>(h).state();
                    if matches!(st, tcp::State::TimeWait | tcp::State::Closed) {
                        // The guest reuses the 4-tuple of a finished connection.
                        self.remove_conn(id);
                    } else {
                        self.ingress.push_back(syn);
                        return;
                    }
                }
            }
        }
        let target = if self.conns.len() >= self.cfg.max_tcp {
            None
        } else {
            self.nat_target(Proto::Tcp, key.1, key.2)
        };
        let Some(SocketAddr::V4(target)) = target else {
            self.drop_frame(Stat::Policy);
            return self.refuse(syn);
        };
        match self.opener.tcp(SocketAddr::V4(target)) {
            Ok(host) => {
                let id = self.next_id;
                self.next_id += 1;
                let deadline = Instant::now() + CONNECT_TIMEOUT;
                self.conns.insert(
                    id,
                    TcpConn {
                        key,
                        host,
                        phase: Phase::Connecting { syn, deadline },
                        host_eof: false,
                        host_wr_shut: false,
                        host_broken: false,
                        hup: false,
                        rst_pending: false,
                        guest_answered: true,
                    },
                );
                self.by_key.insert(key, id);
            }
            Err(_) => self.refuse(syn),
        }
    }

    /// Replay `syn` to smoltcp with nothing listening: it answers RST.
    fn refuse(&mut self, syn: Vec<u8>) {
        self.shared.stats.bump(Stat::TcpRefused);
        self.ingress.push_back(syn);
    }

    fn new_tcp_socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_TX_BUFFER]),
        );
        // Give up on a guest that stops acknowledging, instead of holding
        // the host socket forever.
        s.set_timeout(Some(smoltcp::time::Duration::from_secs(120)));
        s.set_nagle_enabled(false);
        s
    }

    fn remove_conn(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            self.by_key.remove(&c.key);
            if let Phase::Open(h) = c.phase {
                self.sockets.remove(h);
            }
            // `c.host` drops here: the host socket closes.
        }
    }

    // ---- TCP proxying ----

    fn accept_forwards(&mut self) {
        if self.accept_paused.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.accept_paused = None;
        for i in 0..self.tcp_fwds.len() {
            loop {
                if self.conns.len() >= self.cfg.max_tcp {
                    return;
                }
                let (stream, guest_port) = match self.tcp_fwds[i].0.accept() {
                    Ok((s, _)) => (s, self.tcp_fwds[i].1),
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        // Out of descriptors, say: the listener stays readable,
                        // so wait a little instead of spinning on it.
                        self.accept_paused = Some(Instant::now() + Duration::from_millis(100));
                        return;
                    }
                };
                if stream.set_nonblocking(true).is_err() {
                    self.drop_frame(Stat::Policy);
                    continue; // dropping `stream` closes it
                }
                let Some(gw_port) = self.alloc_gw_port(guest_port) else {
                    self.drop_frame(Stat::Policy);
                    continue;
                };
                self.announce_gateway();
                let mut s = Self::new_tcp_socket();
                let cx = self.iface.context();
                if s.connect(
                    cx,
                    (IpAddress::Ipv4(GUEST_IP), guest_port),
                    (IpAddress::Ipv4(GATEWAY_IP), gw_port),
                )
                .is_err()
                {
                    continue;
                }
                let h = self.sockets.add(s);
                let key = (guest_port, GATEWAY_IP, gw_port);
                let id = self.next_id;
                self.next_id += 1;
                self.conns.insert(
                    id,
                    TcpConn {
                        key,
                        host: stream,
                        phase: Phase::Open(h),
                        host_eof: false,
                        host_wr_shut: false,
                        host_broken: false,
                        hup: false,
                        rst_pending: false,
                        guest_answered: false,
                    },
                );
                self.by_key.insert(key, id);
                self.shared.stats.bump(Stat::TcpConnection);
            }
        }
    }

    /// A gateway port not in use towards `guest_port` (TCP) or by a UDP forward session.
    fn alloc_gw_port(&mut self, guest_port: u16) -> Option<u16> {
        let span = (*FWD_PORTS.end() - *FWD_PORTS.start()) as usize + 1;
        for _ in 0..span {
            let p = self.next_gw_port;
            self.next_gw_port = if p == *FWD_PORTS.end() {
                *FWD_PORTS.start()
            } else {
                p + 1
            };
            if !self.by_key.contains_key(&(guest_port, GATEWAY_IP, p))
                && !self.udp_fwd_ports.contains_key(&p)
            {
                return Some(p);
            }
        }
        None
    }

    fn service_conns(&mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.service_conn(id);
        }
    }

    fn service_conn(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match &mut c.phase {
            Phase::Connecting { syn, deadline } => {
                let failed = matches!(c.host.take_error(), Ok(Some(_)) | Err(_));
                let connected = !failed && c.host.peer_addr().is_ok();
                if !failed && !connected && Instant::now() < *deadline {
                    return;
                }
                let syn = std::mem::take(syn);
                if !connected {
                    self.remove_conn(id);
                    return self.refuse(syn);
                }
                let mut s = Self::new_tcp_socket();
                let (_, addr, port) = c.key;
                if s.listen((IpAddress::Ipv4(addr), port)).is_err() {
                    self.remove_conn(id);
                    return self.refuse(syn);
                }
                let h = self.sockets.add(s);
                c.phase = Phase::Open(h);
                // The queue is empty here (poll_iface drained it), so only
                // this SYN can reach the new listener.
                self.ingress.push_back(syn);
                self.poll_iface();
                if self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen {
                    // smoltcp did not take the SYN after all.
                    self.remove_conn(id);
                    self.shared.stats.bump(Stat::TcpRefused);
                    return;
                }
                self.shared.stats.bump(Stat::TcpConnection);
            }
            Phase::Open(h) => {
                let h = *h;
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                // Guest -> host, straight out of the socket's buffer.
                while s.can_recv() && !c.host_broken {
                    let host = &mut c.host;
                    let r = s.recv(|b| match host.write(b) {
                        Ok(n) => (n, Ok(n)),
                        Err(e) => (0, Err(e)),
                    });
                    match r {
                        Ok(Ok(0)) => break,
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if would_block(&e) => break,
                        Ok(Err(_)) => {
                            c.host_broken = true;
                            c.rst_pending = true;
                            s.abort();
                        }
                        Err(_) => break,
                    }
                }
                let st = s.state();
                let guest_fin = matches!(
                    st,
                    tcp::State::CloseWait
                        | tcp::State::LastAck
                        | tcp::State::Closing
                        | tcp::State::TimeWait
                );
                if guest_fin && !s.can_recv() && !c.host_wr_shut {
                    let _ = c.host.shutdown(Shutdown::Write);
                    c.host_wr_shut = true;
                }
                // Host -> guest, straight into the socket's buffer.
                while !c.host_eof && s.can_send() {
                    let host = &mut c.host;
                    let r = s.send(|b| {
                        if b.is_empty() {
                            return (0, Err(io::ErrorKind::WouldBlock.into()));
                        }
                        match host.read(b) {
                            Ok(n) => (n, Ok(n)),
                            Err(e) => (0, Err(e)),
                        }
                    });
                    match r {
                        Ok(Ok(0)) => {
                            c.host_eof = true;
                            s.close();
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if would_block(&e) => break,
                        Ok(Err(_)) => {
                            // A reset or error on the host side: the guest
                            // gets a reset at once (ECONNRESET in its recv).
                            c.host_eof = true;
                            c.rst_pending = true;
                            s.abort();
                        }
                        Err(_) => break,
                    }
                }
                let st = s.state();
                if !matches!(st, tcp::State::SynSent | tcp::State::Closed) {
                    c.guest_answered = true;
                }
                let done = match st {
                    tcp::State::Closed if c.rst_pending => {
                        c.rst_pending = false;
                        self.rst_flush = true;
                        false
                    }
                    tcp::State::Closed => !s.can_recv() || c.host_broken,
                    tcp::State::TimeWait => c.host_wr_shut && c.host_eof,
                    _ => false,
                };
                if done {
                    if !c.guest_answered {
                        sys::reset_on_close(&c.host);
                    }
                    self.remove_conn(id);
                }
            }
        }
    }

    // ---- UDP ----

    fn guest_udp(&mut self, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) {
        let now = Instant::now();
        if dst == GATEWAY_IP {
            if let Some(&(fi, peer)) = self.udp_fwd_ports.get(&dport) {
                // A reply on a forwarded UDP session.
                let f = &mut self.udp_fwds[fi];
                if f.guest_port == sport {
                    if let Some(s) = f.sessions.get_mut(&peer) {
                        s.last = now;
                    }
                    let _ = f.sock.send_to(payload, peer);
                    return;
                }
            }
        }
        let key = (sport, dst, dport);
        if let Some(f) = self.flows.get_mut(&key) {
            f.last = now;
            let _ = f.sock.send(payload);
            return;
        }
        let Some(target) = self.nat_target(Proto::Udp, dst, dport) else {
            return self.drop_frame(Stat::Policy);
        };
        if self.udp_count() >= self.cfg.max_udp {
            return self.drop_frame(Stat::Policy);
        }
        let Ok(sock) = self.opener.udp(target) else {
            return self.drop_frame(Stat::Policy);
        };
        let _ = sock.send(payload);
        self.flows.insert(key, UdpFlow { sock, last: now });
        self.shared.stats.bump(Stat::UdpFlow);
    }

    fn udp_count(&self) -> usize {
        self.flows.len() + self.udp_fwd_ports.len()
    }

    fn service_udp(&mut self) {
        let now = Instant::now();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (&(gport, vis_ip, vis_port), f) in self.flows.iter_mut() {
            for _ in 0..DATAGRAMS_PER_TURN {
                match f.sock.recv(&mut self.buf) {
                    Ok(n) => {
                        f.last = now;
                        out.extend(udp_frame(
                            self.guest_mac,
                            (vis_ip, vis_port),
                            gport,
                            &self.buf[..n],
                        ));
                    }
                    // WouldBlock, or an ICMP error from the host side: nothing to relay.
                    Err(_) => break,
                }
            }
        }
        for fi in 0..self.udp_fwds.len() {
            for _ in 0..DATAGRAMS_PER_TURN {
                let (n, peer) = match self.udp_fwds[fi].sock.recv_from(&mut self.buf) {
                    Ok(r) => r,
                    Err(_) => break,
                };
                let gw_port = match self.udp_fwds[fi].sessions.get_mut(&peer) {
                    Some(s) => {
                        s.last = now;
                        s.gw_port
                    }
                    None => {
                        if self.udp_count() >= self.cfg.max_udp {
                            self.shared.stats.bump(Stat::Policy);
                            continue;
                        }
                        let guest_port = self.udp_fwds[fi].guest_port;
                        let Some(p) = self.alloc_gw_port(guest_port) else {
                            continue;
                        };
                        self.announce_gateway();
                        self.udp_fwds[fi].sessions.insert(
                            peer,
                            UdpFwdSession {
                                gw_port: p,
                                last: now,
                            },
                        );
                        self.udp_fwd_ports.insert(p, (fi, peer));
                        self.shared.stats.bump(Stat::UdpFlow);
                        p
                    }
                };
                let guest_port = self.udp_fwds[fi].guest_port;
                out.extend(udp_frame(
                    self.guest_mac,
                    (GATEWAY_IP, gw_port),
                    guest_port,
                    &self.buf[..n],
                ));
            }
        }
        for f in out {
            self.shared.push_to_guest(f);
        }
    }

    fn expire_udp(&mut self) {
        let now = Instant::now();
        let t = self.cfg.udp_timeout;
        self.flows.retain(|_, f| now.duration_since(f.last) < t);
        let ports = &mut self.udp_fwd_ports;
        for f in &mut self.udp_fwds {
            f.sessions.retain(|_, s| {
                let keep = now.duration_since(s.last) < t;
                if !keep {
                    ports.remove(&s.gw_port);
                }
                keep
            });
        }
    }
}

/// An Ethernet + IPv4 frame from `src` to the guest, with a `len`-byte
/// payload written by `fill`.
fn ip_frame(
    guest_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: len,
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + len];
    eth_header(&mut frame, guest_mac, EthernetProtocol::Ipv4);
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..]),
        &ChecksumCapabilities::default(),
    );
    fill(&mut frame[14 + ip.buffer_len()..]);
    frame
}

/// A UDP datagram to the guest: one frame, or IP fragments when it does not
/// fit the link's MTU.
fn udp_frame(guest_mac: EthernetAddress, src: (Ipv4Addr, u16), dst_port: u16, payload: &[u8]) -> Vec<Vec<u8>> {
    udp_frame_to(guest_mac, src, (GUEST_IP, dst_port), payload)
}

fn udp_frame_to(guest_mac: EthernetAddress, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<Vec<u8>> {
    let repr = UdpRepr { src_port: src.1, dst_port: dst.1 };
    let emit = |b: &mut [u8]| {
        repr.emit(
            &mut UdpPacket::new_unchecked(b),
            &IpAddress::Ipv4(src.0),
            &IpAddress::Ipv4(dst.0),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        )
    };
    let len = repr.header_len() + payload.len();
    if len <= fragment::FRAGMENT {
        // The common case: written once, straight into its frame.
        return vec![ip_frame(guest_mac, src.0, dst.0, IpProtocol::Udp, len, emit)];
    }
    let mut dgram = vec![0u8; len];
    emit(&mut dgram);
    fragment::split(&dgram)
        .into_iter()
        .map(|(ident, offset, more, piece)| {
            let mut f = ip_frame(guest_mac, src.0, dst.0, IpProtocol::Udp, piece.len(), |b| b.copy_from_slice(piece));
            let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
            p.set_ident(ident);
            p.set_dont_frag(false);
            p.set_more_frags(more);
            p.set_frag_offset(offset as u16);
            p.fill_checksum();
            f
        })
        .collect()
}
