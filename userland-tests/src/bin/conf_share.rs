//! What processes and threads share, and process handles, against Linux:
//! `CLONE_FS` (threads share the working directory and umask), `unshare`,
//! `close_range` (with `CLOSE_RANGE_CLOEXEC`), pidfds (`pidfd_open`, poll on
//! exit, `waitid(P_PIDFD)`, `pidfd_send_signal`, `pidfd_getfd`),
//! `capget`/`capset` for root and another user, and `prctl` (name, death
//! signal, child subreaper, no-new-privs, dumpable) and `signalfd` (read,
//! poll, epoll, blocking). Scratch directories go
//! under `argv[1]`. One line per check; exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, errno, exit_now, fork, in_child, wait_for};

fn e() -> i32 {
    errno()
}

fn cwd() -> String {
    std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()
}

fn sys(n: libc::c_long, a: u64, b: u64, c: u64, d: u64) -> i64 {
    // SAFETY: raw call; the tests pass valid pointers or none.
    unsafe { libc::syscall(n, a, b, c, d) as i64 }
}

fn fs_tests(dir: &str) {
    let a = format!("{dir}/conf_share_a");
    let b = format!("{dir}/conf_share_b");
    let _ = std::fs::create_dir_all(&a);
    let _ = std::fs::create_dir_all(&b);
    let _ = std::env::set_current_dir(&a);
    let bb = b.clone();
    std::thread::spawn(move || {
        let _ = std::env::set_current_dir(&bb);
        // SAFETY: plain call.
        unsafe { libc::umask(0o027) };
    })
    .join()
    .ok();
    t("a thread's chdir moves the process", cwd() == b, cwd());
    // SAFETY: plain call.
    let old = unsafe { libc::umask(0o022) };
    t("a thread's umask is the process's", old == 0o027, format!("{old:o}"));
    let aa = a.clone();
    let r2 = std::thread::spawn(move || {
        // SAFETY: plain call.
        let r = unsafe { libc::unshare(libc::CLONE_FS) };
        let _ = std::env::set_current_dir(&aa);
        r
    })
    .join()
    .unwrap_or(-1);
    t("unshare(CLONE_FS) in a thread", r2 == 0, r(r2));
    t("then its chdir is its own", cwd() == b, cwd());
    // SAFETY: plain call.
    let r3 = unsafe { libc::unshare(libc::CLONE_FILES) };
    t("unshare(CLONE_FILES)", r3 == 0, r(r3));
    // SAFETY: plain call.
    let bad = unsafe { libc::unshare(0x4) };
    t("unshare unknown flag EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
    let _ = std::env::set_current_dir("/");
    let _ = std::fs::remove_dir(&a);
    let _ = std::fs::remove_dir(&b);
}

fn close_range_tests() {
    let mut fds = Vec::new();
    for _ in 0..6 {
        // SAFETY: a NUL-terminated literal path.
        fds.push(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) });
    }
    let (lo, hi) = (fds[1] as u64, fds[3] as u64);
    t("close_range", sys(libc::SYS_close_range, lo, hi, 0, 0) == 0, r(-1));
    // SAFETY: plain calls.
    let open_now: Vec<bool> = fds.iter().map(|&f| unsafe { libc::fcntl(f, libc::F_GETFD) } != -1).collect();
    t("closed exactly [first, last]", open_now == [true, false, false, false, true, true], format!("{open_now:?}"));
    t("CLOSE_RANGE_CLOEXEC", sys(libc::SYS_close_range, fds[4] as u64, u32::MAX as u64, 4, 0) == 0, r(-1));
    // SAFETY: plain calls.
    let fl = unsafe { (libc::fcntl(fds[4], libc::F_GETFD), libc::fcntl(fds[0], libc::F_GETFD)) };
    t("marked close-on-exec, others untouched", fl == (libc::FD_CLOEXEC, 0), format!("{fl:?}"));
    let b1 = sys(libc::SYS_close_range, 5, 4, 0, 0);
    t("first > last EINVAL", b1 == -1 && e() == libc::EINVAL, r(b1));
    let b2 = sys(libc::SYS_close_range, 100, 200, 8, 0);
    t("unknown flag EINVAL", b2 == -1 && e() == libc::EINVAL, r(b2));
    t("CLOSE_RANGE_UNSHARE", sys(libc::SYS_close_range, fds[4] as u64, fds[5] as u64, 2, 0) == 0, r(-1));
    // SAFETY: plain call.
    unsafe { libc::close(fds[0]) };
}

fn pidfd_tests() {
    let mut p = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    let pid = fork();
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: valid buffer.
        unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
        exit_now(7);
    }
    let pfd = sys(libc::SYS_pidfd_open, pid as u64, 0, 0, 0) as i32;
    t("pidfd_open", pfd >= 0, r(pfd));
    // SAFETY: plain call.
    let fdfl = unsafe { libc::fcntl(pfd, libc::F_GETFD) };
    t("pidfd is close-on-exec", fdfl == libc::FD_CLOEXEC, format!("{fdfl}"));
    let mut pl = libc::pollfd { fd: pfd, events: libc::POLLIN, revents: 0 };
    // SAFETY: valid pollfd.
    let n = unsafe { libc::poll(&mut pl, 1, 0) };
    t("not readable while it runs", n == 0, r(n));
    // SAFETY: valid buffer.
    unsafe { libc::write(p[1], b"x".as_ptr().cast(), 1) };
    // SAFETY: valid pollfd.
    let n = unsafe { libc::poll(&mut pl, 1, 5000) };
    t("readable once it exits", n == 1 && pl.revents & libc::POLLIN != 0, format!("{n} {:#x}", pl.revents));
    // SAFETY: an all-zero siginfo is valid.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid siginfo; no rusage.
    let w = unsafe { libc::syscall(libc::SYS_waitid, 3, pfd, &mut si as *mut libc::siginfo_t, libc::WEXITED, 0usize) };
    // SAFETY: waitid filled si.
    let (spid, status) = unsafe { (si.si_pid(), si.si_status()) };
    t("waitid(P_PIDFD)", w == 0 && spid == pid && status == 7, format!("{w} {spid} {status}"));
    let gone = sys(libc::SYS_pidfd_send_signal, pfd as u64, libc::SIGTERM as u64, 0, 0);
    t("pidfd_send_signal to a reaped process ESRCH", gone == -1 && e() == libc::ESRCH, r(gone));
    // SAFETY: plain call.
    unsafe { libc::close(pfd) };
    // pidfd_send_signal kills.
    let pid = fork();
    if pid == 0 {
        loop {
            // SAFETY: plain call.
            unsafe { libc::pause() };
        }
    }
    let pfd = sys(libc::SYS_pidfd_open, pid as u64, 0, 0, 0) as i32;
    t("pidfd_send_signal", sys(libc::SYS_pidfd_send_signal, pfd as u64, libc::SIGTERM as u64, 0, 0) == 0, r(-1));
    let st = wait_for(pid).map(|x| x.1).unwrap_or(-1);
    t("killed by it", libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM, format!("{st:#x}"));
    // SAFETY: plain call.
    unsafe { libc::close(pfd) };
    let nf = sys(libc::SYS_pidfd_send_signal, 0, libc::SIGTERM as u64, 0, 0);
    t("pidfd_send_signal on a non-pidfd EBADF", nf == -1 && e() == libc::EBADF, r(nf));
    // pidfd_getfd on ourselves: the same description.
    // SAFETY: plain call.
    let me = unsafe { libc::getpid() };
    let selfpfd = sys(libc::SYS_pidfd_open, me as u64, 0, 0, 0) as i32;
    let dupd = sys(libc::SYS_pidfd_getfd, selfpfd as u64, p[0] as u64, 0, 0) as i32;
    t("pidfd_getfd", dupd >= 0, r(dupd));
    // SAFETY: plain calls.
    unsafe { libc::fcntl(p[0], libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: plain call.
    let fl = unsafe { libc::fcntl(dupd, libc::F_GETFL) };
    t("shares the description", fl & libc::O_NONBLOCK != 0, format!("{fl:#x}"));
    let bf = sys(libc::SYS_pidfd_send_signal, selfpfd as u64, 0, 0, 0x80);
    t("pidfd_send_signal unknown flags EINVAL", bf == -1 && e() == libc::EINVAL, r(bf));
    t("pidfd_send_signal signal 0", sys(libc::SYS_pidfd_send_signal, selfpfd as u64, 0, 0, 0) == 0, r(-1));
    let bad = sys(libc::SYS_pidfd_getfd, selfpfd as u64, 999, 0, 0);
    t("pidfd_getfd bad fd EBADF", bad == -1 && e() == libc::EBADF, r(bad));
    let esr = sys(libc::SYS_pidfd_open, 0x3fff_fff0, 0, 0, 0);
    t("pidfd_open no such pid ESRCH", esr == -1 && e() == libc::ESRCH, r(esr));
    let einv = sys(libc::SYS_pidfd_open, me as u64, 0x40, 0, 0);
    t("pidfd_open bad flags EINVAL", einv == -1 && e() == libc::EINVAL, r(einv));
    for f in [selfpfd, dupd, p[0], p[1]] {
        // SAFETY: plain call.
        unsafe { libc::close(f) };
    }
}

#[repr(C)]
struct CapHdr {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn caps_tests() {
    let mut h = CapHdr { version: 0x2008_0522, pid: 0 };
    let mut d = [CapData::default(); 2];
    let r0 = sys(libc::SYS_capget, &mut h as *mut _ as u64, d.as_mut_ptr() as u64, 0, 0);
    // (CAP_CHOWN..CAP_SYS_ADMIN: the host's own root may lack a few later ones.)
    t("capget as root: the capabilities", r0 == 0 && d[0].effective & 0x3f_ffff == 0x3f_ffff && d[0].permitted & 0x3f_ffff == 0x3f_ffff, format!("{d:?}"));
    let mut h = CapHdr { version: 1234, pid: 0 };
    let rb = sys(libc::SYS_capget, &mut h as *mut _ as u64, 0, 0, 0);
    t("unknown version, no data: 0 and the preferred one", rb == 0 && h.version == 0x2008_0522, format!("{rb} {:#x}", h.version));
    let mut h = CapHdr { version: 1234, pid: 0 };
    let rb = sys(libc::SYS_capget, &mut h as *mut _ as u64, d.as_mut_ptr() as u64, 0, 0);
    t("unknown version: EINVAL", rb == -1 && e() == libc::EINVAL, r(rb));
    let st = in_child(|| {
        // SAFETY: plain calls in a forked child.
        unsafe {
            libc::setgid(65534);
            libc::setuid(65534);
        }
        let mut h = CapHdr { version: 0x2008_0522, pid: 0 };
        let mut d = [CapData::default(); 2];
        sys(libc::SYS_capget, &mut h as *mut _ as u64, d.as_mut_ptr() as u64, 0, 0);
        if d != [CapData::default(); 2] {
            return 1;
        }
        d[0].effective = 1 << 21;
        d[0].permitted = 1 << 21;
        let r = sys(libc::SYS_capset, &mut h as *mut _ as u64, d.as_ptr() as u64, 0, 0);
        (r != -1 || errno() != libc::EPERM) as i32 * 2
    });
    t("another user: none, and capset cannot gain", st == 0, format!("{st:#x}"));
}

fn prctl_tests() {
    // SAFETY (whole block): prctl with valid buffers.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"a-rather-long-thread-name".as_ptr());
        let mut n = [0u8; 16];
        libc::prctl(libc::PR_GET_NAME, n.as_mut_ptr());
        let got = String::from_utf8_lossy(&n[..n.iter().position(|&c| c == 0).unwrap_or(16)]).into_owned();
        t("PR_SET_NAME keeps 15 bytes", got == "a-rather-long-t", got.clone());
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        t("/proc/self/comm shows it", comm.trim_end() == "a-rather-long-t", comm);
        t("PR_GET_DUMPABLE 1", libc::prctl(libc::PR_GET_DUMPABLE) == 1, String::new());
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        t("PR_SET_DUMPABLE 0", libc::prctl(libc::PR_GET_DUMPABLE) == 0, String::new());
        libc::prctl(libc::PR_SET_DUMPABLE, 1);
        let st = in_child(|| {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return 1;
            }
            let pid = fork();
            if pid == 0 {
                exit_now(libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
            }
            let st = wait_for(pid).map(|x| x.1).unwrap_or(-1);
            (libc::WEXITSTATUS(st) != 1) as i32 * 2
        });
        t("PR_SET_NO_NEW_PRIVS, inherited", st == 0, format!("{st:#x}"));
        // Subreaper + death signal: a grandchild whose parent dies gets its
        // death signal and is re-parented to us.
        t("PR_SET_CHILD_SUBREAPER", libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) == 0, r(-1));
        let mut sr = 0i32;
        libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut sr);
        t("PR_GET_CHILD_SUBREAPER", sr == 1, format!("{sr}"));
        let mut p = [0i32; 2];
        libc::pipe(p.as_mut_ptr());
        let child = fork();
        if child == 0 {
            let g = fork();
            if g == 0 {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut s = 0i32;
                libc::prctl(libc::PR_GET_PDEATHSIG, &mut s);
                libc::write(p[1], [s as u8].as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
            let mut b = [0u8; 1];
            libc::read(p[0], b.as_mut_ptr().cast(), 1);
            exit_now(b[0] as i32);
        }
        let st = wait_for(child).map(|x| x.1).unwrap_or(-1);
        t("PR_GET_PDEATHSIG", libc::WEXITSTATUS(st) == libc::SIGKILL, format!("{st:#x}"));
        let mut status = 0;
        let g = libc::waitpid(-1, &mut status, 0);
        t("orphan adopted by the subreaper, killed by its death signal", g > 0 && libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, format!("{g} {status:#x}"));
        libc::close(p[0]);
        libc::close(p[1]);
        let bad = libc::prctl(libc::PR_SET_PDEATHSIG, 99);
        t("PR_SET_PDEATHSIG 99 EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
    }
}

fn signalfd_tests() {
    // SAFETY (whole block): signal-set and signalfd calls with valid buffers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut one: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut one);
        libc::sigaddset(&mut one, libc::SIGUSR1);
        let sfd = libc::signalfd(-1, &one, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        t("signalfd", sfd >= 0, r(sfd));
        let mut si: libc::signalfd_siginfo = std::mem::zeroed();
        let sz = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        t("nothing pending: EAGAIN", n == -1 && e() == libc::EAGAIN, r(n));
        let me = libc::getpid();
        libc::kill(me, libc::SIGUSR1);
        let mut pl = libc::pollfd { fd: sfd, events: libc::POLLIN, revents: 0 };
        t("poll: readable", libc::poll(&mut pl, 1, 0) == 1, String::new());
        let n = libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        t("read one record", n == sz as isize && si.ssi_signo == libc::SIGUSR1 as u32 && si.ssi_pid == me as u32 && si.ssi_code == 0, format!("{n} {} {}", si.ssi_signo, si.ssi_pid));
        let n = libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        t("taken: EAGAIN", n == -1 && e() == libc::EAGAIN, r(n));
        pl.revents = 0;
        t("poll: not readable", libc::poll(&mut pl, 1, 0) == 0, String::new());
        libc::kill(me, libc::SIGUSR2);
        t("a signal outside the mask: not readable", libc::poll(&mut pl, 1, 0) == 0, String::new());
        t("new mask", libc::signalfd(sfd, &set, 0) == sfd, r(-1));
        let n = libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        t("then it reads", n == sz as isize && si.ssi_signo == libc::SIGUSR2 as u32, format!("{n} {}", si.ssi_signo));
        let small = libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), 100);
        t("short buffer EINVAL", small == -1 && e() == libc::EINVAL, r(small));
        // epoll sees it.
        let ep = libc::epoll_create1(0);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, sfd, &mut ev);
        libc::kill(me, libc::SIGUSR1);
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let k = libc::epoll_wait(ep, out.as_mut_ptr(), 2, 1000);
        t("epoll: readable", k == 1 && { out[0].u64 } == 7, r(k));
        libc::read(sfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        libc::close(ep);
        // A blocking read woken by another process's signal.
        let bfd = libc::signalfd(-1, &one, 0);
        let pid = fork();
        if pid == 0 {
            userland_tests::sleep_ms(50);
            libc::kill(libc::getppid(), libc::SIGUSR1);
            exit_now(0);
        }
        let n = libc::read(bfd, (&mut si as *mut libc::signalfd_siginfo).cast(), sz);
        t("blocking read woken", n == sz as isize && si.ssi_signo == libc::SIGUSR1 as u32 && si.ssi_pid == pid as u32, format!("{n}"));
        let _ = wait_for(pid);
        let bf = libc::signalfd(-1, &one, 0x10);
        t("bad flags EINVAL", bf == -1 && e() == libc::EINVAL, r(bf));
        let bs = libc::syscall(libc::SYS_signalfd4, -1, &one as *const libc::sigset_t, 4, 0);
        t("sizemask 4 EINVAL", bs == -1 && e() == libc::EINVAL, r(bs as i32));
        let nf = libc::signalfd(0, &one, 0);
        t("not a signalfd EINVAL", nf == -1 && e() == libc::EINVAL, r(nf));
        libc::close(sfd);
        libc::close(bfd);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    let dir = a.get(1).cloned().unwrap_or_else(|| "/tmp".into());
    fs_tests(&dir);
    close_range_tests();
    pidfd_tests();
    caps_tests();
    prctl_tests();
    signalfd_tests();
    // SAFETY: the threads are joined; no other thread writes it.
    if unsafe { FAILED } {
        1
    } else {
        0
    }
}
