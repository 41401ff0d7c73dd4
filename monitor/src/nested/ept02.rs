//! The shadow EPT: EPT02 maps L2's guest-physical addresses straight to
//! host-physical ones, composed from L1's EPT12 (L2 → L1 guest-physical,
//! in L1's memory) and L0's EPT01 (L1 guest-physical → host-physical,
//! behind the [`Ept01`] trait).
//!
//! EPT02 starts empty and grows one translation per EPT violation of L2:
//! the builder walks EPT12 as the CPU would (SDM 30.3.2, with L1's A/D
//! flags set when its EPTP enables them), reflects EPT12's violations and
//! misconfigurations to L1 with the qualification the CPU would give, asks
//! EPT01 about the L1 page, and installs a leaf of the largest size that
//! EPT12, EPT01 and the host's EPT all allow (so an L1 large page over
//! smaller EPT01 pages is split).
//!
//! The tables are written through [`ShadowTables`], one aligned 8-byte
//! store per entry, in an order that keeps EPT02 consistent at every
//! moment for a CPU walking it concurrently: a new table is filled
//! completely before the entry that points to it is written, and a large
//! leaf is replaced by a table that maps exactly the same translations.
//! The tests prove this against a memory that records every write.
//!
//! INVEPT (and any change L0 makes to EPT01) drops the whole EPT02: its
//! pages are retired, the shim runs INVEPT on the old EPTP02, then
//! [`Ept02::reclaim`] frees them; only then can a page be reused.

use alloc::vec::Vec;

use vmx::capabilities::EptVpidCapabilities;

use crate::guest_memory::GuestMemory;

/// EPT entry bits (SDM 30.3.2, tables 30-1 to 30-6).
pub const EPT_READ: u64 = 1 << 0;
pub const EPT_WRITE: u64 = 1 << 1;
pub const EPT_EXECUTE: u64 = 1 << 2;
pub const EPT_RWX: u64 = EPT_READ | EPT_WRITE | EPT_EXECUTE;
pub const EPT_LARGE: u64 = 1 << 7;
pub const EPT_ACCESSED: u64 = 1 << 8;
pub const EPT_DIRTY: u64 = 1 << 9;
/// Memory type (5:3) and ignore-PAT (6) of a leaf.
pub const EPT_MEMORY_TYPE_BITS: u64 = 0x78;
/// The EPTP bit that enables accessed and dirty flags.
pub const EPTP_ACCESSED_DIRTY: u64 = 1 << 6;

const ENTRIES: usize = 512;

/// How L0 backs L1's guest-physical memory.
pub trait Ept01 {
    /// The host-physical address of `l1_gpa` and the mapping around it:
    /// `None` when L1 has no memory there (its MMIO, or nothing).
    fn translate(&self, l1_gpa: u64) -> Option<Ept01Mapping>;
}

/// One EPT01 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept01Mapping {
    /// The host-physical address of the very byte asked for.
    pub hpa: u64,
    /// log2 of the size of the aligned block around the address that
    /// EPT01 maps contiguously with the same permissions: 12, 21 or 30.
    pub size_log2: u32,
    /// EPT01's R/W/X bits (2:0).
    pub permissions: u64,
    /// EPT01's memory type and ignore-PAT bits (6:3): L0, not L1, decides
    /// how host memory is cached.
    pub memory_type: u64,
}

/// The host pages that hold EPT02's tables. The shim owns them; the
/// monitor only ever writes whole, aligned 8-byte entries.
pub trait ShadowTables {
    /// A page for a table, its contents unspecified; `None` when the
    /// tenant's budget is spent.
    fn allocate(&mut self) -> Option<u64>;
    fn free(&mut self, table: u64);
    fn read(&self, table: u64, index: usize) -> u64;
    /// One atomic 8-byte store.
    fn write(&mut self, table: u64, index: usize, value: u64);
}

/// The kind of access that faulted, from the hardware qualification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AccessKind {
    read: bool,
    write: bool,
    fetch: bool,
}

impl AccessKind {
    fn from_qualification(qualification: u64) -> Self {
        Self { read: qualification & 1 != 0, write: qualification & 2 != 0, fetch: qualification & 4 != 0 }
    }

    fn allowed_by(self, permissions: u64) -> bool {
        (!self.read || permissions & EPT_READ != 0)
            && (!self.write || permissions & EPT_WRITE != 0)
            && (!self.fetch || permissions & EPT_EXECUTE != 0)
    }
}

/// What became of an EPT violation of L2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ept02Outcome {
    /// A translation was installed or widened; resume L2 (no flush
    /// needed: no translation was narrowed).
    Installed,
    /// EPT12 does not allow the access: reflect an EPT violation (reason
    /// 48) to L1 with this qualification and the L2 address as
    /// guest-physical address.
    ReflectViolation { qualification: u64 },
    /// EPT12 is misconfigured there: reflect an EPT misconfiguration
    /// (reason 49) to L1.
    ReflectMisconfiguration,
    /// L1's own guest-physical address is not backed (or not with these
    /// permissions) by EPT01: L1's MMIO or a bad L1 mapping, for L0 to
    /// handle as it would for L1 itself.
    L1Fault { l1_gpa: u64 },
    /// No table page is left: the shim should [`Ept02::invalidate`] and
    /// retry, or stop the guest.
    OutOfTables,
}

/// One EPT02 leaf: the `size_log2` block at `l2_gpa` maps to `target`
/// (what EPT01 gave for the L1 page: a host-physical address, or, for a
/// monitor that leaves host addresses to the shim, L1's guest-physical one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept02Mapping {
    pub l2_gpa: u64,
    pub target: u64,
    pub size_log2: u32,
    /// R/W/X (bits 2:0).
    pub permissions: u64,
    /// EPT01's memory type and ignore-PAT bits (6:3).
    pub memory_type: u64,
}

/// The result of walking EPT12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept12Translation {
    pub l1_gpa: u64,
    /// log2 of the leaf's page size: 12, 21 or 30.
    pub size_log2: u32,
    /// R/W/X ANDed over the walk.
    pub permissions: u64,
    /// The leaf's dirty flag (meaningful with A/D enabled).
    pub dirty: bool,
}

/// Why EPT12 refused a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ept12Fault {
    /// Not present, or the access is not allowed: the R/W/X AND so far.
    Violation {
        permissions: u64,
    },
    Misconfiguration,
}

/// Walks L1's EPT12 for `l2_gpa` and an access of `access`, setting A/D
/// flags in L1's memory when `eptp12` enables them (SDM 30.3.5).
pub fn walk_ept12(
    memory: &mut impl GuestMemory,
    caps: EptVpidCapabilities,
    physical_width: u8,
    eptp12: u64,
    l2_gpa: u64,
    qualification: u64,
) -> Result<Ept12Translation, Ept12Fault> {
    let access = AccessKind::from_qualification(qualification);
    let frame_mask = ((1u64 << physical_width) - 1) & !0xfff;
    let beyond_width = !((1u64 << physical_width) - 1) & ((1 << 52) - 1);
    let ad = eptp12 & EPTP_ACCESSED_DIRTY != 0;
    let mut table = eptp12 & frame_mask;
    let mut permissions = EPT_RWX;
    for shift in [39u32, 30, 21, 12] {
        let address = table + ((l2_gpa >> shift) & 0x1ff) * 8;
        // EPT12 tables outside L1's RAM read as not present.
        let entry = memory.read_u64(address).unwrap_or(0);
        if entry & EPT_RWX == 0 {
            return Err(Ept12Fault::Violation { permissions: 0 });
        }
        // SDM 30.3.3.1: write without read, execute-only without the
        // capability, reserved bits.
        let rwx = entry & EPT_RWX;
        if rwx & (EPT_READ | EPT_WRITE) == EPT_WRITE || (rwx == EPT_EXECUTE && !caps.execute_only()) {
            return Err(Ept12Fault::Misconfiguration);
        }
        let large = entry & EPT_LARGE != 0;
        let leaf = shift == 12 || (large && (shift == 21 || shift == 30));
        let reserved = match (shift, leaf) {
            (39, _) => 0xf8,
            (30, true) => 0x3fff_f000 | if caps.pages_1g() { 0 } else { u64::MAX },
            (21, true) => 0x1f_f000 | if caps.pages_2m() { 0 } else { u64::MAX },
            (_, false) => 0x78,
            _ => 0,
        };
        if entry & (beyond_width | reserved) != 0 {
            return Err(Ept12Fault::Misconfiguration);
        }
        if leaf && matches!((entry >> 3) & 7, 2 | 3 | 7) {
            return Err(Ept12Fault::Misconfiguration);
        }
        permissions &= rwx;
        if leaf {
            if !access.allowed_by(permissions) {
                return Err(Ept12Fault::Violation { permissions });
            }
            let mut updated = entry | if ad { EPT_ACCESSED } else { 0 };
            if ad && access.write {
                updated |= EPT_DIRTY;
            }
            if updated != entry {
                let _ = memory.write_u64(address, updated);
            }
            let offset_mask = (1u64 << shift) - 1;
            return Ok(Ept12Translation {
                l1_gpa: (entry & frame_mask & !offset_mask) | (l2_gpa & offset_mask),
                size_log2: shift,
                permissions,
                dirty: updated & EPT_DIRTY != 0,
            });
        }
        if ad && entry & EPT_ACCESSED == 0 {
            let _ = memory.write_u64(address, entry | EPT_ACCESSED);
        }
        table = entry & frame_mask;
    }
    Err(Ept12Fault::Misconfiguration)
}

/// The qualification of an EPT violation reflected to L1 (SDM 28.2.1,
/// table 28-7): the access type, NMI unblocking and the linear-address
/// bits from the hardware's exit; EPT12's permissions in bits 5:3.
pub fn reflected_qualification(hardware: u64, ept12_permissions: u64) -> u64 {
    // Bits 2:0 access, 7 linear address valid, 8 translated access, 12
    // NMI unblocking. Bits 9-11 (advanced information) are not offered.
    let kept = hardware & (0x7 | 1 << 7 | 1 << 8 | 1 << 12);
    kept | (ept12_permissions & EPT_RWX) << 3
}

/// One vCPU's EPT02.
#[derive(Clone, Debug, Default)]
pub struct Ept02 {
    root: Option<u64>,
    eptp12: Option<u64>,
    /// Every table page of the live EPT02, root first.
    tables: Vec<u64>,
    /// Pages of dropped EPT02s, waiting for the shim's INVEPT.
    retired: Vec<u64>,
    /// The largest leaf the host's EPT supports (log2).
    max_leaf_log2: u32,
    /// L1's EPT capabilities, for the EPT12 walk.
    caps: EptVpidCapabilities,
    physical_width: u8,
    /// Table pages the live EPT02 may use before it is dropped and
    /// rebuilt, bounding what one tenant can make L0 hold.
    max_tables: usize,
}

impl Ept02 {
    /// `host` are the host's EPT capabilities (for large leaves), `l1` what
    /// L1 is offered (for EPT12's rules).
    pub fn new(host: EptVpidCapabilities, l1: EptVpidCapabilities, physical_width: u8, max_tables: usize) -> Self {
        let max_leaf_log2 = if host.pages_1g() {
            30
        } else if host.pages_2m() {
            21
        } else {
            12
        };
        Self { max_leaf_log2, caps: l1, physical_width, max_tables: max_tables.max(4), ..Default::default() }
    }

    /// The EPTP02 for vmcs02 when L1 runs L2 with `eptp12`: a fresh,
    /// empty EPT02 when `eptp12` is new (the old one is retired), the live
    /// one otherwise. Write-back, 4-level, no A/D in EPT02.
    pub fn eptp02(&mut self, eptp12: u64, tables: &mut impl ShadowTables) -> Option<u64> {
        if self.eptp12 != Some(eptp12) || self.root.is_none() {
            self.retire();
            let root = Self::new_table(tables, |_| 0)?;
            self.root = Some(root);
            self.tables.push(root);
            self.eptp12 = Some(eptp12);
        }
        self.root.map(|root| root | 3 << 3 | 6)
    }

    /// The EPT12 pointer the live EPT02 shadows.
    pub fn eptp12(&self) -> Option<u64> {
        self.eptp12
    }

    /// INVEPT of L1 (or an EPT01 change): drops the EPT02 built from
    /// `eptp12` (`None`: any). Returns the EPTP02 the shim must INVEPT
    /// before calling [`reclaim`](Self::reclaim).
    pub fn invalidate(&mut self, eptp12: Option<u64>) -> Option<u64> {
        if eptp12.is_some() && eptp12 != self.eptp12 {
            return None;
        }
        let old = self.root.map(|root| root | 3 << 3 | 6);
        self.retire();
        old
    }

    /// Frees the pages of dropped EPT02s, once the shim has flushed them.
    pub fn reclaim(&mut self, tables: &mut impl ShadowTables) {
        for page in self.retired.drain(..) {
            tables.free(page);
        }
    }

    /// Table pages in use (live and retired).
    pub fn pages(&self) -> usize {
        self.tables.len() + self.retired.len()
    }

    fn retire(&mut self) {
        self.retired.append(&mut self.tables);
        self.root = None;
        self.eptp12 = None;
    }

    /// Allocates a table and writes all 512 entries before anyone can
    /// point to it.
    fn new_table(tables: &mut impl ShadowTables, entry: impl Fn(usize) -> u64) -> Option<u64> {
        let table = tables.allocate()?;
        for index in 0..ENTRIES {
            tables.write(table, index, entry(index));
        }
        Some(table)
    }

    /// Handles an EPT violation of L2 at `l2_gpa` with the hardware's
    /// `qualification`: [`resolve`](Self::resolve), then install the leaf.
    pub fn handle_violation(
        &mut self,
        l2_gpa: u64,
        qualification: u64,
        l1_memory: &mut impl GuestMemory,
        ept01: &impl Ept01,
        tables: &mut impl ShadowTables,
    ) -> Ept02Outcome {
        let (Some(root), Some(eptp12)) = (self.root, self.eptp12) else {
            return Ept02Outcome::OutOfTables;
        };
        let mapping = match self.resolve(eptp12, l2_gpa, qualification, l1_memory, ept01) {
            Ok(mapping) => mapping,
            Err(outcome) => return outcome,
        };
        let large = if mapping.size_log2 > 12 { EPT_LARGE } else { 0 };
        let leaf = mapping.target | mapping.permissions | (mapping.memory_type & EPT_MEMORY_TYPE_BITS) | large;
        if self.tables.len() + 3 > self.max_tables {
            return Ept02Outcome::OutOfTables;
        }
        match self.install(root, mapping.l2_gpa, mapping.size_log2, leaf, tables) {
            Some(()) => Ept02Outcome::Installed,
            None => Ept02Outcome::OutOfTables,
        }
    }

    /// The EPT02 leaf for an EPT violation of L2 at `l2_gpa` under
    /// `eptp12`: walks EPT12 (setting L1's A/D flags), composes it with
    /// EPT01, and picks the largest page both levels and the host allow.
    /// `Err` says what to do instead: reflect to L1, or L1's own fault.
    pub fn resolve(
        &self,
        eptp12: u64,
        l2_gpa: u64,
        qualification: u64,
        l1_memory: &mut impl GuestMemory,
        ept01: &impl Ept01,
    ) -> Result<Ept02Mapping, Ept02Outcome> {
        let walk = match walk_ept12(l1_memory, self.caps, self.physical_width, eptp12, l2_gpa, qualification) {
            Ok(walk) => walk,
            Err(Ept12Fault::Violation { permissions }) => {
                return Err(Ept02Outcome::ReflectViolation {
                    qualification: reflected_qualification(qualification, permissions),
                })
            }
            Err(Ept12Fault::Misconfiguration) => return Err(Ept02Outcome::ReflectMisconfiguration),
        };
        let Some(backing) = ept01.translate(walk.l1_gpa) else {
            return Err(Ept02Outcome::L1Fault { l1_gpa: walk.l1_gpa });
        };
        let access = AccessKind::from_qualification(qualification);
        if !access.allowed_by(backing.permissions) {
            return Err(Ept02Outcome::L1Fault { l1_gpa: walk.l1_gpa });
        }
        let mut permissions = walk.permissions & backing.permissions;
        // With A/D on in EPT12, a clean page is mapped read-only so that
        // the first write faults and sets L1's dirty flag.
        if eptp12 & EPTP_ACCESSED_DIRTY != 0 && !walk.dirty {
            permissions &= !EPT_WRITE;
        }
        let size_log2 = walk.size_log2.min(backing.size_log2.clamp(12, 30)).min(self.max_leaf_log2);
        let offset_mask = (1u64 << size_log2) - 1;
        Ok(Ept02Mapping {
            l2_gpa: l2_gpa & !offset_mask,
            target: (backing.hpa & !offset_mask) & !0xfff,
            size_log2,
            permissions,
            memory_type: backing.memory_type,
        })
    }

    /// Writes `leaf` for the `size_log2` block at `l2_gpa`, creating or
    /// splitting tables on the way.
    fn install(
        &mut self,
        root: u64,
        l2_gpa: u64,
        size_log2: u32,
        leaf: u64,
        tables: &mut impl ShadowTables,
    ) -> Option<()> {
        let mut table = root;
        let mut shift = 39;
        loop {
            let index = ((l2_gpa >> shift) & 0x1ff) as usize;
            let entry = tables.read(table, index);
            if shift == size_log2 {
                if entry & EPT_RWX != 0 && entry & EPT_LARGE == 0 && shift > 12 {
                    // A finer table already maps part of this block:
                    // fill the block's leaves in it instead.
                    return self.install_into_table(entry & 0x000f_ffff_ffff_f000, shift - 9, leaf, tables);
                }
                tables.write(table, index, leaf);
                return Some(());
            }
            let next = if entry & EPT_RWX == 0 {
                let new = Self::new_table(tables, |_| 0)?;
                self.tables.push(new);
                tables.write(table, index, new | EPT_RWX);
                new
            } else if entry & EPT_LARGE != 0 {
                // Split: a table with the same translations, then one
                // write that swaps it in.
                let child_shift = shift - 9;
                let child_large = if child_shift > 12 { EPT_LARGE } else { 0 };
                let base = entry & !((1u64 << shift) - 1) & ((1 << 52) - 1);
                let flags = entry & (EPT_RWX | EPT_MEMORY_TYPE_BITS);
                let new = Self::new_table(tables, |i| (base + ((i as u64) << child_shift)) | flags | child_large)?;
                self.tables.push(new);
                tables.write(table, index, new | EPT_RWX);
                new
            } else {
                entry & 0x000f_ffff_ffff_f000
            };
            table = next;
            shift -= 9;
        }
    }

    /// Installs the block of `leaf` (of size 2^(`shift` + 9)) as leaves of
    /// size 2^`shift` in the existing `table`.
    fn install_into_table(&mut self, table: u64, shift: u32, leaf: u64, tables: &mut impl ShadowTables) -> Option<()> {
        let large = if shift > 12 { EPT_LARGE } else { 0 };
        let base = leaf & 0x000f_ffff_ffff_f000;
        let flags = leaf & (EPT_RWX | EPT_MEMORY_TYPE_BITS);
        for index in 0..ENTRIES {
            let existing = tables.read(table, index);
            if existing & EPT_RWX != 0 && existing & EPT_LARGE == 0 && shift > 12 {
                let block = (base + ((index as u64) << shift)) | flags;
                self.install_into_table(existing & 0x000f_ffff_ffff_f000, shift - 9, block, tables)?;
                continue;
            }
            tables.write(table, index, (base + ((index as u64) << shift)) | flags | large);
        }
        Some(())
    }
}

/// Walks an EPT02 the way the CPU would: the host-physical address and
/// permissions of `l2_gpa`, or `None` when not mapped. For tests and for
/// the shim's debugging.
pub fn translate_ept02(tables: &impl ShadowTables, eptp02: u64, l2_gpa: u64) -> Option<(u64, u64)> {
    let mut table = eptp02 & 0x000f_ffff_ffff_f000;
    for shift in [39u32, 30, 21, 12] {
        let entry = tables.read(table, ((l2_gpa >> shift) & 0x1ff) as usize);
        if entry & EPT_RWX == 0 {
            return None;
        }
        if shift == 12 || entry & EPT_LARGE != 0 {
            let offset_mask = (1u64 << shift) - 1;
            return Some(((entry & 0x000f_ffff_ffff_f000 & !offset_mask) | (l2_gpa & offset_mask), entry & EPT_RWX));
        }
        table = entry & 0x000f_ffff_ffff_f000;
    }
    None
}

#[cfg(test)]
mod tests;
