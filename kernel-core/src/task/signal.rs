//! Signal bookkeeping: dispositions, masks, pending sets with their
//! `siginfo`, the alternate stack. Delivery (default actions and handler
//! frames) is in [`crate::task::frame`] and the kernel loop.

use linux_raw_sys::general as g;

/// Highest signal number.
pub const NSIG: usize = 64;

/// A `struct sigaction` as the kernel ABI has it (handler, flags, restorer, mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// `SIG_DFL` (0), `SIG_IGN` (1) or a handler address.
    pub handler: u64,
    /// `SA_*`.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

impl SigAction {
    /// Serialized (32 bytes).
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.handler.to_le_bytes());
        b[8..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.restorer.to_le_bytes());
        b[24..32].copy_from_slice(&self.mask.to_le_bytes());
        b
    }
    /// Parsed from 32 bytes.
    pub fn from_bytes(b: &[u8; 32]) -> SigAction {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        SigAction { handler: w(0), flags: w(8), restorer: w(16), mask: w(24) }
    }
}

/// What the default action of a signal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Kill the process.
    Terminate,
    /// Nothing.
    Ignore,
    /// Stop the process.
    Stop,
    /// Kill the process and report a core dump (no core file is written).
    Core,
}

/// The default action of `sig` (1..=64).
pub fn default_action(sig: u32) -> DefaultAction {
    match sig {
        g::SIGCHLD | g::SIGURG | g::SIGWINCH | g::SIGCONT => DefaultAction::Ignore,
        g::SIGSTOP | g::SIGTSTP | g::SIGTTIN | g::SIGTTOU => DefaultAction::Stop,
        g::SIGQUIT | g::SIGILL | g::SIGTRAP | g::SIGABRT | g::SIGBUS | g::SIGFPE | g::SIGSEGV | g::SIGXCPU
        | g::SIGXFSZ | g::SIGSYS => DefaultAction::Core,
        _ => DefaultAction::Terminate,
    }
}

/// Per-process signal state.
#[derive(Clone, Debug)]
pub struct SignalState {
    /// Dispositions, index `sig - 1`.
    pub actions: [SigAction; NSIG],
    /// Blocked set (bit `sig - 1`).
    pub mask: u64,
    /// Pending set (bit `sig - 1`): signals waiting for a handler or unblock.
    pub pending: u64,
    /// `sigaltstack`: (ss_sp, ss_flags, ss_size).
    pub altstack: (u64, i32, u64),
    /// The `siginfo` of each pending signal, index `sig - 1`.
    pub info: [SigInfo; NSIG],
}

/// The fields of a `siginfo_t` the kernel fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// `si_signo`.
    pub signo: u32,
    /// `si_code` (`SI_USER` 0, `SI_TKILL` -6, `SI_KERNEL` 0x80, `SEGV_MAPERR` 1…).
    pub code: i32,
    /// `si_pid` (kill, SIGCHLD).
    pub pid: u32,
    /// `si_uid`.
    pub uid: u32,
    /// `si_addr` for faults.
    pub addr: u64,
    /// `si_status` for SIGCHLD.
    pub status: i32,
    /// Fault signal: `si_addr` is meaningful (else pid/uid).
    pub fault: bool,
    /// SIGCHLD: utime/stime (clock ticks).
    pub times: (u64, u64),
    /// `SI_TIMER`: the POSIX timer's id (`si_timerid`).
    pub timerid: i32,
    /// `SI_TIMER`: expirations missed while the signal was pending.
    pub overrun: i32,
    /// `SI_TIMER`: the timer's `sigev_value` (`si_value`).
    pub value: u64,
}

/// `si_code` of a POSIX timer's signal.
pub const SI_TIMER: i32 = -2;

impl SigInfo {
    /// A signal from a process (`kill`: code `SI_USER`, `tkill`: `SI_TKILL`).
    pub fn user(signo: u32, code: i32, pid: u32, uid: u32) -> SigInfo {
        SigInfo { signo, code, pid, uid, ..SigInfo::default() }
    }
    /// A kernel-generated signal (`SI_KERNEL`).
    pub fn kernel(signo: u32) -> SigInfo {
        SigInfo { signo, code: 0x80, ..SigInfo::default() }
    }
    /// The 128-byte `siginfo_t`.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        if self.fault {
            b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        } else if self.code == SI_TIMER {
            b[16..20].copy_from_slice(&self.timerid.to_le_bytes());
            b[20..24].copy_from_slice(&self.overrun.to_le_bytes());
            b[24..32].copy_from_slice(&self.value.to_le_bytes());
        } else {
            b[16..20].copy_from_slice(&self.pid.to_le_bytes());
            b[20..24].copy_from_slice(&self.uid.to_le_bytes());
            if self.signo == g::SIGCHLD {
                b[24..28].copy_from_slice(&self.status.to_le_bytes());
                b[32..40].copy_from_slice(&self.times.0.to_le_bytes());
                b[40..48].copy_from_slice(&self.times.1.to_le_bytes());
            }
        }
        b
    }
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState {
            actions: [SigAction::default(); NSIG],
            mask: 0,
            pending: 0,
            altstack: (0, g::SS_DISABLE as i32, 0),
            info: [SigInfo::default(); NSIG],
        }
    }
}

impl SignalState {
    /// At exec: handlers are reset to default (ignored stays ignored); the
    /// mask and pending set survive; the alternate stack is dropped.
    pub fn exec_reset(&mut self) {
        for a in &mut self.actions {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
        self.altstack = (0, g::SS_DISABLE as i32, 0);
    }
}

impl SignalState {
    /// Mark `info.signo` pending with its info (a standard signal already
    /// pending is not queued twice).
    pub fn post(&mut self, info: SigInfo) {
        let sig = info.signo;
        if sig == 0 || sig as usize > NSIG {
            return;
        }
        if self.pending & sigbit(sig) == 0 {
            self.info[(sig - 1) as usize] = info;
        }
        self.pending |= sigbit(sig);
    }
    /// Take the lowest pending signal in `set` (synchronous faults first).
    pub fn take(&mut self, set: u64) -> Option<SigInfo> {
        let p = self.pending & set;
        if p == 0 {
            return None;
        }
        let sync = p & (sigbit(g::SIGSEGV) | sigbit(g::SIGBUS) | sigbit(g::SIGILL) | sigbit(g::SIGFPE) | sigbit(g::SIGTRAP));
        let pick = if sync != 0 { sync } else { p };
        let sig = pick.trailing_zeros() + 1;
        self.pending &= !sigbit(sig);
        let mut i = self.info[(sig - 1) as usize];
        i.signo = sig;
        Some(i)
    }
}

/// Bit for `sig` in a signal set.
pub fn sigbit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

/// SIGKILL and SIGSTOP cannot be caught, blocked or ignored.
pub const UNBLOCKABLE: u64 = (1 << (g::SIGKILL - 1)) | (1 << (g::SIGSTOP - 1));

/// `SIG_DFL`.
pub const SIG_DFL: u64 = 0;
/// `SIG_IGN`.
pub const SIG_IGN: u64 = 1;
