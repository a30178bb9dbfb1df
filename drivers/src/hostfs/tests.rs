use super::*;
use std::os::unix::fs::PermissionsExt;

fn scratch(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let d = std::env::temp_dir().join(format!("hostfs-test-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(d.join("export/sub")).unwrap();
    std::fs::write(d.join("secret"), b"outside").unwrap();
    std::fs::write(d.join("export/a.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("../secret", d.join("export/escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("export/abs")).unwrap();
    d
}

fn names(x: &mut HostExport, dir: u64) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 256];
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(e) = x.readdir(dir, i, &mut buf).unwrap() {
        out.push(buf[..e.name_len].to_vec());
        i += 1;
    }
    out
}

#[test]
fn confined_and_readonly() {
    let d = scratch("ro");
    let mut x = HostExport::open(&d.join("export"), false).unwrap();
    let root = x.root();
    for bad in [&b".."[..], b".", b"", b"sub/..", b"/etc", b"a/b", b"a\0b"] {
        assert_eq!(x.lookup(root, bad).err(), Some(HostError::Invalid), "{bad:?}");
    }
    assert_eq!(x.lookup(root, &[b'x'; 256]).err(), Some(HostError::NameTooLong));
    let (a, attr) = x.lookup(root, b"a.txt").unwrap();
    assert_eq!((attr.kind, attr.size), (HostFileKind::File, 5));
    let mut buf = [0u8; 16];
    assert_eq!(x.read(a, 0, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(x.write(a, 0, b"x"), Err(HostError::ReadOnly));
    assert_eq!(x.create(root, b"new", 0o644).err(), Some(HostError::ReadOnly));
    assert_eq!(x.unlink(root, b"a.txt", false, None), Err(HostError::ReadOnly));
    assert_eq!(x.setattr(a, &HostSetAttr { perm: Some(0o600), ..Default::default() }).err(), Some(HostError::ReadOnly));
    // Symlinks are links, never followed: reading through them fails.
    let (l, la) = x.lookup(root, b"escape").unwrap();
    assert_eq!(la.kind, HostFileKind::Symlink);
    assert_eq!(x.read(l, 0, &mut buf), Err(HostError::Invalid));
    assert_eq!(x.lookup(l, b"x").err(), Some(HostError::NotDir));
    let n = x.readlink(l, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"../secret");
    let (sub, _) = x.lookup(root, b"sub").unwrap();
    assert_eq!(x.lookup(sub, b"..").err(), Some(HostError::Invalid));
    assert_eq!(names(&mut x, root), [&b"a.txt"[..], b"abs", b"escape", b"sub"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn writable_export() {
    let d = scratch("rw");
    let e = d.join("export");
    let mut x = HostExport::open(&e, true).unwrap();
    let root = x.root();
    let (f, _) = x.create(root, b"new.txt", 0o644).unwrap();
    assert_eq!(x.write(f, 0, b"data"), Ok(4));
    assert_eq!(std::fs::read(e.join("new.txt")).unwrap(), b"data");
    assert_eq!(x.create(root, b"new.txt", 0o644).err(), Some(HostError::Exists));
    x.truncate(f, 2).unwrap();
    assert_eq!(x.getattr(f).unwrap().size, 2);
    let (s, sa) = x.mkdir(root, b"dir", 0o755).unwrap();
    assert_eq!(sa.kind, HostFileKind::Dir);
    // Metadata goes through to the host, with nanoseconds.
    let set = HostSetAttr { perm: Some(0o751), atime_ns: Some(1_000_000_123), mtime_ns: Some(-5_000_000_007), ..Default::default() };
    let a = x.setattr(f, &set).unwrap();
    assert_eq!((a.perm, a.atime_ns, a.mtime_ns), (0o751, 1_000_000_123, -5_000_000_007));
    assert_eq!(std::fs::metadata(e.join("new.txt")).unwrap().permissions().mode() & 0o7777, 0o751);
    // rename (plain, NOREPLACE, EXCHANGE), link, symlink.
    x.rename(root, b"new.txt", s, b"moved", 0, Some(f), None).unwrap();
    assert_eq!(x.getattr(f).unwrap().size, 2, "the handle follows the rename");
    let (g, _) = x.create(root, b"g", 0o600).unwrap();
    assert_eq!(x.rename(root, b"g", s, b"moved", 1, Some(g), Some(f)), Err(HostError::Exists));
    x.rename(root, b"g", s, b"moved", 2, Some(g), Some(f)).unwrap();
    assert_eq!(std::fs::metadata(e.join("g")).unwrap().len(), 2);
    assert_eq!(x.getattr(f).unwrap().size, 2);
    x.link(f, root, b"hard").unwrap();
    assert_eq!(x.getattr(f).unwrap().nlink, 2);
    let (sl, _) = x.symlink(root, b"ln", b"dir/moved").unwrap();
    let mut buf = [0u8; 32];
    let n = x.readlink(sl, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"dir/moved");
    x.fsync(f, false).unwrap();
    x.fsync(s, true).unwrap();
    // Unlinked while kept: still readable and writable through its handle.
    x.unlink(root, b"hard", false, None).unwrap();
    x.unlink(root, b"g", false, Some(f)).unwrap();
    assert_eq!(x.write(f, 0, b"zz"), Ok(2));
    assert_eq!(x.read(f, 0, &mut buf), Ok(2));
    assert_eq!(x.getattr(f).unwrap().nlink, 0);
    let before = x.open_fds();
    x.release(f);
    assert!(x.open_fds() < before, "the pinned descriptor goes with the handle");
    // O_TMPFILE, then linked in.
    if let Ok((t, _)) = x.tmpfile(root, 0o600) {
        x.write(t, 0, b"tmp").unwrap();
        x.link(t, root, b"from-tmp").unwrap();
        assert_eq!(std::fs::read(e.join("from-tmp")).unwrap(), b"tmp");
    }
    // Writing through a symlink name is impossible: the link is not a file.
    let (l, _) = x.lookup(root, b"escape").unwrap();
    assert_eq!(x.write(l, 0, b"pwned"), Err(HostError::Invalid));
    assert_eq!(x.setattr(l, &HostSetAttr { perm: Some(0o777), ..Default::default() }).err(), Some(HostError::NotSupported));
    assert_eq!(std::fs::read(d.join("secret")).unwrap(), b"outside");
    assert_ne!(std::fs::metadata(d.join("secret")).unwrap().permissions().mode() & 0o777, 0o777);
    x.unlink(s, b"moved", false, None).unwrap_or(());
    assert_eq!(x.unlink(root, b"dir", true, None), Ok(()));
    std::fs::remove_dir_all(&d).unwrap();
}

/// The descriptor budget holds whatever is looked up, and evicted nodes
/// come back by name.
#[test]
fn bounded_descriptors() {
    let d = scratch("lru");
    let e = d.join("export");
    for i in 0..40 {
        let dir = e.join(format!("d{i}"));
        std::fs::create_dir(&dir).unwrap();
        for j in 0..10 {
            std::fs::write(dir.join(format!("f{j}")), format!("{i}/{j}")).unwrap();
        }
    }
    let mut x = HostExport::with_limits(&e, false, 8, 4).unwrap();
    let root = x.root();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..40 {
        let (dh, _) = x.lookup(root, format!("d{i}").as_bytes()).unwrap();
        dirs.push(dh);
        for j in 0..10 {
            let (fh, _) = x.lookup(dh, format!("f{j}").as_bytes()).unwrap();
            let mut buf = [0u8; 16];
            let n = x.read(fh, 0, &mut buf).unwrap();
            assert_eq!(&buf[..n], format!("{i}/{j}").as_bytes());
            files.push((fh, i, j));
            assert!(x.open_fds() <= 1 + 8 + 4 + 2, "{}", x.open_fds());
        }
    }
    // Everything again, in another order: reopened by name.
    for &(fh, i, j) in files.iter().rev() {
        let mut buf = [0u8; 16];
        let n = x.read(fh, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], format!("{i}/{j}").as_bytes());
    }
    // A file replaced on the host is stale, not another file's contents.
    let (fh, _, _) = files[0];
    let mut b = [0u8; 4];
    // Push it out of the LRU.
    for &(h, _, _) in &files[100..120] {
        x.read(h, 0, &mut b).unwrap();
    }
    // (Written beside it first, so the host cannot reuse the inode number.)
    std::fs::write(e.join("d0/new"), b"impostor").unwrap();
    std::fs::rename(e.join("d0/new"), e.join("d0/f0")).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(x.read(fh, 0, &mut buf), Err(HostError::Stale));
    for dh in dirs {
        x.release(dh);
    }
    assert!(x.nodes() > 1, "directories stay while files below them are held");
    for (h, _, _) in files {
        x.release(h);
    }
    assert_eq!(x.nodes(), 1, "released handles and their directories are forgotten");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn any_byte_names_and_special_files() {
    let d = scratch("bytes");
    let e = d.join("export");
    let mut x = HostExport::open(&e, true).unwrap();
    let root = x.root();
    let name: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').take(200).collect();
    let (h, _) = x.create(root, &name, 0o644).unwrap();
    x.write(h, 0, b"ok").unwrap();
    assert!(names(&mut x, root).contains(&name));
    let (h2, _) = x.lookup(root, &name).unwrap();
    assert_eq!(x.getattr(h2).unwrap().size, 2);
    // A FIFO made on the host is listed and stat'ed but never opened.
    let fifo = CString::new(e.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let (fh, fa) = x.lookup(root, b"fifo").unwrap();
    assert_eq!(fa.kind, HostFileKind::Fifo);
    let mut buf = [0u8; 4];
    assert_eq!(x.read(fh, 0, &mut buf), Err(HostError::Invalid));
    std::fs::remove_dir_all(&d).unwrap();
}

/// `open` takes the file's descriptor: reads keep reaching the file opened
/// after the host renames another over its name; a handle that was never
/// opened reads as stale instead of another file's bytes.
#[test]
fn an_opened_file_keeps_its_file_across_a_host_rename() {
    let d = scratch("open");
    let e = d.join("export");
    std::fs::write(e.join("b.txt"), b"old b").unwrap();
    let mut x = HostExport::open(&e, false).unwrap();
    let root = x.root();
    let (a, _) = x.lookup(root, b"a.txt").unwrap();
    let (b, _) = x.lookup(root, b"b.txt").unwrap();
    let attr = x.open(a).unwrap();
    assert_eq!(attr.size, 5);
    for name in ["a.txt", "b.txt"] {
        std::fs::write(e.join("new"), b"NEW").unwrap();
        std::fs::rename(e.join("new"), e.join(name)).unwrap();
    }
    let mut buf = [0u8; 16];
    assert_eq!(x.read(a, 0, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(x.read(b, 0, &mut buf), Err(HostError::Stale));
    // A directory's open is its getattr.
    let (sub, _) = x.lookup(root, b"sub").unwrap();
    assert_eq!(x.open(sub).unwrap().kind, HostFileKind::Dir);
    std::fs::remove_dir_all(&d).unwrap();
}
