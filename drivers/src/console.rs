//! The console on the host's standard file descriptors.

use hal::{Console, ConsoleRead, ConsoleStream};
use std::io;

/// The guest console backed by host fds 0 (input), 1 and 2 (output).
///
/// Writes block until everything is written (retrying on `EINTR`, waiting
/// for `POLLOUT` on `EAGAIN`). Reads never block.
///
/// Input readiness is edge-triggered for [`HostConsole::input_armed`]: after
/// the HAL has reported console input once, it does not report it again until
/// the kernel calls [`Console::read`], so a guest that never reads its input
/// cannot make an idle kernel spin.
#[derive(Debug)]
pub struct HostConsole {
    in_fd: i32,
    out_fd: i32,
    err_fd: i32,
    eof: bool,
    armed: bool,
}

impl Default for HostConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl HostConsole {
    /// The console on host fds 0, 1 and 2.
    pub fn new() -> Self {
        Self::with_fds(0, 1, 2)
    }

    /// A console on other host fds (used by tests). The fds stay owned by
    /// the caller.
    pub fn with_fds(in_fd: i32, out_fd: i32, err_fd: i32) -> Self {
        HostConsole { in_fd, out_fd, err_fd, eof: false, armed: true }
    }

    /// The host fd to watch for input, if input should be waited for now:
    /// not after end of input, and not again after a readiness report until
    /// the next [`Console::read`].
    pub fn input_armed(&self) -> Option<i32> {
        if self.eof || !self.armed {
            None
        } else {
            Some(self.in_fd)
        }
    }

    /// Record that readiness of the input fd was reported to the kernel, or
    /// that the fd can not be polled (`POLLNVAL`), which is end of input.
    pub fn input_reported(&mut self, invalid: bool) {
        self.armed = false;
        if invalid {
            self.eof = true;
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

impl Console for HostConsole {
    fn write(&mut self, stream: ConsoleStream, data: &[u8]) {
        let fd = match stream {
            ConsoleStream::Stdout => self.out_fd,
            ConsoleStream::Stderr => self.err_fd,
        };
        Self::write_fd(fd, data);
    }

    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead {
        self.armed = true;
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
        assert_eq!(c.input_armed(), None);
        for fd in [r, or, ow] {
            // SAFETY: closing fds this test owns.
            unsafe { libc::close(fd) };
        }
    }
}
