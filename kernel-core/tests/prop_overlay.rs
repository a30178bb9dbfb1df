//! Differential property of the overlay: random open/write/read/truncate/
//! chmod/stat/unlink/mkdir/rmdir/rename/link/getdents sequences run twice,
//! once on an in-memory `/w` that starts with a small tree, once on an overlay
//! `/w` whose read-only lower layer (a scripted host directory) holds the
//! same tree. Every result (return value, bytes read, mode and size, the
//! names listed) must be the same: the overlay behaves as one writable file
//! system, whatever was copied up, whited out or made opaque on the way.

#[macro_use]
mod common;


use common::model::*;
use common::*;
use hal::{HostAttr, HostDir, HostDirEntry, HostError, HostFileKind, HostSetAttr};
use kernel_core::kernel::{boot_with, Devices};
use linux_raw_sys::general as g;
use proptest::prelude::*;

const SCRATCH: u64 = BASE + SCRATCH_OFF;
const WBUF: u64 = SCRATCH + 0x100;
const RBUF: u64 = SCRATCH + 0x400;
const STATBUF: u64 = SCRATCH + 0x800;

/// 0 /w/a, 1 /w/b, 2..5 /w/a/{x,y,z}, 5..8 /w/b/{x,y,z}, 8 /w/a/d, 9 /w/a/d/w.
const PATHS: [&str; 10] = ["/w/a", "/w/b", "/w/a/x", "/w/a/y", "/w/a/z", "/w/b/x", "/w/b/y", "/w/b/z", "/w/a/d", "/w/a/d/w"];

/// The starting tree (relative to /w): directories and files with contents.
const TREE: [(&str, Option<&str>); 6] = [
    ("a", None),
    ("b", None),
    ("a/d", None),
    ("a/x", Some("lower a/x")),
    ("b/z", Some("lower b/z, a bit longer")),
    ("a/d/w", Some("w")),
];

fn path_addr(p: usize) -> u64 {
    BASE + DATA_OFF + 32 * p as u64
}

/// A read-only host directory holding [`TREE`]; handle = node index + 1.
struct Tree {
    nodes: Vec<(usize, String, Option<Vec<u8>>)>,
}

impl Tree {
    fn new() -> Tree {
        let mut nodes = vec![(0, String::new(), None)];
        for (p, data) in TREE {
            let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
            let parent = if dir.is_empty() { 0 } else { nodes.iter().position(|n| n.1 == dir).unwrap() };
            nodes.push((parent, p.to_string(), data.map(|d| d.as_bytes().to_vec())));
        }
        Tree { nodes }
    }
    fn attr(&self, h: u64) -> Result<HostAttr, HostError> {
        let (_, _, data) = self.nodes.get(h as usize - 1).ok_or(HostError::Stale)?;
        let (kind, perm, size) = match data {
            Some(d) => (HostFileKind::File, 0o644, d.len() as u64),
            None => (HostFileKind::Dir, 0o755, 0),
        };
        Ok(HostAttr { kind, perm, size, blocks: 0, nlink: 1, ino: h + 1000, uid: 0, gid: 0, rdev: 0, mtime_ns: 0, atime_ns: 0, ctime_ns: 0 })
    }
    fn child(&self, dir: u64, name: &[u8]) -> Option<u64> {
        let d = dir as usize - 1;
        let name = std::str::from_utf8(name).ok()?;
        self.nodes.iter().position(|(p, full, _)| *p == d && full.rsplit('/').next() == Some(name) && !full.is_empty()).map(|i| i as u64 + 1)
    }
}

impl HostDir for Tree {
    fn root(&self) -> u64 {
        1
    }
    fn readonly(&self) -> bool {
        true
    }
    fn lookup(&mut self, dir: u64, name: &[u8]) -> Result<(u64, HostAttr), HostError> {
        let h = self.child(dir, name).ok_or(HostError::NotFound)?;
        Ok((h, self.attr(h)?))
    }
    fn revalidate(&mut self, dir: u64, name: &[u8], handle: u64) -> Result<HostAttr, HostError> {
        match self.child(dir, name) {
            Some(h) if h == handle => self.attr(h),
            Some(_) => Err(HostError::Stale),
            None => Err(HostError::NotFound),
        }
    }
    fn getattr(&mut self, handle: u64) -> Result<HostAttr, HostError> {
        self.attr(handle)
    }
    fn read(&mut self, handle: u64, off: u64, buf: &mut [u8]) -> Result<usize, HostError> {
        let d = self.nodes[handle as usize - 1].2.as_ref().ok_or(HostError::IsDir)?;
        let off = (off as usize).min(d.len());
        let n = buf.len().min(d.len() - off);
        buf[..n].copy_from_slice(&d[off..off + n]);
        Ok(n)
    }
    fn readdir(&mut self, dir: u64, index: usize, name: &mut [u8]) -> Result<Option<HostDirEntry>, HostError> {
        let d = dir as usize - 1;
        let kids: Vec<usize> = (1..self.nodes.len()).filter(|&i| self.nodes[i].0 == d).collect();
        let Some(&i) = kids.get(index) else { return Ok(None) };
        let n = self.nodes[i].1.rsplit('/').next().unwrap_or("");
        name[..n.len()].copy_from_slice(n.as_bytes());
        let kind = if self.nodes[i].2.is_some() { HostFileKind::File } else { HostFileKind::Dir };
        Ok(Some(HostDirEntry { name_len: n.len(), kind, ino: i as u64 + 1001 }))
    }
    read_only_host_dir!();
    fn release(&mut self, _: u64) {}
}

#[derive(Debug, Clone)]
enum Op {
    Open { p: usize, acc: u32, creat: bool, trunc: bool, append: bool },
    Close(i32),
    Write(i32, Vec<u8>),
    Read(i32, usize),
    Truncate(usize, u64),
    Chmod(usize, u32),
    Stat(usize),
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
    Rename(usize, usize),
    Link(usize, usize),
    Getdents(usize),
}

fn path() -> impl Strategy<Value = usize> {
    0usize..PATHS.len()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), prop_oneof![Just(g::O_RDONLY), Just(g::O_WRONLY), Just(g::O_RDWR)], any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(p, acc, creat, trunc, append)| Op::Open { p, acc, creat, trunc, append }),
        2 => (3i32..7).prop_map(Op::Close),
        3 => (3i32..7, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(f, d)| Op::Write(f, d)),
        3 => (3i32..7, 0usize..40).prop_map(|(f, n)| Op::Read(f, n)),
        1 => (path(), 0u64..30).prop_map(|(p, n)| Op::Truncate(p, n)),
        1 => (path(), prop_oneof![Just(0o600u32), Just(0o755), Just(0o444)]).prop_map(|(p, m)| Op::Chmod(p, m)),
        2 => path().prop_map(Op::Stat),
        2 => path().prop_map(Op::Unlink),
        1 => path().prop_map(Op::Mkdir),
        1 => path().prop_map(Op::Rmdir),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => prop_oneof![path(), Just(usize::MAX)].prop_map(Op::Getdents),
    ]
}

/// What one step observed, made comparable across the two file systems.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ret(i64, Vec<u8>),
    /// stat: result, mode, size.
    Stat(i64, u32, u64),
    /// getdents: result sign, sorted names.
    Names(bool, Vec<Vec<u8>>),
}

fn run_ops(ops: &[Op], overlay: bool) -> Vec<Seen> {
    let log = Log::default();
    let data = path_table(&PATHS, b"/w");
    let mut insns = Vec::new();
    let mut kinds = Vec::new();
    for op in ops {
        let nothing = || record(&log, 0, 0);
        let (call, rec, kind) = match *op {
            Op::Open { p, acc, creat, trunc, append } => {
                let fl = acc | if creat { g::O_CREAT } else { 0 } | if trunc { g::O_TRUNC } else { 0 } | if append { g::O_APPEND } else { 0 };
                (sys(g::__NR_open, &[path_addr(p), fl as u64, 0o644]), nothing(), 0)
            }
            Op::Close(f) => (sys(g::__NR_close, &[f as u64]), nothing(), 0),
            Op::Write(f, ref d) => {
                insns.push(store(|_| WBUF, d.clone()));
                (sys(g::__NR_write, &[f as u64, WBUF, d.len() as u64]), nothing(), 0)
            }
            Op::Read(f, n) => (sys(g::__NR_read, &[f as u64, RBUF, n as u64]), record(&log, RBUF, n), 0),
            Op::Truncate(p, n) => (sys(g::__NR_truncate, &[path_addr(p), n]), nothing(), 0),
            Op::Chmod(p, m) => (sys(g::__NR_chmod, &[path_addr(p), m as u64]), nothing(), 0),
            Op::Stat(p) => (sys(g::__NR_stat, &[path_addr(p), STATBUF]), record(&log, STATBUF, 144), 1),
            Op::Unlink(p) => (sys(g::__NR_unlink, &[path_addr(p)]), nothing(), 0),
            Op::Mkdir(p) => (sys(g::__NR_mkdir, &[path_addr(p), 0o755]), nothing(), 0),
            Op::Rmdir(p) => (sys(g::__NR_rmdir, &[path_addr(p)]), nothing(), 0),
            Op::Rename(a, b) => (sys(g::__NR_rename, &[path_addr(a), path_addr(b)]), nothing(), 0),
            Op::Link(a, b) => (sys(g::__NR_link, &[path_addr(a), path_addr(b)]), nothing(), 0),
            Op::Getdents(p) => {
                let a = if p == usize::MAX { path_addr(PATHS.len()) } else { path_addr(p) };
                insns.push(sys(g::__NR_open, &[a, (g::O_RDONLY | g::O_DIRECTORY) as u64, 0]));
                insns.push(exec_op(|c| c.regs.rbx = c.regs.rax));
                insns.push(sys_with(|c| (g::__NR_getdents64, [c.regs.rbx, RBUF, 1024, 0, 0, 0])));
                insns.push(record(&log, RBUF, 1024));
                (sys_with(|c| (g::__NR_close, [c.regs.rbx, 0, 0, 0, 0, 0])), nothing(), 2)
            }
        };
        insns.push(call);
        insns.push(rec);
        kinds.push(kind);
    }
    insns.push(sys(g::__NR_exit_group, &[0]));
    let (mut hal, _) = machine(vec![Program { base: BASE, insns }]);
    hal.space_limit = Some(64);
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![("init".into(), REG, elf(BASE, &data)), ("w".into(), DIR, vec![])];
    let mut devices = Devices::default();
    if overlay {
        devices.overlays.push(("/w".into(), Box::new(Tree::new())));
    } else {
        for (p, d) in TREE {
            match d {
                Some(d) => files.push((format!("w/{p}"), 0o100644, d.as_bytes().to_vec())),
                None => files.push((format!("w/{p}"), DIR, vec![])),
            }
        }
    }
    let entries: Vec<(&str, u32, Vec<u8>)> = files.iter().map(|(p, m, d)| (p.as_str(), *m, d.clone())).collect();
    let cfg = config("/init", &["init"], &entries);
    let status = boot_with(&mut hal, cfg, devices).expect("boot");
    assert_eq!(status, 0, "log: {:?}", hal.log);
    let recs = log.borrow().clone();
    let mut out = Vec::new();
    let mut it = recs.into_iter();
    for k in kinds {
        match k {
            1 => {
                let r = it.next().unwrap();
                let m = &r.mem;
                out.push(Seen::Stat(r.ret, u32::from_le_bytes(m[24..28].try_into().unwrap()), u64::from_le_bytes(m[48..56].try_into().unwrap())));
            }
            2 => {
                let r = it.next().unwrap();
                let mut names = Vec::new();
                let mut off = 0usize;
                while r.ret > 0 && off + 19 < r.ret as usize {
                    let reclen = u16::from_le_bytes([r.mem[off + 16], r.mem[off + 17]]) as usize;
                    let name: Vec<u8> = r.mem[off + 19..off + reclen].iter().copied().take_while(|&b| b != 0).collect();
                    names.push(name);
                    off += reclen;
                }
                names.sort();
                out.push(Seen::Names(r.ret >= 0, names));
                let _close = it.next();
            }
            _ => {
                // Only the bytes a read returned mean anything.
                let r = it.next().unwrap();
                let n = r.ret.clamp(0, r.mem.len() as i64) as usize;
                out.push(Seen::Ret(r.ret, r.mem[..n].to_vec()));
            }
        }
    }
    out
}

fn check(ops: &[Op]) -> Result<(), String> {
    let plain = run_ops(ops, false);
    let over = run_ops(ops, true);
    for (i, (a, b)) in plain.iter().zip(over.iter()).enumerate() {
        if a != b {
            return Err(format!("step {i} {:?}: tmpfs saw {a:?}, the overlay {b:?}", ops[i]));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(prop_config("prop_overlay", 64))]
    #[test]
    fn overlay_behaves_as_one_writable_file_system(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops).map_err(TestCaseError::fail)?;
    }
}

/// The cases that exercise copy-up, whiteouts and opacity, always run.
#[test]
fn known_sequences() {
    let seqs = vec![
        // Write a lower file (copy-up), read it back.
        vec![Op::Open { p: 2, acc: g::O_RDWR, creat: false, trunc: false, append: true }, Op::Write(3, b"+more".to_vec()), Op::Close(3), Op::Open { p: 2, acc: g::O_RDONLY, creat: false, trunc: false, append: false }, Op::Read(3, 40), Op::Stat(2)],
        // Delete a lower file and directory, list, recreate.
        vec![Op::Unlink(2), Op::Getdents(0), Op::Unlink(9), Op::Rmdir(8), Op::Getdents(0), Op::Mkdir(8), Op::Getdents(8), Op::Stat(9), Op::Rmdir(0)],
        // Rename a lower directory and a lower file, chmod, truncate, link.
        vec![Op::Rename(0, 1), Op::Getdents(usize::MAX), Op::Rename(7, 2), Op::Chmod(2, 0o600), Op::Stat(2), Op::Truncate(2, 3), Op::Stat(2), Op::Link(2, 3), Op::Getdents(1)],
        vec![Op::Rmdir(0), Op::Unlink(9), Op::Unlink(2), Op::Rmdir(8), Op::Rmdir(0), Op::Stat(0), Op::Mkdir(0), Op::Getdents(0)],
    ];
    for s in seqs {
        check(&s).unwrap();
    }
}
