//! Identity calls: pids and thread ids, process groups and sessions,
//! credentials (the `setuid` family with Linux's rules for root and
//! non-root), and CPU-time accounting (`times`, `getrusage`).

use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::SysCtx;
use crate::task::{Cred, Pid};
use crate::{Errno, SysResult};

/// `getpid()`: the thread group id.
pub fn getpid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.tgid as usize)
}

/// `gettid()`.
pub fn gettid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.pid as usize)
}

/// `getppid()`.
pub fn getppid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.ppid as usize)
}

/// (pgid, sid) of process `pid` (0: the caller).
fn pgid_sid<H: Hal>(cx: &SysCtx<'_, H>, pid: u32) -> Result<(Pid, Pid), Errno> {
    if pid == 0 || pid == cx.t.tgid || pid == cx.t.pid {
        return Ok((cx.t.pgid, cx.t.sid));
    }
    let t = cx.k.procs.get(pid).filter(|t| !t.is_zombie() || t.is_leader()).ok_or(Errno::ESRCH)?;
    Ok((t.pgid, t.sid))
}

/// `getpgid(pid)`.
pub fn getpgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if (a[0] as i32) < 0 {
        return Err(Errno::ESRCH);
    }
    Ok(pgid_sid(cx, a[0] as u32)?.0 as usize)
}

/// `getpgrp()`.
pub fn getpgrp<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.pgid as usize)
}

/// `getsid(pid)`.
pub fn getsid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if (a[0] as i32) < 0 {
        return Err(Errno::ESRCH);
    }
    Ok(pgid_sid(cx, a[0] as u32)?.1 as usize)
}

/// `setpgid(pid, pgid)` with Linux's rules: the caller or a child of it
/// (ESRCH otherwise) in the same session (EPERM), not yet exec'd (EACCES),
/// not a session leader (EPERM), joining a group of the same session (EPERM).
pub fn setpgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (pid, pgid) = (a[0] as i32, a[1] as i32);
    if pgid < 0 || pid < 0 {
        return Err(Errno::EINVAL);
    }
    let me = cx.t.tgid;
    let pid = if pid == 0 { me } else { pid as u32 };
    let pgid = if pgid == 0 { pid } else { pgid as u32 };
    let my_sid = cx.t.sid;
    let (t_sid, t_is_sid_leader) = if pid == me {
        (cx.t.sid, cx.t.sid == me)
    } else {
        let t = cx.k.procs.get(pid).filter(|t| t.ppid == me && t.is_leader()).ok_or(Errno::ESRCH)?;
        if t.sid != my_sid {
            return Err(Errno::EPERM);
        }
        if t.execed {
            return Err(Errno::EACCES);
        }
        (t.sid, t.sid == t.pid)
    };
    if t_is_sid_leader {
        return Err(Errno::EPERM);
    }
    if pgid != pid {
        let exists = (cx.t.pgid == pgid && cx.t.sid == t_sid)
            || cx.k.procs.iter().any(|o| o.pgid == pgid && o.sid == t_sid && !o.is_zombie());
        if !exists {
            return Err(Errno::EPERM);
        }
    }
    if pid == me {
        cx.t.pgid = pgid;
        for o in cx.k.procs.iter_mut().filter(|o| o.tgid == me) {
            o.pgid = pgid;
        }
    } else {
        for o in cx.k.procs.iter_mut().filter(|o| o.tgid == pid) {
            o.pgid = pgid;
        }
    }
    Ok(0)
}

/// `setsid()`: EPERM for a process group leader.
pub fn setsid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    let me = cx.t.tgid;
    if cx.t.pgid == me || cx.k.procs.iter().any(|t| t.pgid == me && !t.is_zombie()) {
        return Err(Errno::EPERM);
    }
    cx.t.pgid = me;
    cx.t.sid = me;
    for o in cx.k.procs.iter_mut().filter(|o| o.tgid == me) {
        o.pgid = me;
        o.sid = me;
    }
    Ok(me as usize)
}

/// Apply a credential change to the caller and the rest of its thread group
/// (glibc changes all threads' ids through its setxid broadcast; doing it
/// here too keeps them consistent if a program uses the raw call).
fn set_cred<H: Hal>(cx: &mut SysCtx<'_, H>, c: Cred) {
    let tgid = cx.t.tgid;
    for o in cx.k.procs.iter_mut().filter(|o| o.tgid == tgid) {
        o.cred = c.clone();
    }
    cx.t.cred = c;
}

/// `getuid()`.
pub fn getuid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.cred.uid as usize)
}
/// `geteuid()`.
pub fn geteuid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.cred.euid as usize)
}
/// `getgid()`.
pub fn getgid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.cred.gid as usize)
}
/// `getegid()`.
pub fn getegid<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(cx.t.cred.egid as usize)
}

const KEEP: u32 = u32::MAX;

/// `setresuid`-style change of (real, effective, saved) for uids (`gid` false)
/// or gids: unprivileged callers may only pick among their current three.
fn setres<H: Hal>(cx: &mut SysCtx<'_, H>, gid: bool, r: u32, e: u32, s: u32) -> SysResult {
    let c = cx.t.cred.clone();
    let priv_ = c.euid == 0;
    let (cr, ce, cs) = if gid { (c.gid, c.egid, c.sgid) } else { (c.uid, c.euid, c.suid) };
    let ok = |x: u32| x == KEEP || x == cr || x == ce || x == cs;
    if !priv_ && (!ok(r) || !ok(e) || !ok(s)) {
        return Err(Errno::EPERM);
    }
    let pick = |x: u32, old: u32| if x == KEEP { old } else { x };
    store_ids(cx, c, gid, pick(r, cr), pick(e, ce), pick(s, cs))
}

/// Install (real, effective, saved) uids or gids; the fs id follows the
/// effective one, as Linux does.
fn store_ids<H: Hal>(cx: &mut SysCtx<'_, H>, mut c: Cred, gid: bool, r: u32, e: u32, s: u32) -> SysResult {
    if gid {
        (c.gid, c.egid, c.sgid, c.fsgid) = (r, e, s, e);
    } else {
        (c.uid, c.euid, c.suid, c.fsuid) = (r, e, s, e);
    }
    set_cred(cx, c);
    Ok(0)
}

/// `setuid`/`setgid` rules: root sets all three ids; others may set the
/// effective id to their real or saved one.
fn set_one<H: Hal>(cx: &mut SysCtx<'_, H>, gid: bool, v: u32) -> SysResult {
    if v == KEEP {
        return Err(Errno::EINVAL);
    }
    let c = &cx.t.cred;
    let (real, saved) = if gid { (c.gid, c.sgid) } else { (c.uid, c.suid) };
    if c.euid == 0 {
        setres(cx, gid, v, v, v)
    } else if v == real || v == saved {
        setres(cx, gid, KEEP, v, KEEP)
    } else {
        Err(Errno::EPERM)
    }
}

/// `setuid(uid)`.
pub fn setuid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    set_one(cx, false, a[0] as u32)
}

/// `setgid(gid)`.
pub fn setgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    set_one(cx, true, a[0] as u32)
}

/// `setreuid`/`setregid` rules: real may become real or effective; effective
/// may become any of the three; saved follows the new effective if the real
/// changed or the effective became different from the old real.
fn setre<H: Hal>(cx: &mut SysCtx<'_, H>, gid: bool, r: u32, e: u32) -> SysResult {
    let c = &cx.t.cred;
    let priv_ = c.euid == 0;
    let (cr, ce, cs) = if gid { (c.gid, c.egid, c.sgid) } else { (c.uid, c.euid, c.suid) };
    if !priv_ {
        if r != KEEP && r != cr && r != ce {
            return Err(Errno::EPERM);
        }
        if e != KEEP && e != cr && e != ce && e != cs {
            return Err(Errno::EPERM);
        }
    }
    let nr = if r == KEEP { cr } else { r };
    let ne = if e == KEEP { ce } else { e };
    let ns = if r != KEEP || (e != KEEP && e != cr) { ne } else { cs };
    store_ids(cx, cx.t.cred.clone(), gid, nr, ne, ns)
}

/// `setreuid(ruid, euid)`.
pub fn setreuid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    setre(cx, false, a[0] as u32, a[1] as u32)
}
/// `setregid(rgid, egid)`.
pub fn setregid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    setre(cx, true, a[0] as u32, a[1] as u32)
}
/// `setresuid(r, e, s)`.
pub fn setresuid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    setres(cx, false, a[0] as u32, a[1] as u32, a[2] as u32)
}
/// `setresgid(r, e, s)`.
pub fn setresgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    setres(cx, true, a[0] as u32, a[1] as u32, a[2] as u32)
}

fn write3<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6], v: [u32; 3]) -> SysResult {
    for i in 0..3 {
        cx.write_user(a[i], &v[i].to_le_bytes())?;
    }
    Ok(0)
}

/// `getresuid(r, e, s)`.
pub fn getresuid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let c = cx.t.cred.clone();
    write3(cx, a, [c.uid, c.euid, c.suid])
}
/// `getresgid(r, e, s)`.
pub fn getresgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let c = cx.t.cred.clone();
    write3(cx, a, [c.gid, c.egid, c.sgid])
}

/// `setfsuid(fsuid)`: returns the previous value whether or not it changed.
pub fn setfsuid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mut c = cx.t.cred.clone();
    let old = c.fsuid;
    let v = a[0] as u32;
    if c.euid == 0 || v == c.uid || v == c.euid || v == c.suid || v == c.fsuid {
        c.fsuid = v;
        set_cred(cx, c);
    }
    Ok(old as usize)
}
/// `setfsgid(fsgid)`.
pub fn setfsgid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let mut c = cx.t.cred.clone();
    let old = c.fsgid;
    let v = a[0] as u32;
    if c.euid == 0 || v == c.gid || v == c.egid || v == c.sgid || v == c.fsgid {
        c.fsgid = v;
        set_cred(cx, c);
    }
    Ok(old as usize)
}

/// `getgroups(size, list)`.
pub fn getgroups<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let size = a[0] as i32;
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    let n = cx.t.cred.groups.len();
    if size == 0 {
        return Ok(n);
    }
    if (size as usize) < n {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = cx.t.cred.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    cx.write_user(a[1], &bytes)?;
    Ok(n)
}

/// `setgroups(size, list)`: root only.
pub fn setgroups<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let size = a[0] as i32;
    if !(0..=65536).contains(&size) {
        return Err(Errno::EINVAL);
    }
    if cx.t.cred.euid != 0 {
        return Err(Errno::EPERM);
    }
    let mut buf = alloc::vec![0u8; size as usize * 4];
    if size > 0 {
        cx.read_user(a[1], &mut buf)?;
    }
    let mut groups: Vec<u32> = buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    groups.sort_unstable();
    let mut c = cx.t.cred.clone();
    c.groups = groups;
    set_cred(cx, c);
    Ok(0)
}

/// (user, system) ns of the caller's whole process.
pub fn process_times<H: Hal>(cx: &SysCtx<'_, H>) -> (u64, u64) {
    let tgid = cx.t.tgid;
    // The caller's time not yet split counts as CLOCK_PROCESS_CPUTIME_ID counts it.
    let (run, kern) = cx.t.cpu.unsettled();
    let mut u = cx.t.utime_ns + run;
    let mut s = cx.t.stime_ns + kern;
    for o in cx.k.procs.iter().filter(|o| o.tgid == tgid && o.pid != cx.t.pid) {
        u += o.utime_ns;
        s += o.stime_ns;
    }
    (u, s)
}

/// (user, system) ns of reaped children (and exited threads) of the process.
fn children_times<H: Hal>(cx: &SysCtx<'_, H>) -> (u64, u64) {
    let tgid = cx.t.tgid;
    let mut c = cx.t.child_times;
    for o in cx.k.procs.iter().filter(|o| o.tgid == tgid && o.pid != cx.t.pid) {
        c.0 += o.child_times.0;
        c.1 += o.child_times.1;
    }
    c
}

/// Clock ticks (USER_HZ = 100) of `ns`.
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

/// `times(buf)`: returns ticks since boot.
pub fn times<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    if a[0] != 0 {
        let (u, s) = process_times(cx);
        let (cu, cs) = children_times(cx);
        let mut b = [0u8; 32];
        for (i, v) in [u, s, cu, cs].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&ticks(*v).to_le_bytes());
        }
        cx.write_user(a[0], &b)?;
    }
    Ok(ticks(cx.hal.now_ns()) as usize)
}

/// `getrusage(who, usage)`: user/system time; other fields zero.
pub fn getrusage<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let who = a[0] as i32;
    let (u, s) = match who {
        0 => process_times(cx),                    // RUSAGE_SELF
        -1 => children_times(cx),                  // RUSAGE_CHILDREN
        1 => (cx.t.utime_ns, cx.t.stime_ns),       // RUSAGE_THREAD
        _ => return Err(Errno::EINVAL),
    };
    let _ = g::RUSAGE_SELF;
    cx.write_user(a[1], &super::process::rusage_bytes(u, s))?;
    Ok(0)
}
