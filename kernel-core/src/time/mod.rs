//! Clocks and time conversions between the guest ABI and nanoseconds.

use linux_raw_sys::general as g;

use crate::Errno;

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

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
    /// CPU time: approximated by monotonic time (no per-task accounting yet).
    Cpu,
}

/// Classify a clock id; `EINVAL` for unknown ones.
pub fn clock(id: u64) -> Result<Clock, Errno> {
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
}
