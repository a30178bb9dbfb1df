//! The host's userland in the default root: the shell, coreutils, grep, sed,
//! findutils, tar, gzip, python3, procps/mount/util-linux tools and busybox
//! (whichever the host has), with every shared library they need.
//!
//! Libraries are found the way the dynamic linker finds them, by reading the
//! ELF files themselves (`PT_INTERP`, `DT_NEEDED`, `DT_RUNPATH`/`DT_RPATH`)
//! and searching the host's library path (`/etc/ld.so.conf` and its
//! includes, then the multiarch and default directories) — never by running
//! `ldd`, which executes the program's interpreter. ELF is parsed with the
//! `object` crate (gimli-rs; it is what the Rust standard library's own
//! backtraces use), not by hand.
//!
//! Host paths are mirrored into the root as they are, symlinks included
//! (Debian's merged `/usr`: `/bin -> usr/bin`, `/lib64 -> usr/lib64`), so
//! that `PT_INTERP` paths and `#!` lines resolve inside the guest the same
//! way. Files are hard-linked when the root is on the same file system as the
//! host's (copied otherwise). Nothing of the host is writable from the guest:
//! the kernel packs the root into an in-memory initramfs at boot, so what a
//! guest writes, also over one of these files, lives in the guest's memory
//! only.

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::Endianness;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Programs copied when the host has them (looked up in the usual bin dirs).
const PROGRAMS: &[&str] = &[
    // shells
    "sh", "dash", "bash",
    // coreutils
    "ls", "cat", "echo", "mkdir", "rmdir", "rm", "cp", "mv", "ln", "sort", "head", "tail", "wc",
    "uname", "env", "sleep", "true", "false", "test", "[", "touch", "chmod", "chown", "stat",
    "readlink", "realpath", "dirname", "basename", "pwd", "id", "whoami", "date", "seq", "tr",
    "cut", "tee", "yes", "printf", "expr", "od", "md5sum", "sha256sum", "du", "uniq", "nproc",
    "hostname", "mktemp", "dd", "sync", "timeout", "nohup", "kill", "tty", "stty", "ps", "nl",
    "comm", "join", "paste", "fold", "split", "xargs", "diff", "cmp",
    // text tools, findutils, archives
    "grep", "egrep", "fgrep", "sed", "awk", "mawk", "find", "tar", "gzip", "gunzip", "zcat",
    "less", "more", "which",
    // procps, mount, util-linux
    "ps", "top", "free", "uptime", "vmstat", "pgrep", "pkill", "mount", "umount", "df", "lsblk", "dmesg",
    "setsid", "clear", "tput", "reset",
    // python, busybox
    "python3", "busybox",
];

/// Where programs are looked up on the host, in order.
const BIN_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Directories the dynamic linker searches after `ld.so.conf` (x86_64 Debian
/// multiarch first, then the built-in defaults).
const DEFAULT_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Parts of python's standard library left out: tests, GUI toolkits and
/// byte-code caches (python compiles what it imports in memory when the
/// cache dir is read-only or missing).
const PYTHON_SKIP: &[&str] = &[
    "__pycache__", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
    "pydoc_data", "config-3*", "site-packages", "dist-packages",
];

/// What was added, for the progress line.
#[derive(Default)]
pub struct Summary {
    pub programs: usize,
    pub libraries: usize,
    pub files: usize,
    pub bytes: u64,
    pub missing: Vec<String>,
}

struct Copier {
    root: PathBuf,
    /// Host paths already mirrored (as given, before resolving).
    done: HashSet<PathBuf>,
    /// ELF files (real host paths) whose dependencies are still to be added.
    elf_queue: VecDeque<PathBuf>,
    elf_seen: HashSet<PathBuf>,
    lib_dirs: Vec<PathBuf>,
    libs: BTreeSet<PathBuf>,
    summary: Summary,
}

fn err(what: &str, p: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", p.display())
}

impl Copier {
    /// The guest's copy of host path `host` (absolute).
    fn guest(&self, host: &Path) -> PathBuf {
        self.root.join(host.strip_prefix("/").unwrap_or(host))
    }

    fn mkdir(&self, host_dir: &Path) -> Result<(), String> {
        let g = self.guest(host_dir);
        if !g.exists() {
            fs::create_dir_all(&g).map_err(|e| err("create", &g, e))?;
        }
        Ok(())
    }

    /// Mirrors host path `p` (absolute) into the root: every symlink on the
    /// way becomes the same symlink in the guest, directories are created,
    /// and the final file is linked or copied. Returns the real host path of
    /// the final file (None when it does not exist).
    fn mirror(&mut self, p: &Path) -> Result<Option<PathBuf>, String> {
        let mut hops = 0;
        let mut path = p.to_path_buf();
        'restart: loop {
            hops += 1;
            if hops > 40 {
                return Ok(None);
            }
            let comps: Vec<PathBuf> = path.components().map(|c| PathBuf::from(c.as_os_str())).collect();
            let mut cur = PathBuf::from("/");
            for (i, c) in comps.iter().enumerate() {
                if c == Path::new("/") {
                    continue;
                }
                if c == Path::new("..") {
                    cur.pop();
                    continue;
                }
                if c == Path::new(".") {
                    continue;
                }
                cur.push(c);
                let meta = match fs::symlink_metadata(&cur) {
                    Ok(m) => m,
                    Err(_) => return Ok(None),
                };
                let last = i + 1 == comps.len();
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&cur).map_err(|e| err("readlink", &cur, e))?;
                    let g = self.guest(&cur);
                    if fs::symlink_metadata(&g).is_err() {
                        self.mkdir(cur.parent().unwrap_or(Path::new("/")))?;
                        symlink(&target, &g).map_err(|e| err("symlink", &g, e))?;
                    }
                    let mut next = cur.parent().unwrap_or(Path::new("/")).join(&target);
                    for rest in &comps[i + 1..] {
                        next.push(rest);
                    }
                    path = next;
                    continue 'restart;
                } else if meta.is_dir() {
                    self.mkdir(&cur)?;
                    if last {
                        return Ok(Some(cur));
                    }
                } else if last {
                    if self.done.insert(cur.clone()) {
                        self.link_file(&cur, meta.len())?;
                    }
                    return Ok(Some(cur));
                } else {
                    return Ok(None);
                }
            }
            return Ok(Some(cur));
        }
    }

    /// Hard-links (or copies) one regular host file into the root, and
    /// queues it for dependency scanning if it is ELF.
    fn link_file(&mut self, host: &Path, len: u64) -> Result<(), String> {
        let g = self.guest(host);
        if let Some(parent) = g.parent() {
            fs::create_dir_all(parent).map_err(|e| err("create", parent, e))?;
        }
        if fs::symlink_metadata(&g).is_ok() {
            return Ok(());
        }
        if fs::hard_link(host, &g).is_err() {
            fs::copy(host, &g).map_err(|e| err("copy", host, e))?;
        }
        self.summary.files += 1;
        self.summary.bytes += len;
        if is_elf(host) && self.elf_seen.insert(host.to_path_buf()) {
            self.elf_queue.push_back(host.to_path_buf());
        }
        Ok(())
    }

    /// Adds the interpreter and the libraries of every queued ELF file, and
    /// theirs, until none is left.
    fn resolve_dependencies(&mut self) -> Result<(), String> {
        while let Some(file) = self.elf_queue.pop_front() {
            let data = fs::read(&file).map_err(|e| err("read", &file, e))?;
            let Some(deps) = elf_deps(&data) else { continue };
            if let Some(interp) = deps.interp {
                self.mirror(Path::new(&interp))?;
            }
            let origin = file.parent().unwrap_or(Path::new("/")).to_path_buf();
            for lib in deps.needed {
                if lib.contains('/') {
                    self.mirror(&origin.join(&lib))?;
                    continue;
                }
                let mut dirs: Vec<PathBuf> = deps
                    .search
                    .iter()
                    .flat_map(|s| s.split(':'))
                    .filter(|s| !s.is_empty())
                    .map(|s| PathBuf::from(s.replace("$ORIGIN", &origin.to_string_lossy())))
                    .collect();
                dirs.extend(self.lib_dirs.iter().cloned());
                let found = dirs.iter().map(|d| d.join(&lib)).find(|p| p.is_file());
                match found {
                    Some(p) => {
                        if let Some(real) = self.mirror(&p)? {
                            self.libs.insert(real);
                        }
                    }
                    None => eprintln!(
                        "      warning: {} needs {lib}, not found on the host",
                        file.display()
                    ),
                }
            }
        }
        Ok(())
    }

    /// Copies a directory tree (python's standard library), skipping the
    /// names in `skip`.
    fn tree(&mut self, dir: &Path, skip: &[&str]) -> Result<(), String> {
        let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
        self.mkdir(dir)?;
        for e in entries.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if skip.iter().any(|s| n == *s || s.strip_suffix('*').is_some_and(|pre| n.starts_with(pre))) {
                continue;
            }
            let p = e.path();
            let Ok(meta) = fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                self.tree(&p, skip)?;
            } else if meta.file_type().is_symlink() {
                let g = self.guest(&p);
                if let Ok(t) = fs::read_link(&p) {
                    if fs::symlink_metadata(&g).is_err() {
                        symlink(t, &g).map_err(|e| err("symlink", &g, e))?;
                    }
                }
            } else if meta.is_file() && self.done.insert(p.clone()) {
                self.link_file(&p, meta.len())?;
            }
        }
        Ok(())
    }
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// What the dynamic linker needs for one ELF file.
struct Deps {
    interp: Option<String>,
    needed: Vec<String>,
    /// DT_RUNPATH / DT_RPATH values (colon-separated lists, may use $ORIGIN).
    search: Vec<String>,
}

/// Reads `PT_INTERP`, `DT_NEEDED`, `DT_RUNPATH` and `DT_RPATH` of a 64-bit
/// ELF file; None for anything else (32-bit, corrupt, not ELF).
fn elf_deps(data: &[u8]) -> Option<Deps> {
    let header = elf::FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let mut interp = None;
    for ph in header.program_headers(endian, data).ok()? {
        if let Ok(Some(i)) = ph.interpreter(endian, data) {
            interp = Some(String::from_utf8_lossy(i).into_owned());
        }
    }
    let sections = header.sections(endian, data).ok()?;
    let (dynamic, link) = match sections.dynamic(endian, data).ok()? {
        Some(d) => d,
        None => return Some(Deps { interp, needed: vec![], search: vec![] }),
    };
    let strings = sections.strings(endian, data, link).ok()?;
    let mut needed = Vec::new();
    let mut search = Vec::new();
    for d in dynamic {
        let tag = d.d_tag(endian);
        if tag == elf::DT_NULL {
            break;
        }
        let s = || {
            let off: u32 = d.d_val(endian).try_into().ok()?;
            strings.get(off).ok().map(|b| String::from_utf8_lossy(b).into_owned())
        };
        match tag {
            elf::DT_NEEDED => needed.extend(s()),
            elf::DT_RUNPATH | elf::DT_RPATH => search.extend(s()),
            _ => {}
        }
    }
    Some(Deps { interp, needed, search })
}

/// The host's library search path: `/etc/ld.so.conf` (with `include` globs
/// of the `dir/*.conf` form), then the default directories.
fn host_lib_dirs() -> Vec<PathBuf> {
    fn read_conf(path: &Path, out: &mut Vec<PathBuf>, depth: u32) {
        let Ok(text) = fs::read_to_string(path) else { return };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                let pattern = pattern.trim();
                if depth > 4 || pattern.is_empty() {
                    continue;
                }
                let pat = Path::new(pattern);
                let (dir, file) = (pat.parent().unwrap_or(Path::new("/")), pat.file_name());
                let file = file.map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                let (pre, suf) = file.split_once('*').unwrap_or((&file, ""));
                let mut matches: Vec<PathBuf> = fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if file.contains('*') { n.starts_with(pre) && n.ends_with(suf) } else { n == file }
                    })
                    .collect();
                matches.sort();
                for m in matches {
                    read_conf(&m, out, depth + 1);
                }
            } else if line.starts_with('/') {
                out.push(PathBuf::from(line));
            }
        }
    }
    let mut dirs = Vec::new();
    read_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
    dirs.extend(DEFAULT_LIB_DIRS.iter().map(PathBuf::from));
    let mut seen = HashSet::new();
    dirs.retain(|d| d.is_dir() && seen.insert(d.clone()));
    dirs
}

fn find_program(name: &str) -> Option<PathBuf> {
    BIN_DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| {
        fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// Minimal `/etc`: users, groups, host name, OS identification, name
/// service switch, resolver (the user-mode NAT's DNS), services and
/// protocols, and the empty mount points and `/tmp`.
fn write_etc(root: &Path) -> Result<(), String> {
    let files: &[(&str, &str)] = &[
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             user:x:1000:1000:user:/home/user:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:\nuser:x:1000:\nnogroup:x:65534:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/hostname", "rustuml\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\trustuml\n"),
        (
            "etc/os-release",
            "PRETTY_NAME=\"rustuml guest (host userland)\"\nNAME=\"rustuml\"\nID=rustuml\n\
             ID_LIKE=debian\nHOME_URL=\"https://example.invalid/rustuml\"\n",
        ),
        ("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"),
        // The user-mode NAT (`--net user`) answers DNS at 10.0.2.3.
        ("etc/resolv.conf", "nameserver 10.0.2.3\n"),
        (
            "etc/services",
            "ftp\t\t21/tcp\nssh\t\t22/tcp\ntelnet\t\t23/tcp\nsmtp\t\t25/tcp\ndomain\t\t53/tcp\n\
             domain\t\t53/udp\nhttp\t\t80/tcp\t\twww\nntp\t\t123/udp\nhttps\t\t443/tcp\n\
             http-alt\t8080/tcp\n",
        ),
        ("etc/protocols", "ip\t0\tIP\nicmp\t1\tICMP\ntcp\t6\tTCP\nudp\t17\tUDP\nipv6-icmp\t58\tIPv6-ICMP\n"),
        ("etc/shells", "/bin/sh\n/bin/dash\n/bin/bash\n"),
        ("etc/profile", "PS1='\\u@\\h:\\w\\$ '\nexport PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
    ];
    fs::create_dir_all(root.join("etc")).map_err(|e| err("create", &root.join("etc"), e))?;
    for (path, text) in files {
        let p = root.join(path);
        fs::write(&p, text).map_err(|e| err("write", &p, e))?;
        let mode = if path.ends_with("shadow") { 0o640 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| err("chmod", &p, e))?;
    }
    // Scripts with a "#!" line, executable as the root holds them.
    let scripts = root.join("tests/scripts");
    fs::create_dir_all(&scripts).map_err(|e| err("create", &scripts, e))?;
    for (name, text) in [
        ("hello.sh", "#!/bin/sh\necho \"sh: $# $1 $2\"\n"),
        ("hello.py", "#!/usr/bin/env python3\nimport sys\nprint('python:', sys.argv[1:])\n"),
    ] {
        let p = scripts.join(name);
        fs::write(&p, text).map_err(|e| err("write", &p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(|e| err("chmod", &p, e))?;
    }
    for (dir, mode) in [
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("root", 0o700),
        ("home/user", 0o755),
        ("run", 0o755),
        ("mnt", 0o755),
    ] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(|e| err("create", &p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| err("chmod", &p, e))?;
    }
    Ok(())
}

/// Adds the host's userland (see the module comment) to the root `root`.
pub fn add_host_userland(root: &Path) -> Result<Summary, String> {
    let mut c = Copier {
        root: root.to_path_buf(),
        done: HashSet::new(),
        elf_queue: VecDeque::new(),
        elf_seen: HashSet::new(),
        lib_dirs: host_lib_dirs(),
        libs: BTreeSet::new(),
        summary: Summary::default(),
    };
    write_etc(root)?;
    // The top-level directories as the host has them (on a merged-/usr
    // Debian, symlinks into /usr), so that /bin/sh and PT_INTERP's /lib64
    // resolve in the guest as they do on the host.
    for top in ["/bin", "/sbin", "/lib", "/lib64", "/usr/local/bin"] {
        c.mirror(Path::new(top))?;
    }
    let mut python = None;
    for name in PROGRAMS {
        match find_program(name) {
            Some(p) => {
                if let Some(real) = c.mirror(&p)? {
                    c.summary.programs += 1;
                    if *name == "python3" {
                        python = real.file_name().map(|n| n.to_string_lossy().into_owned());
                    }
                }
            }
            None => c.summary.missing.push(name.to_string()),
        }
    }
    // python3.X needs its standard library, and its extension modules (in
    // lib-dynload) their libraries.
    if let Some(py) = python.filter(|p| p.starts_with("python3.")) {
        c.tree(&Path::new("/usr/lib").join(&py), PYTHON_SKIP)?;
    }
    // Terminal descriptions, for bash's line editing and tput/clear.
    for dir in ["/lib/terminfo", "/usr/share/terminfo", "/etc/terminfo"] {
        if Path::new(dir).is_dir() {
            if let Some(real) = c.mirror(Path::new(dir))? {
                c.tree(&real, &[])?;
            }
        }
    }
    // The C.UTF-8 locale (glibc's compiled one), so that a guest with
    // LANG=C.UTF-8 edits and shows UTF-8 text as the host does.
    for dir in ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"] {
        if Path::new(dir).is_dir() {
            if let Some(real) = c.mirror(Path::new(dir))? {
                c.tree(&real, &[])?;
            }
        }
    }
    c.resolve_dependencies()?;
    c.summary.libraries = c.libs.len();
    Ok(c.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dependencies_of_the_hosts_shell() {
        let Some(sh) = find_program("sh") else { return };
        let real = fs::canonicalize(sh).unwrap();
        let data = fs::read(real).unwrap();
        let deps = elf_deps(&data).expect("an ELF file");
        // Debian's dash is dynamic: ld.so and libc.
        if let Some(i) = deps.interp {
            assert!(i.contains("ld-linux"), "{i}");
            assert!(deps.needed.iter().any(|n| n.starts_with("libc.so")), "{:?}", deps.needed);
        }
    }

    #[test]
    fn library_path_has_the_multiarch_dir() {
        let dirs = host_lib_dirs();
        if Path::new("/usr/lib/x86_64-linux-gnu").is_dir() {
            assert!(dirs.iter().any(|d| d.ends_with("x86_64-linux-gnu")), "{dirs:?}");
        }
    }
}
