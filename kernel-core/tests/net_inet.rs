//! The IP stack without a guest: AF_INET sockets driven directly through
//! the `Socket` trait over loopback and over mock Ethernet links, netlink
//! dumps, and malformed frames from a link.

use std::rc::Rc;

use hal::mock::{MockConsole, MockNet};
use kernel_core::net::{inet, netlink, Control, NetStack, SockAddr, SockCtx, Socket, Ucred};
use kernel_core::wait::{IoCtx, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP};
use kernel_core::Errno;
use linux_raw_sys::net as n;

struct Env {
    net: NetStack,
    now: u64,
    console: MockConsole,
}

const ROOT: Ucred = Ucred { pid: 7, uid: 0, gid: 0 };

impl Env {
    fn new() -> Env {
        Env { net: NetStack::default(), now: 1_000_000, console: MockConsole::default() }
    }
    /// Run `f` with a socket context.
    fn cx<R>(&mut self, f: impl FnOnce(&mut SockCtx<'_>) -> R) -> R {
        f(&mut SockCtx { now_ns: self.now, cred: ROOT, net: &mut self.net })
    }
    /// What the kernel loop does between calls: poll the stack.
    fn tick(&mut self) {
        self.now += 100_000;
        inet::tick(&self.net.inet, self.now);
    }
    fn sock(&mut self, ty: u32) -> Rc<dyn Socket> {
        self.cx(|c| inet::socket(c, n::AF_INET, ty, 0)).unwrap()
    }
    fn ready(&mut self, s: &Rc<dyn Socket>) -> u32 {
        let mut io = IoCtx {
            now: self.now,
            realtime: 0,
            console: &mut self.console,
            pid: 7,
            pgid: 7,
            sid: 7,
            sig_ignored: 0,
            signals: Vec::new(),
            nonblock: true,
        };
        s.poll(&mut io, (true, true), None)
    }
    fn send(&mut self, s: &Rc<dyn Socket>, d: &[u8]) -> Result<usize, Errno> {
        self.cx(|c| s.send(c, d, None, Control::default(), 0))
    }
    fn recv(&mut self, s: &Rc<dyn Socket>, len: usize, flags: u32) -> Result<(Vec<u8>, usize, Option<SockAddr>), Errno> {
        let mut buf = vec![0u8; len];
        let r = self.cx(|c| s.recv(c, &mut buf, flags))?;
        buf.truncate(r.len);
        Ok((buf, r.full_len, r.from))
    }
}

fn lo(port: u16) -> SockAddr {
    SockAddr::Inet([127, 0, 0, 1], port)
}

/// A listener on 127.0.0.1:`port` and a client connected to it, accepted.
fn pair(e: &mut Env, port: u16) -> (Rc<dyn Socket>, Rc<dyn Socket>, Rc<dyn Socket>) {
    let l = e.sock(n::SOCK_STREAM);
    e.cx(|c| l.bind(c, &lo(port))).unwrap();
    e.cx(|c| l.listen(c, 4)).unwrap();
    let c = e.sock(n::SOCK_STREAM);
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(port))), Err(Errno::EINPROGRESS));
    assert_eq!(e.cx(|cx| l.accept(cx)).err(), Some(Errno::EAGAIN), "nothing to accept before the stack ran");
    e.tick();
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(port))), Ok(()), "a re-run connect reports completion");
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(port))), Err(Errno::EISCONN));
    assert!(e.ready(&l) & POLLIN != 0);
    let (s, peer) = e.cx(|cx| l.accept(cx)).unwrap();
    let SockAddr::Inet(a, p) = peer else { panic!("{peer:?}") };
    assert_eq!(a, [127, 0, 0, 1]);
    assert!((inet::EPHEMERAL_LO..=inet::EPHEMERAL_HI).contains(&p));
    assert_eq!(e.cx(|cx| c.local_addr(cx)).unwrap(), SockAddr::Inet([127, 0, 0, 1], p));
    assert_eq!(e.cx(|cx| s.peer_addr(cx)).unwrap(), SockAddr::Inet([127, 0, 0, 1], p));
    assert_eq!(e.cx(|cx| c.peer_addr(cx)).unwrap(), lo(port));
    (l, c, s)
}

#[test]
fn tcp_loopback_transfer_and_close() {
    let mut e = Env::new();
    let (_l, c, s) = pair(&mut e, 5000);
    assert_eq!(e.ready(&c) & (POLLIN | POLLOUT), POLLOUT);
    assert_eq!(e.recv(&s, 10, 0).err(), Some(Errno::EAGAIN));
    // 1 MiB through buffers smaller than that: partial writes, then EAGAIN until the peer reads.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 10_000, "transfer stalled at {} bytes", got.len());
        if sent < data.len() {
            match e.send(&c, &data[sent..]) {
                Ok(k) => sent += k,
                Err(Errno::EAGAIN) => assert_eq!(e.ready(&c) & POLLOUT, 0, "EAGAIN while POLLOUT"),
                Err(x) => panic!("send: {x:?}"),
            }
        }
        e.tick();
        match e.recv(&s, 65536, 0) {
            Ok((b, _, _)) => {
                assert!(!b.is_empty());
                got.extend_from_slice(&b)
            }
            Err(Errno::EAGAIN) => assert_eq!(e.ready(&s) & POLLIN, 0, "EAGAIN while POLLIN"),
            Err(x) => panic!("recv: {x:?}"),
        }
        e.tick();
    }
    assert!(got == data, "data corrupted");
    // MSG_PEEK leaves the bytes.
    e.send(&s, b"hello").unwrap();
    e.tick();
    assert_eq!(e.recv(&c, 3, n::MSG_PEEK).unwrap().0, b"hel");
    assert_eq!(e.recv(&c, 10, 0).unwrap().0, b"hello");
    // Half close: the server reads EOF, can still write back.
    e.cx(|cx| c.shutdown(cx, n::SHUT_WR)).unwrap();
    assert_eq!(e.send(&c, b"x"), Err(Errno::EPIPE));
    e.tick();
    assert!(e.ready(&s) & (POLLIN | POLLRDHUP) == POLLIN | POLLRDHUP);
    assert_eq!(e.recv(&s, 10, 0).unwrap().0, b"");
    e.send(&s, b"bye").unwrap();
    e.tick();
    assert_eq!(e.recv(&c, 10, 0).unwrap().0, b"bye");
    drop(s);
    e.tick();
    assert_eq!(e.recv(&c, 10, 0).unwrap().0, b"", "EOF after the peer closed");
    assert!(e.ready(&c) & POLLHUP != 0);
}

#[test]
fn tcp_refused_and_so_error() {
    let mut e = Env::new();
    let c = e.sock(n::SOCK_STREAM);
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(1))), Err(Errno::EINPROGRESS));
    e.tick();
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(1))), Err(Errno::ECONNREFUSED));
    // The nonblocking way: poll says error, SO_ERROR tells (once).
    let c = e.sock(n::SOCK_STREAM);
    assert_eq!(e.cx(|cx| c.connect(cx, &lo(2))), Err(Errno::EINPROGRESS));
    assert_eq!(e.ready(&c), 0, "nothing while the handshake is pending");
    e.tick();
    let r = e.ready(&c);
    assert_eq!(r & (POLLERR | POLLOUT | POLLHUP), POLLERR | POLLOUT | POLLHUP, "{r:#x}");
    let so = |e: &mut Env| e.cx(|cx| c.getsockopt(cx, n::SOL_SOCKET, n::SO_ERROR)).unwrap();
    assert_eq!(so(&mut e), (Errno::ECONNREFUSED.code() as i32).to_le_bytes());
    assert_eq!(so(&mut e), 0i32.to_le_bytes());
    assert_eq!(e.send(&c, b"x"), Err(Errno::EPIPE));
    assert_eq!(e.recv(&c, 1, 0).err(), Some(Errno::ENOTCONN));
    assert_eq!(e.cx(|cx| c.peer_addr(cx)).err(), Some(Errno::ENOTCONN));
}

#[test]
fn tcp_backlog_pool_accepts_several() {
    let mut e = Env::new();
    let l = e.sock(n::SOCK_STREAM);
    e.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 6000))).unwrap();
    e.cx(|c| l.listen(c, 2)).unwrap();
    let clients: Vec<_> = (0..3).map(|_| e.sock(n::SOCK_STREAM)).collect();
    for c in &clients {
        assert_eq!(e.cx(|cx| c.connect(cx, &lo(6000))), Err(Errno::EINPROGRESS));
    }
    e.tick();
    for c in &clients {
        assert_eq!(e.cx(|cx| c.connect(cx, &lo(6000))), Ok(()));
    }
    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(e.cx(|cx| l.accept(cx)).unwrap().0);
        e.tick();
    }
    assert_eq!(e.cx(|cx| l.accept(cx)).err(), Some(Errno::EAGAIN));
    // Each accepted socket talks to its own client.
    for (i, c) in clients.iter().enumerate() {
        e.send(c, &[i as u8]).unwrap();
    }
    e.tick();
    let mut seen: Vec<u8> = accepted.iter().map(|s| e.recv(s, 4, 0).unwrap().0[0]).collect();
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
    assert_eq!(e.cx(|cx| l.getsockopt(cx, n::SOL_SOCKET, n::SO_ACCEPTCONN)).unwrap(), 1i32.to_le_bytes());
}

#[test]
fn bind_conflicts_and_reuseaddr() {
    let mut e = Env::new();
    let a = e.sock(n::SOCK_STREAM);
    let b = e.sock(n::SOCK_STREAM);
    e.cx(|c| a.bind(c, &lo(7000))).unwrap();
    assert_eq!(e.cx(|c| b.bind(c, &SockAddr::Inet([0; 4], 7000))), Err(Errno::EADDRINUSE));
    assert_eq!(e.cx(|c| b.bind(c, &SockAddr::Inet([10, 9, 9, 9], 7001))), Err(Errno::EADDRNOTAVAIL));
    e.cx(|c| a.listen(c, 1)).unwrap();
    // SO_REUSEADDR does not let a second socket take a listening port...
    let r = e.sock(n::SOCK_STREAM);
    e.cx(|c| r.setsockopt(c, n::SOL_SOCKET, n::SO_REUSEADDR, &1i32.to_le_bytes())).unwrap();
    assert_eq!(e.cx(|c| r.getsockopt(c, n::SOL_SOCKET, n::SO_REUSEADDR)).unwrap(), 1i32.to_le_bytes());
    assert_eq!(e.cx(|c| r.bind(c, &lo(7000))), Err(Errno::EADDRINUSE));
    // ...but takes it back from a closed listener's leftovers at once.
    drop(a);
    e.tick();
    e.cx(|c| r.bind(c, &lo(7000))).unwrap();
    e.cx(|c| r.listen(c, 1)).unwrap();
    // A UDP port is a separate space.
    let u = e.sock(n::SOCK_DGRAM);
    e.cx(|c| u.bind(c, &lo(7000))).unwrap();
}

#[test]
fn time_wait_holds_port_without_reuseaddr() {
    let mut e = Env::new();
    let (l, c, s) = pair(&mut e, 7100);
    // The server closes first: its side goes through TIME-WAIT.
    drop(s);
    e.tick();
    drop(c);
    e.tick();
    drop(l);
    e.tick();
    let x = e.sock(n::SOCK_STREAM);
    assert_eq!(e.cx(|cx| x.bind(cx, &lo(7100))), Err(Errno::EADDRINUSE), "TIME-WAIT keeps the port");
    x.setsockopt(&mut SockCtx { now_ns: e.now, cred: ROOT, net: &mut e.net }, n::SOL_SOCKET, n::SO_REUSEADDR, &1i32.to_le_bytes()).unwrap();
    e.cx(|cx| x.bind(cx, &lo(7100))).unwrap();
}

#[test]
fn udp_addresses_peek_trunc_connect() {
    let mut e = Env::new();
    let a = e.sock(n::SOCK_DGRAM);
    let b = e.sock(n::SOCK_DGRAM);
    e.cx(|c| a.bind(c, &lo(9000))).unwrap();
    assert_eq!(e.cx(|c| a.local_addr(c)).unwrap(), lo(9000));
    assert_eq!(e.cx(|c| b.send(c, b"ping", None, Control::default(), 0)), Err(Errno::EDESTADDRREQ));
    e.cx(|c| b.send(c, b"ping!", Some(&lo(9000)), Control::default(), 0)).unwrap();
    let SockAddr::Inet(_, bport) = e.cx(|c| b.local_addr(c)).unwrap() else { panic!() };
    assert!(bport >= inet::EPHEMERAL_LO);
    assert_eq!(e.ready(&a) & POLLIN, 0);
    e.tick();
    assert_eq!(e.ready(&a) & (POLLIN | POLLOUT), POLLIN | POLLOUT);
    let (d, full, from) = e.recv(&a, 2, n::MSG_PEEK).unwrap();
    assert_eq!((d.as_slice(), full), (&b"pi"[..], 5));
    assert_eq!(from, Some(lo(bport)));
    let (d, full, _) = e.recv(&a, 3, 0).unwrap();
    assert_eq!((d.as_slice(), full), (&b"pin"[..], 5), "truncated datagram, full length reported");
    assert_eq!(e.recv(&a, 10, 0).err(), Some(Errno::EAGAIN), "the rest of a datagram is gone");
    // A connected socket hears only from its peer.
    let c = e.sock(n::SOCK_DGRAM);
    e.cx(|x| a.connect(x, &lo(bport))).unwrap();
    e.cx(|x| c.send(x, b"stranger", Some(&lo(9000)), Control::default(), 0)).unwrap();
    e.cx(|x| b.send(x, b"friend", Some(&lo(9000)), Control::default(), 0)).unwrap();
    e.tick();
    assert_eq!(e.recv(&a, 64, 0).unwrap().0, b"friend");
    e.send(&a, b"back").unwrap();
    e.tick();
    assert_eq!(e.recv(&b, 64, 0).unwrap().0, b"back");
    assert_eq!(e.cx(|x| a.peer_addr(x)).unwrap(), lo(bport));
    // Empty datagrams are datagrams.
    e.cx(|x| b.send(x, b"", Some(&lo(9000)), Control::default(), 0)).unwrap();
    e.tick();
    assert_eq!(e.recv(&a, 8, 0).unwrap().1, 0);
}

#[test]
fn ping_socket_echo_over_loopback() {
    let mut e = Env::new();
    let p = e.cx(|c| inet::socket(c, n::AF_INET, n::SOCK_DGRAM, n::IPPROTO_ICMP as u32)).unwrap();
    assert_eq!(e.cx(|c| p.send(c, &[0, 0, 0, 0, 0, 0, 0, 1], Some(&lo(0)), Control::default(), 0)), Err(Errno::EINVAL), "not a request");
    let req = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
    e.cx(|c| p.send(c, &req, Some(&lo(0)), Control::default(), 0)).unwrap();
    e.tick();
    assert!(e.ready(&p) & POLLIN != 0);
    let (d, _, from) = e.recv(&p, 64, 0).unwrap();
    assert_eq!(from, Some(SockAddr::Inet([127, 0, 0, 1], 0)));
    assert_eq!(d[0], 0, "echo reply");
    assert_eq!(&d[6..], &req[6..], "sequence and payload echoed");
    assert_eq!(e.recv(&p, 64, 0).err(), Some(Errno::EAGAIN), "our own request is not read back");
    // Raw ICMP (root only): every ICMP packet, IPv4 header included.
    let user = Ucred { pid: 8, uid: 1000, gid: 1000 };
    let denied = inet::socket(&mut SockCtx { now_ns: e.now, cred: user, net: &mut e.net }, n::AF_INET, n::SOCK_RAW, 1);
    assert_eq!(denied.err(), Some(Errno::EPERM));
    let raw = e.cx(|c| inet::socket(c, n::AF_INET, n::SOCK_RAW, 1)).unwrap();
    e.cx(|c| raw.send(c, &[8, 0, 0xf7, 0xfd, 0, 1, 0, 1], Some(&lo(0)), Control::default(), 0)).unwrap();
    e.tick();
    let (req_seen, _, _) = e.recv(&raw, 128, 0).unwrap();
    assert_eq!((req_seen[0] >> 4, req_seen[9], req_seen[20]), (4, 1, 8), "our request, with its IPv4 header");
    let (rep, _, from) = e.recv(&raw, 128, 0).unwrap();
    assert_eq!((rep[20], &rep[24..28]), (0, &[0u8, 1, 0, 1][..]), "the reply");
    assert_eq!(from, Some(SockAddr::Inet([127, 0, 0, 1], 0)));
}

#[test]
fn sockopts_reported() {
    let mut e = Env::new();
    let t = e.sock(n::SOCK_STREAM);
    let get = |e: &mut Env, l, o| i32::from_le_bytes(e.cx(|c| t.getsockopt(c, l, o)).unwrap()[..4].try_into().unwrap());
    assert_eq!(get(&mut e, n::SOL_SOCKET, n::SO_TYPE), n::SOCK_STREAM as i32);
    assert_eq!(get(&mut e, n::SOL_SOCKET, n::SO_ACCEPTCONN), 0);
    assert_eq!(get(&mut e, n::SOL_TCP, n::TCP_NODELAY), 0);
    e.cx(|c| t.setsockopt(c, n::SOL_TCP, n::TCP_NODELAY, &5i32.to_le_bytes())).unwrap();
    assert_eq!(get(&mut e, n::SOL_TCP, n::TCP_NODELAY), 1);
    e.cx(|c| t.setsockopt(c, n::SOL_SOCKET, n::SO_RCVBUF, &10000i32.to_le_bytes())).unwrap();
    assert_eq!(get(&mut e, n::SOL_SOCKET, n::SO_RCVBUF), 20000, "Linux doubles it");
    e.cx(|c| t.setsockopt(c, n::SOL_IP, n::IP_TTL, &17i32.to_le_bytes())).unwrap();
    assert_eq!(get(&mut e, n::SOL_IP, n::IP_TTL), 17);
    assert_eq!(e.cx(|c| t.setsockopt(c, n::SOL_IP, n::IP_TTL, &300i32.to_le_bytes())), Err(Errno::EINVAL));
    assert_eq!(e.cx(|c| t.setsockopt(c, n::SOL_SOCKET, 9999, &[0; 4])), Err(Errno::ENOPROTOOPT));
    assert_eq!(e.cx(|c| t.getsockopt(c, n::SOL_IPV6, n::IPV6_V6ONLY)), Err(Errno::ENOPROTOOPT));
    let linger = [1u8, 0, 0, 0, 0, 0, 0, 0];
    e.cx(|c| t.setsockopt(c, n::SOL_SOCKET, n::SO_LINGER, &linger)).unwrap();
    assert_eq!(e.cx(|c| t.getsockopt(c, n::SOL_SOCKET, n::SO_LINGER)).unwrap(), linger);
    // SO_LINGER 0: close resets the connection.
    let (_l, c, s) = pair(&mut e, 7200);
    e.cx(|x| c.setsockopt(x, n::SOL_SOCKET, n::SO_LINGER, &linger)).unwrap();
    drop(c);
    e.tick();
    assert_eq!(e.recv(&s, 4, 0).err(), Some(Errno::ECONNRESET));
}

/// Two stacks joined by a mock Ethernet cable.
fn two_machines() -> (Env, Env, MockNet, MockNet) {
    let (a, b) = MockNet::pair([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut ea = Env::new();
    let mut eb = Env::new();
    inet::attach_all(
        &ea.net.inet,
        1,
        vec![kernel_core::kernel::NetAttach { name: "eth0".into(), device: Box::new(a.clone()), ipv4: Some(([10, 0, 0, 1], 24)), gateway: None }],
    );
    inet::attach_all(
        &eb.net.inet,
        2,
        vec![kernel_core::kernel::NetAttach { name: "eth0".into(), device: Box::new(b.clone()), ipv4: Some(([10, 0, 0, 2], 24)), gateway: Some([10, 0, 0, 1]) }],
    );
    ea.tick();
    eb.tick();
    (ea, eb, a, b)
}

/// Both kernels' loops, with the NET interrupt a link raises when frames arrive.
fn tick_both(a: &mut Env, b: &mut Env) {
    for _ in 0..4 {
        a.net.inet.borrow_mut().rx_pending = true;
        a.tick();
        b.net.inet.borrow_mut().rx_pending = true;
        b.tick();
    }
}

#[test]
fn tcp_between_two_machines_over_ethernet() {
    let (mut ea, mut eb, _a, _b) = two_machines();
    let l = ea.sock(n::SOCK_STREAM);
    ea.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 80))).unwrap();
    ea.cx(|c| l.listen(c, 8)).unwrap();
    let c = eb.sock(n::SOCK_STREAM);
    assert_eq!(eb.cx(|x| c.connect(x, &SockAddr::Inet([10, 0, 0, 1], 80))), Err(Errno::EINPROGRESS));
    // ARP, SYN, SYN-ACK, ACK.
    for _ in 0..10 {
        tick_both(&mut ea, &mut eb);
    }
    assert_eq!(eb.cx(|x| c.connect(x, &SockAddr::Inet([10, 0, 0, 1], 80))), Ok(()));
    let (s, peer) = ea.cx(|x| l.accept(x)).unwrap();
    assert_eq!(peer, SockAddr::Inet([10, 0, 0, 2], match eb.cx(|x| c.local_addr(x)).unwrap() {
        SockAddr::Inet(a, p) => {
            assert_eq!(a, [10, 0, 0, 2]);
            p
        }
        o => panic!("{o:?}"),
    }));
    let msg = vec![0x5a; 20_000];
    let mut sent = 0;
    let mut got = Vec::new();
    for _ in 0..200 {
        if sent < msg.len() {
            sent += eb.send(&c, &msg[sent..]).unwrap_or(0);
        }
        tick_both(&mut ea, &mut eb);
        if let Ok((d, _, _)) = ea.recv(&s, 65536, 0) {
            got.extend(d);
        }
        if got.len() == msg.len() {
            break;
        }
    }
    assert_eq!(got, msg);
    // The same machine reaches its own eth0 address through loopback.
    let me = ea.sock(n::SOCK_STREAM);
    assert_eq!(ea.cx(|x| me.connect(x, &SockAddr::Inet([10, 0, 0, 1], 80))), Err(Errno::EINPROGRESS));
    ea.tick();
    assert_eq!(ea.cx(|x| me.connect(x, &SockAddr::Inet([10, 0, 0, 1], 80))), Ok(()));
    let st = ea.net.inet.borrow();
    let stats = st.ifaces[1].port.stats;
    assert!(stats.rx_packets > 10 && stats.tx_packets > 2 && stats.rx_bytes > 20_000, "{stats:?}");
    assert_eq!(st.ifaces[1].port.stats.rx_errors, 0);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let (mut ea, mut eb, a, _b) = two_machines();
    let mut rng: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // A valid frame to mutate: an ARP request from the other machine's side.
    let u = eb.sock(n::SOCK_DGRAM);
    eb.cx(|c| u.send(c, b"hello", Some(&SockAddr::Inet([10, 0, 0, 1], 9)), Control::default(), 0)).unwrap();
    eb.tick();
    let valid: Vec<u8> = a.rx.borrow().front().cloned().expect("machine b sent a frame");
    let mut injected = 0u64;
    for i in 0..3000 {
        let f: Vec<u8> = match i % 4 {
            // Random bytes of random length.
            0 => (0..(next() % 1600) as usize).map(|_| next() as u8).collect(),
            // Truncated valid frames.
            1 => valid[..(next() as usize % valid.len())].to_vec(),
            // Valid frames with flipped bytes (bad checksums, bad lengths).
            2 => {
                let mut v = valid.clone();
                for _ in 0..3 {
                    let k = next() as usize % v.len();
                    v[k] ^= next() as u8 | 1;
                }
                v
            }
            // Headers claiming IPv4 with garbage after.
            _ => {
                let mut v = valid[..14].to_vec();
                v[12] = 0x08;
                v[13] = 0x00;
                v.extend((0..(next() % 100) as usize).map(|_| next() as u8));
                v
            }
        };
        a.inject(&f);
        injected += 1;
        if i % 50 == 0 {
            ea.net.inet.borrow_mut().rx_pending = true;
            ea.tick();
        }
    }
    ea.net.inet.borrow_mut().rx_pending = true;
    ea.tick();
    let st = ea.net.inet.borrow();
    let s = st.ifaces[1].port.stats;
    assert!(s.rx_errors > injected / 2, "most garbage is caught before smoltcp: {s:?}");
    // Frames longer than the link's largest are dropped by the device itself.
    let oversized = a.dropped.get();
    assert!(oversized > 0);
    assert!(s.rx_errors + s.rx_packets + oversized >= injected, "every frame was taken: {s:?}");
    drop(st);
    // The machine still works afterwards.
    tick_both(&mut ea, &mut eb);
    let l = ea.sock(n::SOCK_DGRAM);
    ea.cx(|c| l.bind(c, &SockAddr::Inet([0; 4], 9))).unwrap();
    eb.cx(|c| u.send(c, b"still", Some(&SockAddr::Inet([10, 0, 0, 1], 9)), Control::default(), 0)).unwrap();
    tick_both(&mut ea, &mut eb);
    assert_eq!(ea.recv(&l, 16, 0).unwrap().0, b"still");
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

/// All messages of a dump, until NLMSG_DONE: (type, payload).
fn nl_dump(e: &mut Env, s: &Rc<dyn Socket>) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let (d, _, _) = e.recv(s, 65536, 0).expect("dump ends with NLMSG_DONE");
        let mut o = 0;
        while o + 16 <= d.len() {
            let len = u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) as usize;
            let ty = u16::from_le_bytes([d[o + 4], d[o + 5]]);
            assert_eq!(u32::from_le_bytes(d[o + 8..o + 12].try_into().unwrap()), 42, "sequence echoed");
            if ty == 3 {
                return out;
            }
            out.push((ty, d[o + 16..o + len].to_vec()));
            o += (len + 3) & !3;
        }
    }
}

#[test]
fn netlink_dumps_links_addresses_routes() {
    let (mut ea, _eb, _a, _b) = two_machines();
    let s = ea.cx(|c| netlink::socket(c, n::AF_NETLINK, n::SOCK_RAW, 0)).unwrap();
    ea.cx(|c| s.bind(c, &SockAddr::Netlink(0, 0))).unwrap();
    assert_eq!(ea.cx(|c| s.local_addr(c)).unwrap(), SockAddr::Netlink(7, 0));
    // RTM_GETLINK dump.
    ea.send(&s, &nl_request(18, 0x301, &[0u8; 16])).unwrap();
    let links = nl_dump(&mut ea, &s);
    let names: Vec<String> = links
        .iter()
        .map(|(_, p)| {
            let at = &p[16..];
            let len = u16::from_le_bytes([at[0], at[1]]) as usize;
            assert_eq!(u16::from_le_bytes([at[2], at[3]]), 3, "IFLA_IFNAME first");
            String::from_utf8(at[4..len - 1].to_vec()).unwrap()
        })
        .collect();
    assert_eq!(names, ["lo", "eth0"]);
    // RTM_GETADDR dump, IPv4 only: 127.0.0.1/8 on lo, 10.0.0.1/24 on eth0 (not lo's mirror of it).
    ea.send(&s, &nl_request(22, 0x301, &[2, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    let addrs: Vec<(u8, u32, Vec<u8>)> =
        nl_dump(&mut ea, &s).into_iter().map(|(_, p)| (p[1], u32::from_le_bytes(p[4..8].try_into().unwrap()), p[12..16].to_vec())).collect();
    assert_eq!(addrs, vec![(8, 1, vec![127, 0, 0, 1]), (24, 2, vec![10, 0, 0, 1])]);
    // Add an address, then see it.
    let mut body = vec![2u8, 16, 0, 0];
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&[8, 0, 2, 0, 192, 168, 7, 1]);
    ea.send(&s, &nl_request(20, 0x5, &body)).unwrap();
    let (ack, _, _) = ea.recv(&s, 1024, 0).unwrap();
    assert_eq!(u16::from_le_bytes([ack[4], ack[5]]), 2, "NLMSG_ERROR");
    assert_eq!(&ack[16..20], &0i32.to_le_bytes(), "ack");
    ea.send(&s, &nl_request(22, 0x301, &[2, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(nl_dump(&mut ea, &s).len(), 3);
    // The new address is local: reachable through loopback.
    assert!(ea.net.inet.borrow().is_local(smoltcp::wire::IpAddress::v4(192, 168, 7, 1)));
    // Routes: the on-link subnets.
    ea.send(&s, &nl_request(26, 0x301, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    let routes = nl_dump(&mut ea, &s);
    assert!(routes.iter().any(|(_, p)| p[1] == 24), "10.0.0.0/24 listed");
    // Unknown requests get an error message.
    ea.send(&s, &nl_request(0x77, 0x1, &[])).unwrap();
    let (err, _, _) = ea.recv(&s, 1024, 0).unwrap();
    assert_eq!(i32::from_le_bytes(err[16..20].try_into().unwrap()), -(Errno::EOPNOTSUPP.code() as i32));
}

#[test]
fn ifreq_ioctls() {
    let (mut ea, _eb, _a, _b) = two_machines();
    let t = ea.sock(n::SOCK_DGRAM);
    let mut req = [0u8; 40];
    req[..4].copy_from_slice(b"eth0");
    let io = |e: &mut Env, cmd, r: &[u8]| e.cx(|c| t.ioctl(c, cmd, r)).map(|(_, o)| o.unwrap_or_default());
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFADDR, &req).unwrap();
    assert_eq!(&out[20..24], &[10, 0, 0, 1]);
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFNETMASK, &req).unwrap();
    assert_eq!(&out[20..24], &[255, 255, 255, 0]);
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFHWADDR, &req).unwrap();
    assert_eq!(&out[18..24], &[2, 0, 0, 0, 0, 1]);
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFINDEX, &req).unwrap();
    assert_eq!(&out[16..20], &2u32.to_le_bytes());
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFFLAGS, &req).unwrap();
    assert_eq!(u16::from_le_bytes([out[16], out[17]]) & 0x41, 0x41, "up and running");
    // Down: the flag goes, traffic stops.
    let mut down = req;
    down[16] = 0;
    io(&mut ea, linux_raw_sys::ioctl::SIOCSIFFLAGS, &down).unwrap();
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFFLAGS, &req).unwrap();
    assert_eq!(out[16] & 1, 0);
    let mut lo = [0u8; 40];
    lo[..2].copy_from_slice(b"lo");
    let out = io(&mut ea, linux_raw_sys::ioctl::SIOCGIFMTU, &lo).unwrap();
    assert_eq!(&out[16..20], &65536u32.to_le_bytes());
    let mut nope = [0u8; 40];
    nope[..4].copy_from_slice(b"eth9");
    assert_eq!(io(&mut ea, linux_raw_sys::ioctl::SIOCGIFFLAGS, &nope), Err(Errno::ENODEV));
    let (len, recs) = inet::ioctl::ifconf(&ea.net.inet.borrow(), Some(400));
    assert_eq!((len, &recs[..2]), (40, &b"lo"[..]), "only interfaces that are up and addressed");
}

#[test]
fn connect_to_a_silent_host_times_out() {
    let (mut ea, _eb, _a, _b) = two_machines();
    let c = ea.sock(n::SOCK_STREAM);
    assert_eq!(ea.cx(|x| c.connect(x, &SockAddr::Inet([10, 0, 0, 99], 80))), Err(Errno::EINPROGRESS));
    // Nobody answers ARP: a minute and a half of protocol timers.
    for _ in 0..100 {
        ea.now += 1_000_000_000;
        inet::tick(&ea.net.inet, ea.now);
    }
    assert_eq!(ea.cx(|x| c.connect(x, &SockAddr::Inet([10, 0, 0, 99], 80))), Err(Errno::ETIMEDOUT));
    // And an unroutable address is refused at once.
    let d = ea.sock(n::SOCK_STREAM);
    assert_eq!(ea.cx(|x| d.connect(x, &SockAddr::Inet([192, 0, 2, 1], 80))), Err(Errno::ENETUNREACH));
}

#[test]
fn proc_net_files() {
    let mut e = Env::new();
    let (_l, _c, _s) = pair(&mut e, 7777);
    let u = e.sock(n::SOCK_DGRAM);
    e.cx(|c| u.bind(c, &SockAddr::Inet([0; 4], 53))).unwrap();
    let st = e.net.inet.borrow();
    let tcp = inet::procnet::file(&st, "tcp").unwrap();
    let listeners = tcp.lines().filter(|l| l.contains(" 0100007F:1E61 00000000:0000 0A ")).count();
    assert_eq!(listeners, 1, "the listener's pool shows once:\n{tcp}");
    assert_eq!(tcp.lines().filter(|l| l.contains(" 01 ")).count(), 2, "both ends established:\n{tcp}");
    let udp = inet::procnet::file(&st, "udp").unwrap();
    assert_eq!(udp.lines().filter(|l| l.contains(" 00000000:0035 ")).count(), 1, "{udp}");
    let dev = inet::procnet::file(&st, "dev").unwrap();
    let lo = dev.lines().find(|l| l.trim_start().starts_with("lo:")).expect("lo line");
    let fields: Vec<u64> = lo.split(':').nth(1).unwrap().split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields.len(), 16);
    assert!(fields[1] >= 3 && fields[1] == fields[9], "lo counts what it sends as received: {lo}");
    assert_eq!(inet::procnet::file(&st, "tcp6").unwrap().lines().count(), 1, "header only");
}

#[test]
fn a_burst_beyond_the_backlog_waits_instead_of_being_refused() {
    let mut e = Env::new();
    let l = e.sock(n::SOCK_STREAM);
    e.cx(|c| l.bind(c, &lo(7300))).unwrap();
    e.cx(|c| l.listen(c, 1)).unwrap();
    let clients: Vec<_> = (0..20).map(|_| e.sock(n::SOCK_STREAM)).collect();
    for c in &clients {
        assert_eq!(e.cx(|x| c.connect(x, &lo(7300))), Err(Errno::EINPROGRESS));
    }
    e.tick();
    let status = |e: &mut Env| clients.iter().map(|c| e.cx(|x| c.connect(x, &lo(7300)))).collect::<Vec<_>>();
    let first = status(&mut e);
    assert!(first.iter().all(|r| matches!(r, Ok(()) | Err(Errno::EAGAIN))), "nobody is refused: {first:?}");
    // Half-open connections beyond the backlog complete (where Linux would
    // use SYN cookies); those beyond the half-open limit retry.
    let waiting = first.iter().filter(|r| r.is_err()).count();
    let mut accepted = 0;
    while e.cx(|x| l.accept(x)).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 20 - waiting);
    // The dropped SYNs are retried (smoltcp's RTO, backing off) and find
    // room in the listen queue as the server accepts.
    let mut rest = Vec::new();
    for _ in 0..1200 {
        e.now += 100_000_000;
        inet::tick(&e.net.inet, e.now);
        while let Ok(s) = e.cx(|x| l.accept(x)) {
            rest.push(s);
            e.tick();
        }
        if accepted + rest.len() == 20 {
            break;
        }
    }
    assert_eq!(accepted + rest.len(), 20);
    let last = status(&mut e);
    assert!(last.iter().all(|r| *r == Ok(()) || *r == Err(Errno::EISCONN)), "{last:?}");
}

#[test]
fn closing_with_unread_data_resets() {
    let mut e = Env::new();
    let (_l, c, s) = pair(&mut e, 7400);
    e.send(&c, b"unread").unwrap();
    e.tick();
    drop(s);
    e.tick();
    assert_eq!(e.recv(&c, 8, 0).err(), Some(Errno::ECONNRESET));
    assert!(e.ready(&c) & POLLERR == 0, "the reset was reported once");
}
