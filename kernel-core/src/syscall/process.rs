//! Process calls: fork/vfork/clone, execve, wait4/waitid, exit.

use alloc::vec;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::file::lookup;
use super::{Flow, SysCtx};
use crate::budget::{Charge, Kind as Cost};
use crate::fs::path::Follow;
use crate::kernel::block;
use crate::fs::FdTable;
use crate::task::{ExitStatus, Pid, SignalState, Task, TaskState, WaitOn};
use crate::{Errno, SysResult};

/// Linux's `MAX_ARG_STRLEN`.
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Total argv + envp bytes accepted (a quarter of the default 8 MiB stack, as Linux).
const ARG_MAX: usize = 2 << 20;

/// What a task costs the memory budget: the task itself (its signal state,
/// registers, the kernel's bookkeeping; Linux's task_struct and kernel stack
/// are about as much).
pub const TASK_COST: usize = 16 << 10;
/// What a new address space costs besides its pages: the backend's host
/// context for it (a stub process under skas: its page tables, stack and
/// bookkeeping on the host).
pub const SPACE_COST: usize = 128 << 10;

/// Create a child task per the `CLONE_*` flags: a new process (copy-on-write
/// memory, copied fd table) or a thread / `CLONE_VM` child sharing memory,
/// fd table and handlers as asked. Returns its pid.
fn do_fork<H: Hal>(cx: &mut SysCtx<'_, H>, flags: u64, stack: u64, tls: Option<u64>) -> Result<Pid, Errno> {
    let f = flags as u32;
    let uid = cx.t.cred.uid;
    if uid != 0 {
        let limit = cx.t.rlimits[g::RLIMIT_NPROC as usize].0.min(1 << 22) as usize;
        if cx.k.procs.iter().filter(|t| t.cred.uid == uid).count() + 1 > limit {
            return Err(Errno::EAGAIN);
        }
    }
    if cx.k.procs.len() >= 1 << 20 {
        return Err(Errno::EAGAIN);
    }
    // A task, and for a new address space the backend's host context for it,
    // come out of the guest's memory before anything is allocated.
    let cost = TASK_COST + if f & g::CLONE_VM != 0 { 0 } else { SPACE_COST };
    let charge = Charge::new(cx.k.frames.budget(), Cost::Task, cost)?;
    let (child_mm, mm_id) = if f & g::CLONE_VM != 0 {
        (None, cx.t.mm_id)
    } else {
        let space = cx.hal.new_space().map_err(|_| Errno::EAGAIN)?;
        let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
        (Some(mm.fork(space, &mut cx.k.frames)?), cx.k.procs.new_share_id())
    };
    let pid = cx.k.procs.alloc_pid();
    let mut ctx = cx.t.ctx.clone();
    ctx.regs.rax = 0;
    if stack != 0 {
        ctx.regs.rsp = stack;
    }
    if let Some(t) = tls {
        ctx.regs.fs_base = t;
    }
    let mut child = Task::new(pid, cx.t.tgid, ctx, child_mm, FdTable::new(), cx.t.cwd.clone());
    child.mm_id = mm_id;
    if f & g::CLONE_FILES != 0 {
        child.files_id = cx.t.files_id;
        child.fds_held = false;
    } else {
        child.fds = cx.t.fds.clone();
        child.files_id = cx.k.procs.new_share_id();
    }
    child.sighand_id = if f & g::CLONE_SIGHAND != 0 { cx.t.sighand_id } else { cx.k.procs.new_share_id() };
    if f & g::CLONE_FS != 0 {
        if cx.t.fs_id == 0 {
            cx.t.fs_id = cx.k.procs.new_share_id();
        }
        cx.t.fs_shared = true;
        child.fs_id = cx.t.fs_id;
        child.fs_shared = true;
    } else {
        child.fs_id = cx.k.procs.new_share_id();
    }
    child.signals = SignalState { pending: 0, ..cx.t.signals.clone() };
    if f & g::CLONE_VM != 0 && f & g::CLONE_VFORK == 0 {
        // A new thread of execution must not share the alternate stack.
        child.signals.altstack = (0, g::SS_DISABLE as i32, 0);
    }
    if f & g::CLONE_THREAD != 0 {
        child.tgid = cx.t.tgid;
        child.ppid = cx.t.ppid;
        child.exit_signal = 0;
    } else {
        child.exit_signal = (flags & 0xff) as u32;
        if f & g::CLONE_PARENT != 0 {
            child.ppid = cx.t.ppid;
        }
    }
    child.pgid = cx.t.pgid;
    child.sid = cx.t.sid;
    child.umask = cx.t.umask;
    child.rlimits = cx.t.rlimits;
    child.exe = cx.t.exe.clone();
    child.cmdline = cx.t.cmdline.clone();
    child.environ = cx.t.environ.clone();
    child.comm = cx.t.comm.clone();
    child.dumpable = cx.t.dumpable;
    child.nice = cx.t.nice;
    child.no_new_privs = cx.t.no_new_privs;
    child.cred = cx.t.cred.clone();
    child.start_ns = cx.hal.now_ns();
    child.charge = Some(charge);
    cx.k.procs.spawn(alloc::boxed::Box::new(child));
    if cx.t.ptrace.is_some() {
        // Linux's choice of event: vfork, a child with another exit signal
        // (a thread, a clone), or a fork.
        use linux_raw_sys::ptrace as pt;
        let ev = if f & g::CLONE_VFORK != 0 {
            pt::PTRACE_EVENT_VFORK
        } else if flags & 0xff != u64::from(g::SIGCHLD) {
            pt::PTRACE_EVENT_CLONE
        } else {
            pt::PTRACE_EVENT_FORK
        };
        cx.k.ptrace_new_child(cx.t, pid, ev);
    }
    Ok(pid)
}

/// `fork()`.
pub fn fork<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(do_fork(cx, g::SIGCHLD as u64, 0, None)? as usize)
}

/// `vfork()`: the child shares the parent's memory; the parent waits until
/// the child execs or exits.
pub fn vfork<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> Flow {
    clone(cx, [(g::CLONE_VM | g::CLONE_VFORK | g::SIGCHLD) as u64, 0, 0, 0, 0, 0])
}

/// `clone(flags, stack, ptid, ctid, tls)`: processes, `CLONE_VM` children
/// (vfork, posix_spawn) and threads.
pub fn clone<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    match do_clone(cx, a) {
        Ok((pid, true)) => {
            if let Some(c) = cx.k.procs.get_mut(pid) {
                c.vfork_parent = Some(cx.t.pid);
            }
            block(WaitOn::Vfork(pid), None, Ok(pid as usize), false)
        }
        Ok((pid, false)) => Flow::Ret(Ok(pid as usize)),
        Err(e) => Flow::Ret(Err(e)),
    }
}

/// `clone3(args, size)`: not supported (glibc and musl fall back to clone).
pub fn clone3<H: Hal>(_cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Err(Errno::ENOSYS)
}

fn do_clone<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Result<(Pid, bool), Errno> {
    let (flags, stack, ptid, ctid, tls) = (a[0], a[1], a[2], a[3], a[4]);
    let f = flags as u32;
    let exit_signal = (flags & 0xff) as u32;
    if exit_signal as usize > crate::task::signal::NSIG {
        return Err(Errno::EINVAL);
    }
    // Linux's consistency rules.
    if f & g::CLONE_THREAD != 0 && f & g::CLONE_SIGHAND == 0 {
        return Err(Errno::EINVAL);
    }
    if f & g::CLONE_SIGHAND != 0 && f & g::CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if f & g::CLONE_THREAD != 0 && exit_signal != 0 {
        // Linux ignores the exit signal of threads.
    }
    let unsupported = g::CLONE_NEWNS | g::CLONE_NEWUTS | g::CLONE_NEWIPC | g::CLONE_NEWUSER | g::CLONE_NEWPID | g::CLONE_NEWNET | g::CLONE_NEWCGROUP | g::CLONE_PIDFD;
    if f & unsupported != 0 {
        return Err(Errno::EINVAL);
    }
    let tls = if f & g::CLONE_SETTLS != 0 { Some(tls) } else { None };
    let pid = do_fork(cx, flags, stack, tls)?;
    if f & g::CLONE_PARENT_SETTID != 0 {
        cx.write_user(ptid, &pid.to_le_bytes())?;
    }
    let mut fault = false;
    if f & g::CLONE_CHILD_SETTID != 0 {
        if f & g::CLONE_VM != 0 {
            fault = cx.write_user(ctid, &pid.to_le_bytes()).is_err();
        } else if let Some(child) = cx.k.procs.get_mut(pid) {
            if let Some(mm) = child.mm.as_mut() {
                fault = mm.copy_to_user(ctid, &pid.to_le_bytes(), &mut cx.k.frames, cx.hal.phys()).is_err();
            }
        }
    }
    if let Some(child) = cx.k.procs.get_mut(pid) {
        if f & g::CLONE_CHILD_CLEARTID != 0 {
            child.clear_child_tid = ctid;
        }
    }
    if fault {
        // Linux would fault in the child; it dies with SIGSEGV there.
        cx.k.send_signal(cx.hal, pid, g::SIGSEGV);
    }
    Ok((pid, f & g::CLONE_VFORK != 0))
}

/// Before an exec replaces the image: other threads die, and memory and fd
/// table shared with other tasks (vfork, CLONE_FILES) are unshared, so the
/// others keep theirs.
fn unshare_for_exec<H: Hal>(cx: &mut SysCtx<'_, H>) -> Result<(), Errno> {
    let me = cx.t.pid;
    let tgid = cx.t.tgid;
    let others: Vec<Pid> = cx.k.procs.iter().filter(|t| t.tgid == tgid && t.pid != me).map(|t| t.pid).collect();
    for p in others {
        if let Some(mut o) = cx.k.procs.take(p) {
            if !o.is_zombie() {
                cx.k.exit_task(cx.hal, &mut o, ExitStatus::Signal(g::SIGKILL));
            }
            if o.is_leader() {
                // Exec from a non-leader thread: the leader's slot stays a
                // zombie that is never reported (limitation: Linux moves the
                // exec-ing thread to the leader's pid).
                cx.k.procs.put(o);
            }
        }
    }
    if cx.k.procs.mm_shared(cx.t) {
        let space = cx.hal.new_space().map_err(|_| Errno::ENOMEM)?;
        let mut fresh = crate::mm::MemoryMap::with_caches(space, cx.k.fs.caches.clone());
        fresh.charge_tables_to(cx.k.frames.budget())?;
        let old = cx.t.mm.replace(fresh);
        let id = cx.t.mm_id;
        if let Some(o) = cx.k.procs.iter_mut().find(|o| o.mm_id == id && o.pid != me && !o.is_zombie()) {
            o.mm = old;
        } else if let Some(mut m) = old {
            m.clear(&mut cx.k.frames);
        }
        cx.t.mm_id = cx.k.procs.new_share_id();
    }
    unshare_files(cx);
    let sid = cx.t.sighand_id;
    if cx.k.procs.iter().any(|o| o.sighand_id == sid && o.pid != me) {
        cx.t.sighand_id = cx.k.procs.new_share_id();
    }
    Ok(())
}

/// Give the caller its own copy of an fd table it shares (`CLONE_FILES`)
/// with other tasks; the others keep the shared one.
pub(super) fn unshare_files<H: Hal>(cx: &mut SysCtx<'_, H>) {
    let me = cx.t.pid;
    let fid = cx.t.files_id;
    if cx.k.procs.iter().any(|o| o.files_id == fid && o.pid != me && !o.is_zombie()) {
        let copy = cx.t.fds.clone();
        if let Some(o) = cx.k.procs.iter_mut().find(|o| o.files_id == fid && o.pid != me && !o.is_zombie()) {
            o.fds = core::mem::replace(&mut cx.t.fds, copy);
            o.fds_held = true;
        }
        cx.t.files_id = cx.k.procs.new_share_id();
        cx.t.fds_held = true;
    }
}

/// Read a NULL-terminated array of string pointers (argv/envp).
fn read_strings<H: Hal>(cx: &mut SysCtx<'_, H>, mut p: u64, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut v = Vec::new();
    if p == 0 {
        return Ok(v);
    }
    loop {
        let s = cx.read_u64(p)?;
        if s == 0 {
            return Ok(v);
        }
        let bytes = cx.read_cstring(s, MAX_ARG_STRLEN).map_err(|e| if e == Errno::ENAMETOOLONG { Errno::E2BIG } else { e })?;
        *total = total.checked_add(bytes.len() + 1 + 8).ok_or(Errno::E2BIG)?;
        if *total > ARG_MAX {
            return Err(Errno::E2BIG);
        }
        v.push(bytes);
        p = p.checked_add(8).ok_or(Errno::EFAULT)?;
    }
}

fn do_execve<H: Hal>(cx: &mut SysCtx<'_, H>, dirfd: u64, pathp: u64, argvp: u64, envpp: u64, flags: u32) -> Flow {
    let r = (|| {
        if flags & !(g::AT_EMPTY_PATH | g::AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(Errno::EINVAL);
        }
        let path = cx.read_path(pathp)?;
        let loc = if path.is_empty() && flags & g::AT_EMPTY_PATH != 0 {
            let f = cx.t.fds.file(dirfd)?;
            let root = crate::fs::Loc::root(cx.k.fs.root.clone());
            crate::fs::path::walk(&cx.k.fs.root, &root, &f.path, Follow::Yes)?
        } else {
            let follow = if flags & g::AT_SYMLINK_NOFOLLOW != 0 { Follow::No } else { Follow::Yes };
            lookup(cx, dirfd, &path, follow)?
        };
        let mut total = 0usize;
        let argv = read_strings(cx, argvp, &mut total)?;
        let envp = read_strings(cx, envpp, &mut total)?;
        let (loc, argv) = cx.k.resolve_script(cx.hal.phys(), loc, path.as_bytes(), argv)?;
        let prep = cx.k.prepare_exec(cx.hal.phys(), &loc)?;
        Ok((prep, argv, envp, path))
    })();
    let (prep, argv, envp, path) = match r {
        Ok(x) => x,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if let Err(e) = unshare_for_exec(cx) {
        return Flow::Ret(Err(e));
    }
    // A vfork parent resumes now.
    if let Some(pp) = cx.t.vfork_parent.take() {
        cx.k.wake(pp, Some(Ok(cx.t.pid as usize)));
    }
    // Point of no return: the old image is dropped by commit_exec.
    match cx.k.commit_exec(cx.hal, cx.t, prep, &argv, &envp, path.as_bytes()) {
        Ok(()) => Flow::Exec,
        Err(e) => {
            cx.hal.log(&alloc::format!("[{}] execve {path}: loading failed after the point of no return ({}): SIGSEGV", cx.t.pid, e.name()));
            cx.t.group_exit = Some(ExitStatus::Signal(g::SIGSEGV));
            Flow::Exec
        }
    }
}

/// `execve(path, argv, envp)`.
pub fn execve<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_execve(cx, g::AT_FDCWD as u64, a[0], a[1], a[2], 0)
}

/// `execveat(dirfd, path, argv, envp, flags)`.
pub fn execveat<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    do_execve(cx, a[0], a[1], a[2], a[3], a[4] as u32)
}

/// Which children a wait selects.
#[derive(Clone, Copy)]
enum Sel {
    Any,
    Pid(Pid),
    Pgid(Pid),
}

/// A child state change a wait can report.
#[derive(Clone, Copy)]
enum Event {
    Exited(ExitStatus),
    Stopped(u32),
    Continued,
    /// A ptrace stop of a tracee (its whole wait status).
    Traced(u32),
}

/// Find a matching child with a reportable event: (pid, event). `ECHILD`
/// if no child matches at all. Children of every thread of the caller's
/// group count; threads are never children.
fn find_child<H: Hal>(cx: &SysCtx<'_, H>, sel: Sel, exited: bool, stopped: bool, cont: bool) -> Result<Option<(Pid, Event)>, Errno> {
    let me = cx.t.tgid;
    let mut any = false;
    // Tracees count as children of their tracer (threads too); a child
    // traced by another is not reported to its parent until released.
    let tracer_of = |t: &Task<_>| t.ptrace.as_ref().map(|p| p.tracer_tgid);
    for t in cx.k.procs.iter().filter(|t| (t.ppid == me && t.is_leader()) || tracer_of(t) == Some(me)) {
        let m = match sel {
            Sel::Any => true,
            Sel::Pid(p) => t.pid == p,
            Sel::Pgid(g) => t.pgid == g,
        };
        if !m {
            continue;
        }
        any = true;
        let traced = tracer_of(t);
        if traced.is_some_and(|tr| tr != me) {
            continue;
        }
        if let TaskState::Zombie(st) = t.state {
            // A leader that exited before its threads is reported with the last one.
            let live = t.is_leader() && cx.k.procs.iter().any(|o| o.tgid == t.pid && o.pid != t.pid && !o.is_zombie());
            if (exited || traced.is_some()) && !live {
                return Ok(Some((t.pid, Event::Exited(st))));
            }
            continue;
        }
        if let Some(status) = t.ptrace.as_ref().and_then(|p| p.report) {
            // Ptrace stops are reported without WUNTRACED.
            return Ok(Some((t.pid, Event::Traced(status))));
        }
        if traced.is_some() && !(t.ppid == me && t.is_leader()) {
            continue;
        }
        if stopped {
            if let Some(sig) = t.stop_event {
                return Ok(Some((t.pid, Event::Stopped(sig))));
            }
        }
        if cont && t.cont_event {
            return Ok(Some((t.pid, Event::Continued)));
        }
    }
    if any {
        Ok(None)
    } else {
        Err(Errno::ECHILD)
    }
}

/// A `struct rusage` with user and system time.
pub fn rusage_bytes(utime_ns: u64, stime_ns: u64) -> [u8; 144] {
    let mut b = [0u8; 144];
    b[0..16].copy_from_slice(&crate::time::timeval_bytes(utime_ns));
    b[16..32].copy_from_slice(&crate::time::timeval_bytes(stime_ns));
    b
}

/// Consume the event (reap a zombie, clear a stop/continue report).
fn consume<H: Hal>(cx: &mut SysCtx<'_, H>, child: Pid, ev: Event) -> (u64, u64) {
    match ev {
        Event::Exited(_) if cx.k.procs.get(child).is_some_and(|c| c.ptrace.as_ref().is_some_and(|p| p.tracer_tgid != c.ppid || !c.is_leader())) => {
            // The tracer collected a tracee it is not the parent of: the
            // link ends and the real parent (or nobody, for a thread) gets it.
            let ppid = cx.k.procs.get(child).map_or(0, |c| c.ppid);
            cx.k.ptrace_unlink(Some(&mut *cx.t), child, 0);
            cx.k.ptrace_zombie_released(child, ppid);
            (0, 0)
        }
        Event::Exited(_) => match cx.k.procs.take(child) {
            Some(c) => {
                if let Some(p) = c.ptrace.as_ref() {
                    let tracer = p.tracer;
                    if let Some(tr) = cx.k.procs.get_mut(tracer) {
                        tr.tracees.retain(|&x| x != child);
                    }
                    cx.t.tracees.retain(|&x| x != child);
                }
                let t = (c.utime_ns + c.child_times.0, c.stime_ns + c.child_times.1);
                cx.t.child_times.0 += t.0;
                cx.t.child_times.1 += t.1;
                t
            }
            None => (0, 0),
        },
        Event::Stopped(_) => {
            if let Some(c) = cx.k.procs.get_mut(child) {
                c.stop_event = None;
            }
            (0, 0)
        }
        Event::Continued => {
            if let Some(c) = cx.k.procs.get_mut(child) {
                c.cont_event = false;
            }
            (0, 0)
        }
        Event::Traced(_) => {
            if let Some(p) = cx.k.procs.get_mut(child).and_then(|c| c.ptrace.as_mut()) {
                p.report = None;
            }
            (0, 0)
        }
    }
}

fn child_times<H: Hal>(cx: &SysCtx<'_, H>, child: Pid) -> (u64, u64) {
    cx.k.procs.get(child).map_or((0, 0), |c| (c.utime_ns + c.child_times.0, c.stime_ns + c.child_times.1))
}

/// `wait4(pid, status, options, rusage)`.
pub fn wait4<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (pid, status, options, rusage) = (a[0] as i32, a[1], a[2] as u32, a[3]);
    let known = g::WNOHANG | g::WUNTRACED | g::WCONTINUED | g::__WNOTHREAD | g::__WCLONE | g::__WALL;
    if options & !known != 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    if pid == i32::MIN {
        return Flow::Ret(Err(Errno::ESRCH));
    }
    let sel = match pid {
        -1 => Sel::Any,
        0 => Sel::Pgid(cx.t.pgid),
        p if p < 0 => Sel::Pgid(p.unsigned_abs()),
        p => Sel::Pid(p as u32),
    };
    match find_child(cx, sel, true, options & g::WUNTRACED != 0, options & g::WCONTINUED != 0) {
        Err(e) => Flow::Ret(Err(e)),
        Ok(Some((child, ev))) => {
            let word = match ev {
                Event::Exited(st) => st.wait_status(),
                Event::Stopped(sig) => (sig << 8) | 0x7f,
                Event::Continued => 0xffff,
                Event::Traced(status) => status,
            };
            if status != 0 {
                if let Err(e) = cx.write_user(status, &word.to_le_bytes()) {
                    return Flow::Ret(Err(e));
                }
            }
            let times = child_times(cx, child);
            if rusage != 0 {
                if let Err(e) = cx.write_user(rusage, &rusage_bytes(times.0, times.1)) {
                    return Flow::Ret(Err(e));
                }
            }
            consume(cx, child, ev);
            Flow::Ret(Ok(child as usize))
        }
        Ok(None) if options & g::WNOHANG != 0 => Flow::Ret(Ok(0)),
        Ok(None) => block(WaitOn::Child, None, Ok(0), true),
    }
}

/// `waitid(idtype, id, infop, options, rusage)`.
pub fn waitid<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (idtype, id, infop, options, rusage) = (a[0] as u32, a[1] as u32, a[2], a[3] as u32, a[4]);
    let known = g::WNOHANG | g::WEXITED | g::WSTOPPED | g::WCONTINUED | g::WNOWAIT | g::__WNOTHREAD | g::__WCLONE | g::__WALL;
    if options & !known != 0 || options & (g::WEXITED | g::WSTOPPED | g::WCONTINUED) == 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let sel = match idtype {
        g::P_ALL => Sel::Any,
        g::P_PID => Sel::Pid(id),
        g::P_PGID => Sel::Pgid(if id == 0 { cx.t.pgid } else { id }),
        g::P_PIDFD => match super::pidfd::pid_of(cx, u64::from(id)) {
            Ok(p) => Sel::Pid(p),
            Err(e) => return Flow::Ret(Err(e)),
        },
        _ => return Flow::Ret(Err(Errno::EINVAL)),
    };
    let found = find_child(cx, sel, options & g::WEXITED != 0, options & g::WSTOPPED != 0, options & g::WCONTINUED != 0);
    match found {
        Err(e) => Flow::Ret(Err(e)),
        Ok(Some((child, ev))) => {
            if infop != 0 {
                let mut si = vec![0u8; 128];
                si[0..4].copy_from_slice(&(g::SIGCHLD as i32).to_le_bytes());
                let (code, status) = match ev {
                    Event::Exited(ExitStatus::Code(c)) => (g::CLD_EXITED as i32, c as i32),
                    Event::Exited(ExitStatus::Signal(s)) if s & 0x80 != 0 => (g::CLD_DUMPED as i32, (s & 0x7f) as i32),
                    Event::Exited(ExitStatus::Signal(s)) => (g::CLD_KILLED as i32, s as i32),
                    Event::Stopped(sig) => (g::CLD_STOPPED as i32, sig as i32),
                    Event::Continued => (g::CLD_CONTINUED as i32, g::SIGCONT as i32),
                    Event::Traced(status) => (g::CLD_TRAPPED as i32, ((status >> 8) & 0xff) as i32),
                };
                si[8..12].copy_from_slice(&code.to_le_bytes());
                si[16..20].copy_from_slice(&(child as i32).to_le_bytes());
                let uid = cx.k.procs.get(child).map_or(0, |c| c.cred.uid);
                si[20..24].copy_from_slice(&uid.to_le_bytes());
                si[24..28].copy_from_slice(&status.to_le_bytes());
                if let Err(e) = cx.write_user(infop, &si) {
                    return Flow::Ret(Err(e));
                }
            }
            let times = child_times(cx, child);
            if rusage != 0 {
                if let Err(e) = cx.write_user(rusage, &rusage_bytes(times.0, times.1)) {
                    return Flow::Ret(Err(e));
                }
            }
            if options & g::WNOWAIT == 0 {
                consume(cx, child, ev);
            }
            Flow::Ret(Ok(0))
        }
        Ok(None) if options & g::WNOHANG != 0 => {
            if infop != 0 {
                if let Err(e) = cx.write_user(infop, &[0u8; 128]) {
                    return Flow::Ret(Err(e));
                }
            }
            Flow::Ret(Ok(0))
        }
        Ok(None) => block(WaitOn::Child, None, Ok(0), true),
    }
}

/// `exit(code)`: ends the calling thread; the process ends with its last thread.
pub fn exit<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let st = ExitStatus::Code(a[0] as u8);
    if cx.t.is_leader() {
        // The leader's status is the process's unless another thread calls exit_group.
        return Flow::Exit(st);
    }
    Flow::Exit(st)
}

/// `exit_group(code)`: ends every thread of the process.
pub fn exit_group<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let st = ExitStatus::Code(a[0] as u8);
    let tgid = cx.t.tgid;
    cx.k.procs.end_group(tgid, cx.t.pid, st);
    // A leader that already exited takes the group's status.
    if !cx.t.is_leader() {
        if let Some(l) = cx.k.procs.get_mut(tgid) {
            if l.is_zombie() {
                l.state = TaskState::Zombie(st);
            }
        }
    }
    Flow::Exit(st)
}
