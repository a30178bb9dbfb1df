//! POSIX message queues: named queues of prioritised messages, opened as
//! file descriptors (readable with `read` as Linux's status line, pollable
//! for `POLLIN`/`POLLOUT`, so `select`/`epoll` work on them).
//!
//! Each queue charges the guest's budget for its object when created and
//! for every message's bytes while it is queued; the number of queues is
//! bounded (Linux's `queues_max` for users, a hard bound for root) and
//! each user's queues by `RLIMIT_MSGQUEUE`, as Linux.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::task::Pid;
use crate::wait::{FileOps, IoCtx, WaitQueue, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// Default and most messages per queue for unprivileged users (Linux's
/// `msg_max`), and the hard bound for anyone (`HARD_MSGMAX`).
pub const MSG_MAX: u64 = 10;
#[allow(missing_docs)]
pub const HARD_MSGMAX: u64 = 65536;
/// Default and largest message size for unprivileged users
/// (`msgsize_max`), and the hard bound (`HARD_MSGSIZEMAX`).
pub const MSGSIZE_MAX: u64 = 8192;
#[allow(missing_docs)]
pub const HARD_MSGSIZEMAX: u64 = 16 << 20;
/// Most queues for unprivileged users (`queues_max`).
pub const QUEUES_MAX: usize = 256;
/// Most queues in all (root included): every queue is a kernel object.
pub const HARD_QUEUES_MAX: usize = 1024;
/// Highest priority + 1 (`MQ_PRIO_MAX`).
pub const MQ_PRIO_MAX: u32 = 32768;
/// Bytes a queue object costs the budget.
const QUEUE_COST: usize = 512;

/// A queued message.
struct Msg {
    prio: u32,
    text: Vec<u8>,
    _charge: Charge,
}

/// Who is told when a message arrives in an empty queue (`mq_notify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notify {
    /// The registered process.
    pub pid: Pid,
    /// The signal (0: `SIGEV_NONE`, nothing is sent).
    pub signo: u32,
}

/// One queue.
pub struct MsgQueue {
    /// Most messages.
    pub maxmsg: u64,
    /// Largest message.
    pub msgsize: u64,
    msgs: RefCell<VecDeque<Msg>>,
    /// The registered notification.
    pub notify: Cell<Option<Notify>>,
    /// Owner (for `RLIMIT_MSGQUEUE` accounting) and mode.
    pub uid: u32,
    #[allow(missing_docs)]
    pub gid: u32,
    #[allow(missing_docs)]
    pub mode: u32,
    wq: WaitRef,
    budget: Option<BudgetRef>,
    _charge: Charge,
}

impl MsgQueue {
    /// A queue (charged to `budget`): `ENOMEM` if the budget refuses.
    pub fn new(maxmsg: u64, msgsize: u64, uid: u32, gid: u32, mode: u32, budget: Option<&BudgetRef>) -> Result<Rc<MsgQueue>, Errno> {
        let charge = match budget {
            Some(b) => Charge::new(b, Cost::Other, QUEUE_COST).map_err(|_| Errno::ENOMEM)?,
            None => Charge::none(Cost::Other),
        };
        Ok(Rc::new(MsgQueue {
            maxmsg,
            msgsize,
            msgs: RefCell::new(VecDeque::new()),
            notify: Cell::new(None),
            uid,
            gid,
            mode,
            wq: WaitQueue::new(),
            budget: budget.cloned(),
            _charge: charge,
        }))
    }
    /// What `RLIMIT_MSGQUEUE` counts for it (Linux: the message area plus a
    /// pointer per message).
    pub fn rlimit_bytes(&self) -> u64 {
        self.maxmsg.saturating_mul(self.msgsize.saturating_add(8))
    }
    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.msgs.borrow().len()
    }
    /// No message queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The queue's wait queue (changes on every send and receive).
    pub fn wq(&self) -> &WaitRef {
        &self.wq
    }
    /// Queue `text` at priority `prio` (after older messages of the same
    /// priority). `EAGAIN` when full, `EMSGSIZE` when too long, `ENOMEM`
    /// when the budget refuses. Returns the notification to deliver, if the
    /// queue was empty and someone registered.
    pub fn send(&self, text: Vec<u8>, prio: u32) -> Result<Option<Notify>, Errno> {
        if text.len() as u64 > self.msgsize {
            return Err(Errno::EMSGSIZE);
        }
        if self.len() as u64 >= self.maxmsg {
            return Err(Errno::EAGAIN);
        }
        let charge = match &self.budget {
            Some(b) => Charge::new(b, Cost::Other, 48 + text.len()).map_err(|_| Errno::ENOMEM)?,
            None => Charge::none(Cost::Other),
        };
        let mut q = self.msgs.borrow_mut();
        let was_empty = q.is_empty();
        // Highest priority first; FIFO within a priority.
        let at = q.iter().position(|m| m.prio < prio).unwrap_or(q.len());
        q.insert(at, Msg { prio, text, _charge: charge });
        drop(q);
        self.wq.notify();
        if was_empty {
            // A notification fires once, then is unregistered.
            return Ok(self.notify.take());
        }
        Ok(None)
    }
    /// Take the oldest message of the highest priority: `EMSGSIZE` if the
    /// caller's buffer is smaller than the queue's message size, `EAGAIN`
    /// when empty.
    pub fn receive(&self, buf_len: u64) -> Result<(Vec<u8>, u32), Errno> {
        if buf_len < self.msgsize {
            return Err(Errno::EMSGSIZE);
        }
        let m = self.msgs.borrow_mut().pop_front().ok_or(Errno::EAGAIN)?;
        self.wq.notify();
        Ok((m.text, m.prio))
    }
    /// `struct mq_attr` bytes (flags come from the file description).
    pub fn attr(&self, flags: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.maxmsg.to_le_bytes());
        b[16..24].copy_from_slice(&self.msgsize.to_le_bytes());
        b[24..32].copy_from_slice(&(self.len() as u64).to_le_bytes());
        b
    }
    fn qsize(&self) -> u64 {
        self.msgs.borrow().iter().map(|m| m.text.len() as u64).sum()
    }
}

impl FileOps for MsgQueue {
    /// Linux's status line: `QSIZE:… NOTIFY:… SIGNO:… NOTIFY_PID:…`.
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = self.notify.get();
        let s = format!(
            "QSIZE:{:<10} NOTIFY:{:<5} SIGNO:{:<5} NOTIFY_PID:{:<6}\n",
            self.qsize(),
            0,
            n.map_or(0, |n| n.signo),
            n.map_or(0, |n| n.pid)
        );
        let k = s.len().min(buf.len());
        buf[..k].copy_from_slice(&s.as_bytes()[..k]);
        Ok(k)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let n = self.len() as u64;
        let mut r = 0;
        if n > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if n < self.maxmsg {
            r |= POLLOUT | POLLWRNORM;
        }
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        r
    }
    fn type_bits(&self) -> u32 {
        linux_raw_sys::general::S_IFREG
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The named queues of a guest (what `/dev/mqueue` lists on Linux).
#[derive(Default)]
pub struct MqNames(pub BTreeMap<String, Rc<MsgQueue>>);

impl MqNames {
    /// `RLIMIT_MSGQUEUE` bytes the queues of `uid` use.
    pub fn bytes_of(&self, uid: u32) -> u64 {
        self.0.values().filter(|q| q.uid == uid).map(|q| q.rlimit_bytes()).sum()
    }
}
