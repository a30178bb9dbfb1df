//! `kernel-core`: all policy of the kernel, with no host.
//!
//! It reaches the machine only through the [`hal`] traits. Entry point:
//! [`boot`], which runs the guest's init to completion and returns its exit
//! status.
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
pub use kernel::{boot, BootConfig, BootError, Devices, NetAttach};
