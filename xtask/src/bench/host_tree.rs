//! Rows of `cargo xtask bench` on the host's own tree (issue 21): what a
//! user of `kernel-skas do` waits for. Natively each row is a shell command
//! run on the host; under our kernels the same command runs under
//! `KERNEL do --` (the host's `/` live through hostfs under an in-memory
//! overlay, so the guest's boot is included); under gVisor `runsc do`; UML
//! has no equivalent. With `--peers`, `proot -R /` (when installed) is
//! measured on the same commands and reported as notes.
//!
//! - `host_find_cold`: `find /usr -type f | wc -l` in a fresh guest;
//! - `host_find_warm`: the same, a second time in the same guest (timed
//!   inside it);
//! - `host_cat_headers`: `cat` of 3,000 files of /usr/include;
//! - `host_gcc_c`: `gcc -c` of a generated 300-line C file;
//! - `host_git_status`: `git status --porcelain` of this checkout;
//! - `host_python_start`: the host's `python3 -c pass`;
//! - `do_boot`: `do` to the exit of the host's `/bin/true` (the boot of a
//!   guest over the host's root, to the first instruction of CMD and back).

use super::{failure, run_timed, Backend, Kind, Sample};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A 300-line C file for the gcc row.
fn c_source() -> String {
    let mut s = String::from("#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n\n");
    for i in 0..48 {
        s.push_str(&format!(
            "static int f{i}(int x) {{\n    int a[16];\n    for (int i = 0; i < 16; i++)\n        a[i] = x * i + {i};\n    return a[x & 15] ^ (int)strlen(\"row {i}\");\n}}\n"
        ));
    }
    s.push_str("int main(int argc, char **argv) {\n    int t = 0;\n");
    for i in 0..48 {
        s.push_str(&format!("    t += f{i}(argc + {i});\n"));
    }
    s.push_str("    printf(\"%d %s\\n\", t, argv[0]);\n    return 0;\n}\n");
    s
}

/// The workspace (`git status` runs in it) and a scratch directory with the
/// C file.
pub(super) struct HostCtx {
    workspace: PathBuf,
    scratch: PathBuf,
}

impl HostCtx {
    pub(super) fn new(workspace: &Path, target: &Path) -> Result<HostCtx, String> {
        let scratch = target.join("bench-host");
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        std::fs::write(scratch.join("bench300.c"), c_source()).map_err(|e| format!("bench300.c: {e}"))?;
        Ok(HostCtx { workspace: workspace.to_path_buf(), scratch })
    }
}

/// The shell command of row `name`, and the directory it runs in.
fn script(name: &str, ctx: &HostCtx) -> Option<(String, PathBuf)> {
    let ws = ctx.workspace.clone();
    Some(match name {
        "host_find_cold" => ("find /usr -type f | wc -l".into(), ws),
        "host_find_warm" => (
            "find /usr -type f | wc -l >/dev/null; s=$(date +%s%N); find /usr -type f | wc -l >/dev/null; \
             e=$(date +%s%N); echo \"bench host_find_warm $((e - s)) ns\""
                .into(),
            ws,
        ),
        "host_cat_headers" => ("find /usr/include -type f | head -n 3000 | xargs cat | wc -c".into(), ws),
        "host_gcc_c" => ("gcc -O2 -c bench300.c -o /tmp/bench300.o".into(), ctx.scratch.clone()),
        "host_git_status" => ("git status --porcelain | wc -l".into(), ws),
        "host_python_start" => ("exec python3 -c pass".into(), ws),
        "do_boot" => ("exec /bin/true".into(), ws),
        _ => return None,
    })
}

/// The command that runs `sh -c SCRIPT` in `dir` under `b` (`None`: `b`
/// has no way to run a command over the host's root).
fn command(b: &Backend, sh: &str, dir: &Path) -> Result<Command, String> {
    let mut c = match &b.kind {
        Kind::Native => Command::new("/bin/sh"),
        Kind::Kernel(k, extra) => {
            let mut c = Command::new(k);
            c.arg("do").args(*extra).args(["--", "/bin/sh"]);
            c
        }
        Kind::Gvisor(_) | Kind::Proot(_) => {
            let mut c = super::peers::wrapper_command(&b.kind).expect("a wrapping peer");
            c.arg("/bin/sh");
            c
        }
        Kind::Uml(_) => return Err("User-mode Linux has no `do` over the host's root".into()),
    };
    // do_boot: no shell in between.
    if sh == "exec /bin/true" {
        let mut argv: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_os_string()).collect();
        if matches!(b.kind, Kind::Native) {
            c = Command::new("/bin/true");
        } else {
            argv.pop();
            argv.push("/bin/true".into());
            let prog = c.get_program().to_os_string();
            c = Command::new(prog);
            c.args(argv);
        }
    } else {
        c.args(["-c", sh]);
    }
    c.current_dir(dir);
    Ok(c)
}

/// One sample of row `name` under `b`, in ns.
pub(super) fn measure(b: &Backend, name: &str, ctx: &HostCtx, timeout: Duration) -> Sample {
    let (sh, dir) = script(name, ctx).ok_or_else(|| format!("unknown row {name}"))?;
    let cmd = command(b, &sh, &dir)?;
    let r = run_timed(cmd, timeout)?;
    if r.code != Some(0) {
        return Err(failure(&r));
    }
    if name == "host_find_warm" {
        return super::parse_sample(&r.stdout, name).unwrap_or_else(|| Err("no figure".into()));
    }
    Ok(r.elapsed.as_nanos() as f64)
}

/// With `--peers`: `proot -R /` on the same rows (median of `reps` runs),
/// as notes (proot is not a column of the table).
pub(super) fn proot_notes(names: &[&str], ctx: &HostCtx, reps: usize, timeout: Duration) -> Vec<String> {
    let Some(proot) = ["/usr/bin/proot", "/usr/local/bin/proot"].iter().map(PathBuf::from).find(|p| p.exists()) else {
        return vec!["proot -R /: not installed (Debian's proot), not measured".into()];
    };
    let mut out = Vec::new();
    for &name in names {
        let Some((sh, dir)) = script(name, ctx) else { continue };
        let mut v = Vec::new();
        for _ in 0..reps.max(1) {
            let mut c = Command::new(&proot);
            c.args(["-R", "/", "/bin/sh", "-c", &sh]).current_dir(&dir);
            match run_timed(c, timeout) {
                Ok(r) if r.code == Some(0) => {
                    let x = if name == "host_find_warm" {
                        super::parse_sample(&r.stdout, name).and_then(Result::ok)
                    } else {
                        Some(r.elapsed.as_nanos() as f64)
                    };
                    v.extend(x);
                }
                Ok(r) => {
                    out.push(format!("proot -R / {name}: {}", failure(&r)));
                    break;
                }
                Err(e) => {
                    out.push(format!("proot -R / {name}: {e}"));
                    break;
                }
            }
        }
        if let Some(m) = super::median(&v) {
            out.push(format!("proot -R / {name}: {:.2} ms (median of {})", m / 1e6, v.len()));
        }
    }
    out
}
