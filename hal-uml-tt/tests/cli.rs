//! The `kernel-tt` binary: the same command-line and boot tests as
//! `kernel-skas` (`hal-uml-x86_64/tests/common/cli_tests.rs`).
#![cfg(feature = "kernel")]

const KERNEL: &str = env!("CARGO_BIN_EXE_kernel-tt");
const NAME: &str = "kernel-tt";

include!("../../hal-uml-x86_64/tests/common/cli_tests.rs");
