//! Copy-on-write after fork: parent and child write the same pages (an
//! anonymous private mapping, a global array, the heap and the stack) and
//! must not see each other's writes, while a MAP_SHARED|MAP_ANONYMOUS page is
//! seen by both. The shared page also carries the handshake between the two
//! processes, with a timeout, so that a kernel that breaks sharing fails the
//! test instead of hanging it. Exits 0 only if every check passes.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use userland_tests::{
    describe_status, exit_now, fork, mmap_anon, now_ms, say, sleep_ms, wait_for, PAGE,
};

const PAGES: usize = 8;
static mut GLOBAL: [u64; 1024] = [0; 1024];

/// Every memory kind the test writes, as (name, pointer, words).
struct Areas {
    list: Vec<(&'static str, *mut u64, usize)>,
}

impl Areas {
    fn fill(&self, v: u64) {
        for &(_, p, n) in &self.list {
            for i in 0..n {
                // SAFETY: each area is valid for n words for the whole run.
                unsafe { p.add(i).write_volatile(v ^ i as u64) };
            }
        }
    }
    /// Names of the areas that do not hold `v` everywhere.
    fn differing(&self, v: u64) -> Vec<&'static str> {
        self.list
            .iter()
            .filter(|&&(_, p, n)| {
                // SAFETY: as in fill.
                (0..n).any(|i| unsafe { p.add(i).read_volatile() } != v ^ i as u64)
            })
            .map(|&(name, _, _)| name)
            .collect()
    }
}

/// Waits until the shared word reaches `stage`; false on timeout (10 s).
fn wait_stage(flag: &AtomicU64, stage: u64) -> bool {
    let start = now_ms();
    while flag.load(SeqCst) < stage {
        if now_ms() - start > 10_000 {
            return false;
        }
        sleep_ms(1);
    }
    true
}

const PARENT_VALUE: u64 = 0xAAAA_0000_0000_0001;
const CHILD_VALUE: u64 = 0xBBBB_0000_0000_0002;
const LATE_PARENT_VALUE: u64 = 0xCCCC_0000_0000_0003;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let (Ok(private), Ok(shared)) = (
        mmap_anon(PAGES * PAGE, rw, libc::MAP_PRIVATE),
        mmap_anon(PAGE, rw, libc::MAP_SHARED),
    ) else {
        say!("mmap failed");
        return 1;
    };
    let mut heap = vec![0u64; 4096];
    let mut stack = [0u64; 512];
    let areas = Areas {
        list: vec![
            ("private mapping", private.cast(), PAGES * PAGE / 8),
            // Only this function touches GLOBAL, and only through this pointer.
            ("global", std::ptr::addr_of_mut!(GLOBAL).cast(), 1024),
            ("heap", heap.as_mut_ptr(), heap.len()),
            ("stack", stack.as_mut_ptr(), stack.len()),
        ],
    };
    // SAFETY: the shared page is mapped, aligned, and lives until exit.
    let flag = unsafe { &*shared.cast::<AtomicU64>() };
    // SAFETY: as above; the second word of the page.
    let mailbox = unsafe { &*shared.cast::<AtomicU64>().add(1) };

    areas.fill(PARENT_VALUE);
    let pid = fork();
    if pid == 0 {
        // Child. Bits of the exit code report what went wrong.
        let mut bad = 0;
        if !areas.differing(PARENT_VALUE).is_empty() {
            bad |= 1; // did not inherit the parent's data
        }
        areas.fill(CHILD_VALUE);
        mailbox.store(0x5EED, SeqCst);
        flag.store(1, SeqCst);
        if !wait_stage(flag, 2) {
            bad |= 2; // never saw the parent's stage through the shared page
        }
        if !areas.differing(CHILD_VALUE).is_empty() {
            bad |= 4; // saw the parent's later writes
        }
        if mailbox.load(SeqCst) != 0xFEED {
            bad |= 8; // did not see the parent's write to the shared page
        }
        exit_now(bad);
    }

    let mut ok = true;
    let mut check = |what: &str, good: bool| {
        ok &= good;
        say!("{what}: {}", if good { "ok" } else { "WRONG" });
    };
    let stage1 = wait_stage(flag, 1);
    check("shared page: parent sees the child's stage", stage1);
    check(
        "shared page: parent sees the child's value",
        mailbox.load(SeqCst) == 0x5EED,
    );
    let seen = areas.differing(PARENT_VALUE);
    check(
        &format!("parent does not see the child's writes (changed: {seen:?})"),
        seen.is_empty(),
    );
    areas.fill(LATE_PARENT_VALUE);
    mailbox.store(0xFEED, SeqCst);
    flag.store(2, SeqCst);
    let status = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
    let exited = libc::WIFEXITED(status);
    let bits = if exited {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    check(&format!("child ended: {}", describe_status(status)), exited);
    check(
        "child inherited the parent's data",
        bits >= 0 && bits & 1 == 0,
    );
    check("child saw the parent's stage", bits >= 0 && bits & 2 == 0);
    check(
        "child does not see the parent's later writes",
        bits >= 0 && bits & 4 == 0,
    );
    check(
        "child sees the parent's write to the shared page",
        bits >= 0 && bits & 8 == 0,
    );
    let seen = areas.differing(LATE_PARENT_VALUE);
    check(
        &format!("parent keeps its own writes (changed: {seen:?})"),
        seen.is_empty(),
    );

    // Several generations: each child writes, the parent checks its copy.
    let mut gen_ok = true;
    for g in 0..4u64 {
        let pid = fork();
        if pid == 0 {
            let mine = areas.differing(LATE_PARENT_VALUE + g).is_empty();
            areas.fill(0xDEAD_0000 + g);
            exit_now(if mine { 0 } else { 1 });
        }
        let st = wait_for(pid)
            .map(|(_, s)| describe_status(s))
            .unwrap_or_default();
        gen_ok &= st == "exited 0" && areas.differing(LATE_PARENT_VALUE + g).is_empty();
        areas.fill(LATE_PARENT_VALUE + g + 1);
    }
    check("four forks in a row keep parent and children apart", gen_ok);

    // Fork of a fork: the grandchild writes, neither ancestor sees it.
    let pid = fork();
    if pid == 0 {
        let pid2 = fork();
        if pid2 == 0 {
            areas.fill(1);
            exit_now(0);
        }
        let st = wait_for(pid2)
            .map(|(_, s)| describe_status(s))
            .unwrap_or_default();
        let mine = areas.differing(LATE_PARENT_VALUE + 4).is_empty();
        exit_now(if st == "exited 0" && mine { 0 } else { 1 });
    }
    let st = wait_for(pid)
        .map(|(_, s)| describe_status(s))
        .unwrap_or_default();
    check(
        "grandchild's writes stay in the grandchild",
        st == "exited 0" && areas.differing(LATE_PARENT_VALUE + 4).is_empty(),
    );
    drop(heap);
    say!("cow: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}
