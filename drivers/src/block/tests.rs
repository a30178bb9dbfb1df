//! File and COW disks against a model (the bytes the guest wrote).

use super::*;
use hal::BlockInfo;
use hal::BlockRequest;

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("rustuml-block-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

fn read(d: &mut dyn BlockDevice, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    d.submit(&mut [BlockRequest::Read { offset: off, buf: &mut v }]).unwrap();
    v
}

#[test]
fn file_disk_merges_runs_and_checks_ranges() {
    let t = Tmp::new("file");
    let img = t.path("disk.img");
    std::fs::write(&img, pattern(64 << 10, 1)).unwrap();
    let mut d = FileDisk::open(&img, true, false).unwrap();
    assert_eq!(d.info(), BlockInfo { size: 64 << 10, read_only: false });
    let (a, b) = (pattern(4096, 9), pattern(1024, 3));
    d.submit(&mut [BlockRequest::Write { offset: 4096, data: &a }, BlockRequest::Write { offset: 8192, data: &b }, BlockRequest::Flush]).unwrap();
    let mut x = vec![0u8; 4096];
    let mut y = vec![0u8; 1024];
    d.submit(&mut [BlockRequest::Read { offset: 4096, buf: &mut x }, BlockRequest::Read { offset: 8192, buf: &mut y }]).unwrap();
    assert_eq!((x, y), (a, b));
    let mut z = vec![0u8; 512];
    assert_eq!(d.submit(&mut [BlockRequest::Read { offset: 64 << 10, buf: &mut z }]), Err((0, BlockError::OutOfRange)));
    assert_eq!(d.submit(&mut [BlockRequest::Read { offset: 100, buf: &mut z }]), Err((0, BlockError::OutOfRange)));
    // A second writer is refused while the first holds the image.
    assert!(FileDisk::open(&img, true, false).unwrap_err().contains("in use"));
    drop(d);
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[4096..8192], &pattern(4096, 9)[..]);
}

#[test]
fn read_only_image_as_writable_is_refused() {
    let t = Tmp::new("ro");
    let img = t.path("ro.img");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let mut p = std::fs::metadata(&img).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o444);
    std::fs::set_permissions(&img, p).unwrap();
    // Root ignores file modes: only check when they apply.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let e = open(&DiskSpec { index: 0, path: img.clone(), backing: None, read_only: false, sync: false }).err().unwrap();
        assert!(e.contains("read-only"), "{e}");
    }
    let mut d = open(&DiskSpec { index: 0, path: img, backing: None, read_only: true, sync: false }).unwrap();
    assert!(d.info().read_only);
    assert_eq!(d.submit(&mut [BlockRequest::Write { offset: 0, data: &[0u8; 512] }]), Err((0, BlockError::ReadOnly)));
}

#[test]
fn cow_reads_backing_until_written_and_persists() {
    let t = Tmp::new("cow");
    let (base, cow) = (t.path("base.img"), t.path("a.cow"));
    let orig = pattern(256 << 10, 5);
    std::fs::write(&base, &orig).unwrap();
    let sum = std::fs::read(&base).unwrap();
    let mut model = orig.clone();
    {
        let mut d = CowDisk::open(&cow, Some(&base), false).unwrap();
        assert_eq!(read(&mut d, 0, 8192), orig[..8192]);
        let w = pattern(1536, 77);
        d.submit(&mut [BlockRequest::Write { offset: 512 * 3, data: &w }]).unwrap();
        model[1536..3072].copy_from_slice(&w);
        let w2 = pattern(4096, 11);
        d.submit(&mut [BlockRequest::Write { offset: 200 << 10, data: &w2 }, BlockRequest::Flush]).unwrap();
        model[200 << 10..(200 << 10) + 4096].copy_from_slice(&w2);
        assert_eq!(read(&mut d, 0, 256 << 10), model);
        assert_eq!(d.written_sectors(), 3 + 8);
    }
    // Reopened by the COW file alone (its header names the backing file).
    let mut d = open(&DiskSpec { index: 1, path: cow.clone(), backing: None, read_only: false, sync: false }).unwrap();
    assert_eq!(read(&mut *d, 0, 256 << 10), model);
    drop(d);
    assert_eq!(std::fs::read(&base).unwrap(), sum, "the backing file is never written");
    let merged = t.path("merged.img");
    cow::merge(&cow, &merged, |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&merged).unwrap(), model);
}

#[test]
fn cow_refuses_a_changed_or_other_backing_file() {
    let t = Tmp::new("refuse");
    let (base, other, cow) = (t.path("base.img"), t.path("other.img"), t.path("c.cow"));
    std::fs::write(&base, vec![1u8; 8192]).unwrap();
    std::fs::write(&other, vec![2u8; 8192]).unwrap();
    drop(CowDisk::open(&cow, Some(&base), false).unwrap());
    let e = CowDisk::open(&cow, Some(&other), false).err().unwrap();
    assert!(e.contains("made for backing file"), "{e}");
    // The backing file changes: its mtime moves.
    let f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
    drop(f);
    let e = CowDisk::open(&cow, None, false).err().unwrap();
    assert!(e.contains("changed since"), "{e}");
    let missing = t.path("gone.cow");
    let e = CowDisk::open(&missing, Some(&t.path("nothing.img")), false).err().unwrap();
    assert!(e.contains("nothing.img"), "{e}");
    assert!(!missing.exists() || std::fs::metadata(&missing).unwrap().len() == 0);
}

#[test]
fn specs_parse() {
    assert_eq!(
        parse_spec("0", "cow.img,base.img").unwrap(),
        DiskSpec { index: 0, path: "cow.img".into(), backing: Some("base.img".into()), read_only: false, sync: false }
    );
    assert_eq!(parse_spec("1r", "d.img").unwrap(), DiskSpec { index: 1, path: "d.img".into(), backing: None, read_only: true, sync: false });
    assert!(parse_spec("1rs", "d.img").unwrap().sync);
    for (k, v) in [("16", "x"), ("a", "x"), ("0x", "x"), ("0", ""), ("0", "a,b,c"), ("0r", "a,b")] {
        let e = parse_spec(k, v).unwrap_err();
        assert!(!e.contains('\n'));
    }
    assert_eq!(disk_name(0), "ubda");
    assert_eq!(disk_name(3), "ubdd");
}
