//! Helpers shared by the guest programs in `src/bin`.
//!
//! The guest programs run both natively and inside the kernel, and the
//! host-side tests (`tests/skas.rs`) compare the two runs byte for byte. So
//! the helpers here avoid everything whose output or behaviour depends on the
//! environment:
//!
//! * Output goes straight to fd 1 with `write(2)` (no std buffering, which
//!   would be duplicated by `fork` and lost by `_exit`).
//! * Programs use `#![no_main]` and export a C `main`, so Rust's runtime
//!   start-up (which `poll`s fds 0-2 and aborts when that fails, installs a
//!   SIGSEGV handler on an alternate stack, ...) does not run. A young kernel
//!   then only needs what glibc's own start-up needs.
//! * Nothing prints pids or addresses.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// Writes all of `s` to fd 1, retrying on short writes and `EINTR`.
pub fn out(s: &str) {
    write_all(1, s.as_bytes());
}

/// Writes all of `s` to fd 2.
pub fn err(s: &str) {
    write_all(2, s.as_bytes());
}

fn write_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// `println!` that writes with one `write(2)` per line to fd 1.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut s = format!($($arg)*);
        s.push('\n');
        $crate::out(&s);
    }};
}

/// `eprintln!` that writes directly to fd 2.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {{
        let mut s = format!($($arg)*);
        s.push('\n');
        $crate::err(&s);
    }};
}

/// The calling thread's `errno`.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// Sets `errno` (so a later check is not fooled by a stale value).
pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// The symbolic name of an errno value ("EFAULT"), or "E<number>".
pub fn errno_name(e: c_int) -> String {
    let name = match e {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("E{e}"),
    };
    name.to_string()
}

/// Result of a raw call: `Ok(value)` or `Err(errno)`.
pub type SysRes = Result<i64, c_int>;

/// Turns a libc-style return (`-1` + errno) into a [`SysRes`].
pub fn check(ret: i64) -> SysRes {
    if ret == -1 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Formats a result as "ok" / "= N" / "-EFAULT" for reports.
pub fn show(r: SysRes) -> String {
    match r {
        Ok(v) => format!("= {v}"),
        Err(e) => format!("-{}", errno_name(e)),
    }
}

/// Copies the C argument vector into owned strings.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings (as handed to
/// `main`).
pub unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: the caller guarantees argv[0..argc] are valid C strings.
            let p = unsafe { *argv.add(i) };
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: as above.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        })
        .collect()
}

/// `fork()`; panics (aborts) if it fails, since every test needs it.
pub fn fork() -> libc::pid_t {
    // SAFETY: the programs are single-threaded, so the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        warn!("fork failed: {}", errno_name(errno()));
        exit_now(100);
    }
    pid
}

/// Exits at once with `_exit` (no atexit handlers): what a forked child uses.
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `wait4(pid, &status, 0, NULL)`, retrying on `EINTR`.
pub fn wait_for(pid: libc::pid_t) -> Result<(libc::pid_t, c_int), c_int> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer; rusage may be NULL.
        let r = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
        if r >= 0 {
            return Ok((r, status));
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Describes a wait status the way the tests print it.
pub fn describe_status(status: c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else if libc::WIFSTOPPED(status) {
        format!("stopped by signal {}", libc::WSTOPSIG(status))
    } else {
        format!("unknown status {status:#x}")
    }
}

/// Monotonic time in nanoseconds, through the raw system call (not the vDSO,
/// which a guest kernel need not provide).
pub fn now_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Monotonic time in milliseconds (see [`now_ns`]).
pub fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

/// Why an operation failed, for benchmark output: `what:ERRNO`.
pub fn fail(what: &str) -> String {
    format!("{what}:{}", errno_name(errno()))
}

/// Sleeps for `ms` milliseconds with the raw `nanosleep` call.
pub fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    // SAFETY: ts is valid; the remainder pointer may be NULL.
    unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &ts,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
}

/// The page size the programs assume (x86_64).
pub const PAGE: usize = 4096;

/// Anonymous private mapping of `len` bytes; `Err(errno)` on failure.
pub fn mmap_anon(len: usize, prot: c_int, flags: c_int) -> Result<*mut u8, c_int> {
    // SAFETY: an anonymous mapping with a NULL hint cannot clobber memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

/// Runs `f` in a forked child and returns the child's wait status, so a test
/// can check that an access kills the process with the right signal.
pub fn in_child(f: impl FnOnce() -> c_int) -> c_int {
    let pid = fork();
    if pid == 0 {
        let code = f();
        exit_now(code);
    }
    match wait_for(pid) {
        Ok((_, status)) => status,
        Err(e) => {
            warn!("wait4 failed: {}", errno_name(e));
            -1
        }
    }
}
