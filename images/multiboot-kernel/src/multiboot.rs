//! Multiboot (version 1) boot information, parsed from bytes.
//!
//! The loader leaves a 32-bit physical pointer in EBX to a structure whose
//! `flags` word says which of the later fields are valid. The kernel copies
//! the bytes out of guest memory and decodes them here, so the decoding is
//! tested on the host and never trusts a length it has not checked.

use core::fmt;

/// EAX at the kernel's entry when a multiboot loader started it.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// Info flag bits: which fields the loader filled in.
pub const INFO_MEMORY: u32 = 1 << 0; // mem_lower, mem_upper
pub const INFO_CMDLINE: u32 = 1 << 2; // cmdline
pub const INFO_MODULES: u32 = 1 << 3; // mods_count, mods_addr
pub const INFO_MEMORY_MAP: u32 = 1 << 6; // mmap_length, mmap_addr
pub const INFO_LOADER_NAME: u32 = 1 << 9; // boot_loader_name

/// Bytes of the info structure the kernel reads (through boot_loader_name).
pub const INFO_HEADER_SIZE: usize = 68;

/// Memory map entry type for RAM the OS may use.
pub const REGION_AVAILABLE: u32 = 1;

/// The fixed part of the boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoHeader {
    pub flags: u32,
    /// KiB below 640 KiB and KiB from 1 MiB up to the first hole.
    pub basic_memory: Option<(u32, u32)>,
    /// Physical address of a NUL-terminated string.
    pub cmdline: Option<u32>,
    /// Count and physical address of the module list.
    pub modules: Option<(u32, u32)>,
    /// Physical address and length in bytes of the memory map.
    pub memory_map: Option<(u32, u32)>,
    /// Physical address of a NUL-terminated string.
    pub loader_name: Option<u32>,
}

impl InfoHeader {
    pub fn parse(bytes: &[u8; INFO_HEADER_SIZE]) -> Self {
        let word = |offset: usize| {
            u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
        };
        let flags = word(0);
        let has = |bit: u32| flags & bit != 0;
        Self {
            flags,
            basic_memory: has(INFO_MEMORY).then(|| (word(4), word(8))),
            cmdline: has(INFO_CMDLINE).then(|| word(16)),
            modules: has(INFO_MODULES).then(|| (word(20), word(24))),
            memory_map: has(INFO_MEMORY_MAP).then(|| (word(48), word(44))),
            loader_name: has(INFO_LOADER_NAME).then(|| word(64)),
        }
    }
}

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    pub base: u64,
    pub length: u64,
    pub kind: u32,
}

impl Region {
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.length)
    }

    pub fn is_available(&self) -> bool {
        self.kind == REGION_AVAILABLE
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            1 => "available",
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "bad",
            _ => "unknown",
        }
    }
}

/// A memory map entry whose `size` field makes no sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedEntry {
    pub offset: usize,
    pub size: u32,
}

/// The entries of a memory map: each is `size` (u32, not counting itself),
/// then base (u64), length (u64) and type (u32), possibly followed by more
/// bytes that `size` covers.
pub fn memory_map_entries(bytes: &[u8]) -> impl Iterator<Item = Result<Region, MalformedEntry>> + '_ {
    let mut offset = 0;
    core::iter::from_fn(move || {
        let rest = bytes.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let size_bytes = rest.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let Some(size) = size_bytes.filter(|&size| size >= 20 && rest.len() >= 4 + size as usize) else {
            let error = MalformedEntry { offset, size: size_bytes.unwrap_or(0) };
            offset = bytes.len();
            return Some(Err(error));
        };
        let u64_at = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().expect("eight bytes"));
        let region = Region {
            base: u64_at(4),
            length: u64_at(12),
            kind: u32::from_le_bytes(rest[20..24].try_into().expect("four bytes")),
        };
        offset += 4 + size as usize;
        Some(Ok(region))
    })
}

/// What is wrong with a memory map as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapProblem {
    NoAvailableRam,
    EmptyRegion(Region),
    Wraps(Region),
    AvailableOverlap(Region, Region),
}

impl fmt::Display for MapProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapProblem::NoAvailableRam => write!(f, "no available region"),
            MapProblem::EmptyRegion(r) => write!(f, "empty region at {:#x}", r.base),
            MapProblem::Wraps(r) => write!(f, "region at {:#x} of {:#x} bytes wraps around", r.base, r.length),
            MapProblem::AvailableOverlap(a, b) => {
                write!(f, "available regions overlap: {:#x}+{:#x} and {:#x}+{:#x}", a.base, a.length, b.base, b.length)
            }
        }
    }
}

/// Checks a map for the mistakes an OS would trip over.
pub fn check_memory_map(regions: &[Region]) -> Result<(), MapProblem> {
    if !regions.iter().any(Region::is_available) {
        return Err(MapProblem::NoAvailableRam);
    }
    for region in regions {
        if region.length == 0 {
            return Err(MapProblem::EmptyRegion(*region));
        }
        if region.end().is_none() {
            return Err(MapProblem::Wraps(*region));
        }
    }
    let available = || regions.iter().filter(|r| r.is_available());
    for (i, a) in available().enumerate() {
        for b in available().skip(i + 1) {
            if a.base < b.base + b.length && b.base < a.base + a.length {
                return Err(MapProblem::AvailableOverlap(*a, *b));
            }
        }
    }
    Ok(())
}

/// Whether `[start, end)` lies wholly inside one available region.
pub fn is_available(regions: &[Region], start: u64, end: u64) -> bool {
    regions.iter().any(|r| r.is_available() && r.base <= start && r.end().is_some_and(|e| end <= e))
}

/// The available RAM inside `[floor, ceiling)`, as page-aligned ranges.
pub fn available_ranges(regions: &[Region], floor: u64, ceiling: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    const PAGE: u64 = 4096;
    regions.iter().filter(|r| r.is_available()).filter_map(move |r| {
        let start = r.base.max(floor).checked_next_multiple_of(PAGE)?;
        let end = r.end()?.min(ceiling) / PAGE * PAGE;
        (start < end).then_some((start, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u64, length: u64, kind: u32) -> Vec<u8> {
        let mut bytes = 20u32.to_le_bytes().to_vec();
        bytes.extend(base.to_le_bytes());
        bytes.extend(length.to_le_bytes());
        bytes.extend(kind.to_le_bytes());
        bytes
    }

    fn qemu_128m() -> Vec<Region> {
        vec![
            Region { base: 0, length: 0x9fc00, kind: 1 },
            Region { base: 0x9fc00, length: 0x400, kind: 2 },
            Region { base: 0xf0000, length: 0x10000, kind: 2 },
            Region { base: 0x100000, length: 0x7ee0000, kind: 1 },
            Region { base: 0x7fe0000, length: 0x20000, kind: 2 },
            Region { base: 0xfffc0000, length: 0x40000, kind: 2 },
        ]
    }

    #[test]
    fn header_fields_follow_the_flags() {
        let mut bytes = [0u8; INFO_HEADER_SIZE];
        bytes[0..4].copy_from_slice(&(INFO_MEMORY | INFO_CMDLINE | INFO_MEMORY_MAP).to_le_bytes());
        bytes[4..8].copy_from_slice(&639u32.to_le_bytes());
        bytes[8..12].copy_from_slice(&130_048u32.to_le_bytes());
        bytes[16..20].copy_from_slice(&0x9000u32.to_le_bytes());
        bytes[44..48].copy_from_slice(&144u32.to_le_bytes());
        bytes[48..52].copy_from_slice(&0x9100u32.to_le_bytes());
        bytes[64..68].copy_from_slice(&0x9200u32.to_le_bytes());
        let header = InfoHeader::parse(&bytes);
        assert_eq!(header.basic_memory, Some((639, 130_048)));
        assert_eq!(header.cmdline, Some(0x9000));
        assert_eq!(header.memory_map, Some((0x9100, 144)));
        assert_eq!(header.modules, None);
        assert_eq!(header.loader_name, None, "flag 9 is clear");
    }

    #[test]
    fn memory_map_entries_follow_their_size_field() {
        let mut bytes = entry(0, 0x9fc00, 1);
        // An entry with four extra bytes that `size` covers.
        let mut long = entry(0x100000, 0x7ee0000, 1);
        long[0..4].copy_from_slice(&24u32.to_le_bytes());
        long.extend([0xee; 4]);
        bytes.extend(long);
        bytes.extend(entry(0xfffc0000, 0x40000, 2));
        let regions: Vec<_> = memory_map_entries(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            regions,
            [
                Region { base: 0, length: 0x9fc00, kind: 1 },
                Region { base: 0x100000, length: 0x7ee0000, kind: 1 },
                Region { base: 0xfffc0000, length: 0x40000, kind: 2 },
            ]
        );
    }

    #[test]
    fn malformed_entries_stop_the_walk() {
        let mut bytes = entry(0, 0x1000, 1);
        bytes.extend(4u32.to_le_bytes());
        bytes.extend([0; 20]);
        let entries: Vec<_> = memory_map_entries(&bytes).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], Err(MalformedEntry { offset: 24, size: 4 }));

        let truncated = &entry(0, 0x1000, 1)[..10];
        let entries: Vec<_> = memory_map_entries(truncated).collect();
        assert_eq!(entries, [Err(MalformedEntry { offset: 0, size: 20 })]);
    }

    #[test]
    fn a_qemu_map_is_sane() {
        let map = qemu_128m();
        assert_eq!(check_memory_map(&map), Ok(()));
        assert!(is_available(&map, 0x100000, 0x200000));
        assert!(!is_available(&map, 0x9f000, 0x101000));
    }

    #[test]
    fn insane_maps_are_named() {
        assert_eq!(check_memory_map(&[]), Err(MapProblem::NoAvailableRam));
        let wraps = Region { base: u64::MAX - 1, length: 4, kind: 2 };
        assert_eq!(check_memory_map(&[qemu_128m()[0], wraps]), Err(MapProblem::Wraps(wraps)));
        let a = Region { base: 0x100000, length: 0x200000, kind: 1 };
        let b = Region { base: 0x200000, length: 0x200000, kind: 1 };
        assert_eq!(check_memory_map(&[a, b]), Err(MapProblem::AvailableOverlap(a, b)));
        let empty = Region { base: 0x100000, length: 0, kind: 1 };
        assert_eq!(check_memory_map(&[a, empty]), Err(MapProblem::EmptyRegion(empty)));
    }

    #[test]
    fn available_ranges_are_clipped_and_page_aligned() {
        let map = qemu_128m();
        let ranges: Vec<_> = available_ranges(&map, 0x123456, 1 << 32).collect();
        assert_eq!(ranges, [(0x124000, 0x7fe0000)]);
        let ranges: Vec<_> = available_ranges(&map, 0, 0x4000_0000).collect();
        assert_eq!(ranges, [(0, 0x9f000), (0x100000, 0x7fe0000)]);
        assert_eq!(available_ranges(&map, 0x7fe0000, 1 << 32).count(), 0);
    }
}
