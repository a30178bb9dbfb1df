//! Safe wrappers of the host calls the backends make, so that their
//! `unsafe` is here, each block with the reason it is sound. Errors are
//! `io::Error`s from `errno`.
//!
//! What is not here is unsafe for reasons only its backend can argue: the
//! map operations on guest windows, `clone` of a process sharing the
//! kernel's memory (tt), the stub zygote's calls between `fork` and `exec`
//! and the seccomp mailbox's shared words (skas).

use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The calling process's pid.
#[inline]
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Send `sig` to process `pid`.
#[inline]
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers; the host checks them.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Kill child `pid` with `SIGKILL` and reap it (any child, traced or not;
/// retries on `EINTR`).
pub fn kill_and_reap(pid: i32) {
    let _ = kill(pid, libc::SIGKILL);
    reap(pid);
}

/// Whether child `pid` has ended, without waiting (and reaping it if so):
/// `None` while it runs; `Some(Some(signal))` if a signal killed it,
/// `Some(None)` if it exited or is not (any more) our child.
pub fn reap_if_ended(pid: i32) -> Option<Option<u32>> {
    let mut st = 0;
    // SAFETY: `st` is a valid out-parameter.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
    if r == pid || r < 0 {
        Some(if r == pid && libc::WIFSIGNALED(st) { Some(libc::WTERMSIG(st) as u32) } else { None })
    } else {
        None
    }
}

/// A close-on-exec memfd of `len` bytes, mapped shared and read-write in
/// this process. Unmapped and closed when dropped; what else maps it (a
/// stub) keeps its own mapping.
#[derive(Debug)]
pub struct SharedMemfd {
    fd: i32,
    map: *mut u8,
    len: usize,
}

impl SharedMemfd {
    /// Create it; `noreserve` for sparse memory (no swap reserved).
    pub fn new(name: &CStr, len: usize, noreserve: bool) -> io::Result<SharedMemfd> {
        // SAFETY: `name` is a valid C string; the result is checked.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::MAP_SHARED | if noreserve { libc::MAP_NORESERVE } else { 0 };
        // SAFETY: sizing our own memfd, then a fresh shared mapping of all of it at an address the host chooses (no memory of ours is replaced).
        let map = unsafe {
            if libc::ftruncate(fd, len as i64) == 0 {
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)
            } else {
                libc::MAP_FAILED
            }
        };
        if map == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: closing the descriptor we just made.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        Ok(SharedMemfd { fd, map: map.cast(), len })
    }

    /// The memfd.
    #[inline]
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// The start of this process's mapping: `len()` bytes, valid while
    /// `self` lives.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map
    }

    /// Its size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SharedMemfd {
    fn drop(&mut self) {
        // SAFETY: unmapping and closing what `new` made; nothing borrows the mapping past `self` (`as_ptr` hands out a raw pointer only).
        unsafe {
            libc::munmap(self.map.cast(), self.len);
            libc::close(self.fd);
        }
    }
}

/// A close-on-exec memfd holding `bytes`, sealed with `seals` (`F_SEAL_*`)
/// so that nothing can change it any more. The caller owns the descriptor.
pub fn sealed_memfd(name: &CStr, bytes: &[u8], seals: i32) -> io::Result<i32> {
    // SAFETY: `name` is a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fail = |fd: i32| {
        let e = io::Error::last_os_error();
        // SAFETY: closing the descriptor we just made.
        unsafe { libc::close(fd) };
        Err(e)
    };
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: writing from a valid buffer to our memfd.
        let n = unsafe { libc::pwrite(fd, bytes[off..].as_ptr().cast(), bytes.len() - off, off as i64) };
        if n <= 0 {
            return fail(fd);
        }
        off += n as usize;
    }
    // SAFETY: sealing our own memfd.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return fail(fd);
    }
    Ok(fd)
}

/// A private anonymous read-write mapping of `len` bytes at an address the
/// host chooses; unmapped when dropped.
#[derive(Debug)]
pub struct AnonMap {
    base: *mut u8,
    len: usize,
}

impl AnonMap {
    /// Map it.
    pub fn new(len: usize) -> io::Result<AnonMap> {
        // SAFETY: a fresh private anonymous mapping at an address the host chooses: no memory of ours is replaced.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonMap { base: base.cast(), len })
    }

    /// The start of the mapping: `len` bytes, valid while `self` lives.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` made; its users are gone (the owner keeps it until then).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// `futex(word, op, val, timeout)`: the host's answer (or -1 and `errno`).
/// Only operations on the one word (`FUTEX_WAIT`, `FUTEX_WAKE`) fit these
/// arguments.
#[inline]
pub fn futex(word: &AtomicU32, op: i32, val: u32, timeout: Option<Duration>) -> isize {
    let ts = timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as i64, tv_nsec: t.subsec_nanos() as i64 });
    let tp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 (borrowed for the call); `tp` is null or a valid timespec.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, tp, 0usize, 0u32) as isize }
}

/// How many threads sleep in `FUTEX_WAIT` on `word`, asked of the host
/// without waking any: `FUTEX_CMP_REQUEUE` of every waiter onto the same
/// word returns their number.
pub fn futex_waiters(word: &AtomicU32) -> isize {
    let v = word.load(Ordering::SeqCst);
    loop {
        // SAFETY: `word` is a valid, aligned u32 (borrowed for the call); requeueing onto itself changes no waiter.
        let r = unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_CMP_REQUEUE, 0, i32::MAX as usize, word.as_ptr(), v)
        } as isize;
        // EAGAIN: the word changed under us; count again.
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            return r;
        }
    }
}

/// Yield the CPU.
#[inline]
pub fn sched_yield() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// Whether the host's seccomp offers return action `action`
/// (`SECCOMP_GET_ACTION_AVAIL`: probed without installing anything).
pub fn seccomp_action_available(action: u32) -> bool {
    // SAFETY: SECCOMP_GET_ACTION_AVAIL (2) reads one u32 from a valid pointer.
    (unsafe { libc::syscall(libc::SYS_seccomp, 2, 0, &action as *const u32) }) == 0
}

/// The auxiliary vector's entry `key` (`AT_HWCAP2`...), 0 if absent.
pub fn getauxval(key: libc::c_ulong) -> u64 {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(key) }
}

/// Wait for child `pid` to end and reap it (`__WALL`; retries on `EINTR`).
pub fn reap(pid: i32) {
    let mut st = 0;
    // SAFETY: `st` is a valid out-parameter.
    while unsafe { libc::waitpid(pid, &mut st, libc::__WALL) } < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {}
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A connected pair of close-on-exec `AF_UNIX` `SOCK_SEQPACKET` sockets;
/// the caller owns both descriptors.
pub fn seqpacket_pair() -> io::Result<[i32; 2]> {
    let mut sv = [-1; 2];
    // SAFETY: `sv` has room for two fds.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sv)
}
