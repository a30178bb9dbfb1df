//! File-system conformance: path calls on a scratch directory under
//! `argv[1]` (default `/tmp`), each printed as `name: result` (the errno name
//! on failure), plus a few checks of /proc and /dev. The host test compares
//! the output with a native run, so everything printed is what Linux does.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, check, out, SysRes};

fn stat(p: &str, follow: bool) -> Result<libc::stat, i32> {
    // SAFETY: an all-zero stat is valid; the path is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let p = c(p);
    // SAFETY: valid pointers.
    let r = unsafe { if follow { libc::stat(p.as_ptr(), &mut st) } else { libc::lstat(p.as_ptr(), &mut st) } };
    check(r as i64).map(|_| st)
}

fn fstat(fd: i32) -> libc::stat {
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::fstat(fd, &mut st) };
    st
}

fn open(p: &str, flags: i32, mode: u32) -> SysRes {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::open(p.as_ptr(), flags, mode) } as i64)
}

fn path2(f: unsafe extern "C" fn(*const c_char, *const c_char) -> i32, a: &str, b: &str) -> SysRes {
    let (a, b) = (c(a), c(b));
    // SAFETY: NUL-terminated paths.
    check(unsafe { f(a.as_ptr(), b.as_ptr()) } as i64)
}

fn path1(f: unsafe extern "C" fn(*const c_char) -> i32, a: &str) -> SysRes {
    let a = c(a);
    // SAFETY: NUL-terminated path.
    check(unsafe { f(a.as_ptr()) } as i64)
}

fn mkdir(p: &str, mode: u32) -> SysRes {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mkdir(p.as_ptr(), mode) } as i64)
}

fn readlink(p: &str) -> Result<String, i32> {
    let p = c(p);
    let mut buf = [0u8; 256];
    // SAFETY: valid buffer and path.
    let n = check(unsafe { libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) } as i64)?;
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

fn write(fd: i32, data: &[u8]) -> SysRes {
    // SAFETY: valid buffer.
    check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) } as i64)
}

fn read_all(fd: i32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return v;
        }
        v.extend_from_slice(&buf[..n as usize]);
    }
}

fn names(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv as handed to main.
    let a = unsafe { args(argc, argv) };
    let base = a.get(1).cloned().unwrap_or_else(|| "/tmp".into());
    // SAFETY: plain call.
    let d = format!("{base}/conf_fs.{}", unsafe { libc::getpid() });
    let p = |s: &str| format!("{d}/{s}");
    report("mkdir", mkdir(&d, 0o755));
    report("mkdir again", mkdir(&d, 0o755));
    let fd = open(&p("f"), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o644).unwrap_or(-1) as i32;
    report("O_EXCL again", open(&p("f"), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o644));
    report("write", write(fd, b"hello"));
    let st = fstat(fd);
    out(&format!("size {} nlink {} mode {:o}\n", st.st_size, st.st_nlink, st.st_mode));
    report("link", path2(libc::link, &p("f"), &p("g")));
    out(&format!("nlink after link {}\n", fstat(fd).st_nlink));
    report("link exists", path2(libc::link, &p("f"), &p("g")));
    report("unlink f", path1(libc::unlink, &p("f")));
    out(&format!("nlink after unlink {}\n", fstat(fd).st_nlink));
    report("rename g h", path2(libc::rename, &p("g"), &p("h")));
    report("stat g", stat(&p("g"), true).map(|_| 0));
    report("rmdir non-empty", path1(libc::rmdir, &d));
    report("unlink dir", path1(libc::unlink, &d));
    report("rmdir file", path1(libc::rmdir, &p("h")));
    report("ENOTDIR", open(&p("h/x"), libc::O_RDONLY, 0));
    report("ENOENT", open(&p("nope"), libc::O_RDONLY, 0));
    report("O_DIRECTORY on file", open(&p("h"), libc::O_RDONLY | libc::O_DIRECTORY, 0));
    report("O_WRONLY on dir", open(&d, libc::O_WRONLY, 0));
    report("symlink", path2(libc::symlink, "h", &p("s")));
    out(&format!("readlink {:?}\n", readlink(&p("s"))));
    report("O_NOFOLLOW", open(&p("s"), libc::O_RDONLY | libc::O_NOFOLLOW, 0));
    out(&format!("stat via link size {:?}\n", stat(&p("s"), true).map(|s| s.st_size)));
    out(&format!("lstat is link {:?}\n", stat(&p("s"), false).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK)));
    report("readlink non-link", readlink(&p("h")).map(|_| 0));
    report("symlink loop a", path2(libc::symlink, "b", &p("a")));
    report("symlink loop b", path2(libc::symlink, "a", &p("b")));
    report("ELOOP", open(&p("a"), libc::O_RDONLY, 0));
    report("mkdir sub", mkdir(&p("sub"), 0o755));
    report("rename into itself", path2(libc::rename, &p("sub"), &p("sub/x")));
    report("rename dir over file", path2(libc::rename, &p("sub"), &p("h")));
    report("rename file over dir", path2(libc::rename, &p("h"), &p("sub")));
    // O_APPEND, O_TRUNC, truncate.
    let fa = open(&p("h"), libc::O_WRONLY | libc::O_APPEND, 0).unwrap_or(-1) as i32;
    // SAFETY: plain call.
    unsafe { libc::lseek(fa, 0, libc::SEEK_SET) };
    report("append", write(fa, b" world"));
    let fr = open(&p("h"), libc::O_RDONLY, 0).unwrap_or(-1) as i32;
    out(&format!("contents {:?}\n", String::from_utf8_lossy(&read_all(fr))));
    let h = c(&p("h"));
    // SAFETY: NUL-terminated path.
    report("truncate", check(unsafe { libc::truncate(h.as_ptr(), 3) } as i64));
    out(&format!("size after truncate {:?}\n", stat(&p("h"), true).map(|s| s.st_size)));
    report("O_TRUNC", open(&p("h"), libc::O_WRONLY | libc::O_TRUNC, 0));
    out(&format!("size after O_TRUNC {:?}\n", stat(&p("h"), true).map(|s| s.st_size)));
    // chmod, umask, access.
    // SAFETY: NUL-terminated path.
    report("chmod", check(unsafe { libc::chmod(h.as_ptr(), 0o600) } as i64));
    out(&format!("mode {:?}\n", stat(&p("h"), true).map(|s| format!("{:o}", s.st_mode))));
    // SAFETY: NUL-terminated path.
    report("access X_OK", check(unsafe { libc::access(h.as_ptr(), libc::X_OK) } as i64));
    // SAFETY: plain call.
    let old = unsafe { libc::umask(0o077) };
    report("create with umask", open(&p("u"), libc::O_CREAT | libc::O_WRONLY, 0o666));
    // SAFETY: plain call.
    unsafe { libc::umask(old) };
    out(&format!("umask mode {:?}\n", stat(&p("u"), true).map(|s| format!("{:o}", s.st_mode))));
    // utimensat with explicit times.
    let ts = [libc::timespec { tv_sec: 1_000_000, tv_nsec: 5 }, libc::timespec { tv_sec: 2_000_000, tv_nsec: 7 }];
    // SAFETY: valid path and array.
    report("utimensat", check(unsafe { libc::utimensat(libc::AT_FDCWD, h.as_ptr(), ts.as_ptr(), 0) } as i64));
    out(&format!("mtime {:?}\n", stat(&p("h"), true).map(|s| (s.st_mtime, s.st_mtime_nsec, s.st_atime))));
    let bad = [libc::timespec { tv_sec: 0, tv_nsec: 2_000_000_000 }, libc::timespec { tv_sec: 0, tv_nsec: 0 }];
    // SAFETY: valid path and array.
    report("utimensat bad nsec", check(unsafe { libc::utimensat(libc::AT_FDCWD, h.as_ptr(), bad.as_ptr(), 0) } as i64));
    // renameat2 NOREPLACE (raw: older glibc lacks the wrapper).
    let (u, hh) = (c(&p("u")), c(&p("h")));
    // SAFETY: valid paths.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, u.as_ptr(), libc::AT_FDCWD, hh.as_ptr(), 1) };
    report("renameat2 NOREPLACE", check(r));
    out(&format!("entries {:?}\n", names(&d)));
    // An unlinked file stays readable through its fd.
    report("unlink h", path1(libc::unlink, &p("h")));
    let again = open(&p("u"), libc::O_RDWR, 0).unwrap_or(-1) as i32;
    report("write u", write(again, b"still here"));
    report("unlink u", path1(libc::unlink, &p("u")));
    // SAFETY: plain call.
    unsafe { libc::lseek(again, 0, libc::SEEK_SET) };
    out(&format!("read unlinked {:?}\n", String::from_utf8_lossy(&read_all(again))));
    // statfs works on the directory.
    // SAFETY: all-zero statfs is valid; valid pointers.
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    let dc = c(&d);
    // SAFETY: valid pointers.
    report("statfs", check(unsafe { libc::statfs(dc.as_ptr(), &mut sf) } as i64));
    for n in ["s", "a", "b", "g"] {
        let _ = path1(libc::unlink, &p(n));
    }
    report("rmdir sub", path1(libc::rmdir, &p("sub")));
    report("rmdir", path1(libc::rmdir, &d));
    report("rmdir gone", path1(libc::rmdir, &d));
    // /proc and /dev.
    // SAFETY: plain call.
    let me = unsafe { libc::getpid() };
    out(&format!("/proc/self is me {}\n", readlink("/proc/self").map(|s| s == me.to_string()).unwrap_or(false)));
    out(&format!("exe {}\n", readlink("/proc/self/exe").map(|s| s.ends_with("/conf_fs")).unwrap_or(false)));
    let st = open("/proc/self/stat", libc::O_RDONLY, 0).map(|fd| String::from_utf8_lossy(&read_all(fd as i32)).into_owned()).unwrap_or_default();
    out(&format!("stat starts with pid {}\n", st.starts_with(&format!("{me} (conf_fs) R "))));
    let m = open("/proc/mounts", libc::O_RDONLY, 0).map(|fd| String::from_utf8_lossy(&read_all(fd as i32)).into_owned()).unwrap_or_default();
    out(&format!("proc mounted {}\n", m.lines().any(|l| l.split(' ').nth(1) == Some("/proc") && l.split(' ').nth(2) == Some("proc"))));
    let full = open("/dev/full", libc::O_WRONLY, 0).unwrap_or(-1) as i32;
    report("write /dev/full", write(full, b"x"));
    let null = open("/dev/null", libc::O_RDWR, 0).unwrap_or(-1) as i32;
    report("write /dev/null", write(null, b"x"));
    out(&format!("read /dev/null {}\n", read_all(null).len()));
    0
}
