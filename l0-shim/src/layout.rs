//! The shim's virtual address space.
//!
//! ```text
//! 0x0000_0000_0000_0000 ..  lower half: unmapped in the shim's own tables
//!                           (kept free for the monitors' user address spaces)
//! 0xffff_8000_0000_0000 ..  direct map of all physical memory (RW, no-execute)
//! 0xffff_ff00_0000_0000 ..  device registers (MMIO), uncached, no-execute
//! 0xffff_ffff_8000_0000 ..  the shim image, per section permissions (W^X)
//! ```

/// Where all of physical memory is mapped, read-write and no-execute.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Physical memory the early boot tables map at DIRECT_MAP_BASE.
pub const BOOT_DIRECT_MAP_SIZE: u64 = 4 << 30;
/// Where device registers are mapped, uncached. Not in the direct map: it maps every
/// range of the loader's memory map write-back with large pages, and firmware may list a
/// device's registers there as reserved.
pub const MMIO_WINDOW_BASE: u64 = 0xffff_ff00_0000_0000;
pub const MMIO_WINDOW_SIZE: u64 = 1 << 39;
/// Where the shim's image is linked (code-model=kernel: the top 2 GiB).
pub const KERNEL_VIRT_OFFSET: u64 = 0xffff_ffff_8000_0000;

/// The direct-map address of a physical address.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP_BASE + phys
}

/// The physical address behind a direct-map address, if it is one.
pub const fn direct_map_to_phys(virt: u64) -> Option<u64> {
    if virt >= DIRECT_MAP_BASE && virt < MMIO_WINDOW_BASE {
        Some(virt - DIRECT_MAP_BASE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_round_trips() {
        for phys in [0, 0x1000, 0x1234_5678, BOOT_DIRECT_MAP_SIZE - 1, 1 << 45] {
            assert_eq!(direct_map_to_phys(phys_to_virt(phys)), Some(phys));
        }
        assert_eq!(direct_map_to_phys(0x1000), None);
        assert_eq!(direct_map_to_phys(KERNEL_VIRT_OFFSET + 0x1000), None);
        assert_eq!(direct_map_to_phys(MMIO_WINDOW_BASE), None);
        const { assert!(MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE <= KERNEL_VIRT_OFFSET) };
    }
}
