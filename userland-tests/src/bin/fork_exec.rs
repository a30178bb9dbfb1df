//! fork + execve of other test programs + wait4, vfork + execve, and the
//! execve failures: a missing file (ENOENT), a truncated ELF file and a
//! garbage file shipped in the root under `<tests>/data/` (ENOEXEC).
//!
//! Usage: `fork_exec [TESTS_DIR]` (default `/tests`, where the default root
//! keeps the programs; the host-side test passes the host directory when it
//! runs the program natively).
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CString;
use std::os::raw::c_char;
use userland_tests::{args, describe_status, errno, errno_name, exit_now, fork, say, wait_for};

fn cstrings(v: &[&str]) -> Vec<CString> {
    v.iter()
        .map(|s| CString::new(*s).unwrap_or_default())
        .collect()
}

fn ptrs(v: &[CString]) -> Vec<*const c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A fixed environment, so the exec'd program prints the same natively.
const ENV: &[&str] = &["PATH=/bin", "HOME=/", "TERM=dumb", "GREETING=hello exec"];

/// execve(path, argv, ENV); returns the errno if it fails.
fn exec(path: &str, argv: &[&str]) -> i32 {
    let path = CString::new(path).unwrap_or_default();
    let argv = cstrings(argv);
    let envp = cstrings(ENV);
    let (a, e) = (ptrs(&argv), ptrs(&envp));
    // SAFETY: all pointers are to NUL-terminated strings kept alive above,
    // and the arrays are NULL-terminated.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    errno()
}

/// fork, exec in the child, wait in the parent; returns the described status.
fn fork_exec(path: &str, argv: &[&str]) -> String {
    let pid = fork();
    if pid == 0 {
        let e = exec(path, argv);
        say!("  (child: execve failed: {})", errno_name(e));
        exit_now(127);
    }
    match wait_for(pid) {
        Ok((_, st)) => describe_status(st),
        Err(e) => format!("wait4 failed: {}", errno_name(e)),
    }
}

/// vfork + execve + wait4. Everything the child needs is prepared before
/// vfork, and the child does nothing but execve and _exit, in a function of
/// its own, which is what vfork permits.
#[inline(never)]
fn vfork_exec(path: &str, argv: &[&str]) -> String {
    let path = CString::new(path).unwrap_or_default();
    let argv = cstrings(argv);
    let envp = cstrings(ENV);
    let (a, e) = (ptrs(&argv), ptrs(&envp));
    // SAFETY: see above; the pointers stay valid until the child has exec'd
    // (the parent is suspended until then).
    #[allow(deprecated)]
    let pid = unsafe { libc::vfork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return format!("vfork failed: {}", errno_name(errno()));
    }
    wait_for(pid)
        .map(|(_, s)| describe_status(s))
        .unwrap_or_default()
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let dir = args.get(1).cloned().unwrap_or_else(|| "/tests".to_string());
    let mut ok = true;
    let mut expect = |what: &str, got: String, want: &str| {
        let good = got == want;
        ok &= good;
        say!("{what}: {got} [{}]", if good { "ok" } else { "WRONG" });
    };

    say!("exec hello:");
    let st = fork_exec(&format!("{dir}/hello"), &["hello"]);
    expect("hello", st, "exited 0");

    say!("exec exit_codes 13:");
    let st = fork_exec(&format!("{dir}/exit_codes"), &["exit_codes", "13"]);
    expect("exit_codes 13", st, "exited 13");

    say!("exec exit_codes signal 9:");
    let st = fork_exec(&format!("{dir}/exit_codes"), &["exit_codes", "signal", "9"]);
    expect("exit_codes signal 9", st, "killed by signal 9");

    say!("exec argv_env with arguments and an environment:");
    let st = fork_exec(
        &format!("{dir}/argv_env"),
        &["argv_env", "one", "two words", "", "last"],
    );
    expect("argv_env", st, "exited 0");

    // A grandchild: the child forks and execs, and exits with its status.
    say!("nested fork+exec:");
    let pid = fork();
    if pid == 0 {
        let st = fork_exec(&format!("{dir}/exit_codes"), &["exit_codes", "21"]);
        exit_now(if st == "exited 21" { 21 } else { 1 });
    }
    let st = wait_for(pid)
        .map(|(_, s)| describe_status(s))
        .unwrap_or_default();
    expect("nested", st, "exited 21");

    say!("vfork + exec exit_codes 5:");
    let st = vfork_exec(&format!("{dir}/exit_codes"), &["exit_codes", "5"]);
    expect("vfork exit_codes 5", st, "exited 5");

    // Failing execs return to the caller with an errno.
    let e = exec("/nonexistent/program", &["program"]);
    expect(
        "execve missing file",
        format!("-{}", errno_name(e)),
        "-ENOENT",
    );
    let e = exec(&format!("{dir}/no_such_program"), &["no_such_program"]);
    expect(
        "execve missing program",
        format!("-{}", errno_name(e)),
        "-ENOENT",
    );
    let e = exec(&format!("{dir}/data/truncated_elf"), &["truncated_elf"]);
    expect(
        "execve truncated ELF",
        format!("-{}", errno_name(e)),
        "-ENOEXEC",
    );
    let e = exec(&format!("{dir}/data/garbage"), &["garbage"]);
    expect("execve garbage", format!("-{}", errno_name(e)), "-ENOEXEC");
    // Still alive and unchanged after the failed execs.
    say!("still running after failed execs");

    say!("fork_exec: {}", if ok { "PASS" } else { "FAIL" });
    if ok {
        0
    } else {
        1
    }
}
