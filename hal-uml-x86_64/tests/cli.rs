//! The `kernel-skas` binary: command line handling, one tiny guest end to
//! end, and static C programs (the guest programs of userland-tests are
//! tested elsewhere). Shared with `kernel-tt`: `common/cli_tests.rs`.
#![cfg(feature = "kernel")]

const KERNEL: &str = env!("CARGO_BIN_EXE_kernel-skas");
const NAME: &str = "kernel-skas";

include!("common/cli_tests.rs");
