//! `cargo xtask`: the project's build-and-run tool (an ordinary binary crate,
//! run through the `xtask` alias in `.cargo/config.toml`).
//!
//! * `cargo xtask build [--hal skas|tt]` builds the kernel binary (release),
//!   the static guest programs of `userland-tests`, and the default root
//!   directory `target/rootfs/default` with `/tests/<program>` for each.
//! * `cargo xtask run [--hal skas|tt] [--no-build] [KERNEL ARGS...]`
//!   checks the kernel's arguments with the kernel's own parser, builds what
//!   they use, then replaces itself with the kernel, so the exit status is
//!   the kernel's. With no INIT, init is the guest's `/bin/sh` (the host's own
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
//! * `cargo xtask image from-dir DIR --out IMG` / `image merge COW OUT`
//!   make disk images (see `image.rs`).
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
mod conformance;
#[cfg(test)]
mod freshness;
mod fuzz;
// The kernel's own option definitions, compiled here too (see that file).
#[path = "../../hal-uml-host/src/cli_args.rs"]
mod kernel_args;
mod image;
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
    /// Build, then boot the kernel with the given arguments: the kernel's own options (see
    /// `cargo xtask run -- --help`), then INIT (default /bin/sh) and its arguments. A bad option
    /// is refused, with the kernel's own message, before anything is built.
    Run {
        /// Backend to boot (give it before the kernel's arguments).
        #[arg(long, value_enum, default_value = "skas")]
        hal: Hal,
        /// Boot the kernel and root directory of the last build as they are.
        #[arg(long)]
        no_build: bool,
        /// The kernel's arguments, passed as they are: `[OPTIONS] [INIT [ARGS...]]`, or
        /// `do [OPTIONS] CMD ARGS...`.
        #[arg(value_name = "KERNEL ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
        kernel_args: Vec<OsString>,
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
        /// Also run kernel-skas with --no-sandbox, to show what its self-confinement costs.
        #[arg(long)]
        sandbox_cost: bool,
        /// Also run kernel-skas with --tty-log-dir and --audit-log (honeypot logging), to show what they cost.
        #[arg(long)]
        logging_cost: bool,
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
    /// Run CPython's own regression tests (`python3 -m test MODULE`) natively and in the
    /// guest under skas and tt, module by module, and print a pass table.
    Conformance {
        /// Only a few short modules (what the test suite's smoke check runs).
        #[arg(long)]
        quick: bool,
        /// Only the modules whose name contains TEXT.
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
        /// Write the Markdown table to FILE (default: target/conformance/conformance.md).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Use the kernels of the last build as they are.
        #[arg(long)]
        no_build: bool,
        /// Time limit per module and run.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        limit: u64,
    },
    /// Disk images: `from-dir DIR --out IMG` (ext4 via the host's mke2fs -d), `merge COW OUT`.
    Image {
        #[command(subcommand)]
        what: image::ImageCmd,
    },
    /// What CI runs: build everything, then `cargo test --workspace` with the test environment.
    Test {
        /// Extra arguments for `cargo test` (e.g. `-- --test-threads 1`).
        #[arg(last = true)]
        cargo_test_args: Vec<OsString>,
    },
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
    let mut c = cargo();
    c.current_dir(&p.workspace).env("CARGO_TARGET_DIR", &p.target).args(["build", "--release", "-p", hal.package(), "--bin", hal.binary()]);
    if hal == Hal::Skas {
        // The operator's tool for named guests of either kernel, and the
        // OCI runtime that runs containers on them.
        c.args(["--bin", "rustuml-ctl", "-p", "rustuml-oci", "--bin", "rustuml-oci"]);
    }
    run(&mut c, &format!("building {}", hal.binary()))
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
    let have_it = Path::new("/bin/busybox").exists() || Path::new("/usr/bin/busybox").exists();
    ensure_package(have_it, "busybox");
}

/// Install Debian's `package` unless `have_it`; a failure is one line (the
/// test that needs it then says what is missing).
fn ensure_package(have_it: bool, package: &str) {
    if have_it {
        return;
    }
    eprintln!("      {package} is missing: installing Debian's {package}");
    if let Err(e) = apt_install(package) {
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
    // The test of debugging the kernel drives gdb.
    ensure_package(have("gdb"), "gdb");
    // Benchmarks are never pass/fail on time: this only produces the JSON
    // that the xtask test `quick_bench_json_from_xtask_test` checks for form.
    let bench_json = p.target.join("bench-quick.json");
    let mut tests = cargo();
    // Incremental state of every test crate is as large again as the test
    // binaries and is never reused by a one-shot run; keep it when asked.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        tests.env("CARGO_INCREMENTAL", "0");
    }
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
        .env("RUSTUML_OCI", p.target.join("release").join("rustuml-oci"))
        .env("RUSTUML_GUEST_BIN", p.guest_bin_dir())
        .env("RUSTUML_ROOT", p.default_root())
        .env("RUSTUML_C_ROOT", p.c_root())
        // The README test runs `cargo xtask run` examples through this binary.
        .env("RUSTUML_XTASK", std::env::current_exe().map_err(|e| format!("where is xtask: {e}"))?)
        .arg("test");
    if !names_packages {
        tests.arg("--workspace");
    }
    let what = if names_packages { "cargo test" } else { "cargo test --workspace" };
    progress.next(&format!("running {what}"));
    run(tests.arg("--no-fail-fast").args(extra), what)
}

/// `cargo xtask run`: check the kernel's arguments with the kernel's own
/// parser, build what they use, and replace this process with the kernel.
fn run_kernel(p: &Paths, hal: Hal, no_build: bool, mut args: Vec<OsString>) -> Result<(), String> {
    use clap::{CommandFactory, FromArgMatches};
    let name = hal.binary();
    let refuse = |msg: String| -> ! {
        eprintln!("{name}: {msg}");
        std::process::exit(2)
    };
    // `do` runs over the host's own root; a --switch runs no guest at all.
    let uses_default_root = if args.first().is_some_and(|a| a == "do") {
        let mut argv = vec![OsString::from(name)];
        argv.extend(args[1..].iter().cloned());
        let cmd = kernel_args::DoCli::command().name(name).bin_name(format!("{name} do"));
        if let Err(e) = cmd.try_get_matches_from(argv).and_then(|m| kernel_args::DoCli::from_arg_matches(&m)) {
            e.exit()
        }
        false
    } else {
        let mut argv = vec![OsString::from(name)];
        argv.extend(args.iter().cloned());
        let cmd = kernel_args::Cli::command().name(name).bin_name(name);
        // UML's words (mem=, ubd0=, root=...) as the kernel reads them.
        let argv = kernel_args::translate(argv, &cmd).unwrap_or_else(|e| refuse(e));
        let cli = match cmd.try_get_matches_from(argv).and_then(|m| kernel_args::Cli::from_arg_matches(&m)) {
            Ok(c) => c,
            Err(e) => e.exit(),
        };
        if hal == Hal::Tt && cli.trap.is_some() {
            refuse("--trap: only kernel-skas has a choice of trap mechanism (kernel-tt always uses ptrace)".into());
        }
        if let Some(r) = &cli.root {
            if let Err(e) = fs::metadata(r).and_then(|m| if m.is_dir() { Ok(()) } else { Err(std::io::Error::other("not a directory")) }) {
                refuse(format!("--root {}: {e}", r.display()));
            }
        }
        cli.root.is_none() && cli.root_dev.is_none() && cli.switch.is_none()
    };
    if !no_build {
        let mut progress = Progress { step: 0, total: if uses_default_root { 3 } else { 1 } };
        progress.next(&format!("building {name} (release)"));
        build_kernel(p, hal)?;
        if uses_default_root {
            progress.next("building guest programs (static)");
            build_guests(p)?;
            progress.next("assembling the default root directory");
            assemble_default_root(p)?;
        }
    }
    if uses_default_root {
        args.splice(0..0, [OsString::from("--root"), p.default_root().into_os_string()]);
    }
    let mut cmd = Command::new(p.kernel(hal));
    cmd.args(&args);
    let shown: Vec<String> = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(shell_quote).collect();
    eprintln!("booting: {}", shown.join(" "));
    // exec only returns on failure; on success the kernel's exit status
    // becomes ours.
    let e = cmd.exec();
    Err(format!("cannot start {}: {e}", p.kernel(hal).display()))
}

/// `arg` as a shell word, so that the `booting:` line can be pasted.
fn shell_quote(arg: &std::ffi::OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Paths::new().and_then(|p| match cli.cmd {
        Cmd::Build { hal } => build(&p, hal),
        Cmd::Rootfs => build_guests(&p).and_then(|()| assemble_default_root(&p)),
        Cmd::Test { cargo_test_args } => test(&p, &cargo_test_args),
        Cmd::Conformance { quick, only, out, no_build, limit } => {
            conformance::conformance(&p, &conformance::Options { quick, only, out, no_build, limit })
        }
        Cmd::Image { what } => image::image(what),
        Cmd::Isolation { out, no_build } => isolation::isolation(&p, out, no_build),
        Cmd::Fuzz { minutes, batch, only } => fuzz::fuzz(&p, &fuzz::Options { minutes, batch, only }),
        Cmd::Bench {
            quick,
            reps,
            json,
            report,
            peers,
            only,
            sandbox_cost,
            logging_cost,
        } => bench::bench(&p, &bench::Options { quick, reps, json, report, peers, only, sandbox_cost, logging_cost }),
        Cmd::Lab { file, attach, logs, timeout, no_build } => {
            lab::lab(&p, &lab::Options { file, attach, logs, timeout, no_build })
        }
        Cmd::Run { hal, no_build, kernel_args } => run_kernel(&p, hal, no_build, kernel_args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
