//! `cargo xtask bench [--quick] [--reps N] [--json FILE] [--report DIR] [--peers]`:
//! runs the same benchmark programs natively, under `kernel-skas` and under
//! `kernel-tt`, interleaved (native, skas, tt, native, skas, tt, ...) so
//! that a change in the machine's load hits every backend alike, and prints
//! per operation the median of each backend and its ratio to native.
//! `--peers` adds User-mode Linux and gVisor when installed (see
//! `peers.rs`); a missing peer is a note, never an error.
//!
//! The guest side is `userland-tests/src/bin/bench_ops.rs` (micro
//! operations) and `bench_macro.rs` (a shell loop of processes, tar+gzip,
//! python start-up, a futex ping-pong between threads) and `bench_net.rs`
//! (TCP round trips and bandwidth over 127.0.0.1 between two processes of
//! one guest; from a guest client through the user-mode NAT to a server
//! this process runs on the host's 127.0.0.1; and from this process as the
//! client, through a `hostfwd` rule, to `bench_net serve` in the guest; the
//! native runs talk to the same host side directly): one process per
//! measurement, timing its own operation with
//! `clock_gettime` and printing `bench OP VALUE UNIT` (or `bench OP n/a
//! REASON`). The macro rows run the
//! host's own programs, which the full benchmark root holds (the default
//! root's userland). Boot times and the host CPU of an idle guest are
//! measured here, from the host. With `--quick` the macro rows run in the
//! first repetition only, with fewer iterations. `--only TEXT` measures the
//! operations whose name contains TEXT (`--only tcp`: the network rows).
//! The peers skip the network rows (n/a with a note).
//!
//! Three rows are driven from the host: Ctrl-C typed on a pseudo-terminal
//! at an interactive `/bin/sh` running a hog, to its next prompt; a `busybox
//! ping` between two guests on a virtual switch this process runs; and `ab
//! -c 50` against `bench_net http`, a threaded HTTP server, through
//! `hostfwd`.
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

mod host_tree;
mod json;
mod peers;
mod report;
mod rows;
mod run;

pub use json::validate_json;
use report::*;
use rows::*;
use run::*;

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
    /// Measure only the operations whose name contains this (`--only tcp`).
    pub only: Option<String>,
    /// Also run kernel-skas with `--no-sandbox`: what self-confinement costs.
    pub sandbox_cost: bool,
    /// Also run kernel-skas with `--tty-log-dir` and `--audit-log`: what
    /// honeypot logging costs.
    pub logging_cost: bool,
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
    /// `PROG OP ITERS [PATH]` inside the guest (PROG `bench_ops` or
    /// `bench_macro`); the path argument is derived from [`PathArg`]. The
    /// peers always run the `quick` count (their operations are 10–1000×
    /// slower; the count only sets the precision).
    Guest {
        prog: &'static str,
        full: usize,
        quick: usize,
        path: PathArg,
    },
    /// Host-side: wall time of booting with `/bin/sh -c exit` as init (the
    /// guest powers off when its init exits), in the root with the host's
    /// userland.
    BootShell,
    /// Host-side: spawn to the first byte `hello` writes.
    BootFirstOutput,
    /// Host-side: spawn to exit of `hello`.
    BootToExit,
    /// Host-side: CPU of a guest sleeping 1 s, minus that of a `hello` run.
    IdleCpu,
    /// Host-side TCP client (here, timing) of `bench_net serve` in the
    /// guest, reached through a `hostfwd` rule of the user-mode NAT;
    /// natively the same server on the host's 127.0.0.1. `full`/`quick`
    /// as for [`How::Guest`].
    Forwarded { full: usize, quick: usize },
    /// A command over the host's own tree (`host_tree.rs`): natively, and
    /// under `KERNEL do` / `runsc do`.
    HostTree,
    /// Host-side, through a pseudo-terminal: Ctrl-C typed at an interactive
    /// `/bin/sh` running a CPU hog, to the shell's next prompt.
    CtrlC,
    /// Host-side: the kernel's memory per socket (its anonymous RSS;
    /// natively the host's `Slab`) between the two stages of `bench_net
    /// tcp_idle_conns|tcp_idle_listeners N` (the row's name without `_mem`
    /// and with an `s`).
    KernelMem { full: usize, quick: usize },
    /// Two guests on a virtual switch, one idle: the other's `busybox ping`
    /// round trip (natively `busybox ping` of 127.0.0.1).
    SwitchPing,
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
    /// A writable directory in memory: the guest's `/tmp`, natively
    /// `/dev/shm` (tmpfs) when there is one.
    Tmpfs,
    /// A 64 MiB disk: the guest's `/dev/ubda` (attached with `--ubd`),
    /// natively the same image file on the host (see `bench_disk`).
    Disk,
    /// `IP:PORT` of the TCP server this process runs on the host's
    /// 127.0.0.1 ([`host_server`]): natively `127.0.0.1:PORT`, from our
    /// kernels `10.0.2.2:PORT` through the user-mode NAT (`--net user`).
    HostServer,
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
    /// A macro benchmark or a slow host-driven row: with `--quick`,
    /// measured in the first repetition only, so that the smoke check stays
    /// short.
    macro_: bool,
}

/// What runs the programs.
#[derive(Clone, Debug)]
enum Kind {
    /// The host itself.
    Native,
    /// One of our kernels (`kernel-skas`, `kernel-tt`), with options put
    /// before the others (`--no-sandbox` for `--sandbox-cost`).
    Kernel(PathBuf, &'static [&'static str]),
    /// User-mode Linux (the `linux` binary), booting the full root over hostfs.
    Uml(PathBuf),
    /// gVisor (`runsc`), running the native command lines in a sandbox.
    Gvisor(PathBuf),
    /// proot, running the native command lines under ptrace (no isolation).
    Proot(PathBuf),
}

/// Something the programs run under: the host, a kernel binary or a peer.
#[derive(Clone, Debug)]
struct Backend {
    name: &'static str,
    kind: Kind,
    /// Why it is skipped, if it is.
    skipped: Option<String>,
}

impl Backend {
    fn native(&self) -> bool {
        matches!(self.kind, Kind::Native)
    }
    /// One of ours: the DESIGN.md targets apply.
    fn ours(&self) -> bool {
        matches!(self.kind, Kind::Kernel(..))
    }
    /// A peer: runs the `quick` iteration counts.
    fn peer(&self) -> bool {
        matches!(self.kind, Kind::Uml(_) | Kind::Gvisor(_) | Kind::Proot(_))
    }
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

/// The host kernel's release (`uname -r`), for reports.
pub fn host_kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn now_utc() -> String {
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
    // The HTTP row's client.
    if OPS.iter().any(|o| o.name.starts_with("http") && opt.only.as_deref().is_none_or(|t| o.name.contains(t))) {
        crate::ensure_package(crate::have("ab"), "apache2-utils");
    }
    let mut backends = vec![Backend {
        name: "native",
        kind: Kind::Native,
        skipped: None,
    }];
    for hal in [Hal::Skas, Hal::Tt] {
        let name = if hal == Hal::Skas { "skas" } else { "tt" };
        let skipped = build_kernel(p, hal)
            .err()
            .map(|e| format!("build failed: {e}"));
        backends.push(Backend {
            name,
            kind: Kind::Kernel(p.kernel(hal), &[]),
            skipped,
        });
    }
    if opt.sandbox_cost {
        let skipped = backends.iter().find(|b| b.name == "skas").and_then(|b| b.skipped.clone());
        backends.push(Backend { name: "skas --no-sandbox", kind: Kind::Kernel(p.kernel(Hal::Skas), &["--no-sandbox"]), skipped });
    }
    if opt.logging_cost {
        let skipped = backends.iter().find(|b| b.name == "skas").and_then(|b| b.skipped.clone());
        let dir = p.target.join("bench-tmp").join("logging-cost");
        let _ = std::fs::remove_dir_all(&dir);
        let (tty, audit) = (dir.join("tty").display().to_string(), dir.join("audit.json").display().to_string());
        let _ = std::fs::create_dir_all(&dir);
        // Backends name their flags for the whole run.
        let args: &'static [&'static str] = Box::leak(vec!["--tty-log-dir", &*tty.leak(), "--audit-log", &*audit.leak()].into_boxed_slice());
        backends.push(Backend { name: "skas +logs", kind: Kind::Kernel(p.kernel(Hal::Skas), args), skipped });
    }
    build_guests(p)?;
    eprintln!("[2/4] assembling the benchmark roots");
    let roots = make_roots(p)?;
    eprintln!("[3/4] probing the backends");
    let mut notes = Vec::new();
    if opt.peers {
        backends.extend(peers::find(&roots));
    }
    for b in backends.iter_mut() {
        if b.skipped.is_none() {
            let probed = match &b.kind {
                Kind::Kernel(k, _) => probe(k, &roots),
                Kind::Uml(_) | Kind::Gvisor(_) | Kind::Proot(_) => peers::probe(b, &roots),
                Kind::Native => Ok(()),
            };
            if let Err(e) = probed {
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
        notes.extend(peers::notes(&backends));
    }
    let reps = opt.reps.unwrap_or(if opt.quick { 3 } else { 7 }).max(1);
    let timeout = Duration::from_secs(if opt.quick { 20 } else { 120 });
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
        "[4/4] measuring: {} operations × {} backends × {reps} repetitions{}",
        OPS.len(),
        active.len(),
        if opt.quick {
            " (macro rows: the first only)"
        } else {
            ""
        }
    );
    let selected = |op: &Op| opt.only.as_deref().is_none_or(|f| op.name.contains(f));
    if let Some(f) = &opt.only {
        res.notes
            .push(format!("only the operations whose name contains `{f}`"));
    }
    if opt.peers && OPS.iter().any(|o| selected(o) && is_net(o)) {
        res.notes.push(
            "UML and gVisor skip the network rows (their guest networking is not set up here)"
                .into(),
        );
    }
    let host_ctx = host_tree::HostCtx::new(&p.workspace, &p.target)?;
    let started = Instant::now();
    for rep in 0..reps {
        let mut hello_cpu: BTreeMap<&str, Option<Duration>> = BTreeMap::new();
        // UML boots once per repetition for every guest operation (a boot
        // costs seconds); the other backends start one process per sample.
        let mut batches: BTreeMap<&str, BTreeMap<String, Sample>> = BTreeMap::new();
        for b in &active {
            if matches!(b.kind, Kind::Uml(_)) {
                let ops: Vec<&Op> = OPS
                    .iter()
                    .filter(|o| !(opt.quick && o.macro_ && rep > 0))
                    .filter(|o| selected(o) && !is_net(o) && matches!(o.how, How::Guest { .. }))
                    .collect();
                // (A UML boot costs seconds: none for an empty batch.)
                if !ops.is_empty() {
                    batches.insert(b.name, peers::uml_batch(b, &roots, &ops));
                }
            }
        }
        for op in OPS {
            if opt.quick && op.macro_ && rep > 0 {
                continue;
            }
            // The boot-to-exit figure and the idle row's baseline come
            // with the first-output run.
            let feeds = |name: &str| OPS.iter().any(|o| o.name == name && selected(o));
            if !selected(op)
                && !(op.name == "boot_first_output" && (feeds("boot_to_exit") || feeds("idle_cpu")))
            {
                continue;
            }
            for b in &active {
                let sample: Sample = match op.how {
                    How::Guest { .. } if is_net(op) && b.peer() => {
                        Err("network rows are not measured under the peers".into())
                    }
                    How::Guest { .. } => match batches.get(b.name) {
                        Some(batch) => batch
                            .get(op.name)
                            .cloned()
                            .unwrap_or_else(|| Err("no figure from the UML batch".into())),
                        None => measure_guest(b, &roots, op, opt.quick, timeout),
                    },
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
                    How::BootShell => measure_shell(b, &roots, timeout),
                    How::Forwarded { .. } => measure_fwd(b, &roots, op, opt.quick, timeout),
                    How::HostTree => host_tree::measure(b, op.name, &host_ctx, timeout),
                    How::CtrlC | How::SwitchPing | How::KernelMem { .. } if b.peer() => Err("not measured under the peers".into()),
                    How::KernelMem { .. } => measure_kernel_mem(b, &roots, op, opt.quick, timeout),
                    How::CtrlC => measure_ctrl_c(b, &roots, timeout),
                    How::SwitchPing => measure_switch_ping(b, &roots, timeout),
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
    if opt.peers {
        let names: Vec<&str> = OPS.iter().filter(|o| matches!(o.how, How::HostTree) && selected(o)).map(|o| o.name).collect();
        if !names.is_empty() {
            res.notes.extend(host_tree::proot_notes(&names, &host_ctx, reps, timeout));
        }
    }
    println!("\n{}", table(&res, false));
    for n in &res.notes {
        println!("note: {n}");
    }
    if let Some(f) = &opt.json {
        let text = to_json(&res);
        // Our own output must pass the check CI applies to it.
        // (A filtered run lacks operations on purpose.)
        if opt.only.is_none() {
            validate_json(&text).map_err(|e| format!("the JSON is malformed: {e}"))?;
        }
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
#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Results {
        let backends = vec![
            Backend {
                name: "native",
                kind: Kind::Native,
                skipped: None,
            },
            Backend {
                name: "skas",
                kind: Kind::Kernel("k".into(), &[]),
                skipped: None,
            },
            Backend {
                name: "tt",
                kind: Kind::Kernel("t".into(), &[]),
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
        let parsed: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(parsed["operations"].as_array().unwrap().len(), OPS.len());
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
        let i = OPS.iter().position(|o| o.name == "pipe_bw").unwrap();
        // Bandwidth: native / backend (native's samples: 100 + i, 90, 110).
        let r = res.ratio(&OPS[i], "skas").unwrap();
        let native = (100.0 + i as f64).clamp(90.0, 110.0);
        assert!((r - native / 2000.0).abs() < 1e-9, "{r}");
        let t = table(&res, false);
        assert!(t.contains("n/a"));
        assert!(!t.contains("tt ×native"));
        let md = table(&res, true);
        assert!(md.starts_with("| operation |"));
    }

    #[test]
    fn samples_are_parsed_with_their_reasons() {
        let out = "noise\nbench stat 123.5 ns\nbench pipe_bw n/a read:EIO\n";
        assert_eq!(parse_sample(out, "stat"), Some(Ok(123.5)));
        assert_eq!(parse_sample(out, "pipe_bw"), Some(Err("read:EIO".into())));
        assert_eq!(parse_sample(out, "stat_x"), None);
        // UML's console ends lines with CR LF.
        assert_eq!(
            parse_sample("bench tar_gz 7 ns\r\n", "tar_gz"),
            Some(Ok(7.0))
        );
    }

    #[test]
    fn guest_argv_uses_each_backends_paths_and_counts() {
        let roots = Roots {
            main: "/r/main".into(),
            tiny: "/r/tiny".into(),
            full: "/r/full".into(),
            native_tmp: "/r/tmp".into(),
            server_port: 4242,
            disk_img: "/r/disk.img".into(),
        };
        let b = |name, kind| Backend {
            name,
            kind,
            skipped: None,
        };
        let native = b("native", Kind::Native);
        let skas = b("skas", Kind::Kernel("k".into(), &[]));
        let uml = b("uml", Kind::Uml("linux".into()));
        let gvisor = b("gvisor", Kind::Gvisor("runsc".into()));
        let op = |n: &str| OPS.iter().find(|o| o.name == n).unwrap();
        let open = op("open_close");
        assert_eq!(
            guest_argv(&native, &roots, open, false).unwrap(),
            [
                "/tests/bench_ops",
                "open_close",
                "20000",
                "/r/main/tests/hello"
            ]
        );
        assert_eq!(
            guest_argv(&skas, &roots, open, false).unwrap(),
            ["/tests/bench_ops", "open_close", "20000", "/tests/hello"]
        );
        // Peers run the quick count; gVisor sees the host's paths.
        assert_eq!(
            guest_argv(&gvisor, &roots, open, false).unwrap(),
            [
                "/tests/bench_ops",
                "open_close",
                "2000",
                "/r/main/tests/hello"
            ]
        );
        assert_eq!(
            guest_argv(&uml, &roots, op("tar_gz"), false).unwrap(),
            ["/tests/bench_macro", "tar_gz", "1", "/tmp"]
        );
        assert!(guest_argv(&native, &roots, op("boot_shell"), false).is_none());
        // The disk rows: the image natively, /dev/ubda in the guest.
        let disk = op("disk_randread_4k");
        assert_eq!(guest_argv(&native, &roots, disk, true).unwrap(), ["/tests/bench_disk", "disk_randread_4k", "2000", "/r/disk.img"]);
        assert_eq!(guest_argv(&skas, &roots, disk, false).unwrap(), ["/tests/bench_disk", "disk_randread_4k", "20000", "/dev/ubda"]);
        // The NAT rows: natively the host server directly, from a guest via
        // the NAT's gateway, with the server's port named (`allow=`).
        let nat = op("tcp_nat_rr");
        assert_eq!(
            guest_argv(&native, &roots, nat, true).unwrap(),
            ["/tests/bench_net", "tcp_nat_rr", "300", "127.0.0.1:4242"]
        );
        let argv = guest_argv(&skas, &roots, nat, false).unwrap();
        assert_eq!(
            argv,
            ["/tests/bench_net", "tcp_nat_rr", "5000", "10.0.2.2:4242"]
        );
        let c = command_net(&skas, &roots.main, &argv, needs_nat(nat).then_some(roots.server_port));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..4], ["--root", "/r/main", "--net", "user,allow=tcp:127.0.0.1:4242"]);
        assert!(!needs_nat(op("tcp_lo_rr")) && is_net(op("tcp_lo_rr")));
        assert!(!is_net(open));
        // Natively `/tests/PROG` is the host copy in the root; host programs stay.
        let c = command(&native, &roots.full, &["/tests/bench_macro".into()]);
        assert_eq!(c.get_program(), "/r/full/tests/bench_macro");
        let c = command(&gvisor, &roots.full, &["/bin/sh".into(), "-c".into()]);
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args.last().copied(), Some(std::ffi::OsStr::new("-c")));
        assert!(args.iter().any(|a| *a == "do"));
    }

    #[test]
    fn host_server_speaks_bench_nets_protocol() {
        use std::io::Write;
        let port = host_server().unwrap();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"r").unwrap();
        let mut b = [0u8; 1];
        for x in [1u8, 2, 250] {
            c.write_all(&[x]).unwrap();
            c.read_exact(&mut b).unwrap();
            assert_eq!(b[0], x);
        }
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"b").unwrap();
        c.write_all(&vec![9u8; 300_000]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"k");
        // The client of the hostfwd rows speaks the same protocol.
        let t = Duration::from_secs(10);
        assert!(host_client(true, port, 50, t).unwrap() > 0.0);
        assert!(host_client(false, port, 5, t).unwrap() > 0.0);
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
