//! The dependency rule of kernel-core (written at the top of `src/lib.rs`),
//! checked on the source: every `crate::` and `super::` path of every file
//! is read and its first segment taken as the module it depends on.
//!
//! - The top — `kernel` (the loop and the glue between subsystems),
//!   `syscall` (the handlers), `control` (the operator's requests) and
//!   `invariants` (checks over the whole kernel) — may use every module.
//! - No other module uses a top module.
//! - The bottom — `errno`, `wait`, `mm`, `budget` — uses only the bottom.
//!
//! Edges that break the rule and are not fixed yet are listed in
//! [`KNOWN`]: that list may only shrink. The test fails on a forbidden edge
//! not in it, and on an entry of it that no longer exists (remove it).
//! Test code (`tests.rs` files, `#[cfg(test)] mod` blocks) and comments
//! are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules on top: they may use everything.
const TOP: &[&str] = &["kernel", "syscall", "control", "invariants"];
/// Modules at the bottom: they use only each other.
const BOTTOM: &[&str] = &["errno", "wait", "mm", "budget"];
/// Items of the crate root and the module that defines them (the root's
/// own `Pid` belongs to no module).
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Errno", "errno"),
    ("SysResult", "errno"),
    ("Pid", ""),
    ("boot", "kernel"),
    ("BootConfig", "kernel"),
    ("BootError", "kernel"),
    ("Devices", "kernel"),
    ("NetAttach", "kernel"),
];

/// Forbidden edges still in the tree, (from, to): this list may only shrink
/// (it is empty: keep it so).
const KNOWN: &[(&str, &str)] = &[];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text without comments and without a trailing `#[cfg(test)] mod`.
fn code(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|n| n.trim_start().starts_with("mod ")) {
            break;
        }
        out.push_str(l.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules (or root items) the code refers to. `depth` is
/// how many `super::` reach the crate root from this file.
fn refs(code: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `kernel_core::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d as e}`: the first segment of each item
            // (nested groups belong to an item and are skipped).
            let mut level = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => level += 1,
                    '}' if level == 0 => break,
                    '}' => level -= 1,
                    ',' if level == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        let tail = &rest[i..];
        let mut n = 0;
        let mut t = tail;
        while let Some(s) = t.strip_prefix("super::") {
            n += 1;
            t = s;
        }
        if n >= depth {
            out.insert(ident(t).to_string());
        }
        rest = &tail["super::".len() * n..];
    }
    out
}

#[test]
fn subsystems_do_not_import_the_layers_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let root: BTreeMap<&str, &str> = ROOT_ITEMS.iter().copied().collect();
    // (from, to) -> files
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = rel.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
        if parts == ["lib"] || parts.last().is_some_and(|l| l == "tests") {
            continue;
        }
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        let from = parts[0].clone();
        let text = std::fs::read_to_string(f).expect("read source");
        for r in refs(&code(&text), parts.len()) {
            let to = root.get(r.as_str()).map_or(r.as_str(), |m| m).to_string();
            if to.is_empty() || to == from {
                continue;
            }
            edges.entry((from.clone(), to)).or_default().insert(rel.display().to_string());
        }
    }
    assert!(edges.keys().any(|(a, b)| a == "syscall" && b == "task"), "the scan finds no edges: is it broken?");
    let forbidden = |a: &str, b: &str| {
        (!TOP.contains(&a) && TOP.contains(&b)) || (BOTTOM.contains(&a) && !BOTTOM.contains(&b))
    };
    let mut errors = Vec::new();
    for ((a, b), files) in &edges {
        if forbidden(a, b) && !KNOWN.contains(&(a.as_str(), b.as_str())) {
            errors.push(format!("{a} -> {b} (in {}) breaks the dependency rule in src/lib.rs", files.iter().cloned().collect::<Vec<_>>().join(", ")));
        }
    }
    for &(a, b) in KNOWN {
        if !edges.contains_key(&(a.to_string(), b.to_string())) {
            errors.push(format!("{a} -> {b} is gone: remove it from KNOWN (the list may only shrink)"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_scan_reads_grouped_and_relative_paths() {
    let r = refs("use crate::{fs::Loc, task::{Pid, Task}, Errno};\nlet x = super::super::net::Socket;", 2);
    assert_eq!(r, ["Errno", "fs", "net", "task"].iter().map(|s| s.to_string()).collect());
    assert!(refs("use kernel_core::kernel::boot;", 1).is_empty());
    assert_eq!(code("use crate::a; // crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n"), "use crate::a; \n");
}
