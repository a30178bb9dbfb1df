//! Shared plumbing for the model-based property tests (`prop_*.rs`): a recorder
//! instruction that logs every call's result (and the bytes it produced) from
//! inside the scripted guest, a runner that boots one such script, and the
//! proptest configuration (bounded in CI, `PROPTEST_CASES` overrides it; see
//! `cargo xtask fuzz`).
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use kernel_core::boot;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Where the scripted program is loaded.
pub const BASE: u64 = 0x40_0000;

/// One observation made by the guest right after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Address space that made it (parent vs forked children).
    pub space: u64,
    /// `rax` (the call's result, negative errno) at the time.
    pub ret: i64,
    /// Bytes read back from user memory (a read buffer, a stat, a touch).
    pub mem: Vec<u8>,
}

/// The shared log the recorder instructions append to.
pub type Log = Rc<RefCell<Vec<Rec>>>;

/// Record `rax` and `len` bytes at `addr(regs)`. The read faults like a real
/// load (the instruction restarts once the kernel resolved the fault, or the
/// process dies of SIGSEGV and nothing is recorded).
pub fn record_at(log: &Log, addr: impl Fn(&hal::UserContext) -> u64 + 'static, len: usize) -> Insn {
    let log = log.clone();
    Rc::new(move |ctx, space, phys| {
        let mut buf = vec![0u8; len];
        if len > 0 {
            if let Err(t) = space.user_read(phys, addr(ctx), &mut buf) {
                return Some(t);
            }
        }
        log.borrow_mut().push(Rec { space: space.id, ret: ctx.regs.rax as i64, mem: buf });
        None
    })
}

/// Record a `wait4` status stored at `addr`: `rax` and the bytes
/// (termination signal, exit code).
pub fn record_wstatus(log: &Log, addr: u64) -> Insn {
    let log = log.clone();
    Rc::new(move |ctx, space, phys| {
        let mut b = [0u8; 4];
        if let Err(t) = space.user_read(phys, addr, &mut b) {
            return Some(t);
        }
        let st = u32::from_le_bytes(b);
        log.borrow_mut().push(Rec { space: space.id, ret: ctx.regs.rax as i64, mem: vec![(st & 0x7f) as u8, (st >> 8) as u8] });
        None
    })
}

/// Record `rax` and `len` bytes at a fixed address.
pub fn record(log: &Log, addr: u64, len: usize) -> Insn {
    record_at(log, move |_| addr, len)
}

/// Outcome of one scripted run.
pub struct Outcome {
    pub status: i32,
    pub recs: Vec<Rec>,
    pub log: Vec<String>,
}

/// Boot `/init` = a program at [`BASE`] whose data area holds `data` and whose
/// code is `insns` followed by `exit_group(0)`; a `/tmp` directory exists.
pub fn run(mut insns: Vec<Insn>, data: &[u8], log: &Log) -> Outcome {
    insns.push(sys(linux_raw_sys::general::__NR_exit_group, &[0]));
    let p = Program { base: BASE, insns };
    let (mut hal, _) = machine(vec![p]);
    hal.space_limit = Some(64);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, data)), ("tmp", DIR, vec![])]);
    let status = boot(&mut hal, cfg).expect("boot");
    let recs = log.borrow().clone();
    Outcome { status, recs, log: std::mem::take(&mut hal.log) }
}

/// `PROPTEST_CASES` if set, else `default` (what CI runs).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The configuration of a model property named `name`: bounded cases, failures
/// persisted under `kernel-core/proptest-regressions/<name>.txt` (checked in).
pub fn prop_config(name: &str, default_cases: u32) -> Config {
    let path: &'static str = Box::leak(format!("proptest-regressions/{name}.txt").into_boxed_str());
    Config {
        cases: cases(default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..Config::default()
    }
}

/// The configuration of a planted-bug run: no persistence (the failure is expected).
pub fn planted_config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, max_shrink_iters: 64, ..Config::default() }
}

/// A runner for a planted-bug check: deterministic (the same cases every run,
/// so the check can't flake), no persistence.
pub fn planted_runner(cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    TestRunner::new_with_rng(planted_config(cases), TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Compare the kernel's observations with the model's, step by step: the
/// first divergence is the error (with the step index and op).
pub fn compare<O: std::fmt::Debug>(ops: &[O], got: &[Rec], want: &[Expect], labels: &[usize]) -> Result<(), String> {
    for (i, w) in want.iter().enumerate() {
        let op = labels.get(i).and_then(|&k| ops.get(k));
        let Some(g) = got.get(i) else {
            return Err(format!("step {i} ({op:?}): kernel recorded nothing (process died?), model wants {w:?}"));
        };
        if let Some(r) = w.ret {
            if g.ret != r {
                return Err(format!("step {i} ({op:?}): ret {} but model wants {}", g.ret, r));
            }
        }
        if let Some(m) = &w.mem {
            if &g.mem[..m.len().min(g.mem.len())] != m.as_slice() {
                return Err(format!("step {i} ({op:?}): memory {:?} but model wants {:?}", g.mem, m));
            }
        }
    }
    if got.len() != want.len() {
        return Err(format!("kernel recorded {} steps, model {}", got.len(), want.len()));
    }
    Ok(())
}

/// What the model predicts for one recorded step (`None`: don't care).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    pub ret: Option<i64>,
    pub mem: Option<Vec<u8>>,
}

impl Expect {
    pub fn ret(r: i64) -> Self {
        Expect { ret: Some(r), mem: None }
    }
    pub fn err(e: u32) -> Self {
        Expect::ret(-(e as i64))
    }
    pub fn any() -> Self {
        Expect::default()
    }
    pub fn with_mem(mut self, m: Vec<u8>) -> Self {
        self.mem = Some(m);
        self
    }
}

/// Run a single-process script and check it step by step against the
/// model's expectations; the process must end with status 0.
pub fn run_and_compare<O: std::fmt::Debug>(
    insns: Vec<Insn>,
    data: &[u8],
    log: &Log,
    ops: &[O],
    want: &[Expect],
    labels: &[usize],
) -> Result<(), String> {
    let out = run(insns, data, log);
    compare(ops, &out.recs, want, labels)?;
    if out.status != 0 {
        return Err(format!("exit status {} (log {:?})", out.status, out.log));
    }
    Ok(())
}
