//! `rustuml-oci`: an OCI runtime with runc's command line, so that container
//! engines (podman, containerd, CRI-O) run each container as a rustuml
//! guest: its own kernel, the container's root mounted over `/`.
//!
//! The container's process, as the engine sees it, is the kernel process:
//! `create` forks a process that waits on a fifo in the state directory
//! and, when `start` opens it, execs `kernel-skas` (or `kernel-tt`) with
//! the bundle's settings, keeping its pid. So the pid the engine waits for
//! exits with the guest init's status (its code, or 128 + the signal that
//! killed it), and `kill` reaches the guest's init through the guest's
//! control socket. See docs/oci.md.

mod config;
mod host;
mod state;

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use state::{Record, Status, Store};

#[derive(Parser)]
#[command(
    name = "rustuml-oci",
    version,
    about = "An OCI runtime (runc's command line) that runs containers as rustuml guests"
)]
struct Cli {
    /// State directory (default /run/rustuml-oci for root, else
    /// $XDG_RUNTIME_DIR/rustuml-oci).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Append errors (and notes) to FILE, as the engine asks.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// `text` or `json` (one object per line, as runc writes).
    #[arg(
        long = "log-format",
        global = true,
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: String,
    /// Accepted for engines that pass it; rustuml guests have no cgroups.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// More notes in the log.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the container's host pid to FILE.
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A Unix socket to send the pty master to when process.terminal is set.
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Descriptors beyond stdio passed on to the container (accepted; the guest gets none).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc compatibility (no effect).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility (no effect).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write an example config.json in the bundle directory.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Accepted (the example needs no privileges either way).
        #[arg(long)]
        rootless: bool,
    },
    /// Set up a container; its process waits for `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// The container's state as the runtime spec's JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        /// To every process of the guest.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped (or, with --force, any) container.
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// create + start, then wait for the container and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started instead of waiting.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the state after the container exits.
        #[arg(long)]
        keep: bool,
    },
    /// Pause all of the guest's code (the kernel sleeps; `resume` goes on).
    Pause { id: String },
    /// Go on after `pause`.
    Resume { id: String },
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// The container's processes (table: the guest's ps; json: host pids).
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
        /// Accepted (ps arguments are not passed on).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// The containers in the state directory.
    #[command(alias = "ls")]
    List {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

#[derive(Args)]
struct ExecArgs {
    /// A JSON file with the process (the `process` object of config.json).
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    #[arg(long, short = 'd')]
    detach: bool,
    #[arg(long, short = 't')]
    tty: bool,
    #[arg(long)]
    cwd: Option<String>,
    #[arg(long, short = 'e')]
    env: Vec<String>,
    #[arg(long, short = 'u')]
    user: Option<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Errors go to stderr and, when the engine gave --log, to its log.
struct Log {
    file: Option<PathBuf>,
    json: bool,
}

impl Log {
    fn write(&self, level: &str, msg: &str) {
        let Some(p) = &self.file else { return };
        let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        else {
            return;
        };
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": state::now_rfc3339() })
                .to_string()
        } else {
            format!("{} {level}: {msg}", state::now_rfc3339())
        };
        let _ = writeln!(f, "{line}");
    }
}

fn main() {
    let cli = Cli::parse();
    let log = Log {
        file: cli.log.clone(),
        json: cli.log_format == "json",
    };
    let _ = cli.systemd_cgroup;
    let store = Store {
        root: cli.root.clone().unwrap_or_else(default_root),
    };
    match run(&cli, &store, &log) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log.write("error", &e);
            eprintln!("rustuml-oci: {e}");
            std::process::exit(1);
        }
    }
}

fn default_root() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        return PathBuf::from("/run/rustuml-oci");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        Some(x) => PathBuf::from(x).join("rustuml-oci"),
        // SAFETY: as above.
        None => PathBuf::from(format!("/tmp/rustuml-oci-{}", unsafe { libc::getuid() })),
    }
}

fn run(cli: &Cli, store: &Store, log: &Log) -> Result<i32, String> {
    match &cli.cmd {
        Cmd::Spec { bundle, .. } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(format!("{}: already exists", path.display()));
            }
            let text =
                serde_json::to_string_pretty(&config::example()).map_err(|e| e.to_string())?;
            std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(0)
        }
        Cmd::Create(a) => {
            create(store, log, a, false, cli.debug)?;
            Ok(0)
        }
        Cmd::Start { id } => start(store, id).map(|_| 0),
        Cmd::State { id } => {
            let r = store.load(id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&state::state_json(&r)).map_err(|e| e.to_string())?
            );
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = host::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            kill(store, id, sig, *all).map(|_| 0)
        }
        Cmd::Delete { force, id } => delete(store, id, *force).map(|_| 0),
        Cmd::Run {
            create: a,
            detach,
            keep,
        } => {
            let pid = create(store, log, a, !*detach, cli.debug)?;
            start(store, &a.id)?;
            if *detach {
                return Ok(0);
            }
            let code = wait_child(pid);
            if !*keep {
                let _ = delete(store, &a.id, true);
            }
            Ok(code)
        }
        Cmd::Pause { id } => pause(store, id, true).map(|_| 0),
        Cmd::Resume { id } => pause(store, id, false).map(|_| 0),
        Cmd::Exec(a) => exec(store, a),
        Cmd::Ps { format, id, .. } => ps(store, id, format),
        Cmd::List { format, quiet } => list(store, format, *quiet),
    }
}

/// A short control name for the guest: the id's first characters and a
/// hash of all of it (ids are often 64 hex digits; the socket path must
/// stay under 108 bytes).
fn guest_name(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let head: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("oci-{head}-{:08x}", h as u32)
}

fn control_socket(r: &Record) -> PathBuf {
    r.run_dir.join("rustuml").join(&r.name).join("control")
}

/// The kernel binary: `RUSTUML_KERNEL_SKAS`/`_TT` when set (the tests),
/// else beside this binary, as `cargo xtask build` puts them.
fn kernel_binary(b: config::Backend) -> Result<PathBuf, String> {
    let var = match b {
        config::Backend::Skas => "RUSTUML_KERNEL_SKAS",
        config::Backend::Tt => "RUSTUML_KERNEL_TT",
    };
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("where is rustuml-oci: {e}"))?;
    let p = exe.parent().unwrap_or(Path::new("/")).join(b.binary());
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found beside rustuml-oci ({}); build it with `cargo xtask build --hal {}`",
            b.binary(),
            p.display(),
            if b == config::Backend::Tt {
                "tt"
            } else {
                "skas"
            }
        ))
    }
}

/// `create` (and the first half of `run`): check the bundle, make the
/// state directory, fork the container's process. Returns its pid. On
/// any error nothing is left in the state directory.
fn create(
    store: &Store,
    log: &Log,
    a: &CreateArgs,
    foreground: bool,
    debug: bool,
) -> Result<i32, String> {
    state::check_id(&a.id)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&store.root)
        .map_err(|e| format!("--root {}: {e}", store.root.display()))?;
    let dir = store.dir(&a.id);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(format!("container with id exists: {}", a.id))
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let r = create_in(store, log, a, foreground, debug, &dir);
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

fn create_in(
    store: &Store,
    log: &Log,
    a: &CreateArgs,
    foreground: bool,
    debug: bool,
    dir: &Path,
) -> Result<i32, String> {
    let bundle = std::fs::canonicalize(&a.bundle)
        .map_err(|e| format!("--bundle {}: {e}", a.bundle.display()))?;
    let spec = config::load(&bundle)?;
    let empty = dir.join("empty-root");
    std::fs::create_dir(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
    let name = guest_name(&a.id);
    let plan = config::plan(&spec, &bundle, &empty, &name, &dir.join("kernel.log"))?;
    for n in &plan.notes {
        log.write("warning", n);
        if debug {
            eprintln!("rustuml-oci: note: {n}");
        }
    }
    let kernel = kernel_binary(plan.backend)?;
    // The control socket must fit in sun_path: under the state directory
    // when it does, else under /tmp.
    let mut run_dir = dir.join("run");
    if run_dir
        .join("rustuml")
        .join(&name)
        .join("control")
        .as_os_str()
        .len()
        > 100
    {
        run_dir = std::env::temp_dir().join(format!("rustuml-oci-{name}"));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run_dir)
        .map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let fifo = dir.join("exec.fifo");
    let cfifo = cstr(&fifo)?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkfifo(cfifo.as_ptr(), 0o600) } != 0 {
        return Err(format!(
            "{}: mkfifo: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        ));
    }
    let console: Option<(OwnedFd, OwnedFd)> = match (plan.terminal, &a.console_socket) {
        (true, Some(sock)) => {
            let (m, s) = host::openpty()?;
            host::send_console(sock, m.as_raw_fd())?;
            Some((m, s))
        }
        (true, None) if !foreground => {
            return Err("process.terminal is set but no --console-socket was given".into())
        }
        _ => None,
    };
    let netns = match &plan.netns {
        Some(p) => Some(
            std::fs::File::open(p)
                .map_err(|e| format!("network namespace {}: {e}", p.display()))?,
        ),
        None => None,
    };
    // Everything the child needs, made before the fork.
    let mut argv: Vec<CString> = vec![cstr(&kernel)?];
    for s in &plan.kernel_args {
        argv.push(
            CString::new(s.as_str()).map_err(|_| "an argument holds a NUL byte".to_string())?,
        );
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envs: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != "XDG_RUNTIME_DIR")
        .filter_map(|(k, v)| {
            CString::new(format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).ok()
        })
        .collect();
    envs.push(
        CString::new(format!("XDG_RUNTIME_DIR={}", run_dir.display()))
            .map_err(|_| "bad run directory".to_string())?,
    );
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let keep_fds = 3 + a.preserve_fds;

    // SAFETY: single-threaded here; the child only makes system calls on what was prepared above, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        child(
            console.as_ref().map(|(_, s)| s.as_raw_fd()),
            netns.as_ref().map(|f| f.as_raw_fd()),
            &cfifo,
            keep_fds,
            &argv_ptrs,
            &env_ptrs,
            !foreground || console.is_some(),
        );
    }
    drop(console);
    let pid_start = state::proc_stat(pid).map(|(s, _)| s).unwrap_or(0);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let owner = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default();
    let rec = Record {
        id: a.id.clone(),
        bundle,
        pid,
        pid_start,
        created: state::now_rfc3339(),
        started: false,
        paused: false,
        name,
        run_dir,
        backend: plan.backend.binary().into(),
        annotations: plan.annotations,
        owner,
    };
    let saved = store.save(&rec).and_then(|()| match &a.pid_file {
        // Written whole under another name and renamed, as engines read it
        // as soon as create returns.
        Some(f) => {
            let tmp = f.with_extension("rustuml-tmp");
            std::fs::write(&tmp, pid.to_string())
                .and_then(|()| std::fs::rename(&tmp, f))
                .map_err(|e| format!("--pid-file {}: {e}", f.display()))
        }
        None => Ok(()),
    });
    if let Err(e) = saved {
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(e);
    }
    Ok(pid)
}

/// The container's process between fork and exec: a session of its own,
/// the pty as its terminal, the engine's network namespace; then wait for
/// `start` and become the kernel. Never returns.
fn child(
    slave: Option<i32>,
    netns: Option<i32>,
    fifo: &CString,
    keep_fds: u32,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    new_session: bool,
) -> ! {
    let die = |what: &[u8]| -> ! {
        // SAFETY: writes of static bytes to stderr, then _exit.
        unsafe {
            libc::write(2, b"rustuml-oci: ".as_ptr().cast(), 13);
            libc::write(2, what.as_ptr().cast(), what.len());
            libc::_exit(127)
        }
    };
    // SAFETY: plain system calls on descriptors and strings made before the fork.
    unsafe {
        if new_session {
            libc::setsid();
        }
        if let Some(s) = slave {
            for fd in 0..3 {
                libc::dup2(s, fd);
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                die(b"cannot make the pty the controlling terminal\n");
            }
        }
        if let Some(ns) = netns {
            if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                die(b"cannot join the container's network namespace\n");
            }
        }
        // Nothing of the runtime's or the engine's leaks into the kernel.
        libc::syscall(libc::SYS_close_range, keep_fds, u32::MAX, 0);
        // Blocks until `start` opens the fifo.
        let f = libc::open(fifo.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if f < 0 {
            die(b"cannot open the exec fifo\n");
        }
        if libc::write(f, b"0".as_ptr().cast(), 1) != 1 {
            die(b"start was cancelled\n");
        }
        libc::close(f);
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        die(b"cannot execute the kernel binary\n");
    }
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: holds a NUL byte", p.display()))
}

/// `start`: let the created container's process go on into the kernel.
fn start(store: &Store, id: &str) -> Result<(), String> {
    let mut r = store.load(id)?;
    match state::status(&r) {
        Status::Created => {}
        Status::Running => return Err(format!("container {id} is already running")),
        s => return Err(format!("cannot start a container that is {}", s.name())),
    }
    let fifo = store.dir(id).join("exec.fifo");
    let c = cstr(&fifo)?;
    // SAFETY: a NUL-terminated path; non-blocking so a dead process cannot hang us.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "{}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        ));
    }
    let t0 = Instant::now();
    let got = loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        unsafe { libc::poll(&mut p, 1, 50) };
        let mut b = [0u8; 1];
        // SAFETY: a one-byte read into a stack buffer.
        if unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) } == 1 {
            break true;
        }
        if !state::alive(&r) || t0.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    if !got {
        return Err(format!(
            "container {id}: its process did not start (exited or stuck)"
        ));
    }
    let _ = std::fs::remove_file(&fifo);
    r.started = true;
    store.save(&r)
}

/// `kill`: before start, the waiting process itself; after, the guest's
/// init (or every guest process) through the control socket.
fn kill(store: &Store, id: &str, sig: i32, all: bool) -> Result<(), String> {
    let r = store.load(id)?;
    match state::status(&r) {
        Status::Stopped => Err(format!("container {id} is not running")),
        Status::Created => {
            // SAFETY: a signal to the pid we checked is still ours.
            if unsafe { libc::kill(r.pid, sig) } != 0 {
                return Err(format!(
                    "kill {}: {}",
                    r.pid,
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        }
        st @ (Status::Running | Status::Paused) => {
            let req = format!("kill {sig} {}", if all { "all" } else { "1" });
            match host::control_wait(&control_socket(&r), &req, Duration::from_secs(10), || {
                state::alive(&r)
            }) {
                // A paused guest acts on SIGKILL once it goes on again (as
                // a frozen cgroup is thawed for it).
                Ok(_) if st == Status::Paused && sig == libc::SIGKILL => {
                    let _ = host::control(&control_socket(&r), "go");
                    Ok(())
                }
                Ok(_) => Ok(()),
                // It ended meanwhile: the signal has nothing left to do.
                Err(_) if !state::alive(&r) => Ok(()),
                Err(e) if sig == libc::SIGKILL => {
                    // The kernel does not answer: SIGKILL on the host still ends it.
                    // SAFETY: as above.
                    unsafe { libc::kill(r.pid, libc::SIGKILL) };
                    let _ = e;
                    Ok(())
                }
                Err(e) => Err(format!("container {id}: {e}")),
            }
        }
    }
}

/// `delete`: a stopped container's state goes; a created one's waiting
/// process is killed first; a running one only with --force.
fn delete(store: &Store, id: &str, force: bool) -> Result<(), String> {
    state::check_id(id)?;
    let dir = store.dir(id);
    if !dir.is_dir() {
        // As runc: --force cleans up what may be there, and nothing is fine.
        return if force {
            Ok(())
        } else {
            Err(format!("container does not exist: {id}"))
        };
    }
    match store.load(id) {
        Ok(r) => {
            let st = state::status(&r);
            if matches!(st, Status::Running | Status::Paused) && !force {
                return Err(format!(
                    "cannot delete container {id} that is not stopped: {}",
                    st.name()
                ));
            }
            if st != Status::Stopped {
                // SAFETY: a signal to the pid we checked is still ours.
                unsafe { libc::kill(r.pid, libc::SIGKILL) };
                let t0 = Instant::now();
                while state::alive(&r) && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // A kernel killed with SIGKILL leaves its control directory.
            let _ = std::fs::remove_dir_all(r.run_dir.join("rustuml").join(&r.name));
            if !r.run_dir.starts_with(&dir) {
                let _ = std::fs::remove_dir_all(&r.run_dir);
            }
        }
        Err(e) if !force && dir.join("state.json").exists() => return Err(e),
        Err(_) => {}
    }
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Wait for `run`'s own child; its status as a shell reports it.
fn wait_child(pid: i32) -> i32 {
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    }
}

/// `pause`/`resume`: the guest's `stop`/`go` (docs/operate.md): no guest
/// code runs and the kernel sleeps on the host until resumed.
fn pause(store: &Store, id: &str, stop: bool) -> Result<(), String> {
    let mut r = store.load(id)?;
    match (state::status(&r), stop) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (s, _) => {
            return Err(format!(
                "container {id} is {}, not {}",
                s.name(),
                if stop { "running" } else { "paused" }
            ))
        }
    }
    host::control_wait(
        &control_socket(&r),
        if stop { "stop" } else { "go" },
        Duration::from_secs(10),
        || state::alive(&r),
    )
    .map_err(|e| format!("container {id}: {e}"))?;
    r.paused = stop;
    store.save(&r)
}

/// `exec`: a new process in the running guest (the control channel's
/// `exec`), its stdio carried by `exec-io` requests until it exits; our
/// status is its status. With `--detach` a child of ours does that (its
/// pid in --pid-file, as engines wait for it) and we return at once.
fn exec(store: &Store, a: &ExecArgs) -> Result<i32, String> {
    let r = store.load(&a.id)?;
    if state::status(&r) != Status::Running {
        return Err(format!("container {} is not running", a.id));
    }
    let _ = a.preserve_fds;
    let mut p: config::Process = match &a.process {
        Some(f) => {
            let text = std::fs::read(f).map_err(|e| format!("--process {}: {e}", f.display()))?;
            serde_json::from_slice(&text).map_err(|e| format!("--process {}: {e}", f.display()))?
        }
        None => {
            if a.command.is_empty() {
                return Err("exec needs a command (or --process FILE)".into());
            }
            config::Process {
                terminal: a.tty,
                user: config::User::default(),
                args: a.command.clone(),
                env: Vec::new(),
                cwd: "/".into(),
                rlimits: Vec::new(),
            }
        }
    };
    if let Some(c) = &a.cwd {
        p.cwd = c.clone();
    }
    p.env.extend(a.env.iter().cloned());
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        p.user.uid = uid
            .parse()
            .map_err(|_| format!("--user {u}: numeric UID[:GID] expected"))?;
        p.user.gid = gid
            .parse()
            .map_err(|_| format!("--user {u}: numeric UID[:GID] expected"))?;
    }
    if p.args.is_empty() {
        return Err("exec: process.args is empty".into());
    }
    if p.env.is_empty() {
        p.env
            .push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let esc = |s: &str| -> String {
        let mut o = String::new();
        for b in s.bytes() {
            if b.is_ascii_graphic() && b != b'%' {
                o.push(b as char);
            } else {
                o.push_str(&format!("%{b:02X}"));
            }
        }
        o
    };
    let mut req = format!(
        "exec cwd={} uid={} gid={}",
        esc(&p.cwd),
        p.user.uid,
        p.user.gid
    );
    for e in &p.env {
        req.push_str(&format!(" env={}", esc(e)));
    }
    for x in &p.args {
        req.push_str(&format!(" arg={}", esc(x)));
    }
    if req.len() > 4000 {
        return Err(
            "exec: the command and environment are too long for the control channel (4000 bytes)"
                .into(),
        );
    }
    // The terminal the engine asked for: our stdio become its pty.
    let console = match (p.terminal, &a.console_socket) {
        (true, Some(sock)) => {
            let (m, s) = host::openpty()?;
            host::send_console(sock, m.as_raw_fd())?;
            Some((m, s))
        }
        _ => None,
    };
    let sock = control_socket(&r);
    // Started before any fork: a program that cannot run is this
    // command's error, as with runc (engines turn "not found" into 127).
    let pid: u32 = host::control(&sock, &req)?
        .trim()
        .parse()
        .map_err(|_| "exec: bad answer from the guest".to_string())?;
    if a.detach {
        // SAFETY: single-threaded; the child goes on with plain code and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid > 0 {
            if let Some(f) = &a.pid_file {
                std::fs::write(f, pid.to_string())
                    .map_err(|e| format!("--pid-file {}: {e}", f.display()))?;
            }
            return Ok(0);
        }
        // SAFETY: a new session for the detached carrier.
        unsafe { libc::setsid() };
    } else if let Some(f) = &a.pid_file {
        std::fs::write(f, std::process::id().to_string())
            .map_err(|e| format!("--pid-file {}: {e}", f.display()))?;
    }
    if let Some((_, s)) = &console {
        // SAFETY: our stdio become the pty's slave side.
        unsafe {
            for fd in 0..3 {
                libc::dup2(s.as_raw_fd(), fd);
            }
            libc::ioctl(0, libc::TIOCSCTTY, 0);
        }
    }
    drop(console);
    let code = match carry(&sock, pid) {
        Ok(c) => c,
        Err(e) if a.detach => {
            eprintln!("rustuml-oci: {e}");
            std::process::exit(255);
        }
        Err(e) => return Err(e),
    };
    if a.detach {
        std::process::exit(code);
    }
    Ok(code)
}

/// SIGINT/SIGTERM/SIGHUP that reached `exec`: passed on to the process.
static FORWARD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    FORWARD.store(sig, std::sync::atomic::Ordering::Relaxed);
}

/// Move bytes until the exec'd process `pid` has exited: stdin to it,
/// its stdout and stderr to ours. Returns its status.
fn carry(sock: &Path, pid: u32) -> Result<i32, String> {
    // SAFETY: F_GETFL on fd 0.
    let fl = unsafe { libc::fcntl(0, libc::F_GETFL) };
    let r = carry_io(sock, pid, fl);
    if fl >= 0 {
        // SAFETY: its flags back as they were (a terminal shared with a shell).
        unsafe { libc::fcntl(0, libc::F_SETFL, fl) };
    }
    r
}

fn carry_io(sock: &Path, pid: u32, fl: i32) -> Result<i32, String> {
    use std::io::Read;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, note_signal as *const () as usize) };
    }
    if fl >= 0 {
        // SAFETY: fd 0 non-blocking, so that polling it never waits.
        unsafe { libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK) };
    }
    let mut stdin = std::mem::ManuallyDrop::new(unsafe_stdin());
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut eof_sent = false;
    let mut idle = Duration::from_millis(1);
    loop {
        let sig = FORWARD.swap(0, std::sync::atomic::Ordering::Relaxed);
        if sig != 0 {
            let _ = host::control(sock, &format!("kill {sig} {pid}"));
        }
        if stdin_open && pending.len() < 64 * 1024 {
            let mut buf = [0u8; 16 * 1024];
            match stdin.read(&mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => stdin_open = false,
            }
        }
        let chunk_len = pending.len().min(1500);
        let mut q = format!("exec-io {pid} ");
        if chunk_len == 0 {
            q.push('-');
        } else {
            for b in &pending[..chunk_len] {
                q.push_str(&format!("{b:02x}"));
            }
        }
        let send_eof = !stdin_open && pending.len() == chunk_len && !eof_sent;
        if send_eof {
            q.push_str(" eof");
        }
        let ans = host::control(sock, &q)?;
        let mut moved = false;
        let mut exited = None;
        for line in ans.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "in" => {
                    let n: usize = v.parse().unwrap_or(0).min(chunk_len);
                    if n == chunk_len && send_eof {
                        eof_sent = true;
                    }
                    moved |= n > 0;
                    pending.drain(..n);
                }
                "out" | "err" if !v.is_empty() => {
                    let data: Vec<u8> = (0..v.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok())
                        .collect();
                    let fd = if k == "out" { 1 } else { 2 };
                    write_all_fd(fd, &data);
                    moved = true;
                }
                "status" => {
                    if let Some(c) = v.strip_prefix("exited ") {
                        exited = c.parse::<i32>().ok();
                    }
                }
                _ => {}
            }
        }
        if let Some(c) = exited {
            return Ok(c);
        }
        // Poll fast while bytes move, back off to 50 ms while idle.
        idle = if moved {
            Duration::from_millis(1)
        } else {
            (idle * 2).min(Duration::from_millis(50))
        };
        std::thread::sleep(idle);
    }
}

fn unsafe_stdin() -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 stays open for the process's life; the File is never dropped (ManuallyDrop).
    unsafe { std::fs::File::from_raw_fd(0) }
}

/// Write all of `data` to `fd` (which may be non-blocking: wait for it).
fn write_all_fd(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: a write from a live slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
        {
            std::thread::sleep(Duration::from_millis(1));
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
        } else {
            return;
        }
    }
}

fn ps(store: &Store, id: &str, format: &str) -> Result<i32, String> {
    let r = store.load(id)?;
    if !matches!(state::status(&r), Status::Running | Status::Paused) {
        return Err(format!("container {id} is not running"));
    }
    match format {
        "json" => {
            // The host processes of the container: the kernel and its
            // descendants (the guest's address-space stubs).
            let mut pids = vec![r.pid];
            let mut i = 0;
            let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| {
                    let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    let ppid = s[s.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()?;
                    Some((p, ppid))
                })
                .collect();
            while i < pids.len() {
                let parent = pids[i];
                pids.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
                i += 1;
            }
            println!(
                "{}",
                serde_json::to_string(&pids).map_err(|e| e.to_string())?
            );
        }
        "table" => {
            let out =
                host::control_wait(&control_socket(&r), "ps", Duration::from_secs(10), || {
                    state::alive(&r)
                })?;
            print!("{out}");
        }
        f => return Err(format!("--format {f}: expected table or json")),
    }
    Ok(0)
}

fn list(store: &Store, format: &str, quiet: bool) -> Result<i32, String> {
    let recs: Vec<Record> = store
        .ids()
        .iter()
        .filter_map(|id| store.load(id).ok())
        .collect();
    if quiet {
        for r in &recs {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = recs.iter().map(state::state_json).collect();
            println!("{}", serde_json::to_string(&v).map_err(|e| e.to_string())?);
        }
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &recs {
                let st = state::status(&r);
                let pid = if st == Status::Stopped { 0 } else { r.pid };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                    r.id,
                    pid,
                    st.name(),
                    r.bundle.display(),
                    r.created,
                    r.owner
                );
            }
        }
        f => return Err(format!("--format {f}: expected table or json")),
    }
    Ok(0)
}
