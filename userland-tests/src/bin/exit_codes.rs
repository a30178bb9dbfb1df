//! `exit_codes N` exits with status N; `exit_codes signal S` kills itself
//! with signal S. Used by the tests and by `fork_exec`.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, say, warn};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    match args.get(1).map(String::as_str) {
        None => {
            say!("exit_codes: no code given, exiting with 0");
            0
        }
        Some("signal") => {
            let sig: i32 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(libc::SIGKILL);
            say!("exit_codes: killing myself with signal {sig}");
            // SAFETY: plain system calls.
            unsafe { libc::kill(libc::getpid(), sig) };
            // A signal that did not kill us (ignored or not delivered).
            say!("exit_codes: still alive after signal {sig}");
            99
        }
        Some(s) => match s.parse::<i32>() {
            Ok(code) => {
                say!("exit_codes: exiting with {code}");
                // Use exit(3) so the status goes through exit_group.
                // SAFETY: ends the process.
                unsafe { libc::exit(code) }
            }
            Err(_) => {
                warn!("usage: exit_codes [N | signal S]");
                2
            }
        },
    }
}
