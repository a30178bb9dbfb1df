//! The initramfs: a cpio "newc" (`070701`, or `070702` with checksums)
//! archive unpacked into the ramfs. Everything is validated; garbage gives a
//! [`CpioError`] instead of a partial tree.
//!
//! [`unpack_shared`] leaves regular files' contents in the archive (each file
//! a range of it, copied on its first write), so booting a large root costs
//! no copy of its data; [`unpack`] copies.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use linux_raw_sys::general as g;

use super::inode::{FileData, Fs, InodeRef, Kind, SharedBytes, ROOT_SB};

/// Why an archive was rejected (one line, for `BootError::BadInitramfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioError(pub String);

const HEADER: usize = 110;
/// Deepest directory nesting accepted (guards the unpacker's recursion-free walk anyway).
const MAX_NAME: usize = 4096;

fn hex_field(h: &[u8], idx: usize) -> Result<u32, CpioError> {
    let s = &h[6 + idx * 8..6 + idx * 8 + 8];
    let mut v: u32 = 0;
    for &c in s {
        let d = (c as char).to_digit(16).ok_or_else(|| CpioError(String::from("bad hex digit in cpio header")))?;
        v = (v << 4) | d;
    }
    Ok(v)
}

fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// Unpack `data` into `fs` (on top of what is there), copying file contents.
pub fn unpack(fs: &mut Fs, data: &[u8]) -> Result<(), CpioError> {
    unpack_from(fs, data, None)
}

/// [`unpack`] without copying: regular files point into `archive` until
/// a page of them is first written or mapped (see [`FileData`]); `archive`
/// stays alive as long as one of them does.
pub fn unpack_shared(fs: &mut Fs, archive: SharedBytes) -> Result<(), CpioError> {
    let bytes = archive.clone();
    unpack_from(fs, (*bytes).as_ref(), Some(&archive))
}

fn unpack_from(fs: &mut Fs, data: &[u8], shared: Option<&SharedBytes>) -> Result<(), CpioError> {
    let mut pos = 0usize;
    // Hard links: (ino, devmajor, devminor) -> inode.
    let mut links: BTreeMap<(u32, u32, u32), InodeRef> = BTreeMap::new();
    loop {
        let end = pos.checked_add(HEADER).ok_or_else(|| CpioError(String::from("offset overflow")))?;
        let h = data.get(pos..end).ok_or_else(|| CpioError(format!("truncated cpio header at offset {pos}")))?;
        if &h[..6] != b"070701" && &h[..6] != b"070702" {
            return Err(CpioError(format!("bad cpio magic at offset {pos} (only newc is supported)")));
        }
        let ino = hex_field(h, 0)?;
        let mode = hex_field(h, 1)?;
        let uid = hex_field(h, 2)?;
        let gid = hex_field(h, 3)?;
        let mtime = hex_field(h, 5)?;
        let filesize = hex_field(h, 6)? as usize;
        let devmajor = hex_field(h, 7)?;
        let devminor = hex_field(h, 8)?;
        let namesize = hex_field(h, 11)? as usize;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(CpioError(format!("bad name size {namesize} at offset {pos}")));
        }
        let name_end = end.checked_add(namesize).ok_or_else(|| CpioError(String::from("offset overflow")))?;
        let raw = data.get(end..name_end).ok_or_else(|| CpioError(String::from("truncated cpio name")))?;
        if raw[namesize - 1] != 0 || raw[..namesize - 1].contains(&0) {
            return Err(CpioError(format!("cpio name not NUL-terminated at offset {pos}")));
        }
        let name = core::str::from_utf8(&raw[..namesize - 1])
            .map_err(|_| CpioError(format!("cpio name is not UTF-8 at offset {pos}")))?;
        let data_start = align4(name_end).ok_or_else(|| CpioError(String::from("offset overflow")))?;
        let data_end = data_start.checked_add(filesize).ok_or_else(|| CpioError(String::from("offset overflow")))?;
        let body = data.get(data_start..data_end).ok_or_else(|| CpioError(format!("truncated data of {name:?}")))?;
        pos = align4(data_end).ok_or_else(|| CpioError(String::from("offset overflow")))?;
        if name == "TRAILER!!!" {
            return Ok(());
        }
        let content = |fs: &Fs| match shared {
            // Empty files own their (empty) data: no reason to pin the archive.
            Some(a) if filesize != 0 => fs.bytes_file_data(ROOT_SB, a.clone(), data_start, filesize),
            _ if filesize == 0 => fs.new_file_data(ROOT_SB),
            _ => fs.bytes_file_data(ROOT_SB, alloc::sync::Arc::new(body.to_vec()), 0, filesize),
        };
        add_entry(fs, &mut links, name, Entry { ino, mode, uid, gid, mtime, devmajor, devminor, body, content: &content })?;
    }
}

struct Entry<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    devmajor: u32,
    devminor: u32,
    body: &'a [u8],
    /// The regular file's contents, shared or copied.
    content: &'a dyn Fn(&Fs) -> FileData,
}

fn add_entry(
    fs: &mut Fs,
    links: &mut BTreeMap<(u32, u32, u32), InodeRef>,
    name: &str,
    e: Entry<'_>,
) -> Result<(), CpioError> {
    let comps: Vec<&str> = name.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if comps.contains(&"..") {
        return Err(CpioError(format!("cpio entry {name:?} contains '..'")));
    }
    if comps.iter().any(|c| c.len() > 255) {
        return Err(CpioError(format!("cpio entry {name:?} has a component longer than 255 bytes")));
    }
    let mtime_ns = e.mtime as u64 * 1_000_000_000;
    let Some((last, parents)) = comps.split_last() else {
        // "." itself: the root's metadata.
        if e.mode & g::S_IFMT != g::S_IFDIR {
            return Err(CpioError(String::from("cpio root entry is not a directory")));
        }
        let mut m = fs.root.meta.borrow_mut();
        m.perm = e.mode & 0o7777;
        m.uid = e.uid;
        m.gid = e.gid;
        m.mtime_ns = mtime_ns;
        return Ok(());
    };
    // Walk (creating missing parents, as the kernel's own unpacker does).
    let mut dir = fs.root.clone();
    for c in parents {
        let next = match dir.lookup(c) {
            Ok(Some(d)) if d.is_dir() => d,
            Ok(Some(_)) => return Err(CpioError(format!("cpio entry {name:?}: {c:?} is not a directory"))),
            Ok(None) => {
                let d = fs.new_dir(0o755, mtime_ns);
                dir.insert(c, d.clone()).map_err(|_| CpioError(String::from("internal: parent not a dir")))?;
                d
            }
            Err(_) => return Err(CpioError(format!("cpio entry {name:?}: parent is not a directory"))),
        };
        dir = next;
    }
    let ty = e.mode & g::S_IFMT;
    let node = match ty {
        g::S_IFDIR => {
            if let Ok(Some(existing)) = dir.lookup(last) {
                if existing.is_dir() {
                    let mut m = existing.meta.borrow_mut();
                    m.perm = e.mode & 0o7777;
                    m.uid = e.uid;
                    m.gid = e.gid;
                    m.mtime_ns = mtime_ns;
                    return Ok(());
                }
            }
            if !e.body.is_empty() {
                return Err(CpioError(format!("cpio directory {name:?} has data")));
            }
            fs.new_dir(e.mode, mtime_ns)
        }
        g::S_IFREG => {
            let key = (e.ino, e.devmajor, e.devminor);
            match links.get(&key) {
                // newc stores the data of a hard-link set with its last member.
                Some(existing) => {
                    if !e.body.is_empty() {
                        if let Kind::File(d) = &existing.kind {
                            if let Some((b, s, l)) = (e.content)(fs).shared_bytes() {
                                d.set_bytes(b, s, l);
                            }
                        }
                    }
                    existing.meta.borrow_mut().nlink += 1;
                    existing.clone()
                }
                None => {
                    let data = (e.content)(fs);
                    let n = fs.new_inode(Kind::File(data), e.mode, mtime_ns);
                    if e.ino != 0 {
                        links.insert(key, n.clone());
                    }
                    n
                }
            }
        }
        g::S_IFLNK => {
            let target = core::str::from_utf8(e.body)
                .map_err(|_| CpioError(format!("symlink {name:?} target is not UTF-8")))?;
            if target.is_empty() || target.len() > 4095 || target.contains('\0') {
                return Err(CpioError(format!("symlink {name:?} has a bad target")));
            }
            fs.new_inode(Kind::Symlink(String::from(target)), 0o777, mtime_ns)
        }
        // Device nodes, fifos and sockets are not supported by this ramfs yet:
        // skip them (the kernel's own devices are mounted at /dev).
        g::S_IFCHR | g::S_IFBLK | g::S_IFIFO | g::S_IFSOCK => return Ok(()),
        _ => return Err(CpioError(format!("cpio entry {name:?} has unknown file type {:#o}", ty))),
    };
    {
        let mut m = node.meta.borrow_mut();
        m.uid = e.uid;
        m.gid = e.gid;
    }
    dir.insert(last, node).map_err(|_| CpioError(String::from("internal: parent not a dir")))?;
    Ok(())
}

/// Build a newc archive (used by tests; the real packer lives in `drivers`).
/// Entries: (path, mode incl. type bits, data).
pub fn build(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn hdr(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, name: &str) {
        out.extend_from_slice(b"070701");
        let fields = [ino, mode, 0, 0, 1, 0, size as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        hdr(&mut out, i as u32 + 1, *mode, data.len(), name);
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    hdr(&mut out, 0, 0, 0, "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let a = build(&[
            ("bin", g::S_IFDIR | 0o755, b""),
            ("bin/hello", g::S_IFREG | 0o755, b"\x7fELF..."),
            ("bin/sh", g::S_IFLNK | 0o777, b"hello"),
            ("etc/deep/file", g::S_IFREG | 0o644, b"x"),
        ]);
        let mut fs = Fs::new();
        unpack(&mut fs, &a).unwrap();
        let bin = fs.root.lookup("bin").unwrap().unwrap();
        assert_eq!(bin.lookup("hello").unwrap().unwrap().size(), 7);
        assert!(matches!(bin.lookup("sh").unwrap().unwrap().kind, Kind::Symlink(_)));
        assert!(fs.root.lookup("etc").unwrap().unwrap().lookup("deep").unwrap().is_some());

        // Every truncation of a valid archive is rejected, never a panic.
        for cut in 0..a.len() - 1 {
            let mut fs = Fs::new();
            assert!(unpack(&mut fs, &a[..cut]).is_err(), "cut at {cut}");
        }
        let mut fs = Fs::new();
        assert!(unpack(&mut fs, b"garbage garbage garbage").is_err());
        let evil = build(&[("../x", g::S_IFREG | 0o644, b"")]);
        assert!(unpack(&mut Fs::new(), &evil).is_err());
        let bad_type = build(&[("x", 0o170000 & !g::S_IFMT | 0o644, b"")]);
        assert!(unpack(&mut Fs::new(), &bad_type).is_err());
    }

    fn file_data(n: &InodeRef) -> &FileData {
        match &n.kind {
            Kind::File(d) => d,
            _ => panic!("not a file"),
        }
    }

    fn contents(d: &FileData, frames: &mut crate::mm::Frames, phys: &hal::mock::MockPhys) -> Vec<u8> {
        let mut v = alloc::vec![0u8; d.size() as usize];
        let n = d.read_to(0, &mut v, frames, phys).unwrap();
        v.truncate(n);
        v
    }

    #[test]
    fn shared_unpack_points_into_the_archive_and_copies_on_write() {
        use hal::PhysMem;
        let phys = hal::mock::MockPhys::new(1 << 20);
        let mut frames = crate::mm::Frames::new(phys.size());
        let a = build(&[
            ("bin", g::S_IFDIR | 0o755, b""),
            ("bin/prog", g::S_IFREG | 0o755, b"\x7fELF program"),
            ("etc/motd", g::S_IFREG | 0o644, b"hello world"),
            ("empty", g::S_IFREG | 0o644, b""),
            ("link", g::S_IFLNK | 0o777, b"bin/prog"),
        ]);
        let archive: SharedBytes = alloc::sync::Arc::new(a.clone());
        let mut fs = Fs::new();
        unpack_shared(&mut fs, archive.clone()).unwrap();
        // The same tree as a copying unpack.
        let mut copied = Fs::new();
        unpack(&mut copied, &a).unwrap();
        for path in [["bin", "prog"], ["etc", "motd"]] {
            let f = fs.root.lookup(path[0]).unwrap().unwrap().lookup(path[1]).unwrap().unwrap();
            let c = copied.root.lookup(path[0]).unwrap().unwrap().lookup(path[1]).unwrap().unwrap();
            assert_eq!(contents(file_data(&f), &mut frames, &phys), contents(file_data(&c), &mut frames, &phys));
            assert_eq!(f.mode(), c.mode());
            assert!(file_data(&f).is_shared());
        }
        let empty = fs.root.lookup("empty").unwrap().unwrap();
        assert!(!file_data(&empty).is_shared());
        assert!(matches!(&fs.root.lookup("link").unwrap().unwrap().kind, Kind::Symlink(t) if t == "bin/prog"));

        // A write copies the page into the cache first: the archive is
        // unchanged, the file reads back the new bytes, its neighbours still share.
        let motd = fs.root.lookup("etc").unwrap().unwrap().lookup("motd").unwrap().unwrap();
        let prog = fs.root.lookup("bin").unwrap().unwrap().lookup("prog").unwrap().unwrap();
        let (frame, fresh) = file_data(&motd).page_for_write(0, 5, &mut frames, &phys).unwrap();
        assert!(!fresh);
        phys.write(frame, b"HELLO");
        file_data(&motd).wrote(5);
        assert_eq!(contents(file_data(&motd), &mut frames, &phys), b"HELLO world");
        assert!(!file_data(&motd).is_shared());
        assert_eq!((*archive).as_ref(), &a[..]);
        assert!(file_data(&prog).is_shared());
        // Shrinking shares still; growing shows zeros past the old end.
        file_data(&prog).truncate(4, &mut frames, &phys).unwrap();
        assert!(file_data(&prog).is_shared());
        assert_eq!(contents(file_data(&prog), &mut frames, &phys), b"\x7fELF");
        file_data(&prog).truncate(6, &mut frames, &phys).unwrap();
        assert_eq!(contents(file_data(&prog), &mut frames, &phys), b"\x7fELF\0\0");
        assert!(!file_data(&prog).is_shared());
        assert_eq!((*archive).as_ref(), &a[..]);
        // Dropping the tree releases the archive, and the page's frame.
        let caches = fs.caches.clone();
        drop((fs, motd, prog, empty));
        assert_eq!(alloc::sync::Arc::strong_count(&archive), 1);
        caches.reap(&mut frames);
        frames.check_all_free().unwrap();

        // Every truncation is still rejected.
        for cut in 0..a.len() - 1 {
            let mut fs = Fs::new();
            let part: SharedBytes = alloc::sync::Arc::new(a[..cut].to_vec());
            assert!(unpack_shared(&mut fs, part).is_err(), "cut at {cut}");
        }
    }
}
