//! Program loading: ELF parsing and the initial process image.
//!
//! [`parse_elf`] validates the headers; [`load`] maps the segments into an
//! empty [`MemoryMap`] (file-backed private mappings, demand-paged; the page
//! holding the end of a segment's file bytes and its bss is an anonymous page
//! filled at load time), sets the break after the main program and builds
//! the initial stack. The caller then starts the thread with `rip = entry`,
//! `rsp = stack_pointer` and every other register zero (`rdx = 0`: no
//! `atexit` function for `_start`).

mod elf;
mod stack;

pub use self::elf::{parse_elf, ElfImage, Segment};
pub use self::stack::{MAX_ARG_STRLEN, MAX_ARG_TOTAL};

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use hal::{AddressSpace, PhysMem, Prot};

use crate::mm::{page_ceil, page_floor, Backing, Frames, MapFlags, MappedFile, MemoryMap, PAGE, STACK_RESERVE};
use crate::Errno;

/// Where an `ET_DYN` main program without interpreter (static-PIE) or with one
/// (PIE) is loaded: Linux's `ELF_ET_DYN_BASE`, two thirds of the user address
/// range, page-aligned (0x5555_5555_4000 for a 47-bit range). Derived from the
/// backend's `user_end` because backends reserve different top regions (tt's
/// guest window is far smaller than the host's).
pub fn et_dyn_base(user_end: u64) -> u64 {
    page_floor(user_end / 3 * 2)
}

/// The arguments of a new process image.
pub struct ExecArgs<'a> {
    /// `argv`, `argv[0]` included.
    pub argv: &'a [Vec<u8>],
    /// The environment, `K=V` strings.
    pub envp: &'a [Vec<u8>],
    /// The path that was executed (`AT_EXECFN`).
    pub execfn: &'a [u8],
    /// The 16 bytes `AT_RANDOM` points to.
    pub random: [u8; 16],
    /// Real and effective user id.
    pub uid: u32,
    /// Real and effective group id.
    pub gid: u32,
    /// `AT_MINSIGSTKSZ`: the largest signal frame on this CPU.
    pub minsigstksz: u64,
    /// The vDSO to map (`AT_SYSINFO_EHDR`), if any.
    pub vdso: Option<&'a crate::time::vdso::Vdso>,
}

/// Where the new image starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Initial instruction pointer (the interpreter's entry if there is one).
    pub entry: u64,
    /// Initial stack pointer (16-byte aligned, points at `argc`).
    pub stack_pointer: u64,
}

fn seg_prot(flags: u32) -> Prot {
    let mut p = Prot::empty();
    if flags & ::elf::abi::PF_R != 0 {
        p |= Prot::READ;
    }
    if flags & ::elf::abi::PF_W != 0 {
        p |= Prot::WRITE;
    }
    if flags & ::elf::abi::PF_X != 0 {
        p |= Prot::EXEC;
    }
    p
}

/// Map every `PT_LOAD` of `image` with load bias `bias`; returns the end of
/// the highest segment.
fn map_segments<S: AddressSpace>(
    mm: &mut MemoryMap<S>,
    image: &ElfImage,
    file: &Arc<dyn MappedFile>,
    bias: u64,
    frames: &mut Frames,
    phys: &impl PhysMem,
) -> Result<u64, Errno> {
    let fixed = MapFlags::FIXED | MapFlags::PRIVATE;
    // The whole image must land on free space (not over the stack or the
    // other image); inside it, later segments may replace earlier pages.
    let (lo, hi) = image.span();
    let (start, end) = (bias.wrapping_add(lo), bias.wrapping_add(hi));
    if start >= end || end > mm.user_end() || mm.overlaps(start, end) {
        return Err(Errno::ENOMEM);
    }
    let mut max_end = 0;
    for seg in image.segments() {
        let prot = seg_prot(seg.flags);
        // Modular: an ET_DYN bias may be "negative" (image linked high, placed
        // lower); the sum is inside the range `dyn_bias` checked.
        let vstart = bias.wrapping_add(seg.vaddr);
        if vstart.checked_add(seg.memsz).is_none_or(|e| e > mm.user_end()) {
            return Err(Errno::ENOMEM);
        }
        let map_start = page_floor(vstart);
        let file_off = page_floor(seg.offset);
        let file_end = vstart + seg.filesz; // validated: no overflow below USER_LIMIT
        let mem_end = vstart + seg.memsz;
        let mem_end_page = page_ceil(mem_end).ok_or(Errno::ENOMEM)?;
        max_end = max_end.max(mem_end);
        if seg.memsz == 0 {
            continue;
        }
        // Pages wholly from the file; with no bss the last partial page too
        // (its tail shows the following file bytes, as on Linux).
        let file_pages_end = if seg.memsz > seg.filesz { page_floor(file_end) } else { mem_end_page };
        if seg.filesz > 0 && file_pages_end > map_start {
            mm.mmap(map_start, file_pages_end - map_start, prot, fixed, Backing::File(file.clone(), file_off), frames)?;
        }
        if mem_end_page > file_pages_end.max(map_start) {
            let anon_start = file_pages_end.max(map_start);
            mm.mmap(anon_start, mem_end_page - anon_start, prot, fixed, Backing::Anonymous, frames)?;
            // The file bytes that share the first anonymous page.
            if seg.filesz > 0 && file_end > anon_start {
                let mut buf = vec![0u8; (file_end - anon_start) as usize];
                let off = file_off + (anon_start - map_start);
                let n = file.read_at(off, &mut buf);
                if n < buf.len() {
                    return Err(Errno::ENOEXEC); // the file shrank under us
                }
                mm.write_force(anon_start, &buf, frames, phys)?;
            }
        }
    }
    Ok(max_end)
}

/// Choose the load bias of an `ET_DYN` image at `preferred` (aligned to its
/// largest `p_align`), or anywhere free if that does not fit.
fn dyn_bias<S: AddressSpace>(mm: &MemoryMap<S>, image: &ElfImage, preferred: Option<u64>) -> Result<u64, Errno> {
    let (lo, hi) = image.span();
    let span = hi - lo;
    let align = image.max_align();
    let fits = |base: u64| base.checked_add(span).is_some_and(|e| e <= mm.user_end());
    let base = match preferred.and_then(|p| p.checked_add(align - 1)).map(|p| p & !(align - 1)) {
        Some(b) if fits(b) => b,
        _ => {
            let room = span.checked_add(align - PAGE).ok_or(Errno::ENOMEM)?;
            let at = mm.find_free_area(room, 0, false).ok_or(Errno::ENOMEM)?;
            (at + align - 1) & !(align - 1)
        }
    };
    Ok(base.wrapping_sub(lo))
}

/// Load `image` (and `interp`, if any) into an empty `mm` and build the
/// initial stack. Errors: `ENOMEM` (no room or no frames), `E2BIG`
/// (arguments too long), `ENOEXEC` (file changed since it was parsed). On
/// error `mm` is cleared again.
pub fn load<S: AddressSpace>(
    mm: &mut MemoryMap<S>,
    image: &ElfImage,
    file: &Arc<dyn MappedFile>,
    interp: Option<(&ElfImage, &Arc<dyn MappedFile>)>,
    args: &ExecArgs,
    frames: &mut Frames,
    phys: &impl PhysMem,
) -> Result<Loaded, Errno> {
    let r = load_inner(mm, image, file, interp, args, frames, phys);
    if r.is_err() {
        mm.clear(frames);
    }
    r
}

fn load_inner<S: AddressSpace>(
    mm: &mut MemoryMap<S>,
    image: &ElfImage,
    file: &Arc<dyn MappedFile>,
    interp: Option<(&ElfImage, &Arc<dyn MappedFile>)>,
    args: &ExecArgs,
    frames: &mut Frames,
    phys: &impl PhysMem,
) -> Result<Loaded, Errno> {
    // The stack first, so that the images never take its place.
    let top = mm.stack_top();
    let stack_start = top.checked_sub(STACK_RESERVE).ok_or(Errno::ENOMEM)?;
    let mut stack_prot = Prot::READ | Prot::WRITE;
    if image.exec_stack {
        stack_prot |= Prot::EXEC;
    }
    let stack_flags = MapFlags::FIXED | MapFlags::PRIVATE | MapFlags::GROWSDOWN;
    mm.mmap(stack_start, STACK_RESERVE, stack_prot, stack_flags, Backing::Anonymous, frames)?;
    mm.set_kind(stack_start, crate::mm::VmaKind::Stack);

    let bias = if image.is_dyn() { dyn_bias(mm, image, Some(et_dyn_base(mm.user_end())))? } else { 0 };
    let end = map_segments(mm, image, file, bias, frames, phys)?;
    mm.set_brk_base(end);
    let entry = bias.wrapping_add(image.entry());

    let (start, base) = match interp {
        Some((iimg, ifile)) => {
            let ibias = if iimg.is_dyn() { dyn_bias(mm, iimg, None)? } else { 0 };
            map_segments(mm, iimg, ifile, ibias, frames, phys)?;
            (ibias.wrapping_add(iimg.entry()), ibias)
        }
        None => (entry, 0),
    };

    let sysinfo_ehdr = match args.vdso {
        Some(v) => Some(v.map(mm, frames)?),
        None => None,
    };
    let aux = stack::AuxInfo {
        phdr: image.phdr_vaddr().map_or(0, |v| bias.wrapping_add(v)),
        phnum: u64::from(image.phnum),
        base,
        entry,
        sysinfo_ehdr,
    };
    let st = stack::build(top, args, &aux)?;
    if st.sp < stack_start {
        return Err(Errno::E2BIG);
    }
    mm.copy_to_user(st.sp, &st.bytes, frames, phys).map_err(|_| Errno::ENOMEM)?;
    Ok(Loaded { entry: start, stack_pointer: st.sp })
}

#[cfg(test)]
mod tests;
