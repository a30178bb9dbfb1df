//! Writing ext4: inodes, extent trees, file data, directory entries, and
//! the operations the VFS asks for (create, unlink, link, rename, sync).
//!
//! There is no journal: metadata changes collect in the disk's buffer
//! cache (and the allocator's bitmaps) and reach the disk at each sync,
//! `fsync`, unmount and shutdown, or when the buffer cache holds too many
//! dirty units; file data goes to the disk at once (to blocks the on-disk
//! bitmaps do not show as used until the next sync). After a crash the
//! disk needs `e2fsck -fy`, as ext2 does; the superblock says so (its
//! "cleanly unmounted" bit is clear while the file system is mounted
//! read-write).
//!
//! Directories are kept linear: a directory with an htree index that gets
//! changed has its index blocks turned into empty entry blocks and its
//! index flag cleared (what Linux's own fallback leaves, and what e2fsck
//! accepts); lookups never used the index anyway.

use alloc::format;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use linux_raw_sys::general as g;

use super::csum::crc32c;
use super::layout::{self, incompat, ro_compat, Extent};
use super::{node, BlockMap, Node, NodeState, Volume, VolumeRef};
use crate::block::DiskOwner;
use crate::fs::inode::{Inode, InodeRef, Kind};
use crate::fs::path::name_to_bytes;
use crate::Errno;

/// `i_flags`: the directory has an htree index.
const INDEX_FL: u32 = 0x1000;
/// Longest extent of written blocks.
const MAX_LEN: u32 = 32768;
/// Longest name in a directory entry.
const NAME_MAX: usize = 255;

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// (seconds field, extra field) of a time in ns.
fn encode_time(ns: u64) -> (u32, u32) {
    let secs = (ns / 1_000_000_000) as i64;
    let nsec = (ns % 1_000_000_000) as u32;
    let lo = secs as u32;
    let epoch = ((secs - i64::from(lo as i32)) >> 32) as u32 & 3;
    (lo, nsec << 2 | epoch)
}

/// Bytes a directory entry with a name of `n` bytes needs.
fn rec_size(n: usize) -> usize {
    (8 + n + 3) & !3
}

/// ext4's file type of an entry for mode `mode`.
fn ftype_of(mode: u32) -> u8 {
    match mode & g::S_IFMT {
        g::S_IFREG => 1,
        g::S_IFDIR => 2,
        g::S_IFCHR => 3,
        g::S_IFBLK => 4,
        g::S_IFIFO => 5,
        g::S_IFSOCK => 6,
        g::S_IFLNK => 7,
        _ => 0,
    }
}

/// An empty extent root (depth 0, room for 4).
fn empty_root() -> [u8; 60] {
    let mut r = [0u8; 60];
    put16(&mut r, 0, 0xf30a);
    put16(&mut r, 4, 4);
    r
}

/// What a new inode is.
pub enum NewKind<'a> {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the target.
    Symlink(&'a str),
}

/// Remove logical blocks `[from, to)` from `map`, splitting extents; the
/// physical runs that left.
fn unmap_range(map: &mut BlockMap, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut freed = Vec::new();
    let mut out = Vec::with_capacity(map.len());
    for e in map.drain(..) {
        let (s, end) = (u64::from(e.lblk), u64::from(e.lblk) + u64::from(e.len));
        if end <= from || s >= to {
            out.push(e);
            continue;
        }
        let (cs, ce) = (s.max(from), end.min(to));
        freed.push((e.pblk + (cs - s), ce - cs));
        if s < cs {
            out.push(Extent { lblk: e.lblk, len: (cs - s) as u32, pblk: e.pblk, unwritten: e.unwritten });
        }
        if ce < end {
            out.push(Extent { lblk: ce as u32, len: (end - ce) as u32, pblk: e.pblk + (ce - s), unwritten: e.unwritten });
        }
    }
    *map = out;
    freed
}

/// Put `(lblk, len, pblk)` (written) into `map` (the range is a hole),
/// merged with its neighbour when contiguous.
fn map_insert(map: &mut BlockMap, lblk: u64, len: u64, pblk: u64) {
    let i = map.partition_point(|e| u64::from(e.lblk) < lblk);
    if i > 0 {
        let p = &mut map[i - 1];
        if !p.unwritten && u64::from(p.lblk) + u64::from(p.len) == lblk && p.pblk + u64::from(p.len) == pblk && u64::from(p.len) + len <= u64::from(MAX_LEN) {
            p.len += len as u32;
            return;
        }
    }
    map.insert(i, Extent { lblk: lblk as u32, len: len as u32, pblk, unwritten: false });
}

impl Volume {
    /// Is the mount read-write?
    pub fn writable(&self) -> bool {
        self.alloc.borrow().is_some()
    }

    fn check_rw(&self) -> Result<(), Errno> {
        if self.writable() {
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    /// Why the file system cannot be written by this driver, if it cannot.
    fn write_refusal(&self) -> Option<alloc::string::String> {
        let s = &self.sb;
        if self.disk.read_only() {
            return Some(format!("{} is read-only", self.disk.name));
        }
        if s.incompat & incompat::RECOVER != 0 {
            return Some("the journal needs recovery".into());
        }
        if s.incompat & incompat::EXTENTS == 0 {
            return Some("no extents (ext2/ext3): written only read-only".into());
        }
        let inc = s.incompat & !layout::INCOMPAT_WRITABLE;
        if inc != 0 {
            return Some(format!("incompatible features {inc:#x} are not written by this driver"));
        }
        let roc = s.ro_compat & !ro_compat::WRITABLE;
        if roc != 0 {
            return Some(format!("read-only-compatible features {roc:#x} are not kept by this driver"));
        }
        None
    }

    /// Make the mount read-write: `EROFS` (and one kernel log line) when
    /// the disk or the file system's features do not allow it.
    pub fn enable_write(self: &Rc<Self>) -> Result<(), Errno> {
        if self.writable() {
            return Ok(());
        }
        if let Some(why) = self.write_refusal() {
            self.disk.report(&format!("EXT4-fs ({}): mounting read-only: {why}", self.disk.name));
            return Err(Errno::EROFS);
        }
        let a = self.load_alloc()?;
        *self.alloc.borrow_mut() = Some(a);
        // Not cleanly unmounted from now until unmount: after a crash the
        // host's e2fsck checks it.
        let r = self.flush_alloc(Some(false)).and_then(|_| self.disk.writeback()).and_then(|_| self.disk.flush());
        if let Err(e) = r {
            *self.alloc.borrow_mut() = None;
            return Err(e);
        }
        let w: alloc::rc::Weak<dyn DiskOwner> = Rc::downgrade(&(self.clone() as Rc<dyn DiskOwner>));
        self.disk.set_owner(Some(w));
        let live: Vec<(u32, InodeRef)> = self.icache.borrow().iter().filter_map(|(&i, w)| w.upgrade().map(|n| (i, n))).collect();
        self.pinned.borrow_mut().extend(live);
        Ok(())
    }

    /// Back to read-only (`remount,ro`): everything written, marked clean.
    pub fn disable_write(&self) -> Result<(), Errno> {
        if !self.writable() {
            return Ok(());
        }
        self.unmount_sync()?;
        *self.alloc.borrow_mut() = None;
        self.disk.set_owner(None);
        Ok(())
    }

    /// Let the inodes go (unmount, read-only): they are written.
    fn unpin_all(&self) {
        let pinned = core::mem::take(&mut *self.pinned.borrow_mut());
        drop(pinned);
    }

    fn unmount_sync(&self) -> Result<(), Errno> {
        self.sync_nodes()?;
        self.unpin_all();
        // Inodes freed as they went (unlinked while open) are in now.
        self.flush_alloc(Some(true))?;
        self.disk.writeback()?;
        self.disk.flush()
    }

    /// The checksum seed of inode `ino` (from its generation).
    fn inode_seed(&self, seed: u32, ino: u32, bytes: &[u8]) -> u32 {
        crc32c(crc32c(seed, &ino.to_le_bytes()), &bytes[0x64..0x68])
    }

    /// Write `st` (its `raw` fields) as inode `ino` into the buffer cache.
    pub(super) fn store_inode(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        let r = &st.raw;
        let b = &mut st.bytes;
        put16(b, 0x0, r.mode);
        put16(b, 0x2, r.uid as u16);
        put16(b, 0x78, (r.uid >> 16) as u16);
        put16(b, 0x18, r.gid as u16);
        put16(b, 0x7a, (r.gid >> 16) as u16);
        put32(b, 0x4, r.size as u32);
        put32(b, 0x6c, (r.size >> 32) as u32);
        put16(b, 0x1a, r.links);
        put32(b, 0x1c, r.blocks as u32);
        put16(b, 0x74, (r.blocks >> 32) as u16);
        put32(b, 0x20, r.flags);
        b[0x28..0x64].copy_from_slice(&r.block);
        let isize = b.len();
        let extra = if isize > 128 { usize::from(le16(b, 0x80)) } else { 0 };
        for (ns, at, ex) in [(r.atime_ns, 0x8, 0x8c), (r.ctime_ns, 0xc, 0x84), (r.mtime_ns, 0x10, 0x88)] {
            let (lo, hi) = encode_time(ns);
            put32(b, at, lo);
            if 128 + extra >= ex + 4 && ex + 4 <= isize {
                put32(b, ex, hi);
            }
        }
        if let Some(seed) = self.csum_seed() {
            let has_hi = 128 + extra >= 0x84 && isize >= 0x84;
            put16(b, 0x7c, 0);
            if has_hi {
                put16(b, 0x82, 0);
            }
            let c = crc32c(self.inode_seed(seed, ino, b), b);
            put16(b, 0x7c, c as u16);
            if has_hi {
                put16(b, 0x82, (c >> 16) as u16);
            }
        }
        let off = self.inode_offset(ino)?;
        self.disk.write_meta(off, b)?;
        st.dirty = false;
        Ok(())
    }

    /// Write the extent tree of `st.map`: in the inode while 4 extents
    /// fit, else leaves (and index blocks) below it, reusing the tree's
    /// blocks; updates `i_blocks`.
    fn commit_map(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        let bs = self.sb.block_size as usize;
        let per = (bs - 12) / 12;
        let n = st.map.as_ref().map_or(0, Vec::len);
        let mut levels = Vec::new();
        let mut cnt = n;
        while cnt > 4 {
            cnt = cnt.div_ceil(per);
            levels.push(cnt);
        }
        let total: usize = levels.iter().sum();
        while st.tree.len() < total {
            let goal = st.tree.last().map(|b| b + 1).or_else(|| st.map.as_ref().and_then(|m| m.first()).map(|e| e.pblk)).unwrap_or(0);
            let (b, _) = self.alloc_blocks(goal, 1)?;
            st.tree.push(b);
        }
        while st.tree.len() > total {
            if let Some(b) = st.tree.pop() {
                self.free_blocks(b, 1)?;
            }
        }
        let map = st.map.as_ref().map_or(&[][..], |m| &m[..]);
        let mut entries: Vec<(u32, [u8; 12])> = map
            .iter()
            .map(|e| {
                let mut x = [0u8; 12];
                put32(&mut x, 0, e.lblk);
                put16(&mut x, 4, if e.unwritten { e.len as u16 + MAX_LEN as u16 } else { e.len as u16 });
                put16(&mut x, 6, (e.pblk >> 32) as u16);
                put32(&mut x, 8, e.pblk as u32);
                (e.lblk, x)
            })
            .collect();
        let seed = self.csum_seed().map(|s| self.inode_seed(s, ino, &st.bytes));
        let mut next = 0;
        for depth in 0..levels.len() {
            let mut up = Vec::new();
            for chunk in entries.chunks(per) {
                let blk = st.tree[next];
                next += 1;
                let mut b = vec![0u8; bs];
                put16(&mut b, 0, 0xf30a);
                put16(&mut b, 2, chunk.len() as u16);
                put16(&mut b, 4, per as u16);
                put16(&mut b, 6, depth as u16);
                for (k, (_, e)) in chunk.iter().enumerate() {
                    b[12 + 12 * k..24 + 12 * k].copy_from_slice(e);
                }
                if let Some(s) = seed {
                    let t = 12 + 12 * per;
                    let c = crc32c(s, &b[..t]);
                    put32(&mut b, t, c);
                }
                self.disk.write_meta(blk * bs as u64, &b)?;
                let mut x = [0u8; 12];
                put32(&mut x, 0, chunk[0].0);
                put32(&mut x, 4, blk as u32);
                put16(&mut x, 8, (blk >> 32) as u16);
                up.push((chunk[0].0, x));
            }
            entries = up;
        }
        let mut root = empty_root();
        put16(&mut root, 2, entries.len() as u16);
        put16(&mut root, 6, levels.len() as u16);
        for (k, (_, e)) in entries.iter().enumerate() {
            root[12 + 12 * k..24 + 12 * k].copy_from_slice(e);
        }
        st.raw.block = root;
        st.raw.flags |= layout::EXTENTS_FL;
        let data: u64 = map.iter().map(|e| u64::from(e.len)).sum();
        let acl = u64::from(le32(&st.bytes, 0x68)) | u64::from(le16(&st.bytes, 0x76)) << 32;
        st.raw.blocks = (data + st.tree.len() as u64 + u64::from(acl != 0)) * (bs as u64 / 512);
        st.dirty = true;
        Ok(())
    }

    /// Where a new file's blocks should go: after its last block, else in
    /// its inode's group.
    fn goal_for(&self, ino: u32, map: &BlockMap, lblk: u64) -> u64 {
        let i = map.partition_point(|e| u64::from(e.lblk) < lblk);
        if i > 0 {
            let p = &map[i - 1];
            return p.pblk + (lblk - u64::from(p.lblk));
        }
        let g = (u64::from(ino) - 1) / u64::from(self.sb.inodes_per_group);
        u64::from(self.sb.first_data_block) + g * u64::from(self.sb.blocks_per_group)
    }

    fn can_map(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        self.check_rw()?;
        if st.raw.flags & layout::EXTENTS_FL == 0 {
            if st.raw.blocks == 0 && st.raw.size == 0 {
                st.raw.flags |= layout::EXTENTS_FL;
                st.raw.block = empty_root();
                st.map = Some(Vec::new());
                st.tree.clear();
            } else {
                self.report(&format!("inode {ino}: writing files mapped by block pointers is not supported"));
                return Err(Errno::EIO);
            }
        }
        self.ensure_map(ino, st)
    }

    /// Write `data` at `off` into regular file `ino` (blocks allocated as
    /// needed; the size grows to cover it).
    pub(super) fn write_file(&self, ino: u32, st: &mut NodeState, off: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        self.can_map(ino, st)?;
        let bs = self.sb.block_size;
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end.div_ceil(bs) > u64::from(u32::MAX) {
            return Err(Errno::EFBIG);
        }
        let (first, last) = (off / bs, end.div_ceil(bs));
        let mut map = st.map.take().unwrap_or_default();
        // (physical block, logical block, blocks, freshly allocated)
        let mut runs: Vec<(u64, u64, u64, bool)> = Vec::new();
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        let mut changed = false;
        let mut lb = first;
        let mut result = Ok(());
        while lb < last {
            let i = map.partition_point(|e| u64::from(e.lblk) + u64::from(e.len) <= lb);
            match map.get(i).copied() {
                Some(e) if u64::from(e.lblk) <= lb => {
                    if e.unwritten {
                        // Written whole: zeros where the write does not go.
                        let z = vec![0u8; bs as usize];
                        let mut r = Ok(());
                        for k in 0..u64::from(e.len) {
                            r = r.and_then(|_| self.disk.write_data(&[((e.pblk + k) * bs, &z[..])]));
                        }
                        if let Err(err) = r {
                            result = Err(err);
                            break;
                        }
                        map[i].unwritten = false;
                        changed = true;
                        continue;
                    }
                    let n = (u64::from(e.lblk) + u64::from(e.len)).min(last) - lb;
                    runs.push((e.pblk + (lb - u64::from(e.lblk)), lb, n, false));
                    lb += n;
                }
                next => {
                    let stop = next.map_or(last, |e| u64::from(e.lblk).min(last));
                    let goal = self.goal_for(ino, &map, lb);
                    match self.alloc_blocks(goal, (stop - lb).min(u64::from(MAX_LEN))) {
                        Ok((p, n)) => {
                            map_insert(&mut map, lb, n, p);
                            fresh.push((lb, n));
                            runs.push((p, lb, n, true));
                            changed = true;
                            lb += n;
                        }
                        Err(err) => {
                            result = Err(err);
                            break;
                        }
                    }
                }
            }
        }
        if let Err(e) = result {
            // Give back what this write allocated; nothing else changed.
            for (l, n) in fresh {
                for (p, k) in unmap_range(&mut map, l, l + n) {
                    let _ = self.free_blocks(p, k);
                }
            }
            st.map = Some(map);
            if changed {
                self.commit_map(ino, st)?;
            }
            return Err(e);
        }
        st.map = Some(map);
        // The bytes of each run: whole blocks, partial ones read first.
        let mut bufs: Vec<(u64, Vec<u8>)> = Vec::with_capacity(runs.len());
        for &(p, l, n, is_fresh) in &runs {
            let mut buf = vec![0u8; (n * bs) as usize];
            let start = l * bs;
            if !is_fresh {
                if off > start {
                    self.disk.read_data(&mut [(p * bs, &mut buf[..bs as usize])])?;
                }
                let tail = (l + n - 1) * bs;
                if end < tail + bs && (n > 1 || off <= start) {
                    let at = (tail - start) as usize;
                    self.disk.read_data(&mut [((p + n - 1) * bs, &mut buf[at..at + bs as usize])])?;
                }
            }
            let lo = off.max(start);
            let hi = end.min(start + n * bs);
            buf[(lo - start) as usize..(hi - start) as usize].copy_from_slice(&data[(lo - off) as usize..(hi - off) as usize]);
            bufs.push((p * bs, buf));
        }
        let io: Vec<(u64, &[u8])> = bufs.iter().map(|(o, b)| (*o, &b[..])).collect();
        self.disk.write_data(&io)?;
        if end > st.raw.size {
            st.raw.size = end;
            st.dirty = true;
        }
        if changed {
            self.commit_map(ino, st)?;
        }
        self.maybe_writeback();
        Ok(())
    }

    /// Set regular file `ino`'s size to `len` (blocks past it freed, the
    /// rest of its last block zeroed).
    pub(super) fn truncate_file(&self, ino: u32, st: &mut NodeState, len: u64) -> Result<(), Errno> {
        if len == st.raw.size {
            return Ok(());
        }
        self.can_map(ino, st)?;
        let bs = self.sb.block_size;
        if len.div_ceil(bs) > u64::from(u32::MAX) {
            return Err(Errno::EFBIG);
        }
        if len < st.raw.size {
            let mut map = st.map.take().unwrap_or_default();
            let freed = unmap_range(&mut map, len.div_ceil(bs), u64::MAX);
            if !len.is_multiple_of(bs) {
                let lb = len / bs;
                if let Some(e) = map.iter().find(|e| u64::from(e.lblk) <= lb && lb < u64::from(e.lblk) + u64::from(e.len) && !e.unwritten) {
                    let p = e.pblk + (lb - u64::from(e.lblk));
                    let mut b = vec![0u8; bs as usize];
                    self.disk.read_data(&mut [(p * bs, &mut b[..])])?;
                    b[(len % bs) as usize..].fill(0);
                    self.disk.write_data(&[(p * bs, &b[..])])?;
                }
            }
            st.map = Some(map);
            for (p, n) in &freed {
                self.free_blocks(*p, *n)?;
            }
            if !freed.is_empty() {
                self.commit_map(ino, st)?;
            }
        }
        st.raw.size = len;
        st.dirty = true;
        self.maybe_writeback();
        Ok(())
    }

    /// Past the buffer cache's dirty limit: write everything back.
    fn maybe_writeback(&self) {
        let (dirty, limit) = self.disk.dirty_units();
        if dirty > limit {
            let _ = self.flush_alloc(None).and_then(|_| self.disk.writeback());
        }
    }

    // ------------------------------------------------------------ directories

    fn dir_usable(&self) -> usize {
        self.sb.block_size as usize - if self.csum_seed().is_some() { 12 } else { 0 }
    }

    /// Block `lblk` of directory `st`: (physical block, bytes).
    fn dir_block(&self, ino: u32, st: &NodeState, lblk: u64) -> Result<(u64, Vec<u8>), Errno> {
        let map = st.map.as_ref().ok_or(Errno::EIO)?;
        let e = map
            .iter()
            .find(|e| u64::from(e.lblk) <= lblk && lblk < u64::from(e.lblk) + u64::from(e.len) && !e.unwritten)
            .ok_or_else(|| self.corrupt(&format!("directory inode {ino} has a hole at block {lblk}")))?;
        let p = e.pblk + (lblk - u64::from(e.lblk));
        let mut b = vec![0u8; self.sb.block_size as usize];
        self.read_block_meta(p, &mut b)?;
        Ok((p, b))
    }

    fn put_dir_block(&self, ino: u32, st: &NodeState, p: u64, b: &mut [u8]) -> Result<(), Errno> {
        if let Some(seed) = self.csum_seed() {
            let bs = b.len();
            let t = bs - 12;
            b[t..].fill(0);
            put16(b, t + 4, 12);
            b[t + 7] = 0xde;
            let c = crc32c(self.inode_seed(seed, ino, &st.bytes), &b[..t]);
            put32(b, t + 8, c);
        }
        self.disk.write_meta(p * self.sb.block_size, b)
    }

    /// The entries of one block: (offset, inode, rec_len, name_len).
    fn entries(&self, ino: u32, b: &[u8]) -> Result<Vec<(usize, u32, usize, usize)>, Errno> {
        let usable = self.dir_usable();
        let mut out = Vec::new();
        let mut at = 0;
        while at < usable {
            if at + 8 > usable {
                return Err(self.corrupt(&format!("directory inode {ino}: entry past the end of a block at offset {at}")));
            }
            let (e, rec, nl) = (le32(b, at), usize::from(le16(b, at + 4)), usize::from(b[at + 6]));
            if rec < 8 || rec % 4 != 0 || at + rec > usable || (e != 0 && 8 + nl > rec) {
                return Err(self.corrupt(&format!("directory inode {ino}: bad entry at offset {at}")));
            }
            out.push((at, e, rec, nl));
            at += rec;
        }
        Ok(out)
    }

    /// Turn an htree directory into a linear one (its index blocks become
    /// empty entry blocks), before changing it.
    fn unindex(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        self.ensure_map(ino, st)?;
        if st.raw.flags & INDEX_FL == 0 {
            return Ok(());
        }
        let bs = self.sb.block_size as usize;
        let usable = self.dir_usable();
        for lblk in 0..st.raw.size / bs as u64 {
            let (p, b) = self.dir_block(ino, st, lblk)?;
            let mut nb = vec![0u8; bs];
            if lblk == 0 {
                let (dot, dotdot) = (le32(&b, 0), le32(&b, 12));
                put32(&mut nb, 0, dot);
                put16(&mut nb, 4, 12);
                nb[6] = 1;
                nb[7] = 2;
                nb[8] = b'.';
                put32(&mut nb, 12, dotdot);
                put16(&mut nb, 16, (usable - 12) as u16);
                nb[18] = 2;
                nb[19] = 2;
                nb[20] = b'.';
                nb[21] = b'.';
            } else if le32(&b, 0) == 0 && (usize::from(le16(&b, 4)) == bs || le16(&b, 4) == 0) {
                put16(&mut nb, 4, usable as u16);
            } else {
                continue;
            }
            self.put_dir_block(ino, st, p, &mut nb)?;
        }
        st.raw.flags &= !INDEX_FL;
        st.dirty = true;
        Ok(())
    }

    /// Add entry `name` → `child` to directory `ino`.
    fn add_entry(&self, ino: u32, st: &mut NodeState, name: &[u8], child: u32, ft: u8) -> Result<(), Errno> {
        self.unindex(ino, st)?;
        let bs = self.sb.block_size;
        let need = rec_size(name.len());
        let write_entry = |b: &mut [u8], at: usize, rec: usize| {
            put32(b, at, child);
            put16(b, at + 4, rec as u16);
            b[at + 6] = name.len() as u8;
            b[at + 7] = if self.sb.incompat & incompat::FILETYPE != 0 { ft } else { 0 };
            b[at + 8..at + 8 + name.len()].copy_from_slice(name);
        };
        let nblocks = st.raw.size / bs;
        for lblk in 0..nblocks {
            let (p, mut b) = self.dir_block(ino, st, lblk)?;
            for (at, e, rec, nl) in self.entries(ino, &b)? {
                let used = if e == 0 { 0 } else { rec_size(nl) };
                if rec - used >= need {
                    if e == 0 {
                        write_entry(&mut b, at, rec);
                    } else {
                        put16(&mut b, at + 4, used as u16);
                        write_entry(&mut b, at + used, rec - used);
                    }
                    return self.put_dir_block(ino, st, p, &mut b);
                }
            }
        }
        // A new block at the end.
        let mut map = st.map.take().unwrap_or_default();
        let goal = self.goal_for(ino, &map, nblocks);
        let r = self.alloc_blocks(goal, 1);
        let (p, _) = match r {
            Ok(x) => x,
            Err(e) => {
                st.map = Some(map);
                return Err(e);
            }
        };
        map_insert(&mut map, nblocks, 1, p);
        st.map = Some(map);
        let mut b = vec![0u8; bs as usize];
        write_entry(&mut b, 0, self.dir_usable());
        self.put_dir_block(ino, st, p, &mut b)?;
        st.raw.size += bs;
        self.commit_map(ino, st)
    }

    /// Remove entry `name` from directory `ino`.
    fn remove_entry(&self, ino: u32, st: &mut NodeState, name: &[u8]) -> Result<(), Errno> {
        self.unindex(ino, st)?;
        for lblk in 0..st.raw.size / self.sb.block_size {
            let (p, mut b) = self.dir_block(ino, st, lblk)?;
            let mut prev: Option<(usize, usize)> = None;
            for (at, e, rec, nl) in self.entries(ino, &b)? {
                if e != 0 && &b[at + 8..at + 8 + nl] == name {
                    match prev {
                        Some((pa, prec)) => put16(&mut b, pa + 4, (prec + rec) as u16),
                        None => put32(&mut b, at, 0),
                    }
                    return self.put_dir_block(ino, st, p, &mut b);
                }
                prev = Some((at, rec));
            }
        }
        Err(Errno::ENOENT)
    }

    /// Point entry `name` of directory `ino` at `child`.
    fn set_entry(&self, ino: u32, st: &mut NodeState, name: &[u8], child: u32, ft: u8) -> Result<(), Errno> {
        self.unindex(ino, st)?;
        for lblk in 0..st.raw.size / self.sb.block_size {
            let (p, mut b) = self.dir_block(ino, st, lblk)?;
            for (at, e, _, nl) in self.entries(ino, &b)? {
                if e != 0 && &b[at + 8..at + 8 + nl] == name {
                    put32(&mut b, at, child);
                    if self.sb.incompat & incompat::FILETYPE != 0 {
                        b[at + 7] = ft;
                    }
                    return self.put_dir_block(ino, st, p, &mut b);
                }
            }
        }
        Err(Errno::ENOENT)
    }

    /// Does directory `st` hold anything but `.` and `..` (on the disk)?
    fn dir_has_entries(&self, ino: u32, st: &mut NodeState) -> Result<bool, Errno> {
        Ok(self.read_dir(ino, st)?.iter().any(|(_, n, _)| n != b"." && n != b".."))
    }

    /// Free inode `ino` and everything it holds (its last link and last
    /// reference are gone).
    fn release_inode(&self, ino: u32, st: &mut NodeState) -> Result<(), Errno> {
        self.check_rw()?;
        let dir = u32::from(st.raw.mode) & g::S_IFMT == g::S_IFDIR;
        if st.raw.flags & layout::EXTENTS_FL != 0 {
            self.ensure_map(ino, st)?;
            for e in st.map.take().unwrap_or_default() {
                self.free_blocks(e.pblk, u64::from(e.len))?;
            }
            for b in core::mem::take(&mut st.tree) {
                self.free_blocks(b, 1)?;
            }
            st.raw.block = empty_root();
        } else if st.raw.blocks != 0 && u32::from(st.raw.mode) & g::S_IFMT != g::S_IFLNK {
            self.report(&format!("inode {ino}: freeing a file mapped by block pointers leaves its blocks in use"));
        }
        let acl = u64::from(le32(&st.bytes, 0x68)) | u64::from(le16(&st.bytes, 0x76)) << 32;
        if acl != 0 && acl < self.sb.blocks_count {
            let bs = self.sb.block_size as usize;
            let mut b = vec![0u8; bs];
            self.read_block_meta(acl, &mut b)?;
            let refs = le32(&b, 4);
            if le32(&b, 0) == 0xea02_0000 && refs > 1 {
                put32(&mut b, 4, refs - 1);
                if let Some(seed) = self.csum_seed() {
                    put32(&mut b, 0x10, 0);
                    let c = crc32c(crc32c(seed, &acl.to_le_bytes()), &b);
                    put32(&mut b, 0x10, c);
                }
                self.disk.write_meta(acl * bs as u64, &b)?;
            } else {
                self.free_blocks(acl, 1)?;
            }
            put32(&mut st.bytes, 0x68, 0);
            put16(&mut st.bytes, 0x76, 0);
        }
        st.raw.links = 0;
        st.raw.size = 0;
        st.raw.blocks = 0;
        put32(&mut st.bytes, 0x14, encode_time(self.now.get()).0.max(1));
        self.store_inode(ino, st)?;
        self.free_inode(ino, dir)
    }

    /// Bring inode `node`'s on-disk copy up to date with its VFS metadata.
    fn sync_node(&self, inode: &Inode) -> Result<(), Errno> {
        let Some(n) = node(inode) else { return Ok(()) };
        let m = *inode.meta.borrow();
        let Ok(mut st) = n.st.try_borrow_mut() else { return Ok(()) };
        if st.deleted {
            return Ok(());
        }
        let r = &mut st.raw;
        let dir = u32::from(r.mode) & g::S_IFMT == g::S_IFDIR;
        let links = if dir && m.nlink > 65000 { 1 } else { m.nlink.min(65000) as u16 };
        let mode = (r.mode & 0o170000) | (m.perm & 0o7777) as u16;
        let changed = r.mode != mode || r.uid != m.uid || r.gid != m.gid || r.links != links || r.atime_ns != m.atime_ns || r.mtime_ns != m.mtime_ns || r.ctime_ns != m.ctime_ns;
        if changed {
            r.mode = mode;
            r.uid = m.uid;
            r.gid = m.gid;
            r.links = links;
            r.atime_ns = m.atime_ns;
            r.mtime_ns = m.mtime_ns;
            r.ctime_ns = m.ctime_ns;
        }
        if changed || st.dirty {
            self.store_inode(n.ino, &mut st)?;
        }
        Ok(())
    }

    /// Every live inode's changes into the buffer cache.
    fn sync_nodes(&self) -> Result<(), Errno> {
        let live: Vec<InodeRef> = self.icache.borrow().values().filter_map(alloc::sync::Weak::upgrade).collect();
        let mut first = Ok(());
        for i in &live {
            if let Err(e) = self.sync_node(i) {
                first = first.and(Err(e));
            }
        }
        drop(live);
        first
    }
}

impl DiskOwner for Volume {
    fn sync_fs(&self) -> Result<(), Errno> {
        if !self.writable() {
            return Ok(());
        }
        self.sync_nodes()?;
        self.flush_alloc(None)
    }
    fn unmount(&self) -> Result<(), Errno> {
        if !self.writable() {
            return Ok(());
        }
        self.unmount_sync()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let Ok(mut st) = self.st.try_borrow_mut() else { return };
        let r = if st.deleted {
            self.vol.release_inode(self.ino, &mut st)
        } else if st.dirty && self.vol.writable() {
            self.vol.store_inode(self.ino, &mut st)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            self.vol.report(&format!("inode {}: not written back: {}", self.ino, e.name()));
        }
    }
}

fn ext4_node(i: &Inode) -> Result<&Node, Errno> {
    node(i).ok_or(Errno::EXDEV)
}

fn name_bytes(name: &str) -> Result<Vec<u8>, Errno> {
    let b = name_to_bytes(name).into_owned();
    if b.is_empty() {
        return Err(Errno::ENOENT);
    }
    if b.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(b)
}

fn type_bits(i: &Inode) -> u32 {
    match &i.kind {
        Kind::Dir(_) => g::S_IFDIR,
        Kind::File(_) => g::S_IFREG,
        Kind::Symlink(_) => g::S_IFLNK,
        _ => node(i).map_or(0, |n| u32::from(n.st.borrow().raw.mode) & g::S_IFMT),
    }
}

/// Is `dir` on an ext4 file system?
pub fn is_ext4(dir: &Inode) -> bool {
    node(dir).is_some()
}

/// The volume of `i`, writable (`EROFS` otherwise).
fn rw_volume(i: &Inode, now: u64) -> Result<VolumeRef, Errno> {
    let n = ext4_node(i)?;
    n.vol.check_rw()?;
    n.vol.now.set(now);
    Ok(n.vol.clone())
}

/// Create `name` in ext4 directory `dir` (owned by `uid:gid`, mode `perm`):
/// the new inode, also entered into `dir`'s map.
pub fn create(dir: &InodeRef, name: &str, kind: NewKind<'_>, perm: u32, owner: (u32, u32), now: u64) -> Result<InodeRef, Errno> {
    let vol = rw_volume(dir, now)?;
    let dn = ext4_node(dir)?;
    let nb = name_bytes(name)?;
    let is_dir = matches!(kind, NewKind::Dir);
    let ino = vol.alloc_inode(dn.ino, is_dir)?;
    let bs = vol.sb.block_size;
    let isz = vol.sb.inode_size as usize;
    let mut bytes = vec![0u8; isz];
    if isz >= 160 {
        put16(&mut bytes, 0x80, 32);
    }
    let (tbits, ft) = match kind {
        NewKind::File => (g::S_IFREG, 1),
        NewKind::Dir => (g::S_IFDIR, 2),
        NewKind::Symlink(_) => (g::S_IFLNK, 7),
    };
    let (crs, crx) = encode_time(now);
    if isz >= 0x98 && 128 + usize::from(le16(&bytes, 0x80)) >= 0x98 {
        put32(&mut bytes, 0x90, crs);
        put32(&mut bytes, 0x94, crx);
    }
    let raw = layout::RawInode {
        mode: (tbits | (perm & 0o7777)) as u16,
        uid: owner.0,
        gid: owner.1,
        size: 0,
        links: if is_dir { 2 } else { 1 },
        blocks: 0,
        flags: layout::EXTENTS_FL,
        block: empty_root(),
        atime_ns: now,
        ctime_ns: now,
        mtime_ns: now,
    };
    let mut st = NodeState { bytes, raw, map: Some(Vec::new()), tree: Vec::new(), deleted: false, dirty: true };
    let made = (|| -> Result<(), Errno> {
        match kind {
            NewKind::File => {}
            NewKind::Dir => {
                let goal = vol.goal_for(ino, &Vec::new(), 0);
                let (p, _) = vol.alloc_blocks(goal, 1)?;
                st.map = Some(vec![Extent { lblk: 0, len: 1, pblk: p, unwritten: false }]);
                st.raw.size = bs;
                let mut b = vec![0u8; bs as usize];
                put32(&mut b, 0, ino);
                put16(&mut b, 4, 12);
                b[6] = 1;
                b[7] = 2;
                b[8] = b'.';
                put32(&mut b, 12, dn.ino);
                put16(&mut b, 16, (vol.dir_usable() - 12) as u16);
                b[18] = 2;
                b[19] = 2;
                b[20] = b'.';
                b[21] = b'.';
                vol.put_dir_block(ino, &st, p, &mut b)?;
                vol.commit_map(ino, &mut st)?;
            }
            NewKind::Symlink(target) => {
                let t = name_to_bytes(target).into_owned();
                if t.len() >= 4096 {
                    return Err(Errno::ENAMETOOLONG);
                }
                st.raw.size = t.len() as u64;
                if t.len() < 60 {
                    st.raw.flags = 0;
                    st.raw.block = [0u8; 60];
                    st.raw.block[..t.len()].copy_from_slice(&t);
                    st.map = None;
                } else {
                    let goal = vol.goal_for(ino, &Vec::new(), 0);
                    let (p, _) = vol.alloc_blocks(goal, 1)?;
                    st.map = Some(vec![Extent { lblk: 0, len: 1, pblk: p, unwritten: false }]);
                    let mut b = vec![0u8; bs as usize];
                    b[..t.len()].copy_from_slice(&t);
                    vol.disk.write_meta(p * bs, &b)?;
                    vol.commit_map(ino, &mut st)?;
                }
            }
        }
        vol.store_inode(ino, &mut st)?;
        vol.add_entry(dn.ino, &mut dn.st.borrow_mut(), &nb, ino, ft)
    })();
    if let Err(e) = made {
        let _ = vol.release_inode(ino, &mut st);
        return Err(e);
    }
    if let Some(ix) = dn.index.borrow_mut().as_mut() {
        ix.insert(nb, ino);
    }
    let child = vol.make_inode(ino, st)?;
    dir.insert(name, child.clone())?;
    vol.maybe_writeback();
    Ok(child)
}

/// Remove entry `name` (inode `victim`) from ext4 directory `dir`;
/// `ENOTEMPTY` for a directory that still has entries on the disk. The
/// inode is freed when its last link and last reference are gone.
pub fn unlink(dir: &InodeRef, name: &str, victim: &InodeRef, now: u64) -> Result<(), Errno> {
    let vol = rw_volume(dir, now)?;
    let dn = ext4_node(dir)?;
    let vn = ext4_node(victim)?;
    let nb = name_bytes(name)?;
    let is_dir = victim.is_dir();
    if is_dir && vol.dir_has_entries(vn.ino, &mut vn.st.borrow_mut())? {
        return Err(Errno::ENOTEMPTY);
    }
    vol.remove_entry(dn.ino, &mut dn.st.borrow_mut(), &nb)?;
    if let Some(ix) = dn.index.borrow_mut().as_mut() {
        ix.remove(&nb);
    }
    let left = if is_dir { 0 } else { victim.meta.borrow().nlink.saturating_sub(1) };
    if left == 0 {
        vn.st.borrow_mut().deleted = true;
        vol.pinned.borrow_mut().remove(&vn.ino);
    }
    vol.maybe_writeback();
    Ok(())
}

/// A new link `name` in ext4 directory `dir` to `target`.
pub fn link(target: &InodeRef, dir: &InodeRef, name: &str, now: u64) -> Result<(), Errno> {
    let vol = rw_volume(dir, now)?;
    let dn = ext4_node(dir)?;
    let tn = ext4_node(target)?;
    if !Rc::ptr_eq(&tn.vol, &vol) {
        return Err(Errno::EXDEV);
    }
    if u32::from(tn.st.borrow().raw.links) >= 65000 {
        return Err(Errno::EMLINK);
    }
    let nb = name_bytes(name)?;
    vol.add_entry(dn.ino, &mut dn.st.borrow_mut(), &nb, tn.ino, ftype_of(type_bits(target)))?;
    tn.st.borrow_mut().deleted = false;
    vol.pinned.borrow_mut().insert(tn.ino, target.clone());
    if let Some(ix) = dn.index.borrow_mut().as_mut() {
        ix.insert(nb, tn.ino);
    }
    vol.maybe_writeback();
    Ok(())
}

/// Rename on ext4: `sdir/sname` (inode `moved`) to `ddir/dname`
/// (replacing `target`, or exchanging with it).
#[allow(clippy::too_many_arguments)]
pub fn rename(sdir: &InodeRef, sname: &str, ddir: &InodeRef, dname: &str, moved: &InodeRef, target: Option<&InodeRef>, exchange: bool, now: u64) -> Result<(), Errno> {
    let vol = rw_volume(sdir, now)?;
    let (sn, dn, mn) = (ext4_node(sdir)?, ext4_node(ddir)?, ext4_node(moved)?);
    let (sb, db) = (name_bytes(sname)?, name_bytes(dname)?);
    let same = Rc::ptr_eq(&sn.st, &dn.st);
    let mft = ftype_of(type_bits(moved));
    let set_index = |n: &Node, name: &[u8], ino: Option<u32>| {
        if let Some(ix) = n.index.borrow_mut().as_mut() {
            match ino {
                Some(i) => ix.insert(name.to_vec(), i),
                None => ix.remove(name),
            };
        }
    };
    if exchange {
        let t = target.ok_or(Errno::ENOENT)?;
        let tn = ext4_node(t)?;
        vol.set_entry(sn.ino, &mut sn.st.borrow_mut(), &sb, tn.ino, ftype_of(type_bits(t)))?;
        vol.set_entry(dn.ino, &mut dn.st.borrow_mut(), &db, mn.ino, mft)?;
        set_index(sn, &sb, Some(tn.ino));
        set_index(dn, &db, Some(mn.ino));
        if !same {
            if moved.is_dir() {
                vol.set_entry(mn.ino, &mut mn.st.borrow_mut(), b"..", dn.ino, 2)?;
            }
            if t.is_dir() {
                vol.set_entry(tn.ino, &mut tn.st.borrow_mut(), b"..", sn.ino, 2)?;
            }
        }
        vol.maybe_writeback();
        return Ok(());
    }
    match target {
        Some(t) => {
            let tn = ext4_node(t)?;
            if t.is_dir() && vol.dir_has_entries(tn.ino, &mut tn.st.borrow_mut())? {
                return Err(Errno::ENOTEMPTY);
            }
            vol.set_entry(dn.ino, &mut dn.st.borrow_mut(), &db, mn.ino, mft)?;
            let left = if t.is_dir() { 0 } else { t.meta.borrow().nlink.saturating_sub(1) };
            if left == 0 {
                tn.st.borrow_mut().deleted = true;
                vol.pinned.borrow_mut().remove(&tn.ino);
            }
        }
        None => vol.add_entry(dn.ino, &mut dn.st.borrow_mut(), &db, mn.ino, mft)?,
    }
    set_index(dn, &db, Some(mn.ino));
    vol.remove_entry(sn.ino, &mut sn.st.borrow_mut(), &sb)?;
    set_index(sn, &sb, None);
    if moved.is_dir() && !same {
        vol.set_entry(mn.ino, &mut mn.st.borrow_mut(), b"..", dn.ino, 2)?;
    }
    vol.maybe_writeback();
    Ok(())
}

/// `fsync` of an ext4 inode: its changes (and all metadata) reach the disk.
pub fn fsync(inode: &Inode) -> Result<(), Errno> {
    let Some(n) = node(inode) else { return Ok(()) };
    if !n.vol.writable() {
        return Ok(());
    }
    n.vol.sync_fs()?;
    n.vol.disk.writeback()?;
    n.vol.disk.flush()
}

/// Write `data` at `off` into ext4 regular file `inode` straight to the
/// disk, not through its page cache (for tools and tests; the VFS writes
/// through the cache, whose store this is).
pub fn write_bytes(inode: &Inode, off: u64, data: &[u8]) -> Result<(), Errno> {
    let n = ext4_node(inode)?;
    if !matches!(inode.kind, Kind::File(_)) {
        return Err(Errno::EISDIR);
    }
    n.vol.write_file(n.ino, &mut n.st.borrow_mut(), off, data)
}

/// Set ext4 regular file `inode`'s size on the disk (see [`write_bytes`]).
pub fn set_size(inode: &Inode, len: u64) -> Result<(), Errno> {
    let n = ext4_node(inode)?;
    if !matches!(inode.kind, Kind::File(_)) {
        return Err(Errno::EISDIR);
    }
    n.vol.truncate_file(n.ino, &mut n.st.borrow_mut(), len)
}
