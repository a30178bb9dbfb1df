//! Bad input to system calls: each call is made with a bad pointer, fd, size
//! or number, and the errno is printed by name next to what Linux returns.
//! Exits 0 only if every result matches Linux.
//!
//! Usage: `bad_input [TESTS_DIR]` (default `/tests`; the garbage file for the
//! execve check is `<TESTS_DIR>/data/garbage`).
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CString;
use std::os::raw::{c_char, c_long};
use userland_tests::{args, check, say, set_errno, show, SysRes, PAGE};

/// A user-half address that is never mapped (page 1 of the address space).
const LOW: c_long = 0x1000;
/// A kernel-half address: outside any user address range.
const KERNEL: c_long = 0xffff_8000_0000_0000u64 as c_long;

fn sys(nr: c_long, a: &[c_long]) -> SysRes {
    let g = |i: usize| a.get(i).copied().unwrap_or(0);
    set_errno(0);
    // SAFETY: every call made through here either fails before touching
    // memory or only touches buffers owned by this program; which arguments
    // are bad is the point of the test.
    check(unsafe { libc::syscall(nr, g(0), g(1), g(2), g(3), g(4), g(5)) } as i64)
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let dir = args.get(1).cloned().unwrap_or_else(|| "/tests".to_string());
    let mut ok = true;
    let mut expect = |what: &str, got: SysRes, want: &str| {
        let got = show(got);
        let good = got == want;
        ok &= good;
        say!("{what} {got} [{}]", if good { "ok" } else { "WRONG" });
    };
    use libc::*;
    let buf = [0u8; 64];
    let bufp = buf.as_ptr() as c_long;

    // Bad pointers.
    expect(
        "write(1, LOW, 10)",
        sys(SYS_write, &[1, LOW, 10]),
        "-EFAULT",
    );
    expect(
        "write(1, KERNEL, 10)",
        sys(SYS_write, &[1, KERNEL, 10]),
        "-EFAULT",
    );
    expect("write(1, NULL, 0)", sys(SYS_write, &[1, 0, 0]), "= 0");
    expect(
        "read(0, KERNEL, 10)",
        sys(SYS_read, &[0, KERNEL, 10]),
        "-EFAULT",
    );
    expect("uname(NULL)", sys(SYS_uname, &[0]), "-EFAULT");
    expect("uname(LOW)", sys(SYS_uname, &[LOW]), "-EFAULT");
    expect("uname(KERNEL)", sys(SYS_uname, &[KERNEL]), "-EFAULT");
    // SAFETY: utsname is plain bytes; all zeros is a valid value.
    let mut uts: utsname = unsafe { std::mem::zeroed() };
    expect(
        "uname(&buf)",
        sys(SYS_uname, &[&mut uts as *mut _ as c_long]),
        "= 0",
    );
    expect(
        "clock_gettime(MONOTONIC, NULL)",
        sys(SYS_clock_gettime, &[CLOCK_MONOTONIC as c_long, 0]),
        "-EFAULT",
    );
    expect(
        "clock_gettime(MONOTONIC, LOW)",
        sys(SYS_clock_gettime, &[CLOCK_MONOTONIC as c_long, LOW]),
        "-EFAULT",
    );
    expect(
        "clock_gettime(REALTIME, KERNEL)",
        sys(SYS_clock_gettime, &[CLOCK_REALTIME as c_long, KERNEL]),
        "-EFAULT",
    );
    let mut ts = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    expect(
        "clock_gettime(12345, &ts)",
        sys(SYS_clock_gettime, &[12345, &mut ts as *mut _ as c_long]),
        "-EINVAL",
    );
    expect(
        "nanosleep(LOW, NULL)",
        sys(SYS_nanosleep, &[LOW, 0]),
        "-EFAULT",
    );
    let bad_ts = timespec {
        tv_sec: 0,
        tv_nsec: 2_000_000_000,
    };
    expect(
        "nanosleep({0, 2e9}, NULL)",
        sys(SYS_nanosleep, &[&bad_ts as *const _ as c_long, 0]),
        "-EINVAL",
    );
    let neg_ts = timespec {
        tv_sec: -1,
        tv_nsec: 0,
    };
    expect(
        "nanosleep({-1, 0}, NULL)",
        sys(SYS_nanosleep, &[&neg_ts as *const _ as c_long, 0]),
        "-EINVAL",
    );
    expect(
        "getrandom(LOW, 16, 0)",
        sys(SYS_getrandom, &[LOW, 16, 0]),
        "-EFAULT",
    );
    expect(
        "getrandom(&buf, 16, 0)",
        sys(SYS_getrandom, &[bufp, 16, 0]),
        "= 16",
    );
    expect(
        "writev(1, LOW, 1)",
        sys(SYS_writev, &[1, LOW, 1]),
        "-EFAULT",
    );
    let iov = iovec {
        iov_base: LOW as *mut c_void,
        iov_len: 8,
    };
    expect(
        "writev(1, [{LOW, 8}], 1)",
        sys(SYS_writev, &[1, &iov as *const _ as c_long, 1]),
        "-EFAULT",
    );
    expect(
        "writev(1, &iov, -1)",
        sys(SYS_writev, &[1, &iov as *const _ as c_long, -1]),
        "-EINVAL",
    );
    let mut st = 0i32;
    let _ = &mut st;
    expect(
        "wait4(-1, LOW, 0, NULL) without children",
        sys(SYS_wait4, &[-1, LOW, 0, 0]),
        "-ECHILD",
    );
    expect(
        "wait4(-1, &st, 0, NULL) without children",
        sys(SYS_wait4, &[-1, &mut st as *mut i32 as c_long, 0, 0]),
        "-ECHILD",
    );

    // Bad file descriptors.
    expect(
        "write(999, buf, 1)",
        sys(SYS_write, &[999, bufp, 1]),
        "-EBADF",
    );
    expect(
        "write(-1, buf, 1)",
        sys(SYS_write, &[-1, bufp, 1]),
        "-EBADF",
    );
    expect(
        "read(999, buf, 1)",
        sys(SYS_read, &[999, bufp, 1]),
        "-EBADF",
    );
    expect("close(999)", sys(SYS_close, &[999]), "-EBADF");

    // Absurd sizes and arguments.
    let anon = (MAP_PRIVATE | MAP_ANONYMOUS) as c_long;
    let rw = (PROT_READ | PROT_WRITE) as c_long;
    expect(
        "mmap(NULL, 1<<62, RW, PRIVATE|ANON)",
        sys(SYS_mmap, &[0, 1 << 62, rw, anon, -1, 0]),
        "-ENOMEM",
    );
    expect(
        "mmap(NULL, -4096, RW, PRIVATE|ANON)",
        sys(SYS_mmap, &[0, -4096, rw, anon, -1, 0]),
        "-ENOMEM",
    );
    expect(
        "mmap(NULL, 0, RW, PRIVATE|ANON)",
        sys(SYS_mmap, &[0, 0, rw, anon, -1, 0]),
        "-EINVAL",
    );
    expect(
        "mmap(0x1001, 4096, RW, PRIVATE|ANON|FIXED)",
        sys(
            SYS_mmap,
            &[0x1001, 4096, rw, anon | MAP_FIXED as c_long, -1, 0],
        ),
        "-EINVAL",
    );
    expect(
        "mmap(NULL, 4096, RW, ANON)",
        sys(SYS_mmap, &[0, 4096, rw, MAP_ANONYMOUS as c_long, -1, 0]),
        "-EINVAL",
    );
    expect(
        "mmap(NULL, 4096, RW, PRIVATE, fd 999)",
        sys(SYS_mmap, &[0, 4096, rw, MAP_PRIVATE as c_long, 999, 0]),
        "-EBADF",
    );
    expect(
        "munmap(0x1001, 4096)",
        sys(SYS_munmap, &[0x1001, 4096]),
        "-EINVAL",
    );
    expect(
        "munmap(page, 0)",
        sys(SYS_munmap, &[PAGE as c_long * 16, 0]),
        "-EINVAL",
    );
    expect(
        "mprotect(0x1001, 4096, R)",
        sys(SYS_mprotect, &[0x1001, 4096, PROT_READ as c_long]),
        "-EINVAL",
    );
    // SAFETY: getpid has no preconditions.
    let me = unsafe { getpid() } as c_long;
    expect(
        "kill(self, 999)",
        sys(SYS_kill, &[me, 999]),
        "-EINVAL",
    );
    expect(
        "arch_prctl(0x9999, 0)",
        sys(SYS_arch_prctl, &[0x9999, 0]),
        "-EINVAL",
    );

    // Unknown system calls.
    expect("syscall(999)", sys(999, &[]), "-ENOSYS");
    expect("syscall(100000)", sys(100000, &[]), "-ENOSYS");

    // execve of things that are not programs, or through bad pointers.
    let garbage = CString::new(format!("{dir}/data/garbage")).unwrap_or_default();
    let argv0 = CString::new("garbage").unwrap_or_default();
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp: [*const c_char; 1] = [std::ptr::null()];
    let (a, e) = (argv.as_ptr() as c_long, envp.as_ptr() as c_long);
    expect(
        "execve(garbage file)",
        sys(SYS_execve, &[garbage.as_ptr() as c_long, a, e]),
        "-ENOEXEC",
    );
    expect(
        "execve(LOW, argv, envp)",
        sys(SYS_execve, &[LOW, a, e]),
        "-EFAULT",
    );
    let empty = CString::new("").unwrap_or_default();
    expect(
        "execve(\"\", argv, envp)",
        sys(SYS_execve, &[empty.as_ptr() as c_long, a, e]),
        "-ENOENT",
    );

    say!("bad_input: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}
