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
