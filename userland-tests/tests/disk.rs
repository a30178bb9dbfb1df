//! Disks (`--ubd`, UML's `ubdN=`): the guest sees `/dev/ubdX` block
//! devices with UML's major 98, sizes through `BLKGETSIZE64`, and
//! `/proc/partitions` and `/sys/block`; the host's own `mkfs.ext4` run
//! inside the guest makes an image the host's `e2fsck -fn` finds clean; a
//! read-only disk refuses writes; a COW file keeps its backing file
//! unchanged; the guest's own tools (cp -a, tar, mv, rm -r, python) write
//! an ext4 file system the host's `e2fsck -fn` finds clean and `debugfs`
//! reads back byte for byte; a root disk keeps what the guest wrote
//! across boots. Run with `cargo xtask test`.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::current_exe().unwrap().parent().unwrap().join(format!("disk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn blank(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

fn host_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// The kernel over the host's root (its tools) with `args` before the shell command.
fn guest(args: &[&str], script: &str) -> Outcome {
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let mut a: Vec<&str> = vec!["--root", "/"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["/bin/sh", "-c", script]);
    run_kernel(&kernel, &a)
}

#[test]
fn guest_mkfs_makes_an_image_the_host_fsck_finds_clean() {
    let _l = lock();
    let (Some(_), Some(fsck)) = (host_tool("mkfs.ext4"), host_tool("e2fsck")) else { return };
    let d = scratch("mkfs");
    let img = d.join("blank.img");
    blank(&img, 64 << 20);
    let spec = format!("ubd0={}", img.display());
    let o = guest(
        &[&spec],
        "stat -c '%F %t:%T %s' /dev/ubda; blockdev --getsize64 --getss /dev/ubda; \
         grep ubda /proc/partitions; cat /sys/block/ubda/dev /sys/block/ubda/size; \
         mkfs.ext4 -q -F -L guestfs /dev/ubda && echo mkfs=ok; \
         head -c 1082 /dev/ubda | tail -c 2 | od -An -tx1",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "block special file 62:0 0\n67108864\n512\n  98        0      65536 ubda\n98:0\n131072\nmkfs=ok\n 53 ef\n",
        "{}",
        o.stderr
    );
    let st = std::process::Command::new(fsck).args(["-fn"]).arg(&img).output().unwrap();
    assert!(st.status.success(), "e2fsck -fn: {}{}", String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st.stderr));
    let label = std::process::Command::new(host_tool("e2label").unwrap_or_else(|| "e2label".into())).arg(&img).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "guestfs");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn node_writes_reach_the_image_and_read_only_disks_refuse() {
    let _l = lock();
    let d = scratch("rw");
    let img = d.join("a.img");
    blank(&img, 1 << 20);
    let ro = d.join("b.img");
    std::fs::write(&ro, vec![7u8; 4096]).unwrap();
    let (s0, s1) = (format!("ubd0={}", img.display()), format!("ubd1r={}", ro.display()));
    // Unaligned writes, a write at the end (ENOSPC), reads back after
    // BLKFLSBUF, and the read-only disk: opened for writing is EACCES.
    let o = guest(
        &[&s0, &s1],
        "printf hello | dd of=/dev/ubda bs=1 seek=1000 conv=notrunc 2>/dev/null; \
         dd if=/dev/zero of=/dev/ubda bs=512 seek=2048 count=1 2>&1 | grep -c 'No space'; \
         blockdev --flushbufs /dev/ubda; dd if=/dev/ubda bs=1 skip=1000 count=5 2>/dev/null; echo; \
         blockdev --getro /dev/ubdb; head -c 3 /dev/ubdb | od -An -tu1; \
         (echo x > /dev/ubdb) 2>/dev/null || echo refused; sync",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "1\nhello\n1\n   7   7   7\nrefused\n", "{}", o.stderr);
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(&bytes[1000..1005], b"hello");
    assert_eq!(std::fs::read(&ro).unwrap(), vec![7u8; 4096]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cow_files_keep_the_backing_image_and_bad_disks_are_one_line() {
    let _l = lock();
    let d = scratch("cow");
    let base = d.join("base.img");
    let mut data = vec![0u8; 1 << 20];
    data[4096..4101].copy_from_slice(b"base!");
    std::fs::write(&base, &data).unwrap();
    let cow = d.join("guest.cow");
    // UML's words, as a UML user types them.
    let w = format!("ubd0={},{}", cow.display(), base.display());
    let o = guest(&["mem=128M", &w], "dd if=/dev/ubda bs=1 skip=4096 count=5 2>/dev/null; echo; printf COW! | dd of=/dev/ubda bs=1 seek=8192 conv=notrunc 2>/dev/null; sync");
    assert_eq!((o.code, o.stdout.as_str()), (0, "base!\n"), "{}", o.stderr);
    assert_eq!(std::fs::read(&base).unwrap(), data, "the backing file changed");
    // The COW file (found by its header) shows both.
    let w = format!("ubd0={}", cow.display());
    let o = guest(&[&w], "dd if=/dev/ubda bs=1 skip=4096 count=5 2>/dev/null; dd if=/dev/ubda bs=1 skip=8192 count=4 2>/dev/null");
    assert_eq!(o.stdout, "base!COW!", "{}", o.stderr);
    // Bad disks: one line, status 2.
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    for args in [
        vec!["--ubd".to_string(), format!("0={}", d.join("missing.img").display())],
        vec!["--ubd".to_string(), format!("0={},{}", d.join("x.cow").display(), d.join("missing.img").display())],
        vec!["ubd99=x".to_string()],
        vec!["ssl=port:9000".to_string()],
    ] {
        let mut a = args.clone();
        a.extend(["--root", "/", "/bin/true"].map(String::from));
        let o = run_kernel(&kernel, &a);
        assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{args:?}: {}", o.stderr);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A tree packed by the host's `mke2fs -d`, mounted in the guest: `find`,
/// `sha256sum` and `stat` give what they give natively on the source tree;
/// `df` shows the superblock's figures; a corrupt image is refused with a
/// kernel log line.
#[test]
fn ext4_images_mount_and_read_as_native() {
    let _l = lock();
    let Some(mk) = host_tool("mke2fs") else { return };
    let d = scratch("ext4");
    let src = d.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/hello"), "hello\n").unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(src.join("a/b/big"), &big).unwrap();
    for i in 0..500 {
        std::fs::write(src.join(format!("a/b/f{i}")), format!("{i}\n")).unwrap();
    }
    std::os::unix::fs::symlink("../hello", src.join("a/b/up")).unwrap();
    std::fs::hard_link(src.join("a/hello"), src.join("hard")).unwrap();
    let img = d.join("tree.img");
    let st = std::process::Command::new(mk).args(["-q", "-F", "-t", "ext4", "-d"]).arg(&src).arg(&img).arg("64M").status().unwrap();
    assert!(st.success());
    let script = "cd \"$1\" && find . ! -path './lost+found*' | sort | md5sum && find . -type f | sort | xargs sha256sum | sha256sum && stat -c '%n %s %h %a %Y' hard a/b/up a/b/f7 && cat a/b/up";
    // The same script, natively on the source and in the guest on the disk
    // (the guest sees the host's files: --root /).
    let check = d.join("check.sh");
    std::fs::write(&check, script).unwrap();
    let native = std::process::Command::new("/bin/sh").arg(&check).arg(&src).output().unwrap();
    let spec = format!("ubd1={}", img.display());
    // The script reaches the guest through --hostfs: the scratch directory
    // may lie under the host's /tmp, which the guest's own /tmp hides.
    let share = format!("{}:/scratch", d.display());
    let o = guest(
        &["--hostfs", &share, &spec],
        "mkdir -p /tmp/m && mount /dev/ubdb /tmp/m 2>/dev/null && grep ubdb /proc/mounts && \
         df -k /tmp/m | tail -1 | awk '{print $2}' && /bin/sh /scratch/check.sh /tmp/m && umount /tmp/m && echo unmounted",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        format!("/dev/ubdb /tmp/m ext4 rw,relatime 0 0\n65536\n{}unmounted\n", String::from_utf8_lossy(&native.stdout)),
        "{}",
        o.stderr
    );
    // The superblock's magic gone: not ext4, and one line says why.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[1080] = 0;
    std::fs::write(&img, &bytes).unwrap();
    let o = guest(&[&spec], "mkdir -p /tmp/m; mount -t ext4 -o ro /dev/ubdb /tmp/m 2>/dev/null; echo rc=$?");
    assert_eq!(o.stdout, "rc=32\n", "{}", o.stderr);
    assert!(o.stderr.contains("EXT4-fs (ubdb): VFS: Can't find ext4 filesystem"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&d);
}

/// `root=/dev/ubda`: the default root packed into an ext4 image by the
/// host's `mke2fs -d`, booted from the disk (read-write) with UML's words:
/// what one boot writes the next one sees, the image stays clean for the
/// host's e2fsck, and a COW file over it keeps the image unchanged.
#[test]
fn boots_from_an_ext4_root_disk() {
    let _l = lock();
    let (Some(mk), Some(fsck)) = (host_tool("mke2fs"), host_tool("e2fsck")) else {
        eprintln!("skipped: e2fsprogs (mke2fs, e2fsck) not installed");
        return;
    };
    let d = scratch("rootdisk");
    let img = d.join("root.img");
    let st = std::process::Command::new(mk)
        .args(["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d"])
        .arg(default_root())
        .arg(&img)
        .arg("256M")
        .status()
        .unwrap();
    assert!(st.success());
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let ubd = format!("ubd0={}", img.display());
    let o = run_kernel(
        &kernel,
        &[ubd.as_str(), "root=/dev/ubda", "mem=128M", "/bin/sh", "-c", "head -1 /proc/mounts; /tests/hello; echo kept > /x && mkdir -p /d/e && echo deep > /d/e/f && echo ok > /tmp/t && cat /tmp/t"],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "/dev/ubda / ext4 rw,relatime 0 0\nHello from a rustuml guest!\nok\n"), "{}", o.stderr);
    let clean = |what: &str| {
        let st = std::process::Command::new(&fsck).args(["-fn"]).arg(&img).output().unwrap();
        assert!(st.status.success(), "e2fsck -fn {what}: {}{}", String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st.stderr));
    };
    clean("after the first boot");
    let o = run_kernel(&kernel, &[ubd.as_str(), "root=/dev/ubda", "mem=128M", "/bin/sh", "-c", "cat /x /d/e/f; rm -r /d; mv /x /y; ls /d /x 2>&1 >/dev/null | wc -l"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "kept\ndeep\n2\n"), "{}", o.stderr);
    clean("after the second boot");
    // A COW file over it: the guest's changes go there, the image is unchanged.
    let before = std::fs::read(&img).unwrap();
    let cow = format!("ubd0={},{}", d.join("r.cow").display(), img.display());
    for script in ["echo cow > /y && rm /tests/hello && echo written", "cat /y; ls /tests/hello 2>/dev/null || echo gone"] {
        let o = run_kernel(&kernel, &[cow.as_str(), "root=/dev/ubda", "mem=128M", "/bin/sh", "-c", script]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout == "written\n" || o.stdout == "cow\ngone\n", "{}{}", o.stdout, o.stderr);
    }
    assert!(std::fs::read(&img).unwrap() == before, "the backing image changed");
    // Not ext4, or no such disk: one line, status 2.
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    for args in [[ubd.as_str(), "root=/dev/ubda", "/bin/true"], [ubd.as_str(), "root=/dev/ubdc", "/bin/true"]] {
        let o = run_kernel(&kernel, &args);
        assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{args:?}: {}", o.stderr);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The guest's own tools write an ext4 image: `cp -a` of a tree, `tar x`,
/// `mv`, `rm -r`, many small files, a large file, python renaming and
/// fsyncing; after the kernel exits the host's `e2fsck -fn` finds nothing
/// wrong and `debugfs` reads the same bytes the guest wrote. A read-only
/// mount refuses writes with EROFS, a file system whose journal needs
/// recovery is mounted read-only with one kernel log line.
#[test]
fn guest_writes_an_ext4_image_the_host_fsck_finds_clean() {
    let _l = lock();
    let (Some(mk), Some(fsck), Some(debugfs)) = (host_tool("mke2fs"), host_tool("e2fsck"), host_tool("debugfs")) else {
        eprintln!("skipped: e2fsprogs (mke2fs, e2fsck, debugfs) not installed");
        return;
    };
    let d = scratch("ext4rw");
    let src = d.join("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("a/b/f{i}")), format!("{i}\n").repeat(i % 50 + 1)).unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(src.join("a/b/c/big"), &big).unwrap();
    std::os::unix::fs::symlink("../f1", src.join("a/b/c/up")).unwrap();
    std::os::unix::fs::symlink("x".repeat(150), src.join("a/long")).unwrap();
    let tarball = d.join("t.tar");
    assert!(std::process::Command::new("tar").arg("cf").arg(&tarball).arg("-C").arg(&src).arg(".").status().unwrap().success());
    for (bs, feats) in [("4096", "metadata_csum,64bit"), ("1024", "^metadata_csum,^64bit,uninit_bg")] {
        let img = d.join("rw.img");
        let st = std::process::Command::new(&mk).args(["-q", "-F", "-t", "ext4", "-b", bs, "-O", feats]).arg(&img).arg("96M").status().unwrap();
        assert!(st.success());
        let spec = format!("ubd1={}", img.display());
        let share = format!("{}:/scratch", d.display());
        let script = "set -e; mkdir -p /tmp/m && mount /dev/ubdb /tmp/m && cd /tmp/m && \
             cp -a /scratch/src copy && mkdir untar && tar xf /scratch/t.tar -C untar && \
             mv untar/a untar/moved && rm -r copy/a/b/c && \
             mkdir many && i=0; while [ $i -lt 400 ]; do echo $i > many/n$i; i=$((i+1)); done; \
             rm many/n1*; dd if=/dev/zero bs=1M count=24 2>/dev/null | tr '\\0' 'z' > zz; \
             python3 -c \"import os; os.rename('many/n2', 'renamed'); f=open('fs','wb'); f.write(b'q'*70000); f.flush(); os.fsync(f.fileno()); f.close(); os.truncate('fs', 1234)\"; \
             chmod 600 renamed; chown 12:34 renamed; ln renamed hard; ln -s moved/b/f7 sym; \
             cd / && umount /tmp/m && echo done; \
             mount -o ro /dev/ubdb /tmp/m && (touch /tmp/m/x 2>&1 | grep -c 'Read-only'); umount /tmp/m";
        let o = guest(&["--hostfs", &share, &spec], script);
        assert_eq!((o.code, o.stdout.as_str()), (0, "done\n1\n"), "-b {bs} -O {feats}: {}", o.stderr);
        let st = std::process::Command::new(&fsck).args(["-fn"]).arg(&img).output().unwrap();
        assert!(st.status.success(), "e2fsck -fn (-b {bs} -O {feats}): {}{}", String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st.stderr));
        let cat = |path: &str| std::process::Command::new(&debugfs).args(["-R", &format!("cat {path}")]).arg(&img).output().unwrap().stdout;
        assert!(cat("/untar/moved/b/c/big") == big, "debugfs reads the untarred file");
        assert_eq!(cat("/copy/a/b/f42"), std::fs::read(src.join("a/b/f42")).unwrap());
        assert_eq!(cat("/zz").len(), 24 << 20);
        assert!(cat("/zz").iter().all(|&b| b == b'z'));
        assert_eq!(cat("/fs"), vec![b'q'; 1234]);
        assert_eq!(cat("/hard"), b"2\n");
        let stat = std::process::Command::new(&debugfs).args(["-R", "stat /renamed"]).arg(&img).output().unwrap();
        let stat = String::from_utf8_lossy(&stat.stdout);
        assert!(stat.contains("Mode:  0600") && stat.contains("User:    12") && stat.contains("Group:    34") && stat.contains("Links: 2"), "{stat}");
    }
    // The journal needs recovery: mounted read-only, one line says why.
    let img = d.join("rw.img");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[1024 + 0x60] |= 4;
    std::fs::write(&img, &bytes).unwrap();
    let spec = format!("ubd1={}", img.display());
    let o = guest(&[&spec], "mkdir -p /tmp/m && mount /dev/ubdb /tmp/m 2>/dev/null; grep -c 'ubdb /tmp/m ext4 ro' /proc/mounts");
    assert_eq!(o.stdout, "1\n", "{}", o.stderr);
    assert!(o.stderr.contains("journal needs recovery"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&d);
}

/// What the guest wrote and `sync`ed is in the image even when the kernel
/// is killed with SIGKILL right after `sync` returned (plain image and COW
/// file alike).
#[test]
fn synced_writes_survive_sigkill() {
    let _l = lock();
    let d = scratch("kill");
    let plain = d.join("plain.img");
    blank(&plain, 4 << 20);
    let base = d.join("base.img");
    blank(&base, 4 << 20);
    let cow = d.join("over.cow");
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let (a, b) = (format!("ubd0={}", plain.display()), format!("ubd1={},{}", cow.display(), base.display()));
    let script = "printf PLAIN | dd of=/dev/ubda bs=1 seek=4096 conv=notrunc 2>/dev/null; \
                  printf COWED | dd of=/dev/ubdb bs=1 seek=8192 conv=notrunc 2>/dev/null; sync; echo synced; sleep 100";
    let (mut child, lines, _err) = spawn_kernel_lines(&kernel, &["--root", "/", &a, &b, "/bin/sh", "-c", script]);
    let line = lines.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_default();
    assert_eq!(line, "synced");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(&std::fs::read(&plain).unwrap()[4096..4101], b"PLAIN");
    let w = format!("ubd0={}", cow.display());
    let o = guest(&[&w], "dd if=/dev/ubda bs=1 skip=8192 count=5 2>/dev/null");
    assert_eq!(o.stdout, "COWED", "{}", o.stderr);
    assert!(std::fs::read(&base).unwrap().iter().all(|&x| x == 0), "the backing file changed");
    let _ = std::fs::remove_dir_all(&d);
}

/// Ten guests at once from one backing image, each with its own COW file:
/// each sees the shared tree and its own writes only, and the backing
/// file's bytes are unchanged afterwards.
#[test]
fn ten_guests_share_one_backing_image() {
    let _l = lock();
    let Some(mk) = host_tool("mke2fs") else { return };
    let d = scratch("ten");
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("shared"), "from the backing image\n").unwrap();
    let base = d.join("base.img");
    assert!(std::process::Command::new(mk).args(["-q", "-F", "-t", "ext4", "-d"]).arg(&src).arg(&base).arg("16M").status().unwrap().success());
    let before = std::fs::read(&base).unwrap();
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let guests: Vec<_> = (0..10)
        .map(|i| {
            let spec = format!("ubd0={},{}", d.join(format!("g{i}.cow")).display(), base.display());
            // Write the raw disk past the file system's used blocks, then read the file.
            let script = format!(
                "printf guest{i} | dd of=/dev/ubda bs=1 seek=12000000 conv=notrunc 2>/dev/null; sync; \
                 dd if=/dev/ubda bs=1 skip=12000000 count=6 2>/dev/null; echo; \
                 mkdir -p /tmp/m && mount -o ro /dev/ubda /tmp/m && cat /tmp/m/shared"
            );
            let mut cmd = std::process::Command::new(&kernel);
            cmd.args(["--root", "/", "--mem", "96M", &spec, "/bin/sh", "-c", &script]);
            spawn(&mut cmd)
        })
        .collect();
    for (i, mut g) in guests.into_iter().enumerate() {
        let mut out = String::new();
        std::io::Read::read_to_string(g.stdout.as_mut().unwrap(), &mut out).unwrap();
        let st = wait_timeout(&mut g, std::time::Duration::from_secs(120), "guest");
        assert!(st.success(), "guest {i}");
        assert_eq!(out, format!("guest{i}\nfrom the backing image\n"));
    }
    assert!(std::fs::read(&base).unwrap() == before, "the backing file changed");
    let _ = std::fs::remove_dir_all(&d);
}

/// Block-device ioctls with garbage: bad pointers are EFAULT, unknown
/// requests ENOTTY, BLKFLSBUF without privilege EACCES (as Linux).
#[test]
fn block_ioctls_refuse_garbage() {
    let _l = lock();
    if host_tool("python3").is_none() {
        return;
    }
    let d = scratch("ioctl");
    let img = d.join("g.img");
    blank(&img, 1 << 20);
    let py = d.join("ioctl.py");
    std::fs::write(
        &py,
        r#"import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/ubda", os.O_RDWR)
def call(req, arg):
    r = libc.ioctl(fd, ctypes.c_ulong(req), ctypes.c_void_p(arg))
    return "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
size = ctypes.c_uint64()
print(call(0x80081272, ctypes.addressof(size)), size.value)
print(call(0x80081272, 1), call(0x80081272, 0xfffffffffffff000))
print(call(0x1268, 0), call(0x12ff, 0), call(0x5401, 0))
os.setuid(1000)
print(call(0x1261, 0))
"#,
    )
    .unwrap();
    let spec = format!("ubd0={}", img.display());
    // Through --hostfs: the scratch directory may be under the host's /tmp.
    let share = format!("{}:/scratch", d.display());
    let o = guest(&["--hostfs", &share, &spec], "python3 /scratch/ioctl.py");
    assert_eq!(o.stdout, "ok 1048576\nEFAULT EFAULT\nEFAULT ENOTTY ENOTTY\nEACCES\n", "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&d);
}

/// `reboot(2)`: garbage magic is EINVAL, an unprivileged caller EPERM, the
/// Ctrl-Alt-Del settings are accepted; `poweroff` from a child of init
/// stops the guest with status 0 and never returns to its caller, and the ext4 disk it wrote is clean and
/// recorded as cleanly unmounted.
#[test]
fn reboot_powers_off_and_leaves_disks_clean() {
    let _l = lock();
    let (Some(mk), Some(fsck)) = (host_tool("mke2fs"), host_tool("e2fsck")) else {
        eprintln!("skipped: e2fsprogs (mke2fs, e2fsck) not installed");
        return;
    };
    let d = scratch("reboot");
    let img = d.join("r.img");
    assert!(std::process::Command::new(&mk).args(["-q", "-F", "-t", "ext4"]).arg(&img).arg("32M").status().unwrap().success());
    let py = d.join("reboot.py");
    std::fs::write(
        &py,
        r#"import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
def reboot(m1, m2, cmd):
    r = libc.syscall(169, ctypes.c_uint(m1), ctypes.c_uint(m2), ctypes.c_uint(cmd), None)
    return "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
print(reboot(1, 2, 0), reboot(0xfee1dead, 7, 0), reboot(0xfee1dead, 672274793, 0x12345), flush=True)
print(reboot(0xfee1dead, 672274793, 0), reboot(0xfee1dead, 672274793, 0x89abcdef), flush=True)
pid = os.fork()
if pid == 0:
    os.setuid(1000)
    print(reboot(0xfee1dead, 672274793, 0x4321fedc), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
os.makedirs("/tmp/m/dir")
open("/tmp/m/dir/f", "w").write("before power-off\n")
pid = os.fork()
if pid == 0:
    print(reboot(0xfee1dead, 672274793, 0x4321fedc), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
import time
time.sleep(30)
print("still running")
"#,
    )
    .unwrap();
    let spec = format!("ubd1={}", img.display());
    let share = format!("{}:/scratch", d.display());
    let o = guest(&["--hostfs", &share, &spec], "mkdir -p /tmp/m && mount /dev/ubdb /tmp/m && exec python3 /scratch/reboot.py");
    assert_eq!((o.code, o.stdout.as_str()), (0, "EINVAL EINVAL EINVAL\nok ok\nEPERM\n"), "{}", o.stderr);
    let st = std::process::Command::new(&fsck).args(["-fn"]).arg(&img).output().unwrap();
    assert!(st.status.success(), "e2fsck -fn: {}", String::from_utf8_lossy(&st.stdout));
    let dump = std::process::Command::new(host_tool("dumpe2fs").unwrap()).args(["-h"]).arg(&img).output().unwrap();
    assert!(String::from_utf8_lossy(&dump.stdout).lines().any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")), "not marked clean");
    let dbg = std::process::Command::new(host_tool("debugfs").unwrap()).args(["-R", "cat /dir/f"]).arg(&img).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&dbg.stdout), "before power-off\n");
    let _ = std::fs::remove_dir_all(&d);
}
