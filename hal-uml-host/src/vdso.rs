//! The guests' vDSO: `clock_gettime`, `gettimeofday`, `time`, `getcpu` and
//! `clock_getres` without a trap, as Linux provides them, written here.
//!
//! It is a small ELF shared object built in memory (like the stub, see
//! `hal-uml-x86_64`'s `stub`): an ELF header, a `PT_LOAD` and a `PT_DYNAMIC`, a symbol
//! table with Linux's names (`__vdso_clock_gettime`... and the plain ones)
//! at version `LINUX_2.6`, a SysV hash table, and the position-independent
//! routines below, assembled into the kernel binary's read-only data and
//! only ever copied. The kernel maps it (read and execute) one page above
//! the clock data page ([`vvar`]), which it maps read-only: the routines
//! find that page at a fixed distance from their own code.
//!
//! The clock is the backend's own ([`crate::timer::TscClock`]): guest
//! monotonic time is an affine function of the TSC whose parameters the
//! kernel publishes in the data page under a sequence count, and the
//! kernel's own clock reads (system calls, deadlines) apply the same
//! function, so a guest mixing vDSO calls and system calls never sees time
//! go backwards. Without a usable TSC the data page says so and every
//! routine makes the system call instead.

use std::sync::OnceLock;

/// The clock data page's layout (shared by [`crate::timer::TscClock`], the
/// writer, and the routines, the readers).
pub mod vvar {
    /// `u32` sequence count: odd while the kernel rewrites the page.
    pub const SEQ: usize = 0;
    /// `u32` flags.
    pub const FLAGS: usize = 4;
    /// `u64` TSC value the parameters start from.
    pub const TSC_BASE: usize = 8;
    /// `u64` guest `CLOCK_MONOTONIC` (ns) at `TSC_BASE`.
    pub const MONO_BASE: usize = 16;
    /// `u64` ns per TSC tick, times 2^`SHIFT`.
    pub const MULT: usize = 24;
    /// `u32` the shift of `MULT`.
    pub const SHIFT: usize = 32;
    /// `u64` `CLOCK_REALTIME` minus `CLOCK_MONOTONIC` (ns).
    pub const REAL_OFFSET: usize = 40;
    /// `FLAGS`: the TSC parameters are valid (else: make the system call).
    pub const FLAG_TSC: u32 = 1;
}

/// Where the routines start in the image (after the headers and tables).
const CODE_OFF: usize = 0x800;
const PAGE: usize = 4096;

core::arch::global_asm!(
    // Read-only data of the kernel: these bytes are only copied, never run here.
    ".pushsection .rodata.rustuml_vdso,\"a\",@progbits",
    ".balign 16",
    ".globl rustuml_vdso_start",
    ".hidden rustuml_vdso_start",
    "rustuml_vdso_start:",
    ".Lvdso_base:",
    // --- now: guest CLOCK_MONOTONIC in rax, the realtime offset in r10, CF
    // clear; CF set when there is no usable TSC. Clobbers rcx, rdx, r8-r10.
    ".Lnow:",
    "lea .Lvdso_base(%rip), %r8",
    "sub ${base_delta}, %r8", // the data page
    "1:",
    "mov {seq}(%r8), %r9d",
    "test $1, %r9d",
    "jnz 3f",
    "testl ${flag_tsc}, {flags}(%r8)",
    "jz 4f",
    "lfence", // the TSC is read after the sequence count
    "rdtsc",
    "shl $32, %rdx",
    "or %rdx, %rax",
    "sub {tsc_base}(%r8), %rax",
    "jae 2f",
    "xor %eax, %eax", // a CPU whose TSC lags the base: no time passed
    "2:",
    "mulq {mult}(%r8)",
    "mov {shift}(%r8), %ecx",
    "shrd %cl, %rdx, %rax",
    "add {mono_base}(%r8), %rax",
    "mov {real_off}(%r8), %r10",
    "cmp {seq}(%r8), %r9d",
    "jne 1b",
    "clc",
    "ret",
    "3:",
    "pause",
    "jmp 1b",
    "4:",
    "stc",
    "ret",
    // --- int clock_gettime(clockid_t clk, struct timespec *ts)
    ".globl rustuml_vdso_clock_gettime",
    ".hidden rustuml_vdso_clock_gettime",
    "rustuml_vdso_clock_gettime:",
    "mov %edi, %r11d",
    "cmp $11, %edi",
    "ja 9f",
    "mov ${mono_clocks}, %eax",
    "bt %edi, %eax",
    "jc 1f",
    "mov ${real_clocks}, %eax",
    "bt %edi, %eax",
    "jnc 9f",
    "1:",
    "call .Lnow",
    "jc 9f",
    "mov ${real_clocks}, %ecx",
    "bt %r11d, %ecx",
    "jnc 2f",
    "add %r10, %rax",
    "2:",
    "xor %edx, %edx",
    "mov $1000000000, %ecx",
    "div %rcx",
    "mov %rax, (%rsi)",
    "mov %rdx, 8(%rsi)",
    "xor %eax, %eax",
    "ret",
    "9:",
    "mov $228, %eax", // clock_gettime
    "syscall",
    "ret",
    // --- int gettimeofday(struct timeval *tv, struct timezone *tz)
    ".globl rustuml_vdso_gettimeofday",
    ".hidden rustuml_vdso_gettimeofday",
    "rustuml_vdso_gettimeofday:",
    "test %rdi, %rdi",
    "jz 1f",
    "call .Lnow",
    "jc 9f",
    "add %r10, %rax",
    "xor %edx, %edx",
    "mov $1000000000, %ecx",
    "div %rcx",
    "mov %rax, (%rdi)",
    "mov %rdx, %rax",
    "xor %edx, %edx",
    "mov $1000, %ecx",
    "div %rcx",
    "mov %rax, 8(%rdi)",
    "1:",
    "test %rsi, %rsi",
    "jz 2f",
    "movq $0, (%rsi)",
    "2:",
    "xor %eax, %eax",
    "ret",
    "9:",
    "mov $96, %eax", // gettimeofday
    "syscall",
    "ret",
    // --- time_t time(time_t *t)
    ".globl rustuml_vdso_time",
    ".hidden rustuml_vdso_time",
    "rustuml_vdso_time:",
    "call .Lnow",
    "jc 9f",
    "add %r10, %rax",
    "xor %edx, %edx",
    "mov $1000000000, %ecx",
    "div %rcx",
    "test %rdi, %rdi",
    "jz 1f",
    "mov %rax, (%rdi)",
    "1:",
    "ret",
    "9:",
    "mov $201, %eax", // time
    "syscall",
    "ret",
    // --- int getcpu(unsigned *cpu, unsigned *node, void *cache): one CPU, one node.
    ".globl rustuml_vdso_getcpu",
    ".hidden rustuml_vdso_getcpu",
    "rustuml_vdso_getcpu:",
    "test %rdi, %rdi",
    "jz 1f",
    "movl $0, (%rdi)",
    "1:",
    "test %rsi, %rsi",
    "jz 2f",
    "movl $0, (%rsi)",
    "2:",
    "xor %eax, %eax",
    "ret",
    // --- int clock_getres(clockid_t clk, struct timespec *res): 1 ns.
    ".globl rustuml_vdso_clock_getres",
    ".hidden rustuml_vdso_clock_getres",
    "rustuml_vdso_clock_getres:",
    "cmp $11, %edi",
    "ja 9f",
    "mov ${all_clocks}, %eax",
    "bt %edi, %eax",
    "jnc 9f",
    "test %rsi, %rsi",
    "jz 1f",
    "movq $0, (%rsi)",
    "movq $1, 8(%rsi)",
    "1:",
    "xor %eax, %eax",
    "ret",
    "9:",
    "mov $229, %eax", // clock_getres
    "syscall",
    "ret",
    ".globl rustuml_vdso_end",
    ".hidden rustuml_vdso_end",
    "rustuml_vdso_end:",
    ".popsection",
    base_delta = const CODE_OFF + PAGE,
    seq = const vvar::SEQ,
    flags = const vvar::FLAGS,
    flag_tsc = const vvar::FLAG_TSC,
    tsc_base = const vvar::TSC_BASE,
    mono_base = const vvar::MONO_BASE,
    mult = const vvar::MULT,
    shift = const vvar::SHIFT,
    real_off = const vvar::REAL_OFFSET,
    // CLOCK_MONOTONIC, _RAW, _COARSE, CLOCK_BOOTTIME
    mono_clocks = const (1 << 1) | (1 << 4) | (1 << 6) | (1 << 7),
    // CLOCK_REALTIME, _COARSE, CLOCK_TAI (the kernel keeps no TAI offset)
    real_clocks = const (1 << 0) | (1 << 5) | (1 << 11),
    all_clocks = const (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 11),
    options(att_syntax)
);

extern "C" {
    static rustuml_vdso_start: u8;
    static rustuml_vdso_clock_gettime: u8;
    static rustuml_vdso_gettimeofday: u8;
    static rustuml_vdso_time: u8;
    static rustuml_vdso_getcpu: u8;
    static rustuml_vdso_clock_getres: u8;
    static rustuml_vdso_end: u8;
}

/// The routines' bytes and each symbol's offset in them.
fn code() -> (&'static [u8], [(&'static str, usize); 5]) {
    // SAFETY: the symbols are labels in one contiguous read-only block emitted by the global_asm! above; only their addresses are taken, and `start..end` is that block.
    unsafe {
        let start = core::ptr::addr_of!(rustuml_vdso_start);
        let off = |p: *const u8| p as usize - start as usize;
        let syms = [
            ("clock_gettime", off(core::ptr::addr_of!(rustuml_vdso_clock_gettime))),
            ("gettimeofday", off(core::ptr::addr_of!(rustuml_vdso_gettimeofday))),
            ("time", off(core::ptr::addr_of!(rustuml_vdso_time))),
            ("getcpu", off(core::ptr::addr_of!(rustuml_vdso_getcpu))),
            ("clock_getres", off(core::ptr::addr_of!(rustuml_vdso_clock_getres))),
        ];
        let len = core::ptr::addr_of!(rustuml_vdso_end) as usize - start as usize;
        (core::slice::from_raw_parts(start, len), syms)
    }
}

/// The System V ELF hash of `name`.
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

struct Out(Vec<u8>);

impl Out {
    fn at(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn u16(&mut self, off: usize, v: u16) {
        self.at(off, &v.to_le_bytes());
    }
    fn u32(&mut self, off: usize, v: u32) {
        self.at(off, &v.to_le_bytes());
    }
    fn u64(&mut self, off: usize, v: u64) {
        self.at(off, &v.to_le_bytes());
    }
}

const SONAME: &str = "linux-vdso.so.1";
const VERSION: &str = "LINUX_2.6";

/// Build the image (one page or more, linked at address 0).
fn build() -> Vec<u8> {
    let (code, syms) = code();
    // Names: each routine as `__vdso_NAME` and `NAME`.
    let mut names: Vec<(String, usize)> = Vec::new();
    for (n, off) in syms {
        names.push((format!("__vdso_{n}"), off));
        names.push((n.to_string(), off));
    }
    // Layout of the tables, in order after the headers.
    const PHDRS: usize = 64;
    const PHNUM: usize = 2;
    let dynsym = PHDRS + 56 * PHNUM;
    let nsyms = names.len() + 1;
    let dynstr = dynsym + 24 * nsyms;
    let mut strtab = vec![0u8];
    let mut name_off = Vec::new();
    for (n, _) in &names {
        name_off.push(strtab.len() as u32);
        strtab.extend_from_slice(n.as_bytes());
        strtab.push(0);
    }
    let soname_off = strtab.len() as u32;
    strtab.extend_from_slice(SONAME.as_bytes());
    strtab.push(0);
    let version_off = strtab.len() as u32;
    strtab.extend_from_slice(VERSION.as_bytes());
    strtab.push(0);
    let hash = (dynstr + strtab.len() + 7) & !7;
    let nbucket = 7usize;
    let hash_len = 4 * (2 + nbucket + nsyms);
    let versym = (hash + hash_len + 7) & !7;
    let verdef = (versym + 2 * nsyms + 7) & !7;
    let verdef_len = 2 * (20 + 8);
    let dynamic = (verdef + verdef_len + 15) & !15;
    let dyn_entries = 11;
    let tables_end = dynamic + 16 * dyn_entries;
    assert!(tables_end <= CODE_OFF, "vDSO tables outgrew their room");
    let size = (CODE_OFF + code.len()).div_ceil(PAGE) * PAGE;
    let mut o = Out(vec![0u8; size]);
    // ELF header.
    o.at(0, b"\x7fELF\x02\x01\x01");
    o.u16(16, 3); // ET_DYN
    o.u16(18, 62); // EM_X86_64
    o.u32(20, 1);
    o.u64(32, PHDRS as u64); // e_phoff
    o.u16(52, 64); // e_ehsize
    o.u16(54, 56); // e_phentsize
    o.u16(56, PHNUM as u16);
    o.u16(58, 64); // e_shentsize (no section headers)
    // PT_LOAD: the whole image, read and execute.
    let ph = PHDRS;
    o.u32(ph, 1);
    o.u32(ph + 4, 5); // PF_R | PF_X
    o.u64(ph + 32, size as u64); // p_filesz
    o.u64(ph + 40, size as u64); // p_memsz
    o.u64(ph + 48, PAGE as u64); // p_align
    // PT_DYNAMIC.
    let ph = PHDRS + 56;
    o.u32(ph, 2);
    o.u32(ph + 4, 4); // PF_R
    for f in [8, 16, 24] {
        o.u64(ph + f, dynamic as u64); // p_offset, p_vaddr, p_paddr
    }
    o.u64(ph + 32, (16 * dyn_entries) as u64);
    o.u64(ph + 40, (16 * dyn_entries) as u64);
    o.u64(ph + 48, 8);
    // Symbols (index 0 is the null symbol): global functions, defined.
    for (i, (n, off)) in names.iter().enumerate() {
        let s = dynsym + 24 * (i + 1);
        o.u32(s, name_off[i]);
        o.at(s + 4, &[if n.starts_with("__vdso_") { 0x12 } else { 0x22 }]); // GLOBAL or WEAK, FUNC
        o.u16(s + 6, 1); // st_shndx: defined (any index but SHN_UNDEF)
        o.u64(s + 8, (CODE_OFF + off) as u64);
    }
    o.at(dynstr, &strtab);
    // SysV hash: buckets and chains.
    o.u32(hash, nbucket as u32);
    o.u32(hash + 4, nsyms as u32);
    let buckets = hash + 8;
    let chains = buckets + 4 * nbucket;
    let mut heads = vec![0u32; nbucket];
    for (i, (n, _)) in names.iter().enumerate() {
        let idx = (i + 1) as u32;
        let b = elf_hash(n.as_bytes()) as usize % nbucket;
        // Prepend: the chain of `idx` continues with the old head.
        o.u32(chains + 4 * idx as usize, heads[b]);
        heads[b] = idx;
    }
    for (b, h) in heads.iter().enumerate() {
        o.u32(buckets + 4 * b, *h);
    }
    // Versions: index 1 is the object itself, 2 is LINUX_2.6.
    for i in 1..nsyms {
        o.u16(versym + 2 * i, 2);
    }
    for (k, (flags, ndx, name)) in [(1u16, 1u16, soname_off), (0, 2, version_off)].into_iter().enumerate() {
        let d = verdef + 28 * k;
        let text = if k == 0 { SONAME } else { VERSION };
        o.u16(d, 1); // vd_version
        o.u16(d + 2, flags); // VER_FLG_BASE for the object
        o.u16(d + 4, ndx);
        o.u16(d + 6, 1); // vd_cnt
        o.u32(d + 8, elf_hash(text.as_bytes()));
        o.u32(d + 12, 20); // vd_aux
        o.u32(d + 16, if k == 0 { 28 } else { 0 }); // vd_next
        o.u32(d + 20, name); // vda_name
    }
    let entries: [(u64, u64); 11] = [
        (4, hash as u64),            // DT_HASH
        (5, dynstr as u64),          // DT_STRTAB
        (6, dynsym as u64),          // DT_SYMTAB
        (10, strtab.len() as u64),   // DT_STRSZ
        (11, 24),                    // DT_SYMENT
        (14, soname_off as u64),     // DT_SONAME
        (0x6fff_fff0, versym as u64), // DT_VERSYM
        (0x6fff_fffc, verdef as u64), // DT_VERDEF
        (0x6fff_fffd, 2),            // DT_VERDEFNUM
        (0x6fff_fffb, 0),            // DT_FLAGS_1 (none)
        (0, 0),                      // DT_NULL
    ];
    for (i, (tag, val)) in entries.iter().enumerate() {
        o.u64(dynamic + 16 * i, *tag);
        o.u64(dynamic + 16 * i + 8, *val);
    }
    o.at(CODE_OFF, code);
    o.0
}

/// The vDSO image (built once per process).
pub fn image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_a_shared_object_with_the_symbols() {
        let img = image();
        assert_eq!(&img[..4], b"\x7fELF");
        assert_eq!(img.len() % PAGE, 0);
        assert_eq!(u16::from_le_bytes([img[16], img[17]]), 3);
        // The hash of a known name, as the ELF specification computes it.
        assert_eq!(elf_hash(b"LINUX_2.6"), 0x03ae_75f6);
        let text = String::from_utf8_lossy(img);
        for n in ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time", "__vdso_getcpu", "LINUX_2.6"] {
            assert!(text.contains(n), "{n} missing");
        }
    }
}
