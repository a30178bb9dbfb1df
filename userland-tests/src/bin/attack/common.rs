//! Shared by the `attack_*` guest programs (included with `#[path]`; this
//! directory has no `main.rs`, so cargo builds no program from it).
//!
//! Every attack prints one machine-readable line per attempt:
//! `attack NAME result=blocked|succeeded|n/a detail=FREE TEXT`, parsed by
//! `tests/isolation.rs` and `cargo xtask isolation`. Each attempt that may
//! fault runs in a forked child, so a fault kills only that child and the
//! parent reports how it ended. Nothing here can block for ever: children
//! either finish at once or block on a pipe the parent closes.

#![allow(dead_code)]

use std::os::raw::c_int;
use userland_tests::{describe_status, errno, errno_name, exit_now, fork, say, wait_for};

/// Prints the one line of an attempt.
pub fn report(name: &str, result: &str, detail: &str) {
    say!("attack {name} result={result} detail={detail}");
}

/// A hexadecimal (`0x...`) or decimal number from the environment.
pub fn env_num(var: &str) -> Option<u64> {
    let v = std::env::var(var).ok()?;
    parse_num(&v)
}

/// Parses `0x1f` or `31`.
pub fn parse_num(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `pipe()` as (read end, write end); exits on failure.
pub fn pipe() -> (c_int, c_int) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        say!(
            "attack setup result=n/a detail=pipe failed: {}",
            errno_name(errno())
        );
        exit_now(90);
    }
    (fds[0], fds[1])
}

/// Closes an fd.
pub fn close(fd: c_int) {
    // SAFETY: closing an fd this program owns.
    unsafe { libc::close(fd) };
}

/// Writes one u64 to `fd`.
pub fn put_u64(fd: c_int, v: u64) {
    let b = v.to_ne_bytes();
    // SAFETY: b is 8 valid bytes.
    unsafe { libc::write(fd, b.as_ptr().cast(), 8) };
}

/// Reads one u64 from `fd`; None at end of file or on error.
pub fn get_u64(fd: c_int) -> Option<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // SAFETY: the destination is inside b.
        let n = unsafe { libc::read(fd, b[got..].as_mut_ptr().cast(), 8 - got) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return None;
        }
        got += n as usize;
    }
    Some(u64::from_ne_bytes(b))
}

/// Signal names for reports.
pub fn sig_name(s: c_int) -> &'static str {
    match s {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSYS => "SIGSYS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

/// How a child ended, e.g. "child killed by SIGSEGV (11)".
pub fn ended(status: c_int) -> String {
    if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        format!("child killed by {} ({s})", sig_name(s))
    } else {
        format!("child {}", describe_status(status))
    }
}

/// Runs `f` in a forked child that sends the u64 it returns back over a
/// pipe. `Ok(value)` if the child delivered it, `Err(how it ended)` if it
/// died first (a fault).
pub fn probe(f: impl FnOnce() -> u64) -> Result<u64, String> {
    let (r, w) = pipe();
    let pid = fork();
    if pid == 0 {
        close(r);
        let v = f();
        put_u64(w, v);
        exit_now(0);
    }
    close(w);
    let v = get_u64(r);
    close(r);
    let status = match wait_for(pid) {
        Ok((_, s)) => s,
        Err(e) => return Err(format!("wait4 failed: {}", errno_name(e))),
    };
    match v {
        Some(v) => Ok(v),
        None => Err(ended(status)),
    }
}

/// The raw return of `syscall(2)` as "= N" or "-ENAME".
pub fn raw(ret: i64) -> String {
    if ret == -1 {
        format!("-{}", errno_name(errno()))
    } else {
        format!("= {ret}")
    }
}

/// 8 random bytes from the guest kernel.
pub fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: writes at most 8 bytes into v.
    unsafe { libc::getrandom(v.as_mut_ptr().cast(), 8, 0) };
    u64::from_ne_bytes(v) | 1
}
