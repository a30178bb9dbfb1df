//! Directory listings for `getdents64`: `.` and `..`, then the entries,
//! from the directory's map or, for a hostfs directory, from the host (so
//! listing a directory of any size creates no inodes), or merged for an
//! overlay directory.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use linux_raw_sys::general as g;

use super::inode::{Inode, InodeRef};
use crate::Errno;

/// The `linux_dirent64` record length for a name of `len` bytes.
pub fn reclen(len: usize) -> usize {
    (19 + len + 1 + 7) & !7
}

/// The entries of `dir` from position `start` (0 is `.`, 1 is `..`) whose
/// records fit in `budget` bytes (at least one, so a too-small buffer can
/// be told apart from the end): (name, inode number, `d_type`). Entries
/// past what fits are not read, so a host listing is read in step with
/// what the guest receives.
pub fn entries(dir: &Inode, children: &RefCell<BTreeMap<String, InodeRef>>, start: usize, budget: usize) -> Result<Vec<(String, u64, u8)>, Errno> {
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut fits = |out: &Vec<(String, u64, u8)>, name: &str| {
        let r = reclen(super::path::raw_len(name));
        if !out.is_empty() && used + r > budget {
            return false;
        }
        used += r;
        true
    };
    let mut i = start;
    while i < 2 {
        let name = if i == 0 { "." } else { ".." };
        if !fits(&out, name) {
            return Ok(out);
        }
        out.push((String::from(name), dir.ino, g::DT_DIR as u8));
        i += 1;
    }
    if dir.fsdata.is_some() {
        let overlay = super::overlay::is_overlay_dir(dir);
        let at = |k: usize| if overlay { super::overlay::readdir_at(dir, k) } else { super::hostfs::readdir_at(dir, k) };
        // Read by index: the listing is kept until its end is read.
        while let Some(e) = at(i - 2)? {
            if !fits(&out, &e.0) {
                break;
            }
            out.push(e);
            i += 1;
        }
        return Ok(out);
    }
    for (n, c) in children.borrow().iter().skip(i - 2) {
        if !fits(&out, n) {
            break;
        }
        out.push((n.clone(), c.ino, c.dtype()));
    }
    Ok(out)
}
