//! The host side every backend needs besides running guest code: clocks, the
//! one-shot timer, the console, wait-for-interrupt, entropy and the log, and
//! CPU pinning. Shared by skas and tt.

use crate::timer::{self, Timer, TimerShared};
use drivers::console::HostConsole;
use hal::{Console, Interrupts};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The CPUs the kernel may use, as they were before it pinned itself: the
/// stubs' zygote works on all of them (see `hal-uml-x86_64`'s `spawn`).
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

/// A CPU the calling thread may use other than the one it runs on (the
/// next one in the affinity mask it had before pinning), if any.
pub fn other_cpu() -> Option<usize> {
    let cur = current_cpu()?;
    let set = allowed_cpus();
    let n = libc::CPU_SETSIZE as usize;
    // SAFETY: CPU_ISSET reads the set it is given, at an index below CPU_SETSIZE.
    (1..n).map(|i| (cur + i) % n).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
}

/// User-mode CPU time (ns) host process `pid` has used, as the host
/// accounts it: what a stub ran of guest code. The host knows the precise
/// run time (`CPUCLOCK_SCHED`) and samples user against system mode at its
/// ticks (`CPUCLOCK_VIRT`, `CPUCLOCK_PROF`); like the host's own
/// `/proc/PID/stat`, the user time is the run time split by the samples.
pub fn process_user_cpu_ns(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let read = |which: i32| {
        // Linux's MAKE_PROCESS_CPUCLOCK(pid, which).
        let clock = (!pid << 3) | which;
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-parameter; the clock id names one of the process's CPU clocks.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return None;
        }
        Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    };
    let (prof, virt, sched) = (read(0)?, read(1)?, read(2)?);
    if prof == 0 {
        // No sample yet: all of it, as the host's cputime_adjust does.
        return Some(sched);
    }
    Some((sched as u128 * virt.min(prof) as u128 / prof as u128) as u64)
}

/// The readiness descriptors of the network links attached to this kernel
/// (`--net`). Process-wide: the links are made by the command line before
/// the HAL exists; every [`EventHub`] alive watches all of them (one in the
/// kernel binaries).
static NET_FDS: Mutex<Vec<NetFd>> = Mutex::new(Vec::new());
static NET_NEXT: AtomicU64 = AtomicU64::new(1);
/// The live hubs' epoll descriptors, for links registered after them.
static HUB_EPFDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

struct NetFd {
    id: u64,
    fd: RawFd,
}

/// Registration of one link's readiness descriptor; dropping it (with the
/// link, before its descriptor closes) stops the watching.
#[derive(Debug)]
pub struct NetWatch(u64);

/// epoll data of the hub's own eventfd, of the console, and (plus the
/// registration id) of the links.
const TAG_CTL: u64 = 0;
const TAG_CONSOLE: u64 = 1;
const TAG_NET: u64 = 1 << 32;
/// Console line `n` (`/dev/ttyN`): tag `TAG_LINE + n`.
const TAG_LINE: u64 = 1 << 40;

/// The channels of the console lines, from the command line (before the
/// HAL exists): (line number, channel).
static LINES: Mutex<Vec<(u32, drivers::console_chan::Channel)>> = Mutex::new(Vec::new());

/// Attach `chan` to console line `n` (1 to 6) of the HAL made next.
pub fn attach_console_line(n: u32, chan: drivers::console_chan::Channel) {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).push((n, chan));
}

/// One-shot readiness: a source reported once is not reported again until
/// the kernel has dealt with it and re-armed it, so an undrained source
/// costs one interrupt per pass of the kernel's loop, never a storm.
const ONESHOT_IN: u32 = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;

fn epoll_ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32, tag: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: tag };
    // SAFETY: `ev` is a valid epoll_event; the kernel checks both descriptors.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Have the kernel's interrupts include [`Interrupts::NET`] whenever `fd`
/// polls readable. The caller keeps `fd` open while the returned guard lives.
pub fn watch_net_fd(fd: RawFd) -> NetWatch {
    let id = NET_NEXT.fetch_add(1, Ordering::Relaxed);
    NET_FDS.lock().unwrap_or_else(|e| e.into_inner()).push(NetFd { id, fd });
    for &ep in HUB_EPFDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, ONESHOT_IN, TAG_NET + id);
    }
    NetWatch(id)
}

impl Drop for NetWatch {
    fn drop(&mut self) {
        let mut l = NET_FDS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = l.iter().position(|n| n.id == self.0) {
            let n = l.remove(i);
            for &ep in HUB_EPFDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, n.fd, 0, 0);
            }
        }
    }
}

/// The interrupts pending for the guest kernel: the timer's expiry and the
/// event watcher's, taken (cleared) together. `run` implementations call
/// this where they check the timer, before resuming guest code.
///
/// Links reported by the previous call are re-armed first: by now the
/// kernel has drained them (its loop polls the network before it runs a
/// task again), so a link that is still readable reports again.
#[inline]
pub fn take_interrupts(timer: &TimerShared) -> Interrupts {
    if timer.take_rearm() != 0 {
        rearm_nets(timer.epfd());
    }
    let mut irq = Interrupts::empty();
    if timer.take_fired() {
        irq |= Interrupts::TIMER;
    }
    let dev = Interrupts::from_bits_truncate(timer.take_pending());
    if dev.contains(Interrupts::NET) {
        timer.want_rearm(Interrupts::NET.bits());
    }
    irq | dev
}

fn rearm_nets(epfd: RawFd) {
    if epfd < 0 {
        return;
    }
    for n in NET_FDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = epoll_ctl(epfd, libc::EPOLL_CTL_MOD, n.fd, ONESHOT_IN, TAG_NET + n.id);
    }
}

/// Whether [`take_interrupts`] would report something.
#[inline]
pub fn interrupt_pending(timer: &TimerShared) -> bool {
    timer.fired() || timer.has_pending()
}

/// Every host event source of one kernel in one epoll set, watched by a
/// thread of its own: the console's input, the terminal's size (through the
/// `SIGWINCH` handler's eventfd) and the network links.
///
/// The watcher never touches a stub. When a source is ready it records the
/// interrupt ([`TimerShared::raise`]) and signals the kernel thread: a
/// guest that is running is then kicked by the kernel thread's own handler,
/// exactly as a timer expiry kicks it, and an idle kernel wakes from
/// [`HostMachine::wait_for_interrupt`]. Sources are one-shot and re-armed
/// by the kernel once it has read them (the console in
/// [`WatchedConsole`]'s read, the links in [`take_interrupts`]).
struct EventHub {
    epfd: OwnedFd,
    /// Wakes the watcher: a resize notice, or the request to stop.
    ctl: OwnedFd,
    quit: AtomicBool,
    /// The console reported input the kernel has not read yet.
    console_fired: AtomicBool,
    /// Console lines that reported input (bit n), not re-armed yet.
    lines_fired: std::sync::atomic::AtomicU32,
    timer: &'static TimerShared,
}

impl EventHub {
    fn new(timer: &'static TimerShared) -> io::Result<Arc<EventHub>> {
        // SAFETY: plain epoll_create1/eventfd calls; results checked before use.
        let (ep, ctl) = unsafe { (libc::epoll_create1(libc::EPOLL_CLOEXEC), libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) };
        if ep < 0 || ctl < 0 {
            let e = io::Error::last_os_error();
            for fd in [ep, ctl] {
                if fd >= 0 {
                    // SAFETY: closing a descriptor we just created.
                    unsafe { libc::close(fd) };
                }
            }
            return Err(e);
        }
        // SAFETY: both were just created and are owned by nobody else.
        let (epfd, ctl) = unsafe { (OwnedFd::from_raw_fd(ep), OwnedFd::from_raw_fd(ctl)) };
        epoll_ctl(ep, libc::EPOLL_CTL_ADD, ctl.as_raw_fd(), libc::EPOLLIN as u32, TAG_CTL)?;
        {
            let nets = NET_FDS.lock().unwrap_or_else(|e| e.into_inner());
            let mut hubs = HUB_EPFDS.lock().unwrap_or_else(|e| e.into_inner());
            for n in nets.iter() {
                let _ = epoll_ctl(ep, libc::EPOLL_CTL_ADD, n.fd, ONESHOT_IN, TAG_NET + n.id);
            }
            hubs.push(ep);
        }
        timer.set_epfd(ep);
        if let Some(c) = crate::control::server() {
            c.attach(ep);
        }
        Ok(Arc::new(EventHub { epfd, ctl, quit: AtomicBool::new(false), console_fired: AtomicBool::new(false), lines_fired: Default::default(), timer }))
    }

    fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.ctl.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn watch(&self) {
        // Stubs sharing the kernel's CPU run SCHED_BATCH (see
        // `stub::build_image_with`); the watcher, like the kernel thread,
        // keeps SCHED_OTHER, so that when woken it preempts a guest busy on
        // this CPU at once.
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        loop {
            // SAFETY: `evs` has room for `evs.len()` events.
            let n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, -1) };
            if self.quit.load(Ordering::SeqCst) {
                return;
            }
            let mut bits = 0;
            for ev in evs.iter().take(n.max(0) as usize) {
                let (tag, events) = (ev.u64, ev.events);
                match tag {
                    TAG_CTL => {
                        let mut v = 0u64;
                        // SAFETY: reads 8 bytes into a valid u64 (drains the eventfd).
                        unsafe { libc::read(self.ctl.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                        if drivers::console::take_resize_notice() {
                            bits |= Interrupts::CONSOLE.bits();
                        }
                    }
                    TAG_CONSOLE => {
                        self.console_fired.store(true, Ordering::SeqCst);
                        bits |= Interrupts::CONSOLE.bits();
                    }
                    t if (TAG_LINE..TAG_LINE + 64).contains(&t) => {
                        self.lines_fired.fetch_or(1 << (t - TAG_LINE), Ordering::SeqCst);
                        bits |= Interrupts::CONSOLE.bits();
                    }
                    t if t == crate::control::TAG_LISTEN || t >= crate::control::TAG_CLIENT => {
                        if crate::control::server().is_some_and(|c| c.on_event(t, events)) {
                            bits |= Interrupts::CONTROL.bits();
                        }
                    }
                    _ => bits |= Interrupts::NET.bits(),
                }
            }
            if bits != 0 {
                self.timer.raise(bits);
            }
        }
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        let ep = self.epfd.as_raw_fd();
        HUB_EPFDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&e| e != ep);
        drivers::console::clear_resize_notify(self.ctl.as_raw_fd());
    }
}

/// How the console's input is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputWatch {
    /// Not at all (end of input).
    None,
    /// In the hub's epoll set (terminals, pipes, sockets).
    Epoll(RawFd),
    /// A file or device epoll refuses (a regular file, `/dev/null`): always
    /// ready. Reported when the kernel goes idle (it is input nobody types:
    /// the guest reads it when it waits for it), again after every read that
    /// returned data.
    Always,
}

/// The console as the kernel sees it: the host console, with its input
/// watched by the hub and re-armed each time the kernel reads it.
struct WatchedConsole {
    inner: HostConsole,
    hub: Arc<EventHub>,
    input: InputWatch,
    /// [`InputWatch::Always`]: input may be waiting that was not reported.
    due: bool,
}

impl WatchedConsole {
    fn new(inner: HostConsole, hub: Arc<EventHub>) -> WatchedConsole {
        let mut c = WatchedConsole { inner, hub, input: InputWatch::None, due: false };
        c.attach();
        c
    }

    /// Whether an always-ready console has input to report to an idle kernel.
    fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    fn attach(&mut self) {
        self.input = match self.inner.input_fd() {
            None => InputWatch::None,
            Some(fd) => match epoll_ctl(self.hub.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, ONESHOT_IN, TAG_CONSOLE) {
                Ok(()) => InputWatch::Epoll(fd),
                // Not pollable, or not a descriptor at all (the first read
                // then reports end of input).
                Err(_) => {
                    self.due = true;
                    InputWatch::Always
                }
            },
        };
        if self.inner.is_terminal() {
            drivers::console::set_resize_notify(self.hub.ctl.as_raw_fd());
        }
    }

    fn detach(&mut self) {
        if let InputWatch::Epoll(fd) = self.input {
            let _ = epoll_ctl(self.hub.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
        self.input = InputWatch::None;
    }
}

impl Drop for WatchedConsole {
    fn drop(&mut self) {
        self.detach();
    }
}

impl Console for WatchedConsole {
    fn write(&mut self, stream: hal::ConsoleStream, data: &[u8]) {
        self.inner.write(stream, data);
    }
    fn read(&mut self, buf: &mut [u8]) -> hal::ConsoleRead {
        let r = self.inner.read(buf);
        if self.inner.input_fd().is_none() {
            self.detach();
            return r;
        }
        match self.input {
            InputWatch::Epoll(fd) => {
                if self.hub.console_fired.swap(false, Ordering::SeqCst) {
                    let _ = epoll_ctl(self.hub.epfd.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, ONESHOT_IN, TAG_CONSOLE);
                }
            }
            InputWatch::Always => {
                if matches!(r, hal::ConsoleRead::Data(n) if n > 0) {
                    self.due = true;
                }
            }
            InputWatch::None => {}
        }
        r
    }
    fn is_terminal(&self) -> bool {
        self.inner.is_terminal()
    }
    fn window_size(&self) -> Option<(u16, u16)> {
        self.inner.window_size()
    }
}

/// A console line's channel, its descriptors in the hub's set (one-shot,
/// re-armed by the read after they fired, so an unread line never spins).
struct WatchedLine {
    n: u32,
    chan: drivers::console_chan::Channel,
    hub: Arc<EventHub>,
    armed: Vec<RawFd>,
}

impl WatchedLine {
    fn arm(&mut self) {
        let ep = self.hub.epfd.as_raw_fd();
        for fd in self.armed.drain(..) {
            let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
        for fd in self.chan.watch_fds() {
            if epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, ONESHOT_IN, TAG_LINE + self.n as u64).is_ok() {
                self.armed.push(fd);
            }
        }
    }
}

impl Drop for WatchedLine {
    fn drop(&mut self) {
        for fd in self.armed.drain(..) {
            let _ = epoll_ctl(self.hub.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }
}

impl Console for WatchedLine {
    fn write(&mut self, stream: hal::ConsoleStream, data: &[u8]) {
        self.chan.write(stream, data);
    }
    fn read(&mut self, buf: &mut [u8]) -> hal::ConsoleRead {
        let r = self.chan.read(buf);
        let bit = 1u32 << self.n;
        if self.hub.lines_fired.fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
            // (A port's descriptors change as clients come and go.)
            self.arm();
        }
        r
    }
    fn is_terminal(&self) -> bool {
        self.chan.is_terminal()
    }
    fn window_size(&self) -> Option<(u16, u16)> {
        None
    }
}

/// Time, timer, console, entropy and log of one HAL: the parts of
/// [`hal::Hal`] that do not depend on how guest code runs.
pub struct HostMachine {
    // Dropped first: the console leaves the hub's set before the hub goes.
    console: WatchedConsole,
    lines: Vec<WatchedLine>,
    hub: Arc<EventHub>,
    watcher: Option<std::thread::JoinHandle<()>>,
    timer: Timer,
    clock: timer::TscClock,
    deadline: Option<u64>,
}

impl HostMachine {
    /// Create the timer (directed at the calling thread), the event hub and
    /// its watcher thread, and the console.
    pub fn new() -> io::Result<HostMachine> {
        let timer = Timer::new()?;
        let hub = EventHub::new(timer.shared())?;
        let h = hub.clone();
        let watcher = std::thread::Builder::new().name("events".into()).spawn(move || h.watch())?;
        let console = WatchedConsole::new(HostConsole::new(), hub.clone());
        let mut lines = Vec::new();
        for (n, chan) in LINES.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let mut l = WatchedLine { n, chan, hub: hub.clone(), armed: Vec::new() };
            l.arm();
            lines.push(l);
        }
        Ok(HostMachine {
            console,
            lines,
            hub,
            watcher: Some(watcher),
            timer,
            clock: timer::TscClock::new(),
            deadline: None,
        })
    }

    /// The state shared with the timer's signal handler.
    #[inline]
    pub fn timer(&self) -> &'static TimerShared {
        self.timer.shared()
    }

    /// Replace the console (tests use pipes).
    pub fn set_console(&mut self, console: HostConsole) {
        self.console = WatchedConsole::new(console, self.hub.clone());
    }

    /// [`hal::Hal::now_ns`]: the guests' clock (see [`timer::TscClock`]).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.clock.now()
    }

    /// [`hal::Hal::realtime_ns`].
    pub fn realtime_ns(&self) -> u64 {
        self.clock.realtime()
    }

    /// [`hal::Hal::set_timer`]: the host timer is armed on the host's
    /// clock, at the guest deadline plus how far the host clock is ahead.
    pub fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.deadline = deadline_ns;
        let at = deadline_ns.map(|d| {
            let ahead = timer::clock_ns(libc::CLOCK_MONOTONIC) as i128 - self.clock.now() as i128;
            (d as i128 + ahead).clamp(1, u64::MAX as i128) as u64
        });
        self.timer.set(at);
    }

    /// [`hal::Hal::publish_clock`]: `base` is the kernel's mapping of guest
    /// physical memory (`size` bytes).
    pub fn publish_clock(&mut self, base: *mut u8, size: u64, paddr: u64) {
        if paddr % hal::PAGE_SIZE as u64 != 0 || paddr.checked_add(hal::PAGE_SIZE as u64).is_none_or(|e| e > size) {
            return;
        }
        // SAFETY: the page lies inside the mapping of `size` bytes at `base` (checked above).
        self.clock.publish(unsafe { base.add(paddr as usize) });
    }

    /// [`hal::Hal::wait_for_interrupt`]: sleep until the timer's signal or
    /// the watcher's notice. The signal is blocked while the pending
    /// interrupts are checked and unblocked atomically by the sleep
    /// (`ppoll`'s mask), so a notice between the two is never lost.
    pub fn wait_for_interrupt(&mut self) -> Interrupts {
        // SAFETY: sigset_t values are initialised by sigemptyset before use; pthread_sigmask only changes this thread's mask.
        let (mut block, mut old): (libc::sigset_t, libc::sigset_t) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: as above.
        unsafe {
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, timer::TIMER_SIGNAL);
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        }
        let mut open = old;
        // SAFETY: `open` is a valid sigset_t.
        unsafe { libc::sigdelset(&mut open, timer::TIMER_SIGNAL) };
        let irq = loop {
            let mut irq = take_interrupts(self.timer.shared());
            if self.console.take_due() {
                irq |= Interrupts::CONSOLE;
            }
            if !irq.is_empty() {
                break irq;
            }
            let timeout = match self.deadline {
                Some(d) => {
                    let now = self.now_ns();
                    if now >= d {
                        // Due by our clock: report it now; the POSIX timer's
                        // own signal may still follow as a spurious tick.
                        self.deadline = None;
                        break Interrupts::TIMER;
                    }
                    let left = d - now;
                    Some(libc::timespec { tv_sec: (left / 1_000_000_000) as i64, tv_nsec: (left % 1_000_000_000) as i64 })
                }
                None => None,
            };
            let tp = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: no descriptors; `tp` is null or a valid timespec; `open` is a valid mask.
            unsafe { libc::ppoll(std::ptr::null_mut(), 0, tp, &open) };
            // Timeout or EINTR (the timer's signal, the watcher's notice): re-check.
        };
        // SAFETY: restores the mask read above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        irq
    }

    /// [`hal::Hal::console`].
    pub fn console(&mut self) -> &mut dyn Console {
        &mut self.console
    }

    /// [`hal::Hal::console_line`].
    pub fn console_line(&mut self, n: u32) -> Option<&mut dyn Console> {
        self.lines.iter_mut().find(|l| l.n == n).map(|l| l as &mut dyn Console)
    }

    /// [`hal::Hal::control_take`]: the next request on the control socket.
    pub fn control_take(&mut self) -> Option<(u64, String)> {
        crate::control::server()?.take()
    }

    /// [`hal::Hal::control_reply`].
    pub fn control_reply(&mut self, client: u64, answer: &[u8]) {
        if let Some(c) = crate::control::server() {
            c.reply(client, answer);
        }
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

    /// [`hal::Hal::log`]: host diagnostics (the syscall trace, kernel
    /// errors) to stderr, and to the log file if there is one.
    pub fn log(&mut self, line: &str) {
        let mut e = io::stderr().lock();
        let _ = writeln!(e, "{line}");
        log_to_file(line);
    }

    /// [`hal::Hal::kernel_message`]: to the log file if there is one; to
    /// stderr only with `--verbose`, or for errors (levels 0 to 3).
    pub fn kernel_message(&mut self, level: u8, line: &str) {
        let cfg = LOG.get();
        if level <= 3 || cfg.is_some_and(|c| c.verbose) {
            let mut e = io::stderr().lock();
            let _ = writeln!(e, "{line}");
        }
        log_to_file(line);
    }
}

/// Where kernel messages go on the host (see [`set_log`]).
struct LogConfig {
    verbose: bool,
    file: Option<std::sync::Mutex<std::fs::File>>,
}

static LOG: std::sync::OnceLock<LogConfig> = std::sync::OnceLock::new();

/// Show every kernel message on stderr (`verbose`), and append every one
/// to `file` (opened before the kernel confines itself). Set once, at
/// start-up; without it only errors reach stderr.
pub fn set_log(verbose: bool, file: Option<std::fs::File>) {
    let _ = LOG.set(LogConfig { verbose, file: file.map(std::sync::Mutex::new) });
}

fn log_to_file(line: &str) {
    if let Some(f) = LOG.get().and_then(|c| c.file.as_ref()) {
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{line}");
    }
}

impl Drop for HostMachine {
    fn drop(&mut self) {
        self.hub.quit.store(true, Ordering::SeqCst);
        self.hub.poke();
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
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
        fn vdso_image(&self) -> Option<&[u8]> {
            Some($crate::vdso::image())
        }
        fn publish_clock(&mut self, paddr: u64) {
            let (base, size) = (self.phys.base(), hal::PhysMem::size(&self.phys));
            self.host.publish_clock(base, size, paddr);
        }
        fn console(&mut self) -> &mut dyn hal::Console {
            self.host.console()
        }
        fn random(&mut self, buf: &mut [u8]) {
            self.host.random(buf);
        }
        fn console_line(&mut self, n: u32) -> Option<&mut dyn hal::Console> {
            self.host.console_line(n)
        }
        fn recording(&self) -> (bool, bool) {
            $crate::recorder::recording()
        }
        fn tty_log(&mut self, rec: &hal::TtyLogRecord<'_>) {
            $crate::recorder::tty_log(rec);
        }
        fn audit_log(&mut self, realtime_ns: u64, json: &str) {
            $crate::recorder::audit_log(realtime_ns, json);
        }
        fn control_take(&mut self) -> Option<(u64, String)> {
            self.host.control_take()
        }
        fn control_reply(&mut self, client: u64, answer: &[u8]) {
            self.host.control_reply(client, answer);
        }
        fn log(&mut self, line: &str) {
            self.host.log(line);
        }
        fn kernel_message(&mut self, level: u8, line: &str) {
            self.host.kernel_message(level, line);
        }
    };
}
