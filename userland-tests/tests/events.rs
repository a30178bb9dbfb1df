//! Host events reach the guest at once, whatever it is doing (issue 23):
//! keys typed while a program is busy (^C, ^\, ^Z, `q` in `top`), window
//! resizes, frames from a virtual switch, and a switch that restarts; and
//! the user-mode NAT passes on resets and datagrams of any size.
//!
//! The kernel runs on a pty this test owns (`common/pty.rs`). Every bound
//! is loose (seconds): these are functional checks on a busy machine; the
//! latencies themselves are `cargo xtask bench` rows.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::*;
use drivers::net::switch::SwitchThread;
use pty::PtyKernel;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SKAS: &str = "RUSTUML_KERNEL_SKAS";
const TT: &str = "RUSTUML_KERNEL_TT";
/// How long a key may take to act on a busy guest (functional bound).
const PROMPT: Duration = Duration::from_secs(5);

/// A guest shell (dash) on a pty, with the prompt set to `P> `.
fn shell(var: &str, flags: &[&str]) -> PtyKernel {
    let root = default_root().display().to_string();
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["--root", &root]);
    let mut k = PtyKernel::start(&kernel_from(var), &args);
    k.expect("# ");
    k.send("PS1='P> '\n");
    k.expect("\nP> ");
    k
}

/// ^C, ^\ and ^Z reach a busy foreground program; typed text and `q` reach
/// the shell and `top` while a busy job runs in the background.
fn keys_reach_busy_programs(var: &str, flags: &[&str]) {
    let _l = lock();
    let mut k = shell(var, flags);
    let prompt = "\nP> ";
    // A program busy in user space, in the shell itself, and in python.
    k.send("yes > /dev/null\n");
    std::thread::sleep(Duration::from_millis(500));
    k.send("\x03");
    k.expect_within(prompt, PROMPT);
    k.send("while :; do :; done\n");
    std::thread::sleep(Duration::from_millis(500));
    k.send("\x03");
    k.expect_within(prompt, PROMPT);
    k.send("python3 -c 'while True: pass'\n");
    std::thread::sleep(Duration::from_millis(1500));
    k.send("\x03");
    k.expect_within("KeyboardInterrupt", PROMPT);
    k.expect_within(prompt, PROMPT);
    // ^\ quits.
    k.send("yes > /dev/null\n");
    std::thread::sleep(Duration::from_millis(500));
    k.send("\x1c");
    k.expect_within(prompt, PROMPT);
    k.send("echo status=$?\n");
    k.expect("status=131");
    // A busy background job: the shell still echoes and answers.
    k.send("yes > /dev/null &\n");
    k.expect(prompt);
    k.send("echo typed-$((6 * 7))\n");
    k.expect_within("typed-42", PROMPT);
    k.expect(prompt);
    // top redraws while the job runs, and q ends it.
    k.send("top -d 1\n");
    k.expect("load average");
    k.expect("load average");
    k.send("q");
    // top leaves the screen with escape sequences, not a new line.
    k.expect_within("P> ", PROMPT);
    // ^Z stops a busy foreground job.
    k.send("yes > /dev/null\n");
    std::thread::sleep(Duration::from_millis(500));
    k.send("\x1a");
    k.expect_within("Stopped", PROMPT);
    k.expect(prompt);
    k.send("kill -9 %1 %2; wait; echo killed-jobs\n");
    k.expect("killed-jobs");
    k.expect(prompt);
    k.send("exit 3\n");
    assert_eq!(k.wait_exit(), 3);
}

#[test]
fn skas_seccomp_keys_reach_busy_programs() {
    keys_reach_busy_programs(SKAS, &["--trap", "seccomp"]);
}

#[test]
fn skas_ptrace_keys_reach_busy_programs() {
    keys_reach_busy_programs(SKAS, &["--trap", "ptrace"]);
}

#[test]
fn tt_keys_reach_busy_programs() {
    keys_reach_busy_programs(TT, &[]);
}

/// A resize of the host terminal reaches a `SIGWINCH` handler in the guest
/// without a key press, with the new size, while the guest sleeps and while
/// it is busy.
fn resize_reaches_the_guest(var: &str) {
    let _l = lock();
    let mut k = shell(var, &[]);
    // Typed as one line: python's exec turns the \n escapes into lines.
    let prog = [
        "import signal, os, time",
        "def h(*a):",
        " s = os.get_terminal_size()",
        " print(\\'WINCH %dx%d\\' % (s.columns, s.lines), flush=True)",
        "signal.signal(signal.SIGWINCH, h)",
        "print(\\'READY\\', flush=True)",
        "t = time.time()",
        "while time.time() - t < 3: time.sleep(0.05)",
        "print(\\'BUSY\\', flush=True)",
        "t = time.time()",
        "while time.time() - t < 3: pass",
    ]
    .join("\\n");
    k.send(&format!("python3 -c \"exec('{prog}')\"\n"));
    k.expect("\nREADY");
    k.resize(40, 120);
    k.expect_within("WINCH 120x40", PROMPT);
    k.expect("\nBUSY");
    std::thread::sleep(Duration::from_millis(300));
    k.resize(30, 90);
    k.expect_within("WINCH 90x30", PROMPT);
    k.expect("\nP> ");
    k.send("stty size\n");
    k.expect("30 90");
    k.send("exit\n");
    assert_eq!(k.wait_exit(), 0);
}

#[test]
fn skas_resize_reaches_the_guest() {
    resize_reaches_the_guest(SKAS);
}

#[test]
fn tt_resize_reaches_the_guest() {
    resize_reaches_the_guest(TT);
}

/// UTF-8 at the console as at a host terminal: the line discipline erases
/// whole characters (IUTF8), bash's line editor works in the C.UTF-8 locale
/// the default root carries, and a login's variables are set.
fn utf8_line_editing(var: &str) {
    let _l = lock();
    let mut k = shell(var, &[]);
    k.send("stty -a | grep -o -- '-*iutf8'; echo \"/$USER/$LOGNAME/$SHELL/\"\n");
    k.expect("\niutf8");
    k.expect("\n/root/root/");
    // The kernel's line discipline (dash reads a cooked line).
    k.send("read -r x\n");
    k.send("hé€\x7f\x7fa\n");
    k.send("printf '[%s]\\n' \"$x\"\n");
    k.expect("[ha]");
    k.expect("\nP> ");
    // bash's readline (raw mode, multi-byte aware in C.UTF-8).
    k.send("exec bash --norc --noprofile\n");
    k.send("PS1='B> '\n");
    k.expect("B> ");
    k.send("echo hé€\x7fllo | od -An -c\n");
    k.expect("h 303 251   l   l   o  \\n");
    k.send("exit\n");
    assert_eq!(k.wait_exit(), 0);
}

#[test]
fn skas_utf8_line_editing() {
    utf8_line_editing(SKAS);
}

#[test]
fn tt_utf8_line_editing() {
    utf8_line_editing(TT);
}

/// A reset from a host server reaches a guest blocked in `recv` through the
/// user-mode NAT at once (natively: ECONNRESET when the server resets).
#[test]
fn nat_host_reset_reaches_a_reading_guest() {
    let _l = lock();
    let root = default_root().display().to_string();
    let client = "import socket, sys, time\n\
                  s = socket.create_connection(('10.0.2.2', int(sys.argv[1])))\n\
                  t = time.monotonic()\n\
                  try:\n    s.recv(10); print('no error')\n\
                  except OSError as e:\n    print('errno', e.errno, 'after', round(time.monotonic() - t, 1))\n";
    for var in [SKAS, TT] {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            // Never wait for ever: a guest that cannot connect fails the
            // assertion below instead of hanging the suite.
            l.set_nonblocking(true).unwrap();
            let t = Instant::now();
            let c = loop {
                match l.accept() {
                    Ok((c, _)) => break c,
                    Err(_) if t.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(10)),
                    Err(_) => return,
                }
            };
            c.set_nonblocking(false).unwrap();
            std::thread::sleep(Duration::from_millis(1000));
            // SO_LINGER 0: close sends a reset.
            let lin = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: a valid linger struct for our own socket.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&c),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&lin as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                )
            };
            drop(c);
        });
        let t0 = Instant::now();
        let net = format!("user,allow=tcp:127.0.0.1:{port}");
        let out = run_kernel(&kernel_from(var), &["--root", &root, "--net", &net, "--", "/usr/bin/python3", "-c", client, &port.to_string()]);
        server.join().unwrap();
        assert!(out.stdout.starts_with("errno 104 after"), "{var}: {}{}", out.stdout, out.stderr);
        assert!(t0.elapsed() < Duration::from_secs(20), "{var}: took {:?}", t0.elapsed());
    }
}

/// UDP datagrams of every size up to 65,507 bytes cross the user-mode NAT
/// both ways (IP fragments from the guest put back together, datagrams
/// from the host fragmented towards it), and one byte more is EMSGSIZE.
#[test]
fn nat_udp_datagrams_of_any_size_echo() {
    let _l = lock();
    let root = default_root().display().to_string();
    let client = "import socket, sys\n\
                  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n\
                  for n in (100, 1472, 1473, 3000, 20000, 65507):\n    \
                      d = bytes(i % 251 for i in range(n)); s.sendto(d, ('10.0.2.2', int(sys.argv[1])))\n    \
                      r, _ = s.recvfrom(70000); print(n, 'ok' if r == d else 'differs')\n\
                  try:\n    s.sendto(bytes(65508), ('10.0.2.2', int(sys.argv[1])))\n\
                  except OSError as e:\n    print('65508 errno', e.errno)\n";
    for var in [SKAS, TT] {
        let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = echo.local_addr().unwrap().port();
        echo.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            for _ in 0..6 {
                let Ok((n, from)) = echo.recv_from(&mut buf) else { return };
                let _ = echo.send_to(&buf[..n], from);
            }
        });
        let net = format!("user,allow=udp:127.0.0.1:{port}");
        let out = run_kernel(&kernel_from(var), &["--root", &root, "--net", &net, "--", "/usr/bin/python3", "-c", client, &port.to_string()]);
        server.join().unwrap();
        let want = "100 ok\n1472 ok\n1473 ok\n3000 ok\n20000 ok\n65507 ok\n65508 errno 90\n";
        assert_eq!(out.stdout, want, "{var}: {}", out.stderr);
    }
}

fn sock_path(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-events-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}.sock"))
}

/// The round-trip times busybox ping printed.
fn ping_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split(' ').next()?.parse().ok())
        .collect()
}

/// Two guests on a virtual switch: every echo request is answered before
/// the next one goes out, with nothing lost.
#[test]
fn switch_ping_answers_every_request_before_the_next() {
    let _l = lock();
    let root = default_root().display().to_string();
    let path = sock_path("ping");
    let _ = std::fs::remove_file(&path);
    let sw = SwitchThread::spawn(&path).unwrap();
    let net = |ip: &str| format!("switch,path={},ip={ip}", path.display());
    for var in [SKAS, TT] {
        let kernel = kernel_from(var);
        let (na, nb) = (net("10.5.0.1/24"), net("10.5.0.2/24"));
        // A must be on the switch before B's first ARP request floods it.
        let (mut a, up, _err) =
            spawn_kernel_lines(&kernel, &["--root", &root, "--net", &na, "--", "/bin/sh", "-c", "echo up; exec sleep 30"]);
        assert_eq!(up.recv_timeout(Duration::from_secs(10)).as_deref(), Ok("up"), "{var}: A did not boot");
        // Not run_kernel: its left-over check would count `a`.
        let b = run(
            Command::new(&kernel).args(["--root", &root, "--net", &nb, "--", "/bin/busybox", "ping", "-c", "5", "-i", "0.3", "10.5.0.1"]),
            "the pinging guest",
        );
        let _ = a.kill();
        let _ = a.wait();
        let times = ping_times(&b.stdout);
        assert_eq!(times.len(), 5, "{var}: {}{}", b.stdout, b.stderr);
        // The first one may wait for ARP; none waits for the next request.
        assert!(times.iter().all(|&t| t < 250.0), "{var}: {times:?}");
        assert!(b.stdout.contains(" 0% packet loss"), "{var}: {}", b.stdout);
    }
    sw.stop().unwrap();
}

/// A guest pings the NAT's gateway: every request answered.
#[test]
fn nat_gateway_ping_answers_every_request() {
    let _l = lock();
    let root = default_root().display().to_string();
    for var in [SKAS, TT] {
        let out = run_kernel(&kernel_from(var), &["--root", &root, "--net", "user", "--", "/bin/busybox", "ping", "-c", "4", "-i", "0.3", "10.0.2.2"]);
        let times = ping_times(&out.stdout);
        assert_eq!(times.len(), 4, "{var}: {}{}", out.stdout, out.stderr);
        assert!(times.iter().all(|&t| t < 250.0), "{var}: {times:?}");
    }
}

/// The switch dies in the middle of a transfer and a new one starts on the
/// same path: both guests' links find it again and the transfer completes.
#[test]
fn switch_restart_mid_transfer_completes() {
    let _l = lock();
    let root = default_root().display().to_string();
    let path = sock_path("restart");
    let _ = std::fs::remove_file(&path);
    let kernel = kernel_from(SKAS);
    let sw = SwitchThread::spawn(&path).unwrap();
    let net = |ip: &str| format!("switch,path={},ip={ip}", path.display());
    let (na, nb) = (net("10.6.0.1/24"), net("10.6.0.2/24"));
    let (mut server, lines, _err) = spawn_kernel_lines(
        &kernel,
        &["--root", &root, "--net", &na, "--", "/bin/sh", "-c", "echo listening; sleep 60 | busybox nc -l -p 5000 | wc -c"],
    );
    let first = lines.recv_timeout(Duration::from_secs(10)).expect("server started");
    assert_eq!(first, "listening");
    std::thread::sleep(Duration::from_millis(300));
    let mut client = spawn(Command::new(&kernel).args([
        "--root", &root, "--net", &nb, "--", "/bin/sh", "-c",
        // nc returns once the data is queued: stay up while TCP delivers it.
        "dd if=/dev/zero bs=64k count=480 2>/dev/null | busybox nc 10.6.0.1 5000; echo sent=$?; sleep 5",
    ]));
    std::thread::sleep(Duration::from_millis(700));
    sw.stop().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let sw = SwitchThread::spawn(&path).unwrap();
    let out = reader(client.stdout.take().expect("piped stdout"));
    let err = reader(client.stderr.take().expect("piped stderr"));
    let st = wait_timeout(&mut client, Duration::from_secs(60), "the client");
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    assert!(st.success() && out.contains("sent=0"), "client: {st:?}\n{out}\n{err}");
    let got = lines.recv_timeout(Duration::from_secs(20)).expect("the server's count");
    assert_eq!(got.trim(), (480 * 65536).to_string(), "bytes received");
    eprintln!("transfer finished {:?} after the switch came back", t0.elapsed());
    let _ = server.kill();
    let _ = server.wait();
    sw.stop().unwrap();
}
