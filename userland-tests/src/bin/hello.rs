//! The first guest program: prints a greeting and exits 0.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use userland_tests::say;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const std::os::raw::c_char) -> i32 {
    say!("Hello from a rustuml guest!");
    0
}
