//! `syscall_bench [N]`: times N raw `getppid` system calls (default 100000)
//! and N page faults (first touches of fresh anonymous pages), and prints the
//! cost per operation. Not compared by the tests (timings vary); used to
//! measure the kernel against native, e.g.
//! `cargo xtask run -- /tests/syscall_bench` next to a native run of the
//! same binary.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, mmap_anon, now_ns, say, PAGE};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
        .max(1);
    let t0 = now_ns();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    let t1 = now_ns();
    say!(
        "null system call (getppid): {:.3} us",
        (t1 - t0) as f64 / n as f64 / 1000.0
    );

    let pages = (n / 10).clamp(1, 16384);
    let Ok(p) = mmap_anon(
        pages * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    ) else {
        say!("mmap failed");
        return 1;
    };
    let t2 = now_ns();
    for i in 0..pages {
        // SAFETY: inside the mapping just made.
        unsafe { p.add(i * PAGE).write_volatile(1) };
    }
    let t3 = now_ns();
    say!(
        "page fault (first touch): {:.3} us",
        (t3 - t2) as f64 / pages as f64 / 1000.0
    );
    0
}
