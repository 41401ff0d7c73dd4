//! The shadow-EPT builder against a table memory that records every
//! write: translations compose EPT12 and EPT01, EPT12's faults reach L1
//! with the right qualification, and a CPU walking EPT02 at any moment
//! sees each translation either as it was or as it will be.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::guest_memory::VecMemory;
use crate::nested::test_support::{caps, WIDTH};

/// EPT02's table pages, with the full history of what happened to them.
#[derive(Default)]
struct RecordingTables {
    next: u64,
    pages: BTreeMap<u64, [u64; 512]>,
    log: Vec<Event>,
    limit: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Allocate(u64),
    Write { table: u64, index: usize, value: u64 },
    Free(u64),
}

impl ShadowTables for RecordingTables {
    fn allocate(&mut self) -> Option<u64> {
        if self.limit.is_some_and(|limit| self.pages.len() >= limit) {
            return None;
        }
        let page = 0x1_0000_0000 + self.next * 0x1000;
        self.next += 1;
        // Fresh pages hold garbage, so a missed initialisation shows.
        self.pages.insert(page, [0xdead_beef_dead_beef; 512]);
        self.log.push(Event::Allocate(page));
        Some(page)
    }

    fn free(&mut self, table: u64) {
        assert!(self.pages.remove(&table).is_some(), "double free of {table:#x}");
        self.log.push(Event::Free(table));
    }

    fn read(&self, table: u64, index: usize) -> u64 {
        self.pages[&table][index]
    }

    fn write(&mut self, table: u64, index: usize, value: u64) {
        self.pages.get_mut(&table).expect("write to a page that is not allocated")[index] = value;
        self.log.push(Event::Write { table, index, value });
    }
}

/// Replays `log` from `start` over the state before it and checks, after
/// every single write, that (1) an entry pointing to a table only ever
/// points to a page whose 512 entries were all written since it was
/// allocated, and (2) each probe address translates as before the
/// operation or as after it.
fn assert_old_or_new(
    tables: &RecordingTables,
    before: &BTreeMap<u64, [u64; 512]>,
    start: usize,
    eptp02: u64,
    probes: &[u64],
) {
    let after: Vec<Option<(u64, u64)>> = probes.iter().map(|&gpa| translate_ept02(tables, eptp02, gpa)).collect();
    let mut replay = Replay { pages: before.clone() };
    let old: Vec<Option<(u64, u64)>> = probes.iter().map(|&gpa| translate_ept02(&replay, eptp02, gpa)).collect();
    let mut initialised: BTreeMap<u64, BTreeSet<usize>> =
        before.keys().map(|&page| (page, (0..512).collect())).collect();
    for event in &tables.log[start..] {
        match *event {
            Event::Allocate(page) => {
                replay.pages.insert(page, [0xdead_beef_dead_beef; 512]);
                initialised.insert(page, BTreeSet::new());
            }
            Event::Free(page) => {
                replay.pages.remove(&page);
            }
            Event::Write { table, index, value } => {
                let target = value & 0x000f_ffff_ffff_f000;
                if value & EPT_RWX != 0 && value & EPT_LARGE == 0 && initialised.contains_key(&target) {
                    assert_eq!(
                        initialised[&target].len(),
                        512,
                        "entry points to table {target:#x} before it is filled"
                    );
                }
                replay.pages.get_mut(&table).unwrap()[index] = value;
                initialised.get_mut(&table).unwrap().insert(index);
                for (probe, (&gpa, (old, new))) in probes.iter().zip(old.iter().zip(&after)).enumerate() {
                    let now = translate_ept02(&replay, eptp02, gpa);
                    assert!(
                        now == *old || now == *new,
                        "probe {probe} ({gpa:#x}) reads {now:x?}: neither {old:x?} nor {new:x?}"
                    );
                }
            }
        }
    }
}

struct Replay {
    pages: BTreeMap<u64, [u64; 512]>,
}

impl ShadowTables for Replay {
    fn allocate(&mut self) -> Option<u64> {
        None
    }
    fn free(&mut self, _: u64) {}
    fn read(&self, table: u64, index: usize) -> u64 {
        // A walk through a page not (yet) allocated reads garbage, which
        // the old-or-new check then rejects.
        self.pages.get(&table).map_or(0xdead_beef_dead_beef, |page| page[index])
    }
    fn write(&mut self, _: u64, _: usize, _: u64) {}
}

/// EPT01: L1's RAM at host 0x8000_0000 + gpa, in blocks of `size_log2`,
/// read-write-execute, write-back; nothing above 64 MiB.
struct FakeEpt01 {
    size_log2: u32,
    permissions: u64,
}

impl Ept01 for FakeEpt01 {
    fn translate(&self, l1_gpa: u64) -> Option<Ept01Mapping> {
        (l1_gpa < 64 << 20).then_some(Ept01Mapping {
            hpa: 0x8000_0000 + l1_gpa,
            size_log2: self.size_log2,
            permissions: self.permissions,
            memory_type: 6 << 3,
        })
    }
}

const EPT01_4K: FakeEpt01 = FakeEpt01 { size_log2: 12, permissions: EPT_RWX };
const EPT01_2M: FakeEpt01 = FakeEpt01 { size_log2: 21, permissions: EPT_RWX };

/// L1's memory with EPT12 at 0x30_0000 (PML4), 0x30_1000 (PDPT), 0x30_2000
/// (PD), 0x30_3000 (PT). L2 0x0 → L1 0x40_0000 (4 KiB, RWX), L2
/// 0x1000 → L1 0x41_0000 (4 KiB, read-only), L2 0x20_0000 → L1 0x60_0000
/// (2 MiB, RWX), L2 0x4000_0000 → L1 0x0 (1 GiB, RWX), L2 0x8000_0000 →
/// L1 0x8000_0000 (1 GiB, RWX, beyond EPT01's 64 MiB).
fn ept12(memory: &mut VecMemory) -> u64 {
    memory.write_u64(0x30_0000, 0x30_1000 | 7).unwrap();
    memory.write_u64(0x30_1000, 0x30_2000 | 7).unwrap();
    memory.write_u64(0x30_1008, EPT_LARGE | 6 << 3 | 7).unwrap();
    memory.write_u64(0x30_1010, 0x8000_0000 | EPT_LARGE | 6 << 3 | 7).unwrap();
    memory.write_u64(0x30_2000, 0x30_3000 | 7).unwrap();
    memory.write_u64(0x30_2008, 0x60_0000 | EPT_LARGE | 6 << 3 | 7).unwrap();
    memory.write_u64(0x30_3000, 0x40_0000 | 6 << 3 | 7).unwrap();
    memory.write_u64(0x30_3008, 0x41_0000 | 6 << 3 | 1).unwrap();
    0x30_0000 | 3 << 3 | 6
}

fn setup(host_caps: u64) -> (Ept02, RecordingTables, VecMemory, u64) {
    let mut memory = VecMemory::new(8 << 20);
    let eptp12 = ept12(&mut memory);
    let mut ept02 = Ept02::new(EptVpidCapabilities(host_caps), caps().ept_vpid, WIDTH, 64);
    let mut tables = RecordingTables::default();
    let eptp02 = ept02.eptp02(eptp12, &mut tables).unwrap();
    (ept02, tables, memory, eptp02)
}

const HOST_2M_1G: u64 = EptVpidCapabilities::PAGES_2M | EptVpidCapabilities::PAGES_1G;
const READ: u64 = 1;
const WRITE: u64 = 2;
const FETCH: u64 = 4;

const PROBES: [u64; 6] = [0x123, 0x1abc, 0x20_0000, 0x3f_fff8, 0x4000_0000, 0x7fff_0000];

#[test]
fn a_4k_ept12_page_over_larger_ept01_memory_gets_a_4k_leaf() {
    let (mut ept02, mut tables, mut memory, eptp02) = setup(HOST_2M_1G);
    let before = tables.pages.clone();
    let start = tables.log.len();
    assert_eq!(ept02.handle_violation(0x123, READ, &mut memory, &EPT01_2M, &mut tables), Ept02Outcome::Installed);
    assert_eq!(translate_ept02(&tables, eptp02, 0x123), Some((0x8040_0123, EPT_RWX)));
    assert_eq!(translate_ept02(&tables, eptp02, 0x1123), None, "only the faulting page is installed");
    assert_old_or_new(&tables, &before, start, eptp02, &PROBES);
    // Root plus PDPT, PD, PT.
    assert_eq!(ept02.pages(), 4);
}

#[test]
fn large_pages_are_kept_when_both_levels_allow_them_and_split_otherwise() {
    let (mut ept02, mut tables, mut memory, eptp02) = setup(HOST_2M_1G);
    assert_eq!(ept02.handle_violation(0x21_2345, WRITE, &mut memory, &EPT01_2M, &mut tables), Ept02Outcome::Installed);
    // One 2 MiB leaf covers the whole EPT12 page.
    assert_eq!(translate_ept02(&tables, eptp02, 0x20_0000), Some((0x8060_0000, EPT_RWX)));
    assert_eq!(translate_ept02(&tables, eptp02, 0x3f_ffff), Some((0x807f_ffff, EPT_RWX)));

    // The same EPT12 page over 4 KiB EPT01 pages: 4 KiB leaves, one by one.
    let (mut ept02, mut tables, mut memory, eptp02) = setup(HOST_2M_1G);
    ept02.handle_violation(0x21_2345, READ, &mut memory, &EPT01_4K, &mut tables);
    assert_eq!(translate_ept02(&tables, eptp02, 0x21_2345), Some((0x8061_2345, EPT_RWX)));
    assert_eq!(translate_ept02(&tables, eptp02, 0x21_3000), None);

    // A host without large EPT pages splits everything to 4 KiB.
    let (mut ept02, mut tables, mut memory, eptp02) = setup(0);
    ept02.handle_violation(0x4000_1000, FETCH, &mut memory, &EPT01_2M, &mut tables);
    assert_eq!(translate_ept02(&tables, eptp02, 0x4000_1fff), Some((0x8000_1fff, EPT_RWX)));
    assert_eq!(translate_ept02(&tables, eptp02, 0x4000_2000), None);
}

#[test]
fn splitting_an_installed_large_leaf_is_old_or_new_at_every_write() {
    let (mut ept02, mut tables, mut memory, eptp02) = setup(HOST_2M_1G);
    ept02.handle_violation(0x20_0000, READ, &mut memory, &EPT01_2M, &mut tables);
    // L0 now backs part of that block with 4 KiB pages that are read-only
    // (as when it starts tracking writes): the 2 MiB leaf is replaced by a
    // table holding the same translations, then one leaf is narrowed.
    let before = tables.pages.clone();
    let start = tables.log.len();
    let read_only = FakeEpt01 { size_log2: 12, permissions: EPT_READ | EPT_EXECUTE };
    assert_eq!(ept02.handle_violation(0x20_5000, READ, &mut memory, &read_only, &mut tables), Ept02Outcome::Installed);
    assert_eq!(translate_ept02(&tables, eptp02, 0x20_5000), Some((0x8060_5000, EPT_READ | EPT_EXECUTE)));
    assert_eq!(
        translate_ept02(&tables, eptp02, 0x20_6000),
        Some((0x8060_6000, EPT_RWX)),
        "the rest of the block is kept"
    );
    let mut probes = PROBES.to_vec();
    probes.extend([0x20_5000, 0x20_6000, 0x3f_f000]);
    assert_old_or_new(&tables, &before, start, eptp02, &probes);
}

#[test]
fn ept12_violations_are_reflected_with_ept12s_permissions() {
    let (mut ept02, mut tables, mut memory, _) = setup(HOST_2M_1G);
    // A write to the read-only page, with a valid linear address (bits 7
    // and 8 from the hardware): bits 2:0 write, 5:3 = EPT12's R only.
    let outcome = ept02.handle_violation(0x1000, WRITE | 0x180, &mut memory, &EPT01_4K, &mut tables);
    assert_eq!(outcome, Ept02Outcome::ReflectViolation { qualification: 0x2 | 1 << 3 | 0x180 });
    // Not present in EPT12: permissions 0.
    let outcome = ept02.handle_violation(0x2000, READ | 1 << 12, &mut memory, &EPT01_4K, &mut tables);
    assert_eq!(outcome, Ept02Outcome::ReflectViolation { qualification: 0x1 | 1 << 12 });
    // The hardware's EPT02 permission bits are not L1's business.
    let outcome = ept02.handle_violation(0x2000, READ | 0x38, &mut memory, &EPT01_4K, &mut tables);
    assert_eq!(outcome, Ept02Outcome::ReflectViolation { qualification: 0x1 });
}

#[test]
fn ept12_misconfigurations_are_reflected() {
    // Write without read; reserved bit 7 in a PML4E; memory type 2; a frame
    // beyond MAXPHYADDR.
    for (address, entry) in [
        (0x30_3000u64, 0x40_0000u64 | 6 << 3 | 2),
        (0x30_0000, 0x30_1000 | 7 | EPT_LARGE),
        (0x30_3000, 0x40_0000 | 2 << 3 | 7),
        (0x30_3000, 1 << 45 | 6 << 3 | 7),
    ] {
        let (mut ept02, mut tables, mut memory, _) = setup(HOST_2M_1G);
        memory.write_u64(address, entry).unwrap();
        let outcome = ept02.handle_violation(0x0, READ, &mut memory, &EPT01_4K, &mut tables);
        assert_eq!(outcome, Ept02Outcome::ReflectMisconfiguration, "entry {entry:#x} at {address:#x}");
    }
}

#[test]
fn accessed_and_dirty_flags_in_ept12() {
    let (mut ept02, mut tables, mut memory, _) = setup(HOST_2M_1G);
    let eptp12 = 0x30_0000 | 3 << 3 | 6 | EPTP_ACCESSED_DIRTY;
    let eptp02 = ept02.eptp02(eptp12, &mut tables).unwrap();
    ept02.handle_violation(0x10, READ, &mut memory, &EPT01_4K, &mut tables);
    for table_entry in [0x30_0000, 0x30_1000, 0x30_2000, 0x30_3000] {
        assert_ne!(memory.read_u64(table_entry).unwrap() & EPT_ACCESSED, 0, "A at {table_entry:#x}");
    }
    assert_eq!(memory.read_u64(0x30_3000).unwrap() & EPT_DIRTY, 0);
    // A clean page is mapped without write, so the first write faults...
    assert_eq!(translate_ept02(&tables, eptp02, 0x10), Some((0x8040_0010, EPT_READ | EPT_EXECUTE)));
    ept02.handle_violation(0x10, WRITE, &mut memory, &EPT01_4K, &mut tables);
    // ...and sets D in L1's leaf, after which it is writable.
    assert_ne!(memory.read_u64(0x30_3000).unwrap() & EPT_DIRTY, 0);
    assert_eq!(translate_ept02(&tables, eptp02, 0x10), Some((0x8040_0010, EPT_RWX)));
}

#[test]
fn l1_memory_not_backed_by_ept01_is_l1s_own_fault() {
    let (mut ept02, mut tables, mut memory, _) = setup(HOST_2M_1G);
    // L2 0x8100_0000 is L1 0x8100_0000, above the fake EPT01's 64 MiB.
    let outcome = ept02.handle_violation(0x8100_0000, READ, &mut memory, &EPT01_2M, &mut tables);
    assert_eq!(outcome, Ept02Outcome::L1Fault { l1_gpa: 0x8100_0000 });
    // EPT01 without write permission: L0's fault too (e.g. a ROM).
    let read_only = FakeEpt01 { size_log2: 12, permissions: EPT_READ };
    assert_eq!(
        ept02.handle_violation(0x0, WRITE, &mut memory, &read_only, &mut tables),
        Ept02Outcome::L1Fault { l1_gpa: 0x40_0000 }
    );
}

#[test]
fn invept_retires_the_tables_until_the_shim_has_flushed() {
    let (mut ept02, mut tables, mut memory, eptp02) = setup(HOST_2M_1G);
    let eptp12 = ept02.eptp12().unwrap();
    ept02.handle_violation(0x0, READ, &mut memory, &EPT01_4K, &mut tables);
    assert_eq!(ept02.invalidate(Some(eptp12 + 0x1000)), None, "another EPTP12 is not shadowed");
    assert_eq!(ept02.invalidate(Some(eptp12)), Some(eptp02));
    assert_eq!(tables.pages.len(), 4, "nothing is freed before the flush");
    assert_eq!(ept02.handle_violation(0x0, READ, &mut memory, &EPT01_4K, &mut tables), Ept02Outcome::OutOfTables);
    ept02.reclaim(&mut tables);
    assert!(tables.pages.is_empty());
    assert_eq!(tables.log.iter().filter(|event| matches!(event, Event::Free(_))).count(), 4);
    // A new EPT02 starts empty.
    let eptp02 = ept02.eptp02(eptp12, &mut tables).unwrap();
    assert_eq!(translate_ept02(&tables, eptp02, 0x0), None);
    assert_eq!(ept02.invalidate(None), Some(eptp02));
}

#[test]
fn table_budget_and_allocation_failure_are_reported() {
    let (mut ept02, mut tables, mut memory, _) = setup(HOST_2M_1G);
    tables.limit = Some(2);
    assert_eq!(ept02.handle_violation(0x0, READ, &mut memory, &EPT01_4K, &mut tables), Ept02Outcome::OutOfTables);
    // What was written stays consistent: no entry points at a missing page.
    let mut small = Ept02::new(EptVpidCapabilities(HOST_2M_1G), caps().ept_vpid, WIDTH, 4);
    let mut tables = RecordingTables::default();
    small.eptp02(0x30_0000 | 3 << 3 | 6, &mut tables).unwrap();
    assert_eq!(small.handle_violation(0x0, READ, &mut memory, &EPT01_4K, &mut tables), Ept02Outcome::Installed);
    // Four tables are the budget: the next translation would need more.
    assert_eq!(
        small.handle_violation(0x4000_0000, READ, &mut memory, &EPT01_2M, &mut tables),
        Ept02Outcome::OutOfTables
    );
}

#[test]
fn walk_ept12_reports_the_leaf() {
    let mut memory = VecMemory::new(8 << 20);
    let eptp12 = ept12(&mut memory);
    let walk = walk_ept12(&mut memory, caps().ept_vpid, WIDTH, eptp12, 0x4123_4567, READ).unwrap();
    assert_eq!(walk, Ept12Translation { l1_gpa: 0x0123_4567, size_log2: 30, permissions: EPT_RWX, dirty: false });
    assert_eq!(reflected_qualification(0xffff, 5), 0x1187 | 5 << 3);
}
