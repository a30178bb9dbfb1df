//! Inodes: directories, regular files (whose data is a page cache in guest
//! frames), symlinks and device nodes; and the VFS root ([`Fs`]).
#![allow(clippy::arc_with_non_send_sync)] // single-threaded kernel; Arc only because the MM wants Arc<dyn MappedFile>

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::PhysMem;
use linux_raw_sys::general as g;

use crate::budget::{BudgetRef, Charge, Kind as Cost};
use crate::mm::page_cache::{Quota, Source};
use crate::mm::{CacheSet, Frames, MappedFile, PageCache};
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
    File(FileData),
    /// A symbolic link's target.
    Symlink(String),
    /// A character device.
    Device(Device),
    /// A pipe, FIFO, tty, eventfd, timerfd or epoll instance: an object
    /// with its own read/write/poll (see [`crate::wait::FileOps`]).
    Special(crate::wait::SpecialRef),
}

pub use super::pipe::{PIPE_BUF, PIPE_CAPACITY};

pub use crate::mm::page_cache::SharedBytes;

/// A regular file's contents: its page cache (see [`crate::mm::page_cache`]).
/// Files unpacked from the initramfs point into the archive until a page is
/// written or mapped; generated files (procfs, sysfs) hold their text the
/// same way; tmpfs files are sparse; hostfs files read the host file.
pub struct FileData(Rc<PageCache>);

impl FileData {
    /// The contents of `cache`.
    pub fn new(cache: Rc<PageCache>) -> FileData {
        FileData(cache)
    }
    /// The page cache.
    pub fn cache(&self) -> &Rc<PageCache> {
        &self.0
    }
    /// Still pointing into shared bytes (never written or mapped since unpacking)?
    pub fn is_shared(&self) -> bool {
        self.0.is_shared_bytes()
    }
    /// The first `max` bytes (fewer at end of file).
    pub fn head(&self, max: usize, frames: &mut Frames, phys: &impl PhysMem) -> Result<Vec<u8>, Errno> {
        let n = usize::try_from(self.0.size()).unwrap_or(usize::MAX).min(max);
        let mut v = alloc::vec![0u8; n];
        let got = self.0.read_to(0, &mut v, frames, phys)?;
        v.truncate(got);
        Ok(v)
    }
}

impl core::ops::Deref for FileData {
    type Target = PageCache;
    fn deref(&self) -> &PageCache {
        &self.0
    }
}

impl core::fmt::Debug for FileData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FileData({} bytes{})", self.0.size(), if self.is_shared() { ", shared" } else { "" })
    }
}

/// The bytes of a whole file, for the ELF parser: the archive's bytes
/// themselves when the file is still those, else a copy.
pub enum FileBytes {
    /// `bytes[start..start + len]`.
    Shared(SharedBytes, usize, usize),
    /// A copy.
    Owned(Vec<u8>),
}

impl FileBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            FileBytes::Shared(b, s, l) => (**b).as_ref().get(*s..*s + *l).unwrap_or(&[]),
            FileBytes::Owned(v) => v,
        }
    }
}

/// A file as exec loads it: the inode (whose page cache the program's
/// mappings share with every other process running it) and its bytes for
/// the ELF parser and the loader, given up once the image is loaded
/// ([`ExecImage::release`]) so that a running program pins no copy.
pub struct ExecImage {
    inode: InodeRef,
    path: String,
    bytes: RefCell<Option<FileBytes>>,
}

impl ExecImage {
    /// The image of regular file `inode` (opened by `path`).
    ///
    /// A file still in the archive is used in place. Another file gets a
    /// buffer of its size in which only what the ELF parser and the loader
    /// read is filled in: the ELF header, the program headers, the
    /// interpreter's path and the file bytes that share a page with a
    /// segment's bss (the buffer is zero-allocated, so the rest costs no
    /// memory on the host). Executables over [`MAX_EXEC_SIZE`]: `ENOMEM`.
    pub fn load(inode: &InodeRef, path: String, frames: &mut Frames, phys: &impl PhysMem) -> Result<Arc<ExecImage>, Errno> {
        let Kind::File(d) = &inode.kind else { return Err(Errno::EACCES) };
        let bytes = match d.shared_bytes() {
            Some((b, s, l)) => FileBytes::Shared(b, s, l),
            // Not ELF: the parser refuses it from its first bytes (ENOEXEC).
            None if !d.head(4, frames, phys)?.starts_with(b"\x7fELF") => FileBytes::Owned(d.head(64, frames, phys)?),
            None => {
                if d.size() > MAX_EXEC_SIZE {
                    return Err(Errno::ENOMEM);
                }
                let mut v = alloc::vec![0u8; d.size() as usize];
                for (start, end) in elf_ranges(d, frames, phys)? {
                    d.read_to(start as u64, &mut v[start..end], frames, phys)?;
                }
                FileBytes::Owned(v)
            }
        };
        Ok(Arc::new(ExecImage { inode: inode.clone(), path, bytes: RefCell::new(Some(bytes)) }))
    }
    /// Run `f` on the file's bytes (empty once released).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &*self.bytes.borrow() {
            Some(b) => f(b.as_slice()),
            None => f(&[]),
        }
    }
    /// Give the bytes up (the image is loaded; mappings use the page cache).
    pub fn release(&self) {
        self.bytes.borrow_mut().take();
    }
    /// The inode.
    pub fn inode(&self) -> &InodeRef {
        &self.inode
    }
}

/// The largest file exec reads (its buffer is as large as the file).
pub const MAX_EXEC_SIZE: u64 = 1 << 30;

/// The byte ranges of an ELF file the parser and the loader read, clipped
/// to the file: the header and the first page, the program header table,
/// each `PT_INTERP` and the tail of each `PT_LOAD` that shares a page with
/// its bss. (Layout: `e_phoff` at 32, `e_phentsize` at 54, `e_phnum` at 56;
/// a 64-bit program header has `p_type` at 0, `p_offset` at 8, `p_filesz`
/// at 32, `p_memsz` at 40. Garbage only makes ranges that the parser then
/// refuses.)
fn elf_ranges(d: &FileData, frames: &mut Frames, phys: &impl PhysMem) -> Result<Vec<(usize, usize)>, Errno> {
    let size = d.size() as usize;
    let clip = |s: u64, len: u64| -> (usize, usize) {
        let s = usize::try_from(s).unwrap_or(usize::MAX).min(size);
        let e = usize::try_from(len).map_or(size, |l| s.saturating_add(l).min(size));
        (s, e)
    };
    let mut ranges = alloc::vec![clip(0, crate::mm::PAGE)];
    let head = d.head(64, frames, phys)?;
    let u64_at = |b: &[u8], o: usize| b.get(o..o + 8).map_or(0, |x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8])));
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map_or(0, |x| u16::from_le_bytes([x[0], x[1]]));
    let (phoff, phentsize, phnum) = (u64_at(&head, 32), u64::from(u16_at(&head, 54)), u64::from(u16_at(&head, 56)));
    if phentsize != 56 || phnum == 0 {
        return Ok(ranges);
    }
    let table = clip(phoff, phnum * 56);
    ranges.push(table);
    let mut t = alloc::vec![0u8; table.1 - table.0];
    d.read_to(table.0 as u64, &mut t, frames, phys)?;
    for ph in t.chunks_exact(56) {
        let (ty, off, filesz, memsz) = (u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]), u64_at(ph, 8), u64_at(ph, 32), u64_at(ph, 40));
        match ty {
            3 => ranges.push(clip(off, filesz.min(4096))),
            1 if memsz > filesz => {
                let end = off.saturating_add(filesz);
                let start = end & !(crate::mm::PAGE - 1);
                ranges.push(clip(start, end - start));
            }
            _ => {}
        }
    }
    Ok(ranges)
}

impl MappedFile for ExecImage {
    fn size(&self) -> u64 {
        self.inode.size()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        self.with_bytes(|b| {
            let Some(src) = usize::try_from(off).ok().and_then(|o| b.get(o..)) else { return 0 };
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            n
        })
    }
    fn page_cache(&self) -> Option<Rc<PageCache>> {
        self.inode.page_cache()
    }
    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
    fn ident(&self) -> (u64, u64) {
        self.inode.ident()
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
    /// A block device node (`/dev/ubdX`): its disk. The node's data is the
    /// disk's page cache (see [`crate::block`]).
    Block(crate::block::DiskRef),
    /// An inode of an ext2/3/4 file system on a disk.
    Ext4(super::ext4::Node),
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
    /// What it and its names cost the guest's budget, for inodes the guest
    /// made (see [`Fs::charged_inode_in`]); empty for the kernel's own.
    pub charge: RefCell<Charge>,
}

impl Inode {
    /// The disk of a block device node.
    pub fn block_disk(&self) -> Option<&crate::block::DiskRef> {
        match &self.fsdata {
            Some(FsData::Block(d)) => Some(d),
            _ => None,
        }
    }
    /// The `S_IF*` type bits.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::File(_) if self.block_disk().is_some() => g::S_IFBLK,
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
        if let Some((size, _)) = self.host_size() {
            return size;
        }
        match &self.kind {
            Kind::File(d) => d.size(),
            Kind::Symlink(t) => t.len() as u64,
            Kind::Special(s) => s.size(),
            Kind::Dir(_) | Kind::Device(_) => 0,
        }
    }
    /// `d_type` for getdents.
    pub fn dtype(&self) -> u8 {
        (match self.kind {
            Kind::File(_) if self.block_disk().is_some() => g::DT_BLK,
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
            Kind::Dir(_) if matches!(self.fsdata, Some(FsData::Ext4(_))) => super::ext4::lookup(self, name),
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
    /// Size and blocks as the host has them: a hostfs inode's (see
    /// `hostfs::file_size`), or the directory an overlay directory shows.
    fn host_size(&self) -> Option<(u64, u64)> {
        match &self.fsdata {
            Some(FsData::Host(_)) => super::hostfs::file_size(self),
            Some(FsData::Overlay(_)) => super::overlay::dir_size(self),
            // `stat` of a block device shows no size (BLKGETSIZE64 does).
            Some(FsData::Block(_)) => None,
            Some(FsData::Ext4(_)) => super::ext4::file_size(self),
            None => None,
        }
    }
    /// `st_blocks`: for a regular file the pages that hold data (holes of a
    /// sparse file cost nothing), else the size in 512-byte units.
    pub fn blocks(&self) -> u64 {
        // A host file or directory: what the host allocated (see there).
        if let Some((_, blocks)) = self.host_size() {
            return blocks;
        }
        match &self.kind {
            Kind::File(d) => d.blocks(),
            _ => self.size().div_ceil(512),
        }
    }
    /// The file's page cache, if it is a regular file.
    pub fn file_data(&self) -> Option<&FileData> {
        match &self.kind {
            Kind::File(d) => Some(d),
            _ => None,
        }
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
            _ => match self.block_disk() {
                Some(d) => {
                    let (maj, min) = d.rdev();
                    ((maj as u64) << 8) | min as u64
                }
                None => 0,
            },
        };
        // A block device node has no size of its own in `stat`.
        let size = if self.block_disk().is_some() { 0 } else { self.size() };
        let put = |b: &mut [u8; 144], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        // st_dev: a disk file system's is its disk's number (init scripts compare them).
        let dev = super::ext4::volume_of(self).map_or(self.sb as u64, |v| {
            let (maj, min) = v.disk().rdev();
            (u64::from(maj) << 8) | u64::from(min)
        });
        put(&mut b, 0, &dev.to_le_bytes()); // st_dev
        put(&mut b, 8, &self.ino.to_le_bytes());
        put(&mut b, 16, &(m.nlink as u64).to_le_bytes());
        put(&mut b, 24, &self.mode().to_le_bytes());
        put(&mut b, 28, &m.uid.to_le_bytes());
        put(&mut b, 32, &m.gid.to_le_bytes());
        put(&mut b, 40, &rdev.to_le_bytes());
        put(&mut b, 48, &size.to_le_bytes());
        put(&mut b, 56, &4096u64.to_le_bytes()); // st_blksize
        put(&mut b, 64, &(if self.block_disk().is_some() { 0 } else { self.blocks() }).to_le_bytes());
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
    /// Only what the source holds (no frames at hand); mappings use the
    /// page cache instead.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        match &self.kind {
            Kind::File(d) => d.read_source(off, buf),
            _ => 0,
        }
    }
    fn page_cache(&self) -> Option<Rc<PageCache>> {
        match &self.kind {
            Kind::File(d) => Some(d.cache().clone()),
            _ => None,
        }
    }
    fn ident(&self) -> (u64, u64) {
        (u64::from(self.sb), self.ino)
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
    /// Every page cache (file data in guest frames).
    pub caches: CacheSet,
    /// The internal file system of `memfd_create` files (never mounted).
    memfd: Option<u32>,
    /// The guest's disks (`/dev/ubdX`).
    pub disks: crate::block::Disks,
    /// The guest's memory budget, which inodes the guest creates are
    /// charged to (none in unit tests).
    pub budget: Option<BudgetRef>,
}

/// What an inode the guest creates costs its budget: the inode, its first
/// name and directory entry (Linux's shmem inode and dentry are about this).
pub const INODE_COST: usize = 1024;
/// What each further name (hard link) costs.
pub const LINK_COST: usize = 320;
// `Fs::unlinked` tells the two apart by this.
const _: () = assert!(INODE_COST % LINK_COST != 0);

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
            charge: Default::default(),
        });
        let mut fs = Fs {
            root: root.clone(),
            next_ino: 2,
            mounts: Vec::new(),
            sbs: BTreeMap::new(),
            next_sb: ROOT_SB + 1,
            next_mnt: 1,
            host: Default::default(),
            caches: CacheSet::new(),
            memfd: None,
            disks: Default::default(),
            budget: None,
        };
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
        Arc::new(Inode { ino, meta: RefCell::new(Meta::new(perm, now, nlink)), kind, sb, mounted: RefCell::new(None), fsdata: None, charge: Default::default() })
    }

    /// [`Fs::new_inode_in`] for an inode a guest asks for: charged to the
    /// guest's budget ([`INODE_COST`]) for as long as it lives (`ENOMEM`
    /// when it is spent, `ENOSPC` on a file system with a size limit, as
    /// Linux's tmpfs when it runs out of inodes).
    pub fn charged_inode_in(&mut self, sb: u32, kind: Kind, perm: u32, now: u64) -> Result<InodeRef, Errno> {
        let charge = self.inode_charge().map_err(|e| if self.quota(sb).is_some() { Errno::ENOSPC } else { e })?;
        let node = self.new_inode_in(sb, kind, perm, now);
        *node.charge.borrow_mut() = charge;
        Ok(node)
    }

    /// An inode with no name (a pipe, a socket, an anonymous file) a guest
    /// asks for, charged like [`Fs::charged_inode_in`]: `ENOMEM` when the
    /// budget is spent.
    pub fn anon_inode(&mut self, kind: Kind, perm: u32, now: u64) -> Result<InodeRef, Errno> {
        let charge = self.inode_charge()?;
        let node = self.new_inode(kind, perm, now);
        *node.charge.borrow_mut() = charge;
        Ok(node)
    }

    fn inode_charge(&self) -> Result<Charge, Errno> {
        match &self.budget {
            Some(b) => Charge::new(b, Cost::Inodes, INODE_COST),
            None => Ok(Charge::none(Cost::Inodes)),
        }
    }

    /// Charge an extra name (hard link) of a guest's inode; given back by
    /// [`Fs::unlinked`].
    pub fn charge_link(&self, node: &InodeRef) -> Result<(), Errno> {
        if self.budget.is_none() {
            return Ok(());
        }
        let mut c = node.charge.borrow_mut();
        if c.bytes() == 0 {
            // One of the kernel's own inodes (or not charged yet): charged
            // from now on, to this budget.
            if let Some(b) = &self.budget {
                *c = Charge::empty(Some(b), Cost::Inodes);
            }
        }
        c.grow(LINK_COST)
    }

    /// A name of `node` went: give back an extra link's charge, if any.
    pub fn unlinked(&self, node: &InodeRef) {
        let mut c = node.charge.borrow_mut();
        // The charge is INODE_COST (a guest's inode) or nothing, plus
        // LINK_COST per extra name; the two never add up to the same sum.
        let base = if c.bytes() % LINK_COST == 0 { 0 } else { INODE_COST };
        if c.bytes() >= base + LINK_COST {
            let left = c.bytes() - LINK_COST;
            let _ = c.resize(left);
        }
    }

    /// The size limit of file system `sb` (tmpfs-like ones), if any.
    pub fn quota(&self, sb: u32) -> Option<Rc<Quota>> {
        self.sbs.get(&sb).and_then(|s| s.quota.clone())
    }

    /// The superblock of `memfd_create` files (made on first use): a
    /// tmpfs that is never mounted and has no size limit but memory.
    pub fn memfd_sb(&mut self) -> u32 {
        if let Some(sb) = self.memfd {
            return sb;
        }
        let sb = self.new_sb(super::mount::FsType::Tmpfs, false);
        if let Some(s) = self.sbs.get_mut(&sb) {
            s.quota = None;
        }
        self.memfd = Some(sb);
        sb
    }

    /// Is `sb` the file system of `memfd_create` files?
    pub fn is_memfd(&self, sb: u32) -> bool {
        self.memfd == Some(sb)
    }

    /// Empty contents for a new regular file of file system `sb` (sparse,
    /// charged to its size limit). Memory files carry `F_SEAL_SEAL`, as
    /// Linux's tmpfs files (only `memfd_create` makes sealable ones).
    pub fn new_file_data(&self, sb: u32) -> FileData {
        let d = FileData::new(PageCache::new(&self.caches, Source::Zero, 0, self.quota(sb)));
        d.set_seals(g::F_SEAL_SEAL);
        d
    }

    /// Contents that are `bytes[start..start + len]` until written (the
    /// initramfs, generated text), for a file of file system `sb`.
    pub fn bytes_file_data(&self, sb: u32, bytes: SharedBytes, start: usize, len: usize) -> FileData {
        let len = len.min((*bytes).as_ref().len().saturating_sub(start));
        let source = Source::Bytes { bytes, start, len: len as u64 };
        let d = FileData::new(PageCache::new(&self.caches, source, 0, self.quota(sb)));
        d.set_seals(g::F_SEAL_SEAL);
        d
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
