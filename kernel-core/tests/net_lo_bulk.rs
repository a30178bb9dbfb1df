//! Bulk TCP transfer over loopback between two sockets driven the way the
//! kernel drives them (a poll between calls, microseconds apart): the
//! transfer must never wait for a protocol timer.

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
    fn tick(&mut self) {
        self.now += 2_000;
        inet::tick(&self.net.inet, self.now);
        self.dump();
    }
    fn dump(&self) {
        let st = self.net.inet.borrow();
        for (_, so) in st.ifaces[0].sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(t) = so { if t.state() != smoltcp::socket::tcp::State::Listen {
                let d = format!("{:?}", t);
                let mut out = String::new();
                let mut rest = d.as_str();
                while let Some(i) = rest.find("storage: Owned([") { out.push_str(&rest[..i]); let j = rest[i..].find("])").unwrap(); rest = &rest[i+j+2..]; }
                out.push_str(rest);
                let keep: Vec<&str> = out.split(", ").filter(|f| ["assembler","local_seq_no","remote_seq_no","remote_last_seq","remote_last_ack","remote_last_win","remote_win_len","read_at","length","timer"].iter().any(|k| f.contains(k))).collect();
                eprintln!("  {}", keep.join(", "));
            } }
        }
    }
    fn sock(&mut self) -> Rc<dyn Socket> {
        self.cx(|c| inet::socket(c, n::AF_INET, n::SOCK_STREAM, 0)).unwrap()
    }
    fn send(&mut self, s: &Rc<dyn Socket>, d: &[u8]) -> Result<usize, Errno> {
        let r = self.cx(|c| s.send(c, d, None, Control::default(), 0));
        eprintln!("send {} -> {:?}", d.len(), r);
        self.tick();
        r
    }
    fn recv(&mut self, s: &Rc<dyn Socket>, len: usize) -> Result<usize, Errno> {
        let mut buf = vec![0u8; len];
        let r = self.cx(|c| s.recv(c, &mut buf, 0)).map(|r| r.len);
        eprintln!("recv {} -> {:?}", len, r);
        self.tick();
        r
    }
}

#[test]
fn tcp_lo_bulk_never_waits_for_a_timer() {
    let mut e = Env { net: NetStack::default(), now: 1_000_000 };
    let lo = SockAddr::Inet([127, 0, 0, 1], 5100);
    let l = e.sock();
    e.cx(|c| l.bind(c, &lo)).unwrap();
    e.cx(|c| l.listen(c, 4)).unwrap();
    let w = e.sock();
    assert_eq!(e.cx(|c| w.connect(c, &lo)), Err(Errno::EINPROGRESS));
    e.tick();
    e.cx(|c| w.connect(c, &lo)).unwrap();
    let one = 1i32.to_le_bytes();
    e.cx(|c| w.setsockopt(c, n::IPPROTO_TCP as u32, n::TCP_NODELAY, &one)).unwrap();
    assert_eq!(e.send(&w, b"b"), Ok(1));
    let (r, _) = e.cx(|c| l.accept(c)).unwrap();
    e.cx(|c| r.setsockopt(c, n::IPPROTO_TCP as u32, n::TCP_NODELAY, &one)).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    let total = 64 * block.len();
    let (mut sent, mut got, mut off) = (0usize, 0usize, 0usize);
    let mut rounds = 0;
    let mut got_b = false;
    while got < total + 1 {
        rounds += 1;
        assert!(rounds < 10_000, "stalled: sent {sent} got {got} (now {} ns)", e.now);
        // The writer writes until it would block...
        let mut progress = false;
        while sent < total {
            match e.send(&w, &block[off..]) {
                Ok(k) => {
                    sent += k;
                    off = (off + k) % block.len();
                    progress = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(x) => panic!("send: {x:?}"),
            }
        }
        // ...then the reader reads until it would block.
        loop {
            let want = if got_b { block.len() } else { 1 };
            match e.recv(&r, want) {
                Ok(0) => panic!("early EOF"),
                Ok(k) => {
                    got_b = true;
                    got += k;
                    progress = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(x) => panic!("recv: {x:?}"),
            }
        }
        if !progress {
            let st = e.net.inet.borrow();
            for (_, so) in st.ifaces[0].sockets.iter() {
                if let smoltcp::socket::Socket::Tcp(t) = so { if t.state() != smoltcp::socket::tcp::State::Listen { eprintln!("{:#?}", t); } }
            }
            eprintln!("stats {:?}", st.ifaces[0].port.stats);
        }
        assert!(progress, "no progress without a timer: sent {sent} got {got}");
    }
    assert_eq!(got, total + 1);
}
