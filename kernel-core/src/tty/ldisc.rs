//! The line discipline (Linux's N_TTY, the parts programs rely on): input
//! translation, canonical line editing, echo, signal characters, and output
//! post-processing. Pure data: no kernel state, so it is tested on its own.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use linux_raw_sys::general as g;

/// Index of a control character in `c_cc`.
pub mod cc {
    /// `^C`.
    pub const VINTR: usize = 0;
    /// `^\`.
    pub const VQUIT: usize = 1;
    /// `^?`.
    pub const VERASE: usize = 2;
    /// `^U`.
    pub const VKILL: usize = 3;
    /// `^D`.
    pub const VEOF: usize = 4;
    /// Raw-mode read timeout, tenths of a second.
    pub const VTIME: usize = 5;
    /// Raw-mode minimum read.
    pub const VMIN: usize = 6;
    /// `^Z`.
    pub const VSUSP: usize = 10;
    /// Extra end of line.
    pub const VEOL: usize = 11;
    /// `^W`.
    pub const VWERASE: usize = 14;
    /// `^V`.
    pub const VLNEXT: usize = 15;
    /// Second extra end of line.
    pub const VEOL2: usize = 16;
}

/// Size of the kernel's `struct termios` (TCGETS/TCSETS).
pub const TERMIOS_SIZE: usize = 36;
/// Longest canonical line (as Linux's N_TTY_BUF_SIZE - 1).
pub const MAX_CANON: usize = 4095;
/// Most input buffered before more is dropped.
pub const MAX_INPUT: usize = 4096;

/// The kernel's `struct termios`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub iflag: u32,
    /// Output modes.
    pub oflag: u32,
    /// Control modes.
    pub cflag: u32,
    /// Local modes.
    pub lflag: u32,
    /// Line discipline number.
    pub line: u8,
    /// Control characters.
    pub cc: [u8; 19],
}

impl Default for Termios {
    /// A freshly opened Linux tty: cooked, echo, ISIG, ICRNL, OPOST|ONLCR, 38400 8N1.
    fn default() -> Self {
        let mut cc = [0u8; 19];
        cc[..17].copy_from_slice(&[3u8, 0x1c, 0x7f, 0x15, 4, 0, 1, 0, 0x11, 0x13, 0x1a, 0, 0x12, 0x0f, 0x17, 0x16, 0]);
        Termios {
            iflag: g::ICRNL | g::IXON,
            oflag: g::OPOST | g::ONLCR,
            cflag: 0o277, // B38400 | CS8 | CREAD
            lflag: g::ISIG | g::ICANON | g::ECHO | g::ECHOE | g::ECHOK | g::ECHOCTL | g::ECHOKE | g::IEXTEN,
            line: 0,
            cc,
        }
    }
}

impl Termios {
    /// Serialized as the kernel ABI has it.
    pub fn to_bytes(&self) -> [u8; TERMIOS_SIZE] {
        let mut b = [0u8; TERMIOS_SIZE];
        b[0..4].copy_from_slice(&self.iflag.to_le_bytes());
        b[4..8].copy_from_slice(&self.oflag.to_le_bytes());
        b[8..12].copy_from_slice(&self.cflag.to_le_bytes());
        b[12..16].copy_from_slice(&self.lflag.to_le_bytes());
        b[16] = self.line;
        b[17..36].copy_from_slice(&self.cc);
        b
    }
    /// Parsed from the kernel ABI layout.
    pub fn from_bytes(b: &[u8; TERMIOS_SIZE]) -> Termios {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&b[17..36]);
        Termios { iflag: w(0), oflag: w(4), cflag: w(8), lflag: w(12), line: b[16], cc }
    }
    fn l(&self, f: u32) -> bool {
        self.lflag & f != 0
    }
    fn i(&self, f: u32) -> bool {
        self.iflag & f != 0
    }
    /// Canonical mode?
    pub fn canonical(&self) -> bool {
        self.l(g::ICANON)
    }
    /// `c_cc[i]` if enabled (`_POSIX_VDISABLE` is 0).
    fn ch(&self, i: usize) -> Option<u8> {
        match self.cc[i] {
            0 => None,
            c => Some(c),
        }
    }
}

/// What input processing asks of the tty besides buffering.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct InputEffects {
    /// Bytes to write to the terminal (echo), already output-processed.
    pub echo: Vec<u8>,
    /// Signals for the foreground process group.
    pub signals: Vec<u32>,
}

/// The line discipline's buffers.
#[derive(Default, Debug)]
pub struct Ldisc {
    /// Committed input: canonical lines (an empty one is an end of file),
    /// or raw bytes (as one chunk per input burst).
    chunks: VecDeque<Vec<u8>>,
    /// The canonical line being edited.
    edit: Vec<u8>,
    /// The next character is taken literally (`^V`).
    lnext: bool,
}

fn is_word_sep(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Apply output post-processing (`OPOST`, `ONLCR`, `OCRNL`) to `data`.
pub fn output(t: &Termios, data: &[u8], out: &mut Vec<u8>) {
    if t.oflag & g::OPOST == 0 {
        out.extend_from_slice(data);
        return;
    }
    for &c in data {
        match c {
            b'\n' if t.oflag & g::ONLCR != 0 => out.extend_from_slice(b"\r\n"),
            b'\r' if t.oflag & g::OCRNL != 0 => out.push(b'\n'),
            c => out.push(c),
        }
    }
}

impl Ldisc {
    /// Bytes committed and readable.
    pub fn available(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }
    /// How many more bytes the terminal side may send before it has to
    /// wait for a reader (what Linux's `receive_room` throttles a pty
    /// master's writer with). In canonical mode an unfinished line never
    /// stops input: characters past [`MAX_CANON`] are dropped, as Linux does.
    pub fn room(&self, t: &Termios) -> usize {
        let avail = self.available();
        if t.canonical() {
            if avail >= MAX_INPUT { 0 } else { MAX_INPUT }
        } else {
            MAX_INPUT.saturating_sub(avail)
        }
    }
    /// Is a read (of anything, or an end of file) possible now?
    pub fn readable(&self) -> bool {
        !self.chunks.is_empty()
    }
    /// Throw away all input (TCFLSH, signal characters).
    pub fn flush_input(&mut self) {
        self.chunks.clear();
        self.edit.clear();
    }

    /// The termios changed from `old` to `new`: leaving canonical mode makes
    /// the line being edited readable; entering it keeps raw bytes as a line.
    pub fn set_mode(&mut self, old: &Termios, new: &Termios) {
        if old.canonical() && !new.canonical() && !self.edit.is_empty() {
            let e = core::mem::take(&mut self.edit);
            self.chunks.push_back(e);
        }
    }

    fn echo_char(t: &Termios, c: u8, fx: &mut InputEffects) {
        if !t.l(g::ECHO) {
            if c == b'\n' && t.l(g::ECHONL) && t.canonical() {
                output(t, b"\n", &mut fx.echo);
            }
            return;
        }
        if t.l(g::ECHOCTL) && (c < 0x20 && c != b'\t' && c != b'\n') || (t.l(g::ECHOCTL) && c == 0x7f) {
            fx.echo.push(b'^');
            fx.echo.push(c ^ 0x40);
        } else {
            output(t, &[c], &mut fx.echo);
        }
    }

    /// Columns the echo of `c` took (to erase it).
    fn width(t: &Termios, c: u8) -> usize {
        if t.l(g::ECHOCTL) && (c < 0x20 && c != b'\t') || c == 0x7f {
            2
        } else {
            1
        }
    }

    /// Erase the last character typed: with `IUTF8`, a whole UTF-8
    /// sequence (its continuation bytes and its lead byte), echoed as one
    /// column, as Linux's n_tty does.
    fn erase_one(&mut self, t: &Termios, fx: &mut InputEffects) -> bool {
        let Some(mut c) = self.edit.pop() else { return false };
        if t.i(g::IUTF8) {
            while c & 0xc0 == 0x80 {
                match self.edit.last() {
                    Some(&prev) if prev & 0x80 != 0 => {
                        self.edit.pop();
                        c = prev;
                        if prev & 0xc0 == 0xc0 {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if c >= 0x80 {
                // One column for the whole character.
                if t.l(g::ECHO) && t.l(g::ECHOE) {
                    fx.echo.extend_from_slice(b"\x08 \x08");
                }
                return true;
            }
        }
        if t.l(g::ECHO) && t.l(g::ECHOE) {
            for _ in 0..Self::width(t, c) {
                fx.echo.extend_from_slice(b"\x08 \x08");
            }
        }
        true
    }

    /// Process typed input `data` (the terminal side's bytes).
    pub fn input(&mut self, t: &Termios, data: &[u8]) -> InputEffects {
        let mut fx = InputEffects::default();
        for &raw in data {
            let mut c = raw;
            if t.i(g::ISTRIP) {
                c &= 0x7f;
            }
            if self.lnext {
                self.lnext = false;
                self.put(t, c, &mut fx);
                continue;
            }
            if c == b'\r' {
                if t.i(g::IGNCR) {
                    continue;
                }
                if t.i(g::ICRNL) {
                    c = b'\n';
                }
            } else if c == b'\n' && t.i(g::INLCR) {
                c = b'\r';
            }
            if t.l(g::ISIG) {
                let sig = if Some(c) == t.ch(cc::VINTR) {
                    Some(g::SIGINT)
                } else if Some(c) == t.ch(cc::VQUIT) {
                    Some(g::SIGQUIT)
                } else if Some(c) == t.ch(cc::VSUSP) {
                    Some(g::SIGTSTP)
                } else {
                    None
                };
                if let Some(sig) = sig {
                    if !t.l(g::NOFLSH) {
                        self.flush_input();
                    }
                    Self::echo_char(t, c, &mut fx);
                    fx.signals.push(sig);
                    continue;
                }
            }
            if t.canonical() {
                if t.l(g::IEXTEN) && Some(c) == t.ch(cc::VLNEXT) {
                    self.lnext = true;
                    continue;
                }
                // ^H erases too: terminals differ in what Backspace sends.
                if Some(c) == t.ch(cc::VERASE) || c == 0x08 {
                    self.erase_one(t, &mut fx);
                    continue;
                }
                if Some(c) == t.ch(cc::VKILL) {
                    if t.l(g::ECHOKE) || !t.l(g::ECHOK) {
                        while self.erase_one(t, &mut fx) {}
                    } else {
                        self.edit.clear();
                        if t.l(g::ECHO) {
                            Self::echo_char(t, c, &mut fx);
                        }
                        output(t, b"\n", &mut fx.echo);
                    }
                    self.edit.clear();
                    continue;
                }
                if t.l(g::IEXTEN) && Some(c) == t.ch(cc::VWERASE) {
                    while self.edit.last().is_some_and(|&c| is_word_sep(c)) {
                        self.erase_one(t, &mut fx);
                    }
                    while self.edit.last().is_some_and(|&c| !is_word_sep(c)) {
                        self.erase_one(t, &mut fx);
                    }
                    continue;
                }
                if Some(c) == t.ch(cc::VEOF) {
                    let line = core::mem::take(&mut self.edit);
                    self.chunks.push_back(line);
                    continue;
                }
                if c == b'\n' || Some(c) == t.ch(cc::VEOL) || Some(c) == t.ch(cc::VEOL2) {
                    self.edit.push(c);
                    let line = core::mem::take(&mut self.edit);
                    self.chunks.push_back(line);
                    if t.l(g::ECHO) || t.l(g::ECHONL) {
                        if c == b'\n' {
                            output(t, b"\n", &mut fx.echo);
                        } else {
                            Self::echo_char(t, c, &mut fx);
                        }
                    }
                    continue;
                }
            }
            self.put(t, c, &mut fx);
        }
        fx
    }

    fn put(&mut self, t: &Termios, c: u8, fx: &mut InputEffects) {
        if t.canonical() {
            if self.edit.len() < MAX_CANON {
                self.edit.push(c);
                Self::echo_char(t, c, fx);
            }
            return;
        }
        if self.available() >= MAX_INPUT {
            return;
        }
        match self.chunks.back_mut() {
            Some(last) if !last.is_empty() => last.push(c),
            _ => self.chunks.push_back(alloc::vec![c]),
        }
        Self::echo_char(t, c, fx);
    }

    /// Read committed input: in canonical mode at most one line (an empty
    /// line is an end of file and reads as 0); raw, anything up to `buf.len()`.
    /// `None`: nothing committed.
    pub fn read(&mut self, t: &Termios, buf: &mut [u8]) -> Option<usize> {
        if t.canonical() {
            let line = self.chunks.front_mut()?;
            let n = buf.len().min(line.len());
            buf[..n].copy_from_slice(&line[..n]);
            if n == line.len() {
                self.chunks.pop_front();
            } else {
                line.drain(..n);
            }
            return Some(n);
        }
        if self.chunks.is_empty() {
            return None;
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(ch) = self.chunks.front_mut() else { break };
            let k = (buf.len() - n).min(ch.len());
            buf[n..n + k].copy_from_slice(&ch[..k]);
            n += k;
            if k == ch.len() {
                self.chunks.pop_front();
            } else {
                ch.drain(..k);
            }
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(l: &mut Ldisc, t: &Termios) -> Vec<u8> {
        let mut b = [0u8; 256];
        let n = l.read(t, &mut b).unwrap_or(0);
        b[..n].to_vec()
    }

    #[test]
    fn canonical_editing() {
        let t = Termios::default();
        let mut l = Ldisc::default();
        let fx = l.input(&t, b"helo\x7f\x7fllo wor\x17world\r");
        assert_eq!(read_all(&mut l, &t), b"hello world\n");
        // Echo: the chars, erasures as BS SP BS, CR echoed as CR LF (ICRNL + ONLCR).
        assert!(fx.echo.starts_with(b"helo\x08 \x08\x08 \x08llo"));
        assert!(fx.echo.ends_with(b"world\r\n"));
        assert!(fx.signals.is_empty());
        l.input(&t, b"abc\x15xyz\n");
        assert_eq!(read_all(&mut l, &t), b"xyz\n");
        l.input(&t, b"partial");
        assert!(!l.readable());
        l.input(&t, b"\x04");
        assert_eq!(read_all(&mut l, &t), b"partial");
        l.input(&t, b"\x04");
        assert!(l.readable());
        assert_eq!(l.read(&t, &mut [0u8; 8]), Some(0));
        assert!(!l.readable());
    }

    #[test]
    fn one_line_per_read_and_partial() {
        let t = Termios::default();
        let mut l = Ldisc::default();
        l.input(&t, b"ab\ncd\n");
        let mut b = [0u8; 1];
        assert_eq!(l.read(&t, &mut b), Some(1));
        assert_eq!(read_all(&mut l, &t), b"b\n");
        assert_eq!(read_all(&mut l, &t), b"cd\n");
    }

    #[test]
    fn signals_and_echoctl() {
        let t = Termios::default();
        let mut l = Ldisc::default();
        let fx = l.input(&t, b"junk\x03");
        assert_eq!(fx.signals, alloc::vec![g::SIGINT]);
        assert!(fx.echo.ends_with(b"^C"));
        assert!(!l.readable());
        let fx = l.input(&t, b"\x1a\x1c");
        assert_eq!(fx.signals, alloc::vec![g::SIGTSTP, g::SIGQUIT]);
    }

    #[test]
    fn raw_mode() {
        let mut t = Termios::default();
        t.lflag &= !(g::ICANON | g::ECHO | g::ISIG);
        t.iflag &= !g::ICRNL;
        let mut l = Ldisc::default();
        let fx = l.input(&t, b"a\x03\r\x7f");
        assert!(fx.echo.is_empty() && fx.signals.is_empty());
        assert_eq!(l.available(), 4);
        assert_eq!(read_all(&mut l, &t), b"a\x03\r\x7f");
    }

    #[test]
    fn leaving_canonical_commits_the_line() {
        let cooked = Termios::default();
        let mut raw = cooked;
        raw.lflag &= !g::ICANON;
        let mut l = Ldisc::default();
        l.input(&cooked, b"abc");
        l.set_mode(&cooked, &raw);
        assert_eq!(read_all(&mut l, &raw), b"abc");
    }

    #[test]
    fn output_processing() {
        let t = Termios::default();
        let mut o = Vec::new();
        output(&t, b"a\nb", &mut o);
        assert_eq!(o, b"a\r\nb");
        let mut t2 = t;
        t2.oflag &= !g::OPOST;
        o.clear();
        output(&t2, b"a\nb", &mut o);
        assert_eq!(o, b"a\nb");
    }

    #[test]
    fn termios_roundtrip() {
        let t = Termios::default();
        assert_eq!(Termios::from_bytes(&t.to_bytes()), t);
        assert_eq!(t.to_bytes()[12..16], 0x8a3bu32.to_le_bytes());
    }
}
