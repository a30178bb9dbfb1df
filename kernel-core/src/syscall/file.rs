//! File I/O and path-based calls: read/write family, open, stat, getdents,
//! cwd, mkdir/unlink, readlink.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::{ConsoleStream, Hal};
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::fs::path::{self, Follow};
use crate::fs::inode::{PIPE_BUF, PIPE_CAPACITY};
use crate::fs::{Device, FileRef, InodeRef, Kind, Loc, OpenFile};
use crate::kernel::block;
use crate::task::WaitOn;
use crate::{Errno, SysResult};

/// Linux's `MAX_RW_COUNT`: one call transfers at most this much.
const MAX_RW: u64 = 0x7fff_f000;
/// Copy granularity between user memory and files.
const CHUNK: usize = 64 * 1024;
/// Largest ramfs file (the ramfs lives in the kernel's heap, not guest memory).
const MAX_FILE: u64 = 256 << 20;
/// `AT_FDCWD` as the guest passes it (an `int`).
const AT_FDCWD: i32 = g::AT_FDCWD;

/// The location `dirfd` names as a starting point for relative paths.
pub fn dir_loc<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, path: &str) -> Result<Loc, Errno> {
    if path.starts_with('/') || dirfd as i32 == AT_FDCWD {
        return Ok(cx.t.cwd.clone());
    }
    let f = cx.t.fds.file(dirfd as i32 as i64 as u64)?;
    if !f.inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let root = Loc::root(cx.k.fs.root.clone());
    path::walk(&cx.k.fs.root, &root, &f.path, Follow::Yes)
}

/// Resolve a path argument relative to `dirfd`.
pub fn lookup<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, path: &str, follow: Follow) -> Result<Loc, Errno> {
    let start = dir_loc(cx, dirfd, path)?;
    path::walk(&cx.k.fs.root, &start, path, follow)
}

// ---------------------------------------------------------------- read/write

/// Read up to `count` bytes from `f` (at `pos`, or its offset) into user `buf`.
/// `Ok(None)`: nothing available now (console).
fn do_read<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64, pos: Option<u64>) -> Result<Option<usize>, Errno> {
    let count = count.min(MAX_RW);
    cx.access_ok(buf, count)?;
    match &f.inode.kind {
        Kind::Dir(_) => Err(Errno::EISDIR),
        Kind::Symlink(_) => Err(Errno::EINVAL),
        Kind::Pipe(p) => {
            if count == 0 {
                return Ok(Some(0));
            }
            let n = (count as usize).min(p.data.borrow().len());
            if n == 0 {
                return if p.writers.get() == 0 { Ok(Some(0)) } else { Ok(None) };
            }
            let chunk: Vec<u8> = p.data.borrow().iter().take(n).copied().collect();
            cx.write_user(buf, &chunk)?;
            p.data.borrow_mut().drain(..n);
            p.bump();
            Ok(Some(n))
        }
        Kind::File(data) => {
            let off = pos.unwrap_or(f.offset.get());
            let n = {
                let d = data.borrow();
                let len = d.len() as u64;
                if off >= len || count == 0 {
                    0
                } else {
                    let n = count.min(len - off) as usize;
                    let start = off as usize;
                    // Copy out of the RefCell first: user copies may not hold the borrow.
                    let chunk: Vec<u8> = d[start..start + n].to_vec();
                    drop(d);
                    cx.write_user(buf, &chunk)?;
                    n
                }
            };
            if pos.is_none() {
                f.offset.set(off + n as u64);
            }
            Ok(Some(n))
        }
        Kind::Device(dev) => match dev {
            Device::Null => Ok(Some(0)),
            Device::Zero | Device::Random => {
                let total = count.min(1 << 20) as usize;
                let mut done = 0usize;
                let mut tmp = vec![0u8; total.min(CHUNK)];
                while done < total {
                    let n = (total - done).min(CHUNK);
                    if *dev == Device::Random {
                        cx.hal.random(&mut tmp[..n]);
                    }
                    if let Err(e) = cx.write_user(buf + done as u64, &tmp[..n]) {
                        return if done > 0 { Ok(Some(done)) } else { Err(e) };
                    }
                    done += n;
                }
                Ok(Some(done))
            }
            Device::Console | Device::ConsoleErr => console_read(cx, buf, count),
        },
    }
}

/// Pull what the HAL console has into the kernel buffer.
pub fn console_fill<H: Hal>(cx: &mut SysCtx<'_, H>) {
    cx.k.console_pull(cx.hal);
}

fn console_read<H: Hal>(cx: &mut SysCtx<'_, H>, buf: u64, count: u64) -> Result<Option<usize>, Errno> {
    if count == 0 {
        return Ok(Some(0));
    }
    console_fill(cx);
    if cx.k.console_in.is_empty() {
        if cx.k.console_eof {
            // A terminal's ^D: this read returns 0, later ones ask again.
            cx.k.console_eof = false;
            return Ok(Some(0));
        }
        return Ok(None);
    }
    let n = (count as usize).min(cx.k.console_in.len());
    let data: Vec<u8> = cx.k.console_in.iter().take(n).copied().collect();
    cx.write_user(buf, &data)?;
    cx.k.console_in.drain(..n);
    Ok(Some(n))
}

/// Write `count` bytes from user `buf` to `f`. `Ok(None)`: a full pipe.
fn do_write<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64, pos: Option<u64>) -> Result<Option<usize>, Errno> {
    let count = count.min(MAX_RW);
    cx.access_ok(buf, count)?;
    if let Kind::Pipe(p) = &f.inode.kind {
        if p.readers.get() == 0 {
            if crate::kernel::decide_signal(cx.t, g::SIGPIPE) {
                cx.t.kill_pending = Some(g::SIGPIPE);
            }
            return Err(Errno::EPIPE);
        }
        if count == 0 {
            return Ok(Some(0));
        }
        let space = PIPE_CAPACITY.saturating_sub(p.data.borrow().len());
        // Writes of up to PIPE_BUF bytes are atomic.
        if space == 0 || ((count as usize) <= PIPE_BUF && space < count as usize) {
            return Ok(None);
        }
        let n = (count as usize).min(space);
        let mut tmp = vec![0u8; n];
        cx.read_user(buf, &mut tmp)?;
        p.data.borrow_mut().extend(tmp.iter());
        p.bump();
        return Ok(Some(n));
    }
    do_write_inner(cx, f, buf, count, pos).map(Some)
}

fn do_write_inner<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64, pos: Option<u64>) -> SysResult {
    match &f.inode.kind {
        Kind::Dir(_) | Kind::Pipe(_) => Err(Errno::EISDIR),
        Kind::Symlink(_) => Err(Errno::EINVAL),
        Kind::Device(Device::Null | Device::Zero | Device::Random) => Ok(count as usize),
        Kind::Device(dev @ (Device::Console | Device::ConsoleErr)) => {
            let stream = if *dev == Device::ConsoleErr { ConsoleStream::Stderr } else { ConsoleStream::Stdout };
            let mut done = 0u64;
            let mut tmp = vec![0u8; (count as usize).min(CHUNK)];
            while done < count {
                let n = ((count - done) as usize).min(CHUNK);
                if let Err(e) = cx.read_user(buf + done, &mut tmp[..n]) {
                    return if done > 0 { Ok(done as usize) } else { Err(e) };
                }
                cx.hal.console().write(stream, &tmp[..n]);
                done += n as u64;
            }
            Ok(done as usize)
        }
        Kind::File(data) => {
            let mut off = match pos {
                Some(p) => p,
                None if f.flags.get() & g::O_APPEND != 0 => data.borrow().len() as u64,
                None => f.offset.get(),
            };
            if off.checked_add(count).is_none_or(|end| end > MAX_FILE) {
                return Err(Errno::EFBIG);
            }
            let mut done = 0u64;
            let mut tmp = vec![0u8; (count as usize).min(CHUNK)];
            while done < count {
                let n = ((count - done) as usize).min(CHUNK);
                if let Err(e) = cx.read_user(buf + done, &mut tmp[..n]) {
                    if done == 0 {
                        return Err(e);
                    }
                    break;
                }
                write_at(data, off, &tmp[..n]);
                off += n as u64;
                done += n as u64;
            }
            if pos.is_none() {
                f.offset.set(off);
            }
            touch(&f.inode, cx.hal.realtime_ns());
            Ok(done as usize)
        }
    }
}

fn write_at(data: &RefCell<Vec<u8>>, off: u64, bytes: &[u8]) {
    let mut d = data.borrow_mut();
    let off = off as usize;
    let end = off + bytes.len();
    if d.len() < end {
        d.resize(end, 0);
    }
    d[off..end].copy_from_slice(bytes);
}

fn touch(inode: &InodeRef, now: u64) {
    inode.meta.borrow_mut().mtime_ns = now;
}

fn readable_file<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64) -> Result<FileRef, Errno> {
    let f = cx.t.fds.file(fd)?;
    if f.flags.get() & g::O_PATH != 0 || !f.readable() {
        return Err(Errno::EBADF);
    }
    Ok(f)
}

fn writable_file<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64) -> Result<FileRef, Errno> {
    let f = cx.t.fds.file(fd)?;
    if f.flags.get() & g::O_PATH != 0 || !f.writable() {
        return Err(Errno::EBADF);
    }
    Ok(f)
}

fn would_block<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef) -> Flow {
    if f.flags.get() & g::O_NONBLOCK != 0 {
        return Flow::Ret(Err(Errno::EAGAIN));
    }
    if let Kind::Pipe(p) = &f.inode.kind {
        cx.k.pipe_waits.insert(cx.t.pid, vec![(f.inode.clone(), p.gen.get())]);
        return block(WaitOn::Pipe, None, Ok(0), true);
    }
    block(WaitOn::Console, None, Ok(0), true)
}

/// `read(fd, buf, count)`.
pub fn read<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let f = match readable_file(cx, a[0]) {
        Ok(f) => f,
        Err(e) => return Flow::Ret(Err(e)),
    };
    match do_read(cx, &f, a[1], a[2], None) {
        Ok(Some(n)) => Flow::Ret(Ok(n)),
        Ok(None) => would_block(cx, &f),
        Err(e) => Flow::Ret(Err(e)),
    }
}

/// `write(fd, buf, count)`.
pub fn write<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let f = match writable_file(cx, a[0]) {
        Ok(f) => f,
        Err(e) => return Flow::Ret(Err(e)),
    };
    match do_write(cx, &f, a[1], a[2], None) {
        Ok(Some(n)) => Flow::Ret(Ok(n)),
        Ok(None) => would_block(cx, &f),
        Err(e) => Flow::Ret(Err(e)),
    }
}

fn positional(f: &FileRef, pos: u64) -> Result<u64, Errno> {
    match f.inode.kind {
        Kind::File(_) => {}
        Kind::Device(Device::Console | Device::ConsoleErr) | Kind::Pipe(_) => return Err(Errno::ESPIPE),
        _ => {}
    }
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(pos)
}

/// `pread64(fd, buf, count, pos)`.
pub fn pread64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = readable_file(cx, a[0])?;
    let pos = positional(&f, a[3])?;
    Ok(do_read(cx, &f, a[1], a[2], Some(pos))?.unwrap_or(0))
}

/// `pwrite64(fd, buf, count, pos)`.
pub fn pwrite64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = writable_file(cx, a[0])?;
    let pos = positional(&f, a[3])?;
    Ok(do_write(cx, &f, a[1], a[2], Some(pos))?.unwrap_or(0))
}

/// Read and validate an iovec array.
fn iovecs<H: Hal>(cx: &mut SysCtx<'_, H>, iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; cnt as usize * 16];
    cx.read_user(iov, &mut raw)?;
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for c in raw.chunks_exact(16) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&c[0..8]);
        let base = u64::from_le_bytes(b);
        b.copy_from_slice(&c[8..16]);
        let len = u64::from_le_bytes(b);
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        total = total.checked_add(len).filter(|t| (*t as i64) >= 0).ok_or(Errno::EINVAL)?;
        cx.access_ok(base, len)?;
        v.push((base, len));
    }
    Ok(v)
}

/// `readv(fd, iov, iovcnt)`.
pub fn readv<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let r = (|| -> Result<Option<usize>, Errno> {
        let f = readable_file(cx, a[0])?;
        let v = iovecs(cx, a[1], a[2])?;
        let mut total = 0usize;
        for (base, len) in v {
            if len == 0 {
                continue;
            }
            match do_read(cx, &f, base, len, None) {
                Ok(Some(n)) => {
                    total += n;
                    if (n as u64) < len {
                        break;
                    }
                }
                Ok(None) if total == 0 => return Ok(None),
                Ok(None) => break,
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Some(total))
    })();
    match r {
        Ok(Some(n)) => Flow::Ret(Ok(n)),
        Ok(None) => match cx.t.fds.file(a[0]) {
            Ok(f) => would_block(cx, &f),
            Err(e) => Flow::Ret(Err(e)),
        },
        Err(e) => Flow::Ret(Err(e)),
    }
}

/// `writev(fd, iov, iovcnt)`.
pub fn writev<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let r = (|| -> Result<Option<usize>, Errno> {
        let f = writable_file(cx, a[0])?;
        let v = iovecs(cx, a[1], a[2])?;
        let mut total = 0usize;
        for (base, len) in v {
            if len == 0 {
                continue;
            }
            match do_write(cx, &f, base, len, None) {
                Ok(Some(n)) => {
                    total += n;
                    if (n as u64) < len {
                        break;
                    }
                }
                Ok(None) if total == 0 => return Ok(None),
                Ok(None) => break,
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Some(total))
    })();
    match r {
        Ok(Some(n)) => Flow::Ret(Ok(n)),
        Ok(None) => match cx.t.fds.file(a[0]) {
            Ok(f) => would_block(cx, &f),
            Err(e) => Flow::Ret(Err(e)),
        },
        Err(e) => Flow::Ret(Err(e)),
    }
}

/// `lseek(fd, off, whence)`.
pub fn lseek<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let off = a[1] as i64;
    let size = match &f.inode.kind {
        Kind::File(d) => d.borrow().len() as i64,
        Kind::Dir(_) => 0,
        Kind::Device(Device::Console | Device::ConsoleErr) | Kind::Pipe(_) => return Err(Errno::ESPIPE),
        Kind::Device(_) => return Ok(0),
        Kind::Symlink(_) => return Err(Errno::EBADF),
    };
    let cur = f.offset.get() as i64;
    let new = match a[2] as u32 {
        g::SEEK_SET => Some(off),
        g::SEEK_CUR => cur.checked_add(off),
        g::SEEK_END => size.checked_add(off),
        g::SEEK_DATA if off < size => Some(off),
        g::SEEK_HOLE if off < size => Some(size),
        g::SEEK_DATA | g::SEEK_HOLE => return Err(Errno::ENXIO),
        _ => return Err(Errno::EINVAL),
    }
    .ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    f.offset.set(new as u64);
    Ok(new as usize)
}

// ---------------------------------------------------------------- open

const OPEN_KEEP: u32 = !(g::O_CREAT | g::O_EXCL | g::O_NOCTTY | g::O_TRUNC | g::O_CLOEXEC);

fn do_open<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32, mode: u32) -> SysResult {
    let p = cx.read_path(pathp)?;
    let start = dir_loc(cx, dirfd, &p)?;
    let root = cx.k.fs.root.clone();
    if flags & g::O_TMPFILE == g::O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let follow = if flags & g::O_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    let loc = if flags & g::O_CREAT != 0 {
        if p.ends_with('/') {
            return Err(Errno::EISDIR);
        }
        match path::walk(&root, &start, &p, follow) {
            Ok(_) if flags & g::O_EXCL != 0 => return Err(Errno::EEXIST),
            Ok(l) => l,
            Err(Errno::ENOENT) => {
                let (parent, name) = path::walk_parent(&root, &start, &p)?;
                if parent.inode().lookup(&name)?.is_some() {
                    // A dangling symlink: Linux would create its target; keep it simple.
                    return Err(Errno::ENOENT);
                }
                let now = cx.hal.realtime_ns();
                let node = cx.k.fs.new_inode(Kind::File(RefCell::new(Vec::new())), mode & !cx.t.umask & 0o7777, now);
                parent.inode().insert(&name, node.clone())?;
                touch(parent.inode(), now);
                let mut l = parent;
                l.stack.push((name, node));
                l
            }
            Err(e) => return Err(e),
        }
    } else {
        path::walk(&root, &start, &p, follow)?
    };
    let inode = loc.inode().clone();
    if let Kind::Symlink(_) = inode.kind {
        if flags & g::O_PATH == 0 {
            return Err(Errno::ELOOP);
        }
    }
    let acc = flags & g::O_ACCMODE;
    let wants_write = acc == g::O_WRONLY || acc == g::O_RDWR;
    if flags & g::O_DIRECTORY != 0 && !inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if inode.is_dir() && (wants_write || flags & g::O_CREAT != 0) && flags & g::O_PATH == 0 {
        return Err(Errno::EISDIR);
    }
    if let Kind::File(d) = &inode.kind {
        if flags & g::O_TRUNC != 0 && wants_write && flags & g::O_PATH == 0 {
            d.borrow_mut().clear();
            touch(&inode, cx.hal.realtime_ns());
        }
    }
    let file = OpenFile::new(inode, flags & OPEN_KEEP, loc.path());
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, file, flags & g::O_CLOEXEC != 0, limit)
}

/// `open(path, flags, mode)`.
pub fn open<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_open(cx, AT_FDCWD as u64, a[0], a[1] as u32, a[2] as u32)
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_open(cx, a[0], a[1], a[2] as u32, a[3] as u32)
}

/// `creat(path, mode)`.
pub fn creat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_open(cx, AT_FDCWD as u64, a[0], g::O_CREAT | g::O_WRONLY | g::O_TRUNC, a[1] as u32)
}

// ---------------------------------------------------------------- stat & co

fn stat_to<H: Hal>(cx: &mut SysCtx<'_, H>, inode: &InodeRef, out: u64) -> SysResult {
    cx.write_user(out, &inode.stat_bytes())?;
    Ok(0)
}

/// `fstat(fd, statbuf)`.
pub fn fstat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    stat_to(cx, &f.inode, a[1])
}

/// `stat(path, statbuf)`.
pub fn stat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let p = cx.read_path(a[0])?;
    let l = lookup(cx, AT_FDCWD as u64, &p, Follow::Yes)?;
    stat_to(cx, &l.inode().clone(), a[1])
}

/// `lstat(path, statbuf)`.
pub fn lstat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let p = cx.read_path(a[0])?;
    let l = lookup(cx, AT_FDCWD as u64, &p, Follow::No)?;
    stat_to(cx, &l.inode().clone(), a[1])
}

/// Resolve `(dirfd, path, flags)` as the `*at` calls with `AT_EMPTY_PATH` /
/// `AT_SYMLINK_NOFOLLOW` do.
fn at_inode<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32) -> Result<InodeRef, Errno> {
    if flags & !(g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH | g::AT_NO_AUTOMOUNT | g::AT_EACCESS) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = cx.read_path(pathp)?;
    if p.is_empty() && flags & g::AT_EMPTY_PATH != 0 {
        if dirfd as i32 == AT_FDCWD {
            return Ok(cx.t.cwd.inode().clone());
        }
        return Ok(cx.t.fds.file(dirfd as i32 as i64 as u64)?.inode.clone());
    }
    let follow = if flags & g::AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    Ok(lookup(cx, dirfd, &p, follow)?.inode().clone())
}

/// `newfstatat(dirfd, path, statbuf, flags)`.
pub fn newfstatat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], a[3] as u32)?;
    stat_to(cx, &inode, a[2])
}

fn check_access(inode: &InodeRef, mode: u64) -> SysResult {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    // We are root: read/write always allowed; execute needs an x bit (or a directory).
    if mode & 1 != 0 && !inode.is_dir() && !inode.executable() {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

/// `access(path, mode)`.
pub fn access<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let p = cx.read_path(a[0])?;
    let l = lookup(cx, AT_FDCWD as u64, &p, Follow::Yes)?;
    check_access(l.inode(), a[1])
}

/// `faccessat(dirfd, path, mode)`.
pub fn faccessat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], 0)?;
    check_access(&inode, a[2])
}

/// `faccessat2(dirfd, path, mode, flags)`.
pub fn faccessat2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], a[3] as u32)?;
    check_access(&inode, a[2])
}

fn do_readlink<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, buf: u64, size: u64) -> SysResult {
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let p = cx.read_path(pathp)?;
    let l = lookup(cx, dirfd, &p, Follow::No)?;
    let target = match &l.inode().kind {
        Kind::Symlink(t) => t.clone(),
        _ => return Err(Errno::EINVAL),
    };
    let n = target.len().min(size as usize);
    cx.write_user(buf, &target.as_bytes()[..n])?;
    Ok(n)
}

/// `readlink(path, buf, size)`.
pub fn readlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_readlink(cx, AT_FDCWD as u64, a[0], a[1], a[2])
}

/// `readlinkat(dirfd, path, buf, size)`.
pub fn readlinkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_readlink(cx, a[0], a[1], a[2], a[3])
}

/// `getdents64(fd, dirp, count)`: `.`, `..`, then the entries in name order;
/// the file offset is the index of the next entry.
pub fn getdents64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let Kind::Dir(children) = &f.inode.kind else { return Err(Errno::ENOTDIR) };
    let count = a[2].min(MAX_RW) as usize;
    let mut entries: Vec<(String, u64, u8)> = Vec::new();
    entries.push((String::from("."), f.inode.ino, g::DT_DIR as u8));
    entries.push((String::from(".."), f.inode.ino, g::DT_DIR as u8));
    for (name, node) in children.borrow().iter() {
        entries.push((name.clone(), node.ino, node.dtype()));
    }
    let mut out: Vec<u8> = Vec::new();
    let mut idx = f.offset.get() as usize;
    while let Some((name, ino, dtype)) = entries.get(idx) {
        let reclen = (19 + name.len() + 1 + 7) & !7;
        if out.len() + reclen > count {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&((idx + 1) as i64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(*dtype);
        out.extend_from_slice(name.as_bytes());
        out.resize(start + reclen, 0);
        idx += 1;
    }
    if out.is_empty() && idx < entries.len() {
        return Err(Errno::EINVAL);
    }
    cx.write_user(a[1], &out)?;
    f.offset.set(idx as u64);
    Ok(out.len())
}

/// `getcwd(buf, size)`.
pub fn getcwd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mut p = cx.t.cwd.path().into_bytes();
    p.push(0);
    if (a[1] as usize) < p.len() {
        return Err(Errno::ERANGE);
    }
    cx.write_user(a[0], &p)?;
    Ok(p.len())
}

/// `chdir(path)`.
pub fn chdir<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let p = cx.read_path(a[0])?;
    let l = lookup(cx, AT_FDCWD as u64, &p, Follow::Yes)?;
    if !l.inode().is_dir() {
        return Err(Errno::ENOTDIR);
    }
    cx.t.cwd = l;
    Ok(0)
}

/// `fchdir(fd)`.
pub fn fchdir<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    if !f.inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let root = Loc::root(cx.k.fs.root.clone());
    cx.t.cwd = path::walk(&cx.k.fs.root, &root, &f.path, Follow::Yes)?;
    Ok(0)
}

fn do_mkdir<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, mode: u32) -> SysResult {
    let p = cx.read_path(pathp)?;
    let start = dir_loc(cx, dirfd, &p)?;
    let root = cx.k.fs.root.clone();
    let (parent, name) = path::walk_parent(&root, &start, &p)?;
    if parent.inode().lookup(&name)?.is_some() {
        return Err(Errno::EEXIST);
    }
    let now = cx.hal.realtime_ns();
    let d = cx.k.fs.new_dir(mode & !cx.t.umask & 0o7777, now);
    parent.inode().insert(&name, d)?;
    parent.inode().meta.borrow_mut().nlink += 1;
    touch(parent.inode(), now);
    Ok(0)
}

/// `mkdir(path, mode)`.
pub fn mkdir<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mkdir(cx, AT_FDCWD as u64, a[0], a[1] as u32)
}

/// `mkdirat(dirfd, path, mode)`.
pub fn mkdirat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mkdir(cx, a[0], a[1], a[2] as u32)
}

fn do_unlink<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32) -> SysResult {
    if flags & !g::AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let p = cx.read_path(pathp)?;
    let start = dir_loc(cx, dirfd, &p)?;
    let root = cx.k.fs.root.clone();
    let (parent, name) = path::walk_parent(&root, &start, &p).map_err(|e| if e == Errno::EEXIST { Errno::EBUSY } else { e })?;
    let node = parent.inode().lookup(&name)?.ok_or(Errno::ENOENT)?;
    let rmdir = flags & g::AT_REMOVEDIR != 0;
    match (&node.kind, rmdir) {
        (Kind::Dir(c), true) if !c.borrow().is_empty() => return Err(Errno::ENOTEMPTY),
        (Kind::Dir(_), true) => {}
        (Kind::Dir(_), false) => return Err(Errno::EISDIR),
        (_, true) => return Err(Errno::ENOTDIR),
        _ => {}
    }
    if let Kind::Dir(d) = &parent.inode().kind {
        d.borrow_mut().remove(&name);
    }
    {
        let mut m = node.meta.borrow_mut();
        m.nlink = m.nlink.saturating_sub(1);
    }
    touch(parent.inode(), cx.hal.realtime_ns());
    Ok(0)
}

/// `unlink(path)`.
pub fn unlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_unlink(cx, AT_FDCWD as u64, a[0], 0)
}

/// `unlinkat(dirfd, path, flags)`.
pub fn unlinkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_unlink(cx, a[0], a[1], a[2] as u32)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    if !f.writable() {
        return Err(Errno::EINVAL);
    }
    let len = a[1];
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if len > MAX_FILE {
        return Err(Errno::EFBIG);
    }
    match &f.inode.kind {
        Kind::File(d) => d.borrow_mut().resize(len as usize, 0),
        Kind::Dir(_) => return Err(Errno::EISDIR),
        _ => return Err(Errno::EINVAL),
    }
    touch(&f.inode, cx.hal.realtime_ns());
    Ok(0)
}

/// `umask(mask)`.
pub fn umask<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let old = cx.t.umask;
    cx.t.umask = (a[0] as u32) & 0o777;
    Ok(old as usize)
}
