//! The mount table: superblocks, mounts, attaching a file system root on a
//! directory (the walk then steps onto it), unmounting, and the file
//! systems the kernel mounts itself at boot (`/dev`, `/proc`, `/sys`, `/tmp`).

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::inode::{Device, Fs, Inode, InodeRef, Kind};
use linux_raw_sys::general as g;

/// The `disk` group of Debian and most distributions (owner of `/dev/ubdX`).
const DISK_GID: u32 = 6;
use crate::mm::page_cache::Quota;
use super::path::Loc;
use crate::Errno;

/// The file system types the kernel knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    /// The initial root: the initramfs unpacked into memory (writable).
    Rootfs,
    /// An in-memory file system.
    Tmpfs,
    /// `/dev`.
    Devtmpfs,
    /// `/proc`, generated from kernel state.
    Proc,
    /// `/sys`, a small static tree.
    Sysfs,
    /// A host directory exported through the HAL.
    Hostfs,
    /// A writable overlay over a read-only lower tree.
    Overlay,
    /// ext2/3/4 on a disk (`/dev/ubdX`).
    Ext4,
}

impl FsType {
    /// The name `mount -t` and `/proc/mounts` use.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Rootfs => "rootfs",
            FsType::Tmpfs => "tmpfs",
            FsType::Devtmpfs => "devtmpfs",
            FsType::Proc => "proc",
            FsType::Sysfs => "sysfs",
            FsType::Hostfs => "hostfs",
            FsType::Overlay => "overlay",
            FsType::Ext4 => "ext4",
        }
    }
    /// Parse a `mount -t` type.
    pub fn parse(s: &str) -> Option<FsType> {
        Some(match s {
            "tmpfs" | "ramfs" => FsType::Tmpfs,
            "devtmpfs" => FsType::Devtmpfs,
            "proc" => FsType::Proc,
            "sysfs" => FsType::Sysfs,
            "hostfs" => FsType::Hostfs,
            "ext4" | "ext3" | "ext2" => FsType::Ext4,
            _ => return None,
        })
    }
    /// `f_type` of `statfs` (Linux's magic numbers).
    pub fn magic(self) -> u64 {
        match self {
            FsType::Rootfs | FsType::Tmpfs | FsType::Devtmpfs => 0x0102_1994,
            FsType::Proc => 0x9fa0,
            FsType::Sysfs => 0x6265_6572,
            FsType::Hostfs => 0x00c0_ffee,
            FsType::Overlay => 0x794c_7630,
            FsType::Ext4 => super::ext4::EXT4_MAGIC,
        }
    }
    /// Listed in `/proc/filesystems` with `nodev`?
    pub fn all() -> [FsType; 8] {
        [FsType::Sysfs, FsType::Rootfs, FsType::Tmpfs, FsType::Devtmpfs, FsType::Proc, FsType::Hostfs, FsType::Overlay, FsType::Ext4]
    }
    /// Needs a block device (listed without `nodev`).
    pub fn needs_device(self) -> bool {
        self == FsType::Ext4
    }
}

/// One mounted file system instance.
pub struct SuperBlock {
    /// Its type.
    pub fstype: FsType,
    /// Mounted read-only (`MS_RDONLY`): every change fails with `EROFS`.
    pub readonly: bool,
    /// The size limit of a memory file system (rootfs, tmpfs, devtmpfs):
    /// its files' pages are charged to it (`ENOSPC` when full). Default:
    /// half of guest memory, as Linux's tmpfs.
    pub quota: Option<Rc<Quota>>,
    /// The disk a disk file system is mounted from (released at unmount).
    pub disk: Option<crate::block::DiskRef>,
}

impl SuperBlock {
    /// A superblock of type `fstype`.
    pub fn new(fstype: FsType, readonly: bool) -> SuperBlock {
        let quota = match fstype {
            FsType::Rootfs | FsType::Tmpfs | FsType::Devtmpfs => Some(Quota::new(None)),
            // An overlay's upper layer is guest memory, limited as a tmpfs.
            FsType::Overlay => Some(Quota::new(None)),
            FsType::Proc | FsType::Sysfs | FsType::Hostfs | FsType::Ext4 => None,
        };
        SuperBlock { fstype, readonly, quota, disk: None }
    }
}

/// Parse a tmpfs `size=` value: bytes with an optional `k`/`m`/`g`/`t`
/// suffix, or a percentage of guest memory (`50%`). Returns pages
/// (rounded up); `EINVAL` for anything else.
pub fn parse_size(v: &str, total_frames: u64) -> Result<u64, Errno> {
    let v = v.trim();
    if let Some(pct) = v.strip_suffix('%') {
        let p: u64 = pct.parse().map_err(|_| Errno::EINVAL)?;
        return Ok(total_frames.saturating_mul(p) / 100);
    }
    let (num, mul) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        Some(b't' | b'T') => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    let n: u64 = num.parse().map_err(|_| Errno::EINVAL)?;
    Ok(n.checked_mul(mul).ok_or(Errno::EINVAL)?.div_ceil(crate::mm::PAGE))
}

/// One entry of the mount table.
pub struct Mount {
    /// Mount id (`/proc/self/mountinfo`).
    pub id: u32,
    /// Id of the mount it sits on.
    pub parent: u32,
    /// Its superblock.
    pub sb: u32,
    /// The "device" (`mount`'s first argument).
    pub source: String,
    /// Where it is mounted (canonical path).
    pub target: String,
    /// Root directory of the mounted file system.
    pub root: InodeRef,
    /// The directory it covers (`None` for `/`).
    pub covered: Option<InodeRef>,
}

/// `MS_RDONLY`.
pub const MS_RDONLY: u64 = 1;

impl Fs {
    /// A new superblock id.
    pub fn new_sb(&mut self, fstype: FsType, readonly: bool) -> u32 {
        let id = self.next_sb;
        self.next_sb += 1;
        self.sbs.insert(id, SuperBlock::new(fstype, readonly));
        id
    }

    /// Is file system `sb` mounted read-only?
    pub fn is_readonly(&self, sb: u32) -> bool {
        self.sbs.get(&sb).is_some_and(|s| s.readonly)
    }

    /// `EROFS` if `sb` is read-only.
    pub fn check_writable(&self, sb: u32) -> Result<(), Errno> {
        if self.is_readonly(sb) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// The type of file system `sb`.
    pub fn fstype(&self, sb: u32) -> FsType {
        self.sbs.get(&sb).map_or(FsType::Tmpfs, |s| s.fstype)
    }

    /// Attach the directory `root` (of superblock `sb`) on `target`.
    pub fn attach(&mut self, target: &Loc, root: InodeRef, sb: u32, source: &str) -> Result<u32, Errno> {
        let covered = target.inode().clone();
        if !covered.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if covered.mounted.borrow().is_some() {
            return Err(Errno::EBUSY);
        }
        let parent = self.mounts.iter().rev().find(|m| m.sb == covered.sb).map_or(1, |m| m.id);
        *covered.mounted.borrow_mut() = Some(root.clone());
        let id = self.next_mnt;
        self.next_mnt += 1;
        self.mounts.push(Mount { id, parent, sb, source: String::from(source), target: target.path(), root, covered: Some(covered) });
        Ok(id)
    }

    /// Make `root` (of superblock `sb`) the root file system, as a
    /// switch_root at boot does: the old root is no longer reachable.
    pub fn set_root(&mut self, root: InodeRef, sb: u32, source: &str) {
        self.root = root.clone();
        if let Some(m) = self.mounts.first_mut() {
            m.sb = sb;
            m.root = root;
            m.source = String::from(source);
        }
    }

    /// Create and mount a new instance of `fstype` on `target`.
    pub fn mount_new(&mut self, target: &Loc, fstype: FsType, source: &str, readonly: bool, now: u64) -> Result<u32, Errno> {
        self.mount_new_sized(target, fstype, source, readonly, now, None)
    }

    /// [`Fs::mount_new`] with a size limit in pages (tmpfs `size=`; `None`:
    /// the default, half of guest memory).
    pub fn mount_new_sized(&mut self, target: &Loc, fstype: FsType, source: &str, readonly: bool, now: u64, size: Option<u64>) -> Result<u32, Errno> {
        if matches!(fstype, FsType::Hostfs | FsType::Rootfs | FsType::Overlay | FsType::Ext4) {
            return Err(Errno::ENODEV);
        }
        let sb = self.new_sb(fstype, readonly);
        if let (Some(q), Some(_)) = (self.quota(sb), size) {
            q.set_limit(size);
        }
        let perm = if fstype == FsType::Tmpfs { 0o1777 } else if fstype == FsType::Proc { 0o555 } else { 0o755 };
        let root = self.new_dir_in(sb, perm, now);
        match fstype {
            FsType::Devtmpfs => self.fill_devtmpfs(&root, sb)?,
            FsType::Sysfs => self.fill_sysfs(&root, sb)?,
            _ => {}
        }
        match self.attach(target, root, sb, source) {
            Ok(id) => Ok(id),
            Err(e) => {
                self.sbs.remove(&sb);
                Err(e)
            }
        }
    }

    /// Unmount the file system whose root `target` names. `EINVAL` if it is
    /// not a mount point, `EBUSY` if something is mounted inside it or it is `/`.
    pub fn umount(&mut self, target: &Loc) -> Result<(), Errno> {
        let node = target.inode();
        let idx = self.mounts.iter().rposition(|m| Arc::ptr_eq(&m.root, node)).ok_or(Errno::EINVAL)?;
        let m = &self.mounts[idx];
        let Some(covered) = m.covered.clone() else { return Err(Errno::EBUSY) };
        let (id, sb) = (m.id, m.sb);
        if self.mounts.iter().any(|o| o.parent == id && o.id != id) || Arc::ptr_eq(&self.root, node) {
            return Err(Errno::EBUSY);
        }
        *covered.mounted.borrow_mut() = None;
        self.mounts.remove(idx);
        if !self.mounts.iter().any(|o| o.sb == sb) {
            if let Some(disk) = self.sbs.remove(&sb).and_then(|s| s.disk) {
                disk.release();
            }
        }
        Ok(())
    }

    /// `/proc/mounts` text.
    pub fn mounts_text(&self) -> String {
        let mut s = String::new();
        for m in &self.mounts {
            let ro = if self.is_readonly(m.sb) { "ro" } else { "rw" };
            let fstype = self.fstype(m.sb).name();
            let extra = match self.fstype(m.sb) {
                FsType::Proc | FsType::Sysfs => ",nosuid,nodev,noexec,relatime",
                FsType::Devtmpfs => ",nosuid,relatime,mode=755",
                _ => ",relatime",
            };
            s.push_str(&format!("{} {} {} {}{} 0 0\n", m.source, m.target, fstype, ro, extra));
        }
        s
    }

    /// The superblock id of the mount at `path`, if any.
    pub fn mount_at(&self, path: &str) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.target == path)
    }

    /// The root of the devtmpfs at `/dev` (for drivers that add nodes).
    pub fn dev_root(&self) -> Option<InodeRef> {
        self.mounts.iter().find(|m| self.fstype(m.sb) == FsType::Devtmpfs).map(|m| m.root.clone())
    }

    /// Register a device node `name` (may contain `/`: parent directories
    /// are created) in `/dev`, replacing what was there. This is how the
    /// tty layer adds `ptmx` and `pts/N`.
    pub fn add_dev_node(&mut self, name: &str, kind: Kind, perm: u32) -> Result<InodeRef, Errno> {
        let mut dir = self.dev_root().ok_or(Errno::ENODEV)?;
        let sb = dir.sb;
        let parts: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = parts.split_last().ok_or(Errno::EINVAL)?;
        for d in dirs {
            dir = match dir.lookup(d)? {
                Some(x) if x.is_dir() => x,
                _ => {
                    let x = self.new_dir_in(sb, 0o755, 0);
                    dir.insert(d, x.clone())?;
                    dir.meta.borrow_mut().nlink += 1;
                    x
                }
            };
        }
        let node = self.new_inode_in(sb, kind, perm, 0);
        dir.insert(last, node.clone())?;
        Ok(node)
    }

    /// Remove `/dev/<name>` (a pty going away).
    pub fn remove_dev_node(&mut self, name: &str) -> Result<(), Errno> {
        let mut dir = self.dev_root().ok_or(Errno::ENODEV)?;
        let parts: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = parts.split_last().ok_or(Errno::EINVAL)?;
        for d in dirs {
            dir = dir.lookup(d)?.ok_or(Errno::ENOENT)?;
        }
        match &dir.kind {
            Kind::Dir(c) => c.borrow_mut().remove(*last).map(|_| ()).ok_or(Errno::ENOENT),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn fill_devtmpfs(&mut self, root: &InodeRef, sb: u32) -> Result<(), Errno> {
        for (name, device, perm) in [
            ("console", Device::Console, 0o600),
            ("tty", Device::Console, 0o666),
            ("null", Device::Null, 0o666),
            ("zero", Device::Zero, 0o666),
            ("full", Device::Full, 0o666),
            ("random", Device::Random, 0o666),
            ("urandom", Device::Random, 0o666),
        ] {
            let node = self.new_inode_in(sb, Kind::Device(device), perm, 0);
            root.insert(name, node)?;
        }
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            let node = self.new_inode_in(sb, Kind::Symlink(String::from(target)), 0o777, 0);
            root.insert(name, node)?;
        }
        for d in ["pts", "shm"] {
            let node = self.new_dir_in(sb, if d == "shm" { 0o1777 } else { 0o755 }, 0);
            root.insert(d, node)?;
            root.meta.borrow_mut().nlink += 1;
        }
        for disk in self.disks.all().to_vec() {
            let node = self.block_node(sb, &disk);
            root.insert(&disk.name, node)?;
        }
        Ok(())
    }

    /// A block device node of file system `sb` for `disk` (`brw-rw---- root
    /// disk`): its data is the disk's page cache, which never grows or
    /// shrinks.
    #[allow(clippy::arc_with_non_send_sync)] // single-threaded kernel; Arc only because the MM wants Arc<dyn MappedFile>
    pub fn block_node(&mut self, sb: u32, disk: &crate::block::DiskRef) -> InodeRef {
        let cache = disk.node_cache(&self.caches);
        cache.set_seals(g::F_SEAL_SEAL | g::F_SEAL_GROW | g::F_SEAL_SHRINK);
        let mut meta = super::inode::Meta::new(0o660, 0, 1);
        meta.gid = DISK_GID;
        Arc::new(Inode {
            ino: self.alloc_ino(),
            meta: core::cell::RefCell::new(meta),
            kind: Kind::File(super::inode::FileData::new(cache)),
            sb,
            mounted: core::cell::RefCell::new(None),
            fsdata: Some(super::inode::FsData::Block(disk.clone())),
            charge: Default::default(),
        })
    }

    /// `/sys/block/ubdX/...` and `/sys/dev/block/MAJ:MIN` for each disk
    /// (what `lsblk` and `udev`-less tools read).
    fn fill_sysfs_disks(&mut self, root: &InodeRef, sb: u32) -> Result<(), Errno> {
        let block = root.lookup("block")?.ok_or(Errno::ENOENT)?;
        let dev = root.lookup("dev")?.ok_or(Errno::ENOENT)?;
        let devblock = self.new_dir_in(sb, 0o755, 0);
        dev.insert("block", devblock.clone())?;
        dev.meta.borrow_mut().nlink += 1;
        for disk in self.disks.all().to_vec() {
            let (maj, min) = disk.rdev();
            let d = self.new_dir_in(sb, 0o755, 0);
            block.insert(&disk.name, d.clone())?;
            block.meta.borrow_mut().nlink += 1;
            let q = self.new_dir_in(sb, 0o755, 0);
            d.insert("queue", q.clone())?;
            d.meta.borrow_mut().nlink += 1;
            let files = [
                (&d, "dev", format!("{maj}:{min}\n")),
                (&d, "size", format!("{}\n", disk.size() / 512)),
                (&d, "ro", format!("{}\n", disk.read_only() as u8)),
                (&d, "removable", String::from("0\n")),
                (&d, "uevent", format!("MAJOR={maj}\nMINOR={min}\nDEVNAME={}\nDEVTYPE=disk\n", disk.name)),
                (&q, "logical_block_size", String::from("512\n")),
                (&q, "physical_block_size", String::from("512\n")),
                (&q, "rotational", String::from("0\n")),
            ];
            for (dir, name, text) in files {
                let bytes = text.into_bytes();
                let len = bytes.len();
                let data = self.bytes_file_data(sb, Arc::new(bytes), 0, len);
                let node = self.new_inode_in(sb, Kind::File(data), 0o444, 0);
                dir.insert(name, node)?;
            }
            let link = self.new_inode_in(sb, Kind::Symlink(format!("../../block/{}", disk.name)), 0o777, 0);
            devblock.insert(&format!("{maj}:{min}"), link)?;
        }
        Ok(())
    }

    fn fill_sysfs(&mut self, root: &InodeRef, sb: u32) -> Result<(), Errno> {
        let files: [(&str, &str); 6] = [
            ("kernel/hostname", ""),
            ("devices/system/cpu/online", "0\n"),
            ("devices/system/cpu/possible", "0\n"),
            ("devices/system/cpu/present", "0\n"),
            ("kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n"),
            ("fs/cgroup/.keep", ""),
        ];
        for (path, content) in files {
            let parts: Vec<&str> = path.split('/').collect();
            let Some((last, dirs)) = parts.split_last() else { continue };
            let mut dir = root.clone();
            for d in dirs {
                dir = match dir.lookup(d)? {
                    Some(x) => x,
                    None => {
                        let x = self.new_dir_in(sb, 0o755, 0);
                        dir.insert(d, x.clone())?;
                        dir.meta.borrow_mut().nlink += 1;
                        x
                    }
                };
            }
            if last.starts_with('.') || path == "kernel/hostname" {
                continue;
            }
            let bytes = content.as_bytes().to_vec();
            let len = bytes.len();
            let data = self.bytes_file_data(sb, Arc::new(bytes), 0, len);
            let node = self.new_inode_in(sb, Kind::File(data), 0o444, 0);
            dir.insert(last, node)?;
        }
        for d in ["class", "block", "bus", "dev", "firmware", "module", "power"] {
            let x = self.new_dir_in(sb, 0o755, 0);
            root.insert(d, x)?;
            root.meta.borrow_mut().nlink += 1;
        }
        self.fill_sysfs_disks(root, sb)
    }

    /// Make sure `/<name>` is a directory of the root file system.
    fn ensure_root_dir(&mut self, name: &str, perm: u32) -> Result<Loc, Errno> {
        let root = self.root.clone();
        match root.lookup(name)? {
            Some(d) if d.is_dir() => {}
            _ => {
                let d = self.new_dir(perm, 0);
                root.insert(name, d)?;
                root.meta.borrow_mut().nlink += 1;
            }
        }
        let start = Loc::root(root.clone());
        super::path::walk(&root, &start, name, super::path::Follow::Yes)
    }

    /// Mount what an init would: devtmpfs on `/dev`, proc on `/proc`, sysfs
    /// on `/sys`, tmpfs on `/tmp` and on `/dev/shm` (creating the
    /// directories if missing).
    pub fn mount_boot_filesystems(&mut self) -> Result<(), Errno> {
        for (dir, perm, fstype, source) in [
            ("dev", 0o755, FsType::Devtmpfs, "devtmpfs"),
            ("proc", 0o555, FsType::Proc, "proc"),
            ("sys", 0o555, FsType::Sysfs, "sysfs"),
            ("tmp", 0o1777, FsType::Tmpfs, "tmpfs"),
        ] {
            let loc = self.ensure_root_dir(dir, perm)?;
            self.mount_new(&loc, fstype, source, false, 0)?;
        }
        // POSIX shared memory (shm_open, sem_open, multiprocessing) lives in
        // a tmpfs of its own at /dev/shm, as on Linux.
        let root = self.root.clone();
        let shm = super::path::walk(&root, &Loc::root(root.clone()), "/dev/shm", super::path::Follow::Yes)?;
        self.mount_new(&shm, FsType::Tmpfs, "tmpfs", false, 0)?;
        // Over the host's tree (`--hostfs /:/`, `do`) or a read-only disk, `/run` is the guest's own too.
        if matches!(self.fstype(self.root.sb), FsType::Hostfs | FsType::Overlay | FsType::Ext4) {
            let loc = self.ensure_root_dir("run", 0o755)?;
            self.mount_new(&loc, FsType::Tmpfs, "tmpfs", false, 0)?;
        }
        Ok(())
    }

    /// The boot mounts (kept under its old name, which `kernel::boot` calls).
    pub fn mount_devfs(&mut self) -> Result<(), Errno> {
        self.mount_boot_filesystems()
    }

    /// `statfs` numbers for file system `sb`: (type, total blocks, free
    /// blocks) in pages. A memory file system shows its size limit and the
    /// pages its files hold; proc and sysfs zeros, as Linux. (hostfs and
    /// overlays over the host show the host's own figures instead: see
    /// [`Fs::host_statfs`].)
    pub fn statfs_numbers(&self, sb: u32) -> (u64, u64, u64) {
        let t = self.fstype(sb);
        match t {
            FsType::Proc | FsType::Sysfs | FsType::Hostfs | FsType::Ext4 => (t.magic(), 0, 0),
            _ => match self.quota(sb) {
                // (An unlimited tmpfs shows no size, as Linux's size=0.)
                Some(q) if q.limit(self.caches.total_frames()) != u64::MAX => {
                    let limit = q.limit(self.caches.total_frames());
                    (t.magic(), limit, limit.saturating_sub(q.used()))
                }
                _ => (t.magic(), 0, 0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::path::{walk, walk_parent, Follow};

    #[test]
    fn mounts_are_crossed_both_ways_and_unmount() {
        let mut fs = Fs::new();
        fs.mount_boot_filesystems().unwrap();
        let root = fs.root.clone();
        let r = Loc::root(root.clone());
        let tmp = walk(&root, &r, "/tmp", Follow::Yes).unwrap();
        assert_ne!(tmp.inode().sb, root.sb, "walk steps onto the tmpfs root");
        assert_eq!(tmp.inode().meta.borrow().perm, 0o1777);
        let null = walk(&root, &r, "/dev/null", Follow::Yes).unwrap();
        assert!(matches!(null.inode().kind, Kind::Device(Device::Null)));
        assert_eq!(walk(&root, &r, "/sys/devices/system/cpu/online", Follow::Yes).unwrap().inode().size(), 2);
        // `..` from a mounted root leaves the mount.
        let d = fs.new_dir_in(tmp.inode().sb, 0o755, 0);
        tmp.inode().insert("d", d.clone()).unwrap();
        let up = walk(&root, &r, "/tmp/d/../..", Follow::Yes).unwrap();
        assert!(Arc::ptr_eq(up.inode(), &root));
        assert_eq!(walk(&root, &tmp, "d/../../dev/null", Follow::Yes).unwrap().path(), "/dev/null");
        let (p, n) = walk_parent(&root, &r, "/tmp/d/new").unwrap();
        assert!(Arc::ptr_eq(p.inode(), &d));
        assert_eq!(n, "new");
        let text = fs.mounts_text();
        assert!(text.contains("proc /proc proc rw"), "{text}");
        assert!(text.contains("tmpfs /tmp tmpfs rw"), "{text}");
        // Mount on top of a mount point inside /tmp: /tmp is busy.
        let dloc = walk(&root, &r, "/tmp/d", Follow::Yes).unwrap();
        fs.mount_new(&dloc, FsType::Tmpfs, "inner", true, 0).unwrap();
        let inner = walk(&root, &r, "/tmp/d", Follow::Yes).unwrap();
        assert!(fs.is_readonly(inner.inode().sb));
        assert_eq!(fs.umount(&tmp), Err(Errno::EBUSY));
        assert_eq!(fs.umount(&dloc), Err(Errno::EINVAL), "a plain directory is no mount point");
        fs.umount(&inner).unwrap();
        fs.umount(&tmp).unwrap();
        let tmp2 = walk(&root, &r, "/tmp", Follow::Yes).unwrap();
        assert_eq!(tmp2.inode().sb, root.sb, "the covered directory is back");
        assert_eq!(walk(&root, &r, "/tmp/d", Follow::Yes).err(), Some(Errno::ENOENT));
        assert_eq!(fs.umount(&r), Err(Errno::EBUSY));
        assert_eq!(fs.mount_new(&null, FsType::Tmpfs, "x", false, 0), Err(Errno::ENOTDIR));
    }

    #[test]
    fn device_nodes_can_be_registered() {
        let mut fs = Fs::new();
        fs.mount_boot_filesystems().unwrap();
        fs.add_dev_node("pts/0", Kind::Device(Device::Console), 0o620).unwrap();
        let root = fs.root.clone();
        let r = Loc::root(root.clone());
        assert!(walk(&root, &r, "/dev/pts/0", Follow::Yes).is_ok());
        fs.remove_dev_node("pts/0").unwrap();
        assert_eq!(walk(&root, &r, "/dev/pts/0", Follow::Yes).err(), Some(Errno::ENOENT));
    }
}
