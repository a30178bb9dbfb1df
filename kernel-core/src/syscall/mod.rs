//! System call dispatch: the table by number (numbers from `linux-raw-sys`),
//! names for traces, ENOSYS counting.

mod fd;
mod file;
mod info;
mod mem;
pub mod names;
mod process;
mod signal;
mod time;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as nr;

use crate::kernel::Kernel;
use crate::task::{Blocked, ExitStatus, Pid, Task};
use crate::{Errno, SysResult};

/// What a handler wants the loop to do.
#[derive(Debug)]
pub enum Flow {
    /// Return this result in `rax`.
    Ret(SysResult),
    /// Block the task.
    Block(Blocked),
    /// The process exits.
    Exit(ExitStatus),
    /// A new image replaced the registers (`execve` succeeded).
    Exec,
}

impl From<SysResult> for Flow {
    fn from(r: SysResult) -> Flow {
        Flow::Ret(r)
    }
}

/// The context a handler runs in: the HAL, the kernel and the calling task
/// (taken out of the task table while it runs).
pub struct SysCtx<'a, H: Hal> {
    /// The machine.
    pub hal: &'a mut H,
    /// Kernel state.
    pub k: &'a mut Kernel<H::Space>,
    /// The caller.
    pub t: &'a mut Task<H::Space>,
}

/// Longest string argument (path) read from the guest.
pub const PATH_MAX: usize = 4096;

impl<H: Hal> SysCtx<'_, H> {
    /// Copy from user memory (`EFAULT` on a bad pointer).
    pub fn read_user(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mm = self.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        mm.copy_from_user(addr, buf, &mut self.k.frames, self.hal.phys())
    }
    /// Linux's `access_ok`: `EFAULT` when `[addr, addr + len)` is not entirely
    /// user address space. Checked before anything else happens (a `read` at
    /// end of file with a kernel-address buffer still fails), as Linux does.
    pub fn access_ok(&self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = self.t.mm.as_ref().map_or(0, |mm| mm.user_end());
        match addr.checked_add(len) {
            Some(e) if e <= end => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }
    /// Copy to user memory.
    pub fn write_user(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let mm = self.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        mm.copy_to_user(addr, data, &mut self.k.frames, self.hal.phys())
    }
    /// Read `N` bytes.
    pub fn read_array<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], Errno> {
        let mut b = [0u8; N];
        self.read_user(addr, &mut b)?;
        Ok(b)
    }
    /// Read a u64.
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.read_array::<8>(addr)?))
    }
    /// Read a u32.
    pub fn read_u32(&mut self, addr: u64) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.read_array::<4>(addr)?))
    }
    /// Read a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstring(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mm = self.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        mm.read_cstring(addr, max, &mut self.k.frames, self.hal.phys())
    }
    /// Read a path argument (`ENAMETOOLONG`, `EFAULT`, `ENOENT` for empty).
    pub fn read_path(&mut self, addr: u64) -> Result<String, Errno> {
        let b = self.read_cstring(addr, PATH_MAX)?;
        String::from_utf8(b).map_err(|_| Errno::ENOENT)
    }
    /// Log once per key.
    pub fn log_once(&mut self, key: &'static str, line: &str) {
        self.k.log_once(self.hal, key, line);
    }
}

macro_rules! table {
    ($($name:ident / $argc:literal => $handler:path),* $(,)?) => {
        fn call<H: Hal>(cx: &mut SysCtx<'_, H>, n: u64, a: [u64; 6]) -> Option<Flow> {
            let n = u32::try_from(n).ok()?;
            Some(match n {
                $(x if x == nr::$name => $handler(cx, a).into(),)*
                _ => return None,
            })
        }
        /// Number of arguments a call takes, for traces.
        fn argc(n: u64) -> usize {
            match u32::try_from(n) {
                $(Ok(x) if x == nr::$name => $argc,)*
                _ => 6,
            }
        }
    };
}

table! {
    __NR_read / 3 => file::read,
    __NR_write / 3 => file::write,
    __NR_readv / 3 => file::readv,
    __NR_writev / 3 => file::writev,
    __NR_pread64 / 4 => file::pread64,
    __NR_pwrite64 / 4 => file::pwrite64,
    __NR_open / 3 => file::open,
    __NR_openat / 4 => file::openat,
    __NR_creat / 2 => file::creat,
    __NR_close / 1 => fd::close,
    __NR_lseek / 3 => file::lseek,
    __NR_fstat / 2 => file::fstat,
    __NR_stat / 2 => file::stat,
    __NR_lstat / 2 => file::lstat,
    __NR_newfstatat / 4 => file::newfstatat,
    __NR_access / 2 => file::access,
    __NR_faccessat / 3 => file::faccessat,
    __NR_faccessat2 / 4 => file::faccessat2,
    __NR_readlink / 3 => file::readlink,
    __NR_readlinkat / 4 => file::readlinkat,
    __NR_getdents64 / 3 => file::getdents64,
    __NR_getcwd / 2 => file::getcwd,
    __NR_chdir / 1 => file::chdir,
    __NR_fchdir / 1 => file::fchdir,
    __NR_mkdir / 2 => file::mkdir,
    __NR_mkdirat / 3 => file::mkdirat,
    __NR_unlink / 1 => file::unlink,
    __NR_unlinkat / 3 => file::unlinkat,
    __NR_ftruncate / 2 => file::ftruncate,
    __NR_fcntl / 3 => fd::fcntl,
    __NR_dup / 1 => fd::dup,
    __NR_dup2 / 2 => fd::dup2,
    __NR_dup3 / 3 => fd::dup3,
    __NR_ioctl / 3 => fd::ioctl,
    __NR_poll / 3 => fd::poll,
    __NR_pipe / 1 => fd::pipe,
    __NR_pipe2 / 2 => fd::pipe2,
    __NR_pause / 0 => fd::pause,
    __NR_ppoll / 4 => fd::ppoll,
    __NR_umask / 1 => file::umask,
    __NR_brk / 1 => mem::brk,
    __NR_mmap / 6 => mem::mmap,
    __NR_munmap / 2 => mem::munmap,
    __NR_mprotect / 3 => mem::mprotect,
    __NR_madvise / 3 => mem::madvise,
    __NR_arch_prctl / 2 => info::arch_prctl,
    __NR_set_tid_address / 1 => info::set_tid_address,
    __NR_set_robust_list / 2 => info::set_robust_list,
    __NR_rseq / 4 => info::rseq,
    __NR_prlimit64 / 4 => info::prlimit64,
    __NR_getrlimit / 2 => info::getrlimit,
    __NR_setrlimit / 2 => info::setrlimit,
    __NR_getrandom / 3 => info::getrandom,
    __NR_uname / 1 => info::uname,
    __NR_sched_yield / 0 => info::sched_yield,
    __NR_sched_getaffinity / 3 => info::sched_getaffinity,
    __NR_getpid / 0 => info::getpid,
    __NR_getppid / 0 => info::getppid,
    __NR_gettid / 0 => info::gettid,
    __NR_getuid / 0 => info::getid0,
    __NR_geteuid / 0 => info::getid0,
    __NR_getgid / 0 => info::getid0,
    __NR_getegid / 0 => info::getid0,
    __NR_getpgid / 1 => info::getpgid,
    __NR_getpgrp / 0 => info::getpgrp,
    __NR_setpgid / 2 => info::setpgid,
    __NR_getsid / 1 => info::getsid,
    __NR_setsid / 0 => info::setsid,
    __NR_fork / 0 => process::fork,
    __NR_vfork / 0 => process::vfork,
    __NR_clone / 5 => process::clone,
    __NR_execve / 3 => process::execve,
    __NR_execveat / 5 => process::execveat,
    __NR_wait4 / 4 => process::wait4,
    __NR_waitid / 5 => process::waitid,
    __NR_exit / 1 => process::exit,
    __NR_exit_group / 1 => process::exit_group,
    __NR_kill / 2 => signal::kill,
    __NR_tkill / 2 => signal::tkill,
    __NR_tgkill / 3 => signal::tgkill,
    __NR_rt_sigaction / 4 => signal::rt_sigaction,
    __NR_rt_sigprocmask / 4 => signal::rt_sigprocmask,
    __NR_sigaltstack / 2 => signal::sigaltstack,
    __NR_clock_gettime / 2 => time::clock_gettime,
    __NR_clock_getres / 2 => time::clock_getres,
    __NR_gettimeofday / 2 => time::gettimeofday,
    __NR_time / 1 => time::time,
    __NR_nanosleep / 2 => time::nanosleep,
    __NR_clock_nanosleep / 4 => time::clock_nanosleep,
    __NR_futex / 6 => time::futex,
}

/// Run system call `n` for `t`.
pub fn dispatch<H: Hal>(hal: &mut H, k: &mut Kernel<H::Space>, t: &mut Task<H::Space>, n: u64, a: [u64; 6]) -> Flow {
    let mut cx = SysCtx { hal, k, t };
    match call(&mut cx, n, a) {
        Some(f) => f,
        None => {
            *cx.k.unknown.entry(n).or_insert(0) += 1;
            Flow::Ret(Err(Errno::ENOSYS))
        }
    }
}

/// The name of call `n` (or `syscall_NNN`).
pub fn name_of(n: u64) -> String {
    match names::name(n) {
        Some(s) => String::from(s),
        None => format!("syscall_{n}"),
    }
}

/// `[pid] name(args...)` for the trace.
pub fn trace_call(pid: Pid, n: u64, a: &[u64; 6]) -> String {
    let mut s = format!("[{pid}] {}(", name_of(n));
    for (i, v) in a.iter().take(argc(n)).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if *v < 0x10000 {
            s.push_str(&format!("{v}"));
        } else if (*v as i64) < 0 && (*v as i64) > -4096 {
            s.push_str(&format!("{}", *v as i64));
        } else {
            s.push_str(&format!("{v:#x}"));
        }
    }
    s.push(')');
    s
}

/// The termios of a freshly opened Linux console (cooked mode, echo, 38400 8N1).
pub fn default_termios() -> [u8; 36] {
    let mut t = [0u8; 36];
    t[0..4].copy_from_slice(&0x0500u32.to_le_bytes()); // c_iflag: ICRNL | IXON
    t[4..8].copy_from_slice(&0x0005u32.to_le_bytes()); // c_oflag: OPOST | ONLCR
    t[8..12].copy_from_slice(&0x00bfu32.to_le_bytes()); // c_cflag: B38400 | CS8 | CREAD
    t[12..16].copy_from_slice(&0x8a3bu32.to_le_bytes()); // c_lflag: ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN
    // c_line = 0, then c_cc: INTR QUIT ERASE KILL EOF TIME MIN SWTC START STOP SUSP EOL REPRINT DISCARD WERASE LNEXT EOL2
    let cc = [3u8, 0x1c, 0x7f, 0x15, 4, 0, 1, 0, 0x11, 0x13, 0x1a, 0, 0x12, 0x0f, 0x17, 0x16, 0];
    t[17..17 + cc.len()].copy_from_slice(&cc);
    t
}
