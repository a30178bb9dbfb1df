//! The vDSO against Linux's: `AT_SYSINFO_EHDR` names an ELF shared object
//! with `__vdso_clock_gettime`, `__vdso_gettimeofday`, `__vdso_time` and
//! `__vdso_getcpu` at version `LINUX_2.6`; `/proc/self/maps` shows
//! `[vdso]` and `[vvar]`; each routine agrees with its system call (a vDSO
//! reading lies between two system-call readings); the clock never goes
//! backwards; the data page cannot be written or made writable; a forked
//! child and an exec'd program have it too. Prints one line per check;
//! exits 1 on a failure.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "conf/common.rs"]
mod common;

use common::*;
use userland_tests::{errno, errno_name, exit_now, fork, wait_for};

type ClockGettime = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> i32;
type Gettimeofday = unsafe extern "C" fn(*mut libc::timeval, *mut libc::c_void) -> i32;
type Time = unsafe extern "C" fn(*mut libc::time_t) -> libc::time_t;
type Getcpu = unsafe extern "C" fn(*mut u32, *mut u32, *mut libc::c_void) -> i32;

fn rd<T: Copy>(a: u64) -> T {
    // SAFETY: callers pass addresses inside the vDSO image, which is mapped readable.
    unsafe { (a as *const T).read_unaligned() }
}

/// The System V ELF hash.
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// Looks `name` up in the vDSO at `base` through its `DT_HASH` table, as
/// a dynamic linker does, checking that its version is `LINUX_2.6`.
fn lookup(base: u64, name: &str) -> Option<u64> {
    let phoff: u64 = rd(base + 32);
    let phnum: u16 = rd(base + 56);
    // The load bias: the image's address minus its first PT_LOAD's vaddr.
    let mut bias = None;
    let mut dynamic = None;
    for i in 0..u64::from(phnum) {
        let ph = base + phoff + 56 * i;
        let ty: u32 = rd(ph);
        let vaddr: u64 = rd(ph + 16);
        if ty == 1 && bias.is_none() {
            bias = Some(base.wrapping_sub(vaddr & !0xfff));
        }
        if ty == 2 {
            dynamic = Some(vaddr);
        }
    }
    let (bias, dynamic) = (bias?, dynamic?);
    let (mut hash, mut strtab, mut symtab, mut versym, mut verdef) = (0, 0, 0, 0, 0);
    let mut d = bias + dynamic;
    loop {
        let tag: i64 = rd(d);
        let val: u64 = rd(d + 8);
        match tag {
            0 => break,
            4 => hash = bias + val,
            5 => strtab = bias + val,
            6 => symtab = bias + val,
            0x6fff_fff0 => versym = bias + val,
            0x6fff_fffc => verdef = bias + val,
            _ => {}
        }
        d += 16;
    }
    if hash == 0 || strtab == 0 || symtab == 0 {
        return None;
    }
    let nbucket: u32 = rd(hash);
    let cstr = |a: u64| {
        let mut v = Vec::new();
        let mut p = a;
        while rd::<u8>(p) != 0 && v.len() < 256 {
            v.push(rd::<u8>(p));
            p += 1;
        }
        v
    };
    let mut i: u32 = rd(hash + 8 + 4 * u64::from(elf_hash(name.as_bytes()) % nbucket));
    let chains = hash + 8 + 4 * u64::from(nbucket);
    while i != 0 {
        let s = symtab + 24 * u64::from(i);
        let st_name: u32 = rd(s);
        if cstr(strtab + u64::from(st_name)) == name.as_bytes() {
            let value: u64 = rd(s + 8);
            // Its version must be LINUX_2.6.
            if versym != 0 && verdef != 0 {
                let ndx: u16 = rd(versym + 2 * u64::from(i));
                let mut v = verdef;
                let mut found = false;
                loop {
                    let vd_ndx: u16 = rd(v + 4);
                    let vd_aux: u32 = rd(v + 12);
                    let vd_next: u32 = rd(v + 16);
                    if vd_ndx == ndx & 0x7fff {
                        let vda_name: u32 = rd(v + u64::from(vd_aux));
                        found = cstr(strtab + u64::from(vda_name)) == b"LINUX_2.6";
                        break;
                    }
                    if vd_next == 0 {
                        break;
                    }
                    v += u64::from(vd_next);
                }
                if !found {
                    return None;
                }
            }
            return Some(bias + value);
        }
        i = rd(chains + 4 * u64::from(i));
    }
    None
}

fn ns(ts: &libc::timespec) -> i128 {
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn sys_clock(clk: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clk, &mut ts) };
    ns(&ts)
}

/// The `[vvar]` and `[vdso]` lines of `/proc/self/maps`: (start, end, perms).
fn maps_entry(name: &str) -> Option<(u64, u64, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with(name))?;
    let mut f = line.split_whitespace();
    let (range, perms) = (f.next()?, f.next()?);
    let (a, b) = range.split_once('-')?;
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?, perms.to_string()))
}

fn checks(base: u64) {
    let magic: [u8; 4] = rd(base);
    t("vdso_is_elf", &magic == b"\x7fELF", format!("{magic:?}"));
    let vdso = maps_entry("[vdso]");
    t("maps_vdso", vdso.as_ref().is_some_and(|(s, e, p)| (*s..*e).contains(&base) && p.starts_with("r-x")), format!("{vdso:?}"));
    let vvar = maps_entry("[vvar]");
    t("maps_vvar", vvar.as_ref().is_some_and(|(_, _, p)| p.starts_with("r--")), format!("{vvar:?}"));
    let cg = lookup(base, "__vdso_clock_gettime");
    let gtod = lookup(base, "__vdso_gettimeofday");
    let tm = lookup(base, "__vdso_time");
    let gc = lookup(base, "__vdso_getcpu");
    t("symbols", cg.is_some() && gtod.is_some() && tm.is_some() && gc.is_some(), format!("{cg:?} {gtod:?} {tm:?} {gc:?}"));
    let (Some(cg), Some(gtod), Some(tm), Some(gc)) = (cg, gtod, tm, gc) else { return };
    // SAFETY: the addresses are the vDSO's exported functions, with Linux's signatures.
    let (cg, gtod, tm, gc) = unsafe {
        (
            std::mem::transmute::<u64, ClockGettime>(cg),
            std::mem::transmute::<u64, Gettimeofday>(gtod),
            std::mem::transmute::<u64, Time>(tm),
            std::mem::transmute::<u64, Getcpu>(gc),
        )
    };
    let vclock = |clk| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid out-pointer.
        let r = unsafe { cg(clk, &mut ts) };
        (r, ns(&ts))
    };
    for (name, clk) in [
        ("monotonic", libc::CLOCK_MONOTONIC),
        ("realtime", libc::CLOCK_REALTIME),
        ("boottime", libc::CLOCK_BOOTTIME),
        ("monotonic_raw", libc::CLOCK_MONOTONIC_RAW),
    ] {
        let mut ok = true;
        let mut detail = String::new();
        for _ in 0..1000 {
            let a = sys_clock(clk);
            let (r, v) = vclock(clk);
            let b = sys_clock(clk);
            // MONOTONIC_RAW runs at the uncorrected rate natively: allow it
            // to stray from the syscall readings by a millisecond.
            let slack = if clk == libc::CLOCK_MONOTONIC_RAW { 1_000_000 } else { 0 };
            if r != 0 || v < a - slack || v > b + slack {
                ok = false;
                detail = format!("r={r} syscall {a} vdso {v} syscall {b}");
                break;
            }
        }
        t(&format!("clock_gettime_{name}_between_syscalls"), ok, detail);
    }
    // The coarse clocks tick with the host's jiffies natively: within 50 ms.
    for (name, clk, fine) in [("monotonic_coarse", libc::CLOCK_MONOTONIC_COARSE, libc::CLOCK_MONOTONIC), ("realtime_coarse", libc::CLOCK_REALTIME_COARSE, libc::CLOCK_REALTIME)] {
        let (r, v) = vclock(clk);
        let f = sys_clock(fine);
        t(&format!("clock_gettime_{name}_close"), r == 0 && (f - v).abs() < 50_000_000, format!("r={r} {v} vs {f}"));
    }
    // A CPU clock: the vDSO falls back to the system call.
    let (r, v) = vclock(libc::CLOCK_PROCESS_CPUTIME_ID);
    t("clock_gettime_cputime_falls_back", r == 0 && v > 0, format!("r={r} v={v}"));
    let (r, _) = vclock(12345);
    t("clock_gettime_bad_clock_einval", r == -libc::EINVAL, format!("r={r}"));
    // Never backwards over many reads.
    let mut prev = 0;
    let mut back = None;
    for i in 0..200_000 {
        let (_, v) = vclock(libc::CLOCK_MONOTONIC);
        if v < prev {
            back = Some((i, prev, v));
            break;
        }
        prev = v;
    }
    t("monotonic_never_backwards", back.is_none(), format!("{back:?}"));
    // gettimeofday and time agree with the realtime clock.
    let a = sys_clock(libc::CLOCK_REALTIME) / 1000;
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: a valid out-pointer, no timezone.
    let r = unsafe { gtod(&mut tv, std::ptr::null_mut()) };
    let v = tv.tv_sec as i128 * 1_000_000 + tv.tv_usec as i128;
    let b = sys_clock(libc::CLOCK_REALTIME) / 1000 + 1;
    t("gettimeofday_between_syscalls", r == 0 && a <= v && v <= b, format!("r={r} {a} {v} {b}"));
    let a = sys_clock(libc::CLOCK_REALTIME) / 1_000_000_000;
    let mut out: libc::time_t = 0;
    // SAFETY: a valid out-pointer.
    let v = unsafe { tm(&mut out) } as i128;
    let b = sys_clock(libc::CLOCK_REALTIME) / 1_000_000_000;
    // Linux's time() reads the tick-updated (coarse) seconds: up to a tick behind.
    t("time_between_syscalls", a - 1 <= v && v <= b && out as i128 == v, format!("{a} {v} {b} {out}"));
    let (mut cpu, mut node) = (u32::MAX, u32::MAX);
    // SAFETY: valid out-pointers.
    let r = unsafe { gc(&mut cpu, &mut node, std::ptr::null_mut()) };
    // SAFETY: sysconf has no preconditions.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    t("getcpu_in_range", r == 0 && i64::from(cpu) < ncpu as i64 && node == 0, format!("r={r} cpu={cpu} node={node} ncpu={ncpu}"));
    // glibc's own clock_gettime agrees too.
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let a = sys_clock(libc::CLOCK_MONOTONIC);
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let b = sys_clock(libc::CLOCK_MONOTONIC);
    t("libc_clock_gettime_between_syscalls", a <= ns(&ts) && ns(&ts) <= b, format!("{a} {} {b}", ns(&ts)));
    // The data page: no writes, and never writable.
    if let Some((start, end, _)) = vvar {
        let child = fork();
        if child == 0 {
            // SAFETY: deliberately writes a read-only page; the fault kills only this child.
            unsafe { ((start + 0x800) as *mut u64).write_volatile(0x0bad) };
            exit_now(0);
        }
        let st = wait_for(child).map(|(_, s)| s).unwrap_or(-1);
        t("vvar_write_faults", libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSEGV, format!("status {st:#x}"));
        // SAFETY: asks to change a mapping's protection; the kernel refuses.
        let r = unsafe { libc::mprotect(start as *mut libc::c_void, (end - start) as usize, libc::PROT_READ | libc::PROT_WRITE) };
        let e = errno();
        t("vvar_mprotect_write_refused", r == -1 && e == libc::EACCES, format!("r={r} {}", errno_name(e)));
    }
    // A forked child reads the clock through the vDSO too.
    let child = fork();
    if child == 0 {
        let a = sys_clock(libc::CLOCK_MONOTONIC);
        let (r, v) = vclock(libc::CLOCK_MONOTONIC);
        let b = sys_clock(libc::CLOCK_MONOTONIC);
        exit_now(if r == 0 && a <= v && v <= b { 0 } else { 1 });
    }
    let st = wait_for(child).map(|(_, s)| s).unwrap_or(-1);
    t("forked_child_vdso", libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, format!("status {st:#x}"));
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, _argv: *const *const u8) -> i32 {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    if argc > 1 {
        // Run by the exec check below: only whether the new image has a vDSO.
        return if base != 0 && rd::<[u8; 4]>(base) == *b"\x7fELF" { 0 } else { 1 };
    }
    t("at_sysinfo_ehdr", base != 0, "AT_SYSINFO_EHDR is 0".into());
    if base != 0 {
        checks(base);
    }
    // An exec'd program gets a vDSO of its own.
    let child = fork();
    if child == 0 {
        let me = std::ffi::CString::new("/proc/self/exe").unwrap_or_default();
        let arg = std::ffi::CString::new("again").unwrap_or_default();
        let argv = [me.as_ptr(), arg.as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv.
        unsafe { libc::execv(me.as_ptr(), argv.as_ptr()) };
        exit_now(2);
    }
    let st = wait_for(child).map(|(_, s)| s).unwrap_or(-1);
    t("exec_has_vdso", libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, format!("status {st:#x}"));
    // SAFETY: single-threaded program.
    i32::from(unsafe { FAILED })
}
