//! Memory for devices that do DMA: whole frames from the frame allocator, reached through
//! the direct map. Their physical address is what the device uses (no IOMMU).

use core::ptr;

use l0_shim::layout::phys_to_virt;
use l0_shim::memory::{PhysRange, FRAME_SIZE};
use l0_shim::net::DmaRegion;

use crate::kernel::memory;

/// Physically contiguous, zeroed frames owned by one device's driver, freed when dropped.
pub struct DmaFrames {
    range: PhysRange,
}

impl DmaFrames {
    /// At least `len` bytes, page aligned; `None` when the frame allocator has no run that
    /// long.
    pub fn allocate(len: usize) -> Option<DmaFrames> {
        let frames = (len as u64).div_ceil(FRAME_SIZE);
        let range = memory::with_frames(|allocator| allocator.alloc_contiguous(frames, FRAME_SIZE))?;
        let mut start = range.start;
        while start < range.end {
            memory::zero_frame(start);
            start = l0_shim::memory::PhysAddr::new(start.as_u64() + FRAME_SIZE);
        }
        Some(DmaFrames { range })
    }

    /// The direct-map address of `len` bytes at `offset`, which must lie in the region: a
    /// driver bug must not reach the frames next to it.
    fn pointer(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end as u64 <= self.range.len()),
            "DMA access {offset:#x}+{len} outside a {:#x}-byte region",
            self.range.len()
        );
        (phys_to_virt(self.range.start.as_u64()) + offset as u64) as *mut u8
    }
}

impl Drop for DmaFrames {
    fn drop(&mut self) {
        // A driver drops its regions only after it stopped the device (or never started
        // it), so no DMA reaches the frames once they are free.
        let _ = memory::with_frames(|allocator| allocator.free(self.range));
    }
}

impl DmaRegion for DmaFrames {
    fn bus_address(&self) -> u64 {
        self.range.start.as_u64()
    }

    fn len(&self) -> usize {
        self.range.len() as usize
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let at = self.pointer(offset, 8);
        assert!(offset.is_multiple_of(8), "unaligned descriptor read at {offset:#x}");
        // Safe because the bounds-checked, aligned address is in frames this value owns,
        // which the direct map covers; volatile because the device writes them on its own.
        unsafe { ptr::read_volatile(at as *const u64) }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        let at = self.pointer(offset, 8);
        assert!(offset.is_multiple_of(8), "unaligned descriptor write at {offset:#x}");
        // Safe for the reasons given in `read_u64`.
        unsafe { ptr::write_volatile(at as *mut u64, value) };
    }

    fn with_bytes<T>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        let at = self.pointer(offset, len);
        // Safe because the bytes lie in frames this value owns (bounds checked), and the
        // driver lends only a buffer whose descriptor the device has handed back, so the
        // device does not write it while the slice lives.
        f(unsafe { core::slice::from_raw_parts(at, len) })
    }

    fn with_bytes_mut<T>(&mut self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        let at = self.pointer(offset, len);
        // Safe for the reasons given in `with_bytes`; `&mut self` makes the slice unique.
        f(unsafe { core::slice::from_raw_parts_mut(at, len) })
    }
}
