//! The integration suite (`common/suite.rs`) under the tt backend.

mod common;

const KERNEL_VAR: &str = "RUSTUML_KERNEL_TT";

include!("common/suite.rs");
