//! The peers of `cargo xtask bench --peers`: the systems one would
//! otherwise pick to run Linux programs in a host process.
//!
//! * User-mode Linux (Debian's `user-mode-linux`, `/usr/bin/linux`) boots
//!   the full benchmark root — the host's userland plus the benchmark
//!   programs, the same files our kernels get — over hostfs, read-only
//!   (`rootfstype=hostfs rootflags=DIR ro`, `mem=256M`, the console on
//!   stdout). Its init is a shell script written into the root
//!   (`/bench-uml/*.sh`) that mounts `/proc` (and a tmpfs on `/tmp`), runs
//!   the programs and powers off through `/proc/sysrq-trigger`: UML panics
//!   when init exits. A boot costs about a second, so every guest operation
//!   of one repetition runs in one boot (`batch.sh`); the boot, shell and
//!   idle rows boot once each, like our kernels. A UML boot has a shell
//!   (the script) between the kernel and the program.
//! * gVisor (`runsc`) runs the native command line of every row —
//!   `runsc --rootless --network=none --platform=ptrace do PROG ARGS`, with
//!   the host's root file system (an in-memory overlay on top: writes stay
//!   in the sandbox). `ptrace` is the platform that needs no `/dev/kvm`;
//!   Debian's runsc (2022) has no `systrap`.
//!
//! * proot (Debian's `proot`) runs the native
//!   command line of every row under `proot -R /`: ptrace interception of
//!   every system call with path translation, and no isolation at all —
//!   the floor a sandbox of this kind has to beat on process creation.
//!
//! All three run the `quick` iteration count of each guest operation: their
//! system calls cost tens of µs, and the count only sets the precision.
//! Each is installed from Debian's packages when missing (apt-get, as root
//! or through sudo); a peer that still is not there, or does not run here,
//! is skipped with a note, never an error.

use super::{
    failure, guest_argv, parse_sample, run_marked, run_timed, Backend, Kind, Op, Roots, Sample,
};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How runsc is started (before `do`).
const RUNSC_FLAGS: &[&str] = &["--rootless", "--network=none", "--platform=ptrace"];

/// How proot is started: the host's own root, as `kernel-skas do` and
/// `runsc do` see it.
const PROOT_FLAGS: [&str; 2] = ["-R", "/"];

/// UML's memory: the same as our kernels' default.
const UML_MEM: &str = "mem=256M";

/// `bin` in `$PATH`, if there.
fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// The peers, installed or not (then skipped with the reason).
pub(super) fn find(roots: &Roots) -> Vec<Backend> {
    for (bin, package) in [("linux", "user-mode-linux"), ("runsc", "runsc"), ("proot", "proot")] {
        if which(bin).is_none() {
            eprintln!("      {bin} is missing: installing Debian's {package}");
            if let Err(e) = crate::apt_install(package) {
                eprintln!("      {e}");
            }
        }
    }
    let uml = match which("linux") {
        Some(l) => Backend {
            name: "uml",
            skipped: write_uml_scripts(&roots.full).err(),
            kind: Kind::Uml(l),
        },
        None => Backend {
            name: "uml",
            kind: Kind::Uml(PathBuf::new()),
            skipped: Some(
                "User-mode Linux is not installed (Debian's user-mode-linux: /usr/bin/linux)"
                    .into(),
            ),
        },
    };
    let gvisor = match which("runsc") {
        Some(r) => Backend {
            name: "gvisor",
            kind: Kind::Gvisor(r),
            skipped: None,
        },
        None => Backend {
            name: "gvisor",
            kind: Kind::Gvisor(PathBuf::new()),
            skipped: Some("gVisor is not installed (Debian's runsc)".into()),
        },
    };
    let proot = match which("proot") {
        Some(r) => Backend { name: "proot", kind: Kind::Proot(r), skipped: None },
        None => Backend {
            name: "proot",
            kind: Kind::Proot(PathBuf::new()),
            skipped: Some("proot is not installed (Debian's proot)".into()),
        },
    };
    vec![uml, gvisor, proot]
}

/// The command a peer that wraps a native command line starts it with
/// (`runsc FLAGS do`, `proot -R /`); append the program and its arguments.
/// `None` for the others.
pub(super) fn wrapper_command(kind: &Kind) -> Option<Command> {
    match kind {
        Kind::Gvisor(runsc) => {
            let mut c = Command::new(runsc);
            c.args(RUNSC_FLAGS).arg("do");
            Some(c)
        }
        Kind::Proot(proot) => {
            let mut c = Command::new(proot);
            c.args(PROOT_FLAGS);
            Some(c)
        }
        _ => None,
    }
}

/// Boots UML with `/bench-uml/SCRIPT.sh` of `root` as init.
pub(super) fn uml_command(linux: &Path, root: &Path, script: &str) -> Command {
    let mut c = Command::new(linux);
    c.args([
        UML_MEM,
        "rootfstype=hostfs",
        &format!("rootflags={}", root.display()),
        "ro",
        &format!("init=/bench-uml/{script}.sh"),
        "con=null",
        "con0=fd:0,fd:1",
        "quiet",
    ]);
    c
}

/// An init script: mount /proc, run `body`, power off (init must not exit).
fn script(body: &str) -> String {
    format!(
        "#!/bin/sh\n# Written by cargo xtask bench: UML's init.\n\
         mount -t proc proc /proc\n{body}\
         echo o > /proc/sysrq-trigger\nsleep 60\n"
    )
}

fn write_script(root: &Path, name: &str, body: &str) -> Result<(), String> {
    let dir = root.join("bench-uml");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let p = dir.join(format!("{name}.sh"));
    fs::write(&p, script(body)).map_err(|e| format!("write {}: {e}", p.display()))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

fn write_uml_scripts(root: &Path) -> Result<(), String> {
    write_script(root, "hello", "/tests/hello\n")?;
    write_script(root, "idle", "/tests/sleeper 1 0\n")?;
    // The init shell itself is the shell that boots and powers off.
    write_script(root, "shell", "")
}

/// Runs `hello` under the peer once: does it work here?
pub(super) fn probe(b: &Backend, roots: &Roots) -> Result<(), String> {
    let cmd = match &b.kind {
        Kind::Uml(linux) => uml_command(linux, &roots.full, "hello"),
        Kind::Gvisor(_) | Kind::Proot(_) => {
            let Some(mut c) = wrapper_command(&b.kind) else { return Ok(()) };
            c.arg(roots.tiny.join("tests/hello"));
            c
        }
        _ => return Ok(()),
    };
    let r = run_marked(cmd, Duration::from_secs(60), "Hello")?;
    if r.code != Some(0) || !r.stdout.contains("Hello") {
        return Err(format!("cannot run /tests/hello: {}", failure(&r)));
    }
    Ok(())
}

/// One UML boot running every guest operation in `ops` (quick counts):
/// operation -> sample.
pub(super) fn uml_batch(b: &Backend, roots: &Roots, ops: &[&Op]) -> BTreeMap<String, Sample> {
    let Kind::Uml(linux) = &b.kind else {
        return BTreeMap::new();
    };
    let mut body = String::from("mount -t tmpfs tmpfs /tmp\nexport PATH=/usr/bin:/bin HOME=/\n");
    let mut names = Vec::new();
    for op in ops {
        if let Some(argv) = guest_argv(b, roots, op, true) {
            body.push_str(&format!("timeout 300 {}\n", argv.join(" ")));
            names.push(op.name);
        }
    }
    let ran = write_script(&roots.full, "batch", &body).and_then(|()| {
        run_timed(
            uml_command(linux, &roots.full, "batch"),
            Duration::from_secs(1200),
        )
    });
    names
        .into_iter()
        .map(|name| {
            let s = match &ran {
                Err(e) => Err(e.clone()),
                Ok(r) => match parse_sample(&r.stdout, name) {
                    Some(Ok(v)) => Ok(v),
                    Some(Err(why)) => Err(why),
                    None => Err(format!("no figure from the UML batch ({})", failure(r))),
                },
            };
            (name.to_string(), s)
        })
        .collect()
}

fn version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}

/// How each peer that runs was run, for the table's notes.
pub(super) fn notes(backends: &[Backend]) -> Vec<String> {
    let mut v = Vec::new();
    for b in backends.iter().filter(|b| b.skipped.is_none()) {
        match &b.kind {
            Kind::Uml(l) => v.push(format!(
                "uml: User-mode Linux {} ({}), {UML_MEM}, the full root over hostfs (ro, tmpfs on /tmp); \
                 one boot per repetition runs every guest operation at the --quick count; \
                 init is a shell script that powers off with sysrq",
                version(l, "--version"),
                l.display()
            )),
            Kind::Gvisor(r) => v.push(format!(
                "gvisor: {} ({}), `runsc {} do` + the native command line, at the --quick count",
                version(r, "--version"),
                r.display(),
                RUNSC_FLAGS.join(" ")
            )),
            Kind::Proot(r) => v.push(format!(
                "proot: proot {} ({}), `proot {}` + the native command line, at the --quick count",
                // Its --version is a banner: the version is the number in it.
                Command::new(r)
                    .arg("--version")
                    .output()
                    .ok()
                    .and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
                            .map(String::from)
                    })
                    .unwrap_or_default(),
                r.display(),
                PROOT_FLAGS.join(" ")
            )),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uml_init_scripts_power_off_after_the_body() {
        let s = script("/tests/hello\n");
        let (proc_at, body_at, off_at) = (
            s.find("mount -t proc proc /proc").unwrap(),
            s.find("/tests/hello").unwrap(),
            s.find("echo o > /proc/sysrq-trigger").unwrap(),
        );
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(proc_at < body_at && body_at < off_at, "{s}");
        let c = uml_command(Path::new("/usr/bin/linux"), Path::new("/r/full"), "batch");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for want in [
            "rootfstype=hostfs",
            "rootflags=/r/full",
            "ro",
            "init=/bench-uml/batch.sh",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }
}
