//! Allocates and touches memory 1 MiB at a time, up to `mem_hog [MIB]`
//! (default 1024 MiB), to check that a guest running out of memory gets
//! ENOMEM or is killed while the kernel itself survives.
//!
//! Exit status: 0 if it got everything it asked for, 3 if mmap failed with
//! ENOMEM (what a small `--mem` should give, unless the kernel kills it).
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, errno_name, mmap_anon, say, PAGE};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let want: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let chunk = 1 << 20;
    for mib in 0..want {
        match mmap_anon(chunk, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) {
            Ok(p) => {
                for off in (0..chunk).step_by(PAGE) {
                    // SAFETY: p..p+chunk was just mapped read-write.
                    unsafe { p.add(off).write_volatile(1) };
                }
            }
            Err(e) => {
                say!("mem_hog: mmap failed after {mib} MiB: {}", errno_name(e));
                return if e == libc::ENOMEM { 3 } else { 4 };
            }
        }
    }
    say!("mem_hog: got all {want} MiB");
    0
}
