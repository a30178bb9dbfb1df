//! `cargo xtask isolation [--out DIR] [--no-build]`: builds both kernels,
//! the guest programs and the default root (unless `--no-build`), runs every isolation attack
//! (`userland-tests/src/bin/attack_*.rs`) as init under each backend, with
//! `--debug-reveal-canary --mem 64M`, and prints a matrix (attack × backend:
//! blocked / succeeded / n/a, with what the attack observed). Writes it as
//! `isolation.md` and `isolation.json` into DIR (default
//! `<target>/isolation`).
//!
//! What the guest cannot see is checked here, on the host, and overrides
//! the guest's own verdict: whether a host file it tried to create exists,
//! whether a host TCP listener it tried to reach got a connection, whether
//! the kernel noticed its canary was overwritten, and whether the kernel
//! itself survived. The host process the attacks try to kill is this one.
//! The pass/fail assertions live in `userland-tests/tests/isolation.rs`;
//! this command only reports.

use super::{assemble_default_root, build_guests, build_kernel, cargo, Hal, Paths, Progress};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one attack program may run.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The lines one program reports: (name, what it tries).
type Lines = &'static [(&'static str, &'static str)];

/// The attack programs: number, program, the lines it reports.
const ATTACKS: &[(u8, &str, Lines)] = &[
    (
        1,
        "attack_kernel_read",
        &[("kernel_read", "read the kernel's canary")],
    ),
    (
        2,
        "attack_kernel_write",
        &[("kernel_write", "overwrite the kernel's canary")],
    ),
    (
        3,
        "attack_other_guest",
        &[
            (
                "other_guest_cow",
                "another process's value at the same address (after COW)",
            ),
            ("other_guest_fixed", "an address only another process maps"),
            (
                "other_guest_phys",
                "another process's memory through the kernel's physical-memory mapping",
            ),
        ],
    ),
    (
        4,
        "attack_host_syscall",
        &[
            ("host_open", "raw openat of a host-only file"),
            ("host_create", "raw openat(O_CREAT) of a host path"),
            (
                "host_socket",
                "raw AF_INET socket + connect to a host listener",
            ),
            ("host_kill", "raw kill(host pid, SIGKILL)"),
        ],
    ),
    (
        5,
        "attack_stub_syscall",
        &[
            (
                "stub_syscall",
                "jump into the skas stub's syscall instruction with crafted registers",
            ),
            (
                "kernel_text_syscall",
                "call the kernel's own syscall instruction (its host libc getppid)",
            ),
        ],
    ),
    (
        6,
        "attack_guest_semantics",
        &[
            ("ptrace_attach", "ptrace another user's guest process, unprivileged"),
            ("proc_mem", "read /proc/<pid>/mem of another user's guest process, unprivileged"),
            ("kill_init", "kill(1, SIGKILL) from a child"),
        ],
    ),
    (
        7,
        "attack_resources",
        &[
            ("fork_bomb", "fork bomb (bounded at 2000 processes)"),
            ("mem_hog", "memory hog (up to 1 GiB with --mem 64M)"),
        ],
    ),
    (
        9,
        "attack_trap_path",
        &[
            ("forged_sleep", "forge a blocking read in the seccomp mailbox and keep running"),
            ("sleepers_run", "8 forged sleepers that keep running beside a CPU-bound loop"),
            ("stale_mapping", "forge munmap, then read the freed frames a victim reuses (20 tries)"),
            ("frozen_executor", "race the mailbox state against the executor, then a multi-batch madvise (20 tries)"),
            ("forgery_fuzz", "10,000 random mailbox forgeries beside a victim and a heartbeat"),
            ("probe_calls", "uretprobe / uprobe, which host kernels exempt from seccomp"),
        ],
    ),
    (
        11,
        "attack_vdso",
        &[
            ("vvar_write", "store into the vDSO's clock data page"),
            ("vvar_mprotect", "make the clock data page writable, then store"),
            ("vvar_kernel_copy", "have the kernel store into it (read from a pipe)"),
            ("vvar_madvise_remove", "punch the page out of its file (MADV_REMOVE)"),
        ],
    ),
];

/// A column of the matrix: a kernel and the flags it runs with.
struct Column {
    name: &'static str,
    hal: Hal,
    flags: &'static [&'static str],
}

/// skas with each trap mechanism (seccomp is its default), and tt.
const COLUMNS: [Column; 3] = [
    Column { name: "skas", hal: Hal::Skas, flags: &[] },
    Column { name: "skas --trap ptrace", hal: Hal::Skas, flags: &["--trap", "ptrace"] },
    Column { name: "tt", hal: Hal::Tt, flags: &[] },
];

/// One cell of the matrix.
#[derive(Clone, Debug)]
struct Cell {
    result: String,
    detail: String,
}

/// One kernel run.
struct RunOut {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

fn run_kernel(kernel: &Path, args: &[String]) -> Result<RunOut, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let mut child = Command::new(kernel)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kernel.display()))?;
    let mut so = child.stdout.take().ok_or("no stdout")?;
    let mut se = child.stderr.take().ok_or("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                timed_out = true;
                kill_group(child.id());
                let _ = child.kill();
                break child.wait().map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(format!("waiting for the kernel: {e}")),
        }
    };
    // Whatever is left of its process group (nothing, normally).
    kill_group(child.id());
    Ok(RunOut {
        code: status.code(),
        signal: status.signal(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        timed_out,
    })
}

/// SIGKILL to the process group `pgid` (the kernel's; it leads its own).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// What a compromised kernel could do once confined: row 10, from the
/// `sandbox` test of hal-uml-x86_64 (a process set up and confined like the
/// kernel, which then attacks; `--trap` does not change the confinement, so
/// the skas cell stands for both trap modes).
fn compromised_kernel_rows() -> Result<Vec<Row>, String> {
    eprintln!("      the compromised-kernel self-test (hal-uml-x86_64's sandbox test)");
    let out = cargo()
        .args(["test", "--release", "-p", "hal-uml-x86_64", "--test", "sandbox"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the sandbox test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = parse_lines(&text);
    let cell = |name: &str, tag: &str| -> Cell {
        let key = format!("{name} [{tag}]");
        lines.iter().find(|(n, _)| *n == key).map(|(_, c)| c.clone()).unwrap_or(Cell {
            result: "error".into(),
            detail: format!("no report (sandbox test exit status {})", out.status),
        })
    };
    const WHAT: [(&str, &str); 9] = [
        ("compromised_execve", "compromised kernel: execve(/bin/sh)"),
        ("compromised_open_by_path", "compromised kernel: open /etc/shadow by path"),
        ("compromised_host_loopback", "compromised kernel: connect to a host loopback port (also with --net user: the NAT's sockets come from its broker)"),
        ("compromised_ptrace_parent", "compromised kernel: ptrace its parent"),
        ("compromised_mount", "compromised kernel: mount"),
        ("compromised_netlink", "compromised kernel: socket(AF_NETLINK)"),
        ("compromised_new_user_namespace", "compromised kernel: unshare(CLONE_NEWUSER)"),
        ("compromised_write_parent_memory", "compromised kernel: process_vm_writev into its parent"),
        ("compromised_exec_heap", "compromised kernel: mprotect(PROT_EXEC) on its heap"),
    ];
    Ok(WHAT
        .iter()
        .map(|&(name, what)| {
            let skas = cell(name, "skas");
            (10, "sandbox test", name, what, vec![skas.clone(), skas, cell(name, "tt")])
        })
        .collect())
}

fn parse_lines(stdout: &str) -> Vec<(String, Cell)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("attack ")?;
            let (name, rest) = rest.split_once(" result=")?;
            let (result, detail) = rest.split_once(" detail=").unwrap_or((rest, ""));
            Some((
                name.to_string(),
                Cell {
                    result: result.into(),
                    detail: detail.into(),
                },
            ))
        })
        .collect()
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// The canary value from the kernel's `debug: canary at A = V;` line.
fn canary_value(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let rest = l.split_once("debug: canary at ")?.1;
        hex(rest.split_once(" = ")?.1.split(';').next()?)
    })
}

fn status_text(r: &RunOut) -> String {
    match (r.timed_out, r.code, r.signal) {
        (true, _, _) => format!("timed out after {TIMEOUT:?} (killed)"),
        (_, Some(c), _) => format!("status {c}"),
        (_, _, Some(s)) => format!("KERNEL DIED of signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Runs one attack program under one backend and returns its cells, with
/// the host-side checks applied.
fn run_attack(
    p: &Paths,
    col: &Column,
    prog: &str,
    names: &[(&str, &str)],
    bait: &Path,
) -> Result<Vec<Cell>, String> {
    let _ = fs::remove_dir_all(bait);
    fs::create_dir_all(bait).map_err(|e| format!("create {}: {e}", bait.display()))?;
    fs::write(bait.join("host-only"), "RUSTUML-HOST-TOKEN\n")
        .map_err(|e| format!("write bait: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let me = std::process::id().to_string();
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let args: Vec<String> = match prog {
        "attack_host_syscall" => {
            vec![
                s(bait.join("host-only")),
                s(bait.join("created-by-guest")),
                port.to_string(),
                me,
            ]
        }
        "attack_stub_syscall" => vec![s(bait.join("created-via-stub")), me],
        "attack_resources" => vec!["2000".into(), "1024".into()],
        "attack_trap_path" => vec!["20".into(), "10000".into()],
        _ => vec![],
    };
    let mut kargs: Vec<String> = col.flags.iter().map(|f| f.to_string()).collect();
    kargs.extend([
        "--mem".into(),
        "64M".into(),
        "--debug-reveal-canary".into(),
        "--root".into(),
        s(p.default_root()),
        "--".into(),
        format!("/tests/{prog}"),
    ]);
    kargs.extend(args);
    let r = run_kernel(&p.kernel(col.hal), &kargs)?;
    let lines = parse_lines(&r.stdout);
    let created: Vec<String> = ["created-by-guest", "created-via-stub"]
        .iter()
        .filter(|n| bait.join(n).exists())
        .map(|n| s(bait.join(n)))
        .collect();
    let accepted = listener.accept().is_ok();
    let kernel_ok = r.code.is_some() && !r.timed_out;
    let mut cells = Vec::new();
    for (name, _) in names {
        let mut cell = match lines.iter().find(|(n, _)| n == name) {
            Some((_, c)) => c.clone(),
            None if *name == "kill_init" && r.code == Some(137) && r.stdout.contains("attack kill_init begin") => Cell {
                result: "succeeded".into(),
                detail: "init was killed by a child's kill(1, SIGKILL): a guest-only effect, the kernel shut \
                         down cleanly with status 137 (Linux ignores SIGKILL to init from inside its namespace)"
                    .into(),
            },
            None => Cell {
                result: "error".into(),
                detail: format!(
                    "no report; kernel {}; stderr: {}",
                    status_text(&r),
                    r.stderr.lines().last().unwrap_or("")
                ),
            },
        };
        match *name {
            "host_create" | "stub_syscall" | "kernel_text_syscall" if !created.is_empty() => {
                cell.result = "succeeded".into();
                let _ = write!(cell.detail, "; HOST FILE CREATED: {}", created.join(", "));
            }
            "host_socket" if accepted => {
                cell.result = "succeeded".into();
                cell.detail
                    .push_str("; THE HOST LISTENER ACCEPTED A CONNECTION");
            }
            "host_create" | "stub_syscall" | "kernel_text_syscall" => {
                cell.detail
                    .push_str("; host: no file created, the kill target (xtask) alive");
            }
            "host_kill" => cell
                .detail
                .push_str("; host: the kill target (xtask) alive"),
            "host_socket" => cell
                .detail
                .push_str("; host: the listener got no connection"),
            "kernel_read" if cell.result == "succeeded" => {
                let ok = canary_value(&r.stderr)
                    .is_some_and(|v| cell.detail.starts_with(&format!("read {v:#x} ")));
                cell.detail.push_str(if ok {
                    " (= the kernel's canary)"
                } else {
                    " (NOT the kernel's canary)"
                });
            }
            "kernel_write" => match r.stderr.lines().find(|l| l.contains("canary overwritten")) {
                Some(l) => {
                    let _ = write!(
                        cell.detail,
                        "; the kernel noticed at shutdown: {}",
                        l.trim()
                    );
                }
                None => cell
                    .detail
                    .push_str("; the kernel's canary was intact at shutdown"),
            },
            _ => {}
        }
        if !kernel_ok {
            let _ = write!(cell.detail, "; kernel {}", status_text(&r));
        }
        cells.push(cell);
    }
    let _ = fs::remove_dir_all(bait);
    Ok(cells)
}

/// Rows: (number, program, name, what, cells per backend).
type Row = (u8, &'static str, &'static str, &'static str, Vec<Cell>);

fn markdown(rows: &[Row]) -> String {
    let mut m = format!(
        "# Isolation matrix\n\nGenerated by `cargo xtask isolation`, {}, host kernel {}. \
         Each attack runs as init (`--debug-reveal-canary --mem 64M`) under each backend; \
         the result is the guest's own verdict, overridden by host-side checks.\n\n\
         | # | attack | skas | skas --trap ptrace | tt |\n| --- | --- | --- | --- | --- |\n",
        crate::bench::now_utc(),
        crate::bench::host_kernel_release(),
    );
    for (n, _, name, what, cells) in rows {
        let _ = write!(m, "| {n} | {what} (`{name}`) |");
        for c in cells {
            let _ = write!(m, " **{}** |", c.result);
        }
        m.push('\n');
    }
    m.push_str("\n## What each attack observed\n\n");
    for (n, prog, name, what, cells) in rows {
        let _ = writeln!(m, "### {n}. {what} (`{name}`, program `{prog}`)\n");
        for (col, c) in COLUMNS.iter().zip(cells) {
            let _ = writeln!(
                m,
                "- **{}**: {} — {}",
                col.name,
                c.result,
                c.detail.replace('|', "\\|")
            );
        }
        m.push('\n');
    }
    m
}

fn json(rows: &[Row]) -> String {
    use serde_json::{json, Value};
    let attacks: Vec<Value> = rows
        .iter()
        .map(|(n, prog, name, what, cells)| {
            let mut a = json!({"number": n, "program": prog, "attack": name, "what": what});
            for (col, c) in COLUMNS.iter().zip(cells) {
                a[col.name] = json!({"result": c.result, "detail": c.detail});
            }
            a
        })
        .collect();
    let j = json!({"backends": COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>(), "attacks": attacks});
    serde_json::to_string_pretty(&j).unwrap_or_default() + "\n"
}

/// `cargo xtask isolation`.
pub fn isolation(p: &Paths, out: Option<PathBuf>, no_build: bool) -> Result<(), String> {
    let mut progress = Progress {
        step: 0,
        total: if no_build { 1 } else { 5 },
    };
    if no_build {
        for path in [
            p.kernel(Hal::Skas),
            p.kernel(Hal::Tt),
            p.default_root().join("tests/attack_kernel_read"),
        ] {
            if !path.exists() {
                return Err(format!("--no-build: {} does not exist", path.display()));
            }
        }
    } else {
        progress.next("building kernel-skas (release)");
        build_kernel(p, Hal::Skas)?;
        progress.next("building kernel-tt (release)");
        build_kernel(p, Hal::Tt)?;
        progress.next("building guest programs (static)");
        build_guests(p)?;
        progress.next("assembling the default root directory");
        assemble_default_root(p)?;
    }
    progress.next("running the attacks under skas (seccomp, ptrace) and tt");
    let bait = std::env::temp_dir().join(format!("rustuml-isolation-{}", std::process::id()));
    let mut rows: Vec<Row> = Vec::new();
    for (n, prog, names) in ATTACKS {
        let mut per_backend = Vec::new();
        for col in &COLUMNS {
            eprintln!("      {prog} under {}", col.name);
            per_backend.push(run_attack(p, col, prog, names, &bait)?);
        }
        for (i, (name, what)) in names.iter().enumerate() {
            let cells = per_backend.iter().map(|c| c[i].clone()).collect();
            rows.push((*n, prog, name, what, cells));
        }
    }
    rows.extend(compromised_kernel_rows()?);
    let width = rows.iter().map(|r| r.2.len()).max().unwrap_or(10);
    println!("{:<3} {:<width$}  {:<10} {:<19} {:<10}", "#", "attack", "skas", "skas --trap ptrace", "tt");
    for (n, _, name, _, cells) in &rows {
        println!("{n:<3} {name:<width$}  {:<10} {:<19} {:<10}", cells[0].result, cells[1].result, cells[2].result);
    }
    println!();
    for (n, _, name, _, cells) in &rows {
        for (col, c) in COLUMNS.iter().zip(cells) {
            println!(
                "{n} {name} [{}] {}: {}",
                col.name,
                c.result,
                c.detail
            );
        }
    }
    let dir = out.unwrap_or_else(|| p.target.join("isolation"));
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let md = dir.join("isolation.md");
    let js = dir.join("isolation.json");
    fs::write(&md, markdown(&rows)).map_err(|e| format!("write {}: {e}", md.display()))?;
    fs::write(&js, json(&rows)).map_err(|e| format!("write {}: {e}", js.display()))?;
    eprintln!("      wrote {} and {}", md.display(), js.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attack_lines() {
        let l = parse_lines("noise\nattack a result=blocked detail=x y=z\nattack b result=n/a\n");
        assert_eq!(l.len(), 2);
        assert_eq!(
            (
                l[0].0.as_str(),
                l[0].1.result.as_str(),
                l[0].1.detail.as_str()
            ),
            ("a", "blocked", "x y=z")
        );
        assert_eq!((l[1].0.as_str(), l[1].1.result.as_str()), ("b", "n/a"));
        assert_eq!(
            canary_value("k: debug: canary at 0x10 = 0xab; more"),
            Some(0xab)
        );
    }

    #[test]
    fn json_is_valid() {
        let rows: Vec<Row> = vec![(
            1,
            "p",
            "n",
            "w \"q\"",
            vec![
                Cell {
                    result: "blocked".into(),
                    detail: "a\nb".into(),
                },
                Cell {
                    result: "succeeded".into(),
                    detail: "c".into(),
                },
            ],
        )];
        let j = json(&rows);
        assert!(serde_json::from_str::<serde_json::Value>(&j).is_ok(), "{j}");
        assert!(markdown(&rows).contains("| 1 | w \"q\" (`n`) | **blocked** | **succeeded** |"));
    }
}
