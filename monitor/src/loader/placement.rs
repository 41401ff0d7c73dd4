//! Where the loaders' pieces go in guest memory, and putting them there.

use alloc::vec::Vec;

use super::error::LoadProblem;
use super::memory_map::GuestMemoryMap;
use super::{Contents, Placement};
use crate::guest_memory::GuestMemory;

pub(crate) const PAGE_SIZE: u64 = 4096;

/// `value` rounded up to a multiple of `alignment` (a power of two), or
/// `None` if that is past `u64::MAX`.
pub(crate) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    debug_assert!(alignment.is_power_of_two());
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

pub(crate) fn align_down(value: u64, alignment: u64) -> u64 {
    debug_assert!(alignment.is_power_of_two());
    value & !(alignment - 1)
}

/// A bump allocator over the map's loadable ranges: each piece goes at the
/// lowest suitably aligned address at or above the previous one, skipping
/// the legacy BIOS area. Everything below the starting point (the kernel)
/// is never handed out.
pub(crate) struct Placer<'a> {
    map: &'a GuestMemoryMap,
    start: u64,
    cursor: u64,
    placements: Vec<Placement>,
}

impl<'a> Placer<'a> {
    pub(crate) fn new(map: &'a GuestMemoryMap, start: u64) -> Self {
        Self { map, start, cursor: start, placements: Vec::new() }
    }

    pub(crate) fn place(&mut self, contents: Contents, length: u64, alignment: u64) -> Result<u64, LoadProblem> {
        for range in self.map.loadable_ranges() {
            let Some(start) = align_up(self.cursor.max(range.start), alignment) else { break };
            if start.checked_add(length).is_some_and(|end| end <= range.end) {
                self.cursor = start + length;
                self.placements.push(Placement { contents, start, length });
                return Ok(start);
            }
        }
        Err(LoadProblem::NoRoom { what: contents, length, from: self.start, usable_end: self.map.usable_end() })
    }

    pub(crate) fn into_placements(self) -> Vec<Placement> {
        self.placements
    }
}

/// Refuses a string with a NUL byte, which the guest would see cut short.
pub(crate) fn check_no_nul(what: Contents, string: &[u8]) -> Result<(), LoadProblem> {
    match string.iter().position(|&byte| byte == 0) {
        Some(offset) => Err(LoadProblem::NulInString { what, offset }),
        None => Ok(()),
    }
}

/// Writes a planned piece. The plan was checked against guest RAM, so a
/// refusal is a loader bug; it still becomes an error naming the piece.
pub(crate) fn write(
    memory: &mut impl GuestMemory,
    what: Contents,
    address: u64,
    bytes: &[u8],
) -> Result<(), LoadProblem> {
    memory.write(address, bytes).map_err(|error| LoadProblem::WriteRefused { what, error })
}

/// Writes `string` and its terminating NUL.
pub(crate) fn write_c_string(
    memory: &mut impl GuestMemory,
    what: Contents,
    address: u64,
    string: &[u8],
) -> Result<(), LoadProblem> {
    write(memory, what, address, string)?;
    write(memory, what, address + string.len() as u64, &[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0x1001, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(0x2000, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(u64::MAX - 5, 8), None);
        assert_eq!(align_down(0x2fff, PAGE_SIZE), 0x2000);
    }

    #[test]
    fn pieces_go_up_in_order_and_skip_the_bios_area() {
        let map = GuestMemoryMap::new(2 << 20).unwrap();
        let mut placer = Placer::new(&map, 0x9_e001);
        assert_eq!(placer.place(Contents::CommandLine, 0x10, 8), Ok(0x9_e008));
        assert_eq!(placer.place(Contents::Module { index: 0 }, 0x1000, PAGE_SIZE), Ok(0x10_0000));
        assert_eq!(placer.place(Contents::LoaderName, 3, 1), Ok(0x10_1000));
        assert_eq!(placer.place(Contents::ModuleList, 0, 8), Ok(0x10_1008));
        assert_eq!(
            placer.place(Contents::Module { index: 1 }, 1 << 20, PAGE_SIZE),
            Err(LoadProblem::NoRoom {
                what: Contents::Module { index: 1 },
                length: 1 << 20,
                from: 0x9_e001,
                usable_end: 2 << 20
            })
        );
        assert_eq!(placer.place(Contents::Module { index: 2 }, u64::MAX, 1).map_err(|_| ()), Err(()));
        assert_eq!(
            placer.into_placements(),
            [
                Placement { contents: Contents::CommandLine, start: 0x9_e008, length: 0x10 },
                Placement { contents: Contents::Module { index: 0 }, start: 0x10_0000, length: 0x1000 },
                Placement { contents: Contents::LoaderName, start: 0x10_1000, length: 3 },
                Placement { contents: Contents::ModuleList, start: 0x10_1008, length: 0 },
            ]
        );
    }
}
