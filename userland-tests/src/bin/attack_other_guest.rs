//! Isolation attack 3: read another guest process's memory.
//!
//! A child writes a random secret (a) at an address both processes map (a
//! private page that copy-on-write has split), (b) in a page at a fixed
//! address only the child maps, and (c) as a marker triple `[N, S, N^S]`.
//! While the child waits, the parent (a) reads the shared address, (b) reads
//! the child-only address in a forked reader, and (c) scans the kernel's own
//! mapping of guest physical memory (`RUSTUML_PHYS_ADDR`/`_SIZE`, from
//! `--debug-reveal-canary`) for the triple. Then the child sends its secret
//! and the parent compares.
//!
//! Expected: (a) and (b) blocked on both backends (tt switches the one
//! guest window between processes); (c) succeeds on tt (the kernel's
//! mapping of all physical memory is in the guest's address space) and is
//! blocked on skas (SIGSEGV).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::hint::black_box;
use userland_tests::{errno_name, exit_now, fork, mmap_anon, wait_for, PAGE};

/// The page only the child maps (inside both backends' user ranges).
const FIXED: u64 = 0x2000_0000_0000;
/// What the parent keeps at the shared address.
const PARENT_VALUE: u64 = 0x1111_2222_3333_4444;

/// The marker word, assembled at run time so that the program's own text
/// and data never hold it.
fn marker() -> u64 {
    black_box(0x5255_5354_0000_0000u64) | black_box(0x0000_0000_554d_4c21u64)
}

fn scan(base: u64, size: u64) -> u64 {
    let n = marker();
    let words = (size / 8) as usize;
    let p = base as *const u64;
    let mut i = 0;
    while i + 2 < words {
        // SAFETY: deliberately reads the kernel's memory; a fault kills only this child.
        let w = unsafe { p.add(i).read_volatile() };
        if w == n {
            // SAFETY: as above (i + 2 < words).
            let (s, x) = unsafe { (p.add(i + 1).read_volatile(), p.add(i + 2).read_volatile()) };
            if s != 0 && x == n ^ s {
                return s;
            }
        }
        i += 1;
    }
    0
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main() -> i32 {
    let page = match mmap_anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) {
        Ok(p) => p as *mut u64,
        Err(e) => {
            report(
                "other_guest_cow",
                "n/a",
                &format!("mmap failed: {}", errno_name(e)),
            );
            return 1;
        }
    };
    // SAFETY: page is a fresh read-write page.
    unsafe { page.write_volatile(PARENT_VALUE) };
    let (ready_r, ready_w) = pipe();
    let (done_r, done_w) = pipe();
    let (secret_r, secret_w) = pipe();
    let child = fork();
    if child == 0 {
        close(ready_r);
        close(done_w);
        close(secret_r);
        let s = random_u64();
        // SAFETY: the child's own copy of the page.
        unsafe { page.write_volatile(s) };
        // SAFETY: a fixed mapping that must not replace anything.
        let f = unsafe {
            libc::mmap(
                FIXED as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        let mapped = f as u64 == FIXED;
        if mapped {
            let n = marker();
            let f = f as *mut u64;
            // SAFETY: the page was just mapped read-write.
            unsafe {
                f.write_volatile(n);
                f.add(1).write_volatile(s);
                f.add(2).write_volatile(n ^ s);
            }
        }
        put_u64(ready_w, mapped as u64);
        // Wait until the parent is done (EOF when it closes its end).
        let _ = get_u64(done_r);
        put_u64(secret_w, s);
        exit_now(0);
    }
    close(ready_w);
    close(done_r);
    close(secret_w);
    let mapped = get_u64(ready_r) == Some(1);
    // (a) The same address in our own space.
    // SAFETY: our own page.
    let seen = unsafe { page.read_volatile() };
    // (b) An address only the child maps.
    // SAFETY: deliberately reads an address this process does not map; a fault kills only the reader.
    let fixed = probe(|| unsafe { ((FIXED + 8) as *const u64).read_volatile() });
    // (c) The kernel's mapping of physical memory.
    let phys = match (env_num("RUSTUML_PHYS_ADDR"), env_num("RUSTUML_PHYS_SIZE")) {
        (Some(a), Some(s)) if a != 0 && s != 0 => Some((a, s, probe(|| scan(a, s)))),
        _ => None,
    };
    close(done_w);
    let secret = get_u64(secret_r);
    let _ = wait_for(child);
    let Some(secret) = secret else {
        report(
            "other_guest_cow",
            "n/a",
            "the child did not send its secret",
        );
        return 1;
    };

    if seen == secret {
        report(
            "other_guest_cow",
            "succeeded",
            &format!("read the child's {secret:#x} at our copy of its page"),
        );
    } else if seen == PARENT_VALUE {
        report(
            "other_guest_cow",
            "blocked",
            &format!("same address gave our own {seen:#x}, child has {secret:#x}"),
        );
    } else {
        report(
            "other_guest_cow",
            "blocked",
            &format!("same address gave {seen:#x} (neither ours nor the child's)"),
        );
    }

    if !mapped {
        report(
            "other_guest_fixed",
            "n/a",
            &format!("the child could not map {FIXED:#x}"),
        );
    } else {
        match fixed {
            Ok(v) if v == secret => report(
                "other_guest_fixed",
                "succeeded",
                &format!("read the child's {secret:#x} at {FIXED:#x}, which only the child maps"),
            ),
            Ok(v) => report(
                "other_guest_fixed",
                "blocked",
                &format!("{FIXED:#x}+8 gave {v:#x}, not the child's secret"),
            ),
            Err(how) => report(
                "other_guest_fixed",
                "blocked",
                &format!("reading {FIXED:#x}+8: {how}"),
            ),
        }
    }

    match phys {
        None => report("other_guest_phys", "n/a", "RUSTUML_PHYS_ADDR not set (boot with --debug-reveal-canary)"),
        Some((a, s, Ok(v))) if v == secret => report(
            "other_guest_phys",
            "succeeded",
            &format!("found the child's secret {secret:#x} by scanning the kernel's physical-memory mapping {a:#x}+{s:#x}"),
        ),
        Some((a, s, Ok(v))) => report(
            "other_guest_phys",
            "blocked",
            &format!("scanned {a:#x}+{s:#x}: secret not found (got {v:#x})"),
        ),
        Some((a, _, Err(how))) => report("other_guest_phys", "blocked", &format!("reading {a:#x}: {how}")),
    }
    0
}
