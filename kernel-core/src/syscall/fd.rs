//! Descriptor calls: close, dup family, fcntl, ioctl, poll.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::file::console_fill;
use super::{Flow, SysCtx};
use crate::fs::inode::PIPE_CAPACITY;
use crate::fs::{Device, InodeRef, Kind, OpenFile, PipeBuf};
use crate::kernel::block;
use crate::task::WaitOn;
use crate::time::parse_timespec;
use crate::{Errno, SysResult};

use linux_raw_sys::ioctl::{
    FIOCLEX, FIONBIO, FIONCLEX, FIONREAD, TCGETS, TCSETS, TCSETSF, TCSETSW, TIOCGPGRP, TIOCGWINSZ,
    TIOCSPGRP, TIOCSWINSZ,
};

/// `close(fd)`.
pub fn close<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    cx.t.fds.close(a[0])?;
    Ok(0)
}

/// `dup(fd)`.
pub fn dup<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, f, false, limit)
}

fn do_dup3<H: Hal>(cx: &mut SysCtx<'_, H>, old: u64, new: u64, cloexec: bool) -> SysResult {
    let f = cx.t.fds.file(old)?;
    let limit = cx.t.fd_limit();
    let newfd = usize::try_from(new as i32).map_err(|_| Errno::EBADF)?;
    if newfd >= limit {
        return Err(Errno::EBADF);
    }
    cx.t.fds.set(newfd, f, cloexec);
    Ok(newfd)
}

/// `dup2(old, new)`.
pub fn dup2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] == a[1] {
        cx.t.fds.get(a[0])?;
        return Ok(a[0] as usize);
    }
    do_dup3(cx, a[0], a[1], false)
}

/// `dup3(old, new, flags)`.
pub fn dup3<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[2] as u32;
    if flags & !g::O_CLOEXEC != 0 || a[0] == a[1] {
        return Err(Errno::EINVAL);
    }
    do_dup3(cx, a[0], a[1], flags & g::O_CLOEXEC != 0)
}

/// `fcntl(fd, cmd, arg)`.
pub fn fcntl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let fd = a[0];
    let arg = a[2];
    match a[1] as u32 {
        c @ (g::F_DUPFD | g::F_DUPFD_CLOEXEC) => {
            let f = cx.t.fds.file(fd)?;
            let limit = cx.t.fd_limit();
            let min = usize::try_from(arg as i32).map_err(|_| Errno::EINVAL)?;
            if min >= limit {
                return Err(Errno::EINVAL);
            }
            cx.t.fds.alloc_from(min, f, c == g::F_DUPFD_CLOEXEC, limit)
        }
        g::F_GETFD => Ok(if cx.t.fds.get(fd)?.cloexec { g::FD_CLOEXEC as usize } else { 0 }),
        g::F_SETFD => {
            cx.t.fds.get_mut(fd)?.cloexec = arg & g::FD_CLOEXEC as u64 != 0;
            Ok(0)
        }
        g::F_GETFL => Ok(cx.t.fds.file(fd)?.flags.get() as usize),
        g::F_SETFL => {
            let f = cx.t.fds.file(fd)?;
            let changeable = g::O_APPEND | g::O_NONBLOCK | g::FASYNC | g::O_DIRECT | g::O_NOATIME;
            let new = (f.flags.get() & !changeable) | (arg as u32 & changeable);
            f.flags.set(new);
            Ok(0)
        }
        // No locks between processes yet: advisory locks always succeed.
        g::F_GETLK => {
            cx.t.fds.get(fd)?;
            // l_type = F_UNLCK
            cx.write_user(arg, &(g::F_UNLCK as u16).to_le_bytes())?;
            Ok(0)
        }
        g::F_SETLK | g::F_SETLKW | g::F_OFD_SETLK | g::F_OFD_SETLKW => {
            cx.t.fds.get(fd)?;
            Ok(0)
        }
        _ => {
            cx.t.fds.get(fd)?;
            Err(Errno::EINVAL)
        }
    }
}

/// `ioctl(fd, req, arg)`: terminal requests on the console, `ENOTTY` elsewhere.
pub fn ioctl<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    // The request is an `unsigned int`: the upper half of the register is noise.
    let req = a[1] as u32;
    let arg = a[2];
    match req {
        FIOCLEX | FIONCLEX => {
            cx.t.fds.get_mut(a[0])?.cloexec = req == FIOCLEX;
            return Ok(0);
        }
        FIONBIO => {
            let on = cx.read_u32(arg)? != 0;
            let fl = f.flags.get();
            f.flags.set(if on { fl | g::O_NONBLOCK } else { fl & !g::O_NONBLOCK });
            return Ok(0);
        }
        _ => {}
    }
    if !matches!(f.inode.kind, Kind::Device(Device::Console | Device::ConsoleErr)) {
        return Err(Errno::ENOTTY);
    }
    match req {
        TCGETS => {
            let t = cx.k.termios;
            cx.write_user(arg, &t)?;
            Ok(0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let t = cx.read_array::<36>(arg)?;
            cx.k.termios = t;
            Ok(0)
        }
        TIOCGWINSZ => {
            let mut w = [0u8; 8];
            w[0..2].copy_from_slice(&24u16.to_le_bytes());
            w[2..4].copy_from_slice(&80u16.to_le_bytes());
            cx.write_user(arg, &w)?;
            Ok(0)
        }
        TIOCSWINSZ => {
            cx.read_array::<8>(arg)?;
            Ok(0)
        }
        TIOCGPGRP => {
            let pg = cx.t.pgid;
            cx.write_user(arg, &pg.to_le_bytes())?;
            Ok(0)
        }
        TIOCSPGRP => {
            cx.read_u32(arg)?;
            Ok(0)
        }
        FIONREAD => {
            console_fill(cx);
            let n = cx.k.console_in.len() as u32;
            cx.write_user(arg, &n.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// Evaluate a pollfd array; returns (ready count, console input polled and
/// not ready). Pipes that are not ready are noted in `pipes`.
fn poll_scan<H: Hal>(cx: &mut SysCtx<'_, H>, fds: u64, nfds: u64, pipes: &mut Vec<(InodeRef, u64)>) -> Result<(usize, bool), Errno> {
    let limit = cx.t.fd_limit() as u64;
    if nfds > limit.max(1024) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    cx.read_user(fds, &mut raw)?;
    let mut ready = 0usize;
    let mut waits_console = false;
    for e in raw.chunks_exact_mut(8) {
        let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let events = u16::from_le_bytes([e[4], e[5]]) as u32;
        let mut rev: u32 = 0;
        if fd >= 0 {
            match cx.t.fds.file(fd as u64) {
                Err(_) => rev = g::POLLNVAL,
                Ok(f) => match f.inode.kind {
                    Kind::Device(Device::Console | Device::ConsoleErr) => {
                        rev |= events & (g::POLLOUT | g::POLLWRNORM);
                        if events & (g::POLLIN | g::POLLRDNORM) != 0 {
                            console_fill(cx);
                            if !cx.k.console_in.is_empty() || cx.k.console_eof {
                                rev |= events & (g::POLLIN | g::POLLRDNORM);
                            } else {
                                waits_console = true;
                            }
                        }
                    }
                    Kind::Pipe(ref p) => {
                        let len = p.data.borrow().len();
                        if f.readable() {
                            if len > 0 {
                                rev |= events & (g::POLLIN | g::POLLRDNORM);
                            }
                            if p.writers.get() == 0 {
                                rev |= g::POLLHUP;
                            }
                        }
                        if f.writable() {
                            if p.readers.get() == 0 {
                                rev |= g::POLLERR;
                            } else if len < PIPE_CAPACITY {
                                rev |= events & (g::POLLOUT | g::POLLWRNORM);
                            }
                        }
                        if rev == 0 {
                            pipes.push((f.inode.clone(), p.gen.get()));
                        }
                    }
                    _ => rev |= events & (g::POLLIN | g::POLLOUT | g::POLLRDNORM | g::POLLWRNORM),
                },
            }
        }
        e[6..8].copy_from_slice(&(rev as u16).to_le_bytes());
        if rev != 0 {
            ready += 1;
        }
    }
    cx.write_user(fds, &raw)?;
    Ok((ready, waits_console))
}

fn do_poll<H: Hal>(cx: &mut SysCtx<'_, H>, fds: u64, nfds: u64, timeout_ns: Option<u64>) -> Flow {
    let mut pipes = Vec::new();
    let (ready, console) = match poll_scan(cx, fds, nfds, &mut pipes) {
        Ok(r) => r,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if ready > 0 || timeout_ns == Some(0) {
        return Flow::Ret(Ok(ready));
    }
    let now = cx.hal.now_ns();
    let deadline = cx.t.restart_deadline.or(timeout_ns.map(|t| now.saturating_add(t)));
    if deadline.is_some_and(|d| d <= now) {
        return Flow::Ret(Ok(0));
    }
    // Console readiness is polled on interrupts and ticks; pipes wake on change.
    let on = if console {
        WaitOn::Console
    } else if !pipes.is_empty() {
        WaitOn::Pipe
    } else {
        WaitOn::Nothing
    };
    if !pipes.is_empty() {
        cx.k.pipe_waits.insert(cx.t.pid, pipes);
    }
    block(on, deadline, Ok(0), true)
}

/// `pipe(fds)`.
pub fn pipe<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    pipe2(cx, [a[0], 0, 0, 0, 0, 0])
}

/// `pipe2(fds, flags)`.
pub fn pipe2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    if flags & !(g::O_CLOEXEC | g::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let now = cx.hal.realtime_ns();
    let inode = cx.k.fs.new_inode(Kind::Pipe(PipeBuf::default()), 0o600, now);
    let nb = flags & g::O_NONBLOCK;
    let r = OpenFile::new(inode.clone(), g::O_RDONLY | nb, String::from("pipe:"));
    let w = OpenFile::new(inode, g::O_WRONLY | nb, String::from("pipe:"));
    let limit = cx.t.fd_limit();
    let cloexec = flags & g::O_CLOEXEC != 0;
    let rfd = cx.t.fds.alloc_from(0, r, cloexec, limit)?;
    let wfd = match cx.t.fds.alloc_from(0, w, cloexec, limit) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = cx.t.fds.close(rfd as u64);
            return Err(e);
        }
    };
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&(rfd as i32).to_le_bytes());
    b[4..8].copy_from_slice(&(wfd as i32).to_le_bytes());
    if let Err(e) = cx.write_user(a[0], &b) {
        let _ = cx.t.fds.close(rfd as u64);
        let _ = cx.t.fds.close(wfd as u64);
        return Err(e);
    }
    Ok(0)
}

/// `pause()`: sleeps until a signal kills the process (handlers are not
/// delivered yet, so nothing else ends it).
pub fn pause<H: Hal>(_cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> Flow {
    block(WaitOn::Nothing, None, Err(Errno::EINTR), false)
}

/// `poll(fds, nfds, timeout_ms)`.
pub fn poll<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let ms = a[2] as i32;
    let t = if ms < 0 { None } else { Some(ms as u64 * 1_000_000) };
    do_poll(cx, a[0], a[1], t)
}

/// `ppoll(fds, nfds, timeout_ts, sigmask)`; the temporary signal mask is
/// ignored (signal delivery is not implemented yet).
pub fn ppoll<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let t = if a[2] == 0 {
        None
    } else {
        match cx.read_array::<16>(a[2]).and_then(|b| parse_timespec(&b)) {
            Ok(t) => Some(t),
            Err(e) => return Flow::Ret(Err(e)),
        }
    };
    do_poll(cx, a[0], a[1], t)
}
