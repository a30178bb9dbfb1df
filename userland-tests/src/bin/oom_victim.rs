//! The OOM killer picks the process holding the most memory, not the one
//! that happened to fault: `oom_victim MIB` forks a child that fills MIB
//! MiB and sleeps, then the parent (smaller) allocates MIB more. Run under
//! a guest memory a little above MIB (`--mem`), the parent's allocation
//! cannot fit beside the child: the child must die of SIGKILL and the
//! parent get its memory, as on Linux.
//!
//! Prints `child: killed by signal 9` and `parent: got MIB MiB`.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, describe_status, exit_now, fork, mmap_anon, say, wait_for, PAGE};

/// Map `mib` MiB and write every page.
fn fill(mib: usize) -> bool {
    let len = mib << 20;
    let Ok(p) = mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) else { return false };
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside the mapping just made.
        unsafe { p.add(off).write_volatile(1) };
    }
    true
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let Some(mib) = args.get(1).and_then(|s| s.parse::<usize>().ok()) else {
        say!("usage: oom_victim MIB");
        return 2;
    };
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return 2;
    }
    let child = fork();
    if child == 0 {
        let ok = fill(mib);
        // SAFETY: a one-byte write to our pipe.
        unsafe { libc::write(fds[1], [ok as u8].as_ptr().cast(), 1) };
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    }
    let mut b = [0u8];
    // SAFETY: a one-byte read from our pipe.
    if unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) } != 1 || b[0] != 1 {
        say!("child: could not fill {mib} MiB");
        exit_now(1);
    }
    let got = fill(mib);
    let st = wait_for(child).map(|(_, s)| describe_status(s)).unwrap_or_else(|_| "lost".into());
    say!("child: {st}");
    if got {
        say!("parent: got {mib} MiB");
    }
    0
}
