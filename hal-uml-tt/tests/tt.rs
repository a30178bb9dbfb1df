//! A tiny "kernel" written directly on the tt HAL: the backend-level tests
//! every backend passes (shared with skas: `hal-uml-x86_64/tests/common`),
//! plus what is particular to tt — the guest window, address-space switches,
//! and the guest's unrestricted view of kernel memory.

use hal_uml_tt::{TtHal, TtSpace, USER_END};

type TheHal = TtHal;
type TheSpace = TtSpace;
const BACKEND: &str = "tt";

fn new_hal(mem: u64) -> TtHal {
    TtHal::new(mem).expect("hal")
}
fn host_pid(sp: &TtSpace) -> i32 {
    sp.host_pid()
}
fn fault_round_trips(hal: &TtHal) -> u64 {
    hal.stats().fault_round_trips
}
fn set_console(hal: &mut TtHal, c: drivers::console::HostConsole) {
    hal.set_console(c);
}

// The tests every backend must pass.
include!("../../hal-uml-x86_64/tests/common/backend_tests.rs");

/// A value only the kernel knows about.
static KERNEL_SECRET: u64 = 0x5ec7_e7c0_ffee_0001;

#[test]
fn guest_reads_and_writes_kernel_memory() {
    // The point of tt: nothing protects the kernel from its guests.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_load));
    ctx.regs.rbx = core::ptr::addr_of!(KERNEL_SECRET) as u64;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.orig_rax, KERNEL_SECRET, "the guest read a kernel secret");
    let target = Box::new(0u64);
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_store));
    ctx.regs.rbx = &*target as *const u64 as u64;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    // SAFETY: the guest wrote the heap word behind our back; read it volatile.
    assert_eq!(unsafe { std::ptr::read_volatile(&*target) }, 7, "the guest wrote kernel heap");
}

#[test]
fn guest_memory_is_in_the_kernels_address_space() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_store));
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ | Prot::WRITE);
    ctx.regs.rbx = DATA_VA;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    // The guest's store went to the frame the kernel reads through its own
    // mapping of physical memory: no copy, no host call.
    let mut b = [0u8; 8];
    hal.phys().read(DATA_PA, &mut b);
    assert_eq!(u64::from_le_bytes(b), 7);
    assert_eq!(sp.user_end(), USER_END);
}

#[test]
fn map_outside_the_window_loses_the_space() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    let kernel_text = guest_reads_and_writes_kernel_memory as *const () as u64 & !(PG - 1);
    sp.map(kernel_text, PG, DATA_PA, Prot::READ | Prot::WRITE);
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
    // The kernel's code is untouched (this call still works).
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    sp.map(USER_END - PG, 2 * PG, DATA_PA, Prot::READ);
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
    // Beyond physical memory.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    sp.map(DATA_VA, PG, 1 << 40, Prot::READ);
    assert!(matches!(hal.run(&mut ctx, &mut sp), Trap::Lost { .. }));
}

#[test]
fn switch_maps_the_merged_record() {
    let (mut hal, mut a, mut ca) = boot(guest!(g_getpid));
    // 64 contiguous pages mapped one by one: one run in the record.
    for i in 0..64 {
        a.map(DATA_VA + i * PG, PG, DATA_PA + i * PG, Prot::READ);
    }
    assert_eq!(a.record().len(), 2);
    let mut b = hal.new_space().unwrap();
    b.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
    let mut cb = UserContext::default();
    cb.regs.rip = CODE_VA;
    assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
    let s0 = TtHal::switch_stats();
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    let s1 = TtHal::switch_stats();
    // Other tests' HALs may switch too: only lower bounds hold.
    assert!(s1.switches > s0.switches);
    assert!(s1.switch_maps >= s0.switch_maps + 2);
    // Same space again, nothing queued: no host call at all.
    ca.regs.rip = CODE_VA;
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
}
