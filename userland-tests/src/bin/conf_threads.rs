//! Conformance: threads. std::thread with a Mutex/Condvar ping-pong, shared
//! memory between threads, getpid/gettid, per-thread FPU state, a raw
//! pthread-like `clone` (CLONE_VM|CLONE_THREAD|…|CLONE_PARENT_SETTID|
//! CLONE_CHILD_CLEARTID) joined through the futex on the tid word, thread
//! exit vs exit_group, a signal to one thread, fork from a threaded process
//! and vfork sharing memory. Deterministic output; exits 0 if all passed.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use userland_tests::{describe_status, errno, errno_name, exit_now, fork, in_child, say, sleep_ms, wait_for};

fn gettid() -> i64 {
    // SAFETY: plain system call.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

fn ping_pong() {
    let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
    let p2 = pair.clone();
    const ROUNDS: u32 = 500;
    let t = std::thread::spawn(move || {
        let (m, c) = &*p2;
        for i in 0..ROUNDS {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            while *g != 2 * i + 1 {
                g = c.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            *g += 1;
            c.notify_one();
        }
        gettid()
    });
    let (m, c) = &*pair;
    for i in 0..ROUNDS {
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        while *g != 2 * i {
            g = c.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        *g += 1;
        c.notify_one();
    }
    let tid = t.join().unwrap_or(0);
    let v = *m.lock().unwrap_or_else(|e| e.into_inner());
    ok(&format!("Mutex/Condvar ping-pong: {v} turns"), v == 2 * ROUNDS);
    // SAFETY: getpid.
    let pid = unsafe { libc::getpid() } as i64;
    ok("a thread has its own tid, not the pid", tid != 0 && tid != pid && gettid() == pid);
}

fn shared_counter() {
    let counter = Arc::new(AtomicU64::new(0));
    let pids = Arc::new(Mutex::new(Vec::new()));
    let hs: Vec<_> = (0..4)
        .map(|k| {
            let c = counter.clone();
            let p = pids.clone();
            std::thread::spawn(move || {
                // SAFETY: getpid.
                p.lock().unwrap_or_else(|e| e.into_inner()).push(unsafe { libc::getpid() });
                let mut f = 1.0f64 + k as f64;
                for _ in 0..10_000 {
                    c.fetch_add(1, SeqCst);
                    f = f * 1.0000001 + 0.5;
                    if f > 1e9 {
                        f = 1.0;
                    }
                    std::hint::spin_loop();
                }
                (k, f)
            })
        })
        .collect();
    let mut fp_ok = true;
    let mut results = Vec::new();
    for h in hs {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => fp_ok = false,
        }
    }
    // Each thread's FP result must equal the same computation done here.
    for (k, f) in results {
        let mut g = 1.0f64 + k as f64;
        for _ in 0..10_000 {
            g = g * 1.0000001 + 0.5;
            if g > 1e9 {
                g = 1.0;
            }
        }
        fp_ok &= g == f;
    }
    ok(&format!("4 threads × 10000 increments = {}", counter.load(SeqCst)), counter.load(SeqCst) == 40_000);
    // SAFETY: getpid.
    let me = unsafe { libc::getpid() };
    ok("every thread sees the same getpid", pids.lock().unwrap_or_else(|e| e.into_inner()).iter().all(|p| *p == me));
    ok("per-thread FPU state", fp_ok);
}

static RAW_FLAG: AtomicU32 = AtomicU32::new(0);
static PTID: AtomicI32 = AtomicI32::new(0);
static CTID: AtomicI32 = AtomicI32::new(-1);

fn raw_clone() {
    let stack_size = 64 * 1024;
    let stack = match userland_tests::mmap_anon(stack_size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) {
        Ok(p) => p,
        Err(e) => {
            ok(&format!("mmap stack: {}", errno_name(e)), false);
            return;
        }
    };
    let top = stack as u64 + stack_size as u64;
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    CTID.store(-1, SeqCst);
    let ret: i64;
    // SAFETY: the child runs only the asm below on its own stack: it stores
    // 42 to RAW_FLAG and calls exit (thread exit), never returning to Rust.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov dword ptr [r12], 42",
            "mov eax, 60",
            "xor edi, edi",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone => ret,
            in("rdi") flags,
            in("rsi") top,
            in("rdx") PTID.as_ptr(),
            in("r10") CTID.as_ptr(),
            in("r8") 0u64,
            in("r12") RAW_FLAG.as_ptr(),
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ok("raw clone returns the new tid", ret > 0);
    // Join: wait until the kernel clears the tid word and wakes us.
    let mut spins = 0;
    loop {
        let v = CTID.load(SeqCst);
        if v == 0 {
            break;
        }
        // SAFETY: futex wait on our own word.
        unsafe { libc::syscall(libc::SYS_futex, CTID.as_ptr(), libc::FUTEX_WAIT, v, std::ptr::null::<libc::timespec>()) };
        spins += 1;
        if spins > 1000 {
            break;
        }
    }
    ok("CLONE_CHILD_CLEARTID cleared the tid word on thread exit", CTID.load(SeqCst) == 0);
    ok("CLONE_PARENT_SETTID stored the tid", PTID.load(SeqCst) as i64 == ret);
    ok("the thread wrote shared memory", RAW_FLAG.load(SeqCst) == 42);
    // SAFETY: unmap the stack.
    unsafe { libc::munmap(stack.cast(), stack_size) };
}

static SIG_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_usr1(_sig: i32) {
    SIG_TID.store(gettid() as i32, SeqCst);
}

fn thread_signal() {
    // SAFETY: install a plain handler.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as usize) };
    let ready = Arc::new(AtomicI32::new(0));
    let r2 = ready.clone();
    let t = std::thread::spawn(move || {
        r2.store(gettid() as i32, SeqCst);
        while SIG_TID.load(SeqCst) == 0 {
            sleep_ms(1);
        }
    });
    while ready.load(SeqCst) == 0 {
        sleep_ms(1);
    }
    let tid = ready.load(SeqCst);
    // SAFETY: tgkill to our own thread.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
    let _ = t.join();
    ok("tgkill runs the handler in the target thread", SIG_TID.load(SeqCst) == tid);
    // SAFETY: restore.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_DFL) };
}

fn exits() {
    let st = in_child(|| {
        std::thread::spawn(|| {
            sleep_ms(20);
            // exit_group from a thread ends the whole process.
            std::process::exit(7);
        });
        loop {
            sleep_ms(1000);
        }
    });
    ok(&format!("exit_group from a thread ends the process ({})", describe_status(st)), libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7);
    let st = in_child(|| {
        let t = std::thread::spawn(|| {
            sleep_ms(20);
            3
        });
        // The main thread exits alone (SYS_exit); the process lives on until
        // the other thread calls exit_group.
        let _ = t;
        std::thread::spawn(|| {
            sleep_ms(60);
            // SAFETY: exit_group.
            unsafe { libc::syscall(libc::SYS_exit_group, 4) };
        });
        // SAFETY: thread exit of the main thread.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        0
    });
    ok(&format!("main thread's exit leaves the process to the others ({})", describe_status(st)), libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 4);
    let st = in_child(|| {
        std::thread::spawn(|| loop {
            sleep_ms(1000);
        });
        sleep_ms(10);
        // SAFETY: a fatal signal kills every thread.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        sleep_ms(1000);
        0
    });
    ok(&format!("a fatal signal kills all threads ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM);
}

fn fork_from_threads() {
    let t = std::thread::spawn(|| sleep_ms(50));
    let pid = fork();
    if pid == 0 {
        // The forking thread continues as the child's only thread.
        // SAFETY: getpid.
        let single = gettid() == unsafe { libc::getpid() } as i64;
        exit_now(if single { 0 } else { 1 });
    }
    let w = wait_for(pid);
    let _ = t.join();
    ok("fork from a threaded process", matches!(w, Ok((_, s)) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0));
}

static VFORK_WORD: AtomicI32 = AtomicI32::new(0);

#[allow(deprecated)]
fn vfork_test() {
    // SAFETY: the vfork child only stores to a static and calls _exit.
    let pid = unsafe { libc::vfork() };
    if pid == 0 {
        VFORK_WORD.store(5, SeqCst);
        // SAFETY: _exit is allowed in a vfork child.
        unsafe { libc::_exit(3) };
    }
    ok("vfork: the parent resumes after the child exits and sees its write", VFORK_WORD.load(SeqCst) == 5);
    let w = wait_for(pid);
    ok("vfork child status", matches!(w, Ok((_, s)) if libc::WEXITSTATUS(s) == 3));
    let _ = errno();
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    say!("conf_threads");
    ping_pong();
    shared_counter();
    raw_clone();
    thread_signal();
    exits();
    fork_from_threads();
    vfork_test();
    let f = FAILS.load(SeqCst);
    say!("conf_threads: {} failure(s)", f);
    if f == 0 {
        0
    } else {
        1
    }
}
