//! The host side every backend needs besides running guest code: clocks, the
//! one-shot timer, the console, wait-for-interrupt, entropy and the log, and
//! CPU pinning. Shared by skas and tt.

use crate::timer::{self, Timer, TimerShared};
use drivers::console::HostConsole;
use hal::{Console, Interrupts};
use std::io::{self, Write};

/// Pin the calling thread (and so the processes it creates) to the CPU it
/// runs on: a ptrace round trip across CPUs costs about six times more.
pub fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed before use and passed with its size.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A CPU the calling thread may use other than the one it runs on (the
/// next one in its affinity mask), if any.
pub fn other_cpu() -> Option<usize> {
    // SAFETY: the cpu_set_t is zeroed, then filled by sched_getaffinity with its size.
    unsafe {
        let cur = libc::sched_getcpu();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cur < 0 || libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let n = libc::CPU_SETSIZE as usize;
        (1..n).map(|i| (cur as usize + i) % n).find(|&c| libc::CPU_ISSET(c, &set))
    }
}

/// Time, timer, console, entropy and log of one HAL: the parts of
/// [`hal::Hal`] that do not depend on how guest code runs.
pub struct HostMachine {
    timer: Timer,
    console: HostConsole,
    boot_mono: u64,
    deadline: Option<u64>,
}

impl HostMachine {
    /// Create the timer (directed at the calling thread) and the console.
    pub fn new() -> io::Result<HostMachine> {
        Ok(HostMachine {
            timer: Timer::new()?,
            console: HostConsole::new(),
            boot_mono: timer::clock_ns(libc::CLOCK_MONOTONIC),
            deadline: None,
        })
    }

    /// The state shared with the timer's signal handler.
    pub fn timer(&self) -> &'static TimerShared {
        self.timer.shared()
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: HostConsole) {
        self.console = console;
    }

    /// [`hal::Hal::now_ns`].
    pub fn now_ns(&self) -> u64 {
        timer::clock_ns(libc::CLOCK_MONOTONIC) - self.boot_mono
    }

    /// [`hal::Hal::realtime_ns`].
    pub fn realtime_ns(&self) -> u64 {
        timer::clock_ns(libc::CLOCK_REALTIME)
    }

    /// [`hal::Hal::set_timer`].
    pub fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.deadline = deadline_ns;
        self.timer.set(deadline_ns.map(|d| d.saturating_add(self.boot_mono)));
    }

    /// [`hal::Hal::wait_for_interrupt`].
    pub fn wait_for_interrupt(&mut self) -> Interrupts {
        loop {
            if self.timer.shared().take_fired() {
                return Interrupts::TIMER;
            }
            let timeout = match self.deadline {
                Some(d) => {
                    let now = self.now_ns();
                    if now >= d {
                        // Due by our clock: report it now; the POSIX timer's
                        // own signal may still follow as a spurious tick.
                        self.deadline = None;
                        return Interrupts::TIMER;
                    }
                    let left = d - now;
                    Some(libc::timespec {
                        tv_sec: (left / 1_000_000_000) as i64,
                        tv_nsec: (left % 1_000_000_000) as i64,
                    })
                }
                None => None,
            };
            let mut pfd = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }];
            let n = match self.console.input_armed() {
                Some(fd) => {
                    pfd[0].fd = fd;
                    1
                }
                None => 0,
            };
            let tp = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `pfd` holds `n` valid entries; `tp` is null or valid.
            let r = unsafe { libc::ppoll(pfd.as_mut_ptr(), n, tp, std::ptr::null()) };
            if r > 0 && pfd[0].revents != 0 {
                self.console.input_reported(pfd[0].revents & libc::POLLNVAL != 0);
                let mut irq = Interrupts::CONSOLE;
                if self.timer.shared().take_fired() {
                    irq |= Interrupts::TIMER;
                }
                return irq;
            }
            // Timeout, EINTR (the timer's signal), or nothing: re-check.
        }
    }

    /// [`hal::Hal::console`].
    pub fn console(&mut self) -> &mut dyn Console {
        &mut self.console
    }

    /// [`hal::Hal::random`].
    pub fn random(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        while off < buf.len() {
            // SAFETY: writing into the valid remainder of `buf`.
            let n = unsafe { libc::getrandom(buf[off..].as_mut_ptr().cast(), buf.len() - off, 0) };
            if n > 0 {
                off += n as usize;
            } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                panic!("getrandom failed: {}", io::Error::last_os_error());
            }
        }
    }

    /// [`hal::Hal::log`].
    pub fn log(&mut self, line: &str) {
        let mut e = io::stderr().lock();
        let _ = writeln!(e, "{line}");
    }
}

/// The [`hal::Hal`] methods that every backend answers from its
/// [`HostMachine`] (a field named `host`): time, timer, idle wait, console,
/// entropy and log are the same host facilities for skas and tt.
#[macro_export]
macro_rules! host_hal_methods {
    () => {
        fn now_ns(&self) -> u64 {
            self.host.now_ns()
        }
        fn realtime_ns(&self) -> u64 {
            self.host.realtime_ns()
        }
        fn set_timer(&mut self, deadline_ns: Option<u64>) {
            self.host.set_timer(deadline_ns);
        }
        fn wait_for_interrupt(&mut self) -> hal::Interrupts {
            self.host.wait_for_interrupt()
        }
        fn console(&mut self) -> &mut dyn hal::Console {
            self.host.console()
        }
        fn random(&mut self, buf: &mut [u8]) {
            self.host.random(buf);
        }
        fn log(&mut self, line: &str) {
            self.host.log(line);
        }
    };
}
