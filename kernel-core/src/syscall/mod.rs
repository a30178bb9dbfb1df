//! System call dispatch: the table by number (numbers from `linux-raw-sys`),
//! names for traces, ENOSYS counting.

mod blockdev;
mod epoll;
mod eventfd;
mod fd;
mod file;
pub(crate) mod fs_ops;
mod info;
pub mod inotify;
mod locks;
mod ipc_sysv;
mod mem;
mod memfd;
mod misc;
mod mqueue;
pub mod names;
pub mod pidfd;
pub mod poll;
mod process;
mod ptrace;
mod reboot;
mod caps;
mod cred;
pub mod futex;
mod sched;
mod share;
mod signal;
pub mod signalfd;
mod splice;
mod socket;
mod syslog;
mod time;
mod timer;
mod timerfd;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hal::Hal;

/// System call numbers: linux-raw-sys's, plus the few it does not have yet.
mod nr {
    pub use linux_raw_sys::general::*;
    /// Linux 6.16's `uprobe` (the uprobe trampoline's call).
    #[allow(non_upper_case_globals)]
    pub const __NR_uprobe: u32 = 336;
}

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
    /// Audit `connect`, `bind` or `accept` (the peer's address) of `addr` (`audit_log=`).
    pub fn audit_net(&mut self, op: &str, addr: &crate::net::SockAddr) {
        let hal = &*self.hal;
        self.k.audit.net(self.t.tgid, self.t.cred.uid, op, addr, || hal.realtime_ns());
    }
    /// Audit an open that may write (`audit_log=`).
    pub fn audit_open(&mut self, path: &str, flags: u32) {
        let hal = &*self.hal;
        self.k.audit.open(self.t.tgid, self.t.cred.uid, path, flags, || hal.realtime_ns());
    }
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
        // Any bytes: names that are not UTF-8 are carried losslessly.
        Ok(crate::fs::path::name_from_bytes(&b))
    }
    /// Log once per key.
    pub fn log_once(&mut self, key: &'static str, line: &str) {
        self.k.log_once(self.hal, key, line);
    }
}

macro_rules! table {
    ($($name:ident / $argc:literal $([$restart:ident])? => $handler:path),* $(,)?) => {
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
        /// The name of an implemented call (its row's constant without `__NR_`).
        fn table_name(n: u64) -> Option<&'static str> {
            match u32::try_from(n) {
                $(Ok(x) if x == nr::$name => Some(&stringify!($name)["__NR_".len()..]),)*
                _ => None,
            }
        }
        /// What a signal handler does to call `n` when it interrupts it.
        pub fn restart_class(n: u64) -> Restart {
            match u32::try_from(n) {
                $(Ok(x) if x == nr::$name => table!(@restart $($restart)?),)*
                _ => Restart::Sys,
            }
        }
    };
    (@restart) => { Restart::Sys };
    (@restart $r:ident) => { Restart::$r };
}

/// What becomes of a blocked call a signal handler interrupts (Linux's
/// restart errnos), declared per row of the table (`[NoHand]`, `[Rescan]`;
/// no mark: `Sys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Restarted if the handler has `SA_RESTART`, else `EINTR` (`ERESTARTSYS`).
    Sys,
    /// Never restarted after a handler: `EINTR` (`ERESTARTNOHAND`,
    /// `ERESTART_RESTARTBLOCK`: sleeps, waits for signals, poll/select/epoll).
    NoHand,
    /// A woken wait for children re-scans them before a handler interrupts
    /// it, as Linux's `do_wait` does (a ready child is reported, the handler
    /// runs after); a wait that would block again is then as `Sys`.
    Rescan,
}

table! {
    __NR_read / 3 => signalfd::read,
    __NR_write / 3 => file::write,
    __NR_readv / 3 => file::readv,
    __NR_writev / 3 => file::writev,
    __NR_preadv / 5 => file::preadv,
    __NR_pwritev / 5 => file::pwritev,
    __NR_preadv2 / 6 => file::preadv2,
    __NR_pwritev2 / 6 => file::pwritev2,
    __NR_pread64 / 4 => file::pread64,
    __NR_pwrite64 / 4 => file::pwrite64,
    __NR_open / 3 => file::open,
    __NR_openat / 4 => file::openat,
    __NR_creat / 2 => file::creat,
    __NR_close / 1 => fd::close,
    __NR_lseek / 3 => file::lseek,
    __NR_fstat / 2 => file::fstat,
    __NR_stat / 2 => fs_ops::stat,
    __NR_lstat / 2 => fs_ops::lstat,
    __NR_newfstatat / 4 => fs_ops::newfstatat,
    __NR_access / 2 => fs_ops::access,
    __NR_faccessat / 3 => fs_ops::faccessat,
    __NR_faccessat2 / 4 => fs_ops::faccessat2,
    __NR_readlink / 3 => fs_ops::readlink,
    __NR_readlinkat / 4 => fs_ops::readlinkat,
    __NR_getdents64 / 3 => file::getdents64,
    __NR_getcwd / 2 => file::getcwd,
    __NR_chdir / 1 => file::chdir,
    __NR_fchdir / 1 => file::fchdir,
    __NR_mkdir / 2 => fs_ops::mkdir,
    __NR_mkdirat / 3 => fs_ops::mkdirat,
    __NR_unlink / 1 => fs_ops::unlink,
    __NR_unlinkat / 3 => fs_ops::unlinkat,
    __NR_ftruncate / 2 => file::ftruncate,
    __NR_fallocate / 4 => file::fallocate,
    __NR_rmdir / 1 => fs_ops::rmdir,
    __NR_rename / 2 => fs_ops::rename,
    __NR_renameat / 4 => fs_ops::renameat,
    __NR_renameat2 / 5 => fs_ops::renameat2,
    __NR_link / 2 => fs_ops::link,
    __NR_linkat / 5 => fs_ops::linkat,
    __NR_symlink / 2 => fs_ops::symlink,
    __NR_symlinkat / 3 => fs_ops::symlinkat,
    __NR_mknod / 3 => fs_ops::mknod,
    __NR_mknodat / 4 => fs_ops::mknodat,
    __NR_chmod / 2 => fs_ops::chmod,
    __NR_fchmod / 2 => fs_ops::fchmod,
    __NR_fchmodat / 3 => fs_ops::fchmodat,
    __NR_fchmodat2 / 4 => fs_ops::fchmodat2,
    __NR_getxattr / 4 => fs_ops::getxattr,
    __NR_lgetxattr / 4 => fs_ops::lgetxattr,
    __NR_fgetxattr / 4 => fs_ops::fgetxattr,
    __NR_listxattr / 3 => fs_ops::listxattr,
    __NR_llistxattr / 3 => fs_ops::llistxattr,
    __NR_flistxattr / 3 => fs_ops::flistxattr,
    __NR_setxattr / 5 => fs_ops::setxattr,
    __NR_lsetxattr / 5 => fs_ops::lsetxattr,
    __NR_fsetxattr / 5 => fs_ops::fsetxattr,
    __NR_removexattr / 2 => fs_ops::removexattr,
    __NR_lremovexattr / 2 => fs_ops::lremovexattr,
    __NR_fremovexattr / 2 => fs_ops::fremovexattr,
    __NR_chown / 3 => fs_ops::chown,
    __NR_lchown / 3 => fs_ops::lchown,
    __NR_fchown / 3 => fs_ops::fchown,
    __NR_fchownat / 5 => fs_ops::fchownat,
    __NR_utimensat / 4 => fs_ops::utimensat,
    __NR_utimes / 2 => fs_ops::utimes,
    __NR_futimesat / 3 => fs_ops::futimesat,
    __NR_utime / 2 => fs_ops::utime,
    __NR_truncate / 2 => fs_ops::truncate,
    __NR_fsync / 1 => fs_ops::fsync,
    __NR_copy_file_range / 6 => fs_ops::copy_file_range,
    __NR_fdatasync / 1 => fs_ops::fdatasync,
    __NR_sync / 0 => fs_ops::sync,
    __NR_syncfs / 1 => fs_ops::syncfs,
    __NR_statfs / 2 => fs_ops::statfs,
    __NR_fstatfs / 2 => fs_ops::fstatfs,
    __NR_statx / 5 => fs_ops::statx,
    __NR_mount / 5 => fs_ops::mount,
    __NR_umount2 / 2 => fs_ops::umount2,
    __NR_fcntl / 3 => locks::fcntl,
    __NR_flock / 2 => locks::flock,
    __NR_dup / 1 => fd::dup,
    __NR_dup2 / 2 => fd::dup2,
    __NR_dup3 / 3 => fd::dup3,
    __NR_ioctl / 3 => fd::ioctl,
    __NR_poll / 3 [NoHand] => poll::poll,
    __NR_select / 5 [NoHand] => poll::select,
    __NR_pselect6 / 6 [NoHand] => poll::pselect6,
    __NR_epoll_create / 1 => epoll::epoll_create,
    __NR_epoll_create1 / 1 => epoll::epoll_create1,
    __NR_epoll_ctl / 4 => epoll::epoll_ctl,
    __NR_epoll_wait / 4 [NoHand] => epoll::epoll_wait,
    __NR_epoll_pwait / 6 [NoHand] => epoll::epoll_pwait,
    __NR_eventfd / 1 => eventfd::eventfd,
    __NR_eventfd2 / 2 => eventfd::eventfd2,
    __NR_timerfd_create / 2 => timerfd::timerfd_create,
    __NR_timerfd_settime / 4 => timerfd::timerfd_settime,
    __NR_timerfd_gettime / 2 => timerfd::timerfd_gettime,
    __NR_timer_create / 3 => timer::timer_create,
    __NR_timer_settime / 4 => timer::timer_settime,
    __NR_timer_gettime / 2 => timer::timer_gettime,
    __NR_timer_getoverrun / 1 => timer::timer_getoverrun,
    __NR_timer_delete / 1 => timer::timer_delete,
    __NR_pipe / 1 => fd::pipe,
    __NR_pipe2 / 2 => fd::pipe2,
    __NR_pause / 0 [NoHand] => signal::pause,
    __NR_ppoll / 5 [NoHand] => poll::ppoll,
    __NR_umask / 1 => file::umask,
    __NR_brk / 1 => mem::brk,
    __NR_mmap / 6 => mem::mmap,
    __NR_munmap / 2 => mem::munmap,
    __NR_mprotect / 3 => mem::mprotect,
    __NR_madvise / 3 => mem::madvise,
    __NR_mremap / 5 => mem::mremap,
    __NR_msync / 3 => mem::msync,
    __NR_memfd_create / 2 => memfd::memfd_create,
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
    __NR_sched_setaffinity / 3 => info::sched_setaffinity,
    __NR_getpriority / 2 => sched::getpriority,
    __NR_setpriority / 3 => sched::setpriority,
    __NR_sched_getscheduler / 1 => sched::sched_getscheduler,
    __NR_sched_setscheduler / 3 => sched::sched_setscheduler,
    __NR_sched_getparam / 2 => sched::sched_getparam,
    __NR_sched_setparam / 2 => sched::sched_setparam,
    __NR_sched_get_priority_max / 1 => sched::sched_get_priority_max,
    __NR_sched_get_priority_min / 1 => sched::sched_get_priority_min,
    __NR_sched_rr_get_interval / 2 => sched::sched_rr_get_interval,
    __NR_getpid / 0 => cred::getpid,
    __NR_getppid / 0 => cred::getppid,
    __NR_gettid / 0 => cred::gettid,
    __NR_getuid / 0 => cred::getuid,
    __NR_geteuid / 0 => cred::geteuid,
    __NR_getgid / 0 => cred::getgid,
    __NR_getegid / 0 => cred::getegid,
    __NR_setuid / 1 => cred::setuid,
    __NR_setgid / 1 => cred::setgid,
    __NR_setreuid / 2 => cred::setreuid,
    __NR_setregid / 2 => cred::setregid,
    __NR_setresuid / 3 => cred::setresuid,
    __NR_setresgid / 3 => cred::setresgid,
    __NR_getresuid / 3 => cred::getresuid,
    __NR_getresgid / 3 => cred::getresgid,
    __NR_setfsuid / 1 => cred::setfsuid,
    __NR_setfsgid / 1 => cred::setfsgid,
    __NR_getgroups / 2 => cred::getgroups,
    __NR_setgroups / 2 => cred::setgroups,
    __NR_times / 1 => cred::times,
    __NR_getrusage / 2 => cred::getrusage,
    __NR_getpgid / 1 => cred::getpgid,
    __NR_getpgrp / 0 => cred::getpgrp,
    __NR_setpgid / 2 => cred::setpgid,
    __NR_getsid / 1 => cred::getsid,
    __NR_setsid / 0 => cred::setsid,
    __NR_fork / 0 => process::fork,
    __NR_vfork / 0 => process::vfork,
    __NR_clone / 5 => process::clone,
    __NR_clone3 / 2 => process::clone3,
    __NR_execve / 3 => process::execve,
    __NR_execveat / 5 => process::execveat,
    __NR_wait4 / 4 [Rescan] => process::wait4,
    __NR_waitid / 5 [Rescan] => process::waitid,
    __NR_exit / 1 => process::exit,
    __NR_exit_group / 1 => process::exit_group,
    __NR_reboot / 4 => reboot::reboot,
    __NR_kill / 2 => signal::kill,
    __NR_tkill / 2 => signal::tkill,
    __NR_tgkill / 3 => signal::tgkill,
    __NR_rt_sigaction / 4 => signal::rt_sigaction,
    __NR_rt_sigprocmask / 4 => signal::rt_sigprocmask,
    __NR_sigaltstack / 2 => signal::sigaltstack,
    __NR_rt_sigreturn / 0 => signal::rt_sigreturn,
    __NR_uretprobe / 0 => misc::uretprobe,
    __NR_uprobe / 0 => misc::uprobe,
    __NR_rt_sigpending / 2 => signal::rt_sigpending,
    __NR_rt_sigsuspend / 2 [NoHand] => signal::rt_sigsuspend,
    __NR_rt_sigtimedwait / 4 [NoHand] => signal::rt_sigtimedwait,
    __NR_alarm / 1 => signal::alarm,
    __NR_setitimer / 3 => signal::setitimer,
    __NR_getitimer / 2 => signal::getitimer,
    __NR_clock_gettime / 2 => time::clock_gettime,
    __NR_clock_getres / 2 => time::clock_getres,
    __NR_gettimeofday / 2 => time::gettimeofday,
    __NR_time / 1 => time::time,
    __NR_nanosleep / 2 [NoHand] => time::nanosleep,
    __NR_clock_nanosleep / 4 [NoHand] => time::clock_nanosleep,
    __NR_futex / 6 => futex::futex,
    __NR_sysinfo / 1 => misc::sysinfo,
    __NR_syslog / 3 => syslog::syslog,
    __NR_prctl / 5 => misc::prctl,
    __NR_fadvise64 / 4 => misc::fadvise64,
    __NR_mincore / 3 => mem::mincore,
    __NR_getcpu / 3 => misc::getcpu,
    __NR_socket / 3 => socket::socket,
    __NR_socketpair / 4 => socket::socketpair,
    __NR_bind / 3 => socket::bind,
    __NR_listen / 2 => socket::listen,
    __NR_accept / 3 => socket::accept,
    __NR_accept4 / 4 => socket::accept4,
    __NR_connect / 3 => socket::connect,
    __NR_getsockname / 3 => socket::getsockname,
    __NR_getpeername / 3 => socket::getpeername,
    __NR_sendto / 6 => socket::sendto,
    __NR_recvfrom / 6 => socket::recvfrom,
    __NR_sendmsg / 3 => socket::sendmsg,
    __NR_recvmsg / 3 => socket::recvmsg,
    __NR_sendmmsg / 4 => socket::sendmmsg,
    __NR_recvmmsg / 5 => socket::recvmmsg,
    __NR_shutdown / 2 => socket::shutdown,
    __NR_getsockopt / 5 => socket::getsockopt,
    __NR_setsockopt / 5 => socket::setsockopt,
    __NR_shmget / 3 => ipc_sysv::shmget,
    __NR_shmat / 3 => ipc_sysv::shmat,
    __NR_shmdt / 1 => ipc_sysv::shmdt,
    __NR_shmctl / 3 => ipc_sysv::shmctl,
    __NR_semget / 3 => ipc_sysv::semget,
    __NR_semop / 3 => ipc_sysv::semop,
    __NR_semtimedop / 4 => ipc_sysv::semtimedop,
    __NR_semctl / 4 => ipc_sysv::semctl,
    __NR_msgget / 2 => ipc_sysv::msgget,
    __NR_msgsnd / 4 => ipc_sysv::msgsnd,
    __NR_msgrcv / 5 => ipc_sysv::msgrcv,
    __NR_msgctl / 3 => ipc_sysv::msgctl,
    __NR_unshare / 1 => share::unshare,
    __NR_signalfd / 3 => signalfd::signalfd,
    __NR_signalfd4 / 4 => signalfd::signalfd4,
    __NR_sendfile / 4 => splice::sendfile,
    __NR_splice / 6 => splice::splice,
    __NR_vmsplice / 4 => splice::vmsplice,
    __NR_inotify_init / 0 => inotify::inotify_init,
    __NR_inotify_init1 / 1 => inotify::inotify_init1,
    __NR_inotify_add_watch / 3 => inotify::inotify_add_watch,
    __NR_inotify_rm_watch / 2 => inotify::inotify_rm_watch,
    __NR_capget / 2 => caps::capget,
    __NR_capset / 2 => caps::capset,
    __NR_pidfd_open / 2 => pidfd::pidfd_open,
    __NR_pidfd_send_signal / 4 => pidfd::pidfd_send_signal,
    __NR_pidfd_getfd / 3 => pidfd::pidfd_getfd,
    __NR_close_range / 3 => share::close_range,
    __NR_mq_open / 4 => mqueue::mq_open,
    __NR_mq_unlink / 1 => mqueue::mq_unlink,
    __NR_mq_timedsend / 5 => mqueue::mq_timedsend,
    __NR_mq_timedreceive / 5 => mqueue::mq_timedreceive,
    __NR_mq_notify / 2 => mqueue::mq_notify,
    __NR_mq_getsetattr / 3 => mqueue::mq_getsetattr,
    __NR_ptrace / 4 => ptrace::ptrace,
    __NR_process_vm_readv / 6 => ptrace::process_vm_readv,
    __NR_process_vm_writev / 6 => ptrace::process_vm_writev,
    __NR_personality / 1 => ptrace::personality,
}

/// Run system call `n` for `t`.
pub fn dispatch<H: Hal>(hal: &mut H, k: &mut Kernel<H::Space>, t: &mut Task<H::Space>, n: u64, a: [u64; 6]) -> Flow {
    t.cpu.syscalls += 1;
    let mut cx = SysCtx { hal, k, t };
    // inotify events come from the calls that succeed (nothing to do without watches).
    let pending = if cx.k.inotify.active() { inotify::before(&mut cx, n, &a) } else { None };
    let flow = match call(&mut cx, n, a) {
        // A handler that must wait but returns a plain result (a FIFO open)
        // records its wait set and says EAGAIN: block on the set instead.
        Some(Flow::Ret(Err(Errno::EAGAIN))) if cx.k.block_request.is_some() => {
            let ws = cx.k.block_request.take().unwrap_or_default();
            poll::block_on(&mut cx, ws, None)
        }
        Some(f) => {
            cx.k.block_request = None;
            f
        }
        None => {
            *cx.k.unknown.entry(n).or_insert(0) += 1;
            Flow::Ret(Err(Errno::ENOSYS))
        }
    };
    if let Some(p) = pending {
        inotify::after(&mut cx, p, &flow);
    }
    flow
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
