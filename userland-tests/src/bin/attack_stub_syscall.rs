//! Isolation attack 5: run a host system call instruction that is not the
//! guest's own, with crafted registers. `attack_stub_syscall CREATE PID`
//! (CREATE a host path to create, PID a host process to kill).
//!
//! - `stub_syscall` (skas): scan the stub's code page (at the fixed
//!   `STUB_BASE` of hal-uml-x86_64's stub.rs, `0x7ff000000000`) for `0f 05`
//!   and jump to each `syscall` found with rax/rdi/rsi/rdx/r10 set for
//!   write(guest pipe), openat(CREATE, O_CREAT) and kill(PID, SIGKILL). The
//!   stub's code runs on to an `int3`, so each attempt is a child that dies;
//!   the write reaching the guest pipe shows the call was emulated by the
//!   guest kernel (SYSEMU), not executed by the host; a death by SIGSYS shows
//!   the stub's seccomp filter refused it. Blocked if every attempt ended one
//!   of these two ways. tt has no stub: n/a.
//! - `kernel_text_syscall` (tt): call the kernel's own host-libc `getppid`
//!   (`RUSTUML_KERNEL_GETPPID`, from `--debug-reveal-canary`), and call its
//!   `syscall` instruction with kill(PID) and openat(CREATE) registers: the
//!   instruction runs in guest context, so SYSEMU traps it too. skas: the
//!   kernel's text is not mapped (SIGSEGV).
//!
//! The test checks the host: CREATE absent, PID alive.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

#[path = "attack/common.rs"]
mod common;

use common::*;
use std::ffi::CString;
use std::os::raw::c_char;
use userland_tests::{args, exit_now, fork, wait_for};

/// hal-uml-x86_64's `stub::STUB_BASE` (where the stub's code page is).
const STUB_BASE: u64 = 0x7ff0_0000_0000;
const PAGE: u64 = 4096;

/// Jumps to `site` (a `syscall` instruction) with the call's registers set;
/// never returns (the code after it is not ours). `r12 = 1` and `rbx` =
/// a zeroed buffer keep the skas stub's executor loop on its shortest path.
///
/// # Safety
/// Deliberately runs foreign code; only for a child that is about to die.
unsafe fn jump(site: u64, nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> ! {
    static ZERO: [u64; 16] = [0; 16];
    // SAFETY: the caller accepts that this never comes back.
    unsafe {
        core::arch::asm!(
            "mov rbx, r9",
            "mov r12, 1",
            "jmp r11",
            in("r11") site,
            in("r9") ZERO.as_ptr(),
            in("rax") nr,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            options(noreturn)
        )
    }
}

/// Calls `site` (a function, or a `syscall; ret` sequence) with the call's
/// registers set, and returns rax.
///
/// # Safety
/// Deliberately runs foreign code; only in a child.
unsafe fn call(site: u64, nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: the caller accepts the risk; all caller-saved registers are declared clobbered.
    unsafe {
        core::arch::asm!(
            "call r11",
            inlateout("r11") site => _,
            inlateout("rax") nr => ret,
            inlateout("rdi") a0 => _,
            inlateout("rsi") a1 => _,
            inlateout("rdx") a2 => _,
            inlateout("r10") a3 => _,
            clobber_abi("C"),
        )
    };
    ret
}

/// Runs `f` in a child and describes how the child ended.
fn child_end(f: impl FnOnce()) -> String {
    let pid = fork();
    if pid == 0 {
        f();
        exit_now(0);
    }
    match wait_for(pid) {
        Ok((_, st)) => ended(st),
        Err(e) => format!("wait4 failed: {e}"),
    }
}

fn stub(create: &CString, pid: u64) {
    // Count, first and last offset of `0f 05` in the stub's code page.
    let scan = probe(|| {
        let p = STUB_BASE as *const u8;
        let (mut n, mut first, mut last) = (0u64, 0u64, 0u64);
        for i in 0..PAGE as usize - 1 {
            // SAFETY: deliberately reads the stub page; a fault kills only this child.
            let (a, b) = unsafe { (p.add(i).read_volatile(), p.add(i + 1).read_volatile()) };
            if a == 0x0f && b == 0x05 {
                if n == 0 {
                    first = i as u64;
                }
                last = i as u64;
                n += 1;
            }
        }
        n | first << 16 | last << 32
    });
    let packed = match scan {
        Ok(v) => v,
        Err(how) => {
            report(
                "stub_syscall",
                "n/a",
                &format!("no stub code at {STUB_BASE:#x} (reading it: {how})"),
            );
            return;
        }
    };
    let n = packed & 0xffff;
    if n == 0 {
        report(
            "stub_syscall",
            "n/a",
            &format!("no syscall instruction in the page at {STUB_BASE:#x}"),
        );
        return;
    }
    let sites = [
        STUB_BASE + (packed >> 16 & 0xffff),
        STUB_BASE + (packed >> 32 & 0xffff),
    ];
    let mut detail = format!("{n} syscall instructions in the stub code page");
    let mut stopped = true;
    for (i, &site) in sites.iter().enumerate() {
        if i == 1 && site == sites[0] {
            break;
        }
        let (r, w) = pipe();
        let msg = b"via-stub";
        // SAFETY: a child that is about to die.
        let how_w = child_end(|| unsafe {
            jump(
                site,
                libc::SYS_write as u64,
                w as u64,
                msg.as_ptr() as u64,
                8,
                0,
            )
        });
        close(w);
        let got = get_u64(r);
        close(r);
        let landed = got == Some(u64::from_ne_bytes(*msg));
        // SAFETY: as above.
        let how_o = child_end(|| unsafe {
            jump(
                site,
                libc::SYS_openat as u64,
                libc::AT_FDCWD as u64,
                create.as_ptr() as u64,
                (libc::O_CREAT | libc::O_WRONLY) as u64,
                0o644,
            )
        });
        let how_k = if pid != 0 {
            // SAFETY: as above.
            child_end(|| unsafe {
                jump(site, libc::SYS_kill as u64, pid, libc::SIGKILL as u64, 0, 0)
            })
        } else {
            "no pid".into()
        };
        // Stopped: emulated by the guest kernel (the write landed in the
        // guest pipe: the same trap path takes the other calls), or refused
        // on the host (the stub's seccomp filter: SIGSYS, or SIGKILL).
        // Anything else may have run on the host.
        let refused = |how: &str| how.contains("SIGSYS") || how.contains("SIGKILL");
        stopped &= landed || (refused(&how_w) && refused(&how_o) && refused(&how_k));
        detail.push_str(&format!(
            "; at {site:#x}: write(guest pipe) {} ({how_w}), openat(host path, O_CREAT): {how_o}, kill({pid}, SIGKILL): {how_k}",
            if landed { "reached the guest pipe: emulated by the guest kernel" } else { "did not reach the guest pipe" },
        ));
    }
    report(
        "stub_syscall",
        if stopped { "blocked" } else { "succeeded" },
        &detail,
    );
}

fn kernel_text(create: &CString, pid: u64) {
    let Some(getppid) = env_num("RUSTUML_KERNEL_GETPPID") else {
        report(
            "kernel_text_syscall",
            "n/a",
            "RUSTUML_KERNEL_GETPPID not set (boot with --debug-reveal-canary)",
        );
        return;
    };
    // The probe's child calls it: its parent is us.
    // SAFETY: the guest's own getpid.
    let mine = unsafe { libc::getpid() } as u64;
    // SAFETY: deliberately calls the kernel's code; a fault kills only the child.
    let r = probe(|| unsafe { call(getppid, 0, 0, 0, 0, 0) });
    let called = match r {
        Ok(v) => v,
        Err(how) => {
            report(
                "kernel_text_syscall",
                "blocked",
                &format!("calling the kernel's getppid at {getppid:#x}: {how}"),
            );
            return;
        }
    };
    let mut detail = format!(
        "called the kernel's host getppid at {getppid:#x}: = {} (the calling guest process's parent is {mine}{})",
        called as i64,
        if called == mine { ": trapped and emulated" } else { "" }
    );
    // Its `syscall` instruction, with other calls' registers.
    // SAFETY: reading the kernel's code (it just ran).
    let site = (getppid..getppid + 32).find(|&a| unsafe {
        (a as *const u8).read_volatile() == 0x0f && ((a + 1) as *const u8).read_volatile() == 0x05
    });
    let mut blocked = called == mine;
    if let Some(site) = site {
        // glibc's getppid is `mov; syscall; ret`: calling the `syscall` returns.
        let k = probe(|| {
            // SAFETY: as above, in a child.
            unsafe { call(site, libc::SYS_kill as u64, pid, libc::SIGKILL as u64, 0, 0) }
        });
        // SAFETY: as above.
        let o = probe(|| unsafe {
            call(
                site,
                libc::SYS_openat as u64,
                libc::AT_FDCWD as u64,
                create.as_ptr() as u64,
                (libc::O_CREAT | libc::O_WRONLY) as u64,
                0o644,
            )
        });
        let show = |r: Result<u64, String>| match r {
            Ok(v) if (v as i64) < 0 => {
                format!("= -{}", userland_tests::errno_name(-(v as i64) as i32))
            }
            Ok(v) => format!("= {v}"),
            Err(how) => how,
        };
        if matches!(k, Ok(0)) {
            blocked = false;
        }
        detail.push_str(&format!(
            "; its syscall instruction at {site:#x} with kill({pid}, SIGKILL) {}, with openat(host path, O_CREAT) {}",
            show(k),
            show(o)
        ));
    }
    report(
        "kernel_text_syscall",
        if blocked { "blocked" } else { "succeeded" },
        &detail,
    );
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let a = unsafe { args(argc, argv) };
    let create = CString::new(
        a.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/rustuml-attack-stub".into()),
    )
    .unwrap_or_default();
    let pid = a.get(2).and_then(|p| p.parse().ok()).unwrap_or(0u64);
    stub(&create, pid);
    kernel_text(&create, pid);
    0
}
