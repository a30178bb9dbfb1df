//! Running a lab: the switches, one kernel per machine, and the clean-up that
//! leaves no process behind.

use super::*;

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
pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub(super) extern "C" fn on_interrupt(_: libc::c_int) {
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

pub(super) struct Running {
    name: String,
    child: Option<Child>,
    end: Option<End>,
    wait: bool,
    log: Option<PathBuf>,
}

pub(super) fn sock_dir() -> io::Result<PathBuf> {
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
pub(super) fn kernel_args(m: &Machine, root: &Path, socks: &Path) -> Vec<String> {
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

pub(super) fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
    unsafe { libc::kill(child.id() as i32, sig) };
}

pub(super) fn end_of(st: std::process::ExitStatus) -> End {
    match (st.code(), st.signal()) {
        (Some(c), _) => End::Exited(c),
        (None, Some(s)) => End::Signaled(s),
        _ => End::Exited(-1),
    }
}

/// The parent pid and start time of `pid`, from /proc/PID/stat.
pub(super) fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

pub(super) fn proc_start(pid: u32) -> Option<u64> {
    // A zombie is dead already: it only waits for its parent.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat.rsplit_once(')')?.1.split_whitespace().next() == Some("Z") {
        return None;
    }
    proc_stat(pid).map(|p| p.1)
}

/// `roots` and all their descendants, as (pid, start time).
pub(super) fn descendants(roots: &[u32]) -> Vec<(u32, u64)> {
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
pub(super) fn reap_leftovers(own: &[u32]) {
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
pub(super) fn tail(path: &Path, n: usize) -> String {
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
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
