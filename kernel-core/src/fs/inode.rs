//! The ramfs: directories, regular files, symlinks and device nodes in memory.
#![allow(clippy::arc_with_non_send_sync)] // single-threaded kernel; Arc only because the MM wants Arc<dyn MappedFile>

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::general as g;

use crate::mm::MappedFile;
use crate::Errno;

/// A shared reference to an inode.
pub type InodeRef = Arc<Inode>;

/// Character devices the kernel provides itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The console, output to the host's stdout.
    Console,
    /// The console, output to the host's stderr (fd 2 of init).
    ConsoleErr,
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/dev/random`, `/dev/urandom`.
    Random,
    /// `/dev/full`: reads zeros, writes fail with `ENOSPC`.
    Full,
}

impl Device {
    /// (major, minor) as Linux numbers them.
    pub fn rdev(self) -> (u32, u32) {
        match self {
            Device::Console | Device::ConsoleErr => (5, 1),
            Device::Null => (1, 3),
            Device::Zero => (1, 5),
            Device::Random => (1, 9),
            Device::Full => (1, 7),
        }
    }
}

/// What an inode is.
pub enum Kind {
    /// A directory: name -> child.
    Dir(RefCell<BTreeMap<String, InodeRef>>),
    /// A regular file's contents.
    File(RefCell<FileData>),
    /// A symbolic link's target.
    Symlink(String),
    /// A character device.
    Device(Device),
    /// A pipe, FIFO, tty, eventfd, timerfd or epoll instance: an object
    /// with its own read/write/poll (see [`crate::wait::FileOps`]).
    Special(crate::wait::SpecialRef),
}

pub use super::pipe::{PIPE_BUF, PIPE_CAPACITY};

/// Read-only bytes that many files can share: the initramfs archive (a
/// `Vec<u8>`, or a host file the backend mapped), which the files unpacked
/// from it point into instead of holding copies.
pub type SharedBytes = Arc<dyn AsRef<[u8]>>;

/// A regular file's contents: its own bytes, or a range of [`SharedBytes`]
/// until the first write (copy on write). Reads see a `[u8]` through
/// `Deref`; `DerefMut` and the growing methods copy a shared range first,
/// so a write never reaches the shared bytes.
#[derive(Default)]
pub struct FileData(Repr);

enum Repr {
    Owned(Vec<u8>),
    Shared { bytes: SharedBytes, start: usize, len: usize },
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Owned(Vec::new())
    }
}

impl FileData {
    /// Empty contents.
    pub fn new() -> FileData {
        FileData(Repr::Owned(Vec::new()))
    }
    /// `bytes[start..start + len]`, shared; `None` if out of range.
    pub fn shared(bytes: SharedBytes, start: usize, len: usize) -> Option<FileData> {
        let end = start.checked_add(len)?;
        if end > (*bytes).as_ref().len() {
            return None;
        }
        Some(FileData(Repr::Shared { bytes, start, len }))
    }
    /// Still pointing into shared bytes (never written since unpacking)?
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared { .. })
    }
    /// The contents as an owned vector, copying shared bytes first.
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Repr::Shared { .. } = self.0 {
            let v = self.as_slice().to_vec();
            self.0 = Repr::Owned(v);
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            // Made owned just above.
            Repr::Shared { .. } => unreachable!(),
        }
    }
    /// The contents.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            // Range checked by `shared`; an AsRef that changes length
            // would read as empty rather than panic.
            Repr::Shared { bytes, start, len } => (**bytes).as_ref().get(*start..*start + *len).unwrap_or(&[]),
        }
    }
    /// Empty the contents (`O_TRUNC`): a shared range is dropped, not copied.
    pub fn clear(&mut self) {
        self.0 = Repr::Owned(Vec::new());
    }
    /// `Vec::resize`; shrinking shared contents copies nothing.
    pub fn resize(&mut self, new_len: usize, value: u8) {
        if let Repr::Shared { len, .. } = &mut self.0 {
            if new_len <= *len {
                *len = new_len;
                return;
            }
        }
        self.to_mut().resize(new_len, value);
    }
}

impl core::ops::Deref for FileData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl core::ops::DerefMut for FileData {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.to_mut()
    }
}

impl From<Vec<u8>> for FileData {
    fn from(v: Vec<u8>) -> FileData {
        FileData(Repr::Owned(v))
    }
}

impl core::fmt::Debug for FileData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FileData({} bytes{})", self.len(), if self.is_shared() { ", shared" } else { "" })
    }
}

/// Mutable metadata.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Permission bits (the type bits are derived from [`Kind`]).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    /// Link count.
    pub nlink: u32,
    /// Access time, ns since the epoch.
    pub atime_ns: u64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: u64,
}

impl Meta {
    /// Fresh metadata: all times `now`, owned by root.
    pub fn new(perm: u32, now: u64, nlink: u32) -> Meta {
        Meta { perm: perm & 0o7777, uid: 0, gid: 0, mtime_ns: now, nlink, atime_ns: now, ctime_ns: now }
    }
}

/// What a file system that keeps its files elsewhere (the host) holds per inode.
pub enum FsData {
    /// A hostfs inode: its backend handle.
    Host(super::hostfs::HostNode),
    /// An overlay directory: its lower directory.
    Overlay(super::overlay::OvlDir),
}

/// One ramfs inode.
pub struct Inode {
    /// Inode number (unique in this fs).
    pub ino: u64,
    /// Metadata.
    pub meta: RefCell<Meta>,
    /// Type and contents.
    pub kind: Kind,
    /// The file system (superblock) it belongs to: `st_dev`, and the unit
    /// of `EXDEV`, `EROFS` and `statfs`.
    pub sb: u32,
    /// The root of the file system mounted on this directory, if any (the
    /// path walk steps onto it, like Linux's `DCACHE_MOUNTED` dentries).
    pub mounted: RefCell<Option<InodeRef>>,
    /// File-system private data (hostfs: the backend handle); `None` for
    /// inodes that live only in memory.
    pub fsdata: Option<FsData>,
}

impl Inode {
    /// The `S_IF*` type bits.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir(_) => g::S_IFDIR,
            Kind::File(_) => g::S_IFREG,
            Kind::Symlink(_) => g::S_IFLNK,
            Kind::Device(_) => g::S_IFCHR,
            Kind::Special(ref s) => s.type_bits(),
        }
    }
    /// Full `st_mode`.
    pub fn mode(&self) -> u32 {
        self.type_bits() | (self.meta.borrow().perm & 0o7777)
    }
    /// Is this a directory?
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }
    /// Size in bytes as `stat` reports it.
    pub fn size(&self) -> u64 {
        if let Some((size, _)) = super::hostfs::file_size(self) {
            return size;
        }
        match &self.kind {
            Kind::File(d) => d.borrow().len() as u64,
            Kind::Symlink(t) => t.len() as u64,
            Kind::Special(s) => s.size(),
            Kind::Dir(_) | Kind::Device(_) => 0,
        }
    }
    /// `d_type` for getdents.
    pub fn dtype(&self) -> u8 {
        (match self.kind {
            Kind::Dir(_) => g::DT_DIR,
            Kind::File(_) => g::DT_REG,
            Kind::Symlink(_) => g::DT_LNK,
            Kind::Device(_) => g::DT_CHR,
            Kind::Special(ref s) if s.type_bits() == g::S_IFIFO => g::DT_FIFO,
            Kind::Special(ref s) if s.type_bits() == g::S_IFSOCK => g::DT_SOCK,
            Kind::Special(_) => g::DT_CHR,
        }) as u8
    }
    /// Look up a child of a directory.
    pub fn lookup(&self, name: &str) -> Result<Option<InodeRef>, Errno> {
        match &self.kind {
            // A hostfs directory asks the host (its map is only a cache).
            Kind::Dir(_) if matches!(self.fsdata, Some(FsData::Host(_))) => super::hostfs::lookup(self, name),
            // An overlay directory: its upper map, then its lower directory.
            Kind::Dir(_) if self.fsdata.is_some() => super::overlay::lookup(self, name),
            Kind::Dir(d) => Ok(d.borrow().get(name).cloned()),
            _ => Err(Errno::ENOTDIR),
        }
    }
    /// Insert (or replace) a child of a directory.
    pub fn insert(&self, name: &str, child: InodeRef) -> Result<(), Errno> {
        match &self.kind {
            Kind::Dir(d) => {
                d.borrow_mut().insert(String::from(name), child);
                Ok(())
            }
            _ => Err(Errno::ENOTDIR),
        }
    }
    /// Any execute bit set (root may exec such a file).
    pub fn executable(&self) -> bool {
        if self.is_dir() {
            return false;
        }
        self.meta.borrow().perm & 0o111 != 0
    }
    /// The `stat` structure, serialized (144 bytes, x86_64 layout).
    pub fn stat_bytes(&self) -> [u8; 144] {
        let m = *self.meta.borrow();
        let mut b = [0u8; 144];
        let rdev = match self.kind {
            Kind::Device(d) => {
                let (maj, min) = d.rdev();
                ((maj as u64) << 8) | min as u64
            }
            Kind::Special(ref s) => {
                let (maj, min) = s.rdev();
                ((maj as u64) << 8) | min as u64
            }
            _ => 0,
        };
        let size = self.size();
        let put = |b: &mut [u8; 144], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(&mut b, 0, &(self.sb as u64).to_le_bytes()); // st_dev
        put(&mut b, 8, &self.ino.to_le_bytes());
        put(&mut b, 16, &(m.nlink as u64).to_le_bytes());
        put(&mut b, 24, &self.mode().to_le_bytes());
        put(&mut b, 28, &m.uid.to_le_bytes());
        put(&mut b, 32, &m.gid.to_le_bytes());
        put(&mut b, 40, &rdev.to_le_bytes());
        put(&mut b, 48, &size.to_le_bytes());
        put(&mut b, 56, &4096u64.to_le_bytes()); // st_blksize
        let blocks = super::hostfs::file_size(self).map_or(size.div_ceil(512), |(_, b)| b);
        put(&mut b, 64, &blocks.to_le_bytes());
        for (off, t) in [(72, m.atime_ns), (88, m.mtime_ns), (104, m.ctime_ns)] {
            put(&mut b, off, &(t / 1_000_000_000).to_le_bytes());
            put(&mut b, off + 8, &(t % 1_000_000_000).to_le_bytes());
        }
        b
    }
}

impl MappedFile for Inode {
    fn size(&self) -> u64 {
        Inode::size(self)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        match &self.kind {
            Kind::File(d) => {
                let d = d.borrow();
                let Ok(off) = usize::try_from(off) else { return 0 };
                if off >= d.len() {
                    return 0;
                }
                let n = buf.len().min(d.len() - off);
                buf[..n].copy_from_slice(&d[off..off + n]);
                n
            }
            _ => 0,
        }
    }
}

/// The VFS: the root (of the root file system), the mount table and the
/// inode-number counter shared by the in-memory file systems.
pub struct Fs {
    /// The root directory.
    pub root: InodeRef,
    next_ino: u64,
    /// Mounted file systems, in mount order (`mounts[0]` is the root).
    pub mounts: Vec<super::mount::Mount>,
    /// Superblocks by id.
    pub sbs: BTreeMap<u32, super::mount::SuperBlock>,
    pub(crate) next_sb: u32,
    pub(crate) next_mnt: u32,
    /// The host directories behind hostfs mounts.
    pub host: super::hostfs::HostCell,
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

/// Superblock id of the root file system.
pub const ROOT_SB: u32 = 1;

impl Fs {
    /// An empty fs whose root (a writable, tmpfs-like `rootfs`) is a
    /// directory of mode 0755.
    pub fn new() -> Fs {
        let root = Arc::new(Inode {
            ino: 1,
            meta: RefCell::new(Meta::new(0o755, 0, 2)),
            kind: Kind::Dir(RefCell::new(BTreeMap::new())),
            sb: ROOT_SB,
            mounted: RefCell::new(None),
            fsdata: None,
        });
        let mut fs = Fs { root: root.clone(), next_ino: 2, mounts: Vec::new(), sbs: BTreeMap::new(), next_sb: ROOT_SB + 1, next_mnt: 1, host: Default::default() };
        fs.sbs.insert(ROOT_SB, super::mount::SuperBlock::new(super::mount::FsType::Rootfs, false));
        fs.mounts.push(super::mount::Mount {
            id: 1,
            parent: 1,
            sb: ROOT_SB,
            source: String::from("rootfs"),
            target: String::from("/"),
            root,
            covered: None,
        });
        fs.next_mnt = 2;
        fs
    }

    /// A fresh inode number.
    pub fn alloc_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// A new, unlinked inode of the root file system.
    pub fn new_inode(&mut self, kind: Kind, perm: u32, mtime_ns: u64) -> InodeRef {
        self.new_inode_in(ROOT_SB, kind, perm, mtime_ns)
    }

    /// A new, unlinked inode of file system `sb`.
    pub fn new_inode_in(&mut self, sb: u32, kind: Kind, perm: u32, now: u64) -> InodeRef {
        let mut ino = self.alloc_ino();
        if self.fstype(sb) == super::mount::FsType::Overlay {
            // Above every number the lower (host) file system hands out.
            ino |= super::overlay::OVL_INO_BASE;
        }
        let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
        Arc::new(Inode { ino, meta: RefCell::new(Meta::new(perm, now, nlink)), kind, sb, mounted: RefCell::new(None), fsdata: None })
    }

    /// A new empty directory.
    pub fn new_dir(&mut self, perm: u32, mtime_ns: u64) -> InodeRef {
        self.new_inode(Kind::Dir(RefCell::new(BTreeMap::new())), perm, mtime_ns)
    }

    /// A new empty directory in file system `sb`.
    pub fn new_dir_in(&mut self, sb: u32, perm: u32, now: u64) -> InodeRef {
        self.new_inode_in(sb, Kind::Dir(RefCell::new(BTreeMap::new())), perm, now)
    }
}
