//! Shared machinery of the host-side integration tests: finding what
//! `cargo xtask test` built, running programs natively and under a kernel
//! binary with a timeout, and checking that no host process outlives the
//! kernel.
//!
//! Every test takes [`lock`] first, so that only one kernel runs at a time:
//! the left-over checks look at every process of this test binary's tree, and
//! a kernel pinned to one CPU should not compete with another one for it.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one program (native or in the kernel) may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The environment the kernel gives init, minus TERM, which it copies from
/// the host: the tests set TERM on the kernel too, so both runs agree.
pub const GUEST_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/"),
    ("TERM", "xterm"),
    // What the kernel adds as a login would (run_kernel fixes the locale).
    ("LANG", "C.UTF-8"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("SHELL", "/bin/sh"),
];

/// A path from an environment variable that `cargo xtask test` sets.
pub fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{var} is not set. These tests boot the kernel binary and the guest programs that \
             xtask builds; run them with `cargo xtask test` (from the repository root)."
        ),
    }
}

/// The kernel binary named by the environment variable `var`.
pub fn kernel_from(var: &str) -> PathBuf {
    let k = env_path(var);
    assert!(
        k.is_file(),
        "kernel binary {} does not exist: run `cargo xtask test`",
        k.display()
    );
    k
}

/// The default root directory (with `/tests/<program>`).
pub fn default_root() -> PathBuf {
    let r = env_path("RUSTUML_ROOT");
    assert!(
        r.join("tests/hello").is_file(),
        "default root {} has no tests/hello: run `cargo xtask test`",
        r.display()
    );
    r
}

static LOCK: Mutex<()> = Mutex::new(());
static SUBREAPER: Once = Once::new();

/// Process groups started by the test that holds the lock.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Held by each test for its whole run; see [`lock`].
pub struct TestGuard {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for TestGuard {
    /// Kills whatever the test's processes left behind (also when the test
    /// failed half-way), so that one failure does not spill into the next
    /// test's checks.
    fn drop(&mut self) {
        let me = std::process::id() as i32;
        let groups: Vec<i32> =
            std::mem::take(&mut *GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
        for _ in 0..50 {
            let left: Vec<ProcInfo> = all_processes()
                .into_iter()
                .filter(|p| p.pid != me && (p.ppid == me || groups.contains(&p.pgrp)))
                .collect();
            if left.is_empty() {
                return;
            }
            for p in &left {
                // SAFETY: signals and waits for processes this test started (or orphaned into this subreaper).
                unsafe {
                    libc::kill(p.pid, libc::SIGKILL);
                    if p.ppid == me {
                        libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serialises the tests, and makes this process the subreaper of everything
/// it starts, so that a process orphaned by a kernel is re-parented here
/// (and can be seen) instead of disappearing into the host's init.
pub fn lock() -> TestGuard {
    SUBREAPER.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER) failed");
    });
    TestGuard {
        _lock: LOCK.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

/// What a finished program did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status in the shell's convention: the code, or 128 + signal.
    pub code: i32,
    /// Whether the process itself died of a signal (for a kernel: it crashed).
    pub signaled: bool,
    pub stdout: String,
    pub stderr: String,
    /// Host pid of the process (for the kernel: the left-over checks).
    pub pid: u32,
}

/// The shell-style status of a host process.
pub fn shell_code(st: ExitStatus) -> (i32, bool) {
    match (st.code(), st.signal()) {
        (Some(c), _) => (c, false),
        (None, Some(s)) => (128 + s, true),
        _ => (-1, true),
    }
}

pub fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Starts `cmd` with stdin from /dev/null, stdout and stderr captured, in a
/// process group of its own (so that its whole tree can be found and killed).
pub fn spawn(cmd: &mut Command) -> Child {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child.id() as i32);
    child
}

/// Has the lock's guard kill process group `pgid` at the end of the test
/// (for processes started another way than [`spawn`], e.g. on a pty).
pub fn track_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
}

/// Waits for `child` up to `timeout`; on timeout kills its process group and
/// panics with `what`.
pub fn wait_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {timeout:?}; killed it");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

fn kill_group(pgid: u32) {
    // SAFETY: a signal to a process group this test created.
    unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
}

/// Runs `cmd` to completion (with [`TIMEOUT`]) and collects its output.
pub fn run(cmd: &mut Command, what: &str) -> Outcome {
    run_within(cmd, what, TIMEOUT)
}

/// [`run`] with another limit, for runs whose size depends on the host
/// (a walk of the host's whole tree).
pub fn run_within(cmd: &mut Command, what: &str, limit: Duration) -> Outcome {
    let mut child = spawn(cmd);
    let pid = child.id();
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));
    let st = wait_timeout(&mut child, limit, what);
    // A process that escaped the kernel could hold the pipes open: don't
    // wait for ever for end-of-file.
    let stdout = join_within(out, Duration::from_secs(10), what);
    let stderr = join_within(err, Duration::from_secs(10), what);
    let (code, signaled) = shell_code(st);
    Outcome {
        code,
        signaled,
        stdout,
        stderr,
        pid,
    }
}

fn join_within(h: JoinHandle<String>, t: Duration, what: &str) -> String {
    let start = Instant::now();
    while !h.is_finished() {
        if start.elapsed() > t {
            panic!(
                "{what} exited, but its stdout/stderr stayed open for {t:?}: \
                 some process it started is still alive and holds them"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().unwrap_or_default()
}

/// Runs a guest program natively: `<root>/tests/<prog>` with argv[0] set to
/// `/tests/<prog>` and the environment the kernel gives init.
pub fn native(root: &Path, prog: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(root.join("tests").join(prog));
    cmd.arg0(format!("/tests/{prog}"))
        .args(args)
        .env_clear()
        .envs(GUEST_ENV.iter().copied());
    run(&mut cmd, &format!("native {prog}"))
}

/// Runs a kernel binary with `args`, then checks that it left no host
/// process behind.
pub fn run_kernel<S: AsRef<OsStr>>(kernel: &Path, args: &[S]) -> Outcome {
    let mut cmd = Command::new(kernel);
    cmd.args(args).env("TERM", "xterm").env("LANG", "C.UTF-8").env_remove("TZ");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LC_") {
            cmd.env_remove(k);
        }
    }
    let shown: Vec<_> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let what = format!("{} {}", kernel.display(), shown.join(" "));
    let out = run(&mut cmd, &what);
    assert_no_leftovers(out.pid, &[], &what);
    out
}

/// One line of `/proc/<pid>/stat`, the fields the checks need.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcInfo {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`; None if the process is gone.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split at the last ')'.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 2..].split(' ').collect();
    Some(ProcInfo {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Every process on the host (that this user can see).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// `pid` and all its descendants, found through the parent links.
pub fn descendants(pid: i32) -> Vec<ProcInfo> {
    let all = all_processes();
    let mut found: Vec<ProcInfo> = all.iter().filter(|p| p.pid == pid).cloned().collect();
    let mut seen: HashSet<i32> = found.iter().map(|p| p.pid).collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        for p in all.iter().filter(|p| p.ppid == parent) {
            if seen.insert(p.pid) {
                found.push(p.clone());
            }
        }
        i += 1;
    }
    found
}

/// Asserts that, within a grace period, no process is left of a kernel that
/// has exited (and been reaped): nothing in its process group, nothing
/// orphaned and re-parented to this test process, and nothing of `known` (a
/// snapshot of its tree taken while it ran) still alive. Zombies re-parented
/// here are reaped; live left-overs are killed after the assertion's report
/// is prepared, so that one failure doesn't leak processes into the next.
pub fn assert_no_leftovers(kernel_pid: u32, known: &[ProcInfo], what: &str) {
    let me = std::process::id() as i32;
    let kpid = kernel_pid as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut live = Vec::new();
        for p in all_processes() {
            let ours = p.pgrp == kpid
                || p.ppid == me
                || known
                    .iter()
                    .any(|k| k.pid == p.pid && k.start_time == p.start_time);
            if !ours || p.pid == me {
                continue;
            }
            if p.state == 'Z' || p.state == 'X' {
                if p.ppid == me {
                    // A dead process re-parented here: reap it.
                    // SAFETY: waitpid on a specific child of this process.
                    unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
                continue;
            }
            live.push(p);
        }
        if live.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &live {
                // SAFETY: killing a left-over of the kernel under test.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
            for p in &live {
                // SAFETY: reaping it if it was re-parented here.
                unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
            panic!(
                "host processes created by the kernel are still alive 5 s after it ended \
                 ({what}):\n{live:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that the kernel's run matches the native one: same stdout, same
/// status. Prints both outputs (and the kernel's stderr) when they differ.
pub fn assert_same(what: &str, native: &Outcome, guest: &Outcome) {
    assert!(
        !guest.signaled,
        "{what}: the kernel itself died of signal {}\nstderr:\n{}",
        guest.code - 128,
        guest.stderr
    );
    if native.stdout != guest.stdout {
        let first = native
            .stdout
            .lines()
            .zip(guest.stdout.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| {
                native
                    .stdout
                    .lines()
                    .count()
                    .min(guest.stdout.lines().count())
            });
        panic!(
            "{what}: stdout differs from the native run (first difference at line {}).\n\
             --- native (status {}):\n{}\n--- guest (status {}):\n{}\n--- guest stderr:\n{}",
            first + 1,
            native.code,
            native.stdout,
            guest.code,
            guest.stdout,
            guest.stderr
        );
    }
    assert_eq!(
        guest.code, native.code,
        "{what}: exit status differs from the native run\nguest stderr:\n{}",
        guest.stderr
    );
}

/// Starts a kernel and returns it with a channel of its stdout lines (for
/// tests that act while the guest runs).
pub fn spawn_kernel_lines<S: AsRef<OsStr>>(
    kernel: &Path,
    args: &[S],
) -> (Child, mpsc::Receiver<String>, JoinHandle<String>) {
    let mut cmd = Command::new(kernel);
    cmd.args(args).env("TERM", "xterm");
    let mut child = spawn(&mut cmd);
    let out = child.stdout.take().expect("piped stdout");
    let err = reader(child.stderr.take().expect("piped stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx, err)
}
