//! The kernel binaries' command line, and nothing else: this file depends
//! only on clap and std so that `cargo xtask run` compiles the very same
//! definitions (`#[path]` module) and rejects a bad option with the kernel's
//! own message before it builds anything. One list of options, no copy.

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

/// The options both kernel binaries take.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Cli {
    /// Guest physical memory, in bytes or with a K, M or G suffix.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub mem: u64,
    /// Host directory to use as the guest's root file system (packed into an
    /// initramfs at boot, cached beside it in `.NAME.initramfs`). Default:
    /// the root `cargo xtask build` assembles beside this binary (`<target>/rootfs/default` for
    /// `<target>/release/kernel-skas`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print every system call (strace style) on stderr.
    #[arg(long)]
    pub trace_syscalls: bool,
    /// Show every kernel message (as `dmesg` in the guest shows them) on
    /// stderr too; by default only kernel errors are, so that the guest's
    /// own output is not mixed with them.
    #[arg(long)]
    pub verbose: bool,
    /// Append every kernel message to FILE on the host.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The release uname(2) reports.
    #[arg(long, value_name = "R", default_value = "6.1.0-rustuml")]
    pub uname_release: String,
    /// The guest's host name.
    #[arg(long, value_name = "H", default_value = "rustuml")]
    pub hostname: String,
    /// How guest system calls and faults are trapped (skas only): seccomp
    /// (the default where the host allows it) or ptrace.
    #[arg(long, value_name = "ptrace|seccomp", value_parser = ["ptrace", "seccomp"])]
    pub trap: Option<String>,
    /// Debugging the isolation attacks only: print the address and value of
    /// the kernel's canary (and where the kernel maps guest physical memory)
    /// on stderr, and hand them to init as RUSTUML_CANARY_ADDR,
    /// RUSTUML_PHYS_ADDR, RUSTUML_PHYS_SIZE and RUSTUML_KERNEL_GETPPID.
    #[arg(long)]
    pub debug_reveal_canary: bool,
    /// Do not confine the kernel process after boot (no seccomp allowlist,
    /// no private mount namespace, capabilities kept): for debugging the
    /// kernel itself with gdb or strace on the host. Prints a warning.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Mount host directory HOSTDIR at GUESTDIR in the guest (hostfs),
    /// read-only unless `:rw` is appended. May be repeated.
    #[arg(long, value_name = "HOSTDIR:GUESTDIR[:rw]")]
    pub hostfs: Vec<String>,
    /// Attach a network interface (eth0, eth1, ... in order; repeatable):
    /// `user[,hostfwd=tcp:127.0.0.1:8080-:80][,restrict=off]` (user-mode NAT;
    /// the guest is 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3),
    /// `switch,path=SOCK[,mac=M][,ip=A.B.C.D/N][,gw=A.B.C.D]` (a virtual
    /// switch, see --switch), `tap,ifname=NAME[,mac=M][,ip=..][,gw=..]` (a
    /// host TAP device).
    #[arg(long, value_name = "SPEC")]
    pub net: Vec<String>,
    /// Attach a disk as /dev/ubda (N=0), /dev/ubdb (N=1), ... (repeatable):
    /// `N=IMAGE` (a plain image file), `N=COW,BACKING` (a UML-format
    /// copy-on-write file over a read-only backing image; created when
    /// missing), `Nr=IMAGE` read-only, `Ns=...` synchronous writes. UML's
    /// `ubdN=...` word is the same.
    #[arg(long, value_name = "N[r][s]=FILE[,BACKING]")]
    pub ubd: Vec<String>,
    /// Boot from the ext4 file system on disk DEV (`ubda` or `/dev/ubda`,
    /// attached with --ubd), mounted read-write as `/`, instead of a root
    /// directory. UML's `root=/dev/ubda` is the same.
    #[arg(long, value_name = "DEV", conflicts_with = "root")]
    pub root_dev: Option<String>,
    /// Run a virtual switch at the Unix socket PATH instead of a kernel, until
    /// SIGINT or SIGTERM; guests join it with `--net switch,path=PATH`.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["net", "hostfs"])]
    pub switch: Option<PathBuf>,
    /// Name the guest: its control directory `$XDG_RUNTIME_DIR/rustuml/NAME/`
    /// (else `~/.rustuml/NAME/`) holds its pid and the control socket
    /// `rustuml-ctl` talks to; removed when the kernel exits. UML's
    /// `umid=NAME` is the same. Without a name the guest has no control
    /// socket.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A console channel (repeatable): `N=SPEC` for line N (0: the console
    /// itself; 1 to 6: the guest's /dev/tty1 to /dev/tty6), or `SPEC` for
    /// all of them not given otherwise. SPEC: `fd:N,fd:M` (console only;
    /// the default is fd:0,fd:1), `null`, `pts` (a host pseudo-terminal,
    /// its path printed), `port:127.0.0.1:PORT` (raw TCP on loopback, one
    /// client at a time), `file:PATH` (output only). Lines without a channel
    /// fail to open with ENXIO. UML's `conN=SPEC` and `con=SPEC` are the same.
    #[arg(long, value_name = "[N=]SPEC")]
    pub con: Vec<String>,
    /// Honeypot mode: record every byte guest programs read or write on
    /// every terminal (console, lines, ptys), with times, pids and session
    /// ids, in DIR/<tty>.<pid>.log on the host (`rustuml-ctl replay`).
    /// UML's `tty_log_dir=DIR` is the same.
    #[arg(long, value_name = "DIR")]
    pub tty_log_dir: Option<PathBuf>,
    /// Append one JSON line per execve (argv, pid, uid), connect, bind and
    /// accept (addresses) and open for writing to FILE on the host. UML
    /// style `audit_log=FILE` is the same.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Init's environment, `K=V` (repeatable): when given, exactly these
    /// variables instead of the login-like default (rustuml-oci passes an
    /// OCI bundle's `process.env`).
    #[arg(long = "env", value_name = "K=V")]
    pub init_env: Vec<String>,
    /// Init's working directory, a guest path (default `/`).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Init's user and group ids inside the guest (default 0:0).
    #[arg(long, value_name = "UID:GID", value_parser = parse_user)]
    pub user: Option<(u32, u32)>,
    /// Guest path of the first program.
    #[arg(value_name = "INIT", default_value = "/bin/sh")]
    pub init: String,
    /// Arguments for init.
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `NAME do [OPTIONS] [--] CMD ARGS...`: CMD in a fresh guest whose root is
/// the host's `/`, live and read-only through hostfs, under an overlay kept
/// in guest memory (the host never sees a write), with the guest's own
/// /proc, /sys, /dev, /tmp and /run, the caller's working directory,
/// environment, uid and gid; the exit status is CMD's.
#[derive(Parser, Debug)]
pub struct DoCli {
    /// Guest physical memory (the overlay's writes live in it too).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub mem: u64,
    /// A network interface, as the kernel's --net (e.g. `user`).
    #[arg(long, value_name = "SPEC")]
    pub net: Vec<String>,
    /// Keep the overlay's upper layer in host directory DIR (overlayfs'
    /// format) instead of guest memory: read at boot, the guest's changes
    /// written back when it powers off, so the next `do --overlay DIR`
    /// continues from there. Locked against a concurrent run.
    #[arg(long, value_name = "DIR")]
    pub overlay: Option<PathBuf>,
    /// Run CMD as uid 0 inside (no host rights beyond the kernel process's own).
    #[arg(long)]
    pub root_user: bool,
    /// Print every system call (strace style) on stderr.
    #[arg(long)]
    pub trace_syscalls: bool,
    /// How guest system calls are trapped (skas only): seccomp or ptrace.
    #[arg(long, value_name = "ptrace|seccomp", value_parser = ["ptrace", "seccomp"])]
    pub trap: Option<String>,
    /// Do not confine the kernel process (as the kernel's --no-sandbox).
    #[arg(long)]
    pub no_sandbox: bool,
    /// The command and its arguments (found on $PATH like a shell does).
    /// `DIR`'s layer is written back at power-off only: a killed kernel
    /// leaves it as the last clean run did.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// Parse `UID:GID` (numbers).
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    let num = |x: &str| x.parse::<u32>().map_err(|_| format!("`{x}` is not a numeric id"));
    Ok((num(u)?, num(g)?))
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

/// Turn UML words in `argv` (which starts with the program name) into flags.
/// `cmd` is the parser, asked which `--long` options take a value (so that
/// `--hostname mem=x` is left alone).
pub fn translate(argv: Vec<OsString>, cmd: &clap::Command) -> Result<Vec<OsString>, String> {
    let takes_value = |long: &str| {
        cmd.get_arguments().any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
    };
    let mut it = argv.into_iter();
    let mut out: Vec<OsString> = it.next().into_iter().collect();
    let mut init: Option<OsString> = None;
    let mut nets: Vec<(u32, String)> = Vec::new();
    // Where the first positional argument (INIT) went, once one is seen.
    let mut positional: Option<usize> = None;
    while let Some(arg) = it.next() {
        if positional.is_some() {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str().map(str::to_owned) else {
            positional = Some(out.len());
            out.push(arg);
            continue;
        };
        if s == "--" {
            positional = Some(out.len() + 1);
            out.push(arg);
            continue;
        }
        if let Some(long) = s.strip_prefix("--") {
            out.push(arg);
            if !long.contains('=') && takes_value(long) {
                if let Some(v) = it.next() {
                    out.push(v);
                }
            }
            continue;
        }
        if s.starts_with('-') {
            out.push(arg);
            continue;
        }
        let Some((key, value)) = s.split_once('=') else {
            positional = Some(out.len());
            out.push(arg);
            continue;
        };
        if let Some(rest) = key.strip_prefix("ubd").filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
            out.push("--ubd".into());
            out.push(format!("{rest}={value}").into());
        } else if key == "mem" {
            out.push("--mem".into());
            out.push(value.into());
        } else if key == "con" {
            out.push("--con".into());
            out.push(value.into());
        } else if let Some(n) = key.strip_prefix("con").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            out.push("--con".into());
            out.push(format!("{n}={value}").into());
        } else if key == "tty_log_dir" || key == "audit_log" {
            out.push(format!("--{}", key.replace('_', "-")).into());
            out.push(value.into());
        } else if key == "umid" {
            out.push("--name".into());
            out.push(value.into());
        } else if key == "root" {
            out.push("--root-dev".into());
            out.push(value.into());
        } else if key == "init" {
            if init.replace(value.into()).is_some() {
                return Err("init= given twice".into());
            }
        } else if let Some(n) = key.strip_prefix("eth").and_then(|n| n.parse::<u32>().ok()) {
            if nets.iter().any(|(m, _)| *m == n) {
                return Err(format!("{key}= given twice"));
            }
            nets.push((n, value.to_string()));
        } else {
            return Err(format!(
                "unknown boot word `{s}` (UML words understood: mem=, ubdN=, ethN=, root=, init=, umid=, con=, conN=, tty_log_dir=, audit_log=; see --help)"
            ));
        }
    }
    nets.sort();
    // Flags go right after the program name, before any `--` or INIT.
    for (i, (n, spec)) in nets.into_iter().enumerate().rev() {
        if n as usize != i {
            return Err(format!("eth{n}= given without eth{i}= (interfaces are numbered from eth0 in order)"));
        }
        out.splice(1..1, [OsString::from("--net"), spec.into()]);
        positional = positional.map(|p| p + 2);
    }
    if let Some(init) = init {
        match positional {
            // `init=PATH ARGS...` (ARGS after `--` or words that are not
            // options): PATH runs with them.
            Some(p) => out.insert(p.min(out.len()), init),
            None => out.push(init),
        }
    }
    Ok(out)
}
