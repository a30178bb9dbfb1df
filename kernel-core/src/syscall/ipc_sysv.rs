//! System V IPC calls: `shmget`/`shmat`/`shmdt`/`shmctl`,
//! `semget`/`semop`/`semtimedop`/`semctl`, `msgget`/`msgsnd`/`msgrcv`/
//! `msgctl`. The objects live in [`crate::ipc`]; this file copies the
//! user structures and blocks callers that must wait (the call is re-run
//! when the object changes, as for pipes).

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use hal::{Hal, Prot};
use linux_raw_sys::general as g;

use super::poll::block_on;
use super::{Flow, SysCtx};
use crate::fs::Kind;
use crate::ipc::msg::{self, MsgQueue};
use crate::ipc::sem::{self, SemBlock, SemOp, SemSet};
use crate::ipc::shm::{self, Segment};
use crate::ipc::{self, Found, Waiter, IPC_INFO, IPC_NOWAIT, IPC_RMID, IPC_SET, IPC_STAT, MAY_READ, MAY_WRITE, PERM_SIZE};
use crate::mm::{Backing, MapFlags, MappedFile, PAGE};
use crate::wait::WaitSet;
use crate::{Errno, SysResult};

fn now_s<H: Hal>(cx: &SysCtx<'_, H>) -> u64 {
    cx.hal.realtime_ns() / 1_000_000_000
}

fn ret(r: SysResult) -> Flow {
    Flow::Ret(r)
}

// ------------------------------------------------------------ shared memory

/// Destroy removed segments nothing maps any more.
fn reap_segments<H: Hal>(cx: &mut SysCtx<'_, H>) {
    let dead: Vec<i32> = cx
        .k
        .ipc
        .shm
        .ids()
        .into_iter()
        .filter(|&id| cx.k.ipc.shm.get(id).is_ok_and(|(p, s)| p.mode & shm::SHM_DEST != 0 && s.nattch() == 0))
        .collect();
    for id in dead {
        if let Ok(s) = cx.k.ipc.shm.remove(id) {
            if let Some(c) = s.cache_id() {
                cx.k.ipc.shm_by_cache.remove(&c);
            }
            destroy_segment(cx, s);
        }
    }
}

/// Give a segment's memory back.
fn destroy_segment<H: Hal>(cx: &mut SysCtx<'_, H>, s: Segment) {
    if let Kind::File(d) = &s.inode.kind {
        let _ = d.cache().truncate(0, &mut cx.k.frames, cx.hal.phys());
    }
}

/// `shmget(key, size, flags)`.
pub fn shmget<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (key, size, flags) = (a[0] as i32, a[1], a[2] as u32);
    reap_segments(cx);
    let c = cx.t.cred.clone();
    match cx.k.ipc.shm.lookup_key(key, flags, &c)? {
        Found::Existing(id) => {
            let (_, s) = cx.k.ipc.shm.get(id)?;
            if s.size < size {
                return Err(Errno::EINVAL);
            }
            Ok(id as usize)
        }
        Found::Create => {
            if !(shm::SHMMIN..=shm::SHMMAX).contains(&size) {
                return Err(Errno::EINVAL);
            }
            // All segments together: at most the guest's memory (Linux's shmall).
            let pages = size.div_ceil(PAGE);
            let total: u64 = cx.k.ipc.shm.iter().map(|(_, s)| s.size.div_ceil(PAGE)).sum();
            if total.saturating_add(pages) > cx.k.frames.total_frames() {
                return Err(Errno::ENOSPC);
            }
            let charge = ipc::charge(Some(cx.k.frames.budget()), 0)?;
            let sb = cx.k.fs.memfd_sb();
            let data = cx.k.fs.new_file_data(sb);
            let now = cx.hal.realtime_ns();
            let node = cx.k.fs.charged_inode_in(sb, Kind::File(data), flags & 0o777, now)?;
            if let Kind::File(d) = &node.kind {
                d.cache().truncate(size, &mut cx.k.frames, cx.hal.phys())?;
            }
            let cache_id = match &node.kind {
                Kind::File(d) => d.cache().id(),
                _ => 0,
            };
            let pid = cx.t.tgid;
            let seg = Segment { inode: node, size, atime: 0, dtime: 0, ctime: now / 1_000_000_000, cpid: pid, lpid: 0, charge };
            let id = cx.k.ipc.shm.insert(key, flags, &c, seg)?;
            cx.k.ipc.shm_by_cache.insert(cache_id, id);
            Ok(id as usize)
        }
    }
}

/// `shmat(id, addr, flags)`: map the segment shared; returns the address.
pub fn shmat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (id, mut addr, flags) = (a[0] as i32, a[1], a[2] as u32);
    reap_segments(cx);
    if addr % shm::SHMLBA != 0 {
        if flags & shm::SHM_RND == 0 {
            return Err(Errno::EINVAL);
        }
        addr &= !(shm::SHMLBA - 1);
    }
    let rdonly = flags & shm::SHM_RDONLY != 0;
    let mut prot = Prot::READ;
    let mut want = MAY_READ;
    if !rdonly {
        prot |= Prot::WRITE;
        want |= MAY_WRITE;
    }
    if flags & shm::SHM_EXEC != 0 {
        prot |= Prot::EXEC;
    }
    if flags & shm::SHM_REMAP != 0 && addr == 0 {
        return Err(Errno::EINVAL);
    }
    let c = cx.t.cred.clone();
    let (p, s) = cx.k.ipc.shm.get(id)?;
    if !p.allows(&c, want) {
        return Err(Errno::EACCES);
    }
    let (inode, size, key) = (s.inode.clone(), s.size, p.key);
    let mut mflags = MapFlags::from_bits_retain(g::MAP_SHARED);
    if addr != 0 {
        mflags |= if flags & shm::SHM_REMAP != 0 { MapFlags::FIXED } else { MapFlags::FIXED_NOREPLACE };
    }
    let file: Arc<dyn MappedFile> = inode;
    let backing = Backing::Open { file, offset: 0, writable: !rdonly, name: format!("/SYSV{:08x} (deleted)", key as u32) };
    let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
    let at = match mm.mmap_with_phys(addr, size, prot, mflags, backing, &mut cx.k.frames, cx.hal.phys()) {
        Err(Errno::EEXIST) => return Err(Errno::EINVAL),
        r => r?,
    };
    let (now, pid) = (now_s(cx), cx.t.tgid);
    if let Ok((_, s)) = cx.k.ipc.shm.get_mut(id) {
        s.atime = now;
        s.lpid = pid;
    }
    Ok(at as usize)
}

/// `shmdt(addr)`: unmap the segment attached at `addr` (every piece of it
/// at the offset it was attached with).
pub fn shmdt<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let addr = a[0];
    if addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let mm = cx.t.mm.as_mut().ok_or(Errno::EINVAL)?;
    let shm_of = |f: &Option<Arc<dyn MappedFile>>| f.as_ref().and_then(|f| f.page_cache()).map(|c| c.id());
    let Some(first) = mm.vmas().find(|v| v.start == addr && v.offset == 0) else { return Err(Errno::EINVAL) };
    let Some(cache) = shm_of(&first.file) else { return Err(Errno::EINVAL) };
    let Some(&id) = cx.k.ipc.shm_by_cache.get(&cache) else { return Err(Errno::EINVAL) };
    let size = first.file.as_ref().map_or(0, |f| f.size()).div_ceil(PAGE) * PAGE;
    let end = addr.saturating_add(size);
    let pieces: Vec<(u64, u64)> = mm
        .vmas()
        .filter(|v| v.start >= addr && v.start < end && shm_of(&v.file) == Some(cache) && v.offset == v.start - addr)
        .map(|v| (v.start, v.end))
        .collect();
    for (s, e) in pieces {
        mm.munmap(s, e - s, &mut cx.k.frames)?;
    }
    let (now, pid) = (now_s(cx), cx.t.tgid);
    if let Ok((_, s)) = cx.k.ipc.shm.get_mut(id) {
        s.dtime = now;
        s.lpid = pid;
    }
    reap_segments(cx);
    Ok(0)
}

/// `shmctl(id, cmd, buf)`.
pub fn shmctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (id, cmd, buf) = (a[0] as i32, a[1] as i32, a[2]);
    if cmd < 0 || id < 0 {
        return Err(Errno::EINVAL);
    }
    reap_segments(cx);
    let c = cx.t.cred.clone();
    match cmd {
        IPC_INFO => {
            cx.write_user(buf, &shm::info_bytes(cx.k.frames.total_frames()))?;
            Ok(cx.k.ipc.shm.max_index() as usize)
        }
        shm::SHM_INFO => {
            // struct shm_info: used_ids, shm_tot, shm_rss, shm_swp, swap_attempts, swap_successes.
            let mut b = [0u8; 56];
            let tot: u64 = cx.k.ipc.shm.iter().map(|(_, s)| s.size.div_ceil(PAGE)).sum();
            let rss: u64 = cx.k.ipc.shm.iter().map(|(_, s)| s.resident_pages()).sum();
            b[0..4].copy_from_slice(&(cx.k.ipc.shm.len() as u32).to_le_bytes());
            b[8..16].copy_from_slice(&tot.to_le_bytes());
            b[16..24].copy_from_slice(&rss.to_le_bytes());
            cx.write_user(buf, &b)?;
            Ok(cx.k.ipc.shm.max_index() as usize)
        }
        IPC_STAT | shm::SHM_STAT | shm::SHM_STAT_ANY => {
            let (r, ds) = ipc::stat(&cx.k.ipc.shm, cmd == IPC_STAT, cmd == shm::SHM_STAT_ANY, id, &c)?;
            cx.write_user(buf, &ds)?;
            Ok(r)
        }
        IPC_SET => {
            let mut b = [0u8; PERM_SIZE];
            cx.read_user(buf, &mut b)?;
            let now = now_s(cx);
            let (p, s) = cx.k.ipc.shm.owned_mut(id, &c)?;
            p.set_from(&b);
            s.ctime = now;
            Ok(0)
        }
        IPC_RMID => {
            let (p, s) = cx.k.ipc.shm.owned_mut(id, &c)?;
            p.mode |= shm::SHM_DEST;
            let attached = s.nattch() > 0;
            cx.k.ipc.shm.unkey(id)?;
            if !attached {
                reap_segments(cx);
            }
            Ok(0)
        }
        shm::SHM_LOCK | shm::SHM_UNLOCK => {
            let (p, _) = cx.k.ipc.shm.owned_mut(id, &c)?;
            // Guest memory is never swapped: locking only shows in the mode.
            if cmd == shm::SHM_LOCK {
                p.mode |= shm::SHM_LOCKED;
            } else {
                p.mode &= !shm::SHM_LOCKED;
            }
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

// ------------------------------------------------------------- semaphores

/// `semget(key, nsems, flags)`.
pub fn semget<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (key, nsems, flags) = (a[0] as i32, a[1] as i32, a[2] as u32);
    if nsems < 0 || nsems as u32 > sem::SEMMSL {
        return Err(Errno::EINVAL);
    }
    let c = cx.t.cred.clone();
    match cx.k.ipc.sem.lookup_key(key, flags, &c)? {
        Found::Existing(id) => {
            let (_, s) = cx.k.ipc.sem.get(id)?;
            if s.sems.len() < nsems as usize {
                return Err(Errno::EINVAL);
            }
            Ok(id as usize)
        }
        Found::Create => {
            if nsems == 0 {
                return Err(Errno::EINVAL);
            }
            let total: u64 = cx.k.ipc.sem.iter().map(|(_, s)| s.sems.len() as u64).sum();
            if total + nsems as u64 > sem::SEMMNS {
                return Err(Errno::ENOSPC);
            }
            let charge = ipc::charge(Some(cx.k.frames.budget()), nsems as usize * core::mem::size_of::<sem::Sem>())?;
            let set = SemSet::new(nsems as usize, now_s(cx), charge);
            Ok(cx.k.ipc.sem.insert(key, flags, &c, set)? as usize)
        }
    }
}

/// A blocking call's deadline, kept across its re-runs.
fn deadline<H: Hal>(cx: &mut SysCtx<'_, H>, timeout: Option<u64>) -> Option<u64> {
    let now = cx.hal.now_ns();
    cx.t.restart_deadline.or(timeout.map(|t| now.saturating_add(t)))
}

fn do_semop<H: Hal>(cx: &mut SysCtx<'_, H>, id: i32, sops: u64, nsops: u64, timeout: Option<u64>) -> Flow {
    if nsops == 0 || id < 0 {
        return ret(Err(Errno::EINVAL));
    }
    if nsops > sem::SEMOPM as u64 {
        return ret(Err(Errno::E2BIG));
    }
    let mut raw = vec![0u8; nsops as usize * 6];
    if let Err(e) = cx.read_user(sops, &mut raw) {
        return ret(Err(e));
    }
    let ops: Vec<SemOp> = raw.chunks_exact(6).map(SemOp::parse).collect();
    let pid = cx.t.pid;
    if cx.k.ipc.take_removed(pid, b's', id) {
        return ret(Err(Errno::EIDRM));
    }
    let c = cx.t.cred.clone();
    let tgid = cx.t.tgid;
    let now = now_s(cx);
    let ipc = &mut cx.k.ipc;
    let (p, set) = match ipc.sem.get_mut(id) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if ops.iter().any(|o| usize::from(o.num) >= set.sems.len()) {
        return ret(Err(Errno::EFBIG));
    }
    let alter = ops.iter().any(|o| o.op != 0);
    if !p.allows(&c, if alter { MAY_WRITE } else { MAY_READ }) {
        return ret(Err(Errno::EACCES));
    }
    let undo = if ops.iter().any(|o| o.flg as u16 & sem::SEM_UNDO != 0) { Some(ipc.undo.entry(tgid, id)) } else { None };
    match set.apply(&ops, tgid, now, undo) {
        Ok(()) => ret(Ok(0)),
        Err(SemBlock::Err(e)) => ret(Err(e)),
        Err(SemBlock::Wait(num, zero)) => {
            let wq = set.wq.clone();
            let dl = deadline(cx, timeout);
            if timeout == Some(0) || dl.is_some_and(|d| d <= cx.hal.now_ns()) {
                return ret(Err(Errno::EAGAIN));
            }
            cx.k.ipc.waiters.insert(pid, Waiter { id, kind: b's', sem: Some((num, zero)), removed: false });
            let mut ws = WaitSet::default();
            ws.add(&wq);
            block_on(cx, ws, dl)
        }
    }
}

/// `semop(id, sops, nsops)`.
pub fn semop<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_semop(cx, a[0] as i32, a[1], a[2], None)
}

/// `semtimedop(id, sops, nsops, timeout)`: `EAGAIN` when the time passes.
pub fn semtimedop<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let timeout = if a[3] == 0 {
        None
    } else {
        match cx.read_array::<16>(a[3]).and_then(|b| crate::time::parse_timespec(&b)) {
            Ok(t) => Some(t),
            Err(e) => return ret(Err(e)),
        }
    };
    do_semop(cx, a[0] as i32, a[1], a[2], timeout)
}

/// Tasks blocked on semaphore `num` of set `id`, waiting for zero or not.
fn sem_waiters<H: Hal>(cx: &SysCtx<'_, H>, id: i32, num: u16, zero: bool) -> usize {
    cx.k
        .ipc
        .waiters
        .iter()
        .filter(|(pid, w)| {
            w.kind == b's' && w.id == id && !w.removed && w.sem == Some((num, zero))
                && cx.k.procs.get(**pid).is_some_and(|t| matches!(t.state, crate::task::TaskState::Blocked(_)))
        })
        .count()
}

/// `semctl(id, semnum, cmd, arg)`.
pub fn semctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (id, num, cmd, arg) = (a[0] as i32, a[1] as i32, a[2] as i32, a[3]);
    if cmd < 0 || id < 0 {
        return Err(Errno::EINVAL);
    }
    let c = cx.t.cred.clone();
    let now = now_s(cx);
    match cmd {
        IPC_INFO | sem::SEM_INFO => {
            let usage = if cmd == sem::SEM_INFO {
                let n: u64 = cx.k.ipc.sem.iter().map(|(_, s)| s.sems.len() as u64).sum();
                Some((cx.k.ipc.sem.len() as u32, n as u32))
            } else {
                None
            };
            cx.write_user(arg, &sem::info_bytes(usage))?;
            Ok(cx.k.ipc.sem.max_index() as usize)
        }
        IPC_STAT | sem::SEM_STAT | sem::SEM_STAT_ANY => {
            let (r, ds) = ipc::stat(&cx.k.ipc.sem, cmd == IPC_STAT, cmd == sem::SEM_STAT_ANY, id, &c)?;
            cx.write_user(arg, &ds)?;
            Ok(r)
        }
        IPC_SET => {
            let mut b = [0u8; PERM_SIZE];
            cx.read_user(arg, &mut b)?;
            let (p, s) = cx.k.ipc.sem.owned_mut(id, &c)?;
            p.set_from(&b);
            s.ctime = now;
            Ok(0)
        }
        IPC_RMID => {
            cx.k.ipc.sem.owned_mut(id, &c)?;
            let set = cx.k.ipc.sem.remove(id)?;
            cx.k.ipc.undo.forget_set(id);
            cx.k.ipc.removed(b's', id);
            set.wq.notify();
            Ok(0)
        }
        sem::GETVAL | sem::GETPID | sem::GETNCNT | sem::GETZCNT => {
            let (p, s) = cx.k.ipc.sem.get(id)?;
            if num < 0 || num as usize >= s.sems.len() {
                return Err(Errno::EINVAL);
            }
            if !p.allows(&c, MAY_READ) {
                return Err(Errno::EACCES);
            }
            let one = s.sems[num as usize];
            Ok(match cmd {
                sem::GETVAL => one.val as usize,
                sem::GETPID => one.pid as usize,
                sem::GETNCNT => sem_waiters(cx, id, num as u16, false),
                _ => sem_waiters(cx, id, num as u16, true),
            })
        }
        sem::GETALL => {
            let (p, s) = cx.k.ipc.sem.get(id)?;
            if !p.allows(&c, MAY_READ) {
                return Err(Errno::EACCES);
            }
            let b: Vec<u8> = s.sems.iter().flat_map(|x| (x.val as u16).to_le_bytes()).collect();
            cx.write_user(arg, &b)?;
            Ok(0)
        }
        sem::SETVAL => {
            let val = arg as u32 as i32;
            let (p, s) = cx.k.ipc.sem.get_mut(id)?;
            if num < 0 || num as usize >= s.sems.len() {
                return Err(Errno::EINVAL);
            }
            if !p.allows(&c, MAY_WRITE) {
                return Err(Errno::EACCES);
            }
            if !(0..=sem::SEMVMX).contains(&val) {
                return Err(Errno::ERANGE);
            }
            s.sems[num as usize] = sem::Sem { val, pid: cx.t.tgid };
            s.ctime = now;
            s.wq.notify();
            cx.k.ipc.undo.forget_sem(id, Some(num as u16));
            Ok(0)
        }
        sem::SETALL => {
            let n = cx.k.ipc.sem.get(id)?.1.sems.len();
            let mut b = vec![0u8; n * 2];
            cx.read_user(arg, &mut b)?;
            let vals: Vec<i32> = b.chunks_exact(2).map(|x| i32::from(u16::from_le_bytes([x[0], x[1]]))).collect();
            let pid = cx.t.tgid;
            let (p, s) = cx.k.ipc.sem.get_mut(id)?;
            if !p.allows(&c, MAY_WRITE) {
                return Err(Errno::EACCES);
            }
            if vals.iter().any(|v| *v > sem::SEMVMX) {
                return Err(Errno::ERANGE);
            }
            for (x, v) in s.sems.iter_mut().zip(vals) {
                *x = sem::Sem { val: v, pid };
            }
            s.ctime = now;
            s.wq.notify();
            cx.k.ipc.undo.forget_sem(id, None);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

// --------------------------------------------------------- message queues

/// `msgget(key, flags)`.
pub fn msgget<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (key, flags) = (a[0] as i32, a[1] as u32);
    let c = cx.t.cred.clone();
    match cx.k.ipc.msg.lookup_key(key, flags, &c)? {
        Found::Existing(id) => Ok(id as usize),
        Found::Create => {
            let charge = ipc::charge(Some(cx.k.frames.budget()), 0)?;
            let q = MsgQueue::new(now_s(cx), charge);
            Ok(cx.k.ipc.msg.insert(key, flags, &c, q)? as usize)
        }
    }
}

/// `msgsnd(id, msgp, msgsz, flags)`.
pub fn msgsnd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (id, msgp, size, flags) = (a[0] as i32, a[1], a[2], a[3] as u32);
    if size > msg::MSGMAX as u64 || id < 0 {
        return ret(Err(Errno::EINVAL));
    }
    let mtype = match cx.read_u64(msgp) {
        Ok(t) => t as i64,
        Err(e) => return ret(Err(e)),
    };
    if mtype < 1 {
        return ret(Err(Errno::EINVAL));
    }
    let mut text = vec![0u8; size as usize];
    if let Err(e) = cx.read_user(msgp.wrapping_add(8), &mut text) {
        return ret(Err(e));
    }
    let pid = cx.t.pid;
    if cx.k.ipc.take_removed(pid, b'm', id) {
        return ret(Err(Errno::EIDRM));
    }
    let c = cx.t.cred.clone();
    let (tgid, now) = (cx.t.tgid, now_s(cx));
    let budget = cx.k.frames.budget().clone();
    let (p, q) = match cx.k.ipc.msg.get_mut(id) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if !p.allows(&c, MAY_WRITE) {
        return ret(Err(Errno::EACCES));
    }
    if q.fits(text.len()) {
        return ret(q.push(mtype, text, Some(&budget), tgid, now).map(|_| 0));
    }
    if flags & IPC_NOWAIT != 0 {
        return ret(Err(Errno::EAGAIN));
    }
    let wq = q.wq.clone();
    cx.k.ipc.waiters.insert(pid, Waiter { id, kind: b'm', sem: None, removed: false });
    let mut ws = WaitSet::default();
    ws.add(&wq);
    block_on(cx, ws, None)
}

/// `msgrcv(id, msgp, msgsz, msgtyp, flags)`.
pub fn msgrcv<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (id, msgp, size, msgtyp, flags) = (a[0] as i32, a[1], a[2] as i64, a[3] as i64, a[4] as u32);
    if id < 0 || size < 0 {
        return ret(Err(Errno::EINVAL));
    }
    let copy = flags & msg::MSG_COPY != 0;
    if copy && (flags & IPC_NOWAIT == 0 || flags & msg::MSG_EXCEPT != 0) {
        return ret(Err(Errno::EINVAL));
    }
    let pid = cx.t.pid;
    if cx.k.ipc.take_removed(pid, b'm', id) {
        return ret(Err(Errno::EIDRM));
    }
    let c = cx.t.cred.clone();
    let (tgid, now) = (cx.t.tgid, now_s(cx));
    let (p, q) = match cx.k.ipc.msg.get(id) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if !p.allows(&c, MAY_READ) {
        return ret(Err(Errno::EACCES));
    }
    let found = if copy { usize::try_from(msgtyp).ok().filter(|&i| i < q.msgs.len()) } else { q.find(msgtyp, flags) };
    let Some(i) = found else {
        if flags & IPC_NOWAIT != 0 {
            return ret(Err(Errno::ENOMSG));
        }
        let wq = q.wq.clone();
        cx.k.ipc.waiters.insert(pid, Waiter { id, kind: b'm', sem: None, removed: false });
        let mut ws = WaitSet::default();
        ws.add(&wq);
        return block_on(cx, ws, None);
    };
    let m = &q.msgs[i];
    if m.text.len() as i64 > size && flags & msg::MSG_NOERROR == 0 {
        return ret(Err(Errno::E2BIG));
    }
    let n = (m.text.len() as i64).min(size) as usize;
    let mut out = Vec::with_capacity(8 + n);
    out.extend_from_slice(&m.mtype.to_le_bytes());
    out.extend_from_slice(&m.text[..n]);
    if let Err(e) = cx.write_user(msgp, &out) {
        return ret(Err(e));
    }
    if !copy {
        if let Ok((_, q)) = cx.k.ipc.msg.get_mut(id) {
            q.take(i, tgid, now);
        }
    }
    ret(Ok(n))
}

/// `msgctl(id, cmd, buf)`.
pub fn msgctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (id, cmd, buf) = (a[0] as i32, a[1] as i32, a[2]);
    if cmd < 0 || id < 0 {
        return Err(Errno::EINVAL);
    }
    let c = cx.t.cred.clone();
    match cmd {
        IPC_INFO | msg::MSG_INFO => {
            let usage = if cmd == msg::MSG_INFO {
                let (n, b) = cx.k.ipc.msg.iter().fold((0u64, 0u64), |(n, b), (_, q)| (n + q.msgs.len() as u64, b + q.cbytes));
                Some((cx.k.ipc.msg.len() as u32, n as u32, b as u32))
            } else {
                None
            };
            cx.write_user(buf, &msg::info_bytes(usage))?;
            Ok(cx.k.ipc.msg.max_index() as usize)
        }
        IPC_STAT | msg::MSG_STAT | msg::MSG_STAT_ANY => {
            let (r, ds) = ipc::stat(&cx.k.ipc.msg, cmd == IPC_STAT, cmd == msg::MSG_STAT_ANY, id, &c)?;
            cx.write_user(buf, &ds)?;
            Ok(r)
        }
        IPC_SET => {
            let mut b = [0u8; msg::MSQID_DS_SIZE];
            cx.read_user(buf, &mut b)?;
            let qbytes = u64::from_le_bytes([b[88], b[89], b[90], b[91], b[92], b[93], b[94], b[95]]);
            let now = now_s(cx);
            let (p, q) = cx.k.ipc.msg.owned_mut(id, &c)?;
            if qbytes > msg::MSGMNB && qbytes > q.qbytes && c.euid != 0 {
                return Err(Errno::EPERM);
            }
            p.set_from(&b[..PERM_SIZE]);
            q.qbytes = qbytes;
            q.ctime = now;
            q.wq.notify();
            Ok(0)
        }
        IPC_RMID => {
            cx.k.ipc.msg.owned_mut(id, &c)?;
            let q = cx.k.ipc.msg.remove(id)?;
            cx.k.ipc.removed(b'm', id);
            q.wq.notify();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
