//! Signal calls: sending (`kill`, `tkill`, `tgkill`), dispositions and
//! masks, the alternate stack, `rt_sigreturn`, waiting (`rt_sigsuspend`,
//! `rt_sigtimedwait`, `pause`), and the interval timers (`alarm`,
//! `setitimer`, `getitimer`). Delivery itself is in `kernel/signals.rs`.

use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::kernel::block;
use crate::task::frame;
use crate::task::signal::{sigbit, SigAction, SigInfo, NSIG, UNBLOCKABLE};
use crate::task::{Pid, Task, WaitOn};
use crate::time::{timeval_bytes, NS_PER_SEC};
use crate::{Errno, SysResult};

fn check_sig(sig: u64) -> Result<u32, Errno> {
    if sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    Ok(sig as u32)
}

/// May a task with credentials of `from` signal `to`? (Linux's
/// `kill_ok_by_cred`: root, or real/effective uid matching the target's
/// real/saved uid; SIGCONT within a session always.)
fn may_signal<S: hal::AddressSpace>(from: &Task<S>, to: &Task<S>, sig: u32) -> bool {
    let (c, t) = (&from.cred, &to.cred);
    c.euid == 0
        || c.euid == t.suid
        || c.euid == t.uid
        || c.uid == t.suid
        || c.uid == t.uid
        || (sig == g::SIGCONT && from.sid == to.sid)
        || from.tgid == to.tgid
}

/// Send to process (thread group) `tgid` with permission check.
fn send_process<H: Hal>(cx: &mut SysCtx<'_, H>, tgid: Pid, sig: u32, code: i32) -> Result<(), Errno> {
    let me_tgid = cx.t.tgid;
    let ok = if tgid == me_tgid {
        true
    } else {
        let t = cx.k.procs.get(tgid).ok_or(Errno::ESRCH)?;
        may_signal(cx.t, t, sig)
    };
    if !ok {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        let info = SigInfo::user(sig, code, me_tgid, cx.t.cred.uid);
        cx.k.post_signal(Some(&mut *cx.t), tgid, info, false);
    }
    Ok(())
}

/// `kill(pid, sig)`.
pub fn kill<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[1])?;
    let pid = a[0] as i32;
    if pid > 0 {
        let p = pid as u32;
        let exists = p == cx.t.tgid || cx.k.procs.get(p).is_some_and(|t| t.is_leader());
        if !exists {
            return Err(Errno::ESRCH);
        }
        send_process(cx, p, sig, 0)?;
        return Ok(0);
    }
    if pid == i32::MIN {
        return Err(Errno::ESRCH);
    }
    let group = match pid {
        0 => Some(cx.t.pgid),
        -1 => None,
        p => Some(p.unsigned_abs()),
    };
    let me = cx.t.tgid;
    // Zombies count until reaped, as on Linux (kill(-pgid, 0) on a group of
    // unreaped dead processes succeeds; the signal itself goes nowhere).
    let mut targets: Vec<Pid> = cx
        .k
        .procs
        .iter()
        .filter(|t| t.is_leader())
        .filter(|t| match group {
            Some(gid) => t.pgid == gid,
            None => t.pid != 1 && t.tgid != me,
        })
        .map(|t| t.pid)
        .collect();
    if group.is_some_and(|gid| cx.t.pgid == gid) && !targets.contains(&me) {
        targets.push(me);
    }
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    let mut sent = 0;
    let mut last = Errno::EPERM;
    for p in targets {
        match send_process(cx, p, sig, 0) {
            Ok(()) => sent += 1,
            Err(e) => last = e,
        }
    }
    if sent == 0 {
        return Err(last);
    }
    Ok(0)
}

/// Send to thread `tid` (optionally checking it is in `tgid`).
fn send_thread<H: Hal>(cx: &mut SysCtx<'_, H>, tgid: Option<Pid>, tid: Pid, sig: u32) -> SysResult {
    let is_me = tid == cx.t.pid;
    let ok = if is_me {
        if tgid.is_some_and(|g| g != cx.t.tgid) {
            return Err(Errno::ESRCH);
        }
        true
    } else {
        let t = cx.k.procs.get(tid).filter(|t| !t.is_zombie()).ok_or(Errno::ESRCH)?;
        if tgid.is_some_and(|g| g != t.tgid) {
            return Err(Errno::ESRCH);
        }
        may_signal(cx.t, t, sig)
    };
    if !ok {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        let info = SigInfo::user(sig, g::SI_TKILL, cx.t.tgid, cx.t.cred.uid);
        cx.k.post_signal(Some(&mut *cx.t), tid, info, true);
    }
    Ok(0)
}

/// `tkill(tid, sig)`.
pub fn tkill<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[1])?;
    let tid = a[0] as i32;
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    send_thread(cx, None, tid as u32, sig)
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[2])?;
    let (tgid, tid) = (a[0] as i32, a[1] as i32);
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    send_thread(cx, Some(tgid as u32), tid as u32, sig)
}

/// `rt_sigaction(sig, act, oldact, sigsetsize)`.
pub fn rt_sigaction<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (sig, act, old, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 || sig == 0 || sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    let sig = sig as u32;
    let new = if act != 0 {
        if sig == g::SIGKILL || sig == g::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut sa = SigAction::from_bytes(&cx.read_array::<32>(act)?);
        sa.mask &= !UNBLOCKABLE;
        Some(sa)
    } else {
        None
    };
    let idx = (sig - 1) as usize;
    if old != 0 {
        let o = cx.t.signals.actions[idx];
        cx.write_user(old, &o.to_bytes())?;
    }
    if let Some(sa) = new {
        cx.k.set_action(cx.t, sig, sa);
    }
    Ok(0)
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`. Newly unblocked pending
/// signals are delivered on the way back to user mode.
pub fn rt_sigprocmask<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (how, set, old, size) = (a[0] as u32, a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if set != 0 {
        if how != g::SIG_BLOCK && how != g::SIG_UNBLOCK && how != g::SIG_SETMASK {
            return Err(Errno::EINVAL);
        }
        Some(cx.read_u64(set)?)
    } else {
        None
    };
    let cur = cx.t.signals.mask;
    if old != 0 {
        cx.write_user(old, &cur.to_le_bytes())?;
    }
    if let Some(s) = new {
        let m = match how {
            g::SIG_BLOCK => cur | s,
            g::SIG_UNBLOCK => cur & !s,
            _ => s,
        };
        cx.t.signals.mask = m & !UNBLOCKABLE;
    }
    Ok(0)
}

/// `rt_sigpending(set, sigsetsize)`.
pub fn rt_sigpending<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[1] > 8 {
        return Err(Errno::EINVAL);
    }
    let p = (cx.t.signals.pending & cx.t.signals.mask).to_le_bytes();
    let n = a[1] as usize;
    cx.write_user(a[0], &p[..n])?;
    Ok(0)
}

/// `sigaltstack(ss, old_ss)`.
pub fn sigaltstack<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (ss, old) = (a[0], a[1]);
    let sp = cx.t.ctx.regs.rsp;
    let alt = cx.t.signals.altstack;
    let new = if ss != 0 {
        let b = cx.read_array::<24>(ss)?;
        let nsp = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let flags = i32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let size = u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
        if frame::on_altstack(alt, sp) {
            return Err(Errno::EPERM);
        }
        let f = flags as u32 & !g::SS_AUTODISARM;
        if f != 0 && f != g::SS_DISABLE && f != g::SS_ONSTACK {
            return Err(Errno::EINVAL);
        }
        if f == g::SS_DISABLE {
            Some((0, g::SS_DISABLE as i32, 0))
        } else {
            if size < g::MINSIGSTKSZ as u64 {
                return Err(Errno::ENOMEM);
            }
            Some((nsp, (flags as u32 & g::SS_AUTODISARM) as i32, size))
        }
    } else {
        None
    };
    if old != 0 {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&alt.0.to_le_bytes());
        b[8..12].copy_from_slice(&frame::altstack_flags(alt, sp).to_le_bytes());
        b[16..24].copy_from_slice(&alt.2.to_le_bytes());
        cx.write_user(old, &b)?;
    }
    if let Some(n) = new {
        cx.t.signals.altstack = n;
    }
    Ok(0)
}

/// `rt_sigreturn()`: back from a handler. A bad frame kills with SIGSEGV.
pub fn rt_sigreturn<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> Flow {
    if frame::restore(cx.t, &mut cx.k.frames, cx.hal.phys(), &cx.hal.fpu_layout()).is_err() {
        if cx.k.trace {
            cx.hal.log(&alloc::format!("[{}] rt_sigreturn: bad frame at {:#x}: SIGSEGV", cx.t.pid, cx.t.ctx.regs.rsp));
        }
        // force_sigsegv: a bad frame kills even if SIGSEGV is caught, and
        // even init.
        cx.t.signals.actions[(g::SIGSEGV - 1) as usize] = SigAction::default();
        cx.t.signals.mask &= !sigbit(g::SIGSEGV);
        cx.k.fault_signal(cx.t, SigInfo::kernel(g::SIGSEGV));
    }
    // The registers are the restored ones: do not write rax.
    Flow::Exec
}

/// `rt_sigsuspend(mask, sigsetsize)`: wait for a signal with a temporary mask.
pub fn rt_sigsuspend<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    if a[1] != 8 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let m = match cx.read_u64(a[0]) {
        Ok(m) => m,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if cx.t.saved_mask.is_none() {
        cx.t.saved_mask = Some(cx.t.signals.mask);
    }
    cx.t.signals.mask = m & !UNBLOCKABLE;
    if cx.t.signals.pending & !cx.t.signals.mask != 0 {
        return Flow::Ret(Err(Errno::EINTR));
    }
    block(WaitOn::Signal, None, Err(Errno::EINTR), false)
}

/// `pause()`.
pub fn pause<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> Flow {
    if cx.t.signals.pending & !cx.t.signals.mask != 0 {
        return Flow::Ret(Err(Errno::EINTR));
    }
    block(WaitOn::Signal, None, Err(Errno::EINTR), false)
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)`.
pub fn rt_sigtimedwait<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    // Ok(Ok(sig)): a signal was taken; Ok(Err(deadline)): wait.
    let r = (|| -> Result<Result<u32, Option<u64>>, Errno> {
        if a[3] != 8 {
            return Err(Errno::EINVAL);
        }
        let set = cx.read_u64(a[0])? & !UNBLOCKABLE;
        cx.t.wait_set = set;
        if let Some(info) = cx.t.signals.take(set) {
            cx.k.signal_taken(cx.t.tgid, &info);
            if a[1] != 0 {
                cx.write_user(a[1], &info.to_bytes())?;
            }
            return Ok(Ok(info.signo));
        }
        if a[2] == 0 {
            return Ok(Err(None));
        }
        let ns = crate::time::parse_timespec(&cx.read_array::<16>(a[2])?)?;
        Ok(Err(Some(cx.hal.now_ns().saturating_add(ns))))
    })();
    match r {
        Ok(Ok(sig)) => Flow::Ret(Ok(sig as usize)),
        Err(e) => Flow::Ret(Err(e)),
        Ok(Err(deadline)) => {
            let deadline = cx.t.restart_deadline.or(deadline);
            if deadline.is_some_and(|d| d <= cx.hal.now_ns()) {
                return Flow::Ret(Err(Errno::EAGAIN));
            }
            block(WaitOn::Signal, deadline, Err(Errno::EAGAIN), true)
        }
    }
}

/// The process's interval timer `which`: (value ns, interval ns).
fn itimer_get<H: Hal>(cx: &SysCtx<'_, H>, which: u32) -> (u64, u64) {
    let timers = &cx.k.clock.timers;
    if which == g::ITIMER_REAL {
        timers.real_get(cx.t.tgid, cx.hal.now_ns())
    } else {
        timers.cpu_itimer_get(cx.t.tgid, which)
    }
}

fn itimer_set<H: Hal>(cx: &mut SysCtx<'_, H>, which: u32, value: u64, interval: u64) {
    let (tgid, now) = (cx.t.tgid, cx.hal.now_ns());
    let timers = &mut cx.k.clock.timers;
    if which == g::ITIMER_REAL {
        timers.real_set(tgid, now, value, interval);
    } else {
        timers.cpu_itimer_set(tgid, which, value, interval);
    }
}

/// `alarm(seconds)`: returns the seconds left of the previous alarm.
pub fn alarm<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (left, _) = itimer_get(cx, g::ITIMER_REAL);
    let secs = a[0] as u32 as u64;
    itimer_set(cx, g::ITIMER_REAL, secs.saturating_mul(NS_PER_SEC), 0);
    // Rounded to the nearest second, at least 1 if one was pending (as Linux).
    let prev = if left == 0 { 0 } else { ((left + NS_PER_SEC / 2) / NS_PER_SEC).max(1) };
    Ok(prev as usize)
}

fn parse_timeval(b: &[u8]) -> Result<u64, Errno> {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[0..8]);
    let s = i64::from_le_bytes(x);
    x.copy_from_slice(&b[8..16]);
    let us = i64::from_le_bytes(x);
    if s < 0 || !(0..1_000_000).contains(&us) {
        return Err(Errno::EINVAL);
    }
    Ok((s as u64).saturating_mul(NS_PER_SEC).saturating_add(us as u64 * 1000))
}

fn itimerval_bytes(value: u64, interval: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..16].copy_from_slice(&timeval_bytes(interval));
    b[16..32].copy_from_slice(&timeval_bytes(value));
    b
}

/// `getitimer(which, curr)`.
pub fn getitimer<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let which = a[0] as u32;
    if which > g::ITIMER_PROF {
        return Err(Errno::EINVAL);
    }
    let (v, iv) = itimer_get(cx, which);
    cx.write_user(a[1], &itimerval_bytes(v, iv))?;
    Ok(0)
}

/// `setitimer(which, new, old)`: `ITIMER_REAL` counts wall time,
/// `ITIMER_VIRTUAL` the process's user time, `ITIMER_PROF` its user and
/// system time (see [`crate::time::timers`]). A null `new` disarms, as Linux
/// still allows.
pub fn setitimer<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let which = a[0] as u32;
    if which > g::ITIMER_PROF {
        return Err(Errno::EINVAL);
    }
    let (value, interval) = if a[1] != 0 {
        let b = cx.read_array::<32>(a[1])?;
        (parse_timeval(&b[16..32])?, parse_timeval(&b[0..16])?)
    } else {
        (0, 0)
    };
    let (v, iv) = itimer_get(cx, which);
    if a[2] != 0 {
        cx.write_user(a[2], &itimerval_bytes(v, iv))?;
    }
    itimer_set(cx, which, value, interval);
    Ok(0)
}
