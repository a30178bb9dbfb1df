//! Property: random ptrace sequences against a busy child never panic the
//! kernel, never break its invariants (checked before every step of the
//! loop), never leave a task that cannot be killed and reaped, and answer
//! as Linux would where the answer does not depend on scheduling:
//! - every request to a task the caller does not trace is `ESRCH`, an
//!   attach to a task already traced is `EPERM`, an attach to a live
//!   untraced child succeeds, anything to a reaped child is `ESRCH`;
//! - every result is a success or one of the errnos ptrace,
//!   `process_vm_readv` and `wait4` give (no ENOSYS, no garbage);
//! - at the end `SIGKILL` ends the child whatever state it is in (a
//!   ptrace stop, a group stop, a signal-delivery stop, mid-syscall), and
//!   `wait4` reaps it: no deadlock, no leaked frame.
//!
//! Init (pid 1) runs the script; its first fork (pid 2) loops on
//! `getpid`/`sched_yield` and may fork once (a grandchild that exits).

mod common;

use common::model::*;
use common::*;
use kernel_core::kernel::boot_checked;
use linux_raw_sys::errno as e;
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;
use proptest::prelude::*;

const SCRATCH: u64 = BASE + SCRATCH_OFF;
const WSTATUS: u64 = SCRATCH;
const OUT: u64 = SCRATCH + 0x10;
const REGS: u64 = SCRATCH + 0x100;
const IOV: u64 = SCRATCH + 0x400;
const CHILD: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Attach,
    Seize(u32),
    Interrupt,
    Resume(u32, u64),
    Detach(u64),
    PtKill,
    Peek(u64),
    Poke(u64),
    GetRegs(bool),
    SetRegs(u64),
    Options(u64),
    SigInfo,
    SyscallInfo,
    Garbage(u64, u64, u64),
    VmRead(u64, u64),
    Wait,
    Kill(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let addr = prop_oneof![Just(BASE + DATA_OFF), Just(BASE + ENTRY_OFF), Just(0u64), Just(1u64 << 47), Just(u64::MAX - 7), any::<u64>()];
    let sig = prop_oneof![Just(0u64), Just(g::SIGUSR1 as u64), Just(g::SIGSTOP as u64), Just(g::SIGCONT as u64), Just(65u64), any::<u64>()];
    let opts = prop_oneof![
        Just(0u32),
        Just(pt::PTRACE_O_TRACESYSGOOD | pt::PTRACE_O_TRACEFORK | pt::PTRACE_O_TRACEEXIT),
        Just(pt::PTRACE_O_EXITKILL | pt::PTRACE_O_TRACECLONE | pt::PTRACE_O_TRACEEXEC),
        any::<u32>()
    ];
    prop_oneof![
        3 => Just(Op::Attach),
        2 => opts.clone().prop_map(Op::Seize),
        1 => Just(Op::Interrupt),
        6 => (prop_oneof![Just(pt::PTRACE_CONT), Just(pt::PTRACE_SYSCALL), Just(pt::PTRACE_SINGLESTEP)], sig.clone()).prop_map(|(r, s)| Op::Resume(r, s)),
        1 => sig.clone().prop_map(Op::Detach),
        1 => Just(Op::PtKill),
        2 => addr.clone().prop_map(Op::Peek),
        2 => addr.clone().prop_map(Op::Poke),
        2 => any::<bool>().prop_map(Op::GetRegs),
        2 => prop_oneof![Just(u64::MAX), Just(g::__NR_getpid as u64), any::<u64>()].prop_map(Op::SetRegs),
        1 => opts.prop_map(|o| Op::Options(u64::from(o))),
        1 => Just(Op::SigInfo),
        1 => Just(Op::SyscallInfo),
        1 => (any::<u64>(), addr.clone(), any::<u64>()).prop_map(|(r, a, d)| Op::Garbage(r, a, d)),
        1 => (addr, 0u64..64).prop_map(|(a, l)| Op::VmRead(a, l)),
        5 => Just(Op::Wait),
        1 => prop_oneof![Just(g::SIGSTOP), Just(g::SIGCONT), Just(g::SIGUSR1), Just(g::SIGCHLD)].prop_map(Op::Kill),
    ]
}

fn ptrace(req: u32, addr: u64, data: u64) -> Insn {
    sys(g::__NR_ptrace, &[u64::from(req), u64::from(CHILD), addr, data])
}

/// The script: the child's loop, then init's ops, each result recorded.
fn script(ops: &[Op], log: &Log) -> Vec<Insn> {
    const LOOP: usize = 1;
    const EXIT: usize = 8;
    const MAIN: usize = 9;
    let mut v: Vec<Insn> = vec![
        jump_if(BASE, MAIN, |_| true),
        // LOOP (the child): fork once (r14 says it did), then getpid/yield for ever.
        jump_if(BASE, 5, |c| c.regs.r14 != 0),
        exec_op(|c| c.regs.r14 = 1),
        sys(g::__NR_fork, &[]),
        // The grandchild exits at once.
        jump_if(BASE, EXIT, |c| c.regs.rax == 0),
        sys(g::__NR_getpid, &[]),
        sys(g::__NR_sched_yield, &[]),
        jump_if(BASE, LOOP, |_| true),
        sys(g::__NR_exit_group, &[3]),
    ];
    assert_eq!(v.len(), MAIN);
    v.push(sys(g::__NR_fork, &[]));
    v.push(jump_if(BASE, LOOP, |c| c.regs.rax == 0));
    for op in ops {
        match *op {
            Op::Attach => v.push(ptrace(pt::PTRACE_ATTACH, 0, 0)),
            Op::Seize(o) => v.push(ptrace(pt::PTRACE_SEIZE, 0, u64::from(o))),
            Op::Interrupt => v.push(ptrace(pt::PTRACE_INTERRUPT, 0, 0)),
            Op::Resume(r, s) => v.push(ptrace(r, 0, s)),
            Op::Detach(s) => v.push(ptrace(pt::PTRACE_DETACH, 0, s)),
            Op::PtKill => v.push(ptrace(pt::PTRACE_KILL, 0, 0)),
            Op::Peek(a) => v.push(ptrace(pt::PTRACE_PEEKDATA, a, OUT)),
            Op::Poke(a) => v.push(ptrace(pt::PTRACE_POKEDATA, a, 0x9090_9090_9090_9090)),
            Op::GetRegs(good) => v.push(ptrace(pt::PTRACE_GETREGS, 0, if good { REGS } else { 8 })),
            Op::SetRegs(nr) => {
                v.push(ptrace(pt::PTRACE_GETREGS, 0, REGS));
                v.push(store(|_| REGS + 15 * 8, nr.to_le_bytes().to_vec()));
                v.push(ptrace(pt::PTRACE_SETREGS, 0, REGS));
            }
            Op::Options(o) => v.push(ptrace(pt::PTRACE_SETOPTIONS, 0, o)),
            Op::SigInfo => v.push(ptrace(pt::PTRACE_GETSIGINFO, 0, REGS)),
            Op::SyscallInfo => v.push(ptrace(pt::PTRACE_GET_SYSCALL_INFO, 88, REGS)),
            Op::Garbage(r, a, d) => v.push(sys(g::__NR_ptrace, &[r, u64::from(CHILD), a, d])),
            Op::VmRead(a, l) => {
                let mut iov = Vec::new();
                for w in [OUT, 8, a, l] {
                    iov.extend_from_slice(&w.to_le_bytes());
                }
                v.push(store(|_| IOV, iov));
                v.push(sys(g::__NR_process_vm_readv, &[u64::from(CHILD), IOV, 1, IOV + 16, 1, 0]));
            }
            Op::Wait => v.push(sys(g::__NR_wait4, &[u64::from(CHILD), WSTATUS, u64::from(g::WNOHANG | g::__WALL), 0])),
            Op::Kill(s) => v.push(sys(g::__NR_kill, &[u64::from(CHILD), u64::from(s)])),
        }
        v.push(record(log, WSTATUS, 4));
    }
    // The end: SIGKILL, then reap whatever is left (bounded by r12).
    v.push(sys(g::__NR_kill, &[u64::from(CHILD), u64::from(g::SIGKILL)]));
    let again = v.len();
    v.push(sys(g::__NR_wait4, &[u64::MAX, WSTATUS, u64::from(g::__WALL), 0]));
    v.push(record(log, WSTATUS, 4));
    v.push(exec_op(|c| c.regs.r12 += 1));
    let echild = (-(e::ECHILD as i64)) as u64;
    v.push(jump_if(BASE, again, move |c| c.regs.rax != echild && c.regs.r12 < 16));
    v.push(sys(g::__NR_exit_group, &[0]));
    v
}

fn errno(r: i64) -> Option<u32> {
    (-4095..0).contains(&r).then_some((-r) as u32)
}

/// Check the recorded results against what cannot depend on scheduling.
fn check(ops: &[Op], recs: &[Rec]) -> Result<(), String> {
    let allowed = [e::EPERM, e::ESRCH, e::EIO, e::EFAULT, e::EINVAL, e::ECHILD];
    let (mut attached, mut reaped) = (false, false);
    for (i, op) in ops.iter().enumerate() {
        let Some(r) = recs.get(i) else { return Err(format!("op {i} {op:?}: no record (init died?)")) };
        let ret = r.ret;
        if let Some(en) = errno(ret) {
            if !allowed.contains(&en) {
                return Err(format!("op {i} {op:?}: errno {en}"));
            }
        }
        let is_ptrace = !matches!(op, Op::Wait | Op::Kill(_) | Op::VmRead(..));
        match op {
            Op::Attach | Op::Seize(_) => {
                let ok = if matches!(op, Op::Seize(o) if o & !pt::PTRACE_O_MASK != 0) {
                    ret == -(e::EINVAL as i64)
                } else if reaped {
                    ret == -(e::ESRCH as i64)
                } else if attached {
                    ret == -(e::EPERM as i64)
                } else {
                    // A child killed but not yet reaped is ESRCH.
                    ret == 0 || ret == -(e::ESRCH as i64)
                };
                if !ok {
                    return Err(format!("op {i} {op:?}: {ret} (attached {attached}, reaped {reaped})"));
                }
                if ret == 0 {
                    attached = true;
                }
            }
            Op::Garbage(..) => {}
            _ if is_ptrace && (!attached || reaped) && ret != -(e::ESRCH as i64) => {
                return Err(format!("op {i} {op:?}: {ret} from a task not traced"));
            }
            Op::Detach(_) if ret == 0 => attached = false,
            Op::Wait if ret == i64::from(CHILD) => {
                let st = u32::from_le_bytes(r.mem[..4].try_into().unwrap_or([0; 4]));
                if st & 0x7f != 0x7f {
                    // Exited or killed: reaped, and the link is gone with it.
                    reaped = true;
                    attached = false;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), String> {
    let log: Log = Default::default();
    let insns = script(ops, &log);
    let (mut hal, _) = machine(vec![Program { base: BASE, insns }]);
    hal.space_limit = Some(64);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, &[0u8; 64]))]);
    let status = boot_checked(&mut hal, cfg).map_err(|e| format!("boot: {e}"))?;
    if let Some(l) = hal.log.iter().find(|l| l.contains("invariant") || l.contains("leak") || l.contains("deadlock")) {
        return Err(l.clone());
    }
    if status != 0 {
        return Err(format!("init's exit status {status} (log {:?})", hal.log));
    }
    let recs: Vec<Rec> = log.borrow().iter().filter(|r| r.space == 1).cloned().collect();
    check(ops, &recs)?;
    // The end: the child reaped (killed, or gone before), then ECHILD.
    let tail = &recs[ops.len()..];
    if tail.last().map(|r| r.ret) != Some(-(e::ECHILD as i64)) {
        return Err(format!("the child was never reaped: {tail:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(prop_config("prop_ptrace", 64))]
    #[test]
    fn random_ptrace_sequences_keep_the_kernel_sound(ops in prop::collection::vec(op(), 1..40)) {
        if let Err(e) = run(&ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[test]
fn attach_stop_peek_kill_reap() {
    // A fixed sequence through the common path, so a regression there is
    // named by this test rather than found by chance.
    let ops = [Op::Attach, Op::Wait, Op::Peek(BASE + DATA_OFF), Op::Resume(pt::PTRACE_SYSCALL, 0), Op::Wait, Op::GetRegs(true), Op::PtKill, Op::Wait];
    run(&ops).unwrap();
}
