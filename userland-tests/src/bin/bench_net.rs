//! `bench_net OP ITERS [ADDR]`: TCP benchmarks, printing `bench OP VALUE
//! UNIT` (or `bench OP n/a REASON` with exit status 1), like `bench_ops`.
//! `cargo xtask bench` runs it natively and inside the kernel.
//!
//! | OP | what is measured | ADDR |
//! | --- | --- | --- |
//! | `tcp_lo_rr` | 1-byte request/response round trip (`TCP_NODELAY`) between two processes over 127.0.0.1 (ns) | |
//! | `tcp_lo_bw` | 64 KiB `write`s to another process over 127.0.0.1, until it has read them all (MB/s) | |
//! | `tcp_nat_rr` | as `tcp_lo_rr`, to a server at ADDR (the host's, through the user-mode NAT) | `IP:PORT` |
//! | `tcp_nat_bw` | as `tcp_lo_bw`, to a server at ADDR | `IP:PORT` |
//! | `tcp_conn_first`, `tcp_conn_last` | connections/s (connect, accept, close) over 127.0.0.1 in the first / last tenth of ITERS | |
//! | `tcp_idle_conns`, `tcp_idle_listeners` | ITERS idle connections / listeners opened in two stages, for the host to sample the kernel's memory (see `idle_sockets`) | |
//!
//! `bench_net serve PORT [IP]` is the server side of the `tcp_fwd_*` rows,
//! whose client is `cargo xtask bench` on the host (through a `hostfwd` rule
//! into the guest): it listens on IP:PORT (default 0.0.0.0; PORT 0: one the
//! kernel picks),
//! prints `listening PORT`, serves one connection and exits 0.
//! `bench_net http PORT [IP]` is a threaded HTTP server (a thread per
//! connection, a 4 KiB answer) serving until it is killed: the server of
//! the `http_fwd_ab` row, whose client is `ab` on the host.
//!
//! The wire protocol (the same for the forked server here and the host
//! server `cargo xtask bench` runs): the client sends one mode byte, `r`
//! (echo every byte back) or `b` (read to end of stream, then send one byte
//! back), then the payload.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::{c_char, c_int};
use userland_tests::{args, errno, errno_name, exit_now, fail, fork, now_ns, say, wait_for};

/// Block size of the bandwidth tests.
const BLOCK: usize = 64 * 1024;

fn close(fd: c_int) {
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

fn read_some(fd: c_int, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        if errno() != libc::EINTR {
            return Err(fail("read"));
        }
    }
}

fn read_exact(fd: c_int, mut buf: &mut [u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match read_some(fd, buf)? {
            0 => return Err("read:early-EOF".into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(fail("write"));
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

fn tcp_socket() -> Result<c_int, String> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail("socket"));
    }
    Ok(fd)
}

fn set_nodelay(fd: c_int) -> Result<(), String> {
    let one: c_int = 1;
    // SAFETY: the option value is a valid c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const c_int).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(fail("setsockopt-TCP_NODELAY"));
    }
    Ok(())
}

fn sockaddr(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_be_bytes(ip).to_be();
    sa
}

/// `IP:PORT` (IPv4 only).
fn parse_addr(s: &str) -> Result<([u8; 4], u16), String> {
    let bad = || format!("bad-address-{s}");
    let (ip, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let a: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok((a.octets(), port))
}

fn connect(ip: [u8; 4], port: u16) -> Result<c_int, String> {
    let fd = tcp_socket()?;
    let sa = sockaddr(ip, port);
    // SAFETY: sa is a valid sockaddr_in of the given size.
    let r = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = fail("connect");
        close(fd);
        return Err(e);
    }
    set_nodelay(fd)?;
    Ok(fd)
}

/// A listener on `ip`:`port` (port 0: the kernel picks) with room for
/// `backlog` pending connections; (fd, port).
fn listen_on(ip: [u8; 4], port: u16, backlog: c_int) -> Result<(c_int, u16), String> {
    let fd = tcp_socket()?;
    let sa = sockaddr(ip, port);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a valid sockaddr_in of size len.
    if unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len) } < 0 {
        return Err(fail("bind"));
    }
    // SAFETY: fd is our socket.
    if unsafe { libc::listen(fd, backlog) } < 0 {
        return Err(fail("listen"));
    }
    let mut got = sockaddr([0; 4], 0);
    let mut glen = len;
    // SAFETY: got/glen are valid out-parameters of the right size.
    if unsafe { libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut glen) } < 0
    {
        return Err(fail("getsockname"));
    }
    Ok((fd, u16::from_be(got.sin_port)))
}

/// The server side of one connection (see the module's protocol).
fn serve(fd: c_int) -> Result<(), String> {
    let mut mode = [0u8; 1];
    read_exact(fd, &mut mode)?;
    let mut buf = vec![0u8; BLOCK];
    match mode[0] {
        b'r' => loop {
            let n = read_some(fd, &mut buf[..1])?;
            if n == 0 {
                return Ok(());
            }
            write_all(fd, &buf[..n])?;
        },
        b'b' => {
            while read_some(fd, &mut buf)? > 0 {}
            write_all(fd, b"k")
        }
        _ => Err("bad-mode".into()),
    }
}

/// ns per 1-byte round trip, over `n` timed after `n / 10` untimed.
fn client_rr(fd: c_int, n: usize) -> Result<f64, String> {
    write_all(fd, b"r")?;
    let mut b = [7u8; 1];
    let mut one = || -> Result<(), String> {
        write_all(fd, &b)?;
        read_exact(fd, &mut b)
    };
    for _ in 0..n / 10 {
        one()?;
    }
    let t0 = now_ns();
    for _ in 0..n {
        one()?;
    }
    Ok((now_ns() - t0) as f64 / n as f64)
}

/// MB/s of `n` 64 KiB writes, timed until the server has read them all
/// (its one-byte answer after our end of stream).
fn client_bw(fd: c_int, n: usize) -> Result<f64, String> {
    write_all(fd, b"b")?;
    let buf = vec![0x5au8; BLOCK];
    let t0 = now_ns();
    for _ in 0..n {
        write_all(fd, &buf)?;
    }
    // SAFETY: fd is our connected socket.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
        return Err(fail("shutdown"));
    }
    let mut k = [0u8; 1];
    read_exact(fd, &mut k)?;
    let ns = (now_ns() - t0) as f64;
    Ok((n * BLOCK) as f64 / (ns / 1e9) / 1e6)
}

/// Runs `client` against a server process forked here, over 127.0.0.1.
fn loopback(client: impl FnOnce(c_int) -> Result<f64, String>) -> Result<f64, String> {
    let (lfd, port) = listen_on([127, 0, 0, 1], 0, 4)?;
    // (fork() exits 100 when it fails.)
    let pid = fork();
    if pid == 0 {
        // SAFETY: lfd is our listening socket; no address wanted.
        let c = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
        if c < 0 {
            exit_now(2);
        }
        let _ = set_nodelay(c);
        exit_now(if serve(c).is_ok() { 0 } else { 1 });
    }
    close(lfd);
    let r = connect([127, 0, 0, 1], port).and_then(|fd| {
        let r = client(fd);
        close(fd);
        r
    });
    let reaped = match wait_for(pid) {
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
        Ok((_, st)) => Err(format!("server-status-{st:#x}")),
        Err(e) => Err(format!("wait4:{}", errno_name(e))),
    };
    let r = r?;
    reaped.map(|_| r)
}

/// Connections per second over 127.0.0.1 in the first (or the last) tenth
/// of `n` connections (connect; a forked server accepts and closes; we see
/// the end of stream and close): a stack whose closed connections linger
/// slows down as they pile up.
fn conn_rate(n: usize, last: bool) -> Result<f64, String> {
    let (lfd, port) = listen_on([127, 0, 0, 1], 0, 128)?;
    let pid = fork();
    if pid == 0 {
        for _ in 0..n {
            // SAFETY: lfd is our listening socket; no address wanted.
            let c = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
            if c < 0 {
                exit_now(2);
            }
            close(c);
        }
        exit_now(0);
    }
    close(lfd);
    let tenth = (n / 10).max(1);
    let t0 = now_ns();
    let (mut first, mut last_start) = (0, t0);
    let mut run = || -> Result<(), String> {
        for i in 0..n {
            if i == n - tenth {
                last_start = now_ns();
            }
            let fd = connect([127, 0, 0, 1], port)?;
            let mut b = [0u8; 1];
            let r = read_some(fd, &mut b);
            close(fd);
            r?;
            if i + 1 == tenth {
                first = now_ns() - t0;
            }
        }
        Ok(())
    };
    let r = run();
    let last_ns = now_ns() - last_start;
    let reaped = wait_for(pid);
    r?;
    match reaped {
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
        Ok((_, st)) => return Err(format!("server-status-{st:#x}")),
        Err(e) => return Err(format!("wait4:{}", errno_name(e))),
    }
    let ns = if last { last_ns } else { first };
    Ok(tenth as f64 / (ns.max(1) as f64 / 1e9))
}

/// Raises the soft open-file limit as far as the hard one allows (up to
/// `want`).
fn raise_nofile(want: u64) {
    // SAFETY: plain data, all-zero is valid; getrlimit fills it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: r is a valid rlimit to fill and then read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// `tcp_idle_conns N` / `tcp_idle_listeners N`: holds a tenth of N idle
/// established connections over 127.0.0.1 (both ends here) or listeners,
/// says `stage 1`, waits, opens the rest, says `stage 2 SOCKETS` (how many
/// sockets came in between) and waits again: `cargo xtask bench` samples
/// the kernel's memory at each stage (see its `KernelMem` rows).
fn idle_sockets(n: usize, listeners: bool) -> Result<(), String> {
    raise_nofile(2 * n as u64 + 64);
    let (lfd, port) = listen_on([127, 0, 0, 1], 0, n.min(4096) as c_int)?;
    let mut fds = Vec::new();
    let open = |count: usize, fds: &mut Vec<c_int>| -> Result<usize, String> {
        let before = fds.len();
        for _ in 0..count {
            if listeners {
                fds.push(listen_on([127, 0, 0, 1], 0, 16)?.0);
            } else {
                fds.push(connect([127, 0, 0, 1], port)?);
                // SAFETY: lfd is our listening socket; no address wanted.
                let c = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
                if c < 0 {
                    return Err(fail("accept"));
                }
                fds.push(c);
            }
        }
        Ok(fds.len() - before)
    };
    // The host samples when it reads the line: a moment is enough.
    let pause = || std::thread::sleep(std::time::Duration::from_millis(200));
    open((n / 10).max(1), &mut fds)?;
    say!("stage 1");
    pause();
    let more = open(n - (n / 10).max(1), &mut fds)?;
    say!("stage 2 {more}");
    pause();
    for fd in fds {
        close(fd);
    }
    close(lfd);
    Ok(())
}

fn remote(
    addr: Option<&String>,
    client: impl FnOnce(c_int) -> Result<f64, String>,
) -> Result<f64, String> {
    let (ip, port) = parse_addr(addr.ok_or("missing-ADDR-argument")?)?;
    let fd = connect(ip, port)?;
    let r = client(fd);
    close(fd);
    r
}

/// PORT and IP arguments of the server modes.
fn server_addr(port: Option<&String>, ip: Option<&String>) -> Result<([u8; 4], u16), String> {
    let port: u16 = port
        .and_then(|p| p.parse().ok())
        .ok_or("missing-PORT-argument")?;
    let ip = match ip {
        Some(s) => s
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("bad-address-{s}"))?
            .octets(),
        None => [0; 4],
    };
    Ok((ip, port))
}

/// `serve PORT`: one connection from outside, then exit.
fn serve_one(port: Option<&String>, ip: Option<&String>) -> Result<(), String> {
    let (ip, port) = server_addr(port, ip)?;
    let (lfd, port) = listen_on(ip, port, 4)?;
    say!("listening {port}");
    // SAFETY: lfd is our listening socket; no address wanted.
    let c = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
    if c < 0 {
        return Err(fail("accept"));
    }
    set_nodelay(c)?;
    let r = serve(c);
    close(c);
    close(lfd);
    r
}

/// What the HTTP server answers: 4 KiB of body.
fn http_answer() -> Vec<u8> {
    let mut a = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4096\r\n\r\n".to_vec();
    a.resize(a.len() + 4096, b'x');
    a
}

/// One HTTP connection: read the request head, answer, close.
fn http_conn(fd: c_int, answer: &[u8]) -> Result<(), String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match read_some(fd, &mut buf)? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return Err("request-head-too-long".into());
        }
    }
    write_all(fd, answer)
}

/// `http PORT [IP]`: a threaded HTTP server (accept, a thread per
/// connection, a 4 KiB answer, close) until it is killed; `cargo xtask
/// bench` drives it with `ab`.
fn serve_http(port: Option<&String>, ip: Option<&String>) -> Result<(), String> {
    let (ip, port) = server_addr(port, ip)?;
    let (lfd, port) = listen_on(ip, port, 1024)?;
    say!("listening {port}");
    let answer: &'static [u8] = http_answer().leak();
    loop {
        // SAFETY: lfd is our listening socket; no address wanted.
        let c = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
        if c < 0 {
            match errno() {
                libc::EINTR | libc::ECONNABORTED => continue,
                _ => return Err(fail("accept")),
            }
        }
        std::thread::spawn(move || {
            let _ = http_conn(c, answer);
            close(c);
        });
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let op = args.get(1).map(String::as_str).unwrap_or("tcp_lo_rr");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000)
        .max(1);
    let addr = args.get(3);
    if op == "serve" || op == "http" {
        let serve = if op == "http" { serve_http } else { serve_one };
        return match serve(args.get(2), args.get(3)) {
            Ok(()) => 0,
            Err(why) => {
                say!("bench serve n/a {why}");
                1
            }
        };
    }
    let (result, unit) = match op {
        "tcp_lo_rr" => (loopback(|fd| client_rr(fd, n)), "ns"),
        "tcp_lo_bw" => (loopback(|fd| client_bw(fd, n)), "MB/s"),
        "tcp_nat_rr" => (remote(addr, |fd| client_rr(fd, n)), "ns"),
        "tcp_conn_first" => (conn_rate(n, false), "conn/s"),
        "tcp_conn_last" => (conn_rate(n, true), "conn/s"),
        "tcp_idle_conns" | "tcp_idle_listeners" => (idle_sockets(n, op == "tcp_idle_listeners").map(|()| 0.0), "stages"),
        "tcp_nat_bw" => (remote(addr, |fd| client_bw(fd, n)), "MB/s"),
        _ => (Err("unknown-operation".into()), ""),
    };
    match result {
        Ok(v) => {
            say!("bench {op} {v:.3} {unit}");
            0
        }
        Err(why) => {
            say!("bench {op} n/a {why}");
            1
        }
    }
}
