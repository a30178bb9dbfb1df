//! Packing a host directory into a cpio "newc" archive (the initramfs format),
//! and caching the packed archive on disk so that a boot does not re-read the
//! whole tree.
//!
//! Entry names are relative to the packed directory, without a leading `/`
//! or `./` (`bin`, `bin/sh`), parents always before their children, siblings
//! sorted by name bytes, so the same tree always gives the same archive. The
//! root directory itself gets no entry. Every entry has its own inode number
//! (hard links are stored as separate copies). The archive ends with the
//! `TRAILER!!!` entry.
//!
//! The cache ([`load_root`]): packing a large root (~100 MB of files) costs
//! far more than the rest of a boot, so the archive is kept in a file beside
//! the root directory (`<parent>/.<name>.initramfs`, never inside the guest's
//! tree) together with the manifest it was packed from: every entry's name,
//! type, mode, owner, size, mtime, ctime, inode and device numbers. A boot
//! rebuilds the manifest (one `lstat` per entry, no file reads) and, when it
//! matches, maps the cached archive instead of packing: the kernel's ramfs
//! files then point into that read-only mapping (copied on first write), so
//! only the pages the guest touches are ever read. Any change to the tree
//! changes some ctime (which no one can set), so it repacks. Entries changed
//! within the last [`RACY_SECS`] seconds before packing make the archive
//! uncacheable for that boot (their timestamps may not yet tell a second
//! change from the first, as in git's "racy" index entries), and so do
//! archives under [`CACHE_MIN_BYTES`]. The cache file
//! is replaced by writing a new file and renaming it, never modified in
//! place, so a running kernel's mapping never changes under it.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Entries whose ctime is this close to the start of packing (or later) keep
/// the archive out of the cache.
pub const RACY_SECS: u64 = 2;

/// Smaller archives are not cached: packing them costs a few milliseconds,
/// and the many small temporary roots tests make would leave cache files
/// beside them.
pub const CACHE_MIN_BYTES: usize = 4 << 20;

/// Pack the tree under `dir` into a cpio "newc" archive.
///
/// Regular files, directories and symbolic links are stored with their mode,
/// uid, gid and mtime. Sockets, FIFOs and device nodes are skipped with a note
/// on stderr (the guest's `/dev` is the kernel's own).
pub fn pack_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let (archive, skipped) = pack_dir_with_notes(dir)?;
    print_skipped(&skipped);
    Ok(archive)
}

/// [`pack_dir`], returning the relative names of skipped entries instead of
/// printing them.
pub fn pack_dir_with_notes(dir: &Path) -> io::Result<(Vec<u8>, Vec<String>)> {
    let scan = scan(dir)?;
    Ok((pack(&scan.nodes)?, scan.skipped))
}

fn print_skipped(skipped: &[String]) {
    for s in skipped {
        eprintln!("initramfs: skipped {} (not a file, directory or symlink)", s);
    }
}

/// A packed root: the archive in memory, or a mapped cache file.
pub enum RootImage {
    /// Packed at this boot.
    Memory(Vec<u8>),
    /// The cache file's archive, mapped read-only.
    Mapped(Mapping),
}

impl AsRef<[u8]> for RootImage {
    fn as_ref(&self) -> &[u8] {
        match self {
            RootImage::Memory(v) => v,
            RootImage::Mapped(m) => m.as_ref(),
        }
    }
}

impl std::fmt::Debug for RootImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, len) = match self {
            RootImage::Memory(v) => ("Memory", v.len()),
            RootImage::Mapped(m) => ("Mapped", m.len),
        };
        write!(f, "RootImage::{what}({len} bytes)")
    }
}

/// A private read-only mapping of (part of) a cache file, unmapped on drop.
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value alone; reading
// it from several threads is as safe as reading a shared `&[u8]`.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: nothing mutates it.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty mapping"));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "offset too large"))?;
        // SAFETY: a new mapping at an address the host kernel picks, of an open file descriptor; no existing memory is affected. MAP_FAILED is checked below.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), off) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p as *const u8, len })
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes until drop. The file behind it lies within the file's size (checked before mapping) and is only ever replaced by rename, never written or truncated in place, so its bytes stay as they are.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference to it outlives `self` (`as_ref` borrows `self`).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Where [`load_root`] caches the archive of `dir`: the hidden sibling
/// `<parent>/.<name>.initramfs` of its canonical path. `None` for `/`.
pub fn cache_path(dir: &Path) -> Option<PathBuf> {
    let canon = fs::canonicalize(dir).ok()?;
    let name = canon.file_name()?;
    let mut file = OsString::from(".");
    file.push(name);
    file.push(".initramfs");
    Some(canon.parent()?.join(file))
}

/// How [`load_root_with`] got its archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Mapped from an up-to-date cache file.
    Hit,
    /// Packed, and the cache file (re)written.
    Written,
    /// Packed; not cached (no cache path, recently changed files, or the
    /// cache file could not be written).
    NotCached,
}

/// What [`load_root_with`] returns.
#[derive(Debug)]
pub struct LoadedRoot {
    /// The archive.
    pub image: RootImage,
    /// Entries left out (sockets, FIFOs, devices), relative names.
    pub skipped: Vec<String>,
    /// Whether the cache served it.
    pub cache: CacheUse,
}

/// The archive of `dir` as [`pack_dir`] makes it, from the cache file at
/// [`cache_path`] when that is up to date (else packed, and cached when
/// possible). Skipped entries are noted on stderr.
pub fn load_root(dir: &Path) -> io::Result<RootImage> {
    let r = load_root_with(dir, cache_path(dir).as_deref())?;
    print_skipped(&r.skipped);
    Ok(r.image)
}

/// [`load_root`] with the cache file at `cache` (or none).
pub fn load_root_with(dir: &Path, cache: Option<&Path>) -> io::Result<LoadedRoot> {
    load_root_opts(dir, cache, Duration::from_secs(RACY_SECS), CACHE_MIN_BYTES)
}

fn load_root_opts(dir: &Path, cache: Option<&Path>, racy: Duration, min_bytes: usize) -> io::Result<LoadedRoot> {
    let start = SystemTime::now();
    let scan = scan(dir)?;
    let Some(cache) = cache else {
        return Ok(LoadedRoot { image: RootImage::Memory(pack(&scan.nodes)?), skipped: scan.skipped, cache: CacheUse::NotCached });
    };
    let manifest = manifest(dir, &scan.nodes);
    if let Some(m) = open_cache(cache, &manifest) {
        return Ok(LoadedRoot { image: RootImage::Mapped(m), skipped: scan.skipped, cache: CacheUse::Hit });
    }
    let archive = pack(&scan.nodes)?;
    let threshold = start.checked_sub(racy).unwrap_or(SystemTime::UNIX_EPOCH);
    let racy = scan.nodes.iter().any(|n| ctime(&n.meta) >= threshold);
    let cache_use = if !racy && archive.len() >= min_bytes && write_cache(cache, &manifest, &archive).is_ok() {
        CacheUse::Written
    } else {
        CacheUse::NotCached
    };
    Ok(LoadedRoot { image: RootImage::Memory(archive), skipped: scan.skipped, cache: cache_use })
}

fn ctime(m: &fs::Metadata) -> SystemTime {
    match u64::try_from(m.ctime()) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::new(s, m.ctime_nsec().clamp(0, 999_999_999) as u32),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

const MAGIC: &[u8; 16] = b"rustuml-cpio v1\n";
/// Magic, manifest length, archive length.
const CACHE_HEADER: usize = 32;
/// The archive starts at a multiple of this (any page size up to 64 KiB) so
/// it can be mapped on its own.
const CACHE_ALIGN: u64 = 1 << 16;

fn archive_offset(manifest_len: u64) -> Option<u64> {
    (CACHE_HEADER as u64).checked_add(manifest_len)?.checked_next_multiple_of(CACHE_ALIGN)
}

/// The cache file's archive, if its manifest is `manifest`.
fn open_cache(path: &Path, manifest: &[u8]) -> Option<Mapping> {
    let mut f = File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    let mut head = [0u8; CACHE_HEADER];
    f.read_exact(&mut head).ok()?;
    if &head[..16] != MAGIC {
        return None;
    }
    let mlen = u64::from_le_bytes(head[16..24].try_into().ok()?);
    let alen = u64::from_le_bytes(head[24..32].try_into().ok()?);
    if mlen != manifest.len() as u64 || archive_offset(mlen)?.checked_add(alen)? != size {
        return None;
    }
    let mut stored = vec![0u8; manifest.len()];
    f.read_exact(&mut stored).ok()?;
    if stored != manifest {
        return None;
    }
    Mapping::new(&f, archive_offset(mlen)?, usize::try_from(alen).ok()?).ok()
}

/// Write the cache file: a new file renamed over the old one (a kernel may
/// have the old one mapped), synced first so a crash cannot leave a cache
/// file with a valid header and missing data. The new file is written
/// unnamed (`O_TMPFILE`) where the file system allows, so a kernel killed
/// while writing leaves nothing behind.
fn write_cache(path: &Path, manifest: &[u8], archive: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("cache path has no directory"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let unnamed = fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o644).open(dir);
    let res = (|| {
        let (mut f, named) = match unnamed {
            Ok(f) => (f, false),
            Err(_) => (fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?, true),
        };
        let off = archive_offset(manifest.len() as u64).ok_or_else(|| io::Error::other("manifest too large"))?;
        let mut head = Vec::with_capacity(off as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        head.extend_from_slice(&(archive.len() as u64).to_le_bytes());
        head.extend_from_slice(manifest);
        head.resize(off as usize, 0);
        f.write_all(&head)?;
        f.write_all(archive)?;
        f.sync_all()?;
        if !named {
            let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(io::Error::other)?;
            let to = std::ffi::CString::new(tmp.as_os_str().as_bytes()).map_err(io::Error::other)?;
            let _ = fs::remove_file(&tmp);
            // SAFETY: two NUL-terminated paths that live across the call; linkat only reads them. AT_SYMLINK_FOLLOW gives the unnamed file behind the /proc fd link a name.
            let r = unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// What the archive of `nodes` depends on, byte for byte.
fn manifest(dir: &Path, nodes: &[Node]) -> Vec<u8> {
    let mut m = Vec::with_capacity(nodes.len() * 96);
    let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    m.extend_from_slice(canon.as_os_str().as_bytes());
    m.push(0);
    for n in nodes {
        m.extend_from_slice(&n.rel);
        m.push(0);
        let md = &n.meta;
        for v in [md.mode() as u64, md.uid() as u64, md.gid() as u64, md.size(), md.ino(), md.dev(), md.nlink()] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        for v in [md.mtime(), md.mtime_nsec(), md.ctime(), md.ctime_nsec()] {
            m.extend_from_slice(&v.to_le_bytes());
        }
    }
    m
}

/// One entry of the tree, as `lstat` saw it.
struct Node {
    rel: Vec<u8>,
    path: PathBuf,
    meta: fs::Metadata,
}

struct Scan {
    nodes: Vec<Node>,
    skipped: Vec<String>,
}

/// The entries under `dir` in archive order (no file is read).
fn scan(dir: &Path) -> io::Result<Scan> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
    }
    let mut s = Scan { nodes: Vec::new(), skipped: Vec::new() };
    walk(dir, &mut Vec::new(), &mut s)?;
    Ok(s)
}

fn walk(dir: &Path, rel: &mut Vec<u8>, s: &mut Scan) -> io::Result<()> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        if ft.is_dir() {
            s.nodes.push(Node { rel: rel.clone(), path: path.clone(), meta: m });
            walk(&path, rel, s)?;
        } else if ft.is_file() || ft.is_symlink() {
            s.nodes.push(Node { rel: rel.clone(), path, meta: m });
        } else {
            s.skipped.push(String::from_utf8_lossy(rel).into_owned());
        }
        rel.truncate(len);
    }
    Ok(())
}

/// The archive of `nodes`, each file read straight into it.
fn pack(nodes: &[Node]) -> io::Result<Vec<u8>> {
    // Reserve the expected size: growing a ~100 MB vector by doubling would
    // copy it several times (files that grew since `lstat` still fit, with
    // the vector growing).
    let estimate: u64 = nodes.iter().map(|n| HEADER as u64 + n.rel.len() as u64 + 8 + if n.meta.is_file() { n.meta.len() + 3 } else { 0 }).sum();
    let mut w = Writer { out: Vec::with_capacity(usize::try_from(estimate).unwrap_or(0).saturating_add(256)), ino: 1 };
    for n in nodes {
        let m = &n.meta;
        // newc stores 32-bit mtimes; clamp rather than wrap.
        let mtime = m.mtime().clamp(0, u32::MAX as i64) as u32;
        let ft = m.file_type();
        if ft.is_dir() {
            w.entry(&n.rel, m.mode(), m.uid(), m.gid(), 2, mtime, &[])?;
        } else if ft.is_file() {
            w.file(&n.rel, m.mode(), m.uid(), m.gid(), mtime, &n.path)?;
        } else {
            let target = fs::read_link(&n.path)?;
            let t: &OsStr = target.as_os_str();
            w.entry(&n.rel, m.mode(), m.uid(), m.gid(), 1, mtime, t.as_bytes())?;
        }
    }
    w.entry(b"TRAILER!!!", 0, 0, 0, 1, 0, &[])?;
    Ok(w.out)
}

const HEADER: usize = 110;
/// Offset of the c_filesize field in a newc header.
const SIZE_FIELD: usize = 6 + 6 * 8;

struct Writer {
    out: Vec<u8>,
    ino: u32,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn entry(&mut self, name: &[u8], mode: u32, uid: u32, gid: u32, nlink: u32, mtime: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| too_large())?;
        self.header(name, mode, uid, gid, nlink, mtime, size);
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    /// A regular file, read into the archive in place; the size field is
    /// what was read (the file may have changed since `lstat`).
    fn file(&mut self, name: &[u8], mode: u32, uid: u32, gid: u32, mtime: u32, path: &Path) -> io::Result<()> {
        let at = self.out.len();
        self.header(name, mode, uid, gid, 1, mtime, 0);
        // O_NOFOLLOW: `lstat` saw a regular file; never read a symlink's
        // target that replaced it since.
        let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
        let start = self.out.len();
        f.take(u64::from(u32::MAX) + 1).read_to_end(&mut self.out)?;
        let size = u32::try_from(self.out.len() - start).map_err(|_| too_large())?;
        self.out[at + SIZE_FIELD..at + SIZE_FIELD + 8].copy_from_slice(format!("{:08x}", size).as_bytes());
        self.pad();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn header(&mut self, name: &[u8], mode: u32, uid: u32, gid: u32, nlink: u32, mtime: u32, size: u32) {
        let ino = if name == b"TRAILER!!!" { 0 } else { self.ino };
        self.ino += 1;
        let fields = [ino, mode, uid, gid, nlink, mtime, size, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{:08x}", f).as_bytes());
        }
        self.out.extend_from_slice(name);
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "file too large for a newc archive (4 GiB)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[derive(Debug, PartialEq)]
    struct Entry {
        name: String,
        mode: u32,
        uid: u32,
        mtime: u32,
        data: Vec<u8>,
    }

    /// A minimal newc reader, independent of the writer's code.
    fn parse(mut a: &[u8]) -> Vec<Entry> {
        let total = a.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - a.len()) % 4, 0, "entry not 4-aligned");
            assert_eq!(&a[..6], b"070701");
            let f = |i: usize| u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (mode, uid, mtime, size, namesize) = (f(1), f(2), f(5), f(6) as usize, f(11) as usize);
            let name = String::from_utf8(a[110..110 + namesize - 1].to_vec()).unwrap();
            assert_eq!(a[110 + namesize - 1], 0);
            let data_off = (110 + namesize + 3) & !3;
            let data = a[data_off..data_off + size].to_vec();
            a = &a[(data_off + size + 3) & !3..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty());
                return out;
            }
            out.push(Entry { name, mode, uid, mtime, data });
        }
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("initramfs-test-{}-{}", tag, std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip() {
        let d = tempdir("rt");
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("bin/hello"), b"\x7fELF hello").unwrap();
        fs::set_permissions(d.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.join("a/b/odd"), b"12345").unwrap();
        fs::write(d.join("empty"), b"").unwrap();
        symlink("bin/hello", d.join("link")).unwrap();
        let sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();

        let (arch, skipped) = pack_dir_with_notes(&d).unwrap();
        drop(sock);
        assert_eq!(skipped, vec!["sock".to_string()]);
        let e = parse(&arch);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/odd", "bin", "bin/hello", "empty", "link"]);
        let hello = &e[4];
        assert_eq!(hello.mode, libc::S_IFREG | 0o755);
        assert_eq!(hello.data, b"\x7fELF hello");
        assert_eq!(hello.uid, fs::metadata(d.join("bin/hello")).unwrap().uid());
        assert_eq!(hello.mtime as i64, fs::metadata(d.join("bin/hello")).unwrap().mtime());
        assert_eq!(e[0].mode & libc::S_IFMT, libc::S_IFDIR);
        assert_eq!(e[2].data, b"12345");
        assert_eq!(e[5].data, b"");
        assert_eq!(e[6].mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(e[6].data, b"bin/hello");

        // Deterministic: packing again gives the same bytes.
        assert_eq!(pack_dir_with_notes(&d).unwrap().0, arch);
        fs::remove_dir_all(&d).unwrap();
    }

    /// The cache answers with exactly what `pack_dir` gives, from a mapping
    /// once written, and any change to the tree makes it repack.
    #[test]
    fn cache_hits_and_invalidation() {
        let d = tempdir("cache");
        let root = d.join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/prog"), b"\x7fELF program").unwrap();
        fs::write(root.join("motd"), b"hello").unwrap();
        symlink("bin/prog", root.join("link")).unwrap();
        let cache = cache_path(&root).unwrap();
        assert_eq!(cache, fs::canonicalize(&d).unwrap().join(".root.initramfs"));
        assert!(!cache.starts_with(fs::canonicalize(&root).unwrap()), "the cache is outside the guest's tree");
        let load = |racy: u64| load_root_opts(&root, Some(&cache), Duration::from_secs(racy), 0).unwrap();
        // Small roots are not worth a cache file.
        let small = load_root_opts(&root, Some(&cache), Duration::ZERO, 1 << 20).unwrap();
        assert_eq!(small.cache, CacheUse::NotCached);
        assert!(!cache.exists());

        // Just-written files are "racy": not cached.
        let r = load(3600);
        assert_eq!(r.cache, CacheUse::NotCached);
        assert!(!cache.exists());
        assert_eq!(r.image.as_ref(), &pack_dir(&root).unwrap()[..]);
        // Written, then mapped.
        assert_eq!(load(0).cache, CacheUse::Written);
        let hit = load(0);
        assert_eq!(hit.cache, CacheUse::Hit);
        assert!(matches!(hit.image, RootImage::Mapped(_)));
        assert_eq!(hit.image.as_ref(), &pack_dir(&root).unwrap()[..]);
        // No stray temporary files.
        let names: Vec<_> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Let the file system's (coarse) clock tick between a cached state
        // and each change: `load_root` guarantees this with RACY_SECS.
        let tick = || std::thread::sleep(Duration::from_millis(20));
        // Same size, mtime put back: only the ctime tells, and it does.
        tick();
        let mtime = fs::metadata(root.join("motd")).unwrap().modified().unwrap();
        fs::write(root.join("motd"), b"HELLO").unwrap();
        fs::File::options().write(true).open(root.join("motd")).unwrap().set_modified(mtime).unwrap();
        let r = load(0);
        assert_eq!(r.cache, CacheUse::Written);
        assert!(parse(r.image.as_ref()).iter().any(|e| e.name == "motd" && e.data == b"HELLO"));
        // The old mapping is still intact (the file was replaced, not rewritten).
        assert!(parse(hit.image.as_ref()).iter().any(|e| e.name == "motd" && e.data == b"hello"));
        drop(hit);
        assert_eq!(load(0).cache, CacheUse::Hit);
        // A mode change, a new file, a removed one, a changed symlink.
        tick();
        fs::set_permissions(root.join("motd"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(0).cache, CacheUse::Written);
        tick();
        fs::write(root.join("bin/new"), b"").unwrap();
        assert_eq!(load(0).cache, CacheUse::Written);
        tick();
        fs::remove_file(root.join("bin/new")).unwrap();
        assert_eq!(load(0).cache, CacheUse::Written);
        tick();
        fs::remove_file(root.join("link")).unwrap();
        symlink("motd", root.join("link")).unwrap();
        let r = load(0);
        assert_eq!(r.cache, CacheUse::Written);
        assert!(parse(r.image.as_ref()).iter().any(|e| e.name == "link" && e.data == b"motd"));
        let r = load(0);
        assert_eq!(r.cache, CacheUse::Hit);
        assert_eq!(r.image.as_ref(), &pack_dir(&root).unwrap()[..]);

        // A damaged cache file is a miss, then rewritten.
        for len in [0u64, 20, 100, fs::metadata(&cache).unwrap().len() - 1] {
            let f = fs::File::options().write(true).open(&cache).unwrap();
            f.set_len(len).unwrap();
            drop(f);
            assert_eq!(load(0).cache, CacheUse::Written, "cache cut to {len}");
        }
        // Without a cache path, or with an unwritable one: packed, not cached.
        assert_eq!(load_root_opts(&root, None, Duration::ZERO, 0).unwrap().cache, CacheUse::NotCached);
        let r = load_root_opts(&root, Some(&d.join("missing/dir/x")), Duration::ZERO, 0).unwrap();
        assert_eq!(r.cache, CacheUse::NotCached);
        assert_eq!(r.image.as_ref(), &pack_dir(&root).unwrap()[..]);
        assert!(cache_path(Path::new("/")).is_none());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_dir_and_errors() {
        let d = tempdir("empty");
        assert!(parse(&pack_dir(&d).unwrap()).is_empty());
        assert!(pack_dir(&d.join("missing")).is_err());
        fs::write(d.join("f"), b"x").unwrap();
        assert!(pack_dir(&d.join("f")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
