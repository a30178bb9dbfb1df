//! User-mode NAT: the guest's link to the host's network without privileges
//! (like QEMU's "user" networking, written from scratch).
//!
//! The guest sees a 10.0.2.0/24 network: itself at 10.0.2.15
//! ([`GUEST_IP`]), a gateway at 10.0.2.2 ([`GATEWAY_IP`]) that also stands
//! for the host's loopback (a connection to 10.0.2.2:P reaches host
//! 127.0.0.1:P), and a DNS forwarder at 10.0.2.3:53 ([`DNS_IP`], UDP and
//! TCP). The NAT answers ARP for both addresses and ICMP echo to them, and a
//! DHCP client gets 10.0.2.15/24 with that router and DNS server (a guest
//! may as well configure them statically).
//!
//! Guest TCP connections end in a host-side smoltcp interface (in any-IP
//! mode) and are proxied to host sockets that the kernel process opens
//! itself; a refused or failed host connect is a RST to the guest. UDP is
//! relayed through host UDP sockets, one per flow, closed after an idle
//! timeout. `hostfwd` rules listen on the host and connect into the guest.
//! With [`NatConfig::restrict`] (the default) only the DNS forwarder and
//! the destinations [`NatConfig::allow`] names are reachable; the host's
//! loopback (10.0.2.2 to the guest) is not, unless named.
//!
//! All of it runs on one host thread per [`UserNat`], which exchanges frames
//! with the [`hal::NetDevice`] side through two bounded queues; an eventfd
//! ([`crate::net::HostLink::readiness_fd`]) is readable while frames wait for
//! the guest. Dropping the [`UserNat`] stops the thread and closes every host
//! socket it opened. Malformed frames are dropped and counted
//! ([`UserNat::stats`]), never trusted.
//!
//! UDP datagrams of any size (up to 65,507 bytes) cross in IP fragments
//! both ways (`fragment.rs`). Not handled (dropped and counted as
//! unsupported): IPv6, fragments of anything but UDP, ICMP beyond echo to the gateway and DNS addresses (no ping to outside
//! hosts), and ICMP errors for UDP.
//!
//! ```no_run
//! use drivers::net::nat::{NatConfig, UserNat};
//! let cfg = NatConfig::parse("hostfwd=tcp:127.0.0.1:8080-:80").expect("bad --net");
//! let nat = UserNat::new(cfg).expect("cannot start the NAT");
//! // hand `nat` to the kernel as a Box<dyn hal::NetDevice>, and poll
//! // `nat.readiness_fd()` in the wait-for-interrupt loop.
//! # drop(nat);
//! ```

pub mod broker;
mod config;
mod engine;
mod fragment;
mod sys;

pub use config::{Allow, HostFwd, NatConfig, ParseError, Proto};

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sys::EventFd;

/// The guest's address on the NAT's network.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The gateway; connections to it reach the host's loopback.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS forwarder.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The network's prefix length (10.0.2.0/24).
pub const PREFIX_LEN: u8 = 24;
/// The guest interface's default MAC address.
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The MAC address the NAT answers ARP with for 10.0.2.2 and 10.0.2.3.
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// Largest frame either way: 1500 bytes of IP plus the Ethernet header.
const MAX_FRAME: usize = 1514;
/// Frames waiting in each direction; beyond this they are dropped (and
/// counted) so a flood cannot grow host memory.
const QUEUE_LIMIT: usize = 512;

/// Counters of a [`UserNat`] (a snapshot; see [`UserNat::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Frames the guest sent that the NAT accepted into its queue.
    pub frames_from_guest: u64,
    /// Frames handed to the guest.
    pub frames_to_guest: u64,
    /// Frames dropped as malformed: truncated, bad checksum, bad lengths.
    pub dropped_malformed: u64,
    /// Frames dropped for being longer than 1514 bytes (or than the guest's buffer).
    pub dropped_oversize: u64,
    /// Well-formed frames the NAT does not handle (IPv6, fragments, other
    /// protocols, frames for another MAC or from another address).
    pub dropped_unsupported: u64,
    /// Packets refused by policy (restrict, connection limits); a TCP SYN is
    /// answered with RST, anything else dropped.
    pub dropped_policy: u64,
    /// Frames dropped because a queue was full.
    pub dropped_queue_full: u64,
    /// Guest TCP connections refused (policy, limit, or the host connect failed).
    pub tcp_refused: u64,
    /// Guest or forwarded TCP connections proxied so far.
    pub tcp_connections: u64,
    /// UDP flows opened so far.
    pub udp_flows: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    frames_from_guest: AtomicU64,
    frames_to_guest: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_unsupported: AtomicU64,
    dropped_policy: AtomicU64,
    dropped_queue_full: AtomicU64,
    tcp_refused: AtomicU64,
    tcp_connections: AtomicU64,
    udp_flows: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stat {
    Malformed,
    Oversize,
    Unsupported,
    Policy,
    QueueFull,
    TcpRefused,
    TcpConnection,
    UdpFlow,
}

impl Counters {
    pub(crate) fn bump(&self, s: Stat) {
        let c = match s {
            Stat::Malformed => &self.dropped_malformed,
            Stat::Oversize => &self.dropped_oversize,
            Stat::Unsupported => &self.dropped_unsupported,
            Stat::Policy => &self.dropped_policy,
            Stat::QueueFull => &self.dropped_queue_full,
            Stat::TcpRefused => &self.tcp_refused,
            Stat::TcpConnection => &self.tcp_connections,
            Stat::UdpFlow => &self.udp_flows,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> NatStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NatStats {
            frames_from_guest: g(&self.frames_from_guest),
            frames_to_guest: g(&self.frames_to_guest),
            dropped_malformed: g(&self.dropped_malformed),
            dropped_oversize: g(&self.dropped_oversize),
            dropped_unsupported: g(&self.dropped_unsupported),
            dropped_policy: g(&self.dropped_policy),
            dropped_queue_full: g(&self.dropped_queue_full),
            tcp_refused: g(&self.tcp_refused),
            tcp_connections: g(&self.tcp_connections),
            udp_flows: g(&self.udp_flows),
        }
    }
}

/// State shared by the device side and the NAT thread.
pub(crate) struct Shared {
    to_guest: Mutex<VecDeque<Vec<u8>>>,
    from_guest: Mutex<VecDeque<Vec<u8>>>,
    /// Readable while `to_guest` is not empty (the readiness fd).
    guest_ready: EventFd,
    /// Wakes the NAT thread: a frame from the guest, or stop.
    wake: EventFd,
    stop: AtomicBool,
    pub(crate) stats: Counters,
}

impl Shared {
    /// Queue a frame for the guest; false (and counted) if the queue is full.
    pub(crate) fn push_to_guest(&self, frame: Vec<u8>) -> bool {
        let mut q = lock(&self.to_guest);
        if q.len() >= QUEUE_LIMIT {
            self.stats.bump(Stat::QueueFull);
            return false;
        }
        q.push_back(frame);
        if q.len() == 1 {
            self.guest_ready.signal();
        }
        true
    }

    /// Whether the guest queue has room for another frame.
    pub(crate) fn guest_queue_has_room(&self) -> bool {
        lock(&self.to_guest).len() < QUEUE_LIMIT
    }

    /// Take up to `max` frames the guest sent.
    pub(crate) fn take_from_guest(&self, max: usize) -> Vec<Vec<u8>> {
        let mut q = lock(&self.from_guest);
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    pub(crate) fn wake_fd(&self) -> RawFd {
        self.wake.raw()
    }

    /// Clear the wake flag; frames still queued are seen by the caller's
    /// next `take_from_guest`, since they are checked after clearing.
    pub(crate) fn clear_wake(&self) {
        self.wake.clear();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A poisoned lock only means a panic elsewhere; the queue is still a queue.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The user-mode NAT, as the guest's network device.
///
/// Create it with [`UserNat::new`]; it implements [`hal::NetDevice`] and
/// [`crate::net::HostLink`]. Dropping it stops its thread and closes every
/// host socket (listeners and proxied connections) it opened.
pub struct UserNat {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    guest_mac: [u8; 6],
    hostfwd_addrs: Vec<(Proto, SocketAddr)>,
}

impl UserNat {
    /// Bind the `hostfwd` listeners, read the DNS server (from
    /// `cfg.dns_server` or /etc/resolv.conf) and start the NAT thread.
    /// Fails if a forwarded host port cannot be bound or the host is out of
    /// descriptors or threads.
    pub fn new(cfg: NatConfig) -> io::Result<UserNat> {
        Self::start(cfg, broker::Opener::Direct)
    }

    /// As [`UserNat::new`], but the host sockets of guest flows come from
    /// the socket broker at the other end of `broker` ([`broker::serve`]),
    /// so this process needs no host network of its own: its `hostfwd`
    /// listeners are bound here, now, and everything else is asked for.
    pub fn with_broker(cfg: NatConfig, broker: OwnedFd) -> io::Result<UserNat> {
        Self::start(cfg, broker::Opener::Broker(Mutex::new(broker)))
    }

    fn start(cfg: NatConfig, opener: broker::Opener) -> io::Result<UserNat> {
        let shared = Arc::new(Shared {
            to_guest: Mutex::new(VecDeque::new()),
            from_guest: Mutex::new(VecDeque::new()),
            guest_ready: EventFd::new()?,
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
            stats: Counters::default(),
        });
        let guest_mac = cfg.guest_mac;
        let engine = engine::Engine::new(cfg, shared.clone(), opener)?;
        let hostfwd_addrs = engine.hostfwd_addrs();
        let thread = std::thread::Builder::new()
            .name("net-user-nat".into())
            .spawn(move || engine.run())?;
        Ok(UserNat {
            shared,
            thread: Some(thread),
            guest_mac,
            hostfwd_addrs,
        })
    }

    /// The host addresses the `hostfwd` listeners are bound to, in the order
    /// of [`NatConfig::hostfwd`] (useful when a rule asked for port 0).
    pub fn hostfwd_addrs(&self) -> &[(Proto, SocketAddr)] {
        &self.hostfwd_addrs
    }

    /// A snapshot of the NAT's counters.
    pub fn stats(&self) -> NatStats {
        self.shared.stats.snapshot()
    }
}

impl Drop for UserNat {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.signal();
        if let Some(t) = self.thread.take() {
            // The thread owns every host socket; joining means they are closed.
            let _ = t.join();
        }
    }
}

impl hal::NetDevice for UserNat {
    fn mac(&self) -> [u8; 6] {
        self.guest_mac
    }

    fn max_frame(&self) -> usize {
        MAX_FRAME
    }

    fn send(&mut self, frame: &[u8]) {
        let st = &self.shared.stats;
        if frame.len() > MAX_FRAME {
            st.bump(Stat::Oversize);
            return;
        }
        if frame.len() < 14 {
            st.bump(Stat::Malformed);
            return;
        }
        {
            let mut q = lock(&self.shared.from_guest);
            if q.len() >= QUEUE_LIMIT {
                st.bump(Stat::QueueFull);
                return;
            }
            q.push_back(frame.to_vec());
        }
        st.frames_from_guest.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.signal();
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut q = lock(&self.shared.to_guest);
        let mut out = None;
        while let Some(frame) = q.pop_front() {
            if frame.len() > buf.len() {
                self.shared.stats.bump(Stat::Oversize);
                continue;
            }
            buf[..frame.len()].copy_from_slice(&frame);
            self.shared
                .stats
                .frames_to_guest
                .fetch_add(1, Ordering::Relaxed);
            out = Some(frame.len());
            break;
        }
        if q.is_empty() {
            // Under the lock, so a concurrent push re-signals after this.
            self.shared.guest_ready.clear();
        }
        out
    }
}

impl crate::net::HostLink for UserNat {
    fn readiness_fd(&self) -> RawFd {
        self.shared.guest_ready.raw()
    }
}
