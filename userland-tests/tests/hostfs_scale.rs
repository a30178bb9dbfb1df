//! hostfs at scale: a generated tree of 200,000 files walked with the count
//! checked against native, and a guest that creates, holds and deletes
//! files on an rw export, while the kernel's open host descriptors (sampled
//! from `/proc/PID/fd`) stay under the documented bound and fork/exec keep
//! working; and a host process that swaps directories and symlinks inside
//! an export for 20 s while the guest walks it. Run with `cargo xtask test`.

mod common;

use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Host descriptors the kernel may hold: per export, the root, 256 cached
/// and 256 pinned (drivers::hostfs), plus the kernel's own (console, guest
/// memory, stubs, timers) with room to spare.
const FD_BOUND: usize = 1 + 256 + 256 + 64;

struct Sampled {
    out: Outcome,
    max_fds: usize,
}

/// Runs the kernel with `args`, sampling its open descriptors until it exits.
fn run_sampled(kernel: &Path, args: &[String], timeout: Duration) -> Sampled {
    let mut cmd = Command::new(kernel);
    cmd.args(args);
    let mut child = spawn(&mut cmd);
    let pid = child.id();
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let start = Instant::now();
    let mut max_fds = 0;
    let st = loop {
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            max_fds = max_fds.max(rd.count());
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kernel did not finish within {timeout:?}");
            }
        }
    };
    let (code, signaled) = shell_code(st);
    let out = Outcome { code, signaled, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default(), pid };
    assert_no_leftovers(pid, &[], "hostfs scale kernel");
    Sampled { out, max_fds }
}

/// Kernel arguments: the default root, 512M, `--hostfs SPEC`, then `cmd`.
fn kernel_args(spec: String, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["--root".into(), default_root().to_string_lossy().into_owned(), "--mem".into(), "512M".into(), "--hostfs".into(), spec, "--".into()];
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rustuml-hostfs-scale-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 200,000 files in 400 directories of 500, two levels deep.
fn generate_tree(d: &Path) -> usize {
    let mut n = 0;
    for a in 0..20 {
        for b in 0..20 {
            let dir = d.join(format!("a{a:02}")).join(format!("b{b:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..500 {
                std::fs::File::create(dir.join(format!("file-{f:03}"))).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn walks_of_200k_files_and_of_usr_match_native_with_bounded_fds() {
    let _l = lock();
    let d = scratch("walk");
    let made = generate_tree(&d);
    let native = Command::new("find").arg(&d).arg("-type").arg("f").output().unwrap();
    let native_count = String::from_utf8_lossy(&native.stdout).lines().count();
    assert_eq!(native_count, made);
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let args = kernel_args(
        format!("{}:/t", d.display()),
        &["/bin/sh", "-c", "find /t -type f | wc -l; find /t -name 'file-49*' | wc -l; ls -l /t/a07/b13 | wc -l"],
    );
    let s = run_sampled(&kernel, &args, Duration::from_secs(600));
    assert_eq!(s.out.code, 0, "{}\n{}", s.out.stdout, s.out.stderr);
    let lines: Vec<&str> = s.out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines, [made.to_string(), (400 * 10).to_string(), "501".to_string()], "stderr: {}", s.out.stderr);
    assert!(s.out.stderr.is_empty(), "{}", s.out.stderr);
    assert!(s.max_fds > 0 && s.max_fds <= FD_BOUND, "the kernel held {} host fds (bound {FD_BOUND})", s.max_fds);
    let _ = std::fs::remove_dir_all(&d);
    // The host's whole /usr, likewise.
    let native = Command::new("sh").args(["-c", "find /usr | wc -l"]).output().unwrap();
    let args = kernel_args("/usr:/host".into(), &["/bin/sh", "-c", "cd /host && find . | wc -l"]);
    let s = run_sampled(&kernel, &args, Duration::from_secs(600));
    assert_eq!(s.out.code, 0, "{}", s.out.stderr);
    assert_eq!(s.out.stdout.trim(), String::from_utf8_lossy(&native.stdout).trim(), "stderr: {}", s.out.stderr);
    assert!(s.max_fds <= FD_BOUND, "the kernel held {} host fds (bound {FD_BOUND})", s.max_fds);
}

/// What the issue saw: deleting files kept their host fds until every fork
/// failed. Here 30 rounds create 1,000 files each, keep 300 of them open
/// while unlinking all, then fork and exec.
#[test]
fn deleted_files_release_their_fds_and_fork_keeps_working() {
    let _l = lock();
    let d = scratch("churn");
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let script = r#"
import os, subprocess
os.chdir('/w')
for r in range(30):
    held = []
    for i in range(1000):
        fd = os.open('f%d' % i, os.O_CREAT | os.O_RDWR, 0o644)
        os.write(fd, b'round %d file %d' % (r, i))
        if i % 10 < 3:
            held.append((i, fd))
        else:
            os.close(fd)
    for i in range(1000):
        os.unlink('f%d' % i)
    # Unlinked but open: still readable, with the contents written.
    bad = [i for i, fd in held if os.pread(fd, 64, 0) != b'round %d file %d' % (r, i)]
    assert not bad, (r, bad[:5])
    for _, fd in held:
        os.close(fd)
    assert os.listdir('.') == [], os.listdir('.')
    assert subprocess.run(['/bin/true']).returncode == 0
# Opening files until the guest's own RLIMIT_NOFILE: EMFILE, and the
# kernel (and every other process) goes on.
open('keep', 'w').close()
fds = []
try:
    while True:
        fds.append(os.open('keep', os.O_RDONLY))
except OSError as e:
    assert e.errno == 24, e
assert len(fds) > 1000, len(fds)
for fd in fds:
    os.close(fd)
os.unlink('keep')
assert subprocess.run(['/bin/true']).returncode == 0
print('churn ok')
"#;
    let args = kernel_args(format!("{}:/w:rw", d.display()), &["/usr/bin/python3", "-c", script]);
    let s = run_sampled(&kernel, &args, Duration::from_secs(600));
    assert_eq!(s.out.code, 0, "{}\n{}", s.out.stdout, s.out.stderr);
    assert!(s.out.stdout.contains("churn ok"), "{}\n{}", s.out.stdout, s.out.stderr);
    assert!(s.max_fds <= FD_BOUND, "the kernel held {} host fds (bound {FD_BOUND})", s.max_fds);
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// A host process renames and swaps a directory and symlinks pointing out
/// of the export (relative and absolute) in a tight loop for 20 s, while the
/// guest walks, lists, opens and stats through those names. The guest must
/// never read the file outside the export.
#[test]
fn host_side_swaps_never_lead_outside_the_export() {
    let _l = lock();
    let d = scratch("race");
    let e = d.join("export");
    std::fs::create_dir_all(e.join("a/sub")).unwrap();
    std::fs::write(e.join("a/inner"), "INSIDE").unwrap();
    std::fs::write(e.join("a/sub/inner"), "INSIDE").unwrap();
    std::fs::write(d.join("inner"), "TOP SECRET").unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/inner"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink("..", e.join("b")).unwrap();
    std::os::unix::fs::symlink(&d, e.join("c")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let name = |n: &str| std::ffi::CString::new(e.join(n).as_os_str().as_encoded_bytes()).unwrap();
            let (a, b, c) = (name("a"), name("b"), name("c"));
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (x, y) in [(&a, &b), (&a, &c), (&b, &c)] {
                    // SAFETY: two NUL-terminated paths; RENAME_EXCHANGE swaps them atomically.
                    unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, x.as_ptr(), libc::AT_FDCWD, y.as_ptr(), 2) };
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let script = r#"
import os, time
end = time.time() + 20
seen, n = set(), 0
while time.time() < end:
    for p in ['/w/a/inner', '/w/b/inner', '/w/c/inner', '/w/a/sub/inner', '/w/b/sub/inner', '/w/c/sub/inner']:
        n += 1
        try:
            with open(p) as f:
                seen.add(f.read())
        except OSError as e:
            seen.add(e.__class__.__name__)
        try:
            seen.update(os.listdir(os.path.dirname(p)))
            os.stat(p)
        except OSError:
            pass
print('opens', n)
print(sorted(seen))
"#;
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let args = kernel_args(format!("{}:/w", e.display()), &["/usr/bin/python3", "-c", script]);
    let s = run_sampled(&kernel, &args, Duration::from_secs(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    eprintln!("racer: {swaps} swaps; guest: {}", s.out.stdout.trim());
    assert_eq!(s.out.code, 0, "{}\n{}", s.out.stdout, s.out.stderr);
    assert!(s.out.stdout.contains("INSIDE"), "the guest never read the export's file: {}", s.out.stdout);
    assert!(!s.out.stdout.contains("TOP SECRET") && !s.out.stderr.contains("TOP SECRET"), "{}", s.out.stdout);
    assert!(swaps > 1000, "the racer made only {swaps} swaps");
    let _ = std::fs::remove_dir_all(&d);
}

/// One change the host makes while the guest waits.
type HostAct = Box<dyn FnOnce(&Path) + Send>;

/// Waits for the guest to write `step-N` into the export, runs `act` on
/// the host, then answers with `done-N`.
fn host_steps(e: PathBuf, acts: Vec<HostAct>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (i, act) in acts.into_iter().enumerate() {
            let step = e.join(format!("step-{i}"));
            let start = Instant::now();
            while !step.exists() {
                if start.elapsed() > Duration::from_secs(120) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            act(&e);
            std::fs::write(e.join(format!("done-{i}")), "").unwrap();
        }
    })
}

/// Coherence with the host (close-to-open) and the bad input of the issue:
/// a 100,000-entry directory, names of every byte, a 4,095-byte path,
/// symlink loops, and a directory removed while it is being listed.
#[test]
fn host_changes_are_seen_and_bad_input_gets_linux_answers() {
    let _l = lock();
    let d = scratch("coherence");
    let e = d.join("export");
    std::fs::create_dir_all(e.join("big")).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(e.join("big").join(format!("{i}"))).unwrap();
    }
    std::fs::create_dir_all(e.join("doomed")).unwrap();
    for i in 0..2000 {
        std::fs::File::create(e.join("doomed").join(format!("entry-with-a-long-name-{i:05}"))).unwrap();
    }
    std::fs::write(e.join("y"), "why").unwrap();
    std::fs::write(e.join("held"), "old contents").unwrap();
    std::os::unix::fs::symlink("loop2", e.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", e.join("loop2")).unwrap();
    let acts: Vec<HostAct> = vec![
        Box::new(|e| std::fs::write(e.join("x"), "created on the host").unwrap()),
        Box::new(|e| {
            std::fs::write(e.join("x.new"), "changed, and longer than before").unwrap();
            std::fs::rename(e.join("x.new"), e.join("x")).unwrap();
        }),
        Box::new(|e| std::fs::remove_file(e.join("x")).unwrap()),
        Box::new(|e| std::fs::rename(e.join("y"), e.join("z")).unwrap()),
        Box::new(|e| {
            std::fs::write(e.join("held.new"), "NEW").unwrap();
            std::fs::rename(e.join("held.new"), e.join("held")).unwrap();
        }),
        Box::new(|e| std::fs::remove_dir_all(e.join("doomed")).unwrap()),
    ];
    let host = host_steps(e.clone(), acts);
    let script = r#"
import os, time, errno
os.chdir('/w')
def step(i):
    open('step-%d' % i, 'w').close()
    while not os.path.exists('done-%d' % i):
        time.sleep(0.005)
def err(f):
    try:
        f(); return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
print('absent', err(lambda: os.stat('x')))
step(0); print('created', open('x').read())
step(1); print('changed', open('x').read(), os.stat('x').st_size)
step(2); print('deleted', err(lambda: os.stat('x')), err(lambda: open('x')))
step(3); print('renamed', err(lambda: os.stat('y')), open('z').read())
f = open('held')
step(4)
got = f.read()
print('held fd', got == 'old contents' or got, open('held').read())
print('big', len(os.listdir('big')))
it = os.scandir('doomed'); first = [next(it).name for _ in range(10)]
step(5)
rest = sum(1 for _ in it)
print('doomed listing survived', len(first), rest <= 1990, err(lambda: os.listdir('doomed')))
name = bytes(b for b in range(1, 256) if b != ord('/'))
for n in (name[:200], name[200:]):
    fd = os.open(n, os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, n); os.close(fd)
print('bytes', all(open(n, 'rb').read() == n for n in (name[:200], name[200:])), name[:200] in os.listdir(b'.'))
print('loop', err(lambda: open('loop1')))
# A path of exactly 4,095 bytes (with its NUL, PATH_MAX) and one byte more.
comp = 'd' * 200
depth = 0
p = '/w/deep'
os.mkdir(p)
while len(p) + 1 + 200 < 4095 - 50:
    p += '/' + comp; os.mkdir(p)
last = 'f' * (4095 - len(p) - 1)
full = p + '/' + last
open(full, 'w').write('deep')
print('path4095', len(full), open(full).read(), err(lambda: open(full + 'x', 'w')))
"#;
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let args = kernel_args(format!("{}:/w:rw", e.display()), &["/usr/bin/python3", "-c", script]);
    let s = run_sampled(&kernel, &args, Duration::from_secs(300));
    host.join().unwrap();
    let out = s.out.stdout.replace("\r\n", "\n");
    assert_eq!(s.out.code, 0, "{out}\n{}", s.out.stderr);
    let want = [
        "absent ENOENT",
        "created created on the host",
        "changed changed, and longer than before 31",
        "deleted ENOENT ENOENT",
        "renamed ENOENT why",
        "held fd True NEW",
        "big 100000",
        "doomed listing survived 10 True ENOENT",
        "bytes True True",
        "loop ELOOP",
        "path4095 4095 deep ENAMETOOLONG",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, want, "stderr: {}", s.out.stderr);
    // The names reached the host byte for byte.
    let name: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').collect();
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(std::fs::read(e.join(std::ffi::OsStr::from_bytes(&name[..200]))).unwrap(), &name[..200]);
    let _ = std::fs::remove_dir_all(&d);
}

/// Init and its dynamic loader come through mounts: the host's `/usr` over
/// the packed one, and the host's whole `/` as the root (with the guest's
/// own /dev, /proc, /sys, /tmp and /run on top): the host's gcc compiles
/// and runs a program, the host's python3 and git run.
#[test]
fn host_usr_and_host_root_from_the_first_instruction() {
    let _l = lock();
    let kernel = kernel_from("RUSTUML_KERNEL_SKAS");
    let root = default_root().to_string_lossy().into_owned();
    let usr: Vec<String> = ["--root", &root, "--hostfs", "/usr:/usr", "--", "/bin/sh", "-c", "echo init from the host; readlink -f /bin/sh"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = run_kernel(&kernel, &usr);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("init from the host\n/usr/bin/"), "{}", o.stdout);
    let have = |p: &str| Path::new(p).exists();
    if !(have("/usr/bin/gcc") && have("/usr/bin/python3") && have("/usr/bin/git")) {
        eprintln!("skipped the host-root half: the host lacks gcc, python3 or git");
        return;
    }
    let script = "cd /tmp && printf '#include <stdio.h>\\nint main(void){puts(\"compiled by the host gcc\");return 0;}\\n' > a.c \
                  && gcc a.c -o a && ./a && python3 -c 'import sys; print(\"python\", sys.version_info[0])' \
                  && git --version | cut -d' ' -f1 && grep -c ' /proc proc ' /proc/mounts && grep -c ' /run tmpfs ' /proc/mounts";
    let args: Vec<String> = ["--mem", "1G", "--hostfs", "/:/", "--", "/bin/sh", "-c", script].iter().map(|s| s.to_string()).collect();
    let o = run_kernel(&kernel, &args);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(o.stdout.replace("\r\n", "\n"), "compiled by the host gcc\npython 3\ngit\n1\n1\n", "{}", o.stderr);
}
