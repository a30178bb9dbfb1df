//! Random operations on IP and netlink sockets (guest-less, through the
//! `Socket` trait): any sequence of calls with any arguments, interleaved
//! with protocol time passing, never panics, and the stack keeps working.

use std::rc::Rc;

use hal::mock::{MockConsole, MockNet};
use kernel_core::kernel::NetAttach;
use kernel_core::net::{inet, netlink, Control, NetStack, SockAddr, SockCtx, Socket, Ucred};
use kernel_core::wait::IoCtx;
use linux_raw_sys::net as n;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    New(u8),
    Bind(usize, u8, u8),
    Connect(usize, u8, u8),
    Listen(usize, u32),
    Accept(usize),
    Send(usize, usize, Option<(u8, u8)>),
    Recv(usize, usize, u8),
    Shutdown(usize, u32),
    SetOpt(usize, u8, Vec<u8>),
    GetOpt(usize, u8),
    Ioctl(usize, u8, Vec<u8>),
    Netlink(usize, Vec<u8>, u16, u16),
    Poll(usize),
    Close(usize),
    Time(u32),
    Frame(Vec<u8>),
}

fn addr(a: u8, p: u8) -> SockAddr {
    let port = [0u16, 5000, 5001, 1][p as usize % 4];
    match a % 6 {
        0 => SockAddr::Inet([127, 0, 0, 1], port),
        1 => SockAddr::Inet([0, 0, 0, 0], port),
        2 => SockAddr::Inet([10, 0, 0, 1], port),
        3 => SockAddr::Inet6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port, 0, 0),
        4 => SockAddr::Inet([10, 0, 0, 2], port),
        _ => SockAddr::Unspec,
    }
}

const OPTS: [(u32, u32); 10] = [
    (n::SOL_SOCKET, n::SO_REUSEADDR),
    (n::SOL_SOCKET, n::SO_RCVBUF),
    (n::SOL_SOCKET, n::SO_LINGER),
    (n::SOL_SOCKET, n::SO_ERROR),
    (n::SOL_SOCKET, n::SO_KEEPALIVE),
    (n::SOL_TCP, n::TCP_NODELAY),
    (n::SOL_IP, n::IP_TTL),
    (n::SOL_IP, n::IP_HDRINCL),
    (n::SOL_IPV6, n::IPV6_V6ONLY),
    (n::SOL_SOCKET, n::SO_RCVTIMEO_OLD),
];

fn op() -> impl Strategy<Value = Op> {
    let s = 0usize..8;
    prop_oneof![
        (0u8..12).prop_map(Op::New),
        (s.clone(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::Bind(a, b, c)),
        (s.clone(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Op::Connect(a, b, c)),
        (s.clone(), 0u32..200).prop_map(|(a, b)| Op::Listen(a, b)),
        s.clone().prop_map(Op::Accept),
        (s.clone(), 0usize..200_000, proptest::option::of((any::<u8>(), any::<u8>()))).prop_map(|(a, b, c)| Op::Send(a, b, c)),
        (s.clone(), 0usize..100_000, any::<u8>()).prop_map(|(a, b, c)| Op::Recv(a, b, c)),
        (s.clone(), 0u32..4).prop_map(|(a, b)| Op::Shutdown(a, b)),
        (s.clone(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(a, b, c)| Op::SetOpt(a, b, c)),
        (s.clone(), any::<u8>()).prop_map(|(a, b)| Op::GetOpt(a, b)),
        (s.clone(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..48)).prop_map(|(a, b, c)| Op::Ioctl(a, b, c)),
        (s.clone(), proptest::collection::vec(any::<u8>(), 0..96), 16u16..30, any::<u16>()).prop_map(|(a, b, c, d)| Op::Netlink(a, b, c, d)),
        s.clone().prop_map(Op::Poll),
        s.prop_map(Op::Close),
        (0u32..3_000_000).prop_map(Op::Time),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Op::Frame),
    ]
}

const IOCTLS: [u32; 8] = [0x8912, 0x8913, 0x8914, 0x8915, 0x8916, 0x891b, 0x8933, 0x541b];

fn run(ops: Vec<Op>) {
    let mut net = NetStack::default();
    let (eth, wire) = MockNet::pair([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    inet::attach_all(&net.inet, 9, vec![NetAttach { name: "eth0".into(), device: Box::new(eth.clone()), ipv4: Some(([10, 0, 0, 1], 24)), gateway: None }]);
    let mut console = MockConsole::default();
    let mut now: u64 = 1_000_000;
    let mut socks: Vec<Option<Rc<dyn Socket>>> = vec![None; 8];
    let root = Ucred { pid: 5, uid: 0, gid: 0 };
    let mut next = 0usize;
    for o in ops {
        let mut cx = SockCtx { now_ns: now, cred: root, net: &mut net };
        let get = |socks: &Vec<Option<Rc<dyn Socket>>>, i: usize| socks[i % socks.len()].clone();
        match o {
            Op::New(k) => {
                let (d, t, p) = match k {
                    0 | 1 => (n::AF_INET, n::SOCK_STREAM, 0),
                    2 | 3 => (n::AF_INET, n::SOCK_DGRAM, 0),
                    4 => (n::AF_INET6, n::SOCK_STREAM, 0),
                    5 => (n::AF_INET6, n::SOCK_DGRAM, 0),
                    6 => (n::AF_INET, n::SOCK_DGRAM, n::IPPROTO_ICMP as u32),
                    7 => (n::AF_INET, n::SOCK_RAW, 1),
                    8 => (n::AF_INET6, n::SOCK_DGRAM, n::IPPROTO_ICMPV6),
                    9 => (n::AF_NETLINK, n::SOCK_RAW, 0),
                    _ => (n::AF_INET, 99, 7),
                };
                let s = if d == n::AF_NETLINK { netlink::socket(&mut cx, d, t, p) } else { inet::socket(&mut cx, d, t, p) };
                if let Ok(s) = s {
                    socks[next % 8] = Some(s);
                    next += 1;
                }
            }
            Op::Bind(i, a, p) => {
                if let Some(s) = get(&socks, i) {
                    let _ = s.bind(&mut cx, &addr(a, p));
                }
            }
            Op::Connect(i, a, p) => {
                if let Some(s) = get(&socks, i) {
                    let _ = s.connect(&mut cx, &addr(a, p));
                }
            }
            Op::Listen(i, b) => {
                if let Some(s) = get(&socks, i) {
                    let _ = s.listen(&mut cx, b);
                }
            }
            Op::Accept(i) => {
                if let Some(s) = get(&socks, i) {
                    if let Ok((c, _)) = s.accept(&mut cx) {
                        socks[next % 8] = Some(c);
                        next += 1;
                    }
                }
            }
            Op::Send(i, len, to) => {
                if let Some(s) = get(&socks, i) {
                    let data = vec![0x42u8; len];
                    let to = to.map(|(a, p)| addr(a, p));
                    let _ = s.send(&mut cx, &data, to.as_ref(), Control::default(), 0);
                }
            }
            Op::Recv(i, len, f) => {
                if let Some(s) = get(&socks, i) {
                    let mut buf = vec![0u8; len];
                    let flags = [0, n::MSG_PEEK, n::MSG_TRUNC, n::MSG_PEEK | n::MSG_TRUNC][f as usize % 4];
                    if let Ok(r) = s.recv(&mut cx, &mut buf, flags) {
                        assert!(r.len <= len);
                    }
                }
            }
            Op::Shutdown(i, h) => {
                if let Some(s) = get(&socks, i) {
                    let _ = s.shutdown(&mut cx, h);
                }
            }
            Op::SetOpt(i, k, v) => {
                if let Some(s) = get(&socks, i) {
                    let (l, o) = OPTS[k as usize % OPTS.len()];
                    let _ = s.setsockopt(&mut cx, l, o, &v);
                }
            }
            Op::GetOpt(i, k) => {
                if let Some(s) = get(&socks, i) {
                    let (l, o) = OPTS[k as usize % OPTS.len()];
                    let _ = s.getsockopt(&mut cx, l, o);
                }
            }
            Op::Ioctl(i, k, mut v) => {
                if let Some(s) = get(&socks, i) {
                    if k % 2 == 0 && v.len() >= 4 {
                        v[..4].copy_from_slice(if k % 4 == 0 { b"eth0" } else { b"lo\0\0" });
                    }
                    let _ = s.ioctl(&mut cx, IOCTLS[k as usize % IOCTLS.len()], &v);
                }
            }
            Op::Netlink(i, body, ty, flags) => {
                if let Some(s) = get(&socks, i) {
                    let mut m = Vec::new();
                    m.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
                    m.extend_from_slice(&ty.to_le_bytes());
                    m.extend_from_slice(&(flags | 1).to_le_bytes());
                    m.extend_from_slice(&[0; 8]);
                    m.extend_from_slice(&body);
                    let _ = s.send(&mut cx, &m, None, Control::default(), 0);
                }
            }
            Op::Poll(i) => {
                if let Some(s) = get(&socks, i) {
                    let mut io = IoCtx {
                        now,
                        realtime: 0,
                        console: &mut console,
                        pid: 5,
                        pgid: 5,
                        sid: 5,
                        sig_ignored: 0,
                        signals: Vec::new(),
                        nonblock: true,
                    };
                    let _ = s.poll(&mut io, (true, true), None);
                }
            }
            Op::Close(i) => {
                socks[i % 8] = None;
            }
            Op::Time(us) => now += us as u64 * 1000,
            Op::Frame(f) => {
                eth.inject(&f);
                net.inet.borrow_mut().rx_pending = true;
            }
        }
        now += 10_000;
        inet::tick(&net.inet, now);
        // The wire end swallows what the kernel sends.
        wire.rx.borrow_mut().clear();
    }
    drop(socks);
    // Closed connections finish (or are given up on) and free their ports.
    for _ in 0..200 {
        now += 1_000_000_000;
        inet::tick(&net.inet, now);
    }
    let mut cx = SockCtx { now_ns: now, cred: root, net: &mut net };
    let s = inet::socket(&mut cx, n::AF_INET, n::SOCK_STREAM, 0).unwrap();
    s.bind(&mut cx, &SockAddr::Inet([127, 0, 0, 1], 5000)).expect("every port is free again");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn random_socket_operations_never_panic(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
