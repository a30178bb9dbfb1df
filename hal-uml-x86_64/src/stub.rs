//! The stub: the only host code that ever exists in a guest's host process.
//!
//! It is a tiny static ELF built in memory at startup: an ELF header, a code
//! page holding the position-independent routines below (assembled into the
//! kernel binary's read-only data, never executed by the kernel itself, and
//! copied out), and a data area (a prepared `sigaction` and `stack_t`, the
//! map-operation list, and the `SIGSEGV` alternate stack). It is loaded at
//! [`STUB_BASE`], above every guest mapping.
//!
//! Routines (each ends in `int3`, which the tracer recognises by `rip`):
//! - `entry`: installs the `SIGSEGV` handler on its alternate stack, unmaps
//!   every host mapping outside the stub (host stack, vDSO, vvar, brk), and
//!   reports `r15 = 0` if all of that succeeded.
//! - `exec`: runs `r12` raw system calls described by 7-word records at `rbx`
//!   (number and six arguments); on the first failure it stops with `rax` =
//!   the negative errno and `r12` = the records left. Only ever entered by
//!   the tracer with `PTRACE_CONT`; a guest that jumps here runs under
//!   `PTRACE_SYSEMU`, so its system calls are emulated, never executed.
//! - `segv`: the `SIGSEGV` handler. Hands the fault's `si_addr`, page-fault
//!   error code, trap number and `si_code` to the tracer in `rax, rbx, rcx,
//!   r8`, because `PTRACE_GETSIGINFO` carries no error code.

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
/// The prepared `struct kernel_sigaction` (32 bytes).
pub const SA_ADDR: u64 = STUB_BASE + PAGE;
/// The prepared `stack_t` (24 bytes).
pub const SS_ADDR: u64 = SA_ADDR + 32;
/// The map-operation list written by the tracer.
pub const OPS_ADDR: u64 = STUB_BASE + 2 * PAGE;
/// Size of the map-operation list.
pub const OPS_SIZE: u64 = 16 * PAGE;
/// One operation: system call number and six arguments.
pub const OP_WORDS: usize = crate::ops::OP_WORDS;
/// How many operations fit in one batch.
pub const OPS_PER_BATCH: usize = (OPS_SIZE as usize) / (OP_WORDS * 8);
/// The `SIGSEGV` alternate stack (large enough for an AVX-512 signal frame).
pub const ALTSTACK_ADDR: u64 = OPS_ADDR + OPS_SIZE;
/// Size of the alternate stack.
pub const ALTSTACK_SIZE: u64 = 16 * PAGE;
/// First address above the stub area.
pub const STUB_END: u64 = ALTSTACK_ADDR + ALTSTACK_SIZE;

core::arch::global_asm!(
    // Read-only data of the kernel: these bytes are only copied, never run here.
    ".pushsection .rodata.rustuml_skas_stub,\"a\",@progbits",
    ".balign 16",
    ".globl rustuml_skas_stub_start",
    ".hidden rustuml_skas_stub_start",
    "rustuml_skas_stub_start:",
    // --- entry ---
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
    "int3",
    ".globl rustuml_skas_stub_entry_done",
    ".hidden rustuml_skas_stub_entry_done",
    "rustuml_skas_stub_entry_done:",
    "ud2",
    // --- exec ---
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
    // --- segv handler: rdi = signo, rsi = siginfo, rdx = ucontext ---
    ".globl rustuml_skas_stub_segv",
    ".hidden rustuml_skas_stub_segv",
    "rustuml_skas_stub_segv:",
    "mov 16(%rsi), %rax",  // si_addr
    "mov 192(%rdx), %rbx", // uc_mcontext.gregs[REG_ERR]
    "mov 200(%rdx), %rcx", // uc_mcontext.gregs[REG_TRAPNO]
    "movslq 8(%rsi), %r8", // si_code
    "int3",
    ".globl rustuml_skas_stub_segv_done",
    ".hidden rustuml_skas_stub_segv_done",
    "rustuml_skas_stub_segv_done:",
    // The restorer: never reached (the tracer restores the guest registers
    // instead of sigreturn), but x86_64 requires SA_RESTORER.
    ".globl rustuml_skas_stub_restorer",
    ".hidden rustuml_skas_stub_restorer",
    "rustuml_skas_stub_restorer:",
    "ud2",
    ".globl rustuml_skas_stub_end",
    ".hidden rustuml_skas_stub_end",
    "rustuml_skas_stub_end:",
    ".popsection",
    ss = const SS_ADDR,
    sa = const SA_ADDR,
    base = const STUB_BASE,
    end = const STUB_END,
    above = const HOST_TOP - STUB_END,
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
    static rustuml_skas_stub_end: u8;
}

/// Addresses of the stub's routines and stop points in a stub process.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Entry point.
    pub entry: u64,
    /// `rip` at the `int3` stop that ends `entry`.
    pub entry_done: u64,
    /// The operation executor.
    pub exec: u64,
    /// `rip` at the `int3` stop that ends `exec`.
    pub exec_done: u64,
    /// The `SIGSEGV` handler.
    pub segv: u64,
    /// `rip` at the `int3` stop that ends the handler.
    pub segv_done: u64,
    /// The signal restorer.
    pub restorer: u64,
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

/// Build the stub's ELF image and return it with the routine addresses.
pub fn build_image() -> (Vec<u8>, Layout) {
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
    put64(&mut img, 24, layout.entry);
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
    let d = PAGE as usize;
    const SA_SIGINFO: u64 = 4;
    const SA_ONSTACK: u64 = 0x0800_0000;
    const SA_RESTORER: u64 = 0x0400_0000;
    // No deferral: the handler never returns through sigreturn, so a blocked
    // SIGSEGV would stay blocked and the next fault would kill the stub.
    const SA_NODEFER: u64 = 0x4000_0000;
    put64(&mut img, d, layout.segv);
    put64(&mut img, d + 8, SA_SIGINFO | SA_ONSTACK | SA_RESTORER | SA_NODEFER);
    put64(&mut img, d + 16, layout.restorer);
    put64(&mut img, d + 24, 0); // mask: nothing blocked
    // stack_t for sigaltstack.
    let s = (SS_ADDR - STUB_BASE) as usize;
    put64(&mut img, s, ALTSTACK_ADDR);
    put32(&mut img, s + 8, 0);
    put64(&mut img, s + 16, ALTSTACK_SIZE);
    (img, layout)
}
