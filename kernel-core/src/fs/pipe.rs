//! Pipes and FIFOs: a bounded byte queue with reader and writer counts.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::any::Any;
use core::cell::{Cell, RefCell};

use linux_raw_sys::general as g;

use crate::budget::{BudgetRef, Charge, Kind};
use crate::wait::{FileOps, IoCtx, Opened, WaitQueue, WaitRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::Errno;

/// Default capacity of a pipe, as Linux's.
pub const PIPE_CAPACITY: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;
/// Largest capacity `F_SETPIPE_SZ` grants (Linux's default `pipe-max-size`).
pub const PIPE_MAX_SIZE: usize = 1 << 20;

/// A pipe (anonymous, or the object behind a FIFO inode).
pub struct Pipe {
    data: RefCell<VecDeque<u8>>,
    cap: Cell<usize>,
    readers: Cell<u32>,
    writers: Cell<u32>,
    /// Writers that ever opened (a FIFO reader sees POLLHUP only after one).
    writer_opens: Cell<u64>,
    fifo: bool,
    /// Tasks blocked in a FIFO `open` (pid, is reader): they count as the
    /// peer a blocked opener of the other side waits for.
    /// The third field is the peer side's open count when it started
    /// waiting: a peer that opened and closed meanwhile still ends the wait.
    pending_opens: RefCell<alloc::vec::Vec<(crate::task::Pid, bool, u64)>>,
    /// Readers that ever opened.
    reader_opens: Cell<u64>,
    wq: WaitRef,
    /// The pipe and its buffer's capacity, charged to the guest's budget.
    charge: RefCell<Charge>,
}

/// What a pipe costs besides its buffer (the object, its inode and file).
const PIPE_OBJECT: usize = 512;

impl Pipe {
    /// A new anonymous pipe (`fifo` false) or FIFO object, charged to no budget.
    pub fn new(fifo: bool) -> Rc<Pipe> {
        Pipe::build(fifo, Charge::none(Kind::Pipe))
    }

    /// A new pipe charged to `budget` (its buffer is charged as it grows);
    /// `ENOMEM` if the budget is spent.
    pub fn charged(fifo: bool, budget: &BudgetRef) -> Result<Rc<Pipe>, Errno> {
        Ok(Pipe::build(fifo, Charge::new(budget, Kind::Pipe, PIPE_OBJECT)?))
    }

    fn build(fifo: bool, charge: Charge) -> Rc<Pipe> {
        Rc::new(Pipe {
            charge: RefCell::new(charge),
            data: RefCell::new(VecDeque::new()),
            cap: Cell::new(PIPE_CAPACITY),
            readers: Cell::new(0),
            writers: Cell::new(0),
            writer_opens: Cell::new(0),
            fifo,
            pending_opens: RefCell::new(alloc::vec::Vec::new()),
            reader_opens: Cell::new(0),
            wq: WaitQueue::new(),
        })
    }
    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }
    /// Nothing buffered?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Capacity (`F_GETPIPE_SZ`).
    pub fn capacity(&self) -> usize {
        self.cap.get()
    }
    /// `F_SETPIPE_SZ`: rounded up to a power-of-two number of pages.
    pub fn set_capacity(&self, want: u64) -> Result<usize, Errno> {
        if want > PIPE_MAX_SIZE as u64 {
            return Err(Errno::EPERM);
        }
        let n = (want as usize).max(4096).next_power_of_two();
        if n < self.len() {
            return Err(Errno::EBUSY);
        }
        self.cap.set(n);
        self.wq.notify();
        Ok(n)
    }
    /// Open read ends, counting FIFO openers still waiting for a writer
    /// (Linux counts them from the moment they start waiting).
    pub fn readers(&self) -> u32 {
        self.readers.get() + self.pending(true)
    }
    /// Open write ends, counting waiting FIFO openers.
    pub fn writers(&self) -> u32 {
        self.writers.get() + self.pending(false)
    }
    fn pending(&self, reader: bool) -> u32 {
        self.pending_opens.borrow().iter().filter(|&&(_, r, _)| r == reader).count() as u32
    }
}

impl FileOps for Pipe {
    fn read(&self, _io: &mut IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut d = self.data.borrow_mut();
        if d.is_empty() {
            return if self.writers() == 0 { Ok(0) } else { Err(Errno::EAGAIN) };
        }
        let n = buf.len().min(d.len());
        // Copy the ring's two halves as slices: a byte-wise drain was
        // nearly half of the kernel's time in the pipe bandwidth bench.
        let (a, b) = d.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        d.drain(..n);
        drop(d);
        self.wq.notify();
        Ok(n)
    }

    fn write(&self, _io: &mut IoCtx<'_>, data: &[u8]) -> Result<usize, Errno> {
        // A null write succeeds before anything else is checked (as Linux).
        if data.is_empty() {
            return Ok(0);
        }
        if self.readers() == 0 {
            return Err(Errno::EPIPE);
        }
        let space = self.cap.get().saturating_sub(self.len());
        // Writes of up to PIPE_BUF bytes are atomic: all or nothing.
        if space == 0 || (data.len() <= PIPE_BUF && space < data.len()) {
            return Err(Errno::EAGAIN);
        }
        let mut n = data.len().min(space);
        let mut d = self.data.borrow_mut();
        let mut charge = self.charge.borrow_mut();
        let base = charge.bytes().saturating_sub(d.capacity());
        if d.len() + n > d.capacity() {
            // Charge what the buffer may grow to before it grows; if the
            // budget refuses, write what fits in the buffer as it is.
            let grown = (d.len() + n).max(d.capacity() * 2).max(8);
            if charge.resize(base + grown).is_err() {
                n = d.capacity() - d.len();
                if n == 0 || (data.len() <= PIPE_BUF && n < data.len()) {
                    return Err(Errno::ENOMEM);
                }
            }
        }
        d.extend(&data[..n]);
        let _ = charge.resize(base + d.capacity());
        drop((d, charge));
        self.wq.notify();
        Ok(n)
    }

    fn poll(&self, _io: &mut IoCtx<'_>, rw: (bool, bool), ws: Option<&mut WaitSet>) -> u32 {
        let mut r = 0;
        let len = self.len();
        if rw.0 {
            if len > 0 {
                r |= POLLIN | POLLRDNORM;
            }
            if self.writers() == 0 && (!self.fifo || self.writer_opens.get() > 0) {
                r |= POLLHUP;
            }
        }
        if rw.1 {
            if self.readers() == 0 {
                r |= POLLERR;
            }
            if self.cap.get().saturating_sub(len) >= PIPE_BUF.min(self.cap.get()) {
                r |= POLLOUT | POLLWRNORM;
            }
        }
        if let Some(ws) = ws {
            ws.add(&self.wq);
        }
        r
    }

    fn opened(&self, readable: bool, writable: bool) {
        if readable {
            self.readers.set(self.readers.get() + 1);
            self.reader_opens.set(self.reader_opens.get() + 1);
        }
        if writable {
            self.writers.set(self.writers.get() + 1);
            self.writer_opens.set(self.writer_opens.get() + 1);
        }
        self.wq.notify();
    }

    fn closed(&self, readable: bool, writable: bool) {
        if readable {
            self.readers.set(self.readers.get().saturating_sub(1));
        }
        if writable {
            self.writers.set(self.writers.get().saturating_sub(1));
        }
        if self.readers() == 0 && self.writers() == 0 && self.fifo {
            // A FIFO forgets its contents (and its buffer) when nobody has it open.
            let mut d = self.data.borrow_mut();
            let mut charge = self.charge.borrow_mut();
            let base = charge.bytes().saturating_sub(d.capacity());
            *d = VecDeque::new();
            let _ = charge.resize(base);
        }
        self.wq.notify();
    }

    /// FIFO open rules: a reader waits for a writer and a writer for a
    /// reader, unless `O_NONBLOCK` (then a lone writer gets `ENXIO`);
    /// `O_RDWR` never waits.
    fn open(&self, io: &mut IoCtx<'_>, flags: u32) -> Result<Opened, Errno> {
        let nonblock = flags & g::O_NONBLOCK != 0;
        let pid = io.pid;
        let (readers, writers) = (self.readers(), self.writers());
        let reader = flags & g::O_ACCMODE == g::O_RDONLY;
        let mut pending = self.pending_opens.borrow_mut();
        // A peer that opened since we started waiting ends the wait even if
        // it has closed again (Linux's r_counter/w_counter).
        let peer_came = |reader: bool| {
            let now = if reader { self.writer_opens.get() } else { self.reader_opens.get() };
            pending.iter().any(|&(p, r, start)| p == pid && r == reader && now != start)
        };
        let wait = match flags & g::O_ACCMODE {
            g::O_RDONLY if !nonblock => writers == 0 && !peer_came(true),
            g::O_WRONLY if readers == 0 && !peer_came(false) => {
                if nonblock {
                    return Err(Errno::ENXIO);
                }
                true
            }
            _ => false,
        };
        if wait {
            if !pending.iter().any(|&(p, r, _)| p == pid && r == reader) {
                let start = if reader { self.writer_opens.get() } else { self.reader_opens.get() };
                pending.push((pid, reader, start));
                self.wq.notify();
            }
            return Ok(Opened::Wait(self.wq.clone()));
        }
        pending.retain(|&(p, _, _)| p != pid);
        Ok(Opened::Same)
    }

    fn type_bits(&self) -> u32 {
        g::S_IFIFO
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
