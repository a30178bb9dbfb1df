//! hostfs: a host directory exported into the guest ([`hal::HostDir`]).
//!
//! **Confinement.** Every host access starts from a directory descriptor
//! of the export and goes one validated component at a time (never `.`,
//! `..`, empty, or containing `/`), with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`,
//! so no symbolic link is followed on the host and no guest path names a
//! file outside the export. A regular file is opened in two steps: an
//! `O_PATH` descriptor (which opens nothing), checked with `fstat` to be
//! the regular file the handle names, then reopened through its
//! `/proc/self/fd` link, so a FIFO or device node swapped in by a host
//! process is never opened.
//!
//! **A bounded number of host descriptors.** A handle is a node (parent
//! handle, name, host device and inode number), not a descriptor. Looking
//! up and stat'ing use `fstatat` on the parent's descriptor; descriptors
//! are opened when a directory is listed or searched or a file read or
//! written, and kept in an LRU of at most [`DEFAULT_MAX_CACHED_FDS`]. An
//! evicted node is reopened by its name chain from the nearest ancestor
//! that still has a descriptor, each step checked against the recorded
//! device and inode number: a file the host replaced or moved gives
//! [`HostError::Stale`] rather than another file's contents. Files the guest
//! unlinked while it still uses them, and `O_TMPFILE` files, cannot be
//! reopened by name: they keep a pinned descriptor until the kernel
//! releases the handle, at most [`DEFAULT_MAX_PINNED_FDS`] of them
//! (`ENFILE` past that). So the kernel process holds at most
//! `1 + max_cached + max_pinned` descriptors per export, whatever the guest
//! does. (`open_by_handle_at` would avoid the name chains, but it needs
//! `CAP_DAC_READ_SEARCH`, which an unprivileged kernel does not have, and
//! with it a forged handle could name any file of the host file system,
//! outside the export.)

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use hal::{HostAttr, HostDir, HostDirEntry, HostError, HostFileKind, HostSetAttr};

/// Descriptors kept open for recently used files and directories, per export.
pub const DEFAULT_MAX_CACHED_FDS: usize = 256;
/// Descriptors pinned for unlinked-but-used and `O_TMPFILE` files, per export.
pub const DEFAULT_MAX_PINNED_FDS: usize = 256;

/// How a node's descriptor was opened.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    /// A directory, `O_RDONLY | O_DIRECTORY`.
    Dir,
    /// A regular file, read-only.
    Read,
    /// A regular file, read-write.
    Write,
}

struct Node {
    /// Parent handle; 0 for the root and for files no name reaches any more.
    parent: u64,
    name: Vec<u8>,
    /// Host identity, checked at every reopen.
    dev: u64,
    ino: u64,
    kind: HostFileKind,
    fd: Option<(OwnedFd, Mode)>,
    /// The LRU tick of `fd` (0: not in the LRU: the root, pinned files).
    tick: u64,
    pinned: bool,
    /// The kernel still holds this handle.
    held: bool,
    /// Nodes whose `parent` is this one (they need its name chain).
    children: u32,
    /// Directory listing taken when index 0 is read.
    listing: Vec<(Vec<u8>, HostFileKind, u64)>,
}

/// One exported host directory.
pub struct HostExport {
    nodes: HashMap<u64, Node>,
    next: u64,
    readonly: bool,
    /// tick -> handle, oldest first.
    lru: BTreeMap<u64, u64>,
    tick: u64,
    pinned: usize,
    max_cached: usize,
    max_pinned: usize,
    /// Host devices seen, in order; the index is folded into inode numbers.
    devs: Vec<u64>,
}

const ROOT: u64 = 1;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn map_errno(e: i32) -> HostError {
    match e {
        libc::ENOENT => HostError::NotFound,
        libc::ENOTDIR => HostError::NotDir,
        libc::EISDIR => HostError::IsDir,
        libc::EEXIST => HostError::Exists,
        libc::ENOTEMPTY => HostError::NotEmpty,
        libc::EACCES | libc::ETXTBSY => HostError::Access,
        libc::EPERM => HostError::Perm,
        libc::EROFS => HostError::ReadOnly,
        libc::ENOSPC | libc::EDQUOT => HostError::NoSpace,
        libc::EINVAL => HostError::Invalid,
        // A symlink where the handle named something else: a host race.
        libc::ELOOP | libc::ESTALE => HostError::Stale,
        libc::ENAMETOOLONG => HostError::NameTooLong,
        libc::EXDEV => HostError::CrossDevice,
        libc::EBUSY => HostError::Busy,
        libc::EMLINK => HostError::TooManyLinks,
        libc::EFBIG => HostError::TooBig,
        libc::EOPNOTSUPP => HostError::NotSupported,
        libc::EMFILE | libc::ENFILE => HostError::TooManyFiles,
        _ => HostError::Io,
    }
}

fn last_err() -> HostError {
    map_errno(errno())
}

fn kind_of(mode: u32) -> HostFileKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => HostFileKind::File,
        libc::S_IFDIR => HostFileKind::Dir,
        libc::S_IFLNK => HostFileKind::Symlink,
        libc::S_IFIFO => HostFileKind::Fifo,
        libc::S_IFSOCK => HostFileKind::Socket,
        libc::S_IFBLK => HostFileKind::BlockDev,
        _ => HostFileKind::CharDev,
    }
}

fn kind_of_dtype(t: u8) -> Option<HostFileKind> {
    Some(match t {
        libc::DT_REG => HostFileKind::File,
        libc::DT_DIR => HostFileKind::Dir,
        libc::DT_LNK => HostFileKind::Symlink,
        libc::DT_FIFO => HostFileKind::Fifo,
        libc::DT_SOCK => HostFileKind::Socket,
        libc::DT_BLK => HostFileKind::BlockDev,
        libc::DT_CHR => HostFileKind::CharDev,
        _ => return None,
    })
}

/// A single path component that stays in its directory.
fn component(name: &[u8]) -> Result<CString, HostError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(HostError::Invalid);
    }
    if name.len() > 255 {
        return Err(HostError::NameTooLong);
    }
    CString::new(name).map_err(|_| HostError::Invalid)
}

fn new_stat() -> libc::stat {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    unsafe { std::mem::zeroed() }
}

fn fstatat(dir: RawFd, name: &CStr) -> Result<libc::stat, HostError> {
    let mut st = new_stat();
    // SAFETY: `name` is NUL-terminated and `st` a valid out pointer.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(last_err());
    }
    Ok(st)
}

fn fstat(fd: RawFd) -> Result<libc::stat, HostError> {
    let mut st = new_stat();
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(last_err());
    }
    Ok(st)
}

fn own(fd: i32) -> Result<OwnedFd, HostError> {
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: `fd` was just returned by the host and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn openat(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, HostError> {
    // SAFETY: `name` is NUL-terminated; the result is checked by `own`.
    own(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode) })
}

/// Set extended attribute `name` of `fd` to `y` (overlayfs' marks).
fn set_xattr(fd: RawFd, name: &CStr) -> Result<(), HostError> {
    // SAFETY: `name` is NUL-terminated and the value one valid byte.
    if unsafe { libc::fsetxattr(fd, name.as_ptr(), b"y".as_ptr().cast(), 1, 0) } < 0 {
        return Err(last_err());
    }
    Ok(())
}

/// Does `fd` carry extended attribute `name`?
fn has_xattr(fd: RawFd, name: &CStr) -> bool {
    let mut v = [0u8; 4];
    // SAFETY: `name` is NUL-terminated and `v` valid for its length.
    unsafe { libc::fgetxattr(fd, name.as_ptr(), v.as_mut_ptr().cast(), v.len()) >= 0 }
}

/// `rm -rf` of `name` in directory `dir`, one checked component at a time
/// (directories opened with `O_NOFOLLOW`, so no link is followed).
fn remove_tree_at(dir: RawFd, name: &CStr) -> Result<(), HostError> {
    let st = match fstatat(dir, name) {
        Ok(st) => st,
        Err(HostError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let fd = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let list = openat(fd.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // SAFETY: fdopendir takes ownership of the descriptor on success.
        let dp = unsafe { libc::fdopendir(list.as_raw_fd()) };
        if dp.is_null() {
            return Err(last_err());
        }
        std::mem::forget(list);
        let mut names = Vec::new();
        loop {
            // SAFETY: `dp` is a valid open directory stream.
            let ent = unsafe { libc::readdir64(dp) };
            if ent.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let n = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_owned();
            if n.as_bytes() != b"." && n.as_bytes() != b".." {
                names.push(n);
            }
        }
        // SAFETY: `dp` is valid and closed exactly once.
        unsafe { libc::closedir(dp) };
        for n in names {
            remove_tree_at(fd.as_raw_fd(), &n)?;
        }
        // SAFETY: `name` is NUL-terminated.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } < 0 {
            return Err(last_err());
        }
        return Ok(());
    }
    // SAFETY: `name` is NUL-terminated.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } < 0 {
        return Err(last_err());
    }
    Ok(())
}

fn proc_path(fd: RawFd) -> CString {
    // Digits only: no NUL inside.
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

fn ts(ns: i64) -> libc::timespec {
    libc::timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) }
}

impl HostExport {
    /// Export host directory `dir` (read-only unless `writable`).
    pub fn open(dir: &Path, writable: bool) -> io::Result<HostExport> {
        Self::with_limits(dir, writable, DEFAULT_MAX_CACHED_FDS, DEFAULT_MAX_PINNED_FDS)
    }

    /// [`HostExport::open`] with explicit descriptor budgets (at least 4 cached).
    pub fn with_limits(dir: &Path, writable: bool, max_cached: usize, max_pinned: usize) -> io::Result<HostExport> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `c` is NUL-terminated; the fd is checked and owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd()).map_err(|_| io::Error::last_os_error())?;
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: 0,
                name: Vec::new(),
                dev: st.st_dev,
                ino: st.st_ino,
                kind: HostFileKind::Dir,
                fd: Some((fd, Mode::Dir)),
                tick: 0,
                pinned: false,
                held: true,
                children: 0,
                listing: Vec::new(),
            },
        );
        Ok(HostExport {
            nodes,
            next: ROOT + 1,
            readonly: !writable,
            lru: BTreeMap::new(),
            tick: 0,
            pinned: 0,
            max_cached: max_cached.max(4),
            max_pinned,
            devs: vec![st.st_dev],
        })
    }

    /// Nodes the export tracks (the kernel's handles and their ancestors).
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The guest's inode number for host (dev, ino): the export's own
    /// device keeps the host's numbers; other host file systems inside the
    /// export get their device's index folded into the top bits.
    fn guest_ino(&mut self, dev: u64, ino: u64) -> u64 {
        let idx = match self.devs.iter().position(|&d| d == dev) {
            Some(i) => i,
            None => {
                self.devs.push(dev);
                self.devs.len() - 1
            }
        };
        if idx == 0 {
            ino
        } else {
            ino ^ ((idx as u64) << 48)
        }
    }

    fn attr_of(&mut self, st: &libc::stat) -> HostAttr {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        HostAttr {
            kind: kind_of(st.st_mode),
            perm: st.st_mode & 0o7777,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            nlink: st.st_nlink as u32,
            ino: self.guest_ino(st.st_dev, st.st_ino),
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            atime_ns: ns(st.st_atime, st.st_atime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn node(&self, h: u64) -> Result<&Node, HostError> {
        self.nodes.get(&h).ok_or(HostError::Stale)
    }

    fn node_mut(&mut self, h: u64) -> Result<&mut Node, HostError> {
        self.nodes.get_mut(&h).ok_or(HostError::Stale)
    }

    fn check_rw(&self) -> Result<(), HostError> {
        if self.readonly {
            Err(HostError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn touch(&mut self, h: u64) {
        let Some(n) = self.nodes.get_mut(&h) else { return };
        if n.tick == 0 {
            return;
        }
        self.lru.remove(&n.tick);
        self.tick += 1;
        n.tick = self.tick;
        self.lru.insert(self.tick, h);
    }

    /// Give node `h` the descriptor `fd`, in the LRU. Nothing is closed
    /// here: raw descriptors taken earlier in the same operation stay valid
    /// until [`HostExport::trim`] at the start of the next one.
    fn install(&mut self, h: u64, fd: OwnedFd, mode: Mode) {
        let Some(n) = self.nodes.get_mut(&h) else { return };
        if n.tick != 0 {
            self.lru.remove(&n.tick);
        }
        self.tick += 1;
        n.fd = Some((fd, mode));
        n.tick = self.tick;
        self.lru.insert(self.tick, h);
    }

    /// Close the least recently used descriptors down to the budget.
    fn trim(&mut self) {
        while self.lru.len() > self.max_cached {
            let Some((_, victim)) = self.lru.pop_first() else { break };
            if let Some(v) = self.nodes.get_mut(&victim) {
                v.fd = None;
                v.tick = 0;
            }
        }
    }

    /// Open node `h` (whose parent has descriptor `pfd`) afresh, checking it
    /// is still the file it was.
    fn reopen(&self, pfd: RawFd, h: u64, want: Mode) -> Result<(OwnedFd, Mode), HostError> {
        let n = self.node(h)?;
        let name = CString::new(n.name.clone()).map_err(|_| HostError::Invalid)?;
        let same = |st: &libc::stat| st.st_dev == n.dev && st.st_ino == n.ino;
        if want == Mode::Dir {
            let fd = openat(pfd, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| if e == HostError::NotDir { HostError::Stale } else { e })?;
            if !same(&fstat(fd.as_raw_fd())?) {
                return Err(HostError::Stale);
            }
            return Ok((fd, Mode::Dir));
        }
        let path_fd = openat(pfd, &name, libc::O_PATH, 0)?;
        let st = fstat(path_fd.as_raw_fd())?;
        if !same(&st) || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(HostError::Stale);
        }
        self.upgrade(&path_fd, want)
    }

    /// A read or read-write descriptor for the regular file `path_fd` names.
    fn upgrade(&self, path_fd: &OwnedFd, want: Mode) -> Result<(OwnedFd, Mode), HostError> {
        let p = proc_path(path_fd.as_raw_fd());
        let open = |flags: i32| {
            // SAFETY: `p` is NUL-terminated; the result is checked by `own`.
            own(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })
        };
        if !self.readonly {
            match open(libc::O_RDWR) {
                Ok(fd) => return Ok((fd, Mode::Write)),
                Err(e) if want == Mode::Write => return Err(e),
                Err(_) => {}
            }
        }
        if want == Mode::Write {
            return Err(HostError::ReadOnly);
        }
        Ok((open(libc::O_RDONLY)?, Mode::Read))
    }

    /// A descriptor of node `h` good for `want`, reopening it (and the
    /// directories above it) by name where the LRU closed them.
    fn fd_of(&mut self, h: u64, want: Mode) -> Result<RawFd, HostError> {
        // The chain from `h` up to the first node with a usable descriptor.
        let usable = |m: Mode, need: Mode| match need {
            Mode::Dir => m == Mode::Dir,
            Mode::Read => m != Mode::Dir,
            Mode::Write => m == Mode::Write,
        };
        let mut chain = Vec::new();
        let mut cur = h;
        loop {
            let n = self.node(cur)?;
            let need = if cur == h { want } else { Mode::Dir };
            if let Some((fd, m)) = &n.fd {
                if usable(*m, need) {
                    let raw = fd.as_raw_fd();
                    self.touch(cur);
                    if cur == h {
                        return Ok(raw);
                    }
                    break;
                }
            }
            if n.pinned {
                // Unlinked or O_TMPFILE: no name leads to it any more.
                return Err(if want == Mode::Write { HostError::ReadOnly } else { HostError::Stale });
            }
            if n.parent == 0 {
                return Err(HostError::Stale);
            }
            chain.push(cur);
            cur = n.parent;
        }
        while let Some(child) = chain.pop() {
            let pfd = self.node(cur)?.fd.as_ref().map(|(f, _)| f.as_raw_fd()).ok_or(HostError::Stale)?;
            let need = if child == h { want } else { Mode::Dir };
            let (fd, mode) = self.reopen(pfd, child, need)?;
            self.install(child, fd, mode);
            cur = child;
        }
        self.node(h)?.fd.as_ref().map(|(f, _)| f.as_raw_fd()).ok_or(HostError::Stale)
    }

    fn dir_fd(&mut self, h: u64) -> Result<RawFd, HostError> {
        if self.node(h)?.kind != HostFileKind::Dir {
            return Err(HostError::NotDir);
        }
        self.fd_of(h, Mode::Dir)
    }

    /// A new node for `name` in `parent`, identified by `st`.
    fn add_node(&mut self, parent: u64, name: &[u8], st: &libc::stat) -> u64 {
        let h = self.next;
        self.next += 1;
        if parent != 0 {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children += 1;
            }
        }
        self.nodes.insert(
            h,
            Node {
                parent,
                name: name.to_vec(),
                dev: st.st_dev,
                ino: st.st_ino,
                kind: kind_of(st.st_mode),
                fd: None,
                tick: 0,
                pinned: false,
                held: true,
                children: 0,
                listing: Vec::new(),
            },
        );
        h
    }

    /// Drop node `h` and every ancestor only it kept.
    fn collect(&mut self, mut h: u64) {
        while h != ROOT && h != 0 {
            let Some(n) = self.nodes.get(&h) else { return };
            if n.held || n.children > 0 {
                return;
            }
            let Some(n) = self.nodes.remove(&h) else { return };
            if n.tick != 0 {
                self.lru.remove(&n.tick);
            }
            if n.pinned {
                self.pinned -= 1;
            }
            h = n.parent;
            if let Some(p) = self.nodes.get_mut(&h) {
                p.children = p.children.saturating_sub(1);
            }
        }
    }

    /// Move node `h` under `parent` as `name` (0: no name reaches it).
    fn reparent(&mut self, h: u64, parent: u64, name: &[u8]) {
        let Some(n) = self.nodes.get_mut(&h) else { return };
        let old = n.parent;
        n.parent = parent;
        n.name = name.to_vec();
        if parent != 0 {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children += 1;
            }
        }
        if old != 0 {
            if let Some(p) = self.nodes.get_mut(&old) {
                p.children = p.children.saturating_sub(1);
            }
            self.collect(old);
        }
    }

    /// Keep file `h` reachable without a name: a pinned descriptor.
    fn pin(&mut self, h: u64) -> Result<(), HostError> {
        if self.node(h)?.pinned {
            return Ok(());
        }
        if self.pinned >= self.max_pinned {
            return Err(HostError::TooManyFiles);
        }
        let want = if self.readonly { Mode::Read } else { Mode::Write };
        if self.fd_of(h, want).is_err() {
            self.fd_of(h, Mode::Read)?;
        }
        let n = self.node_mut(h)?;
        let t = n.tick;
        n.tick = 0;
        n.pinned = true;
        self.lru.remove(&t);
        self.pinned += 1;
        Ok(())
    }

    /// Undo [`HostExport::pin`] (the unlink it was for failed).
    fn unpin(&mut self, h: u64) {
        let Some(n) = self.nodes.get_mut(&h) else { return };
        if !n.pinned {
            return;
        }
        n.pinned = false;
        self.pinned -= 1;
        if let Some((fd, m)) = n.fd.take() {
            self.install(h, fd, m);
        }
    }

    /// Fresh attributes of `h` through `name` in its parent, checked to be the same file.
    fn stat_by_name(&mut self, h: u64) -> Result<libc::stat, HostError> {
        let (parent, name, dev, ino) = {
            let n = self.node(h)?;
            (n.parent, n.name.clone(), n.dev, n.ino)
        };
        let pfd = self.dir_fd(parent)?;
        let st = fstatat(pfd, &CString::new(name).map_err(|_| HostError::Invalid)?)?;
        if st.st_dev != dev || st.st_ino != ino {
            return Err(HostError::Stale);
        }
        Ok(st)
    }

    fn stat_of(&mut self, h: u64) -> Result<libc::stat, HostError> {
        let n = self.node(h)?;
        if let Some((fd, _)) = &n.fd {
            return fstat(fd.as_raw_fd());
        }
        if n.parent == 0 {
            return Err(HostError::Stale);
        }
        self.stat_by_name(h)
    }

    /// Make `name` in `dir` with `make(dirfd, name)`, then look it up.
    fn make(&mut self, dir: u64, name: &[u8], make: impl FnOnce(RawFd, &CStr) -> i32) -> Result<(u64, HostAttr), HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        if make(d, &c) < 0 {
            return Err(last_err());
        }
        let st = fstatat(d, &c)?;
        let h = self.add_node(dir, name, &st);
        Ok((h, self.attr_of(&st)))
    }
}

impl HostDir for HostExport {
    fn root(&self) -> u64 {
        ROOT
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn lookup(&mut self, dir: u64, name: &[u8]) -> Result<(u64, HostAttr), HostError> {
        self.trim();
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        let st = fstatat(d, &c)?;
        let h = self.add_node(dir, name, &st);
        Ok((h, self.attr_of(&st)))
    }

    fn revalidate(&mut self, dir: u64, name: &[u8], handle: u64) -> Result<HostAttr, HostError> {
        self.trim();
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        let st = fstatat(d, &c)?;
        let n = self.node(handle)?;
        if st.st_dev != n.dev || st.st_ino != n.ino {
            return Err(HostError::Stale);
        }
        Ok(self.attr_of(&st))
    }

    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        self.trim();
        let st = self.stat_of(handle)?;
        Ok(self.attr_of(&st))
    }

    fn open(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        self.trim();
        if self.node(handle)?.kind != HostFileKind::File {
            return self.getattr(handle);
        }
        // The descriptor reads and writes will use (it stays while the LRU
        // keeps it): a rename over the name on the host does not change
        // which file an open guest file reads.
        let st = match self.fd_of(handle, Mode::Read) {
            Ok(fd) => fstat(fd)?,
            // Not readable by the kernel process (a write-only file): the
            // guest's open may still be for writing; reads will fail then.
            Err(HostError::Access) => self.stat_of(handle)?,
            Err(e) => return Err(e),
        };
        Ok(self.attr_of(&st))
    }

    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        self.trim();
        match self.node(handle)?.kind {
            HostFileKind::File => {}
            HostFileKind::Dir => return Err(HostError::IsDir),
            _ => return Err(HostError::Invalid),
        }
        let off = i64::try_from(off).map_err(|_| HostError::Invalid)?;
        let fd = self.fd_of(handle, Mode::Read)?;
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
        if n < 0 {
            return Err(last_err());
        }
        Ok(n as usize)
    }

    fn write(&mut self, handle: u64, off: u64, data: &[u8]) -> Result<usize, HostError> {
        self.trim();
        self.check_rw()?;
        match self.node(handle)?.kind {
            HostFileKind::File => {}
            HostFileKind::Dir => return Err(HostError::IsDir),
            _ => return Err(HostError::Invalid),
        }
        let off = i64::try_from(off).map_err(|_| HostError::Invalid)?;
        let fd = self.fd_of(handle, Mode::Write)?;
        // SAFETY: `data` is valid for `data.len()` bytes of reads.
        let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off) };
        if n < 0 {
            return Err(last_err());
        }
        Ok(n as usize)
    }

    fn readdir(&mut self, dir: u64, index: usize, name: &mut [u8]) -> Result<Option<HostDirEntry>, HostError> {
        self.trim();
        if index == 0 {
            let d = self.dir_fd(dir)?;
            // A descriptor of its own ("." of the directory itself, so no
            // name is resolved again) for the listing.
            let fd = openat(d, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            // SAFETY: fdopendir takes ownership of the descriptor on success.
            let dp = unsafe { libc::fdopendir(fd.as_raw_fd()) };
            if dp.is_null() {
                return Err(last_err());
            }
            std::mem::forget(fd);
            let mut v = Vec::new();
            let mut failed = None;
            loop {
                // SAFETY: errno is thread-local; cleared to tell end from error.
                unsafe { *libc::__errno_location() = 0 };
                // SAFETY: `dp` is a valid open directory stream.
                let ent = unsafe { libc::readdir64(dp) };
                if ent.is_null() {
                    let e = errno();
                    if e != 0 {
                        failed = Some(e);
                    }
                    break;
                }
                // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
                let (nm, dtype, ino) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec(), (*ent).d_type, (*ent).d_ino) };
                if nm == b"." || nm == b".." {
                    continue;
                }
                let kind = match kind_of_dtype(dtype) {
                    Some(k) => k,
                    None => match fstatat(d, &CString::new(nm.clone()).unwrap_or_default()) {
                        Ok(st) => kind_of(st.st_mode),
                        Err(_) => continue, // gone meanwhile
                    },
                };
                v.push((nm, kind, ino));
            }
            // SAFETY: `dp` is valid and closed exactly once.
            unsafe { libc::closedir(dp) };
            // A directory removed while it was listed ends the listing early
            // (Linux gives what it read); other errors are the host's.
            if let Some(e) = failed {
                if e != libc::ENOENT {
                    return Err(map_errno(e));
                }
            }
            v.sort_by(|a, b| a.0.cmp(&b.0));
            let dev = self.node(dir)?.dev;
            for e in &mut v {
                e.2 = self.guest_ino(dev, e.2);
            }
            self.node_mut(dir)?.listing = v;
        }
        let n = self.node_mut(dir)?;
        match n.listing.get(index) {
            Some((nm, kind, ino)) => {
                let l = nm.len().min(name.len());
                name[..l].copy_from_slice(&nm[..l]);
                Ok(Some(HostDirEntry { name_len: nm.len(), kind: *kind, ino: *ino }))
            }
            None => {
                n.listing = Vec::new();
                Ok(None)
            }
        }
    }

    fn readlink(&mut self, handle: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        self.trim();
        let (parent, name) = {
            let n = self.node(handle)?;
            if n.kind != HostFileKind::Symlink {
                return Err(HostError::Invalid);
            }
            (n.parent, CString::new(n.name.clone()).map_err(|_| HostError::Invalid)?)
        };
        let d = self.dir_fd(parent)?;
        // SAFETY: `name` is NUL-terminated and `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::readlinkat(d, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(last_err());
        }
        // The name may have been swapped meanwhile: the target read must be this link's.
        self.stat_by_name(handle)?;
        Ok(n as usize)
    }

    fn create(&mut self, dir: u64, name: &[u8], perm: u32) -> Result<(u64, HostAttr), HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        // O_EXCL with O_CREAT never follows a symlink.
        let fd = openat(d, &c, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, perm & 0o7777)?;
        let st = fstat(fd.as_raw_fd())?;
        let h = self.add_node(dir, name, &st);
        self.install(h, fd, Mode::Write);
        Ok((h, self.attr_of(&st)))
    }

    fn mkdir(&mut self, dir: u64, name: &[u8], perm: u32) -> Result<(u64, HostAttr), HostError> {
        // SAFETY: `c` is NUL-terminated.
        self.make(dir, name, |d, c| unsafe { libc::mkdirat(d, c.as_ptr(), perm & 0o7777) })
    }

    fn symlink(&mut self, dir: u64, name: &[u8], target: &[u8]) -> Result<(u64, HostAttr), HostError> {
        let t = CString::new(target).map_err(|_| HostError::Invalid)?;
        // SAFETY: both strings are NUL-terminated.
        self.make(dir, name, |d, c| unsafe { libc::symlinkat(t.as_ptr(), d, c.as_ptr()) })
    }

    fn tmpfile(&mut self, dir: u64, perm: u32) -> Result<(u64, HostAttr), HostError> {
        self.trim();
        self.check_rw()?;
        if self.pinned >= self.max_pinned {
            return Err(HostError::TooManyFiles);
        }
        let d = self.dir_fd(dir)?;
        let fd = openat(d, c".", libc::O_TMPFILE | libc::O_RDWR, perm & 0o7777).map_err(|e| match e {
            HostError::IsDir | HostError::Invalid => HostError::NotSupported,
            e => e,
        })?;
        let st = fstat(fd.as_raw_fd())?;
        let h = self.add_node(0, b"", &st);
        let n = self.node_mut(h)?;
        n.fd = Some((fd, Mode::Write));
        n.pinned = true;
        self.pinned += 1;
        Ok((h, self.attr_of(&st)))
    }

    fn link(&mut self, handle: u64, dir: u64, name: &[u8]) -> Result<HostAttr, HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let kind = self.node(handle)?.kind;
        if kind == HostFileKind::Dir {
            return Err(HostError::Perm);
        }
        if kind == HostFileKind::File {
            // Through the open file itself (works for unnamed files too).
            let fd = self.fd_of(handle, Mode::Read)?;
            let p = proc_path(fd);
            let d = self.dir_fd(dir)?;
            // SAFETY: both strings are NUL-terminated.
            if unsafe { libc::linkat(libc::AT_FDCWD, p.as_ptr(), d, c.as_ptr(), libc::AT_SYMLINK_FOLLOW) } < 0 {
                return Err(last_err());
            }
        } else {
            let (parent, old) = {
                let n = self.node(handle)?;
                (n.parent, CString::new(n.name.clone()).map_err(|_| HostError::Invalid)?)
            };
            let od = self.dir_fd(parent)?;
            let d = self.dir_fd(dir)?;
            // SAFETY: both strings are NUL-terminated; flags 0 follows no link.
            if unsafe { libc::linkat(od, old.as_ptr(), d, c.as_ptr(), 0) } < 0 {
                return Err(last_err());
            }
        }
        let n = self.node(handle)?;
        if n.pinned && n.parent == 0 {
            // An O_TMPFILE or unlinked file has a name again.
            self.reparent(handle, dir, name);
            self.unpin(handle);
        }
        self.getattr(handle)
    }

    fn unlink(&mut self, dir: u64, name: &[u8], is_dir: bool, keep: Option<u64>) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        // Pin first, while the name still reaches it. A full pin budget
        // does not fail the unlink: the guest's descriptor goes stale.
        let pinned = match keep {
            Some(k) if !is_dir && self.node(k).is_ok_and(|n| n.kind == HostFileKind::File) => self.pin(k).is_ok(),
            _ => false,
        };
        let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::unlinkat(d, c.as_ptr(), flags) } < 0 {
            let e = last_err();
            if let Some(k) = keep.filter(|_| pinned) {
                self.unpin(k);
            }
            return Err(e);
        }
        if let Some(k) = keep {
            if self.nodes.get(&k).is_some_and(|n| n.parent == dir && n.name == name) {
                self.reparent(k, 0, b"");
            }
        }
        Ok(())
    }

    fn rename(
        &mut self,
        olddir: u64,
        old: &[u8],
        newdir: u64,
        new: &[u8],
        flags: u32,
        moved: Option<u64>,
        other: Option<u64>,
    ) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        if flags & !3 != 0 || flags == 3 {
            return Err(HostError::Invalid);
        }
        let oc = component(old)?;
        let nc = component(new)?;
        let exchange = flags & 2 != 0;
        // A replaced file the guest still uses stays readable.
        let pinned = match other {
            Some(o) if !exchange && self.node(o).is_ok_and(|n| n.kind == HostFileKind::File) => self.pin(o).is_ok(),
            _ => false,
        };
        let od = self.dir_fd(olddir)?;
        let nd = self.dir_fd(newdir)?;
        // SAFETY: both names are NUL-terminated; renameat2 follows no link.
        let r = unsafe { libc::syscall(libc::SYS_renameat2, od, oc.as_ptr(), nd, nc.as_ptr(), flags) };
        if r < 0 {
            let e = last_err();
            if let Some(o) = other.filter(|_| pinned) {
                self.unpin(o);
            }
            return Err(e);
        }
        if let Some(o) = other {
            if exchange {
                self.reparent(o, olddir, old);
            } else if self.nodes.get(&o).is_some_and(|n| n.parent == newdir && n.name == new) {
                self.reparent(o, 0, b"");
            }
        }
        if let Some(m) = moved {
            self.reparent(m, newdir, new);
        }
        Ok(())
    }

    fn setattr(&mut self, handle: u64, a: &HostSetAttr) -> Result<HostAttr, HostError> {
        self.trim();
        self.check_rw()?;
        let kind = self.node(handle)?.kind;
        let times = (a.atime_ns.is_some() || a.mtime_ns.is_some()).then(|| {
            let omit = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT };
            [a.atime_ns.map_or(omit, ts), a.mtime_ns.map_or(omit, ts)]
        });
        let owner = (a.uid.is_some() || a.gid.is_some()).then(|| (a.uid.unwrap_or(u32::MAX), a.gid.unwrap_or(u32::MAX)));
        match kind {
            HostFileKind::File | HostFileKind::Dir => {
                let fd = self.fd_of(handle, if kind == HostFileKind::Dir { Mode::Dir } else { Mode::Read })?;
                if let Some((u, g)) = owner {
                    // SAFETY: plain call on a descriptor we own.
                    if unsafe { libc::fchown(fd, u, g) } < 0 {
                        return Err(last_err());
                    }
                }
                if let Some(p) = a.perm {
                    // SAFETY: plain call on a descriptor we own.
                    if unsafe { libc::fchmod(fd, p & 0o7777) } < 0 {
                        return Err(last_err());
                    }
                }
                if let Some(t) = times {
                    // SAFETY: `t` is two valid timespecs.
                    if unsafe { libc::futimens(fd, t.as_ptr()) } < 0 {
                        return Err(last_err());
                    }
                }
            }
            _ => {
                // Links and special files: by name, never following a link
                // (symlinks have no mode of their own: EOPNOTSUPP as Linux).
                if a.perm.is_some() && kind == HostFileKind::Symlink {
                    return Err(HostError::NotSupported);
                }
                let (parent, name) = {
                    let n = self.node(handle)?;
                    (n.parent, CString::new(n.name.clone()).map_err(|_| HostError::Invalid)?)
                };
                self.stat_by_name(handle)?;
                let d = self.dir_fd(parent)?;
                if let Some((u, g)) = owner {
                    // SAFETY: `name` is NUL-terminated.
                    if unsafe { libc::fchownat(d, name.as_ptr(), u, g, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
                        return Err(last_err());
                    }
                }
                if let Some(p) = a.perm {
                    // A path descriptor, changed through its /proc link: the
                    // very node, never a link's target.
                    let pf = openat(d, &name, libc::O_PATH, 0)?;
                    let st = fstat(pf.as_raw_fd())?;
                    let n = self.node(handle)?;
                    if st.st_dev != n.dev || st.st_ino != n.ino || st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        return Err(HostError::Stale);
                    }
                    let pp = proc_path(pf.as_raw_fd());
                    // SAFETY: `pp` is NUL-terminated.
                    if unsafe { libc::chmod(pp.as_ptr(), p & 0o7777) } < 0 {
                        return Err(last_err());
                    }
                }
                if let Some(t) = times {
                    // SAFETY: `name` is NUL-terminated, `t` two valid timespecs.
                    if unsafe { libc::utimensat(d, name.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0 {
                        return Err(last_err());
                    }
                }
            }
        }
        self.getattr(handle)
    }

    fn truncate(&mut self, handle: u64, len: u64) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        if self.node(handle)?.kind != HostFileKind::File {
            return Err(HostError::Invalid);
        }
        let len = i64::try_from(len).map_err(|_| HostError::Invalid)?;
        let fd = self.fd_of(handle, Mode::Write)?;
        // SAFETY: plain fd call.
        if unsafe { libc::ftruncate(fd, len) } < 0 {
            return Err(last_err());
        }
        Ok(())
    }

    fn fsync(&mut self, handle: u64, data_only: bool) -> Result<(), HostError> {
        self.trim();
        let kind = self.node(handle)?.kind;
        let fd = match kind {
            HostFileKind::Dir => self.fd_of(handle, Mode::Dir)?,
            HostFileKind::File => self.fd_of(handle, Mode::Read)?,
            _ => return Ok(()),
        };
        // SAFETY: plain fd calls.
        let r = unsafe { if data_only { libc::fdatasync(fd) } else { libc::fsync(fd) } };
        if r < 0 {
            return Err(last_err());
        }
        Ok(())
    }

    fn statfs(&mut self) -> Result<[u64; 6], HostError> {
        self.trim();
        let fd = self.fd_of(ROOT, Mode::Dir)?;
        // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `s` is a valid out pointer.
        if unsafe { libc::fstatvfs(fd, &mut s) } < 0 {
            return Err(last_err());
        }
        Ok([s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree])
    }

    fn whiteout(&mut self, dir: u64, name: &[u8]) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::mknodat(d, c.as_ptr(), libc::S_IFCHR, 0) } == 0 {
            return Ok(());
        }
        if errno() != libc::EPERM {
            return Err(last_err());
        }
        let fd = openat(d, &c, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0)?;
        set_xattr(fd.as_raw_fd(), c"user.overlay.whiteout")?;
        // overlayfs looks for userxattr whiteouts only in marked directories.
        set_xattr(d, c"user.overlay.whiteouts")
    }

    fn is_whiteout(&mut self, handle: u64) -> bool {
        self.trim();
        let Ok(n) = self.node(handle) else { return false };
        match n.kind {
            HostFileKind::CharDev => self.stat_of(handle).is_ok_and(|st| st.st_rdev == 0),
            HostFileKind::File => {
                if !self.stat_of(handle).is_ok_and(|st| st.st_size == 0) {
                    return false;
                }
                let Ok(fd) = self.fd_of(handle, Mode::Read) else { return false };
                has_xattr(fd, c"trusted.overlay.whiteout") || has_xattr(fd, c"user.overlay.whiteout")
            }
            _ => false,
        }
    }

    fn set_opaque(&mut self, dir: u64) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        let d = self.dir_fd(dir)?;
        set_xattr(d, c"trusted.overlay.opaque").or_else(|_| set_xattr(d, c"user.overlay.opaque"))
    }

    fn is_opaque(&mut self, dir: u64) -> bool {
        self.trim();
        let Ok(d) = self.dir_fd(dir) else { return false };
        has_xattr(d, c"trusted.overlay.opaque") || has_xattr(d, c"user.overlay.opaque")
    }

    fn remove_tree(&mut self, dir: u64, name: &[u8]) -> Result<(), HostError> {
        self.trim();
        self.check_rw()?;
        let c = component(name)?;
        let d = self.dir_fd(dir)?;
        remove_tree_at(d, &c)
    }

    fn release(&mut self, handle: u64) {
        if handle == ROOT {
            return;
        }
        if let Some(n) = self.nodes.get_mut(&handle) {
            n.held = false;
        }
        self.collect(handle);
    }

    fn open_fds(&self) -> usize {
        1 + self.lru.len() + self.pinned
    }
}

#[cfg(test)]
mod tests;
