//! System V IPC under both backends: `conf_ipc` (shared memory, semaphores,
//! message queues, with permissions for another user) compared line by line
//! with a native run. Run with `cargo xtask test`.

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
