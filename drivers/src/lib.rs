//! Host-side device backends shared by the kernel binaries.
//!
//! - [`console::HostConsole`]: the guest console on host stdin/stdout/stderr.
//! - [`initramfs::pack_dir`]: packs a host directory into a cpio "newc"
//!   archive that `kernel-core` unpacks as its root file system.

pub mod console;
pub mod initramfs;
