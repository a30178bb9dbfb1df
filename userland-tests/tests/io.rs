//! Pipes, FIFOs, poll/select, epoll, eventfd, timerfd and pseudo-terminals:
//! the `conf_*` conformance programs run natively and in the kernel under
//! both backends, compared line for line (each prints `ok`/`FAIL` per check
//! and exits 0 only if every check passed natively).
//!
//! Run with `cargo xtask test` (it sets RUSTUML_KERNEL_SKAS, RUSTUML_KERNEL_TT
//! and RUSTUML_ROOT).

mod common;

use common::*;

/// Runs `/tests/<prog>` natively and under the backend whose kernel binary
/// `var` names, and compares the runs.
fn compare_on(var: &str, prog: &str) {
    let kernel = kernel_from(var);
    let root = default_root();
    let n = native(&root, prog, &[]);
    assert_eq!(n.code, 0, "the native run of {prog} failed:\n{}\n{}", n.stdout, n.stderr);
    let args = ["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), format!("/tests/{prog}")];
    let g = run_kernel(&kernel, &args);
    assert_same(&format!("{prog} under {var}"), &n, &g);
}

fn both(prog: &str) {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_SKAS", prog);
    compare_on("RUSTUML_KERNEL_TT", prog);
}

#[test]
fn conf_pipe() {
    both("conf_pipe");
}

#[test]
fn conf_poll() {
    both("conf_poll");
}

#[test]
fn conf_epoll() {
    both("conf_epoll");
}

#[test]
fn conf_tty() {
    both("conf_tty");
}
