//! Sockets: the family-independent part of the socket layer.
//!
//! A socket is a [`FileOps`] object in a `Kind::Special` inode, like a pipe,
//! so `read`/`write`/`poll`/`epoll`/`close`/`dup`/`fork` work on it unchanged.
//! The socket system calls (`syscall/socket.rs`) decode guest arguments
//! (sockaddrs, iovecs, `msghdr` and control messages) into the plain values
//! below and call the [`Socket`] trait, which each family implements:
//! `unix` (AF_UNIX), `inet` (AF_INET/AF_INET6 over smoltcp), `netlink`
//! (a minimal NETLINK_ROUTE for `ip`).
//!
//! Blocking follows the rest of the kernel (see [`crate::wait`]): an
//! operation that cannot proceed now returns `EAGAIN`; the system call layer
//! then blocks on the file's readiness (unless `O_NONBLOCK`/`MSG_DONTWAIT`)
//! and re-runs the call, which must re-evaluate its state from scratch.

pub mod addr;
pub mod inet;
pub mod netlink;
pub mod unix;

/// The [`FileOps`] methods every socket type answers the same way (inside
/// its `impl FileOps`): the `S_IFSOCK` type and downcasting (see
/// [`socket_of`], which must list the type).
macro_rules! socket_file_ops {
    () => {
        fn type_bits(&self) -> u32 {
            linux_raw_sys::general::S_IFSOCK
        }
        fn as_any(&self) -> &dyn core::any::Any {
            self
        }
    };
}
pub(crate) use socket_file_ops;

/// The socket behind a special file, if it is one: the socket system calls
/// reach the family's operations through this. (A downcast per socket type
/// rather than a `FileOps` method, so that `wait`, below `net`, does not
/// name [`Socket`]; a new socket type is added here.)
pub fn socket_of(f: &dyn FileOps) -> Option<&dyn Socket> {
    let a = f.as_any();
    let s: Option<&dyn Socket> = if let Some(s) = a.downcast_ref::<unix::UnixSocket>() {
        Some(s)
    } else if let Some(s) = a.downcast_ref::<inet::tcp::TcpSock>() {
        Some(s)
    } else if let Some(s) = a.downcast_ref::<inet::udp::UdpSock>() {
        Some(s)
    } else if let Some(s) = a.downcast_ref::<netlink::NetlinkSock>() {
        Some(s)
    } else if let Some(s) = a.downcast_ref::<inet::icmp::PingSock>() {
        Some(s)
    } else if let Some(s) = a.downcast_ref::<inet::raw::RawSock>() {
        Some(s)
    } else {
        None
    };
    // A socket type missing from the list would be ENOTSOCK: caught in tests.
    debug_assert!(s.is_some() || f.type_bits() != linux_raw_sys::general::S_IFSOCK, "a socket type is missing from net::socket_of");
    s
}

use alloc::rc::Rc;
use alloc::vec::Vec;

use crate::fs::file::FileRef;
use crate::wait::FileOps;
use crate::Errno;

/// A socket address, decoded from (or to be encoded into) a guest `sockaddr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    /// `AF_UNSPEC` (used by `connect` to dissolve a datagram association).
    Unspec,
    /// `AF_UNIX`: a filesystem path, an abstract name (leading NUL kept out:
    /// `Abstract` holds the bytes after it), or unnamed.
    Unix(UnixAddr),
    /// `AF_INET`: address and port (host byte order).
    Inet([u8; 4], u16),
    /// `AF_INET6`: address, port (host byte order), flow info, scope id.
    Inet6([u8; 16], u16, u32, u32),
    /// `AF_NETLINK`: port id and multicast groups.
    Netlink(u32, u32),
}

/// An AF_UNIX name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixAddr {
    /// No name (an unbound socket, or `socketpair`).
    Unnamed,
    /// A path in the filesystem.
    Path(Vec<u8>),
    /// A Linux abstract-namespace name (without the leading NUL).
    Abstract(Vec<u8>),
}

/// Credentials of a process, as `SO_PEERCRED` and `SCM_CREDENTIALS` carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ucred {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Where a datagram arrived (`IP_PKTINFO`, `IPV6_RECVPKTINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PktInfo {
    /// `ifindex` of the interface it came in on.
    pub ifindex: u32,
    /// The address it was sent to, 4 or 16 bytes (an IPv4 address on an
    /// IPv6 socket comes v4-mapped).
    pub dst: [u8; 16],
    /// An IPv6 socket's (`IPV6_PKTINFO`), else IPv4's (`IP_PKTINFO`).
    pub v6: bool,
}

/// Ancillary data of one message (`SCM_RIGHTS`, `SCM_CREDENTIALS`,
/// `IP_PKTINFO`).
#[derive(Clone, Default)]
pub struct Control {
    /// Open files passed along (`SCM_RIGHTS`).
    pub rights: Vec<FileRef>,
    /// Sender credentials (`SCM_CREDENTIALS`).
    pub creds: Option<Ucred>,
    /// Where the datagram arrived, when the socket asked for it.
    pub pktinfo: Option<PktInfo>,
}

/// What a receive returned.
pub struct Received {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The full length of the datagram/record (for `MSG_TRUNC`), or `len`.
    pub full_len: usize,
    /// The sender's address, for datagram sockets.
    pub from: Option<SockAddr>,
    /// Ancillary data.
    pub control: Control,
}

/// What a socket operation may need of the rest of the kernel, without
/// depending on the HAL type (so [`Socket`] stays object-safe).
pub struct SockCtx<'a> {
    /// Monotonic now (ns), for protocol timers.
    pub now_ns: u64,
    /// The caller's credentials (`SO_PEERCRED`, `SCM_CREDENTIALS`).
    pub cred: Ucred,
    /// The IP stack (interfaces, smoltcp sockets), for AF_INET/AF_INET6 and netlink.
    pub net: &'a mut NetStack,
}

/// The kernel's network state (owned by `Kernel`). The IP stack lives in
/// `inet`; AF_UNIX needs no global state beyond the VFS and its abstract
/// namespace.
#[derive(Default)]
pub struct NetStack {
    /// The abstract AF_UNIX namespace: name -> listening/bound socket.
    pub unix_abstract: alloc::collections::BTreeMap<Vec<u8>, alloc::rc::Weak<dyn Socket>>,
    /// AF_UNIX sockets that were sent files (`SCM_RIGHTS`): where the
    /// collector of unreachable in-flight sockets looks ([`unix::collect_garbage`]).
    pub unix_inflight: Vec<alloc::rc::Weak<unix::UnixSocket>>,
    /// The IP stack: interfaces and smoltcp sockets (shared with every
    /// AF_INET/AF_INET6 socket, which reach it from `read`/`write` too).
    pub inet: inet::StackRef,
}

/// The family-specific operations of a socket. Errors are the errno Linux
/// gives; `EAGAIN` means "would block" (see the module docs).
pub trait Socket: FileOps {
    /// `AF_*` family.
    fn family(&self) -> u32;
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET` or `SOCK_RAW`.
    fn sock_type(&self) -> u32;
    /// `bind`. AF_UNIX path names are created in the VFS by the caller
    /// before this is called.
    fn bind(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno>;
    /// `connect` (re-run after blocking: report completion or the error).
    fn connect(&self, cx: &mut SockCtx<'_>, addr: &SockAddr) -> Result<(), Errno>;
    /// `listen`.
    fn listen(&self, cx: &mut SockCtx<'_>, backlog: u32) -> Result<(), Errno>;
    /// `accept`: a new connected socket and the peer's address.
    fn accept(&self, cx: &mut SockCtx<'_>) -> Result<(Rc<dyn Socket>, SockAddr), Errno>;
    /// `sendmsg` with the data gathered into one buffer.
    fn send(&self, cx: &mut SockCtx<'_>, data: &[u8], to: Option<&SockAddr>, control: Control, flags: u32) -> Result<usize, Errno>;
    /// `recvmsg` into one buffer (scattered by the caller).
    fn recv(&self, cx: &mut SockCtx<'_>, buf: &mut [u8], flags: u32) -> Result<Received, Errno>;
    /// `shutdown(how)`.
    fn shutdown(&self, cx: &mut SockCtx<'_>, how: u32) -> Result<(), Errno>;
    /// `getsockname`.
    fn local_addr(&self, cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno>;
    /// `getpeername` (`ENOTCONN` when not connected).
    fn peer_addr(&self, cx: &mut SockCtx<'_>) -> Result<SockAddr, Errno>;
    /// `getsockopt`: the option's value bytes.
    fn getsockopt(&self, cx: &mut SockCtx<'_>, level: u32, name: u32) -> Result<Vec<u8>, Errno>;
    /// `setsockopt`.
    fn setsockopt(&self, cx: &mut SockCtx<'_>, level: u32, name: u32, value: &[u8]) -> Result<(), Errno>;
    /// `ioctl` on the socket (`FIONREAD`, `SIOC*`): the result, with any
    /// output bytes to copy back to the argument pointer.
    fn ioctl(&self, _cx: &mut SockCtx<'_>, _cmd: u32, _arg: &[u8]) -> Result<(usize, Option<Vec<u8>>), Errno> {
        Err(Errno::ENOTTY)
    }
}
