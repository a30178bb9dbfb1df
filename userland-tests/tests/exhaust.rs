//! Resource exhaustion: a guest that multiplies one kind of kernel object
//! for ever cannot grow the host's memory past `--mem`. Each case boots the
//! skas kernel with `--mem 128M` and runs `/tests/exhaust KIND MAX`, while
//! this test samples the proportional set size (PSS) of the kernel and its
//! stub processes every few milliseconds. It checks that:
//! - the host memory of kernel + stubs stays within `--mem` plus
//!   [`OVERHEAD`], the documented fixed cost of the kernel binary, its
//!   tables and the root archive;
//! - the guest's heartbeat process kept running;
//! - the guest got the errno Linux gives when memory or a limit runs out
//!   (or reached MAX objects without any).
//!
//! `cargo xtask test` runs it at a CI size (MAX per kind below);
//! `cargo xtask isolation` sets `RUSTUML_EXHAUST_FULL=1` to run every kind
//! without a maximum.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Guest memory of every case.
const MEM_MIB: u64 = 128;
/// What the kernel process and its stubs may hold beyond `--mem`.
const OVERHEAD_MIB: u64 = 64;

/// PSS of `pid` and its descendants that the host cannot drop (anonymous
/// and shared memory: the heap, the guest's frames), in KiB. Clean file
/// pages (the kernel binary, the mapped root archive) are left out: they
/// are the host's page cache, shared with every guest of the same root and
/// reclaimable at any time.
fn pss_kib(pid: i32) -> u64 {
    descendants(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{}/smaps_rollup", p.pid)).ok())
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("Pss_Anon:") || l.starts_with("Pss_Shmem:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// A root with only `/tests/exhaust`: the root archive is part of the
/// kernel's fixed cost (in its heap when the archive is not a mapped cache
/// file), so the cases boot the smallest root that runs them.
fn small_root() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rustuml-exhaust-root-{}", std::process::id()));
    let tests = dir.join("tests");
    std::fs::create_dir_all(&tests).expect("create the small root");
    for prog in ["exhaust", "oom_victim"] {
        std::fs::copy(default_root().join("tests").join(prog), tests.join(prog)).expect("copy the test program");
    }
    dir
}

fn case(kind: &str, ci_max: u64) {
    let _l = lock();
    let full = std::env::var_os("RUSTUML_EXHAUST_FULL").is_some();
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let root = small_root();
    let mut args = vec![
        "--mem".to_string(),
        format!("{MEM_MIB}M"),
        "--root".into(),
        root.to_string_lossy().into_owned(),
        "--".into(),
        "/tests/exhaust".into(),
        kind.into(),
    ];
    if !full {
        args.push(ci_max.to_string());
    }
    let mut cmd = std::process::Command::new(&kernel);
    cmd.args(&args).env("TERM", "xterm").env("RUSTUML_HEAP_STATS", "1");
    let mut child = spawn(&mut cmd);
    let pid = child.id() as i32;
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));
    let start = Instant::now();
    let limit = Duration::from_secs(if full { 900 } else { 120 });
    let mut peak = 0u64;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        peak = peak.max(pss_kib(pid));
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("exhaust {kind} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let (code, signaled) = shell_code(status);
    let what = format!("exhaust {kind}:\n{stdout}\n{stderr}");
    let heap = stderr.lines().find(|l| l.starts_with("kernel heap:")).unwrap_or("kernel heap: ?");
    eprintln!("exhaust {kind}: peak PSS (anon + shmem) of kernel + stubs {} MiB; {heap}; {}", peak >> 10, stdout.trim().replace('\n', "; "));
    assert!(!signaled, "the kernel died of a signal: {what}");
    assert_eq!(code, 0, "the heartbeat did not survive: {what}");
    let bound = (MEM_MIB + OVERHEAD_MIB) << 10;
    assert!(peak <= bound, "kernel + stubs reached {peak} KiB, more than --mem + overhead = {bound} KiB: {what}");
    let line = stdout.lines().find(|l| l.starts_with(&format!("exhaust {kind}:"))).unwrap_or_else(|| panic!("no result line: {what}"));
    if line.contains("grower killed by") {
        // The guest ran out of pages: its own OOM handling killed the grower.
        assert!(kind == "mmaps" || kind == "threads", "only page-hungry kinds may end in a kill: {what}");
    } else if kind == "closed" {
        assert!(line.ends_with("reached the maximum") || full, "closed connections must never run out: {what}");
    } else if !line.ends_with("reached the maximum") {
        // ETIMEDOUT: a connect whose SYN the full listen queue kept dropping.
        // ENOSPC: a memory file system out of room for inodes (tmpfs).
        let ok = ["ENOBUFS", "ENOMEM", "EMFILE", "ENFILE", "EAGAIN", "EADDRINUSE", "ETIMEDOUT", "ENOSPC"];
        assert!(ok.iter().any(|e| line.ends_with(e)), "not an errno Linux gives for running out: {what}");
    }
    assert!(!stderr.contains("kernel: heap past"), "the heap backstop fired: {what}");
}

#[test]
fn exhaust_listeners() {
    case("listeners", 20_000);
}

#[test]
fn exhaust_open_connections() {
    case("conns", 5_000);
}

#[test]
fn exhaust_closed_connections() {
    case("closed", 3_000);
}

#[test]
fn exhaust_udp_sockets() {
    case("udp", 5_000);
}

#[test]
fn exhaust_full_pipes() {
    case("pipes", 5_000);
}

#[test]
fn exhaust_epoll_items() {
    case("epoll", 20_000);
}

#[test]
fn exhaust_timers() {
    case("timers", 20_000);
}

#[test]
fn exhaust_threads() {
    case("threads", 2_000);
}

#[test]
fn exhaust_one_page_mmaps() {
    case("mmaps", 50_000);
}

/// Socket pairs holding full queues: sockets and queued bytes are charged.
#[test]
fn exhaust_unix_socket_pairs() {
    case("unix", 5_000);
}

#[test]
fn exhaust_netlink_sockets() {
    case("netlink", 100_000);
}

/// Empty files: every inode and name the guest creates is charged.
#[test]
fn exhaust_empty_files() {
    case("files", 200_000);
}

/// Hard links to one file: each name is charged.
#[test]
fn exhaust_hard_links() {
    case("links", 500_000);
}

/// Mappings never touched grow only the kernel's tables: charged, and
/// refused at Linux's `vm.max_map_count` (65,530) with ENOMEM.
#[test]
fn exhaust_untouched_mappings() {
    case("vmas", 100_000);
}

/// The OOM killer picks the process holding the most memory: a child that
/// filled half the guest dies of SIGKILL when its smaller parent asks for as
/// much, and the parent gets it (on the faulting process, as before, it
/// would have been the parent that died).
#[test]
fn oom_killer_picks_the_biggest_process() {
    let _l = lock();
    for (hal, var) in [("skas", "RUSTUML_KERNEL_SKAS"), ("tt", "RUSTUML_KERNEL_TT")] {
        let kernel = kernel_from(var);
        let root = small_root();
        let out = run_kernel(&kernel, &["--mem", "96M", "--root", &root.to_string_lossy(), "--", "/tests/oom_victim", "48"]);
        assert_eq!(out.code, 0, "{hal}: {out:?}");
        assert!(out.stdout.contains("child: killed by signal 9"), "{hal}: {out:?}");
        assert!(out.stdout.contains("parent: got 48 MiB"), "{hal}: {out:?}");
        assert!(out.stderr.contains("Out of memory: Killed process 2 (oom_victim)"), "{hal}: {out:?}");
    }
}
