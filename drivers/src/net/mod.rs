//! Network link backends behind [`hal::NetDevice`]: the user-mode NAT
//! (`nat`), the virtual switch transport between guests (`switch`) and host
//! TAP devices (`tap`).
//!
//! Every backend is non-blocking and exposes one host file descriptor that
//! becomes readable when frames may be waiting, so the backend's
//! wait-for-interrupt can sleep on it next to the timer and the console and
//! report [`hal::Interrupts::NET`].

pub mod nat;

use std::os::fd::RawFd;

/// A [`hal::NetDevice`] backed by the host.
pub trait HostLink: hal::NetDevice {
    /// A descriptor that polls readable (`POLLIN`) whenever
    /// [`hal::NetDevice::recv`] may return a frame. Level-triggered: it stays
    /// readable while frames are queued.
    fn readiness_fd(&self) -> RawFd;
}

pub mod switch;
pub mod tap;
