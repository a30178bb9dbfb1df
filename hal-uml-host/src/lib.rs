//! The host layer both UML backends stand on — skas (`hal-uml-x86_64`) and
//! tt (`hal-uml-tt`) — as Linux's `arch/um/os-Linux/` is shared by its
//! modes. Neither backend depends on the other; both depend on this crate.
//!
//! - [`phys`]: guest physical memory, one memfd mapped shared in the kernel.
//! - [`ops`]: map operations queued per address space and merged, and which
//!   of a batch to populate ([`POPULATE_MAX`]).
//! - [`tracer`]: running guest code in a ptrace'd host process — register
//!   and FPU ([`xstate`]) transfer, `waitpid` decoding into traps, the
//!   `SIGSEGV` detour that learns a fault's access kind ([`segv_detour`]),
//!   timer kicks.
//! - [`timer`] and [`host`]: clocks, the one-shot timer, the console and
//!   host events, idle wait, entropy, the log; [`vdso`], [`recorder`],
//!   [`control`] (the `--name` socket); [`host_hal_methods!`] answers the
//!   `hal::Hal` methods that are the same for every backend.
//! - [`heap`]: the kernel binaries' counting allocator.
//! - [`bpf`] and [`sandbox`]: seccomp filters and the kernel process's
//!   confinement; `cli` (feature `kernel`): the command line, UML's boot
//!   words, and the main driver of both kernel binaries.
//! - [`sys`]: safe wrappers of the host calls the backends make, so that
//!   their `unsafe` stays here.

pub mod bpf;
#[cfg(feature = "kernel")]
pub mod cli;
#[cfg(feature = "kernel")]
pub mod cli_args;
#[cfg(feature = "kernel")]
pub mod cli_uml;
pub mod control;
pub mod heap;
pub mod host;
#[cfg(feature = "kernel")]
pub mod nat_broker;
pub mod ops;
pub mod phys;
pub mod recorder;
#[cfg(feature = "kernel")]
pub mod sandbox;
pub mod segv_detour;
pub mod sys;
pub mod timer;
pub mod tracer;
pub mod vdso;
pub mod xstate;

/// Mappings up to this size are made with `MAP_POPULATE` (in batches that
/// are a fault's worth of work, [`ops::mark_populate`]).
pub const POPULATE_MAX: u64 = 16 * hal::PAGE_SIZE as u64;

/// The access of a page fault, from the x86 error code the host reports
/// with it (bit 4: instruction fetch, bit 1: write).
#[inline]
pub fn fault_access(err: u64) -> hal::Access {
    if err & 0x10 != 0 {
        hal::Access::Execute
    } else if err & 0x2 != 0 {
        hal::Access::Write
    } else {
        hal::Access::Read
    }
}
