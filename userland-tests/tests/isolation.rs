//! The isolation attacks (`src/bin/attack_*.rs`), each booted as init under
//! both kernels (RUSTUML_KERNEL_SKAS, RUSTUML_KERNEL_TT) with
//! `--debug-reveal-canary --mem 64M`, and the expected outcome asserted per
//! backend (as `docs/isolation.md` explains them):
//!
//! | attack | skas | tt |
//! | --- | --- | --- |
//! | 1 read the kernel's canary | blocked (SIGSEGV) | succeeds, reads the value the kernel printed |
//! | 2 overwrite the canary | blocked, canary intact | succeeds, the kernel reports "canary overwritten" |
//! | 3 another guest's memory by address | blocked | blocked |
//! | 3 ... through the kernel's physical-memory mapping | blocked | succeeds |
//! | 4 raw host calls (file, socket, kill) | emulated, no host effect | same |
//! | 5 the stub's own `syscall` instruction | emulated (SYSEMU) or refused (seccomp SIGSYS), no host effect | no stub; the kernel's own `syscall` instruction is emulated too |
//! | 6 ptrace, /proc/pid/mem, kill(1) | guest semantics only | same |
//! | 7 fork bomb, memory hog | contained, kernel up | same |
//! | 9 forged traps on the seccomp stub's mailbox (also run with `--trap ptrace`) | blocked: forgers that run while "asleep" are killed, no stale mapping, no freeze | n/a (no mailbox) |
//! | 9 uretprobe/uprobe (exempt from host seccomp) | SIGILL / ENXIO as Linux | same |
//!
//! Host-side checks: files the guest tried to create do not exist, the host
//! TCP listener the guest tried to reach accepted nothing, the host process
//! it tried to kill (this test) is alive, and no host process outlives the
//! kernel. Run with `cargo xtask test`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Skas,
    Tt,
}

impl Backend {
    fn var(self) -> &'static str {
        match self {
            Backend::Skas => "RUSTUML_KERNEL_SKAS",
            Backend::Tt => "RUSTUML_KERNEL_TT",
        }
    }
}

/// One kernel run of one attack program.
struct Run {
    out: Outcome,
    /// name -> (result, detail), from the `attack NAME result=R detail=D` lines.
    lines: BTreeMap<String, (String, String)>,
    /// The canary's address and value, from the kernel's debug line.
    canary: Option<(u64, u64)>,
}

impl Run {
    fn get(&self, name: &str) -> (&str, &str) {
        match self.lines.get(name) {
            Some((r, d)) => (r, d),
            None => panic!(
                "no `attack {name}` line (kernel status {})\nstdout:\n{}\nstderr:\n{}",
                self.out.code, self.out.stdout, self.out.stderr
            ),
        }
    }

    /// Asserts `name` reported `result`; returns the detail.
    fn expect(&self, name: &str, result: &str) -> &str {
        let (r, d) = self.get(name);
        assert_eq!(
            r, result,
            "attack {name}: expected result={result}, got result={r} detail={d}\nkernel stderr:\n{}",
            self.out.stderr
        );
        d
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// Parses the `attack` lines of stdout and the `debug: canary at A = V`
/// line of stderr.
fn parse(out: Outcome) -> Run {
    let mut lines = BTreeMap::new();
    for l in out.stdout.lines() {
        let Some(rest) = l.strip_prefix("attack ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(" result=") else {
            continue;
        };
        let (result, detail) = rest.split_once(" detail=").unwrap_or((rest, ""));
        lines.insert(name.to_string(), (result.to_string(), detail.to_string()));
    }
    let canary = out.stderr.lines().find_map(|l| {
        let rest = l.split_once("debug: canary at ")?.1;
        let (addr, rest) = rest.split_once(" = ")?;
        let value = rest.split(';').next()?;
        Some((hex(addr)?, hex(value)?))
    });
    Run { out, lines, canary }
}

/// Boots `prog` as init under `b` with the canary revealed and 64 MiB.
fn attack(b: Backend, prog: &str, args: &[String]) -> Run {
    attack_with(b, &[], prog, args)
}

/// [`attack`] with extra kernel flags first.
fn attack_with(b: Backend, flags: &[&str], prog: &str, args: &[String]) -> Run {
    let kernel = kernel_from(b.var());
    let mut kargs: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    kargs.extend([
        "--mem".to_string(),
        "64M".into(),
        "--debug-reveal-canary".into(),
        "--root".into(),
        default_root().to_string_lossy().into_owned(),
        "--".into(),
        format!("/tests/{prog}"),
    ]);
    kargs.extend(args.iter().cloned());
    let out = run_kernel(&kernel, &kargs);
    assert!(
        !out.signaled,
        "{b:?}: the kernel died of signal {} running {prog}\nstderr:\n{}",
        out.code - 128,
        out.stderr
    );
    parse(out)
}

/// Host-side bait: a file only the host has, a path the guest tries to
/// create, a listening TCP port, and a pid (this test's) to kill.
struct Bait {
    dir: PathBuf,
    listener: TcpListener,
}

impl Bait {
    fn new(tag: &str) -> Bait {
        let dir =
            std::env::temp_dir().join(format!("rustuml-isolation-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the bait directory");
        std::fs::write(dir.join("host-only"), "RUSTUML-HOST-TOKEN\n").expect("write the bait file");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a host listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        Bait { dir, listener }
    }
    fn file(&self) -> String {
        self.dir.join("host-only").to_string_lossy().into_owned()
    }
    fn create(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
    fn port(&self) -> String {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(0)
            .to_string()
    }
    fn pid() -> String {
        std::process::id().to_string()
    }
    /// Asserts nothing reached the host.
    fn check(&self, created: &[&str]) {
        for name in created {
            let p = self.dir.join(name);
            assert!(
                !p.exists(),
                "the guest created the host file {}",
                p.display()
            );
        }
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("the host listener accepted a connection from {peer}"),
            Err(e) => panic!("accept on the host listener: {e}"),
        }
        // And this process, the target of kill(PID, SIGKILL), is still here.
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kernel_read(b: Backend) {
    let _l = lock();
    let r = attack(b, "attack_kernel_read", &[]);
    let (addr, value) = r
        .canary
        .unwrap_or_else(|| panic!("no debug canary line:\n{}", r.out.stderr));
    match b {
        Backend::Skas => {
            let d = r.expect("kernel_read", "blocked");
            assert!(d.contains("SIGSEGV"), "{d}");
        }
        Backend::Tt => {
            let d = r.expect("kernel_read", "succeeded");
            assert_eq!(
                d,
                format!("read {value:#x} at {addr:#x}"),
                "the value read is not the kernel's canary"
            );
        }
    }
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
}

fn kernel_write(b: Backend) {
    let _l = lock();
    let r = attack(b, "attack_kernel_write", &[]);
    let (_, value) = r
        .canary
        .unwrap_or_else(|| panic!("no debug canary line:\n{}", r.out.stderr));
    match b {
        Backend::Skas => {
            let d = r.expect("kernel_write", "blocked");
            assert!(d.contains("SIGSEGV"), "{d}");
            assert!(
                !r.out.stderr.contains("canary overwritten"),
                "{}",
                r.out.stderr
            );
        }
        Backend::Tt => {
            r.expect("kernel_write", "succeeded");
            let noticed =
                format!("canary overwritten: expected {value:#x}, found 0xbadc0dedeadbeef");
            assert!(
                r.out.stderr.contains(&noticed),
                "the kernel did not notice:\n{}",
                r.out.stderr
            );
        }
    }
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
}

fn other_guest(b: Backend) {
    let _l = lock();
    let r = attack(b, "attack_other_guest", &[]);
    let d = r.expect("other_guest_cow", "blocked");
    assert!(d.contains("gave our own"), "{d}");
    let d = r.expect("other_guest_fixed", "blocked");
    assert!(d.contains("SIGSEGV"), "{d}");
    match b {
        Backend::Skas => {
            let d = r.expect("other_guest_phys", "blocked");
            assert!(d.contains("SIGSEGV"), "{d}");
        }
        Backend::Tt => {
            r.expect("other_guest_phys", "succeeded");
        }
    }
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
}

fn host_syscall(b: Backend) {
    let _l = lock();
    let bait = Bait::new(&format!("{b:?}-host"));
    let args = [
        bait.file(),
        bait.create("created-by-guest"),
        bait.port(),
        Bait::pid(),
    ];
    let r = attack(b, "attack_host_syscall", &args);
    for name in ["host_open", "host_create", "host_socket", "host_kill"] {
        r.expect(name, "blocked");
    }
    bait.check(&["created-by-guest"]);
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
}

fn stub_syscall(b: Backend) {
    let _l = lock();
    let bait = Bait::new(&format!("{b:?}-stub"));
    let args = [bait.create("created-via-stub"), Bait::pid()];
    let r = attack(b, "attack_stub_syscall", &args);
    match b {
        Backend::Skas => {
            // Emulated (SYSEMU) or refused by the stub's seccomp filter
            // (SIGSYS); never executed on the host.
            let d = r.expect("stub_syscall", "blocked");
            assert!(
                d.contains("emulated by the guest kernel") || d.contains("SIGSYS"),
                "{d}"
            );
            let d = r.expect("kernel_text_syscall", "blocked");
            assert!(d.contains("SIGSEGV"), "{d}");
        }
        Backend::Tt => {
            r.expect("stub_syscall", "n/a");
            let d = r.expect("kernel_text_syscall", "blocked");
            assert!(
                d.contains("trapped and emulated") && d.contains("kill(") && d.contains("-ESRCH"),
                "{d}"
            );
        }
    }
    bait.check(&["created-via-stub"]);
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
}

fn guest_semantics(b: Backend) {
    let _l = lock();
    let r = attack(b, "attack_guest_semantics", &[]);
    r.expect("ptrace_attach", "blocked");
    r.expect("proc_mem", "blocked");
    // kill(1, SIGKILL) from a child: Linux ignores it for init; this kernel
    // may deliver it. Either way only the guest is affected: init survives
    // and reports, or init dies and the kernel exits cleanly with 137.
    match r.lines.get("kill_init") {
        Some((res, _)) => {
            assert_eq!(res, "blocked");
            assert_eq!(r.out.code, 0, "{}", r.out.stderr);
        }
        None => {
            assert!(
                r.out.stdout.lines().last() == Some("attack kill_init begin"),
                "{}",
                r.out.stdout
            );
            assert_eq!(
                r.out.code,
                128 + 9,
                "init killed: the kernel should exit with 137\n{}",
                r.out.stderr
            );
        }
    }
}

fn resources(b: Backend) {
    let _l = lock();
    let start = std::time::Instant::now();
    // 1000 processes: under skas each is a host stub process (ms each).
    let r = attack(b, "attack_resources", &["1000".into(), "1024".into()]);
    let d = r.expect("fork_bomb", "blocked");
    assert!(d.contains("init still running"), "{d}");
    let d = r.expect("mem_hog", "blocked");
    assert!(d.contains("a new process ran fine"), "{d}");
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    assert!(start.elapsed() < TIMEOUT, "took {:?}", start.elapsed());
}

/// The attacks on the seccomp trap path that a mailbox makes possible.
const MAILBOX_ATTACKS: [&str; 5] = ["forged_sleep", "sleepers_run", "stale_mapping", "frozen_executor", "forgery_fuzz"];

/// Attack 9: forged traps. 20 tries of each race, 10,000 forgeries.
fn trap_path(b: Backend) {
    let _l = lock();
    let args = ["20".to_string(), "10000".into()];
    let runs = match b {
        Backend::Skas => vec![("seccomp", attack(b, "attack_trap_path", &args)), ("ptrace", attack_with(b, &["--trap", "ptrace"], "attack_trap_path", &args))],
        Backend::Tt => vec![("tt", attack(b, "attack_trap_path", &args))],
    };
    for (mode, r) in runs {
        for name in MAILBOX_ATTACKS {
            // Only the seccomp stub has a mailbox the kernel reads.
            r.expect(name, if mode == "seccomp" { "blocked" } else { "n/a" });
        }
        let d = r.expect("probe_calls", "blocked");
        assert!(d.contains("SIGILL") && d.contains("ENXIO"), "{mode}: {d}");
        assert_eq!(r.out.code, 0, "{mode}: {}", r.out.stderr);
    }
}

/// Attack 11: the vDSO's clock data page, shared by every process and
/// written only by the kernel.
fn vdso(b: Backend) {
    let _l = lock();
    let runs = match b {
        Backend::Skas => vec![("seccomp", attack(b, "attack_vdso", &[])), ("ptrace", attack_with(b, &["--trap", "ptrace"], "attack_vdso", &[]))],
        Backend::Tt => vec![("tt", attack(b, "attack_vdso", &[]))],
    };
    for (mode, r) in runs {
        for name in ["vvar_write", "vvar_mprotect", "vvar_kernel_copy", "vvar_madvise_remove"] {
            let d = r.expect(name, "blocked");
            assert!(!d.contains("n/a"), "{mode}: {name}: {d}");
        }
        assert!(r.expect("vvar_write", "blocked").contains("SIGSEGV"), "{mode}");
        assert!(r.expect("vvar_mprotect", "blocked").contains("EACCES"), "{mode}");
        assert!(r.expect("vvar_kernel_copy", "blocked").contains("EFAULT"), "{mode}");
        assert_eq!(r.out.code, 0, "{mode}: {}", r.out.stderr);
    }
}

macro_rules! both {
    ($($f:ident),*) => {
        mod skas {
            $(#[test] fn $f() { super::$f(super::Backend::Skas) })*
        }
        mod tt {
            $(#[test] fn $f() { super::$f(super::Backend::Tt) })*
        }
    };
}

both!(
    kernel_read,
    kernel_write,
    other_guest,
    host_syscall,
    stub_syscall,
    guest_semantics,
    resources,
    trap_path,
    vdso
);
