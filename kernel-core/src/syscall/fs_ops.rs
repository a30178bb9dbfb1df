//! Path-based VFS calls: path resolution with the procfs hook and search
//! permission, open, the stat family, mkdir/mknod/unlink/rmdir, rename,
//! link, symlink, chmod/chown, utimes, truncate, sync, statfs, mount.

use alloc::string::String;
use alloc::sync::Arc;
use core::cell::RefCell;

use hal::{Hal, HostSetAttr};
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::fs::mount::{FsType, MS_RDONLY};
use crate::fs::path::{self, Follow, NAME_MAX, PATH_MAX};
use crate::fs::perm::{may_delete, permission, task_cred, Cred, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::fs::procfs::ProcCtx;
use crate::fs::{overlay, FileRef, InodeRef, Kind, Loc, OpenFile};
use crate::fs::ext4;
use crate::{Errno, SysResult};

const AT_FDCWD: i32 = g::AT_FDCWD;

/// The caller's file-system credentials.
pub fn cred<H: Hal>(cx: &SysCtx<'_, H>) -> Cred {
    task_cred(cx.t)
}

fn proc_ctx<'a, H: Hal>(cx: &'a SysCtx<'_, H>, with_time: bool) -> ProcCtx<'a, H::Space> {
    let (now_ns, realtime_ns) = if with_time { (cx.hal.now_ns(), cx.hal.realtime_ns()) } else { (0, 0) };
    ProcCtx {
        tasks: &cx.k.procs,
        cur: &*cx.t,
        fs: &cx.k.fs,
        now_ns,
        realtime_ns,
        release: &cx.k.release,
        frames: &cx.k.frames,
        slab_bytes: crate::fs::procfs::slab_bytes(&cx.k.frames),
        net: &cx.k.net.inet,
        clock: &cx.k.clock,
    }
}

/// Generate a procfs file's contents afresh (at open, and when a reader
/// seeks back to the start, as `top` and `vmstat` do with `/proc/stat`).
pub fn proc_regenerate<H: Hal>(cx: &SysCtx<'_, H>, inode: &crate::fs::Inode) {
    if let Kind::File(d) = &inode.kind {
        if let Some(content) = proc_ctx(cx, true).generate(inode) {
            let len = content.len();
            d.set_bytes(Arc::new(content), 0, len);
        }
    }
}

/// The contents of procfs file `p` (absolute) as the caller would read
/// them (for the operator's `rustuml-ctl NAME proc PATH`). A directory or
/// a link out of procfs is refused.
pub fn read_proc_file<H: Hal>(cx: &mut SysCtx<'_, H>, p: &str) -> Result<String, Errno> {
    let loc = resolve(cx, AT_FDCWD as i64 as u64, p, Follow::Yes)?;
    let inode = loc.inode().clone();
    if inode.is_dir() {
        return Err(Errno::EISDIR);
    }
    if cx.k.fs.fstype(inode.sb) != FsType::Proc {
        return Err(Errno::EINVAL);
    }
    permission(&inode, &cred(cx), MAY_READ)?;
    let content = proc_ctx(cx, true).generate(&inode).ok_or(Errno::EINVAL)?;
    Ok(String::from_utf8_lossy(&content).into_owned())
}

/// Refill a generated (procfs) directory before it is listed (hostfs
/// directories are listed from the host, see `fs::readdir`).
pub fn refresh_dir<H: Hal>(cx: &SysCtx<'_, H>, dir: &InodeRef) -> Result<(), Errno> {
    proc_ctx(cx, false).refresh(dir);
    Ok(())
}

/// The starting point for `path` relative to `dirfd`.
pub fn dir_loc<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, path: &str) -> Result<Loc, Errno> {
    if path.starts_with('/') || dirfd as i32 == AT_FDCWD {
        return Ok(cx.t.cwd.clone());
    }
    let f = cx.t.fds.file(dirfd as i32 as i64 as u64)?;
    if !f.inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if let Some(l) = f.loc.borrow().as_ref() {
        return Ok(l.clone());
    }
    let root = Loc::root(cx.k.fs.root.clone());
    walk_from(cx, &root, &f.path.clone(), Follow::Yes)
}

fn walk_from<H: Hal>(cx: &SysCtx<'_, H>, start: &Loc, p: &str, follow: Follow) -> Result<Loc, Errno> {
    let c = cred(cx);
    let pc = proc_ctx(cx, false);
    let root = cx.k.fs.root.clone();
    path::walk_magic(
        &root,
        start,
        p,
        follow,
        &mut |d, name| {
            permission(d, &c, MAY_EXEC)?;
            let _ = name;
            pc.refresh(d);
            Ok(())
        },
        &|l| pc.magic(l),
    )
}

/// Resolve `path` relative to `dirfd`, with search permission checks and
/// generated directories filled on the way.
pub fn resolve<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, p: &str, follow: Follow) -> Result<Loc, Errno> {
    let start = dir_loc(cx, dirfd, p)?;
    walk_from(cx, &start, p, follow)
}

/// Split `path` into its directory part and last name (which may be empty,
/// `.` or `..`; trailing slashes are dropped and reported).
fn split_last(p: &str) -> (&str, &str, bool) {
    let trimmed = p.trim_end_matches('/');
    let slash = trimmed.len() != p.len();
    if trimmed.is_empty() {
        return ("/", "", slash);
    }
    match trimmed.rfind('/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..], slash),
        None => ("", trimmed, slash),
    }
}

/// The parent directory of `path`'s last name, and that name.
pub struct Parent {
    /// The directory.
    pub dir: Loc,
    /// The last component (may be `""`, `.` or `..`).
    pub name: String,
    /// The path ended with `/`.
    pub slash: bool,
}

pub(crate) fn resolve_parent<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, p: &str) -> Result<Parent, Errno> {
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path::raw_len(p) >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let start = dir_loc(cx, dirfd, p)?;
    let (d, name, slash) = split_last(p);
    if path::raw_len(name) > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let dir = if d.is_empty() { start } else { walk_from(cx, &start, d, Follow::Yes)? };
    if !dir.inode().is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let c = cred(cx);
    permission(dir.inode(), &c, MAY_EXEC)?;
    proc_ctx(cx, false).refresh(dir.inode());
    Ok(Parent { dir, name: String::from(name), slash })
}

fn child_of(dir: &InodeRef, name: &str) -> Result<Option<InodeRef>, Errno> {
    Ok(dir.lookup(name)?.map(path::cross_mounts))
}

pub(crate) fn touch_dir(inode: &InodeRef, now: u64) {
    let mut m = inode.meta.borrow_mut();
    m.mtime_ns = now;
    m.ctime_ns = now;
}

pub(crate) fn new_node<H: Hal>(cx: &mut SysCtx<'_, H>, parent: &InodeRef, kind: Kind, perm: u32) -> Result<InodeRef, Errno> {
    let now = cx.hal.realtime_ns();
    let node = cx.k.fs.charged_inode_in(parent.sb, kind, perm, now)?;
    inherit_owner(cx, parent, &node);
    Ok(node)
}

/// A new inode's owner: the caller, its group the caller's or (setgid
/// directory) the parent's.
fn inherit_owner<H: Hal>(cx: &SysCtx<'_, H>, parent: &InodeRef, node: &InodeRef) {
    let c = cred(cx);
    {
        let mut m = node.meta.borrow_mut();
        m.uid = c.uid;
        // setgid directories hand their group down (and the bit, to subdirectories).
        let pm = *parent.meta.borrow();
        if pm.perm & 0o2000 != 0 {
            m.gid = pm.gid;
            if node.is_dir() {
                m.perm |= 0o2000;
            }
        } else {
            m.gid = c.gid;
        }
    }
}

pub(crate) fn may_create<H: Hal>(cx: &SysCtx<'_, H>, dir: &InodeRef) -> Result<(), Errno> {
    cx.k.fs.check_writable(dir.sb)?;
    if matches!(cx.k.fs.fstype(dir.sb), FsType::Proc | FsType::Sysfs) {
        return Err(Errno::EACCES);
    }
    permission(dir, &cred(cx), MAY_WRITE | MAY_EXEC)
}

// ---------------------------------------------------------------- open

const OPEN_KEEP: u32 = !(g::O_CREAT | g::O_EXCL | g::O_NOCTTY | g::O_TRUNC | g::O_CLOEXEC);

/// Open `path` (relative to `dirfd`) and return the new description, or an
/// error exactly as Linux's `openat` reports it.
pub fn open_file<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, p: &str, flags: u32, mode: u32) -> Result<FileRef, Errno> {
    if flags & g::O_TMPFILE == g::O_TMPFILE {
        return open_tmpfile(cx, dirfd, p, flags, mode);
    }
    let follow = if flags & g::O_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    let acc = flags & g::O_ACCMODE;
    let path_only = flags & g::O_PATH != 0;
    let wants_write = !path_only && (acc == g::O_WRONLY || acc == g::O_RDWR);
    let wants_read = !path_only && (acc == g::O_RDONLY || acc == g::O_RDWR);
    let mut created = false;
    let loc = if flags & g::O_CREAT != 0 && !path_only {
        let par = resolve_parent(cx, dirfd, p)?;
        if par.name.is_empty() || par.name == "." || par.name == ".." || par.slash {
            return Err(Errno::EISDIR);
        }
        match child_of(par.dir.inode(), &par.name)? {
            Some(_) if flags & g::O_EXCL != 0 => return Err(Errno::EEXIST),
            Some(c) if matches!(c.kind, Kind::Symlink(_)) => resolve(cx, dirfd, p, follow)?,
            Some(c) => {
                let mut l = par.dir;
                l.stack.push((par.name, c));
                l
            }
            None => {
                may_create(cx, par.dir.inode())?;
                let perm = mode & !cx.t.umask & 0o7777;
                let node = if cx.k.fs.is_host(par.dir.inode().sb) {
                    cx.k.fs.host_create(par.dir.inode(), &par.name, perm, false)?
                } else if ext4::is_ext4(par.dir.inode()) {
                    let n = ext4::create(par.dir.inode(), &par.name, ext4::NewKind::File, perm, (cred(cx).uid, cred(cx).gid), cx.hal.realtime_ns())?;
                    inherit_owner(cx, par.dir.inode(), &n);
                    n
                } else {
                    let data = cx.k.fs.new_file_data(par.dir.inode().sb);
                    let node = new_node(cx, par.dir.inode(), Kind::File(data), perm)?;
                    par.dir.inode().insert(&par.name, node.clone())?;
                    node
                };
                touch_dir(par.dir.inode(), cx.hal.realtime_ns());
                created = true;
                let mut l = par.dir;
                l.stack.push((par.name, node));
                l
            }
        }
    } else {
        resolve(cx, dirfd, p, follow)?
    };
    let inode = loc.inode().clone();
    if let Kind::Symlink(_) = inode.kind {
        if !path_only {
            return Err(Errno::ELOOP);
        }
    }
    if flags & g::O_DIRECTORY != 0 && !inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let mut loc = loc;
    let inode = if !path_only && (wants_write || flags & g::O_TRUNC != 0) && is_overlay_lower(cx, &inode) && !created {
        // Permission is the lower file's; the write goes to its copy.
        permission(&inode, &cred(cx), MAY_WRITE)?;
        // (O_TRUNC: nothing of the lower file's data is copied.)
        upper_loc(cx, &mut loc, flags & g::O_TRUNC == 0)?
    } else {
        inode
    };
    // Linux adds MAY_WRITE for O_TRUNC even with O_RDONLY (and then truncates).
    let may_write = wants_write || flags & g::O_TRUNC != 0;
    if inode.is_dir() && (may_write || flags & g::O_CREAT != 0) && !path_only {
        return Err(Errno::EISDIR);
    }
    if !created && !path_only {
        let c = cred(cx);
        let mut mask = 0;
        if wants_read {
            mask |= MAY_READ;
        }
        if may_write {
            mask |= MAY_WRITE;
        }
        permission(&inode, &c, mask)?;
        if may_write && inode.block_disk().is_some_and(|d| d.read_only()) {
            // Linux's bdev_permission: a read-only disk is not opened for writing.
            return Err(Errno::EACCES);
        }
        if may_write && !matches!(inode.kind, Kind::Device(_) | Kind::Special(_)) {
            cx.k.fs.check_writable(inode.sb)?;
            if matches!(cx.k.fs.fstype(inode.sb), FsType::Proc | FsType::Sysfs) && !crate::fs::procfs::is_writable(&cx.k.fs, &inode) {
                return Err(Errno::EACCES);
            }
        }
    }
    if let Kind::File(d) = &inode.kind {
        if !path_only {
            if !created {
                // A host file is opened on the host and its cached pages
                // checked against it (changes made on the host since they
                // were read: close-to-open coherence).
                cx.k.fs.host_revalidate(&inode, &mut cx.k.frames)?;
            }
            if let Some(disk) = inode.block_disk() {
                // A file system wrote the disk since the node's pages were read.
                disk.node_revalidate(&mut cx.k.frames);
            }
            if let Some(content) = proc_ctx(cx, true).generate(&inode) {
                let len = content.len();
                d.set_bytes(Arc::new(content), 0, len);
            } else if flags & g::O_TRUNC != 0 && !created && inode.block_disk().is_none() {
                super::file::truncate_file(cx, &inode, 0)?;
            }
        }
    }
    if inode.is_dir() {
        refresh_dir(cx, &inode)?;
    }
    // FIFOs wait for their peer, /dev/ptmx and /dev/tty open other objects.
    // A procfs fd link reopens the very object (an anonymous pipe does not
    // get FIFO open rules, as Linux's is_pipe case).
    let n = loc.stack.len();
    let via_magic = n >= 2 && cx.k.fs.fstype(loc.stack[n - 2].1.sb) == FsType::Proc && cx.k.fs.fstype(inode.sb) != FsType::Proc;
    let inode = if path_only || via_magic { inode } else { super::poll::special_open(cx, inode, flags)? };
    let is_dir = inode.is_dir() && !via_magic;
    let f = OpenFile::new(inode, flags & OPEN_KEEP, loc.path());
    if is_dir {
        *f.loc.borrow_mut() = Some(loc);
    }
    Ok(f)
}

/// `O_TMPFILE`: an unnamed regular file in directory `p`, which `linkat`
/// with `AT_EMPTY_PATH` (or `/proc/self/fd/N`) may name later.
fn open_tmpfile<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, p: &str, flags: u32, mode: u32) -> Result<FileRef, Errno> {
    let acc = flags & g::O_ACCMODE;
    if acc != g::O_WRONLY && acc != g::O_RDWR || flags & g::O_CREAT != 0 {
        return Err(Errno::EINVAL);
    }
    let loc = resolve(cx, dirfd, p, Follow::Yes)?;
    let dir = loc.inode().clone();
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    may_create(cx, &dir)?;
    let perm = mode & !cx.t.umask & 0o7777;
    let node = if cx.k.fs.is_host(dir.sb) {
        cx.k.fs.host_tmpfile(&dir, perm)?
    } else if ext4::is_ext4(&dir) {
        // Unnamed ext4 files would need the orphan list: glibc falls back.
        return Err(Errno::EOPNOTSUPP);
    } else {
        let n = new_node(cx, &dir, Kind::File(cx.k.fs.new_file_data(dir.sb)), perm)?;
        n.meta.borrow_mut().nlink = 0;
        n
    };
    let mut path = loc.path();
    path.push_str("/#tmpfile");
    Ok(OpenFile::new(node, flags & OPEN_KEEP & !g::O_TMPFILE, path))
}

/// `openat` in full: read the path, open, install the fd.
pub fn do_open<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32, mode: u32) -> SysResult {
    let p = cx.read_path(pathp)?;
    let file = open_file(cx, dirfd, &p, flags, mode)?;
    cx.audit_open(&p, flags);
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, file, flags & g::O_CLOEXEC != 0, limit)
}

// ---------------------------------------------------------------- stat

/// Resolve `(dirfd, path, flags)` as the `*at` calls with `AT_EMPTY_PATH`
/// and `AT_SYMLINK_NOFOLLOW` do. `allowed`: the flags this call accepts.
pub fn at_inode<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32, allowed: u32) -> Result<InodeRef, Errno> {
    if flags & !allowed != 0 {
        return Err(Errno::EINVAL);
    }
    let p = if pathp == 0 && flags & g::AT_EMPTY_PATH != 0 { String::new() } else { cx.read_path(pathp)? };
    if p.is_empty() && flags & g::AT_EMPTY_PATH != 0 {
        if dirfd as i32 == AT_FDCWD {
            return Ok(cx.t.cwd.inode().clone());
        }
        return Ok(cx.t.fds.file(dirfd as i32 as i64 as u64)?.inode.clone());
    }
    let follow = if flags & g::AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    Ok(resolve(cx, dirfd, &p, follow)?.inode().clone())
}

const STAT_FLAGS: u32 = g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH | g::AT_NO_AUTOMOUNT;

/// A lower file of an overlay, not copied up (see `fs::overlay`).
fn is_overlay_lower<H: Hal>(cx: &SysCtx<'_, H>, inode: &InodeRef) -> bool {
    cx.k.fs.fstype(inode.sb) == FsType::Overlay && inode.fsdata.is_some() && !inode.is_dir()
}

/// The inode to change at `loc`: a lower file of an overlay is copied up
/// into its place first (its data too, with `keep_data`).
fn upper_loc<H: Hal>(cx: &mut SysCtx<'_, H>, loc: &mut Loc, keep_data: bool) -> Result<InodeRef, Errno> {
    let n = loc.stack.len();
    if n >= 2 && overlay::is_overlay_dir(&loc.stack[n - 2].1) {
        let (dir, name, node) = (loc.stack[n - 2].1.clone(), loc.stack[n - 1].0.clone(), loc.stack[n - 1].1.clone());
        let up = copy_up(cx, &dir, &name, &node, keep_data)?;
        loc.stack[n - 1].1 = up.clone();
        return Ok(up);
    }
    Ok(loc.inode().clone())
}

/// The inode to change behind open file `f` (copied up through the path it
/// was opened by, if it is an overlay's lower file).
fn fd_upper<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef) -> Result<InodeRef, Errno> {
    if !is_overlay_lower(cx, &f.inode) {
        return Ok(f.inode.clone());
    }
    let root = Loc::root(cx.k.fs.root.clone());
    let mut loc = walk_from(cx, &root, &f.path.clone(), Follow::No)?;
    if loc.inode().ino != f.inode.ino {
        return Err(Errno::ESTALE);
    }
    upper_loc(cx, &mut loc, true)
}

/// Copy `node`, named `name` in overlay directory `dir`, up (see
/// [`overlay::copy_up`]). Without `keep_data` (the file is about to be
/// emptied) its mappings go first, as a truncation's would.
fn copy_up<H: Hal>(cx: &mut SysCtx<'_, H>, dir: &InodeRef, name: &str, node: &InodeRef, keep_data: bool) -> Result<InodeRef, Errno> {
    if !keep_data && overlay::is_lower(dir, name, node) {
        if let Kind::File(d) = &node.kind {
            super::mem::invalidate_everywhere(cx, &d.cache().clone(), 0, u64::MAX, true);
        }
    }
    overlay::copy_up(&cx.k.fs, dir, name, node, keep_data, &mut cx.k.frames, cx.hal.phys())
}

/// [`at_inode`] for calls that change the inode (chmod, chown, utimes,
/// truncate): an overlay's lower file is copied up first.
fn at_upper<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32, allowed: u32) -> Result<InodeRef, Errno> {
    let inode = at_inode(cx, dirfd, pathp, flags, allowed)?;
    if !is_overlay_lower(cx, &inode) {
        return Ok(inode);
    }
    let p = if pathp == 0 { String::new() } else { cx.read_path(pathp)? };
    if p.is_empty() {
        let f = cx.t.fds.file(dirfd as i32 as i64 as u64)?;
        return fd_upper(cx, &f);
    }
    let follow = if flags & g::AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    let mut loc = resolve(cx, dirfd, &p, follow)?;
    upper_loc(cx, &mut loc, true)
}

/// `newfstatat(dirfd, path, statbuf, flags)`.
pub fn newfstatat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], a[3] as u32, STAT_FLAGS)?;
    cx.write_user(a[2], &inode.stat_bytes())?;
    Ok(0)
}

/// `stat(path, statbuf)`.
pub fn stat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    cx.write_user(a[1], &inode.stat_bytes())?;
    Ok(0)
}

/// `lstat(path, statbuf)`.
pub fn lstat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, AT_FDCWD as u64, a[0], g::AT_SYMLINK_NOFOLLOW, g::AT_SYMLINK_NOFOLLOW)?;
    cx.write_user(a[1], &inode.stat_bytes())?;
    Ok(0)
}

/// The `struct statx` of `inode` (256 bytes).
pub fn statx_bytes(inode: &InodeRef) -> [u8; 256] {
    let st = inode.stat_bytes();
    let m = *inode.meta.borrow();
    let mut b = [0u8; 256];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &g::STATX_BASIC_STATS.to_le_bytes());
    put(4, &4096u32.to_le_bytes());
    put(16, &m.nlink.to_le_bytes());
    put(20, &m.uid.to_le_bytes());
    put(24, &m.gid.to_le_bytes());
    put(28, &(inode.mode() as u16).to_le_bytes());
    put(32, &inode.ino.to_le_bytes());
    put(40, &st[48..56]); // size
    put(48, &st[64..72]); // blocks
    for (off, t) in [(64, m.atime_ns), (96, m.ctime_ns), (112, m.mtime_ns)] {
        put(off, &((t / 1_000_000_000) as i64).to_le_bytes());
        put(off + 8, &((t % 1_000_000_000) as u32).to_le_bytes());
    }
    let rdev = u64::from_le_bytes([st[40], st[41], st[42], st[43], st[44], st[45], st[46], st[47]]);
    put(128, &((rdev >> 8) as u32).to_le_bytes());
    put(132, &((rdev & 0xff) as u32).to_le_bytes());
    let dev = u64::from_le_bytes([st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]]);
    put(136, &((dev >> 8) as u32).to_le_bytes());
    put(140, &((dev & 0xff) as u32).to_le_bytes());
    b
}

/// `statx(dirfd, path, flags, mask, buf)`.
pub fn statx<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[2] as u32;
    if a[3] as u32 & g::STATX__RESERVED != 0 || flags & g::AT_STATX_SYNC_TYPE == g::AT_STATX_SYNC_TYPE {
        return Err(Errno::EINVAL);
    }
    let inode = at_inode(cx, a[0], a[1], flags, STAT_FLAGS | g::AT_STATX_SYNC_TYPE)?;
    cx.write_user(a[4], &statx_bytes(&inode))?;
    Ok(0)
}

// ---------------------------------------------------------------- access

fn check_access<H: Hal>(cx: &SysCtx<'_, H>, inode: &InodeRef, mode: u64) -> SysResult {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    if mode & 2 != 0 && !matches!(inode.kind, Kind::Device(_)) {
        cx.k.fs.check_writable(inode.sb)?;
    }
    permission(inode, &cred(cx), mode as u32)?;
    Ok(0)
}

/// `access(path, mode)`.
pub fn access<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    check_access(cx, &inode, a[1])
}

/// `faccessat(dirfd, path, mode)`.
pub fn faccessat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], 0, 0)?;
    check_access(cx, &inode, a[2])
}

/// `faccessat2(dirfd, path, mode, flags)`.
pub fn faccessat2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, a[0], a[1], a[3] as u32, STAT_FLAGS | g::AT_EACCESS)?;
    check_access(cx, &inode, a[2])
}

// ---------------------------------------------------------------- readlink

fn do_readlink<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, buf: u64, size: u64) -> SysResult {
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let p = cx.read_path(pathp)?;
    let inode = if p.is_empty() {
        // Linux: an empty path reads the link an O_PATH fd refers to.
        if dirfd as i32 == AT_FDCWD {
            return Err(Errno::ENOENT);
        }
        cx.t.fds.file(dirfd)?.inode.clone()
    } else {
        resolve(cx, dirfd, &p, Follow::No)?.inode().clone()
    };
    let target = match &inode.kind {
        Kind::Symlink(t) => t.clone(),
        _ => return Err(if p.is_empty() { Errno::ENOENT } else { Errno::EINVAL }),
    };
    let bytes = path::name_to_bytes(&target);
    let n = bytes.len().min(size as usize);
    cx.write_user(buf, &bytes[..n])?;
    Ok(n)
}

/// `readlink(path, buf, size)`.
pub fn readlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_readlink(cx, AT_FDCWD as u64, a[0], a[1], a[2])
}

/// `readlinkat(dirfd, path, buf, size)`.
pub fn readlinkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_readlink(cx, a[0], a[1], a[2], a[3])
}

// ---------------------------------------------------------------- mkdir, mknod, symlink

fn do_mkdir<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, mode: u32) -> SysResult {
    let p = cx.read_path(pathp)?;
    let par = resolve_parent(cx, dirfd, &p)?;
    if par.name.is_empty() || par.name == "." || par.name == ".." {
        return Err(Errno::EEXIST);
    }
    if par.dir.inode().lookup(&par.name)?.is_some() {
        return Err(Errno::EEXIST);
    }
    may_create(cx, par.dir.inode())?;
    let perm = mode & !cx.t.umask & 0o7777;
    if cx.k.fs.is_host(par.dir.inode().sb) {
        cx.k.fs.host_create(par.dir.inode(), &par.name, perm, true)?;
    } else if ext4::is_ext4(par.dir.inode()) {
        let n = ext4::create(par.dir.inode(), &par.name, ext4::NewKind::Dir, perm, (cred(cx).uid, cred(cx).gid), cx.hal.realtime_ns())?;
        inherit_owner(cx, par.dir.inode(), &n);
    } else {
        let d = new_node(cx, par.dir.inode(), Kind::Dir(RefCell::new(Default::default())), perm)?;
        par.dir.inode().insert(&par.name, d)?;
    }
    par.dir.inode().meta.borrow_mut().nlink += 1;
    touch_dir(par.dir.inode(), cx.hal.realtime_ns());
    Ok(0)
}

/// `mkdir(path, mode)`.
pub fn mkdir<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mkdir(cx, AT_FDCWD as u64, a[0], a[1] as u32)
}

/// `mkdirat(dirfd, path, mode)`.
pub fn mkdirat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mkdir(cx, a[0], a[1], a[2] as u32)
}

fn do_symlink<H: Hal>(cx: &mut SysCtx<'_, H>, targetp: u64, dirfd: u64, pathp: u64) -> SysResult {
    let target = cx.read_path(targetp)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let p = cx.read_path(pathp)?;
    let par = resolve_parent(cx, dirfd, &p)?;
    if par.name.is_empty() || par.name == "." || par.name == ".." || par.dir.inode().lookup(&par.name)?.is_some() {
        return Err(Errno::EEXIST);
    }
    if par.slash {
        return Err(Errno::ENOENT);
    }
    may_create(cx, par.dir.inode())?;
    if cx.k.fs.is_host(par.dir.inode().sb) {
        cx.k.fs.host_symlink(par.dir.inode(), &par.name, &target)?;
        touch_dir(par.dir.inode(), cx.hal.realtime_ns());
        return Ok(0);
    }
    if ext4::is_ext4(par.dir.inode()) {
        let n = ext4::create(par.dir.inode(), &par.name, ext4::NewKind::Symlink(&target), 0o777, (cred(cx).uid, cred(cx).gid), cx.hal.realtime_ns())?;
        inherit_owner(cx, par.dir.inode(), &n);
        touch_dir(par.dir.inode(), cx.hal.realtime_ns());
        return Ok(0);
    }
    let node = new_node(cx, par.dir.inode(), Kind::Symlink(target), 0o777)?;
    par.dir.inode().insert(&par.name, node)?;
    touch_dir(par.dir.inode(), cx.hal.realtime_ns());
    Ok(0)
}

/// `symlink(target, linkpath)`.
pub fn symlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_symlink(cx, a[0], AT_FDCWD as u64, a[1])
}

/// `symlinkat(target, newdirfd, linkpath)`.
pub fn symlinkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_symlink(cx, a[0], a[1], a[2])
}

fn do_mknod<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, mode: u32, dev: u64) -> SysResult {
    let p = cx.read_path(pathp)?;
    // `None`: a regular file (its data is made for the parent's file system).
    let kind = match mode & g::S_IFMT {
        0 | g::S_IFREG => None,
        g::S_IFCHR => Some({
            if !cred(cx).is_root() {
                return Err(Errno::EPERM);
            }
            let (maj, min) = (((dev >> 8) & 0xfff) as u32, ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32);
            use crate::fs::Device as D;
            Kind::Device(match (maj, min) {
                (1, 3) => D::Null,
                (1, 5) => D::Zero,
                (1, 7) => D::Full,
                (1, 8) | (1, 9) => D::Random,
                (5, 0) | (5, 1) => D::Console,
                _ => return Err(Errno::EPERM),
            })
        }),
        g::S_IFDIR => return Err(Errno::EPERM),
        g::S_IFIFO => Some(Kind::Special(crate::fs::pipe::Pipe::charged(true, cx.k.frames.budget())?)),
        g::S_IFSOCK | g::S_IFBLK => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    let par = resolve_parent(cx, dirfd, &p)?;
    if par.name.is_empty() || par.name == "." || par.name == ".." || par.dir.inode().lookup(&par.name)?.is_some() {
        return Err(Errno::EEXIST);
    }
    may_create(cx, par.dir.inode())?;
    if cx.k.fs.is_host(par.dir.inode().sb) {
        // A host FIFO or device node would never be opened (see fs::hostfs),
        // so only regular files are made on the host.
        if kind.is_some() {
            return Err(Errno::EPERM);
        }
        cx.k.fs.host_create(par.dir.inode(), &par.name, mode & !cx.t.umask & 0o7777, false)?;
        touch_dir(par.dir.inode(), cx.hal.realtime_ns());
        return Ok(0);
    }
    if ext4::is_ext4(par.dir.inode()) {
        // Only regular files: FIFOs and device nodes on the disk are not made.
        if kind.is_some() {
            return Err(Errno::EPERM);
        }
        let n = ext4::create(par.dir.inode(), &par.name, ext4::NewKind::File, mode & !cx.t.umask & 0o7777, (cred(cx).uid, cred(cx).gid), cx.hal.realtime_ns())?;
        inherit_owner(cx, par.dir.inode(), &n);
        touch_dir(par.dir.inode(), cx.hal.realtime_ns());
        return Ok(0);
    }
    let kind = kind.unwrap_or_else(|| Kind::File(cx.k.fs.new_file_data(par.dir.inode().sb)));
    let node = new_node(cx, par.dir.inode(), kind, mode & !cx.t.umask & 0o7777)?;
    par.dir.inode().insert(&par.name, node)?;
    touch_dir(par.dir.inode(), cx.hal.realtime_ns());
    Ok(0)
}

/// `mknod(path, mode, dev)`.
pub fn mknod<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mknod(cx, AT_FDCWD as u64, a[0], a[1] as u32, a[2])
}

/// `mknodat(dirfd, path, mode, dev)`.
pub fn mknodat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_mknod(cx, a[0], a[1], a[2] as u32, a[3])
}

// ---------------------------------------------------------------- unlink, rmdir

/// Drop `name` from `dir`'s map (an overlay leaves a whiteout when its
/// lower layer has the name).
fn remove_entry(dir: &InodeRef, name: &str) -> Result<(), Errno> {
    overlay::remove_name(dir, name)
}

fn drop_link(node: &InodeRef, now: u64) {
    let mut m = node.meta.borrow_mut();
    m.nlink = m.nlink.saturating_sub(if node.is_dir() { 2 } else { 1 });
    m.ctime_ns = now;
}

fn is_empty_dir(node: &InodeRef) -> bool {
    if overlay::is_overlay_dir(node) {
        return overlay::is_empty(node).unwrap_or(false);
    }
    matches!(&node.kind, Kind::Dir(c) if c.borrow().is_empty())
}

fn do_unlink<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, flags: u32) -> SysResult {
    if flags & !g::AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let rmdir = flags & g::AT_REMOVEDIR != 0;
    let p = cx.read_path(pathp)?;
    let par = resolve_parent(cx, dirfd, &p)?;
    match par.name.as_str() {
        "" => return Err(if rmdir { Errno::EBUSY } else { Errno::EISDIR }),
        "." if rmdir => return Err(Errno::EINVAL),
        ".." if rmdir => return Err(Errno::ENOTEMPTY),
        "." | ".." => return Err(Errno::EISDIR),
        _ => {}
    }
    let dir = par.dir.inode().clone();
    let raw = dir.lookup(&par.name)?.ok_or(Errno::ENOENT)?;
    if rmdir {
        if !raw.is_dir() {
            return Err(Errno::ENOTDIR);
        }
    } else if raw.is_dir() {
        return Err(Errno::EISDIR);
    } else if par.slash {
        return Err(Errno::ENOTDIR);
    }
    cx.k.fs.check_writable(dir.sb)?;
    may_delete(&dir, &raw, &cred(cx))?;
    if raw.mounted.borrow().is_some() {
        return Err(Errno::EBUSY);
    }
    if rmdir && !is_empty_dir(&raw) {
        return Err(Errno::ENOTEMPTY);
    }
    if matches!(cx.k.fs.fstype(dir.sb), FsType::Proc | FsType::Sysfs) {
        return Err(Errno::EACCES);
    }
    if cx.k.fs.is_host(dir.sb) {
        cx.k.fs.host_unlink(&dir, &par.name, rmdir, &raw)?;
    }
    if ext4::is_ext4(&dir) {
        ext4::unlink(&dir, &par.name, &raw, cx.hal.realtime_ns())?;
    }
    remove_entry(&dir, &par.name)?;
    cx.k.fs.unlinked(&raw);
    let now = cx.hal.realtime_ns();
    drop_link(&raw, now);
    if rmdir {
        let mut m = dir.meta.borrow_mut();
        m.nlink = m.nlink.saturating_sub(1);
    }
    touch_dir(&dir, now);
    Ok(0)
}

/// `unlink(path)`.
pub fn unlink<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_unlink(cx, AT_FDCWD as u64, a[0], 0)
}

/// `unlinkat(dirfd, path, flags)`.
pub fn unlinkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_unlink(cx, a[0], a[1], a[2] as u32)
}

/// `rmdir(path)`.
pub fn rmdir<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_unlink(cx, AT_FDCWD as u64, a[0], g::AT_REMOVEDIR)
}

// ---------------------------------------------------------------- link, rename

fn do_link<H: Hal>(cx: &mut SysCtx<'_, H>, olddirfd: u64, oldp: u64, newdirfd: u64, newp: u64, flags: u32) -> SysResult {
    if flags & !(g::AT_SYMLINK_FOLLOW | g::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old = if flags & g::AT_EMPTY_PATH != 0 && cx.read_path(oldp).is_err_and(|e| e == Errno::ENOENT) {
        cx.t.fds.file(olddirfd)?.inode.clone()
    } else {
        let p = cx.read_path(oldp)?;
        let follow = if flags & g::AT_SYMLINK_FOLLOW != 0 { Follow::Yes } else { Follow::No };
        let mut loc = resolve(cx, olddirfd, &p, follow)?;
        upper_loc(cx, &mut loc, true)?
    };
    let p = cx.read_path(newp)?;
    let par = resolve_parent(cx, newdirfd, &p)?;
    if par.name.is_empty() || par.name == "." || par.name == ".." || par.dir.inode().lookup(&par.name)?.is_some() {
        return Err(Errno::EEXIST);
    }
    if old.is_dir() {
        return Err(Errno::EPERM);
    }
    if par.slash {
        return Err(Errno::ENOENT);
    }
    if old.sb != par.dir.inode().sb {
        return Err(Errno::EXDEV);
    }
    may_create(cx, par.dir.inode())?;
    if cx.k.fs.is_host(old.sb) {
        // The host counts the links; an O_TMPFILE file may get its first.
        cx.k.fs.host_link(&old, par.dir.inode(), &par.name)?;
        touch_dir(par.dir.inode(), cx.hal.realtime_ns());
        return Ok(0);
    }
    if old.meta.borrow().nlink == 0 && !is_tmpfile(&old) {
        return Err(Errno::ENOENT);
    }
    if ext4::is_ext4(&old) {
        ext4::link(&old, par.dir.inode(), &par.name, cx.hal.realtime_ns())?;
        par.dir.inode().insert(&par.name, old.clone())?;
    } else {
        // Names in memory cost memory too: a guest making links without
        // end runs out of room as Linux's tmpfs runs out of inodes.
        cx.k.fs.charge_link(&old).map_err(|_| Errno::ENOSPC)?;
        if let Err(e) = par.dir.inode().insert(&par.name, old.clone()) {
            cx.k.fs.unlinked(&old);
            return Err(e);
        }
    }
    let now = cx.hal.realtime_ns();
    {
        let mut m = old.meta.borrow_mut();
        m.nlink += 1;
        m.ctime_ns = now;
    }
    touch_dir(par.dir.inode(), now);
    Ok(0)
}

/// An `O_TMPFILE` file not linked yet (its open descriptions name it `#tmpfile`).
fn is_tmpfile(node: &InodeRef) -> bool {
    matches!(node.kind, Kind::File(_)) && node.meta.borrow().nlink == 0 && Arc::strong_count(node) > 1
}

/// `link(old, new)`.
pub fn link<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_link(cx, AT_FDCWD as u64, a[0], AT_FDCWD as u64, a[1], 0)
}

/// `linkat(olddirfd, old, newdirfd, new, flags)`.
pub fn linkat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_link(cx, a[0], a[1], a[2], a[3], a[4] as u32)
}

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

fn do_rename<H: Hal>(cx: &mut SysCtx<'_, H>, olddirfd: u64, oldp: u64, newdirfd: u64, newp: u64, flags: u32) -> SysResult {
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
        || flags & RENAME_WHITEOUT != 0
        || flags & RENAME_NOREPLACE != 0 && flags & RENAME_EXCHANGE != 0
    {
        return Err(Errno::EINVAL);
    }
    let op = cx.read_path(oldp)?;
    let np = cx.read_path(newp)?;
    let src = resolve_parent(cx, olddirfd, &op)?;
    let dst = resolve_parent(cx, newdirfd, &np)?;
    for n in [&src.name, &dst.name] {
        if n.is_empty() || n == "." || n == ".." {
            return Err(Errno::EBUSY);
        }
    }
    let sdir = src.dir.inode().clone();
    let ddir = dst.dir.inode().clone();
    let node = sdir.lookup(&src.name)?.ok_or(Errno::ENOENT)?;
    let target = ddir.lookup(&dst.name)?;
    if overlay::rename_is_exdev(&cx.k.fs, &node) || target.as_ref().is_some_and(|t| flags & RENAME_EXCHANGE != 0 && overlay::rename_is_exdev(&cx.k.fs, t)) {
        return Err(Errno::EXDEV);
    }
    // An overlay's lower files move as their copies.
    let node = if overlay::is_overlay_dir(&sdir) { copy_up(cx, &sdir, &src.name, &node, true)? } else { node };
    let target = match target {
        Some(t) if flags & RENAME_EXCHANGE != 0 && overlay::is_overlay_dir(&ddir) => Some(copy_up(cx, &ddir, &dst.name, &t, true)?),
        t => t,
    };
    if (src.slash || dst.slash) && !node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if sdir.sb != ddir.sb {
        return Err(Errno::EXDEV);
    }
    let host = cx.k.fs.is_host(sdir.sb);
    cx.k.fs.check_writable(sdir.sb)?;
    if matches!(cx.k.fs.fstype(sdir.sb), FsType::Proc | FsType::Sysfs) {
        return Err(Errno::EACCES);
    }
    let c = cred(cx);
    may_delete(&sdir, &node, &c)?;
    if let Some(t) = &target {
        may_delete(&ddir, t, &c)?;
    } else {
        permission(&ddir, &c, MAY_WRITE | MAY_EXEC)?;
    }
    if node.mounted.borrow().is_some() || target.as_ref().is_some_and(|t| t.mounted.borrow().is_some()) {
        return Err(Errno::EBUSY);
    }
    if flags & RENAME_EXCHANGE != 0 {
        let t = target.ok_or(Errno::ENOENT)?;
        if Arc::ptr_eq(&t, &node) {
            return Ok(0);
        }
        // Neither may contain the other.
        if dst.dir.stack.iter().any(|(_, i)| Arc::ptr_eq(i, &node)) || src.dir.stack.iter().any(|(_, i)| Arc::ptr_eq(i, &t)) {
            return Err(Errno::EINVAL);
        }
        if host {
            cx.k.fs.host_rename(&sdir, &src.name, &ddir, &dst.name, flags, &node, Some(&t))?;
        }
        if ext4::is_ext4(&sdir) {
            ext4::rename(&sdir, &src.name, &ddir, &dst.name, &node, Some(&t), true, cx.hal.realtime_ns())?;
        }
        sdir.insert(&src.name, t.clone())?;
        ddir.insert(&dst.name, node.clone())?;
        if !Arc::ptr_eq(&sdir, &ddir) && node.is_dir() != t.is_dir() {
            let (to_s, to_d): (i32, i32) = if node.is_dir() { (-1, 1) } else { (1, -1) };
            let adj = |d: &InodeRef, by: i32| {
                let mut m = d.meta.borrow_mut();
                m.nlink = (m.nlink as i32 + by).max(1) as u32;
            };
            adj(&sdir, to_s);
            adj(&ddir, to_d);
        }
        let now = cx.hal.realtime_ns();
        touch_dir(&sdir, now);
        touch_dir(&ddir, now);
        return Ok(0);
    }
    if target.is_some() && flags & RENAME_NOREPLACE != 0 {
        return Err(Errno::EEXIST);
    }
    // Ancestry comes before file types, as in Linux's do_renameat2: a
    // directory may not move into its own subtree (EINVAL), and the target
    // may not be an ancestor of the source (ENOTEMPTY).
    if node.is_dir() && dst.dir.stack.iter().any(|(_, i)| Arc::ptr_eq(i, &node)) {
        return Err(Errno::EINVAL);
    }
    if let Some(t) = &target {
        if src.dir.stack.iter().any(|(_, i)| Arc::ptr_eq(i, t)) {
            return Err(Errno::ENOTEMPTY);
        }
        if Arc::ptr_eq(t, &node) {
            return Ok(0);
        }
        match (node.is_dir(), t.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !is_empty_dir(t) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
    }
    if host {
        cx.k.fs.host_rename(&sdir, &src.name, &ddir, &dst.name, flags, &node, target.as_ref())?;
    }
    if ext4::is_ext4(&sdir) {
        ext4::rename(&sdir, &src.name, &ddir, &dst.name, &node, target.as_ref(), false, cx.hal.realtime_ns())?;
    }
    let now = cx.hal.realtime_ns();
    if let Some(t) = &target {
        drop_link(t, now);
        if t.is_dir() {
            let mut m = ddir.meta.borrow_mut();
            m.nlink = m.nlink.saturating_sub(1);
        }
    }
    remove_entry(&sdir, &src.name)?;
    ddir.insert(&dst.name, node.clone())?;
    if node.is_dir() && !Arc::ptr_eq(&sdir, &ddir) {
        {
            let mut m = sdir.meta.borrow_mut();
            m.nlink = m.nlink.saturating_sub(1);
        }
        ddir.meta.borrow_mut().nlink += 1;
    }
    node.meta.borrow_mut().ctime_ns = now;
    touch_dir(&sdir, now);
    touch_dir(&ddir, now);
    Ok(0)
}

/// `rename(old, new)`.
pub fn rename<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_rename(cx, AT_FDCWD as u64, a[0], AT_FDCWD as u64, a[1], 0)
}

/// `renameat(olddirfd, old, newdirfd, new)`.
pub fn renameat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_rename(cx, a[0], a[1], a[2], a[3], 0)
}

/// `renameat2(olddirfd, old, newdirfd, new, flags)`.
pub fn renameat2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_rename(cx, a[0], a[1], a[2], a[3], a[4] as u32)
}

// ---------------------------------------------------------------- chmod, chown

fn set_mode<H: Hal>(cx: &mut SysCtx<'_, H>, inode: &InodeRef, mode: u32) -> SysResult {
    let c = cred(cx);
    cx.k.fs.check_writable(inode.sb)?;
    if !c.owns(inode) {
        return Err(Errno::EPERM);
    }
    let mut perm = mode & 0o7777;
    if !c.is_root() && !c.in_group(inode.meta.borrow().gid) {
        perm &= !0o2000;
    }
    if cx.k.fs.is_host(inode.sb) {
        cx.k.fs.host_setattr(inode, &HostSetAttr { perm: Some(perm), ..Default::default() })?;
        return Ok(0);
    }
    let now = cx.hal.realtime_ns();
    let mut m = inode.meta.borrow_mut();
    m.perm = perm;
    m.ctime_ns = now;
    Ok(0)
}

/// `chmod(path, mode)`.
pub fn chmod<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    set_mode(cx, &inode, a[1] as u32)
}

/// `fchmod(fd, mode)`.
pub fn fchmod<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    if f.flags.get() & g::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let inode = fd_upper(cx, &f)?;
    set_mode(cx, &inode, a[1] as u32)
}

/// `fchmodat(dirfd, path, mode)`.
pub fn fchmodat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    // fchmodat(2) has no flags argument: whatever is in r10 is noise
    // (coreutils' chmod leaves garbage there). fchmodat2 has one.
    fchmodat2(cx, [a[0], a[1], a[2], 0, 0, 0])
}

/// `fchmodat2(dirfd, path, mode, flags)` (`AT_SYMLINK_NOFOLLOW` on a link is
/// `EOPNOTSUPP`, as Linux).
pub fn fchmodat2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[3] as u32;
    let inode = at_upper(cx, a[0], a[1], flags, g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH)?;
    if matches!(inode.kind, Kind::Symlink(_)) {
        return Err(Errno::EOPNOTSUPP);
    }
    set_mode(cx, &inode, a[2] as u32)
}

fn set_owner<H: Hal>(cx: &mut SysCtx<'_, H>, inode: &InodeRef, uid: u32, gid: u32) -> SysResult {
    let c = cred(cx);
    cx.k.fs.check_writable(inode.sb)?;
    let m0 = *inode.meta.borrow();
    let uid_change = uid != u32::MAX && uid != m0.uid;
    let gid_change = gid != u32::MAX && gid != m0.gid;
    if !c.is_root() && (uid_change || (gid_change && (m0.uid != c.uid || !c.in_group(gid))) || (uid != u32::MAX && m0.uid != c.uid)) {
        return Err(Errno::EPERM);
    }
    if cx.k.fs.is_host(inode.sb) {
        // The host applies its own rules on top (an unprivileged kernel
        // process cannot give a file away: EPERM).
        let a = HostSetAttr { uid: (uid != u32::MAX).then_some(uid), gid: (gid != u32::MAX).then_some(gid), ..Default::default() };
        cx.k.fs.host_setattr(inode, &a)?;
        return Ok(0);
    }
    let now = cx.hal.realtime_ns();
    let mut m = inode.meta.borrow_mut();
    if uid != u32::MAX {
        m.uid = uid;
    }
    if gid != u32::MAX {
        m.gid = gid;
    }
    if !inode.is_dir() && !matches!(inode.kind, Kind::Symlink(_)) && (uid != u32::MAX || gid != u32::MAX) {
        // Linux drops set-user-ID, and set-group-ID when group-executable.
        m.perm &= !0o4000;
        if m.perm & 0o010 != 0 {
            m.perm &= !0o2000;
        }
    }
    m.ctime_ns = now;
    Ok(0)
}

/// `chown(path, uid, gid)`.
pub fn chown<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    set_owner(cx, &inode, a[1] as u32, a[2] as u32)
}

/// `lchown(path, uid, gid)`.
pub fn lchown<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], g::AT_SYMLINK_NOFOLLOW, g::AT_SYMLINK_NOFOLLOW)?;
    set_owner(cx, &inode, a[1] as u32, a[2] as u32)
}

/// `fchown(fd, uid, gid)`.
pub fn fchown<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    if f.flags.get() & g::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let inode = fd_upper(cx, &f)?;
    set_owner(cx, &inode, a[1] as u32, a[2] as u32)
}

/// `fchownat(dirfd, path, uid, gid, flags)`.
pub fn fchownat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_upper(cx, a[0], a[1], a[4] as u32, g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH)?;
    set_owner(cx, &inode, a[2] as u32, a[3] as u32)
}

// ---------------------------------------------------------------- times

const UTIME_NOW: u64 = (1 << 30) - 1;
const UTIME_OMIT: u64 = (1 << 30) - 2;

/// Set (atime, mtime); `None` = leave, `Some(None)` = now.
fn set_times<H: Hal>(cx: &mut SysCtx<'_, H>, inode: &InodeRef, times: Option<[Option<Option<u64>>; 2]>) -> SysResult {
    let c = cred(cx);
    let explicit = times.is_some_and(|t| t.iter().any(|x| matches!(x, Some(Some(_)))));
    let all_omit = times.is_some_and(|t| t.iter().all(|x| x.is_none()));
    if all_omit {
        return Ok(0);
    }
    cx.k.fs.check_writable(inode.sb)?;
    if !c.owns(inode) {
        if explicit {
            return Err(Errno::EPERM);
        }
        permission(inode, &c, MAY_WRITE)?;
    }
    let now = cx.hal.realtime_ns();
    let t = times.unwrap_or([Some(None), Some(None)]);
    if cx.k.fs.is_host(inode.sb) {
        let pick = |x: Option<Option<u64>>| x.map(|v| v.unwrap_or(now) as i64);
        let a = HostSetAttr { atime_ns: pick(t[0]), mtime_ns: pick(t[1]), ..Default::default() };
        cx.k.fs.host_setattr(inode, &a)?;
        return Ok(0);
    }
    let mut m = inode.meta.borrow_mut();
    if let Some(a) = t[0] {
        m.atime_ns = a.unwrap_or(now);
    }
    if let Some(x) = t[1] {
        m.mtime_ns = x.unwrap_or(now);
    }
    m.ctime_ns = now;
    Ok(0)
}

fn read_timespecs<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64) -> Result<Option<[Option<Option<u64>>; 2]>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let mut out = [None, None];
    for (i, o) in out.iter_mut().enumerate() {
        let sec = cx.read_u64(addr + 16 * i as u64)?;
        let nsec = cx.read_u64(addr + 16 * i as u64 + 8)?;
        *o = match nsec {
            UTIME_NOW => Some(None),
            UTIME_OMIT => None,
            n if n < 1_000_000_000 && (sec as i64) >= 0 => Some(Some(sec.saturating_mul(1_000_000_000).saturating_add(n))),
            n if n < 1_000_000_000 => Some(Some(0)),
            _ => return Err(Errno::EINVAL),
        };
    }
    Ok(Some(out))
}

fn read_timevals<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64) -> Result<Option<[Option<Option<u64>>; 2]>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let mut out = [None, None];
    for (i, o) in out.iter_mut().enumerate() {
        let sec = cx.read_u64(addr + 16 * i as u64)?;
        let usec = cx.read_u64(addr + 16 * i as u64 + 8)?;
        if usec >= 1_000_000 {
            return Err(Errno::EINVAL);
        }
        *o = Some(Some(sec.saturating_mul(1_000_000_000).saturating_add(usec * 1000)));
    }
    Ok(Some(out))
}

/// `utimensat(dirfd, path, times, flags)`; a NULL path means `dirfd` itself.
pub fn utimensat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[3] as u32;
    if flags & !(g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let times = read_timespecs(cx, a[2])?;
    let inode = if a[1] == 0 {
        if a[0] as i32 == AT_FDCWD {
            return Err(Errno::EFAULT);
        }
        let f = cx.t.fds.file(a[0])?;
        fd_upper(cx, &f)?
    } else {
        at_upper(cx, a[0], a[1], flags, g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH)?
    };
    set_times(cx, &inode, times)
}

/// `utimes(path, times)`.
pub fn utimes<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let times = read_timevals(cx, a[1])?;
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    set_times(cx, &inode, times)
}

/// `futimesat(dirfd, path, times)`.
pub fn futimesat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let times = read_timevals(cx, a[2])?;
    let inode = at_upper(cx, a[0], a[1], 0, 0)?;
    set_times(cx, &inode, times)
}

/// `utime(path, times)` (`struct utimbuf`: two `time_t`).
pub fn utime<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let times = if a[1] == 0 {
        None
    } else {
        let at = cx.read_u64(a[1])?;
        let mt = cx.read_u64(a[1] + 8)?;
        Some([Some(Some(at.saturating_mul(1_000_000_000))), Some(Some(mt.saturating_mul(1_000_000_000)))])
    };
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    set_times(cx, &inode, times)
}

// ---------------------------------------------------------------- truncate, sync

/// `truncate(path, len)`.
pub fn truncate<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let inode = at_inode(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    if inode.is_dir() {
        return Err(Errno::EISDIR);
    }
    permission(&inode, &cred(cx), MAY_WRITE)?;
    let inode = at_upper(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    cx.k.fs.check_writable(inode.sb)?;
    if !matches!(inode.kind, Kind::File(_)) {
        return Err(Errno::EINVAL);
    }
    super::file::truncate_file(cx, &inode, a[1])
}

/// `fsync(fd)`: a host file's pages written through shared mappings reach
/// the host file (`write` already went through), and the host flushes it.
pub fn fsync<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_fsync(cx, a[0], false)
}

/// `fdatasync(fd)`.
pub fn fdatasync<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    do_fsync(cx, a[0], true)
}

fn do_fsync<H: Hal>(cx: &mut SysCtx<'_, H>, fd: u64, data_only: bool) -> SysResult {
    let f = cx.t.fds.file(fd)?;
    if f.flags.get() & g::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    match &f.inode.kind {
        Kind::File(d) => {
            d.writeback(0, u64::MAX, &cx.k.frames, cx.hal.phys())?;
            cx.k.fs.host_fsync(&f.inode, data_only)?;
            ext4::fsync(&f.inode)?;
            if let Some(disk) = f.inode.block_disk() {
                // The node's writes went through: the disk flushes them.
                disk.flush()?;
            }
            Ok(0)
        }
        Kind::Dir(_) => {
            cx.k.fs.host_fsync(&f.inode, data_only)?;
            ext4::fsync(&f.inode)?;
            Ok(0)
        }
        Kind::Device(_) => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// Bytes one `copy_file_range` moves at most (Linux also returns short counts).
const COPY_CHUNK: u64 = 1 << 20;

/// `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`: between
/// regular files, in the kernel, through their page caches (on hostfs the
/// bytes reach the host as a `write` would send them).
pub fn copy_file_range<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[5] != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = cx.t.fds.file(a[0])?;
    let fout = cx.t.fds.file(a[2])?;
    if fin.flags.get() & g::O_PATH != 0 || fout.flags.get() & g::O_PATH != 0 || !fin.readable() || !fout.writable() || fout.flags.get() & g::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    let (Kind::File(src), Kind::File(dst)) = (&fin.inode.kind, &fout.inode.kind) else {
        return Err(if fin.inode.is_dir() || fout.inode.is_dir() { Errno::EISDIR } else { Errno::EINVAL });
    };
    let (src, dst) = (src.cache().clone(), dst.cache().clone());
    let read_off = |cx: &mut SysCtx<'_, H>, p: u64, f: &FileRef| -> Result<u64, Errno> {
        if p == 0 {
            return Ok(f.offset.get());
        }
        let v = cx.read_u64(p)?;
        if (v as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        Ok(v)
    };
    let off_in = read_off(cx, a[1], &fin)?;
    let off_out = read_off(cx, a[3], &fout)?;
    let len = a[4].min(COPY_CHUNK);
    if off_out.checked_add(len).is_none_or(|e| e > crate::mm::page_cache::MAX_FILE_SIZE) {
        return Err(Errno::EFBIG);
    }
    if Arc::ptr_eq(&fin.inode, &fout.inode) && off_in < off_out.saturating_add(len) && off_out < off_in.saturating_add(len) {
        return Err(Errno::EINVAL);
    }
    let seals = dst.seals();
    if seals & (g::F_SEAL_WRITE | g::F_SEAL_FUTURE_WRITE) != 0 {
        return Err(Errno::EPERM);
    }
    let avail = src.size().saturating_sub(off_in).min(len);
    if avail == 0 {
        return Ok(0);
    }
    if seals & g::F_SEAL_GROW != 0 && off_out + avail > dst.size() {
        return Err(Errno::EPERM);
    }
    let mut bytes = alloc::vec![0u8; avail as usize];
    let got = src.read_to(off_in, &mut bytes, &mut cx.k.frames, cx.hal.phys())?;
    bytes.truncate(got);
    if bytes.is_empty() {
        return Ok(0);
    }
    let n = dst.write_bytes(off_out, &bytes, &mut cx.k.frames, cx.hal.phys())? as u64;
    let now = cx.hal.realtime_ns();
    {
        let mut m = fout.inode.meta.borrow_mut();
        m.mtime_ns = now;
        m.ctime_ns = now;
    }
    for (p, f, o) in [(a[1], &fin, off_in), (a[3], &fout, off_out)] {
        if p == 0 {
            f.offset.set(o + n);
        } else {
            cx.write_user(p, &(o + n).to_le_bytes())?;
        }
    }
    Ok(n as usize)
}

/// `sync()`: every dirty page of every host file is written back.
pub fn sync<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    // sync(2) cannot fail; errors show at the next fsync of the file.
    let _ = cx.k.fs.caches.writeback_all(&mut cx.k.frames, cx.hal.phys());
    let _ = cx.k.fs.disks.sync_all();
    Ok(0)
}

/// `syncfs(fd)`.
pub fn syncfs<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    cx.t.fds.file(a[0])?;
    cx.k.fs.caches.writeback_all(&mut cx.k.frames, cx.hal.phys())?;
    cx.k.fs.disks.sync_all()?;
    Ok(0)
}

// ---------------------------------------------------------------- statfs

/// The `struct statfs` of the file system holding `inode` (120 bytes).
pub fn statfs_bytes(fs: &crate::fs::Fs, inode: &InodeRef) -> [u8; 120] {
    let (magic, blocks, free) = fs.statfs_numbers(inode.sb);
    let mut b = [0u8; 120];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, magic);
    put(8, 4096);
    put(16, blocks);
    put(24, free);
    put(32, free);
    put(40, if blocks == 0 { 0 } else { 1 << 20 });
    put(48, if blocks == 0 { 0 } else { (1 << 20) - 1024 });
    put(56, inode.sb as u64);
    put(64, NAME_MAX as u64);
    put(72, 4096);
    put(80, 0x20 | if fs.is_readonly(inode.sb) { 1 } else { 0 });
    if let Some([bsize, blocks, bfree, bavail, files, ffree]) = fs.host_statfs(inode.sb) {
        // A hostfs mount (and an overlay over the host) shows the host
        // file system's numbers.
        for (off, v) in [(8, bsize), (16, blocks), (24, bfree), (32, bavail), (40, files), (48, ffree), (72, bsize)] {
            put(off, v);
        }
    }
    if let Some(vol) = crate::fs::ext4::volume_of(inode) {
        // A disk file system: its superblock's figures.
        let [bsize, blocks, bfree, bavail, files, ffree] = vol.statfs();
        for (off, v) in [(8, bsize), (16, blocks), (24, bfree), (32, bavail), (40, files), (48, ffree), (72, bsize)] {
            put(off, v);
        }
    }
    b
}

/// `statfs` of `inode`'s file system: a memory file system's size limit and
/// use (its files' pages), a host directory's host figures.
fn statfs_of<H: Hal>(cx: &SysCtx<'_, H>, inode: &InodeRef) -> [u8; 120] {
    statfs_bytes(&cx.k.fs, inode)
}

/// `statfs(path, buf)`.
pub fn statfs<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let inode = at_inode(cx, AT_FDCWD as u64, a[0], 0, 0)?;
    let b = statfs_of(cx, &inode);
    cx.write_user(a[1], &b)?;
    Ok(0)
}

/// `fstatfs(fd, buf)`.
pub fn fstatfs<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let f = cx.t.fds.file(a[0])?;
    let b = statfs_of(cx, &f.inode);
    cx.write_user(a[1], &b)?;
    Ok(0)
}

// ---------------------------------------------------------------- mount

const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
/// Flags that only change per-mount options we do not enforce.
const MS_IGNORED: u64 = 2 | 4 | 8 | 16 | 1024 | 2048 | (1 << 21) | (1 << 24) | (1 << 22) | (1 << 23) | (1 << 15) | 0xC0ED_0000;

fn read_opt_string<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64) -> Result<Option<String>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let b = cx.read_cstring(addr, 4096)?;
    Ok(Some(String::from_utf8(b).map_err(|_| Errno::EINVAL)?))
}

/// `mount(source, target, fstype, flags, data)`: new tmpfs, proc, sysfs and
/// devtmpfs instances, bind mounts and read-only remounts.
pub fn mount<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if !cred(cx).is_root() {
        return Err(Errno::EPERM);
    }
    let flags = a[3];
    let target = cx.read_path(a[1])?;
    let tloc = resolve(cx, AT_FDCWD as u64, &target, Follow::Yes)?;
    if flags & MS_REMOUNT != 0 {
        let node = tloc.inode().clone();
        let m = cx.k.fs.mounts.iter().rev().find(|m| Arc::ptr_eq(&m.root, &node)).ok_or(Errno::EINVAL)?;
        let sb = m.sb;
        let opts = match cx.k.fs.fstype(sb) {
            FsType::Tmpfs => Some(tmpfs_options(cx, a[4])?),
            FsType::Ext4 => {
                cx.k.fs.remount_ext4(sb, flags & MS_RDONLY != 0)?;
                None
            }
            _ => None,
        };
        if let Some(o) = &opts {
            o.apply(&node);
            if let (Some(size), Some(q)) = (o.size, cx.k.fs.quota(sb)) {
                // Linux refuses to shrink a tmpfs below what it holds.
                if size < q.used() {
                    return Err(Errno::EINVAL);
                }
                q.set_limit(Some(size));
            }
        }
        if let Some(s) = cx.k.fs.sbs.get_mut(&sb) {
            s.readonly = flags & MS_RDONLY != 0;
        }
        return Ok(0);
    }
    if flags & MS_MOVE != 0 {
        return Err(Errno::EINVAL);
    }
    let source = read_opt_string(cx, a[0])?.unwrap_or_default();
    if flags & MS_BIND != 0 {
        let sloc = resolve(cx, AT_FDCWD as u64, &source, Follow::Yes)?;
        let root = sloc.inode().clone();
        if root.is_dir() != tloc.inode().is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !root.is_dir() {
            return Err(Errno::EINVAL);
        }
        let sb = root.sb;
        cx.k.fs.attach(&tloc, root, sb, &source)?;
        return Ok(0);
    }
    if flags & !(MS_RDONLY | MS_IGNORED) != 0 {
        return Err(Errno::EINVAL);
    }
    let fstype = read_opt_string(cx, a[2])?.ok_or(Errno::EFAULT)?;
    let t = FsType::parse(&fstype).ok_or(Errno::ENODEV)?;
    if !tloc.inode().is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if t.needs_device() {
        // The source names a block device node: its disk.
        let sloc = resolve(cx, AT_FDCWD as u64, &source, Follow::Yes)?;
        let disk = sloc.inode().block_disk().cloned().ok_or(Errno::ENOTBLK)?;
        cx.k.fs.mount_ext4(&tloc, disk, &source, flags & MS_RDONLY != 0)?;
        return Ok(0);
    }
    let opts = if t == FsType::Tmpfs { tmpfs_options(cx, a[4])? } else { TmpfsOptions::default() };
    let now = cx.hal.realtime_ns();
    let src = if source.is_empty() { String::from(t.name()) } else { source };
    cx.k.fs.mount_new_sized(&tloc, t, &src, flags & MS_RDONLY != 0, now, opts.size)?;
    opts.apply(&crate::fs::path::cross_mounts(tloc.inode().clone()));
    Ok(0)
}

/// The tmpfs mount options honoured: `size=` (bytes, k/m/g/t, or % of
/// memory), `nr_blocks=` (pages), `mode=`, `uid=`, `gid=`; the others
/// Linux knows are accepted and ignored, unknown ones give `EINVAL`.
#[derive(Default)]
struct TmpfsOptions {
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl TmpfsOptions {
    /// Set the root directory's mode and owner.
    fn apply(&self, root: &InodeRef) {
        let mut m = root.meta.borrow_mut();
        if let Some(mode) = self.mode {
            m.perm = mode & 0o7777;
        }
        if let Some(u) = self.uid {
            m.uid = u;
        }
        if let Some(g) = self.gid {
            m.gid = g;
        }
    }
}

fn tmpfs_options<H: Hal>(cx: &mut SysCtx<'_, H>, data: u64) -> Result<TmpfsOptions, Errno> {
    let mut o = TmpfsOptions::default();
    let Some(text) = read_opt_string(cx, data)? else { return Ok(o) };
    let total = cx.k.frames.total_frames();
    for opt in text.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        let num = |v: &str, radix: u32| u32::from_str_radix(v, radix).map_err(|_| Errno::EINVAL);
        match k {
            // 0 means no limit, as on Linux.
            "size" => o.size = Some(crate::fs::mount::parse_size(v, total)?).map(|n| if n == 0 { u64::MAX } else { n }),
            "nr_blocks" => o.size = Some(v.parse::<u64>().map_err(|_| Errno::EINVAL)?).map(|n| if n == 0 { u64::MAX } else { n }),
            "mode" => o.mode = Some(num(v, 8)?),
            "uid" => o.uid = Some(num(v, 10)?),
            "gid" => o.gid = Some(num(v, 10)?),
            "nr_inodes" | "huge" | "mpol" | "inode32" | "inode64" | "noswap" | "quota" | "usrquota" | "grpquota"
            | "usrquota_block_hardlimit" | "usrquota_inode_hardlimit" | "grpquota_block_hardlimit"
            | "grpquota_inode_hardlimit" | "noatime" | "relatime" | "nosuid" | "nodev" | "noexec" | "rw" => {}
            _ => return Err(Errno::EINVAL),
        }
    }
    Ok(o)
}

const MNT_FORCE: u32 = 1;
const MNT_DETACH: u32 = 2;
const MNT_EXPIRE: u32 = 4;
const UMOUNT_NOFOLLOW: u32 = 8;

/// `umount2(target, flags)`.
pub fn umount2<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let flags = a[1] as u32;
    if flags & !(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) != 0 || (flags & MNT_EXPIRE != 0 && flags & (MNT_FORCE | MNT_DETACH) != 0) {
        return Err(Errno::EINVAL);
    }
    if !cred(cx).is_root() {
        return Err(Errno::EPERM);
    }
    let p = cx.read_path(a[0])?;
    let follow = if flags & UMOUNT_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
    let loc = resolve(cx, AT_FDCWD as u64, &p, follow)?;
    let node = loc.inode().clone();
    if !cx.k.fs.mounts.iter().any(|m| Arc::ptr_eq(&m.root, &node)) {
        return Err(Errno::EINVAL);
    }
    if flags & MNT_DETACH == 0 {
        // Busy while a working directory or an open file is inside it.
        let sb = node.sb;
        let uses = |t: &crate::task::Task<H::Space>| {
            t.cwd.inode().sb == sb
                || t.fds.fds().any(|fd| t.fds.get(fd as u64).is_ok_and(|e| e.file.inode.sb == sb))
        };
        if cx.k.fs.mounts.iter().filter(|m| m.sb == sb).count() == 1 && (uses(cx.t) || cx.k.procs.iter().any(|t| uses(t))) {
            return Err(Errno::EBUSY);
        }
    }
    if cx.k.fs.is_host(node.sb) {
        // What shared mappings wrote reaches the host before the mount goes.
        cx.k.fs.caches.writeback_all(&mut cx.k.frames, cx.hal.phys())?;
    }
    cx.k.fs.umount(&loc)?;
    Ok(0)
}

/// The inode an xattr call names: `path` (following links unless `nofollow`)
/// or, for the `f*` variants, an open fd.
fn xattr_target<H: Hal>(cx: &mut SysCtx<'_, H>, target: u64, by_fd: bool, nofollow: bool) -> Result<(), Errno> {
    if by_fd {
        cx.t.fds.file(target)?;
    } else {
        let flags = if nofollow { g::AT_SYMLINK_NOFOLLOW } else { 0 };
        at_inode(cx, AT_FDCWD as u64, target, flags, g::AT_SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// `getxattr`/`lgetxattr`/`fgetxattr`: no file here carries extended
/// attributes, so a valid target answers `ENODATA`, as a Linux file system
/// with none set does (ls -l asks for ACLs and SELinux labels).
fn xattr_get<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], by_fd: bool, nofollow: bool) -> SysResult {
    xattr_target(cx, a[0], by_fd, nofollow)?;
    cx.read_cstring(a[1], 256)?;
    Err(Errno::ENODATA)
}

/// `listxattr` family: an empty list.
fn xattr_list<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], by_fd: bool, nofollow: bool) -> SysResult {
    xattr_target(cx, a[0], by_fd, nofollow)?;
    Ok(0)
}

/// `setxattr`/`removexattr` families: the file systems here do not store
/// extended attributes (`EOPNOTSUPP`, as Linux's for such a file system).
fn xattr_set<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], by_fd: bool, nofollow: bool) -> SysResult {
    xattr_target(cx, a[0], by_fd, nofollow)?;
    Err(Errno::EOPNOTSUPP)
}

/// One handler per xattr system call: (name, implementation, by fd, no-follow).
macro_rules! xattr_calls {
    ($($name:ident => $imp:ident, $by_fd:literal, $nofollow:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`.")]
        pub fn $name<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
            $imp(cx, a, $by_fd, $nofollow)
        }
    )*};
}

xattr_calls! {
    getxattr => xattr_get, false, false;
    lgetxattr => xattr_get, false, true;
    fgetxattr => xattr_get, true, false;
    listxattr => xattr_list, false, false;
    llistxattr => xattr_list, false, true;
    flistxattr => xattr_list, true, false;
    setxattr => xattr_set, false, false;
    lsetxattr => xattr_set, false, true;
    fsetxattr => xattr_set, true, false;
    removexattr => xattr_set, false, false;
    lremovexattr => xattr_set, false, true;
    fremovexattr => xattr_set, true, false;
}
