//! Is BENCHMARKS.md newer than the code it measures? A test (run by
//! `cargo xtask test`) fails when a commit changed a hot path after the last
//! commit of BENCHMARKS.md, and names that commit: the table must be made
//! again (`cargo xtask bench --peers --report benchmarks`, see BENCHMARKS.md).

use std::path::Path;
use std::process::Command;

/// The files whose changes move the benchmark figures: the trap paths of
/// both backends, stub creation, the scheduler and trap loop, the system
/// call table and the memory manager's fault and map paths.
pub const HOT_PATHS: &[&str] = &[
    "hal-uml-x86_64/src/seccomp.rs",
    "hal-uml-x86_64/src/ptrace.rs",
    "hal-uml-x86_64/src/stub.rs",
    "hal-uml-x86_64/src/spawn.rs",
    "hal-uml-host/src/tracer.rs",
    "hal-uml-host/src/xstate.rs",
    "hal-uml-host/src/sys.rs",
    "hal-uml-host/src/ops.rs",
    "hal-uml-tt/src/lib.rs",
    "kernel-core/src/kernel/mod.rs",
    "kernel-core/src/kernel/signals.rs",
    "kernel-core/src/task/table.rs",
    "kernel-core/src/task/sched.rs",
    "kernel-core/src/syscall/mod.rs",
    "kernel-core/src/mm/map_ops.rs",
    "kernel-core/src/mm/memory_map.rs",
];

/// (commit time, "hash subject") of the newest commit touching `paths`.
fn last_change(repo: &Path, paths: &[&str]) -> Result<Option<(u64, String)>, String> {
    let out = Command::new("git")
        .current_dir(repo)
        .args(["log", "-1", "--format=%ct %h %s", "--"])
        .args(paths)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(line.split_once(' ').and_then(|(t, rest)| Some((t.parse().ok()?, rest.to_string()))))
}

/// `Some(why)` when BENCHMARKS.md is older than the last hot-path change.
pub fn stale_benchmarks(repo: &Path) -> Result<Option<String>, String> {
    let bench = last_change(repo, &["BENCHMARKS.md"])?;
    let hot = last_change(repo, HOT_PATHS)?;
    Ok(match (bench, hot) {
        (Some((tb, b)), Some((th, h))) if th > tb => Some(format!(
            "BENCHMARKS.md (last changed by {b}) is older than a change to a hot path: {h}. \
             Run the benchmarks again and commit the new table."
        )),
        (None, Some((_, h))) => Some(format!("BENCHMARKS.md is not committed; the hot paths are ({h})")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn benchmarks_are_newer_than_the_hot_paths() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
        if !repo.join(".git").exists() {
            eprintln!("not a git checkout: cannot tell how old BENCHMARKS.md is");
            return;
        }
        for p in super::HOT_PATHS {
            assert!(repo.join(p).is_file(), "hot path {p} does not exist: update HOT_PATHS");
        }
        match super::stale_benchmarks(repo) {
            Ok(None) => {}
            Ok(Some(why)) => panic!("{why}"),
            Err(e) => panic!("git: {e}"),
        }
    }
}
