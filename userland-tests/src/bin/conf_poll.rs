//! poll, ppoll, select, pselect6, eventfd and timerfd against Linux.
//! Prints one line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{errno, exit_now, fork, now_ms, sleep_ms, wait_for};

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn poll1(fd: i32, events: i16, ms: i32) -> (i32, i16) {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    (n, p.revents)
}

fn w(fd: i32, b: &[u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

fn rd(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn u64_read(fd: i32) -> (isize, u64) {
    let mut b = [0u8; 8];
    let n = rd(fd, &mut b);
    (n, u64::from_le_bytes(b))
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    // SAFETY: plain calls on valid local buffers throughout.
    unsafe {
        let (r0, w0) = pipe();
        let (n, rev) = poll1(r0, libc::POLLIN, 0);
        t("poll of an empty pipe: 0, no events", n == 0 && rev == 0, format!("{n} {rev:#x}"));
        let (n, rev) = poll1(w0, libc::POLLOUT, 0);
        t("write end is POLLOUT", n == 1 && rev == libc::POLLOUT, format!("{n} {rev:#x}"));
        w(w0, b"abc");
        let (n, rev) = poll1(r0, libc::POLLIN | libc::POLLOUT, 0);
        t("read end with data is POLLIN only", n == 1 && rev == libc::POLLIN, format!("{n} {rev:#x}"));
        libc::close(w0);
        let (n, rev) = poll1(r0, libc::POLLIN, 0);
        t("writer gone, data left: POLLIN|POLLHUP", n == 1 && rev == libc::POLLIN | libc::POLLHUP, format!("{n} {rev:#x}"));
        let mut b = [0u8; 16];
        rd(r0, &mut b);
        let (n, rev) = poll1(r0, libc::POLLIN, 0);
        t("writer gone, empty: POLLHUP (even if not asked)", n == 1 && rev == libc::POLLHUP, format!("{n} {rev:#x}"));
        libc::close(r0);
        let (r1, w1) = pipe();
        libc::close(r1);
        let (n, rev) = poll1(w1, libc::POLLOUT, 0);
        t("reader gone: POLLOUT|POLLERR", n == 1 && rev & libc::POLLERR != 0, format!("{n} {rev:#x}"));
        libc::close(w1);
        let (n, rev) = poll1(999, libc::POLLIN, 0);
        t("closed fd: POLLNVAL", n == 1 && rev == libc::POLLNVAL, format!("{n} {rev:#x}"));
        let mut ps = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 7 }];
        let n = libc::poll(ps.as_mut_ptr(), 1, 0);
        t("negative fd is ignored, revents cleared", n == 0 && ps[0].revents == 0, format!("{n} {:#x}", ps[0].revents));
        let (r2, w2) = pipe();
        let t0 = now_ms();
        let (n, _) = poll1(r2, libc::POLLIN, 50);
        let el = now_ms() - t0;
        t("poll times out after its timeout", n == 0 && el >= 45, format!("{n} after {el} ms"));
        let n = libc::poll(std::ptr::null_mut(), 0, 20);
        t("poll of nothing sleeps and returns 0", n == 0, r(n as i64));

        // A writer wakes a blocked poll.
        let pid = fork();
        if pid == 0 {
            sleep_ms(30);
            w(w2, b"x");
            exit_now(0);
        }
        let (n, rev) = poll1(r2, libc::POLLIN, 5000);
        t("a blocked poll wakes when data arrives", n == 1 && rev == libc::POLLIN, format!("{n} {rev:#x}"));
        let _ = wait_for(pid);
        rd(r2, &mut b);

        // ppoll with a zero timespec and a signal mask.
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let mut p = libc::pollfd { fd: w2, events: libc::POLLOUT, revents: 0 };
        let n = libc::ppoll(&mut p, 1, &ts, &set);
        t("ppoll", n == 1 && p.revents == libc::POLLOUT, format!("{n} {:#x}", p.revents));

        // select.
        let mut rs: libc::fd_set = std::mem::zeroed();
        let mut ws: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(r2, &mut rs);
        libc::FD_SET(w2, &mut ws);
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let n = libc::select(w2.max(r2) + 1, &mut rs, &mut ws, std::ptr::null_mut(), &mut tv);
        t(
            "select: empty pipe not readable, write end writable",
            n == 1 && !libc::FD_ISSET(r2, &rs) && libc::FD_ISSET(w2, &ws),
            r(n as i64),
        );
        w(w2, b"y");
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(r2, &mut rs);
        let n = libc::select(r2 + 1, &mut rs, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        t("select: readable with data", n == 1 && libc::FD_ISSET(r2, &rs), r(n as i64));
        rd(r2, &mut b);
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(r2, &mut rs);
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 40_000 };
        let t0 = now_ms();
        let n = libc::select(r2 + 1, &mut rs, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        let el = now_ms() - t0;
        t(
            "select times out, clears the set and the timeout",
            n == 0 && !libc::FD_ISSET(r2, &rs) && tv.tv_sec == 0 && tv.tv_usec == 0 && el >= 35,
            format!("{n} tv={}.{:06} after {el} ms", tv.tv_sec, tv.tv_usec),
        );
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(63, &mut rs);
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let n = libc::select(64, &mut rs, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        t("select on a closed fd is EBADF", n == -1 && errno() == libc::EBADF, r(n as i64));
        let n = libc::select(-1, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        t("select with nfds < 0 is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        libc::FD_ZERO(&mut ws);
        libc::FD_SET(w2, &mut ws);
        let n = libc::pselect(w2 + 1, std::ptr::null_mut(), &mut ws, std::ptr::null_mut(), &ts, &set);
        t("pselect", n == 1 && libc::FD_ISSET(w2, &ws), r(n as i64));
        libc::close(r2);
        libc::close(w2);

        // eventfd.
        let e = libc::eventfd(2, libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK);
        t("eventfd", e >= 0, r(e as i64));
        let a = u64_read(e);
        let b2 = u64_read(e);
        let c = u64_read(e);
        t(
            "semaphore mode reads 1, 1, then EAGAIN",
            a == (8, 1) && b2 == (8, 1) && c.0 == -1 && errno() == libc::EAGAIN,
            format!("{a:?} {b2:?} {c:?}"),
        );
        let (n, rev) = poll1(e, libc::POLLIN | libc::POLLOUT, 0);
        t("zero counter: POLLOUT only", n == 1 && rev == libc::POLLOUT, format!("{rev:#x}"));
        let n = w(e, &5u64.to_le_bytes());
        let (_, rev) = poll1(e, libc::POLLIN | libc::POLLOUT, 0);
        t("after a write: POLLIN|POLLOUT", n == 8 && rev == libc::POLLIN | libc::POLLOUT, format!("{n} {rev:#x}"));
        let n = w(e, &u64::MAX.to_le_bytes());
        t("writing 2^64-1 is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        let n = w(e, &[1u8, 0, 0, 0]);
        t("a 4-byte write is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        let n = w(e, &(u64::MAX - 2).to_le_bytes());
        t("overflowing write is EAGAIN", n == -1 && errno() == libc::EAGAIN, r(n as i64));
        libc::close(e);
        let e = libc::eventfd(0, libc::EFD_NONBLOCK);
        w(e, &3u64.to_le_bytes());
        w(e, &4u64.to_le_bytes());
        let a = u64_read(e);
        t("counter mode reads the sum and resets", a == (8, 7), format!("{a:?}"));
        let mut small = [0u8; 4];
        let n = rd(e, &mut small);
        t("a 4-byte read is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        libc::close(e);
        let n = libc::eventfd(0, 0x4000_0000);
        t("eventfd with bad flags is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));

        // timerfd.
        let tf = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK);
        t("timerfd_create", tf >= 0, r(tf as i64));
        let a = u64_read(tf);
        t("unarmed timer read is EAGAIN", a.0 == -1 && errno() == libc::EAGAIN, format!("{a:?}"));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 },
        };
        let rc = libc::timerfd_settime(tf, 0, &spec, std::ptr::null_mut());
        let mut cur: libc::itimerspec = std::mem::zeroed();
        libc::timerfd_gettime(tf, &mut cur);
        t(
            "settime/gettime",
            rc == 0 && cur.it_interval.tv_nsec == 10_000_000 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= 20_000_000 && cur.it_value.tv_nsec > 0,
            format!("{rc} {}.{:09}", cur.it_value.tv_sec, cur.it_value.tv_nsec),
        );
        sleep_ms(55);
        let a = u64_read(tf);
        t("periodic timer counts its expirations", a.0 == 8 && a.1 >= 3, format!("{a:?}"));
        let (n, _) = poll1(tf, libc::POLLIN, 1000);
        let a = u64_read(tf);
        t("poll wakes at the next expiry", n == 1 && a.0 == 8 && a.1 >= 1, format!("{n} {a:?}"));
        let off: libc::itimerspec = std::mem::zeroed();
        let mut old: libc::itimerspec = std::mem::zeroed();
        libc::timerfd_settime(tf, 0, &off, &mut old);
        libc::timerfd_gettime(tf, &mut cur);
        t(
            "disarm returns the old setting; gettime is zero",
            old.it_interval.tv_nsec == 10_000_000 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
            format!("old iv {} cur {}", old.it_interval.tv_nsec, cur.it_value.tv_nsec),
        );
        libc::close(tf);
        // Blocking read of an absolute CLOCK_REALTIME one-shot timer.
        let tf = libc::timerfd_create(libc::CLOCK_REALTIME, 0);
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        let mut at = now;
        at.tv_nsec += 15_000_000;
        if at.tv_nsec >= 1_000_000_000 {
            at.tv_nsec -= 1_000_000_000;
            at.tv_sec += 1;
        }
        let spec = libc::itimerspec { it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 }, it_value: at };
        let rc = libc::timerfd_settime(tf, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut());
        let a = u64_read(tf);
        t("blocking read of an absolute one-shot timer returns 1", rc == 0 && a == (8, 1), format!("{rc} {a:?}"));
        libc::close(tf);
        let n = libc::timerfd_create(12345, 0);
        t("timerfd_create with a bad clock is EINVAL", n == -1 && errno() == libc::EINVAL, r(n as i64));
        exit_now(if FAILED { 1 } else { 0 })
    }
}
