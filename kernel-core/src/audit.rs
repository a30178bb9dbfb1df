//! Honeypot records (`tty_log_dir=`, `audit_log=`): what guest programs do
//! on terminals, and the events an operator audits (execve, connect, bind,
//! accept, opens for writing). Records are queued where they happen (a
//! system call, a terminal read) and handed to the HAL at the top of the
//! kernel loop; when recording is off, each hook is one flag test.
//!
//! An audit record is one JSON object: `{"event":"execve","pid":P,"uid":U,
//! "argv":[...]}`, `{"event":"connect","pid":P,"uid":U,"addr":"A"}`,
//! `{"event":"open","pid":P,"uid":U,"path":"/p","flags":F}`; the host adds
//! the time. Strings are escaped byte by byte (bytes >= 0x80 as `\u00XX`),
//! so a guest can neither break a line nor forge a field.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::net::{SockAddr, UnixAddr};

/// Audit state of the kernel.
#[derive(Debug, Default)]
pub struct AuditState {
    /// `audit_log=` is on.
    pub events: bool,
    /// Events not handed to the HAL yet (JSON objects, with their time).
    pub pending: Vec<(u64, String)>,
}

use hal::json_str;

fn head(event: &str, pid: u32, uid: u32) -> String {
    let mut s = String::with_capacity(96);
    let _ = write!(s, "{{\"event\":\"{event}\",\"pid\":{pid},\"uid\":{uid}");
    s
}

fn addr_text(a: &SockAddr) -> String {
    match a {
        SockAddr::Unspec => String::from("unspec"),
        SockAddr::Inet(ip, port) => alloc::format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]),
        SockAddr::Inet6(ip, port, _, _) => {
            let mut s = String::from("[");
            for (i, c) in ip.chunks(2).enumerate() {
                let _ = write!(s, "{}{:x}", if i > 0 { ":" } else { "" }, u16::from_be_bytes([c[0], c[1]]));
            }
            let _ = write!(s, "]:{port}");
            s
        }
        SockAddr::Unix(UnixAddr::Path(p)) => String::from_utf8_lossy(p).into_owned(),
        SockAddr::Unix(UnixAddr::Abstract(p)) => alloc::format!("@{}", String::from_utf8_lossy(p)),
        SockAddr::Unix(_) => String::from("unix:unnamed"),
        SockAddr::Netlink(pid, groups) => alloc::format!("netlink:{pid}:{groups}"),
    }
}

impl AuditState {
    /// A successful execve by process `tgid` (user `uid`): the new program's argv.
    pub fn execve(&mut self, tgid: u32, uid: u32, argv: &[Vec<u8>], now: impl FnOnce() -> u64) {
        if !self.events {
            return;
        }
        let mut s = head("execve", tgid, uid);
        s.push_str(",\"argv\":[");
        for (i, a) in argv.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_str(&mut s, a);
        }
        s.push_str("]}");
        self.pending.push((now(), s));
    }

    /// `connect`, `bind` or `accept` (the peer's address) of `addr`.
    pub fn net(&mut self, tgid: u32, uid: u32, op: &str, addr: &SockAddr, now: impl FnOnce() -> u64) {
        if !self.events {
            return;
        }
        let mut s = head(op, tgid, uid);
        s.push_str(",\"addr\":");
        json_str(&mut s, addr_text(addr).as_bytes());
        s.push('}');
        self.pending.push((now(), s));
    }

    /// An open that may write (write access, `O_CREAT` or `O_TRUNC`).
    pub fn open(&mut self, tgid: u32, uid: u32, path: &str, flags: u32, now: impl FnOnce() -> u64) {
        use linux_raw_sys::general as g;
        if !self.events || (flags & g::O_ACCMODE == g::O_RDONLY && flags & (g::O_CREAT | g::O_TRUNC) == 0) {
            return;
        }
        let mut s = head("open", tgid, uid);
        s.push_str(",\"path\":");
        json_str(&mut s, path.as_bytes());
        let _ = write!(s, ",\"flags\":{flags}}}");
        self.pending.push((now(), s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_cannot_break_out() {
        let mut s = String::new();
        json_str(&mut s, b"a\"b\\c\nd\x00\xff");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0000\\u00ff\"");
        assert_eq!(addr_text(&SockAddr::Inet([10, 0, 2, 2], 80)), "10.0.2.2:80");
    }
}
