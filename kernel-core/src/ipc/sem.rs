//! System V semaphore sets: `semop` applies a whole array of operations
//! atomically or not at all, and `SEM_UNDO` adjustments are kept per
//! process and applied when it exits.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::budget::Charge;
use crate::task::Pid;
use crate::wait::{WaitQueue, WaitRef};
use crate::Errno;

// linux/sem.h
/// Undo the operation at exit.
pub const SEM_UNDO: u16 = 0x1000;
#[allow(missing_docs)]
pub const GETPID: i32 = 11;
#[allow(missing_docs)]
pub const GETVAL: i32 = 12;
#[allow(missing_docs)]
pub const GETALL: i32 = 13;
#[allow(missing_docs)]
pub const GETNCNT: i32 = 14;
#[allow(missing_docs)]
pub const GETZCNT: i32 = 15;
#[allow(missing_docs)]
pub const SETVAL: i32 = 16;
#[allow(missing_docs)]
pub const SETALL: i32 = 17;
#[allow(missing_docs)]
pub const SEM_STAT: i32 = 18;
#[allow(missing_docs)]
pub const SEM_INFO: i32 = 19;
#[allow(missing_docs)]
pub const SEM_STAT_ANY: i32 = 20;
/// Most sets (Linux's default `kernel.sem` fourth field).
pub const SEMMNI: u32 = 32000;
/// Most semaphores per set.
pub const SEMMSL: u32 = 32000;
/// Most semaphores in all (Linux's `SEMMNS`).
pub const SEMMNS: u64 = 1_024_000_000;
/// Most operations per `semop`.
pub const SEMOPM: usize = 500;
/// Largest semaphore value.
pub const SEMVMX: i32 = 32767;
/// Largest undo adjustment.
pub const SEMAEM: i32 = SEMVMX;
/// Size of `struct semid64_ds` on x86_64.
pub const SEMID_DS_SIZE: usize = 104;

/// One semaphore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sem {
    /// Value.
    pub val: i32,
    /// Process of the last operation.
    pub pid: Pid,
}

/// One set.
pub struct SemSet {
    /// The semaphores.
    pub sems: Vec<Sem>,
    /// Last `semop` and last change (seconds since the epoch).
    pub otime: u64,
    #[allow(missing_docs)]
    pub ctime: u64,
    /// Changes whenever a value does: blocked `semop`s re-check.
    pub wq: WaitRef,
    /// What the object costs the guest's budget.
    pub charge: Charge,
}

/// One operation of a `semop` (`struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    /// Which semaphore.
    pub num: u16,
    /// Add this (negative: wait until it can be taken; 0: wait for zero).
    pub op: i16,
    /// `IPC_NOWAIT`, `SEM_UNDO`.
    pub flg: i16,
}

impl SemOp {
    /// Parse a `struct sembuf` (6 bytes).
    pub fn parse(b: &[u8]) -> SemOp {
        SemOp {
            num: u16::from_le_bytes([b[0], b[1]]),
            op: i16::from_le_bytes([b[2], b[3]]),
            flg: i16::from_le_bytes([b[4], b[5]]),
        }
    }
}

/// Why a `semop` did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemBlock {
    /// Must wait: the operation on this semaphore, waiting for zero or not.
    Wait(u16, bool),
    /// An error (`EAGAIN` for `IPC_NOWAIT`, `ERANGE`, `EFBIG`).
    Err(Errno),
}

impl SemSet {
    /// A set of `n` semaphores at zero.
    pub fn new(n: usize, now: u64, charge: Charge) -> SemSet {
        SemSet { sems: alloc::vec![Sem::default(); n], otime: 0, ctime: now, wq: WaitQueue::new(), charge }
    }

    /// Apply `ops` atomically for `pid`: all of them, or none and why not.
    /// Undo adjustments of the `SEM_UNDO` ones go to `undo` (per semaphore).
    pub fn apply(&mut self, ops: &[SemOp], pid: Pid, now: u64, undo: Option<&mut BTreeMap<u16, i32>>) -> Result<(), SemBlock> {
        let mut vals: Vec<i32> = self.sems.iter().map(|s| s.val).collect();
        for o in ops {
            let i = usize::from(o.num);
            let Some(v) = vals.get_mut(i) else { return Err(SemBlock::Err(Errno::EFBIG)) };
            let nowait = o.flg as u32 & super::IPC_NOWAIT != 0;
            let op = i32::from(o.op);
            if op == 0 {
                if *v != 0 {
                    return Err(if nowait { SemBlock::Err(Errno::EAGAIN) } else { SemBlock::Wait(o.num, true) });
                }
                continue;
            }
            let nv = *v + op;
            if nv < 0 {
                return Err(if nowait { SemBlock::Err(Errno::EAGAIN) } else { SemBlock::Wait(o.num, false) });
            }
            if nv > SEMVMX {
                return Err(SemBlock::Err(Errno::ERANGE));
            }
            *v = nv;
        }
        // Undo adjustments must stay within bounds too (Linux: ERANGE).
        let mut adj: BTreeMap<u16, i32> = BTreeMap::new();
        if let Some(u) = undo.as_ref() {
            for o in ops.iter().filter(|o| o.flg as u16 & SEM_UNDO != 0 && o.op != 0) {
                let cur = adj.get(&o.num).or(u.get(&o.num)).copied().unwrap_or(0);
                let n = cur - i32::from(o.op);
                if !(-SEMAEM - 1..=SEMAEM).contains(&n) {
                    return Err(SemBlock::Err(Errno::ERANGE));
                }
                adj.insert(o.num, n);
            }
        }
        if let Some(u) = undo {
            for (k, v) in adj {
                if v == 0 {
                    u.remove(&k);
                } else {
                    u.insert(k, v);
                }
            }
        }
        let mut changed = false;
        for (i, s) in self.sems.iter_mut().enumerate() {
            if s.val != vals[i] {
                changed = true;
            }
            s.val = vals[i];
        }
        for o in ops {
            if let Some(s) = self.sems.get_mut(usize::from(o.num)) {
                s.pid = pid;
            }
        }
        self.otime = now;
        if changed {
            self.wq.notify();
        }
        Ok(())
    }

    /// `struct semid64_ds` bytes.
    pub fn ds(&self, perm: &super::Perm) -> [u8; SEMID_DS_SIZE] {
        let mut b = [0u8; SEMID_DS_SIZE];
        b[..super::PERM_SIZE].copy_from_slice(&perm.bytes());
        b[48..56].copy_from_slice(&self.otime.to_le_bytes());
        b[64..72].copy_from_slice(&self.ctime.to_le_bytes());
        b[80..88].copy_from_slice(&(self.sems.len() as u64).to_le_bytes());
        b
    }
}

/// `SEM_UNDO` adjustments: process (tgid) -> set id -> semaphore -> value to
/// add at exit.
#[derive(Default)]
pub struct UndoLists(pub BTreeMap<Pid, BTreeMap<i32, BTreeMap<u16, i32>>>);

impl UndoLists {
    /// The adjustments of `tgid` for set `id`.
    pub fn entry(&mut self, tgid: Pid, id: i32) -> &mut BTreeMap<u16, i32> {
        self.0.entry(tgid).or_default().entry(id).or_default()
    }
    /// Forget every adjustment for set `id` (it was removed).
    pub fn forget_set(&mut self, id: i32) {
        for m in self.0.values_mut() {
            m.remove(&id);
        }
        self.0.retain(|_, m| !m.is_empty());
    }
    /// Forget adjustments of semaphore `num` of set `id` (`SETVAL`, `SETALL`).
    pub fn forget_sem(&mut self, id: i32, num: Option<u16>) {
        for m in self.0.values_mut() {
            if let Some(s) = m.get_mut(&id) {
                match num {
                    Some(n) => {
                        s.remove(&n);
                    }
                    None => s.clear(),
                }
            }
            m.retain(|_, s| !s.is_empty());
        }
        self.0.retain(|_, m| !m.is_empty());
    }
}

/// `struct seminfo` (`IPC_INFO`, `SEM_INFO`): ten ints. With `usage`,
/// `semusz` and `semaem` are the sets and semaphores in use (as Linux's
/// `SEM_INFO`).
pub fn info_bytes(usage: Option<(u32, u32)>) -> [u8; 40] {
    let (a, b) = usage.unwrap_or((0, SEMAEM as u32));
    // semmap semmni semmns semmnu semmsl semopm semume semusz semvmx semaem
    let v: [u32; 10] = [SEMMNS as u32, SEMMNI, SEMMNS as u32, SEMMNS as u32, SEMMSL, SEMOPM as u32, SEMOPM as u32, if usage.is_some() { a } else { 20 }, SEMVMX as u32, b];
    let mut out = [0u8; 40];
    for (i, x) in v.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
    }
    out
}

impl super::Described for SemSet {
    fn ds_bytes(&self, perm: &super::Perm) -> alloc::vec::Vec<u8> {
        self.ds(perm).to_vec()
    }
}
