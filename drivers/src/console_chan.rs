//! Host channels for the guest's extra console lines (`/dev/tty1`...,
//! UML's `conN=SPEC`): a host pseudo-terminal (`pts`), a raw TCP port on
//! loopback (`port:127.0.0.1:PORT`), an output file (`file:PATH`) or
//! nothing (`null`).
//!
//! Every channel is non-blocking both ways: reads return what is there,
//! writes put what the host takes now and drop the rest (a line nobody
//! reads is a serial line with nobody listening), so a channel can never
//! stall the kernel. The descriptors to watch for input are
//! [`Channel::watch_fds`]; the HAL re-arms them after each read.

use hal::{Console, ConsoleRead, ConsoleStream};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// A channel specification, checked but not opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChanSpec {
    /// Output dropped, no input.
    Null,
    /// Output appended to a host file, no input.
    File(PathBuf),
    /// A new host pseudo-terminal; its path is printed at boot.
    Pts,
    /// A TCP listener on a loopback address; one client at a time.
    Port(SocketAddrV4),
    /// Host descriptors (input, output): only for the console itself (`con0`).
    Fd(i32, i32),
}

/// Parse `null`, `file:PATH`, `pts`, `port:127.0.0.1:PORT`, `fd:N[,fd:M]`.
pub fn parse(spec: &str) -> Result<ChanSpec, String> {
    let fd = |s: &str| s.strip_prefix("fd:").and_then(|n| n.parse::<i32>().ok()).filter(|&n| n >= 0);
    match spec {
        "null" => return Ok(ChanSpec::Null),
        "pts" => return Ok(ChanSpec::Pts),
        _ => {}
    }
    if let Some(p) = spec.strip_prefix("file:") {
        if p.is_empty() {
            return Err(format!("`{spec}`: file: needs a path"));
        }
        return Ok(ChanSpec::File(PathBuf::from(p)));
    }
    if let Some(a) = spec.strip_prefix("port:") {
        let addr: SocketAddrV4 = a.parse().map_err(|_| format!("`{spec}`: expected port:127.0.0.1:PORT"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("`{spec}`: a console port listens on loopback only (127.0.0.0/8)"));
        }
        return Ok(ChanSpec::Port(addr));
    }
    if spec.starts_with("fd:") {
        let (a, b) = spec.split_once(',').unwrap_or((spec, spec));
        return match (fd(a), fd(b)) {
            (Some(i), Some(o)) => Ok(ChanSpec::Fd(i, o)),
            _ => Err(format!("`{spec}`: expected fd:N or fd:N,fd:M")),
        };
    }
    Err(format!("`{spec}`: a console channel is null, file:PATH, pts, port:127.0.0.1:PORT or fd:N,fd:M"))
}

enum Kind {
    Null,
    File(std::fs::File),
    /// The master, and a slave descriptor held so the master never sees a
    /// hang-up while no program has the slave open.
    Pts { master: OwnedFd, _slave: OwnedFd },
    Port { listener: OwnedFd, client: Option<OwnedFd> },
}

/// An open channel (see the module comment).
pub struct Channel {
    kind: Kind,
    describe: String,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn nonblocking(fd: RawFd) {
    // SAFETY: fcntl flag changes on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl Channel {
    /// Open the channel `spec` describes (all but [`ChanSpec::Fd`]).
    pub fn open(spec: &ChanSpec) -> Result<Channel, String> {
        let (kind, describe) = match spec {
            ChanSpec::Null => (Kind::Null, "null".to_string()),
            ChanSpec::Fd(..) => return Err("fd: channels are for con0 only".into()),
            ChanSpec::File(p) => {
                let f = std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| format!("file:{}: {e}", p.display()))?;
                (Kind::File(f), format!("file:{}", p.display()))
            }
            ChanSpec::Pts => Self::open_pts().map_err(|e| format!("pts: {e}"))?,
            ChanSpec::Port(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|e| format!("port:{addr}: {e}"))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                let addr = l.local_addr().map_err(|e| e.to_string())?;
                (Kind::Port { listener: OwnedFd::from(l), client: None }, format!("port:{addr}"))
            }
        };
        Ok(Channel { kind, describe })
    }

    fn open_pts() -> io::Result<(Kind, String)> {
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on the descriptor just opened; results checked.
        let master = unsafe { OwnedFd::from_raw_fd(cvt(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: as above; `name` has room for 128 bytes.
        unsafe {
            cvt(libc::grantpt(master.as_raw_fd()))?;
            cvt(libc::unlockpt(master.as_raw_fd()))?;
            if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: ptsname_r wrote a NUL-terminated name.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
        // SAFETY: opening the slave by the name just returned.
        let slave = unsafe { OwnedFd::from_raw_fd(cvt(libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?) };
        // The host side is a plain byte pipe: the guest's line discipline
        // echoes and translates.
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a zeroed termios and our slave.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
        nonblocking(master.as_raw_fd());
        Ok((Kind::Pts { master, _slave: slave }, format!("pts:{path}")))
    }

    /// What the channel is, for the user: `pts:/dev/pts/7`, `port:127.0.0.1:9001`...
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The descriptors whose readability means input (or a connection).
    pub fn watch_fds(&self) -> Vec<RawFd> {
        match &self.kind {
            Kind::Null | Kind::File(_) => Vec::new(),
            Kind::Pts { master, .. } => vec![master.as_raw_fd()],
            Kind::Port { listener, client } => {
                let mut v = vec![listener.as_raw_fd()];
                v.extend(client.as_ref().map(|c| c.as_raw_fd()));
                v
            }
        }
    }

    fn accept(listener: &OwnedFd, client: &mut Option<OwnedFd>) {
        loop {
            // SAFETY: accept4 without an address; the result is checked.
            let fd = unsafe { libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) };
            if fd < 0 {
                return;
            }
            // SAFETY: a descriptor accept4 just returned.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if client.is_some() {
                let msg = b"console line busy: one client at a time\r\n";
                // SAFETY: best-effort send from a valid buffer.
                unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
                continue;
            }
            *client = Some(fd);
        }
    }
}

/// Write what `fd` takes now; false if it is gone.
fn put(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: sending from a valid buffer (send on a socket, write otherwise).
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        let n = if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: as above, for a pty master.
            unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
        } else {
            n
        };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // Nobody reads: the rest is dropped.
            Some(libc::EAGAIN) => true,
            _ => false,
        };
    }
    true
}

/// Read what `fd` has now.
fn get(fd: RawFd, buf: &mut [u8]) -> ConsoleRead {
    loop {
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return ConsoleRead::Data(n as usize);
        }
        if n == 0 {
            return ConsoleRead::Eof;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return ConsoleRead::WouldBlock,
            _ => return ConsoleRead::Eof,
        }
    }
}

impl Console for Channel {
    fn write(&mut self, _stream: ConsoleStream, data: &[u8]) {
        match &mut self.kind {
            Kind::Null => {}
            Kind::File(f) => {
                let _ = io::Write::write_all(f, data);
            }
            Kind::Pts { master, .. } => {
                put(master.as_raw_fd(), data);
            }
            Kind::Port { client, .. } => {
                if let Some(c) = client {
                    if !put(c.as_raw_fd(), data) {
                        *client = None;
                    }
                }
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead {
        if buf.is_empty() {
            return ConsoleRead::Data(0);
        }
        match &mut self.kind {
            Kind::Null | Kind::File(_) => ConsoleRead::WouldBlock,
            Kind::Pts { master, .. } => match get(master.as_raw_fd(), buf) {
                // (The held slave keeps the master from hanging up.)
                ConsoleRead::Eof => ConsoleRead::WouldBlock,
                r => r,
            },
            Kind::Port { listener, client } => {
                Self::accept(listener, client);
                let Some(c) = client else { return ConsoleRead::WouldBlock };
                match get(c.as_raw_fd(), buf) {
                    // The client left; the line waits for the next one.
                    ConsoleRead::Eof => {
                        *client = None;
                        ConsoleRead::WouldBlock
                    }
                    r => r,
                }
            }
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self.kind, Kind::Pts { .. } | Kind::Port { .. })
    }

    fn window_size(&self) -> Option<(u16, u16)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse("null"), Ok(ChanSpec::Null));
        assert_eq!(parse("pts"), Ok(ChanSpec::Pts));
        assert_eq!(parse("fd:0,fd:1"), Ok(ChanSpec::Fd(0, 1)));
        assert_eq!(parse("fd:3"), Ok(ChanSpec::Fd(3, 3)));
        assert_eq!(parse("port:127.0.0.1:9001"), Ok(ChanSpec::Port("127.0.0.1:9001".parse().unwrap())));
        assert_eq!(parse("file:/tmp/x"), Ok(ChanSpec::File("/tmp/x".into())));
        for bad in ["", "port:0.0.0.0:9001", "port:10.0.0.1:1", "port:127.0.0.1", "fd:x", "fd:-1", "file:", "tty", "xterm"] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn port_channel_takes_one_client() {
        let mut c = Channel::open(&ChanSpec::Port("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = c.describe().strip_prefix("port:").unwrap().to_string();
        let mut buf = [0u8; 64];
        assert_eq!(c.read(&mut buf), ConsoleRead::WouldBlock);
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        io::Write::write_all(&mut s, b"hi").unwrap();
        let t0 = std::time::Instant::now();
        let got = loop {
            match c.read(&mut buf) {
                ConsoleRead::Data(n) => break n,
                _ if t0.elapsed().as_secs() < 10 => std::thread::sleep(std::time::Duration::from_millis(10)),
                r => panic!("{r:?}"),
            }
        };
        assert_eq!(&buf[..got], b"hi");
        c.write(ConsoleStream::Stdout, b"back");
        let mut r = [0u8; 4];
        io::Read::read_exact(&mut s, &mut r).unwrap();
        assert_eq!(&r, b"back");
        assert_eq!(c.watch_fds().len(), 2);
    }
}
