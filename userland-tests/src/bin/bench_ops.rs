//! `bench_ops OP ITERS [PATH]`: times ITERS repetitions of one operation
//! with the raw `clock_gettime` system call and prints one machine-readable
//! line, `bench OP VALUE UNIT` (UNIT `ns` per operation, or `MB/s`), or
//! `bench OP n/a REASON` with exit status 1 when the operation failed.
//! `cargo xtask bench` runs it natively and inside the kernel.
//!
//! | OP | what one operation is | PATH |
//! | --- | --- | --- |
//! | `null_syscall` | `getppid` | |
//! | `open_close` | `open(PATH, O_RDONLY)` + `close` | an existing file |
//! | `stat` | `stat(PATH)` | an existing file |
//! | `pipe_rtt` | one byte there and back between two processes over two pipes | |
//! | `fork_exit` | `fork`, the child `_exit(0)`s, `wait4` | |
//! | `fork_exec` | `fork`, the child `execve`s PATH, `wait4` | a program that exits 0 |
//! | `page_fault` | first write to a fresh anonymous page | |
//! | `mmap_munmap` | `mmap` of 64 KiB anonymous + `munmap` (untouched) | |
//! | `file_rw` | `pwrite` 64 KiB + `pread` 64 KiB at offset 0 (MB/s of both) | a directory to create the file in |
//! | `pipe_bw` | 64 KiB `write`s into a pipe read by another process (MB/s) | |
//! | `ctx_switch` | one switch between two processes on one CPU handing a turn to each other with `sched_yield` (half a round trip) | |
//! | `signal_rtt` | `kill(getpid(), SIGUSR1)`, the handler runs and returns (`rt_sigreturn`) | |
//! | `clock_gettime` | the C library's `clock_gettime(CLOCK_MONOTONIC)` (the vDSO where there is one) | |
//! | `nanosleep_hog` | `nanosleep(1 ms)` while a child spins on the same CPU (the whole sleep, wake-up included) | |
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use userland_tests::{
    args, errno, errno_name, exit_now, fail, fork, mmap_anon, now_ns, say, wait_for, PAGE,
};

/// Block size of the bandwidth tests.
const BLOCK: usize = 64 * 1024;

/// Times `n` runs of `op` after `n / 10` untimed warm-up runs; ns per run.
fn per_op(n: usize, mut op: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    for _ in 0..n / 10 {
        op()?;
    }
    let t0 = now_ns();
    for _ in 0..n {
        op()?;
    }
    Ok((now_ns() - t0) as f64 / n as f64)
}

fn cpath(path: Option<&String>) -> Result<CString, String> {
    let p = path.ok_or("missing-PATH-argument")?;
    CString::new(p.as_str()).map_err(|_| "bad-PATH".to_string())
}

fn null_syscall(n: usize) -> Result<f64, String> {
    per_op(n, || {
        // SAFETY: getppid has no arguments and no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
        Ok(())
    })
}

fn open_close(n: usize, path: &CString) -> Result<f64, String> {
    per_op(n, || {
        // SAFETY: path is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            return Err(fail("open"));
        }
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    })
}

fn stat(n: usize, path: &CString) -> Result<f64, String> {
    per_op(n, || {
        // SAFETY: st is a valid out-pointer, path NUL-terminated.
        let r = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::stat(path.as_ptr(), &mut st)
        };
        if r < 0 {
            return Err(fail("stat"));
        }
        Ok(())
    })
}

fn pipe() -> Result<[c_int; 2], String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(fail("pipe"));
    }
    Ok(fds)
}

fn read_exact(fd: c_int, mut buf: &mut [u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            return false;
        }
        buf = &mut buf[r as usize..];
    }
    true
}

fn write_all(fd: c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            return false;
        }
        buf = &buf[r as usize..];
    }
    true
}

fn close(fd: c_int) {
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

/// Waits for `pid` and checks that it exited 0.
fn reap(pid: libc::pid_t) -> Result<(), String> {
    match wait_for(pid) {
        Ok((_, st)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
        Ok((_, st)) => Err(format!("child-status-{st:#x}")),
        Err(e) => Err(format!("wait4:{}", errno_name(e))),
    }
}

fn pipe_rtt(n: usize) -> Result<f64, String> {
    let there = pipe()?;
    let back = pipe()?;
    let total = n + n / 10;
    let pid = fork();
    if pid == 0 {
        close(there[1]);
        close(back[0]);
        let mut b = [0u8; 1];
        for _ in 0..total {
            if !read_exact(there[0], &mut b) || !write_all(back[1], &b) {
                exit_now(1);
            }
        }
        exit_now(0);
    }
    close(there[0]);
    close(back[1]);
    let r = per_op(n, || {
        let mut b = [7u8; 1];
        if !write_all(there[1], &b) {
            return Err(fail("write"));
        }
        if !read_exact(back[0], &mut b) {
            return Err(fail("read"));
        }
        Ok(())
    });
    close(there[1]);
    close(back[0]);
    let reaped = reap(pid);
    let r = r?;
    reaped.map(|_| r)
}

fn fork_exit(n: usize) -> Result<f64, String> {
    per_op(n, || {
        let pid = fork();
        if pid == 0 {
            exit_now(0);
        }
        reap(pid)
    })
}

fn fork_exec(n: usize, prog: &CString) -> Result<f64, String> {
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp: [*const c_char; 1] = [std::ptr::null()];
    per_op(n, || {
        let pid = fork();
        if pid == 0 {
            // SAFETY: argv and envp are NULL-terminated arrays of C strings.
            unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            exit_now(127);
        }
        reap(pid)
    })
}

fn page_fault(n: usize) -> Result<f64, String> {
    let pages = n.max(1);
    let p = mmap_anon(
        pages * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    )
    .map_err(|e| format!("mmap:{}", errno_name(e)))?;
    let t0 = now_ns();
    for i in 0..pages {
        // SAFETY: inside the mapping just made.
        unsafe { p.add(i * PAGE).write_volatile(1) };
    }
    let t = (now_ns() - t0) as f64 / pages as f64;
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(p.cast(), pages * PAGE) };
    Ok(t)
}

fn mmap_munmap(n: usize) -> Result<f64, String> {
    per_op(n, || {
        let p = mmap_anon(BLOCK, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)
            .map_err(|e| format!("mmap:{}", errno_name(e)))?;
        // SAFETY: unmapping what we just mapped.
        if unsafe { libc::munmap(p.cast(), BLOCK) } < 0 {
            return Err(fail("munmap"));
        }
        Ok(())
    })
}

/// MB/s (10^6 bytes per second) for `bytes` moved in `ns`.
fn mb_s(bytes: f64, ns: f64) -> f64 {
    bytes / ns * 1000.0
}

fn file_rw(n: usize, dir: &str) -> Result<f64, String> {
    let path = CString::new(format!(
        "{}/bench_ops.{}.tmp",
        dir.trim_end_matches('/'),
        std::process::id()
    ))
    .map_err(|_| "bad-PATH".to_string())?;
    // SAFETY: path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(fail("open-O_CREAT"));
    }
    let wbuf = vec![0x5au8; BLOCK];
    let mut rbuf = vec![0u8; BLOCK];
    let r = per_op(n, || {
        // SAFETY: the buffers are valid for BLOCK bytes.
        let w = unsafe { libc::pwrite(fd, wbuf.as_ptr().cast(), BLOCK, 0) };
        if w != BLOCK as isize {
            return Err(fail("pwrite"));
        }
        // SAFETY: as above.
        let r = unsafe { libc::pread(fd, rbuf.as_mut_ptr().cast(), BLOCK, 0) };
        if r != BLOCK as isize {
            return Err(fail("pread"));
        }
        Ok(())
    });
    close(fd);
    // SAFETY: path is NUL-terminated.
    unsafe { libc::unlink(path.as_ptr()) };
    if rbuf[BLOCK - 1] != 0x5a && r.is_ok() {
        return Err("read-back-mismatch".into());
    }
    r.map(|ns| mb_s(2.0 * BLOCK as f64, ns))
}

fn pipe_bw(n: usize) -> Result<f64, String> {
    let fds = pipe()?;
    let pid = fork();
    if pid == 0 {
        close(fds[0]);
        let buf = vec![0x33u8; BLOCK];
        for _ in 0..n {
            if !write_all(fds[1], &buf) {
                exit_now(1);
            }
        }
        exit_now(0);
    }
    close(fds[1]);
    let mut buf = vec![0u8; BLOCK];
    let t0 = now_ns();
    let mut total = 0usize;
    let want = n * BLOCK;
    while total < want {
        // SAFETY: buf is valid for its length.
        let r = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), BLOCK) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            close(fds[0]);
            let _ = reap(pid);
            return Err(if r == 0 {
                "early-eof".into()
            } else {
                fail("read")
            });
        }
        total += r as usize;
    }
    let ns = (now_ns() - t0) as f64;
    close(fds[0]);
    reap(pid)?;
    Ok(mb_s(want as f64, ns))
}

/// Pins this process to CPU 0, or checks that it can only run on one CPU
/// anyway (the guest kernels have one CPU and no `sched_setaffinity`).
fn one_cpu() -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; the calls only read/write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            return Ok(());
        }
        let e = errno();
        let mut got: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut got) == 0
            && libc::CPU_COUNT(&got) == 1
        {
            return Ok(());
        }
        Err(format!("cannot-pin-to-one-CPU:{}", errno_name(e)))
    }
}

fn sched_yield() {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_sched_yield) };
}

/// Two processes on one CPU pass a turn back and forth through a shared
/// word; whoever waits for its turn calls `sched_yield`, so every hand-off
/// is a switch to the other process. ns per switch (half a round trip).
fn ctx_switch(n: usize) -> Result<f64, String> {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    one_cpu()?;
    let page = mmap_anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)
        .map_err(|e| format!("mmap-MAP_SHARED:{}", errno_name(e)))?;
    // SAFETY: a fresh, zeroed, page-aligned shared page outlives both users.
    let turn: &AtomicU32 = unsafe { &*page.cast::<AtomicU32>() };
    let total = n + n / 10;
    let pid = fork();
    if pid == 0 {
        for _ in 0..total {
            while turn.load(SeqCst) != 1 {
                sched_yield();
            }
            turn.store(0, SeqCst);
        }
        exit_now(0);
    }
    let r = per_op(n, || {
        turn.store(1, SeqCst);
        while turn.load(SeqCst) != 0 {
            sched_yield();
        }
        Ok(())
    });
    let reaped = reap(pid);
    // SAFETY: unmapping our own mapping; the child is gone.
    unsafe { libc::munmap(page.cast(), PAGE) };
    let r = r?;
    reaped.map(|_| r / 2.0)
}

/// Handler invocations so far.
static SIGNALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_signal(_sig: c_int) {
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// `kill` to itself with a handler installed: delivery, the handler, and
/// `rt_sigreturn`. ns per signal.
fn signal_rtt(n: usize) -> Result<f64, String> {
    // SAFETY: installs a handler that only touches an atomic.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut())
    };
    if rc < 0 {
        return Err(fail("sigaction"));
    }
    // SAFETY: no arguments.
    let me = unsafe { libc::getpid() };
    SIGNALS.store(0, std::sync::atomic::Ordering::SeqCst);
    let r = per_op(n, || {
        // SAFETY: signalling ourselves; the handler is installed.
        if unsafe { libc::syscall(libc::SYS_kill, me, libc::SIGUSR1) } < 0 {
            return Err(fail("kill"));
        }
        Ok(())
    })?;
    let got = SIGNALS.load(std::sync::atomic::Ordering::SeqCst);
    if got != n + n / 10 {
        return Err(format!(
            "handler-ran-{got}-times-for-{}-signals",
            n + n / 10
        ));
    }
    Ok(r)
}

fn clock_gettime(n: usize) -> Result<f64, String> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    per_op(n, || {
        // SAFETY: a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Ok(())
    })
}

/// A child spins on this CPU (both pinned to the one this process runs
/// on) while the parent sleeps 1 ms `n` times; ns per sleep.
fn nanosleep_hog(n: usize) -> Result<f64, String> {
    // SAFETY: sched_getcpu has no preconditions; the set is zeroed, then one CPU is set.
    unsafe {
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let hog = fork();
    if hog == 0 {
        loop {
            std::hint::spin_loop();
        }
    }
    let r = per_op(n, || {
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        // SAFETY: a valid timespec, no remainder wanted.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        Ok(())
    });
    // SAFETY: ends the child made above.
    unsafe { libc::kill(hog, libc::SIGKILL) };
    let _ = wait_for(hog);
    r
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let op = args.get(1).map(String::as_str).unwrap_or("null_syscall");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
        .max(1);
    let path = args.get(3);
    let (result, unit) = match op {
        "null_syscall" => (null_syscall(n), "ns"),
        "open_close" => (cpath(path).and_then(|p| open_close(n, &p)), "ns"),
        "stat" => (cpath(path).and_then(|p| stat(n, &p)), "ns"),
        "pipe_rtt" => (pipe_rtt(n), "ns"),
        "fork_exit" => (fork_exit(n), "ns"),
        "fork_exec" => (cpath(path).and_then(|p| fork_exec(n, &p)), "ns"),
        "page_fault" => (page_fault(n), "ns"),
        "mmap_munmap" => (mmap_munmap(n), "ns"),
        "file_rw" => (
            path.ok_or_else(|| "missing-PATH-argument".to_string())
                .and_then(|d| file_rw(n, d)),
            "MB/s",
        ),
        "pipe_bw" => (pipe_bw(n), "MB/s"),
        "ctx_switch" => (ctx_switch(n), "ns"),
        "signal_rtt" => (signal_rtt(n), "ns"),
        "clock_gettime" => (clock_gettime(n), "ns"),
        "nanosleep_hog" => (nanosleep_hog(n), "ns"),
        _ => (Err("unknown-operation".into()), ""),
    };
    match result {
        Ok(v) => {
            say!("bench {op} {v:.3} {unit}");
            0
        }
        Err(why) => {
            say!("bench {op} n/a {why}");
            1
        }
    }
}
