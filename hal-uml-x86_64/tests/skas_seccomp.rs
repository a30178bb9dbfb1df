//! A tiny "kernel" written directly on the skas HAL under the seccomp (`SECCOMP_RET_TRAP` in the stub)
//! mechanism: hand-written guest programs checked for traps, registers,
//! access kinds, batching, timer preemption, isolation and hardening of the
//! stub and cleanup of stub processes.

use hal_uml_x86_64::{SkasConfig, SkasHal, SkasSpace};

type TheHal = SkasHal;
type TheSpace = SkasSpace;
const MODE: hal_uml_x86_64::TrapMode = hal_uml_x86_64::TrapMode::Seccomp;
const BACKEND: &str = "skas/seccomp";

fn new_hal(mem: u64) -> SkasHal {
    let hal = SkasHal::with_config(mem, SkasConfig { trap: MODE, placement: hal_uml_x86_64::Placement::SameCpu }).expect("hal");
    assert_eq!(hal.config().trap, MODE, "this host lacks the mechanism under test");
    hal
}
fn host_pid(sp: &SkasSpace) -> i32 {
    sp.stub_pid()
}
fn fault_round_trips(hal: &SkasHal) -> u64 {
    hal.stats().fault_round_trips
}
fn set_console(hal: &mut SkasHal, c: drivers::console::HostConsole) {
    hal.set_console(c);
}

// The tests every backend must pass, shared with hal-uml-tt.
include!("common/backend_tests.rs");
// The skas tests, shared by both mechanisms.
include!("common/skas_tests.rs");
