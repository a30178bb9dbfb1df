//! The ramfs: directories, regular files, symlinks and device nodes in memory.
#![allow(clippy::arc_with_non_send_sync)] // single-threaded kernel; Arc only because the MM wants Arc<dyn MappedFile>

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

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
}

impl Device {
    /// (major, minor) as Linux numbers them.
    pub fn rdev(self) -> (u32, u32) {
        match self {
            Device::Console | Device::ConsoleErr => (5, 1),
            Device::Null => (1, 3),
            Device::Zero => (1, 5),
            Device::Random => (1, 9),
        }
    }
}

/// What an inode is.
pub enum Kind {
    /// A directory: name -> child.
    Dir(RefCell<BTreeMap<String, InodeRef>>),
    /// A regular file's contents.
    File(RefCell<Vec<u8>>),
    /// A symbolic link's target.
    Symlink(String),
    /// A character device.
    Device(Device),
    /// An anonymous pipe.
    Pipe(PipeBuf),
}

/// Capacity of a pipe, as Linux's default.
pub const PIPE_CAPACITY: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

/// A pipe's buffer and the number of open ends. `gen` changes on every
/// state change, so waiters can tell when to retry.
#[derive(Default)]
pub struct PipeBuf {
    /// Bytes written and not yet read.
    pub data: RefCell<VecDeque<u8>>,
    /// Open read ends.
    pub readers: Cell<u32>,
    /// Open write ends.
    pub writers: Cell<u32>,
    /// Bumped on every read, write and close.
    pub gen: Cell<u64>,
}

impl PipeBuf {
    /// Note a state change.
    pub fn bump(&self) {
        self.gen.set(self.gen.get().wrapping_add(1));
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
}

/// One ramfs inode.
pub struct Inode {
    /// Inode number (unique in this fs).
    pub ino: u64,
    /// Metadata.
    pub meta: RefCell<Meta>,
    /// Type and contents.
    pub kind: Kind,
}

impl Inode {
    /// The `S_IF*` type bits.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir(_) => g::S_IFDIR,
            Kind::File(_) => g::S_IFREG,
            Kind::Symlink(_) => g::S_IFLNK,
            Kind::Device(_) => g::S_IFCHR,
            Kind::Pipe(_) => g::S_IFIFO,
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
        match &self.kind {
            Kind::File(d) => d.borrow().len() as u64,
            Kind::Symlink(t) => t.len() as u64,
            Kind::Pipe(p) => p.data.borrow().len() as u64,
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
            Kind::Pipe(_) => g::DT_FIFO,
        }) as u8
    }
    /// Look up a child of a directory.
    pub fn lookup(&self, name: &str) -> Result<Option<InodeRef>, Errno> {
        match &self.kind {
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
            _ => 0,
        };
        let size = self.size();
        let put = |b: &mut [u8; 144], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(&mut b, 0, &1u64.to_le_bytes()); // st_dev
        put(&mut b, 8, &self.ino.to_le_bytes());
        put(&mut b, 16, &(m.nlink as u64).to_le_bytes());
        put(&mut b, 24, &self.mode().to_le_bytes());
        put(&mut b, 28, &m.uid.to_le_bytes());
        put(&mut b, 32, &m.gid.to_le_bytes());
        put(&mut b, 40, &rdev.to_le_bytes());
        put(&mut b, 48, &size.to_le_bytes());
        put(&mut b, 56, &4096u64.to_le_bytes()); // st_blksize
        put(&mut b, 64, &size.div_ceil(512).to_le_bytes());
        let (s, ns) = (m.mtime_ns / 1_000_000_000, m.mtime_ns % 1_000_000_000);
        for off in [72, 88, 104] {
            put(&mut b, off, &s.to_le_bytes());
            put(&mut b, off + 8, &ns.to_le_bytes());
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

/// The file system: the root and the inode-number counter.
pub struct Fs {
    /// The root directory.
    pub root: InodeRef,
    next_ino: u64,
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

impl Fs {
    /// An empty fs with a root directory (mode 0755).
    pub fn new() -> Fs {
        let root = Arc::new(Inode {
            ino: 1,
            meta: RefCell::new(Meta { perm: 0o755, uid: 0, gid: 0, mtime_ns: 0, nlink: 2 }),
            kind: Kind::Dir(RefCell::new(BTreeMap::new())),
        });
        Fs { root, next_ino: 2 }
    }

    /// A new, unlinked inode.
    pub fn new_inode(&mut self, kind: Kind, perm: u32, mtime_ns: u64) -> InodeRef {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
        Arc::new(Inode {
            ino,
            meta: RefCell::new(Meta { perm: perm & 0o7777, uid: 0, gid: 0, mtime_ns, nlink }),
            kind,
        })
    }

    /// A new empty directory.
    pub fn new_dir(&mut self, perm: u32, mtime_ns: u64) -> InodeRef {
        self.new_inode(Kind::Dir(RefCell::new(BTreeMap::new())), perm, mtime_ns)
    }

    /// Mount the built-in devices at `/dev` (creating it if the root lacks
    /// it; device names there replace what the initramfs had).
    pub fn mount_devfs(&mut self) -> Result<(), Errno> {
        let dev = match self.root.lookup("dev")? {
            Some(d) if d.is_dir() => d,
            _ => {
                let d = self.new_dir(0o755, 0);
                self.root.insert("dev", d.clone())?;
                d
            }
        };
        for (name, device, perm) in [
            ("console", Device::Console, 0o600),
            ("tty", Device::Console, 0o666),
            ("null", Device::Null, 0o666),
            ("zero", Device::Zero, 0o666),
            ("random", Device::Random, 0o666),
            ("urandom", Device::Random, 0o666),
        ] {
            let node = self.new_inode(Kind::Device(device), perm, 0);
            dev.insert(name, node)?;
        }
        Ok(())
    }
}
