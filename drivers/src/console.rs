//! The console on the host's standard file descriptors.

use hal::{Console, ConsoleRead, ConsoleStream};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

/// The host terminal's settings before raw mode, for every way out
/// (drop, `exit`, panic, fatal signals).
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();
/// The fd raw mode was set on (-1: none, or already restored).
static RAW_FD: AtomicI32 = AtomicI32::new(-1);
/// The host window size, rows << 16 | cols (0: unknown).
static WINSIZE: AtomicU32 = AtomicU32::new(0);
/// The fd to ask for the window size.
static WINSIZE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the `SIGWINCH` handler.
static RESIZED: AtomicBool = AtomicBool::new(false);
/// An eventfd the `SIGWINCH` handler writes to, so that whoever waits for
/// host events notices the resize at once (-1: none).
static RESIZE_NOTIFY: AtomicI32 = AtomicI32::new(-1);
static HOOKS: Once = Once::new();

/// Put the saved settings back (idempotent, async-signal-safe).
fn restore_terminal() {
    let fd = RAW_FD.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    if let Some(t) = SAVED_TERMIOS.get() {
        // SAFETY: `t` is a valid termios read by tcgetattr; tcsetattr is async-signal-safe.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) };
    }
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    restore_terminal();
    // The handler was installed with SA_RESETHAND: raising again applies the
    // default action (the kernel dies of the signal, as before).
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}

fn read_winsize() {
    let fd = WINSIZE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: `ws` is a valid winsize for TIOCGWINSZ to fill.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
        WINSIZE.store(((ws.ws_row as u32) << 16) | ws.ws_col as u32, Ordering::SeqCst);
    }
}

extern "C" fn on_winch(_sig: libc::c_int) {
    read_winsize();
    RESIZED.store(true, Ordering::SeqCst);
    let fd = RESIZE_NOTIFY.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; 8 bytes from a valid u64 to an eventfd.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Have the `SIGWINCH` handler write to eventfd `fd` (or to nothing, -1),
/// replacing any earlier one; returns the one it replaced.
pub fn set_resize_notify(fd: i32) -> i32 {
    RESIZE_NOTIFY.swap(fd, Ordering::SeqCst)
}

/// Stop notifying `fd` of resizes, if it is still the one notified.
pub fn clear_resize_notify(fd: i32) {
    let _ = RESIZE_NOTIFY.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
}

/// Did the host window change size since the last call? (Whoever noticed
/// the notice reports a console interrupt; the kernel then compares the
/// window size it knows with [`Console::window_size`].)
pub fn take_resize_notice() -> bool {
    RESIZED.swap(false, Ordering::SeqCst)
}

/// Install `handler` for `sig` unless someone else already handles it.
fn install_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int), flags: libc::c_int) {
    // SAFETY: querying the current disposition into a zeroed sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the old one.
    unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    if old.sa_sigaction != libc::SIG_DFL {
        return;
    }
    // SAFETY: a zeroed sigaction is valid; we fill handler, flags and an empty mask.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as *const () as usize;
    sa.sa_flags = flags;
    // SAFETY: `sa.sa_mask` is a valid sigset_t; `sa` is fully initialised.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Put the terminal on `fd` in raw mode (no echo, no signals from ^C/^Z/^\,
/// no line editing, no output translation): the guest's own line discipline
/// does all of that. Restored at drop, at `exit`, on panic and on
/// SIGTERM/SIGINT/SIGHUP. Returns false if `fd` is not a terminal.
fn enter_raw_mode(fd: i32) -> bool {
    // SAFETY: isatty only inspects the fd.
    if unsafe { libc::isatty(fd) } != 1 {
        return false;
    }
    // SAFETY: `t` is a valid termios for tcgetattr to fill.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios into `t`.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return false;
    }
    let saved = *SAVED_TERMIOS.get_or_init(|| t);
    let mut raw = saved;
    raw.c_iflag &= !(libc::IGNBRK | libc::BRKINT | libc::PARMRK | libc::ISTRIP | libc::INLCR | libc::IGNCR | libc::ICRNL | libc::IXON);
    raw.c_oflag &= !libc::OPOST;
    raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    raw.c_cflag = (raw.c_cflag & !(libc::CSIZE | libc::PARENB)) | libc::CS8;
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    HOOKS.call_once(|| {
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(restore_at_exit) };
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            install_handler(sig, on_fatal_signal, libc::SA_RESETHAND);
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
    });
    // TCSANOW, not TCSAFLUSH: keystrokes typed before boot are kept.
    // SAFETY: `raw` is a valid termios derived from the one we read.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
        return false;
    }
    RAW_FD.store(fd, Ordering::SeqCst);
    true
}

/// The guest console backed by host fds 0 (input), 1 and 2 (output).
///
/// Writes block until everything is written (retrying on `EINTR`, waiting
/// for `POLLOUT` on `EAGAIN`). Reads never block. The HAL watches
/// [`HostConsole::input_fd`] for readiness (one report per
/// [`Console::read`], so a guest that never reads cannot make it spin).
#[derive(Debug)]
pub struct HostConsole {
    in_fd: i32,
    out_fd: i32,
    err_fd: i32,
    eof: bool,
    /// The host terminal is in raw mode on our behalf (restored at drop).
    raw: bool,
}

impl Default for HostConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl HostConsole {
    /// The console on host fds 0, 1 and 2. When stdin is a terminal it is
    /// put in raw mode for as long as the console lives (see
    /// [`HostConsole::interactive`]).
    pub fn new() -> Self {
        Self::interactive(0, 1, 2)
    }

    /// A console on these fds that, if `in_fd` is a terminal, puts it in raw
    /// mode (restored at drop, at exit, on panic and on SIGTERM/SIGINT/SIGHUP)
    /// and follows the terminal's window size (`SIGWINCH`).
    pub fn interactive(in_fd: i32, out_fd: i32, err_fd: i32) -> Self {
        let mut c = Self::with_fds(in_fd, out_fd, err_fd);
        c.raw = enter_raw_mode(in_fd);
        if c.raw {
            WINSIZE_FD.store(in_fd, Ordering::SeqCst);
            read_winsize();
            install_handler(libc::SIGWINCH, on_winch, libc::SA_RESTART);
        }
        c
    }

    /// A console on other host fds (used by tests). The fds stay owned by
    /// the caller.
    pub fn with_fds(in_fd: i32, out_fd: i32, err_fd: i32) -> Self {
        HostConsole { in_fd, out_fd, err_fd, eof: false, raw: false }
    }

    /// The host fd to watch for input: none after end of input.
    pub fn input_fd(&self) -> Option<i32> {
        if self.eof {
            None
        } else {
            Some(self.in_fd)
        }
    }

    fn write_fd(fd: i32, mut data: &[u8]) {
        while !data.is_empty() {
            // SAFETY: `data` is a valid readable buffer of `data.len()` bytes.
            let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            if n >= 0 {
                data = &data[n as usize..];
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    // Non-blocking fd (shared with a shell that set
                    // O_NONBLOCK): wait until it drains.
                    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: `p` is one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, -1) };
                }
                // EPIPE, EBADF, EIO...: nowhere to put the bytes; drop them
                // rather than fail the guest.
                _ => return,
            }
        }
    }
}

impl Drop for HostConsole {
    fn drop(&mut self) {
        if self.raw {
            restore_terminal();
        }
    }
}

impl Console for HostConsole {
    fn is_terminal(&self) -> bool {
        self.raw
    }

    fn window_size(&self) -> Option<(u16, u16)> {
        if !self.raw {
            return None;
        }
        match WINSIZE.load(Ordering::SeqCst) {
            0 => None,
            v => Some(((v >> 16) as u16, (v & 0xffff) as u16)),
        }
    }

    fn write(&mut self, stream: ConsoleStream, data: &[u8]) {
        let fd = match stream {
            ConsoleStream::Stdout => self.out_fd,
            ConsoleStream::Stderr => self.err_fd,
        };
        Self::write_fd(fd, data);
    }

    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead {
        if self.eof {
            return ConsoleRead::Eof;
        }
        if buf.is_empty() {
            return ConsoleRead::Data(0);
        }
        loop {
            let mut p = libc::pollfd { fd: self.in_fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: `p` is one valid pollfd; timeout 0 never blocks.
            let r = unsafe { libc::poll(&mut p, 1, 0) };
            if r < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                self.eof = true;
                return ConsoleRead::Eof;
            }
            if r == 0 {
                return ConsoleRead::WouldBlock;
            }
            if p.revents & libc::POLLNVAL != 0 {
                self.eof = true;
                return ConsoleRead::Eof;
            }
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
            let n = unsafe { libc::read(self.in_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return ConsoleRead::Data(n as usize);
            }
            if n == 0 {
                self.eof = true;
                return ConsoleRead::Eof;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return ConsoleRead::WouldBlock,
                _ => {
                    self.eof = true;
                    return ConsoleRead::Eof;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (i32, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two fds pipe(2) returns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn read_would_block_data_eof() {
        let (r, w) = pipe();
        let (or, ow) = pipe();
        let mut c = HostConsole::with_fds(r, ow, ow);
        let mut buf = [0u8; 16];
        assert_eq!(c.read(&mut buf), ConsoleRead::WouldBlock);
        // SAFETY: writing 3 bytes from a static buffer to our pipe.
        assert_eq!(unsafe { libc::write(w, b"abc".as_ptr().cast(), 3) }, 3);
        assert_eq!(c.read(&mut buf), ConsoleRead::Data(3));
        assert_eq!(&buf[..3], b"abc");
        c.write(ConsoleStream::Stdout, b"out");
        // SAFETY: reading into a local buffer from our pipe.
        let n = unsafe { libc::read(or, buf.as_mut_ptr().cast(), 16) };
        assert_eq!(&buf[..n as usize], b"out");
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
        assert_eq!(c.read(&mut buf), ConsoleRead::Eof);
        assert_eq!(c.input_fd(), None);
        for fd in [r, or, ow] {
            // SAFETY: closing fds this test owns.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn raw_mode_on_a_terminal_is_restored_at_drop() {
        // SAFETY: plain libc pty setup on fds this test owns.
        let (m, sl) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0);
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let name = libc::ptsname(m);
            assert!(!name.is_null());
            let sl = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
            assert!(sl >= 0);
            (m, sl)
        };
        let lflag = |fd: i32| {
            // SAFETY: tcgetattr fills a zeroed termios.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
            t.c_lflag
        };
        let before = lflag(sl);
        assert_ne!(before & libc::ECHO, 0);
        {
            let c = HostConsole::interactive(sl, sl, sl);
            assert!(c.is_terminal());
            let now = lflag(sl);
            assert_eq!(now & (libc::ECHO | libc::ICANON | libc::ISIG), 0);
        }
        assert_eq!(lflag(sl), before);
        let plain = HostConsole::with_fds(sl, sl, sl);
        assert!(!plain.is_terminal());
        for fd in [m, sl] {
            // SAFETY: closing fds this test owns.
            unsafe { libc::close(fd) };
        }
    }
}
