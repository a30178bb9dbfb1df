// Backend-level tests shared by skas and tt, `include!`d by each
// backend's test file after it defines `TheHal`, `TheSpace`, `BACKEND`,
// `new_hal`, `host_pid`, `fault_round_trips` and `set_console`.

use hal::{Access, AddressSpace, CpuFaultKind, Hal, Interrupts, PhysMem, Prot, Trap, UserContext};
use std::time::{Duration, Instant};

core::arch::global_asm!(
    ".pushsection .rodata.backend_test_guests,\"a\",@progbits",
    "g_getpid: mov $39, %eax; syscall; mov %rax, %rdi; mov $60, %eax; syscall; ud2",
    "g_load: mov (%rbx), %rax; syscall; ud2",
    "g_store: movq $7, (%rbx); mov $39, %eax; syscall; ud2",
    "g_jmp: jmp *%rbx",
    "g_ud2: ud2",
    "g_div: xor %ecx, %ecx; mov $1, %eax; xor %edx, %edx; div %rcx; ud2",
    "g_int3: int3; ud2",
    "g_loop: 1: jmp 1b",
    "g_null: 1: mov $39, %eax; syscall; jmp 1b",
    "g_fs: mov %fs:0, %rax; movq %xmm0, %rdx; syscall; ud2",
    "g_attack: jmp *%rcx",
    "g_avx: vpcmpeqd %ymm1, %ymm1, %ymm1; mov (%rbx), %rax; vextracti128 $1, %ymm1, %xmm2; movq %xmm2, %rdx; syscall; ud2",
    "g_end:",
    ".popsection",
    options(att_syntax)
);

#[allow(dead_code)] // not every backend runs every program
extern "C" {
    static g_getpid: u8;
    static g_load: u8;
    static g_store: u8;
    static g_jmp: u8;
    static g_ud2: u8;
    static g_div: u8;
    static g_int3: u8;
    static g_loop: u8;
    static g_null: u8;
    static g_fs: u8;
    static g_attack: u8;
    static g_avx: u8;
    static g_end: u8;
}

/// The bytes from `p` to `g_end` (a program plus those after it: harmless).
fn prog(p: *const u8) -> &'static [u8] {
    // SAFETY: `p` and `g_end` are labels of the one block above, `p` first.
    unsafe {
        let end = core::ptr::addr_of!(g_end);
        core::slice::from_raw_parts(p, end as usize - p as usize)
    }
}

macro_rules! guest {
    ($l:ident) => {
        prog(core::ptr::addr_of!($l))
    };
}

const CODE_VA: u64 = 0x40_0000;
const DATA_VA: u64 = 0x1000_0000;
const CODE_PA: u64 = 0;
const DATA_PA: u64 = 0x10000;
const PG: u64 = 4096;

fn boot(code: &[u8]) -> (TheHal, TheSpace, UserContext) {
    let mut hal = new_hal(16 << 20);
    let mut sp = hal.new_space().expect("space");
    hal.phys().write(CODE_PA, code);
    sp.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
    let mut ctx = UserContext::default();
    ctx.regs.rip = CODE_VA;
    (hal, sp, ctx)
}


#[test]
fn syscalls_and_exit() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.orig_rax, 39);
    assert_eq!(ctx.regs.rip, CODE_VA + 7);
    ctx.regs.rax = 1234;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.orig_rax, 60);
    assert_eq!(ctx.regs.rdi, 1234);
    assert_eq!(ctx.regs.syscall_args()[0], 1234);
}


#[test]
fn page_faults_have_the_right_access() {
    // Read of an unmapped page, then map it and continue.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_load));
    ctx.regs.rbx = DATA_VA + 8;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA + 8, access: Access::Read });
    assert_eq!(ctx.regs.rip, CODE_VA);
    hal.phys().write(DATA_PA + 8, &39u64.to_le_bytes());
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ);
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.orig_rax, 39);

    // Write to a read-only page, then make it writable and continue.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_store));
    ctx.regs.rbx = DATA_VA + 16;
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ);
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA + 16, access: Access::Write });
    sp.protect(DATA_VA, PG, Prot::READ | Prot::WRITE);
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let mut b = [0u8; 8];
    hal.phys().read(DATA_PA + 16, &mut b);
    assert_eq!(u64::from_le_bytes(b), 7);

    // Write to an unmapped page.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_store));
    ctx.regs.rbx = DATA_VA;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA, access: Access::Write });

    // Jump to a readable, non-executable page; and to an unmapped one.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_jmp));
    ctx.regs.rbx = DATA_VA;
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ);
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA, access: Access::Execute });
    ctx.regs.rip = DATA_VA + 2 * PG;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA + 2 * PG, access: Access::Execute });
    // The stub stays usable after handled faults.
    ctx.regs.rip = CODE_VA;
    sp.protect(DATA_VA, PG, Prot::READ | Prot::EXEC);
    hal.phys().write(DATA_PA, guest!(g_getpid));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    // One detour per fault to learn its access kind (ptrace), or none
    // (the seccomp handler reads the error code from its frame).
    assert!(matches!(fault_round_trips(&hal), 0 | 2), "{}", fault_round_trips(&hal));
}


#[test]
fn cpu_faults() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_ud2));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::CpuFault { kind: CpuFaultKind::IllegalInstruction, addr: CODE_VA });

    let (mut hal, mut sp, mut ctx) = boot(guest!(g_div));
    let t = hal.run(&mut ctx, &mut sp);
    assert!(matches!(t, Trap::CpuFault { kind: CpuFaultKind::DivideError, .. }), "{t:?}");

    let (mut hal, mut sp, mut ctx) = boot(guest!(g_int3));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::CpuFault { kind: CpuFaultKind::Breakpoint, addr: CODE_VA + 1 });

    // Non-canonical address: #GP, not a page fault.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_load));
    ctx.regs.rbx = 0x8000_0000_0000_0000;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::CpuFault { kind: CpuFaultKind::GeneralProtection, addr: CODE_VA });
}


#[test]
fn registers_fpu_and_fs_base_round_trip() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_fs));
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ);
    hal.phys().write(DATA_PA, &0xfeed_f00du64.to_le_bytes());
    ctx.regs.fs_base = DATA_VA;
    ctx.regs.r8 = 8;
    ctx.regs.r15 = 15;
    ctx.regs.rbp = 0xbbbb;
    ctx.regs.rsp = 0x5555_0000;
    ctx.fpu.0[160..168].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.orig_rax, 0xfeed_f00d);
    assert_eq!(ctx.regs.rdx, 0x1122_3344_5566_7788);
    assert_eq!((ctx.regs.r8, ctx.regs.r15, ctx.regs.rbp, ctx.regs.rsp), (8, 15, 0xbbbb, 0x5555_0000));
    assert_eq!(ctx.regs.fs_base, DATA_VA);
    assert_eq!(ctx.regs.cs, 0x33);
}


#[test]
fn timer_preempts_an_infinite_loop() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_loop));
    let mut spurious = 0;
    for i in 0..200u64 {
        let d = hal.now_ns() + (i % 10) * 100_000;
        hal.set_timer(Some(d));
        loop {
            let t = hal.run(&mut ctx, &mut sp);
            assert_eq!(t, Trap::Interrupt(Interrupts::TIMER));
            if hal.now_ns() >= d {
                break;
            }
            spurious += 1;
        }
        assert_eq!(ctx.regs.rip, CODE_VA);
    }
    let t0 = Instant::now();
    let d = hal.now_ns() + 20_000_000;
    hal.set_timer(Some(d));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Interrupt(Interrupts::TIMER));
    let late = hal.now_ns() - d;
    println!("timer: 20 ms deadline reported {} us late; {spurious} spurious of 200", late / 1000);
    assert!(t0.elapsed() >= Duration::from_millis(19));
}


#[test]
fn wait_for_interrupt_sleeps_until_timer_or_console() {
    let mut hal = new_hal(1 << 20);
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    set_console(&mut hal, drivers::console::HostConsole::with_fds(fds[0], 1, 2));
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    hal.set_timer(Some(hal.now_ns() + 30_000_000));
    assert_eq!(hal.wait_for_interrupt(), Interrupts::TIMER);
    assert!(t0.elapsed() >= Duration::from_millis(29));
    assert!(cpu_time() - cpu0 < Duration::from_millis(10), "idle wait used CPU");
    // SAFETY: writing one byte from a static buffer to our pipe.
    assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
    hal.set_timer(None);
    assert_eq!(hal.wait_for_interrupt(), Interrupts::CONSOLE);
    let mut b = [0u8; 4];
    assert_eq!(hal.console().read(&mut b), hal::ConsoleRead::Data(1));
}


fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}


fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z") | Some("X")),
        Err(_) => false,
    }
}


#[test]
fn dropping_a_space_kills_and_reaps_its_stub() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_loop));
    hal.set_timer(Some(hal.now_ns() + 1_000_000));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Interrupt(Interrupts::TIMER));
    let pid = host_pid(&sp);
    assert!(alive(pid));
    drop(sp);
    // Reaped: no /proc entry at all (not even a zombie).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}


#[test]
fn killed_stub_is_lost() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_loop));
    hal.set_timer(Some(hal.now_ns() + 1_000_000));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Interrupt(Interrupts::TIMER));
    // SAFETY: killing our own stub.
    unsafe { libc::kill(host_pid(&sp), libc::SIGKILL) };
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Lost { signal: Some(9) });
    // Host signals other than SIGKILL are suppressed.
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_loop));
    hal.set_timer(Some(hal.now_ns() + 50_000_000));
    let pid = host_pid(&sp);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        for s in [libc::SIGTERM, libc::SIGSEGV, libc::SIGINT, libc::SIGUSR1] {
            // SAFETY: signalling our own stub.
            unsafe { libc::kill(pid, s) };
        }
    });
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Interrupt(Interrupts::TIMER));
    t.join().unwrap();
    assert!(alive(pid));
}


/// Run by `sigkill_of_the_kernel_leaves_no_stub` in a child process.
#[test]
fn kill_helper() {
    if std::env::var_os("BACKEND_KILL_HELPER").is_none() {
        return;
    }
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_loop));
    let sp2 = hal.new_space().unwrap();
    println!("STUBS {} {}", host_pid(&sp), host_pid(&sp2));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        hal.set_timer(Some(hal.now_ns() + 100_000_000));
        hal.run(&mut ctx, &mut sp);
    }
}


#[test]
fn sigkill_of_the_kernel_leaves_no_stub() {
    use std::io::BufRead;
    // Orphaned stubs are reparented to us, so we can see them die and reap them.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_helper", "--nocapture", "--test-threads=1"])
        .env("BACKEND_KILL_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut pids = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(i) = line.find("STUBS ") {
            let rest = line[i + 6..].trim();
            pids = rest.split(' ').map(|p| p.parse::<i32>().unwrap()).collect();
            break;
        }
        line.clear();
    }
    assert_eq!(pids.len(), 2, "helper did not report its stubs");
    std::thread::sleep(Duration::from_millis(50));
    assert!(pids.iter().all(|&p| alive(p)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = Instant::now();
    for &p in &pids {
        loop {
            let mut st = 0;
            // SAFETY: reaping a reparented orphan, if it is ours.
            unsafe { libc::waitpid(p, &mut st, libc::WNOHANG | libc::__WALL) };
            if !alive(p) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "stub {p} survived the kernel");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}


#[test]
fn null_syscall_round_trip_cost() {
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_null));
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let n = 20_000;
    let t0 = Instant::now();
    for _ in 0..n {
        ctx.regs.rax = 1;
        assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    }
    let trapped = t0.elapsed().as_nanos() as f64 / n as f64;
    let t0 = Instant::now();
    for _ in 0..n {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
    let native = t0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "null syscall: {BACKEND} {:.2} us, native {:.3} us, ratio {:.0}x",
        trapped / 1000.0,
        native / 1000.0,
        trapped / native
    );
}


#[test]
fn first_guest_instruction_latency() {
    let t0 = Instant::now();
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_getpid));
    let t1 = Instant::now();
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    let t2 = Instant::now();
    let t3 = Instant::now();
    let sp2 = hal.new_space().unwrap();
    let t4 = Instant::now();
    drop(sp2);
    println!(
        "hal+first space {:?}, first run to first syscall {:?}, another space {:?}",
        t1 - t0,
        t2 - t1,
        t4 - t3
    );
}


#[test]
fn avx_state_survives_a_page_fault() {
    if !std::arch::is_x86_feature_detected!("avx2") {
        println!("no AVX2 on this host: skipped");
        return;
    }
    let (mut hal, mut sp, mut ctx) = boot(guest!(g_avx));
    ctx.regs.rbx = DATA_VA;
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::PageFault { addr: DATA_VA, access: Access::Read });
    sp.map(DATA_VA, PG, DATA_PA, Prot::READ);
    assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    assert_eq!(ctx.regs.rdx, u64::MAX, "upper half of ymm1 lost across the fault");
}

const DATA2_PA: u64 = 0x20000;
const ONLY_A_VA: u64 = 0x3000_0000;

#[test]
fn two_spaces_alternate_and_do_not_see_each_other() {
    let (mut hal, mut a, mut ca) = boot(guest!(g_load));
    let mut b = hal.new_space().expect("space");
    b.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
    let mut cb = UserContext::default();
    cb.regs.rip = CODE_VA;
    // The same address, different frames.
    a.map(DATA_VA, PG, DATA_PA, Prot::READ);
    b.map(DATA_VA, PG, DATA2_PA, Prot::READ);
    a.map(ONLY_A_VA, PG, DATA_PA, Prot::READ);
    hal.phys().write(DATA_PA, &0xaaaau64.to_le_bytes());
    hal.phys().write(DATA2_PA, &0xbbbbu64.to_le_bytes());
    for round in 0..3 {
        ca.regs.rip = CODE_VA;
        ca.regs.rbx = DATA_VA;
        assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
        assert_eq!(ca.regs.orig_rax, 0xaaaa, "round {round}");
        cb.regs.rip = CODE_VA;
        cb.regs.rbx = DATA_VA;
        assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
        assert_eq!(cb.regs.orig_rax, 0xbbbb, "round {round}");
        // What only A maps is not there while B runs.
        cb.regs.rip = CODE_VA;
        cb.regs.rbx = ONLY_A_VA;
        assert_eq!(hal.run(&mut cb, &mut b), Trap::PageFault { addr: ONLY_A_VA, access: Access::Read });
    }
    // Changes queued while the other space runs take effect.
    b.unmap(DATA_VA, PG);
    ca.regs.rip = CODE_VA;
    ca.regs.rbx = ONLY_A_VA;
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    assert_eq!(ca.regs.orig_rax, 0xaaaa);
    cb.regs.rip = CODE_VA;
    cb.regs.rbx = DATA_VA;
    assert_eq!(hal.run(&mut cb, &mut b), Trap::PageFault { addr: DATA_VA, access: Access::Read });
    // And dropping one leaves the other intact.
    drop(b);
    ca.regs.rip = CODE_VA;
    ca.regs.rbx = DATA_VA;
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    assert_eq!(ca.regs.orig_rax, 0xaaaa);
}

#[test]
fn address_space_switch_cost() {
    // Two spaces with 64 separate runs each (code, data, heap-like pieces),
    // alternating on every system call, against one space alone.
    let (mut hal, mut a, mut ca) = boot(guest!(g_null));
    let mut b = hal.new_space().expect("space");
    b.map(CODE_VA, PG, CODE_PA, Prot::READ | Prot::EXEC);
    for i in 0..64u64 {
        a.map(DATA_VA + 2 * i * PG, PG, DATA_PA + i * PG, Prot::READ | Prot::WRITE);
        b.map(DATA_VA + 2 * i * PG, PG, DATA2_PA + i * PG, Prot::READ | Prot::WRITE);
    }
    let mut cb = UserContext::default();
    cb.regs.rip = CODE_VA;
    assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
    let n = 2_000;
    let t0 = Instant::now();
    for _ in 0..n {
        assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
    }
    let same = t0.elapsed().as_nanos() as f64 / n as f64;
    let t0 = Instant::now();
    for _ in 0..n / 2 {
        assert_eq!(hal.run(&mut ca, &mut a), Trap::Syscall);
        assert_eq!(hal.run(&mut cb, &mut b), Trap::Syscall);
    }
    let alternating = t0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{BACKEND}: syscall trap in the same space {:.2} us, alternating between two spaces of 65 runs {:.2} us (switch cost {:.2} us)",
        same / 1000.0,
        alternating / 1000.0,
        (alternating - same) / 1000.0
    );
}
