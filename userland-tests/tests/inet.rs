//! AF_INET sockets over the guest's loopback (kernel-core's smoltcp stack):
//! `conf_inet` runs natively and in the kernel under both backends and the
//! runs are compared line for line; `ip`/`ifconfig`/`ping` from busybox
//! list and use the guest's interfaces.
//!
//! Run with `cargo xtask test` (it sets RUSTUML_KERNEL_SKAS, RUSTUML_KERNEL_TT
//! and RUSTUML_ROOT).

mod common;

use common::*;

/// Runs `/tests/<prog>` natively and under the backend whose kernel binary
/// `var` names, and compares the runs.
fn compare_on(var: &str, prog: &str) {
    let kernel = kernel_from(var);
    let root = default_root();
    let n = native(&root, prog, &[]);
    assert_eq!(n.code, 0, "the native run of {prog} failed:\n{}\n{}", n.stdout, n.stderr);
    let args = ["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), format!("/tests/{prog}")];
    let g = run_kernel(&kernel, &args);
    assert_same(&format!("{prog} under {var}"), &n, &g);
}

#[test]
fn conf_inet_skas() {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_SKAS", "conf_inet");
}

#[test]
fn conf_inet_tt() {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_TT", "conf_inet");
}

/// The guest's own network tools over its loopback: busybox `ifconfig`,
/// `ip` (netlink), `ping` (raw ICMP), `httpd` + `wget`, `nc`, and Python
/// over IPv6 `::1`. Guest-only: the output is the guest's own interfaces.
const NET_SCRIPT: &str = r#"
busybox ifconfig lo 2>/dev/null | busybox head -3
busybox ip -4 addr show dev lo
busybox ip link show lo | busybox head -1
busybox ip route
busybox ping -c2 127.0.0.1 | busybox grep -c 'bytes from 127.0.0.1'
mkdir -p /tmp/www; echo served > /tmp/www/index.html
busybox httpd -p 127.0.0.1:8080 -h /tmp/www && busybox wget -q -O - http://127.0.0.1:8080/
(echo to-client | busybox nc -l -p 9000 > /tmp/nc.out &)
busybox sleep 0.3; echo to-server | busybox nc 127.0.0.1 9000; busybox sleep 0.3; cat /tmp/nc.out
python3 -c "
import socket
l = socket.socket(socket.AF_INET6); l.bind(('::1', 0)); l.listen(1)
c = socket.create_connection(('::1', l.getsockname()[1])); s, a = l.accept()
c.sendall(b'v6 works'); print(s.recv(64).decode(), a[0])
l6 = socket.socket(socket.AF_INET6); l6.bind(('::', 0)); l6.listen(1)
c = socket.create_connection(('127.0.0.1', l6.getsockname()[1])); s, a = l6.accept(); print('v4 client of a v6 listener:', a[0])
"
python3 -c "
import http.server, threading, urllib.request, os
os.chdir('/tmp/www')
srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
for i in range(2):
    print(urllib.request.urlopen('http://127.0.0.1:%d/index.html' % srv.server_address[1]).read().decode().strip())
srv.shutdown()
" 2>/dev/null
"#;

const NET_EXPECTED: &str = "\
lo        Link encap:Local Loopback  
          inet addr:127.0.0.1  Mask:255.0.0.0
          UP LOOPBACK RUNNING  MTU:65536  Metric:1
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000
    inet 127.0.0.1/8 scope host lo
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000
2
served
to-client
to-server
v6 works ::1
v4 client of a v6 listener: ::ffff:127.0.0.1
served
served
";

fn busybox_net(var: &str) {
    let _l = lock();
    let kernel = kernel_from(var);
    let root = default_root();
    let has = |p: &str| root.join(p).exists();
    if !(has("bin/busybox") || has("usr/bin/busybox")) || !(has("usr/bin/python3") || has("bin/python3")) {
        eprintln!("skipped: the default root has no busybox or python3 (xtask copies them from the host)");
        return;
    }
    let args = ["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), "/bin/sh".into(), "-c".into(), NET_SCRIPT.into()];
    let g = run_kernel(&kernel, &args);
    assert_eq!(g.stdout, NET_EXPECTED, "under {var}; stderr:\n{}", g.stderr);
    assert_eq!(g.code, 0, "under {var}");
}

#[test]
fn busybox_and_python_networking_skas() {
    busybox_net("RUSTUML_KERNEL_SKAS");
}

#[test]
fn busybox_and_python_networking_tt() {
    busybox_net("RUSTUML_KERNEL_TT");
}
