//! `cargo xtask lab FILE.toml`: several guests wired by virtual switches
//! (Netkit/VNUML-style network labs).
//!
//! The file names switches and machines:
//!
//! ```toml
//! timeout = 60                 # seconds (default 120); --timeout overrides
//! hal = "skas"                 # or "tt" (default skas)
//!
//! [[switch]]
//! name = "lan"
//!
//! [[machine]]
//! name = "server"
//! wait = false                 # a service: stopped once the others finish
//! mem = "128M"                 # default 128M
//! interfaces = [ { switch = "lan", ip = "10.0.0.1/24" } ]
//! script = "exec busybox httpd -f -p 80 -h /www"
//!
//! [[machine]]
//! name = "client"
//! interfaces = [ { switch = "lan", ip = "10.0.0.2/24", gw = "10.0.0.1" } ]
//! script = "busybox wget -q -O - http://10.0.0.1/"
//! ```
//!
//! An interface is `{ switch = NAME, ip = "A.B.C.D/N", gw = "A.B.C.D", mac =
//! "02:..." }` (ip, gw and mac optional) or `{ net = "SPEC" }`, a raw
//! `--net` value (e.g. `user,hostfwd=tcp:127.0.0.1:8080-:80`). Interfaces
//! become eth0, eth1, ... in order. The script runs as init's commands
//! (`/bin/sh -c SCRIPT`); without one, init is `/bin/sh`.
//!
//! The switches run as threads of this process, on Unix sockets in a fresh
//! directory under the system's temporary directory; each machine is one
//! kernel process (in its own process group, so Ctrl-C reaches only this
//! program), its console written to `LOGS/NAME.log` (default
//! `target/lab/`) unless it is the `--attach`ed one, which gets the
//! terminal. The lab ends when every machine with `wait = true` (the
//! default) has finished, at the timeout, or at Ctrl-C; then the other
//! machines get SIGTERM (SIGKILL after 3 s), the switches stop, and any
//! process left under this one is killed, so nothing outlives the lab. The
//! summary gives each machine's end, the switches' counters and the end of
//! each waited machine's log. The exit status is 0 when every waited
//! machine exited with 0.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A parsed lab file.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    /// The lab's name (the file's stem).
    pub name: String,
    /// How long to wait for the machines (None: until Ctrl-C).
    pub timeout: Option<Duration>,
    /// `skas` or `tt`.
    pub hal: String,
    /// Switch names.
    pub switches: Vec<String>,
    /// Machines, in start order.
    pub machines: Vec<Machine>,
}

/// One guest of a lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Host name and log name.
    pub name: String,
    /// Its interfaces, eth0 first.
    pub interfaces: Vec<Iface>,
    /// Commands for `/bin/sh -c`, or None for an interactive `/bin/sh`.
    pub script: Option<String>,
    /// Whether the lab waits for it to finish (false: a service, stopped at
    /// the end).
    pub wait: bool,
    /// Guest memory (`--mem`).
    pub mem: String,
}

/// One interface of a machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Iface {
    /// Plugged into a lab switch.
    Switch {
        switch: String,
        ip: Option<String>,
        gw: Option<String>,
        mac: Option<String>,
    },
    /// A raw `--net` value.
    Spec(String),
}

fn check_name(what: &str, n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 32
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{what} name `{n}`: use 1 to 32 letters, digits, - or _"
        ));
    }
    Ok(())
}

fn check_ipv4(s: &str, cidr: bool) -> Result<(), String> {
    let (a, n) = match s.split_once('/') {
        Some((a, n)) if cidr => (a, Some(n)),
        Some(_) => return Err(format!("`{s}`: expected an address without /N")),
        None => (s, None),
    };
    if a.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("`{s}` is not an IPv4 address"));
    }
    if let Some(n) = n {
        match n.parse::<u8>() {
            Ok(n) if n <= 32 => {}
            _ => return Err(format!("`{s}`: the prefix length must be 0 to 32")),
        }
    }
    Ok(())
}

/// Parse a lab file's text; `name` is the lab's name.
pub fn parse_lab(name: &str, text: &str) -> Result<Lab, String> {
    let t: toml::Table = text
        .parse()
        // toml's message points at the line and column over several lines:
        // keep them, indented under the file name the caller prints.
        .map_err(|e: toml::de::Error| e.to_string().trim().replace('\n', "\n    "))?;
    for k in t.keys() {
        if !["timeout", "hal", "switch", "machine"].contains(&k.as_str()) {
            return Err(format!(
                "unknown key `{k}` (expected timeout, hal, [[switch]], [[machine]])"
            ));
        }
    }
    let timeout = match t.get("timeout") {
        None => Some(Duration::from_secs(120)),
        Some(v) => {
            let s = v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or("timeout: expected seconds")?;
            if s <= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(s))
            }
        }
    };
    let hal = match t.get("hal") {
        None => "skas".to_string(),
        Some(v) => match v.as_str() {
            Some(h @ ("skas" | "tt")) => h.to_string(),
            _ => return Err("hal: expected \"skas\" or \"tt\"".into()),
        },
    };
    let tables = |key: &str| -> Result<Vec<toml::Table>, String> {
        match t.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_table()
                        .cloned()
                        .ok_or_else(|| format!("[[{key}]]: expected tables"))
                })
                .collect(),
            Some(_) => Err(format!("`{key}`: expected [[{key}]] tables")),
        }
    };
    let str_of = |tab: &toml::Table, k: &str, ctx: &str| -> Result<Option<String>, String> {
        match tab.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| format!("{ctx}: `{k}` must be a string")),
        }
    };
    let mut switches = Vec::new();
    for s in tables("switch")? {
        let n = str_of(&s, "name", "[[switch]]")?.ok_or("[[switch]]: needs a name")?;
        check_name("switch", &n)?;
        if let Some(k) = s.keys().find(|k| *k != "name") {
            return Err(format!("switch {n}: unknown key `{k}`"));
        }
        if switches.contains(&n) {
            return Err(format!("switch {n} is defined twice"));
        }
        switches.push(n);
    }
    let mut machines: Vec<Machine> = Vec::new();
    for m in tables("machine")? {
        let name = str_of(&m, "name", "[[machine]]")?.ok_or("[[machine]]: needs a name")?;
        check_name("machine", &name)?;
        let ctx = format!("machine {name}");
        if machines.iter().any(|x| x.name == name) {
            return Err(format!("{ctx} is defined twice"));
        }
        if let Some(k) = m
            .keys()
            .find(|k| !["name", "interfaces", "script", "wait", "mem"].contains(&k.as_str()))
        {
            return Err(format!("{ctx}: unknown key `{k}`"));
        }
        let wait = match m.get("wait") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("{ctx}: `wait` must be true or false"))?,
        };
        let mem = str_of(&m, "mem", &ctx)?.unwrap_or_else(|| "128M".into());
        let script = str_of(&m, "script", &ctx)?;
        let mut interfaces = Vec::new();
        let list = match m.get("interfaces") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a.clone(),
            Some(_) => return Err(format!("{ctx}: `interfaces` must be an array of tables")),
        };
        for (i, v) in list.iter().enumerate() {
            let ictx = format!("{ctx}, interface {i}");
            let it = v
                .as_table()
                .ok_or_else(|| format!("{ictx}: expected a table"))?;
            if let Some(k) = it
                .keys()
                .find(|k| !["switch", "ip", "gw", "mac", "net"].contains(&k.as_str()))
            {
                return Err(format!("{ictx}: unknown key `{k}`"));
            }
            if let Some(spec) = str_of(it, "net", &ictx)? {
                if it.len() != 1 {
                    return Err(format!(
                        "{ictx}: `net` stands alone (put ip=, gw= inside the spec)"
                    ));
                }
                interfaces.push(Iface::Spec(spec));
                continue;
            }
            let switch = str_of(it, "switch", &ictx)?
                .ok_or_else(|| format!("{ictx}: needs `switch` or `net`"))?;
            if !switches.contains(&switch) {
                return Err(format!("{ictx}: no switch named {switch}"));
            }
            let ip = str_of(it, "ip", &ictx)?;
            let gw = str_of(it, "gw", &ictx)?;
            let mac = str_of(it, "mac", &ictx)?;
            if let Some(ip) = &ip {
                check_ipv4(ip, true).map_err(|e| format!("{ictx}: ip {e}"))?;
            }
            if let Some(gw) = &gw {
                check_ipv4(gw, false).map_err(|e| format!("{ictx}: gw {e}"))?;
            }
            interfaces.push(Iface::Switch {
                switch,
                ip,
                gw,
                mac,
            });
        }
        machines.push(Machine {
            name,
            interfaces,
            script,
            wait,
            mem,
        });
    }
    if machines.is_empty() {
        return Err("no [[machine]]".into());
    }
    Ok(Lab {
        name: name.to_string(),
        timeout,
        hal,
        switches,
        machines,
    })
}

/// How a machine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its kernel exited with this status (init's).
    Exited(i32),
    /// Its kernel died of this signal on its own.
    Signaled(i32),
    /// A service (`wait = false`) stopped at the end of the lab.
    Stopped,
    /// Still running at the timeout: stopped.
    TimedOut,
    /// Still running at Ctrl-C: stopped.
    Interrupted,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            End::Exited(c) => write!(f, "exit {c}"),
            End::Signaled(s) => write!(f, "killed by signal {s}"),
            End::Stopped => write!(f, "stopped (service)"),
            End::TimedOut => write!(f, "stopped at the timeout"),
            End::Interrupted => write!(f, "stopped (interrupted)"),
        }
    }
}

/// What a lab run gave.
#[derive(Debug)]
pub struct Outcome {
    /// Each machine's end and log file (None when attached).
    pub machines: Vec<(String, End, Option<PathBuf>)>,
    /// Every waited machine exited with 0.
    pub ok: bool,
    /// Per switch: its name and counters.
    pub switches: Vec<(String, drivers::net::switch::SwitchStats)>,
    /// How long it ran.
    pub elapsed: Duration,
    /// The kernels' pids, which are also their process groups (attached
    /// one excepted).
    #[cfg_attr(not(test), allow(dead_code))]
    pub pids: Vec<u32>,
    /// Processes of the lab still alive after it was stopped (then killed):
    /// should be none.
    pub leftovers: Vec<u32>,
    /// How many host processes (kernels and stubs) the lab had when it was
    /// stopped.
    pub processes: usize,
}

/// Set by SIGINT/SIGTERM while `cargo xtask lab` runs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Everything a run needs besides the lab.
pub struct RunConfig<'a> {
    /// The kernel binary.
    pub kernel: &'a Path,
    /// The guests' root directory.
    pub root: &'a Path,
    /// Where NAME.log files go.
    pub logs: &'a Path,
    /// The machine that gets the terminal, if any.
    pub attach: Option<&'a str>,
    /// Overrides the lab's timeout (zero: none).
    pub timeout: Option<Duration>,
    /// At the end, kill every process still parented to this one (set when
    /// this process is the machines' subreaper and runs nothing else).
    pub reap: bool,
}

struct Running {
    name: String,
    child: Option<Child>,
    end: Option<End>,
    wait: bool,
    log: Option<PathBuf>,
}

fn sock_dir() -> io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    // Short: Unix socket paths are limited to 107 bytes.
    let d = std::env::temp_dir().join(format!(
        "rustuml-lab-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d)?;
    Ok(d)
}

/// The kernel's arguments for machine `m` (switch sockets in `socks`).
fn kernel_args(m: &Machine, root: &Path, socks: &Path) -> Vec<String> {
    let mut a = vec![
        "--mem".into(),
        m.mem.clone(),
        "--root".into(),
        root.display().to_string(),
        "--hostname".into(),
        m.name.clone(),
    ];
    for i in &m.interfaces {
        let spec = match i {
            Iface::Spec(s) => s.clone(),
            Iface::Switch {
                switch,
                ip,
                gw,
                mac,
            } => {
                let mut s = format!(
                    "switch,path={}",
                    socks.join(format!("{switch}.sock")).display()
                );
                for (k, v) in [("ip", ip), ("gw", gw), ("mac", mac)] {
                    if let Some(v) = v {
                        s.push_str(&format!(",{k}={v}"));
                    }
                }
                s
            }
        };
        a.push("--net".into());
        a.push(spec);
    }
    a.push("--".into());
    a.push("/bin/sh".into());
    if let Some(s) = &m.script {
        a.push("-c".into());
        a.push(s.clone());
    }
    a
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn end_of(st: std::process::ExitStatus) -> End {
    match (st.code(), st.signal()) {
        (Some(c), _) => End::Exited(c),
        (None, Some(s)) => End::Signaled(s),
        _ => End::Exited(-1),
    }
}

/// The parent pid and start time of `pid`, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

fn proc_start(pid: u32) -> Option<u64> {
    // A zombie is dead already: it only waits for its parent.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat.rsplit_once(')')?.1.split_whitespace().next() == Some("Z") {
        return None;
    }
    proc_stat(pid).map(|p| p.1)
}

/// `roots` and all their descendants, as (pid, start time).
fn descendants(roots: &[u32]) -> Vec<(u32, u64)> {
    let all: Vec<(u32, u32, u64)> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| proc_stat(pid).map(|(pp, st)| (pid, pp, st)))
                .collect()
        })
        .unwrap_or_default();
    let mut found: Vec<(u32, u64)> = all
        .iter()
        .filter(|p| roots.contains(&p.0))
        .map(|p| (p.0, p.2))
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].0;
        for p in all.iter().filter(|p| p.1 == parent) {
            if !found.iter().any(|f| f.0 == p.0) {
                found.push((p.0, p.2));
            }
        }
        i += 1;
    }
    found
}

/// Kill and reap every process still parented to this one (stubs the
/// kernels left when this process is their subreaper).
fn reap_leftovers(own: &[u32]) {
    let me = std::process::id();
    for _ in 0..3 {
        let mut found = false;
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if own.contains(&pid) {
                    continue;
                }
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // The parent pid is the second field after the ")" that ends the name.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(me) {
                    found = true;
                    // SAFETY: kill and waitpid on our own child.
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                    }
                }
            }
        }
        if !found {
            return;
        }
    }
}

/// Run `lab`: switches, one kernel per machine, wait, stop all, summarise.
pub fn run_lab(lab: &Lab, cfg: &RunConfig) -> Result<Outcome, String> {
    if let Some(a) = cfg.attach {
        if !lab.machines.iter().any(|m| m.name == a) {
            return Err(format!("--attach {a}: no machine of that name"));
        }
    }
    fs::create_dir_all(cfg.logs).map_err(|e| format!("create {}: {e}", cfg.logs.display()))?;
    let socks = sock_dir().map_err(|e| format!("cannot make the switches' directory: {e}"))?;
    let started = Instant::now();
    let mut switches = Vec::new();
    for s in &lab.switches {
        let path = socks.join(format!("{s}.sock"));
        let t = drivers::net::switch::SwitchThread::spawn(&path)
            .map_err(|e| format!("switch {s}: {e}"))?;
        switches.push((s.clone(), t));
    }
    let mut running: Vec<Running> = Vec::new();
    let mut pids = Vec::new();
    let mut start_error = None;
    for m in &lab.machines {
        let mut cmd = Command::new(cfg.kernel);
        cmd.args(kernel_args(m, cfg.root, &socks));
        let attached = cfg.attach == Some(m.name.as_str());
        let log = if attached {
            None
        } else {
            let path = cfg.logs.join(format!("{}.log", m.name));
            let f = match fs::File::create(&path) {
                Ok(f) => f,
                Err(e) => {
                    start_error = Some(format!("create {}: {e}", path.display()));
                    break;
                }
            };
            let f2 = f.try_clone().map_err(|e| e.to_string())?;
            cmd.stdin(Stdio::null())
                .stdout(f)
                .stderr(f2)
                .process_group(0);
            Some(path)
        };
        match cmd.spawn() {
            Ok(child) => {
                pids.push(child.id());
                running.push(Running {
                    name: m.name.clone(),
                    child: Some(child),
                    end: None,
                    wait: m.wait || attached,
                    log,
                })
            }
            Err(e) => {
                start_error = Some(format!("cannot start {}: {e}", cfg.kernel.display()));
                break;
            }
        }
    }
    let timeout = match cfg.timeout {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if cfg.attach.is_some() => None,
        None => lab.timeout,
    };
    // Wait for the waited machines (or for anything, when none is waited).
    let mut why_stop = None;
    while start_error.is_none() {
        for r in running.iter_mut() {
            if let Some(c) = r.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    r.end = Some(end_of(st));
                    r.child = None;
                }
            }
        }
        let waited: Vec<&Running> = running.iter().filter(|r| r.wait).collect();
        let done = if waited.is_empty() {
            running.iter().all(|r| r.end.is_some())
        } else {
            waited.iter().all(|r| r.end.is_some())
        };
        if done {
            break;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            why_stop = Some(End::Interrupted);
            break;
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            why_stop = Some(End::TimedOut);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every process of the lab (kernels and their stubs, which have process
    // groups of their own), to check that none survives.
    let tree = descendants(&pids);
    // Stop whatever still runs: SIGTERM, then SIGKILL after 3 s.
    for r in running.iter().filter(|r| r.child.is_some()) {
        signal(r.child.as_ref().unwrap(), libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut left = false;
        for r in running.iter_mut() {
            if let Some(c) = r.child.as_mut() {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => {
                        r.end = Some(if r.wait {
                            why_stop.unwrap_or(End::Stopped)
                        } else {
                            End::Stopped
                        });
                        r.child = None;
                    }
                    Ok(None) => left = true,
                }
            }
        }
        if !left {
            break;
        }
        if Instant::now() >= deadline {
            for r in running.iter_mut() {
                if let Some(mut c) = r.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                    r.end = Some(if r.wait {
                        why_stop.unwrap_or(End::Stopped)
                    } else {
                        End::Stopped
                    });
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if cfg.reap {
        reap_leftovers(&[]);
    }
    // Kernels kill their stubs when they die; give them a moment, then
    // count (and kill) what is left.
    let mut leftovers: Vec<u32>;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        leftovers = tree
            .iter()
            .filter(|(pid, start)| proc_start(*pid) == Some(*start))
            .map(|p| p.0)
            .collect();
        if leftovers.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &leftovers {
        // SAFETY: a process of this lab, identified by pid and start time just above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let mut sw_stats = Vec::new();
    for (n, t) in switches {
        let st = t.stop().unwrap_or_default();
        sw_stats.push((n, st));
    }
    let _ = fs::remove_dir_all(&socks);
    if let Some(e) = start_error {
        return Err(e);
    }
    let ok = running
        .iter()
        .filter(|r| r.wait)
        .all(|r| r.end == Some(End::Exited(0)))
        && leftovers.is_empty();
    let pids = pids;
    Ok(Outcome {
        machines: running
            .into_iter()
            .map(|r| (r.name, r.end.unwrap_or(End::Stopped), r.log))
            .collect(),
        ok,
        switches: sw_stats,
        elapsed: started.elapsed(),
        pids,
        leftovers,
        processes: tree.len(),
    })
}

/// The last `n` lines of a file (at most its last 64 KiB).
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(65536)));
    let mut s = String::new();
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    s.push_str(&String::from_utf8_lossy(&b));
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Print the summary of a run.
pub fn print_summary(lab: &Lab, o: &Outcome) {
    eprintln!(
        "lab {}: {} ({} host processes), {}, {:.1} s: {}",
        lab.name,
        count(o.machines.len(), "machine", "machines"),
        o.processes,
        count(o.switches.len(), "switch", "switches"),
        o.elapsed.as_secs_f64(),
        if o.ok { "ok" } else { "FAILED" }
    );
    let w = o.machines.iter().map(|m| m.0.len()).max().unwrap_or(0);
    for (name, end, log) in &o.machines {
        let log = log
            .as_ref()
            .map(|l| format!("  {}", l.display()))
            .unwrap_or_default();
        eprintln!("  {name:<w$}  {:<24}{log}", end.to_string());
    }
    if !o.leftovers.is_empty() {
        eprintln!(
            "  warning: {} processes outlived their kernels (killed): {:?}",
            o.leftovers.len(),
            o.leftovers
        );
    }
    for (n, s) in &o.switches {
        eprintln!(
            "  switch {n}: {} frames in, {} unicast, {} flooded, {} malformed, {} oversize, {} dropped on full queues",
            s.frames_in, s.unicast, s.flooded, s.malformed, s.oversize, s.queue_full
        );
    }
    for (name, end, log) in &o.machines {
        let waited = lab.machines.iter().any(|m| &m.name == name && m.wait);
        if let (true, Some(log)) = (waited || *end != End::Stopped, log) {
            eprintln!("--- {name} (end of its console) ---");
            eprintln!("{}", tail(log, 20));
        }
    }
}

/// "1 switch", "2 switches".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `cargo xtask lab` options.
pub struct Options {
    /// The lab file.
    pub file: PathBuf,
    /// Machine whose console gets the terminal.
    pub attach: Option<String>,
    /// Directory for the logs (default `<target>/lab`).
    pub logs: Option<PathBuf>,
    /// Seconds (0: none), overriding the file.
    pub timeout: Option<f64>,
    /// Use the last build as it is.
    pub no_build: bool,
}

/// `cargo xtask lab FILE.toml`.
pub fn lab(p: &crate::Paths, o: &Options) -> Result<(), String> {
    let text = fs::read_to_string(&o.file).map_err(|e| format!("{}: {e}", o.file.display()))?;
    let name = o
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lab".into());
    let lab = parse_lab(&name, &text).map_err(|e| format!("{}: {e}", o.file.display()))?;
    let hal = if lab.hal == "tt" {
        crate::Hal::Tt
    } else {
        crate::Hal::Skas
    };
    if !o.no_build {
        crate::build(p, hal)?;
    }
    // Orphaned stub processes come back to us, so that none outlives the lab.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) and sigaction with a handler that only stores an atomic.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut());
    }
    // The attached kernel puts the terminal in raw mode; put it back after.
    let saved = o.attach.as_ref().and_then(|_| {
        // SAFETY: tcgetattr fills a zeroed termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(0, &mut t) == 0).then_some(t)
        }
    });
    let logs = o.logs.clone().unwrap_or_else(|| p.target.join("lab"));
    eprintln!(
        "lab {}: {}, {}; consoles in {}{}",
        lab.name,
        count(lab.switches.len(), "switch", "switches"),
        count(lab.machines.len(), "machine", "machines"),
        logs.display(),
        o.attach
            .as_ref()
            .map(|a| format!(" ({a} on this terminal)"))
            .unwrap_or_default()
    );
    let cfg = RunConfig {
        kernel: &p.kernel(hal),
        root: &p.default_root(),
        logs: &logs,
        attach: o.attach.as_deref(),
        timeout: o.timeout.map(|t| Duration::from_secs_f64(t.max(0.0))),
        reap: true,
    };
    let out = run_lab(&lab, &cfg);
    if let Some(t) = saved {
        // SAFETY: restores the termios read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
    let out = out?;
    print_summary(&lab, &out);
    if out.ok {
        Ok(())
    } else {
        Err(format!(
            "lab {}: not every machine finished with status 0",
            lab.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("labs")
    }

    #[test]
    fn shipped_labs_parse() {
        for f in ["two-hosts.toml", "router.toml"] {
            let text = fs::read_to_string(labs_dir().join(f)).unwrap();
            let lab = parse_lab(f, &text).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(
                lab.machines.iter().any(|m| m.wait),
                "{f}: something to wait for"
            );
        }
    }

    #[test]
    fn bad_labs_are_clear_errors() {
        for (bad, want) in [
            ("", "no [[machine]]"),
            ("timeout = \"x\"\n[[machine]]\nname = \"a\"", "timeout"),
            ("[[machine]]\nname = \"a b\"", "machine name"),
            ("[[machine]]\nname = \"a\"\ninterfaces = [{ switch = \"nope\" }]", "no switch named nope"),
            ("[[switch]]\nname = \"s\"\n[[machine]]\nname = \"a\"\ninterfaces = [{ switch = \"s\", ip = \"10.0.0.300/24\" }]", "not an IPv4"),
            ("[[switch]]\nname = \"s\"\n[[machine]]\nname = \"a\"\ninterfaces = [{ switch = \"s\", ip = \"10.0.0.1/40\" }]", "prefix"),
            ("[[machine]]\nname = \"a\"\ncolour = 1", "unknown key"),
            ("[[machine]]\nname = \"a\"\n[[machine]]\nname = \"a\"", "twice"),
            ("[[machine]]\nname = \"a\"\nwait = 3", "wait"),
        ] {
            let e = parse_lab("t", bad).expect_err(bad);
            assert!(e.contains(want), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // A syntax error keeps toml's picture of where it is.
        let e = parse_lab("t", "machine = [").expect_err("syntax");
        assert!(e.starts_with("TOML parse error at line 1, column 12\n"), "{e}");
        assert!(e.contains("\n    1 | machine = ["), "{e}");
    }

    #[test]
    fn kernel_command_line() {
        let lab = parse_lab(
            "t",
            "[[switch]]\nname = \"lan\"\n[[machine]]\nname = \"a\"\nmem = \"64M\"\nscript = \"echo hi\"\n\
             interfaces = [{ switch = \"lan\", ip = \"10.0.0.2/24\", gw = \"10.0.0.1\" }, { net = \"user\" }]",
        )
        .unwrap();
        let a = kernel_args(&lab.machines[0], Path::new("/r"), Path::new("/s"));
        assert_eq!(
            a,
            [
                "--mem",
                "64M",
                "--root",
                "/r",
                "--hostname",
                "a",
                "--net",
                "switch,path=/s/lan.sock,ip=10.0.0.2/24,gw=10.0.0.1",
                "--net",
                "user",
                "--",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
        );
    }

    /// Kernel and root from `cargo xtask test`, or None (the test then
    /// says so and checks nothing).
    fn built() -> Option<(PathBuf, PathBuf)> {
        built_with("RUSTUML_KERNEL_SKAS")
    }

    fn built_with(kernel_var: &str) -> Option<(PathBuf, PathBuf)> {
        let k = std::env::var_os(kernel_var)?;
        let r = std::env::var_os("RUSTUML_ROOT")?;
        Some((k.into(), r.into()))
    }

    /// The lab machinery without a guest network stack: a service machine
    /// that would run forever is stopped, a waited one's exit status is
    /// reported, switches start and stop, and no host process is left.
    #[test]
    fn lab_runs_and_stops_everything() {
        let Some((kernel, root)) = built() else {
            eprintln!("RUSTUML_KERNEL_SKAS/RUSTUML_ROOT not set (run through `cargo xtask test`): skipped");
            return;
        };
        let lab = parse_lab(
            "smoke",
            "timeout = 60\n[[switch]]\nname = \"lan\"\n\
             [[machine]]\nname = \"svc\"\nwait = false\ninterfaces = [{ switch = \"lan\", ip = \"10.9.0.1/24\" }]\n\
             script = \"echo service up; while true; do sleep 1; done\"\n\
             [[machine]]\nname = \"job\"\ninterfaces = [{ switch = \"lan\", ip = \"10.9.0.2/24\" }]\n\
             script = \"sleep 1; echo job done; exit 3\"\n",
        )
        .unwrap();
        let logs = std::env::temp_dir().join(format!("rustuml-labtest-{}", std::process::id()));
        let cfg = RunConfig {
            kernel: &kernel,
            root: &root,
            logs: &logs,
            attach: None,
            timeout: None,
            reap: false,
        };
        let out = run_lab(&lab, &cfg).unwrap();
        assert_eq!(out.machines[0].1, End::Stopped, "{out:?}");
        assert_eq!(out.machines[1].1, End::Exited(3), "{out:?}");
        assert!(!out.ok);
        assert_eq!(out.switches.len(), 1);
        let svc = fs::read_to_string(logs.join("svc.log")).unwrap();
        let job = fs::read_to_string(logs.join("job.log")).unwrap();
        assert!(svc.contains("service up"), "{svc}");
        assert!(job.contains("job done"), "{job}");
        assert!(out.elapsed < Duration::from_secs(30));
        // Nothing left of the kernels or of their stubs.
        assert!(out.pids.len() == 2 && out.pids.iter().all(|&p| proc_start(p).is_none()));
        assert!(
            out.processes > 2,
            "the service's kernel had stubs when stopped: {out:?}"
        );
        let left = &out.leftovers;
        assert!(left.is_empty(), "left behind: {left:?}");
        let _ = fs::remove_dir_all(&logs);
    }

    /// Runs a shipped lab end to end; needs the guest TCP/IP stack.
    fn shipped_lab(file: &str, expect: &str, kernel_var: &str) {
        let Some((kernel, root)) = built_with(kernel_var) else {
            eprintln!(
                "{kernel_var}/RUSTUML_ROOT not set (run through `cargo xtask test`): skipped"
            );
            return;
        };
        let text = fs::read_to_string(labs_dir().join(file)).unwrap();
        let lab = parse_lab(file, &text).unwrap();
        let logs = std::env::temp_dir().join(format!(
            "rustuml-labtest-{}-{kernel_var}-{file}",
            std::process::id()
        ));
        let cfg = RunConfig {
            kernel: &kernel,
            root: &root,
            logs: &logs,
            attach: None,
            timeout: Some(Duration::from_secs(60)),
            reap: false,
        };
        let out = run_lab(&lab, &cfg).unwrap();
        let mut all = String::new();
        for (n, _, l) in &out.machines {
            all.push_str(&format!(
                "--- {n}\n{}\n",
                l.as_ref()
                    .map(|l| fs::read_to_string(l).unwrap_or_default())
                    .unwrap_or_default()
            ));
        }
        assert!(out.ok, "{out:?}\n{all}");
        assert!(all.contains(expect), "{all}");
        let _ = fs::remove_dir_all(&logs);
    }

    #[test]
    fn two_hosts_lab() {
        shipped_lab("two-hosts.toml", "hello from server", "RUSTUML_KERNEL_SKAS");
    }

    /// The same lab with every guest under tt (the file says skas; the
    /// kernel binary decides).
    #[test]
    fn two_hosts_lab_tt() {
        shipped_lab("two-hosts.toml", "hello from server", "RUSTUML_KERNEL_TT");
    }

    /// Two subnets joined by a guest router with `ip_forward` on.
    #[test]
    fn router_lab() {
        shipped_lab("router.toml", "hello from subnet B", "RUSTUML_KERNEL_SKAS");
    }
}
