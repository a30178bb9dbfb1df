//! `cargo xtask image`: disk images for `--ubd` / `ubdN=`.
//!
//! * `image from-dir DIR --out IMG [--size SIZE]`: an ext4 image holding
//!   DIR's tree, made by the host's `mke2fs -d` (no root needed; files keep
//!   their modes and times, and belong to the user who ran it unless
//!   `--root-owned`). Installs e2fsprogs when missing.
//! * `image merge COW OUT`: fold a COW file into a new standalone image
//!   (UML's `uml_moo`); the backing file is only read.

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
