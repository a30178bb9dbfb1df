//! The host side every backend needs besides running guest code: clocks, the
//! one-shot timer, the console, wait-for-interrupt, entropy and the log, and
//! CPU pinning. Shared by skas and tt.

use crate::timer::{self, Timer, TimerShared};
use drivers::console::HostConsole;
use hal::{Console, Interrupts};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

/// The CPUs the kernel may use, as they were before it pinned itself: the
/// stubs' zygote works on all of them (see [`crate::spawn`]).
static ALLOWED: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// The CPUs the process was allowed before pinning (or now).
pub fn allowed_cpus() -> libc::cpu_set_t {
    *ALLOWED.get_or_init(|| {
        // SAFETY: the cpu_set_t is zeroed, then filled by sched_getaffinity with its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            set
        }
    })
}

/// How many CPUs the process was allowed before pinning.
pub fn cpu_count() -> usize {
    let set = allowed_cpus();
    // SAFETY: CPU_COUNT reads the set it is given.
    (unsafe { libc::CPU_COUNT(&set) }).max(1) as usize
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Pin the calling thread (and so the processes it creates) to `cpu`: a
/// ptrace round trip across CPUs costs about six times more.
pub fn pin_to(cpu: usize) {
    allowed_cpus();
    // SAFETY: the cpu_set_t is zeroed before use and passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Put the calling thread (and the processes it creates) in `SCHED_BATCH`:
/// a batch thread that is woken does not preempt the one that woke it. When
/// a stub hands a trap over it wakes the kernel and then parks itself; with
/// both on one CPU the kernel then runs only once the stub is parked, which
/// is both the cheaper switch and the one the kernel must see before it
/// leaves the stub (and the same holds the other way round).
pub fn batch_policy() {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &p) };
}

/// A CPU the calling thread may use other than the one it runs on (the
/// next one in the affinity mask it had before pinning), if any.
pub fn other_cpu() -> Option<usize> {
    let cur = current_cpu()?;
    let set = allowed_cpus();
    let n = libc::CPU_SETSIZE as usize;
    // SAFETY: CPU_ISSET reads the set it is given, at an index below CPU_SETSIZE.
    (1..n).map(|i| (cur + i) % n).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
}

/// The readiness descriptors of the network links attached to this kernel
/// (`--net`). Process-wide: the links are made by the command line before
/// the HAL exists, and one kernel process runs one guest.
///
/// Two pollers watch them. While the kernel idles,
/// [`HostMachine::wait_for_interrupt`] sleeps on them itself. While guest
/// code runs, a watcher thread sleeps on them and, when one becomes
/// readable, raises [`NET_PENDING`] and kicks the running stub (or the
/// kernel thread) with the timer's signal, exactly as a timer expiry does,
/// so that `run` returns [`Interrupts::NET`] and a busy guest does not
/// starve its network. After each raise the watcher waits for the kernel to
/// take the interrupt and then 1 ms more, so a link the kernel has not
/// drained yet costs at most a thousand interrupts a second, and an idle
/// link nothing.
static NET_FDS: Mutex<Vec<NetFd>> = Mutex::new(Vec::new());
static NET_NEXT: AtomicU64 = AtomicU64::new(1);
/// A network interrupt not yet reported to the kernel.
static NET_PENDING: AtomicBool = AtomicBool::new(false);
/// An eventfd that wakes the watcher when the set of links changes (-1
/// before the watcher starts).
static WATCH_CTL: AtomicI32 = AtomicI32::new(-1);

struct NetFd {
    id: u64,
    fd: RawFd,
    /// Hung up or failed for good: no longer polled, so that a dead link
    /// cannot keep the idle loop spinning.
    dead: bool,
}

/// Registration of one link's readiness descriptor; dropping it (with the
/// link, before its descriptor closes) stops the polling.
#[derive(Debug)]
pub struct NetWatch(u64);

fn wake_watcher() {
    let fd = WATCH_CTL.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to the watcher's eventfd.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Have the kernel's interrupts include [`Interrupts::NET`] whenever `fd`
/// polls readable. The caller keeps `fd` open while the returned guard lives.
pub fn watch_net_fd(fd: RawFd) -> NetWatch {
    let id = NET_NEXT.fetch_add(1, Ordering::Relaxed);
    NET_FDS.lock().unwrap_or_else(|e| e.into_inner()).push(NetFd { id, fd, dead: false });
    wake_watcher();
    NetWatch(id)
}

impl Drop for NetWatch {
    fn drop(&mut self) {
        NET_FDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| n.id != self.0);
        wake_watcher();
    }
}

/// The live links' descriptors, with their registration ids.
fn live_net_fds() -> Vec<(u64, RawFd)> {
    let l = NET_FDS.lock().unwrap_or_else(|e| e.into_inner());
    l.iter().filter(|n| !n.dead).map(|n| (n.id, n.fd)).collect()
}

/// Look at poll results for the links: true if one has frames. A link that
/// only reports an error or hang-up is marked dead (counted once, then no
/// longer polled).
fn net_revents(pfd: &[libc::pollfd], nets: &[(u64, RawFd)]) -> bool {
    let mut any = false;
    for (p, &(id, _)) in pfd.iter().zip(nets) {
        if p.revents == 0 {
            continue;
        }
        any = true;
        if p.revents & libc::POLLIN == 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            let mut l = NET_FDS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = l.iter_mut().find(|n| n.id == id) {
                n.dead = true;
            }
        }
    }
    any
}

/// The interrupts pending for the guest kernel: the timer's expiry and the
/// network watcher's, taken (cleared) together. `run` implementations call
/// this where they check the timer.
pub fn take_interrupts(timer: &TimerShared) -> Interrupts {
    let mut irq = Interrupts::empty();
    if timer.take_fired() {
        irq |= Interrupts::TIMER;
    }
    // A load first: this runs before every resume of guest code, and the
    // flag is nearly always clear.
    if NET_PENDING.load(Ordering::SeqCst) && NET_PENDING.swap(false, Ordering::SeqCst) {
        irq |= Interrupts::NET;
    }
    irq
}

/// Whether [`take_interrupts`] would report something.
pub fn interrupt_pending(timer: &TimerShared) -> bool {
    timer.fired() || NET_PENDING.load(Ordering::SeqCst)
}

/// Start the network watcher (once per process), if links are attached.
fn start_net_watcher(timer: &'static TimerShared) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if NET_FDS.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    STARTED.call_once(|| {
        // SAFETY: plain eventfd(2) call; the descriptor lives as long as the process.
        let ctl = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if ctl < 0 {
            return;
        }
        WATCH_CTL.store(ctl, Ordering::SeqCst);
        // SAFETY: gettid has no preconditions.
        let kernel_tid = unsafe { libc::gettid() };
        let _ = std::thread::Builder::new().name("net-watch".into()).spawn(move || net_watcher(timer, ctl, kernel_tid));
    });
}

fn net_watcher(timer: &'static TimerShared, ctl: RawFd, kernel_tid: libc::pid_t) {
    // SAFETY: getpid has no preconditions.
    let tgid = unsafe { libc::getpid() };
    loop {
        let nets = live_net_fds();
        let mut pfd = vec![libc::pollfd { fd: ctl, events: libc::POLLIN, revents: 0 }];
        pfd.extend(nets.iter().map(|&(_, fd)| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }));
        // SAFETY: `pfd` holds `pfd.len()` valid entries.
        let r = unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as libc::nfds_t, -1) };
        if r <= 0 {
            continue;
        }
        if pfd[0].revents != 0 {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a valid u64 (drains the eventfd).
            unsafe { libc::read(ctl, (&mut v as *mut u64).cast(), 8) };
            continue;
        }
        if !net_revents(&pfd[1..], &nets) {
            continue;
        }
        // Raise before looking at who runs: whoever starts a stub after
        // this sees the flag; a stub already running gets the kick.
        NET_PENDING.store(true, Ordering::SeqCst);
        let pid = timer.current();
        // SAFETY: kill/tgkill with the timer's signal, whose handler ignores anything but timer expiries; the stub absorbs a late kick.
        unsafe {
            if pid > 0 {
                libc::kill(pid, crate::timer::TIMER_SIGNAL);
            } else {
                libc::syscall(libc::SYS_tgkill, tgid, kernel_tid, crate::timer::TIMER_SIGNAL);
            }
        }
        while NET_PENDING.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
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
        let timer = Timer::new()?;
        start_net_watcher(timer.shared());
        Ok(HostMachine { timer, console: HostConsole::new(), boot_mono: timer::clock_ns(libc::CLOCK_MONOTONIC), deadline: None })
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
            let irq = take_interrupts(self.timer.shared());
            if !irq.is_empty() {
                return irq;
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
            let mut pfd = Vec::with_capacity(4);
            let console = self.console.input_armed();
            if let Some(fd) = console {
                pfd.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            }
            let nets = live_net_fds();
            let first_net = pfd.len();
            for &(_, fd) in &nets {
                pfd.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            }
            let tp = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `pfd` holds `pfd.len()` valid entries; `tp` is null or valid.
            let r = unsafe { libc::ppoll(pfd.as_mut_ptr(), pfd.len() as libc::nfds_t, tp, std::ptr::null()) };
            if r > 0 {
                let mut irq = Interrupts::empty();
                if console.is_some() && pfd[0].revents != 0 {
                    self.console.input_reported(pfd[0].revents & libc::POLLNVAL != 0);
                    irq |= Interrupts::CONSOLE;
                }
                if net_revents(&pfd[first_net..], &nets) {
                    irq |= Interrupts::NET;
                }
                if !irq.is_empty() {
                    // Whatever else is pending goes too (the watcher's raise
                    // of the same frames included).
                    return irq | take_interrupts(self.timer.shared());
                }
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
        fn fpu_layout(&self) -> hal::FpuLayout {
            $crate::xstate::layout()
        }
        fn now_ns(&self) -> u64 {
            self.host.now_ns()
        }
        fn wait_for_interrupt(&mut self) -> hal::Interrupts {
            self.host.wait_for_interrupt()
        }
        fn realtime_ns(&self) -> u64 {
            self.host.realtime_ns()
        }
        fn set_timer(&mut self, deadline_ns: Option<u64>) {
            self.host.set_timer(deadline_ns);
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
