//! L1's guest-physical address space over its RAM.
//!
//! [`GuestMemory`] addresses RAM by offset; guest-physical addresses skip
//! the MMIO hole below 4 GiB (see `loader::memory_map`). Everything in
//! this module tree takes guest-physical addresses, so the monitor wraps
//! L1's RAM in a [`PhysicalView`] before calling it. An access that
//! touches the hole or crosses its edge fails like one outside RAM: the
//! callers treat that as an empty bus (reads of all ones, dropped writes)
//! or an invalid address, as the SDM has it for each structure.

use crate::guest_memory::{GuestMemory, OutOfRange};
use crate::guest_paging::ram_offset;
use crate::loader::{FOUR_GIB, MMIO_HOLE_START};

/// L1's RAM seen by guest-physical address.
pub struct PhysicalView<'a, M: GuestMemory + ?Sized> {
    ram: &'a mut M,
}

impl<'a, M: GuestMemory + ?Sized> PhysicalView<'a, M> {
    pub fn new(ram: &'a mut M) -> Self {
        Self { ram }
    }

    /// The RAM offset of `[gpa, gpa + len)`, if it lies in RAM on one side
    /// of the hole.
    fn offset(&self, gpa: u64, len: usize) -> Result<u64, OutOfRange> {
        let error = OutOfRange { gpa, len: len as u64 };
        let last = gpa.checked_add((len as u64).saturating_sub(1)).ok_or(error)?;
        let (first_offset, last_offset) = (ram_offset(gpa).ok_or(error)?, ram_offset(last).ok_or(error)?);
        if last_offset - first_offset != last - gpa {
            return Err(error);
        }
        Ok(first_offset)
    }
}

impl<M: GuestMemory + ?Sized> GuestMemory for PhysicalView<'_, M> {
    /// The end of the highest guest-physical RAM address.
    fn size(&self) -> u64 {
        let ram = self.ram.size();
        if ram <= MMIO_HOLE_START {
            ram
        } else {
            FOUR_GIB + (ram - MMIO_HOLE_START)
        }
    }

    fn contains(&self, gpa: u64, len: u64) -> bool {
        usize::try_from(len)
            .is_ok_and(|len| self.offset(gpa, len).is_ok_and(|offset| self.ram.contains(offset, len as u64)))
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let offset = self.offset(gpa, buffer.len())?;
        self.ram.read(offset, buffer).map_err(|_| OutOfRange { gpa, len: buffer.len() as u64 })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let offset = self.offset(gpa, data.len())?;
        self.ram.write(offset, data).map_err(|_| OutOfRange { gpa, len: data.len() as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;

    /// A fake RAM that reports 3 GiB + 8 KiB but stores only its first and
    /// last pages' worth around the hole edge, by shifting.
    struct SparseRam {
        low: VecMemory,
        high: VecMemory,
    }

    impl GuestMemory for SparseRam {
        fn size(&self) -> u64 {
            MMIO_HOLE_START + 0x2000
        }
        fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
            if offset >= MMIO_HOLE_START {
                self.high.read(offset - MMIO_HOLE_START, buffer)
            } else {
                self.low.read(offset, buffer)
            }
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfRange> {
            if offset >= MMIO_HOLE_START {
                self.high.write(offset - MMIO_HOLE_START, data)
            } else {
                self.low.write(offset, data)
            }
        }
    }

    #[test]
    fn addresses_above_4_gib_reach_the_ram_after_the_hole() {
        let mut ram = SparseRam { low: VecMemory::new(0x1000), high: VecMemory::new(0x2000) };
        let mut view = PhysicalView::new(&mut ram);
        assert_eq!(view.size(), FOUR_GIB + 0x2000);
        view.write_u64(FOUR_GIB + 0x10, 0x1234).unwrap();
        view.write_u64(0x10, 0x5678).unwrap();
        assert_eq!(view.read_u64(FOUR_GIB + 0x10).unwrap(), 0x1234);
        assert_eq!(ram.high.read_u64(0x10).unwrap(), 0x1234);
        assert_eq!(ram.low.read_u64(0x10).unwrap(), 0x5678);
        let view = PhysicalView::new(&mut ram);
        // The hole itself, and a range crossing into it, are not RAM.
        assert!(view.read_u64(MMIO_HOLE_START).is_err());
        assert!(view.read_u64(MMIO_HOLE_START - 4).is_err());
        assert!(!view.contains(FOUR_GIB - 0x1000, 0x2000));
        assert!(view.contains(FOUR_GIB, 0x1000));
        assert!(!view.contains(FOUR_GIB + 0x1000, 0x2000));
    }
}
