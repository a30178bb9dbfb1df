//! Classic BPF for seccomp filters: the instruction and the return actions
//! both filter builders use (the skas stubs' filters and the kernel
//! process's own sandbox, [`crate::sandbox`]).

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_TRAP`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `AUDIT_ARCH_X86_64`, the architecture word of a 64-bit call.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
