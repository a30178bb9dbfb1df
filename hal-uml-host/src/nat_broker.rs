//! The user-mode NAT's socket broker as a process of its own.
//!
//! The kernel process confines itself into an empty network namespace, so
//! the NAT (`drivers::net::nat`) asks this process for each host socket a
//! guest flow needs. [`spawn`] starts it before confinement, as the kernel
//! binary itself with `--internal-nat-broker OPTIONS`; [`main`] is that
//! process: it reads the policy from the same `--net user,OPTIONS`, confines
//! itself (limits, an empty root where it runs as root, no capabilities,
//! `no_new_privs`, an allowlist of a score of host calls: see
//! [`crate::sandbox`]), and answers requests until the kernel goes away.
//! A kernel an attacker took over can then reach only what the policy names.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{exit, Command, Stdio};

/// The hidden first argument that makes the kernel binary a broker.
pub const ARG: &str = "--internal-nat-broker";
/// The descriptor the broker finds its channel on.
const CHANNEL_FD: i32 = 3;

/// Start a broker for the NAT options `opts`; its end of the channel is
/// returned. It dies with this process (`PR_SET_PDEATHSIG`) and ends when
/// the channel closes.
pub fn spawn(opts: &str) -> std::io::Result<OwnedFd> {
    let (ours, theirs) = drivers::net::nat::broker::channel()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(ARG).arg(opts).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, prctl) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, CHANNEL_FD) < 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()?;
    drop(theirs);
    Ok(ours)
}

/// The broker process: never returns.
pub fn main(name: &str, opts: &str) -> ! {
    let fail = |msg: String| -> ! {
        eprintln!("{name} nat broker: {msg}");
        exit(2)
    };
    // SAFETY: fstat into a zeroed struct.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(CHANNEL_FD, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    if !is_socket {
        fail("started without its channel (this option is internal)".into());
    }
    // SAFETY: fd 3 is the channel set up by `spawn`, owned by nothing else here.
    let chan = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    let mut cfg = drivers::net::nat::NatConfig::parse(opts).unwrap_or_else(|e| fail(e.to_string()));
    // Read before the root goes away.
    cfg.dns_server = Some(drivers::net::nat::broker::dns_target(&cfg));
    let mode = crate::sandbox::Mode::from_env().unwrap_or_else(|e| fail(e));
    let needs = crate::sandbox::Needs { procs: 0, fds: 16, host_network: true };
    let broker_name = format!("{name} nat broker");
    match crate::sandbox::confine(&broker_name, crate::sandbox::Backend::NatBroker, mode, needs) {
        // What the host does not allow is the kernel's to report: it
        // confines itself the same way and says so.
        Ok(_) => {}
        Err(e) => fail(format!("cannot confine: {e}")),
    }
    match drivers::net::nat::broker::serve(chan, &cfg) {
        Ok(()) => exit(0),
        Err(e) => fail(e.to_string()),
    }
}
