//! An idle NAT sleeps: its thread uses no CPU while nothing moves, even with
//! listeners open and a forwarded connection waiting on an absent guest.
//! (A file of its own so no other test's NAT thread runs in the process.)

use std::net::TcpStream;
use std::time::Duration;

use drivers::net::nat::{NatConfig, UserNat};

/// User + system clock ticks of the NAT threads of this process.
fn nat_thread_ticks() -> u64 {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim() != "net-user-nat" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the ")" closing the name: utime and stime are the 12th and 13th.
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    ticks
}

#[test]
fn idle_nat_uses_no_cpu() {
    let nat =
        UserNat::new(NatConfig::parse("hostfwd=tcp::0-:80,hostfwd=udp::0-:53").unwrap()).unwrap();
    let _pending = TcpStream::connect(nat.hostfwd_addrs()[0].1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = nat_thread_ticks();
    std::thread::sleep(Duration::from_millis(800));
    let used = nat_thread_ticks() - before;
    // A spinning thread would use ~80 ticks (10 ms each) here.
    assert!(used <= 3, "NAT thread used {used} ticks while idle");
}
