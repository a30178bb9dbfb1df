//! Block and inode allocation of a read-write ext4 mount: the group
//! descriptors (all of them, loaded at mount), the bitmaps of the groups
//! touched, and the superblock's free counts, kept in memory and written
//! into the disk's buffer cache with their checksums at each sync.
//!
//! A group whose block bitmap was never initialised (`BLOCK_UNINIT`) gets
//! its bitmap computed (superblock backup, descriptor and reserved
//! descriptor blocks, its own bitmaps and inode table) and checked against
//! the descriptor's free count: a group whose bitmap does not agree with
//! its count (on disk or computed) is never allocated from, so a
//! misunderstanding cannot hand out a block that is in use.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::csum::{crc16, crc32c};
use super::layout::{has_super_backup, ro_compat};
use super::Volume;
use crate::Errno;

/// `bg_flags`.
const INODE_UNINIT: u16 = 1;
const BLOCK_UNINIT: u16 = 2;

/// Which checksums the file system keeps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Csum {
    /// None (ext2/3, ext4 without `uninit_bg`).
    None,
    /// CRC16 on group descriptors (`uninit_bg`).
    Gdt16,
    /// CRC32C on all metadata (`metadata_csum`).
    Meta,
}

/// The allocation state of a read-write mount.
pub struct Alloc {
    /// The superblock as read (1024 bytes), patched at sync.
    pub sbraw: Vec<u8>,
    /// Each group's descriptor bytes.
    descs: Vec<Vec<u8>>,
    /// Loaded block bitmaps (a block each).
    bb: BTreeMap<u64, Vec<u8>>,
    /// Loaded inode bitmaps.
    ib: BTreeMap<u64, Vec<u8>>,
    dirty_desc: BTreeSet<u64>,
    dirty_bb: BTreeSet<u64>,
    dirty_ib: BTreeSet<u64>,
    /// Groups not to allocate from (their bitmap disagrees with their count).
    bad: BTreeSet<u64>,
    /// Free blocks and inodes of the file system.
    pub free_blocks: u64,
    /// See [`Alloc::free_blocks`].
    pub free_inodes: u64,
    /// The metadata checksum seed.
    pub seed: u32,
    /// Checksum kind.
    pub csum: Csum,
    /// The superblock's counts changed since the last sync.
    pub dirty_sb: bool,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn bit(b: &[u8], i: u64) -> bool {
    b[(i / 8) as usize] & (1 << (i % 8)) != 0
}
fn set_bit(b: &mut [u8], i: u64, v: bool) {
    if v {
        b[(i / 8) as usize] |= 1 << (i % 8);
    } else {
        b[(i / 8) as usize] &= !(1 << (i % 8));
    }
}

impl Alloc {
    fn wide(&self) -> bool {
        self.descs.first().is_some_and(|d| d.len() >= 64)
    }
    /// A descriptor field that has a low half at `lo` (`n` bytes) and a
    /// high half at `hi` in 64-byte descriptors.
    fn field(&self, g: u64, lo: usize, hi: usize, n: usize) -> u64 {
        let d = &self.descs[g as usize];
        let (l, h) = if n == 2 { (u64::from(le16(d, lo)), if self.wide() { u64::from(le16(d, hi)) } else { 0 }) } else { (u64::from(le32(d, lo)), if self.wide() { u64::from(le32(d, hi)) } else { 0 }) };
        l | h << (8 * n)
    }
    fn set_field(&mut self, g: u64, lo: usize, hi: usize, n: usize, v: u64) {
        let wide = self.wide();
        let d = &mut self.descs[g as usize];
        if n == 2 {
            put16(d, lo, v as u16);
            if wide {
                put16(d, hi, (v >> 16) as u16);
            }
        } else {
            put32(d, lo, v as u32);
            if wide {
                put32(d, hi, (v >> 32) as u32);
            }
        }
        self.dirty_desc.insert(g);
    }
    /// Group `g`'s block bitmap block.
    pub fn block_bitmap(&self, g: u64) -> u64 {
        self.field(g, 0x0, 0x20, 4)
    }
    fn inode_bitmap(&self, g: u64) -> u64 {
        self.field(g, 0x4, 0x24, 4)
    }
    fn inode_table(&self, g: u64) -> u64 {
        self.field(g, 0x8, 0x28, 4)
    }
    fn free_blocks_in(&self, g: u64) -> u64 {
        self.field(g, 0xc, 0x2c, 2)
    }
    fn free_inodes_in(&self, g: u64) -> u64 {
        self.field(g, 0xe, 0x2e, 2)
    }
    fn used_dirs(&self, g: u64) -> u64 {
        self.field(g, 0x10, 0x30, 2)
    }
    fn itable_unused(&self, g: u64) -> u64 {
        self.field(g, 0x1c, 0x32, 2)
    }
    fn flags(&self, g: u64) -> u16 {
        le16(&self.descs[g as usize], 0x12)
    }
    fn set_flags(&mut self, g: u64, f: u16) {
        put16(&mut self.descs[g as usize], 0x12, f);
        self.dirty_desc.insert(g);
    }
    /// Groups.
    pub fn groups(&self) -> u64 {
        self.descs.len() as u64
    }
}

impl Volume {
    /// Load what allocation needs: the superblock bytes and every group
    /// descriptor (their checksums are not verified here; e2fsck's job).
    pub(super) fn load_alloc(&self) -> Result<Alloc, Errno> {
        let mut sbraw = vec![0u8; 1024];
        self.disk.read_meta(super::layout::SB_OFFSET, &mut sbraw)?;
        let roc = le32(&sbraw, 0x64);
        let csum = if roc & ro_compat::METADATA_CSUM != 0 {
            Csum::Meta
        } else if roc & ro_compat::GDT_CSUM != 0 {
            Csum::Gdt16
        } else {
            Csum::None
        };
        let seed = if self.sb.incompat & super::layout::incompat::CSUM_SEED != 0 { le32(&sbraw, 0x270) } else { crc32c(!0, &sbraw[0x68..0x78]) };
        let groups = self.sb.groups();
        if groups > 1 << 20 {
            return Err(self.corrupt(&format!("{groups} block groups")));
        }
        let mut descs = Vec::with_capacity(groups as usize);
        for g in 0..groups {
            let (blk, off) = self.desc_location(g);
            if blk >= self.sb.blocks_count {
                return Err(self.corrupt(&format!("group {g}'s descriptor is outside the file system")));
            }
            let mut d = vec![0u8; self.sb.desc_size as usize];
            self.disk.read_meta(blk * self.sb.block_size + off, &mut d)?;
            descs.push(d);
        }
        let a = Alloc {
            free_blocks: self.sb.free_blocks,
            free_inodes: u64::from(self.sb.free_inodes),
            sbraw,
            descs,
            bb: BTreeMap::new(),
            ib: BTreeMap::new(),
            dirty_desc: BTreeSet::new(),
            dirty_bb: BTreeSet::new(),
            dirty_ib: BTreeSet::new(),
            bad: BTreeSet::new(),
            seed,
            csum,
            dirty_sb: false,
        };
        // The superblock's counts are a summary kept lazily by Linux: the
        // descriptors are the truth.
        let mut a = a;
        let (fb, fi) = (0..groups).fold((0u64, 0u64), |(b, i), g| (b + a.free_blocks_in(g), i + a.free_inodes_in(g)));
        if fb != a.free_blocks || fi != a.free_inodes {
            a.free_blocks = fb;
            a.free_inodes = fi;
            a.dirty_sb = true;
        }
        Ok(a)
    }

    fn group_first(&self, g: u64) -> u64 {
        u64::from(self.sb.first_data_block) + g * u64::from(self.sb.blocks_per_group)
    }
    fn group_blocks(&self, g: u64) -> u64 {
        (self.sb.blocks_count - self.group_first(g)).min(u64::from(self.sb.blocks_per_group))
    }

    /// Group `g`'s block bitmap, loaded (or computed) on first use;
    /// `false` if the group must not be allocated from.
    fn load_bb(&self, a: &mut Alloc, g: u64) -> Result<bool, Errno> {
        if a.bad.contains(&g) {
            return Ok(false);
        }
        if a.bb.contains_key(&g) {
            return Ok(true);
        }
        let bs = self.sb.block_size;
        let n = self.group_blocks(g);
        let mut b = vec![0u8; bs as usize];
        if a.csum != Csum::None && a.flags(g) & BLOCK_UNINIT != 0 {
            let first = self.group_first(g);
            let mut mark = |blk: u64| {
                if blk >= first && blk < first + n {
                    set_bit(&mut b, blk - first, true);
                }
            };
            let sparse = le32(&a.sbraw, 0x64) & ro_compat::SPARSE_SUPER != 0;
            let meta_bg = self.sb.incompat & super::layout::incompat::META_BG != 0;
            if meta_bg {
                // Where descriptor blocks sit under meta_bg is not worked out here.
                a.bad.insert(g);
                return Ok(false);
            }
            if !sparse || has_super_backup(g) {
                let per = bs / u64::from(self.sb.desc_size);
                let gdt = a.groups().div_ceil(per) + u64::from(le16(&a.sbraw, 0xce));
                for k in 0..=gdt {
                    mark(first + k);
                }
            }
            mark(a.block_bitmap(g));
            mark(a.inode_bitmap(g));
            let itb = (u64::from(self.sb.inodes_per_group) * u64::from(self.sb.inode_size)).div_ceil(bs);
            let t = a.inode_table(g);
            for k in 0..itb {
                mark(t + k);
            }
        } else {
            let blk = a.block_bitmap(g);
            if blk == 0 || blk >= self.sb.blocks_count {
                self.report(&format!("group {g}'s block bitmap is outside the file system"));
                a.bad.insert(g);
                return Ok(false);
            }
            self.disk.read_meta(blk * bs, &mut b)?;
        }
        // Bits past the group's blocks are set (Linux's padding).
        for i in n..bs * 8 {
            set_bit(&mut b, i, true);
        }
        let free = (0..n).filter(|&i| !bit(&b, i)).count() as u64;
        if free != a.free_blocks_in(g) {
            self.report(&format!("group {g}: block bitmap shows {free} free blocks, its descriptor {}; not allocating there", a.free_blocks_in(g)));
            a.bad.insert(g);
            return Ok(false);
        }
        a.bb.insert(g, b);
        Ok(true)
    }

    fn load_ib(&self, a: &mut Alloc, g: u64) -> Result<bool, Errno> {
        if a.ib.contains_key(&g) {
            return Ok(true);
        }
        let bs = self.sb.block_size;
        let ipg = u64::from(self.sb.inodes_per_group);
        let mut b = vec![0u8; bs as usize];
        if !(a.csum != Csum::None && a.flags(g) & INODE_UNINIT != 0) {
            let blk = a.inode_bitmap(g);
            if blk == 0 || blk >= self.sb.blocks_count {
                self.report(&format!("group {g}'s inode bitmap is outside the file system"));
                return Ok(false);
            }
            self.disk.read_meta(blk * bs, &mut b)?;
        }
        for i in ipg..bs * 8 {
            set_bit(&mut b, i, true);
        }
        let free = (0..ipg).filter(|&i| !bit(&b, i)).count() as u64;
        if free != a.free_inodes_in(g) {
            self.report(&format!("group {g}: inode bitmap shows {free} free inodes, its descriptor {}; not allocating there", a.free_inodes_in(g)));
            return Ok(false);
        }
        a.ib.insert(g, b);
        Ok(true)
    }

    /// Allocate up to `want` contiguous blocks, at `goal` or after it
    /// (then any group): `(first block, count)`. `ENOSPC` when full.
    pub(super) fn alloc_blocks(&self, goal: u64, want: u64) -> Result<(u64, u64), Errno> {
        let mut a = self.alloc.borrow_mut();
        let a = a.as_mut().ok_or(Errno::EROFS)?;
        if a.free_blocks == 0 || want == 0 {
            return Err(Errno::ENOSPC);
        }
        let bpg = u64::from(self.sb.blocks_per_group);
        let fdb = u64::from(self.sb.first_data_block);
        let goal = goal.clamp(fdb, self.sb.blocks_count - 1);
        let g0 = (goal - fdb) / bpg;
        let groups = a.groups();
        for k in 0..=groups {
            let g = (g0 + k) % groups;
            if a.free_blocks_in(g) == 0 || !self.load_bb(a, g)? {
                continue;
            }
            let n = self.group_blocks(g);
            let start = if k == 0 { goal - self.group_first(g) } else { 0 };
            let Some(b) = a.bb.get_mut(&g) else { continue };
            let Some(i) = (start..n).find(|&i| !bit(b, i)) else { continue };
            let mut len = 1;
            while len < want && i + len < n && !bit(b, i + len) {
                len += 1;
            }
            for j in i..i + len {
                set_bit(b, j, true);
            }
            a.dirty_bb.insert(g);
            let left = a.free_blocks_in(g) - len;
            a.set_field(g, 0xc, 0x2c, 2, left);
            let f = a.flags(g);
            if f & BLOCK_UNINIT != 0 {
                a.set_flags(g, f & !BLOCK_UNINIT);
            }
            a.free_blocks -= len;
            a.dirty_sb = true;
            return Ok((self.group_first(g) + i, len));
        }
        Err(Errno::ENOSPC)
    }

    /// Give `n` blocks from `first` back.
    pub(super) fn free_blocks(&self, first: u64, n: u64) -> Result<(), Errno> {
        if n == 0 {
            return Ok(());
        }
        let fdb = u64::from(self.sb.first_data_block);
        if first < fdb || first.checked_add(n).is_none_or(|e| e > self.sb.blocks_count) {
            return Err(self.corrupt(&format!("freeing blocks {first}+{n} outside the file system")));
        }
        self.disk.forget(first * self.sb.block_size, n * self.sb.block_size);
        let mut guard = self.alloc.borrow_mut();
        let a = guard.as_mut().ok_or(Errno::EROFS)?;
        let bpg = u64::from(self.sb.blocks_per_group);
        let mut blk = first;
        while blk < first + n {
            let g = (blk - fdb) / bpg;
            let gend = (self.group_first(g) + bpg).min(first + n);
            if !self.load_bb(a, g)? {
                return Err(self.corrupt(&format!("freeing blocks in group {g}, whose bitmap is not trusted")));
            }
            let gf = self.group_first(g);
            let mut freed = 0;
            if let Some(b) = a.bb.get_mut(&g) {
                for x in blk..gend {
                    if bit(b, x - gf) {
                        set_bit(b, x - gf, false);
                        freed += 1;
                    }
                }
            }
            if freed != gend - blk {
                self.report(&format!("freeing {} blocks from {blk} that were already free", gend - blk - freed));
            }
            a.dirty_bb.insert(g);
            let left = a.free_blocks_in(g) + freed;
            a.set_field(g, 0xc, 0x2c, 2, left);
            a.free_blocks += freed;
            a.dirty_sb = true;
            blk = gend;
        }
        Ok(())
    }

    /// Allocate an inode, near `near` (its parent): its number.
    pub(super) fn alloc_inode(&self, near: u32, dir: bool) -> Result<u32, Errno> {
        let mut guard = self.alloc.borrow_mut();
        let a = guard.as_mut().ok_or(Errno::EROFS)?;
        if a.free_inodes == 0 {
            return Err(Errno::ENOSPC);
        }
        let ipg = u64::from(self.sb.inodes_per_group);
        let groups = a.groups();
        let g0 = (u64::from(near.max(1)) - 1) / ipg % groups;
        let first_ino = u64::from(le32(&a.sbraw, 0x54)).max(11);
        for k in 0..groups {
            let g = (g0 + k) % groups;
            if a.free_inodes_in(g) == 0 || !self.load_ib(a, g)? {
                continue;
            }
            let start = if g == 0 { first_ino - 1 } else { 0 };
            let Some(b) = a.ib.get_mut(&g) else { continue };
            let Some(i) = (start..ipg).find(|&i| !bit(b, i)) else { continue };
            set_bit(b, i, true);
            a.dirty_ib.insert(g);
            let left = a.free_inodes_in(g) - 1;
            a.set_field(g, 0xe, 0x2e, 2, left);
            if dir {
                let d = a.used_dirs(g) + 1;
                a.set_field(g, 0x10, 0x30, 2, d);
            }
            if a.csum != Csum::None {
                let f = a.flags(g);
                if f & INODE_UNINIT != 0 {
                    a.set_flags(g, f & !INODE_UNINIT);
                }
                let used = ipg - a.itable_unused(g).min(ipg);
                if i >= used {
                    a.set_field(g, 0x1c, 0x32, 2, ipg - (i + 1));
                }
            }
            a.free_inodes -= 1;
            a.dirty_sb = true;
            return Ok((g * ipg + i + 1) as u32);
        }
        Err(Errno::ENOSPC)
    }

    /// Give inode `ino` back.
    pub(super) fn free_inode(&self, ino: u32, dir: bool) -> Result<(), Errno> {
        let mut guard = self.alloc.borrow_mut();
        let a = guard.as_mut().ok_or(Errno::EROFS)?;
        let ipg = u64::from(self.sb.inodes_per_group);
        let (g, i) = ((u64::from(ino) - 1) / ipg, (u64::from(ino) - 1) % ipg);
        if g >= a.groups() || !self.load_ib(a, g)? {
            return Err(self.corrupt(&format!("freeing inode {ino}, whose bitmap is not trusted")));
        }
        let Some(b) = a.ib.get_mut(&g) else { return Ok(()) };
        if !bit(b, i) {
            self.report(&format!("freeing inode {ino}, which was free"));
            return Ok(());
        }
        set_bit(b, i, false);
        a.dirty_ib.insert(g);
        let left = a.free_inodes_in(g) + 1;
        a.set_field(g, 0xe, 0x2e, 2, left);
        if dir {
            let d = a.used_dirs(g).saturating_sub(1);
            a.set_field(g, 0x10, 0x30, 2, d);
        }
        a.free_inodes += 1;
        a.dirty_sb = true;
        Ok(())
    }

    /// Write the changed bitmaps, descriptors and the superblock into the
    /// buffer cache, with their checksums. `state`: the superblock's
    /// `s_state` to record (`Some(true)`: cleanly unmounted).
    pub(super) fn flush_alloc(&self, clean: Option<bool>) -> Result<(), Errno> {
        let mut guard = self.alloc.borrow_mut();
        let Some(a) = guard.as_mut() else { return Ok(()) };
        let bs = self.sb.block_size;
        let wide = a.wide();
        for g in core::mem::take(&mut a.dirty_bb) {
            let Some(b) = a.bb.get(&g) else { continue };
            let blk = a.block_bitmap(g);
            self.disk.write_meta(blk * bs, b)?;
            if a.csum == Csum::Meta {
                let c = crc32c(a.seed, &b[..(self.sb.blocks_per_group / 8) as usize]);
                let d = &mut a.descs[g as usize];
                put16(d, 0x18, c as u16);
                if wide {
                    put16(d, 0x38, (c >> 16) as u16);
                }
                a.dirty_desc.insert(g);
            }
        }
        for g in core::mem::take(&mut a.dirty_ib) {
            let Some(b) = a.ib.get(&g) else { continue };
            let blk = a.inode_bitmap(g);
            self.disk.write_meta(blk * bs, b)?;
            if a.csum == Csum::Meta {
                let c = crc32c(a.seed, &b[..(self.sb.inodes_per_group / 8) as usize]);
                let d = &mut a.descs[g as usize];
                put16(d, 0x1a, c as u16);
                if wide {
                    put16(d, 0x3a, (c >> 16) as u16);
                }
                a.dirty_desc.insert(g);
            }
        }
        for g in core::mem::take(&mut a.dirty_desc) {
            let ds = self.sb.desc_size as usize;
            let d = &mut a.descs[g as usize];
            let le_g = (g as u32).to_le_bytes();
            match a.csum {
                Csum::Meta => {
                    let mut c = crc32c(a.seed, &le_g);
                    c = crc32c(c, &d[..0x1e]);
                    c = crc32c(c, &[0, 0]);
                    c = crc32c(c, &d[0x20..ds]);
                    put16(d, 0x1e, c as u16);
                }
                Csum::Gdt16 => {
                    let mut c = crc16(!0, &a.sbraw[0x68..0x78]);
                    c = crc16(c, &le_g);
                    c = crc16(c, &d[..0x1e]);
                    if wide {
                        c = crc16(c, &d[0x20..ds]);
                    }
                    put16(d, 0x1e, c);
                }
                Csum::None => {}
            }
            let (blk, off) = self.desc_location(g);
            self.disk.write_meta(blk * bs + off, d)?;
        }
        if a.dirty_sb || clean.is_some() {
            let s = &mut a.sbraw;
            put32(s, 0xc, a.free_blocks as u32);
            put32(s, 0x10, a.free_inodes as u32);
            if self.sb.incompat & super::layout::incompat::BIT64 != 0 {
                put32(s, 0x158, (a.free_blocks >> 32) as u32);
            }
            if let Some(clean) = clean {
                let st = le16(s, 0x3a);
                put16(s, 0x3a, if clean { st | 1 } else { st & !1 });
            }
            if a.csum == Csum::Meta {
                let c = crc32c(!0, &s[..0x3fc]);
                put32(s, 0x3fc, c);
            }
            self.disk.write_meta(super::layout::SB_OFFSET, s)?;
            a.dirty_sb = false;
        }
        Ok(())
    }

    /// The seed of inode checksums and the checksum kind (`None`: none kept).
    pub(super) fn csum_seed(&self) -> Option<u32> {
        self.alloc.borrow().as_ref().filter(|a| a.csum == Csum::Meta).map(|a| a.seed)
    }

    /// Free blocks and inodes as the allocator counts them.
    pub(super) fn free_counts(&self) -> Option<(u64, u64)> {
        self.alloc.borrow().as_ref().map(|a| (a.free_blocks, a.free_inodes))
    }
}
