//! Debugging inside the guest: the host's own `strace` and `gdb`, run in
//! the guest over the host's root (`kernel-* do`), against the same runs
//! natively; and a C program of ptrace / process_vm / `/proc/PID/mem` edge
//! cases compiled here by the host's gcc, whose report must match the
//! native one line for line. Run with `cargo xtask test`. Tests skip (with
//! a line saying so) when the host lacks strace, gdb or gcc.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(p: &str) -> bool {
    Path::new(p).exists()
}

/// `kernel do ARGS...` in `cwd`, for the kernel named by `var`; no host
/// process may outlive it.
fn run_do(var: &str, cwd: &Path, args: &[&str]) -> Outcome {
    let kernel = kernel_from(var);
    let mut cmd = Command::new(&kernel);
    cmd.current_dir(cwd).arg("do").args(args);
    let out = run(&mut cmd, &format!("{var} do {args:?}"));
    assert_no_leftovers(out.pid, &[], "kernel do");
    out
}

/// A scratch directory outside /tmp (the guest's /tmp is its own).
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::current_exe().unwrap().parent().unwrap().join(format!("ptrace-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn native_in(cwd: &Path, prog: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.current_dir(cwd).args(args);
    run(&mut cmd, &format!("native {prog} {args:?}"))
}

/// Compile `src` (a file next to this test) with the host's gcc.
fn compile(dir: &Path, src: &str, out: &str, flags: &[&str]) {
    // Compiled in `dir` from a copy, so debug info names `prog.c` as gdb shows it.
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ptrace").join(src), dir.join(src)).unwrap();
    let st = Command::new("gcc").current_dir(dir).args(flags).arg("-o").arg(out).arg(src).status().expect("gcc");
    assert!(st.success(), "gcc {src} failed");
}

fn edge_cases(var: &str) {
    let _l = lock();
    if !have("/usr/bin/gcc") {
        eprintln!("skipped: the host has no gcc");
        return;
    }
    let d = scratch("edge");
    compile(&d, "edge.c", "edge", &["-O1", "-w"]);
    let native = native_in(&d, "./edge", &[]);
    let guest = run_do(var, &d, &["./edge"]);
    assert_eq!(guest.code, 0, "{}{}", guest.stdout, guest.stderr);
    // Linux lets a tracee trace its tracer; rustuml refuses the loop.
    let loop_line = "loop attach: ";
    let strip = |s: &str| s.lines().filter(|l| !l.starts_with(loop_line)).map(|l| format!("{l}\n")).collect::<String>();
    assert_eq!(strip(&guest.stdout), strip(&native.stdout), "guest vs native report\n{}", guest.stderr);
    assert!(guest.stdout.contains("loop attach: EPERM\n"), "{}", guest.stdout);
    for must in ["poke read-only text: ok", "text after poke: int3", "child getpid after tracer's edit: 4242", "fork event: stopped TRAP event 1", "tracer exit with EXITKILL: tracee is gone", "killed while stopped: killed KILL"] {
        assert!(guest.stdout.contains(must), "missing {must:?} in\n{}", guest.stdout);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn ptrace_edge_cases_match_native_skas() {
    edge_cases("RUSTUML_KERNEL_SKAS");
}

#[test]
fn ptrace_edge_cases_match_native_tt() {
    edge_cases("RUSTUML_KERNEL_TT");
}

/// `strace -c`'s table as (syscall, calls).
fn strace_counts(out: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() >= 5 && f[0].parse::<f64>().is_ok() && f[f.len() - 1] != "total" {
            if let Ok(calls) = f[3].parse::<u64>() {
                m.insert(f[f.len() - 1].to_string(), calls);
            }
        }
    }
    m
}

#[test]
fn strace_follows_a_shell_and_counts_like_native_skas() {
    strace_session("RUSTUML_KERNEL_SKAS");
}

#[test]
fn strace_follows_a_shell_and_counts_like_native_tt() {
    strace_session("RUSTUML_KERNEL_TT");
}

fn strace_session(var: &str) {
    let _l = lock();
    if !have("/usr/bin/strace") || !have("/usr/bin/busybox") {
        eprintln!("skipped: the host lacks strace or busybox (apt-get install strace busybox)");
        return;
    }
    let d = scratch("strace");
    let o = run_do(var, &d, &["strace", "-f", "sh", "-c", "ls /; echo hi"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.ends_with("hi\n"), "{}", o.stdout);
    for must in ["execve(\"/usr/bin/sh\", [\"sh\", \"-c\", \"ls /; echo hi\"]", "execve(\"/usr/bin/ls\", [\"ls\", \"/\"]", "+++ exited with 0 +++", "--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED", "write(1, \"hi\\n\", 3"] {
        assert!(o.stderr.contains(must), "strace output lacks {must:?}:\n{}", o.stderr);
    }
    assert!(o.stderr.contains("attached"), "strace did not follow the child:\n{}", o.stderr);
    // strace -c of a busybox script: the same calls, the same number of times.
    let script = "for i in 1 2 3; do busybox ls / >/dev/null; done; busybox echo hi";
    let args = ["strace", "-c", "-f", "busybox", "sh", "-c", script];
    let guest = run_do(var, &d, &args);
    let native = native_in(&d, args[0], &args[1..]);
    let (g, n) = (strace_counts(&guest.stderr), strace_counts(&native.stderr));
    assert!(!g.is_empty(), "no strace -c table:\n{}", guest.stderr);
    assert_eq!(g, n, "strace -c in the guest vs native:\n{}\n---\n{}", guest.stderr, native.stderr);
    let _ = std::fs::remove_dir_all(&d);
}

fn gdb_session(var: &str) {
    let _l = lock();
    if !have("/usr/bin/gdb") || !have("/usr/bin/gcc") {
        eprintln!("skipped: the host lacks gdb or gcc (apt-get install gdb gcc)");
        return;
    }
    let d = scratch("gdb");
    compile(&d, "prog.c", "prog", &["-g", "-O0"]);
    let args = [
        "gdb", "-nx", "-batch", "-ex", "break main", "-ex", "run", "-ex", "bt", "-ex", "next", "-ex", "stepi", "-ex",
        "info registers rip", "-ex", "continue", "./prog",
    ];
    let o = run_do(var, &d, &args);
    let native = native_in(&d, "gdb", &args[1..]);
    let out = format!("{}{}", o.stdout, o.stderr);
    for must in [
        "Breakpoint 1, main () at prog.c:4",
        "#0  main () at prog.c:4",
        "5\t    printf(\"x=%d\\n\", x);",
        "rip            0x",
        "x=5",
        "[Inferior 1 (process",
        "exited normally]",
    ] {
        assert!(out.contains(must), "gdb in the guest lacks {must:?}:\n{out}\n--- native:\n{}{}", native.stdout, native.stderr);
    }
    // `stepi` moved exactly as natively: the same offset into main.
    let at = |s: &str| s.lines().find(|l| l.starts_with("rip")).and_then(|l| l.split('<').nth(1)).map(str::to_string);
    assert_eq!(at(&out), at(&native.stdout), "{out}");
    assert!(!out.contains("Cannot access memory"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn gdb_breaks_steps_and_continues_skas() {
    gdb_session("RUSTUML_KERNEL_SKAS");
}

#[test]
fn gdb_breaks_steps_and_continues_tt() {
    gdb_session("RUSTUML_KERNEL_TT");
}
