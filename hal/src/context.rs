//! User CPU state.

/// General-purpose registers of a user context, in the layout of Linux's
/// x86_64 `struct user_regs_struct` (what `PTRACE_GETREGS` returns), so that
/// backends can move it to and from the host without conversion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The system call number at a [`crate::Trap::Syscall`].
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl UserRegs {
    /// The six system call arguments (`rdi, rsi, rdx, r10, r8, r9`).
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// x87/SSE state in the 512-byte `FXSAVE` layout (`struct user_fpregs_struct`).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuState(pub [u8; 512]);

impl Default for FpuState {
    /// The state of a fresh process: x87 control word 0x37f, MXCSR 0x1f80.
    fn default() -> Self {
        let mut b = [0u8; 512];
        b[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
        FpuState(b)
    }
}

/// The complete user state of one guest thread. Plain data: the kernel copies
/// it on fork and edits it for signal delivery; backends load it on
/// [`crate::Hal::run`] and store it back at the trap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserContext {
    /// General-purpose registers, segment bases included.
    pub regs: UserRegs,
    /// Floating-point and vector state.
    pub fpu: FpuState,
}
