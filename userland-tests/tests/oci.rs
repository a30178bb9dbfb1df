//! `rustuml-oci`, the OCI runtime (issue 15), driven as a container engine
//! drives runc: `create`/`start`/`state`/`kill`/`delete` and `run` on a
//! bundle whose root is the default root (read-only), with the exit
//! statuses and state JSON the runtime spec requires; and bad input (ids,
//! config.json) refused with one line and nothing left in the state
//! directory. No engine needed; docs/oci.md shows podman on top.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn oci_bin() -> PathBuf {
    let b = env_path("RUSTUML_OCI");
    assert!(
        b.is_file(),
        "{} missing: `cargo xtask build` builds it beside kernel-skas",
        b.display()
    );
    b
}

/// A fresh directory for this test.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-oci-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Env {
    dir: PathBuf,
    state: PathBuf,
    bundle: PathBuf,
}

impl Env {
    /// A state directory and a bundle running `args` over the default root.
    fn new(tag: &str, args: &[&str]) -> Env {
        let dir = scratch(tag);
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let e = Env {
            state: dir.join("state"),
            bundle,
            dir,
        };
        e.write_config(&e.config(args));
        e
    }

    fn config(&self, args: &[&str]) -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/"
            },
            // Read-only: the default root is shared by every test.
            "root": { "path": default_root(), "readonly": true },
            "hostname": "oci-test",
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs" }
            ],
            "linux": { "resources": { "memory": { "limit": 128i64 << 20 } } }
        })
    }

    fn write_config(&self, v: &Value) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// `rustuml-oci --root STATE ARGS`, its output collected (the kernel's
    /// tests kernel binaries come from the environment xtask sets).
    fn oci(&self, args: &[&str]) -> Output {
        let mut c = Command::new(oci_bin());
        c.arg("--root")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null());
        c.env("RUSTUML_KERNEL_SKAS", kernel_from("RUSTUML_KERNEL_SKAS"));
        c.env("RUSTUML_KERNEL_TT", kernel_from("RUSTUML_KERNEL_TT"));
        let out = c.output().expect("run rustuml-oci");
        out
    }

    /// `create`, with the container's stdout and stderr in files (its
    /// process keeps them open after create returns, as with runc).
    /// `create ID`, which must succeed: the pid from its `--pid-file` and
    /// the file the container's stdout goes to.
    fn created(&self, id: &str) -> (i32, PathBuf) {
        let (out, stdout, pid_file) = self.create(id);
        assert_eq!(code(&out), 0, "create {id}: {}", text(&out.stderr));
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        (pid, stdout)
    }

    fn create(&self, id: &str) -> (Output, PathBuf, PathBuf) {
        let (o, e) = (
            self.dir.join(format!("{id}.out")),
            self.dir.join(format!("{id}.err")),
        );
        let pid_file = self.dir.join(format!("{id}.pid"));
        let mut c = Command::new(oci_bin());
        c.arg("--root")
            .arg(&self.state)
            .args(["create", "--bundle"])
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id);
        c.env("RUSTUML_KERNEL_SKAS", kernel_from("RUSTUML_KERNEL_SKAS"));
        c.stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let st = c.status().expect("run rustuml-oci create");
        let out = Output {
            status: st,
            stdout: Vec::new(),
            stderr: std::fs::read(&e).unwrap_or_default(),
        };
        (out, o, pid_file)
    }

    fn state(&self, id: &str) -> Value {
        let out = self.oci(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state is JSON")
    }

    /// `run ID` of the bundle as it is: refused with status 1 and a
    /// message containing `needle`, nothing left behind.
    fn assert_run_refused(&self, id: &str, needle: &str, what: &str) {
        let o = self.oci(&["run", "--bundle", self.bundle.to_str().unwrap(), id]);
        assert_eq!(code(&o), 1, "{what}");
        assert!(text(&o.stderr).contains(needle), "{what}: {}", text(&o.stderr));
        self.assert_state_empty(what);
    }

    /// Nothing left in the state directory.
    fn assert_state_empty(&self, what: &str) {
        let left: Vec<String> = std::fs::read_dir(&self.state)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{what}: left in the state directory: {left:?}"
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Wait for a process this test (the subreaper) inherited: its shell status.
fn reap(pid: i32, within: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        let mut st = 0;
        // SAFETY: waiting for a process re-parented to this subreaper.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                128 + libc::WTERMSIG(st)
            };
        }
        assert!(
            r == 0,
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
        assert!(
            t0.elapsed() < within,
            "container process {pid} did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_file(path: &Path, needle: &str) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(
            t0.elapsed() < TIMEOUT,
            "{} never showed {needle:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fields runtime.md requires in a state, and the status.
fn check_state(v: &Value, id: &str, status: &str, bundle: &Path) {
    assert_eq!(
        v["ociVersion"].as_str().map(|s| s.starts_with("1.")),
        Some(true),
        "{v}"
    );
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["bundle"], json!(bundle), "{v}");
    if status == "created" || status == "running" {
        assert!(
            v["pid"].as_i64().is_some_and(|p| p > 0),
            "a {status} container has its pid: {v}"
        );
    }
}

#[test]
fn create_start_state_kill_delete() {
    let _g = lock();
    let e = Env::new(
        "life",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo up; while :; do sleep 0.1; done",
        ],
    );
    let (pid, stdout) = e.created("c1");
    let st = e.state("c1");
    check_state(&st, "c1", "created", &e.bundle);
    assert_eq!(st["pid"], pid, "the pid file and the state agree");
    // Created: the process waits; nothing of the program ran yet.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        "",
        "the program runs only at start"
    );
    // An id is unique.
    let (dup, _, _) = e.create("c1");
    assert_eq!(code(&dup), 1, "a second create of c1");
    assert!(
        text(&dup.stderr).contains("exists"),
        "{}",
        text(&dup.stderr)
    );

    let o = e.oci(&["start", "c1"]);
    assert_eq!(code(&o), 0, "start: {}", text(&o.stderr));
    wait_for_file(&stdout, "up\n");
    let st = e.state("c1");
    check_state(&st, "c1", "running", &e.bundle);
    assert_eq!(
        st["pid"], pid,
        "the container's pid stays the same from create to running"
    );
    assert_eq!(
        code(&e.oci(&["start", "c1"])),
        1,
        "start of a running container is an error"
    );
    let o = e.oci(&["delete", "c1"]);
    assert_eq!(code(&o), 1, "delete of a running container without --force");
    // ps: the guest's processes; json: host pids, the container's first.
    let o = e.oci(&["ps", "c1"]);
    assert!(
        text(&o.stdout).contains("trap"),
        "ps shows init's command line: {}",
        text(&o.stdout)
    );
    let o = e.oci(&["ps", "--format", "json", "c1"]);
    let pids: Vec<i32> = serde_json::from_slice(&o.stdout).expect("ps json");
    assert_eq!(pids.first(), Some(&pid));
    let o = e.oci(&["list", "--format", "json"]);
    let l: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(l[0]["id"], "c1");

    // exec: a second process, its output, status and stdin carried.
    let o = e.oci(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo exec-out; echo exec-err >&2; exit 4",
    ]);
    assert_eq!(
        (code(&o), text(&o.stdout), text(&o.stderr)),
        (4, "exec-out\n".into(), "exec-err\n".into())
    );
    let big: String = (0..20000).map(|i| format!("{i}\n")).collect();
    let mut c = Command::new(oci_bin());
    c.arg("--root")
        .arg(&e.state)
        .args(["exec", "c1", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = big.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(feed.as_bytes()).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(code(&o), 0);
    assert_eq!(
        text(&o.stdout),
        format!("{big}done\n"),
        "stdin reaches the exec'd process whole, then its end"
    );
    let process = e.dir.join("process.json");
    std::fs::write(&process, json!({ "args": ["sh", "-c", "echo $X; pwd; id -u"], "env": ["PATH=/usr/bin:/bin", "X=y"], "cwd": "/tmp", "user": { "uid": 7, "gid": 7 } }).to_string()).unwrap();
    let o = e.oci(&["exec", "--process", process.to_str().unwrap(), "c1"]);
    assert_eq!(
        (code(&o), text(&o.stdout)),
        (0, "y\n/tmp\n7\n".into()),
        "{}",
        text(&o.stderr)
    );
    let o = e.oci(&["exec", "c1", "no-such-program"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stderr).contains("executable file not found in $PATH"),
        "{}",
        text(&o.stderr)
    );
    let o = e.oci(&["ps", "c1"]);
    let ps = text(&o.stdout);
    assert!(
        !ps.contains("exec-out") && !ps.contains("cat; echo") && !ps.contains("id -u"),
        "exec'd processes are gone once they are reported: {ps}"
    );

    // Signals reach the guest's init as a container's: one it has no
    // handler for is dropped, one it handles runs the handler.
    assert_eq!(code(&e.oci(&["kill", "c1", "SIGUSR1"])), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        e.state("c1")["status"],
        "running",
        "init ignores SIGUSR1 it has no handler for"
    );
    assert_eq!(
        code(&e.oci(&["kill", "c1", "NOSUCHSIG"])),
        1,
        "an unknown signal name"
    );
    assert_eq!(code(&e.oci(&["kill", "c1", "TERM"])), 0);
    assert_eq!(reap(pid, TIMEOUT), 5, "the engine sees init's exit code");
    wait_for_file(&stdout, "got-term\n");
    let st = e.state("c1");
    check_state(&st, "c1", "stopped", &e.bundle);
    assert_eq!(
        code(&e.oci(&["kill", "c1", "KILL"])),
        1,
        "kill of a stopped container"
    );
    assert_eq!(
        code(&e.oci(&["exec", "c1", "true"])),
        1,
        "exec in a stopped container"
    );
    let o = e.oci(&["delete", "c1"]);
    assert_eq!(code(&o), 0, "delete: {}", text(&o.stderr));
    let o = e.oci(&["state", "c1"]);
    assert_eq!(code(&o), 1, "state of a deleted container");
    assert!(
        text(&o.stderr).contains("does not exist"),
        "{}",
        text(&o.stderr)
    );
    e.assert_state_empty("after delete");
}

#[test]
fn sigkill_reaches_init_and_delete_force() {
    let _g = lock();
    let e = Env::new("kill", &["sleep", "1000"]);
    let (pid, _) = e.created("k");
    assert_eq!(code(&e.oci(&["start", "k"])), 0);
    // SIGTERM: sleep as init has no handler, so it stays (podman stop then
    // sends SIGKILL after its timeout, as with runc).
    assert_eq!(code(&e.oci(&["kill", "k"])), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(e.state("k")["status"], "running");
    assert_eq!(code(&e.oci(&["kill", "k", "9"])), 0);
    assert_eq!(
        reap(pid, TIMEOUT),
        137,
        "killed by SIGKILL: 128 + 9, as runc's engines report it"
    );
    assert_eq!(e.state("k")["status"], "stopped");
    assert_eq!(code(&e.oci(&["delete", "k"])), 0);

    // A created container that never starts: delete kills its process.
    let (pid, _) = e.created("never");
    assert_eq!(code(&e.oci(&["delete", "never"])), 0);
    assert_eq!(reap(pid, TIMEOUT), 128 + libc::SIGKILL);
    // A running one goes with --force.
    let (pid, _) = e.created("forced");
    assert_eq!(code(&e.oci(&["start", "forced"])), 0);
    assert_eq!(code(&e.oci(&["delete", "--force", "forced"])), 0);
    reap(pid, TIMEOUT);
    assert_eq!(
        code(&e.oci(&["delete", "--force", "forced"])),
        0,
        "delete --force of nothing is fine, as with runc"
    );
    e.assert_state_empty("after the deletes");
}

#[test]
fn run_passes_output_and_exit_status() {
    let _g = lock();
    let e = Env::new("run", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let o = e.oci(&["run", "--bundle", e.bundle.to_str().unwrap(), "r1"]);
    assert_eq!(
        code(&o),
        3,
        "run returns the container's status; stderr: {}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
    e.assert_state_empty("after run");

    // The program not found: runc's message, which engines turn into 127.
    e.write_config(&e.config(&["no-such-program"]));
    e.assert_run_refused("r2", "executable file not found in $PATH", "after a failed run");
}

#[test]
fn process_settings_reach_the_guest() {
    let _g = lock();
    let e = Env::new("settings", &[]);
    let share = e.dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    // The guest's uid 1000 writes there through the guest's own permission checks.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(share.join("in.txt"), "from-host\n").unwrap();
    // Mount points that exist in the shared (read-only) default root.
    let mut c = e.config(&["sh", "-c", "echo $FOO; pwd; id -u; id -g; hostname; head -1 /proc/meminfo; cat /mnt/in.txt; echo from-guest > /mnt/out.txt; echo x > /home/y || echo ro-refused"]);
    c["process"]["env"] = json!(["PATH=/usr/bin:/bin", "FOO=bar baz"]);
    c["process"]["cwd"] = json!("/tmp");
    c["process"]["user"] = json!({ "uid": 1000, "gid": 1001 });
    c["hostname"] = json!("box7");
    c["linux"]["resources"]["memory"]["limit"] = json!(64i64 << 20);
    c["mounts"] = json!([
        { "destination": "/mnt", "type": "bind", "source": share, "options": ["rbind", "rw"] },
        { "destination": "/home", "type": "bind", "source": share, "options": ["rbind", "ro"] }
    ]);
    e.write_config(&c);
    let o = e.oci(&["run", "--bundle", e.bundle.to_str().unwrap(), "s"]);
    assert_eq!(code(&o), 0, "stderr: {}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "bar baz",
            "/tmp",
            "1000",
            "1001",
            "box7",
            "MemTotal: 65536 kB",
            "from-host",
            "ro-refused"
        ],
        "stderr: {}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(share.join("out.txt")).unwrap(),
        "from-guest\n",
        "a rw bind mount writes through"
    );
    assert!(!share.join("y").exists());

    // A root of our own, writable: a missing mount point is made in it (as
    // runc does), and the program's writes land in it.
    // Its programs come from the default root, bound read-only.
    let root = e.dir.join("bundle/rootfs");
    std::fs::create_dir_all(&root).unwrap();
    let mut c = e.config(&[
        "sh",
        "-c",
        "echo made > /data/sub/by-guest; echo kept > /in-root",
    ]);
    c["root"] = json!({ "path": "rootfs", "readonly": false });
    let mut mounts = vec![
        json!({ "destination": "/data/sub", "type": "bind", "source": share, "options": ["rbind"] }),
    ];
    for d in ["bin", "lib", "lib64", "usr", "etc"] {
        if default_root().join(d).is_dir() {
            mounts.push(json!({ "destination": format!("/{d}"), "type": "bind", "source": default_root().join(d), "options": ["rbind", "ro"] }));
        }
    }
    c["mounts"] = json!(mounts);
    e.write_config(&c);
    let o = e.oci(&["run", "--bundle", e.bundle.to_str().unwrap(), "own-root"]);
    assert_eq!(
        code(&o),
        0,
        "stdout: {} stderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        root.join("data/sub").is_dir() && root.join("usr").is_dir(),
        "the mount points were made in the root"
    );
    assert_eq!(
        std::fs::read_to_string(share.join("by-guest")).unwrap(),
        "made\n",
        "the guest wrote through the bind mount"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("in-root")).unwrap(),
        "kept\n",
        "a writable root is written through, as with runc"
    );
}

#[test]
fn tt_backend_by_annotation() {
    let _g = lock();
    let e = Env::new("tt", &[]);
    let mut c = e.config(&["/tests/hello"]);
    c["annotations"] = json!({ "org.rustuml.backend": "tt" });
    e.write_config(&c);
    let o = e.oci(&["run", "--bundle", e.bundle.to_str().unwrap(), "t"]);
    assert_eq!(code(&o), 0, "stderr: {}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("Hello from a rustuml guest"),
        "{}",
        text(&o.stdout)
    );
    c["annotations"] = json!({ "org.rustuml.backend": "vm" });
    e.write_config(&c);
    e.assert_run_refused("t", "org.rustuml.backend", "after a refused backend");
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let _g = lock();
    let e = Env::new("bad", &["/tests/hello"]);
    let b = e.bundle.to_str().unwrap().to_string();
    let refuse = |args: &[&str], needle: &str| {
        let o = e.oci(args);
        let err = text(&o.stderr);
        assert_eq!(code(&o), 1, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err:?}"
        );
        e.assert_state_empty(&format!("{args:?}"));
    };
    refuse(&["create", "--bundle", &b, "a/b"], "invalid container id");
    refuse(&["create", "--bundle", &b, ".."], "invalid container id");
    refuse(
        &["create", "--bundle", "/nonexistent-bundle", "x"],
        "nonexistent-bundle",
    );
    refuse(&["state", "nope"], "does not exist");
    refuse(&["start", "nope"], "does not exist");
    refuse(&["kill", "nope", "KILL"], "does not exist");
    refuse(&["delete", "nope"], "does not exist");

    let cases: Vec<(Value, &str)> = vec![
        (json!("not an object"), "config.json"),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": "sh", "cwd": "/" }, "root": { "path": default_root() } }),
            "config.json",
        ),
        (
            json!({ "ociVersion": "1.0.2", "root": { "path": default_root() } }),
            "no `process`",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": [], "cwd": "/" }, "root": { "path": default_root() } }),
            "process.args is empty",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": ["/tests/hello"], "cwd": "/" }, "root": { "path": "/nonexistent-root" } }),
            "root.path",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": ["/tests/hello"], "cwd": "/" }, "root": { "path": default_root() },
                 "mounts": [{ "destination": "/a/../etc", "type": "bind", "source": "/tmp" }] }),
            "without `..`",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": ["/tests/hello"], "cwd": "relative" }, "root": { "path": default_root() } }),
            "process.cwd",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": ["/tests/hello"], "cwd": "/" }, "root": { "path": default_root() },
                 "linux": { "resources": { "memory": { "limit": 4096 } } } }),
            "at least",
        ),
        (
            json!({ "ociVersion": "1.0.2", "process": { "args": vec!["x"; 5000], "cwd": "/" }, "root": { "path": default_root() } }),
            "too many",
        ),
    ];
    for (cfg, needle) in cases {
        e.write_config(&cfg);
        refuse(&["create", "--bundle", &b, "x"], needle);
    }
    // A config.json far larger than any real one is not read.
    std::fs::write(e.bundle.join("config.json"), vec![b' '; 5 << 20]).unwrap();
    refuse(
        &["create", "--bundle", &b, "x"],
        "more than a config.json can be",
    );
}

#[test]
fn spec_writes_an_example_once() {
    let _g = lock();
    let e = Env::new("spec", &["/tests/hello"]);
    let d = e.dir.join("new");
    std::fs::create_dir_all(&d).unwrap();
    let o = e.oci(&["spec", "--bundle", d.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["root"]["path"], "rootfs");
    assert!(v["ociVersion"].as_str().unwrap().starts_with("1."));
    assert_eq!(
        code(&e.oci(&["spec", "--bundle", d.to_str().unwrap()])),
        1,
        "an existing config.json is kept"
    );
}
