//! File I/O and path-based calls: read/write family, open, stat, getdents,
//! cwd, mkdir/unlink, readlink.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use hal::{ConsoleStream, Hal, PhysMem};
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::fs::path::{self, Follow};
use crate::fs::{Device, FileRef, InodeRef, Kind, Loc};
use crate::mm::page_cache::{Piece, MAX_FILE_SIZE};
use crate::mm::{PageCache, PAGE};
use crate::{Errno, SysResult};

/// Linux's `MAX_RW_COUNT`: one call transfers at most this much.
const MAX_RW: u64 = 0x7fff_f000;
/// Copy granularity between user memory and devices (and host files).
const CHUNK: usize = 64 * 1024;
/// `AT_FDCWD` as the guest passes it (an `int`).
const AT_FDCWD: i32 = g::AT_FDCWD;

/// Resolve a path argument relative to `dirfd` (crossing mounts, checking
/// search permission, filling procfs directories).
pub fn lookup<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, path: &str, follow: Follow) -> Result<Loc, Errno> {
    super::fs_ops::resolve(cx, dirfd, path, follow)
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
        Kind::Special(sp) => super::poll::special_read(cx, f, sp, buf, count),
        Kind::File(data) => {
            let off = pos.unwrap_or(f.offset.get());
            verify_area(off, count)?;
            if let Some(pid) = crate::fs::procfs::mem_of(&cx.k.fs, &f.inode) {
                return super::ptrace::proc_mem(cx, f, pid, buf, off, count, pos.is_none(), false).map(Some);
            }
            let n = read_cache(cx, data.cache(), buf, off, count)?;
            if pos.is_none() {
                f.offset.set(off + n as u64);
            }
            Ok(Some(n))
        }
        Kind::Device(dev) => match dev {
            Device::Null => Ok(Some(0)),
            Device::Zero | Device::Random | Device::Full => {
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
            Device::Console | Device::ConsoleErr => console_read(cx, f, buf, count),
        },
    }
}

/// A console device node reads from the console tty.
fn console_read<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64) -> Result<Option<usize>, Errno> {
    let s = cx.k.ttys.console_file(ConsoleStream::Stdout);
    super::poll::special_read(cx, f, &s, buf, count)
}

/// Write `count` bytes from user `buf` to `f`. `Ok(None)`: a full pipe.
fn do_write<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64, pos: Option<u64>) -> Result<Option<usize>, Errno> {
    let count = count.min(MAX_RW);
    cx.access_ok(buf, count)?;
    if let Some(sp) = super::poll::special_of(cx, f) {
        return super::poll::special_write(cx, &sp, buf, count);
    }
    do_write_inner(cx, f, buf, count, pos).map(Some)
}

fn do_write_inner<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, buf: u64, count: u64, pos: Option<u64>) -> SysResult {
    match &f.inode.kind {
        Kind::Dir(_) | Kind::Special(_) => Err(Errno::EISDIR),
        Kind::Symlink(_) => Err(Errno::EINVAL),
        Kind::Device(Device::Null | Device::Zero | Device::Random) => Ok(count as usize),
        Kind::Device(Device::Full) => Err(Errno::ENOSPC),
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
            let cache = data.cache().clone();
            if let Some(pid) = crate::fs::procfs::mem_of(&cx.k.fs, &f.inode) {
                let off = pos.unwrap_or(f.offset.get());
                verify_area(off, count)?;
                return super::ptrace::proc_mem(cx, f, pid, buf, off, count, pos.is_none(), true);
            }
            // A sysctl takes effect when written (it is not file data).
            if crate::fs::procfs::is_writable(&cx.k.fs, &f.inode) {
                let mut bytes = vec![0u8; (count as usize).min(CHUNK)];
                cx.read_user(buf, &mut bytes)?;
                crate::fs::procfs::store(&cx.k.net.inet, &cx.k.fs, &f.inode, &bytes)?;
                return Ok(bytes.len());
            }
            let seals = cache.seals();
            if seals & (g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE) != 0 {
                return Err(Errno::EPERM);
            }
            // O_APPEND wins even over pwrite's offset: a Linux quirk (BUGS in
            // pwrite(2)) that programs relying on append-only logs expect.
            let off = match pos {
                _ if f.flags.get() & g::O_APPEND != 0 => cache.size(),
                Some(p) => p,
                None => f.offset.get(),
            };
            verify_area(off, count)?;
            if off >= MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            let mut count = count.min(MAX_FILE_SIZE - off);
            if seals & g::F_SEAL_GROW != 0 && off.saturating_add(count) > cache.size() {
                // Linux writes up to the end and refuses to grow.
                count = cache.size().saturating_sub(off);
                if count == 0 {
                    // At the end of a disk there is no more room.
                    return Err(if f.inode.block_disk().is_some() { Errno::ENOSPC } else { Errno::EPERM });
                }
            }
            let done = if cache.has_store() {
                write_through(cx, &cache, buf, off, count)?
            } else {
                write_cache(cx, &cache, buf, off, count)?
            };
            if pos.is_none() {
                f.offset.set(off + done as u64);
            }
            if done > 0 {
                touch(&f.inode, cx.hal.realtime_ns());
            }
            Ok(done)
        }
    }
}

/// Linux's `rw_verify_area`: a file position and a count whose sum does
/// not fit a signed 64-bit offset is `EINVAL`.
fn verify_area(off: u64, count: u64) -> Result<(), Errno> {
    match i64::try_from(off).ok().and_then(|o| o.checked_add(count as i64)) {
        Some(_) => Ok(()),
        None => Err(Errno::EINVAL),
    }
}

/// Copy `count` bytes at `off` of a page cache to user memory at `buf`: one
/// copy from the cache's frames (or the archive's bytes) to the user's
/// frames, no bounce buffer. Short at end of file; an error only if
/// nothing was copied.
pub(super) fn read_cache<H: Hal>(cx: &mut SysCtx<'_, H>, cache: &Rc<PageCache>, buf: u64, off: u64, count: u64) -> Result<usize, Errno> {
    let mut done = 0u64;
    while done < count {
        let step = cache.piece(off + done, count - done, &mut cx.k.frames, cx.hal.phys());
        let (piece, n) = match step {
            Ok((_, 0)) => break,
            Ok(x) => x,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let mm = cx.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        let (frames, phys) = (&mut cx.k.frames, cx.hal.phys());
        let to = buf + done;
        let r = match piece {
            Piece::Frame(p) => mm.copy_phys_to_user(to, p, n, frames, phys),
            Piece::Zeros => mm.zero_user(to, n, frames, phys),
            Piece::Bytes(b, at) => match (*b).as_ref().get(at..at + n as usize) {
                Some(bytes) => mm.copy_to_user(to, bytes, frames, phys),
                None => Err(Errno::EIO),
            },
            Piece::Owned(v) => mm.copy_to_user(to, &v[..n as usize], frames, phys),
        };
        if let Err(e) = r {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += n;
    }
    Ok(done as usize)
}

/// Write `count` bytes from user `buf` at `off` of a memory-only page cache:
/// page by page, straight from the user's frames into the cache's. An
/// error (`EFAULT`, `ENOSPC`, `ENOMEM`) only if nothing was written.
fn write_cache<H: Hal>(cx: &mut SysCtx<'_, H>, cache: &Rc<PageCache>, buf: u64, off: u64, count: u64) -> Result<usize, Errno> {
    let mut done = 0u64;
    while done < count {
        let pos = off + done;
        let n = (count - done).min(PAGE - pos % PAGE);
        let (frame, fresh) = match cache.page_for_write(pos, n, &mut cx.k.frames, cx.hal.phys()) {
            Ok(x) => x,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let mm = cx.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        if let Err(e) = mm.copy_user_to_phys(buf + done, frame + pos % PAGE, n, &mut cx.k.frames, cx.hal.phys()) {
            if fresh {
                // Its contents were left to the copy: a hole reads as zeros.
                cx.hal.phys().fill(frame, PAGE, 0);
            }
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += n;
        cache.wrote(pos + n);
    }
    Ok(done as usize)
}

/// Write to a page cache with a store (a host file): through a bounce
/// buffer to the store, then into the cached pages it covers.
fn write_through<H: Hal>(cx: &mut SysCtx<'_, H>, cache: &Rc<PageCache>, buf: u64, off: u64, count: u64) -> Result<usize, Errno> {
    let mut done = 0u64;
    let mut tmp = vec![0u8; (count as usize).min(CHUNK)];
    while done < count {
        let n = ((count - done) as usize).min(CHUNK);
        let r = cx.read_user(buf + done, &mut tmp[..n]).and_then(|()| cache.write_through(off + done, &tmp[..n], cx.hal.phys()));
        if let Err(e) = r {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += n as u64;
    }
    Ok(done as usize)
}

/// Set a regular file's size (`truncate`, `ftruncate`, `O_TRUNC`) with the
/// seal and size checks: shrinking first removes the mappings of the
/// dropped pages in every process (an access there then gives `SIGBUS`).
pub(super) fn truncate_file<H: Hal>(cx: &mut SysCtx<'_, H>, inode: &InodeRef, len: u64) -> SysResult {
    let Kind::File(d) = &inode.kind else { return Err(Errno::EINVAL) };
    let cache = d.cache().clone();
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if len > MAX_FILE_SIZE {
        return Err(Errno::EFBIG);
    }
    let size = cache.size();
    let seals = cache.seals();
    if (len < size && seals & g::F_SEAL_SHRINK != 0) || (len > size && seals & g::F_SEAL_GROW != 0) {
        return Err(Errno::EPERM);
    }
    if len < size {
        super::mem::invalidate_everywhere(cx, &cache, len.div_ceil(PAGE), u64::MAX, true);
    }
    cache.truncate(len, &mut cx.k.frames, cx.hal.phys())?;
    let now = cx.hal.realtime_ns();
    let mut m = inode.meta.borrow_mut();
    m.mtime_ns = now;
    m.ctime_ns = now;
    Ok(0)
}

fn touch(inode: &InodeRef, now: u64) {
    let mut m = inode.meta.borrow_mut();
    m.mtime_ns = now;
    m.ctime_ns = now;
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
    super::poll::block_on_file(cx, f)
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
        Kind::Device(Device::Console | Device::ConsoleErr) | Kind::Special(_) => return Err(Errno::ESPIPE),
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

/// A transfer on one file, as `do_read`/`do_write`: `None` would block.
type Transfer<H> = fn(&mut SysCtx<'_, H>, &FileRef, u64, u64, Option<u64>) -> Result<Option<usize>, Errno>;

/// `readv`/`writev`: the segments in order, stopping at the first short
/// transfer; an error or a would-block counts only when nothing moved yet.
fn vectored<H: Hal>(
    cx: &mut SysCtx<'_, H>,
    a: [u64; 6],
    open: fn(&mut SysCtx<'_, H>, u64) -> Result<FileRef, Errno>,
    transfer: Transfer<H>,
) -> Flow {
    vectored_at(cx, a, open, transfer, None)
}

/// [`vectored`] at file position `pos` (`preadv`/`pwritev`), or at the
/// file's offset with `None`.
fn vectored_at<H: Hal>(
    cx: &mut SysCtx<'_, H>,
    a: [u64; 6],
    open: fn(&mut SysCtx<'_, H>, u64) -> Result<FileRef, Errno>,
    transfer: Transfer<H>,
    pos: Option<u64>,
) -> Flow {
    let r = (|| -> Result<Option<usize>, Errno> {
        let f = open(cx, a[0])?;
        if let Some(p) = pos {
            positional(&f, p)?;
        }
        let v = iovecs(cx, a[1], a[2])?;
        let mut total = 0usize;
        for (base, len) in v {
            if len == 0 {
                continue;
            }
            match transfer(cx, &f, base, len, pos.map(|p| p + total as u64)) {
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

/// `readv(fd, iov, iovcnt)`.
pub fn readv<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    vectored(cx, a, readable_file, do_read)
}

/// `writev(fd, iov, iovcnt)`.
pub fn writev<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    vectored(cx, a, writable_file, do_write)
}

/// `RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND`: hints
/// accepted (data is written through the page cache either way).
const RWF_KNOWN: u64 = 0x1f;

/// `preadv(fd, iov, iovcnt, pos_lo, pos_hi)`.
pub fn preadv<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    vectored_at(cx, a, readable_file, do_read, Some(a[3]))
}

/// `pwritev(fd, iov, iovcnt, pos_lo, pos_hi)`.
pub fn pwritev<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    vectored_at(cx, a, writable_file, do_write, Some(a[3]))
}

/// `preadv2(fd, iov, iovcnt, pos_lo, pos_hi, flags)`: position -1 is the
/// file's offset; unknown flags `EOPNOTSUPP`.
pub fn preadv2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    if a[5] & !RWF_KNOWN != 0 {
        return Flow::Ret(Err(Errno::EOPNOTSUPP));
    }
    let pos = if a[3] as i64 == -1 { None } else { Some(a[3]) };
    vectored_at(cx, a, readable_file, do_read, pos)
}

/// `pwritev2(fd, iov, iovcnt, pos_lo, pos_hi, flags)`.
pub fn pwritev2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    if a[5] & !RWF_KNOWN != 0 {
        return Flow::Ret(Err(Errno::EOPNOTSUPP));
    }
    let pos = if a[3] as i64 == -1 { None } else { Some(a[3]) };
    vectored_at(cx, a, writable_file, do_write, pos)
}

/// `lseek(fd, off, whence)`.
pub fn lseek<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let off = a[1] as i64;
    let size = match &f.inode.kind {
        Kind::File(d) => {
            let whence = a[2] as u32;
            if whence == g::SEEK_DATA || whence == g::SEEK_HOLE {
                // Holes of a sparse file (whole pages, as tmpfs): ENXIO at or
                // past the end, or when no data follows.
                let found = d.seek(off as u64, whence == g::SEEK_HOLE).ok_or(Errno::ENXIO)?;
                f.offset.set(found);
                return Ok(found as usize);
            }
            i64::try_from(d.size()).unwrap_or(i64::MAX)
        }
        Kind::Dir(_) => 0,
        Kind::Special(s) if s.as_any().is::<crate::tty::kmsg::KmsgReader>() => {
            let k = s.as_any().downcast_ref::<crate::tty::kmsg::KmsgReader>().ok_or(Errno::ESPIPE)?;
            return k.seek(off, a[2] as u32);
        }
        Kind::Device(Device::Console | Device::ConsoleErr) | Kind::Special(_) => return Err(Errno::ESPIPE),
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
    if new == 0 && cx.k.fs.fstype(f.inode.sb) == crate::fs::mount::FsType::Proc {
        super::fs_ops::proc_regenerate(cx, &f.inode);
    }
    f.offset.set(new as u64);
    Ok(new as usize)
}

// ---------------------------------------------------------------- open

fn do_open<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32, mode: u32) -> SysResult {
    super::fs_ops::do_open(cx, dirfd, pathp, flags, mode)
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

/// `fstat(fd, statbuf)`.
pub fn fstat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    cx.write_user(a[1], &f.inode.stat_bytes())?;
    Ok(0)
}

/// `getdents64(fd, dirp, count)`: `.`, `..`, then the entries in name order;
/// the file offset is the index of the next entry.
pub fn getdents64<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let Kind::Dir(children) = &f.inode.kind else { return Err(Errno::ENOTDIR) };
    if f.offset.get() == 0 {
        // A generated (procfs) or host directory is refilled when listed from the start.
        super::fs_ops::refresh_dir(cx, &f.inode)?;
    }
    let count = a[2].min(MAX_RW) as usize;
    let start = f.offset.get() as usize;
    let entries = crate::fs::readdir::entries(&f.inode, children, start, count)?;
    let mut out: Vec<u8> = Vec::new();
    let mut idx = start;
    while let Some((name, ino, dtype)) = entries.get(idx - start) {
        let name = crate::fs::path::name_to_bytes(name);
        let reclen = crate::fs::readdir::reclen(name.len());
        if out.len() + reclen > count {
            break;
        }
        let rec_start = out.len();
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&((idx + 1) as i64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(*dtype);
        out.extend_from_slice(&name);
        out.resize(rec_start + reclen, 0);
        idx += 1;
    }
    if out.is_empty() && idx - start < entries.len() {
        return Err(Errno::EINVAL);
    }
    cx.write_user(a[1], &out)?;
    f.offset.set(idx as u64);
    Ok(out.len())
}

/// `getcwd(buf, size)`.
pub fn getcwd<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mut p = crate::fs::path::name_to_bytes(&cx.t.cwd.path()).into_owned();
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
    super::share::sync_fs(cx);
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
    super::share::sync_fs(cx);
    Ok(0)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    if !f.writable() {
        return Err(Errno::EINVAL);
    }
    match &f.inode.kind {
        Kind::File(_) => truncate_file(cx, &f.inode.clone(), a[1]),
        Kind::Dir(_) => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

/// `fallocate(fd, mode, offset, len)` on a memory file (tmpfs, memfd): mode
/// 0 allocates (and grows the file), `FALLOC_FL_KEEP_SIZE` allocates without
/// growing, `FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE` deallocates (whole
/// pages leave, partial ones are zeroed). Other modes, and host files:
/// `EOPNOTSUPP`, as Linux's tmpfs. Seals apply (`EPERM`).
pub fn fallocate<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let (mode, off, len) = (a[1] as u32, a[2] as i64, a[3] as i64);
    if a[1] > u64::from(u32::MAX) || off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let keep = mode & g::FALLOC_FL_KEEP_SIZE != 0;
    let punch = mode & g::FALLOC_FL_PUNCH_HOLE != 0;
    if mode & !(g::FALLOC_FL_KEEP_SIZE | g::FALLOC_FL_PUNCH_HOLE) != 0 || (punch && !keep) {
        return Err(Errno::EOPNOTSUPP);
    }
    let cache = match &f.inode.kind {
        Kind::File(d) => d.cache().clone(),
        Kind::Dir(_) => return Err(Errno::EISDIR),
        Kind::Special(_) => return Err(Errno::ESPIPE),
        _ => return Err(Errno::ENODEV),
    };
    let end = off.checked_add(len).filter(|&e| e as u64 <= MAX_FILE_SIZE).ok_or(Errno::EFBIG)? as u64;
    let (off, size, seals) = (off as u64, cache.size(), cache.seals());
    if seals & (g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE) != 0 && punch {
        return Err(Errno::EPERM);
    }
    if seals & g::F_SEAL_GROW != 0 && !keep && end > size {
        return Err(Errno::EPERM);
    }
    if punch {
        super::mem::invalidate_everywhere(cx, &cache, off.div_ceil(PAGE), end / PAGE, false);
        cache.punch_hole(off, end, &mut cx.k.frames, cx.hal.phys())?;
    } else {
        cache.allocate(off, end, &mut cx.k.frames, cx.hal.phys())?;
        if !keep {
            cache.wrote(end);
        }
    }
    touch(&f.inode, cx.hal.realtime_ns());
    Ok(0)
}

/// `umask(mask)`.
pub fn umask<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let old = cx.t.umask;
    cx.t.umask = (a[0] as u32) & 0o777;
    super::share::sync_fs(cx);
    Ok(old as usize)
}
