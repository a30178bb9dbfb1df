//! The README's examples, run as a reader would run them: every shell block
//! marked `<!-- runnable -->` in README.md is run from the repository root
//! with `sh -e`, and must succeed. The only changes: `cargo xtask run` gets
//! `--no-build` (this suite's xtask already built everything, and a rebuild
//! would replace the root other tests are using) and `target/release/` names
//! the kernels `cargo xtask test` built. A block with a command this test
//! cannot run fails, so the README and the test cannot drift apart.

mod common;

use common::{env_path, kernel_from, lock, run};
use std::path::Path;
use std::process::Command;

/// The shell blocks that follow a `<!-- runnable -->` line.
fn runnable_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() != "<!-- runnable -->" {
            continue;
        }
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "a runnable mark must be followed by a ```sh block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

/// `cargo xtask` as the README's reader types it, for the commands that can
/// run inside the test suite.
const PRELUDE: &str = r#"
cargo() {
    if [ "$1" != xtask ]; then echo "README test: cannot run: cargo $*" >&2; exit 99; fi
    shift; sub=$1; shift
    case $sub in
        run) "$RUSTUML_XTASK" run --no-build "$@" ;;
        *) echo "README test: cannot run here: cargo xtask $sub" >&2; exit 99 ;;
    esac
}
"#;

#[test]
fn readme_examples_run_as_written() {
    let _g = lock();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    let text = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let blocks = runnable_blocks(&text);
    assert!(blocks.len() >= 3, "README.md has only {} runnable blocks", blocks.len());
    let xtask = env_path("RUSTUML_XTASK");
    let skas = kernel_from("RUSTUML_KERNEL_SKAS");
    let tt = kernel_from("RUSTUML_KERNEL_TT");
    for block in blocks {
        let script = format!(
            "{PRELUDE}\n{}",
            block
                .replace("target/release/kernel-skas", &skas.to_string_lossy())
                .replace("target/release/kernel-tt", &tt.to_string_lossy())
        );
        let out = run(
            Command::new("sh").args(["-e", "-c", &script]).current_dir(repo).env("RUSTUML_XTASK", &xtask),
            "a README block",
        );
        assert!(
            out.code == 0 && !out.signaled,
            "README block failed with status {}:\n{block}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn blocks_are_found() {
    let t = "x\n<!-- runnable -->\n```sh\na\nb\n```\n```sh\nc\n```\n<!-- runnable -->\n```sh\nd\n```\n";
    assert_eq!(runnable_blocks(t), vec!["a\nb".to_string(), "d".to_string()]);
}
