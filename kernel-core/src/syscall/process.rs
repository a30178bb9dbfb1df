//! Process calls: fork/vfork/clone, execve, wait4/waitid, exit.

use alloc::vec;
use alloc::vec::Vec;

use hal::Hal;
use linux_raw_sys::general as g;

use super::file::lookup;
use super::{Flow, SysCtx};
use crate::fs::path::Follow;
use crate::kernel::block;
use crate::task::{ExitStatus, Pid, SignalState, Task, TaskState, WaitOn};
use crate::{Errno, SysResult};

/// Linux's `MAX_ARG_STRLEN`.
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Total argv + envp bytes accepted (a quarter of the default 8 MiB stack, as Linux).
const ARG_MAX: usize = 2 << 20;

/// Create a child process: a copy of the caller (copy-on-write memory,
/// shared open file descriptions). Returns its pid.
fn do_fork<H: Hal>(cx: &mut SysCtx<'_, H>, stack: u64, tls: Option<u64>) -> Result<Pid, Errno> {
    if cx.k.tasks.len() >= cx.t.rlimits[g::RLIMIT_NPROC as usize].0.min(1 << 22) as usize {
        return Err(Errno::EAGAIN);
    }
    let space = cx.hal.new_space().map_err(|_| Errno::EAGAIN)?;
    let mm = cx.t.mm.as_mut().ok_or(Errno::ENOMEM)?;
    let child_mm = mm.fork(space, &mut cx.k.frames)?;
    let pid = cx.k.alloc_pid();
    let mut ctx = cx.t.ctx.clone();
    ctx.regs.rax = 0;
    if stack != 0 {
        ctx.regs.rsp = stack;
    }
    if let Some(t) = tls {
        ctx.regs.fs_base = t;
    }
    let signals = SignalState { pending: 0, ..cx.t.signals.clone() };
    let child = Task {
        pid,
        ppid: cx.t.pid,
        pgid: cx.t.pgid,
        sid: cx.t.sid,
        ctx,
        mm: Some(child_mm),
        fds: cx.t.fds.clone(),
        cwd: cx.t.cwd.clone(),
        umask: cx.t.umask,
        state: TaskState::Runnable,
        clear_child_tid: 0,
        robust_list: (0, 0),
        signals,
        rlimits: cx.t.rlimits,
        exe: cx.t.exe.clone(),
        restart_deadline: None,
        kill_pending: None,
        slice_end: 0,
        redo_syscall: false,
    };
    cx.k.tasks.insert(pid, child);
    cx.k.runq.push(pid);
    Ok(pid)
}

/// `fork()`.
pub fn fork<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(do_fork(cx, 0, None)? as usize)
}

/// `vfork()`: behaves as fork (the parent is not suspended; memory is
/// copy-on-write, which is a correct if slower implementation).
pub fn vfork<H: Hal>(cx: &mut SysCtx<'_, H>, _a: [u64; 6]) -> SysResult {
    Ok(do_fork(cx, 0, None)? as usize)
}

/// `clone(flags, stack, ptid, ctid, tls)` for new processes. Threads
/// (`CLONE_VM` without `CLONE_VFORK`, `CLONE_THREAD`) are not supported yet:
/// ENOSYS. `CLONE_VM|CLONE_VFORK` (posix_spawn) is run as a fork.
pub fn clone<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> SysResult {
    let (flags, stack, ptid, ctid, tls) = (a[0], a[1], a[2], a[3], a[4]);
    let f = flags as u32;
    let exit_signal = (flags & 0xff) as u32;
    if exit_signal as usize > crate::task::signal::NSIG {
        return Err(Errno::EINVAL);
    }
    if f & g::CLONE_THREAD != 0 || (f & g::CLONE_VM != 0 && f & g::CLONE_VFORK == 0) || f & g::CLONE_SIGHAND != 0 && f & g::CLONE_VM == 0 {
        if f & g::CLONE_SIGHAND != 0 && f & g::CLONE_VM == 0 {
            return Err(Errno::EINVAL);
        }
        cx.log_once("clone-threads", "kernel: clone of threads (CLONE_VM/CLONE_THREAD) is not supported yet (ENOSYS)");
        return Err(Errno::ENOSYS);
    }
    let unsupported = g::CLONE_NEWNS | g::CLONE_NEWUTS | g::CLONE_NEWIPC | g::CLONE_NEWUSER | g::CLONE_NEWPID | g::CLONE_NEWNET | g::CLONE_NEWCGROUP | g::CLONE_PIDFD;
    if f & unsupported != 0 {
        return Err(Errno::EINVAL);
    }
    let tls = if f & g::CLONE_SETTLS != 0 { Some(tls) } else { None };
    let pid = do_fork(cx, stack, tls)?;
    if f & g::CLONE_PARENT_SETTID != 0 {
        cx.write_user(ptid, &pid.to_le_bytes())?;
    }
    if let Some(mut child) = cx.k.tasks.remove(&pid) {
        if f & g::CLONE_CHILD_CLEARTID != 0 {
            child.clear_child_tid = ctid;
        }
        let r = if f & g::CLONE_CHILD_SETTID != 0 {
            match child.mm.as_mut() {
                Some(mm) => mm.copy_to_user(ctid, &pid.to_le_bytes(), &mut cx.k.frames, cx.hal.phys()),
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        if f & g::CLONE_PARENT != 0 {
            child.ppid = cx.t.ppid;
        }
        cx.k.tasks.insert(pid, child);
        if r.is_err() {
            // Linux would fault in the child; it dies with SIGSEGV there.
            cx.k.send_signal(cx.hal, pid, g::SIGSEGV);
        }
    }
    Ok(pid as usize)
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
        let (loc, argv) = cx.k.resolve_script(loc, path.as_bytes(), argv)?;
        let prep = cx.k.prepare_exec(&loc)?;
        Ok((prep, argv, envp, path))
    })();
    let (prep, argv, envp, path) = match r {
        Ok(x) => x,
        Err(e) => return Flow::Ret(Err(e)),
    };
    // Point of no return: the old image is dropped by commit_exec.
    match cx.k.commit_exec(cx.hal, cx.t, prep, &argv, &envp, path.as_bytes()) {
        Ok(()) => Flow::Exec,
        Err(e) => {
            cx.hal.log(&alloc::format!("[{}] execve {path}: loading failed after the point of no return ({}): SIGSEGV", cx.t.pid, e.name()));
            cx.t.kill_pending = Some(g::SIGSEGV);
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

/// Find a matching child: (pid, exit status if zombie). `ECHILD` if none.
fn find_child<H: Hal>(cx: &SysCtx<'_, H>, sel: Sel) -> Result<Option<(Pid, ExitStatus)>, Errno> {
    let me = cx.t.pid;
    let mut any = false;
    for t in cx.k.tasks.values().filter(|t| t.ppid == me) {
        let m = match sel {
            Sel::Any => true,
            Sel::Pid(p) => t.pid == p,
            Sel::Pgid(g) => t.pgid == g,
        };
        if !m {
            continue;
        }
        any = true;
        if let TaskState::Zombie(st) = t.state {
            return Ok(Some((t.pid, st)));
        }
    }
    if any {
        Ok(None)
    } else {
        Err(Errno::ECHILD)
    }
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
    match find_child(cx, sel) {
        Err(e) => Flow::Ret(Err(e)),
        Ok(Some((child, st))) => {
            if status != 0 {
                if let Err(e) = cx.write_user(status, &st.wait_status().to_le_bytes()) {
                    return Flow::Ret(Err(e));
                }
            }
            if rusage != 0 {
                if let Err(e) = cx.write_user(rusage, &[0u8; 144]) {
                    return Flow::Ret(Err(e));
                }
            }
            cx.k.tasks.remove(&child);
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
        _ => return Flow::Ret(Err(Errno::EINVAL)),
    };
    if options & g::WEXITED == 0 {
        // Only stop/continue events requested: we have none of those yet.
        return match find_child(cx, sel) {
            Err(e) => Flow::Ret(Err(e)),
            Ok(_) if options & g::WNOHANG != 0 => Flow::Ret(Ok(0)),
            Ok(_) => block(WaitOn::Child, None, Ok(0), true),
        };
    }
    match find_child(cx, sel) {
        Err(e) => Flow::Ret(Err(e)),
        Ok(Some((child, st))) => {
            if infop != 0 {
                let mut si = vec![0u8; 128];
                si[0..4].copy_from_slice(&(g::SIGCHLD as i32).to_le_bytes());
                let (code, status) = match st {
                    ExitStatus::Code(c) => (1i32, c as i32),   // CLD_EXITED
                    ExitStatus::Signal(s) => (2i32, s as i32), // CLD_KILLED
                };
                si[8..12].copy_from_slice(&code.to_le_bytes());
                si[16..20].copy_from_slice(&(child as i32).to_le_bytes());
                si[24..28].copy_from_slice(&status.to_le_bytes());
                if let Err(e) = cx.write_user(infop, &si) {
                    return Flow::Ret(Err(e));
                }
            }
            if rusage != 0 {
                if let Err(e) = cx.write_user(rusage, &[0u8; 144]) {
                    return Flow::Ret(Err(e));
                }
            }
            if options & g::WNOWAIT == 0 {
                cx.k.tasks.remove(&child);
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

/// `exit(code)`: with one thread per process, the same as `exit_group`.
pub fn exit<H: Hal>(_cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    Flow::Exit(ExitStatus::Code(a[0] as u8))
}

/// `exit_group(code)`.
pub fn exit_group<H: Hal>(_cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    Flow::Exit(ExitStatus::Code(a[0] as u8))
}
