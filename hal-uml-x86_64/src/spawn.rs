//! Creating a stub process with the least the host can give it: user,
//! network, IPC, mount and UTS namespaces of its own (created once, shared
//! by all stubs: a network namespace per fork would cost ~0.35 ms at
//! creation, a mount namespace ~2 ms at exit), a PID namespace of its own where the kernel may
//! create one (CAP_SYS_ADMIN; else it has no system call that names a
//! process anyway), an empty, deleted directory as its root, no fds but the
//! ones it needs, no controlling terminal, and death with the kernel thread
//! that created it. Where the host refuses namespaces: a one-line warning
//! and a plain child.

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
        // SAFETY: killing and reaping our own helper.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(pid, &mut st, libc::__WALL);
        }
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
fn empty_root() -> i32 {
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
pub fn spawn(kernel_pid: i32, fds: ChildFds, traceme: bool, cpu: Option<usize>) -> io::Result<i32> {
    let root = empty_root();
    let want_ns = std::env::var_os("RUSTUML_STUB_NS").is_none_or(|v| v != "0");
    let shared = if want_ns && NS_STATE.load(Ordering::Relaxed) != 2 { shared_namespaces() } else { None };
    if want_ns && shared.is_none() && NS_STATE.swap(2, Ordering::Relaxed) != 2 {
        eprintln!("skas: stubs run without their own namespaces (the host refused them)");
    }
    loop {
        let pidns = shared.is_some()
            && PIDNS_STATE.load(Ordering::Relaxed) != 2
            && std::env::var_os("RUSTUML_STUB_PIDNS").is_none_or(|v| v != "0");
        let flags = if pidns { libc::CLONE_NEWPID } else { 0 } | libc::SIGCHLD;
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child only runs `child`, which makes raw system calls.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if pid == 0 {
            child(kernel_pid, fds, traceme, root, shared, pidns, cpu);
        }
        if pid > 0 {
            if shared.is_some() {
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
