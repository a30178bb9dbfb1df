//! Measures the skas trap path: time from process start to the first guest
//! instruction, and the null system call round trip, each next to native;
//! then the null system call and page fault under each trap mechanism,
//! pinned to one CPU and not.
//!
//! `cargo run --release -p hal-uml-x86_64 --no-default-features --example skas_latency`
//! (`RUSTUML_TRAP` and `RUSTUML_PIN` choose the configuration of the first part.)

use hal::{AddressSpace, Hal, PhysMem, Prot, Trap, UserContext};
use hal_uml_host::timer::clock_ns;
use hal_uml_x86_64::{Placement, SkasConfig, SkasHal, TrapMode};
use std::process::Command;

// `1: mov $39, %eax; syscall; jmp 1b`
const NULL_LOOP: [u8; 9] = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
// `1: mov (%rbx), %rax; add $4096, %rbx; jmp 1b`
const TOUCH_LOOP: [u8; 12] = [0x48, 0x8b, 0x03, 0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0xeb, 0xf4];

/// Null system call and page fault cost (µs) under `config`.
fn measure(config: SkasConfig) -> (f64, f64) {
    let mut hal = SkasHal::with_config(256 << 20, config).expect("hal");
    let mut sp = hal.new_space().expect("space");
    hal.phys().write(0, &NULL_LOOP);
    hal.phys().write(4096, &TOUCH_LOOP);
    sp.map(0x40_0000, 4096, 0, Prot::READ | Prot::EXEC);
    sp.map(0x40_1000, 4096, 4096, Prot::READ | Prot::EXEC);
    let mut ctx = UserContext::default();
    ctx.regs.rip = 0x40_0000;
    let n = 50_000;
    hal.run(&mut ctx, &mut sp);
    let t = now();
    for _ in 0..n {
        assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
    }
    let sys = (now() - t) as f64 / n as f64 / 1e3;
    if std::env::var_os("SKAS_STATS").is_some() {
        eprintln!("{config:?}: {:?}", hal.stats());
    }
    let mut ctx = UserContext::default();
    ctx.regs.rip = 0x40_1000;
    ctx.regs.rbx = 0x1000_0000;
    let pages = 30_000u64;
    let t = now();
    for i in 0..pages {
        match hal.run(&mut ctx, &mut sp) {
            Trap::PageFault { addr, .. } => {
                assert_eq!(addr, 0x1000_0000 + i * 4096);
                sp.map(addr, 4096, 0x10_0000 + i * 4096, Prot::READ);
            }
            t => panic!("{t:?}"),
        }
    }
    let pf = (now() - t) as f64 / pages as f64 / 1e3;
    if let Some(p) = hal_uml_x86_64::seccomp::PROF.get() {
        let v: Vec<u64> = p.iter().map(|a| a.swap(0, std::sync::atomic::Ordering::Relaxed)).collect();
        let f = |s: u64, n: u64| s as f64 / n.max(1) as f64;
        eprintln!(
            "  {config:?} cycles with ops: answer {:.0} run {:.0} notice {:.0} ({}); without: answer {:.0} run {:.0} notice {:.0} ({})",
            f(v[0], v[6]), f(v[1], v[6]), f(v[2], v[6]), v[6], f(v[3], v[7]), f(v[4], v[7]), f(v[5], v[7]), v[7]
        );
    }
    (sys, pf)
}

fn now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn main() {
    match std::env::var("SKAS_T0").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(t0) if std::env::args().nth(1).as_deref() == Some("native") => {
            println!("{}", now() - t0);
        }
        Some(t0) => {
            let mut hal = SkasHal::new(256 << 20).expect("hal");
            let mut sp = hal.new_space().expect("space");
            hal.phys().write(0, &NULL_LOOP);
            sp.map(0x40_0000, 4096, 0, Prot::READ | Prot::EXEC);
            let mut ctx = UserContext::default();
            ctx.regs.rip = 0x40_0000;
            assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
            println!("{}", now() - t0);
        }
        None => {
            let exe = std::env::current_exe().unwrap();
            let spawn = |native: bool| -> f64 {
                let mut best = u64::MAX;
                for _ in 0..20 {
                    let mut c = Command::new(&exe);
                    if native {
                        c.arg("native");
                    }
                    let out = c.env("SKAS_T0", now().to_string()).output().unwrap();
                    best = best.min(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap());
                }
                best as f64 / 1e6
            };
            let native = spawn(true);
            let skas = spawn(false);
            println!("process start to first instruction: skas {skas:.2} ms, native (to main) {native:.2} ms, ratio {:.1}x", skas / native);

            let mut hal = SkasHal::new(256 << 20).expect("hal");
            let mut sp = hal.new_space().expect("space");
            hal.phys().write(0, &NULL_LOOP);
            sp.map(0x40_0000, 4096, 0, Prot::READ | Prot::EXEC);
            let mut ctx = UserContext::default();
            ctx.regs.rip = 0x40_0000;
            let n = 100_000;
            hal.run(&mut ctx, &mut sp);
            let t = now();
            for _ in 0..n {
                assert_eq!(hal.run(&mut ctx, &mut sp), Trap::Syscall);
            }
            let skas = (now() - t) as f64 / n as f64;
            let t = now();
            for _ in 0..n {
                // SAFETY: getpid has no preconditions.
                unsafe { libc::syscall(libc::SYS_getpid) };
            }
            let native = (now() - t) as f64 / n as f64;
            println!(
                "null system call: skas {:.2} us, native {:.3} us, ratio {:.0}x ({:?})",
                skas / 1e3,
                native / 1e3,
                skas / native,
                hal.config()
            );
            drop(sp);
            drop(hal);
            println!("mechanism  placement  null syscall  page fault   (native null syscall {:.3} us)", native / 1e3);
            for trap in [TrapMode::Ptrace, TrapMode::Seccomp] {
                for placement in [Placement::SameCpu, Placement::SplitCpus, Placement::Free] {
                    if trap == TrapMode::Ptrace && placement == Placement::SplitCpus {
                        continue;
                    }
                    let config = SkasConfig { trap, placement };
                    let (sys, pf) = std::thread::spawn(move || measure(config)).join().unwrap();
                    println!("{:<10} {:<10} {:>9.2} us {:>9.2} us", format!("{trap:?}"), format!("{placement:?}"), sys, pf);
                }
            }
        }
    }
}
