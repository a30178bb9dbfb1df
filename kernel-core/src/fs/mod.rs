//! The VFS: inodes (which double as dentries: a directory maps names to
//! child inodes, so lookups are cached by construction), a mount table
//! crossed by the path walk, open file descriptions and fd tables, and the
//! file systems: the rootfs/tmpfs tree (filled from the initramfs),
//! devtmpfs at `/dev`, procfs at `/proc` (generated from kernel state),
//! a small sysfs at `/sys`, and hostfs (a host directory through
//! [`hal::HostDir`]).
//!
//! The kernel is single-threaded, so shared state uses `RefCell`/`Cell`;
//! inodes are `Arc`'d because the MM takes file backings as
//! `Arc<dyn MappedFile>`.

pub mod cpio;
pub mod file;
pub mod hostfs;
pub mod inode;
pub mod mount;
pub mod overlay;
pub mod path;
pub mod pipe;
pub mod perm;
pub mod procfs;
pub mod readdir;

pub use file::{FdTable, FileRef, OpenFile};
pub use inode::{Device, Fs, Inode, InodeRef, Kind};
pub use mount::{FsType, Mount};
pub use path::Loc;
pub use perm::Cred;
