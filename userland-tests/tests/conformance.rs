//! The smoke check of `cargo xtask conformance`: a few of CPython's own
//! regression test modules (`python3 -m test`, the host's interpreter and
//! test package) pass in the guest under both backends whenever they pass
//! natively. The whole table is `cargo xtask conformance`. Run with
//! `cargo xtask test`.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// `test_fcntl` (record locks, flock, dnotify, pipe sizes), `test_mmap`
/// (shared file mappings), `test_stat`, `test_glob`.
const MODULES: &[&str] = &["test_fcntl", "test_mmap", "test_stat", "test_glob"];

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::current_exe().unwrap().parent().unwrap().join(format!("conformance-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn python_tests_on(var: &str) {
    let _l = lock();
    let d = scratch(var);
    let mut native = Command::new("python3");
    native.current_dir(&d).args(["-m", "test"]).args(MODULES);
    let n = run(&mut native, "native python3 -m test");
    assert_eq!(n.code, 0, "the host's python3 must pass these natively (Debian: libpython3-testsuite):\n{}\n{}", n.stdout, n.stderr);
    let kernel = kernel_from(var);
    let mut guest = Command::new(&kernel);
    guest.current_dir(&d).args(["do", "--mem", "1G", "--", "python3", "-m", "test"]).args(MODULES);
    let g = run(&mut guest, "python3 -m test in the guest");
    let _ = std::fs::remove_dir_all(&d);
    assert!(g.code == 0 && g.stdout.contains("Result: SUCCESS"), "in the guest:\n{}\n{}", g.stdout, g.stderr);
}

#[test]
fn python_regression_tests_skas() {
    python_tests_on("RUSTUML_KERNEL_SKAS");
}

#[test]
fn python_regression_tests_tt() {
    python_tests_on("RUSTUML_KERNEL_TT");
}
