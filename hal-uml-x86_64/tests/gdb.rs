//! Debugging the kernel with plain gdb, as docs/debugging.md shows: gdb
//! starts `kernel-skas` (the unoptimised build cargo makes for these tests),
//! loads `gdb/rustuml.gdb`, breaks in kernel-core's `getppid` handler when
//! the guest calls it, prints the calling task and its registers, and lets
//! the guest finish with the right answer.
#![cfg(feature = "kernel")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KERNEL: &str = env!("CARGO_BIN_EXE_kernel-skas");

#[test]
fn gdb_breaks_in_a_system_call_handler_and_prints_the_task() {
    let root = match std::env::var_os("RUSTUML_ROOT") {
        Some(r) => std::path::PathBuf::from(r),
        None => panic!("RUSTUML_ROOT is not set: run this with `cargo xtask test`, which builds the root"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/gdb/rustuml.gdb");
    let mut gdb = Command::new("gdb")
        .args(["-nx", "-batch", "-x", script])
        .args(["-ex", "rustuml-break-syscall getppid", "-ex", "run", "-ex", "bt 2", "-ex", "rustuml-task", "-ex", "rustuml-ctx"])
        .args(["-ex", "delete", "-ex", "continue", "--args", KERNEL, "--no-sandbox", "--root"])
        .arg(&root)
        .args(["--", "/usr/bin/python3", "-c", "import os; print('guest ppid', os.getppid())"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run gdb ({e}): `cargo xtask test` installs it"));
    let start = Instant::now();
    while gdb.try_wait().expect("wait for gdb").is_none() {
        if start.elapsed() > Duration::from_secs(180) {
            let _ = gdb.kill();
            panic!("gdb did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = gdb.wait_with_output().expect("gdb's output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for want in [
        "Breakpoint 1 at",
        "hit Breakpoint 1, kernel_core::syscall::cred::getppid<hal_uml_x86_64::SkasHal>",
        "kernel_core::syscall::call<hal_uml_x86_64::SkasHal>",
        "pid 1 (thread group 1), parent 0",
        "\"/usr/bin/python3",
        "orig_rax: 0x6e",
        "guest ppid 0",
    ] {
        assert!(text.contains(want), "gdb's session lacks {want:?}:\n{text}");
    }
}
