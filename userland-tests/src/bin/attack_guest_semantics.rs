//! Isolation attack 6: the guest's own process-control interfaces.
//! - `ptrace_attach`: PTRACE_ATTACH and PTRACE_PEEKDATA on a sibling;
//! - `proc_mem`: open `/proc/<pid>/mem` of another guest process and read it;
//! - `kill_init`: a child sends SIGKILL to pid 1 (this program, run as
//!   init). Printed last: if init dies, the kernel exits with 137 and the
//!   line `attack kill_init begin` is the last one (the test says what that
//!   means: a guest-only effect, the kernel shut down cleanly).
//!
//! Expected: guest semantics only, never a host effect.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::ffi::CString;
use userland_tests::{exit_now, fork, say, wait_for};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main() -> i32 {
    // A victim that holds a secret and waits for EOF on a pipe.
    let (r, w) = pipe();
    let secret: u64 = random_u64();
    let victim = fork();
    if victim == 0 {
        close(w);
        let _ = std::hint::black_box(secret);
        let _ = get_u64(r);
        exit_now(0);
    }
    close(r);

    // SAFETY: raw ptrace with integer arguments.
    let at = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, victim, 0, 0) };
    // SAFETY: as above; PEEKDATA of the address of our copy of the secret.
    let peek = unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            libc::PTRACE_PEEKDATA,
            victim,
            &secret as *const u64,
            0,
        )
    };
    report(
        "ptrace_attach",
        if at == 0 { "succeeded" } else { "blocked" },
        &format!(
            "ptrace(PTRACE_ATTACH, {victim}) {}; ptrace(PTRACE_PEEKDATA) {}",
            raw(at),
            raw(peek)
        ),
    );

    let path = format!("/proc/{victim}/mem");
    let c = CString::new(path.clone()).unwrap_or_default();
    // SAFETY: raw openat with a valid C string.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::O_RDONLY,
            0,
        )
    };
    if fd < 0 {
        report(
            "proc_mem",
            "blocked",
            &format!("openat({path}) {}", raw(fd)),
        );
    } else {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into v.
        let n = unsafe {
            libc::syscall(
                libc::SYS_pread64,
                fd,
                &mut v as *mut u64,
                8,
                &secret as *const u64 as i64,
            )
        };
        close(fd as i32);
        report(
            "proc_mem",
            if n == 8 && v == secret {
                "succeeded"
            } else {
                "blocked"
            },
            &format!(
                "openat({path}) = {fd}; pread at the secret's address {}",
                raw(n)
            ),
        );
    }
    close(w);
    let _ = wait_for(victim);

    say!("attack kill_init begin");
    let killer = fork();
    if killer == 0 {
        // SAFETY: raw kill with integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_kill, 1, libc::SIGKILL) };
        exit_now(if r == 0 { 0 } else { 1 });
    }
    let st = wait_for(killer).map(|(_, s)| s).unwrap_or(-1);
    // Let a pending signal land before we claim to have survived.
    // SAFETY: getpid has no arguments; a system call delivers pending signals.
    unsafe { libc::getpid() };
    report(
        "kill_init",
        "blocked",
        &format!(
            "init survived kill(1, SIGKILL) from a child ({})",
            ended(st)
        ),
    );
    0
}
