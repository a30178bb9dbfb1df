//! Isolation attack 11: the vDSO's clock data page (`[vvar]`), which every
//! process maps and only the kernel may write. A guest tries to write it
//! directly, to make it writable, to have the kernel write into it
//! (`read` into it), and to punch it out of its file (`MADV_REMOVE`).
//! After each, a process forked before the attack (it shares the page)
//! looks for the attacker's value.
//!
//! Expected under every backend: blocked (a fault, `EACCES` or `EFAULT`,
//! and the value never shows in the other process). `n/a` without a vDSO.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use userland_tests::errno_name;

/// Where in the page the attack writes (past the kernel's fields).
const AT: u64 = 0x800;

/// The `[vvar]` mapping's start, from `/proc/self/maps`.
fn vvar() -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vvar]"))?;
    u64::from_str_radix(line.split('-').next()?, 16).ok()
}

/// What a process forked before the attack sees at the attacked word
/// (it was forked by `probe` after the attack began, but shares the page
/// either way: the mapping is shared).
fn seen_elsewhere(page: u64) -> Result<u64, String> {
    // SAFETY: reads the mapped, readable data page.
    probe(|| unsafe { ((page + AT) as *const u64).read_volatile() })
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main() -> i32 {
    let Some(page) = vvar() else {
        for n in ["vvar_write", "vvar_mprotect", "vvar_kernel_copy", "vvar_madvise_remove"] {
            report(n, "n/a", "no [vvar] mapping (no vDSO)");
        }
        return 0;
    };
    let evil = random_u64();
    let verdict = |name: &str, refused: bool, how: String| {
        let seen = seen_elsewhere(page);
        let got = seen.as_ref().is_ok_and(|&v| v == evil);
        let r = if got || !refused { "succeeded" } else { "blocked" };
        report(name, r, &format!("{how}; another process reads {:?} at [vvar]+{AT:#x}", seen.map(|v| format!("{v:#x}"))));
    };
    // 1. A plain store.
    // SAFETY: deliberately writes the read-only page; a fault kills only the child.
    let w = probe(|| unsafe {
        ((page + AT) as *mut u64).write_volatile(evil);
        1
    });
    verdict("vvar_write", w.is_err(), format!("store: {}", w.map_or_else(|e| e, |_| "completed".into())));
    // 2. Make it writable, then store.
    // SAFETY: asks the kernel to change a mapping's protection.
    let r = unsafe { libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE) };
    let how = if r == 0 {
        // SAFETY: the kernel said the page is writable now.
        unsafe { ((page + AT) as *mut u64).write_volatile(evil) };
        "mprotect(PROT_WRITE) = 0, stored".to_string()
    } else {
        format!("mprotect(PROT_WRITE): -{}", errno_name(userland_tests::errno()))
    };
    verdict("vvar_mprotect", r != 0, how);
    // 3. The kernel writes for us: read() from a pipe into the page.
    let (rd, wr) = pipe();
    let b = evil.to_ne_bytes();
    // SAFETY: writes 8 valid bytes to our pipe, then asks read() to store them in the page.
    let n = unsafe {
        libc::write(wr, b.as_ptr().cast(), 8);
        libc::read(rd, (page + AT) as *mut libc::c_void, 8)
    };
    close(rd);
    close(wr);
    verdict("vvar_kernel_copy", n < 0, format!("read(pipe, [vvar]+{AT:#x}): {}", raw(n as i64)));
    // 4. Punch the page out of its file (the next fault would give a fresh,
    // writable page?).
    // SAFETY: asks the kernel to drop a shared mapping's backing pages.
    let r = unsafe { libc::madvise(page as *mut libc::c_void, 4096, libc::MADV_REMOVE) };
    verdict("vvar_madvise_remove", r != 0, format!("madvise(MADV_REMOVE): {}", raw(r as i64)));
    0
}
