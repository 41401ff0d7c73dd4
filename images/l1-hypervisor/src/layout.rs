//! Where the hypervisor keeps what it builds: one fixed 4 MiB region of
//! physical memory above its image (16-20 MiB), identity-mapped by the boot
//! page tables. The loader's memory map must show it as available RAM and
//! the image must end below it; `check` says so before anything is written.
//!
//! The lower half holds L1's own pages (VMX regions, the EPT tables, the
//! pages EPT maps in on demand). The upper half is L2's guest-physical
//! memory, mapped 1:1 by EPT: its page tables, descriptor tables, stack, a
//! mailbox for its interrupt handlers, and the three pages the EPT checks
//! play with.

use core::fmt;

use multiboot_kernel::multiboot::{is_available, Region};

pub const PAGE_SIZE: u64 = 4096;

/// The whole region.
pub const WORK_BASE: u64 = 0x0100_0000;
pub const WORK_END: u64 = 0x0140_0000;

/// L1's pages.
pub const VMXON_REGION: u64 = WORK_BASE;
pub const VMCS_REGION: u64 = WORK_BASE + 0x1000;
/// A page shaped like a VMCS region but with a wrong revision identifier.
pub const WRONG_REVISION_REGION: u64 = WORK_BASE + 0x2000;
/// What the EPT hole is mapped to when L2 touches it.
pub const FILL_PAGE: u64 = WORK_BASE + 0x3000;
/// The two pages the remapped guest-physical page alternates between.
pub const REMAP_PAGE_A: u64 = WORK_BASE + 0x4000;
pub const REMAP_PAGE_B: u64 = WORK_BASE + 0x5000;
/// Pages for EPT paging structures.
pub const EPT_POOL_START: u64 = WORK_BASE + 0x10_0000;
pub const EPT_POOL_END: u64 = WORK_BASE + 0x20_0000;

/// L2's guest-physical memory (equal to host-physical where EPT maps it).
pub const L2_BASE: u64 = WORK_BASE + 0x20_0000;
pub const L2_PML4: u64 = L2_BASE;
pub const L2_PDPT: u64 = L2_BASE + 0x1000;
pub const L2_PAGE_DIRECTORY: u64 = L2_BASE + 0x2000;
pub const L2_GDT: u64 = L2_BASE + 0x3000;
pub const L2_IDT: u64 = L2_BASE + 0x4000;
pub const L2_TSS: u64 = L2_BASE + 0x5000;
/// Where L2's event handlers record what they saw (see protocol.rs).
pub const L2_MAILBOX: u64 = L2_BASE + 0x6000;
pub const L2_STACK_BOTTOM: u64 = L2_BASE + 0x8000;
pub const L2_STACK_TOP: u64 = L2_BASE + 0x1_0000;
/// The pages above are mapped read/write from the start.
pub const L2_MAPPED_END: u64 = L2_STACK_TOP;
/// Not mapped until L2 touches it (the EPT-violation check).
pub const L2_EPT_HOLE: u64 = L2_BASE + 0x1_0000;
/// Mapped read-only until L2 writes it (the EPT-violation check).
pub const L2_READ_ONLY: u64 = L2_BASE + 0x1_1000;
/// Mapped to REMAP_PAGE_A or REMAP_PAGE_B (the INVEPT check).
pub const L2_REMAPPED: u64 = L2_BASE + 0x1_2000;
pub const L2_END: u64 = WORK_END;

/// L2's page tables map this much linear memory 1:1 with 2 MiB pages; EPT
/// decides which of it is really there.
pub const L2_IDENTITY_MAPPED: u64 = 1 << 30;

// The EPT pool is L1's, below L2's memory.
const _: () = assert!(EPT_POOL_END <= L2_BASE);

/// Why the work region cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutProblem {
    /// The image (with .bss and stacks) reaches into the region.
    ImageOverlaps { image_end: u64 },
    /// The memory map does not show the whole region as available RAM.
    NotAvailable,
}

impl fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageOverlaps { image_end } => {
                write!(f, "the image ends at {image_end:#x}, inside the work region {WORK_BASE:#x}-{WORK_END:#x}")
            }
            Self::NotAvailable => {
                write!(f, "the memory map does not show {WORK_BASE:#x}-{WORK_END:#x} as available RAM")
            }
        }
    }
}

/// Checks that the work region is free RAM the image does not use.
pub fn check(regions: &[Region], image_end: u64) -> Result<(), LayoutProblem> {
    if image_end > WORK_BASE {
        return Err(LayoutProblem::ImageOverlaps { image_end });
    }
    if !is_available(regions, WORK_BASE, WORK_END) {
        return Err(LayoutProblem::NotAvailable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiboot_kernel::multiboot::REGION_AVAILABLE;

    fn ram(base: u64, length: u64) -> Region {
        Region { base, length, kind: REGION_AVAILABLE }
    }

    #[test]
    fn pages_are_aligned_distinct_and_inside_their_halves() {
        let l1 = [VMXON_REGION, VMCS_REGION, WRONG_REVISION_REGION, FILL_PAGE, REMAP_PAGE_A, REMAP_PAGE_B];
        let l2 = [L2_PML4, L2_PDPT, L2_PAGE_DIRECTORY, L2_GDT, L2_IDT, L2_TSS, L2_MAILBOX, L2_EPT_HOLE, L2_READ_ONLY];
        for page in l1.iter().chain(&l2).chain(&[L2_REMAPPED, EPT_POOL_START, L2_STACK_BOTTOM]) {
            assert_eq!(page % PAGE_SIZE, 0, "{page:#x}");
        }
        assert!(l1.iter().all(|&page| (WORK_BASE..EPT_POOL_START).contains(&page)));
        assert!(l2.iter().all(|&page| (L2_BASE..L2_END).contains(&page)));
        let mut all: std::vec::Vec<u64> = l1.iter().chain(&l2).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), l1.len() + l2.len());
        // The pages the EPT checks change must lie outside what is mapped from the start.
        assert!([L2_EPT_HOLE, L2_READ_ONLY, L2_REMAPPED].iter().all(|&page| page >= L2_MAPPED_END));
    }

    #[test]
    fn the_region_must_be_ram_above_the_image() {
        let map = [ram(0, 0x9f000), ram(0x10_0000, 0x0ff0_0000)];
        assert_eq!(check(&map, 0x20_0000), Ok(()));
        assert_eq!(check(&map, WORK_BASE + 1), Err(LayoutProblem::ImageOverlaps { image_end: WORK_BASE + 1 }));
        let small = [ram(0x10_0000, 0x0100_0000)];
        assert_eq!(check(&small, 0x20_0000), Err(LayoutProblem::NotAvailable));
        assert!(LayoutProblem::NotAvailable.to_string().contains("0x1000000-0x1400000"));
    }
}
