//! hostfs: a host directory exported into the guest ([`hal::HostDir`]).
//!
//! Confinement: every handle is a host fd reached from the export's root fd
//! one validated component at a time with `openat(..., O_NOFOLLOW)`; names
//! are never `.`, `..`, empty or contain `/`, and symbolic links are opened
//! with `O_PATH` only (read with `readlinkat`, never followed). So no guest
//! path can name a host file outside the export.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use hal::{HostAttr, HostDir, HostError, HostFileKind};

struct Entry {
    fd: OwnedFd,
    kind: HostFileKind,
    /// Directory listing, taken when index 0 is read.
    listing: Vec<(Vec<u8>, HostFileKind)>,
}

/// One exported host directory.
pub struct HostExport {
    handles: HashMap<u64, Entry>,
    next: u64,
    readonly: bool,
}

fn last_err() -> HostError {
    map_err(&io::Error::last_os_error())
}

fn map_err(e: &io::Error) -> HostError {
    match e.raw_os_error().unwrap_or(libc::EIO) {
        libc::ENOENT => HostError::NotFound,
        libc::ENOTDIR => HostError::NotDir,
        libc::EISDIR => HostError::IsDir,
        libc::EEXIST => HostError::Exists,
        libc::ENOTEMPTY => HostError::NotEmpty,
        libc::EACCES | libc::EPERM => HostError::Access,
        libc::EROFS => HostError::ReadOnly,
        libc::ENOSPC | libc::EDQUOT => HostError::NoSpace,
        libc::EINVAL | libc::ELOOP | libc::ENAMETOOLONG => HostError::Invalid,
        _ => HostError::Io,
    }
}

fn kind_of(mode: u32) -> HostFileKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => HostFileKind::File,
        libc::S_IFDIR => HostFileKind::Dir,
        libc::S_IFLNK => HostFileKind::Symlink,
        _ => HostFileKind::Other,
    }
}

/// A single path component that stays in its directory.
fn component(name: &str) -> Result<CString, HostError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.len() > 255 {
        return Err(HostError::Invalid);
    }
    CString::new(name).map_err(|_| HostError::Invalid)
}

fn fstatat(dir: RawFd, name: &CString, flags: i32) -> Result<libc::stat, HostError> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` a valid out pointer.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, flags) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(st)
}

fn openat(dir: RawFd, name: &CString, flags: i32, mode: u32) -> Result<OwnedFd, HostError> {
    // SAFETY: `name` is NUL-terminated; the returned fd is checked and owned below.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl HostExport {
    /// Export host directory `dir` (read-only unless `writable`).
    pub fn open(dir: &Path, writable: bool) -> io::Result<HostExport> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `c` is NUL-terminated; the fd is checked and owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut handles = HashMap::new();
        handles.insert(1, Entry { fd, kind: HostFileKind::Dir, listing: Vec::new() });
        Ok(HostExport { handles, next: 2, readonly: !writable })
    }

    fn entry(&mut self, h: u64) -> Result<&mut Entry, HostError> {
        self.handles.get_mut(&h).ok_or(HostError::Stale)
    }

    fn dir_fd(&mut self, h: u64) -> Result<RawFd, HostError> {
        let e = self.entry(h)?;
        if e.kind != HostFileKind::Dir {
            return Err(HostError::NotDir);
        }
        Ok(e.fd.as_raw_fd())
    }

    fn add(&mut self, fd: OwnedFd, kind: HostFileKind) -> u64 {
        let h = self.next;
        self.next += 1;
        self.handles.insert(h, Entry { fd, kind, listing: Vec::new() });
        h
    }

    fn open_child(&mut self, dir: RawFd, name: &CString) -> Result<u64, HostError> {
        let st = fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)?;
        let kind = kind_of(st.st_mode);
        let fd = match kind {
            HostFileKind::Dir => openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?,
            HostFileKind::File if !self.readonly => {
                openat(dir, name, libc::O_RDWR, 0).or_else(|_| openat(dir, name, libc::O_RDONLY, 0))?
            }
            HostFileKind::File => openat(dir, name, libc::O_RDONLY, 0)?,
            // Links and special files: a path-only fd (never followed, never opened for I/O).
            HostFileKind::Symlink | HostFileKind::Other => openat(dir, name, libc::O_PATH, 0)?,
        };
        Ok(self.add(fd, kind))
    }

    fn check_rw(&self) -> Result<(), HostError> {
        if self.readonly {
            Err(HostError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl HostDir for HostExport {
    fn root(&self) -> u64 {
        1
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn lookup(&mut self, dir: u64, name: &str) -> Result<u64, HostError> {
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        self.open_child(d, &c)
    }

    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        let fd = self.entry(handle)?.fd.as_raw_fd();
        let empty = CString::default();
        let st = fstatat(fd, &empty, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)?;
        let ns = |s: i64, n: i64| (s.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(n.max(0) as u64);
        Ok(HostAttr {
            kind: kind_of(st.st_mode),
            perm: st.st_mode & 0o7777,
            size: st.st_size.max(0) as u64,
            nlink: st.st_nlink as u32,
            ino: st.st_ino,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            atime_ns: ns(st.st_atime, st.st_atime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        })
    }

    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        let e = self.entry(handle)?;
        match e.kind {
            HostFileKind::File => {}
            HostFileKind::Dir => return Err(HostError::IsDir),
            _ => return Err(HostError::Invalid),
        }
        let off = i64::try_from(off).map_err(|_| HostError::Invalid)?;
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::pread(e.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if n < 0 {
            return Err(last_err());
        }
        Ok(n as usize)
    }

    fn write(&mut self, handle: u64, off: u64, data: &[u8]) -> Result<usize, HostError> {
        self.check_rw()?;
        let e = self.entry(handle)?;
        match e.kind {
            HostFileKind::File => {}
            HostFileKind::Dir => return Err(HostError::IsDir),
            _ => return Err(HostError::Invalid),
        }
        let off = i64::try_from(off).map_err(|_| HostError::Invalid)?;
        // SAFETY: `data` is valid for `data.len()` bytes of reads.
        let n = unsafe { libc::pwrite(e.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), off) };
        if n < 0 {
            return Err(last_err());
        }
        Ok(n as usize)
    }

    fn readdir(&mut self, dir: u64, index: usize, name: &mut [u8]) -> Result<Option<(usize, HostFileKind)>, HostError> {
        let fd = self.dir_fd(dir)?;
        let e = self.entry(dir)?;
        if index == 0 {
            // The listing goes through the fd's own directory (the /proc magic
            // link names exactly the open directory, wherever it is now).
            let rd = std::fs::read_dir(format!("/proc/self/fd/{fd}")).map_err(|e| map_err(&e))?;
            let mut v = Vec::new();
            for ent in rd.flatten() {
                let kind = ent.file_type().map_or(HostFileKind::Other, |t| {
                    if t.is_dir() {
                        HostFileKind::Dir
                    } else if t.is_symlink() {
                        HostFileKind::Symlink
                    } else if t.is_file() {
                        HostFileKind::File
                    } else {
                        HostFileKind::Other
                    }
                });
                v.push((ent.file_name().as_encoded_bytes().to_vec(), kind));
            }
            v.sort_by(|a, b| a.0.cmp(&b.0));
            e.listing = v;
        }
        Ok(e.listing.get(index).map(|(n, k)| {
            let l = n.len().min(name.len());
            name[..l].copy_from_slice(&n[..l]);
            (n.len(), *k)
        }))
    }

    fn readlink(&mut self, handle: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        let e = self.entry(handle)?;
        if e.kind != HostFileKind::Symlink {
            return Err(HostError::Invalid);
        }
        let empty = CString::default();
        // SAFETY: `empty` is NUL-terminated and `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::readlinkat(e.fd.as_raw_fd(), empty.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(last_err());
        }
        Ok(n as usize)
    }

    fn create(&mut self, dir: u64, name: &str, perm: u32) -> Result<u64, HostError> {
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        let fd = openat(d, &c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, perm & 0o7777)?;
        Ok(self.add(fd, HostFileKind::File))
    }

    fn mkdir(&mut self, dir: u64, name: &str, perm: u32) -> Result<u64, HostError> {
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::mkdirat(d, c.as_ptr(), perm & 0o7777) } < 0 {
            return Err(last_err());
        }
        self.open_child(d, &c)
    }

    fn unlink(&mut self, dir: u64, name: &str, is_dir: bool) -> Result<(), HostError> {
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::unlinkat(d, c.as_ptr(), flags) } < 0 {
            return Err(last_err());
        }
        Ok(())
    }

    fn truncate(&mut self, handle: u64, len: u64) -> Result<(), HostError> {
        self.check_rw()?;
        let e = self.entry(handle)?;
        if e.kind != HostFileKind::File {
            return Err(HostError::Invalid);
        }
        let len = i64::try_from(len).map_err(|_| HostError::Invalid)?;
        // SAFETY: plain fd call.
        if unsafe { libc::ftruncate(e.fd.as_raw_fd(), len) } < 0 {
            return Err(last_err());
        }
        Ok(())
    }

    fn release(&mut self, handle: u64) {
        if handle != 1 {
            self.handles.remove(&handle);
        }
    }

    fn statfs(&mut self) -> Option<(u64, u64)> {
        let fd = self.entry(1).ok()?.fd.as_raw_fd();
        // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is the export's open directory and `st` a valid out pointer.
        if unsafe { libc::fstatvfs(fd, &mut st) } < 0 {
            return None;
        }
        let bsize = (st.f_frsize as u64).max(1);
        Some((st.f_blocks as u64 * bsize / 4096, st.f_bavail as u64 * bsize / 4096))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hostfs-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(d.join("export/sub")).unwrap();
        std::fs::write(d.join("secret"), b"outside").unwrap();
        std::fs::write(d.join("export/a.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink("../secret", d.join("export/escape")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("export/abs")).unwrap();
        d
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    }

    #[test]
    fn confined_and_readonly() {
        let d = scratch();
        let mut x = HostExport::open(&d.join("export"), false).unwrap();
        let root = x.root();
        for bad in ["..", ".", "", "sub/..", "/etc", "a/b"] {
            assert_eq!(x.lookup(root, bad), Err(HostError::Invalid), "{bad}");
        }
        let a = x.lookup(root, "a.txt").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(x.read(a, 0, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(x.write(a, 0, b"x"), Err(HostError::ReadOnly));
        assert_eq!(x.create(root, "new", 0o644), Err(HostError::ReadOnly));
        assert_eq!(x.unlink(root, "a.txt", false), Err(HostError::ReadOnly));
        // Symlinks are links, never followed: reading through them fails.
        let l = x.lookup(root, "escape").unwrap();
        assert_eq!(x.getattr(l).unwrap().kind, HostFileKind::Symlink);
        assert_eq!(x.read(l, 0, &mut buf), Err(HostError::Invalid));
        assert_eq!(x.lookup(l, "x"), Err(HostError::NotDir));
        let n = x.readlink(l, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"../secret");
        let sub = x.lookup(root, "sub").unwrap();
        assert_eq!(x.lookup(sub, ".."), Err(HostError::Invalid));
        let mut names = Vec::new();
        let mut i = 0;
        while let Some((len, _)) = x.readdir(root, i, &mut buf).unwrap() {
            names.push(String::from_utf8_lossy(&buf[..len.min(16)]).into_owned());
            i += 1;
        }
        assert_eq!(names, ["a.txt", "abs", "escape", "sub"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writable_export() {
        let d = scratch();
        let mut x = HostExport::open(&d.join("export"), true).unwrap();
        let root = x.root();
        let f = x.create(root, "new.txt", 0o644).unwrap();
        assert_eq!(x.write(f, 0, b"data"), Ok(4));
        assert_eq!(std::fs::read(d.join("export/new.txt")).unwrap(), b"data");
        assert_eq!(x.create(root, "new.txt", 0o644), Err(HostError::Exists));
        x.truncate(f, 2).unwrap();
        assert_eq!(x.getattr(f).unwrap().size, 2);
        let s = x.mkdir(root, "dir", 0o755).unwrap();
        assert_eq!(x.getattr(s).unwrap().kind, HostFileKind::Dir);
        x.unlink(root, "dir", true).unwrap();
        x.unlink(root, "new.txt", false).unwrap();
        assert!(!d.join("export/new.txt").exists());
        // Writing through a symlink name is impossible: the link is not a file.
        let l = x.lookup(root, "escape").unwrap();
        assert_eq!(x.write(l, 0, b"pwned"), Err(HostError::Invalid));
        assert_eq!(std::fs::read(d.join("secret")).unwrap(), b"outside");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
