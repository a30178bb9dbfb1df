//! The kernel binaries' global allocator: the system allocator, counted.
//!
//! Every kernel object a guest can multiply is charged to the guest's
//! memory budget before it is allocated (kernel-core's `budget`); this is
//! the host-side backstop and the measuring stick for that rule. It counts
//! the bytes the kernel process holds on its heap and refuses to go past
//! `--mem` plus [`HEAP_OVERHEAD`]: a kernel bug that let a guest allocate
//! without a charge then stops the kernel with one line on stderr instead
//! of growing the host's memory until the host's OOM killer steps in.
//!
//! With `RUSTUML_HEAP_STATS` in the environment the kernel prints its peak
//! and final heap use at exit (`kernel heap: peak N KiB, at exit M KiB`),
//! which the resource-exhaustion tests read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Heap the kernel may hold beyond the guest's memory: its own tables, the
/// root archive when it is not a mapped file, buffers not charged because
/// no guest can multiply them.
pub const HEAP_OVERHEAD: u64 = 512 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The counting allocator (install with `#[global_allocator]`).
pub struct CountingAlloc;

fn take(size: usize) -> bool {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    if now > LIMIT.load(Ordering::Relaxed) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
        if !REFUSED.swap(true, Ordering::Relaxed) {
            let msg = b"kernel: heap past the guest's memory bound (--mem + overhead): a kernel object was not charged\n";
            // SAFETY: write(2) of a static buffer to stderr; no allocation.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        }
        return false;
    }
    PEAK.fetch_max(now, Ordering::Relaxed);
    true
}

// SAFETY: every call forwards to the system allocator with the caller's
// layout; the counters only decide whether to forward.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` holds for `System` too.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (every path above).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !take(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc` holds for `System` too.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes on the heap now.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most bytes the heap ever held.
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

extern "C" fn report_at_exit() {
    let line = format!("kernel heap: peak {} KiB, at exit {} KiB\n", peak_bytes() >> 10, live_bytes() >> 10);
    // SAFETY: write(2) of a buffer we own to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The guest has `bytes` of memory: bound the heap to that plus
/// [`HEAP_OVERHEAD`] (called once the physical-memory region exists).
pub fn set_guest_memory(bytes: u64) {
    let limit = bytes.saturating_add(HEAP_OVERHEAD).min(usize::MAX as u64) as usize;
    LIMIT.store(limit, Ordering::Relaxed);
    static REPORTING: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("RUSTUML_HEAP_STATS").is_some() && !REPORTING.swap(true, Ordering::Relaxed) {
        // SAFETY: registering a plain extern "C" function with no arguments.
        unsafe { libc::atexit(report_at_exit) };
    }
}
