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
    pub fn set_current(&self, pid: i32) {
        self.current.store(pid, Ordering::SeqCst);
    }
    /// Take the expiry flag.
    pub fn take_fired(&self) -> bool {
        self.fired.swap(false, Ordering::SeqCst)
    }
    /// Whether the timer expired and was not yet reported.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
    /// The stub running guest code now (0: none).
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
    pub fn want_rearm(&self, bits: u32) {
        self.rearm.fetch_or(bits, Ordering::Relaxed);
    }
    /// Take the sources to re-arm.
    pub fn take_rearm(&self) -> u32 {
        if self.rearm.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.rearm.swap(0, Ordering::Relaxed)
    }
    /// The event hub's epoll descriptor (-1: none).
    pub fn epfd(&self) -> i32 {
        self.epfd.load(Ordering::Relaxed)
    }
    /// Record the event hub's epoll descriptor.
    pub fn set_epfd(&self, fd: i32) {
        self.epfd.store(fd, Ordering::Relaxed);
    }
    /// Take the device interrupts raised so far.
    pub fn take_pending(&self) -> u32 {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        self.pending.swap(0, Ordering::SeqCst)
    }
    /// Whether device interrupts wait to be taken.
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
