//! The host's own dynamic userland inside the guest (issue 3), under both
//! backends: shell scripts run by the guest's `/bin/sh` (the host's dash,
//! copied with its libraries into the default root by `xtask/src/rootfs.rs`)
//! compared with the same script run natively by the host's `/bin/sh`;
//! guest-only checks against fixed output (uname, /proc, mount, df, ps);
//! an interactive session driven through tmux (line editing, ^C, job
//! control, `exit` powering off); and the garbage-syscall program.
//!
//! Run with `cargo xtask test` (it sets RUSTUML_KERNEL_SKAS,
//! RUSTUML_KERNEL_TT and RUSTUML_ROOT).

mod common;

use common::*;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SKAS: &str = "RUSTUML_KERNEL_SKAS";
const TT: &str = "RUSTUML_KERNEL_TT";

/// The default root, checked to hold the host userland too.
fn root() -> PathBuf {
    let r = default_root();
    assert!(
        r.join("bin/sh").exists() || r.join("usr/bin/sh").exists(),
        "default root {} has no /bin/sh: xtask's rootfs.rs did not add the host userland",
        r.display()
    );
    r
}

/// A fresh host directory for a native run, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("rustuml-shell-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `script` with the guest's /bin/sh under the kernel named by `var`
/// (extra kernel flags first). `$T` is a scratch directory (/tmp/t), and the
/// working directory is `/`.
fn guest_sh(var: &str, flags: &[&str], script: &str) -> Outcome {
    let kernel = kernel_from(var);
    let root = root();
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.extend(["--root".into(), root.to_string_lossy().into_owned(), "--".into()]);
    args.extend(["/bin/sh".into(), "-c".into(), format!("T=/tmp/t; mkdir -p $T; cd /; {script}")]);
    run_kernel(&kernel, &args)
}

/// The same script run natively by the host's /bin/sh with the guest's
/// environment and a host scratch directory as `$T`.
fn native_sh(script: &str) -> Outcome {
    let t = TempDir::new("native");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("T={}; mkdir -p $T; cd /; {script}", t.0.display()))
        .env_clear()
        .envs(GUEST_ENV.iter().copied())
        .current_dir("/");
    run(&mut cmd, "native /bin/sh")
}

/// Runs `script` natively and in the guest and compares stdout and status.
fn compare_sh(var: &str, what: &str, script: &str) {
    let _l = lock();
    let n = native_sh(script);
    let g = guest_sh(var, &[], script);
    assert_same(what, &n, &g);
}

/// Runs `script` in the guest only and checks stdout and status exactly.
fn expect_sh(var: &str, flags: &[&str], script: &str, stdout: &str, code: i32) {
    let _l = lock();
    let g = guest_sh(var, flags, script);
    assert!(!g.signaled, "the kernel died of signal {}\n{}", g.code - 128, g.stderr);
    assert_eq!(
        (g.stdout.as_str(), g.code),
        (stdout, code),
        "guest output of {script:?} differs\n--- stderr:\n{}",
        g.stderr
    );
}

// ---- scripts compared with the native run ---------------------------------

const PIPES: &str = r#"
printf 'b\na\nc\n' | sort | tr a-z A-Z
echo x > $T/f; echo y >> $T/f; cat < $T/f; wc -l < $T/f
ls /nonexistent 2>/dev/null || echo "ls failed: $?"
echo to-stderr 1>&2 2>/dev/null
{ echo one; echo two; } | tail -1
cat <<EOF
here $((1 + 1))
EOF
"#;

const SUBST: &str = r#"
x=$(echo hi | tr h H); echo "$x $((3 * 7))"
echo $(seq 1 5) `echo back`
n=0; for i in 1 2 3 4; do n=$((n + i)); done; echo sum=$n
false; echo false=$?; sh -c 'exit 3'; echo sub=$?
case abc in a*) echo glob;; esac
"#;

const SHEBANG: &str = r#"
printf '#!/bin/sh\necho "args: $# $1 $2"\n' > $T/s.sh
chmod +x $T/s.sh
$T/s.sh one two
printf '#!/usr/bin/env bash\necho "bash: ${#BASH_VERSION} > 0"\n' > $T/b.sh
chmod 755 $T/b.sh
$T/b.sh | sed 's/[0-9][0-9]* >/N >/'
"#;

const FIND: &str = r#"
mkdir -p $T/d/e/f $T/d/g
for n in b a c; do echo $n > $T/d/e/$n.txt; echo $n > $T/d/g/$n.log; done
echo z > $T/d/e/f/z.txt
cd $T && find . -name '*.txt' | sort | head -3
find $T/d -type d | wc -l
grep -rl a $T/d | sed "s|$T||" | sort
"#;

const TAR_GZIP: &str = r#"
cd $T && mkdir d && echo hello > d/a && seq 1 1000 > d/b
tar czf d.tgz d && rm -r d && tar xzf d.tgz && cat d/a && wc -l < d/b
gzip -9 d/b && ls -1 d && gunzip d/b.gz && md5sum d/b
tar tzf d.tgz | sort
"#;

const PYTHON: &str = r#"
python3 -c '
import os, json, threading, sys
out = []
def work(i): out.append(i * i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"squares": sorted(out), "cwd": os.getcwd(), "argv": sys.argv[1:]}))
' a b
python3 -c 'import subprocess; print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())'
"#;

/// Threads doing string work (glibc's AVX2/AVX-512 string functions, which
/// keep data in vector registers across the threads' switches): the digests
/// must be the native ones.
const PYTHON_STRING_THREADS: &str = r#"
python3 -c '
import hashlib, json, threading
text = "".join(chr(97 + (i * 7919) % 26) for i in range(1 << 20))
res = {}
def work(k):
    h = hashlib.sha256()
    for r in range(40):
        s = text[k * 1000 + r:] + str(r)
        h.update(s.encode())
        h.update(json.dumps({"i": k, "pos": s.find("zzq" + chr(97 + r % 26)), "n": s.count("ab")}).encode())
    res[k] = h.hexdigest()[:16]
ts = [threading.Thread(target=work, args=(k,)) for k in range(6)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(res.items()))
'
"#;

const TEXT: &str = r#"
printf '3 c\n1 a\n2 b\n' > $T/n
sort -n $T/n | cut -d' ' -f2 | tr '\n' ,; echo
awk '{ s += $1 } END { print "total", s }' $T/n
sed -n '2p' $T/n; grep -c . $T/n; grep -v a $T/n | wc -l
bash -c 'a=(1 2 3); echo ${#a[@]} "${a[@]}"; [[ abc == a* ]] && echo match'
env -i A=1 /usr/bin/env
head -c 5 /dev/zero | od -An -tx1
"#;

const JOBS_SIGNALS: &str = r#"
trap 'echo got INT' INT; kill -INT $$; echo after
timeout 1 sleep 5; echo timeout=$?
sleep 0.1 & wait $!; echo waited=$?
sh -c 'kill -TERM $$'; echo killed=$?
"#;

const LS: &str = r#"
cd $T && mkdir sub && touch a && ln -s a link && chmod 600 a
ls -l | tail -n +2 | awk '{ print $1, $NF }'
ls -a
"#;

macro_rules! compared {
    ($($name:ident: $script:expr $(, ignore $why:literal)?;)*) => {
        mod compared_skas {
            use super::*;
            $( #[test] $(#[ignore = $why])? fn $name() { compare_sh(SKAS, stringify!($name), $script) } )*
        }
        mod compared_tt {
            use super::*;
            $( #[test] $(#[ignore = $why])? fn $name() { compare_sh(TT, stringify!($name), $script) } )*
        }
    };
}

compared! {
    pipes_redirections: PIPES;
    substitution_arith: SUBST;
    shebang_scripts: SHEBANG;
    find_sort_head: FIND;
    tar_gzip_roundtrip: TAR_GZIP;
    python_json_threads: PYTHON;
    python_string_threads: PYTHON_STRING_THREADS;
    text_tools: TEXT;
    traps_timeout_wait: JOBS_SIGNALS;
    ls_long: LS;
}

// ---- guest-only checks against fixed output -------------------------------

macro_rules! both {
    ($($name:ident $(#[ignore = $why:literal])? => |$var:ident| $body:block)*) => {
        mod guest_skas {
            use super::*;
            $( #[test] $(#[ignore = $why])? fn $name() { let $var = SKAS; $body } )*
        }
        mod guest_tt {
            use super::*;
            $( #[test] $(#[ignore = $why])? fn $name() { let $var = TT; $body } )*
        }
    };
}

both! {
    uname_release_flag => |k| {
        expect_sh(k, &["--uname-release", "9.9.9-test"], "uname -r; uname -snm",
            "9.9.9-test\nLinux rustuml x86_64\n", 0);
    }
    uname_default_is_not_the_hosts => |k| {
        expect_sh(k, &[], "uname -r", "6.1.0-rustuml\n", 0);
    }
    init_status_is_the_kernels => |k| {
        expect_sh(k, &[], "echo bye; exit 42", "bye\n", 42);
    }
    proc_mount_df_ps => |k| {
        expect_sh(k, &[],
            "grep -c '^Pid:' /proc/self/status; mount | grep -c ' on / '; \
             df / | tail -1 | awk '{ print $NF }'; ps -e -o comm= | grep -c '^ps$'; \
             ls / | grep -c -x -e bin -e etc -e proc -e tmp -e usr",
            "1\n1\n/\n1\n5\n", 0);
    }
    proc_cmdline_and_comm => |k| {
        // cmdline is argv (NUL-separated); comm is the base name of the
        // path execve was given (/bin/sh, not the symlink's target dash).
        expect_sh(k, &[], "cat /proc/self/cmdline | tr '\\0' ' '; echo; sh -c 'cat /proc/$$/comm'",
            "cat /proc/self/cmdline \nsh\n", 0);
    }
    dev_files => |k| {
        expect_sh(k, &[],
            "echo gone > /dev/null; head -c 3 /dev/zero | wc -c; head -c 16 /dev/urandom | wc -c",
            "3\n16\n", 0);
    }
    writes_stay_in_the_guest => |k| {
        // The root is an in-memory copy: overwriting a file that xtask
        // hard-linked from the host (/usr/bin/yes) changes only the guest's
        // copy, never the host's file or the root directory.
        let host = Path::new("/usr/bin/yes");
        let before = std::fs::read(host).ok();
        let in_root = std::fs::read(root().join("usr/bin/yes")).ok();
        expect_sh(k, &[], "echo guest-was-here > /usr/bin/yes && cat /usr/bin/yes; \
            echo other > /etc/hostname && cat /etc/hostname",
            "guest-was-here\nother\n", 0);
        assert_eq!(std::fs::read(host).ok(), before, "the host's /usr/bin/yes changed");
        assert_eq!(std::fs::read(root().join("usr/bin/yes")).ok(), in_root, "the root dir changed");
        assert_eq!(std::fs::read_to_string(root().join("etc/hostname")).ok().as_deref(), Some("rustuml\n"));
    }
    shebang_from_the_root => |k| {
        // Executable scripts that xtask puts in the root (mode 0755).
        expect_sh(k, &[], "/tests/scripts/hello.sh one two; /tests/scripts/hello.py x",
            "sh: 2 one two\npython: ['x']\n", 0);
    }
    busybox_static_root => |k| {
        // A root holding nothing but a static busybox and its applet links.
        let _l = lock();
        let r = busybox_root();
        let script = "echo $((2 + 3)); printf 'b\\na\\n' | sort | tr a-z A-Z; \
            mkdir /tmp/x && cd /tmp/x && echo data > f && tar czf f.tgz f && rm f && \
            tar xzf f.tgz && cat f && gzip f && zcat f.gz; uname -r; \
            find / -name 'busybox' | head -1; ps > /dev/null && echo ps-ok; echo end";
        let g = run_kernel(&kernel_from(k), &["--root", &r.0.to_string_lossy(), "--", "/bin/sh", "-c", script]);
        assert_eq!((g.stdout.as_str(), g.code),
            ("5\nA\nB\ndata\ndata\n6.1.0-rustuml\n/bin/busybox\nps-ok\nend\n", 0), "{}", g.stderr);
    }
    kernel_default_root_beside_the_binary => |k| {
        // No --root: the kernel finds <target>/rootfs/default itself.
        let _l = lock();
        let g = run_kernel(&kernel_from(k), &["/bin/sh", "-c", "echo default-root; exit 5"]);
        assert_eq!((g.stdout.as_str(), g.code), ("default-root\n", 5), "{}", g.stderr);
    }
    shell_reads_commands_from_a_pipe => |k| {
        // Init /bin/sh with stdin not a terminal: a non-interactive shell
        // reading the commands; end of input powers off.
        let _l = lock();
        let mut cmd = Command::new(kernel_from(k));
        cmd.env("TERM", "xterm").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start the kernel");
        child.stdin.take().expect("stdin").write_all(b"echo from-pipe\nexit 4\n").expect("write");
        let st = wait_timeout(&mut child, TIMEOUT, "kernel with piped stdin");
        let out = child.wait_with_output().expect("output");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-pipe\n",
            "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(st.code(), Some(4));
    }
    garbage_syscalls => |k| {
        let _l = lock();
        let root = root();
        for seed in ["5eed", "c0ffee"] {
            let g = run_kernel(&kernel_from(k),
                &["--root", &root.to_string_lossy(), "--", "/tests/garbage_syscalls", "48", seed]);
            assert!(!g.signaled, "the kernel died (signal {})\n{}", g.code - 128, g.stderr);
            assert!(g.stderr.lines().all(|l| !l.contains("panic")), "{}", g.stderr);
            assert!(g.stdout.contains("; done"), "status {}\nstdout:\n{}\nstderr:\n{}",
                g.code, g.stdout, g.stderr);
            assert_eq!(g.code, 0, "{}", g.stderr);
        }
    }
    boot_packing_is_fast => |k| {
        // The default root (host userland + python's stdlib) is packed into
        // an in-memory cpio at every boot: keep it well under a second.
        let _l = lock();
        let root = root();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let g = run_kernel(&kernel_from(k), &["--root", &root.to_string_lossy(), "--", "/bin/true"]);
            assert_eq!(g.code, 0, "{}", g.stderr);
            best = best.min(start.elapsed());
        }
        assert!(best < Duration::from_secs(2), "boot + /bin/true took {best:?}");
    }
}

/// The probe trampolines' system calls, which host kernels (>= 6.11 for
/// uretprobe, >= 6.16 for uprobe) let past every seccomp filter: from
/// anywhere but a trampoline Linux answers uretprobe with SIGILL and uprobe
/// with ENXIO, and so does the guest, whoever answers it (the host under
/// the seccomp stub, the guest kernel under ptrace and tt).
const PROBE_CALLS: &str = r#"
python3 -c 'import ctypes; print(ctypes.CDLL(None).syscall(335, 0, 0, 0, 0, 0, 0))'; echo "uretprobe: $?"
python3 -c 'import ctypes, os; l = ctypes.CDLL(None, use_errno=True); r = l.syscall(336, 0, 0, 0, 0, 0, 0); print(r, os.strerror(ctypes.get_errno()))'
"#;

#[test]
fn skas_probe_calls_as_on_linux() {
    let _l = lock();
    let n = native_sh(PROBE_CALLS);
    for flags in [&[][..], &["--trap", "ptrace"][..]] {
        let g = guest_sh(SKAS, flags, PROBE_CALLS);
        assert_same(&format!("probe calls under skas {flags:?}"), &n, &g);
    }
}

#[test]
fn tt_probe_calls_as_on_linux() {
    compare_sh(TT, "probe calls under tt", PROBE_CALLS);
}

/// A temporary root with `/bin/busybox` (Debian's busybox-static, installed
/// with apt-get when the host has no static busybox) and a link per applet.
fn busybox_root() -> TempDir {
    let bb = Path::new("/bin/busybox");
    // Static: an ELF file without a PT_INTERP program header.
    let is_static = || {
        let Ok(d) = std::fs::read(bb) else { return false };
        let u = |at: usize, n: usize| -> Option<u64> {
            Some(d.get(at..at + n)?.iter().rev().fold(0u64, |v, &b| v << 8 | b as u64))
        };
        let (Some(phoff), Some(phsize), Some(phnum)) = (u(0x20, 8), u(0x36, 2), u(0x38, 2)) else {
            return false;
        };
        d.starts_with(b"\x7fELF")
            && (0..phnum).all(|i| u((phoff + i * phsize) as usize, 4).is_some_and(|t| t != 3))
    };
    if !is_static() {
        let apt = |args: &[&str]| {
            Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()
        };
        let _ = apt(&["update", "-q"]);
        let st = apt(&["install", "-y", "-q", "busybox-static"]);
        assert!(matches!(st, Ok(s) if s.success()) && is_static(),
            "no static /bin/busybox, and apt-get install busybox-static failed");
    }
    let r = TempDir::new("busybox");
    for d in ["bin", "tmp", "proc", "dev", "sys", "etc"] {
        std::fs::create_dir_all(r.0.join(d)).expect("mkdir");
    }
    std::fs::copy(bb, r.0.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(bb).arg("--list").output().expect("busybox --list");
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        if !name.is_empty() && name != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", r.0.join("bin").join(name));
        }
    }
    r
}

// ---- the interactive shell, through tmux ----------------------------------

/// One tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }
    /// Starts `kernel` (default root, no init: the guest's /bin/sh) in an
    /// 100x30 window; the pane prints KERNEL-EXIT=<status> when it ends.
    /// TERM stays tmux's own (screen or tmux-256color, both in the root's
    /// terminfo), so that readline decodes the keys tmux sends.
    fn start(kernel: &Path, tag: &str) -> Tmux {
        ensure_tmux();
        let t = Tmux { socket: format!("rustuml-{}-{tag}", std::process::id()) };
        let line = format!(
            "{}; echo KERNEL-EXIT=$?; sleep 600",
            kernel.display()
        );
        let st = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", &line])
            .status()
            .expect("run tmux");
        assert!(st.success(), "tmux new-session failed");
        t
    }
    fn keys(&self, keys: &[&str]) {
        let st = self.cmd().args(["send-keys", "-t", "0"]).args(keys).status().expect("tmux send-keys");
        assert!(st.success());
    }
    /// Types a line (literally) and Enter.
    fn line(&self, text: &str) {
        let st = self.cmd().args(["send-keys", "-t", "0", "-l", text]).status().expect("tmux send-keys");
        assert!(st.success());
        self.keys(&["Enter"]);
    }
    fn screen(&self) -> String {
        let o = self.cmd().args(["capture-pane", "-p", "-t", "0"]).output().expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// Waits until `pred(screen)` holds (10 s), else panics showing the screen.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("waiting for {what}; the screen is:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Waits until the last non-empty line of the screen ends with `prompt`
    /// (the shell is reading a command).
    fn prompt(&self, prompt: &str) -> String {
        self.wait_for(&format!("prompt {prompt:?}"), |s| {
            s.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_end() == prompt.trim_end())
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
        // tmux leaves its socket file behind.
        let dir = std::env::var_os("TMUX_TMPDIR").map(PathBuf::from).unwrap_or_else(|| "/tmp".into());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(dir.join(format!("tmux-{uid}")).join(&self.socket));
    }
}

/// tmux is installed with apt-get when missing (like musl-tools in xtask).
fn ensure_tmux() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if Command::new("tmux").arg("-V").output().is_ok() {
            return;
        }
        let apt = |args: &[&str]| {
            Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()
        };
        let _ = apt(&["update", "-q"]);
        let st = apt(&["install", "-y", "-q", "tmux"]);
        assert!(
            matches!(st, Ok(s) if s.success()),
            "tmux is missing and apt-get install tmux failed: install it (apt-get install tmux)"
        );
    });
}

fn interactive(var: &str, tag: &str) {
    let _l = lock();
    let t = Tmux::start(&kernel_from(var), tag);
    // dash's prompt as root.
    t.prompt("#");
    t.line("echo hello $((6 * 7))");
    t.wait_for("echo's output", |s| s.contains("hello 42"));
    // ^C interrupts the foreground job, the shell stays.
    t.prompt("#");
    t.line("sleep 100");
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["C-c"]);
    t.prompt("#");
    t.line("echo after-interrupt");
    t.wait_for("the shell after ^C", |s| s.contains("\nafter-interrupt"));
    // Line editing (bash's readline): cursor left, insert, backspace.
    t.line("exec bash --norc");
    t.prompt("bash-5.2#");
    t.line("PS1='B$ '");
    t.prompt("B$");
    t.keys(&["-l", "echo wrld"]);
    t.keys(&["Left", "Left", "Left", "o", "Left", "Left", "X", "BSpace", "End", "Enter"]);
    t.wait_for("the edited line's output", |s| s.lines().any(|l| l == "world"));
    t.prompt("B$");
    // exit powers the guest off with the shell's status.
    t.line("exit 7");
    t.wait_for("the kernel's exit", |s| s.contains("KERNEL-EXIT=7"));
}

fn job_control(var: &str, tag: &str) {
    let _l = lock();
    let t = Tmux::start(&kernel_from(var), tag);
    t.prompt("#");
    t.line("exec bash --norc");
    t.prompt("bash-5.2#");
    t.line("PS1='B$ '");
    t.prompt("B$");
    t.line("sleep 100");
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["C-z"]);
    t.wait_for("^Z stopping the job", |s| s.contains("Stopped"));
    t.prompt("B$");
    t.line("jobs");
    t.wait_for("jobs", |s| s.lines().filter(|l| l.contains("Stopped") && l.contains("sleep 100")).count() >= 2);
    t.prompt("B$");
    t.line("bg");
    t.wait_for("bg", |s| s.contains("sleep 100 &"));
    t.prompt("B$");
    t.line("fg");
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["C-c"]);
    t.prompt("B$");
    t.line("echo status=$?");
    t.wait_for("the status of the interrupted job", |s| s.contains("status=130"));
    // ^D on an empty line: end of input for the shell, which exits.
    t.prompt("B$");
    t.keys(&["C-d"]);
    t.wait_for("the kernel's exit", |s| s.contains("KERNEL-EXIT=0"));
}

#[test]
fn skas_interactive_shell() {
    interactive(SKAS, "skas-i");
}

#[test]
fn tt_interactive_shell() {
    interactive(TT, "tt-i");
}

#[test]
fn skas_job_control() {
    job_control(SKAS, "skas-j");
}

#[test]
fn tt_job_control() {
    job_control(TT, "tt-j");
}
