//! The process table: every task, the run queue, the wait sets tasks are
//! blocked on, pid allocation and the ids of shared resources.
//!
//! It owns this state with private fields; the kernel loop and the system
//! call handlers go through the methods below. The task the loop is
//! handling is taken out of the table ([`ProcessTable::take`]) and put back
//! ([`ProcessTable::put`]) after its trap, so "every task" means every task
//! but that one: queries that must see it take it as `cur`.
//!
//! Invariants it keeps by construction: a task is keyed by its own pid; a
//! pid is never handed out while a task (zombies included) holds it.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hal::AddressSpace;

use super::{ExitStatus, Pid, RunQueue, Task, TaskState, TaskTable};
use crate::errno::encode;
use crate::fs::FdTable;
use crate::wait::WaitSet;
use crate::SysResult;

/// The largest pid handed out (Linux's `pid_max` on 64-bit); then pids wrap to 2.
const PID_MAX: Pid = 4_194_303;

/// Tasks, the run queue, wait sets and id allocation (see the module doc).
pub struct ProcessTable<S: AddressSpace> {
    /// Every task, zombies included (minus the one being handled).
    tasks: TaskTable<S>,
    /// Runnable tasks waiting for the CPU.
    runq: RunQueue,
    /// Tasks blocked on wait queues (pipes, ttys, eventfd, timerfd, epoll,
    /// poll/select): what they wait on (see [`crate::wait`]).
    waits: BTreeMap<Pid, WaitSet>,
    /// The next pid to try.
    next_pid: Pid,
    /// Last id handed out for shared memory maps / fd tables / handler tables.
    next_share_id: u64,
    /// Counter ordering blocked tasks (FIFO futex wake-ups).
    block_seq: u64,
}

impl<S: AddressSpace> Default for ProcessTable<S> {
    fn default() -> Self {
        ProcessTable { tasks: BTreeMap::new(), runq: RunQueue::default(), waits: BTreeMap::new(), next_pid: 2, next_share_id: 1, block_seq: 0 }
    }
}

impl<S: AddressSpace> ProcessTable<S> {
    // ---- Tasks -------------------------------------------------------

    /// The task `pid`, if it is in the table.
    #[inline]
    pub fn get(&self, pid: Pid) -> Option<&Task<S>> {
        self.tasks.get(&pid).map(|t| &**t)
    }
    /// The task `pid`, mutably.
    #[inline]
    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Task<S>> {
        self.tasks.get_mut(&pid).map(|t| &mut **t)
    }
    /// Is `pid` in the table (zombies included)?
    #[inline]
    pub fn contains(&self, pid: Pid) -> bool {
        self.tasks.contains_key(&pid)
    }
    /// How many tasks are in the table.
    #[inline]
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    /// Every task in the table, in pid order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = &Task<S>> + '_ {
        self.tasks.values().map(|t| &**t)
    }
    /// Every task in the table, mutably, in pid order.
    #[inline]
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Task<S>> + '_ {
        self.tasks.values_mut().map(|t| &mut **t)
    }
    /// Every (key, task) pair (the key is the task's pid; for invariant checks).
    pub fn entries(&self) -> impl Iterator<Item = (Pid, &Task<S>)> + '_ {
        self.tasks.iter().map(|(p, t)| (*p, &**t))
    }
    /// The pids in the table, in order.
    pub fn pids(&self) -> Vec<Pid> {
        self.tasks.keys().copied().collect()
    }
    /// Add a task (a new one, or the one [`ProcessTable::take`] took out).
    #[inline]
    pub fn put(&mut self, task: Box<Task<S>>) {
        self.tasks.insert(task.pid, task);
    }
    /// Take task `pid` out of the table (to run it, or to reap it).
    #[inline]
    pub fn take(&mut self, pid: Pid) -> Option<Box<Task<S>>> {
        self.tasks.remove(&pid)
    }
    /// Forget every task, queued run and wait (shutdown).
    pub fn clear(&mut self) {
        self.tasks.clear();
        self.runq.clear();
        self.waits.clear();
    }

    /// Every task of thread group `tgid` in the table (zombies included).
    pub fn group(&self, tgid: Pid) -> impl Iterator<Item = &Task<S>> + '_ {
        self.iter().filter(move |t| t.tgid == tgid)
    }
    /// Does thread group `tgid` have a live thread in the table other than `except`?
    pub fn group_has_live(&self, tgid: Pid, except: Pid) -> bool {
        self.iter().any(|t| t.tgid == tgid && t.pid != except && !t.is_zombie())
    }
    /// The live tasks of thread group `tgid` (`cur`, out of the table, included).
    pub fn group_pids(&self, cur: Option<&Task<S>>, tgid: Pid) -> Vec<Pid> {
        let mut v: Vec<Pid> = self.iter().filter(|t| t.tgid == tgid && !t.is_zombie()).map(|t| t.pid).collect();
        if let Some(c) = cur {
            if c.tgid == tgid && !c.is_zombie() {
                v.push(c.pid);
            }
        }
        v
    }
    /// `cur` if it is `pid`, else the table's entry (for code that handles
    /// the running task and others alike).
    #[inline]
    pub fn either<'a>(&'a mut self, cur: &'a mut Option<&mut Task<S>>, pid: Pid) -> Option<&'a mut Task<S>> {
        if cur.as_ref().is_some_and(|t| t.pid == pid) {
            return cur.as_deref_mut();
        }
        self.get_mut(pid)
    }

    // ---- Ids ---------------------------------------------------------

    /// A new pid: the next one not held by a task, wrapping at `pid_max`.
    pub fn alloc_pid(&mut self) -> Pid {
        loop {
            let p = self.next_pid;
            self.next_pid = if self.next_pid >= PID_MAX { 2 } else { self.next_pid + 1 };
            if !self.tasks.contains_key(&p) {
                return p;
            }
        }
    }
    /// A fresh id for a memory map, fd table or handler table.
    pub fn new_share_id(&mut self) -> u64 {
        self.next_share_id += 1;
        self.next_share_id
    }
    /// The next number in the order tasks block in (FIFO futex wake-ups).
    #[inline]
    pub fn next_block_seq(&mut self) -> u64 {
        self.block_seq += 1;
        self.block_seq
    }

    /// Add a new task and queue it to run (fork, clone).
    pub fn spawn(&mut self, task: Box<Task<S>>) {
        let pid = task.pid;
        self.put(task);
        self.runq.push(pid);
    }

    // ---- Run queue ---------------------------------------------------

    /// Queue `pid` to run (at the tail; no-op if already queued).
    #[inline]
    pub fn enqueue(&mut self, pid: Pid) {
        self.runq.push(pid);
    }
    /// Take `pid` off the run queue (it died, blocked or stopped).
    pub fn dequeue(&mut self, pid: Pid) {
        self.runq.remove(pid);
    }
    /// Move a queued `pid` to the head (a woken task that preempts).
    pub fn to_front(&mut self, pid: Pid) {
        self.runq.to_front(pid);
    }
    /// The next queued task that can run (runnable and not stopped, or
    /// stopped but dying); others met on the way leave the queue.
    #[inline]
    pub fn pop_runnable(&mut self) -> Option<Pid> {
        while let Some(p) = self.runq.pop() {
            if self.can_run(p) {
                return Some(p);
            }
        }
        None
    }
    /// Can task `pid` (in the table) run now?
    #[inline]
    pub fn can_run(&self, pid: Pid) -> bool {
        self.tasks.get(&pid).is_some_and(|t| t.state == TaskState::Runnable && (!t.stopped || t.group_exit.is_some()))
    }
    /// Is any task waiting for the CPU?
    #[inline]
    pub fn has_queued(&self) -> bool {
        !self.runq.is_empty()
    }
    /// The queued pids, head first (for invariant checks).
    pub fn queued(&self) -> impl Iterator<Item = Pid> + '_ {
        self.runq.pids()
    }

    // ---- Wait sets ---------------------------------------------------

    /// Task `pid` blocks on `ws` (until something in it changes).
    pub fn set_wait(&mut self, pid: Pid, ws: WaitSet) {
        self.waits.insert(pid, ws);
    }
    /// Task `pid` no longer waits on its wait set (woken, interrupted, dead).
    #[inline]
    pub fn take_wait(&mut self, pid: Pid) -> Option<WaitSet> {
        if self.waits.is_empty() {
            return None;
        }
        self.waits.remove(&pid)
    }
    /// The wait set task `pid` is blocked on, if any.
    pub fn wait_of(&self, pid: Pid) -> Option<&WaitSet> {
        self.waits.get(&pid)
    }
    /// The tasks blocked on a wait set.
    pub fn waiting(&self) -> impl Iterator<Item = Pid> + '_ {
        self.waits.keys().copied()
    }
    /// The tasks whose wait set is ready at `now` (changed, or its wake-up passed).
    pub fn ready_waiters(&self, now: u64) -> Vec<Pid> {
        if self.waits.is_empty() {
            return Vec::new();
        }
        self.waits.iter().filter(|(_, w)| w.ready(now)).map(|(pid, _)| *pid).collect()
    }

    // ---- Waking and killing --------------------------------------------

    /// Make blocked task `pid` runnable: it re-runs its call (`result`
    /// None, for a call that restarts; 0 otherwise) or finishes it with
    /// `result`. Its wait set is dropped either way. False if it was not
    /// blocked (or is not in the table).
    pub fn make_runnable(&mut self, pid: Pid, result: Option<SysResult>) -> bool {
        let wait = self.take_wait(pid);
        let Some(t) = self.tasks.get_mut(&pid) else { return false };
        let TaskState::Blocked(b) = t.state else { return false };
        t.state = TaskState::Runnable;
        match result {
            None if b.restart => {
                t.redo_syscall = true;
                // The re-run keeps the call's deadline (a poll/select timeout
                // lives in its wait set), never starting it afresh.
                t.restart_deadline = b.deadline.or(wait.and_then(|w| w.timeout));
            }
            None => t.ctx.regs.rax = 0,
            Some(r) => t.ctx.regs.rax = encode(r),
        }
        self.runq.push(pid);
        true
    }

    /// Kill every thread in `group` with `st`, lazily: each is marked
    /// (`group_exit`, first status wins), woken from any wait and queued,
    /// and the loop ends it when it picks it. `cur` (out of the table) is
    /// marked but not queued.
    pub fn group_kill(&mut self, cur: &mut Option<&mut Task<S>>, group: &[Pid], st: ExitStatus) {
        for &p in group {
            let is_cur = cur.as_ref().is_some_and(|c| c.pid == p);
            if let Some(t) = self.either(cur, p) {
                let first = t.group_exit.unwrap_or(st);
                mark_exiting(t, first);
                self.take_wait(p);
                if !is_cur {
                    self.runq.push(p);
                }
            }
        }
    }

    /// `exit_group`: the other live threads of `tgid` (all but `me`) exit
    /// with `st` when they next run.
    pub fn end_group(&mut self, tgid: Pid, me: Pid, st: ExitStatus) {
        let others: Vec<Pid> = self.iter().filter(|t| t.tgid == tgid && t.pid != me && !t.is_zombie()).map(|t| t.pid).collect();
        for p in others {
            if let Some(t) = self.tasks.get_mut(&p) {
                mark_exiting(t, st);
                self.take_wait(p);
                self.runq.push(p);
            }
        }
    }

    // ---- Threads sharing a memory map / fd table ---------------------

    /// Move the shared memory map and fd table to `t` (about to run) from
    /// whichever task of its group holds them.
    pub fn adopt_shared(&mut self, t: &mut Task<S>) {
        if t.is_zombie() {
            return;
        }
        if t.mm.is_none() {
            let id = t.mm_id;
            if let Some(h) = self.tasks.values_mut().find(|o| o.mm_id == id && o.mm.is_some()) {
                t.mm = h.mm.take();
            }
        }
        if !t.fds_held {
            let id = t.files_id;
            if let Some(h) = self.tasks.values_mut().find(|o| o.files_id == id && o.fds_held) {
                t.fds = core::mem::replace(&mut h.fds, FdTable::new());
                h.fds_held = false;
                t.fds_held = true;
            }
        }
    }

    /// Does any live task other than `t` use `t`'s memory map?
    pub fn mm_shared(&self, t: &Task<S>) -> bool {
        self.iter().any(|o| o.pid != t.pid && o.mm_id == t.mm_id && !o.is_zombie())
    }

    /// Hand `t`'s shared resources to another live user before `t` dies;
    /// returns (mm handed off, fds handed off).
    pub fn hand_off(&mut self, t: &mut Task<S>) -> (bool, bool) {
        let (pid, mid, fid) = (t.pid, t.mm_id, t.files_id);
        let mut mm_done = false;
        let mut fd_done = false;
        if t.mm.is_some() {
            if let Some(o) = self.tasks.values_mut().find(|o| o.pid != pid && o.mm_id == mid && !o.is_zombie()) {
                o.mm = t.mm.take();
                mm_done = true;
            }
        } else {
            mm_done = true;
        }
        if t.fds_held {
            if let Some(o) = self.tasks.values_mut().find(|o| o.pid != pid && o.files_id == fid && !o.is_zombie()) {
                o.fds = core::mem::replace(&mut t.fds, FdTable::new());
                o.fds_held = true;
                t.fds_held = false;
                fd_done = true;
            }
        } else {
            fd_done = true;
        }
        (mm_done, fd_done)
    }
}

/// Marks `t` to exit with `st` when it next runs: woken if blocked or
/// stopped, no system call to redo.
fn mark_exiting<S: AddressSpace>(t: &mut Task<S>, st: ExitStatus) {
    t.group_exit = Some(st);
    t.stopped = false;
    if let TaskState::Blocked(_) = t.state {
        t.state = TaskState::Runnable;
    }
    t.redo_syscall = false;
}
