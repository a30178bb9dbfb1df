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
    /// A FIFO: listed and stat'ed, never opened on the host.
    Fifo,
    /// A socket: listed and stat'ed, never opened on the host.
    Socket,
    /// A character device: listed and stat'ed, never opened on the host.
    CharDev,
    /// A block device: listed and stat'ed, never opened on the host.
    BlockDev,
}

impl HostFileKind {
    /// A device, FIFO or socket (the guest may see it but never open it).
    pub fn is_special(self) -> bool {
        !matches!(self, HostFileKind::File | HostFileKind::Dir | HostFileKind::Symlink)
    }
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
    /// 512-byte blocks allocated on the host (`st_blocks`).
    pub blocks: u64,
    /// Link count.
    pub nlink: u32,
    /// Inode number, unique within the export while the file exists (the
    /// backend folds the host device in when an export spans several).
    pub ino: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node (`st_rdev`), else 0.
    pub rdev: u64,
    /// Modification time, ns since the epoch (negative before 1970).
    pub mtime_ns: i64,
    /// Access time, ns since the epoch.
    pub atime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
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
    /// Operation not permitted by the host (`EPERM`: chown by a
    /// non-owner, link of a directory, ...).
    Perm,
    /// The export is read-only (`EROFS`).
    ReadOnly,
    /// A name that would leave the export (`..`, `/`, NUL) or an invalid
    /// argument (`EINVAL`).
    Invalid,
    /// No space left on the host (`ENOSPC`).
    NoSpace,
    /// The handle no longer names the file it named: the host removed or
    /// replaced it (`ESTALE`).
    Stale,
    /// The two names are on different host file systems (`EXDEV`).
    CrossDevice,
    /// Busy (`EBUSY`), e.g. renaming a host mount point.
    Busy,
    /// A name or path too long for the host (`ENAMETOOLONG`).
    NameTooLong,
    /// Too many links (`EMLINK`).
    TooManyLinks,
    /// File too large for the host (`EFBIG`).
    TooBig,
    /// Not supported by the host file system (`EOPNOTSUPP`).
    NotSupported,
    /// The export's budget of host descriptors is spent on files the guest
    /// keeps open (`ENFILE`).
    TooManyFiles,
    /// Any other host failure (`EIO`).
    Io,
}

/// What [`HostDir::setattr`] changes; `None` leaves a field as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSetAttr {
    /// New permission bits.
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time (ns since the epoch).
    pub atime_ns: Option<i64>,
    /// New modification time (ns since the epoch).
    pub mtime_ns: Option<i64>,
}

/// One entry of a host directory listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostDirEntry {
    /// Length of the name (copied into the caller's buffer, truncated to it).
    pub name_len: usize,
    /// What it is.
    pub kind: HostFileKind,
    /// Its inode number, as [`HostAttr::ino`] would report it.
    pub ino: u64,
}

/// A host directory exported into the guest (UML's hostfs idea).
///
/// Files are named by opaque handles the backend hands out; handle
/// [`HostDir::root`] is the exported directory itself. Names passed in are
/// single path components (any bytes but `/` and NUL): the backend must
/// refuse `.`, `..`, empty names and names with `/`, must never follow a
/// symbolic link, and must keep every access beneath the exported
/// directory. A read-only export fails every change with
/// [`HostError::ReadOnly`].
///
/// A handle does not have to hold a host resource: the backend may close
/// what it holds for a handle and reach the file again later, as long as it
/// is still the same file (else [`HostError::Stale`]). The kernel releases
/// every handle it no longer needs with [`HostDir::release`].
pub trait HostDir {
    /// The handle of the exported directory.
    fn root(&self) -> u64;
    /// Is the export read-only?
    fn readonly(&self) -> bool;
    /// Look `name` up in directory `dir`: a new handle and its attributes.
    fn lookup(&mut self, dir: u64, name: &[u8]) -> Result<(u64, HostAttr), HostError>;
    /// Does `name` in `dir` still name the file of `handle` (same inode)?
    /// Its fresh attributes if so; [`HostError::Stale`] if the name now
    /// names another file, [`HostError::NotFound`] if it is gone.
    fn revalidate(&mut self, dir: u64, name: &[u8], handle: u64) -> Result<HostAttr, HostError>;
    /// Attributes of `handle`.
    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError>;
    /// The guest opens regular file `handle`: the backend may open the host
    /// file now (so that reads of an open file keep reaching the file it
    /// named at open, even if the host renames another over its name).
    /// Returns its fresh attributes.
    fn open(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        self.getattr(handle)
    }
    /// Read up to `buf.len()` bytes at `off` of file `handle`.
    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError>;
    /// Write `data` at `off` of file `handle`; returns the bytes written.
    fn write(&mut self, handle: u64, off: u64, data: &[u8]) -> Result<usize, HostError>;
    /// Entry number `index` of directory `dir` (`.` and `..` excluded):
    /// its name is copied into `name` (truncated to its length); `None`
    /// past the end. Index 0 takes a fresh listing, later indexes read it.
    fn readdir(&mut self, dir: u64, index: usize, name: &mut [u8]) -> Result<Option<HostDirEntry>, HostError>;
    /// The target of symbolic link `handle`, copied into `buf`; its length.
    fn readlink(&mut self, handle: u64, buf: &mut [u8]) -> Result<usize, HostError>;
    /// Create regular file `name` (permission `perm`) in `dir`.
    fn create(&mut self, dir: u64, name: &[u8], perm: u32) -> Result<(u64, HostAttr), HostError>;
    /// Create directory `name` in `dir`.
    fn mkdir(&mut self, dir: u64, name: &[u8], perm: u32) -> Result<(u64, HostAttr), HostError>;
    /// Create symbolic link `name` in `dir` pointing at `target`.
    fn symlink(&mut self, dir: u64, name: &[u8], target: &[u8]) -> Result<(u64, HostAttr), HostError>;
    /// A new unnamed regular file in directory `dir` (`O_TMPFILE`); it
    /// lives while its handle does, unless [`HostDir::link`] names it.
    fn tmpfile(&mut self, dir: u64, perm: u32) -> Result<(u64, HostAttr), HostError>;
    /// Give file `handle` the new name `name` in `dir` (a hard link).
    fn link(&mut self, handle: u64, dir: u64, name: &[u8]) -> Result<HostAttr, HostError>;
    /// Remove `name` from `dir` (a directory when `is_dir`). `keep`: the
    /// handle of the file the name named, when the guest still uses it
    /// (an open file): the backend keeps it readable and writable until
    /// that handle is released.
    fn unlink(&mut self, dir: u64, name: &[u8], is_dir: bool, keep: Option<u64>) -> Result<(), HostError>;
    /// `renameat2(olddir, old, newdir, new, flags)` with Linux's
    /// `RENAME_NOREPLACE` (1) and `RENAME_EXCHANGE` (2). `moved`: the handle
    /// of the file `old` names, `other` that of the file `new` named (both
    /// keep naming their files afterwards).
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &mut self,
        olddir: u64,
        old: &[u8],
        newdir: u64,
        new: &[u8],
        flags: u32,
        moved: Option<u64>,
        other: Option<u64>,
    ) -> Result<(), HostError>;
    /// Change the metadata of `handle` (chmod, chown, utimensat).
    fn setattr(&mut self, handle: u64, attr: &HostSetAttr) -> Result<HostAttr, HostError>;
    /// Set the size of file `handle`.
    fn truncate(&mut self, handle: u64, len: u64) -> Result<(), HostError>;
    /// Flush file `handle` to the host's storage (`fsync`, or `fdatasync`
    /// when `data_only`).
    fn fsync(&mut self, handle: u64, data_only: bool) -> Result<(), HostError>;
    /// `statfs` of the host file system: (block size, total blocks, free
    /// blocks, available blocks, total inodes, free inodes).
    fn statfs(&mut self) -> Result<[u64; 6], HostError>;
    /// Create a whiteout `name` in `dir` as Linux's overlayfs stores one in
    /// an upper directory: a character device 0/0, or where the host
    /// refuses that (no `CAP_MKNOD`), an empty file with the
    /// `user.overlay.whiteout` attribute (overlayfs' `userxattr` format).
    fn whiteout(&mut self, dir: u64, name: &[u8]) -> Result<(), HostError> {
        let _ = (dir, name);
        Err(HostError::NotSupported)
    }
    /// Is `handle` an overlayfs whiteout (either format)?
    fn is_whiteout(&mut self, handle: u64) -> bool {
        let _ = handle;
        false
    }
    /// Mark directory `dir` opaque (`trusted.overlay.opaque` or, where the
    /// host refuses that, `user.overlay.opaque`).
    fn set_opaque(&mut self, dir: u64) -> Result<(), HostError> {
        let _ = dir;
        Err(HostError::NotSupported)
    }
    /// Is directory `dir` marked opaque?
    fn is_opaque(&mut self, dir: u64) -> bool {
        let _ = dir;
        false
    }
    /// Remove `name` from `dir` and, for a directory, everything below it.
    fn remove_tree(&mut self, dir: u64, name: &[u8]) -> Result<(), HostError> {
        let _ = (dir, name);
        Err(HostError::NotSupported)
    }
    /// Forget `handle` (the kernel holds it no longer).
    fn release(&mut self, handle: u64);
    /// Host descriptors held now (for tests and `/proc` diagnostics).
    fn open_fds(&self) -> usize {
        0
    }
}
