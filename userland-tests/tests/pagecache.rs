//! The page cache under both backends: `conf_pagecache` (sparse files,
//! shared file mappings, memfd and seals, mremap/madvise/mincore) compared
//! with a native run; python3's `multiprocessing` compared with native;
//! tmpfs sizes, `ENOSPC`, `df` and `/proc/meminfo` in the guest; hostfs
//! files on the page cache (writable shared mappings reaching the host
//! file, files larger than guest memory, sparse 5 GiB files).
//! Run with `cargo xtask test`.

mod common;

use common::*;
use std::path::PathBuf;

const SKAS: &str = "RUSTUML_KERNEL_SKAS";
const TT: &str = "RUSTUML_KERNEL_TT";

/// Runs the guest's `/bin/sh -c script` under the kernel in `var` with
/// `flags` before `--root`.
fn guest_sh(var: &str, flags: &[String], script: &str) -> Outcome {
    let kernel = kernel_from(var);
    let root = default_root();
    let mut args: Vec<String> = flags.to_vec();
    args.extend(["--root".into(), root.to_string_lossy().into_owned(), "--".into()]);
    args.extend(["/bin/sh".into(), "-c".into(), script.into()]);
    run_kernel(&kernel, &args)
}

fn native_sh(script: &str) -> Outcome {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(script).env_clear().envs(GUEST_ENV.iter().copied()).current_dir("/");
    run(&mut cmd, "native /bin/sh")
}

fn conf_pagecache_on(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let n = native(&root, "conf_pagecache", &["/dev/shm"]);
    assert_eq!(n.code, 0, "native conf_pagecache failed:\n{}\n{}", n.stdout, n.stderr);
    let args: Vec<String> = vec![
        "--root".into(),
        root.to_string_lossy().into_owned(),
        "--".into(),
        "/tests/conf_pagecache".into(),
        "/dev/shm".into(),
    ];
    let g = run_kernel(&kernel, &args);
    assert_same("conf_pagecache /dev/shm", &n, &g);
    assert!(!g.stderr.contains("frame leak"), "{}", g.stderr);
}

#[test]
fn conf_pagecache_skas() {
    conf_pagecache_on(SKAS);
}

#[test]
fn conf_pagecache_tt() {
    conf_pagecache_on(TT);
}

/// A `multiprocessing` Pool and a shared `Value` (semaphores and shared
/// memory in /dev/shm, mapped shared by forked workers).
const MULTIPROCESSING: &str = r#"python3 -c '
import multiprocessing as mp
def sq(x):
    return x * x
def inc(v):
    for _ in range(50):
        with v.get_lock():
            v.value += 1
if __name__ == "__main__":
    v = mp.Value("i", 0)
    ps = [mp.Process(target=inc, args=(v,)) for _ in range(4)]
    for p in ps: p.start()
    for p in ps: p.join()
    print("value", v.value)
    with mp.Pool(3) as pool:
        print(pool.map(sq, range(12)))
    a = mp.Array("d", 4)
    p = mp.Process(target=lambda: a.__setitem__(2, 1.5)); p.start(); p.join()
    print(list(a))
'"#;

fn multiprocessing_on(var: &str) {
    let _l = lock();
    let n = native_sh(MULTIPROCESSING);
    assert_eq!(n.code, 0, "native python3 multiprocessing failed:\n{}\n{}", n.stdout, n.stderr);
    let g = guest_sh(var, &["--mem".into(), "512M".into()], MULTIPROCESSING);
    assert_same("python3 multiprocessing", &n, &g);
}

#[test]
fn multiprocessing_skas() {
    multiprocessing_on(SKAS);
}

#[test]
fn multiprocessing_tt() {
    multiprocessing_on(TT);
}

/// tmpfs sizes: `size=` stops writes with ENOSPC, `df` shows size and use,
/// remount changes the size, and /proc/meminfo's Shmem follows a file in
/// /dev/shm (a tmpfs of its own) up and back down.
const TMPFS_LIMITS: &str = r#"
mkdir -p /mnt/t
mount -t tmpfs -o size=1m tmpfs /mnt/t
dd if=/dev/zero of=/mnt/t/f bs=64k count=100 2>&1 | grep -c 'No space left'
stat -c %s /mnt/t/f
df -k /mnt/t | tail -1 | awk '{print $2, $3, $4}'
mount -o remount,size=2m /mnt/t; df -k /mnt/t | tail -1 | awk '{print $2, $3, $4}'
mount -t tmpfs -o bogus tmpfs /mnt/t 2>/dev/null || echo bogus refused
grep -c ' /dev/shm tmpfs ' /proc/mounts
s0=$(awk '/^Shmem:/ {print $2}' /proc/meminfo)
f0=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
dd if=/dev/zero of=/dev/shm/big bs=1M count=32 2>/dev/null
s1=$(awk '/^Shmem:/ {print $2}' /proc/meminfo)
f1=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
echo shmem grew $(( (s1 - s0) / 1024 )) MiB, free fell $(( (f0 - f1) / 1024 )) MiB
rm /dev/shm/big
s2=$(awk '/^Shmem:/ {print $2}' /proc/meminfo)
echo shmem back: $(( s2 < s0 + 1024 ))
df -k /dev/shm | tail -1 | awk '{print $2}'
free -k | awk '/^Mem:/ {print $2}'
"#;

fn tmpfs_limits_on(var: &str) {
    let _l = lock();
    let g = guest_sh(var, &["--mem".into(), "256M".into()], TMPFS_LIMITS);
    assert_eq!(
        g.stdout,
        "1\n1048576\n1024 1024 0\n2048 1024 1024\nbogus refused\n1\nshmem grew 32 MiB, free fell 32 MiB\nshmem back: 1\n131072\n262144\n",
        "stderr:\n{}",
        g.stderr
    );
    assert_eq!(g.code, 0);
}

#[test]
fn tmpfs_limits_skas() {
    tmpfs_limits_on(SKAS);
}

#[test]
fn tmpfs_limits_tt() {
    tmpfs_limits_on(TT);
}

/// All tmpfs together stop at guest memory: with /tmp full (half of
/// memory), a tmpfs mounted bigger than what is left fails its writer (an
/// error or the writer killed for lack of memory, as Linux's OOM killer
/// would), not the kernel, and the memory comes back when the files go.
#[test]
fn tmpfs_bounded_by_memory() {
    let _l = lock();
    let script = r#"
dd if=/dev/zero of=/tmp/a bs=1M count=100 2>/dev/null; echo tmp $?
mkdir -p /mnt/x; mount -t tmpfs -o size=100m tmpfs /mnt/x
dd if=/dev/zero of=/mnt/x/c bs=1M count=100 2>/dev/null; [ $? -ne 0 ] && echo x failed
rm -f /tmp/a /mnt/x/c
dd if=/dev/zero of=/tmp/d bs=1M count=16 2>/dev/null; echo again $?
rm /tmp/d
[ $(awk '/^MemFree:/ {print $2}' /proc/meminfo) -gt 50000 ] && echo memory back
"#;
    for var in [SKAS, TT] {
        let g = guest_sh(var, &["--mem".into(), "64M".into()], script);
        assert_eq!(g.stdout, "tmp 1\nx failed\nagain 0\nmemory back\n", "{var}: stderr:\n{}", g.stderr);
        assert_eq!(g.code, 0);
    }
}

/// Programs run from files in the page cache, not in the archive: copied
/// to tmpfs (static, and dynamic with the interpreter read from the
/// cache), from a host directory; an 8 GiB sparse non-ELF file is refused
/// as on Linux, without reading it.
const EXEC_FROM_CACHE: &str = r#"
cp /tests/hello /tmp/h && /tmp/h
cp /bin/ls /dev/shm/ls && /dev/shm/ls -d /dev/shm
/h/hello
dd if=/dev/null of=/tmp/big bs=1 seek=8G 2>/dev/null; chmod +x /tmp/big
/tmp/big 2>/dev/null; echo $?
"#;

fn exec_from_cache_on(var: &str) {
    let _l = lock();
    let d = HostDir::new(&format!("exec-{var}"));
    std::fs::copy(default_root().join("tests/hello"), d.0.join("hello")).unwrap();
    let g = guest_sh(var, &["--hostfs".into(), format!("{}:/h", d.0.display())], EXEC_FROM_CACHE);
    assert_eq!(
        g.stdout,
        "Hello from a rustuml guest!\n/dev/shm\nHello from a rustuml guest!\n126\n",
        "stderr:\n{}",
        g.stderr
    );
}

#[test]
fn exec_from_cache_skas() {
    exec_from_cache_on(SKAS);
}

#[test]
fn exec_from_cache_tt() {
    exec_from_cache_on(TT);
}

/// A scratch host directory, removed on drop.
struct HostDir(PathBuf);
impl HostDir {
    fn new(tag: &str) -> HostDir {
        let d = std::env::temp_dir().join(format!("rustuml-pagecache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create host dir");
        HostDir(d)
    }
}
impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// hostfs files on the page cache: a guest store through a writable
/// shared mapping reaches the host file (msync, and at munmap/exit); a
/// sparse 5 GiB host file is read at its end and written past 5 GiB; a host
/// file larger than guest memory is read whole (clean pages are evicted).
fn hostfs_on(var: &str) {
    let _l = lock();
    let d = HostDir::new(var);
    std::fs::write(d.0.join("map.txt"), vec![b'.'; 8192]).unwrap();
    let sparse = std::fs::File::create(d.0.join("sparse")).unwrap();
    sparse.set_len(5 << 30).unwrap();
    {
        use std::os::unix::fs::FileExt;
        sparse.write_all_at(b"tail", (5 << 30) - 4).unwrap();
    }
    // 96 MiB of varied bytes in a 64 MiB guest.
    let big: Vec<u8> = (0..96u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(d.0.join("big"), &big).unwrap();
    drop(big);
    let script = r#"python3 -c '
import mmap, os
fd = os.open("/h/map.txt", os.O_RDWR)
m = mmap.mmap(fd, 8192)
m[0:6] = b"msync!"
m.flush()
m[4096:4101] = b"unmap"
m.close()
f = os.open("/h/exit.txt", os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(f, 4096)
e = mmap.mmap(f, 4096)
e[0:4] = b"exit"
s = os.open("/h/sparse", os.O_RDWR)
print(os.pread(s, 4, (5 << 30) - 4), flush=True)
os.pwrite(s, b"more", (5 << 30) + 4096)
print(os.fstat(s).st_size, flush=True)
os._exit(0)
'
md5sum /h/big | cut -d" " -f1
"#;
    let g = guest_sh(
        var,
        &["--mem".into(), "64M".into(), "--hostfs".into(), format!("{}:/h:rw", d.0.display())],
        script,
    );
    assert_eq!(g.code, 0, "stdout:\n{}\nstderr:\n{}", g.stdout, g.stderr);
    let map = std::fs::read(d.0.join("map.txt")).unwrap();
    assert_eq!(&map[0..6], b"msync!", "msync reached the host file");
    assert_eq!(&map[4096..4101], b"unmap", "munmap wrote the page back");
    assert_eq!(&std::fs::read(d.0.join("exit.txt")).unwrap()[0..4], b"exit", "exit wrote the page back");
    let want_md5 = native_sh(&format!("md5sum {}/big | cut -d' ' -f1", d.0.display())).stdout;
    assert_eq!(g.stdout, format!("b'tail'\n{}\n{want_md5}", (5u64 << 30) + 4096 + 4), "stderr:\n{}", g.stderr);
    assert_eq!(std::fs::metadata(d.0.join("sparse")).unwrap().len(), (5 << 30) + 4096 + 4);
}

#[test]
fn hostfs_pagecache_skas() {
    hostfs_on(SKAS);
}

#[test]
fn hostfs_pagecache_tt() {
    hostfs_on(TT);
}
