//! `syslog(2)` (`klogctl`): the kernel's log as `dmesg` reads it (see
//! [`crate::tty::kmsg`]).

use super::{SysCtx, SysResult};
use crate::Errno;
use hal::Hal;

const CLOSE: u64 = 0;
const OPEN: u64 = 1;
const READ: u64 = 2;
const READ_ALL: u64 = 3;
const READ_CLEAR: u64 = 4;
const CLEAR: u64 = 5;
const CONSOLE_OFF: u64 = 6;
const CONSOLE_ON: u64 = 7;
const CONSOLE_LEVEL: u64 = 8;
const SIZE_UNREAD: u64 = 9;
const SIZE_BUFFER: u64 = 10;

/// The last `len` bytes of `text`, from a line's start.
fn tail(text: &str, len: usize) -> &str {
    if text.len() <= len {
        return text;
    }
    let cut = text.len() - len;
    match text[cut..].find('\n') {
        Some(i) if cut + i + 1 <= text.len() && text.is_char_boundary(cut + i + 1) => &text[cut + i + 1..],
        _ => "",
    }
}

/// `syslog(type, buf, len)`. Reading the whole buffer and its size is open
/// to everyone (`dmesg_restrict` 0); the rest needs root.
pub fn syslog<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (ty, buf, len) = (a[0] as i32 as i64, a[1], a[2] as i32);
    let ty = u64::try_from(ty).map_err(|_| Errno::EINVAL)?;
    if !matches!(ty, READ_ALL | SIZE_BUFFER) && cx.t.cred.euid != 0 {
        return Err(Errno::EPERM);
    }
    let log = cx.k.ttys.log.clone();
    match ty {
        CLOSE | OPEN | CONSOLE_OFF | CONSOLE_ON => Ok(0),
        CONSOLE_LEVEL => {
            if !(1..=8).contains(&len) {
                return Err(Errno::EINVAL);
            }
            Ok(0)
        }
        READ | READ_ALL | READ_CLEAR => {
            if len < 0 || (buf == 0 && len > 0) {
                return Err(Errno::EINVAL);
            }
            if len == 0 {
                return Ok(0);
            }
            let text = log.borrow().text();
            let out = tail(&text, len as usize);
            cx.write_user(buf, out.as_bytes())?;
            if ty != READ_ALL {
                log.borrow_mut().clear();
            }
            Ok(out.len())
        }
        CLEAR => {
            log.borrow_mut().clear();
            Ok(0)
        }
        SIZE_UNREAD => Ok(log.borrow().text().len()),
        SIZE_BUFFER => Ok(log.borrow().capacity()),
        _ => Err(Errno::EINVAL),
    }
}
