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

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

/// The signal the timer sends to the kernel thread and the kernel sends to a
/// running stub.
pub const TIMER_SIGNAL: i32 = libc::SIGALRM;

/// State shared with the signal handler.
#[derive(Debug, Default)]
pub struct TimerShared {
    fired: AtomicBool,
    current: AtomicI32,
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
    /// The stub running guest code now (0: none), for other interrupt
    /// sources that kick it the same way (`host`'s network watcher).
    pub fn current(&self) -> i32 {
        self.current.load(Ordering::SeqCst)
    }
}

extern "C" fn on_timer(_sig: i32, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; si_value is only read for SI_TIMER signals, whose value is a leaked `TimerShared` (see `Timer::new`), valid for the life of the process.
    unsafe {
        if (*info).si_code != libc::SI_TIMER {
            return;
        }
        let shared = (*info).si_value().sival_ptr as *const TimerShared;
        if shared.is_null() {
            return;
        }
        (*shared).fired.store(true, Ordering::SeqCst);
        let pid = (*shared).current.load(Ordering::SeqCst);
        if pid > 0 {
            libc::kill(pid, TIMER_SIGNAL);
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
