//! Permission checks: owner/group/other bits; root passes everything
//! except execute of a file with no execute bit at all.

use alloc::vec::Vec;

use super::inode::Inode;
use crate::Errno;

/// Read access (`MAY_READ`).
pub const MAY_READ: u32 = 4;
/// Write access.
pub const MAY_WRITE: u32 = 2;
/// Execute (files) or search (directories) access.
pub const MAY_EXEC: u32 = 1;

/// The credentials file access is checked against (fsuid/fsgid and groups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    /// File-system user id.
    pub uid: u32,
    /// File-system group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Cred {
    /// Root.
    pub fn root() -> Cred {
        Cred::default()
    }
    /// Is this the superuser (`CAP_DAC_OVERRIDE`)?
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
    /// Member of group `gid`?
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
    /// May this caller change `inode`'s metadata (chmod, utimes to a given
    /// time): the owner or root.
    pub fn owns(&self, inode: &Inode) -> bool {
        self.is_root() || inode.meta.borrow().uid == self.uid
    }
}

/// Linux's `generic_permission`: `mask` is a combination of `MAY_*`.
pub fn permission(inode: &Inode, cred: &Cred, mask: u32) -> Result<(), Errno> {
    let m = *inode.meta.borrow();
    if cred.is_root() {
        // Root reads and writes anything; execute needs some x bit on files.
        if mask & MAY_EXEC != 0 && !inode.is_dir() && m.perm & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        return Ok(());
    }
    let bits = if m.uid == cred.uid {
        (m.perm >> 6) & 7
    } else if cred.in_group(m.gid) {
        (m.perm >> 3) & 7
    } else {
        m.perm & 7
    };
    if bits & mask == mask {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// May `cred` remove or rename entry `victim` from directory `dir`? (write
/// and search on the directory, plus the sticky-bit rule.)
pub fn may_delete(dir: &Inode, victim: &Inode, cred: &Cred) -> Result<(), Errno> {
    permission(dir, cred, MAY_WRITE | MAY_EXEC)?;
    let dm = *dir.meta.borrow();
    if dm.perm & 0o1000 != 0 && !cred.is_root() && victim.meta.borrow().uid != cred.uid && dm.uid != cred.uid {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// The file-system credentials of task `t`: Linux checks file access with
/// the fsuid/fsgid (which follow the effective ids) and the groups.
pub fn task_cred<S: hal::AddressSpace>(t: &crate::task::Task<S>) -> Cred {
    Cred { uid: t.cred.fsuid, gid: t.cred.fsgid, groups: t.cred.groups.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inode::{Fs, Kind};

    #[test]
    fn owner_group_other_and_root() {
        let mut fs = Fs::new();
        let f = fs.new_inode(Kind::File(fs.new_file_data(crate::fs::inode::ROOT_SB)), 0o640, 0);
        {
            let mut m = f.meta.borrow_mut();
            m.uid = 1000;
            m.gid = 100;
        }
        let owner = Cred { uid: 1000, gid: 1000, groups: alloc::vec![] };
        let member = Cred { uid: 1001, gid: 5, groups: alloc::vec![100] };
        let other = Cred { uid: 1002, gid: 1002, groups: alloc::vec![] };
        assert_eq!(permission(&f, &owner, MAY_READ | MAY_WRITE), Ok(()));
        assert_eq!(permission(&f, &owner, MAY_EXEC), Err(Errno::EACCES));
        assert_eq!(permission(&f, &member, MAY_READ), Ok(()));
        assert_eq!(permission(&f, &member, MAY_WRITE), Err(Errno::EACCES));
        assert_eq!(permission(&f, &other, MAY_READ), Err(Errno::EACCES));
        // Root bypasses read/write, but exec needs some x bit.
        assert_eq!(permission(&f, &Cred::root(), MAY_READ | MAY_WRITE), Ok(()));
        assert_eq!(permission(&f, &Cred::root(), MAY_EXEC), Err(Errno::EACCES));
        f.meta.borrow_mut().perm = 0o001;
        assert_eq!(permission(&f, &Cred::root(), MAY_EXEC), Ok(()));
        assert_eq!(permission(&f, &owner, MAY_EXEC), Err(Errno::EACCES), "owner class decides, not other");
        // Sticky directories: only the owner of the entry or the directory deletes.
        let d = fs.new_dir(0o1777, 0);
        assert_eq!(may_delete(&d, &f, &other), Err(Errno::EPERM));
        assert_eq!(may_delete(&d, &f, &owner), Ok(()));
        let d2 = fs.new_dir(0o755, 0);
        assert_eq!(may_delete(&d2, &f, &owner), Err(Errno::EACCES));
    }
}
