//! Tests of the memory manager against the mock HAL.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use hal::mock::{MapOp, MockHal, MockSpace};
use hal::{Access, Hal, Prot, Trap, UserContext};

use super::*;
use crate::mm::page_cache;
use crate::Errno;

const RW: Prot = Prot::READ.union(Prot::WRITE);
const BASE: u64 = 0x1000_0000;

fn private_anon() -> MapFlags {
    MapFlags::PRIVATE | MapFlags::ANONYMOUS
}
fn fixed() -> MapFlags {
    MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED
}

struct Env {
    hal: MockHal,
    frames: Frames,
}

impl Env {
    fn new(mem: usize) -> Env {
        let hal = MockHal::new(mem, Box::new(|_, _, _| Trap::Syscall));
        let frames = Frames::new(hal.phys.size_bytes());
        Env { hal, frames }
    }
    fn map(&mut self) -> MemoryMap<MockSpace> {
        MemoryMap::new(self.hal.new_space().unwrap())
    }
    /// Apply the queued operations as `Hal::run` does.
    fn apply(&mut self, mm: &mut MemoryMap<MockSpace>) {
        let mut ctx = UserContext::default();
        let _ = self.hal.run(&mut ctx, mm.host());
    }
    /// A guest write: run, fault, handle, until it goes through.
    fn gwrite(&mut self, mm: &mut MemoryMap<MockSpace>, addr: u64, data: &[u8]) -> Result<(), FaultError> {
        for _ in 0..100 {
            self.apply(mm);
            match mm.host().user_write(&self.hal.phys, addr, data) {
                Ok(()) => return Ok(()),
                Err(Trap::PageFault { addr, access }) => mm.handle_fault(addr, access, &mut self.frames, &self.hal.phys)?,
                Err(t) => panic!("unexpected trap {t:?}"),
            }
        }
        panic!("fault loop at {addr:#x}");
    }
    fn gread(&mut self, mm: &mut MemoryMap<MockSpace>, addr: u64, len: usize) -> Result<Vec<u8>, FaultError> {
        let mut buf = vec![0u8; len];
        for _ in 0..100 {
            self.apply(mm);
            match mm.host().user_read(&self.hal.phys, addr, &mut buf) {
                Ok(()) => return Ok(buf),
                Err(Trap::PageFault { addr, access }) => mm.handle_fault(addr, access, &mut self.frames, &self.hal.phys)?,
                Err(t) => panic!("unexpected trap {t:?}"),
            }
        }
        panic!("fault loop at {addr:#x}");
    }
    /// The host mirror equals the software page table exactly.
    fn check_mirror(&mut self, mm: &mut MemoryMap<MockSpace>) {
        self.apply(mm);
        let want: BTreeMap<u64, (u64, Prot)> = mm.ptes().map(|(va, f, p, _)| (va, (f, p))).collect();
        assert_eq!(mm.host().pages, want, "host mirror differs from the page table");
    }
    fn check(&self, maps: &[&MemoryMap<MockSpace>]) {
        check_refcounts(maps, &self.frames).unwrap();
    }
}

trait PhysSize {
    fn size_bytes(&self) -> u64;
}
impl PhysSize for hal::mock::MockPhys {
    fn size_bytes(&self) -> u64 {
        hal::PhysMem::size(self)
    }
}

#[test]
fn frames_refcount_and_consecutive() {
    let mut f = Frames::new(64 * PAGE + 100);
    assert_eq!(f.total_frames(), 64);
    let a: Vec<u64> = (0..10).map(|_| f.alloc().unwrap()).collect();
    for w in a.windows(2) {
        assert_eq!(w[1], w[0] + PAGE);
    }
    f.get(a[3]);
    assert_eq!(f.refcount(a[3]), 2);
    f.put(a[3]);
    f.put(a[3]);
    assert_eq!(f.refcount(a[3]), 0);
    assert_eq!(f.free_frames(), 64 - 9);
    // Frames used before come first (the hole), then the region grows
    // consecutively.
    assert_eq!(f.alloc().unwrap(), a[3]);
    assert_eq!(f.alloc().unwrap(), a[9] + PAGE);
    assert_eq!(f.alloc().unwrap(), a[9] + 2 * PAGE);
    // Next-fit among the used frames: after the last one handed out,
    // wrapping at the end of the used part.
    f.put(a[1]);
    f.put(a[5]);
    f.put(a[9] + PAGE);
    assert_eq!(f.alloc().unwrap(), a[1]);
    assert_eq!(f.alloc().unwrap(), a[5]);
    assert_eq!(f.alloc().unwrap(), a[9] + PAGE);
    f.check_consistent().unwrap();
    while f.alloc().is_some() {}
    assert_eq!(f.free_frames(), 0);
    assert!(f.check_all_free().is_err());
    for (p, _) in f.allocated().collect::<Vec<_>>() {
        f.put(p);
    }
    f.check_all_free().unwrap();
    // Bogus frames are ignored.
    f.put(12345);
    f.get(u64::MAX);
    assert_eq!(f.refcount(u64::MAX), 0);
}

#[test]
fn demand_paging_anonymous() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(0, 3 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    assert_eq!(mm.resident_pages(), 0);
    e.gwrite(&mut mm, a + PAGE + 10, b"hello").unwrap();
    // Fault-around: the whole (small) VMA came in with the first fault.
    assert_eq!(mm.resident_pages(), 3);
    assert_eq!(e.gread(&mut mm, a + PAGE + 10, 5).unwrap(), b"hello");
    assert_eq!(e.gread(&mut mm, a, 8).unwrap(), vec![0; 8]);
    assert_eq!(e.gread(&mut mm, a + 2 * PAGE, 8).unwrap(), vec![0; 8]);
    assert_eq!(mm.resident_pages(), 3);
    // Outside: SEGV_MAPERR; beyond the user end too.
    assert_eq!(e.gread(&mut mm, a + 3 * PAGE, 1), Err(FaultError::Segv { maperr: true }));
    assert_eq!(mm.handle_fault(u64::MAX, Access::Read, &mut e.frames, &e.hal.phys), Err(FaultError::Segv { maperr: true }));
    // Execute on a non-exec mapping: SEGV_ACCERR.
    assert_eq!(mm.handle_fault(a, Access::Execute, &mut e.frames, &e.hal.phys), Err(FaultError::Segv { maperr: false }));
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.check_mirror(&mut mm);
    e.frames.check_all_free().unwrap();
}

#[test]
fn spurious_fault_remaps() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(0, PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, a, b"x").unwrap();
    // The host lost the page: the fault maps it again.
    mm.host().pages.clear();
    assert_eq!(e.gread(&mut mm, a, 1).unwrap(), b"x");
    e.check_mirror(&mut mm);
    mm.clear(&mut e.frames);
}

#[test]
fn anonymous_fault_around() {
    let win = 16 * PAGE; // FAULT_AROUND
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    // A VMA that starts mid-window and spans three windows.
    let a = mm.mmap(BASE + 4 * PAGE, 3 * win, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    let end = a + 3 * win;
    // A fault in the first (partial) window fills it: [a, BASE + win).
    e.gwrite(&mut mm, a + 5 * PAGE, b"x").unwrap();
    let present: Vec<u64> = mm.ptes().map(|(va, ..)| va).collect();
    assert_eq!(present, (a..BASE + win).step_by(PAGE as usize).collect::<Vec<_>>());
    // One merged host map for the window (consecutive frames).
    let frames: Vec<u64> = mm.ptes().map(|(_, f, ..)| f).collect();
    assert!(frames.windows(2).all(|w| w[1] == w[0] + PAGE));
    e.check_mirror(&mut mm);
    // A fault in the last window stops at the VMA end; pages already present
    // (the one written here) keep their frame and contents.
    e.gwrite(&mut mm, end - PAGE, b"y").unwrap();
    let before = mm.ptes().find(|p| p.0 == end - PAGE).unwrap().1;
    e.gwrite(&mut mm, end - 2 * PAGE, b"z").unwrap();
    assert_eq!(mm.ptes().find(|p| p.0 == end - PAGE).unwrap().1, before);
    assert_eq!(e.gread(&mut mm, end - PAGE, 1).unwrap(), b"y");
    assert!(mm.ptes().all(|(va, ..)| va < end));
    assert_eq!(mm.resident_pages() as u64, (BASE + win - a) / PAGE + (end - (BASE + 3 * win)) / PAGE);
    // Copy-on-write pages in a window are left alone by fault-around: after
    // a fork, a write fault on one page copies only that page.
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    e.gwrite(&mut child, a + 6 * PAGE, b"c").unwrap();
    let cow: Vec<bool> = child.ptes().filter(|p| p.0 < BASE + win).map(|p| p.3).collect();
    assert_eq!(cow.iter().filter(|&&c| !c).count(), 1);
    assert_eq!(e.gread(&mut mm, a + 6 * PAGE, 1).unwrap(), vec![0]);
    e.check(&[&mm, &child]);
    e.check_mirror(&mut mm);
    e.check_mirror(&mut child);
    child.clear(&mut e.frames);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();

    // Too few frames for the window: only the faulting page comes in, and
    // the last frame is never taken by a neighbour.
    let mut e = Env::new(4 * PAGE as usize);
    let mut mm = e.map();
    let a = mm.mmap(BASE, win, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, a + 3 * PAGE, b"q").unwrap();
    assert_eq!(mm.resident_pages(), 1);
    assert_eq!(e.frames.free_frames(), 3);
    e.check_mirror(&mut mm);
    mm.clear(&mut e.frames);

    // Shared anonymous memory: neighbours are mapped only where the object
    // already has a page (nothing is allocated for them).
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let s = mm.mmap(BASE, win, RW, MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED, Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, s + 2 * PAGE, b"s").unwrap();
    assert_eq!(mm.resident_pages(), 1);
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    child.discard(s, win, &mut e.frames).unwrap();
    e.gwrite(&mut child, s + 5 * PAGE, b"t").unwrap();
    // The child faulted page 5 and got page 2 (the object's) around it.
    assert_eq!(child.ptes().map(|p| p.0).collect::<Vec<_>>(), vec![s + 2 * PAGE, s + 5 * PAGE]);
    assert_eq!(e.gread(&mut child, s + 2 * PAGE, 1).unwrap(), b"s");
    assert_eq!(e.gread(&mut mm, s + 5 * PAGE, 1).unwrap(), b"t");
    e.check(&[&mm, &child]);
    e.check_mirror(&mut child);
    child.clear(&mut e.frames);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn cow_fault_unshares_exclusive_neighbours() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 16 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    for i in 0..16 {
        e.gwrite(&mut mm, a + i * PAGE, &[i as u8]).unwrap();
    }
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    // The child breaks COW on page 3 (copy) and keeps the others shared.
    e.gwrite(&mut child, a + 3 * PAGE, b"c").unwrap();
    e.apply(&mut mm);
    // A write fault in the parent on page 5: page 3 is exclusive again and
    // becomes writable with it; the still-shared pages stay COW.
    e.gwrite(&mut mm, a + 5 * PAGE, b"p").unwrap();
    let cow: Vec<u64> = mm.ptes().filter(|p| !p.3).map(|p| (p.0 - a) / PAGE).collect();
    assert_eq!(cow, vec![3, 5]);
    assert_eq!(e.gread(&mut child, a + 5 * PAGE, 1).unwrap(), vec![5]);
    // The child exits: the next parent fault unshares the whole window in
    // one merged protect (no copies).
    child.clear(&mut e.frames);
    e.apply(&mut mm);
    let free = e.frames.free_frames();
    e.gwrite(&mut mm, a, b"q").unwrap();
    assert!(mm.ptes().all(|p| !p.3 && p.2 == RW));
    assert_eq!(e.frames.free_frames(), free);
    for i in 1..16 {
        let want = if i == 5 { b'p' } else { i as u8 };
        assert_eq!(e.gread(&mut mm, a + i * PAGE, 1).unwrap(), vec![want]);
    }
    e.check(&[&mm]);
    e.check_mirror(&mut mm);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn untouched_mappings_cost_no_host_op() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(0, 16 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    mm.munmap(a, 16 * PAGE, &mut e.frames).unwrap();
    assert_eq!(mm.host().pending, vec![]);
    // Touched: its host mapping goes with it.
    let a = mm.mmap(0, 32 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    let b = mm.mmap(0, 2 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, a + 20 * PAGE, b"x").unwrap();
    e.apply(&mut mm);
    mm.munmap(a, 32 * PAGE, &mut e.frames).unwrap();
    assert_eq!(mm.host().pending, vec![MapOp::Unmap { vaddr: a, len: 32 * PAGE }]);
    e.check_mirror(&mut mm);
    // exec/exit: only VMAs with pages are unmapped.
    e.gwrite(&mut mm, b, b"y").unwrap();
    let _ = mm.mmap(0, 4 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    e.apply(&mut mm);
    mm.clear(&mut e.frames);
    assert_eq!(mm.host().pending, vec![MapOp::Unmap { vaddr: b, len: 2 * PAGE }]);
    e.check_mirror(&mut mm);
    e.frames.check_all_free().unwrap();
}

#[test]
fn cow_after_fork_one_batch() {
    let mut e = Env::new(1 << 20);
    let mut parent = e.map();
    let a = parent.mmap(0, 4 * PAGE, RW, private_anon(), Backing::Anonymous, &mut e.frames).unwrap();
    for i in 0..4 {
        e.gwrite(&mut parent, a + i * PAGE, b"parent").unwrap();
    }
    e.apply(&mut parent);
    let batches = parent.host().batches;
    let child_space = e.hal.new_space().unwrap();
    let mut child = parent.fork(child_space, &mut e.frames).unwrap();
    // One merged protect for the parent, one merged map for the child
    // (the four frames are consecutive).
    assert_eq!(parent.host().pending, vec![MapOp::Protect { vaddr: a, len: 4 * PAGE, prot: Prot::READ }]);
    assert_eq!(child.host().pending.len(), 1);
    e.check(&[&parent, &child]);
    e.apply(&mut parent);
    e.apply(&mut child);
    assert_eq!(parent.host().batches, batches + 1);
    assert_eq!(child.host().batches, 1);
    assert_eq!(e.frames.refcount(child.ptes().next().unwrap().1), 2);

    e.gwrite(&mut child, a, b"child!").unwrap();
    assert_eq!(e.gread(&mut parent, a, 6).unwrap(), b"parent");
    assert_eq!(e.gread(&mut child, a, 6).unwrap(), b"child!");
    e.gwrite(&mut parent, a + PAGE, b"PARENT").unwrap();
    assert_eq!(e.gread(&mut child, a + PAGE, 6).unwrap(), b"parent");
    e.check(&[&parent, &child]);
    e.check_mirror(&mut parent);
    e.check_mirror(&mut child);
    // The child exits: the parent's remaining COW pages become writable in
    // place (refcount 1, no copy).
    child.clear(&mut e.frames);
    let free = e.frames.free_frames();
    e.gwrite(&mut parent, a + 2 * PAGE, b"again!").unwrap();
    assert_eq!(e.frames.free_frames(), free);
    // copy_to_user breaks COW too.
    let mut child2 = parent.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    child2.copy_to_user(a + 3 * PAGE, b"kernel", &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(e.gread(&mut parent, a + 3 * PAGE, 6).unwrap(), b"parent");
    assert_eq!(e.gread(&mut child2, a + 3 * PAGE, 6).unwrap(), b"kernel");
    e.check(&[&parent, &child2]);
    e.check_mirror(&mut parent);
    e.check_mirror(&mut child2);
    parent.clear(&mut e.frames);
    child2.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn shared_anonymous_across_fork() {
    let mut e = Env::new(1 << 20);
    let mut parent = e.map();
    let flags = MapFlags::SHARED | MapFlags::ANONYMOUS;
    let a = parent.mmap(0, 2 * PAGE, RW, flags, Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut parent, a, b"before").unwrap();
    let mut child = parent.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    e.gwrite(&mut child, a, b"child0").unwrap();
    assert_eq!(e.gread(&mut parent, a, 6).unwrap(), b"child0");
    // A page first touched after the fork is shared too.
    e.gwrite(&mut child, a + PAGE, b"child1").unwrap();
    assert_eq!(e.gread(&mut parent, a + PAGE, 6).unwrap(), b"child1");
    e.gwrite(&mut parent, a + PAGE, b"parent").unwrap();
    assert_eq!(e.gread(&mut child, a + PAGE, 6).unwrap(), b"parent");
    e.check(&[&parent, &child]);
    // The parent unmaps: the child still has the object.
    parent.munmap(a, 2 * PAGE, &mut e.frames).unwrap();
    assert_eq!(e.gread(&mut child, a, 6).unwrap(), b"child0");
    e.check(&[&parent, &child]);
    child.clear(&mut e.frames);
    parent.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn munmap_and_mprotect_split_and_merge() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 4 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    assert_eq!(a, BASE);
    for i in 0..4 {
        e.gwrite(&mut mm, a + i * PAGE, &[i as u8 + 1]).unwrap();
    }
    let free = e.frames.free_frames();
    mm.munmap(a + PAGE, 2 * PAGE, &mut e.frames).unwrap();
    assert_eq!(e.frames.free_frames(), free + 2);
    let v: Vec<(u64, u64)> = mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(v, vec![(a, a + PAGE), (a + 3 * PAGE, a + 4 * PAGE)]);
    assert_eq!(e.gread(&mut mm, a + PAGE, 1), Err(FaultError::Segv { maperr: true }));
    assert_eq!(e.gread(&mut mm, a + 3 * PAGE, 1).unwrap(), vec![4]);
    e.check_mirror(&mut mm);
    e.check(&[&mm]);

    // Fill the hole again, then make the middle read-only.
    mm.mmap(a + PAGE, 2 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    assert_eq!(mm.vmas().count(), 1, "adjacent anonymous VMAs merge");
    e.gwrite(&mut mm, a + 2 * PAGE, b"z").unwrap();
    mm.mprotect(a + PAGE, 2 * PAGE, Prot::READ).unwrap();
    assert_eq!(mm.vmas().count(), 3);
    assert_eq!(e.gwrite(&mut mm, a + 2 * PAGE, b"y"), Err(FaultError::Segv { maperr: false }));
    assert_eq!(e.gread(&mut mm, a + 2 * PAGE, 1).unwrap(), b"z");
    assert_eq!(mm.copy_to_user(a + 2 * PAGE, b"k", &mut e.frames, &e.hal.phys), Err(Errno::EFAULT));
    e.check_mirror(&mut mm);
    mm.mprotect(a + PAGE, 2 * PAGE, RW).unwrap();
    assert_eq!(mm.vmas().count(), 1);
    e.gwrite(&mut mm, a + 2 * PAGE, b"y").unwrap();
    e.check_mirror(&mut mm);
    // PROT_NONE: even reads fault, and the kernel gets EFAULT.
    mm.mprotect(a, PAGE, Prot::empty()).unwrap();
    assert_eq!(e.gread(&mut mm, a, 1), Err(FaultError::Segv { maperr: false }));
    let mut b = [0u8; 1];
    assert_eq!(mm.copy_from_user(a, &mut b, &mut e.frames, &e.hal.phys), Err(Errno::EFAULT));
    e.check_mirror(&mut mm);
    // Errors.
    assert_eq!(mm.mprotect(a + 1, PAGE, RW), Err(Errno::EINVAL));
    // A hole: the mapped prefix changes (as on Linux), then ENOMEM.
    assert_eq!(mm.mprotect(a, 5 * PAGE, RW), Err(Errno::ENOMEM));
    assert_eq!(e.gread(&mut mm, a, 1).unwrap(), vec![1]);
    e.check_mirror(&mut mm);
    assert_eq!(mm.mprotect(a + 5 * PAGE, PAGE, RW), Err(Errno::ENOMEM));
    assert_eq!(mm.mprotect(a, u64::MAX, RW), Err(Errno::ENOMEM));
    assert_eq!(mm.mprotect(a, 0, RW), Ok(()));
    assert_eq!(mm.munmap(a + 1, PAGE, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.munmap(a, 0, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.munmap(a, u64::MAX - PAGE, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.munmap(0x7000_0000, PAGE, &mut e.frames), Ok(()));
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn mmap_errors_and_placement() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let f = &mut e.frames;
    let anon = Backing::Anonymous;
    assert_eq!(mm.mmap(0, 0, RW, private_anon(), anon.clone(), f), Err(Errno::EINVAL));
    assert_eq!(mm.mmap(0, PAGE, RW, MapFlags::ANONYMOUS, anon.clone(), f), Err(Errno::EINVAL));
    assert_eq!(mm.mmap(BASE + 1, PAGE, RW, fixed(), anon.clone(), f), Err(Errno::EINVAL));
    assert_eq!(mm.mmap(0, u64::MAX, RW, private_anon(), anon.clone(), f), Err(Errno::ENOMEM));
    assert_eq!(mm.mmap(0, 1 << 62, RW, private_anon(), anon.clone(), f), Err(Errno::ENOMEM));
    assert_eq!(mm.mmap(!(PAGE - 1), PAGE, RW, fixed(), anon.clone(), f), Err(Errno::ENOMEM));
    assert_eq!(mm.mmap(mm.user_end(), PAGE, RW, fixed(), anon.clone(), f), Err(Errno::ENOMEM));
    assert_eq!(mm.mmap(0, PAGE, RW, fixed(), anon.clone(), f), Err(Errno::EPERM));
    let file: Arc<dyn MappedFile> = Arc::new(VecFile(vec![1; 100]));
    let shared = MapFlags::SHARED;
    assert_eq!(mm.mmap(0, PAGE, RW, shared, Backing::File(file.clone(), 0), f), Err(Errno::ENODEV));
    assert_eq!(mm.mmap(0, PAGE, Prot::READ, shared, Backing::File(file.clone(), 1), f), Err(Errno::EINVAL));
    assert_eq!(
        mm.mmap(0, PAGE, Prot::READ, shared, Backing::File(file.clone(), !(PAGE - 1)), f),
        Err(Errno::EOVERFLOW)
    );
    let r = mm.mmap(0, PAGE, Prot::READ, shared, Backing::File(file.clone(), 0), f).unwrap();
    assert_eq!(mm.mprotect(r, PAGE, RW), Err(Errno::EACCES));
    // Top-down placement below the mmap base; a free hint is honoured.
    let x = mm.mmap(0, PAGE, RW, private_anon(), anon.clone(), f).unwrap();
    assert!(x < mm.user_end() - (64 << 20));
    let h = mm.mmap(BASE, PAGE, RW, private_anon(), anon.clone(), f).unwrap();
    assert_eq!(h, BASE);
    // An occupied hint is not.
    let h2 = mm.mmap(BASE, PAGE, RW, private_anon(), anon.clone(), f).unwrap();
    assert_ne!(h2, BASE);
    assert_eq!(mm.mmap(BASE, PAGE, RW, fixed() | MapFlags::FIXED_NOREPLACE, anon.clone(), f), Err(Errno::EEXIST));
    let low = mm.mmap(0, PAGE, RW, private_anon() | MapFlags::MAP_32BIT, anon.clone(), f).unwrap();
    assert!(low + PAGE <= 0x8000_0000);
    // MAP_FIXED replaces.
    assert_eq!(mm.mmap(BASE, 2 * PAGE, Prot::READ, fixed(), anon.clone(), f), Ok(BASE));
    assert_eq!(mm.vmas().find(|v| v.start == BASE).unwrap().prot, Prot::READ);
    check_refcounts(&[&mm], f).unwrap();
    mm.clear(f);
    f.check_all_free().unwrap();
}

#[test]
fn file_mapping_eof_and_fault_around() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let data: Vec<u8> = (0..(2 * PAGE + 100)).map(|i| (i % 251) as u8 + 1).collect();
    let file: Arc<dyn MappedFile> = Arc::new(VecFile(data.clone()));
    let a = mm.mmap(0, 4 * PAGE, RW, MapFlags::PRIVATE, Backing::File(file.clone(), 0), &mut e.frames).unwrap();
    assert_eq!(e.gread(&mut mm, a + 5, 10).unwrap(), &data[5..15]);
    // Fault-around filled the other pages inside the file.
    assert_eq!(mm.resident_pages(), 3);
    let tail = e.gread(&mut mm, a + 2 * PAGE, PAGE as usize).unwrap();
    assert_eq!(&tail[..100], &data[2 * PAGE as usize..]);
    assert!(tail[100..].iter().all(|&b| b == 0));
    assert_eq!(e.gread(&mut mm, a + 3 * PAGE, 1), Err(FaultError::Bus));
    // Private: writes do not reach the file; an offset mapping sees page 1.
    e.gwrite(&mut mm, a, b"mine").unwrap();
    let b = mm.mmap(0, PAGE, Prot::READ, MapFlags::PRIVATE, Backing::File(file, PAGE), &mut e.frames).unwrap();
    assert_eq!(e.gread(&mut mm, b, 4).unwrap(), &data[PAGE as usize..PAGE as usize + 4]);
    let info: Vec<VmaInfo> = mm.vmas().collect();
    assert!(info.iter().any(|v| v.start == b && v.offset == PAGE && v.kind == VmaKind::File && v.file.is_some()));
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn brk_semantics() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    assert_eq!(mm.brk(0x1234_5678, &mut e.frames), 0, "no base yet");
    mm.set_brk_base(0x60_0123);
    let base = 0x60_1000;
    assert_eq!(mm.brk(0, &mut e.frames), base);
    assert_eq!(mm.brk(base + 10_000, &mut e.frames), base + 10_000);
    e.gwrite(&mut mm, base + 9_000, b"heap").unwrap();
    assert_eq!(mm.vmas().find(|v| v.kind == VmaKind::Heap).map(|v| (v.start, v.end)), Some((base, base + 3 * PAGE)));
    assert_eq!(mm.brk(base - 1, &mut e.frames), base + 10_000);
    assert_eq!(mm.brk(u64::MAX, &mut e.frames), base + 10_000);
    // Growing within the last page keeps the data.
    assert_eq!(mm.brk(base + 11_000, &mut e.frames), base + 11_000);
    assert_eq!(e.gread(&mut mm, base + 9_000, 4).unwrap(), b"heap");
    // Shrink: the pages go away.
    assert_eq!(mm.brk(base + 100, &mut e.frames), base + 100);
    assert_eq!(e.gread(&mut mm, base + 9_000, 1), Err(FaultError::Segv { maperr: true }));
    // A mapping above the heap stops it.
    mm.mmap(base + 16 * PAGE, PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    assert_eq!(mm.brk(base + 16 * PAGE, &mut e.frames), base + 100);
    assert_eq!(mm.brk(base + 14 * PAGE, &mut e.frames), base + 14 * PAGE);
    assert_eq!(mm.brk(base, &mut e.frames), base);
    assert!(mm.vmas().all(|v| v.kind != VmaKind::Heap));
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn user_copies() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 3 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    let data: Vec<u8> = (0..2 * PAGE + 50).map(|i| (i * 7) as u8).collect();
    // Across page boundaries, faulting pages in.
    mm.copy_to_user(a + 100, &data, &mut e.frames, &e.hal.phys).unwrap();
    let mut back = vec![0u8; data.len()];
    mm.copy_from_user(a + 100, &mut back, &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(back, data);
    assert_eq!(e.gread(&mut mm, a + 100 + PAGE, 10).unwrap(), &data[PAGE as usize..PAGE as usize + 10]);
    // Bad pointers.
    let mut b = [0u8; 8];
    let (f, p) = (&mut e.frames, &e.hal.phys);
    assert_eq!(mm.copy_from_user(0, &mut b, f, p), Err(Errno::EFAULT));
    assert_eq!(mm.copy_from_user(u64::MAX - 2, &mut b, f, p), Err(Errno::EFAULT));
    assert_eq!(mm.copy_to_user(a + 3 * PAGE - 4, &b, f, p), Err(Errno::EFAULT));
    assert_eq!(mm.copy_to_user(mm.user_end() - 4, &b, f, p), Err(Errno::EFAULT));
    assert_eq!(mm.copy_from_user(12345, &mut [], f, p), Ok(()));
    // C strings, across a page boundary, and too long.
    mm.copy_to_user(a + PAGE - 3, b"abcdef\0", f, p).unwrap();
    assert_eq!(mm.read_cstring(a + PAGE - 3, 4096, f, p).unwrap(), b"abcdef");
    assert_eq!(mm.read_cstring(a + PAGE - 3, 6, f, p), Err(Errno::ENAMETOOLONG));
    assert_eq!(mm.read_cstring(a + PAGE - 3, 7, f, p).unwrap(), b"abcdef");
    assert_eq!(mm.read_cstring(0x10, 10, f, p), Err(Errno::EFAULT));
    // A string running into the end of the mapping.
    mm.copy_to_user(a + 3 * PAGE - 2, b"xy", f, p).unwrap();
    assert_eq!(mm.read_cstring(a + 3 * PAGE - 2, 100, f, p), Err(Errno::EFAULT));
    mm.zero_user(a + 100, 2 * PAGE, f, p).unwrap();
    mm.copy_from_user(a + 100, &mut back, f, p).unwrap();
    assert!(back[..2 * PAGE as usize].iter().all(|&x| x == 0));
    e.check_mirror(&mut mm);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn out_of_memory() {
    let mut e = Env::new(4 * PAGE as usize);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 8 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    for i in 0..4 {
        e.gwrite(&mut mm, a + i * PAGE, b"x").unwrap();
    }
    assert_eq!(e.gwrite(&mut mm, a + 4 * PAGE, b"x"), Err(FaultError::OutOfMemory));
    assert_eq!(mm.copy_to_user(a + 5 * PAGE, b"x", &mut e.frames, &e.hal.phys), Err(Errno::EFAULT));
    // COW break without a frame.
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    assert_eq!(e.gwrite(&mut child, a, b"y"), Err(FaultError::OutOfMemory));
    child.clear(&mut e.frames);
    mm.munmap(a, 2 * PAGE, &mut e.frames).unwrap();
    // MAP_POPULATE that does not fit undoes itself.
    let before: Vec<VmaInfo> = mm.vmas().collect();
    let r = mm.mmap_with_phys(0, 4 * PAGE, RW, private_anon() | MapFlags::POPULATE, Backing::Anonymous, &mut e.frames, &e.hal.phys);
    assert_eq!(r, Err(Errno::ENOMEM));
    assert_eq!(mm.vmas().count(), before.len());
    let r = mm.mmap_with_phys(0, 2 * PAGE, RW, private_anon() | MapFlags::POPULATE, Backing::Anonymous, &mut e.frames, &e.hal.phys);
    assert!(r.is_ok());
    assert_eq!(e.frames.free_frames(), 0);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn discard_drops_pages() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 2 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    let s = mm.mmap(BASE + 4 * PAGE, PAGE, RW, MapFlags::SHARED | MapFlags::FIXED, Backing::Anonymous, &mut e.frames).unwrap();
    let data: Vec<u8> = (0..PAGE).map(|i| i as u8 | 1).collect();
    let file: Arc<dyn MappedFile> = Arc::new(VecFile(data.clone()));
    let fm = mm.mmap(BASE + 6 * PAGE, PAGE, RW, MapFlags::PRIVATE | MapFlags::FIXED, Backing::File(file, 0), &mut e.frames).unwrap();
    e.gwrite(&mut mm, a + PAGE, b"gone").unwrap();
    e.gwrite(&mut mm, s, b"kept").unwrap();
    e.gwrite(&mut mm, fm, b"gone").unwrap();
    let free = e.frames.free_frames();
    mm.discard(a, 7 * PAGE, &mut e.frames).unwrap_err(); // holes: ENOMEM, but done
    // Both private anonymous pages (fault-around) and the file page go.
    assert_eq!(e.frames.free_frames(), free + 3, "the shared object keeps its frame");
    assert_eq!(e.gread(&mut mm, a + PAGE, 4).unwrap(), vec![0; 4]);
    assert_eq!(e.gread(&mut mm, s, 4).unwrap(), b"kept");
    assert_eq!(e.gread(&mut mm, fm, 4).unwrap(), &data[..4]);
    assert_eq!(mm.discard(a + 1, PAGE, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.discard(a, 2 * PAGE, &mut e.frames), Ok(()));
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn stack_grows_down() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let top = 0x7000_0000;
    let flags = fixed() | MapFlags::GROWSDOWN;
    mm.mmap(top - 4 * PAGE, 4 * PAGE, RW, flags, Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, top - 6 * PAGE, b"s").unwrap();
    assert_eq!(mm.vmas().next().map(|v| v.start), Some(top - 6 * PAGE));
    assert_eq!(e.gwrite(&mut mm, top - 6 * PAGE - STACK_GROW_GAP - PAGE, b"s"), Err(FaultError::Segv { maperr: true }));
    // Not into a mapping below (a page of gap stays).
    mm.mmap(top - 9 * PAGE, PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    assert_eq!(e.gwrite(&mut mm, top - 8 * PAGE, b"s"), Err(FaultError::Segv { maperr: true }));
    e.gwrite(&mut mm, top - 7 * PAGE, b"s").unwrap();
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn clear_releases_everything_and_unmaps() {
    let mut e = Env::new(1 << 20);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 4 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    let s = mm.mmap(0, 2 * PAGE, RW, MapFlags::SHARED, Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, a, b"1").unwrap();
    e.gwrite(&mut mm, s, b"2").unwrap();
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    e.gwrite(&mut child, a + PAGE, b"3").unwrap();
    e.check(&[&mm, &child]);
    mm.clear(&mut e.frames);
    e.check_mirror(&mut mm);
    assert!(mm.host().pages.is_empty());
    assert!(e.frames.check_all_free().is_err());
    assert_eq!(e.gread(&mut child, s, 1).unwrap(), b"2");
    child.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

/// A file whose data is a page cache (what the VFS hands the MM).
struct CacheFile(alloc::rc::Rc<PageCache>);

impl MappedFile for CacheFile {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        self.0.read_source(off, buf)
    }
    fn page_cache(&self) -> Option<alloc::rc::Rc<PageCache>> {
        Some(self.0.clone())
    }
}

#[allow(clippy::arc_with_non_send_sync)] // the MM takes Arc<dyn MappedFile>; single-threaded
fn cache_file(set: &CacheSet, source: page_cache::Source, size: u64) -> (alloc::rc::Rc<PageCache>, Arc<dyn MappedFile>) {
    let c = PageCache::new(set, source, size, None);
    (c.clone(), Arc::new(CacheFile(c)))
}

#[test]
fn mremap_moves_frames_and_dontunmap_leaves_an_empty_range() {
    let mut e = Env::new(64 * PAGE as usize);
    let mut mm = e.map();
    let a = mm.mmap(BASE, 3 * PAGE, RW, fixed(), Backing::Anonymous, &mut e.frames).unwrap();
    e.gwrite(&mut mm, a, b"one").unwrap();
    e.gwrite(&mut mm, a + 2 * PAGE, b"three").unwrap();
    let frames_before: Vec<u64> = mm.ptes().map(|p| p.1).collect();
    let flags = linux_raw_sys::general::MREMAP_MAYMOVE | linux_raw_sys::general::MREMAP_DONTUNMAP;
    let d = mm.mremap(a, 3 * PAGE, 3 * PAGE, flags, 0, &mut e.frames).unwrap();
    assert_ne!(d, a);
    let frames_after: Vec<u64> = mm.ptes().map(|p| p.1).collect();
    assert_eq!(frames_before, frames_after, "the pages moved with their frames, no copy");
    assert_eq!(e.gread(&mut mm, d, 3).unwrap(), b"one");
    assert_eq!(e.gread(&mut mm, d + 2 * PAGE, 5).unwrap(), b"three");
    assert_eq!(e.gread(&mut mm, a, 3).unwrap(), [0, 0, 0], "the old range stays mapped, empty");
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    // Grow in place, shrink, errors.
    assert_eq!(mm.mremap(d, 3 * PAGE, 4 * PAGE, 0, 0, &mut e.frames), Ok(d));
    assert_eq!(mm.mremap(d, 4 * PAGE, PAGE, 0, 0, &mut e.frames), Ok(d));
    assert_eq!(e.gread(&mut mm, d + PAGE, 1), Err(FaultError::Segv { maperr: true }));
    assert_eq!(mm.mremap(d, PAGE, 2 * PAGE, flags, 0, &mut e.frames), Err(Errno::EINVAL), "DONTUNMAP may not resize");
    assert_eq!(mm.mremap(d, PAGE, PAGE, linux_raw_sys::general::MREMAP_FIXED, a, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.mremap(d + 1, PAGE, PAGE, 0, 0, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.mremap(d, PAGE, 0, 0, 0, &mut e.frames), Err(Errno::EINVAL));
    assert_eq!(mm.mremap(BASE + 40 * PAGE, PAGE, PAGE, 0, 0, &mut e.frames), Err(Errno::EFAULT));
    assert_eq!(mm.mremap(d, 0, PAGE, linux_raw_sys::general::MREMAP_MAYMOVE, 0, &mut e.frames), Err(Errno::EINVAL), "old_len 0 of a private mapping");
    e.check_mirror(&mut mm);
    e.check(&[&mm]);
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn shared_file_mapping_is_the_page_cache() {
    let mut e = Env::new(128 * PAGE as usize);
    let set = CacheSet::new();
    let (cache, file) = cache_file(&set, page_cache::Source::Zero, 3 * PAGE);
    let mut mm = e.map();
    let open = |writable| Backing::Open { file: file.clone(), offset: 0, writable, name: alloc::string::String::from("/f") };
    let s = mm.mmap(BASE, 3 * PAGE, RW, MapFlags::SHARED | MapFlags::FIXED, open(true), &mut e.frames).unwrap();
    let p = mm.mmap(BASE + 8 * PAGE, 3 * PAGE, RW, MapFlags::PRIVATE | MapFlags::FIXED, open(true), &mut e.frames).unwrap();
    assert_eq!(mm.mmap(0, PAGE, RW, MapFlags::SHARED, open(false), &mut e.frames), Err(Errno::EACCES));
    assert_eq!(cache.writable_mappings(), 1);
    // A store through the shared mapping is the file's data.
    e.gwrite(&mut mm, s + 5, b"shared").unwrap();
    let mut buf = [0u8; 6];
    cache.read_to(5, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(&buf, b"shared");
    assert!(cache.is_dirty(0));
    // The private mapping sees it until it writes.
    assert_eq!(e.gread(&mut mm, p + 5, 6).unwrap(), b"shared");
    e.gwrite(&mut mm, p + 5, b"P").unwrap();
    assert_eq!(e.gread(&mut mm, s + 5, 1).unwrap(), b"s");
    // A write into the cache shows through the shared mapping.
    let (f, _) = cache.page_for_write(PAGE, 4, &mut e.frames, &e.hal.phys).unwrap();
    hal::PhysMem::write(&e.hal.phys, f, b"file");
    assert_eq!(e.gread(&mut mm, s + PAGE, 4).unwrap(), b"file");
    // A forked child's store is seen by the parent.
    let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
    e.gwrite(&mut child, s + 2 * PAGE, b"child").unwrap();
    assert_eq!(e.gread(&mut mm, s + 2 * PAGE, 5).unwrap(), b"child");
    e.check_mirror(&mut mm);
    e.check_mirror(&mut child);
    check_refcounts_with(&[&mm, &child], &[&set], &e.frames).unwrap();
    // Truncation: the entries past the end go from every map first; an
    // access there is SIGBUS; the private copy of page 0 survives.
    for m in [&mut mm, &mut child] {
        m.invalidate_cache(&cache, 1, u64::MAX, true, &mut e.frames);
    }
    cache.truncate(PAGE, &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(e.gread(&mut mm, s + PAGE, 1), Err(FaultError::Bus));
    assert_eq!(e.gread(&mut child, p + 2 * PAGE, 1), Err(FaultError::Bus));
    assert_eq!(e.gread(&mut mm, p + 5, 1).unwrap(), b"P");
    check_refcounts_with(&[&mm, &child], &[&set], &e.frames).unwrap();
    // Unmapping the last writable mapping leaves nothing behind.
    child.clear(&mut e.frames);
    mm.clear(&mut e.frames);
    assert_eq!((cache.mappings(), cache.writable_mappings()), (0, 0));
    drop((cache, file));
    set.reap(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

/// A store over a vector, counting reads and writes.
#[derive(Default)]
struct VecStore {
    data: core::cell::RefCell<Vec<u8>>,
    reads: core::cell::Cell<u32>,
    writes: core::cell::Cell<u32>,
}

impl page_cache::Store for VecStore {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.reads.set(self.reads.get() + 1);
        let d = self.data.borrow();
        let off = (off as usize).min(d.len());
        let n = buf.len().min(d.len() - off);
        buf[..n].copy_from_slice(&d[off..off + n]);
        Ok(n)
    }
    fn write(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        self.writes.set(self.writes.get() + 1);
        let mut d = self.data.borrow_mut();
        let end = off as usize + data.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[off as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn truncate(&self, len: u64) -> Result<(), Errno> {
        self.data.borrow_mut().resize(len as usize, 0);
        Ok(())
    }
}

#[test]
fn store_backed_cache_reads_on_demand_writes_back_and_evicts_clean_pages() {
    let mut e = Env::new(64 * PAGE as usize);
    let set = CacheSet::new();
    let store = alloc::rc::Rc::new(VecStore::default());
    store.data.replace((0..40 * PAGE).map(|i| (i / PAGE) as u8).collect());
    let (cache, file) = cache_file(&set, page_cache::Source::Store(store.clone()), 40 * PAGE);
    // Reading the whole file (more than memory) works: clean pages go.
    let mut buf = vec![0u8; PAGE as usize];
    for pg in 0..40 {
        cache.read_to(pg * PAGE, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
        assert!(buf.iter().all(|&b| b == pg as u8), "page {pg}");
    }
    assert!(cache.resident_pages() < 64);
    // A dirty page written through a shared mapping goes back on writeback.
    let mut mm = e.map();
    let open = Backing::Open { file: file.clone(), offset: 0, writable: true, name: alloc::string::String::from("/h") };
    let s = mm.mmap(BASE, 2 * PAGE, RW, MapFlags::SHARED | MapFlags::FIXED, open, &mut e.frames).unwrap();
    e.gwrite(&mut mm, s + 1, b"dirty").unwrap();
    assert_eq!(set.stats().dirty, 1);
    let w0 = store.writes.get();
    cache.writeback(0, u64::MAX, &e.frames, &e.hal.phys).unwrap();
    assert_eq!(&store.data.borrow()[1..6], b"dirty");
    assert!(store.writes.get() > w0);
    assert!(cache.is_dirty(0), "still dirty: a writable mapping may change it");
    // Mapped pages are never evicted; after unmapping, the writeback at
    // unmap (the set's service) cleans it and it can go.
    let freed = set.shrink(&mut e.frames, &e.hal.phys, u64::MAX);
    assert!(freed > 0);
    assert!(cache.frame_at(0).is_some(), "a mapped page stays");
    mm.clear(&mut e.frames);
    set.service(&mut e.frames, &e.hal.phys);
    assert!(!cache.is_dirty(0));
    set.shrink(&mut e.frames, &e.hal.phys, u64::MAX);
    assert_eq!(cache.resident_pages(), 0);
    drop((cache, file));
    set.reap(&mut e.frames);
    e.frames.check_all_free().unwrap();
}


#[test]
fn detaching_a_store_keeps_the_data_as_a_memory_file_or_changes_nothing() {
    let mut e = Env::new(64 * PAGE as usize);
    let set = CacheSet::new();
    set.set_memory(64);
    let store = alloc::rc::Rc::new(VecStore::default());
    // Pages 0..4 hold their index + 1, page 4 is zeros (a hole once
    // detached), page 5 is half a page.
    let mut data: Vec<u8> = (0..4 * PAGE).map(|i| (i / PAGE + 1) as u8).collect();
    data.resize(5 * PAGE as usize, 0);
    data.extend(core::iter::repeat_n(9u8, PAGE as usize / 2));
    let size = data.len() as u64;
    store.data.replace(data.clone());
    let (cache, file) = cache_file(&set, page_cache::Source::Store(store.clone()), size);
    let mut buf = vec![0u8; PAGE as usize];
    cache.read_to(PAGE, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
    // A quota too small for the data: ENOSPC, and the cache is still the store's.
    let small = page_cache::Quota::new(Some(3));
    assert_eq!(cache.detach_store(Some(small.clone()), true, &mut e.frames, &e.hal.phys), Err(Errno::ENOSPC));
    assert!(cache.has_store());
    assert_eq!(small.used(), 0);
    set.check().unwrap();
    // Room enough: the data stays, every page is dirty memory-file data.
    let q = page_cache::Quota::new(Some(16));
    cache.detach_store(Some(q.clone()), true, &mut e.frames, &e.hal.phys).unwrap();
    assert!(!cache.has_store());
    assert_eq!(q.used(), 5, "four pages of data and the partial last one; the page of zeros is a hole");
    assert_eq!(cache.frame_at(4), None);
    set.check().unwrap();
    // The store is never read or written again.
    store.data.replace(Vec::new());
    let (r0, w0) = (store.reads.get(), store.writes.get());
    let mut all = vec![0u8; size as usize];
    assert_eq!(cache.read_to(0, &mut all, &mut e.frames, &e.hal.phys).unwrap(), size as usize);
    assert_eq!(all, data);
    cache.write_bytes(0, b"up", &mut e.frames, &e.hal.phys).unwrap();
    cache.writeback(0, u64::MAX, &e.frames, &e.hal.phys).unwrap();
    assert_eq!((store.reads.get(), store.writes.get()), (r0, w0));
    // Without the data: an empty memory file.
    let other = alloc::rc::Rc::new(VecStore::default());
    other.data.replace(vec![7u8; 3 * PAGE as usize]);
    let (c2, f2) = cache_file(&set, page_cache::Source::Store(other), 3 * PAGE);
    c2.read_to(0, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
    c2.detach_store(Some(q.clone()), false, &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!((c2.size(), c2.resident_pages()), (0, 0));
    set.check().unwrap();
    drop((cache, file, c2, f2));
    set.reap(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn a_host_change_seen_without_an_allocator_drops_only_unmapped_clean_caches() {
    let mut e = Env::new(64 * PAGE as usize);
    let set = CacheSet::new();
    let store = alloc::rc::Rc::new(VecStore::default());
    store.data.replace(vec![1u8; 2 * PAGE as usize]);
    let (cache, file) = cache_file(&set, page_cache::Source::Store(store.clone()), 2 * PAGE);
    let mut buf = vec![0u8; PAGE as usize];
    cache.read_to(0, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
    assert!(cache.resident_pages() > 0);
    // Mapped: left for the next open.
    let mut mm = e.map();
    let open = Backing::Open { file: file.clone(), offset: 0, writable: false, name: alloc::string::String::from("/h") };
    mm.mmap(BASE, PAGE, Prot::READ, MapFlags::SHARED | MapFlags::FIXED, open, &mut e.frames).unwrap();
    assert!(!cache.revalidate_unmapped(3 * PAGE));
    assert_eq!(cache.size(), 2 * PAGE);
    mm.clear(&mut e.frames);
    // Unmapped and clean: the pages go (to the orphans), the size is the host's.
    store.data.replace(vec![2u8; 3 * PAGE as usize]);
    assert!(cache.revalidate_unmapped(3 * PAGE));
    assert_eq!((cache.size(), cache.resident_pages()), (3 * PAGE, 0));
    set.check().unwrap();
    cache.read_to(0, &mut buf, &mut e.frames, &e.hal.phys).unwrap();
    assert!(buf.iter().all(|&b| b == 2));
    drop((cache, file));
    set.reap(&mut e.frames);
    e.frames.check_all_free().unwrap();
}


mod model {
    //! Random operations against a model: page -> (prot, shared, byte).
    use super::*;
    use proptest::prelude::*;

    const SLOTS: u64 = 24;

    #[derive(Clone, Debug)]
    enum Op {
        Map { page: u64, n: u64, prot: u8, shared: bool },
        Unmap { page: u64, n: u64 },
        Protect { page: u64, n: u64, prot: u8 },
        Write { page: u64, val: u8, guest: bool },
        Read { page: u64, guest: bool },
        Fork { val: u8 },
        Brk { pages: u64 },
    }

    fn prot_of(p: u8) -> Prot {
        [Prot::empty(), Prot::READ, RW, Prot::READ | Prot::EXEC][p as usize % 4]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..SLOTS, 1..6u64, 0..4u8, any::<bool>()).prop_map(|(page, n, prot, shared)| Op::Map { page, n, prot, shared }),
            (0..SLOTS, 1..6u64).prop_map(|(page, n)| Op::Unmap { page, n }),
            (0..SLOTS, 1..6u64, 0..4u8).prop_map(|(page, n, prot)| Op::Protect { page, n, prot }),
            (0..SLOTS, any::<u8>(), any::<bool>()).prop_map(|(page, val, guest)| Op::Write { page, val, guest }),
            (0..SLOTS, any::<bool>()).prop_map(|(page, guest)| Op::Read { page, guest }),
            any::<u8>().prop_map(|val| Op::Fork { val }),
            (0..6u64).prop_map(|pages| Op::Brk { pages }),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    struct Page {
        prot: Prot,
        shared: bool,
        val: u8,
    }

    const HEAP: u64 = 0x2000_0000;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 2000, .. ProptestConfig::default() })]
        #[test]
        fn mm_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut e = Env::new(256 * PAGE as usize);
            let mut mm = e.map();
            mm.set_brk_base(HEAP);
            let mut model: BTreeMap<u64, Page> = BTreeMap::new();
            let mut heap: BTreeMap<u64, u8> = BTreeMap::new();
            let addr = |page: u64| BASE + page * PAGE;
            for op in ops {
                match op {
                    Op::Map { page, n, prot, shared } => {
                        let flags = if shared { MapFlags::SHARED | MapFlags::FIXED } else { fixed() };
                        mm.mmap(addr(page), n * PAGE, prot_of(prot), flags, Backing::Anonymous, &mut e.frames).unwrap();
                        for p in page..page + n {
                            model.insert(p, Page { prot: prot_of(prot), shared, val: 0 });
                        }
                    }
                    Op::Unmap { page, n } => {
                        mm.munmap(addr(page), n * PAGE, &mut e.frames).unwrap();
                        for p in page..page + n {
                            model.remove(&p);
                        }
                    }
                    Op::Protect { page, n, prot } => {
                        let r = mm.mprotect(addr(page), n * PAGE, prot_of(prot));
                        // Linux: the mapped prefix before a hole changes, then ENOMEM.
                        let mut all = true;
                        for p in page..page + n {
                            match model.get_mut(&p) {
                                Some(pg) => pg.prot = prot_of(prot),
                                None => {
                                    all = false;
                                    break;
                                }
                            }
                        }
                        prop_assert_eq!(r, if all { Ok(()) } else { Err(Errno::ENOMEM) });
                    }
                    Op::Write { page, val, guest } => {
                        let ok = if guest {
                            e.gwrite(&mut mm, addr(page) + 9, &[val]).is_ok()
                        } else {
                            mm.copy_to_user(addr(page) + 9, &[val], &mut e.frames, &e.hal.phys).is_ok()
                        };
                        match model.get(&page).copied() {
                            Some(pg) if pg.prot.contains(Prot::WRITE) => {
                                prop_assert!(ok);
                                model.get_mut(&page).unwrap().val = val;
                            }
                            _ => prop_assert!(!ok),
                        }
                    }
                    Op::Read { page, guest } => {
                        let got = if guest {
                            e.gread(&mut mm, addr(page) + 9, 1).ok().map(|v| v[0])
                        } else {
                            let mut b = [0u8];
                            mm.copy_from_user(addr(page) + 9, &mut b, &mut e.frames, &e.hal.phys).ok().map(|_| b[0])
                        };
                        match model.get(&page) {
                            Some(pg) if !pg.prot.is_empty() => prop_assert_eq!(got, Some(pg.val)),
                            _ => prop_assert_eq!(got, None),
                        }
                    }
                    Op::Fork { val } => {
                        let mut child = mm.fork(e.hal.new_space().unwrap(), &mut e.frames).unwrap();
                        check_refcounts(&[&mm, &child], &e.frames).map_err(TestCaseError::fail)?;
                        for (&p, pg) in model.iter_mut() {
                            if pg.prot.contains(Prot::WRITE) {
                                e.gwrite(&mut child, addr(p) + 9, &[val]).unwrap();
                            }
                        }
                        e.check_mirror(&mut child);
                        // The child's writes to shared pages reach the parent.
                        for q in model.values_mut() {
                            if q.shared && q.prot.contains(Prot::WRITE) {
                                q.val = val;
                            }
                        }
                        child.clear(&mut e.frames);
                    }
                    Op::Brk { pages } => {
                        let r = mm.brk(HEAP + pages * PAGE, &mut e.frames);
                        prop_assert_eq!(r, HEAP + pages * PAGE);
                        heap.retain(|&p, _| p < pages);
                        if pages > 0 {
                            let v = (pages as u8).wrapping_mul(3);
                            mm.copy_to_user(HEAP + (pages - 1) * PAGE, &[v], &mut e.frames, &e.hal.phys).unwrap();
                            heap.insert(pages - 1, v);
                        }
                        for (&p, &v) in &heap {
                            prop_assert_eq!(e.gread(&mut mm, HEAP + p * PAGE, 1).unwrap(), vec![v]);
                        }
                    }
                }
                check_refcounts(&[&mm], &e.frames).map_err(TestCaseError::fail)?;
                e.check_mirror(&mut mm);
                // VMAs cover exactly the model's pages (plus the heap).
                let mut covered = Vec::new();
                for v in mm.vmas().filter(|v| v.kind != VmaKind::Heap) {
                    let mut p = v.start;
                    while p < v.end {
                        covered.push((p - BASE) / PAGE);
                        p += PAGE;
                    }
                }
                prop_assert_eq!(covered, model.keys().copied().collect::<Vec<_>>(), "{}", format!("{:?}", mm.vmas().map(|v| (v.start, v.end)).collect::<Vec<_>>()));
            }
            mm.clear(&mut e.frames);
            e.frames.check_all_free().map_err(TestCaseError::fail)?;
        }
    }
}
