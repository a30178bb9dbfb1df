//! The `SIGSEGV` detour, written once for both backends: how the tracer
//! learns a page fault's access kind, which `waitpid` does not report.
//!
//! At a guest's `SIGSEGV` stop the tracer delivers the signal to a handler
//! in the traced process (the skas stub's code, or the tt kernel binary's
//! own text). The handler, [`segv_detour_asm!`](crate::segv_detour_asm), copies `si_addr`, the page
//! fault error code and trap number from its signal frame, and `si_code`,
//! into `rax`, `rbx`, `rcx` and `r8`, and stops at `int3`; the tracer reads
//! them there ([`crate::tracer::Tracer::run_routine`]) and then restores the
//! guest's registers itself, so the handler never returns.

/// The handler's code (AT&T syntax), for a `global_asm!` block: entered
/// with `rdi` = signal number, `rsi` = `siginfo_t`, `rdx` = `ucontext_t`;
/// ends with the `int3` the tracer waits for. The label right after it is
/// the backend's "done" address.
#[macro_export]
macro_rules! segv_detour_asm {
    () => {
        concat!(
            "mov 16(%rsi), %rax\n",  // si_addr
            "mov 192(%rdx), %rbx\n", // uc_mcontext.gregs[REG_ERR]
            "mov 200(%rdx), %rcx\n", // uc_mcontext.gregs[REG_TRAPNO]
            "movslq 8(%rsi), %r8\n", // si_code
            "int3\n",
        )
    };
}

/// `sa_flags` of the handler's `struct kernel_sigaction`: siginfo, on the
/// alternate stack, with a restorer (x86_64 requires one; it is never
/// reached), and no deferral: the handler never returns through sigreturn,
/// so a blocked `SIGSEGV` would stay blocked and the next fault would kill
/// the process.
pub const SA_FLAGS: u64 = SA_SIGINFO | SA_ONSTACK | SA_RESTORER | SA_NODEFER;

/// `SA_SIGINFO`.
pub const SA_SIGINFO: u64 = 4;
/// `SA_ONSTACK`.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// `SA_RESTORER`.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// `SA_NODEFER`.
pub const SA_NODEFER: u64 = 0x4000_0000;
