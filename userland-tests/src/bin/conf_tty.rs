//! Pseudo-terminals against Linux: ptmx/ptsname/unlockpt, canonical line
//! editing and echo through the line discipline, ONLCR, EOF, raw mode with
//! VMIN/VTIME, window size, a controlling terminal and ^C to its foreground
//! group, hang-up. Prints one line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::ffi::CStr;
use std::os::raw::c_char;
use userland_tests::{describe_status, errno, errno_name, exit_now, fork, now_ms, sleep_ms, wait_for};

fn w(fd: i32, b: &[u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

fn rd(fd: i32, n: usize) -> Result<Vec<u8>, i32> {
    let mut b = vec![0u8; n];
    // SAFETY: valid buffer.
    let k = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
    if k < 0 {
        return Err(errno());
    }
    b.truncate(k as usize);
    Ok(b)
}

/// Everything the master has to read now (the echo), without blocking.
fn drain(m: &i32) -> Vec<u8> {
    let mut all = Vec::new();
    // SAFETY: plain calls.
    unsafe {
        let fl = libc::fcntl(*m, libc::F_GETFL);
        libc::fcntl(*m, libc::F_SETFL, fl | libc::O_NONBLOCK);
        while let Ok(b) = rd(*m, 256) {
            if b.is_empty() {
                break;
            }
            all.extend(b);
        }
        libc::fcntl(*m, libc::F_SETFL, fl);
    }
    all
}

/// A new pty pair (master, slave), slave opened with O_NOCTTY.
fn pair() -> (i32, i32, String) {
    // SAFETY: plain calls; ptsname returns a static buffer copied at once.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt: {}", errno_name(errno()));
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = CStr::from_ptr(libc::ptsname(m)).to_string_lossy().into_owned();
        let cname = std::ffi::CString::new(name.clone()).unwrap_or_default();
        let s = libc::open(cname.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(s >= 0, "open {name}: {}", errno_name(errno()));
        (m, s, name)
    }
}

fn show(b: &[u8]) -> String {
    b.iter().flat_map(|c| std::ascii::escape_default(*c)).map(char::from).collect()
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: plain calls on valid local buffers throughout.
    unsafe {
        // Locked until unlockpt.
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        t("posix_openpt", m >= 0, r(m as i64));
        let mut n: u32 = 99;
        let rc = libc::ioctl(m, libc::TIOCGPTN, &mut n);
        let name = format!("/dev/pts/{n}");
        let cname = std::ffi::CString::new(name.clone()).unwrap_or_default();
        t("TIOCGPTN", rc == 0, r(rc as i64));
        let s = libc::open(cname.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        t("opening a locked slave is EIO", s == -1 && errno() == libc::EIO, r(s as i64));
        let ok = libc::grantpt(m) == 0 && libc::unlockpt(m) == 0;
        let pn = CStr::from_ptr(libc::ptsname(m)).to_string_lossy().into_owned();
        t("grantpt, unlockpt, ptsname agree with TIOCGPTN", ok && pn == name, pn.clone());
        let s = libc::open(cname.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        t("open the unlocked slave", s >= 0, r(s as i64));
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(s, &mut st);
        t("the slave is a character device", st.st_mode & libc::S_IFMT == libc::S_IFCHR, format!("{:o}", st.st_mode));
        t("isatty on both sides", libc::isatty(s) == 1 && libc::isatty(m) == 1, String::new());
        let mut tio: libc::termios = std::mem::zeroed();
        libc::tcgetattr(s, &mut tio);
        t(
            "default termios: ICANON ECHO ISIG ICRNL OPOST|ONLCR, VERASE=^?",
            tio.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG) == libc::ICANON | libc::ECHO | libc::ISIG
                && tio.c_iflag & libc::ICRNL != 0
                && tio.c_oflag & (libc::OPOST | libc::ONLCR) == libc::OPOST | libc::ONLCR
                && tio.c_cc[libc::VERASE] == 0x7f,
            format!("{:o} {:o} {:o}", tio.c_iflag, tio.c_oflag, tio.c_lflag),
        );

        // Canonical mode through the master.
        w(m, b"hello\n");
        let got = rd(s, 100);
        t("a line written to the master is read from the slave", got == Ok(b"hello\n".to_vec()), format!("{got:?}"));
        let echo = drain(&m);
        t("echo with ONLCR", echo == b"hello\r\n", show(&echo));
        w(m, b"ab\x7fc\r");
        let got = rd(s, 100);
        t("erase (^?) and CR->NL", got == Ok(b"ac\n".to_vec()), format!("{got:?}"));
        let echo = drain(&m);
        t("erase echoes BS SP BS", echo == b"ab\x08 \x08c\r\n", show(&echo));
        w(m, b"junk\x15ok\n");
        let got = rd(s, 100);
        t("kill (^U)", got == Ok(b"ok\n".to_vec()), format!("{got:?}"));
        drain(&m);
        w(m, b"one two\x17three\n");
        let got = rd(s, 100);
        t("word erase (^W)", got == Ok(b"one three\n".to_vec()), format!("{got:?}"));
        drain(&m);
        w(m, b"l1\nl2\n");
        let a = rd(s, 100);
        let b = rd(s, 100);
        t("one line per read", a == Ok(b"l1\n".to_vec()) && b == Ok(b"l2\n".to_vec()), format!("{a:?} {b:?}"));
        w(m, b"part\x04");
        let got = rd(s, 100);
        t("^D ends a partial line without a newline", got == Ok(b"part".to_vec()), format!("{got:?}"));
        w(m, b"\x04");
        let got = rd(s, 100);
        t("^D on an empty line reads as end of file", got == Ok(vec![]), format!("{got:?}"));
        drain(&m);
        w(s, b"out\n");
        let echo = drain(&m);
        t("slave output gets ONLCR", echo == b"out\r\n", show(&echo));
        let mut avail: i32 = -1;
        w(m, b"xy\n");
        // Linux moves pty input to the line discipline asynchronously.
        sleep_ms(20);
        libc::ioctl(s, libc::FIONREAD, &mut avail);
        t("FIONREAD", avail == 3, format!("{avail}"));
        libc::tcflush(s, libc::TCIFLUSH);
        libc::ioctl(s, libc::FIONREAD, &mut avail);
        t("tcflush(TCIFLUSH) discards input", avail == 0, format!("{avail}"));
        drain(&m);

        // Raw mode.
        let mut raw = tio;
        libc::cfmakeraw(&mut raw);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(s, libc::TCSANOW, &raw);
        w(m, b"x\r\x03");
        let got = rd(s, 100);
        t("raw: bytes pass untouched, no signal", got == Ok(b"x\r\x03".to_vec()), format!("{got:?}"));
        let echo = drain(&m);
        t("raw: no echo", echo.is_empty(), show(&echo));
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 1;
        libc::tcsetattr(s, libc::TCSANOW, &raw);
        let t0 = now_ms();
        let got = rd(s, 10);
        let el = now_ms() - t0;
        t("raw VMIN=0 VTIME=1: empty read after ~100 ms", got == Ok(vec![]) && el >= 80, format!("{got:?} after {el} ms"));
        raw.c_cc[libc::VMIN] = 3;
        raw.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(s, libc::TCSANOW, &raw);
        let pid = fork();
        if pid == 0 {
            w(m, b"a");
            sleep_ms(20);
            w(m, b"bc");
            exit_now(0);
        }
        let got = rd(s, 10);
        t("raw VMIN=3: the read waits for 3 bytes", got == Ok(b"abc".to_vec()), format!("{got:?}"));
        let _ = wait_for(pid);
        libc::tcsetattr(s, libc::TCSANOW, &tio);

        // Window size.
        let ws = libc::winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
        libc::ioctl(m, libc::TIOCSWINSZ, &ws);
        let mut got: libc::winsize = std::mem::zeroed();
        libc::ioctl(s, libc::TIOCGWINSZ, &mut got);
        t("TIOCSWINSZ on the master, TIOCGWINSZ on the slave", got.ws_row == 30 && got.ws_col == 100, format!("{}x{}", got.ws_row, got.ws_col));
        let rc = libc::ioctl(libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY), libc::TCGETS, &mut tio);
        t("TCGETS on /dev/null is ENOTTY", rc == -1 && errno() == libc::ENOTTY, r(rc as i64));

        // A session with the pty as its controlling terminal; ^C kills its
        // foreground group.
        let pid = fork();
        if pid == 0 {
            if libc::setsid() < 0 {
                exit_now(10);
            }
            let d = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR);
            if !(d == -1 && errno() == libc::ENXIO) {
                exit_now(11);
            }
            if libc::ioctl(s, libc::TIOCSCTTY, 0) != 0 {
                exit_now(12);
            }
            if libc::tcgetpgrp(s) != libc::getpgrp() {
                exit_now(13);
            }
            let d = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR);
            if d < 0 {
                exit_now(14);
            }
            w(d, b"ready\n");
            // Blocks until ^C.
            let _ = rd(s, 10);
            exit_now(15);
        }
        let mut seen = Vec::new();
        let t0 = now_ms();
        while !seen.ends_with(b"ready\r\n") && now_ms() - t0 < 5000 {
            if let Ok(b) = rd(m, 64) {
                seen.extend(b);
            }
        }
        t("the child's /dev/tty is the pty", seen.ends_with(b"ready\r\n"), show(&seen));
        sleep_ms(20);
        w(m, b"\x03");
        let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
        t("^C sends SIGINT to the foreground group", describe_status(st) == "killed by signal 2", describe_status(st));
        let echo = drain(&m);
        t("^C echoes as ^C", echo == b"^C", show(&echo));

        // Hang-up: master closed.
        libc::close(m);
        let got = rd(s, 10);
        t("slave read after the master closed is EOF", got == Ok(vec![]), format!("{got:?}"));
        let n = w(s, b"x");
        t("slave write after the master closed is EIO", n == -1 && errno() == libc::EIO, r(n as i64));
        libc::close(s);
        let (m2, s2, _) = pair();
        libc::close(s2);
        let got = rd(m2, 10);
        t("master read after the slave closed is EIO", got == Err(libc::EIO), format!("{got:?}"));
        libc::close(m2);
        exit_now(if FAILED { 1 } else { 0 })
    }
}
