//! Open file descriptions (shared by `dup` and `fork`) and fd tables.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::inode::{InodeRef, Kind};
use crate::Errno;

/// An open file description: inode, offset and status flags.
pub struct OpenFile {
    /// What is open.
    pub inode: InodeRef,
    /// The file offset (for directories: the index of the next entry).
    pub offset: Cell<u64>,
    /// `O_*` status flags (access mode, `O_APPEND`, `O_NONBLOCK`, ...).
    pub flags: Cell<u32>,
    /// The path it was opened by (for traces and `/proc`-like uses).
    pub path: String,
    /// For a directory: where it is, so `*at` calls relative to it start
    /// from the directory itself (not a new walk of `path`, which costs a
    /// host lookup per component on hostfs and is wrong once it moved).
    pub loc: RefCell<Option<super::path::Loc>>,
}

impl Drop for OpenFile {
    /// The last reference to a pipe end closes it (readers see EOF, writers EPIPE).
    fn drop(&mut self) {
        if let Kind::Special(s) = &self.inode.kind {
            s.closed(self.readable(), self.writable());
        }
    }
}

/// A shared open file description.
pub type FileRef = Rc<OpenFile>;

impl OpenFile {
    /// A new description at offset 0.
    pub fn new(inode: InodeRef, flags: u32, path: String) -> FileRef {
        let f = OpenFile { inode, offset: Cell::new(0), flags: Cell::new(flags), path, loc: RefCell::new(None) };
        if let Kind::Special(s) = &f.inode.kind {
            s.opened(f.readable(), f.writable());
        }
        Rc::new(f)
    }
    /// Opened for reading?
    pub fn readable(&self) -> bool {
        let acc = self.flags.get() & linux_raw_sys::general::O_ACCMODE;
        acc == linux_raw_sys::general::O_RDONLY || acc == linux_raw_sys::general::O_RDWR
    }
    /// Opened for writing?
    pub fn writable(&self) -> bool {
        let acc = self.flags.get() & linux_raw_sys::general::O_ACCMODE;
        acc == linux_raw_sys::general::O_WRONLY || acc == linux_raw_sys::general::O_RDWR
    }
}

/// One fd slot.
#[derive(Clone)]
pub struct FdEntry {
    /// The description.
    pub file: FileRef,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// A process's file descriptor table.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable { slots: Vec::new() }
    }
    /// The entry at `fd`.
    pub fn get(&self, fd: u64) -> Result<&FdEntry, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .ok_or(Errno::EBADF)
    }
    /// The entry at `fd`, mutably.
    pub fn get_mut(&mut self, fd: u64) -> Result<&mut FdEntry, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)
    }
    /// The description at `fd`.
    pub fn file(&self, fd: u64) -> Result<FileRef, Errno> {
        Ok(self.get(fd)?.file.clone())
    }
    /// Install at the lowest free fd `>= min`, below `limit`.
    pub fn alloc_from(&mut self, min: usize, file: FileRef, cloexec: bool, limit: usize) -> Result<usize, Errno> {
        let mut i = min;
        while i < self.slots.len() && self.slots[i].is_some() {
            i += 1;
        }
        if i >= limit {
            return Err(Errno::EMFILE);
        }
        self.set(i, file, cloexec);
        Ok(i)
    }
    /// Install at exactly `fd` (closing what was there). `fd` must be below the limit.
    pub fn set(&mut self, fd: usize, file: FileRef, cloexec: bool) {
        if self.slots.len() <= fd {
            self.slots.resize(fd + 1, None);
        }
        self.slots[fd] = Some(FdEntry { file, cloexec });
    }
    /// Close `fd`.
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        match self.slots.get_mut(i) {
            Some(s @ Some(_)) => {
                *s = None;
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }
    /// Close every `O_CLOEXEC` fd (at exec).
    pub fn close_on_exec(&mut self) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|e| e.cloexec) {
                *s = None;
            }
        }
    }
    /// Close everything (at exit).
    pub fn clear(&mut self) {
        self.slots.clear();
    }
    /// Open fds, in order.
    pub fn fds(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i)
    }
}
