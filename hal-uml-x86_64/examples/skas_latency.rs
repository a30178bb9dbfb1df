//! Measures the skas trap path: time from process start to the first guest
//! instruction, and the null system call round trip, each next to native.
//!
//! `cargo run --release -p hal-uml-x86_64 --no-default-features --example skas_latency`

use hal::{AddressSpace, Hal, PhysMem, Prot, Trap, UserContext};
use hal_uml_x86_64::{timer::clock_ns, SkasHal};
use std::process::Command;

// `1: mov $39, %eax; syscall; jmp 1b`
const NULL_LOOP: [u8; 9] = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];

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
                "null system call: skas {:.2} us, native {:.3} us, ratio {:.0}x",
                skas / 1e3,
                native / 1e3,
                skas / native
            );
        }
    }
}
