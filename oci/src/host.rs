//! Host plumbing: the guest's control socket, the console pty handed to the
//! engine, signals by name.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// One request on the guest's control socket (docs/operate.md's
/// protocol): `ok LEN\n` + body, or `error: WHY\n`.
pub fn control(sock: &Path, request: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("control: {e}"))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while head.len() < 4200 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => head.push(b[0]),
            Ok(_) => return Err("control: the guest hung up".into()),
            Err(e) => return Err(format!("control: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if let Some(why) = head.strip_prefix("error: ") {
        return Err(why.to_string());
    }
    let len: usize = head
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("control: bad answer `{head}`"))?;
    let mut body = vec![0u8; len.min(64 << 20)];
    s.read_exact(&mut body)
        .map_err(|e| format!("control: {e}"))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A request to a guest that may still be booting: retried while `alive`
/// says its kernel is there and the socket is not yet made, up to `wait`.
pub fn control_wait(
    sock: &Path,
    request: &str,
    wait: Duration,
    alive: impl Fn() -> bool,
) -> Result<String, String> {
    let t0 = Instant::now();
    loop {
        if sock.exists() {
            return control(sock, request);
        }
        if !alive() {
            return Err("the guest is not running".into());
        }
        if t0.elapsed() > wait {
            return Err(format!(
                "the guest's control socket {} did not appear",
                sock.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, TERM, 15 → 15.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
    ];
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    } else {
        let up = s.to_ascii_uppercase();
        let bare = up.strip_prefix("SIG").unwrap_or(&up);
        if let Some((_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
            return Ok(*n);
        }
    }
    Err(format!("unknown signal `{}`", s.escape_default()))
}

/// A new pseudo-terminal: (master, slave).
pub fn openpty() -> Result<(OwnedFd, OwnedFd), String> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors; name, termios and winsize may be null.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just made and are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// Hand the pty master to the engine over its console socket
/// (SCM_RIGHTS), as runc does for `--console-socket`.
pub fn send_console(socket: &Path, master: RawFd) -> Result<(), String> {
    let s = UnixStream::connect(socket)
        .map_err(|e| format!("--console-socket {}: {e}", socket.display()))?;
    let name = b"/dev/ptmx";
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one header and one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), master);
    }
    // SAFETY: msg and everything it points at live across the call.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(format!(
            "--console-socket {}: sendmsg: {}",
            socket.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
