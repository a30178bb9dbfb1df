//! The kernel binaries' network links (`--net`): bad specifications, a guest
//! on a virtual switch (in this test process, with a host-side port to talk
//! to the guest), and an idle guest with a link staying idle.

mod common;

use common::*;
use drivers::net::switch::{SwitchLink, SwitchThread, MAX_FRAME};
use hal::NetDevice;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn kernels() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("skas", kernel_from("RUSTUML_KERNEL_SKAS")),
        ("tt", kernel_from("RUSTUML_KERNEL_TT")),
    ]
}

fn sock_path(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-nettest-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}.sock"))
}

#[test]
fn bad_net_specs_are_one_line_errors_with_status_2() {
    let _g = lock();
    let root = default_root();
    for (hal, kernel) in kernels() {
        for spec in [
            "bogus",
            "switch",
            "switch,path=/nonexistent/dir/sw.sock",
            "switch,path=/tmp/x.sock,ip=10.0.0.1/33",
            "switch,path=/tmp/x.sock,ip=10.0.0.1/24,gw=10.1.0.1",
            "tap",
            "tap,ifname=this-name-is-too-long",
        ] {
            let root_s = root.display().to_string();
            let out = run_kernel(
                &kernel,
                &["--root", &root_s, "--net", spec, "--", "/tests/hello"],
            );
            assert_eq!(out.code, 2, "{hal} --net {spec}: {out:?}");
            assert_eq!(
                out.stderr.lines().count(),
                1,
                "{hal} --net {spec}: {}",
                out.stderr
            );
            assert!(
                out.stdout.is_empty(),
                "{hal} --net {spec}: the guest must not run"
            );
        }
    }
}

/// A kernel's CPU time so far (user + system), from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A broadcast ARP request "who has `target`?" from `mac`/`ip`.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// A guest plugged into a switch: it joins at boot, leaves at exit, and
/// sleeping with frames arriving (its kernel drains them and goes back to
/// sleep) costs next to no host CPU.
#[test]
fn guest_on_a_switch_joins_leaves_and_idles() {
    let _g = lock();
    let root = default_root();
    for (hal, kernel) in kernels() {
        let path = sock_path(&format!("idle-{hal}"));
        let sw = SwitchThread::spawn(&path).unwrap();
        let mut host = SwitchLink::connect(&path, [2, 0, 0, 0, 0, 0x99]).unwrap();
        let spec = format!(
            "switch,path={},ip=10.5.0.2/24,mac=02:00:00:00:05:02",
            path.display()
        );
        let mut cmd = Command::new(&kernel);
        cmd.args([
            "--root",
            &root.display().to_string(),
            "--net",
            &spec,
            "--",
            "/bin/sh",
            "-c",
            "sleep 3; echo slept",
        ])
        .env("TERM", "xterm");
        let mut child = spawn(&mut cmd);
        let pid = child.id();
        // The guest's link joins the switch at boot.
        let t0 = Instant::now();
        while sw.stats().ports < 2 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let joined = sw.stats().ports == 2;
        // Frames for the guest: ARP requests for its address, plus junk.
        for i in 0..100u8 {
            host.send(&arp_request(
                [2, 0, 0, 0, 0, 0x99],
                [10, 5, 0, 1],
                [10, 5, 0, 2],
            ));
            let mut junk = vec![i; 14 + i as usize];
            junk[..6].copy_from_slice(&[2, 0, 0, 0, 5, 2]);
            junk[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
            host.send(&junk);
        }
        std::thread::sleep(Duration::from_millis(700));
        let before = cpu_time(pid);
        std::thread::sleep(Duration::from_millis(1500));
        let spent = cpu_time(pid).saturating_sub(before);
        let st = wait_timeout(&mut child, TIMEOUT, &format!("{hal} guest on a switch"));
        assert!(st.success(), "{hal}: {st:?}");
        assert!(joined, "{hal}: the guest's link never joined the switch");
        assert!(
            spent < Duration::from_millis(200),
            "{hal}: an idle guest with a link used {spent:?} of CPU in 1.5 s"
        );
        // Its port is gone once the kernel exited.
        let t0 = Instant::now();
        while sw.stats().ports != 1 && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sw.stats().ports, 1, "{hal}: the guest's port outlived it");
        let mut buf = vec![0u8; MAX_FRAME];
        while host.recv(&mut buf).is_some() {}
        drop(host);
        sw.stop().unwrap();
    }
}

/// The guest's stack answers ARP on a switch link, after a burst of garbage
/// frames: the whole path from a host-side port through the switch, the
/// kernel's link and NET interrupt, to the guest's interface and back.
#[test]
fn guest_answers_arp_through_the_switch() {
    let _g = lock();
    let root = default_root();
    for (hal, kernel) in kernels() {
        let path = sock_path(&format!("arp-{hal}"));
        let sw = SwitchThread::spawn(&path).unwrap();
        let my_mac = [2, 0, 0, 0, 0, 0x98];
        let guest_mac = [2, 0, 0, 0, 6, 2];
        let mut host = SwitchLink::connect(&path, my_mac).unwrap();
        let spec = format!(
            "switch,path={},ip=10.6.0.2/24,mac=02:00:00:00:06:02",
            path.display()
        );
        let mut cmd = Command::new(&kernel);
        cmd.args([
            "--root",
            &root.display().to_string(),
            "--net",
            &spec,
            "--",
            "/bin/sh",
            "-c",
            "sleep 20",
        ])
        .env("TERM", "xterm");
        let mut child = spawn(&mut cmd);
        // First garbage: random frames to the guest's MAC and to everyone,
        // some with an IPv4 or ARP ethertype, of every length. The guest's
        // kernel must drop them and carry on.
        let mut seed = 0x9e37_79b9u32 ^ std::process::id();
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for i in 0..600usize {
            let len = 14 + (rnd() as usize % (MAX_FRAME - 13));
            let mut f: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            f[..6].copy_from_slice(if i % 2 == 0 { &guest_mac } else { &[0xff; 6] });
            f[6..12].copy_from_slice(&my_mac);
            match i % 3 {
                0 => f[12..14].copy_from_slice(&[8, 0]),
                1 => f[12..14].copy_from_slice(&[8, 6]),
                _ => {}
            }
            if i % 3 == 0 && len > 34 {
                f[14] = 0x45; // looks like IPv4, the rest random
            }
            host.send(&f);
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut buf = vec![0u8; MAX_FRAME];
        let mut reply = None;
        let t0 = Instant::now();
        'outer: while t0.elapsed() < Duration::from_secs(4) {
            host.send(&arp_request(my_mac, [10, 6, 0, 1], [10, 6, 0, 2]));
            std::thread::sleep(Duration::from_millis(100));
            while let Some(n) = host.recv(&mut buf) {
                let f = &buf[..n];
                // An ARP reply (op 2) from the guest's MAC saying 10.6.0.2 is at it.
                if n >= 42
                    && f[12..14] == [8, 6]
                    && f[20..22] == [0, 2]
                    && f[22..28] == guest_mac
                    && f[28..32] == [10, 6, 0, 2]
                {
                    reply = Some(f.to_vec());
                    break 'outer;
                }
            }
        }
        // The guest is still up (it sleeps 20 s): it survived the garbage.
        let alive = child.try_wait().map(|s| s.is_none()).unwrap_or(false);
        // SAFETY: SIGTERM to the kernel this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let pid = child.id();
        let _ = wait_timeout(&mut child, TIMEOUT, &format!("{hal} guest answering ARP"));
        assert_no_leftovers(pid, &[], &format!("{hal} guest answering ARP"));
        assert!(alive, "{hal}: the guest died");
        let reply = reply.unwrap_or_else(|| panic!("{hal}: no ARP reply from the guest"));
        assert_eq!(
            reply[..6],
            my_mac,
            "{hal}: the reply is addressed to the asker"
        );
        drop(host);
        sw.stop().unwrap();
    }
}

/// `--net user,hostfwd=...`: a connection to the forwarded host port reaches
/// busybox httpd on the guest's port 80 through the user-mode NAT.
#[test]
fn user_mode_port_forward_reaches_the_guest() {
    use std::io::{Read, Write};
    let _g = lock();
    let root = default_root();
    if !root.join("bin/busybox").exists() && !root.join("usr/bin/busybox").exists() {
        panic!(
            "no busybox in {}: `cargo xtask test` installs it",
            root.display()
        );
    }
    for (hal, kernel) in kernels() {
        // A free port (a race with other programs is unlikely and only fails the test).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!("user,hostfwd=tcp:127.0.0.1:{port}-:80");
        let script = "mkdir -p /www && echo forwarded-ok > /www/index.html && exec busybox httpd -f -p 80 -h /www";
        let mut cmd = Command::new(&kernel);
        cmd.args([
            "--root",
            &root.display().to_string(),
            "--net",
            &spec,
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .env("TERM", "xterm");
        let mut child = spawn(&mut cmd);
        let mut page = String::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) && !page.contains("forwarded-ok") {
            page.clear();
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let _ = c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
                let _ = c.read_to_string(&mut page);
            }
            if !page.contains("forwarded-ok") {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // Served: now idle behind the NAT, the kernel sleeps.
        let before = cpu_time(child.id());
        std::thread::sleep(Duration::from_millis(1000));
        let spent = cpu_time(child.id()).saturating_sub(before);
        // SAFETY: SIGTERM to the kernel this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = wait_timeout(&mut child, TIMEOUT, &format!("{hal} guest behind the NAT"));
        assert!(
            page.starts_with("HTTP/1.") && page.contains("forwarded-ok"),
            "{hal}: got {page:?}"
        );
        assert!(
            spent < Duration::from_millis(150),
            "{hal}: an idle guest behind the NAT used {spent:?} of CPU in 1 s"
        );
    }
}

/// A forwarded connection to a guest port where nothing listens is reset
/// (the client's read fails with ECONNRESET) as soon as the guest refuses
/// it, the first one of a guest that has sent nothing yet included.
#[test]
fn a_forward_to_a_closed_guest_port_is_reset() {
    use std::io::{BufRead, Read};
    let _g = lock();
    let root = default_root();
    for (hal, kernel) in kernels() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let spec = format!("user,hostfwd=tcp:127.0.0.1:{port}-:81");
        let mut cmd = Command::new(&kernel);
        cmd.args(["--root", &root.display().to_string(), "--net", &spec, "--", "/bin/sh", "-c", "echo up; exec sleep 60"]);
        let mut child = spawn(&mut cmd);
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        assert_eq!(line.trim(), "up", "{hal}: the guest did not start");
        let mut results = Vec::new();
        for _ in 0..2 {
            let t0 = Instant::now();
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let r = c.read(&mut [0u8; 16]).map_err(|e| e.kind());
            results.push((r, t0.elapsed()));
        }
        // SAFETY: SIGKILL to the kernel this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        for (r, took) in results {
            assert_eq!(r, Err(std::io::ErrorKind::ConnectionReset), "{hal}: after {took:?}");
            assert!(took < Duration::from_secs(5), "{hal}: the reset took {took:?}");
        }
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `--net tap,ifname=NAME`: the host reaches busybox httpd in the guest over
/// a TAP device (made and addressed here with `ip`; skipped with a note
/// where that is not allowed).
#[test]
fn tap_link_carries_tcp_between_host_and_guest() {
    use std::io::{Read, Write};
    let _g = lock();
    let root = default_root();
    for (n, (hal, kernel)) in kernels().into_iter().enumerate() {
        let name = format!("rutt{}x{n}", std::process::id() % 100_000);
        let net = format!("10.{}.{}", 200 + n, std::process::id() % 250);
        if !ip(&["tuntap", "add", "dev", &name, "mode", "tap"]) {
            eprintln!("note: skipping the TAP test: cannot create a TAP device here (needs CAP_NET_ADMIN and iproute2)");
            return;
        }
        let ok = ip(&["addr", "add", &format!("{net}.1/24"), "dev", &name])
            && ip(&["link", "set", &name, "up"]);
        let spec = format!("tap,ifname={name},ip={net}.2/24");
        let script = "mkdir -p /www && echo over-the-tap > /www/index.html && exec busybox httpd -f -p 80 -h /www";
        let mut cmd = Command::new(&kernel);
        cmd.args([
            "--root",
            &root.display().to_string(),
            "--net",
            &spec,
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .env("TERM", "xterm");
        let mut child = spawn(&mut cmd);
        let mut page = String::new();
        let t0 = Instant::now();
        while ok && t0.elapsed() < Duration::from_secs(10) && !page.contains("over-the-tap") {
            page.clear();
            let addr: std::net::SocketAddr = format!("{net}.2:80").parse().unwrap();
            if let Ok(mut c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let _ = c.read_to_string(&mut page);
            }
            if !page.contains("over-the-tap") {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // SAFETY: SIGTERM to the kernel this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = wait_timeout(&mut child, TIMEOUT, &format!("{hal} guest on a TAP"));
        ip(&["link", "del", &name]);
        assert!(ok, "{hal}: could not address {name}");
        assert!(page.contains("over-the-tap"), "{hal}: got {page:?}");
    }
}

/// A guest whose only runnable process spins (never idles the kernel) still
/// gets its frames: the backend's `run` reports the network interrupt. Under
/// each backend and trap mechanism.
#[test]
fn a_busy_guest_still_serves() {
    use std::io::{Read, Write};
    let _g = lock();
    let root = default_root();
    let skas = kernel_from("RUSTUML_KERNEL_SKAS");
    let tt = kernel_from("RUSTUML_KERNEL_TT");
    for (what, kernel, extra) in [
        ("skas", &skas, None),
        ("skas --trap ptrace", &skas, Some("ptrace")),
        ("tt", &tt, None),
    ] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!("user,hostfwd=tcp:127.0.0.1:{port}-:80");
        // httpd forks into the background; the shell then spins without a
        // system call until it is killed.
        let script =
            "mkdir -p /www && echo busy-ok > /www/index.html && busybox httpd -p 80 -h /www && \
                      echo serving && while :; do :; done";
        let mut cmd = Command::new(kernel);
        if let Some(t) = extra {
            cmd.args(["--trap", t]);
        }
        cmd.args([
            "--root",
            &root.display().to_string(),
            "--net",
            &spec,
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .env("TERM", "xterm");
        let mut child = spawn(&mut cmd);
        // Let the shell reach its loop (httpd answers only once it listens).
        std::thread::sleep(Duration::from_millis(1500));
        let mut page = String::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(6) && !page.contains("busy-ok") {
            page.clear();
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let _ = c.read_to_string(&mut page);
            }
        }
        let took = t0.elapsed();
        // SAFETY: SIGKILL to the kernel this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = wait_timeout(&mut child, TIMEOUT, &format!("{what} busy guest"));
        assert!(
            page.contains("busy-ok"),
            "{what}: a spinning guest did not serve ({page:?})"
        );
        assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    }
}

/// `kernel-skas --switch PATH`: a stand-alone switch that forwards between
/// its ports and stops cleanly on SIGTERM, removing its socket.
#[test]
fn the_kernel_binary_runs_a_switch() {
    let _g = lock();
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let path = sock_path("standalone");
    let _ = std::fs::remove_file(&path);
    let mut child = spawn(Command::new(&kernel).arg("--switch").arg(&path));
    let t0 = Instant::now();
    while !path.exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (a_mac, b_mac) = ([2, 0, 0, 0, 0xa, 1], [2, 0, 0, 0, 0xa, 2]);
    let mut a = SwitchLink::connect(&path, a_mac).unwrap();
    let mut b = SwitchLink::connect(&path, b_mac).unwrap();
    let f = arp_request(a_mac, [10, 7, 0, 1], [10, 7, 0, 2]);
    a.send(&f);
    let mut buf = vec![0u8; MAX_FRAME];
    let t0 = Instant::now();
    let mut got = None;
    while got.is_none() && t0.elapsed() < Duration::from_secs(2) {
        got = b.recv(&mut buf).map(|n| buf[..n].to_vec());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got.as_deref(), Some(&f[..]), "b gets a's broadcast");
    a.send(&[0u8; 10]); // a runt: dropped and counted by the switch
    drop((a, b));
    // SAFETY: SIGTERM to the switch this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = wait_timeout(&mut child, TIMEOUT, "kernel-skas --switch");
    assert!(st.success(), "{st:?}: {err}");
    assert!(
        err.contains("switch stopped: 2 frames in, 0 unicast, 1 flooded, 1 malformed"),
        "{err}"
    );
    assert!(!path.exists(), "the socket file is removed");
}

/// `--net user` reaches nothing of the host's loopback unless named: a host
/// server on an `allow=tcp:127.0.0.1:PORT` port answers the guest, one on
/// another loopback port is refused and never sees a connection.
#[test]
fn user_mode_reaches_only_named_loopback_ports() {
    use std::io::Write;
    let _g = lock();
    let root = default_root();
    let named = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unnamed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (np, up) = (named.local_addr().unwrap().port(), unnamed.local_addr().unwrap().port());
    unnamed.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        // Answer every connection (one per backend) with a greeting.
        for c in named.incoming().take(2).flatten() {
            let _ = (&c).write_all(b"named-ok\n");
        }
    });
    let script = format!(
        "import socket\n\
         for port in ({np}, {up}):\n\
         \x20   try:\n\
         \x20       s = socket.create_connection(('10.0.2.2', port), timeout=10)\n\
         \x20       print(port, s.recv(16).decode().strip())\n\
         \x20   except OSError as e:\n\
         \x20       print(port, type(e).__name__)\n"
    );
    for (hal, kernel) in kernels() {
        let out = run_kernel(
            &kernel,
            &[
                "--root",
                &root.display().to_string(),
                "--net",
                &format!("user,allow=tcp:127.0.0.1:{np}"),
                "--",
                "/usr/bin/python3",
                "-c",
                &script,
            ],
        );
        assert_eq!(out.code, 0, "{hal}: {out:?}");
        assert!(out.stdout.contains(&format!("{np} named-ok")), "{hal}: {}", out.stdout);
        assert!(out.stdout.contains(&format!("{up} ConnectionRefusedError")), "{hal}: {}", out.stdout);
        assert!(unnamed.accept().is_err(), "{hal}: the unnamed port saw a connection");
    }
    server.join().unwrap();
}
