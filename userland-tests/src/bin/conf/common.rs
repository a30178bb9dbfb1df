//! Shared by the `conf_*` guest programs (included with `#[path]`; this
//! directory has no `main.rs`, so cargo builds no program from it).
//!
//! Three families of check helpers, each program using one of them:
//! - `t` / `r` / `FAILED`: single-threaded checks with a detail on failure
//!   (`conf_epoll`, `conf_pipe`, `conf_poll`, `conf_tty`);
//! - `ok` / `FAILS`: checks that may run on several threads (`conf_futex`,
//!   `conf_signals`, `conf_threads`);
//! - `c` / `report`: `name: result` lines for path calls (`conf_fs`,
//!   `conf_hostfs`).

#![allow(dead_code)]

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use userland_tests::{errno, errno_name, out, say, SysRes};

pub static mut FAILED: bool = false;

/// Prints `ok   NAME`, or `FAIL NAME: DETAIL` and records the failure.
pub fn t(name: &str, ok: bool, detail: String) {
    if ok {
        say!("ok   {name}");
    } else {
        say!("FAIL {name}: {detail}");
        // SAFETY: single-threaded program.
        unsafe { FAILED = true };
    }
}

/// A raw return value as it is printed by `r` (`i32` for literals like `r(-1)`).
pub trait Ret: Copy {
    fn to_i64(self) -> i64;
}

impl Ret for i64 {
    fn to_i64(self) -> i64 {
        self
    }
}

impl Ret for i32 {
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl Ret for isize {
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// A system call's return: the value, or `-ERRNO` (from `errno`) if negative.
pub fn r<T: Ret>(v: T) -> String {
    let v = v.to_i64();
    if v < 0 {
        format!("-{}", errno_name(errno()))
    } else {
        format!("{v}")
    }
}

pub static FAILS: AtomicI32 = AtomicI32::new(0);

/// Prints `ok   WHAT` or `FAIL WHAT` and counts the failure.
pub fn ok(what: &str, cond: bool) {
    if cond {
        say!("ok   {what}");
    } else {
        say!("FAIL {what}");
        FAILS.fetch_add(1, SeqCst);
    }
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// Prints `NAME: ok` or `NAME: ERRNO`.
pub fn report(name: &str, r: SysRes) {
    let v = match r {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e),
    };
    out(&format!("{name}: {v}\n"));
}
