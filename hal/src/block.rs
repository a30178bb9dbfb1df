//! Block devices: a disk image the kernel reads and writes by byte offset.
//!
//! The kernel queues requests and hands them to the device in one batch
//! ([`BlockDevice::submit`]); a backend may merge neighbouring requests (one
//! vectored host call per contiguous run), and completes the whole batch
//! before it returns. Completion is synchronous on purpose: a request on a
//! file-backed disk is a copy to or from the host's page cache, cheaper than
//! any interrupt round trip, and a device that completes in the call needs no
//! host thread and no wake-up path. A device whose requests can take long (a
//! network disk) would complete through [`crate::Interrupts`] instead; none
//! exists yet.
//!
//! Offsets and lengths are multiples of [`SECTOR_SIZE`]; a request past the
//! end of the device fails with [`BlockError::OutOfRange`] and changes nothing.

/// The unit of addressing: requests start and end on 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;

/// What a block device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Size in bytes (a multiple of [`SECTOR_SIZE`]).
    pub size: u64,
    /// Writes are refused ([`BlockError::ReadOnly`]).
    pub read_only: bool,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The host could not read or write the image (`EIO`).
    Io,
    /// The device is read-only (`EROFS`).
    ReadOnly,
    /// Past the end of the device, or not sector-aligned (`EINVAL`).
    OutOfRange,
    /// The host has no space left for the image (`ENOSPC`).
    NoSpace,
}

/// One request of a batch.
#[derive(Debug)]
pub enum BlockRequest<'a> {
    /// Fill `buf` from the device at `offset`.
    Read {
        /// Byte offset on the device.
        offset: u64,
        /// Where the bytes go.
        buf: &'a mut [u8],
    },
    /// Write `data` at `offset`.
    Write {
        /// Byte offset on the device.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Everything written before this request reaches stable storage before
    /// anything after it is written (a barrier), and before the call returns.
    Flush,
    /// The range will not be read before it is written again: the backend
    /// may give its space back (reads then return zeros or old data).
    Discard {
        /// Byte offset on the device.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

impl BlockRequest<'_> {
    /// The byte range the request touches, if it has one.
    pub fn range(&self) -> Option<(u64, u64)> {
        match self {
            BlockRequest::Read { offset, buf } => Some((*offset, buf.len() as u64)),
            BlockRequest::Write { offset, data } => Some((*offset, data.len() as u64)),
            BlockRequest::Discard { offset, len } => Some((*offset, *len)),
            BlockRequest::Flush => None,
        }
    }
}

/// A disk (UML's `ubd`): a plain image file, or a copy-on-write file over a
/// read-only backing image, on real backends.
pub trait BlockDevice {
    /// Size and flags (constant while the kernel runs).
    fn info(&self) -> BlockInfo;
    /// Carry out `queue` in order and return when every request is complete.
    /// On the first failure the rest of the queue is not started:
    /// `Err((index, why))`; the requests before `index` are complete.
    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)>;
}

/// Check a request against a device of `size` bytes: sector-aligned and
/// inside the device (for backends and the mock).
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), BlockError> {
    let aligned = offset.is_multiple_of(SECTOR_SIZE) && len.is_multiple_of(SECTOR_SIZE);
    match offset.checked_add(len) {
        Some(end) if aligned && end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange),
    }
}

/// A disk in memory (tests, fuzzing, the mock HAL).
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    /// The bytes.
    pub bytes: alloc::vec::Vec<u8>,
    /// Refuse writes.
    pub read_only: bool,
    /// Flush requests seen.
    pub flushes: u64,
    /// Batches seen.
    pub batches: u64,
}

impl MemDisk {
    /// A disk holding `bytes` (its size rounded down to whole sectors).
    pub fn new(mut bytes: alloc::vec::Vec<u8>) -> MemDisk {
        let n = bytes.len() - bytes.len() % SECTOR_SIZE as usize;
        bytes.truncate(n);
        MemDisk { bytes, ..Default::default() }
    }
}

impl BlockDevice for MemDisk {
    fn info(&self) -> BlockInfo {
        BlockInfo { size: self.bytes.len() as u64, read_only: self.read_only }
    }
    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)> {
        self.batches += 1;
        let size = self.bytes.len() as u64;
        for (i, r) in queue.iter_mut().enumerate() {
            if let Some((off, len)) = r.range() {
                check_range(off, len, size).map_err(|e| (i, e))?;
            }
            match r {
                BlockRequest::Read { offset, buf } => {
                    let o = *offset as usize;
                    buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
                }
                BlockRequest::Write { offset, data } => {
                    if self.read_only {
                        return Err((i, BlockError::ReadOnly));
                    }
                    let o = *offset as usize;
                    self.bytes[o..o + data.len()].copy_from_slice(data);
                }
                BlockRequest::Flush => self.flushes += 1,
                BlockRequest::Discard { .. } => {}
            }
        }
        Ok(())
    }
}
