//! The stub: the only host code that ever exists in a guest's host process.
//!
//! It is a tiny static ELF built in memory at startup: an ELF header, a code
//! page holding the position-independent routines below (assembled into the
//! kernel binary's read-only data, never executed by the kernel itself, and
//! copied out), and a data page (prepared `sigaction`s, `stack_t`, signal
//! mask and the two seccomp filters). It is loaded at [`STUB_BASE`], above
//! every guest mapping. Above the data page: the control page and operation
//! list ([`CTRL_ADDR`], [`OPS_ADDR`]), the mailbox ([`MB_ADDR`]) and the
//! signal stack.
//!
//! Routines for the ptrace mechanism (each ends in `int3`, which the tracer
//! recognises by `rip`):
//! - `entry`: installs the `SIGSEGV` handler on its alternate stack, unmaps
//!   every host mapping outside the stub (host stack, vDSO, vvar, brk),
//!   installs the executor's seccomp filter and reports `r15 = 0` if all of
//!   that succeeded.
//! - `exec`: runs `r12` raw system calls described by 7-word records at `rbx`
//!   (number and six arguments); on the first failure it stops with `rax` =
//!   the negative errno and `r12` = the records left. Only ever entered by
//!   the tracer with `PTRACE_CONT`; a guest that jumps here runs under
//!   `PTRACE_SYSEMU`, so its system calls are emulated, never executed.
//! - `segv`: the `SIGSEGV` handler. Hands the fault's `si_addr`, page-fault
//!   error code, trap number and `si_code` to the tracer in `rax, rbx, rcx,
//!   r8`, because `PTRACE_GETSIGINFO` carries no error code.
//!
//! Routines for the seccomp mechanism (see [`crate::seccomp`]):
//! - `entry_sc`: the process entry point in seccomp mode. Ignores every
//!   signal but the ones it traps, installs `trap` for those, unmaps the
//!   host's mappings, maps the control page + operation list read-only and
//!   the mailbox read-write from fd 5 (then closes it), starts the executor
//!   thread, installs the guest thread's filter and executes `ud2`: its
//!   first trap, which parks it in `trap` until the kernel runs a guest.
//! - `trap`: the handler of `SIGSYS` (a trapped system call), `SIGSEGV`,
//!   `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP` and the timer kick. Publishes
//!   the signal frame's registers, FPU state and fault data in the mailbox,
//!   hands the mailbox to the kernel, waits (spinning up to the kernel's
//!   hint, then `FUTEX_WAIT`), loads the answer into the frame and
//!   `rt_sigreturn`s into the guest.
//! - `exec_thread`: the executor thread. Born with every signal blocked
//!   (it has no stack to take one on), installs its own filter, then applies the map operations the kernel publishes on
//!   the read-only control page and hands the mailbox to the guest thread
//!   (or reports to the kernel). It takes nothing from writable memory.

/// Lowest address of the stub area, and so [`hal::AddressSpace::user_end`].
///
/// 64 GiB below the top of the x86_64 user range: out of reach of the host's
/// randomised initial stack (placed before the stub's segments are mapped,
/// within 16 GiB of the top), so `execve` of the stub never collides with it.
pub const STUB_BASE: u64 = 0x7ff0_0000_0000;
/// The host's highest user address + 1 (x86_64, 4-level paging).
pub const HOST_TOP: u64 = 0x7fff_ffff_f000;
const PAGE: u64 = 4096;
/// Offset of the code in the image (after the ELF and program headers).
const CODE_OFF: u64 = 0x100;
/// The data page.
const DATA: u64 = STUB_BASE + PAGE;
/// The prepared `struct kernel_sigaction` for the ptrace `SIGSEGV` handler (32 bytes).
pub const SA_ADDR: u64 = DATA;
/// The prepared `stack_t` (24 bytes).
pub const SS_ADDR: u64 = DATA + 32;
/// The `sigaction` of the seccomp-mode trap handler.
const SA_TRAP_ADDR: u64 = DATA + 64;
/// A `sigaction` ignoring the signal.
const SA_IGN_ADDR: u64 = DATA + 96;
/// A signal mask with every signal set.
const ALLMASK_ADDR: u64 = DATA + 128;
/// `struct sock_fprog` of the executor filter.
const FPROG_EXEC_ADDR: u64 = DATA + 144;
/// `struct sock_fprog` of the guest thread's filter.
const FPROG_GUEST_ADDR: u64 = DATA + 160;
/// The CPU mask the stub pins itself to once set up (0: stay unpinned).
const CPUMASK_ADDR: u64 = DATA + 176;
/// The scheduling policy the stub takes once set up (0: keep the
/// zygote's), and its zeroed `sched_param`.
const POLICY_ADDR: u64 = DATA + 184;
const SCHED_PARAM_ADDR: u64 = DATA + 192;
/// The executor filter's instructions.
const FILTER_EXEC_OFF: usize = 256;
/// The guest thread filter's instructions.
const FILTER_GUEST_OFF: usize = 1024;
/// Room for one filter, in instructions.
const FILTER_MAX: usize = 96;
/// The control page: written by the kernel only, read-only in the stub.
pub const CTRL_ADDR: u64 = STUB_BASE + 2 * PAGE;
/// The map-operation list: read-only in the stub, right after the control
/// page in the same memfd, which the kernel writes in its own mapping.
pub const OPS_ADDR: u64 = CTRL_ADDR + PAGE;
/// Size of the map-operation list.
pub const OPS_SIZE: u64 = 16 * PAGE;
/// One operation: system call number and six arguments.
pub const OP_WORDS: usize = crate::ops::OP_WORDS;
/// How many operations fit in one batch.
pub const OPS_PER_BATCH: usize = (OPS_SIZE as usize) / (OP_WORDS * 8);
/// The mailbox page shared read-write between the kernel and a seccomp stub.
pub const MB_ADDR: u64 = OPS_ADDR + OPS_SIZE;
/// The alternate signal stack (large enough for an AVX-512 signal frame).
/// Seccomp stubs map it from the shared memfd, right after the mailbox: the
/// kernel reads and writes the XSAVE area of the trap's signal frame there.
pub const ALTSTACK_ADDR: u64 = MB_ADDR + PAGE;
/// Size of the alternate stack.
pub const ALTSTACK_SIZE: u64 = 16 * PAGE;
/// First address above the stub area.
pub const STUB_END: u64 = ALTSTACK_ADDR + ALTSTACK_SIZE;

/// Bytes of the per-stub shared memfd: control page, operations, and
/// (seccomp) mailbox and signal stack.
pub const COMM_SIZE: u64 = PAGE + OPS_SIZE + PAGE + ALTSTACK_SIZE;
/// Bytes of it a ptrace stub maps: control page and operations.
pub const COMM_OPS_SIZE: u64 = PAGE + OPS_SIZE;
/// Offset of the mailbox in that memfd.
pub const COMM_MB_OFF: u64 = PAGE + OPS_SIZE;
/// The fd number under which a seccomp stub finds the shared memfd at entry.
pub const COMM_FD: i32 = 5;

/// Control page layout (byte offsets; written only by the kernel).
pub mod ctrl {
    /// Sequence lock of the batch (`u32`, even when stable): the executor
    /// waits on it with `FUTEX_WAIT`.
    pub const SEQ: usize = 0;
    /// Operations in the batch.
    pub const COUNT: usize = 8;
    /// What the executor does after the batch: [`MODE_GO`] or [`MODE_REPORT`].
    pub const MODE: usize = 16;
    /// Non-zero: the stub may use `rdfsbase`/`wrfsbase` (host has FSGSBASE).
    pub const FSGSBASE: usize = 24;
    /// TSC cycles the stub may spin before sleeping.
    pub const SPIN: usize = 32;
    /// After the batch, let the guest thread run.
    pub const MODE_GO: u64 = 1;
    /// After the batch, report to the kernel (`mb::EXEC_DONE`).
    pub const MODE_REPORT: u64 = 2;
}

/// Mailbox layout (byte offsets). Writable by guest code: untrusted.
pub mod mb {
    /// Who owns the mailbox (`u32` futex word): [`KERNEL`], [`RUN`], [`EXEC`].
    pub const STATE: usize = 0;
    /// Non-zero while the kernel sleeps on `STATE`.
    pub const KWAIT: usize = 8;
    /// Non-zero while the stub sleeps on `STATE`.
    pub const SWAIT: usize = 16;
    /// Signal number of the trap.
    pub const SIGNO: usize = 32;
    /// `si_code`.
    pub const CODE: usize = 40;
    /// `si_addr`.
    pub const ADDR: usize = 48;
    /// The kernel's requests for the way back ([`SET_FS`], [`SET_GS`]).
    pub const FLAGS: usize = 56;
    /// `fs_base` (read at the trap when the host has FSGSBASE; set on request).
    pub const FS_BASE: usize = 64;
    /// `gs_base`.
    pub const GS_BASE: usize = 72;
    /// The last batch reported in [`ctrl::MODE_REPORT`](super::ctrl::MODE_REPORT) (`u32` futex word).
    pub const EXEC_DONE: usize = 88;
    /// The 23 `gregs` of the signal frame (`REG_R8` .. `REG_CR2`).
    pub const GREGS: usize = 96;
    /// TSC when the stub took the trap.
    pub const TRAP_TSC: usize = 280;
    /// TSC when the stub saw the answer.
    pub const RESUME_TSC: usize = 288;
    /// Where the trap's signal frame keeps the XSAVE area (`uc_mcontext.fpregs`):
    /// on the signal stack, unless the guest moved it (checked, not trusted).
    pub const FPREGS: usize = 296;
    /// State: the kernel owns the mailbox (a trap is published).
    pub const KERNEL: u32 = 0;
    /// State: the guest thread may return to the guest.
    pub const RUN: u32 = 1;
    /// State: the executor applies a batch; the guest thread waits.
    pub const EXEC: u32 = 2;
    /// State: the kernel switched to another stub: a spinning guest thread
    /// goes to sleep at once.
    pub const PARK: u32 = 3;
    /// Flag: set `fs_base` from `FS_BASE`.
    pub const SET_FS: u64 = 2;
    /// Flag: set `gs_base` from `GS_BASE`.
    pub const SET_GS: u64 = 4;
}

/// Signals the seccomp stub handles with `trap` (bit n = signal n): SIGILL,
/// SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGALRM (the timer kick), SIGSYS.
const HANDLED: u64 = (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 14) | (1 << 31);
/// `CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM`.
const THREAD_FLAGS: u64 = 0x50f00;

core::arch::global_asm!(
    // Read-only data of the kernel: these bytes are only copied, never run here.
    ".pushsection .rodata.rustuml_skas_stub,\"a\",@progbits",
    ".balign 16",
    ".globl rustuml_skas_stub_start",
    ".hidden rustuml_skas_stub_start",
    "rustuml_skas_stub_start:",
    // --- entry (ptrace) ---
    "xor %r15d, %r15d",
    "mov $131, %eax", // sigaltstack(&ss, NULL)
    "movabs ${ss}, %rdi",
    "xor %esi, %esi",
    "syscall",
    "or %rax, %r15",
    "mov $13, %eax", // rt_sigaction(SIGSEGV, &sa, NULL, 8)
    "mov $11, %edi",
    "movabs ${sa}, %rsi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "or %rax, %r15",
    "mov $11, %eax", // munmap(0, STUB_BASE)
    "xor %edi, %edi",
    "movabs ${base}, %rsi",
    "syscall",
    "or %rax, %r15",
    "mov $11, %eax", // munmap(STUB_END, HOST_TOP - STUB_END)
    "movabs ${end}, %rdi",
    "movabs ${above}, %rsi",
    "syscall",
    "or %rax, %r15",
    // The operation list, read-only, from the memfd the kernel writes it
    // in: mmap(CTRL_ADDR, PAGE + OPS_SIZE, PROT_READ, MAP_SHARED | MAP_FIXED, 5, 0)
    "mov $9, %eax",
    "movabs ${ctrl}, %rdi",
    "mov ${ctrl_len}, %esi",
    "mov $1, %edx",
    "mov $0x11, %r10d",
    "mov ${comm_fd}, %r8d",
    "xor %r9d, %r9d",
    "syscall",
    "movabs ${ctrl}, %rcx",
    "sub %rcx, %rax",
    "or %rax, %r15",
    "mov $3, %eax", // close(5)
    "mov ${comm_fd}, %edi",
    "syscall",
    "or %rax, %r15",
    "mov $157, %eax", // prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    "mov $38, %edi",
    "mov $1, %esi",
    "xor %edx, %edx",
    "xor %r10d, %r10d",
    "xor %r8d, %r8d",
    "syscall",
    "or %rax, %r15",
    "movabs ${cpumask}, %rdx", // sched_setaffinity(0, 8, &mask) when a CPU is given
    "cmpq $0, (%rdx)",
    "je 8f",
    "mov $203, %eax",
    "xor %edi, %edi",
    "mov $8, %esi",
    "syscall",
    "or %rax, %r15",
    "8:",
    "movabs ${policy}, %rdx", // sched_setscheduler(0, policy, &param) when one is given
    "mov (%rdx), %rsi",
    "test %rsi, %rsi",
    "je 7f",
    "mov $144, %eax",
    "xor %edi, %edi",
    "movabs ${sched_param}, %rdx",
    "syscall",
    "or %rax, %r15",
    "7:",
    "mov $317, %eax", // seccomp(SECCOMP_SET_MODE_FILTER, 0, &executor filter)
    "mov $1, %edi",
    "xor %esi, %esi",
    "movabs ${fp_exec}, %rdx",
    "syscall",
    "or %rax, %r15",
    "int3",
    ".globl rustuml_skas_stub_entry_done",
    ".hidden rustuml_skas_stub_entry_done",
    "rustuml_skas_stub_entry_done:",
    "ud2",
    // --- exec (ptrace) ---
    ".globl rustuml_skas_stub_exec",
    ".hidden rustuml_skas_stub_exec",
    "rustuml_skas_stub_exec:",
    "1:",
    "test %r12, %r12",
    "jz 2f",
    "mov (%rbx), %rax",
    "mov 8(%rbx), %rdi",
    "mov 16(%rbx), %rsi",
    "mov 24(%rbx), %rdx",
    "mov 32(%rbx), %r10",
    "mov 40(%rbx), %r8",
    "mov 48(%rbx), %r9",
    "syscall",
    "cmp $-4095, %rax",
    "jae 3f",
    "add $56, %rbx",
    "dec %r12",
    "jmp 1b",
    "2:",
    "xor %eax, %eax",
    "3:",
    "int3",
    ".globl rustuml_skas_stub_exec_done",
    ".hidden rustuml_skas_stub_exec_done",
    "rustuml_skas_stub_exec_done:",
    "ud2",
    // --- segv handler (ptrace): rdi = signo, rsi = siginfo, rdx = ucontext ---
    ".globl rustuml_skas_stub_segv",
    ".hidden rustuml_skas_stub_segv",
    "rustuml_skas_stub_segv:",
    hal_uml_host::segv_detour_asm!(),
    ".globl rustuml_skas_stub_segv_done",
    ".hidden rustuml_skas_stub_segv_done",
    "rustuml_skas_stub_segv_done:",
    // The restorer: never reached (ptrace: the tracer restores the guest
    // registers; seccomp: `trap` calls rt_sigreturn itself), but x86_64
    // requires SA_RESTORER.
    ".globl rustuml_skas_stub_restorer",
    ".hidden rustuml_skas_stub_restorer",
    "rustuml_skas_stub_restorer:",
    "ud2",
    // --- entry_sc (seccomp) ---
    ".globl rustuml_skas_stub_entry_sc",
    ".hidden rustuml_skas_stub_entry_sc",
    "rustuml_skas_stub_entry_sc:",
    "xor %r15d, %r15d",
    "mov $131, %eax", // sigaltstack(&ss, NULL)
    "movabs ${ss}, %rdi",
    "xor %esi, %esi",
    "syscall",
    "or %rax, %r15",
    // for sig in 1..=64: rt_sigaction(sig, handled ? &sa_trap : &sa_ign, NULL, 8)
    "movabs ${handled}, %r13",
    "mov $1, %r12d",
    "10:",
    "mov $13, %eax",
    "mov %r12d, %edi",
    "movabs ${sa_ign}, %rsi",
    "bt %r12, %r13",
    "jnc 11f",
    "movabs ${sa_trap}, %rsi",
    "11:",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "bt %r12, %r13", // failures only matter for the handled ones (SIGKILL, SIGSTOP refuse)
    "jnc 12f",
    "or %rax, %r15",
    "12:",
    "inc %r12d",
    "cmp $65, %r12d",
    "jb 10b",
    "mov $11, %eax", // munmap(0, STUB_BASE)
    "xor %edi, %edi",
    "movabs ${base}, %rsi",
    "syscall",
    "or %rax, %r15",
    "mov $11, %eax", // munmap(STUB_END, HOST_TOP - STUB_END)
    "movabs ${end}, %rdi",
    "movabs ${above}, %rsi",
    "syscall",
    "or %rax, %r15",
    // mmap(CTRL_ADDR, PAGE + OPS_SIZE, PROT_READ, MAP_SHARED | MAP_FIXED, 5, 0)
    "mov $9, %eax",
    "movabs ${ctrl}, %rdi",
    "mov ${ctrl_len}, %esi",
    "mov $1, %edx",
    "mov $0x11, %r10d",
    "mov ${comm_fd}, %r8d",
    "xor %r9d, %r9d",
    "syscall",
    "movabs ${ctrl}, %rcx",
    "sub %rcx, %rax",
    "or %rax, %r15",
    // mmap(MB_ADDR, PAGE + ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 5, COMM_MB_OFF)
    "mov $9, %eax",
    "movabs ${mbox}, %rdi",
    "mov ${mb_len}, %esi",
    "mov $3, %edx",
    "mov $0x11, %r10d",
    "mov ${comm_fd}, %r8d",
    "mov ${mb_off}, %r9d",
    "syscall",
    "movabs ${mbox}, %rcx",
    "sub %rcx, %rax",
    "or %rax, %r15",
    "mov $3, %eax", // close(5)
    "mov ${comm_fd}, %edi",
    "syscall",
    "or %rax, %r15",
    "mov $157, %eax", // prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    "mov $38, %edi",
    "mov $1, %esi",
    "xor %edx, %edx",
    "xor %r10d, %r10d",
    "xor %r8d, %r8d",
    "syscall",
    "or %rax, %r15",
    "test %r15, %r15",
    "jnz 19f",
    "movabs ${cpumask}, %rdx", // sched_setaffinity(0, 8, &mask) when a CPU is given
    "cmpq $0, (%rdx)",
    "je 8f",
    "mov $203, %eax",
    "xor %edi, %edi",
    "mov $8, %esi",
    "syscall",
    "test %rax, %rax",
    "jnz 19f",
    "8:",
    "movabs ${policy}, %rdx", // sched_setscheduler(0, policy, &param) when one is given
    "mov (%rdx), %rsi",
    "test %rsi, %rsi",
    "je 7f",
    "mov $144, %eax",
    "xor %edi, %edi",
    "movabs ${sched_param}, %rdx",
    "syscall",
    "test %rax, %rax",
    "jnz 19f",
    "7:",
    // Block every signal before the executor thread exists: it inherits the
    // mask, so no signal can ever be delivered to it (it has no stack).
    "mov $14, %eax", // rt_sigprocmask(SIG_BLOCK, &all, NULL, 8)
    "xor %edi, %edi",
    "movabs ${allmask}, %rsi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "test %rax, %rax",
    "jnz 19f",
    // clone(THREAD_FLAGS, 0 (same, never used, stack), 0, 0, 0)
    "mov $56, %eax",
    "mov ${thread_flags}, %edi",
    "xor %esi, %esi",
    "xor %edx, %edx",
    "xor %r10d, %r10d",
    "xor %r8d, %r8d",
    "syscall",
    "test %rax, %rax",
    "jz 30f",
    "js 19f",
    "mov $14, %eax", // rt_sigprocmask(SIG_UNBLOCK, &all, NULL, 8): this thread takes the signals
    "mov $1, %edi",
    "movabs ${allmask}, %rsi",
    "xor %edx, %edx",
    "mov $8, %r10d",
    "syscall",
    "test %rax, %rax",
    "jnz 19f",
    "mov $317, %eax", // seccomp(SECCOMP_SET_MODE_FILTER, 0, &guest filter)
    "mov $1, %edi",
    "xor %esi, %esi",
    "movabs ${fp_guest}, %rdx",
    "syscall",
    "test %rax, %rax",
    "jnz 19f",
    "ud2", // the first trap: parks in `trap` until the kernel runs a guest
    "19:",
    "mov $231, %eax", // exit_group(1)
    "mov $1, %edi",
    "syscall",
    "ud2",
    // --- exec_thread (seccomp) ---
    "30:", // every signal is blocked (inherited)
    "mov $317, %eax", // seccomp(SECCOMP_SET_MODE_FILTER, 0, &executor filter)
    "mov $1, %edi",
    "xor %esi, %esi",
    "movabs ${fp_exec}, %rdx",
    "syscall",
    "test %rax, %rax",
    "jnz 39f",
    "movabs ${ctrl}, %rbx", // rbx: control page (read-only)
    "movabs ${mbox}, %rbp", // rbp: mailbox (only ever written here, never read)
    "xor %r14d, %r14d",     // r14: last batch done
    "31:",
    "mov (%rbx), %eax",
    "cmp %r14d, %eax",
    "jne 32f",
    // Asleep on the sequence word with the last batch done: the kernel
    // counts this wait (a host fact) as proof that every batch published
    // so far has been applied.
    "mov $202, %eax", // futex(&ctrl.seq, FUTEX_WAIT, last, NULL)
    "mov %rbx, %rdi",
    "xor %esi, %esi",
    "mov %r14d, %edx",
    "xor %r10d, %r10d",
    "syscall",
    "jmp 31b",
    "32:",
    "test $1, %al", // odd: the kernel is writing the batch
    "jz 33f",
    "pause",
    "jmp 31b",
    "33:",
    "mov %eax, %r15d", // r15: this batch
    "mov 8(%rbx), %r12", // r12: operations left
    "movabs ${ops}, %r13", // r13: next operation
    "cmp ${per_batch}, %r12",
    "ja 38f",
    "34:",
    "test %r12, %r12",
    "jz 35f",
    "mov (%r13), %rax",
    "mov 8(%r13), %rdi",
    "mov 16(%r13), %rsi",
    "mov 24(%r13), %rdx",
    "mov 32(%r13), %r10",
    "mov 40(%r13), %r8",
    "mov 48(%r13), %r9",
    "cmp (%rbx), %r15d", // sequence lock: the record was read whole
    "jne 31b",
    "movabs ${base}, %rcx", // the range must lie below the stub
    "cmp %rcx, %rdi",
    "jae 38f",
    "sub %rdi, %rcx",
    "cmp %rcx, %rsi",
    "ja 38f",
    "syscall",
    "cmp $-4095, %rax",
    "jae 38f",
    "add $56, %r13",
    "dec %r12",
    "jmp 34b",
    "38:",
    // A failed operation may have left a mapping the kernel thinks is
    // gone: end the whole process, which the kernel learns from the host.
    "mov $231, %eax", // exit_group(3)
    "mov $3, %edi",
    "syscall",
    "ud2",
    "35:",
    "mov %r15d, %r14d",
    "mov 16(%rbx), %rcx", // ctrl.mode
    "cmp (%rbx), %r15d",
    "jne 31b",
    "cmp $1, %rcx",
    "jne 37f",
    "mov $1, %eax", // MODE_GO: state = RUN (whatever it was), wake the guest thread
    "xchg %eax, (%rbp)",
    "mov $202, %eax",
    "mov %rbp, %rdi",
    "mov $1, %esi",
    "mov $0x7fffffff, %edx",
    "syscall",
    "jmp 31b",
    "37:",
    "mov %r15d, %eax", // MODE_REPORT: exec_done = batch (a hint); wake the kernel
    "xchg %eax, 88(%rbp)",
    "mov $202, %eax",
    "lea 88(%rbp), %rdi",
    "mov $1, %esi",
    "mov $0x7fffffff, %edx",
    "syscall",
    "jmp 31b",
    "39:",
    "mov $231, %eax", // exit_group(2)
    "mov $2, %edi",
    "syscall",
    "ud2",
    // --- trap (seccomp): rdi = signo, rsi = siginfo, rdx = ucontext ---
    ".globl rustuml_skas_stub_trap",
    ".hidden rustuml_skas_stub_trap",
    "rustuml_skas_stub_trap:",
    "cld",
    "movabs ${mbox}, %rbx",
    "movabs ${ctrl}, %r12",
    "mov %rdx, %r13", // r13: ucontext
    "mov %rdi, 32(%rbx)",
    "movslq 8(%rsi), %rax",
    "mov %rax, 40(%rbx)",
    "mov 16(%rsi), %rax",
    "mov %rax, 48(%rbx)",
    "lea 40(%r13), %rsi", // gregs
    "lea 96(%rbx), %rdi",
    "mov $23, %ecx",
    "rep movsq",
    "mov 224(%r13), %rax", // fpregs: the XSAVE area on the (shared) signal stack
    "mov %rax, 296(%rbx)",
    "cmpq $0, 24(%r12)",
    "je 52f",
    "rdfsbase %rax",
    "mov %rax, 64(%rbx)",
    "rdgsbase %rax",
    "mov %rax, 72(%rbx)",
    "52:",
    "rdtsc", // trap time stamp; spin deadline = it + the kernel's hint
    "shl $32, %rdx",
    "or %rdx, %rax",
    "mov %rax, 280(%rbx)",
    "mov 32(%r12), %r14", // ctrl.spin (read-only here: the guest cannot raise it)
    "add %rax, %r14",
    "xor %eax, %eax", // state = KERNEL; wake the kernel if it sleeps
    "xchg %eax, (%rbx)",
    "cmpl $0, 8(%rbx)",
    "je 54f",
    "mov $202, %eax",
    "mov %rbx, %rdi",
    "mov $1, %esi",
    "mov $0x7fffffff, %edx", // all waiters: only the kernel waits on it now
    "syscall",
    "54:", // spin until RUN, PARK or the deadline; during the executor's turn, yield (it may need this CPU)
    "mov (%rbx), %eax",
    "cmp $1, %eax",
    "je 57f",
    "cmp $3, %eax",
    "je 55f",
    "cmp $2, %eax",
    "jne 63f",
    "mov $24, %eax", // sched_yield()
    "syscall",
    "63:",
    "pause",
    "rdtsc",
    "shl $32, %rdx",
    "or %rdx, %rax",
    "cmp %r14, %rax",
    "jb 54b",
    "55:",
    "mov $1, %eax", // swait = 1, re-check, sleep until the kernel or the executor says RUN
    "xchg %eax, 16(%rbx)",
    "mov (%rbx), %edx",
    "cmp $1, %edx",
    "je 56f",
    "mov $202, %eax", // futex(&mb.state, FUTEX_WAIT, state, NULL): the only wait the filter allows
    "mov %rbx, %rdi",
    "xor %esi, %esi",
    "xor %r10d, %r10d",
    "syscall",
    "jmp 55b",
    "56:",
    "movl $0, 16(%rbx)",
    "57:",
    "rdtsc", // resume time stamp
    "shl $32, %rdx",
    "or %rdx, %rax",
    "mov %rax, 288(%rbx)",
    "lea 96(%rbx), %rsi", // r8 .. eflags back into the frame
    "lea 40(%r13), %rdi",
    "mov $18, %ecx",
    "rep movsq",
    "mov 56(%rbx), %r14", // the kernel wrote any new FPU state into the frame itself
    "test $2, %r14b",
    "jz 59f",
    "mov 64(%rbx), %rsi",
    "cmpq $0, 24(%r12)",
    "je 61f",
    "wrfsbase %rsi",
    "jmp 59f",
    "61:",
    "mov $158, %eax", // arch_prctl(ARCH_SET_FS, fs_base)
    "mov $0x1002, %edi",
    "syscall",
    "59:",
    "test $4, %r14b",
    "jz 60f",
    "mov 72(%rbx), %rsi",
    "cmpq $0, 24(%r12)",
    "je 62f",
    "wrgsbase %rsi",
    "jmp 60f",
    "62:",
    "mov $158, %eax", // arch_prctl(ARCH_SET_GS, gs_base)
    "mov $0x1001, %edi",
    "syscall",
    "60:",
    "mov %r13, %rsp", // rt_sigreturn expects rsp at the ucontext
    "mov $15, %eax",
    "syscall",
    "ud2",
    ".globl rustuml_skas_stub_end",
    ".hidden rustuml_skas_stub_end",
    "rustuml_skas_stub_end:",
    ".popsection",
    ss = const SS_ADDR,
    sa = const SA_ADDR,
    sa_trap = const SA_TRAP_ADDR,
    sa_ign = const SA_IGN_ADDR,
    allmask = const ALLMASK_ADDR,
    fp_exec = const FPROG_EXEC_ADDR,
    fp_guest = const FPROG_GUEST_ADDR,
    cpumask = const CPUMASK_ADDR,
    policy = const POLICY_ADDR,
    sched_param = const SCHED_PARAM_ADDR,
    handled = const HANDLED,
    thread_flags = const THREAD_FLAGS,
    base = const STUB_BASE,
    end = const STUB_END,
    above = const HOST_TOP - STUB_END,
    ctrl = const CTRL_ADDR,
    ctrl_len = const PAGE + OPS_SIZE,
    mbox = const MB_ADDR,
    mb_off = const COMM_MB_OFF,
    mb_len = const PAGE + ALTSTACK_SIZE,
    comm_fd = const COMM_FD,
    ops = const OPS_ADDR,
    per_batch = const OPS_PER_BATCH,
    options(att_syntax),
);

extern "C" {
    static rustuml_skas_stub_start: u8;
    static rustuml_skas_stub_entry_done: u8;
    static rustuml_skas_stub_exec: u8;
    static rustuml_skas_stub_exec_done: u8;
    static rustuml_skas_stub_segv: u8;
    static rustuml_skas_stub_segv_done: u8;
    static rustuml_skas_stub_restorer: u8;
    static rustuml_skas_stub_entry_sc: u8;
    static rustuml_skas_stub_trap: u8;
    static rustuml_skas_stub_end: u8;
}

/// Addresses of the stub's routines and stop points in a stub process.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Entry point (ptrace).
    pub entry: u64,
    /// `rip` at the `int3` stop that ends `entry`.
    pub entry_done: u64,
    /// The operation executor (ptrace).
    pub exec: u64,
    /// `rip` at the `int3` stop that ends `exec`.
    pub exec_done: u64,
    /// The `SIGSEGV` handler (ptrace).
    pub segv: u64,
    /// `rip` at the `int3` stop that ends the handler.
    pub segv_done: u64,
    /// The signal restorer.
    pub restorer: u64,
    /// Entry point (seccomp).
    pub entry_sc: u64,
    /// The trap handler (seccomp).
    pub trap: u64,
    /// First address after the code.
    pub code_end: u64,
}

fn code() -> (&'static [u8], Layout) {
    // SAFETY: the symbols are labels in one contiguous read-only block emitted by the global_asm! above; only their addresses are taken, and `start..start+len` is that block.
    unsafe {
        let start = core::ptr::addr_of!(rustuml_skas_stub_start);
        let at = |p: *const u8| STUB_BASE + CODE_OFF + (p as u64 - start as u64);
        let len = core::ptr::addr_of!(rustuml_skas_stub_end) as usize - start as usize;
        let layout = Layout {
            entry: at(start),
            entry_done: at(core::ptr::addr_of!(rustuml_skas_stub_entry_done)),
            exec: at(core::ptr::addr_of!(rustuml_skas_stub_exec)),
            exec_done: at(core::ptr::addr_of!(rustuml_skas_stub_exec_done)),
            segv: at(core::ptr::addr_of!(rustuml_skas_stub_segv)),
            segv_done: at(core::ptr::addr_of!(rustuml_skas_stub_segv_done)),
            restorer: at(core::ptr::addr_of!(rustuml_skas_stub_restorer)),
            entry_sc: at(core::ptr::addr_of!(rustuml_skas_stub_entry_sc)),
            trap: at(core::ptr::addr_of!(rustuml_skas_stub_trap)),
            code_end: at(core::ptr::addr_of!(rustuml_skas_stub_end)),
        };
        (core::slice::from_raw_parts(start, len), layout)
    }
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Build the ptrace-mode stub image and return it with the routine addresses.
pub fn build_image() -> (Vec<u8>, Layout) {
    build_image_for(false)
}

/// Build the stub image; `seccomp` selects the entry point.
pub fn build_image_for(seccomp: bool) -> (Vec<u8>, Layout) {
    build_image_with(seccomp, None, false)
}

/// Build the stub image; `seccomp` selects the entry point, and the stub
/// pins itself to `cpu` (below 64) and takes `SCHED_BATCH` if `batch` at
/// the end of its set-up, which is free to run on another CPU.
pub fn build_image_with(seccomp: bool, cpu: Option<usize>, batch: bool) -> (Vec<u8>, Layout) {
    let (code, layout) = code();
    assert!(CODE_OFF as usize + code.len() <= PAGE as usize, "stub code outgrew its page");
    let mut img = vec![0u8; 2 * PAGE as usize];
    // ELF header.
    img[0..4].copy_from_slice(b"\x7fELF");
    img[4] = 2; // 64-bit
    img[5] = 1; // little endian
    img[6] = 1; // version
    put16(&mut img, 16, 2); // ET_EXEC
    put16(&mut img, 18, 62); // EM_X86_64
    put32(&mut img, 20, 1);
    put64(&mut img, 24, if seccomp { layout.entry_sc } else { layout.entry });
    put64(&mut img, 32, 64); // e_phoff
    put16(&mut img, 52, 64); // e_ehsize
    put16(&mut img, 54, 56); // e_phentsize
    put16(&mut img, 56, 3); // e_phnum
    let ph = |img: &mut Vec<u8>, i: usize, ty: u32, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64| {
        let o = 64 + 56 * i;
        put32(img, o, ty);
        put32(img, o + 4, flags);
        put64(img, o + 8, off);
        put64(img, o + 16, vaddr);
        put64(img, o + 24, vaddr);
        put64(img, o + 32, filesz);
        put64(img, o + 40, memsz);
        put64(img, o + 48, if ty == 1 { PAGE } else { 16 });
    };
    const PT_LOAD: u32 = 1;
    const PT_GNU_STACK: u32 = 0x6474_e551;
    let code_end = CODE_OFF + code.len() as u64;
    ph(&mut img, 0, PT_LOAD, 5, 0, STUB_BASE, code_end, code_end); // R+X
    ph(&mut img, 1, PT_LOAD, 6, PAGE, STUB_BASE + PAGE, PAGE, STUB_END - STUB_BASE - PAGE); // RW
    // A non-executable stack, so the host never applies READ_IMPLIES_EXEC.
    ph(&mut img, 2, PT_GNU_STACK, 6, 0, 0, 0, 0);
    img[CODE_OFF as usize..code_end as usize].copy_from_slice(code);

    // Data page: struct kernel_sigaction for SIGSEGV.
    use hal_uml_host::segv_detour::{SA_ONSTACK, SA_RESTORER, SA_SIGINFO};
    let d = PAGE as usize;
    put64(&mut img, d, layout.segv);
    put64(&mut img, d + 8, hal_uml_host::segv_detour::SA_FLAGS);
    put64(&mut img, d + 16, layout.restorer);
    put64(&mut img, d + 24, 0); // mask: nothing blocked
    // stack_t for sigaltstack.
    let s = (SS_ADDR - STUB_BASE) as usize;
    put64(&mut img, s, ALTSTACK_ADDR);
    put32(&mut img, s + 8, 0);
    put64(&mut img, s + 16, ALTSTACK_SIZE);
    // The seccomp trap handler: every signal blocked while it runs (a fault
    // inside it is then fatal, and a timer kick waits for the next return).
    let t = (SA_TRAP_ADDR - STUB_BASE) as usize;
    put64(&mut img, t, layout.trap);
    put64(&mut img, t + 8, SA_SIGINFO | SA_ONSTACK | SA_RESTORER);
    put64(&mut img, t + 16, layout.restorer);
    put64(&mut img, t + 24, u64::MAX);
    // SIG_IGN.
    let i = (SA_IGN_ADDR - STUB_BASE) as usize;
    put64(&mut img, i, 1);
    put64(&mut img, i + 8, SA_RESTORER);
    put64(&mut img, i + 16, layout.restorer);
    put64(&mut img, (ALLMASK_ADDR - STUB_BASE) as usize, u64::MAX);
    let mask = cpu.filter(|&c| c < 64).map_or(0, |c| 1u64 << c);
    put64(&mut img, (CPUMASK_ADDR - STUB_BASE) as usize, mask);
    put64(&mut img, (POLICY_ADDR - STUB_BASE) as usize, if batch { libc::SCHED_BATCH as u64 } else { 0 });
    // The filters and their sock_fprogs.
    let code_range = (STUB_BASE, layout.code_end);
    for (prog, off, fprog) in [
        (crate::filter::executor(code_range), FILTER_EXEC_OFF, FPROG_EXEC_ADDR),
        (crate::filter::guest(code_range), FILTER_GUEST_OFF, FPROG_GUEST_ADDR),
    ] {
        assert!(prog.len() <= FILTER_MAX, "seccomp filter outgrew its room");
        for (n, ins) in prog.iter().enumerate() {
            let o = d + off + 8 * n;
            put16(&mut img, o, ins.code);
            img[o + 2] = ins.jt;
            img[o + 3] = ins.jf;
            put32(&mut img, o + 4, ins.k);
        }
        let f = (fprog - STUB_BASE) as usize;
        put16(&mut img, f, prog.len() as u16);
        put64(&mut img, f + 8, DATA + off as u64);
    }
    (img, layout)
}
