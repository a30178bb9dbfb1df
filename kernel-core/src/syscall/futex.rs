//! `futex(2)`: WAIT/WAKE/REQUEUE/CMP_REQUEUE/WAKE_OP and the bitset forms.
//!
//! A waiter is a task blocked on [`WaitOn::Futex`] with a [`FutexKey`]:
//! (memory-map id, user address) for private futexes and private mappings,
//! (`u64::MAX`, physical address) for `MAP_SHARED` memory, so processes
//! sharing a page meet on the same key. Wake-ups are FIFO (by `block_seq`).
//! PI operations are not supported (ENOSYS); robust lists are only stored.

use alloc::vec::Vec;

use hal::{AddressSpace, Hal};
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::kernel::{block, Kernel};
use crate::mm::{page_floor, MemoryMap};
use crate::task::{FutexKey, Pid, TaskState, WaitOn};
use crate::time::{parse_timespec, Clock};
use crate::{Errno, SysResult};

/// The key of the futex word at `addr` in `mm` (map id `mm_id`). `private`:
/// the caller passed `FUTEX_PRIVATE_FLAG`.
pub fn key_for<S: AddressSpace>(mm: &MemoryMap<S>, mm_id: u64, addr: u64, private: bool) -> FutexKey {
    if !private {
        let shared = mm.vmas().any(|v| v.shared && v.start <= addr && addr < v.end);
        if shared {
            let page = page_floor(addr);
            if let Some((_, frame, _, _)) = mm.ptes().find(|(va, _, _, _)| *va == page) {
                return FutexKey(u64::MAX, frame + (addr - page));
            }
        }
    }
    FutexKey(mm_id, addr)
}

/// Waiters on `key` whose bitset matches, oldest first.
fn waiters<S: AddressSpace>(k: &Kernel<S>, key: FutexKey, bitset: u32) -> Vec<Pid> {
    let mut v: Vec<(u64, Pid)> = k
        .procs
        .iter()
        .filter(|t| matches!(t.state, TaskState::Blocked(b) if b.on == WaitOn::Futex(key)) && t.futex_bitset & bitset != 0)
        .map(|t| (t.block_seq, t.pid))
        .collect();
    v.sort_unstable();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Wake up to `n` waiters on `key` (matching `bitset`); returns how many.
pub fn wake_key<S: AddressSpace>(k: &mut Kernel<S>, key: FutexKey, n: u32, bitset: u32) -> usize {
    let list = waiters(k, key, bitset);
    let mut woken = 0;
    for p in list.into_iter().take(n as usize) {
        k.wake(p, Some(Ok(0)));
        woken += 1;
    }
    woken
}

/// Move up to `n` waiters from `from` to `to`; returns how many.
fn requeue<S: AddressSpace>(k: &mut Kernel<S>, from: FutexKey, to: FutexKey, n: u32) -> usize {
    let list = waiters(k, from, u32::MAX);
    let mut moved = 0;
    for p in list.into_iter().take(n as usize) {
        if let Some(t) = k.procs.get_mut(p) {
            if let TaskState::Blocked(mut b) = t.state {
                b.on = WaitOn::Futex(to);
                t.state = TaskState::Blocked(b);
                moved += 1;
            }
        }
    }
    moved
}

fn key<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64, private: bool) -> Result<FutexKey, Errno> {
    let id = cx.t.mm_id;
    let mm = cx.t.mm.as_ref().ok_or(Errno::EFAULT)?;
    Ok(key_for(mm, id, addr, private))
}

/// Apply a FUTEX_WAKE_OP operation; returns the old value.
fn wake_op_apply<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64, encoded: u32) -> Result<(u32, bool), Errno> {
    let op = (encoded >> 28) & 0xf;
    let cmp = (encoded >> 24) & 0xf;
    let sext = |x: u32| ((x << 20) as i32 >> 20) as u32;
    let mut oparg = sext((encoded >> 12) & 0xfff);
    let cmparg = sext(encoded & 0xfff);
    if op & 8 != 0 {
        // FUTEX_OP_OPARG_SHIFT
        if oparg > 31 {
            return Err(Errno::EINVAL);
        }
        oparg = 1u32 << oparg;
    }
    let old = cx.read_u32(addr)?;
    let new = match op & 7 {
        0 => oparg,
        1 => old.wrapping_add(oparg),
        2 => old | oparg,
        3 => old & !oparg,
        4 => old ^ oparg,
        _ => return Err(Errno::ENOSYS),
    };
    cx.write_user(addr, &new.to_le_bytes())?;
    let (o, c) = (old as i32, cmparg as i32);
    let hit = match cmp {
        0 => o == c,
        1 => o != c,
        2 => o < c,
        3 => o <= c,
        4 => o > c,
        5 => o >= c,
        _ => return Err(Errno::ENOSYS),
    };
    Ok((old, hit))
}

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)`.
pub fn futex<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let (uaddr, op, val, timeout, uaddr2, val3) = (a[0], a[1] as u32, a[2] as u32, a[3], a[4], a[5] as u32);
    let private = op & g::FUTEX_PRIVATE_FLAG != 0;
    let realtime = op & g::FUTEX_CLOCK_REALTIME != 0;
    let cmd = op & !(g::FUTEX_PRIVATE_FLAG | g::FUTEX_CLOCK_REALTIME);
    if uaddr % 4 != 0 {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    if realtime && cmd != g::FUTEX_WAIT_BITSET && cmd != g::FUTEX_WAIT {
        return Flow::Ret(Err(Errno::ENOSYS));
    }
    match cmd {
        g::FUTEX_WAIT | g::FUTEX_WAIT_BITSET => wait(cx, uaddr, val, timeout, cmd == g::FUTEX_WAIT_BITSET, realtime, private, if cmd == g::FUTEX_WAIT { u32::MAX } else { val3 }),
        g::FUTEX_WAKE | g::FUTEX_WAKE_BITSET => Flow::Ret((|| -> SysResult {
            let bits = if cmd == g::FUTEX_WAKE { u32::MAX } else { val3 };
            if bits == 0 {
                return Err(Errno::EINVAL);
            }
            let k = key(cx, uaddr, private)?;
            Ok(wake_key(cx.k, k, val, bits))
        })()),
        g::FUTEX_REQUEUE | g::FUTEX_CMP_REQUEUE => Flow::Ret((|| -> SysResult {
            if uaddr2 % 4 != 0 || (val as i32) < 0 || (timeout as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            if cmd == g::FUTEX_CMP_REQUEUE && cx.read_u32(uaddr)? != val3 {
                return Err(Errno::EAGAIN);
            }
            let k1 = key(cx, uaddr, private)?;
            let k2 = key(cx, uaddr2, private)?;
            let woken = wake_key(cx.k, k1, val, u32::MAX);
            let moved = requeue(cx.k, k1, k2, timeout as u32);
            Ok(woken + moved)
        })()),
        g::FUTEX_WAKE_OP => Flow::Ret((|| -> SysResult {
            if uaddr2 % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let (_, hit) = wake_op_apply(cx, uaddr2, val3)?;
            let k1 = key(cx, uaddr, private)?;
            let k2 = key(cx, uaddr2, private)?;
            let mut n = wake_key(cx.k, k1, val, u32::MAX);
            if hit {
                n += wake_key(cx.k, k2, timeout as u32, u32::MAX);
            }
            Ok(n)
        })()),
        _ => {
            cx.log_once("futex-op", "kernel: futex PI operations are not supported (ENOSYS)");
            Flow::Ret(Err(Errno::ENOSYS))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn wait<H: Hal>(cx: &mut SysCtx<'_, H>, uaddr: u64, val: u32, timeout: u64, bitset_op: bool, realtime: bool, private: bool, bits: u32) -> Flow {
    let r = (|| -> Result<(FutexKey, Option<u64>), Errno> {
        if bits == 0 {
            return Err(Errno::EINVAL);
        }
        let deadline = if timeout == 0 {
            None
        } else {
            let ns = parse_timespec(&cx.read_array::<16>(timeout)?)?;
            let now = cx.hal.now_ns();
            Some(if bitset_op {
                // Absolute, on CLOCK_MONOTONIC or (flag) CLOCK_REALTIME.
                let clk_now = if realtime { cx.hal.realtime_ns() } else { now };
                let _ = Clock::Monotonic;
                now.saturating_add(ns.saturating_sub(clk_now))
            } else {
                now.saturating_add(ns)
            })
        };
        let cur = cx.read_u32(uaddr)?;
        if cur != val {
            return Err(Errno::EAGAIN);
        }
        Ok((key(cx, uaddr, private)?, deadline))
    })();
    match r {
        Err(e) => Flow::Ret(Err(e)),
        Ok((k, deadline)) => {
            if deadline.is_some_and(|d| d <= cx.hal.now_ns()) {
                return Flow::Ret(Err(Errno::ETIMEDOUT));
            }
            cx.t.futex_bitset = bits;
            block(WaitOn::Futex(k), deadline, Err(Errno::ETIMEDOUT), false)
        }
    }
}
