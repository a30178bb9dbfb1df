//! Path walking: `.`, `..`, symlinks (ELOOP after 40), canonical locations;
//! and how names that are not UTF-8 are carried in the kernel's strings.

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use super::inode::{InodeRef, Kind};
use crate::Errno;

/// Longest path accepted (including the NUL), as Linux's `PATH_MAX`.
pub const PATH_MAX: usize = 4096;
/// Longest file name component.
pub const NAME_MAX: usize = 255;
/// Symlinks followed in one walk before `ELOOP`.
const MAX_SYMLINKS: u32 = 40;

/// First of the 256 code points (U+10FF00..=U+10FFFF, private use) that
/// stand for single raw bytes in kernel strings.
const RAW_BASE: u32 = 0x10_FF00;

/// A guest name or path (any bytes but NUL) as a kernel string, losslessly:
/// valid UTF-8 stays as it is, and every byte that is not part of valid
/// UTF-8 (or that encodes one of the 256 escape code points themselves)
/// becomes the code point `U+10FF00 + byte`. [`name_to_bytes`] undoes it,
/// so two different byte strings never meet as one kernel string.
pub fn name_from_bytes(b: &[u8]) -> String {
    if let Ok(s) = core::str::from_utf8(b) {
        if !s.chars().any(|c| c as u32 >= RAW_BASE) {
            return String::from(s);
        }
    }
    let mut out = String::with_capacity(b.len());
    let raw = |out: &mut String, byte: u8| out.push(char::from_u32(RAW_BASE + byte as u32).unwrap_or('?'));
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c as u32 >= RAW_BASE {
                let mut tmp = [0u8; 4];
                for &x in c.encode_utf8(&mut tmp).as_bytes() {
                    raw(&mut out, x);
                }
            } else {
                out.push(c);
            }
        }
        for &x in chunk.invalid() {
            raw(&mut out, x);
        }
    }
    out
}

/// The guest bytes a kernel string stands for (see [`name_from_bytes`]).
pub fn name_to_bytes(s: &str) -> Cow<'_, [u8]> {
    if !s.chars().any(|c| c as u32 >= RAW_BASE) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = alloc::vec::Vec::with_capacity(s.len());
    for c in s.chars() {
        if c as u32 >= RAW_BASE {
            out.push((c as u32 - RAW_BASE) as u8);
        } else {
            let mut tmp = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// Length in guest bytes of a kernel string (escapes count as one byte).
pub fn raw_len(s: &str) -> usize {
    s.len() - 3 * s.chars().filter(|&c| c as u32 >= RAW_BASE).count()
}

/// A resolved location: the chain of directories from the root, so `..` and
/// `getcwd` need no parent pointers. `stack[0]` is the root (empty name).
#[derive(Clone)]
pub struct Loc {
    /// (name, inode) from the root down.
    pub stack: Vec<(String, InodeRef)>,
}

impl Loc {
    /// The root.
    pub fn root(root: InodeRef) -> Loc {
        Loc { stack: alloc::vec![(String::new(), root)] }
    }
    /// The inode this location names.
    pub fn inode(&self) -> &InodeRef {
        // The stack is never empty: it always starts with the root.
        &self.stack[self.stack.len() - 1].1
    }
    /// The canonical absolute path.
    pub fn path(&self) -> String {
        if self.stack.len() <= 1 {
            return String::from("/");
        }
        let mut s = String::new();
        for (name, _) in &self.stack[1..] {
            s.push('/');
            s.push_str(name);
        }
        s
    }
}

/// How the last component is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow a symlink in the last component.
    Yes,
    /// Return the symlink itself (lstat, readlink, O_NOFOLLOW).
    No,
}

fn components(path: &str) -> Result<VecDeque<String>, Errno> {
    let mut q = VecDeque::new();
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if raw_len(c) > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        q.push_back(String::from(c));
    }
    Ok(q)
}

/// Resolve `path` relative to `start` (ignored for absolute paths).
pub fn walk(root: &InodeRef, start: &Loc, path: &str, follow: Follow) -> Result<Loc, Errno> {
    walk_with(root, start, path, follow, &mut |_, _| Ok(()))
}

/// Step onto whatever is mounted on `node` (mounts stack).
pub fn cross_mounts(mut node: InodeRef) -> InodeRef {
    loop {
        let next = node.mounted.borrow().clone();
        match next {
            Some(m) => node = m,
            None => return node,
        }
    }
}

/// [`walk`], calling `enter(dir, name)` on every directory before looking
/// `name` up in it: the permission check (search access) and the hook that lets
/// generated file systems (procfs) fill a directory on demand.
pub fn walk_with(
    root: &InodeRef,
    start: &Loc,
    path: &str,
    follow: Follow,
    enter: &mut dyn FnMut(&InodeRef, &str) -> Result<(), Errno>,
) -> Result<Loc, Errno> {
    walk_magic(root, start, path, follow, enter, &|_| None)
}

/// [`walk_with`], where a symlink for which `magic` returns an inode is not
/// followed by its text but jumps straight to that inode (the procfs
/// `fd/N` links, which name the open file itself, pipes included).
pub fn walk_magic(
    root: &InodeRef,
    start: &Loc,
    path: &str,
    follow: Follow,
    enter: &mut dyn FnMut(&InodeRef, &str) -> Result<(), Errno>,
    magic: &dyn Fn(&InodeRef) -> Option<InodeRef>,
) -> Result<Loc, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if raw_len(path) >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut loc = if path.starts_with('/') { Loc::root(root.clone()) } else { start.clone() };
    // A trailing `/`, `/.` or `/..` names a directory, through a final symlink.
    let must_be_dir = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..") || path == "." || path == "..";
    let mut queue = components(path)?;
    let mut links = 0u32;
    while let Some(c) = queue.pop_front() {
        let cur = loc.inode().clone();
        if !cur.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        enter(&cur, &c)?;
        if c == ".." {
            // The stack holds the mount points too, so `..` from a mounted
            // root goes to the directory above the mount point.
            if loc.stack.len() > 1 {
                loc.stack.pop();
            }
            continue;
        }
        let child = cross_mounts(cur.lookup(&c)?.ok_or(Errno::ENOENT)?);
        let is_last = queue.is_empty();
        if let Kind::Symlink(target) = &child.kind {
            if !is_last || follow == Follow::Yes || must_be_dir {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                if let Some(target) = magic(&child) {
                    loc.stack.push((c, target));
                    continue;
                }
                let mut t = components(target)?;
                while let Some(x) = t.pop_back() {
                    queue.push_front(x);
                }
                if target.starts_with('/') {
                    loc = Loc::root(root.clone());
                }
                continue;
            }
        }
        loc.stack.push((c, child));
    }
    if must_be_dir && !loc.inode().is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(loc)
}

/// Resolve all but the last component of `path`: the parent directory and
/// the final name (for create, unlink, mkdir). `path` must not end in `..`/`.`.
pub fn walk_parent(root: &InodeRef, start: &Loc, path: &str) -> Result<(Loc, String), Errno> {
    walk_parent_with(root, start, path, &mut |_, _| Ok(()))
}

/// [`walk_parent`] with an `enter` hook as [`walk_with`]. The hook also runs
/// on the parent itself (it is searched for the last name).
pub fn walk_parent_with(
    root: &InodeRef,
    start: &Loc,
    path: &str,
    enter: &mut dyn FnMut(&InodeRef, &str) -> Result<(), Errno>,
) -> Result<(Loc, String), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if raw_len(path) >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let trimmed = path.trim_end_matches('/');
    let (dir, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        // "/" or "x/.": the caller sees an existing directory.
        return Err(Errno::EEXIST);
    }
    if raw_len(name) > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let parent = if dir.is_empty() { start.clone() } else { walk_with(root, start, dir, Follow::Yes, enter)? };
    if !parent.inode().is_dir() {
        return Err(Errno::ENOTDIR);
    }
    enter(parent.inode(), name)?;
    Ok((parent, String::from(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inode::Fs;
    use alloc::sync::Arc;

    #[test]
    fn dots_and_symlinks() {
        let mut fs = Fs::new();
        let a = fs.new_dir(0o755, 0);
        fs.root.insert("a", a.clone()).unwrap();
        let f = fs.new_inode(Kind::File(fs.new_file_data(crate::fs::inode::ROOT_SB)), 0o644, 0);
        a.insert("f", f.clone()).unwrap();
        let l = fs.new_inode(Kind::Symlink("/a/f".into()), 0o777, 0);
        a.insert("l", l.clone()).unwrap();
        let loop1 = fs.new_inode(Kind::Symlink("loop".into()), 0o777, 0);
        fs.root.insert("loop", loop1).unwrap();
        let root = fs.root.clone();
        let r = Loc::root(root.clone());
        assert!(Arc::ptr_eq(walk(&root, &r, "/a/./../a/f", Follow::Yes).unwrap().inode(), &f));
        assert!(Arc::ptr_eq(walk(&root, &r, "a/l", Follow::Yes).unwrap().inode(), &f));
        assert!(Arc::ptr_eq(walk(&root, &r, "a/l", Follow::No).unwrap().inode(), &l));
        assert_eq!(walk(&root, &r, "/../../a", Follow::Yes).unwrap().path(), "/a");
        assert_eq!(walk(&root, &r, "loop", Follow::Yes).err(), Some(Errno::ELOOP));
        assert_eq!(walk(&root, &r, "a/f/x", Follow::Yes).err(), Some(Errno::ENOTDIR));
        assert_eq!(walk(&root, &r, "a/f/", Follow::Yes).err(), Some(Errno::ENOTDIR));
        assert_eq!(walk(&root, &r, "nope", Follow::Yes).err(), Some(Errno::ENOENT));
        assert_eq!(walk(&root, &r, "", Follow::Yes).err(), Some(Errno::ENOENT));
        let ld = fs.new_inode(Kind::Symlink("/a".into()), 0o777, 0);
        fs.root.insert("ld", ld.clone()).unwrap();
        assert!(Arc::ptr_eq(walk(&root, &r, "ld", Follow::No).unwrap().inode(), &ld));
        assert!(Arc::ptr_eq(walk(&root, &r, "ld/.", Follow::No).unwrap().inode(), &a), "trailing /. follows the link");
        assert!(Arc::ptr_eq(walk(&root, &r, "ld/", Follow::No).unwrap().inode(), &a));
        assert_eq!(walk(&root, &r, "a/f/.", Follow::Yes).err(), Some(Errno::ENOTDIR));
        let (p, n) = walk_parent(&root, &r, "/a/new").unwrap();
        assert_eq!((p.path().as_str(), n.as_str()), ("/a", "new"));
    }

    #[test]
    fn any_bytes_survive_the_string_round_trip() {
        let all: alloc::vec::Vec<u8> = (1u8..=255).collect();
        for b in [&all[..], b"plain", b"\xff\xfe", "caf\u{e9}".as_bytes(), "\u{10ff41}".as_bytes(), b"\xf4\x8f\xbd"] {
            let s = name_from_bytes(b);
            assert_eq!(&*name_to_bytes(&s), b, "{s:?}");
            assert_eq!(raw_len(&s), b.len());
        }
        // An escape code point in valid UTF-8 is itself escaped: no collision.
        assert_ne!(name_from_bytes("\u{10ff41}".as_bytes()), name_from_bytes(b"A"));
        assert_ne!(name_from_bytes("\u{10ff41}".as_bytes()), name_from_bytes(b"\x41"));
        assert_eq!(name_from_bytes(b"\x41"), "A");
    }
}
