//! Properties over hostile and random inputs: the loaders never panic, never
//! write outside the RAM they may use, write nothing at all when they fail,
//! and place everything aligned and without overlap.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::memory_map::{EBDA_START, FIRST_LOADABLE_ADDRESS, HIGH_MEMORY_START};
use super::test_images::*;
use super::{load_linux, load_multiboot, Contents, LoadedKernel, Module, Placement};
use crate::guest_memory::{GuestMemory, VecMemory};

const MIB: u64 = 1 << 20;
const RAM: usize = 4 << 20;

fn recording_memory() -> RecordingMemory<VecMemory> {
    RecordingMemory::new(VecMemory::new(RAM))
}

/// Every write lies in low RAM above page zero or in RAM from 1 MiB on, and
/// a failed load wrote nothing.
fn check_writes<T, E>(memory: &RecordingMemory<VecMemory>, result: &Result<T, E>) -> Result<(), TestCaseError> {
    if result.is_err() {
        prop_assert!(memory.writes.is_empty(), "a failed load wrote {:x?}", memory.writes);
    }
    for &(gpa, length) in &memory.writes {
        let end = gpa.checked_add(length);
        let inside = |start: u64, limit: u64| gpa >= start && end.is_some_and(|end| end <= limit);
        prop_assert!(
            inside(FIRST_LOADABLE_ADDRESS, EBDA_START) || inside(HIGH_MEMORY_START, RAM as u64),
            "write of {length:#x} bytes at {gpa:#x}"
        );
    }
    Ok(())
}

/// No two non-empty placements share a byte.
fn check_disjoint(placements: &[Placement]) -> Result<(), TestCaseError> {
    let mut sorted: Vec<&Placement> = placements.iter().filter(|placement| placement.length > 0).collect();
    sorted.sort_by_key(|placement| placement.start);
    for pair in sorted.windows(2) {
        prop_assert!(pair[0].end() <= pair[1].start, "{:x?} overlaps {:x?}", pair[0], pair[1]);
    }
    Ok(())
}

fn small_elf(class: ElfClass) -> Vec<u8> {
    let segments = vec![
        TestSegment { physical: MIB, virtual_: MIB, data: pattern(0x40, 1), memory_size: 0x40 },
        TestSegment { physical: MIB + 0x1000, virtual_: MIB + 0x1000, data: pattern(0x20, 2), memory_size: 0x800 },
    ];
    elf_image(class, MIB + 4, &segments, Some(0x3))
}

/// A bzImage small enough for a 4 MiB guest.
fn small_bzimage() -> FakeBzImage {
    FakeBzImage {
        pref_address: MIB,
        kernel_alignment: 0x1000,
        init_size: 0x1_0000,
        payload: pattern(0x400, 3),
        ..FakeBzImage::default()
    }
}

/// Byte changes at chosen positions (taken modulo the image's length), then
/// maybe a truncation.
fn mutate(mut image: Vec<u8>, changes: &[(usize, u8)], truncate_to: Option<usize>) -> Vec<u8> {
    for &(position, byte) in changes {
        let length = image.len();
        image[position % length] = byte;
    }
    if let Some(length) = truncate_to {
        image.truncate(length % (image.len() + 1));
    }
    image
}

fn changes() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)
}

/// Changes aimed at the Linux setup header most of the time.
fn header_changes() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((prop_oneof![0x1f1usize..0x26c, any::<usize>()], any::<u8>()), 1..8)
}

fn multiboot(memory: &mut RecordingMemory<VecMemory>, kernel: &[u8]) -> Result<LoadedKernel, String> {
    let module = [Module { bytes: b"module", cmdline: "m" }];
    load_multiboot(memory, kernel, "fuzz", "a b", &module).map_err(|error| alloc::format!("{error}"))
}

fn linux(memory: &mut RecordingMemory<VecMemory>, kernel: &[u8], initrd: &[u8]) -> Result<LoadedKernel, String> {
    load_linux(memory, kernel, "fuzz", "console=ttyS0", Some(initrd)).map_err(|error| alloc::format!("{error}"))
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_cleanly(kernel in prop::collection::vec(any::<u8>(), 0..0x3000)) {
        let mut memory = recording_memory();
        let result = multiboot(&mut memory, &kernel);
        check_writes(&memory, &result)?;
        let mut memory = recording_memory();
        let result = linux(&mut memory, &kernel, b"initrd");
        check_writes(&memory, &result)?;
    }

    #[test]
    fn a_valid_multiboot_header_over_arbitrary_bytes(
        flags in any::<u32>(),
        addresses in prop::array::uniform5(prop_oneof![any::<u32>(), 0x10_0000u32..0x10_2000]),
        rest in prop::collection::vec(any::<u8>(), 0..0x400),
    ) {
        let mut kernel = multiboot_header(flags);
        for (slot, address) in addresses.iter().enumerate() {
            put_u32(&mut kernel, 12 + 4 * slot, *address);
        }
        kernel.extend_from_slice(&rest);
        let mut memory = recording_memory();
        let result = multiboot(&mut memory, &kernel);
        check_writes(&memory, &result)?;
        if let Ok(loaded) = result {
            check_disjoint(&loaded.placements)?;
        }
    }

    #[test]
    fn mutated_multiboot_images_never_escape(
        kind in 0..3usize,
        changes in changes(),
        truncate_to in prop::option::of(any::<usize>()),
    ) {
        let image = match kind {
            0 => small_elf(ElfClass::Elf32),
            1 => small_elf(ElfClass::Elf64),
            _ => aout_image(0x10_0000, 0x100, 0x100, 0x20, 0),
        };
        let kernel = mutate(image, &changes, truncate_to);
        let mut memory = recording_memory();
        let result = multiboot(&mut memory, &kernel);
        check_writes(&memory, &result)?;
        if let Ok(loaded) = result {
            check_disjoint(&loaded.placements)?;
            prop_assert!(loaded.cpu.rip < 1 << 32);
        }
    }

    #[test]
    fn mutated_bzimages_never_escape(
        changes in header_changes(),
        truncate_to in prop::option::of(any::<usize>()),
        initrd_length in 0usize..0x10_0000,
    ) {
        let kernel = mutate(small_bzimage().build(), &changes, truncate_to);
        let mut memory = recording_memory();
        let result = linux(&mut memory, &kernel, &vec![0x5a; initrd_length]);
        check_writes(&memory, &result)?;
        if let Ok(loaded) = result {
            check_disjoint(&loaded.placements)?;
        }
    }

    #[test]
    fn random_setup_headers_place_the_initrd_within_its_limits(
        setup_sects in 0u8..8,
        relocatable_kernel in 0u8..2,
        alignment_shift in 0u32..24,
        pref_address in prop_oneof![Just(MIB), 0u64..(8 * MIB), any::<u64>()],
        init_size in prop_oneof![0u32..(4 << 20), any::<u32>()],
        initrd_addr_max in prop_oneof![Just(0x7fff_ffffu32), 0u32..(8 << 20), any::<u32>()],
        cmdline_size in 0u32..64,
        cmdline_length in 0usize..64,
        initrd_length in 0u64..(3 << 20),
    ) {
        let fake = FakeBzImage {
            setup_sects,
            relocatable_kernel,
            kernel_alignment: 1 << alignment_shift,
            pref_address,
            init_size,
            initrd_addr_max,
            cmdline_size,
            ..small_bzimage()
        };
        let initrd = pattern(initrd_length as usize, 9);
        let cmdline = "c".repeat(cmdline_length);
        let mut memory = recording_memory();
        let result = load_linux(&mut memory, &fake.build(), "fuzz", &cmdline, Some(&initrd));
        check_writes(&memory, &result)?;
        prop_assert_eq!(result.is_err() || cmdline_length as u32 <= cmdline_size, true);
        if let Ok(loaded) = result {
            check_disjoint(&loaded.placements)?;
            let kernel = loaded.placements.iter().find(|p| p.contents == Contents::LinuxKernel).unwrap();
            if let Some(placed) = loaded.placements.iter().find(|p| p.contents == Contents::Initrd) {
                prop_assert_eq!(placed.start % 4096, 0);
                prop_assert!(placed.start >= kernel.end());
                prop_assert!(placed.end() <= RAM as u64);
                prop_assert!(placed.end() - 1 <= u64::from(initrd_addr_max));
                prop_assert_eq!(read_bytes(&memory.inner, placed.start, initrd.len()), initrd);
            } else {
                prop_assert_eq!(initrd_length, 0);
            }
        }
    }

    #[test]
    fn random_module_sets_are_page_aligned_and_disjoint(
        modules in prop::collection::vec((0usize..0x6000, "[a-z0-9 =./]{0,24}"), 0..10),
        class in prop_oneof![Just(ElfClass::Elf32), Just(ElfClass::Elf64)],
    ) {
        let contents: Vec<Vec<u8>> =
            modules.iter().enumerate().map(|(index, (length, _))| pattern(*length, index as u8)).collect();
        let list: Vec<Module<'_>> = modules
            .iter()
            .zip(&contents)
            .map(|((_, cmdline), bytes)| Module { bytes, cmdline })
            .collect();
        let mut memory = recording_memory();
        let result = load_multiboot(&mut memory, &small_elf(class), "kernel", "", &list);
        check_writes(&memory, &result)?;
        let loaded = result.map_err(|error| TestCaseError::fail(alloc::format!("{error}")))?;
        check_disjoint(&loaded.placements)?;
        let memory = &memory.inner;
        let info = loaded.cpu.registers.rbx;
        prop_assert_eq!(memory.read_u32(info + 20).unwrap() as usize, list.len());
        let module_list = u64::from(memory.read_u32(info + 24).unwrap());
        for (index, module) in list.iter().enumerate() {
            let entry = module_list + 16 * index as u64;
            let start = u64::from(memory.read_u32(entry).unwrap());
            let end = u64::from(memory.read_u32(entry + 4).unwrap());
            let string = u64::from(memory.read_u32(entry + 8).unwrap());
            prop_assert_eq!(start % 4096, 0);
            prop_assert_eq!(end - start, module.bytes.len() as u64);
            prop_assert_eq!(read_bytes(memory, start, module.bytes.len()), module.bytes);
            prop_assert_eq!(read_c_string(memory, string), module.cmdline.as_bytes());
            let placed = loaded.placements.iter().find(|p| p.contents == Contents::Module { index }).unwrap();
            prop_assert_eq!((placed.start, placed.length), (start, end - start));
        }
    }
}
