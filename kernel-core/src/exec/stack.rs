//! The initial process stack: strings, `argv`, `envp` and the auxiliary vector.

use alloc::vec;
use alloc::vec::Vec;
use linux_raw_sys::auxvec as at;

use super::ExecArgs;
use crate::Errno;

/// Longest single argument or environment string (Linux's `MAX_ARG_STRLEN`).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Most bytes `argv` + `envp` may take, pointers included (Linux allows a
/// quarter of `RLIMIT_STACK`: 2 MiB with the default 8 MiB).
pub const MAX_ARG_TOTAL: usize = 2 * 1024 * 1024;

/// `AT_HWCAP`: CPUID.1:EDX of a typical x86_64 CPU (fpu .. sse2, htt).
const HWCAP: u64 = 0x178b_fbff;
const PLATFORM: &[u8] = b"x86_64\0";

/// What the auxiliary vector says about the loaded program.
pub(crate) struct AuxInfo {
    pub phdr: u64,
    pub phnum: u64,
    pub base: u64,
    pub entry: u64,
    /// Where the vDSO is mapped, if it is.
    pub sysinfo_ehdr: Option<u64>,
}

/// The stack image: `bytes` go at `sp` (which is 16-byte aligned and points
/// at `argc`), ending at the stack top.
pub(crate) struct StackImage {
    pub sp: u64,
    pub bytes: Vec<u8>,
}

fn put(bytes: &mut [u8], base: u64, addr: u64, data: &[u8]) {
    let off = (addr - base) as usize;
    bytes[off..off + data.len()].copy_from_slice(data);
}

/// Lay out the initial stack below `top` (System V x86_64 ABI, Linux order):
/// from the top down, an 8-byte end marker, the `execfn` string, the env
/// strings above the argv strings, the platform string, the 16 random bytes,
/// padding, then auxv, envp, argv, argc at `sp`.
pub(crate) fn build(top: u64, args: &ExecArgs, aux: &AuxInfo) -> Result<StackImage, Errno> {
    let mut strings = 0usize;
    for s in args.argv.iter().chain(args.envp.iter()) {
        if s.len() >= MAX_ARG_STRLEN {
            return Err(Errno::E2BIG);
        }
        strings += s.len() + 1;
    }
    let ptr_bytes = (args.argv.len() + args.envp.len() + 2) * 8;
    if strings.saturating_add(ptr_bytes) > MAX_ARG_TOTAL || args.execfn.len() >= MAX_ARG_STRLEN {
        return Err(Errno::E2BIG);
    }
    let top = top & !15;
    let execfn_addr = top - 8 - (args.execfn.len() as u64 + 1);
    let strings_addr = execfn_addr - strings as u64;
    let platform_addr = strings_addr - PLATFORM.len() as u64;
    let random_addr = (platform_addr - 16) & !15;

    // Linux puts AT_SYSINFO_EHDR first.
    let mut auxv: Vec<(u32, u64)> = aux.sysinfo_ehdr.map(|a| (at::AT_SYSINFO_EHDR, a)).into_iter().collect();
    auxv.extend([
        (at::AT_HWCAP, HWCAP),
        (at::AT_PAGESZ, crate::mm::PAGE),
        (at::AT_CLKTCK, 100),
        (at::AT_PHDR, aux.phdr),
        (at::AT_PHENT, 56),
        (at::AT_PHNUM, aux.phnum),
        (at::AT_BASE, aux.base),
        (at::AT_FLAGS, 0),
        (at::AT_ENTRY, aux.entry),
        (at::AT_UID, u64::from(args.uid)),
        (at::AT_EUID, u64::from(args.uid)),
        (at::AT_GID, u64::from(args.gid)),
        (at::AT_EGID, u64::from(args.gid)),
        (at::AT_SECURE, 0),
        (at::AT_RANDOM, random_addr),
        (at::AT_HWCAP2, 0),
        (at::AT_EXECFN, execfn_addr),
        (at::AT_PLATFORM, platform_addr),
        (at::AT_MINSIGSTKSZ, args.minsigstksz),
        (at::AT_NULL, 0),
    ]);
    let words = 1 + args.argv.len() + 1 + args.envp.len() + 1 + 2 * auxv.len();
    let sp = (random_addr - words as u64 * 8) & !15;

    let mut bytes = vec![0u8; (top - sp) as usize];
    put(&mut bytes, sp, execfn_addr, args.execfn);
    put(&mut bytes, sp, platform_addr, PLATFORM);
    put(&mut bytes, sp, random_addr, &args.random);
    let mut ptrs: Vec<u64> = Vec::with_capacity(words);
    ptrs.push(args.argv.len() as u64);
    let mut s = strings_addr;
    for list in [args.argv, args.envp] {
        for a in list {
            put(&mut bytes, sp, s, a);
            ptrs.push(s);
            s += a.len() as u64 + 1;
        }
        ptrs.push(0);
    }
    for (k, v) in auxv {
        ptrs.push(u64::from(k));
        ptrs.push(v);
    }
    for (i, w) in ptrs.iter().enumerate() {
        put(&mut bytes, sp, sp + i as u64 * 8, &w.to_le_bytes());
    }
    Ok(StackImage { sp, bytes })
}
