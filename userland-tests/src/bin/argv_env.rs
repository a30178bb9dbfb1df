//! Echoes argv, the environment (sorted, so that the order the kernel builds
//! it in does not matter) and a few auxiliary-vector facts.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CStr;
use std::os::raw::c_char;
use userland_tests::{args, say};

extern "C" {
    static environ: *const *const c_char;
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    say!("argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        say!("argv[{i}]={a:?}");
    }
    let mut env = Vec::new();
    // SAFETY: environ is the NULL-terminated environment set up by the C runtime.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            env.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
            p = p.add(1);
        }
    }
    env.sort();
    say!("envc={}", env.len());
    for e in &env {
        say!("env {e:?}");
    }
    for name in ["PATH", "HOME", "TERM", "RUSTUML_SURELY_UNSET"] {
        match std::env::var(name) {
            Ok(v) => say!("getenv({name})={v:?}"),
            Err(_) => say!("getenv({name}) unset"),
        }
    }
    // SAFETY: getauxval only reads the auxiliary vector.
    let (pagesz, random, phdr, entry) = unsafe {
        (
            libc::getauxval(libc::AT_PAGESZ),
            libc::getauxval(libc::AT_RANDOM),
            libc::getauxval(libc::AT_PHDR),
            libc::getauxval(libc::AT_ENTRY),
        )
    };
    say!("AT_PAGESZ={pagesz}");
    say!(
        "AT_RANDOM {}",
        if random != 0 { "present" } else { "missing" }
    );
    say!("AT_PHDR {}", if phdr != 0 { "present" } else { "missing" });
    say!(
        "AT_ENTRY {}",
        if entry != 0 { "present" } else { "missing" }
    );
    let ok = !args.is_empty() && pagesz == 4096 && random != 0 && phdr != 0 && entry != 0;
    if ok {
        0
    } else {
        1
    }
}
