//! `sleeper SECONDS [CHILDREN [nowait]]`: forks CHILDREN children (default
//! 2), prints "sleeper: ready", and everybody sleeps; with `nowait` the
//! parent exits at once instead, leaving its children sleeping. The host-side tests kill the
//! kernel while this runs and check that no host process survives it.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, exit_now, fork, say, sleep_ms, wait_for};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let secs: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let children: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut pids = Vec::new();
    for _ in 0..children {
        let pid = fork();
        if pid == 0 {
            sleep_ms(secs * 1000);
            exit_now(0);
        }
        pids.push(pid);
    }
    say!("sleeper: ready");
    if args.get(3).map(String::as_str) == Some("nowait") {
        return 0;
    }
    sleep_ms(secs * 1000);
    for pid in pids {
        let _ = wait_for(pid);
    }
    say!("sleeper: done");
    0
}
