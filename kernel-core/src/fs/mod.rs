//! A minimal VFS: an in-memory ramfs tree filled from the initramfs, path
//! walking, open file descriptions and fd tables, and a tiny devfs at `/dev`.
//!
//! The kernel is single-threaded, so shared state uses `RefCell`/`Cell`;
//! inodes are `Arc`'d because the MM takes file backings as
//! `Arc<dyn MappedFile>`.

pub mod cpio;
pub mod file;
pub mod hostfs;
pub mod inode;
pub mod mount;
pub mod path;
pub mod pipe;
pub mod perm;
pub mod procfs;

pub use file::{FdTable, FileRef, OpenFile};
pub use inode::{Device, Fs, Inode, InodeRef, Kind};
pub use mount::{FsType, Mount};
pub use path::Loc;
pub use perm::Cred;
