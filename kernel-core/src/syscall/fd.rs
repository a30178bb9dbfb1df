//! Descriptor calls: close, dup family, fcntl, ioctl (terminals), pipes.

use alloc::string::String;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::{special_of, with_io};
use super::{SysCtx};
use crate::fs::pipe::Pipe;
use crate::fs::{Kind, OpenFile};
use crate::tty::ldisc::{Termios, TERMIOS_SIZE};
use crate::tty::{PtyMaster, Tty, TtyFile};
use crate::{Errno, SysResult};

use linux_raw_sys::ioctl::{
    FIOCLEX, FIONBIO, FIONCLEX, FIONREAD, TCFLSH, TCGETS, TCSETS, TCSETSF, TCSETSW, TCXONC, TIOCGPGRP, TIOCGPTN,
    TIOCGSID, TIOCGWINSZ, TIOCNOTTY, TIOCSCTTY, TIOCSPGRP, TIOCSPTLCK, TIOCSWINSZ, TIOCOUTQ, TIOCGPTLCK,
};

/// `F_SETPIPE_SZ` / `F_GETPIPE_SZ` (not in linux-raw-sys's general module).
const F_SETPIPE_SZ: u32 = 1031;
const F_GETPIPE_SZ: u32 = 1032;

/// `close(fd)`.
pub fn close<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    cx.t.fds.close(a[0])?;
    // POSIX record locks go with any close of the file by the process.
    super::locks::closed(cx, &f);
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
        g::F_ADD_SEALS => super::memfd::add_seals(cx, fd, arg),
        g::F_GET_SEALS => super::memfd::get_seals(cx, fd),
        c @ (F_GETPIPE_SZ | F_SETPIPE_SZ) => {
            let f = cx.t.fds.file(fd)?;
            let Kind::Special(sp) = &f.inode.kind else { return Err(Errno::EBADF) };
            let p = sp.as_any().downcast_ref::<Pipe>().ok_or(Errno::EBADF)?;
            if c == F_GETPIPE_SZ {
                Ok(p.capacity())
            } else {
                p.set_capacity(arg as u32 as u64)
            }
        }
        _ => {
            cx.t.fds.get(fd)?;
            Err(Errno::EINVAL)
        }
    }
}

/// `ioctl(fd, req, arg)`: fd flags, and terminal requests on ttys and pty masters.
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
    if let Some(disk) = f.inode.block_disk().cloned() {
        return super::blockdev::ioctl(cx, &f, &disk, req, arg);
    }
    let Some(sp) = special_of(cx, &f) else { return Err(Errno::ENOTTY) };
    if crate::net::socket_of(sp.as_ref()).is_some() {
        return super::socket::ioctl(cx, &sp, req, arg);
    }
    if let Some(p) = sp.as_any().downcast_ref::<Pipe>() {
        return match req {
            FIONREAD => {
                cx.write_user(arg, &(p.len() as u32).to_le_bytes())?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        };
    }
    if let Some(m) = sp.as_any().downcast_ref::<PtyMaster>() {
        match req {
            TIOCGPTN => {
                let n = m.tty.pty_index().unwrap_or(0);
                cx.write_user(arg, &n.to_le_bytes())?;
                return Ok(0);
            }
            TIOCSPTLCK => {
                let v = cx.read_u32(arg)?;
                m.set_locked(v != 0);
                return Ok(0);
            }
            TIOCGPTLCK => {
                cx.write_user(arg, &(m.locked() as u32).to_le_bytes())?;
                return Ok(0);
            }
            _ => {}
        }
        let tty = m.tty.clone();
        return tty_ioctl(cx, &tty, req, arg, true);
    }
    if let Some(t) = sp.as_any().downcast_ref::<TtyFile>() {
        let tty = t.tty.clone();
        return tty_ioctl(cx, &tty, req, arg, false);
    }
    Err(Errno::ENOTTY)
}

/// A background process changing terminal settings gets `SIGTTOU`
/// (unless it blocks or ignores it), as Linux's `tty_check_change`.
fn check_change<H: Hal>(cx: &mut SysCtx<'_, H>, tty: &Tty) -> Result<(), Errno> {
    let (Some(sid), Some(fg)) = (tty.session.get(), tty.fg_pgrp.get()) else { return Ok(()) };
    if sid != cx.t.sid || fg == cx.t.pgid {
        return Ok(());
    }
    with_io(cx, |io| {
        if io.ignores(g::SIGTTOU) {
            Ok(())
        } else {
            io.signal_group(io.pgid, g::SIGTTOU);
            Err(Errno::EINTR)
        }
    })
}

fn tty_ioctl<H: Hal>(cx: &mut SysCtx<'_, H>, tty: &Tty, req: u32, arg: u64, master: bool) -> SysResult {
    if tty.passthrough() && req != FIONREAD {
        return Err(Errno::ENOTTY);
    }
    match req {
        TCGETS => {
            cx.write_user(arg, &tty.termios().to_bytes())?;
            Ok(0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let b = cx.read_array::<TERMIOS_SIZE>(arg)?;
            if !master {
                check_change(cx, tty)?;
            }
            // Output is never queued (it goes out at write time), so
            // TCSETSW has nothing to drain.
            tty.set_termios(Termios::from_bytes(&b), req == TCSETSF);
            Ok(0)
        }
        TCFLSH => match arg {
            0 => {
                tty.flush(true, false);
                Ok(0)
            }
            1 => {
                tty.flush(false, true);
                Ok(0)
            }
            2 => {
                tty.flush(true, true);
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        },
        // Flow control: output is never held back, so there is nothing to
        // suspend or resume.
        TCXONC => match arg {
            0..=3 => Ok(0),
            _ => Err(Errno::EINVAL),
        },
        TIOCGWINSZ => {
            let w = tty.winsize();
            let b: alloc::vec::Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            cx.write_user(arg, &b)?;
            Ok(0)
        }
        TIOCSWINSZ => {
            let b = cx.read_array::<8>(arg)?;
            let w = [0, 2, 4, 6].map(|i| u16::from_le_bytes([b[i], b[i + 1]]));
            with_io(cx, |io| tty.set_winsize(io, w));
            Ok(0)
        }
        TIOCGPGRP => {
            if !master && tty.session.get() != Some(cx.t.sid) {
                return Err(Errno::ENOTTY);
            }
            let pg = tty.fg_pgrp.get().unwrap_or(0);
            cx.write_user(arg, &pg.to_le_bytes())?;
            Ok(0)
        }
        TIOCGSID => {
            let sid = tty.session.get().ok_or(Errno::ENOTTY)?;
            cx.write_user(arg, &sid.to_le_bytes())?;
            Ok(0)
        }
        TIOCSPGRP => {
            if tty.session.get() != Some(cx.t.sid) {
                return Err(Errno::ENOTTY);
            }
            let pg = cx.read_u32(arg)? as i32;
            if pg < 0 {
                return Err(Errno::EINVAL);
            }
            let pg = pg as u32;
            check_change(cx, tty)?;
            let sid = cx.t.sid;
            let exists = cx.t.pgid == pg || cx.k.procs.iter().any(|t| t.pgid == pg && !t.is_zombie());
            if !exists {
                return Err(Errno::ESRCH);
            }
            let same_session = (cx.t.pgid == pg && cx.t.sid == sid) || cx.k.procs.iter().any(|t| t.pgid == pg && t.sid == sid);
            if !same_session {
                return Err(Errno::EPERM);
            }
            tty.fg_pgrp.set(Some(pg));
            Ok(0)
        }
        TIOCSCTTY => {
            if tty.session.get() == Some(cx.t.sid) {
                return Ok(0);
            }
            let force = arg == 1;
            with_io(cx, |io| {
                if io.pid != io.sid {
                    return Err(Errno::EPERM);
                }
                if tty.session.get().is_some() && !force {
                    return Err(Errno::EPERM);
                }
                tty.session.set(Some(io.sid));
                tty.fg_pgrp.set(Some(io.pgid));
                Ok(0)
            })
        }
        TIOCNOTTY => {
            if tty.session.get() != Some(cx.t.sid) {
                return Err(Errno::ENOTTY);
            }
            if cx.t.tgid == cx.t.sid {
                // The session leader gives it up: its foreground group is hung up.
                if let Some(fg) = tty.fg_pgrp.get() {
                    cx.k.signal_group(Some(&mut *cx.t), fg, g::SIGHUP);
                    cx.k.signal_group(Some(&mut *cx.t), fg, g::SIGCONT);
                }
                tty.session.set(None);
                tty.fg_pgrp.set(None);
            }
            Ok(0)
        }
        FIONREAD => {
            let n = tty.input_available() as u32;
            cx.write_user(arg, &n.to_le_bytes())?;
            Ok(0)
        }
        TIOCOUTQ => {
            cx.write_user(arg, &0u32.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// `pipe(fds)`.
pub fn pipe<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    pipe2(cx, [a[0], 0, 0, 0, 0, 0])
}

/// `pipe2(fds, flags)`.
pub fn pipe2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    if flags & !(g::O_CLOEXEC | g::O_NONBLOCK | g::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let now = cx.hal.realtime_ns();
    let pipe = Pipe::charged(false, cx.k.frames.budget())?;
    let inode = cx.k.fs.anon_inode(Kind::Special(pipe), 0o600, now)?;
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
