//! Packing a host directory into a cpio "newc" archive (the initramfs format).
//!
//! Entry names are relative to the packed directory, without a leading `/`
//! or `./` (`bin`, `bin/sh`), parents always before their children, siblings
//! sorted by name bytes, so the same tree always gives the same archive. The
//! root directory itself gets no entry. Every entry has its own inode number
//! (hard links are stored as separate copies). The archive ends with the
//! `TRAILER!!!` entry.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Pack the tree under `dir` into a cpio "newc" archive.
///
/// Regular files, directories and symbolic links are stored with their mode,
/// uid, gid and mtime. Sockets, FIFOs and device nodes are skipped with a note
/// on stderr (the guest's `/dev` is the kernel's own).
pub fn pack_dir(dir: &Path) -> io::Result<Vec<u8>> {
    let (archive, skipped) = pack_dir_with_notes(dir)?;
    for s in skipped {
        eprintln!("initramfs: skipped {} (not a file, directory or symlink)", s);
    }
    Ok(archive)
}

/// [`pack_dir`], returning the relative names of skipped entries instead of
/// printing them.
pub fn pack_dir_with_notes(dir: &Path) -> io::Result<(Vec<u8>, Vec<String>)> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", dir.display())));
    }
    let mut w = Writer { out: Vec::new(), ino: 1, skipped: Vec::new() };
    w.walk(dir, &mut Vec::new())?;
    w.entry(b"TRAILER!!!", 0, 0, 0, 1, 0, &[])?;
    Ok((w.out, w.skipped))
}

struct Writer {
    out: Vec<u8>,
    ino: u32,
    skipped: Vec<String>,
}

impl Writer {
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> io::Result<()> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
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
            // newc stores 32-bit mtimes; clamp rather than wrap.
            let mtime = m.mtime().clamp(0, u32::MAX as i64) as u32;
            if ft.is_dir() {
                self.entry(rel, m.mode(), m.uid(), m.gid(), 2, mtime, &[])?;
                self.walk(&path, rel)?;
            } else if ft.is_file() {
                let data = fs::read(&path)?;
                self.entry(rel, m.mode(), m.uid(), m.gid(), 1, mtime, &data)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let t: &OsStr = target.as_os_str();
                self.entry(rel, m.mode(), m.uid(), m.gid(), 1, mtime, t.as_bytes())?;
            } else {
                self.skipped.push(String::from_utf8_lossy(rel).into_owned());
            }
            rel.truncate(len);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(&mut self, name: &[u8], mode: u32, uid: u32, gid: u32, nlink: u32, mtime: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large for a newc archive (4 GiB)"))?;
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
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
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
