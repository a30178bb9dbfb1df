//! Conformance: signals. Handlers with SA_SIGINFO (siginfo fields, register
//! and FPU state preserved across the handler), masks and pending sets,
//! SA_RESTART vs EINTR, SA_NODEFER, SA_RESETHAND, sigaltstack, synchronous
//! faults delivered to handlers (SIGSEGV with si_addr/si_code, SIGILL,
//! SIGFPE, SIGTRAP), default actions, stop/continue with wait statuses,
//! SIGCHLD, rt_sigtimedwait, pause + setitimer, nanosleep's remainder, a
//! garbage rt_sigreturn frame. Prints deterministic lines; exits 0 if every
//! check passed.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::os::raw::c_char;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use userland_tests::{describe_status, errno, errno_name, exit_now, fork, in_child, say, sleep_ms, wait_for};

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

fn set_handler(sig: i32, h: Handler, flags: i32, mask: &[i32]) {
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = h as *const () as usize;
        sa.sa_flags = flags | libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        for &m in mask {
            libc::sigaddset(&mut sa.sa_mask, m);
        }
        libc::sigaction(sig, &sa, null_mut());
    }
}

fn set_disp(sig: i32, disp: libc::sighandler_t) {
    // SAFETY: as above.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = disp;
        libc::sigaction(sig, &sa, null_mut());
    }
}

fn mask_op(how: i32, sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: valid sigset pointers.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for &x in sigs {
            libc::sigaddset(&mut s, x);
        }
        libc::sigprocmask(how, &s, &mut old);
        old
    }
}

fn current_mask_has(sig: i32) -> bool {
    // SAFETY: valid sigset pointers.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, null_mut(), &mut old);
        libc::sigismember(&old, sig) == 1
    }
}

fn raise_(sig: i32) {
    // SAFETY: plain system calls.
    unsafe { libc::kill(libc::getpid(), sig) };
}

static GOT: AtomicI32 = AtomicI32::new(0);
static CODE: AtomicI32 = AtomicI32::new(-99);
static PID: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicI32 = AtomicI32::new(0);
static INMASK: AtomicI32 = AtomicI32::new(-1);
static SP: AtomicUsize = AtomicUsize::new(0);
static FLOAT: AtomicU64 = AtomicU64::new(0);

extern "C" fn h_info(sig: i32, si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    GOT.store(sig, SeqCst);
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    unsafe {
        CODE.store((*si).si_code, SeqCst);
        PID.store((*si).si_pid(), SeqCst);
    }
    // Clobber FP state inside the handler: must not leak to the interrupted code.
    let x = std::hint::black_box(1.2345f64) * std::hint::black_box(3.0);
    FLOAT.store(x.to_bits(), SeqCst);
    COUNT.fetch_add(1, SeqCst);
}

extern "C" fn h_mask(sig: i32, _si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    INMASK.store(current_mask_has(sig) as i32, SeqCst);
    COUNT.fetch_add(1, SeqCst);
}

extern "C" fn h_stack(_sig: i32, _si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    let local = 0u8;
    SP.store(&local as *const u8 as usize, SeqCst);
}

extern "C" fn h_segv(sig: i32, si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: valid siginfo; mprotect of the page we know faulted.
    unsafe {
        let a = (*si).si_addr() as usize;
        ADDR.store(a, SeqCst);
        CODE.store((*si).si_code, SeqCst);
        GOT.store(sig, SeqCst);
        let page = a & !4095;
        if libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE) != 0 {
            // MAPERR: map it back.
            libc::mmap(page as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0);
        }
    }
}

extern "C" fn h_exit(sig: i32, si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: valid siginfo.
    let code = unsafe { (*si).si_code };
    say!("  child handler: signal {sig} code {code}");
    exit_now(sig);
}

extern "C" fn h_count(_sig: i32, _si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    COUNT.fetch_add(1, SeqCst);
}

extern "C" fn h_chld(sig: i32, si: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    GOT.store(sig, SeqCst);
    // SAFETY: valid siginfo.
    unsafe {
        CODE.store((*si).si_code, SeqCst);
        PID.store((*si).si_status(), SeqCst);
    }
}

fn handler_basics() {
    set_handler(libc::SIGUSR1, h_info, 0, &[]);
    let before = std::hint::black_box(2.5f64);
    // Callee-saved registers and FP state must survive (the compiler keeps
    // `before` and the loop values in registers across the call).
    let mut acc = 0u64;
    for i in 0..10u64 {
        acc = acc.wrapping_mul(31).wrapping_add(i);
    }
    raise_(libc::SIGUSR1);
    let after = std::hint::black_box(before) * 2.0;
    let mut acc2 = 0u64;
    for i in 0..10u64 {
        acc2 = acc2.wrapping_mul(31).wrapping_add(i);
    }
    // SAFETY: getpid.
    let me = unsafe { libc::getpid() };
    ok("SA_SIGINFO handler ran for SIGUSR1", GOT.load(SeqCst) == libc::SIGUSR1);
    ok("si_code is SI_USER for kill", CODE.load(SeqCst) == libc::SI_USER);
    ok("si_pid is the sender", PID.load(SeqCst) == me);
    ok("registers and FPU state preserved", after == 5.0 && acc == acc2 && f64::from_bits(FLOAT.load(SeqCst)) > 3.7);

    // tgkill: SI_TKILL
    // SAFETY: plain system calls.
    unsafe { libc::syscall(libc::SYS_tgkill, me, libc::syscall(libc::SYS_gettid), libc::SIGUSR1) };
    ok("tgkill gives si_code SI_TKILL", CODE.load(SeqCst) == -6);
}

fn masks() {
    COUNT.store(0, SeqCst);
    set_handler(libc::SIGUSR1, h_count, 0, &[]);
    mask_op(libc::SIG_BLOCK, &[libc::SIGUSR1]);
    raise_(libc::SIGUSR1);
    raise_(libc::SIGUSR1);
    // SAFETY: valid sigset pointer.
    let pending = unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut s);
        libc::sigismember(&s, libc::SIGUSR1) == 1
    };
    ok("blocked signal is pending, handler not run", pending && COUNT.load(SeqCst) == 0);
    mask_op(libc::SIG_UNBLOCK, &[libc::SIGUSR1]);
    ok("unblocking delivers it once (standard signals do not queue)", COUNT.load(SeqCst) == 1);

    // SA_NODEFER vs default
    set_handler(libc::SIGUSR2, h_mask, 0, &[]);
    raise_(libc::SIGUSR2);
    ok("signal blocked inside its handler", INMASK.load(SeqCst) == 1);
    set_handler(libc::SIGUSR2, h_mask, libc::SA_NODEFER, &[]);
    raise_(libc::SIGUSR2);
    ok("SA_NODEFER: not blocked inside its handler", INMASK.load(SeqCst) == 0);
    ok("mask restored after the handler", !current_mask_has(libc::SIGUSR2));

    // SA_RESETHAND
    COUNT.store(0, SeqCst);
    set_handler(libc::SIGUSR2, h_count, libc::SA_RESETHAND, &[]);
    raise_(libc::SIGUSR2);
    // SAFETY: query only.
    let disp = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGUSR2, null_mut(), &mut old);
        old.sa_sigaction
    };
    ok("SA_RESETHAND: ran once and reset to SIG_DFL", COUNT.load(SeqCst) == 1 && disp == libc::SIG_DFL);

    // rt_sigtimedwait
    mask_op(libc::SIG_BLOCK, &[libc::SIGUSR1]);
    raise_(libc::SIGUSR1);
    // SAFETY: valid pointers.
    let (r, code) = unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGUSR1);
        let mut si: libc::siginfo_t = std::mem::zeroed();
        let ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        let r = libc::sigtimedwait(&s, &mut si, &ts);
        (r, si.si_code)
    };
    ok("sigtimedwait takes the pending signal", r == libc::SIGUSR1 && code == libc::SI_USER);
    // SAFETY: valid pointers.
    let (r, e) = unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGUSR1);
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
        let r = libc::sigtimedwait(&s, null_mut(), &ts);
        (r, errno())
    };
    ok(&format!("sigtimedwait times out with EAGAIN ({})", errno_name(e)), r == -1 && e == libc::EAGAIN);
    mask_op(libc::SIG_UNBLOCK, &[libc::SIGUSR1]);
}

fn altstack() {
    let size = 64 * 1024;
    let mut stack = vec![0u8; size];
    let base = stack.as_mut_ptr() as usize;
    // SAFETY: the stack buffer lives until the end of this function, and is disabled before.
    unsafe {
        let ss = libc::stack_t { ss_sp: base as *mut libc::c_void, ss_flags: 0, ss_size: size };
        libc::sigaltstack(&ss, null_mut());
    }
    set_handler(libc::SIGUSR1, h_stack, libc::SA_ONSTACK, &[]);
    raise_(libc::SIGUSR1);
    let sp = SP.load(SeqCst);
    ok("SA_ONSTACK handler runs on the alternate stack", sp > base && sp < base + size);
    // SAFETY: disable it again.
    unsafe {
        let ss = libc::stack_t { ss_sp: null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        libc::sigaltstack(&ss, null_mut());
        let mut old: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(null_mut(), &mut old);
        ok("sigaltstack disabled again", old.ss_flags == libc::SS_DISABLE);
    }
}

fn faults() {
    set_handler(libc::SIGSEGV, h_segv, 0, &[]);
    // SAFETY: a PROT_NONE page we own; the handler makes it writable.
    unsafe {
        let p = libc::mmap(null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) as *mut u32;
        std::ptr::write_volatile(p.add(3), 77);
        ok("SIGSEGV handler: si_addr is the faulting address", ADDR.load(SeqCst) == p.add(3) as usize);
        ok("SIGSEGV on a PROT_NONE page is SEGV_ACCERR", CODE.load(SeqCst) == 2);
        ok("the access is retried after the handler returns", std::ptr::read_volatile(p.add(3)) == 77);
        libc::munmap(p as *mut libc::c_void, 4096);
        std::ptr::write_volatile(p.add(5), 88);
        ok("SIGSEGV on an unmapped page is SEGV_MAPERR", CODE.load(SeqCst) == 1 && ADDR.load(SeqCst) == p.add(5) as usize);
        libc::munmap(p as *mut libc::c_void, 4096);
    }
    set_disp(libc::SIGSEGV, libc::SIG_DFL);

    let st = in_child(|| {
        set_handler(libc::SIGILL, h_exit, 0, &[]);
        // SAFETY: ud2 raises SIGILL; the handler exits.
        unsafe { std::arch::asm!("ud2") };
        0
    });
    ok(&format!("SIGILL handler (child {})", describe_status(st)), libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == libc::SIGILL);
    let st = in_child(|| {
        set_handler(libc::SIGFPE, h_exit, 0, &[]);
        // SAFETY: divide by zero raises SIGFPE; the handler exits.
        unsafe { std::arch::asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx", out("eax") _, out("edx") _, out("ecx") _) };
        0
    });
    ok(&format!("SIGFPE handler (child {})", describe_status(st)), libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == libc::SIGFPE);
    COUNT.store(0, SeqCst);
    set_handler(libc::SIGTRAP, h_count, 0, &[]);
    // SAFETY: int3 raises SIGTRAP; the handler returns after the instruction.
    unsafe { std::arch::asm!("int3") };
    ok("SIGTRAP from int3 handled, execution continues", COUNT.load(SeqCst) == 1);
    set_disp(libc::SIGTRAP, libc::SIG_DFL);

    // Default actions of faults.
    let st = in_child(|| {
        // SAFETY: deliberate null write.
        unsafe { std::ptr::write_volatile(8 as *mut u32, 1) };
        0
    });
    ok(&format!("unhandled SIGSEGV kills ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV);
    let st = in_child(|| {
        set_handler(libc::SIGSEGV, h_exit, 0, &[]);
        mask_op(libc::SIG_BLOCK, &[libc::SIGSEGV]);
        // SAFETY: a fault while SIGSEGV is blocked kills (force_sig).
        unsafe { std::ptr::write_volatile(8 as *mut u32, 1) };
        0
    });
    ok(&format!("fault with SIGSEGV blocked kills ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV);
    let st = in_child(|| {
        // SAFETY: rt_sigreturn with the stack on an unmapped page: a bad frame.
        unsafe { std::arch::asm!("mov rsp, 0x1000", "mov eax, 15", "syscall", options(noreturn)) };
    });
    ok(&format!("garbage rt_sigreturn frame gives SIGSEGV ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV);
}

fn default_actions() {
    let st = in_child(|| {
        raise_(libc::SIGTERM);
        0
    });
    ok(&format!("SIGTERM default terminates ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM);
    let st = in_child(|| {
        set_disp(libc::SIGTERM, libc::SIG_IGN);
        raise_(libc::SIGTERM);
        raise_(libc::SIGWINCH);
        raise_(libc::SIGURG);
        5
    });
    ok(&format!("ignored and default-ignore signals ({})", describe_status(st)), libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 5);
    let st = in_child(|| {
        raise_(libc::SIGABRT);
        0
    });
    ok(&format!("SIGABRT default (core) terminates ({})", describe_status(st)), libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGABRT);
}

fn stop_continue() {
    let pid = fork();
    if pid == 0 {
        loop {
            // SAFETY: wait for signals forever.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: plain system calls on our child.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
        let mut st = 0;
        let r = libc::waitpid(pid, &mut st, libc::WUNTRACED);
        ok(&format!("WUNTRACED reports the stop ({})", describe_status(st)), r == pid && libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGSTOP);
        let r = libc::waitpid(pid, &mut st, libc::WUNTRACED | libc::WNOHANG);
        ok("a stop is reported once", r == 0);
        libc::kill(pid, libc::SIGCONT);
        let r = libc::waitpid(pid, &mut st, libc::WCONTINUED);
        ok("WCONTINUED reports the continue", r == pid && libc::WIFCONTINUED(st));
        libc::kill(pid, libc::SIGTSTP);
        let r = libc::waitpid(pid, &mut st, libc::WUNTRACED);
        ok(&format!("SIGTSTP stops too ({})", describe_status(st)), r == pid && libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGTSTP);
        libc::kill(pid, libc::SIGTERM);
        // SIGTERM to a stopped process: it stays stopped with SIGTERM pending until SIGCONT.
        libc::kill(pid, libc::SIGCONT);
        let r = libc::waitpid(pid, &mut st, 0);
        ok(&format!("terminated after SIGCONT ({})", describe_status(st)), r == pid && libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM);
    }
}

fn sigchld() {
    GOT.store(0, SeqCst);
    set_handler(libc::SIGCHLD, h_chld, 0, &[]);
    let old = mask_op(libc::SIG_BLOCK, &[libc::SIGCHLD]);
    let pid = fork();
    if pid == 0 {
        exit_now(9);
    }
    // SAFETY: sigsuspend with the old mask (SIGCHLD unblocked).
    let r = unsafe { libc::sigsuspend(&old) };
    let e = errno();
    ok("sigsuspend returns EINTR after the handler", r == -1 && e == libc::EINTR);
    ok("SIGCHLD: CLD_EXITED with the exit status", GOT.load(SeqCst) == libc::SIGCHLD && CODE.load(SeqCst) == libc::CLD_EXITED && PID.load(SeqCst) == 9);
    mask_op(libc::SIG_SETMASK, &[]);
    let w = wait_for(pid);
    ok("the child is still reapable", matches!(w, Ok((p, s)) if p == pid && libc::WEXITSTATUS(s) == 9));
    set_disp(libc::SIGCHLD, libc::SIG_DFL);

    // SIGCHLD ignored: children are reaped automatically, wait gives ECHILD.
    set_disp(libc::SIGCHLD, libc::SIG_IGN);
    let pid = fork();
    if pid == 0 {
        exit_now(0);
    }
    let w = wait_for(pid);
    ok(&format!("SIG_IGN SIGCHLD auto-reaps (wait: {})", match w { Ok(_) => "ok".into(), Err(e) => errno_name(e) }), w == Err(libc::ECHILD));
    set_disp(libc::SIGCHLD, libc::SIG_DFL);
}

fn restart() {
    // A pipe read interrupted by a handled signal: EINTR without SA_RESTART,
    // transparently restarted with it.
    for (flags, name) in [(0, "without SA_RESTART"), (libc::SA_RESTART, "with SA_RESTART")] {
        COUNT.store(0, SeqCst);
        set_handler(libc::SIGUSR1, h_count, flags, &[]);
        let mut fds = [0; 2];
        // SAFETY: valid array.
        unsafe { libc::pipe(fds.as_mut_ptr()) };
        // SAFETY: getpid.
        let parent = unsafe { libc::getpid() };
        let pid = fork();
        if pid == 0 {
            sleep_ms(50);
            // SAFETY: plain system calls.
            unsafe { libc::kill(parent, libc::SIGUSR1) };
            sleep_ms(50);
            // SAFETY: write one byte.
            unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
            exit_now(0);
        }
        let mut b = [0u8; 1];
        // SAFETY: valid buffer.
        let r = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        let e = errno();
        if flags == 0 {
            ok(&format!("read {name}: EINTR"), r == -1 && e == libc::EINTR && COUNT.load(SeqCst) == 1);
        } else {
            ok(&format!("read {name}: restarted, got the byte"), r == 1 && COUNT.load(SeqCst) == 1);
        }
        let _ = wait_for(pid);
        // SAFETY: close our fds.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}

fn timers() {
    COUNT.store(0, SeqCst);
    set_handler(libc::SIGALRM, h_count, 0, &[]);
    // SAFETY: plain system calls with valid pointers.
    unsafe {
        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 50_000 },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, null_mut());
        let mut cur: libc::itimerval = std::mem::zeroed();
        libc::getitimer(libc::ITIMER_REAL, &mut cur);
        ok("getitimer shows the armed timer", cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 50_000);
        let r = libc::pause();
        ok("pause returns EINTR after SIGALRM from setitimer", r == -1 && errno() == libc::EINTR && COUNT.load(SeqCst) == 1);

        // nanosleep interrupted: EINTR and the remainder.
        libc::setitimer(libc::ITIMER_REAL, &it, null_mut());
        let req = libc::timespec { tv_sec: 5, tv_nsec: 0 };
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let r = libc::nanosleep(&req, &mut rem);
        ok("nanosleep interrupted: EINTR with the time left in rem", r == -1 && errno() == libc::EINTR && rem.tv_sec >= 3 && rem.tv_sec <= 5);

        // alarm returns the seconds left.
        libc::alarm(10);
        let left = libc::alarm(0);
        ok(&format!("alarm returns the seconds left ({left})"), left == 10);

        // Periodic timer: three expirations.
        COUNT.store(0, SeqCst);
        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 10_000 },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, null_mut());
        while COUNT.load(SeqCst) < 3 {
            libc::pause();
        }
        let zero: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &zero, null_mut());
        ok("periodic ITIMER_REAL fires repeatedly", COUNT.load(SeqCst) >= 3);
    }
    set_disp(libc::SIGALRM, libc::SIG_DFL);
}

fn errors() {
    // SAFETY: plain system calls with deliberate bad arguments.
    unsafe {
        let r = libc::kill(libc::getpid(), 65);
        ok("kill with signal 65: EINVAL", r == -1 && errno() == libc::EINVAL);
        let r = libc::kill(999_999, 0);
        ok("kill of a missing pid: ESRCH", r == -1 && errno() == libc::ESRCH);
        let r = libc::syscall(libc::SYS_tgkill, libc::getpid(), 999_999, 0);
        ok("tgkill of a missing tid: ESRCH", r == -1 && errno() == libc::ESRCH);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_IGN;
        let r = libc::sigaction(libc::SIGKILL, &sa, null_mut());
        ok("sigaction(SIGKILL): EINVAL", r == -1 && errno() == libc::EINVAL);
    }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    say!("conf_signals");
    handler_basics();
    masks();
    altstack();
    faults();
    default_actions();
    stop_continue();
    sigchld();
    restart();
    timers();
    errors();
    let f = FAILS.load(SeqCst);
    say!("conf_signals: {} failure(s)", f);
    if f == 0 {
        0
    } else {
        1
    }
}
