//! `kernel-core`: all policy of the kernel, with no host.
//!
//! It reaches the machine only through the [`hal`] traits. Entry point:
//! [`boot`], which runs the guest's init to completion and returns its exit
//! status.
//!
//! # Layers
//!
//! Dependencies go one way; `tests/layering.rs` reads every `use` and
//! `crate::`/`super::` path and fails on an edge against this rule:
//!
//! - On top, [`kernel`] (the loop, and the glue between subsystems: signal
//!   delivery, ptrace stops, CPU accounting, console input) and [`syscall`]
//!   (the handlers) may call every subsystem; so may [`control`] (the
//!   operator's requests) and [`invariants`] (checks over the whole kernel).
//! - Subsystems ([`task`]'s process table, [`fs`], [`net`], [`tty`],
//!   [`time`], [`ipc`], [`exec`], [`block`], [`filelock`], [`audit`]) never
//!   call `syscall` or `kernel`: they offer methods the layers above call.
//! - At the bottom, [`mm`], [`wait`], [`errno`] (and [`budget`]) call only
//!   each other and the `hal` traits.
//!
//! The test's list of known exceptions is empty, and may only stay so or
//! shrink.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod block;
pub mod audit;
pub mod budget;
pub mod control;
pub mod errno;
pub mod exec;
pub mod filelock;
pub mod fs;
#[doc(hidden)]
pub mod invariants;
pub mod ipc;
pub mod kernel;
pub mod mm;
pub mod net;
pub mod syscall;
pub mod task;
pub mod time;
pub mod tty;
pub mod wait;

pub use errno::{Errno, SysResult};

/// A process / thread id (every layer names tasks by it).
pub type Pid = u32;
pub use kernel::{boot, BootConfig, BootError, Devices, NetAttach};
