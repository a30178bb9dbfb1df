//! brk grow/shrink, mmap/munmap of many sizes, MAP_FIXED over an existing
//! mapping, mprotect, patterns written and checked, and accesses that must
//! kill a (forked) process with SIGSEGV. Exits 0 only if every check passes.
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{describe_status, errno, errno_name, in_child, mmap_anon, say, PAGE};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const PRIV: i32 = libc::MAP_PRIVATE;

/// The value stored in word `i` of a region filled with `seed`.
fn pattern(seed: u64, i: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0x0100_0000_01B3)
}

/// Fills `len` bytes at `p` with the pattern of `seed`.
///
/// # Safety
/// `p..p+len` must be mapped writable and 8-byte aligned.
unsafe fn fill(p: *mut u8, len: usize, seed: u64) {
    let w = p.cast::<u64>();
    for i in 0..len / 8 {
        // SAFETY: in bounds per the caller's contract.
        unsafe { w.add(i).write_volatile(pattern(seed, i)) };
    }
}

/// Checks the pattern written by `fill`.
///
/// # Safety
/// `p..p+len` must be mapped readable and 8-byte aligned.
unsafe fn holds(p: *const u8, len: usize, seed: u64) -> bool {
    let w = p.cast::<u64>();
    // SAFETY: in bounds per the caller's contract.
    (0..len / 8).all(|i| unsafe { w.add(i).read_volatile() } == pattern(seed, i))
}

/// Whether `len` bytes at `p` are all zero.
///
/// # Safety
/// `p..p+len` must be mapped readable.
unsafe fn zero(p: *const u8, len: usize) -> bool {
    // SAFETY: in bounds per the caller's contract.
    (0..len).all(|i| unsafe { p.add(i).read_volatile() } == 0)
}

fn brk(addr: usize) -> usize {
    // SAFETY: raw brk; the program restores the original break before it
    // allocates anything else, so malloc's view of the heap stays valid.
    unsafe { libc::syscall(libc::SYS_brk, addr) as usize }
}

struct Checks {
    ok: bool,
}

impl Checks {
    fn check(&mut self, what: &str, good: bool) {
        self.ok &= good;
        say!("{what}: {}", if good { "ok" } else { "WRONG" });
    }
}

/// brk tests. Must not allocate between the first and the last brk call
/// (malloc may use brk too), so results are collected in an array first.
fn brk_tests(c: &mut Checks) {
    const MB: usize = 1 << 20;
    let mut r = [false; 8];
    let start = brk(0);
    // Grow by 1 MiB; the new area reads as zero and keeps a pattern.
    let top = brk(start + MB);
    r[0] = top == start + MB;
    if r[0] {
        // The old break may be unaligned: use the page-aligned part.
        let base = (start + PAGE - 1) & !(PAGE - 1);
        let len = start + MB - base;
        // SAFETY: [base, start+MB) lies inside the area just added to the heap.
        unsafe {
            r[1] = zero(base as *const u8, len);
            fill(base as *mut u8, len & !7, 1);
            r[2] = holds(base as *const u8, len & !7, 1);
        }
        // Shrink to one page past the start, then grow again: the pages
        // given back come back zeroed.
        r[3] = brk(base + PAGE) == base + PAGE;
        // SAFETY: the first page past base is still in the heap.
        r[4] = unsafe { holds(base as *const u8, PAGE, 1) };
        r[5] = brk(start + MB) == start + MB;
        // SAFETY: the heap covers [base, start+MB) again.
        r[6] = unsafe { zero((base + PAGE) as *const u8, start + MB - base - PAGE) };
    }
    // An absurd break is refused: brk returns the current break.
    let cur = brk(0);
    r[7] = brk(usize::MAX - 0xfff) == cur && brk(1) == cur;
    brk(start);
    let restored = brk(0) == start;
    c.check("brk grow by 1 MiB", r[0]);
    c.check("brk new memory is zero", r[1]);
    c.check("brk memory keeps a pattern", r[2]);
    c.check("brk shrink", r[3]);
    c.check("brk memory below the new break survives", r[4]);
    c.check("brk grow again", r[5]);
    c.check("brk regrown memory is zero", r[6]);
    c.check("brk absurd values refused", r[7]);
    c.check("brk restored", restored);
}

fn mmap_sizes(c: &mut Checks) {
    let sizes = [1, 2, 3, 7, 16, 64, 255, 256, 1024, 4096];
    let mut all = true;
    let mut maps = Vec::new();
    for (k, &pages) in sizes.iter().enumerate() {
        let len = pages * PAGE;
        match mmap_anon(len, RW, PRIV) {
            Ok(p) => {
                // SAFETY: p..p+len was just mapped read-write.
                unsafe {
                    all &= zero(p, len);
                    fill(p, len, k as u64 + 10);
                }
                maps.push((p, len, k as u64 + 10));
            }
            Err(e) => {
                say!("mmap of {pages} pages failed: {}", errno_name(e));
                all = false;
            }
        }
    }
    // Every mapping still holds its own pattern once all are written.
    for &(p, len, seed) in &maps {
        // SAFETY: still mapped.
        all &= unsafe { holds(p, len, seed) };
    }
    for &(p, len, _) in &maps {
        // SAFETY: unmapping our own mapping.
        all &= unsafe { libc::munmap(p.cast(), len) } == 0;
    }
    c.check(
        "mmap/munmap of 10 sizes (1 page to 16 MiB), zeroed, patterns kept",
        all,
    );

    // Many small mappings at once, then unmapped in a different order.
    let mut small = Vec::new();
    let mut ok = true;
    for i in 0..200 {
        match mmap_anon(PAGE, RW, PRIV) {
            Ok(p) => {
                // SAFETY: one fresh page.
                unsafe { p.cast::<u64>().write_volatile(i) };
                small.push(p);
            }
            Err(_) => ok = false,
        }
    }
    for (i, &p) in small.iter().enumerate() {
        // SAFETY: still mapped.
        ok &= unsafe { p.cast::<u64>().read_volatile() } == i as u64;
    }
    for &p in small
        .iter()
        .step_by(2)
        .chain(small.iter().skip(1).step_by(2))
    {
        // SAFETY: our own page.
        ok &= unsafe { libc::munmap(p.cast(), PAGE) } == 0;
    }
    c.check("200 one-page mappings", ok);
}

fn map_fixed(c: &mut Checks) {
    let len = 8 * PAGE;
    let Ok(p) = mmap_anon(len, RW, PRIV) else {
        c.check("mmap for MAP_FIXED", false);
        return;
    };
    // SAFETY: p..p+len is ours.
    unsafe { fill(p, len, 77) };
    // Map two fresh pages over pages 3 and 4.
    let mid = p.wrapping_add(3 * PAGE);
    // SAFETY: MAP_FIXED over a range this function owns.
    let q = unsafe {
        libc::mmap(
            mid.cast(),
            2 * PAGE,
            RW,
            PRIV | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    c.check("MAP_FIXED returns the requested address", q == mid.cast());
    // SAFETY: all eight pages are mapped.
    unsafe {
        c.check("MAP_FIXED pages are fresh (zero)", zero(mid, 2 * PAGE));
        c.check(
            "pages before MAP_FIXED keep their data",
            holds(p, 3 * PAGE, 77),
        );
        let after = p.add(5 * PAGE);
        let ok = (0..3 * PAGE / 8)
            .all(|i| after.cast::<u64>().add(i).read_volatile() == pattern(77, 5 * PAGE / 8 + i));
        c.check("pages after MAP_FIXED keep their data", ok);
    }
    // Unmap a page in the middle; its neighbours stay.
    // SAFETY: our own range.
    let r = unsafe { libc::munmap(p.add(6 * PAGE).cast(), PAGE) };
    c.check("munmap of one page inside a mapping", r == 0);
    // SAFETY: page 7 is still mapped.
    let ok = unsafe { p.add(7 * PAGE).cast::<u64>().read_volatile() } == pattern(77, 7 * PAGE / 8);
    c.check("page after the hole keeps its data", ok);
    let status = in_child(|| {
        // SAFETY: deliberately touches the unmapped page; the child must die.
        unsafe { p.add(6 * PAGE).read_volatile() as i32 }
    });
    c.check(
        &format!("read of the hole in a child: {}", describe_status(status)),
        describe_status(status) == "killed by signal 11",
    );
    // SAFETY: unmapping the rest of our range (munmap of a hole is fine).
    let r = unsafe { libc::munmap(p.cast(), len) };
    c.check("munmap of a range with a hole", r == 0);
}

fn protections(c: &mut Checks) {
    let len = 4 * PAGE;
    let Ok(p) = mmap_anon(len, RW, PRIV) else {
        c.check("mmap for mprotect", false);
        return;
    };
    // SAFETY: p..p+len is ours.
    unsafe { fill(p, len, 5) };
    // SAFETY: our own mapping.
    let r = unsafe { libc::mprotect(p.cast(), len, libc::PROT_READ) };
    c.check("mprotect read-only", r == 0);
    // SAFETY: still readable.
    c.check("read-only pages keep their data", unsafe {
        holds(p, len, 5)
    });
    let status = in_child(|| {
        // SAFETY: deliberately writes a read-only page; the child must die.
        unsafe { p.add(PAGE).write_volatile(1) };
        0
    });
    c.check(
        &format!(
            "write to a read-only page in a child: {}",
            describe_status(status)
        ),
        describe_status(status) == "killed by signal 11",
    );
    // SAFETY: our own mapping.
    let r = unsafe { libc::mprotect(p.add(PAGE).cast(), PAGE, libc::PROT_NONE) };
    c.check("mprotect PROT_NONE on one page", r == 0);
    let status = in_child(|| {
        // SAFETY: deliberately reads a PROT_NONE page; the child must die.
        unsafe { p.add(PAGE).read_volatile() as i32 }
    });
    c.check(
        &format!(
            "read of a PROT_NONE page in a child: {}",
            describe_status(status)
        ),
        describe_status(status) == "killed by signal 11",
    );
    // SAFETY: our own mapping.
    let r = unsafe { libc::mprotect(p.cast(), len, RW) };
    c.check("mprotect back to read-write", r == 0);
    // SAFETY: writable again.
    unsafe {
        fill(p, len, 6);
        c.check("pages writable again", holds(p, len, 6));
        c.check("munmap", libc::munmap(p.cast(), len) == 0);
    }
    let status = in_child(|| {
        // SAFETY: deliberately touches the unmapped range; the child must die.
        unsafe { p.write_volatile(1) };
        0
    });
    c.check(
        &format!("write after munmap in a child: {}", describe_status(status)),
        describe_status(status) == "killed by signal 11",
    );
    let status = in_child(|| {
        // SAFETY: deliberately writes through a NULL pointer.
        unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
        0
    });
    c.check(
        &format!("write to NULL in a child: {}", describe_status(status)),
        describe_status(status) == "killed by signal 11",
    );
}

fn errors(c: &mut Checks) {
    let e = mmap_anon(0, RW, PRIV).err().unwrap_or(0);
    c.check(
        &format!("mmap of 0 bytes: -{}", errno_name(e)),
        e == libc::EINVAL,
    );
    // SAFETY: an unaligned address is refused before anything is mapped.
    let r = unsafe { libc::munmap(std::ptr::dangling_mut::<u8>().cast(), PAGE) };
    let e = if r == 0 { 0 } else { errno() };
    c.check(
        &format!("munmap of an unaligned address: -{}", errno_name(e)),
        e == libc::EINVAL,
    );
    let e = mmap_anon(PAGE, RW, 0).err().unwrap_or(0);
    c.check(
        &format!("mmap without MAP_PRIVATE/MAP_SHARED: -{}", errno_name(e)),
        e == libc::EINVAL,
    );
}

fn big_touch(c: &mut Checks) {
    // 32 MiB touched page by page, then checked.
    let len = 32 << 20;
    let Ok(p) = mmap_anon(len, RW, PRIV) else {
        c.check("mmap 32 MiB", false);
        return;
    };
    let mut ok = true;
    // SAFETY: p..p+len is ours.
    unsafe {
        for i in (0..len).step_by(PAGE) {
            p.add(i).cast::<u64>().write_volatile(i as u64 ^ 0x5555);
        }
        for i in (0..len).step_by(PAGE) {
            ok &= p.add(i).cast::<u64>().read_volatile() == i as u64 ^ 0x5555;
        }
        ok &= libc::munmap(p.cast(), len) == 0;
    }
    c.check("32 MiB touched page by page", ok);
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const c_char) -> i32 {
    let mut c = Checks { ok: true };
    brk_tests(&mut c);
    mmap_sizes(&mut c);
    map_fixed(&mut c);
    protections(&mut c);
    errors(&mut c);
    big_touch(&mut c);
    say!("mem_stress: {}", if c.ok { "PASS" } else { "FAIL" });
    if c.ok {
        0
    } else {
        1
    }
}
