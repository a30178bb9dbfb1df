//! Forks children that end in different ways and prints the wait4 status of
//! each (in child order, whatever order they are reaped in), then checks that
//! a further wait4 reports ECHILD. Exits 0 only if every status is right.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{describe_status, errno_name, exit_now, fork, say, wait_for};

/// How each child ends, and the status the parent must see.
const CHILDREN: &[(&str, &str)] = &[
    ("exit 0", "exited 0"),
    ("exit 7", "exited 7"),
    ("exit 42", "exited 42"),
    ("exit 255", "exited 255"),
    ("SIGKILL", "killed by signal 9"),
    ("SIGTERM", "killed by signal 15"),
    ("ppid check", "exited 0"),
];

fn child(i: usize, parent: libc::pid_t) -> ! {
    match i {
        0 => exit_now(0),
        1 => exit_now(7),
        2 => exit_now(42),
        3 => exit_now(255),
        4 => {
            // SAFETY: plain system calls.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            exit_now(90)
        }
        5 => {
            // SAFETY: plain system calls.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            exit_now(91)
        }
        _ => {
            // SAFETY: plain system calls.
            let (me, pp) = unsafe { (libc::getpid(), libc::getppid()) };
            exit_now(if pp == parent && me != parent { 0 } else { 1 })
        }
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: plain system call.
    let me = unsafe { libc::getpid() };
    let mut pids = Vec::new();
    for i in 0..CHILDREN.len() {
        let pid = fork();
        if pid == 0 {
            child(i, me);
        }
        pids.push(pid);
    }
    say!("forked {} children", pids.len());

    let mut statuses: Vec<Option<i32>> = vec![None; pids.len()];
    let mut ok = true;
    // Reap the last child by pid first, the rest with wait4(-1).
    let last = pids.len() - 1;
    match wait_for(pids[last]) {
        Ok((pid, st)) if pid == pids[last] => statuses[last] = Some(st),
        Ok(_) => {
            say!("wait4(pid) returned another child");
            ok = false;
        }
        Err(e) => {
            say!("wait4(pid) failed: {}", errno_name(e));
            ok = false;
        }
    }
    for _ in 0..last {
        match wait_for(-1) {
            Ok((pid, st)) => match pids.iter().position(|&p| p == pid) {
                Some(i) if statuses[i].is_none() => statuses[i] = Some(st),
                _ => {
                    say!("wait4(-1) returned an unexpected pid");
                    ok = false;
                }
            },
            Err(e) => {
                say!("wait4(-1) failed: {}", errno_name(e));
                ok = false;
                break;
            }
        }
    }
    for (i, ((what, expected), st)) in CHILDREN.iter().zip(&statuses).enumerate() {
        let got = st
            .map(describe_status)
            .unwrap_or_else(|| "not reaped".into());
        let verdict = if got == *expected { "ok" } else { "WRONG" };
        ok &= got == *expected;
        say!("child {i} ({what}): {got} [{verdict}]");
    }
    match wait_for(-1) {
        Err(e) => {
            say!("wait4 with no children: -{}", errno_name(e));
            ok &= e == libc::ECHILD;
        }
        Ok(_) => {
            say!("wait4 with no children: returned a child");
            ok = false;
        }
    }
    // WNOHANG with a running child returns 0.
    let pid = fork();
    if pid == 0 {
        userland_tests::sleep_ms(200);
        exit_now(3);
    }
    let mut st = 0;
    // SAFETY: st is a valid out-pointer.
    let r = unsafe { libc::wait4(pid, &mut st, libc::WNOHANG, std::ptr::null_mut()) };
    say!(
        "wait4(WNOHANG) on a sleeping child: {}",
        if r == 0 { "0" } else { "not 0" }
    );
    ok &= r == 0;
    let got = wait_for(pid).map(|(_, st)| describe_status(st));
    say!("sleeping child: {}", got.clone().unwrap_or_else(errno_name));
    ok &= got.as_deref() == Ok("exited 3");

    say!("fork_wait: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}
