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


mod config;
mod run;

pub use config::*;
pub use run::*;


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
