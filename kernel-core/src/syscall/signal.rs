//! Signal calls. Dispositions, masks and the alternate stack are stored and
//! reported; default actions (terminate/ignore) apply; user handlers are not
//! delivered yet (a caught signal stays pending).

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::kernel::decide_signal;
use crate::task::signal::{default_action, sigbit, DefaultAction, SigAction, NSIG, UNBLOCKABLE};
use crate::task::Pid;
use crate::{Errno, SysResult};

fn check_sig(sig: u64) -> Result<u32, Errno> {
    if sig > NSIG as u64 {
        return Err(Errno::EINVAL);
    }
    Ok(sig as u32)
}

/// Send `sig` to `pid` (the caller included).
fn send<H: Hal>(cx: &mut SysCtx<'_, H>, pid: Pid, sig: u32) {
    if pid == cx.t.pid {
        if sig != 0 && decide_signal(cx.t, sig) {
            cx.t.kill_pending = Some(sig);
        }
    } else {
        cx.k.send_signal(cx.hal, pid, sig);
    }
}

/// `kill(pid, sig)`.
pub fn kill<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[1])?;
    let pid = a[0] as i32;
    let me = cx.t.pid;
    let targets: alloc::vec::Vec<Pid> = if pid > 0 {
        let p = pid as u32;
        if p != me && !cx.k.tasks.contains_key(&p) {
            return Err(Errno::ESRCH);
        }
        alloc::vec![p]
    } else {
        let group = match pid {
            0 => Some(cx.t.pgid),
            -1 => None,
            p => Some(p.unsigned_abs()),
        };
        let mut v: alloc::vec::Vec<Pid> = cx
            .k
            .tasks
            .values()
            .filter(|t| !t.is_zombie())
            .filter(|t| match group {
                Some(gid) => t.pgid == gid,
                None => t.pid != 1,
            })
            .map(|t| t.pid)
            .collect();
        if group.is_some_and(|gid| cx.t.pgid == gid) {
            v.push(me);
        }
        if v.is_empty() {
            return Err(Errno::ESRCH);
        }
        v
    };
    for p in targets {
        send(cx, p, sig);
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
    let tid = tid as u32;
    if tid != cx.t.pid && cx.k.tasks.get(&tid).is_none_or(|t| t.is_zombie()) {
        return Err(Errno::ESRCH);
    }
    send(cx, tid, sig);
    Ok(0)
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if (a[0] as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    // One thread per process: the thread group id is the pid.
    if a[0] as i32 != a[1] as i32 {
        check_sig(a[2])?;
        return Err(Errno::ESRCH);
    }
    tkill(cx, [a[1], a[2], 0, 0, 0, 0])
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
        if sa.handler > 1 {
            cx.log_once("sig-handlers", "kernel: signal handlers are recorded but not delivered yet (issue 3)");
        }
        cx.t.signals.actions[idx] = sa;
        // Ignoring a pending signal discards it.
        if sa.handler == 1 || (sa.handler == 0 && default_action(sig) == DefaultAction::Ignore) {
            cx.t.signals.pending &= !sigbit(sig);
        }
    }
    Ok(0)
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
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
        // A pending signal whose default action kills takes effect once unblocked.
        let now_deliverable = cx.t.signals.pending & !cx.t.signals.mask;
        for sig in 1..=NSIG as u32 {
            if now_deliverable & sigbit(sig) != 0 {
                let act = cx.t.signals.actions[(sig - 1) as usize];
                if act.handler == 0 && default_action(sig) == DefaultAction::Terminate {
                    cx.t.signals.pending &= !sigbit(sig);
                    cx.t.kill_pending = Some(sig);
                    break;
                }
            }
        }
    }
    Ok(0)
}

/// `sigaltstack(ss, old_ss)`.
pub fn sigaltstack<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (ss, old) = (a[0], a[1]);
    let new = if ss != 0 {
        let b = cx.read_array::<24>(ss)?;
        let sp = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let flags = i32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let size = u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
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
            Some((sp, (flags as u32 & g::SS_AUTODISARM) as i32, size))
        }
    } else {
        None
    };
    if old != 0 {
        let (sp, flags, size) = cx.t.signals.altstack;
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&sp.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&size.to_le_bytes());
        cx.write_user(old, &b)?;
    }
    if let Some(n) = new {
        cx.t.signals.altstack = n;
    }
    Ok(0)
}
