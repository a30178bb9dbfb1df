//! UDP sockets: one smoltcp UDP socket per interface the bound address
//! lives on (all of them for the wildcard).

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, PacketBuffer, PacketMetadata, UdpMetadata};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use super::opts::{self, Opts, SOL_IP, SOL_IPV6, SOL_SOCKET};
use super::{endpoint, sockaddr, Proto, Stack, StackRef};
use crate::net::{Control, PktInfo, Received, SockAddr, SockCtx, Socket};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// Payload bytes each way (a maximal datagram fits twice).
const BUF: usize = 160 * 1024;
/// Datagrams queued each way.
const SLOTS: usize = 128;
/// The largest UDP payload over IPv4.
const MAX_DGRAM: usize = 65507;

struct Inner {
    local: Option<(Option<IpAddress>, u16)>,
    handles: Vec<(usize, SocketHandle)>,
    peer: Option<(IpAddress, u16)>,
    opts: Opts,
    shut_rd: bool,
    shut_wr: bool,
}

/// A UDP socket.
pub struct UdpSock {
    stack: StackRef,
    id: u64,
    wq: WaitRef,
    v6: bool,
    st: RefCell<Inner>,
    /// The socket object, charged to the guest's budget.
    _charge: crate::budget::Charge,
}

fn sock(s: &mut Stack, k: usize, h: SocketHandle) -> &mut udp::Socket<'static> {
    s.ifaces[k].sockets.get_mut::<udp::Socket<'static>>(h)
}

impl UdpSock {
    /// A new unbound socket.
    pub fn create(stack: StackRef, v6: bool, charge: crate::budget::Charge) -> Rc<dyn Socket> {
        let id = stack.borrow_mut().new_id();
        Rc::new(UdpSock {
            stack,
            id,
            wq: WaitQueue::new(),
            v6,
            st: RefCell::new(Inner { local: None, handles: Vec::new(), peer: None, opts: Opts::new(false), shut_rd: false, shut_wr: false }),
            _charge: charge,
        })
    }

    /// Bind to (`ip`, `port`) (port 0: ephemeral) and open the smoltcp sockets.
    fn bind_to(&self, st: &mut Inner, s: &mut Stack, ip: Option<IpAddress>, port: u16) -> Result<(), Errno> {
        let ifaces = s.ifaces_for(ip)?;
        let reuse = st.opts.flag(SOL_SOCKET, n::SO_REUSEADDR) || st.opts.flag(SOL_SOCKET, n::SO_REUSEPORT);
        let port = s.bind_port(self.id, Proto::Udp, ip, port, reuse)?;
        let ttl = st.opts.int(SOL_IP, n::IP_TTL).clamp(1, 255) as u8;
        // Charge every interface's socket before any buffer is allocated.
        let cost = 2 * (SLOTS * core::mem::size_of::<PacketMetadata>() + BUF);
        let mut charges = Vec::new();
        for _ in &ifaces {
            match s.charge(cost) {
                Ok(c) => charges.push(c),
                Err(e) => {
                    s.unbind(self.id);
                    return Err(e);
                }
            }
        }
        for (k, charge) in ifaces.into_iter().zip(charges) {
            let mut u = udp::Socket::new(
                PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
                PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
            );
            u.set_hop_limit(Some(ttl));
            if u.bind(IpListenEndpoint { addr: ip, port }).is_err() {
                continue;
            }
            let h = s.add_socket(k, u, charge);
            st.handles.push((k, h));
        }
        st.local = Some((ip, port));
        s.watch(self.id, &self.wq, st.handles.clone());
        Ok(())
    }

    fn autobind(&self, st: &mut Inner, s: &mut Stack) -> Result<(), Errno> {
        if st.local.is_none() {
            self.bind_to(st, s, None, 0)?;
        }
        Ok(())
    }

    fn do_recv(&self, now: u64, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        let peer = st.peer;
        let want_info = if self.v6 { st.opts.flag(SOL_IPV6, n::IPV6_RECVPKTINFO) } else { st.opts.flag(SOL_IP, n::IP_PKTINFO) };
        for &(k, h) in &st.handles {
            let ifindex = s.ifaces.get(k).map_or(0, |i| i.index);
            let u = sock(&mut s, k, h);
            while let Ok((data, meta)) = u.peek() {
                let from = (meta.endpoint.addr, meta.endpoint.port);
                let pktinfo = meta.local_address.filter(|_| want_info).map(|dst| pktinfo(ifindex, dst, self.v6));
                // A connected socket only hears from its peer.
                if peer.is_some_and(|p| p != from) {
                    let _ = u.recv();
                    continue;
                }
                let full = data.len();
                let len = full.min(buf.len());
                buf[..len].copy_from_slice(&data[..len]);
                if flags & n::MSG_PEEK == 0 {
                    let _ = u.recv();
                }
                return Ok(Received {
                    len,
                    full_len: full,
                    from: Some(sockaddr(Some(from.0), from.1, self.v6)),
                    control: Control { pktinfo, ..Control::default() },
                });
            }
        }
        if st.shut_rd {
            return Ok(Received { len: 0, full_len: 0, from: None, control: Control::default() });
        }
        Err(Errno::EAGAIN)
    }

    fn do_send(&self, now: u64, data: &[u8], to: Option<&SockAddr>) -> Result<usize, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        if st.shut_wr {
            return Err(Errno::EPIPE);
        }
        let (ip, port) = match to {
            Some(a) => {
                let (ip, port) = endpoint(a, self.v6)?;
                (ip.unwrap_or(if self.v6 { IpAddress::Ipv6(smoltcp::wire::Ipv6Address::LOCALHOST) } else { IpAddress::v4(127, 0, 0, 1) }), port)
            }
            None => st.peer.ok_or(Errno::EDESTADDRREQ)?,
        };
        if port == 0 {
            return Err(Errno::EINVAL);
        }
        if data.len() > MAX_DGRAM {
            return Err(Errno::EMSGSIZE);
        }
        self.autobind(&mut st, &mut s)?;
        let k = s.route(ip)?;
        let Some(&(_, h)) = st.handles.iter().find(|(i, _)| *i == k) else { return Err(Errno::ENETUNREACH) };
        let meta = UdpMetadata::from(IpEndpoint { addr: ip, port });
        match sock(&mut s, k, h).send_slice(data, meta) {
            Ok(()) => {}
            Err(udp::SendError::BufferFull) => return Err(Errno::EAGAIN),
            Err(udp::SendError::Unaddressable) => return Err(Errno::EINVAL),
        }
        s.dirty = true;
        Ok(data.len())
    }

    fn readiness(&self, st: &Inner, s: &mut Stack) -> u32 {
        let mut m = 0;
        let mut can_send = st.handles.is_empty();
        for &(k, h) in &st.handles {
            let u = sock(s, k, h);
            if u.can_recv() {
                m |= POLLIN | POLLRDNORM;
            }
            can_send |= u.can_send();
        }
        if st.shut_rd {
            m |= POLLIN | POLLRDNORM | crate::wait::POLLRDHUP;
        }
        if can_send {
            m |= POLLOUT | POLLWRNORM;
        }
        if st.shut_rd && st.shut_wr {
            m |= crate::wait::POLLHUP;
        }
        m
    }
}

/// `IP_PKTINFO`/`IPV6_PKTINFO` of a datagram sent to `dst`.
fn pktinfo(ifindex: u32, dst: IpAddress, v6: bool) -> PktInfo {
    let mut a = [0u8; 16];
    match dst {
        IpAddress::Ipv4(d) if v6 => {
            a[10] = 0xff;
            a[11] = 0xff;
            a[12..].copy_from_slice(&d.octets());
        }
        IpAddress::Ipv4(d) => a[..4].copy_from_slice(&d.octets()),
        IpAddress::Ipv6(d) => a.copy_from_slice(&d.octets()),
    }
    PktInfo { ifindex, dst: a, v6 }
}

impl Drop for UdpSock {
    fn drop(&mut self) {
        let handles = core::mem::take(&mut self.st.get_mut().handles);
        Stack::release_dropped(&self.stack, self.id, &handles);
    }
}

impl FileOps for UdpSock {
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.do_recv(io.now, buf, 0).map(|r| r.len)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        self.do_send(io.now, data, None)
    }
    fn poll(&self, io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(io.now);
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        self.readiness(&st, &mut s)
    }
    crate::net::socket_file_ops!();
}

impl Socket for UdpSock {
    fn family(&self) -> u32 {
        super::family_of(self.v6)
    }
    fn sock_type(&self) -> u32 {
        n::SOCK_DGRAM
    }
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let (ip, port) = endpoint(addr, self.v6)?;
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if st.local.is_some() {
            return Err(Errno::EINVAL);
        }
        if port != 0 && port < 1024 && cx.cred.uid != 0 {
            return Err(Errno::EACCES);
        }
        self.bind_to(&mut st, &mut s, ip, port)?;
        super::bound_v6only(&mut st.opts, ip);
        Ok(())
    }
    fn connect(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if matches!(addr, SockAddr::Unspec) {
            st.peer = None;
            return Ok(());
        }
        let (ip, port) = endpoint(addr, self.v6)?;
        let ip = ip.unwrap_or(if self.v6 { IpAddress::Ipv6(smoltcp::wire::Ipv6Address::LOCALHOST) } else { IpAddress::v4(127, 0, 0, 1) });
        s.route(ip)?;
        self.autobind(&mut st, &mut s)?;
        st.peer = Some((ip, port));
        Ok(())
    }
    fn listen(&self, _cx: &mut SockCtx<'_>, _backlog: u32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    fn accept(&self, _cx: &mut SockCtx<'_>) -> Result<(Rc<dyn Socket>, SockAddr), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    fn send(&self, cx: &mut SockCtx<'_>, data: &[u8], to: Option<&SockAddr>, _control: Control, _flags: u32) -> Result<usize, Errno> {
        self.do_send(cx.now_ns, data, to)
    }
    fn recv(&self, cx: &mut SockCtx<'_>, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        self.do_recv(cx.now_ns, buf, flags)
    }
    fn shutdown(&self, _cx: &mut SockCtx<'_>, how: u32) -> Result<(), Errno> {
        if how > n::SHUT_RDWR {
            return Err(Errno::EINVAL);
        }
        let mut st = self.st.borrow_mut();
        if st.peer.is_none() {
            return Err(Errno::ENOTCONN);
        }
        if how != n::SHUT_WR {
            st.shut_rd = true;
        }
        if how != n::SHUT_RD {
            st.shut_wr = true;
        }
        self.wq.notify();
        Ok(())
    }
    fn local_addr(&self, cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        let s = self.stack.borrow();
        let _ = cx;
        Ok(match (st.local, st.peer) {
            // A connected wildcard socket reports the source address its route picks, as Linux.
            (Some((None, p)), Some((peer, _))) => sockaddr(s.source_for(peer), p, self.v6),
            (Some((a, p)), _) => sockaddr(a, p, self.v6),
            (None, _) => sockaddr(None, 0, self.v6),
        })
    }
    fn peer_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        st.peer.map(|(a, p)| sockaddr(Some(a), p, self.v6)).ok_or(Errno::ENOTCONN)
    }
    fn getsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        let st = self.st.borrow();
        match (level, name) {
            (SOL_SOCKET, n::SO_TYPE) => Ok(opts::int_bytes(n::SOCK_DGRAM as i32)),
            (SOL_SOCKET, n::SO_PROTOCOL) => Ok(opts::int_bytes(n::IPPROTO_UDP as i32)),
            (SOL_SOCKET, n::SO_DOMAIN) => Ok(opts::int_bytes(self.family() as i32)),
            (SOL_SOCKET, n::SO_ACCEPTCONN) => Ok(opts::int_bytes(0)),
            (SOL_SOCKET, n::SO_ERROR) => Ok(opts::int_bytes(0)),
            (SOL_IPV6, _) if !self.v6 => Err(Errno::ENOPROTOOPT),
            _ => st.opts.get(level, name),
        }
    }
    fn setsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        if level == SOL_IPV6 && !self.v6 {
            return Err(Errno::ENOPROTOOPT);
        }
        let mut st = self.st.borrow_mut();
        st.opts.set(level, name, value)?;
        if (level, name) == (SOL_IP, n::IP_TTL) {
            let ttl = st.opts.int(SOL_IP, n::IP_TTL).clamp(1, 255) as u8;
            let mut s = self.stack.borrow_mut();
            for &(k, h) in &st.handles {
                sock(&mut s, k, h).set_hop_limit(Some(ttl));
            }
        }
        Ok(())
    }
    fn ioctl(&self, cx: &mut SockCtx<'_>, cmd: u32, arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        match cmd {
            // FIONREAD: the size of the next datagram (Linux), 0 if none.
            linux_raw_sys::ioctl::FIONREAD => {
                let mut v = 0;
                for &(k, h) in &st.handles {
                    if let Ok((d, _)) = sock(&mut s, k, h).peek() {
                        v = d.len();
                        break;
                    }
                }
                Ok((0, Some(opts::int_bytes(v as i32))))
            }
            0x5411 => Ok((0, Some(opts::int_bytes(0)))),
            _ => super::ioctl::ifreq(&mut s, cx.cred.uid == 0, cmd, arg),
        }
    }
}
