//! The host CPU's extended register state (XSAVE) as guests see it.
//!
//! Every guest thread owns its whole x87/SSE/AVX/AVX-512/PKRU state
//! ([`hal::FpuState`], standard XSAVE format). The backends move it in and
//! out of host contexts: ptrace with `PTRACE_GETREGSET`/`SETREGSET`
//! (`NT_X86_XSTATE`), the seccomp stub through the signal frame the host
//! wrote on its alternate stack. This module finds the layout once, from
//! `CPUID` leaf 0xD and `XCR0`, and remembers what a host context holds so
//! unchanged state is not loaded again.

use hal::{FpuLayout, FpuState, XSTATE_MAX};
use std::sync::OnceLock;

/// Components whose state a process must first ask the host kernel for
/// (XFD-armed, like AMX tile data): never offered to guests.
fn dynamic(component: u32) -> bool {
    // CPUID.(EAX=0xD, ECX=i):ECX bit 2: the component supports XFD.
    let r = core::arch::x86_64::__cpuid_count(0xd, component);
    r.ecx & 4 != 0
}

fn probe() -> FpuLayout {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !osxsave {
        return FpuLayout::LEGACY;
    }
    // SAFETY: OSXSAVE is set, so XGETBV(0) is allowed in user mode.
    let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
    let mut features = hal::context::XFEATURE_FP_SSE;
    let mut size = hal::context::XSAVE_MIN;
    for i in 2..63u32 {
        if xcr0 & (1 << i) == 0 || dynamic(i) {
            continue;
        }
        let c = core::arch::x86_64::__cpuid_count(0xd, i);
        // Supervisor components (ecx bit 0) have no standard-format offset.
        let end = c.ebx as usize + c.eax as usize;
        if c.ecx & 1 != 0 || c.eax == 0 || end > XSTATE_MAX {
            continue;
        }
        features |= 1 << i;
        size = size.max(end);
    }
    FpuLayout { size, features }
}

/// The guests' XSAVE layout on this host (probed once).
#[inline]
pub fn layout() -> FpuLayout {
    static L: OnceLock<FpuLayout> = OnceLock::new();
    *L.get_or_init(probe)
}

/// The meaningful bytes of `f`.
#[inline]
pub fn bytes(f: &FpuState) -> &[u8] {
    &f.0[..layout().size]
}

/// What a host context (a stub, a traced thread) holds in its registers,
/// when the backend knows: loading the same state again is skipped.
#[derive(Debug, Default)]
pub struct Held {
    known: bool,
    state: Option<Box<FpuState>>,
}

impl Held {
    /// Does the context hold exactly `f`?
    #[inline]
    pub fn is(&self, f: &FpuState) -> bool {
        self.known && self.state.as_ref().is_some_and(|h| bytes(h) == bytes(f))
    }
    /// It now holds `f`.
    #[inline]
    pub fn set(&mut self, f: &FpuState) {
        let n = layout().size;
        match &mut self.state {
            Some(h) => h.0[..n].copy_from_slice(&f.0[..n]),
            None => self.state = Some(Box::new(f.clone())),
        }
        self.known = true;
    }
    /// What it holds is unknown (it ran code that may have changed it).
    #[inline]
    pub fn forget(&mut self) {
        self.known = false;
    }
}
