//! AF_UNIX sockets: stream, datagram and seqpacket; socketpair; names in
//! the filesystem (a `S_IFSOCK` inode holding a [`UnixNode`]) and in the
//! abstract namespace ([`super::NetStack::unix_abstract`]); listen backlogs;
//! `SCM_RIGHTS` and `SCM_CREDENTIALS`; `SO_PEERCRED`.
//!
//! Data a socket sends is queued on the receiver ([`Msg`]s in its `rx`) and
//! charged to the sender (`wmem`, bounded by its `SO_SNDBUF`), as Linux
//! does: a flood blocks the writer, never the kernel's memory. Each message
//! costs [`MSG_OVERHEAD`] besides its bytes, so empty datagrams are bounded too.
//! Every socket and every queued message also takes its bytes from the
//! guest's memory budget for as long as it lives (a message outlives its
//! sender when that closes), so many sockets with full queues get
//! `ENOBUFS`/`ENOMEM` rather than growing the kernel past `--mem`.
//!
//! Peers point at each other with `Weak` references; a socket is kept alive
//! by its open file description (or, before `accept`, by its listener's
//! queue). When the last description goes, [`UnixSocket::release`] hangs up
//! the peer and drops what is queued, including files in flight.
//!
//! Files in flight form cycles when a socket is sent over itself (or two
//! sockets are sent over each other) and then closed: the queue holds the
//! description that would release the queue. [`collect_garbage`] finds
//! such sockets (every reference to their description is in flight, and no
//! socket reachable from outside holds them) and purges their queues, as
//! Linux's `unix_gc`; the socket calls run it.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicU32, Ordering};

use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

use super::{Control, Received, SockAddr, SockCtx, Socket, Ucred, UnixAddr};
use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::fs::file::FileRef;
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// Linux's default `SO_SNDBUF`/`SO_RCVBUF` (`net.core.wmem_default`).
pub const BUF_DEFAULT: usize = 212_992;
/// `net.core.wmem_max` / `rmem_max`: the most `SO_SNDBUF` grants (doubled).
pub const BUF_MAX: usize = 212_992;
/// `SOCK_MIN_SNDBUF`.
const MIN_SNDBUF: usize = 4608;
/// `SOCK_MIN_RCVBUF`.
const MIN_RCVBUF: usize = 2304;
/// What each queued message costs its sender besides its bytes.
pub const MSG_OVERHEAD: usize = 256;
/// `net.unix.max_dgram_qlen`: datagrams queued on a receiver from senders
/// it is not connected back to.
pub const MAX_DGRAM_QLEN: usize = 10;
/// `net.core.somaxconn`.
pub const SOMAXCONN: u32 = 4096;
/// `SCM_MAX_FD`: files one message may carry.
pub const SCM_MAX_FD: usize = 253;
/// What a socket object costs the budget (Linux's `unix_sock` with its
/// `socket` and inode is about this).
const SOCKET_OBJECT: usize = 1024;
/// `POLLWRBAND`.
const POLLWRBAND: u32 = g::POLLWRBAND;

/// `sk_shutdown` bits.
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
const SHUTDOWN_MASK: u8 = 3;

/// One queued message (a datagram, a seqpacket record, or a piece of a
/// stream), charged to its sender until consumed.
struct Msg {
    data: Vec<u8>,
    /// Bytes of `data` already read (stream).
    off: usize,
    rights: Vec<FileRef>,
    creds: Ucred,
    /// The sender's name when it sent.
    from: UnixAddr,
    sender: Weak<UnixSocket>,
    charge: usize,
    /// The same bytes, taken from the guest's budget until the message goes.
    _mem: Charge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Never connected (`TCP_CLOSE`).
    Unconnected,
    /// `listen` was called.
    Listening,
    /// Connected (stays so after the peer goes: reads then see EOF).
    Connected,
}

struct Inner {
    state: State,
    local: UnixAddr,
    peer: Option<Weak<UnixSocket>>,
    /// The peer's name when the connection was made (kept after it closes).
    peer_name: UnixAddr,
    rx: VecDeque<Msg>,
    /// Bytes charged to this socket as a sender and still queued somewhere.
    wmem: usize,
    shutdown: u8,
    err: Option<Errno>,
    backlog: u32,
    accept_q: VecDeque<Rc<UnixSocket>>,
    /// `SO_PEERCRED`.
    peercred: Option<Ucred>,
    /// Credentials at creation / `listen` (what a connecting peer sees).
    cred: Ucred,
    passcred: bool,
    reuseaddr: bool,
    keepalive: bool,
    sndbuf: usize,
    rcvbuf: usize,
    rcvtimeo: [u8; 16],
    sndtimeo: [u8; 16],
    /// Options stored and reported but without effect here (`SO_BROADCAST`...).
    misc: BTreeMap<u32, u32>,
    released: bool,
}

/// An AF_UNIX socket.
pub struct UnixSocket {
    ty: u32,
    me: Weak<UnixSocket>,
    /// The guest's budget (none in unit tests) and this object's charge to it.
    budget: Option<BudgetRef>,
    _obj: Charge,
    s: RefCell<Inner>,
    opens: Cell<u32>,
    wq: WaitRef,
}

/// The filesystem object of a bound AF_UNIX path: a `S_IFSOCK` inode that
/// cannot be opened (`ENXIO`), only connected to.
pub struct UnixNode {
    sock: Weak<UnixSocket>,
}

impl UnixNode {
    /// A node naming `sock`.
    pub fn new(sock: &UnixSocket) -> Rc<UnixNode> {
        Rc::new(UnixNode { sock: sock.me.clone() })
    }
    /// The socket bound to this node, if it is still open.
    pub fn socket(&self) -> Option<Rc<UnixSocket>> {
        self.sock.upgrade().filter(|s| !s.s.borrow().released)
    }
}

impl FileOps for UnixNode {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        0
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<crate::wait::Opened, Errno> {
        Err(Errno::ENXIO)
    }
    fn type_bits(&self) -> u32 {
        g::S_IFSOCK
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Counter behind autobind names (5 hex digits, as Linux's).
static AUTOBIND: AtomicU32 = AtomicU32::new(0);

fn rights_dropped(v: Vec<Msg>) {
    // Dropping files in flight may release other sockets: no borrow may be
    // held here (callers move the messages out first).
    drop(v);
}

impl UnixSocket {
    /// A new unconnected socket of type `ty` (`SOCK_STREAM`, `SOCK_DGRAM`,
    /// `SOCK_SEQPACKET`), created by `cred`, charged to `budget` (`ENOMEM`
    /// when it is spent).
    pub fn new(ty: u32, cred: Ucred, budget: Option<&BudgetRef>) -> Result<Rc<UnixSocket>, Errno> {
        let obj = match budget {
            Some(b) => Charge::new(b, Cost::Socket, SOCKET_OBJECT)?,
            None => Charge::none(Cost::Socket),
        };
        Ok(Rc::new_cyclic(|me| UnixSocket {
            ty,
            me: me.clone(),
            budget: budget.cloned(),
            _obj: obj,
            s: RefCell::new(Inner {
                state: State::Unconnected,
                local: UnixAddr::Unnamed,
                peer: None,
                peer_name: UnixAddr::Unnamed,
                rx: VecDeque::new(),
                wmem: 0,
                shutdown: 0,
                err: None,
                backlog: 0,
                accept_q: VecDeque::new(),
                peercred: None,
                cred,
                passcred: false,
                reuseaddr: false,
                keepalive: false,
                sndbuf: BUF_DEFAULT,
                rcvbuf: BUF_DEFAULT,
                rcvtimeo: [0; 16],
                sndtimeo: [0; 16],
                misc: BTreeMap::new(),
                released: false,
            }),
            opens: Cell::new(0),
            wq: WaitQueue::new(),
        }))
    }

    /// `socketpair`: two sockets connected to each other.
    pub fn pair(ty: u32, cred: Ucred, budget: Option<&BudgetRef>) -> Result<(Rc<UnixSocket>, Rc<UnixSocket>), Errno> {
        let a = UnixSocket::new(ty, cred, budget)?;
        let b = UnixSocket::new(ty, cred, budget)?;
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut s = x.s.borrow_mut();
            s.state = State::Connected;
            s.peer = Some(Rc::downgrade(y));
            s.peercred = Some(cred);
        }
        Ok((a, b))
    }

    /// The wait queue (changes with this socket's readiness).
    pub fn wait_queue(&self) -> &WaitRef {
        &self.wq
    }

    /// Has its last file description been closed?
    pub fn is_released(&self) -> bool {
        self.s.borrow().released
    }

    /// The connected peer, if it is still there.
    pub fn peer_socket(&self) -> Option<Rc<UnixSocket>> {
        self.peer()
    }

    /// Does its receive queue hold files in flight?
    fn holds_rights(&self) -> bool {
        self.s.borrow().rx.iter().any(|m| !m.rights.is_empty())
    }

    /// This socket, shared.
    pub fn rc(&self) -> Option<Rc<UnixSocket>> {
        self.me.upgrade()
    }

    /// Is it bound to a name?
    pub fn is_bound(&self) -> bool {
        self.s.borrow().local != UnixAddr::Unnamed
    }

    fn peer(&self) -> Option<Rc<UnixSocket>> {
        self.s.borrow().peer.as_ref().and_then(|w| w.upgrade())
    }

    /// Register what a blocked send waits for besides this socket: the
    /// receiver's queue (a datagram receiver full of others' messages).
    pub fn send_waits(&self, ws: &mut WaitSet) {
        ws.add(&self.wq);
        if let Some(p) = self.peer() {
            ws.add(&p.wq);
        }
    }

    /// Charge `bytes` to this sender.
    fn charge(&self, bytes: usize) {
        let mut s = self.s.borrow_mut();
        s.wmem += bytes;
    }

    /// A message of ours was consumed or dropped.
    fn uncharge(&self, bytes: usize) {
        {
            let mut s = self.s.borrow_mut();
            s.wmem = s.wmem.saturating_sub(bytes);
        }
        self.wq.notify();
    }

    /// Drop messages: give their senders their buffer space back (and
    /// close the files they carry). No borrow of any socket may be held.
    fn discard(msgs: Vec<Msg>) {
        for m in &msgs {
            if let Some(snd) = m.sender.upgrade() {
                snd.uncharge(m.charge);
            }
        }
        rights_dropped(msgs);
    }

    /// Bind to `addr` (a path's node was created by the caller). An
    /// unnamed address autobinds an abstract name.
    fn do_bind(&self, cx: &mut SockCtx<'_>, addr: &UnixAddr) -> Result<(), Errno> {
        let bound = self.is_bound();
        match addr {
            UnixAddr::Unnamed => {
                if bound {
                    return Ok(());
                }
                self.autobind(cx)
            }
            _ if bound => Err(Errno::EINVAL),
            UnixAddr::Abstract(name) => {
                let live = cx.net.unix_abstract.get(name).and_then(|w| w.upgrade()).is_some_and(|s| {
                    s.as_any().downcast_ref::<UnixSocket>().is_some_and(|u| !u.is_released())
                });
                if live {
                    return Err(Errno::EADDRINUSE);
                }
                self.set_abstract(cx, name.clone());
                Ok(())
            }
            UnixAddr::Path(p) => {
                self.s.borrow_mut().local = UnixAddr::Path(p.clone());
                Ok(())
            }
        }
    }

    fn set_abstract(&self, cx: &mut SockCtx<'_>, name: Vec<u8>) {
        // Forget names of sockets that are gone.
        cx.net.unix_abstract.retain(|_, w| {
            w.upgrade().is_some_and(|s| s.as_any().downcast_ref::<UnixSocket>().is_none_or(|u| !u.is_released()))
        });
        let me: Rc<dyn Socket> = match self.me.upgrade() {
            Some(m) => m,
            None => return,
        };
        cx.net.unix_abstract.insert(name.clone(), Rc::downgrade(&me));
        self.s.borrow_mut().local = UnixAddr::Abstract(name);
    }

    /// Autobind: a fresh abstract name of five hex digits.
    fn autobind(&self, cx: &mut SockCtx<'_>) -> Result<(), Errno> {
        for _ in 0..0x10_0000 {
            let v = AUTOBIND.fetch_add(1, Ordering::Relaxed) & 0xf_ffff;
            let mut name = Vec::with_capacity(5);
            for shift in [16, 12, 8, 4, 0] {
                name.push(b"0123456789abcdef"[((v >> shift) & 0xf) as usize]);
            }
            let taken = cx.net.unix_abstract.get(&name).and_then(|w| w.upgrade()).is_some();
            if !taken {
                self.set_abstract(cx, name);
                return Ok(());
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Look up an abstract name.
    pub fn find_abstract(cx: &SockCtx<'_>, name: &[u8]) -> Result<Rc<UnixSocket>, Errno> {
        let s = cx.net.unix_abstract.get(name).and_then(|w| w.upgrade()).ok_or(Errno::ECONNREFUSED)?;
        let u = s.as_any().downcast_ref::<UnixSocket>().ok_or(Errno::ECONNREFUSED)?;
        if u.is_released() {
            return Err(Errno::ECONNREFUSED);
        }
        u.me.upgrade().ok_or(Errno::ECONNREFUSED)
    }

    /// Connect to `target` (already looked up by name, with permission
    /// checks done). Stream/seqpacket: queue a new server-side socket on
    /// the listener (`EAGAIN` when its backlog is full); datagram: set the
    /// default destination.
    pub fn connect_to(&self, cx: &mut SockCtx<'_>, target: &Rc<UnixSocket>) -> Result<(), Errno> {
        if target.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        if self.ty == n::SOCK_DGRAM {
            let t = target.s.borrow();
            if t.released {
                return Err(Errno::ECONNREFUSED);
            }
            // unix_may_send: a socket connected elsewhere takes nothing from us.
            if let Some(tp) = &t.peer {
                if !Weak::ptr_eq(tp, &self.me) && tp.upgrade().is_some() {
                    return Err(Errno::EPERM);
                }
            }
            let name = t.local.clone();
            drop(t);
            let mut s = self.s.borrow_mut();
            s.peer = Some(Rc::downgrade(target));
            s.peer_name = name;
            s.state = State::Connected;
            drop(s);
            self.wq.notify();
            return Ok(());
        }
        {
            let t = target.s.borrow();
            if t.released || t.state != State::Listening || t.shutdown & RCV_SHUTDOWN != 0 {
                return Err(Errno::ECONNREFUSED);
            }
            if t.accept_q.len() > t.backlog as usize {
                return Err(Errno::EAGAIN);
            }
        }
        match self.s.borrow().state {
            State::Unconnected => {}
            State::Connected => return Err(Errno::EISCONN),
            State::Listening => return Err(Errno::EINVAL),
        }
        let (tname, tcred) = {
            let t = target.s.borrow();
            (t.local.clone(), t.cred)
        };
        let server = UnixSocket::new(self.ty, tcred, self.budget.as_ref())?;
        {
            let mut ns = server.s.borrow_mut();
            ns.state = State::Connected;
            ns.local = tname.clone();
            ns.peer = Some(self.me.clone());
            ns.peer_name = self.s.borrow().local.clone();
            ns.peercred = Some(cx.cred);
            let t = target.s.borrow();
            ns.passcred = t.passcred;
            ns.sndbuf = t.sndbuf;
            ns.rcvbuf = t.rcvbuf;
        }
        {
            let mut s = self.s.borrow_mut();
            s.state = State::Connected;
            s.peer = Some(Rc::downgrade(&server));
            s.peer_name = tname;
            s.peercred = Some(tcred);
        }
        target.s.borrow_mut().accept_q.push_back(server);
        target.wq.notify();
        self.wq.notify();
        Ok(())
    }

    /// Dissolve a datagram association (`connect` to `AF_UNSPEC`).
    fn disconnect(&self) -> Result<(), Errno> {
        if self.ty == n::SOCK_DGRAM {
            let mut s = self.s.borrow_mut();
            s.peer = None;
            s.peer_name = UnixAddr::Unnamed;
            s.state = State::Unconnected;
            drop(s);
            self.wq.notify();
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// `sendmsg` to `target` (`None`: the connected peer). `cred` is what
    /// `SCM_CREDENTIALS` reports for the sender.
    pub fn send_to(&self, cred: Ucred, data: &[u8], target: Option<Rc<UnixSocket>>, control: Control, flags: u32) -> Result<usize, Errno> {
        if flags & n::MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let creds = control.creds.unwrap_or(cred);
        match self.ty {
            n::SOCK_STREAM => {
                if target.is_some() {
                    return Err(if self.s.borrow().state == State::Connected { Errno::EISCONN } else { Errno::EOPNOTSUPP });
                }
                let peer = {
                    let s = self.s.borrow();
                    if s.state != State::Connected {
                        return Err(Errno::ENOTCONN);
                    }
                    if s.shutdown & SEND_SHUTDOWN != 0 {
                        return Err(Errno::EPIPE);
                    }
                    s.peer.clone()
                };
                if data.is_empty() {
                    return Ok(0);
                }
                let peer = peer.and_then(|w| w.upgrade()).ok_or(Errno::EPIPE)?;
                {
                    let p = peer.s.borrow();
                    if p.released || p.shutdown & RCV_SHUTDOWN != 0 {
                        return Err(Errno::EPIPE);
                    }
                }
                let room = {
                    let s = self.s.borrow();
                    s.sndbuf.saturating_sub(s.wmem + MSG_OVERHEAD)
                };
                if room == 0 {
                    return Err(Errno::EAGAIN);
                }
                let len = data.len().min(room);
                self.deliver(&peer, &data[..len], control.rights, creds)?;
                Ok(len)
            }
            _ => {
                // Seqpacket ignores a destination; datagram uses it.
                let seq = self.ty == n::SOCK_SEQPACKET;
                if seq {
                    if let Some(e) = self.s.borrow_mut().err.take() {
                        return Err(e);
                    }
                    if self.s.borrow().state != State::Connected {
                        return Err(Errno::ENOTCONN);
                    }
                }
                let target = if seq { None } else { target };
                let connected = target.is_none();
                let other = match target {
                    Some(t) => t,
                    None => {
                        let peer = self.s.borrow().peer.clone();
                        match peer {
                            None => return Err(Errno::ENOTCONN),
                            Some(w) => match w.upgrade() {
                                Some(p) => p,
                                None if seq => return Err(Errno::EPIPE),
                                None => {
                                    self.disconnect()?;
                                    return Err(Errno::ECONNREFUSED);
                                }
                            },
                        }
                    }
                };
                {
                    let s = self.s.borrow();
                    if data.len() > s.sndbuf.saturating_sub(32) {
                        return Err(Errno::EMSGSIZE);
                    }
                    if s.shutdown & SEND_SHUTDOWN != 0 {
                        return Err(Errno::EPIPE);
                    }
                    if s.wmem >= s.sndbuf {
                        return Err(Errno::EAGAIN);
                    }
                }
                if other.ty != self.ty {
                    return Err(Errno::EPROTOTYPE);
                }
                let (dead, may_send, rcv_shut, full) = {
                    let o = other.s.borrow();
                    let back = o.peer.as_ref().is_some_and(|w| Weak::ptr_eq(w, &self.me));
                    let may = o.peer.as_ref().is_none_or(|w| back || w.upgrade().is_none_or(|p| p.is_released()));
                    (o.released, may, o.shutdown & RCV_SHUTDOWN != 0, !back && o.rx.len() > MAX_DGRAM_QLEN)
                };
                if dead {
                    if seq {
                        return Err(Errno::EPIPE);
                    }
                    if connected {
                        self.disconnect()?;
                    }
                    return Err(Errno::ECONNREFUSED);
                }
                if !may_send {
                    return Err(Errno::EPERM);
                }
                if rcv_shut {
                    return Err(Errno::EPIPE);
                }
                if full {
                    return Err(Errno::EAGAIN);
                }
                self.deliver(&other, data, control.rights, creds)?;
                Ok(data.len())
            }
        }
    }

    /// Queue `data` on `to`'s receive queue, charged to us (and to the
    /// budget: `ENOBUFS` when it is spent, as Linux when it cannot allocate
    /// the buffer).
    fn deliver(&self, to: &Rc<UnixSocket>, data: &[u8], rights: Vec<FileRef>, creds: Ucred) -> Result<(), Errno> {
        let charge = data.len() + MSG_OVERHEAD;
        let mem = match &self.budget {
            Some(b) => Charge::new(b, Cost::Socket, charge).map_err(|_| Errno::ENOBUFS)?,
            None => Charge::none(Cost::Socket),
        };
        let data = data.to_vec();
        let from = self.s.borrow().local.clone();
        self.charge(charge);
        to.s.borrow_mut().rx.push_back(Msg { data, off: 0, rights, creds, from, sender: self.me.clone(), charge, _mem: mem });
        to.wq.notify();
        self.wq.notify();
        Ok(())
    }

    /// Is the peer's writer stuck because our queue holds all it may send?
    fn sender_stuck(&self) -> bool {
        self.peer().is_some_and(|p| {
            let s = p.s.borrow();
            s.wmem + MSG_OVERHEAD >= s.sndbuf
        })
    }

    /// `recvmsg` into `buf`. `flags` carries `MSG_DONTWAIT` for a
    /// nonblocking description (it only matters for `MSG_WAITALL`).
    pub fn recv_into(&self, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        if flags & n::MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let peek = flags & n::MSG_PEEK != 0;
        if self.ty == n::SOCK_STREAM {
            return self.recv_stream(buf, flags, peek);
        }
        let mut s = self.s.borrow_mut();
        if self.ty == n::SOCK_SEQPACKET && s.state != State::Connected {
            return Err(Errno::ENOTCONN);
        }
        if s.rx.is_empty() {
            if let Some(e) = s.err.take() {
                return Err(e);
            }
            // A nonblocking datagram receive says EAGAIN even after shutdown.
            if s.shutdown & RCV_SHUTDOWN != 0 && flags & n::MSG_DONTWAIT == 0 {
                return Ok(Received { len: 0, full_len: 0, from: None, control: Control::default() });
            }
            return Err(Errno::EAGAIN);
        }
        let want_creds = s.passcred;
        let m = if peek {
            let Some(m) = s.rx.front() else { return Err(Errno::EAGAIN) };
            let n = buf.len().min(m.data.len());
            buf[..n].copy_from_slice(&m.data[..n]);
            let control = Control { rights: m.rights.clone(), creds: want_creds.then_some(m.creds), pktinfo: None };
            let from = (m.from != UnixAddr::Unnamed).then(|| SockAddr::Unix(m.from.clone()));
            return Ok(Received { len: n, full_len: m.data.len(), from, control });
        } else {
            match s.rx.pop_front() {
                Some(m) => m,
                None => return Err(Errno::EAGAIN),
            }
        };
        drop(s);
        let n = buf.len().min(m.data.len());
        buf[..n].copy_from_slice(&m.data[..n]);
        let mut m = m;
        let control = Control { rights: core::mem::take(&mut m.rights), creds: want_creds.then_some(m.creds), pktinfo: None };
        let from = (m.from != UnixAddr::Unnamed).then(|| SockAddr::Unix(m.from.clone()));
        let full = m.data.len();
        if let Some(snd) = m.sender.upgrade() {
            snd.uncharge(m.charge);
        }
        self.wq.notify();
        Ok(Received { len: n, full_len: full, from, control })
    }

    fn recv_stream(&self, buf: &mut [u8], flags: u32, peek: bool) -> Result<Received, Errno> {
        let mut s = self.s.borrow_mut();
        if s.state != State::Connected {
            return Err(Errno::EINVAL);
        }
        if s.rx.is_empty() {
            if let Some(e) = s.err.take() {
                return Err(e);
            }
            if s.shutdown & RCV_SHUTDOWN != 0 || buf.is_empty() {
                return Ok(Received { len: 0, full_len: 0, from: None, control: Control::default() });
            }
            return Err(Errno::EAGAIN);
        }
        // MSG_WAITALL: wait for the whole request unless the peer can send
        // no more (EOF, or our queue already holds all its buffer allows).
        let waitall = flags & n::MSG_WAITALL != 0 && flags & n::MSG_DONTWAIT == 0 && !peek;
        let short = || s.rx.iter().map(|m| m.data.len() - m.off).sum::<usize>() < buf.len();
        if waitall && s.shutdown & RCV_SHUTDOWN == 0 && s.err.is_none() && short() {
            drop(s);
            if !self.sender_stuck() && self.peer().is_some() {
                return Err(Errno::EAGAIN);
            }
            s = self.s.borrow_mut();
        }
        let want_creds = s.passcred;
        let mut copied = 0usize;
        let mut control = Control::default();
        let mut from = None;
        let mut first_creds = None;
        let mut done: Vec<Msg> = Vec::new();
        let mut i = 0;
        while copied < buf.len() {
            let Some(m) = s.rx.get_mut(i) else { break };
            if want_creds {
                // Never glue messages from different writers.
                match first_creds {
                    None => first_creds = Some(m.creds),
                    Some(c) if c != m.creds => break,
                    _ => {}
                }
            }
            if copied == 0 && m.from != UnixAddr::Unnamed {
                from = Some(SockAddr::Unix(m.from.clone()));
            }
            let n = (buf.len() - copied).min(m.data.len() - m.off);
            buf[copied..copied + n].copy_from_slice(&m.data[m.off..m.off + n]);
            copied += n;
            let has_fds = !m.rights.is_empty();
            if peek {
                if has_fds {
                    control.rights = m.rights.clone();
                    break;
                }
                i += 1;
                continue;
            }
            m.off += n;
            if has_fds {
                control.rights = core::mem::take(&mut m.rights);
            }
            if m.off < m.data.len() {
                break;
            }
            if let Some(m) = s.rx.pop_front() {
                done.push(m);
            }
            if has_fds {
                break;
            }
        }
        if want_creds {
            control.creds = first_creds;
        }
        drop(s);
        if !done.is_empty() {
            UnixSocket::discard(done);
        }
        if !peek {
            self.wq.notify();
        }
        Ok(Received { len: copied, full_len: copied, from, control })
    }

    /// `accept`: the next queued connection and its peer's name.
    pub fn accept_next(&self) -> Result<(Rc<UnixSocket>, SockAddr), Errno> {
        if self.ty == n::SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.s.borrow_mut();
        if s.state != State::Listening {
            return Err(Errno::EINVAL);
        }
        let ns = s.accept_q.pop_front().ok_or(Errno::EAGAIN)?;
        drop(s);
        self.wq.notify();
        let name = ns.s.borrow().peer_name.clone();
        Ok((ns, SockAddr::Unix(name)))
    }

    /// The last description was closed (or, for a socket never accepted,
    /// its listener went): hang up the peer, drop everything queued.
    pub fn release(&self) {
        let (peer, rx, embryos) = {
            let mut s = self.s.borrow_mut();
            if s.released {
                return;
            }
            s.released = true;
            s.shutdown = SHUTDOWN_MASK;
            let peer = s.peer.take().and_then(|w| w.upgrade());
            let rx: Vec<Msg> = s.rx.drain(..).collect();
            let embryos: Vec<Rc<UnixSocket>> = s.accept_q.drain(..).collect();
            (peer, rx, embryos)
        };
        if let Some(p) = peer {
            if self.ty != n::SOCK_DGRAM {
                let mut ps = p.s.borrow_mut();
                ps.shutdown = SHUTDOWN_MASK;
                if !rx.is_empty() {
                    ps.err = Some(Errno::ECONNRESET);
                }
            }
            p.wq.notify();
        }
        UnixSocket::discard(rx);
        for e in embryos {
            // A connection never accepted: its client sees EOF (and a
            // reset if it had sent data).
            e.release();
        }
        self.wq.notify();
    }

    fn readiness(&self, ws: Option<&mut WaitSet>) -> u32 {
        let s = self.s.borrow();
        let mut m = 0;
        if s.err.is_some() {
            m |= POLLERR;
        }
        if s.shutdown & RCV_SHUTDOWN != 0 {
            m |= POLLRDHUP | POLLIN | POLLRDNORM;
        }
        if s.shutdown == SHUTDOWN_MASK {
            m |= POLLHUP;
        }
        let readable = if s.state == State::Listening { !s.accept_q.is_empty() } else { !s.rx.is_empty() };
        if readable {
            m |= POLLIN | POLLRDNORM;
        }
        if self.ty != n::SOCK_DGRAM && s.state == State::Unconnected {
            m |= POLLHUP;
        }
        let mut writable = s.state != State::Listening && s.wmem * 4 <= s.sndbuf;
        let peer = s.peer.as_ref().and_then(|w| w.upgrade());
        drop(s);
        if self.ty == n::SOCK_DGRAM && writable {
            if let Some(p) = &peer {
                let ps = p.s.borrow();
                let back = ps.peer.as_ref().is_some_and(|w| Weak::ptr_eq(w, &self.me));
                if !back && ps.rx.len() > MAX_DGRAM_QLEN {
                    writable = false;
                }
            }
        }
        if writable {
            m |= POLLOUT | POLLWRNORM | POLLWRBAND;
        }
        if let Some(ws) = ws {
            ws.add(&self.wq);
            if self.ty == n::SOCK_DGRAM {
                if let Some(p) = &peer {
                    ws.add(&p.wq);
                }
            }
        }
        m
    }

    /// Bytes `FIONREAD` reports: all unread stream bytes, or the size of
    /// the next datagram.
    pub fn inq(&self) -> Result<usize, Errno> {
        let s = self.s.borrow();
        if s.state == State::Listening {
            return Err(Errno::EINVAL);
        }
        Ok(if self.ty == n::SOCK_STREAM {
            s.rx.iter().map(|m| m.data.len() - m.off).sum()
        } else {
            s.rx.front().map_or(0, |m| m.data.len())
        })
    }

    /// Bytes sent and not yet read by the receiver (`SIOCOUTQ`).
    pub fn outq(&self) -> usize {
        let s = self.s.borrow();
        if s.state == State::Listening {
            return 0;
        }
        s.wmem
    }
}

fn int_opt(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn opt_int(value: &[u8]) -> Result<i32, Errno> {
    if value.len() < 4 {
        return Err(Errno::EINVAL);
    }
    Ok(i32::from_le_bytes([value[0], value[1], value[2], value[3]]))
}

impl FileOps for UnixSocket {
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let flags = if io.nonblock { n::MSG_DONTWAIT } else { 0 };
        let r = self.recv_into(buf, flags)?;
        // Files sent along are dropped by a plain read (Linux closes them too).
        drop(r.control);
        Ok(r.len)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        let c = self.s.borrow().cred;
        let cred = Ucred { pid: io.pid, ..c };
        self.send_to(cred, data, None, Control::default(), 0)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        self.readiness(ws)
    }
    fn opened(&self, _readable: bool, _writable: bool) {
        self.opens.set(self.opens.get() + 1);
    }
    fn closed(&self, _readable: bool, _writable: bool) {
        let n = self.opens.get().saturating_sub(1);
        self.opens.set(n);
        if n == 0 {
            self.release();
        }
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<crate::wait::Opened, Errno> {
        Err(Errno::ENXIO)
    }
    crate::net::socket_file_ops!();
}

impl Socket for UnixSocket {
    fn family(&self) -> u32 {
        n::AF_UNIX
    }
    fn sock_type(&self) -> u32 {
        self.ty
    }
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        match addr {
            SockAddr::Unix(u) => self.do_bind(cx, u),
            _ => Err(Errno::EINVAL),
        }
    }
    /// Abstract names only: the system call layer resolves paths (it owns
    /// the VFS and its permission checks) and calls [`UnixSocket::connect_to`].
    fn connect(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno> {
        match addr {
            SockAddr::Unspec => self.disconnect(),
            SockAddr::Unix(UnixAddr::Abstract(name)) => {
                let t = UnixSocket::find_abstract(cx, name)?;
                self.connect_to(cx, &t)
            }
            _ => Err(Errno::EINVAL),
        }
    }
    fn listen(&self, cx: &mut SockCtx<'_>, backlog: u32) -> Result<(), Errno> {
        if self.ty == n::SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.s.borrow_mut();
        if s.local == UnixAddr::Unnamed {
            return Err(Errno::EINVAL);
        }
        if s.state == State::Connected {
            return Err(Errno::EINVAL);
        }
        // A negative backlog is a huge unsigned one: capped at somaxconn.
        s.backlog = backlog.min(SOMAXCONN);
        if s.state == State::Unconnected {
            s.cred = cx.cred;
        }
        s.state = State::Listening;
        drop(s);
        self.wq.notify();
        Ok(())
    }
    fn accept(&self, _cx: &mut SockCtx<'_>) -> Result<(Rc<dyn Socket>, SockAddr), Errno> {
        let (ns, a) = self.accept_next()?;
        Ok((ns, a))
    }
    fn send(&self, cx: &mut SockCtx<'_>, data: &[u8], to: Option<&SockAddr>, control: Control, flags: u32) -> Result<usize, Errno> {
        let target = match to {
            None => None,
            Some(SockAddr::Unix(UnixAddr::Abstract(name))) => Some(UnixSocket::find_abstract(cx, name)?),
            Some(_) => return Err(Errno::EINVAL),
        };
        self.send_to(cx.cred, data, target, control, flags)
    }
    fn recv(&self, _cx: &mut SockCtx<'_>, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        self.recv_into(buf, flags)
    }
    fn shutdown(&self, _cx: &mut SockCtx<'_>, how: u32) -> Result<(), Errno> {
        let mode = match how {
            n::SHUT_RD => RCV_SHUTDOWN,
            n::SHUT_WR => SEND_SHUTDOWN,
            n::SHUT_RDWR => SHUTDOWN_MASK,
            _ => return Err(Errno::EINVAL),
        };
        let peer = {
            let mut s = self.s.borrow_mut();
            s.shutdown |= mode;
            s.peer.as_ref().and_then(|w| w.upgrade())
        };
        if let Some(p) = peer {
            if self.ty != n::SOCK_DGRAM {
                let mut pm = 0;
                if mode & RCV_SHUTDOWN != 0 {
                    pm |= SEND_SHUTDOWN;
                }
                if mode & SEND_SHUTDOWN != 0 {
                    pm |= RCV_SHUTDOWN;
                }
                p.s.borrow_mut().shutdown |= pm;
                p.wq.notify();
            }
        }
        self.wq.notify();
        Ok(())
    }
    fn local_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        Ok(SockAddr::Unix(self.s.borrow().local.clone()))
    }
    fn peer_addr(&self, _cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno> {
        let s = self.s.borrow();
        if s.state != State::Connected {
            return Err(Errno::ENOTCONN);
        }
        if self.ty == n::SOCK_DGRAM && s.peer.is_none() {
            return Err(Errno::ENOTCONN);
        }
        // The peer's name now (it may have bound since), else as it was.
        let live = s.peer.as_ref().and_then(|w| w.upgrade());
        let name = match live {
            // Connected to itself: its own name (its state is borrowed already).
            Some(p) if core::ptr::eq(Rc::as_ptr(&p), self) => s.local.clone(),
            Some(p) => p.s.borrow().local.clone(),
            None => s.peer_name.clone(),
        };
        Ok(SockAddr::Unix(name))
    }
    fn getsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno> {
        if level != n::SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.s.borrow_mut();
        Ok(match name {
            n::SO_TYPE => int_opt(self.ty),
            n::SO_DOMAIN => int_opt(n::AF_UNIX),
            n::SO_PROTOCOL => int_opt(0),
            n::SO_ERROR => int_opt(s.err.take().map_or(0, |e| e.code() as u32)),
            n::SO_ACCEPTCONN => int_opt((s.state == State::Listening) as u32),
            n::SO_SNDBUF => int_opt(s.sndbuf as u32),
            n::SO_RCVBUF => int_opt(s.rcvbuf as u32),
            n::SO_REUSEADDR => int_opt(s.reuseaddr as u32),
            n::SO_KEEPALIVE => int_opt(s.keepalive as u32),
            n::SO_PASSCRED => int_opt(s.passcred as u32),
            n::SO_PEERCRED => {
                let c = s.peercred.unwrap_or(Ucred { pid: 0, uid: u32::MAX, gid: u32::MAX });
                let mut v = int_opt(c.pid);
                v.extend_from_slice(&c.uid.to_le_bytes());
                v.extend_from_slice(&c.gid.to_le_bytes());
                v
            }
            n::SO_RCVTIMEO => s.rcvtimeo.to_vec(),
            n::SO_SNDTIMEO => s.sndtimeo.to_vec(),
            n::SO_LINGER => alloc::vec![0u8; 8],
            n::SO_BROADCAST | n::SO_DEBUG | n::SO_DONTROUTE | n::SO_OOBINLINE | n::SO_PRIORITY | n::SO_REUSEPORT => {
                int_opt(s.misc.get(&name).copied().unwrap_or(0))
            }
            n::SO_RCVLOWAT | n::SO_SNDLOWAT => int_opt(s.misc.get(&name).copied().unwrap_or(1)),
            _ => return Err(Errno::ENOPROTOOPT),
        })
    }
    fn setsockopt(&self, _cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno> {
        if level != n::SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut s = self.s.borrow_mut();
        match name {
            n::SO_RCVTIMEO | n::SO_SNDTIMEO => {
                if value.len() < 16 {
                    return Err(Errno::EINVAL);
                }
                let usec = i64::from_le_bytes([value[8], value[9], value[10], value[11], value[12], value[13], value[14], value[15]]);
                if !(0..1_000_000).contains(&usec) {
                    return Err(Errno::EDOM);
                }
                let mut t = [0u8; 16];
                t.copy_from_slice(&value[..16]);
                let sec = i64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
                if sec < 0 {
                    // A negative timeout means "none".
                    t = [0; 16];
                }
                if name == n::SO_RCVTIMEO {
                    s.rcvtimeo = t;
                } else {
                    s.sndtimeo = t;
                }
                return Ok(());
            }
            n::SO_LINGER => {
                return if value.len() < 8 { Err(Errno::EINVAL) } else { Ok(()) };
            }
            _ => {}
        }
        let v = opt_int(value)?;
        match name {
            n::SO_SNDBUF => s.sndbuf = ((v as u32 as usize).min(BUF_MAX) * 2).max(MIN_SNDBUF),
            n::SO_RCVBUF => s.rcvbuf = ((v as u32 as usize).min(BUF_MAX) * 2).max(MIN_RCVBUF),
            n::SO_REUSEADDR => s.reuseaddr = v != 0,
            n::SO_KEEPALIVE => s.keepalive = v != 0,
            n::SO_PASSCRED => s.passcred = v != 0,
            n::SO_BROADCAST | n::SO_DEBUG | n::SO_DONTROUTE | n::SO_OOBINLINE | n::SO_REUSEPORT => {
                s.misc.insert(name, (v != 0) as u32);
            }
            n::SO_PRIORITY => {
                s.misc.insert(name, v as u32);
            }
            n::SO_RCVLOWAT => {
                s.misc.insert(name, if v <= 0 { 1 } else { v as u32 });
            }
            n::SO_TYPE | n::SO_DOMAIN | n::SO_PROTOCOL | n::SO_ERROR | n::SO_ACCEPTCONN | n::SO_PEERCRED => return Err(Errno::ENOPROTOOPT),
            _ => return Err(Errno::ENOPROTOOPT),
        }
        drop(s);
        self.wq.notify();
        Ok(())
    }
    fn ioctl(&self, _cx: &mut SockCtx<'_>, cmd: u32, _arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
        match cmd {
            linux_raw_sys::ioctl::FIONREAD => Ok((0, Some(int_opt(self.inq()? as u32)))),
            linux_raw_sys::ioctl::TIOCOUTQ => Ok((0, Some(int_opt(self.outq() as u32)))),
            _ => Err(Errno::ENOTTY),
        }
    }
}

/// Collect AF_UNIX sockets that only files in flight keep alive (Linux's
/// `unix_gc`). `inflight` lists sockets that were sent files; those whose
/// queues no longer hold any are dropped from it.
///
/// A description is a candidate when it is a socket's and every reference
/// to it is in some queue. Candidates in the queue of a non-candidate (a
/// socket some process can still read) are reachable, and so is whatever
/// a reachable candidate's queue holds; the remaining candidates are
/// garbage: their queues are purged, which closes them.
pub fn collect_garbage(inflight: &mut Vec<Weak<UnixSocket>>) {
    let recv: Vec<Rc<UnixSocket>> = inflight.iter().filter_map(|w| w.upgrade()).filter(|s| s.holds_rights()).collect();
    inflight.clear();
    inflight.extend(recv.iter().map(Rc::downgrade));
    if recv.is_empty() {
        return;
    }
    // In-flight references per description (keyed by address; one clone each).
    let mut count: BTreeMap<usize, (usize, FileRef)> = BTreeMap::new();
    for r in &recv {
        for m in r.s.borrow().rx.iter() {
            for f in &m.rights {
                count.entry(Rc::as_ptr(f) as usize).or_insert_with(|| (0, f.clone())).0 += 1;
            }
        }
    }
    let sock_of = |f: &FileRef| -> Option<usize> {
        match &f.inode.kind {
            crate::fs::Kind::Special(sp) => sp.as_any().downcast_ref::<UnixSocket>().map(|u| u as *const UnixSocket as usize),
            _ => None,
        }
    };
    // Candidates: socket address -> description address.
    let mut cand: BTreeMap<usize, usize> = BTreeMap::new();
    for (&fp, (n, f)) in &count {
        // `count` holds one reference of its own.
        if Rc::strong_count(f) == n + 1 {
            if let Some(sp) = sock_of(f) {
                cand.insert(sp, fp);
            }
        }
    }
    if cand.is_empty() {
        return;
    }
    let mut live: BTreeSet<usize> = BTreeSet::new();
    let mut work: Vec<Rc<UnixSocket>> = recv.iter().filter(|r| !cand.contains_key(&(Rc::as_ptr(r) as usize))).cloned().collect();
    let by_addr: BTreeMap<usize, Rc<UnixSocket>> = recv.iter().map(|r| (Rc::as_ptr(r) as usize, r.clone())).collect();
    while let Some(r) = work.pop() {
        let held: Vec<FileRef> = r.s.borrow().rx.iter().flat_map(|m| m.rights.iter().cloned()).collect();
        for f in held {
            if let Some(sp) = sock_of(&f) {
                if cand.contains_key(&sp) && live.insert(sp) {
                    if let Some(next) = by_addr.get(&sp) {
                        work.push(next.clone());
                    }
                }
            }
        }
    }
    let mut purged: Vec<Msg> = Vec::new();
    for (sp, _) in cand.iter().filter(|(sp, _)| !live.contains(sp)) {
        if let Some(r) = by_addr.get(sp) {
            purged.extend(r.s.borrow_mut().rx.drain(..));
        }
    }
    drop(count);
    drop(by_addr);
    drop(work);
    drop(recv);
    UnixSocket::discard(purged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, Kind, OpenFile};
    use alloc::string::String;

    fn open(fs: &mut Fs, s: &Rc<UnixSocket>) -> FileRef {
        let obj: crate::wait::SpecialRef = s.clone();
        OpenFile::new(fs.new_inode(Kind::Special(obj), 0o600, 0), g::O_RDWR, String::from("socket:"))
    }

    #[test]
    fn a_pair_sent_over_itself_is_collected() {
        let mut fs = Fs::new();
        let cred = Ucred::default();
        let (a, b) = UnixSocket::pair(n::SOCK_STREAM, cred, None).unwrap();
        let (fa, fb) = (open(&mut fs, &a), open(&mut fs, &b));
        let c = Control { rights: alloc::vec![fa.clone(), fb.clone()], creds: None, pktinfo: None };
        assert_eq!(a.send_to(cred, b"x", None, c, 0), Ok(1));
        let c = Control { rights: alloc::vec![fa.clone()], creds: None, pktinfo: None };
        assert_eq!(b.send_to(cred, b"y", None, c, 0), Ok(1));
        let mut list = alloc::vec![Rc::downgrade(&a), Rc::downgrade(&b)];
        let (wa, wb) = (Rc::downgrade(&a), Rc::downgrade(&b));
        drop((a, b));
        // Still open: nothing is collected.
        collect_garbage(&mut list);
        assert!(wa.upgrade().is_some_and(|s| !s.is_released()));
        drop((fa, fb));
        assert!(wa.upgrade().is_some(), "a cycle keeps them");
        collect_garbage(&mut list);
        assert!(wa.upgrade().is_none() && wb.upgrade().is_none(), "collected");
        collect_garbage(&mut list);
        assert!(list.is_empty());
    }

    #[test]
    fn files_held_by_a_reachable_socket_stay() {
        let mut fs = Fs::new();
        let cred = Ucred::default();
        let (a, b) = UnixSocket::pair(n::SOCK_DGRAM, cred, None).unwrap();
        let (x, y) = UnixSocket::pair(n::SOCK_DGRAM, cred, None).unwrap();
        let (fa, _fb, fx) = (open(&mut fs, &a), open(&mut fs, &b), open(&mut fs, &x));
        // x (closed below) is in b's queue; b is still open: x is reachable.
        let c = Control { rights: alloc::vec![fx.clone()], creds: None, pktinfo: None };
        assert_eq!(a.send_to(cred, b"", None, c, 0), Ok(0));
        let mut list = alloc::vec![Rc::downgrade(&b)];
        let wx = Rc::downgrade(&x);
        drop((x, y, fx, fa));
        collect_garbage(&mut list);
        assert!(wx.upgrade().is_some_and(|s| !s.is_released()));
        assert_eq!(list.len(), 1);
    }

    /// Sockets and queued bytes come out of the guest's budget: when it is
    /// spent a send says `ENOBUFS` (and a new socket `ENOMEM`); queued data
    /// stays charged after its sender is gone, until it is read.
    #[test]
    fn sockets_and_queued_bytes_are_charged_to_the_budget() {
        let cred = Ucred::default();
        let budget = crate::budget::Budget::new(256);
        let mut pairs = Vec::new();
        let err = loop {
            let (a, b) = match UnixSocket::pair(n::SOCK_STREAM, cred, Some(&budget)) {
                Ok(p) => p,
                Err(e) => break e,
            };
            let r = loop {
                match a.send_to(cred, &[7u8; 4096], None, Control::default(), 0) {
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            pairs.push((a, b));
            if r == Errno::ENOBUFS {
                break r;
            }
            assert_eq!(r, Errno::EAGAIN, "the sender's own limit");
        };
        assert!(matches!(err, Errno::ENOBUFS | Errno::ENOMEM), "{err:?}");
        assert!(pairs.len() > 1 && budget.kind_bytes(Cost::Socket) > 0);
        // The senders close; what they queued is still held and charged.
        let receivers: Vec<_> = pairs.into_iter().map(|(a, b)| {
            a.release();
            b
        }).collect();
        let objects = (receivers.len() * SOCKET_OBJECT) as u64;
        assert!(budget.kind_bytes(Cost::Socket) > objects + 4096 * receivers.len() as u64);
        let mut buf = [0u8; 65536];
        for b in &receivers {
            while b.recv_into(&mut buf, n::MSG_DONTWAIT).is_ok_and(|r| r.len > 0) {}
        }
        assert_eq!(budget.kind_bytes(Cost::Socket), objects);
        drop(receivers);
        assert_eq!(budget.kind_bytes(Cost::Socket), 0);
    }
}
