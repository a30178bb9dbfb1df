//! Signals, threads, futexes and per-thread vector state: the conformance
//! programs `conf_signals`, `conf_threads`, `conf_futex` and `conf_xstate`,
//! each run natively and as init under both kernels (RUSTUML_KERNEL_SKAS,
//! with both trap mechanisms where it matters, and RUSTUML_KERNEL_TT),
//! stdout and exit status compared. The programs print one deterministic line per check and exit 0
//! only if every check matched Linux. Run with `cargo xtask test`.

mod common;

use common::*;

fn compare_under(var: &str, prog: &str) {
    compare_with(var, &[], prog);
}

fn compare_with(var: &str, flags: &[&str], prog: &str) {
    let root = default_root();
    let n = native(&root, prog, &[]);
    assert_eq!(
        n.code, 0,
        "the native run of {prog} itself failed:\n{}\n{}",
        n.stdout, n.stderr
    );
    let kernel = kernel_from(var);
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), format!("/tests/{prog}")]);
    let g = run_kernel(&kernel, &args);
    assert_same(&format!("{prog} under {var} {flags:?}"), &n, &g);
}

#[test]
fn conf_signals_skas() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_SKAS", "conf_signals");
}

#[test]
fn conf_signals_tt() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_TT", "conf_signals");
}

#[test]
fn conf_threads_skas() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_SKAS", "conf_threads");
}

#[test]
fn conf_threads_tt() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_TT", "conf_threads");
}

#[test]
fn conf_futex_skas() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_SKAS", "conf_futex");
}

#[test]
fn conf_futex_tt() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_TT", "conf_futex");
}

#[test]
fn conf_xstate_skas() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_SKAS", "conf_xstate");
}

#[test]
fn conf_xstate_skas_ptrace() {
    let _l = lock();
    compare_with("RUSTUML_KERNEL_SKAS", &["--trap", "ptrace"], "conf_xstate");
}

#[test]
fn conf_xstate_tt() {
    let _l = lock();
    compare_under("RUSTUML_KERNEL_TT", "conf_xstate");
}
