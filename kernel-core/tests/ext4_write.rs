//! The ext4 driver writing, against a model: random sequences of creates,
//! writes (sparse ones too, so extent trees grow below the inode),
//! truncates, links, renames, unlinks and remounts on an image made by the
//! host's `mke2fs` must read back as the model says after a remount, and
//! the host's `e2fsck -fn` must find nothing wrong with the image. Skipped
//! (with a line saying so) where e2fsprogs is missing.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;

use common::model::prop_config;
use hal::{BlockDevice, BlockError, BlockInfo, BlockRequest, MemDisk};
use kernel_core::block::{Disk, DiskRef};
use kernel_core::fs::ext4::{self, file_bytes, lookup, readdir_at, NewKind, Volume, VolumeRef};
use kernel_core::fs::{InodeRef, Kind};
use kernel_core::mm::CacheSet;
use kernel_core::Errno;
use proptest::prelude::*;

/// A MemDisk whose bytes the test can see while the kernel owns it.
struct Shared(Rc<RefCell<MemDisk>>);

impl BlockDevice for Shared {
    fn info(&self) -> BlockInfo {
        self.0.borrow().info()
    }
    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)> {
        self.0.borrow_mut().submit(queue)
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin/", "/sbin/", "/usr/bin/"].iter().map(|d| PathBuf::from(format!("{d}{name}"))).find(|p| p.exists())
}

fn scratch(tag: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::env::temp_dir().join(format!("rustuml-ext4w-{}-{tag}-{seq}", std::process::id()))
}

/// An empty image of `size` made by mke2fs (`None` without e2fsprogs).
fn mkfs(blocksize: &str, size: &str, features: &str) -> Option<Vec<u8>> {
    let Some(mk) = tool("mke2fs") else {
        eprintln!("skipped: no mke2fs on this host (install e2fsprogs)");
        return None;
    };
    tool("e2fsck")?;
    let img = scratch("mkfs");
    let mut c = Command::new(mk);
    c.args(["-q", "-F", "-t", "ext4", "-b", blocksize, "-N", "512"]);
    if !features.is_empty() {
        c.args(["-O", features]);
    }
    let out = c.arg(&img).arg(size).output().expect("mke2fs runs");
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    let b = std::fs::read(&img).expect("the image");
    let _ = std::fs::remove_file(&img);
    Some(b)
}

/// `e2fsck -fn` of `bytes`: its output if it found anything wrong.
fn fsck(bytes: &[u8]) -> Result<(), String> {
    let img = scratch("fsck");
    std::fs::write(&img, bytes).expect("writing the image");
    let out = Command::new(tool("e2fsck").expect("e2fsck")).args(["-fn"]).arg(&img).output().expect("e2fsck runs");
    let _ = std::fs::remove_file(&img);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

struct Mounted {
    dev: Rc<RefCell<MemDisk>>,
    disk: DiskRef,
    vol: VolumeRef,
    root: InodeRef,
}

fn mount(bytes: Vec<u8>, rw: bool) -> Result<Mounted, Errno> {
    let dev = Rc::new(RefCell::new(MemDisk::new(bytes)));
    let disk = Disk::new(0, Box::new(Shared(dev.clone())));
    disk.claim()?;
    let vol = Volume::open(disk.clone(), 7, CacheSet::new())?;
    let root = vol.vfs_inode(2)?;
    if rw {
        vol.enable_write()?;
    }
    Ok(Mounted { dev, disk, vol, root })
}

impl Mounted {
    /// Unmount: everything written, the image's bytes.
    fn unmount(self) -> Vec<u8> {
        let Mounted { dev, disk, vol, root } = self;
        drop(root);
        disk.release();
        drop(vol);
        drop(disk);
        let b = dev.borrow().bytes.clone();
        b
    }
}

fn walk(root: &InodeRef, path: &str) -> Result<Option<InodeRef>, Errno> {
    let mut cur = root.clone();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        match lookup(&cur, c)? {
            Some(n) => cur = n,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn forget(dir: &InodeRef, name: &str) {
    if let Kind::Dir(c) = &dir.kind {
        c.borrow_mut().remove(name);
    }
}

const NOW: u64 = 1_750_000_000_123_456_789;

// The VFS's side of each operation (the children maps and link counts),
// as the system calls do it around the driver's calls.

fn v_create(m: &Mounted, path: &str, kind: NewKind<'_>) -> Result<InodeRef, Errno> {
    let (d, n) = split(path);
    let dir = walk(&m.root, d)?.ok_or(Errno::ENOENT)?;
    let is_dir = matches!(kind, NewKind::Dir);
    let node = ext4::create(&dir, n, kind, 0o644, (1000, 1000), NOW)?;
    if is_dir {
        dir.meta.borrow_mut().nlink += 1;
    }
    Ok(node)
}

fn v_unlink(m: &Mounted, path: &str) -> Result<(), Errno> {
    let (d, n) = split(path);
    let dir = walk(&m.root, d)?.ok_or(Errno::ENOENT)?;
    let victim = lookup(&dir, n)?.ok_or(Errno::ENOENT)?;
    ext4::unlink(&dir, n, &victim, NOW)?;
    forget(&dir, n);
    let mut vm = victim.meta.borrow_mut();
    vm.nlink = vm.nlink.saturating_sub(if victim.is_dir() { 2 } else { 1 });
    if victim.is_dir() {
        dir.meta.borrow_mut().nlink -= 1;
    }
    Ok(())
}

fn v_link(m: &Mounted, from: &str, to: &str) -> Result<(), Errno> {
    let src = walk(&m.root, from)?.ok_or(Errno::ENOENT)?;
    let (d, n) = split(to);
    let dir = walk(&m.root, d)?.ok_or(Errno::ENOENT)?;
    ext4::link(&src, &dir, n, NOW)?;
    dir.insert(n, src.clone())?;
    src.meta.borrow_mut().nlink += 1;
    Ok(())
}

fn v_rename(m: &Mounted, from: &str, to: &str) -> Result<(), Errno> {
    let (sd, sn) = split(from);
    let (dd, dn) = split(to);
    let sdir = walk(&m.root, sd)?.ok_or(Errno::ENOENT)?;
    let ddir = walk(&m.root, dd)?.ok_or(Errno::ENOENT)?;
    let node = lookup(&sdir, sn)?.ok_or(Errno::ENOENT)?;
    let target = lookup(&ddir, dn)?;
    ext4::rename(&sdir, sn, &ddir, dn, &node, target.as_ref(), false, NOW)?;
    if let Some(t) = &target {
        let mut tm = t.meta.borrow_mut();
        tm.nlink = tm.nlink.saturating_sub(if t.is_dir() { 2 } else { 1 });
        if t.is_dir() {
            ddir.meta.borrow_mut().nlink -= 1;
        }
    }
    forget(&sdir, sn);
    ddir.insert(dn, node.clone())?;
    if node.is_dir() && !std::sync::Arc::ptr_eq(&sdir, &ddir) {
        sdir.meta.borrow_mut().nlink -= 1;
        ddir.meta.borrow_mut().nlink += 1;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    File(Vec<u8>),
    Dir,
    Link(String),
}

/// What the disk holds, read back through a fresh mount.
fn tree(root: &InodeRef) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(String::new(), root.clone())];
    while let Some((path, dir)) = todo.pop() {
        let mut k = 0;
        while let Some((name, _, _)) = readdir_at(&dir, k).expect("readdir") {
            k += 1;
            if name == "lost+found" && path.is_empty() {
                continue;
            }
            let p = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            let node = lookup(&dir, &name).expect("lookup").expect("listed names exist");
            match &node.kind {
                Kind::Dir(_) => {
                    out.insert(p.clone(), Entry::Dir);
                    todo.push((p, node));
                }
                Kind::File(_) => {
                    out.insert(p, Entry::File(file_bytes(&node, 1 << 24).expect("file bytes")));
                }
                Kind::Symlink(t) => {
                    out.insert(p, Entry::Link(t.clone()));
                }
                _ => panic!("unexpected kind at {p}"),
            }
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    File(usize),
    Mkdir(usize),
    Symlink(usize, usize),
    Write(usize, u64, usize, u8),
    /// One byte in every other block, `n` times: many extents.
    Sparse(usize, usize),
    Truncate(usize, u64),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize),
    Link(usize, usize),
    Remount,
}

const PATHS: [&str; 8] = ["a", "b", "c", "d", "a/x", "a/y", "b/x", "a/x/z"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        p.clone().prop_map(Op::File),
        p.clone().prop_map(Op::Mkdir),
        (p.clone(), 1..300usize).prop_map(|(a, n)| Op::Symlink(a, n)),
        (p.clone(), 0..200_000u64, 1..70_000usize, any::<u8>()).prop_map(|(a, o, n, b)| Op::Write(a, o, n, b)),
        (p.clone(), 1..200usize).prop_map(|(a, n)| Op::Sparse(a, n)),
        (p.clone(), 0..150_000u64).prop_map(|(a, n)| Op::Truncate(a, n)),
        p.clone().prop_map(Op::Unlink),
        p.clone().prop_map(Op::Rmdir),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        (p.clone(), p).prop_map(|(a, b)| Op::Link(a, b)),
        Just(Op::Remount),
    ]
}

fn parent_is_dir(model: &BTreeMap<String, Entry>, path: &str) -> bool {
    let (d, _) = split(path);
    d.is_empty() || model.get(d) == Some(&Entry::Dir)
}

/// Run `ops` on a fresh image, checking each result against the model;
/// then the image must pass e2fsck and read back as the model.
fn run(base: &[u8], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m = mount(base.to_vec(), true).map_err(|e| TestCaseError::fail(format!("mount: {e:?}")))?;
    let mut model: BTreeMap<String, Entry> = BTreeMap::new();
    // Hard links share contents: the model keeps groups of names.
    let mut links: Vec<Vec<String>> = Vec::new();
    let bs = 1024u64;
    for op in ops {
        match op.clone() {
            Op::File(a) | Op::Mkdir(a) | Op::Symlink(a, _) => {
                let p = PATHS[a];
                if model.contains_key(p) || !parent_is_dir(&model, p) {
                    continue;
                }
                let (kind, e) = match op {
                    Op::File(_) => (NewKind::File, Entry::File(Vec::new())),
                    Op::Mkdir(_) => (NewKind::Dir, Entry::Dir),
                    Op::Symlink(_, n) => {
                        let t: String = (0..*n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                        let e = Entry::Link(t.clone());
                        v_create(&m, p, NewKind::Symlink(&t)).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                        model.insert(p.to_string(), e);
                        continue;
                    }
                    _ => unreachable!(),
                };
                v_create(&m, p, kind).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                if matches!(e, Entry::File(_)) {
                    links.push(vec![p.to_string()]);
                }
                model.insert(p.to_string(), e);
            }
            Op::Write(_, _, _, _) | Op::Sparse(_, _) | Op::Truncate(_, _) => {
                let a = match op {
                    Op::Write(a, ..) | Op::Sparse(a, _) | Op::Truncate(a, _) => *a,
                    _ => unreachable!(),
                };
                let p = PATHS[a];
                let Some(Entry::File(mut data)) = model.get(p).cloned() else { continue };
                let node = walk(&m.root, p).map_err(|e| TestCaseError::fail(format!("{e:?}")))?.ok_or_else(|| TestCaseError::fail("file vanished"))?;
                match op {
                    Op::Write(_, off, n, byte) => {
                        let buf: Vec<u8> = (0..*n).map(|i| byte.wrapping_add(i as u8)).collect();
                        ext4::write_bytes(&node, *off, &buf).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                        let end = *off as usize + n;
                        if data.len() < end {
                            data.resize(end, 0);
                        }
                        data[*off as usize..end].copy_from_slice(&buf);
                    }
                    Op::Sparse(_, n) => {
                        for k in 0..*n as u64 {
                            let off = k * 2 * bs + 7;
                            ext4::write_bytes(&node, off, &[k as u8 | 1]).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                            if data.len() < off as usize + 1 {
                                data.resize(off as usize + 1, 0);
                            }
                            data[off as usize] = k as u8 | 1;
                        }
                    }
                    Op::Truncate(_, len) => {
                        ext4::set_size(&node, *len).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                        data.resize(*len as usize, 0);
                    }
                    _ => unreachable!(),
                }
                let group = links.iter().find(|g| g.iter().any(|x| x == p)).cloned().unwrap_or_default();
                for q in group {
                    model.insert(q, Entry::File(data.clone()));
                }
            }
            Op::Unlink(a) => {
                let p = PATHS[a];
                match model.get(p) {
                    Some(Entry::Dir) | None => continue,
                    _ => {}
                }
                v_unlink(&m, p).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                model.remove(p);
                for g in &mut links {
                    g.retain(|x| x != p);
                }
            }
            Op::Rmdir(a) => {
                let p = PATHS[a];
                if model.get(p) != Some(&Entry::Dir) {
                    continue;
                }
                let empty = !model.keys().any(|k| k.starts_with(&format!("{p}/")));
                let r = v_unlink(&m, p);
                if empty {
                    r.map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                    model.remove(p);
                } else {
                    prop_assert_eq!(r, Err(Errno::ENOTEMPTY));
                }
            }
            Op::Rename(a, b) => {
                let (from, to) = (PATHS[a], PATHS[b]);
                let Some(src) = model.get(from).cloned() else { continue };
                if from == to || to.starts_with(&format!("{from}/")) || from.starts_with(&format!("{to}/")) || !parent_is_dir(&model, to) {
                    continue;
                }
                match (&src, model.get(to)) {
                    (_, None) => {}
                    (Entry::Dir, Some(Entry::Dir)) if !model.keys().any(|k| k.starts_with(&format!("{to}/"))) => {}
                    (Entry::Dir, _) | (_, Some(Entry::Dir)) => continue,
                    _ => {}
                }
                // Two names of one file: Linux's rename does nothing.
                if links.iter().any(|g| g.iter().any(|x| x == from) && g.iter().any(|x| x == to)) {
                    continue;
                }
                v_rename(&m, from, to).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                for g in &mut links {
                    g.retain(|x| x != to);
                }
                let moved: Vec<(String, Entry)> = model.iter().filter(|(k, _)| *k == from || k.starts_with(&format!("{from}/"))).map(|(k, v)| (k.clone(), v.clone())).collect();
                model.retain(|k, _| !(k == to || k.starts_with(&format!("{to}/"))));
                for (k, v) in moved {
                    model.remove(&k);
                    let nk = format!("{to}{}", &k[from.len()..]);
                    for g in &mut links {
                        for x in g.iter_mut() {
                            if *x == k {
                                *x = nk.clone();
                            }
                        }
                    }
                    model.insert(nk, v);
                }
            }
            Op::Link(a, b) => {
                let (from, to) = (PATHS[a], PATHS[b]);
                let Some(Entry::File(data)) = model.get(from).cloned() else { continue };
                if model.contains_key(to) || !parent_is_dir(&model, to) {
                    continue;
                }
                v_link(&m, from, to).map_err(|e| TestCaseError::fail(format!("{op:?}: {e:?}")))?;
                model.insert(to.to_string(), Entry::File(data));
                if let Some(g) = links.iter_mut().find(|g| g.iter().any(|x| x == from)) {
                    g.push(to.to_string());
                }
            }
            Op::Remount => {
                let bytes = m.unmount();
                if let Err(out) = fsck(&bytes) {
                    return Err(TestCaseError::fail(format!("e2fsck after {ops:?}:\n{out}")));
                }
                m = mount(bytes, true).map_err(|e| TestCaseError::fail(format!("remount: {e:?}")))?;
            }
        }
        links.retain(|g| !g.is_empty());
    }
    let bytes = m.unmount();
    if let Err(out) = fsck(&bytes) {
        return Err(TestCaseError::fail(format!("e2fsck after {ops:?}:\n{out}")));
    }
    let r = mount(bytes, false).map_err(|e| TestCaseError::fail(format!("read-only mount: {e:?}")))?;
    prop_assert_eq!(tree(&r.root), model);
    Ok(())
}

fn base() -> Option<&'static Vec<u8>> {
    static B: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    B.get_or_init(|| mkfs("1024", "4M", "")).as_ref()
}

proptest! {
    #![proptest_config(prop_config("ext4_write", 24))]
    #[test]
    fn writes_match_the_model_and_pass_e2fsck(ops in proptest::collection::vec(op(), 1..40)) {
        let Some(b) = base() else { return Ok(()) };
        run(b, &ops)?;
    }
}

/// A fixed scenario over the interesting paths: a large sparse file (an
/// extent tree two levels deep is not needed, one below the inode is), a
/// full directory growing over several blocks, hard links, a directory
/// moved between parents, everything removed again; on images with 1 KiB
/// and 4 KiB blocks, with and without metadata checksums, 64-bit, and an
/// htree directory made by mke2fs.
#[test]
fn scenario_passes_e2fsck_on_each_layout() {
    for (bs, feats) in [("1024", ""), ("4096", ""), ("4096", "^metadata_csum,uninit_bg"), ("1024", "^64bit,^metadata_csum"), ("4096", "^has_journal")] {
        let Some(b) = mkfs(bs, "8M", feats) else { return };
        let m = mount(b, true).expect("mount");
        v_create(&m, "dir", NewKind::Dir).expect("mkdir");
        for i in 0..300 {
            let f = v_create(&m, &format!("dir/file-with-a-rather-long-name-{i}"), NewKind::File).expect("create");
            ext4::write_bytes(&f, 0, format!("contents {i}\n").as_bytes()).expect("write");
        }
        let big = v_create(&m, "big", NewKind::File).expect("create");
        for k in 0..400u64 {
            ext4::write_bytes(&big, k * 8192, &[k as u8; 100]).expect("sparse write");
        }
        v_create(&m, "dir/sub", NewKind::Dir).expect("mkdir");
        v_link(&m, "big", "dir/sub/again").expect("link");
        v_rename(&m, "dir/sub", "moved").expect("rename");
        v_create(&m, "moved/ln", NewKind::Symlink(&"t".repeat(100))).expect("symlink");
        for i in (0..300).step_by(2) {
            v_unlink(&m, &format!("dir/file-with-a-rather-long-name-{i}")).expect("unlink");
        }
        ext4::set_size(&big, 1_000_000).expect("truncate");
        let bytes = m.unmount();
        if let Err(out) = fsck(&bytes) {
            panic!("e2fsck -b {bs} -O {feats}:\n{out}");
        }
        let r = mount(bytes, false).expect("remount");
        let t = tree(&r.root);
        assert_eq!(t.get("dir/file-with-a-rather-long-name-7"), Some(&Entry::File(b"contents 7\n".to_vec())));
        assert!(!t.contains_key("dir/file-with-a-rather-long-name-8"));
        let Some(Entry::File(d)) = t.get("moved/again") else { panic!("moved/again missing: {:?}", t.keys().collect::<Vec<_>>()) };
        assert_eq!(d.len(), 1_000_000);
        assert_eq!(&d[8192 * 3..8192 * 3 + 100], &[3u8; 100][..]);
        assert_eq!(t.get("moved/ln"), Some(&Entry::Link("t".repeat(100))));
    }
}

/// Read-only mounts and read-only disks refuse writes with `EROFS`.
#[test]
fn read_only_refuses() {
    let Some(b) = mkfs("1024", "2M", "") else { return };
    let m = mount(b.clone(), false).expect("mount");
    assert_eq!(ext4::create(&m.root, "x", NewKind::File, 0o644, (0, 0), NOW).err(), Some(Errno::EROFS));
    drop(m);
    // The journal needs recovery: read-only, with a log line.
    let mut nr = b.clone();
    nr[1024 + 0x60] |= 0x4;
    let m = mount(nr, false).expect("read-only mount of a file system needing recovery");
    assert_eq!(m.vol.enable_write(), Err(Errno::EROFS));
    assert!(m.disk.take_log().iter().any(|l| l.contains("recovery")), "a kernel log line");
}

/// An image of a small tree made by `mke2fs -d`: a directory big enough
/// for mke2fs to index it (htree), a file, a symlink.
fn mkfs_tree() -> Option<Vec<u8>> {
    let mk = tool("mke2fs")?;
    tool("e2fsck")?;
    let dir = scratch("tree");
    std::fs::create_dir_all(dir.join("d/many")).expect("setting up the tree");
    for i in 0..400 {
        std::fs::write(dir.join(format!("d/many/a-long-file-name-to-fill-blocks-{i}")), i.to_string()).expect("setting up the tree");
    }
    std::fs::write(dir.join("d/big"), vec![7u8; 200_000]).expect("setting up the tree");
    std::os::unix::fs::symlink("big", dir.join("d/ln")).expect("setting up the tree");
    let img = scratch("treeimg");
    let out = Command::new(mk).args(["-q", "-F", "-t", "ext4", "-b", "1024", "-N", "1024", "-d"]).arg(&dir).arg(&img).arg("4M").output().expect("mke2fs runs");
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    // mke2fs -d writes linear directories: e2fsck -D indexes them.
    let st = Command::new(tool("e2fsck")?).args(["-fyD"]).arg(&img).output().expect("e2fsck runs");
    assert!(st.status.code().is_some_and(|c| c <= 1), "e2fsck -fyD: {}", String::from_utf8_lossy(&st.stdout));
    if let Some(dbg) = tool("debugfs") {
        let o = Command::new(dbg).args(["-R", "htree /d/many"]).arg(&img).output().expect("debugfs runs");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Root node dump"), "d/many is not indexed");
    }
    let b = std::fs::read(&img).expect("the image");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&img);
    Some(b)
}

/// Changing a directory mke2fs indexed turns it linear (its index blocks
/// become empty entry blocks): e2fsck finds it clean, every name is found.
#[test]
fn htree_directories_become_linear_and_pass_e2fsck() {
    let Some(b) = mkfs_tree() else { return };
    let m = mount(b, true).expect("mount");
    v_create(&m, "d/many/new", NewKind::File).expect("create in an htree directory");
    for i in (0..400).step_by(3) {
        v_unlink(&m, &format!("d/many/a-long-file-name-to-fill-blocks-{i}")).expect("unlink");
    }
    v_rename(&m, "d/many/a-long-file-name-to-fill-blocks-1", "d/moved").expect("rename");
    let bytes = m.unmount();
    if let Err(out) = fsck(&bytes) {
        panic!("{out}");
    }
    let r = mount(bytes, false).expect("remount");
    let t = tree(&r.root);
    assert_eq!(t.keys().filter(|k| k.starts_with("d/many/")).count(), 400 - 134 - 1 + 1);
    assert_eq!(t.get("d/moved"), Some(&Entry::File(b"1".to_vec())));
    assert_eq!(t.get("d/many/a-long-file-name-to-fill-blocks-2"), Some(&Entry::File(b"2".to_vec())));
}

proptest! {
    #![proptest_config(prop_config("ext4_write_fuzz", 64))]
    /// A corrupt image written to: errors, never a panic or a hang.
    #[test]
    fn writing_mutated_images_never_panics(muts in proptest::collection::vec((1024usize..4 << 20, any::<u8>()), 1..40)) {
        static T: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
        let Some(base) = T.get_or_init(mkfs_tree).as_ref() else { return Ok(()) };
        let mut b = base.clone();
        for (at, v) in muts {
            // Mostly metadata: the first 300 KiB hold the tables and directories.
            let at = if at % 2 == 0 { at % (300 << 10) } else { at };
            let n = b.len();
            b[at.max(1024) % n] = v;
        }
        let Ok(m) = mount(b, true) else { return Ok(()) };
        let _ = v_create(&m, "new", NewKind::File).and_then(|f| ext4::write_bytes(&f, 5000, &[1u8; 70_000]));
        let _ = v_create(&m, "d/many/x", NewKind::Dir);
        for i in 0..20 {
            let _ = v_unlink(&m, &format!("d/many/a-long-file-name-to-fill-blocks-{i}"));
        }
        let _ = v_rename(&m, "d/big", "d/many/big");
        let _ = v_unlink(&m, "d/many/big");
        let _ = v_link(&m, "d/ln", "d/many/ln2");
        let _ = walk(&m.root, "d/big").map(|f| f.map(|f| ext4::set_size(&f, 10)));
        let _ = m.unmount();
    }
}
