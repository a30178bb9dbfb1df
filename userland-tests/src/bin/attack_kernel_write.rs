//! Isolation attack 2: overwrite the kernel's canary (address from
//! `RUSTUML_CANARY_ADDR`, see `--debug-reveal-canary`) in a child, then read
//! it back in another child.
//!
//! Expected: tt — succeeds, and the kernel prints "canary overwritten" at
//! shutdown; skas — blocked (SIGSEGV), and the kernel's canary is intact.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;

/// What the attack writes (the test looks for it in the kernel's message).
const EVIL: u64 = 0x0bad_c0de_dead_beef;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main() -> i32 {
    let Some(addr) = env_num("RUSTUML_CANARY_ADDR") else {
        report(
            "kernel_write",
            "n/a",
            "RUSTUML_CANARY_ADDR not set (boot with --debug-reveal-canary)",
        );
        return 1;
    };
    let wrote = probe(|| {
        // SAFETY: deliberately writes outside this program's memory; a fault kills only the child.
        unsafe { (addr as *mut u64).write_volatile(EVIL) };
        EVIL
    });
    match wrote {
        Ok(_) => {
            // SAFETY: as above, a read.
            let back = probe(|| unsafe { (addr as *const u64).read_volatile() });
            let back = match back {
                Ok(v) => format!("{v:#x}"),
                Err(how) => how,
            };
            let ok = back == format!("{EVIL:#x}");
            report(
                "kernel_write",
                if ok { "succeeded" } else { "blocked" },
                &format!("wrote {EVIL:#x} at {addr:#x}; read back {back}"),
            );
        }
        Err(how) => report(
            "kernel_write",
            "blocked",
            &format!("writing {addr:#x}: {how}"),
        ),
    }
    0
}
