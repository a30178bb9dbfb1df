//! The virtual switch between guests (UML's `uml_switch` idea) and a
//! guest's link to it.
//!
//! A [`Switch`] owns a host Unix datagram socket bound at a path. A guest's
//! [`SwitchLink`] joins it with a handshake: it binds its own socket to an
//! autobound abstract address and sends an empty datagram (hello) to the
//! path; the switch makes a *port*, a datagram socket of its own connected to
//! the guest's, and answers hello from it; the guest connects to that port.
//! From then on each guest talks only to its port, so every guest's frames
//! queue in its own socket buffers: a guest that floods the switch or stops
//! reading fills its own queues, not the other guests'.
//!
//! The switch forwards Ethernet frames by learned source MAC address and
//! floods broadcast, multicast and unknown destinations to every other port.
//! Frames shorter than an Ethernet header, longer than [`MAX_FRAME`], or with
//! a multicast source address are dropped and counted. Each port has a
//! bounded queue of frames the guest's socket could not take yet; past it,
//! frames for that port are dropped and counted. An empty datagram from a
//! guest to its port is goodbye (sent when the link is dropped); a port whose
//! guest went away without it is removed when a send to it fails.

use super::HostLink;
use hal::NetDevice;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest frame carried (a 1500-byte MTU plus the 14-byte header).
pub const MAX_FRAME: usize = 1514;
/// Frames queued for one port while its guest's socket is full.
const PORT_QUEUE: usize = 256;
/// Guests one switch serves.
const MAX_PORTS: usize = 64;
/// Learned addresses one switch remembers (a guest inventing source
/// addresses cannot grow the table past this; unknown ones are flooded).
const MAX_MACS: usize = 4096;
/// How long a learned address is trusted without being seen again.
const MAC_AGE: Duration = Duration::from_secs(300);
/// Frames taken from one port per round, so that one busy guest cannot
/// starve the others.
const BURST: usize = 64;

/// What a switch did, for its summary and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Guests currently plugged in.
    pub ports: usize,
    /// Frames received from guests.
    pub frames_in: u64,
    /// Frames sent to one learned port.
    pub unicast: u64,
    /// Frames flooded to every other port.
    pub flooded: u64,
    /// Shorter than a header or with a multicast source: dropped.
    pub malformed: u64,
    /// Longer than [`MAX_FRAME`]: dropped.
    pub oversize: u64,
    /// Dropped because the destination port's queue was full.
    pub queue_full: u64,
    /// Hellos refused because the switch had [`MAX_PORTS`] guests.
    pub refused: u64,
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(last_err())
    } else {
        Ok(r)
    }
}

/// A Unix socket address: the `sockaddr_un` and its length.
#[derive(Clone, Copy)]
struct UnixAddr {
    sa: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl UnixAddr {
    fn empty() -> UnixAddr {
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        UnixAddr {
            sa,
            len: std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        }
    }

    fn path(p: &Path) -> io::Result<UnixAddr> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = p.as_os_str().as_bytes();
        let mut a = UnixAddr::empty();
        if bytes.is_empty() || bytes.len() >= a.sa.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: not usable as a Unix socket path (at most 107 bytes)",
                    p.display()
                ),
            ));
        }
        for (d, s) in a.sa.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        a.len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
        Ok(a)
    }

    /// The bytes that identify the address (family excluded).
    fn key(&self) -> Vec<u8> {
        let n = (self.len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
        self.sa.sun_path[..n.min(self.sa.sun_path.len())]
            .iter()
            .map(|&c| c as u8)
            .collect()
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.sa as *const libc::sockaddr_un).cast()
    }
}

/// A non-blocking, close-on-exec Unix datagram socket bound to an autobound
/// abstract address (so its peers can answer it).
fn autobound_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let a = UnixAddr::empty();
    // SAFETY: binding with only the family asks Linux to autobind an abstract name.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            a.as_ptr(),
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

fn set_bufsize(fd: RawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one c_int; failure only leaves the default size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            4,
        );
    }
}

/// `recvfrom` without waiting: (real length, sender), or `None` when nothing
/// is queued. The length may exceed `buf` (the datagram was cut).
fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, UnixAddr)>> {
    let mut from = UnixAddr::empty();
    // SAFETY: buf and from are valid for the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            (&mut from.sa as *mut libc::sockaddr_un).cast(),
            &mut from.len,
        )
    };
    if n < 0 {
        let e = last_err();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some((n as usize, from)))
}

/// `send` without waiting on a connected socket.
fn send_now(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: data is valid for its length.
    let n = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(last_err())
    } else {
        Ok(())
    }
}

fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 }
}

/// An eventfd that stops a running switch.
#[derive(Clone)]
pub struct SwitchStopper(Arc<OwnedFd>);

impl SwitchStopper {
    /// Ask the switch to stop (async-signal-safe: one write(2)).
    pub fn stop(&self) {
        stop_fd(self.0.as_raw_fd());
    }
    /// The eventfd, for a signal handler that calls [`stop_fd`].
    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Wake a switch through its stopper's eventfd (for signal handlers).
pub fn stop_fd(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64; write(2) is async-signal-safe.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

struct Port {
    sock: OwnedFd,
    queue: VecDeque<Vec<u8>>,
}

/// A virtual Ethernet switch on a host Unix datagram socket.
pub struct Switch {
    rx: OwnedFd,
    path: PathBuf,
    stop: Arc<OwnedFd>,
    next_id: u64,
    ports: HashMap<u64, Port>,
    by_addr: HashMap<Vec<u8>, u64>,
    macs: HashMap<[u8; 6], (u64, Instant)>,
    stats: Arc<Mutex<SwitchStats>>,
}

impl Switch {
    /// Bind a switch at `path`. A socket file left there by a switch that
    /// is gone is replaced; a live one is `AddrInUse`.
    pub fn bind(path: &Path) -> io::Result<Switch> {
        let addr = UnixAddr::path(path)?;
        // SAFETY: plain socket(2) call.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: fd was just returned by socket(2).
        let rx = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: addr is a valid sockaddr_un of length addr.len.
        if unsafe { libc::bind(rx.as_raw_fd(), addr.as_ptr(), addr.len) } < 0 {
            let e = last_err();
            if e.raw_os_error() != Some(libc::EADDRINUSE) || switch_alive(path) {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
            std::fs::remove_file(path)?;
            // SAFETY: as above.
            cvt(unsafe { libc::bind(rx.as_raw_fd(), addr.as_ptr(), addr.len) })?;
        }
        // SAFETY: plain eventfd(2) call.
        let ev = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: ev was just returned by eventfd(2).
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(ev) });
        Ok(Switch {
            rx,
            path: path.to_path_buf(),
            stop,
            next_id: 1,
            ports: HashMap::new(),
            by_addr: HashMap::new(),
            macs: HashMap::new(),
            stats: Arc::new(Mutex::new(SwitchStats::default())),
        })
    }

    /// A handle that stops [`Switch::run`] from another thread or a signal
    /// handler.
    pub fn stopper(&self) -> SwitchStopper {
        SwitchStopper(self.stop.clone())
    }

    /// The counters, updated while the switch runs.
    pub fn stats_handle(&self) -> Arc<Mutex<SwitchStats>> {
        self.stats.clone()
    }

    fn bump(&self, f: impl FnOnce(&mut SwitchStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Forward frames until stopped; sleeps in poll(2) while idle.
    pub fn run(mut self) -> io::Result<SwitchStats> {
        let mut buf = vec![0u8; MAX_FRAME + 1];
        loop {
            let ids: Vec<u64> = self.ports.keys().copied().collect();
            let mut pfd = vec![
                libc::pollfd {
                    fd: self.rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for id in &ids {
                let p = &self.ports[id];
                let ev = if p.queue.is_empty() {
                    libc::POLLIN
                } else {
                    libc::POLLIN | libc::POLLOUT
                };
                pfd.push(libc::pollfd {
                    fd: p.sock.as_raw_fd(),
                    events: ev,
                    revents: 0,
                });
            }
            // SAFETY: pfd holds pfd.len() valid entries.
            let r = unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as libc::nfds_t, -1) };
            if r < 0 {
                let e = last_err();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            if pfd[1].revents != 0 {
                return Ok(*self
                    .stats
                    .lock()
                    .map_err(|_| io::Error::other("stats poisoned"))?);
            }
            if pfd[0].revents != 0 {
                self.accept_hellos(&mut buf);
            }
            for (i, id) in ids.iter().enumerate() {
                let rev = pfd[i + 2].revents;
                if rev & libc::POLLOUT != 0 {
                    self.flush(*id);
                }
                if rev & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
                    self.take_frames(*id, &mut buf);
                }
            }
        }
    }

    /// Hellos on the public socket: make a port for each new guest.
    fn accept_hellos(&mut self, buf: &mut [u8]) {
        for _ in 0..BURST {
            let (n, from) = match recv_from(self.rx.as_raw_fd(), buf) {
                Ok(Some(x)) => x,
                _ => return,
            };
            let key = from.key();
            if n != 0 || key.is_empty() {
                // Frames belong on a port; an unnamed sender cannot be answered.
                self.bump(|s| s.malformed += 1);
                continue;
            }
            if let Some(&id) = self.by_addr.get(&key) {
                // The same guest socket says hello again (a retry crossed
                // our answer): answer again from the port it already has.
                if let Some(p) = self.ports.get(&id) {
                    if send_now(p.sock.as_raw_fd(), &[]).is_err() {
                        self.remove_port(id);
                    }
                }
                continue;
            }
            if self.ports.len() >= MAX_PORTS {
                self.bump(|s| s.refused += 1);
                continue;
            }
            let Ok(sock) = autobound_socket() else {
                continue;
            };
            set_bufsize(sock.as_raw_fd(), libc::SO_SNDBUF, 1 << 20);
            set_bufsize(sock.as_raw_fd(), libc::SO_RCVBUF, 1 << 20);
            // SAFETY: `from` is the sockaddr_un recvfrom filled, with its length.
            if unsafe { libc::connect(sock.as_raw_fd(), from.as_ptr(), from.len) } < 0 {
                continue;
            }
            let fd = sock.as_raw_fd();
            let id = self.next_id;
            self.next_id += 1;
            self.ports.insert(
                id,
                Port {
                    sock,
                    queue: VecDeque::new(),
                },
            );
            self.by_addr.insert(key, id);
            let n = self.ports.len();
            self.bump(|s| s.ports = n);
            // Answer last, so the port is counted once the guest is connected.
            if send_now(fd, &[]).is_err() {
                self.remove_port(id);
            }
        }
    }

    fn remove_port(&mut self, id: u64) {
        if self.ports.remove(&id).is_some() {
            self.by_addr.retain(|_, v| *v != id);
            self.macs.retain(|_, (p, _)| *p != id);
            let n = self.ports.len();
            self.bump(|s| s.ports = n);
        }
    }

    /// Frames a guest sent to its port.
    fn take_frames(&mut self, id: u64, buf: &mut [u8]) {
        for _ in 0..BURST {
            let Some(port) = self.ports.get(&id) else {
                return;
            };
            let n = match recv_from(port.sock.as_raw_fd(), buf) {
                Ok(Some((n, _))) => n,
                Ok(None) => return,
                Err(_) => {
                    self.remove_port(id);
                    return;
                }
            };
            if n == 0 {
                self.remove_port(id);
                return;
            }
            if n == 1 && buf[0] == KEEPALIVE {
                // A link making sure its port is still there.
                continue;
            }
            self.bump(|s| s.frames_in += 1);
            if n > MAX_FRAME {
                self.bump(|s| s.oversize += 1);
                continue;
            }
            let frame = &buf[..n];
            if n < 14 || frame[6] & 1 != 0 {
                self.bump(|s| s.malformed += 1);
                continue;
            }
            let frame = frame.to_vec();
            self.forward(id, &frame);
        }
    }

    fn forward(&mut self, from: u64, frame: &[u8]) {
        let now = Instant::now();
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        if self.macs.len() >= MAX_MACS && !self.macs.contains_key(&src) {
            self.macs
                .retain(|_, (_, seen)| now.duration_since(*seen) < MAC_AGE);
        }
        if self.macs.len() < MAX_MACS || self.macs.contains_key(&src) {
            self.macs.insert(src, (from, now));
        }
        let known = match self.macs.get(&dst) {
            Some(&(p, seen)) if dst[0] & 1 == 0 && now.duration_since(seen) < MAC_AGE => Some(p),
            _ => None,
        };
        match known {
            Some(p) if p == from => {} // both ends on the same port: nothing to do
            Some(p) => {
                self.bump(|s| s.unicast += 1);
                self.deliver(p, frame);
            }
            None => {
                self.bump(|s| s.flooded += 1);
                let ids: Vec<u64> = self.ports.keys().copied().filter(|&p| p != from).collect();
                for p in ids {
                    self.deliver(p, frame);
                }
            }
        }
    }

    fn deliver(&mut self, id: u64, frame: &[u8]) {
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        if port.queue.is_empty() {
            match send_now(port.sock.as_raw_fd(), frame) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(_) => {
                    // The guest's socket is gone.
                    self.remove_port(id);
                    return;
                }
            }
        }
        if port.queue.len() >= PORT_QUEUE {
            self.bump(|s| s.queue_full += 1);
        } else {
            port.queue.push_back(frame.to_vec());
        }
    }

    fn flush(&mut self, id: u64) {
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        while let Some(f) = port.queue.front() {
            match send_now(port.sock.as_raw_fd(), f) {
                Ok(()) => {
                    port.queue.pop_front();
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return,
                Err(_) => {
                    self.remove_port(id);
                    return;
                }
            }
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a switch answers at `path` (a hello gets a port back).
fn switch_alive(path: &Path) -> bool {
    match SwitchLink::connect(path, [2, 0, 0, 0, 0, 0]) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::TimedOut,
    }
}

/// A switch running on a thread of this process.
pub struct SwitchThread {
    stopper: SwitchStopper,
    stats: Arc<Mutex<SwitchStats>>,
    join: Option<std::thread::JoinHandle<io::Result<SwitchStats>>>,
}

impl SwitchThread {
    /// Bind a switch at `path` and run it on a new thread.
    pub fn spawn(path: &Path) -> io::Result<SwitchThread> {
        let sw = Switch::bind(path)?;
        let stopper = sw.stopper();
        let stats = sw.stats_handle();
        let join = std::thread::Builder::new()
            .name("switch".into())
            .spawn(move || sw.run())?;
        Ok(SwitchThread {
            stopper,
            stats,
            join: Some(join),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> SwitchStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stop the switch (its socket file is removed) and return its counters.
    pub fn stop(mut self) -> io::Result<SwitchStats> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<SwitchStats> {
        self.stopper.stop();
        match self.join.take() {
            Some(j) => j
                .join()
                .map_err(|_| io::Error::other("switch thread panicked"))?,
            None => Ok(self.stats()),
        }
    }
}

impl Drop for SwitchThread {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Counters of one guest link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames sent to the switch.
    pub sent: u64,
    /// Frames dropped because the switch could not take them in time.
    pub send_dropped: u64,
    /// Frames received.
    pub received: u64,
    /// Received datagrams dropped: too short, or longer than the buffer.
    pub recv_dropped: u64,
    /// Times the switch went away and the link started looking for it.
    pub reconnects: u64,
}

/// A one-byte datagram a quiet link sends its port, to learn whether the
/// switch is still there (the send fails when the port is gone). The switch
/// ignores it.
pub const KEEPALIVE: u8 = 0x4b;
/// How long a link may hear nothing and send nothing before it checks on
/// its port with a [`KEEPALIVE`].
pub const KEEPALIVE_AFTER: Duration = Duration::from_secs(1);

/// The first wait before a link whose switch went away says hello again;
/// it doubles after each unanswered hello, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(20);
/// The longest wait between two hellos of a link looking for its switch:
/// once the switch is back, traffic resumes within this (plus a round trip).
pub const RETRY_MAX: Duration = Duration::from_millis(500);

/// Where a link stands with its switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// Connected to our port.
    Up,
    /// The switch went away: hellos go out with back-off until a port
    /// answers. The last [`DOWN_QUEUE`] frames sent meanwhile are held and
    /// go out on reconnection (as a NIC's ring would hold them), so a TCP
    /// retransmission made during the outage does not wait for the next one.
    Down { next: Instant, wait: Duration },
}

/// Frames a link holds while its switch is away (older ones are dropped).
const DOWN_QUEUE: usize = 64;

/// A guest's network link plugged into a [`Switch`].
///
/// When the switch goes away (a send finds our port gone; a link that has
/// had nothing to send for [`KEEPALIVE_AFTER`] sends a [`KEEPALIVE`] to
/// find out), the link keeps
/// its socket, says hello to the switch's path again with back-off
/// ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]), and reconnects to the port a
/// restarted switch answers from. Its readiness descriptor (an epoll set of
/// the socket and a retry timer) stays the same throughout.
pub struct SwitchLink {
    sock: OwnedFd,
    /// Expires when the next hello is due (disarmed while up).
    timer: OwnedFd,
    /// The socket and the timer: the readiness descriptor.
    ready: OwnedFd,
    path: UnixAddr,
    /// The switch's directory, opened when the link was made, and the
    /// switch's address through it (`/proc/self/fd/N/NAME`): a kernel
    /// confined to an empty root (see the skas backend's sandbox) can no
    /// longer name `path`, but still reaches a restarted switch this way.
    via_dir: Option<(OwnedFd, UnixAddr)>,
    state: LinkState,
    /// Frames sent while down, oldest first.
    held: VecDeque<Vec<u8>>,
    /// When the port was last known alive (a frame in or out).
    alive_at: Instant,
    mac: [u8; 6],
    stats: LinkStats,
}

fn say_hello(fd: RawFd, to: &UnixAddr) -> io::Result<()> {
    // SAFETY: `to` is a valid sockaddr_un of length to.len; empty datagram.
    let n = unsafe { libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, to.as_ptr(), to.len) };
    if n < 0 {
        Err(last_err())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    cvt(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arm (or with `None` disarm) a timerfd, relative.
fn arm_timer(fd: RawFd, after: Option<Duration>) {
    let d = after.map(|d| d.max(Duration::from_micros(1)));
    let its = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec {
            tv_sec: d.map_or(0, |d| d.as_secs() as i64),
            tv_nsec: d.map_or(0, |d| d.subsec_nanos() as i64),
        },
    };
    // SAFETY: `its` is a valid itimerspec; a failure leaves the timer as it was.
    unsafe { libc::timerfd_settime(fd, 0, &its, std::ptr::null_mut()) };
}

/// The switch's directory (opened `O_PATH`) and its address relative to
/// that descriptor, if the address fits in a `sockaddr_un`.
fn dir_address(path: &Path) -> Option<(OwnedFd, UnixAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the result is checked by `owned`.
    let fd = owned(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }).ok()?;
    let mut rel = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    rel.push(name);
    let addr = UnixAddr::path(&rel).ok()?;
    Some((fd, addr))
}

impl SwitchLink {
    /// Say hello to the switch: through its directory first (which still
    /// works once the kernel has left the host's tree), by path otherwise.
    fn hello(&self) -> io::Result<()> {
        let fd = self.sock.as_raw_fd();
        match &self.via_dir {
            Some((_, rel)) => say_hello(fd, rel).or_else(|_| say_hello(fd, &self.path)),
            None => say_hello(fd, &self.path),
        }
    }

    /// Join the switch at `path` with hardware address `mac`. Fails when no
    /// switch answers there within a second.
    pub fn connect(path: &Path, mac: [u8; 6]) -> io::Result<SwitchLink> {
        let to = UnixAddr::path(path)?;
        let sock = autobound_socket()?;
        let fd = sock.as_raw_fd();
        set_bufsize(fd, libc::SO_RCVBUF, 1 << 20);
        set_bufsize(fd, libc::SO_SNDBUF, 1 << 20);
        if let Err(e) = say_hello(fd, &to) {
            return Err(io::Error::new(e.kind(), format!("no switch at {}: {e}", path.display())));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut b = [0u8; 16];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !poll_one(fd, libc::POLLIN, left.as_millis().max(1) as i32) {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the switch at {} did not answer", path.display()),
                    ));
                }
                continue;
            }
            if let Some((0, from)) = recv_from(fd, &mut b)? {
                if !from.key().is_empty() {
                    // SAFETY: `from` is the port's address as recvfrom filled it.
                    cvt(unsafe { libc::connect(fd, from.as_ptr(), from.len) })?;
                    break;
                }
            }
        }
        // SAFETY: plain timerfd_create/epoll_create1 calls; results checked by `owned`.
        let timer = owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) })?;
        // SAFETY: as above.
        let ready = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        for f in [fd, timer.as_raw_fd()] {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: f as u64 };
            // SAFETY: valid epoll_event; both descriptors are ours.
            cvt(unsafe { libc::epoll_ctl(ready.as_raw_fd(), libc::EPOLL_CTL_ADD, f, &mut ev) })?;
        }
        arm_timer(timer.as_raw_fd(), Some(KEEPALIVE_AFTER));
        Ok(SwitchLink {
            sock,
            timer,
            ready,
            path: to,
            via_dir: dir_address(path),
            state: LinkState::Up,
            held: VecDeque::new(),
            alive_at: Instant::now(),
            mac,
            stats: LinkStats::default(),
        })
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Whether the link is connected to a switch now.
    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// Our port is gone (the switch died): forget it and start looking for
    /// the switch again.
    fn lost_switch(&mut self) {
        if self.state != LinkState::Up {
            return;
        }
        let fd = self.sock.as_raw_fd();
        // Dissolve the association: AF_UNSPEC "connects" to nobody.
        let mut a = UnixAddr::empty();
        a.sa.sun_family = libc::AF_UNSPEC as libc::sa_family_t;
        // SAFETY: a valid sockaddr of family AF_UNSPEC.
        unsafe { libc::connect(fd, a.as_ptr(), std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t) };
        self.stats.reconnects += 1;
        self.state = LinkState::Down { next: Instant::now(), wait: RETRY_FIRST };
        self.retry();
    }

    /// Say hello again if it is time, and arm the timer for the next try.
    fn retry(&mut self) {
        let LinkState::Down { next, wait } = self.state else { return };
        let now = Instant::now();
        if now < next {
            arm_timer(self.timer.as_raw_fd(), Some(next - now));
            return;
        }
        let _ = self.hello();
        self.state = LinkState::Down { next: now + wait, wait: (wait * 2).min(RETRY_MAX) };
        arm_timer(self.timer.as_raw_fd(), Some(wait));
    }

    /// Read the timer; whether it had expired.
    fn drain_timer(&self) -> bool {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN when not expired.
        unsafe { libc::read(self.timer.as_raw_fd(), (&mut v as *mut u64).cast(), 8) == 8 }
    }

    /// Up and quiet for a while: check that the port is still there (a send
    /// to a port whose switch died fails), and look again later.
    fn keepalive(&mut self) {
        if self.alive_at.elapsed() >= KEEPALIVE_AFTER {
            match send_now(self.sock.as_raw_fd(), &[KEEPALIVE]) {
                Err(e) if gone(&e) => {
                    self.lost_switch();
                    return;
                }
                _ => self.alive_at = Instant::now(),
            }
        }
        let next = KEEPALIVE_AFTER.saturating_sub(self.alive_at.elapsed());
        arm_timer(self.timer.as_raw_fd(), Some(next));
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE | libc::EDESTADDRREQ)
    )
}

impl NetDevice for SwitchLink {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn send(&mut self, frame: &[u8]) {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            // Empty means goodbye to the switch; oversize it would drop.
            self.stats.send_dropped += 1;
            return;
        }
        if self.state != LinkState::Up {
            self.retry();
            if self.held.len() >= DOWN_QUEUE {
                self.held.pop_front();
                self.stats.send_dropped += 1;
            }
            self.held.push_back(frame.to_vec());
            return;
        }
        let fd = self.sock.as_raw_fd();
        for attempt in 0..2 {
            match send_now(fd, frame) {
                Ok(()) => {
                    self.stats.sent += 1;
                    self.alive_at = Instant::now();
                    return;
                }
                // The port's queue is full: give the switch a moment to
                // drain it (a NIC's ring would hold a few frames too).
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempt == 0 => {
                    poll_one(fd, libc::POLLOUT, 5);
                }
                Err(e) if gone(&e) => {
                    self.lost_switch();
                    break;
                }
                Err(_) => break,
            }
        }
        self.stats.send_dropped += 1;
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.state == LinkState::Up && self.drain_timer() {
            self.keepalive();
        }
        loop {
            match recv_from(self.sock.as_raw_fd(), buf) {
                Ok(Some((0, from))) if self.state != LinkState::Up && !from.key().is_empty() => {
                    // A (restarted) switch answered our hello from a new port.
                    // SAFETY: `from` is the port's address as recvfrom filled it.
                    if unsafe { libc::connect(self.sock.as_raw_fd(), from.as_ptr(), from.len) } == 0 {
                        self.state = LinkState::Up;
                        self.drain_timer();
                        self.alive_at = Instant::now();
                        arm_timer(self.timer.as_raw_fd(), Some(KEEPALIVE_AFTER));
                        for f in std::mem::take(&mut self.held) {
                            self.send(&f);
                        }
                    }
                }
                // Frames from a port we no longer use are stale.
                Ok(Some(_)) if self.state != LinkState::Up => self.stats.recv_dropped += 1,
                Ok(Some((n, _))) if n >= 14 && n <= buf.len() => {
                    self.stats.received += 1;
                    self.alive_at = Instant::now();
                    return Some(n);
                }
                Ok(Some(_)) => self.stats.recv_dropped += 1,
                Err(e) if gone(&e) => {
                    self.lost_switch();
                    return None;
                }
                _ => {
                    // Still looking for the switch, and no answer waiting:
                    // say hello again when it is time.
                    if self.state != LinkState::Up {
                        self.drain_timer();
                        self.retry();
                    }
                    return None;
                }
            }
        }
    }
}

impl HostLink for SwitchLink {
    fn readiness_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
}

impl Drop for SwitchLink {
    fn drop(&mut self) {
        // Goodbye: the switch frees the port at once.
        if self.state == LinkState::Up {
            let _ = send_now(self.sock.as_raw_fd(), &[]);
        }
    }
}

/// A random locally administered unicast hardware address (02:xx:...).
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    // SAFETY: getrandom writes at most 6 bytes into `m`.
    let n = unsafe { libc::getrandom(m.as_mut_ptr().cast(), 6, 0) };
    if n != 6 {
        let t = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) << 16;
        m.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}

/// Parse `aa:bb:cc:dd:ee:ff` (a unicast address).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (d, p) in m.iter_mut().zip(&parts) {
        *d = match u8::from_str_radix(p, 16) {
            Ok(v) if p.len() == 2 => v,
            _ => return Err(format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)")),
        };
    }
    if m[0] & 1 != 0 {
        return Err(format!("'{s}' is a multicast address"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_sock(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rustuml-sw-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("sw.sock")
    }

    fn frame(dst: [u8; 6], src: [u8; 6], tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12] = 0x08;
        f[13] = 0x00;
        f
    }

    /// Wait up to a second for one frame on `l`.
    fn recv_wait(l: &mut SwitchLink) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_FRAME];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Some(n) = l.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
            poll_one(l.readiness_fd(), libc::POLLIN, 50);
        }
        None
    }

    fn nothing(l: &mut SwitchLink) -> bool {
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0u8; MAX_FRAME];
        l.recv(&mut buf).is_none()
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn links_reconnect_to_a_restarted_switch() {
        let path = tmp_sock("restart");
        let sw = SwitchThread::spawn(&path).unwrap();
        let mut a = SwitchLink::connect(&path, A).unwrap();
        let mut b = SwitchLink::connect(&path, B).unwrap();
        let f = frame(BCAST, A, 1, 60);
        a.send(&f);
        assert_eq!(recv_wait(&mut b).as_deref(), Some(&f[..]));
        sw.stop().unwrap();
        // A notices when it next sends (its port is gone) and looks for the
        // switch with back-off: nothing answers yet.
        a.send(&f);
        assert!(!a.is_up());
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = vec![0u8; MAX_FRAME];
        assert_eq!(a.recv(&mut buf), None);
        let sw = SwitchThread::spawn(&path).unwrap();
        // B sends nothing: its keepalive finds the port gone.
        // Each link's retry timer makes its readiness descriptor readable;
        // the kernel then calls recv, which says hello and takes the answer.
        let t0 = Instant::now();
        while !(a.is_up() && b.is_up() && b.stats().reconnects == 1) && t0.elapsed() < Duration::from_secs(4) {
            for l in [&mut a, &mut b] {
                poll_one(l.readiness_fd(), libc::POLLIN, 20);
                let _ = l.recv(&mut buf);
            }
        }
        assert!(a.is_up() && b.is_up(), "links did not reconnect");
        assert!(t0.elapsed() < KEEPALIVE_AFTER + RETRY_MAX * 2, "took {:?}", t0.elapsed());
        assert_eq!(b.stats().reconnects, 1);
        let g = frame(BCAST, A, 3, 100);
        a.send(&g);
        let got = recv_wait(&mut b);
        assert_eq!(got.as_deref(), Some(&g[..]), "{:?} {:?} {:?}", sw.stats(), a.stats(), b.stats());
        assert_eq!(a.stats().reconnects, 1);
        assert_eq!(sw.stats().ports, 2);
        sw.stop().unwrap();
    }

    #[test]
    fn floods_learns_and_forwards() {
        let path = tmp_sock("learn");
        let sw = SwitchThread::spawn(&path).unwrap();
        let mut a = SwitchLink::connect(&path, A).unwrap();
        let mut b = SwitchLink::connect(&path, B).unwrap();
        let mut c = SwitchLink::connect(&path, C).unwrap();
        assert_eq!(sw.stats().ports, 3);
        // Broadcast from A reaches B and C, not A.
        let f = frame(BCAST, A, 1, 60);
        a.send(&f);
        assert_eq!(recv_wait(&mut b).as_deref(), Some(&f[..]));
        assert_eq!(recv_wait(&mut c).as_deref(), Some(&f[..]));
        assert!(nothing(&mut a));
        // B answers A: A was learned, so only A gets it.
        let g = frame(A, B, 2, 1514);
        b.send(&g);
        assert_eq!(recv_wait(&mut a).as_deref(), Some(&g[..]));
        assert!(nothing(&mut c));
        // Unicast to B (learned now) goes to B only.
        let h = frame(B, A, 3, 100);
        a.send(&h);
        assert_eq!(recv_wait(&mut b).as_deref(), Some(&h[..]));
        assert!(nothing(&mut c));
        // An unknown unicast destination is flooded.
        let u = frame([2, 9, 9, 9, 9, 9], C, 4, 64);
        c.send(&u);
        assert_eq!(recv_wait(&mut a).as_deref(), Some(&u[..]));
        assert_eq!(recv_wait(&mut b).as_deref(), Some(&u[..]));
        let st = sw.stop().unwrap();
        assert_eq!(st.unicast, 2);
        assert_eq!(st.flooded, 2);
        assert!(!path.exists(), "the switch removes its socket file");
    }

    #[test]
    fn bad_frames_are_dropped_and_counted() {
        let path = tmp_sock("bad");
        let sw = SwitchThread::spawn(&path).unwrap();
        let a = SwitchLink::connect(&path, A).unwrap();
        let mut b = SwitchLink::connect(&path, B).unwrap();
        // Write raw datagrams on A's socket, bypassing SwitchLink::send's checks.
        let fd = a.sock.as_raw_fd();
        send_wait(fd, &[1, 2, 3]); // shorter than a header
        send_wait(fd, &frame(BCAST, BCAST, 5, 60)); // multicast source
        send_wait(fd, &vec![0xffu8; MAX_FRAME + 100]); // oversize
                                                       // Random garbage of every length: never a panic, never forwarded
                                                       // unless it looks like a frame.
        let mut seed = 0x1234_5678u32;
        for len in 0..40 {
            let g: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8 | 1 // odd bytes: multicast source if long enough
                })
                .collect();
            if !g.is_empty() {
                send_wait(fd, &g);
            }
        }
        // A good frame after all that still gets through.
        let ok = frame(B, A, 7, 60);
        send_wait(fd, &ok);
        assert_eq!(recv_wait(&mut b).as_deref(), Some(&ok[..]));
        let st = sw.stats();
        assert_eq!(st.oversize, 1);
        assert_eq!(st.malformed, 2 + 39);
        // Oversized and empty sends are refused by the link itself.
        let mut a = a;
        a.send(&vec![0u8; MAX_FRAME + 1]);
        a.send(&[]);
        assert_eq!(a.stats().send_dropped, 2);
        drop(sw);
    }

    #[test]
    fn goodbye_frees_the_port_and_a_dead_switch_is_replaced() {
        let path = tmp_sock("bye");
        let sw = SwitchThread::spawn(&path).unwrap();
        let a = SwitchLink::connect(&path, A).unwrap();
        let _b = SwitchLink::connect(&path, B).unwrap();
        assert_eq!(sw.stats().ports, 2);
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(1);
        while sw.stats().ports != 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sw.stats().ports, 1);
        // A second switch on a live path is refused.
        assert!(Switch::bind(&path).is_err());
        drop(sw);
        // A stale socket file (its switch gone) is replaced.
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap()); // leaves the file behind
        assert!(path.exists());
        let sw2 = SwitchThread::spawn(&path).unwrap();
        assert!(SwitchLink::connect(&path, C).is_ok());
        drop(sw2);
        assert!(SwitchLink::connect(&path, C).is_err(), "no switch, no link");
    }

    #[test]
    fn a_guest_that_stops_reading_does_not_stall_the_others() {
        let path = tmp_sock("stall");
        let sw = SwitchThread::spawn(&path).unwrap();
        let mut a = SwitchLink::connect(&path, A).unwrap();
        let mut b = SwitchLink::connect(&path, B).unwrap();
        let mut c = SwitchLink::connect(&path, C).unwrap(); // never reads
                                                            // Teach the switch where B and C are.
        b.send(&frame(BCAST, B, 0, 60));
        c.send(&frame(BCAST, C, 0, 60));
        std::thread::sleep(Duration::from_millis(50));
        while recv_wait_short(&mut a) {}
        // Flood C, which reads nothing: its queue fills, then drops.
        for i in 0..2000u32 {
            a.send(&frame(C, A, (i % 250) as u8, 1000));
        }
        // B still gets A's frame promptly.
        let f = frame(B, A, 9, 60);
        a.send(&f);
        let mut got = None;
        for _ in 0..10 {
            match recv_wait(&mut b) {
                Some(x) if x == f => {
                    got = Some(x);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert!(got.is_some(), "B starved by C's full queue");
        let st = sw.stop().unwrap();
        assert!(st.queue_full > 0, "{st:?}");
    }

    /// Send a raw datagram, waiting while the port's queue is full.
    fn send_wait(fd: RawFd, data: &[u8]) {
        loop {
            match send_now(fd, data) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    poll_one(fd, libc::POLLOUT, 100);
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }

    fn recv_wait_short(l: &mut SwitchLink) -> bool {
        let mut buf = vec![0u8; MAX_FRAME];
        l.recv(&mut buf).is_some()
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:00:aa:bb:cc"),
            Ok([2, 0, 0, 0xaa, 0xbb, 0xcc])
        );
        assert!(parse_mac("03:00:00:aa:bb:cc").is_err());
        assert!(parse_mac("02:00:00:aa:bb").is_err());
        assert!(parse_mac("02:00:00:aa:bb:c").is_err());
        let m = random_mac();
        assert_eq!(m[0] & 3, 2);
    }
}
