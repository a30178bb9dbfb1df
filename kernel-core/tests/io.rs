//! Terminals, pipes and readiness on the mock HAL: console line editing and
//! echo, ^C to the foreground group, raw mode VMIN, poll/epoll readiness,
//! eventfd and timerfd against the mock clock.

mod common;

use common::*;
use kernel_core::{boot, Errno};
use linux_raw_sys::general as g;

const B1: u64 = 0x40_0000;

fn neg(e: Errno) -> i64 {
    -(e.code() as i64)
}

fn run(insns: Vec<Insn>, data: &[u8], input: &[u8], terminal: bool) -> (i32, hal::mock::MockHal) {
    let p = Program { base: B1, insns };
    let (mut hal, _) = machine(vec![p]);
    hal.console.input.extend(input.iter().copied());
    hal.console.terminal = terminal;
    let cfg = config("/bin/t", &["t"], &[("bin", DIR, vec![]), ("bin/t", REG, elf(B1, data))]);
    let st = boot(&mut hal, cfg).expect("boot");
    (st, hal)
}

#[test]
fn console_canonical_line_editing_and_echo() {
    let s = B1 + SCRATCH_OFF;
    let insns = vec![
        sys(g::__NR_read, &[0, s, 100]),
        ret_is("one edited line", 3),
        check_mem("line", move |_| s, 3, |_, m| m == b"ac\n"),
        sys(g::__NR_read, &[0, s, 100]),
        ret_is("second line", 3),
        check_mem("line 2", move |_| s, 3, |_, m| m == b"xy\n"),
        sys(g::__NR_exit_group, &[0]),
    ];
    let (st, hal) = run(insns, b"", b"ab\x7fc\rxy\x15xy\n", true);
    assert_eq!(st, 0);
    assert_eq!(hal.console.stdout, b"ab\x08 \x08c\r\nxy\x08 \x08\x08 \x08xy\r\n");
}

#[test]
fn console_on_a_pipe_does_not_echo_or_translate() {
    let s = B1 + SCRATCH_OFF;
    let d = B1 + DATA_OFF;
    let insns = vec![
        sys(g::__NR_read, &[0, s, 100]),
        ret_is("line", 4),
        sys(g::__NR_write, &[1, d, 3]),
        sys(g::__NR_exit_group, &[0]),
    ];
    let (st, hal) = run(insns, b"a\nb", b"abc\n", false);
    assert_eq!(st, 0);
    assert_eq!(hal.console.stdout, b"a\nb");
}

#[test]
fn ctrl_c_sends_sigint_to_the_foreground_group() {
    let s = B1 + SCRATCH_OFF;
    let insns = vec![
        /* 0 */ sys(g::__NR_fork, &[]),
        /* 1 */ jump_if(B1, 4, |c| c.regs.rax != 0),
        /* 2 */ sys(g::__NR_read, &[0, s, 100]),
        /* 3 */ sys(g::__NR_exit_group, &[9]),
        /* 4 */ exec_op(|c| c.regs.r12 = c.regs.rax),
        /* 5 */ sys_with(move |c| (g::__NR_wait4, [c.regs.r12, s, 0, 0, 0, 0])),
        /* 6 */ check("wait4 returns the child", |c| c.regs.rax == c.regs.r12),
        /* 7 */ check_mem("the child died of SIGINT", move |_| s, 4, |_, m| m[0] & 0x7f == 2),
        /* 8 */ sys(g::__NR_exit_group, &[0]),
    ];
    // Init (pid 1) ignores SIGINT as Linux's init does; its child in the
    // foreground group dies of it.
    let (st, hal) = run(insns, b"", b"partial\x03", true);
    assert_eq!(st, 0);
    assert!(hal.console.stdout.ends_with(b"partial^C"), "{:?}", hal.console.stdout);
}

#[test]
fn raw_mode_vmin_waits_for_enough_bytes() {
    let s = B1 + SCRATCH_OFF;
    let t = s + 0x100;
    let insns = vec![
        sys(g::__NR_ioctl, &[0, linux_raw_sys::ioctl::TCGETS as u64, t]),
        ret_is("TCGETS", 0),
        // Clear ICANON|ECHO|ISIG, VMIN = 4.
        exec_op(|_| {}),
        store(move |_| t + 12, (0u32).to_le_bytes().to_vec()),
        store(move |_| t + 17 + 6, vec![4]),
        sys(g::__NR_ioctl, &[0, linux_raw_sys::ioctl::TCSETS as u64, t]),
        ret_is("TCSETS", 0),
        sys(g::__NR_read, &[0, s, 100]),
        ret_is("raw read returns once VMIN bytes are there", 5),
        check_mem("raw bytes: ^C and ^? are data, ICRNL still applies", move |_| s, 5, |_, m| m == b"a\x03\n\x7fz"),
        sys(g::__NR_exit_group, &[0]),
    ];
    let (st, hal) = run(insns, b"", b"a\x03\r\x7fz", true);
    assert_eq!(st, 0);
    assert!(hal.console.stdout.is_empty(), "no echo: {:?}", hal.console.stdout);
}

#[test]
fn poll_and_epoll_readiness_on_a_pipe() {
    let s = B1 + SCRATCH_OFF;
    let fds = s;
    let pfd = s + 0x20;
    let ev = s + 0x40;
    let out = s + 0x80;
    let d = B1 + DATA_OFF;
    let insns = vec![
        /* 0 */ sys(g::__NR_pipe2, &[fds, g::O_NONBLOCK as u64]),
        /* 1 */ ret_is("pipe2", 0),
        // fds = [3, 4]: pollfd {3, POLLIN}
        /* 2 */ store(move |_| pfd, [3i32.to_le_bytes(), [1, 0, 0, 0]].concat()),
        /* 3 */ sys(g::__NR_poll, &[pfd, 1, 0]),
        /* 4 */ ret_is("empty pipe: not readable", 0),
        /* 5 */ sys(g::__NR_epoll_create1, &[0]),
        /* 6 */ ret_is("epoll fd", 5),
        /* 7 */ store(move |_| ev, [1u32.to_le_bytes().to_vec(), 77u64.to_le_bytes().to_vec()].concat()),
        /* 8 */ sys(g::__NR_epoll_ctl, &[5, 1, 3, ev]),
        /* 9 */ ret_is("EPOLL_CTL_ADD", 0),
        /* 10 */ sys(g::__NR_epoll_wait, &[5, out, 4, 0]),
        /* 11 */ ret_is("nothing ready", 0),
        /* 12 */ sys(g::__NR_write, &[4, d, 2]),
        /* 13 */ sys(g::__NR_poll, &[pfd, 1, 0]),
        /* 14 */ ret_is("readable now", 1),
        /* 15 */ check_mem("revents POLLIN", move |_| pfd + 6, 2, |_, m| m == [1, 0]),
        /* 16 */ sys(g::__NR_epoll_wait, &[5, out, 4, 1000]),
        /* 17 */ ret_is("one event", 1),
        /* 18 */ check_mem("EPOLLIN, data 77", move |_| out, 12, |_, m| m[..4] == 1u32.to_le_bytes() && m[4..] == 77u64.to_le_bytes()),
        /* 19 */ sys(g::__NR_read, &[3, s + 0x100, 100]),
        /* 20 */ ret_is("read", 2),
        /* 21 */ sys(g::__NR_read, &[3, s + 0x100, 100]),
        /* 22 */ ret_is("nonblocking empty read", neg(Errno::EAGAIN)),
        /* 23 */ sys(g::__NR_fcntl, &[3, 1032, 0]),
        /* 24 */ ret_is("F_GETPIPE_SZ", 65536),
        /* 25 */ sys(g::__NR_close, &[3]),
        /* 26 */ sys(g::__NR_epoll_wait, &[5, out, 4, 0]),
        /* 27 */ ret_is("closing the fd removed it", 0),
        /* 28 */ sys(g::__NR_exit_group, &[0]),
    ];
    let (st, _) = run(insns, b"hi", b"", false);
    assert_eq!(st, 0);
}

#[test]
fn eventfd_and_timerfd_with_the_mock_clock() {
    let s = B1 + SCRATCH_OFF;
    let d = B1 + DATA_OFF;
    let spec = s + 0x40;
    let insns = vec![
        sys(g::__NR_eventfd2, &[2, (1 | g::O_NONBLOCK) as u64]),
        ret_is("eventfd", 3),
        sys(g::__NR_read, &[3, s, 8]),
        ret_is("semaphore read", 8),
        check_mem("1", move |_| s, 8, |_, m| m == 1u64.to_le_bytes()),
        sys(g::__NR_read, &[3, s, 8]),
        sys(g::__NR_read, &[3, s, 8]),
        ret_is("third read: EAGAIN", neg(Errno::EAGAIN)),
        sys(g::__NR_write, &[3, d, 8]),
        ret_is("write 5", 8),
        sys(g::__NR_timerfd_create, &[g::CLOCK_MONOTONIC as u64, 0]),
        ret_is("timerfd", 4),
        // it_interval = 0, it_value = 5 ms.
        store(move |_| spec, [0u64, 0, 0, 5_000_000].iter().flat_map(|v| v.to_le_bytes()).collect()),
        sys(g::__NR_timerfd_settime, &[4, 0, spec, 0]),
        ret_is("settime", 0),
        sys(g::__NR_read, &[4, s, 8]),
        ret_is("blocking read returns at expiry", 8),
        check_mem("one expiration", move |_| s, 8, |_, m| m == 1u64.to_le_bytes()),
        sys(g::__NR_clock_gettime, &[g::CLOCK_MONOTONIC as u64, s]),
        check_mem("5 ms have passed", move |_| s, 16, |_, m| {
            let sec = u64::from_le_bytes(m[..8].try_into().unwrap_or_default());
            let ns = u64::from_le_bytes(m[8..].try_into().unwrap_or_default());
            sec * 1_000_000_000 + ns >= 5_000_000
        }),
        sys(g::__NR_exit_group, &[0]),
    ];
    let (st, _) = run(insns, &5u64.to_le_bytes(), b"", false);
    assert_eq!(st, 0);
}
