//! Extended page tables (SDM 29.3): a 4-level table that maps guest-physical
//! 4 KiB pages to host-physical ones, built in memory the caller lends
//! through [`TableMemory`], so the same code runs on the machine and in host
//! tests against a recorded memory.
//!
//! Leaves are write-back (memory type 6 in bits 5:3); every non-leaf entry
//! allows read, write and execute, so a leaf alone decides the access.

use core::fmt;

/// Physical memory the tables live in: 8-byte reads and writes at
/// 8-byte-aligned physical addresses.
pub trait TableMemory {
    fn read(&self, address: u64) -> u64;
    fn write(&mut self, address: u64, value: u64);
}

/// EPT permission bits of an entry (bits 2:0).
pub const READ: u64 = 1 << 0;
pub const WRITE: u64 = 1 << 1;
pub const EXECUTE: u64 = 1 << 2;
const PERMISSIONS: u64 = READ | WRITE | EXECUTE;
/// Memory type write-back, in a leaf's bits 5:3.
const LEAF_WRITE_BACK: u64 = 6 << 3;
/// Bits 51:12: the physical address an entry points to.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE_SIZE: u64 = 4096;
const ENTRIES: u64 = 512;

/// EPTP memory types (bits 2:0) and the 4-level walk (bits 5:3 = levels - 1).
pub const EPTP_UNCACHEABLE: u64 = 0;
pub const EPTP_WRITE_BACK: u64 = 6;
const EPTP_FOUR_LEVELS: u64 = 3 << 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EptError {
    /// An address is not 4 KiB-aligned or beyond 52 bits.
    BadAddress(u64),
    /// The pool has no page left for another table.
    PoolExhausted,
    /// Permissions with write but not read, which EPT calls misconfigured.
    WriteWithoutRead,
}

impl fmt::Display for EptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(address) => write!(f, "{address:#x} is not a 4 KiB-aligned physical address"),
            Self::PoolExhausted => write!(f, "no page left for another EPT table"),
            Self::WriteWithoutRead => write!(f, "write without read is an EPT misconfiguration"),
        }
    }
}

/// A 4-level EPT whose tables come from a pool of pages.
pub struct Ept<M: TableMemory> {
    memory: M,
    root: u64,
    next_free: u64,
    pool_end: u64,
}

impl<M: TableMemory> Ept<M> {
    /// An empty EPT (nothing mapped) with its tables in `[pool_start, pool_end)`.
    pub fn new(memory: M, pool_start: u64, pool_end: u64) -> Result<Self, EptError> {
        let mut ept = Self { memory, root: 0, next_free: check_page(pool_start)?, pool_end };
        ept.root = ept.new_table()?;
        Ok(ept)
    }

    /// The EPT pointer for the VMCS: 4-level walk, no accessed/dirty flags,
    /// and `memory_type` for the paging structures.
    pub fn pointer(&self, memory_type: u64) -> u64 {
        self.root | EPTP_FOUR_LEVELS | memory_type
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Maps the page at `guest` to `host` with `permissions` (READ, WRITE,
    /// EXECUTE), replacing any earlier mapping. The caller invalidates
    /// cached translations (INVEPT) where the old one may be cached.
    pub fn map(&mut self, guest: u64, host: u64, permissions: u64) -> Result<(), EptError> {
        check_page(host)?;
        if permissions & WRITE != 0 && permissions & READ == 0 {
            return Err(EptError::WriteWithoutRead);
        }
        let slot = self.leaf_slot(guest, true)?.expect("tables are created on the way");
        let leaf = if permissions & PERMISSIONS == 0 { 0 } else { host | LEAF_WRITE_BACK | permissions & PERMISSIONS };
        self.memory.write(slot, leaf);
        Ok(())
    }

    /// Removes the mapping of `guest`, if any.
    pub fn unmap(&mut self, guest: u64) -> Result<(), EptError> {
        if let Some(slot) = self.leaf_slot(guest, false)? {
            self.memory.write(slot, 0);
        }
        Ok(())
    }

    /// Where `guest` leads and with which permissions, if it is mapped.
    pub fn translate(&self, guest: u64) -> Option<(u64, u64)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = self.memory.read(table + index(guest, level) * 8);
            if entry & PERMISSIONS == 0 {
                return None;
            }
            if level == 1 {
                return Some((entry & ADDRESS_MASK | guest & (PAGE_SIZE - 1), entry & PERMISSIONS));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// The physical address of the leaf entry for `guest`, creating the
    /// tables on the way if `create`.
    fn leaf_slot(&mut self, guest: u64, create: bool) -> Result<Option<u64>, EptError> {
        check_page(guest)?;
        let mut table = self.root;
        for level in (2..=4).rev() {
            let slot = table + index(guest, level) * 8;
            let entry = self.memory.read(slot);
            table = if entry & PERMISSIONS != 0 {
                entry & ADDRESS_MASK
            } else if create {
                let next = self.new_table()?;
                self.memory.write(slot, next | PERMISSIONS);
                next
            } else {
                return Ok(None);
            };
        }
        Ok(Some(table + index(guest, 1) * 8))
    }

    /// A zeroed table from the pool (the pool's pages may hold anything).
    fn new_table(&mut self) -> Result<u64, EptError> {
        if self.next_free + PAGE_SIZE > self.pool_end {
            return Err(EptError::PoolExhausted);
        }
        let table = self.next_free;
        self.next_free += PAGE_SIZE;
        for entry in 0..ENTRIES {
            self.memory.write(table + entry * 8, 0);
        }
        Ok(table)
    }
}

/// The table index for `address` at `level` (4: PML4 ... 1: page table).
fn index(address: u64, level: u32) -> u64 {
    (address >> (12 + 9 * (level - 1))) & (ENTRIES - 1)
}

fn check_page(address: u64) -> Result<u64, EptError> {
    if address & !ADDRESS_MASK != 0 {
        Err(EptError::BadAddress(address))
    } else {
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Memory that starts out full of garbage, as a real pool may.
    #[derive(Default)]
    struct Recorded {
        words: BTreeMap<u64, u64>,
    }

    impl TableMemory for Recorded {
        fn read(&self, address: u64) -> u64 {
            assert_eq!(address % 8, 0);
            self.words.get(&address).copied().unwrap_or(0xdead_beef_dead_beef)
        }
        fn write(&mut self, address: u64, value: u64) {
            assert_eq!(address % 8, 0);
            self.words.insert(address, value);
        }
    }

    const POOL: u64 = 0x20_0000;

    fn ept(pages: u64) -> Ept<Recorded> {
        Ept::new(Recorded::default(), POOL, POOL + pages * PAGE_SIZE).unwrap()
    }

    #[test]
    fn a_mapping_walks_four_levels_with_write_back_leaves() {
        let mut ept = ept(8);
        ept.map(0x1_2345_6000, 0x7000, READ | EXECUTE).unwrap();
        assert_eq!(ept.translate(0x1_2345_6abc), Some((0x7abc, READ | EXECUTE)));
        assert_eq!(ept.translate(0x1_2345_7000), None);
        // Root, PDPT, PD and PT: four tables, each zeroed before use.
        assert_eq!(ept.next_free, POOL + 4 * PAGE_SIZE);
        let root_entry = ept.memory.read(POOL + index(0x1_2345_6000, 4) * 8);
        assert_eq!(root_entry, (POOL + PAGE_SIZE) | READ | WRITE | EXECUTE);
        let leaf = ept.leaf_slot(0x1_2345_6000, false).unwrap().unwrap();
        assert_eq!(ept.memory.read(leaf), 0x7000 | 6 << 3 | READ | EXECUTE);
        assert_eq!(ept.pointer(EPTP_WRITE_BACK), POOL | 3 << 3 | 6);
    }

    #[test]
    fn neighbours_share_tables_and_remapping_replaces_the_leaf() {
        let mut ept = ept(8);
        ept.map(0x1000, 0x5000, READ | WRITE).unwrap();
        ept.map(0x2000, 0x6000, READ).unwrap();
        assert_eq!(ept.next_free, POOL + 4 * PAGE_SIZE);
        ept.map(0x2000, 0x9000, READ | WRITE).unwrap();
        assert_eq!(ept.translate(0x2008), Some((0x9008, READ | WRITE)));
        assert_eq!(ept.translate(0x1000), Some((0x5000, READ | WRITE)));
        ept.unmap(0x2000).unwrap();
        assert_eq!(ept.translate(0x2000), None);
        // Unmapping what was never mapped creates nothing.
        ept.unmap(0x40_0000_0000).unwrap();
        assert_eq!(ept.next_free, POOL + 4 * PAGE_SIZE);
    }

    #[test]
    fn mistakes_are_refused() {
        let mut ept = ept(4);
        assert_eq!(ept.map(0x1001, 0x5000, READ), Err(EptError::BadAddress(0x1001)));
        assert_eq!(ept.map(0x1000, 0x5000_0000_0000_0000, READ), Err(EptError::BadAddress(0x5000_0000_0000_0000)));
        assert_eq!(ept.map(0x1000, 0x5000, WRITE), Err(EptError::WriteWithoutRead));
        ept.map(0x1000, 0x5000, READ).unwrap();
        // A page in another 512 GiB needs three more tables; none is left.
        assert_eq!(ept.map(0x80_0000_0000, 0x5000, READ), Err(EptError::PoolExhausted));
        assert!(EptError::PoolExhausted.to_string().contains("no page left"));
    }

    #[test]
    fn a_pool_too_small_for_the_root_is_refused() {
        assert!(matches!(Ept::new(Recorded::default(), POOL, POOL), Err(EptError::PoolExhausted)));
        assert!(matches!(Ept::new(Recorded::default(), POOL + 8, POOL + 0x10000), Err(EptError::BadAddress(_))));
    }
}
