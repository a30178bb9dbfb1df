//! The command line and boot glue shared by `kernel-skas` and `kernel-tt`:
//! each binary's `main` is one call to [`main`] with its name and HAL.

use clap::{CommandFactory, FromArgMatches, Parser};
use std::path::PathBuf;
use std::process::exit;

/// The options both kernel binaries take.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Guest physical memory, in bytes or with a K, M or G suffix.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    mem: u64,
    /// Host directory to use as the guest's root file system (packed into an
    /// initramfs at boot). Default: the root `cargo xtask build` assembles
    /// beside this binary (`<target>/rootfs/default` for
    /// `<target>/release/kernel-skas`).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print every system call (strace style) on stderr.
    #[arg(long)]
    trace_syscalls: bool,
    /// The release uname(2) reports.
    #[arg(long, value_name = "R", default_value = "6.1.0-rustuml")]
    uname_release: String,
    /// The guest's host name.
    #[arg(long, value_name = "H", default_value = "rustuml")]
    hostname: String,
    /// How guest system calls and faults are trapped (skas only): seccomp
    /// (the default where the host allows it) or ptrace.
    #[arg(long, value_name = "ptrace|seccomp")]
    trap: Option<crate::TrapMode>,
    /// Debugging the isolation attacks only: print the address and value of
    /// the kernel's canary (and where the kernel maps guest physical memory)
    /// on stderr, and hand them to init as RUSTUML_CANARY_ADDR,
    /// RUSTUML_PHYS_ADDR, RUSTUML_PHYS_SIZE and RUSTUML_KERNEL_GETPPID.
    #[arg(long)]
    debug_reveal_canary: bool,
    /// Mount host directory HOSTDIR at GUESTDIR in the guest (hostfs),
    /// read-only unless `:rw` is appended. May be repeated.
    #[arg(long, value_name = "HOSTDIR:GUESTDIR[:rw]")]
    hostfs: Vec<String>,
    /// Guest path of the first program.
    #[arg(value_name = "INIT", default_value = "/bin/sh")]
    init: String,
    /// Arguments for init.
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
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

/// Parse `123`, `64K`, `256M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (a number of bytes, optionally with a K, M or G suffix)"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("'{s}' is too small (at least 1M)"));
    }
    if bytes > 1 << 40 {
        return Err(format!("'{s}' is too large (at most 1024G)"));
    }
    Ok(bytes)
}

/// Run a kernel binary: parse the command line (program name `name`, help
/// text `about`), pack the root, create the HAL with `make(mem_bytes)`, boot
/// init and exit with its status. Start-up errors print one line,
/// `NAME: ...`, and exit with status 2.
pub fn main<H: hal::Hal, E: std::fmt::Display>(
    name: &'static str,
    about: &'static str,
    make: impl FnOnce(u64) -> Result<H, E>,
) -> ! {
    let fail = |msg: std::fmt::Arguments| -> ! {
        eprintln!("{name}: {msg}");
        exit(2)
    };
    let cmd = Cli::command().name(name).bin_name(name).about(about);
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
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
    let init_host = root.join(cli.init.trim_start_matches('/'));
    if std::fs::symlink_metadata(&init_host).is_err() {
        fail(format_args!("init {} not found in {}", cli.init, root.display()));
    }
    let initramfs = match drivers::initramfs::pack_dir(root) {
        Ok(a) => a,
        Err(e) => fail(format_args!("packing {}: {e}", root.display())),
    };
    let term = std::env::var("TERM").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "linux".into());
    let mut args = vec![cli.init.clone()];
    args.extend(cli.args.iter().cloned());
    let mut config = kernel_core::BootConfig {
        init: cli.init.clone(),
        args,
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "HOME=/".into(),
            format!("TERM={term}"),
        ],
        initramfs,
        uname_release: cli.uname_release.clone(),
        hostname: cli.hostname.clone(),
        trace_syscalls: cli.trace_syscalls,
    };
    if let Some(t) = cli.trap {
        crate::set_default_trap(t);
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
    let status = match kernel_core::kernel::boot_with(&mut hal, config, kernel_core::kernel::Devices { host_dirs, nets: Vec::new() }) {
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
    exit(status)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

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
