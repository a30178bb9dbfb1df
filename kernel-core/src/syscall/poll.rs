//! Readiness glue between files and the scheduler: reads and writes of
//! special files, blocking on a [`WaitSet`], the open hook of special inodes,
//! and `poll`, `ppoll`, `select`, `pselect6`.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hal::{ConsoleStream, Hal};
use linux_raw_sys::general as g;

use super::{Flow, SysCtx};
use crate::fs::{Device, FileRef, InodeRef, Kind, OpenFile};
use crate::kernel::block;
use crate::task::{Task, WaitOn};
use crate::time::{parse_timespec, timespec_bytes, timeval_bytes};
use crate::wait::{IoCtx, Opened, SpecialRef, WaitSet, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLPRI, POLLRDNORM, POLLWRNORM};
use crate::{Errno, SysResult};

/// Largest transfer through a special file per call (bounded kernel buffer).
const CHUNK: usize = 1 << 16;

/// Signals `t` blocks or ignores (bit `sig - 1`).
fn ignored_mask<S: hal::AddressSpace>(t: &Task<S>) -> u64 {
    let mut m = t.signals.mask;
    for (i, a) in t.signals.actions.iter().enumerate() {
        if a.handler == crate::task::signal::SIG_IGN {
            m |= 1u64 << i;
        }
    }
    m
}

/// Run `f` with an I/O context for the calling task; signals it raises are
/// queued for the kernel to send once the call is done.
pub fn with_io<H: Hal, R>(cx: &mut SysCtx<'_, H>, f: impl FnOnce(&mut IoCtx<'_>) -> R) -> R {
    let now = cx.hal.now_ns();
    let realtime = cx.hal.realtime_ns();
    let sig_ignored = ignored_mask(cx.t);
    let (pid, pgid, sid) = (cx.t.tgid, cx.t.pgid, cx.t.sid);
    let mut io = IoCtx { now, realtime, console: cx.hal.console(), pid, pgid, sid, sig_ignored, signals: Vec::new(), nonblock: false };
    let r = f(&mut io);
    let sigs = io.signals;
    cx.k.group_signals.extend(sigs);
    r
}

/// The special object behind `f`, if any (console device nodes count as the console tty).
pub fn special_of<H: Hal>(cx: &SysCtx<'_, H>, f: &FileRef) -> Option<SpecialRef> {
    match &f.inode.kind {
        Kind::Special(s) => Some(s.clone()),
        Kind::Device(Device::Console) => Some(cx.k.ttys.console_file(ConsoleStream::Stdout)),
        Kind::Device(Device::ConsoleErr) => Some(cx.k.ttys.console_file(ConsoleStream::Stderr)),
        _ => None,
    }
}

/// Readiness of `f` (all `POLL*` bits); with `ws`, register what changes it.
pub fn file_poll<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, ws: Option<&mut WaitSet>) -> u32 {
    match special_of(cx, f) {
        Some(s) => {
            let rw = (f.readable(), f.writable());
            with_io(cx, |io| s.poll(io, rw, ws))
        }
        // Regular files and simple devices never block.
        None => POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM,
    }
}

/// Read from a special file into user `buf`. `Ok(None)`: would block.
pub fn special_read<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef, s: &SpecialRef, buf: u64, count: u64) -> Result<Option<usize>, Errno> {
    let mut tmp = vec![0u8; (count as usize).min(CHUNK)];
    let nonblock = f.flags.get() & g::O_NONBLOCK != 0;
    match with_io(cx, |io| {
        io.nonblock = nonblock;
        s.read(io, &mut tmp)
    }) {
        Ok(n) => {
            cx.write_user(buf, &tmp[..n])?;
            Ok(Some(n))
        }
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write user `buf` to a special file. `Ok(None)`: would block. `EPIPE`
/// raises `SIGPIPE` for the caller.
pub fn special_write<H: Hal>(cx: &mut SysCtx<'_, H>, s: &SpecialRef, buf: u64, count: u64) -> Result<Option<usize>, Errno> {
    let mut tmp = vec![0u8; (count as usize).min(CHUNK)];
    cx.read_user(buf, &mut tmp)?;
    match with_io(cx, |io| s.write(io, &tmp)) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(Errno::EPIPE) => {
            if crate::kernel::decide_signal(cx.t, g::SIGPIPE) {
                cx.t.kill_pending = Some(g::SIGPIPE);
            }
            Err(Errno::EPIPE)
        }
        Err(e) => Err(e),
    }
}

/// Block the caller until something in `ws` changes (the call is then
/// re-run). `timeout` is the call's own deadline: it is kept across re-runs.
pub fn block_on<H: Hal>(cx: &mut SysCtx<'_, H>, mut ws: WaitSet, timeout: Option<u64>) -> Flow {
    // A huge timeout is "forever": keep it far from u64::MAX so clock arithmetic never overflows.
    let timeout = timeout.map(|t| t.min(crate::time::MAX_DEADLINE));
    if let Some(t) = timeout {
        ws.wake_at(t);
    }
    ws.timeout = timeout;
    let on = if ws.external { WaitOn::Console } else { WaitOn::Pipe };
    if ws.is_empty() {
        // Nothing can ever make it ready: sleep until a signal.
        return block(WaitOn::Nothing, None, Ok(0), true);
    }
    cx.k.procs.set_wait(cx.t.pid, ws);
    block(on, None, Ok(0), true)
}

/// A read or write on `f` would block: `EAGAIN` for `O_NONBLOCK`, else wait.
pub fn block_on_file<H: Hal>(cx: &mut SysCtx<'_, H>, f: &FileRef) -> Flow {
    if f.flags.get() & g::O_NONBLOCK != 0 {
        return Flow::Ret(Err(Errno::EAGAIN));
    }
    let mut ws = WaitSet::default();
    file_poll(cx, f, Some(&mut ws));
    block_on(cx, ws, None)
}

/// The open hook for special inodes (FIFOs wait for their peer, `/dev/ptmx`
/// makes a new pty, `/dev/tty` is the controlling terminal, a tty may become
/// the caller's controlling terminal). Returns the inode to open. A FIFO that
/// must wait returns `EAGAIN` after recording the wait; the dispatcher turns
/// that into blocking (the open is re-run when the peer arrives).
pub fn special_open<H: Hal>(cx: &mut SysCtx<'_, H>, inode: InodeRef, flags: u32) -> Result<InodeRef, Errno> {
    let s = match &inode.kind {
        Kind::Special(s) => s.clone(),
        _ => return Ok(inode),
    };
    match with_io(cx, |io| s.open(io, flags))? {
        Opened::Same => Ok(inode),
        Opened::Other(obj) => {
            let now = cx.hal.realtime_ns();
            let node = cx.k.fs.anon_inode(Kind::Special(obj), 0o620, now)?;
            cx.k.ttys.install_pending(&mut cx.k.fs, now);
            Ok(node)
        }
        Opened::Wait(q) => {
            let mut ws = WaitSet::default();
            ws.add(&q);
            cx.k.block_request = Some(ws);
            Err(Errno::EAGAIN)
        }
    }
}

/// Open `obj` as a new anonymous file description at the lowest free fd.
pub fn install_special<H: Hal>(cx: &mut SysCtx<'_, H>, obj: SpecialRef, flags: u32, name: &str) -> SysResult {
    let now = cx.hal.realtime_ns();
    let inode = cx.k.fs.anon_inode(Kind::Special(obj), 0o600, now)?;
    let f = OpenFile::new(inode, flags & (g::O_ACCMODE | g::O_NONBLOCK), String::from(name));
    let limit = cx.t.fd_limit();
    cx.t.fds.alloc_from(0, f, flags & g::O_CLOEXEC != 0, limit)
}

// ------------------------------------------------------------------- poll

/// A call's deadline: the one kept from before a re-run, else now + `timeout`.
fn deadline<H: Hal>(cx: &mut SysCtx<'_, H>, timeout_ns: Option<u64>) -> Option<u64> {
    let now = cx.hal.now_ns();
    cx.t.restart_deadline.or(timeout_ns.map(|t| now.saturating_add(t)))
}

fn do_poll<H: Hal>(cx: &mut SysCtx<'_, H>, fds: u64, nfds: u64, timeout_ns: Option<u64>, ts_out: Option<u64>) -> Flow {
    let limit = cx.t.fd_limit() as u64;
    if nfds > limit {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    if let Err(e) = cx.read_user(fds, &mut raw) {
        return Flow::Ret(Err(e));
    }
    let dl = deadline(cx, timeout_ns);
    let now = cx.hal.now_ns();
    let expired = timeout_ns == Some(0) || dl.is_some_and(|d| d <= now);
    let mut ws = WaitSet::default();
    let mut ready = 0usize;
    for e in raw.chunks_exact_mut(8) {
        let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let events = u16::from_le_bytes([e[4], e[5]]) as u32;
        let mut rev = 0u32;
        if fd >= 0 {
            match cx.t.fds.file(fd as u64) {
                Err(_) => rev = g::POLLNVAL,
                Ok(f) => {
                    let w = if expired { None } else { Some(&mut ws) };
                    rev = file_poll(cx, &f, w) & (events | POLLERR | POLLHUP);
                }
            }
        }
        e[6..8].copy_from_slice(&(rev as u16).to_le_bytes());
        if rev != 0 {
            ready += 1;
        }
    }
    if ready == 0 && !expired {
        return block_on(cx, ws, dl);
    }
    if let Err(e) = cx.write_user(fds, &raw) {
        return Flow::Ret(Err(e));
    }
    if let (Some(addr), Some(d)) = (ts_out, dl) {
        let left = d.saturating_sub(cx.hal.now_ns());
        let _ = cx.write_user(addr, &timespec_bytes(left));
    }
    Flow::Ret(Ok(ready))
}

/// `poll(fds, nfds, timeout_ms)`.
pub fn poll<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let ms = a[2] as i32;
    let t = if ms < 0 { None } else { Some(ms as u64 * 1_000_000) };
    do_poll(cx, a[0], a[1], t, None)
}

fn read_timespec<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    cx.read_array::<16>(addr).and_then(|b| parse_timespec(&b)).map(Some)
}

/// Apply a call's temporary signal mask (`ppoll`, `pselect6`): the mask is
/// in force while the call waits, restored when it returns.
fn temp_sigmask<H: Hal>(cx: &mut SysCtx<'_, H>, addr: u64, size: u64) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let m = cx.read_u64(addr)?;
    // Restored by the signal code when the call returns (as for rt_sigsuspend).
    if cx.t.saved_mask.is_none() {
        cx.t.saved_mask = Some(cx.t.signals.mask);
    }
    cx.t.signals.mask = m & !crate::task::signal::UNBLOCKABLE;
    Ok(())
}

/// `ppoll(fds, nfds, timeout_ts, sigmask, sigsetsize)`.
pub fn ppoll<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let t = match read_timespec(cx, a[2]) {
        Ok(t) => t,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if let Err(e) = temp_sigmask(cx, a[3], a[4]) {
        return Flow::Ret(Err(e));
    }
    do_poll(cx, a[0], a[1], t, (a[2] != 0).then_some(a[2]))
}

// ----------------------------------------------------------------- select

/// `select`'s core. `tv`: (address, is a timeval) of the timeout to update.
fn do_select<H: Hal>(cx: &mut SysCtx<'_, H>, nfds: u64, sets: [u64; 3], timeout_ns: Option<u64>, tv: Option<(u64, bool)>) -> Flow {
    let nfds = nfds as i32;
    if nfds < 0 || nfds as usize > cx.t.fd_limit().max(1024) {
        return Flow::Ret(Err(Errno::EINVAL));
    }
    let n = nfds as usize;
    let words = n.div_ceil(64);
    let mut input: [Vec<u64>; 3] = [vec![0; words], vec![0; words], vec![0; words]];
    for (i, &addr) in sets.iter().enumerate() {
        if addr != 0 {
            let mut raw = vec![0u8; words * 8];
            if let Err(e) = cx.read_user(addr, &mut raw) {
                return Flow::Ret(Err(e));
            }
            for (w, c) in input[i].iter_mut().zip(raw.chunks_exact(8)) {
                *w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            }
        }
    }
    let dl = deadline(cx, timeout_ns);
    let now = cx.hal.now_ns();
    let expired = timeout_ns == Some(0) || dl.is_some_and(|d| d <= now);
    let mut out: [Vec<u64>; 3] = [vec![0; words], vec![0; words], vec![0; words]];
    let mut ws = WaitSet::default();
    let mut count = 0usize;
    for fd in 0..n {
        let (w, b) = (fd / 64, 1u64 << (fd % 64));
        let want = [input[0][w] & b != 0, input[1][w] & b != 0, input[2][w] & b != 0];
        if !want.iter().any(|x| *x) {
            continue;
        }
        let f = match cx.t.fds.file(fd as u64) {
            Ok(f) => f,
            Err(e) => return Flow::Ret(Err(e)),
        };
        let rev = file_poll(cx, &f, if expired { None } else { Some(&mut ws) });
        let got = [
            rev & (POLLIN | POLLRDNORM | POLLHUP | POLLERR) != 0,
            rev & (POLLOUT | POLLWRNORM | POLLERR) != 0,
            rev & POLLPRI != 0,
        ];
        for i in 0..3 {
            if want[i] && got[i] {
                out[i][w] |= b;
                count += 1;
            }
        }
    }
    if count == 0 && !expired {
        return block_on(cx, ws, dl);
    }
    for (i, &addr) in sets.iter().enumerate() {
        if addr != 0 {
            let raw: Vec<u8> = out[i].iter().flat_map(|w| w.to_le_bytes()).collect();
            if let Err(e) = cx.write_user(addr, &raw) {
                return Flow::Ret(Err(e));
            }
        }
    }
    // Linux writes the time not slept back into the timeout.
    if let (Some((addr, is_tv)), Some(d)) = (tv, dl) {
        let left = d.saturating_sub(cx.hal.now_ns());
        let b = if is_tv { timeval_bytes(left) } else { timespec_bytes(left) };
        let _ = cx.write_user(addr, &b);
    }
    Flow::Ret(Ok(count))
}

/// `select(nfds, readfds, writefds, exceptfds, timeout_tv)`.
pub fn select<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let t = if a[4] == 0 {
        None
    } else {
        match cx.read_array::<16>(a[4]) {
            Ok(b) => {
                let s = i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                let us = i64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
                if s < 0 || !(0..1_000_000).contains(&us) {
                    return Flow::Ret(Err(Errno::EINVAL));
                }
                Some((s as u64).saturating_mul(1_000_000_000).saturating_add(us as u64 * 1000))
            }
            Err(e) => return Flow::Ret(Err(e)),
        }
    };
    do_select(cx, a[0], [a[1], a[2], a[3]], t, (a[4] != 0).then_some((a[4], true)))
}

/// `pselect6(nfds, readfds, writefds, exceptfds, timeout_ts, {sigmask, size})`.
pub fn pselect6<H: Hal>(cx: &mut SysCtx<'_, H>, a: [u64; 6]) -> Flow {
    let t = match read_timespec(cx, a[4]) {
        Ok(t) => t,
        Err(e) => return Flow::Ret(Err(e)),
    };
    if a[5] != 0 {
        let r = cx.read_array::<16>(a[5]).and_then(|b| {
            let p = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let sz = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
            temp_sigmask(cx, p, sz)
        });
        if let Err(e) = r {
            return Flow::Ret(Err(e));
        }
    }
    do_select(cx, a[0], [a[1], a[2], a[3]], t, (a[4] != 0).then_some((a[4], false)))
}
