//! Terminals: the console and pseudo-terminals, one line discipline each,
//! job control (foreground process group, controlling terminal per session),
//! `/dev/tty`, `/dev/ptmx` and `/dev/pts/N`.

pub mod kmsg;
pub mod ldisc;

use alloc::collections::VecDeque;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};

use hal::ConsoleStream;
use linux_raw_sys::general as g;

use crate::fs::{Fs, InodeRef, Kind};
use crate::task::Pid;
use crate::wait::{FileOps, IoCtx, Opened, SpecialRef, WaitQueue, WaitRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;
use ldisc::{cc, Ldisc, Termios};

/// Most output a pty master buffers before slave writes wait.
pub const PTY_OUT_MAX: usize = 65536;

/// Where a terminal's output goes.
enum Backend {
    /// The host console (through the HAL).
    Console,
    /// A pseudo-terminal: output is read by the master.
    Pty(PtyState),
    /// An extra console line (`/dev/ttyN`, UML's `conN=`): output waits
    /// here until the kernel loop hands it to the HAL's channel N
    /// ([`Ttys::take_line_output`]), input comes from it.
    Line(LineState),
}

struct LineState {
    index: u32,
    out: RefCell<VecDeque<u8>>,
}

struct PtyState {
    index: u32,
    /// Slave output (and echo) waiting for the master to read it.
    out: RefCell<VecDeque<u8>>,
    /// `TIOCSPTLCK`: the slave cannot be opened while locked.
    locked: Cell<bool>,
    /// Open master descriptions.
    masters: Cell<u32>,
    /// Open slave descriptions, and whether one was ever opened.
    slaves: Cell<u32>,
    slave_ever: Cell<bool>,
    /// The `/dev/pts` directory (to remove our node when the master goes).
    pts_dir: InodeRef,
}

/// A terminal: line discipline, termios, window size, job control state.
pub struct Tty {
    backend: Backend,
    termios: Cell<Termios>,
    winsize: Cell<[u16; 4]>,
    ld: RefCell<Ldisc>,
    /// The session it is the controlling terminal of.
    pub session: Cell<Option<Pid>>,
    /// The foreground process group.
    pub fg_pgrp: Cell<Option<Pid>>,
    /// Input ended (host stdin closed) or the master side is gone.
    hangup: Cell<bool>,
    /// Raw-mode `VTIME` timer state: the deadline of a pending timed read,
    /// and when the last byte arrived.
    vtime_deadline: Cell<Option<u64>>,
    last_input: Cell<u64>,
    wq: WaitRef,
    registry: Weak<Ttys>,
    /// For the console: the host side is a terminal. When it is not (pipes,
    /// files), output is passed through untranslated and input not echoed,
    /// so guest output matches what the same program writes natively to a pipe.
    host_terminal: Cell<bool>,
}

impl Tty {
    fn new(backend: Backend, registry: Weak<Ttys>) -> Rc<Tty> {
        Rc::new(Tty {
            backend,
            termios: Cell::new(Termios::default()),
            winsize: Cell::new([24, 80, 0, 0]),
            ld: RefCell::new(Ldisc::default()),
            session: Cell::new(None),
            fg_pgrp: Cell::new(None),
            hangup: Cell::new(false),
            vtime_deadline: Cell::new(None),
            last_input: Cell::new(0),
            wq: WaitQueue::new(),
            registry,
            host_terminal: Cell::new(true),
        })
    }

    /// Say whether the host side of the console is a terminal.
    pub fn set_host_terminal(&self, yes: bool) {
        self.host_terminal.set(yes);
    }

    /// Host terminal passes bytes through (console on a pipe or file)? Then
    /// the console is no terminal for the guest either (`isatty` is false),
    /// so programs print what they would print into a host pipe or file.
    pub fn passthrough(&self) -> bool {
        matches!(self.backend, Backend::Console | Backend::Line(_)) && !self.host_terminal.get()
    }

    /// The termios.
    pub fn termios(&self) -> Termios {
        self.termios.get()
    }

    /// Set the termios (`TCSETS*`); `flush` discards pending input (`TCSETSF`).
    pub fn set_termios(&self, t: Termios, flush: bool) {
        let old = self.termios.get();
        let mut ld = self.ld.borrow_mut();
        if flush {
            ld.flush_input();
        }
        ld.set_mode(&old, &t);
        self.termios.set(t);
        self.vtime_deadline.set(None);
        self.wq.notify();
    }

    /// The window size (rows, cols, xpixel, ypixel).
    pub fn winsize(&self) -> [u16; 4] {
        self.winsize.get()
    }

    /// Set the window size; the foreground group gets `SIGWINCH` if it changed.
    pub fn set_winsize(&self, io: &mut IoCtx<'_>, w: [u16; 4]) {
        if self.winsize.replace(w) != w {
            if let Some(pg) = self.fg_pgrp.get() {
                io.signal_group(pg, g::SIGWINCH);
            }
        }
    }

    /// Same as [`Tty::set_winsize`] but with the signal returned (host resize).
    pub fn resize(&self, w: [u16; 4]) -> Option<(Pid, u32)> {
        if self.winsize.replace(w) != w {
            return self.fg_pgrp.get().map(|pg| (pg, g::SIGWINCH));
        }
        None
    }

    /// Discard input (`TCFLSH` with `TCIFLUSH`/`TCIOFLUSH`) or pending output.
    pub fn flush(&self, input: bool, output: bool) {
        if input {
            self.ld.borrow_mut().flush_input();
        }
        if output {
            if let Backend::Pty(p) = &self.backend {
                p.out.borrow_mut().clear();
            }
        }
        self.wq.notify();
    }

    /// The pty number, for a pseudo-terminal.
    pub fn pty_index(&self) -> Option<u32> {
        match &self.backend {
            Backend::Pty(p) => Some(p.index),
            Backend::Console | Backend::Line(_) => None,
        }
    }

    /// Input ended (the console's host input is closed).
    pub fn set_hangup(&self) {
        self.hangup.set(true);
        self.wq.notify();
    }

    /// Bytes the terminal side may send now (see [`Ldisc::room`]).
    pub fn input_room(&self) -> usize {
        self.ld.borrow().room(&self.termios.get())
    }

    /// Bytes readable now (`FIONREAD`).
    pub fn input_available(&self) -> usize {
        self.ld.borrow().available()
    }

    /// Terminal-side input (typed on the console, written to the master):
    /// line discipline processing, echo, signals to the foreground group.
    pub fn receive(&self, io: &mut IoCtx<'_>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let t = self.termios.get();
        let fx = self.ld.borrow_mut().input(&t, data);
        self.last_input.set(io.now);
        if !fx.echo.is_empty() && !self.passthrough() {
            self.emit(io, ConsoleStream::Stdout, &fx.echo);
        }
        if let Some(pg) = self.fg_pgrp.get() {
            for s in fx.signals {
                io.signal_group(pg, s);
            }
        }
        self.wq.notify();
    }

    /// Already-processed bytes to the terminal.
    fn emit(&self, io: &mut IoCtx<'_>, stream: ConsoleStream, bytes: &[u8]) {
        match &self.backend {
            Backend::Console => io.console.write(stream, bytes),
            Backend::Pty(p) => {
                p.out.borrow_mut().extend(bytes.iter());
                self.wq.notify();
            }
            Backend::Line(l) => {
                l.out.borrow_mut().extend(bytes.iter());
                if let Some(r) = self.registry.upgrade() {
                    r.lines_dirty.set(true);
                }
            }
        }
    }

    /// Job control for the caller: a background process of the terminal's
    /// session touching it gets `sig` (its group), or `EIO` when it
    /// blocks/ignores it and `must` says so (reads).
    fn job_check(&self, io: &mut IoCtx<'_>, sig: u32, eio_if_ignored: bool) -> Result<(), Errno> {
        let (Some(sid), Some(fg)) = (self.session.get(), self.fg_pgrp.get()) else { return Ok(()) };
        if sid != io.sid || fg == io.pgid {
            return Ok(());
        }
        if io.ignores(sig) {
            return if eio_if_ignored { Err(Errno::EIO) } else { Ok(()) };
        }
        io.signal_group(io.pgid, sig);
        Err(Errno::EINTR)
    }

    /// Queue a record of a program's read or write, when recording.
    fn record(&self, io: &IoCtx<'_>, input: bool, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(reg) = self.registry.upgrade() else { return };
        let mut log = reg.tty_log.borrow_mut();
        let Some(log) = log.as_mut() else { return };
        let tty = match &self.backend {
            Backend::Console => String::from("console"),
            Backend::Line(l) => format!("tty{}", l.index),
            Backend::Pty(p) => format!("pts/{}", p.index),
        };
        log.push(TtyRecord { realtime_ns: io.realtime, tty, input, pid: io.pid, sid: io.sid, data: data.to_vec() });
    }

    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let r = self.read_ldisc(io, buf);
        if let Ok(n) = r {
            self.record(io, true, &buf[..n.min(buf.len())]);
        }
        r
    }

    fn read_ldisc(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.job_check(io, g::SIGTTIN, true)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let t = self.termios.get();
        let mut ld = self.ld.borrow_mut();
        if t.canonical() {
            return match ld.read(&t, buf) {
                Some(n) => Ok(n),
                None if self.hangup.get() => Ok(0),
                None => Err(Errno::EAGAIN),
            };
        }
        let (vmin, vtime) = (t.cc[cc::VMIN] as usize, t.cc[cc::VTIME] as u64 * 100_000_000);
        let avail = ld.available();
        let done = |ld: &mut Ldisc, buf: &mut [u8]| {
            self.vtime_deadline.set(None);
            Ok(ld.read(&t, buf).unwrap_or(0))
        };
        if self.hangup.get() || (io.nonblock && avail > 0) {
            return done(&mut ld, buf);
        }
        match (vmin, vtime) {
            (0, 0) => done(&mut ld, buf),
            (min, 0) => {
                if avail >= min.min(buf.len()) {
                    done(&mut ld, buf)
                } else {
                    Err(Errno::EAGAIN)
                }
            }
            (0, vt) => {
                if avail > 0 {
                    return done(&mut ld, buf);
                }
                match self.vtime_deadline.get() {
                    Some(d) if d <= io.now => done(&mut ld, buf),
                    Some(_) => Err(Errno::EAGAIN),
                    None => {
                        self.vtime_deadline.set(Some(io.now.saturating_add(vt)));
                        Err(Errno::EAGAIN)
                    }
                }
            }
            (min, vt) => {
                // Inter-byte timer: started by the first byte.
                if avail >= min.min(buf.len()) || (avail > 0 && self.last_input.get().saturating_add(vt) <= io.now) {
                    done(&mut ld, buf)
                } else {
                    Err(Errno::EAGAIN)
                }
            }
        }
    }

    fn write(&self, io: &mut IoCtx<'_>, stream: ConsoleStream, data: &[u8]) -> Result<usize, Errno> {
        let r = self.write_ldisc(io, stream, data);
        if let Ok(n) = r {
            self.record(io, false, &data[..n.min(data.len())]);
        }
        r
    }

    fn write_ldisc(&self, io: &mut IoCtx<'_>, stream: ConsoleStream, data: &[u8]) -> Result<usize, Errno> {
        let t = self.termios.get();
        if t.lflag & g::TOSTOP != 0 {
            self.job_check(io, g::SIGTTOU, false)?;
        }
        if self.hangup.get() && matches!(self.backend, Backend::Pty(_)) {
            return Err(Errno::EIO);
        }
        let mut n = data.len();
        let queue = match &self.backend {
            Backend::Pty(p) => Some(&p.out),
            Backend::Line(l) => Some(&l.out),
            Backend::Console => None,
        };
        if let Some(q) = queue {
            let room = PTY_OUT_MAX.saturating_sub(q.borrow().len());
            if room == 0 {
                return Err(Errno::EAGAIN);
            }
            // ONLCR may double a byte: keep the worst case within the room.
            n = n.min(room.div_ceil(2).max(1));
        }
        if self.passthrough() {
            self.emit(io, stream, &data[..n]);
            return Ok(n);
        }
        let mut out = Vec::with_capacity(n + n / 8);
        ldisc::output(&t, &data[..n], &mut out);
        self.emit(io, stream, &out);
        Ok(n)
    }

    fn poll_slave(&self, io: &mut IoCtx<'_>, ws: Option<&mut WaitSet>) -> u32 {
        let t = self.termios.get();
        let mut r = 0;
        if self.ld.borrow().readable() || self.hangup.get() {
            r |= POLLIN | POLLRDNORM;
        }
        if self.hangup.get() {
            r |= POLLHUP;
        }
        let out_room = match &self.backend {
            Backend::Console => true,
            Backend::Pty(p) => p.out.borrow().len() < PTY_OUT_MAX,
            Backend::Line(l) => l.out.borrow().len() < PTY_OUT_MAX,
        };
        if out_room {
            r |= POLLOUT | POLLWRNORM;
        }
        if let Some(ws) = ws {
            ws.add(&self.wq);
            if matches!(self.backend, Backend::Console | Backend::Line(_)) {
                ws.external = true;
            }
            if !t.canonical() && t.cc[cc::VTIME] != 0 {
                let vt = t.cc[cc::VTIME] as u64 * 100_000_000;
                if let Some(d) = self.vtime_deadline.get() {
                    ws.wake_at(d);
                } else if t.cc[cc::VMIN] != 0 && self.ld.borrow().available() > 0 {
                    ws.wake_at(self.last_input.get().saturating_add(vt));
                }
            }
        }
        let _ = io;
        r
    }

    /// Become the controlling terminal of the caller's session if it is a
    /// session leader without one and the terminal is free (open without
    /// `O_NOCTTY`, `TIOCSCTTY`).
    pub fn maybe_acquire(&self, io: &IoCtx<'_>, force: bool) -> Result<(), Errno> {
        if io.pid != io.sid {
            return if force { Err(Errno::EPERM) } else { Ok(()) };
        }
        let reg = self.registry.upgrade();
        if let Some(cur) = reg.as_ref().and_then(|r| r.controlling(io.sid)) {
            if core::ptr::eq(Rc::as_ptr(&cur), self) {
                return Ok(());
            }
            return if force { Err(Errno::EPERM) } else { Ok(()) };
        }
        if self.session.get().is_some_and(|s| s != io.sid) && !force {
            return if force { Err(Errno::EPERM) } else { Ok(()) };
        }
        self.session.set(Some(io.sid));
        self.fg_pgrp.set(Some(io.pgid));
        Ok(())
    }
}

/// An open terminal (console or pty slave) as a file. `stream` picks host
/// stdout or stderr for console output (init's fd 2 goes to the host's stderr).
pub struct TtyFile {
    /// The terminal.
    pub tty: Rc<Tty>,
    stream: ConsoleStream,
}

impl TtyFile {
    /// A file on `tty` writing to `stream`.
    pub fn new(tty: Rc<Tty>, stream: ConsoleStream) -> Rc<TtyFile> {
        Rc::new(TtyFile { tty, stream })
    }
}

impl FileOps for TtyFile {
    fn read(&self, io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = self.tty.read(io, buf)?;
        if n > 0 {
            // Room for a pty master's writer.
            self.tty.wq.notify();
        }
        Ok(n)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        self.tty.write(io, self.stream, data)
    }
    fn poll(&self, io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        self.tty.poll_slave(io, ws)
    }
    fn opened(&self, _r: bool, _w: bool) {
        if let Backend::Pty(p) = &self.tty.backend {
            p.slaves.set(p.slaves.get() + 1);
            p.slave_ever.set(true);
            self.tty.wq.notify();
        }
    }
    fn closed(&self, _r: bool, _w: bool) {
        if let Backend::Pty(p) = &self.tty.backend {
            p.slaves.set(p.slaves.get().saturating_sub(1));
            self.tty.wq.notify();
        }
    }
    fn open(&self, io: &mut IoCtx<'_>, flags: u32) -> Result<Opened, Errno> {
        if let Backend::Pty(p) = &self.tty.backend {
            if p.locked.get() || p.masters.get() == 0 {
                return Err(Errno::EIO);
            }
        }
        if flags & g::O_NOCTTY == 0 {
            self.tty.maybe_acquire(io, false)?;
        }
        Ok(Opened::Same)
    }
    fn rdev(&self) -> (u32, u32) {
        match &self.tty.backend {
            Backend::Console => (5, 1),
            Backend::Pty(p) => (136, p.index),
            Backend::Line(l) => (4, l.index),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The master side of a pseudo-terminal.
pub struct PtyMaster {
    /// The terminal (its slave side is `/dev/pts/N`).
    pub tty: Rc<Tty>,
}

impl PtyMaster {
    fn pty(&self) -> Option<&PtyState> {
        match &self.tty.backend {
            Backend::Pty(p) => Some(p),
            Backend::Console | Backend::Line(_) => None,
        }
    }
    /// `TIOCSPTLCK`.
    pub fn set_locked(&self, locked: bool) {
        if let Some(p) = self.pty() {
            p.locked.set(locked);
        }
    }
    /// `TIOCGPTLCK`.
    pub fn locked(&self) -> bool {
        self.pty().is_some_and(|p| p.locked.get())
    }
}

impl FileOps for PtyMaster {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let Some(p) = self.pty() else { return Err(Errno::EIO) };
        let mut out = p.out.borrow_mut();
        if out.is_empty() {
            // Linux: EIO once every slave is closed (after one was opened).
            return if p.slave_ever.get() && p.slaves.get() == 0 { Err(Errno::EIO) } else { Err(Errno::EAGAIN) };
        }
        let n = buf.len().min(out.len());
        for (b, x) in buf.iter_mut().zip(out.drain(..n)) {
            *b = x;
        }
        drop(out);
        self.tty.wq.notify();
        Ok(n)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        // As much as the slave's input has room for; then the writer waits
        // for a reader (nothing is dropped, as on Linux).
        let n = data.len().min(self.tty.input_room());
        if n == 0 && !data.is_empty() {
            return Err(Errno::EAGAIN);
        }
        self.tty.receive(io, &data[..n]);
        Ok(n)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let mut r = if self.tty.input_room() > 0 { POLLOUT | POLLWRNORM } else { 0 };
        if let Some(p) = self.pty() {
            if !p.out.borrow().is_empty() {
                r |= POLLIN | POLLRDNORM;
            } else if p.slave_ever.get() && p.slaves.get() == 0 {
                r |= POLLHUP | POLLIN | POLLERR;
            }
        }
        if let Some(ws) = ws {
            ws.add(&self.tty.wq);
        }
        r
    }
    fn opened(&self, _r: bool, _w: bool) {
        if let Some(p) = self.pty() {
            p.masters.set(p.masters.get() + 1);
        }
    }
    fn closed(&self, _r: bool, _w: bool) {
        let Some(p) = self.pty() else { return };
        p.masters.set(p.masters.get().saturating_sub(1));
        if p.masters.get() == 0 {
            // Hang up the slave: its readers see EOF, writers EIO; the node goes.
            self.tty.set_hangup();
            if let Some(fg) = self.tty.fg_pgrp.get() {
                if let Some(reg) = self.tty.registry.upgrade() {
                    reg.deferred_signals.borrow_mut().push((fg, g::SIGHUP));
                }
            }
            if let Kind::Dir(d) = &p.pts_dir.kind {
                d.borrow_mut().remove(&format!("{}", p.index));
            }
            if let Some(reg) = self.tty.registry.upgrade() {
                reg.ptys.borrow_mut().retain(|w| w.upgrade().is_some_and(|t| !Rc::ptr_eq(&t, &self.tty)));
            }
        }
    }
    fn rdev(&self) -> (u32, u32) {
        (5, 2)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `/dev/ptmx`: each open makes a new pty pair.
pub struct Ptmx {
    registry: Weak<Ttys>,
}

impl FileOps for Ptmx {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::EIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        POLLERR
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<Opened, Errno> {
        let reg = self.registry.upgrade().ok_or(Errno::ENODEV)?;
        let master = reg.new_pty()?;
        Ok(Opened::Other(master))
    }
    fn rdev(&self) -> (u32, u32) {
        (5, 2)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `/dev/tty`: the caller's controlling terminal.
pub struct DevTty {
    registry: Weak<Ttys>,
}

impl FileOps for DevTty {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        POLLERR
    }
    fn open(&self, io: &mut IoCtx<'_>, _flags: u32) -> Result<Opened, Errno> {
        let reg = self.registry.upgrade().ok_or(Errno::ENXIO)?;
        let tty = reg.controlling(io.sid).ok_or(Errno::ENXIO)?;
        Ok(Opened::Other(TtyFile::new(tty, ConsoleStream::Stdout)))
    }
    fn rdev(&self) -> (u32, u32) {
        (5, 0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Every terminal of the system.
pub struct Ttys {
    /// The console.
    pub console: Rc<Tty>,
    ptys: RefCell<Vec<Weak<Tty>>>,
    pts_dir: RefCell<Option<InodeRef>>,
    /// Nodes to add to `/dev/pts` (the pty layer has no `Fs` at hand): (index, file).
    pending_nodes: RefCell<Vec<(u32, SpecialRef)>>,
    /// Signals raised outside any I/O context (master hang-up): (pgid, sig).
    pub deferred_signals: RefCell<Vec<(Pid, u32)>>,
    /// The kernel's log (`dmesg`, `/dev/kmsg`).
    pub log: kmsg::LogRef,
    /// Console lines 1 to [`MAX_LINES`] (`/dev/tty1`...), where the HAL has
    /// a channel for them (index `n - 1`).
    lines: RefCell<Vec<Option<Rc<Tty>>>>,
    /// A line has output waiting (checked by the kernel loop on every pass).
    pub lines_dirty: Cell<bool>,
    /// `tty_log_dir=`: terminal traffic not handed to the HAL yet (None: off).
    tty_log: RefCell<Option<Vec<TtyRecord>>>,
}

/// One read or write of a guest program on a terminal (see
/// [`hal::TtyLogRecord`]).
pub struct TtyRecord {
    /// Wall-clock time, ns.
    pub realtime_ns: u64,
    /// `console`, `ttyN`, `pts/N`.
    pub tty: String,
    /// Read (true) or written (false).
    pub input: bool,
    /// The process.
    pub pid: u32,
    /// Its session.
    pub sid: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Extra console lines: `/dev/tty1` to `/dev/tty6`, as Linux's default
/// gettys use.
pub const MAX_LINES: u32 = 6;

/// `/dev/ttyN` with no channel attached: opening it fails with `ENXIO`
/// (as a serial port with no hardware behind it does).
struct NoLine;

impl FileOps for NoLine {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _io: &mut IoCtx<'_>, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        POLLERR
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<Opened, Errno> {
        Err(Errno::ENXIO)
    }
    fn rdev(&self) -> (u32, u32) {
        (4, 0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Ttys {
    /// The console terminal, controlling terminal of session 1 (init's)
    /// with process group 1 in the foreground.
    pub fn new() -> Rc<Ttys> {
        Rc::new_cyclic(|w| {
            let console = Tty::new(Backend::Console, w.clone());
            // The console is the user's (UTF-8) terminal: IUTF8, as a
            // terminal emulator or `login` sets it (a new pty has not).
            let mut t = console.termios.get();
            t.iflag |= g::IUTF8;
            console.termios.set(t);
            console.session.set(Some(1));
            console.fg_pgrp.set(Some(1));
            Ttys {
                console,
                ptys: RefCell::new(Vec::new()),
                pts_dir: RefCell::new(None),
                pending_nodes: RefCell::new(Vec::new()),
                deferred_signals: RefCell::new(Vec::new()),
                log: Rc::new(RefCell::new(kmsg::KernelLog::default())),
                lines: RefCell::new(Vec::new()),
                lines_dirty: Cell::new(false),
                tty_log: RefCell::new(None),
            }
        })
    }

    /// A console file (stdout or stderr output).
    pub fn console_file(&self, stream: ConsoleStream) -> SpecialRef {
        TtyFile::new(self.console.clone(), stream)
    }

    /// Give console line `n` (1 to [`MAX_LINES`]) a terminal; `host_terminal`
    /// as for the console. Before [`Ttys::install_dev_nodes`].
    pub fn attach_line(self: &Rc<Self>, n: u32, host_terminal: bool) {
        if n == 0 || n > MAX_LINES {
            return;
        }
        let tty = Tty::new(Backend::Line(LineState { index: n, out: RefCell::new(VecDeque::new()) }), Rc::downgrade(self));
        let mut t = tty.termios.get();
        t.iflag |= g::IUTF8;
        tty.termios.set(t);
        tty.set_host_terminal(host_terminal);
        let mut lines = self.lines.borrow_mut();
        if lines.len() < n as usize {
            lines.resize(n as usize, None);
        }
        lines[n as usize - 1] = Some(tty);
    }

    /// Record every read and write of guest programs on terminals.
    pub fn set_tty_log(&self, on: bool) {
        *self.tty_log.borrow_mut() = on.then(Vec::new);
    }

    /// Records are waiting for [`Ttys::take_tty_log`].
    pub fn tty_log_pending(&self) -> bool {
        self.tty_log.borrow().as_ref().is_some_and(|v| !v.is_empty())
    }

    /// The records since the last call.
    pub fn take_tty_log(&self) -> Vec<TtyRecord> {
        self.tty_log.borrow_mut().as_mut().map(core::mem::take).unwrap_or_default()
    }

    /// Console line `n`'s terminal, if attached.
    pub fn line(&self, n: u32) -> Option<Rc<Tty>> {
        self.lines.borrow().get((n as usize).wrapping_sub(1)).cloned().flatten()
    }

    /// Output of line `n` waiting for its channel (taken); writers waiting
    /// for room are woken.
    pub fn take_line_output(&self, n: u32) -> Vec<u8> {
        let Some(tty) = self.line(n) else { return Vec::new() };
        let Backend::Line(l) = &tty.backend else { return Vec::new() };
        let out: Vec<u8> = l.out.borrow_mut().drain(..).collect();
        if !out.is_empty() {
            tty.wq.notify();
        }
        out
    }

    /// The controlling terminal of session `sid`.
    pub fn controlling(&self, sid: Pid) -> Option<Rc<Tty>> {
        if self.console.session.get() == Some(sid) {
            return Some(self.console.clone());
        }
        if let Some(t) = self.lines.borrow().iter().flatten().find(|t| t.session.get() == Some(sid)) {
            return Some(t.clone());
        }
        self.ptys.borrow().iter().filter_map(|w| w.upgrade()).find(|t| t.session.get() == Some(sid))
    }

    /// Forget session `sid` (its leader exited or it called `TIOCNOTTY`).
    pub fn detach_session(&self, sid: Pid) {
        if let Some(t) = self.controlling(sid) {
            t.session.set(None);
            t.fg_pgrp.set(None);
        }
    }

    fn new_pty(self: &Rc<Self>) -> Result<SpecialRef, Errno> {
        let pts_dir = self.pts_dir.borrow().clone().ok_or(Errno::ENODEV)?;
        let used: Vec<u32> = self.ptys.borrow().iter().filter_map(|w| w.upgrade()).filter_map(|t| t.pty_index()).collect();
        let index = (0..4096u32).find(|i| !used.contains(i)).ok_or(Errno::ENOSPC)?;
        let state = PtyState {
            index,
            out: RefCell::new(VecDeque::new()),
            locked: Cell::new(true),
            masters: Cell::new(0),
            slaves: Cell::new(0),
            slave_ever: Cell::new(false),
            pts_dir,
        };
        let tty = Tty::new(Backend::Pty(state), Rc::downgrade(self));
        self.ptys.borrow_mut().push(Rc::downgrade(&tty));
        self.pending_nodes.borrow_mut().push((index, TtyFile::new(tty.clone(), ConsoleStream::Stdout)));
        Ok(Rc::new(PtyMaster { tty }))
    }

    /// Create the `/dev/pts/N` nodes of ptys made since the last call.
    pub fn install_pending(&self, fs: &mut Fs, now: u64) {
        let Some(dir) = self.pts_dir.borrow().clone() else { return };
        for (index, file) in self.pending_nodes.borrow_mut().drain(..) {
            let node = fs.new_inode(Kind::Special(file), 0o620, now);
            let _ = dir.insert(&format!("{index}"), node);
        }
    }

    /// Put `console`, `tty`, `ptmx` and `pts/` into the `/dev` directory `dev`.
    pub fn install_dev_nodes(self: &Rc<Self>, fs: &mut Fs, dev: &InodeRef) -> Result<(), Errno> {
        let console = fs.new_inode(Kind::Special(self.console_file(ConsoleStream::Stdout)), 0o600, 0);
        dev.insert("console", console)?;
        // tty0 is the console (UML's con0); tty1.. the lines.
        let tty0 = fs.new_inode(Kind::Special(self.console_file(ConsoleStream::Stdout)), 0o620, 0);
        let _ = dev.insert("tty0", tty0);
        for n in 1..=MAX_LINES {
            let file: SpecialRef = match self.line(n) {
                Some(t) => TtyFile::new(t, ConsoleStream::Stdout),
                None => Rc::new(NoLine),
            };
            let node = fs.new_inode(Kind::Special(file), 0o620, 0);
            let _ = dev.insert(&format!("tty{n}"), node);
        }
        let tty = fs.new_inode(Kind::Special(Rc::new(DevTty { registry: Rc::downgrade(self) })), 0o666, 0);
        dev.insert("tty", tty)?;
        let ptmx = fs.new_inode(Kind::Special(Rc::new(Ptmx { registry: Rc::downgrade(self) })), 0o666, 0);
        dev.insert("ptmx", ptmx)?;
        let kmsg = fs.new_inode(Kind::Special(Rc::new(kmsg::DevKmsg { log: Rc::downgrade(&self.log) })), 0o644, 0);
        dev.insert("kmsg", kmsg)?;
        let pts = match dev.lookup("pts")? {
            Some(d) if d.is_dir() => d,
            _ => {
                let d = fs.new_dir(0o755, 0);
                dev.insert("pts", d.clone())?;
                d
            }
        };
        *self.pts_dir.borrow_mut() = Some(pts);
        Ok(())
    }
}

/// The name `ptsname` gives for pty `n`.
pub fn pts_name(n: u32) -> String {
    format!("/dev/pts/{n}")
}

#[cfg(test)]
mod tests;
