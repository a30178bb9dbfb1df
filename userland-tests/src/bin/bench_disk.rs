//! `bench_disk OP ITERS PATH`: block I/O on PATH (the guest's `/dev/ubda`,
//! natively the same image file on the host) and one machine-readable
//! line, `bench OP VALUE UNIT`, or `bench OP n/a REASON` with status 1.
//! `cargo xtask bench` runs it natively and inside the kernel.
//!
//! | OP | what is timed |
//! | --- | --- |
//! | `disk_randread_4k` | `pread` of 4 KiB at a random 4 KiB-aligned offset (ns per read) |
//! | `disk_randwrite_4k` | `pwrite` of 4 KiB at a random offset, one `fdatasync` at the end counted (ns per write) |
//! | `disk_seqread_1m` | `pread` of the whole file in 1 MiB pieces, ITERS passes (MB/s) |
//! | `disk_seqwrite_1m` | `pwrite` of the whole file in 1 MiB pieces + `fdatasync`, ITERS passes (MB/s) |
// `cargo test` builds bins with its own harness main: keep ours out of it.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::ffi::CString;
use std::os::raw::c_char;
use userland_tests::{args, fail, now_ns, say};

const SMALL: usize = 4096;
const BIG: usize = 1 << 20;

/// Open PATH read-write and find its size (a block device's through `lseek`).
fn open(path: &str) -> Result<(i32, u64), String> {
    let p = CString::new(path).map_err(|_| "bad-PATH".to_string())?;
    // SAFETY: p is NUL-terminated.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        return Err(fail("open"));
    }
    // SAFETY: plain lseek on our descriptor.
    let size = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    if size < BIG as i64 {
        return Err(fail("size-below-1MiB"));
    }
    Ok((fd, size as u64))
}

/// xorshift64: the same offsets natively and in the guest.
fn offsets(size: u64, n: usize) -> Vec<i64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let blocks = size / SMALL as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % blocks) * SMALL as u64) as i64
        })
        .collect()
}

fn random(n: usize, path: &str, write: bool) -> Result<f64, String> {
    let (fd, size) = open(path)?;
    let offs = offsets(size, n + n / 10);
    let mut buf = vec![0x5au8; SMALL];
    let mut io = |off: i64| -> Result<(), String> {
        // SAFETY: buf is valid for SMALL bytes.
        let r = unsafe {
            if write {
                libc::pwrite(fd, buf.as_ptr().cast(), SMALL, off)
            } else {
                libc::pread(fd, buf.as_mut_ptr().cast(), SMALL, off)
            }
        };
        if r != SMALL as isize {
            return Err(fail(if write { "pwrite" } else { "pread" }));
        }
        Ok(())
    };
    for &o in &offs[n..] {
        io(o)?;
    }
    let t0 = now_ns();
    for &o in &offs[..n] {
        io(o)?;
    }
    // SAFETY: plain fdatasync on our descriptor.
    if write && unsafe { libc::fdatasync(fd) } != 0 {
        return Err(fail("fdatasync"));
    }
    let ns = (now_ns() - t0) as f64 / n as f64;
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    Ok(ns)
}

fn sequential(passes: usize, path: &str, write: bool) -> Result<f64, String> {
    let (fd, size) = open(path)?;
    let mut buf = vec![0xa5u8; BIG];
    let chunks = size / BIG as u64;
    let t0 = now_ns();
    for _ in 0..passes {
        for c in 0..chunks {
            let off = (c * BIG as u64) as i64;
            // SAFETY: buf is valid for BIG bytes.
            let r = unsafe {
                if write {
                    libc::pwrite(fd, buf.as_ptr().cast(), BIG, off)
                } else {
                    libc::pread(fd, buf.as_mut_ptr().cast(), BIG, off)
                }
            };
            if r != BIG as isize {
                return Err(fail(if write { "pwrite" } else { "pread" }));
            }
        }
        // SAFETY: plain fdatasync on our descriptor.
        if write && unsafe { libc::fdatasync(fd) } != 0 {
            return Err(fail("fdatasync"));
        }
    }
    let secs = (now_ns() - t0) as f64 / 1e9;
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    Ok((passes as u64 * chunks * BIG as u64) as f64 / 1e6 / secs)
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let op = args.get(1).map(String::as_str).unwrap_or("");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000).max(1);
    let Some(path) = args.get(3) else {
        say!("bench {op} n/a missing-PATH-argument");
        return 1;
    };
    let (result, unit) = match op {
        "disk_randread_4k" => (random(n, path, false), "ns"),
        "disk_randwrite_4k" => (random(n, path, true), "ns"),
        "disk_seqread_1m" => (sequential(n, path, false), "MB/s"),
        "disk_seqwrite_1m" => (sequential(n, path, true), "MB/s"),
        _ => (Err("unknown-operation".into()), ""),
    };
    match result {
        Ok(v) => {
            say!("bench {op} {v:.3} {unit}");
            0
        }
        Err(why) => {
            say!("bench {op} n/a {why}");
            1
        }
    }
}
