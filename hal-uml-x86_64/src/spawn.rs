//! Creating a stub process with the least the host can give it: user,
//! network, IPC, mount and UTS namespaces of its own (created once, shared
//! by all stubs: a network namespace per fork would cost ~0.35 ms at
//! creation, a mount namespace ~2 ms at exit), a PID namespace of its own where the kernel may
//! create one (CAP_SYS_ADMIN; else it has no system call that names a
//! process anyway), an empty, deleted directory as its root, no fds but the
//! ones it needs, no controlling terminal, and death with the kernel thread
//! that created it. Where the host refuses namespaces: a one-line warning
//! and a plain child.
//!
//! Stubs are made by a per-thread zygote (`Zygote`): a helper forked once
//! that joins the namespaces and root once and then creates each stub with
//! `clone(CLONE_VM | CLONE_VFORK | CLONE_PARENT)`, so the kernel's page
//! tables are not copied for every stub (measured: fork+exit+wait about
//! twice as fast under skas). Where no zygote can be started, or with
//! `RUSTUML_STUB_ZYGOTE=0`, the kernel forks each stub itself.

use hal_uml_host::sys;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The namespaces created once and shared by all stubs (a fresh network
/// namespace costs ~0.35 ms: too much for every fork): user, network, IPC.
/// A mount namespace per stub costs ~2 ms at its exit (the host waits for
/// an RCU grace period while tearing it down): shared too. Stubs cannot
/// make any system call that would use or change one anyway.
const SHARED_NS: i32 =
    libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWNS | libc::CLONE_NEWUTS;

/// 0: not tried yet, 1: namespaces work, 2: they do not (warned once).
static NS_STATE: AtomicU8 = AtomicU8::new(0);
/// 0: not tried yet, 1: stubs get their own PID namespace, 2: not allowed.
static PIDNS_STATE: AtomicU8 = AtomicU8::new(0);

/// fds of the shared user, network and IPC namespaces, kept open (the
/// process that created them is gone).
fn shared_namespaces() -> Option<[i32; 5]> {
    static NS: OnceLock<Option<[i32; 5]>> = OnceLock::new();
    *NS.get_or_init(|| {
        let t0 = std::time::Instant::now();
        let r = create_shared_namespaces();
        if std::env::var_os("SKAS_PROFILE").is_some() {
            eprintln!("skas: shared namespaces created in {:?}", t0.elapsed());
        }
        r
    })
}

fn create_shared_namespaces() -> Option<[i32; 5]> {
    {
        // SAFETY: a fork-like clone; the child only sleeps until killed (raw system calls).
        let pid = unsafe { libc::syscall(libc::SYS_clone, (SHARED_NS | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if pid == 0 {
            // SAFETY: async-signal-safe calls only.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                loop {
                    libc::pause();
                }
            }
        }
        if pid < 0 {
            return None;
        }
        let pid = pid as i32;
        let mut fds = [-1; 5];
        for (fd, ns) in fds.iter_mut().zip(["user", "net", "ipc", "mnt", "uts"]) {
            let path = std::ffi::CString::new(format!("/proc/{pid}/ns/{ns}")).ok()?;
            // SAFETY: a valid C string; the result is checked below.
            *fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        }
        sys::kill_and_reap(pid);
        if fds.iter().any(|&f| f < 0) {
            for f in fds.into_iter().filter(|&f| f >= 0) {
                // SAFETY: closing fds we opened.
                unsafe { libc::close(f) };
            }
            return None;
        }
        Some(fds)
    }
}

/// The fds a stub receives (by the numbers it expects them under).
#[derive(Clone, Copy, Debug)]
pub struct ChildFds {
    /// The physical-memory memfd, as [`crate::ptrace::PHYS_FD`].
    pub phys: i32,
    /// The stub image memfd (executed, close-on-exec).
    pub image: i32,
    /// The seccomp stub's shared memfd, as [`crate::stub::COMM_FD`].
    pub comm: Option<i32>,
}

/// Start creating the shared namespaces in the background (it takes 1–5 ms,
/// mostly the network namespace), so that the first stub does not wait for
/// all of it.
pub fn prepare() {
    if std::env::var_os("RUSTUML_STUB_NS").is_none_or(|v| v != "0") {
        std::thread::spawn(shared_namespaces);
    }
}

/// Whether stubs run in their own namespaces (after the first spawn).
pub fn namespaces_in_use() -> bool {
    NS_STATE.load(Ordering::Relaxed) == 1
}

/// Whether each stub is process 1 of its own PID namespace (after the first
/// spawn; needs CAP_SYS_ADMIN in the kernel's user namespace).
pub fn pid_namespaces_in_use() -> bool {
    PIDNS_STATE.load(Ordering::Relaxed) == 1
}

/// An empty directory, already deleted, used as every stub's root: nothing
/// can be created in it and nothing is found under it.
pub(crate) fn empty_root() -> i32 {
    static ROOT: OnceLock<i32> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let mut tmpl = std::env::temp_dir().join("rustuml-stub-root-XXXXXX").into_os_string().into_encoded_bytes();
        tmpl.push(0);
        // SAFETY: `tmpl` is a writable NUL-terminated template.
        let p = unsafe { libc::mkdtemp(tmpl.as_mut_ptr().cast()) };
        if p.is_null() {
            return -1;
        }
        // SAFETY: `p` is the NUL-terminated path mkdtemp wrote into `tmpl`.
        let fd = unsafe { libc::open(p, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        // SAFETY: removing the directory we just created.
        unsafe { libc::rmdir(p) };
        fd
    })
}

/// Create a stub process running the image (traced, stopped at its exec, if
/// `traceme`). Returns its pid (in our PID namespace).
/// `cpu`: pin the stub to that CPU (else it inherits the caller's affinity).
///
/// Stubs come from this thread's zygote (see the module docs) where it can be started
/// (`RUSTUML_STUB_ZYGOTE=0` disables it), else straight from the kernel.
pub fn spawn(kernel_pid: i32, fds: ChildFds, traceme: bool, cpu: Option<usize>) -> io::Result<i32> {
    start(kernel_pid, fds, traceme, cpu).finish()
}

/// Begin [`spawn`]: through the zygote the request is sent now and its
/// answer read by [`Spawning::finish`], so the caller goes on while the
/// zygote forks and the stub execs. One spawn at a time per thread.
pub fn start(kernel_pid: i32, fds: ChildFds, traceme: bool, cpu: Option<usize>) -> Spawning {
    let root = empty_root();
    let want_ns = std::env::var_os("RUSTUML_STUB_NS").is_none_or(|v| v != "0");
    let shared = if want_ns && NS_STATE.load(Ordering::Relaxed) != 2 { shared_namespaces() } else { None };
    if want_ns && shared.is_none() && NS_STATE.swap(2, Ordering::Relaxed) != 2 {
        eprintln!("skas: stubs run without their own namespaces (the host refused them)");
    }
    let req = Request { kernel_pid, fds, traceme, cpu, root, shared };
    Spawning { asked: zygote_ask(&req), req }
}

/// What one stub is made from.
#[derive(Clone, Copy)]
struct Request {
    kernel_pid: i32,
    fds: ChildFds,
    traceme: bool,
    cpu: Option<usize>,
    root: i32,
    shared: Option<[i32; 5]>,
}

/// A stub under way (see [`start`]).
pub struct Spawning {
    req: Request,
    /// Asked the zygote (request token, and with a PID namespace of its
    /// own?); its answer is still to be read.
    asked: Option<(u64, bool)>,
}

impl Spawning {
    /// The stub's pid once it has exec'd.
    pub fn finish(mut self) -> io::Result<i32> {
        if let Some((token, pidns)) = self.asked.take() {
            if let Some(r) = zygote_answer(&self.req, token, pidns) {
                return r;
            }
        }
        direct_spawn(&self.req)
    }
}

impl Drop for Spawning {
    fn drop(&mut self) {
        // Abandoned: read the answer (the next request must not get this
        // one's) and end the stub.
        if let Some((token, pidns)) = self.asked.take() {
            if let Some(Ok(pid)) = zygote_answer(&self.req, token, pidns) {
                sys::kill_and_reap(pid);
            }
        }
    }
}

/// Fork the stub from the kernel itself (no zygote).
fn direct_spawn(r: &Request) -> io::Result<i32> {
    if CONFINED.load(Ordering::Relaxed) {
        // The zygote is gone and the confined kernel cannot fork.
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    loop {
        let pidns = r.shared.is_some()
            && PIDNS_STATE.load(Ordering::Relaxed) != 2
            && std::env::var_os("RUSTUML_STUB_PIDNS").is_none_or(|v| v != "0");
        let flags = if pidns { libc::CLONE_NEWPID } else { 0 } | libc::SIGCHLD;
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child only runs `child`, which makes raw system calls.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if pid == 0 {
            child(r.kernel_pid, r.fds, r.traceme, r.root, r.shared, pidns, r.cpu);
        }
        if pid > 0 {
            if r.shared.is_some() {
                NS_STATE.store(1, Ordering::Relaxed);
            }
            if pidns {
                PIDNS_STATE.store(1, Ordering::Relaxed);
            }
            return Ok(pid as i32);
        }
        let e = io::Error::last_os_error();
        if pidns {
            // Not privileged enough for a PID namespace per stub: the others
            // still apply (and the stub can name no process: it has no
            // system call that takes a pid).
            PIDNS_STATE.store(2, Ordering::Relaxed);
            continue;
        }
        return Err(e);
    }
}

/// The child side: runs between clone and exec, so it only makes raw system
/// calls (no allocation, no locks).
fn child(
    kernel_pid: i32,
    fds: ChildFds,
    traceme: bool,
    root: i32,
    shared: Option<[i32; 5]>,
    new_pidns: bool,
    cpu: Option<usize>,
) -> ! {
    use crate::ptrace::PHYS_FD;
    use crate::stub::COMM_FD;
    const IMAGE_FD: i32 = 4;
    let argv: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    // SAFETY: async-signal-safe system calls only; every pointer is valid.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        // The kernel may have died before PDEATHSIG was armed. (In a new PID
        // namespace the parent is invisible: getppid() is 0, so that short
        // window is not covered.)
        if !new_pidns && libc::getppid() != kernel_pid {
            libc::_exit(1);
        }
        // Out of the kernel's session: terminal signals (^C) go to the
        // kernel, not to stubs.
        libc::setsid();
        if traceme && libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
            libc::_exit(1);
        }
        if let Some(cpu) = cpu {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Join the shared namespaces (full capabilities in that user
        // namespace: it is ours).
        if let Some([user, net, ipc, mnt, uts]) = shared {
            if libc::setns(user, libc::CLONE_NEWUSER) != 0
                || libc::setns(net, libc::CLONE_NEWNET) != 0
                || libc::setns(ipc, libc::CLONE_NEWIPC) != 0
                || libc::setns(mnt, libc::CLONE_NEWNS) != 0
                || libc::setns(uts, libc::CLONE_NEWUTS) != 0
            {
                libc::_exit(1);
            }
        }
        // An empty root (needs CAP_SYS_CHROOT: granted in our own user
        // namespace; without one this fails and the host root stays — the
        // stub still cannot open anything, its filter forbids it).
        if root >= 0 && libc::fchdir(root) == 0 {
            libc::chroot(c".".as_ptr());
        }
        // Move the fds out of the way first, so dup2 cannot clobber one.
        let p = libc::fcntl(fds.phys, libc::F_DUPFD, 100);
        let i = libc::fcntl(fds.image, libc::F_DUPFD, 100);
        let c = match fds.comm {
            Some(c) => libc::fcntl(c, libc::F_DUPFD, 100),
            None => 0,
        };
        if p < 0 || i < 0 || c < 0 || libc::dup2(p, PHYS_FD) < 0 || libc::dup2(i, IMAGE_FD) < 0 {
            libc::_exit(1);
        }
        if fds.comm.is_some() && libc::dup2(c, COMM_FD) < 0 {
            libc::_exit(1);
        }
        libc::fcntl(IMAGE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        // The stub keeps nothing of the kernel's: not even stdio.
        let last = if fds.comm.is_some() { COMM_FD } else { IMAGE_FD };
        libc::close_range(last as u32 + 1, u32::MAX, 0);
        for fd in 0..PHYS_FD {
            libc::close(fd);
        }
        libc::execveat(IMAGE_FD, c"".as_ptr(), argv.as_ptr(), argv.as_ptr(), libc::AT_EMPTY_PATH);
        libc::_exit(127)
    }
}

// ---------------------------------------------------------------- zygote

/// A small helper process, one per kernel thread that spawns stubs, that
/// creates the stubs. Forking the kernel itself for every stub copies its
/// page tables (tens of MB of heap: the packed root directory, page tables
/// of the guests' maps), makes every later write of the kernel to that
/// memory a copy-on-write fault, and has `execve` tear the copy down again
/// — ≈ 0.3 ms per stub. The zygote is forked once, joins the stubs'
/// namespaces and empty root once, and then makes each stub with
/// `clone(CLONE_VM | CLONE_VFORK | CLONE_PARENT)`: no page tables are
/// copied, and the stub is still the kernel thread's child (so it can be
/// waited for and traced, and dies with that thread, exactly as before).
///
/// Protocol over a `SOCK_SEQPACKET` pair: a request is [`ZReq`] with the
/// physical-memory, image and (seccomp) mailbox fds attached; the answer is
/// [`ZRep`]. The zygote has no other fd but the stub images it was given
/// (at its start, and by `OP_ADD_IMAGE` until the kernel locks it before
/// confining itself), only makes raw system calls, and exits when the
/// kernel's end of the socket closes or the thread dies.
///
/// It runs only those images: the image a request brings only names one
/// of them (same file), and the zygote execs its own copy. A kernel taken
/// over after it confined itself could otherwise hand the unconfined
/// zygote a program of its own and have it run without the stub's filter.
/// The images are sealed memfds ([`IMAGE_SEALS`]), so their bytes are the
/// ones built at boot.
struct Zygote {
    pid: i32,
    sock: i32,
    /// The images it runs, by file identity (`st_dev`, `st_ino`).
    images: Vec<(u64, u64)>,
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // SAFETY: closing our socket end, which nothing else uses.
        unsafe { libc::close(self.sock) };
        sys::kill_and_reap(self.pid);
    }
}

/// A stub request.
#[repr(C)]
#[derive(Clone, Copy)]
struct ZReq {
    /// Echoed in the answer: requests can be outstanding for several
    /// spawns of one thread (see [`Spawning`]).
    token: u64,
    /// [`OP_SPAWN`], [`OP_ADD_IMAGE`] or [`OP_LOCK`].
    op: u8,
    traceme: u8,
    pidns: u8,
    comm: u8,
    cpu: i32,
}

/// Make a stub (fds: physical memory, image, and the mailbox if `comm`).
const OP_SPAWN: u8 = 0;
/// Run this sealed image too (fd: the image); refused once locked.
const OP_ADD_IMAGE: u8 = 1;
/// No more images: sent before the kernel confines itself.
const OP_LOCK: u8 = 2;

/// The answer: the stub's pid (0 if none), an errno (0: the stub exec'd),
/// and whether it got its own PID namespace.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ZRep {
    token: u64,
    pid: i32,
    err: i32,
    pidns: u8,
}

/// What the zygote hands its vfork child (shared memory: `CLONE_VM`).
#[repr(C)]
struct ZChild {
    fds: [i32; 3],
    comm: bool,
    traceme: bool,
    pidns: bool,
    cpu: i32,
    kernel_pid: i32,
    /// Set by the child when it fails before `execve`.
    err: i32,
}

enum ZState {
    Untried,
    Ready(Zygote),
    Failed,
}

/// The seals every stub image carries: its bytes can never change.
pub const IMAGE_SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// The most stub images one zygote runs (one per trap mechanism of its thread).
const MAX_IMAGES: usize = 8;

/// Make `fd` (a sealed stub image) one the zygote of this thread started from
/// now on runs.
pub fn register_image(fd: i32) {
    IMAGES.with(|i| i.borrow_mut().push(fd));
}

/// Forget and close a stub image of [`register_image`].
pub fn close_image(fd: i32) {
    IMAGES.with(|i| i.borrow_mut().retain(|&f| f != fd));
    // SAFETY: closing an fd its owner gives up.
    unsafe { libc::close(fd) };
}

/// Does `fd` carry every seal of a stub image? (Raw system call: the
/// zygote uses it. A file that cannot be sealed answers -1, all bits set.)
fn sealed(fd: i32) -> bool {
    // SAFETY: fcntl(F_GET_SEALS) only reads the descriptor's seals.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    seals >= 0 && seals & IMAGE_SEALS == IMAGE_SEALS
}

/// The identity of the file `fd` refers to.
fn file_identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

thread_local! {
    /// This thread's stub images ([`register_image`]).
    static IMAGES: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    // Per thread: a stub's parent (for waiting, tracing and PDEATHSIG) is
    // the thread that forked the zygote.
    static ZYGOTE: std::cell::RefCell<ZState> = const { std::cell::RefCell::new(ZState::Untried) };
    /// The last request's token, and answers read for other requests than
    /// the reader's (the zygote answers in order).
    static TOKENS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static ANSWERS: std::cell::RefCell<Vec<ZRep>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Set once the kernel confined itself ([`crate::sandbox`]): from then on it
/// may not fork, so stubs come from the zygote or not at all.
static CONFINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Before the kernel confines itself: create the stubs' namespaces and this
/// thread's zygote now (they need paths and `fork`, which confinement takes
/// away), and make every later spawn go through the zygote. False if no
/// zygote could be started (then the kernel must not confine itself).
pub fn prepare_confinement(kernel_pid: i32) -> bool {
    let root = empty_root();
    let want_ns = std::env::var_os("RUSTUML_STUB_NS").is_none_or(|v| v != "0");
    let shared = if want_ns { shared_namespaces() } else { None };
    if std::env::var_os("RUSTUML_STUB_ZYGOTE").is_some_and(|v| v == "0") {
        return false;
    }
    let ready = ZYGOTE.with(|z| {
        let mut z = z.borrow_mut();
        if matches!(*z, ZState::Untried) {
            *z = match start_zygote(kernel_pid, root, shared) {
                Some(zy) => ZState::Ready(zy),
                None => ZState::Failed,
            };
        }
        // From now on it runs only the images it has.
        matches!(&*z, ZState::Ready(zy) if zygote_call(zy.sock, OP_LOCK, &[]).is_some_and(|rep| rep.err == 0))
    });
    if ready {
        CONFINED.store(true, Ordering::Relaxed);
    }
    ready
}

/// Whether this thread's stubs come from a zygote (after its first spawn).
pub fn zygote_in_use() -> bool {
    ZYGOTE.with(|z| matches!(*z.borrow(), ZState::Ready(_)))
}

/// Size of the zygote's stack for its vfork children.
const ZSTACK: usize = 64 * 1024;

/// Send a spawn request to this thread's zygote (started on first use).
/// `None`: no zygote (disabled, or it could not be started): use the direct
/// path; else the request's token and whether the stub was asked for its own
/// PID namespace.
fn zygote_ask(r: &Request) -> Option<(u64, bool)> {
    if std::env::var_os("RUSTUML_STUB_ZYGOTE").is_some_and(|v| v == "0") {
        return None;
    }
    ZYGOTE.with(|z| {
        let mut z = z.borrow_mut();
        if matches!(*z, ZState::Untried) {
            *z = match start_zygote(r.kernel_pid, r.root, r.shared) {
                Some(zy) => ZState::Ready(zy),
                None => ZState::Failed,
            };
        }
        let ZState::Ready(zy) = &mut *z else { return None };
        if let Some(id) = file_identity(r.fds.image).filter(|id| !zy.images.contains(id)) {
            // An image made after this zygote started (a new machine on
            // this thread), before the kernel confined itself.
            if zygote_call(zy.sock, OP_ADD_IMAGE, &[r.fds.image]).is_some_and(|rep| rep.err == 0) {
                zy.images.push(id);
            }
        }
        let pidns = r.shared.is_some()
            && PIDNS_STATE.load(Ordering::Relaxed) != 2
            && std::env::var_os("RUSTUML_STUB_PIDNS").is_none_or(|v| v != "0");
        let fds = r.fds;
        let token = TOKENS.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        let req = ZReq { token, op: OP_SPAWN, traceme: r.traceme as u8, pidns: pidns as u8, comm: fds.comm.is_some() as u8, cpu: r.cpu.map_or(-1, |c| c as i32) };
        let sent = [fds.phys, fds.image, fds.comm.unwrap_or(fds.image)];
        if zygote_send(zy.sock, &req, &sent[..if fds.comm.is_some() { 3 } else { 2 }]) {
            Some((token, pidns))
        } else {
            // The zygote is gone: the direct path from now on.
            *z = ZState::Failed;
            None
        }
    })
}

/// Read the zygote's answer to [`zygote_ask`]. `None`: use the direct path.
fn zygote_answer(r: &Request, token: u64, pidns: bool) -> Option<io::Result<i32>> {
    ZYGOTE.with(|z| {
        let mut z = z.borrow_mut();
        let ZState::Ready(zy) = &*z else { return None };
        match zygote_wait(zy.sock, token) {
            Some(rep) => {
                if r.shared.is_some() {
                    NS_STATE.store(1, Ordering::Relaxed);
                }
                if pidns {
                    PIDNS_STATE.store(if rep.pidns != 0 { 1 } else { 2 }, Ordering::Relaxed);
                }
                if rep.pid <= 0 && matches!(rep.err, libc::EINVAL | libc::ENOSYS | libc::EPERM) {
                    // The host (or an emulator) does not let the zygote
                    // clone this way: the direct path from now on.
                    *z = ZState::Failed;
                    return None;
                }
                if rep.err != 0 {
                    if rep.pid > 0 {
                        // Our own child, already exited.
                        sys::reap(rep.pid);
                    }
                    return Some(Err(io::Error::from_raw_os_error(rep.err)));
                }
                Some(Ok(rep.pid))
            }
            None => {
                // The zygote is gone: the direct path from now on.
                *z = ZState::Failed;
                None
            }
        }
    })
}

/// The answer to request `token`; answers to others read on the way are
/// kept for their readers (the zygote answers in order). `None`: it is gone.
fn zygote_wait(sock: i32, token: u64) -> Option<ZRep> {
    let stashed = ANSWERS.with(|a| {
        let mut a = a.borrow_mut();
        let i = a.iter().position(|rep| rep.token == token)?;
        Some(a.swap_remove(i))
    });
    stashed.or_else(|| loop {
        let rep = zygote_recv(sock)?;
        if rep.token == token {
            break Some(rep);
        }
        ANSWERS.with(|a| a.borrow_mut().push(rep));
    })
}

/// Send an image-table request (`OP_ADD_IMAGE`, `OP_LOCK`) and wait for its answer.
fn zygote_call(sock: i32, op: u8, fds: &[i32]) -> Option<ZRep> {
    let token = TOKENS.with(|t| {
        t.set(t.get() + 1);
        t.get()
    });
    let req = ZReq { token, op, traceme: 0, pidns: 0, comm: 0, cpu: -1 };
    zygote_send(sock, &req, fds).then(|| zygote_wait(sock, token)).flatten()
}

/// Send one request with its fds; false if the zygote is gone.
fn zygote_send(sock: i32, req: &ZReq, fds: &[i32]) -> bool {
    let mut cbuf = [0u64; 8];
    let clen = std::mem::size_of_val(fds);
    let mut iov = libc::iovec { iov_base: (req as *const ZReq).cast_mut().cast(), iov_len: std::mem::size_of::<ZReq>() };
    // SAFETY: a zeroed msghdr is valid; the pointers below point at live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fds.is_empty() {
        // SAFETY: `msg` describes a valid buffer (no control data).
        return unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) >= 0 };
    }
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(clen as u32) } as usize;
    // SAFETY: the control buffer (64 bytes) holds one header and three fds; CMSG_FIRSTHDR/CMSG_DATA stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(clen as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<i32>(), fds.len());
    }
    // SAFETY: `msg` describes valid buffers.
    unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) >= 0 }
}

/// Read one answer; `None` if the zygote does not answer.
fn zygote_recv(sock: i32) -> Option<ZRep> {
    let mut rep = ZRep::default();
    loop {
        // SAFETY: receiving into a local of the answer's size.
        let n = unsafe { libc::recv(sock, (&mut rep as *mut ZRep).cast(), std::mem::size_of::<ZRep>(), 0) };
        if n == std::mem::size_of::<ZRep>() as isize {
            return Some(rep);
        }
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Fork the zygote and wait until it is in place (namespaces, root).
fn start_zygote(kernel_pid: i32, root: i32, shared: Option<[i32; 5]>) -> Option<Zygote> {
    let sv = sys::seqpacket_pair().ok()?;
    let cpus = crate::host::allowed_cpus();
    let mut images = [-1; MAX_IMAGES];
    let mut ids = Vec::new();
    IMAGES.with(|i| {
        for (slot, &fd) in images.iter_mut().zip(i.borrow().iter().rev()) {
            *slot = fd;
            ids.extend(file_identity(fd));
        }
    });
    // SAFETY: a fork-like clone; the child only runs `zygote_main` (raw system calls, no allocation, no locks).
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        zygote_main(kernel_pid, sv[1], root, shared, &cpus, &images);
    }
    // SAFETY: closing the zygote's end in the kernel.
    unsafe { libc::close(sv[1]) };
    if pid < 0 {
        // SAFETY: closing our end.
        unsafe { libc::close(sv[0]) };
        return None;
    }
    let z = Zygote { pid: pid as i32, sock: sv[0], images: ids };
    let mut ok = 1u8;
    loop {
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::recv(z.sock, (&mut ok as *mut u8).cast(), 1, 0) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // Anything but a 0 byte: it could not set itself up (dropping `z` reaps it).
        return (n == 1 && ok == 0).then_some(z);
    }
}

/// The zygote: set up once, then serve requests until the socket closes.
fn zygote_main(kernel_pid: i32, sock: i32, root: i32, shared: Option<[i32; 5]>, cpus: &libc::cpu_set_t, images: &[i32; MAX_IMAGES]) -> ! {
    // SAFETY: raw system calls and libc wrappers that are async-signal-safe; every pointer is to a live local.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != kernel_pid {
            libc::_exit(1);
        }
        libc::setsid();
        // Neither pinned with the kernel nor batch: a stub's set-up (its
        // exec, above all) runs on whichever CPU is free, and preempts what
        // runs there when woken (a batch task would wait out the other
        // task's slice); the stub pins itself and turns batch at its end
        // (see `stub::build_image_with`).
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus);
        let normal = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let fail = |sock: i32| -> ! {
            let b = 1u8;
            libc::send(sock, (&b as *const u8).cast(), 1, libc::MSG_NOSIGNAL);
            libc::_exit(1)
        };
        if let Some([user, net, ipc, mnt, uts]) = shared {
            if libc::setns(user, libc::CLONE_NEWUSER) != 0
                || libc::setns(net, libc::CLONE_NEWNET) != 0
                || libc::setns(ipc, libc::CLONE_NEWIPC) != 0
                || libc::setns(mnt, libc::CLONE_NEWNS) != 0
                || libc::setns(uts, libc::CLONE_NEWUTS) != 0
            {
                fail(sock);
            }
        }
        if root >= 0 && libc::fchdir(root) == 0 {
            libc::chroot(c".".as_ptr());
        }
        // The images it will run, each by its file identity: only sealed
        // ones, whose bytes cannot change.
        let mut known = [(-1i32, 0u64, 0u64); MAX_IMAGES];
        for (k, &fd) in known.iter_mut().zip(images) {
            let mut st: libc::stat = std::mem::zeroed();
            if fd >= 0 && sealed(fd) && libc::fstat(fd, &mut st) == 0 {
                *k = (fd, st.st_dev, st.st_ino);
            }
        }
        // Nothing of the kernel's but the socket and those images.
        let keep = |fd: i32| fd == sock || known.iter().any(|k| k.0 == fd);
        let top = known.iter().map(|k| k.0).fold(sock, i32::max);
        for fd in 0..top {
            if !keep(fd) {
                libc::close(fd);
            }
        }
        libc::close_range(top as u32 + 1, u32::MAX, 0);
        let stack = libc::mmap(
            std::ptr::null_mut(),
            ZSTACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if stack == libc::MAP_FAILED {
            fail(sock);
        }
        let ready = 0u8;
        libc::send(sock, (&ready as *const u8).cast(), 1, libc::MSG_NOSIGNAL);
        let mut locked = false;
        loop {
            let mut req = ZReq { token: 0, op: OP_SPAWN, traceme: 0, pidns: 0, comm: 0, cpu: -1 };
            let mut cbuf = [0u64; 8];
            let mut iov = libc::iovec { iov_base: (&mut req as *mut ZReq).cast(), iov_len: std::mem::size_of::<ZReq>() };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cbuf);
            let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                libc::_exit(0);
            }
            let mut got = [-1i32; 3];
            let mut ngot = 0;
            let c = libc::CMSG_FIRSTHDR(&msg);
            if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                ngot = (((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4).min(3);
                for (i, g) in got.iter_mut().enumerate().take(ngot) {
                    *g = *data.add(i);
                }
            }
            let mut rep = ZRep { token: req.token, ..ZRep::default() };
            if n as usize == std::mem::size_of::<ZReq>() && req.op != OP_SPAWN {
                let mut st: libc::stat = std::mem::zeroed();
                let slot = known.iter().position(|k| k.0 < 0);
                if req.op == OP_LOCK {
                    locked = true;
                } else if locked {
                    rep.err = libc::EPERM;
                } else if req.op != OP_ADD_IMAGE || ngot != 1 {
                    rep.err = libc::EINVAL;
                } else if !sealed(got[0]) || libc::fstat(got[0], &mut st) != 0 {
                    rep.err = libc::EACCES;
                } else if let Some(i) = slot {
                    known[i] = (got[0], st.st_dev, st.st_ino);
                    // Kept: not closed below.
                    got[0] = -1;
                } else {
                    rep.err = libc::ENOSPC;
                }
                for &f in got.iter().take(ngot) {
                    if f >= 0 {
                        libc::close(f);
                    }
                }
                libc::send(sock, (&rep as *const ZRep).cast(), std::mem::size_of::<ZRep>(), libc::MSG_NOSIGNAL);
                continue;
            }
            let want = if req.comm != 0 { 3 } else { 2 };
            // The image named by the request, as the zygote's own fd.
            let mut st: libc::stat = std::mem::zeroed();
            let image = if ngot >= 2 && libc::fstat(got[1], &mut st) == 0 {
                known.iter().find(|k| k.0 >= 0 && (k.1, k.2) == (st.st_dev, st.st_ino)).map(|k| k.0)
            } else {
                None
            };
            if n as usize != std::mem::size_of::<ZReq>() || ngot != want {
                rep.err = libc::EINVAL;
            } else if let Some(image) = image {
                let mut fds = got;
                fds[1] = image;
                let mut args = ZChild {
                    fds,
                    comm: req.comm != 0,
                    traceme: req.traceme != 0,
                    pidns: req.pidns != 0,
                    cpu: req.cpu,
                    kernel_pid,
                    err: 0,
                };
                let top = stack.cast::<u8>().add(ZSTACK).cast();
                let base = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT | libc::SIGCHLD;
                let argp = (&mut args as *mut ZChild).cast();
                let mut pid = -1;
                if args.pidns {
                    pid = libc::clone(zygote_child, top, base | libc::CLONE_NEWPID, argp);
                    if pid < 0 {
                        args.pidns = false;
                    }
                }
                if pid < 0 {
                    pid = libc::clone(zygote_child, top, base, argp);
                }
                rep.pidns = args.pidns as u8;
                // The child has exec'd or exited: `args.err` is final.
                if pid < 0 {
                    rep.err = *libc::__errno_location();
                } else {
                    rep.pid = pid;
                    rep.err = std::ptr::read_volatile(&args.err);
                }
            } else {
                // Not one of the images it was started with: refused.
                rep.err = libc::EACCES;
            }
            for &f in got.iter().take(ngot) {
                libc::close(f);
            }
            libc::send(sock, (&rep as *const ZRep).cast(), std::mem::size_of::<ZRep>(), libc::MSG_NOSIGNAL);
        }
    }
}

/// The zygote's vfork child (shares the zygote's memory until `execve`):
/// the per-stub part of [`child`].
extern "C" fn zygote_child(arg: *mut libc::c_void) -> libc::c_int {
    use crate::ptrace::PHYS_FD;
    use crate::stub::COMM_FD;
    const IMAGE_FD: i32 = 4;
    // SAFETY: `arg` is the zygote's `ZChild`, alive until this child execs or exits (CLONE_VFORK).
    let a = unsafe { &mut *arg.cast::<ZChild>() };
    let argv: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    // SAFETY: async-signal-safe system calls only; every pointer is valid.
    unsafe {
        let die = |a: &mut ZChild| -> ! {
            std::ptr::write_volatile(&mut a.err, (*libc::__errno_location()).max(1));
            libc::_exit(127)
        };
        // The parent is the kernel thread (CLONE_PARENT).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if !a.pidns && libc::getppid() != a.kernel_pid {
            die(a);
        }
        libc::setsid();
        if a.traceme && libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
            die(a);
        }
        if a.cpu >= 0 {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(a.cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        // Move the fds out of the way first, so dup2 cannot clobber one
        // (they arrived close-on-exec at the lowest free numbers; the
        // copies made here are not close-on-exec).
        let [p, i, c] = a.fds;
        let p = libc::fcntl(p, libc::F_DUPFD, 100);
        let i = libc::fcntl(i, libc::F_DUPFD, 100);
        let c = if a.comm { libc::fcntl(c, libc::F_DUPFD, 100) } else { 0 };
        if p < 0 || i < 0 || c < 0 || libc::dup2(p, PHYS_FD) < 0 || libc::dup2(i, IMAGE_FD) < 0 {
            die(a);
        }
        if a.comm && libc::dup2(c, COMM_FD) < 0 {
            die(a);
        }
        libc::fcntl(IMAGE_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        // The zygote execs only the images it was started with; should that
        // wall fall, a setuid program's fd still gains nothing by exec.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die(a);
        }
        let last = if a.comm { COMM_FD } else { IMAGE_FD };
        libc::close_range(last as u32 + 1, u32::MAX, 0);
        for fd in 0..PHYS_FD {
            libc::close(fd);
        }
        libc::execveat(IMAGE_FD, c"".as_ptr(), argv.as_ptr(), argv.as_ptr(), libc::AT_EMPTY_PATH);
        die(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stub from the zygote is the calling thread's child, traced by it
    /// (`PTRACE_TRACEME`), running the image in the empty root; several in a
    /// row reuse one zygote, and it goes away with the thread.
    #[test]
    fn zygote_spawns_traced_children_of_the_caller() {
        std::thread::spawn(|| {
            if std::env::var_os("RUSTUML_STUB_ZYGOTE").is_some_and(|v| v == "0") {
                return;
            }
            let (image, _) = crate::stub::build_image_for(false);
            let image = crate::ptrace::image_memfd(&image).unwrap();
            let phys = hal_uml_host::phys::MemfdPhys::new(1 << 20).unwrap();
            let me = sys::getpid();
            let fds = ChildFds { phys: phys.fd(), image, comm: None };
            let mut zpid = None;
            for _ in 0..3 {
                let pid = spawn(me, fds, true, None).unwrap();
                assert!(zygote_in_use());
                // The exec stop: we are its tracer, so it is our child.
                assert_eq!(crate::ptrace::wait_for_stop(pid), Some(libc::SIGTRAP));
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let field = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap().split_whitespace().nth(1).unwrap().to_string();
                let tid = sys::gettid();
                assert_eq!(field("TracerPid:"), tid.to_string(), "traced by the spawning thread");
                assert_eq!(field("PPid:"), me.to_string());
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
                assert!(exe.to_string_lossy().contains("rustuml-skas-stub"), "{}", exe.display());
                let z = ZYGOTE.with(|z| match &*z.borrow() {
                    ZState::Ready(z) => z.pid,
                    _ => 0,
                });
                assert_eq!(*zpid.get_or_insert(z), z, "one zygote per thread");
                sys::kill_and_reap(pid);
            }
            close_image(image);
            // The zygote is reaped when the thread's state is dropped.
            let z = zpid.unwrap();
            ZYGOTE.with(|z| *z.borrow_mut() = ZState::Untried);
            // A signal-0 probe of the pid.
            assert!(sys::kill(z, 0).is_err(), "zygote still there");
        })
        .join()
        .unwrap();
    }

    /// The zygote runs only the sealed images it was given: a request
    /// naming any other program (a host binary, an unregistered copy of the
    /// stub, even sealed) is refused, nothing unsealed can be added, nothing
    /// at all once it is locked, and it goes on serving the real image.
    #[test]
    fn zygote_refuses_images_it_was_not_started_with() {
        std::thread::spawn(|| {
            if std::env::var_os("RUSTUML_STUB_ZYGOTE").is_some_and(|v| v == "0") {
                return;
            }
            let (bytes, _) = crate::stub::build_image_for(false);
            let image = crate::ptrace::image_memfd(&bytes).unwrap();
            // A sealed copy the zygote was never told about.
            let copy = crate::ptrace::image_memfd(&bytes).unwrap();
            IMAGES.with(|i| i.borrow_mut().retain(|&f| f != copy));
            let phys = hal_uml_host::phys::MemfdPhys::new(1 << 20).unwrap();
            let me = sys::getpid();
            let fds = ChildFds { phys: phys.fd(), image, comm: None };
            let pid = spawn(me, fds, true, None).unwrap();
            assert_eq!(crate::ptrace::wait_for_stop(pid), Some(libc::SIGTRAP));
            sys::kill_and_reap(pid);
            let sock = ZYGOTE.with(|z| match &*z.borrow() {
                ZState::Ready(z) => z.sock,
                _ => panic!("no zygote"),
            });
            // SAFETY: opening a host program read-only.
            let host = unsafe { libc::open(c"/bin/true".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            assert!(host >= 0);
            for (n, other) in [host, copy].into_iter().enumerate() {
                let req = ZReq { token: 1000 + n as u64, op: OP_SPAWN, traceme: 0, pidns: 0, comm: 0, cpu: -1 };
                assert!(zygote_send(sock, &req, &[phys.fd(), other]));
                let rep = zygote_recv(sock).unwrap();
                assert_eq!((rep.token, rep.pid, rep.err), (req.token, 0, libc::EACCES));
            }
            // Only sealed images may be added, and none once locked.
            let add = |fd: i32| zygote_call(sock, OP_ADD_IMAGE, &[fd]).map(|r| r.err);
            assert_eq!(add(host), Some(libc::EACCES), "an unsealed file");
            assert_eq!(zygote_call(sock, OP_LOCK, &[]).map(|r| r.err), Some(0));
            assert_eq!(add(copy), Some(libc::EPERM), "added after the lock");
            let req = ZReq { token: 2000, op: OP_SPAWN, traceme: 0, pidns: 0, comm: 0, cpu: -1 };
            assert!(zygote_send(sock, &req, &[phys.fd(), copy]));
            assert_eq!(zygote_wait(sock, 2000).map(|r| r.err), Some(libc::EACCES));
            // Still serving its own image.
            let pid = spawn(me, fds, true, None).unwrap();
            assert_eq!(crate::ptrace::wait_for_stop(pid), Some(libc::SIGTRAP));
            sys::kill_and_reap(pid);
            // SAFETY: closing our fds.
            unsafe {
                libc::close(host);
                libc::close(copy);
            }
            close_image(image);
            ZYGOTE.with(|z| *z.borrow_mut() = ZState::Untried);
        })
        .join()
        .unwrap();
    }
}
