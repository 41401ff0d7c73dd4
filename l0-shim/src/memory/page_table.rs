//! Generic 4-level page-table construction: the shim's own IA-32e tables now,
//! EPT tables (EPT01 per guest, the shadow EPT02) later.
//!
//! The builder only reads and writes 64-bit words through [`PhysMemory`] and
//! takes table frames from a [`FrameSource`], so on the host it runs over a fake
//! memory that records every write, and the tests prove the property that
//! matters on hardware: tables are edited while a walker (this CPU, another
//! CPU, or the CPU walking EPT for a running guest) may use them, so every
//! single write must leave the tables meaning either the old or the new
//! translation. Hence the order in [`PageTableBuilder::map`]: new tables are
//! allocated up front, zeroed and filled bottom-up while still unreachable,
//! and linked into the live tree by one final write. Running out of frames
//! therefore leaves the tree untouched.
//!
//! The builder never flushes TLBs: after [`PageTableBuilder::unmap`] (or any
//! change of an existing translation) the caller must `invlpg`/`invept` as
//! fits. Mapping into unmapped space needs no flush, as neither TLBs nor
//! paging-structure caches hold non-present entries.

use core::marker::PhantomData;

use super::addr::{PageSize, PhysAddr, FRAME_SIZE, MAX_PHYS_ADDR};

/// Word-granular access to physical memory holding page tables.
pub trait PhysMemory {
    fn read_u64(&self, addr: PhysAddr) -> u64;
    fn write_u64(&mut self, addr: PhysAddr, value: u64);
}

/// Where page-table frames come from.
pub trait FrameSource {
    /// A 4 KiB-aligned frame, with any content, or `None` when exhausted.
    fn alloc_frame(&mut self) -> Option<PhysAddr>;
    /// Takes back a frame from `alloc_frame` that was never linked anywhere
    /// (the builder gives back the tables of a map that ran out of frames).
    fn free_frame(&mut self, frame: PhysAddr);
}

/// Entries per paging structure.
pub const ENTRIES: u64 = 512;

/// Bits 51:12 of an entry: the physical address of a table or page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The encoding of one paging format's entries. Levels count from 1 (page
/// table) to 4 (PML4); a leaf maps a page of [`PageSize::from_level`].
pub trait PagingFormat {
    /// Access rights and memory type of a leaf, as the caller asks for them.
    type Flags: Copy;

    /// Entry linking the child table at `table`, permissive enough that a leaf
    /// with `leaf` flags below it gets exactly the rights of its own entry.
    fn table_entry(table: PhysAddr, leaf: Self::Flags) -> u64;
    /// An existing table entry, widened if needed so that a new leaf with
    /// `leaf` flags below it is not restricted by it.
    fn widen_table_entry(entry: u64, leaf: Self::Flags) -> u64;
    /// Leaf entry mapping the page at `phys` (aligned to `size`).
    fn leaf_entry(phys: PhysAddr, size: PageSize, flags: Self::Flags) -> u64;
    /// Whether `flags` make a valid, present leaf.
    fn leaf_flags_valid(flags: Self::Flags) -> bool;
    /// Whether the walker follows this entry at all.
    fn is_present(entry: u64) -> bool;
    /// Whether a present entry at `level` maps a page rather than a table.
    /// Must be true at level 1 and false at level 4.
    fn is_leaf(entry: u64, level: u8) -> bool;
    /// The flags of a leaf entry mapping a page of `size`.
    fn leaf_flags(entry: u64, size: PageSize) -> Self::Flags;
    /// Whether `addr` can be translated at all (canonical, in range).
    fn input_valid(addr: u64) -> bool;

    /// The table or page address in a present entry.
    fn address(entry: u64) -> PhysAddr {
        PhysAddr(entry & ADDR_MASK)
    }
}

// ---------------------------------------------------------------------------
// IA-32e paging (SDM 4.5)

const X86_PRESENT: u64 = 1 << 0;
const X86_WRITABLE: u64 = 1 << 1;
const X86_USER: u64 = 1 << 2;
/// PS in a PDPTE/PDE: the entry maps a 1 GiB/2 MiB page.
const X86_PAGE_SIZE: u64 = 1 << 7;
/// PAT bit of a 4 KiB PTE, where [`X86Flags`] keeps it.
const X86_PAT_4K: u64 = 1 << 7;
/// PAT bit of a 2 MiB/1 GiB leaf, moved out of the way of PS.
const X86_PAT_LARGE: u64 = 1 << 12;

/// Normal 4-level IA-32e paging.
///
/// Intermediate entries are present|writable, plus user when some leaf below
/// is user, and never NX. The effective rights of an address are the most
/// restrictive combination over all levels (SDM 4.6), so such entries let the
/// leaf alone decide, while a subtree holding only supervisor pages stays
/// supervisor at every level as defence in depth. When a user leaf lands
/// below an existing supervisor-only entry, that entry is widened first;
/// widening cannot change any existing translation because, by this rule,
/// no user leaf was below it.
#[derive(Clone, Copy, Debug)]
pub enum X86Paging {}

bitflags::bitflags! {
    /// Leaf flags for [`X86Paging`]; present is implied.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct X86Flags: u64 {
        const WRITABLE = X86_WRITABLE;
        const USER = X86_USER;
        const WRITE_THROUGH = 1 << 3;
        const CACHE_DISABLE = 1 << 4;
        /// Pre-set accessed/dirty bits spare the walker a locked update.
        const ACCESSED = 1 << 5;
        const DIRTY = 1 << 6;
        /// Third bit of the PAT index; placed at bit 7 or 12 as the page size needs.
        const PAT = X86_PAT_4K;
        const GLOBAL = 1 << 8;
        const NO_EXECUTE = 1 << 63;
    }
}

impl PagingFormat for X86Paging {
    type Flags = X86Flags;

    fn table_entry(table: PhysAddr, leaf: X86Flags) -> u64 {
        (table.0 & ADDR_MASK) | X86_PRESENT | X86_WRITABLE | (leaf.bits() & X86_USER)
    }

    fn widen_table_entry(entry: u64, leaf: X86Flags) -> u64 {
        entry | (leaf.bits() & X86_USER)
    }

    fn leaf_entry(phys: PhysAddr, size: PageSize, flags: X86Flags) -> u64 {
        let base = (phys.0 & ADDR_MASK) | X86_PRESENT;
        match size {
            PageSize::Size4K => base | flags.bits(),
            _ => {
                let pat = if flags.contains(X86Flags::PAT) { X86_PAT_LARGE } else { 0 };
                base | (flags.bits() & !X86_PAT_4K) | X86_PAGE_SIZE | pat
            }
        }
    }

    fn leaf_flags_valid(_: X86Flags) -> bool {
        true // The type admits only meaningful leaf bits.
    }

    fn is_present(entry: u64) -> bool {
        entry & X86_PRESENT != 0
    }

    fn is_leaf(entry: u64, level: u8) -> bool {
        match level {
            1 => true,
            2 | 3 => entry & X86_PAGE_SIZE != 0,
            _ => false,
        }
    }

    fn leaf_flags(entry: u64, size: PageSize) -> X86Flags {
        match size {
            PageSize::Size4K => X86Flags::from_bits_truncate(entry),
            _ => {
                let pat = if entry & X86_PAT_LARGE != 0 { X86_PAT_4K } else { 0 };
                X86Flags::from_bits_truncate((entry & !X86_PAT_4K) | pat)
            }
        }
    }

    /// 48-bit canonical: bits 63:47 all equal.
    fn input_valid(addr: u64) -> bool {
        (((addr << 16) as i64) >> 16) as u64 == addr
    }
}

// ---------------------------------------------------------------------------
// EPT (SDM 29.3)

const EPT_RWX: u64 = 0b111;
/// Bit 7 of an EPT PDPTE/PDE: the entry maps a 1 GiB/2 MiB page.
const EPT_LEAF: u64 = 1 << 7;
const EPT_MEMORY_TYPE_SHIFT: u32 = 3;
const EPT_MEMORY_TYPE_MASK: u64 = 0b111 << EPT_MEMORY_TYPE_SHIFT;
/// Guest-physical addresses a 4-level EPT translates.
const EPT_INPUT_LIMIT: u64 = 1 << 48;

/// Extended page tables.
///
/// Intermediate entries grant read, write, execute and user-execute (bit 10,
/// ignored unless mode-based execute control is on): EPT rights are also the
/// intersection over all levels, so this lets the leaf alone decide. Unlike
/// IA-32e paging there is no user/supervisor split worth keeping at upper
/// levels: the whole tree belongs to one guest.
#[derive(Clone, Copy, Debug)]
pub enum EptPaging {}

/// EPT memory types for leaves (SDM 29.3.7); the other encodings are reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum MemoryType {
    Uncacheable = 0,
    WriteCombining = 1,
    WriteThrough = 4,
    WriteProtected = 5,
    WriteBack = 6,
}

impl MemoryType {
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::Uncacheable),
            1 => Some(Self::WriteCombining),
            4 => Some(Self::WriteThrough),
            5 => Some(Self::WriteProtected),
            6 => Some(Self::WriteBack),
            _ => None,
        }
    }
}

bitflags::bitflags! {
    /// Leaf flags for [`EptPaging`]. A leaf needs at least one of read, write
    /// and execute to be present, and write without read is a misconfiguration.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct EptFlags: u64 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        /// Execute (for supervisor-mode linear addresses under mode-based control).
        const EXECUTE = 1 << 2;
        /// The memory-type field (bits 5:3); set it with `with_memory_type`.
        const MEMORY_TYPE = EPT_MEMORY_TYPE_MASK;
        const IGNORE_PAT = 1 << 6;
        const ACCESSED = 1 << 8;
        const DIRTY = 1 << 9;
        /// Execute for user-mode linear addresses, under mode-based execute control.
        const USER_EXECUTE = 1 << 10;
        const SUPPRESS_VE = 1 << 63;
    }
}

impl EptFlags {
    /// These flags with memory type `memory_type` (replacing any previous one).
    pub const fn with_memory_type(self, memory_type: MemoryType) -> Self {
        Self::from_bits_retain((self.bits() & !EPT_MEMORY_TYPE_MASK) | ((memory_type as u64) << EPT_MEMORY_TYPE_SHIFT))
    }
    /// `None` for a reserved encoding (say, after OR-ing two memory types).
    pub const fn memory_type(self) -> Option<MemoryType> {
        MemoryType::from_bits(((self.bits() & EPT_MEMORY_TYPE_MASK) >> EPT_MEMORY_TYPE_SHIFT) as u8)
    }
}

impl PagingFormat for EptPaging {
    type Flags = EptFlags;

    fn table_entry(table: PhysAddr, _: EptFlags) -> u64 {
        (table.0 & ADDR_MASK) | EPT_RWX | EptFlags::USER_EXECUTE.bits()
    }

    fn widen_table_entry(entry: u64, _: EptFlags) -> u64 {
        entry // Already fully permissive.
    }

    fn leaf_entry(phys: PhysAddr, size: PageSize, flags: EptFlags) -> u64 {
        let leaf = if size == PageSize::Size4K { 0 } else { EPT_LEAF };
        (phys.0 & ADDR_MASK) | flags.bits() | leaf
    }

    fn leaf_flags_valid(flags: EptFlags) -> bool {
        let write_only = flags.contains(EptFlags::WRITE) && !flags.contains(EptFlags::READ);
        flags.bits() & EPT_RWX != 0 && !write_only && flags.memory_type().is_some()
    }

    /// SDM 29.3.2: an entry is present if any of bits 2:0 is set.
    fn is_present(entry: u64) -> bool {
        entry & EPT_RWX != 0
    }

    fn is_leaf(entry: u64, level: u8) -> bool {
        match level {
            1 => true,
            2 | 3 => entry & EPT_LEAF != 0,
            _ => false,
        }
    }

    fn leaf_flags(entry: u64, _: PageSize) -> EptFlags {
        EptFlags::from_bits_truncate(entry)
    }

    fn input_valid(addr: u64) -> bool {
        addr < EPT_INPUT_LIMIT
    }
}

// ---------------------------------------------------------------------------
// Walking

/// A leaf translation found by a walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation<Fl> {
    /// The physical address the queried address translates to.
    pub phys: PhysAddr,
    /// Size of the page holding it.
    pub size: PageSize,
    /// The leaf's flags.
    pub flags: Fl,
    /// The raw leaf entry, for what the flags do not show.
    pub entry: u64,
}

impl<Fl> Translation<Fl> {
    /// Start of the physical page.
    pub fn page_phys(&self) -> PhysAddr {
        PhysAddr(self.phys.0 & !(self.size.bytes() - 1))
    }
}

/// Address of the entry for `virt` in the table at `table` of `level`. Masking
/// keeps it inside the table whatever the inputs, so a walk over tables
/// someone else wrote (a guest's EPT) cannot overflow.
fn entry_addr(table: PhysAddr, virt: u64, level: u8) -> PhysAddr {
    let index = (virt >> (12 + 9 * (u32::from(level) - 1))) & (ENTRIES - 1);
    PhysAddr((table.0 & ADDR_MASK) | (index * 8))
}

/// The leaf entry translating `virt`: its address, value and page size.
fn find_leaf<F: PagingFormat, M: PhysMemory + ?Sized>(
    mem: &M,
    root: PhysAddr,
    virt: u64,
) -> Option<(PhysAddr, u64, PageSize)> {
    if !F::input_valid(virt) {
        return None;
    }
    let mut table = root;
    for level in (1..=4).rev() {
        let addr = entry_addr(table, virt, level);
        let entry = mem.read_u64(addr);
        if !F::is_present(entry) {
            return None;
        }
        if F::is_leaf(entry, level) {
            return Some((addr, entry, PageSize::from_level(level)?));
        }
        table = F::address(entry);
    }
    None // Only reached if a format violates the `is_leaf` contract.
}

/// Walks the tables rooted at `root` like the hardware would. Usable on
/// tables built elsewhere: any memory content yields an answer, never a panic.
pub fn translate<F: PagingFormat, M: PhysMemory + ?Sized>(
    mem: &M,
    root: PhysAddr,
    virt: u64,
) -> Option<Translation<F::Flags>> {
    let (_, entry, size) = find_leaf::<F, M>(mem, root, virt)?;
    Some(leaf_translation::<F>(entry, size, virt))
}

fn leaf_translation<F: PagingFormat>(entry: u64, size: PageSize, virt: u64) -> Translation<F::Flags> {
    let offset_mask = size.bytes() - 1;
    Translation {
        phys: PhysAddr((F::address(entry).0 & !offset_mask) | (virt & offset_mask)),
        size,
        flags: F::leaf_flags(entry, size),
        entry,
    }
}

// ---------------------------------------------------------------------------
// Building

/// Why a mapping was refused. A refused `map` changed nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// An address or length is not a multiple of the page size.
    Misaligned,
    /// The virtual (or guest-physical) address cannot be translated by this
    /// format: non-canonical, or beyond its range.
    NonCanonical,
    /// The physical range reaches beyond [`MAX_PHYS_ADDR`].
    PhysOutOfRange,
    /// The flags do not make a valid present leaf (see [`EptFlags`]).
    InvalidFlags,
    /// A page of the same or a larger size already covers the address.
    AlreadyMapped,
    /// A large page was asked for where a lower-level table already exists
    /// (holding smaller pages, or empty after unmaps: tables are not reclaimed).
    SmallerPagesPresent,
    /// The frame source ran dry.
    OutOfFrames,
    /// The frame source, or `with_root`, gave an address that is not a
    /// 4 KiB-aligned frame below [`MAX_PHYS_ADDR`].
    BadFrame,
}

/// Why an unmap was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnmapError {
    NonCanonical,
    NotMapped,
    /// The address is inside a page, not at its start.
    NotPageStart,
}

/// Builds and edits one tree of page tables in `M`, taking tables from `A`.
pub struct PageTableBuilder<'a, F: PagingFormat, M: PhysMemory, A: FrameSource> {
    mem: &'a mut M,
    frames: &'a mut A,
    root: PhysAddr,
    format: PhantomData<F>,
}

/// Where a new leaf (or the new subtree holding it) goes: the address's entry
/// in `table`, the deepest existing table on its path, at `level`. `path`
/// holds the live table entries walked through to reach it.
struct Slot {
    table: PhysAddr,
    level: u8,
    path: [PhysAddr; 3],
    path_len: usize,
}

fn is_frame(addr: PhysAddr) -> bool {
    addr.is_aligned(FRAME_SIZE) && addr.0 < MAX_PHYS_ADDR
}

impl<'a, F: PagingFormat, M: PhysMemory, A: FrameSource> PageTableBuilder<'a, F, M, A> {
    /// A new, empty tree: allocates and zeroes the root table.
    pub fn new(mem: &'a mut M, frames: &'a mut A) -> Result<Self, MapError> {
        let root = frames.alloc_frame().ok_or(MapError::OutOfFrames)?;
        if !is_frame(root) {
            frames.free_frame(root);
            return Err(MapError::BadFrame);
        }
        zero_table(mem, root);
        Self::with_root(mem, frames, root)
    }

    /// Edits the existing tree rooted at `root`.
    pub fn with_root(mem: &'a mut M, frames: &'a mut A, root: PhysAddr) -> Result<Self, MapError> {
        if !is_frame(root) {
            return Err(MapError::BadFrame);
        }
        Ok(Self { mem, frames, root, format: PhantomData })
    }

    /// Physical address of the root table (for CR3 or the EPTP).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The memory the tables live in.
    pub fn memory(&self) -> &M {
        self.mem
    }

    pub fn translate(&self, virt: u64) -> Option<Translation<F::Flags>> {
        translate::<F, M>(self.mem, self.root, virt)
    }

    /// Maps the page of `size` at `virt` to `phys`. Fails without any effect
    /// if the page overlaps an existing mapping or a table is missing and no
    /// frame is left.
    pub fn map(&mut self, virt: u64, phys: PhysAddr, size: PageSize, flags: F::Flags) -> Result<(), MapError> {
        check_leaf::<F>(virt, phys, size.bytes(), size, flags)?;
        let slot = self.find_slot(virt, size)?;

        // Every missing table is allocated before anything is written, so
        // running out of frames leaves the tree exactly as it was.
        let missing = usize::from(slot.level - size.level());
        let mut tables = [PhysAddr(0); 3];
        for i in 0..missing {
            match self.frames.alloc_frame() {
                Some(frame) if is_frame(frame) => tables[i] = frame,
                other => {
                    let error = if other.is_none() { MapError::OutOfFrames } else { MapError::BadFrame };
                    other.into_iter().chain(tables[..i].iter().copied()).for_each(|f| self.frames.free_frame(f));
                    return Err(error);
                }
            }
        }

        // Widen the live entries on the path first: no user leaf is below a
        // supervisor entry yet, so this changes no existing translation.
        for &addr in &slot.path[..slot.path_len] {
            let entry = self.mem.read_u64(addr);
            let widened = F::widen_table_entry(entry, flags);
            if widened != entry {
                self.mem.write_u64(addr, widened);
            }
        }

        // Build the new subtree bottom-up while it is unreachable: each table
        // is zeroed and filled before the entry linking it is written. The
        // table at `level` (deepest last in `tables`) gets `entry`, the next one
        // up the link to it, and the live table the link to the topmost one.
        let mut entry = F::leaf_entry(phys, size, flags);
        for (i, &table) in tables[..missing].iter().enumerate().rev() {
            let level = slot.level - 1 - i as u8;
            zero_table(self.mem, table);
            self.mem.write_u64(entry_addr(table, virt, level), entry);
            entry = F::table_entry(table, flags);
        }
        self.mem.write_u64(entry_addr(slot.table, virt, slot.level), entry);
        Ok(())
    }

    /// Maps `len` bytes at `virt` to `phys` with the largest pages that
    /// alignment and `max_page` allow. Everything is checked before anything
    /// is written; if frames run out midway, the pages already mapped by this
    /// call are unmapped again (the caller flushes TLBs as after `unmap`).
    pub fn map_range(
        &mut self,
        virt: u64,
        phys: PhysAddr,
        len: u64,
        flags: F::Flags,
        max_page: PageSize,
    ) -> Result<(), MapError> {
        check_leaf::<F>(virt, phys, len, PageSize::Size4K, flags)?;
        // The last byte must not wrap; the range may end exactly at 2^64.
        if len > 0 && virt.checked_add(len - 1).is_none() {
            return Err(MapError::NonCanonical);
        }
        let chunks = Chunks { virt, phys: phys.0, remaining: len, max_page };
        for (v, p, size) in chunks.clone() {
            check_leaf::<F>(v, PhysAddr(p), size.bytes(), size, flags)?;
            self.find_slot(v, size)?;
        }
        for (v, p, size) in chunks.clone() {
            if let Err(error) = self.map(v, PhysAddr(p), size, flags) {
                for (done, _, _) in chunks.take_while(|&(d, _, _)| d != v) {
                    let _ = self.unmap(done);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Removes the page starting at `virt` and returns what it mapped. Tables
    /// are kept (reclaiming them would need paging-structure-cache
    /// invalidation first); the caller flushes the TLB for the page.
    pub fn unmap(&mut self, virt: u64) -> Result<Translation<F::Flags>, UnmapError> {
        if !F::input_valid(virt) {
            return Err(UnmapError::NonCanonical);
        }
        let (addr, entry, size) = find_leaf::<F, M>(self.mem, self.root, virt).ok_or(UnmapError::NotMapped)?;
        if virt & (size.bytes() - 1) != 0 {
            return Err(UnmapError::NotPageStart);
        }
        self.mem.write_u64(addr, 0);
        Ok(leaf_translation::<F>(entry, size, virt))
    }

    /// Read-only walk to where a leaf of `size` for `virt` would go.
    fn find_slot(&self, virt: u64, size: PageSize) -> Result<Slot, MapError> {
        let mut slot = Slot { table: self.root, level: 4, path: [PhysAddr(0); 3], path_len: 0 };
        loop {
            let addr = entry_addr(slot.table, virt, slot.level);
            let entry = self.mem.read_u64(addr);
            if !F::is_present(entry) {
                return Ok(slot);
            }
            if F::is_leaf(entry, slot.level) {
                return Err(MapError::AlreadyMapped);
            }
            if slot.level == size.level() {
                return Err(MapError::SmallerPagesPresent);
            }
            slot.path[slot.path_len] = addr;
            slot.path_len += 1;
            slot.table = F::address(entry);
            slot.level -= 1;
        }
    }
}

/// Checks that `[virt, virt + len)` → `phys` can be mapped with `size` pages
/// and `flags`, apart from what is already mapped.
fn check_leaf<F: PagingFormat>(
    virt: u64,
    phys: PhysAddr,
    len: u64,
    size: PageSize,
    flags: F::Flags,
) -> Result<(), MapError> {
    let align = size.bytes();
    if !virt.is_multiple_of(align) || !phys.0.is_multiple_of(align) || !len.is_multiple_of(align) {
        return Err(MapError::Misaligned);
    }
    if !F::input_valid(virt) {
        return Err(MapError::NonCanonical);
    }
    if phys.0.checked_add(len).is_none_or(|end| end > MAX_PHYS_ADDR) {
        return Err(MapError::PhysOutOfRange);
    }
    if !F::leaf_flags_valid(flags) {
        return Err(MapError::InvalidFlags);
    }
    Ok(())
}

fn zero_table<M: PhysMemory + ?Sized>(mem: &mut M, table: PhysAddr) {
    for i in 0..ENTRIES {
        mem.write_u64(PhysAddr(table.0 + i * 8), 0);
    }
}

/// Splits a range into the largest pages that alignment and `max_page` allow.
#[derive(Clone)]
struct Chunks {
    virt: u64,
    phys: u64,
    remaining: u64,
    max_page: PageSize,
}

impl Iterator for Chunks {
    type Item = (u64, u64, PageSize);

    fn next(&mut self) -> Option<Self::Item> {
        let size = PageSize::DESCENDING.into_iter().find(|s| {
            let bytes = s.bytes();
            *s <= self.max_page
                && self.virt.is_multiple_of(bytes)
                && self.phys.is_multiple_of(bytes)
                && self.remaining >= bytes
        })?;
        let chunk = (self.virt, self.phys, size);
        self.virt = self.virt.wrapping_add(size.bytes());
        self.phys += size.bytes();
        self.remaining -= size.bytes();
        Some(chunk)
    }
}

#[cfg(test)]
mod tests;
