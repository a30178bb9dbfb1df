//! System V IPC against Linux: shared memory segments (keys, attach
//! counts, sharing across fork, removal while attached, permissions for
//! another user), semaphore sets (atomic `semop`, blocking and waking,
//! `semtimedop` timeouts, `SEM_UNDO` at exit, `EIDRM` for a waiter of a
//! removed set) and message queues (types, `MSG_EXCEPT`, `MSG_NOERROR`,
//! `E2BIG`, blocking receive). One line per check; exits 1 on a failure.
//! Runs as root (natively and in the guest); permission checks use a child
//! that becomes uid 65534.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{errno, exit_now, fork, in_child, sleep_ms, wait_for};

const IPC_PRIVATE: i32 = 0;

fn e() -> i32 {
    errno()
}

fn semop1(id: i32, num: u16, op: i16, flg: i16) -> i32 {
    let mut b = libc::sembuf { sem_num: num, sem_op: op, sem_flg: flg };
    // SAFETY: one valid sembuf.
    unsafe { libc::semop(id, &mut b, 1) }
}

fn semctl(id: i32, num: i32, cmd: i32, arg: u64) -> i32 {
    // SAFETY: raw call; arg is a value or a valid pointer for the command.
    unsafe { libc::syscall(libc::SYS_semctl, id, num, cmd, arg) as i32 }
}

fn semtimedop(id: i32, ops: &mut [libc::sembuf], ms: i64) -> i32 {
    let ts = libc::timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 };
    // SAFETY: ops and ts are valid.
    unsafe { libc::syscall(libc::SYS_semtimedop, id, ops.as_mut_ptr(), ops.len(), &ts) as i32 }
}

#[repr(C)]
struct Msg {
    mtype: i64,
    text: [u8; 64],
}

fn msgsnd(id: i32, mtype: i64, text: &[u8], flags: i32) -> i32 {
    let mut m = Msg { mtype, text: [0; 64] };
    m.text[..text.len()].copy_from_slice(text);
    // SAFETY: m is valid for 8 + text.len() bytes.
    unsafe { libc::msgsnd(id, (&m as *const Msg).cast(), text.len(), flags) }
}

fn msgrcv(id: i32, size: usize, mtype: i64, flags: i32) -> (isize, i64, Vec<u8>) {
    let mut m = Msg { mtype: 0, text: [0; 64] };
    // SAFETY: m has room for 8 + 64 bytes; size <= 64.
    let n = unsafe { libc::msgrcv(id, (&mut m as *mut Msg).cast(), size.min(64), mtype, flags) };
    (n, m.mtype, m.text[..n.max(0) as usize].to_vec())
}

fn as_nobody() {
    // SAFETY: plain calls in a forked child.
    unsafe {
        libc::setgid(65534);
        libc::setuid(65534);
    }
}

fn shm_tests() {
    // SAFETY: raw System V calls with valid arguments; attached addresses are used only while attached.
    unsafe {
        let id = libc::shmget(IPC_PRIVATE, 10000, libc::IPC_CREAT | 0o600);
        t("shmget private", id >= 0, r(id));
        let p = libc::shmat(id, std::ptr::null(), 0) as *mut u8;
        t("shmat", p as isize != -1, r(p as isize));
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        t("shmctl IPC_STAT", libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0, r(-1));
        t("shm_segsz", ds.shm_segsz == 10000, format!("{}", ds.shm_segsz));
        t("shm_nattch 1", ds.shm_nattch == 1, format!("{}", ds.shm_nattch));
        t("shm_cpid", ds.shm_cpid == libc::getpid(), format!("{}", ds.shm_cpid));
        t("shm mode", ds.shm_perm.mode & 0o777 == 0o600, format!("{:o}", ds.shm_perm.mode));
        t("shm starts zeroed", *p == 0 && *p.add(9999) == 0, String::new());
        *p = 42;
        *p.add(9000) = 7;
        let st = in_child(|| {
            if *p != 42 || *p.add(9000) != 7 {
                return 1;
            }
            *p.add(1) = 99;
            let q = libc::shmat(id, std::ptr::null(), 0) as *mut u8;
            if q as isize == -1 || *q != 42 {
                return 2;
            }
            let mut ds: libc::shmid_ds = std::mem::zeroed();
            libc::shmctl(id, libc::IPC_STAT, &mut ds);
            if ds.shm_nattch != 3 {
                return 3;
            }
            *q.add(2) = 5;
            0
        });
        t("shm shared with a forked child", st == 0, format!("{st:#x}"));
        t("child's writes seen", *p.add(1) == 99 && *p.add(2) == 5, String::new());
        libc::shmctl(id, libc::IPC_STAT, &mut ds);
        t("nattch back to 1 after the child exits", ds.shm_nattch == 1, format!("{}", ds.shm_nattch));
        // Read-only attach.
        let ro = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) as *mut u8;
        t("shmat SHM_RDONLY", ro as isize != -1 && *ro == 42, r(ro as isize));
        let st = in_child(|| {
            *ro = 1;
            0
        });
        t("write to SHM_RDONLY faults", libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV, format!("{st:#x}"));
        t("shmdt ro", libc::shmdt(ro.cast()) == 0, r(-1));
        t("shmdt again EINVAL", libc::shmdt(ro.cast()) == -1 && e() == libc::EINVAL, r(-1));
        let mut x = 0u8;
        t("shmdt non-segment EINVAL", libc::shmdt((&mut x as *mut u8).cast()) == -1 && e() == libc::EINVAL, r(-1));
        // Fixed address, SHM_RND, misaligned without it.
        // A free address: reserve a range, then give it back.
        let hole = libc::mmap(std::ptr::null_mut(), 1 << 20, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        libc::munmap(hole, 1 << 20);
        let want = hole as *const libc::c_void;
        let f = libc::shmat(id, want, 0);
        t("shmat at an address", f == want as *mut _, format!("{f:?}"));
        let again = libc::shmat(id, want, 0);
        t("shmat over a mapping EINVAL", again as isize == -1 && e() == libc::EINVAL, r(again as isize));
        let remap = libc::shmat(id, want, libc::SHM_REMAP);
        t("shmat SHM_REMAP", remap == want as *mut _, r(remap as isize));
        libc::shmdt(want);
        let mis = libc::shmat(id, (want as usize + 12) as *const _, 0);
        t("shmat misaligned EINVAL", mis as isize == -1 && e() == libc::EINVAL, r(mis as isize));
        let rnd = libc::shmat(id, (want as usize + 12) as *const _, libc::SHM_RND);
        t("shmat SHM_RND", rnd == want as *mut _, r(rnd as isize));
        libc::shmdt(rnd);
        // Another user may not attach a 0600 segment, nor remove it.
        let st = in_child(|| {
            as_nobody();
            let a = libc::shmat(id, std::ptr::null(), 0);
            if a as isize != -1 || errno() != libc::EACCES {
                return 1;
            }
            if libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) != -1 || errno() != libc::EPERM {
                return 2;
            }
            0
        });
        t("other user: EACCES, EPERM", st == 0, format!("{st:#x}"));
        // Removed while attached: still there until the last detach.
        t("IPC_RMID while attached", libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0, r(-1));
        t("memory still usable", *p == 42, String::new());
        libc::shmctl(id, libc::IPC_STAT, &mut ds);
        t("removed: SHM_DEST, key private", ds.shm_perm.mode & 0o1000 != 0 && ds.shm_perm.__key == 0, format!("{:o}", ds.shm_perm.mode));
        t("shmdt last", libc::shmdt(p.cast()) == 0, r(-1));
        let gone = libc::shmctl(id, libc::IPC_STAT, &mut ds);
        t("gone after the last detach", gone == -1 && e() == libc::EINVAL, r(gone));
        // Keys.
        let key = 0x5a00_0000 | (libc::getpid() & 0xffff);
        let k1 = libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644);
        t("shmget key", k1 >= 0, r(k1));
        let k2 = libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644);
        t("shmget IPC_EXCL EEXIST", k2 == -1 && e() == libc::EEXIST, r(k2));
        t("shmget same key", libc::shmget(key, 100, 0) == k1, String::new());
        let big = libc::shmget(key, 8192, 0);
        t("shmget larger than the segment EINVAL", big == -1 && e() == libc::EINVAL, r(big));
        libc::shmctl(k1, libc::IPC_RMID, std::ptr::null_mut());
        let absent = libc::shmget(key, 4096, 0);
        t("shmget removed key ENOENT", absent == -1 && e() == libc::ENOENT, r(absent));
        let zero = libc::shmget(IPC_PRIVATE, 0, libc::IPC_CREAT | 0o600);
        t("shmget size 0 EINVAL", zero == -1 && e() == libc::EINVAL, r(zero));
        let bad = libc::shmctl(-1, libc::IPC_STAT, &mut ds);
        t("shmctl bad id EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
        let stale = libc::shmat(k1, std::ptr::null(), 0);
        t("shmat stale id EINVAL", stale as isize == -1 && e() == libc::EINVAL, r(stale as isize));
    }
}

fn sem_tests() {
    // SAFETY (whole block): raw System V calls with valid arguments.
    unsafe {
        let id = libc::semget(IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600);
        t("semget", id >= 0, r(id));
        t("initial value 0", semctl(id, 0, libc::GETVAL, 0) == 0, String::new());
        t("SETVAL", semctl(id, 1, libc::SETVAL, 5) == 0, r(-1));
        t("GETVAL", semctl(id, 1, libc::GETVAL, 0) == 5, String::new());
        let big = semctl(id, 1, libc::SETVAL, 40000);
        t("SETVAL past SEMVMX ERANGE", big == -1 && e() == libc::ERANGE, r(big));
        let nosem = semctl(id, 3, libc::GETVAL, 0);
        t("GETVAL semnum out of range EINVAL", nosem == -1 && e() == libc::EINVAL, r(nosem));
        t("semop -2", semop1(id, 1, -2, 0) == 0, r(-1));
        t("value 3", semctl(id, 1, libc::GETVAL, 0) == 3, String::new());
        t("GETPID", semctl(id, 1, libc::GETPID, 0) == libc::getpid(), String::new());
        let w = semop1(id, 0, -1, libc::IPC_NOWAIT as i16);
        t("semop would block: EAGAIN", w == -1 && e() == libc::EAGAIN, r(w));
        let w = semop1(id, 1, 0, libc::IPC_NOWAIT as i16);
        t("wait-for-zero would block: EAGAIN", w == -1 && e() == libc::EAGAIN, r(w));
        let fb = semop1(id, 7, 1, 0);
        t("semop sem_num out of range EFBIG", fb == -1 && e() == libc::EFBIG, r(fb));
        let mut none: [libc::sembuf; 0] = [];
        let z = libc::semop(id, none.as_mut_ptr(), 0);
        t("semop nsops 0 EINVAL", z == -1 && e() == libc::EINVAL, r(z));
        let mut many = vec![libc::sembuf { sem_num: 0, sem_op: 0, sem_flg: 0 }; 501];
        let b2 = libc::semop(id, many.as_mut_ptr(), 501);
        t("semop 501 ops E2BIG", b2 == -1 && e() == libc::E2BIG, r(b2));
        // All or nothing: the second op fails, the first is not applied.
        let mut ops = [libc::sembuf { sem_num: 1, sem_op: -1, sem_flg: 0 }, libc::sembuf { sem_num: 0, sem_op: -1, sem_flg: libc::IPC_NOWAIT as i16 }];
        let an = libc::semop(id, ops.as_mut_ptr(), 2);
        t("atomic: nothing applied", an == -1 && e() == libc::EAGAIN && semctl(id, 1, libc::GETVAL, 0) == 3, r(an));
        // semtimedop times out.
        let mut one = [libc::sembuf { sem_num: 0, sem_op: -1, sem_flg: 0 }];
        let to = semtimedop(id, &mut one, 50);
        t("semtimedop timeout EAGAIN", to == -1 && e() == libc::EAGAIN, r(to));
        // A blocked decrement is woken by another process's increment.
        let pid = fork();
        if pid == 0 {
            while semctl(id, 0, libc::GETNCNT, 0) < 1 {
                sleep_ms(5);
            }
            semop1(id, 0, 1, 0);
            exit_now(0);
        }
        let got = semop1(id, 0, -1, 0);
        t("blocked semop woken", got == 0, r(got));
        let _ = wait_for(pid);
        // SETALL / GETALL.
        let vals: [u16; 3] = [1, 2, 3];
        t("SETALL", semctl(id, 0, libc::SETALL, vals.as_ptr() as u64) == 0, r(-1));
        let mut out = [0u16; 3];
        semctl(id, 0, libc::GETALL, out.as_mut_ptr() as u64);
        t("GETALL", out == [1, 2, 3], format!("{out:?}"));
        // SEM_UNDO: a child's +4 is undone when it exits.
        let st = in_child(|| (semop1(id, 2, 4, libc::SEM_UNDO as i16) != 0 || semctl(id, 2, libc::GETVAL, 0) != 7) as i32);
        t("child's SEM_UNDO op", st == 0, format!("{st:#x}"));
        t("undone at exit", semctl(id, 2, libc::GETVAL, 0) == 3, format!("{}", semctl(id, 2, libc::GETVAL, 0)));
        let mut ds: libc::semid_ds = std::mem::zeroed();
        t("IPC_STAT", semctl(id, 0, libc::IPC_STAT, &mut ds as *mut _ as u64) == 0 && ds.sem_nsems == 3, format!("{}", ds.sem_nsems));
        // Another user may not alter a 0600 set.
        let st = in_child(|| {
            as_nobody();
            (semop1(id, 0, 1, 0) != -1 || errno() != libc::EACCES) as i32
        });
        t("other user: EACCES", st == 0, format!("{st:#x}"));
        // A waiter of a removed set gets EIDRM.
        let pid = fork();
        if pid == 0 {
            let r = semop1(id, 0, -100, 0);
            exit_now(if r == -1 && errno() == libc::EIDRM { 0 } else { 1 });
        }
        while semctl(id, 0, libc::GETNCNT, 0) < 1 {
            sleep_ms(5);
        }
        t("IPC_RMID", semctl(id, 0, libc::IPC_RMID, 0) == 0, r(-1));
        let st = wait_for(pid).map(|x| x.1).unwrap_or(-1);
        t("waiter gets EIDRM", st == 0, format!("{st:#x}"));
        let gone = semctl(id, 0, libc::GETVAL, 0);
        t("removed set EINVAL", gone == -1 && e() == libc::EINVAL, r(gone));
        let z = libc::semget(IPC_PRIVATE, 0, libc::IPC_CREAT | 0o600);
        t("semget 0 sems EINVAL", z == -1 && e() == libc::EINVAL, r(z));
    }
}

fn msg_tests() {
    // SAFETY (whole block): raw System V calls with valid arguments.
    unsafe {
        let id = libc::msgget(IPC_PRIVATE, libc::IPC_CREAT | 0o600);
        t("msgget", id >= 0, r(id));
        t("msgsnd 1", msgsnd(id, 1, b"one", 0) == 0, r(-1));
        t("msgsnd 2", msgsnd(id, 2, b"two", 0) == 0, r(-1));
        t("msgsnd 3", msgsnd(id, 3, b"three", 0) == 0, r(-1));
        let bad = msgsnd(id, 0, b"x", 0);
        t("msgsnd mtype 0 EINVAL", bad == -1 && e() == libc::EINVAL, r(bad));
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        libc::msgctl(id, libc::IPC_STAT, &mut ds);
        t("msg_qnum 3, cbytes 11", ds.msg_qnum == 3 && ds.__msg_cbytes == 11, format!("{} {}", ds.msg_qnum, ds.__msg_cbytes));
        t("msg_lspid", ds.msg_lspid == libc::getpid(), String::new());
        let (n, ty, txt) = msgrcv(id, 64, 2, 0);
        t("msgrcv type 2", n == 3 && ty == 2 && txt == b"two", format!("{n} {ty}"));
        let (n, ty, _) = msgrcv(id, 64, 1, libc::MSG_EXCEPT);
        t("msgrcv MSG_EXCEPT 1", n == 5 && ty == 3, format!("{n} {ty}"));
        let (n, _, _) = msgrcv(id, 64, 5, libc::IPC_NOWAIT);
        t("msgrcv absent type ENOMSG", n == -1 && e() == libc::ENOMSG, r(n));
        msgsnd(id, 5, b"five", 0);
        msgsnd(id, 4, b"four", 0);
        let (n, ty, _) = msgrcv(id, 64, -4, 0);
        t("msgrcv lowest type <= 4", n == 3 && ty == 1, format!("{n} {ty}"));
        let (n, _, _) = msgrcv(id, 2, 0, 0);
        t("msgrcv too small E2BIG", n == -1 && e() == libc::E2BIG, r(n));
        let (n, ty, txt) = msgrcv(id, 2, 0, libc::MSG_NOERROR);
        t("msgrcv MSG_NOERROR truncates", n == 2 && ty == 5 && txt == b"fi", format!("{n} {ty}"));
        let (n, ty, _) = msgrcv(id, 64, 0, 0);
        t("msgrcv first", n == 4 && ty == 4, format!("{n} {ty}"));
        // A blocked receive is woken by another process's send.
        let pid = fork();
        if pid == 0 {
            sleep_ms(50);
            msgsnd(id, 9, b"late", 0);
            exit_now(0);
        }
        let (n, ty, txt) = msgrcv(id, 64, 9, 0);
        t("blocked msgrcv woken", n == 4 && ty == 9 && txt == b"late", format!("{n} {ty}"));
        let _ = wait_for(pid);
        // A full queue: IPC_NOWAIT gives EAGAIN.
        ds.msg_qbytes = 8;
        t("IPC_SET msg_qbytes", libc::msgctl(id, libc::IPC_SET, &mut ds) == 0, r(-1));
        t("fits", msgsnd(id, 1, b"12345678", libc::IPC_NOWAIT) == 0, r(-1));
        let full = msgsnd(id, 1, b"x", libc::IPC_NOWAIT);
        t("full queue EAGAIN", full == -1 && e() == libc::EAGAIN, r(full));
        let st = in_child(|| {
            as_nobody();
            let (n, _, _) = msgrcv(id, 64, 0, libc::IPC_NOWAIT);
            (n != -1 || errno() != libc::EACCES) as i32
        });
        t("other user: EACCES", st == 0, format!("{st:#x}"));
        t("IPC_RMID", libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0, r(-1));
        let gone = msgsnd(id, 1, b"x", 0);
        t("removed queue EINVAL", gone == -1 && e() == libc::EINVAL, r(gone));
    }
}

static NOTIFIED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_usr1(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo.
    let code = unsafe { (*info).si_code };
    NOTIFIED.store(if code == libc::SI_MESGQ { 1 } else { 2 }, std::sync::atomic::Ordering::SeqCst);
}

fn mq_attr(maxmsg: i64, msgsize: i64) -> libc::mq_attr {
    // SAFETY: an all-zero mq_attr is valid.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    a
}

fn mq_tests() {
    // SAFETY: (whole block) POSIX queue calls with valid names, buffers and attribute structures.
    unsafe {
        let name = c(&format!("/rustuml_conf_{}", libc::getpid()));
        let mut at = mq_attr(4, 64);
        let q = libc::mq_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600, &mut at as *mut libc::mq_attr);
        t("mq_open O_CREAT", q >= 0, r(q));
        let again = libc::mq_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600, &mut at as *mut libc::mq_attr);
        t("mq_open O_EXCL EEXIST", again == -1 && e() == libc::EEXIST, r(again));
        let mut got = mq_attr(0, 0);
        libc::mq_getattr(q, &mut got);
        t("mq_getattr", got.mq_maxmsg == 4 && got.mq_msgsize == 64 && got.mq_curmsgs == 0, format!("{} {}", got.mq_maxmsg, got.mq_msgsize));
        for (m, p) in [(&b"a"[..], 1u32), (b"b", 5), (b"c", 1)] {
            libc::mq_send(q, m.as_ptr().cast(), m.len(), p);
        }
        let mut pfd = libc::pollfd { fd: q, events: libc::POLLIN | libc::POLLOUT, revents: 0 };
        libc::poll(&mut pfd, 1, 0);
        t("poll: readable and writable", pfd.revents == libc::POLLIN | libc::POLLOUT, format!("{:#x}", pfd.revents));
        let q2 = libc::mq_open(name.as_ptr(), libc::O_RDONLY);
        t("mq_open existing", q2 >= 0, r(q2));
        let mut buf = [0u8; 64];
        let mut prio = 0u32;
        let mut order = Vec::new();
        for _ in 0..3 {
            let n = libc::mq_receive(q2, buf.as_mut_ptr().cast(), 64, &mut prio);
            order.push(format!("{}{}", String::from_utf8_lossy(&buf[..n.max(0) as usize]), prio));
        }
        t("priority order", order == ["b5", "a1", "c1"], format!("{order:?}"));
        let small = libc::mq_receive(q, buf.as_mut_ptr().cast(), 10, &mut prio);
        t("mq_receive small buffer EMSGSIZE", small == -1 && e() == libc::EMSGSIZE, r(small));
        let big = [0u8; 65];
        let tb = libc::mq_send(q, big.as_ptr().cast(), 65, 0);
        t("mq_send too long EMSGSIZE", tb == -1 && e() == libc::EMSGSIZE, r(tb));
        let wr = libc::mq_send(q2, big.as_ptr().cast(), 1, 0);
        t("mq_send on O_RDONLY EBADF", wr == -1 && e() == libc::EBADF, r(wr));
        let bp = libc::mq_send(q, big.as_ptr().cast(), 1, 40000);
        t("mq_send prio >= MQ_PRIO_MAX EINVAL", bp == -1 && e() == libc::EINVAL, r(bp));
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        now.tv_nsec = (now.tv_nsec + 30_000_000) % 1_000_000_000;
        now.tv_sec += 1 - (now.tv_nsec >= 30_000_000) as i64;
        // (a deadline at most ~1 s away)
        let te = libc::mq_timedreceive(q, buf.as_mut_ptr().cast(), 64, &mut prio, &now);
        t("mq_timedreceive empty ETIMEDOUT", te == -1 && e() == libc::ETIMEDOUT, r(te));
        for _ in 0..4 {
            libc::mq_send(q, b"x".as_ptr().cast(), 1, 0);
        }
        let past = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        let tf = libc::mq_timedsend(q, b"x".as_ptr().cast(), 1, 0, &past);
        t("mq_timedsend full ETIMEDOUT", tf == -1 && e() == libc::ETIMEDOUT, r(tf));
        let nb = mq_attr(0, 0);
        let mut nbat = nb;
        nbat.mq_flags = libc::O_NONBLOCK as i64;
        libc::mq_setattr(q, &nbat, std::ptr::null_mut());
        let ea = libc::mq_send(q, b"x".as_ptr().cast(), 1, 0);
        t("O_NONBLOCK full EAGAIN", ea == -1 && e() == libc::EAGAIN, r(ea));
        let mut cur = mq_attr(0, 0);
        libc::mq_getattr(q, &mut cur);
        t("mq_getattr flags and count", cur.mq_flags == libc::O_NONBLOCK as i64 && cur.mq_curmsgs == 4, format!("{} {}", cur.mq_flags, cur.mq_curmsgs));
        for _ in 0..4 {
            libc::mq_receive(q, buf.as_mut_ptr().cast(), 64, &mut prio);
        }
        let ee = libc::mq_receive(q, buf.as_mut_ptr().cast(), 64, &mut prio);
        t("O_NONBLOCK empty EAGAIN", ee == -1 && e() == libc::EAGAIN, r(ee));
        // mq_notify with a signal, once.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGUSR1;
        t("mq_notify", libc::mq_notify(q, &sev) == 0, r(-1));
        let busy = libc::mq_notify(q, &sev);
        t("mq_notify twice EBUSY", busy == -1 && e() == libc::EBUSY, r(busy));
        libc::mq_send(q, b"n".as_ptr().cast(), 1, 0);
        t("notified with SI_MESGQ", NOTIFIED.load(std::sync::atomic::Ordering::SeqCst) == 1, format!("{}", NOTIFIED.load(std::sync::atomic::Ordering::SeqCst)));
        t("registration dropped after firing", libc::mq_notify(q, &sev) == 0, r(-1));
        libc::mq_notify(q, std::ptr::null());
        libc::mq_receive(q, buf.as_mut_ptr().cast(), 64, &mut prio);
        // A blocked receive is woken by another process's send.
        let pid = fork();
        if pid == 0 {
            sleep_ms(50);
            let w = libc::mq_open(name.as_ptr(), libc::O_WRONLY);
            libc::mq_send(w, b"late".as_ptr().cast(), 4, 3);
            exit_now(0);
        }
        let n = libc::mq_receive(q2, buf.as_mut_ptr().cast(), 64, &mut prio);
        t("blocked mq_receive woken", n == 4 && prio == 3, r(n));
        let _ = wait_for(pid);
        // Unprivileged limits.
        let st = in_child(|| {
            as_nobody();
            let mut big = mq_attr(11, 64);
            let nm = c(&format!("/rustuml_conf_u{}", libc::getpid()));
            let r = libc::mq_open(nm.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600, &mut big as *mut libc::mq_attr);
            (r != -1 || errno() != libc::EINVAL) as i32
        });
        t("unprivileged maxmsg > 10 EINVAL", st == 0, format!("{st:#x}"));
        let bad = c("/a/b");
        let sl = libc::mq_open(bad.as_ptr(), libc::O_RDONLY);
        t("name with a slash EACCES", sl == -1 && e() == libc::EACCES, r(sl));
        t("mq_unlink", libc::mq_unlink(name.as_ptr()) == 0, r(-1));
        let gone = libc::mq_open(name.as_ptr(), libc::O_RDONLY);
        t("unlinked: ENOENT", gone == -1 && e() == libc::ENOENT, r(gone));
        t("still usable while open", libc::mq_send(q, b"z".as_ptr().cast(), 1, 0) == 0, r(-1));
        let un = libc::mq_unlink(name.as_ptr());
        t("mq_unlink again ENOENT", un == -1 && e() == libc::ENOENT, r(un));
        libc::mq_close(q);
        libc::mq_close(q2);
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    shm_tests();
    sem_tests();
    msg_tests();
    mq_tests();
    // SAFETY: single-threaded.
    let failed = unsafe { FAILED };
    let _ = fork;
    if failed {
        1
    } else {
        0
    }
}
