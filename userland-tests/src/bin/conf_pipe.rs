//! Pipes and FIFOs against Linux: capacity, F_GETPIPE_SZ/F_SETPIPE_SZ,
//! O_NONBLOCK, PIPE_BUF atomicity, EOF, EPIPE, blocking transfer across
//! fork, FIFO open rules. Prints one line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::ffi::CString;
use std::os::raw::c_char;
use userland_tests::{errno, errno_name, exit_now, fork, wait_for};

fn pipe2(flags: i32) -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    assert_eq!(rc, 0);
    (fds[0], fds[1])
}

fn write(fd: i32, b: &[u8]) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

fn read(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn close(fd: i32) {
    // SAFETY: plain call.
    unsafe { libc::close(fd) };
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: plain calls throughout; buffers are valid locals.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let (rd, wr) = pipe2(libc::O_NONBLOCK);
        let mut buf = vec![0u8; 70000];
        let n = read(rd, &mut buf);
        t("read of an empty pipe with O_NONBLOCK is EAGAIN", n == -1 && errno() == libc::EAGAIN, r(n));
        let sz = libc::fcntl(rd, libc::F_GETPIPE_SZ);
        t("F_GETPIPE_SZ is 65536", sz == 65536, format!("{sz}"));
        let page = vec![b'x'; 4096];
        let mut total = 0;
        loop {
            let n = write(wr, &page);
            if n < 0 {
                break;
            }
            total += n;
        }
        t("a pipe holds 64 KiB", total == 65536, format!("{total}"));
        t("a write to a full pipe is EAGAIN", errno() == libc::EAGAIN, errno_name(errno()));
        let n = write(wr, b"y");
        t("even one byte", n == -1 && errno() == libc::EAGAIN, r(n));
        let n = read(rd, &mut buf[..100]);
        t("read 100", n == 100, r(n));
        let n = write(wr, &page);
        t("PIPE_BUF-sized write into 100 free bytes is EAGAIN (atomic)", n == -1 && errno() == libc::EAGAIN, r(n));
        let rc = libc::fcntl(wr, libc::F_SETPIPE_SZ, 4096);
        t("shrinking below the content is EBUSY", rc == -1 && errno() == libc::EBUSY, r(rc as isize));
        let n = read(rd, &mut buf);
        t("drain", n == 65436, r(n));
        let rc = libc::fcntl(wr, libc::F_SETPIPE_SZ, 5000);
        t("F_SETPIPE_SZ rounds up to a power of two pages", rc == 8192, r(rc as isize));
        let rc = libc::fcntl(rd, libc::F_GETPIPE_SZ);
        t("both ends see the new size", rc == 8192, r(rc as isize));
        let big = vec![b'z'; 10000];
        let n = write(wr, &big);
        t("a large nonblocking write is partial", n == 8192, r(n));
        let n = read(rd, &mut buf);
        t("read it back", n == 8192 && buf[..n as usize].iter().all(|&c| c == b'z'), r(n));
        close(wr);
        let n = read(rd, &mut buf);
        t("read after the last writer closed is 0 (EOF)", n == 0, r(n));
        close(rd);

        let (rd, wr) = pipe2(0);
        close(rd);
        let n = write(wr, b"abc");
        t("write with no reader is EPIPE", n == -1 && errno() == libc::EPIPE, r(n));
        close(wr);

        // A blocking transfer bigger than the pipe, across fork.
        let (rd, wr) = pipe2(0);
        let pid = fork();
        if pid == 0 {
            close(rd);
            let chunk = vec![7u8; 30000];
            let mut left = 200_000usize;
            while left > 0 {
                let n = write(wr, &chunk[..left.min(chunk.len())]);
                if n <= 0 {
                    exit_now(3);
                }
                left -= n as usize;
            }
            exit_now(0);
        }
        close(wr);
        let mut got = 0usize;
        let mut good = true;
        loop {
            let n = read(rd, &mut buf);
            if n <= 0 {
                break;
            }
            good &= buf[..n as usize].iter().all(|&c| c == 7);
            got += n as usize;
        }
        t("200000 bytes through a blocking pipe", got == 200_000 && good, format!("{got}"));
        let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
        t("writer exited 0", st == 0, format!("{st}"));
        close(rd);

        // FIFOs.
        let path = CString::new(format!("/tmp/conf_pipe_fifo.{}", libc::getpid())).unwrap_or_default();
        libc::unlink(path.as_ptr());
        let rc = libc::mkfifo(path.as_ptr(), 0o600);
        t("mkfifo", rc == 0, r(rc as isize));
        let mut st: libc::stat = std::mem::zeroed();
        let rc = libc::stat(path.as_ptr(), &mut st);
        t("stat says S_IFIFO", rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO, format!("{:o}", st.st_mode));
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK);
        t("O_WRONLY|O_NONBLOCK open without a reader is ENXIO", fd == -1 && errno() == libc::ENXIO, r(fd as isize));
        let rfd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
        t("O_RDONLY|O_NONBLOCK open succeeds at once", rfd >= 0, r(rfd as isize));
        let wfd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK);
        t("with a reader, a nonblocking writer opens", wfd >= 0, r(wfd as isize));
        let n = write(wfd, b"fifo!");
        let m = read(rfd, &mut buf);
        t("data flows through the FIFO", n == 5 && m == 5 && &buf[..5] == b"fifo!", format!("{} {}", r(n), r(m)));
        close(wfd);
        close(rfd);
        let pid = fork();
        if pid == 0 {
            // Blocks until the parent opens the read side.
            let w = libc::open(path.as_ptr(), libc::O_WRONLY);
            if w < 0 {
                exit_now(4);
            }
            let ok = write(w, b"hello") == 5;
            exit_now(if ok { 0 } else { 5 });
        }
        let rfd = libc::open(path.as_ptr(), libc::O_RDONLY);
        t("blocking open for reading meets the writer", rfd >= 0, r(rfd as isize));
        let mut got = Vec::new();
        loop {
            let n = read(rfd, &mut buf);
            if n <= 0 {
                break;
            }
            got.extend_from_slice(&buf[..n as usize]);
        }
        t("the FIFO delivers what the child wrote, then EOF", got == b"hello", format!("{got:?}"));
        let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
        t("FIFO writer exited 0", st == 0, format!("{st}"));
        close(rfd);
        libc::unlink(path.as_ptr());
        exit_now(if FAILED { 1 } else { 0 })
    }
}
