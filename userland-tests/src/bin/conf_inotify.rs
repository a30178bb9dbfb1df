//! inotify against Linux: the events of creating, writing, closing,
//! reading, changing attributes, renaming and deleting files and
//! directories as a directory watch and a file watch see them (names,
//! `IN_ISDIR`, rename cookies, coalescing of unread duplicates),
//! `IN_ONESHOT`, `IN_IGNORED`, queue overflow, poll and a blocking read
//! woken by another process, and bad arguments. Prints every event seen as
//! a line, so a run is compared with a native one as a whole. Files go
//! under `argv[1]`. Exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, errno, exit_now, fork, say, sleep_ms, wait_for};

fn e() -> i32 {
    errno()
}

const NAMES: &[(u32, &str)] = &[
    (libc::IN_ACCESS, "ACCESS"),
    (libc::IN_MODIFY, "MODIFY"),
    (libc::IN_ATTRIB, "ATTRIB"),
    (libc::IN_CLOSE_WRITE, "CLOSE_WRITE"),
    (libc::IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"),
    (libc::IN_OPEN, "OPEN"),
    (libc::IN_MOVED_FROM, "MOVED_FROM"),
    (libc::IN_MOVED_TO, "MOVED_TO"),
    (libc::IN_CREATE, "CREATE"),
    (libc::IN_DELETE, "DELETE"),
    (libc::IN_DELETE_SELF, "DELETE_SELF"),
    (libc::IN_MOVE_SELF, "MOVE_SELF"),
    (libc::IN_Q_OVERFLOW, "Q_OVERFLOW"),
    (libc::IN_IGNORED, "IGNORED"),
    (libc::IN_ISDIR, "ISDIR"),
];

fn mask_name(m: u32) -> String {
    NAMES.iter().filter(|(b, _)| m & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

/// Every event available now: (wd, mask, cookie, name).
fn drain(fd: i32) -> Vec<(i32, u32, u32, String)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        let mut i = 0usize;
        while i + 16 <= n as usize {
            let w = |o: usize| u32::from_le_bytes([buf[i + o], buf[i + o + 1], buf[i + o + 2], buf[i + o + 3]]);
            let (wd, mask, cookie, len) = (w(0) as i32, w(4), w(8), w(12) as usize);
            let raw = &buf[i + 16..i + 16 + len];
            let name = String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(len)]).into_owned();
            out.push((wd, mask, cookie, name));
            i += 16 + len;
        }
    }
}

/// Print events as `ev WD MASK NAME`, with the watch named, and return the
/// short form `MASK name` for checks.
fn show(evs: &[(i32, u32, u32, String)], wds: &[(i32, &str)]) -> Vec<String> {
    evs.iter()
        .map(|(wd, m, _, n)| {
            let w = wds.iter().find(|x| x.0 == *wd).map_or("?", |x| x.1);
            say!("ev {w} {} {n}", mask_name(*m));
            if n.is_empty() {
                mask_name(*m)
            } else {
                format!("{} {n}", mask_name(*m))
            }
        })
        .collect()
}

fn path(dir: &str, n: &str) -> std::ffi::CString {
    c(&format!("{dir}/{n}"))
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    let base = a.get(1).cloned().unwrap_or_else(|| "/tmp".into());
    // SAFETY: plain call.
    let dir = format!("{base}/conf_inotify_{}", unsafe { libc::getpid() });
    let _ = std::fs::create_dir_all(&dir);
    // SAFETY (whole block): inotify and file calls with valid paths and buffers.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        t("inotify_init1", fd >= 0, r(fd));
        let dw = libc::inotify_add_watch(fd, c(&dir).as_ptr(), libc::IN_ALL_EVENTS);
        t("watch the directory", dw >= 1, r(dw));
        let wds = [(dw, "dir")];
        let f = libc::open(path(&dir, "f").as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
        libc::write(f, b"abc".as_ptr().cast(), 3);
        libc::write(f, b"def".as_ptr().cast(), 3);
        libc::close(f);
        let got = show(&drain(fd), &wds);
        t("create, write (coalesced), close", got == ["CREATE f", "OPEN f", "MODIFY f", "CLOSE_WRITE f"], format!("{got:?}"));
        libc::chmod(path(&dir, "f").as_ptr(), 0o600);
        let f = libc::open(path(&dir, "f").as_ptr(), libc::O_RDONLY);
        let mut b = [0u8; 8];
        libc::read(f, b.as_mut_ptr().cast(), 8);
        libc::close(f);
        let got = show(&drain(fd), &wds);
        t("chmod, open, read, close", got == ["ATTRIB f", "OPEN f", "ACCESS f", "CLOSE_NOWRITE f"], format!("{got:?}"));
        libc::mkdir(path(&dir, "sub").as_ptr(), 0o755);
        libc::rename(path(&dir, "f").as_ptr(), path(&dir, "g").as_ptr());
        let evs = drain(fd);
        let got = show(&evs, &wds);
        t("mkdir, rename", got == ["CREATE|ISDIR sub", "MOVED_FROM f", "MOVED_TO g"], format!("{got:?}"));
        t("one rename cookie", evs.len() == 3 && evs[1].2 != 0 && evs[1].2 == evs[2].2, String::new());
        // A watch on the file itself: events without a name.
        let fw = libc::inotify_add_watch(fd, path(&dir, "g").as_ptr(), libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF);
        let wds = [(dw, "dir"), (fw, "file")];
        let again = libc::inotify_add_watch(fd, path(&dir, "g").as_ptr(), libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF);
        t("same file, same wd", again == fw, r(again));
        let f = libc::open(path(&dir, "g").as_ptr(), libc::O_WRONLY | libc::O_APPEND);
        libc::write(f, b"x".as_ptr().cast(), 1);
        libc::close(f);
        let got = show(&drain(fd), &wds);
        t("both watches see a write", got == ["OPEN g", "MODIFY g", "MODIFY", "CLOSE_WRITE g"], format!("{got:?}"));
        libc::unlink(path(&dir, "g").as_ptr());
        libc::rmdir(path(&dir, "sub").as_ptr());
        let got = show(&drain(fd), &wds);
        t("unlink, rmdir", got == ["ATTRIB", "DELETE_SELF", "IGNORED", "DELETE g", "DELETE|ISDIR sub"], format!("{got:?}"));
        // IN_ONESHOT.
        let h = libc::open(path(&dir, "h").as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
        drain(fd);
        let ow = libc::inotify_add_watch(fd, path(&dir, "h").as_ptr(), libc::IN_MODIFY | libc::IN_ONESHOT);
        let wds = [(dw, "dir"), (ow, "oneshot")];
        libc::write(h, b"1".as_ptr().cast(), 1);
        libc::write(h, b"2".as_ptr().cast(), 1);
        let got = show(&drain(fd), &wds);
        t("IN_ONESHOT: one event, then IGNORED", got == ["MODIFY h", "MODIFY", "IGNORED", "MODIFY h"], format!("{got:?}"));
        // rm_watch.
        let rw = libc::inotify_add_watch(fd, path(&dir, "h").as_ptr(), libc::IN_ATTRIB);
        t("inotify_rm_watch", libc::inotify_rm_watch(fd, rw) == 0, r(-1));
        let wds = [(dw, "dir"), (rw, "removed")];
        let got = show(&drain(fd), &wds);
        t("rm_watch queues IGNORED", got == ["IGNORED"], format!("{got:?}"));
        let bad = libc::inotify_rm_watch(fd, rw);
        t("rm_watch again EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
        // Poll, and a blocking read woken by another process.
        let mut pl = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        t("poll: nothing yet", libc::poll(&mut pl, 1, 0) == 0, String::new());
        libc::write(h, b"3".as_ptr().cast(), 1);
        t("poll: readable", libc::poll(&mut pl, 1, 0) == 1, String::new());
        drain(fd);
        let bfd = libc::inotify_init();
        libc::inotify_add_watch(bfd, c(&dir).as_ptr(), libc::IN_CREATE);
        let pid = fork();
        if pid == 0 {
            sleep_ms(50);
            let k = libc::open(path(&dir, "late").as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            libc::close(k);
            exit_now(0);
        }
        let mut buf = [0u8; 64];
        let n = libc::read(bfd, buf.as_mut_ptr().cast(), 64);
        t("blocking read woken", n == 32 && &buf[16..20] == b"late", r(n));
        let _ = wait_for(pid);
        let got = show(&drain(fd), &[(dw, "dir")]);
        t("another process's file", got == ["CREATE late", "OPEN late", "CLOSE_WRITE late"], format!("{got:?}"));
        let small = libc::read(fd, buf.as_mut_ptr().cast(), 8);
        t("read, empty nonblocking: EAGAIN", small == -1 && e() == libc::EAGAIN, r(small));
        libc::write(h, b"4".as_ptr().cast(), 1);
        let small = libc::read(fd, buf.as_mut_ptr().cast(), 8);
        t("read, buffer too small: EINVAL", small == -1 && e() == libc::EINVAL, r(small));
        drain(fd);
        libc::close(h);
        drain(fd);
        // Overflow: far more events than the queue holds.
        for i in 0..5000 {
            let p = path(&dir, &format!("x{i}"));
            let k = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            libc::close(k);
            libc::unlink(p.as_ptr());
        }
        let evs = drain(fd);
        let overflows = evs.iter().filter(|x| x.1 == libc::IN_Q_OVERFLOW).count();
        t("overflow: one IN_Q_OVERFLOW, last", overflows == 1 && evs.last().is_some_and(|x| x.1 == libc::IN_Q_OVERFLOW && x.0 == -1), format!("{} events, {overflows} overflows", evs.len()));
        // Bad arguments.
        let z = libc::inotify_add_watch(fd, c(&dir).as_ptr(), 0);
        t("mask 0 EINVAL", z == -1 && e() == libc::EINVAL, r(z));
        let ne = libc::inotify_add_watch(fd, path(&dir, "nope").as_ptr(), libc::IN_MODIFY);
        t("no such file ENOENT", ne == -1 && e() == libc::ENOENT, r(ne));
        let od = libc::inotify_add_watch(fd, path(&dir, "h").as_ptr(), libc::IN_MODIFY | libc::IN_ONLYDIR);
        t("IN_ONLYDIR on a file ENOTDIR", od == -1 && e() == libc::ENOTDIR, r(od));
        let mc = libc::inotify_add_watch(fd, c(&dir).as_ptr(), libc::IN_MODIFY | libc::IN_MASK_CREATE);
        t("IN_MASK_CREATE on a watched file EEXIST", mc == -1 && e() == libc::EEXIST, r(mc));
        let nf = libc::inotify_add_watch(0, c(&dir).as_ptr(), libc::IN_MODIFY);
        t("not an inotify fd EINVAL", nf == -1 && e() == libc::EINVAL, r(nf));
        let bf = libc::inotify_init1(0x1234_0000);
        t("inotify_init1 bad flags EINVAL", bf == -1 && e() == libc::EINVAL, r(bf));
        libc::unlink(path(&dir, "h").as_ptr());
        libc::unlink(path(&dir, "late").as_ptr());
        libc::close(fd);
        libc::close(bfd);
        libc::rmdir(c(&dir).as_ptr());
    }
    // SAFETY: single-threaded.
    if unsafe { FAILED } {
        1
    } else {
        0
    }
}
