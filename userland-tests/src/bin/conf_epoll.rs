//! epoll against Linux: level and edge triggered, EPOLLONESHOT, EPOLLHUP,
//! EPOLLRDHUP on pipes, closing a watched fd, ctl errors, blocking waits,
//! nesting. Prints one line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{errno, exit_now, fork, now_ms, sleep_ms, wait_for};

fn pipe(flags: i32) -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) }, 0);
    (fds[0], fds[1])
}

fn ctl(ep: i32, op: i32, fd: i32, events: u32, data: u64) -> i32 {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: valid event.
    unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }
}

/// (count, [(events, data)]).
fn wait(ep: i32, ms: i32) -> (i32, Vec<(u32, u64)>) {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: room for 8 events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, ms) };
    let v = evs.iter().take(n.max(0) as usize).map(|e| (e.events, e.u64)).collect();
    (n, v)
}

fn w(fd: i32, b: &[u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

fn rd(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: plain calls on valid local buffers throughout.
    unsafe {
        let n = libc::epoll_create1(0x1234);
        t("epoll_create1 with bad flags is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        let n = libc::epoll_create(0);
        t("epoll_create(0) is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        t("epoll_create1(EPOLL_CLOEXEC)", ep >= 0 && libc::fcntl(ep, libc::F_GETFD) == libc::FD_CLOEXEC, r(ep as i64));
        let (r0, w0) = pipe(libc::O_NONBLOCK);
        t("add", ctl(ep, libc::EPOLL_CTL_ADD, r0, IN, 11) == 0, r(-1));
        let rc = ctl(ep, libc::EPOLL_CTL_ADD, r0, IN, 11);
        t("adding twice is EEXIST", rc == -1 && errno() == libc::EEXIST, r(rc as i64));
        let rc = ctl(ep, libc::EPOLL_CTL_MOD, w0, IN, 0);
        t("MOD of an unwatched fd is ENOENT", rc == -1 && errno() == libc::ENOENT, r(rc as i64));
        let rc = ctl(ep, libc::EPOLL_CTL_DEL, w0, 0, 0);
        t("DEL of an unwatched fd is ENOENT", rc == -1 && errno() == libc::ENOENT, r(rc as i64));
        let rc = ctl(ep, libc::EPOLL_CTL_ADD, ep, IN, 0);
        t("watching itself is EINVAL", rc == -1 && errno() == libc::EINVAL, r(rc as i64));
        let rc = ctl(ep, libc::EPOLL_CTL_ADD, 999, IN, 0);
        t("a closed fd is EBADF", rc == -1 && errno() == libc::EBADF, r(rc as i64));
        let path = std::ffi::CString::new(format!("/tmp/conf_epoll.{}", libc::getpid())).unwrap_or_default();
        let file = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600);
        libc::unlink(path.as_ptr());
        let rc = ctl(ep, libc::EPOLL_CTL_ADD, file, IN, 0);
        t("a regular file is EPERM", rc == -1 && errno() == libc::EPERM, r(rc as i64));
        libc::close(file);
        let rc = ctl(ep, 99, r0, IN, 0);
        t("a bad op is EINVAL", rc == -1 && errno() == libc::EINVAL, r(rc as i64));
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
        let n = libc::epoll_wait(ep, evs.as_mut_ptr(), 0, 0);
        t("maxevents 0 is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));

        let (n, _) = wait(ep, 0);
        t("nothing ready", n == 0, r(n as i64));
        w(w0, b"ab");
        let (n, v) = wait(ep, 0);
        t("level-triggered: ready with data", n == 1 && v == vec![(IN, 11)], format!("{n} {v:?}"));
        let (n, v) = wait(ep, 0);
        t("level-triggered: still ready", n == 1 && v == vec![(IN, 11)], format!("{n} {v:?}"));
        let mut b = [0u8; 64];
        rd(r0, &mut b);
        let (n, _) = wait(ep, 0);
        t("level-triggered: not ready once drained", n == 0, r(n as i64));
        t("add the write end for EPOLLOUT", ctl(ep, libc::EPOLL_CTL_ADD, w0, OUT, 22) == 0, r(-1));
        let (n, v) = wait(ep, 0);
        t("write end is EPOLLOUT", n == 1 && v == vec![(OUT, 22)], format!("{n} {v:?}"));
        let big = vec![0u8; 65536];
        w(w0, &big);
        let (n, v) = wait(ep, 0);
        t("a full pipe: read end ready, write end not", n == 1 && v == vec![(IN, 11)], format!("{n} {v:?}"));
        let mut sink = vec![0u8; 65536];
        rd(r0, &mut sink);
        t("DEL", ctl(ep, libc::EPOLL_CTL_DEL, w0, 0, 0) == 0, r(-1));

        // Edge-triggered.
        let ep2 = libc::epoll_create1(0);
        let (r1, w1) = pipe(libc::O_NONBLOCK);
        ctl(ep2, libc::EPOLL_CTL_ADD, r1, IN | ET, 33);
        w(w1, b"x");
        let (n, v) = wait(ep2, 0);
        t("edge-triggered: first wait reports", n == 1 && v == vec![(IN, 33)], format!("{n} {v:?}"));
        let (n, _) = wait(ep2, 0);
        t("edge-triggered: no new edge, no event", n == 0, r(n as i64));
        w(w1, b"y");
        let (n, v) = wait(ep2, 0);
        t("edge-triggered: a new write is a new edge", n == 1 && v == vec![(IN, 33)], format!("{n} {v:?}"));
        rd(r1, &mut b);
        // One-shot.
        ctl(ep2, libc::EPOLL_CTL_MOD, r1, IN | ONESHOT, 44);
        w(w1, b"z");
        let (n, v) = wait(ep2, 0);
        t("one-shot: reported once", n == 1 && v == vec![(IN, 44)], format!("{n} {v:?}"));
        let (n, _) = wait(ep2, 0);
        t("one-shot: then disabled", n == 0, r(n as i64));
        ctl(ep2, libc::EPOLL_CTL_MOD, r1, IN, 55);
        let (n, v) = wait(ep2, 0);
        t("one-shot: MOD re-arms", n == 1 && v == vec![(IN, 55)], format!("{n} {v:?}"));
        rd(r1, &mut b);
        // Hang-up, and EPOLLRDHUP (not reported for pipes).
        ctl(ep2, libc::EPOLL_CTL_MOD, r1, IN | RDHUP, 66);
        libc::close(w1);
        let (n, v) = wait(ep2, 0);
        t("writer closed: EPOLLHUP without asking, no EPOLLRDHUP on a pipe", n == 1 && v == vec![(HUP, 66)], format!("{n} {v:?}"));
        // Closing the last fd of a watched file removes it.
        libc::close(r1);
        let (n, _) = wait(ep2, 0);
        t("closing the watched fd removes it", n == 0, r(n as i64));
        let (r3, w3) = pipe(0);
        libc::close(r3);
        ctl(ep2, libc::EPOLL_CTL_ADD, w3, OUT, 77);
        let (n, v) = wait(ep2, 0);
        t("reader closed: EPOLLOUT|EPOLLERR", n == 1 && v.first().is_some_and(|e| e.0 & ERR != 0 && e.1 == 77), format!("{n} {v:?}"));
        libc::close(w3);

        // Timeout and a blocking wait woken by a child.
        let t0 = now_ms();
        let (n, _) = wait(ep, 40);
        let el = now_ms() - t0;
        t("epoll_wait times out", n == 0 && el >= 35, format!("{n} after {el} ms"));
        let pid = fork();
        if pid == 0 {
            sleep_ms(30);
            w(w0, b"!");
            exit_now(0);
        }
        let (n, v) = wait(ep, 5000);
        t("a blocked epoll_wait wakes on data", n == 1 && v == vec![(IN, 11)], format!("{n} {v:?}"));
        let _ = wait_for(pid);
        // Nesting: an epoll fd is readable when its interest list is.
        let outer = libc::epoll_create1(0);
        ctl(outer, libc::EPOLL_CTL_ADD, ep, IN, 88);
        let (n, v) = wait(outer, 0);
        t("nested epoll reports the inner one ready", n == 1 && v == vec![(IN, 88)], format!("{n} {v:?}"));
        let mut p = libc::pollfd { fd: ep, events: libc::POLLIN, revents: 0 };
        let n = libc::poll(&mut p, 1, 0);
        t("poll on an epoll fd", n == 1 && p.revents == libc::POLLIN, format!("{n} {:#x}", p.revents));
        rd(r0, &mut b);
        let (n, _) = wait(outer, 0);
        t("nested: not ready once drained", n == 0, r(n as i64));
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let n = libc::epoll_pwait(ep, evs.as_mut_ptr(), 2, 0, &set);
        t("epoll_pwait", n == 0, r(n as i64));
        exit_now(if FAILED { 1 } else { 0 })
    }
}
