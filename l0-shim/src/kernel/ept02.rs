//! One vCPU's shadow EPT (EPT02): the tables the CPU walks while L2 runs.
//!
//! The monitor decides what EPT02 maps (it composes L1's EPT12 with
//! EPT01) and asks for one leaf at a time in L1 guest-physical terms
//! (`Action::MapL2`); the shim alone turns L1 addresses into host ones,
//! after checking that the block is the guest's own RAM. The tables are
//! built with the same builder as EPT01, which fills a new subtree
//! completely before linking it, so a CPU walking EPT02 at any moment sees
//! each translation as it was or as it will be.
//!
//! A leaf that overlaps an existing one (L1 changed EPT12 without INVEPT,
//! or a clean page became dirty) and a full table budget both drop the
//! whole EPT02 and start afresh: correct at the price of refaults, and
//! bounded in what one tenant can make the shim hold.

use alloc::vec::Vec;

use l0_shim::memory::{EptFlags, EptPaging, MapError, MemoryType, PageSize, PageTableBuilder, PhysAddr, PhysRange};

use crate::arch::vmx_instructions::{invept, InveptKind};
use l0_shim::action_validation::{check_l2_mapping, MapRefusal};

use crate::kernel::guest_ram::TrackingFrames;
use crate::kernel::memory::{self, DirectMap};

/// Table pages one EPT02 may hold besides its root (1 MiB).
const MAX_TABLES: usize = 256;
/// EPTP: write-back paging structures, 4-level walk (SDM 25.6.11).
const EPTP_FLAGS: u64 = 3 << 3 | 6;

pub struct Ept02 {
    root: PhysAddr,
    /// Every table page below the root.
    tables: Vec<PhysAddr>,
}

impl Ept02 {
    pub fn new() -> Option<Self> {
        let root = memory::with_frames(|frames| frames.alloc_frame())?;
        memory::zero_frame(root);
        Some(Self { root, tables: Vec::new() })
    }

    pub fn eptp(&self) -> u64 {
        self.root.as_u64() | EPTP_FLAGS
    }

    /// Table pages in use, the root included.
    pub fn pages(&self) -> usize {
        1 + self.tables.len()
    }

    /// Maps the `size_log2` block at L2 `l2_gpa` to L1 `l1_gpa` of a guest
    /// whose RAM is `ram` (guest-physical 0 up).
    pub fn map(
        &mut self,
        ram: PhysRange,
        l2_gpa: u64,
        l1_gpa: u64,
        size_log2: u8,
        permissions: u8,
    ) -> Result<(), MapRefusal> {
        let execute_only = crate::kernel::vmx_root::capabilities().is_some_and(|caps| caps.ept_vpid.execute_only());
        let (size, rwx) = check_l2_mapping(execute_only, ram.len(), l2_gpa, l1_gpa, size_log2, permissions)?;
        let flags = EptFlags::from_bits_retain(rwx).with_memory_type(MemoryType::WriteBack);
        let host = PhysAddr::new(ram.start.as_u64() + l1_gpa);
        match self.try_map(l2_gpa, host, size, flags) {
            Ok(()) => Ok(()),
            // An overlap or a full budget: start over, then map.
            Err(_) => {
                self.clear();
                self.try_map(l2_gpa, host, size, flags).map_err(|_| MapRefusal::OutOfMemory)
            }
        }
    }

    fn try_map(&mut self, l2_gpa: u64, host: PhysAddr, size: PageSize, flags: EptFlags) -> Result<(), MapError> {
        let (root, tables) = (self.root, &mut self.tables);
        memory::with_frames(|frames| {
            let mut source = TrackingFrames { frames, taken: tables, limit: MAX_TABLES };
            let mut direct_map = DirectMap;
            let mut builder = PageTableBuilder::<EptPaging, _, _>::with_root(&mut direct_map, &mut source, root)?;
            builder.map(l2_gpa, host, size, flags)
        })
    }

    /// Drops every translation: the root is emptied, the CPU's cached
    /// translations flushed, and only then are the tables freed. Whether
    /// the flush worked: if not, the tables are kept out of use for good.
    pub fn clear(&mut self) -> bool {
        memory::zero_frame(self.root);
        if let Err(error) = invept(InveptKind::SingleContext, self.eptp()) {
            log::error!("INVEPT of an EPT02 failed ({error:?}): keeping its tables out of use");
            self.tables.clear();
            return false;
        }
        memory::with_frames(|frames| {
            for table in self.tables.drain(..) {
                let _ = frames.free(PhysRange::frame(table));
            }
        });
        true
    }
}

impl Drop for Ept02 {
    fn drop(&mut self) {
        // The root may still be cached too: it goes only after a flush.
        if self.clear() {
            memory::with_frames(|frames| {
                let _ = frames.free(PhysRange::frame(self.root));
            });
        }
    }
}
