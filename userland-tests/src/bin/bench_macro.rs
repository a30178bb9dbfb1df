//! `bench_macro OP ITERS [DIR]`: the macro benchmarks of `cargo xtask
//! bench`, timed from inside with the raw `clock_gettime` system call. Prints
//! `bench OP VALUE ns` (ns per unit of work), or `bench OP n/a REASON` with
//! exit status 1. The programs it starts are the host's own (`/bin/sh`,
//! `/bin/true`, `tar`, `gzip`, `python3`), which the benchmark root holds as
//! the default root does; natively they are the host's.
//!
//! | OP | one unit of work | ITERS |
//! | --- | --- | --- |
//! | `spawn_loop` | one `/bin/true` started by `/bin/sh -c 'i=0; while [ $i -lt ITERS ]; do /bin/true; i=$((i+1)); done'` (the whole loop's time / ITERS) | processes in the loop |
//! | `tar_gz` | write a tree of 128 files (≈ 1.9 MiB) under DIR, `tar czf` it, `tar xzf` it elsewhere, compare every file | round trips |
//! | `python_start` | `python3 -c pass`, started and waited for | starts |
//! | `futex_ping` | one round trip between two threads handing a turn over a futex word (`FUTEX_WAIT`/`FUTEX_WAKE`) | round trips |
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CString;
use std::os::raw::c_char;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use userland_tests::{args, errno, errno_name, exit_now, fork, now_ns, say, wait_for};

/// Runs `argv` (argv[0] an absolute path) with a fixed environment and
/// waits for it; Ok when it exited 0.
fn run(argv: &[&str]) -> Result<(), String> {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(*a).map_err(|_| "NUL-in-argument".to_string()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = ["PATH=/usr/bin:/bin", "HOME=/", "LC_ALL=C"]
        .iter()
        .map(|e| CString::new(*e).unwrap_or_default())
        .collect();
    let mut cargv: Vec<*const c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    cargv.push(std::ptr::null());
    let mut cenv: Vec<*const c_char> = env.iter().map(|c| c.as_ptr()).collect();
    cenv.push(std::ptr::null());
    let pid = fork();
    if pid < 0 {
        return Err(format!("fork:{}", errno_name(errno())));
    }
    if pid == 0 {
        // SAFETY: NULL-terminated arrays of C strings that outlive the call.
        unsafe { libc::execve(cargv[0], cargv.as_ptr(), cenv.as_ptr()) };
        exit_now(127);
    }
    match wait_for(pid) {
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
        Ok((_, st)) if libc::WIFEXITED(st) => {
            Err(format!("{}-exited-{}", argv[0], libc::WEXITSTATUS(st)))
        }
        Ok((_, st)) => Err(format!("{}-status-{st:#x}", argv[0])),
        Err(e) => Err(format!("wait4:{}", errno_name(e))),
    }
}

/// The first of `candidates` that exists.
fn find(candidates: &[&'static str]) -> Result<&'static str, String> {
    candidates
        .iter()
        .copied()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| format!("no-{}", candidates[0]))
}

fn spawn_loop(n: usize) -> Result<f64, String> {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let t0 = now_ns();
    run(&["/bin/sh", "-c", &script])?;
    Ok((now_ns() - t0) as f64 / n as f64)
}

/// Deterministic, gzip-compressible file contents: words from a small
/// vocabulary picked by a linear congruential generator.
fn contents(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "kernel", "page", "fault", "trap", "stub", "futex", "pipe", "signal", "mmap", "fork",
        "exec", "wait", "tmpfs", "inode", "dentry", "tlb",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(WORDS[(x >> 60) as usize].as_bytes());
        out.push(if (x >> 20).is_multiple_of(12) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

/// The tree: 8 directories of 16 files, 1–29 KiB each.
fn tree_files() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for d in 0..8u64 {
        for f in 0..16u64 {
            let len = 1024 + ((d * 16 + f) * 7919 % 28) as usize * 1024;
            v.push((format!("d{d}/f{f}.txt"), contents(d * 100 + f, len)));
        }
    }
    v
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!(
        "{what}-{}:{}",
        p.display(),
        e.raw_os_error().map(errno_name).unwrap_or(e.to_string())
    )
}

fn tar_round_trip(work: &Path, files: &[(String, Vec<u8>)], tar: &str) -> Result<(), String> {
    let src = work.join("src");
    for (name, data) in files {
        let p = src.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("mkdir", d, e))?;
        }
        std::fs::write(&p, data).map_err(|e| io("write", &p, e))?;
    }
    let archive = work.join("tree.tgz");
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(|e| io("mkdir", &out, e))?;
    let (a, w, o) = (
        archive.display().to_string(),
        work.display().to_string(),
        out.display().to_string(),
    );
    run(&[tar, "czf", &a, "-C", &w, "src"])?;
    run(&[tar, "xzf", &a, "-C", &o])?;
    for (name, data) in files {
        let p = out.join("src").join(name);
        let got = std::fs::read(&p).map_err(|e| io("read", &p, e))?;
        if &got != data {
            return Err(format!("{name}-differs-after-the-round-trip"));
        }
    }
    Ok(())
}

fn tar_gz(n: usize, dir: &str) -> Result<f64, String> {
    let tar = find(&["/bin/tar", "/usr/bin/tar"])?;
    find(&["/bin/gzip", "/usr/bin/gzip"])?;
    let files = tree_files();
    let work = PathBuf::from(dir).join(format!("bench_macro.{}", std::process::id()));
    let mut total = 0i128;
    for _ in 0..n {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| io("mkdir", &work, e))?;
        let t0 = now_ns();
        let r = tar_round_trip(&work, &files, tar);
        total += now_ns() - t0;
        let _ = std::fs::remove_dir_all(&work);
        r?;
    }
    Ok(total as f64 / n as f64)
}

fn python_start(n: usize) -> Result<f64, String> {
    let py = find(&["/usr/bin/python3", "/bin/python3", "/usr/local/bin/python3"])?;
    // One untimed start: the first one reads the files from the host.
    run(&[py, "-c", "pass"])?;
    let t0 = now_ns();
    for _ in 0..n {
        run(&[py, "-c", "pass"])?;
    }
    Ok((now_ns() - t0) as f64 / n as f64)
}

fn futex(w: &AtomicU32, op: i32, val: u32) {
    // SAFETY: the futex call only reads the word (WAIT) or wakes waiters on it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// Waits until `w` holds `want`, sleeping on the futex while it does not.
fn await_turn(w: &AtomicU32, want: u32) {
    loop {
        let v = w.load(SeqCst);
        if v == want {
            return;
        }
        futex(w, libc::FUTEX_WAIT, v);
    }
}

fn hand_over(w: &AtomicU32, to: u32) {
    w.store(to, SeqCst);
    futex(w, libc::FUTEX_WAKE, 1);
}

fn futex_ping(n: usize) -> Result<f64, String> {
    let turn = Arc::new(AtomicU32::new(0));
    let total = n + n / 10;
    let other = Arc::clone(&turn);
    let peer = std::thread::Builder::new()
        .spawn(move || {
            for _ in 0..total {
                await_turn(&other, 1);
                hand_over(&other, 0);
            }
        })
        .map_err(|e| format!("thread-spawn:{e}"))?;
    let mut t0 = now_ns();
    for i in 0..total {
        if i == n / 10 {
            t0 = now_ns();
        }
        hand_over(&turn, 1);
        await_turn(&turn, 0);
    }
    let ns = (now_ns() - t0) as f64 / n as f64;
    peer.join().map_err(|_| "thread-panicked".to_string())?;
    Ok(ns)
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let op = args.get(1).map(String::as_str).unwrap_or("futex_ping");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(1);
    let dir = args.get(3).map(String::as_str).unwrap_or("/tmp");
    let result = match op {
        "spawn_loop" => spawn_loop(n),
        "tar_gz" => tar_gz(n, dir),
        "python_start" => python_start(n),
        "futex_ping" => futex_ping(n),
        _ => Err("unknown-operation".into()),
    };
    match result {
        Ok(v) => {
            say!("bench {op} {v:.3} ns");
            0
        }
        Err(why) => {
            say!("bench {op} n/a {why}");
            1
        }
    }
}
