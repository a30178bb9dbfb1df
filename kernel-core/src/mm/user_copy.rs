//! Copies between kernel buffers and user memory.
//!
//! A walk of kernel-core's own page table plus a memcpy through
//! [`PhysMem`], a page-sized chunk at a time: no host call per access. A page
//! that is not present (or copy-on-write, for writes) goes through the same
//! fault logic as a guest fault; any failure is `EFAULT`.

use alloc::vec::Vec;
use hal::{Access, AddressSpace, PhysMem, Prot};

use super::frames::Frames;
use super::memory_map::MemoryMap;
use super::{page_floor, PAGE};
use crate::Errno;

impl<S: AddressSpace> MemoryMap<S> {
    /// The frame behind user page `page`, faulted in for a read or a write.
    fn user_frame(&mut self, page: u64, write: bool, frames: &mut Frames, phys: &impl PhysMem) -> Result<u64, Errno> {
        let need = if write { Prot::WRITE } else { Prot::READ };
        if let Some(pte) = self.pages.get(&page) {
            if pte.prot.contains(need) {
                return Ok(pte.frame);
            }
        }
        let access = if write { Access::Write } else { Access::Read };
        self.fault_page(page, access, false, true, frames, phys).map(|(pte, _)| pte.frame).map_err(|_| Errno::EFAULT)
    }

    /// Check that `[addr, addr + len)` lies below the user end.
    fn user_range(&self, addr: u64, len: usize) -> Result<(), Errno> {
        let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        if end > self.user_end() {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// Copy user memory at `addr` into `buf`; `EFAULT` on any bad page
    /// (`buf` may then be partly filled).
    pub fn copy_from_user(
        &mut self,
        addr: u64,
        buf: &mut [u8],
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<(), Errno> {
        self.user_range(addr, buf.len())?;
        let mut done = 0usize;
        while done < buf.len() {
            let va = addr + done as u64;
            let off = va % PAGE;
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            let frame = self.user_frame(page_floor(va), false, frames, phys)?;
            phys.read(frame + off, &mut buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Copy `data` to user memory at `addr`; `EFAULT` on any bad page (a
    /// prefix may have been written). Copy-on-write pages are broken.
    pub fn copy_to_user(&mut self, addr: u64, data: &[u8], frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        self.user_range(addr, data.len())?;
        let mut done = 0usize;
        while done < data.len() {
            let va = addr + done as u64;
            let off = va % PAGE;
            let n = ((PAGE - off) as usize).min(data.len() - done);
            let frame = self.user_frame(page_floor(va), true, frames, phys)?;
            phys.write(frame + off, &data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Fill `len` bytes of user memory at `addr` with zeros (e.g. the
    /// `clear_child_tid` word, `read` past end); `EFAULT` on any bad page.
    pub fn zero_user(&mut self, addr: u64, len: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        let len_usize = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        self.user_range(addr, len_usize)?;
        let mut done = 0u64;
        while done < len {
            let va = addr + done;
            let off = va % PAGE;
            let n = (PAGE - off).min(len - done);
            let frame = self.user_frame(page_floor(va), true, frames, phys)?;
            phys.fill(frame + off, n, 0);
            done += n;
        }
        Ok(())
    }

    /// Copy `len` bytes of user memory at `addr` to physical address `paddr`
    /// (a page-cache frame: a `write` into a file), one memcpy per piece.
    /// `EFAULT` on any bad page (a prefix may have been copied).
    pub fn copy_user_to_phys(&mut self, addr: u64, paddr: u64, len: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        self.copy_with_phys(addr, paddr, len, false, frames, phys)
    }

    /// Copy `len` bytes at physical address `paddr` (a page-cache frame: a
    /// `read` of a file) to user memory at `addr`; `EFAULT` on any bad page.
    pub fn copy_phys_to_user(&mut self, addr: u64, paddr: u64, len: u64, frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        self.copy_with_phys(addr, paddr, len, true, frames, phys)
    }

    fn copy_with_phys(
        &mut self,
        addr: u64,
        paddr: u64,
        len: u64,
        to_user: bool,
        frames: &mut Frames,
        phys: &impl PhysMem,
    ) -> Result<(), Errno> {
        self.user_range(addr, usize::try_from(len).map_err(|_| Errno::EFAULT)?)?;
        let mut done = 0u64;
        while done < len {
            let va = addr + done;
            let off = va % PAGE;
            let n = (PAGE - off).min(len - done);
            let user = self.user_frame(page_floor(va), to_user, frames, phys)? + off;
            let (src, dst) = if to_user { (paddr + done, user) } else { (user, paddr + done) };
            if src == dst {
                // The buffer is a mapping of the very page: nothing moves.
            } else if src.abs_diff(dst) < n {
                // Overlapping (the same frame at another offset): through a bounce buffer.
                let mut tmp = [0u8; PAGE as usize];
                phys.read(src, &mut tmp[..n as usize]);
                phys.write(dst, &tmp[..n as usize]);
            } else {
                phys.copy(src, dst, n);
            }
            done += n;
        }
        Ok(())
    }

    /// Read a NUL-terminated string at `addr`, returned without its NUL.
    /// `max` counts the NUL (pass `PATH_MAX` = 4096 for paths): no NUL within
    /// `max` bytes gives `ENAMETOOLONG`; a bad page before the NUL, `EFAULT`.
    /// Pages after the NUL are never touched.
    pub fn read_cstring(&mut self, addr: u64, max: usize, frames: &mut Frames, phys: &impl PhysMem) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut chunk = [0u8; PAGE as usize];
        while out.len() < max {
            let va = addr.checked_add(out.len() as u64).ok_or(Errno::EFAULT)?;
            if va >= self.user_end() {
                return Err(Errno::EFAULT);
            }
            let off = va % PAGE;
            let n = ((PAGE - off) as usize).min(max - out.len());
            let frame = self.user_frame(page_floor(va), false, frames, phys)?;
            let part = &mut chunk[..n];
            phys.read(frame + off, part);
            if let Some(nul) = part.iter().position(|&b| b == 0) {
                out.extend_from_slice(&part[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(part);
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// Write `data` into user memory ignoring the VMA protection (exec
    /// filling read-only segments). The pages must lie inside VMAs.
    pub(crate) fn write_force(&mut self, addr: u64, data: &[u8], frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        self.force_each(addr, data.len(), Access::Write, frames, phys, |phys, pa, r| phys.write(pa, &data[r]))
    }

    /// Read user memory ignoring the VMA protection (a debugger's
    /// `PTRACE_PEEKDATA` of a `PROT_NONE` page). The pages must lie inside VMAs.
    pub(crate) fn read_force(&mut self, addr: u64, buf: &mut [u8], frames: &mut Frames, phys: &impl PhysMem) -> Result<(), Errno> {
        self.force_each(addr, buf.len(), Access::Read, frames, phys, |phys, pa, r| phys.read(pa, &mut buf[r]))
    }

    /// Fault in each page of `[addr, addr + len)` for `access` ignoring the
    /// VMA protection, and hand `f` its physical address and the range of
    /// the caller's buffer it holds.
    fn force_each<P: PhysMem>(
        &mut self,
        addr: u64,
        len: usize,
        access: Access,
        frames: &mut Frames,
        phys: &P,
        mut f: impl FnMut(&P, u64, core::ops::Range<usize>),
    ) -> Result<(), Errno> {
        self.user_range(addr, len)?;
        let mut done = 0usize;
        while done < len {
            let va = addr + done as u64;
            let off = va % PAGE;
            let n = ((PAGE - off) as usize).min(len - done);
            let (pte, _) = self
                .fault_page(page_floor(va), access, true, false, frames, phys)
                .map_err(|e| if e == super::FaultError::OutOfMemory { Errno::ENOMEM } else { Errno::EFAULT })?;
            f(phys, pte.frame + off, done..done + n);
            done += n;
        }
        Ok(())
    }
}
