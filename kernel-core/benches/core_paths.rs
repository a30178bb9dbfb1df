//! criterion benchmarks of kernel-core's hot paths against the mock HAL (no
//! host process involved): the page-table walk behind user copies, fork's
//! address-space copy, mmap+munmap and the path walk.
//!
//! `cargo bench -p kernel-core` (figures in BENCHMARKS.md). System-call
//! dispatch is not here: `syscall::dispatch` needs a `Kernel`, which only
//! `kernel::boot` builds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hal::mock::{MockHal, MockSpace};
use hal::{Hal, PhysMem, Prot, Trap, UserContext};
use kernel_core::fs::path::{walk, Follow};
use kernel_core::fs::{cpio, Fs, Loc};
use kernel_core::mm::{Backing, Frames, MapFlags, MemoryMap};

const RW: Prot = Prot::READ.union(Prot::WRITE);
const BASE: u64 = 0x1000_0000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

struct Env {
    hal: MockHal,
    frames: Frames,
}

impl Env {
    fn new(mem: usize) -> Env {
        let hal = MockHal::new(mem, Box::new(|_, _, _| Trap::Syscall));
        let frames = Frames::new(hal.phys.size());
        Env { hal, frames }
    }
    fn map(&mut self) -> MemoryMap<MockSpace> {
        MemoryMap::new(self.hal.new_space().unwrap())
    }
    /// Applies the queued host operations, as `Hal::run` does before running.
    fn apply(&mut self, mm: &mut MemoryMap<MockSpace>) {
        let mut ctx = UserContext::default();
        let _ = self.hal.run(&mut ctx, mm.host());
    }
    /// A private anonymous mapping of `len` bytes at BASE, every page present.
    fn populated(&mut self, len: u64) -> MemoryMap<MockSpace> {
        let mut mm = self.map();
        let flags = MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::FIXED | MapFlags::POPULATE;
        mm.mmap_with_phys(
            BASE,
            len,
            RW,
            flags,
            Backing::Anonymous,
            &mut self.frames,
            &self.hal.phys,
        )
        .unwrap();
        // Touch every page through the write path too (breaks any sharing).
        let page = vec![1u8; 4096];
        for off in (0..len).step_by(4096) {
            mm.copy_to_user(BASE + off, &page, &mut self.frames, &self.hal.phys)
                .unwrap();
        }
        self.apply(&mut mm);
        mm
    }
}

fn user_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("user_copy");
    for size in [4 * KIB, 64 * KIB] {
        let mut env = Env::new((64 * MIB) as usize);
        let mut mm = env.populated(MIB);
        let data = vec![0x5au8; size as usize];
        let mut buf = vec![0u8; size as usize];
        g.throughput(Throughput::Bytes(size));
        g.bench_with_input(BenchmarkId::new("copy_to_user", size), &size, |b, _| {
            b.iter(|| {
                mm.copy_to_user(
                    black_box(BASE + 4096),
                    &data,
                    &mut env.frames,
                    &env.hal.phys,
                )
                .unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("copy_from_user", size), &size, |b, _| {
            b.iter(|| {
                mm.copy_from_user(
                    black_box(BASE + 4096),
                    &mut buf,
                    &mut env.frames,
                    &env.hal.phys,
                )
                .unwrap();
                black_box(&buf);
            })
        });
    }
    g.finish();
}

fn fork(c: &mut Criterion) {
    let mut g = c.benchmark_group("fork");
    let mut env = Env::new((64 * MIB) as usize);
    let mut parent = env.populated(16 * MIB);
    g.bench_function("memory_map_fork_16MiB_populated", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let child_space = env.hal.new_space().unwrap();
                let t0 = Instant::now();
                let mut child = parent.fork(child_space, &mut env.frames).unwrap();
                total += t0.elapsed();
                // Outside the timing: drop the child's references and the
                // parent's queued protects, so every fork starts alike.
                child.clear(&mut env.frames);
                env.apply(&mut parent);
            }
            total
        })
    });
    g.finish();
}

fn mmap_munmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmap_munmap");
    let mut env = Env::new((64 * MIB) as usize);
    let mut mm = env.map();
    let flags = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    g.bench_function("anon_64KiB_untouched", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let a = mm
                    .mmap(0, 64 * KIB, RW, flags, Backing::Anonymous, &mut env.frames)
                    .unwrap();
                mm.munmap(black_box(a), 64 * KIB, &mut env.frames).unwrap();
                total += t0.elapsed();
                env.apply(&mut mm);
            }
            total
        })
    });
    g.bench_function("anon_64KiB_populated", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let a = mm
                    .mmap_with_phys(
                        0,
                        64 * KIB,
                        RW,
                        flags | MapFlags::POPULATE,
                        Backing::Anonymous,
                        &mut env.frames,
                        &env.hal.phys,
                    )
                    .unwrap();
                mm.munmap(black_box(a), 64 * KIB, &mut env.frames).unwrap();
                total += t0.elapsed();
                env.apply(&mut mm);
            }
            total
        })
    });
    g.finish();
}

fn path_walk(c: &mut Criterion) {
    let dir = 0o040755;
    let file = 0o100644;
    let archive = cpio::build(&[
        ("usr", dir, b""),
        ("usr/lib", dir, b""),
        ("usr/lib/x86_64-linux-gnu", dir, b""),
        ("usr/lib/x86_64-linux-gnu/deep", dir, b""),
        ("usr/lib/x86_64-linux-gnu/deep/libfoo.so.6", file, b"data"),
        ("etc", dir, b""),
        ("etc/passwd", file, b"root:x:0:0::/:/bin/sh\n"),
    ]);
    let mut fs = Fs::new();
    cpio::unpack(&mut fs, &archive).unwrap();
    let start = Loc::root(fs.root.clone());
    let mut g = c.benchmark_group("path_walk");
    for path in ["/etc/passwd", "/usr/lib/x86_64-linux-gnu/deep/libfoo.so.6"] {
        walk(&fs.root, &start, path, Follow::Yes).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(path), &path, |b, p| {
            b.iter(|| walk(&fs.root, &start, black_box(p), Follow::Yes).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, user_copy, fork, mmap_munmap, path_walk);
criterion_main!(benches);
