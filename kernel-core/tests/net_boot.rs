//! The network stack inside a booted (mock) kernel: an interface attached
//! at boot through `Devices.nets`, a guest blocked in `recvfrom` woken by a
//! frame arriving on the link (the NET interrupt), and its reply sent out.

mod common;

use common::*;
use hal::mock::MockNet;
use kernel_core::kernel::{boot_with, Devices, NetAttach};
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

const B1: u64 = 0x40_0000;
const KERNEL_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn csum(d: &[u8]) -> u16 {
    let mut s: u32 = d.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An Ethernet frame carrying a UDP datagram from 10.0.0.2:5555 to 10.0.0.1:9.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&KERNEL_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = 8 + payload.len();
    f.extend_from_slice(&[0x15, 0xb3, 0, 9, (ulen >> 8) as u8, ulen as u8, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn guest_blocked_in_recvfrom_is_woken_by_a_frame_from_the_link() {
    let (kernel_end, wire) = MockNet::pair(KERNEL_MAC, PEER_MAC);
    let s = B1 + SCRATCH_OFF;
    let (addr, buf, from, fromlen) = (s, s + 0x40, s + 0x100, s + 0x140);
    let mut sin = vec![0u8; 16];
    sin[..2].copy_from_slice(&(n::AF_INET as u16).to_le_bytes());
    sin[2..4].copy_from_slice(&9u16.to_be_bytes());
    let injector = kernel_end.clone();
    let frame = udp_frame(b"hello");
    let insns = vec![
        sys(g::__NR_socket, &[n::AF_INET as u64, n::SOCK_DGRAM as u64, 0]),
        ret_is("socket", 3),
        store(move |_| addr, sin),
        sys(g::__NR_bind, &[3, addr, 16]),
        ret_is("bind 0.0.0.0:9", 0),
        // A datagram arrives on the wire while nothing runs the stack.
        exec_op(move |_| injector.inject(&frame)),
        store(move |_| fromlen, 16u32.to_le_bytes().to_vec()),
        sys(g::__NR_recvfrom, &[3, buf, 100, 0, from, fromlen]),
        ret_is("recvfrom: the datagram", 5),
        check_mem("payload", move |_| buf, 5, |_, m| m == b"hello"),
        check_mem("sender", move |_| from, 8, |_, m| m[2..4] == 5555u16.to_be_bytes() && m[4..8] == [10, 0, 0, 2]),
        // Answer it: the kernel must resolve the peer (ARP) and send.
        sys(g::__NR_sendto, &[3, buf, 5, 0, from, 16]),
        ret_is("sendto", 5),
        sys(g::__NR_exit_group, &[0]),
    ];
    let p = Program { base: B1, insns };
    let (mut hal, _) = machine(vec![p]);
    hal.nets.push(kernel_end.clone());
    let cfg = config("/bin/t", &["t"], &[("bin", DIR, vec![]), ("bin/t", REG, elf(B1, b""))]);
    let devices = Devices {
        nets: vec![NetAttach { name: "eth0".into(), device: Box::new(kernel_end), ipv4: Some(([10, 0, 0, 1], 24)), gateway: None }],
        ..Devices::default()
    };
    let st = boot_with(&mut hal, cfg, devices).expect("boot");
    assert_eq!(st, 0, "log: {:?}", hal.log);
    // What the kernel put on the wire: an ARP request for 10.0.0.2 (broadcast).
    let sent: Vec<Vec<u8>> = wire.rx.borrow().iter().cloned().collect();
    assert!(
        sent.iter().any(|f| f.len() >= 42 && f[..6] == [0xff; 6] && f[12..14] == [0x08, 0x06] && f[38..42] == [10, 0, 0, 2]),
        "no ARP request for the peer among {} frames",
        sent.len()
    );
}
