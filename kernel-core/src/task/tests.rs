//! Whole-kernel tests of signals, threads, futexes and vfork with the mock
//! HAL: `boot` runs a tiny ELF whose "instructions" are scripted by the mock
//! CPU. Each step is keyed by `rip`: a system call step sets the number and
//! arguments and advances `rip` by 2 (the length of `syscall`), so the
//! kernel's restart logic (`rip -= 2`) re-executes it exactly as on a CPU.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::mock::{MockHal, MockPhys, MockSpace};
use hal::{Access, FpuState, Trap, UserContext};
use linux_raw_sys::general as g;

use crate::kernel::{boot, BootConfig};

const ENTRY: u64 = 0x401000;
const HANDLER: u64 = 0x402000;
const RESTORER: u64 = 0x403000;
const CHILD: u64 = 0x403800;
/// Scratch data (a bss segment).
const SCR: u64 = 0x600000;

/// A static ELF: text 0x400000..0x404000 (R-X), bss 0x600000..0x604000 (RW-).
fn elf() -> Vec<u8> {
    let mut f = vec![0u8; 0x2000];
    let mut h = Vec::new();
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h.extend_from_slice(&62u16.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&ENTRY.to_le_bytes());
    h.extend_from_slice(&64u64.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&56u16.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&[0; 6]);
    for (flags, off, vaddr, filesz, memsz) in [(5u32, 0u64, 0x400000u64, 0x2000u64, 0x4000u64), (6, 0, SCR, 0, 0x4000)] {
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        for v in [off, vaddr, vaddr, filesz, memsz, 0x1000] {
            h.extend_from_slice(&v.to_le_bytes());
        }
    }
    f[..h.len()].copy_from_slice(&h);
    f
}

/// A newc archive with `/init`.
fn initramfs() -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino, mode, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, namesize, 0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    entry("init", 0o100755, &elf(), 1);
    entry("TRAILER!!!", 0, &[], 0);
    out
}

/// Shared between the test and the mock CPU.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    fails: Vec<String>,
}
type L = Rc<RefCell<Log>>;

fn check(l: &L, what: &str, cond: bool) {
    if cond {
        l.borrow_mut().lines.push(String::from(what));
    } else {
        l.borrow_mut().fails.push(String::from(what));
    }
}

fn sys(ctx: &mut UserContext, nr: u32, a: &[u64]) -> Trap {
    let r = &mut ctx.regs;
    r.orig_rax = nr as u64;
    r.rax = nr as u64;
    let mut args = [0u64; 6];
    args[..a.len()].copy_from_slice(a);
    r.rdi = args[0];
    r.rsi = args[1];
    r.rdx = args[2];
    r.r10 = args[3];
    r.r8 = args[4];
    r.r9 = args[5];
    r.rip += 2;
    Trap::Syscall
}

fn rd(space: &MockSpace, phys: &MockPhys, addr: u64, len: usize) -> Result<Vec<u8>, Trap> {
    let mut b = vec![0u8; len];
    space.user_read(phys, addr, &mut b)?;
    Ok(b)
}

fn rd64(space: &MockSpace, phys: &MockPhys, addr: u64) -> Result<u64, Trap> {
    let b = rd(space, phys, addr, 8)?;
    Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

fn rd32(space: &MockSpace, phys: &MockPhys, addr: u64) -> Result<u32, Trap> {
    let b = rd(space, phys, addr, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn sigaction_bytes(handler: u64, flags: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&handler.to_le_bytes());
    v.extend_from_slice(&(flags | g::SA_RESTORER as u64).to_le_bytes());
    v.extend_from_slice(&RESTORER.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v
}

/// `ret`: pop the return address.
fn ret(ctx: &mut UserContext, space: &MockSpace, phys: &MockPhys) -> Result<(), Trap> {
    ctx.regs.rip = rd64(space, phys, ctx.regs.rsp)?;
    ctx.regs.rsp += 8;
    Ok(())
}

fn run(cpu: impl FnMut(&mut UserContext, &mut MockSpace, &MockPhys) -> Result<Trap, Trap> + 'static) -> (i32, MockHal) {
    let mut cpu = cpu;
    let mut hal = MockHal::new(8 << 20, Box::new(move |ctx, space, phys| match cpu(ctx, space, phys) {
        Ok(t) | Err(t) => t,
    }));
    let cfg = BootConfig {
        init: String::from("/init"),
        args: vec![String::from("/init")],
        initramfs: initramfs(),
        uname_release: String::from("6.1.0"),
        hostname: String::from("t"),
        ..BootConfig::default()
    };
    let st = boot(&mut hal, cfg).unwrap_or(-1);
    (st, hal)
}

fn pc(ctx: &UserContext, base: u64) -> u64 {
    (ctx.regs.rip.wrapping_sub(base)) / 2
}

fn assert_ok(st: i32, l: &L, hal: &MockHal, want: &[&str]) {
    let log = l.borrow();
    assert!(log.fails.is_empty(), "failed checks: {:?}\nkernel log: {:?}", log.fails, hal.log);
    for w in want {
        assert!(log.lines.iter().any(|x| x == w), "missing check {w:?}; passed: {:?}; log {:?}", log.lines, hal.log);
    }
    assert_eq!(st, 0, "exit status; kernel log {:?}", hal.log);
}

#[test]
fn signal_frame_round_trip_restores_exact_registers() {
    let l: L = Rc::default();
    let lc = l.clone();
    let (st, hal) = run(move |ctx, space, phys| loop {
        let rip = ctx.regs.rip;
        if rip == HANDLER {
            let r = ctx.regs;
            check(&lc, "handler gets the signal number", r.rdi == g::SIGUSR1 as u64);
            let info = rd(space, phys, r.rsi, 128)?;
            let code = i32::from_le_bytes([info[8], info[9], info[10], info[11]]);
            check(&lc, "siginfo: signo and SI_TKILL", info[0] as u32 == g::SIGUSR1 && code == g::SI_TKILL);
            check(&lc, "ucontext follows pretcode", r.rdx == r.rsp + 8 && r.rsi == r.rsp + 8 + 304);
            let r12 = rd64(space, phys, r.rdx + 40 + 4 * 8)?;
            check(&lc, "uc_mcontext holds the interrupted r12", r12 == 0x1212_1212);
            let fpstate = rd64(space, phys, r.rdx + 40 + 184)?;
            let fx = rd(space, phys, fpstate, 512)?;
            check(&lc, "fpstate: FXSAVE image with xmm0, 64-byte aligned", fpstate % 64 == 0 && fx[160] == 0xab);
            let w = |o: usize| u32::from_le_bytes([fx[o], fx[o + 1], fx[o + 2], fx[o + 3]]);
            let size = hal::mock::MOCK_FPU_LAYOUT.size as u64;
            check(
                &lc,
                "sw_reserved describes an XSAVE frame",
                w(464) == 0x4650_5853 && u64::from(w(468)) == size + 4 && u64::from(w(480)) == size,
            );
            let ext = rd(space, phys, fpstate + 576, 1)?;
            let magic2 = rd(space, phys, fpstate + size, 4)?;
            check(&lc, "ymm0's upper half and FP_XSTATE_MAGIC2 in the frame", ext[0] == 0xcd && magic2 == [0x45, 0x58, 0x50, 0x46]);
            check(&lc, "uc_flags has UC_FP_XSTATE", rd64(space, phys, r.rdx)? & 1 == 1);
            check(&lc, "return address is sa_restorer", rd64(space, phys, r.rsp)? == RESTORER);
            check(&lc, "stack aligned as after a call", (r.rsp + 8) % 16 == 0);
            check(&lc, "handler starts with DF clear and fresh FPU", r.eflags & 0x400 == 0 && ctx.fpu == FpuState::default());
            // Clobber everything the handler may.
            ctx.regs.r12 = 0;
            ctx.regs.r13 = 0;
            ctx.regs.rbx = 0;
            ctx.regs.rbp = 0;
            ctx.regs.eflags |= 0x1; // CF
            ctx.fpu.0[160] = 0x11;
            ctx.fpu.0[576] = 0x22;
            ret(ctx, space, phys)?;
            continue;
        }
        if rip == RESTORER {
            return Ok(sys(ctx, g::__NR_rt_sigreturn, &[]));
        }
        return Ok(match pc(ctx, ENTRY) {
            0 => {
                space.user_write(phys, SCR, &sigaction_bytes(HANDLER, g::SA_SIGINFO as u64))?;
                sys(ctx, g::__NR_rt_sigaction, &[g::SIGUSR1 as u64, SCR, 0, 8])
            }
            1 => {
                check(&lc, "rt_sigaction ok", ctx.regs.rax == 0);
                ctx.regs.r12 = 0x1212_1212;
                ctx.regs.r13 = 0x1313_1313;
                ctx.regs.rbx = 0xbbbb;
                ctx.regs.rbp = 0xbebe;
                ctx.regs.eflags |= 0x400;
                ctx.fpu.0[160] = 0xab;
                ctx.fpu.0[576] = 0xcd; // ymm0's upper half, AVX marked in use
                ctx.fpu.0[512] |= 4;
                sys(ctx, g::__NR_tgkill, &[1, 1, g::SIGUSR1 as u64])
            }
            2 => {
                let r = ctx.regs;
                check(&lc, "after rt_sigreturn: rax is tgkill's result", r.rax == 0);
                check(
                    &lc,
                    "after rt_sigreturn: registers restored exactly",
                    r.r12 == 0x1212_1212 && r.r13 == 0x1313_1313 && r.rbx == 0xbbbb && r.rbp == 0xbebe,
                );
                check(&lc, "after rt_sigreturn: eflags and FPU restored", r.eflags & 0x401 == 0x400 && ctx.fpu.0[160] == 0xab && ctx.fpu.0[576] == 0xcd);
                check(&lc, "after rt_sigreturn: selectors sane", r.cs == 0x33 && r.ss == 0x2b);
                sys(ctx, g::__NR_rt_sigprocmask, &[g::SIG_SETMASK as u64, SCR + 512, SCR + 520, 8])
            }
            3 => {
                let old = rd64(space, phys, SCR + 520)?;
                check(&lc, "mask restored after the handler", old == 0);
                sys(ctx, g::__NR_exit_group, &[0])
            }
            n => panic!("unexpected pc {n} rip {rip:#x}"),
        });
    });
    assert_ok(
        st,
        &l,
        &hal,
        &[
            "handler gets the signal number",
            "after rt_sigreturn: registers restored exactly",
            "fpstate: FXSAVE image with xmm0, 64-byte aligned",
            "ymm0's upper half and FP_XSTATE_MAGIC2 in the frame",
        ],
    );
}

#[test]
fn garbage_sigreturn_frame_kills_with_sigsegv() {
    let (st, hal) = run(move |ctx, _space, _phys| {
        ctx.regs.rsp = 0x1000;
        Ok(sys(ctx, g::__NR_rt_sigreturn, &[]))
    });
    assert_eq!(st, 128 + 11, "log {:?}", hal.log);
}

/// SA_RESTART: a pipe read interrupted by SIGALRM (from setitimer) is
/// re-executed after the handler; without it the read fails with EINTR.
fn restart_case(flags: u64) -> (u64, u32) {
    let reads = Rc::new(RefCell::new((0u32, 0u64)));
    let rc = reads.clone();
    let (st, hal) = run(move |ctx, space, phys| loop {
        let rip = ctx.regs.rip;
        if rip == HANDLER {
            // write(fds[1], "x", 1), then return.
            let w = rd32(space, phys, SCR + 36)?;
            space.user_write(phys, SCR + 64, b"x")?;
            return Ok(sys(ctx, g::__NR_write, &[w as u64, SCR + 64, 1]));
        }
        if rip == HANDLER + 2 {
            ret(ctx, space, phys)?;
            continue;
        }
        if rip == RESTORER {
            return Ok(sys(ctx, g::__NR_rt_sigreturn, &[]));
        }
        return Ok(match pc(ctx, ENTRY) {
            0 => {
                space.user_write(phys, SCR, &sigaction_bytes(HANDLER, flags))?;
                sys(ctx, g::__NR_rt_sigaction, &[g::SIGALRM as u64, SCR, 0, 8])
            }
            1 => sys(ctx, g::__NR_pipe2, &[SCR + 32, 0]),
            2 => {
                // it_interval 0, it_value 1 ms
                let mut it = [0u8; 32];
                it[24..32].copy_from_slice(&1000u64.to_le_bytes());
                space.user_write(phys, SCR + 128, &it)?;
                sys(ctx, g::__NR_setitimer, &[0, SCR + 128, 0])
            }
            3 => {
                rc.borrow_mut().0 += 1;
                let r = rd32(space, phys, SCR + 32)?;
                sys(ctx, g::__NR_read, &[r as u64, SCR + 96, 1])
            }
            4 => {
                rc.borrow_mut().1 = ctx.regs.rax;
                sys(ctx, g::__NR_exit_group, &[0])
            }
            n => panic!("unexpected pc {n}"),
        });
    });
    assert_eq!(st, 0, "log {:?}", hal.log);
    let r = *reads.borrow();
    (r.1, r.0)
}

#[test]
fn sa_restart_restarts_and_without_it_eintr() {
    let (rax, reads) = restart_case(g::SA_RESTART as u64);
    assert_eq!((rax, reads), (1, 2), "with SA_RESTART the read runs again and gets the byte");
    let (rax, reads) = restart_case(0);
    assert_eq!((rax as i64, reads), (-(linux_raw_sys::errno::EINTR as i64), 1), "without SA_RESTART: EINTR");
}

/// fork; the child pauses; the parent stops, continues and kills it, and a
/// second child dies of an unhandled page fault (core).
#[test]
fn default_actions_stop_continue_and_wait_statuses() {
    let l: L = Rc::default();
    let lc = l.clone();
    let (st, hal) = run(move |ctx, space, phys| {
        if ctx.regs.rip == CHILD {
            return Ok(sys(ctx, g::__NR_pause, &[]));
        }
        if ctx.regs.rip == CHILD + 2 {
            ctx.regs.rip = CHILD; // pause again (EINTR or not)
            return Ok(sys(ctx, g::__NR_pause, &[]));
        }
        if ctx.regs.rip == CHILD + 0x202 {
            ctx.regs.rip = CHILD + 0x100;
            return Ok(Trap::PageFault { addr: 0x10, access: Access::Write });
        }
        if ctx.regs.rip == CHILD + 0x100 {
            return Ok(Trap::PageFault { addr: 0x10, access: Access::Write });
        }
        let status = |space: &MockSpace| rd32(space, phys, SCR);
        Ok(match pc(ctx, ENTRY) {
            0 => sys(ctx, g::__NR_fork, &[]),
            1 => {
                if ctx.regs.rax == 0 {
                    ctx.regs.rip = CHILD;
                    return Ok(sys(ctx, g::__NR_pause, &[]));
                }
                ctx.regs.r15 = ctx.regs.rax; // child pid
                sys(ctx, g::__NR_kill, &[ctx.regs.r15, g::SIGSTOP as u64])
            }
            2 => sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR, g::WUNTRACED as u64, 0]),
            3 => {
                check(&lc, "stopped by SIGSTOP", ctx.regs.rax == ctx.regs.r15 && status(space)? == 0x137f);
                sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR, (g::WUNTRACED | g::WNOHANG) as u64, 0])
            }
            4 => {
                check(&lc, "stop reported once", ctx.regs.rax == 0);
                sys(ctx, g::__NR_kill, &[ctx.regs.r15, g::SIGCONT as u64])
            }
            5 => sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR, g::WCONTINUED as u64, 0]),
            6 => {
                check(&lc, "continued", ctx.regs.rax == ctx.regs.r15 && status(space)? == 0xffff);
                sys(ctx, g::__NR_kill, &[ctx.regs.r15, g::SIGTERM as u64])
            }
            7 => sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR, 0, 0]),
            8 => {
                check(&lc, "killed by SIGTERM", ctx.regs.rax == ctx.regs.r15 && status(space)? == 15);
                sys(ctx, g::__NR_fork, &[])
            }
            9 => {
                if ctx.regs.rax == 0 {
                    // Allow core dumps, so the status carries the core bit.
                    let mut lim = [0u8; 16];
                    lim[0..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
                    lim[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                    space.user_write(phys, SCR + 256, &lim)?;
                    ctx.regs.rip = CHILD + 0x200;
                    return Ok(sys(ctx, g::__NR_setrlimit, &[g::RLIMIT_CORE as u64, SCR + 256]));
                }
                ctx.regs.r15 = ctx.regs.rax;
                sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR, 0, 0])
            }
            10 => {
                check(&lc, "SIGSEGV with the core bit", status(space)? == 0x8b);
                sys(ctx, g::__NR_exit_group, &[0])
            }
            n => panic!("unexpected pc {n}"),
        })
    });
    assert_ok(st, &l, &hal, &["stopped by SIGSTOP", "continued", "killed by SIGTERM", "SIGSEGV with the core bit"]);
}

/// A thread shares memory, wakes the parent through a futex, and its exit
/// clears and wakes the CLONE_CHILD_CLEARTID word.
#[test]
fn threads_share_memory_futex_and_cleartid() {
    let l: L = Rc::default();
    let lc = l.clone();
    let flags = (g::CLONE_VM
        | g::CLONE_FS
        | g::CLONE_FILES
        | g::CLONE_SIGHAND
        | g::CLONE_THREAD
        | g::CLONE_SYSVSEM
        | g::CLONE_SETTLS
        | g::CLONE_PARENT_SETTID
        | g::CLONE_CHILD_CLEARTID) as u64;
    let (st, hal) = run(move |ctx, space, phys| {
        let word = SCR + 16;
        if ctx.regs.rip == CHILD {
            check(&lc, "thread has its TLS", ctx.regs.fs_base == 0x7777_0000);
            space.user_write(phys, word, &1u32.to_le_bytes())?;
            return Ok(sys(ctx, g::__NR_futex, &[word, (g::FUTEX_WAKE | g::FUTEX_PRIVATE_FLAG) as u64, 1]));
        }
        if ctx.regs.rip == CHILD + 2 {
            check(&lc, "futex wake woke the waiting parent", ctx.regs.rax == 1);
            return Ok(sys(ctx, g::__NR_exit, &[0]));
        }
        Ok(match pc(ctx, ENTRY) {
            0 => {
                space.user_write(phys, SCR, &[0u8; 32])?;
                sys(ctx, g::__NR_clone, &[flags, 0x7000_0000, SCR, SCR + 8, 0x7777_0000])
            }
            1 => {
                if ctx.regs.rax == 0 {
                    ctx.regs.rip = CHILD;
                    return Ok(Trap::Interrupt(hal::Interrupts::empty()));
                }
                ctx.regs.r15 = ctx.regs.rax;
                check(&lc, "PARENT_SETTID", rd32(space, phys, SCR)? as u64 == ctx.regs.r15);
                sys(ctx, g::__NR_futex, &[word, (g::FUTEX_WAIT | g::FUTEX_PRIVATE_FLAG) as u64, 0, 0])
            }
            2 => {
                check(&lc, "futex wait returned 0 after the wake", ctx.regs.rax == 0);
                check(&lc, "memory shared with the thread", rd32(space, phys, word)? == 1);
                sys(ctx, g::__NR_getpid, &[])
            }
            3 => {
                check(&lc, "getpid is the group id", ctx.regs.rax == 1);
                sys(ctx, g::__NR_sched_yield, &[])
            }
            4 => {
                let ctid = rd32(space, phys, SCR + 8)?;
                if ctid != 0 {
                    ctx.regs.rip -= 2; // come back here after the wait
                    return Ok(sys(ctx, g::__NR_futex, &[SCR + 8, g::FUTEX_WAIT as u64, ctid as u64, 0]));
                }
                check(&lc, "CHILD_CLEARTID cleared on thread exit", true);
                sys(ctx, g::__NR_exit_group, &[0])
            }
            n => panic!("unexpected pc {n}"),
        })
    });
    assert_ok(
        st,
        &l,
        &hal,
        &["thread has its TLS", "futex wake woke the waiting parent", "memory shared with the thread", "CHILD_CLEARTID cleared on thread exit"],
    );
}

/// vfork: the parent does not run until the child exits; they share memory.
#[test]
fn vfork_suspends_the_parent_and_shares_memory() {
    let l: L = Rc::default();
    let lc = l.clone();
    let (st, hal) = run(move |ctx, space, phys| {
        if ctx.regs.rip == CHILD {
            // Let the scheduler try the parent: it must stay suspended.
            return Ok(sys(ctx, g::__NR_sched_yield, &[]));
        }
        if ctx.regs.rip == CHILD + 2 {
            lc.borrow_mut().lines.push(String::from("child"));
            space.user_write(phys, SCR, &7u32.to_le_bytes())?;
            return Ok(sys(ctx, g::__NR_exit, &[3]));
        }
        Ok(match pc(ctx, ENTRY) {
            0 => sys(ctx, g::__NR_vfork, &[]),
            1 => {
                if ctx.regs.rax == 0 {
                    ctx.regs.rip = CHILD;
                    return Ok(sys(ctx, g::__NR_sched_yield, &[]));
                }
                let order_ok = lc.borrow().lines.last().is_some_and(|x| x == "child");
                check(&lc, "parent resumed only after the child exited", order_ok);
                check(&lc, "the child's write is visible", rd32(space, phys, SCR)? == 7);
                ctx.regs.r15 = ctx.regs.rax;
                sys(ctx, g::__NR_wait4, &[ctx.regs.r15, SCR + 8, 0, 0])
            }
            2 => {
                check(&lc, "vfork child exit status", rd32(space, phys, SCR + 8)? == 3 << 8);
                sys(ctx, g::__NR_exit_group, &[0])
            }
            n => panic!("unexpected pc {n}"),
        })
    });
    assert_ok(st, &l, &hal, &["parent resumed only after the child exited", "the child's write is visible", "vfork child exit status"]);
}

/// Credentials (root may set anything, a non-root user only its own ids),
/// sessions and process groups.
#[test]
fn credentials_sessions_and_groups() {
    let l: L = Rc::default();
    let lc = l.clone();
    let eperm = (-(linux_raw_sys::errno::EPERM as i64)) as u64;
    let (st, hal) = run(move |ctx, space, phys| {
        let rax = ctx.regs.rax;
        Ok(match pc(ctx, ENTRY) {
            0 => sys(ctx, g::__NR_setsid, &[]),
            1 => {
                // init is already a group leader (pgid 1)
                check(&lc, "setsid by a group leader: EPERM", rax == eperm);
                sys(ctx, g::__NR_setresuid, &[1000, 1000, 1000])
            }
            2 => {
                check(&lc, "root may setresuid", rax == 0);
                sys(ctx, g::__NR_setuid, &[0])
            }
            3 => {
                check(&lc, "non-root setuid(0): EPERM", rax == eperm);
                sys(ctx, g::__NR_setgroups, &[0, 0])
            }
            4 => {
                check(&lc, "non-root setgroups: EPERM", rax == eperm);
                sys(ctx, g::__NR_setreuid, &[u64::from(u32::MAX), 1000])
            }
            5 => {
                check(&lc, "setreuid to its own id", rax == 0);
                sys(ctx, g::__NR_getresuid, &[SCR, SCR + 4, SCR + 8])
            }
            6 => {
                let ids = (rd32(space, phys, SCR)?, rd32(space, phys, SCR + 4)?, rd32(space, phys, SCR + 8)?);
                check(&lc, "getresuid", rax == 0 && ids == (1000, 1000, 1000));
                sys(ctx, g::__NR_setfsuid, &[0])
            }
            7 => {
                check(&lc, "setfsuid returns the old fsuid", rax == 1000);
                sys(ctx, g::__NR_fork, &[])
            }
            8 => {
                if rax == 0 {
                    ctx.regs.rip = CHILD;
                    return Ok(sys(ctx, g::__NR_setsid, &[]));
                }
                ctx.regs.r15 = rax;
                sys(ctx, g::__NR_wait4, &[rax, SCR + 16, 0, 0])
            }
            9 => {
                check(&lc, "the child's checks passed", rd32(space, phys, SCR + 16)? == 0);
                sys(ctx, g::__NR_exit_group, &[0])
            }
            _ => {
                // The child: CHILD = setsid, then getsid/getpgid.
                match ctx.regs.rip {
                    r if r == CHILD + 2 => {
                        ctx.regs.r14 = rax;
                        check(&lc, "setsid in a child returns its pid", rax > 1);
                        sys(ctx, g::__NR_getpgid, &[0])
                    }
                    r if r == CHILD + 4 => {
                        check(&lc, "the new session's pgid is the pid", rax == ctx.regs.r14);
                        sys(ctx, g::__NR_setpgid, &[0, 1])
                    }
                    r if r == CHILD + 6 => {
                        check(&lc, "a session leader cannot setpgid: EPERM", rax == eperm);
                        sys(ctx, g::__NR_exit_group, &[0])
                    }
                    r => panic!("unexpected rip {r:#x}"),
                }
            }
        })
    });
    assert_ok(
        st,
        &l,
        &hal,
        &["root may setresuid", "non-root setuid(0): EPERM", "getresuid", "setsid in a child returns its pid", "a session leader cannot setpgid: EPERM"],
    );
}
