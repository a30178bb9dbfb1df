//! IPv4 forwarding: three stacks on two mock cables, the middle one a router
//! between 10.0.1.0/24 and 10.0.2.0/24.

use std::rc::Rc;

use hal::mock::MockNet;
use kernel_core::kernel::NetAttach;
use kernel_core::net::{inet, netlink, Control, NetStack, SockAddr, SockCtx, Socket, Ucred};
use kernel_core::Errno;
use linux_raw_sys::net as n;
use smoltcp::wire::Ipv4Packet;

struct Env {
    net: NetStack,
    now: u64,
}

const ROOT: Ucred = Ucred { pid: 7, uid: 0, gid: 0 };

impl Env {
    fn new(seed: u64, nets: Vec<NetAttach>) -> Env {
        let e = Env { net: NetStack::default(), now: 1_000_000 };
        inet::attach_all(&e.net.inet, seed, nets);
        e
    }
    fn cx<R>(&mut self, f: impl FnOnce(&mut SockCtx<'_>) -> R) -> R {
        f(&mut SockCtx { now_ns: self.now, cred: ROOT, net: &mut self.net })
    }
    /// The kernel loop after a NET interrupt.
    fn tick(&mut self) {
        self.now += 1_000_000;
        self.net.inet.borrow_mut().rx_pending = true;
        inet::tick(&self.net.inet, self.now);
    }
    fn sock(&mut self) -> Rc<dyn Socket> {
        self.cx(|c| inet::socket(c, n::AF_INET, n::SOCK_STREAM, 0)).unwrap()
    }
}

fn nic(name: &str, dev: &MockNet, ip: [u8; 4], gw: Option<[u8; 4]>) -> NetAttach {
    NetAttach { name: name.into(), device: Box::new(dev.clone()), ipv4: Some((ip, 24)), gateway: gw }
}

/// client 10.0.1.2 --(cable 1)-- 10.0.1.1 router 10.0.2.1 --(cable 2)-- 10.0.2.2 server
struct Lab {
    client: Env,
    router: Env,
    server: Env,
    /// The router's end of cable 1 (what it receives from the client).
    r0: MockNet,
    /// The router's end of cable 2 (`tx`: what it sends the server).
    r1: MockNet,
    /// IPv4 packets seen going from the router to the server.
    to_server: Vec<Vec<u8>>,
    /// ARP frames seen going from the router to the server.
    arp_to_server: usize,
}

fn lab() -> Lab {
    lab_with(true)
}

/// The lab; `gw`: the client and server have the router as default gateway.
fn lab_with(gw: bool) -> Lab {
    let (c0, r0) = MockNet::pair([2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 1, 1]);
    let (r1, s0) = MockNet::pair([2, 0, 0, 0, 2, 1], [2, 0, 0, 0, 2, 2]);
    let client = Env::new(1, vec![nic("eth0", &c0, [10, 0, 1, 2], gw.then_some([10, 0, 1, 1]))]);
    let router = Env::new(2, vec![nic("eth0", &r0, [10, 0, 1, 1], None), nic("eth1", &r1, [10, 0, 2, 1], None)]);
    let server = Env::new(3, vec![nic("eth0", &s0, [10, 0, 2, 2], gw.then_some([10, 0, 2, 1]))]);
    Lab { client, router, server, r0, r1, to_server: Vec::new(), arp_to_server: 0 }
}

impl Lab {
    fn tick(&mut self) {
        self.client.tick();
        self.router.tick();
        for f in self.r1.tx.borrow().iter() {
            if f.len() > 14 && f[12..14] == [8, 0] {
                self.to_server.push(f[14..].to_vec());
            }
            if f.len() > 14 && f[12..14] == [8, 6] {
                self.arp_to_server += 1;
            }
        }
        self.server.tick();
        self.router.tick();
    }
}

#[test]
fn tcp_crosses_a_forwarding_router() {
    let mut lab = lab();
    lab.router.net.inet.borrow_mut().fwd.enabled = true;
    let l = lab.server.sock();
    lab.server.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 80))).unwrap();
    lab.server.cx(|c| l.listen(c, 8)).unwrap();
    let c = lab.client.sock();
    let dst = SockAddr::Inet([10, 0, 2, 2], 80);
    assert_eq!(lab.client.cx(|x| c.connect(x, &dst)), Err(Errno::EINPROGRESS));
    let mut up = false;
    for _ in 0..50 {
        lab.tick();
        if lab.client.cx(|x| c.connect(x, &dst)) == Ok(()) {
            up = true;
            break;
        }
    }
    assert!(up, "no connection through the router: {:?}", lab.router.net.inet.borrow().fwd.stats);
    let (s, peer) = lab.server.cx(|x| l.accept(x)).unwrap();
    let SockAddr::Inet(a, _) = peer else { panic!("{peer:?}") };
    assert_eq!(a, [10, 0, 1, 2], "the server sees the client's own address (no NAT)");
    // Data both ways.
    let msg: Vec<u8> = (0..30_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    for _ in 0..400 {
        if sent < msg.len() {
            sent += lab.client.cx(|x| c.send(x, &msg[sent..], None, Control::default(), 0)).unwrap_or(0);
        }
        lab.tick();
        let mut buf = vec![0u8; 65536];
        if let Ok(r) = lab.server.cx(|x| s.recv(x, &mut buf, 0)) {
            got.extend_from_slice(&buf[..r.len]);
        }
        if got.len() == msg.len() {
            break;
        }
    }
    assert!(got == msg, "got {} of {} bytes", got.len(), msg.len());
    lab.server.cx(|x| s.send(x, b"reply", None, Control::default(), 0)).unwrap();
    let mut buf = vec![0u8; 16];
    let mut back = None;
    for _ in 0..20 {
        lab.tick();
        if let Ok(r) = lab.client.cx(|x| c.recv(x, &mut buf, 0)) {
            back = Some(buf[..r.len].to_vec());
            break;
        }
    }
    assert_eq!(back.as_deref(), Some(&b"reply"[..]));
    // Much later the router's knowledge of the server's hardware address is
    // stale: it keeps forwarding with it and asks again.
    let asked = lab.arp_to_server;
    lab.router.now += 40_000_000_000;
    lab.client.cx(|x| c.send(x, b"later", None, Control::default(), 0)).unwrap();
    let mut later = None;
    for _ in 0..20 {
        lab.tick();
        if let Ok(r) = lab.server.cx(|x| s.recv(x, &mut buf, 0)) {
            later = Some(buf[..r.len].to_vec());
            break;
        }
    }
    assert_eq!(later.as_deref(), Some(&b"later"[..]));
    assert!(lab.arp_to_server > asked, "no ARP refresh");
    assert_eq!(lab.router.net.inet.borrow().fwd.stats.unresolved, 0);
    // What reached the server came from the client with the TTL one lower
    // (smoltcp sends with 64) and a valid header checksum.
    let from_client: Vec<&Vec<u8>> = lab.to_server.iter().filter(|p| p[12..16] == [10, 0, 1, 2]).collect();
    assert!(from_client.len() > 10, "{}", from_client.len());
    for p in &from_client {
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert!(ip.verify_checksum(), "bad checksum after the TTL update");
    }
    let st = lab.router.net.inet.borrow().fwd.stats;
    assert!(st.forwarded > 20 && st.no_route == 0 && st.ttl_expired == 0, "{st:?}");

    // A packet at TTL 1 is not forwarded.
    let mut p = from_client[0].clone();
    p[8] = 1;
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    let mut f = vec![2, 0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 2, 8, 0];
    f.extend_from_slice(&p);
    lab.r0.inject(&f);
    lab.r1.tx.borrow_mut().clear();
    lab.r0.tx.borrow_mut().clear();
    lab.router.tick();
    assert_eq!(lab.router.net.inet.borrow().fwd.stats.ttl_expired, 1);
    assert!(lab.r1.tx.borrow().is_empty(), "a TTL-1 packet went out");
    // The sender hears of it: ICMP time exceeded from the router's address
    // on its side, quoting the packet's header.
    let back: Vec<Vec<u8>> = lab.r0.tx.borrow().iter().cloned().collect();
    assert_eq!(back.len(), 1, "one ICMP error");
    assert_eq!(back[0][..6], [2, 0, 0, 0, 1, 2], "to the client's hardware address");
    let ip = Ipv4Packet::new_checked(&back[0][14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr().octets(), ip.dst_addr().octets(), ip.next_header()), ([10, 0, 1, 1], [10, 0, 1, 2], smoltcp::wire::IpProtocol::Icmp));
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(icmp[8..28], p[..20]);
}

#[test]
fn nothing_crosses_with_forwarding_off() {
    let mut lab = lab();
    let l = lab.server.sock();
    lab.server.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 80))).unwrap();
    lab.server.cx(|c| l.listen(c, 8)).unwrap();
    let c = lab.client.sock();
    let dst = SockAddr::Inet([10, 0, 2, 2], 80);
    assert_eq!(lab.client.cx(|x| c.connect(x, &dst)), Err(Errno::EINPROGRESS));
    for _ in 0..50 {
        lab.tick();
    }
    let r = lab.client.cx(|x| c.connect(x, &dst));
    assert!(r.is_err(), "connected with forwarding off: {r:?}");
    assert!(lab.to_server.is_empty(), "{} packets crossed", lab.to_server.len());
    assert_eq!(lab.server.cx(|x| l.accept(x)).err(), Some(Errno::EAGAIN));
    // The router still answers for itself on both sides.
    let st = lab.router.net.inet.borrow();
    assert!(st.ifaces[1].port.stats.rx_packets > 0);
    assert_eq!(st.fwd.stats.forwarded, 0);
}

fn nl_request(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&42u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// `ip route add|del NET/LEN via GW` as netlink sends it; the errno of the answer.
fn route_req(e: &mut Env, s: &Rc<dyn Socket>, ty: u16, net: [u8; 4], len: u8, gw: [u8; 4]) -> i32 {
    // rtmsg: family, dst_len, src_len, tos, table (main), protocol (boot), scope, type (unicast), flags.
    let mut body = vec![2u8, len, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
    body.extend_from_slice(&[8, 0, 1, 0]); // RTA_DST
    body.extend_from_slice(&net);
    body.extend_from_slice(&[8, 0, 5, 0]); // RTA_GATEWAY
    body.extend_from_slice(&gw);
    e.cx(|c| s.send(c, &nl_request(ty, 0x605, &body), None, Control::default(), 0)).unwrap();
    let mut buf = vec![0u8; 1024];
    let r = e.cx(|c| s.recv(c, &mut buf, 0)).unwrap();
    assert!(r.len >= 20 && u16::from_le_bytes([buf[4], buf[5]]) == 2, "NLMSG_ERROR");
    i32::from_le_bytes(buf[16..20].try_into().unwrap())
}

#[test]
fn routes_to_prefixes_set_through_netlink() {
    let mut lab = lab_with(false);
    lab.router.net.inet.borrow_mut().fwd.enabled = true;
    let dst = SockAddr::Inet([10, 0, 2, 2], 80);
    let c = lab.client.sock();
    assert_eq!(lab.client.cx(|x| c.connect(x, &dst)), Err(Errno::ENETUNREACH), "no route yet");
    let err = |e: Errno| -(e.code() as i32);
    for (e, net, gw) in [(&mut lab.client, [10, 0, 2, 0], [10, 0, 1, 1]), (&mut lab.server, [10, 0, 1, 0], [10, 0, 2, 1])] {
        let s = e.cx(|c| netlink::socket(c, n::AF_NETLINK, n::SOCK_RAW, 0)).unwrap();
        assert_eq!(route_req(e, &s, 24, net, 24, gw), 0);
        assert_eq!(route_req(e, &s, 24, net, 24, gw), err(Errno::EEXIST));
        assert_eq!(route_req(e, &s, 24, [10, 0, 9, 1], 24, gw), err(Errno::EINVAL), "host bits set");
        assert_eq!(route_req(e, &s, 24, [10, 0, 9, 0], 24, [10, 7, 7, 7]), err(Errno::ENETUNREACH), "gateway not on a link");
        assert_eq!(route_req(e, &s, 25, [10, 0, 9, 0], 24, gw), err(Errno::ESRCH), "deleting a missing route");
    }
    // The route is listed (dst_len 24 with a gateway).
    {
        let s = lab.client.cx(|c| netlink::socket(c, n::AF_NETLINK, n::SOCK_RAW, 0)).unwrap();
        let req = nl_request(26, 0x301, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        lab.client.cx(|c| s.send(c, &req, None, Control::default(), 0)).unwrap();
        let mut buf = vec![0u8; 65536];
        let r = lab.client.cx(|c| s.recv(c, &mut buf, 0)).unwrap();
        let d = &buf[..r.len];
        let gw_attr = [8u8, 0, 5, 0, 10, 0, 1, 1];
        assert!(d.windows(8).any(|w| w == gw_attr), "the gateway route is dumped");
    }
    // And in /proc/net/route (as `route -n` reads it): the static route, then the subnet.
    let t = inet::procnet::file(&lab.client.net.inet.borrow(), "route").unwrap();
    let lines: Vec<&str> = t.lines().map(|l| l.trim_end()).collect();
    assert!(lines[0].starts_with("Iface\tDestination\tGateway"), "{t}");
    assert_eq!(lines[1..], ["eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0", "eth0\t0002000A\t0101000A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0"]);
    assert!(t.lines().all(|l| l.len() == 127), "lines padded as Linux's");
    let l = lab.server.sock();
    lab.server.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 80))).unwrap();
    lab.server.cx(|c| l.listen(c, 8)).unwrap();
    let c = lab.client.sock();
    assert_eq!(lab.client.cx(|x| c.connect(x, &dst)), Err(Errno::EINPROGRESS));
    let mut up = false;
    for _ in 0..50 {
        lab.tick();
        if lab.client.cx(|x| c.connect(x, &dst)) == Ok(()) {
            up = true;
            break;
        }
    }
    assert!(up, "no connection over the static routes");
    assert!(lab.server.cx(|x| l.accept(x)).is_ok());
    // Deleted, the route is gone.
    let s = lab.client.cx(|c| netlink::socket(c, n::AF_NETLINK, n::SOCK_RAW, 0)).unwrap();
    assert_eq!(route_req(&mut lab.client, &s, 25, [10, 0, 2, 0], 24, [10, 0, 1, 1]), 0);
    let d = lab.client.sock();
    assert_eq!(lab.client.cx(|x| d.connect(x, &dst)), Err(Errno::ENETUNREACH));
}
