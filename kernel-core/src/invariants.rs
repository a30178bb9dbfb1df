//! The kernel's own invariant checker, for tests and fuzzing: what must hold
//! between any two steps of the main loop, whatever the guests did.
//!
//! [`check`] verifies
//! - frames: every frame's reference count equals the references held by the
//!   live memory maps (page-table entries) and the page caches (their pages,
//!   and the frames of dropped caches not yet given back), every other frame
//!   is free, and every map is internally consistent
//!   ([`crate::mm::check_refcounts_with`]);
//! - ownership of shared state: each memory map / fd table is held by
//!   exactly one task of the tasks that use it, zombies hold none;
//! - fd tables: tasks not holding their table have no fds, and a pipe never
//!   counts fewer open ends than the fd tables reach;
//! - the scheduler: the run queue has no duplicates and no zombies, every
//!   runnable task is queued or current (no lost wake-up), every task waiting
//!   on a wait set has one;
//! - the process tree: every task's parent exists (dead parents' children
//!   were reparented to init or a subreaper);
//! - timers: every armed clock timer's deadline is queued, nothing else is
//!   ([`crate::time::timers::Timers::check`]);
//! - System V IPC: keys point to live objects holding them, within limits.
//!
//! The loop runs it before every step when booted with
//! [`crate::kernel::boot_checked`]; the first violation is logged as
//! `kernel: invariant violated: ...`.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hal::AddressSpace;

use crate::fs::pipe::Pipe;
use crate::fs::Kind;
use crate::kernel::Kernel;
use crate::mm::{check_refcounts_with, MemoryMap};
use crate::task::{Pid, TaskState, WaitOn};

/// Check every invariant of `k` (all tasks in the table, none being handled).
pub fn check<S: AddressSpace>(k: &Kernel<S>) -> Result<(), String> {
    check_tasks(k)?;
    check_scheduler(k)?;
    k.clock.timers.check().map_err(|e| format!("timers: {e}"))?;
    check_fds(k)?;
    k.ipc.check().map_err(|e| format!("ipc: {e}"))?;
    let maps: Vec<&MemoryMap<S>> = k.procs.iter().filter_map(|t| t.mm.as_ref()).collect();
    check_refcounts_with(&maps, &[&k.fs.caches], &k.frames).map_err(|e| format!("frames: {e}"))
}

/// Ownership of maps and fd tables, zombies, the process tree.
fn check_tasks<S: AddressSpace>(k: &Kernel<S>) -> Result<(), String> {
    // id -> (live users, holders)
    let mut mms: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    let mut fdts: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for (pid, t) in k.procs.entries() {
        if pid != t.pid {
            return Err(format!("task {} filed under pid {pid}", t.pid));
        }
        if t.is_zombie() {
            if t.mm.is_some() {
                return Err(format!("zombie {pid} holds a memory map"));
            }
            if t.fds.fds().next().is_some() {
                return Err(format!("zombie {pid} holds open fds"));
            }
        } else {
            mms.entry(t.mm_id).or_default().0 += 1;
            fdts.entry(t.files_id).or_default().0 += 1;
        }
        if t.mm.is_some() {
            mms.entry(t.mm_id).or_default().1 += 1;
        }
        if t.fds_held && !t.is_zombie() {
            fdts.entry(t.files_id).or_default().1 += 1;
        }
        if !t.fds_held && t.fds.fds().next().is_some() {
            return Err(format!("task {pid} has fds in a table it does not hold"));
        }
        if pid != 1 {
            match k.procs.get(t.ppid) {
                None => return Err(format!("task {pid}: parent {} does not exist", t.ppid)),
                Some(p)
                    if p.is_zombie()
                        && t.tgid != p.tgid
                        && !k.procs.iter().any(|o| o.tgid == p.tgid && !o.is_zombie()) =>
                {
                    return Err(format!("task {pid}: parent {} is dead and it was not reparented", t.ppid));
                }
                _ => {}
            }
        }
    }
    for (id, (users, holders)) in mms {
        if users > 0 && holders != 1 {
            return Err(format!("memory map {id}: {users} live users, {holders} holders"));
        }
        if users == 0 && holders != 0 {
            return Err(format!("memory map {id}: held with no live user"));
        }
    }
    for (id, (users, holders)) in fdts {
        if users > 0 && holders != 1 {
            return Err(format!("fd table {id}: {users} live users, {holders} holders"));
        }
    }
    Ok(())
}

/// The run queue against the task states.
fn check_scheduler<S: AddressSpace>(k: &Kernel<S>) -> Result<(), String> {
    let queued: Vec<Pid> = k.procs.queued().collect();
    let set: BTreeSet<Pid> = queued.iter().copied().collect();
    if set.len() != queued.len() {
        return Err(format!("run queue has duplicates: {queued:?}"));
    }
    for &p in &queued {
        if k.procs.get(p).is_some_and(|t| t.is_zombie()) {
            return Err(format!("zombie {p} in the run queue"));
        }
    }
    for (pid, t) in k.procs.entries() {
        let can_run = t.state == TaskState::Runnable && (!t.stopped || t.group_exit.is_some());
        if can_run && !set.contains(&pid) && k.current != Some(pid) {
            return Err(format!("task {pid} is runnable but neither queued nor current (lost wake-up)"));
        }
        if let TaskState::Blocked(b) = t.state {
            if b.on == WaitOn::Pipe && k.procs.wait_of(pid).is_none() {
                return Err(format!("task {pid} waits on a wait set it does not have"));
            }
            // Its deadline is indexed no later than it falls (else it sleeps past it).
            let wake = k.procs.wait_of(pid).and_then(|w| w.wake_at);
            if let Some(d) = [b.deadline, wake].into_iter().flatten().min() {
                if !k.deadline_of(pid).is_some_and(|e| e <= d) {
                    return Err(format!("task {pid} blocks until {d} but the deadline index has {:?}", k.deadline_of(pid)));
                }
            }
        }
    }
    for pid in k.procs.waiting() {
        if !k.procs.get(pid).is_some_and(|t| matches!(t.state, TaskState::Blocked(_))) {
            return Err(format!("wait set of {pid}, which is not blocked"));
        }
    }
    Ok(())
}

/// Pipes never count fewer open ends than the fd tables reach.
fn check_fds<S: AddressSpace>(k: &Kernel<S>) -> Result<(), String> {
    // pipe (by address) -> (readers, writers) reached, each description once.
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut ends: BTreeMap<usize, (u32, u32, u32, u32)> = BTreeMap::new();
    for t in k.procs.iter() {
        for fd in t.fds.fds() {
            let Ok(f) = t.fds.file(fd as u64) else { continue };
            if !seen.insert(alloc::rc::Rc::as_ptr(&f) as *const u8 as usize) {
                continue;
            }
            let Kind::Special(s) = &f.inode.kind else { continue };
            let Some(p) = s.as_any().downcast_ref::<Pipe>() else { continue };
            let e = ends.entry(p as *const Pipe as usize).or_insert((0, 0, p.readers(), p.writers()));
            e.0 += u32::from(f.readable());
            e.1 += u32::from(f.writable());
        }
    }
    for (_, (r, w, pr, pw)) in ends {
        if pr < r || pw < w {
            return Err(format!("pipe counts {pr} readers, {pw} writers but fd tables reach {r} and {w}"));
        }
    }
    Ok(())
}
