//! The integration suite (`common/suite.rs`) under the skas backend.

mod common;

const KERNEL_VAR: &str = "RUSTUML_KERNEL_SKAS";

include!("common/suite.rs");
