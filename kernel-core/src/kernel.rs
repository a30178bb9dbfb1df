//! The kernel's main loop and boot entry point.
//!
//! API CONTRACT (the backends' binaries call exactly this):
//!
//! ```ignore
//! pub struct BootConfig {
//!     pub init: String,            // guest path of init, e.g. "/tests/hello"
//!     pub args: Vec<String>,       // init's argv, argv[0] included
//!     pub env: Vec<String>,        // init's environment, "K=V"
//!     pub initramfs: Vec<u8>,      // the root filesystem as a cpio "newc" archive
//!     pub uname_release: String,   // what uname(2) reports as release
//!     pub hostname: String,
//!     pub trace_syscalls: bool,    // strace-style line per call via Hal::log
//! }
//! pub enum BootError { BadInitramfs(String), InitNotFound(String), InitNotExecutable(String, Errno), OutOfMemory }
//! impl core::fmt::Display for BootError { /* one line, for the user */ }
//! /// Runs init until it exits; returns its status as a shell's `$?` sees it
//! /// (exit code, or 128 + signal number). All guest address spaces are dropped
//! /// (and so all host processes of the backend are gone) before it returns.
//! pub fn boot<H: Hal>(hal: &mut H, config: BootConfig) -> Result<i32, BootError>;
//! ```
//!
//! The loop: pick a runnable task (the current one keeps the CPU until its
//! timeslice ends), `Hal::run` it, handle the trap. With nothing runnable it
//! arms the timer for the earliest sleeper and waits for an interrupt; with
//! nothing that could ever wake anyone it reports a deadlock.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use hal::{Access, AddressSpace, ConsoleRead, CpuFaultKind, Hal, Interrupts, PhysMem, Trap, UserContext};
use linux_raw_sys::general as g;

use crate::exec::{self, ExecArgs};
use crate::fs::cpio;
use crate::fs::path::{self, Follow};
use crate::fs::{Device, FdTable, Fs, InodeRef, Kind, Loc, OpenFile};
use crate::mm::{FaultError, Frames, MappedFile, MemoryMap};
use crate::syscall::{self, Flow};
use crate::task::sched::TIMESLICE_NS;
use crate::task::signal::{default_action, sigbit, DefaultAction, SIG_IGN, UNBLOCKABLE};
use crate::task::{default_rlimits, Blocked, ExitStatus, Pid, RunQueue, SignalState, Task, TaskState, WaitOn};
use crate::{Errno, SysResult};

/// What the backend's binary hands to [`boot`].
#[derive(Clone, Debug, Default)]
pub struct BootConfig {
    /// Guest path of init, e.g. `/tests/hello`.
    pub init: String,
    /// Init's argv, `argv[0]` included.
    pub args: Vec<String>,
    /// Init's environment, `K=V`.
    pub env: Vec<String>,
    /// The root filesystem as a cpio "newc" archive.
    pub initramfs: Vec<u8>,
    /// What `uname(2)` reports as release.
    pub uname_release: String,
    /// The host name.
    pub hostname: String,
    /// Log an strace-style line per system call via `Hal::log`.
    pub trace_syscalls: bool,
}

/// Why the kernel could not start init.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The initramfs is not a valid newc archive.
    BadInitramfs(String),
    /// Init's path does not exist.
    InitNotFound(String),
    /// Init exists but cannot be executed (not a file, no x bit, not ELF).
    InitNotExecutable(String, Errno),
    /// Not enough guest memory (or host resources) to start init.
    OutOfMemory,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::BadInitramfs(why) => write!(f, "bad initramfs: {why}"),
            BootError::InitNotFound(p) => write!(f, "init {p} not found in the root file system"),
            BootError::InitNotExecutable(p, e) => write!(f, "cannot execute init {p}: {}", e.name()),
            BootError::OutOfMemory => write!(f, "out of memory while starting init"),
        }
    }
}

/// Kernel-wide state (everything but the HAL). The running task is taken out
/// of `tasks` while its trap is handled.
pub struct Kernel<S: AddressSpace> {
    /// The frame allocator.
    pub frames: Frames,
    /// Every task, zombies included (minus the one being handled).
    pub tasks: BTreeMap<Pid, Task<S>>,
    /// Runnable tasks waiting for the CPU.
    pub runq: RunQueue,
    /// The file system.
    pub fs: Fs,
    /// `uname` release.
    pub release: String,
    /// `uname` nodename.
    pub hostname: String,
    /// Trace every call.
    pub trace: bool,
    /// Calls that returned ENOSYS because they are not implemented: nr -> count.
    pub unknown: BTreeMap<u64, u64>,
    /// Things logged once already (keys).
    pub logged_once: Vec<&'static str>,
    /// Console input read from the HAL but not yet consumed (so poll can peek).
    pub console_in: VecDeque<u8>,
    /// The HAL reported end of console input.
    pub console_eof: bool,
    /// The console's termios (TCSETS stores, TCGETS returns).
    pub termios: [u8; 36],
    /// Tasks blocked on pipes: the pipes and their generation when it blocked.
    pub pipe_waits: BTreeMap<Pid, Vec<(InodeRef, u64)>>,
    next_pid: Pid,
    /// The timer deadline we asked the HAL for.
    armed: Option<u64>,
    /// The task that keeps the CPU while its slice lasts.
    current: Option<Pid>,
}

/// The latest monotonic deadline a timer is ever armed for (~146 years).
const MAX_DEADLINE: u64 = 1 << 62;

/// Console input buffered in the kernel at most.
const CONSOLE_BUF_MAX: usize = 1 << 20;

/// The shell status of a deadlocked guest (as if init was killed by SIGKILL).
pub const DEADLOCK_STATUS: i32 = 128 + 9;

/// Runs init until it exits; returns its status as a shell's `$?` sees it.
/// All guest address spaces are dropped before it returns.
pub fn boot<H: Hal>(hal: &mut H, config: BootConfig) -> Result<i32, BootError> {
    let mut fs = Fs::new();
    cpio::unpack(&mut fs, &config.initramfs).map_err(|e| BootError::BadInitramfs(e.0))?;
    fs.mount_devfs().map_err(|e| BootError::BadInitramfs(format!("cannot mount /dev: {}", e.name())))?;
    let mut k = Kernel {
        frames: Frames::new(hal.phys().size()),
        tasks: BTreeMap::new(),
        runq: RunQueue::default(),
        fs,
        release: config.uname_release.clone(),
        hostname: config.hostname.clone(),
        trace: config.trace_syscalls,
        unknown: BTreeMap::new(),
        logged_once: Vec::new(),
        console_in: VecDeque::new(),
        console_eof: false,
        termios: crate::syscall::default_termios(),
        pipe_waits: BTreeMap::new(),
        next_pid: 2,
        armed: None,
        current: None,
    };
    let init = k.start_init(hal, &config)?;
    k.runq.push(init.pid);
    k.tasks.insert(init.pid, init);
    let status = k.run_loop(hal);
    k.shutdown(hal);
    Ok(status)
}

impl<S: AddressSpace> Kernel<S> {
    fn start_init<H: Hal<Space = S>>(&mut self, hal: &mut H, config: &BootConfig) -> Result<Task<S>, BootError> {
        let root = Loc::root(self.fs.root.clone());
        let p = config.init.as_str();
        let loc = path::walk(&self.fs.root, &root, p, Follow::Yes).map_err(|e| match e {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG => BootError::InitNotFound(config.init.clone()),
            e => BootError::InitNotExecutable(config.init.clone(), e),
        })?;
        let space = hal.new_space().map_err(|_| BootError::OutOfMemory)?;
        let mut fds = FdTable::new();
        let console = self.fs.new_inode(Kind::Device(Device::Console), 0o600, 0);
        let console_err = self.fs.new_inode(Kind::Device(Device::ConsoleErr), 0o600, 0);
        let out = OpenFile::new(console, g::O_RDWR, String::from("/dev/console"));
        fds.set(0, out.clone(), false);
        fds.set(1, out, false);
        fds.set(2, OpenFile::new(console_err, g::O_RDWR, String::from("/dev/console")), false);
        let mut task = Task {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            ctx: UserContext::default(),
            mm: Some(MemoryMap::new(space)),
            fds,
            cwd: root,
            umask: 0o022,
            state: TaskState::Runnable,
            clear_child_tid: 0,
            robust_list: (0, 0),
            signals: SignalState::default(),
            rlimits: default_rlimits(),
            exe: String::new(),
            restart_deadline: None,
            kill_pending: None,
            slice_end: 0,
            redo_syscall: false,
        };
        let argv: Vec<Vec<u8>> = config.args.iter().map(|s| s.as_bytes().to_vec()).collect();
        let envp: Vec<Vec<u8>> = config.env.iter().map(|s| s.as_bytes().to_vec()).collect();
        let (loc, argv) = self
            .resolve_script(loc, p.as_bytes(), argv)
            .map_err(|e| BootError::InitNotExecutable(config.init.clone(), e))?;
        let prepared = self.prepare_exec(&loc).map_err(|e| BootError::InitNotExecutable(config.init.clone(), e))?;
        self.commit_exec(hal, &mut task, prepared, &argv, &envp, p.as_bytes()).map_err(|e| match e {
            Errno::ENOMEM | Errno::EAGAIN => BootError::OutOfMemory,
            e => BootError::InitNotExecutable(config.init.clone(), e),
        })?;
        Ok(task)
    }

    /// A new pid.
    pub fn alloc_pid(&mut self) -> Pid {
        loop {
            let p = self.next_pid;
            self.next_pid = if self.next_pid >= 4_194_303 { 2 } else { self.next_pid + 1 };
            if !self.tasks.contains_key(&p) {
                return p;
            }
        }
    }

    /// Log `line` once per key.
    pub fn log_once<H: Hal>(&mut self, hal: &mut H, key: &'static str, line: &str) {
        if !self.logged_once.contains(&key) {
            self.logged_once.push(key);
            hal.log(line);
        }
    }

    /// Resolve `#!` scripts (up to 4 levels, as Linux): returns the file to
    /// load and the rewritten argv (`interp [arg] path argv[1..]`).
    pub fn resolve_script(&mut self, loc: Loc, path: &[u8], argv: Vec<Vec<u8>>) -> Result<(Loc, Vec<Vec<u8>>), Errno> {
        let (mut loc, mut argv, mut path) = (loc, argv, path.to_vec());
        for _ in 0..5 {
            let inode = loc.inode().clone();
            let line = match &inode.kind {
                Kind::File(d) if inode.executable() => {
                    let d = d.borrow();
                    if !d.starts_with(b"#!") {
                        drop(d);
                        return Ok((loc, argv));
                    }
                    let head = &d[2..d.len().min(256)];
                    let end = head.iter().position(|&c| c == b'\n').ok_or(Errno::ENOEXEC)?;
                    head[..end].to_vec()
                }
                _ => return Ok((loc, argv)), // prepare_exec reports the error
            };
            let trimmed: Vec<u8> = line.iter().copied().skip_while(|c| *c == b' ' || *c == b'\t').collect();
            let split = trimmed.iter().position(|c| *c == b' ' || *c == b'\t').unwrap_or(trimmed.len());
            let interp = trimmed[..split].to_vec();
            let rest: &[u8] = trimmed[split..].trim_ascii();
            if interp.is_empty() {
                return Err(Errno::ENOEXEC);
            }
            let mut new_argv = alloc::vec![interp.clone()];
            if !rest.is_empty() {
                new_argv.push(rest.to_vec());
            }
            new_argv.push(path.clone());
            new_argv.extend(argv.into_iter().skip(1));
            let ip = core::str::from_utf8(&interp).map_err(|_| Errno::ENOEXEC)?;
            let root = Loc::root(self.fs.root.clone());
            loc = path::walk(&self.fs.root, &root, ip, Follow::Yes)?;
            argv = new_argv;
            path = interp;
        }
        Err(Errno::ELOOP)
    }

    /// Validate an executable before the point of no return: regular file,
    /// executable, a valid ELF (and interpreter).
    pub fn prepare_exec(&mut self, loc: &Loc) -> Result<PreparedExec, Errno> {
        let (image, inode) = Self::parse_file(loc.inode())?;
        let interp = match image.interpreter() {
            None => None,
            Some(ip) => {
                let ip = core::str::from_utf8(ip).map_err(|_| Errno::ENOEXEC)?;
                let root = Loc::root(self.fs.root.clone());
                let iloc = path::walk(&self.fs.root, &root, ip, Follow::Yes)?;
                let (iimage, iinode) = Self::parse_file(iloc.inode())?;
                Some((iimage, iinode))
            }
        };
        Ok(PreparedExec { image, inode, interp, path: loc.path() })
    }

    fn parse_file(inode: &InodeRef) -> Result<(exec::ElfImage, InodeRef), Errno> {
        let image = match &inode.kind {
            Kind::File(data) => {
                if !inode.executable() {
                    return Err(Errno::EACCES);
                }
                exec::parse_elf(&data.borrow())?
            }
            Kind::Dir(_) | Kind::Device(_) | Kind::Pipe(_) => return Err(Errno::EACCES),
            Kind::Symlink(_) => return Err(Errno::ELOOP),
        };
        Ok((image, inode.clone()))
    }

    /// Past the point of no return: replace `task`'s image. On error the old
    /// image is gone; the caller kills the task (as Linux does with SIGSEGV).
    pub fn commit_exec<H: Hal<Space = S>>(
        &mut self,
        hal: &mut H,
        task: &mut Task<S>,
        prep: PreparedExec,
        argv: &[Vec<u8>],
        envp: &[Vec<u8>],
        execfn: &[u8],
    ) -> Result<(), Errno> {
        let mm = task.mm.as_mut().ok_or(Errno::EFAULT)?;
        mm.clear(&mut self.frames);
        let mut random = [0u8; 16];
        hal.random(&mut random);
        let file: Arc<dyn MappedFile> = prep.inode.clone();
        let interp: Option<(exec::ElfImage, Arc<dyn MappedFile>)> =
            prep.interp.map(|(img, ino)| (img, ino as Arc<dyn MappedFile>));
        let args = ExecArgs { argv, envp, execfn, random, uid: 0, gid: 0 };
        let loaded = exec::load(
            mm,
            &prep.image,
            &file,
            interp.as_ref().map(|(i, f)| (i, f)),
            &args,
            &mut self.frames,
            hal.phys(),
        )?;
        task.ctx = UserContext::default();
        task.ctx.regs.rip = loaded.entry;
        task.ctx.regs.rsp = loaded.stack_pointer;
        task.ctx.regs.cs = 0x33;
        task.ctx.regs.ss = 0x2b;
        task.ctx.regs.eflags = 0x202;
        task.fds.close_on_exec();
        task.signals.exec_reset();
        task.exe = prep.path;
        Ok(())
    }

    fn run_loop<H: Hal<Space = S>>(&mut self, hal: &mut H) -> i32 {
        loop {
            if let Some(init) = self.tasks.get(&1) {
                if let TaskState::Zombie(st) = init.state {
                    return st.shell_status();
                }
            } else {
                // init is never reaped (it has no parent): this cannot happen.
                return DEADLOCK_STATUS;
            }
            let now = hal.now_ns();
            self.check_timeouts(hal, now);
            self.check_pipe_waits();
            let Some(pid) = self.pick() else {
                if let Some(st) = self.idle(hal) {
                    return st;
                }
                continue;
            };
            let Some(mut task) = self.tasks.remove(&pid) else {
                self.current = None;
                continue;
            };
            if task.slice_end <= now || self.current != Some(pid) {
                task.slice_end = now.saturating_add(TIMESLICE_NS);
            }
            self.current = Some(pid);
            if task.redo_syscall {
                task.redo_syscall = false;
                self.handle_syscall(hal, &mut task);
            } else {
                self.arm_timer(hal, task.slice_end);
                let trap = match task.mm.as_mut() {
                    Some(mm) => hal.run(&mut task.ctx, mm.host()),
                    None => Trap::Lost { signal: Some(g::SIGKILL) },
                };
                self.handle_trap(hal, &mut task, trap);
            }
            if let Some(sig) = task.kill_pending.take() {
                if !task.is_zombie() {
                    self.exit_task(hal, &mut task, ExitStatus::Signal(sig));
                }
            }
            let runnable = task.state == TaskState::Runnable;
            let expired = hal.now_ns() >= task.slice_end;
            let ppid = task.ppid;
            let zombie = task.is_zombie();
            self.tasks.insert(pid, task);
            if zombie {
                self.current = None;
                self.notify_parent(hal, pid, ppid);
            } else if !runnable {
                self.current = None;
            } else if expired && !self.runq.is_empty() {
                self.current = None;
                self.runq.push(pid);
            }
        }
    }

    /// The next task to run: the current one while its slice lasts, else the
    /// head of the run queue.
    fn pick(&mut self) -> Option<Pid> {
        if let Some(c) = self.current {
            if self.tasks.get(&c).is_some_and(|t| t.state == TaskState::Runnable) {
                return Some(c);
            }
            self.current = None;
        }
        while let Some(p) = self.runq.pop() {
            if self.tasks.get(&p).is_some_and(|t| t.state == TaskState::Runnable) {
                return Some(p);
            }
        }
        None
    }

    /// Earliest deadline of a blocked task, and whether anyone waits on the console.
    fn waiters(&self) -> (Option<u64>, bool) {
        let mut earliest: Option<u64> = None;
        let mut console = false;
        for t in self.tasks.values() {
            if let TaskState::Blocked(b) = t.state {
                if let Some(d) = b.deadline {
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                }
                console |= b.on == WaitOn::Console;
            }
        }
        (earliest, console)
    }

    /// Arm the HAL timer for what the running task and the sleepers need; the
    /// timer runs only if something needs it (an idle guest costs nothing).
    fn arm_timer<H: Hal>(&mut self, hal: &mut H, slice_end: u64) {
        let (earliest, console) = self.waiters();
        let mut want = earliest;
        if !self.runq.is_empty() || console {
            want = Some(want.map_or(slice_end, |e| e.min(slice_end)));
        }
        if want != self.armed {
            hal.set_timer(want);
            self.armed = want;
        }
    }

    /// Nothing runnable: sleep on the host until something can happen.
    /// Returns a status if nothing ever can (deadlock).
    fn idle<H: Hal<Space = S>>(&mut self, hal: &mut H) -> Option<i32> {
        let (earliest, console) = self.waiters();
        if earliest.is_none() && !console {
            return Some(self.deadlock(hal));
        }
        if earliest != self.armed {
            hal.set_timer(earliest);
            self.armed = earliest;
        }
        let irq = hal.wait_for_interrupt();
        if irq.is_empty() && earliest.is_none() {
            // The HAL says nothing can ever arrive and no timer is armed.
            // (Only the mock HAL does this: real backends block until input.)
            return Some(self.deadlock(hal));
        }
        self.handle_interrupts(hal, irq);
        None
    }

    fn deadlock<H: Hal<Space = S>>(&mut self, hal: &mut H) -> i32 {
        let mut blocked = String::new();
        for t in self.tasks.values() {
            if let TaskState::Blocked(b) = t.state {
                blocked.push_str(&format!(" [{}] {:?}", t.pid, b.on));
            }
        }
        hal.log(&format!("kernel: deadlock: no task can run and nothing can wake one; blocked:{blocked}"));
        DEADLOCK_STATUS
    }

    fn handle_interrupts<H: Hal<Space = S>>(&mut self, hal: &mut H, irq: Interrupts) {
        if irq.contains(Interrupts::TIMER) {
            // One-shot: it is disarmed now.
            self.armed = None;
        }
        if irq.contains(Interrupts::CONSOLE) {
            self.console_pull(hal);
        }
        let now = hal.now_ns();
        self.check_timeouts(hal, now);
        // Console waiters re-try their read on any interrupt (a tick keeps
        // coming while they wait and others run).
        let waiting: Vec<Pid> = self
            .tasks
            .values()
            .filter(|t| matches!(t.state, TaskState::Blocked(b) if b.on == WaitOn::Console))
            .map(|t| t.pid)
            .collect();
        for p in waiting {
            self.wake(p, None);
        }
    }

    /// Complete blocked calls whose deadline passed.
    fn check_timeouts<H: Hal>(&mut self, hal: &mut H, now: u64) {
        let due: Vec<(Pid, SysResult)> = self
            .tasks
            .values()
            .filter_map(|t| match t.state {
                TaskState::Blocked(b) if b.deadline.is_some_and(|d| d <= now) => Some((t.pid, b.on_timeout)),
                _ => None,
            })
            .collect();
        for (pid, r) in due {
            self.pipe_waits.remove(&pid);
            if let Some(t) = self.tasks.get_mut(&pid) {
                t.restart_deadline = None;
                t.state = TaskState::Runnable;
                complete(hal, self.trace, t, r);
                self.runq.push(pid);
            }
        }
    }

    /// Move the input the console has into the kernel's buffer, so the HAL
    /// stops reporting it as pending (its readiness is level-triggered) and
    /// poll can look at it without consuming it.
    pub fn console_pull<H: Hal>(&mut self, hal: &mut H) {
        let mut tmp = [0u8; 4096];
        while self.console_in.len() < CONSOLE_BUF_MAX && !self.console_eof {
            match hal.console().read(&mut tmp) {
                ConsoleRead::Data(0) | ConsoleRead::WouldBlock => break,
                ConsoleRead::Data(n) => self.console_in.extend(tmp.iter().take(n.min(tmp.len()))),
                ConsoleRead::Eof => self.console_eof = true,
            }
        }
    }

    /// Wake tasks whose pipes changed since they blocked (they re-run their call).
    fn check_pipe_waits(&mut self) {
        if self.pipe_waits.is_empty() {
            return;
        }
        let ready: Vec<Pid> = self
            .pipe_waits
            .iter()
            .filter(|(_, list)| {
                list.iter().any(|(ino, gen)| match &ino.kind {
                    Kind::Pipe(p) => p.gen.get() != *gen,
                    _ => true,
                })
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in ready {
            self.pipe_waits.remove(&pid);
            self.wake(pid, None);
        }
    }

    /// Make a blocked task runnable: re-run its call (`result` None) or
    /// finish it with `result`.
    pub fn wake(&mut self, pid: Pid, result: Option<SysResult>) {
        self.pipe_waits.remove(&pid);
        let Some(t) = self.tasks.get_mut(&pid) else { return };
        let TaskState::Blocked(b) = t.state else { return };
        t.state = TaskState::Runnable;
        match result {
            None if b.restart => {
                t.redo_syscall = true;
                t.restart_deadline = b.deadline;
            }
            None => t.ctx.regs.rax = 0,
            Some(r) => t.ctx.regs.rax = encode(r),
        }
        self.runq.push(pid);
    }

    fn handle_trap<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, trap: Trap) {
        match trap {
            Trap::Syscall => self.handle_syscall(hal, task),
            Trap::PageFault { addr, access } => {
                let Some(mm) = task.mm.as_mut() else { return };
                match mm.handle_fault(addr, access, &mut self.frames, hal.phys()) {
                    Ok(()) => {}
                    Err(e) => {
                        let sig = match e {
                            FaultError::Segv { .. } => g::SIGSEGV,
                            FaultError::Bus => g::SIGBUS,
                            FaultError::OutOfMemory => g::SIGKILL,
                        };
                        if self.trace || e == FaultError::OutOfMemory {
                            let what = match access {
                                Access::Read => "read",
                                Access::Write => "write",
                                Access::Execute => "exec",
                            };
                            hal.log(&format!(
                                "[{}] {} fault at {:#x} (rip {:#x}): {:?}",
                                task.pid, what, addr, task.ctx.regs.rip, e
                            ));
                        }
                        self.fatal_signal(hal, task, sig);
                    }
                }
            }
            Trap::CpuFault { kind, addr } => {
                let sig = match kind {
                    CpuFaultKind::IllegalInstruction => g::SIGILL,
                    CpuFaultKind::DivideError | CpuFaultKind::FloatingPoint => g::SIGFPE,
                    CpuFaultKind::Breakpoint => g::SIGTRAP,
                    CpuFaultKind::GeneralProtection => g::SIGSEGV,
                    CpuFaultKind::BusError => g::SIGBUS,
                };
                if self.trace {
                    hal.log(&format!("[{}] cpu fault {:?} at {:#x}", task.pid, kind, addr));
                }
                self.fatal_signal(hal, task, sig);
            }
            Trap::Interrupt(irq) => self.handle_interrupts(hal, irq),
            Trap::Lost { signal } => {
                let sig = signal.filter(|s| (1..=64).contains(s)).unwrap_or(g::SIGKILL);
                hal.log(&format!("[{}] host context lost (signal {}): killing the process", task.pid, sig));
                self.exit_task(hal, task, ExitStatus::Signal(sig));
            }
        }
    }

    /// A synchronous fault signal. Handlers are not delivered yet (issue 3),
    /// so the default action applies: the process dies with `sig`.
    fn fatal_signal<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, sig: u32) {
        self.exit_task(hal, task, ExitStatus::Signal(sig));
    }

    fn handle_syscall<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>) {
        let nr = task.ctx.regs.orig_rax;
        let args = task.ctx.regs.syscall_args();
        let flow = syscall::dispatch(hal, self, task, nr, args);
        task.restart_deadline = None;
        match flow {
            Flow::Ret(r) => complete(hal, self.trace, task, r),
            Flow::Block(mut b) => {
                // "Forever" timeouts stay far below u64::MAX so clock arithmetic never overflows.
                b.deadline = b.deadline.map(|d| d.min(MAX_DEADLINE));
                task.state = TaskState::Blocked(b);
            }
            Flow::Exit(st) => {
                if self.trace {
                    hal.log(&format!("{} = ?", syscall::trace_call(task.pid, nr, &args)));
                }
                self.exit_task(hal, task, st);
            }
            Flow::Exec => {
                if self.trace {
                    hal.log(&format!("{} = 0", syscall::trace_call(task.pid, nr, &args)));
                }
            }
        }
    }

    /// Release everything a dying task holds and make it a zombie. The
    /// caller re-inserts it and calls [`Kernel::notify_parent`].
    pub fn exit_task<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, st: ExitStatus) {
        let _ = hal;
        if let Some(mut mm) = task.mm.take() {
            mm.clear(&mut self.frames);
            // Dropping the map drops the hal space (the backend's host process).
        }
        task.fds.clear();
        self.pipe_waits.remove(&task.pid);
        task.state = TaskState::Zombie(st);
        task.redo_syscall = false;
        self.runq.remove(task.pid);
        // Orphans go to init; init reaps them.
        let pid = task.pid;
        let mut orphan_zombie = false;
        for t in self.tasks.values_mut() {
            if t.ppid == pid {
                t.ppid = 1;
                orphan_zombie |= t.is_zombie();
            }
        }
        if orphan_zombie && pid != 1 {
            self.wake_waiters_of(1);
        }
    }

    /// Tell the parent of dead `pid`: wake its wait, or reap at once if it
    /// ignores SIGCHLD.
    pub fn notify_parent<H: Hal<Space = S>>(&mut self, hal: &mut H, pid: Pid, ppid: Pid) {
        let _ = hal;
        let Some(parent) = self.tasks.get(&ppid) else { return };
        let act = parent.signals.actions[(g::SIGCHLD - 1) as usize];
        if act.handler == SIG_IGN || act.flags & g::SA_NOCLDWAIT as u64 != 0 {
            self.tasks.remove(&pid);
        }
        self.wake_waiters_of(ppid);
    }

    fn wake_waiters_of(&mut self, ppid: Pid) {
        if self.tasks.get(&ppid).is_some_and(|p| matches!(p.state, TaskState::Blocked(b) if b.on == WaitOn::Child)) {
            self.wake(ppid, None);
        }
    }

    /// Send `sig` to `pid` (which is not the task being handled). Default
    /// actions only: terminate or ignore; a caught or blocked signal stays
    /// pending (handlers are delivered by a later issue).
    pub fn send_signal<H: Hal<Space = S>>(&mut self, hal: &mut H, pid: Pid, sig: u32) {
        let Some(t) = self.tasks.get_mut(&pid) else { return };
        if t.is_zombie() || sig == 0 {
            return;
        }
        if !decide_signal(t, sig) {
            return;
        }
        if let Some(mut t) = self.tasks.remove(&pid) {
            let ppid = t.ppid;
            self.exit_task(hal, &mut t, ExitStatus::Signal(sig));
            self.tasks.insert(pid, t);
            if self.current == Some(pid) {
                self.current = None;
            }
            self.notify_parent(hal, pid, ppid);
        }
    }

    /// Kill everything and drop every address space; log the summary.
    fn shutdown<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        hal.set_timer(None);
        self.armed = None;
        let pids: Vec<Pid> = self.tasks.keys().copied().collect();
        for pid in pids {
            if let Some(mut t) = self.tasks.remove(&pid) {
                if !t.is_zombie() {
                    self.exit_task(hal, &mut t, ExitStatus::Signal(g::SIGKILL));
                }
            }
        }
        self.tasks.clear();
        self.runq.clear();
        // Every frame must be back: a leak here is a kernel bug worth a line.
        if let Err(e) = self.frames.check_all_free() {
            hal.log(&format!("kernel: frame leak at shutdown: {e}"));
        }
        if !self.unknown.is_empty() {
            let parts: Vec<String> = self
                .unknown
                .iter()
                .map(|(nr, n)| format!("{}×{}", syscall::name_of(*nr), n))
                .collect();
            hal.log(&format!("unimplemented syscalls: {}", parts.join(", ")));
        }
    }
}

/// Apply signal `sig` to `t`'s state: returns true if it must die now.
pub fn decide_signal<S: AddressSpace>(t: &mut Task<S>, sig: u32) -> bool {
    if sig == g::SIGKILL {
        return true;
    }
    let idx = (sig - 1) as usize;
    let act = t.signals.actions[idx];
    let blocked = t.signals.mask & sigbit(sig) & !UNBLOCKABLE != 0;
    if act.handler == SIG_IGN && sig != g::SIGSTOP {
        return false;
    }
    if blocked || act.handler > SIG_IGN {
        t.signals.pending |= sigbit(sig);
        return false;
    }
    default_action(sig) == DefaultAction::Terminate
}

/// A validated executable, ready to load.
pub struct PreparedExec {
    image: exec::ElfImage,
    inode: InodeRef,
    interp: Option<(exec::ElfImage, InodeRef)>,
    path: String,
}

/// The `rax` value of a result.
pub fn encode(r: SysResult) -> u64 {
    match r {
        Ok(v) => v as u64,
        Err(e) => e.as_return(),
    }
}

/// Finish the task's current call with `r` (and trace it).
pub fn complete<H: Hal, S: AddressSpace>(hal: &mut H, trace: bool, t: &mut Task<S>, r: SysResult) {
    t.ctx.regs.rax = encode(r);
    if trace {
        let line = syscall::trace_call(t.pid, t.ctx.regs.orig_rax, &t.ctx.regs.syscall_args());
        let res = match r {
            Ok(v) => format!("{}", v as i64),
            Err(e) => format!("-{}", e.name()),
        };
        hal.log(&format!("{line} = {res}"));
    }
}

/// Helper for handlers that block: a call that waits for `on`.
pub fn block(on: WaitOn, deadline: Option<u64>, on_timeout: SysResult, restart: bool) -> Flow {
    Flow::Block(Blocked { on, deadline, on_timeout, restart })
}
