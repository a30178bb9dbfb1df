//! `cargo xtask bench [--quick] [--reps N] [--json FILE] [--report DIR] [--peers]`:
//! runs the same benchmark programs natively, under `kernel-skas` and under
//! `kernel-tt`, interleaved (native, skas, tt, native, skas, tt, ...) so
//! that a change in the machine's load hits every backend alike, and prints
//! per operation the median of each backend and its ratio to native.
//!
//! The guest side is `userland-tests/src/bin/bench_ops.rs`: one process per
//! measurement, timing its own operation with `clock_gettime` and printing
//! `bench OP VALUE UNIT` (or `bench OP n/a REASON`). Boot time and the host
//! CPU of an idle guest are measured here, from the host.
//!
//! Benchmarks never fail on time: an operation that fails, hangs or crashes
//! under a backend is reported as `n/a` with the reason, and the run goes on.

use crate::{build_guests, build_kernel, set_mode, Hal, Paths};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options of `cargo xtask bench`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Fewer iterations and repetitions: done in well under a minute.
    pub quick: bool,
    /// Repetitions per operation and backend (default 7, quick 3).
    pub reps: Option<usize>,
    /// Where to write the raw samples as JSON.
    pub json: Option<PathBuf>,
    /// Where to write the Markdown report and its SVG chart.
    pub report: Option<PathBuf>,
    /// Also look for UML and gVisor on the host.
    pub peers: bool,
}

/// Which number is better.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Better {
    Lower,
    Higher,
}

/// How an operation is measured.
#[derive(Copy, Clone, Debug)]
enum How {
    /// `bench_ops OP ITERS [PATH]` inside the guest; the path argument is
    /// derived from [`PathArg`].
    Guest {
        full: usize,
        quick: usize,
        path: PathArg,
    },
    /// Host-side: spawn to the first byte `hello` writes.
    BootFirstOutput,
    /// Host-side: spawn to exit of `hello`.
    BootToExit,
    /// Host-side: CPU of a guest sleeping 1 s, minus that of a `hello` run.
    IdleCpu,
}

#[derive(Copy, Clone, Debug)]
enum PathArg {
    None,
    /// A file that exists (`/tests/hello`).
    File,
    /// The tiny program to execute (`/tests/bench_true`).
    Program,
    /// A writable directory (`/tmp`).
    Dir,
}

/// One operation of the table.
struct Op {
    /// Machine name (the JSON key and `bench_ops`' OP).
    name: &'static str,
    /// What the table calls it.
    label: &'static str,
    /// Unit of the raw samples: "ns", "MB/s" or "%".
    unit: &'static str,
    better: Better,
    how: How,
    /// DESIGN.md targets, in the raw unit: (skas, tt).
    target: Option<(f64, f64)>,
}

const OPS: &[Op] = &[
    Op {
        name: "null_syscall",
        label: "null system call (getppid)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 200_000,
            quick: 20_000,
            path: PathArg::None,
        },
        target: Some((3_000.0, 2_000.0)),
    },
    Op {
        name: "open_close",
        label: "open+close",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: Some((8_000.0, 6_000.0)),
    },
    Op {
        name: "stat",
        label: "stat",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: None,
    },
    Op {
        name: "pipe_rtt",
        label: "pipe round trip (2 processes)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: None,
    },
    Op {
        name: "fork_exit",
        label: "fork+exit+wait",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 300,
            quick: 30,
            path: PathArg::None,
        },
        target: Some((300_000.0, 300_000.0)),
    },
    Op {
        name: "fork_exec",
        label: "fork+exec+wait (static)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 60,
            quick: 8,
            path: PathArg::Program,
        },
        target: Some((1_000_000.0, 1_000_000.0)),
    },
    Op {
        name: "page_fault",
        label: "page fault (per 4 KiB page)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 16_384,
            quick: 2_048,
            path: PathArg::None,
        },
        target: Some((3_000.0, 3_000.0)),
    },
    Op {
        name: "mmap_munmap",
        label: "mmap+munmap (64 KiB)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
    },
    Op {
        name: "file_rw",
        label: "file write+read, 64 KiB",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            full: 20_000,
            quick: 1_000,
            path: PathArg::Dir,
        },
        target: Some((3_000.0, 3_000.0)),
    },
    Op {
        name: "pipe_bw",
        label: "pipe bandwidth, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: Some((1_500.0, 1_500.0)),
    },
    Op {
        name: "boot_first_output",
        label: "boot to first guest output",
        unit: "ns",
        better: Better::Lower,
        how: How::BootFirstOutput,
        target: Some((20_000_000.0, 20_000_000.0)),
    },
    Op {
        name: "boot_to_exit",
        label: "boot, run hello, exit",
        unit: "ns",
        better: Better::Lower,
        how: How::BootToExit,
        target: None,
    },
    Op {
        name: "idle_cpu",
        label: "idle guest, host CPU",
        unit: "%",
        better: Better::Lower,
        how: How::IdleCpu,
        target: Some((0.5, 0.5)),
    },
];

/// Names of every operation, in table order (what a well-formed JSON has).
pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.name).collect()
}

/// Something the programs run under: the host or a kernel binary.
#[derive(Clone, Debug)]
struct Backend {
    name: &'static str,
    /// `None` for native.
    kernel: Option<PathBuf>,
    /// Why it is skipped, if it is.
    skipped: Option<String>,
}

/// One measurement: a value, or why there is none.
type Sample = Result<f64, String>;

/// Everything measured: op -> backend -> samples.
struct Results {
    backends: Vec<Backend>,
    samples: BTreeMap<&'static str, BTreeMap<&'static str, Vec<Sample>>>,
    notes: Vec<String>,
    quick: bool,
    reps: usize,
    date: String,
}

/// What one process run gave.
struct RunOut {
    stdout: String,
    stderr: String,
    /// Exit code, or 128 + signal; `None` on timeout.
    code: Option<i32>,
    first_output: Option<Duration>,
    elapsed: Duration,
    /// User + system CPU of the process and its waited-for descendants.
    cpu: Duration,
}

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const RUSAGE_CHILDREN: i32 = -1;
const SIGKILL: i32 = 9;

/// CPU time of this process's waited-for children so far.
fn children_cpu() -> Duration {
    let mut r = Rusage {
        utime: Timeval { sec: 0, usec: 0 },
        stime: Timeval { sec: 0, usec: 0 },
        rest: [0; 14],
    };
    // SAFETY: r is a valid, writable struct rusage (2 timevals + 14 longs).
    let rc = unsafe { getrusage(RUSAGE_CHILDREN, &mut r) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let us = (r.utime.sec + r.stime.sec) * 1_000_000 + r.utime.usec + r.stime.usec;
    Duration::from_micros(us.max(0) as u64)
}

/// Runs `cmd` in its own process group with a timeout (then the whole group
/// is killed), recording when the first byte of stdout came.
fn run_timed(mut cmd: Command, timeout: Duration) -> Result<RunOut, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let cpu0 = children_cpu();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let out_thread = std::thread::spawn(move || {
        let mut data = Vec::new();
        let mut first = None;
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if first.is_none() {
                        first = Some(start.elapsed());
                    }
                    data.extend_from_slice(&buf[..n]);
                }
            }
        }
        (data, first)
    });
    let err_thread = std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = stderr.read_to_end(&mut data);
        data
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let st = child.wait();
        let _ = tx.send((st, start.elapsed()));
    });
    let (code, elapsed) = match rx.recv_timeout(timeout) {
        Ok((Ok(st), el)) => (
            Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
            el,
        ),
        Ok((Err(e), _)) => return Err(format!("wait: {e}")),
        Err(_) => {
            // SAFETY: kills the process group we created for this child.
            unsafe { kill(-pid, SIGKILL) };
            let el = start.elapsed();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            (None, el)
        }
    };
    // The group may hold left-overs (stubs) that keep the pipes open.
    // SAFETY: as above; the group is ours, and ESRCH when it is gone is fine.
    unsafe { kill(-pid, SIGKILL) };
    let cpu = children_cpu().saturating_sub(cpu0);
    let (out, first_output) = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    Ok(RunOut {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        code,
        first_output,
        elapsed,
        cpu,
    })
}

/// The roots the benchmark uses, with host paths for the native runs.
struct Roots {
    /// `/tests/{bench_ops,bench_true,hello}` and `/tmp`.
    main: PathBuf,
    /// `/tests/{hello,sleeper}` only: boot figures.
    tiny: PathBuf,
    /// Writable directory for the native `file_rw`.
    native_tmp: PathBuf,
}

fn copy_prog(p: &Paths, name: &str, root: &Path) -> Result<(), String> {
    let from = p.guest_bin_dir().join(name);
    let to = root.join("tests").join(name);
    fs::copy(&from, &to)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    set_mode(&to, 0o755)
}

fn make_roots(p: &Paths) -> Result<Roots, String> {
    let base = p.target.join("rootfs");
    let main = base.join("bench");
    let tiny = base.join("bench-tiny");
    let native_tmp = p.target.join("bench-tmp");
    for d in [&main, &tiny, &native_tmp] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| format!("remove {}: {e}", d.display()))?;
        }
    }
    for d in [
        main.join("tests"),
        main.join("tmp"),
        tiny.join("tests"),
        native_tmp.clone(),
    ] {
        fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    set_mode(&main.join("tmp"), 0o1777)?;
    for prog in ["bench_ops", "bench_true", "hello"] {
        copy_prog(p, prog, &main)?;
    }
    for prog in ["hello", "sleeper"] {
        copy_prog(p, prog, &tiny)?;
    }
    Ok(Roots {
        main,
        tiny,
        native_tmp,
    })
}

/// The command for `prog ARGS` inside `root` under `b` (natively: the host
/// copy in the root).
fn command(b: &Backend, root: &Path, prog: &str, args: &[String]) -> Command {
    match &b.kernel {
        None => {
            let mut c = Command::new(root.join("tests").join(prog));
            c.args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", "/");
            c
        }
        Some(k) => {
            let mut c = Command::new(k);
            c.arg("--root")
                .arg(root)
                .arg("--")
                .arg(format!("/tests/{prog}"))
                .args(args);
            c
        }
    }
}

/// Short reason for a run that went wrong.
fn failure(r: &RunOut) -> String {
    let last_err = r
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut why = match r.code {
        None => "timed out".to_string(),
        Some(c) if c > 128 => format!("killed by signal {}", c - 128),
        Some(c) => format!("exit {c}"),
    };
    if !last_err.is_empty() {
        let short: String = last_err.chars().take(100).collect();
        let _ = write!(why, ": {short}");
    }
    why
}

fn measure_guest(
    b: &Backend,
    roots: &Roots,
    op: &Op,
    iters: usize,
    path: PathArg,
    timeout: Duration,
) -> Sample {
    let mut args = vec![op.name.to_string(), iters.to_string()];
    let native = b.kernel.is_none();
    match path {
        PathArg::None => {}
        PathArg::File => args.push(if native {
            roots.main.join("tests/hello").display().to_string()
        } else {
            "/tests/hello".into()
        }),
        PathArg::Program => args.push(if native {
            roots.main.join("tests/bench_true").display().to_string()
        } else {
            "/tests/bench_true".into()
        }),
        PathArg::Dir => args.push(if native {
            roots.native_tmp.display().to_string()
        } else {
            "/tmp".into()
        }),
    }
    let r = run_timed(command(b, &roots.main, "bench_ops", &args), timeout)?;
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("bench {} ", op.name)));
    match line.map(|l| l.split_whitespace().collect::<Vec<_>>()) {
        Some(w) if w.len() >= 3 => match w[2].parse::<f64>() {
            Ok(v) if v.is_finite() && r.code == Some(0) => Ok(v),
            Ok(_) => Err(failure(&r)),
            Err(_) => Err(w[3..].join(" ")),
        },
        _ => Err(failure(&r)),
    }
}

/// Host-side boot figures and the idle CPU sample of one repetition.
struct HostSamples {
    first_output: Sample,
    to_exit: Sample,
    /// CPU time of the hello run, for the idle figure.
    hello_cpu: Option<Duration>,
}

fn measure_boot(b: &Backend, roots: &Roots, timeout: Duration) -> HostSamples {
    match run_timed(command(b, &roots.tiny, "hello", &[]), timeout) {
        Ok(r) if r.code == Some(0) && r.stdout.contains("Hello") => HostSamples {
            first_output: r
                .first_output
                .map(|d| d.as_nanos() as f64)
                .ok_or_else(|| "no output".to_string()),
            to_exit: Ok(r.elapsed.as_nanos() as f64),
            hello_cpu: Some(r.cpu),
        },
        Ok(r) => {
            let why = failure(&r);
            HostSamples {
                first_output: Err(why.clone()),
                to_exit: Err(why),
                hello_cpu: None,
            }
        }
        Err(e) => HostSamples {
            first_output: Err(e.clone()),
            to_exit: Err(e),
            hello_cpu: None,
        },
    }
}

fn measure_idle(
    b: &Backend,
    roots: &Roots,
    hello_cpu: Option<Duration>,
    timeout: Duration,
) -> Sample {
    let r = run_timed(
        command(b, &roots.tiny, "sleeper", &["1".into(), "0".into()]),
        timeout,
    )?;
    if r.code != Some(0) || !r.stdout.contains("sleeper: done") {
        return Err(failure(&r));
    }
    // Boot and shutdown cost what a `hello` run costs; the rest is the idle second.
    let base = hello_cpu.unwrap_or(Duration::ZERO);
    let idle = r.cpu.saturating_sub(base).as_secs_f64();
    Ok(idle / 1.0 * 100.0)
}

/// Runs `kernel --root tiny -- /tests/hello` once: is the backend usable?
fn probe(kernel: &Path, roots: &Roots) -> Result<(), String> {
    let mut c = Command::new(kernel);
    c.arg("--root")
        .arg(&roots.tiny)
        .arg("--")
        .arg("/tests/hello");
    let r = run_timed(c, Duration::from_secs(20))?;
    if r.code == Some(2) || r.stderr.contains("not implemented") {
        return Err(format!("not implemented ({})", failure(&r)));
    }
    if r.code != Some(0) || !r.stdout.contains("Hello") {
        return Err(format!("cannot run /tests/hello: {}", failure(&r)));
    }
    Ok(())
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

impl Results {
    fn ok(&self, op: &str, backend: &str) -> Vec<f64> {
        self.samples
            .get(op)
            .and_then(|m| m.get(backend))
            .map(|v| v.iter().filter_map(|s| s.as_ref().ok().copied()).collect())
            .unwrap_or_default()
    }
    fn median(&self, op: &str, backend: &str) -> Option<f64> {
        median(&self.ok(op, backend))
    }
    /// Why there is no figure (the last failure), if there is none.
    fn why_na(&self, op: &str, backend: &str) -> Option<String> {
        let v = self.samples.get(op)?.get(backend)?;
        if v.iter().any(|s| s.is_ok()) {
            return None;
        }
        v.iter().rev().find_map(|s| s.as_ref().err().cloned())
    }
    /// Slowdown against native: >1 means slower, whichever way the unit goes.
    fn ratio(&self, op: &Op, backend: &str) -> Option<f64> {
        if op.unit == "%" {
            return None;
        }
        let n = self.median(op.name, "native")?;
        let b = self.median(op.name, backend)?;
        if n <= 0.0 || b <= 0.0 {
            return None;
        }
        Some(match op.better {
            Better::Lower => b / n,
            Better::Higher => n / b,
        })
    }
    /// A DESIGN.md target as a slowdown against this run's native median.
    fn target_ratio(&self, op: &Op, backend: &str) -> Option<f64> {
        let (skas, tt) = op.target?;
        let t = if backend == "tt" { tt } else { skas };
        let n = self.median(op.name, "native")?;
        if n <= 0.0 || t <= 0.0 || op.unit == "%" {
            return None;
        }
        Some(match op.better {
            Better::Lower => t / n,
            Better::Higher => n / t,
        })
    }
    fn active(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().filter(|b| b.skipped.is_none())
    }
}

/// A raw value in a readable unit.
fn show(op: &Op, v: f64) -> String {
    match op.unit {
        "ns" if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        "ns" if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        "ns" => format!("{:.2} µs", v / 1e3),
        "MB/s" => format!("{:.2} GB/s", v / 1e3),
        "%" => format!("{v:.2} %"),
        u => format!("{v:.3} {u}"),
    }
}

fn show_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Whether a median meets a target, and a word on by how much.
fn verdict(op: &Op, v: f64, target: f64) -> String {
    let met = match op.better {
        Better::Lower => v <= target,
        Better::Higher => v >= target,
    };
    if met {
        "met".into()
    } else if op.unit == "%" {
        format!("missed by {:.2} points", v - target)
    } else {
        let f = match op.better {
            Better::Lower => v / target,
            Better::Higher => target / v,
        };
        format!("missed {}", show_ratio(f))
    }
}

/// The table: plain text for the terminal, or Markdown.
fn table(res: &Results, markdown: bool) -> String {
    let backends: Vec<&Backend> = res.active().collect();
    let mut head = vec!["operation".to_string()];
    for b in &backends {
        head.push(b.name.to_string());
        if b.kernel.is_some() {
            head.push(format!("{} ×native", b.name));
        }
    }
    for b in backends.iter().filter(|b| b.kernel.is_some()) {
        head.push(format!("{} target", b.name));
    }
    let mut rows = vec![head];
    for op in OPS {
        let mut row = vec![op.label.to_string()];
        for b in &backends {
            row.push(match res.median(op.name, b.name) {
                Some(v) => show(op, v),
                None => "n/a".into(),
            });
            if b.kernel.is_some() {
                row.push(
                    res.ratio(op, b.name)
                        .map(show_ratio)
                        .unwrap_or_else(|| "—".into()),
                );
            }
        }
        for b in backends.iter().filter(|b| b.kernel.is_some()) {
            let t = op.target.map(|(s, t)| if b.name == "tt" { t } else { s });
            row.push(match (t, res.median(op.name, b.name)) {
                (None, _) => "—".into(),
                (Some(t), None) => format!("{}{}: n/a", cmp_sign(op), show(op, t)),
                (Some(t), Some(v)) => {
                    format!("{}{}: {}", cmp_sign(op), show(op, t), verdict(op, v, t))
                }
            });
        }
        rows.push(row);
    }
    let ncol = rows[0].len();
    let width: Vec<usize> = (0..ncol)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        if markdown {
            let _ = writeln!(s, "| {} |", r.join(" | "));
            if i == 0 {
                let _ = writeln!(s, "|{}", " --- |".repeat(ncol));
            }
        } else {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    let pad = width[c] - v.chars().count();
                    if c == 0 {
                        format!("{v}{}", " ".repeat(pad))
                    } else {
                        format!("{}{v}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", cells.join("  "));
        }
    }
    let mut na = Vec::new();
    for op in OPS {
        for b in &backends {
            if let Some(why) = res.why_na(op.name, b.name) {
                na.push(format!("{} under {}: {why}", op.name, b.name));
            }
        }
    }
    if !na.is_empty() {
        let _ = writeln!(s, "{}n/a:", if markdown { "\n" } else { "" });
        for l in na {
            let _ = writeln!(s, "{}{l}", if markdown { "- " } else { "  " });
        }
    }
    s
}

fn cmp_sign(op: &Op) -> &'static str {
    match op.better {
        Better::Lower => "≤ ",
        Better::Higher => "≥ ",
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// The raw samples, medians and ratios as JSON (written by hand: xtask
/// keeps its dependencies to clap).
fn to_json(res: &Results) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"date\": {},", json_str(&res.date));
    let _ = writeln!(s, "  \"quick\": {},", res.quick);
    let _ = writeln!(s, "  \"reps\": {},", res.reps);
    let bs: Vec<String> = res
        .backends
        .iter()
        .map(|b| {
            format!(
                "{{\"name\": {}, \"skipped\": {}}}",
                json_str(b.name),
                b.skipped
                    .as_deref()
                    .map(json_str)
                    .unwrap_or_else(|| "null".into())
            )
        })
        .collect();
    let _ = writeln!(s, "  \"backends\": [{}],", bs.join(", "));
    let notes: Vec<String> = res.notes.iter().map(|n| json_str(n)).collect();
    let _ = writeln!(s, "  \"notes\": [{}],", notes.join(", "));
    s.push_str("  \"operations\": [\n");
    for (i, op) in OPS.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"name\": {}, \"label\": {}, \"unit\": {}, \"better\": {}, \"results\": {{",
            json_str(op.name),
            json_str(op.label),
            json_str(op.unit),
            json_str(if op.better == Better::Lower {
                "lower"
            } else {
                "higher"
            })
        );
        let per: Vec<String> = res
            .active()
            .map(|b| {
                let samples: Vec<String> = res
                    .samples
                    .get(op.name)
                    .and_then(|m| m.get(b.name))
                    .map(|v| {
                        v.iter()
                            .map(|x| match x {
                                Ok(v) => json_num(Some(*v)),
                                Err(_) => "null".into(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{}: {{\"median\": {}, \"ratio_to_native\": {}, \"na\": {}, \"samples\": [{}]}}",
                    json_str(b.name),
                    json_num(res.median(op.name, b.name)),
                    json_num(res.ratio(op, b.name)),
                    res.why_na(op.name, b.name).as_deref().map(json_str).unwrap_or_else(|| "null".into()),
                    samples.join(", ")
                )
            })
            .collect();
        let _ = write!(s, "{}}}}}", per.join(", "));
        s.push_str(if i + 1 < OPS.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]\n}\n");
    s
}

/// Bar chart of the ratio to native, log scale, one group per operation.
fn svg_chart(res: &Results) -> String {
    let kernels: Vec<&Backend> = res.active().filter(|b| b.kernel.is_some()).collect();
    let ops: Vec<&Op> = OPS.iter().filter(|o| o.unit != "%").collect();
    let colors = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a"];
    let mut lo: f64 = 1.0;
    let mut hi: f64 = 10.0;
    for op in &ops {
        for b in &kernels {
            for r in [res.ratio(op, b.name), res.target_ratio(op, b.name)]
                .into_iter()
                .flatten()
            {
                lo = lo.min(r);
                hi = hi.max(r);
            }
        }
    }
    let (dlo, dhi) = (lo.log10().floor(), hi.log10().ceil());
    let (left, right, top, bar, gap) = (250.0, 150.0, 60.0, 16.0, 14.0);
    let plot_w = 560.0;
    let group = bar * kernels.len().max(1) as f64 + gap;
    let height = top + group * ops.len() as f64 + 70.0;
    let width = left + plot_w + right;
    let x = |r: f64| left + (r.log10() - dlo) / (dhi - dlo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">Slowdown against native (log scale; shorter is better)</text>"#,
        width / 2.0
    );
    // Grid: one line per power of ten.
    let mut d = dlo;
    while d <= dhi + 1e-9 {
        let gx = x(10f64.powf(d));
        let label = if d >= 0.0 {
            format!("{}×", 10f64.powf(d))
        } else {
            format!("{:.1}×", 10f64.powf(d))
        };
        let stroke = if d == 0.0 { "#000" } else { "#ccc" };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="dimgray">{label}</text>"#,
            height - 60.0,
            height - 44.0
        );
        d += 1.0;
    }
    // Value labels go last, over the target ticks.
    let mut labels = String::new();
    for (i, op) in ops.iter().enumerate() {
        let gy = top + group * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            gy + group / 2.0,
            xml_escape(op.label)
        );
        for (j, b) in kernels.iter().enumerate() {
            let y = gy + bar * j as f64 + gap / 2.0;
            match res.ratio(op, b.name) {
                Some(r) => {
                    let (x0, x1) = (x(1.0), x(r));
                    let (bx, bw) = if x1 >= x0 {
                        (x0, x1 - x0)
                    } else {
                        (x1, x0 - x1)
                    };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                        bw.max(1.0),
                        bar - 2.0,
                        colors[j % colors.len()],
                        xml_escape(op.label),
                        b.name,
                        show_ratio(r),
                    );
                    let value = res
                        .median(op.name, b.name)
                        .map(|v| show(op, v))
                        .unwrap_or_default();
                    let _ = writeln!(
                        labels,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" stroke="white" stroke-width="3" paint-order="stroke">{} ({value})</text>"#,
                        x0.max(x1) + 4.0,
                        y + bar - 5.0,
                        show_ratio(r),
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="gray">{}: n/a</text>"#,
                        x(1.0) + 4.0,
                        y + bar - 5.0,
                        b.name
                    );
                }
            }
        }
    }
    // DESIGN.md targets: a black tick across each backend's bar.
    for (i, op) in ops.iter().enumerate() {
        let gy = top + group * i as f64;
        for (j, b) in kernels.iter().enumerate() {
            if let Some(t) = res.target_ratio(op, b.name) {
                let y = gy + bar * j as f64 + gap / 2.0;
                let tx = x(t);
                let _ = writeln!(
                    s,
                    r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="2"><title>{} target: {}</title></line>"#,
                    y - 1.0,
                    y + bar - 1.0,
                    b.name,
                    show_ratio(t)
                );
            }
        }
    }
    s.push_str(&labels);
    // Legend.
    for (j, b) in kernels.iter().enumerate() {
        let lx = left + 120.0 * j as f64;
        let ly = height - 24.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            colors[j % colors.len()],
            lx + 16.0,
            b.name
        );
    }
    let lx = left + 120.0 * kernels.len() as f64;
    let ly = height - 24.0;
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{ly:.1}" stroke="black" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">target (DESIGN.md), same scale</text>"#,
        lx + 6.0,
        ly - 11.0,
        lx + 6.0,
        lx + 16.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn report(res: &Results, dir: &Path, command: &str) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let svg = dir.join("ratio.svg");
    fs::write(&svg, svg_chart(res)).map_err(|e| format!("write {}: {e}", svg.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# rustuml benchmark report\n");
    let _ = writeln!(
        md,
        "`{command}`, {} ({} repetitions per backend, interleaved; medians).\n",
        res.date, res.reps
    );
    let _ = writeln!(md, "![slowdown against native, log scale](ratio.svg)\n");
    md.push_str(&table(res, true));
    if !res.notes.is_empty() {
        md.push_str("\nNotes:\n");
        for n in &res.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(
        md,
        "\nTimes are per operation; bandwidths count the bytes moved (file: written + read). \
         \"×native\" is the slowdown against the native run of the same binary in the same run \
         (for bandwidths: native / backend). Idle CPU is the host CPU of a guest sleeping 1 s, \
         minus that of booting and running `hello`, as a percentage of one CPU."
    );
    let path = dir.join("README.md");
    fs::write(&path, md).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// UML and gVisor, when installed: only detected for now.
fn peers(notes: &mut Vec<String>) {
    for (bin, what) in [
        ("linux", "User-mode Linux (Debian's user-mode-linux)"),
        ("runsc", "gVisor (runsc)"),
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false);
        notes.push(if found {
            format!("{what} is installed, but running the peers is not implemented yet: skipped")
        } else {
            format!("{what} is not installed: skipped")
        });
    }
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `cargo xtask bench`.
pub fn bench(p: &Paths, opt: &Options) -> Result<(), String> {
    eprintln!("[1/4] building kernel-skas, kernel-tt (release) and the guest programs");
    let mut backends = vec![Backend {
        name: "native",
        kernel: None,
        skipped: None,
    }];
    for hal in [Hal::Skas, Hal::Tt] {
        let name = if hal == Hal::Skas { "skas" } else { "tt" };
        let skipped = build_kernel(p, hal)
            .err()
            .map(|e| format!("build failed: {e}"));
        backends.push(Backend {
            name,
            kernel: Some(p.kernel(hal)),
            skipped,
        });
    }
    build_guests(p)?;
    eprintln!("[2/4] assembling the benchmark roots");
    let roots = make_roots(p)?;
    eprintln!("[3/4] probing the backends");
    let mut notes = Vec::new();
    for b in backends.iter_mut() {
        if let (Some(k), None) = (&b.kernel, &b.skipped) {
            if let Err(e) = probe(k, &roots) {
                b.skipped = Some(e);
            }
        }
        if let Some(why) = &b.skipped {
            let n = format!("{} skipped: {why}", b.name);
            eprintln!("      {n}");
            notes.push(n);
        }
    }
    if opt.peers {
        peers(&mut notes);
    }
    let reps = opt.reps.unwrap_or(if opt.quick { 3 } else { 7 }).max(1);
    let timeout = Duration::from_secs(if opt.quick { 20 } else { 60 });
    let mut res = Results {
        backends: backends.clone(),
        samples: BTreeMap::new(),
        notes,
        quick: opt.quick,
        reps,
        date: now_utc(),
    };
    let active: Vec<Backend> = backends
        .into_iter()
        .filter(|b| b.skipped.is_none())
        .collect();
    eprintln!(
        "[4/4] measuring: {} operations × {} backends × {reps} repetitions",
        OPS.len(),
        active.len()
    );
    let started = Instant::now();
    for rep in 0..reps {
        let mut hello_cpu: BTreeMap<&str, Option<Duration>> = BTreeMap::new();
        for op in OPS {
            for b in &active {
                let sample: Sample = match op.how {
                    How::Guest { full, quick, path } => measure_guest(
                        b,
                        &roots,
                        op,
                        if opt.quick { quick } else { full },
                        path,
                        timeout,
                    ),
                    How::BootFirstOutput => {
                        let h = measure_boot(b, &roots, timeout);
                        hello_cpu.insert(b.name, h.hello_cpu);
                        res.samples
                            .entry("boot_to_exit")
                            .or_default()
                            .entry(b.name)
                            .or_default()
                            .push(h.to_exit);
                        h.first_output
                    }
                    // Taken with the first-output run.
                    How::BootToExit => continue,
                    How::IdleCpu => {
                        measure_idle(b, &roots, hello_cpu.get(b.name).copied().flatten(), timeout)
                    }
                };
                res.samples
                    .entry(op.name)
                    .or_default()
                    .entry(b.name)
                    .or_default()
                    .push(sample);
            }
        }
        eprintln!(
            "      repetition {}/{reps} done ({:.1} s)",
            rep + 1,
            started.elapsed().as_secs_f64()
        );
    }
    println!("\n{}", table(&res, false));
    for n in &res.notes {
        println!("note: {n}");
    }
    if let Some(f) = &opt.json {
        let text = to_json(&res);
        // Our own output must pass the check CI applies to it.
        validate_json(&text).map_err(|e| format!("the JSON is malformed: {e}"))?;
        fs::write(f, text).map_err(|e| format!("write {}: {e}", f.display()))?;
        eprintln!("json: {}", f.display());
    }
    if let Some(dir) = &opt.report {
        let mut cmd = String::from("cargo xtask bench");
        if opt.quick {
            cmd.push_str(" --quick");
        }
        if opt.peers {
            cmd.push_str(" --peers");
        }
        report(&res, dir, &cmd)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Checking a JSON file (what CI does with `bench --quick --json`).

/// A parsed JSON value (just enough to check our own output).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", c as char, self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(v));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value()? else {
                        return Err(format!("key expected at {}", self.i));
                    };
                    self.eat(b':')?;
                    v.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(v));
                        }
                        _ => return Err(format!("`,` or `}}` expected at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("`,` or `]` expected at {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("unterminated string".into()),
                        Some(b'"') => {
                            self.i += 1;
                            return String::from_utf8(out)
                                .map(Json::Str)
                                .map_err(|e| e.to_string());
                        }
                        Some(b'\\') => {
                            let c = *self.s.get(self.i + 1).ok_or("bad escape")?;
                            self.i += 2;
                            match c {
                                b'u' => {
                                    let h = std::str::from_utf8(
                                        self.s.get(self.i..self.i + 4).ok_or("bad \\u")?,
                                    )
                                    .map_err(|e| e.to_string())?;
                                    let n =
                                        u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                                    let ch = char::from_u32(n).unwrap_or('?');
                                    out.extend_from_slice(ch.to_string().as_bytes());
                                    self.i += 4;
                                }
                                b'n' => out.push(b'\n'),
                                b't' => out.push(b'\t'),
                                c => out.push(c),
                            }
                        }
                        Some(&c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let st = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[st..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at byte {st}"))
            }
            None => Err("unexpected end".into()),
        }
    }
}

/// Parses JSON text.
pub fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing data at byte {}", p.i));
    }
    Ok(v)
}

/// Checks a `--json` file: every operation present, and for every backend
/// that was not skipped a median that is a number or null with a reason.
pub fn validate_json(text: &str) -> Result<(), String> {
    let j = parse_json(text)?;
    let Some(Json::Arr(backends)) = j.get("backends") else {
        return Err("no backends".into());
    };
    let active: Vec<String> = backends
        .iter()
        .filter(|b| b.get("skipped") == Some(&Json::Null))
        .filter_map(|b| match b.get("name") {
            Some(Json::Str(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    if !active.iter().any(|b| b == "native") {
        return Err("native backend missing".into());
    }
    let Some(Json::Arr(ops)) = j.get("operations") else {
        return Err("no operations".into());
    };
    for name in op_names() {
        let op = ops
            .iter()
            .find(|o| o.get("name") == Some(&Json::Str(name.into())))
            .ok_or_else(|| format!("operation {name} missing"))?;
        let results = op
            .get("results")
            .ok_or_else(|| format!("{name}: no results"))?;
        for b in &active {
            let r = results
                .get(b)
                .ok_or_else(|| format!("{name}: no entry for {b}"))?;
            match (r.get("median"), r.get("na")) {
                (Some(Json::Num(v)), Some(Json::Null)) if v.is_finite() && *v >= 0.0 => {}
                (Some(Json::Null), Some(Json::Str(_))) => {}
                other => {
                    return Err(format!(
                        "{name} under {b}: neither a number nor n/a with a reason: {other:?}"
                    ))
                }
            }
            if !matches!(r.get("samples"), Some(Json::Arr(s)) if !s.is_empty()) {
                return Err(format!("{name} under {b}: no samples"));
            }
        }
        {
            // Native must always have a figure: the same binary on the host.
            let n = results.get("native").and_then(|r| r.get("median"));
            if !matches!(n, Some(Json::Num(_))) {
                return Err(format!("{name}: no native figure"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Results {
        let backends = vec![
            Backend {
                name: "native",
                kernel: None,
                skipped: None,
            },
            Backend {
                name: "skas",
                kernel: Some("k".into()),
                skipped: None,
            },
            Backend {
                name: "tt",
                kernel: Some("t".into()),
                skipped: Some("not implemented".into()),
            },
        ];
        let mut samples: BTreeMap<&'static str, BTreeMap<&'static str, Vec<Sample>>> =
            BTreeMap::new();
        for (i, op) in OPS.iter().enumerate() {
            let m = samples.entry(op.name).or_default();
            m.insert("native", vec![Ok(100.0 + i as f64), Ok(90.0), Ok(110.0)]);
            m.insert(
                "skas",
                if op.name == "pipe_rtt" {
                    vec![Err("exit 1: \"quoted\"".into()), Err("timed out".into())]
                } else {
                    vec![Ok(1000.0), Ok(3000.0), Ok(2000.0)]
                },
            );
        }
        Results {
            backends,
            samples,
            notes: vec!["tt skipped".into()],
            quick: true,
            reps: 3,
            date: "today".into(),
        }
    }

    #[test]
    fn json_of_fake_results_validates() {
        let res = fake();
        let j = to_json(&res);
        validate_json(&j).unwrap();
        let parsed = parse_json(&j).unwrap();
        let ops = match parsed.get("operations") {
            Some(Json::Arr(o)) => o.clone(),
            _ => panic!(),
        };
        assert_eq!(ops.len(), OPS.len());
        assert!(j.contains("\"na\": \"timed out\""));
    }

    #[test]
    fn missing_operation_is_rejected() {
        let mut res = fake();
        res.samples.remove("stat");
        assert!(validate_json(&to_json(&res)).is_err());
    }

    #[test]
    fn ratios_and_table() {
        let res = fake();
        let nul = &OPS[0];
        assert_eq!(res.median("null_syscall", "skas"), Some(2000.0));
        assert_eq!(res.ratio(nul, "skas"), Some(20.0));
        let bw = OPS.iter().find(|o| o.name == "pipe_bw").unwrap();
        // Bandwidth: native / backend.
        let r = res.ratio(bw, "skas").unwrap();
        assert!((r - 109.0 / 2000.0).abs() < 1e-9, "{r}");
        let t = table(&res, false);
        assert!(t.contains("n/a"));
        assert!(!t.contains("tt ×native"));
        let md = table(&res, true);
        assert!(md.starts_with("| operation |"));
    }

    /// Checks that tags nest properly (enough to call our own SVG well-formed).
    pub(super) fn balanced(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find('<') {
            let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or("close without open")?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &rest[end + 1..];
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed: {stack:?}"))
        }
    }

    #[test]
    fn svg_is_well_formed() {
        let svg = svg_chart(&fake());
        assert!(svg.starts_with("<svg"));
        balanced(&svg).unwrap();
        assert!(svg.contains("20.0×"));
    }

    /// CI: `cargo xtask test` runs `bench --quick --json` first and points
    /// this test at the file.
    #[test]
    fn quick_bench_json_from_xtask_test() {
        match std::env::var_os("RUSTUML_BENCH_JSON") {
            Some(f) => {
                let text = fs::read_to_string(&f).unwrap();
                validate_json(&text).unwrap();
            }
            None => eprintln!(
                "RUSTUML_BENCH_JSON not set (run through `cargo xtask test`): nothing to check"
            ),
        }
    }
}
