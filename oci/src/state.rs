//! The runtime's state directory (`--root`): one directory per container
//! holding our record of it, the fifo `start` opens, and the kernel's log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `create` wrote about a container.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's process: our shim until `start`, then (the same
    /// pid, after exec) the kernel.
    pub pid: i32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22),
    /// so that a recycled pid is not taken for it.
    pub pid_start: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub started: bool,
    /// `pause` holds it (the guest's `stop`) until `resume`.
    #[serde(default)]
    pub paused: bool,
    /// The guest's control name (`--name`).
    pub name: String,
    /// `XDG_RUNTIME_DIR` the kernel was given: its control directory is
    /// `<this>/rustuml/<name>/`.
    pub run_dir: PathBuf,
    pub backend: String,
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// The OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    /// runc's word for a frozen container (not in the spec's list).
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

pub struct Store {
    pub root: PathBuf,
}

/// Container ids: what runc accepts (letters, digits, `_`, `+`, `-`, `.`),
/// not `.` or `..`, and short enough to be a file name.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id `{}`: letters, digits, `_`, `+`, `-`, `.` only",
            id.escape_default()
        ))
    }
}

impl Store {
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn load(&self, id: &str) -> Result<Record, String> {
        check_id(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(format!("container does not exist: {id}"));
        }
        let text = std::fs::read(dir.join("state.json")).map_err(|e| format!("container {id}: no state ({e}); it is being created or was half-made: `delete --force {id}`"))?;
        serde_json::from_slice(&text).map_err(|e| format!("container {id}: state.json: {e}"))
    }

    pub fn save(&self, r: &Record) -> Result<(), String> {
        let dir = self.dir(&r.id);
        let tmp = dir.join(".state.json.tmp");
        let text = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| format!("{}: {e}", dir.display()))
    }

    /// Every container id in the state directory.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_id(n).is_ok() && !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }
}

/// Start time (field 22) and state letter (field 3) of a host process.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command is in parentheses and may hold spaces or `)`.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Is the record's process still there (not a zombie, not a recycled pid)?
pub fn alive(r: &Record) -> bool {
    r.pid > 0
        && matches!(proc_stat(r.pid), Some((start, st)) if start == r.pid_start && st != 'Z' && st != 'X')
}

pub fn status(r: &Record) -> Status {
    match (alive(r), r.started, r.paused) {
        (false, _, _) => Status::Stopped,
        (true, false, _) => Status::Created,
        (true, true, false) => Status::Running,
        (true, true, true) => Status::Paused,
    }
}

/// The state JSON the runtime spec defines (plus runc's extra fields).
pub fn state_json(r: &Record) -> serde_json::Value {
    let st = status(r);
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": r.id,
        "status": st.name(),
        "pid": if st == Status::Stopped { 0 } else { r.pid },
        "bundle": r.bundle,
        "rootfs": rootfs_of(&r.bundle),
        "created": r.created,
        "owner": r.owner,
    });
    if !r.annotations.is_empty() {
        v["annotations"] = serde_json::json!(r.annotations);
    }
    v
}

fn rootfs_of(bundle: &Path) -> String {
    crate::config::load(bundle)
        .ok()
        .and_then(|s| s.root)
        .map(|r| {
            if Path::new(&r.path).is_absolute() {
                PathBuf::from(r.path)
            } else {
                bundle.join(r.path)
            }
        })
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Now as RFC 3339 in UTC, with nanoseconds (as runc writes `created`).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}
