//! Path walking: `.`, `..`, symlinks (ELOOP after 40), canonical locations.

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
        if c.len() > NAME_MAX {
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
    if path.len() >= PATH_MAX {
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
    if path.len() >= PATH_MAX {
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
    if name.len() > NAME_MAX {
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
}
