// Tests of the skas backend under either trap mechanism, `include!`d by
// `skas.rs` (ptrace) and `skas_seccomp.rs` after they define `MODE` and the
// items `common/backend_tests.rs` needs.

use hal_uml_x86_64::{stub, TrapMode};

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
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", sp.stub_pid())).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(fds, ["3"]);
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
    let pid = sp.stub_pid();
    match MODE {
        // Under PTRACE_SYSEMU the stub's own syscall instruction traps too.
        TrapMode::Ptrace => {
            assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall, "the stub's syscall must be trapped");
            assert_eq!(ctx.regs.orig_rax, 9);
            assert!(!maps(pid).contains("30000000-"), "host executed the guest's mmap");
        }
        // Under seccomp the guest thread's filter kills the stub instead.
        TrapMode::Seccomp => {
            assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Lost { signal: Some(libc::SIGSYS as u32) });
        }
    }
}

fn status(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

#[test]
fn stub_runs_under_a_seccomp_filter() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let pid = sp.stub_pid();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(tasks.len(), if MODE == TrapMode::Seccomp { 2 } else { 1 }, "{tasks:?}");
    for t in tasks {
        let st = std::fs::read_to_string(t.join("status")).unwrap();
        assert!(st.lines().any(|l| l.split_whitespace().eq(["Seccomp:", "2"])), "{}: {st}", t.display());
        assert!(st.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{st}");
    }
}

#[test]
fn denied_host_call_kills_only_that_stub() {
    let (mut hal, mut a, mut ca) = boot(guest!(g_null));
    let mut b = hal.new_space().expect("space");
    b.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
    let mut cb = UserContext::default();
    cb.regs.rip = CODE_VA;
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
    // A call the executor is not allowed to make (getpid), as if the map
    // operation list had been forged: the host kills that stub with SIGSYS.
    a.debug_queue_raw_op([libc::SYS_getpid as u64, 0, 0, 0, 0, 0, 0]);
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Lost { signal: Some(libc::SIGSYS as u32) });
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Lost { signal: Some(libc::SIGSYS as u32) });
    // An mmap of another fd than physical memory: killed too.
    let mut c = hal.new_space().expect("space");
    c.debug_queue_raw_op([9, 0x3000_0000, PG, 3, 0x11, 0, 0]);
    assert_eq!(hal.run(&mut cb, &mut c), Trap::Lost { signal: Some(libc::SIGSYS as u32) });
    // The other space is untouched.
    for _ in 0..10 {
        assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
    }
    assert!(alive(b.stub_pid()));
}

#[test]
fn stub_has_its_own_namespaces_and_an_empty_root() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let pid = sp.stub_pid();
    if !hal_uml_x86_64::spawn::namespaces_in_use() {
        println!("the host refused namespaces: skipped");
        return;
    }
    for ns in ["net", "user", "mnt", "ipc", "uts"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(mine, its, "stub shares the kernel's {ns} namespace");
    }
    let ns_of = |p: i32, ns: &str| std::fs::read_link(format!("/proc/{p}/ns/{ns}")).unwrap();
    if hal_uml_x86_64::spawn::pid_namespaces_in_use() {
        // It is process 1 of its own PID namespace: it sees no host process.
        assert_ne!(ns_of(pid, "pid"), std::fs::read_link("/proc/self/ns/pid").unwrap());
        let st = status(pid);
        let nspid = st.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    } else {
        println!("no PID namespace per stub on this host (needs CAP_SYS_ADMIN)");
    }
    // Its root is an empty, deleted directory.
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert!(root.to_string_lossy().contains("rustuml-stub-root"), "{}", root.display());
    assert!(root.to_string_lossy().ends_with("(deleted)"), "{}", root.display());
}

core::arch::global_asm!(
    ".pushsection .rodata.skas_test_guests,\"a\",@progbits",
    "g_sigreturn: mov %rbx, %rsp; mov $15, %eax; jmp *%rcx",
    "g_sigreturn_loop: 1: jmp 1b",
    ".popsection",
    options(att_syntax)
);
extern "C" {
    static g_sigreturn: u8;
    static g_sigreturn_loop: u8;
}

/// The address of the first `syscall` instruction in the stub's code.
fn stub_syscall_insn() -> u64 {
    let (img, layout) = stub::build_image();
    let code = &img[..4096];
    let off = (layout.entry - stub::STUB_BASE) as usize;
    let at = code[off..].windows(2).position(|w| w == [0x0f, 0x05]).unwrap();
    stub::STUB_BASE + (off + at) as u64
}

#[test]
fn guest_cannot_write_the_control_page() {
    if MODE != TrapMode::Seccomp {
        return;
    }
    for va in [stub::CTRL_ADDR, stub::OPS_ADDR + 8] {
        let (mut hal, mut sp, mut ctx) = boot(guest!(g_store));
        ctx.regs.rbx = va;
        assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: va, access: Access::Write });
    }
}

#[test]
fn guest_that_blocks_the_timer_kick_is_killed() {
    if MODE != TrapMode::Seccomp {
        return;
    }
    // A forged rt_sigreturn frame (through the stub's own syscall
    // instruction) that blocks every signal and loops.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_sigreturn));
    let loop_va = CODE_VA + (core::ptr::addr_of!(g_sigreturn_loop) as u64 - core::ptr::addr_of!(g_sigreturn) as u64);
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ | Prot::WRITE);
    let mut uc = [0u64; 38];
    uc[2] = stub::ALTSTACK_ADDR;
    uc[4] = stub::ALTSTACK_SIZE;
    uc[5 + 15] = DATA_VA + 2048; // rsp
    uc[5 + 16] = loop_va; // rip
    uc[5 + 17] = 0x202; // eflags
    uc[5 + 18] = 0x33 | (0x2b << 48); // cs, ss
    uc[37] = u64::MAX; // uc_sigmask: everything blocked
    let bytes: Vec<u8> = uc.iter().flat_map(|w| w.to_le_bytes()).collect();
    hal.phys().write(DATA_PA, &bytes);
    ctx.regs.rbx = DATA_VA;
    ctx.regs.rcx = stub_syscall_insn();
    let t0 = Instant::now();
    hal.set_timer(Some(hal.now_ns() + 1_000_000));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Lost { signal: Some(libc::SIGKILL as u32) });
    println!("unpreemptible guest killed after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_stub_waiting_for_the_kernel_uses_no_cpu() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_null));
    for _ in 0..1000 {
        assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    }
    // The kernel goes idle with the guest stopped in a trap (no console input).
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    set_console(&mut hal, drivers::console::HostConsole::with_fds(fds[0], 1, 2));
    let before = cpu_ticks(sp.stub_pid());
    hal.set_timer(Some(hal.now_ns() + 200_000_000));
    assert_eq!(hal.wait_for_interrupt(), Interrupts::TIMER);
    let used = cpu_ticks(sp.stub_pid()) - before;
    assert!(used <= 2, "the stub used {used} ticks while the kernel was idle");
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
}

#[test]
fn spinning_placements_work_and_go_quiet_when_idle() {
    if MODE != TrapMode::Seccomp {
        return;
    }
    use hal_uml_x86_64::{Placement, SkasConfig};
    let code = guest!(g_load);
    for placement in [Placement::Free, Placement::SplitCpus] {
        // In a thread of its own: the kernel thread pins itself.
        std::thread::spawn(move || {
            let mut hal = SkasHal::with_config(16 << 20, SkasConfig { trap: MODE, placement }).unwrap();
            let mut sp = hal.new_space().unwrap();
            hal.phys().write(CODE_PA, code);
            sp.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
            let mut ctx = UserContext::default();
            for i in 0..2000u64 {
                // A page fault, then a system call, on fresh pages.
                ctx.regs.rip = CODE_VA;
                ctx.regs.rbx = DATA_VA + i * PG;
                assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA + i * PG, access: Access::Read });
                sp.map(DATA_VA + i * PG, PG, DATA_PA, Prot::READ);
                assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall, "{placement:?}");
            }
            let mut fds = [0i32; 2];
            // SAFETY: `fds` has room for two fds.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            hal.set_console(drivers::console::HostConsole::with_fds(fds[0], 1, 2));
            let before = cpu_ticks(sp.stub_pid());
            hal.set_timer(Some(hal.now_ns() + 200_000_000));
            assert_eq!(hal.wait_for_interrupt(), Interrupts::TIMER);
            let used = cpu_ticks(sp.stub_pid()) - before;
            assert!(used <= 2, "{placement:?}: the stub used {used} ticks while the kernel was idle");
        })
        .join()
        .unwrap();
    }
}
