//! File-system conformance (`conf_fs`) under both backends, compared with a
//! native run; and hostfs exports (`--hostfs`). Run with `cargo xtask test`.

mod common;

use common::*;

/// Runs `/tests/<prog> <args>` natively and under the kernel in `var`,
/// and requires the same stdout and exit status.
fn compare_on(var: &str, prog: &str, args: &[&str], extra: &[String]) -> Outcome {
    let kernel = kernel_from(var);
    let root = default_root();
    let n = native(&root, prog, args);
    assert_eq!(n.code, 0, "native {prog} failed:\n{}\n{}", n.stdout, n.stderr);
    let mut kargs: Vec<String> = vec!["--root".into(), root.to_string_lossy().into_owned()];
    kargs.extend(extra.iter().cloned());
    kargs.push("--".into());
    kargs.push(format!("/tests/{prog}"));
    kargs.extend(args.iter().map(|s| s.to_string()));
    let g = run_kernel(&kernel, &kargs);
    assert_same(&format!("{prog} {args:?}"), &n, &g);
    g
}

#[test]
fn conf_fs_skas() {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_SKAS", "conf_fs", &["/tmp"], &[]);
}

#[test]
fn conf_fs_tt() {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_TT", "conf_fs", &["/tmp"], &[]);
}

/// A scratch host tree: `export/` (with `a.txt`, `escape` -> `../secret`,
/// `abs` -> the absolute path of `secret`) next to `secret`.
fn host_tree(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-hostfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for x in ["ro", "rw"] {
        let e = d.join(x);
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join("a.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("../secret", e.join("escape")).unwrap();
        std::os::unix::fs::symlink(d.join("secret"), e.join("abs")).unwrap();
    }
    std::fs::write(d.join("secret"), "TOP SECRET").unwrap();
    d
}

fn hostfs_on(var: &str, tag: &str) {
    let _l = lock();
    let d = host_tree(tag);
    let kernel = kernel_from(var);
    let root = default_root();
    let args: Vec<String> = vec![
        "--root".into(),
        root.to_string_lossy().into_owned(),
        "--hostfs".into(),
        format!("{}:/mnt/ro", d.join("ro").display()),
        "--hostfs".into(),
        format!("{}:/mnt/rw:rw", d.join("rw").display()),
        "--".into(),
        "/tests/conf_hostfs".into(),
        "/mnt/ro".into(),
        "/mnt/rw".into(),
    ];
    let g = run_kernel(&kernel, &args);
    let out = g.stdout.replace("\r\n", "\n");
    assert_eq!(g.code, 0, "{out}\n{}", g.stderr);
    assert!(!out.contains("TOP SECRET"), "the guest read a host file outside the export:\n{out}");
    for want in [
        "ro read: \"hello\"\n",
        "ro open for write: EROFS\n",
        "ro create: EROFS\n",
        "ro mkdir: EROFS\n",
        "ro unlink: EROFS\n",
        "ro truncate: EROFS\n",
        "escape via ..: ENOENT\n",
        "escape via relative link: ENOENT\n",
        "escape via absolute link: ENOENT\n",
        "ro listing: [\"a.txt\", \"abs\", \"escape\"]\n",
        "rw write: ok\n",
        "rw read back: \"data from guest\"\n",
        "rw mkdir: ok\n",
        "rw rmdir: ok\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(std::fs::read_to_string(d.join("rw/new.txt")).unwrap(), "data from guest");
    assert_eq!(std::fs::read_to_string(d.join("secret")).unwrap(), "TOP SECRET");
    assert!(!d.join("ro/new").exists() && d.join("ro/a.txt").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn hostfs_skas() {
    hostfs_on("RUSTUML_KERNEL_SKAS", "skas");
}

#[test]
fn hostfs_tt() {
    hostfs_on("RUSTUML_KERNEL_TT", "tt");
}
