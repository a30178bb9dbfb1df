//! One memory budget per guest: the guest's pages and the kernel's own
//! objects come out of the same `--mem`.
//!
//! The physical-memory region has a fixed number of frames. The frame
//! allocator ([`crate::mm::Frames`]) takes one page of the budget per frame
//! it hands out; every kernel object a guest can multiply (socket buffers
//! and listen queues, pipe buffers, epoll items, timers, queued signals,
//! futex waiters, tty buffers, netlink queues...) takes its bytes through a
//! [`Charge`] *before* it is allocated, because Rust's `alloc` aborts when
//! the host refuses. Kernel bytes are counted in whole pages of the same
//! pool, so those frames are never handed to the guest: the guest's
//! `MemFree` stays truthful, and the host memory of the kernel (its heap)
//! plus the guest's frames stays within `--mem`.
//!
//! When a charge does not fit, registered [`Shrinker`]s (caches) are asked
//! to give memory back first; then the charge fails and the caller returns
//! the errno Linux gives for that object (`ENOMEM`, `ENOBUFS`, `EAGAIN`...).
//! A small reserve is kept for the guest's own pages, so a guest that fills
//! the kernel with objects cannot stop its other processes from faulting in
//! a page (their stacks, the heartbeat of a monitor).
//!
//! Single-threaded, like the rest of kernel-core: counters are `Cell`s, and
//! the budget is shared as an [`Rc`].

use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use crate::Errno;

/// Size of a page of the budget.
pub const PAGE: u64 = hal::PAGE_SIZE as u64;

/// What a charge is for (per-kind totals, for diagnostics and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(usize)]
pub enum Kind {
    /// Socket objects and their buffers (TCP, UDP, raw, ping, AF_UNIX).
    Socket,
    /// TCP listen queues (pending connections not yet accepted).
    ListenQueue,
    /// Pipe and FIFO buffers.
    Pipe,
    /// epoll instances and their items.
    Epoll,
    /// Timers (timerfd, POSIX timers, itimers).
    Timer,
    /// Queued signals (`siginfo` records beyond the standard set).
    Signal,
    /// Futex waiters.
    Futex,
    /// Terminal buffers.
    Tty,
    /// Tasks (threads, processes, zombies) and the host context an
    /// address space costs the backend.
    Task,
    /// Netlink sockets' queued replies.
    Netlink,
    /// Memory maps: VMAs and the software page table's entries.
    PageTables,
    /// Other kernel objects.
    #[default]
    Other,
    /// Disk metadata blocks (the buffer caches of block devices).
    Buffers,
    /// Inodes and names the guest creates (files of memory file systems,
    /// pipes, sockets, anonymous files) and extra hard links.
    Inodes,
}

/// How many [`Kind`]s there are.
pub const KINDS: usize = 14;

/// A cache that can give memory back when the budget runs out.
pub trait Shrinker {
    /// Free up to `pages` pages of the budget; returns how many were freed.
    fn shrink(&self, pages: u64) -> u64;
}

/// The shared budget of one guest.
pub struct Budget {
    /// Pages in the pool (the frames of the physical-memory region).
    total: u64,
    /// Pages only guest frames may take (see the module docs).
    guest_reserve: u64,
    /// Frames handed to the guest.
    guest: Cell<u64>,
    /// Bytes charged by kernel objects.
    kernel: Cell<u64>,
    /// The largest `kernel` seen.
    peak_kernel: Cell<u64>,
    by_kind: [Cell<u64>; KINDS],
    /// Charges and frame allocations refused.
    refusals: Cell<u64>,
    shrinkers: RefCell<Vec<Weak<dyn Shrinker>>>,
}

/// The budget, shared by the frame allocator and every charged object.
pub type BudgetRef = Rc<Budget>;

fn pages_of(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE)
}

impl Budget {
    /// A budget of `total` pages.
    pub fn new(total: u64) -> BudgetRef {
        // Keep 1/32 of memory (at least 64 pages, at most 16 MiB) for guest pages.
        let guest_reserve = (total / 32).clamp(64.min(total / 2), 4096);
        Rc::new(Budget {
            total,
            guest_reserve,
            guest: Cell::new(0),
            kernel: Cell::new(0),
            peak_kernel: Cell::new(0),
            by_kind: Default::default(),
            refusals: Cell::new(0),
            shrinkers: RefCell::new(Vec::new()),
        })
    }

    /// A budget too large to ever refuse (tests, tools that need no bound).
    pub fn unbounded() -> BudgetRef {
        Budget::new(u64::MAX / (2 * PAGE))
    }

    /// Pages in the pool.
    pub fn total_pages(&self) -> u64 {
        self.total
    }

    /// Frames the guest holds.
    pub fn guest_pages(&self) -> u64 {
        self.guest.get()
    }

    /// Bytes the kernel's objects hold now (what `/proc/meminfo` reports as
    /// the kernel's share: `Slab` and the like).
    pub fn kernel_bytes(&self) -> u64 {
        self.kernel.get()
    }

    /// Pages of the pool the kernel's objects hold (never handed to the guest).
    pub fn kernel_pages(&self) -> u64 {
        pages_of(self.kernel.get())
    }

    /// The most bytes the kernel's objects ever held.
    pub fn peak_kernel_bytes(&self) -> u64 {
        self.peak_kernel.get()
    }

    /// Bytes charged for one kind of object.
    pub fn kind_bytes(&self, kind: Kind) -> u64 {
        self.by_kind[kind as usize].get()
    }

    /// How many charges and frame allocations were refused.
    pub fn refusals(&self) -> u64 {
        self.refusals.get()
    }

    /// Pages neither the guest nor the kernel holds.
    pub fn free_pages(&self) -> u64 {
        self.total.saturating_sub(self.guest.get() + self.kernel_pages())
    }

    /// Register a cache to be shrunk before a charge is refused.
    pub fn add_shrinker(&self, s: Weak<dyn Shrinker>) {
        self.shrinkers.borrow_mut().push(s);
    }

    /// Ask the caches for `pages` pages; true if any came back.
    fn shrink(&self, pages: u64) -> bool {
        let list: Vec<Weak<dyn Shrinker>> = {
            let mut l = self.shrinkers.borrow_mut();
            l.retain(|w| w.strong_count() > 0);
            l.clone()
        };
        let mut got = 0;
        for s in list.iter().filter_map(Weak::upgrade) {
            if got >= pages {
                break;
            }
            got += s.shrink(pages - got);
        }
        got > 0
    }

    fn kernel_fits(&self, bytes: u64) -> bool {
        let after = pages_of(self.kernel.get().saturating_add(bytes));
        self.guest.get().saturating_add(after).saturating_add(self.guest_reserve) <= self.total
    }

    /// Take `bytes` for a kernel object of `kind` (without an RAII guard;
    /// pair with [`Budget::uncharge`]). Fails with `ENOMEM`.
    pub fn charge(&self, kind: Kind, bytes: usize) -> Result<(), Errno> {
        let b = bytes as u64;
        if !self.kernel_fits(b) && !(self.shrink(pages_of(b)) && self.kernel_fits(b)) {
            self.refusals.set(self.refusals.get() + 1);
            return Err(Errno::ENOMEM);
        }
        let k = self.kernel.get() + b;
        self.kernel.set(k);
        self.peak_kernel.set(self.peak_kernel.get().max(k));
        let c = &self.by_kind[kind as usize];
        c.set(c.get() + b);
        Ok(())
    }

    /// Give back what [`Budget::charge`] took.
    pub fn uncharge(&self, kind: Kind, bytes: usize) {
        let b = bytes as u64;
        self.kernel.set(self.kernel.get().saturating_sub(b));
        let c = &self.by_kind[kind as usize];
        c.set(c.get().saturating_sub(b));
    }

    /// A frame for the guest: true if the pool has a page for it (the frame
    /// allocator asks before it hands one out).
    pub fn take_guest_page(&self) -> bool {
        let fits = |s: &Budget| s.guest.get() + s.kernel_pages() < s.total;
        if !fits(self) && !(self.shrink(1) && fits(self)) {
            self.refusals.set(self.refusals.get() + 1);
            return false;
        }
        self.guest.set(self.guest.get() + 1);
        true
    }

    /// A guest frame was freed.
    pub fn put_guest_page(&self) {
        self.guest.set(self.guest.get().saturating_sub(1));
    }
}

/// Bytes charged to a budget, given back when dropped.
///
/// A `Charge` without a budget (see [`Charge::none`]) accounts nothing:
/// for objects made where no guest's budget applies (unit tests).
#[derive(Default)]
pub struct Charge {
    budget: Option<BudgetRef>,
    kind: Kind,
    bytes: usize,
}

impl Charge {
    /// Charge `bytes` for `kind` to `budget`.
    pub fn new(budget: &BudgetRef, kind: Kind, bytes: usize) -> Result<Charge, Errno> {
        budget.charge(kind, bytes)?;
        Ok(Charge { budget: Some(budget.clone()), kind, bytes })
    }

    /// An empty charge against `budget` (grown later with [`Charge::resize`]).
    pub fn empty(budget: Option<&BudgetRef>, kind: Kind) -> Charge {
        Charge { budget: budget.cloned(), kind, bytes: 0 }
    }

    /// A charge that accounts nothing.
    pub fn none(kind: Kind) -> Charge {
        Charge { budget: None, kind, bytes: 0 }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Make the charge `bytes`: growing may fail (`ENOMEM`), shrinking not.
    pub fn resize(&mut self, bytes: usize) -> Result<(), Errno> {
        if let Some(b) = &self.budget {
            if bytes > self.bytes {
                b.charge(self.kind, bytes - self.bytes)?;
            } else {
                b.uncharge(self.kind, self.bytes - bytes);
            }
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Grow by `bytes`.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Errno> {
        self.resize(self.bytes.saturating_add(bytes))
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.uncharge(self.kind, self.bytes);
        }
    }
}

impl core::fmt::Debug for Charge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Charge({:?}, {} bytes)", self.kind, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_guest_share_one_pool() {
        let b = Budget::new(256);
        let reserve = b.guest_reserve;
        // The kernel may take everything but the guest reserve.
        let c = Charge::new(&b, Kind::Pipe, ((256 - reserve) * PAGE) as usize).unwrap();
        assert!(Charge::new(&b, Kind::Pipe, 1).is_err());
        assert_eq!(b.free_pages(), reserve);
        // The guest still gets its reserve, then nothing.
        for _ in 0..reserve {
            assert!(b.take_guest_page());
        }
        assert!(!b.take_guest_page());
        drop(c);
        assert_eq!(b.kernel_bytes(), 0);
        assert!(b.take_guest_page());
        assert_eq!(b.refusals(), 2);
    }

    #[test]
    fn resize_charges_growth_only() {
        let b = Budget::new(100);
        let mut c = Charge::empty(Some(&b), Kind::Socket);
        c.resize(10_000).unwrap();
        assert_eq!(b.kernel_bytes(), 10_000);
        assert_eq!(b.kernel_pages(), 3);
        c.resize(100).unwrap();
        assert_eq!(b.kind_bytes(Kind::Socket), 100);
        assert!(c.resize(usize::MAX / 2).is_err());
        assert_eq!(c.bytes(), 100);
        drop(c);
        assert_eq!(b.kernel_bytes(), 0);
        assert_eq!(b.peak_kernel_bytes(), 10_000);
    }

    struct Cache(Cell<u64>, BudgetRef);
    impl Shrinker for Cache {
        fn shrink(&self, pages: u64) -> u64 {
            let n = pages.min(self.0.get());
            self.0.set(self.0.get() - n);
            self.1.uncharge(Kind::Other, (n * PAGE) as usize);
            n
        }
    }

    #[test]
    fn caches_shrink_before_a_refusal() {
        let b = Budget::new(128);
        let usable = 128 - b.guest_reserve;
        b.charge(Kind::Other, (usable * PAGE) as usize).unwrap();
        let cache = Rc::new(Cache(Cell::new(usable), b.clone()));
        let weak: Weak<dyn Shrinker> = Rc::downgrade(&(cache.clone() as Rc<dyn Shrinker>));
        b.add_shrinker(weak);
        let c = Charge::new(&b, Kind::Pipe, 3 * PAGE as usize).unwrap();
        assert_eq!(cache.0.get(), usable - 3);
        assert_eq!(b.refusals(), 0);
        drop(c);
    }
}
