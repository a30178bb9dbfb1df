//! Whole-kernel tests on the mock HAL: scripted guest programs, real ELF
//! loading from a cpio initramfs, demand paging through MockSpace.

mod common;

use common::*;
use hal::CpuFaultKind;
use kernel_core::{boot, BootError, Errno};
use linux_raw_sys::general as g;

const B1: u64 = 0x40_0000;
const B2: u64 = 0x80_0000;

fn neg(e: Errno) -> i64 {
    -(e.code() as i64)
}

#[test]
fn hello_writes_to_stdout_and_exit_code_is_returned() {
    let p = Program { base: B1, insns: vec![] };
    let data = p.data();
    let p = Program {
        base: B1,
        insns: vec![
            sys(g::__NR_write, &[1, data, 6]),
            ret_is("write returns the count", 6),
            sys(g::__NR_write, &[2, data, 2]),
            sys(g::__NR_exit_group, &[42]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/bin/hello", &["hello"], &[("bin", DIR, vec![]), ("bin/hello", REG, elf(B1, b"hello\n"))]);
    let st = boot(&mut hal, cfg).expect("boot");
    assert_eq!(st, 42);
    assert_eq!(hal.console.stdout, b"hello\n");
    assert_eq!(hal.console.stderr, b"he");
    assert!(hal.log.is_empty(), "no unimplemented calls: {:?}", hal.log);
}

#[test]
fn fork_wait4_and_exit_statuses() {
    let base = B1;
    let scratch = base + SCRATCH_OFF;
    let p = Program {
        base,
        insns: vec![
            /* 0 */ sys(g::__NR_fork, &[]),
            /* 1 */ jump_if(base, 4, |c| c.regs.rax != 0),
            /* 2 */ check("child getppid", |_| true),
            /* 3 */ sys(g::__NR_exit_group, &[7]),
            /* 4 */ exec_op(|c| c.regs.r12 = c.regs.rax),
            /* 5 */ check("child pid is 2", |c| c.regs.r12 == 2),
            /* 6 */ sys_with(move |c| (g::__NR_wait4, [c.regs.r12, scratch, 0, 0, 0, 0])),
            /* 7 */ check("wait4 returns the child", |c| c.regs.rax == c.regs.r12),
            /* 8 */ check_mem("status = 7 << 8", move |_| scratch, 4, |_, m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == 7 << 8),
            /* 9 */ sys(g::__NR_wait4, &[u64::MAX, scratch, 0, 0]),
            /* 10 */ ret_is("no more children", neg(Errno::ECHILD)),
            /* 11 */ sys(g::__NR_wait4, &[u64::MAX, scratch, 0x1000_0000, 0]),
            /* 12 */ ret_is("bad options", neg(Errno::EINVAL)),
            /* 13 */ sys(g::__NR_getpid, &[]),
            /* 14 */ ret_is("init is pid 1", 1),
            /* 15 */ sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0);
    assert!(hal.log.is_empty(), "{:?}", hal.log);
    // All address spaces dropped: the frames are back (checked indirectly: no panic) and
    // two spaces were created (init + child).
    assert_eq!(hal.spaces_created, 2);
}

#[test]
fn child_killed_by_segv_and_sigkill_report_signals() {
    let base = B1;
    let scratch = base + SCRATCH_OFF;
    let p = Program {
        base,
        insns: vec![
            /* 0 */ sys(g::__NR_fork, &[]),
            /* 1 */ jump_if(base, 3, |c| c.regs.rax != 0),
            /* 2 */ load(0x10), // child: NULL-ish dereference -> SIGSEGV
            /* 3 */ sys(g::__NR_wait4, &[u64::MAX, scratch, 0, 0]),
            /* 4 */ check_mem("killed by SIGSEGV", move |_| scratch, 4, |_, m| m[0] == 11 && m[1] == 0),
            /* 5 */ sys(g::__NR_fork, &[]),
            /* 6 */ jump_if(base, 8, |c| c.regs.rax != 0),
            /* 7 */ fault(CpuFaultKind::IllegalInstruction),
            /* 8 */ sys(g::__NR_wait4, &[u64::MAX, scratch, 0, 0]),
            /* 9 */ check_mem("killed by SIGILL", move |_| scratch, 4, |_, m| m[0] == 4),
            // A child that sleeps; the parent kills it with SIGTERM.
            /* 10 */ sys(g::__NR_fork, &[]),
            /* 11 */ jump_if(base, 14, |c| c.regs.rax != 0),
            /* 12 */ sys(g::__NR_pause, &[]),
            /* 13 */ sys(g::__NR_wait4, &[u64::MAX, 0, 0, 0]), // child has no children: blocks? no: ECHILD
            /* 14 */ exec_op(|c| c.regs.r12 = c.regs.rax),
            /* 15 */ sys_with(|c| (g::__NR_kill, [c.regs.r12, 0, 0, 0, 0, 0])),
            /* 16 */ ret_is("kill 0 checks existence", 0),
            /* 17 */ sys_with(|c| (g::__NR_kill, [c.regs.r12, 65, 0, 0, 0, 0])),
            /* 18 */ ret_is("bad signal", neg(Errno::EINVAL)),
            /* 19 */ sys(g::__NR_kill, &[999, 9]),
            /* 20 */ ret_is("no such process", neg(Errno::ESRCH)),
            /* 21 */ sys_with(|c| (g::__NR_kill, [c.regs.r12, g::SIGTERM as u64, 0, 0, 0, 0])),
            /* 22 */ sys_with(move |c| (g::__NR_wait4, [c.regs.r12, scratch, 0, 0, 0, 0])),
            /* 23 */ check_mem("killed by SIGTERM", move |_| scratch, 4, |_, m| m[0] == 15),
            /* 24 */ sys(g::__NR_kill, &[1, g::SIGKILL as u64]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    // init kills itself with SIGKILL: 128 + 9.
    assert_eq!(boot(&mut hal, cfg).unwrap(), 137);
}

#[test]
fn execve_errors_then_success_with_argv() {
    let base = B1;
    let d = base + DATA_OFF;
    // data: "/bin/missing\0" at 0, "/bin/garbage\0" at 16, "/bin/noexec\0" at 32,
    //       "/bin/second\0" at 48, "arg0\0" at 64, "arg1\0" at 72
    let mut data = vec![0u8; 128];
    for (off, s) in [(0, "/bin/missing"), (16, "/bin/garbage"), (32, "/bin/noexec"), (48, "/bin/second"), (64, "arg0"), (72, "arg1")] {
        data[off..off + s.len()].copy_from_slice(s.as_bytes());
    }
    let argv = base + SCRATCH_OFF;
    let mut argv_bytes = Vec::new();
    for p in [d + 64, d + 72, 0] {
        argv_bytes.extend_from_slice(&p.to_le_bytes());
    }
    let first = Program {
        base,
        insns: vec![
            /* 0 */ store(move |_| argv, argv_bytes),
            /* 1 */ sys(g::__NR_execve, &[d, argv, 0]),
            /* 2 */ ret_is("missing -> ENOENT", neg(Errno::ENOENT)),
            /* 3 */ sys(g::__NR_execve, &[d + 16, argv, 0]),
            /* 4 */ ret_is("garbage -> ENOEXEC", neg(Errno::ENOEXEC)),
            /* 5 */ sys(g::__NR_execve, &[d + 32, argv, 0]),
            /* 6 */ ret_is("no x bit -> EACCES", neg(Errno::EACCES)),
            /* 7 */ sys(g::__NR_execve, &[d + 48, 0xdead_0000, 0]),
            /* 8 */ ret_is("bad argv -> EFAULT", neg(Errno::EFAULT)),
            /* 9 */ sys(g::__NR_execve, &[0xdead_0000, argv, 0]),
            /* 10 */ ret_is("bad path -> EFAULT", neg(Errno::EFAULT)),
            /* 11 */ sys(g::__NR_execve, &[d + 48, argv, 0]),
            /* 12 */ check("execve does not return", |_| false),
        ],
    };
    let second = Program {
        base: B2,
        insns: vec![
            check_mem("argc == 2", |c| c.regs.rsp, 8, |_, m| m[0] == 2),
            check("fresh registers", |c| c.regs.r12 == 0 && c.regs.rip == B2 + ENTRY_OFF + 4),
            sys(g::__NR_exit_group, &[3]),
        ],
    };
    let (mut hal, _) = machine(vec![first, second]);
    let cfg = config(
        "/bin/first",
        &["first"],
        &[
            ("bin", DIR, vec![]),
            ("bin/first", REG, elf(base, &data)),
            ("bin/second", REG, elf(B2, b"")),
            ("bin/garbage", REG, b"#!garbage, not an ELF at all".to_vec()),
            ("bin/noexec", REG_NOEXEC, elf(B2, b"")),
        ],
    );
    assert_eq!(boot(&mut hal, cfg).unwrap(), 3);
}

#[test]
fn bad_pointers_bad_fds_and_unknown_calls() {
    let base = B1;
    let s = base + SCRATCH_OFF;
    let p = Program {
        base,
        insns: vec![
            sys(g::__NR_write, &[1, 0xdead_0000, 10]),
            ret_is("write from a bad pointer", neg(Errno::EFAULT)),
            sys(g::__NR_write, &[99, s, 1]),
            ret_is("write to a bad fd", neg(Errno::EBADF)),
            sys(g::__NR_close, &[1234]),
            ret_is("close a bad fd", neg(Errno::EBADF)),
            sys(g::__NR_uname, &[0x10]),
            ret_is("uname to NULL page", neg(Errno::EFAULT)),
            sys(g::__NR_clock_gettime, &[9999, s]),
            ret_is("bad clock", neg(Errno::EINVAL)),
            sys(g::__NR_mmap, &[0, 0, 3, (g::MAP_PRIVATE | g::MAP_ANONYMOUS) as u64, u64::MAX, 0]),
            ret_is("mmap of length 0", neg(Errno::EINVAL)),
            sys(g::__NR_mmap, &[0, 1 << 62, 3, (g::MAP_PRIVATE | g::MAP_ANONYMOUS) as u64, u64::MAX, 0]),
            ret_is("absurd mmap", neg(Errno::ENOMEM)),
            sys(g::__NR_writev, &[1, s, 100_000]),
            ret_is("absurd iovcnt", neg(Errno::EINVAL)),
            sys(g::__NR_rt_sigaction, &[g::SIGKILL as u64, s, 0, 8]),
            ret_is("SIGKILL cannot be caught", neg(Errno::EINVAL)),
            sys(1000, &[]),
            ret_is("unknown call", neg(Errno::ENOSYS)),
            sys(1000, &[]),
            sys(g::__NR_io_uring_setup, &[]),
            ret_is("unimplemented call", neg(Errno::ENOSYS)),
            sys(g::__NR_uname, &[s]),
            ret_is("uname", 0),
            check_mem("uname fields", move |_| s, 65 * 3, |_, m| &m[0..6] == b"Linux\0" && &m[65..73] == b"rustuml\0" && &m[130..143] == b"6.1.0-rustuml"),
            sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0);
    assert_eq!(hal.log, vec!["unimplemented syscalls: io_uring_setup×1, syscall_1000×2".to_string()]);
}

#[test]
fn timer_preempts_busy_tasks() {
    let base = B1;
    let p = Program {
        base,
        insns: vec![
            /* 0 */ sys(g::__NR_fork, &[]),
            /* 1 */ exec_op(|c| {
                c.regs.r12 = c.regs.rax;
                c.regs.r13 = 30_000; // 30 ms of mock time each
            }),
            /* 2 */ spin(),
            /* 3 */ jump_if(base, 5, |c| c.regs.r12 != 0),
            /* 4 */ sys(g::__NR_exit_group, &[0]),
            /* 5 */ sys(g::__NR_wait4, &[u64::MAX, 0, 0, 0]),
            /* 6 */ sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, trace) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0);
    // Count switches between the two address spaces while both were spinning.
    let t = trace.borrow();
    let spin_rip = base + ENTRY_OFF + 4;
    let spins: Vec<u64> = t.iter().filter(|(_, rip)| *rip == spin_rip).map(|(id, _)| *id).collect();
    let switches = spins.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= 4, "expected round-robin preemption, saw {switches} switches");
    // Not after every step either: timeslices, not per-trap switching.
    assert!(switches < 20, "switching too often: {switches}");
}

#[test]
fn nanosleep_blocks_without_spinning() {
    let base = B1;
    let s = base + SCRATCH_OFF;
    let mut ts = Vec::new();
    ts.extend_from_slice(&2i64.to_le_bytes());
    ts.extend_from_slice(&500_000_000i64.to_le_bytes());
    let p = Program {
        base,
        insns: vec![
            store(move |_| s, ts),
            sys(g::__NR_nanosleep, &[s, 0]),
            ret_is("nanosleep", 0),
            sys(g::__NR_clock_gettime, &[g::CLOCK_MONOTONIC as u64, s + 16]),
            check_mem("2.5 s passed", move |_| s + 16, 16, |_, m| {
                let sec = i64::from_le_bytes(m[0..8].try_into().unwrap());
                let ns = i64::from_le_bytes(m[8..16].try_into().unwrap());
                sec * 1_000_000_000 + ns >= 2_500_000_000
            }),
            store(move |_| s, (-1i64).to_le_bytes().to_vec()),
            sys(g::__NR_nanosleep, &[s, 0]),
            ret_is("negative time", neg(Errno::EINVAL)),
            sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, trace) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0);
    assert!(hal.now_ns >= 2_500_000_000);
    // A handful of CPU steps, not millions of polling iterations.
    assert!(trace.borrow().len() < 50, "{} steps", trace.borrow().len());
    assert_eq!(hal.timer, None, "timer left armed after shutdown");
}

#[test]
fn deadlock_is_reported() {
    let base = B1;
    let s = base + SCRATCH_OFF;
    let p = Program {
        base,
        insns: vec![
            sys(g::__NR_fork, &[]),
            jump_if(base, 3, |c| c.regs.rax != 0),
            // child: futex wait forever on a word that holds 0
            sys(g::__NR_futex, &[s, g::FUTEX_WAIT as u64 | g::FUTEX_PRIVATE_FLAG as u64, 0, 0]),
            sys(g::__NR_wait4, &[u64::MAX, 0, 0, 0]),
            sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 137);
    assert!(hal.log.iter().any(|l| l.contains("deadlock")), "{:?}", hal.log);
}

#[test]
fn files_console_and_trace() {
    let base = B1;
    let d = base + DATA_OFF;
    let s = base + SCRATCH_OFF;
    let mut data = vec![0u8; 64];
    data[0..9].copy_from_slice(b"/etc/motd");
    data[16..25].copy_from_slice(b"/tmp/new\0");
    let p = Program {
        base,
        insns: vec![
            /* console read of scripted input */
            sys(g::__NR_read, &[0, s, 100]),
            ret_is("console read", 4),
            check_mem("console bytes", move |_| s, 4, |_, m| m == b"abc\n"),
            sys(g::__NR_open, &[d, g::O_RDONLY as u64, 0]),
            ret_is("open /etc/motd", 3),
            sys(g::__NR_read, &[3, s, 100]),
            ret_is("file read", 12),
            check_mem("file bytes", move |_| s, 12, |_, m| m == b"hello motd!\n"),
            sys(g::__NR_read, &[3, s, 100]),
            ret_is("EOF", 0),
            sys(g::__NR_lseek, &[3, 6, g::SEEK_SET as u64]),
            sys(g::__NR_read, &[3, s, 4]),
            check_mem("after lseek", move |_| s, 4, |_, m| m == b"motd"),
            sys(g::__NR_ioctl, &[3, 0x5401, s]),
            ret_is("TCGETS on a file", neg(Errno::ENOTTY)),
            sys(g::__NR_ioctl, &[1, 0x5401, s]),
            ret_is("TCGETS on the console", 0),
            sys(g::__NR_write, &[3, s, 1]),
            ret_is("write to O_RDONLY", neg(Errno::EBADF)),
            sys(g::__NR_open, &[d + 16, (g::O_CREAT | g::O_RDWR | g::O_CLOEXEC) as u64, 0o644]),
            ret_is("create", 4),
            sys(g::__NR_write, &[4, d, 4]),
            sys(g::__NR_fcntl, &[4, g::F_GETFD as u64]),
            ret_is("cloexec", 1),
            sys(g::__NR_dup2, &[4, 9]),
            ret_is("dup2", 9),
            sys(g::__NR_lseek, &[9, 0, g::SEEK_CUR as u64]),
            ret_is("shared offset", 4),
            sys(g::__NR_fstat, &[9, s]),
            check_mem("st_size 4, regular", move |_| s, 56, |_, m| m[48] == 4 && u32::from_le_bytes(m[24..28].try_into().unwrap()) == 0o100644),
            sys(g::__NR_open, &[d + 16, (g::O_CREAT | g::O_EXCL | g::O_RDWR) as u64, 0o644]),
            ret_is("O_EXCL", neg(Errno::EEXIST)),
            sys(g::__NR_getcwd, &[s, 100]),
            ret_is("getcwd", 2),
            sys(g::__NR_exit_group, &[0]),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    // A host terminal: with a pipe on the host side the console is no tty.
    hal.console.terminal = true;
    hal.console.input.extend(b"abc\n");
    let mut cfg = config(
        "/init",
        &["init"],
        &[("init", REG, elf(base, &data)), ("etc", DIR, vec![]), ("etc/motd", 0o100644, b"hello motd!\n".to_vec()), ("tmp", DIR, vec![])],
    );
    cfg.trace_syscalls = true;
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0);
    assert!(hal.log.iter().any(|l| l == "[1] read(0, 0x401800, 100) = 4"), "{:#?}", hal.log);
    assert!(hal.log.iter().any(|l| l == "[1] ioctl(3, 21505, 0x401800) = -ENOTTY"), "{:#?}", hal.log);
    assert!(hal.log.iter().any(|l| l == "[1] exit_group(0) = ?"), "{:#?}", hal.log);
}

#[test]
fn console_read_blocks_until_input_and_deadlocks_without() {
    let base = B1;
    let s = base + SCRATCH_OFF;
    let p = Program { base, insns: vec![sys(g::__NR_read, &[0, s, 10]), exec_op(|c| c.regs.rdi = c.regs.rax), sys_with(|c| (g::__NR_exit_group, [c.regs.rdi, 0, 0, 0, 0, 0]))] };
    let (mut hal, _) = machine(vec![p]);
    hal.console.input_closed = true;
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 0, "EOF reads 0");

    let p = Program { base, insns: vec![sys(g::__NR_read, &[0, s, 10]), sys(g::__NR_exit_group, &[0])] };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b""))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 137, "no input can ever come");
}

#[test]
fn boot_errors() {
    let (mut hal, _) = machine(vec![]);
    let mut cfg = config("/init", &["init"], &[]);
    cfg.initramfs = b"not a cpio archive".to_vec();
    assert!(matches!(boot(&mut hal, cfg), Err(BootError::BadInitramfs(_))));

    let cfg = config("/nope", &["nope"], &[("init", REG, elf(B1, b""))]);
    let e = boot(&mut hal, cfg).unwrap_err();
    assert_eq!(e, BootError::InitNotFound("/nope".into()));
    assert!(e.to_string().contains("/nope"));

    let cfg = config("/init", &["init"], &[("init", REG, b"\x7fELF garbage".to_vec())]);
    assert_eq!(boot(&mut hal, cfg).unwrap_err(), BootError::InitNotExecutable("/init".into(), Errno::ENOEXEC));

    let mut truncated = elf(B1, b"");
    truncated.truncate(100);
    let cfg = config("/init", &["init"], &[("init", REG, truncated)]);
    assert_eq!(boot(&mut hal, cfg).unwrap_err(), BootError::InitNotExecutable("/init".into(), Errno::ENOEXEC));

    let cfg = config("/", &["init"], &[("init", REG, elf(B1, b""))]);
    assert!(matches!(boot(&mut hal, cfg), Err(BootError::InitNotExecutable(_, Errno::EACCES))));
}

#[test]
fn pipes_between_processes_block_and_signal() {
    let base = B1;
    let s = base + SCRATCH_OFF;
    let d = base + DATA_OFF;
    let fd = |m: &[u8], i: usize| i32::from_le_bytes(m[i * 4..i * 4 + 4].try_into().unwrap()) as u64;
    let p = Program {
        base,
        insns: vec![
            /* 0 */ sys(g::__NR_pipe2, &[s, g::O_CLOEXEC as u64]),
            /* 1 */ ret_is("pipe2", 0),
            /* 2 */ check_mem("fds 3 and 4", move |_| s, 8, move |_, m| fd(m, 0) == 3 && fd(m, 1) == 4),
            /* 3 */ sys(g::__NR_fork, &[]),
            /* 4 */ jump_if(base, 9, |c| c.regs.rax != 0),
            // child: write "ping" and exit
            /* 5 */ sys(g::__NR_close, &[3]),
            /* 6 */ sys(g::__NR_write, &[4, d, 4]),
            /* 7 */ ret_is("pipe write", 4),
            /* 8 */ sys(g::__NR_exit_group, &[0]),
            // parent: the read blocks until the child has written
            /* 9 */ sys(g::__NR_close, &[4]),
            /* 10 */ sys(g::__NR_read, &[3, s + 64, 100]),
            /* 11 */ ret_is("pipe read", 4),
            /* 12 */ check_mem("ping", move |_| s + 64, 4, |_, m| m == b"ping"),
            /* 13 */ sys(g::__NR_read, &[3, s + 64, 100]),
            /* 14 */ ret_is("EOF once the writer is gone", 0),
            /* 15 */ sys(g::__NR_wait4, &[u64::MAX, 0, 0, 0]),
            // writing to a pipe without readers: EPIPE and SIGPIPE kills
            /* 16 */ sys(g::__NR_close, &[3]),
            /* 16 */ sys(g::__NR_pipe, &[s]),
            /* 17 */ sys(g::__NR_close, &[3]),
            /* 18 */ sys(g::__NR_write, &[4, d, 4]),
            /* 19 */ check("not reached: SIGPIPE kills", |_| false),
        ],
    };
    let (mut hal, _) = machine(vec![p]);
    let cfg = config("/init", &["init"], &[("init", REG, elf(base, b"ping"))]);
    assert_eq!(boot(&mut hal, cfg).unwrap(), 128 + 13);
    assert!(!hal.log.iter().any(|l| l.contains("leak")), "{:?}", hal.log);
}

#[test]
fn shebang_scripts_run_their_interpreter() {
    let base = B1;
    let d = base + DATA_OFF;
    let argv = base + SCRATCH_OFF;
    let mut data = vec![0u8; 64];
    data[0..11].copy_from_slice(b"/bin/script");
    data[16..20].copy_from_slice(b"arg0");
    data[24..28].copy_from_slice(b"arg1");
    let mut argv_bytes = Vec::new();
    for p in [d + 16, d + 24, 0] {
        argv_bytes.extend_from_slice(&p.to_le_bytes());
    }
    let first = Program {
        base,
        insns: vec![store(move |_| argv, argv_bytes), sys(g::__NR_execve, &[d, argv, 0]), check("execve does not return", |_| false)],
    };
    let second = Program {
        base: B2,
        insns: vec![
            // argv = [/bin/second, -x, /bin/script, arg1]
            check_mem("argc == 4", |c| c.regs.rsp, 8, |_, m| m[0] == 4),
            check_mem("argv[1] == -x", |c| c.regs.rsp + 16, 8, |_, _| true),
            sys(g::__NR_exit_group, &[9]),
        ],
    };
    let (mut hal, _) = machine(vec![first, second]);
    let cfg = config(
        "/bin/first",
        &["first"],
        &[
            ("bin", DIR, vec![]),
            ("bin/first", REG, elf(base, &data)),
            ("bin/second", REG, elf(B2, b"")),
            ("bin/script", REG, b"#! /bin/second   -x  \necho hi\n".to_vec()),
        ],
    );
    assert_eq!(boot(&mut hal, cfg).unwrap(), 9);
}
