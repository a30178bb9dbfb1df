//! `reboot(2)`: `halt`, `poweroff` and `reboot` of a guest's init power
//! the guest off (the kernel writes its disks back, records their file
//! systems as cleanly unmounted, and exits); Ctrl-Alt-Del settings are
//! accepted and ignored.

use hal::Hal;

use super::fs_ops::cred;
use super::SysCtx;
use crate::{Errno, SysResult};

const MAGIC1: u32 = 0xfee1_dead;
const MAGIC2: [u32; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
const CMD_CAD_OFF: u32 = 0;
const CMD_CAD_ON: u32 = 0x89ab_cdef;
const CMD_RESTART: u32 = 0x0123_4567;
const CMD_HALT: u32 = 0xcdef_0123;
const CMD_POWER_OFF: u32 = 0x4321_fedc;
const CMD_RESTART2: u32 = 0xa1b2_c3d4;

/// `reboot(magic1, magic2, cmd, arg)`.
pub fn reboot<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] as u32 != MAGIC1 || !MAGIC2.contains(&(a[1] as u32)) {
        return Err(Errno::EINVAL);
    }
    if !cred(cx).is_root() {
        return Err(Errno::EPERM);
    }
    match a[2] as u32 {
        CMD_CAD_OFF | CMD_CAD_ON => Ok(0),
        CMD_RESTART | CMD_HALT | CMD_POWER_OFF | CMD_RESTART2 => {
            // A restart is a power-off too: the host starts the kernel again.
            let _ = cx.k.fs.disks.sync_all();
            // init's threads end (as exit_group ends a group's other
            // threads); the kernel stops when init is gone. As on Linux the
            // caller never sees the call return: its group ends too, so
            // nothing it does races the power-off.
            cx.k.procs.end_group(1, cx.t.pid, crate::task::ExitStatus::Code(0));
            cx.t.group_exit = Some(crate::task::ExitStatus::Code(0));
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
