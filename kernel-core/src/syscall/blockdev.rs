//! `ioctl` on block device nodes (`/dev/ubdX`): the requests `mkfs`,
//! `blockdev`, `lsblk` and `e2fsck` make of a disk.

use hal::{Hal, SECTOR_SIZE};
use linux_raw_sys::ioctl::{
    BLKALIGNOFF, BLKBSZGET, BLKBSZSET, BLKDISCARDZEROES, BLKFLSBUF, BLKGETSIZE, BLKGETSIZE64, BLKIOMIN, BLKIOOPT, BLKPBSZGET,
    BLKRAGET, BLKRASET, BLKROGET, BLKROTATIONAL, BLKRRPART, BLKSSZGET,
};

use super::SysCtx;
use crate::block::DiskRef;
use crate::fs::FileRef;
use crate::{Errno, SysResult};

/// Read-ahead Linux reports by default, in sectors (128 KiB).
const READ_AHEAD_SECTORS: u64 = 256;

/// One block-device request on an open node of `disk`.
pub fn ioctl<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, disk: &DiskRef, req: u32, arg: u64) -> SysResult {
    let put_u64 = |cx: &mut SysCtx<'_, H>, v: u64| cx.write_user(arg, &v.to_le_bytes()).map(|_| 0);
    let put_u32 = |cx: &mut SysCtx<'_, H>, v: u32| cx.write_user(arg, &v.to_le_bytes()).map(|_| 0);
    match req {
        BLKGETSIZE64 => put_u64(cx, disk.size()),
        // In sectors, as an `unsigned long`.
        BLKGETSIZE => put_u64(cx, disk.size() / SECTOR_SIZE),
        BLKSSZGET | BLKPBSZGET | BLKIOMIN => put_u32(cx, SECTOR_SIZE as u32),
        BLKIOOPT | BLKALIGNOFF | BLKDISCARDZEROES | BLKROTATIONAL => put_u32(cx, 0),
        BLKBSZGET => put_u32(cx, 4096),
        BLKROGET => put_u32(cx, disk.read_only() as u32),
        BLKRAGET => put_u64(cx, READ_AHEAD_SECTORS),
        BLKRASET | BLKBSZSET => {
            if cx.t.cred.euid != 0 {
                return Err(Errno::EACCES);
            }
            Ok(0)
        }
        BLKFLSBUF => {
            if cx.t.cred.euid != 0 {
                return Err(Errno::EACCES);
            }
            // Pages written through mappings reach the disk, the disk
            // flushes, and the node's clean pages nothing maps are dropped
            // (the next read comes from the disk).
            if let Some(d) = f.inode.file_data() {
                d.writeback(0, u64::MAX, &cx.k.frames, cx.hal.phys())?;
            }
            disk.writeback()?;
            disk.flush()?;
            disk.invalidate_node(&mut cx.k.frames);
            Ok(0)
        }
        // No partition tables: rereading finds nothing to change.
        BLKRRPART => Err(Errno::EINVAL),
        _ => Err(Errno::ENOTTY),
    }
}
