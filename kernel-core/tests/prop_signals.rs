//! Model-based property: random fork/exit/kill/wait4 trees, SIGCHLD and
//! SIGUSR1 dispositions (default, ignored, handler with or without
//! SA_RESTART, SA_NOCLDWAIT, SA_NOCLDSTOP), sigprocmask and rt_sigpending,
//! SIGSTOP/SIGCONT, process groups (kill and wait4 of -pgid and 0), checked
//! against a model of the process tree: who is alive, stopped, a zombie or
//! reaped; the pid and status word wait4 reports (exits, deaths by signal,
//! WUNTRACED stops and WCONTINUED continues, each once), or its errno (ECHILD,
//! EINTR) with the status word left alone; kill's result (ESRCH); which
//! handlers run in init and when (on the return from the call that made the
//! signal deliverable, or while init sleeps); pending sets; orphans
//! reparented to init, which then reaps them (or is told of those already
//! dead).
//!
//! Init (pid 1) runs the script. Children (and the grandchildren of
//! "orphan" children) behave as chosen when forked: exit at once, pause until
//! a handled signal, or sleep until an absolute deadline (the k-th sleeper
//! wakes at (k+1) × 10 s, so only a blocking wait4 in init lets simulated
//! time reach it); a handled signal ends the pause or sleep, then the child
//! exits with its code. After each fork and kill, init sleeps 100 µs (again
//! if a handler interrupts it), which lets every child settle.
//!
//! Where the model makes choices Linux leaves open: wait4 reaps the lowest
//! eligible pid first (Linux: its children list order, which differs only
//! for inherited orphans); several handler runs in a row are compared as a
//! set (Linux coalesces standard signals and stacks frames, so their number
//! and order depend on scheduling). Left out: kill to init's own group with
//! a signal init does not handle (this kernel lets a process run as init
//! kill itself, Linux ignores it), and blocking waits that would block forever.

mod common;

use std::collections::BTreeSet;
use std::rc::Rc;

use common::model::*;
use common::*;
use kernel_core::kernel::boot_checked;
use linux_raw_sys::errno as e;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const SCRATCH: u64 = BASE + SCRATCH_OFF;
/// wait4's status word (preset to a sentinel before every call).
const WSTATUS: u64 = SCRATCH;
/// The old action / old mask / pending set written by calls.
const OLD: u64 = SCRATCH + 0x40;
/// The new action / mask.
const NEW: u64 = SCRATCH + 0x80;
/// The deadline of the next sleeper (a timespec, copied by fork), and of a
/// sleeping child that forked a (sleeping) grandchild.
const SLEEP_TS: u64 = SCRATCH + 0xc0;
const SLEEP_TS2: u64 = SCRATCH + 0xd0;
/// The settle nap: a timespec of 100 µs in the data area.
const NAP_TS: u64 = BASE + DATA_OFF;
const SENTINEL: u32 = 0xaaaa_aaaa;
/// Instruction indices of the handler (records, then `ret`) and the restorer.
const HANDLER_IDX: usize = 1;
const RESTORER_IDX: usize = 3;
const MAIN_IDX: usize = 4;
/// A record of a handler run in init: `HANDLED + signo`.
const HANDLED: i64 = 1000;
const SLEEP_STEP_NS: u64 = 10_000_000_000;

fn handler_addr() -> u64 {
    BASE + ENTRY_OFF + 2 * HANDLER_IDX as u64
}
fn restorer_addr() -> u64 {
    BASE + ENTRY_OFF + 2 * RESTORER_IDX as u64
}

/// What a child does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Exit(u8),
    /// pause(), then exit with the code (only a handled signal ends it).
    Pause(u8),
    /// Sleep to its deadline (or a handled signal), then exit with the code.
    Sleep(u8),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum H {
    Dfl,
    Ign,
    Handler,
}

/// A disposition.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Disp {
    h: H,
    restart: bool,
    nocldwait: bool,
    nocldstop: bool,
}

const DFL: Disp = Disp { h: H::Dfl, restart: false, nocldwait: false, nocldstop: false };

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// -1
    All,
    /// 0: init's own process group.
    Own,
    /// Init itself (pid 1).
    Init,
    /// The k-th process forked (pid 2 + k).
    Pid(u32),
    /// The process group of the k-th process forked (-(2 + k)).
    Grp(u32),
    /// A pid that never exists.
    Missing,
}

#[derive(Debug, Clone)]
enum Op {
    /// Fork a child (in its own process group if `pgrp`) of `kind`; with
    /// `orphan: Some(k)` the child instead forks a grandchild of `kind`, then
    /// behaves as `k` (with `Exit`, the grandchild goes to init at once;
    /// otherwise when the child dies, possibly as a zombie).
    Fork { pgrp: bool, kind: Kind, orphan: Option<Kind> },
    Kill(Target, u32),
    /// wait4(target, &status, WNOHANG or 0 | WUNTRACED? | WCONTINUED?).
    Wait(Target, bool, bool, bool),
    Sigaction(u32, Disp),
    /// rt_sigprocmask(how, set of {SIGCHLD, SIGUSR1}).
    Mask(u32, u64),
    Pending,
}

fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![(0u8..4).prop_map(Kind::Exit), (10u8..14).prop_map(Kind::Pause), (20u8..24).prop_map(Kind::Sleep)]
}
fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => Just(Target::All),
        1 => Just(Target::Own),
        1 => Just(Target::Init),
        6 => (0u32..6).prop_map(Target::Pid),
        2 => (0u32..6).prop_map(Target::Grp),
        1 => Just(Target::Missing),
    ]
}
fn disp() -> impl Strategy<Value = Disp> {
    prop_oneof![
        1 => Just(DFL),
        1 => Just(Disp { h: H::Ign, ..DFL }),
        3 => (any::<bool>(), any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(restart, nocldwait, nocldstop)| Disp { h: H::Handler, restart, nocldwait, nocldstop }),
        1 => Just(Disp { nocldwait: true, ..DFL }),
    ]
}
fn op() -> impl Strategy<Value = Op> {
    let sigs = prop_oneof![
        Just(0u32),
        Just(g::SIGKILL),
        Just(g::SIGTERM),
        Just(g::SIGUSR1),
        Just(g::SIGCHLD),
        Just(g::SIGSTOP),
        Just(g::SIGCONT),
    ];
    let set = prop_oneof![Just(bit(g::SIGCHLD)), Just(bit(g::SIGUSR1)), Just(bit(g::SIGCHLD) | bit(g::SIGUSR1)), Just(0)];
    let how = prop_oneof![Just(g::SIG_BLOCK), Just(g::SIG_UNBLOCK), Just(g::SIG_SETMASK)];
    prop_oneof![
        6 => (prop::bool::weighted(0.3), kind(), prop::option::weighted(0.3, prop_oneof![2 => (30u8..34).prop_map(Kind::Exit), 1 => (40u8..44).prop_map(Kind::Pause), 1 => (50u8..54).prop_map(Kind::Sleep)])).prop_map(|(pgrp, kind, orphan)| Op::Fork { pgrp, kind, orphan }),
        4 => (target(), sigs).prop_map(|(t, s)| Op::Kill(t, s)),
        5 => (target(), prop::bool::weighted(0.6), prop::bool::weighted(0.3), prop::bool::weighted(0.3))
            .prop_map(|(t, n, u, c)| Op::Wait(t, n, u, c)),
        3 => (prop_oneof![Just(g::SIGCHLD), Just(g::SIGUSR1)], disp()).prop_map(|(s, d)| Op::Sigaction(s, d)),
        2 => (how, set).prop_map(|(h, s)| Op::Mask(h, s)),
        1 => Just(Op::Pending),
    ]
}

/// Deliberately broken model variants (planted bugs) the property must catch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// Forgets that orphans go to init (they stay with their dead parent).
    NoReparent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Running or blocked; `Some(deadline)` for a sleeper.
    Live(Option<u64>),
    /// Dead, with its wait status word.
    Zombie(u32),
    Reaped,
}

#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgid: u32,
    state: State,
    /// Exit code once its pause or sleep ends.
    code: u8,
    /// SIGCHLD and SIGUSR1 dispositions and the mask, inherited at fork.
    chld: Disp,
    usr1: Disp,
    mask: u64,
    /// Stopped (SIGSTOP), with handled signals waiting for SIGCONT.
    stopped: bool,
    held: u64,
    /// A stop / continue not yet reported to wait4.
    stop_ev: bool,
    cont_ev: bool,
}

#[derive(Clone)]
struct Model {
    procs: Vec<Proc>,
    /// Init's dispositions (SIGCHLD, SIGUSR1), mask and pending set.
    chld: Disp,
    usr1: Disp,
    mask: u64,
    pending: u64,
    sleepers: u64,
    /// Simulated time (the last sleeper deadline a blocking wait reached).
    now: u64,
    /// What init records, in order.
    want: Vec<Expect>,
    labels: Vec<usize>,
    bug: Bug,
}

impl Model {
    fn proc(&mut self, pid: u32) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.pid == pid)
    }
    fn disp(&self, sig: u32) -> Disp {
        match sig {
            g::SIGCHLD => self.chld,
            g::SIGUSR1 => self.usr1,
            _ => DFL,
        }
    }
    fn handler_ran(&mut self, sig: u32, label: usize) {
        self.want.push(Expect::ret(HANDLED + sig as i64));
        self.labels.push(label);
    }
    /// A signal for init (sent by the kernel or by init itself).
    fn signal_init(&mut self, sig: u32, label: usize) {
        if self.mask & bit(sig) != 0 {
            self.pending |= bit(sig);
        } else if self.disp(sig).h == H::Handler {
            self.handler_ran(sig, label);
        }
        // Ignored or default-ignored: gone. (SIGUSR1 is never at its default in
        // init when init can receive it; see `init_kill_ok`.)
    }
    /// Unblocked pending signals are delivered (on the way out of a call).
    fn deliver_pending(&mut self, label: usize) {
        for sig in [g::SIGUSR1, g::SIGCHLD] {
            if self.pending & bit(sig) != 0 && self.mask & bit(sig) == 0 {
                self.pending &= !bit(sig);
                if self.disp(sig).h == H::Handler {
                    self.handler_ran(sig, label);
                }
            }
        }
    }
    /// Process `pid` died with status word `st`.
    fn died(&mut self, pid: u32, st: u32, label: usize) {
        let bug = self.bug;
        let Some(p) = self.proc(pid) else { return };
        if !matches!(p.state, State::Live(_)) {
            return;
        }
        p.state = State::Zombie(st);
        // Its children go to init; init hears of those already dead as if
        // they died now (Linux's forget_original_parent, before the dying
        // process's own notification).
        let mut zombies = Vec::new();
        if bug != Bug::NoReparent {
            for c in self.procs.iter_mut() {
                if c.ppid == pid && c.state != State::Reaped {
                    c.ppid = 1;
                    if let State::Zombie(_) = c.state {
                        zombies.push(c.pid);
                    }
                }
            }
        }
        for z in zombies {
            self.notify(z, label);
        }
        self.notify(pid, label);
    }
    /// Tell the parent of dead `pid` (SIGCHLD, auto-reaping).
    fn notify(&mut self, pid: u32, label: usize) {
        let ppid = self.procs.iter().find(|p| p.pid == pid).unwrap().ppid;
        if ppid == 1 {
            let autoreap = self.chld.h == H::Ign || self.chld.nocldwait;
            if autoreap {
                self.proc(pid).unwrap().state = State::Reaped;
            }
            if self.chld.h != H::Ign {
                self.signal_init(g::SIGCHLD, label);
            }
            return;
        }
        // A child with children: its own (inherited) SIGCHLD disposition.
        let parent = self.procs.iter().find(|p| p.pid == ppid).unwrap().clone();
        if parent.chld.h == H::Ign || parent.chld.nocldwait {
            self.proc(pid).unwrap().state = State::Reaped;
        }
        self.sigchld_signal_child(ppid, label);
    }
    /// SIGCHLD for a child that has children of its own.
    fn sigchld_signal_child(&mut self, ppid: u32, label: usize) {
        let parent = self.procs.iter().find(|p| p.pid == ppid).unwrap().clone();
        let State::Live(_) = parent.state else { return };
        if parent.chld.h == H::Handler && parent.mask & bit(g::SIGCHLD) == 0 {
            if parent.stopped {
                self.proc(ppid).unwrap().held |= bit(g::SIGCHLD);
            } else {
                // Its pause / sleep ends: it exits with its code.
                self.died(ppid, (parent.code as u32) << 8, label);
            }
        }
    }
    /// `pid` stopped or continued: its parent hears (CLD_STOPPED /
    /// CLD_CONTINUED) unless it set SA_NOCLDSTOP.
    fn notify_stop(&mut self, pid: u32, label: usize) {
        let ppid = self.procs.iter().find(|p| p.pid == pid).unwrap().ppid;
        if ppid == 1 {
            if !self.chld.nocldstop {
                self.signal_init(g::SIGCHLD, label);
            }
            return;
        }
        let parent = self.procs.iter().find(|p| p.pid == ppid).unwrap().clone();
        if !parent.chld.nocldstop {
            self.sigchld_signal_child(ppid, label);
        }
    }
    /// A signal to child `pid` from init's kill.
    fn signal_child(&mut self, pid: u32, sig: u32, label: usize) {
        let Some(p) = self.proc(pid) else { return };
        let State::Live(deadline) = p.state else { return };
        let code = (p.code as u32) << 8;
        match sig {
            0 => {}
            g::SIGKILL => self.died(pid, g::SIGKILL, label),
            g::SIGSTOP => {
                if !p.stopped {
                    p.stopped = true;
                    p.stop_ev = true;
                    p.cont_ev = false;
                    self.notify_stop(pid, label);
                }
            }
            g::SIGCONT => {
                if p.stopped {
                    p.stopped = false;
                    p.stop_ev = false;
                    p.cont_ev = true;
                    let held = std::mem::take(&mut p.held);
                    self.notify_stop(pid, label);
                    // It runs again: a handled signal that came meanwhile, or a
                    // deadline that passed, ends its pause / sleep.
                    if held != 0 || deadline.is_some_and(|d| d <= self.now) {
                        self.died(pid, code, label);
                    }
                }
            }
            _ if p.mask & bit(sig) != 0 => {}
            _ => {
                let d = match sig {
                    g::SIGUSR1 => p.usr1,
                    g::SIGCHLD => p.chld,
                    _ => DFL,
                };
                match d.h {
                    H::Ign => {}
                    H::Handler if p.stopped => p.held |= bit(sig),
                    // The pause / sleep ends with EINTR and the child exits with its code.
                    H::Handler => self.died(pid, code, label),
                    H::Dfl if sig == g::SIGCHLD => {}
                    // Fatal even while stopped.
                    H::Dfl => self.died(pid, sig, label),
                }
            }
        }
    }
    fn members(&self, t: Target) -> Option<Vec<u32>> {
        // Processes a kill reaches (unreaped: zombies count, as on Linux).
        let alive: Vec<&Proc> = self.procs.iter().filter(|p| p.state != State::Reaped).collect();
        Some(match t {
            Target::All => alive.iter().map(|p| p.pid).collect(),
            Target::Own => {
                let mut v: Vec<u32> = alive.iter().filter(|p| p.pgid == 1).map(|p| p.pid).collect();
                v.push(1);
                v
            }
            Target::Init => vec![1],
            Target::Pid(k) => alive.iter().filter(|p| p.pid == 2 + k).map(|p| p.pid).collect(),
            Target::Grp(k) => alive.iter().filter(|p| p.pgid == 2 + k).map(|p| p.pid).collect(),
            Target::Missing => vec![],
        })
    }
    /// Would a kill of `t` with `sig` hit init with a signal init does not handle?
    fn init_kill_ok(&self, t: Target, sig: u32) -> bool {
        let hits_init = matches!(t, Target::Own | Target::Init);
        !hits_init || sig == 0 || sig == g::SIGCHLD || sig == g::SIGCONT || (sig == g::SIGUSR1 && self.usr1.h != H::Dfl)
    }
    /// Children wait4(`t`) may report.
    fn eligible(&self, t: Target) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|p| p.ppid == 1 && p.state != State::Reaped)
            .filter(|p| match t {
                Target::All => true,
                Target::Own => p.pgid == 1,
                Target::Pid(k) => p.pid == 2 + k,
                Target::Grp(k) => p.pgid == 2 + k,
                Target::Init | Target::Missing => false,
            })
            .map(|p| p.pid)
            .collect()
    }
    /// The first child (lowest pid) with something to report: (pid, status word).
    fn event(&self, pids: &[u32], untraced: bool, continued: bool) -> Option<(u32, u32)> {
        pids.iter().find_map(|&pid| {
            let p = self.procs.iter().find(|p| p.pid == pid)?;
            match p.state {
                State::Zombie(st) => Some((pid, st)),
                State::Live(_) if untraced && p.stop_ev => Some((pid, (g::SIGSTOP << 8) | 0x7f)),
                State::Live(_) if continued && p.cont_ev => Some((pid, 0xffff)),
                _ => None,
            }
        })
    }
    /// The sleeper to wake next (earliest deadline).
    fn next_sleeper(&self) -> Option<(u32, u64)> {
        self.procs
            .iter()
            .filter_map(|p| match p.state {
                State::Live(Some(d)) if !p.stopped => Some((p.pid, d)),
                _ => None,
            })
            .min_by_key(|&(_, d)| d)
    }
    /// wait4 result: Some(ret, status word written), None = blocks forever.
    fn wait(&mut self, t: Target, nohang: bool, untraced: bool, continued: bool, label: usize) -> Option<(i64, Option<u32>)> {
        loop {
            let el = self.eligible(t);
            if el.is_empty() {
                return Some((-(e::ECHILD as i64), None));
            }
            if let Some((pid, st)) = self.event(&el, untraced, continued) {
                let p = self.proc(pid).unwrap();
                match p.state {
                    State::Zombie(_) => p.state = State::Reaped,
                    _ if st == 0xffff => p.cont_ev = false,
                    _ => p.stop_ev = false,
                }
                return Some((pid as i64, Some(st)));
            }
            if nohang {
                return Some((0, None));
            }
            // Blocks: simulated time runs to the next sleeper's deadline
            // (None: nothing can ever happen, it blocks forever).
            let (pid, d) = self.next_sleeper()?;
            self.now = d;
            let code = self.procs.iter().find(|p| p.pid == pid).unwrap().code;
            // Did init run its SIGCHLD handler (the dead one's parent may be another child)?
            let runs = |m: &Model| m.want.iter().filter(|w| w.ret == Some(HANDLED + g::SIGCHLD as i64)).count();
            let before = runs(self);
            self.died(pid, (code as u32) << 8, label);
            let handled = runs(self) > before;
            // Linux re-scans the children before it looks at signals.
            let el = self.eligible(t);
            if el.is_empty() || self.event(&el, untraced, continued).is_some() {
                continue;
            }
            if handled && !self.chld.restart {
                return Some((-(e::EINTR as i64), None));
            }
        }
    }
}

/// The instructions of the child code for `kind` (ends in exit_group); a
/// sleeper's deadline is at `ts`.
fn child_code(kind: Kind, ts: u64) -> Vec<Insn> {
    match kind {
        Kind::Exit(c) => vec![sys(g::__NR_exit_group, &[c as u64])],
        Kind::Pause(c) => vec![sys(g::__NR_pause, &[]), sys(g::__NR_exit_group, &[c as u64])],
        Kind::Sleep(c) => vec![
            sys(g::__NR_clock_nanosleep, &[g::CLOCK_MONOTONIC as u64, g::TIMER_ABSTIME as u64, ts, 0]),
            sys(g::__NR_exit_group, &[c as u64]),
        ],
    }
}

fn sigaction_bytes(d: Disp) -> Vec<u8> {
    let handler = match d.h {
        H::Dfl => 0,
        H::Ign => 1,
        H::Handler => handler_addr(),
    };
    let flags = g::SA_RESTORER as u64
        | if d.restart { g::SA_RESTART as u64 } else { 0 }
        | if d.nocldwait { g::SA_NOCLDWAIT as u64 } else { 0 }
        | if d.nocldstop { g::SA_NOCLDSTOP as u64 } else { 0 };
    let mut v = handler.to_le_bytes().to_vec();
    v.extend(flags.to_le_bytes());
    v.extend(restorer_addr().to_le_bytes());
    v.extend(0u64.to_le_bytes());
    v
}

fn timespec(ns: u64) -> Vec<u8> {
    let mut v = (ns / 1_000_000_000).to_le_bytes().to_vec();
    v.extend((ns % 1_000_000_000).to_le_bytes());
    v
}

fn target_arg(t: Target) -> u64 {
    (match t {
        Target::All => -1i64,
        Target::Own => 0,
        Target::Init => 1,
        Target::Pid(k) => 2 + k as i64,
        Target::Grp(k) => -(2 + k as i64),
        Target::Missing => 999,
    }) as u64
}

/// The script's frame: jump to main, the handler (records in init only),
/// `ret`, the restorer.
fn prologue(log: &Log) -> Vec<Insn> {
    let log2 = log.clone();
    let handler: Insn = Rc::new(move |ctx, space, _| {
        if space.id == 1 {
            log2.borrow_mut().push(Rec { space: space.id, ret: HANDLED + ctx.regs.rdi as i64, mem: vec![] });
        }
        None
    });
    let ret: Insn = Rc::new(|ctx, space, phys| {
        let mut b = [0u8; 8];
        if let Err(t) = space.user_read(phys, ctx.regs.rsp, &mut b) {
            return Some(t);
        }
        ctx.regs.rip = u64::from_le_bytes(b);
        ctx.regs.rsp += 8;
        None
    });
    vec![jump_if(BASE, MAIN_IDX, |_| true), handler, ret, sys(g::__NR_rt_sigreturn, &[])]
}

/// Sleep 100 µs, again while a handler interrupts the nap.
fn settle(insns: &mut Vec<Insn>) {
    let at = insns.len();
    insns.push(sys(g::__NR_nanosleep, &[NAP_TS, 0]));
    let eintr = -(e::EINTR as i64) as u64;
    insns.push(jump_if(BASE, at, move |c| c.regs.rax == eintr));
}

/// A record to compare: (ret, memory, op index).
type Item = (Option<i64>, Option<Vec<u8>>, usize);

/// The tag of kill's record: handler runs right before it are moved after
/// it (a child stopped or killed by it may be noticed before kill returns,
/// as on a multiprocessor Linux, or after).
const KILL_TAG: &[u8] = b"kill";

/// Handler records in a row are compared as a set (after moving those in
/// front of a kill's record behind it).
fn normalize(v: &[Item]) -> Vec<Item> {
    let is_h = |x: &Item| x.0.is_some_and(|r| r >= HANDLED);
    let mut v = v.to_vec();
    for j in 0..v.len() {
        if v[j].1.as_deref() == Some(KILL_TAG) {
            let mut k = j;
            while k > 0 && is_h(&v[k - 1]) {
                k -= 1;
            }
            v[k..=j].rotate_right(1);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if v[i].0.is_some_and(|r| r >= HANDLED) {
            let mut set = BTreeSet::new();
            let label = v[i].2;
            while i < v.len() && v[i].0.is_some_and(|r| r >= HANDLED) {
                set.insert(v[i].0.unwrap());
                i += 1;
            }
            out.extend(set.into_iter().map(|r| (Some(r), None, label)));
        } else {
            out.push(v[i].clone());
            i += 1;
        }
    }
    out
}

fn check(ops: &[Op], bug: Bug) -> Result<(), String> {
    let log = Log::default();
    let mut insns = prologue(&log);
    let mut m = Model {
        procs: Vec::new(),
        chld: DFL,
        usr1: DFL,
        mask: 0,
        pending: 0,
        sleepers: 0,
        now: 0,
        want: Vec::new(),
        labels: Vec::new(),
        bug,
    };
    let mut next_pid = 2u32;
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Fork { pgrp, kind, orphan } => {
                let mut sleeper = |k: Option<Kind>, ts: u64, insns: &mut Vec<Insn>| {
                    if let Some(Kind::Sleep(_)) = k {
                        m.sleepers += 1;
                        let d = m.sleepers * SLEEP_STEP_NS;
                        insns.push(store(move |_| ts, timespec(d)));
                        Some(d)
                    } else {
                        None
                    }
                };
                let deadline = sleeper(Some(*kind), SLEEP_TS, &mut insns);
                let deadline2 = sleeper(*orphan, SLEEP_TS2, &mut insns);
                let mut child: Vec<Insn> = Vec::new();
                if *pgrp {
                    child.push(sys(g::__NR_setpgid, &[0, 0]));
                }
                let cpid = next_pid;
                next_pid += 1;
                let cpgid = if *pgrp { cpid } else { 1 };
                let code_of = |k: Kind| match k {
                    Kind::Exit(c) | Kind::Pause(c) | Kind::Sleep(c) => c,
                };
                let mut procs = vec![Proc { pid: cpid, ppid: 1, pgid: cpgid, state: State::Live(None), code: 0, chld: m.chld, usr1: m.usr1, mask: m.mask, stopped: false, held: 0, stop_ev: false, cont_ev: false }];
                match orphan {
                    None => {
                        child.extend(child_code(*kind, SLEEP_TS));
                        procs[0].state = if let Kind::Exit(_) = kind { State::Live(None) } else { State::Live(deadline) };
                        procs[0].code = code_of(*kind);
                    }
                    Some(ck) => {
                        let gpid = next_pid;
                        next_pid += 1;
                        let gc = child_code(*kind, SLEEP_TS);
                        // fork; the child jumps over the grandchild's code to its own.
                        let child_fork = insns.len() + 2 + child.len();
                        let own_at = child_fork + 2 + gc.len();
                        child.push(sys(g::__NR_fork, &[]));
                        child.push(jump_if(BASE, own_at, |c| c.regs.rax != 0));
                        child.extend(gc);
                        child.extend(child_code(*ck, SLEEP_TS2));
                        procs[0].code = code_of(*ck);
                        procs[0].state = State::Live(deadline2);
                        procs.push(Proc { pid: gpid, ppid: cpid, pgid: cpgid, state: State::Live(deadline), code: code_of(*kind), chld: m.chld, usr1: m.usr1, mask: m.mask, stopped: false, held: 0, stop_ev: false, cont_ev: false });
                    }
                }
                // fork; the parent jumps over the child's code.
                let after = insns.len() + 2 + child.len();
                insns.push(sys(g::__NR_fork, &[]));
                insns.push(jump_if(BASE, after, |c| c.regs.rax != 0));
                insns.extend(child);
                insns.push(record(&log, 0, 0));
                m.want.push(Expect::ret(cpid as i64));
                m.labels.push(i);
                m.procs.extend(procs.iter().cloned());
                settle(&mut insns);
                // The children run: exits happen now (the child keeps the CPU
                // after forking the grandchild, so it goes first).
                match orphan {
                    None => {
                        if let Kind::Exit(c) = kind {
                            m.died(cpid, (*c as u32) << 8, i);
                        }
                    }
                    Some(ck) => {
                        if let Kind::Exit(c) = ck {
                            m.died(cpid, (*c as u32) << 8, i);
                        }
                        if let Kind::Exit(gc) = kind {
                            m.died(cpid + 1, (*gc as u32) << 8, i);
                        }
                    }
                }
            }
            Op::Kill(t, sig) => {
                if !m.init_kill_ok(*t, *sig) {
                    continue;
                }
                let members = m.members(*t).unwrap_or_default();
                insns.push(sys(g::__NR_kill, &[target_arg(*t), *sig as u64]));
                let log2 = log.clone();
                insns.push(Rc::new(move |ctx, space, _| {
                    log2.borrow_mut().push(Rec { space: space.id, ret: ctx.regs.rax as i64, mem: KILL_TAG.to_vec() });
                    None
                }));
                // kill(-1) skips init and the caller (init).
                let members: Vec<u32> = if *t == Target::All { members.into_iter().filter(|&p| p != 1).collect() } else { members };
                if members.is_empty() {
                    m.want.push(Expect::err(e::ESRCH).with_mem(KILL_TAG.to_vec()));
                    m.labels.push(i);
                    continue;
                }
                // Init's own copy arrives on the way out of kill.
                if members.contains(&1) && *sig != 0 {
                    m.signal_init(*sig, i);
                }
                m.want.push(Expect::ret(0).with_mem(KILL_TAG.to_vec()));
                m.labels.push(i);
                settle(&mut insns);
                for p in members.into_iter().filter(|&p| p != 1) {
                    m.signal_child(p, *sig, i);
                }
            }
            Op::Wait(t, nohang, untraced, continued) => {
                // A wait that would block forever is left out.
                let mut trial = m.clone();
                let Some((ret, st)) = trial.wait(*t, *nohang, *untraced, *continued, i) else { continue };
                m = trial;
                insns.push(store(|_| WSTATUS, SENTINEL.to_le_bytes().to_vec()));
                let opts = if *nohang { g::WNOHANG as u64 } else { 0 }
                    | if *untraced { g::WUNTRACED as u64 } else { 0 }
                    | if *continued { g::WCONTINUED as u64 } else { 0 };
                insns.push(sys(g::__NR_wait4, &[target_arg(*t), WSTATUS, opts, 0]));
                insns.push(record(&log, WSTATUS, 4));
                m.want.push(Expect::ret(ret).with_mem(st.unwrap_or(SENTINEL).to_le_bytes().to_vec()));
                m.labels.push(i);
            }
            Op::Sigaction(sig, d) => {
                // Init's SIGUSR1 never goes back to its default (see `init_kill_ok`).
                if *sig == g::SIGUSR1 && d.h == H::Dfl {
                    continue;
                }
                insns.push(store(|_| NEW, sigaction_bytes(*d)));
                insns.push(sys(g::__NR_rt_sigaction, &[*sig as u64, NEW, OLD, 8]));
                insns.push(record(&log, OLD, 16));
                let old = sigaction_bytes(m.disp(*sig));
                if *sig == g::SIGCHLD {
                    m.chld = *d;
                } else {
                    m.usr1 = *d;
                }
                // Ignoring a pending signal discards it (POSIX), blocked or not.
                if d.h == H::Ign || (d.h == H::Dfl && *sig == g::SIGCHLD) {
                    m.pending &= !bit(*sig);
                }
                // The old handler (flags start out 0, then are what was set).
                m.want.push(Expect::ret(0).with_mem(old[..8].to_vec()));
                m.labels.push(i);
            }
            Op::Mask(how, set) => {
                insns.push(store(|_| NEW, set.to_le_bytes().to_vec()));
                insns.push(sys(g::__NR_rt_sigprocmask, &[*how as u64, NEW, OLD, 8]));
                insns.push(record(&log, OLD, 8));
                let old = m.mask;
                m.mask = match *how {
                    g::SIG_BLOCK => old | set,
                    g::SIG_UNBLOCK => old & !set,
                    _ => *set,
                };
                m.deliver_pending(i);
                m.want.push(Expect::ret(0).with_mem(old.to_le_bytes().to_vec()));
                m.labels.push(i);
            }
            Op::Pending => {
                insns.push(sys(g::__NR_rt_sigpending, &[OLD, 8]));
                insns.push(record(&log, OLD, 8));
                m.want.push(Expect::ret(0).with_mem(m.pending.to_le_bytes().to_vec()));
                m.labels.push(i);
            }
        }
    }
    insns.push(sys(g::__NR_exit_group, &[0]));
    let p = Program { base: BASE, insns };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, &timespec(100_000)))]);
    let status = boot_checked(&mut hal, cfg).map_err(|e| format!("boot: {e}"))?;
    let got: Vec<Rec> = log.borrow().iter().filter(|r| r.space == 1).cloned().collect();
    // Compare, handler runs in a row as sets.
    let g2: Vec<_> = got.iter().map(|r| (Some(r.ret), Some(r.mem.clone()), 0)).collect();
    let w2: Vec<_> = m.want.iter().zip(&m.labels).map(|(w, &l)| (w.ret, w.mem.clone(), l)).collect();
    let (g2, w2) = (normalize(&g2), normalize(&w2));
    let got: Vec<Rec> = g2.iter().map(|(r, mem, _)| Rec { space: 1, ret: r.unwrap(), mem: mem.clone().unwrap_or_default() }).collect();
    let want: Vec<Expect> = w2.iter().map(|(r, mem, _)| Expect { ret: *r, mem: mem.clone() }).collect();
    let labels: Vec<usize> = w2.iter().map(|x| x.2).collect();
    compare(ops, &got, &want, &labels)?;
    if status != 0 {
        return Err(format!("init's exit status {status} (log {:?})", hal.log));
    }
    if let Some(l) = hal.log.iter().find(|l| l.contains("invariant") || l.contains("leak")) {
        return Err(l.clone());
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..32)
}

proptest! {
    #![proptest_config(prop_config("prop_signals", 192))]

    #[test]
    fn process_tree_matches_the_model(ops in ops()) {
        check(&ops, Bug::None).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn planted_bug_no_reparent_is_caught() {
    let mut runner = planted_runner(512);
    let r = runner.run(&ops(), |ops| check(&ops, Bug::NoReparent).map_err(TestCaseError::fail));
    assert!(r.is_err(), "the property did not notice a model that never reparents orphans");
}

#[test]
fn known_sequence() {
    let h = Disp { h: H::Handler, restart: false, nocldwait: false, nocldstop: false };
    let ops = vec![
        Op::Wait(Target::All, true, false, false),
        Op::Fork { pgrp: false, kind: Kind::Exit(3), orphan: None },
        Op::Pending,
        Op::Wait(Target::Pid(0), true, false, false),
        Op::Wait(Target::Pid(0), true, false, false),
        Op::Sigaction(g::SIGCHLD, h),
        Op::Fork { pgrp: true, kind: Kind::Pause(12), orphan: None },
        Op::Wait(Target::All, true, false, false),
        Op::Kill(Target::Grp(1), g::SIGTERM),
        Op::Wait(Target::Grp(1), false, false, false),
        Op::Mask(g::SIG_BLOCK, bit(g::SIGCHLD)),
        Op::Fork { pgrp: false, kind: Kind::Exit(1), orphan: Some(Kind::Exit(31)) },
        Op::Pending,
        Op::Mask(g::SIG_UNBLOCK, bit(g::SIGCHLD)),
        Op::Wait(Target::All, false, false, false),
        Op::Wait(Target::All, false, false, false),
        Op::Fork { pgrp: false, kind: Kind::Sleep(21), orphan: None },
        Op::Wait(Target::Own, false, false, false),
    ];
    check(&ops, Bug::None).unwrap();
}

// Bugs the property found (each also has its shrunk seed in
// proptest-regressions/prop_signals.txt).

/// kill() skipped zombies: kill(-1, 0) / kill(-pgid, 0) with only unreaped
/// dead processes said ESRCH; Linux counts them until they are reaped.
#[test]
fn bug_kill_reaches_unreaped_zombies() {
    let ops = vec![
        Op::Fork { pgrp: true, kind: Kind::Exit(0), orphan: None },
        Op::Kill(Target::All, 0),
        Op::Kill(Target::Grp(0), 0),
        Op::Kill(Target::Pid(0), g::SIGTERM),
        Op::Wait(Target::Pid(0), true, false, false),
        Op::Kill(Target::Grp(0), 0),
        Op::Kill(Target::All, 0),
    ];
    check(&ops, Bug::None).unwrap();
}

/// SA_NOCLDWAIT with a handler auto-reaped the child but sent no SIGCHLD;
/// Linux's do_notify_parent sends it (only SIG_IGN suppresses it).
#[test]
fn bug_nocldwait_handler_still_gets_sigchld() {
    let ops = vec![
        Op::Sigaction(g::SIGCHLD, Disp { h: H::Handler, restart: false, nocldwait: true, nocldstop: false }),
        Op::Fork { pgrp: false, kind: Kind::Exit(0), orphan: None },
        Op::Wait(Target::All, true, false, false),
    ];
    check(&ops, Bug::None).unwrap();
}

/// Init dropped a SIGCHLD it blocks (default disposition) instead of
/// keeping it pending: blocked signals are never ignored on Linux, init's
/// protection included.
#[test]
fn bug_init_keeps_a_blocked_signal_pending() {
    let ops = vec![
        Op::Mask(g::SIG_SETMASK, bit(g::SIGCHLD) | bit(g::SIGUSR1)),
        Op::Fork { pgrp: false, kind: Kind::Exit(0), orphan: None },
        Op::Pending,
        Op::Mask(g::SIG_SETMASK, 0),
        Op::Pending,
    ];
    check(&ops, Bug::None).unwrap();
}

/// A blocking wait4 whose child exits while a SIGCHLD handler (no
/// SA_RESTART) is installed returned EINTR; Linux's do_wait re-scans the
/// children first and returns the child (the handler runs on the way out).
#[test]
fn bug_wait_reports_the_child_before_the_handler() {
    let h = Disp { h: H::Handler, restart: false, nocldwait: false, nocldstop: false };
    let ops = vec![
        Op::Sigaction(g::SIGCHLD, h),
        Op::Fork { pgrp: false, kind: Kind::Sleep(21), orphan: None },
        Op::Fork { pgrp: true, kind: Kind::Sleep(22), orphan: None },
        Op::Fork { pgrp: false, kind: Kind::Pause(11), orphan: None },
        // The first sleeper wakes and is reported.
        Op::Wait(Target::Own, false, false, false),
        // The second is not eligible: its SIGCHLD interrupts the wait.
        Op::Wait(Target::Pid(2), false, false, false),
        Op::Wait(Target::Grp(1), true, false, false),
    ];
    check(&ops, Bug::None).unwrap();
}

/// An orphan that is already a zombie when its parent dies: init is told
/// (Linux's forget_original_parent notifies the new parent), so with SIGCHLD
/// ignored it is reaped at once.
#[test]
fn bug_reparented_zombie_is_reported_signal_init() {
    let ops = vec![
        Op::Fork { pgrp: false, kind: Kind::Exit(1), orphan: Some(Kind::Pause(40)) },
        Op::Sigaction(g::SIGCHLD, Disp { h: H::Ign, restart: false, nocldwait: false, nocldstop: false }),
        Op::Kill(Target::Pid(0), g::SIGKILL),
        Op::Wait(Target::All, true, false, false),
    ];
    check(&ops, Bug::None).unwrap();
}

/// Stop and continue: wait4(WUNTRACED / WCONTINUED) reports each once,
/// SIGCHLD comes for both (not with SA_NOCLDSTOP), a handled signal waits
/// for SIGCONT, SIGTERM kills a stopped process.
#[test]
fn stop_and_continue() {
    let h = Disp { h: H::Handler, restart: false, nocldwait: false, nocldstop: false };
    let ops = vec![
        Op::Sigaction(g::SIGUSR1, h),
        Op::Fork { pgrp: false, kind: Kind::Pause(12), orphan: None },
        Op::Fork { pgrp: false, kind: Kind::Sleep(21), orphan: None },
        Op::Sigaction(g::SIGCHLD, h),
        Op::Kill(Target::Pid(0), g::SIGSTOP),
        Op::Wait(Target::All, true, false, false),
        Op::Wait(Target::All, true, true, false),
        Op::Wait(Target::All, true, true, false),
        Op::Kill(Target::Pid(0), g::SIGUSR1),
        Op::Wait(Target::All, true, false, false),
        Op::Kill(Target::Pid(0), g::SIGCONT),
        Op::Wait(Target::Pid(0), true, true, true),
        Op::Sigaction(g::SIGCHLD, Disp { nocldstop: true, ..h }),
        Op::Kill(Target::Pid(1), g::SIGSTOP),
        Op::Kill(Target::Pid(1), g::SIGTERM),
        Op::Wait(Target::All, false, true, true),
    ];
    check(&ops, Bug::None).unwrap();
}
