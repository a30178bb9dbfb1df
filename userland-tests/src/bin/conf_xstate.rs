//! Conformance: every thread owns its whole vector register state.
//!
//! Two to eight threads each hold their own values in `ymm7` (its `xmm7`
//! half included), MXCSR, and where the CPU has AVX-512 in `zmm7`, `zmm16`,
//! `zmm31` and the opmask registers `k1`, `k7`, across: system calls
//! (`getpid`, `sched_yield`), page faults on fresh memory, a busy loop long
//! enough to be preempted, and a signal whose handler clobbers all of them.
//! Then a fork while holding values (both sides keep them), and an `execve`
//! that must not pass them on. Every register is loaded, kept across the
//! event and stored inside one `asm!` block, so nothing but the kernel can
//! touch them in between. Deterministic output; exits 0 if all passed. Where
//! the CPU lacks AVX or AVX-512 the part is skipped with a printed note.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;

use std::arch::asm;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use userland_tests::{describe_status, exit_now, say, wait_for};

/// The register image a check loads and stores, at the offsets the `asm!`
/// blocks use: ymm7, zmm16, zmm31, zmm7's upper half, k1, k7, MXCSR.
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Regs([u8; 320]);

const YMM7: usize = 0;
const ZMM16: usize = 64;
const ZMM31: usize = 128;
const ZMM7_HI: usize = 224;
const K1: usize = 256;
const K7: usize = 264;
const MXCSR: usize = 296;
/// The AVX-512 parts: (offset, length).
const AVX512_PARTS: [(usize, usize); 5] = [(ZMM16, 64), (ZMM31, 64), (ZMM7_HI, 32), (K1, 8), (K7, 8)];

impl Regs {
    fn pattern(seed: u8) -> Regs {
        let mut r = Regs([0; 320]);
        for (i, b) in r.0.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8) | 1;
        }
        // Rounding control (bits 13-14) per thread, exceptions masked.
        let mxcsr = 0x1f80u32 | (u32::from(seed % 4) << 13);
        r.0[MXCSR..MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
        r
    }
    fn part(&self, off: usize, len: usize) -> &[u8] {
        &self.0[off..off + len]
    }
    fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.0[MXCSR], self.0[MXCSR + 1], self.0[MXCSR + 2], self.0[MXCSR + 3]])
    }
}

static AVX: AtomicBool = AtomicBool::new(false);
static AVX512: AtomicBool = AtomicBool::new(false);

/// What happens while the registers are held.
#[derive(Clone, Copy)]
enum Event {
    /// A system call: number and three arguments.
    Syscall(i64, u64, u64, u64),
    /// Touch one byte in each of `n` pages from `p`: a page fault each.
    Touch(*mut u8, u64),
    /// Spin `n` iterations: long enough to be preempted.
    Spin(u64),
}

/// Load `r`, let `ev` happen, store into the returned image (and the
/// system call's result).
fn hold(r: &Regs, ev: Event) -> (Regs, i64) {
    let mut out = Regs([0; 320]);
    let ret = if AVX512.load(SeqCst) {
        // SAFETY: AVX-512F is present (checked at start).
        unsafe { hold512(r, &mut out, ev) }
    } else {
        // SAFETY: AVX is present (checked at start; callers skip otherwise).
        unsafe { hold256(r, &mut out, ev) }
    };
    (out, ret)
}

fn event_regs(ev: Event) -> (u64, u64, u64, u64, u64) {
    match ev {
        Event::Syscall(nr, a, b, c) => (0, nr as u64, a, b, c),
        Event::Touch(p, n) => (1, 0, p as u64, n, 0),
        Event::Spin(n) => (2, 0, 0, n, 0),
    }
}

#[target_feature(enable = "avx")]
unsafe fn hold256(r: &Regs, out: &mut Regs, ev: Event) -> i64 {
    let (op, nr, a, b, c) = event_regs(ev);
    let mut ret = nr;
    // SAFETY: reads `r`, writes `out` (both valid); the event's system call
    // or memory touches are what the caller asked for; every register used is
    // declared.
    unsafe {
        asm!(
            "ldmxcsr [{src} + 296]",
            "vmovdqu ymm7, [{src}]",
            "cmp {op}, 1",
            "je 2f",
            "cmp {op}, 2",
            "je 3f",
            "syscall",
            "jmp 4f",
            "2:",
            "test rsi, rsi",
            "jz 4f",
            "mov byte ptr [rdi], 1",
            "add rdi, 4096",
            "dec rsi",
            "jmp 2b",
            "3:",
            "dec rsi",
            "jnz 3b",
            "4:",
            "vmovdqu [{dst}], ymm7",
            "stmxcsr [{dst} + 296]",
            "ldmxcsr [{dflt}]",
            src = in(reg) r as *const Regs,
            dst = in(reg) out as *mut Regs,
            op = in(reg) op,
            dflt = in(reg) &DEFAULT_MXCSR as *const u32,
            inout("rax") ret,
            inout("rdi") a => _,
            inout("rsi") b => _,
            in("rdx") c,
            out("rcx") _,
            out("r11") _,
            out("ymm7") _,
        );
    }
    ret as i64
}

static DEFAULT_MXCSR: u32 = 0x1f80;

#[target_feature(enable = "avx512f")]
unsafe fn hold512(r: &Regs, out: &mut Regs, ev: Event) -> i64 {
    let (op, nr, a, b, c) = event_regs(ev);
    let mut ret = nr;
    // SAFETY: as in `hold256`, with the AVX-512 registers declared too.
    unsafe {
        asm!(
            "ldmxcsr [{src} + 296]",
            "vmovdqu ymm7, [{src}]",
            "vmovdqu64 zmm16, [{src} + 64]",
            "vmovdqu64 zmm31, [{src} + 128]",
            "kmovq k1, [{src} + 256]",
            "kmovq k7, [{src} + 264]",
            // zmm7: its own 64-byte pattern, except the low 32 bytes, which
            // must stay ymm7's.
            "vinserti64x4 zmm7, zmm7, [{src} + 224], 1",
            "cmp {op}, 1",
            "je 2f",
            "cmp {op}, 2",
            "je 3f",
            "syscall",
            "jmp 4f",
            "2:",
            "test rsi, rsi",
            "jz 4f",
            "mov byte ptr [rdi], 1",
            "add rdi, 4096",
            "dec rsi",
            "jmp 2b",
            "3:",
            "dec rsi",
            "jnz 3b",
            "4:",
            "vmovdqu [{dst}], ymm7",
            "vmovdqu64 [{dst} + 64], zmm16",
            "vmovdqu64 [{dst} + 128], zmm31",
            "kmovq [{dst} + 256], k1",
            "kmovq [{dst} + 264], k7",
            "vextracti64x4 [{dst} + 224], zmm7, 1",
            "stmxcsr [{dst} + 296]",
            "ldmxcsr [{dflt}]",
            src = in(reg) r as *const Regs,
            dst = in(reg) out as *mut Regs,
            op = in(reg) op,
            dflt = in(reg) &DEFAULT_MXCSR as *const u32,
            inout("rax") ret,
            inout("rdi") a => _,
            inout("rsi") b => _,
            in("rdx") c,
            out("rcx") _,
            out("r11") _,
            out("zmm7") _,
            out("zmm16") _,
            out("zmm31") _,
            out("k1") _,
            out("k7") _,
        );
    }
    ret as i64
}

/// What a check compares: the parts the CPU has.
fn same(a: &Regs, b: &Regs) -> bool {
    let zmm = !AVX512.load(SeqCst) || AVX512_PARTS.iter().all(|&(o, l)| a.part(o, l) == b.part(o, l));
    a.part(YMM7, 32) == b.part(YMM7, 32) && a.mxcsr() == b.mxcsr() && zmm
}

/// Signal handler: load junk into every register a check holds, and MXCSR.
extern "C" fn clobber(_sig: i32) {
    let junk = Regs::pattern(0xee);
    if AVX512.load(SeqCst) {
        // SAFETY: AVX-512F present; the registers written are declared.
        unsafe { load512(&junk) };
    }
    // SAFETY: AVX present; ymm7 is declared clobbered.
    unsafe { asm!("vmovdqu ymm7, [{0}]", "ldmxcsr [{0} + 296]", in(reg) &junk as *const Regs, out("ymm7") _) };
}

#[target_feature(enable = "avx512f")]
unsafe fn load512(r: &Regs) {
    // SAFETY: reads `r`; the registers written are declared.
    unsafe {
        asm!(
            "vmovdqu64 zmm16, [{0} + 64]",
            "vmovdqu64 zmm31, [{0} + 128]",
            "vinserti64x4 zmm7, zmm7, [{0} + 224], 1",
            "kmovq k1, [{0} + 256]",
            "kmovq k7, [{0} + 264]",
            in(reg) r as *const Regs,
            out("zmm7") _,
            out("zmm16") _,
            out("zmm31") _,
            out("k1") _,
            out("k7") _,
        )
    };
}

fn gettid() -> u64 {
    // SAFETY: plain system call.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// One thread's checks; `seed` makes its values its own.
fn thread_checks(seed: u8, pages: *mut u8, npages: u64) -> Vec<(&'static str, bool)> {
    let mine = Regs::pattern(seed);
    let pid = std::process::id() as u64;
    let mut res = Vec::new();
    for _ in 0..20 {
        res.push(("getpid", same(&hold(&mine, Event::Syscall(libc::SYS_getpid, 0, 0, 0)).0, &mine)));
        res.push(("sched_yield", same(&hold(&mine, Event::Syscall(libc::SYS_sched_yield, 0, 0, 0)).0, &mine)));
    }
    res.push(("page faults", same(&hold(&mine, Event::Touch(pages, npages)).0, &mine)));
    res.push(("preemption in a busy loop", same(&hold(&mine, Event::Spin(150_000_000)).0, &mine)));
    let tid = gettid();
    let sig = Event::Syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1 as u64);
    res.push(("a signal handler that clobbers them", same(&hold(&mine, sig).0, &mine)));
    res
}

fn threads(n: usize) {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let len = 16 * 4096;
                let p = userland_tests::mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)
                    .unwrap_or(std::ptr::null_mut());
                if p.is_null() {
                    return vec![("mmap", false)];
                }
                thread_checks(0x10 + i as u8, p, 16)
            })
        })
        .collect();
    let mut all: Vec<(&str, bool)> = Vec::new();
    for h in handles {
        for (what, good) in h.join().unwrap_or_else(|_| vec![("thread panicked", false)]) {
            match all.iter_mut().find(|(w, _)| *w == what) {
                Some(e) => e.1 &= good,
                None => all.push((what, good)),
            }
        }
    }
    for (what, good) in all {
        ok(&format!("{n} threads keep their own registers across {what}"), good);
    }
}

fn fork_keeps() {
    let mine = Regs::pattern(0x42);
    let (got, pid) = hold(&mine, Event::Syscall(libc::SYS_fork, 0, 0, 0));
    if pid == 0 {
        exit_now(if same(&got, &mine) { 0 } else { 1 });
    }
    ok("fork: the parent keeps its registers", same(&got, &mine));
    let st = wait_for(pid as i32).map(|(_, s)| describe_status(s)).unwrap_or_default();
    ok(&format!("fork: the child starts with the parent's registers ({st})"), st == "exited 0");
}

/// `execve` of this program with `after-exec`, while holding a pattern.
fn exec_clean(argv0: *const c_char) {
    // Natively argv[0] is the guest's path (/tests/...): exec ourselves
    // through /proc where it is there.
    let selfexe = c("/proc/self/exe");
    let path = if std::fs::metadata("/proc/self/exe").is_ok() { selfexe.as_ptr() } else { argv0 };
    let pid = userland_tests::fork();
    if pid == 0 {
        let arg = c("after-exec");
        let argv = [argv0, arg.as_ptr(), std::ptr::null()];
        let envp: [*const c_char; 1] = [std::ptr::null()];
        let mine = Regs::pattern(0x77);
        let ev = Event::Syscall(libc::SYS_execve, path as u64, argv.as_ptr() as u64, envp.as_ptr() as u64);
        hold(&mine, ev);
        exit_now(3);
    }
    let st = wait_for(pid).map(|(_, s)| describe_status(s)).unwrap_or_default();
    ok(&format!("execve: the new program finds none of the old registers ({st})"), st == "exited 0");
}

/// In the exec'd program: nothing of `pattern(0x77)` may be left, and
/// MXCSR is back to its default.
fn after_exec() -> i32 {
    let old = Regs::pattern(0x77);
    let mut now = Regs([0; 320]);
    if AVX512.load(SeqCst) {
        // SAFETY: AVX-512F present; only stores.
        unsafe { store512(&mut now) };
    }
    // SAFETY: AVX present; only stores.
    unsafe { asm!("vmovdqu [{d}], ymm7", "stmxcsr [{d} + 296]", d = in(reg) &mut now as *mut Regs) };
    let leaked = now.part(YMM7, 32) == old.part(YMM7, 32)
        || (AVX512.load(SeqCst) && AVX512_PARTS.iter().any(|&(o, l)| now.part(o, l) == old.part(o, l)));
    if leaked || now.mxcsr() != 0x1f80 {
        1
    } else {
        0
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn store512(r: &mut Regs) {
    // SAFETY: writes `r`; reads registers only.
    unsafe {
        asm!(
            "vmovdqu64 [{d} + 64], zmm16",
            "vmovdqu64 [{d} + 128], zmm31",
            "vextracti64x4 [{d} + 224], zmm7, 1",
            "kmovq [{d} + 256], k1",
            "kmovq [{d} + 264], k7",
            d = in(reg) r as *mut Regs,
        )
    };
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    AVX.store(std::arch::is_x86_feature_detected!("avx"), SeqCst);
    AVX512.store(std::arch::is_x86_feature_detected!("avx512f"), SeqCst);
    // SAFETY: argv has argc entries.
    let args: Vec<*const c_char> = (0..argc as usize).map(|i| unsafe { *argv.add(i) }).collect();
    if !AVX.load(SeqCst) {
        say!("note: this CPU has no AVX: nothing to check");
        return 0;
    }
    if args.len() > 1 {
        return after_exec();
    }
    if !AVX512.load(SeqCst) {
        say!("note: this CPU has no AVX-512: zmm and opmask registers skipped");
    }
    // SAFETY: installing a handler; `clobber` is async-signal-safe (registers only).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = clobber as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    for n in [2, 4, 8] {
        threads(n);
    }
    fork_keeps();
    exec_clean(args[0]);
    if FAILS.load(SeqCst) == 0 {
        0
    } else {
        1
    }
}
