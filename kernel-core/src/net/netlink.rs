//! A minimal `NETLINK_ROUTE`: enough for `ip link`, `ip addr` and
//! `ip route` to list (and add/remove IPv4 addresses and default routes)
//! from the IP stack in [`crate::net::inet`].
//!
//! A request is handled when it is sent; the replies (one datagram per
//! message, dumps ending with `NLMSG_DONE`) wait in the socket's queue.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use linux_raw_sys::netlink as nl;
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Address};

use crate::budget::{Charge, Kind as Cost};
use crate::net::inet::ioctl::{self as ifio, ARPHRD_ETHER, ARPHRD_LOOPBACK};
use crate::net::inet::{Stack, StackRef};
use crate::net::{Control, Received, SockAddr, SockCtx, Socket};
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

const NLMSG_HDR: usize = 16;
const RTM_NEWLINK: u16 = nl::RTM_NEWLINK as u16;
const RTM_GETLINK: u16 = nl::RTM_GETLINK as u16;
const RTM_SETLINK: u16 = nl::RTM_SETLINK as u16;
const RTM_NEWADDR: u16 = nl::RTM_NEWADDR as u16;
const RTM_DELADDR: u16 = nl::RTM_DELADDR as u16;
const RTM_GETADDR: u16 = nl::RTM_GETADDR as u16;
const RTM_NEWROUTE: u16 = nl::RTM_NEWROUTE as u16;
const RTM_DELROUTE: u16 = nl::RTM_DELROUTE as u16;
const RTM_GETROUTE: u16 = nl::RTM_GETROUTE as u16;
const NLM_F_REQUEST: u16 = nl::NLM_F_REQUEST as u16;
const NLM_F_MULTI: u16 = nl::NLM_F_MULTI as u16;
const NLM_F_ACK: u16 = nl::NLM_F_ACK as u16;
const NLM_F_DUMP: u16 = nl::NLM_F_DUMP as u16;
// rtnetlink enum values (bindgen has them as enum types).
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RT_TABLE_MAIN: u8 = 254;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RTPROT_KERNEL: u8 = 2;
const RTPROT_BOOT: u8 = 3;
/// Most replies queued before a request is refused with `ENOBUFS`.
const MAX_QUEUED: usize = 1024;

fn align4(x: usize) -> usize {
    (x + 3) & !3
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// A message being built: header, fixed part, then attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32, pid: u32) -> Msg {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&pid.to_le_bytes());
        Msg(v)
    }
    fn raw(&mut self, b: &[u8]) -> &mut Msg {
        self.0.extend_from_slice(b);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    fn attr(&mut self, ty: u16, b: &[u8]) -> &mut Msg {
        self.0.extend_from_slice(&((4 + b.len()) as u16).to_le_bytes());
        self.0.extend_from_slice(&ty.to_le_bytes());
        self.raw(b)
    }
    fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_le_bytes())
    }
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// The attributes after a message's fixed part: (type, payload).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    let mut o = 0;
    while o + 4 <= b.len() {
        let len = u16_at(b, o) as usize;
        if len < 4 || o + len > b.len() {
            break;
        }
        v.push((u16_at(b, o + 2) & 0x3fff, &b[o + 4..o + len]));
        o += align4(len);
    }
    v
}

struct Inner {
    portid: u32,
    groups: u32,
    rx: VecDeque<Vec<u8>>,
    /// The bytes queued in `rx`, taken from the guest's budget.
    queued: Charge,
}

/// A `NETLINK_ROUTE` socket.
pub struct NetlinkSock {
    /// The socket object's charge to the guest's budget.
    _obj: Charge,
    stack: StackRef,
    ty: u32,
    wq: WaitRef,
    st: RefCell<Inner>,
}

/// `socket(AF_NETLINK, type, protocol)`.
pub fn socket(cx: &mut SockCtx<'_>, domain: u32, ty: u32, protocol: u32) -> Result<Rc<dyn Socket>, Errno> {
    if domain != n::AF_NETLINK {
        return Err(Errno::EAFNOSUPPORT);
    }
    let ty = ty & 0xf;
    if ty != n::SOCK_RAW && ty != n::SOCK_DGRAM {
        return Err(Errno::ESOCKTNOSUPPORT);
    }
    if protocol != nl::NETLINK_ROUTE {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let (obj, queued) = {
        let stack = cx.net.inet.borrow();
        (stack.charge_object()?, Charge::empty(stack.budget(), Cost::Netlink))
    };
    Ok(Rc::new(NetlinkSock {
        _obj: obj,
        stack: cx.net.inet.clone(),
        ty,
        wq: WaitQueue::new(),
        st: RefCell::new(Inner { portid: 0, groups: 0, rx: VecDeque::new(), queued }),
    }))
}

fn link_msg(s: &Stack, k: usize, seq: u32, pid: u32, flags: u16) -> Vec<u8> {
    let i = &s.ifaces[k];
    let lo = i.is_loopback();
    let mut m = Msg::new(RTM_NEWLINK, flags, seq, pid);
    let mut ifi = [0u8; 16];
    ifi[0] = n::AF_UNSPEC as u8;
    ifi[2..4].copy_from_slice(&(if lo { ARPHRD_LOOPBACK } else { ARPHRD_ETHER }).to_le_bytes());
    ifi[4..8].copy_from_slice(&i.index.to_le_bytes());
    let fl = ifio::flags(s, k) | if i.port.up { 0x10000 } else { 0 }; // IFF_LOWER_UP
    ifi[8..12].copy_from_slice(&fl.to_le_bytes());
    m.raw(&ifi);
    let mut name = i.name.as_bytes().to_vec();
    name.push(0);
    m.attr(nl::IFLA_IFNAME as u16, &name);
    m.u32(nl::IFLA_TXQLEN as u16, 1000);
    // IF_OPER_UNKNOWN for lo (as Linux), IF_OPER_UP / IF_OPER_DOWN otherwise.
    let oper: u8 = if lo { 0 } else if i.port.up { 6 } else { 2 };
    m.attr(nl::IFLA_OPERSTATE as u16, &[oper]);
    m.attr(nl::IFLA_LINKMODE as u16, &[0]);
    m.u32(nl::IFLA_MTU as u16, ifio::mtu(s, k));
    m.attr(nl::IFLA_QDISC as u16, if lo { b"noqueue\0" } else { b"pfifo_fast\0" });
    m.attr(nl::IFLA_ADDRESS as u16, &i.port.mac());
    m.attr(nl::IFLA_BROADCAST as u16, if lo { &[0u8; 6] } else { &[0xffu8; 6] });
    let st = &i.port.stats;
    // struct rtnl_link_stats (u32 counters) and rtnl_link_stats64.
    let c = [st.rx_packets, st.tx_packets, st.rx_bytes, st.tx_bytes, st.rx_errors, 0, st.rx_dropped, 0];
    let mut s32 = [0u8; 24 * 4];
    let mut s64 = [0u8; 24 * 8];
    for (j, v) in c.iter().enumerate() {
        s32[j * 4..j * 4 + 4].copy_from_slice(&(*v as u32).to_le_bytes());
        s64[j * 8..j * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    m.attr(nl::IFLA_STATS as u16, &s32);
    m.attr(nl::IFLA_STATS64 as u16, &s64);
    m.done()
}

fn addr_msgs(s: &Stack, k: usize, family: u8, seq: u32, pid: u32, flags: u16, out: &mut Vec<Vec<u8>>) {
    let i = &s.ifaces[k];
    let lo = i.is_loopback();
    let label = {
        let mut v = i.name.as_bytes().to_vec();
        v.push(0);
        v
    };
    if family == 0 || family == n::AF_INET as u8 {
        for (a, p) in ifio::own_v4(s, k) {
            let mut m = Msg::new(RTM_NEWADDR, flags, seq, pid);
            // ifaddrmsg: family, prefixlen, flags (IFA_F_PERMANENT), scope, index.
            let scope = if lo { RT_SCOPE_HOST } else { RT_SCOPE_UNIVERSE };
            m.raw(&[n::AF_INET as u8, p, 0x80, scope]).raw(&i.index.to_le_bytes());
            m.attr(nl::IFA_ADDRESS as u16, &a);
            m.attr(nl::IFA_LOCAL as u16, &a);
            if !lo {
                let b = (u32::from_be_bytes(a) | !u32::from_be_bytes(ifio::mask(p))).to_be_bytes();
                m.attr(nl::IFA_BROADCAST as u16, &b);
            }
            m.attr(nl::IFA_LABEL as u16, &label);
            m.u32(nl::IFA_FLAGS as u16, 0x80);
            out.push(m.done());
        }
    }
    if family == 0 || family == n::AF_INET6 as u8 {
        for (a, p) in ifio::own_v6(s, k) {
            let mut m = Msg::new(RTM_NEWADDR, flags, seq, pid);
            let scope = if lo { RT_SCOPE_HOST } else { RT_SCOPE_UNIVERSE };
            m.raw(&[n::AF_INET6 as u8, p, 0x80, scope]).raw(&i.index.to_le_bytes());
            m.attr(nl::IFA_ADDRESS as u16, &a);
            m.u32(nl::IFA_FLAGS as u16, 0x80);
            out.push(m.done());
        }
    }
}

fn route_msgs(s: &Stack, family: u8, seq: u32, pid: u32, flags: u16, out: &mut Vec<Vec<u8>>) {
    if family != 0 && family != n::AF_INET as u8 {
        return;
    }
    let rt = |dst_len: u8, proto: u8, scope: u8| {
        let mut m = Msg::new(RTM_NEWROUTE, flags, seq, pid);
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        m.raw(&[n::AF_INET as u8, dst_len, 0, 0, RT_TABLE_MAIN, proto, scope, RTN_UNICAST]);
        m.raw(&0u32.to_le_bytes());
        m.u32(RTA_TABLE, RT_TABLE_MAIN as u32);
        m
    };
    for (k, i) in s.ifaces.iter().enumerate().skip(1) {
        if !i.port.up {
            continue;
        }
        if let Some(r) = i.iface.routes().get_default_ipv4_route() {
            if let IpAddress::Ipv4(gw) = r.via_router {
                let mut m = rt(0, RTPROT_BOOT, RT_SCOPE_UNIVERSE);
                m.attr(RTA_GATEWAY, &gw.octets());
                m.u32(RTA_OIF, i.index);
                out.push(m.done());
            }
        }
        for r in s.routes.iter().filter(|r| r.oif == i.index) {
            let mut m = rt(r.len, RTPROT_BOOT, RT_SCOPE_UNIVERSE);
            m.attr(RTA_DST, &r.dst);
            m.attr(RTA_GATEWAY, &r.gw);
            m.u32(RTA_OIF, i.index);
            out.push(m.done());
        }
        for (a, p) in ifio::own_v4(s, k) {
            let net = (u32::from_be_bytes(a) & u32::from_be_bytes(ifio::mask(p))).to_be_bytes();
            let mut m = rt(p, RTPROT_KERNEL, RT_SCOPE_LINK);
            m.attr(RTA_DST, &net);
            m.attr(RTA_PREFSRC, &a);
            m.u32(RTA_OIF, i.index);
            out.push(m.done());
        }
    }
}

/// `ip route add|del NET/LEN via GW [dev DEV]`: a static route to a prefix
/// (on-link routes follow the addresses; routes without a gateway are not
/// supported).
fn prefix_route(s: &mut Stack, del: bool, len: u8, at: &[(u16, &[u8])], gw: Option<&[u8]>, oif: Option<u32>) -> Result<(), Errno> {
    if len > 32 {
        return Err(Errno::EINVAL);
    }
    let dst = at.iter().find(|(t, _)| *t == RTA_DST).map(|(_, v)| *v).filter(|v| v.len() == 4).ok_or(Errno::EINVAL)?;
    let dst = [dst[0], dst[1], dst[2], dst[3]];
    // Linux refuses a prefix with host bits set.
    if u32::from_be_bytes(dst) & !(u32::MAX << (32 - u32::from(len))) != 0 {
        return Err(Errno::EINVAL);
    }
    let same = |r: &crate::net::inet::forward::Route4| r.dst == dst && r.len == len;
    if del {
        let j = s.routes.iter().position(same).ok_or(Errno::ESRCH)?;
        let r = s.routes.remove(j);
        if let Some(k) = s.by_index(r.oif) {
            let (cidr, via) = (r.smoltcp().cidr, r.smoltcp().via_router);
            s.ifaces[k].iface.routes_mut().update(|v| v.retain(|x| x.cidr != cidr || x.via_router != via));
        }
        s.dirty = true;
        return Ok(());
    }
    let Some(gw) = gw.filter(|g| g.len() == 4) else { return Err(Errno::EOPNOTSUPP) };
    let gw = [gw[0], gw[1], gw[2], gw[3]];
    let ga = IpAddress::v4(gw[0], gw[1], gw[2], gw[3]);
    let onlink = |i: &crate::net::inet::Iface| !i.is_loopback() && i.iface.ip_addrs().iter().any(|c| c.contains_addr(&ga));
    let k = match oif {
        Some(i) => s.by_index(i).filter(|&k| onlink(&s.ifaces[k])).ok_or(Errno::ENETUNREACH)?,
        None => s.ifaces.iter().position(onlink).ok_or(Errno::ENETUNREACH)?,
    };
    if s.routes.iter().any(same) {
        return Err(Errno::EEXIST);
    }
    let r = crate::net::inet::forward::Route4 { oif: s.ifaces[k].index, dst, len, gw };
    let mut full = false;
    s.ifaces[k].iface.routes_mut().update(|v| full = v.push(r.smoltcp()).is_err());
    if full {
        return Err(Errno::ENOSPC);
    }
    s.routes.push(r);
    s.dirty = true;
    Ok(())
}

fn error_msg(e: i32, req: &[u8], pid: u32) -> Vec<u8> {
    let seq = u32_at(req, 8);
    // An ACK (error 0) carries only the request header, an error the header too (no payload echo).
    let mut m = Msg::new(nl::NLMSG_ERROR as u16, if e == 0 { 0x100 } else { 0 }, seq, pid);
    m.raw(&e.to_le_bytes());
    m.raw(&req[..NLMSG_HDR]);
    m.done()
}

/// Handle one request; its replies go to `out`.
fn handle(s: &mut Stack, req: &[u8], pid: u32, root: bool, out: &mut Vec<Vec<u8>>) -> Result<(), Errno> {
    let ty = u16_at(req, 4);
    let flags = u16_at(req, 6);
    let seq = u32_at(req, 8);
    let body = &req[NLMSG_HDR..];
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let family = body.first().copied().unwrap_or(0);
    match ty {
        RTM_GETLINK => {
            if dump {
                for k in 0..s.ifaces.len() {
                    out.push(link_msg(s, k, seq, pid, NLM_F_MULTI));
                }
            } else {
                let idx = if body.len() >= 8 { u32_at(body, 4) } else { 0 };
                let by_name = if body.len() >= 16 {
                    attrs(&body[16..]).into_iter().find(|(t, _)| *t == nl::IFLA_IFNAME as u16).map(|(_, v)| {
                        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                        s.by_name(&v[..end])
                    })
                } else {
                    None
                };
                let k = match by_name {
                    Some(k) => k,
                    None if idx != 0 => s.by_index(idx),
                    None => None,
                }
                .ok_or(Errno::ENODEV)?;
                out.push(link_msg(s, k, seq, pid, 0));
            }
        }
        RTM_GETADDR => {
            if !dump {
                return Err(Errno::EOPNOTSUPP);
            }
            for k in 0..s.ifaces.len() {
                addr_msgs(s, k, family, seq, pid, NLM_F_MULTI, out);
            }
        }
        RTM_GETROUTE => {
            if !dump {
                return Err(Errno::EOPNOTSUPP);
            }
            route_msgs(s, family, seq, pid, NLM_F_MULTI, out);
        }
        RTM_SETLINK | RTM_NEWLINK => {
            if !root {
                return Err(Errno::EPERM);
            }
            if body.len() < 16 {
                return Err(Errno::EINVAL);
            }
            let k = s.by_index(u32_at(body, 4)).ok_or(Errno::ENODEV)?;
            let (fl, change) = (u32_at(body, 8), u32_at(body, 12));
            if change & ifio::IFF_UP != 0 || change == 0 && fl & ifio::IFF_UP != 0 {
                s.ifaces[k].port.up = fl & ifio::IFF_UP != 0;
                s.dirty = true;
            }
        }
        RTM_NEWADDR | RTM_DELADDR => {
            if !root {
                return Err(Errno::EPERM);
            }
            if body.len() < 8 {
                return Err(Errno::EINVAL);
            }
            let prefix = body[1];
            let k = s.by_index(u32_at(body, 4)).ok_or(Errno::ENODEV)?;
            let at = attrs(&body[8..]);
            let a = at
                .iter()
                .find(|(t, _)| *t == nl::IFA_LOCAL as u16)
                .or_else(|| at.iter().find(|(t, _)| *t == nl::IFA_ADDRESS as u16))
                .map(|(_, v)| *v)
                .ok_or(Errno::EINVAL)?;
            if family != n::AF_INET as u8 || a.len() != 4 || prefix > 32 {
                return Err(Errno::EAFNOSUPPORT);
            }
            let ip = IpAddress::Ipv4(Ipv4Address::new(a[0], a[1], a[2], a[3]));
            let cidr = IpCidr::new(ip, prefix);
            let mut err = None;
            s.ifaces[k].iface.update_ip_addrs(|v| {
                let at = v.iter().position(|c| c.address() == ip);
                if ty == RTM_NEWADDR {
                    match at {
                        Some(_) => err = Some(Errno::EEXIST),
                        None => err = v.push(cidr).err().map(|_| Errno::ENOSPC),
                    }
                } else {
                    match at {
                        Some(j) => {
                            v.remove(j);
                        }
                        None => err = Some(Errno::EADDRNOTAVAIL),
                    }
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            s.sync_lo();
            s.dirty = true;
        }
        RTM_NEWROUTE | RTM_DELROUTE => {
            if !root {
                return Err(Errno::EPERM);
            }
            if body.len() < 12 || family != n::AF_INET as u8 {
                return Err(Errno::EAFNOSUPPORT);
            }
            let dst_len = body[1];
            let at = attrs(&body[12..]);
            let gw = at.iter().find(|(t, _)| *t == RTA_GATEWAY).map(|(_, v)| *v);
            let oif = at.iter().find(|(t, _)| *t == RTA_OIF).map(|(_, v)| if v.len() >= 4 { u32_at(v, 0) } else { 0 });
            if dst_len != 0 {
                prefix_route(s, ty == RTM_DELROUTE, dst_len, &at, gw, oif)?;
                if flags & NLM_F_ACK != 0 {
                    out.push(error_msg(0, req, pid));
                }
                return Ok(());
            }
            if ty == RTM_DELROUTE {
                let mut found = false;
                for i in s.ifaces.iter_mut() {
                    found |= i.iface.routes_mut().remove_default_ipv4_route().is_some();
                }
                return if found { Ok(()) } else { Err(Errno::ESRCH) };
            }
            let gw = gw.filter(|g| g.len() == 4).ok_or(Errno::EINVAL)?;
            let gw = Ipv4Address::new(gw[0], gw[1], gw[2], gw[3]);
            let k = match oif {
                Some(i) => s.by_index(i).ok_or(Errno::ENODEV)?,
                None => s
                    .ifaces
                    .iter()
                    .position(|i| !i.is_loopback() && i.iface.ip_addrs().iter().any(|c| c.contains_addr(&IpAddress::Ipv4(gw))))
                    .ok_or(Errno::ENETUNREACH)?,
            };
            if s.ifaces[k].iface.routes().get_default_ipv4_route().is_some() {
                return Err(Errno::EEXIST);
            }
            s.ifaces[k].iface.routes_mut().add_default_ipv4_route(gw).map_err(|_| Errno::ENOSPC)?;
        }
        _ => return Err(Errno::EOPNOTSUPP),
    }
    if dump {
        let mut m = Msg::new(nl::NLMSG_DONE as u16, NLM_F_MULTI, seq, pid);
        m.raw(&0i32.to_le_bytes());
        out.push(m.done());
    } else if flags & NLM_F_ACK != 0 && !matches!(ty, RTM_GETLINK) {
        out.push(error_msg(0, req, pid));
    }
    Ok(())
}

impl FileOps for NetlinkSock {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.take(buf, 0).map(|r| r.len)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        self.request(data, io.pid, true)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        let mut m = POLLOUT | POLLWRNORM;
        if !self.st.borrow().rx.is_empty() {
            m |= POLLIN | POLLRDNORM;
        }
        m
    }
    crate::net::socket_file_ops!();
}

impl NetlinkSock {
    fn autobind(&self, pid: u32) {
        let mut st = self.st.borrow_mut();
        if st.portid == 0 {
            st.portid = pid.max(1);
        }
    }

    /// Handle every message in `data`, queueing the replies.
    fn request(&self, data: &[u8], pid: u32, root: bool) -> Result<usize, Errno> {
        self.autobind(pid);
        let portid = self.st.borrow().portid;
        let mut out = Vec::new();
        let mut o = 0;
        {
            let mut s = self.stack.borrow_mut();
            while o + NLMSG_HDR <= data.len() {
                let len = u32_at(data, o) as usize;
                if len < NLMSG_HDR || o + len > data.len() {
                    break;
                }
                let req = &data[o..o + len];
                if u16_at(req, 6) & NLM_F_REQUEST != 0 {
                    if let Err(e) = handle(&mut s, req, portid, root, &mut out) {
                        out.push(error_msg(-(e.code() as i32), req, portid));
                    }
                }
                o += align4(len);
            }
        }
        let mut st = self.st.borrow_mut();
        if st.rx.len() + out.len() > MAX_QUEUED {
            return Err(Errno::ENOBUFS);
        }
        let bytes: usize = out.iter().map(Vec::len).sum();
        st.queued.grow(bytes).map_err(|_| Errno::ENOBUFS)?;
        // A dump is one datagram per message here: readers loop until NLMSG_DONE.
        st.rx.extend(out);
        self.wq.notify();
        Ok(data.len())
    }

    fn take(&self, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let mut st = self.st.borrow_mut();
        let Some(front) = st.rx.front() else { return Err(Errno::EAGAIN) };
        let full = front.len();
        let len = full.min(buf.len());
        buf[..len].copy_from_slice(&front[..len]);
        if flags & n::MSG_PEEK == 0 {
            st.rx.pop_front();
            let left = st.queued.bytes().saturating_sub(full);
            let _ = st.queued.resize(left);
        }
        Ok(Received { len, full_len: full, from: Some(SockAddr::Netlink(0, 0)), control: Control::default() })
    }
}

impl Socket for NetlinkSock {
    fn family(&self) -> u32 {
        n::AF_NETLINK
    }
    fn sock_type(&self) -> u32 {
        self.ty
    }
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        let SockAddr::Netlink(pid, groups) = *addr else { return Err(Errno::EINVAL) };
        let mut st = self.st.borrow_mut();
        st.portid = if pid != 0 { pid } else { cx.cred.pid.max(1) };
        st.groups = groups;
        Ok(())
    }
    fn connect(&self, cx: &mut SockCtx<'_>, _addr: &SockAddr) -> Result<(), Errno> {
        self.autobind(cx.cred.pid);
        Ok(())
    }
    fn listen(&self, _cx: &mut SockCtx<'_>, _backlog: u32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    fn accept(&self, _cx: &mut SockCtx<'_>) -> Result<(Rc<dyn Socket>, SockAddr), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
    fn send(&self, cx: &mut SockCtx<'_>, data: &[u8], _to: Option<&SockAddr>, _control: Control, _flags: u32) -> Result<usize, Errno> {
        self.request(data, cx.cred.pid, cx.cred.uid == 0)
    }
    fn recv(&self, _cx: &mut SockCtx<'_>, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        self.take(buf, flags)
    }
    fn shutdown(&self, _cx: &mut SockCtx<'_>, _how: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn local_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let st = self.st.borrow();
        Ok(SockAddr::Netlink(st.portid, st.groups))
    }
    fn peer_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        Ok(SockAddr::Netlink(0, 0))
    }
    fn getsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        match (level, name) {
            (n::SOL_SOCKET, n::SO_TYPE) => Ok((self.ty as i32).to_le_bytes().to_vec()),
            (n::SOL_SOCKET, n::SO_PROTOCOL) => Ok(0i32.to_le_bytes().to_vec()),
            (n::SOL_SOCKET, n::SO_DOMAIN) => Ok((n::AF_NETLINK as i32).to_le_bytes().to_vec()),
            (n::SOL_SOCKET, n::SO_ERROR) => Ok(0i32.to_le_bytes().to_vec()),
            (n::SOL_SOCKET, n::SO_RCVBUF | n::SO_SNDBUF) => Ok(212992i32.to_le_bytes().to_vec()),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
    fn setsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, _name: u32, _value: &[u8]) -> Result<(), Errno> {
        // Buffer sizes, NETLINK_EXT_ACK, strict checking...: accepted, no effect.
        if level == n::SOL_SOCKET || level == n::SOL_NETLINK {
            Ok(())
        } else {
            Err(Errno::ENOPROTOOPT)
        }
    }
}
