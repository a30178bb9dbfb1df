//! Advisory file locks, as Linux keeps them per file: `flock` locks (owned
//! by an open file description), POSIX record locks (`fcntl(F_SETLK)`,
//! owned by a process) and open-file-description record locks
//! (`F_OFD_SETLK`, owned by a description, conflicting with POSIX ones).
//!
//! Lifetimes follow Linux: a POSIX lock goes when its process closes any
//! descriptor of the file or exits; `flock` and OFD locks go when the last
//! descriptor of their description closes. Descriptions are held weakly:
//! a lock whose description is gone is dropped at the next look at its
//! file (and at every close and exit), so no close path has to know them.
//! Each lock charges the guest's budget: a guest cannot grow the table
//! without bound.

use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::fs::OpenFile;
use crate::task::Pid;
use crate::wait::{WaitQueue, WaitRef};
use crate::Errno;

/// A file: (superblock, inode number).
pub type FileKey = (u32, u64);

/// Who owns a lock.
#[derive(Clone, Debug)]
pub enum Owner {
    /// A process (POSIX record lock).
    Process(Pid),
    /// An open file description (OFD record lock).
    Ofd(Weak<OpenFile>),
    /// An open file description (`flock`).
    Flock(Weak<OpenFile>),
}

impl Owner {
    fn same(&self, o: &Owner) -> bool {
        match (self, o) {
            (Owner::Process(a), Owner::Process(b)) => a == b,
            (Owner::Ofd(a), Owner::Ofd(b)) | (Owner::Flock(a), Owner::Flock(b)) => Weak::ptr_eq(a, b),
            _ => false,
        }
    }
    fn is_flock(&self) -> bool {
        matches!(self, Owner::Flock(_))
    }
    fn alive(&self) -> bool {
        match self {
            Owner::Process(_) => true,
            Owner::Ofd(w) | Owner::Flock(w) => w.strong_count() > 0,
        }
    }
    /// The pid `F_GETLK` reports (-1 for a description's lock).
    pub fn pid(&self) -> i32 {
        match self {
            Owner::Process(p) => *p as i32,
            _ => -1,
        }
    }
}

/// One lock: a byte range `[start, end]` (inclusive; `u64::MAX` is "to
/// the end of the file, however long").
#[derive(Debug)]
pub struct Lock {
    /// Owner.
    pub owner: Owner,
    /// Write (exclusive) or read (shared).
    pub write: bool,
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
    _charge: Charge,
}

/// The locks of one file and the queue its waiters block on.
struct FileLocks {
    locks: Vec<Lock>,
    wq: WaitRef,
}

/// Bytes each lock costs the budget.
const LOCK_COST: usize = 96;

/// Every file's locks, and who waits for whom (deadlock detection).
#[derive(Default)]
pub struct LockTable {
    files: BTreeMap<FileKey, FileLocks>,
    /// A process blocked in `F_SETLKW` -> the process holding the lock it waits for.
    waits_for: BTreeMap<Pid, Pid>,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

impl LockTable {
    fn purge(&mut self, key: FileKey) {
        if let Some(f) = self.files.get_mut(&key) {
            let before = f.locks.len();
            f.locks.retain(|l| l.owner.alive());
            if f.locks.len() != before {
                f.wq.notify();
            }
            if f.locks.is_empty() {
                self.files.remove(&key);
            }
        }
    }

    /// The queue waiters of `key` block on (created if needed).
    pub fn queue(&mut self, key: FileKey) -> WaitRef {
        self.files.entry(key).or_insert_with(|| FileLocks { locks: Vec::new(), wq: WaitQueue::new() }).wq.clone()
    }

    /// The first lock of another owner that conflicts with `(write, start,
    /// end)` for `owner` (`flock` locks meet only `flock` locks).
    pub fn conflict(&mut self, key: FileKey, owner: &Owner, write: bool, start: u64, end: u64) -> Option<(bool, u64, u64, i32)> {
        self.purge(key);
        let f = self.files.get(&key)?;
        f.locks
            .iter()
            .find(|l| l.owner.is_flock() == owner.is_flock() && !l.owner.same(owner) && (write || l.write) && overlaps((l.start, l.end), (start, end)))
            .map(|l| (l.write, l.start, l.end, l.owner.pid()))
    }

    /// Set (or with `kind` None, clear) `owner`'s lock on `[start, end]`,
    /// splitting and merging its existing ones as Linux does. The caller
    /// checked for conflicts. `ENOLCK` when the budget refuses.
    pub fn set(&mut self, key: FileKey, owner: Owner, kind: Option<bool>, start: u64, end: u64, budget: Option<&BudgetRef>) -> Result<(), Errno> {
        self.purge(key);
        let charge = |b: Option<&BudgetRef>| match b {
            Some(b) => Charge::new(b, Cost::Other, LOCK_COST).map_err(|_| Errno::ENOLCK),
            None => Ok(Charge::none(Cost::Other)),
        };
        let wq = self.queue(key);
        let Some(f) = self.files.get_mut(&key) else { return Ok(()) };
        // Take out the owner's locks that overlap or touch the range.
        let mut mine = Vec::new();
        let mut i = 0;
        while i < f.locks.len() {
            let l = &f.locks[i];
            let touches = overlaps((l.start, l.end), (start.saturating_sub(1), end.saturating_add(1)));
            if l.owner.same(&owner) && touches {
                mine.push(f.locks.swap_remove(i));
            } else {
                i += 1;
            }
        }
        let mut new_start = start;
        let mut new_end = end;
        let mut keep: Vec<(bool, u64, u64)> = Vec::new();
        for l in &mine {
            if Some(l.write) == kind {
                // Same kind, touching or overlapping: merge.
                new_start = new_start.min(l.start);
                new_end = new_end.max(l.end);
                continue;
            }
            if !overlaps((l.start, l.end), (start, end)) {
                keep.push((l.write, l.start, l.end));
                continue;
            }
            if l.start < start {
                keep.push((l.write, l.start, start - 1));
            }
            if l.end > end {
                keep.push((l.write, end + 1, l.end));
            }
        }
        // Reuse the old locks' charges; charge only for what is new.
        let mut charges: Vec<Charge> = mine.into_iter().map(|l| l._charge).collect();
        let mut take = |b: Option<&BudgetRef>| -> Result<Charge, Errno> {
            match charges.pop() {
                Some(c) => Ok(c),
                None => charge(b),
            }
        };
        let mut add = Vec::new();
        for (w, s, e) in keep {
            add.push(Lock { owner: owner.clone(), write: w, start: s, end: e, _charge: take(budget)? });
        }
        if let Some(w) = kind {
            add.push(Lock { owner: owner.clone(), write: w, start: new_start, end: new_end, _charge: take(budget)? });
        }
        f.locks.extend(add);
        wq.notify();
        if f.locks.is_empty() {
            self.files.remove(&key);
        }
        Ok(())
    }

    /// The `flock` lock `owner` holds on `key`, if any: whether it is exclusive.
    pub fn flock_held(&mut self, key: FileKey, owner: &Owner) -> Option<bool> {
        self.purge(key);
        self.files.get(&key)?.locks.iter().find(|l| l.owner.same(owner)).map(|l| l.write)
    }

    /// Process `pid` closed a descriptor of `key`: its POSIX locks on the
    /// file go (and locks of descriptions now closed).
    pub fn closed(&mut self, key: FileKey, pid: Pid) {
        if let Some(f) = self.files.get_mut(&key) {
            f.locks.retain(|l| !matches!(l.owner, Owner::Process(p) if p == pid));
            f.wq.notify();
        }
        self.purge(key);
    }

    /// Process `pid` exited: its POSIX locks go, it waits for nobody, and
    /// locks of descriptions it was the last to hold go too.
    pub fn process_exit(&mut self, pid: Pid) {
        self.waits_for.remove(&pid);
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for k in keys {
            self.closed(k, pid);
        }
    }

    /// `pid` is about to wait for `holder`: `EDEADLK` if `holder` (through
    /// the processes it waits for, as long as they are `blocked`) waits
    /// for `pid`.
    pub fn would_deadlock(&self, pid: Pid, holder: Pid, blocked: impl Fn(Pid) -> bool) -> bool {
        let mut cur = holder;
        // Bounded walk: a chain is at most as long as the number of waiters.
        for _ in 0..=self.waits_for.len() {
            if cur == pid {
                return true;
            }
            if !blocked(cur) {
                return false;
            }
            match self.waits_for.get(&cur) {
                Some(&n) => cur = n,
                None => return false,
            }
        }
        false
    }

    /// Record that `pid` waits for `holder` (or, with None, for nobody).
    pub fn set_waiting(&mut self, pid: Pid, holder: Option<Pid>) {
        match holder {
            Some(h) => {
                self.waits_for.insert(pid, h);
            }
            None => {
                self.waits_for.remove(&pid);
            }
        }
    }

    /// Locks held now (tests, invariants).
    pub fn count(&self) -> usize {
        self.files.values().map(|f| f.locks.len()).sum()
    }

    /// The locks on `key` as (owner pid, write, start, end), for tests and `/proc/locks`.
    pub fn list(&self, key: FileKey) -> Vec<(i32, bool, u64, u64)> {
        self.files.get(&key).map_or(Vec::new(), |f| f.locks.iter().map(|l| (l.owner.pid(), l.write, l.start, l.end)).collect())
    }
}

/// The owner for a description's lock.
pub fn ofd_owner(f: &Rc<OpenFile>) -> Owner {
    Owner::Ofd(Rc::downgrade(f))
}

/// The owner for a description's `flock`.
pub fn flock_owner(f: &Rc<OpenFile>) -> Owner {
    Owner::Flock(Rc::downgrade(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use proptest::prelude::*;

    /// Per-byte model of two processes' POSIX locks on 32 bytes:
    /// `None`, `Some(false)` (read) or `Some(true)` (write) per owner.
    type Model = [[Option<bool>; 32]; 2];

    proptest! {
        #[test]
        fn posix_locks_match_a_byte_model(ops in proptest::collection::vec((0u32..2, 0u8..3, 0u64..32, 1u64..12), 1..60)) {
            let budget = Budget::new(1 << 12);
            let mut t = LockTable::default();
            let mut m: Model = [[None; 32]; 2];
            let key = (1, 1);
            for (who, ty, start, len) in ops {
                let end = (start + len - 1).min(31);
                let owner = Owner::Process(who + 1);
                let kind = match ty { 0 => None, 1 => Some(false), _ => Some(true) };
                // Model conflict: the other owner holds an overlapping byte where either is a write.
                let other = &m[1 - who as usize];
                let conflict_model = kind.is_some_and(|w| (start..=end).any(|i| other[i as usize].is_some_and(|o| o || w)));
                let conflict = kind.and_then(|w| t.conflict(key, &owner, w, start, end));
                prop_assert_eq!(conflict.is_some(), conflict_model);
                if conflict.is_some() {
                    continue;
                }
                t.set(key, owner, kind, start, end, Some(&budget)).expect("budget is ample");
                for i in start..=end {
                    m[who as usize][i as usize] = kind;
                }
                // The table's locks of each owner cover exactly the model's bytes, without overlap.
                for w in 0..2u32 {
                    let mut seen: [Option<bool>; 32] = [None; 32];
                    for (pid, write, s, e) in t.list(key) {
                        if pid != (w + 1) as i32 { continue; }
                        for i in s..=e.min(31) {
                            prop_assert!(seen[i as usize].is_none(), "overlapping locks of one owner");
                            seen[i as usize] = Some(write);
                        }
                    }
                    prop_assert_eq!(seen, m[w as usize]);
                }
            }
            t.process_exit(1);
            t.process_exit(2);
            prop_assert_eq!(t.count(), 0);
            prop_assert_eq!(budget.kernel_bytes(), 0);
        }
    }
}
