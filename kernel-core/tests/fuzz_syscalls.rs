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
    // Mostly implemented calls. execve is left out (a successful re-exec of init would
    // rerun the script forever); forks are bounded by the mock's space limit.
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
        Just(g::__NR_fork),
        Just(g::__NR_kill),
        Just(g::__NR_nanosleep),
        Just(g::__NR_futex),
        Just(g::__NR_ppoll),
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
            // A call that blocks forever (console read, pause) ends in the
            // deadlock report: that is an outcome too.
            insns.push(sys(nr, &a));
        }
        insns.push(sys(g::__NR_exit_group, &[5]));
        let p = Program { base: BASE, insns };
        let (mut hal, _) = machine(vec![p]);
        hal.space_limit = Some(12);
        hal.console.input.extend(b"some input\n");
        let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0")), ("etc", DIR, vec![]), ("etc/f", 0o100644, b"x".to_vec())]);
        let st = boot(&mut hal, cfg).expect("boot");
        // Either init ran to its exit(5), or a call killed it with a signal
        // (e.g. SIGPIPE, a fatal fault after mprotect), or it blocked forever (deadlock).
        prop_assert!(st == 5 || st > 128, "status {st}");
        prop_assert!(!hal.log.iter().any(|l| l.contains("leak")), "{:?}", hal.log);
    }
}

#[test]
fn a_fatal_trap_in_init_ends_the_boot() {
    let p = Program { base: BASE, insns: vec![Rc::new(|_, _, _| Some(Trap::Lost { signal: Some(31) }))] };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 128 + 31);
}
