//! System V shared memory segments: an unlinked memory file each (the same
//! page cache as tmpfs and memfd files), mapped shared by `shmat`.
//!
//! The number of attaches (`shm_nattch`) is the number of mappings of the
//! segment's page cache, which is what Linux counts too (a VMA each, forks
//! and splits included). A segment removed with `IPC_RMID` while attached
//! loses its key and is destroyed once the last mapping goes.

use crate::fs::InodeRef;
use crate::budget::Charge;

// linux/shm.h
/// Attach read-only.
pub const SHM_RDONLY: u32 = 0o10000;
/// Round the attach address down to `SHMLBA`.
pub const SHM_RND: u32 = 0o20000;
/// Replace mappings at the attach address.
pub const SHM_REMAP: u32 = 0o40000;
/// Attach executable.
pub const SHM_EXEC: u32 = 0o100000;
/// Mode flag: removed, destroyed at the last detach.
pub const SHM_DEST: u32 = 0o1000;
/// Mode flag: locked (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;
/// `shmctl` commands beyond the common ones.
pub const SHM_LOCK: i32 = 11;
#[allow(missing_docs)]
pub const SHM_UNLOCK: i32 = 12;
#[allow(missing_docs)]
pub const SHM_STAT: i32 = 13;
#[allow(missing_docs)]
pub const SHM_INFO: i32 = 14;
#[allow(missing_docs)]
pub const SHM_STAT_ANY: i32 = 15;
/// Attach address alignment.
pub const SHMLBA: u64 = 4096;
/// Most segments (Linux's default `kernel.shmmni`).
pub const SHMMNI: u32 = 4096;
/// Smallest segment.
pub const SHMMIN: u64 = 1;
/// Largest segment (Linux's default `kernel.shmmax`).
pub const SHMMAX: u64 = u64::MAX - (1 << 24);
/// Size of `struct shmid64_ds` on x86_64.
pub const SHMID_DS_SIZE: usize = 112;

/// One segment.
pub struct Segment {
    /// The memory file.
    pub inode: InodeRef,
    /// Size asked for at creation.
    pub size: u64,
    /// Last attach, detach and change times (seconds since the epoch).
    pub atime: u64,
    #[allow(missing_docs)]
    pub dtime: u64,
    #[allow(missing_docs)]
    pub ctime: u64,
    /// Creator and last attacher/detacher.
    pub cpid: u32,
    #[allow(missing_docs)]
    pub lpid: u32,
    /// What the object costs the guest's budget.
    pub charge: Charge,
}

impl Segment {
    /// Mappings of the segment now (`shm_nattch`).
    pub fn nattch(&self) -> u64 {
        match &self.inode.kind {
            crate::fs::Kind::File(d) => u64::from(d.cache().mappings()),
            _ => 0,
        }
    }
    /// Its page cache's id (how a mapping of it is recognised).
    pub fn cache_id(&self) -> Option<u64> {
        match &self.inode.kind {
            crate::fs::Kind::File(d) => Some(d.cache().id()),
            _ => None,
        }
    }
    /// Pages of memory it holds.
    pub fn resident_pages(&self) -> u64 {
        match &self.inode.kind {
            crate::fs::Kind::File(d) => d.cache().resident_pages(),
            _ => 0,
        }
    }
    /// `struct shmid64_ds` bytes.
    pub fn ds(&self, perm: &super::Perm) -> [u8; SHMID_DS_SIZE] {
        let mut b = [0u8; SHMID_DS_SIZE];
        b[..super::PERM_SIZE].copy_from_slice(&perm.bytes());
        b[48..56].copy_from_slice(&self.size.to_le_bytes());
        b[56..64].copy_from_slice(&self.atime.to_le_bytes());
        b[64..72].copy_from_slice(&self.dtime.to_le_bytes());
        b[72..80].copy_from_slice(&self.ctime.to_le_bytes());
        b[80..84].copy_from_slice(&self.cpid.to_le_bytes());
        b[84..88].copy_from_slice(&self.lpid.to_le_bytes());
        b[88..96].copy_from_slice(&self.nattch().to_le_bytes());
        b
    }
}

/// `struct shminfo64` (`IPC_INFO`): limits.
pub fn info_bytes(shmall_pages: u64) -> [u8; 72] {
    let mut b = [0u8; 72];
    let v = [SHMMAX, SHMMIN, u64::from(SHMMNI), 4096, shmall_pages];
    for (i, x) in v.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
    b
}

impl super::Described for Segment {
    fn ds_bytes(&self, perm: &super::Perm) -> alloc::vec::Vec<u8> {
        self.ds(perm).to_vec()
    }
}
