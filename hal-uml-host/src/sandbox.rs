//! The kernel process confines itself once it is set up (`--no-sandbox`
//! turns this off, for gdb or strace on the host).
//!
//! A bug in the trap path, in the `unsafe` code of a backend or a driver, or
//! in the network stack could give a guest control of the kernel process.
//! From then on it should hold as little as possible: after the root, the
//! hostfs exports, the console and the network links are open and the
//! stubs' zygote is running, [`confine`]
//! - sets its own limits (no core dumps, no more processes or fds than the
//!   guest's memory allows it to need);
//! - where it runs as root, moves into a private mount namespace whose root
//!   is an empty, deleted directory: the host's files are then reachable only
//!   through fds it already holds;
//! - drops every capability it no longer needs, from the bounding set too;
//! - sets `no_new_privs`;
//! - installs a seccomp allowlist of the host system calls it makes, with
//!   argument checks where they matter ([`rules`]), on every thread.
//!
//! A call outside the list is refused (never run): the kernel prints one
//! line naming it and exits. In log mode (`RUSTUML_SANDBOX_LOG=FILE`, for the
//! test that keeps the list complete) it is run anyway, through one
//! instruction the log filter exempts, and appended to FILE.
//!
//! The stubs are not under this filter: they are made by the zygote, a
//! process forked before confinement, and have their own, narrower filters
//! (`hal-uml-x86_64`'s `filter`, on the same [`crate::bpf`]).

use crate::bpf::{Insn, RET_ALLOW, RET_TRAP};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// What to do with a call outside the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it, print one line, exit.
    Enforce,
    /// Run it and append its name to this fd (an open file).
    Log(RawFd),
}

impl Mode {
    /// Enforce, or log mode when `RUSTUML_SANDBOX_LOG=FILE` is set: calls
    /// outside the list run and are appended to FILE (for finding what a
    /// change of the kernel needs).
    pub fn from_env() -> Result<Mode, String> {
        let Some(path) = std::env::var_os("RUSTUML_SANDBOX_LOG") else { return Ok(Mode::Enforce) };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("RUSTUML_SANDBOX_LOG {}: {e}", std::path::Path::new(&path).display()))?;
        Ok(Mode::Log(std::os::fd::IntoRawFd::into_raw_fd(f)))
    }
}

/// Which kernel is confining itself (they make different host calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// skas: stubs run by seccomp traps or ptrace.
    Skas,
    /// tt: guest code in `CLONE_VM` children traced with ptrace.
    Tt,
    /// The user-mode NAT's socket broker ([`crate::nat_broker`]): makes
    /// host sockets the NAT's policy allows, nothing else.
    NatBroker,
}

/// What [`confine`] did and what it had to leave out (one line each).
#[derive(Debug, Default)]
pub struct Report {
    /// Steps applied.
    pub applied: Vec<&'static str>,
    /// Steps the host did not allow, with the reason.
    pub skipped: Vec<String>,
}

/// What a rule lets through, tested on the call's arguments.
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// Every use.
    Any,
    /// Argument `i` (its low 32 bits, the high ones zero) is one of these.
    ArgIn(u32, &'static [u32]),
    /// Argument `i` has none of these bits (low 32 bits).
    ArgClear(u32, u32),
    /// Argument `i` (low 32 bits) is none of these.
    ArgNotIn(u32, &'static [u32]),
    /// Refused with this errno instead of trapping: a call the C library
    /// tries first and falls back from (`clone3` → `clone`).
    Errno(u16),
}

const EXEC_BIT: u32 = libc::PROT_EXEC as u32;
/// `clone` of a thread: what `pthread_create` passes.
const THREAD: u32 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u32;

/// The host system calls the kernel process makes once confined, each with
/// why. Ordered roughly by how often they come, so the common ones cost a
/// few filter instructions.
pub fn rules(backend: Backend) -> Vec<(i64, Rule, &'static str)> {
    use libc::*;
    if backend == Backend::NatBroker {
        return broker_rules();
    }
    let mut r: Vec<(i64, Rule, &'static str)> = vec![
        (SYS_futex, Rule::Any, "hand-off with the stubs, locks"),
        (SYS_clock_gettime, Rule::Any, "time (when the vDSO falls back)"),
        (SYS_read, Rule::Any, "console, eventfds, hostfs, sockets"),
        (SYS_write, Rule::Any, "console, log, eventfds, hostfs, sockets"),
        (SYS_kill, Rule::Any, "timer kicks and ends of stubs (own children)"),
        (SYS_tgkill, Rule::Any, "kicks to its own threads"),
        (SYS_sched_yield, Rule::Any, "let a stub on the same CPU reach its wait"),
        (SYS_wait4, Rule::Any, "stub deaths (waitpid)"),
        (SYS_waitid, Rule::Any, "stub deaths"),
        (SYS_pread64, Rule::Any, "hostfs reads"),
        (SYS_pwrite64, Rule::Any, "hostfs writes, stub images"),
        (SYS_preadv, Rule::Any, "disk reads (one vectored call per run of blocks)"),
        (SYS_pwritev, Rule::Any, "disk writes (one vectored call per run of blocks)"),
        (SYS_readv, Rule::Any, "std I/O"),
        (SYS_writev, Rule::Any, "std I/O"),
        (SYS_lseek, Rule::Any, "std I/O"),
        (SYS_poll, Rule::Any, "idle wait on devices"),
        (SYS_ppoll, Rule::Any, "idle wait on devices"),
        (SYS_epoll_wait, Rule::Any, "device waits"),
        (SYS_epoll_pwait, Rule::Any, "device waits"),
        (SYS_epoll_ctl, Rule::Any, "device waits"),
        (SYS_epoll_create1, Rule::Any, "device waits"),
        (SYS_timer_settime, Rule::Any, "the one-shot timer"),
        (SYS_timer_gettime, Rule::Any, "the one-shot timer"),
        (SYS_timer_create, Rule::Any, "the one-shot timer (new threads)"),
        (SYS_timer_delete, Rule::Any, "the one-shot timer"),
        (SYS_timerfd_create, Rule::Any, "device timers"),
        (SYS_timerfd_settime, Rule::Any, "device timers"),
        (SYS_clock_nanosleep, Rule::Any, "short waits"),
        (SYS_nanosleep, Rule::Any, "short waits"),
        (SYS_mmap, Rule::ArgClear(2, EXEC_BIT), "heap, guest memory, shared pages; never executable"),
        (SYS_mprotect, Rule::ArgClear(2, EXEC_BIT), "heap guard pages; never executable"),
        (SYS_munmap, Rule::Any, "heap, shared pages"),
        (SYS_mremap, Rule::Any, "heap"),
        (SYS_madvise, Rule::Any, "heap, freed guest memory"),
        (SYS_brk, Rule::Any, "heap"),
        (SYS_fallocate, Rule::Any, "freed guest frames back to the host"),
        (SYS_memfd_create, Rule::Any, "stub mailboxes"),
        (SYS_ftruncate, Rule::Any, "stub mailboxes, hostfs"),
        (SYS_close, Rule::Any, "fds"),
        (SYS_close_range, Rule::Any, "fds"),
        (SYS_dup, Rule::Any, "fds"),
        (SYS_dup3, Rule::Any, "fds"),
        (SYS_fcntl, Rule::Any, "fd flags, locks"),
        (SYS_ioctl, Rule::ArgIn(1, &[TCGETS as u32, TCSETS as u32, TCSETSW as u32, TCSETSF as u32, TIOCGWINSZ as u32, FIONREAD as u32, FIONBIO as u32]), "the console (modes, window size), sockets"),
        (SYS_openat, Rule::Any, "hostfs: names relative to fds it holds, and reopens through /proc/self/fd (all its root holds)"),
        (SYS_fchmodat, Rule::Any, "hostfs: chmod through /proc/self/fd"),
        (SYS_newfstatat, Rule::Any, "hostfs lookups and stat"),
        (SYS_fstat, Rule::Any, "hostfs, std"),
        (SYS_statx, Rule::Any, "std"),
        (SYS_getdents64, Rule::Any, "hostfs listings"),
        (SYS_readlinkat, Rule::Any, "hostfs symlinks"),
        (SYS_mkdirat, Rule::Any, "hostfs"),
        (SYS_unlinkat, Rule::Any, "hostfs, the control directory at exit"),
        (SYS_renameat2, Rule::Any, "hostfs"),
        (SYS_linkat, Rule::Any, "hostfs"),
        (SYS_symlinkat, Rule::Any, "hostfs"),
        (SYS_mknodat, Rule::Any, "hostfs (overlay whiteouts)"),
        (SYS_fgetxattr, Rule::Any, "hostfs: an overlay directory's whiteout and opaque marks"),
        (SYS_fsetxattr, Rule::Any, "hostfs: an overlay directory's whiteout and opaque marks"),
        (SYS_fchmod, Rule::Any, "hostfs"),
        (SYS_fchown, Rule::Any, "hostfs"),
        (SYS_fchownat, Rule::Any, "hostfs"),
        (SYS_utimensat, Rule::Any, "hostfs"),
        (SYS_fsync, Rule::Any, "hostfs"),
        (SYS_fdatasync, Rule::Any, "hostfs, disk flushes"),
        (SYS_copy_file_range, Rule::Any, "hostfs"),
        (SYS_fstatfs, Rule::Any, "hostfs statfs"),
        (SYS_flock, Rule::Any, "the overlay directory's lock"),
        (SYS_socket, Rule::ArgIn(0, &[AF_UNIX as u32]), "switch links; the NAT's host sockets come from its broker"),
        (SYS_connect, Rule::Any, "switch links"),
        (SYS_bind, Rule::Any, "switch links"),
        (SYS_listen, Rule::Any, "hostfwd"),
        (SYS_accept4, Rule::Any, "hostfwd, the control socket (--name), console ports (--con N=port:)"),
        (SYS_accept, Rule::Any, "hostfwd"),
        (SYS_sendto, Rule::Any, "sockets"),
        (SYS_recvfrom, Rule::Any, "sockets"),
        (SYS_sendmsg, Rule::Any, "sockets, the zygote's requests (with fds)"),
        (SYS_recvmsg, Rule::Any, "sockets, the zygote's answers"),
        (SYS_sendmmsg, Rule::Any, "sockets"),
        (SYS_recvmmsg, Rule::Any, "sockets"),
        (SYS_shutdown, Rule::Any, "sockets"),
        (SYS_setsockopt, Rule::Any, "sockets"),
        (SYS_getsockopt, Rule::Any, "sockets"),
        (SYS_getsockname, Rule::Any, "sockets"),
        (SYS_getpeername, Rule::Any, "sockets"),
        (SYS_socketpair, Rule::Any, "internal channels"),
        (SYS_pipe2, Rule::Any, "internal channels"),
        (SYS_eventfd2, Rule::Any, "wake-ups between its threads"),
        (SYS_rt_sigaction, Rule::Any, "its signal handlers"),
        (SYS_rt_sigprocmask, Rule::Any, "signal masks"),
        (SYS_rt_sigreturn, Rule::Any, "return from its signal handlers"),
        (SYS_sigaltstack, Rule::Any, "std's stack-overflow handler on new threads"),
        (SYS_getpid, Rule::Any, "its own pid"),
        (SYS_gettid, Rule::Any, "its own thread id"),
        (SYS_getppid, Rule::Any, "the guest's view of the host (debug)"),
        (SYS_getuid, Rule::Any, "std"),
        (SYS_geteuid, Rule::Any, "std"),
        (SYS_getgid, Rule::Any, "std"),
        (SYS_getegid, Rule::Any, "std"),
        (SYS_getrandom, Rule::Any, "guest entropy"),
        (SYS_sched_getaffinity, Rule::Any, "CPU placement"),
        (SYS_sched_setaffinity, Rule::Any, "CPU placement"),
        (SYS_getcpu, Rule::Any, "CPU placement"),
        (SYS_set_robust_list, Rule::Any, "new threads"),
        (SYS_rseq, Rule::Any, "new threads"),
        (SYS_prctl, Rule::ArgIn(0, &[PR_SET_NAME as u32, PR_GET_NAME as u32, PR_SET_PDEATHSIG as u32]), "thread names"),
        (SYS_clone3, Rule::Errno(ENOSYS as u16), "the C library falls back to clone, whose flags the filter can see"),
        (SYS_clone, Rule::ArgIn(0, &[THREAD]), "threads only (stubs come from the zygote)"),
        (SYS_exit, Rule::Any, "thread exit"),
        (SYS_exit_group, Rule::Any, "power off"),
        (SYS_getrusage, Rule::Any, "accounting"),
        (SYS_times, Rule::Any, "accounting"),
        (SYS_uname, Rule::Any, "std"),
    ];
    r.push((SYS_ptrace, Rule::ArgNotIn(0, &PTRACE_REFUSED), "stubs under --trap ptrace, which ask for it themselves; nothing else can be attached"));
    if backend == Backend::Tt {
        // tt maps guest memory executable into its own space and makes its
        // guest processes itself, which set themselves up to be traced:
        // the unprotected baseline.
        r.retain(|(nr, _, _)| ![SYS_mmap, SYS_mprotect, SYS_clone, SYS_ptrace].contains(nr));
        r.push((SYS_mmap, Rule::Any, "tt: guest memory, executable, in its own space"));
        r.push((SYS_mprotect, Rule::Any, "tt: guest memory"));
        r.push((SYS_clone, Rule::Any, "tt: guest processes are CLONE_VM children"));
        r.push((SYS_ptrace, Rule::ArgNotIn(0, &PTRACE_REFUSED[..2]), "tt: its guest processes ask for it themselves (TRACEME)"));
        r.push((SYS_setsid, Rule::Any, "tt: guest processes leave the kernel's session"));
    }
    r
}

/// The socket broker's calls: requests in, sockets made and handed out,
/// and what Rust's runtime needs to allocate and exit.
fn broker_rules() -> Vec<(i64, Rule, &'static str)> {
    use libc::*;
    vec![
        (SYS_recvfrom, Rule::Any, "requests"),
        (SYS_sendmsg, Rule::Any, "answers with the descriptor"),
        (SYS_socket, Rule::ArgIn(0, &[AF_INET as u32, AF_INET6 as u32]), "the NAT's host sockets: IP only"),
        (SYS_connect, Rule::Any, "connect them (the policy is checked first)"),
        (SYS_bind, Rule::Any, "UDP sockets bound to the loopback or any address"),
        (SYS_ioctl, Rule::ArgIn(1, &[FIONBIO as u32]), "non-blocking sockets"),
        (SYS_poll, Rule::Any, "a connect with a timeout (IPv6 DNS server)"),
        (SYS_getsockopt, Rule::Any, "the connect's outcome"),
        (SYS_getsockname, Rule::Any, "std"),
        (SYS_close, Rule::Any, "a socket once handed out"),
        (SYS_write, Rule::Any, "an error line on stderr"),
        (SYS_futex, Rule::Any, "std's locks"),
        (SYS_mmap, Rule::ArgClear(2, EXEC_BIT), "heap; never executable"),
        (SYS_munmap, Rule::Any, "heap"),
        (SYS_mremap, Rule::Any, "heap"),
        (SYS_madvise, Rule::Any, "heap"),
        (SYS_brk, Rule::Any, "heap"),
        (SYS_rt_sigreturn, Rule::Any, "return from its signal handlers"),
        (SYS_rt_sigprocmask, Rule::Any, "std"),
        (SYS_sigaltstack, Rule::Any, "std's stack-overflow handler"),
        (SYS_exit_group, Rule::Any, "the NAT closed its end"),
        (SYS_exit, Rule::Any, "exit"),
    ]
}

/// The ptrace requests that could take a process the kernel did not make.
const PTRACE_REFUSED: [u32; 3] = [libc::PTRACE_ATTACH, libc::PTRACE_SEIZE, libc::PTRACE_TRACEME];

const LD_W: u16 = 0x20;
const JEQ: u16 = 0x15;
const JSET: u16 = 0x45;
const RET: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const NR: u32 = 0;
const ARCH: u32 = 4;
const IP_LO: u32 = 8;
const IP_HI: u32 = 12;
const fn lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn hi(i: u32) -> u32 {
    20 + 8 * i
}

fn ld(k: u32) -> Insn {
    Insn { code: LD_W, jt: 0, jf: 0, k }
}
fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code: JEQ, jt, jf, k }
}
fn ret(k: u32) -> Insn {
    Insn { code: RET, jt: 0, jf: 0, k }
}

/// The body of one rule: every path ends in a return, so the blocks of
/// the program never jump further than their own end.
fn body(rule: Rule, refuse: u32) -> Vec<Insn> {
    match rule {
        Rule::Any => vec![ret(RET_ALLOW)],
        Rule::Errno(e) => vec![ret(SECCOMP_RET_ERRNO | u32::from(e))],
        Rule::ArgClear(i, bits) => {
            vec![ld(lo(i)), Insn { code: JSET, jt: 0, jf: 1, k: bits }, ret(refuse), ret(RET_ALLOW)]
        }
        Rule::ArgNotIn(i, vals) => {
            let n = vals.len();
            let mut b = vec![ld(lo(i))];
            for (j, &v) in vals.iter().enumerate() {
                // Match: jump to the refuse after the allow.
                b.push(jeq(v, (n - j) as u8, 0));
            }
            b.push(ret(RET_ALLOW));
            b.push(ret(refuse));
            b
        }
        Rule::ArgIn(i, vals) => {
            let n = vals.len();
            let mut b = vec![ld(hi(i)), jeq(0, 0, n as u8 + 1), ld(lo(i))];
            for (j, &v) in vals.iter().enumerate() {
                // Match: jump to the allow after the refuse.
                b.push(jeq(v, (n - j) as u8, 0));
            }
            b.push(ret(refuse));
            b.push(ret(RET_ALLOW));
            b
        }
    }
}

/// The filter: architecture, then one block per rule, then the default —
/// refuse, or (log mode) allow from the escape instruction only.
pub fn program(backend: Backend, escape: Option<u64>) -> Vec<Insn> {
    let refuse = RET_TRAP;
    let mut p = vec![ld(ARCH), jeq(crate::bpf::AUDIT_ARCH_X86_64, 1, 0), ret(refuse)];
    if let Some(ip) = escape {
        // The log handler's own re-issue of a call: allowed whatever it is.
        p.extend([ld(IP_HI), jeq((ip >> 32) as u32, 0, 3), ld(IP_LO), jeq(ip as u32, 0, 1), ret(RET_ALLOW)]);
    }
    for (nr, rule, _) in rules(backend) {
        let b = body(rule, refuse);
        p.push(ld(NR));
        p.push(jeq(nr as u32, 0, u8::try_from(b.len()).expect("rule too long")));
        p.extend(b);
    }
    p.push(ret(refuse));
    p
}

/// The log file's fd in log mode, -1 in enforce mode (read by the handler).
static LOG_FD: AtomicI32 = AtomicI32::new(-1);
/// The binary's name for the refusal line.
static mut NAME: [u8; 32] = [0; 32];

core::arch::global_asm!(
    ".pushsection .text.rustuml_sandbox_escape,\"ax\",@progbits",
    ".globl rustuml_sandbox_escape",
    ".hidden rustuml_sandbox_escape",
    "rustuml_sandbox_escape:", // (nr, a0..a4) in rdi, rsi, rdx, rcx, r8, r9; a5 on the stack
    "mov %rdi, %rax",
    "mov %rsi, %rdi",
    "mov %rdx, %rsi",
    "mov %rcx, %rdx",
    "mov %r8, %r10",
    "mov %r9, %r8",
    "mov 8(%rsp), %r9",
    "syscall",
    ".globl rustuml_sandbox_escape_ip",
    ".hidden rustuml_sandbox_escape_ip",
    "rustuml_sandbox_escape_ip:",
    "ret",
    ".popsection",
    options(att_syntax),
);

extern "C" {
    fn rustuml_sandbox_escape(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
    static rustuml_sandbox_escape_ip: u8;
}

fn escape_ip() -> u64 {
    core::ptr::addr_of!(rustuml_sandbox_escape_ip) as u64
}

fn raw_write(fd: i32, b: &[u8]) {
    // SAFETY: write(2) of a valid buffer; async-signal-safe.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

/// Decimal digits of `n` into `buf`; the used part.
fn digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// SIGSYS from the sandbox filter (async-signal-safe: raw calls only).
extern "C" fn refused(_sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the host passes a valid siginfo for SIGSYS (si_syscall at offset 24 of the union, i.e. byte 24).
    let nr = unsafe { *(info as *const u8).add(24).cast::<i32>() } as u64;
    let name = kernel_core::syscall::names::name(nr).unwrap_or("?").as_bytes();
    let mut d = [0u8; 20];
    let log = LOG_FD.load(Ordering::Relaxed);
    if log >= 0 {
        raw_write(log, name);
        raw_write(log, b" ");
        raw_write(log, digits(nr, &mut d));
        raw_write(log, b"\n");
        // SAFETY: `uc` is the handler's ucontext; gregs hold the call's arguments.
        unsafe {
            let g = &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs;
            let a = |r: i32| g[r as usize] as u64;
            let rv = rustuml_sandbox_escape(
                nr,
                a(libc::REG_RDI),
                a(libc::REG_RSI),
                a(libc::REG_RDX),
                a(libc::REG_R10),
                a(libc::REG_R8),
                a(libc::REG_R9),
            );
            g[libc::REG_RAX as usize] = rv;
        }
        return;
    }
    // SAFETY: NAME is written once before the filter is installed.
    let me = unsafe { &*core::ptr::addr_of!(NAME) };
    let me = &me[..me.iter().position(|&b| b == 0).unwrap_or(me.len())];
    raw_write(2, me);
    raw_write(2, b": host system call ");
    raw_write(2, name);
    raw_write(2, b" (");
    raw_write(2, digits(nr, &mut d));
    raw_write(2, b") refused by the kernel's sandbox (a kernel bug, or a compromised kernel): stopping\n");
    // SAFETY: exit_group has no preconditions.
    unsafe { libc::syscall(libc::SYS_exit_group, 128 + libc::SIGSYS) };
}

fn os(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// What the kernel process may still have once confined.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// Processes of this user, all together (RLIMIT_NPROC counts them all).
    pub procs: u64,
    /// Descriptors.
    pub fds: u64,
    /// The host's network (only the NAT's socket broker needs it); without
    /// it the process moves into an empty network namespace.
    pub host_network: bool,
}

/// Confine the calling process (see the module docs). `name` is the
/// binary's name for messages.
pub fn confine(name: &str, backend: Backend, mode: Mode, needs: Needs) -> Result<Report, String> {
    let (max_procs, max_fds) = (needs.procs, needs.fds);
    let mut report = Report::default();
    // SAFETY: written before any handler that reads it can run.
    unsafe {
        let n = &mut *core::ptr::addr_of_mut!(NAME);
        let b = name.as_bytes();
        let len = b.len().min(n.len() - 1);
        n[..len].copy_from_slice(&b[..len]);
    }
    // Limits: no core file of guest memory, and no more processes or fds
    // than the guest can make it need (stubs, mailboxes, hostfs, sockets).
    let set = |res, v: u64| {
        let l = libc::rlimit { rlim_cur: v, rlim_max: v };
        // SAFETY: a valid rlimit.
        unsafe { libc::setrlimit(res, &l) == 0 }
    };
    let cur = |res| {
        // SAFETY: a valid out-pointer.
        unsafe {
            let mut l: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(res, &mut l);
            l
        }
    };
    if !set(libc::RLIMIT_CORE, 0) {
        return Err(os("RLIMIT_CORE"));
    }
    let nofile = cur(libc::RLIMIT_NOFILE);
    if !set(libc::RLIMIT_NOFILE, max_fds.min(nofile.rlim_max)) {
        return Err(os("RLIMIT_NOFILE"));
    }
    let nproc = cur(libc::RLIMIT_NPROC);
    if !set(libc::RLIMIT_NPROC, max_procs.min(nproc.rlim_max)) {
        return Err(os("RLIMIT_NPROC"));
    }
    report.applied.push("limits (no core dumps, processes and fds bounded)");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        match private_root() {
            Ok(()) => report.applied.push("a private mount namespace whose root holds only its own /proc/self/fd"),
            Err(e) => report.skipped.push(format!("mount namespace: {e}; host files stay reachable by path")),
        }
    } else {
        report.skipped.push("mount namespace: not root; host files stay reachable by path".into());
    }
    if !needs.host_network {
        // SAFETY: unshare with a flag; no pointers.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
            report.applied.push("an empty network namespace (the NAT's host sockets come from its broker)");
        } else {
            report.skipped.push(format!("network namespace: {}", io::Error::last_os_error()));
        }
    }
    match drop_capabilities(if backend == Backend::NatBroker { 0 } else { HOSTFS_CAPS }) {
        Ok(true) if backend == Backend::NatBroker => report.applied.push("every capability dropped (bounding set too)"),
        Ok(true) => report.applied.push("capabilities dropped (bounding set too) but CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID"),
        Ok(false) => {}
        Err(e) => report.skipped.push(format!("capabilities: {e}")),
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os("no_new_privs"));
    }
    report.applied.push("no_new_privs");
    install_filter(backend, mode)?;
    report.applied.push(match mode {
        Mode::Enforce => "a seccomp allowlist of its host calls, on every thread",
        Mode::Log(_) => "a seccomp allowlist of its host calls, on every thread (log mode: unlisted calls run and are logged)",
    });
    Ok(report)
}

/// A mount namespace of its own whose root is an empty, read-only tmpfs
/// holding one thing: `/proc/self/fd`, its own descriptors (hostfs reopens
/// a file it checked through its descriptor's link, so that a FIFO or a
/// device node swapped in on the host is never opened). Nothing of the
/// host's tree is left to name.
fn private_root() -> Result<(), String> {
    // SAFETY: getpid has no preconditions.
    let fds = std::ffi::CString::new(format!("/proc/{}/fd", unsafe { libc::getpid() })).map_err(|e| e.to_string())?;
    let none = std::ptr::null::<libc::c_char>();
    // The tmpfs is mounted over /tmp in our own mount namespace only.
    // SAFETY: plain system calls with valid, NUL-terminated strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(os("unshare"));
        }
        if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            return Err(os("making mounts private"));
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), flags, c"size=16k,mode=0555".as_ptr().cast())
            != 0
        {
            return Err(os("a tmpfs for the new root"));
        }
        for d in [c"/tmp/proc", c"/tmp/proc/self", c"/tmp/proc/self/fd"] {
            if libc::mkdir(d.as_ptr(), 0o555) != 0 {
                return Err(os("the new root's /proc/self/fd"));
            }
        }
        if libc::mount(fds.as_ptr(), c"/tmp/proc/self/fd".as_ptr(), none, libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(os("binding its descriptors"));
        }
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY | flags;
        if libc::mount(none, c"/tmp".as_ptr(), none, ro, std::ptr::null()) != 0 {
            return Err(os("making the new root read-only"));
        }
        if libc::chroot(c"/tmp".as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            return Err(os("chroot"));
        }
    }
    Ok(())
}

/// What hostfs needs to act on files as the user who started the kernel
/// would: CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
/// CAP_FSETID.
const HOSTFS_CAPS: u64 = 0b1_1111;

/// Keep only the capabilities in `keep`; drop the rest from the effective,
/// permitted, inheritable and bounding sets. `Ok(false)`: it had none to drop.
fn drop_capabilities(keep: u64) -> Result<bool, String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let mut h = Header { version: V3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a v3 header and two data words.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return Err(os("capget"));
    }
    let permitted = u64::from(d[0].permitted) | u64::from(d[1].permitted) << 32;
    if permitted == 0 {
        return Ok(false);
    }
    // The bounding set first, while CAP_SETPCAP is still effective.
    for cap in 0..64 {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments; EINVAL past the last capability is fine.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
    let keep = permitted & keep;
    for (i, w) in d.iter_mut().enumerate() {
        let k = (keep >> (32 * i)) as u32;
        *w = Data { effective: k, permitted: k, inheritable: 0 };
    }
    let mut h = Header { version: V3, pid: 0 };
    // SAFETY: capset with a v3 header and two data words.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        return Err(os("capset"));
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    Ok(true)
}

fn install_filter(backend: Backend, mode: Mode) -> Result<(), String> {
    let escape = match mode {
        Mode::Log(fd) => {
            LOG_FD.store(fd, Ordering::Relaxed);
            Some(escape_ip())
        }
        Mode::Enforce => None,
    };
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = refused as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(os("SIGSYS handler"));
        }
    }
    let prog = program(backend, escape);
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const Insn,
    }
    let f = Fprog { len: u16::try_from(prog.len()).map_err(|_| "filter too long".to_string())?, filter: prog.as_ptr() };
    const TSYNC: u64 = 1;
    // SAFETY: seccomp(SET_MODE_FILTER, TSYNC, &fprog) reads the program, which outlives the call (the host copies it).
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 1, TSYNC, &f as *const Fprog) };
    if r != 0 {
        return Err(if r > 0 { format!("thread {r} could not take the filter") } else { os("seccomp") });
    }
    Ok(())
}

/// What a compromised kernel tries once confined, for the isolation
/// matrix's "compromised kernel" rows: each entry is the attack's name,
/// whether it was blocked, and what happened. Installs its own `SIGSYS`
/// handler first — an attacker in control of the kernel would — so that a
/// refused call returns here (as `EPERM`) instead of ending the process:
/// refused calls still never run.
#[doc(hidden)]
pub fn selftest() -> Vec<(&'static str, bool, String)> {
    extern "C" fn swallow(_sig: i32, _info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
        // SAFETY: `uc` is the handler's ucontext.
        unsafe { (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RAX as usize] = -(libc::EPERM as i64) };
    }
    // SAFETY: a zeroed sigaction is valid; the handler only writes the ucontext.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = swallow as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
    }
    let outcome = |r: i64| -> (bool, String) {
        if r < 0 {
            (true, format!("{}", io::Error::from_raw_os_error(-r as i32)))
        } else {
            (false, format!("returned {r}"))
        }
    };
    let raw = |nr: i64, a: [u64; 6]| -> i64 {
        // SAFETY: each call below is made on purpose with arguments that are valid or harmlessly invalid; the filter decides.
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r < 0 {
            -(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM) as i64)
        } else {
            r
        }
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u64;
    let mut out = Vec::new();
    let sh = c"/bin/sh";
    let argv = [sh.as_ptr(), std::ptr::null()];
    let (b, d) = outcome(raw(libc::SYS_execve, [sh.as_ptr() as u64, argv.as_ptr() as u64, 0, 0, 0, 0]));
    out.push(("execve", b, format!("execve(/bin/sh): {d}")));
    let (b, d) = outcome(raw(libc::SYS_openat, [libc::AT_FDCWD as u64, c"/etc/shadow".as_ptr() as u64, libc::O_RDONLY as u64, 0, 0, 0]));
    out.push(("open_by_path", b, format!("open(/etc/shadow): {d}")));
    let (b, d) = {
        let s = raw(libc::SYS_socket, [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0]);
        if s < 0 {
            outcome(s)
        } else {
            // A port nothing asked for: 22 (ssh) on the host's loopback.
            // SAFETY: an all-zero sockaddr_in is valid.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = 22u16.to_be();
            sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let r = raw(libc::SYS_connect, [s as u64, &sa as *const _ as u64, std::mem::size_of_val(&sa) as u64, 0, 0, 0]);
            raw(libc::SYS_close, [s as u64, 0, 0, 0, 0, 0]);
            // Refused by a listener would still mean it reached the host's loopback.
            (r == -(libc::ENETUNREACH as i64) || r == -(libc::EPERM as i64), match r {
                0 => "connect(127.0.0.1:22) succeeded".into(),
                e => format!("connect(127.0.0.1:22): {}", io::Error::from_raw_os_error(-e as i32)),
            })
        }
    };
    out.push(("host_loopback", b, d));
    let (b, d) = outcome(raw(libc::SYS_ptrace, [libc::PTRACE_ATTACH as u64, parent, 0, 0, 0, 0]));
    out.push(("ptrace_parent", b, format!("ptrace(PTRACE_ATTACH, parent): {d}")));
    let (b, d) = outcome(raw(libc::SYS_mount, [c"none".as_ptr() as u64, c"/".as_ptr() as u64, c"tmpfs".as_ptr() as u64, 0, 0, 0]));
    out.push(("mount", b, format!("mount(tmpfs on /): {d}")));
    let (b, d) = outcome(raw(libc::SYS_socket, [libc::AF_NETLINK as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0]));
    out.push(("netlink", b, format!("socket(AF_NETLINK): {d}")));
    let (b, d) = outcome(raw(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]));
    out.push(("new_user_namespace", b, format!("unshare(CLONE_NEWUSER): {d}")));
    let (b, d) = {
        let mut x = [0u8; 8];
        let local = libc::iovec { iov_base: x.as_mut_ptr().cast(), iov_len: 8 };
        let remote = libc::iovec { iov_base: 0x1000 as *mut libc::c_void, iov_len: 8 };
        outcome(raw(libc::SYS_process_vm_writev, [parent, &local as *const _ as u64, 1, &remote as *const _ as u64, 1, 0]))
    };
    out.push(("write_parent_memory", b, format!("process_vm_writev(parent): {d}")));
    let (b, d) = {
        let heap = Box::new([0u8; 8192]);
        let page = (heap.as_ptr() as u64 + 4095) & !4095;
        outcome(raw(libc::SYS_mprotect, [page, 4096, (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64, 0, 0, 0]))
    };
    out.push(("exec_heap", b, format!("mprotect(heap, PROT_EXEC): {d}")));
    out
}
