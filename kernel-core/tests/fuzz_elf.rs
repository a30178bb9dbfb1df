//! The ELF loader against malformed executables: init execve()s a mutated
//! ELF (program headers with wild offsets, addresses, sizes, alignments and
//! types, an interpreter that is itself mutated, random byte flips). Every
//! case must end without a panic: execve fails with an errno (before the
//! point of no return) or the process dies of a signal (after it) or the new
//! image runs; the kernel's invariants hold before every step (frame
//! reference counts, ownership, run queue) and no frame leaks at shutdown.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::model::cases;
use common::*;
use kernel_core::kernel::boot_checked;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const BASE: u64 = 0x40_0000;

#[derive(Debug, Clone)]
struct Phdr {
    ty: u32,
    flags: u32,
    off: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// A mutated executable.
#[derive(Debug, Clone)]
struct Exe {
    etype: u16,
    phoff: u64,
    /// e_phnum as written (may disagree with `phdrs`).
    phnum: u16,
    phdrs: Vec<Phdr>,
    entry: u64,
    flips: Vec<(usize, u8)>,
    len: usize,
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => Just(BASE),
        2 => (0u64..0x20).prop_map(|p| BASE + p * 0x1000),
        1 => Just(0),
        1 => Just(0x1_0000u64),
        1 => Just(0x7fff_ffff_e000u64),
        1 => Just(0x7fff_ffff_f000u64),
        1 => Just(u64::MAX - 0xfff),
        1 => (0u64..0x1000).prop_map(|x| BASE + x),
        1 => any::<u64>(),
    ]
}
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0x1000u64),
        2 => Just(0x3000u64),
        1 => Just(0),
        2 => 0u64..0x4000,
        1 => Just(1u64 << 40),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}
/// A field: mostly the valid value, sometimes a mutation.
fn or<T: std::fmt::Debug + Clone + 'static>(valid: T, wild: impl Strategy<Value = T> + 'static) -> BoxedStrategy<T> {
    prop_oneof![4 => Just(valid), 1 => wild].boxed()
}
fn phdr() -> impl Strategy<Value = Phdr> {
    let ty = prop_oneof![12 => Just(1u32), 2 => Just(3u32), 1 => Just(6u32), 1 => Just(7u32), 1 => Just(0x6474_e551u32), 1 => any::<u32>()];
    let off = prop_oneof![1 => Just(0x200u64), 1 => Just(0x1000u64), 1 => 0u64..0x1200, 1 => any::<u64>()];
    let align = prop_oneof![1 => Just(0u64), 1 => Just(1u64), 1 => Just(0x20_0000u64), 1 => Just(3u64), 1 => any::<u64>()];
    (ty, or(7u32, 0u32..8), or(0u64, off), or(BASE, addr()), or(0x1000u64, size()), or(0x3000u64, size()), or(0x1000u64, align))
        .prop_map(|(ty, flags, off, vaddr, filesz, memsz, align)| Phdr { ty, flags, off, vaddr, filesz, memsz, align })
}
fn exe() -> impl Strategy<Value = Exe> {
    (
        prop_oneof![6 => Just(2u16), 3 => Just(3u16), 1 => any::<u16>()],
        prop_oneof![8 => Just(64u64), 1 => 0u64..0x1100, 1 => any::<u64>()],
        prop_oneof![3 => prop::collection::vec(phdr(), 1..2), 1 => prop::collection::vec(phdr(), 2..5)],
        prop_oneof![8 => Just(None), 1 => (0u16..8).prop_map(Some), 1 => any::<u16>().prop_map(Some)],
        prop_oneof![3 => Just(BASE + 0x1000), 1 => addr()],
        prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec((0usize..0x1000, any::<u8>()), 1..4)],
        prop_oneof![8 => Just(0x1000usize), 1 => 0usize..0x1000],
    )
        .prop_map(|(etype, phoff, phdrs, phnum, entry, flips, len)| Exe {
            etype,
            phoff,
            phnum: phnum.unwrap_or(phdrs.len() as u16),
            phdrs,
            entry,
            flips,
            len,
        })
}

/// The bytes of `e`: a valid ELF header, then the mutations; the interpreter
/// path `/interp` sits at offset 0x300.
fn build(e: &Exe) -> Vec<u8> {
    let mut f = elf(BASE, b"");
    f[0x300..0x308].copy_from_slice(b"/interp\0");
    f[16..18].copy_from_slice(&e.etype.to_le_bytes());
    f[24..32].copy_from_slice(&e.entry.to_le_bytes());
    f[32..40].copy_from_slice(&e.phoff.to_le_bytes());
    f[56..58].copy_from_slice(&e.phnum.to_le_bytes());
    for (i, p) in e.phdrs.iter().enumerate() {
        let Some(at) = usize::try_from(e.phoff).ok().and_then(|o| o.checked_add(56 * i)) else { break };
        if at + 56 > f.len() {
            break;
        }
        let ph = &mut f[at..at + 56];
        ph[0..4].copy_from_slice(&p.ty.to_le_bytes());
        ph[4..8].copy_from_slice(&p.flags.to_le_bytes());
        // An interpreter entry points at "/interp" unless its offset is wild.
        let off = if p.ty == 3 && p.off < 0x1200 { 0x300 } else { p.off };
        let filesz = if p.ty == 3 && p.off < 0x1200 { 8 } else { p.filesz };
        ph[8..16].copy_from_slice(&off.to_le_bytes());
        ph[16..24].copy_from_slice(&p.vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&p.vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&p.memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&p.align.to_le_bytes());
    }
    for &(i, b) in &e.flips {
        f[i] ^= b.max(1);
    }
    f.truncate(e.len);
    f
}

/// Init execs `/bad` (a few times at most: a mutated image may start at
/// init's own entry and run this script again), then exits with 3.
fn run(bad: &Exe, interp: &Exe) -> Result<(), String> {
    let execs = Rc::new(Cell::new(0u32));
    let ex = execs.clone();
    let path = BASE + DATA_OFF;
    let argv = BASE + DATA_OFF + 0x10;
    let first = sys_with(move |_| {
        ex.set(ex.get() + 1);
        if ex.get() > 4 {
            (g::__NR_exit_group, [7, 0, 0, 0, 0, 0])
        } else {
            (g::__NR_execve, [path, argv, 0, 0, 0, 0])
        }
    });
    let p = Program { base: BASE, insns: vec![first, sys(g::__NR_exit_group, &[3])] };
    let (mut hal, _) = machine(vec![p]);
    let mut data = b"/bad\0".to_vec();
    data.resize(0x10, 0);
    data.extend(path.to_le_bytes());
    data.extend(0u64.to_le_bytes());
    let cfg = config(
        "/init",
        &["init"],
        &[("init", REG, elf(BASE, &data)), ("bad", REG, build(bad)), ("interp", REG, build(interp))],
    );
    let mut cfg = cfg;
    cfg.trace_syscalls = std::env::var("FUZZ_DEBUG").is_ok();
    let st = boot_checked(&mut hal, cfg).map_err(|e| format!("boot: {e}"))?;
    if std::env::var("FUZZ_DEBUG").is_ok() {
        eprintln!("status {st} execs {} log {:?}", execs.get(), hal.log);
    }
    if let Some(l) = hal.log.iter().find(|l| l.contains("leak") || l.contains("invariant violated")) {
        return Err(format!("{l} (after {} execs)", execs.get()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    #[test]
    fn malformed_executables_never_panic(bad in exe(), interp in exe()) {
        run(&bad, &interp).map_err(TestCaseError::fail)?;
    }
}
