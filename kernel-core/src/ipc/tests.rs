//! Model-based properties of System V IPC state: ids, keys and permissions
//! of a registry against a plain list; `semop` against a model of values;
//! message selection against a list; budget charges given back.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::msg::{MsgQueue, MSG_EXCEPT};
use super::sem::{SemBlock, SemOp, SemSet, SEMVMX};
use super::*;
use crate::budget::Budget;

fn cred(uid: u32) -> Cred {
    Cred { uid, euid: uid, suid: uid, fsuid: uid, gid: uid, egid: uid, sgid: uid, fsgid: uid, groups: Vec::new() }
}

#[derive(Clone, Debug)]
enum Op {
    Get { key: i32, flags: u32, uid: u32 },
    Remove { which: usize, uid: u32 },
    Lookup { id: i32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i32..4, prop_oneof![Just(0u32), Just(IPC_CREAT), Just(IPC_CREAT | IPC_EXCL)], 0u32..3, prop_oneof![Just(0o600u32), Just(0o644), Just(0o666), Just(0o400)])
            .prop_map(|(key, f, uid, mode)| Op::Get { key, flags: f | mode, uid }),
        (0usize..8, 0u32..3).prop_map(|(which, uid)| Op::Remove { which, uid }),
        any::<i32>().prop_map(|id| Op::Lookup { id }),
    ]
}

/// The model: live objects as (id, key, owner uid, mode).
struct Model(Vec<(i32, i32, u32, u32)>);

proptest! {
    #[test]
    fn registry_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut reg: Registry<u32> = Registry::new(5);
        let mut m = Model(Vec::new());
        let mut ever: Vec<i32> = Vec::new();
        for o in ops {
            match o {
                Op::Get { key, flags, uid } => {
                    let c = cred(uid);
                    let r = match reg.lookup_key(key, flags, &c) {
                        Ok(Found::Create) => reg.insert(key, flags, &c, 0).map(Some),
                        Ok(Found::Existing(id)) => Ok(Some(id)).map(|x| { let _ = x; x }),
                        Err(e) => Err(e),
                    };
                    // Model.
                    let existing = if key == IPC_PRIVATE { None } else { m.0.iter().find(|x| x.1 == key).copied() };
                    match existing {
                        None if key != IPC_PRIVATE && flags & IPC_CREAT == 0 => prop_assert_eq!(r, Err(Errno::ENOENT)),
                        None if m.0.len() >= 5 => prop_assert_eq!(r, Err(Errno::ENOSPC)),
                        None => {
                            let id = r.expect("created").expect("id");
                            prop_assert!(id >= 0);
                            // A new id is never one handed out before (within the seq range).
                            prop_assert!(!ever.contains(&id));
                            ever.push(id);
                            m.0.push((id, key, uid, flags & 0o777));
                        }
                        Some(_) if flags & (IPC_CREAT | IPC_EXCL) == IPC_CREAT | IPC_EXCL => prop_assert_eq!(r, Err(Errno::EEXIST)),
                        Some((id, _, owner, mode)) => {
                            let want = (flags >> 6 | flags >> 3 | flags) & 7;
                            let bits = if uid == 0 { 7 } else if uid == owner { mode >> 6 } else { mode } & 7;
                            if uid == 0 || bits & want == want {
                                prop_assert_eq!(r, Ok(Some(id)));
                            } else {
                                prop_assert_eq!(r, Err(Errno::EACCES));
                            }
                        }
                    }
                }
                Op::Remove { which, uid } => {
                    if m.0.is_empty() {
                        continue;
                    }
                    let (id, _, owner, _) = m.0[which % m.0.len()];
                    let c = cred(uid);
                    let may = reg.get(id).map(|(p, _)| p.may_own(&c));
                    prop_assert_eq!(may, Ok(uid == 0 || uid == owner));
                    if uid == 0 || uid == owner {
                        prop_assert!(reg.remove(id).is_ok());
                        m.0.retain(|x| x.0 != id);
                        prop_assert_eq!(reg.get(id).map(|_| ()), Err(Errno::EINVAL));
                    }
                }
                Op::Lookup { id } => {
                    let live = m.0.iter().any(|x| x.0 == id);
                    prop_assert_eq!(reg.get(id).is_ok(), live);
                }
            }
            prop_assert_eq!(reg.len(), m.0.len());
            prop_assert!(reg.check().is_ok());
        }
    }

    #[test]
    fn semop_is_all_or_nothing(init in proptest::collection::vec(0i32..5, 1..4),
                               ops in proptest::collection::vec((0u16..5, -3i16..4, any::<bool>()), 1..6)) {
        let mut set = SemSet::new(init.len(), 0, crate::budget::Charge::none(crate::budget::Kind::Other));
        for (s, v) in set.sems.iter_mut().zip(&init) {
            s.val = *v;
        }
        let sops: Vec<SemOp> = ops.iter().map(|&(num, op, nw)| SemOp { num, op, flg: if nw { IPC_NOWAIT as i16 } else { 0 } }).collect();
        let before: Vec<i32> = set.sems.iter().map(|s| s.val).collect();
        // Model: apply in order on a copy; the first failing op decides.
        let mut vals = before.clone();
        let mut expect: Result<(), SemBlock> = Ok(());
        for o in &sops {
            let i = usize::from(o.num);
            if i >= vals.len() { expect = Err(SemBlock::Err(Errno::EFBIG)); break; }
            let nw = o.flg as u32 & IPC_NOWAIT != 0;
            if o.op == 0 {
                if vals[i] != 0 { expect = Err(if nw { SemBlock::Err(Errno::EAGAIN) } else { SemBlock::Wait(o.num, true) }); break; }
                continue;
            }
            let n = vals[i] + i32::from(o.op);
            if n < 0 { expect = Err(if nw { SemBlock::Err(Errno::EAGAIN) } else { SemBlock::Wait(o.num, false) }); break; }
            if n > SEMVMX { expect = Err(SemBlock::Err(Errno::ERANGE)); break; }
            vals[i] = n;
        }
        let got = set.apply(&sops, 7, 1, None);
        prop_assert_eq!(got, expect);
        let after: Vec<i32> = set.sems.iter().map(|s| s.val).collect();
        if got.is_ok() { prop_assert_eq!(after, vals); } else { prop_assert_eq!(after, before); }
    }

    #[test]
    fn msgrcv_selection_matches_model(types in proptest::collection::vec(1i64..6, 0..12), want in -6i64..6, except in any::<bool>()) {
        let budget = Budget::new(1 << 16);
        let mut q = MsgQueue::new(0, crate::budget::Charge::none(crate::budget::Kind::Other));
        for t in &types {
            q.push(*t, alloc::vec![1, 2, 3], Some(&budget), 1, 0).expect("fits the budget");
        }
        prop_assert!(budget.kernel_bytes() > 0 || types.is_empty());
        let flags = if except { MSG_EXCEPT } else { 0 };
        let model = if want == 0 {
            if types.is_empty() { None } else { Some(0) }
        } else if want > 0 {
            types.iter().position(|t| (*t == want) != except)
        } else {
            let lim = -want;
            types.iter().enumerate().filter(|(_, t)| **t <= lim).min_by_key(|(i, t)| (**t, *i)).map(|(i, _)| i)
        };
        prop_assert_eq!(q.find(want, flags), model);
        drop(q);
        prop_assert_eq!(budget.kernel_bytes(), 0);
    }
}
