//! A HAL with no host: physical memory is a `Vec`, address spaces are maps,
//! and "user code" is a closure (the mock CPU) that scripts system calls
//! against that memory. Used by `kernel-core`'s tests and property tests.
//!
//! The mock applies queued map operations only at [`Hal::run`], like a real
//! backend, and its [`MockSpace::user_read`]/[`MockSpace::user_write`] fault
//! exactly where the host mapping would, so the kernel's demand paging and
//! copy-on-write are exercised for real.


use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::{
    Access, AddressSpace, Console, ConsoleRead, ConsoleStream, Hal, HalError, Interrupts, PhysMem,
    Prot, Trap, UserContext, PAGE_SIZE,
};

const PAGE: u64 = PAGE_SIZE as u64;

/// Physical memory in a `Vec`.
pub struct MockPhys {
    bytes: RefCell<Vec<u8>>,
}

impl MockPhys {
    /// A zeroed region of `size` bytes (rounded down to whole pages).
    pub fn new(size: usize) -> Self {
        MockPhys { bytes: RefCell::new(vec![0; size / PAGE_SIZE * PAGE_SIZE]) }
    }
}

impl PhysMem for MockPhys {
    fn size(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }
    fn read(&self, paddr: u64, buf: &mut [u8]) {
        let p = paddr as usize;
        buf.copy_from_slice(&self.bytes.borrow()[p..p + buf.len()]);
    }
    fn write(&self, paddr: u64, data: &[u8]) {
        let p = paddr as usize;
        self.bytes.borrow_mut()[p..p + data.len()].copy_from_slice(data);
    }
    fn fill(&self, paddr: u64, len: u64, byte: u8) {
        let p = paddr as usize;
        self.bytes.borrow_mut()[p..p + len as usize].fill(byte);
    }
    fn copy(&self, src: u64, dst: u64, len: u64) {
        let (s, d, l) = (src as usize, dst as usize, len as usize);
        self.bytes.borrow_mut().copy_within(s..s + l, d);
    }
}

/// A queued map operation (fields as in the [`AddressSpace`] methods).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// See [`AddressSpace::map`].
    Map { vaddr: u64, len: u64, paddr: u64, prot: Prot },
    /// See [`AddressSpace::unmap`].
    Unmap { vaddr: u64, len: u64 },
    /// See [`AddressSpace::protect`].
    Protect { vaddr: u64, len: u64, prot: Prot },
}

/// The mock CPU's XSAVE layout: that of an AVX-512 machine without PKRU.
pub const MOCK_FPU_LAYOUT: crate::FpuLayout = crate::FpuLayout { size: 2688, features: 0xe7 };

/// The user end of mock address spaces (the same as a 47-bit host's).
pub const MOCK_USER_END: u64 = 0x7fff_ffff_f000;

/// An address space: queued operations and the applied page map.
pub struct MockSpace {
    /// Unique id, so a mock CPU can tell spaces apart.
    pub id: u64,
    /// Operations queued since the last run.
    pub pending: Vec<MapOp>,
    /// Applied mappings: virtual page → (frame, protection).
    pub pages: BTreeMap<u64, (u64, Prot)>,
    /// How many batches were applied (one per run with pending operations).
    pub batches: u64,
}

impl MockSpace {
    fn apply(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.batches += 1;
        for op in core::mem::take(&mut self.pending) {
            match op {
                MapOp::Map { vaddr, len, paddr, prot } => {
                    for i in 0..len / PAGE {
                        self.pages.insert(vaddr + i * PAGE, (paddr + i * PAGE, prot));
                    }
                }
                MapOp::Unmap { vaddr, len } => {
                    for i in 0..len / PAGE {
                        self.pages.remove(&(vaddr + i * PAGE));
                    }
                }
                MapOp::Protect { vaddr, len, prot } => {
                    for i in 0..len / PAGE {
                        if let Some(e) = self.pages.get_mut(&(vaddr + i * PAGE)) {
                            e.1 = prot;
                        }
                    }
                }
            }
        }
    }

    fn translate(&self, addr: u64, access: Access) -> Result<u64, Trap> {
        let need = match access {
            Access::Read => Prot::READ,
            Access::Write => Prot::WRITE,
            Access::Execute => Prot::EXEC,
        };
        match self.pages.get(&(addr & !(PAGE - 1))) {
            Some(&(frame, prot)) if prot.contains(need) => Ok(frame + (addr & (PAGE - 1))),
            _ => Err(Trap::PageFault { addr, access }),
        }
    }

    /// Read user memory as guest code would: a page fault trap where the
    /// applied mapping does not allow it.
    pub fn user_read(&self, phys: &MockPhys, addr: u64, buf: &mut [u8]) -> Result<(), Trap> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(Trap::PageFault { addr, access: Access::Read })?;
            let p = self.translate(a, Access::Read)?;
            let mut one = [0u8];
            phys.read(p, &mut one);
            *b = one[0];
        }
        Ok(())
    }

    /// Write user memory as guest code would.
    pub fn user_write(&self, phys: &MockPhys, addr: u64, data: &[u8]) -> Result<(), Trap> {
        for (i, b) in data.iter().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(Trap::PageFault { addr, access: Access::Write })?;
            let p = self.translate(a, Access::Write)?;
            phys.write(p, &[*b]);
        }
        Ok(())
    }
}

impl AddressSpace for MockSpace {
    fn map(&mut self, vaddr: u64, len: u64, paddr: u64, prot: Prot) {
        check_range(vaddr, len);
        self.pending.push(MapOp::Map { vaddr, len, paddr, prot });
    }
    fn unmap(&mut self, vaddr: u64, len: u64) {
        check_range(vaddr, len);
        self.pending.push(MapOp::Unmap { vaddr, len });
    }
    fn protect(&mut self, vaddr: u64, len: u64, prot: Prot) {
        check_range(vaddr, len);
        self.pending.push(MapOp::Protect { vaddr, len, prot });
    }
    fn user_end(&self) -> u64 {
        MOCK_USER_END
    }
}

/// The contract of [`AddressSpace`], checked: a violation is a kernel bug.
fn check_range(vaddr: u64, len: u64) {
    assert!(vaddr.is_multiple_of(PAGE) && len.is_multiple_of(PAGE), "unaligned map op {vaddr:#x}+{len:#x}");
    assert!(vaddr.checked_add(len).is_some_and(|e| e <= MOCK_USER_END), "map op beyond user end");
}

/// The mock CPU: runs "user code" for one step and says why it stopped.
pub type MockCpu = Box<dyn FnMut(&mut UserContext, &mut MockSpace, &MockPhys) -> Trap>;

/// Console with captured output and scripted input.
#[derive(Default)]
pub struct MockConsole {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Bytes waiting to be read.
    pub input: VecDeque<u8>,
    /// Whether input has ended once `input` is drained.
    pub input_closed: bool,
    /// End of input was already read: like a real console, a closed input is
    /// reported as an interrupt once, not forever.
    pub eof_seen: bool,
    /// Pretend to be an interactive terminal ([`Console::is_terminal`]).
    pub terminal: bool,
    /// The window size reported ([`Console::window_size`]).
    pub winsize: Option<(u16, u16)>,
}

impl Console for MockConsole {
    fn write(&mut self, stream: ConsoleStream, data: &[u8]) {
        match stream {
            ConsoleStream::Stdout => self.stdout.extend_from_slice(data),
            ConsoleStream::Stderr => self.stderr.extend_from_slice(data),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead {
        if self.input.is_empty() {
            if self.input_closed {
                self.eof_seen = true;
                return ConsoleRead::Eof;
            }
            return ConsoleRead::WouldBlock;
        }
        let n = buf.len().min(self.input.len());
        for b in buf.iter_mut().take(n) {
            *b = self.input.pop_front().unwrap_or(0);
        }
        ConsoleRead::Data(n)
    }
    fn is_terminal(&self) -> bool {
        self.terminal
    }
    fn window_size(&self) -> Option<(u16, u16)> {
        self.winsize
    }
}

/// The mock HAL.
pub struct MockHal {
    /// Physical memory.
    pub phys: MockPhys,
    /// The mock CPU every [`Hal::run`] calls.
    pub cpu: MockCpu,
    /// Monotonic clock; each run advances it by `run_cost_ns`.
    pub now_ns: u64,
    /// Simulated time one run of user code takes.
    pub run_cost_ns: u64,
    /// The armed timer deadline.
    pub timer: Option<u64>,
    /// The console.
    pub console: MockConsole,
    /// Kernel log lines.
    pub log: Vec<String>,
    /// Refuse to create more than this many live spaces (`None`: no limit).
    pub space_limit: Option<u64>,
    /// Spaces created so far.
    pub spaces_created: u64,
    /// Network links whose queued frames make [`Hal::wait_for_interrupt`]
    /// report [`Interrupts::NET`] (clones of the devices given to the kernel).
    pub nets: Vec<MockNet>,
    rng: u64,
}

/// A frame queue shared by the two ends of a [`MockNet`] cable.
pub type FrameQueue = alloc::rc::Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of a mock Ethernet cable ([`MockNet::pair`]): what one end sends
/// the other receives. Clones share the queues, so a test keeps a clone to
/// inject frames ([`MockNet::inject`]) or watch what the kernel sent.
#[derive(Clone)]
pub struct MockNet {
    /// This end's hardware address.
    pub mac: [u8; 6],
    /// Frames waiting to be received by this end.
    pub rx: FrameQueue,
    /// Frames this end sent (the other end's `rx`).
    pub tx: FrameQueue,
    /// The largest frame carried.
    pub max_frame: usize,
    /// Frames this end dropped because they did not fit the reader's buffer.
    pub dropped: alloc::rc::Rc<core::cell::Cell<u64>>,
}

impl MockNet {
    /// Two connected ends.
    pub fn pair(a: [u8; 6], b: [u8; 6]) -> (MockNet, MockNet) {
        let q1: FrameQueue = Default::default();
        let q2: FrameQueue = Default::default();
        let mk = |mac, rx: &FrameQueue, tx: &FrameQueue| MockNet {
            mac,
            rx: rx.clone(),
            tx: tx.clone(),
            max_frame: 1514,
            dropped: Default::default(),
        };
        (mk(a, &q1, &q2), mk(b, &q2, &q1))
    }
    /// A lone end: nothing is connected to what it sends.
    pub fn lone(mac: [u8; 6]) -> MockNet {
        MockNet::pair(mac, [2, 0, 0, 0, 0, 0xff]).0
    }
    /// Queue `frame` as if it arrived from the wire.
    pub fn inject(&self, frame: &[u8]) {
        self.rx.borrow_mut().push_back(frame.to_vec());
    }
    /// Frames are waiting to be received.
    pub fn pending(&self) -> bool {
        !self.rx.borrow().is_empty()
    }
}

impl crate::NetDevice for MockNet {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn max_frame(&self) -> usize {
        self.max_frame
    }
    fn send(&mut self, frame: &[u8]) {
        if frame.len() <= self.max_frame {
            self.tx.borrow_mut().push_back(frame.to_vec());
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let f = self.rx.borrow_mut().pop_front()?;
            if f.len() > buf.len() {
                self.dropped.set(self.dropped.get() + 1);
                continue;
            }
            buf[..f.len()].copy_from_slice(&f);
            return Some(f.len());
        }
    }
}

impl MockHal {
    /// A mock machine with `mem` bytes of physical memory and the given CPU.
    pub fn new(mem: usize, cpu: MockCpu) -> Self {
        MockHal {
            phys: MockPhys::new(mem),
            cpu,
            now_ns: 0,
            run_cost_ns: 1_000,
            timer: None,
            console: MockConsole::default(),
            log: Vec::new(),
            space_limit: None,
            spaces_created: 0,
            nets: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn timer_due(&mut self) -> bool {
        match self.timer {
            Some(d) if d <= self.now_ns => {
                self.timer = None;
                true
            }
            _ => false,
        }
    }
}

impl Hal for MockHal {
    type Phys = MockPhys;
    type Space = MockSpace;

    fn phys(&self) -> &MockPhys {
        &self.phys
    }
    fn new_space(&mut self) -> Result<MockSpace, HalError> {
        if self.space_limit.is_some_and(|l| self.spaces_created >= l) {
            return Err(HalError::OutOfResources);
        }
        self.spaces_created += 1;
        Ok(MockSpace { id: self.spaces_created, pending: Vec::new(), pages: BTreeMap::new(), batches: 0 })
    }
    fn run(&mut self, ctx: &mut UserContext, space: &mut MockSpace) -> Trap {
        space.apply();
        if self.timer_due() {
            return Trap::Interrupt(Interrupts::TIMER);
        }
        self.now_ns += self.run_cost_ns;
        (self.cpu)(ctx, space, &self.phys)
    }
    fn fpu_layout(&self) -> crate::FpuLayout {
        MOCK_FPU_LAYOUT
    }
    fn now_ns(&self) -> u64 {
        self.now_ns
    }
    fn realtime_ns(&self) -> u64 {
        1_700_000_000_000_000_000 + self.now_ns
    }
    fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.timer = deadline_ns;
    }
    fn wait_for_interrupt(&mut self) -> Interrupts {
        if !self.console.input.is_empty() || (self.console.input_closed && !self.console.eof_seen) {
            return Interrupts::CONSOLE;
        }
        if self.nets.iter().any(|n| n.pending()) {
            return Interrupts::NET;
        }
        match self.timer.take() {
            Some(d) => {
                self.now_ns = self.now_ns.max(d);
                Interrupts::TIMER
            }
            // Nothing can ever happen: the kernel must notice the deadlock.
            None => Interrupts::empty(),
        }
    }
    fn console(&mut self) -> &mut dyn Console {
        &mut self.console
    }
    fn random(&mut self, buf: &mut [u8]) {
        for b in buf {
            // xorshift: deterministic, so failing cases replay.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            *b = self.rng as u8;
        }
    }
    fn log(&mut self, line: &str) {
        self.log.push(String::from(line));
    }
}
