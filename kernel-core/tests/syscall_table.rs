//! The system call table's declared facts: names (from the table's rows for
//! implemented calls, from `syscall/names.rs` for the others) and restart
//! classes.

use kernel_core::syscall::{names, restart_class, Restart};
use linux_raw_sys::general as g;

#[test]
fn every_call_has_one_name() {
    assert_eq!(names::name(g::__NR_read as u64), Some("read"));
    assert_eq!(names::name(g::__NR_clock_nanosleep as u64), Some("clock_nanosleep"));
    // Not implemented: named by names.rs.
    assert_eq!(names::name(g::__NR_acct as u64), Some("acct"));
    assert_eq!(names::name(100_000), None);
    assert_eq!(names::name(u64::MAX), None);
    // No two numbers share a name (a row and names.rs never both name a call).
    let mut seen = std::collections::BTreeMap::new();
    for nr in 0..1024u64 {
        if let Some(n) = names::name(nr) {
            assert!(!n.is_empty() && !n.starts_with("__NR_"), "{nr}: {n}");
            if let Some(other) = seen.insert(n, nr) {
                panic!("{n} names both {other} and {nr}");
            }
        }
    }
    assert!(seen.len() > 350, "only {} names", seen.len());
}

#[test]
fn restart_classes_are_linux_ones() {
    for nr in [g::__NR_pause, g::__NR_rt_sigsuspend, g::__NR_rt_sigtimedwait, g::__NR_nanosleep, g::__NR_clock_nanosleep, g::__NR_poll, g::__NR_ppoll, g::__NR_select, g::__NR_pselect6, g::__NR_epoll_wait, g::__NR_epoll_pwait] {
        assert_eq!(restart_class(nr as u64), Restart::NoHand, "{:?}", names::name(nr as u64));
    }
    assert_eq!(restart_class(g::__NR_wait4 as u64), Restart::Rescan);
    assert_eq!(restart_class(g::__NR_waitid as u64), Restart::Rescan);
    for nr in [g::__NR_read, g::__NR_write, g::__NR_futex, g::__NR_accept] {
        assert_eq!(restart_class(nr as u64), Restart::Sys);
    }
    assert_eq!(restart_class(u64::MAX), Restart::Sys);
}
