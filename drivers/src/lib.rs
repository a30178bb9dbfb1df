//! Host-side device backends shared by the kernel binaries.
//!
//! - [`console::HostConsole`]: the guest console on host stdin/stdout/stderr.
//! - [`initramfs::pack_dir`]: packs a host directory into a cpio "newc"
//!   archive that `kernel-core` unpacks as its root file system.
//! - [`hostfs::HostExport`]: a host directory exported into the guest
//!   (`--hostfs`), confined beneath that directory.
//! - [`block`]: disks (`ubdN=`): plain image files and UML-format COW files.
//! - [`net`]: network links (user-mode NAT, virtual switch, TAP) for `--net`.

pub mod block;
pub mod console;
pub mod console_chan;
pub mod hostfs;
pub mod initramfs;
pub mod net;
