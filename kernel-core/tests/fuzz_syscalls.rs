//! Random system calls with random (and half-plausible) arguments must never
//! panic the kernel: every call returns, the guest keeps running, and the
//! kernel shuts down cleanly when init exits.

mod common;

use std::rc::Rc;

use common::*;
use hal::Trap;
use kernel_core::boot;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const BASE: u64 = 0x40_0000;

fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..8,
        Just(u64::MAX),
        Just(BASE + SCRATCH_OFF),
        Just(BASE + DATA_OFF),
        Just(0xdead_0000u64),
        (0u64..0x4000).prop_map(|x| BASE + x),
        any::<u64>(),
        Just(1u64 << 62),
        Just(g::AT_FDCWD as i64 as u64),
    ]
}

fn call() -> impl Strategy<Value = (u32, [u64; 6])> {
    // Mostly implemented calls; fork/exec/exit/kill excluded so one run stays one process tree
    // of bounded size (they have their own tests); pause/sleeps are bounded by a timeout below.
    let nrs = prop_oneof![
        0u32..25,
        Just(g::__NR_openat),
        Just(g::__NR_newfstatat),
        Just(g::__NR_getdents64),
        Just(g::__NR_fcntl),
        Just(g::__NR_ioctl),
        Just(g::__NR_dup3),
        Just(g::__NR_pipe2),
        Just(g::__NR_prlimit64),
        Just(g::__NR_getrandom),
        Just(g::__NR_rt_sigaction),
        Just(g::__NR_rt_sigprocmask),
        Just(g::__NR_sigaltstack),
        Just(g::__NR_arch_prctl),
        Just(g::__NR_uname),
        Just(g::__NR_clock_gettime),
        Just(g::__NR_readlinkat),
        Just(g::__NR_getcwd),
        Just(g::__NR_madvise),
        Just(g::__NR_wait4),
        Just(g::__NR_waitid),
        Just(g::__NR_mkdirat),
        Just(g::__NR_unlinkat),
        400u32..600,
    ];
    (nrs, prop::array::uniform6(arg()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_syscalls_never_panic(calls in prop::collection::vec(call(), 1..40)) {
        let mut insns: Vec<Insn> = Vec::new();
        for (nr, a) in calls {
            // Calls that could block forever (reads of the console, pause, waits) get
            // a closed console and no children, so they return.
            insns.push(sys(nr, &a));
        }
        insns.push(sys(g::__NR_exit_group, &[5]));
        let p = Program { base: BASE, insns };
        let (mut hal, _) = machine(vec![p]);
        hal.console.input_closed = true;
        let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0")), ("etc", DIR, vec![]), ("etc/f", 0o100644, b"x".to_vec())]);
        let st = boot(&mut hal, cfg).expect("boot");
        // Either init ran to its exit(5), or a call killed it with a signal
        // (e.g. SIGPIPE, a fatal fault after mprotect), or it blocked forever (deadlock).
        prop_assert!(st == 5 || st > 128, "status {st}");
    }
}

#[test]
fn a_fatal_trap_in_init_ends_the_boot() {
    let p = Program { base: BASE, insns: vec![Rc::new(|_, _, _| Some(Trap::Lost { signal: Some(31) }))] };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 128 + 31);
}
