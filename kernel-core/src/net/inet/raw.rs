//! Raw IPv4 sockets (`SOCK_RAW`, root only), as `ping` uses them: every
//! packet of the protocol is received whole (IPv4 header included); what is
//! sent gets an IPv4 header from the kernel unless `IP_HDRINCL` is set.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::raw::{self, PacketBuffer, PacketMetadata};
use smoltcp::wire::{IpAddress, IpProtocol, IpVersion};

use super::opts::{self, Opts, SOL_IP, SOL_SOCKET};
use super::{endpoint, sockaddr, Stack, StackRef};
use crate::net::{Control, Received, SockAddr, SockCtx, Socket};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

const BUF: usize = 128 * 1024;
const SLOTS: usize = 64;

struct Inner {
    handles: Vec<(usize, SocketHandle)>,
    /// How many interfaces the handles cover (new ones are added lazily).
    peer: Option<IpAddress>,
    opts: Opts,
}

/// A raw IPv4 socket for one protocol.
pub struct RawSock {
    stack: StackRef,
    id: u64,
    wq: WaitRef,
    proto: u8,
    st: RefCell<Inner>,
}

fn sock(s: &mut Stack, k: usize, h: SocketHandle) -> &mut raw::Socket<'static> {
    s.ifaces[k].sockets.get_mut::<raw::Socket<'static>>(h)
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

impl RawSock {
    /// A raw socket for IPv4 protocol `proto` (1..=254).
    pub fn create(stack: StackRef, proto: u8) -> Result<Rc<dyn Socket>, Errno> {
        let id;
        let mut handles = Vec::new();
        {
            let mut s = stack.borrow_mut();
            id = s.new_id();
            let cost = 2 * (SLOTS * core::mem::size_of::<PacketMetadata>() + BUF);
            let mut charges = Vec::new();
            for _ in 0..s.ifaces.len() {
                charges.push(s.charge(cost)?);
            }
            for (k, charge) in charges.into_iter().enumerate() {
                let r = raw::Socket::new(
                    Some(IpVersion::Ipv4),
                    Some(IpProtocol::from(proto)),
                    PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
                    PacketBuffer::new(vec![PacketMetadata::EMPTY; SLOTS], vec![0u8; BUF]),
                );
                handles.push((k, s.add_socket(k, r, charge)));
            }
        }
        let me = Rc::new(RawSock {
            stack: stack.clone(),
            id,
            wq: WaitQueue::new(),
            proto,
            st: RefCell::new(Inner { handles: handles.clone(), peer: None, opts: Opts::new(false) }),
        });
        stack.borrow_mut().watch(id, &me.wq, handles);
        Ok(me)
    }

    fn do_recv(&self, now: u64, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        for &(k, h) in &st.handles {
            let r = sock(&mut s, k, h);
            let pkt = if flags & n::MSG_PEEK != 0 { r.peek() } else { r.recv() };
            let Ok(pkt) = pkt else { continue };
            let full = pkt.len();
            let len = full.min(buf.len());
            buf[..len].copy_from_slice(&pkt[..len]);
            let from = if full >= 20 { [pkt[12], pkt[13], pkt[14], pkt[15]] } else { [0; 4] };
            return Ok(Received { len, full_len: full, from: Some(SockAddr::Inet(from, 0)), control: Control::default() });
        }
        Err(Errno::EAGAIN)
    }

    fn do_send(&self, now: u64, data: &[u8], to: Option<&SockAddr>) -> Result<usize, Errno> {
        let st = self.st.borrow();
        let mut s = self.stack.borrow_mut();
        s.advance(now);
        let dst = match to {
            Some(a) => endpoint(a, false)?.0.unwrap_or(IpAddress::v4(127, 0, 0, 1)),
            None => st.peer.ok_or(Errno::EDESTADDRREQ)?,
        };
        let IpAddress::Ipv4(d4) = dst else { return Err(Errno::EINVAL) };
        let k = s.route(dst)?;
        let pkt = if st.opts.flag(SOL_IP, n::IP_HDRINCL) {
            if data.len() < 20 {
                return Err(Errno::EINVAL);
            }
            data.to_vec()
        } else {
            if data.len() > 65535 - 20 {
                return Err(Errno::EMSGSIZE);
            }
            let src = match s.source_for(dst) {
                Some(IpAddress::Ipv4(a)) => a,
                _ => return Err(Errno::ENETUNREACH),
            };
            let mut p = vec![0u8; 20 + data.len()];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
            p[6] = 0x40; // don't fragment
            p[8] = st.opts.int(SOL_IP, n::IP_TTL).clamp(1, 255) as u8;
            p[9] = self.proto;
            p[12..16].copy_from_slice(&src.octets());
            p[16..20].copy_from_slice(&d4.octets());
            let c = checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p[20..].copy_from_slice(data);
            p
        };
        let Some(&(_, h)) = st.handles.iter().find(|(i, _)| *i == k) else { return Err(Errno::ENETUNREACH) };
        match sock(&mut s, k, h).send_slice(&pkt) {
            Ok(()) => {}
            Err(_) => return Err(Errno::EAGAIN),
        }
        s.dirty = true;
        Ok(data.len())
    }
}

impl Drop for RawSock {
    fn drop(&mut self) {
        let handles = core::mem::take(&mut self.st.get_mut().handles);
        Stack::release_dropped(&self.stack, self.id, &handles);
    }
}

impl FileOps for RawSock {
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
        for &(k, h) in &st.handles {
            if sock(&mut s, k, h).can_recv() {
                m |= POLLIN | POLLRDNORM;
            }
        }
        m
    }
    crate::net::socket_file_ops!();
}

impl Socket for RawSock {
    fn family(&self) -> u32 {
        n::AF_INET
    }
    fn sock_type(&self) -> u32 {
        n::SOCK_RAW
    }
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let (ip, _) = endpoint(addr, false)?;
        let s = self.stack.borrow();
        let _ = cx;
        if let Some(a) = ip {
            s.ifaces_for(Some(a))?;
        }
        Ok(())
    }
    fn connect(&self, _cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let mut st = self.st.borrow_mut();
        st.peer = match addr {
            SockAddr::Unspec => None,
            a => Some(endpoint(a, false)?.0.unwrap_or(IpAddress::v4(127, 0, 0, 1))),
        };
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
        Ok(SockAddr::Inet([0; 4], 0))
    }
    fn peer_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        st.peer.map(|a| sockaddr(Some(a), 0, false)).ok_or(Errno::ENOTCONN)
    }
    fn getsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        let st = self.st.borrow();
        match (level, name) {
            (SOL_SOCKET, n::SO_TYPE) => Ok(opts::int_bytes(n::SOCK_RAW as i32)),
            (SOL_SOCKET, n::SO_PROTOCOL) => Ok(opts::int_bytes(self.proto as i32)),
            (SOL_SOCKET, n::SO_DOMAIN) => Ok(opts::int_bytes(n::AF_INET as i32)),
            (SOL_SOCKET, n::SO_ERROR | n::SO_ACCEPTCONN) => Ok(opts::int_bytes(0)),
            _ => st.opts.get(level, name),
        }
    }
    fn setsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        // ICMP_FILTER (SOL_RAW): accepted; readers filter what they get anyway.
        if level == n::SOL_RAW {
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
