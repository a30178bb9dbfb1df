//! ext4 (and ext2/ext3) on a disk, read-only for now.
//!
//! A [`Volume`] is one mounted file system: its superblock figures and its
//! disk. Metadata (group descriptors, inode tables, extent and directory
//! blocks) is read through the disk's buffer cache
//! ([`crate::block::Disk::read_meta`]); file data goes straight from the
//! disk into each file's page cache, one batched request per run of
//! contiguous blocks (a [`FileStore`] is the page cache's store), so a
//! `read`, an `mmap` and `exec` of a file on disk share its pages.
//!
//! VFS inodes are made as names are looked up: a directory's children map
//! caches what lookups found (the disk cannot change under a read-only
//! mount), and listings are read from the directory blocks without making
//! inodes. Directories with an htree index are read linearly (the index
//! blocks look like empty entries to a linear reader, by ext4's design);
//! a directory's names are read whole at its first lookup and kept in a
//! map, so later lookups do not scan it (the hashed htree lookup itself is
//! not implemented).
//!
//! Everything read from the disk is checked before use: a corrupt or
//! hostile image gives `EUCLEAN` (Linux's `EFSCORRUPTED`) and one kernel
//! log line (`EXT4-fs error (device ubdX): ...`), never a panic; walks of
//! extent trees and block maps are bounded in depth and size.

#![allow(clippy::arc_with_non_send_sync)] // single-threaded kernel; Arc only because the MM wants Arc<dyn MappedFile>

pub mod allocator;
pub mod csum;
pub mod layout;
mod write;

pub use write::{create, fsync, is_ext4, link, rename, set_size, unlink, write_bytes, NewKind};

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use alloc::sync::Weak;
use core::cell::{Cell, RefCell};

use linux_raw_sys::general as g;

use super::inode::{FileData, Fs, FsData, Inode, InodeRef, Kind, Meta};
use super::mount::FsType;
use super::path::Loc;
use crate::block::DiskRef;
use crate::mm::page_cache::{Source, Store};
use crate::mm::{CacheSet, PageCache};
use crate::Errno;
use layout::{incompat, Extent, RawInode, Super};

/// `statfs` magic of ext2/3/4.
pub const EXT4_MAGIC: u64 = 0xef53;
/// Longest symlink target read (Linux's `PATH_MAX`).
const MAX_SYMLINK: u64 = 4096;
/// Most extents one file may map (bounds a hostile tree's memory).
const MAX_EXTENTS: usize = 1 << 20;
/// Largest directory read (bounds a hostile directory's memory).
const MAX_DIR_BYTES: u64 = 256 << 20;
/// Most extent-tree blocks read for one file (a hostile tree can point
/// many index entries at one child: the walk must stay bounded).
const MAX_TREE_BLOCKS: u32 = 1 << 16;
/// Work bound of an ext2/3 map walk: each pointer followed counts 1, each
/// indirect block read counts its pointers (a file of 128 GiB with 4 KiB
/// blocks fits; a hostile map that points everywhere at one block does not
/// run for ever).
const MAX_POINTERS: u64 = 1 << 26;

/// One mounted ext2/3/4 file system.
pub struct Volume {
    disk: DiskRef,
    sb: Super,
    /// The VFS superblock id.
    vfs_sb: u32,
    caches: CacheSet,
    /// The allocator of a read-write mount (`None`: read-only).
    alloc: RefCell<Option<allocator::Alloc>>,
    /// Live VFS inodes by number, so a file has one inode however it is
    /// reached (hard links) and sync finds what changed.
    icache: RefCell<BTreeMap<u32, Weak<Inode>>>,
    /// While read-write: every live inode, held until unmount, so that
    /// metadata the VFS changed (owner, mode, times, links) is written at
    /// the next sync even if nothing else holds the inode any more.
    pinned: RefCell<BTreeMap<u32, InodeRef>>,
    /// The latest time a caller told us (for `dtime` of inodes freed at drop).
    now: Cell<u64>,
}

/// A shared volume.
pub type VolumeRef = Rc<Volume>;

/// What the driver keeps of one inode (shared by its VFS node and its
/// page cache's store).
pub struct NodeState {
    /// The on-disk inode bytes (fields this driver does not know are kept).
    bytes: Vec<u8>,
    /// What they say, as last written or read.
    raw: RawInode,
    /// The block map, once read (files: at open; directories: at first use).
    map: Option<BlockMap>,
    /// The extent tree's blocks below the root.
    tree: Vec<u64>,
    /// Unlinked for good: freed when the last reference goes.
    deleted: bool,
    /// Changed since it was last written.
    dirty: bool,
}

/// What an ext4 VFS inode carries.
pub struct Node {
    vol: VolumeRef,
    ino: u32,
    st: Rc<RefCell<NodeState>>,
    /// A directory listing being read by `getdents` (kept until its end).
    listing: RefCell<Option<Vec<(String, u64, u8)>>>,
    /// A directory's names and inode numbers, read whole at its first
    /// lookup (the mount is read-only, so it cannot go stale): each later
    /// lookup costs a map search, not a scan of the directory's blocks.
    index: RefCell<Option<BTreeMap<Vec<u8>, u32>>>,
}

/// How a file's logical blocks map to the disk: extents (sorted by logical
/// block), or for ext2/3 files their block pointers resolved the same way.
type BlockMap = Vec<Extent>;

impl Volume {
    /// Read and check the superblock of `disk`; `vfs_sb` is the VFS id.
    pub fn open(disk: DiskRef, vfs_sb: u32, caches: CacheSet) -> Result<VolumeRef, Errno> {
        let mut b = vec![0u8; 1024];
        disk.read_meta(layout::SB_OFFSET, &mut b)?;
        let name = disk.name.clone();
        let Some(sb) = Super::parse(&b) else {
            disk.report(&format!("EXT4-fs ({name}): VFS: Can't find ext4 filesystem"));
            return Err(Errno::EINVAL);
        };
        let vol = Rc::new(Volume {
            disk,
            sb,
            vfs_sb,
            caches,
            alloc: RefCell::new(None),
            icache: RefCell::new(BTreeMap::new()),
            pinned: RefCell::new(BTreeMap::new()),
            now: Cell::new(0),
        });
        let unknown = vol.sb.incompat & !(incompat::SUPPORTED | incompat::RECOVER);
        if vol.sb.incompat & incompat::RECOVER != 0 {
            // Read-only, as the journal is not replayed: what it holds is missing.
            vol.report("the journal needs recovery (run e2fsck on the host); reading the file system as it is");
        }
        if unknown != 0 {
            vol.report(&format!("unsupported incompatible features {unknown:#x}"));
            return Err(Errno::EINVAL);
        }
        if vol.sb.blocks_count.saturating_mul(vol.sb.block_size) > vol.disk.size() {
            vol.report(&format!("{} blocks do not fit on the {}-byte device {name}", vol.sb.blocks_count, vol.disk.size()));
            return Err(Errno::EUCLEAN);
        }
        Ok(vol)
    }

    /// Log an error about the disk's contents (one kernel log line).
    fn report(&self, what: &str) {
        self.disk.report(&format!("EXT4-fs error (device {}): {what}", self.disk.name));
    }

    /// Log a corruption; the guest gets `EUCLEAN` (`EFSCORRUPTED`).
    fn corrupt(&self, what: &str) -> Errno {
        self.report(what);
        Errno::EUCLEAN
    }

    /// The disk.
    pub fn disk(&self) -> &DiskRef {
        &self.disk
    }

    /// `statfs` figures: (block size, blocks, free, available to users,
    /// inodes, free inodes).
    pub fn statfs(&self) -> [u64; 6] {
        let s = &self.sb;
        let (fb, fi) = self.free_counts().unwrap_or((s.free_blocks, u64::from(s.free_inodes)));
        let free = fb.min(s.blocks_count);
        [s.block_size, s.blocks_count, free, free.saturating_sub(s.r_blocks_count), u64::from(s.inodes_count), fi.min(u64::from(s.inodes_count))]
    }

    fn read_block_meta(&self, blk: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if blk == 0 || blk >= self.sb.blocks_count {
            return Err(self.corrupt(&format!("block {blk} is outside the file system")));
        }
        self.disk.read_meta(blk * self.sb.block_size, buf)
    }

    /// The block holding group `group`'s descriptor, and its offset there.
    fn desc_location(&self, group: u64) -> (u64, u64) {
        let bs = self.sb.block_size;
        let per_block = bs / u64::from(self.sb.desc_size);
        let first = u64::from(self.sb.first_data_block) + 1;
        let meta_bg = self.sb.incompat & incompat::META_BG != 0;
        let blk_index = group / per_block;
        if meta_bg && blk_index >= u64::from(self.sb.first_meta_bg) {
            // The descriptor block of a meta group is in its first group (at
            // the start, after a superblock backup if that group has one).
            let first_group = blk_index * per_block;
            let base = u64::from(self.sb.first_data_block) + first_group * u64::from(self.sb.blocks_per_group);
            let backup = first_group == 0 || layout::has_super_backup(first_group);
            return (base + backup as u64, (group % per_block) * u64::from(self.sb.desc_size));
        }
        (first + blk_index, (group % per_block) * u64::from(self.sb.desc_size))
    }

    /// The first block of group `group`'s inode table.
    fn inode_table(&self, group: u64) -> Result<u64, Errno> {
        let (blk, off) = self.desc_location(group);
        let mut d = vec![0u8; self.sb.desc_size as usize];
        if blk >= self.sb.blocks_count {
            return Err(self.corrupt(&format!("group {group}'s descriptor is outside the file system")));
        }
        self.disk.read_meta(blk * self.sb.block_size + off, &mut d)?;
        let lo = u64::from(u32::from_le_bytes([d[8], d[9], d[10], d[11]]));
        let hi = if self.sb.desc_size >= 64 { u64::from(u32::from_le_bytes([d[0x28], d[0x29], d[0x2a], d[0x2b]])) } else { 0 };
        let t = lo | hi << 32;
        let table_blocks = (u64::from(self.sb.inodes_per_group) * u64::from(self.sb.inode_size)).div_ceil(self.sb.block_size);
        if t == 0 || t.checked_add(table_blocks).is_none_or(|e| e > self.sb.blocks_count) {
            return Err(self.corrupt(&format!("group {group}'s inode table at block {t} is outside the file system")));
        }
        Ok(t)
    }

    /// Inode `ino` as stored.
    pub fn read_inode(&self, ino: u32) -> Result<RawInode, Errno> {
        let b = self.read_inode_bytes(ino)?;
        RawInode::parse(&b).ok_or_else(|| self.corrupt(&format!("inode {ino} is unreadable")))
    }

    /// Where inode `ino` is on the disk (byte offset).
    fn inode_offset(&self, ino: u32) -> Result<u64, Errno> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(self.corrupt(&format!("inode number {ino} is out of range")));
        }
        let idx = u64::from(ino - 1);
        let group = idx / u64::from(self.sb.inodes_per_group);
        let table = self.inode_table(group)?;
        Ok(table * self.sb.block_size + (idx % u64::from(self.sb.inodes_per_group)) * u64::from(self.sb.inode_size))
    }

    /// The bytes of inode `ino` as stored.
    fn read_inode_bytes(&self, ino: u32) -> Result<Vec<u8>, Errno> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(self.corrupt(&format!("inode number {ino} is out of range")));
        }
        let idx = u64::from(ino - 1);
        let group = idx / u64::from(self.sb.inodes_per_group);
        let table = self.inode_table(group)?;
        let off = table * self.sb.block_size + (idx % u64::from(self.sb.inodes_per_group)) * u64::from(self.sb.inode_size);
        let mut b = vec![0u8; self.sb.inode_size as usize];
        self.disk.read_meta(off, &mut b)?;
        Ok(b)
    }

    /// The block map of a file (its extents in logical order), also
    /// collecting the extent tree's blocks.
    fn block_map_tree(&self, ino: u32, raw: &RawInode, tree: &mut Vec<u64>) -> Result<BlockMap, Errno> {
        let nblocks = raw.size.div_ceil(self.sb.block_size);
        let mut out = Vec::new();
        if raw.flags & layout::INLINE_DATA_FL != 0 {
            return Err(self.corrupt(&format!("inode {ino}: inline data is not supported")));
        }
        if raw.flags & layout::EXTENTS_FL != 0 {
            let mut visits = 0u32;
            self.walk_extents(ino, &raw.block, 6, &mut out, &mut visits, tree)?;
        } else {
            self.walk_pointers(ino, &raw.block, nblocks, &mut out)?;
        }
        out.sort_by_key(|e| e.lblk);
        // Overlapping extents would map one logical block twice.
        let mut end = 0u64;
        for e in &out {
            if u64::from(e.lblk) < end {
                return Err(self.corrupt(&format!("inode {ino}: extents overlap at logical block {}", e.lblk)));
            }
            end = u64::from(e.lblk) + u64::from(e.len);
        }
        for e in &out {
            if e.pblk == 0 || e.pblk.checked_add(u64::from(e.len)).is_none_or(|end| end > self.sb.blocks_count) {
                return Err(self.corrupt(&format!("inode {ino}: extent at logical block {} points outside the file system", e.lblk)));
            }
        }
        Ok(out)
    }

    fn walk_extents(&self, ino: u32, node: &[u8], max_depth: u16, out: &mut BlockMap, visits: &mut u32, tree: &mut Vec<u64>) -> Result<(), Errno> {
        let Some((h, leaves, index)) = layout::parse_extent_node(node) else {
            return Err(self.corrupt(&format!("inode {ino}: bad extent node")));
        };
        // Depth must shrink by one per level: no loops, bounded work.
        if h.depth >= max_depth {
            return Err(self.corrupt(&format!("inode {ino}: extent tree too deep")));
        }
        out.extend(leaves.into_iter().filter(|e| e.len > 0));
        if out.len() > MAX_EXTENTS {
            return Err(self.corrupt(&format!("inode {ino}: too many extents")));
        }
        for (_, child) in index {
            *visits += 1;
            if *visits > MAX_TREE_BLOCKS {
                return Err(self.corrupt(&format!("inode {ino}: extent tree too large")));
            }
            let mut b = vec![0u8; self.sb.block_size as usize];
            self.read_block_meta(child, &mut b)?;
            tree.push(child);
            let Some((ch, _, _)) = layout::parse_extent_node(&b) else {
                return Err(self.corrupt(&format!("inode {ino}: bad extent block {child}")));
            };
            if ch.depth + 1 != h.depth {
                return Err(self.corrupt(&format!("inode {ino}: extent block {child} at the wrong depth")));
            }
            self.walk_extents(ino, &b, h.depth, out, visits, tree)?;
        }
        Ok(())
    }

    /// ext2/3 block pointers: 12 direct, then single, double and triple
    /// indirect blocks (only as many as the size needs).
    fn walk_pointers(&self, ino: u32, iblock: &[u8; 60], nblocks: u64, out: &mut BlockMap) -> Result<(), Errno> {
        let per = self.sb.block_size / 4;
        let ptr = |b: &[u8], i: usize| u64::from(u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]));
        let mut push = |out: &mut BlockMap, lblk: u64, pblk: u64| {
            if pblk == 0 {
                return;
            }
            match out.last_mut() {
                Some(e) if u64::from(e.lblk) + u64::from(e.len) == lblk && e.pblk + u64::from(e.len) == pblk && e.len < 32768 => e.len += 1,
                _ => out.push(Extent { lblk: lblk as u32, len: 1, pblk, unwritten: false }),
            }
        };
        for i in 0..12u64.min(nblocks) {
            push(out, i, ptr(iblock, i as usize));
        }
        let mut base = 12u64;
        let mut visits = 0u64;
        for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
            if base >= nblocks {
                break;
            }
            let span = per.pow(level);
            let root = ptr(iblock, slot);
            if root != 0 {
                self.walk_indirect(ino, root, level, base, nblocks, out, &mut push, &mut visits)?;
            }
            base += span;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_indirect(
        &self,
        ino: u32,
        blk: u64,
        level: u32,
        base: u64,
        nblocks: u64,
        out: &mut BlockMap,
        push: &mut impl FnMut(&mut BlockMap, u64, u64),
        visits: &mut u64,
    ) -> Result<(), Errno> {
        let per = self.sb.block_size / 4;
        *visits += per;
        if *visits > MAX_POINTERS {
            return Err(self.corrupt(&format!("inode {ino}: too many block pointers")));
        }
        let mut b = vec![0u8; self.sb.block_size as usize];
        self.read_block_meta(blk, &mut b)?;
        let span = per.pow(level - 1);
        for i in 0..per {
            let l = base + i * span;
            if l >= nblocks {
                break;
            }
            let p = u64::from(u32::from_le_bytes([b[4 * i as usize], b[4 * i as usize + 1], b[4 * i as usize + 2], b[4 * i as usize + 3]]));
            if p == 0 {
                continue;
            }
            *visits += 1;
            if *visits > MAX_POINTERS {
                return Err(self.corrupt(&format!("inode {ino}: too many block pointers")));
            }
            if level == 1 {
                push(out, l, p);
            } else {
                self.walk_indirect(ino, p, level - 1, l, nblocks, out, push, visits)?;
            }
            if out.len() > MAX_EXTENTS {
                return Err(self.corrupt(&format!("inode {ino}: too many blocks")));
            }
        }
        Ok(())
    }

    /// Read `buf.len()` bytes of a file at `off` (block-aligned `off`):
    /// holes and unwritten extents are zeros, runs of contiguous blocks are
    /// one request each, all in one batch.
    fn read_file(&self, map: &BlockMap, off: u64, buf: &mut [u8], meta: bool) -> Result<(), Errno> {
        let bs = self.sb.block_size;
        buf.fill(0);
        let (first, last) = (off / bs, (off + buf.len() as u64).div_ceil(bs));
        // (disk offset, range of buf) for each mapped piece.
        let mut pieces: Vec<(u64, usize, usize)> = Vec::new();
        let start = map.partition_point(|e| u64::from(e.lblk) + u64::from(e.len) <= first);
        for e in &map[start..] {
            let (el, ee) = (u64::from(e.lblk), u64::from(e.lblk) + u64::from(e.len));
            if el >= last {
                break;
            }
            if e.unwritten {
                continue;
            }
            let (lo, hi) = (el.max(first), ee.min(last));
            let from = (lo * bs).max(off) - off;
            let to = ((hi * bs) - off).min(buf.len() as u64);
            pieces.push(((e.pblk + (lo - el)) * bs, from as usize, to as usize));
        }
        if meta {
            for (at, a, b) in pieces {
                self.disk.read_meta(at, &mut buf[a..b])?;
            }
            return Ok(());
        }
        // Data: sector-aligned runs straight from the device; a tail that
        // is not a whole sector goes through a bounce buffer.
        let mut tails: Vec<(u64, usize, usize)> = Vec::new();
        {
            let mut runs: Vec<(u64, &mut [u8])> = Vec::new();
            let mut rest: &mut [u8] = buf;
            let mut consumed = 0usize;
            for (at, a, b) in pieces {
                let whole = (b - a) / 512 * 512;
                let tmp = core::mem::take(&mut rest);
                let (_, tail) = tmp.split_at_mut(a - consumed);
                let (run, after) = tail.split_at_mut(b - a);
                let (aligned, partial) = run.split_at_mut(whole);
                if !aligned.is_empty() {
                    runs.push((at, aligned));
                }
                if !partial.is_empty() {
                    tails.push((at + whole as u64, a + whole, b));
                }
                rest = after;
                consumed = b;
            }
            self.disk.read_data(&mut runs)?;
        }
        for (at, a, b) in tails {
            let mut sector = [0u8; 512];
            self.disk.read_data(&mut [(at, &mut sector[..])])?;
            buf[a..b].copy_from_slice(&sector[..b - a]);
        }
        Ok(())
    }

    /// The entries of directory `ino`.
    fn read_dir(&self, ino: u32, st: &mut NodeState) -> Result<Vec<layout::DirEntry>, Errno> {
        if st.raw.size > MAX_DIR_BYTES {
            return Err(self.corrupt(&format!("directory inode {ino} is {} bytes", st.raw.size)));
        }
        self.ensure_map(ino, st)?;
        let map = st.map.as_ref().ok_or(Errno::EIO)?;
        let bs = self.sb.block_size;
        let mut out = Vec::new();
        let mut b = vec![0u8; bs as usize];
        let filetype = self.sb.incompat & incompat::FILETYPE != 0;
        for blk in 0..st.raw.size / bs {
            self.read_file(map, blk * bs, &mut b, true)?;
            let Some(entries) = layout::parse_dir_block(&b, filetype) else {
                return Err(self.corrupt(&format!("directory inode {ino}: bad entry in block {blk}")));
            };
            out.extend(entries);
        }
        Ok(out)
    }

    /// Read an inode's block map (and extent tree blocks) if not yet read.
    fn ensure_map(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        if st.map.is_none() {
            let mut tree = Vec::new();
            let map = self.block_map_tree(ino, &st.raw, &mut tree)?;
            st.map = Some(map);
            st.tree = tree;
        }
        Ok(())
    }

    /// The VFS inode of `ino` (the live one, or read from the disk).
    pub fn vfs_inode(self: &Rc<Self>, ino: u32) -> Result<InodeRef, Errno> {
        if let Some(i) = self.icache.borrow().get(&ino).and_then(Weak::upgrade) {
            return Ok(i);
        }
        let bytes = self.read_inode_bytes(ino)?;
        let raw = RawInode::parse(&bytes).ok_or_else(|| self.corrupt(&format!("inode {ino} is unreadable")))?;
        let ftype = u32::from(raw.mode) & g::S_IFMT;
        if raw.links == 0 && ftype != g::S_IFDIR {
            return Err(self.corrupt(&format!("inode {ino} is referenced but deleted")));
        }
        let st = NodeState { bytes, raw, map: None, tree: Vec::new(), deleted: false, dirty: false };
        self.make_inode(ino, st)
    }

    /// The VFS inode for `st` (registered in the inode cache).
    fn make_inode(self: &Rc<Self>, ino: u32, mut st: NodeState) -> Result<InodeRef, Errno> {
        let raw = st.raw.clone();
        let ftype = u32::from(raw.mode) & g::S_IFMT;
        let kind = match ftype {
            g::S_IFDIR => Kind::Dir(RefCell::new(BTreeMap::new())),
            g::S_IFREG => {
                self.ensure_map(ino, &mut st)?;
                let st = Rc::new(RefCell::new(st));
                let store = Rc::new(FileStore { vol: self.clone(), ino, st: st.clone() });
                let cache = PageCache::new(&self.caches, Source::Store(store), raw.size, None);
                return self.finish_inode(ino, st, Kind::File(FileData::new(cache)));
            }
            g::S_IFLNK => {
                let n = raw.size.min(MAX_SYMLINK) as usize;
                // A target under 60 bytes lives in i_block itself.
                let fast = raw.size < 60 && raw.flags & (layout::EXTENTS_FL | layout::INLINE_DATA_FL) == 0;
                let target = if fast && n <= 60 {
                    raw.block[..n].to_vec()
                } else {
                    self.ensure_map(ino, &mut st)?;
                    let map = st.map.as_ref().ok_or(Errno::EIO)?;
                    let mut b = vec![0u8; n.div_ceil(self.sb.block_size as usize) * self.sb.block_size as usize];
                    self.read_file(map, 0, &mut b, true)?;
                    b.truncate(n);
                    b
                };
                Kind::Symlink(super::path::name_from_bytes(&target))
            }
            g::S_IFCHR | g::S_IFBLK | g::S_IFIFO | g::S_IFSOCK => {
                // A device number in i_block: old 16-bit or new 32-bit encoding.
                let (old, new) = (u32::from(u16::from_le_bytes([raw.block[0], raw.block[1]])), u32::from_le_bytes([raw.block[4], raw.block[5], raw.block[6], raw.block[7]]));
                let rdev = if old != 0 { (old >> 8, old & 0xff) } else { ((new >> 8) & 0xfff, (new & 0xff) | ((new >> 12) & 0xfff00)) };
                Kind::Special(Rc::new(super::hostfs::HostSpecial { type_bits: ftype, rdev }))
            }
            _ => return Err(self.corrupt(&format!("inode {ino} has no valid type ({:o})", raw.mode))),
        };
        self.finish_inode(ino, Rc::new(RefCell::new(st)), kind)
    }

    fn finish_inode(self: &Rc<Self>, ino: u32, st: Rc<RefCell<NodeState>>, kind: Kind) -> Result<InodeRef, Errno> {
        let raw = st.borrow().raw.clone();
        let meta = Meta {
            perm: u32::from(raw.mode) & 0o7777,
            uid: raw.uid,
            gid: raw.gid,
            mtime_ns: raw.mtime_ns,
            nlink: u32::from(raw.links),
            atime_ns: raw.atime_ns,
            ctime_ns: raw.ctime_ns,
        };
        let inode = Arc::new(Inode {
            ino: u64::from(ino),
            meta: RefCell::new(meta),
            kind,
            sb: self.vfs_sb,
            mounted: RefCell::new(None),
            fsdata: Some(FsData::Ext4(Node { vol: self.clone(), ino, st, listing: RefCell::new(None), index: RefCell::new(None) })),
            charge: Default::default(),
        });
        let mut ic = self.icache.borrow_mut();
        if ic.len() > 1024 && ic.len().is_power_of_two() {
            ic.retain(|_, w| w.strong_count() > 0);
        }
        ic.insert(ino, Arc::downgrade(&inode));
        drop(ic);
        if self.writable() {
            self.pinned.borrow_mut().insert(ino, inode.clone());
        }
        Ok(inode)
    }
}

/// A file's data on the disk, as its page cache's store.
pub struct FileStore {
    vol: VolumeRef,
    ino: u32,
    st: Rc<RefCell<NodeState>>,
}

impl Store for FileStore {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let bs = self.vol.sb.block_size;
        if !off.is_multiple_of(bs) {
            // The page cache reads whole pages; keep the contract anyway.
            let a = off - off % bs;
            let mut tmp = vec![0u8; (off - a) as usize + buf.len()];
            let st = self.st.borrow();
            self.vol.read_file(st.map.as_ref().ok_or(Errno::EIO)?, a, &mut tmp, false)?;
            buf.copy_from_slice(&tmp[(off - a) as usize..]);
        } else {
            let st = self.st.borrow();
            self.vol.read_file(st.map.as_ref().ok_or(Errno::EIO)?, off, buf, false)?;
        }
        Ok(buf.len())
    }
    fn write(&self, off: u64, data: &[u8]) -> Result<(), Errno> {
        self.vol.write_file(self.ino, &mut self.st.borrow_mut(), off, data)
    }
    fn truncate(&self, len: u64) -> Result<(), Errno> {
        self.vol.truncate_file(self.ino, &mut self.st.borrow_mut(), len)
    }
}

fn node(dir: &Inode) -> Option<&Node> {
    match &dir.fsdata {
        Some(FsData::Ext4(n)) => Some(n),
        _ => None,
    }
}

/// The first `max` bytes of regular file `inode` straight from the disk
/// (not through its page cache): for tools, tests and fuzzing.
pub fn file_bytes(inode: &Inode, max: u64) -> Result<Vec<u8>, Errno> {
    let n = node(inode).ok_or(Errno::EINVAL)?;
    if !matches!(inode.kind, Kind::File(_)) {
        return Err(Errno::EISDIR);
    }
    let st = n.st.borrow();
    let map = st.map.as_ref().ok_or(Errno::EIO)?;
    let mut buf = vec![0u8; st.raw.size.min(max) as usize];
    n.vol.read_file(map, 0, &mut buf, false)?;
    Ok(buf)
}

/// The volume an inode belongs to, if it is on ext4.
pub fn volume_of(inode: &Inode) -> Option<&VolumeRef> {
    node(inode).map(|n| &n.vol)
}

/// Look `name` up in ext4 directory `dir` (its map caches what was found).
pub fn lookup(dir: &Inode, name: &str) -> Result<Option<InodeRef>, Errno> {
    let Kind::Dir(children) = &dir.kind else { return Err(Errno::ENOTDIR) };
    if let Some(c) = children.borrow().get(name) {
        return Ok(Some(c.clone()));
    }
    let Some(n) = node(dir) else { return Ok(None) };
    let want = super::path::name_to_bytes(name);
    if n.index.borrow().is_none() {
        let entries = n.vol.read_dir(n.ino, &mut n.st.borrow_mut())?;
        *n.index.borrow_mut() = Some(entries.into_iter().map(|(ino, nm, _)| (nm, ino)).collect());
    }
    let Some(ino) = n.index.borrow().as_ref().and_then(|m| m.get(&*want).copied()) else { return Ok(None) };
    let child = n.vol.vfs_inode(ino)?;
    children.borrow_mut().insert(String::from(name), child.clone());
    Ok(Some(child))
}

/// Entry `k` of directory `dir`'s listing (without `.` and `..`): (name,
/// inode number, `d_type`). The listing is read at `k == 0` and kept until
/// its end is read.
pub fn readdir_at(dir: &Inode, k: usize) -> Result<Option<(String, u64, u8)>, Errno> {
    let Some(n) = node(dir) else { return Ok(None) };
    if k == 0 || n.listing.borrow().is_none() {
        let dt = |t: u8| -> u8 {
            // ext4's file types in entries, as d_type.
            (match t {
                1 => g::DT_REG,
                2 => g::DT_DIR,
                3 => g::DT_CHR,
                4 => g::DT_BLK,
                5 => g::DT_FIFO,
                6 => g::DT_SOCK,
                7 => g::DT_LNK,
                _ => g::DT_UNKNOWN,
            }) as u8
        };
        let entries = n.vol.read_dir(n.ino, &mut n.st.borrow_mut())?;
        let list = entries
            .into_iter()
            .filter(|(_, nm, _)| nm != b"." && nm != b"..")
            .map(|(ino, nm, t)| (super::path::name_from_bytes(&nm), u64::from(ino), dt(t)))
            .collect();
        *n.listing.borrow_mut() = Some(list);
    }
    let mut l = n.listing.borrow_mut();
    let e = l.as_ref().and_then(|v| v.get(k).cloned());
    if e.is_none() {
        *l = None;
    }
    Ok(e)
}

/// `st_size` and `st_blocks` as the disk has them.
pub fn file_size(inode: &Inode) -> Option<(u64, u64)> {
    let n = node(inode)?;
    let size = match &inode.kind {
        Kind::File(d) => d.size(),
        _ => n.st.borrow().raw.size,
    };
    Some((size, n.st.borrow().raw.blocks))
}

impl Fs {
    /// Make the ext2/3/4 file system on `disk` the root, as `root=/dev/ubdX`
    /// does at boot: read-write when the disk and the file system allow
    /// it, else read-only (with a kernel log line saying why).
    pub fn mount_ext4_root(&mut self, disk: DiskRef) -> Result<VolumeRef, Errno> {
        disk.claim()?;
        let sb = self.new_sb(FsType::Ext4, true);
        let vol = Volume::open(disk.clone(), sb, self.caches.clone())?;
        let root = vol.vfs_inode(2)?;
        if !root.is_dir() {
            return Err(vol.corrupt("the root inode is not a directory"));
        }
        let rw = vol.enable_write().is_ok();
        let source = format!("/dev/{}", disk.name);
        if let Some(s) = self.sbs.get_mut(&sb) {
            s.disk = Some(disk);
            s.readonly = !rw;
        }
        self.set_root(root, sb, &source);
        Ok(vol)
    }

    /// Mount the ext2/3/4 file system on `disk` at `target`; read-write
    /// unless `readonly` (`EROFS` when it cannot be written: `mount` then
    /// retries read-only).
    pub fn mount_ext4(&mut self, target: &Loc, disk: DiskRef, source: &str, readonly: bool) -> Result<VolumeRef, Errno> {
        disk.claim()?;
        let sb = self.new_sb(FsType::Ext4, readonly);
        let result = Volume::open(disk.clone(), sb, self.caches.clone()).and_then(|vol| {
            let root = vol.vfs_inode(2)?;
            if !root.is_dir() {
                return Err(vol.corrupt("the root inode is not a directory"));
            }
            if !readonly {
                vol.enable_write()?;
            }
            if let Err(e) = self.attach(target, root, sb, source) {
                let _ = vol.disable_write();
                return Err(e);
            }
            Ok(vol)
        });
        match result {
            Ok(vol) => {
                if let Some(s) = self.sbs.get_mut(&sb) {
                    s.disk = Some(disk);
                }
                Ok(vol)
            }
            Err(e) => {
                self.sbs.remove(&sb);
                disk.release();
                Err(e)
            }
        }
    }

    /// `mount -o remount,rw|ro` of ext4 file system `sb`.
    pub fn remount_ext4(&mut self, sb: u32, readonly: bool) -> Result<(), Errno> {
        let root = self.mounts.iter().find(|m| m.sb == sb).map(|m| m.root.clone()).ok_or(Errno::EINVAL)?;
        let vol = volume_of(&root).ok_or(Errno::EINVAL)?.clone();
        if readonly {
            vol.disable_write()?;
        } else {
            vol.enable_write()?;
        }
        if let Some(s) = self.sbs.get_mut(&sb) {
            s.readonly = readonly;
        }
        Ok(())
    }
}
