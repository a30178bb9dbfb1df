//! A scripted-program harness over the mock HAL.
//!
//! A guest program is a tiny real ELF (generated here) whose entry the mock
//! CPU recognises; its "instructions" are Rust closures, two bytes apart like
//! `syscall`, executed one by one at `rip`. An instruction either traps (a
//! system call, a fault) or falls through to the next one. Registers r12-r15
//! and rbx carry values between instructions (the kernel preserves them).
#![allow(dead_code)]

pub mod model;

/// The changing methods of a read-only scripted `hal::HostDir` (all
/// `EROFS`), for the host-directory mocks of the hostfs and overlay tests.
#[allow(unused_macros)]
macro_rules! read_only_host_dir {
    () => {
        fn write(&mut self, _: u64, _: u64, _: &[u8]) -> Result<usize, HostError> {
            Err(HostError::ReadOnly)
        }
        fn create(&mut self, _: u64, _: &[u8], _: u32) -> Result<(u64, HostAttr), HostError> {
            Err(HostError::ReadOnly)
        }
        fn mkdir(&mut self, _: u64, _: &[u8], _: u32) -> Result<(u64, HostAttr), HostError> {
            Err(HostError::ReadOnly)
        }
        fn symlink(&mut self, _: u64, _: &[u8], _: &[u8]) -> Result<(u64, HostAttr), HostError> {
            Err(HostError::ReadOnly)
        }
        fn tmpfile(&mut self, _: u64, _: u32) -> Result<(u64, HostAttr), HostError> {
            Err(HostError::ReadOnly)
        }
        fn link(&mut self, _: u64, _: u64, _: &[u8]) -> Result<HostAttr, HostError> {
            Err(HostError::ReadOnly)
        }
        fn unlink(&mut self, _: u64, _: &[u8], _: bool, _: Option<u64>) -> Result<(), HostError> {
            Err(HostError::ReadOnly)
        }
        fn rename(&mut self, _: u64, _: &[u8], _: u64, _: &[u8], _: u32, _: Option<u64>, _: Option<u64>) -> Result<(), HostError> {
            Err(HostError::ReadOnly)
        }
        fn setattr(&mut self, _: u64, _: &HostSetAttr) -> Result<HostAttr, HostError> {
            Err(HostError::ReadOnly)
        }
        fn truncate(&mut self, _: u64, _: u64) -> Result<(), HostError> {
            Err(HostError::ReadOnly)
        }
        fn readlink(&mut self, _: u64, _: &mut [u8]) -> Result<usize, HostError> {
            Err(HostError::Invalid)
        }
        fn fsync(&mut self, _: u64, _: bool) -> Result<(), HostError> {
            Ok(())
        }
        fn statfs(&mut self) -> Result<[u64; 6], HostError> {
            Ok([4096, 0, 0, 0, 0, 0])
        }
    };
}

/// The guest data area holding `paths` as NUL-terminated strings 32 bytes
/// apart, then `extra` (the model properties name their paths by index).
pub fn path_table(paths: &[&str], extra: &[u8]) -> Vec<u8> {
    let mut data = vec![0u8; 32 * paths.len() + 32];
    data[32 * paths.len()..][..extra.len()].copy_from_slice(extra);
    for (i, p) in paths.iter().enumerate() {
        data[32 * i..32 * i + p.len()].copy_from_slice(p.as_bytes());
    }
    data
}

use std::cell::RefCell;
use std::rc::Rc;

use hal::mock::{MockCpu, MockHal, MockPhys, MockSpace};
use hal::{Access, CpuFaultKind, Interrupts, Trap, UserContext};
use kernel_core::fs::cpio;
use kernel_core::BootConfig;

/// One scripted instruction: `None` falls through to the next one.
pub type Insn = Rc<dyn Fn(&mut UserContext, &mut MockSpace, &MockPhys) -> Option<Trap>>;

/// A program: its load address (entry = base + 0x1000) and instructions.
pub struct Program {
    pub base: u64,
    pub insns: Vec<Insn>,
}

pub const ENTRY_OFF: u64 = 0x1000;
/// Where `data` of [`elf`] appears in memory, relative to the base.
pub const DATA_OFF: u64 = 0x200;
/// Zeroed scratch memory (bss), relative to the base.
pub const SCRATCH_OFF: u64 = 0x1800;

impl Program {
    pub fn entry(&self) -> u64 {
        self.base + ENTRY_OFF
    }
    pub fn data(&self) -> u64 {
        self.base + DATA_OFF
    }
    pub fn scratch(&self) -> u64 {
        self.base + SCRATCH_OFF
    }
}

/// A minimal static x86_64 ELF: one RWX `PT_LOAD` at `base` covering the file
/// (with `data` at offset 0x200) plus 0x2000 bytes of bss.
pub fn elf(base: u64, data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 0xe00);
    let mut f = vec![0u8; 0x1000];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little endian
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&(base + ENTRY_OFF).to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = &mut f[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&7u32.to_le_bytes()); // RWX
    ph[8..16].copy_from_slice(&0u64.to_le_bytes()); // p_offset
    ph[16..24].copy_from_slice(&base.to_le_bytes());
    ph[24..32].copy_from_slice(&base.to_le_bytes());
    ph[32..40].copy_from_slice(&0x1000u64.to_le_bytes()); // filesz
    ph[40..48].copy_from_slice(&0x3000u64.to_le_bytes()); // memsz
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f[DATA_OFF as usize..DATA_OFF as usize + data.len()].copy_from_slice(data);
    f
}

/// (space id, rip) of every step the mock CPU executed.
pub type StepTrace = Rc<RefCell<Vec<(u64, u64)>>>;

/// The mock CPU running `programs`; `trace` records every step.
pub fn cpu(programs: Vec<Program>, trace: StepTrace) -> MockCpu {
    Box::new(move |ctx, space, phys| {
        for _ in 0..10_000 {
            let rip = ctx.regs.rip;
            let Some(p) = programs.iter().find(|p| rip >= p.entry() && rip < p.entry() + 2 * p.insns.len() as u64) else {
                // Ran off the script: an illegal instruction, like real garbage.
                return Trap::CpuFault { kind: CpuFaultKind::IllegalInstruction, addr: rip };
            };
            trace.borrow_mut().push((space.id, rip));
            let i = ((rip - p.entry()) / 2) as usize;
            ctx.regs.rip += 2;
            match (p.insns[i])(ctx, space, phys) {
                None => continue,
                Some(t @ (Trap::PageFault { .. } | Trap::CpuFault { .. })) => {
                    // Faulting instructions restart.
                    ctx.regs.rip = rip;
                    return t;
                }
                Some(t) => return t,
            }
        }
        panic!("script ran 10000 steps without trapping");
    })
}

/// `syscall` with fixed arguments.
pub fn sys(nr: u32, args: &[u64]) -> Insn {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    sys_with(move |_| (nr, a))
}

/// `syscall` with arguments computed from the registers.
pub fn sys_with(f: impl Fn(&UserContext) -> (u32, [u64; 6]) + 'static) -> Insn {
    Rc::new(move |ctx, _, _| {
        let (nr, a) = f(ctx);
        let r = &mut ctx.regs;
        r.orig_rax = nr as u64;
        r.rax = nr as u64;
        r.rdi = a[0];
        r.rsi = a[1];
        r.rdx = a[2];
        r.r10 = a[3];
        r.r8 = a[4];
        r.r9 = a[5];
        Some(Trap::Syscall)
    })
}

/// Assert on the registers (panics: the test fails with `what`).
pub fn check(what: &'static str, f: impl Fn(&UserContext) -> bool + 'static) -> Insn {
    Rc::new(move |ctx, _, _| {
        assert!(f(ctx), "{what}: regs {:?}", ctx.regs);
        None
    })
}

/// Assert the last call returned `v` (negative: `-errno`).
pub fn ret_is(what: &'static str, v: i64) -> Insn {
    Rc::new(move |ctx, _, _| {
        assert_eq!(ctx.regs.rax as i64, v, "{what}");
        None
    })
}

/// Run arbitrary code on the registers.
pub fn exec_op(f: impl Fn(&mut UserContext) + 'static) -> Insn {
    Rc::new(move |ctx, _, _| {
        f(ctx);
        None
    })
}

/// Jump to instruction `target` if `cond`.
pub fn jump_if(base: u64, target: usize, cond: impl Fn(&UserContext) -> bool + 'static) -> Insn {
    Rc::new(move |ctx, _, _| {
        if cond(ctx) {
            ctx.regs.rip = base + ENTRY_OFF + 2 * target as u64;
        }
        None
    })
}

/// Read user memory as the CPU would (faults restart the instruction), then check it.
pub fn check_mem(what: &'static str, addr: impl Fn(&UserContext) -> u64 + 'static, len: usize, f: impl Fn(&UserContext, &[u8]) -> bool + 'static) -> Insn {
    Rc::new(move |ctx, space, phys| {
        let mut buf = vec![0u8; len];
        if let Err(t) = space.user_read(phys, addr(ctx), &mut buf) {
            return Some(t);
        }
        assert!(f(ctx, &buf), "{what}: memory {buf:?}");
        None
    })
}

/// Store bytes to user memory.
pub fn store(addr: impl Fn(&UserContext) -> u64 + 'static, data: Vec<u8>) -> Insn {
    Rc::new(move |ctx, space, phys| space.user_write(phys, addr(ctx), &data).err())
}

/// Touch an address (read) — faults like a real load.
pub fn load(addr: u64) -> Insn {
    Rc::new(move |_, space, phys| {
        let mut b = [0u8];
        space.user_read(phys, addr, &mut b).err()
    })
}

/// Busy-loop while `r13 > 0` (decrementing it), one step per mock run.
pub fn spin() -> Insn {
    Rc::new(move |ctx, _, _| {
        if ctx.regs.r13 > 0 {
            ctx.regs.r13 -= 1;
            ctx.regs.rip -= 2;
            // Returning to the kernel lets simulated time pass (one mock run).
            return Some(Trap::Interrupt(Interrupts::empty()));
        }
        None
    })
}

/// A trap of the given kind at the current instruction.
pub fn fault(kind: CpuFaultKind) -> Insn {
    Rc::new(move |ctx, _, _| Some(Trap::CpuFault { kind, addr: ctx.regs.rip }))
}

/// A page fault the MM cannot resolve (unmapped address).
pub fn segv_read(addr: u64) -> Insn {
    Rc::new(move |_, _, _| Some(Trap::PageFault { addr, access: Access::Read }))
}

/// A boot configuration for `init` with `files` (path, mode incl. type, bytes).
pub fn config(init: &str, args: &[&str], files: &[(&str, u32, Vec<u8>)]) -> BootConfig {
    let entries: Vec<(&str, u32, &[u8])> = files.iter().map(|(p, m, d)| (*p, *m, d.as_slice())).collect();
    BootConfig {
        init: init.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "HOME=/".into()],
        initramfs: cpio::build(&entries),
        uname_release: "6.1.0-rustuml".into(),
        hostname: "rustuml".into(),
        trace_syscalls: false,
        ..Default::default()
    }
}

/// A mock machine with 16 MiB of memory running `programs`.
pub fn machine(programs: Vec<Program>) -> (MockHal, StepTrace) {
    let trace = Rc::new(RefCell::new(Vec::new()));
    (MockHal::new(16 << 20, cpu(programs, trace.clone())), trace)
}

pub const REG: u32 = 0o100000 | 0o755;
pub const REG_NOEXEC: u32 = 0o100000 | 0o644;
pub const DIR: u32 = 0o040000 | 0o755;
