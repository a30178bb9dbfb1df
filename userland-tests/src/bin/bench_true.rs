//! `bench_true`: exits 0 at once. The program that `bench_ops fork_exec`
//! executes: as small a static program as the guest toolchain makes.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const std::os::raw::c_char) -> i32 {
    0
}
