//! The packed-root cache (`drivers::initramfs::load_root`) end to end: a boot
//! of the default root leaves `.default.initramfs` beside it, later boots map
//! it, and guest writes to root files (which point into that mapping until
//! written) never reach the host's files or the cache. Run with `cargo xtask
//! test`.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

fn sh(kernel: &Path, root: &Path, script: &str) -> Outcome {
    let g = run_kernel(kernel, &["--root", &root.to_string_lossy(), "--", "/bin/sh", "-c", script]);
    assert_eq!(g.code, 0, "{script}\nstdout:\n{}\nstderr:\n{}", g.stdout, g.stderr);
    g
}

fn guest_writes_stay_in_the_guest(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let cache = root.parent().unwrap().join(".default.initramfs");
    let host = std::fs::read(root.join("etc/os-release")).expect("etc/os-release in the default root");
    let cat = "cat /etc/os-release";
    assert_eq!(sh(&kernel, &root, cat).stdout.as_bytes(), &host[..]);
    if !cache.is_file() {
        // Files changed in the last 2 s are not cached yet (racy timestamps).
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(sh(&kernel, &root, cat).stdout.as_bytes(), &host[..]);
    }
    let before = std::fs::metadata(&cache).expect("the boot cached the packed root beside it");

    // An append (a copy of the shared bytes, then the write) and an in-place
    // overwrite of a file that is not truncated.
    let g = sh(&kernel, &root,
        "echo guest-line >> /etc/os-release; tail -n 1 /etc/os-release; \
         printf XY | dd of=/etc/hostname conv=notrunc 2>/dev/null; head -c 2 /etc/hostname; echo");
    assert_eq!(g.stdout, "guest-line\nXY\n", "{}", g.stderr);

    assert_eq!(std::fs::read(root.join("etc/os-release")).unwrap(), host, "the host file changed");
    assert!(!std::fs::read(root.join("etc/hostname")).unwrap().starts_with(b"XY"), "the host file changed");
    let after = std::fs::metadata(&cache).unwrap();
    assert_eq!((before.ino(), before.len(), before.mtime(), before.mtime_nsec()),
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()), "the cache file changed");
    // A new boot sees the original contents (from the same cache).
    assert_eq!(sh(&kernel, &root, cat).stdout.as_bytes(), &host[..]);
}

#[test]
fn guest_writes_stay_in_the_guest_skas() {
    guest_writes_stay_in_the_guest("RUSTUML_KERNEL_SKAS");
}

#[test]
fn guest_writes_stay_in_the_guest_tt() {
    guest_writes_stay_in_the_guest("RUSTUML_KERNEL_TT");
}
