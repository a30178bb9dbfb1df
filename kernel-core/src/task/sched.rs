//! The round-robin run queue.

use alloc::collections::VecDeque;

use super::Pid;

/// Preemption timeslice.
pub const TIMESLICE_NS: u64 = 10_000_000;

/// Runnable tasks in round-robin order (the running task is not in it).
#[derive(Default)]
pub struct RunQueue {
    q: VecDeque<Pid>,
}

impl RunQueue {
    /// Append at the tail (if not already queued).
    pub fn push(&mut self, pid: Pid) {
        if !self.q.contains(&pid) {
            self.q.push_back(pid);
        }
    }
    /// Move a queued task to the head (a woken task that preempts).
    pub fn to_front(&mut self, pid: Pid) {
        if let Some(i) = self.q.iter().position(|p| *p == pid) {
            if let Some(p) = self.q.remove(i) {
                self.q.push_front(p);
            }
        }
    }
    /// Take the head.
    pub fn pop(&mut self) -> Option<Pid> {
        self.q.pop_front()
    }
    /// Drop a task (it died or blocked).
    pub fn remove(&mut self, pid: Pid) {
        self.q.retain(|p| *p != pid);
    }
    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.q.len()
    }
    /// Nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    /// Forget everything.
    pub fn clear(&mut self) {
        self.q.clear();
    }
    /// The queued pids, head first (for invariant checks).
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.q.iter().copied()
    }
}
