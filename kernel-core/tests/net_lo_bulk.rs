//! Bulk TCP transfer over loopback, driven the way the kernel drives the
//! stack (a poll between calls, microseconds apart): the transfer must never
//! wait for a protocol timer. (It used to: smoltcp rounds a scaled receive
//! window down, so an ACK could pull back the window edge it had advertised;
//! the bytes the sender had already sent there were dropped and only resent
//! after the 1 s retransmission timeout.)

use std::rc::Rc;

use kernel_core::net::{inet, Control, NetStack, SockAddr, SockCtx, Socket, Ucred};
use kernel_core::Errno;
use linux_raw_sys::net as n;

const ROOT: Ucred = Ucred { pid: 7, uid: 0, gid: 0 };

struct Env {
    net: NetStack,
    now: u64,
}

impl Env {
    fn cx<R>(&mut self, f: impl FnOnce(&mut SockCtx<'_>) -> R) -> R {
        f(&mut SockCtx { now_ns: self.now, cred: ROOT, net: &mut self.net })
    }
    /// The kernel loop between two calls: a few microseconds, then a poll.
    fn tick(&mut self) {
        self.now += 2_000;
        inet::tick(&self.net.inet, self.now);
    }
    fn sock(&mut self, rcvbuf: Option<i32>) -> Rc<dyn Socket> {
        let s = self.cx(|c| inet::socket(c, n::AF_INET, n::SOCK_STREAM, 0)).unwrap();
        if let Some(b) = rcvbuf {
            self.cx(|c| s.setsockopt(c, n::SOL_SOCKET, n::SO_RCVBUF, &b.to_le_bytes())).unwrap();
        }
        s
    }
    fn send(&mut self, s: &Rc<dyn Socket>, d: &[u8]) -> Result<usize, Errno> {
        let r = self.cx(|c| s.send(c, d, None, Control::default(), 0));
        self.tick();
        r
    }
    fn recv(&mut self, s: &Rc<dyn Socket>, len: usize) -> Result<usize, Errno> {
        let mut buf = vec![0u8; len];
        let r = self.cx(|c| s.recv(c, &mut buf, 0)).map(|r| r.len);
        self.tick();
        r
    }
}

/// `bench_net tcp_lo_bw`'s pattern: a 1-byte header, then 64 KiB writes
/// until EAGAIN, the peer reading the header byte, then 64 KiB reads until
/// EAGAIN, in turn. (Reads of sizes that are not multiples of the window
/// scale are what made the window edge move back.) Every turn must
/// move data without the clock reaching any protocol timer.
fn bulk(port: u16, rcvbuf: Option<i32>, read: usize) {
    let mut e = Env { net: NetStack::default(), now: 1_000_000 };
    let lo = SockAddr::Inet([127, 0, 0, 1], port);
    let l = e.sock(rcvbuf);
    e.cx(|c| l.bind(c, &lo)).unwrap();
    e.cx(|c| l.listen(c, 4)).unwrap();
    let w = e.sock(rcvbuf);
    assert_eq!(e.cx(|c| w.connect(c, &lo)), Err(Errno::EINPROGRESS));
    e.tick();
    e.cx(|c| w.connect(c, &lo)).unwrap();
    let one = 1i32.to_le_bytes();
    let nodelay = |e: &mut Env, s: &Rc<dyn Socket>| e.cx(|c| s.setsockopt(c, n::IPPROTO_TCP as u32, n::TCP_NODELAY, &one)).unwrap();
    nodelay(&mut e, &w);
    assert_eq!(e.send(&w, b"b"), Ok(1));
    let (r, _) = e.cx(|c| l.accept(c)).unwrap();
    nodelay(&mut e, &r);
    let block = vec![0x5au8; 64 * 1024];
    let total = 1 + 32 * block.len();
    let (mut sent, mut got, mut off) = (1usize, 0usize, 0usize);
    let start = e.now;
    while got < total {
        let mut moved = false;
        while sent < total {
            match e.send(&w, &block[off..]) {
                Ok(k) => {
                    sent += k;
                    off = (off + k) % block.len();
                    moved = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(x) => panic!("send: {x:?}"),
            }
        }
        loop {
            // The header byte alone first, as the benchmark's server reads it.
            let want = if got == 0 { 1 } else { read };
            match e.recv(&r, want) {
                Ok(0) => panic!("early EOF after {got} bytes"),
                Ok(k) => {
                    got += k;
                    moved = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(x) => panic!("recv: {x:?}"),
            }
        }
        assert!(moved, "stalled (waiting for a timer): sent {sent}, received {got}");
    }
    assert_eq!(sent, total);
    // Well under smoltcp's 1 s minimum retransmission timeout.
    assert!(e.now - start < 100_000_000, "took {} ns of stack time", e.now - start);
}

#[test]
fn tcp_lo_bulk_default_buffers() {
    bulk(5100, None, 64 * 1024);
}

#[test]
fn tcp_lo_bulk_large_rcvbuf() {
    // SO_RCVBUF of 1 MiB: smoltcp would scale the window by 2^4.
    bulk(5101, Some(1 << 20), 64 * 1024);
}

#[test]
fn tcp_lo_bulk_odd_reads() {
    bulk(5102, None, 4093);
}
