//! Garbage to every system call: each number 0..=450 (minus a small
//! denylist) is called ROUNDS times with arguments drawn from a fixed seed —
//! small integers, -1, random 64-bit values, bad pointers (NULL, page 1,
//! kernel-half, non-canonical, unaligned), pointers into a scratch buffer
//! that ends at a guard page, and huge lengths. The point is that it runs to
//! completion inside the guest and the kernel stays up; results are not
//! compared with Linux (that is `bad_input`'s job).
//!
//! NOT for running natively: random arguments to a real kernel's
//! `mount`, `reboot`, `setuid`, `unlink`… It refuses unless `uname -r`
//! says rustuml (override: `GARBAGE_I_MEAN_IT=1`).
//!
//! Usage: `garbage_syscalls [ROUNDS] [SEED]` (default 12 rounds, seed
//! 0x5eed). `GARBAGE_VERBOSE=1` prints each call on fd 2 before making it
//! (to find the call that hangs or kills).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::{c_char, c_long};
use userland_tests::{args, say};

/// Calls that would legitimately end, stop, block for ever or corrupt the
/// process itself (so they would hide what the test is looking for), each
/// with why.
const DENY: &[(c_long, &str)] = &[
    (libc::SYS_exit, "ends the process"),
    (libc::SYS_exit_group, "ends the process"),
    (libc::SYS_rt_sigreturn, "loads registers from a garbage frame"),
    (libc::SYS_kill, "may kill this process or its group"),
    (libc::SYS_tkill, "may kill this process"),
    (libc::SYS_tgkill, "may kill this process"),
    (libc::SYS_rt_sigqueueinfo, "may kill this process"),
    (libc::SYS_rt_tgsigqueueinfo, "may kill this process"),
    (libc::SYS_pidfd_send_signal, "may kill this process"),
    (libc::SYS_rt_sigaction, "a garbage handler runs at the next signal"),
    (libc::SYS_alarm, "SIGALRM's default action ends the process"),
    (libc::SYS_setitimer, "SIGALRM/SIGVTALRM/SIGPROF end the process"),
    (libc::SYS_timer_create, "timer signals end the process"),
    (libc::SYS_timer_settime, "timer signals end the process"),
    (libc::SYS_pause, "blocks for ever"),
    (libc::SYS_rt_sigsuspend, "blocks for ever"),
    (libc::SYS_rt_sigtimedwait, "blocks for ever without a timeout"),
    (libc::SYS_nanosleep, "sleeps up to years"),
    (libc::SYS_clock_nanosleep, "sleeps up to years"),
    (libc::SYS_poll, "blocks with a negative timeout"),
    (libc::SYS_ppoll, "blocks with a NULL timeout"),
    (libc::SYS_select, "blocks with a NULL timeout"),
    (libc::SYS_pselect6, "blocks with a NULL timeout"),
    (libc::SYS_epoll_wait, "blocks with a negative timeout"),
    (libc::SYS_epoll_pwait, "blocks with a negative timeout"),
    (libc::SYS_epoll_pwait2, "blocks with a NULL timeout"),
    (libc::SYS_futex, "FUTEX_WAIT on a zero word blocks for ever"),
    (libc::SYS_futex_waitv, "blocks for ever"),
    (libc::SYS_msgrcv, "blocks on an empty queue made by msgget"),
    (libc::SYS_msgsnd, "blocks on a full queue"),
    (libc::SYS_semop, "blocks on a semaphore made by semget"),
    (libc::SYS_semtimedop, "blocks on a semaphore made by semget"),
    (libc::SYS_fork, "a second garbage caller"),
    (libc::SYS_vfork, "a second garbage caller sharing this memory"),
    (libc::SYS_clone, "a thread or process running garbage"),
    (libc::SYS_clone3, "a thread or process running garbage"),
    (libc::SYS_execve, "replaces this program"),
    (libc::SYS_execveat, "replaces this program"),
    (libc::SYS_brk, "shrinking the heap frees malloc's memory"),
    (libc::SYS_arch_prctl, "a garbage FS base breaks TLS"),
    (libc::SYS_set_tid_address, "writes at a garbage address at exit"),
    (libc::SYS_rseq, "the kernel writes a garbage area at each preemption"),
    (libc::SYS_shmat, "may map over this program"),
    (libc::SYS_shmdt, "may unmap this program"),
    (libc::SYS_process_vm_writev, "writes into this process (it is pid 1)"),
    (libc::SYS_process_madvise, "may discard this process's memory"),
    (libc::SYS_seccomp, "a strict filter kills at the next call"),
    (libc::SYS_setrlimit, "tiny limits make malloc and write fail with signals"),
    (libc::SYS_prlimit64, "tiny limits make malloc and write fail with signals"),
    (libc::SYS_mlockall, "MCL_CURRENT populates every mapping"),
    (libc::SYS_close_range, "closes the report fd"),
    (libc::SYS_reboot, "powers the guest off"),
    (libc::SYS_kexec_load, "replaces the kernel"),
    (libc::SYS_kexec_file_load, "replaces the kernel"),
    (libc::SYS_vhangup, "hangs up the console"),
    // Outside a uretprobe trampoline Linux answers with SIGILL, and so does
    // the guest (tests/shell.rs: probe_calls_as_on_linux).
    (335, "uretprobe: SIGILL from anywhere but a trampoline"),
];

/// Memory calls: their address argument is confined to an arena this
/// program never uses itself, so that unmapping or remapping only hits
/// the arena.
const MM: &[c_long] = &[
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_mlock,
    libc::SYS_munlock,
    libc::SYS_mlock2,
    libc::SYS_remap_file_pages,
    libc::SYS_pkey_mprotect,
    libc::SYS_mbind,
    453, // map_shadow_stack (not in libc yet; above 450 anyway)
];

/// File descriptor that reports go to (fds 0-2 become /dev/null, so garbage
/// reads and writes on them neither block nor spill).
const REPORT_FD: i32 = 200;
const SCRATCH: usize = 1 << 20;
const ARENA: usize = 64 << 20;
const PAGE: u64 = 4096;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn report(s: &str) {
    let mut b = s.as_bytes();
    while !b.is_empty() {
        // SAFETY: b is a valid slice.
        let n = unsafe { libc::write(REPORT_FD, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

fn in_guest() -> bool {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let rel: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&rel).contains("rustuml")
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let rounds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(12);
    let seed: u64 = args
        .get(2)
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x5eed);
    if !in_guest() && std::env::var_os("GARBAGE_I_MEAN_IT").is_none() {
        say!("garbage_syscalls: refusing to run outside the rustuml guest (uname -r has no \"rustuml\")");
        return 2;
    }
    let verbose = std::env::var_os("GARBAGE_VERBOSE").is_some();
    // SAFETY: plain fd and memory set-up calls on this process's own state.
    let (scratch, arena) = unsafe {
        libc::dup2(1, REPORT_FD);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::chdir(c"/tmp".as_ptr());
        // Scratch buffer followed by a guard page: writes with huge lengths
        // stop there with EFAULT instead of running into other memory.
        let s = libc::mmap(
            std::ptr::null_mut(),
            SCRATCH + PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let a = libc::mmap(
            std::ptr::null_mut(),
            ARENA,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if s == libc::MAP_FAILED || a == libc::MAP_FAILED {
            report("garbage_syscalls: cannot map the scratch buffer\n");
            return 1;
        }
        libc::mprotect(s.cast::<u8>().add(SCRATCH).cast(), PAGE as usize, libc::PROT_NONE);
        (s as u64, a as u64)
    };
    let mut rng = Rng(seed | 1);
    // Random bytes with a NUL now and then: random paths and structs.
    // SAFETY: scratch is SCRATCH writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(scratch as *mut u8, SCRATCH) };
    for b in buf.iter_mut() {
        let r = rng.next();
        *b = if r.is_multiple_of(23) { 0 } else { (r >> 8) as u8 };
    }
    let denied: Vec<c_long> = DENY.iter().map(|&(n, _)| n).collect();
    let mut calls = 0u64;
    let mut ok_calls = 0u64;
    let mut enosys = 0u64;
    for nr in 0..=450 as c_long {
        if denied.contains(&nr) {
            continue;
        }
        let mm = MM.contains(&nr);
        for _ in 0..rounds {
            let mut a = [0u64; 6];
            for x in a.iter_mut() {
                *x = match rng.below(12) {
                    0 | 1 => rng.below(16),
                    2 => u64::MAX, // -1
                    3 => rng.next(),
                    4 => 0,
                    5 => 0x1000,                   // page 1: never mapped
                    6 => 0xffff_8000_0000_0000,    // kernel half
                    7 => 0x0000_8000_0000_0000 + rng.below(1 << 20), // non-canonical
                    8 | 9 => scratch + rng.below(SCRATCH as u64) , // valid, maybe unaligned
                    10 => 1 << (20 + rng.below(44)), // huge lengths
                    _ => scratch + SCRATCH as u64 - rng.below(64), // runs into the guard
                };
            }
            if mm {
                // The address stays in the arena (or is plainly bad); no
                // MAP_POPULATE / MAP_LOCKED, which would fill guest memory.
                a[0] = match rng.below(4) {
                    0 => 0xffff_8000_0000_0000,
                    _ => arena + rng.below(ARENA as u64 / PAGE) * PAGE,
                };
                a[1] %= ARENA as u64;
                if nr == libc::SYS_mmap {
                    a[3] &= !((libc::MAP_POPULATE | libc::MAP_LOCKED) as u64);
                }
                if nr == libc::SYS_mremap {
                    a[4] = arena + rng.below(ARENA as u64 / PAGE) * PAGE;
                }
            }
            if nr == libc::SYS_prctl && a[0] == libc::PR_SET_SECCOMP as u64 {
                continue;
            }
            if verbose {
                report(&format!("call {nr} {a:#x?}\n"));
            }
            // SAFETY: this is the test: garbage arguments, on a denylist-
            // filtered set of calls, inside the guest.
            let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
            calls += 1;
            if r >= 0 {
                ok_calls += 1;
                // Whatever it opened (pipes, eventfds, sockets...) must not
                // be read by a later call: that could block for ever.
                for fd in 3..64 {
                    if fd != REPORT_FD {
                        // SAFETY: closing fds this program may have created.
                        unsafe { libc::close(fd) };
                    }
                }
            } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                enosys += 1;
            }
        }
    }
    report(&format!(
        "garbage_syscalls: {calls} calls ({ok_calls} succeeded, {enosys} ENOSYS), {} numbers denied; done\n",
        DENY.len()
    ));
    0
}
