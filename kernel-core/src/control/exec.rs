//! `exec` on the control channel: a new process in the running guest
//! (what `rustuml-oci exec`, and so `podman exec`, asks), its stdin,
//! stdout and stderr pipes held by the kernel and carried over the
//! channel by `exec-io` requests, its exit status kept for the caller.
//!
//! The process has no parent in the guest (as a process `runc exec`
//! starts has none in the container's pid namespace): it stays a zombie
//! until `exec-io` reports its status, then it is gone. Its orphans go to
//! init as any orphan does.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use hal::{AddressSpace, Hal, UserContext};
use linux_raw_sys::general as g;

use crate::fs::path::{self, Follow};
use crate::fs::pipe::Pipe;
use crate::fs::{FdTable, FileRef, Kind, Loc, OpenFile};
use crate::kernel::Kernel;
use crate::mm::MemoryMap;
use crate::task::{ExitStatus, Pid, Task, TaskState};
use crate::wait::{FileOps, IoCtx};
use crate::Errno;

/// At most this many exec'd processes are carried at once.
const MAX_SESSIONS: usize = 64;
/// What one `exec-io` answer carries of each output stream.
const MAX_CHUNK: usize = 64 * 1024;

/// The kernel's ends of one exec'd process's pipes.
pub struct Session {
    /// Write end of its stdin (None once the caller closed it).
    stdin: Option<(Rc<Pipe>, FileRef)>,
    stdout: (Rc<Pipe>, FileRef),
    stderr: (Rc<Pipe>, FileRef),
}

/// The sessions, by pid.
#[derive(Default)]
pub struct Sessions(pub BTreeMap<Pid, Session>);

impl core::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Sessions {
    /// Does any session exist (the caller may still feed a stdin, so a
    /// guest blocked on it is not deadlocked)?
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// `%XX` escapes (the request is one line of space-separated words).
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| core::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| String::from("bad % escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| String::from("not UTF-8"))
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(String::from("odd hex input"));
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| String::from("bad hex input"))).collect()
}

/// The shell's view of an exit status.
fn shell_code(st: ExitStatus) -> i32 {
    match st {
        ExitStatus::Code(c) => c as i32,
        ExitStatus::Signal(s) => 128 + (s & 0x7f) as i32,
    }
}

impl<S: AddressSpace> Kernel<S> {
    /// `exec [cwd=DIR] [uid=N] [gid=N] [env=K=V]... arg=PROG [arg=A]...`
    /// (each value `%`-escaped): start PROG; the answer is its pid.
    pub(super) fn control_exec<H: Hal<Space = S>>(&mut self, hal: &mut H, arg: &str) -> Result<String, String> {
        const USAGE: &str = "exec needs [cwd=DIR] [uid=N] [gid=N] [env=K=V]... arg=PROG [arg=ARG]... (values %-escaped)";
        let (mut cwd, mut uid, mut gid) = (String::from("/"), 0u32, 0u32);
        let (mut env, mut argv) = (Vec::new(), Vec::new());
        for w in arg.split_whitespace() {
            let (k, v) = w.split_once('=').ok_or(USAGE)?;
            let v = unescape(v)?;
            let num = |v: &str| v.parse::<u32>().map_err(|_| String::from(USAGE));
            match k {
                "cwd" => cwd = v,
                "uid" => uid = num(&v)?,
                "gid" => gid = num(&v)?,
                "env" => env.push(v),
                "arg" => argv.push(v),
                _ => return Err(String::from(USAGE)),
            }
        }
        if argv.is_empty() || argv.iter().chain(env.iter()).chain([&cwd]).any(|s| s.contains('\0')) {
            return Err(String::from(USAGE));
        }
        if self.control.execs.0.len() >= MAX_SESSIONS {
            return Err(format!("{MAX_SESSIONS} exec'd processes are running already"));
        }
        let root = Loc::root(self.fs.root.clone());
        let cwd_loc = path::walk(&self.fs.root, &root, &cwd, Follow::Yes)
            .ok()
            .filter(|l| l.inode().is_dir())
            .ok_or_else(|| format!("cwd {cwd}: no such directory"))?;
        // A bare name is looked up on the given PATH, as a shell would.
        let prog = if argv[0].contains('/') {
            argv[0].clone()
        } else {
            let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/{}", d.trim_end_matches('/'), argv[0]))
                .find(|p| path::walk(&self.fs.root, &cwd_loc, p, Follow::Yes).is_ok_and(|l| !l.inode().is_dir()))
                .ok_or_else(|| format!("exec: \"{}\": executable file not found in $PATH", argv[0]))?
        };
        let loc = path::walk(&self.fs.root, &cwd_loc, &prog, Follow::Yes).map_err(|e| format!("{prog}: {}", e.name()))?;

        // The pipes: the guest gets one end of each, the kernel keeps the other.
        let now = hal.realtime_ns();
        let mut ends = Vec::new();
        for _ in 0..3 {
            let pipe = Pipe::charged(false, self.frames.budget()).map_err(|e| String::from(e.name()))?;
            let inode = self.fs.anon_inode(Kind::Special(pipe.clone()), 0o600, now).map_err(|e| String::from(e.name()))?;
            ends.push((pipe, inode));
        }
        let mut fds = FdTable::new();
        let mut kept = Vec::new();
        for (fd, (pipe, inode)) in ends.into_iter().enumerate() {
            let (guest, host) = if fd == 0 { (g::O_RDONLY, g::O_WRONLY) } else { (g::O_WRONLY, g::O_RDONLY) };
            fds.set(fd, OpenFile::new(inode.clone(), guest, String::from("pipe:")), false);
            kept.push((pipe, OpenFile::new(inode, host | g::O_NONBLOCK, String::from("pipe:"))));
        }

        let space = hal.new_space().map_err(|_| String::from("ENOMEM"))?;
        let mut mm = MemoryMap::with_caches(space, self.fs.caches.clone());
        // Nothing mapped yet: charging nothing cannot fail.
        let _ = mm.charge_tables_to(self.frames.budget());
        let pid = self.procs.alloc_pid();
        let mut task = Task::new(pid, 0, UserContext::default(), Some(mm), fds, cwd_loc);
        task.cred = crate::task::Cred { uid, euid: uid, suid: uid, fsuid: uid, gid, egid: gid, sgid: gid, fsgid: gid, groups: Vec::new() };
        // A session and process group of its own, as `setsid` gives.
        task.pgid = pid;
        task.sid = pid;
        task.mm_id = self.procs.new_share_id();
        task.files_id = self.procs.new_share_id();
        task.sighand_id = self.procs.new_share_id();
        let argv_b: Vec<Vec<u8>> = argv.iter().map(|s| s.as_bytes().to_vec()).collect();
        let envp: Vec<Vec<u8>> = env.iter().map(|s| s.as_bytes().to_vec()).collect();
        let fail = |e: Errno| format!("{prog}: {}", e.name());
        let (loc, argv_b) = self.resolve_script(hal.phys(), loc, prog.as_bytes(), argv_b).map_err(fail)?;
        let prepared = self.prepare_exec(hal.phys(), &loc).map_err(fail)?;
        self.commit_exec(hal, &mut task, prepared, &argv_b, &envp, prog.as_bytes()).map_err(fail)?;
        self.procs.spawn(Box::new(task));
        let mut kept = kept.into_iter();
        let (Some(i), Some(o), Some(e)) = (kept.next(), kept.next(), kept.next()) else { return Err(String::from("EIO")) };
        self.control.execs.0.insert(pid, Session { stdin: Some(i), stdout: o, stderr: e });
        Ok(format!("{pid}\n"))
    }

    /// `exec-io PID [HEX|-] [eof]`: give HEX bytes to its stdin (`eof`:
    /// then close it), take what its stdout and stderr hold. The answer:
    /// `in N` (bytes taken), `out HEX`, `err HEX`, `status running` or
    /// `status exited CODE` (code as a shell reports it) once it exited and
    /// both outputs are at their end; the session is gone then.
    pub(super) fn control_exec_io<H: Hal<Space = S>>(&mut self, hal: &mut H, arg: &str) -> Result<String, String> {
        const USAGE: &str = "exec-io needs PID [HEX|-] [eof]";
        let mut w = arg.split_whitespace();
        let pid: Pid = w.next().and_then(|p| p.parse().ok()).ok_or(USAGE)?;
        let input = match w.next() {
            None | Some("-") => Vec::new(),
            Some(h) => unhex(h)?,
        };
        let eof = match w.next() {
            None => false,
            Some("eof") => true,
            Some(_) => return Err(String::from(USAGE)),
        };
        let (now, realtime) = (hal.now_ns(), hal.realtime_ns());
        let sess = self.control.execs.0.get_mut(&pid).ok_or_else(|| format!("no exec'd process {pid}"))?;
        let mut io = IoCtx { now, realtime, console: hal.console(), pid: 0, pgid: 0, sid: 0, sig_ignored: 0, signals: Vec::new(), nonblock: true };
        let mut taken = 0;
        if !input.is_empty() {
            match &sess.stdin {
                Some((p, _)) => match p.write(&mut io, &input) {
                    Ok(n) => taken = n,
                    Err(Errno::EAGAIN) => {}
                    // Nobody reads its stdin any more: the bytes go nowhere.
                    Err(_) => {
                        taken = input.len();
                        sess.stdin = None;
                    }
                },
                None => taken = input.len(),
            }
        }
        if eof && taken == input.len() {
            sess.stdin = None;
        }
        let mut drain = |p: &Rc<Pipe>| -> (Vec<u8>, bool) {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while out.len() < MAX_CHUNK {
                match p.read(&mut io, &mut buf) {
                    Ok(0) => return (out, true),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            (out, false)
        };
        let (out, out_end) = drain(&sess.stdout.0);
        let (err, err_end) = drain(&sess.stderr.0);
        let status = match self.procs.get(pid).map(|t| t.state) {
            Some(TaskState::Zombie(st)) => Some(shell_code(st)),
            Some(_) => None,
            // Gone without a word (cannot happen: it has no parent to reap it).
            None => Some(255),
        };
        let mut answer = format!("in {taken}\nout {}\nerr {}\n", hex(&out), hex(&err));
        match status {
            Some(code) if out_end && err_end => {
                self.control.execs.0.remove(&pid);
                if self.procs.get(pid).is_some_and(|t| t.is_zombie()) {
                    self.procs.take(pid);
                }
                let _ = writeln!(answer, "status exited {code}");
            }
            _ => answer.push_str("status running\n"),
        }
        Ok(answer)
    }
}
