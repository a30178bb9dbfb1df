//! `kernel-skas do`: commands over the host's own root, live and
//! read-only, with the guest's writes in guest memory. The host's gcc
//! compiles and runs a program in the caller's directory, `git status` of
//! this checkout and the host's python3 give what they give natively, the
//! exit status is the command's, and `rm -rf /` inside leaves the host as
//! it was. Run with `cargo xtask test`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(p: &str) -> bool {
    Path::new(p).exists()
}

/// `kernel-skas do ARGS...` run in `cwd`.
fn run_do(cwd: &Path, args: &[&str]) -> Outcome {
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let mut cmd = Command::new(&kernel);
    cmd.current_dir(cwd).arg("do").args(args);
    // `do` sees the host's whole tree, and `rm -rf /` walks all of it: on a
    // developer's machine with several checkouts and their builds that is
    // millions of files, so the limit is a hang's, not a speed's.
    let out = run_within(&mut cmd, &format!("kernel-skas do {args:?}"), std::time::Duration::from_secs(300));
    assert_no_leftovers(out.pid, &[], "kernel-skas do");
    out
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A scratch directory outside /tmp (the guest's /tmp is its own).
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::current_exe().unwrap().parent().unwrap().join(format!("do-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn do_runs_host_tools_in_the_callers_directory() {
    let _l = lock();
    let d = scratch("tools");
    std::fs::write(d.join("hello.c"), "#include <stdio.h>\nint main(void){puts(\"hello from the host gcc\");return 3;}\n").unwrap();
    let o = run_do(&d, &["sh", "-c", "pwd; id -u; gcc -O2 hello.c -o hello && ./hello; echo status=$?; ls"]);
    // SAFETY: a plain id query.
    let uid = unsafe { libc::getuid() };
    if have("/usr/bin/gcc") {
        assert_eq!(o.stdout, format!("{}\n{uid}\nhello from the host gcc\nstatus=3\nhello\nhello.c\n", d.display()), "{}", o.stderr);
    }
    assert!(!d.join("hello").exists(), "the compiled program stayed in the guest's overlay");
    // The exit status is the command's; a missing command is one line, 2.
    assert_eq!(run_do(&d, &["sh", "-c", "exit 42"]).code, 42);
    let o = run_do(&d, &["no-such-command-here"]);
    assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&d);
    // A working directory under /tmp shows through (the guest's own /tmp
    // would hide it), and what the guest writes there stays private.
    let t = std::env::temp_dir().join(format!("rustuml-do-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("input"), "from the host\n").unwrap();
    let o = run_do(&t, &["sh", "-c", "pwd; cat input; echo private > output; ls"]);
    assert_eq!(o.stdout, format!("{}\nfrom the host\ninput\noutput\n", t.display()), "{}", o.stderr);
    assert!(!t.join("output").exists());
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn do_git_status_and_python_match_native() {
    let _l = lock();
    if !have("/usr/bin/git") || !have("/usr/bin/python3") {
        eprintln!("skipped: the host lacks git or python3");
        return;
    }
    let ws = workspace();
    let native = Command::new("git").args(["status", "--porcelain"]).current_dir(&ws).output().unwrap();
    let o = run_do(&ws, &["git", "status", "--porcelain"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, String::from_utf8_lossy(&native.stdout), "{}", o.stderr);
    let prog = "import sys, os, json; print(sys.version_info[:2], os.getcwd(), len(json.dumps(list(range(100)))))";
    let native = Command::new("python3").args(["-c", prog]).current_dir(&ws).output().unwrap();
    let o = run_do(&ws, &["python3", "-c", prog]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, String::from_utf8_lossy(&native.stdout));
}

/// Names, sizes, modes and modification times of everything under `dirs`.
fn snapshot(dirs: &[&Path]) -> Vec<String> {
    let mut v = Vec::new();
    for d in dirs {
        let out = Command::new("find").arg(d).args(["-xdev", "-printf", "%p %s %m %T@ %l\\n"]).output().unwrap();
        v.extend(String::from_utf8_lossy(&out.stdout).lines().map(String::from));
        let sums = Command::new("sh").arg("-c").arg(format!("find {} -xdev -type f -exec cat {{}} + | sha256sum", d.display())).output().unwrap();
        v.push(String::from_utf8_lossy(&sums.stdout).into_owned());
    }
    v.sort();
    v
}

#[test]
fn rm_rf_slash_inside_leaves_the_host_unchanged() {
    let _l = lock();
    let d = scratch("rmrf");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::write(d.join("sub/deeper/data"), "precious").unwrap();
    std::fs::write(d.join("top"), "also precious").unwrap();
    std::os::unix::fs::symlink("sub", d.join("link")).unwrap();
    let watched = [d.as_path(), Path::new("/usr/bin"), Path::new("/etc")];
    let before = snapshot(&watched);
    // Only the shell's builtins are left afterwards; the guest's own mounts
    // stay (EBUSY), and so may directories other programs on the host are
    // filling meanwhile (the lower layer is live).
    let script = format!("rm -rf --no-preserve-root / 2>/dev/null; echo /*; for p in /usr /etc /bin /lib {}; do test -e $p && echo left $p; done; echo done", d.display());
    let o = run_do(&d, &["sh", "-c", &script]);
    let mut lines = o.stdout.lines();
    let top = lines.next().unwrap_or_default();
    assert!(top.starts_with("/dev /proc /run /sys /tmp") || top.starts_with("/dev /proc"), "{top}");
    assert!(!top.contains("/usr") && !top.contains("/etc"), "{top}");
    assert_eq!(lines.collect::<Vec<_>>(), ["done"], "the guest's view was not emptied: {}", o.stderr);
    assert_eq!(snapshot(&watched), before, "the host changed");
    assert_eq!(std::fs::read_to_string(d.join("sub/deeper/data")).unwrap(), "precious");
    let _ = std::fs::remove_dir_all(&d);
}

/// `do --overlay DIR`: the upper layer kept in a host directory in
/// overlayfs' format between runs, locked against a concurrent run; a bad
/// DIR is one line on stderr and status 2.
#[test]
fn overlay_dir_continues_where_the_last_run_stopped() {
    let _l = lock();
    let d = scratch("ovl");
    let upper = d.join("upper");
    std::fs::create_dir(&upper).unwrap();
    let up = upper.to_string_lossy().into_owned();
    let before = snapshot(&[Path::new("/etc")]);
    let o = run_do(&d, &["--overlay", &up, "sh", "-c", "echo kept > /etc/rustuml-kept; rm /etc/hostname; mkdir /etc/hostname; echo in > /etc/hostname/f; chmod 600 /etc/rustuml-kept; mv /usr/share/doc /usr/share/doc-moved; echo done"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "done\n"), "{}", o.stderr);
    // What overlayfs would find there: the file, and an opaque directory
    // over the deleted name (a whiteout where the lower directory was moved from).
    assert_eq!(std::fs::read_to_string(upper.join("etc/rustuml-kept")).unwrap(), "kept\n");
    use std::os::unix::fs::FileTypeExt;
    let wh = std::fs::symlink_metadata(upper.join("usr/share/doc")).unwrap();
    let xattr_whiteout = wh.file_type().is_file() && wh.len() == 0;
    assert!(wh.file_type().is_char_device() || xattr_whiteout, "{wh:?}");
    let o = run_do(&d, &["--overlay", &up, "sh", "-c", "cat /etc/rustuml-kept /etc/hostname/f; stat -c %a /etc/rustuml-kept; test -e /usr/share/doc; echo doc=$?; test -d /usr/share/doc-moved; echo moved=$?"]);
    assert_eq!(o.stdout, "kept\nin\n600\ndoc=1\nmoved=0\n", "{}", o.stderr);
    assert_eq!(snapshot(&[Path::new("/etc")]), before, "the host's /etc changed");
    // Locked while a run uses it (the lock a run takes: flock on DIR).
    let held = std::fs::File::open(&upper).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a plain flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = run_do(&d, &["--overlay", &up, "true"]);
    assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{}", o.stderr);
    assert!(o.stderr.contains("in use"), "{}", o.stderr);
    drop(held);
    assert_eq!(run_do(&d, &["--overlay", &up, "true"]).code, 0);
    for bad in ["/nonexistent-overlay-dir", "/proc/self/status"] {
        let o = run_do(&d, &["--overlay", bad, "true"]);
        assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{bad}: {}", o.stderr);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Copy-up goes through the page cache: a lower file of 24 MiB is changed
/// in the guest through `write` and a shared mapping (the guest reads its
/// changes back, the host file is untouched); a 5 GiB sparse lower file
/// is appended to (its holes cost nothing); one with more data than the
/// overlay may hold (half of `--mem`) gives ENOSPC and stays as it was.
#[test]
fn copy_up_through_the_page_cache() {
    let _l = lock();
    if !have("/usr/bin/python3") {
        eprintln!("skipped: the host lacks python3");
        return;
    }
    let d = scratch("copyup");
    let data: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(d.join("mid"), &data).unwrap();
    std::fs::File::create(d.join("sparse")).unwrap().set_len(5 << 30).unwrap();
    let big: Vec<u8> = (0..80u32 << 20).map(|i| (i.wrapping_mul(2246822519) >> 24) as u8 | 1).collect();
    std::fs::write(d.join("big"), &big).unwrap();
    drop(big);
    let script = r#"
import mmap, os, hashlib
fd = os.open("mid", os.O_RDWR)
os.pwrite(fd, b"written", 100)
m = mmap.mmap(fd, 0)
m[-6:] = b"mapped"
m.flush()
m.close()
os.close(fd)
d = open("mid", "rb").read()
print(len(d), d[100:107], d[-6:], hashlib.md5(d[107:-6]).hexdigest())
del d
with open("sparse", "ab") as f:
    f.write(b"tail")
with open("sparse", "rb") as f:
    f.seek((5 << 30) - 2)
    print(os.fstat(f.fileno()).st_size, f.read())
try:
    with open("big", "ab") as f:
        f.write(b"x")
    print("big appended")
except OSError as e:
    print("big", e.errno)
h = hashlib.md5()
with open("big", "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(os.stat("big").st_size, h.hexdigest())
"#;
    let o = run_do(&d, &["--mem", "128M", "python3", "-c", script]);
    let md5 = |p: &Path| String::from_utf8_lossy(&Command::new("md5sum").arg(p).output().unwrap().stdout).split(' ').next().unwrap_or_default().to_string();
    std::fs::write(d.join("mid-inner"), &data[107..data.len() - 6]).unwrap();
    let want = format!(
        "{} b'written' b'mapped' {}\n{} b'\\x00\\x00tail'\nbig {}\n{} {}\n",
        24u64 << 20,
        md5(&d.join("mid-inner")),
        (5u64 << 30) + 4,
        libc::ENOSPC,
        80u64 << 20,
        md5(&d.join("big")),
    );
    assert_eq!(o.stdout, want, "stderr: {}", o.stderr);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // The host's files are as they were.
    assert!(std::fs::read(d.join("mid")).unwrap() == data, "the host's file changed");
    assert_eq!(std::fs::metadata(d.join("sparse")).unwrap().len(), 5 << 30);
    let _ = std::fs::remove_dir_all(&d);
}
