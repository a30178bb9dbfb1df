//! sched_getaffinity/sched_setaffinity on the mock HAL: one CPU, as Linux
//! with one CPU online answers.

mod common;

use common::*;
use kernel_core::{boot, Errno};
use linux_raw_sys::general as g;

const B1: u64 = 0x40_0000;

fn neg(e: Errno) -> i64 {
    -(e.code() as i64)
}

#[test]
fn setaffinity_accepts_masks_with_cpu0_only() {
    let s = B1 + SCRATCH_OFF;
    let insns = vec![
        // Masks at s: 0x1, 0x3 (CPU 1 does not exist: ignored), 0x2, 0x0.
        store(move |_| s, 1u64.to_le_bytes().to_vec()),
        store(move |_| s + 8, 3u64.to_le_bytes().to_vec()),
        store(move |_| s + 16, 2u64.to_le_bytes().to_vec()),
        sys(g::__NR_sched_setaffinity, &[0, 8, s]),
        ret_is("mask {0}", 0),
        sys(g::__NR_sched_setaffinity, &[1, 8, s + 8]),
        ret_is("mask {0,1} for our own pid", 0),
        sys(g::__NR_sched_setaffinity, &[0, 128, s]),
        ret_is("a longer mask: only the first 8 bytes count", 0),
        sys(g::__NR_sched_setaffinity, &[0, 1, s]),
        ret_is("a 1-byte mask", 0),
        sys(g::__NR_sched_setaffinity, &[0, 8, s + 16]),
        ret_is("mask {1}: no CPU online", neg(Errno::EINVAL)),
        sys(g::__NR_sched_setaffinity, &[0, 8, s + 24]),
        ret_is("empty mask", neg(Errno::EINVAL)),
        sys(g::__NR_sched_setaffinity, &[0, 0, s]),
        ret_is("zero size: an empty mask", neg(Errno::EINVAL)),
        sys(g::__NR_sched_setaffinity, &[0, 8, 0]),
        ret_is("NULL mask", neg(Errno::EFAULT)),
        sys(g::__NR_sched_setaffinity, &[0, 8, 0xffff_8000_0000_0000]),
        ret_is("kernel address", neg(Errno::EFAULT)),
        sys(g::__NR_sched_setaffinity, &[4242, 8, s]),
        ret_is("unknown pid", neg(Errno::ESRCH)),
        sys(g::__NR_sched_setaffinity, &[u32::MAX as u64, 8, s]),
        ret_is("pid -1", neg(Errno::ESRCH)),
        sys(g::__NR_sched_setaffinity, &[4242, 8, 0]),
        ret_is("EFAULT before ESRCH", neg(Errno::EFAULT)),
        // The mask reads back as {0}.
        sys(g::__NR_sched_getaffinity, &[0, 8, s + 32]),
        ret_is("getaffinity", 8),
        check_mem("mask read back", move |_| s + 32, 8, |_, m| m == 1u64.to_le_bytes()),
        sys(g::__NR_exit_group, &[0]),
    ];
    let (mut hal, _) = machine(vec![Program { base: B1, insns }]);
    let cfg = config("/bin/t", &["t"], &[("bin", DIR, vec![]), ("bin/t", REG, elf(B1, b""))]);
    assert_eq!(boot(&mut hal, cfg).expect("boot"), 0);
}
