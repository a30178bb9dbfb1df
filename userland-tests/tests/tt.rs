//! The tt backend is not written yet (issue 4): its kernel binary must say
//! so and exit with status 2. Run with `cargo xtask test`.

mod common;

use common::*;

#[test]
fn kernel_tt_says_it_is_not_implemented() {
    let _l = lock();
    let k = env_path("RUSTUML_KERNEL_TT");
    let g = run_kernel(&k, &["--root", "/", "--", "/tests/hello"]);
    assert_eq!(g.code, 2);
    assert_eq!(
        g.stderr.trim_end(),
        "kernel-tt: the tt backend is not implemented yet (issue 4); use --hal skas"
    );
}
