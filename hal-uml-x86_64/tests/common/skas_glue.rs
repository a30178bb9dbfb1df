// The skas test binary's glue, shared by `skas.rs` (ptrace) and
// `skas_seccomp.rs` (seccomp), which set `MODE` and `BACKEND` before
// including it.

use hal_uml_x86_64::{SkasConfig, SkasHal, SkasSpace};

type TheHal = SkasHal;
type TheSpace = SkasSpace;
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
include!("backend_tests.rs");
// The skas tests, shared by both mechanisms.
include!("skas_tests.rs");
