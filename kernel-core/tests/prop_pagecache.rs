//! Model-based property of the page cache: one tmpfs file, mapped shared
//! and private, driven by random `pwrite`/`pread`/`ftruncate`, stores and
//! loads through both mappings (in the process and in forked children),
//! `msync`, `MADV_DONTNEED` and `MADV_REMOVE`, checked step by step against
//! a model (the file's bytes, and the pages a private mapping has copied):
//! a shared mapping, `read` and `write` always agree; a private mapping
//! sees the file until it writes a page; an access wholly past the end of
//! the file is `SIGBUS`. The kernel runs with its invariant checker after
//! every step (frame reference counts against the page tables, the page
//! caches and their counters) and must end with no frame leaked.

mod common;

use std::collections::BTreeMap;

use common::model::*;
use common::*;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const P: u64 = 4096;
/// Pages of the file's range and of each window.
const PAGES: u64 = 6;
/// The shared and the private mapping of the file.
const SH: u64 = 0x1000_0000;
const PV: u64 = 0x2000_0000;
const SCRATCH: u64 = BASE + SCRATCH_OFF;
const WBUF: u64 = SCRATCH + 0x100;
const RBUF: u64 = SCRATCH + 0x800;
const PATH: u64 = BASE + DATA_OFF;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Win {
    Shared,
    Private,
}

#[derive(Debug, Clone)]
enum Op {
    Pwrite(u64, Vec<u8>),
    Pread(u64, usize),
    Ftruncate(u64),
    Store(Win, u64, Vec<u8>),
    Load(Win, u64, usize),
    /// A child stores through the shared mapping, then exits.
    ForkStore(u64, Vec<u8>),
    Msync,
    DontNeed(Win),
    /// `MADV_REMOVE` of pages `[first, first + n)` of the shared mapping.
    Remove(u64, u64),
}

fn off() -> impl Strategy<Value = u64> {
    prop_oneof![3 => (0..PAGES, 0u64..24).prop_map(|(p, o)| p * P + o), 1 => (1..PAGES, 1u64..6).prop_map(|(p, o)| p * P - o)]
}
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 1..10)
}
fn win() -> impl Strategy<Value = Win> {
    prop_oneof![Just(Win::Shared), Just(Win::Private)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (off(), data()).prop_map(|(o, d)| Op::Pwrite(o, d)),
        3 => (off(), 1usize..16).prop_map(|(o, n)| Op::Pread(o, n)),
        2 => prop_oneof![(0..=PAGES).prop_map(|p| p * P), (0..PAGES * P)].prop_map(Op::Ftruncate),
        5 => (win(), off(), data()).prop_map(|(w, o, d)| Op::Store(w, o, d)),
        5 => (win(), off(), 1usize..12).prop_map(|(w, o, n)| Op::Load(w, o, n)),
        2 => (off(), data()).prop_map(|(o, d)| Op::ForkStore(o, d)),
        1 => Just(Op::Msync),
        1 => win().prop_map(Op::DontNeed),
        1 => (0..PAGES).prop_flat_map(|s| (Just(s), 1..=(PAGES - s))).prop_map(|(s, n)| Op::Remove(s, n)),
    ]
}

/// Deliberately broken model variants the property must catch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// A private mapping keeps reading the file after writing a page (and
    /// its fault-around neighbours follow the file too).
    PrivateFollowsFile,
}

/// What a page of the private mapping is.
#[derive(Debug, Clone)]
enum Priv {
    /// Maps the cache's page (follows the file).
    Cow,
    /// A private copy.
    Copy(Vec<u8>),
}

struct Model {
    file: Vec<u8>,
    /// File pages the page cache holds (written, or faulted by a mapping).
    cached: std::collections::BTreeSet<u64>,
    /// The private mapping's present pages.
    private: BTreeMap<u64, Priv>,
    bug: Bug,
}

impl Model {
    /// Pages an access may touch: those with at least one byte in the file.
    fn mapped_pages(&self) -> u64 {
        (self.file.len() as u64).div_ceil(P)
    }
    /// Whether every byte of `[off, off + n)` is on a page inside the file.
    fn in_file(&self, off: u64, n: usize) -> bool {
        (off + n as u64).div_ceil(P) <= self.mapped_pages()
    }
    fn file_byte(&self, o: u64) -> u8 {
        self.file.get(o as usize).copied().unwrap_or(0)
    }
    fn file_page(&self, pg: u64) -> Vec<u8> {
        (pg * P..pg * P + P).map(|x| self.file_byte(x)).collect()
    }
    /// The pages `[off, off + n)` touches through window `w`, in order: a
    /// missing one faults. A fault brings the page into the cache; in the
    /// private mapping (writable) the missing neighbours in its fault-around
    /// window (here the whole mapping) that the cache holds become private
    /// copies at once.
    fn touch(&mut self, w: Win, off: u64, n: usize, store: bool) {
        for pg in off / P..(off + n as u64).div_ceil(P) {
            // A page the private mapping already has is not read from the
            // file: the cache does not get it back (after MADV_REMOVE).
            if w == Win::Private && self.private.contains_key(&pg) {
                continue;
            }
            self.cached.insert(pg);
            if w == Win::Shared {
                continue;
            }
            self.private.insert(pg, Priv::Cow);
            for q in 0..PAGES {
                if q != pg && q < self.mapped_pages() && self.cached.contains(&q) && !self.private.contains_key(&q) {
                    let copy = if self.bug == Bug::PrivateFollowsFile { Priv::Cow } else { Priv::Copy(self.file_page(q)) };
                    self.private.insert(q, copy);
                }
            }
        }
        if store && w == Win::Private {
            for pg in off / P..(off + n as u64).div_ceil(P) {
                if let Some(Priv::Cow) = self.private.get(&pg) {
                    let page = self.file_page(pg);
                    self.private.insert(pg, if self.bug == Bug::PrivateFollowsFile { Priv::Cow } else { Priv::Copy(page) });
                }
            }
        }
    }
    fn load(&mut self, w: Win, off: u64, n: usize) -> Vec<u8> {
        self.touch(w, off, n, false);
        (off..off + n as u64)
            .map(|o| match (w, self.private.get(&(o / P))) {
                (Win::Private, Some(Priv::Copy(c))) => c[(o % P) as usize],
                _ => self.file_byte(o),
            })
            .collect()
    }
    fn store(&mut self, w: Win, off: u64, d: &[u8]) {
        self.touch(w, off, d.len(), true);
        for (i, &b) in d.iter().enumerate() {
            let o = off + i as u64;
            match (w, self.private.get_mut(&(o / P))) {
                (Win::Private, Some(Priv::Copy(c))) => c[(o % P) as usize] = b,
                (Win::Private, _) => {}
                (Win::Shared, _) => self.file[o as usize] = b,
            }
        }
    }
    fn pwrite(&mut self, off: u64, d: &[u8]) {
        let end = off as usize + d.len();
        if self.file.len() < end {
            self.file.resize(end, 0);
        }
        self.file[off as usize..end].copy_from_slice(d);
        self.cached.extend(off / P..(end as u64).div_ceil(P));
    }
    fn truncate(&mut self, len: u64) {
        self.file.resize(len as usize, 0);
        // Truncation drops the cache's pages and unmaps even private copies
        // wholly past the end.
        let keep = self.mapped_pages();
        self.private.retain(|&pg, _| pg < keep);
        self.cached.retain(|&pg| pg < keep);
    }
    /// `MADV_REMOVE` of pages `[s, s + n)`: whole pages inside the file leave
    /// the cache (and the private entries that map them); a partial last
    /// page is zeroed in place.
    fn remove(&mut self, s: u64, n: u64) {
        let size = self.file.len() as u64;
        let end = ((s + n) * P).min(size);
        for q in s..s + n {
            if (q + 1) * P <= end {
                self.cached.remove(&q);
                if let Some(Priv::Cow) = self.private.get(&q) {
                    self.private.remove(&q);
                }
            }
        }
        let a = (s * P).min(size) as usize;
        self.file[a..end.max(a as u64) as usize].fill(0);
    }
}

/// Fork; the child runs `child` then exits 0 (or dies); the parent waits and
/// records the wait status at SCRATCH (termination signal, exit code).
fn in_child(log: &Log, insns: &mut Vec<Insn>, child: Vec<Insn>) {
    let mut child = child;
    child.push(sys(g::__NR_exit_group, &[0]));
    let after = insns.len() + 2 + child.len();
    insns.push(sys(g::__NR_fork, &[]));
    insns.push(jump_if(BASE, after, |c| c.regs.rax != 0));
    insns.extend(child);
    insns.push(sys(g::__NR_wait4, &[u64::MAX, SCRATCH, 0, 0]));
    insns.push(record_wstatus(log, SCRATCH));
}

fn base(w: Win) -> u64 {
    match w {
        Win::Shared => SH,
        Win::Private => PV,
    }
}

fn check(ops: &[Op], bug: Bug) -> Result<(), String> {
    let log = Log::default();
    let mut m = Model { file: vec![0; (4 * P) as usize], cached: Default::default(), private: BTreeMap::new(), bug };
    let mut want: Vec<Expect> = Vec::new();
    let mut labels: Vec<usize> = Vec::new();
    let rw = (g::PROT_READ | g::PROT_WRITE) as u64;
    let mut insns: Vec<Insn> = vec![
        sys(g::__NR_open, &[PATH, (g::O_RDWR | g::O_CREAT) as u64, 0o600]),
        record(&log, 0, 0),
        sys(g::__NR_ftruncate, &[3, 4 * P]),
        record(&log, 0, 0),
        sys(g::__NR_mmap, &[SH, PAGES * P, rw, (g::MAP_SHARED | g::MAP_FIXED) as u64, 3, 0]),
        record(&log, 0, 0),
        sys(g::__NR_mmap, &[PV, PAGES * P, rw, (g::MAP_PRIVATE | g::MAP_FIXED) as u64, 3, 0]),
        record(&log, 0, 0),
    ];
    for r in [3, 0, SH as i64, PV as i64] {
        want.push(Expect::ret(r));
        labels.push(usize::MAX);
    }
    let mut expect = |want: &mut Vec<Expect>, e: Expect, i: usize| {
        want.push(e);
        labels.push(i);
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Pwrite(o, d) => {
                insns.push(store(|_| WBUF, d.clone()));
                insns.push(sys(g::__NR_pwrite64, &[3, WBUF, d.len() as u64, *o]));
                insns.push(record(&log, 0, 0));
                m.pwrite(*o, d);
                expect(&mut want, Expect::ret(d.len() as i64), i);
            }
            Op::Pread(o, n) => {
                insns.push(sys(g::__NR_pread64, &[3, RBUF, *n as u64, *o]));
                insns.push(record(&log, RBUF, *n));
                let got: Vec<u8> = m.file.iter().skip(*o as usize).take(*n).copied().collect();
                expect(&mut want, Expect::ret(got.len() as i64).with_mem(got), i);
            }
            Op::Ftruncate(len) => {
                insns.push(sys(g::__NR_ftruncate, &[3, *len]));
                insns.push(record(&log, 0, 0));
                m.truncate(*len);
                expect(&mut want, Expect::ret(0), i);
            }
            Op::Store(w, o, d) => {
                let addr = base(*w) + o;
                if m.in_file(*o, d.len()) && (*w == Win::Private || *o as usize + d.len() <= m.file.len()) {
                    insns.push(store(move |_| addr, d.clone()));
                    insns.push(record(&log, 0, 0));
                    m.store(*w, *o, d);
                    expect(&mut want, Expect::any(), i);
                } else if !m.in_file(*o, d.len()) {
                    // Past the end: a store there kills a child with SIGBUS
                    // (only the part past the end is tried: a store into the
                    // last page's tail would land, unspecified by POSIX).
                    let at = base(*w) + (*o).max(m.mapped_pages() * P);
                    in_child(&log, &mut insns, vec![store(move |_| at, vec![1])]);
                    expect(&mut want, Expect::any().with_mem(vec![g::SIGBUS as u8, 0]), i);
                }
                // (A shared store into the last page's tail past the end of
                // the file is unspecified: not generated.)
            }
            Op::Load(w, o, n) => {
                let addr = base(*w) + o;
                if m.in_file(*o, *n) {
                    insns.push(record(&log, addr, *n));
                    let bytes = m.load(*w, *o, *n);
                    expect(&mut want, Expect::any().with_mem(bytes), i);
                } else {
                    in_child(&log, &mut insns, vec![load(base(*w) + (*o).max(m.mapped_pages() * P))]);
                    expect(&mut want, Expect::any().with_mem(vec![g::SIGBUS as u8, 0]), i);
                }
            }
            Op::ForkStore(o, d) => {
                if *o as usize + d.len() <= m.file.len() {
                    let addr = SH + o;
                    in_child(&log, &mut insns, vec![store(move |_| addr, d.clone())]);
                    m.store(Win::Shared, *o, d);
                    expect(&mut want, Expect::any().with_mem(vec![0, 0]), i);
                }
            }
            Op::Msync => {
                insns.push(sys(g::__NR_msync, &[SH, PAGES * P, g::MS_SYNC as u64]));
                insns.push(record(&log, 0, 0));
                expect(&mut want, Expect::ret(0), i);
            }
            Op::DontNeed(w) => {
                insns.push(sys(g::__NR_madvise, &[base(*w), PAGES * P, g::MADV_DONTNEED as u64]));
                insns.push(record(&log, 0, 0));
                if *w == Win::Private {
                    m.private.clear();
                }
                expect(&mut want, Expect::ret(0), i);
            }
            Op::Remove(s, n) => {
                insns.push(sys(g::__NR_madvise, &[SH + s * P, n * P, g::MADV_REMOVE as u64]));
                insns.push(record(&log, 0, 0));
                m.remove(*s, *n);
                expect(&mut want, Expect::ret(0), i);
            }
        }
    }
    // The file as the kernel has it at the end, read back whole.
    let size = m.file.len();
    insns.push(sys(g::__NR_pread64, &[3, RBUF, 0x700, 0]));
    insns.push(record(&log, RBUF, size.min(0x700)));
    expect(&mut want, Expect::ret(size.min(0x700) as i64).with_mem(m.file[..size.min(0x700)].to_vec()), usize::MAX);
    insns.push(sys(g::__NR_exit_group, &[0]));
    let p = Program { base: BASE, insns };
    let (mut hal, _) = machine(vec![p]);
    hal.space_limit = Some(64);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/tmp/f\0")), ("tmp", DIR, vec![])]);
    let status = kernel_core::kernel::boot_checked(&mut hal, cfg).map_err(|e| format!("boot: {e}"))?;
    let recs = log.borrow().clone();
    // Records of children (which record nothing here) would be a bug too.
    compare(ops, &recs, &want, &labels)?;
    if status != 0 {
        return Err(format!("exit status {status} (log {:?})", hal.log));
    }
    if let Some(l) = hal.log.iter().find(|l| l.contains("invariant violated") || l.contains("frame leak")) {
        return Err(l.clone());
    }
    Ok(())
}

proptest! {
    #![proptest_config(prop_config("prop_pagecache", 128))]

    #[test]
    fn shared_private_read_write_agree_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops, Bug::None).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn planted_bug_private_follows_file_is_caught() {
    let strat = prop::collection::vec(op(), 1..40);
    let mut runner = planted_runner(512);
    let r = runner.run(&strat, |ops| check(&ops, Bug::PrivateFollowsFile).map_err(TestCaseError::fail));
    assert!(r.is_err(), "the property did not notice a private mapping that follows the file after writing");
}

#[test]
fn known_sequence() {
    let ops = vec![
        Op::Store(Win::Shared, 10, vec![1, 2, 3]),
        Op::Pread(8, 6),
        Op::Pwrite(P + 5, vec![9, 9]),
        Op::Load(Win::Shared, P + 4, 4),
        Op::Load(Win::Private, 10, 3),
        Op::Store(Win::Private, 11, vec![7]),
        Op::Pwrite(10, vec![5]),
        Op::Load(Win::Private, 10, 3),
        Op::ForkStore(3 * P, vec![4, 4]),
        Op::Pread(3 * P, 2),
        Op::Ftruncate(P + 100),
        Op::Load(Win::Shared, 3 * P, 1),
        Op::Store(Win::Private, 2 * P, vec![1]),
        Op::Ftruncate(5 * P),
        Op::Load(Win::Shared, 3 * P, 2),
        Op::Remove(0, 1),
        Op::Load(Win::Private, 10, 3),
        Op::Load(Win::Shared, 10, 3),
        Op::DontNeed(Win::Private),
        Op::Load(Win::Private, 10, 3),
        Op::Msync,
    ];
    check(&ops, Bug::None).unwrap();
}
