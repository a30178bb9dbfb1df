//! `memfd_create` and file seals (`F_ADD_SEALS`/`F_GET_SEALS`): anonymous
//! memory files, page caches like tmpfs files, that programs size, map
//! shared and hand to other processes, optionally sealed against change.

use alloc::format;

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::fs::{FileRef, Kind, OpenFile};
use crate::{Errno, SysResult};

/// Longest memfd name (Linux's `MFD_NAME_MAX_LEN`).
const NAME_MAX: usize = 249;
/// Every seal Linux knows.
const SEALS: u32 = g::F_SEAL_SEAL | g::F_SEAL_SHRINK | g::F_SEAL_GROW | g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE | g::F_SEAL_EXEC;

/// `memfd_create(name, flags)`: an unlinked file in guest memory, open for
/// reading and writing, shown as `/memfd:NAME (deleted)`. Without
/// `MFD_ALLOW_SEALING` it carries `F_SEAL_SEAL` (no seals can be added).
/// `EINVAL` for unknown flags, `MFD_HUGETLB` (no huge pages here) or a name
/// longer than 249 bytes; `EFAULT` for a bad name pointer.
pub fn memfd_create<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    let known = g::MFD_CLOEXEC | g::MFD_ALLOW_SEALING | g::MFD_NOEXEC_SEAL | g::MFD_EXEC;
    if a[1] > u64::from(u32::MAX) || flags & !known != 0 || flags & (g::MFD_NOEXEC_SEAL | g::MFD_EXEC) == (g::MFD_NOEXEC_SEAL | g::MFD_EXEC) {
        return Err(Errno::EINVAL);
    }
    let name = match cx.read_cstring(a[0], NAME_MAX + 1) {
        Err(Errno::ENAMETOOLONG) => return Err(Errno::EINVAL),
        r => r?,
    };
    let name = alloc::string::String::from_utf8_lossy(&name).into_owned();
    let sb = cx.k.fs.memfd_sb();
    let data = cx.k.fs.new_file_data(sb);
    let noexec = flags & g::MFD_NOEXEC_SEAL != 0;
    let mut seals = 0;
    if flags & g::MFD_ALLOW_SEALING == 0 && !noexec {
        seals |= g::F_SEAL_SEAL;
    }
    if noexec {
        seals |= g::F_SEAL_EXEC;
    }
    data.set_seals(seals);
    let perm = if noexec { 0o666 } else { 0o777 };
    let now = cx.hal.realtime_ns();
    let node = cx.k.fs.charged_inode_in(sb, Kind::File(data), perm, now)?;
    {
        let c = super::fs_ops::cred(cx);
        let mut m = node.meta.borrow_mut();
        m.uid = c.uid;
        m.gid = c.gid;
    }
    let file = OpenFile::new(node, g::O_RDWR | g::O_LARGEFILE, format!("/memfd:{name} (deleted)"));
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, file, flags & g::MFD_CLOEXEC != 0, limit)
}

/// The seals of `f`'s file: `EINVAL` unless it is a memory file (tmpfs,
/// memfd), as Linux.
fn sealable(cx: &SysCtx<'_, impl Hal>, f: &FileRef) -> Result<alloc::rc::Rc<crate::mm::PageCache>, Errno> {
    match &f.inode.kind {
        Kind::File(d) if !d.has_store() && cx.k.fs.quota(f.inode.sb).is_some() || cx.k.fs.is_memfd(f.inode.sb) => {
            Ok(d.cache().clone())
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn get_seals<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64) -> SysResult {
    let f = cx.t.fds.file(fd)?;
    Ok(sealable(cx, &f)?.seals() as usize)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`: `EPERM` if the file is not open for
/// writing or carries `F_SEAL_SEAL`, `EBUSY` for `F_SEAL_WRITE` while a
/// writable shared mapping exists, `EINVAL` for unknown seals or a file
/// that cannot be sealed.
pub fn add_seals<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, seals: u64) -> SysResult {
    let f = cx.t.fds.file(fd)?;
    let cache = sealable(cx, &f)?;
    let seals = u32::try_from(seals).map_err(|_| Errno::EINVAL)?;
    if seals & !SEALS != 0 {
        return Err(Errno::EINVAL);
    }
    if !f.writable() {
        return Err(Errno::EPERM);
    }
    let cur = cache.seals();
    if cur & g::F_SEAL_SEAL != 0 {
        return Err(Errno::EPERM);
    }
    if seals & g::F_SEAL_WRITE != 0 && cur & g::F_SEAL_WRITE == 0 && cache.writable_mappings() > 0 {
        return Err(Errno::EBUSY);
    }
    cache.set_seals(cur | seals);
    Ok(0)
}
