//! ELF parsing and validation (headers via the `elf` crate, checks ours).

use alloc::vec::Vec;
use elf::abi;
use elf::endian::LittleEndian;
use elf::file::{Class, FileHeader};
use elf::segment::SegmentTable;

use crate::mm::PAGE;
use crate::Errno;

/// Size of an ELF64 program header.
const PHENT64: usize = 56;
/// Linux refuses program header tables above 64 KiB.
const MAX_PHDR_BYTES: usize = 64 * 1024;
/// Highest user address a segment may reach (47-bit user space).
const USER_LIMIT: u64 = 0x0000_8000_0000_0000;
/// Longest interpreter path.
const PATH_MAX: usize = 4096;

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Virtual address (before the load bias).
    pub vaddr: u64,
    /// Bytes from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero: bss).
    pub memsz: u64,
    /// `PF_R | PF_W | PF_X`.
    pub flags: u32,
    /// Alignment.
    pub align: u64,
}

/// A parsed, validated ELF executable (program headers etc.); owns no file data.
#[derive(Clone, Debug)]
pub struct ElfImage {
    pub(crate) is_dyn: bool,
    pub(crate) entry: u64,
    pub(crate) phoff: u64,
    pub(crate) phnum: u16,
    /// `PT_PHDR`'s virtual address.
    pub(crate) phdr_vaddr: Option<u64>,
    pub(crate) loads: Vec<Segment>,
    pub(crate) interp: Option<Vec<u8>>,
    /// `PT_GNU_STACK` asks for an executable stack (or is absent).
    pub(crate) exec_stack: bool,
}

impl ElfImage {
    /// The `PT_INTERP` path (without its NUL), if any.
    pub fn interpreter(&self) -> Option<&[u8]> {
        self.interp.as_deref()
    }
    /// `ET_DYN` (PIE, static-PIE or a shared object) rather than `ET_EXEC`.
    pub fn is_dyn(&self) -> bool {
        self.is_dyn
    }
    /// `e_entry` (before the load bias).
    pub fn entry(&self) -> u64 {
        self.entry
    }
    /// The `PT_LOAD` segments, in file order.
    pub fn segments(&self) -> &[Segment] {
        &self.loads
    }
    /// Lowest page and end (page-rounded) of the loaded image, before the bias.
    pub(crate) fn span(&self) -> (u64, u64) {
        let lo = self.loads.iter().map(|s| s.vaddr & !(PAGE - 1)).min().unwrap_or(0);
        // Validated: vaddr + memsz does not overflow and stays below USER_LIMIT.
        let hi = self.loads.iter().map(|s| (s.vaddr + s.memsz + PAGE - 1) & !(PAGE - 1)).max().unwrap_or(0);
        (lo, hi)
    }
    /// The largest power-of-two `p_align` of the loads (at least a page).
    pub(crate) fn max_align(&self) -> u64 {
        self.loads
            .iter()
            .map(|s| s.align)
            .filter(|a| a.is_power_of_two() && *a <= 1 << 30)
            .max()
            .unwrap_or(PAGE)
            .max(PAGE)
    }
    /// Virtual address (before bias) of the program headers, if loaded.
    pub(crate) fn phdr_vaddr(&self) -> Option<u64> {
        self.phdr_vaddr.or_else(|| {
            let len = (self.phnum as u64) * PHENT64 as u64;
            self.loads.iter().find_map(|s| {
                let end = s.offset.checked_add(s.filesz)?;
                (s.offset <= self.phoff && self.phoff.checked_add(len)? <= end).then(|| s.vaddr + (self.phoff - s.offset))
            })
        })
    }
}

/// Validate an ELF file: 64-bit little-endian x86_64, `ET_EXEC` or `ET_DYN`,
/// a program header table inside the file, at least one `PT_LOAD`, every
/// `PT_LOAD` with `filesz <= memsz`, its file bytes inside the file, its
/// address range below the user limit without overflow, and `p_offset`
/// congruent to `p_vaddr` modulo the page size (as `mmap` needs); a
/// `PT_INTERP` inside the file, NUL-terminated. Anything else: `ENOEXEC`.
/// Section headers are not looked at (Linux ignores them too).
pub fn parse_elf(file: &[u8]) -> Result<ElfImage, Errno> {
    let bad = Errno::ENOEXEC;
    // parse_ident indexes without checking: hand it exactly the ident bytes.
    let ident_bytes = file.get(..abi::EI_NIDENT).ok_or(bad)?;
    let ident = elf::file::parse_ident::<LittleEndian>(ident_bytes).map_err(|_| bad)?;
    if ident.1 != Class::ELF64 {
        return Err(bad);
    }
    let tail = file.get(abi::EI_NIDENT..abi::EI_NIDENT + elf::file::ELF64_EHDR_TAILSIZE).ok_or(bad)?;
    let ehdr: FileHeader<LittleEndian> = FileHeader::parse_tail(ident, tail).map_err(|_| bad)?;
    if ehdr.e_machine != abi::EM_X86_64 {
        return Err(bad);
    }
    let is_dyn = match ehdr.e_type {
        abi::ET_EXEC => false,
        abi::ET_DYN => true,
        _ => return Err(bad),
    };
    if ehdr.e_phentsize as usize != PHENT64 || ehdr.e_phnum == 0 {
        return Err(bad);
    }
    let table_len = ehdr.e_phnum as usize * PHENT64;
    if table_len > MAX_PHDR_BYTES {
        return Err(bad);
    }
    let phoff = usize::try_from(ehdr.e_phoff).map_err(|_| bad)?;
    let table = file.get(phoff..phoff.checked_add(table_len).ok_or(bad)?).ok_or(bad)?;
    let phdrs = SegmentTable::new(ehdr.endianness, ehdr.class, table);
    let mut image = ElfImage {
        is_dyn,
        entry: ehdr.e_entry,
        phoff: ehdr.e_phoff,
        phnum: ehdr.e_phnum,
        phdr_vaddr: None,
        loads: Vec::new(),
        interp: None,
        exec_stack: true,
    };
    let file_len = file.len() as u64;
    for ph in phdrs.iter() {
        match ph.p_type {
            abi::PT_LOAD => {
                let file_end = ph.p_offset.checked_add(ph.p_filesz).ok_or(bad)?;
                let mem_end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or(bad)?;
                if ph.p_filesz > ph.p_memsz
                    || file_end > file_len
                    || mem_end > USER_LIMIT
                    || ph.p_offset % PAGE != ph.p_vaddr % PAGE // mmap needs congruent offsets
                {
                    return Err(bad);
                }
                image.loads.push(Segment {
                    offset: ph.p_offset,
                    vaddr: ph.p_vaddr,
                    filesz: ph.p_filesz,
                    memsz: ph.p_memsz,
                    flags: ph.p_flags,
                    align: ph.p_align,
                });
            }
            abi::PT_INTERP if image.interp.is_none() => {
                let start = usize::try_from(ph.p_offset).map_err(|_| bad)?;
                let len = usize::try_from(ph.p_filesz).map_err(|_| bad)?;
                let bytes = file.get(start..start.checked_add(len).ok_or(bad)?).ok_or(bad)?;
                // NUL-terminated, no NUL inside, not empty.
                let (last, path) = bytes.split_last().ok_or(bad)?;
                if *last != 0 || path.is_empty() || path.len() >= PATH_MAX || path.contains(&0) {
                    return Err(bad);
                }
                image.interp = Some(path.to_vec());
            }
            abi::PT_PHDR => image.phdr_vaddr = Some(ph.p_vaddr),
            abi::PT_GNU_STACK => image.exec_stack = ph.p_flags & abi::PF_X != 0,
            _ => {}
        }
    }
    if image.loads.is_empty() {
        return Err(bad);
    }
    Ok(image)
}
