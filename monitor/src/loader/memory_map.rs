//! The guest's physical memory map, as a PC firmware would report it (e820).
//!
//! `GuestMemory` is one flat range `[0, size)`. In guest-physical space the
//! guest sees it as a PC does:
//!
//! | guest-physical            | kind     | backed by `GuestMemory` offsets |
//! |---------------------------|----------|---------------------------------|
//! | `[0, 0x9fc00)`            | RAM      | the same                        |
//! | `[0x9fc00, 0xa0000)`      | reserved | the same (EBDA)                 |
//! | `[0xa0000, 0xf0000)`      | (absent) | the same (VGA window, ROMs)     |
//! | `[0xf0000, 0x100000)`     | reserved | the same (BIOS area: MP/ACPI tables later) |
//! | `[0x100000, top)`         | RAM      | the same; `top = min(size, 3 GiB)` |
//! | `[3 GiB, 4 GiB)`          | (absent) | none: the MMIO hole (IOAPIC 0xfec00000, LAPIC 0xfee00000) |
//! | `[4 GiB, 4 GiB + size - 3 GiB)` | RAM | offsets `[3 GiB, size)`, if the guest has more than 3 GiB |
//!
//! So below 3 GiB a `GuestMemory` offset *is* the guest-physical address, and
//! the loaders, which only ever write below 3 GiB, need no translation. The
//! shim maps guest RAM per [`GuestMemoryMap::ram_mappings`]; the offsets
//! above 3 GiB are the only ones it maps elsewhere.

use alloc::vec::Vec;
use core::ops::Range;

use super::error::{LoadProblem, ProtectedArea};
use super::Contents;

/// The Extended BIOS Data Area: the top KiB of conventional memory.
pub const EBDA_START: u64 = 0x9_fc00;
pub const EBDA_END: u64 = 0xa_0000;
/// The system BIOS area, where the MP and ACPI tables will go.
pub const BIOS_AREA_START: u64 = 0xf_0000;
/// The first byte above the first MiB ("high memory").
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// The start of the 32-bit MMIO hole, kept free up to 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const FOUR_GIB: u64 = 1 << 32;
/// The loaders leave page zero alone (real-mode IVT and BIOS data area).
pub const FIRST_LOADABLE_ADDRESS: u64 = 0x1000;

/// What a range of guest-physical addresses is, in e820 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (e820 type 1, Multiboot type 1).
    Ram,
    /// Reserved: present but not for the OS to allocate (e820 type 2).
    Reserved,
}

impl MemoryKind {
    /// The type number in an e820 or Multiboot memory map entry.
    pub const fn e820_type(self) -> u32 {
        match self {
            Self::Ram => 1,
            Self::Reserved => 2,
        }
    }
}

/// One entry of the memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub length: u64,
    pub kind: MemoryKind,
}

/// Where a stretch of `GuestMemory` appears in guest-physical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamMapping {
    pub memory_offset: u64,
    pub guest_physical: u64,
    pub length: u64,
}

/// The memory map of a guest with a given amount of RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMemoryMap {
    ram_bytes: u64,
    regions: Vec<MemoryRegion>,
}

impl GuestMemoryMap {
    /// The smallest guest: the first MiB, whose layout the map assumes.
    pub const MIN_RAM_BYTES: u64 = HIGH_MEMORY_START;

    pub fn new(ram_bytes: u64) -> Result<Self, LoadProblem> {
        if ram_bytes < Self::MIN_RAM_BYTES {
            return Err(LoadProblem::GuestRamTooSmall { ram_bytes });
        }
        let below_hole = ram_bytes.min(MMIO_HOLE_START);
        let mut regions = Vec::with_capacity(5);
        regions.push(MemoryRegion { start: 0, length: EBDA_START, kind: MemoryKind::Ram });
        regions.push(MemoryRegion { start: EBDA_START, length: EBDA_END - EBDA_START, kind: MemoryKind::Reserved });
        regions.push(MemoryRegion {
            start: BIOS_AREA_START,
            length: HIGH_MEMORY_START - BIOS_AREA_START,
            kind: MemoryKind::Reserved,
        });
        if below_hole > HIGH_MEMORY_START {
            regions.push(MemoryRegion {
                start: HIGH_MEMORY_START,
                length: below_hole - HIGH_MEMORY_START,
                kind: MemoryKind::Ram,
            });
        }
        if ram_bytes > MMIO_HOLE_START {
            regions.push(MemoryRegion { start: FOUR_GIB, length: ram_bytes - MMIO_HOLE_START, kind: MemoryKind::Ram });
        }
        Ok(Self { ram_bytes, regions })
    }

    /// The map's entries, sorted by address, none overlapping.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }

    /// The guest's RAM, as `GuestMemory::size` gives it.
    pub fn ram_bytes(&self) -> u64 {
        self.ram_bytes
    }

    /// The end of the RAM below the MMIO hole: everything the loaders may
    /// write lies below it.
    pub fn usable_end(&self) -> u64 {
        self.ram_bytes.min(MMIO_HOLE_START)
    }

    /// How `GuestMemory`'s `[0, size)` lies in guest-physical space: an
    /// identity part below 3 GiB, and for bigger guests the rest at 4 GiB.
    pub fn ram_mappings(&self) -> Vec<RamMapping> {
        let mut mappings = Vec::with_capacity(2);
        mappings.push(RamMapping { memory_offset: 0, guest_physical: 0, length: self.usable_end() });
        if self.ram_bytes > MMIO_HOLE_START {
            mappings.push(RamMapping {
                memory_offset: MMIO_HOLE_START,
                guest_physical: FOUR_GIB,
                length: self.ram_bytes - MMIO_HOLE_START,
            });
        }
        mappings
    }

    /// KiB of RAM from 0 (Multiboot's `mem_lower`).
    pub fn lower_memory_kib(&self) -> u32 {
        (EBDA_START / 1024) as u32
    }

    /// KiB of RAM from 1 MiB up to the first hole (Multiboot's `mem_upper`).
    pub fn upper_memory_kib(&self) -> u32 {
        // At most 3 GiB - 1 MiB in KiB, which fits.
        ((self.usable_end() - HIGH_MEMORY_START) / 1024) as u32
    }

    /// The ranges the loaders may fill: RAM below the hole, less page zero.
    pub(crate) fn loadable_ranges(&self) -> [Range<u64>; 2] {
        [FIRST_LOADABLE_ADDRESS..EBDA_START, HIGH_MEMORY_START..self.usable_end()]
    }

    /// Checks that `[start, start + length)` lies in one loadable range, and
    /// says what it hits if not.
    pub(crate) fn check_loadable(&self, what: Contents, start: u64, length: u64) -> Result<(), LoadProblem> {
        let usable_end = self.usable_end();
        let outside = || LoadProblem::OutsideRam { what, start, length, usable_end, ram_bytes: self.ram_bytes };
        let end = start.checked_add(length).ok_or_else(outside)?;
        if end > usable_end {
            return Err(outside());
        }
        if self.loadable_ranges().iter().any(|range| range.start <= start && end <= range.end) {
            return Ok(());
        }
        // Inside usable RAM but in no loadable range: it touches one of the gaps.
        let area =
            if start < FIRST_LOADABLE_ADDRESS { ProtectedArea::FirstPage } else { ProtectedArea::LegacyBiosArea };
        Err(LoadProblem::InProtectedArea { what, start, length, area })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn region(start: u64, length: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { start, length, kind }
    }

    #[test]
    fn small_guest_has_the_pc_layout() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        assert_eq!(
            map.regions(),
            &[
                region(0, 0x9_fc00, MemoryKind::Ram),
                region(0x9_fc00, 0x400, MemoryKind::Reserved),
                region(0xf_0000, 0x1_0000, MemoryKind::Reserved),
                region(0x10_0000, 63 * MIB, MemoryKind::Ram),
            ]
        );
        assert_eq!(map.usable_end(), 64 * MIB);
        assert_eq!(map.ram_mappings(), [RamMapping { memory_offset: 0, guest_physical: 0, length: 64 * MIB }]);
        assert_eq!((map.lower_memory_kib(), map.upper_memory_kib()), (639, 63 * 1024));
        assert_eq!(MemoryKind::Ram.e820_type(), 1);
        assert_eq!(MemoryKind::Reserved.e820_type(), 2);
    }

    #[test]
    fn guest_of_exactly_one_mib_has_no_high_memory() {
        let map = GuestMemoryMap::new(MIB).unwrap();
        assert_eq!(map.regions().len(), 3);
        assert_eq!(map.upper_memory_kib(), 0);
        assert_eq!(GuestMemoryMap::new(MIB - 1), Err(LoadProblem::GuestRamTooSmall { ram_bytes: MIB - 1 }));
    }

    #[test]
    fn three_gib_fill_the_space_below_the_hole() {
        let map = GuestMemoryMap::new(3 * GIB).unwrap();
        assert_eq!(map.regions().last(), Some(&region(MIB, 3 * GIB - MIB, MemoryKind::Ram)));
        assert_eq!(map.ram_mappings().len(), 1);
    }

    #[test]
    fn ram_beyond_three_gib_moves_above_four_gib() {
        let map = GuestMemoryMap::new(5 * GIB).unwrap();
        assert_eq!(
            &map.regions()[3..],
            &[region(MIB, 3 * GIB - MIB, MemoryKind::Ram), region(4 * GIB, 2 * GIB, MemoryKind::Ram)]
        );
        assert_eq!(map.usable_end(), 3 * GIB);
        assert_eq!(
            map.ram_mappings(),
            [
                RamMapping { memory_offset: 0, guest_physical: 0, length: 3 * GIB },
                RamMapping { memory_offset: 3 * GIB, guest_physical: 4 * GIB, length: 2 * GIB },
            ]
        );
        assert_eq!(map.upper_memory_kib(), ((3 * GIB - MIB) / 1024) as u32);
    }

    #[test]
    fn loadable_means_ram_below_the_hole_outside_page_zero_and_the_bios_area() {
        let map = GuestMemoryMap::new(64 * MIB).unwrap();
        let what = Contents::ElfSegment { index: 1 };
        assert_eq!(map.check_loadable(what, 0x1000, 0x9_ec00), Ok(()));
        assert_eq!(map.check_loadable(what, MIB, 63 * MIB), Ok(()));
        assert_eq!(
            map.check_loadable(what, 0xfff, 2),
            Err(LoadProblem::InProtectedArea { what, start: 0xfff, length: 2, area: ProtectedArea::FirstPage })
        );
        assert_eq!(
            map.check_loadable(what, 0x9_f000, 0x1000),
            Err(LoadProblem::InProtectedArea {
                what,
                start: 0x9_f000,
                length: 0x1000,
                area: ProtectedArea::LegacyBiosArea
            })
        );
        // Spanning low and high memory crosses the BIOS area too.
        assert!(matches!(
            map.check_loadable(what, 0x9_0000, MIB),
            Err(LoadProblem::InProtectedArea { area: ProtectedArea::LegacyBiosArea, .. })
        ));
        assert_eq!(
            map.check_loadable(what, 64 * MIB - 1, 2),
            Err(LoadProblem::OutsideRam {
                what,
                start: 64 * MIB - 1,
                length: 2,
                usable_end: 64 * MIB,
                ram_bytes: 64 * MIB
            })
        );
        assert!(matches!(map.check_loadable(what, u64::MAX, 2), Err(LoadProblem::OutsideRam { .. })));

        let big = GuestMemoryMap::new(4 * GIB).unwrap();
        assert!(matches!(big.check_loadable(what, 3 * GIB, 1), Err(LoadProblem::OutsideRam { .. })));
    }
}
