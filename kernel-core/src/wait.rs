//! Readiness and waiting, shared by blocking reads and writes, `poll`,
//! `select` and `epoll`.
//!
//! Every object a task can wait on (pipe, tty, eventfd, timerfd, epoll
//! instance) owns a [`WaitQueue`]: a generation counter bumped on every state
//! change. A blocking call that cannot proceed collects the queues of what it
//! waits for in a [`WaitSet`] (with the generations it saw), and the kernel
//! re-runs the call once any of them changed (or a wake-up instant passed).
//! The call then re-evaluates readiness itself, so a woken reader always finds
//! data or blocks again: readiness is exact, wake-ups may be spurious.
//!
//! Objects other than plain files implement [`FileOps`] and live in inodes of
//! kind `Kind::Special`.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::Cell;

use hal::Console;
use linux_raw_sys::general as g;

use crate::Pid;
use crate::Errno;

/// Readable.
pub const POLLIN: u32 = g::POLLIN;
/// Writable.
pub const POLLOUT: u32 = g::POLLOUT;
/// Error (a pipe with no reader).
pub const POLLERR: u32 = g::POLLERR;
/// Hang-up (a pipe with no writer).
pub const POLLHUP: u32 = g::POLLHUP;
/// Priority data.
pub const POLLPRI: u32 = g::POLLPRI;
/// Normal data readable.
pub const POLLRDNORM: u32 = g::POLLRDNORM;
/// Normal data writable.
pub const POLLWRNORM: u32 = g::POLLWRNORM;
/// The peer closed its writing side.
pub const POLLRDHUP: u32 = 0x2000;

/// A generation counter that changes whenever its object's readiness may have.
#[derive(Debug, Default)]
pub struct WaitQueue {
    gen: Cell<u64>,
}

/// A shared wait queue.
pub type WaitRef = Rc<WaitQueue>;

impl WaitQueue {
    /// A new queue.
    pub fn new() -> WaitRef {
        Rc::new(WaitQueue::default())
    }
    /// The object changed: waiters re-check.
    pub fn notify(&self) {
        self.gen.set(self.gen.get().wrapping_add(1));
    }
    /// The current generation.
    pub fn gen(&self) -> u64 {
        self.gen.get()
    }
}

/// What a blocked task waits for: queues (with the generation seen) and an
/// optional wake-up instant (timerfd expiry, `VTIME`).
#[derive(Clone, Default)]
pub struct WaitSet {
    queues: Vec<(WaitRef, u64)>,
    /// Monotonic instant at which to re-check even if no queue changed.
    pub wake_at: Option<u64>,
    /// Something outside the kernel (console input) can wake this set.
    pub external: bool,
    /// The blocked call's own deadline, kept across its re-runs.
    pub timeout: Option<u64>,
}

impl WaitSet {
    /// Wait on `q` too.
    pub fn add(&mut self, q: &WaitRef) {
        if !self.queues.iter().any(|(x, _)| Rc::ptr_eq(x, q)) {
            self.queues.push((q.clone(), q.gen()));
        }
    }
    /// Wait on everything `other` waits on, too.
    pub fn merge(&mut self, other: &WaitSet) {
        for (q, g) in &other.queues {
            if !self.queues.iter().any(|(x, _)| Rc::ptr_eq(x, q)) {
                self.queues.push((q.clone(), *g));
            }
        }
        if let Some(w) = other.wake_at {
            self.wake_at(w);
        }
        self.external |= other.external;
    }
    /// Also wake at `t`.
    pub fn wake_at(&mut self, t: u64) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }
    /// Should the waiter re-check now?
    pub fn ready(&self, now: u64) -> bool {
        self.wake_at.is_some_and(|w| w <= now) || self.queues.iter().any(|(q, g)| q.gen() != *g)
    }
    /// Nothing to wait on at all.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.wake_at.is_none() && !self.external
    }
    /// A number that changes when any queue of the set changes (edge-triggered epoll).
    pub fn signature(&self) -> u64 {
        self.queues.iter().fold(0u64, |a, (q, _)| a.wrapping_mul(31).wrapping_add(q.gen()))
    }
}

/// A signal a special file wants sent, to a process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSignal {
    /// Target process group.
    pub pgid: Pid,
    /// Signal number.
    pub sig: u32,
}

/// What a special file may use of the kernel while it does I/O.
pub struct IoCtx<'a> {
    /// Monotonic now (ns).
    pub now: u64,
    /// Wall clock now (ns since the epoch).
    pub realtime: u64,
    /// The host console (tty output, echo).
    pub console: &'a mut dyn Console,
    /// The caller's pid, process group and session (job control).
    pub pid: Pid,
    /// The caller's process group.
    pub pgid: Pid,
    /// The caller's session.
    pub sid: Pid,
    /// Signals the caller blocks or ignores (bit `sig - 1`): job-control
    /// signals in that set turn into `EIO` as Linux does.
    pub sig_ignored: u64,
    /// Signals to send to process groups once the call is done.
    pub signals: Vec<GroupSignal>,
    /// The description is `O_NONBLOCK` (a raw tty read then returns what
    /// it has instead of waiting for `VMIN` bytes).
    pub nonblock: bool,
}

impl IoCtx<'_> {
    /// Queue `sig` for process group `pgid`.
    pub fn signal_group(&mut self, pgid: Pid, sig: u32) {
        if pgid != 0 {
            self.signals.push(GroupSignal { pgid, sig });
        }
    }
    /// Does the caller block or ignore `sig`?
    pub fn ignores(&self, sig: u32) -> bool {
        (1..=64).contains(&sig) && self.sig_ignored & (1u64 << (sig - 1)) != 0
    }
}

/// What opening a special inode yields.
pub enum Opened {
    /// The inode itself.
    Same,
    /// Another object (e.g. `/dev/ptmx` gives a new master, `/dev/tty` the
    /// controlling terminal).
    Other(SpecialRef),
    /// Not yet: block until the queue changes (a FIFO waiting for its peer).
    Wait(WaitRef),
}

/// A file whose behaviour is not a byte array: pipes, ttys, eventfd, timerfd, epoll.
///
/// `read`/`write` never block: they return `EAGAIN` and the caller then
/// collects [`FileOps::poll`]'s queues to block on.
pub trait FileOps {
    /// Read into `buf`. `Ok(0)` is end of file.
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Write `data`; may write less.
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno>;
    /// Current readiness (`POLL*` bits, all of them, not masked by interest)
    /// for a description opened for reading (`rw.0`) and/or writing (`rw.1`);
    /// with `ws`, also register what would change it.
    fn poll(&self, io: &mut IoCtx<'_>, rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32;
    /// An open file description with these access rights was created (`opened`)
    /// or released (`closed`).
    fn opened(&self, _readable: bool, _writable: bool) {}
    /// See [`FileOps::opened`].
    fn closed(&self, _readable: bool, _writable: bool) {}
    /// `open()` of an inode holding this object.
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<Opened, Errno> {
        Ok(Opened::Same)
    }
    /// `S_IF*` type bits.
    fn type_bits(&self) -> u32 {
        g::S_IFCHR
    }
    /// Device number (major, minor).
    fn rdev(&self) -> (u32, u32) {
        (0, 0)
    }
    /// Size for `stat`.
    fn size(&self) -> u64 {
        0
    }
    /// For downcasting in `ioctl`, `epoll_ctl`, `timerfd_settime`, and to
    /// a socket (`net::socket_of`).
    fn as_any(&self) -> &dyn Any;
}

/// A shared special-file object.
pub type SpecialRef = Rc<dyn FileOps>;
