//! Moving data between descriptors in the kernel: `sendfile`, `splice`,
//! `vmsplice`. Data goes through a bounded kernel buffer (one chunk per
//! call, as a short count); sources are files (page cache) or special files
//! (pipes, sockets, ttys), destinations likewise. A pipe end that is not
//! ready blocks the call (or `EAGAIN` with `O_NONBLOCK`/`SPLICE_F_NONBLOCK`).

use alloc::vec;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::poll::{block_on, file_poll, special_of, with_io};
use super::{Flow, SysCtx};
use crate::fs::{FileRef, Kind};
use crate::wait::WaitSet;
use crate::{Errno, SysResult};

/// Largest transfer per call.
const CHUNK: u64 = 1 << 16;
/// `SPLICE_F_*`.
const SPLICE_F_MOVE: u32 = 1;
const SPLICE_F_NONBLOCK: u32 = 2;
const SPLICE_F_MORE: u32 = 4;
const SPLICE_F_GIFT: u32 = 8;

fn ret(r: SysResult) -> Flow {
    Flow::Ret(r)
}

fn is_pipe(f: &FileRef) -> bool {
    matches!(&f.inode.kind, Kind::Special(s) if s.type_bits() == g::S_IFIFO)
}

/// Read up to `n` bytes of `f` at `off` (None: a special file, no offset).
/// `Ok(None)`: would block.
fn pull<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, off: u64, n: u64) -> Result<Option<Vec<u8>>, Errno> {
    match &f.inode.kind {
        Kind::File(d) => {
            let cache = d.cache().clone();
            let avail = cache.size().saturating_sub(off).min(n);
            let mut b = vec![0u8; avail as usize];
            let got = cache.read_to(off, &mut b, &mut cx.k.frames, cx.hal.phys())?;
            b.truncate(got);
            Ok(Some(b))
        }
        Kind::Dir(_) => Err(Errno::EISDIR),
        _ => {
            let s = special_of(cx, f).ok_or(Errno::EINVAL)?;
            let mut b = vec![0u8; n as usize];
            match with_io(cx, |io| s.read(io, &mut b)) {
                Ok(k) => {
                    b.truncate(k);
                    Ok(Some(b))
                }
                Err(Errno::EAGAIN) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

/// Write `data` to `f` at `off` (files) or as a stream. `Ok(None)`: would block.
fn push<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, off: u64, data: &[u8]) -> Result<Option<usize>, Errno> {
    match &f.inode.kind {
        Kind::File(d) => {
            let cache = d.cache().clone();
            if cache.seals() & (g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE) != 0 {
                return Err(Errno::EPERM);
            }
            let n = cache.write_bytes(off, data, &mut cx.k.frames, cx.hal.phys())?;
            let now = cx.hal.realtime_ns();
            let mut m = f.inode.meta.borrow_mut();
            m.mtime_ns = now;
            m.ctime_ns = now;
            Ok(Some(n))
        }
        Kind::Dir(_) => Err(Errno::EISDIR),
        _ => {
            let s = special_of(cx, f).ok_or(Errno::EINVAL)?;
            match with_io(cx, |io| s.write(io, data)) {
                Ok(k) => Ok(Some(k)),
                Err(Errno::EAGAIN) => Ok(None),
                Err(Errno::EPIPE) => {
                    if crate::kernel::decide_signal(cx.t, g::SIGPIPE) {
                        cx.t.kill_pending = Some(g::SIGPIPE);
                    }
                    Err(Errno::EPIPE)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Block until `f` changes (or `EAGAIN` when non-blocking).
fn wait<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, nonblock: bool) -> Flow {
    if nonblock || f.flags.get() & g::O_NONBLOCK != 0 {
        return ret(Err(Errno::EAGAIN));
    }
    let mut ws = WaitSet::default();
    file_poll(cx, f, Some(&mut ws));
    block_on(cx, ws, None)
}

/// Read a user `loff_t` (`EINVAL` when negative).
fn read_off<H: Hal>(cx: &mut SysCtx<'_, H>, p: u64) -> Result<u64, Errno> {
    let v = cx.read_u64(p)?;
    if (v as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(v)
}

/// The common transfer: from `fin` (at `*pin` or its offset) to `fout` (at
/// `*pout` or its offset), at most `len` bytes.
fn transfer<H: Hal>(cx: &mut SysCtx<'_, H>, fin: &FileRef, pin: u64, fout: &FileRef, pout: u64, len: u64, nonblock: bool) -> Flow {
    let file_in = matches!(fin.inode.kind, Kind::File(_));
    let file_out = matches!(fout.inode.kind, Kind::File(_));
    let off_in = if pin != 0 {
        match read_off(cx, pin) {
            Ok(v) => v,
            Err(e) => return ret(Err(e)),
        }
    } else {
        fin.offset.get()
    };
    let append = fout.flags.get() & g::O_APPEND != 0;
    let off_out = if pout != 0 {
        match read_off(cx, pout) {
            Ok(v) => v,
            Err(e) => return ret(Err(e)),
        }
    } else if append && file_out {
        fout.inode.size()
    } else {
        fout.offset.get()
    };
    let len = len.min(CHUNK);
    if len == 0 {
        return ret(Ok(0));
    }
    // A stream destination that cannot take anything now: wait before consuming input.
    if !file_out {
        let ready = file_poll(cx, fout, None);
        if ready & (g::POLLOUT | g::POLLERR | g::POLLHUP) == 0 {
            return wait(cx, fout, nonblock);
        }
    }
    let data = match pull(cx, fin, off_in, len) {
        Ok(Some(d)) => d,
        Ok(None) => return wait(cx, fin, nonblock),
        Err(e) => return ret(Err(e)),
    };
    if data.is_empty() {
        return ret(Ok(0));
    }
    let n = match push(cx, fout, off_out, &data) {
        Ok(Some(n)) => n,
        // Rare: the destination filled up after the check; what was read from
        // a file is simply not consumed (the offsets below do not move).
        Ok(None) if file_in => return wait(cx, fout, nonblock),
        Ok(None) => 0,
        Err(e) => return ret(Err(e)),
    };
    if file_in {
        if pin != 0 {
            if let Err(e) = cx.write_user(pin, &(off_in + n as u64).to_le_bytes()) {
                return ret(Err(e));
            }
        } else {
            fin.offset.set(off_in + n as u64);
        }
    }
    if file_out {
        if pout != 0 {
            if let Err(e) = cx.write_user(pout, &(off_out + n as u64).to_le_bytes()) {
                return ret(Err(e));
            }
        } else {
            fout.offset.set(off_out + n as u64);
        }
    }
    ret(Ok(n))
}

fn files<H: Hal>(cx: &SysCtx<'_, H>, fd_in: u64, fd_out: u64) -> Result<(FileRef, FileRef), Errno> {
    let fin = cx.t.fds.file(fd_in)?;
    let fout = cx.t.fds.file(fd_out)?;
    if fin.flags.get() & g::O_PATH != 0 || fout.flags.get() & g::O_PATH != 0 || !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    Ok((fin, fout))
}

/// `sendfile(out_fd, in_fd, offset, count)`.
pub fn sendfile<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (fin, fout) = match files(cx, a[1], a[0]) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if fout.flags.get() & g::O_APPEND != 0 && matches!(fout.inode.kind, Kind::File(_)) {
        return ret(Err(Errno::EINVAL));
    }
    if a[2] != 0 && !matches!(fin.inode.kind, Kind::File(_)) {
        return ret(Err(Errno::ESPIPE));
    }
    transfer(cx, &fin, a[2], &fout, 0, a[3], false)
}

/// `splice(fd_in, off_in, fd_out, off_out, len, flags)`: one end must be a
/// pipe (`EINVAL`), and a pipe takes no offset (`ESPIPE`).
pub fn splice<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[5] as u32;
    if a[5] > u64::from(u32::MAX) || flags & !(SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT) != 0 {
        return ret(Err(Errno::EINVAL));
    }
    let (fin, fout) = match files(cx, a[0], a[2]) {
        Ok(x) => x,
        Err(e) => return ret(Err(e)),
    };
    if !is_pipe(&fin) && !is_pipe(&fout) {
        return ret(Err(Errno::EINVAL));
    }
    if (is_pipe(&fin) && a[1] != 0) || (is_pipe(&fout) && a[3] != 0) {
        return ret(Err(Errno::ESPIPE));
    }
    if alloc::rc::Rc::ptr_eq(&fin, &fout) || alloc::sync::Arc::ptr_eq(&fin.inode, &fout.inode) && is_pipe(&fin) {
        return ret(Err(Errno::EINVAL));
    }
    if fout.flags.get() & g::O_APPEND != 0 && matches!(fout.inode.kind, Kind::File(_)) {
        return ret(Err(Errno::EINVAL));
    }
    transfer(cx, &fin, a[1], &fout, a[3], a[4], flags & SPLICE_F_NONBLOCK != 0)
}

/// `vmsplice(fd, iov, nr_segs, flags)`: into a pipe opened for writing it
/// is `writev`; from one opened for reading, `readv`.
pub fn vmsplice<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let flags = a[3] as u32;
    if a[3] > u64::from(u32::MAX) || flags & !(SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT) != 0 {
        return ret(Err(Errno::EINVAL));
    }
    let f = match cx.t.fds.file(a[0]) {
        Ok(f) => f,
        Err(e) => return ret(Err(e)),
    };
    if !is_pipe(&f) {
        return ret(Err(Errno::EBADF));
    }
    let args = [a[0], a[1], a[2], 0, 0, 0];
    if f.writable() {
        super::file::writev(cx, args)
    } else {
        super::file::readv(cx, args)
    }
}
