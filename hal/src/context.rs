//! User CPU state.

use alloc::boxed::Box;

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

/// Bytes of [`FpuState`]: room for the standard-format XSAVE area of every
/// user state component a guest can enable without asking the kernel for
/// permission (x87, SSE, AVX, AVX-512, PKRU: 2,696 bytes on current CPUs).
/// Dynamically enabled components (AMX tile data) are not offered to guests.
pub const XSTATE_MAX: usize = 4096;

/// Offset of MXCSR in the legacy (FXSAVE) part of the area.
pub const XSAVE_MXCSR: usize = 24;
/// Offset of the software-reserved bytes of the legacy area, which Linux
/// uses in signal frames (`struct _fpx_sw_bytes`).
pub const XSAVE_SW_BYTES: usize = 464;
/// Offset of the XSAVE header (`xstate_bv`, then `xcomp_bv`, then reserved).
pub const XSAVE_HEADER: usize = 512;
/// Size of the legacy area plus the XSAVE header: the smallest XSAVE area.
pub const XSAVE_MIN: usize = 576;
/// `xstate_bv` bits of the x87 and SSE components.
pub const XFEATURE_FP_SSE: u64 = 3;

/// The complete floating-point and vector state of one guest thread: x87,
/// SSE, and every extended component (AVX upper halves, AVX-512 opmask and
/// upper/high ZMM registers, PKRU), in the standard (non-compacted) XSAVE
/// format that `PTRACE_GETREGSET(NT_X86_XSTATE)` and Linux signal frames use.
///
/// Only the first [`FpuLayout::size`] bytes are meaningful; the rest stays
/// zero. A component whose `xstate_bv` bit is clear is in its initial state
/// whatever its bytes say (that is what `XRSTOR` does).
///
/// The area lives on the heap: a context moves with its task at every
/// system call, and 4 KiB inline would be copied each time.
#[derive(Clone, PartialEq, Eq)]
pub struct FpuState(pub Box<XsaveArea>);

/// The bytes of an [`FpuState`], aligned as `XSAVE` wants them.
#[repr(C, align(64))]
#[derive(Clone, PartialEq, Eq)]
pub struct XsaveArea(pub [u8; XSTATE_MAX]);

impl core::ops::Deref for XsaveArea {
    type Target = [u8; XSTATE_MAX];
    fn deref(&self) -> &[u8; XSTATE_MAX] {
        &self.0
    }
}

impl core::ops::DerefMut for XsaveArea {
    fn deref_mut(&mut self) -> &mut [u8; XSTATE_MAX] {
        &mut self.0
    }
}

impl Default for FpuState {
    /// The state of a fresh process: every component in its initial state,
    /// x87 control word 0x37f, MXCSR 0x1f80, x87 and SSE marked in use (as
    /// Linux marks them in every signal frame).
    fn default() -> Self {
        let mut f = FpuState(Box::new(XsaveArea([0; XSTATE_MAX])));
        f.reset();
        f
    }
}

impl core::fmt::Debug for FpuState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FpuState").field("mxcsr", &self.mxcsr()).field("xstate_bv", &self.xstate_bv()).finish()
    }
}

impl FpuState {
    /// Back to the state of a fresh process, in place.
    pub fn reset(&mut self) {
        let b = &mut self.0 .0;
        b.fill(0);
        b[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        b[XSAVE_MXCSR..XSAVE_MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
        b[XSAVE_HEADER..XSAVE_HEADER + 8].copy_from_slice(&XFEATURE_FP_SSE.to_le_bytes());
    }
    fn word32(&self, off: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.0[off..off + 4]);
        u32::from_le_bytes(w)
    }
    fn word64(&self, off: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[off..off + 8]);
        u64::from_le_bytes(w)
    }
    /// MXCSR.
    pub fn mxcsr(&self) -> u32 {
        self.word32(XSAVE_MXCSR)
    }
    /// The header's `xstate_bv`: which components are not in their initial state.
    pub fn xstate_bv(&self) -> u64 {
        self.word64(XSAVE_HEADER)
    }
    /// Make the area one that `XRSTOR` accepts for `layout` and that carries
    /// nothing of where it came from: reserved MXCSR bits cleared, the
    /// software-reserved bytes zeroed, `xstate_bv` limited to the layout's
    /// components, `xcomp_bv` and the header's reserved bytes zero, and no
    /// bytes past the layout's size. Applied to every state a guest wrote
    /// (signal frames) before a backend loads it.
    pub fn sanitize(&mut self, layout: &FpuLayout) {
        let mxcsr = self.mxcsr() & 0xffff;
        self.0[XSAVE_MXCSR..XSAVE_MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
        self.0[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        self.0[XSAVE_SW_BYTES..XSAVE_HEADER].fill(0);
        let bv = self.xstate_bv() & layout.features;
        self.0[XSAVE_HEADER..XSAVE_MIN].fill(0);
        self.0[XSAVE_HEADER..XSAVE_HEADER + 8].copy_from_slice(&bv.to_le_bytes());
        let size = layout.size.clamp(XSAVE_MIN, XSTATE_MAX);
        self.0[size..].fill(0);
    }
}

/// What the host CPU's XSAVE area looks like for guests: reported by the
/// backend ([`crate::Hal::fpu_layout`]), used by the kernel for signal frames
/// and `AT_MINSIGSTKSZ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuLayout {
    /// Bytes of the standard-format XSAVE area (at least [`XSAVE_MIN`], at
    /// most [`XSTATE_MAX`]).
    pub size: usize,
    /// The user state components it holds (an `XCR0` mask: bit 0 x87, 1 SSE,
    /// 2 AVX, 5-7 AVX-512, 9 PKRU).
    pub features: u64,
}

impl FpuLayout {
    /// A CPU with x87 and SSE only (the legacy 512-byte area plus the header).
    pub const LEGACY: FpuLayout = FpuLayout { size: XSAVE_MIN, features: XFEATURE_FP_SSE };
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
