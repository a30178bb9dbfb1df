//! `cargo xtask fuzz --minutes N [--batch CASES] [--only NAME]`: runs kernel-core's
//! properties (the model-based `kernel-core/tests/prop_*.rs` and the "never
//! panics, invariants hold" properties of `fuzz_syscalls.rs` and
//! `fuzz_elf.rs`, mutated ext4 images in `fuzz_ext4.rs`) for N minutes,
//! round robin, each batch with `PROPTEST_CASES` cases (fresh random seeds
//! every batch), printing cases run and the rate as it goes. A batch takes
//! about half a minute: its size follows each property's measured rate, up
//! to `--batch`. The test binaries are built once and then run directly, so
//! edits to the tree during a long run change nothing. A failure stops the
//! run: proptest has shrunk it and saved the seed in the property's
//! regression file (check that file in; CI replays it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, Paths};

/// (test target, property, regression file under kernel-core/).
const PROPERTIES: &[(&str, &str, &str)] = &[
    ("prop_pipes", "pipes_and_fds_match_the_model", "proptest-regressions/prop_pipes.txt"),
    ("prop_vfs", "vfs_matches_the_model", "proptest-regressions/prop_vfs.txt"),
    ("prop_mm", "address_space_matches_the_model", "proptest-regressions/prop_mm.txt"),
    ("prop_signals", "process_tree_matches_the_model", "proptest-regressions/prop_signals.txt"),
    ("fuzz_syscalls", "random_syscalls_never_panic", "tests/fuzz_syscalls.proptest-regressions"),
    ("fuzz_syscalls", "many_tasks_keep_the_invariants", "tests/fuzz_syscalls.proptest-regressions"),
    ("fuzz_elf", "malformed_executables_never_panic", "tests/fuzz_elf.proptest-regressions"),
    ("fuzz_ext4", "mutated_images_never_panic", "proptest-regressions/fuzz_ext4.txt"),
    ("prop_block", "block_layer_matches_the_model", "proptest-regressions/prop_block.txt"),
];

/// Wall time a batch aims at.
const BATCH_SECS: f64 = 30.0;

/// Options of the fuzz command.
pub struct Options {
    pub minutes: f64,
    pub batch: u32,
    pub only: Option<String>,
}

/// Build the test target and return its executable (from cargo's
/// "Executable tests/x.rs (path)" line).
fn build(p: &Paths, target: &str) -> Result<PathBuf, String> {
    let out = cargo()
        .current_dir(&p.workspace)
        .env("CARGO_TARGET_DIR", &p.target)
        .args(["test", "-p", "kernel-core", "--test", target, "--no-run"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("{err}");
        return Err(format!("building {target} failed"));
    }
    err.lines()
        .filter(|l| l.trim_start().starts_with("Executable") && l.contains(&format!("tests/{target}.rs")))
        .find_map(|l| Some(PathBuf::from(l.rsplit_once('(')?.1.trim_end().trim_end_matches(')'))))
        // Cargo prints the path relative to the directory it ran in.
        .map(|exe| p.workspace.join(exe))
        .ok_or_else(|| format!("cargo did not say where the {target} test binary is"))
}

fn run_batch(exe: &Path, crate_dir: &Path, name: &str, cases: u32) -> std::io::Result<std::process::Output> {
    Command::new(exe)
        .current_dir(crate_dir)
        .env("CARGO_MANIFEST_DIR", crate_dir)
        .env("PROPTEST_CASES", cases.to_string())
        .args(["--exact", name, "--test-threads", "1"])
        .stdin(Stdio::null())
        .output()
}

pub fn fuzz(p: &Paths, o: &Options) -> Result<(), String> {
    let props: Vec<_> = PROPERTIES
        .iter()
        .filter(|(t, n, _)| o.only.as_deref().is_none_or(|x| t.contains(x) || n.contains(x)))
        .collect();
    if props.is_empty() {
        return Err("--only matches no property".into());
    }
    // Build once, so the clock measures fuzzing and later edits don't matter.
    let mut exes = Vec::new();
    for (t, _, _) in &props {
        exes.push(build(p, t)?);
    }
    let crate_dir = p.workspace.join("kernel-core");
    let start = Instant::now();
    let budget = Duration::from_secs_f64(o.minutes * 60.0);
    // (cases, time) per property.
    let mut counts = vec![(0u64, Duration::ZERO); props.len()];
    let mut round = 0usize;
    while start.elapsed() < budget {
        let i = round % props.len();
        round += 1;
        let (target, name, regressions) = props[i];
        // Size the batch from the measured rate (a small first batch measures it).
        let left = (budget.saturating_sub(start.elapsed())).as_secs_f64();
        let cases = if counts[i].0 == 0 {
            20
        } else {
            let rate = counts[i].0 as f64 / counts[i].1.as_secs_f64().max(1e-3);
            (rate * BATCH_SECS.min(left.max(1.0))).clamp(10.0, o.batch.max(10) as f64) as u32
        };
        let t0 = Instant::now();
        let out = run_batch(&exes[i], &crate_dir, name, cases).map_err(|e| format!("cannot run {target}: {e}"))?;
        let dt = t0.elapsed();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!(
                "{target}::{name} failed after {} earlier cases: the shrunk case is saved in kernel-core/{regressions}",
                counts[i].0
            ));
        }
        counts[i].0 += cases as u64;
        counts[i].1 += dt;
        let total: u64 = counts.iter().map(|c| c.0).sum();
        let el = start.elapsed().as_secs_f64();
        let per: Vec<String> = props
            .iter()
            .zip(&counts)
            .map(|((_, n, _), (k, d))| format!("{n} {k} ({:.1}/s)", *k as f64 / d.as_secs_f64().max(1e-9)))
            .collect();
        println!("[{:>5.0}s] {total} cases, {:.1} cases/s overall | {}", el, total as f64 / el, per.join(", "));
    }
    println!("fuzz: done after {:.0} s, no failures. Cases per property:", start.elapsed().as_secs_f64());
    for ((t, n, _), (k, d)) in props.iter().zip(&counts) {
        println!("  {t}::{n}: {k} cases in {:.0} s ({:.1}/s)", d.as_secs_f64(), *k as f64 / d.as_secs_f64().max(1e-9));
    }
    Ok(())
}
