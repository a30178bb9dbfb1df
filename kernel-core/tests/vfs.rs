//! VFS tests on the mock HAL: mounts, path walk, each path call's errnos,
//! tmpfs semantics and procfs contents, driven by scripted guest programs.

mod common;

use common::*;
use kernel_core::{boot, Errno};
use linux_raw_sys::general as g;

const BASE: u64 = 0x40_0000;
const FDCWD: u64 = g::AT_FDCWD as i64 as u64;

fn neg(e: Errno) -> i64 {
    -(e.code() as i64)
}

/// A scripted program under construction: strings go to its data area,
/// calls and checks to its instructions.
struct Script {
    data: Vec<u8>,
    insns: Vec<Insn>,
}

impl Script {
    fn new() -> Script {
        Script { data: Vec::new(), insns: Vec::new() }
    }
    /// A NUL-terminated string in the data area; its address.
    fn s(&mut self, text: &str) -> u64 {
        let a = BASE + DATA_OFF + self.data.len() as u64;
        self.data.extend_from_slice(text.as_bytes());
        self.data.push(0);
        a
    }
    /// A system call that must return `want`.
    fn call(&mut self, what: &str, nr: u32, args: &[u64], want: i64) {
        self.insns.push(sys(nr, args));
        self.insns.push(ret_is(Box::leak(what.to_string().into_boxed_str()), want));
    }
    /// A system call whose result is not checked.
    fn run(&mut self, nr: u32, args: &[u64]) {
        self.insns.push(sys(nr, args));
    }
    /// Check `len` bytes of memory at `addr`.
    fn mem(&mut self, what: &str, addr: u64, len: usize, f: impl Fn(&[u8]) -> bool + 'static) {
        let what: &'static str = Box::leak(what.to_string().into_boxed_str());
        self.insns.push(check_mem(what, move |_| addr, len, move |_, m| f(m)));
    }
    /// Boot the script as `/init` over `files` and expect exit status 0.
    fn boot(mut self, files: &[(&str, u32, Vec<u8>)]) -> hal::mock::MockHal {
        self.insns.push(sys(g::__NR_exit_group, &[0]));
        let elf_bytes = elf(BASE, &self.data);
        let p = Program { base: BASE, insns: self.insns };
        let (mut hal, _) = machine(vec![p]);
        let mut all: Vec<(&str, u32, Vec<u8>)> = vec![("init", REG | 0o755, elf_bytes)];
        all.extend(files.iter().cloned());
        let cfg = config("/init", &["init"], &all);
        let st = boot(&mut hal, cfg).expect("boot");
        assert_eq!(st, 0, "log: {:?}", hal.log);
        hal
    }
}

const SCR: u64 = BASE + SCRATCH_OFF;

fn u32_at(m: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(m[off..off + 4].try_into().unwrap())
}
fn u64_at(m: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(m[off..off + 8].try_into().unwrap())
}

fn etc() -> Vec<(&'static str, u32, Vec<u8>)> {
    vec![("etc", DIR, vec![]), ("etc/motd", REG | 0o644, b"hello motd!\n".to_vec())]
}

#[test]
fn boot_mounts_and_dotdot_across_them() {
    let mut s = Script::new();
    let (tmp, dev_null, proc_, sys_online) = (s.s("/tmp"), s.s("/dev/null"), s.s("/proc"), s.s("/sys/devices/system/cpu/online"));
    let (tmp_a, dotdot, etc_x, tmp_x) = (s.s("/tmp/a"), s.s(".."), s.s("/etc/x"), s.s("/tmp/x"));
    let tmpfs = s.s("tmpfs");
    s.call("stat /tmp", g::__NR_stat, &[tmp, SCR], 0);
    s.mem("/tmp is a sticky dir on its own device", SCR, 144, |m| u32_at(m, 24) == 0o41777 && u64_at(m, 0) != 1);
    s.call("stat /dev/null", g::__NR_stat, &[dev_null, SCR], 0);
    s.mem("char device 1,3", SCR, 144, |m| u32_at(m, 24) & 0o170000 == 0o020000 && u64_at(m, 40) == (1 << 8) | 3);
    s.call("stat /proc", g::__NR_stat, &[proc_, SCR], 0);
    s.call("stat sysfs file", g::__NR_stat, &[sys_online, SCR], 0);
    s.call("mkdir /tmp/a", g::__NR_mkdir, &[tmp_a, 0o755], 0);
    s.call("chdir /tmp/a", g::__NR_chdir, &[tmp_a], 0);
    s.call("chdir ..", g::__NR_chdir, &[dotdot], 0);
    s.call("chdir .. out of the mount", g::__NR_chdir, &[dotdot], 0);
    s.call("getcwd", g::__NR_getcwd, &[SCR, 100], 2);
    s.mem("cwd is /", SCR, 2, |m| m == b"/\0");
    s.call("create /tmp/x", g::__NR_open, &[tmp_x, (g::O_CREAT | g::O_WRONLY) as u64, 0o644], 3);
    s.call("close", g::__NR_close, &[3], 0);
    s.call("rename across mounts", g::__NR_rename, &[tmp_x, etc_x], neg(Errno::EXDEV));
    s.call("link across mounts", g::__NR_link, &[tmp_x, etc_x], neg(Errno::EXDEV));
    s.call("rmdir a mount point", g::__NR_rmdir, &[tmp], neg(Errno::EBUSY));
    s.call("umount2 /tmp", g::__NR_umount2, &[tmp, 0], 0);
    s.call("its files are gone", g::__NR_stat, &[tmp_x, SCR], neg(Errno::ENOENT));
    s.call("umount2 of a non-mount", g::__NR_umount2, &[tmp, 0], neg(Errno::EINVAL));
    s.call("mount tmpfs", g::__NR_mount, &[tmpfs, tmp, tmpfs, 0, 0], 0);
    s.call("bad fs type", g::__NR_mount, &[tmpfs, tmp, etc_x, 0, 0], neg(Errno::ENODEV));
    s.call("statfs /tmp", g::__NR_statfs, &[tmp, SCR], 0);
    s.mem("tmpfs magic", SCR, 8, |m| u64_at(m, 0) == 0x0102_1994);
    s.call("statfs /proc", g::__NR_statfs, &[proc_, SCR], 0);
    s.mem("proc magic", SCR, 8, |m| u64_at(m, 0) == 0x9fa0);
    s.call("remount ro", g::__NR_mount, &[0, tmp, 0, 32 | 1, 0], 0);
    s.call("EROFS", g::__NR_mkdir, &[tmp_a, 0o755], neg(Errno::EROFS));
    s.call("EROFS create", g::__NR_open, &[tmp_x, (g::O_CREAT | g::O_WRONLY) as u64, 0o644], neg(Errno::EROFS));
    s.call("read-only open still works", g::__NR_open, &[tmp, g::O_RDONLY as u64], 3);
    s.call("busy while open", g::__NR_umount2, &[tmp, 0], neg(Errno::EBUSY));
    s.call("lazy unmount", g::__NR_umount2, &[tmp, 2], 0);
    s.boot(&etc());
}

#[test]
fn path_errnos_as_linux() {
    let mut s = Script::new();
    let (nope, motd_x, etc_, motd) = (s.s("/nope"), s.s("/etc/motd/x"), s.s("/etc"), s.s("/etc/motd"));
    let (d, d_sub, d_sub_deeper) = (s.s("/tmp/d"), s.s("/tmp/d/sub"), s.s("/tmp/d/sub/deeper"));
    let (lnk, loop1, loop2) = (s.s("/tmp/lnk"), s.s("/tmp/loop1"), s.s("/tmp/loop2"));
    let long = s.s(&"x".repeat(300));
    let (empty, dot) = (s.s(""), s.s("/tmp/d/."));
    s.call("ENOENT", g::__NR_open, &[nope, 0], neg(Errno::ENOENT));
    s.call("ENOTDIR", g::__NR_open, &[motd_x, 0], neg(Errno::ENOTDIR));
    s.call("empty path", g::__NR_open, &[empty, 0], neg(Errno::ENOENT));
    s.call("ENAMETOOLONG", g::__NR_open, &[long, 0], neg(Errno::ENAMETOOLONG));
    s.call("EISDIR write", g::__NR_open, &[etc_, g::O_WRONLY as u64], neg(Errno::EISDIR));
    s.call("O_DIRECTORY on a file", g::__NR_open, &[motd, (g::O_RDONLY | g::O_DIRECTORY) as u64], neg(Errno::ENOTDIR));
    s.call("mkdir exists", g::__NR_mkdir, &[etc_, 0o755], neg(Errno::EEXIST));
    s.call("mkdir d", g::__NR_mkdir, &[d, 0o755], 0);
    s.call("mkdir d/.", g::__NR_mkdir, &[dot, 0o755], neg(Errno::EEXIST));
    s.call("mkdir sub", g::__NR_mkdir, &[d_sub, 0o755], 0);
    s.call("rmdir non-empty", g::__NR_rmdir, &[d], neg(Errno::ENOTEMPTY));
    s.call("rmdir .", g::__NR_rmdir, &[dot], neg(Errno::EINVAL));
    s.call("unlink a dir", g::__NR_unlink, &[d], neg(Errno::EISDIR));
    s.call("rmdir a file", g::__NR_rmdir, &[motd], neg(Errno::ENOTDIR));
    s.call("rename into itself", g::__NR_rename, &[d, d_sub_deeper], neg(Errno::EINVAL));
    s.call("rename dir over file", g::__NR_rename, &[d_sub, motd], neg(Errno::EXDEV));
    s.call("symlink", g::__NR_symlink, &[motd, lnk], 0);
    s.call("symlink exists", g::__NR_symlink, &[motd, lnk], neg(Errno::EEXIST));
    s.call("O_NOFOLLOW on a link", g::__NR_open, &[lnk, (g::O_RDONLY | g::O_NOFOLLOW) as u64], neg(Errno::ELOOP));
    s.call("open through link", g::__NR_open, &[lnk, g::O_RDONLY as u64], 3);
    s.call("readlink", g::__NR_readlink, &[lnk, SCR, 64], 9);
    s.mem("target", SCR, 9, |m| m == b"/etc/motd");
    s.call("readlink of a non-link", g::__NR_readlink, &[motd, SCR, 64], neg(Errno::EINVAL));
    s.call("loop1", g::__NR_symlink, &[loop2, loop1], 0);
    s.call("loop2", g::__NR_symlink, &[loop1, loop2], 0);
    s.call("ELOOP", g::__NR_open, &[loop1, 0], neg(Errno::ELOOP));
    s.call("O_EXCL on a link", g::__NR_open, &[lnk, (g::O_CREAT | g::O_EXCL | g::O_WRONLY) as u64, 0o644], neg(Errno::EEXIST));
    s.call("link to a dir", g::__NR_link, &[d, nope], neg(Errno::EPERM));
    s.call("unlinkat bad flag", g::__NR_unlinkat, &[FDCWD, lnk, 1], neg(Errno::EINVAL));
    s.call("renameat2 bad flags", g::__NR_renameat2, &[FDCWD, lnk, FDCWD, nope, 3], neg(Errno::EINVAL));
    s.call("renameat2 NOREPLACE", g::__NR_renameat2, &[FDCWD, lnk, FDCWD, loop1, 1], neg(Errno::EEXIST));
    s.call("rmdir sub", g::__NR_rmdir, &[d_sub], 0);
    s.call("rmdir d", g::__NR_rmdir, &[d], 0);
    s.call("gone", g::__NR_rmdir, &[d], neg(Errno::ENOENT));
    s.boot(&etc());
}

#[test]
fn tmpfs_links_rename_unlink_open_files_and_modes() {
    let mut s = Script::new();
    let (a, b, c) = (s.s("/tmp/a"), s.s("/tmp/b"), s.s("/tmp/c"));
    let (dir1, dir2, dir1_f) = (s.s("/tmp/dir1"), s.s("/tmp/dir2"), s.s("/tmp/dir1/f"));
    let dir2_f = s.s("/tmp/dir2/f");
    let tmp = s.s("/tmp");
    let text = s.s("0123456789");
    s.call("umask 027", g::__NR_umask, &[0o027], 0o022);
    s.call("create a", g::__NR_open, &[a, (g::O_CREAT | g::O_RDWR) as u64, 0o666], 3);
    s.call("write", g::__NR_write, &[3, text, 10], 10);
    s.call("fstat", g::__NR_fstat, &[3, SCR], 0);
    s.mem("mode 0640, nlink 1, size 10", SCR, 144, |m| u32_at(m, 24) == 0o100640 && u64_at(m, 16) == 1 && u64_at(m, 48) == 10);
    s.call("link a b", g::__NR_link, &[a, b], 0);
    s.call("fstat", g::__NR_fstat, &[3, SCR], 0);
    s.mem("nlink 2", SCR, 24, |m| u64_at(m, 16) == 2);
    s.call("unlink a", g::__NR_unlink, &[a], 0);
    s.call("unlink b", g::__NR_unlink, &[b], 0);
    s.call("fstat of the unlinked file", g::__NR_fstat, &[3, SCR], 0);
    s.mem("nlink 0", SCR, 24, |m| u64_at(m, 16) == 0);
    s.call("pread still works", g::__NR_pread64, &[3, SCR, 4, 6], 4);
    s.mem("data", SCR, 4, |m| m == b"6789");
    s.call("close", g::__NR_close, &[3], 0);
    // O_APPEND and O_TRUNC.
    s.call("create c", g::__NR_open, &[c, (g::O_CREAT | g::O_WRONLY | g::O_APPEND) as u64, 0o644], 3);
    s.call("write", g::__NR_write, &[3, text, 4], 4);
    s.call("seek 0", g::__NR_lseek, &[3, 0, 0], 0);
    s.call("append", g::__NR_write, &[3, text, 2], 2);
    s.call("stat", g::__NR_stat, &[c, SCR], 0);
    s.mem("size 6", SCR, 56, |m| u64_at(m, 48) == 6);
    s.call("close", g::__NR_close, &[3], 0);
    s.call("O_TRUNC", g::__NR_open, &[c, (g::O_WRONLY | g::O_TRUNC) as u64], 3);
    s.call("stat", g::__NR_stat, &[c, SCR], 0);
    s.mem("size 0", SCR, 56, |m| u64_at(m, 48) == 0);
    s.call("close", g::__NR_close, &[3], 0);
    s.call("truncate", g::__NR_truncate, &[c, 100], 0);
    s.call("stat", g::__NR_stat, &[c, SCR], 0);
    s.mem("size 100", SCR, 56, |m| u64_at(m, 48) == 100);
    s.call("truncate a dir", g::__NR_truncate, &[tmp, 0], neg(Errno::EISDIR));
    s.call("truncate negative", g::__NR_truncate, &[c, u64::MAX], neg(Errno::EINVAL));
    // Rename over an existing file replaces it; directories move with their link counts.
    s.call("create a", g::__NR_open, &[a, (g::O_CREAT | g::O_WRONLY) as u64, 0o644], 3);
    s.call("rename c over a", g::__NR_rename, &[c, a], 0);
    s.call("c is gone", g::__NR_stat, &[c, SCR], neg(Errno::ENOENT));
    s.call("a is c", g::__NR_stat, &[a, SCR], 0);
    s.mem("size 100", SCR, 56, |m| u64_at(m, 48) == 100);
    s.call("fstat old a (replaced)", g::__NR_fstat, &[3, SCR], 0);
    s.mem("nlink 0", SCR, 24, |m| u64_at(m, 16) == 0);
    s.call("mkdir dir1", g::__NR_mkdir, &[dir1, 0o777], 0);
    s.call("mkdir dir2", g::__NR_mkdir, &[dir2, 0o777], 0);
    s.call("stat dir1", g::__NR_stat, &[dir1, SCR], 0);
    s.mem("mode 0750 (umask)", SCR, 28, |m| u32_at(m, 24) == 0o40750);
    s.call("file in dir1", g::__NR_open, &[dir1_f, (g::O_CREAT | g::O_WRONLY) as u64, 0o600], 4);
    s.call("dir over non-empty dir", g::__NR_rename, &[dir2, dir1], neg(Errno::ENOTEMPTY));
    s.call("file over dir", g::__NR_rename, &[a, dir2], neg(Errno::EISDIR));
    s.call("dir over file", g::__NR_rename, &[dir2, a], neg(Errno::ENOTDIR));
    s.call("dir1 over empty dir2", g::__NR_rename, &[dir1, dir2], 0);
    s.call("file moved along", g::__NR_stat, &[dir2_f, SCR], 0);
    s.call("exchange", g::__NR_renameat2, &[FDCWD, a, FDCWD, dir2, 2], 0);
    s.call("a is now the dir", g::__NR_stat, &[a, SCR], 0);
    s.mem("dir", SCR, 28, |m| u32_at(m, 24) & 0o170000 == 0o040000);
    // chmod, chown, utimensat.
    s.call("chmod", g::__NR_chmod, &[dir2, 0o4711], 0);
    s.call("stat", g::__NR_stat, &[dir2, SCR], 0);
    s.mem("mode 04711", SCR, 28, |m| u32_at(m, 24) == 0o104711);
    s.call("chown", g::__NR_chown, &[dir2, 1000, 100], 0);
    s.call("stat", g::__NR_stat, &[dir2, SCR], 0);
    s.mem("owner and setuid dropped", SCR, 36, |m| u32_at(m, 28) == 1000 && u32_at(m, 32) == 100 && u32_at(m, 24) == 0o100711);
    s.call("fchmodat on a link", g::__NR_fchmodat, &[FDCWD, dir2, 0o600, g::AT_SYMLINK_NOFOLLOW as u64], 0);
    s.call("utimensat NULL path on cwd", g::__NR_utimensat, &[FDCWD, 0, 0, 0], neg(Errno::EFAULT));
    s.call("fsync", g::__NR_fsync, &[4], 0);
    s.call("fsync bad fd", g::__NR_fsync, &[99], neg(Errno::EBADF));
    s.boot(&etc());
}

#[test]
fn utimensat_sets_times_and_statx() {
    let mut s = Script::new();
    let f = s.s("/tmp/f");
    s.call("create", g::__NR_open, &[f, (g::O_CREAT | g::O_WRONLY) as u64, 0o644], 3);
    // times[0] = {5, UTIME_OMIT}, times[1] = {1234, 500}
    let mut ts = Vec::new();
    for v in [5u64, (1 << 30) - 2, 1234, 500] {
        ts.extend_from_slice(&v.to_le_bytes());
    }
    let t = BASE + SCRATCH_OFF + 0x400;
    s.insns.push(store(move |_| t, ts));
    s.call("utimensat", g::__NR_utimensat, &[FDCWD, f, t, 0], 0);
    s.call("stat", g::__NR_stat, &[f, SCR], 0);
    s.mem("mtime", SCR, 144, |m| u64_at(m, 88) == 1234 && u64_at(m, 96) == 500);
    s.call("statx", g::__NR_statx, &[FDCWD, f, 0, 0x7ff, SCR], 0);
    s.mem("statx mtime, mode, size", SCR, 256, |m| u32_at(m, 28) & 0xffff == 0o100644 && u64_at(m, 112) == 1234 && u32_at(m, 120) == 500);
    let empty = s.s("");
    s.call("statx empty path", g::__NR_statx, &[3, empty, g::AT_EMPTY_PATH as u64, 0x7ff, SCR], 0);
    s.mem("statx of fd 3", SCR, 32, |m| u32_at(m, 28) & 0xffff == 0o100644);
    s.call("statx bad flags", g::__NR_statx, &[FDCWD, f, 0x6000, 0x7ff, SCR], neg(Errno::EINVAL));
    // Bad nanoseconds.
    let bad = BASE + SCRATCH_OFF + 0x500;
    let mut b = Vec::new();
    for v in [0u64, 2_000_000_000, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    s.insns.push(store(move |_| bad, b));
    s.call("EINVAL nsec", g::__NR_utimensat, &[FDCWD, f, bad, 0], neg(Errno::EINVAL));
    s.boot(&[]);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn procfs_is_generated_from_kernel_state() {
    let mut s = Script::new();
    let (stat, self_, mounts, proc_, status, fd3) =
        (s.s("/proc/self/stat"), s.s("/proc/self"), s.s("/proc/mounts"), s.s("/proc"), s.s("/proc/1/status"), s.s("/proc/self/fd/3"));
    let (meminfo, exe, nope) = (s.s("/proc/meminfo"), s.s("/proc/self/exe"), s.s("/proc/999/stat"));
    s.call("open /proc/self/stat", g::__NR_open, &[stat, 0], 3);
    s.run(g::__NR_read, &[3, SCR, 512]);
    s.insns.push(check("read some", |c| (c.regs.rax as i64) > 20));
    s.mem("stat line", SCR, 14, |m| m == b"1 (init) R 0 1");
    s.call("readlink /proc/self/fd/3", g::__NR_readlink, &[fd3, SCR, 64], 12);
    s.mem("fd link", SCR, 12, |m| m == b"/proc/1/stat");
    s.call("readlink /proc/self", g::__NR_readlink, &[self_, SCR, 64], 1);
    s.mem("self", SCR, 1, |m| m == b"1");
    s.call("readlink exe", g::__NR_readlink, &[exe, SCR, 64], 5);
    s.mem("exe", SCR, 5, |m| m == b"/init");
    s.call("no such pid", g::__NR_open, &[nope, 0], neg(Errno::ENOENT));
    s.call("open mounts", g::__NR_open, &[mounts, 0], 4);
    s.run(g::__NR_read, &[4, SCR, 2048]);
    s.mem("mounts", SCR, 2048, |m| contains(m, b"proc /proc proc rw") && contains(m, b"tmpfs /tmp tmpfs rw") && contains(m, b"rootfs / rootfs rw"));
    s.call("open status", g::__NR_open, &[status, 0], 5);
    s.run(g::__NR_read, &[5, SCR, 2048]);
    s.mem("status", SCR, 2048, |m| contains(m, b"Name:\tinit\n") && contains(m, b"Pid:\t1\n") && contains(m, b"VmRSS:"));
    s.call("open meminfo", g::__NR_open, &[meminfo, 0], 6);
    s.run(g::__NR_read, &[6, SCR, 2048]);
    s.mem("meminfo", SCR, 2048, |m| m.starts_with(b"MemTotal:"));
    s.call("open /proc", g::__NR_open, &[proc_, (g::O_RDONLY | g::O_DIRECTORY) as u64], 7);
    s.run(g::__NR_getdents64, &[7, SCR, 2048]);
    s.mem("entries", SCR, 2048, |m| contains(m, b"self\0") && contains(m, b"1\0") && contains(m, b"meminfo\0"));
    s.call("write to a proc file", g::__NR_open, &[stat, g::O_WRONLY as u64], neg(Errno::EACCES));
    s.boot(&[]);
}

#[test]
fn proc_fd_links_reach_the_open_file_even_a_pipe() {
    let mut s = Script::new();
    let (devfd3, text) = (s.s("/dev/fd/3"), s.s("hi"));
    s.call("pipe", g::__NR_pipe2, &[SCR, 0], 0);
    s.mem("fds 3 and 4", SCR, 8, |m| u32_at(m, 0) == 3 && u32_at(m, 4) == 4);
    s.call("write", g::__NR_write, &[4, text, 2], 2);
    s.call("open /dev/fd/3", g::__NR_open, &[devfd3, g::O_RDONLY as u64], 5);
    s.call("read through the magic link", g::__NR_read, &[5, SCR + 64, 16], 2);
    s.mem("pipe data", SCR + 64, 2, |m| m == b"hi");
    s.run(g::__NR_readlink, &[devfd3, SCR + 128, 64]);
    s.mem("readlink shows pipe:[ino]", SCR + 128, 6, |m| m == b"pipe:[");
    s.boot(&[]);
}
