//! Running a program under a backend and taking one sample of a row.

use super::*;

#[repr(C)]
pub(super) struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
pub(super) struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

pub(super) const RUSAGE_CHILDREN: i32 = -1;
pub(super) const SIGKILL: i32 = 9;

/// CPU time of this process's waited-for children so far.
pub(super) fn children_cpu() -> Duration {
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
pub(super) fn run_timed(cmd: Command, timeout: Duration) -> Result<RunOut, String> {
    run_marked(cmd, timeout, "")
}

/// [`run_timed`], with `first_output` the time at which `marker` first
/// appeared on stdout (UML prints its own messages before the guest's).
pub(super) fn run_marked(mut cmd: Command, timeout: Duration, marker: &'static str) -> Result<RunOut, String> {
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
pub(super) struct Roots {
    /// `/tests/{bench_ops,bench_true,hello}` and `/tmp`.
    pub(super) main: PathBuf,
    /// `/tests/{hello,sleeper}` only: boot figures.
    pub(super) tiny: PathBuf,
    /// The host's userland (what the default root has: `/bin/sh`, tar,
    /// gzip, python3, ...) plus every benchmark program and the UML init
    /// scripts (`/bench-uml/*.sh`): macro rows, the shell boot, and UML.
    pub(super) full: PathBuf,
    /// Writable directory for the native `file_rw`.
    pub(super) native_tmp: PathBuf,
    /// Port of the host's TCP server on 127.0.0.1 (the NAT rows).
    pub(super) server_port: u16,
    /// The 64 MiB image of the disk rows.
    pub(super) disk_img: PathBuf,
}

pub(super) fn copy_prog(p: &Paths, name: &str, root: &Path) -> Result<(), String> {
    let from = p.guest_bin_dir().join(name);
    let to = root.join("tests").join(name);
    fs::copy(&from, &to)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    set_mode(&to, 0o755)
}

pub(super) fn make_roots(p: &Paths) -> Result<Roots, String> {
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
pub(super) fn serve_bench_net(mut c: std::net::TcpStream) -> std::io::Result<()> {
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
pub(super) fn host_server() -> Result<u16, String> {
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
pub(super) enum HostRun {
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
pub(super) fn command(b: &Backend, root: &Path, argv: &[String]) -> Command {
    command_net(b, root, argv, None)
}

/// [`command`], with the kernels given a user-mode NAT interface that may
/// reach the host server's loopback port `nat` (natively the program
/// reaches it directly).
pub(super) fn command_net(b: &Backend, root: &Path, argv: &[String], nat: Option<u16>) -> Command {
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
pub(super) fn host_command(b: &Backend, roots: &Roots, what: HostRun) -> Command {
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
pub(super) fn failure(r: &RunOut) -> String {
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
pub(super) fn guest_argv(b: &Backend, roots: &Roots, op: &Op, quick: bool) -> Option<Vec<String>> {
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
pub(super) fn parse_sample(stdout: &str, op: &str) -> Option<Result<f64, String>> {
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

pub(super) fn measure_guest(b: &Backend, roots: &Roots, op: &Op, quick: bool, timeout: Duration) -> Sample {
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
pub(super) const FWD_GUEST_PORT: u16 = 5001;

/// A free port on the host's 127.0.0.1 (bound, then released: should
/// another process take it in between, that sample is n/a).
pub(super) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The host-side client of `bench_net`'s protocol (see its docs): ns per
/// 1-byte round trip (`rr`), or MB/s of `n` 64 KiB writes until the server
/// has read them all.
pub(super) fn host_client(rr: bool, port: u16, n: usize, timeout: Duration) -> Result<f64, String> {
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

/// Requests per second of `ab -n N -c 50` against the HTTP server on the
/// host's 127.0.0.1:`port`; an error when any request failed.
pub(super) fn ab_client(port: u16, n: usize, timeout: Duration) -> Result<f64, String> {
    let mut cmd = Command::new("ab");
    cmd.args(["-q", "-r", "-n", &n.to_string(), "-c", "50", "-s", "10"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .process_group(0);
    let r = run_timed(cmd, timeout).map_err(|e| format!("ab: {e} (Debian's apache2-utils)"))?;
    if r.code != Some(0) {
        return Err(format!("ab: {}", failure(&r)));
    }
    let field = |name: &str| {
        r.stdout.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    match (field("Failed requests:"), field("Requests per second:")) {
        (Some(f), _) if f > 0.0 => Err(format!("ab: {f} of {n} requests failed")),
        (Some(_), Some(rps)) => Ok(rps),
        _ => Err(format!("ab printed no figures: {}", failure(&r))),
    }
}

/// The exit status of `child` (128 + signal when killed), if it exits by
/// `until`.
fn exit_code_by(child: &mut std::process::Child, until: Instant) -> Option<i32> {
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// A [`How::Forwarded`] row under `b`: starts `bench_net serve`, waits for
/// its `listening PORT` line, and times [`host_client`] against it.
pub(super) fn measure_fwd(b: &Backend, roots: &Roots, op: &Op, quick: bool, timeout: Duration) -> Sample {
    use std::io::BufRead;
    let How::Forwarded { full, quick: q } = op.how else {
        return Err("not a forwarded operation".into());
    };
    let n = if quick { q } else { full };
    // `http_*` rows: the threaded HTTP server, serving until killed, and ab.
    let http = op.name.starts_with("http");
    let mode = if http { "http" } else { "serve" };
    let (mut cmd, host_port) = match &b.kind {
        Kind::Native => {
            let argv = ["/tests/bench_net", mode, "0", "127.0.0.1"].map(String::from);
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
                .args(["--", "/tests/bench_net", mode])
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
        Ok(Some(p)) if http => ab_client(host_port.unwrap_or(p), n, deadline.saturating_duration_since(Instant::now())),
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
    // The HTTP server never exits.
    let wait_until = if http {
        Instant::now()
    } else if sample.is_ok() {
        deadline
    } else {
        deadline.min(Instant::now() + Duration::from_secs(2))
    };
    let code = exit_code_by(&mut child, wait_until);
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
        (Ok(v), _) if r.code == Some(0) || (http && r.code.is_none()) => Ok(v),
        (Ok(_), _) => Err(format!("server: {}", failure(&r))),
        (Err(e), _) if r.code.is_some_and(|c| c != 0) => {
            Err(format!("{e} (server: {})", failure(&r)))
        }
        (Err(e), _) => Err(e),
    }
}

/// Host-side boot figures and the idle CPU sample of one repetition.
pub(super) struct HostSamples {
    pub(super) first_output: Sample,
    pub(super) to_exit: Sample,
    /// CPU time of the hello run, for the idle figure.
    pub(super) hello_cpu: Option<Duration>,
}

pub(super) fn measure_boot(b: &Backend, roots: &Roots, timeout: Duration) -> HostSamples {
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

pub(super) fn measure_shell(b: &Backend, roots: &Roots, timeout: Duration) -> Sample {
    let r = run_timed(host_command(b, roots, HostRun::Shell), timeout)?;
    if r.code != Some(0) {
        return Err(failure(&r));
    }
    Ok(r.elapsed.as_nanos() as f64)
}

pub(super) fn measure_idle(
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
pub(super) fn probe(kernel: &Path, roots: &Roots) -> Result<(), String> {
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

/// Bytes a pseudo-terminal's master reads, with the time of each read.
struct PtyReader {
    rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    seen: Vec<u8>,
}

impl PtyReader {
    fn new(master: fs::File) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        PtyReader { rx, seen: Vec::new() }
    }

    /// Waits for `text` in what arrives from now on; when it came.
    fn wait_for(&mut self, text: &[u8], until: Instant) -> Result<Instant, String> {
        self.seen.clear();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let (at, chunk) = self.rx.recv_timeout(left).map_err(|_| {
                format!("no {:?} on the terminal (last: {:?})", String::from_utf8_lossy(text), String::from_utf8_lossy(&self.seen[self.seen.len().saturating_sub(80)..]))
            })?;
            self.seen.extend_from_slice(&chunk);
            if self.seen.windows(text.len()).any(|w| w == text) {
                return Ok(at);
            }
        }
    }

    /// Forgets what has arrived so far.
    fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// A [`How::CtrlC`] sample: an interactive `/bin/sh` on a pseudo-terminal
/// (the guest's console under our kernels), five times a CPU hog started
/// and interrupted with Ctrl-C; the median time from the byte written to
/// the new prompt read.
pub(super) fn measure_ctrl_c(b: &Backend, roots: &Roots, timeout: Duration) -> Sample {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut m, mut sl) = (-1, -1);
    // SAFETY: openpty writes two fds into m and sl; no name, termios or size.
    if unsafe { libc::openpty(&mut m, &mut sl, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } < 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just opened and are owned here alone.
    let (master, slave) = unsafe { (fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(sl)) };
    let stdio = |f: &OwnedFd| f.try_clone().map(Stdio::from).map_err(|e| e.to_string());
    let argv = ["/bin/sh", "-i"].map(String::from);
    let mut cmd = command(b, &roots.full, &argv);
    cmd.env("TERM", "dumb").stdin(stdio(&slave)?).stdout(stdio(&slave)?).stderr(stdio(&slave)?);
    // SAFETY: setsid and ioctl are async-signal-safe; the child's fd 0 is the slave.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    drop(slave);
    let mut input = master.try_clone().map_err(|e| e.to_string())?;
    let mut out = PtyReader::new(master);
    let deadline = Instant::now() + timeout;
    let mut run = || -> Sample {
        let prompt = b"@P@ ";
        input.write_all(b"PS1='@P@ '\n").map_err(|e| e.to_string())?;
        out.wait_for(prompt, deadline)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            // The hog says when it runs: a Ctrl-C typed between the shell's
            // fork and the hog's start would test the shell, not delivery.
            input.write_all(b"/bin/sh -c 'echo @H''@; while :; do :; done'\n").map_err(|e| e.to_string())?;
            out.wait_for(b"@H@", deadline)?;
            std::thread::sleep(Duration::from_millis(100));
            out.drain();
            let t0 = Instant::now();
            input.write_all(b"\x03").map_err(|e| e.to_string())?;
            let at = out.wait_for(prompt, deadline.min(t0 + Duration::from_secs(10)))?;
            times.push(at.saturating_duration_since(t0).as_nanos() as f64);
        }
        median(&times).ok_or_else(|| "no sample".into())
    };
    let sample = run();
    let pid = child.id() as i32;
    // SAFETY: kills the session and process group the child leads (setsid).
    unsafe { kill(-pid, SIGKILL) };
    let _ = child.wait();
    sample
}

/// A [`How::SwitchPing`] sample: the average round trip of 20 `busybox
/// ping`s 50 ms apart, after 3 that wait for the other guest's boot and ARP.
pub(super) fn measure_switch_ping(b: &Backend, roots: &Roots, timeout: Duration) -> Sample {
    let ping = |to: &str| format!("busybox ping -c 3 -w 20 {to} > /dev/null; busybox ping -q -c 20 -i 0.05 {to}");
    let argv = |script: String| ["/bin/sh".to_string(), "-c".into(), script];
    let (pinger, _switch, idle) = match &b.kind {
        Kind::Native => (command(b, &roots.full, &argv(ping("127.0.0.1"))), None, None),
        Kind::Kernel(k, extra) => {
            let dir = std::env::temp_dir().join(format!("rustuml-bench-switch-{}", std::process::id()));
            let _ = fs::create_dir_all(&dir);
            let path = dir.join("lan.sock");
            let _ = fs::remove_file(&path);
            let sw = drivers::net::switch::SwitchThread::spawn(&path).map_err(|e| format!("switch: {e}"))?;
            let guest = |ip: &str, script: String| {
                let mut c = Command::new(k);
                c.args(*extra).arg("--root").arg(&roots.full).arg("--net");
                c.arg(format!("switch,path={},ip={ip}/24", path.display())).arg("--").args(argv(script));
                c
            };
            let mut idle = guest("10.0.0.1", "exec sleep 600".into());
            idle.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
            let idle = idle.spawn().map_err(|e| format!("cannot start the idle guest: {e}"))?;
            (guest("10.0.0.2", ping("10.0.0.1")), Some(sw), Some(idle))
        }
        _ => return Err("not measured under the peers".into()),
    };
    let mut pinger = pinger;
    pinger.stdin(Stdio::null()).process_group(0);
    let r = run_timed(pinger, timeout);
    if let Some(mut idle) = idle {
        // SAFETY: kills the process group this idle guest leads.
        unsafe { kill(-(idle.id() as i32), SIGKILL) };
        let _ = idle.wait();
    }
    let r = r?;
    let avg = r
        .stdout
        .lines()
        .find_map(|l| l.split_once("min/avg/max = ").map(|(_, v)| v.to_string()))
        .and_then(|v| v.split('/').nth(1)?.parse::<f64>().ok());
    match avg {
        Some(ms) if r.code == Some(0) => Ok(ms * 1e6),
        _ => Err(format!("ping: {}", failure(&r))),
    }
}

/// A [`How::KernelMem`] sample: bytes per socket opened between `bench_net`'s
/// two stages, from the kernel process's anonymous memory (`RssAnon`: its
/// heap, not the guest's pages, which live in a shared memfd) or natively
/// the host kernel's `Slab`.
pub(super) fn measure_kernel_mem(b: &Backend, roots: &Roots, op: &Op, quick: bool, timeout: Duration) -> Sample {
    use std::io::BufRead;
    let How::KernelMem { full, quick: q } = op.how else {
        return Err("not a kernel-memory row".into());
    };
    let prog_op = op.name.trim_end_matches("_mem").to_string() + "s";
    let argv = ["/tests/bench_net".to_string(), prog_op.clone(), (if quick { q } else { full }).to_string()];
    let mut cmd = command(b, &roots.main, &argv);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id();
    let native = b.native();
    // kB of the figure this backend is judged by.
    let sample_kb = move || -> Option<f64> {
        let (file, key) = if native { ("/proc/meminfo".to_string(), "Slab:") } else { (format!("/proc/{pid}/status"), "RssAnon:") };
        let text = fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if l.starts_with("stage ") {
                let _ = tx.send((l.clone(), sample_kb()));
            }
            all.push(l);
        }
        all.join("\n")
    });
    let deadline = Instant::now() + timeout;
    let stage = |n: &str| -> Result<(String, f64), String> {
        let (line, kb) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).map_err(|_| format!("no `stage {n}` line"))?;
        Ok((line, kb.ok_or("cannot read the memory figure")?))
    };
    let sample = stage("1").and_then(|(_, m1)| {
        let (line, m2) = stage("2")?;
        let count: f64 = line.split_whitespace().nth(2).and_then(|c| c.parse().ok()).filter(|&c: &f64| c > 0.0).ok_or("bad `stage 2` line")?;
        Ok((m2 - m1).max(0.0) * 1024.0 / count)
    });
    let code = exit_code_by(&mut child, deadline);
    // SAFETY: kills the process group we created for this child (ESRCH when it is gone is fine).
    unsafe { kill(-(pid as i32), SIGKILL) };
    let _ = child.wait();
    let out = reader.join().unwrap_or_default();
    match (sample, parse_sample(&out, &prog_op)) {
        (_, Some(Err(why))) if !why.is_empty() => Err(why),
        (Ok(v), _) if code == Some(0) => Ok(v),
        (Ok(_), _) => Err(format!("exit {code:?}")),
        (Err(e), _) => Err(e),
    }
}
