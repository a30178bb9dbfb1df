//! The command line and boot glue shared by `kernel-skas` and `kernel-tt`:
//! each binary's `main` is one call to [`main`] with its [`Backend`] and HAL.

use crate::cli_args::{Cli, DoCli};
pub use crate::cli_args::parse_size;
use clap::{CommandFactory, FromArgMatches};
use std::path::PathBuf;
use std::process::exit;

/// `--trap MODE` of a backend: record the choice, or say why MODE is wrong.
pub type SetTrap = fn(&str) -> Result<(), String>;

/// What a kernel binary tells the shared command line about its backend.
pub struct Backend {
    /// The program name (`kernel-skas`), in help and in every message.
    pub name: &'static str,
    /// The help text's description.
    pub about: &'static str,
    /// The confinement profile of the kernel process.
    pub sandbox: crate::sandbox::Backend,
    /// `--trap MODE`: choose the trap mechanism of the HAL made next;
    /// `None` where the backend has no choice.
    pub set_trap: Option<SetTrap>,
    /// Called with the kernel's pid just before it confines itself: what
    /// must exist before (skas: the stub zygote). False if it could not be
    /// made, and the kernel must then stay unconfined.
    pub prepare_confinement: fn(i32) -> bool,
}

/// CMD as a host path: with a `/`, relative to `cwd`; else the first
/// executable file of that name on `$PATH`.
fn find_command(cmd: &str, cwd: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if cmd.contains('/') {
        return Some(cwd.join(cmd));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':').filter(|d| !d.is_empty()).map(|d| std::path::Path::new(d).join(cmd)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Check and lock `do --overlay DIR`: a writable directory no other run
/// uses. The lock (an exclusive `flock` on DIR itself) lasts as long as the
/// returned descriptor.
fn open_overlay_dir(dir: &std::path::Path) -> Result<(std::fs::File, drivers::hostfs::HostExport), String> {
    use std::os::fd::AsRawFd;
    let md = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    if !md.is_dir() {
        return Err("not a directory".into());
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| "bad path".to_string())?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!("not writable: {}", std::io::Error::last_os_error()));
    }
    let f = std::fs::File::open(dir).map_err(|e| e.to_string())?;
    // SAFETY: a plain flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err("in use by another run (locked)".into());
    }
    let x = drivers::hostfs::HostExport::open(dir, true).map_err(|e| e.to_string())?;
    Ok((f, x))
}

/// `do`: see [`DoCli`].
fn run_do<H: hal::Hal, E: std::fmt::Display>(backend: &Backend, args: Vec<std::ffi::OsString>, make: impl FnOnce(u64) -> Result<H, E>) -> ! {
    let name = backend.name;
    let fail = |msg: std::fmt::Arguments| -> ! {
        eprintln!("{name} do: {msg}");
        exit(2)
    };
    let cmd = DoCli::command().name(name).bin_name(format!("{name} do"));
    let cli = match DoCli::from_arg_matches(&cmd.get_matches_from(args)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let net_specs: Vec<NetSpec> = cli.net.iter().map(|s| parse_net(s).unwrap_or_else(|e| fail(format_args!("{e}")))).collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let Some(init) = find_command(&cli.cmd[0], &cwd) else { fail(format_args!("{}: command not found", cli.cmd[0])) };
    let root = match drivers::hostfs::HostExport::open(std::path::Path::new("/"), false) {
        Ok(x) => x,
        Err(e) => fail(format_args!("cannot open the host's /: {e}")),
    };
    // Held until exit: the lock on DIR.
    let mut _lock = None;
    let upper: Option<Box<dyn hal::HostDir>> = match &cli.overlay {
        None => None,
        Some(dir) => {
            let (lock, x) = open_overlay_dir(dir).unwrap_or_else(|e| fail(format_args!("--overlay {}: {e}", dir.display())));
            _lock = Some(lock);
            Some(Box::new(x))
        }
    };
    if let Some(t) = &cli.trap {
        set_trap(backend, t).unwrap_or_else(|e| fail(format_args!("{e}")));
    }
    // SAFETY: plain id queries.
    let (uid, gid) = if cli.root_user { (0, 0) } else { unsafe { (libc::getuid(), libc::getgid()) } };
    let config = kernel_core::BootConfig {
        init: init.to_string_lossy().into_owned(),
        args: cli.cmd.clone(),
        env: std::env::vars_os().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect(),
        initramfs: kernel_core::fs::cpio::build(&[]),
        uname_release: "6.1.0-rustuml".into(),
        hostname: "rustuml".into(),
        trace_syscalls: cli.trace_syscalls,
        cwd: cwd.to_string_lossy().into_owned(),
        uid,
        gid,
    };
    crate::host::set_log(cli.trace_syscalls, None);
    let nets = open_nets(&net_specs).unwrap_or_else(|e| fail(format_args!("{e}")));
    let mut hal = match make(cli.mem) {
        Ok(h) => h,
        Err(e) => fail(format_args!("cannot set up the host side ({} bytes of guest memory): {e}", cli.mem)),
    };
    if cli.no_sandbox {
        eprintln!("{name} do: warning: --no-sandbox: the kernel process is not confined; a compromised kernel has all of your rights");
    } else {
        let exports = 1 + upper.is_some() as usize;
        confine(backend, cli.mem, exports).unwrap_or_else(|e| fail(format_args!("cannot confine the kernel process: {e}")));
    }
    let devices = kernel_core::kernel::Devices { overlays: vec![("/".into(), Box::new(root))], overlay_upper: upper, nets, ..Default::default() };
    let status = match kernel_core::kernel::boot_with(&mut hal, config, devices) {
        Ok(s) => s,
        Err(e) => fail(format_args!("{e}")),
    };
    drop(hal);
    power_off(status)
}

/// Exit with init's status. A status of 130 is a shell whose job ^C killed:
/// on a terminal, end the line the echoed `^C` is on, as the host's shell
/// does for a program that dies of SIGINT (it does not for an exit status,
/// so its prompt would land after the `^C`).
fn power_off(status: i32) -> ! {
    // SAFETY: isatty and write of a static byte on stdout.
    unsafe {
        if status == 128 + libc::SIGINT && libc::isatty(1) == 1 {
            libc::write(1, b"\n".as_ptr().cast(), 1);
        }
    }
    exit(status)
}

/// `--trap`: only the skas backend has a choice of trap mechanism.
fn set_trap(backend: &Backend, mode: &str) -> Result<(), String> {
    match backend.set_trap {
        Some(set) => set(mode),
        None => Err(format!("--trap {mode}: only kernel-skas has a choice of trap mechanism ({} always uses ptrace)", backend.name)),
    }
}

/// A random value in the kernel's own memory, set at boot and checked at
/// shutdown: the target of the isolation attacks (read and overwrite
/// kernel memory). Only `--debug-reveal-canary` tells anyone where it is.
static CANARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom(v.as_mut_ptr().cast(), 8, 0) };
    let r = u64::from_ne_bytes(v);
    // Never 0, so an unset or zeroed canary is noticed too.
    if n == 8 && r != 0 { r } else { 0x5eed_c0de_0bad_f00d ^ std::process::id() as u64 }
}

/// The kernel's own shared mapping of the guest physical-memory memfd
/// (start, length), from /proc/self/maps; the largest one wins.
fn phys_mapping() -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter(|l| l.contains("memfd:rustuml-phys"))
        .filter_map(|l| {
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            let (s, e) = (u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?);
            Some((s, e.checked_sub(s)?))
        })
        .max_by_key(|&(_, len)| len)
}

/// The default root: `rootfs/default` in the cargo target directory that
/// holds this binary (`<target>/release/<kernel>`), if it is there.
fn default_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("rootfs").join("default");
    dir.is_dir().then_some(dir)
}

/// One `--net` specification, checked but not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetSpec {
    /// `user[,OPTIONS]`: the user-mode NAT; the options go to its parser whole.
    User(String),
    /// `switch,path=SOCK,...`: a port on a virtual switch.
    Switch { path: PathBuf, mac: Option<[u8; 6]>, ipv4: Option<([u8; 4], u8)>, gateway: Option<[u8; 4]> },
    /// `tap,ifname=NAME,...`: a host TAP device.
    Tap { ifname: String, mac: Option<[u8; 6]>, ipv4: Option<([u8; 4], u8)>, gateway: Option<[u8; 4]> },
}

fn parse_ipv4(s: &str) -> Result<[u8; 4], String> {
    s.parse::<std::net::Ipv4Addr>().map(|a| a.octets()).map_err(|_| format!("'{s}' is not an IPv4 address"))
}

/// `A.B.C.D/N` (N from 0 to 32; without /N, 24).
fn parse_cidr(s: &str) -> Result<([u8; 4], u8), String> {
    let (a, n) = s.split_once('/').unwrap_or((s, "24"));
    let n: u8 = match n.parse() {
        Ok(n) if n <= 32 => n,
        _ => return Err(format!("'{s}': the prefix length must be 0 to 32")),
    };
    Ok((parse_ipv4(a)?, n))
}

/// Parse one `--net` value (see [`NetSpec`]); the error is one line.
pub fn parse_net(spec: &str) -> Result<NetSpec, String> {
    let mut items = spec.split(',');
    let kind = items.next().unwrap_or("").trim();
    if kind == "user" {
        // Checked now, so that a typo fails before anything starts.
        drivers::net::nat::NatConfig::parse(spec).map_err(|e| format!("--net {spec}: {e}"))?;
        return Ok(NetSpec::User(spec.to_string()));
    }
    if kind != "switch" && kind != "tap" {
        return Err(format!("--net {spec}: the kind must be user, switch or tap"));
    }
    let (mut path, mut ifname, mut mac, mut ipv4, mut gateway) = (None, None, None, None, None);
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("--net {spec}: `{item}` needs a value (KEY=VALUE)"));
        };
        let e = |m: String| format!("--net {spec}: {m}");
        match (kind, k) {
            ("switch", "path") if !v.is_empty() => path = Some(PathBuf::from(v)),
            ("tap", "ifname") if !v.is_empty() => ifname = Some(v.to_string()),
            (_, "mac") => mac = Some(drivers::net::switch::parse_mac(v).map_err(e)?),
            (_, "ip") => ipv4 = Some(parse_cidr(v).map_err(e)?),
            (_, "gw") => gateway = Some(parse_ipv4(v).map_err(e)?),
            _ => return Err(format!("--net {spec}: unknown or empty option `{item}`")),
        }
    }
    if let (Some((a, n)), Some(g)) = (ipv4, gateway) {
        let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
        if u32::from_be_bytes(a) & mask != u32::from_be_bytes(g) & mask {
            return Err(format!("--net {spec}: the gateway is not on the interface's subnet"));
        }
    }
    if gateway.is_some() && ipv4.is_none() {
        return Err(format!("--net {spec}: gw= needs ip="));
    }
    match kind {
        "switch" => match path {
            Some(path) => Ok(NetSpec::Switch { path, mac, ipv4, gateway }),
            None => Err(format!("--net {spec}: a switch needs path=SOCK")),
        },
        _ => match ifname {
            Some(ifname) => Ok(NetSpec::Tap { ifname, mac, ipv4, gateway }),
            None => Err(format!("--net {spec}: a tap needs ifname=NAME")),
        },
    }
}

/// A host link whose readiness descriptor the backend watches (see
/// `host::watch_net_fd`) while the guest kernel holds the link.
struct Watched {
    // Declared first so that it is dropped first: polling stops before the
    // link's descriptor closes.
    _watch: crate::host::NetWatch,
    link: Box<dyn drivers::net::HostLink>,
}

impl Watched {
    fn new(link: Box<dyn drivers::net::HostLink>) -> Watched {
        let _watch = crate::host::watch_net_fd(link.readiness_fd());
        Watched { link, _watch }
    }
}

impl hal::NetDevice for Watched {
    fn mac(&self) -> [u8; 6] {
        self.link.mac()
    }
    fn max_frame(&self) -> usize {
        self.link.max_frame()
    }
    fn send(&mut self, frame: &[u8]) {
        self.link.send(frame)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.link.recv(buf)
    }
}

/// Open the links of `specs` as eth0, eth1, ...
fn open_nets(specs: &[NetSpec]) -> Result<Vec<kernel_core::NetAttach>, String> {
    let mut nets = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (link, ipv4, gateway): (Box<dyn drivers::net::HostLink>, _, _) = match spec {
            NetSpec::User(opts) => {
                use drivers::net::nat::{GATEWAY_IP, GUEST_IP, PREFIX_LEN};
                (open_user(opts)?, Some((GUEST_IP.octets(), PREFIX_LEN)), Some(GATEWAY_IP.octets()))
            }
            NetSpec::Switch { path, mac, ipv4, gateway } => {
                let mac = mac.unwrap_or_else(drivers::net::switch::random_mac);
                let l = drivers::net::switch::SwitchLink::connect(path, mac).map_err(|e| format!("--net switch: {e}"))?;
                (Box::new(l), *ipv4, *gateway)
            }
            NetSpec::Tap { ifname, mac, ipv4, gateway } => {
                let mac = mac.unwrap_or_else(drivers::net::switch::random_mac);
                let l = drivers::net::tap::TapLink::open(ifname, mac).map_err(|e| format!("--net tap: {e}"))?;
                (Box::new(l), *ipv4, *gateway)
            }
        };
        nets.push(kernel_core::NetAttach { name: format!("eth{i}"), device: Box::new(Watched::new(link)), ipv4, gateway });
    }
    Ok(nets)
}

/// The user-mode NAT for `--net user,...`.
fn open_user(opts: &str) -> Result<Box<dyn drivers::net::HostLink>, String> {
    let cfg = drivers::net::nat::NatConfig::parse(opts).map_err(|e| format!("--net {opts}: {e}"))?;
    // The host sockets of guest flows come from a broker process, so that
    // the kernel itself can live in an empty network namespace.
    let broker = crate::nat_broker::spawn(opts).map_err(|e| format!("--net {opts}: cannot start the NAT's socket broker: {e}"))?;
    let nat = drivers::net::nat::UserNat::with_broker(cfg, broker).map_err(|e| format!("--net {opts}: {e}"))?;
    Ok(Box::new(nat))
}

/// `--switch PATH`: run a switch in the foreground until SIGINT or SIGTERM.
fn run_switch(name: &str, path: &std::path::Path) -> ! {
    static STOP_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
    extern "C" fn on_signal(_: libc::c_int) {
        drivers::net::switch::stop_fd(STOP_FD.load(std::sync::atomic::Ordering::SeqCst));
    }
    let sw = match drivers::net::switch::Switch::bind(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: --switch {}: {e}", path.display());
            exit(2)
        }
    };
    let stopper = sw.stopper();
    STOP_FD.store(stopper.raw_fd(), std::sync::atomic::Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only does one write(2) to an eventfd, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    eprintln!("{name}: switch at {} (stop with Ctrl-C)", path.display());
    match sw.run() {
        Ok(s) => {
            eprintln!(
                "{name}: switch stopped: {} frames in, {} unicast, {} flooded, {} malformed, {} oversize, {} dropped on full queues",
                s.frames_in, s.unicast, s.flooded, s.malformed, s.oversize, s.queue_full
            );
            exit(0)
        }
        Err(e) => {
            eprintln!("{name}: switch: {e}");
            exit(1)
        }
    }
}

/// Entries and bytes up to which `--root DIR` is packed rather than served
/// live (the default root: about 800 files, 48 MiB).
const PACK_MAX_ENTRIES: usize = 5_000;
const PACK_MAX_BYTES: u64 = 256 << 20;

/// Is the tree at `dir` small enough to pack? A walk that stops at the
/// first of [`PACK_MAX_ENTRIES`] entries or [`PACK_MAX_BYTES`]; a tree with
/// unreadable directories is served live (packing could not read it).
fn is_small_tree(dir: &std::path::Path) -> bool {
    let (mut entries, mut bytes) = (0usize, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { return false };
        for e in rd.flatten() {
            entries += 1;
            let Ok(m) = e.path().symlink_metadata() else { return false };
            bytes += m.len();
            if entries > PACK_MAX_ENTRIES || bytes > PACK_MAX_BYTES {
                return false;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    true
}

/// Run a kernel binary: parse the command line (program name and help
/// text `about`), pack the root, create the HAL with `make(mem_bytes)`, boot
/// init and exit with its status. Start-up errors print one line,
/// `NAME: ...`, and exit with status 2.
pub fn main<H: hal::Hal, E: std::fmt::Display>(backend: &Backend, make: impl FnOnce(u64) -> Result<H, E>) -> ! {
    let (name, about) = (backend.name, backend.about);
    let fail = |msg: std::fmt::Arguments| -> ! {
        eprintln!("{name}: {msg}");
        exit(2)
    };
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == crate::nat_broker::ARG) {
        crate::nat_broker::main(name, &argv.get(2).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default());
    }
    if argv.get(1).is_some_and(|a| a == "do") {
        let mut rest = vec![argv[0].clone()];
        rest.extend(argv[2..].iter().cloned());
        run_do(backend, rest, make);
    }
    let cmd = Cli::command().name(name).bin_name(name).about(about).after_help(format!(
        "Subcommand: `{name} do [--mem SIZE] [--net SPEC] [--root-user] [--] CMD ARGS...` runs CMD over the \
         host's own root, read-only, with its writes kept in guest memory (`{name} do --help`).\n\n\
         UML's boot words are accepted before INIT: mem=SIZE (--mem), ubdN=FILE[,BACKING] (--ubd N=...), \
         ethN=SPEC (--net, in the order of N), root=/dev/ubdX (--root-dev), init=PATH (INIT), umid=NAME (--name)."
    ));
    let argv = crate::cli_args::translate(argv, &cmd).unwrap_or_else(|e| fail(format_args!("{e}")));
    let cli = match Cli::from_arg_matches(&cmd.get_matches_from(argv)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Some(path) = &cli.switch {
        run_switch(name, path);
    }
    let net_specs: Vec<NetSpec> = cli.net.iter().map(|s| parse_net(s).unwrap_or_else(|e| fail(format_args!("{e}")))).collect();
    if let Some(n) = &cli.name {
        // Before the event hub exists (it serves the socket) and before
        // confinement (nothing is opened by path after it).
        let sock = crate::control::create(n).unwrap_or_else(|e| fail(format_args!("--name {n}: {e}")));
        crate::control::serve(sock);
    }
    // Root on a disk (`--root-dev ubda`, UML's `root=/dev/ubda`): no root
    // directory and no initramfs; the kernel mounts the disk's ext4.
    let root_disk = cli.root_dev.as_deref().map(|d| crate::cli_uml::root_disk_index(d, &cli.ubd).unwrap_or_else(|e| fail(format_args!("{e}"))));
    let mut overlays: Vec<(String, Box<dyn hal::HostDir>)> = Vec::new();
    let initramfs: std::sync::Arc<dyn AsRef<[u8]>> = if root_disk.is_some() {
        std::sync::Arc::new(kernel_core::fs::cpio::build(&[]))
    } else {
        root_initramfs(name, &cli, &mut overlays)
    };
    let term = std::env::var("TERM").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "linux".into());
    let mut args = vec![cli.init.clone()];
    args.extend(cli.args.iter().cloned());
    let mut config = kernel_core::BootConfig {
        init: cli.init.clone(),
        args,
        env: {
            let mut env = vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                "HOME=/".into(),
                format!("TERM={term}"),
            ];
            env.extend(login_env());
            env
        },
        initramfs: Vec::new(),
        uname_release: cli.uname_release.clone(),
        hostname: cli.hostname.clone(),
        trace_syscalls: cli.trace_syscalls,
        ..Default::default()
    };
    if !cli.init_env.is_empty() {
        if let Some(bad) = cli.init_env.iter().find(|e| !e.contains('=')) {
            fail(format_args!("--env {bad}: expected K=V"));
        }
        config.env = cli.init_env.clone();
    }
    if let Some(cwd) = &cli.cwd {
        if !cwd.starts_with('/') {
            fail(format_args!("--cwd {cwd}: must be an absolute guest path"));
        }
        config.cwd = cwd.clone();
    }
    if let Some((uid, gid)) = cli.user {
        (config.uid, config.gid) = (uid, gid);
    }
    if let Some(t) = &cli.trap {
        set_trap(backend, t).unwrap_or_else(|e| fail(format_args!("{e}")));
    }
    let mut host_dirs: Vec<(String, Box<dyn hal::HostDir>)> = Vec::new();
    for spec in &cli.hostfs {
        let (spec, rw) = match spec.strip_suffix(":rw") {
            Some(s) => (s, true),
            None => (spec.strip_suffix(":ro").unwrap_or(spec), false),
        };
        let Some((host, guest)) = spec.rsplit_once(':') else {
            fail(format_args!("--hostfs {spec}: expected HOSTDIR:GUESTDIR[:rw]"))
        };
        if !guest.starts_with('/') || guest.split('/').any(|c| c == "..") {
            fail(format_args!("--hostfs {spec}: GUESTDIR must be an absolute guest path without `..`"));
        }
        match drivers::hostfs::HostExport::open(std::path::Path::new(host), rw) {
            Ok(x) => host_dirs.push((guest.to_string(), Box::new(x))),
            Err(e) => fail(format_args!("--hostfs {host}: {e}")),
        }
    }
    let log = cli.log.as_ref().map(|p| {
        std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap_or_else(|e| fail(format_args!("--log {}: {e}", p.display())))
    });
    crate::host::set_log(cli.verbose || cli.trace_syscalls, log);
    let nets = open_nets(&net_specs).unwrap_or_else(|e| fail(format_args!("{e}")));
    let (con0, lines) = crate::cli_uml::open_consoles(&cli.con).unwrap_or_else(|e| fail(format_args!("{e}")));
    if let Some(c) = &con0 {
        crate::cli_uml::apply_con0(c).unwrap_or_else(|e| fail(format_args!("{e}")));
    }
    let mut described = Vec::new();
    for (n, ch) in lines {
        if !matches!(ch.describe(), "null") {
            eprintln!("{name}: con{n} (/dev/tty{n}): {}", ch.describe());
        }
        described.push((n, ch.describe().to_string()));
        crate::host::attach_console_line(n, ch);
    }
    crate::control::set_channels(described);
    if let Some(d) = &cli.tty_log_dir {
        crate::recorder::open_tty_log_dir(d).unwrap_or_else(|e| fail(format_args!("{e}")));
    }
    if let Some(f) = &cli.audit_log {
        crate::recorder::open_audit_log(f).unwrap_or_else(|e| fail(format_args!("{e}")));
    }
    let disks = crate::cli_uml::open_disks(&cli.ubd).unwrap_or_else(|e| fail(format_args!("{e}")));
    let mut hal = match make(cli.mem) {
        Ok(h) => h,
        Err(e) => fail(format_args!("cannot set up the host side ({} bytes of guest memory): {e}", cli.mem)),
    };
    // The expected value stays in this frame, which no guest can locate.
    let canary = random_u64();
    CANARY.store(canary, std::sync::atomic::Ordering::SeqCst);
    if cli.debug_reveal_canary {
        let addr = CANARY.as_ptr() as u64;
        let getppid = libc::getppid as *const () as u64;
        let (phys, phys_len) = phys_mapping().unwrap_or((0, 0));
        eprintln!(
            "{name}: debug: canary at {addr:#x} = {canary:#x}; guest physical memory mapped at \
             {phys:#x}+{phys_len:#x}; host getppid at {getppid:#x}"
        );
        config.env.push(format!("RUSTUML_CANARY_ADDR={addr:#x}"));
        config.env.push(format!("RUSTUML_PHYS_ADDR={phys:#x}"));
        config.env.push(format!("RUSTUML_PHYS_SIZE={phys_len:#x}"));
        config.env.push(format!("RUSTUML_KERNEL_GETPPID={getppid:#x}"));
    }
    if cli.no_sandbox {
        eprintln!("{name}: warning: --no-sandbox: the kernel process is not confined; a compromised kernel has all of your rights");
    } else {
        confine(backend, cli.mem, host_dirs.len() + overlays.len()).unwrap_or_else(|e| fail(format_args!("cannot confine the kernel process: {e}")));
    }
    let status = match kernel_core::kernel::boot_with(&mut hal, config, kernel_core::kernel::Devices { host_dirs, overlays, nets, initramfs: Some(initramfs), overlay_upper: None, disks, root_disk }) {
        Ok(s) => s,
        Err(e) => fail(format_args!("{e}")),
    };
    // Every guest host process is gone once boot returns; drop the rest
    // before exiting.
    drop(hal);
    let found = CANARY.load(std::sync::atomic::Ordering::SeqCst);
    if found != canary {
        eprintln!("{name}: canary overwritten: expected {canary:#x}, found {found:#x}");
    }
    power_off(status)
}

/// The root directory (`--root DIR` or the default) packed as the
/// initramfs, or (a large tree) pushed onto `overlays` to be served live.
fn root_initramfs(name: &str, cli: &Cli, overlays: &mut Vec<(String, Box<dyn hal::HostDir>)>) -> std::sync::Arc<dyn AsRef<[u8]>> {
    let fail = |msg: std::fmt::Arguments| -> ! {
        eprintln!("{name}: {msg}");
        exit(2)
    };
    let root = match cli.root.clone().or_else(default_root) {
        Some(r) => r,
        None => fail(format_args!(
            "no --root DIR given, and no default root beside the binary (build one with `cargo xtask build`)"
        )),
    };
    let root = &root;
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => fail(format_args!("--root {}: not a directory", root.display())),
        Err(e) => fail(format_args!("--root {}: {e}", root.display())),
    }
    // Look the entry up without following symlinks: their targets are guest
    // paths, not host ones.
    // Init may come from a --hostfs mount: then the kernel itself says
    // when it is missing.
    let init_host = root.join(cli.init.trim_start_matches('/'));
    if cli.hostfs.is_empty() && std::fs::symlink_metadata(&init_host).is_err() {
        fail(format_args!("init {} not found in {}", cli.init, root.display()));
    }
    // A small tree is packed (mapped from the cache beside it when
    // unchanged; the kernel's files point into it rather than copying). A
    // large one is served live through hostfs, read-only, under an overlay
    // in guest memory, so boot time does not grow with the tree.
    if is_small_tree(root) {
        match drivers::initramfs::load_root(root) {
            Ok(a) => std::sync::Arc::new(a),
            Err(e) => fail(format_args!("packing {}: {e}", root.display())),
        }
    } else {
        match drivers::hostfs::HostExport::open(root, false) {
            Ok(x) => overlays.push(("/".into(), Box::new(x))),
            Err(e) => fail(format_args!("--root {}: {e}", root.display())),
        }
        std::sync::Arc::new(kernel_core::fs::cpio::build(&[]))
    }
}

/// Confine the kernel process now that everything it opens by path is open
/// (see [`crate::sandbox`]); each step the host does not allow is one line
/// on stderr. `RUSTUML_SANDBOX_LOG=FILE` runs the allowlist in log mode:
/// calls outside it run and are appended to FILE (the test that keeps the
/// list complete uses it).
fn confine(b: &Backend, mem: u64, exports: usize) -> Result<(), String> {
    let (name, backend) = (b.name, b.sandbox);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if !(b.prepare_confinement)(pid) {
        eprintln!("{name}: sandbox: no stub zygote, so the kernel must keep fork: not confined");
        return Ok(());
    }
    let mode = crate::sandbox::Mode::from_env()?;
    // Every guest process is a host stub charged 144 KiB of guest memory;
    // besides those, this user's processes as they are now, and a margin.
    let stubs = mem / (128 << 10);
    let mine = user_processes();
    let fds = 4096 + stubs + 520 * exports as u64;
    // No host network: the NAT's sockets come from its broker.
    let needs = crate::sandbox::Needs { procs: mine + stubs + 64, fds, host_network: false };
    let report = crate::sandbox::confine(name, backend, mode, needs)?;
    for s in report.skipped {
        eprintln!("{name}: sandbox: {s}");
    }
    Ok(())
}

/// What a login gives init besides PATH, HOME and TERM: the host's locale
/// and time zone (`LANG`, `LC_*`, `TZ`; `LANG=C.UTF-8` when it has none,
/// the locale the default root carries), and root's `USER`, `LOGNAME` and
/// `SHELL` (its shell in the default root's `/etc/passwd`).
fn login_env() -> Vec<String> {
    let mut env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let (k, v) = (k.into_string().ok()?, v.into_string().ok()?);
            (k == "LANG" || k == "TZ" || k.starts_with("LC_")).then(|| format!("{k}={v}"))
        })
        .collect();
    env.sort();
    if !env.iter().any(|e| e.starts_with("LANG=")) {
        env.push("LANG=C.UTF-8".into());
    }
    env.extend(["USER=root".into(), "LOGNAME=root".into(), "SHELL=/bin/sh".into()]);
    env
}

/// How many processes this user has now (RLIMIT_NPROC counts them all).
fn user_processes() -> u64 {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| e.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::{parse_net, parse_size, NetSpec};

    #[test]
    fn net_specs() {
        assert_eq!(parse_net("user"), Ok(NetSpec::User("user".into())));
        assert_eq!(
            parse_net("user,hostfwd=tcp:127.0.0.1:8080-:80"),
            Ok(NetSpec::User("user,hostfwd=tcp:127.0.0.1:8080-:80".into()))
        );
        assert_eq!(
            parse_net("switch,path=/tmp/s.sock,ip=10.0.0.1/24,gw=10.0.0.254,mac=02:00:00:00:00:01"),
            Ok(NetSpec::Switch {
                path: "/tmp/s.sock".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                ipv4: Some(([10, 0, 0, 1], 24)),
                gateway: Some([10, 0, 0, 254]),
            })
        );
        assert_eq!(
            parse_net("tap,ifname=tap0,ip=192.168.7.2/30"),
            Ok(NetSpec::Tap { ifname: "tap0".into(), mac: None, ipv4: Some(([192, 168, 7, 2], 30)), gateway: None })
        );
        for bad in [
            "",
            "bridge",
            "switch",
            "switch,path=",
            "switch,path=/s,ip=10.0.0.1/33",
            "switch,path=/s,ip=10.0.0.300",
            "switch,path=/s,ip=10.0.0.1/24,gw=10.0.1.1",
            "switch,path=/s,gw=10.0.0.1",
            "switch,path=/s,mac=01:00:00:00:00:01",
            "switch,path=/s,colour=blue",
            "switch,path",
            "tap",
            "tap,path=/s",
            "switch,ifname=x,path=/s",
            "user,hostfwd=tcp:8080-80",
            "user,colour=blue",
        ] {
            let e = parse_net(bad).expect_err(bad);
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("1K").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
