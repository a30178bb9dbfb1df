//! A tiny "kernel" written directly on the skas HAL: hand-written guest
//! programs checked for traps, registers, access kinds, batching, timer
//! preemption, isolation of the stub and cleanup of stub processes.

use hal_uml_x86_64::{stub, SkasHal, SkasSpace};

type TheHal = SkasHal;
type TheSpace = SkasSpace;
const BACKEND: &str = "skas";

fn new_hal(mem: u64) -> SkasHal {
    SkasHal::new(mem).expect("hal")
}
fn host_pid(sp: &SkasSpace) -> i32 {
    sp.stub_pid()
}
fn fault_round_trips(hal: &SkasHal) -> u64 {
    hal.stats().fault_round_trips
}
fn set_console(hal: &mut SkasHal, c: drivers::console::HostConsole) {
    hal.set_console(c);
}

// The tests every backend must pass, shared with hal-uml-tt.
include!("common/backend_tests.rs");

fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default()
}

#[test]
fn stub_has_only_its_own_mappings() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let m = maps(sp.stub_pid());
    let mut lines = 0;
    for l in m.lines() {
        let range = l.split_whitespace().next().unwrap();
        let (a, _) = range.split_once('-').unwrap();
        let a = u64::from_str_radix(a, 16).unwrap();
        let ok = a == CODE_VA || (stub::STUB_BASE..stub::STUB_END).contains(&a) || l.contains("[vsyscall]");
        assert!(ok, "unexpected host mapping in stub: {l}\n{m}");
        assert!(!l.contains("[stack]") && !l.contains("[vdso]") && !l.contains("[vvar]"), "{l}");
        lines += 1;
    }
    assert!(lines >= 3, "{m}");
    // No fds but the physical memory.
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", sp.stub_pid())).unwrap().collect();
    assert_eq!(fds.len(), 1);
}

#[test]
fn map_operations_are_batched_and_merged() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_load));
    // 64 contiguous pages mapped one by one: merged into one operation.
    for i in 0..64 {
        sp.map(DATA_VA + i * PG, PG, DATA_PA + i * PG, Prot::READ);
    }
    assert_eq!(sp.pending_ops(), 2); // the code page and the data run
    // 100 scattered pages: 100 operations, still one round trip.
    for i in 0..100 {
        sp.map(0x2000_0000 + 2 * i * PG, PG, DATA_PA, Prot::READ | Prot::WRITE);
    }
    sp.unmap(0x2000_0000, PG);
    sp.protect(DATA_VA + 63 * PG, PG, Prot::READ | Prot::WRITE);
    hal.phys().write(DATA_PA + 63 * PG, &39u64.to_le_bytes());
    ctx.regs.rbx = DATA_VA + 63 * PG;
    let before = hal.stats();
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let after = hal.stats();
    assert_eq!(ctx.regs.orig_rax, 39);
    assert_eq!(after.map_batches - before.map_batches, 1);
    assert_eq!(after.map_ops - before.map_ops, 104);
    let m = maps(sp.stub_pid());
    assert!(m.contains("20002000-20003000 rw-s"), "{m}");
    assert!(!m.contains("20000000-"), "{m}");
    // Nothing pending: no round trip.
    ctx.regs.rip = CODE_VA;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(hal.stats().map_batches, after.map_batches);
}

#[test]
fn huge_batch_and_host_refusal() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    // More operations than fit in one batch page.
    for i in 0..3000u64 {
        sp.map(0x2000_0000 + 2 * i * PG, PG, DATA_PA, Prot::READ);
    }
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(hal.stats().map_batches, 3001usize.div_ceil(stub::OPS_PER_BATCH) as u64);
    // An operation the host refuses (mprotect of a hole: ENOMEM) loses the space.
    sp.protect(0x7000_0000, PG, Prot::READ);
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
}

#[test]
fn guest_cannot_use_the_stub_executor() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_attack));
    // A fake op list in guest memory asking for a mapping of all of phys.
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ | Prot::WRITE);
    let op: [u64; 7] = [9, 0x3000_0000, 16 << 20, 3, 0x11, 3, 0];
    let bytes: Vec<u8> = op.iter().flat_map(|w| w.to_le_bytes()).collect();
    hal.phys().write(DATA_PA, &bytes);
    // Find the executor: the same layout as the HAL's own.
    let (_, layout) = stub::build_image();
    ctx.regs.rcx = layout.exec;
    ctx.regs.rbx = DATA_VA;
    ctx.regs.r12 = 1;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall, "the stub's syscall must be trapped");
    assert_eq!(ctx.regs.orig_rax, 9);
    assert!(!maps(sp.stub_pid()).contains("30000000-"), "host executed the guest's mmap");
}
