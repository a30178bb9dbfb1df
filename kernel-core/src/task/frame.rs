//! The x86_64 `rt_sigframe`: built on the user stack (or the alternate
//! stack) when a handler is delivered, read back and validated by
//! `rt_sigreturn`.
//!
//! Layout, as Linux's `arch/x86/include/asm/sigframe.h` for 64-bit tasks:
//! `pretcode` (8) | `struct ucontext` (304: flags, link, `stack_t`,
//! `sigcontext` (256), `sigset_t` (8)) | `siginfo` (128), and below the
//! frame's top a 64-byte aligned XSAVE area that `uc_mcontext.fpstate`
//! points to: the thread's whole extended state (x87, SSE, AVX, AVX-512...)
//! in the host CPU's standard layout ([`hal::FpuLayout`]), described by the
//! software-reserved bytes of its legacy part (`FP_XSTATE_MAGIC1`, sizes,
//! features) and followed by `FP_XSTATE_MAGIC2`, with `UC_FP_XSTATE` in
//! `uc_flags` — what Linux writes on every CPU with XSAVE.

use hal::context::{XFEATURE_FP_SSE, XSAVE_HEADER, XSAVE_MIN, XSAVE_SW_BYTES};
use hal::{AddressSpace, FpuLayout, FpuState, PhysMem, UserRegs};
use linux_raw_sys::general as g;

use super::signal::{sigbit, SigAction, SigInfo, UNBLOCKABLE};
use super::Task;
use crate::mm::Frames;
use crate::Errno;

/// `sizeof(struct rt_sigframe)` on x86_64.
pub const FRAME_SIZE: u64 = 8 + UCONTEXT_SIZE + 128;
/// `sizeof(struct ucontext)` (kernel layout, 8-byte sigset).
const UCONTEXT_SIZE: u64 = 304;
/// Offset of `uc_mcontext` in the ucontext.
const MCTX: usize = 40;
/// Offset of `uc_sigmask` in the ucontext.
const SIGMASK: usize = 296;
/// `UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS`.
const UC_FLAGS: u64 = 1 | 2 | 4;
/// `FP_XSTATE_MAGIC1`, in the software-reserved bytes of the legacy area.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2`, right after the XSAVE area.
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Bytes of `FP_XSTATE_MAGIC2`.
const MAGIC2_SIZE: u64 = 4;

/// `AT_MINSIGSTKSZ`: the most stack a signal frame can take on this CPU,
/// as Linux computes it (frame, alignment padding, XSAVE area and its
/// trailing magic), rounded up to 16.
pub fn min_sigstack_size(layout: &FpuLayout) -> u64 {
    (FRAME_SIZE + 15 + layout.size as u64 + MAGIC2_SIZE + 63).next_multiple_of(16)
}
/// The eflags bits a signal return may change (Linux's `FIX_EFLAGS`):
/// AC OF DF TF SF ZF AF PF CF RF.
pub const FIX_EFLAGS: u64 = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000;
/// User code and stack selectors on x86_64 Linux.
pub const USER_CS: u64 = 0x33;
/// User stack selector.
pub const USER_SS: u64 = 0x2b;

/// Is `sp` on the task's alternate stack?
pub fn on_altstack(alt: (u64, i32, u64), sp: u64) -> bool {
    let (base, _, size) = alt;
    size != 0 && sp > base && sp - base <= size
}

/// `ss_flags` as `sigaltstack`/`uc_stack` report them for stack pointer `sp`.
pub fn altstack_flags(alt: (u64, i32, u64), sp: u64) -> i32 {
    if alt.2 == 0 || alt.1 as u32 & g::SS_DISABLE != 0 {
        g::SS_DISABLE as i32
    } else if on_altstack(alt, sp) {
        g::SS_ONSTACK as i32
    } else {
        alt.1
    }
}

/// The x86 trap number a synchronous fault signal came from (`sigcontext.trapno`).
fn trapno(info: &SigInfo) -> u64 {
    if !info.fault {
        return 0;
    }
    match info.signo {
        g::SIGSEGV => 14,
        g::SIGFPE => 0,
        g::SIGILL => 6,
        g::SIGTRAP => 3,
        g::SIGBUS => 17,
        _ => 0,
    }
}

fn put(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(b: &[u8], off: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(x)
}

/// The 18 general registers in `sigcontext` order.
fn sc_regs(r: &UserRegs) -> [u64; 18] {
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.eflags,
    ]
}

/// Build the frame for `info` with handler `act` on `t`'s stack and point
/// its registers at the handler. `old_mask` goes into `uc_sigmask` (what
/// `rt_sigreturn` restores). An error means the frame could not be written:
/// the caller kills the task with `SIGSEGV`.
pub fn setup<S: AddressSpace>(
    t: &mut Task<S>,
    frames: &mut Frames,
    phys: &impl PhysMem,
    info: &SigInfo,
    act: &SigAction,
    old_mask: u64,
    layout: &FpuLayout,
) -> Result<(), Errno> {
    // x86-64 has no kernel-provided trampoline: SA_RESTORER is mandatory.
    if act.flags & g::SA_RESTORER as u64 == 0 {
        return Err(Errno::EFAULT);
    }
    let r = t.ctx.regs;
    let alt = t.signals.altstack;
    let alt_usable = alt.2 != 0 && alt.1 as u32 & g::SS_DISABLE == 0;
    let mut sp = r.rsp.wrapping_sub(128); // the red zone
    let mut switched = false;
    if act.flags & g::SA_ONSTACK as u64 != 0 && alt_usable && !on_altstack(alt, r.rsp) {
        sp = alt.0.wrapping_add(alt.2);
        switched = true;
    }
    let xsize = layout.size.clamp(XSAVE_MIN, hal::XSTATE_MAX);
    let fp = sp.checked_sub(xsize as u64 + MAGIC2_SIZE).ok_or(Errno::EFAULT)? & !63;
    let frame = (fp.checked_sub(FRAME_SIZE).ok_or(Errno::EFAULT)? & !15).wrapping_sub(8);
    // Linux refuses to overflow the alternate stack into what lies below it.
    if switched && frame < alt.0 {
        return Err(Errno::EFAULT);
    }
    let mut b = [0u8; FRAME_SIZE as usize];
    put(&mut b, 0, act.restorer);
    let uc = 8;
    put(&mut b, uc, UC_FLAGS);
    put(&mut b, uc + 8, 0);
    put(&mut b, uc + 16, alt.0);
    b[uc + 24..uc + 28].copy_from_slice(&altstack_flags(alt, r.rsp).to_le_bytes());
    put(&mut b, uc + 32, alt.2);
    let m = uc + MCTX;
    for (i, v) in sc_regs(&r).iter().enumerate() {
        put(&mut b, m + i * 8, *v);
    }
    // cs, gs, fs, ss (u16 each)
    b[m + 144..m + 146].copy_from_slice(&(USER_CS as u16).to_le_bytes());
    b[m + 150..m + 152].copy_from_slice(&(USER_SS as u16).to_le_bytes());
    put(&mut b, m + 152, if info.fault && info.signo == g::SIGSEGV { 4 } else { 0 }); // err: user-mode fault
    put(&mut b, m + 160, trapno(info));
    put(&mut b, m + 168, old_mask); // oldmask
    put(&mut b, m + 176, if info.fault { info.addr } else { 0 }); // cr2
    put(&mut b, m + 184, fp); // fpstate
    put(&mut b, uc + SIGMASK, old_mask);
    b[8 + UCONTEXT_SIZE as usize..].copy_from_slice(&info.to_bytes());

    // The area as the thread holds it, with the software-reserved bytes
    // describing it and x87 and SSE marked in use (as Linux marks them in
    // every frame, so an FXRSTOR-only consumer finds them too).
    let mut sw = [0u8; XSAVE_HEADER - XSAVE_SW_BYTES + 8];
    sw[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    sw[4..8].copy_from_slice(&(xsize as u32 + MAGIC2_SIZE as u32).to_le_bytes());
    sw[8..16].copy_from_slice(&layout.features.to_le_bytes());
    sw[16..20].copy_from_slice(&(xsize as u32).to_le_bytes());
    let bv = t.ctx.fpu.xstate_bv() | XFEATURE_FP_SSE;
    sw[XSAVE_HEADER - XSAVE_SW_BYTES..].copy_from_slice(&bv.to_le_bytes());
    let mm = t.mm.as_mut().ok_or(Errno::EFAULT)?;
    let area = &t.ctx.fpu.0;
    mm.copy_to_user(fp, &area[..XSAVE_SW_BYTES], frames, phys)?;
    mm.copy_to_user(fp + XSAVE_SW_BYTES as u64, &sw, frames, phys)?;
    mm.copy_to_user(fp + XSAVE_HEADER as u64 + 8, &area[XSAVE_HEADER + 8..xsize], frames, phys)?;
    mm.copy_to_user(fp + xsize as u64, &FP_XSTATE_MAGIC2.to_le_bytes(), frames, phys)?;
    mm.copy_to_user(frame, &b, frames, phys)?;

    if switched && alt.1 as u32 & g::SS_AUTODISARM != 0 {
        t.signals.altstack = (0, g::SS_DISABLE as i32, 0);
    }
    let regs = &mut t.ctx.regs;
    regs.rdi = info.signo as u64;
    regs.rsi = frame + 8 + UCONTEXT_SIZE;
    regs.rdx = frame + 8;
    regs.rax = 0;
    regs.rsp = frame;
    regs.rip = act.handler;
    regs.cs = USER_CS;
    regs.ss = USER_SS;
    // DF, RF and TF are cleared for the handler, as Linux does.
    regs.eflags &= !(0x400 | 0x10000 | 0x100);
    t.ctx.fpu.reset();
    Ok(())
}

fn word32(b: &[u8], off: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(x)
}

/// Read the FPU state a signal frame's `fpstate` points to, as Linux's
/// `fpu__restore_sig` does: an XSAVE area when its software-reserved bytes
/// and trailing magic describe one (then it must be 64-byte aligned), else
/// the legacy FXSAVE area only (16-byte aligned; every other component goes
/// back to its initial state). Components outside the frame's feature mask
/// are initialised. What `XRSTOR`/`FXRSTOR` would fault on (reserved MXCSR
/// bits, a compacted or reserved header, unknown components) is `EFAULT`.
fn read_fpstate<S: AddressSpace>(
    mm: &mut crate::mm::MemoryMap<S>,
    fpstate: u64,
    layout: &FpuLayout,
    frames: &mut Frames,
    phys: &impl PhysMem,
) -> Result<FpuState, Errno> {
    let xsize = layout.size.clamp(XSAVE_MIN, hal::XSTATE_MAX);
    let mut fpu = FpuState::default();
    mm.copy_from_user(fpstate, &mut fpu.0[..XSAVE_HEADER], frames, phys)?;
    let sw = &fpu.0[XSAVE_SW_BYTES..XSAVE_HEADER];
    let (magic1, extended, features, size) = (word32(sw, 0), word32(sw, 4), get(sw, 8), word32(sw, 16) as usize);
    let mut xsave = magic1 == FP_XSTATE_MAGIC1 && (XSAVE_MIN..=xsize).contains(&size) && size as u32 <= extended;
    if xsave {
        let mut m2 = [0u8; 4];
        mm.copy_from_user(fpstate + size as u64, &mut m2, frames, phys)?;
        xsave = u32::from_le_bytes(m2) == FP_XSTATE_MAGIC2;
    }
    let rfbm = if xsave {
        if !fpstate.is_multiple_of(64) {
            return Err(Errno::EFAULT);
        }
        mm.copy_from_user(fpstate + XSAVE_HEADER as u64, &mut fpu.0[XSAVE_HEADER..xsize], frames, phys)?;
        let header = &fpu.0[XSAVE_HEADER..XSAVE_MIN];
        if fpu.xstate_bv() & !layout.features != 0 || header[8..].iter().any(|&b| b != 0) {
            return Err(Errno::EFAULT);
        }
        features & layout.features
    } else {
        if !fpstate.is_multiple_of(16) {
            return Err(Errno::EFAULT);
        }
        fpu.0[416..XSAVE_HEADER].fill(0);
        fpu.0[XSAVE_HEADER..XSAVE_HEADER + 8].copy_from_slice(&XFEATURE_FP_SSE.to_le_bytes());
        XFEATURE_FP_SSE
    };
    if fpu.mxcsr() & !0xffff != 0 {
        return Err(Errno::EFAULT);
    }
    let bv = fpu.xstate_bv() & rfbm;
    fpu.0[XSAVE_HEADER..XSAVE_HEADER + 8].copy_from_slice(&bv.to_le_bytes());
    fpu.sanitize(layout);
    Ok(fpu)
}

/// `rt_sigreturn`: restore registers, FPU state, mask and alternate stack
/// from the frame at `rsp - 8`. Everything read back is guest data: a bad
/// frame is an error (the caller sends `SIGSEGV`), and selectors and eflags
/// stay sane whatever the frame says.
pub fn restore<S: AddressSpace>(
    t: &mut Task<S>,
    frames: &mut Frames,
    phys: &impl PhysMem,
    layout: &FpuLayout,
) -> Result<(), Errno> {
    let uc = t.ctx.regs.rsp;
    let mut b = [0u8; UCONTEXT_SIZE as usize];
    let mm = t.mm.as_mut().ok_or(Errno::EFAULT)?;
    mm.copy_from_user(uc, &mut b, frames, phys)?;
    let m = MCTX;
    let v = |i: usize| get(&b, m + i * 8);
    let fpstate = get(&b, m + 184);
    // No fpstate: the FPU goes back to its initial state, as on Linux.
    let fpu = if fpstate != 0 { read_fpstate(mm, fpstate, layout, frames, phys)? } else { FpuState::default() };
    // The alternate stack, validated like sigaltstack(2).
    let ss_sp = get(&b, 16);
    let ss_flags = i32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let ss_size = get(&b, 32);
    let f = ss_flags as u32 & !g::SS_AUTODISARM;
    if f != 0 && f != g::SS_DISABLE && f != g::SS_ONSTACK {
        return Err(Errno::EINVAL);
    }
    let new_alt = if f == g::SS_DISABLE {
        Some((0, g::SS_DISABLE as i32, 0))
    } else if ss_size < g::MINSIGSTKSZ as u64 {
        return Err(Errno::ENOMEM);
    } else {
        Some((ss_sp, (ss_flags as u32 & g::SS_AUTODISARM) as i32, ss_size))
    };
    let mask = get(&b, SIGMASK) & !UNBLOCKABLE;

    let r = &mut t.ctx.regs;
    r.r8 = v(0);
    r.r9 = v(1);
    r.r10 = v(2);
    r.r11 = v(3);
    r.r12 = v(4);
    r.r13 = v(5);
    r.r14 = v(6);
    r.r15 = v(7);
    r.rdi = v(8);
    r.rsi = v(9);
    r.rbp = v(10);
    r.rbx = v(11);
    r.rdx = v(12);
    r.rax = v(13);
    r.rcx = v(14);
    r.rsp = v(15);
    r.rip = v(16);
    r.eflags = (r.eflags & !FIX_EFLAGS) | (v(17) & FIX_EFLAGS) | 0x2;
    r.cs = USER_CS;
    r.ss = USER_SS;
    // No system call restart after a signal return.
    r.orig_rax = u64::MAX;
    t.ctx.fpu = fpu;
    t.signals.mask = mask;
    // Changing the alternate stack while running on it is refused (EPERM in
    // sigaltstack); a frame may not do it either, so keep the current one then.
    if let Some(a) = new_alt {
        if !on_altstack(t.signals.altstack, t.ctx.regs.rsp) || a == t.signals.altstack {
            t.signals.altstack = a;
        }
    }
    Ok(())
}

/// The mask while a handler runs: the old mask, the action's mask and
/// (unless `SA_NODEFER`) the signal itself.
pub fn handler_mask(old: u64, act: &SigAction, sig: u32) -> u64 {
    let mut m = old | act.mask;
    if act.flags & g::SA_NODEFER as u64 == 0 {
        m |= sigbit(sig);
    }
    m & !UNBLOCKABLE
}
