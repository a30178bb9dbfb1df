//! `cargo xtask image`: disk images for `--ubd` / `ubdN=`.
//!
//! * `image from-dir DIR --out IMG [--size SIZE]`: an ext4 image holding
//!   DIR's tree, made by the host's `mke2fs -d` (no root needed; files keep
//!   their modes and times, and belong to the user who ran it unless
//!   `--root-owned`). Installs e2fsprogs when missing.
//! * `image merge COW OUT`: fold a COW file into a new standalone image
//!   (UML's `uml_moo`); the backing file is only read.
//! * `image debian --out IMG`: a Debian system (bookworm by default) made
//!   by the host's `debootstrap` from Debian's mirror (installed when
//!   missing), with sysvinit as its init, packed by `mke2fs -d`. Needs root
//!   (or passwordless sudo): debootstrap chroots and makes device nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Make an ext4 image of DIR's tree with the host's `mke2fs -d` (no root needed).
    FromDir {
        /// The directory to copy into the image.
        dir: PathBuf,
        /// The image file to create (replaced if it exists).
        #[arg(long, value_name = "IMG")]
        out: PathBuf,
        /// Image size (K/M/G suffix); default: the tree's size plus half, at least 64M.
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Make every file owned by root (uid and gid 0), as a system image wants.
        #[arg(long)]
        root_owned: bool,
    },
    /// Build a Debian image with the host's debootstrap (root or sudo needed).
    Debian {
        /// The image file to create (replaced if it exists).
        #[arg(long, value_name = "IMG", default_value = "target/images/debian.img")]
        out: PathBuf,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// Package mirror.
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Init system: `sysvinit` (sysvinit-core; works without cgroups) or `none`
        /// (boot it with init=/bin/bash).
        #[arg(long, default_value = "sysvinit")]
        init: String,
        /// Extra packages (comma-separated).
        #[arg(long, default_value = "")]
        include: String,
        /// Image size (K/M/G suffix).
        #[arg(long, default_value = "2G")]
        size: String,
    },
    /// Fold COW file COW (UML format) into a new standalone image OUT.
    Merge {
        /// The COW file (its header names the backing image).
        cow: PathBuf,
        /// The image to create (must not exist).
        out: PathBuf,
    },
}

pub fn image(cmd: ImageCmd) -> Result<(), String> {
    match cmd {
        ImageCmd::FromDir { dir, out, size, root_owned } => from_dir(&dir, &out, size.as_deref(), root_owned),
        ImageCmd::Merge { cow, out } => merge(&cow, &out),
        ImageCmd::Debian { out, suite, mirror, init, include, size } => debian(&out, &suite, &mirror, &init, &include, &size),
    }
}

/// Bytes in `dir`'s tree (apparent sizes, plus a block per entry).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            total += md.len().div_ceil(4096) * 4096 + 4096;
            if md.is_dir() {
                todo.push(e.path());
            }
        }
    }
    total
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mul)).filter(|&n| n >= 1 << 20).ok_or_else(|| format!("--size {s}: not a size of at least 1M (K/M/G suffix)"))
}

fn mke2fs() -> Option<PathBuf> {
    ["/usr/sbin/mke2fs", "/sbin/mke2fs"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn from_dir(dir: &Path, out: &Path, size: Option<&str>, root_owned: bool) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let bytes = match size {
        Some(s) => parse_size(s)?,
        None => {
            eprintln!("xtask image: measuring {}", dir.display());
            (tree_bytes(dir) * 3 / 2).max(64 << 20).div_ceil(1 << 20) << 20
        }
    };
    let mk = match mke2fs() {
        Some(m) => m,
        None => {
            eprintln!("xtask image: mke2fs is missing: installing e2fsprogs");
            crate::apt_install("e2fsprogs")?;
            mke2fs().ok_or("e2fsprogs installed, but no mke2fs found")?
        }
    };
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    f.set_len(bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    drop(f);
    eprintln!("xtask image: writing {} ({} MiB ext4) from {}", out.display(), bytes >> 20, dir.display());
    let mut c = Command::new(mk);
    c.args(["-F", "-t", "ext4", "-d"]).arg(dir).arg(out);
    if root_owned {
        c.args(["-E", "root_owner=0:0"]);
    }
    // mke2fs prints its own progress (inode tables, journal, copying).
    let st = c.status().map_err(|e| format!("cannot run mke2fs: {e}"))?;
    if !st.success() {
        let _ = std::fs::remove_file(out);
        return Err(format!("mke2fs -d {} failed ({st})", dir.display()));
    }
    eprintln!("xtask image: done: attach it with `kernel-skas ubd0={}` (or --ubd 0=...) and `mount /dev/ubda /mnt`", out.display());
    Ok(())
}

fn merge(cow: &Path, out: &Path) -> Result<(), String> {
    let mut last = 0u64;
    drivers::block::cow::merge(cow, out, |done, total| {
        let pct = done * 100 / total.max(1);
        if pct >= last + 10 || done == total {
            last = pct;
            eprintln!("xtask image merge: {pct}% ({} of {} MiB)", done >> 20, total >> 20);
        }
    })?;
    eprintln!("xtask image merge: wrote {}", out.display());
    Ok(())
}

/// `cmd` run as root: directly when we are root, else through `sudo -n`.
fn as_root(prog: &str) -> Result<Command, String> {
    let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    if root {
        return Ok(Command::new(prog));
    }
    if Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
        let mut c = Command::new("sudo");
        c.args(["-n", prog]);
        return Ok(c);
    }
    Err("xtask image debian needs root or passwordless sudo (debootstrap chroots and makes device nodes)".into())
}

fn debian(out: &Path, suite: &str, mirror: &str, init: &str, include: &str, size: &str) -> Result<(), String> {
    let bytes = parse_size(size)?;
    if bytes < 512 << 20 {
        return Err(format!("--size {size}: a Debian system needs at least 512M"));
    }
    let mut pkgs: Vec<&str> = match init {
        "sysvinit" => vec!["sysvinit-core", "sysv-rc", "initscripts", "orphan-sysvinit-scripts"],
        "none" => vec![],
        other => return Err(format!("--init {other}: sysvinit or none")),
    };
    pkgs.extend(["netbase", "ifupdown", "iproute2", "procps", "less", "ca-certificates"]);
    pkgs.extend(include.split(',').filter(|p| !p.is_empty()));
    if !Path::new("/usr/sbin/debootstrap").exists() && !Path::new("/usr/bin/debootstrap").exists() {
        eprintln!("xtask image: debootstrap is missing: installing it");
        crate::apt_install("debootstrap")?;
    }
    if mke2fs().is_none() {
        eprintln!("xtask image: mke2fs is missing: installing e2fsprogs");
        crate::apt_install("e2fsprogs")?;
    }
    let dir = out.with_extension("root.tmp");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let cleanup = |dir: &Path| {
        if !dir.exists() {
            return;
        }
        // debootstrap mounts /proc (and maybe /sys) inside the tree and
        // unmounts them when it ends; never remove a tree that still has
        // a mount in it (that would be the host's files).
        let full = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mounted = || {
            std::fs::read_to_string("/proc/self/mounts")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(' ').nth(1).map(String::from))
                .filter(|m| Path::new(m).starts_with(&full))
                .collect::<Vec<_>>()
        };
        for m in mounted().iter().rev() {
            if let Ok(mut c) = as_root("umount") {
                let _ = c.arg(m).status();
            }
        }
        if !mounted().is_empty() {
            eprintln!("xtask image: {} still has mounts in it: left in place", full.display());
            return;
        }
        if let Ok(mut c) = as_root("rm") {
            let _ = c.arg("-rf").arg(&full).status();
        }
    };
    cleanup(&dir);
    eprintln!("xtask image: debootstrap {suite} from {mirror} into {} (a few minutes; debootstrap shows its progress)", dir.display());
    let mut c = as_root("debootstrap")?;
    c.args(["--variant=minbase", &format!("--include={}", pkgs.join(",")), suite]).arg(&dir).arg(mirror);
    let st = c.status().map_err(|e| format!("cannot run debootstrap: {e}"))?;
    if !st.success() {
        cleanup(&dir);
        return Err(format!("debootstrap {suite} failed ({st})"));
    }
    eprintln!("xtask image: configuring (fstab, hostname, resolver, a login on the console, root without a password)");
    let w = |rel: &str, text: &str| -> Result<(), String> {
        let p = dir.join(rel);
        let mut c = as_root("tee")?;
        c.arg(&p).stdout(std::process::Stdio::null()).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("{}: {e}", p.display()))?;
        std::io::Write::write_all(child.stdin.as_mut().ok_or("tee has no stdin")?, text.as_bytes()).map_err(|e| format!("{}: {e}", p.display()))?;
        drop(child.stdin.take());
        let st = child.wait().map_err(|e| format!("{}: {e}", p.display()))?;
        if st.success() { Ok(()) } else { Err(format!("writing {} failed", p.display())) }
    };
    let configure = || -> Result<(), String> {
        w("etc/fstab", "/dev/ubda / ext4 defaults 0 1\n")?;
        w("etc/hostname", "debian\n")?;
        // The user-mode NAT's resolver (eth0=user), not the build host's.
        w("etc/resolv.conf", "nameserver 10.0.2.3\n")?;
        w("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 debian\n")?;
        // eth0 is configured by the kernel itself (eth0=user: 10.0.2.15/24).
        w("etc/network/interfaces", "auto lo\niface lo inet loopback\n")?;
        if init == "sysvinit" {
            // One login on the console instead of six gettys on virtual
            // terminals (agetty does not run on rustuml's console yet;
            // login prompts for the user name itself).
            w(
                "etc/inittab",
                "id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\n~~:S:wait:/sbin/sulogin --force\n\
                 l0:0:wait:/etc/init.d/rc 0\nl1:1:wait:/etc/init.d/rc 1\nl2:2:wait:/etc/init.d/rc 2\n\
                 l3:3:wait:/etc/init.d/rc 3\nl4:4:wait:/etc/init.d/rc 4\nl5:5:wait:/etc/init.d/rc 5\n\
                 l6:6:wait:/etc/init.d/rc 6\nca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now\n\
                 co:2345:respawn:/bin/login\n",
            )?;
        }
        let mut c = as_root("chroot")?;
        let st = c.arg(&dir).args(["passwd", "-d", "root"]).stdout(std::process::Stdio::null()).status().map_err(|e| format!("chroot passwd: {e}"))?;
        if !st.success() {
            return Err("chroot passwd -d root failed".into());
        }
        Ok(())
    };
    if let Err(e) = configure() {
        cleanup(&dir);
        return Err(e);
    }
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    f.set_len(bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    drop(f);
    eprintln!("xtask image: writing {} ({} MiB ext4)", out.display(), bytes >> 20);
    let mk = mke2fs().ok_or("no mke2fs")?;
    let mut c = as_root(&mk.to_string_lossy())?;
    c.args(["-F", "-q", "-t", "ext4", "-L", "debian", "-d"]).arg(&dir).arg(out);
    let st = c.status().map_err(|e| format!("cannot run mke2fs: {e}"))?;
    cleanup(&dir);
    if !st.success() {
        let _ = std::fs::remove_file(out);
        return Err(format!("mke2fs -d failed ({st})"));
    }
    eprintln!(
        "xtask image: done. Boot it: target/release/kernel-skas mem=512M ubd0={}.cow,{} root=/dev/ubda eth0=user{}",
        out.display(),
        out.display(),
        if init == "none" { " init=/bin/bash" } else { "" }
    );
    Ok(())
}
