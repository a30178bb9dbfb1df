//! ICMP echo ("ping") datagram sockets, as Linux's `SOCK_DGRAM`
//! `IPPROTO_ICMP`: the caller writes an echo request (header and payload),
//! the kernel sets the identifier to the socket's and the checksum; reads
//! return echo replies for that identifier.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::icmp::{self, Endpoint, PacketBuffer, PacketMetadata};
use smoltcp::wire::IpAddress;

use super::opts::{self, Opts, SOL_IP, SOL_SOCKET};
use super::{endpoint, sockaddr, Proto, Stack, StackRef};
use crate::net::{Control, Received, SockAddr, SockCtx, Socket};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

const BUF: usize = 64 * 1024;
const SLOTS: usize = 32;

struct Inner {
    ident: Option<u16>,
    addr: Option<IpAddress>,
    handles: Vec<(usize, SocketHandle)>,
    peer: Option<IpAddress>,
    opts: Opts,
    /// Echo replies received, oldest first.
    rx: alloc::collections::VecDeque<(Vec<u8>, IpAddress)>,
}

/// A ping socket.
pub struct PingSock {
    stack: StackRef,
    id: u64,
    wq: WaitRef,
    v6: bool,
    st: RefCell<Inner>,
}

fn sock(s: &mut Stack, k: usize, h: SocketHandle) -> &mut icmp::Socket<'static> {
    s.ifaces[k].sockets.get_mut::<icmp::Socket<'static>>(h)
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], 0]) };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl PingSock {
    /// A new ping socket.
    pub fn create(stack: StackRef, v6: bool) -> Rc<dyn Socket> {
        let id = stack.borrow_mut().new_id();
        Rc::new(PingSock {
            stack,
            id,
            wq: WaitQueue::new(),
            v6,
            st: RefCell::new(Inner { ident: None, addr: None, handles: Vec::new(), peer: None, opts: Opts::new(false), rx: Default::default() }),
        })
    }

    fn bind_to(&self, st: &mut Inner, s: &mut Stack, ip: Option<IpAddress>, ident: u16) -> Result<(), Errno> {
        let ifaces = s.ifaces_for(ip)?;
        let ident = s.bind_port(self.id, Proto::Icmp, ip, ident, false)?;
        for k in ifaces {
            let cost = 2 * (SLOTS * core::mem::size_of::<PacketMetadata>() + BUF);
            let charge = match s.charge(cost) {
                Ok(c) => c,
                Err(e) => {
                    s.release(self.id, &core::mem::take(&mut st.handles), false);
                    return Err(e);
                }
            };
            let mut c = icmp::Socket::new(
                PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
                PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
            );
            c.set_hop_limit(Some(st.opts.int(SOL_IP, n::IP_TTL).clamp(1, 255) as u8));
            if c.bind(Endpoint::Ident(ident)).is_ok() {
                st.handles.push((k, s.add_socket(k, c, charge)));
            }
        }
        st.ident = Some(ident);
        st.addr = ip;
        s.watch(self.id, &self.wq, st.handles.clone());
        Ok(())
    }

    fn do_recv(&self, now: u64, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        drop(st);
        self.pull(&mut s);
        let mut st = self.st.borrow_mut();
        let Some((data, from)) = (if flags & n::MSG_PEEK != 0 { st.rx.front().cloned() } else { st.rx.pop_front() }) else {
            return Err(Errno::EAGAIN);
        };
        let len = data.len().min(buf.len());
        buf[..len].copy_from_slice(&data[..len]);
        Ok(Received { len, full_len: data.len(), from: Some(sockaddr(Some(from), 0, self.v6)), control: Control::default() })
    }

    /// Move echo replies from smoltcp into our queue (our own requests loop
    /// back to us on lo and are dropped: only replies are for the reader).
    fn pull(&self, s: &mut Stack) {
        let mut st = self.st.borrow_mut();
        let reply = if self.v6 { 129 } else { 0 };
        let handles = st.handles.clone();
        for (k, h) in handles {
            let c = sock(s, k, h);
            while let Ok((data, from)) = c.recv() {
                if data.len() >= 8 && data[0] == reply && st.rx.len() < SLOTS {
                    st.rx.push_back((data.to_vec(), from));
                }
            }
        }
    }

    fn do_send(&self, now: u64, data: &[u8], to: Option<&SockAddr>) -> Result<usize, Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        let dst = match to {
            Some(a) => endpoint(a, self.v6)?.0.ok_or(Errno::EINVAL)?,
            None => st.peer.ok_or(Errno::EDESTADDRREQ)?,
        };
        let request = if self.v6 { 128 } else { 8 };
        if data.len() < 8 || data[0] != request || data[1] != 0 {
            return Err(Errno::EINVAL);
        }
        if st.ident.is_none() {
            self.bind_to(&mut st, &mut s, None, 0)?;
        }
        let ident = st.ident.unwrap_or(0);
        let k = s.route(dst)?;
        let Some(&(_, h)) = st.handles.iter().find(|(i, _)| *i == k) else { return Err(Errno::ENETUNREACH) };
        let mut pkt = data.to_vec();
        pkt[4..6].copy_from_slice(&ident.to_be_bytes());
        pkt[2..4].copy_from_slice(&[0, 0]);
        if !self.v6 {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        } else {
            // ICMPv6 checksums cover a pseudo-header: let smoltcp's parser
            // accept it on loopback (checksums ignored) and compute it for links.
            let src = s.source_for(dst).ok_or(Errno::ENETUNREACH)?;
            if let (IpAddress::Ipv6(sa), IpAddress::Ipv6(da)) = (src, dst) {
                let mut ph = Vec::with_capacity(40 + pkt.len());
                ph.extend_from_slice(&sa.octets());
                ph.extend_from_slice(&da.octets());
                ph.extend_from_slice(&(pkt.len() as u32).to_be_bytes());
                ph.extend_from_slice(&[0, 0, 0, 58]);
                ph.extend_from_slice(&pkt);
                let c = checksum(&ph);
                pkt[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        match sock(&mut s, k, h).send_slice(&pkt, dst) {
            Ok(()) => {}
            Err(icmp::SendError::BufferFull) => return Err(Errno::EAGAIN),
            Err(_) => return Err(Errno::EINVAL),
        }
        s.dirty = true;
        Ok(data.len())
    }
}

impl Drop for PingSock {
    fn drop(&mut self) {
        let handles = core::mem::take(&mut self.st.get_mut().handles);
        Stack::release_dropped(&self.stack, self.id, &handles);
    }
}

impl FileOps for PingSock {
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
        let mut m = POLLOUT | POLLWRNORM;
        drop(st);
        self.pull(&mut s);
        if !self.st.borrow().rx.is_empty() {
            m |= POLLIN | POLLRDNORM;
        }
        m
    }
    crate::net::socket_file_ops!();
}

impl Socket for PingSock {
    fn family(&self) -> u32 {
        super::family_of(self.v6)
    }
    fn sock_type(&self) -> u32 {
        n::SOCK_DGRAM
    }
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let (ip, ident) = endpoint(addr, self.v6)?;
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if st.ident.is_some() {
            return Err(Errno::EINVAL);
        }
        self.bind_to(&mut st, &mut s, ip, ident)
    }
    fn connect(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        if matches!(addr, SockAddr::Unspec) {
            st.peer = None;
            return Ok(());
        }
        let ip = endpoint(addr, self.v6)?.0.ok_or(Errno::EINVAL)?;
        s.route(ip)?;
        if st.ident.is_none() {
            self.bind_to(&mut st, &mut s, None, 0)?;
        }
        st.peer = Some(ip);
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
    fn shutdown(&self, _cx: &mut SockCtx<'_>, _how: u32) -> Result<(), Errno> {
        Err(Errno::ENOTCONN)
    }
    fn local_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        Ok(sockaddr(st.addr, st.ident.unwrap_or(0), self.v6))
    }
    fn peer_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        st.peer.map(|a| sockaddr(Some(a), 0, self.v6)).ok_or(Errno::ENOTCONN)
    }
    fn getsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        let st = self.st.borrow();
        match (level, name) {
            (SOL_SOCKET, n::SO_TYPE) => Ok(opts::int_bytes(n::SOCK_DGRAM as i32)),
            (SOL_SOCKET, n::SO_PROTOCOL) => {
                Ok(opts::int_bytes(if self.v6 { n::IPPROTO_ICMPV6 as i32 } else { n::IPPROTO_ICMP as i32 }))
            }
            (SOL_SOCKET, n::SO_DOMAIN) => Ok(opts::int_bytes(self.family() as i32)),
            (SOL_SOCKET, n::SO_ERROR | n::SO_ACCEPTCONN) => Ok(opts::int_bytes(0)),
            _ => st.opts.get(level, name),
        }
    }
    fn setsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        // ping sets ICMP_FILTER-like options at SOL_RAW and friends: accept those quietly.
        if level == n::SOL_RAW || level == n::SOL_ICMPV6 {
            return Ok(());
        }
        self.st.borrow_mut().opts.set(level, name, value)
    }
    fn ioctl(&self, cx: &mut SockCtx<'_>, cmd: u32, arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
        let mut s = self.stack.borrow_mut();
        s.advance(cx.now_ns);
        super::ioctl::ifreq(&mut s, cx.cred.uid == 0, cmd, arg)
    }
}
