//! System V IPC: shared memory segments, semaphore sets and message queues,
//! as Linux keeps them in one IPC namespace.
//!
//! Each kind lives in a [`Registry`]: identifiers (`seq * 32768 + index`,
//! as Linux builds them, so a stale id of a removed object is not taken for
//! a new one in the same slot), keys, permissions, and the limits Linux has
//! (`SHMMNI`, `SEMMNI`, `MSGMNI`). Every object also takes its bytes out of
//! the guest's budget before it exists, so a guest cannot grow the kernel by
//! creating objects; the memory of shared segments is guest page-cache pages,
//! counted like tmpfs pages.
//!
//! The state here is plain data with no guest memory access: the system
//! calls (`syscall::ipc_sysv`) copy structures in and out and block.

pub mod mqueue;
pub mod msg;
pub mod sem;
pub mod shm;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::task::Cred;
use crate::Errno;

// linux/ipc.h
/// `IPC_PRIVATE`: a key that always makes a new object.
pub const IPC_PRIVATE: i32 = 0;
/// Create if the key is absent.
pub const IPC_CREAT: u32 = 0o1000;
/// With `IPC_CREAT`: fail if the key exists.
pub const IPC_EXCL: u32 = 0o2000;
/// Do not wait.
pub const IPC_NOWAIT: u32 = 0o4000;
/// Remove the object.
pub const IPC_RMID: i32 = 0;
/// Set owner and mode.
pub const IPC_SET: i32 = 1;
/// Read the object's state.
pub const IPC_STAT: i32 = 2;
/// System-wide limits.
pub const IPC_INFO: i32 = 3;

/// Ids are `seq * SEQ_MULTIPLIER + index` (Linux's `IPCMNI`).
pub const SEQ_MULTIPLIER: u32 = 32768;

/// Size of `struct ipc64_perm` on x86_64.
pub const PERM_SIZE: usize = 48;

/// Owner, creator and mode of an IPC object (`struct ipc64_perm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The key it was created with (`IPC_PRIVATE` once removed).
    pub key: i32,
    /// Owner.
    pub uid: u32,
    /// Owner's group.
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    /// Creator's group.
    pub cgid: u32,
    /// Permission bits (low 9) and kind-specific flags above them.
    pub mode: u32,
    /// Slot sequence number (the high part of the id).
    pub seq: u16,
}

/// Read access (the `r` bits).
pub const MAY_READ: u32 = 4;
/// Write access (for semaphores: alter).
pub const MAY_WRITE: u32 = 2;

impl Perm {
    /// Linux's `ipcperms`: owner, group, then other bits; root passes.
    pub fn allows(&self, c: &Cred, want: u32) -> bool {
        if c.euid == 0 || want == 0 {
            return true;
        }
        let bits = if c.euid == self.cuid || c.euid == self.uid {
            self.mode >> 6
        } else if self.in_group(c) {
            self.mode >> 3
        } else {
            self.mode
        } & 7;
        bits & want == want
    }
    fn in_group(&self, c: &Cred) -> bool {
        [self.gid, self.cgid].iter().any(|g| *g == c.egid || c.groups.contains(g))
    }
    /// May `c` change or remove the object (`IPC_SET`, `IPC_RMID`)? Owner,
    /// creator or root, as Linux's `ipcctl_obtain_check`.
    pub fn may_own(&self, c: &Cred) -> bool {
        c.euid == 0 || c.euid == self.uid || c.euid == self.cuid
    }
    /// `struct ipc64_perm` bytes.
    pub fn bytes(&self) -> [u8; PERM_SIZE] {
        let mut b = [0u8; PERM_SIZE];
        b[0..4].copy_from_slice(&self.key.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..12].copy_from_slice(&self.gid.to_le_bytes());
        b[12..16].copy_from_slice(&self.cuid.to_le_bytes());
        b[16..20].copy_from_slice(&self.cgid.to_le_bytes());
        b[20..24].copy_from_slice(&self.mode.to_le_bytes());
        b[24..26].copy_from_slice(&self.seq.to_le_bytes());
        b
    }
    /// `IPC_SET`: the new owner, group and permission bits from a user
    /// `ipc64_perm`.
    pub fn set_from(&mut self, b: &[u8]) {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        self.uid = w(4);
        self.gid = w(8);
        self.mode = (self.mode & !0o777) | (w(20) & 0o777);
    }
}

/// One kind of IPC object: slots by index, keys, limits.
pub struct Registry<T> {
    slots: BTreeMap<u32, (Perm, T)>,
    keys: BTreeMap<i32, u32>,
    /// Next sequence number per slot index (kept after removal).
    seqs: BTreeMap<u32, u16>,
    /// Most objects at once (`*MNI`).
    max: u32,
}

/// What [`Registry::lookup_key`] found.
pub enum Found {
    /// No object has the key (or the key is `IPC_PRIVATE`): create one.
    Create,
    /// The object with this id.
    Existing(i32),
}

impl<T> Registry<T> {
    /// An empty registry of at most `max` objects.
    pub fn new(max: u32) -> Self {
        Registry { slots: BTreeMap::new(), keys: BTreeMap::new(), seqs: BTreeMap::new(), max }
    }
    /// How many objects exist.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// No object exists.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// The largest index in use (`IPC_INFO`'s return value), 0 if none.
    pub fn max_index(&self) -> u32 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }
    /// The common part of `*get(key, ..., flags)`: `ENOENT` without
    /// `IPC_CREAT`, `EEXIST` with `IPC_CREAT|IPC_EXCL`, `EACCES` when the
    /// requested mode bits are not granted.
    pub fn lookup_key(&self, key: i32, flags: u32, c: &Cred) -> Result<Found, Errno> {
        if key == IPC_PRIVATE {
            return Ok(Found::Create);
        }
        match self.keys.get(&key) {
            None if flags & IPC_CREAT != 0 => Ok(Found::Create),
            None => Err(Errno::ENOENT),
            Some(_) if flags & (IPC_CREAT | IPC_EXCL) == IPC_CREAT | IPC_EXCL => Err(Errno::EEXIST),
            Some(&idx) => {
                let Some((p, _)) = self.slots.get(&idx) else { return Err(Errno::ENOENT) };
                // The access asked for: the requested mode's bits, by class.
                let want = (flags >> 6 | flags >> 3 | flags) & 7;
                if !p.allows(c, want) {
                    return Err(Errno::EACCES);
                }
                Ok(Found::Existing(id_of(idx, p.seq)))
            }
        }
    }
    /// Add an object with `key` and mode bits `flags & 0o777` owned by `c`
    /// (`ENOSPC` past the limit). Returns its id.
    pub fn insert(&mut self, key: i32, flags: u32, c: &Cred, obj: T) -> Result<i32, Errno> {
        if self.slots.len() as u32 >= self.max {
            return Err(Errno::ENOSPC);
        }
        let idx = (0..self.max).find(|i| !self.slots.contains_key(i)).ok_or(Errno::ENOSPC)?;
        let seq = self.seqs.get(&idx).copied().unwrap_or(0);
        let perm = Perm { key, uid: c.euid, gid: c.egid, cuid: c.euid, cgid: c.egid, mode: flags & 0o777, seq };
        self.slots.insert(idx, (perm, obj));
        if key != IPC_PRIVATE {
            self.keys.insert(key, idx);
        }
        Ok(id_of(idx, seq))
    }
    fn index(&self, id: i32) -> Result<u32, Errno> {
        if id < 0 {
            return Err(Errno::EINVAL);
        }
        let (idx, seq) = (id as u32 % SEQ_MULTIPLIER, (id as u32 / SEQ_MULTIPLIER) as u16);
        match self.slots.get(&idx) {
            Some((p, _)) if p.seq == seq && (id as u32 / SEQ_MULTIPLIER) <= u32::from(u16::MAX) => Ok(idx),
            _ => Err(Errno::EINVAL),
        }
    }
    /// The object with id `id` (`EINVAL` if none).
    pub fn get(&self, id: i32) -> Result<&(Perm, T), Errno> {
        let idx = self.index(id)?;
        self.slots.get(&idx).ok_or(Errno::EINVAL)
    }
    /// The object with id `id`, to change it.
    pub fn get_mut(&mut self, id: i32) -> Result<&mut (Perm, T), Errno> {
        let idx = self.index(id)?;
        self.slots.get_mut(&idx).ok_or(Errno::EINVAL)
    }
    /// The object with id `id`, to change or remove it: `EPERM` unless
    /// `c` owns or created it (or is root), as every `*ctl` command but the
    /// `*_STAT` ones requires.
    pub fn owned_mut(&mut self, id: i32, c: &Cred) -> Result<&mut (Perm, T), Errno> {
        let o = self.get_mut(id)?;
        if !o.0.may_own(c) {
            return Err(Errno::EPERM);
        }
        Ok(o)
    }
    /// The object in slot `idx` (`*_STAT` commands take an index), with its id.
    pub fn by_index(&self, idx: u32) -> Result<(i32, &(Perm, T)), Errno> {
        let o = self.slots.get(&idx).ok_or(Errno::EINVAL)?;
        Ok((id_of(idx, o.0.seq), o))
    }
    /// Forget the key of `id` (the object stays until [`Registry::remove`]:
    /// an attached shared segment).
    pub fn unkey(&mut self, id: i32) -> Result<(), Errno> {
        let idx = self.index(id)?;
        if let Some((p, _)) = self.slots.get_mut(&idx) {
            if p.key != IPC_PRIVATE && self.keys.get(&p.key) == Some(&idx) {
                self.keys.remove(&p.key);
            }
            p.key = IPC_PRIVATE;
        }
        Ok(())
    }
    /// Remove the object `id`; its slot's next id differs from this one.
    pub fn remove(&mut self, id: i32) -> Result<T, Errno> {
        self.unkey(id)?;
        let idx = self.index(id)?;
        let (p, obj) = self.slots.remove(&idx).ok_or(Errno::EINVAL)?;
        // The next object in this slot gets another id (Linux wraps at IPCMNI ids per slot).
        let next = if u32::from(p.seq) + 1 >= u32::from(u16::MAX) { 0 } else { p.seq + 1 };
        self.seqs.insert(idx, next);
        Ok(obj)
    }
    /// Every object's id, in slot order.
    pub fn ids(&self) -> alloc::vec::Vec<i32> {
        self.slots.iter().map(|(i, (p, _))| id_of(*i, p.seq)).collect()
    }
    /// Every object, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &(Perm, T)> {
        self.slots.values()
    }
    /// Check the registry's own invariants (keys point to live slots with that key).
    pub fn check(&self) -> Result<(), alloc::string::String> {
        for (k, idx) in &self.keys {
            match self.slots.get(idx) {
                Some((p, _)) if p.key == *k => {}
                _ => return Err(alloc::format!("ipc key {k} points to slot {idx} without it")),
            }
        }
        if self.slots.len() as u32 > self.max {
            return Err(alloc::format!("ipc registry holds {} > {}", self.slots.len(), self.max));
        }
        Ok(())
    }
}

fn id_of(idx: u32, seq: u16) -> i32 {
    (u32::from(seq) * SEQ_MULTIPLIER + idx) as i32
}

/// An object whose state `*ctl(IPC_STAT)` copies out (`struct *id64_ds`).
pub trait Described {
    /// The `*id64_ds` bytes, with `perm` at their start.
    fn ds_bytes(&self, perm: &Perm) -> alloc::vec::Vec<u8>;
}

/// `IPC_STAT` (`by_id`) or `*_STAT`/`*_STAT_ANY` (an index): the bytes to
/// copy out and the call's result (0, or the object's id). `EACCES` without
/// read permission unless `any`.
pub fn stat<T: Described>(reg: &Registry<T>, by_id: bool, any: bool, id: i32, c: &Cred) -> Result<(usize, alloc::vec::Vec<u8>), Errno> {
    let (rid, (p, o)) = if by_id { (id, reg.get(id)?) } else { reg.by_index(id as u32)? };
    if !any && !p.allows(c, MAY_READ) {
        return Err(Errno::EACCES);
    }
    Ok((if by_id { 0 } else { rid as usize }, o.ds_bytes(p)))
}

/// Bytes every IPC object charges the budget besides its contents.
pub const OBJECT_COST: usize = 256;

/// A charge for one object of `bytes` (besides [`OBJECT_COST`]): `ENOMEM`
/// when the guest's budget refuses, as Linux when its allocation fails.
pub fn charge(budget: Option<&BudgetRef>, bytes: usize) -> Result<Charge, Errno> {
    match budget {
        Some(b) => Charge::new(b, Cost::Other, OBJECT_COST.saturating_add(bytes)).map_err(|_| Errno::ENOMEM),
        None => Ok(Charge::none(Cost::Other)),
    }
}

/// The System V IPC namespace of a guest.
pub struct Ipc {
    /// Shared memory segments.
    pub shm: Registry<shm::Segment>,
    /// Semaphore sets.
    pub sem: Registry<sem::SemSet>,
    /// Message queues.
    pub msg: Registry<msg::MsgQueue>,
    /// `SEM_UNDO` adjustments per process (tgid), applied at its exit.
    pub undo: sem::UndoLists,
    /// Tasks blocked in `semop`/`msgsnd`/`msgrcv`: what they wait on, so a
    /// removal can tell them `EIDRM` and `GETNCNT`/`GETZCNT` can count them.
    pub waiters: BTreeMap<crate::task::Pid, Waiter>,
    /// Shared segments by the id of their page cache (how `shmdt`
    /// recognises a mapping of one).
    pub shm_by_cache: BTreeMap<u64, i32>,
    /// POSIX message queues by name.
    pub mq: mqueue::MqNames,
}

/// A task blocked on an IPC object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// Semaphore set or message queue id.
    pub id: i32,
    /// Which registry: 's' (sem) or 'm' (msg).
    pub kind: u8,
    /// The semaphore whose operation blocked, and whether it waits for zero.
    pub sem: Option<(u16, bool)>,
    /// The object was removed while the task waited.
    pub removed: bool,
}

impl Default for Ipc {
    fn default() -> Self {
        Ipc {
            shm: Registry::new(shm::SHMMNI),
            sem: Registry::new(sem::SEMMNI),
            msg: Registry::new(msg::MSGMNI),
            undo: sem::UndoLists::default(),
            waiters: BTreeMap::new(),
            shm_by_cache: BTreeMap::new(),
            mq: mqueue::MqNames::default(),
        }
    }
}

impl Ipc {
    /// Mark the waiters of object `id` of `kind` as woken by its removal.
    pub fn removed(&mut self, kind: u8, id: i32) {
        for w in self.waiters.values_mut() {
            if w.kind == kind && w.id == id {
                w.removed = true;
            }
        }
    }
    /// A call by `pid` on object `id` of `kind` starts (or re-runs): was it
    /// waiting on that object when it was removed?
    pub fn take_removed(&mut self, pid: crate::task::Pid, kind: u8, id: i32) -> bool {
        match self.waiters.remove(&pid) {
            Some(w) => w.removed && w.kind == kind && w.id == id,
            None => false,
        }
    }
    /// Process `tgid` is gone: apply its `SEM_UNDO` adjustments (clamped
    /// at 0 and `SEMVMX`, as Linux) and forget it.
    pub fn process_exit(&mut self, tgid: crate::task::Pid) {
        let Some(sets) = self.undo.0.remove(&tgid) else { return };
        for (id, adj) in sets {
            let Ok((_, set)) = self.sem.get_mut(id) else { continue };
            for (num, v) in adj {
                if let Some(s) = set.sems.get_mut(usize::from(num)) {
                    s.val = (s.val + v).clamp(0, sem::SEMVMX);
                    s.pid = tgid;
                }
            }
            set.wq.notify();
        }
    }
    /// Task `pid` is gone: it waits on nothing.
    pub fn task_exit(&mut self, pid: crate::task::Pid) {
        self.waiters.remove(&pid);
    }
    /// The registries' invariants.
    pub fn check(&self) -> Result<(), alloc::string::String> {
        self.shm.check()?;
        self.sem.check()?;
        self.msg.check()
    }
}
