//! A tiny "kernel" written directly on the skas HAL under the seccomp (`SECCOMP_RET_TRAP` in the stub)
//! mechanism: hand-written guest programs checked for traps, registers,
//! access kinds, batching, timer preemption, isolation and hardening of the
//! stub and cleanup of stub processes.

const MODE: hal_uml_x86_64::TrapMode = hal_uml_x86_64::TrapMode::Seccomp;
const BACKEND: &str = "skas/seccomp";

include!("common/skas_glue.rs");
