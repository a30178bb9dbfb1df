//! File locks against Linux: `flock` (shared/exclusive, per description,
//! inherited across fork and dup, blocking), POSIX record locks (ranges,
//! splitting, `F_GETLK` reports, release on any close and at exit,
//! `EDEADLK`), and OFD locks (per description, conflicting with POSIX
//! ones). Files go under `argv[1]`. One line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, errno, exit_now, fork, in_child, sleep_ms, wait_for};

fn e() -> i32 {
    errno()
}

fn open(p: &str, flags: i32) -> i32 {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    unsafe { libc::open(p.as_ptr(), flags | libc::O_CREAT, 0o600) }
}

fn fl(ty: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: an all-zero flock is valid.
    let mut f: libc::flock = unsafe { std::mem::zeroed() };
    f.l_type = ty as i16;
    f.l_whence = libc::SEEK_SET as i16;
    f.l_start = start;
    f.l_len = len;
    f
}

fn lk(fd: i32, cmd: i32, ty: i32, start: i64, len: i64) -> i32 {
    let f = fl(ty, start, len);
    // SAFETY: f is a valid flock.
    unsafe { libc::fcntl(fd, cmd, &f) }
}

/// `F_GETLK`-style query: (type, start, len, pid).
fn getlk(fd: i32, cmd: i32, ty: i32, start: i64, len: i64) -> (i32, i64, i64, i32) {
    let mut f = fl(ty, start, len);
    // SAFETY: f is a valid flock.
    unsafe { libc::fcntl(fd, cmd, &mut f) };
    (f.l_type as i32, f.l_start, f.l_len, f.l_pid)
}

fn flock(fd: i32, op: i32) -> i32 {
    // SAFETY: plain call.
    unsafe { libc::flock(fd, op) }
}

fn close(fd: i32) {
    // SAFETY: plain call.
    unsafe { libc::close(fd) };
}

fn flock_tests(dir: &str) {
    let path = format!("{dir}/conf_locks_flock");
    let a = open(&path, libc::O_RDWR);
    t("flock LOCK_EX", flock(a, libc::LOCK_EX) == 0, r(-1));
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        if flock(b, libc::LOCK_EX | libc::LOCK_NB) != -1 || errno() != libc::EWOULDBLOCK {
            return 1;
        }
        if flock(b, libc::LOCK_SH | libc::LOCK_NB) != -1 || errno() != libc::EWOULDBLOCK {
            return 2;
        }
        // The inherited description holds the lock: locking it again is fine.
        if flock(a, libc::LOCK_EX | libc::LOCK_NB) != 0 {
            return 3;
        }
        0
    });
    t("another description: EWOULDBLOCK; the inherited one: ok", st == 0, format!("{st:#x}"));
    // SAFETY: plain call.
    let d = unsafe { libc::dup(a) };
    close(d);
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        (flock(b, libc::LOCK_SH | libc::LOCK_NB) != -1) as i32
    });
    t("closing a dup keeps the lock", st == 0, format!("{st:#x}"));
    t("downgrade to LOCK_SH", flock(a, libc::LOCK_SH) == 0, r(-1));
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        if flock(b, libc::LOCK_SH | libc::LOCK_NB) != 0 {
            return 1;
        }
        (flock(b, libc::LOCK_EX | libc::LOCK_NB) != -1) as i32 + 2 * (errno() != libc::EWOULDBLOCK) as i32
    });
    t("shared locks coexist, exclusive waits", st == 0, format!("{st:#x}"));
    // A blocked flock is granted when the holder unlocks.
    t("LOCK_EX again", flock(a, libc::LOCK_EX) == 0, r(-1));
    let pid = fork();
    if pid == 0 {
        let b = open(&path, libc::O_RDWR);
        exit_now(if flock(b, libc::LOCK_EX) == 0 { 0 } else { 1 });
    }
    sleep_ms(50);
    t("LOCK_UN", flock(a, libc::LOCK_UN) == 0, r(-1));
    let st = wait_for(pid).map(|x| x.1).unwrap_or(-1);
    t("blocked flock granted", st == 0, format!("{st:#x}"));
    let bad = flock(a, 77);
    t("flock bad op EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
    let badf = flock(999, libc::LOCK_SH);
    t("flock bad fd EBADF", badf == -1 && e() == libc::EBADF, r(badf));
    // Closing the last descriptor releases the lock.
    flock(a, libc::LOCK_EX);
    close(a);
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        (flock(b, libc::LOCK_EX | libc::LOCK_NB) != 0) as i32
    });
    t("released at the last close", st == 0, format!("{st:#x}"));
}

fn posix_tests(dir: &str) {
    let path = format!("{dir}/conf_locks_posix");
    let a = open(&path, libc::O_RDWR);
    // SAFETY: plain call.
    let me = unsafe { libc::getpid() };
    t("F_SETLK write [0,100)", lk(a, libc::F_SETLK, libc::F_WRLCK, 0, 100) == 0, r(-1));
    t("F_SETLK read [200,300)", lk(a, libc::F_SETLK, libc::F_RDLCK, 200, 100) == 0, r(-1));
    t("own locks never conflict", getlk(a, libc::F_GETLK, libc::F_WRLCK, 0, 0).0 == libc::F_UNLCK, String::new());
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        let g = getlk(b, libc::F_GETLK, libc::F_RDLCK, 50, 10);
        if g != (libc::F_WRLCK, 0, 100, me) {
            say_detail(&format!("{g:?}"));
            return 1;
        }
        if lk(b, libc::F_SETLK, libc::F_RDLCK, 99, 1) != -1 || (errno() != libc::EAGAIN && errno() != libc::EACCES) {
            return 2;
        }
        if lk(b, libc::F_SETLK, libc::F_RDLCK, 250, 10) != 0 {
            return 3;
        }
        if lk(b, libc::F_SETLK, libc::F_WRLCK, 250, 10) != -1 {
            return 4;
        }
        if lk(b, libc::F_SETLK, libc::F_WRLCK, 100, 100) != 0 {
            return 5;
        }
        0
    });
    t("another process: F_GETLK report, conflicts, neighbours", st == 0, format!("{st:#x}"));
    t("unlock the middle [40,60)", lk(a, libc::F_SETLK, libc::F_UNLCK, 40, 20) == 0, r(-1));
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        let mid = getlk(b, libc::F_GETLK, libc::F_WRLCK, 45, 1);
        let left = getlk(b, libc::F_GETLK, libc::F_WRLCK, 30, 1);
        let right = getlk(b, libc::F_GETLK, libc::F_WRLCK, 70, 1);
        (mid.0 != libc::F_UNLCK) as i32 | ((left.1, left.2) != (0, 40)) as i32 * 2 | ((right.1, right.2) != (60, 40)) as i32 * 4
    });
    t("split into [0,40) and [60,100)", st == 0, format!("{st:#x}"));
    t("to EOF: len 0", lk(a, libc::F_SETLK, libc::F_WRLCK, 1000, 0) == 0, r(-1));
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        let g = getlk(b, libc::F_GETLK, libc::F_WRLCK, 5000, 1);
        ((g.1, g.2) != (1000, 0)) as i32
    });
    t("F_GETLK reports len 0 for to-EOF", st == 0, format!("{st:#x}"));
    // Closing any descriptor of the file drops the process's locks.
    let other = open(&path, libc::O_RDONLY);
    close(other);
    let st = in_child(|| {
        let b = open(&path, libc::O_RDWR);
        (getlk(b, libc::F_GETLK, libc::F_WRLCK, 0, 0).0 != libc::F_UNLCK) as i32
    });
    t("any close releases POSIX locks", st == 0, format!("{st:#x}"));
    // Exit releases them too.
    let st = in_child(|| lk(a, libc::F_SETLK, libc::F_WRLCK, 0, 10));
    t("child locks", st == 0, format!("{st:#x}"));
    t("released at exit", getlk(a, libc::F_GETLK, libc::F_WRLCK, 0, 10).0 == libc::F_UNLCK, String::new());
    // Blocking F_SETLKW granted on unlock.
    lk(a, libc::F_SETLK, libc::F_WRLCK, 0, 10);
    let pid = fork();
    if pid == 0 {
        let b = open(&path, libc::O_RDWR);
        exit_now(if lk(b, libc::F_SETLKW, libc::F_WRLCK, 5, 1) == 0 { 0 } else { 1 });
    }
    sleep_ms(50);
    lk(a, libc::F_SETLK, libc::F_UNLCK, 0, 10);
    let st = wait_for(pid).map(|x| x.1).unwrap_or(-1);
    t("blocked F_SETLKW granted", st == 0, format!("{st:#x}"));
    // Deadlock: exactly one of the two waiters gets EDEADLK.
    let mut p = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    lk(a, libc::F_SETLK, libc::F_WRLCK, 0, 1);
    let pid = fork();
    if pid == 0 {
        let b = open(&path, libc::O_RDWR);
        lk(b, libc::F_SETLK, libc::F_WRLCK, 1, 1);
        // SAFETY: valid buffers.
        unsafe { libc::write(p[1], b"r".as_ptr().cast(), 1) };
        let got = lk(b, libc::F_SETLKW, libc::F_WRLCK, 0, 1);
        let v = if got == 0 { 0u8 } else if errno() == libc::EDEADLK { 1 } else { 2 };
        // SAFETY: valid buffers.
        unsafe { libc::write(p[1], [v].as_ptr().cast(), 1) };
        exit_now(0);
    }
    let mut b = [0u8; 1];
    // SAFETY: valid buffer.
    unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
    sleep_ms(50);
    let got = lk(a, libc::F_SETLKW, libc::F_WRLCK, 1, 1);
    let mine = if got == 0 { 0 } else if e() == libc::EDEADLK { 1 } else { 2 };
    if mine == 1 {
        lk(a, libc::F_SETLK, libc::F_UNLCK, 0, 1);
    }
    // SAFETY: valid buffer.
    unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
    let _ = wait_for(pid);
    t("exactly one EDEADLK", mine + b[0] as i32 == 1, format!("{mine} {}", b[0]));
    close(p[0]);
    close(p[1]);
    lk(a, libc::F_SETLK, libc::F_UNLCK, 0, 0);
    // Bad arguments.
    let ro = open(&path, libc::O_RDONLY);
    let w = lk(ro, libc::F_SETLK, libc::F_WRLCK, 0, 1);
    t("write lock on O_RDONLY EBADF", w == -1 && e() == libc::EBADF, r(w));
    let bt = lk(a, libc::F_SETLK, 9, 0, 1);
    t("bad l_type EINVAL", bt == -1 && e() == libc::EINVAL, r(bt));
    let mut f = fl(libc::F_RDLCK, 0, 1);
    f.l_whence = 7;
    // SAFETY: f is valid.
    let bw = unsafe { libc::fcntl(a, libc::F_SETLK, &f) };
    t("bad l_whence EINVAL", bw == -1 && e() == libc::EINVAL, r(bw));
    let ns = lk(a, libc::F_SETLK, libc::F_RDLCK, -5, 1);
    t("negative start EINVAL", ns == -1 && e() == libc::EINVAL, r(ns));
    let gu = lk(a, libc::F_GETLK, libc::F_UNLCK, 0, 1);
    t("F_GETLK F_UNLCK EINVAL", gu == -1 && e() == libc::EINVAL, r(gu));
    close(ro);
    close(a);
}

fn ofd_tests(dir: &str) {
    let path = format!("{dir}/conf_locks_ofd");
    let a = open(&path, libc::O_RDWR);
    let b = open(&path, libc::O_RDWR);
    t("OFD write lock", lk(a, libc::F_OFD_SETLK, libc::F_WRLCK, 0, 10) == 0, r(-1));
    let c2 = lk(b, libc::F_OFD_SETLK, libc::F_WRLCK, 5, 1);
    t("another description of the same process conflicts", c2 == -1 && e() == libc::EAGAIN, r(c2));
    let px = lk(b, libc::F_SETLK, libc::F_RDLCK, 5, 1);
    t("a POSIX lock conflicts with it", px == -1 && e() == libc::EAGAIN, r(px));
    let g = getlk(b, libc::F_OFD_GETLK, libc::F_RDLCK, 0, 1);
    t("F_OFD_GETLK reports pid -1", g == (libc::F_WRLCK, 0, 10, -1), format!("{g:?}"));
    let g = getlk(b, libc::F_GETLK, libc::F_RDLCK, 0, 1);
    t("F_GETLK sees it too", g.0 == libc::F_WRLCK && g.3 == -1, format!("{g:?}"));
    let mut f = fl(libc::F_RDLCK, 0, 1);
    f.l_pid = 5;
    // SAFETY: f is valid.
    let bp = unsafe { libc::fcntl(a, libc::F_OFD_SETLK, &f) };
    t("OFD l_pid != 0 EINVAL", bp == -1 && e() == libc::EINVAL, r(bp));
    // SAFETY: plain call.
    let d = unsafe { libc::dup(a) };
    close(d);
    t("closing a dup keeps it", lk(b, libc::F_OFD_SETLK, libc::F_WRLCK, 5, 1) == -1, String::new());
    close(a);
    t("the last close releases it", lk(b, libc::F_OFD_SETLK, libc::F_WRLCK, 5, 1) == 0, r(-1));
    close(b);
}

fn say_detail(s: &str) {
    userland_tests::err(&format!("detail: {s}\n"));
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    let dir = a.get(1).cloned().unwrap_or_else(|| "/tmp".into());
    flock_tests(&dir);
    posix_tests(&dir);
    ofd_tests(&dir);
    for n in ["flock", "posix", "ofd"] {
        let p = c(&format!("{dir}/conf_locks_{n}"));
        // SAFETY: NUL-terminated path.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    // SAFETY: single-threaded.
    if unsafe { FAILED } {
        1
    } else {
        0
    }
}
