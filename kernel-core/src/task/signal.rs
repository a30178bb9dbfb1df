//! Signal bookkeeping. Issue 2 scope: dispositions, masks and the alternate
//! stack are stored and reported faithfully, and default actions (terminate /
//! ignore) are applied; user handlers are NOT delivered yet (a signal with a
//! handler stays pending).

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
    /// Stop the process (not implemented yet: treated as ignore).
    Stop,
}

/// The default action of `sig` (1..=64).
pub fn default_action(sig: u32) -> DefaultAction {
    match sig {
        g::SIGCHLD | g::SIGURG | g::SIGWINCH | g::SIGCONT => DefaultAction::Ignore,
        g::SIGSTOP | g::SIGTSTP | g::SIGTTIN | g::SIGTTOU => DefaultAction::Stop,
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
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState { actions: [SigAction::default(); NSIG], mask: 0, pending: 0, altstack: (0, g::SS_DISABLE as i32, 0) }
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
