//! The kernel process's confinement, attacked from inside: a child process
//! set up like the kernel (the stubs' zygote started, then
//! `sandbox::confine`) plays a kernel an attacker took over and tries what
//! the attacker would (`sandbox::selftest`): run a shell, open a host file
//! by path, reach the host's loopback, trace or write its parent, mount,
//! make netlink sockets or a user namespace, make its heap executable.
//! Every attempt must fail — under tt too, but for making memory
//! executable, which tt does by design (guest code runs in its own address
//! space). Prints `attack compromised_NAME [skas|tt] result=...` lines
//! (`cargo xtask isolation` reads them); exits 1 if one got through.
//! Runs without the test harness: confinement applies to the whole process,
//! so it must be a single-threaded one of its own.

use hal_uml_host::sandbox::{self, Backend, Mode, Needs};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

fn main() {
    let mut failed = false;
    for backend in [Backend::Skas, Backend::Tt] {
        let tag = if backend == Backend::Skas { "skas" } else { "tt" };
        let out = confined_child(backend);
        print!("{}", out.replace(" result=", &format!(" [{tag}] result=")));
        let attacks: Vec<&str> = out.lines().filter(|l| l.starts_with("attack ")).collect();
        let through: Vec<&&str> = attacks
            .iter()
            .filter(|l| !l.contains("result=blocked"))
            .filter(|l| !(backend == Backend::Tt && l.starts_with("attack compromised_exec_heap ")))
            .collect();
        if attacks.len() != 9 || !through.is_empty() {
            eprintln!("{tag}: {} attacks reported, got through: {through:?}", attacks.len());
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
    println!("every attack of a compromised kernel was blocked (tt: but executable memory, by design)");
}

/// The report of a child confined as `backend`'s kernel that then attacks.
fn confined_child(backend: Backend) -> String {
    let mut fds = [0; 2];
    // SAFETY: a valid two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: single-threaded here; the child confines itself and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing the read end we do not use; the write end is ours.
        let mut w = unsafe {
            libc::close(fds[0]);
            std::fs::File::from_raw_fd(fds[1])
        };
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let zygote = backend == Backend::Tt || hal_uml_x86_64::spawn::prepare_confinement(me);
        let needs = Needs { procs: 4096, fds: 4096, host_network: false };
        let report = match sandbox::confine("sandbox-test", backend, Mode::Enforce, needs) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(w, "confine failed: {e}");
                std::process::exit(2);
            }
        };
        let mut text = String::new();
        for s in &report.skipped {
            text.push_str(&format!("note {s}\n"));
        }
        if !zygote {
            text.push_str("note no stub zygote here\n");
        }
        for (name, blocked, detail) in sandbox::selftest() {
            let r = if blocked { "blocked" } else { "succeeded" };
            text.push_str(&format!("attack compromised_{name} result={r} detail={detail}\n"));
        }
        let _ = w.write_all(text.as_bytes());
        std::process::exit(0);
    }
    // SAFETY: closing the write end we do not use; the read end is ours.
    let mut r = unsafe {
        libc::close(fds[1]);
        std::fs::File::from_raw_fd(fds[0])
    };
    let mut out = String::new();
    r.read_to_string(&mut out).expect("read the child's report");
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
        out.push_str(&format!("note the confined child ended with status {st:#x}\n"));
    }
    out
}
