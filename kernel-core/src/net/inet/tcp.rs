//! TCP sockets.
//!
//! smoltcp has no listen backlog: one of its sockets accepts one
//! connection. The stack keeps a listen queue per listener (see
//! `Listener` in the parent module): a listening smoltcp socket is made
//! when a SYN arrives, up to the backlog, and `accept` takes an
//! established one out of it. Every smoltcp socket and its buffers are
//! charged to the guest's memory budget before they are allocated.
//!
//! Buffer sizes follow Linux's knobs: `SO_RCVBUF`/`SO_SNDBUF` are doubled
//! and clamped to `rmem_max`/`wmem_max` (and at least the minimums), and a
//! socket without them gets the defaults of `tcp_rmem`/`tcp_wmem` (see
//! [`TCP_RMEM`], [`TCP_WMEM`], shown in `/proc/sys/net/ipv4/`).

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use super::opts::{self, Opts, SOL_IP, SOL_IPV6, SOL_SOCKET, SOL_TCP};
use super::{endpoint, sockaddr, Proto, Stack, StackRef};
use crate::net::{Control, Received, SockAddr, SockCtx, Socket};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// `net.ipv4.tcp_rmem`: min, default, max receive buffer.
pub const TCP_RMEM: [usize; 3] = [4096, 65535, 65535];
/// `net.ipv4.tcp_wmem`: min, default, max send buffer.
pub const TCP_WMEM: [usize; 3] = [4096, 65536, 4 << 20];
/// `net.core.rmem_max` / `wmem_max`: the most `SO_RCVBUF`/`SO_SNDBUF` grant.
pub const RMEM_MAX: usize = 212_992;
/// See [`RMEM_MAX`].
pub const WMEM_MAX: usize = 212_992;
/// The largest receive buffer. A bigger one makes smoltcp scale its window,
/// and it rounds a scaled window down: an ACK can then pull back the right
/// edge of the window it advertised before by up to 2^shift - 1 bytes.
/// Bytes a sender already sent into that sliver are dropped, and a smoltcp
/// sender resends them only after its 1 s minimum retransmission timeout,
/// so bulk transfers over loopback stalled for a second every few windows.
/// An unscaled window is exact and never shrinks.
const MAX_RCV: usize = 65535;

enum Mode {
    /// Not connected (maybe bound).
    Idle,
    /// Listening (the listen queue lives in the stack).
    Listen,
    /// A connection (being set up while `connecting`).
    Conn { iface: usize, h: SocketHandle, connecting: bool },
}

struct Inner {
    local: Option<(Option<IpAddress>, u16)>,
    mode: Mode,
    opts: Opts,
    /// Pending `SO_ERROR`.
    err: Option<Errno>,
    shut_rd: bool,
    shut_wr: bool,
    /// A connection attempt completed that `connect` has not reported yet
    /// (a blocking connect re-runs and must then return 0, not EISCONN).
    conn_done: bool,
    /// A connection attempt failed that `connect` has not reported yet: the
    /// next `connect` returns its error, or ECONNABORTED if `SO_ERROR`
    /// took it (as Linux).
    failed: bool,
    /// When the last connection attempt started (ns).
    connect_at: u64,
}

/// A TCP socket.
pub struct TcpSock {
    stack: StackRef,
    id: u64,
    wq: WaitRef,
    v6: bool,
    st: RefCell<Inner>,
    /// The socket object, charged to the guest's budget.
    _charge: crate::budget::Charge,
}

fn sock(s: &mut Stack, k: usize, h: SocketHandle) -> &mut tcp::Socket<'static> {
    s.ifaces[k].sockets.get_mut::<tcp::Socket<'static>>(h)
}

/// The receive and send buffer sizes for a socket with options `o`.
fn buffer_sizes(o: &Opts) -> (usize, usize) {
    let defaults = Opts::new(true);
    // An explicit SO_RCVBUF/SO_SNDBUF (stored doubled and clamped, as Linux
    // reports it) sizes the buffer; else the tcp_rmem/tcp_wmem default.
    let size = |name, dflt: usize, max: usize| {
        let v = o.int(SOL_SOCKET, name);
        if v != defaults.int(SOL_SOCKET, name) {
            (v.max(0) as usize / 2).clamp(2048, max)
        } else {
            dflt
        }
    };
    let rcv = size(n::SO_RCVBUF, TCP_RMEM[1], RMEM_MAX).min(MAX_RCV);
    let snd = size(n::SO_SNDBUF, TCP_WMEM[1], WMEM_MAX);
    (rcv, snd)
}

/// What the buffers of a socket with options `o` cost.
pub(super) fn buffer_bytes(o: &Opts) -> usize {
    let (r, w) = buffer_sizes(o);
    r + w
}

/// A new smoltcp socket with the buffers and options of `o` (charge
/// [`buffer_bytes`] first).
pub(super) fn new_socket(o: &Opts) -> tcp::Socket<'static> {
    let (rcv, snd) = buffer_sizes(o);
    let mut t = tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; rcv]), tcp::SocketBuffer::new(vec![0u8; snd]));
    apply(&mut t, o);
    t
}

/// Apply the options that change smoltcp's behaviour.
fn apply(t: &mut tcp::Socket<'static>, o: &Opts) {
    // Delayed ACKs cost a timer round per window on loopback (smoltcp waits 10 ms).
    t.set_ack_delay(None);
    t.set_nagle_enabled(!o.flag(SOL_TCP, n::TCP_NODELAY));
    if o.flag(SOL_SOCKET, n::SO_KEEPALIVE) {
        let idle = o.int(SOL_TCP, n::TCP_KEEPIDLE).clamp(1, 32767) as u64;
        t.set_keep_alive(Some(Duration::from_secs(idle)));
    } else {
        t.set_keep_alive(None);
    }
    let ttl = o.int(SOL_IP, n::IP_TTL).clamp(1, 255) as u8;
    t.set_hop_limit(Some(ttl));
}

impl TcpSock {
    /// A new unconnected socket.
    pub fn create(stack: StackRef, v6: bool, charge: crate::budget::Charge) -> Rc<dyn Socket> {
        let id = stack.borrow_mut().new_id();
        Rc::new(TcpSock {
            stack,
            id,
            wq: WaitQueue::new(),
            v6,
            st: RefCell::new(Inner { local: None, mode: Mode::Idle, opts: Opts::new(true), err: None, shut_rd: false, shut_wr: false, conn_done: false, failed: false, connect_at: 0 }),
            _charge: charge,
        })
    }

    /// A failed connection attempt becomes an idle socket with a pending error.
    fn refresh(&self, st: &mut Inner, s: &mut Stack) {
        if let Mode::Conn { iface, h, connecting: true } = st.mode {
            let state = sock(s, iface, h).state();
            if state == State::Closed {
                let timed_out = s.now.saturating_sub(st.connect_at) >= super::CONNECT_TIMEOUT_S * 1_000_000_000;
                st.err = Some(if s.was_reset(self.id) && !timed_out { Errno::ECONNREFUSED } else { Errno::ETIMEDOUT });
                st.failed = true;
                s.release(self.id, &[(iface, h)], true);
                // The port stays bound, as Linux keeps it after a failed connect.
                st.mode = Mode::Idle;
            } else if state != State::SynSent && state != State::SynReceived {
                if let Mode::Conn { connecting, .. } = &mut st.mode {
                    *connecting = false;
                }
                st.conn_done = true;
            }
        }
    }

    fn readiness(&self, st: &Inner, s: &mut Stack) -> u32 {
        let mut m = 0;
        if st.err.is_some() {
            m |= POLLERR;
        }
        match st.mode {
            Mode::Idle => {
                m |= POLLOUT | POLLWRNORM | POLLHUP;
                if st.err.is_some() || st.shut_rd {
                    m |= POLLIN | POLLRDNORM | POLLRDHUP;
                }
            }
            Mode::Listen => {
                if s.listener_ready(self.id) {
                    m |= POLLIN | POLLRDNORM;
                }
            }
            Mode::Conn { iface, h, .. } => {
                let reset = s.was_reset(self.id);
                let t = sock(s, iface, h);
                let state = t.state();
                if matches!(state, State::SynSent | State::SynReceived) {
                    return m;
                }
                let peer_fin = !t.may_recv() && state != State::Established && state != State::FinWait1 && state != State::FinWait2;
                let rd_shut = st.shut_rd || peer_fin || state == State::Closed;
                let wr_shut = st.shut_wr || !t.may_send();
                if t.can_recv() {
                    m |= POLLIN | POLLRDNORM;
                }
                if rd_shut {
                    m |= POLLIN | POLLRDNORM | POLLRDHUP;
                }
                if (rd_shut && wr_shut) || state == State::Closed {
                    m |= POLLHUP;
                }
                if wr_shut || t.can_send() && t.send_queue() < t.send_capacity() {
                    m |= POLLOUT | POLLWRNORM;
                }
                if reset {
                    m |= POLLERR;
                }
            }
        }
        m
    }

    fn do_send(&self, now: u64, data: &[u8]) -> Result<usize, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        self.refresh(&mut st, &mut s);
        if let Some(e) = st.err.take() {
            return Err(e);
        }
        let Mode::Conn { iface, h, connecting } = st.mode else { return Err(Errno::EPIPE) };
        if connecting {
            return Err(Errno::EAGAIN);
        }
        if s.was_reset(self.id) {
            s.clear_reset(self.id);
            st.shut_wr = true;
            return Err(Errno::ECONNRESET);
        }
        if st.shut_wr {
            return Err(Errno::EPIPE);
        }
        let t = sock(&mut s, iface, h);
        if !t.may_send() {
            return Err(Errno::EPIPE);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = t.send_slice(data).map_err(|_| Errno::EPIPE)?;
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        s.dirty = true;
        Ok(n)
    }

    fn do_recv(&self, now: u64, buf: &mut [u8], flags: u32) -> Result<usize, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        self.refresh(&mut st, &mut s);
        if let Some(e) = st.err.take() {
            return Err(e);
        }
        let Mode::Conn { iface, h, connecting } = st.mode else { return Err(Errno::ENOTCONN) };
        if connecting {
            return Err(Errno::EAGAIN);
        }
        let reset = s.was_reset(self.id);
        let t = sock(&mut s, iface, h);
        if t.can_recv() && !st.shut_rd {
            let n = if flags & n::MSG_PEEK != 0 {
                t.peek_slice(buf).unwrap_or(0)
            } else if flags & n::MSG_TRUNC != 0 {
                // Linux discards the bytes and reports how many.
                let want = buf.len();
                t.recv(|b| {
                    let k = b.len().min(want);
                    (k, k)
                })
                .unwrap_or(0)
            } else {
                t.recv_slice(buf).unwrap_or(0)
            };
            if flags & n::MSG_PEEK == 0 {
                // The window opened: let the peer know.
                s.dirty = true;
            }
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if reset {
            s.clear_reset(self.id);
            st.shut_rd = true;
            st.shut_wr = true;
            return Err(Errno::ECONNRESET);
        }
        if st.shut_rd || !t.may_recv() {
            return Ok(0);
        }
        Err(Errno::EAGAIN)
    }

    fn handles(&self, st: &Inner, s: &Stack) -> super::Handles {
        match &st.mode {
            Mode::Idle => Vec::new(),
            Mode::Listen => s.listen_pool(self.id),
            Mode::Conn { iface, h, .. } => vec![(*iface, *h)],
        }
    }
}

impl Drop for TcpSock {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        let linger0 = st.opts.linger_abort();
        if let Ok(mut s) = self.stack.try_borrow_mut() {
            let handles = match st.mode {
                Mode::Listen => s.unlisten(self.id),
                Mode::Conn { iface, h, .. } => vec![(iface, h)],
                Mode::Idle => Vec::new(),
            };
            // Closing with unread data resets the connection, as Linux does.
            let unread = match st.mode {
                Mode::Conn { iface, h, .. } => sock(&mut s, iface, h).recv_queue() > 0,
                _ => false,
            };
            s.release(self.id, &handles, linger0 || unread);
        }
    }
}

impl FileOps for TcpSock {
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.do_recv(io.now, buf, 0)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        self.do_send(io.now, data)
    }
    fn poll(&self, io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(io.now);
        self.refresh(&mut st, &mut s);
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        self.readiness(&st, &mut s)
    }
    crate::net::socket_file_ops!();
}

impl Socket for TcpSock {
    fn family(&self) -> u32 {
        super::family_of(self.v6)
    }
    fn sock_type(&self) -> u32 {
        n::SOCK_STREAM
    }

    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let (ip, port) = endpoint(addr, self.v6)?;
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if st.local.is_some() || !matches!(st.mode, Mode::Idle) {
            return Err(Errno::EINVAL);
        }
        if let Some(a) = ip {
            s.ifaces_for(Some(a))?;
        }
        if port != 0 && port < 1024 && cx.cred.uid != 0 {
            return Err(Errno::EACCES);
        }
        let reuse = st.opts.flag(SOL_SOCKET, n::SO_REUSEADDR);
        let port = s.bind_port(self.id, Proto::Tcp, ip, port, reuse)?;
        st.local = Some((ip, port));
        super::bound_v6only(&mut st.opts, ip);
        Ok(())
    }

    fn connect(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        self.refresh(&mut st, &mut s);
        match st.mode {
            Mode::Conn { connecting: true, .. } => return Err(Errno::EAGAIN),
            Mode::Conn { .. } if st.conn_done => {
                st.conn_done = false;
                return Ok(());
            }
            Mode::Conn { .. } => return Err(Errno::EISCONN),
            Mode::Listen { .. } => return Err(Errno::EISCONN),
            Mode::Idle => {}
        }
        if st.failed {
            st.failed = false;
            return Err(st.err.take().unwrap_or(Errno::ECONNABORTED));
        }
        if let Some(e) = st.err.take() {
            return Err(e);
        }
        if matches!(addr, SockAddr::Unspec) {
            return Ok(());
        }
        let (ip, port) = endpoint(addr, self.v6)?;
        // Connecting to the wildcard address reaches this machine, as on Linux.
        let ip = ip.unwrap_or(if self.v6 { IpAddress::Ipv6(smoltcp::wire::Ipv6Address::LOCALHOST) } else { IpAddress::v4(127, 0, 0, 1) });
        if port == 0 {
            return Err(Errno::ECONNREFUSED);
        }
        let iface = s.route(ip)?;
        let (laddr, lport) = match st.local {
            Some(l) => l,
            None => {
                let p = s.bind_port(self.id, Proto::Tcp, None, 0, false)?;
                st.local = Some((None, p));
                (None, p)
            }
        };
        let charge = s.charge(buffer_bytes(&st.opts))?;
        let mut t = new_socket(&st.opts);
        t.set_timeout(Some(Duration::from_secs(super::CONNECT_TIMEOUT_S)));
        let cxi = s.ifaces[iface].iface.context();
        t.connect(cxi, (ip, port), IpListenEndpoint { addr: laddr, port: lport }).map_err(|_| Errno::EADDRNOTAVAIL)?;
        let h = s.add_socket(iface, t, charge);
        st.mode = Mode::Conn { iface, h, connecting: true };
        st.connect_at = s.now;
        st.shut_rd = false;
        st.shut_wr = false;
        s.clear_reset(self.id);
        s.watch(self.id, &self.wq, vec![(iface, h)]);
        // The handshake runs when the stack is next polled; a blocking
        // caller waits and re-runs (then EAGAIN until it is done).
        Err(Errno::EINPROGRESS)
    }

    fn listen(&self, cx: &mut SockCtx<'_>, backlog: u32) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        match &mut st.mode {
            Mode::Conn { .. } => return Err(Errno::EINVAL),
            Mode::Listen => {
                let o = st.opts.clone();
                return s.listen_on(self.id, IpListenEndpoint::default(), backlog, &o);
            }
            Mode::Idle => {}
        }
        let (ip, port) = match st.local {
            Some(l) => l,
            None => {
                let p = s.bind_port(self.id, Proto::Tcp, None, 0, false)?;
                st.local = Some((None, p));
                (None, p)
            }
        };
        s.set_listening(self.id)?;
        let lep = IpListenEndpoint { addr: ip, port };
        let o = st.opts.clone();
        s.listen_on(self.id, lep, backlog, &o)?;
        s.watch(self.id, &self.wq, Vec::new());
        st.mode = Mode::Listen;
        Ok(())
    }

    fn accept(&self, cx: &mut SockCtx<'_>) -> Result<(Rc<dyn Socket>, SockAddr), Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        let opts = st.opts.clone();
        let Mode::Listen = st.mode else { return Err(Errno::EINVAL) };
        if !s.listener_ready(self.id) {
            return Err(Errno::EAGAIN);
        }
        let charge = s.charge_object()?;
        let Some((k, h)) = s.take_established(self.id) else { return Err(Errno::EAGAIN) };
        // The listen queue made room: SYNs waiting for it get through now.
        s.dirty = true;
        let t = sock(&mut s, k, h);
        let local = t.local_endpoint();
        let peer = t.remote_endpoint();
        let id = s.new_id();
        let child = Rc::new(TcpSock {
            stack: self.stack.clone(),
            id,
            wq: WaitQueue::new(),
            v6: self.v6,
            st: RefCell::new(Inner {
                local: local.map(|e| (Some(e.addr), e.port)),
                mode: Mode::Conn { iface: k, h, connecting: false },
                opts,
                err: None,
                shut_rd: false,
                shut_wr: false,
                conn_done: false,
                failed: false,
                connect_at: 0,
            }),
            _charge: charge,
        });
        s.watch(id, &child.wq, vec![(k, h)]);
        if let Some(l) = local {
            s.hold_port(id, Proto::Tcp, Some(l.addr), l.port);
        }
        let from = peer.map_or(sockaddr(None, 0, self.v6), |e| sockaddr(Some(e.addr), e.port, self.v6));
        drop(s);
        Ok((child, from))
    }

    fn send(&self, cx: &mut SockCtx<'_>, data: &[u8], _to: Option<&SockAddr>, _control: Control, _flags: u32) -> Result<usize, Errno> {
        // A destination on a connected stream socket is ignored, as Linux does.
        self.do_send(cx.now_ns, data)
    }

    fn recv(&self, cx: &mut SockCtx<'_>, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let len = self.do_recv(cx.now_ns, buf, flags)?;
        Ok(Received { len, full_len: len, from: None, control: Control::default() })
    }

    fn shutdown(&self, cx: &mut SockCtx<'_>, how: u32) -> Result<(), Errno> {
        if how > n::SHUT_RDWR {
            return Err(Errno::EINVAL);
        }
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        self.refresh(&mut st, &mut s);
        let Mode::Conn { iface, h, .. } = st.mode else {
            // Linux records the shutdown even so (poll then reports it).
            st.shut_rd |= how != n::SHUT_WR;
            st.shut_wr |= how != n::SHUT_RD;
            self.wq.notify();
            return Err(Errno::ENOTCONN);
        };
        if how != n::SHUT_WR {
            st.shut_rd = true;
        }
        if how != n::SHUT_RD && !st.shut_wr {
            st.shut_wr = true;
            sock(&mut s, iface, h).close();
        }
        s.dirty = true;
        // Readiness changed even if no packet moves (POLLRDHUP on SHUT_RD).
        self.wq.notify();
        Ok(())
    }

    fn local_addr(&self, cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if let Mode::Conn { iface, h, .. } = st.mode {
            if let Some(e) = sock(&mut s, iface, h).local_endpoint() {
                return Ok(sockaddr(Some(e.addr), e.port, self.v6));
            }
        }
        Ok(match st.local {
            Some((a, p)) => sockaddr(a, p, self.v6),
            None => sockaddr(None, 0, self.v6),
        })
    }

    fn peer_addr(&self, cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        self.refresh(&mut st, &mut s);
        let Mode::Conn { iface, h, connecting: false } = st.mode else { return Err(Errno::ENOTCONN) };
        let t = sock(&mut s, iface, h);
        match t.remote_endpoint() {
            Some(e) if t.state() != State::Closed => Ok(sockaddr(Some(e.addr), e.port, self.v6)),
            _ => Err(Errno::ENOTCONN),
        }
    }

    fn getsockopt(&self, cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        self.refresh(&mut st, &mut s);
        match (level, name) {
            (SOL_SOCKET, n::SO_TYPE) => Ok(opts::int_bytes(n::SOCK_STREAM as i32)),
            (SOL_SOCKET, n::SO_PROTOCOL) => Ok(opts::int_bytes(n::IPPROTO_TCP as i32)),
            (SOL_SOCKET, n::SO_DOMAIN) => Ok(opts::int_bytes(self.family() as i32)),
            (SOL_SOCKET, n::SO_ACCEPTCONN) => Ok(opts::int_bytes(matches!(st.mode, Mode::Listen { .. }) as i32)),
            (SOL_SOCKET, n::SO_ERROR) => {
                let e = st.err.take().map_or(0, |e| e.code() as i32);
                Ok(opts::int_bytes(e))
            }
            (SOL_TCP, n::TCP_MAXSEG) => {
                let mss = match st.mode {
                    Mode::Conn { iface, .. } => s.ifaces[iface].port.mtu().saturating_sub(40).min(65483),
                    _ => 536,
                };
                Ok(opts::int_bytes(mss as i32))
            }
            (SOL_IPV6, _) if !self.v6 => Err(Errno::ENOPROTOOPT),
            _ => st.opts.get(level, name),
        }
    }

    fn setsockopt(&self, cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        if level == SOL_IPV6 && !self.v6 {
            return Err(Errno::ENOPROTOOPT);
        }
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        st.opts.set(level, name, value)?;
        let o = st.opts.clone();
        for (k, h) in self.handles(&st, &s) {
            apply(sock(&mut s, k, h), &o);
        }
        s.listener_opts(self.id, &o);
        Ok(())
    }

    fn ioctl(&self, cx: &mut SockCtx<'_>, cmd: u32, arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        match cmd {
            // FIONREAD/SIOCINQ and TIOCOUTQ/SIOCOUTQ.
            linux_raw_sys::ioctl::FIONREAD | 0x5411 => {
                let v = match st.mode {
                    Mode::Conn { iface, h, .. } => {
                        let t = sock(&mut s, iface, h);
                        if cmd == linux_raw_sys::ioctl::FIONREAD {
                            t.recv_queue()
                        } else {
                            t.send_queue()
                        }
                    }
                    Mode::Listen { .. } if cmd == linux_raw_sys::ioctl::FIONREAD => return Err(Errno::EINVAL),
                    _ => 0,
                };
                Ok((0, Some(opts::int_bytes(v as i32))))
            }
            _ => super::ioctl::ifreq(&mut s, cx.cred.uid == 0, cmd, arg),
        }
    }
}
