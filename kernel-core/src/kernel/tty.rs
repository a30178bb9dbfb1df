//! The kernel side of terminals and wait queues: console input from the HAL,
//! waking tasks whose wait sets changed, signals to process groups.

use alloc::vec::Vec;

use hal::{AddressSpace, ConsoleRead, Hal};

use crate::fs::path::{self, Follow};
use crate::fs::Loc;
use super::Kernel;
use crate::task::signal::SigInfo;
use crate::task::{Pid, Task};
use crate::wait::IoCtx;
use crate::Errno;

impl<S: AddressSpace> Kernel<S> {
    /// Set up the console from what the HAL says of the host side.
    pub fn console_setup<H: Hal>(&mut self, hal: &mut H) {
        let c = hal.console();
        self.ttys.console.set_host_terminal(c.is_terminal());
        if let Some((rows, cols)) = c.window_size() {
            self.ttys.console.resize([rows, cols, 0, 0]);
        }
        for n in 1..=crate::tty::MAX_LINES {
            if let Some(l) = hal.console_line(n) {
                let term = l.is_terminal();
                self.ttys.attach_line(n, term);
            }
        }
    }

    /// Hand the console lines' output to their channels.
    pub fn lines_flush<H: Hal>(&mut self, hal: &mut H) {
        if !self.ttys.lines_dirty.replace(false) {
            return;
        }
        for n in 1..=crate::tty::MAX_LINES {
            let out = self.ttys.take_line_output(n);
            if let (false, Some(l)) = (out.is_empty(), hal.console_line(n)) {
                l.write(hal::ConsoleStream::Stdout, &out);
            }
        }
    }

    /// Feed what the console lines' channels have to their terminals.
    fn lines_pull<H: Hal>(&mut self, hal: &mut H) {
        let mut tmp = [0u8; 4096];
        let (now, realtime) = (hal.now_ns(), hal.realtime_ns());
        for n in 1..=crate::tty::MAX_LINES {
            let Some(tty) = self.ttys.line(n) else { continue };
            for _ in 0..64 {
                let Some(l) = hal.console_line(n) else { break };
                let r = l.read(&mut tmp);
                let mut io = IoCtx { now, realtime, console: hal.console(), pid: 0, pgid: 0, sid: 0, sig_ignored: 0, signals: Vec::new(), nonblock: true };
                let more = feed(&tty, r, &tmp, &mut io);
                self.group_signals.extend(io.signals);
                if !more {
                    break;
                }
            }
        }
        // Echo goes out at once.
        self.lines_flush(hal);
    }

    /// Create `/dev/console`, `/dev/tty`, `/dev/ptmx` and `/dev/pts`.
    pub fn install_tty_nodes(&mut self) -> Result<(), Errno> {
        let root = Loc::root(self.fs.root.clone());
        let dev = path::walk(&self.fs.root, &root, "/dev", Follow::Yes)?.inode().clone();
        let ttys = self.ttys.clone();
        ttys.install_dev_nodes(&mut self.fs, &dev)
    }

    /// Send `sig` to every process of group `pgid`. `cur` is the task being
    /// handled (out of the task table), if any.
    pub fn signal_group(&mut self, mut cur: Option<&mut Task<S>>, pgid: Pid, sig: u32) {
        let mut targets: Vec<Pid> =
            self.procs.iter().filter(|t| t.is_leader() && !t.is_zombie() && t.pgid == pgid).map(|t| t.pid).collect();
        if let Some(c) = cur.as_deref() {
            if c.pgid == pgid && !c.is_zombie() && !targets.contains(&c.tgid) {
                targets.push(c.tgid);
            }
        }
        for p in targets {
            self.post_signal(cur.as_deref_mut(), p, SigInfo::kernel(sig), false);
        }
    }

    /// Send the group signals queued where no task was at hand.
    pub fn flush_group_signals(&mut self) {
        let mut sigs = core::mem::take(&mut self.group_signals);
        sigs.extend(self.ttys.deferred_signals.borrow_mut().drain(..).map(|(pgid, sig)| crate::wait::GroupSignal { pgid, sig }));
        for s in sigs {
            self.signal_group(None, s.pgid, s.sig);
        }
    }

    /// Follow the host window size: a change reaches the console's
    /// foreground group as `SIGWINCH`.
    pub fn console_check_resize<H: Hal>(&mut self, hal: &mut H) {
        if let Some((rows, cols)) = hal.console().window_size() {
            let w = self.ttys.console.winsize();
            if let Some((pgid, sig)) = self.ttys.console.resize([rows, cols, w[2], w[3]]) {
                self.group_signals.push(crate::wait::GroupSignal { pgid, sig });
            }
        }
    }

    /// Feed what the HAL console has to the console's line discipline (echo,
    /// `^C`...), so input is processed as it is typed, read or not.
    pub fn console_pull<H: Hal>(&mut self, hal: &mut H) {
        let mut tmp = [0u8; 4096];
        let now = hal.now_ns();
        let realtime = hal.realtime_ns();
        let tty = self.ttys.console.clone();
        self.console_check_resize(hal);
        for _ in 0..64 {
            let r = hal.console().read(&mut tmp);
            let mut io = IoCtx {
                now,
                realtime,
                console: hal.console(),
                pid: 0,
                pgid: 0,
                sid: 0,
                sig_ignored: 0,
                signals: Vec::new(),
                nonblock: true,
            };
            let more = feed(&tty, r, &tmp, &mut io);
            self.group_signals.extend(io.signals);
            if !more {
                break;
            }
        }
        self.lines_pull(hal);
    }

    /// Wake tasks whose wait set changed or whose wake-up instant passed
    /// (they re-run their call, keeping its deadline).
    pub fn check_waits(&mut self, now: u64) {
        for pid in self.procs.ready_waiters(now) {
            self.wake(pid, None);
        }
    }
}

/// Hand one read of a terminal's host side to its line discipline; false
/// when nothing more is to be read now (or it hung up).
fn feed(tty: &crate::tty::Tty, r: ConsoleRead, data: &[u8], io: &mut IoCtx<'_>) -> bool {
    match r {
        ConsoleRead::Data(0) | ConsoleRead::WouldBlock => false,
        ConsoleRead::Data(n) => {
            tty.receive(io, &data[..n.min(data.len())]);
            true
        }
        ConsoleRead::Eof => {
            tty.set_hangup();
            false
        }
    }
}

impl<S: AddressSpace> Kernel<S> {
    /// A kernel message (see the module docs): to the kernel's log, and to
    /// the host when the backend shows its log.
    pub fn printk<H: Hal>(&self, hal: &mut H, level: u8, line: &str) {
        crate::tty::kmsg::printk(&self.ttys.log, hal, level, line);
    }
}

impl<S: AddressSpace> Kernel<S> {
    /// Hand queued records (terminal traffic, audit events) to the HAL.
    pub fn audit_flush<H: Hal<Space = S>>(&mut self, hal: &mut H) {
        if !self.audit.pending.is_empty() {
            for (t, line) in core::mem::take(&mut self.audit.pending) {
                hal.audit_log(t, &line);
            }
        }
        if self.ttys.tty_log_pending() {
            for r in self.ttys.take_tty_log() {
                hal.tty_log(&hal::TtyLogRecord { realtime_ns: r.realtime_ns, tty: &r.tty, input: r.input, pid: r.pid, sid: r.sid, data: &r.data });
            }
        }
    }
}

