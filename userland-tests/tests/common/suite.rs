// The one integration suite, `include!`d by `skas.rs` and `tt.rs`, which each
// set `KERNEL_VAR` to the environment variable naming their kernel binary: one
// test matrix over both backends, not two copies of the tests.
//
// Boots the kernel on the guest programs and compares each run with the same
// program run natively: stdout byte for byte, and the exit status. Plus:
// static C programs (glibc and musl) from another root, a memory limit,
// start-up errors, syscall tracing, and that no host process outlives the
// kernel (also when the kernel is killed with SIGKILL).
//
// Run with `cargo xtask test`; the paths come from environment variables it
// sets (RUSTUML_KERNEL_SKAS, RUSTUML_KERNEL_TT, RUSTUML_ROOT, RUSTUML_C_ROOT,
// RUSTUML_GUEST_BIN).

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// The kernel binary under test.
fn kernel_bin() -> std::path::PathBuf {
    kernel_from(KERNEL_VAR)
}

/// Its file name, which prefixes its one-line errors.
fn kernel_name() -> String {
    kernel_bin().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Runs `/tests/<prog> <args>` natively and in the kernel, compares them,
/// and checks the native run's status (so a broken program is noticed even
/// if the kernel reproduces the breakage). `{tests}` in an argument stands
/// for the directory holding the programs (`/tests` in the guest).
fn compare(prog: &str, args: &[&str], expected_code: i32) -> (Outcome, Outcome) {
    let kernel = kernel_bin();
    let root = default_root();
    let host_tests = root.join("tests");
    let native_args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{tests}", &host_tests.to_string_lossy()))
        .collect();
    let guest_args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{tests}", "/tests"))
        .collect();
    let n = native(
        &root,
        prog,
        &native_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        n.code, expected_code,
        "the native run of {prog} {args:?} itself did not end as expected:\n{}\n{}",
        n.stdout, n.stderr
    );
    let mut kargs = vec![
        "--root".to_string(),
        root.to_string_lossy().into_owned(),
        "--".into(),
    ];
    kargs.push(format!("/tests/{prog}"));
    kargs.extend(guest_args);
    let g = run_kernel(&kernel, &kargs);
    assert_same(&format!("{prog} {args:?}"), &n, &g);
    (n, g)
}

#[test]
fn hello() {
    let _l = lock();
    let (_, g) = compare("hello", &[], 0);
    assert_eq!(g.stdout, "Hello from a rustuml guest!\n");
}

#[test]
fn argv_env() {
    let _l = lock();
    compare(
        "argv_env",
        &["first", "two words", "", "--flag", "ünïcode"],
        0,
    );
}

#[test]
fn fork_wait() {
    let _l = lock();
    compare("fork_wait", &[], 0);
}

#[test]
fn fork_exec() {
    let _l = lock();
    compare("fork_exec", &["{tests}"], 0);
}

#[test]
fn mem_stress() {
    let _l = lock();
    compare("mem_stress", &[], 0);
}

#[test]
fn cow() {
    let _l = lock();
    compare("cow", &[], 0);
}

#[test]
fn exit_codes() {
    let _l = lock();
    for (args, code) in [
        (&["0"][..], 0),
        (&["1"][..], 1),
        (&["42"][..], 42),
        (&["255"][..], 255),
        (&["256"][..], 0),
        (&["signal", "9"][..], 128 + 9),
        (&["signal", "15"][..], 128 + 15),
        (&[][..], 0),
    ] {
        compare("exit_codes", args, code);
    }
}

#[test]
fn bad_input() {
    let _l = lock();
    let (_, g) = compare("bad_input", &["{tests}"], 0);
    // The unknown system calls it makes are counted and summarised at
    // shutdown: a kernel message, which stays off the console (the guest's
    // own stderr) unless asked for with --verbose or --log FILE.
    assert!(!g.stderr.contains("unimplemented syscalls:"), "a kernel message on the guest's stderr:\n{}", g.stderr);
    let log = std::env::temp_dir().join(format!("rustuml-bad-input-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let root = default_root();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), "/tests/bad_input".into(), "/tests".into()]);
        a
    };
    let v = run_kernel(&kernel_bin(), &args(&["--verbose"]));
    assert!(
        v.stderr.contains("unimplemented syscalls:") && v.stderr.contains("999"),
        "no 'unimplemented syscalls: ...' summary naming syscall 999 on stderr with --verbose:\n{}",
        v.stderr
    );
    let f = run_kernel(&kernel_bin(), &args(&["--log", &log.to_string_lossy()]));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(!f.stderr.contains("unimplemented syscalls:"), "{}", f.stderr);
    assert!(text.contains("unimplemented syscalls:") && text.contains("999"), "--log FILE holds: {text:?}");
}

/// The guest's kernel log: `dmesg` (syslog(2)) and `/dev/kmsg` show what
/// was logged, one record per read, as on Linux.
#[test]
fn kernel_log() {
    let _l = lock();
    let root = default_root();
    let script = "echo '<5>hello from init' > /dev/kmsg; dmesg | grep -c 'hello from init'; \
                  python3 -c 'import os
fd = os.open(\"/dev/kmsg\", os.O_RDONLY | os.O_NONBLOCK)
recs = []
while True:
    try: recs.append(os.read(fd, 8192).decode())
    except BlockingIOError: break
print(sum(r.startswith(\"5,\") and r.endswith(\";hello from init\\n\") for r in recs))'; \
                  dmesg -c >/dev/null; dmesg | wc -l";
    let g = run_kernel(&kernel_bin(), &["--root", &root.to_string_lossy(), "--", "/bin/sh", "-c", script]);
    assert_eq!(g.stdout, "1\n1\n0\n", "{}", g.stderr);
}

/// Runs one of the static C programs from RUSTUML_C_ROOT natively and in the
/// kernel (with that directory as the root).
fn c_hello(name: &str) {
    let kernel = kernel_bin();
    let root = env_path("RUSTUML_C_ROOT");
    let prog = root.join(name);
    if !prog.is_file() {
        let why = std::fs::read_to_string(root.join(format!("{name}.error")))
            .unwrap_or_else(|_| "it was not built (run `cargo xtask test`)".into());
        panic!("{} is missing: {why}", prog.display());
    }
    let args = ["first", "second arg", "5"];
    let mut cmd = Command::new(&prog);
    cmd.args(args).env_clear().envs(GUEST_ENV.iter().copied());
    let n = run(&mut cmd, name);
    assert_eq!(n.code, 5, "native {name} failed:\n{}{}", n.stdout, n.stderr);
    let mut kargs = vec![
        "--root".to_string(),
        root.to_string_lossy().into_owned(),
        "--".into(),
    ];
    kargs.push(format!("/{name}"));
    kargs.extend(args.iter().map(|s| s.to_string()));
    let g = run_kernel(&kernel, &kargs);
    assert_same(name, &n, &g);
}

#[test]
fn c_hello_glibc_static() {
    let _l = lock();
    c_hello("hello-glibc");
}

#[test]
fn c_hello_musl_static() {
    let _l = lock();
    c_hello("hello-musl");
}

/// A root directory holding only `/mem_hog`, so that the 16 MiB of guest
/// memory are not taken by the files of the default root.
fn mem_hog_root() -> std::path::PathBuf {
    let src = default_root().join("tests/mem_hog");
    let dir = std::env::temp_dir().join(format!("rustuml-memroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temporary root");
    std::fs::copy(&src, dir.join("mem_hog")).expect("copy mem_hog");
    dir
}

#[test]
fn out_of_memory_kills_or_fails_the_guest_not_the_kernel() {
    let _l = lock();
    let kernel = kernel_bin();
    let root = mem_hog_root();
    let start = Instant::now();
    let g = run_kernel(
        &kernel,
        &[
            "--mem",
            "16M",
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/mem_hog",
            "256",
        ],
    );
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        !g.signaled,
        "the kernel itself died (status {}):\n{}",
        g.code, g.stderr
    );
    assert!(
        !g.stderr.contains("panicked"),
        "the kernel panicked:\n{}",
        g.stderr
    );
    assert!(
        !g.stdout.contains("got all"),
        "the guest got 256 MiB out of 16:\n{}",
        g.stdout
    );
    // 3: mmap said ENOMEM; 128+9 / 128+7 / 128+11: killed (OOM, SIGBUS, SIGSEGV).
    assert!(
        [3, 128 + 9, 128 + 7, 128 + 11].contains(&g.code),
        "unexpected exit status {} for a guest out of memory\nstdout:\n{}\nstderr:\n{}",
        g.code,
        g.stdout,
        g.stderr
    );
    eprintln!(
        "mem_hog under --mem 16M: status {} in {:?}",
        g.code,
        start.elapsed()
    );
}

/// A start-up error: status 2 and exactly one line on stderr, from the kernel.
fn assert_startup_error(g: &Outcome, what: &str) {
    assert_eq!(
        g.code, 2,
        "{what}: want exit status 2\nstderr:\n{}",
        g.stderr
    );
    let lines: Vec<&str> = g.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: want one line on stderr, got:\n{}",
        g.stderr
    );
    assert!(
        lines[0].starts_with(&format!("{}: ", kernel_name())),
        "{what}: stderr: {}",
        lines[0]
    );
    assert!(
        g.stdout.is_empty(),
        "{what}: unexpected stdout: {}",
        g.stdout
    );
}

#[test]
fn nonexistent_root_is_a_one_line_error() {
    let _l = lock();
    let g = run_kernel(
        &kernel_bin(),
        &["--root", "/nonexistent/rustuml/root", "--", "/tests/hello"],
    );
    assert_startup_error(&g, "--root /nonexistent/rustuml/root");
}

#[test]
fn nonexistent_init_is_a_one_line_error() {
    let _l = lock();
    let root = default_root();
    let g = run_kernel(
        &kernel_bin(),
        &[
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/tests/no_such_init",
        ],
    );
    assert_startup_error(&g, "init /tests/no_such_init");
}

#[test]
fn help_lists_the_options() {
    let _l = lock();
    let g = run_kernel(&kernel_bin(), &["--help"]);
    assert_eq!(g.code, 0, "kernel --help failed:\n{}", g.stderr);
    for opt in ["--mem", "--root", "--trace-syscalls"] {
        assert!(
            g.stdout.contains(opt),
            "--help does not mention {opt}:\n{}",
            g.stdout
        );
    }
}

#[test]
fn trace_syscalls_prints_strace_style_lines() {
    let _l = lock();
    let root = default_root();
    let g = run_kernel(
        &kernel_bin(),
        &[
            "--trace-syscalls",
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/tests/hello",
        ],
    );
    assert_eq!(g.code, 0, "stderr:\n{}", g.stderr);
    assert_eq!(g.stdout, "Hello from a rustuml guest!\n");
    // `[pid] write(1, ...) = 28`: the greeting is 28 bytes.
    let traced = g
        .stderr
        .lines()
        .any(|l| l.starts_with('[') && l.contains("] write(1, ") && l.trim_end().ends_with("= 28"));
    assert!(
        traced,
        "no `[pid] write(1, ...) = 28` line in the trace:\n{}",
        g.stderr
    );
}

#[test]
fn sigkill_of_the_kernel_leaves_no_host_process() {
    let _l = lock();
    let root = default_root();
    let kernel = kernel_bin();
    let (mut child, lines, _err) = spawn_kernel_lines(
        &kernel,
        &[
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/tests/sleeper",
            "60",
            "2",
        ],
    );
    let kpid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l == "sleeper: ready" => {
                ready = true;
                break;
            }
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("the kernel ended ({st}) before the sleeper was ready");
                }
            }
            Err(_) => break,
        }
    }
    // Let the children reach their sleep.
    std::thread::sleep(Duration::from_millis(300));
    let tree = descendants(kpid);
    if !ready {
        // SAFETY: killing the process group this test created.
        unsafe { libc::kill(-kpid, libc::SIGKILL) };
        let _ = child.wait();
        panic!("the sleeper never printed 'sleeper: ready'");
    }
    // The kernel, and one host process per guest process (init + 2 children).
    assert!(
        tree.len() >= 4,
        "expected the kernel and at least 3 stub processes, found {tree:#?}"
    );
    // SAFETY: SIGKILL to the kernel started by this test.
    unsafe { libc::kill(kpid, libc::SIGKILL) };
    let st = child.wait().expect("wait for the kernel");
    assert_eq!(shell_code(st), (128 + 9, true));
    assert_no_leftovers(kpid as u32, &tree, "after SIGKILL of the kernel");
}

#[test]
fn normal_exit_leaves_no_host_process_after_forks() {
    let _l = lock();
    let root = default_root();
    // sleeper 1 3: init forks 3 children that sleep 1 s, then reaps them.
    let g = run_kernel(
        &kernel_bin(),
        &[
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/tests/sleeper",
            "1",
            "3",
        ],
    );
    assert_eq!(
        g.stdout, "sleeper: ready\nsleeper: done\n",
        "stderr:\n{}",
        g.stderr
    );
    assert_eq!(g.code, 0);
    // kernel() already asserted that nothing was left behind.
}

#[test]
fn init_exit_ends_the_system_and_its_other_processes() {
    let _l = lock();
    let root = default_root();
    // init forks 2 children sleeping 60 s and exits at once without waiting:
    // the kernel must end then (with init's status), and take them along.
    let start = Instant::now();
    let g = run_kernel(
        &kernel_bin(),
        &[
            "--root",
            root.to_str().unwrap_or_default(),
            "--",
            "/tests/sleeper",
            "60",
            "2",
            "nowait",
        ],
    );
    assert_eq!(g.stdout, "sleeper: ready\n", "stderr:\n{}", g.stderr);
    assert_eq!(g.code, 0, "stderr:\n{}", g.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the kernel waited for init's children instead of ending with init"
    );
}

#[test]
fn the_kernel_binary_runs_when_copied_elsewhere() {
    let _l = lock();
    let dir = std::env::temp_dir().join(format!("rustuml-kernel-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temporary dir");
    let copy = dir.join(kernel_name());
    std::fs::copy(kernel_bin(), &copy).expect("copy the kernel binary");
    let root = default_root();
    let mut cmd = Command::new(&copy);
    // From another directory, with an empty environment: nothing of cargo's.
    cmd.current_dir(&dir).env_clear().args([
        "--root",
        root.to_str().unwrap_or_default(),
        "--",
        "/tests/exit_codes",
        "17",
    ]);
    let g = run(&mut cmd, "copied kernel");
    assert_no_leftovers(g.pid, &[], "copied kernel");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        g.stdout, "exit_codes: exiting with 17\n",
        "stderr:\n{}",
        g.stderr
    );
    assert_eq!(g.code, 17);
}
