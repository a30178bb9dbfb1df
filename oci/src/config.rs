//! The part of an OCI bundle's `config.json` a rustuml guest can honour,
//! checked, and turned into the kernel's command line.
//!
//! Only the fields we act on are typed; serde skips the rest (a runtime
//! must ignore properties it does not know). What we read but cannot
//! honour is listed in docs/oci.md.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// config.json larger than this is refused before it is parsed: a real one
/// is a few kilobytes.
const MAX_CONFIG: u64 = 4 << 20;
/// Bounds on the arrays we turn into kernel arguments.
const MAX_ARGS: usize = 4096;
const MAX_ENV: usize = 4096;
const MAX_MOUNTS: usize = 256;
/// A rustuml guest below this cannot boot a shell.
const MIN_MEM: u64 = 16 << 20;
/// Default guest memory when the bundle sets no limit (the kernel's own default).
const DEFAULT_MEM: u64 = 256 << 20;

/// Annotation keys for rustuml's own options.
pub const ANN_BACKEND: &str = "org.rustuml.backend";
pub const ANN_TRAP: &str = "org.rustuml.trap";
pub const ANN_NET: &str = "org.rustuml.net";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub cwd: String,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Deserialize)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Linux {
    pub resources: Option<Resources>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Resources {
    pub memory: Option<Memory>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Memory {
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
}

/// Read and parse `BUNDLE/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_CONFIG {
        return Err(format!(
            "{}: {} bytes, more than a config.json can be ({MAX_CONFIG})",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A guest path: absolute, no `..`, no NUL.
fn check_guest_path(what: &str, p: &str) -> Result<(), String> {
    if !p.starts_with('/')
        || p.contains('\0')
        || Path::new(p).components().any(|c| c == Component::ParentDir)
    {
        return Err(format!(
            "{what} `{}`: must be an absolute path without `..`",
            p.escape_default()
        ));
    }
    Ok(())
}

/// Which kernel runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Skas,
    Tt,
}

impl Backend {
    pub fn binary(self) -> &'static str {
        match self {
            Backend::Skas => "kernel-skas",
            Backend::Tt => "kernel-tt",
        }
    }
}

/// Everything `create` needs, checked.
#[derive(Debug)]
pub struct Plan {
    pub backend: Backend,
    /// The kernel's arguments (the binary not included).
    pub kernel_args: Vec<String>,
    pub terminal: bool,
    /// A network namespace the engine made for the container: the kernel
    /// process joins it, so the guest's user-mode NAT goes out through it.
    pub netns: Option<PathBuf>,
    /// What we read but cannot honour, one line each (for the log).
    pub notes: Vec<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Check `spec` from `bundle` and build the kernel's command line.
/// `empty_root` is an empty directory given as the kernel's `--root` (the
/// container's root is mounted over `/` with hostfs); `name` the guest's
/// control name.
pub fn plan(
    spec: &Spec,
    bundle: &Path,
    empty_root: &Path,
    name: &str,
    kernel_log: &Path,
) -> Result<Plan, String> {
    if !spec.oci_version.starts_with("1.") {
        return Err(format!(
            "ociVersion `{}` is not supported (1.x is)",
            spec.oci_version.escape_default()
        ));
    }
    let process = spec
        .process
        .as_ref()
        .ok_or("config.json has no `process`")?;
    let root = spec.root.as_ref().ok_or("config.json has no `root`")?;
    if process.args.is_empty() {
        return Err("process.args is empty: nothing to run".into());
    }
    if process.args.len() > MAX_ARGS
        || process.env.len() > MAX_ENV
        || spec.mounts.len() > MAX_MOUNTS
    {
        return Err(format!("config.json: too many args, env entries or mounts (at most {MAX_ARGS}, {MAX_ENV}, {MAX_MOUNTS})"));
    }
    check_guest_path("process.cwd", &process.cwd)?;
    if let Some(bad) = process
        .env
        .iter()
        .find(|e| !e.contains('=') || e.contains('\0'))
    {
        return Err(format!(
            "process.env entry `{}` is not KEY=VALUE",
            bad.escape_default()
        ));
    }
    if process.args.iter().any(|a| a.contains('\0')) {
        return Err("process.args: an argument contains a NUL byte".into());
    }
    let rootfs = if Path::new(&root.path).is_absolute() {
        PathBuf::from(&root.path)
    } else {
        bundle.join(&root.path)
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("root.path {}: not a directory", rootfs.display())),
        Err(e) => return Err(format!("root.path {}: {e}", rootfs.display())),
    }
    let rootfs_s = host_path_arg(&rootfs)?;

    let mut notes = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let ann = &spec.annotations;
    let backend = match ann.get(ANN_BACKEND).map(String::as_str) {
        None | Some("skas") => Backend::Skas,
        Some("tt") => Backend::Tt,
        Some(b) => {
            return Err(format!(
                "annotation {ANN_BACKEND}=`{}`: expected skas or tt",
                b.escape_default()
            ))
        }
    };
    if let Some(t) = ann.get(ANN_TRAP) {
        match (backend, t.as_str()) {
            (Backend::Skas, "seccomp" | "ptrace") => args.extend(["--trap".into(), t.clone()]),
            (Backend::Tt, _) => {
                return Err(format!(
                    "annotation {ANN_TRAP} applies to the skas backend only"
                ))
            }
            _ => {
                return Err(format!(
                    "annotation {ANN_TRAP}=`{}`: expected seccomp or ptrace",
                    t.escape_default()
                ))
            }
        }
    }

    // Memory: the cgroup limit becomes the guest's whole memory.
    let mem = match spec
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .and_then(|r| r.memory.as_ref())
        .and_then(|m| m.limit)
    {
        Some(l) if l > 0 => {
            let l = l as u64;
            if l < MIN_MEM {
                return Err(format!(
                    "linux.resources.memory.limit {l}: a rustuml guest needs at least {} MiB",
                    MIN_MEM >> 20
                ));
            }
            l
        }
        _ => DEFAULT_MEM,
    };
    args.extend(["--mem".into(), mem.to_string()]);
    args.extend(["--root".into(), host_path_arg(empty_root)?]);
    args.extend(["--name".into(), name.into()]);
    args.extend(["--log".into(), host_path_arg(kernel_log)?]);
    if let Some(h) = &spec.hostname {
        if h.len() > 64 || h.contains(['\0', '/']) {
            return Err(format!(
                "hostname `{}`: at most 64 bytes, no `/`",
                h.escape_default()
            ));
        }
        if !h.is_empty() {
            args.extend(["--hostname".into(), h.clone()]);
        }
    }
    // The container's root over `/`: writes go to the bundle's rootfs as
    // with runc (read-only when root.readonly); the kernel's own /dev,
    // /proc, /sys, /tmp and /run go on top of it.
    args.extend([
        "--hostfs".into(),
        format!("{rootfs_s}:/{}", if root.readonly { "" } else { ":rw" }),
    ]);

    // (guest destination, host source) of the bind mounts, for finding init.
    let mut binds: Vec<(String, PathBuf)> = Vec::new();
    for m in &spec.mounts {
        check_guest_path("mount destination", &m.destination)?;
        let kind = m.kind.as_deref().unwrap_or("");
        let bind = kind == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if bind {
            let src = m
                .source
                .as_deref()
                .ok_or_else(|| format!("bind mount at {}: no source", m.destination))?;
            let src_path = if Path::new(src).is_absolute() {
                PathBuf::from(src)
            } else {
                bundle.join(src)
            };
            let meta = std::fs::metadata(&src_path)
                .map_err(|e| format!("bind mount source {}: {e}", src_path.display()))?;
            if !meta.is_dir() {
                // hostfs exports directories; engines bind single files
                // (/etc/hosts, /etc/resolv.conf) that the guest then lacks.
                notes.push(format!(
                    "bind mount of the file {} at {} skipped: hostfs mounts directories only",
                    src_path.display(),
                    m.destination
                ));
                continue;
            }
            make_mount_point(&rootfs, &m.destination)?;
            binds.push((m.destination.clone(), src_path.clone()));
            let ro = m.options.iter().any(|o| o == "ro");
            args.extend([
                "--hostfs".into(),
                format!(
                    "{}:{}{}",
                    host_path_arg(&src_path)?,
                    m.destination,
                    if ro { "" } else { ":rw" }
                ),
            ]);
            continue;
        }
        match (kind, m.destination.as_str()) {
            // The guest kernel mounts its own of these at boot.
            ("proc", "/proc") | ("sysfs", "/sys") | ("tmpfs", "/dev" | "/tmp" | "/run" | "/dev/shm") | ("devpts", "/dev/pts") | ("mqueue", "/dev/mqueue") => {}
            ("cgroup" | "cgroup2", _) => notes.push(format!("{kind} at {}: rustuml guests have no cgroups", m.destination)),
            _ => notes.push(format!("{kind} mount at {} not made: only bind mounts of directories and the guest's own /proc, /sys, /dev, /tmp, /run are", m.destination)),
        }
    }

    // The network: none unless the engine set one up (a namespace with a
    // path) or the annotation asks; then the guest gets the user-mode NAT.
    let netns = spec
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.iter().find(|n| n.kind == "network"))
        .and_then(|n| n.path.as_ref())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    // `;` also separates options: podman splits annotation values at commas.
    let net_ann = ann.get(ANN_NET).map(|s| s.replace(';', ","));
    match net_ann.as_deref() {
        Some("none") => {}
        Some(spec) if spec == "user" || spec.starts_with("user,") => {
            args.extend(["--net".into(), spec.into()])
        }
        Some(other) => {
            return Err(format!(
                "annotation {ANN_NET}=`{}`: expected none or user[;...]",
                other.escape_default()
            ))
        }
        // In the engine's namespace the host's own services are out of
        // reach already (its loopback is the namespace's): the guest
        // reaches what a runc container there would.
        None if netns.is_some() => args.extend(["--net".into(), "user,restrict=off".into()]),
        None => {}
    }

    if !process.rlimits.is_empty() {
        let kinds: Vec<String> = process
            .rlimits
            .iter()
            .map(|r| format!("{} {}/{}", r.kind, r.soft, r.hard))
            .collect();
        notes.push(format!(
            "process.rlimits not applied (the guest's defaults hold): {}",
            kinds.join(", ")
        ));
    }

    // Init: a guest path. A bare name is looked up on the container's PATH
    // in its root, as runc does before it execs.
    let init = resolve_init(
        &rootfs,
        &binds,
        &process.args[0],
        &process.env,
        &process.cwd,
    )?;
    let env: Vec<String> = if process.env.is_empty() {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
    } else {
        process.env.clone()
    };
    for e in &env {
        args.push(format!("--env={e}"));
    }
    args.extend(["--cwd".into(), process.cwd.clone()]);
    args.extend([
        "--user".into(),
        format!("{}:{}", process.user.uid, process.user.gid),
    ]);
    args.push("--".into());
    args.push(init);
    args.extend(process.args[1..].iter().cloned());
    Ok(Plan {
        backend,
        kernel_args: args,
        terminal: process.terminal,
        netns,
        notes,
        annotations: ann.clone(),
    })
}

/// The kernel mounts on a directory that exists: make a missing mount
/// point in the container's root, as runc does, unless the guest's own
/// /dev, /proc, /sys, /tmp or /run holds it. Never through a symlink of
/// the root (its target is a guest path, not a host one).
fn make_mount_point(rootfs: &Path, dest: &str) -> Result<(), String> {
    let guest_owned = ["/dev", "/proc", "/sys", "/tmp", "/run"]
        .iter()
        .any(|g| dest == *g || dest.starts_with(&format!("{g}/")));
    if guest_owned {
        return Ok(());
    }
    let mut at = rootfs.to_path_buf();
    for c in Path::new(dest)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
    {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "mount destination {dest}: {} is a symlink in the root",
                    at.display()
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "mount destination {dest}: {} is not a directory",
                    at.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| {
                    format!(
                        "mount destination {dest}: cannot make {}: {e}",
                        at.display()
                    )
                })?;
            }
            Err(e) => return Err(format!("mount destination {dest}: {}: {e}", at.display())),
        }
    }
    Ok(())
}

/// A host path the kernel's `HOST:GUEST` flags can carry.
fn host_path_arg(p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", p.display()))?;
    if s.contains(':') {
        return Err(format!("{s}: paths with `:` cannot be given to the kernel"));
    }
    Ok(s.to_string())
}

/// The guest path of the program to run.
fn resolve_init(
    rootfs: &Path,
    binds: &[(String, PathBuf)],
    arg0: &str,
    env: &[String],
    cwd: &str,
) -> Result<String, String> {
    // Where a guest path is on the host: under the last bind mount that
    // covers it (later mounts go on top), else in the root.
    let host = |guest: &str| -> PathBuf {
        for (dest, src) in binds.iter().rev() {
            if let Ok(rest) = Path::new(guest).strip_prefix(dest) {
                return src.join(rest);
            }
        }
        rootfs.join(guest.trim_start_matches('/'))
    };
    let exists = |guest: &str| std::fs::symlink_metadata(host(guest)).is_ok();
    if arg0.contains('/') {
        let guest = if arg0.starts_with('/') {
            arg0.to_string()
        } else {
            format!("{}/{arg0}", cwd.trim_end_matches('/'))
        };
        if exists(&guest) {
            return Ok(guest);
        }
        return Err(format!(
            "exec: \"{arg0}\": stat {arg0}: no such file or directory"
        ));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let guest = format!("{}/{arg0}", dir.trim_end_matches('/'));
        if exists(&guest) {
            return Ok(guest);
        }
    }
    Err(format!(
        "exec: \"{arg0}\": executable file not found in $PATH"
    ))
}

/// The config.json `rustuml-oci spec` writes: runc's example, trimmed to
/// what a rustuml guest honours.
pub fn example() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "rustuml",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "annotations": { ANN_BACKEND: "skas" },
        "linux": {
            "resources": { "memory": { "limit": 268435456i64 } },
            "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }]
        }
    })
}
