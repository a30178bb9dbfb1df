//! Why user code stopped running.

/// The kind of memory access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// A CPU exception other than a page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuFaultKind {
    /// Invalid or privileged-in-user-mode opcode (`SIGILL`).
    IllegalInstruction,
    /// Integer divide error (`SIGFPE`).
    DivideError,
    /// x87/SIMD floating-point exception (`SIGFPE`).
    FloatingPoint,
    /// `int3` or single step (`SIGTRAP`).
    Breakpoint,
    /// General protection fault, e.g. a non-canonical address (`SIGSEGV`).
    GeneralProtection,
    /// Misaligned or otherwise unserviceable access (`SIGBUS`).
    BusError,
}

bitflags::bitflags! {
    /// Pending interrupt sources.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct Interrupts: u32 {
        /// The one-shot timer expired.
        const TIMER = 1;
        /// The console has input (or hung up).
        const CONSOLE = 2;
        /// A network device has received frames.
        const NET = 4;
        /// The backend killed the host context of a space it was not
        /// running (it broke the backend's rules, e.g. ran guest code while
        /// the kernel believed it stopped): the kernel finds it with
        /// [`crate::AddressSpace::is_lost`] and kills its process.
        const LOST = 8;
        /// A request arrived on the operator's control channel: the kernel
        /// takes it with [`crate::Hal::control_take`].
        const CONTROL = 16;
    }
}

/// What happened while user code ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The guest executed `syscall`. Number and arguments are in the context.
    Syscall,
    /// The guest touched `addr` and the host mapping did not allow `access`.
    PageFault {
        /// The faulting address.
        addr: u64,
        /// What the instruction tried to do.
        access: Access,
    },
    /// A CPU exception; `addr` is the faulting instruction or data address
    /// where the CPU reports one, else the instruction pointer.
    CpuFault {
        /// Which exception.
        kind: CpuFaultKind,
        /// Associated address.
        addr: u64,
    },
    /// An interrupt arrived (timer, device); user code was preempted.
    Interrupt(Interrupts),
    /// The host context running this address space is gone (killed on the
    /// host, or it broke the backend's rules, e.g. a denied host call). The
    /// kernel kills the guest process (`SIGKILL`, or `SIGSYS` as reported).
    Lost {
        /// Host signal that ended it, if known.
        signal: Option<u32>,
    },
}
