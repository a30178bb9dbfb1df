//! The deadlines of blocked tasks, earliest first, so that the run loop
//! finds the next one and the expired ones without scanning every task (it
//! asks before every stint: with 500 sleeping processes a scan of the task
//! table doubled the cost of a system call).
//!
//! Each task has at most one entry (a new block replaces its old one), and
//! an entry may outlive the block that made it (the task was woken early):
//! the caller checks an entry against the task before acting on it, and
//! drops the stale ones it meets.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::task::Pid;

/// Deadlines (ns, monotonic) by time and by task.
#[derive(Default)]
pub struct Deadlines {
    by_time: BTreeSet<(u64, Pid)>,
    by_task: BTreeMap<Pid, u64>,
}

impl Deadlines {
    /// `pid` blocked until `deadline` (`None`: without one).
    pub fn set(&mut self, pid: Pid, deadline: Option<u64>) {
        self.forget(pid);
        if let Some(d) = deadline {
            self.by_time.insert((d, pid));
            self.by_task.insert(pid, d);
        }
    }

    /// `pid` is gone (or no longer waits for its deadline).
    pub fn forget(&mut self, pid: Pid) {
        if let Some(old) = self.by_task.remove(&pid) {
            self.by_time.remove(&(old, pid));
        }
    }

    /// The entry of `pid`.
    pub fn of(&self, pid: Pid) -> Option<u64> {
        self.by_task.get(&pid).copied()
    }

    /// The earliest entry.
    pub fn first(&self) -> Option<(u64, Pid)> {
        self.by_time.first().copied()
    }

    /// The entries due at `now`, earliest first.
    pub fn due(&self, now: u64) -> Vec<(u64, Pid)> {
        self.by_time.range(..=(now, Pid::MAX)).copied().collect()
    }

    /// How many tasks have an entry.
    pub fn len(&self) -> usize {
        self.by_task.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.by_task.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_task_earliest_first() {
        let mut d = Deadlines::default();
        d.set(3, Some(30));
        d.set(1, Some(50));
        d.set(2, None);
        assert_eq!(d.first(), Some((30, 3)));
        d.set(3, Some(70));
        assert_eq!(d.len(), 2);
        assert_eq!(d.first(), Some((50, 1)));
        assert_eq!(d.due(49), []);
        assert_eq!(d.due(70), [(50, 1), (70, 3)]);
        d.forget(1);
        d.forget(3);
        assert!(d.is_empty() && d.first().is_none());
    }
}
