//! Checks on the built guest programs themselves (no kernel needed): every
//! program in `src/bin` was built, is a static x86_64 ELF (no PT_INTERP, so
//! no dynamic loader is needed in the guest), and is in the default root.
//! Run with `cargo xtask test`.

mod common;

use common::*;
use std::path::Path;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

/// Whether `path` is an x86_64 ELF executable without an interpreter.
fn static_elf(path: &Path) -> Result<(), String> {
    let b = std::fs::read(path).map_err(|e| format!("read: {e}"))?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let (e_type, machine) = (u16_at(&b, 16), u16_at(&b, 18));
    if machine != 62 {
        return Err(format!("e_machine {machine}, not x86_64"));
    }
    if e_type != 2 && e_type != 3 {
        return Err(format!("e_type {e_type}, not ET_EXEC/ET_DYN"));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&b, 32) as usize,
        u16_at(&b, 54) as usize,
        u16_at(&b, 56) as usize,
    );
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            return Err("program headers past the end of the file".into());
        }
        if u32_at(&b, o) == 3 {
            return Err("has PT_INTERP: dynamically linked".into());
        }
    }
    Ok(())
}

fn program_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list src/bin")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_guest_program_is_built_static_and_in_the_default_root() {
    let bin = env_path("RUSTUML_GUEST_BIN");
    let root = default_root();
    let names = program_names();
    assert!(names.len() >= 8, "too few programs: {names:?}");
    for name in names {
        let built = bin.join(&name);
        static_elf(&built).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
        let shipped = root.join("tests").join(&name);
        static_elf(&shipped).unwrap_or_else(|e| panic!("{}: {e}", shipped.display()));
    }
}

#[test]
fn the_default_root_ships_files_that_must_not_execute() {
    let root = default_root();
    for f in ["data/truncated_elf", "data/garbage"] {
        let p = root.join("tests").join(f);
        assert!(p.is_file(), "{} is missing", p.display());
        assert!(
            static_elf(&p).is_err(),
            "{} looks like a valid program",
            p.display()
        );
    }
}
