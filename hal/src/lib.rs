//! The boundary between `kernel-core` and the host.
//!
//! `kernel-core` is a loop: pick a runnable task, ask the HAL to [`Hal::run`]
//! its user context in its address space until something happens (a [`Trap`]),
//! handle it. Everything host-specific — how guest code is executed, how guest
//! memory is mapped, how time passes, where console bytes go — lives behind the
//! traits of this crate, so `kernel-core` can be driven by a real backend
//! (`hal-uml-x86_64`, `hal-uml-tt`) or by the [`mock`] HAL with no host at all.
//!
//! The crate holds only traits and plain data; it has no `unsafe` code.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod block;
pub mod context;
pub mod device;
pub mod mem;
pub mod net;
pub mod trap;

#[cfg(feature = "mock")]
pub mod mock;

pub use block::{BlockDevice, BlockError, BlockInfo, BlockRequest, MemDisk, SECTOR_SIZE};
pub use context::{FpuLayout, FpuState, UserContext, UserRegs, XSTATE_MAX};
pub use device::{Console, ConsoleRead, ConsoleStream, HostAttr, HostDir, HostDirEntry, HostError, HostFileKind, HostSetAttr};
pub use mem::{AddressSpace, PhysMem, Prot, PAGE_SIZE};
pub use net::NetDevice;
pub use trap::{Access, CpuFaultKind, Interrupts, Trap};

/// One read or write on a guest terminal, for the host's session log
/// (`tty_log_dir=`).
#[derive(Clone, Copy, Debug)]
pub struct TtyLogRecord<'a> {
    /// Wall-clock time, ns since the epoch.
    pub realtime_ns: u64,
    /// The terminal: `console`, `tty1`, `pts/0`...
    pub tty: &'a str,
    /// Read by a guest program (true) or written by one (false).
    pub input: bool,
    /// The guest process and its session.
    pub pid: u32,
    /// The session id.
    pub sid: u32,
    /// The bytes, as the program read or wrote them.
    pub data: &'a [u8],
}

impl TtyLogRecord<'_> {
    /// The record as one JSON line (newline included): `{"time":SEC.USEC,
    /// "tty":..,"dir":"in"|"out","pid":..,"sid":..,"data":".."}`, the data
    /// escaped byte by byte with [`json_str`].
    pub fn to_json_line(&self) -> alloc::string::String {
        use core::fmt::Write;
        let mut s = alloc::string::String::with_capacity(96 + self.data.len());
        let _ = write!(s, "{{\"time\":{}.{:06},\"tty\":", self.realtime_ns / 1_000_000_000, self.realtime_ns / 1000 % 1_000_000);
        json_str(&mut s, self.tty.as_bytes());
        let _ = write!(s, ",\"dir\":\"{}\",\"pid\":{},\"sid\":{},\"data\":", if self.input { "in" } else { "out" }, self.pid, self.sid);
        json_str(&mut s, self.data);
        s.push_str("}\n");
        s
    }
}

/// `bytes` as a JSON string (quoted), byte by byte: printable ASCII as it
/// is, bytes >= 0x80 and controls as `\u00XX` (a reader maps each code
/// point back to one byte), so no content can end a line or forge a field.
pub fn json_str(out: &mut alloc::string::String, bytes: &[u8]) {
    use core::fmt::Write;
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
    }
    out.push('"');
}

/// Why the HAL could not provide a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalError {
    /// The host refused to create another address space or context (process
    /// limit, memory): the guest sees this as `EAGAIN`/`ENOMEM`.
    OutOfResources,
}

/// Everything `kernel-core` needs from the machine it runs on.
///
/// One value of this trait is handed to the kernel at boot and owned by it.
/// All methods are called from the kernel's single thread of control.
pub trait Hal {
    /// The physical-memory region type.
    type Phys: PhysMem;
    /// The address-space type. Dropping one releases everything the host
    /// holds for it (for skas: the stub process).
    type Space: AddressSpace;

    /// The physical-memory region: `mem=` bytes, frames are offsets in it.
    fn phys(&self) -> &Self::Phys;

    /// A new, empty user address space.
    fn new_space(&mut self) -> Result<Self::Space, HalError>;

    /// Run `ctx` in `space` until the next trap.
    ///
    /// Pending map operations of `space` are applied before user code runs.
    /// On return `ctx` holds the user registers at the trap: for
    /// [`Trap::Syscall`] the number is in `orig_rax`, `rip` points after the
    /// `syscall` instruction, and the kernel writes the result into `rax`
    /// before the next `run`.
    fn run(&mut self, ctx: &mut UserContext, space: &mut Self::Space) -> Trap;

    /// The layout of [`FpuState`] on this machine: how many bytes of it are
    /// meaningful and which components they hold.
    fn fpu_layout(&self) -> FpuLayout;

    /// Monotonic time since boot, in nanoseconds.
    fn now_ns(&self) -> u64;

    /// Wall-clock time (`CLOCK_REALTIME`) in nanoseconds since the Unix epoch.
    fn realtime_ns(&self) -> u64;

    /// Arm the one-shot timer for the monotonic instant `deadline_ns`, or
    /// disarm it with `None`. Expiry is reported as [`Interrupts::TIMER`],
    /// interrupting [`Hal::run`] or [`Hal::wait_for_interrupt`].
    fn set_timer(&mut self, deadline_ns: Option<u64>);

    /// From now until the next [`Hal::run`] no guest code may run: a backend
    /// whose host contexts could run unsupervised makes sure they cannot.
    /// The kernel calls it before it idles or decides that nothing can run.
    /// Returns [`Interrupts::LOST`] if a context had to be killed for it.
    fn stop_guests(&mut self) -> Interrupts {
        Interrupts::empty()
    }

    /// Sleep on the host, using no CPU, until an interrupt is pending (timer
    /// expiry or device readiness), and return the pending set. Returns at
    /// once if one is already pending.
    fn wait_for_interrupt(&mut self) -> Interrupts;

    /// The console device.
    fn console(&mut self) -> &mut dyn Console;

    /// Fill `buf` with random bytes from the host's entropy source (for
    /// `AT_RANDOM`, `getrandom` and `/dev/urandom`).
    fn random(&mut self, buf: &mut [u8]);

    /// A line of kernel diagnostics (syscall trace, warnings, the shutdown
    /// summary). Goes to the host's stderr on real backends.
    fn log(&mut self, line: &str);

    /// A kernel message at syslog `level` (0 emergency ... 3 error, 4
    /// warning ... 7 debug), which the kernel also keeps in its own log
    /// (`dmesg`). Backends show it on the host as configured; by default
    /// only errors, as Linux's console shows only levels below 4, so that
    /// messages never mix with a guest program's output on the console.
    /// Default: [`Hal::log`].
    fn kernel_message(&mut self, level: u8, line: &str) {
        let _ = level;
        self.log(line);
    }

    /// The vDSO the backend offers guests: an ELF shared object (whole
    /// pages) the kernel maps read and execute in every process, one page
    /// above the clock data page (see [`Hal::publish_clock`]), and names in
    /// `AT_SYSINFO_EHDR`. `None`: no vDSO (the guests' C libraries then make
    /// system calls).
    fn vdso_image(&self) -> Option<&[u8]> {
        None
    }

    /// From now on keep the clock data page at physical address `paddr`
    /// (page-aligned; mapped read-only in guests, below the vDSO) current:
    /// the backend's clock parameters, which the vDSO's routines read.
    fn publish_clock(&mut self, paddr: u64) {
        let _ = paddr;
    }

    /// Console line `n` (1 to 6: the guest's `/dev/ttyN`, UML's `conN=`),
    /// if a channel is attached to it. Its input readiness is reported as
    /// [`Interrupts::CONSOLE`], like the console's. Default: none.
    fn console_line(&mut self, n: u32) -> Option<&mut dyn Console> {
        let _ = n;
        None
    }

    /// What the host records: (every byte on guest terminals, an audit
    /// line per execve/connect/bind/accept/open-for-write). Asked once, at
    /// boot. Default: nothing.
    fn recording(&self) -> (bool, bool) {
        (false, false)
    }

    /// Record terminal traffic (only called when [`Hal::recording`] said so).
    fn tty_log(&mut self, rec: &TtyLogRecord<'_>) {
        let _ = rec;
    }

    /// Record one audit event, a JSON object without its time, which the
    /// host adds (`realtime_ns`).
    fn audit_log(&mut self, realtime_ns: u64, json: &str) {
        let _ = (realtime_ns, json);
    }

    /// The next request from the operator's control channel (a host
    /// socket, `rustuml-ctl`): the client it came from and one line of
    /// text, already checked for length. `None` when none is waiting.
    /// Arrival is reported as [`Interrupts::CONTROL`]. Default: none ever.
    fn control_take(&mut self) -> Option<(u64, alloc::string::String)> {
        None
    }

    /// The answer to `client`'s request: sent as it is (the kernel formats
    /// it); a client that went away is ignored.
    fn control_reply(&mut self, client: u64, answer: &[u8]) {
        let _ = (client, answer);
    }
}
