//! The one-shot timer: a POSIX timer on `CLOCK_MONOTONIC` signalling the
//! kernel's own thread.
//!
//! The signal handler records the expiry and, if a stub is running guest
//! code at that moment, sends it a signal so that it stops and the tracer's
//! `waitpid` returns. The tracer publishes the running stub's pid *before* it
//! checks the expiry flag and resumes the stub, so an expiry is either seen
//! by that check or kicks the stub: never lost. A kick that reaches a stub
//! which had already stopped stays pending and stops it right after its next
//! resume: a spurious wake-up, which the tracer absorbs.
//!
//! Device interrupts (console, window size, network: see `host`'s event
//! watcher) take the same path. The watcher thread never signals a stub: it
//! records the interrupt in [`TimerShared::raise`] and sends the timer's
//! signal to the kernel thread, whose handler kicks the running stub exactly
//! as an expiry does. So only the kernel thread ever kicks a stub, and only
//! the one it published as running.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::Once;

/// The signal the timer sends to the kernel thread and the kernel sends to a
/// running stub.
pub const TIMER_SIGNAL: i32 = libc::SIGALRM;

/// State shared with the signal handler.
#[derive(Debug, Default)]
pub struct TimerShared {
    fired: AtomicBool,
    current: AtomicI32,
    /// Device interrupts (`hal::Interrupts` bits) raised and not yet taken.
    pending: AtomicU32,
    /// The kernel thread the timer (and the watcher's notices) signal.
    owner: AtomicI32,
    /// Sources (`hal::Interrupts` bits) to re-arm before the next check.
    rearm: AtomicU32,
    /// The event hub's epoll descriptor (-1: none yet).
    epfd: AtomicI32,
}

/// The live timers' shared states, so that the handler can tell a notice
/// meant for its thread from a stray signal (and never follows a pointer a
/// signal's sender chose). A slot is cleared when its timer is dropped; the
/// state itself is never freed.
const SLOTS: usize = 256;
static LIVE: [AtomicPtr<TimerShared>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

fn register(shared: &'static TimerShared) {
    let p = shared as *const TimerShared as *mut TimerShared;
    for slot in &LIVE {
        if slot.compare_exchange(std::ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
    // Full (hundreds of HALs alive in one process: only tests): device
    // interrupts then reach this kernel at its next trap or idle wait.
}

fn unregister(shared: &'static TimerShared) {
    let p = shared as *const TimerShared as *mut TimerShared;
    for slot in &LIVE {
        let _ = slot.compare_exchange(p, std::ptr::null_mut(), Ordering::SeqCst, Ordering::SeqCst);
    }
}

fn is_live(p: *const TimerShared) -> bool {
    !p.is_null() && LIVE.iter().any(|s| s.load(Ordering::SeqCst) as *const TimerShared == p)
}

impl TimerShared {
    /// Mark `pid` as the stub about to run guest code (0: none).
    #[inline]
    pub fn set_current(&self, pid: i32) {
        self.current.store(pid, Ordering::SeqCst);
    }
    /// Take the expiry flag.
    #[inline]
    pub fn take_fired(&self) -> bool {
        self.fired.swap(false, Ordering::SeqCst)
    }
    /// Whether the timer expired and was not yet reported.
    #[inline]
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
    /// The stub running guest code now (0: none).
    #[inline]
    pub fn current(&self) -> i32 {
        self.current.load(Ordering::SeqCst)
    }
    /// Record device interrupts `bits` and have the kernel thread notice
    /// them: its handler kicks the running stub, or its idle wait ends.
    /// Called from the event watcher's thread.
    pub fn raise(&self, bits: u32) {
        self.pending.fetch_or(bits, Ordering::SeqCst);
        let tid = self.owner.load(Ordering::SeqCst);
        if tid > 0 {
            // SAFETY: getpid has no preconditions; tgkill signals our own kernel thread, whose handler only reads atomics and kicks the stub it published.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, TIMER_SIGNAL) };
        }
    }
    /// Record device interrupts `bits` from the kernel thread itself (no
    /// signal: its next check sees them).
    pub fn post(&self, bits: u32) {
        self.pending.fetch_or(bits, Ordering::SeqCst);
    }
    /// Ask for the sources `bits` to be re-armed at the next check.
    #[inline]
    pub fn want_rearm(&self, bits: u32) {
        self.rearm.fetch_or(bits, Ordering::Relaxed);
    }
    /// Take the sources to re-arm.
    #[inline]
    pub fn take_rearm(&self) -> u32 {
        if self.rearm.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.rearm.swap(0, Ordering::Relaxed)
    }
    /// The event hub's epoll descriptor (-1: none).
    #[inline]
    pub fn epfd(&self) -> i32 {
        self.epfd.load(Ordering::Relaxed)
    }
    /// Record the event hub's epoll descriptor.
    pub fn set_epfd(&self, fd: i32) {
        self.epfd.store(fd, Ordering::Relaxed);
    }
    /// Take the device interrupts raised so far.
    #[inline]
    pub fn take_pending(&self) -> u32 {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        self.pending.swap(0, Ordering::SeqCst)
    }
    /// Whether device interrupts wait to be taken.
    #[inline]
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst) != 0
    }
    /// Kick the running stub, if any, when something is pending.
    fn kick(&self) {
        if !self.fired() && !self.has_pending() {
            return;
        }
        let pid = self.current.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; `pid` is the stub the kernel thread published as running, and this handler runs on that same thread, so it cannot have moved on.
            unsafe { libc::kill(pid, TIMER_SIGNAL) };
        }
    }
}

extern "C" fn on_timer(_sig: i32, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler. A pointer is followed only when it is one of the registered states (`LIVE`), which are leaked and valid for the life of the process.
    unsafe {
        if (*info).si_code == libc::SI_TIMER {
            let shared = (*info).si_value().sival_ptr as *const TimerShared;
            if is_live(shared) {
                (*shared).fired.store(true, Ordering::SeqCst);
                (*shared).kick();
            }
            return;
        }
        // A notice from the event watcher (or a stray signal): kick for
        // whatever the kernels of this thread have pending.
        let tid = libc::gettid();
        for slot in &LIVE {
            let p = slot.load(Ordering::SeqCst);
            if !p.is_null() && (*p).owner.load(Ordering::SeqCst) == tid {
                (*p).kick();
            }
        }
    }
}

/// A one-shot `CLOCK_MONOTONIC` timer that interrupts the thread that
/// created it.
pub struct Timer {
    id: libc::timer_t,
    shared: &'static TimerShared,
}

impl Timer {
    /// Create the timer, directed at the calling thread.
    pub fn new() -> std::io::Result<Timer> {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: installs an async-signal-safe handler (atomics and kill(2) only); the sigaction struct is fully initialised.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_timer as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(TIMER_SIGNAL, &sa, std::ptr::null_mut());
            }
        });
        // Leaked on purpose: a signal already queued when the timer is
        // deleted may still carry this pointer. A few bytes per HAL instance.
        let shared: &'static TimerShared = Box::leak(Box::default());
        // SAFETY: gettid has no preconditions.
        shared.owner.store(unsafe { libc::gettid() }, Ordering::SeqCst);
        shared.epfd.store(-1, Ordering::Relaxed);
        // SAFETY: a zeroed sigevent is valid; the fields set are the ones SIGEV_THREAD_ID reads. timer_create writes `id`.
        let id = unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = TIMER_SIGNAL;
            sev.sigev_value.sival_ptr = shared as *const TimerShared as *mut libc::c_void;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            id
        };
        register(shared);
        Ok(Timer { id, shared })
    }

    /// The state shared with the handler.
    pub fn shared(&self) -> &'static TimerShared {
        self.shared
    }

    /// Arm for the absolute `CLOCK_MONOTONIC` instant `at_ns`, or disarm.
    pub fn set(&mut self, at_ns: Option<u64>) {
        let mut its: libc::itimerspec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        if let Some(t) = at_ns {
            // 0 would disarm; an instant in the past fires at once.
            let t = t.max(1);
            its.it_value = libc::timespec { tv_sec: (t / 1_000_000_000) as i64, tv_nsec: (t % 1_000_000_000) as i64 };
        }
        // SAFETY: `self.id` is a live timer; `its` is valid.
        unsafe { libc::timer_settime(self.id, libc::TIMER_ABSTIME, &its, std::ptr::null_mut()) };
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.owner.store(0, Ordering::SeqCst);
        unregister(self.shared);
        // SAFETY: `self.id` was created by timer_create and is deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

/// `clock_gettime(clock)` in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The TSC's count.
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions (user mode may read the TSC on every x86_64 host Linux runs on).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether the host's TSC can serve as the guests' clock: it ticks at a
/// constant rate through power states and the host itself keeps time with
/// it (so it is synchronised across CPUs).
fn tsc_is_reliable() -> bool {
    if std::env::var_os("RUSTUML_NO_TSC").is_some() {
        return false;
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = flags.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| line.split_whitespace().any(|w| w == f);
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource").unwrap_or_default();
    has("constant_tsc") && has("nonstop_tsc") && source.trim() == "tsc"
}

/// `CLOCK_REALTIME` minus guest `CLOCK_MONOTONIC` now, where guest
/// monotonic 0 is host monotonic `boot_mono`.
fn real_offset(boot_mono: u64) -> u64 {
    let real = clock_ns(libc::CLOCK_REALTIME);
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    real.saturating_sub(mono.saturating_sub(boot_mono))
}

/// A change of the wall clock's offset smaller than this is jitter, not a
/// step of the host's clock.
const REAL_STEP: u64 = 1_000_000;

/// How far behind the host's clock the guests' may fall before it jumps
/// forward instead of catching up gradually.
const STEP_AFTER: u64 = 20_000_000;

/// Fixed-point shift of [`TscClock`]'s rate.
const SHIFT: u32 = 32;
/// How often (in host ns) the clock is re-anchored to the host's clock.
const ANCHOR_EVERY: u64 = 1_000_000_000;
/// The steepest correction of the rate while catching up with the host
/// clock (parts per million).
const MAX_SLEW_PPM: i64 = 500;

#[derive(Clone, Copy, Debug)]
struct Params {
    tsc_base: u64,
    mono_base: u64,
    mult: u64,
    real_offset: u64,
}

impl Params {
    fn at(&self, tsc: u64) -> u64 {
        let d = tsc.saturating_sub(self.tsc_base) as u128;
        self.mono_base.saturating_add(((d * self.mult as u128) >> SHIFT) as u64)
    }
}

/// The guests' clock: monotonic time since boot as an affine function of
/// the TSC, which the kernel reads and guests read through the vDSO's data
/// page alike (see [`crate::vdso`]). Every [`ANCHOR_EVERY`] it is
/// re-anchored to the host's `CLOCK_MONOTONIC`: the function continues from
/// where it is (never backwards) at a rate corrected to converge on the host
/// clock, and the realtime offset follows the host's wall clock. Without a
/// reliable TSC it is the host's `CLOCK_MONOTONIC` itself (and the vDSO
/// makes system calls).
pub struct TscClock {
    tsc: bool,
    /// Host `CLOCK_MONOTONIC` at boot: guest monotonic 0.
    boot_mono: u64,
    p: std::cell::Cell<Params>,
    /// The first anchor (host monotonic ns, TSC): the long baseline of the
    /// rate estimate.
    first: (u64, u64),
    /// Host monotonic ns at the last anchor.
    anchored: std::cell::Cell<u64>,
    /// The data page in the kernel's mapping of guest memory, once published.
    page: std::cell::Cell<*mut u8>,
}

/// (host monotonic ns, TSC) read as close together as possible.
fn sample() -> (u64, u64) {
    let a = clock_ns(libc::CLOCK_MONOTONIC);
    let t = rdtsc();
    let b = clock_ns(libc::CLOCK_MONOTONIC);
    (a / 2 + b / 2 + (a & b & 1), t)
}

impl TscClock {
    /// A clock starting at 0 now.
    pub fn new() -> TscClock {
        let tsc = tsc_is_reliable();
        let (h0, t0) = sample();
        let mut mult = 1u64 << SHIFT;
        if tsc {
            // A first rate from a short look; re-anchoring refines it.
            let (mut h1, mut t1) = sample();
            while h1 - h0 < 200_000 {
                std::hint::spin_loop();
                (h1, t1) = sample();
            }
            mult = ((((h1 - h0) as u128) << SHIFT) / u128::from((t1 - t0).max(1))) as u64;
        }
        let p = Params { tsc_base: t0, mono_base: 0, mult, real_offset: real_offset(h0) };
        TscClock {
            tsc,
            boot_mono: h0,
            p: std::cell::Cell::new(p),
            first: (h0, t0),
            anchored: std::cell::Cell::new(h0),
            page: std::cell::Cell::new(std::ptr::null_mut()),
        }
    }

    /// Host `CLOCK_MONOTONIC` at boot.
    pub fn boot_mono(&self) -> u64 {
        self.boot_mono
    }

    /// Guest `CLOCK_MONOTONIC` (ns since boot).
    #[inline]
    pub fn now(&self) -> u64 {
        if !self.tsc {
            return clock_ns(libc::CLOCK_MONOTONIC) - self.boot_mono;
        }
        let t = rdtsc();
        let p = self.p.get();
        let v = p.at(t);
        // Cheap staleness test first: TSC ticks since the anchor, in ns.
        if v.saturating_sub(p.mono_base) >= ANCHOR_EVERY {
            return self.anchor(v);
        }
        v
    }

    /// Guest `CLOCK_REALTIME` (ns since the epoch).
    pub fn realtime(&self) -> u64 {
        if !self.tsc {
            return clock_ns(libc::CLOCK_REALTIME);
        }
        let now = self.now();
        now.saturating_add(self.p.get().real_offset)
    }

    /// Re-anchor where the clock reads `v` (just read): continue from `v`
    /// at the long-baseline rate, corrected to catch up with the host clock.
    fn anchor(&self, v: u64) -> u64 {
        let (h, ht) = sample();
        let p = self.p.get();
        // The clock at the host sample's TSC (continuity: never below `v`).
        let mut here = p.at(ht).max(v);
        let target = h.saturating_sub(self.boot_mono);
        // Far behind the host (the TSC stopped or slowed: a suspended or
        // migrated VM): jump forward rather than slew for hours.
        if target > here + STEP_AFTER {
            here = target;
        }
        let (h0, t0) = self.first;
        let base = ((h.saturating_sub(h0) as u128) << SHIFT) / u128::from(ht.saturating_sub(t0).max(1));
        // Catch up (or fall back) over the next period, within the slew limit.
        let err = target as i64 - here as i64;
        let ppm = (err.saturating_mul(1_000_000) / ANCHOR_EVERY as i64).clamp(-MAX_SLEW_PPM, MAX_SLEW_PPM);
        let mult = (base as i128 + base as i128 * ppm as i128 / 1_000_000) as u64;
        // The wall clock keeps its offset from the host's monotonic clock
        // (which the guests' one follows), so that re-anchoring never moves
        // it; only a step of the host's wall clock (beyond the jitter of
        // reading two clocks) moves it.
        let mut offset = p.real_offset;
        let now_offset = real_offset(self.boot_mono);
        if now_offset.abs_diff(offset) > REAL_STEP {
            offset = now_offset;
        }
        let np = Params { tsc_base: ht, mono_base: here, mult: mult.max(1), real_offset: offset };
        self.p.set(np);
        self.anchored.set(h);
        self.write_page(&np);
        np.at(rdtsc().max(ht))
    }

    /// Keep the data page at `page` current from now on (null: none).
    pub fn publish(&self, page: *mut u8) {
        self.page.set(page);
        let p = self.p.get();
        self.write_page(&p);
    }

    fn write_page(&self, p: &Params) {
        use crate::vdso::vvar;
        let page = self.page.get();
        if page.is_null() {
            return;
        }
        // SAFETY: `page` is a page-aligned 4 KiB page of guest physical memory, mapped in this process for the kernel's life, which guests map read-only; the fields are naturally aligned, written as atomics under the sequence count the readers check.
        unsafe {
            let at32 = |off: usize| &*(page.add(off) as *const AtomicU32);
            let at64 = |off: usize| &*(page.add(off) as *const std::sync::atomic::AtomicU64);
            let seq = at32(vvar::SEQ);
            let s = seq.load(Ordering::Relaxed);
            seq.store(s.wrapping_add(1) | 1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            at32(vvar::FLAGS).store(if self.tsc { vvar::FLAG_TSC } else { 0 }, Ordering::Relaxed);
            at64(vvar::TSC_BASE).store(p.tsc_base, Ordering::Relaxed);
            at64(vvar::MONO_BASE).store(p.mono_base, Ordering::Relaxed);
            at64(vvar::MULT).store(p.mult, Ordering::Relaxed);
            at32(vvar::SHIFT).store(SHIFT, Ordering::Relaxed);
            at64(vvar::REAL_OFFSET).store(p.real_offset, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
            seq.store((s | 1).wrapping_add(1), Ordering::SeqCst);
        }
    }
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}
