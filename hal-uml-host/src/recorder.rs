//! Honeypot logs on the host (`tty_log_dir=DIR`, `audit_log=FILE`): files
//! the guest cannot see or change, opened before the kernel confines itself
//! (the directory as a descriptor; each terminal's file is made in it with
//! `openat` when the terminal is first used).
//!
//! `DIR/<tty>.<kernel pid>.log` (`console`, `tty1`, `pts-0`...): one JSON
//! line per read or write of a guest program ([`hal::TtyLogRecord`]);
//! `rustuml-ctl replay FILE` plays one back. `FILE`: one JSON line per
//! audit event, `{"time":SEC.USEC,"event":...}`.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

struct TtyLogs {
    dir: OwnedFd,
    files: Mutex<HashMap<String, std::fs::File>>,
}

static TTY: OnceLock<TtyLogs> = OnceLock::new();
static AUDIT: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Record terminal traffic in directory `dir` (created if missing, 0700).
pub fn open_tty_log_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("tty_log_dir {}: {e}", dir.display()))?;
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| "tty_log_dir: NUL in path".to_string())?;
    // SAFETY: `c` is NUL-terminated; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("tty_log_dir {}: {}", dir.display(), std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor we just opened.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = TTY.set(TtyLogs { dir, files: Mutex::new(HashMap::new()) });
    Ok(())
}

/// Append audit events to `file`.
pub fn open_audit_log(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(file).map_err(|e| format!("audit_log {}: {e}", file.display()))?;
    let _ = AUDIT.set(Mutex::new(f));
    Ok(())
}

/// [`hal::Hal::recording`].
pub fn recording() -> (bool, bool) {
    (TTY.get().is_some(), AUDIT.get().is_some())
}

/// [`hal::Hal::tty_log`].
pub fn tty_log(rec: &hal::TtyLogRecord<'_>) {
    let Some(t) = TTY.get() else { return };
    let mut files = t.files.lock().unwrap_or_else(|e| e.into_inner());
    if !files.contains_key(rec.tty) {
        let safe: String = rec.tty.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let Ok(name) = CString::new(format!("{safe}.{}.log", std::process::id())) else { return };
        // SAFETY: openat relative to the directory we hold; the name has no '/'.
        let fd = unsafe { libc::openat(t.dir.as_raw_fd(), name.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0o600) };
        if fd < 0 {
            return;
        }
        // SAFETY: a descriptor we just opened.
        files.insert(rec.tty.to_string(), unsafe { std::fs::File::from_raw_fd(fd) });
    }
    if let Some(f) = files.get_mut(rec.tty) {
        let _ = f.write_all(rec.to_json_line().as_bytes());
    }
}

/// [`hal::Hal::audit_log`].
pub fn audit_log(realtime_ns: u64, json: &str) {
    let Some(f) = AUDIT.get() else { return };
    let body = json.strip_prefix('{').unwrap_or(json);
    let line = format!("{{\"time\":{}.{:06},{body}\n", realtime_ns / 1_000_000_000, realtime_ns / 1000 % 1_000_000);
    let _ = f.lock().unwrap_or_else(|e| e.into_inner()).write_all(line.as_bytes());
}
