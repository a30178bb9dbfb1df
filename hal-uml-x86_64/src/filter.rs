//! The stubs' seccomp filters (classic BPF), built at startup and placed in
//! the stub image's data page.
//!
//! - [`executor`]: the ptrace stub (whole process) and the seccomp stub's
//!   executor thread. Allows only what the executor runs — `mmap` of the
//!   physical-memory fd (fd 3, `MAP_SHARED | MAP_FIXED`, optionally
//!   `| MAP_POPULATE`),
//!   `munmap`, `mprotect` — plus `futex` (wait on the control page, wake the
//!   mailbox) and `exit`/`exit_group`, and only from the stub's code.
//!   Anything else kills the process.
//! - [`guest`]: the seccomp stub's guest thread. A system call from outside
//!   the stub's code traps (`SECCOMP_RET_TRAP`, the guest's system calls);
//!   from inside it only `futex` wait (no timeout) and wake on the mailbox's
//!   state word, `rt_sigreturn`, `sched_yield`, `arch_prctl(ARCH_SET_FS /
//!   ARCH_SET_GS)` and `exit_group` are allowed; anything else kills the
//!   process.

pub use hal_uml_host::bpf::{Insn, RET_ALLOW, RET_KILL_PROCESS, RET_TRAP};
use hal_uml_host::bpf::AUDIT_ARCH_X86_64;

const LD_ABS_W: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const RET: u16 = 0x06;

use crate::stub::{self, CTRL_ADDR, MB_ADDR};

const NR: u32 = 0;
const ARCH: u32 = 4;
const IP_LO: u32 = 8;
const IP_HI: u32 = 12;
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// Where a conditional jump goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Kill,
    Trap,
    Label(&'static str),
    /// That many instructions past the next one.
    Ahead(usize),
}

enum Op {
    Ld(u32),
    /// `if A == k` (or `A > k` when `gt`) then `t` else `f`.
    Jmp { gt: bool, k: u32, t: To, f: To },
    Label(&'static str),
}

/// Assemble: labels are resolved; the three return blocks are appended.
fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Positions of instructions and labels.
    let mut pos = Vec::new();
    let mut labels = Vec::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Label(l) => labels.push((*l, n)),
            _ => {
                pos.push(n);
                n += 1;
            }
        }
    }
    let (allow, kill, trap) = (n, n + 1, n + 2);
    let target = |t: To, at: usize| -> u8 {
        let dest = match t {
            To::Next => at + 1,
            To::Allow => allow,
            To::Kill => kill,
            To::Trap => trap,
            To::Label(l) => labels.iter().find(|(x, _)| *x == l).map(|(_, p)| *p).expect("label"),
            To::Ahead(n) => at + 1 + n,
        };
        u8::try_from(dest - at - 1).expect("jump too far")
    };
    let mut out = Vec::new();
    for op in ops {
        let at = out.len();
        match *op {
            Op::Label(_) => {}
            Op::Ld(off) => out.push(Insn { code: LD_ABS_W, jt: 0, jf: 0, k: off }),
            Op::Jmp { gt, k, t, f } => {
                out.push(Insn { code: if gt { JGT } else { JEQ }, jt: target(t, at), jf: target(f, at), k })
            }
        }
    }
    for k in [RET_ALLOW, RET_KILL_PROCESS, RET_TRAP] {
        out.push(Insn { code: RET, jt: 0, jf: 0, k });
    }
    out
}

fn eq(k: u32, t: To, f: To) -> Op {
    Op::Jmp { gt: false, k, t, f }
}

/// `instruction_pointer` (the address after the `syscall`) must be in
/// `(code.0, code.1]`, else `outside`.
fn ip_check(code: (u64, u64), outside: To) -> [Op; 4] {
    let (lo, hi) = code;
    debug_assert_eq!(lo >> 32, hi >> 32);
    [
        Op::Ld(IP_HI),
        eq((lo >> 32) as u32, To::Next, outside),
        Op::Ld(IP_LO),
        Op::Jmp { gt: true, k: hi as u32, t: outside, f: To::Next },
    ]
}

/// `if arg == k` (all 64 bits) then `t` else `f`.
fn arg_is(i: u32, k: u64, t: To, f: To) -> [Op; 4] {
    [
        Op::Ld(arg_hi(i)),
        // A mismatch of the upper half skips the lower half's test.
        eq((k >> 32) as u32, To::Next, if matches!(f, To::Next) { To::Ahead(2) } else { f }),
        Op::Ld(arg_lo(i)),
        eq(k as u32, t, f),
    ]
}

/// `futex` only as the stubs use it: `FUTEX_WAIT` (shared, no timeout,
/// so a waiter stays asleep until someone wakes that very word) on
/// `wait_on`, `FUTEX_WAKE` (shared) on `wake_on`. Anything else kills.
fn futex_rule(ops: &mut Vec<Op>, wait_on: u64, wake_on: &[u64]) {
    // The operation is an `int`: the host ignores its upper half.
    ops.extend([Op::Ld(arg_lo(1)), eq(0, To::Label("wait"), To::Next), eq(1, To::Label("wake"), To::Kill)]);
    ops.push(Op::Label("wait"));
    ops.extend(arg_is(3, 0, To::Next, To::Kill));
    ops.extend(arg_is(0, wait_on, To::Allow, To::Kill));
    ops.push(Op::Label("wake"));
    for (n, &w) in wake_on.iter().enumerate() {
        let last = n + 1 == wake_on.len();
        ops.extend(arg_is(0, w, To::Allow, if last { To::Kill } else { To::Next }));
    }
}

/// The executor's filter (ptrace stubs, and the seccomp stub's executor thread).
pub fn executor(code: (u64, u64)) -> Vec<Insn> {
    let mut ops: Vec<Op> = Vec::new();
    ops.extend(ip_check(code, To::Kill));
    ops.extend([
        Op::Ld(ARCH),
        eq(AUDIT_ARCH_X86_64, To::Next, To::Kill),
        Op::Ld(NR),
        eq(libc::SYS_mmap as u32, To::Label("mmap"), To::Next),
        eq(libc::SYS_munmap as u32, To::Allow, To::Next),
        eq(libc::SYS_mprotect as u32, To::Allow, To::Next),
        eq(libc::SYS_exit as u32, To::Allow, To::Next),
        eq(libc::SYS_exit_group as u32, To::Allow, To::Next),
        eq(libc::SYS_futex as u32, To::Label("futex"), To::Kill),
        Op::Label("mmap"),
        // fd == PHYS_FD, flags == MAP_SHARED | MAP_FIXED (both 64-bit words).
        Op::Ld(arg_lo(4)),
        eq(crate::ptrace::PHYS_FD as u32, To::Next, To::Kill),
        Op::Ld(arg_hi(4)),
        eq(0, To::Next, To::Kill),
        Op::Ld(arg_lo(3)),
        eq((libc::MAP_SHARED | libc::MAP_FIXED) as u32, To::Label("flags_ok"), To::Next),
        eq((libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE) as u32, To::Next, To::Kill),
        Op::Label("flags_ok"),
        Op::Ld(arg_hi(3)),
        eq(0, To::Allow, To::Kill),
        Op::Label("futex"),
    ]);
    futex_rule(&mut ops, CTRL_ADDR, &[MB_ADDR, MB_ADDR + stub::mb::EXEC_DONE as u64]);
    assemble(&ops)
}

/// The seccomp stub's guest-thread filter.
pub fn guest(code: (u64, u64)) -> Vec<Insn> {
    let mut ops: Vec<Op> = Vec::new();
    // Every system call made outside the stub's code is the guest's: trap it
    // (whatever its ABI: int $0x80 too).
    ops.extend(ip_check(code, To::Trap));
    ops.extend([
        Op::Ld(ARCH),
        eq(AUDIT_ARCH_X86_64, To::Next, To::Kill),
        Op::Ld(NR),
        eq(libc::SYS_rt_sigreturn as u32, To::Allow, To::Next),
        eq(libc::SYS_exit_group as u32, To::Allow, To::Next),
        eq(libc::SYS_sched_yield as u32, To::Allow, To::Next),
        eq(libc::SYS_arch_prctl as u32, To::Label("arch"), To::Next),
        eq(libc::SYS_futex as u32, To::Label("futex"), To::Kill),
        Op::Label("arch"),
        Op::Ld(arg_lo(0)),
        eq(0x1001, To::Allow, To::Next), // ARCH_SET_GS
        eq(0x1002, To::Allow, To::Kill), // ARCH_SET_FS
        Op::Label("futex"),
    ]);
    // Only the mailbox's state word: so a thread found waiting there (the
    // kernel counts waiters) sleeps until the kernel or the executor wakes
    // it, and none can pose as the executor waiting on the control page.
    futex_rule(&mut ops, MB_ADDR, &[MB_ADDR]);
    assemble(&ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the subset used, over a seccomp_data.
    fn run(prog: &[Insn], nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
        data[8..16].copy_from_slice(&ip.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                LD_ABS_W => a = u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap()),
                JEQ | JGT => {
                    let c = if i.code == JEQ { a == i.k } else { a > i.k };
                    pc += if c { i.jt } else { i.jf } as usize;
                }
                RET => return i.k,
                _ => panic!("opcode"),
            }
            pc += 1;
        }
    }

    const CODE: (u64, u64) = (0x7ff0_0000_0000, 0x7ff0_0000_0800);

    #[test]
    fn guest_filter() {
        let g = guest(CODE);
        assert_eq!(run(&g, 39, 0x40_0007, [0; 6]), RET_TRAP);
        assert_eq!(run(&g, 9, 0x7ff0_0000_0900, [0; 6]), RET_TRAP);
        assert_eq!(run(&g, 9, 0x7ff1_0000_0100, [0; 6]), RET_TRAP);
        assert_eq!(run(&g, 15, 0x7ff0_0000_0100, [0; 6]), RET_ALLOW);
        let ip = 0x7ff0_0000_0100;
        // futex: wait without timeout and wake, on the mailbox's state word only.
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 0, 0, 0x1000, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 0, 0, 1 << 32, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [CTRL_ADDR, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [CTRL_ADDR, 1, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [MB_ADDR + (1 << 32), 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 0x80, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 202, ip, [MB_ADDR, 5, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 158, 0x7ff0_0000_0100, [0x1002, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&g, 158, 0x7ff0_0000_0100, [0x2001, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 9, 0x7ff0_0000_0100, [0, 0, 0, 0x11, 3, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&g, 39, 0x7ff0_0000_0100, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn executor_filter() {
        let e = executor(CODE);
        let ip = 0x7ff0_0000_0100;
        assert_eq!(run(&e, 9, ip, [0x1000, 0x1000, 3, 0x11, 3, 0]), RET_ALLOW);
        assert_eq!(run(&e, 9, ip, [0x1000, 0x1000, 3, 0x11, 4, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 9, ip, [0x1000, 0x1000, 3, 0x22, 3, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 9, ip, [0x1000, 0x1000, 3, 0x8011, 3, 0]), RET_ALLOW);
        assert_eq!(run(&e, 9, ip, [0x1000, 0x1000, 3, 0x8111, 3, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 11, ip, [0; 6]), RET_ALLOW);
        assert_eq!(run(&e, 10, ip, [0; 6]), RET_ALLOW);
        assert_eq!(run(&e, 39, ip, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 11, 0x40_0000, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 202, ip, [CTRL_ADDR, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&e, 202, ip, [MB_ADDR, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&e, 202, ip, [MB_ADDR + 88, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&e, 202, ip, [MB_ADDR, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(run(&e, 202, ip, [CTRL_ADDR, 0, 0, 0x1000, 0, 0]), RET_KILL_PROCESS);
    }
}
