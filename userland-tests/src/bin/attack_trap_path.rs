//! Isolation attack 9: the seccomp trap path. The guest writes the stub's
//! mailbox itself, knowing only the layout hal-uml-x86_64's stub.rs
//! documents, and tries to make the kernel act on forgeries.
//! `attack_trap_path [TRIES (default 20)] [FORGERIES (default 10000)]`.
//!
//! - `forged_sleep`: forge a blocking `read` of an empty pipe (a SIGSYS frame
//!   in the mailbox, `state = KERNEL`) and keep running. Blocked if the
//!   kernel kills the forger (it never parked) or never saw the forgery.
//! - `sleepers_run`: 8 children do that at once while init times a CPU-bound
//!   loop. Blocked if all forgers ended (killed) and the loop took less than
//!   twice its time alone.
//! - `stale_mapping`: a process fills 8 MiB with its pattern, forges an
//!   `munmap` of it with the "stub asleep" word 0 and keeps reading the
//!   region while a victim allocates and writes 8 MiB of its own, TRIES
//!   times. Succeeded if the forger ever reads a value that is not its own
//!   pattern (a frame handed to another process).
//! - `frozen_executor`: forge a trap, then race the state word to a value
//!   nobody uses while a real `madvise(MADV_DONTNEED)` needs more than one
//!   batch of host operations, TRIES times, with a heartbeat process
//!   ticking. Blocked if every try ended and the heartbeat kept ticking.
//! - `forgery_fuzz`: FORGERIES random mailbox contents and state words (the
//!   forged calls limited to harmless ones), by children restarted as they
//!   die, beside a victim that checks its secret. Blocked if the victim's
//!   memory is intact and the heartbeat kept ticking.
//! - `probe_calls`: `uretprobe` and `uprobe`, which host kernels exempt from
//!   seccomp: blocked if the guest sees what Linux gives outside a probe
//!   trampoline (SIGILL, ENXIO).
//!
//! Where there is no live mailbox (`--trap ptrace`: nothing reads it; tt: no
//! stub) the mailbox attacks report n/a.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use userland_tests::{args, errno, errno_name, exit_now, fork, mmap_anon, now_ms, sleep_ms, wait_for, PAGE};

/// hal-uml-x86_64's stub layout (stub.rs): the mailbox page and offsets.
const STUB_BASE: u64 = 0x7ff0_0000_0000;
const MB_ADDR: u64 = STUB_BASE + 19 * 4096;
const ALTSTACK_ADDR: u64 = MB_ADDR + 4096;
const STATE: u64 = 0;
const SWAIT: u64 = 16;
const SIGNO: u64 = 32;
const CODE: u64 = 40;
const ADDR: u64 = 48;
const GREGS: u64 = 96;
const FPREGS: u64 = 296;
/// `gregs` indices of the signal frame.
const REG_R15: u64 = 7;
const REG_RDI: u64 = 8;
const REG_RSI: u64 = 9;
const REG_RDX: u64 = 12;
const REG_RAX: u64 = 13;
const REG_RSP: u64 = 15;
const REG_RIP: u64 = 16;

fn mb_read(off: u64) -> u64 {
    // SAFETY: only called where `mailbox_live` found the page mapped.
    unsafe { core::ptr::read_volatile((MB_ADDR + off) as *const u64) }
}

fn mb_write(off: u64, v: u64) {
    // SAFETY: as in `mb_read`; the page is writable by the guest (that is the point).
    unsafe { core::ptr::write_volatile((MB_ADDR + off) as *mut u64, v) }
}

fn mb_state(v: u32) {
    // SAFETY: as in `mb_write`.
    unsafe { core::ptr::write_volatile((MB_ADDR + STATE) as *mut u32, v) }
}

/// Is there a mailbox the kernel reads (the seccomp trap mode)? A raw
/// system call with a marker in r15 must show up in its frame.
fn mailbox_live() -> bool {
    let marker = 0x5ecc_0b00_dead_beefu64;
    let seen = probe(|| {
        // SAFETY: getpid with r15 set; r15 is restored by the asm.
        unsafe {
            core::arch::asm!(
                "xchg r15, {m}",
                "mov eax, 39",
                "syscall",
                "xchg r15, {m}",
                m = inout(reg) marker => _,
                out("rax") _, out("rcx") _, out("r11") _,
            )
        };
        mb_read(GREGS + 8 * REG_R15)
    });
    seen == Ok(marker)
}

/// Forge a system call `nr(a0, a1, a2)`: a SIGSYS frame in the mailbox and
/// the state word handed to the kernel, then wake the kernel through the
/// stub's own `FUTEX_WAKE` (see `wake_kernel`) and come back to `cont`, so
/// this process keeps running its own code while the kernel handles it.
fn forge_syscall(nr: u64, a0: u64, a1: u64, a2: u64, cont: extern "C" fn() -> !) {
    let sp: u64;
    // SAFETY: reads rsp.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp) };
    let wake = prepare_wake(cont, (sp - 8192) & !15);
    mb_write(SIGNO, libc::SIGSYS as u64);
    mb_write(CODE, 1); // SYS_SECCOMP
    mb_write(ADDR, cont as *const () as u64);
    mb_write(GREGS + 8 * REG_RAX, nr);
    mb_write(GREGS + 8 * REG_RDI, a0);
    mb_write(GREGS + 8 * REG_RSI, a1);
    mb_write(GREGS + 8 * REG_RDX, a2);
    mb_write(GREGS + 8 * REG_RIP, cont as *const () as u64);
    mb_write(GREGS + 8 * REG_RSP, sp);
    mb_write(SWAIT, 0);
    mb_state(0); // KERNEL
    wake_kernel(wake);
}

/// The `FUTEX_WAKE` site of the stub's trap handler: `mov $0x7fffffff,
/// %edx; syscall`, then within a few bytes `mov (%rbx), %eax` — the wake of
/// the kernel, followed by the handler's wait loop, which reads the state
/// word through `%rbx`.
fn wake_site() -> Option<u64> {
    // SAFETY: the stub's code page is mapped readable (checked by `mailbox_live` first).
    let code = unsafe { std::slice::from_raw_parts(STUB_BASE as *const u8, 4096) };
    let wake = [0xba, 0xff, 0xff, 0xff, 0x7f, 0x0f, 0x05];
    (0..4096 - 16)
        .find(|&i| code[i..i + 7] == wake && code[i + 7..i + 14].windows(2).any(|w| w == [0x8b, 0x03]))
        .map(|i| STUB_BASE + i as u64 + 5)
}

/// A jump into the stub's kernel wake-up, ready to go (see `wake_kernel`).
struct Wake {
    site: u64,
    mb: *const u64,
    uc: *const u64,
}

/// Everything `wake_kernel` needs, written (and so faulted in) before the
/// forgery: a genuine fault trap after the forged frame is written and
/// before the kernel reads it would overwrite it. `cont` is where we come
/// back to, on a stack at `sp`.
fn prepare_wake(cont: extern "C" fn() -> !, sp: u64) -> Wake {
    static mut FAKE_MB: [u64; 64] = [0; 64];
    static mut FAKE_UC: [u64; 64] = [0; 64];
    let Some(site) = wake_site() else { exit_now(91) };
    // The buffers are only read by the stub code `wake_kernel` jumps to;
    // the stack writes are below our own stack pointer, inside the stack
    // mapping; the code reads are of mapped code.
    // SAFETY: single-threaded process, and the accesses above stay inside mappings.
    unsafe {
        core::ptr::read_volatile(cont as *const u8);
        for a in [sp - 4096, sp - 8, sp + 64] {
            core::ptr::write_volatile(a as *mut u64, 0);
        }
        let mb = &mut *core::ptr::addr_of_mut!(FAKE_MB);
        let uc = &mut *core::ptr::addr_of_mut!(FAKE_UC);
        mb.fill(0);
        uc.fill(0);
        mb[0] = 1; // "state": RUN
        // gregs r8 .. eflags at mailbox offset 96 (word 12): rsp, rip, eflags.
        mb[12 + REG_RSP as usize] = sp - 8;
        mb[12 + REG_RIP as usize] = cont as *const () as u64;
        mb[12 + 17] = 0x202;
        // ucontext: uc_stack (the real signal stack), csgsfs, no fpstate,
        // and SIGALRM blocked: the kernel's timer kick would overwrite the
        // forged frame before the kernel reads it.
        uc[2] = ALTSTACK_ADDR;
        uc[4] = 16 * 4096;
        uc[5 + 18] = 0x33 | (0x2b << 48);
        uc[37] = 1 << (libc::SIGALRM - 1);
        Wake { site, mb: mb.as_ptr(), uc: uc.as_ptr() }
    }
}

/// Jump into the stub at its kernel wake-up (`futex(&mb.state, FUTEX_WAKE)`,
/// a call the guest thread's filter allows from the stub's code) with
/// registers of our making: `%rbx` points at a fake mailbox whose state
/// reads RUN, so the handler goes straight to its way out and
/// `rt_sigreturn`s from our fake frame at `%r13` — to the continuation, with
/// the real signal stack restored and the timer kick blocked.
fn wake_kernel(w: Wake) -> ! {
    // It comes back through rt_sigreturn to the prepared continuation.
    // SAFETY: deliberately runs the stub's code with our registers (the point of the attack).
    unsafe {
        core::arch::asm!(
            "mov rbx, r9",
            "jmp r8",
            in("r8") w.site,
            in("r9") w.mb,
            in("rax") 202u64,
            in("rdi") MB_ADDR,
            in("rsi") 1u64,
            in("rdx") 0x7fff_ffffu64,
            in("r12") STUB_BASE + 2 * 4096,
            in("r13") w.uc,
            options(noreturn)
        )
    }
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per millisecond, measured once at start (with system calls:
/// a forger must make none after its forgery, or its genuine trap would
/// overwrite the forged frame).
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

fn calibrate() {
    let (c0, m0) = (rdtsc(), now_ms());
    while now_ms() - m0 < 20 {}
    TSC_PER_MS.store(((rdtsc() - c0) / 20).max(1), Relaxed);
}

/// Spin for `ms` milliseconds of wall time without a system call.
fn spin_ms(ms: u64) {
    let end = rdtsc() + ms * TSC_PER_MS.load(Relaxed);
    while rdtsc() < end {
        std::hint::spin_loop();
    }
}

/// A forked child running `f`; its pid.
fn child(f: impl FnOnce()) -> libc::pid_t {
    let pid = fork();
    if pid == 0 {
        f();
        exit_now(0);
    }
    pid
}

fn status_of(pid: libc::pid_t) -> c_int {
    wait_for(pid).map(|(_, s)| s).unwrap_or(-1)
}

fn killed_by_sigkill(st: c_int) -> bool {
    libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL
}

/// A page shared with children: one progress counter per child.
fn shared_counters() -> &'static [AtomicU64] {
    let Ok(p) = mmap_anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED) else { exit_now(2) };
    // SAFETY: a fresh shared zeroed page, never unmapped, holds PAGE / 8 atomics.
    unsafe { std::slice::from_raw_parts(p as *const AtomicU64, PAGE / 8) }
}

/// `n` children that each forge a blocking `read` of an empty pipe (write
/// end held by us) and then spin, counting, without a system call. Returns
/// their pids, the counters and the pipe's write end.
fn forgers(n: usize) -> (Vec<libc::pid_t>, &'static [AtomicU64], c_int) {
    let (r, w) = pipe();
    let counts = shared_counters();
    let pids = (0..n)
        .map(|i| {
            child(|| {
                close(w);
                let buf = [0u8; 8];
                COUNTER.store(&counts[i] as *const _ as u64, Relaxed);
                // Faults the shared page in (for writing) now, and tells the
                // parent this forger is about to forge.
                counts[i].store(1, Relaxed);
                forge_syscall(0, r as u64, buf.as_ptr() as u64, 1, count_on);
            })
        })
        .collect();
    close(r);
    (pids, counts, w)
}

/// Where a forger counts its progress.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A forger's life after its forgery: count for 3 s, no system call.
extern "C" fn count_on() -> ! {
    // SAFETY: `forgers` stored the address of a counter on a shared page that stays mapped.
    let c = unsafe { &*(COUNTER.load(Relaxed) as *const AtomicU64) };
    let end = rdtsc() + 3000 * TSC_PER_MS.load(Relaxed);
    while rdtsc() < end {
        c.fetch_add(1, Relaxed);
    }
    exit_now(7)
}

/// Reaps `pids` once the pipe is closed; how many were killed.
fn reap_forgers(pids: Vec<libc::pid_t>, w: c_int) -> usize {
    close(w);
    pids.into_iter().map(status_of).filter(|&s| killed_by_sigkill(s)).count()
}

/// Counts progress between two samples 300 ms apart, starting 500 ms after
/// the forgeries: a forger the kernel believes asleep must make none.
fn progress_while_asleep(counts: &[AtomicU64], n: usize) -> usize {
    // Measure from when every forger has forged plus several times the
    // kernel's grace for parking, so that a slow start on a loaded host is
    // not taken for running while asleep.
    let give_up = now_ms() + 10_000;
    while (0..n).any(|i| counts[i].load(Relaxed) == 0) && now_ms() < give_up {
        sleep_ms(10);
    }
    sleep_ms(500);
    let a: Vec<u64> = (0..n).map(|i| counts[i].load(Relaxed)).collect();
    sleep_ms(300);
    (0..n).filter(|&i| counts[i].load(Relaxed) != a[i]).count()
}

fn forged_sleep() {
    let (pids, counts, w) = forgers(1);
    let ran = progress_while_asleep(counts, 1);
    let killed = reap_forgers(pids, w);
    let detail = match (ran, killed) {
        (0, 1) => "the forger was killed (it never parked)".to_string(),
        (0, _) => "the forger made no progress while blocked".to_string(),
        _ => "the forger kept running while the kernel had it blocked in read".to_string(),
    };
    report("forged_sleep", if ran == 0 { "blocked" } else { "succeeded" }, &detail);
}

/// A CPU-bound loop of fixed work (~0.3 s alone); its wall time in ms.
fn work() -> i64 {
    let t0 = now_ms();
    let mut x = 1u64;
    for i in 0..600_000_000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    std::hint::black_box(x);
    now_ms() - t0
}

fn sleepers_run() {
    let alone = work();
    let (pids, counts, w) = forgers(8);
    let ran = progress_while_asleep(counts, 8);
    let beside = work();
    let killed = reap_forgers(pids, w);
    let ratio = beside as f64 / alone.max(1) as f64;
    let detail = format!(
        "{ran} of 8 forgers ran while blocked, {killed} were killed; a CPU-bound loop took {beside} ms beside them, {alone} ms alone ({ratio:.1}x)"
    );
    report("sleepers_run", if ran == 0 && ratio < 2.0 { "blocked" } else { "succeeded" }, &detail);
}

const REGION: usize = 8 << 20;

const PATTERN: u64 = 0xa77a_c4e2_0000_0001;
static STALE: AtomicU64 = AtomicU64::new(0);
static STALE_FDS: AtomicU64 = AtomicU64::new(0);

/// The stale-mapping forger after its forged `munmap`: wake the victim (a
/// real call) and watch its region for a value that is not its own.
extern "C" fn watch_region() -> ! {
    spin_ms(30);
    let fds = STALE_FDS.load(Relaxed);
    let (go_w, res_w) = ((fds >> 32) as c_int, fds as u32 as c_int);
    put_u64(go_w, 1);
    let p = STALE.load(Relaxed) as *const u64;
    let end = now_ms() + 300;
    let mut foreign = 0u64;
    while now_ms() < end && foreign == 0 {
        for i in (0..REGION / 8).step_by(512) {
            // SAFETY: reading the region we mapped (it may be gone: SIGSEGV ends us).
            let v = unsafe { core::ptr::read_volatile(p.add(i)) };
            if v != PATTERN {
                foreign = v;
                break;
            }
        }
    }
    put_u64(res_w, foreign);
    exit_now(0)
}

fn stale_mapping(tries: usize) {
    let mut leaks = 0;
    let mut detail = String::new();
    for _ in 0..tries {
        let (go_r, go_w) = pipe();
        let (res_r, res_w) = pipe();
        let victim = child(|| {
            close(go_w);
            close(res_r);
            close(res_w);
            let _ = get_u64(go_r);
            let secret = random_u64();
            for _ in 0..4 {
                if let Ok(p) = mmap_anon(REGION, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) {
                    // SAFETY: p is a fresh mapping of REGION bytes.
                    let s = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, REGION / 8) };
                    s.fill(secret);
                }
            }
        });
        let forger = child(|| {
            close(go_r);
            close(res_r);
            let Ok(p) = mmap_anon(REGION, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) else { exit_now(2) };
            // SAFETY: p is a fresh mapping of REGION bytes.
            let s = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, REGION / 8) };
            s.fill(PATTERN);
            STALE.store(p as u64, Relaxed);
            STALE_FDS.store(((go_w as u64) << 32) | res_w as u64, Relaxed);
            forge_syscall(libc::SYS_munmap as u64, p as u64, REGION as u64, 0, watch_region);
        });
        close(go_r);
        close(go_w);
        close(res_w);
        let foreign = get_u64(res_r);
        close(res_r);
        let fst = status_of(forger);
        status_of(victim);
        if let Some(v) = foreign.filter(|&v| v != 0) {
            leaks += 1;
            detail = format!("read {v:#x} from a frame the kernel had freed");
        } else if detail.is_empty() {
            detail = format!("forger: {}", match foreign {
                Some(_) => "its region still held its own pattern".to_string(),
                None => ended(fst),
            });
        }
    }
    let result = if leaks == 0 { "blocked" } else { "succeeded" };
    report("stale_mapping", result, &format!("{leaks} of {tries} tries leaked; last: {detail}"));
}

/// A child printing nothing but counting: the kernel's liveness, as seen
/// from another guest process. Returns (pid, read end of its tick pipe).
fn heartbeat() -> (libc::pid_t, c_int) {
    let (r, w) = pipe();
    let pid = child(|| {
        close(r);
        loop {
            put_u64(w, 1);
            sleep_ms(10);
        }
    });
    close(w);
    (pid, r)
}

/// Ticks the heartbeat has sent so far (non-blocking drain).
fn ticks(r: c_int) -> u64 {
    let mut n = 0;
    let mut b = [0u8; 4096];
    loop {
        let mut fds = libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut fds, 1, 0) } <= 0 {
            return n;
        }
        // SAFETY: reads into b.
        let got = unsafe { libc::read(r, b.as_mut_ptr().cast(), b.len()) };
        if got <= 0 {
            return n;
        }
        n += got as u64 / 8;
    }
}

static FROZEN: AtomicU64 = AtomicU64::new(0);
const FROZEN_LEN: usize = 4800 * PAGE;

/// After the forged `mprotect`: whenever the state word says RUN or EXEC,
/// make it 7, for 250 ms; then a real `madvise` of more than one batch.
extern "C" fn race_state() -> ! {
    mb_write(SWAIT, 1);
    let end = rdtsc() + 250 * TSC_PER_MS.load(Relaxed);
    while rdtsc() < end {
        // SAFETY: as in `mb_read`.
        let st = unsafe { core::ptr::read_volatile(MB_ADDR as *const u32) };
        if st == 2 || st == 1 {
            mb_state(7);
        }
    }
    // SAFETY: madvise on our own mapping.
    unsafe { libc::madvise(FROZEN.load(Relaxed) as *mut libc::c_void, FROZEN_LEN, libc::MADV_DONTNEED) };
    exit_now(0)
}

fn frozen_executor(tries: usize) {
    let (hb, hb_r) = heartbeat();
    let t0 = now_ms();
    let mut ended_ok = 0;
    for _ in 0..tries {
        let pid = child(|| {
            // 2,400 present pages with holes between them: an madvise over
            // them is 1,200 unmaps, more than one batch.
            let Ok(p) = mmap_anon(FROZEN_LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) else { exit_now(2) };
            for i in (0..4800).step_by(2) {
                // SAFETY: inside the mapping.
                unsafe { *p.add(i * PAGE) = 1 };
            }
            FROZEN.store(p as u64, Relaxed);
            // A forged call whose answer needs a map operation, then the
            // state word raced to a value nobody uses.
            forge_syscall(libc::SYS_mprotect as u64, p as u64, 2 * PAGE as u64, libc::PROT_READ as u64, race_state);
        });
        let st = status_of(pid);
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            ended_ok += 1;
        }
    }
    let before = ticks(hb_r);
    sleep_ms(200);
    let after = ticks(hb_r);
    // SAFETY: ending our own child.
    unsafe { libc::kill(hb, libc::SIGKILL) };
    status_of(hb);
    close(hb_r);
    let detail = format!(
        "{ended_ok} of {tries} tries ended in {} ms; the heartbeat ticked {before} times meanwhile and {after} more in 200 ms after",
        now_ms() - t0
    );
    let result = if ended_ok == tries && after > 0 && before > 0 { "blocked" } else { "succeeded" };
    report("frozen_executor", result, &detail);
}

/// xorshift64*, for forgeries.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A fuzzing child's state (it is its own process).
static FUZZ: AtomicU64 = AtomicU64::new(0);
static FUZZ_LEFT: AtomicU64 = AtomicU64::new(0);
static FUZZ_ARENA: AtomicU64 = AtomicU64::new(0);
/// Every FULL-th forgery is a whole frame handed to the kernel (and the
/// kernel woken for it); the others race genuine traps.
const FULL: u64 = 50;

/// The fuzzing child's loop; a whole-frame forgery leaves it through
/// `forge`'s wake-up and comes back here.
extern "C" fn fuzz_on() -> ! {
    // Back from a whole-frame forgery: let the kernel take it before the
    // next forgery (or a genuine trap) overwrites it.
    let end = rdtsc() + 50 * TSC_PER_MS.load(Relaxed);
    // SAFETY: as in `mb_read`.
    while unsafe { core::ptr::read_volatile(MB_ADDR as *const u32) } == 0 && rdtsc() < end {
        std::hint::spin_loop();
    }
    let mut rng = Rng(FUZZ.load(Relaxed));
    let arena = FUZZ_ARENA.load(Relaxed);
    // Harmless calls: getpid, a read of a bad fd, munmap/mprotect of our
    // own arena, sched_yield.
    let calls = [39u64, 0, 11, 10, 24];
    loop {
        let n = FUZZ_LEFT.load(Relaxed);
        if n == 0 {
            exit_now(0);
        }
        FUZZ_LEFT.store(n - 1, Relaxed);
        let full = n % FULL == 0;
        // Prepared first: its page faults would overwrite the forgery.
        let wake = full.then(|| {
            let sp: u64;
            // SAFETY: reads rsp.
            unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp) };
            prepare_wake(fuzz_on, (sp - 8192) & !15)
        });
        // Every word the kernel reads; not the way-back flags and TLS bases,
        // which only the stub's handler uses (random ones just crash us).
        for off in (8..GREGS + 8 * 23).step_by(8).filter(|o| !(56..80).contains(o)) {
            mb_write(off, rng.next());
        }
        if rng.next() % 4 != 0 {
            // Mostly a frame the kernel accepts, so the forged call is
            // handled; else the forger should just be killed.
            mb_write(FPREGS, ALTSTACK_ADDR + 15 * PAGE as u64);
            mb_write(SIGNO, libc::SIGSYS as u64);
            mb_write(CODE, 1);
        }
        let nr = calls[(rng.next() % calls.len() as u64) as usize];
        mb_write(GREGS + 8 * REG_RAX, nr);
        mb_write(GREGS + 8 * REG_RDI, if nr == 0 { 999 } else { arena });
        mb_write(GREGS + 8 * REG_RSI, PAGE as u64 * (rng.next() % 16));
        mb_write(GREGS + 8 * REG_RIP, fuzz_on as *const () as u64);
        FUZZ.store(rng.0, Relaxed);
        if let Some(wake) = wake {
            mb_state(0);
            wake_kernel(wake);
        }
        mb_state((rng.next() % 5) as u32);
        // A genuine call: the kernel must tell the two apart.
        // SAFETY: getppid.
        unsafe { libc::getppid() };
    }
}

/// "3 child killed by SIGBUS (7), 1 child exited 2" for a list of endings.
fn tally(endings: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in endings {
        match counts.iter_mut().find(|(k, _)| k == e) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.clone(), 1)),
        }
    }
    counts.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

/// `total` forgeries by children restarted as they die, beside a victim
/// that checks its secret and a heartbeat.
fn forgery_fuzz(total: usize) {
    let (hb, hb_r) = heartbeat();
    // The victim keeps a secret in memory and reports whether it survived.
    let (vr, vw) = pipe();
    let (stop_r, stop_w) = pipe();
    let victim = child(|| {
        close(vr);
        close(stop_w);
        let secret = random_u64();
        let Ok(p) = mmap_anon(64 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) else { exit_now(2) };
        // SAFETY: a fresh mapping of 64 pages.
        let s = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, 64 * PAGE / 8) };
        s.fill(secret);
        let _ = get_u64(stop_r);
        put_u64(vw, s.iter().all(|&v| v == secret) as u64);
    });
    close(vw);
    close(stop_r);
    let mut done = 0usize;
    let mut children = 0usize;
    let mut killed = 0usize;
    let mut other = Vec::new();
    let mut rng = Rng(random_u64());
    let t0 = now_ms();
    while done < total {
        let batch = 500.min(total - done);
        let seed = rng.next();
        let pid = child(|| {
            let Ok(arena) = mmap_anon(16 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) else { exit_now(2) };
            FUZZ.store(seed, Relaxed);
            FUZZ_LEFT.store(batch as u64, Relaxed);
            FUZZ_ARENA.store(arena as u64, Relaxed);
            fuzz_on();
        });
        let st = status_of(pid);
        if killed_by_sigkill(st) {
            killed += 1;
        } else if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
            other.push(ended(st));
        }
        children += 1;
        done += batch;
    }
    let ms = now_ms() - t0;
    put_u64(stop_w, 1);
    close(stop_w);
    let intact = get_u64(vr) == Some(1);
    close(vr);
    status_of(victim);
    let beats = ticks(hb_r);
    // SAFETY: ending our own child.
    unsafe { libc::kill(hb, libc::SIGKILL) };
    status_of(hb);
    close(hb_r);
    let detail = format!(
        "{total} forgeries ({} whole frames) by {children} processes ({killed} killed{}) in {ms} ms; the victim's secret {}; the heartbeat ticked {beats} times",
        total.div_ceil(FULL as usize),
        if other.is_empty() { String::new() } else { format!(", {}", tally(&other)) },
        if intact { "intact" } else { "CHANGED" }
    );
    report("forgery_fuzz", if intact && beats > 0 { "blocked" } else { "succeeded" }, &detail);
}

fn probe_calls() {
    let ill = probe(|| {
        // SAFETY: uretprobe from outside a trampoline: Linux sends SIGILL.
        unsafe { libc::syscall(335) as u64 }
    });
    let nx = probe(|| {
        // SAFETY: uprobe from outside a trampoline: Linux gives ENXIO.
        let r = unsafe { libc::syscall(336) };
        if r == -1 { errno() as u64 } else { 0 }
    });
    let ok = matches!(&ill, Err(e) if e.contains("SIGILL")) && nx == Ok(libc::ENXIO as u64);
    let detail = format!(
        "uretprobe: {}; uprobe: {}",
        ill.map(|v| format!("returned {v}")).unwrap_or_else(|e| e),
        nx.map(|v| if v == 0 { "returned".into() } else { errno_name(v as c_int) }).unwrap_or_else(|e| e)
    );
    report("probe_calls", if ok { "blocked" } else { "succeeded" }, &detail);
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv as the C runtime passed them.
    let a = unsafe { args(argc, argv) };
    let tries = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let forgeries = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    calibrate();
    if mailbox_live() {
        forged_sleep();
        sleepers_run();
        stale_mapping(tries);
        frozen_executor(tries);
        forgery_fuzz(forgeries);
    } else {
        for name in ["forged_sleep", "sleepers_run", "stale_mapping", "frozen_executor", "forgery_fuzz"] {
            report(name, "n/a", "no mailbox the kernel reads (ptrace trap mode or tt)");
        }
    }
    probe_calls();
    let _ = errno();
    0
}
