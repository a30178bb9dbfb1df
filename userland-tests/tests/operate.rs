//! Running guests the way operators do (issue 13): named guests and their
//! control directories, `rustuml-ctl` against a running guest (list, proc,
//! ps, stats, sysrq, log, stop/go, cad, halt), bad clients on the control
//! socket, stale directories of killed kernels.
//!
//! Each test has its own `XDG_RUNTIME_DIR` (a fresh directory), so guests of
//! other runs or users never show up. Bounds are loose (seconds, CPU ticks
//! over a second or two): functional checks on a busy 2-core machine.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SKAS: &str = "RUSTUML_KERNEL_SKAS";

/// A fresh runtime directory for this test (mode 0700).
fn runtime_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-operate-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn ctl_bin() -> PathBuf {
    let k = kernel_from(SKAS);
    let c = k.with_file_name("rustuml-ctl");
    assert!(c.is_file(), "{} missing: `cargo xtask build` builds it beside kernel-skas", c.display());
    c
}

/// `rustuml-ctl ARGS` with runtime directory `rt`.
fn ctl(rt: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(ctl_bin());
    c.args(args).env("XDG_RUNTIME_DIR", rt).stdin(Stdio::null());
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start rustuml-ctl");
    let pid = child.id();
    let out = child.wait_with_output().expect("rustuml-ctl");
    assert!(pid > 0);
    out
}

fn ok(rt: &Path, args: &[&str]) -> String {
    let o = ctl(rt, args);
    assert!(o.status.success(), "rustuml-ctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails with status 2 and exactly one line on stderr.
fn refused(rt: &Path, args: &[&str]) -> String {
    let o = ctl(rt, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "rustuml-ctl {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// Start kernel-skas named `name` running `sh -c script`.
fn start(rt: &Path, name: &str, script: &str) -> Child {
    let root = default_root();
    let mut cmd = Command::new(kernel_from(SKAS));
    cmd.args(["--name", name, "--root"]).arg(&root).args(["/bin/sh", "-c", script]).env("XDG_RUNTIME_DIR", rt);
    let child = spawn(&mut cmd);
    // Up once its socket answers.
    let sock = rt.join("rustuml").join(name).join("control");
    let t0 = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30), "guest {name} never answered on {}", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// User + system CPU ticks of host process `pid` and its descendants.
fn tree_ticks(pid: u32) -> u64 {
    descendants(pid as i32)
        .iter()
        .filter_map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).ok()?;
            let f: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

fn ticks_over(pid: u32, d: Duration) -> u64 {
    let a = tree_ticks(pid);
    std::thread::sleep(d);
    tree_ticks(pid).saturating_sub(a)
}

/// One raw request on the socket: the whole answer up to `max` bytes.
fn raw(sock: &Path, send: &[u8], max: usize) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(send);
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if buf[..got].ends_with(b"\n") && !buf[..got].starts_with(b"ok ") {
            break;
        }
        if let Some(body) = answer_len(&buf[..got]) {
            if got >= body {
                break;
            }
        }
    }
    buf.truncate(got);
    buf
}

/// The full length of an `ok LEN\n...` answer, once its head is in.
fn answer_len(b: &[u8]) -> Option<usize> {
    let nl = b.iter().position(|&c| c == b'\n')?;
    let n: usize = std::str::from_utf8(b.get(3..nl)?).ok()?.parse().ok()?;
    Some(nl + 1 + n)
}

#[test]
fn ctl_drives_a_named_guest() {
    let _l = lock();
    let rt = runtime_dir("drive");
    // A busy loop (for stop/go) and a sleeper (for ps).
    let mut k = start(&rt, "op1", "sleep 1000 & while :; do :; done");
    let dir = rt.join("rustuml/op1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join("control")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(dir.join("pid")).unwrap().trim(), k.id().to_string());

    let list = ok(&rt, &["list"]);
    let row = list.lines().find(|l| l.starts_with("op1 ")).unwrap_or_else(|| panic!("list: {list}"));
    assert!(row.contains(&k.id().to_string()) && row.contains("/256M") && row.ends_with("running"), "{row}");
    assert!(ok(&rt, &["op1", "version"]).starts_with("rustuml "));
    let ps = ok(&rt, &["op1", "ps"]);
    assert!(ps.contains("sleep 1000") && ps.lines().any(|l| l.trim_start().starts_with("1 ")), "{ps}");
    let mem = ok(&rt, &["op1", "proc", "/proc/meminfo"]);
    assert!(mem.starts_with("MemTotal:         262144 kB"), "{mem}");
    assert!(ok(&rt, &["op1", "proc", "/proc/1/status"]).contains("\nPid:\t1\n"));
    assert!(ok(&rt, &["op1", "proc", "self/cmdline"]).starts_with("/bin/sh\0-c\0"));
    assert!(refused(&rt, &["op1", "proc", "/proc/nonesuch"]).contains("ENOENT"));
    assert!(refused(&rt, &["op1", "proc", "/etc/passwd"]).contains("under /proc"));
    let stats = ok(&rt, &["op1", "stats"]);
    let sh = stats.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("{stats}"));
    let syscalls: u64 = sh.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert!(syscalls > 10, "{stats}");
    assert!(ok(&rt, &["op1", "sysrq", "m"]).contains("Show Memory"));
    ok(&rt, &["op1", "sysrq", "t"]);
    let log = ok(&rt, &["op1", "log"]);
    assert!(log.contains("sysrq: Show Memory") && log.contains("sleep 1000"), "{log}");

    // Bad requests: one line, status 2; the guest goes on.
    assert!(refused(&rt, &["op1", "frobnicate"]).contains("unknown command"));
    assert!(refused(&rt, &["op1", "sysrq", "zz"]).contains("sysrq"));
    assert!(refused(&rt, &["nonesuch", "ps"]).contains("no guest named nonesuch"));
    refused(&rt, &["../op1", "ps"]);
    refused(&rt, &["list", "extra"]);
    // The name is taken: one line, status 2.
    let root = default_root();
    let twin = run(
        Command::new(kernel_from(SKAS)).args(["--name", "op1", "--root"]).arg(&root).arg("/bin/true").env("XDG_RUNTIME_DIR", &rt),
        "second op1",
    );
    assert_eq!((twin.code, twin.stderr.lines().count()), (2, 1), "{}", twin.stderr);
    assert!(twin.stderr.contains("in use by a running guest"), "{}", twin.stderr);

    // Garbage on the socket: answered or cut off, never stalling anyone.
    let sock = dir.join("control");
    let mut noise = vec![0u8; 200_000];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2654435761).to_le_bytes()[3];
    }
    let a = raw(&sock, &noise, 4096);
    assert!(a.is_empty() || a.starts_with(b"error: "), "{:?}", String::from_utf8_lossy(&a));
    let long = [vec![b'x'; 10_000], b"\n".to_vec()].concat();
    assert!(raw(&sock, &long, 4096).starts_with(b"error: request line longer than"));
    assert!(raw(&sock, b"\xff\xfe\n", 4096).starts_with(b"error: the request is not UTF-8"));
    // A slow client (half a line, never finished) and one that hung up
    // mid-request do not keep the next from being served.
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(b"ver").unwrap();
    let mut gone = UnixStream::connect(&sock).unwrap();
    gone.write_all(b"log\n").unwrap();
    drop(gone);
    // Two requests on one connection: two answers, in order.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"version\nps\n").unwrap();
    let mut two = Vec::new();
    let mut buf = [0u8; 4096];
    while answer_len(&two).is_none_or(|n| answer_len(&two[n..]).is_none_or(|m| two.len() < n + m)) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("only {:?}", String::from_utf8_lossy(&two)),
            Ok(n) => two.extend_from_slice(&buf[..n]),
        }
    }
    let first = answer_len(&two).unwrap();
    assert!(two[..first].starts_with(b"ok 39\nrustuml") && two[first..].starts_with(b"ok "), "{:?}", String::from_utf8_lossy(&two));
    assert!(ok(&rt, &["op1", "version"]).starts_with("rustuml "));
    drop(slow);

    // stop: no guest code runs, and the kernel and its stubs use no CPU.
    let busy = ticks_over(k.id(), Duration::from_millis(1500));
    assert!(busy > 30, "the busy guest used only {busy} ticks in 1.5 s");
    assert_eq!(ok(&rt, &["op1", "stop"]), "stopped\n");
    std::thread::sleep(Duration::from_millis(200));
    let paused = ticks_over(k.id(), Duration::from_millis(1500));
    assert!(paused <= 10, "a stopped guest used {paused} ticks in 1.5 s");
    assert!(ok(&rt, &["list"]).lines().any(|l| l.starts_with("op1 ") && l.ends_with("stopped")));
    assert!(ok(&rt, &["op1", "ps"]).contains("sleep 1000"), "a stopped guest still answers");
    assert_eq!(ok(&rt, &["op1", "go"]), "running\n");
    let again = ticks_over(k.id(), Duration::from_millis(1500));
    assert!(again > 30, "after go the busy guest used only {again} ticks in 1.5 s");

    assert!(ok(&rt, &["op1", "reboot"]).contains("not supported"));
    let st = wait_timeout(&mut k, Duration::from_secs(30), "op1 after reboot");
    assert_eq!(st.code(), Some(0));
    assert!(!dir.exists(), "the control directory outlived its kernel");
    let _ = std::fs::remove_dir_all(&rt);
}

#[test]
fn cad_halt_signals_and_stale_directories() {
    let _l = lock();
    let rt = runtime_dir("life");
    // ctrl-alt-del is SIGINT to init.
    let mut k = start(&rt, "cad", "trap 'echo got-cad; exit 7' INT; while :; do sleep 0.1; done");
    // Once the trap is set (init ignores signals it does not handle).
    let t0 = Instant::now();
    while !ok(&rt, &["cad", "ps"]).lines().any(|l| l.ends_with(" sleep 0.1")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the guest shell never reached its loop");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&rt, &["cad", "cad"]);
    let st = wait_timeout(&mut k, Duration::from_secs(30), "cad guest");
    assert_eq!(st.code(), Some(7));
    let mut out = String::new();
    k.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.contains("got-cad"), "{out}");
    assert!(!rt.join("rustuml/cad").exists());

    // halt powers off with status 0 and removes the directory.
    let mut k = start(&rt, "h", "sleep 1000");
    assert_eq!(ok(&rt, &["h", "halt"]), "halting\n");
    assert_eq!(wait_timeout(&mut k, Duration::from_secs(30), "halted guest").code(), Some(0));
    assert!(!rt.join("rustuml/h").exists());

    // SIGTERM: the kernel dies of it, its directory goes with it.
    let mut k = start(&rt, "term", "sleep 1000");
    // SAFETY: a signal to the kernel this test started.
    unsafe { libc::kill(k.id() as i32, libc::SIGTERM) };
    let st = wait_timeout(&mut k, Duration::from_secs(30), "terminated guest");
    assert_eq!(shell_code(st), (128 + libc::SIGTERM, true));
    assert!(!rt.join("rustuml/term").exists(), "SIGTERM left the control directory");

    // SIGKILL leaves it; ctl and the next kernel of that name notice.
    for reuse in [false, true] {
        let mut k = start(&rt, "dead", "sleep 1000");
        let tree = descendants(k.id() as i32);
        k.kill().unwrap();
        let _ = k.wait();
        // (What a SIGKILLed kernel leaves is the spawn tests' business;
        // nothing of it may outlive this test.)
        std::thread::sleep(Duration::from_millis(500));
        for p in tree.iter().filter(|p| proc_info(p.pid).is_some_and(|q| q.start_time == p.start_time)) {
            eprintln!("note: {} ({}) outlived its SIGKILLed kernel by 0.5 s; killing it", p.pid, p.comm);
            // SAFETY: a signal to a process of the tree this test started.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        assert!(rt.join("rustuml/dead/control").exists());
        if reuse {
            let mut k2 = start(&rt, "dead", "sleep 1000");
            ok(&rt, &["dead", "halt"]);
            wait_timeout(&mut k2, Duration::from_secs(30), "second dead");
        } else {
            let o = ctl(&rt, &["list"]);
            assert!(String::from_utf8_lossy(&o.stderr).contains("stale"), "{o:?}");
            assert!(!String::from_utf8_lossy(&o.stdout).contains("dead"));
        }
        assert!(!rt.join("rustuml/dead").exists());
    }
    let _ = std::fs::remove_dir_all(&rt);
}

/// Read from `r` until `pat` shows up (or 20 s pass).
fn read_until(r: &mut dyn Read, pat: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&got).contains(pat) {
        assert!(t0.elapsed() < Duration::from_secs(20), "no {pat:?} in {:?}", String::from_utf8_lossy(&got));
        match r.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(20)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn console_channels_pts_port_file() {
    let _l = lock();
    let rt = runtime_dir("cons");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let file = rt.join("con3.out");
    let root = default_root();
    let script = "echo to3 > /dev/tty3; cat /dev/tty5 2>/tmp/e; cat /tmp/e > /dev/tty3; \
                  setsid sh -c 'exec sh -i </dev/tty1 >/dev/tty1 2>&1' & setsid sh -c 'exec sh -i </dev/tty2 >/dev/tty2 2>&1' & sleep 1000";
    let mut cmd = Command::new(kernel_from(SKAS));
    cmd.args(["--name", "cons", "--root"])
        .arg(&root)
        .arg(format!("con1=port:127.0.0.1:{port}"))
        .arg("con2=pts")
        .arg(format!("con3=file:{}", file.display()))
        .args(["/bin/sh", "-c", script])
        .env("XDG_RUNTIME_DIR", &rt);
    let mut k = spawn(&mut cmd);
    let sock = rt.join("rustuml/cons/control");
    let t0 = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pty's path, from the control socket.
    let conf = ok(&rt, &["cons", "config", "con2"]);
    let pts = conf.trim().strip_prefix("con2=pts:").unwrap_or_else(|| panic!("{conf}")).to_string();
    assert!(ok(&rt, &["cons", "config"]).contains(&format!("con1=port:127.0.0.1:{port}")));
    assert_eq!(ok(&rt, &["cons", "config", "con4"]), "con4=none\n");

    // A shell on the TCP console (what `nc 127.0.0.1 PORT` gets).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"echo port-$((6*7)); tty\n").unwrap();
    let got = read_until(&mut s, "/dev/tty1");
    assert!(got.contains("port-42\r\n"), "{got:?}");
    // A second client is turned away while the first holds the line.
    let mut s2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s2.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(read_until(&mut s2, "busy").contains("one client at a time"));

    // A shell on the host pty.
    let mut p = std::fs::OpenOptions::new().read(true).write(true).open(&pts).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.write_all(b"echo pts-$((2+3)); tty\n").unwrap();
    let got = {
        // (A pty read blocks: read on a thread, bounded by the test's wait.)
        let mut p2 = p.try_clone().unwrap();
        let h = std::thread::spawn(move || read_until(&mut p2, "/dev/tty2"));
        let t0 = Instant::now();
        while !h.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(20), "nothing from the pty");
            std::thread::sleep(Duration::from_millis(20));
        }
        h.join().unwrap()
    };
    assert!(got.contains("pts-5\r\n"), "{got:?}");

    // The file line got its output; an unattached line is ENXIO.
    let t0 = Instant::now();
    while !std::fs::read_to_string(&file).unwrap_or_default().contains("No such device or address") {
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", std::fs::read_to_string(&file));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("to3\n"));
    ok(&rt, &["cons", "halt"]);
    assert_eq!(wait_timeout(&mut k, Duration::from_secs(30), "cons").code(), Some(0));
    // Bad channels: one line, status 2.
    for bad in ["con1=port:0.0.0.0:1", "con0=pts", "con9=null", "con1=tty"] {
        let o = run(Command::new(kernel_from(SKAS)).args(["--root"]).arg(&root).args([bad, "/bin/true"]), bad);
        assert_eq!((o.code, o.stderr.lines().count()), (2, 1), "{bad}: {}", o.stderr);
    }
    let _ = std::fs::remove_dir_all(&rt);
}

#[test]
fn tty_log_and_audit_log() {
    let _l = lock();
    let rt = runtime_dir("logs");
    let (dir, audit) = (rt.join("ttylog"), rt.join("audit.json"));
    let root = default_root();
    // A shell on a guest pty (python's pty module, as sshd or script(1)
    // would make one) and on the console; a write, a connect and a bind.
    let script = r#"echo secret-word | python3 -c 'import pty; pty.spawn(["/bin/sh","-c","echo on-the-pty; read x; echo got-$x"])'
echo on-console > /tmp/w; python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 4711)); c=socket.socket(); c.connect_ex(("127.0.0.1", 4712))'
rm -f /tmp/w"#;
    let o = run(
        Command::new(kernel_from(SKAS))
            .args(["--root"])
            .arg(&root)
            .arg(format!("tty_log_dir={}", dir.display()))
            .arg(format!("audit_log={}", audit.display()))
            .args(["/bin/sh", "-c", script]),
        "logged guest",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("got-secret-word"), "{}", o.stdout);
    let files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let pts = files.iter().find(|f| f.starts_with("pts-0.")).unwrap_or_else(|| panic!("{files:?}"));
    let log = std::fs::read_to_string(dir.join(pts)).unwrap();
    // The shell on the pty read the word and wrote both lines; every record
    // has a time, a pid and a session.
    // (The shell reads its line byte by byte: one record each.)
    let typed: String = log
        .lines()
        .filter(|l| l.contains("\"dir\":\"in\""))
        .filter_map(|l| l.split("\"data\":\"").nth(1)?.strip_suffix("\"}").map(str::to_string))
        .collect();
    assert!(typed.contains("secret-word"), "{log}");
    assert!(log.lines().any(|l| l.contains("\"dir\":\"out\"") && l.contains("got-secret-word")), "{log}");
    assert!(log.lines().all(|l| l.starts_with("{\"time\":") && l.contains("\"pid\":") && l.contains("\"sid\":")), "{log}");
    assert!(files.iter().any(|f| f.starts_with("console.")), "{files:?}");
    // Replay shows what the pty showed.
    let r = ok(&rt, &["replay", dir.join(pts).to_str().unwrap(), "--speed", "100"]);
    assert!(r.contains("on-the-pty") && r.contains("got-secret-word"), "{r}");
    assert!(refused(&rt, &["replay", audit.to_str().unwrap()]).contains("not a tty_log record"));
    // What the guest deleted is still in the log.
    let a = std::fs::read_to_string(&audit).unwrap();
    for want in [
        r#""event":"execve","pid":1,"uid":0,"argv":["/bin/sh","-c","#,
        r#""argv":["rm","-f","/tmp/w"]"#,
        r#""path":"/tmp/w","flags":577"#,
        r#""event":"bind","#,
        r#""addr":"127.0.0.1:4711""#,
        r#""event":"connect","#,
        r#""addr":"127.0.0.1:4712""#,
    ] {
        assert!(a.contains(want), "{want} missing from\n{a}");
    }
    assert!(a.lines().all(|l| l.starts_with("{\"time\":") && l.ends_with('}')), "{a}");
    let _ = std::fs::remove_dir_all(&rt);
}
