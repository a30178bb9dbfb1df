//! The on-disk structures of ext2/3/4 that the driver reads: superblock,
//! group descriptors, inodes, extent nodes and directory entries. Every
//! parser takes untrusted bytes and returns `None` (the caller's
//! "corrupt" error) for anything out of range; nothing here indexes
//! without a check.

use alloc::vec::Vec;

/// `s_magic`.
pub const MAGIC: u16 = 0xef53;
/// Where the superblock starts on the disk.
pub const SB_OFFSET: u64 = 1024;

/// `INCOMPAT_*` features the driver understands (reading).
pub mod incompat {
    /// Directory entries carry the file type.
    pub const FILETYPE: u32 = 0x2;
    /// The journal must be replayed before the metadata can be trusted.
    pub const RECOVER: u32 = 0x4;
    /// Block groups' descriptors live in meta block groups.
    pub const META_BG: u32 = 0x10;
    /// Files are mapped by extent trees.
    pub const EXTENTS: u32 = 0x40;
    /// 64-bit block numbers and large group descriptors.
    pub const BIT64: u32 = 0x80;
    /// Multiple-mount protection (a block the mounter updates).
    pub const MMP: u32 = 0x100;
    /// Flexible block groups (only placement changes).
    pub const FLEX_BG: u32 = 0x200;
    /// Large extended attributes in inodes.
    pub const EA_INODE: u32 = 0x400;
    /// The checksum seed is stored in the superblock.
    pub const CSUM_SEED: u32 = 0x2000;
    /// Directories larger than 2 GiB / 3-level htrees.
    pub const LARGEDIR: u32 = 0x4000;
    /// What the driver reads correctly.
    pub const SUPPORTED: u32 = FILETYPE | EXTENTS | BIT64 | MMP | FLEX_BG | EA_INODE | CSUM_SEED | LARGEDIR | META_BG;
}

/// `RO_COMPAT_*` features (a driver that does not know one may only read).
pub mod ro_compat {
    /// Superblock backups only in groups 0, 1 and powers of 3, 5, 7.
    pub const SPARSE_SUPER: u32 = 0x1;
    /// Files over 2 GiB.
    pub const LARGE_FILE: u32 = 0x2;
    /// (Unused by Linux.)
    pub const BTREE_DIR: u32 = 0x4;
    /// `i_blocks` may count file system blocks.
    pub const HUGE_FILE: u32 = 0x8;
    /// Group descriptors carry a CRC16 (`uninit_bg`).
    pub const GDT_CSUM: u32 = 0x10;
    /// Directories may have more than 65000 subdirectories.
    pub const DIR_NLINK: u32 = 0x20;
    /// Inodes reserve room for their extra fields.
    pub const EXTRA_ISIZE: u32 = 0x40;
    /// CRC32C on all metadata.
    pub const METADATA_CSUM: u32 = 0x400;
    /// What the driver keeps right when it writes.
    pub const WRITABLE: u32 = SPARSE_SUPER | LARGE_FILE | BTREE_DIR | HUGE_FILE | GDT_CSUM | DIR_NLINK | EXTRA_ISIZE | METADATA_CSUM;
}

/// `INCOMPAT_*` features the driver can write (with those it reads).
pub const INCOMPAT_WRITABLE: u32 = incompat::FILETYPE | incompat::EXTENTS | incompat::BIT64 | incompat::FLEX_BG | incompat::CSUM_SEED | incompat::LARGEDIR | incompat::META_BG;

/// Does group `g` hold a superblock backup (sparse_super: 0, 1, and powers of 3, 5, 7)?
pub fn has_super_backup(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&b| {
        let mut p = b;
        while p < g {
            p *= b;
        }
        p == g
    })
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The superblock fields the driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Super {
    /// Inodes in the file system.
    pub inodes_count: u32,
    /// Blocks in the file system.
    pub blocks_count: u64,
    /// Blocks reserved for root.
    pub r_blocks_count: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free inodes.
    pub free_inodes: u32,
    /// The block holding the superblock (1 with 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// Bytes per block (1 KiB to 64 KiB).
    pub block_size: u64,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Bytes per on-disk inode.
    pub inode_size: u32,
    /// Bytes per group descriptor.
    pub desc_size: u32,
    /// `s_feature_incompat`.
    pub incompat: u32,
    /// `s_first_meta_bg`.
    pub first_meta_bg: u32,
    /// `s_feature_ro_compat`.
    pub ro_compat: u32,
    /// `s_feature_compat`.
    pub compat: u32,
}

impl Super {
    /// Parse and check the 1024 bytes of a superblock.
    pub fn parse(b: &[u8]) -> Option<Super> {
        if u16_at(b, 0x38)? != MAGIC {
            return None;
        }
        let log = u32_at(b, 0x18)?;
        if log > 6 {
            return None;
        }
        let block_size = 1024u64 << log;
        let incompat = u32_at(b, 0x60)?;
        let bit64 = incompat & incompat::BIT64 != 0;
        let hi = |o: usize| -> Option<u64> { if bit64 { Some(u64::from(u32_at(b, o)?) << 32) } else { Some(0) } };
        let rev = u32_at(b, 0x4c)?;
        let inode_size = if rev == 0 { 128 } else { u32::from(u16_at(b, 0x58)?) };
        let desc_size = if bit64 { u32::from(u16_at(b, 0xfe)?) } else { 32 };
        let s = Super {
            inodes_count: u32_at(b, 0x0)?,
            blocks_count: u64::from(u32_at(b, 0x4)?) | hi(0x150)?,
            r_blocks_count: u64::from(u32_at(b, 0x8)?) | hi(0x154)?,
            free_blocks: u64::from(u32_at(b, 0xc)?) | hi(0x158)?,
            free_inodes: u32_at(b, 0x10)?,
            first_data_block: u32_at(b, 0x14)?,
            block_size,
            blocks_per_group: u32_at(b, 0x20)?,
            inodes_per_group: u32_at(b, 0x28)?,
            inode_size,
            desc_size,
            incompat,
            first_meta_bg: u32_at(b, 0x104)?,
            ro_compat: u32_at(b, 0x64)?,
            compat: u32_at(b, 0x5c)?,
        };
        let sane = s.inodes_per_group > 0
            && s.blocks_per_group > 0
            && s.inode_size >= 128
            && s.inode_size.is_power_of_two()
            && u64::from(s.inode_size) <= block_size
            && s.desc_size >= 32
            && s.desc_size.is_power_of_two()
            && u64::from(s.desc_size) <= block_size
            && s.blocks_count > u64::from(s.first_data_block)
            && u64::from(s.first_data_block) == if block_size == 1024 { 1 } else { 0 }
            && u64::from(s.inodes_per_group) <= block_size * 8
            && u64::from(s.blocks_per_group) <= block_size * 8;
        sane.then_some(s)
    }
    /// Number of block groups.
    pub fn groups(&self) -> u64 {
        (self.blocks_count - u64::from(self.first_data_block)).div_ceil(u64::from(self.blocks_per_group))
    }
}

/// What an inode says about its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawInode {
    /// `i_mode` (type and permission bits).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub links: u16,
    /// 512-byte sectors allocated.
    pub blocks: u64,
    /// `i_flags`.
    pub flags: u32,
    /// `i_block`: the extent tree root, block pointers or a short symlink.
    pub block: [u8; 60],
    /// Access, status change and modification times (ns since the epoch).
    pub atime_ns: u64,
    /// See [`RawInode::atime_ns`].
    pub ctime_ns: u64,
    /// See [`RawInode::atime_ns`].
    pub mtime_ns: u64,
}

/// `i_flags`: the file is mapped by an extent tree.
pub const EXTENTS_FL: u32 = 0x80000;
/// `i_flags`: the data lives in the inode (inline data).
pub const INLINE_DATA_FL: u32 = 0x1000_0000;

fn time_ns(secs: u32, extra: Option<u32>) -> u64 {
    // The low two bits of `extra` extend the seconds past 2038.
    let (epoch, nsec) = extra.map_or((0, 0), |e| (u64::from(e & 3), u64::from(e >> 2).min(999_999_999)));
    let secs = (i64::from(secs as i32) + ((epoch as i64) << 32)).max(0) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl RawInode {
    /// Parse an on-disk inode of `inode_size` bytes.
    pub fn parse(b: &[u8]) -> Option<RawInode> {
        let extra_isize = if b.len() > 128 { u32::from(u16_at(b, 0x80)?) } else { 0 };
        // A time's `extra` field is there when the inode's extra size covers it.
        let extra = |o: usize| -> Option<u32> { if 128 + extra_isize as usize >= o + 4 { u32_at(b, o) } else { None } };
        let mut block = [0u8; 60];
        block.copy_from_slice(b.get(0x28..0x64)?);
        Some(RawInode {
            mode: u16_at(b, 0x0)?,
            uid: u32::from(u16_at(b, 0x2)?) | u32::from(u16_at(b, 0x78)?) << 16,
            gid: u32::from(u16_at(b, 0x18)?) | u32::from(u16_at(b, 0x7a)?) << 16,
            size: u64::from(u32_at(b, 0x4)?) | u64::from(u32_at(b, 0x6c)?) << 32,
            links: u16_at(b, 0x1a)?,
            blocks: u64::from(u32_at(b, 0x1c)?) | u64::from(u16_at(b, 0x74)?) << 32,
            flags: u32_at(b, 0x20)?,
            block,
            atime_ns: time_ns(u32_at(b, 0x8)?, extra(0x8c)),
            ctime_ns: time_ns(u32_at(b, 0xc)?, extra(0x84)),
            mtime_ns: time_ns(u32_at(b, 0x10)?, extra(0x88)),
        })
    }
}

/// The header of an extent node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentHeader {
    /// Valid entries.
    pub entries: u16,
    /// Depth below this node (0: a leaf).
    pub depth: u16,
}

/// `eh_magic`.
const EXTENT_MAGIC: u16 = 0xf30a;
/// A leaf entry: `len` blocks from logical `lblk` at physical `pblk` (unwritten: reads as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub lblk: u32,
    /// Blocks.
    pub len: u32,
    /// First physical block.
    pub pblk: u64,
    /// Allocated but never written (reads as zeros).
    pub unwritten: bool,
}

/// A parsed extent node: header, leaf extents, index children `(first logical, child block)`.
pub type ExtentNode = (ExtentHeader, Vec<Extent>, Vec<(u32, u64)>);

/// Parse an extent node (`i_block` or an extent block).
pub fn parse_extent_node(b: &[u8]) -> Option<ExtentNode> {
    if u16_at(b, 0)? != EXTENT_MAGIC {
        return None;
    }
    let h = ExtentHeader { entries: u16_at(b, 2)?, depth: u16_at(b, 6)? };
    let max = u16_at(b, 4)?;
    if h.entries > max || (12 + 12 * usize::from(max)) > b.len() || h.depth > 5 {
        return None;
    }
    let (mut leaves, mut index) = (Vec::new(), Vec::new());
    for i in 0..usize::from(h.entries) {
        let e = &b[12 + 12 * i..24 + 12 * i];
        let lblk = u32_at(e, 0)?;
        if h.depth == 0 {
            let raw = u32::from(u16_at(e, 4)?);
            let (len, unwritten) = if raw > 32768 { (raw - 32768, true) } else { (raw, false) };
            let pblk = u64::from(u16_at(e, 6)?) << 32 | u64::from(u32_at(e, 8)?);
            leaves.push(Extent { lblk, len, pblk, unwritten });
        } else {
            let child = u64::from(u32_at(e, 4)?) | u64::from(u16_at(e, 8)?) << 32;
            index.push((lblk, child));
        }
    }
    Some((h, leaves, index))
}

/// One directory entry: (inode, name bytes, file type).
pub type DirEntry = (u32, Vec<u8>, u8);

/// The entries of one directory block (inode 0 entries skipped: free
/// space, and the htree's internal nodes, which look like one empty entry
/// covering the block). `None` if the block is malformed.
pub fn parse_dir_block(b: &[u8], filetype: bool) -> Option<Vec<DirEntry>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let ino = u32_at(b, at)?;
        let rec_len = usize::from(u16_at(b, at + 4)?);
        // With 64 KiB blocks rec_len 0 means the whole block (Linux's encoding).
        let rec_len = if rec_len == 0 && b.len() == 65536 && at == 0 { 65536 } else { rec_len };
        let name_len = usize::from(*b.get(at + 6)?);
        let ftype = if filetype { *b.get(at + 7)? } else { 0 };
        if rec_len < 8 || rec_len % 4 != 0 || at + rec_len > b.len() || (ino != 0 && 8 + name_len > rec_len) {
            return None;
        }
        // The checksum tail (inode 0, rec_len 12, name_len 0, type 0xde) is skipped like free space.
        if ino != 0 && name_len > 0 {
            out.push((ino, b[at + 8..at + 8 + name_len].to_vec(), ftype));
        }
        at += rec_len;
    }
    Some(out)
}
