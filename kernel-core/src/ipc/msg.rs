//! System V message queues: typed messages, bounded per queue by
//! `msg_qbytes` and, for the kernel as a whole, by the guest's budget (each
//! queued message charges its bytes before it is stored).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::task::Pid;
use crate::wait::{WaitQueue, WaitRef};
use crate::Errno;

// linux/msg.h
/// Truncate a message longer than the buffer.
pub const MSG_NOERROR: u32 = 0o10000;
/// Receive the first message whose type is not `msgtyp`.
pub const MSG_EXCEPT: u32 = 0o20000;
/// Copy the message at index `msgtyp` without removing it.
pub const MSG_COPY: u32 = 0o40000;
#[allow(missing_docs)]
pub const MSG_STAT: i32 = 11;
#[allow(missing_docs)]
pub const MSG_INFO: i32 = 12;
#[allow(missing_docs)]
pub const MSG_STAT_ANY: i32 = 13;
/// Most queues (Linux's default `kernel.msgmni`).
pub const MSGMNI: u32 = 32000;
/// Largest message.
pub const MSGMAX: usize = 8192;
/// Default bytes per queue.
pub const MSGMNB: u64 = 16384;
/// Size of `struct msqid64_ds` on x86_64.
pub const MSQID_DS_SIZE: usize = 120;
/// Bytes each message costs the budget besides its text.
const MSG_COST: usize = 64;

/// A queued message.
pub struct Msg {
    /// Its type (> 0).
    pub mtype: i64,
    /// Its text.
    pub text: Vec<u8>,
    _charge: Charge,
}

/// One queue.
pub struct MsgQueue {
    /// Messages, oldest first.
    pub msgs: VecDeque<Msg>,
    /// Bytes of text queued.
    pub cbytes: u64,
    /// Most bytes of text the queue holds.
    pub qbytes: u64,
    /// Last send, receive and change (seconds since the epoch).
    pub stime: u64,
    #[allow(missing_docs)]
    pub rtime: u64,
    #[allow(missing_docs)]
    pub ctime: u64,
    /// Last sender and receiver.
    pub lspid: Pid,
    #[allow(missing_docs)]
    pub lrpid: Pid,
    /// Changes on every send and receive: blocked callers re-check.
    pub wq: WaitRef,
    /// What the object costs the guest's budget.
    pub charge: Charge,
}

impl MsgQueue {
    /// An empty queue.
    pub fn new(now: u64, charge: Charge) -> MsgQueue {
        MsgQueue { msgs: VecDeque::new(), cbytes: 0, qbytes: MSGMNB, stime: 0, rtime: 0, ctime: now, lspid: 0, lrpid: 0, wq: WaitQueue::new(), charge }
    }

    /// Would a message of `len` bytes fit now? (Linux also bounds the
    /// number of messages by `qbytes`.)
    pub fn fits(&self, len: usize) -> bool {
        self.cbytes + len as u64 <= self.qbytes && self.msgs.len() as u64 + 1 <= self.qbytes
    }

    /// Queue a message (the caller checked [`MsgQueue::fits`]); `ENOMEM`
    /// when the budget refuses its bytes.
    pub fn push(&mut self, mtype: i64, text: Vec<u8>, budget: Option<&BudgetRef>, pid: Pid, now: u64) -> Result<(), Errno> {
        let charge = match budget {
            Some(b) => Charge::new(b, Cost::Other, MSG_COST + text.len()).map_err(|_| Errno::ENOMEM)?,
            None => Charge::none(Cost::Other),
        };
        self.cbytes += text.len() as u64;
        self.msgs.push_back(Msg { mtype, text, _charge: charge });
        self.lspid = pid;
        self.stime = now;
        self.wq.notify();
        Ok(())
    }

    /// The index of the message `msgrcv(msgtyp, flags)` takes, if any.
    pub fn find(&self, msgtyp: i64, flags: u32) -> Option<usize> {
        if msgtyp == 0 {
            return if self.msgs.is_empty() { None } else { Some(0) };
        }
        if msgtyp > 0 {
            let except = flags & MSG_EXCEPT != 0;
            return self.msgs.iter().position(|m| (m.mtype == msgtyp) != except);
        }
        // The lowest type <= |msgtyp|, first of its type.
        let lim = msgtyp.checked_neg().unwrap_or(i64::MAX);
        let mut best: Option<(usize, i64)> = None;
        for (i, m) in self.msgs.iter().enumerate() {
            if m.mtype <= lim && best.is_none_or(|(_, t)| m.mtype < t) {
                best = Some((i, m.mtype));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Remove message `i` for receiver `pid`.
    pub fn take(&mut self, i: usize, pid: Pid, now: u64) -> Option<Msg> {
        let m = self.msgs.remove(i)?;
        self.cbytes -= m.text.len() as u64;
        self.lrpid = pid;
        self.rtime = now;
        self.wq.notify();
        Some(m)
    }

    /// `struct msqid64_ds` bytes.
    pub fn ds(&self, perm: &super::Perm) -> [u8; MSQID_DS_SIZE] {
        let mut b = [0u8; MSQID_DS_SIZE];
        b[..super::PERM_SIZE].copy_from_slice(&perm.bytes());
        b[48..56].copy_from_slice(&self.stime.to_le_bytes());
        b[56..64].copy_from_slice(&self.rtime.to_le_bytes());
        b[64..72].copy_from_slice(&self.ctime.to_le_bytes());
        b[72..80].copy_from_slice(&self.cbytes.to_le_bytes());
        b[80..88].copy_from_slice(&(self.msgs.len() as u64).to_le_bytes());
        b[88..96].copy_from_slice(&self.qbytes.to_le_bytes());
        b[96..100].copy_from_slice(&self.lspid.to_le_bytes());
        b[100..104].copy_from_slice(&self.lrpid.to_le_bytes());
        b
    }
}

/// `struct msginfo` (`IPC_INFO`, `MSG_INFO`): eight ints then a short.
/// With `usage` (`MSG_INFO`): `msgpool` = queues, `msgmap` = messages,
/// `msgtql` = bytes, as Linux.
pub fn info_bytes(usage: Option<(u32, u32, u32)>) -> [u8; 32] {
    let (pool, map, tql) = usage.unwrap_or((MSGMNI * MSGMNB as u32 / 1024, MSGMNB as u32, MSGMNB as u32));
    // msgpool msgmap msgmax msgmnb msgmni msgssz msgtql msgseg
    let v: [u32; 8] = [pool, map, MSGMAX as u32, MSGMNB as u32, MSGMNI, 16, tql, 0xffff];
    let mut out = [0u8; 32];
    for (i, x) in v.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
    }
    out
}

impl super::Described for MsgQueue {
    fn ds_bytes(&self, perm: &super::Perm) -> alloc::vec::Vec<u8> {
        self.ds(perm).to_vec()
    }
}
