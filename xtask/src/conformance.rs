//! `cargo xtask conformance`: a test suite nobody here wrote — CPython's own
//! regression tests (`python3 -m test MODULE`, the host's interpreter and
//! its `test` package) — run natively and inside the guest under each
//! backend (`kernel-* do`: the guest sees the host's tree read-only under a
//! writable overlay), one module at a time, with a pass table per module.
//!
//! A module the host itself does not pass is marked as such: the table
//! compares the guest with the same host, not with an ideal Linux.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{build_kernel, Hal, Paths};

/// Modules that exercise the kernel (files, locks, memory, signals,
/// processes, sockets, terminals) and finish in seconds natively.
/// `test_socket` is not in the list: natively on a host without network
/// (a sandbox) it waits for minutes and then fails.
pub const FULL: &[&str] = &[
    "test_fcntl",
    "test_mmap",
    "test_signal",
    "test_os",
    "test_posix",
    "test_stat",
    "test_glob",
    "test_shutil",
    "test_tempfile",
    "test_fileio",
    "test_file",
    "test_select",
    "test_poll",
    "test_epoll",
    "test_selectors",
    "test_subprocess",
    "test_threading",
    "test_pty",
    "test_resource",
    "test_time",
    "test_mailbox",
    "test_socketserver",
    "test_asyncio.test_events",
];

/// The short run (`--quick`, and the smoke test in the suite).
pub const QUICK: &[&str] = &["test_fcntl", "test_mmap", "test_stat", "test_glob"];

/// What one run of one module gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Pass(String),
    /// Ran, with failures or errors.
    Fail(String),
    /// Nothing ran (skipped as a whole).
    Skip(String),
    /// Killed after the time limit.
    Timeout,
    /// Could not be started.
    Error(String),
}

impl Outcome {
    fn cell(&self) -> String {
        match self {
            Outcome::Pass(d) => format!("pass {d}"),
            Outcome::Fail(d) => format!("FAIL {d}"),
            Outcome::Skip(d) => format!("skip {d}"),
            Outcome::Timeout => "TIMEOUT".into(),
            Outcome::Error(e) => format!("ERROR {e}"),
        }
    }
}

/// The `Total tests: run=N failures=F skipped=S` summary, shortened.
fn summary(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Total tests: "))
        .map(|s| format!("({s})"))
        .unwrap_or_default()
}

fn classify(status: Option<i32>, out: &str) -> Outcome {
    let s = summary(out);
    if out.contains("Result: NO TESTS RAN") || (status == Some(0) && out.contains("skipped") && out.contains("run=0")) {
        return Outcome::Skip(s);
    }
    match status {
        Some(0) => Outcome::Pass(s),
        Some(_) => Outcome::Fail(s),
        None => Outcome::Error("killed".into()),
    }
}

/// Run `cmd`, killing it after `limit`; returns (exit code, stdout+stderr).
fn run_limited(mut cmd: Command, limit: Duration, log: &Path) -> Result<(Option<i32>, String), String> {
    let file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd.stdin(Stdio::null()).stdout(file).stderr(err).spawn().map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            let out = fs::read_to_string(log).unwrap_or_default();
            return Ok((st.code(), out));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timeout".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Options of `cargo xtask conformance`.
pub struct Options {
    /// Only the short list.
    pub quick: bool,
    /// Only modules whose name contains this.
    pub only: Option<String>,
    /// Where to write the Markdown table.
    pub out: Option<PathBuf>,
    /// Use the kernels of the last build.
    pub no_build: bool,
    /// Time limit per module and run, seconds.
    pub limit: u64,
}

/// Run the suite and print the table. Fails (exit 1) when a module the host
/// passes does not pass under a backend.
pub fn conformance(p: &Paths, o: &Options) -> Result<(), String> {
    if Command::new("python3").args(["-c", "import test.libregrtest"]).status().map(|s| !s.success()).unwrap_or(true) {
        return Err("the host's python3 has no `test` package (Debian: apt-get install libpython3-testsuite)".into());
    }
    if !o.no_build {
        for hal in [Hal::Skas, Hal::Tt] {
            eprintln!("[build] {}", hal.binary());
            build_kernel(p, hal)?;
        }
    }
    let list: Vec<&str> = if o.quick { QUICK } else { FULL }
        .iter()
        .copied()
        .filter(|m| o.only.as_deref().is_none_or(|x| m.contains(x)))
        .collect();
    let logs = p.target.join("conformance");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let limit = Duration::from_secs(o.limit);
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    for m in &list {
        let mut cells = Vec::new();
        for (name, kernel) in [("native", None), ("skas", Some(Hal::Skas)), ("tt", Some(Hal::Tt))] {
            let work = logs.join(format!("work-{m}-{name}"));
            let _ = fs::remove_dir_all(&work);
            fs::create_dir_all(&work).map_err(|e| e.to_string())?;
            let mut cmd = match kernel {
                None => Command::new("python3"),
                Some(h) => {
                    let mut c = Command::new(p.kernel(h));
                    c.args(["do", "--mem", "1G", "--", "python3"]);
                    c
                }
            };
            cmd.args(["-m", "test", m]).current_dir(&work);
            let log = logs.join(format!("{m}.{name}.log"));
            let t = Instant::now();
            let outcome = match run_limited(cmd, limit, &log) {
                Ok((code, out)) => classify(code, &out),
                Err(e) if e == "timeout" => Outcome::Timeout,
                Err(e) => Outcome::Error(e),
            };
            let _ = fs::remove_dir_all(&work);
            eprintln!("{m:<34} {name:<6} {:<40} {:.1} s", outcome.cell(), t.elapsed().as_secs_f64());
            cells.push(outcome);
        }
        if matches!(cells[0], Outcome::Pass(_)) {
            for (i, b) in ["skas", "tt"].iter().enumerate() {
                if !matches!(cells[i + 1], Outcome::Pass(_)) {
                    regressions.push(format!("{m} ({b})"));
                }
            }
        }
        rows.push((m.to_string(), cells));
    }
    let mut md = String::new();
    let _ = writeln!(md, "| CPython test module | native | skas | tt |\n| --- | --- | --- | --- |");
    for (m, c) in &rows {
        let _ = writeln!(md, "| {m} | {} | {} | {} |", c[0].cell(), c[1].cell(), c[2].cell());
    }
    let passed = |i: usize| rows.iter().filter(|(_, c)| matches!(c[i], Outcome::Pass(_))).count();
    let _ = writeln!(md, "\nPassed: native {}/{n}, skas {}/{n}, tt {}/{n}. Logs: target/conformance/MODULE.BACKEND.log.", passed(0), passed(1), passed(2), n = rows.len());
    println!("{md}");
    let out = o.out.clone().unwrap_or_else(|| logs.join("conformance.md"));
    fs::write(&out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("table written to {}", out.display());
    if regressions.is_empty() {
        Ok(())
    } else {
        Err(format!("passes natively but not in the guest: {}", regressions.join(", ")))
    }
}
