//! `cargo xtask fuzz --minutes N [--batch CASES] [--only NAME]`: runs kernel-core's
//! model-based properties (`kernel-core/tests/prop_*.rs`) for N minutes, round
//! robin, each batch with `PROPTEST_CASES=CASES` (fresh random seeds every
//! batch), printing cases run and the rate as it goes. A failure stops the run:
//! proptest has shrunk it and saved the seed under
//! `kernel-core/proptest-regressions/<property>.txt` (check that file in; CI
//! replays it first).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{cargo, Paths};

/// (test target, property) pairs.
const PROPERTIES: &[(&str, &str)] = &[
    ("prop_pipes", "pipes_and_fds_match_the_model"),
    ("prop_vfs", "vfs_matches_the_model"),
    ("prop_mm", "address_space_matches_the_model"),
];

/// Options of the fuzz command.
pub struct Options {
    pub minutes: f64,
    pub batch: u32,
    pub only: Option<String>,
}

fn test_cmd(p: &Paths, target: &str) -> std::process::Command {
    let mut c = cargo();
    c.current_dir(&p.workspace)
        .env("CARGO_TARGET_DIR", &p.target)
        .args(["test", "-q", "-p", "kernel-core", "--test", target]);
    c
}

pub fn fuzz(p: &Paths, o: &Options) -> Result<(), String> {
    let props: Vec<_> = PROPERTIES
        .iter()
        .filter(|(t, n)| o.only.as_deref().is_none_or(|x| t.contains(x) || n.contains(x)))
        .collect();
    if props.is_empty() {
        return Err("--only matches no property".into());
    }
    // Build once, so the clock measures fuzzing.
    for (t, _) in &props {
        let st = test_cmd(p, t).arg("--no-run").status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("building {t} failed"));
        }
    }
    let start = Instant::now();
    let budget = Duration::from_secs_f64(o.minutes * 60.0);
    let mut counts = vec![(0u64, Duration::ZERO); props.len()];
    let mut round = 0usize;
    while start.elapsed() < budget {
        let i = round % props.len();
        round += 1;
        let (target, name) = props[i];
        let t0 = Instant::now();
        let out = test_cmd(p, target)
            .env("PROPTEST_CASES", o.batch.to_string())
            .args(["--", "--exact", name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let dt = t0.elapsed();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!(
                "{target}::{name} failed after {} earlier cases: the shrunk case is saved in kernel-core/proptest-regressions/{target}.txt",
                counts[i].0
            ));
        }
        counts[i].0 += o.batch as u64;
        counts[i].1 += dt;
        let total: u64 = counts.iter().map(|c| c.0).sum();
        let el = start.elapsed().as_secs_f64();
        let per: Vec<String> = props
            .iter()
            .zip(&counts)
            .map(|((t, _), (n, d))| format!("{t} {n} ({:.0}/s)", *n as f64 / d.as_secs_f64().max(1e-9)))
            .collect();
        println!(
            "[{:>5.0}s] {total} cases, {:.0} cases/s overall | {}",
            el,
            total as f64 / el,
            per.join(", ")
        );
    }
    println!("fuzz: done, no failures");
    Ok(())
}
