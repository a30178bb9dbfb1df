//! The block layer against a model: a disk is a byte array. Random
//! sequences of metadata reads and writes (through the buffer cache), data
//! reads and writes (straight to the device), write-back, forgetting freed
//! ranges, shrinking and releasing must read back exactly what the model
//! holds, and after a write-back the device itself must hold it.

mod common;

use common::model::prop_config;
use hal::{BlockDevice, BlockError, BlockInfo, BlockRequest, MemDisk};
use kernel_core::block::Disk;
use kernel_core::budget::Shrinker;
use proptest::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

const SIZE: usize = 64 << 10;

/// A MemDisk whose bytes the test can see while the kernel owns it.
struct Shared(Rc<RefCell<MemDisk>>);

impl BlockDevice for Shared {
    fn info(&self) -> BlockInfo {
        self.0.borrow().info()
    }
    fn submit(&mut self, queue: &mut [BlockRequest<'_>]) -> Result<(), (usize, BlockError)> {
        self.0.borrow_mut().submit(queue)
    }
}

#[derive(Clone, Debug)]
enum Op {
    ReadMeta(usize, usize),
    WriteMeta(usize, usize, u8),
    ReadData(usize, usize),
    WriteData(usize, usize, u8),
    Writeback,
    /// Forget a range of whole sectors (freed blocks): its contents are
    /// unspecified until written again (the model stops checking them).
    Forget(usize, usize),
    Shrink(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let span = (0..SIZE, 1..9000usize).prop_map(|(o, l)| (o, l.min(SIZE - o)));
    let sectors = (0..SIZE / 512, 1..20usize).prop_map(|(s, n)| (s * 512, (n * 512).min(SIZE - s * 512)));
    prop_oneof![
        span.clone().prop_map(|(o, l)| Op::ReadMeta(o, l)),
        (span, any::<u8>()).prop_map(|((o, l), b)| Op::WriteMeta(o, l, b)),
        sectors.clone().prop_map(|(o, l)| Op::ReadData(o, l)),
        (sectors.clone(), any::<u8>()).prop_map(|((o, l), b)| Op::WriteData(o, l, b)),
        Just(Op::Writeback),
        sectors.prop_map(|(o, l)| Op::Forget(o, l)),
        (0..8u64).prop_map(Op::Shrink),
    ]
}

proptest! {
    #![proptest_config(prop_config("prop_block", 128))]
    #[test]
    fn block_layer_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let init: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
        let dev = Rc::new(RefCell::new(MemDisk::new(init.clone())));
        let disk = Disk::new(0, Box::new(Shared(dev.clone())));
        let mut model = init;
        // Bytes whose contents are specified (not forgotten since written).
        let mut care = vec![true; SIZE];
        let same = |got: &[u8], model: &[u8], care: &[bool]| got.iter().zip(model).zip(care).all(|((a, b), c)| !c || a == b);
        for op in ops {
            match op {
                Op::ReadMeta(o, l) => {
                    let mut b = vec![0u8; l];
                    disk.read_meta(o as u64, &mut b).unwrap();
                    prop_assert!(same(&b, &model[o..o + l], &care[o..o + l]), "read_meta {} {}", o, l);
                }
                Op::WriteMeta(o, l, v) => {
                    disk.write_meta(o as u64, &vec![v; l]).unwrap();
                    model[o..o + l].fill(v);
                    care[o..o + l].fill(true);
                }
                Op::ReadData(o, l) => {
                    let mut b = vec![0u8; l];
                    disk.read_data(&mut [(o as u64, &mut b[..])]).unwrap();
                    prop_assert!(same(&b, &model[o..o + l], &care[o..o + l]), "read_data {} {}", o, l);
                }
                Op::WriteData(o, l, v) => {
                    disk.write_data(&[(o as u64, &vec![v; l][..])]).unwrap();
                    model[o..o + l].fill(v);
                    care[o..o + l].fill(true);
                }
                Op::Writeback => {
                    disk.writeback().unwrap();
                    prop_assert_eq!(disk.dirty_units().0, 0);
                    prop_assert!(same(&dev.borrow().bytes, &model, &care), "the device differs after write-back");
                }
                Op::Forget(o, l) => {
                    disk.forget(o as u64, l as u64);
                    care[o..o + l].fill(false);
                }
                Op::Shrink(n) => {
                    disk.shrink(n);
                }
            }
        }
        disk.writeback().unwrap();
        prop_assert!(same(&dev.borrow().bytes, &model, &care));
        // Out of range is an error, never a panic.
        let mut b = [0u8; 16];
        prop_assert!(disk.read_meta(SIZE as u64 - 8, &mut b).is_err());
        prop_assert!(disk.write_data(&[(SIZE as u64, &[0u8; 512][..])]).is_err());
    }
}
