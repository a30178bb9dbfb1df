//! Model-based property: random pipe2/dup/dup2/close/read/write/poll sequences
//! from one process, every result (and every byte read, every revents)
//! checked against a small model of the fd table and the pipes' queues.
//! Pipes are blocking or O_NONBLOCK; a blocking call the model says would
//! block forever (one process: nobody else can write) is left out of the
//! script. SIGPIPE is ignored so EPIPE shows.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::model::*;
use common::*;
use linux_raw_sys::errno as e;
use linux_raw_sys::general as g;
use proptest::prelude::*;

const SCRATCH: u64 = BASE + SCRATCH_OFF;
const WBUF: u64 = SCRATCH + 0x100;
const RBUF: u64 = SCRATCH + 0x400;

#[derive(Debug, Clone)]
enum Op {
    /// pipe2, O_NONBLOCK or not.
    Pipe(bool),
    /// poll(timeout 0) on (fd, events) entries.
    Poll(Vec<(i32, i16)>),
    Dup(i32),
    Dup2(i32, i32),
    Close(i32),
    Read(i32, usize),
    Write(i32, Vec<u8>),
}

fn fd() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 3i32..9, 1 => Just(200), 1 => Just(-1)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Pipe),
        2 => prop::collection::vec((fd(), prop_oneof![Just(g::POLLIN as i16), Just(g::POLLOUT as i16), Just((g::POLLIN | g::POLLOUT) as i16)]), 1..4).prop_map(Op::Poll),
        1 => fd().prop_map(Op::Dup),
        2 => (fd(), 3i32..9).prop_map(|(a, b)| Op::Dup2(a, b)),
        3 => fd().prop_map(Op::Close),
        4 => (fd(), 0usize..40).prop_map(|(f, n)| Op::Read(f, n)),
        4 => (fd(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(f, d)| Op::Write(f, d)),
    ]
}

/// Deliberately broken model variants (planted bugs) the property must catch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// Forgets that a pipe with no writers left reads as EOF (says EAGAIN).
    ForgetEof,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum End {
    R,
    W,
}

/// The reference: fd -> (pipe, end, O_NONBLOCK); each pipe's queued bytes.
struct Model {
    fds: BTreeMap<i32, (usize, End, bool)>,
    pipes: Vec<VecDeque<u8>>,
    bug: Bug,
}

impl Model {
    fn lowest_free(&self) -> i32 {
        // 0..2 are the console.
        (3..).find(|f| !self.fds.contains_key(f)).unwrap()
    }
    fn count(&self, p: usize, end: End) -> usize {
        self.fds.values().filter(|&&(q, en, _)| q == p && en == end).count()
    }
    /// Whether `op` would block forever (nobody else can make it ready).
    fn blocks(&self, op: &Op) -> bool {
        match op {
            Op::Read(f, n) => match self.fds.get(f) {
                Some(&(p, End::R, false)) => *n > 0 && self.pipes[p].is_empty() && self.count(p, End::W) > 0,
                _ => false,
            },
            _ => false,
        }
    }
    fn step(&mut self, op: &Op) -> Expect {
        match op {
            Op::Poll(entries) => {
                let mut mem = Vec::new();
                let mut n = 0;
                for &(f, ev) in entries {
                    let rev = match self.fds.get(&f) {
                        // A negative fd is skipped.
                        None if f < 0 => 0,
                        None => g::POLLNVAL,
                        Some(&(p, End::R, _)) => {
                            (if self.pipes[p].is_empty() { 0 } else { g::POLLIN })
                                | if self.count(p, End::W) == 0 { g::POLLHUP } else { 0 }
                        }
                        Some(&(p, End::W, _)) => g::POLLOUT | if self.count(p, End::R) == 0 { g::POLLERR } else { 0 },
                    } as i16;
                    let rev = rev & (ev | (g::POLLHUP | g::POLLERR | g::POLLNVAL) as i16);
                    n += i64::from(rev != 0);
                    mem.extend(f.to_le_bytes());
                    mem.extend(ev.to_le_bytes());
                    mem.extend(rev.to_le_bytes());
                }
                Expect::ret(n).with_mem(mem)
            }
            Op::Pipe(nb) => {
                let r = self.lowest_free();
                self.fds.insert(r, (self.pipes.len(), End::R, *nb));
                let w = self.lowest_free();
                self.fds.insert(w, (self.pipes.len(), End::W, *nb));
                self.pipes.push(VecDeque::new());
                let mut m = r.to_le_bytes().to_vec();
                m.extend(w.to_le_bytes());
                Expect::ret(0).with_mem(m)
            }
            Op::Dup(f) => match self.fds.get(f).copied() {
                None => Expect::err(e::EBADF),
                Some(x) => {
                    let n = self.lowest_free();
                    self.fds.insert(n, x);
                    Expect::ret(n as i64)
                }
            },
            Op::Dup2(a, b) => match self.fds.get(a).copied() {
                None => Expect::err(e::EBADF),
                Some(x) => {
                    self.fds.insert(*b, x);
                    Expect::ret(*b as i64)
                }
            },
            Op::Close(f) => match self.fds.remove(f) {
                None => Expect::err(e::EBADF),
                Some(_) => Expect::ret(0),
            },
            Op::Read(f, n) => match self.fds.get(f).copied() {
                None | Some((_, End::W, _)) => Expect::err(e::EBADF),
                Some((p, End::R, _)) => {
                    if *n == 0 {
                        return Expect::ret(0);
                    }
                    let q = &mut self.pipes[p];
                    if q.is_empty() {
                        if self.count(p, End::W) == 0 && self.bug != Bug::ForgetEof {
                            Expect::ret(0)
                        } else {
                            Expect::err(e::EAGAIN)
                        }
                    } else {
                        let k = (*n).min(q.len());
                        let got: Vec<u8> = q.drain(..k).collect();
                        Expect::ret(k as i64).with_mem(got)
                    }
                }
            },
            Op::Write(f, d) => match self.fds.get(f).copied() {
                None | Some((_, End::R, _)) => Expect::err(e::EBADF),
                Some((p, End::W, _)) => {
                    if d.is_empty() {
                        Expect::ret(0)
                    } else if self.count(p, End::R) == 0 {
                        Expect::err(e::EPIPE)
                    } else {
                        self.pipes[p].extend(d.iter().copied());
                        Expect::ret(d.len() as i64)
                    }
                }
            },
        }
    }
}

/// Run `ops` in the kernel and in the model (with `bug` planted); the first divergence is the error.
fn check(ops: &[Op], bug: Bug) -> Result<(), String> {
    let log = Log::default();
    // Data area: struct sigaction { handler = SIG_IGN, flags, restorer, mask }.
    let mut data = vec![0u8; 32];
    data[0] = 1;
    let mut insns = vec![sys(g::__NR_rt_sigaction, &[g::SIGPIPE as u64, BASE + DATA_OFF, 0, 8]), record(&log, 0, 0)];
    let mut want = vec![Expect::ret(0)];
    let mut labels = vec![usize::MAX];
    let mut m = Model { fds: BTreeMap::new(), pipes: Vec::new(), bug };
    for (i, op) in ops.iter().enumerate() {
        if m.blocks(op) {
            continue;
        }
        let (call, rec) = match op {
            Op::Pipe(nb) => (sys(g::__NR_pipe2, &[SCRATCH, if *nb { g::O_NONBLOCK as u64 } else { 0 }]), record(&log, SCRATCH, 8)),
            Op::Poll(entries) => {
                let mut arr = Vec::new();
                for &(f, ev) in entries {
                    arr.extend(f.to_le_bytes());
                    arr.extend(ev.to_le_bytes());
                    arr.extend(0i16.to_le_bytes());
                }
                let n = entries.len();
                insns.push(store(|_| WBUF, arr));
                (sys(g::__NR_poll, &[WBUF, n as u64, 0]), record(&log, WBUF, 8 * n))
            }
            Op::Dup(f) => (sys(g::__NR_dup, &[*f as u64]), record(&log, 0, 0)),
            Op::Dup2(a, b) => (sys(g::__NR_dup2, &[*a as u64, *b as u64]), record(&log, 0, 0)),
            Op::Close(f) => (sys(g::__NR_close, &[*f as u64]), record(&log, 0, 0)),
            Op::Read(f, n) => (sys(g::__NR_read, &[*f as u64, RBUF, *n as u64]), record(&log, RBUF, *n)),
            Op::Write(f, d) => {
                insns.push(store(|_| WBUF, d.clone()));
                (sys(g::__NR_write, &[*f as u64, WBUF, d.len() as u64]), record(&log, 0, 0))
            }
        };
        insns.push(call);
        insns.push(rec);
        want.push(m.step(op));
        labels.push(i);
    }
    run_and_compare(insns, &data, &log, ops, &want, &labels)
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

proptest! {
    #![proptest_config(prop_config("prop_pipes", 256))]

    #[test]
    fn pipes_and_fds_match_the_model(ops in ops()) {
        check(&ops, Bug::None).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn planted_bug_forget_eof_is_caught() {
    let mut runner = planted_runner(512);
    let r = runner.run(&ops(), |ops| check(&ops, Bug::ForgetEof).map_err(TestCaseError::fail));
    assert!(r.is_err(), "the property did not notice a model that forgets EOF");
}

#[test]
fn known_sequence() {
    // pipe, write, close write end, read all, then EOF.
    let (i, o) = (g::POLLIN as i16, g::POLLOUT as i16);
    let ops = vec![
        Op::Pipe(false),
        Op::Poll(vec![(3, i | o), (4, i | o), (200, i), (-1, i)]),
        Op::Write(4, b"hey".to_vec()),
        Op::Poll(vec![(3, i)]),
        Op::Close(4),
        Op::Poll(vec![(3, i)]),
        Op::Read(3, 10),
        Op::Read(3, 10),
        Op::Pipe(true),
        Op::Close(4),
        Op::Poll(vec![(5, o)]),
        Op::Write(5, vec![1]),
    ];
    check(&ops, Bug::None).unwrap();
}

/// A zero-length write to a pipe with no readers returns 0 on Linux (pipe_write
/// returns before the readers check). A persisted seed once shrank to this.
#[test]
fn empty_write_to_a_widowed_pipe() {
    let ops = vec![Op::Pipe(true), Op::Dup2(3, 5), Op::Close(3), Op::Pipe(true), Op::Close(3), Op::Write(6, vec![])];
    check(&ops, Bug::None).unwrap();
}
