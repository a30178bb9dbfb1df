//! AF_UNIX sockets (issue 7): the `conf_unix` conformance program run
//! natively and in the kernel under both backends, compared line for line;
//! and a python3 script using `socket.socketpair`, a filesystem-named
//! server with a client, `send_fds`/`recv_fds` and an abstract datagram
//! name, compared with the same script run natively.
//!
//! Run with `cargo xtask test` (it sets RUSTUML_KERNEL_SKAS, RUSTUML_KERNEL_TT
//! and RUSTUML_ROOT).

mod common;

use common::*;
use std::process::Command;

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
fn conf_unix() {
    let _l = lock();
    compare_on("RUSTUML_KERNEL_SKAS", "conf_unix");
    compare_on("RUSTUML_KERNEL_TT", "conf_unix");
}

const PY: &str = r#"
import socket, os, threading, select
T = os.environ["T"]
a, b = socket.socketpair()
a.sendall(b"ping"); print(b.recv(10))
b.close()
try:
    a.send(b"x")
except BrokenPipeError:
    print("EPIPE")
p = T + "/py.sock"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(p); srv.listen(1)
print(os.path.exists(p), srv.getsockname() == p)
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(100).upper())
    c.close()
th = threading.Thread(target=serve); th.start()
cl = socket.socket(socket.AF_UNIX); cl.connect(p); cl.sendall(b"hello")
print(cl.recv(100), cl.recv(100)); th.join()
x, y = socket.socketpair()
r, w = os.pipe()
socket.send_fds(x, [b"f"], [w]); os.close(w)
msg, fds, flags, addr = socket.recv_fds(y, 10, 4)
os.write(fds[0], b"via fd"); os.close(fds[0]); print(msg, os.read(r, 10), os.read(r, 10))
name = "\0pyabs" + str(os.getpid())
d1 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d1.bind(name)
d2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d2.sendto(b"dg", name)
print(select.select([d1], [], [], 1)[0] == [d1], d1.recvfrom(10)[0])
"#;

/// The python script, natively (scratch directory under the host's temp
/// dir) and in the guest (`/tmp/t`), compared.
fn python_on(var: &str) {
    let root = default_root();
    let tmp = std::env::temp_dir().join(format!("rustuml-unix-py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create temp dir");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PY).env_clear().envs(GUEST_ENV.iter().copied()).env("T", &tmp).current_dir("/");
    let n = run(&mut cmd, "native python3");
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(n.code, 0, "the native python run failed:\n{}\n{}", n.stdout, n.stderr);
    let kernel = kernel_from(var);
    let script = format!("mkdir -p /tmp/t; T=/tmp/t python3 -c '{PY}'");
    let args = ["--root".to_string(), root.to_string_lossy().into_owned(), "--".into(), "/bin/sh".into(), "-c".into(), script];
    let g = run_kernel(&kernel, &args);
    assert_same(&format!("python3 AF_UNIX script under {var}"), &n, &g);
}

#[test]
fn python_unix_sockets() {
    let _l = lock();
    python_on("RUSTUML_KERNEL_SKAS");
    python_on("RUSTUML_KERNEL_TT");
}
