//! AF_INET/AF_INET6 sockets over smoltcp.
//!
//! Each interface (`lo`, then the links handed to the kernel at boot) is a
//! smoltcp `Interface` with its own `SocketSet`: smoltcp binds a socket set's
//! traffic to the one device it is polled with, so a socket lives in the set
//! of the interface its traffic goes through. `lo` also carries every local
//! address of the other interfaces (as /32 and /128), so traffic from the
//! machine to itself always goes through loopback, as on Linux. A socket
//! listening or bound to a wildcard address has one smoltcp socket per
//! interface.
//!
//! Socket operations only change smoltcp sockets and mark the stack dirty;
//! the kernel's loop polls the stack before it next runs a task
//! ([`tick`]), on a NET interrupt, and at the stack's own timer deadline.
//! After a poll, every socket whose state changed has its wait queue
//! notified, so blocked calls re-run (see [`crate::wait`]).

pub mod dev;
pub mod forward;
pub mod ioctl;
pub mod icmp;
pub mod opts;
pub mod procnet;
pub mod raw;
pub mod tcp;
pub mod udp;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::net as n;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp as stcp, Socket as AnySock};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, Ipv4Address, Ipv6Address};

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::net::{SockAddr, SockCtx, Socket};
use crate::wait::{WaitQueue, WaitRef};
use crate::Errno;

use dev::Port;

/// The first ephemeral port (Linux's default `ip_local_port_range`).
pub const EPHEMERAL_LO: u16 = 32768;
/// The last ephemeral port.
pub const EPHEMERAL_HI: u16 = 60999;

/// One network interface.
pub struct Iface {
    /// Name (`lo`, `eth0`...).
    pub name: String,
    /// `ifindex` (lo is 1).
    pub index: u32,
    /// smoltcp's interface state (addresses, routes, neighbours).
    pub iface: Interface,
    /// The link and its counters.
    pub port: Port,
    /// The sockets whose traffic goes through this interface.
    pub sockets: SocketSet<'static>,
}

impl Iface {
    /// Is this the loopback interface?
    pub fn is_loopback(&self) -> bool {
        matches!(self.port.link, dev::Link::Loopback(_))
    }
    /// The IPv4 addresses and prefixes.
    pub fn ipv4(&self) -> Vec<([u8; 4], u8)> {
        self.iface
            .ip_addrs()
            .iter()
            .filter_map(|c| match c.address() {
                IpAddress::Ipv4(a) => Some((a.octets(), c.prefix_len())),
                _ => None,
            })
            .collect()
    }
    /// The IPv6 addresses and prefixes.
    pub fn ipv6(&self) -> Vec<([u8; 16], u8)> {
        self.iface
            .ip_addrs()
            .iter()
            .filter_map(|c| match c.address() {
                IpAddress::Ipv6(a) => Some((a.octets(), c.prefix_len())),
                _ => None,
            })
            .collect()
    }
}

/// Which protocol's port space a binding is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo identifiers (ping sockets).
    Icmp,
}

/// A port held by a socket (or by a closed connection in TIME-WAIT).
#[derive(Clone, Debug)]
struct Binding {
    owner: u64,
    addr: Option<IpAddress>,
    reuse: bool,
    listening: bool,
    /// Held by a closed connection in TIME-WAIT: an explicit `bind` without
    /// `SO_REUSEADDR` is refused, but ephemeral ports may be reused (as
    /// Linux's `tcp_tw_reuse` lets a new connection take them).
    timewait: bool,
}

/// The ports in use, by protocol and port (so a bind looks at one port's
/// holders, never at every socket), and the ports of each owner.
#[derive(Default)]
struct Ports {
    by_port: BTreeMap<(u8, u16), Vec<Binding>>,
    by_owner: BTreeMap<u64, Vec<(u8, u16)>>,
}

fn proto_key(p: Proto) -> u8 {
    p as u8
}

/// A TCP listener's queue. smoltcp has no backlog (one listening socket
/// becomes one connection), so a listener holds smoltcp sockets only for
/// connections that really arrive: one is made when a SYN comes in (see
/// [`admit_syn`]), up to the backlog; beyond it SYNs are dropped, as
/// Linux drops them when the accept queue is full, and the client retries.
/// An idle listener holds no smoltcp socket at all.
struct Listener {
    lep: IpListenEndpoint,
    /// Connections that may wait (being set up or not yet accepted).
    backlog: usize,
    /// Options for the sockets made for it (buffer sizes, TTL...).
    opts: opts::Opts,
    /// Its smoltcp sockets: listening, being set up, or waiting for `accept`.
    pool: Vec<(usize, SocketHandle)>,
}

/// How long a closed connection's port stays in TIME-WAIT (Linux: 60 s).
pub const TIME_WAIT_NS: u64 = 60_000_000_000;

/// How long a connection may stay half-open (SYN received, no ACK) before
/// its slot in the listen queue is freed.
pub const SYN_RECV_TIMEOUT_S: u64 = 30;

/// The most half-open connections one listener keeps (Linux's
/// `tcp_max_syn_backlog`); SYNs beyond are dropped.
pub const MAX_SYN_BACKLOG: usize = 256;

/// The most connections a listen queue holds, whatever the backlog
/// (Linux's `net.core.somaxconn`).
pub const SOMAXCONN: usize = 4096;

/// What a socket object costs besides its smoltcp sockets: the socket, its
/// file and inode, its watch and port records.
pub const SOCKET_OBJECT: usize = 1024;

/// What one smoltcp socket costs the guest's budget, beyond its buffers.
const SMOL_SOCKET: usize = core::mem::size_of::<AnySock<'static>>() + 64;

/// What the stack watches of a socket to tell it when its state changed.
struct Watch {
    wq: Weak<WaitQueue>,
    handles: Vec<(usize, SocketHandle)>,
    digest: u64,
    /// TCP: the state seen last, to tell a reset from an orderly close.
    last: Option<stcp::State>,
    /// TCP: the connection ended abnormally (RST, or never established).
    reset: bool,
}

/// A smoltcp socket no file refers to any more, kept until its protocol
/// is done with it (FIN/TIME-WAIT), with the port it holds.
struct Orphan {
    iface: usize,
    handle: SocketHandle,
    binding: Option<u64>,
    /// When it was orphaned (ns): a peer that never finishes the close is
    /// given up on after [`ORPHAN_LIFETIME`], as Linux's `tcp_fin_timeout`.
    since: u64,
}

/// How long a closed connection may wait for its peer to finish closing.
pub const ORPHAN_LIFETIME: u64 = 60_000_000_000;

/// How long a connection attempt waits for an answer (Linux gives up after
/// about two minutes of SYN retries).
pub const CONNECT_TIMEOUT_S: u64 = 75;

/// The IP stack.
pub struct Stack {
    /// Interfaces; `lo` is first.
    pub ifaces: Vec<Iface>,
    bindings: Ports,
    watches: BTreeMap<u64, Watch>,
    orphans: Vec<Orphan>,
    /// TCP listeners, by owner, and the owners listening on (iface, port).
    listeners: BTreeMap<u64, Listener>,
    listen_index: BTreeMap<(usize, u16), Vec<u64>>,
    /// Closed connections in TIME-WAIT: (until, the port they hold), oldest
    /// first. Their smoltcp sockets and buffers are gone already.
    timewait: alloc::collections::VecDeque<(u64, u64)>,
    /// What each smoltcp socket costs, charged to the guest's budget.
    charges: BTreeMap<(usize, SocketHandle), Charge>,
    /// The guest's memory budget (none in unit tests of the stack alone).
    budget: Option<BudgetRef>,
    /// The host routes `lo` carries for the other interfaces' addresses.
    mirrored: Vec<IpCidr>,
    next_id: u64,
    next_ephemeral: u16,
    /// A socket changed: poll before the next task runs.
    pub dirty: bool,
    /// A NIC raised an interrupt.
    pub rx_pending: bool,
    /// When smoltcp next wants a poll (monotonic ns).
    pub deadline: Option<u64>,
    /// Monotonic now (ns) as of the last operation.
    pub now: u64,
    seed: u64,
    /// IPv4 forwarding between interfaces.
    pub fwd: forward::Forwarder,
    /// Static IPv4 routes to prefixes (also in their interface's smoltcp table).
    pub routes: Vec<forward::Route4>,
}

/// The shared stack: each socket keeps a reference, since `read`/`write`
/// reach a socket without the kernel's [`crate::net::NetStack`].
pub type StackRef = Rc<RefCell<Stack>>;

impl Default for Stack {
    fn default() -> Self {
        Stack::new(0x5eed_1234_abcd_0001)
    }
}

/// smoltcp's instant for monotonic `ns`.
pub fn instant(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

fn new_iface(port: &mut Port, hw: HardwareAddress, seed: u64) -> Interface {
    let mut cfg = Config::new(hw);
    cfg.random_seed = seed;
    Interface::new(cfg, port, Instant::ZERO)
}

impl Stack {
    /// A stack with only `lo` (127.0.0.1/8, ::1/128).
    pub fn new(seed: u64) -> Stack {
        let mut port = Port::loopback();
        let mut iface = new_iface(&mut port, HardwareAddress::Ip, seed);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8));
            let _ = a.push(IpCidr::new(IpAddress::Ipv6(Ipv6Address::LOCALHOST), 128));
        });
        let lo = Iface { name: String::from("lo"), index: 1, iface, port, sockets: SocketSet::new(Vec::new()) };
        Stack {
            ifaces: alloc::vec![lo],
            bindings: Ports::default(),
            watches: BTreeMap::new(),
            orphans: Vec::new(),
            listeners: BTreeMap::new(),
            listen_index: BTreeMap::new(),
            timewait: alloc::collections::VecDeque::new(),
            charges: BTreeMap::new(),
            budget: None,
            mirrored: Vec::new(),
            next_id: 1,
            next_ephemeral: EPHEMERAL_LO + (seed % u64::from(EPHEMERAL_HI - EPHEMERAL_LO)) as u16,
            dirty: false,
            rx_pending: false,
            deadline: None,
            now: 0,
            seed,
            fwd: forward::Forwarder::default(),
            routes: Vec::new(),
        }
    }

    /// Attach a link as interface `name` with a static IPv4 configuration.
    pub fn attach(&mut self, name: &str, device: Box<dyn hal::NetDevice>, ipv4: Option<([u8; 4], u8)>, gateway: Option<[u8; 4]>) {
        let mut port = Port::nic(device);
        let mac = port.mac();
        // smoltcp refuses a multicast/broadcast hardware address: use a local one instead.
        let mac = if mac[0] & 1 != 0 || mac == [0; 6] { [0x02, 0, 0, 0, 0, self.ifaces.len() as u8] } else { mac };
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut iface = new_iface(&mut port, HardwareAddress::Ethernet(EthernetAddress(mac)), self.seed);
        if let Some((a, p)) = ipv4 {
            iface.update_ip_addrs(|v| {
                let _ = v.push(IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(a)), p.min(32)));
            });
        }
        if let Some(gw) = gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(Ipv4Address::from(gw));
        }
        let index = self.ifaces.iter().map(|i| i.index).max().unwrap_or(1) + 1;
        self.ifaces.push(Iface { name: String::from(name), index, iface, port, sockets: SocketSet::new(Vec::new()) });
        self.sync_lo();
        self.dirty = true;
    }

    /// Mirror every other interface's addresses onto `lo` (host routes), so
    /// local traffic to them loops back.
    pub fn sync_lo(&mut self) {
        let mut local: Vec<IpCidr> = Vec::new();
        for i in self.ifaces.iter().skip(1) {
            for c in i.iface.ip_addrs() {
                let len = if matches!(c.address(), IpAddress::Ipv4(_)) { 32 } else { 128 };
                local.push(IpCidr::new(c.address(), len));
            }
        }
        let old = core::mem::take(&mut self.mirrored);
        let lo = &mut self.ifaces[0].iface;
        let mut added = Vec::new();
        lo.update_ip_addrs(|a| {
            a.retain(|c| !old.contains(c));
            for c in local {
                if !a.contains(&c) && a.push(c).is_ok() {
                    added.push(c);
                }
            }
        });
        self.mirrored = added;
    }

    /// Is `c` on `lo` only as the mirror of another interface's address?
    pub fn is_mirror(&self, c: &IpCidr) -> bool {
        self.mirrored.contains(c)
    }

    /// A fresh owner id for a socket.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Index of the interface named `name`.
    pub fn by_name(&self, name: &[u8]) -> Option<usize> {
        self.ifaces.iter().position(|i| i.name.as_bytes() == name)
    }

    /// Index of the interface with `ifindex`.
    pub fn by_index(&self, index: u32) -> Option<usize> {
        self.ifaces.iter().position(|i| i.index == index)
    }

    /// Is `a` an address of this machine?
    pub fn is_local(&self, a: IpAddress) -> bool {
        is_loopback(a) || self.ifaces.iter().any(|i| i.port.up && i.iface.has_ip_addr(a))
    }

    /// The interface traffic to `dst` leaves through.
    pub fn route(&self, dst: IpAddress) -> Result<usize, Errno> {
        if self.is_local(dst) {
            return Ok(0);
        }
        // On-link first, then a default route.
        let up = |i: &&Iface| i.port.up && !i.is_loopback();
        if let Some(k) = self.ifaces.iter().filter(up).find(|i| i.iface.ip_addrs().iter().any(|c| c.contains_addr(&dst))) {
            return self.by_index(k.index).ok_or(Errno::ENETUNREACH);
        }
        // Then the most specific static route.
        if let IpAddress::Ipv4(d) = dst {
            let via = self.routes.iter().filter(|r| r.covers(d.octets())).max_by_key(|r| r.len);
            if let Some(k) = via.and_then(|r| self.by_index(r.oif)).filter(|&k| self.ifaces[k].port.up) {
                return Ok(k);
            }
        }
        let v4 = matches!(dst, IpAddress::Ipv4(_));
        for (k, i) in self.ifaces.iter().enumerate() {
            let routes = i.iface.routes();
            let has = if v4 { routes.get_default_ipv4_route().is_some() } else { routes.get_default_ipv6_route().is_some() };
            if up(&i) && has {
                return Ok(k);
            }
        }
        Err(Errno::ENETUNREACH)
    }

    /// The interfaces a socket bound to `addr` (None: the wildcard) lives in.
    pub fn ifaces_for(&self, addr: Option<IpAddress>) -> Result<Vec<usize>, Errno> {
        match addr {
            None => Ok((0..self.ifaces.len()).collect()),
            Some(a) if is_loopback(a) => Ok(alloc::vec![0]),
            Some(a) => {
                let mut v = Vec::new();
                for (k, i) in self.ifaces.iter().enumerate().skip(1) {
                    if i.iface.has_ip_addr(a) {
                        v.push(k);
                    }
                }
                if v.is_empty() {
                    return Err(Errno::EADDRNOTAVAIL);
                }
                v.push(0);
                Ok(v)
            }
        }
    }

    /// The source address for traffic to `dst`.
    pub fn source_for(&self, dst: IpAddress) -> Option<IpAddress> {
        let k = self.route(dst).ok()?;
        if k == 0 && !is_loopback(dst) {
            return Some(dst); // one of our own addresses: talk from it
        }
        self.ifaces[k].iface.get_source_address(&dst)
    }

    /// Does a new binding of `port` at `addr` clash? (`ephemeral`: the
    /// stack picks the port, and TIME-WAIT holders do not count.)
    fn conflicts(&self, proto: Proto, addr: Option<IpAddress>, port: u16, reuse: bool, ephemeral: bool) -> bool {
        let Some(v) = self.bindings.by_port.get(&(proto_key(proto), port)) else { return false };
        v.iter().any(|b| {
            (b.addr.is_none() || addr.is_none() || b.addr == addr)
                && !(ephemeral && b.timewait)
                && !(reuse && b.reuse && !b.listening && proto != Proto::Icmp)
        })
    }

    fn add_binding(&mut self, proto: Proto, port: u16, b: Binding) {
        let key = (proto_key(proto), port);
        self.bindings.by_owner.entry(b.owner).or_default().push(key);
        self.bindings.by_port.entry(key).or_default().push(b);
    }

    /// Take `port` (0: an ephemeral one) at `addr` for `owner`.
    pub fn bind_port(&mut self, owner: u64, proto: Proto, addr: Option<IpAddress>, port: u16, reuse: bool) -> Result<u16, Errno> {
        let port = if port != 0 {
            if self.conflicts(proto, addr, port, reuse, false) {
                return Err(Errno::EADDRINUSE);
            }
            port
        } else {
            let span = EPHEMERAL_HI - EPHEMERAL_LO + 1;
            let mut found = None;
            for _ in 0..span {
                let p = self.next_ephemeral;
                self.next_ephemeral = if p >= EPHEMERAL_HI { EPHEMERAL_LO } else { p + 1 };
                // An ephemeral port is never shared, whatever the options.
                if !self.conflicts(proto, None, p, false, true) {
                    found = Some(p);
                    break;
                }
            }
            found.ok_or(Errno::EADDRINUSE)?
        };
        self.add_binding(proto, port, Binding { owner, addr, reuse, listening: false, timewait: false });
        Ok(port)
    }

    /// Can `owner`'s binding become a listener? (Another listener on an
    /// overlapping address and the same port forbids it, SO_REUSEADDR or not.)
    pub fn set_listening(&mut self, owner: u64) -> Result<(), Errno> {
        let Some(&key) = self.bindings.by_owner.get(&owner).and_then(|v| v.first()) else { return Err(Errno::EINVAL) };
        let holders = self.bindings.by_port.get_mut(&key).ok_or(Errno::EINVAL)?;
        let me = holders.iter().find(|b| b.owner == owner).cloned().ok_or(Errno::EINVAL)?;
        let clash = holders.iter().any(|b| {
            b.owner != owner
                && (b.addr.is_none() || me.addr.is_none() || b.addr == me.addr)
                && (b.listening || !b.reuse || !me.reuse)
                && !(b.timewait && me.reuse)
        });
        if clash {
            return Err(Errno::EADDRINUSE);
        }
        for b in holders.iter_mut().filter(|b| b.owner == owner) {
            b.listening = true;
        }
        Ok(())
    }

    /// Record that an accepted connection holds `port` at `addr` (so its
    /// TIME-WAIT keeps the port from sockets without SO_REUSEADDR).
    pub fn hold_port(&mut self, owner: u64, proto: Proto, addr: Option<IpAddress>, port: u16) {
        self.add_binding(proto, port, Binding { owner, addr, reuse: true, listening: false, timewait: false });
    }

    /// Give up `owner`'s port.
    pub fn unbind(&mut self, owner: u64) {
        for key in self.bindings.by_owner.remove(&owner).unwrap_or_default() {
            if let Some(v) = self.bindings.by_port.get_mut(&key) {
                v.retain(|b| b.owner != owner);
                if v.is_empty() {
                    self.bindings.by_port.remove(&key);
                }
            }
        }
    }

    /// Hand `owner`'s port to a closed connection (TIME-WAIT keeps it, but
    /// SO_REUSEADDR may take it); returns the new owner.
    fn orphan_binding(&mut self, owner: u64) -> Option<u64> {
        let keys = self.bindings.by_owner.remove(&owner)?;
        let id = self.new_id();
        for key in &keys {
            for b in self.bindings.by_port.get_mut(key).into_iter().flatten().filter(|b| b.owner == owner) {
                b.owner = id;
                b.reuse = true;
                b.listening = false;
            }
        }
        self.bindings.by_owner.insert(id, keys);
        Some(id)
    }

    /// A closed connection reached TIME-WAIT: its port is held by a record
    /// until [`TIME_WAIT_NS`] passes, without a socket or buffers.
    fn enter_timewait(&mut self, owner: u64) {
        for key in self.bindings.by_owner.get(&owner).cloned().unwrap_or_default() {
            for b in self.bindings.by_port.get_mut(&key).into_iter().flatten().filter(|b| b.owner == owner) {
                b.timewait = true;
            }
        }
        self.timewait.push_back((self.now + TIME_WAIT_NS, owner));
    }

    /// The guest's memory budget: every smoltcp socket is charged to it.
    pub fn set_budget(&mut self, budget: BudgetRef) {
        self.budget = Some(budget);
    }

    /// The guest's memory budget (none in unit tests of the stack alone).
    pub fn budget(&self) -> Option<&BudgetRef> {
        self.budget.as_ref()
    }

    /// Charge `bytes` of socket memory (before the socket is built);
    /// `ENOBUFS` when the budget is spent, as Linux says for socket memory.
    pub fn charge(&self, bytes: usize) -> Result<Charge, Errno> {
        match &self.budget {
            Some(b) => Charge::new(b, Cost::Socket, SMOL_SOCKET + bytes).map_err(|_| Errno::ENOBUFS),
            None => Ok(Charge::none(Cost::Socket)),
        }
    }

    /// Charge for a socket object itself (the file, its inode, the
    /// socket's state; its smoltcp sockets are charged apart).
    pub fn charge_object(&self) -> Result<Charge, Errno> {
        match &self.budget {
            Some(b) => Charge::new(b, Cost::Socket, SOCKET_OBJECT).map_err(|_| Errno::ENOBUFS),
            None => Ok(Charge::none(Cost::Socket)),
        }
    }

    /// Add a smoltcp socket to interface `k`, with the charge made for it.
    pub fn add_socket<T: smoltcp::socket::AnySocket<'static>>(&mut self, k: usize, sock: T, charge: Charge) -> SocketHandle {
        add_charged(&mut self.ifaces[k].sockets, &mut self.charges, k, sock, charge)
    }

    /// Remove a smoltcp socket from interface `k`, giving back its charge.
    pub fn remove_socket(&mut self, k: usize, h: SocketHandle) {
        remove_charged(&mut self.ifaces[k].sockets, &mut self.charges, k, h);
    }

    /// `owner` listens on `lep` with `backlog` (re-`listen` changes the backlog).
    pub fn listen_on(&mut self, owner: u64, lep: IpListenEndpoint, backlog: u32, o: &opts::Opts) -> Result<(), Errno> {
        let backlog = (backlog as usize).min(SOMAXCONN);
        if let Some(l) = self.listeners.get_mut(&owner) {
            l.backlog = backlog;
            return Ok(());
        }
        for k in self.ifaces_for(lep.addr)? {
            self.listen_index.entry((k, lep.port)).or_default().push(owner);
        }
        self.listeners.insert(owner, Listener { lep, backlog, opts: o.clone(), pool: Vec::new() });
        Ok(())
    }

    /// New options for the sockets a listener makes from now on.
    pub fn listener_opts(&mut self, owner: u64, o: &opts::Opts) {
        if let Some(l) = self.listeners.get_mut(&owner) {
            l.opts = o.clone();
        }
    }

    /// The smoltcp sockets of `owner`'s listen queue.
    pub fn listen_pool(&self, owner: u64) -> Handles {
        self.listeners.get(&owner).map(|l| l.pool.clone()).unwrap_or_default()
    }

    /// Stop listening: returns the listen queue's sockets (for [`Stack::release`]).
    pub fn unlisten(&mut self, owner: u64) -> Handles {
        let Some(l) = self.listeners.remove(&owner) else { return Vec::new() };
        // Its own entries (a scan of the whole index made closing many
        // listeners quadratic); the scan only when an address moved since.
        let mut found = false;
        for k in self.ifaces_for(l.lep.addr).unwrap_or_default() {
            if let Some(v) = self.listen_index.get_mut(&(k, l.lep.port)) {
                found |= v.contains(&owner);
                v.retain(|&o| o != owner);
                if v.is_empty() {
                    self.listen_index.remove(&(k, l.lep.port));
                }
            }
        }
        if !found {
            self.listen_index.retain(|_, v| {
                v.retain(|&o| o != owner);
                !v.is_empty()
            });
        }
        l.pool
    }

    /// Does `owner`'s listen queue hold an established connection?
    pub fn listener_ready(&mut self, owner: u64) -> bool {
        let Some(l) = self.listeners.get(&owner) else { return false };
        l.pool.iter().any(|&(k, h)| {
            matches!(self.ifaces[k].sockets.get::<stcp::Socket<'static>>(h).state(), stcp::State::Established | stcp::State::CloseWait)
        })
    }

    /// Take an established connection out of `owner`'s listen queue
    /// (connections reset before they were accepted are dropped on the way).
    pub fn take_established(&mut self, owner: u64) -> Option<(usize, SocketHandle)> {
        let mut pool = core::mem::take(&mut self.listeners.get_mut(&owner)?.pool);
        let mut taken = None;
        pool.retain(|&(k, h)| {
            let t = self.ifaces[k].sockets.get_mut::<stcp::Socket<'static>>(h);
            match t.state() {
                stcp::State::Established | stcp::State::CloseWait if taken.is_none() => {
                    t.set_timeout(None);
                    taken = Some((k, h));
                    false
                }
                stcp::State::Closed | stcp::State::TimeWait => {
                    remove_charged(&mut self.ifaces[k].sockets, &mut self.charges, k, h);
                    false
                }
                _ => true,
            }
        });
        if pool.is_empty() {
            // The empty queue's digest: the next connection is news even
            // if smoltcp reuses a handle for it.
            if let Some(w) = self.watches.get_mut(&owner) {
                w.digest = 0;
            }
        }
        if let Some(l) = self.listeners.get_mut(&owner) {
            l.pool = pool;
        }
        taken
    }

    /// Watch `owner`'s smoltcp sockets: `wq` is notified when they change.
    pub fn watch(&mut self, owner: u64, wq: &WaitRef, handles: Vec<(usize, SocketHandle)>) {
        let mut w = Watch { wq: Rc::downgrade(wq), handles, digest: 0, last: None, reset: false };
        if let Some(old) = self.watches.get(&owner) {
            w.reset = old.reset;
        }
        if let [(k, h)] = w.handles[..] {
            if let AnySock::Tcp(t) = self.ifaces[k].sockets.get_mut::<AnySock<'static>>(h) {
                w.last = Some(t.state());
            }
        }
        w.digest = self.digest(&w.handles);
        self.watches.insert(owner, w);
        self.dirty = true;
    }

    /// Did `owner`'s TCP connection end abnormally?
    pub fn was_reset(&self, owner: u64) -> bool {
        self.watches.get(&owner).is_some_and(|w| w.reset)
    }

    /// Clear the reset mark (reported once as ECONNRESET).
    pub fn clear_reset(&mut self, owner: u64) {
        if let Some(w) = self.watches.get_mut(&owner) {
            w.reset = false;
        }
    }

    /// Stop watching `owner`; its smoltcp sockets are given to the stack to
    /// finish (`linger_abort`: reset TCP connections instead of closing).
    pub fn release(&mut self, owner: u64, handles: &[(usize, SocketHandle)], abort: bool) {
        self.watches.remove(&owner);
        let mut binding = Some(owner);
        for &(k, h) in handles {
            let Some(i) = self.ifaces.get_mut(k) else { continue };
            let keep = match i.sockets.get_mut::<AnySock<'static>>(h) {
                AnySock::Tcp(t) => {
                    // An abort leaves a RST to send: keep the socket until the next poll sends it.
                    let reset = abort || t.state() == stcp::State::SynReceived;
                    if reset || t.state() == stcp::State::Listen {
                        t.abort();
                    } else {
                        t.close();
                    }
                    reset || t.state() != stcp::State::Closed
                }
                _ => false,
            };
            if keep {
                let b = binding.take().and_then(|o| self.orphan_binding(o));
                let since = self.now;
                self.orphans.push(Orphan { iface: k, handle: h, binding: b, since });
            } else {
                self.remove_socket(k, h);
            }
        }
        if let Some(o) = binding {
            self.unbind(o);
        }
        self.dirty = true;
    }

    fn digest(&mut self, handles: &[(usize, SocketHandle)]) -> u64 {
        let mut d: u64 = 0;
        for &(k, h) in handles {
            let Some(i) = self.ifaces.get_mut(k) else { continue };
            let x: u64 = match i.sockets.get_mut::<AnySock<'static>>(h) {
                AnySock::Tcp(t) => {
                    (t.state() as u64) | (t.recv_queue() as u64) << 8 | (t.send_queue() as u64) << 32 | (t.may_recv() as u64) << 62
                }
                AnySock::Udp(u) => (u.recv_queue() as u64) | (u.send_queue() as u64) << 32,
                AnySock::Icmp(c) => (c.recv_queue() as u64) | (c.send_queue() as u64) << 32,
                // Raw sockets (ping) too: a packet arriving must wake a reader.
                AnySock::Raw(r) => (r.recv_queue() as u64) | (r.send_queue() as u64) << 32,
                #[allow(unreachable_patterns)]
                _ => 0,
            };
            d = d.wrapping_mul(0x100000001b3).wrapping_add(x);
        }
        d
    }

    /// Bring the stack's clock up to `now` (callers' clocks may lag it).
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    /// Stop watching a socket that is being dropped (see [`Stack::release`]);
    /// a stack already borrowed (dropped inside a stack operation) keeps them.
    pub fn release_dropped(stack: &StackRef, owner: u64, handles: &[(usize, SocketHandle)]) {
        if let Ok(mut s) = stack.try_borrow_mut() {
            s.release(owner, handles, false);
        }
    }

    /// Run the protocols: move packets through every interface until
    /// nothing moves, reap finished connections, notify changed sockets.
    pub fn poll(&mut self, now: u64) {
        self.advance(now);
        let t = instant(self.now);
        self.dirty = false;
        self.rx_pending = false;
        forward::arm(self);
        let (listeners, index, charges, budget) = (&mut self.listeners, &self.listen_index, &mut self.charges, self.budget.as_ref());
        for (k, i) in self.ifaces.iter_mut().enumerate() {
            if !i.port.up {
                i.port.drain();
                continue;
            }
            i.iface.poll_maintenance(t);
            // Bounded: loopback traffic answers itself, so stop at a fixed point.
            for _ in 0..1024 {
                // One packet at a time, looked at before smoltcp: a SYN to a
                // listener gets a socket made for it, or is dropped when the
                // listen queue is full (the client retries, as on Linux).
                let mut moved = false;
                for _ in 0..4096 {
                    if !i.port.stage() {
                        break;
                    }
                    if let Some(syn) = i.port.staged_syn() {
                        let cx = AdmitCx { listeners: &mut *listeners, index, charges: &mut *charges, budget };
                        if !admit_syn(cx, &mut i.sockets, k, syn) {
                            i.port.drop_staged();
                            moved = true;
                            continue;
                        }
                    }
                    match i.iface.poll_ingress_single(t, &mut i.port, &mut i.sockets) {
                        smoltcp::iface::PollIngressSingleResult::None => break,
                        _ => moved = true,
                    }
                }
                let out = i.iface.poll_egress(t, &mut i.port, &mut i.sockets);
                if !moved && out == smoltcp::iface::PollResult::None && !i.port.rx_queued() {
                    break;
                }
            }
            // A flood of frames left some queued: come back on the next tick.
            self.rx_pending |= i.port.rx_queued();
        }
        forward::run(self);
        // Reap orphans whose protocol is done.
        let mut k = 0;
        while k < self.orphans.len() {
            let o = &self.orphans[k];
            let expired = self.now.saturating_sub(o.since) > ORPHAN_LIFETIME;
            let (done, timewait) = match self.ifaces[o.iface].sockets.get_mut::<AnySock<'static>>(o.handle) {
                AnySock::Tcp(s) => {
                    if expired && s.state() != stcp::State::TimeWait {
                        s.abort();
                    }
                    // TIME-WAIT needs no socket: a record keeps the port, and
                    // the buffers go back at once.
                    (matches!(s.state(), stcp::State::Closed | stcp::State::TimeWait), s.state() == stcp::State::TimeWait)
                }
                _ => (true, false),
            };
            if done {
                let o = self.orphans.swap_remove(k);
                self.remove_socket(o.iface, o.handle);
                match o.binding {
                    Some(b) if timewait => self.enter_timewait(b),
                    Some(b) => self.unbind(b),
                    None => {}
                }
            } else {
                k += 1;
            }
        }
        while let Some(&(until, owner)) = self.timewait.front() {
            if until > self.now {
                break;
            }
            self.timewait.pop_front();
            self.unbind(owner);
        }
        // Notify sockets whose state changed.
        // Sockets with smoltcp sockets, and listeners with something in
        // their queue: a listener with nothing pending has nothing to
        // report, and looking at each (by key) made every poll, and so
        // every bind and listen, cost a scan of them all.
        let owners: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| !w.handles.is_empty())
            .map(|(&o, _)| o)
            .chain(self.listeners.iter().filter(|(_, l)| !l.pool.is_empty()).map(|(&o, _)| o))
            .collect();
        for o in owners {
            let handles = match (self.listeners.get(&o), self.watches.get(&o)) {
                (Some(l), _) => l.pool.clone(),
                (None, Some(w)) => w.handles.clone(),
                (None, None) => continue,
            };
            let d = self.digest(&handles);
            let state = match handles[..] {
                [(k, h)] => match self.ifaces[k].sockets.get_mut::<AnySock<'static>>(h) {
                    AnySock::Tcp(s) => {
                        // The connect timeout only covers the handshake: an idle
                        // established connection lives on.
                        if s.timeout().is_some() && !matches!(s.state(), stcp::State::SynSent | stcp::State::SynReceived) {
                            s.set_timeout(None);
                        }
                        Some(s.state())
                    }
                    _ => None,
                },
                _ => None,
            };
            let Some(w) = self.watches.get_mut(&o) else { continue };
            if let (Some(prev), Some(cur)) = (w.last, state) {
                use stcp::State::*;
                if cur == Closed && matches!(prev, SynSent | SynReceived | Established | FinWait1 | FinWait2 | CloseWait) {
                    w.reset = true;
                }
                w.last = Some(cur);
            }
            if d != w.digest {
                w.digest = d;
                if let Some(q) = w.wq.upgrade() {
                    q.notify();
                }
            }
        }
        self.deadline = self.next_deadline();
    }

    fn next_deadline(&mut self) -> Option<u64> {
        let t = instant(self.now);
        let mut best: Option<u64> = None;
        for i in self.ifaces.iter_mut().filter(|i| i.port.up) {
            if let Some(at) = i.iface.poll_at(t, &i.sockets) {
                let ns = (at.total_micros().max(0) as u64).saturating_mul(1000);
                // Never ask for a poll in the past: at least 1 ms ahead.
                let ns = ns.max(self.now + 1_000_000);
                best = Some(best.map_or(ns, |b| b.min(ns)));
            }
        }
        if let Some(&(until, _)) = self.timewait.front() {
            // A TIME-WAIT record gives its port back then.
            best = Some(best.map_or(until, |b| b.min(until)));
        }
        if self.fwd.waiting() {
            // Ask unanswered next hops again, or give up on them.
            let ns = self.now + 250_000_000;
            best = Some(best.map_or(ns, |b| b.min(ns)));
        }
        best
    }

    /// Does any interface carry outside traffic (so an idle guest may be
    /// woken from outside)?
    pub fn has_links(&self) -> bool {
        self.ifaces.iter().any(|i| !i.is_loopback())
    }
}

fn add_charged<T: smoltcp::socket::AnySocket<'static>>(
    sockets: &mut SocketSet<'static>,
    charges: &mut BTreeMap<(usize, SocketHandle), Charge>,
    k: usize,
    sock: T,
    charge: Charge,
) -> SocketHandle {
    let h = sockets.add(sock);
    charges.insert((k, h), charge);
    h
}

fn remove_charged(sockets: &mut SocketSet<'static>, charges: &mut BTreeMap<(usize, SocketHandle), Charge>, k: usize, h: SocketHandle) {
    sockets.remove(h);
    charges.remove(&(k, h));
}

/// What [`admit_syn`] needs of the stack besides the interface.
struct AdmitCx<'a> {
    listeners: &'a mut BTreeMap<u64, Listener>,
    index: &'a BTreeMap<(usize, u16), Vec<u64>>,
    charges: &'a mut BTreeMap<(usize, SocketHandle), Charge>,
    budget: Option<&'a BudgetRef>,
}

/// A SYN arrived on interface `k`: make sure the listener it is for has a
/// listening socket for it, within its backlog. False: drop the SYN (the
/// listen queue is full, or the guest's memory is spent). A SYN for no
/// listener passes (smoltcp answers it with a reset).
fn admit_syn(cx: AdmitCx<'_>, sockets: &mut SocketSet<'static>, k: usize, syn: (IpAddress, u16, IpAddress, u16)) -> bool {
    let (src, sport, dst, dport) = syn;
    let Some(owners) = cx.index.get(&(k, dport)) else { return true };
    let Some(&owner) = owners.iter().find(|o| cx.listeners.get(o).is_some_and(|l| l.lep.addr.is_none_or(|a| a == dst))) else {
        return true;
    };
    let Some(l) = cx.listeners.get_mut(&owner) else { return true };
    let (mut free, mut half_open, mut waiting, mut dup) = (false, 0usize, 0usize, false);
    let charges = cx.charges;
    l.pool.retain(|&(i, h)| {
        if i != k {
            return true;
        }
        let t = sockets.get::<stcp::Socket<'static>>(h);
        match t.state() {
            // Reset or timed out before it was accepted: free its slot.
            stcp::State::Closed => {
                remove_charged(sockets, charges, i, h);
                false
            }
            stcp::State::Listen => {
                free = true;
                true
            }
            st => {
                dup |= t.remote_endpoint().is_some_and(|e| e.addr == src && e.port == sport);
                if st == stcp::State::SynReceived {
                    half_open += 1;
                } else {
                    waiting += 1;
                }
                true
            }
        }
    });
    if free || dup {
        return true;
    }
    // As Linux: a full accept queue (backlog + 1 connections waiting) drops
    // the SYN, and so does a full queue of half-open ones (where Linux would
    // answer with a SYN cookie).
    if waiting > l.backlog || half_open >= MAX_SYN_BACKLOG {
        return false;
    }
    let cost = tcp::buffer_bytes(&l.opts);
    let charge = match cx.budget {
        Some(b) => match Charge::new(b, Cost::ListenQueue, SMOL_SOCKET + cost) {
            Ok(c) => c,
            Err(_) => return false,
        },
        None => Charge::none(Cost::ListenQueue),
    };
    let mut t = tcp::new_socket(&l.opts);
    if t.listen(l.lep).is_err() {
        return false;
    }
    t.set_timeout(Some(smoltcp::time::Duration::from_secs(SYN_RECV_TIMEOUT_S)));
    let h = add_charged(sockets, charges, k, t, charge);
    l.pool.push((k, h));
    true
}

/// A socket bound to a specific (not v4-mapped) IPv6 address is IPv6-only,
/// and Linux reports `IPV6_V6ONLY` as 1 from then on.
pub fn bound_v6only(o: &mut opts::Opts, ip: Option<IpAddress>) {
    if let Some(IpAddress::Ipv6(_)) = ip {
        let _ = o.set(opts::SOL_IPV6, n::IPV6_V6ONLY, &1i32.to_le_bytes());
    }
}

/// `AF_INET6` or `AF_INET`.
fn family_of(v6: bool) -> u32 {
    if v6 {
        n::AF_INET6
    } else {
        n::AF_INET
    }
}

/// Is `a` a loopback address?
pub fn is_loopback(a: IpAddress) -> bool {
    match a {
        IpAddress::Ipv4(x) => x.octets()[0] == 127,
        IpAddress::Ipv6(x) => x.is_loopback(),
    }
}

/// An endpoint from a guest address for a socket of family `v6`:
/// (address or None for the wildcard, port).
pub fn endpoint(addr: &SockAddr, v6: bool) -> Result<(Option<IpAddress>, u16), Errno> {
    match (addr, v6) {
        (SockAddr::Inet(a, p), false) => {
            let ip = Ipv4Address::from(*a);
            Ok((if ip.is_unspecified() { None } else { Some(IpAddress::Ipv4(ip)) }, *p))
        }
        (SockAddr::Inet6(a, p, _, _), true) => {
            let ip = Ipv6Address::from(*a);
            if ip.is_unspecified() {
                return Ok((None, *p));
            }
            // v4-mapped (::ffff:a.b.c.d) means IPv4.
            if a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff {
                let v4 = Ipv4Address::new(a[12], a[13], a[14], a[15]);
                return Ok((if v4.is_unspecified() { None } else { Some(IpAddress::Ipv4(v4)) }, *p));
            }
            Ok((Some(IpAddress::Ipv6(ip)), *p))
        }
        (SockAddr::Inet(..), true) => Err(Errno::EINVAL),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// A guest address for an endpoint seen by a socket of family `v6`.
pub fn sockaddr(a: Option<IpAddress>, port: u16, v6: bool) -> SockAddr {
    match (a, v6) {
        (Some(IpAddress::Ipv4(x)), false) => SockAddr::Inet(x.octets(), port),
        (None, false) | (Some(IpAddress::Ipv6(_)), false) => SockAddr::Inet([0; 4], port),
        (Some(IpAddress::Ipv4(x)), true) => {
            let o = x.octets();
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&o);
            SockAddr::Inet6(m, port, 0, 0)
        }
        (Some(IpAddress::Ipv6(x)), true) => SockAddr::Inet6(x.octets(), port, 0, 0),
        (None, true) => SockAddr::Inet6([0; 16], port, 0, 0),
    }
}

/// The kernel's per-iteration hook: poll the stack if a socket changed, a
/// NIC interrupted, or a protocol timer is due.
pub fn tick(stack: &StackRef, now: u64) {
    let Ok(mut s) = stack.try_borrow_mut() else { return };
    if s.dirty || s.rx_pending || s.deadline.is_some_and(|d| d <= now) {
        s.poll(now);
    }
}

/// The next instant the kernel must call [`tick`] even if nothing happens.
pub fn deadline(stack: &StackRef) -> Option<u64> {
    stack.try_borrow().ok().and_then(|s| if s.dirty { Some(0) } else { s.deadline })
}

/// A network interface handed to the kernel at boot, with the static
/// configuration a real machine's network scripts (or DHCP) would apply.
pub struct NetAttach {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// The link.
    pub device: alloc::boxed::Box<dyn hal::NetDevice>,
    /// IPv4 address and prefix length, if any.
    pub ipv4: Option<([u8; 4], u8)>,
    /// Default IPv4 gateway reached through this interface, if any.
    pub gateway: Option<[u8; 4]>,
}

/// Attach the boot-time network interfaces, seeding the stack's randomness.
pub fn attach_all(stack: &StackRef, seed: u64, nets: Vec<NetAttach>) {
    let mut s = stack.borrow_mut();
    *s = Stack::new(seed);
    for na in nets {
        s.attach(&na.name, na.device, na.ipv4, na.gateway);
    }
    s.poll(0);
}

/// `socket(AF_INET/AF_INET6, type, protocol)`.
pub fn socket(cx: &mut SockCtx<'_>, domain: u32, ty: u32, protocol: u32) -> Result<Rc<dyn Socket>, Errno> {
    let v6 = match domain {
        n::AF_INET => false,
        n::AF_INET6 => true,
        _ => return Err(Errno::EAFNOSUPPORT),
    };
    let stack = cx.net.inet.clone();
    let ty = ty & 0xf;
    let p_tcp = n::IPPROTO_TCP as u32;
    let p_udp = n::IPPROTO_UDP as u32;
    let p_icmp = if v6 { n::IPPROTO_ICMPV6 } else { n::IPPROTO_ICMP as u32 };
    match ty {
        n::SOCK_STREAM if protocol == 0 || protocol == p_tcp => {
            let charge = stack.borrow().charge_object()?;
            Ok(tcp::TcpSock::create(stack, v6, charge))
        }
        n::SOCK_DGRAM if protocol == 0 || protocol == p_udp => {
            let charge = stack.borrow().charge_object()?;
            Ok(udp::UdpSock::create(stack, v6, charge))
        }
        n::SOCK_DGRAM if protocol == p_icmp => Ok(icmp::PingSock::create(stack, v6)),
        n::SOCK_STREAM | n::SOCK_DGRAM => Err(Errno::EPROTONOSUPPORT),
        n::SOCK_RAW if cx.cred.uid != 0 => Err(Errno::EPERM),
        n::SOCK_RAW if v6 || protocol == 0 || protocol > 255 => Err(Errno::EPROTONOSUPPORT),
        n::SOCK_RAW => raw::RawSock::create(stack, protocol as u8),
        _ => Err(Errno::ESOCKTNOSUPPORT),
    }
}

/// The smoltcp sockets a socket has been watching, for [`Stack::release`].
pub type Handles = Vec<(usize, SocketHandle)>;
