//! The page cache and the memory calls that meet it, against Linux: sparse
//! files of any size (`SEEK_DATA`/`SEEK_HOLE`, `st_blocks`), writable
//! `MAP_SHARED` file mappings coherent with `read`/`write` (across `fork`,
//! and in another program that maps the file after its `exec`), `msync`,
//! `SIGBUS` past a truncated end, `memfd_create` and seals, shared
//! anonymous memory, `mremap`, `madvise`, `mincore`, `/proc/self/smaps`.
//! Files go under `argv[1]` (a tmpfs: `/dev/shm`). One line per check;
//! exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use userland_tests::{args, describe_status, errno, exit_now, fork, in_child, wait_for, PAGE};

const GIB: i64 = 1 << 30;

fn open(p: &str, flags: i32) -> i32 {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    unsafe { libc::open(p.as_ptr(), flags, 0o600) }
}

fn fstat(fd: i32) -> libc::stat {
    // SAFETY: an all-zero stat is valid; valid out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd, &mut st) };
    st
}

fn pwrite(fd: i32, b: &[u8], off: i64) -> isize {
    // SAFETY: b is valid for its length.
    unsafe { libc::pwrite(fd, b.as_ptr().cast(), b.len(), off) }
}

fn pread(fd: i32, n: usize, off: i64) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // SAFETY: b is valid for n bytes.
    let r = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), n, off) };
    b.truncate(r.max(0) as usize);
    b
}

fn lseek(fd: i32, off: i64, whence: i32) -> i64 {
    // SAFETY: plain call.
    unsafe { libc::lseek(fd, off, whence) }
}

fn ftruncate(fd: i32, len: i64) -> i32 {
    // SAFETY: plain call.
    unsafe { libc::ftruncate(fd, len) }
}

fn map(len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8 {
    // SAFETY: a NULL hint never clobbers memory.
    unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) as *mut u8 }
}

fn failed(p: *mut u8) -> bool {
    p as *mut libc::c_void == libc::MAP_FAILED
}

fn rd(p: *mut u8, off: usize) -> u8 {
    // SAFETY: callers pass mapped addresses (or expect the fault in a child).
    unsafe { p.add(off).read_volatile() }
}

fn wr(p: *mut u8, off: usize, v: u8) {
    // SAFETY: as above.
    unsafe { p.add(off).write_volatile(v) }
}

fn put(p: *mut u8, off: usize, b: &[u8]) {
    for (i, &v) in b.iter().enumerate() {
        wr(p, off + i, v);
    }
}

fn get(p: *mut u8, off: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| rd(p, off + i)).collect()
}

/// The wait status of a child that reads byte `off` of `p`.
fn touch_in_child(p: *mut u8, off: usize) -> i32 {
    in_child(|| {
        rd(p, off);
        0
    })
}

fn signaled(status: i32, sig: i32) -> bool {
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == sig
}

fn unlink(p: &str) {
    let p = c(p);
    // SAFETY: NUL-terminated path.
    unsafe { libc::unlink(p.as_ptr()) };
}

fn sparse(dir: &str) {
    let path = format!("{dir}/pc_sparse");
    let fd = open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    t("create a file", fd >= 0, r(fd));
    let n = pwrite(fd, b"end", 5 * GIB);
    t("pwrite at 5 GiB", n == 3, r(n));
    let st = fstat(fd);
    t("size is 5 GiB + 3", st.st_size == 5 * GIB + 3, format!("{}", st.st_size));
    t("one page of blocks (holes cost nothing)", st.st_blocks == 8, format!("{}", st.st_blocks));
    t("SEEK_DATA from 0 finds the page", lseek(fd, 0, libc::SEEK_DATA) == 5 * GIB, r(lseek(fd, 0, libc::SEEK_DATA)));
    t("SEEK_HOLE from 0 is 0", lseek(fd, 0, libc::SEEK_HOLE) == 0, r(lseek(fd, 0, libc::SEEK_HOLE)));
    let h = lseek(fd, 5 * GIB, libc::SEEK_HOLE);
    t("SEEK_HOLE in the last page is the end", h == 5 * GIB + 3, r(h));
    let e = lseek(fd, 5 * GIB + 10, libc::SEEK_DATA);
    t("SEEK_DATA past the end is ENXIO", e == -1 && errno() == libc::ENXIO, r(e));
    t("a hole reads as zeros", pread(fd, 16, GIB) == vec![0u8; 16], String::new());
    t("the data reads back", pread(fd, 8, 5 * GIB) == b"end", String::new());
    let big = vec![7u8; 1 << 20];
    let n = pwrite(fd, &big, 2 * GIB);
    t("1 MiB at 2 GiB", n == 1 << 20, r(n));
    t("blocks: 257 pages", fstat(fd).st_blocks == 257 * 8, format!("{}", fstat(fd).st_blocks));
    t("SEEK_DATA from 1 GiB", lseek(fd, GIB, libc::SEEK_DATA) == 2 * GIB, r(lseek(fd, GIB, libc::SEEK_DATA)));
    t("SEEK_HOLE after it", lseek(fd, 2 * GIB, libc::SEEK_HOLE) == 2 * GIB + (1 << 20), r(lseek(fd, 2 * GIB, libc::SEEK_HOLE)));
    t("ftruncate to 6 GiB", ftruncate(fd, 6 * GIB) == 0, r(ftruncate(fd, 6 * GIB)));
    t("size 6 GiB, blocks unchanged", fstat(fd).st_size == 6 * GIB && fstat(fd).st_blocks == 257 * 8, String::new());
    t("ftruncate to one page", ftruncate(fd, PAGE as i64) == 0, String::new());
    t("blocks of the dropped pages are gone", fstat(fd).st_blocks == 0, format!("{}", fstat(fd).st_blocks));
    t("regrown file reads zeros", ftruncate(fd, 5 * GIB + 8) == 0 && pread(fd, 3, 5 * GIB) == vec![0u8; 3], String::new());
    let n = pwrite(fd, b"xy", i64::MAX - 1);
    t("pwrite past the largest offset is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
    let n = pwrite(fd, b"xyz", i64::MAX - 10);
    t("pwrite just below the largest offset", n == 3 && fstat(fd).st_size == i64::MAX - 7 && fstat(fd).st_blocks == 8, r(n));

    // SAFETY: plain call.
    unsafe { libc::close(fd) };
    unlink(&path);
}

fn fallocate(dir: &str) {
    let path = format!("{dir}/pc_falloc");
    let fd = open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    // SAFETY: plain calls on an open fd.
    unsafe {
        let n = libc::fallocate(fd, 0, 0, 2 * PAGE as i64);
        t("fallocate grows the file and allocates", n == 0 && fstat(fd).st_size == 2 * PAGE as i64 && fstat(fd).st_blocks == 16, r(n));
        let n = libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 2 * PAGE as i64, PAGE as i64);
        t("FALLOC_FL_KEEP_SIZE allocates past the end", n == 0 && fstat(fd).st_size == 2 * PAGE as i64 && fstat(fd).st_blocks == 24, r(n));
        pwrite(fd, b"data", 0);
        let n = libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, PAGE as i64);
        t("FALLOC_FL_PUNCH_HOLE makes a hole", n == 0 && pread(fd, 4, 0) == [0; 4] && lseek(fd, 0, libc::SEEK_HOLE) == 0 && fstat(fd).st_size == 2 * PAGE as i64, r(n));
        let n = libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE, 0, PAGE as i64);
        t("FALLOC_FL_PUNCH_HOLE without KEEP_SIZE is EOPNOTSUPP", n == -1 && errno() == libc::EOPNOTSUPP, r(n));
        let n = libc::fallocate(fd, libc::FALLOC_FL_ZERO_RANGE, 0, PAGE as i64);
        t("FALLOC_FL_ZERO_RANGE on tmpfs is EOPNOTSUPP", n == -1 && errno() == libc::EOPNOTSUPP, r(n));
        let n = libc::fallocate(fd, 0, 0, 0);
        t("fallocate of 0 bytes is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let n = libc::fallocate(fd, 0, -1, 1);
        t("a negative offset is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let ro = open(&path, libc::O_RDONLY);
        let n = libc::fallocate(ro, 0, 0, 1);
        t("a read-only fd is EBADF", n == -1 && errno() == libc::EBADF, r(n));
        let mut fds = [0; 2];
        libc::pipe(fds.as_mut_ptr());
        let n = libc::fallocate(fds[1], 0, 0, 1);
        t("a pipe is ESPIPE", n == -1 && errno() == libc::ESPIPE, r(n));
        for f in [fds[0], fds[1], ro, fd] {
            libc::close(f);
        }
    }
    unlink(&path);
}

fn shared_file(dir: &str, me: &str) {
    let path = format!("{dir}/pc_map");
    let fd = open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    ftruncate(fd, 3 * PAGE as i64);
    let p = map(3 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
    t("writable MAP_SHARED of a tmpfs file", !failed(p), r(-1));
    if failed(p) {
        return;
    }
    put(p, 0, b"abc");
    t("a store is seen by pread", pread(fd, 3, 0) == b"abc", String::new());
    pwrite(fd, b"XYZ", PAGE as i64);
    t("a pwrite is seen through the mapping", get(p, PAGE, 3) == b"XYZ", String::new());
    let st = in_child(|| {
        wr(p, 2 * PAGE, b'C');
        0
    });
    t("a child's store through the shared mapping", st == 0 && rd(p, 2 * PAGE) == b'C' && pread(fd, 1, 2 * PAGE as i64) == b"C", describe_status(st));
    // SAFETY: p is mapped for 3 pages.
    unsafe {
        t("msync(MS_SYNC)", libc::msync(p.cast(), 3 * PAGE, libc::MS_SYNC) == 0, r(-1));
        t("msync(MS_SYNC|MS_INVALIDATE)", libc::msync(p.cast(), 3 * PAGE, libc::MS_SYNC | libc::MS_INVALIDATE) == 0, r(-1));
        let n = libc::msync(p.cast(), PAGE, libc::MS_SYNC | libc::MS_ASYNC);
        t("msync(MS_SYNC|MS_ASYNC) is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let n = libc::msync(p.add(1).cast(), PAGE, libc::MS_SYNC);
        t("msync of an unaligned address is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
    }
    // A private mapping sees the file until it writes.
    let q = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, fd, 0);
    t("private mapping reads the file", rd(q, 0) == b'a', String::new());
    pwrite(fd, b"b", 0);
    t("private mapping sees a later write to the file", rd(q, 0) == b'b', String::new());
    wr(q, 0, b'Q');
    t("a private store stays private", pread(fd, 1, 0) == b"b" && rd(p, 0) == b'b' && rd(q, 0) == b'Q', String::new());
    // Another program maps the file after its exec.
    let pid = fork();
    if pid == 0 {
        let prog = c(me);
        let a1 = c("--child");
        let a2 = c(&path);
        let argv = [prog.as_ptr(), a1.as_ptr(), a2.as_ptr(), std::ptr::null()];
        let envp: [*const c_char; 1] = [std::ptr::null()];
        // SAFETY: NULL-terminated arrays of C strings.
        unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        exit_now(127);
    }
    let st = wait_for(pid).map(|(_, s)| s).unwrap_or(-1);
    t("an exec'd program maps the file and writes through it", st == 0, describe_status(st));
    t("its store is in the file and in this mapping", pread(fd, 4, 100) == b"exec" && get(p, 100, 4) == b"exec", String::new());
    // Shrinking under the mapping: SIGBUS past the end.
    t("ftruncate to one page under the mapping", ftruncate(fd, PAGE as i64) == 0, String::new());
    let st = touch_in_child(p, PAGE);
    t("access past the new end is SIGBUS", signaled(st, libc::SIGBUS), describe_status(st));
    t("access before it still works", touch_in_child(p, 0) == 0 && rd(p, 0) == b'b', String::new());
    ftruncate(fd, 3 * PAGE as i64);
    t("regrown: the dropped page reads zeros", rd(p, PAGE) == 0 && pread(fd, 3, PAGE as i64) == vec![0u8; 3], String::new());
    // Maps and smaps name the file.
    let maps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    t("/proc/self/smaps names the file and has Rss lines", maps.contains(&path) && maps.contains("\nRss:"), String::new());
    let ro = open(&path, libc::O_RDONLY);
    let m = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, ro, 0);
    t("writable MAP_SHARED of a read-only fd is EACCES", failed(m) && errno() == libc::EACCES, r(-1));
    let m = map(PAGE, libc::PROT_READ, libc::MAP_SHARED, ro, 0);
    // SAFETY: m is a page (or the call fails and says so).
    let n = unsafe { libc::mprotect(m.cast(), PAGE, libc::PROT_READ | libc::PROT_WRITE) };
    t("mprotect(PROT_WRITE) of it is EACCES", !failed(m) && n == -1 && errno() == libc::EACCES, r(n));
    pwrite(fd, &[1; 3 * PAGE], 0);
    let mut v = [0u8; 3];
    // SAFETY: mincore writes 3 bytes.
    let n = unsafe { libc::mincore(p.cast(), 3 * PAGE, v.as_mut_ptr()) };
    t("mincore: the file's pages are resident", n == 0 && v.iter().all(|&b| b & 1 == 1), format!("{n} {v:?}"));
    // SAFETY: unmapping what was mapped above.
    unsafe {
        libc::munmap(m.cast(), PAGE);
        libc::munmap(q.cast(), PAGE);
        libc::munmap(p.cast(), 3 * PAGE);
        libc::close(ro);
        libc::close(fd);
    }
    unlink(&path);
}

/// The exec'd half of `shared_file`: map the file, check, write "exec" at 100.
fn child(path: &str) -> i32 {
    let fd = open(path, libc::O_RDWR);
    let p = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
    if failed(p) || get(p, 0, 1) != b"b" {
        return 2;
    }
    put(p, 100, b"exec");
    0
}

fn memfd() {
    let name = c("pc");
    // SAFETY: NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    t("memfd_create", fd >= 0, r(fd));
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    t("its fd link is /memfd:pc (deleted)", link == "/memfd:pc (deleted)", link);
    // SAFETY: plain fcntl calls on an open fd.
    unsafe {
        t("F_GET_SEALS of a sealable memfd is 0", libc::fcntl(fd, libc::F_GET_SEALS) == 0, r(libc::fcntl(fd, libc::F_GET_SEALS)));
        ftruncate(fd, 2 * PAGE as i64);
        let p = map(2 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        wr(p, 0, 42);
        let st = in_child(|| {
            wr(p, PAGE, 43);
            0
        });
        t("shared across fork", st == 0 && rd(p, PAGE) == 43 && pread(fd, 1, 0) == [42], String::new());
        let n = libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE);
        t("F_SEAL_WRITE with a writable mapping is EBUSY", n == -1 && errno() == libc::EBUSY, r(n));
        libc::munmap(p.cast(), 2 * PAGE);
        t("F_SEAL_WRITE after munmap", libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) == 0, r(-1));
        let n = pwrite(fd, b"x", 0);
        t("write to a write-sealed memfd is EPERM", n == -1 && errno() == libc::EPERM, r(n));
        let m = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        t("writable MAP_SHARED of it is EPERM", failed(m) && errno() == libc::EPERM, r(-1));
        let m = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, fd, 0);
        t("a private writable mapping is allowed", !failed(m) && rd(m, 0) == 42, r(-1));
        libc::munmap(m.cast(), PAGE);
        t("F_SEAL_SHRINK|F_SEAL_GROW", libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) == 0, r(-1));
        let n = ftruncate(fd, PAGE as i64);
        t("shrinking a shrink-sealed memfd is EPERM", n == -1 && errno() == libc::EPERM, r(n));
        let n = ftruncate(fd, 4 * PAGE as i64);
        t("growing a grow-sealed memfd is EPERM", n == -1 && errno() == libc::EPERM, r(n));
        t("F_SEAL_SEAL", libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SEAL) == 0, r(-1));
        let n = libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_FUTURE_WRITE);
        t("no seal after F_SEAL_SEAL (EPERM)", n == -1 && errno() == libc::EPERM, r(n));
        let s = libc::fcntl(fd, libc::F_GET_SEALS);
        t("F_GET_SEALS shows them", s == 15, r(s));
        libc::close(fd);
        let fd = libc::memfd_create(name.as_ptr(), 0);
        t("without MFD_ALLOW_SEALING it carries F_SEAL_SEAL", libc::fcntl(fd, libc::F_GET_SEALS) == libc::F_SEAL_SEAL, r(libc::fcntl(fd, libc::F_GET_SEALS)));
        let n = libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE);
        t("and F_ADD_SEALS is EPERM", n == -1 && errno() == libc::EPERM, r(n));
        libc::close(fd);
        let n = libc::memfd_create(name.as_ptr(), 0x100);
        t("unknown memfd flags are EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let long = c(&"n".repeat(250));
        let n = libc::memfd_create(long.as_ptr(), 0);
        t("a 250-byte name is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let mut fds = [0; 2];
        libc::pipe(fds.as_mut_ptr());
        let n = libc::fcntl(fds[0], libc::F_GET_SEALS);
        t("F_GET_SEALS of a pipe is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

fn shared_anon() {
    let p = map(2 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
    wr(p, 0, 1);
    let st = in_child(|| {
        wr(p, 0, 2);
        wr(p, PAGE, 3);
        0
    });
    t("MAP_SHARED|MAP_ANONYMOUS is shared across fork", st == 0 && rd(p, 0) == 2 && rd(p, PAGE) == 3, String::new());
    let mut v = [9u8; 2];
    // SAFETY: mincore writes 2 bytes; p is mapped.
    unsafe {
        libc::madvise(p.cast(), 2 * PAGE, libc::MADV_DONTNEED);
        t("MADV_DONTNEED keeps shared memory's data", rd(p, 0) == 2 && rd(p, PAGE) == 3, String::new());
        let n = libc::madvise(p.add(PAGE).cast(), PAGE, libc::MADV_REMOVE);
        t("MADV_REMOVE of shared memory", n == 0 && rd(p, PAGE) == 0 && rd(p, 0) == 2, r(n));
        let n = libc::mincore(p.cast(), 2 * PAGE, v.as_mut_ptr());
        t("mincore of it", n == 0, r(n));
        libc::munmap(p.cast(), 2 * PAGE);
    }
}

fn mremap() {
    // SAFETY: every pointer used below is mapped by this function (faults are
    // only provoked in children).
    unsafe {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // Two pages with two free pages after them.
        let p = map(4 * PAGE, rw, anon, -1, 0);
        libc::munmap(p.add(2 * PAGE).cast(), 2 * PAGE);
        wr(p, 0, 1);
        wr(p, PAGE, 2);
        let q = libc::mremap(p.cast(), 2 * PAGE, 4 * PAGE, 0) as *mut u8;
        t("mremap grows in place", q == p && rd(q, 0) == 1 && rd(q, PAGE) == 2 && rd(q, 3 * PAGE) == 0, r(-1));
        let q = libc::mremap(p.cast(), 4 * PAGE, PAGE, 0) as *mut u8;
        let st = touch_in_child(p, PAGE);
        t("mremap shrinks (the tail is gone)", q == p && signaled(st, libc::SIGSEGV), describe_status(st));
        // Blocked after: a page mapped right behind it.
        let blk = libc::mmap(p.add(PAGE).cast(), PAGE, rw, anon | libc::MAP_FIXED_NOREPLACE, -1, 0) as *mut u8;
        t("a neighbour behind it", blk == p.add(PAGE), r(-1));
        let n = libc::mremap(p.cast(), PAGE, 3 * PAGE, 0);
        t("growing without room or MREMAP_MAYMOVE is ENOMEM", n == libc::MAP_FAILED && errno() == libc::ENOMEM, r(-1));
        let q = libc::mremap(p.cast(), PAGE, 3 * PAGE, libc::MREMAP_MAYMOVE) as *mut u8;
        let st = touch_in_child(p, 0);
        t("MREMAP_MAYMOVE moves it with its data", q != p && rd(q, 0) == 1 && rd(q, 2 * PAGE) == 0 && signaled(st, libc::SIGSEGV), describe_status(st));
        let target = map(3 * PAGE, rw, anon, -1, 0);
        wr(target, 0, 77);
        let f = libc::mremap(q.cast(), 3 * PAGE, 3 * PAGE, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, target) as *mut u8;
        t("MREMAP_FIXED replaces the target", f == target && rd(f, 0) == 1, r(-1));
        // (MREMAP_DONTUNMAP: the kernel-core tests; this host's Linux refuses it.)
        let d = f;
        let n = libc::mremap(d.cast(), PAGE, PAGE, libc::MREMAP_FIXED, target);
        t("MREMAP_FIXED without MREMAP_MAYMOVE is EINVAL", n == libc::MAP_FAILED && errno() == libc::EINVAL, r(-1));
        let n = libc::mremap(d.add(1).cast(), PAGE, PAGE, 0);
        t("an unaligned address is EINVAL", n == libc::MAP_FAILED && errno() == libc::EINVAL, r(-1));
        libc::munmap(d.cast(), 3 * PAGE);
        let n = libc::mremap(d.cast(), PAGE, 2 * PAGE, libc::MREMAP_MAYMOVE);
        t("an unmapped old range is EFAULT", n == libc::MAP_FAILED && errno() == libc::EFAULT, r(-1));
        // A shared mapping keeps sharing after a move.
        let s = map(PAGE, rw, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
        wr(s, 0, 5);
        let s2 = libc::mremap(s.cast(), PAGE, 2 * PAGE, libc::MREMAP_MAYMOVE) as *mut u8;
        let st = in_child(|| {
            wr(s2, 0, 6);
            0
        });
        t("a moved shared mapping is still shared", st == 0 && rd(s2, 0) == 6, describe_status(st));
        let dup = libc::mremap(s2.cast(), 0, PAGE, libc::MREMAP_MAYMOVE) as *mut u8;
        t("old_len 0 maps a shared mapping a second time", dup != libc::MAP_FAILED as *mut u8 && rd(dup, 0) == 6, r(-1));
        for (a, l) in [(blk, PAGE), (s2, 2 * PAGE), (dup, PAGE)] {
            libc::munmap(a.cast(), l);
        }
    }
}

fn madvise(dir: &str) {
    let path = format!("{dir}/pc_madv");
    let fd = open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    ftruncate(fd, 2 * PAGE as i64);
    pwrite(fd, b"F", 0);
    // SAFETY: every pointer used is mapped here.
    unsafe {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let a = map(PAGE, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        wr(a, 0, 9);
        t("MADV_DONTNEED: private anonymous memory reads zeros", libc::madvise(a.cast(), PAGE, libc::MADV_DONTNEED) == 0 && rd(a, 0) == 0, String::new());
        wr(a, 0, 9);
        t("MADV_FREE of private anonymous memory", libc::madvise(a.cast(), PAGE, libc::MADV_FREE) == 0, r(-1));
        let sh = map(2 * PAGE, rw, libc::MAP_SHARED, fd, 0);
        wr(sh, 1, b'S');
        t("MADV_DONTNEED: a shared file mapping keeps its data", libc::madvise(sh.cast(), PAGE, libc::MADV_DONTNEED) == 0 && get(sh, 0, 2) == b"FS", String::new());
        let n = libc::madvise(sh.cast(), PAGE, libc::MADV_FREE);
        t("MADV_FREE of a file mapping is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let pv = map(PAGE, rw, libc::MAP_PRIVATE, fd, 0);
        wr(pv, 0, b'P');
        t("MADV_DONTNEED: a private file mapping reads the file again", libc::madvise(pv.cast(), PAGE, libc::MADV_DONTNEED) == 0 && rd(pv, 0) == b'F', String::new());
        t("MADV_WILLNEED of a file mapping", libc::madvise(sh.cast(), 2 * PAGE, libc::MADV_WILLNEED) == 0, r(-1));
        wr(sh, PAGE, b'2');
        let n = libc::madvise(sh.add(PAGE).cast(), PAGE, libc::MADV_REMOVE);
        t("MADV_REMOVE punches a hole in the file", n == 0 && lseek(fd, 0, libc::SEEK_HOLE) == PAGE as i64, r(n));
        t("the hole reads zeros", pread(fd, 1, PAGE as i64) == [0] && rd(sh, PAGE) == 0, String::new());
        let n = libc::madvise(pv.cast(), PAGE, libc::MADV_REMOVE);
        t("MADV_REMOVE of a private file mapping is EACCES", n == -1 && errno() == libc::EACCES, r(n));
        let n = libc::madvise(a.cast(), PAGE, libc::MADV_REMOVE);
        t("MADV_REMOVE of private anonymous memory is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let n = libc::madvise(a.add(1).cast(), PAGE, libc::MADV_DONTNEED);
        t("an unaligned madvise is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let n = libc::madvise(a.cast(), PAGE, 999);
        t("unknown advice is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        libc::munmap(a.cast(), PAGE);
        let n = libc::madvise(a.cast(), PAGE, libc::MADV_DONTNEED);
        t("MADV_DONTNEED of an unmapped range is ENOMEM", n == -1 && errno() == libc::ENOMEM, r(n));
        let mut v = [9u8; 1];
        let n = libc::mincore(a.cast(), PAGE, v.as_mut_ptr());
        t("mincore of an unmapped range is ENOMEM", n == -1 && errno() == libc::ENOMEM, r(n));
        let n = libc::mincore(sh.add(1).cast(), PAGE, v.as_mut_ptr());
        t("mincore of an unaligned address is EINVAL", n == -1 && errno() == libc::EINVAL, r(n));
        let fresh = map(PAGE, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        let n0 = libc::mincore(fresh.cast(), PAGE, v.as_mut_ptr());
        let untouched = v[0] & 1;
        wr(fresh, 0, 1);
        let n1 = libc::mincore(fresh.cast(), PAGE, v.as_mut_ptr());
        t("mincore: untouched memory is not resident, touched is", n0 == 0 && n1 == 0 && untouched == 0 && v[0] & 1 == 1, format!("{untouched} {}", v[0]));
        let mut sfs: libc::statfs = std::mem::zeroed();
        let d = c(dir);
        libc::statfs(d.as_ptr(), &mut sfs);
        t("statfs: tmpfs", sfs.f_type == 0x0102_1994 && sfs.f_bsize == 4096, format!("{:#x}", sfs.f_type));
        for (p, l) in [(sh, 2 * PAGE), (pv, PAGE), (fresh, PAGE)] {
            libc::munmap(p.cast(), l);
        }
        libc::close(fd);
    }
    unlink(&path);
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    if a.get(1).map(String::as_str) == Some("--child") {
        return child(a.get(2).map_or("", String::as_str));
    }
    let dir = a.get(1).cloned().unwrap_or_else(|| "/dev/shm".into());
    let me = String::from("/proc/self/exe");
    sparse(&dir);
    fallocate(&dir);
    shared_file(&dir, &me);
    memfd();
    shared_anon();
    mremap();
    madvise(&dir);
    // SAFETY: single-threaded program.
    i32::from(unsafe { FAILED })
}
