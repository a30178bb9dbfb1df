//! Time: clocks and conversions between the guest ABI and nanoseconds,
//! CPU-time accounting ([`account`]) and the processes' timers ([`timers`]).

pub mod account;
pub mod deadlines;
pub mod timers;
pub mod vdso;

use linux_raw_sys::general as g;

use crate::Errno;

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// The latest monotonic deadline a timer is ever armed for (~146 years).
pub const MAX_DEADLINE: u64 = 1 << 62;

/// A `struct timespec` (16 bytes).
pub fn timespec_bytes(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&(ns / NS_PER_SEC).to_le_bytes());
    b[8..16].copy_from_slice(&(ns % NS_PER_SEC).to_le_bytes());
    b
}

/// A `struct timeval` (16 bytes).
pub fn timeval_bytes(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&(ns / NS_PER_SEC).to_le_bytes());
    b[8..16].copy_from_slice(&((ns % NS_PER_SEC) / 1000).to_le_bytes());
    b
}

/// Parse a guest `struct timespec` into ns; `EINVAL` for negative or
/// out-of-range fields. Huge values saturate (a sleep "forever").
pub fn parse_timespec(b: &[u8; 16]) -> Result<u64, Errno> {
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[0..8]);
    let sec = i64::from_le_bytes(s);
    s.copy_from_slice(&b[8..16]);
    let nsec = i64::from_le_bytes(s);
    if sec < 0 || !(0..NS_PER_SEC as i64).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(NS_PER_SEC).saturating_add(nsec as u64))
}

/// Which clock a `clockid_t` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Wall clock.
    Realtime,
    /// Time since boot.
    Monotonic,
    /// CPU time of a process or thread (see [`cpu_clock`]).
    Cpu,
}

/// A CPU-time clock named by a negative clock id (`clock_getcpuclockid`,
/// `pthread_getcpuclockid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuClockId {
    /// The process or thread (0: the caller's).
    pub pid: u32,
    /// A thread's clock rather than a process's.
    pub thread: bool,
    /// Which time: 0 user + system (`CPUCLOCK_PROF`), 1 user
    /// (`CPUCLOCK_VIRT`), 2 user + system (`CPUCLOCK_SCHED`).
    pub which: u32,
}

/// Decode a CPU-clock id (Linux's `MAKE_PROCESS_CPUCLOCK` /
/// `MAKE_THREAD_CPUCLOCK` encoding); `None` for the fixed clock ids.
pub fn cpu_clock(id: u64) -> Option<CpuClockId> {
    let id = id as u32 as i32;
    if id >= 0 || id & 3 == 3 {
        return None;
    }
    Some(CpuClockId { pid: !(id >> 3) as u32, thread: id & 4 != 0, which: (id & 3) as u32 })
}

/// Classify a clock id; `EINVAL` for unknown ones.
pub fn clock(id: u64) -> Result<Clock, Errno> {
    if cpu_clock(id).is_some() {
        return Ok(Clock::Cpu);
    }
    match u32::try_from(id).map_err(|_| Errno::EINVAL)? {
        g::CLOCK_REALTIME | g::CLOCK_REALTIME_COARSE | g::CLOCK_TAI | g::CLOCK_REALTIME_ALARM => Ok(Clock::Realtime),
        g::CLOCK_MONOTONIC | g::CLOCK_MONOTONIC_RAW | g::CLOCK_MONOTONIC_COARSE | g::CLOCK_BOOTTIME
        | g::CLOCK_BOOTTIME_ALARM => Ok(Clock::Monotonic),
        g::CLOCK_PROCESS_CPUTIME_ID | g::CLOCK_THREAD_CPUTIME_ID => Ok(Clock::Cpu),
        _ => Err(Errno::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn timespec_roundtrip_and_bad() {
        let b = timespec_bytes(3 * NS_PER_SEC + 5);
        assert_eq!(parse_timespec(&b), Ok(3 * NS_PER_SEC + 5));
        let mut bad = b;
        bad[8..16].copy_from_slice(&(NS_PER_SEC as i64).to_le_bytes());
        assert_eq!(parse_timespec(&bad), Err(Errno::EINVAL));
        bad[0..8].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(parse_timespec(&bad), Err(Errno::EINVAL));
    }

    #[test]
    fn cpu_clock_ids_decode_as_linux_encodes_them() {
        // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) = (~pid << 3) | 2
        let make = |pid: i32, thread: bool, which: i32| ((!pid << 3) | which | if thread { 4 } else { 0 }) as u32 as u64;
        assert_eq!(cpu_clock(make(42, false, 2)), Some(CpuClockId { pid: 42, thread: false, which: 2 }));
        assert_eq!(cpu_clock(make(7, true, 1)), Some(CpuClockId { pid: 7, thread: true, which: 1 }));
        assert_eq!(cpu_clock(make(7, true, 3)), None);
        assert_eq!(cpu_clock(1), None);
        assert_eq!(clock(make(0, false, 2)), Ok(Clock::Cpu));
    }
}
