//! A kernel on a pseudo-terminal that the test owns: it is the kernel's
//! controlling terminal (so resizes reach it as `SIGWINCH`), the test types
//! keys on the master side and reads everything the guest prints.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kernel running on a pty, with everything it printed so far.
pub struct PtyKernel {
    master: OwnedFd,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// Output before this offset was already matched by [`PtyKernel::expect`].
    mark: usize,
    what: String,
}

fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    // SAFETY: plain pty setup; every result is checked, and the fds are owned once returned.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = libc::ptsname(m);
        assert!(!name.is_null());
        let s = libc::open(name, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(s >= 0, "open pty slave");
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        libc::ioctl(m, libc::TIOCSWINSZ, &ws);
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    }
}

impl PtyKernel {
    /// Starts `kernel args` on a new 24x80 pty, in a session of its own.
    pub fn start(kernel: &Path, args: &[&str]) -> PtyKernel {
        let (master, slave) = open_pty(24, 80);
        let mut cmd = Command::new(kernel);
        cmd.args(args).env("TERM", "xterm");
        let fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                let _ = fd;
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", kernel.display()));
        crate::common::track_group(child.id() as i32);
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        let rfd = master.try_clone().expect("dup master");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a valid local buffer from a descriptor this thread owns.
                let n = unsafe { libc::read(rfd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    return;
                }
                o.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n as usize]);
            }
        });
        let what = format!("{} {}", kernel.display(), args.join(" "));
        PtyKernel { master, child, out, mark: 0, what }
    }

    fn fd(&self) -> RawFd {
        self.master.as_raw_fd()
    }

    /// Types `s` (keys, control characters included).
    pub fn send(&mut self, s: &str) {
        let b = s.as_bytes();
        // SAFETY: writing from a valid buffer to our master.
        let n = unsafe { libc::write(self.fd(), b.as_ptr().cast(), b.len()) };
        assert_eq!(n, b.len() as isize, "{}: write to the pty", self.what);
    }

    /// Everything printed so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits (up to `within`) until `pat` appears after what earlier calls
    /// matched; moves the mark past it and returns how long it took.
    pub fn expect_within(&mut self, pat: &str, within: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            {
                let o = self.out.lock().unwrap_or_else(|e| e.into_inner());
                let hay = &o[self.mark.min(o.len())..];
                if let Some(i) = hay.windows(pat.len()).position(|w| w == pat.as_bytes()) {
                    self.mark += i + pat.len();
                    return t0.elapsed();
                }
            }
            if t0.elapsed() > within {
                let s = self.screen();
                let tail: String = s.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("{}: no {pat:?} within {within:?}; the end of the output:\n{tail}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`PtyKernel::expect_within`] 10 s.
    pub fn expect(&mut self, pat: &str) -> Duration {
        self.expect_within(pat, Duration::from_secs(10))
    }

    /// Resize the terminal (the kernel gets `SIGWINCH` from the host).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { libc::ioctl(self.fd(), libc::TIOCSWINSZ, &ws) };
    }

    /// Waits (10 s) for the kernel to exit; its shell-style status.
    pub fn wait_exit(mut self) -> i32 {
        let st = crate::common::wait_timeout(&mut self.child, Duration::from_secs(10), &self.what);
        crate::common::shell_code(st).0
    }
}

impl Drop for PtyKernel {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
