//! Guest linear-to-physical translation through the guest's own page
//! tables (Intel SDM vol. 3A, chapter 4), for reading the instruction a
//! guest was executing when it touched emulated MMIO.
//!
//! The hardware has already done the guest's translation once (the
//! instruction was fetched), so only presence matters here, not access
//! rights. All four of the guest's paging modes are walked: none, 32-bit
//! (with 4-MiB pages under CR4.PSE), PAE and 4-level (with 2-MiB and
//! 1-GiB pages). Every table read goes through [`GuestMemory`], so a guest
//! that points its tables outside its RAM gets an error, not a wild read.

use core::fmt;

use crate::guest_memory::GuestMemory;
use crate::loader::{FOUR_GIB, MMIO_HOLE_START};

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1 << 0;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Physical-address bits of a 64-bit entry (MAXPHYADDR up to 52).
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The control registers that select and root the guest's paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// Why a linear address has no translation the monitor can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A paging-structure entry on the way is not present.
    NotPresent { linear: u64, level: u8 },
    /// A paging structure lies outside the guest's RAM.
    TableOutsideRam { gpa: u64 },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPresent { linear, level } => {
                write!(f, "linear address {linear:#x} is not mapped (level-{level} entry not present)")
            }
            Self::TableOutsideRam { gpa } => write!(f, "a paging structure at {gpa:#x} lies outside the guest's RAM"),
        }
    }
}

/// The `GuestMemory` offset of a guest-physical address: below the MMIO
/// hole the same, above 4 GiB shifted down by the hole (see
/// `loader::memory_map`); `None` inside the hole.
pub fn ram_offset(gpa: u64) -> Option<u64> {
    if gpa < MMIO_HOLE_START {
        Some(gpa)
    } else if gpa >= FOUR_GIB {
        Some(gpa - (FOUR_GIB - MMIO_HOLE_START))
    } else {
        None
    }
}

/// Reads guest-physical bytes through the memory map.
pub fn read_physical(memory: &(impl GuestMemory + ?Sized), gpa: u64, buffer: &mut [u8]) -> bool {
    ram_offset(gpa).is_some_and(|offset| memory.read(offset, buffer).is_ok())
}

fn entry(memory: &(impl GuestMemory + ?Sized), gpa: u64, wide: bool) -> Result<u64, WalkError> {
    let mut bytes = [0u8; 8];
    let buffer = if wide { &mut bytes[..] } else { &mut bytes[..4] };
    if read_physical(memory, gpa, buffer) {
        Ok(u64::from_le_bytes(bytes))
    } else {
        Err(WalkError::TableOutsideRam { gpa })
    }
}

/// The guest-physical address `linear` maps to.
pub fn translate(memory: &(impl GuestMemory + ?Sized), paging: &PagingState, linear: u64) -> Result<u64, WalkError> {
    if paging.cr0 & CR0_PG == 0 {
        return Ok(linear & 0xffff_ffff);
    }
    let not_present = |level| WalkError::NotPresent { linear, level };
    if paging.efer & EFER_LMA != 0 || paging.cr4 & CR4_PAE != 0 {
        // 4-level: PML4, PDPT, PD, PT with 9 index bits each; PAE: the
        // PDPT has 4 entries indexed by bits 31:30, rooted at CR3[31:5].
        let (mut table, levels) = if paging.efer & EFER_LMA != 0 {
            (paging.cr3 & ADDRESS_MASK, 4u8)
        } else {
            (paging.cr3 & 0xffff_ffe0, 3u8)
        };
        let linear = if levels == 3 { linear & 0xffff_ffff } else { linear };
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * u32::from(level - 1);
            let index = if levels == 3 && level == 3 { (linear >> 30) & 3 } else { (linear >> shift) & 0x1ff };
            let value = entry(memory, table + index * 8, true)?;
            if value & PRESENT == 0 {
                return Err(not_present(level));
            }
            // PS in a PDPTE (1 GiB, 4-level only) or a PDE (2 MiB).
            let large = value & PAGE_SIZE_BIT != 0 && (level == 2 || (level == 3 && levels == 4));
            if large {
                let page_mask = (1u64 << shift) - 1;
                return Ok((value & ADDRESS_MASK & !page_mask) | (linear & page_mask));
            }
            table = value & ADDRESS_MASK;
        }
        return Ok(table | (linear & 0xfff));
    }
    // 32-bit paging: 1024-entry tables of 4-byte entries.
    let linear = linear & 0xffff_ffff;
    let pde = entry(memory, (paging.cr3 & 0xffff_f000) + ((linear >> 22) << 2), false)?;
    if pde & PRESENT == 0 {
        return Err(not_present(2));
    }
    if pde & PAGE_SIZE_BIT != 0 && paging.cr4 & CR4_PSE != 0 {
        // A 4-MiB page; PSE-36's bits 20:13 give address bits 39:32.
        let high = ((pde >> 13) & 0xff) << 32;
        return Ok(high | (pde & 0xffc0_0000) | (linear & 0x3f_ffff));
    }
    let pte = entry(memory, (pde & 0xffff_f000) + (((linear >> 12) & 0x3ff) << 2), false)?;
    if pte & PRESENT == 0 {
        return Err(not_present(1));
    }
    Ok((pte & 0xffff_f000) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;

    const LONG: PagingState = PagingState { cr0: CR0_PG | 1, cr3: 0x1000, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8) };

    #[test]
    fn without_paging_linear_is_physical() {
        let memory = VecMemory::new(0x1000);
        let off = PagingState { cr0: 1, cr3: 0, cr4: 0, efer: 0 };
        assert_eq!(translate(&memory, &off, 0xfee0_0030), Ok(0xfee0_0030));
    }

    /// Linux's fixmap: a 4-KiB page at 0xffffffffff5fc000 (the APIC's
    /// usual fixmap slot) through four levels, plus a 2-MiB and a 1-GiB
    /// page elsewhere.
    #[test]
    fn four_level_walks_follow_every_page_size() {
        let mut memory = VecMemory::new(0x10_0000);
        let linear: u64 = 0xffff_ffff_ff5f_c0f0;
        let (pml4, pdpt, pd, pt) =
            ((linear >> 39) & 0x1ff, (linear >> 30) & 0x1ff, (linear >> 21) & 0x1ff, (linear >> 12) & 0x1ff);
        memory.write_u64(0x1000 + pml4 * 8, 0x2000 | 3).unwrap();
        memory.write_u64(0x2000 + pdpt * 8, 0x3000 | 3).unwrap();
        memory.write_u64(0x3000 + pd * 8, 0x4000 | 3).unwrap();
        memory.write_u64(0x4000 + pt * 8, 0xfee0_0000 | 0x1b | (1 << 63)).unwrap();
        assert_eq!(translate(&memory, &LONG, linear), Ok(0xfee0_00f0));
        // A 2-MiB page at PD index 0 of the same PDPT entry's neighbour.
        memory.write_u64(0x2000, 0x5000 | 3).unwrap();
        memory.write_u64(0x1000, 0x2000 | 3).unwrap();
        memory.write_u64(0x5000 + 8, 0x0060_0000 | 0x83).unwrap();
        assert_eq!(translate(&memory, &LONG, 0x0020_1234), Ok(0x0060_1234));
        // A 1-GiB page at PDPT index 3.
        memory.write_u64(0x2000 + 3 * 8, 0x4000_0000 | 0x83).unwrap();
        assert_eq!(translate(&memory, &LONG, 0xc123_4567), Ok(0x4123_4567));
        // Not present, and tables outside RAM.
        assert_eq!(
            translate(&memory, &LONG, 0x80_0000_0000),
            Err(WalkError::NotPresent { linear: 0x80_0000_0000, level: 4 })
        );
        memory.write_u64(0x2000 + 4 * 8, 0x7000_0000 | 3).unwrap();
        assert_eq!(translate(&memory, &LONG, 0x1_0000_0000), Err(WalkError::TableOutsideRam { gpa: 0x7000_0000 }));
    }

    #[test]
    fn pae_and_32_bit_walks() {
        let mut memory = VecMemory::new(0x10_0000);
        // PAE: CR3 -> 4 PDPTEs at 0x1020; linear 0xc0201abc: PDPT 3, PD 1, PT 1.
        let pae = PagingState { cr0: CR0_PG | 1, cr3: 0x1020, cr4: CR4_PAE, efer: 0 };
        memory.write_u64(0x1020 + 3 * 8, 0x2000 | 1).unwrap();
        memory.write_u64(0x2000 + 8, 0x3000 | 3).unwrap();
        memory.write_u64(0x3000 + 8, 0xfec0_0000 | 3).unwrap();
        assert_eq!(translate(&memory, &pae, 0xc020_1abc), Ok(0xfec0_0abc));
        // 32-bit: linear 0xc0801010 -> PDE 0x302, PTE 1.
        let flat = PagingState { cr0: CR0_PG | 1, cr3: 0x5000, cr4: 0, efer: 0 };
        memory.write_u32(0x5000 + 0x302 * 4, 0x6000 | 3).unwrap();
        memory.write_u32(0x6000 + 4, 0xfee0_0000 | 3).unwrap();
        assert_eq!(translate(&memory, &flat, 0xc080_1010), Ok(0xfee0_0010));
        // 4-MiB page with CR4.PSE; without PSE the PS bit is ignored.
        memory.write_u32(0x5000 + 0x3fb * 4, 0xfec0_0000 | 0x83).unwrap();
        let pse = PagingState { cr4: CR4_PSE, ..flat };
        assert_eq!(translate(&memory, &pse, 0xfec0_0010), Ok(0xfec0_0010));
        assert!(translate(&memory, &flat, 0xfec0_0010).is_err());
    }

    #[test]
    fn ram_above_the_hole_is_shifted_down() {
        assert_eq!(ram_offset(0x1000), Some(0x1000));
        assert_eq!(ram_offset(0xfee0_0000), None);
        assert_eq!(ram_offset(FOUR_GIB), Some(MMIO_HOLE_START));
    }
}
