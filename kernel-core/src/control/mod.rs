//! The operator's control channel (`rustuml-ctl NAME COMMAND`, the idea of
//! UML's mconsole): requests arrive from the HAL ([`Hal::control_take`],
//! announced by [`hal::Interrupts::CONTROL`]) as one line each, and are
//! answered here from the kernel's own state.
//!
//! Protocol: a request is one line of text (`COMMAND [ARG]`); the answer is
//! `ok LEN\n` followed by LEN bytes, or one line `error: WHY\n`. Every
//! answer is built from the request alone and bounded by what the kernel
//! already holds (a /proc file, the log ring): nothing a client sends can
//! make the kernel allocate more than its line's worth.
//!
//! Commands: `version`, `info` (key=value lines for `rustuml-ctl list`),
//! `halt`, `reboot` (not supported: halts, and says so), `cad` (SIGINT to
//! init, as Linux does with ctrl-alt-del turned off), `sysrq KEY`, `stop`
//! / `go` (pause and resume all guest code; while paused the kernel sleeps
//! on the host and serves only this channel and device input), `proc PATH`
//! (a file of the guest's procfs, read as init would), `ps`, `stats`,
//! `log` (the kernel log ring, as `dmesg` prints it), `kill SIG [PID|all]`
//! (a signal from outside the guest, as a container engine sends it to a
//! container's init), `exec ...` and `exec-io PID ...` (a new process and
//! its stdio: [`exec`]), `help`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;

use crate::kernel::Kernel;
use crate::task::{Pid, TaskState};

mod exec;

/// What the control channel changed in the kernel's course.
#[derive(Debug, Default)]
pub struct ControlState {
    /// `stop`: no guest code runs until `go`.
    pub paused: bool,
    /// `halt` (and friends): power off with this status at the top of the loop.
    pub halt: Option<i32>,
    /// A request was announced: served at the top of the loop, where every
    /// task is in the table (not while one is out of it, being run).
    pub pending: bool,
    /// Processes started by `exec`, and their pipes.
    pub execs: exec::Sessions,
}

/// The answer to a request: a body, or one line of why not.
type Answer = Result<String, String>;

const HELP: &str = "commands: version, info, halt, reboot, cad, sysrq KEY, stop, go, proc PATH, ps, stats, log, kill SIG [PID|all], exec ..., exec-io PID ..., config [conN], help\n";
const SYSRQ_HELP: &str = "sysrq keys: s (sync), e (SIGTERM all but init), i (SIGKILL all but init), m (memory to the log), \
t (tasks to the log), b (reboot now: halts, no sync), o (power off now), h (help)";

impl<S: AddressSpace> Kernel<S> {
    /// Answer every request waiting on the control channel.
    pub fn serve_control<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        while let Some((client, line)) = hal.control_take() {
            let answer = match self.control_command(hal, line.trim()) {
                Ok(body) => {
                    let mut a = format!("ok {}\n", body.len()).into_bytes();
                    a.extend_from_slice(body.as_bytes());
                    a
                }
                Err(why) => format!("error: {}\n", why.replace('\n', " ")).into_bytes(),
            };
            hal.control_reply(client, &answer);
        }
    }

    /// While `stop` holds: sleep on the host (no timer armed, no guest
    /// code run) until an interrupt, and serve it. Device input is taken
    /// in (the console into its buffer, frames into the IP stack) so that
    /// a readable host descriptor never spins the wait.
    pub fn paused_wait<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        let lost = hal.stop_guests();
        if !lost.is_empty() {
            self.handle_interrupts(hal, lost);
            return;
        }
        hal.set_timer(None);
        self.armed = None;
        let irq = hal.wait_for_interrupt();
        let now = hal.now_ns();
        self.handle_interrupts(hal, irq);
        crate::net::inet::tick(&self.net.inet, now);
    }

    fn control_command<H: Hal<Space = S>>(&mut self, hal: &mut H, line: &str) -> Answer {
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let no_arg = |body: String| if arg.is_empty() { Ok(body) } else { Err(format!("{cmd} takes no argument")) };
        match cmd {
            "help" => no_arg(String::from(HELP)),
            "version" => no_arg(format!("rustuml {} (uname -r {})\n", env!("CARGO_PKG_VERSION"), self.release)),
            "info" => no_arg(self.control_info(hal)),
            "halt" => {
                no_arg(String::new())?;
                self.control.halt = Some(0);
                Ok(String::from("halting\n"))
            }
            "reboot" => {
                no_arg(String::new())?;
                self.control.halt = Some(0);
                Ok(String::from("reboot is not supported by rustuml: halted instead (start the guest again)\n"))
            }
            "cad" => {
                no_arg(String::new())?;
                // Init takes only the signals it handles from outside (and
                // a SIGINT blocked while it has none would be acted on later).
                let handler = self.procs.get(1).map_or(0, |t| t.signals.actions[g::SIGINT as usize - 1].handler);
                if handler == crate::task::signal::SIG_DFL || handler == crate::task::signal::SIG_IGN {
                    return Ok(String::from("init does not handle SIGINT: ctrl-alt-del ignored (as Linux's init would)\n"));
                }
                self.send_signal(hal, 1, g::SIGINT);
                Ok(String::from("sent SIGINT to init (ctrl-alt-del)\n"))
            }
            "sysrq" => self.sysrq(hal, arg),
            "stop" => {
                no_arg(String::new())?;
                let was = core::mem::replace(&mut self.control.paused, true);
                Ok(String::from(if was { "already stopped\n" } else { "stopped\n" }))
            }
            "go" => {
                no_arg(String::new())?;
                let was = core::mem::replace(&mut self.control.paused, false);
                Ok(String::from(if was { "running\n" } else { "not stopped\n" }))
            }
            "proc" => self.control_proc(hal, arg),
            "ps" => no_arg(self.control_ps()),
            "stats" => no_arg(self.control_stats()),
            "log" => no_arg(self.ttys.log.borrow().text()),
            "kill" => self.control_kill(arg),
            "exec" => self.control_exec(hal, arg),
            "exec-io" => self.control_exec_io(hal, arg),
            "" => Err(String::from("empty request")),
            _ => Err(format!("unknown command `{}` (try help)", cmd.chars().take(64).collect::<String>())),
        }
    }

    /// `info`: what `rustuml-ctl list` shows.
    fn control_info<H: Hal<Space = S>>(&self, hal: &mut H) -> String {
        let page = crate::mm::PAGE;
        let (total, free) = (self.frames.total_frames() * page, self.frames.free_frames() * page);
        let processes = self.procs.iter().filter(|t| t.pid == t.tgid && !t.is_zombie()).count();
        format!(
            "uptime_ms={}\nmem_total={}\nmem_used={}\nprocesses={}\nstate={}\n",
            hal.now_ns() / 1_000_000,
            total,
            total.saturating_sub(free),
            processes,
            if self.control.paused { "stopped" } else { "running" }
        )
    }

    /// Every live process but init (tgids).
    fn all_but_init(&self) -> Vec<Pid> {
        self.procs.iter().filter(|t| t.pid == t.tgid && t.tgid != 1 && !t.is_zombie()).map(|t| t.tgid).collect()
    }

    fn sysrq<H: Hal<Space = S>>(&mut self, hal: &mut H, arg: &str) -> Answer {
        let key = match arg.as_bytes() {
            [k] => *k,
            _ => return Err(format!("sysrq needs one key ({SYSRQ_HELP})")),
        };
        let msg = match key {
            b's' => {
                let mut r = self.fs.caches.writeback_all(&mut self.frames, hal.phys()).map_err(|e| e.name());
                if r.is_ok() {
                    r = self.fs.disks.sync_all().map_err(|e| e.name());
                }
                match r {
                    Ok(()) => String::from("Emergency Sync complete"),
                    Err(e) => format!("Emergency Sync failed: {e}"),
                }
            }
            b'e' | b'i' => {
                let sig = if key == b'e' { g::SIGTERM } else { g::SIGKILL };
                let pids = self.all_but_init();
                for p in &pids {
                    self.send_signal(hal, *p, sig);
                }
                format!("{} all tasks but init ({} processes)", if key == b'e' { "Terminate" } else { "Kill" }, pids.len())
            }
            b'm' => {
                let page = crate::mm::PAGE;
                let (total, free) = (self.frames.total_frames() * page / 1024, self.frames.free_frames() * page / 1024);
                let slab = crate::fs::procfs::slab_bytes(&self.frames) / 1024;
                format!("Show Memory: total {total} kB, free {free} kB, used {} kB, kernel objects {slab} kB", total.saturating_sub(free))
            }
            b't' => {
                for line in self.control_ps().lines() {
                    let l = String::from(line);
                    self.printk(hal, crate::tty::kmsg::INFO, &l);
                }
                String::from("Show State")
            }
            b'b' | b'o' => {
                self.control.halt = Some(0);
                String::from(if key == b'b' { "Resetting (not supported: halting, without sync)" } else { "Power Off" })
            }
            b'h' => String::from(SYSRQ_HELP),
            _ => return Err(format!("sysrq key `{}` not supported ({SYSRQ_HELP})", arg.escape_default())),
        };
        self.printk(hal, crate::tty::kmsg::INFO, &format!("sysrq: {msg}"));
        Ok(format!("{msg}\n"))
    }

    /// One line per process: pid, parent, uid, state, resident memory,
    /// CPU time and command line.
    fn control_ps(&self) -> String {
        let mut s = String::from("  PID  PPID   UID S    RSS(kB)     TIME COMMAND\n");
        for t in self.procs.iter().filter(|t| t.pid == t.tgid) {
            let state = match t.state {
                TaskState::Zombie(_) => 'Z',
                _ if t.stopped => 'T',
                TaskState::Runnable => 'R',
                TaskState::Blocked(_) => 'S',
            };
            let rss = t.mm.as_ref().map_or(0, |m| m.resident_pages() as u64) * crate::mm::PAGE / 1024;
            let cpu = (t.utime_ns + t.stime_ns) / 10_000_000;
            let mut cmd: String = t.cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" ");
            if cmd.is_empty() {
                cmd = format!("[{}]", t.comm);
            }
            let _ = writeln!(s, "{:5} {:5} {:5} {} {:10} {:5}.{:02} {}", t.pid, t.ppid, t.cred.uid, state, rss, cpu / 100, cpu % 100, cmd);
        }
        s
    }

    /// One line per task (thread): CPU time in user and kernel mode,
    /// resident memory, system calls made.
    fn control_stats(&self) -> String {
        let mut s = String::from("  PID  TGID    USER(ms)  SYSTEM(ms)    RSS(kB)   SYSCALLS COMM\n");
        for t in self.procs.iter() {
            let rss = t.mm.as_ref().map_or(0, |m| m.resident_pages() as u64) * crate::mm::PAGE / 1024;
            let _ = writeln!(
                s,
                "{:5} {:5} {:11} {:11} {:10} {:10} {}",
                t.pid,
                t.tgid,
                t.utime_ns / 1_000_000,
                t.stime_ns / 1_000_000,
                rss,
                t.cpu.syscalls,
                t.comm
            );
        }
        s
    }

    /// `kill SIG [PID|all]`: SIG (a number) to PID (default init) or to
    /// every process, sent from outside the guest as from an ancestor pid
    /// namespace on Linux: init gets only the signals it handles, plus
    /// SIGKILL and SIGSTOP, which a container's init cannot refuse (this is
    /// how `rustuml-oci kill` and so `podman kill`/`stop` reach the guest).
    fn control_kill(&mut self, arg: &str) -> Answer {
        const USAGE: &str = "kill needs SIG [PID|all] (SIG a number from 1 to 64)";
        let mut words = arg.split_whitespace();
        let sig = words.next().and_then(|w| w.parse::<u32>().ok()).filter(|s| (1..=crate::task::signal::NSIG as u32).contains(s)).ok_or(USAGE)?;
        let target = words.next().unwrap_or("1");
        if words.next().is_some() {
            return Err(String::from(USAGE));
        }
        let live = |k: &Self, p: Pid| k.procs.get(p).is_some_and(|t| t.pid == t.tgid && !t.is_zombie());
        let pids: Vec<Pid> = if target == "all" {
            self.procs.iter().filter(|t| t.pid == t.tgid && !t.is_zombie()).map(|t| t.tgid).collect()
        } else {
            let pid = target.parse::<Pid>().map_err(|_| String::from(USAGE))?;
            if !live(self, pid) {
                return Err(format!("no process {pid}"));
            }
            alloc::vec![pid]
        };
        for &pid in &pids {
            let mut info = crate::task::signal::SigInfo { signo: sig, ..Default::default() };
            // Init drops what it has no handler for from any sender but
            // itself; SIGKILL and SIGSTOP from outside must still land.
            if pid == 1 && (sig == g::SIGKILL || sig == g::SIGSTOP) {
                info.pid = 1;
            }
            self.post_signal(None, pid, info, false);
        }
        Ok(format!("sent signal {sig} to {} process{}\n", pids.len(), if pids.len() == 1 { "" } else { "es" }))
    }

    /// `proc PATH`: the file as init would read it from the guest's procfs.
    fn control_proc<H: Hal<Space = S>>(&mut self, hal: &mut H, path: &str) -> Answer {
        let rel = path.strip_prefix("/proc/").or_else(|| (!path.starts_with('/') && !path.is_empty()).then_some(path));
        let Some(rel) = rel.filter(|r| !r.is_empty() && r.split('/').all(|c| c != "..")) else {
            return Err(format!("proc needs a path under /proc (e.g. /proc/meminfo), not `{}`", path.escape_default()));
        };
        let full = format!("/proc/{rel}");
        let Some(mut init) = self.procs.take(1) else { return Err(String::from("no init")) };
        let r = {
            let mut cx = crate::syscall::SysCtx { hal, k: self, t: &mut init };
            crate::syscall::fs_ops::read_proc_file(&mut cx, &full)
        };
        self.procs.put(init);
        r.map_err(|e| format!("{full}: {}", e.name()))
    }
}
