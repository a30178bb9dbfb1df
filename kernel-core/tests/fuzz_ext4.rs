//! The driver against images made by the host's `mke2fs -d` (skipped
//! where e2fsprogs is missing): a tree reads back as written, and mutated
//! images (random bytes over the superblock, group descriptors, inode
//! tables, extent and directory blocks) give errors, never a panic or a
//! hang.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::model::prop_config;
use hal::MemDisk;
use kernel_core::block::Disk;
use kernel_core::fs::ext4::{file_bytes, lookup, readdir_at, Volume, VolumeRef};
use kernel_core::fs::{Inode, InodeRef, Kind};
use kernel_core::mm::CacheSet;
use kernel_core::Errno;
use proptest::prelude::*;

fn mke2fs() -> Option<PathBuf> {
    ["/usr/sbin/mke2fs", "/sbin/mke2fs"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// A 2 MiB image of a small tree: several groups, an htree directory, a
/// file with a multi-level map, symlinks, a hard link. `None` only where
/// the host has no mke2fs; anything else that fails is a test failure.
fn image(blocksize: &str, features: &str) -> Option<Vec<u8>> {
    let mk = mke2fs()?;
    // Tests build images in parallel: each its own directory.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rustuml-ext4-{}-{seq}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("d/many")).expect("setting up the tree");
    std::fs::write(dir.join("hello"), b"hello, disk\n").expect("setting up the tree");
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    std::fs::File::options().write(true).open(dir.join("hello")).ok()?.set_modified(t).expect("setting up the tree");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("d/big"), &big).expect("setting up the tree");
    for i in 0..120 {
        std::fs::write(dir.join(format!("d/many/file-with-a-long-name-{i}")), i.to_string()).expect("setting up the tree");
    }
    std::os::unix::fs::symlink("../hello", dir.join("d/up")).expect("setting up the tree");
    std::os::unix::fs::symlink("y".repeat(200), dir.join("long")).expect("setting up the tree");
    std::fs::hard_link(dir.join("hello"), dir.join("d/again")).expect("setting up the tree");
    let img = dir.with_extension("img");
    let _ = std::fs::remove_file(&img);
    let mut c = Command::new(mk);
    c.args(["-q", "-F", "-t", "ext4", "-I", "256", "-b", blocksize, "-N", "256", "-d"]).arg(&dir);
    if !features.is_empty() {
        c.args(["-O", features]);
    }
    let out = c.arg(&img).arg("2M").output().expect("mke2fs runs");
    assert!(out.status.success(), "mke2fs -b {blocksize} -O {features}: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&img).expect("the image");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&img);
    Some(bytes)
}

fn mounted(bytes: Vec<u8>) -> Result<(VolumeRef, InodeRef), Errno> {
    let disk = Disk::new(0, Box::new(MemDisk::new(bytes)));
    let vol = Volume::open(disk, 7, CacheSet::new())?;
    let root = vol.vfs_inode(2)?;
    Ok((vol, root))
}

/// The whole contents of a regular file (at most 16 MiB).
fn contents(inode: &Inode) -> Result<Vec<u8>, Errno> {
    file_bytes(inode, 1 << 24)
}

/// Walk the whole tree (bounded: a corrupt image may loop), reading every
/// file and link; returns what it saw, or the first error.
fn walk(root: &InodeRef) -> Result<Vec<(String, u64)>, Errno> {
    let mut seen = Vec::new();
    let mut todo = vec![(String::new(), root.clone(), 0)];
    while let Some((path, dir, depth)) = todo.pop() {
        if depth > 8 || seen.len() > 2000 {
            break;
        }
        let mut k = 0;
        while let Some((name, _, _)) = readdir_at(&dir, k)? {
            k += 1;
            let child = lookup(&dir, &name)?.ok_or(Errno::ENOENT)?;
            let p = format!("{path}/{name}");
            match &child.kind {
                Kind::Dir(_) => todo.push((p.clone(), child.clone(), depth + 1)),
                Kind::File(_) => {
                    let c = contents(&child)?;
                    seen.push((format!("{p}#{}", c.iter().map(|&b| u64::from(b)).sum::<u64>()), c.len() as u64));
                    continue;
                }
                _ => {}
            }
            seen.push((p, child.size()));
        }
    }
    Ok(seen)
}

fn base_1k() -> Option<&'static Vec<u8>> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| image("1024", "")).as_ref()
}

#[test]
fn a_tree_made_by_mke2fs_reads_back() {
    for (bs, features) in [("1024", ""), ("4096", ""), ("4096", "^extent,^64bit,^metadata_csum")] {
        let Some(img) = image(bs, features) else { return };
        let (vol, root) = mounted(img).unwrap();
        let hello = lookup(&root, "hello").unwrap().unwrap();
        assert_eq!(contents(&hello).unwrap(), b"hello, disk\n");
        let d = lookup(&root, "d").unwrap().unwrap();
        let again = lookup(&d, "again").unwrap().unwrap();
        assert_eq!((again.ino, again.meta.borrow().nlink), (hello.ino, 2), "hard link");
        let big = contents(&lookup(&d, "big").unwrap().unwrap()).unwrap();
        assert_eq!(big, (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(), "{bs} {features}");
        let up = lookup(&d, "up").unwrap().unwrap();
        assert!(matches!(&up.kind, Kind::Symlink(t) if t == "../hello"));
        let long = lookup(&root, "long").unwrap().unwrap();
        assert!(matches!(&long.kind, Kind::Symlink(t) if *t == "y".repeat(200)));
        let many = lookup(&d, "many").unwrap().unwrap();
        let mut k = 0;
        while readdir_at(&many, k).unwrap().is_some() {
            k += 1;
        }
        assert_eq!(k, 120);
        let f = lookup(&many, "file-with-a-long-name-77").unwrap().unwrap();
        assert_eq!(contents(&f).unwrap(), b"77");
        assert!(lookup(&many, "nope").unwrap().is_none());
        // (mke2fs -d keeps whole seconds only.)
        assert_eq!(hello.meta.borrow().mtime_ns, 1_700_000_000 * 1_000_000_000);
        let [bsize, blocks, free, _, files, ffree] = vol.statfs();
        assert_eq!((bsize * blocks, files), (2 << 20, 256));
        assert!(free > 0 && free < blocks && ffree < files);
        assert!(vol.disk().take_log().is_empty());
    }
}

#[test]
fn garbage_is_not_a_file_system() {
    assert_eq!(mounted(vec![0u8; 1 << 20]).err(), Some(Errno::EINVAL));
    let Some(img) = base_1k() else { return };
    let mut bad = img.clone();
    // The root's inode table points past the end.
    bad[2048 + 8..2048 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let disk = Disk::new(0, Box::new(MemDisk::new(bad)));
    let vol = Volume::open(disk.clone(), 7, CacheSet::new()).unwrap();
    assert_eq!(vol.vfs_inode(2).err(), Some(Errno::EUCLEAN));
    let log = disk.take_log();
    assert!(log.len() == 1 && log[0].starts_with("EXT4-fs error (device ubda): group 0"), "{log:?}");
}

proptest! {
    #![proptest_config(prop_config("fuzz_ext4", 256))]
    /// Random bytes anywhere in the metadata-heavy first 128 KiB: every
    /// outcome is a clean error or a (possibly different) tree.
    #[test]
    fn mutated_images_never_panic(muts in proptest::collection::vec((1024usize..131_072, any::<u8>()), 1..24)) {
        let Some(img) = base_1k() else { return Ok(()) };
        let mut bad = img.clone();
        for (at, b) in muts {
            bad[at] = b;
        }
        if let Ok((_, root)) = mounted(bad) {
            let _ = walk(&root);
        }
    }
}

/// A hostile extent tree whose index entries all point at one block of the
/// level below (five levels of 340 entries: 10^10 paths) is refused after
/// a bounded walk, as are overlapping extents.
#[test]
fn hostile_extent_trees_are_bounded() {
    let Some(img) = image("4096", "") else { return };
    let (_, root) = mounted(img.clone()).unwrap();
    let d = lookup(&root, "d").unwrap().unwrap();
    let ino = lookup(&d, "big").unwrap().unwrap().ino;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let (ipg, isz) = (u32_at(&img, 1024 + 0x28), usize::from(u16::from_le_bytes([img[1024 + 0x58], img[1024 + 0x59]])));
    let table = u32_at(&img, 4096 + 8);
    let at = table * 4096 + (ino as usize - 1) % ipg * isz + 0x28;
    let node = |depth: u16, entries: u16, child: u32| {
        let mut b = vec![0u8; 12 + 12 * usize::from(entries)];
        b[0..2].copy_from_slice(&0xf30au16.to_le_bytes());
        b[2..4].copy_from_slice(&entries.to_le_bytes());
        b[4..6].copy_from_slice(&entries.max(4).to_le_bytes());
        b[6..8].copy_from_slice(&depth.to_le_bytes());
        for i in 0..usize::from(entries) {
            b[12 + 12 * i..16 + 12 * i].copy_from_slice(&(i as u32).to_le_bytes());
            b[16 + 12 * i..20 + 12 * i].copy_from_slice(&child.to_le_bytes());
        }
        b
    };
    let mut bad = img.clone();
    // Blocks 500..504 (the image's last, free): depth 4 down to an empty leaf.
    for (k, depth) in (0u32..5).zip((0u16..5).rev()) {
        let b = if depth == 0 { node(0, 0, 0) } else { node(depth, 340, 501 + k) };
        let off = (500 + k as usize) * 4096;
        bad[off..off + b.len()].copy_from_slice(&b);
    }
    bad[at..at + 60].fill(0);
    bad[at..at + 60].copy_from_slice(&node(5, 4, 500)[..60]);
    let (_, root) = mounted(bad).unwrap();
    let d = lookup(&root, "d").unwrap().unwrap();
    assert_eq!(lookup(&d, "big").err(), Some(Errno::EUCLEAN));
    // Two extents mapping the same logical block.
    let mut bad = img.clone();
    let mut leaf = node(0, 2, 0);
    for i in 0..2 {
        leaf[12 + 12 * i..16 + 12 * i].copy_from_slice(&0u32.to_le_bytes());
        leaf[16 + 12 * i..18 + 12 * i].copy_from_slice(&4u16.to_le_bytes());
        leaf[20 + 12 * i..24 + 12 * i].copy_from_slice(&(300 + 10 * i as u32).to_le_bytes());
    }
    bad[at..at + 60].fill(0);
    bad[at..at + leaf.len()].copy_from_slice(&leaf);
    let (_, root) = mounted(bad).unwrap();
    let d = lookup(&root, "d").unwrap().unwrap();
    assert_eq!(lookup(&d, "big").err(), Some(Errno::EUCLEAN));
}
