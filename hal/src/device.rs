//! Device channels.

/// Which console output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The result of a non-blocking console read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRead {
    /// This many bytes were read.
    Data(usize),
    /// Nothing available now; readiness comes back as
    /// [`crate::Interrupts::CONSOLE`].
    WouldBlock,
    /// End of input (host stdin closed).
    Eof,
}

/// The console: host stdin/stdout/stderr on real backends.
pub trait Console {
    /// Write all of `data` to `stream`.
    fn write(&mut self, stream: ConsoleStream, data: &[u8]);
    /// Read what is available without blocking.
    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead;
    /// Is the host side an interactive terminal (then the guest's line
    /// discipline echoes input and translates output, and the host terminal
    /// is in raw mode)? When it is not (pipes, files), the console passes
    /// bytes through untranslated and does not echo. Default: not a terminal.
    fn is_terminal(&self) -> bool {
        false
    }
    /// The host terminal's current window size (rows, columns), if known.
    /// The kernel checks it when console interrupts arrive; a backend that
    /// sees the host window change (`SIGWINCH`) should report
    /// [`crate::Interrupts::CONSOLE`] so the guest gets its `SIGWINCH`.
    fn window_size(&self) -> Option<(u16, u16)> {
        None
    }
}

/// The kind of a host file, as [`HostDir::getattr`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed by the backend).
    Symlink,
    /// Anything else (device, FIFO, socket): visible but not openable.
    Other,
}

/// Attributes of a host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostAttr {
    /// What it is.
    pub kind: HostFileKind,
    /// Permission bits (`0o7777` part of `st_mode`).
    pub perm: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Host inode number (stable while the file exists).
    pub ino: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    /// Access time, ns since the epoch.
    pub atime_ns: u64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: u64,
}

/// Why a host-directory operation failed, as the guest should see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// No such entry (`ENOENT`).
    NotFound,
    /// Not a directory (`ENOTDIR`).
    NotDir,
    /// Is a directory (`EISDIR`).
    IsDir,
    /// Already exists (`EEXIST`).
    Exists,
    /// Directory not empty (`ENOTEMPTY`).
    NotEmpty,
    /// Permission denied by the host (`EACCES`).
    Access,
    /// The export is read-only (`EROFS`).
    ReadOnly,
    /// A name that would leave the export (`..`, `/`, NUL) or an invalid
    /// argument (`EINVAL`).
    Invalid,
    /// No space left on the host (`ENOSPC`).
    NoSpace,
    /// A stale or unknown handle (`EBADF`-like; the guest sees `ESTALE`/`EIO`).
    Stale,
    /// Any other host failure (`EIO`).
    Io,
}

/// A host directory exported into the guest (UML's hostfs idea).
///
/// Files are named by opaque handles the backend hands out; handle
/// [`HostDir::root`] is the exported directory itself. Names passed in are
/// single path components: the backend must refuse `.`, `..`, empty names
/// and names with `/`, must never follow a symbolic link, and must keep
/// every access beneath the exported directory. A read-only export fails
/// every change with [`HostError::ReadOnly`].
pub trait HostDir {
    /// The handle of the exported directory.
    fn root(&self) -> u64;
    /// Is the export read-only?
    fn readonly(&self) -> bool;
    /// Look `name` up in directory `dir`; a new handle for it.
    fn lookup(&mut self, dir: u64, name: &str) -> Result<u64, HostError>;
    /// Attributes of `handle`.
    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError>;
    /// Read up to `buf.len()` bytes at `off` of file `handle`.
    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError>;
    /// Write `data` at `off` of file `handle`; returns the bytes written.
    fn write(&mut self, handle: u64, off: u64, data: &[u8]) -> Result<usize, HostError>;
    /// Entry number `index` of directory `dir` (`.` and `..` excluded):
    /// its name is copied into `name` (truncated to its length) and
    /// `(name length, kind)` returned; `None` past the end.
    fn readdir(&mut self, dir: u64, index: usize, name: &mut [u8]) -> Result<Option<(usize, HostFileKind)>, HostError>;
    /// The target of symbolic link `handle`, copied into `buf`; its length.
    fn readlink(&mut self, handle: u64, buf: &mut [u8]) -> Result<usize, HostError>;
    /// Create regular file `name` (permission `perm`) in `dir`; its handle.
    fn create(&mut self, dir: u64, name: &str, perm: u32) -> Result<u64, HostError>;
    /// Create directory `name` in `dir`; its handle.
    fn mkdir(&mut self, dir: u64, name: &str, perm: u32) -> Result<u64, HostError>;
    /// Remove `name` from `dir` (a directory when `is_dir`).
    fn unlink(&mut self, dir: u64, name: &str, is_dir: bool) -> Result<(), HostError>;
    /// Set the size of file `handle`.
    fn truncate(&mut self, handle: u64, len: u64) -> Result<(), HostError>;
    /// Forget `handle` (the kernel holds it no longer).
    fn release(&mut self, handle: u64);
    /// Size and free space of the host file system holding the export, in
    /// 4 KiB blocks (the guest's `statfs`/`df`); `None` if unknown.
    fn statfs(&mut self) -> Option<(u64, u64)> {
        None
    }
}
