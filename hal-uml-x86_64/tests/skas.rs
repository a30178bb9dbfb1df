//! A tiny "kernel" written directly on the skas HAL under the ptrace (`PTRACE_SYSEMU`)
//! mechanism: hand-written guest programs checked for traps, registers,
//! access kinds, batching, timer preemption, isolation and hardening of the
//! stub and cleanup of stub processes.

const MODE: hal_uml_x86_64::TrapMode = hal_uml_x86_64::TrapMode::Ptrace;
const BACKEND: &str = "skas/ptrace";

include!("common/skas_glue.rs");
