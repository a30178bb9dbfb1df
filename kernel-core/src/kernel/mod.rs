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

mod account;
mod ptrace;
mod signals;
mod tty;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use hal::{Access, AddressSpace, CpuFaultKind, Hal, Interrupts, PhysMem, Trap, UserContext};
use linux_raw_sys::general as g;

use crate::exec::{self, ExecArgs};
use crate::fs::cpio;
use crate::fs::path::{self, Follow};
use crate::fs::inode::ExecImage;
use crate::fs::{FdTable, Fs, Kind, Loc, OpenFile};
use crate::mm::{FaultError, Frames, MappedFile, MemoryMap};
use crate::syscall::{self, Flow};
use crate::task::sched::TIMESLICE_NS;
use crate::task::signal::{SigInfo, SIG_IGN};
use crate::task::{Blocked, ExitStatus, Pid, Task, TaskState, WaitOn};
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
    /// Init's working directory (empty, or not a directory: `/`).
    pub cwd: String,
    /// The user and group ids init runs as (0: root).
    pub uid: u32,
    /// See [`BootConfig::uid`].
    pub gid: u32,
}

pub use crate::net::inet::NetAttach;

/// The host devices a backend attaches besides the console.
#[derive(Default)]
pub struct Devices {
    /// Host directories mounted at guest paths (hostfs,
    /// `--hostfs HOSTDIR:GUESTDIR[:rw]`).
    pub host_dirs: Vec<(String, alloc::boxed::Box<dyn hal::HostDir>)>,
    /// Host directories mounted read-only under a writable overlay kept in
    /// guest memory (`kernel-skas do`: the host's `/`).
    pub overlays: Vec<(String, alloc::boxed::Box<dyn hal::HostDir>)>,
    /// A host directory holding the upper layer of the overlay at `/`
    /// between runs (`do --overlay DIR`): read at boot, written at shutdown.
    pub overlay_upper: Option<alloc::boxed::Box<dyn hal::HostDir>>,
    /// Network interfaces (`--net`); loopback always exists besides these.
    pub nets: Vec<NetAttach>,
    /// The root archive as shared bytes (e.g. a host file the backend
    /// mapped), used instead of [`BootConfig::initramfs`] when set. Either
    /// way the unpacked files point into the archive rather than copying it.
    pub initramfs: Option<crate::fs::inode::SharedBytes>,
    /// Disks (`--ubd N=FILE`, UML's `ubdN=`): `(N, device)`, seen by the
    /// guest as `/dev/ubda`, `/dev/ubdb`, ...
    pub disks: Vec<(u32, alloc::boxed::Box<dyn hal::BlockDevice>)>,
    /// The disk (index into [`Devices::disks`]' numbers) whose ext4 file
    /// system is the root (`root=/dev/ubdX`), mounted read-only; the
    /// initramfs is then not used.
    pub root_disk: Option<u32>,
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
    /// The root file system on a disk (`root=/dev/ubdX`) cannot be mounted.
    BadRootDisk(String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::BadInitramfs(why) => write!(f, "bad initramfs: {why}"),
            BootError::InitNotFound(p) => write!(f, "init {p} not found in the root file system"),
            BootError::InitNotExecutable(p, e) => write!(f, "cannot execute init {p}: {}", e.name()),
            BootError::OutOfMemory => write!(f, "out of memory while starting init"),
            BootError::BadRootDisk(why) => write!(f, "{why}"),
        }
    }
}

/// Kernel-wide state (everything but the HAL). The running task is taken out
/// of `tasks` while its trap is handled.
pub struct Kernel<S: AddressSpace> {
    /// The frame allocator.
    pub frames: Frames,
    /// The process table: tasks, run queue, wait sets, pids.
    pub procs: crate::task::ProcessTable<S>,
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
    logged_once: Vec<&'static str>,
    /// The terminals (console, ptys) and their job-control state.
    pub ttys: alloc::rc::Rc<crate::tty::Ttys>,
    /// Signals for process groups raised where no task could take them
    /// (console input in interrupt context): sent at the top of the loop.
    pub group_signals: Vec<crate::wait::GroupSignal>,
    /// A handler that returned `EAGAIN` after recording this wait set
    /// blocks on it instead (a FIFO open waiting for its peer).
    pub block_request: Option<crate::wait::WaitSet>,
    /// CPU-time accounting and every process's timers.
    pub clock: crate::time::account::KernelClock,
    /// The timer deadline we asked the HAL for.
    pub(crate) armed: Option<u64>,
    /// Blocked tasks' deadlines and poll wake-up instants, earliest first.
    deadlines: crate::time::deadlines::Deadlines,
    /// Tasks that blocked reading the console (some may have been woken since).
    console_waiters: alloc::collections::BTreeSet<Pid>,
    /// When free guest memory may next be given back to the host.
    next_trim_ns: u64,
    /// The process the OOM killer last chose (tgid), and how many faults
    /// have waited for it to die since.
    oom_victim: Option<(Pid, u32)>,
    /// The task that keeps the CPU while its slice lasts.
    pub(crate) current: Option<Pid>,
    /// Run [`crate::invariants::check`] before every step (tests, fuzzing).
    check_invariants: bool,
    /// Sockets' kernel-wide state (abstract AF_UNIX names, the IP stack).
    pub net: crate::net::NetStack,
    /// System V IPC objects (shared memory, semaphores, message queues).
    pub ipc: crate::ipc::Ipc,
    /// Advisory file locks (`flock`, POSIX and OFD record locks).
    pub locks: crate::filelock::LockTable,
    /// Open pidfds by process (readable once it exits).
    pub pidfds: crate::syscall::pidfd::PidFdWatch,
    /// inotify watches by file.
    pub inotify: crate::syscall::inotify::Watches,
    /// signalfds by process (readiness when a blocked signal is queued).
    pub signalfds: crate::syscall::signalfd::SignalFds,
    /// The operator's requests (`rustuml-ctl`): paused, halting.
    pub control: crate::control::ControlState,
    /// Audit events waiting for the HAL (`audit_log=`).
    pub audit: crate::audit::AuditState,
}

pub use crate::time::MAX_DEADLINE;

/// Faults that wait for an OOM victim to die before the killer chooses again.
const OOM_PATIENCE: u32 = 1000;

/// The shell status of a deadlocked guest (as if init was killed by SIGKILL).
pub const DEADLOCK_STATUS: i32 = 128 + 9;

/// Runs init until it exits; returns its status as a shell's `$?` sees it.
/// All guest address spaces are dropped before it returns.
pub fn boot<H: Hal>(hal: &mut H, config: BootConfig) -> Result<i32, BootError> {
    boot_with(hal, config, Devices::default())
}

/// [`boot`], with host devices attached (hostfs mounts, network interfaces).
pub fn boot_with<H: Hal>(hal: &mut H, config: BootConfig, devices: Devices) -> Result<i32, BootError> {
    boot_opts(hal, config, devices, false)
}

/// [`boot`], checking [`crate::invariants`] before every step of the loop
/// (slow; for tests and fuzzing): the first violation is logged as
/// `kernel: invariant violated: ...`.
#[doc(hidden)]
pub fn boot_checked<H: Hal>(hal: &mut H, config: BootConfig) -> Result<i32, BootError> {
    boot_opts(hal, config, Devices::default(), true)
}

fn boot_opts<H: Hal>(hal: &mut H, mut config: BootConfig, devices: Devices, check_invariants: bool) -> Result<i32, BootError> {
    let Devices { host_dirs, overlays, overlay_upper, nets, initramfs, disks, root_disk } = devices;
    let mut overlay_upper = overlay_upper;
    let mut fs = Fs::new();
    for (index, dev) in disks {
        fs.disks.add(crate::block::Disk::new(index, dev));
    }
    let archive = initramfs.unwrap_or_else(|| alloc::sync::Arc::new(core::mem::take(&mut config.initramfs)));
    cpio::unpack_shared(&mut fs, archive).map_err(|e| BootError::BadInitramfs(e.0))?;
    if let Some(index) = root_disk {
        let name = crate::block::disk_name(index);
        let disk = fs.disks.by_name(&name).ok_or_else(|| BootError::BadRootDisk(format!("root=/dev/{name}: no such disk (attach it with ubd{index}=IMAGE)")))?;
        if let Err(e) = fs.mount_ext4_root(disk.clone()) {
            let why: Vec<String> = disk.take_log();
            return Err(BootError::BadRootDisk(format!("cannot mount root=/dev/{name} (ext4): {}{}{}", e.name(), if why.is_empty() { "" } else { ": " }, why.join("; "))));
        }
    }
    // A host directory as `/` comes first (the kernel's own /dev, /proc,
    // /sys and /tmp then go on top of it), the others after them.
    let (as_root, others): (Vec<_>, Vec<_>) = host_dirs.into_iter().partition(|(at, _)| at.split('/').all(|c| c.is_empty()));
    let mount_host = |fs: &mut Fs, at: String, dir| {
        fs.mount_host(&at, dir).map_err(|e| BootError::BadInitramfs(format!("cannot mount hostfs at {at}: {}", e.name())))
    };
    let (ovl_root, ovl_others): (Vec<_>, Vec<_>) = overlays.into_iter().partition(|(at, _)| at.split('/').all(|c| c.is_empty()));
    let mount_overlay = |fs: &mut Fs, at: String, dir, upper| {
        fs.mount_host_overlay_with(&at, dir, upper).map(|_| ()).map_err(|e| BootError::BadInitramfs(format!("cannot mount the overlay at {at}: {}", e.name())))
    };
    for (at, dir) in as_root {
        mount_host(&mut fs, at, dir)?;
    }
    for (at, dir) in ovl_root {
        mount_overlay(&mut fs, at, dir, overlay_upper.take())?;
    }
    fs.mount_devfs().map_err(|e| BootError::BadInitramfs(format!("cannot mount /dev: {}", e.name())))?;
    // Over the host's own tree (`do`), a working directory under /tmp or
    // /run must not vanish under the guest's own: that one mount goes, and
    // the host's directory shows through the overlay (writes still private).
    if fs.fstype(fs.root.sb) == crate::fs::FsType::Overlay {
        for m in ["/tmp", "/run"] {
            if config.cwd == m || config.cwd.starts_with(&format!("{m}/")) {
                let root = Loc::root(fs.root.clone());
                if let Ok(l) = path::walk(&fs.root.clone(), &root, m, Follow::Yes) {
                    let _ = fs.umount(&l);
                }
            }
        }
    }
    for (at, dir) in others {
        mount_host(&mut fs, at, dir)?;
    }
    for (at, dir) in ovl_others {
        mount_overlay(&mut fs, at, dir, None)?;
    }
    fs.size_host_caches(hal.phys().size());
    let frames = Frames::new(hal.phys().size());
    fs.caches.set_memory(frames.total_frames());
    let mut k = Kernel {
        frames,
        procs: Default::default(),
        fs,
        release: config.uname_release.clone(),
        hostname: config.hostname.clone(),
        trace: config.trace_syscalls,
        unknown: BTreeMap::new(),
        logged_once: Vec::new(),
        ttys: crate::tty::Ttys::new(),
        group_signals: Vec::new(),
        block_request: None,
        clock: Default::default(),
        armed: None,
        deadlines: Default::default(),
        console_waiters: Default::default(),
        next_trim_ns: 0,
        oom_victim: None,
        current: None,
        check_invariants,
        net: crate::net::NetStack::default(),
        ipc: crate::ipc::Ipc::default(),
        locks: crate::filelock::LockTable::default(),
        pidfds: Default::default(),
        inotify: Default::default(),
        signalfds: Default::default(),
        control: Default::default(),
        audit: Default::default(),
    };
    let (tty_log, audit_log) = hal.recording();
    k.audit.events = audit_log;
    k.ttys.set_tty_log(tty_log);
    let mut seed = [0u8; 8];
    hal.random(&mut seed);
    crate::net::inet::attach_all(&k.net.inet, u64::from_le_bytes(seed), nets);
    k.net.inet.borrow_mut().set_budget(k.frames.budget().clone());
    k.fs.disks.set_budget(k.frames.budget(), k.frames.total_frames());
    k.fs.budget = Some(k.frames.budget().clone());
    k.clock.vdso = crate::time::vdso::Vdso::new(hal, &k.fs.caches, &mut k.frames);
    k.console_setup(hal);
    k.install_tty_nodes().map_err(|e| BootError::BadInitramfs(format!("cannot create tty nodes in /dev: {}", e.name())))?;
    let init = k.start_init(hal, &config)?;
    k.procs.enqueue(init.pid);
    k.procs.put(alloc::boxed::Box::new(init));
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
        // fds 0 and 1 are the /dev/console node itself, so ttyname() finds it.
        let console = path::walk(&self.fs.root, &root, "/dev/console", Follow::Yes)
            .map(|l| l.inode().clone())
            .unwrap_or_else(|_| self.fs.new_inode(Kind::Special(self.ttys.console_file(hal::ConsoleStream::Stdout)), 0o600, 0));
        let console_err = self.fs.new_inode(Kind::Special(self.ttys.console_file(hal::ConsoleStream::Stderr)), 0o600, 0);
        let out = OpenFile::new(console, g::O_RDWR, String::from("/dev/console"));
        fds.set(0, out.clone(), false);
        fds.set(1, out, false);
        fds.set(2, OpenFile::new(console_err, g::O_RDWR, String::from("/dev/console")), false);
        let cwd = match config.cwd.as_str() {
            "" => root.clone(),
            c => path::walk(&self.fs.root, &root, c, Follow::Yes).ok().filter(|l| l.inode().is_dir()).unwrap_or_else(|| root.clone()),
        };
        let mut mm = MemoryMap::with_caches(space, self.fs.caches.clone());
        // Nothing mapped yet: charging nothing cannot fail.
        let _ = mm.charge_tables_to(self.frames.budget());
        let mut task = Task::new(1, 0, UserContext::default(), Some(mm), fds, cwd);
        let (u, gid) = (config.uid, config.gid);
        task.cred = crate::task::Cred { uid: u, euid: u, suid: u, fsuid: u, gid, egid: gid, sgid: gid, fsgid: gid, groups: Vec::new() };
        task.mm_id = self.procs.new_share_id();
        task.files_id = self.procs.new_share_id();
        task.sighand_id = self.procs.new_share_id();
        let argv: Vec<Vec<u8>> = config.args.iter().map(|s| s.as_bytes().to_vec()).collect();
        let envp: Vec<Vec<u8>> = config.env.iter().map(|s| s.as_bytes().to_vec()).collect();
        let (loc, argv) = self
            .resolve_script(hal.phys(), loc, p.as_bytes(), argv)
            .map_err(|e| BootError::InitNotExecutable(config.init.clone(), e))?;
        let prepared =
            self.prepare_exec(hal.phys(), &loc).map_err(|e| BootError::InitNotExecutable(config.init.clone(), e))?;
        self.commit_exec(hal, &mut task, prepared, &argv, &envp, p.as_bytes()).map_err(|e| match e {
            Errno::ENOMEM | Errno::EAGAIN => BootError::OutOfMemory,
            e => BootError::InitNotExecutable(config.init.clone(), e),
        })?;
        Ok(task)
    }

    /// Log `line` once per key.
    pub fn log_once<H: Hal>(&mut self, hal: &mut H, key: &'static str, line: &str) {
        if !self.logged_once.contains(&key) {
            self.logged_once.push(key);
            self.printk(hal, crate::tty::kmsg::INFO, line);
        }
    }

    /// Resolve `#!` scripts (up to 4 levels, as Linux): returns the file to
    /// load and the rewritten argv (`interp [arg] path argv[1..]`).
    pub fn resolve_script(
        &mut self,
        phys: &impl PhysMem,
        loc: Loc,
        path: &[u8],
        argv: Vec<Vec<u8>>,
    ) -> Result<(Loc, Vec<Vec<u8>>), Errno> {
        let (mut loc, mut argv, mut path) = (loc, argv, path.to_vec());
        for _ in 0..5 {
            let inode = loc.inode().clone();
            // A host file is opened on the host and its cached pages
            // checked against it at exec, as at open.
            self.fs.host_revalidate(&inode, &mut self.frames)?;
            let line = match &inode.kind {
                Kind::File(d) if inode.executable() => {
                    let d = d.head(256, &mut self.frames, phys)?;
                    if !d.starts_with(b"#!") {
                        return Ok((loc, argv));
                    }
                    let head = &d[2..];
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
    pub fn prepare_exec(&mut self, phys: &impl PhysMem, loc: &Loc) -> Result<PreparedExec, Errno> {
        // (resolve_script checked a host file against the host already.)
        let (image, inode) = self.parse_file(phys, loc)?;
        let interp = match image.interpreter() {
            None => None,
            Some(ip) => {
                let ip = core::str::from_utf8(ip).map_err(|_| Errno::ENOEXEC)?;
                let root = Loc::root(self.fs.root.clone());
                let iloc = path::walk(&self.fs.root, &root, ip, Follow::Yes)?;
                // A host file's cached pages are checked against the host at exec.
                self.fs.host_revalidate(iloc.inode(), &mut self.frames)?;
                let (iimage, iinode) = self.parse_file(phys, &iloc)?;
                Some((iimage, iinode))
            }
        };
        Ok(PreparedExec { image, inode, interp, path: loc.path() })
    }

    /// Parse the executable at `loc`: its headers and its image (the bytes
    /// the loader reads, the page cache its mappings use).
    fn parse_file(&mut self, phys: &impl PhysMem, loc: &Loc) -> Result<(exec::ElfImage, Arc<ExecImage>), Errno> {
        let inode = loc.inode();
        match &inode.kind {
            Kind::File(_) if !inode.executable() => Err(Errno::EACCES),
            Kind::File(_) => {
                let file = ExecImage::load(inode, loc.path(), &mut self.frames, phys)?;
                let image = file.with_bytes(exec::parse_elf)?;
                Ok((image, file))
            }
            Kind::Dir(_) | Kind::Device(_) | Kind::Special(_) => Err(Errno::EACCES),
            Kind::Symlink(_) => Err(Errno::ELOOP),
        }
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
            prep.interp.as_ref().map(|(img, ino)| (img.clone(), ino.clone() as Arc<dyn MappedFile>));
        let minsigstksz = crate::task::frame::min_sigstack_size(&hal.fpu_layout());
        let vdso = self.clock.vdso.as_ref();
        let args = ExecArgs { argv, envp, execfn, random, uid: task.cred.uid, gid: task.cred.gid, minsigstksz, vdso };
        let loaded = exec::load(
            mm,
            &prep.image,
            &file,
            interp.as_ref().map(|(i, f)| (i, f)),
            &args,
            &mut self.frames,
            hal.phys(),
        );
        // Loaded (or not): the mappings use the page caches from now on.
        prep.inode.release();
        if let Some((_, i)) = &prep.interp {
            i.release();
        }
        let loaded = loaded?;
        task.ctx = UserContext::default();
        task.ctx.regs.rip = loaded.entry;
        task.ctx.regs.rsp = loaded.stack_pointer;
        task.ctx.regs.cs = 0x33;
        task.ctx.regs.ss = 0x2b;
        task.ctx.regs.eflags = 0x202;
        task.auxv = crate::task::ptrace::read_auxv(task, argv.len() + envp.len(), &mut self.frames, hal.phys());
        task.fds.close_on_exec();
        task.signals.exec_reset();
        self.clock.timers.exec(task.tgid);
        task.execed = true;
        task.exe = prep.path;
        task.cmdline = nul_joined(argv);
        task.environ = nul_joined(envp);
        // Linux names the process after the path handed to execve, not the
        // file it resolved to (`sh`, not `dash`).
        let base = execfn.rsplit(|&b| b == b'/').next().unwrap_or(execfn);
        task.comm = String::from_utf8_lossy(&base[..base.len().min(15)]).into_owned();
        self.audit.execve(task.tgid, task.cred.uid, argv, || hal.realtime_ns());
        Ok(())
    }

    fn run_loop<H: Hal<Space = S>>(&mut self, hal: &mut H) -> i32 {
        loop {
            if let Some(init) = self.procs.get(1) {
                if let TaskState::Zombie(st) = init.state {
                    return st.shell_status();
                }
            } else {
                // init is never reaped (it has no parent): this cannot happen.
                return DEADLOCK_STATUS;
            }
            self.lines_flush(hal);
            self.audit_flush(hal);
            if core::mem::take(&mut self.control.pending) {
                self.serve_control(hal);
            }
            if let Some(st) = self.control.halt {
                return st;
            }
            if self.control.paused {
                self.paused_wait(hal);
                continue;
            }
            if self.check_invariants {
                if let Err(e) = crate::invariants::check(self) {
                    self.printk(hal, crate::tty::kmsg::ERR, &format!("kernel: invariant violated: {e}"));
                    self.check_invariants = false;
                }
            }
            // Frames of dropped page caches back to the allocator, host
            // files whose shared mappings went away written back.
            self.fs.caches.service(&mut self.frames, hal.phys());
            for line in self.fs.disks.take_log() {
                hal.log(&line);
            }
            // Keep some memory free for the kernel's own objects, which
            // cannot evict cache pages themselves (their charges happen
            // deep inside a call): clean cache pages go first, as kswapd
            // keeps Linux above its low watermark.
            let (low, free) = (self.frames.total_frames() / 32, self.frames.free_frames());
            if free < low {
                self.fs.caches.shrink(&mut self.frames, hal.phys(), 2 * low - free);
            }
            let now = hal.now_ns();
            self.check_timeouts(hal, now);
            self.check_itimers(now);
            crate::net::inet::tick(&self.net.inet, now);
            // At most once a second: a burst's memory goes back to the host,
            // a steady churn keeps what it reuses.
            if now >= self.next_trim_ns && self.frames.wants_trim() {
                self.frames.trim(hal.phys());
                self.next_trim_ns = now.saturating_add(1_000_000_000);
            }
            self.check_waits(now);
            self.flush_group_signals();
            let Some(pid) = self.pick() else {
                if let Some(st) = self.idle(hal) {
                    return st;
                }
                continue;
            };
            let Some(mut task) = self.procs.take(pid) else {
                self.current = None;
                continue;
            };
            if task.slice_end <= now || self.current != Some(pid) {
                task.slice_end = now.saturating_add(TIMESLICE_NS);
            }
            self.current = Some(pid);
            self.stint_begin(&mut task, now);
            // Threads share one memory map and fd table: bring them here.
            self.procs.adopt_shared(&mut task);
            if task.group_exit.is_none() {
                // The return to user mode: deliver signals. A call woken to
                // re-run is interrupted instead if a handler is to run.
                self.deliver_signals(hal, &mut task);
            }
            if task.group_exit.is_none() && task.state == TaskState::Runnable && !task.stopped {
                if task.redo_syscall {
                    task.redo_syscall = false;
                    self.handle_syscall(hal, &mut task);
                    // The loop's own work for the task (timers, signals) is
                    // its system time too: charge from the top of the loop.
                    let t1 = hal.now_ns();
                    self.charge(hal, &mut task, 0, t1.saturating_sub(now));
                } else {
                    let cpu = self.cpu_deadline(&task, now);
                    self.arm_timer(hal, task.slice_end, cpu);
                    let t0 = hal.now_ns();
                    let trap = match task.mm.as_mut() {
                        Some(mm) => hal.run(&mut task.ctx, mm.host()),
                        None => Trap::Lost { signal: Some(g::SIGKILL) },
                    };
                    let t1 = hal.now_ns();
                    self.handle_trap(hal, &mut task, trap);
                    let t2 = hal.now_ns();
                    let kernel = t2.saturating_sub(t1) + t0.saturating_sub(now);
                    self.charge(hal, &mut task, t1.saturating_sub(t0), kernel);
                }
                if let Some(sig) = task.kill_pending.take() {
                    if !task.is_zombie() {
                        // Raised by the task on itself (sender = its own process).
                        let tid = task.pid;
                        let info = SigInfo { pid: task.tgid, ..SigInfo::kernel(sig) };
                        self.post_signal(Some(&mut task), tid, info, true);
                    }
                }
                if let TaskState::Blocked(_) = task.state {
                    task.block_seq = self.procs.next_block_seq();
                }
            }
            if let Some(st) = task.group_exit.take() {
                if !task.is_zombie() {
                    self.exit_task(hal, &mut task, st);
                }
            }
            let runnable = task.state == TaskState::Runnable && !task.stopped;
            let end = hal.now_ns();
            let expired = end >= task.slice_end;
            let ppid = task.ppid;
            let zombie = task.is_zombie();
            // A woken task that has had less than its share goes first.
            let preempted = core::mem::take(&mut self.clock.preempt);
            let leaves = zombie || !runnable || ((expired || preempted) && self.procs.has_queued());
            if leaves {
                self.stint_end(&mut task, end);
            }
            self.procs.put(task);
            if zombie {
                self.current = None;
                self.reap_or_notify(hal, pid, ppid);
            } else if !runnable {
                self.current = None;
            } else if leaves {
                self.current = None;
                self.procs.enqueue(pid);
            }
        }
    }

    /// The next task to run: the current one while its slice lasts, else the
    /// head of the run queue.
    fn pick(&mut self) -> Option<Pid> {
        if core::mem::take(&mut self.clock.preempt) {
            // A task woken at the top of the loop goes before the current one.
            if let Some(c) = self.current.take() {
                self.procs.enqueue(c);
            }
        }
        if let Some(c) = self.current {
            if self.procs.can_run(c) {
                return Some(c);
            }
            self.current = None;
        }
        self.procs.pop_runnable()
    }

    /// Is `d` still what blocked task `pid` waits for (its call's deadline
    /// or its wait set's wake-up)? The current task is out of the table
    /// while the loop handles it (it may have just blocked): kept.
    fn deadline_holds(&self, pid: Pid, d: u64) -> bool {
        match self.procs.get(pid) {
            Some(t) => match t.state {
                TaskState::Blocked(b) => b.deadline == Some(d) || self.procs.wait_of(pid).is_some_and(|w| w.wake_at == Some(d)),
                _ => false,
            },
            None => self.current == Some(pid),
        }
    }

    /// The deadline indexed for `pid` (for the invariant checks).
    pub(crate) fn deadline_of(&self, pid: Pid) -> Option<u64> {
        self.deadlines.of(pid)
    }

    /// Record the deadline and console wait of a task that just blocked.
    fn note_blocked(&mut self, pid: Pid, b: &Blocked) {
        let wake = self.procs.wait_of(pid).and_then(|w| w.wake_at);
        let d = match (b.deadline, wake) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        };
        self.deadlines.set(pid, d);
        if b.on == WaitOn::Console {
            self.console_waiters.insert(pid);
        }
    }

    /// Earliest deadline of a blocked task, and whether anyone may wait on
    /// the console. Stale deadline entries met on the way are dropped.
    fn waiters(&mut self) -> (Option<u64>, bool) {
        let mut earliest: Option<u64> = None;
        while let Some((d, pid)) = self.deadlines.first() {
            if self.deadline_holds(pid, d) {
                earliest = Some(d);
                break;
            }
            self.deadlines.forget(pid);
        }
        // Woken console readers may still be in the set: at worst a timer
        // is armed for nothing. `idle` prunes it before it calls a deadlock.
        let mut console = !self.console_waiters.is_empty();
        if let Some(d) = self.clock.timers.next_deadline() {
            earliest = Some(earliest.map_or(d, |e| e.min(d)));
        }
        // The IP stack's protocol timers; frames from outside can wake a waiter like console input.
        if let Some(d) = crate::net::inet::deadline(&self.net.inet) {
            earliest = Some(earliest.map_or(d, |e| e.min(d)));
        }
        console |= self.net.inet.try_borrow().is_ok_and(|s| s.has_links());
        (earliest, console)
    }

    /// Arm the HAL timer for what the running task and the sleepers need; the
    /// timer runs only if something needs it (an idle guest costs nothing).
    /// `cpu` is when the running task's CPU-time timers or limit expire.
    fn arm_timer<H: Hal>(&mut self, hal: &mut H, slice_end: u64, cpu: Option<u64>) {
        let (earliest, console) = self.waiters();
        let mut want = earliest;
        if self.procs.has_queued() || console {
            want = Some(want.map_or(slice_end, |e| e.min(slice_end)));
        }
        if let Some(c) = cpu {
            want = Some(want.map_or(c, |e| e.min(c)));
        }
        if want != self.armed {
            hal.set_timer(want);
            self.armed = want;
        }
    }

    /// Nothing runnable: sleep on the host until something can happen.
    /// Returns a status if nothing ever can (deadlock).
    fn idle<H: Hal<Space = S>>(&mut self, hal: &mut H) -> Option<i32> {
        let lost = hal.stop_guests();
        if !lost.is_empty() {
            // A process was lost: its end may wake others.
            self.handle_interrupts(hal, lost);
            return None;
        }
        let tasks = &self.procs;
        self.console_waiters.retain(|p| tasks.get(*p).is_some_and(|t| matches!(t.state, TaskState::Blocked(b) if b.on == WaitOn::Console)));
        let (earliest, console) = self.waiters();
        // An exec'd process's stdin is fed from the control channel.
        if earliest.is_none() && !console && !self.control.execs.any() {
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
        for t in self.procs.iter() {
            if let TaskState::Blocked(b) = t.state {
                blocked.push_str(&format!(" [{}] {:?}", t.pid, b.on));
            }
        }
        self.printk(hal, crate::tty::kmsg::ERR, &format!("kernel: deadlock: no task can run and nothing can wake one; blocked:{blocked}"));
        DEADLOCK_STATUS
    }

    pub(crate) fn handle_interrupts<H: Hal<Space = S>>(&mut self, hal: &mut H, irq: Interrupts) {
        if irq.contains(Interrupts::LOST) {
            self.kill_lost(hal);
        }
        if irq.contains(Interrupts::CONTROL) {
            // Served at the top of the loop, with every task in the table.
            self.control.pending = true;
        }
        if irq.contains(Interrupts::TIMER) {
            // One-shot: it is disarmed now.
            self.armed = None;
        }
        if irq.contains(Interrupts::NET) {
            if let Ok(mut s) = self.net.inet.try_borrow_mut() {
                s.rx_pending = true;
            }
        }
        if irq.contains(Interrupts::CONSOLE) {
            self.console_pull(hal);
        } else {
            self.console_check_resize(hal);
        }
        let now = hal.now_ns();
        self.check_timeouts(hal, now);
        // Console waiters re-try their read on any interrupt (a tick keeps
        // coming while they wait and others run); those still blocked on
        // the console are woken (a read that finds nothing blocks again).
        for p in core::mem::take(&mut self.console_waiters) {
            if self.procs.get(p).is_some_and(|t| matches!(t.state, TaskState::Blocked(b) if b.on == WaitOn::Console)) {
                self.wake(p, None);
            }
        }
    }

    /// Kill every process whose host context the backend lost while the
    /// kernel was not running it (a scan of the task table: only on
    /// [`Interrupts::LOST`], which a misbehaving guest causes).
    fn kill_lost<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        let lost: Vec<Pid> = self
            .procs
            .iter()
            .filter(|t| !t.is_zombie() && t.group_exit.is_none())
            .filter(|t| t.mm.as_ref().is_some_and(|mm| mm.host_ref().is_lost()))
            .map(|t| t.tgid)
            .collect();
        for tgid in lost {
            let group = self.procs.group_pids(None, tgid);
            if group.is_empty() {
                continue;
            }
            self.printk(hal, crate::tty::kmsg::WARNING, &format!("[{tgid}] host context lost: killing the process"));
            self.group_kill(&mut None, &group, ExitStatus::Signal(g::SIGKILL));
        }
    }

    /// The guest's OOM killer, for a fault of `task` that found no frame:
    /// kill the process holding the most memory (Linux's choice, minus
    /// its tunables), init last. True when that is another process, whose
    /// death the faulting task waits for; false when `task`'s own process is
    /// the one to die (the caller kills it). A victim that does not die
    /// within [`OOM_PATIENCE`] faults is given up on.
    fn oom_kill_other<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &Task<S>) -> bool {
        if let Some((v, waited)) = self.oom_victim {
            if v != task.tgid && waited < OOM_PATIENCE && !self.procs.group_pids(Some(task), v).is_empty() {
                self.oom_victim = Some((v, waited + 1));
                return true;
            }
        }
        self.oom_victim = None;
        // Resident pages per process (a process's map is held by one of its threads).
        let mut rss: BTreeMap<Pid, (usize, &str, u32)> = BTreeMap::new();
        let mine = task.mm.as_ref().map_or(0, |m| m.resident_pages());
        rss.insert(task.tgid, (mine, task.comm.as_str(), task.cred.uid));
        for t in self.procs.iter().filter(|t| !t.is_zombie() && t.group_exit.is_none()) {
            let e = rss.entry(t.tgid).or_insert((0, t.comm.as_str(), t.cred.uid));
            e.0 += t.mm.as_ref().map_or(0, |m| m.resident_pages());
        }
        let Some((&victim, &(pages, comm, uid))) =
            rss.iter().filter(|(&p, _)| p != 1 || rss.len() == 1).max_by_key(|(&p, &(n, _, _))| (n, p))
        else {
            return false;
        };
        let line = format!(
            "Out of memory: Killed process {victim} ({comm}) anon-rss:{}kB, UID:{uid}",
            pages * (crate::mm::PAGE as usize) / 1024
        );
        self.printk(hal, crate::tty::kmsg::ERR, &line);
        if victim == task.tgid {
            return false;
        }
        let group = self.procs.group_pids(Some(task), victim);
        self.group_kill(&mut None, &group, ExitStatus::Signal(g::SIGKILL));
        self.oom_victim = Some((victim, 0));
        true
    }

    /// Complete blocked calls whose deadline passed. (A wait set's wake-up
    /// that passed is [`Kernel::check_waits`]'s.)
    fn check_timeouts<H: Hal>(&mut self, hal: &mut H, now: u64) {
        let mut due: Vec<(Pid, SysResult)> = Vec::new();
        for (d, pid) in self.deadlines.due(now) {
            match self.procs.get(pid).map(|t| t.state) {
                Some(TaskState::Blocked(b)) if b.deadline.is_some_and(|d| d <= now) => {
                    self.deadlines.forget(pid);
                    due.push((pid, b.on_timeout));
                }
                // A wait set's wake-up: `check_waits` wakes it.
                _ if self.deadline_holds(pid, d) => {}
                _ => self.deadlines.forget(pid),
            }
        }
        for (pid, r) in due {
            self.procs.take_wait(pid);
            if let Some(t) = self.procs.get_mut(pid) {
                t.restart_deadline = None;
                t.state = TaskState::Runnable;
                complete(hal, self.trace, t, r);
                self.procs.enqueue(pid);
                self.wakeup_preempt(pid);
            }
        }
    }

    /// Make a blocked task runnable: re-run its call (`result` None) or
    /// finish it with `result`.
    pub fn wake(&mut self, pid: Pid, result: Option<SysResult>) {
        if self.procs.make_runnable(pid, result) {
            self.wakeup_preempt(pid);
        }
    }

    fn handle_trap<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, trap: Trap) {
        match trap {
            Trap::Syscall => self.handle_syscall(hal, task),
            Trap::PageFault { addr, access } => {
                let Some(mm) = task.mm.as_mut() else { return };
                match mm.handle_fault(addr, access, &mut self.frames, hal.phys()) {
                    Ok(()) => {}
                    Err(FaultError::OutOfMemory) if self.oom_kill_other(hal, task) => {
                        // The fault is taken again when the task next runs:
                        // it yields, so that the victim dies first.
                        task.slice_end = 0;
                    }
                    Err(e) => {
                        let (sig, code) = match e {
                            FaultError::Segv { maperr: true } => (g::SIGSEGV, g::SEGV_MAPERR as i32),
                            FaultError::Segv { maperr: false } => (g::SIGSEGV, g::SEGV_ACCERR as i32),
                            FaultError::Bus => (g::SIGBUS, g::BUS_ADRERR as i32),
                            FaultError::OutOfMemory => (g::SIGKILL, 0x80),
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
                        self.fatal_signal(hal, task, SigInfo { signo: sig, code, addr, fault: true, ..SigInfo::default() });
                    }
                }
            }
            Trap::CpuFault { kind, addr } => {
                let (sig, code) = match kind {
                    CpuFaultKind::IllegalInstruction => (g::SIGILL, g::ILL_ILLOPN as i32),
                    CpuFaultKind::DivideError => (g::SIGFPE, g::FPE_INTDIV as i32),
                    CpuFaultKind::FloatingPoint => (g::SIGFPE, g::FPE_FLTINV as i32),
                    CpuFaultKind::Breakpoint => (g::SIGTRAP, 0x80),
                    // A general protection fault reports SI_KERNEL and address 0, as Linux.
                    CpuFaultKind::GeneralProtection => (g::SIGSEGV, 0x80),
                    CpuFaultKind::BusError => (g::SIGBUS, g::BUS_ADRALN as i32),
                };
                let addr = if kind == CpuFaultKind::GeneralProtection { 0 } else { addr };
                if self.trace {
                    hal.log(&format!("[{}] cpu fault {:?} at {:#x}", task.pid, kind, addr));
                }
                self.fatal_signal(hal, task, SigInfo { signo: sig, code, addr, fault: true, ..SigInfo::default() });
            }
            Trap::Interrupt(irq) => self.handle_interrupts(hal, irq),
            Trap::Lost { signal } => {
                let sig = signal.filter(|s| (1..=64).contains(s)).unwrap_or(g::SIGKILL);
                self.printk(hal, crate::tty::kmsg::WARNING, &format!("[{}] host context lost (signal {}): killing the process", task.pid, sig));
                self.exit_task(hal, task, ExitStatus::Signal(sig));
            }
        }
    }

    /// A synchronous fault signal: to a guest handler if there is one (the
    /// loop delivers it before the task runs again), else it kills.
    fn fatal_signal<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, info: SigInfo) {
        if info.signo == g::SIGKILL {
            self.exit_task(hal, task, ExitStatus::Signal(g::SIGKILL));
            return;
        }
        self.fault_signal(task, info);
    }

    fn handle_syscall<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>) {
        // The system call path's one test for ptrace (see `task::ptrace`).
        if task.ptrace.is_some() {
            return self.traced_syscall(hal, task);
        }
        let nr = task.ctx.regs.orig_rax;
        let args = task.ctx.regs.syscall_args();
        let flow = syscall::dispatch(hal, self, task, nr, args);
        self.finish_syscall(hal, task, nr, &args, flow);
    }

    /// Apply what a handler decided for `task`'s call `nr`.
    pub(crate) fn finish_syscall<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, nr: u64, args: &[u64; 6], flow: Flow) {
        task.restart_deadline = None;
        match flow {
            Flow::Ret(r) => complete(hal, self.trace, task, r),
            Flow::Block(mut b) => {
                // "Forever" timeouts stay far below u64::MAX so clock arithmetic never overflows.
                b.deadline = b.deadline.map(|d| d.min(MAX_DEADLINE));
                task.state = TaskState::Blocked(b);
                self.note_blocked(task.pid, &b);
            }
            Flow::Exit(st) => {
                if self.trace {
                    hal.log(&format!("{} = ?", syscall::trace_call(task.pid, nr, args)));
                }
                self.exit_task(hal, task, st);
            }
            Flow::Exec => {
                if self.trace {
                    hal.log(&format!("{} = 0", syscall::trace_call(task.pid, nr, args)));
                }
            }
        }
    }

    /// Release everything a dying task holds and make it a zombie. The
    /// caller re-inserts it and calls [`Kernel::reap_or_notify`]. Shared
    /// memory maps and fd tables pass to another task of their group.
    pub fn exit_task<H: Hal<Space = S>>(&mut self, hal: &mut H, task: &mut Task<S>, st: ExitStatus) {
        self.deadlines.forget(task.pid);
        self.console_waiters.remove(&task.pid);
        // Its last CPU time, split while its address space is still there.
        self.stint_end(task, hal.now_ns());
        let shared = self.procs.mm_shared(task);
        // CLONE_CHILD_CLEARTID: zero the tid word and wake a joiner.
        if task.clear_child_tid != 0 && shared {
            let addr = task.clear_child_tid;
            if let Some(mm) = task.mm.as_mut() {
                if mm.copy_to_user(addr, &0u32.to_le_bytes(), &mut self.frames, hal.phys()).is_ok() {
                    let key = crate::syscall::futex::key_for(mm, task.mm_id, addr, false);
                    crate::syscall::futex::wake_key(self, key, 1, u32::MAX);
                }
            }
        }
        task.clear_child_tid = 0;
        if !task.tracees.is_empty() {
            self.ptrace_tracer_exit(task);
        }
        let (mm_gone, fds_gone) = self.procs.hand_off(task);
        if !mm_gone {
            if let Some(mut mm) = task.mm.take() {
                mm.clear(&mut self.frames);
                // Dropping the map drops the hal space (the backend's host process).
            }
        }
        task.mm = None;
        if !fds_gone {
            task.fds.clear();
        }
        self.procs.take_wait(task.pid);
        self.ipc.task_exit(task.pid);
        task.state = TaskState::Zombie(st);
        task.redo_syscall = false;
        task.stopped = false;
        self.procs.dequeue(task.pid);
        // A vfork parent resumes when the child exits.
        if let Some(pp) = task.vfork_parent.take() {
            self.wake(pp, Some(Ok(task.pid as usize)));
        }
        let pid = task.pid;
        // Orphans go to init; init reaps them. (Only when the whole process is gone.)
        let tgid = task.tgid;
        self.clock.timers.thread_exit(tgid, pid);
        if !self.procs.group_has_live(tgid, pid) {
            self.ipc.process_exit(tgid);
            self.locks.process_exit(tgid);
            self.pidfds.exited(tgid);
            self.clock.timers.process_exit(tgid);
            let mut orphan_zombies = Vec::new();
            let reaper = self.reaper_for(task.ppid);
            let mut death_signals = Vec::new();
            for t in self.procs.iter_mut() {
                if t.ppid == tgid && t.tgid != tgid {
                    t.ppid = reaper;
                    if t.is_zombie() && t.is_leader() {
                        orphan_zombies.push(t.pid);
                    } else if t.pdeathsig != 0 {
                        death_signals.push((t.pid, t.pdeathsig));
                    }
                }
            }
            for (p, sig) in death_signals {
                self.post_signal(None, p, SigInfo::kernel(sig), true);
            }
            // Init hears of orphans already dead as if they died now (Linux's
            // forget_original_parent): SIGCHLD, or reaped at once if it ignores it.
            if pid != 1 {
                for z in orphan_zombies {
                    if !self.procs.group_has_live(z, z) {
                        self.notify_parent(hal, z, reaper);
                    }
                }
            }
        }
    }

    /// Who adopts the orphans of a process whose parent is `ppid`: the
    /// nearest live ancestor that is a child subreaper
    /// (`PR_SET_CHILD_SUBREAPER`), else init.
    fn reaper_for(&self, mut ppid: Pid) -> Pid {
        // Bounded walk up the tree (a chain never exceeds the task count).
        for _ in 0..=self.procs.len() {
            if ppid <= 1 {
                break;
            }
            match self.procs.get(ppid) {
                Some(t) if t.subreaper && !t.is_zombie() => return ppid,
                Some(t) => ppid = t.ppid,
                None => break,
            }
        }
        1
    }

    /// After `pid` became a zombie (and is back in the table): a thread
    /// other than the leader disappears; a process whose last thread died
    /// is reported to its parent (SIGCHLD, wait wake-up) or auto-reaped.
    pub fn reap_or_notify<H: Hal<Space = S>>(&mut self, hal: &mut H, pid: Pid, ppid: Pid) {
        let Some(t) = self.procs.get(pid) else { return };
        let tgid = t.tgid;
        let times = (t.utime_ns, t.stime_ns);
        let traced = t.ptrace.is_some();
        if !t.is_leader() {
            // A traced thread stays until its tracer's wait collects it.
            if !(traced && self.ptrace_tracee_died(pid)) {
                self.procs.take(pid);
            }
            // The process keeps the CPU time of its exited threads.
            if let Some(l) = self.procs.get_mut(tgid) {
                l.utime_ns += times.0;
                l.stime_ns += times.1;
            }
            // The leader died earlier and this was the last thread: report the process.
            let rest = self.procs.iter().any(|o| o.tgid == tgid && !o.is_zombie());
            if !rest && self.procs.get(tgid).is_some_and(|l| l.is_zombie()) {
                let lp = self.procs.get(tgid).map_or(0, |l| l.ppid);
                self.notify_parent(hal, tgid, lp);
            }
            return;
        }
        if self.procs.group_has_live(tgid, pid) {
            return; // reported when the last thread exits
        }
        // A tracer other than the parent collects it first.
        if traced && self.ptrace_tracee_died(pid) {
            return;
        }
        self.notify_parent(hal, pid, ppid);
    }

    /// Tell the parent of dead process `pid`: SIGCHLD (its exit signal),
    /// wake its wait, or reap at once if it ignores SIGCHLD / set SA_NOCLDWAIT.
    pub fn notify_parent<H: Hal<Space = S>>(&mut self, hal: &mut H, pid: Pid, ppid: Pid) {
        let _ = hal;
        let Some(child) = self.procs.get(pid) else { return };
        let (exit_signal, st) = match child.state {
            TaskState::Zombie(st) => (child.exit_signal, st),
            _ => return,
        };
        let ct = (child.utime_ns + child.child_times.0, child.stime_ns + child.child_times.1);
        let Some(parent) = self.procs.get(ppid) else { return };
        let ptgid = parent.tgid;
        let act = parent.signals.actions[(g::SIGCHLD - 1) as usize];
        if exit_signal == g::SIGCHLD && (act.handler == SIG_IGN || act.flags & g::SA_NOCLDWAIT as u64 != 0) {
            self.procs.take(pid);
            // SA_NOCLDWAIT with a handler still gets SIGCHLD (Linux's do_notify_parent).
            if act.handler == SIG_IGN {
                self.wake_waiters_of(ppid);
                return;
            }
        }
        if exit_signal != 0 {
            let (code, status) = match st {
                ExitStatus::Code(c) => (g::CLD_EXITED as i32, c as i32),
                ExitStatus::Signal(s) if s & 0x80 != 0 => (g::CLD_DUMPED as i32, (s & 0x7f) as i32),
                ExitStatus::Signal(s) => (g::CLD_KILLED as i32, s as i32),
            };
            let ticks = (ct.0 / 10_000_000, ct.1 / 10_000_000);
            let info = SigInfo { signo: exit_signal, code, pid, status, times: ticks, ..SigInfo::default() };
            self.post_signal(None, ptgid, info, false);
        }
        self.wake_waiters_of(ppid);
    }

    fn wake_waiters_of(&mut self, ppid: Pid) {
        self.wake_child_waiters(ppid);
    }

    /// Send `sig` (from the kernel) to process `pid` (not the task being handled).
    pub fn send_signal<H: Hal<Space = S>>(&mut self, hal: &mut H, pid: Pid, sig: u32) {
        let _ = hal;
        self.post_signal(None, pid, SigInfo::kernel(sig), false);
    }

    /// Kill everything and drop every address space; log the summary.
    fn shutdown<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        hal.set_timer(None);
        self.armed = None;
        let pids = self.procs.pids();
        for pid in pids {
            if let Some(mut t) = self.procs.take(pid) {
                if !t.is_zombie() {
                    self.exit_task(hal, &mut t, ExitStatus::Signal(g::SIGKILL));
                }
            }
        }
        self.procs.clear();
        // An overlay's upper layer kept on the host gets the guest's changes
        // (while the page caches still hold them).
        for e in self.fs.flush_overlays(&mut self.frames, hal.phys()) {
            self.printk(hal, crate::tty::kmsg::ERR, &format!("overlay: not kept: {e}"));
        }
        // Host files get what was written through their mappings; then the
        // page caches give their frames back.
        if let Err(e) = self.fs.caches.writeback_all(&mut self.frames, hal.phys()) {
            hal.log(&format!("kernel: writing host files back at shutdown failed: {}", e.name()));
        }
        // Disks: their metadata written back and flushed to the host.
        if let Err(e) = self.fs.disks.shutdown() {
            hal.log(&format!("kernel: flushing disks at shutdown failed: {}", e.name()));
        }
        self.fs.caches.release_all(&mut self.frames);
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
            self.printk(hal, crate::tty::kmsg::INFO, &format!("unimplemented syscalls: {}", parts.join(", ")));
        }
    }
}

/// A validated executable, ready to load.
pub struct PreparedExec {
    image: exec::ElfImage,
    inode: Arc<ExecImage>,
    interp: Option<(exec::ElfImage, Arc<ExecImage>)>,
    path: String,
}

/// Strings as `/proc/<pid>/cmdline` shows them: each followed by a NUL.
fn nul_joined(strings: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(strings.iter().map(|s| s.len() + 1).sum());
    for s in strings {
        v.extend_from_slice(s);
        v.push(0);
    }
    v
}

/// The `rax` value of a result.
pub use crate::errno::encode;

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

/// Compatibility shim for callers that raise a signal on the running task
/// by setting `kill_pending`: the loop posts it on the way out (handlers,
/// masks and ignore apply then), so the answer is always "set it".
pub fn decide_signal<S: AddressSpace>(t: &mut Task<S>, sig: u32) -> bool {
    let _ = t;
    sig != 0
}
