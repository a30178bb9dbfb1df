//! Random system calls with random (and half-plausible) arguments must never
//! panic the kernel: every call returns, the guest keeps running, and the
//! kernel shuts down cleanly when init exits. The kernel runs with its own
//! invariant checker on ([`kernel_core::kernel::boot_checked`]: frame
//! reference counts match the mappings, maps and fd tables have one holder,
//! pipes count their ends, the run queue matches the task states, parents
//! exist) before every step, and no frame may be left allocated at shutdown.
//!
//! `many_tasks_keep_the_invariants` runs the same random script in every
//! task: init forks (children continue the script), calls arbitrary system
//! calls with wild arguments, touches memory (page faults) and takes timer
//! interrupts, while a long simulated run cost makes timeslices expire so the
//! tasks interleave. Left out of the random numbers, and why: `execve` and
//! `execveat` (re-executing `/init` restarts the script: unbounded) and
//! `rt_sigreturn` (a guessed frame can jump back into the script: unbounded).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::model::cases;
use common::*;
use hal::{Interrupts, Trap};
use kernel_core::boot;
use kernel_core::kernel::boot_checked;
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
        // Timers: POSIX, interval, timerfd (issue 23).
        Just(g::__NR_timer_create),
        Just(g::__NR_timer_settime),
        Just(g::__NR_timer_gettime),
        Just(g::__NR_timer_getoverrun),
        Just(g::__NR_timer_delete),
        Just(g::__NR_setitimer),
        Just(g::__NR_getitimer),
        Just(g::__NR_timerfd_create),
        Just(g::__NR_timerfd_settime),
        Just(g::__NR_timerfd_gettime),
        Just(g::__NR_clock_getres),
        Just(g::__NR_mremap),
        Just(g::__NR_msync),
        Just(g::__NR_mincore),
        Just(g::__NR_memfd_create),
        Just(g::__NR_ftruncate),
        Just(g::__NR_fallocate),
        Just(g::__NR_copy_file_range),
        Just(g::__NR_renameat2),
        Just(g::__NR_linkat),
        Just(g::__NR_symlinkat),
        Just(g::__NR_fchmodat),
        Just(g::__NR_fchownat),
        Just(g::__NR_utimensat),
        Just(g::__NR_fdatasync),
        400u32..600,
    ];
    (nrs, prop::array::uniform6(arg()))
}

/// A watchdog around the mock CPU: a guest that loops (say, rt_sigreturn or
/// a handler address back into its own script) is killed after 50 000 steps
/// (the properties are about the kernel, which must still end). Also
/// returns the step count.
fn watchdog(mut inner: hal::mock::MockCpu) -> (hal::mock::MockCpu, Rc<Cell<u64>>) {
    let steps = Rc::new(Cell::new(0u64));
    let st2 = steps.clone();
    let cpu: hal::mock::MockCpu = Box::new(move |ctx, space, phys| {
        st2.set(st2.get() + 1);
        if st2.get() > 50_000 {
            return Trap::Lost { signal: Some(g::SIGKILL) };
        }
        inner(ctx, space, phys)
    });
    (cpu, steps)
}

/// Kernel log lines that mean a property failed.
fn bad_log(log: &[String]) -> Option<&String> {
    log.iter().find(|l| l.contains("leak") || l.contains("invariant violated"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn random_syscalls_never_panic(calls in prop::collection::vec(call(), 1..40)) {
        if std::env::var("FUZZ_DEBUG").is_ok() {
            eprintln!("case {calls:?}");
        }
        let mut insns: Vec<Insn> = Vec::new();
        for (nr, a) in calls {
            // A call that blocks forever (console read, pause) ends in the
            // deadlock report: that is an outcome too.
            insns.push(sys(nr, &a));
        }
        insns.push(sys(g::__NR_exit_group, &[5]));
        let p = Program { base: BASE, insns };
        let trace = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut hal = hal::mock::MockHal::new(16 << 20, watchdog(cpu(vec![p], trace)).0);
        hal.space_limit = Some(12);
        hal.console.input.extend(b"some input\n");
        let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0")), ("etc", DIR, vec![]), ("etc/f", 0o100644, b"x".to_vec())]);
        let st = boot_checked(&mut hal, cfg).expect("boot");
        // Either init ran to its exit(5), or a call killed it with a signal
        // (e.g. SIGPIPE, a fatal fault after mprotect), or it blocked forever (deadlock).
        prop_assert!(st == 5 || st > 128, "status {st}");
        prop_assert!(bad_log(&hal.log).is_none(), "{:?}", hal.log);
    }
}

/// The mmap window the multi-task script maps at its start.
const WIN: u64 = 0x1000_0000;

/// One step of the multi-task script.
#[derive(Debug, Clone)]
enum Act {
    /// A system call (never execve, execveat, rt_sigreturn).
    Call(u32, [u64; 6]),
    /// `fork()`: the child runs the rest of the script too.
    Fork,
    /// A load or store at an address (a page fault where not present).
    Touch(u64, bool),
    /// A timer interrupt arriving while user code runs.
    Tick,
}

fn task_arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..10,
        1 => Just(u64::MAX),
        2 => (0u64..8 * 4096).prop_map(|x| WIN + x),
        1 => (0u64..0x4000).prop_map(|x| BASE + x),
        1 => Just(BASE + SCRATCH_OFF),
        1 => any::<u64>(),
        1 => Just(1u64 << 62),
        1 => prop_oneof![Just(4096u64), Just(8192), Just(1 << 20), Just(1 << 40)],
        1 => 1u64..70,
        1 => Just(g::AT_FDCWD as i64 as u64),
    ]
}

/// Whether a random number must be left out (see the file's comment).
fn excluded(nr: u32) -> bool {
    nr == g::__NR_execve || nr == g::__NR_execveat || nr == g::__NR_rt_sigreturn
}

fn task_nr() -> impl Strategy<Value = u32> {
    prop_oneof![
        // Calls that create, share and tear down state between tasks.
        6 => prop::sample::select(vec![
            g::__NR_mmap, g::__NR_munmap, g::__NR_mprotect, g::__NR_brk, g::__NR_mremap, g::__NR_madvise,
            g::__NR_pipe2, g::__NR_dup, g::__NR_dup2, g::__NR_close, g::__NR_read, g::__NR_write, g::__NR_poll,
            g::__NR_kill, g::__NR_wait4, g::__NR_waitid, g::__NR_exit, g::__NR_exit_group, g::__NR_clone,
            g::__NR_vfork, g::__NR_setpgid, g::__NR_setsid, g::__NR_rt_sigaction, g::__NR_rt_sigprocmask,
            g::__NR_rt_sigpending, g::__NR_rt_sigsuspend, g::__NR_pause, g::__NR_alarm, g::__NR_setitimer,
            g::__NR_nanosleep, g::__NR_sched_yield, g::__NR_futex, g::__NR_tgkill, g::__NR_tkill,
            g::__NR_eventfd2, g::__NR_epoll_create1, g::__NR_epoll_ctl, g::__NR_epoll_wait, g::__NR_timerfd_create,
            g::__NR_timerfd_settime, g::__NR_fcntl, g::__NR_openat, g::__NR_ppoll, g::__NR_select,
            g::__NR_set_tid_address, g::__NR_prlimit64, g::__NR_getpid, g::__NR_getppid,
        ]),
        // IPC, locks, inotify and process handles, shared between the tasks.
        3 => prop::sample::select(vec![
            g::__NR_shmget, g::__NR_shmat, g::__NR_shmdt, g::__NR_shmctl, g::__NR_semget, g::__NR_semop,
            g::__NR_semtimedop, g::__NR_semctl, g::__NR_msgget, g::__NR_msgsnd, g::__NR_msgrcv, g::__NR_msgctl,
            g::__NR_mq_open, g::__NR_mq_timedsend, g::__NR_mq_timedreceive, g::__NR_mq_notify, g::__NR_mq_unlink,
            g::__NR_flock, g::__NR_inotify_init1, g::__NR_inotify_add_watch, g::__NR_inotify_rm_watch,
            g::__NR_pidfd_open, g::__NR_pidfd_getfd, g::__NR_close_range, g::__NR_unshare, g::__NR_splice,
            g::__NR_sendfile, g::__NR_vmsplice, g::__NR_prctl, g::__NR_capget,
        ]),
        // Anything at all.
        3 => (0u32..460).prop_filter("excluded", |n| !excluded(*n)),
        1 => prop_oneof![Just(u32::MAX), Just(1000u32), 512u32..548],
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        8 => (task_nr(), prop::array::uniform6(task_arg())).prop_map(|(n, a)| Act::Call(n, a)),
        2 => Just(Act::Fork),
        3 => (prop_oneof![8 => (0u64..8 * 4096).prop_map(|x| WIN + x), 2 => (0u64..0x3000).prop_map(|x| BASE + x), 1 => any::<u64>()], any::<bool>())
            .prop_map(|(a, w)| Act::Touch(a, w)),
        1 => Just(Act::Tick),
    ]
}

/// Run `acts` in every task; the kernel's invariants hold throughout and at shutdown.
fn run_tasks(acts: &[Act]) -> Result<(), String> {
    if std::env::var("FUZZ_DEBUG").is_ok() {
        eprintln!("case {acts:?}");
    }
    let rw = (g::PROT_READ | g::PROT_WRITE) as u64;
    let anon = (g::MAP_PRIVATE | g::MAP_ANONYMOUS | g::MAP_FIXED) as u64;
    // Init forks the worker that runs the script, then reaps children
    // (its own and the orphans it inherits) until there are none: a script
    // that kills itself early does not end the run.
    const START: usize = 5;
    let enochild = -(linux_raw_sys::errno::ECHILD as i64) as u64;
    let mut insns: Vec<Insn> = vec![
        sys(g::__NR_fork, &[]),
        jump_if(BASE, START, |c| c.regs.rax == 0),
        sys(g::__NR_wait4, &[u64::MAX, 0, 0, 0]),
        jump_if(BASE, 2, move |c| c.regs.rax != enochild),
        sys(g::__NR_exit_group, &[5]),
        sys(g::__NR_mmap, &[WIN, 4 * 4096, rw, anon, u64::MAX, 0]),
        sys(g::__NR_mmap, &[WIN + 4 * 4096, 4 * 4096, rw, (g::MAP_SHARED | g::MAP_ANONYMOUS | g::MAP_FIXED) as u64, u64::MAX, 0]),
        sys(g::__NR_pipe2, &[BASE + SCRATCH_OFF, 0]),
    ];
    for a in acts {
        insns.push(match a {
            Act::Call(nr, args) => sys(*nr, args),
            Act::Fork => sys(g::__NR_fork, &[]),
            Act::Touch(addr, write) => {
                let (addr, write) = (*addr, *write);
                Rc::new(move |_, space, phys| {
                    if write {
                        space.user_write(phys, addr, &[0x5a]).err()
                    } else {
                        let mut b = [0u8];
                        space.user_read(phys, addr, &mut b).err()
                    }
                })
            }
            Act::Tick => Rc::new(|_, _, _| Some(Trap::Interrupt(Interrupts::TIMER))),
        });
    }
    insns.push(sys(g::__NR_exit_group, &[7]));
    let p = Program { base: BASE, insns };
    let trace = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (watched, steps) = watchdog(cpu(vec![p], trace));
    let mut hal = hal::mock::MockHal::new(16 << 20, watched);
    hal.space_limit = Some(10);
    // Slices (10 ms) end every ~30 steps: tasks are preempted mid-script.
    hal.run_cost_ns = 300_000;
    hal.console.input.extend(b"some input\n");
    hal.console.input_closed = true;
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0")), ("etc", DIR, vec![]), ("etc/f", 0o100644, b"x".to_vec())]);
    let st = boot_checked(&mut hal, cfg).map_err(|e| format!("boot: {e}"))?;
    if std::env::var("FUZZ_DEBUG").is_ok() {
        eprintln!("status {st} steps {} spaces {} log {:?}", steps.get(), hal.spaces_created, hal.log);
    }
    if let Some(l) = bad_log(&hal.log) {
        return Err(format!("{l} (after {} steps)", steps.get()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn many_tasks_keep_the_invariants(acts in prop::collection::vec(act(), 1..64)) {
        run_tasks(&acts).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_fatal_trap_in_init_ends_the_boot() {
    let p = Program { base: BASE, insns: vec![Rc::new(|_, _, _| Some(Trap::Lost { signal: Some(31) }))] };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 128 + 31);
}

/// The invariant checker catches a planted kernel bug (feature
/// `planted-leak`: munmap leaks a frame reference), in the middle of a run
/// (the reference counts no longer match the mappings) and at shutdown.
#[cfg(feature = "planted-leak")]
#[test]
fn planted_leak_is_caught() {
    // Random scripts that start by touching and unmapping a page of the window.
    let strat = prop::collection::vec(act(), 0..16).prop_map(|mut v| {
        v.insert(0, Act::Touch(WIN, true));
        v.insert(1, Act::Call(g::__NR_munmap, [WIN, 4096, 0, 0, 0, 0]));
        v
    });
    let mut runner = common::model::planted_runner(32);
    let r = runner.run(&strat, |acts| run_tasks(&acts).map_err(TestCaseError::fail));
    let err = format!("{:?}", r.expect_err("the invariant checker did not notice a leaked frame reference"));
    // Caught by the check between two steps, before the shutdown's leak check.
    assert!(err.contains("invariant violated: frames: frame"), "{err}");
}

/// select() with a timeout read from garbage (a huge timeval) armed a wait
/// deadline near u64::MAX: the clock overflowed once it got there. Found by
/// `random_syscalls_never_panic` (seed in fuzz_syscalls.proptest-regressions);
/// fixed by clamping wait-set deadlines like blocked calls' ones.
#[test]
fn bug_select_with_a_huge_timeout() {
    let p = Program {
        base: BASE,
        insns: vec![sys(g::__NR_select, &[0, 0, BASE + SCRATCH_OFF, 0, BASE + DATA_OFF, 0]), sys(g::__NR_exit_group, &[5])],
    };
    let (mut hal, _) = machine(vec![p]);
    // The "timeval" at the data area: "/init\0" read as seconds (~500 billion).
    let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0"))]);
    let st = boot_checked(&mut hal, cfg).expect("boot");
    assert!(st == 5 || st > 128, "status {st} log {:?}", hal.log);
    assert!(bad_log(&hal.log).is_none(), "{:?}", hal.log);
}

/// Replays a `random_syscalls_never_panic` case printed with FUZZ_DEBUG=1
/// (the `case [...]` line in the file named by FUZZ_CASE_FILE).
#[test]
#[ignore = "a debugging aid: needs FUZZ_CASE_FILE"]
fn replay_case_file() {
    let text = std::fs::read_to_string(std::env::var("FUZZ_CASE_FILE").expect("FUZZ_CASE_FILE")).expect("read");
    replay(&text);
}

/// The case that ran forever: a poll on the console with a 70-minute
/// timeout restarted its timeout at every interrupt (console waiters were
/// re-run without their deadline), so it never ended. It must now finish
/// (status 5, its final exit_group) well within a minute.
#[test]
fn bug_console_poll_timeout_survives_interrupts() {
    let text = include_str!("fuzz_syscalls.console-poll-case.txt");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(replay(text)).ok());
    let st = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the case still runs forever");
    assert_eq!(st, 5);
}

/// Boot a saved case (the numbers of proptest's `Case [...]` text) with the
/// invariant checker on; its status.
fn replay(text: &str) -> i32 {
    let nums: Vec<u64> = text.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let mut insns: Vec<Insn> = nums.chunks_exact(7).map(|c| sys(c[0] as u32, &c[1..7])).collect();
    insns.push(sys(g::__NR_exit_group, &[5]));
    let p = Program { base: BASE, insns };
    let trace = Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut hal = hal::mock::MockHal::new(16 << 20, watchdog(cpu(vec![p], trace)).0);
    hal.space_limit = Some(12);
    hal.console.input.extend(b"some input\n");
    let mut cfg = config("/init", &["init"], &[("init", REG, elf(BASE, b"/init\0")), ("etc", DIR, vec![]), ("etc/f", 0o100644, b"x".to_vec())]);
    cfg.trace_syscalls = true;
    let st = boot_checked(&mut hal, cfg).expect("boot");
    eprintln!("status {st} log {:?}", hal.log);
    st
}
