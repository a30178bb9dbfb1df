//! IPC and file locks under both backends, each compared line by line with
//! a native run: `conf_ipc` (System V shared memory, semaphores, message
//! queues, POSIX message queues, with permissions for another user),
//! `conf_locks` (`flock`, POSIX and OFD record locks), `conf_share`
//! (`CLONE_FS`, `unshare`, `close_range`, pidfds, capabilities, `prctl`)
//! and `conf_inotify` (every event as a line).
//! Run with `cargo xtask test`.

mod common;

use common::*;

const SKAS: &str = "RUSTUML_KERNEL_SKAS";
const TT: &str = "RUSTUML_KERNEL_TT";

fn conf_ipc_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let n = native(&root, "conf_ipc", &[]);
    assert_eq!(n.code, 0, "native conf_ipc failed:\n{}\n{}", n.stdout, n.stderr);
    let args: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned(), "--".into(), "/tests/conf_ipc".into()];
    let g = run_kernel(&kernel, &args);
    assert_same("conf_ipc", &n, &g);
    assert!(!g.stderr.contains("frame leak"), "{}", g.stderr);
}

#[test]
fn conf_ipc_skas() {
    conf_ipc_on(SKAS);
}

#[test]
fn conf_ipc_tt() {
    conf_ipc_on(TT);
}

fn conf_locks_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let dir = std::env::temp_dir().join(format!("rustuml-locks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let n = native(&root, "conf_locks", &[dir.to_str().unwrap_or("/tmp")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n.code, 0, "native conf_locks failed:\n{}\n{}", n.stdout, n.stderr);
    // In the guest: on its tmpfs /tmp.
    let args: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned(), "--".into(), "/tests/conf_locks".into(), "/tmp".into()];
    let g = run_kernel(&kernel, &args);
    assert_same("conf_locks", &n, &g);
}

#[test]
fn conf_locks_skas() {
    conf_locks_on(SKAS);
}

#[test]
fn conf_locks_tt() {
    conf_locks_on(TT);
}

fn conf_share_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let dir = std::env::temp_dir().join(format!("rustuml-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let n = native(&root, "conf_share", &[dir.to_str().unwrap_or("/tmp")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n.code, 0, "native conf_share failed:\n{}\n{}", n.stdout, n.stderr);
    let args: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned(), "--".into(), "/tests/conf_share".into(), "/tmp".into()];
    let g = run_kernel(&kernel, &args);
    assert_same("conf_share", &n, &g);
}

#[test]
fn conf_share_skas() {
    conf_share_on(SKAS);
}

#[test]
fn conf_share_tt() {
    conf_share_on(TT);
}

fn conf_inotify_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let dir = std::env::temp_dir().join(format!("rustuml-inotify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let n = native(&root, "conf_inotify", &[dir.to_str().unwrap_or("/tmp")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n.code, 0, "native conf_inotify failed:\n{}\n{}", n.stdout, n.stderr);
    let args: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned(), "--".into(), "/tests/conf_inotify".into(), "/tmp".into()];
    let g = run_kernel(&kernel, &args);
    assert_same("conf_inotify", &n, &g);
}

#[test]
fn conf_inotify_skas() {
    conf_inotify_on(SKAS);
}

#[test]
fn conf_inotify_tt() {
    conf_inotify_on(TT);
}

/// `sendfile`, `splice` and `vmsplice` (through `writev` on a pipe) as
/// python's `os` module and `shutil.copyfile` use them.
const SPLICE_PY: &str = r#"import os, sys
d = sys.argv[1]
p = os.path.join(d, "sp_src"); q = os.path.join(d, "sp_dst")
with open(p, "wb") as f: f.write(b"hello world " * 1000)
fi = os.open(p, os.O_RDONLY); fo = os.open(q, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("sendfile file->file", os.sendfile(fo, fi, None, 5000), os.lseek(fi, 0, 1))
print("sendfile with offset", os.sendfile(fo, fi, 100, 50), os.lseek(fi, 0, 1))
r, w = os.pipe()
print("sendfile file->pipe", os.sendfile(w, fi, None, 100))
print("splice pipe->file", os.splice(r, fo, 60))
print("splice file->pipe", os.splice(fi, w, 30, offset_src=10))
print("read pipe", os.read(r, 1000))
os.close(fo)
print("dst size", os.path.getsize(q))
try: os.splice(fi, fo, 10)
except OSError as e: print("splice bad", e.errno)
try: os.splice(fi, os.open(q, os.O_WRONLY), 10)
except OSError as e: print("splice no pipe", e.errno)
print("vmsplice", os.writev(w, [b"ab", b"cd"]), os.read(r, 10))
import shutil
shutil.copyfile(p, q)
print("copyfile same", open(p,"rb").read() == open(q,"rb").read())
os.unlink(p); os.unlink(q)
"#;

fn splice_python_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let dir = std::env::temp_dir().join(format!("rustuml-splice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = std::process::Command::new("python3").args(["-c", SPLICE_PY, dir.to_str().unwrap_or("/tmp")]).output().expect("python3 runs natively");
    let _ = std::fs::remove_dir_all(&dir);
    let native = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && native.contains("copyfile same True"), "native: {native}");
    let args: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned(), "--".into(), "/usr/bin/python3".into(), "-c".into(), SPLICE_PY.into(), "/tmp".into()];
    let g = run_kernel(&kernel, &args);
    assert_eq!(g.stdout, native, "guest stderr: {}", g.stderr);
}

#[test]
fn splice_python_skas() {
    splice_python_on(SKAS);
}

#[test]
fn splice_python_tt() {
    splice_python_on(TT);
}
