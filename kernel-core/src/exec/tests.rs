//! ELF parsing and loading tests, with ELF files built here.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use hal::mock::{MockHal, MockSpace};
use hal::{Access, Hal, PhysMem, Prot, Trap};
use linux_raw_sys::auxvec as at;

use super::*;
use crate::mm::{check_refcounts, FaultError, MemoryMap, VecFile, VmaKind};

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_GNU_STACK: u32 = 0x6474_e551;

struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

const TEXT_FILESZ: u64 = 0x1200;
const DATA_OFF: u64 = 0x2010;
const DATA_VADDR: u64 = 0x3010;
const DATA_FILESZ: u64 = 0x100;
const DATA_MEMSZ: u64 = 0x3000;
const FILE_LEN: usize = 0x3000;
const INTERP_OFF: u64 = 0x1100;

/// A small ELF: text `[base, base+0x1200)` R-X from offset 0 (entry at
/// base+0x1000), data at base+0x3010 RW- with 0x100 file bytes and bss up to
/// 0x3000, garbage in the file after the data (must not show up as bss).
fn build_elf(e_type: u16, base: u64, interp: Option<&[u8]>) -> Vec<u8> {
    let mut f = vec![0u8; FILE_LEN];
    for (i, b) in f.iter_mut().enumerate() {
        *b = (i % 253) as u8 | 1;
    }
    for b in &mut f[(DATA_OFF + DATA_FILESZ) as usize..] {
        *b = 0xee;
    }
    let mut phs = vec![Ph { p_type: PT_PHDR, flags: 4, offset: 64, vaddr: base + 64, filesz: 0, memsz: 0 }];
    if let Some(path) = interp {
        let off = INTERP_OFF as usize;
        f[off..off + path.len()].copy_from_slice(path);
        f[off + path.len()] = 0;
        phs.push(Ph { p_type: PT_INTERP, flags: 4, offset: INTERP_OFF, vaddr: base + INTERP_OFF, filesz: path.len() as u64 + 1, memsz: path.len() as u64 + 1 });
    }
    phs.push(Ph { p_type: PT_LOAD, flags: 5, offset: 0, vaddr: base, filesz: TEXT_FILESZ, memsz: TEXT_FILESZ });
    phs.push(Ph { p_type: PT_LOAD, flags: 6, offset: DATA_OFF, vaddr: base + DATA_VADDR, filesz: DATA_FILESZ, memsz: DATA_MEMSZ });
    phs.push(Ph { p_type: PT_GNU_STACK, flags: 6, offset: 0, vaddr: 0, filesz: 0, memsz: 0 });
    let n = phs.len() as u64;
    phs[0].filesz = n * 56;
    phs[0].memsz = n * 56;
    let mut h = Vec::new();
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&e_type.to_le_bytes());
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(base + 0x1000).to_le_bytes()); // entry
    h.extend_from_slice(&64u64.to_le_bytes()); // phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // flags
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&56u16.to_le_bytes());
    h.extend_from_slice(&(n as u16).to_le_bytes());
    h.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    assert_eq!(h.len(), 64);
    for p in &phs {
        h.extend_from_slice(&p.p_type.to_le_bytes());
        h.extend_from_slice(&p.flags.to_le_bytes());
        for v in [p.offset, p.vaddr, p.vaddr, p.filesz, p.memsz, 0x1000] {
            h.extend_from_slice(&v.to_le_bytes());
        }
    }
    f[..h.len()].copy_from_slice(&h);
    f
}

fn phdr_field(f: &mut [u8], index: usize, field_off: usize, value: u64) {
    let o = 64 + index * 56 + field_off;
    f[o..o + 8].copy_from_slice(&value.to_le_bytes());
}

struct Env {
    hal: MockHal,
    frames: Frames,
}

impl Env {
    fn new(mem: usize) -> Env {
        let hal = MockHal::new(mem, Box::new(|_, _, _| Trap::Syscall));
        let frames = Frames::new(hal.phys.size());
        Env { hal, frames }
    }
    fn map(&mut self) -> MemoryMap<MockSpace> {
        MemoryMap::new(self.hal.new_space().unwrap())
    }
    fn read(&mut self, mm: &mut MemoryMap<MockSpace>, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        mm.copy_from_user(addr, &mut b, &mut self.frames, &self.hal.phys).unwrap();
        b
    }
    fn u64_at(&mut self, mm: &mut MemoryMap<MockSpace>, addr: u64) -> u64 {
        u64::from_le_bytes(self.read(mm, addr, 8).try_into().unwrap())
    }
    fn cstr(&mut self, mm: &mut MemoryMap<MockSpace>, addr: u64) -> Vec<u8> {
        mm.read_cstring(addr, 4096, &mut self.frames, &self.hal.phys).unwrap()
    }
}

fn file_of(bytes: Vec<u8>) -> Arc<dyn MappedFile> {
    Arc::new(VecFile(bytes))
}

/// What the initial stack says: argv, envp, auxv.
struct StackView {
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    aux: BTreeMap<u64, u64>,
}

fn read_stack(e: &mut Env, mm: &mut MemoryMap<MockSpace>, sp: u64) -> StackView {
    assert_eq!(sp % 16, 0, "sp must be 16-byte aligned");
    let argc = e.u64_at(mm, sp);
    let mut p = sp + 8;
    let mut argv = Vec::new();
    for _ in 0..argc {
        let a = e.u64_at(mm, p);
        argv.push(e.cstr(mm, a));
        p += 8;
    }
    assert_eq!(e.u64_at(mm, p), 0);
    p += 8;
    let mut envp = Vec::new();
    loop {
        let a = e.u64_at(mm, p);
        p += 8;
        if a == 0 {
            break;
        }
        envp.push(e.cstr(mm, a));
    }
    let mut aux = BTreeMap::new();
    loop {
        let (k, v) = (e.u64_at(mm, p), e.u64_at(mm, p + 8));
        p += 16;
        if k == 0 {
            break;
        }
        aux.insert(k, v);
    }
    StackView { argv, envp, aux }
}

fn args<'a>(argv: &'a [Vec<u8>], envp: &'a [Vec<u8>]) -> ExecArgs<'a> {
    ExecArgs { argv, envp, execfn: b"/bin/prog", random: [7; 16], uid: 1000, gid: 100, minsigstksz: 3216, vdso: None }
}

#[test]
fn parse_valid() {
    let img = parse_elf(&build_elf(2, 0x40_0000, None)).unwrap();
    assert!(!img.is_dyn());
    assert_eq!(img.interpreter(), None);
    assert_eq!(img.segments().len(), 2);
    assert_eq!(img.entry(), 0x40_1000);
    let img = parse_elf(&build_elf(3, 0, Some(b"/lib64/ld-linux-x86-64.so.2"))).unwrap();
    assert!(img.is_dyn());
    assert_eq!(img.interpreter(), Some(&b"/lib64/ld-linux-x86-64.so.2"[..]));
}

#[test]
fn parse_rejects_garbage() {
    let good = build_elf(2, 0x40_0000, None);
    let no = Err(Errno::ENOEXEC);
    assert_eq!(parse_elf(&[]).map(|_| ()), no);
    assert_eq!(parse_elf(b"\x7fELF").map(|_| ()), no);
    assert_eq!(parse_elf(&[0x55; 4096]).map(|_| ()), no);
    assert_eq!(parse_elf(b"#!/bin/sh\necho hi\n").map(|_| ()), no);
    // Every truncation that cuts the headers or a segment's file bytes.
    let needed = (DATA_OFF + DATA_FILESZ) as usize;
    for len in (0..needed).step_by(7) {
        assert_eq!(parse_elf(&good[..len]).map(|_| ()), no, "truncated to {len}");
    }
    assert!(parse_elf(&good[..needed]).is_ok());
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        parse_elf(&b).map(|_| ())
    };
    assert_eq!(mutate(&|b| b[4] = 1), no, "ELF32");
    assert_eq!(mutate(&|b| b[5] = 2), no, "big endian");
    assert_eq!(mutate(&|b| b[18] = 3), no, "i386");
    assert_eq!(mutate(&|b| b[16] = 1), no, "ET_REL");
    assert_eq!(mutate(&|b| b[16] = 4), no, "ET_CORE");
    assert_eq!(mutate(&|b| b[54] = 32), no, "phentsize");
    assert_eq!(mutate(&|b| b[56..58].copy_from_slice(&0u16.to_le_bytes())), no, "no phdrs");
    assert_eq!(mutate(&|b| b[56..58].copy_from_slice(&0xffffu16.to_le_bytes())), no, "huge phnum");
    assert_eq!(mutate(&|b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())), no, "phoff");
    // PT_LOAD checks (index 2 is the data segment: phdr, text, data).
    assert_eq!(mutate(&|b| phdr_field(b, 2, 32, DATA_MEMSZ + 1)), no, "filesz > memsz");
    assert_eq!(mutate(&|b| phdr_field(b, 2, 8, u64::MAX - 10)), no, "offset overflow");
    assert_eq!(mutate(&|b| phdr_field(b, 2, 16, u64::MAX - 10)), no, "vaddr overflow");
    assert_eq!(mutate(&|b| phdr_field(b, 2, 16, 0x7fff_ffff_f000)), no, "beyond user space");
    assert_eq!(mutate(&|b| phdr_field(b, 2, 16, 0x40_3020)), no, "offset/vaddr not congruent");
    // Interpreter without its NUL, or outside the file.
    let mut with_interp = build_elf(3, 0, Some(b"/ld.so"));
    phdr_field(&mut with_interp, 1, 32, 6);
    assert_eq!(parse_elf(&with_interp).map(|_| ()), no);
    phdr_field(&mut with_interp, 1, 8, FILE_LEN as u64);
    assert_eq!(parse_elf(&with_interp).map(|_| ()), no);
}

#[test]
fn random_mutations_never_panic() {
    let good = build_elf(3, 0, Some(b"/ld.so"));
    let mut e = Env::new(1 << 20);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..1500 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            // Mostly the headers, sometimes anywhere.
            let i = if next() % 4 == 0 { next() as usize % b.len() } else { next() as usize % 400 };
            b[i] = next() as u8;
        }
        if let Ok(img) = parse_elf(&b) {
            let mut mm = e.map();
            let file = file_of(b);
            let argv = [b"x".to_vec()];
            let _ = load(&mut mm, &img, &file, None, &args(&argv, &[]), &mut e.frames, &e.hal.phys);
            check_refcounts(&[&mm], &e.frames).unwrap();
            mm.clear(&mut e.frames);
        }
    }
    e.frames.check_all_free().unwrap();
}

#[test]
fn load_static_exec() {
    let mut e = Env::new(4 << 20);
    let bytes = build_elf(2, 0x40_0000, None);
    let img = parse_elf(&bytes).unwrap();
    let file = file_of(bytes.clone());
    let mut mm = e.map();
    let argv = [b"prog".to_vec(), b"-v".to_vec(), Vec::new()];
    let envp = [b"PATH=/bin".to_vec(), b"HOME=/".to_vec()];
    let l = load(&mut mm, &img, &file, None, &args(&argv, &envp), &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(l.entry, 0x40_1000);
    let st = read_stack(&mut e, &mut mm, l.stack_pointer);
    assert_eq!(st.argv, argv);
    assert_eq!(st.envp, envp);
    let aux = &st.aux;
    assert_eq!(aux[&u64::from(at::AT_PHDR)], 0x40_0040);
    assert_eq!(aux[&u64::from(at::AT_PHENT)], 56);
    assert_eq!(aux[&u64::from(at::AT_PHNUM)], 4);
    assert_eq!(aux[&u64::from(at::AT_PAGESZ)], 4096);
    assert_eq!(aux[&u64::from(at::AT_ENTRY)], 0x40_1000);
    assert_eq!(aux[&u64::from(at::AT_BASE)], 0);
    assert_eq!(aux[&u64::from(at::AT_UID)], 1000);
    assert_eq!(aux[&u64::from(at::AT_EUID)], 1000);
    assert_eq!(aux[&u64::from(at::AT_GID)], 100);
    assert_eq!(aux[&u64::from(at::AT_EGID)], 100);
    assert_eq!(aux[&u64::from(at::AT_SECURE)], 0);
    assert_eq!(aux[&u64::from(at::AT_CLKTCK)], 100);
    assert!(aux.contains_key(&u64::from(at::AT_HWCAP)));
    let r = aux[&u64::from(at::AT_RANDOM)];
    assert_eq!(e.read(&mut mm, r, 16), vec![7; 16]);
    let x = aux[&u64::from(at::AT_EXECFN)];
    assert_eq!(e.cstr(&mut mm, x), b"/bin/prog");
    let p = aux[&u64::from(at::AT_PLATFORM)];
    assert_eq!(e.cstr(&mut mm, p), b"x86_64");
    // The program headers are readable where AT_PHDR says.
    assert_eq!(e.read(&mut mm, 0x40_0040, 56), &bytes[64..120]);
    // Text, data, bss; file bytes past p_filesz do not leak into bss.
    assert_eq!(e.read(&mut mm, 0x40_0000, TEXT_FILESZ as usize), &bytes[..TEXT_FILESZ as usize]);
    let d = 0x40_0000 + DATA_VADDR;
    assert_eq!(e.read(&mut mm, d, DATA_FILESZ as usize), &bytes[DATA_OFF as usize..(DATA_OFF + DATA_FILESZ) as usize]);
    let bss = e.read(&mut mm, d + DATA_FILESZ, (DATA_MEMSZ - DATA_FILESZ) as usize);
    assert!(bss.iter().all(|&b| b == 0));
    // Protections: text is not writable, data is; the break follows the data.
    assert_eq!(mm.handle_fault(0x40_1000, Access::Write, &mut e.frames, &e.hal.phys), Err(FaultError::Segv { maperr: false }));
    assert_eq!(mm.handle_fault(0x40_1000, Access::Execute, &mut e.frames, &e.hal.phys), Ok(()));
    assert_eq!(mm.handle_fault(d, Access::Execute, &mut e.frames, &e.hal.phys), Err(FaultError::Segv { maperr: false }));
    assert_eq!(mm.brk(0, &mut e.frames), 0x40_0000 + 0x7000);
    let stack = mm.vmas().find(|v| v.kind == VmaKind::Stack).unwrap();
    assert_eq!(stack.end, mm.user_end());
    assert_eq!(stack.prot, Prot::READ | Prot::WRITE);
    assert!(stack.start <= l.stack_pointer);
    check_refcounts(&[&mm], &e.frames).unwrap();
    // Exec again into the same map after clearing it.
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
    load(&mut mm, &img, &file, None, &args(&argv, &envp), &mut e.frames, &e.hal.phys).unwrap();
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn load_static_pie_and_interpreter() {
    let mut e = Env::new(4 << 20);
    let main_bytes = build_elf(3, 0, None);
    let img = parse_elf(&main_bytes).unwrap();
    let file = file_of(main_bytes);
    let argv = [b"pie".to_vec()];
    let mut mm = e.map();
    let l = load(&mut mm, &img, &file, None, &args(&argv, &[]), &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(l.entry, et_dyn_base(hal::mock::MOCK_USER_END) + 0x1000);
    let st = read_stack(&mut e, &mut mm, l.stack_pointer);
    assert_eq!(st.aux[&u64::from(at::AT_PHDR)], et_dyn_base(hal::mock::MOCK_USER_END) + 64);
    assert_eq!(st.aux[&u64::from(at::AT_ENTRY)], et_dyn_base(hal::mock::MOCK_USER_END) + 0x1000);
    mm.clear(&mut e.frames);

    // A PIE with an interpreter: both loaded, the interpreter runs first.
    let main_bytes = build_elf(3, 0, Some(b"/lib/ld.so"));
    let img = parse_elf(&main_bytes).unwrap();
    let file = file_of(main_bytes);
    let ld_bytes = build_elf(3, 0, None);
    let ld = parse_elf(&ld_bytes).unwrap();
    let ld_file = file_of(ld_bytes.clone());
    let l = load(&mut mm, &img, &file, Some((&ld, &ld_file)), &args(&argv, &[]), &mut e.frames, &e.hal.phys).unwrap();
    let st = read_stack(&mut e, &mut mm, l.stack_pointer);
    let base = st.aux[&u64::from(at::AT_BASE)];
    assert_ne!(base, 0);
    assert_eq!(base % 4096, 0);
    assert_eq!(l.entry, base + 0x1000);
    assert_eq!(st.aux[&u64::from(at::AT_ENTRY)], et_dyn_base(hal::mock::MOCK_USER_END) + 0x1000);
    assert_eq!(e.read(&mut mm, base, 64), &ld_bytes[..64]);
    check_refcounts(&[&mm], &e.frames).unwrap();
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

#[test]
fn pie_linked_high_is_moved_down() {
    let mut e = Env::new(4 << 20);
    let bytes = build_elf(3, 0x6000_0000_0000, None);
    let img = parse_elf(&bytes).unwrap();
    let mut mm = e.map();
    let argv = [b"hi".to_vec()];
    let l = load(&mut mm, &img, &file_of(bytes.clone()), None, &args(&argv, &[]), &mut e.frames, &e.hal.phys).unwrap();
    assert_eq!(l.entry, et_dyn_base(hal::mock::MOCK_USER_END) + 0x1000);
    assert_eq!(e.read(&mut mm, et_dyn_base(hal::mock::MOCK_USER_END), 64), &bytes[..64]);
    // ET_EXEC beyond the user end cannot be placed.
    let bytes = build_elf(2, 0x7fff_ffff_0000, None);
    let img = parse_elf(&bytes).unwrap();
    mm.clear(&mut e.frames);
    assert_eq!(load(&mut mm, &img, &file_of(bytes), None, &args(&argv, &[]), &mut e.frames, &e.hal.phys), Err(Errno::ENOMEM));
    e.frames.check_all_free().unwrap();
}

#[test]
fn load_errors() {
    let bytes = build_elf(2, 0x40_0000, None);
    let img = parse_elf(&bytes).unwrap();
    let file = file_of(bytes);
    // E2BIG: one argument too long, or too many bytes altogether.
    let mut e = Env::new(4 << 20);
    let mut mm = e.map();
    let argv = [vec![b'a'; MAX_ARG_STRLEN]];
    assert_eq!(load(&mut mm, &img, &file, None, &args(&argv, &[]), &mut e.frames, &e.hal.phys), Err(Errno::E2BIG));
    assert_eq!(mm.vmas().count(), 0, "a failed load leaves the map empty");
    let envp: Vec<Vec<u8>> = (0..40).map(|_| vec![b'e'; 64 * 1024]).collect();
    assert_eq!(load(&mut mm, &img, &file, None, &args(&[], &envp), &mut e.frames, &e.hal.phys), Err(Errno::E2BIG));
    e.frames.check_all_free().unwrap();
    // ENOMEM: not enough frames for the stack and the partial data page.
    let mut e = Env::new(2 * 4096);
    let mut mm = e.map();
    let envp: Vec<Vec<u8>> = (0..3).map(|_| vec![b'e'; 4096]).collect();
    assert_eq!(load(&mut mm, &img, &file, None, &args(&[], &envp), &mut e.frames, &e.hal.phys), Err(Errno::ENOMEM));
    assert_eq!(mm.vmas().count(), 0);
    e.frames.check_all_free().unwrap();
}

/// A real static-PIE glibc binary: Debian's `ldconfig` is one (package
/// libc-bin is essential, so it is on every Debian system). Skipped elsewhere.
#[test]
fn load_real_static_pie() {
    let Some(bytes) = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].iter().find_map(|p| std::fs::read(p).ok()) else {
        return;
    };
    let img = parse_elf(&bytes).unwrap();
    assert!(img.is_dyn());
    assert_eq!(img.interpreter(), None);
    let mut e = Env::new(16 << 20);
    let mut mm = e.map();
    let file = file_of(bytes.clone());
    let argv = [b"ldconfig".to_vec(), b"-p".to_vec()];
    let l = load(&mut mm, &img, &file, None, &args(&argv, &[]), &mut e.frames, &e.hal.phys).unwrap();
    let exec = mm.vmas().find(|v| v.start <= l.entry && l.entry < v.end).unwrap();
    assert!(exec.prot.contains(Prot::EXEC));
    // The code at the entry point is the file's.
    let seg = img.segments().iter().find(|s| et_dyn_base(hal::mock::MOCK_USER_END) + s.vaddr <= l.entry && l.entry < et_dyn_base(hal::mock::MOCK_USER_END) + s.vaddr + s.filesz).unwrap();
    let off = (l.entry - et_dyn_base(hal::mock::MOCK_USER_END) - seg.vaddr + seg.offset) as usize;
    assert_eq!(e.read(&mut mm, l.entry, 16), &bytes[off..off + 16]);
    let st = read_stack(&mut e, &mut mm, l.stack_pointer);
    assert_eq!(st.argv, argv);
    let phdr = st.aux[&u64::from(at::AT_PHDR)];
    let phnum = st.aux[&u64::from(at::AT_PHNUM)] as usize;
    assert_eq!(e.read(&mut mm, phdr, phnum * 56), &bytes[64..64 + phnum * 56]);
    check_refcounts(&[&mm], &e.frames).unwrap();
    mm.clear(&mut e.frames);
    e.frames.check_all_free().unwrap();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
        /// Arbitrary bytes behind a valid ELF64 ident never panic the parser.
        #[test]
        fn parse_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..700), cut in 0usize..800) {
            let mut b = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
            b.extend_from_slice(&tail);
            b.truncate(cut.max(1));
            let _ = parse_elf(&b);
        }

        /// Random edits of a good file's program headers: parse, and load what parses.
        #[test]
        fn edited_headers_load_or_fail_cleanly(edits in proptest::collection::vec((64usize..400, any::<u8>()), 1..6)) {
            let mut b = build_elf(3, 0, None);
            for (i, v) in edits {
                b[i] = v;
            }
            if let Ok(img) = parse_elf(&b) {
                let mut e = Env::new(1 << 20);
                let mut mm = e.map();
                let argv = [b"x".to_vec()];
                let _ = load(&mut mm, &img, &file_of(b), None, &args(&argv, &[]), &mut e.frames, &e.hal.phys);
                check_refcounts(&[&mm], &e.frames).map_err(TestCaseError::fail)?;
                mm.clear(&mut e.frames);
                e.frames.check_all_free().map_err(TestCaseError::fail)?;
            }
        }
    }
}
