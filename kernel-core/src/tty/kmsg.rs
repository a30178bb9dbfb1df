//! The kernel's log, as Linux's printk buffer: kernel messages (a process
//! killed for a fault, the system calls a workload needed that are not
//! implemented...) go here, where `dmesg` reads them (`syslog(2)` and
//! `/dev/kmsg`), and to the host only through [`hal::Hal::log`], which the
//! backends show only when asked (`--verbose`, `--log FILE`). They never
//! go to the console, where they would mix with a guest program's output.
//!
//! The buffer is bounded ([`MAX_BYTES`]); the oldest records go first.
//! Guests may add records through `/dev/kmsg` (as `systemd` does), each
//! cut to [`MAX_LINE`] bytes, so a guest cannot grow it.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};

use hal::Hal;
use linux_raw_sys::general as g;

use crate::wait::{FileOps, IoCtx, Opened, WaitRef, WaitSet, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// Most bytes of message text the buffer keeps (Linux's default is 128 KiB).
pub const MAX_BYTES: usize = 64 * 1024;
/// Longest record (Linux cuts `/dev/kmsg` writes to about 1 KiB too).
pub const MAX_LINE: usize = 1024;
/// `LOG_ERR`: a kernel bug or lost data (shown on the host by default).
pub const ERR: u8 = 3;
/// `LOG_WARNING`.
pub const WARNING: u8 = 4;
/// `LOG_INFO`.
pub const INFO: u8 = 6;

struct Record {
    seq: u64,
    ns: u64,
    /// Facility and level, as `<N>` gives them (`facility << 3 | level`).
    prio: u32,
    text: String,
}

/// The records, oldest first.
#[derive(Default)]
pub struct KernelLog {
    records: VecDeque<Record>,
    next_seq: u64,
    bytes: usize,
    /// `SYSLOG_ACTION_CLEAR`: records before this are not shown by READ_ALL.
    clear_seq: u64,
    /// Readers of `/dev/kmsg` waiting for the next record.
    wq: WaitRef,
}

impl KernelLog {
    /// Append one message (each line a record) logged at `ns` since boot.
    pub fn push(&mut self, ns: u64, prio: u32, text: &str) {
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let mut end = line.len().min(MAX_LINE);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            let text = String::from(&line[..end]);
            self.bytes += text.len();
            self.records.push_back(Record { seq: self.next_seq, ns, prio, text });
            self.next_seq += 1;
            while self.bytes > MAX_BYTES {
                match self.records.pop_front() {
                    Some(r) => self.bytes -= r.text.len(),
                    None => break,
                }
            }
        }
        self.wq.notify();
    }

    /// The first record at or after `seq` in `/dev/kmsg`'s format
    /// (`PRIO,SEQ,USEC,-;TEXT\n`), and the sequence number after it.
    fn kmsg_record(&self, seq: u64) -> Option<(Vec<u8>, u64)> {
        let r = self.records.iter().find(|r| r.seq >= seq)?;
        let line = format!("{},{},{},-;{}\n", r.prio, r.seq, r.ns / 1000, escape(&r.text));
        Some((line.into_bytes(), r.seq + 1))
    }

    /// What `syslog(SYSLOG_ACTION_READ_ALL)` returns: `<L>[SEC.USEC] TEXT`
    /// lines, since the last clear.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for r in self.records.iter().filter(|r| r.seq >= self.clear_seq) {
            s.push_str(&format!("<{}>[{:5}.{:06}] {}\n", r.prio & 7, r.ns / 1_000_000_000, r.ns / 1000 % 1_000_000, r.text));
        }
        s
    }

    /// `SYSLOG_ACTION_CLEAR`.
    pub fn clear(&mut self) {
        self.clear_seq = self.next_seq;
    }

    /// The buffer's size for `SYSLOG_ACTION_SIZE_BUFFER`.
    pub fn capacity(&self) -> usize {
        MAX_BYTES
    }
}

/// Non-printable bytes as `\xNN`, as Linux shows them in `/dev/kmsg`.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if (c as u32) < 0x20 || c == '\\' || c as u32 == 0x7f {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

/// The shared log (the terminals' registry holds it).
pub type LogRef = Rc<RefCell<KernelLog>>;

/// Record a kernel message and hand it to the backend's host log.
pub fn printk<H: Hal>(log: &RefCell<KernelLog>, hal: &mut H, level: u8, line: &str) {
    let now = hal.now_ns();
    if let Ok(mut l) = log.try_borrow_mut() {
        l.push(now, u32::from(level & 7), line);
    }
    hal.kernel_message(level, line);
}


/// `/dev/kmsg`: each open description reads the records from the oldest
/// kept on, one per `read`; writes add records (at `<N>` if given).
pub struct DevKmsg {
    /// The log it shows.
    pub log: Weak<RefCell<KernelLog>>,
}

/// An open description of `/dev/kmsg`: where its reader is.
pub struct KmsgReader {
    log: Weak<RefCell<KernelLog>>,
    next: Cell<u64>,
}

impl KmsgReader {
    /// `lseek`: offset 0 only; `SEEK_SET` to the oldest record kept,
    /// `SEEK_DATA` to the first after the last `SYSLOG_ACTION_CLEAR` (what
    /// `dmesg` does, so that `dmesg -c` clears for it too), `SEEK_END` past
    /// the newest.
    pub fn seek(&self, off: i64, whence: u32) -> Result<usize, Errno> {
        if off != 0 {
            return Err(Errno::ESPIPE);
        }
        let log = self.log.upgrade().ok_or(Errno::EIO)?;
        let log = log.borrow();
        let first = log.records.front().map_or(log.next_seq, |r| r.seq);
        let to = match whence {
            g::SEEK_SET => first,
            g::SEEK_DATA => log.clear_seq.max(first),
            g::SEEK_END => log.next_seq,
            _ => return Err(Errno::EINVAL),
        };
        self.next.set(to);
        Ok(0)
    }
}

fn kmsg_write(log: &Weak<RefCell<KernelLog>>, io: &IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
    let log = log.upgrade().ok_or(Errno::EIO)?;
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX_LINE)]);
    // `<N>` sets facility and level; user messages default to LOG_USER|LOG_INFO.
    let (prio, body) = match text.strip_prefix('<').and_then(|t| t.split_once('>')) {
        Some((n, rest)) if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            (n.parse::<u32>().unwrap_or(14).min(1023), String::from(rest))
        }
        _ => (8 | 6, String::from(&*text)),
    };
    log.borrow_mut().push(io.now, prio, &body);
    Ok(data.len())
}

impl FileOps for DevKmsg {
    fn read(&self, _io: &mut IoCtx<'_>, _buf: &mut [u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        kmsg_write(&self.log, io, data)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), _ws: Option<&mut WaitSet>) -> u32 {
        POLLOUT | POLLWRNORM
    }
    fn open(&self, _io: &mut IoCtx<'_>, _flags: u32) -> Result<Opened, Errno> {
        let first = self.log.upgrade().and_then(|l| l.borrow().records.front().map(|r| r.seq)).unwrap_or(0);
        Ok(Opened::Other(Rc::new(KmsgReader { log: self.log.clone(), next: Cell::new(first) })))
    }
    fn rdev(&self) -> (u32, u32) {
        (1, 11)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl FileOps for KmsgReader {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let log = self.log.upgrade().ok_or(Errno::EIO)?;
        let log = log.borrow();
        // Nothing new: EAGAIN (a blocking reader waits for the next one).
        let Some((rec, next)) = log.kmsg_record(self.next.get()) else { return Err(Errno::EAGAIN) };
        if rec.len() > buf.len() {
            return Err(Errno::EINVAL);
        }
        buf[..rec.len()].copy_from_slice(&rec);
        self.next.set(next);
        Ok(rec.len())
    }
    fn write(&self, io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        kmsg_write(&self.log, io, data)
    }
    fn poll(&self, _io: &mut IoCtx<'_>, _rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let Some(log) = self.log.upgrade() else { return POLLOUT | POLLWRNORM };
        let log = log.borrow();
        if let Some(ws) = ws {
            ws.add(&log.wq);
        }
        let ready = log.kmsg_record(self.next.get()).is_some();
        POLLOUT | POLLWRNORM | if ready { POLLIN | POLLRDNORM } else { 0 }
    }
    fn rdev(&self) -> (u32, u32) {
        (1, 11)
    }
    fn type_bits(&self) -> u32 {
        g::S_IFCHR
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_formatted() {
        let mut l = KernelLog::default();
        l.push(1_500_000_000, 6, "hello\nworld");
        assert_eq!(l.text(), "<6>[    1.500000] hello\n<6>[    1.500000] world\n");
        let (r, next) = l.kmsg_record(0).unwrap();
        assert_eq!(r, b"6,0,1500000,-;hello\n");
        assert_eq!(next, 1);
        let long = "x".repeat(5000);
        for _ in 0..200 {
            l.push(2, 6, &long);
        }
        assert!(l.bytes <= MAX_BYTES);
        assert!(l.records.iter().all(|r| r.text.len() <= MAX_LINE));
        l.clear();
        assert_eq!(l.text(), "");
    }
}
