//! `cargo xtask`: the project's build-and-run tool (an ordinary binary crate,
//! run through the `xtask` alias in `.cargo/config.toml`).
//!
//! * `cargo xtask build [--hal skas|tt]` builds the kernel binary (release),
//!   the static guest programs of `userland-tests`, and the default root
//!   directory `target/rootfs/default` with `/tests/<program>` for each.
//! * `cargo xtask run [--hal skas|tt] [--mem SIZE] [--root DIR]
//!   [--trace-syscalls] [--uname-release R] [--hostname H] [--net SPEC]...
//!   [--] [INIT ARGS...]`
//!   builds, then replaces itself with the kernel, so the exit status is the
//!   kernel's. With no INIT, init is the guest's `/bin/sh` (the host's own
//!   shell, copied into the default root by `rootfs.rs`): interactive when
//!   stdin is a terminal, and `exit` powers the guest off.
//! * `cargo xtask lab FILE.toml [--attach NAME] [--logs DIR] [--timeout SECS]
//!   [--no-build]` runs a virtual network lab: switches and one guest per
//!   machine (see `lab.rs` and `labs/`).
//! * `cargo xtask rootfs` builds the guest programs and assembles the default
//!   root only.
//! * `cargo xtask isolation [--out DIR] [--no-build]` runs the isolation attacks under
//!   both backends and prints the matrix (see `isolation.rs`).
//! * `cargo xtask fuzz [--minutes N] [--batch CASES] [--only NAME]` runs the
//!   model-based properties long (see `fuzz.rs`).
//! * `cargo xtask test [-- CARGO TEST ARGS]` is what CI runs: builds
//!   everything (both kernels, guests, root directories, the C programs that
//!   need gcc and musl-gcc), then `cargo test --workspace` with the variables
//!   that tell the integration tests where everything is.
//!
//! Everything goes under the cargo target directory (`$CARGO_TARGET_DIR`, or
//! `target/` in the workspace): guest programs are built in `<target>/guest`
//! because their RUSTFLAGS differ, so the two builds don't invalidate each
//! other.

mod bench;
mod fuzz;
mod isolation;
mod lab;
mod rootfs;

use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The guest programs' target triple (static glibc, static-PIE).
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test the rustuml kernel",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which backend (and so which kernel binary) to use.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Hal {
    /// Separate kernel address space: one host stub process per guest address space.
    Skas,
    /// Traced thread: guests share the kernel's host address space; unprotected, for comparison.
    Tt,
}

impl Hal {
    fn package(self) -> &'static str {
        match self {
            Hal::Skas => "hal-uml-x86_64",
            Hal::Tt => "hal-uml-tt",
        }
    }
    fn binary(self) -> &'static str {
        match self {
            Hal::Skas => "kernel-skas",
            Hal::Tt => "kernel-tt",
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel (release), the guest programs and the default root directory.
    Build {
        /// Backend whose kernel binary to build.
        #[arg(long, value_enum, default_value = "skas")]
        hal: Hal,
    },
    /// Build the guest programs and assemble the default root directory only (no kernel).
    Rootfs,
    /// Build, then boot the kernel with INIT (default /bin/sh) as the first program.
    Run {
        /// Backend to boot.
        #[arg(long, value_enum, default_value = "skas")]
        hal: Hal,
        /// Guest memory size, e.g. 64M, 1G (K/M/G suffixes; the kernel's default is 256M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        mem: Option<String>,
        /// Host directory to use as the guest's root (default: target/rootfs/default).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print every system call (strace style) on stderr.
        #[arg(long)]
        trace_syscalls: bool,
        /// The release uname(2) reports in the guest (the kernel's default: 6.1.0-rustuml,
        /// whatever the host runs).
        #[arg(long, value_name = "R")]
        uname_release: Option<String>,
        /// The guest's host name (the kernel's default: rustuml).
        #[arg(long, value_name = "H")]
        hostname: Option<String>,
        /// Attach a network interface (repeatable; eth0, eth1, ... in order):
        /// `user[,hostfwd=tcp:127.0.0.1:8080-:80][,restrict=off]`,
        /// `switch,path=SOCK[,mac=M][,ip=A.B.C.D/N][,gw=A.B.C.D]` or
        /// `tap,ifname=NAME[,ip=..][,gw=..]`. Passed to the kernel as is.
        #[arg(long, value_name = "SPEC")]
        net: Vec<String>,
        /// Mount host directory HOSTDIR at GUESTDIR (read-only unless `:rw`;
        /// repeatable). Passed to the kernel as is.
        #[arg(long, value_name = "HOSTDIR:GUESTDIR[:rw]")]
        hostfs: Vec<String>,
        /// The init program (a path inside the guest's root) and its arguments.
        #[arg(
            value_name = "INIT ARGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        init: Vec<OsString>,
    },
    /// Start the virtual network lab described in FILE.toml: its switches and one guest per
    /// machine; wait for the machines' scripts, stop everything and print a summary.
    Lab {
        /// The lab file (see labs/ for examples).
        #[arg(value_name = "FILE.toml")]
        file: PathBuf,
        /// Give this machine's console the terminal (the others log to files).
        #[arg(long, value_name = "NAME")]
        attach: Option<String>,
        /// Directory for the machines' console logs, NAME.log (default: target/lab).
        #[arg(long, value_name = "DIR")]
        logs: Option<PathBuf>,
        /// Stop the lab after this many seconds (overrides the file; 0: no limit).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Use the kernel and root directory of the last build as they are.
        #[arg(long)]
        no_build: bool,
    },
    /// Run the benchmark programs natively, under skas and under tt (interleaved) and print
    /// the medians and ratios to native.
    Bench {
        /// Fewer iterations and repetitions (under a minute): a smoke check.
        #[arg(long)]
        quick: bool,
        /// Repetitions per operation and backend (default 7; 3 with --quick).
        #[arg(long, value_name = "N")]
        reps: Option<usize>,
        /// Write the raw samples, medians and ratios as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write a Markdown report with an SVG chart into DIR.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Also compare with User-mode Linux and gVisor when installed (skipped when not).
        #[arg(long)]
        peers: bool,
        /// Measure only the operations whose name contains TEXT (e.g. `tcp`).
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
    },
    /// Run the isolation attacks under skas and tt and print the matrix (also written as
    /// Markdown and JSON).
    Isolation {
        /// Directory for isolation.md and isolation.json (default: target/isolation).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Use the kernels and root directory of the last build as they are.
        #[arg(long)]
        no_build: bool,
    },
    /// Run kernel-core's model-based properties (tests/prop_*.rs) for a while with many cases,
    /// printing cases run and the rate; a failure is shrunk and saved under
    /// kernel-core/proptest-regressions/.
    Fuzz {
        /// How long to run.
        #[arg(long, value_name = "N", default_value_t = 5.0)]
        minutes: f64,
        /// Cases per batch (one `cargo test` run of one property).
        #[arg(long, value_name = "CASES", default_value_t = 2000)]
        batch: u32,
        /// Only the properties whose test or name contains this.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
    },
    /// What CI runs: build everything, then `cargo test --workspace` with the test environment.
    Test {
        /// Extra arguments for `cargo test` (e.g. `-- --test-threads 1`).
        #[arg(last = true)]
        cargo_test_args: Vec<OsString>,
    },
}

/// Checks a `--mem` value early so that a typo fails before the build.
fn parse_size(s: &str) -> Result<String, String> {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
    let suffixes = s.len() - digits.len();
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && suffixes <= 1 => Ok(s.to_string()),
        _ => Err(format!(
            "`{s}` is not a size: use a number with an optional K, M or G suffix, e.g. 64M"
        )),
    }
}

/// Where things are.
struct Paths {
    workspace: PathBuf,
    target: PathBuf,
}

impl Paths {
    fn new() -> Result<Self, String> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask is not inside a workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) if !t.is_empty() => std::path::absolute(PathBuf::from(t))
                .map_err(|e| format!("bad CARGO_TARGET_DIR: {e}"))?,
            _ => workspace.join("target"),
        };
        Ok(Paths { workspace, target })
    }
    fn kernel(&self, hal: Hal) -> PathBuf {
        self.target.join("release").join(hal.binary())
    }
    fn guest_target_dir(&self) -> PathBuf {
        self.target.join("guest")
    }
    fn guest_bin_dir(&self) -> PathBuf {
        self.guest_target_dir().join(GUEST_TARGET).join("release")
    }
    fn default_root(&self) -> PathBuf {
        self.target.join("rootfs").join("default")
    }
    fn c_root(&self) -> PathBuf {
        self.target.join("rootfs").join("c-hello")
    }
    /// Names of the guest programs: one per `userland-tests/src/bin/*.rs`.
    fn guest_programs(&self) -> Result<Vec<String>, String> {
        let dir = self.workspace.join("userland-tests/src/bin");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(String::from))?
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Prints one progress line per step: "[2/5] building guest programs".
struct Progress {
    step: usize,
    total: usize,
}

impl Progress {
    fn next(&mut self, what: &str) {
        self.step += 1;
        eprintln!("[{}/{}] {what}", self.step, self.total);
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Flags meant for the xtask build itself must not leak into ours.
    c.env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// Runs a command, turning a failure into an error message.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn build_kernel(p: &Paths, hal: Hal) -> Result<(), String> {
    run(
        cargo()
            .current_dir(&p.workspace)
            .env("CARGO_TARGET_DIR", &p.target)
            .args([
                "build",
                "--release",
                "-p",
                hal.package(),
                "--bin",
                hal.binary(),
            ]),
        &format!("building {}", hal.binary()),
    )
}

fn build_guests(p: &Paths) -> Result<(), String> {
    // --target keeps RUSTFLAGS off build scripts and proc macros.
    run(
        cargo()
            .current_dir(&p.workspace)
            .env("CARGO_TARGET_DIR", p.guest_target_dir())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            // No debug info: it would make every program ~5 MB, and the root
            // directory is packed into memory at each boot. Symbols stay.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .args([
                "build",
                "--release",
                "--target",
                GUEST_TARGET,
                "-p",
                "userland-tests",
                "--bins",
            ]),
        "building guest programs",
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))?;
    set_mode(path, mode)
}

/// Assembles `target/rootfs/default`: `/tests/<program>` for every guest
/// program, and `/tests/data/` with files that must fail to execute.
fn assemble_default_root(p: &Paths) -> Result<(), String> {
    let root = p.default_root();
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| format!("remove {}: {e}", root.display()))?;
    }
    let tests = root.join("tests");
    let data = tests.join("data");
    fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    for name in p.guest_programs()? {
        let from = p.guest_bin_dir().join(&name);
        let to = tests.join(&name);
        fs::copy(&from, &to)
            .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
        set_mode(&to, 0o755)?;
    }
    // An ELF file cut inside its header: Linux refuses it with ENOEXEC (cut
    // after the header it would be EIO instead).
    let hello = fs::read(tests.join("hello")).map_err(|e| format!("read hello: {e}"))?;
    write_file(
        &data.join("truncated_elf"),
        &hello[..48.min(hello.len())],
        0o755,
    )?;
    // Executable, but neither ELF nor "#!": ENOEXEC.
    write_file(
        &data.join("garbage"),
        "this is not a program\n".repeat(20).as_bytes(),
        0o755,
    )?;
    ensure_busybox();
    let s = rootfs::add_host_userland(&root)?;
    eprintln!(
        "      root: {} ({} host programs, {} libraries, {} files, {} MiB{})",
        root.display(),
        s.programs,
        s.libraries,
        s.files,
        s.bytes >> 20,
        if s.missing.is_empty() { String::new() } else { format!("; not on this host: {}", s.missing.join(" ")) }
    );
    Ok(())
}

/// Builds the C hello program statically with gcc (glibc) and musl-gcc into
/// `target/rootfs/c-hello`. musl-gcc comes from Debian's `musl-tools`, which
/// is installed here when missing. A failure is recorded in
/// `<c-root>/<compiler>.error` for the integration test to report, rather
/// than stopping the whole test run.
fn build_c_programs(p: &Paths) -> Result<(), String> {
    let root = p.c_root();
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| format!("remove {}: {e}", root.display()))?;
    }
    fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let src = p.workspace.join("userland-tests/c/hello.c");
    if !have("musl-gcc") {
        eprintln!("      musl-gcc is missing: installing Debian's musl-tools");
        if let Err(e) = install_musl_tools() {
            eprintln!("      {e}");
        }
    }
    for (compiler, out) in [("gcc", "hello-glibc"), ("musl-gcc", "hello-musl")] {
        let result = Command::new(compiler)
            .args(["-static", "-O2", "-o"])
            .arg(root.join(out))
            .arg(&src)
            .status();
        let error = match result {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("{compiler} -static failed ({s})")),
            Err(e) => Some(format!("cannot run {compiler}: {e}")),
        };
        if let Some(error) = error {
            eprintln!("      warning: {error}; the test that needs {out} will fail");
            let msg = format!(
                "{error} (install it with: apt-get install -y {})\n",
                if compiler == "gcc" {
                    "gcc libc6-dev"
                } else {
                    "musl-tools"
                }
            );
            write_file(&root.join(format!("{out}.error")), msg.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

fn install_musl_tools() -> Result<(), String> {
    apt_install("musl-tools")
}

/// The guests' network tools (httpd, wget, nc, ip, ifconfig...) come from
/// the host's busybox: install Debian's when the host has none. A failure
/// only leaves the root without busybox (the labs then fail to start it).
fn ensure_busybox() {
    if Path::new("/bin/busybox").exists() || Path::new("/usr/bin/busybox").exists() {
        return;
    }
    eprintln!("      busybox is missing: installing Debian's busybox");
    if let Err(e) = apt_install("busybox") {
        eprintln!("      {e}");
    }
}

fn apt_install(package: &str) -> Result<(), String> {
    let sudo = match Command::new("id").arg("-u").output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => None,
        _ if have("sudo") => Some("sudo"),
        _ => return Err(format!("not root and no sudo: cannot install {package}")),
    };
    let apt = |args: &[&str]| {
        let mut c = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.args(["-n", "apt-get"]);
                c
            }
            None => Command::new("apt-get"),
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]), "apt-get update")?;
    run(
        &mut apt(&["install", "-y", "-q", package]),
        &format!("apt-get install {package}"),
    )
}

fn build(p: &Paths, hal: Hal) -> Result<(), String> {
    let mut progress = Progress { step: 0, total: 3 };
    progress.next(&format!("building {} (release)", hal.binary()));
    build_kernel(p, hal)?;
    progress.next("building guest programs (static)");
    build_guests(p)?;
    progress.next("assembling the default root directory");
    assemble_default_root(p)
}

fn test(p: &Paths, extra: &[OsString]) -> Result<(), String> {
    // Arguments after `--` choose a part of the suite: then no benchmark
    // smoke run, and no `--workspace` when they name packages.
    let whole = extra.is_empty();
    let names_packages = extra.iter().any(|a| a == "-p" || a == "--package" || a.to_string_lossy().starts_with("--package="));
    let mut progress = Progress { step: 0, total: if whole { 7 } else { 6 } };
    progress.next("building kernel-skas (release)");
    build_kernel(p, Hal::Skas)?;
    progress.next("building kernel-tt (release)");
    build_kernel(p, Hal::Tt)?;
    progress.next("building guest programs (static)");
    build_guests(p)?;
    progress.next("assembling the default root directory");
    assemble_default_root(p)?;
    progress.next("building the static C programs (gcc, musl-gcc)");
    build_c_programs(p)?;
    // Benchmarks are never pass/fail on time: this only produces the JSON
    // that the xtask test `quick_bench_json_from_xtask_test` checks for form.
    let bench_json = p.target.join("bench-quick.json");
    let mut tests = cargo();
    if whole {
        progress.next("cargo xtask bench --quick (smoke check of the benchmark harness)");
        let _ = fs::remove_file(&bench_json);
        let bench_opt = bench::Options {
            quick: true,
            json: Some(bench_json.clone()),
            ..Default::default()
        };
        if let Err(e) = bench::bench(p, &bench_opt) {
            eprintln!("      bench failed: {e} (the xtask test will report it)");
        }
        tests.env("RUSTUML_BENCH_JSON", &bench_json);
    }
    tests
        .current_dir(&p.workspace)
        .env("CARGO_TARGET_DIR", &p.target)
        .env("RUSTUML_KERNEL_SKAS", p.kernel(Hal::Skas))
        .env("RUSTUML_KERNEL_TT", p.kernel(Hal::Tt))
        .env("RUSTUML_GUEST_BIN", p.guest_bin_dir())
        .env("RUSTUML_ROOT", p.default_root())
        .env("RUSTUML_C_ROOT", p.c_root())
        .arg("test");
    if !names_packages {
        tests.arg("--workspace");
    }
    let what = if names_packages { "cargo test" } else { "cargo test --workspace" };
    progress.next(&format!("running {what}"));
    run(tests.arg("--no-fail-fast").args(extra), what)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Paths::new().and_then(|p| match cli.cmd {
        Cmd::Build { hal } => build(&p, hal),
        Cmd::Rootfs => build_guests(&p).and_then(|()| assemble_default_root(&p)),
        Cmd::Test { cargo_test_args } => test(&p, &cargo_test_args),
        Cmd::Isolation { out, no_build } => isolation::isolation(&p, out, no_build),
        Cmd::Fuzz { minutes, batch, only } => fuzz::fuzz(&p, &fuzz::Options { minutes, batch, only }),
        Cmd::Bench {
            quick,
            reps,
            json,
            report,
            peers,
            only,
        } => bench::bench(
            &p,
            &bench::Options {
                quick,
                reps,
                json,
                report,
                peers,
                only,
            },
        ),
        Cmd::Lab { file, attach, logs, timeout, no_build } => {
            lab::lab(&p, &lab::Options { file, attach, logs, timeout, no_build })
        }
        Cmd::Run {
            hal,
            mem,
            root,
            trace_syscalls,
            uname_release,
            hostname,
            net,
            hostfs,
            init,
        } => {
            // A bad --root fails before anything is built.
            if let Some(r) = &root {
                if !r.is_dir() {
                    eprintln!("xtask: --root {}: not a directory", r.display());
                    std::process::exit(2);
                }
            }
            build(&p, hal)?;
            let root = match root {
                Some(r) => std::path::absolute(&r).map_err(|e| format!("bad --root: {e}"))?,
                None => p.default_root(),
            };
            let mut cmd = Command::new(p.kernel(hal));
            for h in &hostfs {
                cmd.arg("--hostfs").arg(h);
            }
            if let Some(mem) = mem {
                cmd.arg("--mem").arg(mem);
            }
            cmd.arg("--root").arg(root);
            if trace_syscalls {
                cmd.arg("--trace-syscalls");
            }
            if let Some(r) = uname_release {
                cmd.arg("--uname-release").arg(r);
            }
            if let Some(h) = hostname {
                cmd.arg("--hostname").arg(h);
            }
            for n in &net {
                cmd.arg("--net").arg(n);
            }
            if !init.is_empty() {
                cmd.arg("--").args(init);
            }
            let shown: Vec<String> = std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            eprintln!("booting: {}", shown.join(" "));
            // exec only returns on failure; on success the kernel's exit
            // status becomes ours.
            let e = cmd.exec();
            Err(format!("cannot start {}: {e}", p.kernel(hal).display()))
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
