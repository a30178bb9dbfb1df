//! `cargo xtask bench [--quick] [--reps N] [--json FILE] [--report DIR] [--peers]`:
//! runs the same benchmark programs natively, under `kernel-skas` and under
//! `kernel-tt`, interleaved (native, skas, tt, native, skas, tt, ...) so
//! that a change in the machine's load hits every backend alike, and prints
//! per operation the median of each backend and its ratio to native.
//! `--peers` adds User-mode Linux and gVisor when installed (see
//! `bench_peers.rs`); a missing peer is a note, never an error.
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

#[path = "bench_peers.rs"]
mod peers;

#[path = "bench_host.rs"]
mod host_tree;

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
    /// A command over the host's own tree (`bench_host.rs`): natively, and
    /// under `KERNEL do` / `runsc do`.
    HostTree,
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
    /// A macro benchmark: with `--quick`, measured in the first repetition
    /// only, so that the smoke check stays under a minute.
    macro_: bool,
}

/// A row of `bench_host.rs` (a command over the host's own tree, in ns).
const fn host_tree_row(name: &'static str, label: &'static str) -> Op {
    Op {
        name,
        label,
        unit: "ns",
        better: Better::Lower,
        how: How::HostTree,
        target: None,
        macro_: true,
    }
}

/// A disk row of `bench_disk` (`/dev/ubda` in the guest, the image file natively).
const fn disk_row(name: &'static str, label: &'static str, unit: &'static str, better: Better, full: usize, quick: usize) -> Op {
    Op { name, label, unit, better, how: How::Guest { prog: "bench_disk", full, quick, path: PathArg::Disk }, target: None, macro_: false }
}

const OPS: &[Op] = &[
    disk_row("disk_randread_4k", "disk: 4 KiB random read (/dev/ubda)", "ns", Better::Lower, 20_000, 2_000),
    disk_row("disk_randwrite_4k", "disk: 4 KiB random write + fdatasync (/dev/ubda)", "ns", Better::Lower, 20_000, 2_000),
    disk_row("disk_seqread_1m", "disk: sequential 1 MiB reads (/dev/ubda)", "MB/s", Better::Higher, 8, 2),
    disk_row("disk_seqwrite_1m", "disk: sequential 1 MiB writes + fdatasync (/dev/ubda)", "MB/s", Better::Higher, 4, 1),
    Op {
        name: "null_syscall",
        label: "null system call (getppid)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 200_000,
            quick: 20_000,
            path: PathArg::None,
        },
        target: Some((3_000.0, 2_000.0)),
        macro_: false,
    },
    Op {
        name: "open_close",
        label: "open+close",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: Some((8_000.0, 6_000.0)),
        macro_: false,
    },
    Op {
        name: "stat",
        label: "stat",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "pipe_rtt",
        label: "pipe round trip (2 processes)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "ctx_switch",
        label: "context switch (sched_yield hand-off, 2 processes, 1 CPU)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 200,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "fork_exit",
        label: "fork+exit+wait",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 300,
            quick: 30,
            path: PathArg::None,
        },
        target: Some((300_000.0, 300_000.0)),
        macro_: false,
    },
    Op {
        name: "fork_exec",
        label: "fork+exec+wait (static)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 60,
            quick: 8,
            path: PathArg::Program,
        },
        target: Some((1_000_000.0, 1_000_000.0)),
        macro_: false,
    },
    Op {
        name: "page_fault",
        label: "page fault (per 4 KiB page)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 16_384,
            quick: 2_048,
            path: PathArg::None,
        },
        target: Some((3_000.0, 3_000.0)),
        macro_: false,
    },
    Op {
        name: "mmap_munmap",
        label: "mmap+munmap (64 KiB)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "signal_rtt",
        label: "signal to self, handler, sigreturn",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "clock_gettime",
        label: "clock_gettime(CLOCK_MONOTONIC) (vDSO)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 2_000_000,
            quick: 200_000,
            path: PathArg::None,
        },
        target: Some((50.0, 50.0)),
        macro_: false,
    },
    Op {
        name: "nanosleep_hog",
        label: "nanosleep(1 ms) beside a CPU hog on the same CPU",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 500,
            quick: 50,
            path: PathArg::None,
        },
        target: Some((2_000_000.0, 2_000_000.0)),
        macro_: false,
    },
    Op {
        name: "file_rw",
        label: "file write+read, 64 KiB",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 1_000,
            path: PathArg::Dir,
        },
        target: Some((3_000.0, 3_000.0)),
        macro_: false,
    },
    Op {
        name: "pipe_bw",
        label: "pipe bandwidth, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: Some((1_500.0, 1_500.0)),
        macro_: false,
    },
    Op {
        name: "boot_first_output",
        label: "boot to first guest output",
        unit: "ns",
        better: Better::Lower,
        how: How::BootFirstOutput,
        target: Some((20_000_000.0, 20_000_000.0)),
        macro_: false,
    },
    Op {
        name: "boot_to_exit",
        label: "boot, run hello, exit",
        unit: "ns",
        better: Better::Lower,
        how: How::BootToExit,
        target: None,
        macro_: false,
    },
    Op {
        name: "boot_shell",
        label: "boot, sh -c exit, power off (full root)",
        unit: "ns",
        better: Better::Lower,
        how: How::BootShell,
        target: None,
        macro_: false,
    },
    Op {
        name: "idle_cpu",
        label: "idle guest, host CPU",
        unit: "%",
        better: Better::Lower,
        how: How::IdleCpu,
        target: Some((0.5, 0.5)),
        macro_: false,
    },
    Op {
        name: "spawn_loop",
        label: "macro: sh loop spawning /bin/true, per process",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 1_000,
            quick: 20,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "tar_gz",
        label: "macro: tar czf + xzf of 128 files (1.8 MiB) in tmpfs",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 3,
            quick: 1,
            path: PathArg::Tmpfs,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "python_start",
        label: "macro: python3 -c pass",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 10,
            quick: 2,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "futex_ping",
        label: "macro: futex ping-pong, 2 threads (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "tcp_lo_rr",
        label: "TCP 1-byte request/response over 127.0.0.1, 2 processes (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_net",
            full: 5_000,
            quick: 300,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_lo_bw",
        label: "TCP bandwidth over 127.0.0.1, 2 processes, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_net",
            full: 200,
            quick: 30,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_nat_rr",
        label: "TCP 1-byte request/response, guest client to host server via NAT (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_net",
            full: 5_000,
            quick: 300,
            path: PathArg::HostServer,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_nat_bw",
        label: "TCP bandwidth, guest client to host server via NAT, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_net",
            full: 1_000,
            quick: 30,
            path: PathArg::HostServer,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_fwd_rr",
        label: "TCP 1-byte request/response, host client to guest server via hostfwd (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Forwarded {
            full: 5_000,
            quick: 300,
        },
        target: None,
        macro_: false,
    },
    host_tree_row("host_find_cold", "host tree: find /usr -type f | wc -l, fresh guest (boot included)"),
    host_tree_row("host_find_warm", "host tree: find /usr -type f, second walk in the same guest"),
    host_tree_row("host_cat_headers", "host tree: cat of 3,000 headers of /usr/include (boot included)"),
    host_tree_row("host_gcc_c", "host tree: gcc -O2 -c of a 300-line file (boot included)"),
    host_tree_row("host_git_status", "host tree: git status of this checkout (boot included)"),
    host_tree_row("host_python_start", "host tree: the host's python3 -c pass (boot included)"),
    host_tree_row("do_boot", "host tree: do to the exit of the host's /bin/true"),
    Op {
        name: "tcp_fwd_bw",
        label: "TCP bandwidth, host client to guest server via hostfwd, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Forwarded {
            full: 1_000,
            quick: 30,
        },
        target: None,
        macro_: false,
    },
];

/// Whether `op` is a network row (`bench_net`): the peers skip these.
fn is_net(op: &Op) -> bool {
    matches!(op.how, How::Forwarded { .. })
        || matches!(
            op.how,
            How::Guest {
                prog: "bench_net",
                ..
            }
        )
}

/// Whether `op` needs the guest's user-mode NAT interface (`--net user`).
fn needs_nat(op: &Op) -> bool {
    matches!(
        op.how,
        How::Guest {
            path: PathArg::HostServer,
            ..
        }
    )
}

/// Names of every operation, in table order (what a well-formed JSON has).
pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.name).collect()
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
fn run_timed(cmd: Command, timeout: Duration) -> Result<RunOut, String> {
    run_marked(cmd, timeout, "")
}

/// [`run_timed`], with `first_output` the time at which `marker` first
/// appeared on stdout (UML prints its own messages before the guest's).
fn run_marked(mut cmd: Command, timeout: Duration, marker: &'static str) -> Result<RunOut, String> {
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
                    data.extend_from_slice(&buf[..n]);
                    if first.is_none()
                        && (marker.is_empty()
                            || data.windows(marker.len()).any(|w| w == marker.as_bytes()))
                    {
                        first = Some(start.elapsed());
                    }
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
    /// The host's userland (what the default root has: `/bin/sh`, tar,
    /// gzip, python3, ...) plus every benchmark program and the UML init
    /// scripts (`/bench-uml/*.sh`): macro rows, the shell boot, and UML.
    full: PathBuf,
    /// Writable directory for the native `file_rw`.
    native_tmp: PathBuf,
    /// Port of the host's TCP server on 127.0.0.1 (the NAT rows).
    server_port: u16,
    /// The 64 MiB image of the disk rows.
    disk_img: PathBuf,
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
    let full = base.join("bench-full");
    let native_tmp = p.target.join("bench-tmp");
    for d in [&main, &tiny, &full, &native_tmp] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| format!("remove {}: {e}", d.display()))?;
        }
    }
    for d in [
        main.join("tests"),
        main.join("tmp"),
        tiny.join("tests"),
        full.join("tests"),
        native_tmp.clone(),
    ] {
        fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    set_mode(&main.join("tmp"), 0o1777)?;
    for prog in ["bench_ops", "bench_net", "bench_true", "hello"] {
        copy_prog(p, prog, &main)?;
    }
    for prog in ["hello", "sleeper"] {
        copy_prog(p, prog, &tiny)?;
    }
    for prog in ["bench_ops", "bench_macro", "bench_true", "hello", "sleeper", "bench_disk"] {
        copy_prog(p, prog, &full)?;
    }
    // Written in full (no holes), so that reads natively and in the guest
    // both come from data.
    let disk_img = base.join("bench-disk.img");
    let pattern: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    fs::write(&disk_img, pattern).map_err(|e| format!("write {}: {e}", disk_img.display()))?;
    crate::rootfs::add_host_userland(&full)?;
    Ok(Roots {
        main,
        tiny,
        full,
        native_tmp,
        server_port: host_server()?,
        disk_img,
    })
}

/// Serves one connection of `bench_net`'s protocol: a mode byte, then `r`
/// echoes every byte, `b` reads to the end of the stream and answers one
/// byte.
fn serve_bench_net(mut c: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::Write;
    c.set_nodelay(true)?;
    let mut mode = [0u8; 1];
    c.read_exact(&mut mode)?;
    let mut buf = vec![0u8; 64 * 1024];
    match mode[0] {
        b'r' => loop {
            let n = c.read(&mut buf[..1])?;
            if n == 0 {
                return Ok(());
            }
            c.write_all(&buf[..n])?;
        },
        _ => {
            while c.read(&mut buf)? > 0 {}
            c.write_all(b"k")
        }
    }
}

/// Starts the host side of the NAT rows: a TCP server on 127.0.0.1 (a
/// thread per connection, for as long as xtask runs); its port. The same
/// server answers the native runs, so both columns talk to one server.
fn host_server() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("bench TCP server: bind 127.0.0.1:0: {e}"))?;
    let port = l
        .local_addr()
        .map_err(|e| format!("bench TCP server: {e}"))?
        .port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve_bench_net(c));
        }
    });
    Ok(port)
}

/// A host-side run: what the boot and idle rows start.
#[derive(Copy, Clone, Debug)]
enum HostRun {
    /// `/tests/hello` in the tiny root.
    Hello,
    /// `/tests/sleeper 1 0` in the tiny root.
    Sleeper,
    /// `/bin/sh -c exit` in the full root.
    Shell,
}

/// The command for `argv` under `b`, in `root`. `argv[0]` is a path in the
/// guest's root: `/tests/PROG` (natively and under gVisor, the host copy in
/// `root`) or one of the host's own programs such as `/bin/sh`, which the
/// full root holds at the same path. UML boots a script instead: see
/// [`host_command`] and [`peers::uml_batch`].
fn command(b: &Backend, root: &Path, argv: &[String]) -> Command {
    command_net(b, root, argv, None)
}

/// [`command`], with the kernels given a user-mode NAT interface that may
/// reach the host server's loopback port `nat` (natively the program
/// reaches it directly).
fn command_net(b: &Backend, root: &Path, argv: &[String], nat: Option<u16>) -> Command {
    let host_path = |a: &str| match a.strip_prefix("/tests/") {
        Some(rest) => root.join("tests").join(rest),
        None => PathBuf::from(a),
    };
    match &b.kind {
        Kind::Kernel(k, extra) => {
            let mut c = Command::new(k);
            c.args(*extra);
            c.arg("--root").arg(root);
            if let Some(port) = nat {
                c.arg("--net").arg(format!("user,allow=tcp:127.0.0.1:{port}"));
            }
            c.arg("--").args(argv);
            c
        }
        Kind::Gvisor(_) | Kind::Proot(_) => {
            let mut c = peers::wrapper_command(&b.kind).expect("a wrapping peer");
            c.arg(host_path(&argv[0])).args(&argv[1..]);
            c
        }
        Kind::Native | Kind::Uml(_) => {
            let mut c = Command::new(host_path(&argv[0]));
            c.args(&argv[1..])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", "/");
            c
        }
    }
}

/// The command of a host-side run under `b`.
fn host_command(b: &Backend, roots: &Roots, what: HostRun) -> Command {
    if let Kind::Uml(linux) = &b.kind {
        return peers::uml_command(
            linux,
            &roots.full,
            match what {
                HostRun::Hello => "hello",
                HostRun::Sleeper => "idle",
                HostRun::Shell => "shell",
            },
        );
    }
    let (root, argv): (&Path, &[&str]) = match what {
        HostRun::Hello => (&roots.tiny, &["/tests/hello"]),
        HostRun::Sleeper => (&roots.tiny, &["/tests/sleeper", "1", "0"]),
        HostRun::Shell => (&roots.full, &["/bin/sh", "-c", "exit"]),
    };
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    command(b, root, &argv)
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

/// The argument vector of a guest operation (`/tests/PROG OP ITERS [PATH]`),
/// with paths as `b` sees them: the guest's (our kernels, UML) or the
/// host's (native, gVisor, which runs the native command line).
fn guest_argv(b: &Backend, roots: &Roots, op: &Op, quick: bool) -> Option<Vec<String>> {
    let How::Guest {
        prog,
        full,
        quick: q,
        path,
    } = op.how
    else {
        return None;
    };
    let iters = if quick || b.peer() { q } else { full };
    let mut argv = vec![
        format!("/tests/{prog}"),
        op.name.to_string(),
        iters.to_string(),
    ];
    let (host, root) = match b.kind {
        Kind::Native | Kind::Gvisor(_) | Kind::Proot(_) => (
            true,
            if prog == "bench_ops" || prog == "bench_net" {
                &roots.main
            } else {
                &roots.full
            },
        ),
        _ => (false, &roots.main),
    };
    let shm = Path::new("/dev/shm");
    match path {
        PathArg::None => {}
        PathArg::File if host => argv.push(root.join("tests/hello").display().to_string()),
        PathArg::Program if host => argv.push(root.join("tests/bench_true").display().to_string()),
        PathArg::Dir if matches!(b.kind, Kind::Native) => {
            argv.push(roots.native_tmp.display().to_string())
        }
        PathArg::Tmpfs if matches!(b.kind, Kind::Native) && shm.is_dir() => {
            argv.push(shm.display().to_string())
        }
        PathArg::Tmpfs if matches!(b.kind, Kind::Native) => {
            argv.push(roots.native_tmp.display().to_string())
        }
        PathArg::Disk if host => argv.push(roots.disk_img.display().to_string()),
        PathArg::Disk => argv.push("/dev/ubda".into()),
        PathArg::HostServer if host => argv.push(format!("127.0.0.1:{}", roots.server_port)),
        PathArg::HostServer => argv.push(format!("10.0.2.2:{}", roots.server_port)),
        PathArg::File => argv.push("/tests/hello".into()),
        PathArg::Program => argv.push("/tests/bench_true".into()),
        // Guests and gVisor: /tmp is in memory (gVisor's root overlay too).
        PathArg::Dir | PathArg::Tmpfs => argv.push("/tmp".into()),
    }
    Some(argv)
}

/// The figure `bench OP VALUE UNIT` of `op` in a program's output.
fn parse_sample(stdout: &str, op: &str) -> Option<Result<f64, String>> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("bench {op} ")))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    let v = w.get(2)?;
    Some(match v.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(w.get(3..).map(|r| r.join(" ")).unwrap_or_default()),
    })
}

fn measure_guest(b: &Backend, roots: &Roots, op: &Op, quick: bool, timeout: Duration) -> Sample {
    let argv = guest_argv(b, roots, op, quick).ok_or("not a guest operation")?;
    let root = if argv[0].ends_with("bench_ops") || argv[0].ends_with("bench_net") {
        &roots.main
    } else {
        &roots.full
    };
    let cmd = match (&b.kind, op.how) {
        // The disk rows: the image attached as /dev/ubda.
        (Kind::Kernel(k, extra), How::Guest { path: PathArg::Disk, .. }) => {
            let mut c = Command::new(k);
            c.args(*extra).arg("--root").arg(root).arg("--ubd").arg(format!("0={}", roots.disk_img.display())).arg("--").args(&argv);
            c
        }
        _ => command_net(b, root, &argv, needs_nat(op).then_some(roots.server_port)),
    };
    let r = run_timed(cmd, timeout)?;
    match parse_sample(&r.stdout, op.name) {
        Some(Ok(v)) if r.code == Some(0) => Ok(v),
        Some(Err(why)) if !why.is_empty() => Err(why),
        _ => Err(failure(&r)),
    }
}

/// The guest port `bench_net serve` listens on behind the `hostfwd` rule.
const FWD_GUEST_PORT: u16 = 5001;

/// A free port on the host's 127.0.0.1 (bound, then released: should
/// another process take it in between, that sample is n/a).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The host-side client of `bench_net`'s protocol (see its docs): ns per
/// 1-byte round trip (`rr`), or MB/s of `n` 64 KiB writes until the server
/// has read them all.
fn host_client(rr: bool, port: u16, n: usize, timeout: Duration) -> Result<f64, String> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    c.set_nodelay(true).map_err(|e| io("TCP_NODELAY", e))?;
    c.set_read_timeout(Some(timeout))
        .and_then(|()| c.set_write_timeout(Some(timeout)))
        .map_err(|e| io("timeout", e))?;
    if rr {
        c.write_all(b"r").map_err(|e| io("write", e))?;
        let mut b = [7u8; 1];
        let mut one = |c: &mut std::net::TcpStream| -> Result<(), String> {
            c.write_all(&b).map_err(|e| io("write", e))?;
            c.read_exact(&mut b).map_err(|e| io("read", e))
        };
        for _ in 0..n / 10 {
            one(&mut c)?;
        }
        let t0 = Instant::now();
        for _ in 0..n {
            one(&mut c)?;
        }
        Ok(t0.elapsed().as_nanos() as f64 / n as f64)
    } else {
        c.write_all(b"b").map_err(|e| io("write", e))?;
        let buf = vec![0x5au8; 64 * 1024];
        let t0 = Instant::now();
        for _ in 0..n {
            c.write_all(&buf).map_err(|e| io("write", e))?;
        }
        c.shutdown(std::net::Shutdown::Write)
            .map_err(|e| io("shutdown", e))?;
        let mut k = [0u8; 1];
        c.read_exact(&mut k).map_err(|e| io("read", e))?;
        let s = t0.elapsed().as_secs_f64();
        Ok((n * buf.len()) as f64 / s / 1e6)
    }
}

/// A [`How::Forwarded`] row under `b`: starts `bench_net serve`, waits for
/// its `listening PORT` line, and times [`host_client`] against it.
fn measure_fwd(b: &Backend, roots: &Roots, op: &Op, quick: bool, timeout: Duration) -> Sample {
    use std::io::BufRead;
    let How::Forwarded { full, quick: q } = op.how else {
        return Err("not a forwarded operation".into());
    };
    let n = if quick { q } else { full };
    let (mut cmd, host_port) = match &b.kind {
        Kind::Native => {
            let argv = ["/tests/bench_net", "serve", "0", "127.0.0.1"].map(String::from);
            (command(b, &roots.main, &argv), None)
        }
        Kind::Kernel(k, extra) => {
            let hp = free_port()?;
            let mut c = Command::new(k);
            c.args(*extra);
            c.arg("--root")
                .arg(&roots.main)
                .arg("--net")
                .arg(format!("user,hostfwd=tcp:127.0.0.1:{hp}-:{FWD_GUEST_PORT}"))
                .args(["--", "/tests/bench_net", "serve"])
                .arg(FWD_GUEST_PORT.to_string());
            (c, Some(hp))
        }
        _ => return Err("network rows are not measured under the peers".into()),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let out_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(p) = l.trim().strip_prefix("listening ") {
                let _ = tx.send(p.trim().parse::<u16>().ok());
            }
            lines.push(l);
        }
        lines.join("\n")
    });
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let err_thread = std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = stderr.read_to_end(&mut data);
        String::from_utf8_lossy(&data).into_owned()
    });
    let sample = match rx.recv_timeout(timeout) {
        Ok(Some(p)) => host_client(
            op.name.ends_with("_rr"),
            host_port.unwrap_or(p),
            n,
            deadline.saturating_duration_since(Instant::now()),
        ),
        Ok(None) => Err("bad `listening` line".into()),
        Err(_) => Err("the server never listened".into()),
    };
    // The server exits after its one connection; wait for it, then make
    // sure. After a failed client it may never exit: a short grace only.
    let wait_until = if sample.is_ok() {
        deadline
    } else {
        deadline.min(Instant::now() + Duration::from_secs(2))
    };
    let mut code = None;
    while Instant::now() < wait_until {
        match child.try_wait() {
            Ok(Some(st)) => {
                code = Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    // SAFETY: kills the process group we created for this child (ESRCH when it is gone is fine).
    unsafe { kill(-pid, SIGKILL) };
    let _ = child.wait();
    let r = RunOut {
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
        code,
        first_output: None,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
    };
    match (sample, parse_sample(&r.stdout, "serve")) {
        (_, Some(Err(why))) if !why.is_empty() => Err(format!("server: {why}")),
        (Ok(v), _) if r.code == Some(0) => Ok(v),
        (Ok(_), _) => Err(format!("server: {}", failure(&r))),
        (Err(e), _) if r.code.is_some_and(|c| c != 0) => {
            Err(format!("{e} (server: {})", failure(&r)))
        }
        (Err(e), _) => Err(e),
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
    match run_marked(host_command(b, roots, HostRun::Hello), timeout, "Hello") {
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

fn measure_shell(b: &Backend, roots: &Roots, timeout: Duration) -> Sample {
    let r = run_timed(host_command(b, roots, HostRun::Shell), timeout)?;
    if r.code != Some(0) {
        return Err(failure(&r));
    }
    Ok(r.elapsed.as_nanos() as f64)
}

fn measure_idle(
    b: &Backend,
    roots: &Roots,
    hello_cpu: Option<Duration>,
    timeout: Duration,
) -> Sample {
    let r = run_timed(host_command(b, roots, HostRun::Sleeper), timeout)?;
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
        let t = match backend {
            "tt" => tt,
            "skas" => skas,
            _ => return None,
        };
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
        // A slow bandwidth would read 0.00 GB/s.
        "MB/s" if v < 100.0 => format!("{v:.1} MB/s"),
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
        if !b.native() {
            head.push(format!("{} ×native", b.name));
        }
    }
    for b in backends.iter().filter(|b| b.ours()) {
        head.push(format!("{} target", b.name));
    }
    let mut rows = vec![head];
    // With `--only`, the rows measured.
    for op in OPS.iter().filter(|o| res.samples.contains_key(o.name)) {
        let mut row = vec![op.label.to_string()];
        for b in &backends {
            row.push(match res.median(op.name, b.name) {
                Some(v) => show(op, v),
                None => "n/a".into(),
            });
            if !b.native() {
                row.push(
                    res.ratio(op, b.name)
                        .map(show_ratio)
                        .unwrap_or_else(|| "—".into()),
                );
            }
        }
        for b in backends.iter().filter(|b| b.ours()) {
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
    let kernels: Vec<&Backend> = res.active().filter(|b| !b.native()).collect();
    let ops: Vec<&Op> = OPS
        .iter()
        .filter(|o| o.unit != "%" && res.samples.contains_key(o.name))
        .collect();
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
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{ly:.1}" stroke="black" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">target, same scale</text>"#,
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
