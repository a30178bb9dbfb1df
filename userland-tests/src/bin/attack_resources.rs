//! Isolation attack 7: exhaust the guest's resources.
//! `attack_resources [PROCS (default 2000)] [MIB (default 1024)]`.
//! - `fork_bomb`: fork until PROCS children or the first failure (EAGAIN,
//!   ENOMEM); every child blocks on a pipe until the parent closes it; then
//!   all are reaped.
//! - `mem_hog`: a child maps and touches 1 MiB at a time up to MIB; the
//!   parent counts the MiB it got and how it ended, then checks that a new
//!   process still runs.
//!
//! Expected on both backends (boot with a small `--mem`, e.g. 64M): the guest
//! hits its own limits, init reports, the kernel and host stay up.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::os::raw::c_char;
use userland_tests::{args, errno, errno_name, exit_now, mmap_anon, now_ms, wait_for, PAGE};

fn fork_bomb(limit: usize) {
    let (r, w) = pipe();
    let start = now_ms();
    let mut n = 0;
    let mut stop = None;
    while n < limit {
        // SAFETY: single-threaded; the child only closes, reads and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            stop = Some(errno());
            break;
        }
        if pid == 0 {
            close(w);
            let _ = get_u64(r);
            exit_now(0);
        }
        n += 1;
    }
    let forked_ms = now_ms() - start;
    close(w);
    close(r);
    let mut reaped = 0;
    loop {
        let mut st = 0;
        // SAFETY: status is a valid out-pointer.
        let p = unsafe { libc::wait4(-1, &mut st, 0, std::ptr::null_mut()) };
        if p > 0 {
            reaped += 1;
        } else if errno() != libc::EINTR {
            break;
        }
    }
    let why = match stop {
        Some(e) => format!("stopped by {} (the guest's limit)", errno_name(e)),
        None => format!("reached the attack's bound of {limit} without a failure"),
    };
    report(
        "fork_bomb",
        "blocked",
        &format!("forked {n} processes in {forked_ms} ms, {why}; reaped {reaped} in {} ms; init still running", now_ms() - start - forked_ms),
    );
}

fn mem_hog(mib: usize) {
    let (r, w) = pipe();
    let start = now_ms();
    // SAFETY: single-threaded; the child only maps, touches and writes.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        close(r);
        for _ in 0..mib {
            match mmap_anon(
                1 << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
            ) {
                Ok(p) => {
                    for off in (0..1 << 20).step_by(PAGE) {
                        // SAFETY: p..p+1MiB was just mapped read-write.
                        unsafe { p.add(off).write_volatile(1) };
                    }
                }
                Err(e) => exit_now(if e == libc::ENOMEM { 3 } else { 4 }),
            }
            // SAFETY: one byte from a valid buffer.
            unsafe { libc::write(w, b"m".as_ptr().cast(), 1) };
        }
        exit_now(0);
    }
    close(w);
    let mut got = 0usize;
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into buf.
        let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || errno() != libc::EINTR {
            break;
        }
    }
    close(r);
    let how = match wait_for(pid) {
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 3 => {
            "mmap failed with ENOMEM".to_string()
        }
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {
            format!("it got all {mib} MiB")
        }
        Ok((_, st)) => ended(st),
        Err(e) => format!("wait4: {}", errno_name(e)),
    };
    let ms = now_ms() - start;
    let after = probe(|| 42);
    report(
        "mem_hog",
        if after == Ok(42) {
            "blocked"
        } else {
            "succeeded"
        },
        &format!(
            "the hog got {got} MiB in {ms} ms, then {how}; afterwards a new process {}",
            match after {
                Ok(42) => "ran fine".to_string(),
                Ok(v) => format!("returned {v}"),
                Err(e) => e,
            }
        ),
    );
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    let procs = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mib = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    fork_bomb(procs);
    mem_hog(mib);
    0
}
