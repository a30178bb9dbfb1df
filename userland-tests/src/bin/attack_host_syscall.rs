//! Isolation attack 4: raw `syscall` instructions asking for host-only
//! effects. `attack_host_syscall FILE CREATE PORT PID`:
//! - open FILE, a host file that is not in the guest's root (the test puts a
//!   token in it), and read it;
//! - create CREATE (a host path) and write to it;
//! - create an AF_INET socket and connect to 127.0.0.1:PORT (a host
//!   listener);
//! - kill(PID, SIGKILL), PID being a host process.
//!
//! Expected on both backends: blocked (the guest kernel emulates every call:
//! ENOENT, ENOSYS, ESRCH, ...). The test also checks the host: no file
//! created, no connection accepted, the process alive.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::ffi::CString;
use std::os::raw::c_char;
use userland_tests::args;

fn arg(a: &[String], i: usize) -> Option<&str> {
    a.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

fn open_read(path: &str) {
    let c = CString::new(path).unwrap_or_default();
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
            "host_open",
            "blocked",
            &format!("openat({path}) {}", raw(fd)),
        );
        return;
    }
    let mut buf = [0u8; 256];
    // SAFETY: reads into buf.
    let n = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
    close(fd as i32);
    let text = String::from_utf8_lossy(&buf[..n.max(0) as usize])
        .trim()
        .to_string();
    let host = text.contains("RUSTUML-HOST-TOKEN");
    report(
        "host_open",
        if host { "succeeded" } else { "blocked" },
        &format!("openat({path}) = fd {fd}, read {n} bytes: {text:?}"),
    );
}

fn create(path: &str) {
    let c = CString::new(path).unwrap_or_default();
    // SAFETY: raw openat with a valid C string.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        report(
            "host_create",
            "blocked",
            &format!("openat({path}, O_CREAT) {}", raw(fd)),
        );
        return;
    }
    let msg = b"written by a guest\n";
    // SAFETY: writes from a valid buffer.
    let n = unsafe { libc::syscall(libc::SYS_write, fd, msg.as_ptr(), msg.len()) };
    close(fd as i32);
    // Whether it reached the host only the host can tell: the test checks.
    report(
        "host_create",
        "succeeded",
        &format!("openat({path}, O_CREAT) = fd {fd}, write {}", raw(n)),
    );
}

fn socket(port: Option<u16>) {
    // SAFETY: raw socket call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        report(
            "host_socket",
            "blocked",
            &format!("socket(AF_INET, SOCK_STREAM) {}", raw(fd)),
        );
        return;
    }
    let Some(port) = port else {
        report(
            "host_socket",
            "blocked",
            &format!("socket(AF_INET) = {fd} (a guest socket; no port to try)"),
        );
        return;
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a valid sockaddr_in of the given length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_connect,
            fd,
            &sa as *const libc::sockaddr_in,
            std::mem::size_of::<libc::sockaddr_in>(),
        )
    };
    close(fd as i32);
    report(
        "host_socket",
        if r == 0 { "succeeded" } else { "blocked" },
        &format!(
            "socket(AF_INET) = {fd}; connect(127.0.0.1:{port}) {}",
            raw(r)
        ),
    );
}

fn kill(pid: i64) {
    // SAFETY: raw kill with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_kill, pid, libc::SIGKILL) };
    report(
        "host_kill",
        if r == 0 { "succeeded" } else { "blocked" },
        &format!("kill({pid}, SIGKILL) {}", raw(r)),
    );
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    match arg(&a, 1) {
        Some(p) => open_read(p),
        None => open_read("/etc/hostname"),
    }
    match arg(&a, 2) {
        Some(p) => create(p),
        None => report("host_create", "n/a", "no host path given"),
    }
    socket(arg(&a, 3).and_then(|p| p.parse().ok()));
    match arg(&a, 4).and_then(|p| p.parse::<i64>().ok()) {
        Some(pid) => kill(pid),
        None => report("host_kill", "n/a", "no host pid given"),
    }
    0
}
