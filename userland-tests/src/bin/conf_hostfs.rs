//! hostfs checks, run in the guest by `tests/fs.rs` with a read-only export
//! at argv[1] and a writable one at argv[2] (each holding `a.txt` = "hello",
//! a symlink `escape` -> `../secret` and `abs` -> an absolute host path of
//! a file outside the export). Prints `name: result` lines.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, check, errno_name, out, SysRes};

fn open(p: &str, flags: i32) -> SysRes {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::open(p.as_ptr(), flags, 0o644) } as i64)
}

fn read_file(p: &str) -> Result<String, i32> {
    let fd = open(p, libc::O_RDONLY)? as i32;
    let mut buf = [0u8; 4096];
    // SAFETY: valid buffer.
    let n = check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as i64)?;
    // SAFETY: plain call.
    unsafe { libc::close(fd) };
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

fn show(r: Result<String, i32>) -> String {
    match r {
        Ok(s) => format!("{s:?}"),
        Err(e) => errno_name(e),
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv as handed to main.
    let a = unsafe { args(argc, argv) };
    let (ro, rw) = (a.get(1).cloned().unwrap_or_default(), a.get(2).cloned().unwrap_or_default());
    out(&format!("ro read: {}\n", show(read_file(&format!("{ro}/a.txt")))));
    report("ro open for write", open(&format!("{ro}/a.txt"), libc::O_WRONLY));
    report("ro create", open(&format!("{ro}/new"), libc::O_CREAT | libc::O_WRONLY));
    let p = c(&format!("{ro}/d"));
    // SAFETY: NUL-terminated path.
    report("ro mkdir", check(unsafe { libc::mkdir(p.as_ptr(), 0o755) } as i64));
    let p = c(&format!("{ro}/a.txt"));
    // SAFETY: NUL-terminated path.
    report("ro unlink", check(unsafe { libc::unlink(p.as_ptr()) } as i64));
    // SAFETY: NUL-terminated path.
    report("ro truncate", check(unsafe { libc::truncate(p.as_ptr(), 0) } as i64));
    out(&format!("escape via ..: {}\n", show(read_file(&format!("{ro}/../../secret")))));
    out(&format!("escape via relative link: {}\n", show(read_file(&format!("{ro}/escape")))));
    out(&format!("escape via absolute link: {}\n", show(read_file(&format!("{ro}/abs")))));
    let mut names: Vec<String> = std::fs::read_dir(&ro).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    out(&format!("ro listing: {names:?}\n"));
    // The writable export.
    match open(&format!("{rw}/new.txt"), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) {
        Ok(fd) => {
            // SAFETY: valid buffer.
            report("rw write", check(unsafe { libc::write(fd as i32, b"data from guest".as_ptr().cast(), 15) } as i64));
            // SAFETY: plain call.
            unsafe { libc::close(fd as i32) };
        }
        Err(e) => out(&format!("rw create: {}\n", errno_name(e))),
    }
    out(&format!("rw read back: {}\n", show(read_file(&format!("{rw}/new.txt")))));
    let p = c(&format!("{rw}/sub"));
    // SAFETY: NUL-terminated path.
    report("rw mkdir", check(unsafe { libc::mkdir(p.as_ptr(), 0o755) } as i64));
    // SAFETY: NUL-terminated path.
    report("rw rmdir", check(unsafe { libc::rmdir(p.as_ptr()) } as i64));
    report("rw write through link", open(&format!("{rw}/escape"), libc::O_WRONLY | libc::O_CREAT));
    0
}
