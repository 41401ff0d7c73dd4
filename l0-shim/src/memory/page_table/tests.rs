//! The builder proven over a memory that records every write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::memory::{FrameAllocator, PhysRange};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const K4: u64 = 4096;

/// A cheap hasher for address keys: SipHash would dominate the run time of
/// the property tests, which hash every word written.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        // Addresses are multiples of 8; mix the product's high bits down.
        self.0.rotate_left(26)
    }
}

type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// Fake physical memory: a sparse map of words plus the full write history.
/// Never-written words read as junk with the present bit set, like RAM after
/// reset would, so a table linked before zeroing shows up as bogus entries.
#[derive(Default)]
struct RecordingMemory {
    words: AddrMap<u64>,
    log: Vec<(u64, u64)>,
}

fn junk(addr: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 0b111
}

impl PhysMemory for RecordingMemory {
    fn read_u64(&self, addr: PhysAddr) -> u64 {
        assert_eq!(addr.0 % 8, 0, "unaligned read");
        self.words.get(&addr.0).copied().unwrap_or_else(|| junk(addr.0))
    }
    fn write_u64(&mut self, addr: PhysAddr, value: u64) {
        assert_eq!(addr.0 % 8, 0, "unaligned write");
        self.words.insert(addr.0, value);
        self.log.push((addr.0, value));
    }
}

/// A frame source handing out frames from 16 MiB up, with an optional limit.
struct TestFrames {
    next: u64,
    left: usize,
    freed: Vec<PhysAddr>,
}

impl TestFrames {
    fn new() -> Self {
        Self::limited(usize::MAX)
    }
    fn limited(left: usize) -> Self {
        Self { next: 0x100_0000, left, freed: Vec::new() }
    }
}

impl FrameSource for TestFrames {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        if let Some(frame) = self.freed.pop() {
            return Some(frame);
        }
        self.left = self.left.checked_sub(1)?;
        self.next += K4;
        Some(PhysAddr(self.next - K4))
    }
    fn free_frame(&mut self, frame: PhysAddr) {
        self.freed.push(frame);
    }
}

/// Replays a [`RecordingMemory`]'s history write by write and checks, at every
/// moment, the property a concurrent hardware walker relies on:
/// - whenever a table is linked, all 512 of its entries have been written
///   (zeroing counts), and so have those of every table it links in turn;
/// - probed addresses translate either as before the operation or as after it.
struct Replay<F> {
    state: RecordingMemory,
    written: HashSet<u64, BuildHasherDefault<AddrHasher>>,
    /// Tables reachable from the root, with their level.
    tables: AddrMap<u8>,
    seen: usize,
    root: PhysAddr,
    format: PhantomData<F>,
}

impl<F: PagingFormat> Replay<F>
where
    F::Flags: PartialEq + core::fmt::Debug,
{
    fn new(root: PhysAddr) -> Self {
        let tables = AddrMap::from_iter([(root.0, 4)]);
        Self {
            state: RecordingMemory::default(),
            written: Default::default(),
            tables,
            seen: 0,
            root,
            format: PhantomData,
        }
    }

    /// A replay of `mem` with the tree rooted at `root` taken as it is now
    /// (the root table is not linked by a write but by loading CR3/EPTP).
    fn start(mem: &RecordingMemory, root: PhysAddr) -> Self {
        let mut replay = Self::new(root);
        replay.catch_up(mem, &[]).unwrap();
        replay
    }

    fn catch_up(&mut self, mem: &RecordingMemory, probes: &[u64]) -> Result<(), String> {
        let before: Vec<_> = probes.iter().map(|&p| translate::<F, _>(&self.state, self.root, p)).collect();
        let after: Vec<_> = probes.iter().map(|&p| translate::<F, _>(mem, self.root, p)).collect();
        for (step, &(addr, value)) in mem.log.iter().enumerate().skip(self.seen) {
            self.state.write_u64(PhysAddr(addr), value);
            self.written.insert(addr);
            // Walks read only reachable tables, so a write elsewhere (into a
            // table still being built) cannot change any translation.
            let Some(&level) = self.tables.get(&(addr & !(K4 - 1))) else {
                continue;
            };
            if level > 1 && F::is_present(value) && !F::is_leaf(value, level) {
                self.adopt(F::address(value).0, level - 1).map_err(|e| format!("write {step}: {e}"))?;
            }
            for (i, &probe) in probes.iter().enumerate() {
                let now = translate::<F, _>(&self.state, self.root, probe);
                if now != before[i] && now != after[i] {
                    return Err(format!(
                        "write {step}: {probe:#x} translates to {now:?}, neither {:?} nor {:?}",
                        before[i], after[i]
                    ));
                }
            }
        }
        self.seen = mem.log.len();
        for i in 0..ENTRIES {
            if !self.written.contains(&(self.root.0 + i * 8)) {
                return Err(format!("root entry {i} never written"));
            }
        }
        Ok(())
    }

    /// `table` becomes reachable at `level`: it and everything below it must be
    /// fully written already.
    fn adopt(&mut self, table: u64, level: u8) -> Result<(), String> {
        if let Some(&known) = self.tables.get(&table) {
            return if known == level { Ok(()) } else { Err(format!("table {table:#x} reused at another level")) };
        }
        if let Some(i) = (0..ENTRIES).find(|i| !self.written.contains(&(table + i * 8))) {
            return Err(format!("table {table:#x} linked at level {level} before its entry {i} was written"));
        }
        self.tables.insert(table, level);
        for i in 0..ENTRIES {
            let entry = self.state.read_u64(PhysAddr(table + i * 8));
            if level > 1 && F::is_present(entry) && !F::is_leaf(entry, level) {
                self.adopt(F::address(entry).0, level - 1)?;
            }
        }
        Ok(())
    }
}

/// Addresses around a page whose translation an operation on it may change.
fn probes(virt: u64, size: PageSize) -> [u64; 5] {
    let bytes = size.bytes();
    [virt, virt.wrapping_add(bytes / 2), virt.wrapping_add(bytes - 1), virt.wrapping_sub(1), virt.wrapping_add(bytes)]
}

type X86Builder<'a> = PageTableBuilder<'a, X86Paging, RecordingMemory, TestFrames>;
type EptBuilder<'a> = PageTableBuilder<'a, EptPaging, RecordingMemory, TestFrames>;

/// `map`, followed by the replay check of every write it made.
fn map_checked<F: PagingFormat, A: FrameSource>(
    builder: &mut PageTableBuilder<'_, F, RecordingMemory, A>,
    replay: &mut Replay<F>,
    virt: u64,
    phys: u64,
    size: PageSize,
    flags: F::Flags,
) -> Result<(), MapError>
where
    F::Flags: PartialEq + core::fmt::Debug,
{
    let result = builder.map(virt, PhysAddr(phys), size, flags);
    replay.catch_up(builder.memory(), &probes(virt, size)).unwrap();
    result
}

const RW: X86Flags = X86Flags::WRITABLE;
const KERNEL_DATA: X86Flags = X86Flags::WRITABLE.union(X86Flags::NO_EXECUTE).union(X86Flags::GLOBAL);

// ---- Entry encodings ----

#[test]
fn x86_leaf_encoding() {
    let flags = X86Flags::WRITABLE | X86Flags::USER | X86Flags::PAT | X86Flags::NO_EXECUTE;
    let pte = X86Paging::leaf_entry(PhysAddr(0x1234_5000), PageSize::Size4K, flags);
    assert_eq!(pte, 0x8000_0000_1234_5087);
    assert_eq!(X86Paging::leaf_flags(pte, PageSize::Size4K), flags);
    // In a 2 MiB leaf, bit 7 is PS and the PAT bit moves to bit 12.
    let pde = X86Paging::leaf_entry(PhysAddr(0x4020_0000), PageSize::Size2M, flags);
    assert_eq!(pde, 0x8000_0000_4020_1087);
    assert!(X86Paging::is_leaf(pde, 2) && !X86Paging::is_leaf(pde & !0x80, 2) && X86Paging::is_leaf(0, 1));
    assert_eq!(X86Paging::leaf_flags(pde, PageSize::Size2M), flags);
    let without_pat = X86Flags::WRITABLE | X86Flags::USER | X86Flags::NO_EXECUTE;
    assert_eq!(X86Paging::leaf_flags(pde & !(1 << 12), PageSize::Size2M), without_pat);
    // Table entries: never NX, user only when asked for.
    assert_eq!(X86Paging::table_entry(PhysAddr(0x5000), KERNEL_DATA), 0x5003);
    assert_eq!(X86Paging::table_entry(PhysAddr(0x5000), X86Flags::USER | X86Flags::NO_EXECUTE), 0x5007);
    assert!(X86Paging::input_valid(0x0000_7fff_ffff_ffff) && X86Paging::input_valid(0xffff_8000_0000_0000));
    assert!(!X86Paging::input_valid(0x0000_8000_0000_0000) && !X86Paging::input_valid(0xfff0_0000_0000_0000));
}

#[test]
fn ept_encoding() {
    let flags = (EptFlags::READ | EptFlags::WRITE | EptFlags::IGNORE_PAT).with_memory_type(MemoryType::WriteBack);
    let pte = EptPaging::leaf_entry(PhysAddr(0x1234_5000), PageSize::Size4K, flags);
    assert_eq!(pte, 0x1234_5073);
    assert_eq!(EptPaging::leaf_flags(pte, PageSize::Size4K), flags);
    assert_eq!(flags.memory_type(), Some(MemoryType::WriteBack));
    let large = EptPaging::leaf_entry(PhysAddr(0x4000_0000), PageSize::Size1G, flags);
    assert_eq!(large, 0x4000_00f3);
    assert!(EptPaging::is_leaf(large, 3) && !EptPaging::is_leaf(large, 4));
    // Present means any of read, write, execute: execute-only counts.
    assert!(EptPaging::is_present(0b100) && !EptPaging::is_present(0x1000_0000));
    assert_eq!(EptPaging::table_entry(PhysAddr(0x7000), flags), 0x7407);
    assert!(EptPaging::input_valid((1 << 48) - 1) && !EptPaging::input_valid(1 << 48));
    // Leaves that would be absent or misconfigured are refused.
    assert!(EptPaging::leaf_flags_valid(EptFlags::EXECUTE));
    assert!(!EptPaging::leaf_flags_valid(EptFlags::empty()));
    assert!(!EptPaging::leaf_flags_valid(EptFlags::WRITE));
    let clash = EptFlags::READ.with_memory_type(MemoryType::WriteBack)
        | EptFlags::READ.with_memory_type(MemoryType::WriteCombining);
    assert_eq!(clash.memory_type(), None);
    assert!(!EptPaging::leaf_flags_valid(clash));
}

// ---- Building, checked write by write ----

#[test]
fn maps_every_page_size_and_translates() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let mut replay = Replay::start(b.memory(), b.root());
    let base = 0xffff_8000_0000_0000;
    map_checked(&mut b, &mut replay, base, 0x4000_0000, PageSize::Size1G, KERNEL_DATA).unwrap();
    map_checked(&mut b, &mut replay, base + GIB, 0x20_0000, PageSize::Size2M, RW).unwrap();
    map_checked(&mut b, &mut replay, base + GIB + MIB2, 0x9000, PageSize::Size4K, RW | X86Flags::USER).unwrap();
    let t = b.translate(base + 0x1234_5678).unwrap();
    assert_eq!((t.phys, t.size, t.flags), (PhysAddr(0x5234_5678), PageSize::Size1G, KERNEL_DATA));
    assert_eq!(t.page_phys(), PhysAddr(0x4000_0000));
    let t = b.translate(base + GIB + 0x1_2345).unwrap();
    assert_eq!((t.phys, t.size, t.flags), (PhysAddr(0x21_2345), PageSize::Size2M, RW));
    let t = b.translate(base + GIB + MIB2 + 0xfff).unwrap();
    assert_eq!((t.phys, t.size), (PhysAddr(0x9fff), PageSize::Size4K));
    assert_eq!(b.translate(base + GIB + MIB2 + K4), None);
    assert_eq!(b.translate(0), None);
    assert_eq!(b.translate(0x0000_8000_0000_0000), None);
}

#[test]
fn user_rights_reach_the_intermediate_entries_only_when_needed() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let mut replay = Replay::start(b.memory(), b.root());
    let path = |b: &X86Builder, virt: u64| -> Vec<u64> {
        let mut table = b.root();
        let mut entries = Vec::new();
        for level in (2..=4).rev() {
            let entry = b.memory().read_u64(entry_addr(table, virt, level));
            entries.push(entry);
            table = X86Paging::address(entry);
        }
        entries
    };
    map_checked(&mut b, &mut replay, 0x40_0000, 0x1000, PageSize::Size4K, KERNEL_DATA).unwrap();
    assert!(path(&b, 0x40_0000).iter().all(|e| e & 0xfff == 0x003 && e >> 63 == 0));
    map_checked(&mut b, &mut replay, 0x40_1000, 0x2000, PageSize::Size4K, RW | X86Flags::USER).unwrap();
    assert!(path(&b, 0x40_0000).iter().all(|e| e & 0xfff == 0x007));
    // The supervisor page stays supervisor: its own entry says so.
    assert_eq!(b.translate(0x40_0000).unwrap().flags, KERNEL_DATA);
}

#[test]
fn ept_tables_are_built_in_order_too() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: EptBuilder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let mut replay = Replay::start(b.memory(), b.root());
    let ram = (EptFlags::READ | EptFlags::WRITE | EptFlags::EXECUTE).with_memory_type(MemoryType::WriteBack);
    let mmio = (EptFlags::READ | EptFlags::WRITE).with_memory_type(MemoryType::Uncacheable);
    map_checked(&mut b, &mut replay, 0, 0x8000_0000, PageSize::Size2M, ram).unwrap();
    map_checked(&mut b, &mut replay, 0xfee0_0000, 0x1_0000_0000, PageSize::Size4K, mmio).unwrap();
    map_checked(&mut b, &mut replay, 0x1_0000_0000, 0x1_4000_0000, PageSize::Size1G, ram).unwrap();
    assert_eq!(b.translate(0x1234).unwrap().phys, PhysAddr(0x8000_1234));
    assert_eq!(b.translate(0xfee0_0030).unwrap().flags, mmio);
    assert_eq!(b.translate(0x1_0000_0000).unwrap().size, PageSize::Size1G);
    assert_eq!(b.map(0x2000_0000, PhysAddr(0), PageSize::Size4K, EptFlags::WRITE), Err(MapError::InvalidFlags));
    assert_eq!(b.map(1 << 48, PhysAddr(0), PageSize::Size4K, ram), Err(MapError::NonCanonical));
}

#[test]
fn refused_maps_write_nothing() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    b.map(0, PhysAddr(0), PageSize::Size4K, RW).unwrap();
    b.map(GIB, PhysAddr(0), PageSize::Size1G, RW).unwrap();
    b.map(2 * GIB, PhysAddr(0), PageSize::Size2M, RW).unwrap();
    b.map(3 * GIB, PhysAddr(0), PageSize::Size4K, RW).unwrap();
    let writes = b.memory().log.len();
    let refused = [
        (0x1000 + 0x800, 0x1000, PageSize::Size4K, MapError::Misaligned),
        (0x1000, 0x1800, PageSize::Size4K, MapError::Misaligned),
        (0x10_0000, 0, PageSize::Size2M, MapError::Misaligned),
        (0x0000_8000_0000_0000, 0, PageSize::Size4K, MapError::NonCanonical),
        (0x1000, MAX_PHYS_ADDR, PageSize::Size4K, MapError::PhysOutOfRange),
        (0x4000_0000, MAX_PHYS_ADDR - 0x20_0000, PageSize::Size1G, MapError::Misaligned),
        (0, 0, PageSize::Size4K, MapError::AlreadyMapped),
        (GIB + 0x20_0000, 0, PageSize::Size2M, MapError::AlreadyMapped),
        (GIB + 0x5000, 0, PageSize::Size4K, MapError::AlreadyMapped),
        (2 * GIB + 0x1000, 0, PageSize::Size4K, MapError::AlreadyMapped),
        (2 * GIB, 0, PageSize::Size1G, MapError::SmallerPagesPresent),
        (3 * GIB, 0, PageSize::Size2M, MapError::SmallerPagesPresent),
        (3 * GIB, 0, PageSize::Size1G, MapError::SmallerPagesPresent),
    ];
    for (virt, phys, size, error) in refused {
        assert_eq!(b.map(virt, PhysAddr(phys), size, RW), Err(error), "{virt:#x} -> {phys:#x} {size:?}");
        assert_eq!(b.memory().log.len(), writes);
    }
}

#[test]
fn running_out_of_frames_leaves_the_tree_untouched() {
    let mut mem = RecordingMemory::default();
    // The root and one more table; a 4 KiB page in an empty tree needs three.
    let mut frames = TestFrames::limited(2);
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let writes = b.memory().log.len();
    assert_eq!(b.map(0x1000, PhysAddr(0x1000), PageSize::Size4K, RW), Err(MapError::OutOfFrames));
    assert_eq!(b.memory().log.len(), writes);
    assert_eq!(b.translate(0x1000), None);
    assert_eq!(frames.freed.len(), 1, "the frame taken is given back");
    frames.left = 2;
    let mut b: X86Builder = PageTableBuilder::with_root(&mut mem, &mut frames, PhysAddr(0x100_0000)).unwrap();
    let mut replay = Replay::start(b.memory(), b.root());
    map_checked(&mut b, &mut replay, 0x1000, 0x1000, PageSize::Size4K, RW).unwrap();
}

#[test]
fn bad_frames_and_roots_are_refused() {
    struct Crooked;
    impl FrameSource for Crooked {
        fn alloc_frame(&mut self) -> Option<PhysAddr> {
            Some(PhysAddr(0x1234))
        }
        fn free_frame(&mut self, _: PhysAddr) {}
    }
    let (mut mem, mut crooked) = (RecordingMemory::default(), Crooked);
    assert!(matches!(PageTableBuilder::<X86Paging, _, _>::new(&mut mem, &mut crooked), Err(MapError::BadFrame)));
    for root in [0x1234, MAX_PHYS_ADDR] {
        let b = PageTableBuilder::<X86Paging, _, _>::with_root(&mut mem, &mut crooked, PhysAddr(root));
        assert!(matches!(b, Err(MapError::BadFrame)));
    }
    let mut b = PageTableBuilder::<X86Paging, _, _>::with_root(&mut mem, &mut crooked, PhysAddr(0x2000)).unwrap();
    // Junk memory: the root entry looks present, so zero it first.
    b.mem.write_u64(PhysAddr(0x2000), 0);
    assert_eq!(b.map(0, PhysAddr(0), PageSize::Size4K, RW), Err(MapError::BadFrame));
    assert_eq!(b.memory().log.len(), 1);
}

#[test]
fn unmap_removes_whole_pages_only() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let mut replay = Replay::start(b.memory(), b.root());
    map_checked(&mut b, &mut replay, 0x20_0000, 0x60_0000, PageSize::Size2M, RW).unwrap();
    assert_eq!(b.unmap(0x20_1000), Err(UnmapError::NotPageStart));
    assert_eq!(b.unmap(0x40_0000), Err(UnmapError::NotMapped));
    assert_eq!(b.unmap(0x0000_8000_0000_0000), Err(UnmapError::NonCanonical));
    let old = b.unmap(0x20_0000).unwrap();
    replay.catch_up(b.memory(), &probes(0x20_0000, PageSize::Size2M)).unwrap();
    assert_eq!((old.phys, old.size, old.flags), (PhysAddr(0x60_0000), PageSize::Size2M, RW));
    assert_eq!(b.translate(0x20_0000), None);
    assert_eq!(b.unmap(0x20_0000), Err(UnmapError::NotMapped));
    // The freed slot takes a table of small pages; once those are gone the
    // table stays, so a large page no longer fits there.
    map_checked(&mut b, &mut replay, 0x20_0000, 0x1000, PageSize::Size4K, RW).unwrap();
    b.unmap(0x20_0000).unwrap();
    assert_eq!(b.map(0x20_0000, PhysAddr(0), PageSize::Size2M, RW), Err(MapError::SmallerPagesPresent));
}

#[test]
fn map_range_picks_the_largest_pages_allowed() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let start = GIB - MIB2 - K4;
    let len = K4 + MIB2 + GIB + MIB2 + K4;
    b.map_range(start, PhysAddr(start), len, RW, PageSize::Size1G).unwrap();
    let size_at = |b: &X86Builder, v: u64| b.translate(v).map(|t| t.size);
    let expected = [
        (start, PageSize::Size4K),
        (start + K4, PageSize::Size2M),
        (GIB, PageSize::Size1G),
        (2 * GIB, PageSize::Size2M),
        (2 * GIB + MIB2, PageSize::Size4K),
    ];
    for (virt, size) in expected {
        assert_eq!(size_at(&b, virt), Some(size), "{virt:#x}");
        assert_eq!(b.translate(virt).unwrap().phys, PhysAddr(virt));
    }
    assert_eq!(size_at(&b, start - 1), None);
    assert_eq!(size_at(&b, start + len), None);
    // Capped at 2 MiB, and misaligned against each other: only 4 KiB pages.
    b.map_range(4 * GIB, PhysAddr(0), GIB, RW, PageSize::Size2M).unwrap();
    assert_eq!(size_at(&b, 4 * GIB + GIB / 2), Some(PageSize::Size2M));
    b.map_range(6 * GIB, PhysAddr(K4), 2 * MIB2, RW, PageSize::Size1G).unwrap();
    assert_eq!(size_at(&b, 6 * GIB + MIB2), Some(PageSize::Size4K));
    // The very top of the address space, and an empty range.
    b.map_range(0xffff_ffff_8000_0000, PhysAddr(0), 2 * GIB, KERNEL_DATA, PageSize::Size2M).unwrap();
    assert_eq!(b.translate(u64::MAX).unwrap().phys, PhysAddr(2 * GIB - 1));
    b.map_range(8 * GIB, PhysAddr(0), 0, RW, PageSize::Size1G).unwrap();
}

#[test]
fn map_range_checks_everything_before_writing() {
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    b.map(0x40_0000 + 5 * K4, PhysAddr(0), PageSize::Size4K, RW).unwrap();
    let writes = b.memory().log.len();
    let refused = [
        (0x40_0000, 0, 16 * K4, MapError::AlreadyMapped),
        (0x0000_7fff_ffff_f000, 0, 2 * K4, MapError::NonCanonical), // runs into the hole
        (u64::MAX - K4 + 1, 0, 2 * K4, MapError::NonCanonical),     // wraps
        (0x80_0000, 0, K4 + 1, MapError::Misaligned),
        (0x80_0000, MAX_PHYS_ADDR - K4, 2 * K4, MapError::PhysOutOfRange),
        (0x80_0000, u64::MAX - K4 + 1, 2 * K4, MapError::PhysOutOfRange),
    ];
    for (virt, phys, len, error) in refused {
        assert_eq!(b.map_range(virt, PhysAddr(phys), len, RW, PageSize::Size1G), Err(error), "{virt:#x}");
        assert_eq!(b.memory().log.len(), writes);
    }
}

#[test]
fn map_range_rolls_back_when_frames_run_out() {
    let mut mem = RecordingMemory::default();
    // Root, PDPT, PD and one page table: the second 2 MiB region of 4 KiB
    // pages needs another page table.
    let mut frames = TestFrames::limited(4);
    let mut b: X86Builder = PageTableBuilder::new(&mut mem, &mut frames).unwrap();
    let result = b.map_range(0x20_0000, PhysAddr(0x1000), 2 * MIB2, RW, PageSize::Size1G);
    assert_eq!(result, Err(MapError::OutOfFrames));
    for page in (0x20_0000..0x60_0000).step_by(K4 as usize) {
        assert_eq!(b.translate(page), None);
    }
}

#[test]
fn frame_allocator_feeds_the_builder() {
    let mut alloc = FrameAllocator::new([PhysRange::new(0x10_0000, 0x20_0000)], &[]);
    let mut mem = RecordingMemory::default();
    let mut b = PageTableBuilder::<X86Paging, _, _>::new(&mut mem, &mut alloc).unwrap();
    let mut replay = Replay::<X86Paging>::start(b.memory(), b.root());
    // A 4 GiB direct map with 2 MiB pages: PML4, PDPT and four directories.
    b.map_range(0xffff_8000_0000_0000, PhysAddr(0), 4 * GIB, KERNEL_DATA, PageSize::Size2M).unwrap();
    replay.catch_up(b.memory(), &[0xffff_8000_0000_0000, 0xffff_8000_ffff_ffff]).unwrap();
    assert_eq!(b.translate(0xffff_8000_dead_beef).unwrap().phys, PhysAddr(0xdead_beef));
    assert_eq!(b.root(), PhysAddr(0x10_0000));
    assert_eq!(alloc.managed_bytes() - alloc.free_bytes(), 6 * K4);
}

// ---- The checker itself ----

#[test]
fn replay_catches_a_table_linked_before_it_is_zeroed() {
    let (root, table) = (PhysAddr(0x1000), PhysAddr(0x2000));
    let link = X86Paging::table_entry(table, RW);
    let mut mem = RecordingMemory::default();
    zero_table(&mut mem, root);
    mem.write_u64(root, link); // linked first...
    zero_table(&mut mem, table); // ...zeroed too late.
    let error = Replay::<X86Paging>::new(root).catch_up(&mem, &[0]).unwrap_err();
    assert!(error.contains("before its entry 0 was written"), "{error}");

    // Zeroing first is fine.
    let mut mem = RecordingMemory::default();
    zero_table(&mut mem, root);
    zero_table(&mut mem, table);
    mem.write_u64(root, link);
    Replay::<X86Paging>::new(root).catch_up(&mem, &[0]).unwrap();
}

#[test]
fn replay_catches_a_torn_translation() {
    // Remapping a page by writing a second leaf elsewhere first, then
    // editing the old one in two steps, passes through a third translation.
    let root = PhysAddr(0x1000);
    let mut mem = RecordingMemory::default();
    let mut frames = TestFrames::new();
    let mut b = PageTableBuilder::<X86Paging, _, _>::with_root(&mut mem, &mut frames, root).unwrap();
    zero_table(b.mem, root);
    let mut replay = Replay::<X86Paging>::start(b.memory(), root);
    b.map(0, PhysAddr(0x5000), PageSize::Size4K, RW).unwrap();
    replay.catch_up(b.memory(), &[0]).unwrap();
    let (addr, _, _) = find_leaf::<X86Paging, _>(b.memory(), root, 0).unwrap();
    b.mem.write_u64(addr, X86Paging::leaf_entry(PhysAddr(0x6000), PageSize::Size4K, RW));
    b.mem.write_u64(addr, X86Paging::leaf_entry(PhysAddr(0x7000), PageSize::Size4K, RW));
    assert!(replay.catch_up(b.memory(), &[0]).unwrap_err().contains("neither"));
}

// ---- Property tests against a reference model ----

/// One requested mapping, placed in one of four 8 GiB windows at granules
/// coarse enough that requests often collide.
#[derive(Clone, Debug)]
struct Request {
    window: usize,
    gib: u64,
    mib2: u64,
    k4: u64,
    size: PageSize,
    frame: u64,
    flags: u8,
}

fn request() -> impl Strategy<Value = Request> {
    let size = prop_oneof![Just(PageSize::Size4K), Just(PageSize::Size2M), Just(PageSize::Size1G)];
    (0..4usize, 0..8u64, 0..4u64, 0..4u64, size, 0..(1u64 << 20), any::<u8>())
        .prop_map(|(window, gib, mib2, k4, size, frame, flags)| Request { window, gib, mib2, k4, size, frame, flags })
}

type Model<Fl> = BTreeMap<u64, (PageSize, u64, Fl)>;

fn model_lookup<Fl: Copy>(model: &Model<Fl>, virt: u64) -> Option<(u64, PageSize, Fl)> {
    let (&start, &(size, phys, flags)) = model.range(..=virt).next_back()?;
    (virt - start < size.bytes()).then(|| (phys + (virt - start), size, flags))
}

/// Random maps (refused exactly when they overlap the model), random unmaps,
/// then every mapped page and random probes translate as the model says.
fn check_against_model<F: PagingFormat>(
    windows: [u64; 4],
    flags_of: fn(u8) -> F::Flags,
    requests: &[Request],
    unmaps: &[usize],
    probes_in_windows: &[(usize, u64)],
) -> Result<(), TestCaseError>
where
    F::Flags: PartialEq + core::fmt::Debug,
{
    let (mut mem, mut frames) = (RecordingMemory::default(), TestFrames::new());
    let mut b = PageTableBuilder::<F, _, _>::new(&mut mem, &mut frames).unwrap();
    let mut replay = Replay::<F>::start(b.memory(), b.root());
    let mut model: Model<F::Flags> = BTreeMap::new();
    for r in requests {
        let bytes = r.size.bytes();
        let virt = windows[r.window] + (r.gib * GIB + r.mib2 * MIB2 + r.k4 * K4) / bytes * bytes;
        let (phys, flags) = (r.frame * bytes, flags_of(r.flags));
        let last_before_end = model.range(..=virt + (bytes - 1)).next_back();
        let overlap = last_before_end.filter(|&(&start, &(size, ..))| start >= virt || virt - start < size.bytes());
        let result = map_checked(&mut b, &mut replay, virt, phys, r.size, flags);
        match overlap {
            None => {
                prop_assert_eq!(result, Ok(()));
                model.insert(virt, (r.size, phys, flags));
            }
            Some(_) => {
                // A page as large or larger blocks it; otherwise smaller pages do.
                let blocked_by_larger = model_lookup(&model, virt).is_some_and(|(_, size, _)| size >= r.size);
                let expected = if blocked_by_larger { MapError::AlreadyMapped } else { MapError::SmallerPagesPresent };
                prop_assert_eq!(result, Err(expected));
            }
        }
    }
    for &i in unmaps {
        let Some((&virt, &(size, phys, flags))) = model.iter().nth(i % model.len().max(1)) else {
            break;
        };
        let old = b.unmap(virt).unwrap();
        replay.catch_up(b.memory(), &probes(virt, size)).unwrap();
        prop_assert_eq!((old.phys, old.size, old.flags), (PhysAddr(phys), size, flags));
        model.remove(&virt);
    }
    let mut probes: Vec<u64> = probes_in_windows.iter().map(|&(w, offset)| windows[w] + offset).collect();
    for (&virt, &(size, ..)) in &model {
        probes.extend([virt, virt + size.bytes() / 2 + 8, virt + (size.bytes() - 1), virt.wrapping_sub(1)]);
    }
    for virt in probes {
        let actual = b.translate(virt).map(|t| (t.phys.0, t.size, t.flags));
        prop_assert_eq!(actual, model_lookup(&model, virt), "at {:#x}", virt);
    }
    Ok(())
}

fn x86_flags(bits: u8) -> X86Flags {
    [X86Flags::WRITABLE, X86Flags::USER, X86Flags::NO_EXECUTE, X86Flags::GLOBAL, X86Flags::PAT, X86Flags::CACHE_DISABLE]
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| bits & (1 << i) != 0)
        .fold(X86Flags::empty(), |all, (_, flag)| all | flag)
}

fn ept_flags(bits: u8) -> EptFlags {
    const TYPES: [MemoryType; 5] = [
        MemoryType::Uncacheable,
        MemoryType::WriteCombining,
        MemoryType::WriteThrough,
        MemoryType::WriteProtected,
        MemoryType::WriteBack,
    ];
    let mut flags = EptFlags::READ.with_memory_type(TYPES[usize::from(bits >> 4) % TYPES.len()]);
    for (i, flag) in
        [EptFlags::WRITE, EptFlags::EXECUTE, EptFlags::IGNORE_PAT, EptFlags::USER_EXECUTE].into_iter().enumerate()
    {
        if bits & (1 << i) != 0 {
            flags |= flag;
        }
    }
    flags
}

fn window_probe() -> impl Strategy<Value = (usize, u64)> {
    (0..4usize, 0..8 * GIB)
}

proptest! {
    // Each case replays tens of thousands of recorded writes; fewer cases keep
    // the suite quick, and each case is long enough for collisions to occur.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn x86_tables_match_the_model(
        requests in prop::collection::vec(request(), 1..40),
        unmaps in prop::collection::vec(any::<usize>(), 0..8),
        probes in prop::collection::vec(window_probe(), 0..32),
    ) {
        // Both ends of both canonical halves.
        let windows = [0, 0x0000_7ffe_0000_0000, 0xffff_8000_0000_0000, 0xffff_fffe_0000_0000];
        check_against_model::<X86Paging>(windows, x86_flags, &requests, &unmaps, &probes)?;
    }

    #[test]
    fn ept_tables_match_the_model(
        requests in prop::collection::vec(request(), 1..40),
        unmaps in prop::collection::vec(any::<usize>(), 0..8),
        probes in prop::collection::vec(window_probe(), 0..32),
    ) {
        let windows = [0, 1 << 40, 1 << 47, (1 << 48) - 8 * GIB];
        check_against_model::<EptPaging>(windows, ept_flags, &requests, &unmaps, &probes)?;
    }

    /// Walking tables full of junk (a hostile guest's EPT) answers, never panics.
    #[test]
    fn walking_junk_never_panics(root in any::<u64>(), addrs in prop::collection::vec(any::<u64>(), 1..64)) {
        let mem = RecordingMemory::default();
        for virt in addrs {
            let _ = translate::<X86Paging, _>(&mem, PhysAddr(root), virt);
            let _ = translate::<EptPaging, _>(&mem, PhysAddr(root), virt);
        }
    }
}
