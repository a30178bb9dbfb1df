//! Isolation attack 6: the guest's own process-control interfaces.
//! - `ptrace_attach`: PTRACE_ATTACH and PTRACE_PEEKDATA on a sibling
//!   owned by another user (root), from an unprivileged process (uid 1000);
//! - `proc_mem`: open `/proc/<pid>/mem` of that sibling and read it, from
//!   the same unprivileged process. (Root, or the same user, may do both,
//!   as on Linux: that is debugging, not an attack.)
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
    // The attacker: another process of another user.
    let attacker = fork();
    if attacker != 0 {
        let _ = wait_for(attacker);
        close(w);
        let _ = wait_for(victim);
        return kill_init();
    }
    // SAFETY: plain credential calls; failure is reported below.
    let dropped = unsafe { libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(1000) == 0 && libc::setuid(1000) == 0 };
    if !dropped {
        report("ptrace_attach", "error", "could not drop to uid 1000");
        report("proc_mem", "error", "could not drop to uid 1000");
        exit_now(1);
    }

    // SAFETY: raw ptrace with integer arguments.
    let at = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, victim, 0, 0) };
    // errno now, before the next call changes it.
    let at_said = raw(at);
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
            at_said,
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
    exit_now(0);
}

#[cfg(not(test))]
fn kill_init() -> i32 {
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
