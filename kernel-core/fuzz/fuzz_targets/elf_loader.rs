//! libFuzzer target: the ELF loader on arbitrary bytes. `parse_elf` must
//! accept or refuse (never panic); an accepted image (with itself as its
//! interpreter when it names one) is loaded into a fresh mock address space,
//! then the map's invariants and frame reference counts must hold, and
//! clearing it must free every frame.
#![no_main]

use std::sync::Arc;

use hal::mock::MockHal;
use hal::{Hal, PhysMem};
use kernel_core::exec::{self, ExecArgs};
use kernel_core::mm::{check_refcounts, Frames, MappedFile, MemoryMap, VecFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = exec::parse_elf(data) else { return };
    let mut hal = MockHal::new(4 << 20, Box::new(|_, _, _| hal::Trap::Lost { signal: None }));
    let mut frames = Frames::new(hal.phys().size());
    let mut mm = MemoryMap::new(hal.new_space().expect("space"));
    let file: Arc<dyn MappedFile> = Arc::new(VecFile(data.to_vec()));
    let argv = [b"/bad".to_vec()];
    let envp = [b"A=b".to_vec()];
    let args = ExecArgs { argv: &argv, envp: &envp, execfn: b"/bad", random: [7; 16], uid: 0, gid: 0 };
    let interp = image.interpreter().map(|_| (&image, &file));
    let _ = exec::load(&mut mm, &image, &file, interp, &args, &mut frames, hal.phys());
    check_refcounts(&[&mm], &frames).expect("refcounts after load");
    mm.clear(&mut frames);
    frames.check_all_free().expect("frames leaked");
});
