//! Isolation attack 1: read a kernel secret. The kernel, started with
//! `--debug-reveal-canary`, puts the address of its random canary in
//! `RUSTUML_CANARY_ADDR`; this program reads that address in a child.
//!
//! Expected: tt — succeeds (the value matches what the kernel printed);
//! skas — blocked (the kernel is not mapped: the child dies of SIGSEGV).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main() -> i32 {
    let Some(addr) = env_num("RUSTUML_CANARY_ADDR") else {
        report(
            "kernel_read",
            "n/a",
            "RUSTUML_CANARY_ADDR not set (boot with --debug-reveal-canary)",
        );
        return 1;
    };
    // SAFETY: deliberately reads an address outside this program's memory; a fault kills only the child.
    match probe(|| unsafe { (addr as *const u64).read_volatile() }) {
        Ok(v) => report(
            "kernel_read",
            "succeeded",
            &format!("read {v:#x} at {addr:#x}"),
        ),
        Err(how) => report(
            "kernel_read",
            "blocked",
            &format!("reading {addr:#x}: {how}"),
        ),
    }
    0
}
