//! Terminal tests without a kernel: the pty pair, job-control signals,
//! window size, hang-up, raw-mode timing.

use alloc::vec::Vec;

use hal::{Console, ConsoleRead, ConsoleStream};
use linux_raw_sys::general as g;

use super::*;
use crate::fs::path::{self, Follow};
use crate::wait::{GroupSignal, IoCtx, Opened, WaitSet};

#[derive(Default)]
struct Screen(Vec<u8>);

impl Console for Screen {
    fn write(&mut self, _s: ConsoleStream, d: &[u8]) {
        self.0.extend_from_slice(d);
    }
    fn read(&mut self, _b: &mut [u8]) -> ConsoleRead {
        ConsoleRead::WouldBlock
    }
}

fn io<'a>(c: &'a mut Screen, now: u64) -> IoCtx<'a> {
    IoCtx { now, realtime: now, console: c, pid: 7, pgid: 7, sid: 7, sig_ignored: 0, signals: Vec::new(), nonblock: false }
}

/// A registry with /dev nodes, and a fresh pty (master, slave file).
fn pty() -> (Rc<Ttys>, Fs, SpecialRef, SpecialRef) {
    let ttys = Ttys::new();
    let mut fs = Fs::new();
    let dev = fs.new_dir(0o755, 0);
    let _ = fs.root.insert("dev", dev.clone());
    assert!(ttys.install_dev_nodes(&mut fs, &dev).is_ok());
    let ptmx = match &dev.lookup("ptmx").ok().flatten().map(|n| match &n.kind {
        Kind::Special(s) => Some(s.clone()),
        _ => None,
    }) {
        Some(Some(s)) => s.clone(),
        _ => panic!("no ptmx"),
    };
    let mut c = Screen::default();
    let master = match ptmx.open(&mut io(&mut c, 0), g::O_RDWR) {
        Ok(Opened::Other(m)) => m,
        _ => panic!("ptmx open"),
    };
    master.opened(true, true);
    ttys.install_pending(&mut fs, 0);
    let root = crate::fs::Loc::root(fs.root.clone());
    let node = path::walk(&fs.root, &root, "/dev/pts/0", Follow::Yes).expect("pts node").inode().clone();
    let slave = match &node.kind {
        Kind::Special(s) => s.clone(),
        _ => panic!("pts node kind"),
    };
    // Locked until TIOCSPTLCK 0.
    assert_eq!(slave.open(&mut io(&mut c, 0), g::O_RDWR).err(), Some(Errno::EIO));
    master.as_any().downcast_ref::<PtyMaster>().expect("master").set_locked(false);
    assert!(slave.open(&mut io(&mut c, 0), g::O_RDWR | g::O_NOCTTY).is_ok());
    slave.opened(true, true);
    (ttys, fs, master, slave)
}

fn read_all(f: &SpecialRef, c: &mut Screen) -> Result<Vec<u8>, Errno> {
    let mut b = [0u8; 256];
    let n = f.read(&mut io(c, 0), &mut b)?;
    Ok(b[..n].to_vec())
}

#[test]
fn pty_cooked_read_and_echo() {
    let (_t, _fs, m, s) = pty();
    let mut c = Screen::default();
    assert_eq!(read_all(&s, &mut c), Err(Errno::EAGAIN));
    let mut ws = WaitSet::default();
    assert_eq!(s.poll(&mut io(&mut c, 0), (true, true), Some(&mut ws)) & POLLIN, 0);
    assert_eq!(m.write(&mut io(&mut c, 0), b"ls -x\x7fl\r"), Ok(8));
    assert!(ws.ready(0), "input wakes the slave's waiters");
    assert_ne!(s.poll(&mut io(&mut c, 0), (true, true), None) & POLLIN, 0);
    assert_eq!(read_all(&s, &mut c), Ok(b"ls -l\n".to_vec()));
    assert_eq!(read_all(&m, &mut c), Ok(b"ls -x\x08 \x08l\r\n".to_vec()));
    assert_eq!(s.write(&mut io(&mut c, 0), b"a\nb"), Ok(3));
    assert_eq!(read_all(&m, &mut c), Ok(b"a\r\nb".to_vec()));
    assert!(c.0.is_empty(), "nothing reaches the host console");
}

#[test]
fn utf8_erase_takes_whole_characters() {
    let (_t, _fs, m, s) = pty();
    let tty = s.as_any().downcast_ref::<TtyFile>().expect("slave").tty.clone();
    let mut t = tty.termios();
    t.iflag |= g::IUTF8;
    tty.set_termios(t, false);
    let mut c = Screen::default();
    // "hé€" then two erases and "a": "ha"; each erase echoes one column.
    assert_eq!(m.write(&mut io(&mut c, 0), "hé€\x7f\x7fa\r".as_bytes()).map(|_| ()), Ok(()));
    assert_eq!(read_all(&s, &mut c), Ok(b"ha\n".to_vec()));
    let echo = read_all(&m, &mut c).unwrap_or_default();
    assert_eq!(echo, [&"hé€".as_bytes()[..], b"\x08 \x08\x08 \x08a\r\n"].concat());
    // ^W erases a word of multi-byte characters whole.
    assert_eq!(m.write(&mut io(&mut c, 0), "x ñandú\x17y\r".as_bytes()).map(|_| ()), Ok(()));
    assert_eq!(read_all(&s, &mut c), Ok(b"x y\n".to_vec()));
}

#[test]
fn signal_chars_go_to_the_foreground_group() {
    let (_t, _fs, m, s) = pty();
    let tty = s.as_any().downcast_ref::<TtyFile>().expect("slave").tty.clone();
    let mut c = Screen::default();
    let mut x = io(&mut c, 0);
    assert!(tty.maybe_acquire(&x, true).is_ok());
    tty.fg_pgrp.set(Some(42));
    let _ = m.write(&mut x, b"\x03\x1a\x1c");
    assert_eq!(
        x.signals,
        alloc::vec![
            GroupSignal { pgid: 42, sig: g::SIGINT },
            GroupSignal { pgid: 42, sig: g::SIGTSTP },
            GroupSignal { pgid: 42, sig: g::SIGQUIT }
        ]
    );
    x.signals.clear();
    tty.set_winsize(&mut x, [50, 132, 0, 0]);
    tty.set_winsize(&mut x, [50, 132, 0, 0]);
    assert_eq!(x.signals, alloc::vec![GroupSignal { pgid: 42, sig: g::SIGWINCH }], "only a change signals");
}

#[test]
fn background_read_gets_sigttin_or_eio() {
    let (_t, _fs, _m, s) = pty();
    let tty = s.as_any().downcast_ref::<TtyFile>().expect("slave").tty.clone();
    let mut c = Screen::default();
    let mut x = io(&mut c, 0);
    assert!(tty.maybe_acquire(&x, true).is_ok());
    tty.fg_pgrp.set(Some(99));
    let mut b = [0u8; 4];
    assert_eq!(s.read(&mut x, &mut b), Err(Errno::EINTR));
    assert_eq!(x.signals, alloc::vec![GroupSignal { pgid: 7, sig: g::SIGTTIN }]);
    x.sig_ignored = 1 << (g::SIGTTIN - 1);
    assert_eq!(s.read(&mut x, &mut b), Err(Errno::EIO));
}

#[test]
fn hangup_when_the_master_closes() {
    let (_t, fs, m, s) = pty();
    let mut c = Screen::default();
    m.closed(true, true);
    assert_eq!(read_all(&s, &mut c), Ok(alloc::vec![]));
    assert_eq!(s.write(&mut io(&mut c, 0), b"x"), Err(Errno::EIO));
    let root = crate::fs::Loc::root(fs.root.clone());
    assert!(path::walk(&fs.root, &root, "/dev/pts/0", Follow::Yes).is_err(), "the node is gone");
}

#[test]
fn raw_vtime_read_times_out() {
    let (_t, _fs, m, s) = pty();
    let tty = s.as_any().downcast_ref::<TtyFile>().expect("slave").tty.clone();
    let mut t = tty.termios();
    t.lflag &= !(g::ICANON | g::ECHO);
    t.cc[ldisc::cc::VMIN] = 0;
    t.cc[ldisc::cc::VTIME] = 2;
    tty.set_termios(t, false);
    let mut c = Screen::default();
    let mut b = [0u8; 8];
    assert_eq!(s.read(&mut io(&mut c, 1_000), &mut b), Err(Errno::EAGAIN));
    let mut ws = WaitSet::default();
    s.poll(&mut io(&mut c, 1_000), (true, false), Some(&mut ws));
    assert_eq!(ws.wake_at, Some(1_000 + 200_000_000));
    assert_eq!(s.read(&mut io(&mut c, 200_001_000), &mut b), Ok(0), "timed out: 0 bytes");
    let _ = m.write(&mut io(&mut c, 0), b"q");
    assert_eq!(s.read(&mut io(&mut c, 0), &mut b), Ok(1));
}

#[test]
fn console_passthrough_when_the_host_is_not_a_terminal() {
    let ttys = Ttys::new();
    let con = ttys.console_file(ConsoleStream::Stdout);
    let mut c = Screen::default();
    ttys.console.set_host_terminal(false);
    ttys.console.receive(&mut io(&mut c, 0), b"hi\n");
    assert_eq!(con.write(&mut io(&mut c, 0), b"x\n"), Ok(2));
    assert_eq!(c.0, b"x\n");
    ttys.console.set_host_terminal(true);
    ttys.console.receive(&mut io(&mut c, 0), b"a\r");
    assert_eq!(c.0, b"x\na\r\n");
}

/// A pty master's writer is throttled by the slave's unread raw input, as
/// Linux's `receive_room`: it gets `EAGAIN` and no `POLLOUT` when the
/// input is full, and nothing written is lost; a read makes room again.
#[test]
fn raw_input_throttles_the_master_writer() {
    let (_t, _fs, m, s) = pty();
    let tty = s.as_any().downcast_ref::<TtyFile>().expect("slave").tty.clone();
    let mut t = tty.termios();
    t.lflag &= !(g::ICANON | g::ECHO);
    tty.set_termios(t, false);
    let mut c = Screen::default();
    let data: Vec<u8> = (0..3 * ldisc::MAX_INPUT).map(|i| b'a' + (i % 26) as u8).collect();
    let mut sent = 0;
    while let Ok(n) = m.write(&mut io(&mut c, 0), &data[sent..]) {
        assert!(n > 0);
        sent += n;
    }
    assert_eq!(sent, ldisc::MAX_INPUT);
    assert_eq!(m.write(&mut io(&mut c, 0), b"x"), Err(Errno::EAGAIN));
    assert_eq!(m.poll(&mut io(&mut c, 0), (false, true), None) & POLLOUT, 0);
    let mut got = Vec::new();
    while got.len() < sent {
        got.extend(read_all(&s, &mut c).expect("slave read"));
    }
    assert_eq!(got, data[..sent]);
    assert_ne!(m.poll(&mut io(&mut c, 0), (false, true), None) & POLLOUT, 0);
    assert_eq!(m.write(&mut io(&mut c, 0), &data[sent..sent + 10]), Ok(10));
}
