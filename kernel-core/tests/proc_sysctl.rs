//! `/proc/sys/net/ipv4/ip_forward` from a scripted guest on the mock HAL:
//! read, written by root, bad values refused, closed to other users.

mod common;

use common::*;
use kernel_core::{boot, Errno};
use linux_raw_sys::general as g;

const BASE: u64 = 0x40_0000;
const SCR: u64 = BASE + SCRATCH_OFF;

fn neg(e: Errno) -> i64 {
    -(e.code() as i64)
}

#[test]
fn ip_forward_sysctl() {
    let mut data = Vec::new();
    let mut s = |text: &str| {
        let a = BASE + DATA_OFF + data.len() as u64;
        data.extend_from_slice(text.as_bytes());
        data.push(0);
        a
    };
    let (path, dir, one, seven, zero) = (s("/proc/sys/net/ipv4/ip_forward"), s("/proc/sys/net/ipv4"), s("1\n"), s("7\n"), s(" 0 \n"));
    let mut insns = Vec::new();
    let call = |insns: &mut Vec<Insn>, what: &'static str, nr: u32, args: &[u64], want: i64| {
        insns.push(sys(nr, args));
        insns.push(ret_is(what, want));
    };
    let is = |insns: &mut Vec<Insn>, what: &'static str, want: &'static [u8]| {
        insns.push(check_mem(what, |_| SCR, want.len(), move |_, m| m == want));
    };
    let (rd, wr) = (g::O_RDONLY as u64, (g::O_WRONLY | g::O_TRUNC) as u64);
    call(&mut insns, "open for reading", g::__NR_open, &[path, rd], 3);
    call(&mut insns, "read", g::__NR_read, &[3, SCR, 16], 2);
    is(&mut insns, "off at boot", b"0\n");
    call(&mut insns, "open for writing", g::__NR_open, &[path, wr], 4);
    call(&mut insns, "write 1", g::__NR_write, &[4, one, 2], 2);
    call(&mut insns, "reopen", g::__NR_open, &[path, rd], 5);
    call(&mut insns, "read again", g::__NR_read, &[5, SCR, 16], 2);
    is(&mut insns, "on", b"1\n");
    call(&mut insns, "out of range", g::__NR_write, &[4, seven, 2], neg(Errno::EINVAL));
    call(&mut insns, "blanks around 0", g::__NR_pwrite64, &[4, zero, 4, 0], 4);
    call(&mut insns, "reopen", g::__NR_open, &[path, rd], 6);
    call(&mut insns, "read once more", g::__NR_read, &[6, SCR, 16], 2);
    is(&mut insns, "off again", b"0\n");
    call(&mut insns, "open the directory", g::__NR_open, &[dir, (g::O_RDONLY | g::O_DIRECTORY) as u64], 7);
    insns.push(sys(g::__NR_getdents64, &[7, SCR, 1024]));
    insns.push(check_mem("listed", |_| SCR, 1024, |_, m| m.windows(11).any(|w| w == b"ip_forward\0")));
    call(&mut insns, "setuid", g::__NR_setuid, &[1000], 0);
    call(&mut insns, "not for users", g::__NR_open, &[path, wr], neg(Errno::EACCES));
    call(&mut insns, "but readable", g::__NR_open, &[path, rd], 8);
    insns.push(sys(g::__NR_exit_group, &[0]));
    let elf_bytes = elf(BASE, &data);
    let (mut hal, _) = machine(vec![Program { base: BASE, insns }]);
    let cfg = config("/init", &["init"], &[("init", REG | 0o755, elf_bytes)]);
    let st = boot(&mut hal, cfg).expect("boot");
    assert_eq!(st, 0, "log: {:?}", hal.log);
}
