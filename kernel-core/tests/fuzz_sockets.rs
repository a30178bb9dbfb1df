//! Random socket system calls with half-plausible arguments (sockaddrs,
//! msghdrs with iovecs and SCM_RIGHTS, option lengths, flags) on a few
//! AF_UNIX sockets, with forks: the kernel never panics, init's run ends
//! (exit, signal or deadlock report), and nothing leaks at shutdown.

mod common;

use common::model::cases;
use common::*;
use kernel_core::kernel::boot_checked;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const BASE: u64 = 0x40_0000;
const DATA: u64 = BASE + DATA_OFF;
const SCRATCH: u64 = BASE + SCRATCH_OFF;

/// The data area: sockaddrs, iovecs, a control message and msghdrs.
fn data() -> Vec<u8> {
    let mut d = vec![0u8; 0x100];
    let put = |d: &mut Vec<u8>, off: usize, b: &[u8]| d[off..off + b.len()].copy_from_slice(b);
    put(&mut d, 0x00, b"\x01\x00\x00fz"); // abstract "\0fz", length 5
    put(&mut d, 0x10, b"\x01\x00/s\x00"); // path "/s", length 5
    put(&mut d, 0x20, &SCRATCH.to_le_bytes());
    put(&mut d, 0x28, &64u64.to_le_bytes());
    put(&mut d, 0x30, &(SCRATCH + 64).to_le_bytes());
    put(&mut d, 0x38, &64u64.to_le_bytes());
    put(&mut d, 0x40, &24u64.to_le_bytes()); // cmsg_len: two fds
    put(&mut d, 0x48, &1u32.to_le_bytes()); // SOL_SOCKET
    put(&mut d, 0x4c, &1u32.to_le_bytes()); // SCM_RIGHTS
    put(&mut d, 0x50, &3i32.to_le_bytes());
    put(&mut d, 0x54, &7i32.to_le_bytes());
    for (at, name) in [(0x60usize, DATA), (0xa0, 0)] {
        put(&mut d, at, &name.to_le_bytes());
        put(&mut d, at + 8, &5u32.to_le_bytes());
        put(&mut d, at + 16, &(DATA + 0x20).to_le_bytes());
        put(&mut d, at + 24, &2u64.to_le_bytes());
        put(&mut d, at + 32, &(DATA + 0x40).to_le_bytes());
        put(&mut d, at + 40, &24u64.to_le_bytes());
    }
    put(&mut d, 0xe0, &4u32.to_le_bytes());
    put(&mut d, 0xe4, &110u32.to_le_bytes());
    d
}

fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..10,
        1 => prop::sample::select(vec![DATA, DATA + 0x10, DATA + 0x60, DATA + 0xa0, DATA + 0xe0, DATA + 0xe4, SCRATCH]),
        1 => prop::sample::select(vec![2u64, 5, 16, 24, 110, 128, 129, 1 << 20]),
        1 => prop::sample::select(vec![0x40u64, 0x100, 0x4000, 0x40000000, 0x801, 0x80005, 0x802]),
        1 => Just(u64::MAX),
        1 => Just(0xdead_0000u64),
        1 => any::<u64>(),
    ]
}

fn nr() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => prop::sample::select(vec![
            g::__NR_socket, g::__NR_socketpair, g::__NR_bind, g::__NR_listen, g::__NR_accept4, g::__NR_accept,
            g::__NR_connect, g::__NR_getsockname, g::__NR_getpeername, g::__NR_sendto, g::__NR_recvfrom,
            g::__NR_sendmsg, g::__NR_recvmsg, g::__NR_sendmmsg, g::__NR_recvmmsg, g::__NR_shutdown,
            g::__NR_getsockopt, g::__NR_setsockopt,
        ]),
        2 => prop::sample::select(vec![g::__NR_close, g::__NR_read, g::__NR_write, g::__NR_dup, g::__NR_ioctl, g::__NR_poll, g::__NR_fork, g::__NR_fcntl]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn random_socket_calls_never_panic(calls in prop::collection::vec((nr(), prop::array::uniform6(arg())), 1..48)) {
        let mut insns: Vec<Insn> = vec![
            sys(g::__NR_socketpair, &[1, 1 | 0x800, 0, SCRATCH + 0x100]),
            sys(g::__NR_socketpair, &[1, 2, 0, SCRATCH + 0x108]),
            sys(g::__NR_socket, &[1, 5, 0]),
            sys(g::__NR_bind, &[7, DATA, 5]),
            sys(g::__NR_listen, &[7, 1]),
        ];
        for (n, a) in calls {
            insns.push(sys(n, &a));
        }
        insns.push(sys(g::__NR_exit_group, &[5]));
        let p = Program { base: BASE, insns };
        let (mut hal, _) = machine(vec![p]);
        hal.space_limit = Some(12);
        // Console reads and polls end (the mock's console otherwise waits for input forever).
        hal.console.input.extend(b"some input\n");
        hal.console.input_closed = true;
        let cfg = config("/init", &["init"], &[("init", REG, elf(BASE, &data()))]);
        let st = boot_checked(&mut hal, cfg).expect("boot");
        prop_assert!(st == 5 || st > 128, "status {st}");
        prop_assert!(!hal.log.iter().any(|l| l.contains("leak") || l.contains("invariant violated")), "{:?}", hal.log);
    }
}
