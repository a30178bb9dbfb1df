//! A plain image file as a disk.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use hal::block::check_range;
use hal::{BlockDevice, BlockError, BlockInfo, BlockRequest};

/// A disk whose sectors are the bytes of one host file.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    size: u64,
    writable: bool,
    /// `ubdNs=`: flush after every batch that wrote.
    sync: bool,
}

impl FileDisk {
    /// Open `path` (read-write when `writable`), locked against other writers.
    pub fn open(path: &Path, writable: bool, sync: bool) -> Result<FileDisk, String> {
        let (file, size) = super::open_image(path, writable)?;
        super::lock(&file, writable)?;
        Ok(FileDisk { file, size, writable, sync })
    }
}

/// Where the run of requests of one kind starting at `i` ends: the next
/// request that is not the same kind or does not continue the byte range.
pub(super) fn run_end(queue: &[BlockRequest<'_>], i: usize) -> usize {
    let mut j = i + 1;
    let Some((mut end, _)) = queue[i].range().map(|(o, l)| (o + l, ())) else { return j };
    while j < queue.len() {
        let same = matches!(
            (&queue[i], &queue[j]),
            (BlockRequest::Read { .. }, BlockRequest::Read { .. }) | (BlockRequest::Write { .. }, BlockRequest::Write { .. })
        );
        match queue[j].range() {
            Some((o, l)) if same && o == end && j - i < 1024 => end = o + l,
            _ => break,
        }
        j += 1;
    }
    j
}

impl BlockDevice for FileDisk {
    fn info(&self) -> BlockInfo {
        BlockInfo { size: self.size, read_only: !self.writable }
    }

    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)> {
        let mut wrote = false;
        let mut i = 0;
        while i < queue.len() {
            if let Some((off, len)) = queue[i].range() {
                check_range(off, len, self.size).map_err(|e| (i, e))?;
            }
            let j = run_end(queue, i);
            for k in i + 1..j {
                if let Some((off, len)) = queue[k].range() {
                    check_range(off, len, self.size).map_err(|e| (k, e))?;
                }
            }
            let start = queue[i].range().map_or(0, |r| r.0);
            match &queue[i] {
                BlockRequest::Read { .. } => {
                    let mut bufs: Vec<&mut [u8]> = queue[i..j]
                        .iter_mut()
                        .filter_map(|r| match r {
                            BlockRequest::Read { buf, .. } => Some(&mut **buf),
                            _ => None,
                        })
                        .collect();
                    super::read_vectored_at(&self.file, start, &mut bufs).map_err(|e| (i, e))?;
                }
                BlockRequest::Write { .. } => {
                    if !self.writable {
                        return Err((i, BlockError::ReadOnly));
                    }
                    let bufs: Vec<&[u8]> = queue[i..j]
                        .iter()
                        .filter_map(|r| match r {
                            BlockRequest::Write { data, .. } => Some(&**data),
                            _ => None,
                        })
                        .collect();
                    super::write_vectored_at(&self.file, start, &bufs).map_err(|e| (i, e))?;
                    wrote = true;
                }
                BlockRequest::Flush => {
                    if self.writable {
                        super::sync_file(&self.file).map_err(|e| (i, e))?;
                    }
                    wrote = false;
                }
                BlockRequest::Discard { offset, len } => {
                    if !self.writable {
                        return Err((i, BlockError::ReadOnly));
                    }
                    // Best effort: a host file system that cannot punch keeps the bytes.
                    // SAFETY: fallocate on a descriptor we own.
                    unsafe {
                        libc::fallocate(
                            self.file.as_raw_fd(),
                            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                            *offset as libc::off_t,
                            *len as libc::off_t,
                        )
                    };
                }
            }
            i = j;
        }
        if wrote && self.sync {
            super::sync_file(&self.file).map_err(|e| (queue.len().saturating_sub(1), e))?;
        }
        Ok(())
    }
}
