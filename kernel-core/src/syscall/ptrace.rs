//! `ptrace` and `process_vm_readv`/`process_vm_writev`: one process reading
//! and changing another's registers and memory, for debuggers and tracers.
//!
//! The tracer/tracee state and the stops live in [`crate::task::ptrace`];
//! this file is the system call family: attaching (with Linux's permission
//! rules), the requests a stopped tracee answers, and cross-process memory
//! access. Memory writes by a tracer ignore page protection, as Linux's
//! `FOLL_FORCE` does (breakpoints in read-only text): a private file page is
//! copied first, so the file never changes.

use alloc::vec;

use hal::{Hal, UserRegs};
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;

use super::SysCtx;
use crate::mm::MemoryMap;
use crate::task::ptrace::{may_access, stop_status, Resume, Stop, Tracee};
use crate::task::signal::{SigInfo, NSIG, UNBLOCKABLE};
use crate::task::{Pid, Task, TaskState};
use crate::{Errno, SysResult};

/// `NT_PRSTATUS`, `NT_PRFPREG`, `NT_X86_XSTATE` (ELF note types of regsets).
const NT_PRSTATUS: u64 = 1;
const NT_PRFPREG: u64 = 2;
const NT_X86_XSTATE: u64 = 0x202;
/// Bytes of `struct user_regs_struct`.
const REGS_SIZE: usize = 27 * 8;
/// Bytes of `struct user_fpregs_struct` (the FXSAVE area).
const FPREGS_SIZE: usize = 512;
/// `offsetof(struct user, u_debugreg)` and the size of the kernel's
/// `struct user` (the debug registers, then `error_code`, `fault_address`).
const USER_DEBUGREG: u64 = 848;
const USER_SIZE: u64 = USER_DEBUGREG + 8 * 8 + 16;
/// Where Linux puts XCR0 in the XSTATE regset (`sw_reserved`), which gdb reads.
const XSTATE_XCR0: usize = 464;
/// Flags a tracer may change (Linux's FLAG_MASK): CF PF AF ZF SF TF DF OF NT RF AC.
const EFLAGS_USER: u64 = 0x54dd5;
/// First non-canonical user address.
const USER_TOP: u64 = 1 << 47;
/// Most iovec entries `process_vm_*` accept (`UIO_MAXIOV`).
const IOV_MAX: u64 = 1024;

/// `ptrace(request, pid, addr, data)`.
pub fn ptrace<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (req, pid, addr, data) = (a[0], a[1] as i32, a[2], a[3]);
    let Ok(req) = u32::try_from(req) else { return Err(Errno::EIO) };
    match req {
        pt::PTRACE_TRACEME => return traceme(cx),
        pt::PTRACE_ATTACH => return attach(cx, pid, false, 0),
        pt::PTRACE_SEIZE => {
            if addr != 0 {
                return Err(Errno::EIO);
            }
            return attach(cx, pid, true, check_options(data)?);
        }
        _ => {}
    }
    let tid = tracee(cx, pid)?;
    match req {
        pt::PTRACE_KILL => {
            cx.k.post_signal(None, tid, SigInfo::kernel(g::SIGKILL), true);
            return Ok(0);
        }
        pt::PTRACE_INTERRUPT => return interrupt(cx, tid),
        _ => {}
    }
    // Everything else needs the tracee in a ptrace stop.
    let stop = link(cx, tid)?.stop.ok_or(Errno::ESRCH)?;
    match req {
        pt::PTRACE_CONT | pt::PTRACE_SYSCALL | pt::PTRACE_SINGLESTEP => {
            let sig = signal_arg(data)?;
            let how = match req {
                pt::PTRACE_CONT => Resume::Cont,
                pt::PTRACE_SYSCALL => Resume::Syscall,
                _ => Resume::Step,
            };
            cx.k.ptrace_resume(tid, how, sig);
            Ok(0)
        }
        pt::PTRACE_DETACH => {
            let sig = signal_arg(data)?;
            cx.k.ptrace_unlink(Some(&mut *cx.t), tid, sig);
            Ok(0)
        }
        pt::PTRACE_PEEKTEXT | pt::PTRACE_PEEKDATA => {
            let mut w = [0u8; 8];
            read_mem(cx, tid, addr, &mut w).map_err(|_| Errno::EIO)?;
            cx.write_user(data, &w)?;
            Ok(0)
        }
        pt::PTRACE_POKETEXT | pt::PTRACE_POKEDATA => {
            write_mem(cx, tid, addr, &data.to_le_bytes()).map_err(|_| Errno::EIO)?;
            Ok(0)
        }
        pt::PTRACE_PEEKUSR => {
            if addr % 8 != 0 || addr >= USER_SIZE {
                return Err(Errno::EIO);
            }
            let t = task(cx, tid)?;
            let v = if (addr as usize) < REGS_SIZE { reg_words(&t.ctx.regs)[(addr / 8) as usize] } else { 0 };
            cx.write_user(data, &v.to_le_bytes())?;
            Ok(0)
        }
        pt::PTRACE_POKEUSR => {
            if addr % 8 != 0 || addr >= USER_SIZE {
                return Err(Errno::EIO);
            }
            if (addr as usize) < REGS_SIZE {
                let t = task_mut(cx, tid)?;
                let mut words = reg_words(&t.ctx.regs);
                words[(addr / 8) as usize] = data;
                t.ctx.regs = checked_regs(&t.ctx.regs, &words)?;
                return Ok(0);
            }
            // Debug registers: there are none to program; clearing them works.
            if (USER_DEBUGREG..USER_DEBUGREG + 64).contains(&addr) && data == 0 {
                return Ok(0);
            }
            Err(Errno::EIO)
        }
        pt::PTRACE_GETREGS => {
            let b = regs_bytes(&task(cx, tid)?.ctx.regs);
            cx.write_user(data, &b)?;
            Ok(0)
        }
        pt::PTRACE_SETREGS => {
            let b = cx.read_array::<REGS_SIZE>(data)?;
            set_regs(cx, tid, &b)
        }
        pt::PTRACE_GETFPREGS => {
            let mut b = [0u8; FPREGS_SIZE];
            b.copy_from_slice(&task(cx, tid)?.ctx.fpu.0[..FPREGS_SIZE]);
            cx.write_user(data, &b)?;
            Ok(0)
        }
        pt::PTRACE_SETFPREGS => {
            let b = cx.read_array::<FPREGS_SIZE>(data)?;
            set_fpu(cx, tid, &b);
            Ok(0)
        }
        pt::PTRACE_GETREGSET | pt::PTRACE_SETREGSET => regset(cx, tid, req == pt::PTRACE_SETREGSET, addr, data),
        pt::PTRACE_GETSIGINFO => {
            let p = link(cx, tid)?;
            let info = match stop {
                Stop::Signal => p.siginfo,
                // A group stop has no siginfo: how a tracer tells it apart.
                Stop::Group if !p.seized => return Err(Errno::EINVAL),
                Stop::Group => SigInfo { signo: g::SIGTRAP, code: (pt::PTRACE_EVENT_STOP << 8 | g::SIGTRAP) as i32, ..SigInfo::default() },
                _ => {
                    let st = p.report.unwrap_or(stop_status(g::SIGTRAP, 0));
                    SigInfo { signo: g::SIGTRAP, code: (st >> 8) as i32 & 0xffff, ..SigInfo::default() }
                }
            };
            cx.write_user(data, &info.to_bytes())?;
            Ok(0)
        }
        pt::PTRACE_SETSIGINFO => {
            let b = cx.read_array::<128>(data)?;
            let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let p = link_mut(cx, tid)?;
            if stop == Stop::Signal {
                p.siginfo.signo = w(0);
                p.siginfo.code = w(8) as i32;
                p.siginfo.pid = w(16);
                p.siginfo.uid = w(20);
            }
            Ok(0)
        }
        pt::PTRACE_SETOPTIONS => {
            let o = check_options(data)?;
            link_mut(cx, tid)?.options = o;
            Ok(0)
        }
        pt::PTRACE_GETEVENTMSG => {
            let m = link(cx, tid)?.event_msg;
            cx.write_user(data, &m.to_le_bytes())?;
            Ok(0)
        }
        pt::PTRACE_GETSIGMASK | pt::PTRACE_SETSIGMASK => {
            if addr != 8 {
                return Err(Errno::EINVAL);
            }
            if req == pt::PTRACE_GETSIGMASK {
                let m = task(cx, tid)?.signals.mask;
                cx.write_user(data, &m.to_le_bytes())?;
            } else {
                let m = cx.read_u64(data)? & !UNBLOCKABLE;
                task_mut(cx, tid)?.signals.mask = m;
            }
            Ok(0)
        }
        pt::PTRACE_GET_SYSCALL_INFO => syscall_info(cx, tid, stop, addr, data),
        _ => Err(Errno::EIO),
    }
}

/// Validate `PTRACE_O_*` bits.
fn check_options(data: u64) -> Result<u32, Errno> {
    let o = u32::try_from(data).map_err(|_| Errno::EINVAL)?;
    if o & !pt::PTRACE_O_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(o)
}

/// The signal argument of a resume (`EIO` if not a signal).
fn signal_arg(data: u64) -> Result<u32, Errno> {
    if data > NSIG as u64 {
        return Err(Errno::EIO);
    }
    Ok(data as u32)
}

fn task<'a, H: Hal>(cx: &'a SysCtx<'_, H>, tid: Pid) -> Result<&'a Task<H::Space>, Errno> {
    cx.k.procs.get(tid).ok_or(Errno::ESRCH)
}

fn task_mut<'a, H: Hal>(cx: &'a mut SysCtx<'_, H>, tid: Pid) -> Result<&'a mut Task<H::Space>, Errno> {
    cx.k.procs.get_mut(tid).ok_or(Errno::ESRCH)
}

fn link<'a, H: Hal>(cx: &'a SysCtx<'_, H>, tid: Pid) -> Result<&'a Tracee, Errno> {
    task(cx, tid)?.ptrace.as_deref().ok_or(Errno::ESRCH)
}

fn link_mut<'a, H: Hal>(cx: &'a mut SysCtx<'_, H>, tid: Pid) -> Result<&'a mut Tracee, Errno> {
    task_mut(cx, tid)?.ptrace.as_deref_mut().ok_or(Errno::ESRCH)
}

/// The tracee `pid` of the caller's thread group (`ESRCH` if it is not one,
/// or is dead).
fn tracee<H: Hal>(cx: &SysCtx<'_, H>, pid: i32) -> Result<Pid, Errno> {
    let tid = u32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    let t = cx.k.procs.get(tid).ok_or(Errno::ESRCH)?;
    match t.ptrace.as_ref() {
        Some(p) if p.tracer_tgid == cx.t.tgid && !t.is_zombie() => Ok(tid),
        _ => Err(Errno::ESRCH),
    }
}

/// `PTRACE_TRACEME`: the parent becomes the tracer.
fn traceme<H: Hal>(cx: &mut SysCtx<'_, H>) -> SysResult {
    if cx.t.ptrace.is_some() {
        return Err(Errno::EPERM);
    }
    let parent = cx.t.ppid;
    match cx.k.procs.get(parent) {
        Some(p) if !p.is_zombie() => {}
        _ => return Err(Errno::EPERM),
    }
    let me = cx.t.pid;
    let t = &mut *cx.t;
    // The link is made on the caller itself (current), the tracer is in the table.
    t.ptrace = Some(alloc::boxed::Box::new(Tracee::new(parent, parent, 0, false)));
    if let Some(p) = cx.k.procs.get_mut(parent) {
        p.tracees.push(me);
    }
    Ok(0)
}

/// `PTRACE_ATTACH` / `PTRACE_SEIZE` with Linux's refusals: init, one's own
/// process, an already traced task, a tracer of the caller (a loop), a
/// task of another user without `CAP_SYS_PTRACE` (root here).
fn attach<H: Hal>(cx: &mut SysCtx<'_, H>, pid: i32, seize: bool, options: u32) -> SysResult {
    let tid = u32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    if tid == cx.t.pid {
        return Err(Errno::EPERM);
    }
    let t = cx.k.procs.get(tid).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?;
    if t.tgid == cx.t.tgid || t.tgid == 1 || t.ptrace.is_some() || !may_access(cx.t, t) {
        return Err(Errno::EPERM);
    }
    // A loop (A traces B traces ... A): walk the caller's tracers.
    let target = t.tgid;
    let mut up = cx.t.ptrace.as_ref().map(|p| p.tracer);
    for _ in 0..=cx.k.procs.len() {
        let Some(u) = up else { break };
        let Some(ut) = cx.k.procs.get(u) else { break };
        if ut.tgid == target {
            return Err(Errno::EPERM);
        }
        up = ut.ptrace.as_ref().map(|p| p.tracer);
    }
    let me = cx.t.pid;
    cx.k.ptrace_link(cx.t, me, tid, options, seize);
    if !seize {
        cx.k.post_signal(None, tid, SigInfo { pid: cx.t.tgid, ..SigInfo::kernel(g::SIGSTOP) }, true);
    }
    Ok(0)
}

/// `PTRACE_INTERRUPT` (seized tracees only): a `PTRACE_EVENT_STOP` as soon
/// as it can; a blocked call is interrupted and restarted after the stop.
fn interrupt<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid) -> SysResult {
    let p = link(cx, tid)?;
    if !p.seized {
        return Err(Errno::EIO);
    }
    if p.stop.is_some() {
        return Ok(0);
    }
    let t = task_mut(cx, tid)?;
    if let Some(p) = t.ptrace.as_mut() {
        p.interrupt = true;
    }
    if let TaskState::Blocked(b) = t.state {
        if !matches!(b.on, crate::task::WaitOn::Vfork(_)) {
            t.state = TaskState::Runnable;
            t.redo_syscall = false;
            t.restart_deadline = None;
            t.interrupted = Some(true);
            t.ctx.regs.rax = Errno::EINTR.as_return();
            cx.k.procs.take_wait(tid);
            cx.k.procs.enqueue(tid);
        }
    }
    Ok(0)
}

/// Read `buf.len()` bytes of `tid`'s memory at `addr`, ignoring protection.
fn read_mem<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let (mm, frames) = mm_of_split(cx, tid)?;
    mm.0.read_force(addr, buf, frames, mm.1)
}

/// Write `data` into `tid`'s memory at `addr`, ignoring protection
/// (copy-on-write for private pages; a read-only shared mapping refuses).
fn write_mem<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, addr: u64, data: &[u8]) -> Result<(), Errno> {
    let (mm, frames) = mm_of_split(cx, tid)?;
    if let Some((_, _, shared, may_write, _)) = mm.0.vma_at(addr) {
        if shared && !may_write {
            return Err(Errno::EIO);
        }
    }
    mm.0.write_force(addr, data, frames, mm.1)
}

/// The memory map of task `tid` (held by it or by another task of its
/// thread group, or the caller's own if they share one), with the physical
/// memory and the frame allocator.
#[allow(clippy::type_complexity)]
fn mm_of_split<'a, H: Hal>(
    cx: &'a mut SysCtx<'_, H>,
    tid: Pid,
) -> Result<((&'a mut MemoryMap<H::Space>, &'a H::Phys), &'a mut crate::mm::Frames), Errno> {
    let id = cx.k.procs.get(tid).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?.mm_id;
    let phys = cx.hal.phys();
    let k = &mut *cx.k;
    if cx.t.mm_id == id {
        let mm = cx.t.mm.as_mut().ok_or(Errno::EFAULT)?;
        return Ok(((mm, phys), &mut k.frames));
    }
    let holder = k.procs.iter_mut().find(|o| o.mm_id == id && o.mm.is_some()).ok_or(Errno::EFAULT)?;
    let mm = holder.mm.as_mut().ok_or(Errno::EFAULT)?;
    Ok(((mm, phys), &mut k.frames))
}

/// The registers as the 27 words of `user_regs_struct`.
fn reg_words(r: &UserRegs) -> [u64; 27] {
    [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi, r.orig_rax,
        r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs, r.gs,
    ]
}

fn regs_bytes(r: &UserRegs) -> [u8; REGS_SIZE] {
    let mut b = [0u8; REGS_SIZE];
    for (i, w) in reg_words(r).iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// New registers from `w` (the tracer's words) on top of `old`, with what
/// Linux refuses refused (`EIO`): non-canonical bases or instruction
/// pointer; selectors and privileged flags stay as they were.
fn checked_regs(old: &UserRegs, w: &[u64; 27]) -> Result<UserRegs, Errno> {
    let (rip, fs_base, gs_base) = (w[16], w[21], w[22]);
    if rip >= USER_TOP || fs_base >= USER_TOP || gs_base >= USER_TOP {
        return Err(Errno::EIO);
    }
    Ok(UserRegs {
        r15: w[0],
        r14: w[1],
        r13: w[2],
        r12: w[3],
        rbp: w[4],
        rbx: w[5],
        r11: w[6],
        r10: w[7],
        r9: w[8],
        r8: w[9],
        rax: w[10],
        rcx: w[11],
        rdx: w[12],
        rsi: w[13],
        rdi: w[14],
        orig_rax: w[15],
        rip,
        cs: old.cs,
        eflags: (old.eflags & !EFLAGS_USER) | (w[18] & EFLAGS_USER),
        rsp: w[19],
        ss: old.ss,
        fs_base,
        gs_base,
        ds: old.ds,
        es: old.es,
        fs: old.fs,
        gs: old.gs,
    })
}

fn set_regs<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, b: &[u8]) -> SysResult {
    let mut w = [0u64; 27];
    for (i, x) in w.iter_mut().enumerate() {
        let mut q = [0u8; 8];
        q.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *x = u64::from_le_bytes(q);
    }
    let t = task_mut(cx, tid)?;
    t.ctx.regs = checked_regs(&t.ctx.regs, &w)?;
    Ok(0)
}

/// Replace the first `b.len()` bytes of the XSAVE area, then make it one
/// the backend can load (reserved bits cleared, components limited to the
/// machine's).
fn set_fpu<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, b: &[u8]) {
    let layout = cx.hal.fpu_layout();
    if let Some(t) = cx.k.procs.get_mut(tid) {
        let n = b.len().min(hal::XSTATE_MAX);
        t.ctx.fpu.0[..n].copy_from_slice(&b[..n]);
        if n <= FPREGS_SIZE {
            // The legacy area alone: x87 and SSE are in use.
            let bv = t.ctx.fpu.xstate_bv() | hal::context::XFEATURE_FP_SSE;
            t.ctx.fpu.0[hal::context::XSAVE_HEADER..hal::context::XSAVE_HEADER + 8].copy_from_slice(&bv.to_le_bytes());
        }
        t.ctx.fpu.sanitize(&layout);
    }
}

/// `PTRACE_GETREGSET`/`SETREGSET` for `NT_PRSTATUS`, `NT_PRFPREG`,
/// `NT_X86_XSTATE`; `data` points to an iovec whose length is updated.
fn regset<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, set: bool, kind: u64, iov: u64) -> SysResult {
    let base = cx.read_u64(iov)?;
    let len = cx.read_u64(iov.checked_add(8).ok_or(Errno::EFAULT)?)?;
    let layout = cx.hal.fpu_layout();
    let size = match kind {
        NT_PRSTATUS => REGS_SIZE,
        NT_PRFPREG => FPREGS_SIZE,
        NT_X86_XSTATE => layout.size.clamp(FPREGS_SIZE, hal::XSTATE_MAX),
        _ => return Err(Errno::EINVAL),
    };
    let n = usize::try_from(len).unwrap_or(usize::MAX).min(size);
    if set {
        if kind == NT_PRSTATUS && n < REGS_SIZE {
            return Err(Errno::EINVAL);
        }
        let mut b = vec![0u8; n];
        cx.read_user(base, &mut b)?;
        if kind == NT_PRSTATUS {
            set_regs(cx, tid, &b)?;
        } else {
            set_fpu(cx, tid, &b);
        }
    } else {
        let t = task(cx, tid)?;
        let mut b = match kind {
            NT_PRSTATUS => regs_bytes(&t.ctx.regs).to_vec(),
            _ => t.ctx.fpu.0[..size].to_vec(),
        };
        if kind == NT_X86_XSTATE && size >= XSTATE_XCR0 + 8 {
            b[XSTATE_XCR0..XSTATE_XCR0 + 8].copy_from_slice(&layout.features.to_le_bytes());
        }
        cx.write_user(base, &b[..n])?;
    }
    cx.write_user(iov + 8, &(n as u64).to_le_bytes())?;
    Ok(0)
}

/// `PTRACE_GET_SYSCALL_INFO`: what the tracee's syscall stop is about
/// (`addr` is the caller's buffer size); returns the full size.
fn syscall_info<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, stop: Stop, addr: u64, data: u64) -> SysResult {
    let t = task(cx, tid)?;
    let p = t.ptrace.as_deref().ok_or(Errno::ESRCH)?;
    let mut b = [0u8; 88];
    let r = &t.ctx.regs;
    b[4..8].copy_from_slice(&pt::AUDIT_ARCH_X86_64.to_le_bytes());
    b[8..16].copy_from_slice(&r.rip.to_le_bytes());
    b[16..24].copy_from_slice(&r.rsp.to_le_bytes());
    let size = match stop {
        Stop::SyscallEnter => {
            b[0] = pt::PTRACE_SYSCALL_INFO_ENTRY as u8;
            let (nr, args) = p.syscall;
            b[24..32].copy_from_slice(&nr.to_le_bytes());
            for (i, a) in args.iter().enumerate() {
                b[32 + i * 8..40 + i * 8].copy_from_slice(&a.to_le_bytes());
            }
            80
        }
        Stop::SyscallExit => {
            b[0] = pt::PTRACE_SYSCALL_INFO_EXIT as u8;
            let rval = r.rax as i64;
            b[24..32].copy_from_slice(&rval.to_le_bytes());
            b[32] = u8::from((-4095..0).contains(&rval));
            33
        }
        _ => 24,
    };
    let n = usize::try_from(addr).unwrap_or(usize::MAX).min(size);
    if n > 0 {
        cx.write_user(data, &b[..n])?;
    }
    Ok(size)
}

/// May the caller read or change process `target`'s memory with
/// `process_vm_*` (Linux's `PTRACE_MODE_ATTACH_REALCREDS`)?
fn vm_target<H: Hal>(cx: &SysCtx<'_, H>, pid: u64) -> Result<Pid, Errno> {
    let pid = u32::try_from(pid as i64).map_err(|_| Errno::ESRCH)?;
    if pid == cx.t.tgid || pid == cx.t.pid {
        return Ok(cx.t.pid);
    }
    let t = cx.k.procs.get(pid).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?;
    if !may_access(cx.t, t) {
        return Err(Errno::EPERM);
    }
    Ok(pid)
}

/// Read an iovec array (`EINVAL` past `IOV_MAX`).
fn iovecs<H: Hal>(cx: &mut SysCtx<'_, H>, p: u64, n: u64) -> Result<alloc::vec::Vec<(u64, u64)>, Errno> {
    if n > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let mut v = alloc::vec::Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = p.checked_add(i * 16).ok_or(Errno::EFAULT)?;
        let base = cx.read_u64(at)?;
        let len = cx.read_u64(at + 8)?;
        if len > isize::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        v.push((base, len));
    }
    Ok(v)
}

/// `process_vm_readv` (`write` false) / `process_vm_writev` (true):
/// page-sized pieces through a bounce buffer; stops at the first bad page
/// of either side and returns what was moved (`EFAULT` if nothing).
fn process_vm<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], write: bool) -> SysResult {
    if a[5] != 0 {
        return Err(Errno::EINVAL);
    }
    let local = iovecs(cx, a[1], a[2])?;
    let remote = iovecs(cx, a[3], a[4])?;
    let tid = vm_target(cx, a[0])?;
    let mut done = 0usize;
    let (mut li, mut loff, mut ri, mut roff) = (0usize, 0u64, 0usize, 0u64);
    let mut buf = [0u8; 4096];
    loop {
        while li < local.len() && loff == local[li].1 {
            li += 1;
            loff = 0;
        }
        while ri < remote.len() && roff == remote[ri].1 {
            ri += 1;
            roff = 0;
        }
        if li >= local.len() || ri >= remote.len() {
            break;
        }
        let (lb, ll) = local[li];
        let (rb, rl) = remote[ri];
        let n = (ll - loff).min(rl - roff).min(buf.len() as u64) as usize;
        let (la, ra) = (lb.wrapping_add(loff), rb.wrapping_add(roff));
        let r = if write {
            cx.read_user(la, &mut buf[..n]).and_then(|_| remote_copy(cx, tid, ra, &mut buf[..n], true))
        } else {
            remote_copy(cx, tid, ra, &mut buf[..n], false).and_then(|_| cx.write_user(la, &buf[..n]))
        };
        if r.is_err() {
            break;
        }
        done += n;
        loff += n as u64;
        roff += n as u64;
    }
    if done == 0 && local.iter().any(|l| l.1 > 0) && remote.iter().any(|r| r.1 > 0) {
        return Err(Errno::EFAULT);
    }
    Ok(done)
}

/// Move bytes to or from `tid`'s memory with its protections respected (a
/// `process_vm_*` is not a debugger's forced access).
fn remote_copy<H: Hal>(cx: &mut SysCtx<'_, H>, tid: Pid, addr: u64, buf: &mut [u8], write: bool) -> Result<(), Errno> {
    let ((mm, phys), frames) = mm_of_split(cx, tid)?;
    if write {
        mm.copy_to_user(addr, buf, frames, phys)
    } else {
        mm.copy_from_user(addr, buf, frames, phys)
    }
}

/// `process_vm_readv(pid, local_iov, liovcnt, remote_iov, riovcnt, flags)`.
pub fn process_vm_readv<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    process_vm(cx, a, false)
}

/// `process_vm_writev(pid, local_iov, liovcnt, remote_iov, riovcnt, flags)`.
pub fn process_vm_writev<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    process_vm(cx, a, true)
}

/// `read`/`write` (and their positional forms) of `/proc/<pid>/mem`: the
/// file offset is an address in `pid`'s memory, accessed as a debugger
/// does (protections ignored, private pages copied before a write), by a
/// caller allowed to trace it (same user, or root). Stops at the first
/// unmapped page; `EIO` if nothing could be moved.
#[allow(clippy::too_many_arguments)]
pub(super) fn proc_mem<H: Hal>(
    cx: &mut SysCtx<'_, H>,
    f: &crate::fs::FileRef,
    pid: Pid,
    buf: u64,
    off: u64,
    count: u64,
    advance: bool,
    write: bool,
) -> SysResult {
    let tid = vm_target(cx, u64::from(pid))?;
    let mut tmp = [0u8; 4096];
    let mut done = 0u64;
    while done < count {
        let addr = off.checked_add(done).ok_or(Errno::EIO)?;
        // Page-sized pieces, so a piece never spans a mapped and an unmapped page.
        let n = (count - done).min(4096 - addr % 4096) as usize;
        let r = if write {
            if let Err(e) = cx.read_user(buf + done, &mut tmp[..n]) {
                return if done > 0 { Ok(done as usize) } else { Err(e) };
            }
            write_mem(cx, tid, addr, &tmp[..n])
        } else {
            read_mem(cx, tid, addr, &mut tmp[..n]).and_then(|_| cx.write_user(buf + done, &tmp[..n]).map_err(|_| Errno::ENOMEM))
        };
        match r {
            Ok(()) => done += n as u64,
            Err(Errno::ENOMEM) if done == 0 => return Err(Errno::EFAULT),
            Err(_) if done == 0 => return Err(Errno::EIO),
            Err(_) => break,
        }
    }
    if advance {
        f.offset.set(off + done);
    }
    Ok(done as usize)
}

/// `personality(persona)`: stored and reported (`0xffffffff` only asks).
/// Here because debuggers call it before starting a program, to turn
/// address-space randomisation off (`ADDR_NO_RANDOMIZE`); the guest's
/// layout is not randomised anyway, so no flag changes behaviour.
pub fn personality<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let old = cx.t.personality;
    let new = a[0] as u32;
    if new != u32::MAX {
        cx.t.personality = new;
    }
    Ok(old as usize)
}
