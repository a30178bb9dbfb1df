//! Copy-on-write disks in UML's COW format, version 3.
//!
//! A COW file is a sparse file: a header (big-endian: magic `MOOO`,
//! version 3, the backing file's modification time in seconds, the disk
//! size, the sector size, the alignment, the format (0: a bitmap), and the
//! backing file's absolute path in 4096 bytes), then a bitmap with one bit
//! per 512-byte sector (least significant bit first) at the next multiple
//! of the alignment, then the data area, also aligned, where sector `n`
//! lives at `data_offset + 512 n`. A set bit means the sector was written
//! and lives in the COW file; a clear one that it is read from the backing
//! file, which is opened read-only and never written.
//!
//! A write puts the data in the COW file first and the bitmap after it, so
//! a kernel killed in between loses the write but never shows another
//! sector's bytes. The backing file's size and modification time are
//! checked at every open: if either changed since the COW file was made,
//! the sectors the COW file did not copy would no longer be the ones the
//! guest saw, so the disk is refused.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hal::block::check_range;
use hal::{BlockDevice, BlockError, BlockInfo, BlockRequest, SECTOR_SIZE};

/// `MOOO`.
pub const COW_MAGIC: u32 = 0x4f4f_4f4d;
/// The version rustuml writes and reads.
pub const COW_VERSION: u32 = 3;
/// Bytes of the version 3 header.
pub const HEADER_LEN: u64 = 4 + 4 + 4 + 8 + 4 + 4 + 4 + PATH_LEN as u64;
/// Room for the backing file's path.
const PATH_LEN: usize = 4096;
/// The alignment rustuml uses for new COW files (a page, as UML does).
const ALIGN: u32 = 4096;

/// A COW file's header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CowHeader {
    /// The backing file's modification time (seconds, truncated to 32 bits).
    pub mtime: u32,
    /// The disk size in bytes.
    pub size: u64,
    /// Bytes per bitmap bit.
    pub sector_size: u32,
    /// Alignment of the bitmap and the data area.
    pub alignment: u32,
    /// The backing file (absolute).
    pub backing: PathBuf,
}

impl CowHeader {
    /// Where the bitmap starts.
    pub fn bitmap_offset(&self) -> u64 {
        HEADER_LEN.div_ceil(self.alignment as u64) * self.alignment as u64
    }
    /// Bytes of bitmap.
    pub fn bitmap_len(&self) -> u64 {
        self.size.div_ceil(self.sector_size as u64).div_ceil(8)
    }
    /// Where sector 0's data is.
    pub fn data_offset(&self) -> u64 {
        let end = self.bitmap_offset() + self.bitmap_len();
        end.div_ceil(self.alignment as u64) * self.alignment as u64
    }

    /// Encode (big-endian, as UML writes it).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let path = self.backing.as_os_str().as_encoded_bytes();
        if path.len() >= PATH_LEN {
            return Err(format!("the backing file's path is longer than {} bytes", PATH_LEN - 1));
        }
        let mut h = vec![0u8; HEADER_LEN as usize];
        h[0..4].copy_from_slice(&COW_MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&COW_VERSION.to_be_bytes());
        h[8..12].copy_from_slice(&self.mtime.to_be_bytes());
        h[12..20].copy_from_slice(&self.size.to_be_bytes());
        h[20..24].copy_from_slice(&self.sector_size.to_be_bytes());
        h[24..28].copy_from_slice(&self.alignment.to_be_bytes());
        h[32..32 + path.len()].copy_from_slice(path);
        Ok(h)
    }

    /// Decode and check a header (`None`: not a COW file at all).
    pub fn decode(h: &[u8]) -> Option<Result<CowHeader, String>> {
        let be32 = |o: usize| h.get(o..o + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if be32(0)? != COW_MAGIC {
            return None;
        }
        Some((|| {
            if h.len() < HEADER_LEN as usize {
                return Err("truncated COW header".to_string());
            }
            let version = be32(4).unwrap_or(0);
            // Version 3 with four zero bytes where the path starts is the
            // old padded 64-bit layout UML also reads; rustuml does not.
            if version != COW_VERSION || h[32..36] == [0, 0, 0, 0] {
                return Err(format!("COW file of version {version}; only version 3 is supported"));
            }
            let mut s = [0u8; 8];
            s.copy_from_slice(&h[12..20]);
            let size = u64::from_be_bytes(s);
            let sector_size = be32(20).unwrap_or(0);
            let alignment = be32(24).unwrap_or(0);
            if be32(28).unwrap_or(1) != 0 {
                return Err("unknown COW format (not a bitmap)".into());
            }
            if sector_size as u64 != SECTOR_SIZE {
                return Err(format!("COW sector size {sector_size}; only 512 is supported"));
            }
            if !alignment.is_power_of_two() || !(512..=(1 << 20)).contains(&alignment) {
                return Err(format!("bad COW alignment {alignment}"));
            }
            if size == 0 || size > super::MAX_DISK_SIZE {
                return Err(format!("COW disk size {size} out of range"));
            }
            let path = &h[32..32 + PATH_LEN];
            let end = path.iter().position(|&b| b == 0).unwrap_or(PATH_LEN);
            let backing = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path[..end].to_vec()));
            Ok(CowHeader { mtime: be32(8).unwrap_or(0), size, sector_size, alignment, backing })
        })())
    }
}

/// Does `path` start with a COW header?
pub fn is_cow_file(path: &Path) -> bool {
    let mut h = [0u8; 4];
    match File::open(path) {
        Ok(f) => std::os::unix::fs::FileExt::read_exact_at(&f, &mut h, 0).is_ok() && u32::from_be_bytes(h) == COW_MAGIC,
        Err(_) => false,
    }
}

/// The header of COW file `path`.
pub fn read_header(path: &Path) -> Result<CowHeader, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut h = vec![0u8; HEADER_LEN as usize];
    let n = std::os::unix::fs::FileExt::read_at(&f, &mut h, 0).map_err(|e| e.to_string())?;
    h.truncate(n);
    CowHeader::decode(&h).unwrap_or_else(|| Err("not a COW file".into()))
}

/// A disk whose written sectors live in a COW file and the others in a
/// read-only backing file.
#[derive(Debug)]
pub struct CowDisk {
    cow: File,
    backing: File,
    header: CowHeader,
    /// The whole bitmap, as in the file.
    bitmap: Vec<u8>,
    size: u64,
    sync: bool,
}

/// The backing file's modification time as the header keeps it.
fn mtime32(md: &std::fs::Metadata) -> u32 {
    md.mtime() as u32
}

impl CowDisk {
    /// Open COW file `cow` over `backing` (or over the file its header names
    /// when `backing` is `None`). A missing or empty `cow` is created for
    /// `backing`. Refused, with the reason in one line: a COW file made for
    /// another backing file, a backing file whose size or modification time
    /// changed since, a missing backing file.
    pub fn open(cow: &Path, backing: Option<&Path>, sync: bool) -> Result<CowDisk, String> {
        let exists = std::fs::metadata(cow).is_ok_and(|m| m.len() > 0);
        if !exists {
            let Some(b) = backing else { return Err("no such COW file, and no backing file to make one for".into()) };
            create(cow, b)?;
        }
        let header = read_header(cow)?;
        if let Some(b) = backing {
            let given = std::fs::canonicalize(b).map_err(|e| format!("backing file {}: {e}", b.display()))?;
            let same = given == header.backing
                || match (std::fs::metadata(&given), std::fs::metadata(&header.backing)) {
                    (Ok(a), Ok(c)) => a.dev() == c.dev() && a.ino() == c.ino(),
                    _ => false,
                };
            if !same {
                return Err(format!(
                    "this COW file was made for backing file {}, not {}",
                    header.backing.display(),
                    given.display()
                ));
            }
        }
        let (backing_file, bsize) = super::open_image(&header.backing, false)
            .map_err(|e| format!("backing file {}: {e}", header.backing.display()))?;
        let md = backing_file.metadata().map_err(|e| e.to_string())?;
        if md.len() != header.size || mtime32(&md) != header.mtime {
            return Err(format!(
                "backing file {} changed since the COW file was made (size {} now, {} then; mtime {} now, {} then): \
                 its sectors the COW file did not copy are no longer what the guest saw",
                header.backing.display(),
                md.len(),
                header.size,
                mtime32(&md),
                header.mtime
            ));
        }
        super::lock(&backing_file, false)?;
        let cow_file = std::fs::OpenOptions::new().read(true).write(true).open(cow).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EROFS) => "the COW file is read-only".to_string(),
            _ => e.to_string(),
        })?;
        super::lock(&cow_file, true)?;
        let mut bitmap = vec![0u8; header.bitmap_len() as usize];
        {
            let mut bufs: [&mut [u8]; 1] = [&mut bitmap];
            super::read_vectored_at(&cow_file, header.bitmap_offset(), &mut bufs).map_err(|e| format!("reading the COW bitmap: {e:?}"))?;
        }
        let size = bsize.min(header.size - header.size % SECTOR_SIZE);
        Ok(CowDisk { cow: cow_file, backing: backing_file, header, bitmap, size, sync })
    }

    /// Sectors written so far (for `image merge` and tests).
    pub fn written_sectors(&self) -> u64 {
        self.bitmap.iter().map(|b| b.count_ones() as u64).sum()
    }

    fn bit(&self, sector: u64) -> bool {
        self.bitmap.get((sector / 8) as usize).is_some_and(|b| b & (1 << (sector % 8)) != 0)
    }

    /// Read `buf` at `off`: each run of sectors from where it lives.
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let mut done = 0u64;
        let len = buf.len() as u64;
        while done < len {
            let s0 = (off + done) / SECTOR_SIZE;
            let mine = self.bit(s0);
            let mut s = s0 + 1;
            while (s - s0) * SECTOR_SIZE < len - done && self.bit(s) == mine {
                s += 1;
            }
            let n = ((s - s0) * SECTOR_SIZE).min(len - done);
            let piece = &mut buf[done as usize..(done + n) as usize];
            let mut bufs: [&mut [u8]; 1] = [piece];
            if mine {
                super::read_vectored_at(&self.cow, self.header.data_offset() + off + done, &mut bufs)?;
            } else {
                super::read_vectored_at(&self.backing, off + done, &mut bufs)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Mark `[off, off + len)` as written; returns the bitmap bytes changed.
    fn mark(&mut self, off: u64, len: u64) -> Option<(usize, usize)> {
        let (first, last) = (off / SECTOR_SIZE, (off + len) / SECTOR_SIZE);
        let mut changed: Option<(usize, usize)> = None;
        for s in first..last {
            let (byte, bit) = ((s / 8) as usize, 1u8 << (s % 8));
            if let Some(b) = self.bitmap.get_mut(byte) {
                if *b & bit == 0 {
                    *b |= bit;
                    changed = Some(changed.map_or((byte, byte + 1), |(lo, hi)| (lo.min(byte), hi.max(byte + 1))));
                }
            }
        }
        changed
    }
}

/// Make a new COW file `cow` over `backing`: the header, and the file's
/// length set so that the bitmap and data area read as zeros (sparse).
pub fn create(cow: &Path, backing: &Path) -> Result<(), String> {
    let abs = std::fs::canonicalize(backing).map_err(|e| format!("backing file {}: {e}", backing.display()))?;
    let md = std::fs::metadata(&abs).map_err(|e| format!("backing file {}: {e}", abs.display()))?;
    if !md.is_file() {
        return Err(format!("backing file {}: not a regular file", abs.display()));
    }
    if md.len() < SECTOR_SIZE || md.len() > super::MAX_DISK_SIZE {
        return Err(format!("backing file {}: size {} out of range", abs.display(), md.len()));
    }
    let header = CowHeader { mtime: mtime32(&md), size: md.len(), sector_size: SECTOR_SIZE as u32, alignment: ALIGN, backing: abs };
    let bytes = header.encode()?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(cow)
        .map_err(|e| format!("cannot create the COW file: {e}"))?;
    if f.metadata().is_ok_and(|m| m.len() > 0) {
        return Err("the COW file is not empty".into());
    }
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes, 0).map_err(|e| format!("writing the COW header: {e}"))?;
    f.set_len(header.data_offset() + header.size).map_err(|e| format!("sizing the COW file: {e}"))?;
    Ok(())
}

impl BlockDevice for CowDisk {
    fn info(&self) -> BlockInfo {
        BlockInfo { size: self.size, read_only: false }
    }

    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)> {
        let mut dirty: Option<(usize, usize)> = None;
        let mut wrote = false;
        let mut i = 0;
        while i < queue.len() {
            if let Some((off, len)) = queue[i].range() {
                check_range(off, len, self.size).map_err(|e| (i, e))?;
            }
            let j = super::file::run_end(queue, i);
            for k in i + 1..j {
                if let Some((off, len)) = queue[k].range() {
                    check_range(off, len, self.size).map_err(|e| (k, e))?;
                }
            }
            match &mut queue[i] {
                BlockRequest::Read { .. } => {
                    for (k, r) in queue[i..j].iter_mut().enumerate() {
                        if let BlockRequest::Read { offset, buf } = r {
                            self.read(*offset, buf).map_err(|e| (i + k, e))?;
                        }
                    }
                }
                BlockRequest::Write { offset, .. } => {
                    let start = *offset;
                    let bufs: Vec<&[u8]> = queue[i..j]
                        .iter()
                        .filter_map(|r| match r {
                            BlockRequest::Write { data, .. } => Some(&**data),
                            _ => None,
                        })
                        .collect();
                    let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
                    super::write_vectored_at(&self.cow, self.header.data_offset() + start, &bufs).map_err(|e| (i, e))?;
                    if let Some((lo, hi)) = self.mark(start, total) {
                        dirty = Some(dirty.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                    }
                    wrote = true;
                }
                BlockRequest::Flush => {
                    // The bitmap written so far goes with the data.
                    if let Some((lo, hi)) = dirty.take() {
                        super::write_vectored_at(&self.cow, self.header.bitmap_offset() + lo as u64, &[&self.bitmap[lo..hi]]).map_err(|e| (i, e))?;
                    }
                    super::sync_file(&self.cow).map_err(|e| (i, e))?;
                    wrote = false;
                }
                // Discarded sectors keep their COW copies (clearing bits would
                // show the backing file's old bytes, which is allowed but
                // gains nothing).
                BlockRequest::Discard { .. } => {}
            }
            i = j;
        }
        let last = queue.len().saturating_sub(1);
        if let Some((lo, hi)) = dirty {
            super::write_vectored_at(&self.cow, self.header.bitmap_offset() + lo as u64, &[&self.bitmap[lo..hi]]).map_err(|e| (last, e))?;
        }
        if wrote && self.sync {
            super::sync_file(&self.cow).map_err(|e| (last, e))?;
        }
        Ok(())
    }
}

/// Fold COW file `cow` into a new standalone image `out` (UML's
/// `uml_moo`): every sector as the guest sees it. `out` must not exist;
/// runs of zeros stay holes. `progress(done, total)` is called as it goes.
pub fn merge(cow: &Path, out: &Path, mut progress: impl FnMut(u64, u64)) -> Result<(), String> {
    let mut disk = CowDisk::open(cow, None, false)?;
    let f = std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let total = disk.size;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        disk.submit(&mut [BlockRequest::Read { offset: off, buf: &mut buf[..n] }]).map_err(|(_, e)| format!("reading at {off}: {e:?}"))?;
        if buf[..n].iter().any(|&b| b != 0) {
            std::os::unix::fs::FileExt::write_all_at(&f, &buf[..n], off).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        off += n as u64;
        progress(off, total);
    }
    // The backing file's bytes past the last whole sector come along too.
    let tail = disk.header.size - total;
    if tail > 0 {
        let mut t = vec![0u8; tail as usize];
        std::os::unix::fs::FileExt::read_exact_at(&disk.backing, &mut t, total).map_err(|e| e.to_string())?;
        std::os::unix::fs::FileExt::write_all_at(&f, &t, total).map_err(|e| e.to_string())?;
    }
    f.set_len(disk.header.size).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    Ok(())
}
