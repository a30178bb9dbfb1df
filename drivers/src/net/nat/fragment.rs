//! IPv4 fragments between the guest and the NAT: the guest's stack splits a
//! UDP datagram larger than the link's MTU (up to 65,507 bytes of payload)
//! into fragments, which are put back together here before the datagram
//! goes out of a host socket; a datagram from the host too large for one
//! frame goes to the guest in fragments, which its stack reassembles.
//!
//! The state a guest can make the NAT keep is bounded: at most
//! [`MAX_PARTIALS`] datagrams in reassembly, each at most one maximal IPv4
//! payload, dropped [`TIMEOUT`] after their first fragment (as Linux's
//! `ipfrag_time`) or when a newer one needs the room.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Datagrams in reassembly at once.
pub(crate) const MAX_PARTIALS: usize = 8;
/// How long the fragments of one datagram are kept waiting for the rest.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest IPv4 payload (65,535 minus the 20-byte header).
const MAX_PAYLOAD: usize = 65_515;
/// Payload bytes of one fragment on a 1,500-byte link (a multiple of 8).
pub(crate) const FRAGMENT: usize = 1_480;

/// (source, destination, identification, protocol) of a datagram.
type Id = (Ipv4Addr, Ipv4Addr, u16, u8);

struct Partial {
    data: Vec<u8>,
    /// Byte ranges received, unsorted.
    have: Vec<(usize, usize)>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    started: Instant,
}

impl Partial {
    fn complete(&mut self) -> bool {
        let Some(total) = self.total else { return false };
        self.have.sort_unstable();
        let mut covered = 0;
        for &(start, end) in &self.have {
            if start > covered {
                return false;
            }
            covered = covered.max(end);
        }
        covered >= total
    }
}

/// Why a fragment was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Past the largest IPv4 datagram, or a middle fragment whose length is
    /// not a multiple of 8.
    Malformed,
    /// Too many datagrams in reassembly: the oldest was given up for it.
    Evicted,
}

/// Datagrams the guest sent in fragments, being put back together.
#[derive(Default)]
pub(crate) struct Reassembly {
    partials: HashMap<Id, Partial>,
}

impl Reassembly {
    /// Takes one fragment (`offset` in bytes); the whole payload once the
    /// datagram is complete.
    pub(crate) fn add(&mut self, id: Id, offset: usize, more: bool, data: &[u8], now: Instant) -> Result<Option<Vec<u8>>, Refused> {
        self.partials.retain(|_, p| now.duration_since(p.started) < TIMEOUT);
        let end = offset + data.len();
        if end > MAX_PAYLOAD || (more && data.len() % 8 != 0) {
            self.partials.remove(&id);
            return Err(Refused::Malformed);
        }
        let mut evicted = false;
        if !self.partials.contains_key(&id) && self.partials.len() >= MAX_PARTIALS {
            if let Some(oldest) = self.partials.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| *k) {
                self.partials.remove(&oldest);
                evicted = true;
            }
        }
        let p = self.partials.entry(id).or_insert_with(|| Partial { data: Vec::new(), have: Vec::new(), total: None, started: now });
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data[offset..end].copy_from_slice(data);
        p.have.push((offset, end));
        if !more {
            p.total = Some(end);
        }
        if p.complete() {
            let total = p.total.unwrap_or(0);
            let mut data = core::mem::take(&mut p.data);
            self.partials.remove(&id);
            data.truncate(total);
            return Ok(Some(data));
        }
        if evicted {
            return Err(Refused::Evicted);
        }
        Ok(None)
    }

    /// Datagrams in reassembly.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.partials.len()
    }
}

/// Identification of the next fragmented datagram towards the guest.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(1);

/// `payload` (a transport header and its data) as IP payloads of frames no
/// larger than the link allows: (identification, offset in bytes, more
/// fragments, piece). One piece, offset 0, when it fits a frame.
pub(crate) fn split(payload: &[u8]) -> Vec<(u16, usize, bool, &[u8])> {
    if payload.len() <= FRAGMENT {
        return vec![(0, 0, false, payload)];
    }
    let ident = NEXT_IDENT.fetch_add(1, Ordering::Relaxed);
    let n = payload.len().div_ceil(FRAGMENT);
    payload.chunks(FRAGMENT).enumerate().map(|(i, c)| (ident, i * FRAGMENT, i + 1 < n, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    #[test]
    fn split_and_reassemble_in_any_order() {
        let data: Vec<u8> = (0..65_507 + 8).map(|i| i as u8).collect();
        let mut pieces = split(&data);
        assert!(pieces.len() > 40);
        assert!(pieces.iter().all(|p| p.3.len() <= FRAGMENT));
        pieces.reverse();
        let mut r = Reassembly::default();
        let now = Instant::now();
        let mut out = None;
        for (ident, off, more, piece) in pieces {
            if let Some(d) = r.add((A, B, ident, 17), off, more, piece, now).unwrap() {
                out = Some(d);
            }
        }
        assert_eq!(out.as_deref(), Some(&data[..]));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn small_payload_is_one_piece() {
        assert_eq!(split(b"hello"), vec![(0, 0, false, &b"hello"[..])]);
    }

    #[test]
    fn bounded_state_and_bad_fragments() {
        let mut r = Reassembly::default();
        let now = Instant::now();
        for id in 0..MAX_PARTIALS as u16 {
            assert_eq!(r.add((A, B, id, 17), 0, true, &[0; 8], now), Ok(None));
        }
        assert_eq!(r.add((A, B, 999, 17), 0, true, &[0; 8], now), Err(Refused::Evicted));
        assert_eq!(r.len(), MAX_PARTIALS);
        // Past 65,535 bytes, or a middle piece not a multiple of 8.
        assert_eq!(r.add((A, B, 1, 17), 65_512, false, &[0; 8], now), Err(Refused::Malformed));
        assert_eq!(r.add((A, B, 2, 17), 8, true, &[0; 7], now), Err(Refused::Malformed));
        // Expired after the timeout.
        assert_eq!(r.add((A, B, 3000, 17), 0, true, &[0; 8], now + TIMEOUT), Ok(None));
        assert_eq!(r.len(), 1);
    }
}
