//! File-backed disks (UML's `ubd`): [`file::FileDisk`], a plain image, and
//! [`cow::CowDisk`], a copy-on-write file over a read-only backing image in
//! UML's own COW format (version 3), so that `uml_moo` and UML itself can
//! use the files rustuml makes and the other way round.
//!
//! Everything is opened before the kernel confines itself; at run time a
//! disk only reads and writes the descriptors it holds (`preadv`,
//! `pwritev`, `fdatasync`, `fallocate` to punch discarded ranges).
//! Neighbouring requests of one batch become one vectored host call, so a
//! run of blocks costs one system call, never one per 512-byte sector.
//!
//! A writable image (and a COW file) is locked with an exclusive `flock`,
//! a backing image with a shared one: two guests cannot write one file,
//! and nobody can write a backing file that COW files depend on through
//! rustuml.

pub mod cow;
pub mod file;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hal::{BlockDevice, BlockError, SECTOR_SIZE};

pub use cow::CowDisk;
pub use file::FileDisk;

/// The largest disk rustuml attaches (ext4's limit with 4 KiB blocks, and
/// a COW bitmap of at most 512 MiB of host memory).
pub const MAX_DISK_SIZE: u64 = 16 << 40;

/// How one disk is to be attached, as parsed from `ubdN=` or `--ubd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// `N` of `ubdN` (0 is `/dev/ubda`).
    pub index: u32,
    /// The image (or the COW file, when `backing` is set).
    pub path: PathBuf,
    /// The read-only image under a COW file (`ubdN=COW,BACKING`).
    pub backing: Option<PathBuf>,
    /// Attach read-only (`ubdNr=`).
    pub read_only: bool,
    /// Every write reaches stable storage before it completes (`ubdNs=`).
    pub sync: bool,
}

/// Parse the value of `ubdN[r][s]=FILE[,BACKING]` (or `--ubd N[r][s]=...`):
/// `key` is what precedes `=` without the `ubd` prefix (`0`, `1r`, ...).
pub fn parse_spec(key: &str, value: &str) -> Result<DiskSpec, String> {
    let digits: String = key.chars().take_while(|c| c.is_ascii_digit()).collect();
    let flags = &key[digits.len()..];
    let index: u32 = match digits.parse() {
        Ok(n) if n < 16 => n,
        _ => return Err(format!("ubd{key}: the disk number must be 0 to 15")),
    };
    let (mut read_only, mut sync) = (false, false);
    for f in flags.chars() {
        match f {
            'r' => read_only = true,
            's' => sync = true,
            // UML's `d` (data only, no COW) and `c` (shared) change nothing here.
            'd' | 'c' => {}
            _ => return Err(format!("ubd{key}: unknown flag `{f}` (r: read-only, s: synchronous)")),
        }
    }
    let mut parts = value.split([',', ':']).filter(|p| !p.is_empty());
    let Some(first) = parts.next() else { return Err(format!("ubd{key}: no image file given")) };
    let backing = parts.next().map(PathBuf::from);
    if let Some(extra) = parts.next() {
        return Err(format!("ubd{key}={value}: unexpected `{extra}` (expected FILE or COW,BACKING)"));
    }
    if backing.is_some() && read_only {
        return Err(format!("ubd{key}={value}: a COW file is the writable layer; attach it without `r`"));
    }
    Ok(DiskSpec { index, path: PathBuf::from(first), backing, read_only, sync })
}

/// The device name of disk `index`: `ubda`, `ubdb`, ...
pub fn disk_name(index: u32) -> String {
    format!("ubd{}", (b'a' + (index % 26) as u8) as char)
}

/// Open the disk `spec` describes: a plain image, an existing COW file
/// (whose header names its backing file), or a COW file over `backing`
/// (created when missing). The error is one line.
pub fn open(spec: &DiskSpec) -> Result<Box<dyn BlockDevice>, String> {
    let name = disk_name(spec.index);
    let what = |e: String| format!("{name} ({}): {e}", spec.path.display());
    if let Some(backing) = &spec.backing {
        return CowDisk::open(&spec.path, Some(backing), spec.sync).map(|d| Box::new(d) as Box<dyn BlockDevice>).map_err(what);
    }
    if cow::is_cow_file(&spec.path) {
        if spec.read_only {
            return Err(what("a COW file cannot be attached read-only (attach its backing file instead)".into()));
        }
        return CowDisk::open(&spec.path, None, spec.sync).map(|d| Box::new(d) as Box<dyn BlockDevice>).map_err(what);
    }
    FileDisk::open(&spec.path, !spec.read_only, spec.sync).map(|d| Box::new(d) as Box<dyn BlockDevice>).map_err(what)
}

/// Lock `f` (`flock`, without waiting): exclusive for a file this run
/// writes, shared for one it only reads.
fn lock(f: &File, exclusive: bool) -> Result<(), String> {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on a descriptor this function's caller owns.
    if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
        return Err(if exclusive {
            "in use by another guest (locked); attach it read-only with ubdNr= or give each guest its own COW file".into()
        } else {
            "being written by another guest (locked)".into()
        });
    }
    Ok(())
}

/// Open `path` for the disk: read-write when `write`, else read-only; a
/// regular file of a usable size. The error says what to do.
fn open_image(path: &Path, write: bool) -> Result<(File, u64), String> {
    let f = std::fs::OpenOptions::new().read(true).write(write).open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EROFS) if write => {
            "cannot be opened for writing (a read-only file: attach it read-only with ubdNr=, or put a COW file over it with ubdN=COW,IMAGE)".to_string()
        }
        Some(libc::ENOENT) => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    let md = f.metadata().map_err(|e| e.to_string())?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    let size = md.len() - md.len() % SECTOR_SIZE;
    if size == 0 {
        return Err("empty (an image needs at least one 512-byte sector)".into());
    }
    if size > MAX_DISK_SIZE {
        return Err(format!("{} bytes is larger than rustuml can attach ({} bytes)", size, MAX_DISK_SIZE));
    }
    Ok((f, size))
}

/// Map an I/O error of the host to the guest's view of it.
fn io_error(e: &std::io::Error) -> BlockError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => BlockError::NoSpace,
        Some(libc::EROFS) | Some(libc::EBADF) => BlockError::ReadOnly,
        _ => BlockError::Io,
    }
}

/// `preadv`/`pwritev` of `bufs` at `off` until all is done (short counts are
/// retried; end of file reads as zeros).
fn read_vectored_at(f: &File, mut off: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
    let mut i = 0;
    let mut skip = 0usize;
    while i < bufs.len() {
        let mut iov: Vec<libc::iovec> = Vec::with_capacity((bufs.len() - i).min(1024));
        for (k, b) in bufs[i..].iter_mut().enumerate().take(1024) {
            let s = if k == 0 { skip } else { 0 };
            iov.push(libc::iovec { iov_base: b[s..].as_mut_ptr().cast(), iov_len: b.len() - s });
        }
        // SAFETY: every iovec points into a live, exclusively borrowed buffer of its length.
        let n = unsafe { libc::preadv(f.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, off as libc::off_t) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_error(&e));
        }
        if n == 0 {
            // Past the end of a sparse or short file: zeros.
            for (k, b) in bufs[i..].iter_mut().enumerate() {
                let s = if k == 0 { skip } else { 0 };
                b[s..].fill(0);
            }
            return Ok(());
        }
        off += n as u64;
        (i, skip) = advance(bufs.iter().map(|b| b.len()), i, skip, n as usize);
    }
    Ok(())
}

/// Where a vectored transfer stands after `n` more bytes: buffer `i` and
/// the bytes of it already done (`skip`), given the buffers' lengths.
fn advance(lens: impl Iterator<Item = usize>, mut i: usize, mut skip: usize, n: usize) -> (usize, usize) {
    let mut left = n;
    for len in lens.skip(i) {
        if left == 0 {
            break;
        }
        let avail = len - skip;
        if left >= avail {
            left -= avail;
            i += 1;
            skip = 0;
        } else {
            skip += left;
            left = 0;
        }
    }
    (i, skip)
}

fn write_vectored_at(f: &File, mut off: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
    let mut i = 0;
    let mut skip = 0usize;
    while i < bufs.len() {
        let mut iov: Vec<libc::iovec> = Vec::with_capacity((bufs.len() - i).min(1024));
        for (k, b) in bufs[i..].iter().enumerate().take(1024) {
            let s = if k == 0 { skip } else { 0 };
            iov.push(libc::iovec { iov_base: b[s..].as_ptr() as *mut libc::c_void, iov_len: b.len() - s });
        }
        // SAFETY: every iovec points into a live buffer of its length; pwritev only reads them.
        let n = unsafe { libc::pwritev(f.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, off as libc::off_t) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_error(&e));
        }
        if n == 0 {
            return Err(BlockError::NoSpace);
        }
        off += n as u64;
        (i, skip) = advance(bufs.iter().map(|b| b.len()), i, skip, n as usize);
    }
    Ok(())
}

/// `fdatasync`.
fn sync_file(f: &File) -> Result<(), BlockError> {
    // SAFETY: fdatasync on a descriptor we own.
    if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
        return Err(io_error(&std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
