//! Multiboot version 1 (specification 0.6.96): the protocol of
//! kvm-unit-tests and of many small test kernels.
//!
//! The kernel carries a header in its first 8192 bytes. Without header flag
//! 16 the kernel is an ELF executable whose `PT_LOAD` segments go to their
//! physical addresses; with it, the header's a.out-kludge addresses say what
//! to load where. Above the kernel's end the loader places the modules
//! (always page-aligned, whether or not header flag 0 asks), the boot GDT,
//! the `multiboot_info` structure, the module list, the memory map, the
//! loader's name, the command line and the module strings, in that order.
//!
//! The command line the kernel gets starts with the kernel's name, as GRUB
//! and QEMU pass it: kvm-unit-tests take its first word as `argv[0]`.

use alloc::vec;
use alloc::vec::Vec;

use super::bytes::{u32_at, StructWriter};
use super::cpu_state::{write_boot_gdt, GeneralRegisters, InitialCpuState, BOOT_GDT_BYTES};
use super::elf::{self, LoadSegment};
use super::error::{LoadError, LoadProblem};
use super::memory_map::{GuestMemoryMap, FOUR_GIB};
use super::placement::{align_up, check_no_nul, write, write_c_string, Placer, PAGE_SIZE};
use super::{Contents, LoadNotice, LoadedKernel, Placement};
use crate::guest_memory::GuestMemory;

/// The magic that starts a Multiboot header in the kernel image.
pub const MULTIBOOT_HEADER_MAGIC: u32 = 0x1bad_b002;
/// What the kernel finds in EAX: proof that a Multiboot loader started it.
pub const MULTIBOOT_BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// The header must lie wholly within the image's first 8192 bytes.
const HEADER_SEARCH_LIMIT: usize = 8192;
const HEADER_ALIGNMENT: usize = 4;

// Header flags. Bits 0..=15 are requirements: a loader that does not know
// one must refuse the kernel. Bits 16..=31 are optional features.
const HEADER_PAGE_ALIGN_MODULES: u32 = 1 << 0; // honored: modules are always page-aligned
const HEADER_MEMORY_INFO: u32 = 1 << 1; // honored: mem_* and mmap_* are always given
const HEADER_VIDEO_MODE: u32 = 1 << 2; // recorded as a notice, not provided
const HEADER_AOUT_KLUDGE: u32 = 1 << 16;
const HEADER_REQUIREMENTS: u32 = 0xffff;
const KNOWN_REQUIREMENTS: u32 = HEADER_PAGE_ALIGN_MODULES | HEADER_MEMORY_INFO | HEADER_VIDEO_MODE;

// Header layout: magic, flags, checksum; then, when flag 16 is set, the
// a.out-kludge addresses; then, when flag 2 is set, the video request.
const HEADER_BASE_BYTES: usize = 12;
const HEADER_AOUT_OFFSET: usize = 12;
const HEADER_WITH_AOUT_BYTES: usize = 32;
const HEADER_VIDEO_OFFSET: usize = 32;
const HEADER_WITH_VIDEO_BYTES: usize = 48;

// multiboot_info flags: which of its fields are valid.
const INFO_MEMORY: u32 = 1 << 0; // mem_lower, mem_upper
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODULES: u32 = 1 << 3; // mods_count, mods_addr
const INFO_MEMORY_MAP: u32 = 1 << 6; // mmap_length, mmap_addr
const INFO_LOADER_NAME: u32 = 1 << 9;

// multiboot_info field offsets.
const INFO_FLAGS: usize = 0;
const INFO_MEM_LOWER: usize = 4;
const INFO_MEM_UPPER: usize = 8;
const INFO_CMDLINE_ADDR: usize = 16;
const INFO_MODS_COUNT: usize = 20;
const INFO_MODS_ADDR: usize = 24;
const INFO_MMAP_LENGTH: usize = 44;
const INFO_MMAP_ADDR: usize = 48;
const INFO_BOOT_LOADER_NAME: usize = 64;
/// The structure through the framebuffer fields; the ones not given stay zero.
const INFO_BYTES: usize = 116;

/// A module list entry: mod_start, mod_end (exclusive), string, reserved.
const MODULE_ENTRY_BYTES: u64 = 16;
/// A memory map entry: `size` (20, the bytes after it), base_addr, length, type.
const MMAP_ENTRY_BYTES: u64 = 24;
const MMAP_ENTRY_SIZE_FIELD: u32 = 20;
const LOADER_NAME: &[u8] = b"Matryoshka\0";
/// Small structures are 8-byte aligned: the info's 64-bit fields want it.
const STRUCTURE_ALIGNMENT: u64 = 8;

/// A boot module: a file the kernel finds in memory, e.g. an initrd or a
/// test's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub bytes: &'a [u8],
    /// The module's string: by convention its name, then its arguments.
    pub cmdline: &'a str,
}

/// Loads a Multiboot kernel and its modules into guest memory, and returns
/// the vCPU state that starts it: flat 32-bit protected mode, EAX =
/// 0x2BADB002, EBX = the `multiboot_info` address, EIP = the entry point.
pub fn load_multiboot(
    memory: &mut impl GuestMemory,
    kernel: &[u8],
    kernel_name: &str,
    cmdline: &str,
    modules: &[Module<'_>],
) -> Result<LoadedKernel, LoadError> {
    load(memory, kernel, kernel_name, cmdline, modules)
        .map_err(|problem| LoadError { kernel: kernel_name.into(), problem })
}

fn load(
    memory: &mut impl GuestMemory,
    kernel: &[u8],
    kernel_name: &str,
    cmdline: &str,
    modules: &[Module<'_>],
) -> Result<LoadedKernel, LoadProblem> {
    let map = GuestMemoryMap::new(memory.size())?;
    let header = find_header(kernel)?;
    let image = match header.aout {
        Some(addresses) => plan_aout(kernel, header.offset, addresses, &map)?,
        None => plan_elf(kernel, &map)?,
    };

    let command_line = command_line(kernel_name, cmdline);
    check_no_nul(Contents::CommandLine, &command_line)?;
    for (index, module) in modules.iter().enumerate() {
        check_no_nul(Contents::ModuleString { index }, module.cmdline.as_bytes())?;
    }

    // Everything after the kernel; `image.end` is below 3 GiB, so rounding cannot overflow.
    let mut placer = Placer::new(&map, align_up(image.end, PAGE_SIZE).unwrap_or(u64::MAX));
    let mut module_addresses = Vec::with_capacity(modules.len());
    for (index, module) in modules.iter().enumerate() {
        module_addresses.push(placer.place(Contents::Module { index }, module.bytes.len() as u64, PAGE_SIZE)?);
    }
    let gdt_address = placer.place(Contents::Gdt, BOOT_GDT_BYTES, STRUCTURE_ALIGNMENT)?;
    let info_address = placer.place(Contents::MultibootInfo, INFO_BYTES as u64, STRUCTURE_ALIGNMENT)?;
    let module_list_bytes = (modules.len() as u64).saturating_mul(MODULE_ENTRY_BYTES);
    let module_list_address = placer.place(Contents::ModuleList, module_list_bytes, STRUCTURE_ALIGNMENT)?;
    let memory_map_bytes = map.regions().len() as u64 * MMAP_ENTRY_BYTES;
    let memory_map_address = placer.place(Contents::MultibootMemoryMap, memory_map_bytes, STRUCTURE_ALIGNMENT)?;
    let loader_name_address = placer.place(Contents::LoaderName, LOADER_NAME.len() as u64, 1)?;
    let command_line_address = placer.place(Contents::CommandLine, command_line.len() as u64 + 1, 1)?;
    let mut string_addresses = Vec::with_capacity(modules.len());
    for (index, module) in modules.iter().enumerate() {
        string_addresses.push(placer.place(Contents::ModuleString { index }, module.cmdline.len() as u64 + 1, 1)?);
    }

    // Everything is planned and checked; now write.
    for piece in &image.pieces {
        write(memory, piece.what, piece.address, piece.bytes)?;
        let bss_start = piece.address + piece.bytes.len() as u64;
        memory
            .fill(bss_start, piece.zeroed, 0)
            .map_err(|error| LoadProblem::WriteRefused { what: piece.what, error })?;
    }
    let mut module_list = Vec::with_capacity(module_list_bytes as usize);
    let planned = modules.iter().zip(module_addresses).zip(string_addresses);
    for (index, ((module, start), string)) in planned.enumerate() {
        write(memory, Contents::Module { index }, start, module.bytes)?;
        write_c_string(memory, Contents::ModuleString { index }, string, module.cmdline.as_bytes())?;
        let end = start + module.bytes.len() as u64;
        // All below 3 GiB: the placer only hands out usable RAM.
        for field in [start as u32, end as u32, string as u32, 0] {
            module_list.extend_from_slice(&field.to_le_bytes());
        }
    }
    write(memory, Contents::ModuleList, module_list_address, &module_list)?;
    let gdt = write_boot_gdt(memory, gdt_address)?;
    write(memory, Contents::LoaderName, loader_name_address, LOADER_NAME)?;
    write_c_string(memory, Contents::CommandLine, command_line_address, &command_line)?;
    write(memory, Contents::MultibootMemoryMap, memory_map_address, &memory_map_entries(&map))?;

    let mut info = [0u8; INFO_BYTES];
    let mut fields = StructWriter::new(&mut info);
    fields.put_u32(INFO_FLAGS, INFO_MEMORY | INFO_CMDLINE | INFO_MODULES | INFO_MEMORY_MAP | INFO_LOADER_NAME);
    fields.put_u32(INFO_MEM_LOWER, map.lower_memory_kib());
    fields.put_u32(INFO_MEM_UPPER, map.upper_memory_kib());
    fields.put_u32(INFO_CMDLINE_ADDR, command_line_address as u32);
    fields.put_u32(INFO_MODS_COUNT, modules.len() as u32);
    fields.put_u32(INFO_MODS_ADDR, module_list_address as u32);
    fields.put_u32(INFO_MMAP_LENGTH, memory_map_bytes as u32);
    fields.put_u32(INFO_MMAP_ADDR, memory_map_address as u32);
    fields.put_u32(INFO_BOOT_LOADER_NAME, loader_name_address as u32);
    write(memory, Contents::MultibootInfo, info_address, &info)?;

    let registers = GeneralRegisters {
        rax: u64::from(MULTIBOOT_BOOTLOADER_MAGIC),
        rbx: info_address,
        ..GeneralRegisters::default()
    };
    let mut placements: Vec<Placement> = image
        .pieces
        .iter()
        .map(|piece| Placement {
            contents: piece.what,
            start: piece.address,
            length: piece.bytes.len() as u64 + piece.zeroed,
        })
        .collect();
    placements.extend(placer.into_placements());
    let notices = header
        .video
        .map(|[mode_type, width, height, depth]| LoadNotice::MultibootVideoModeIgnored {
            mode_type,
            width,
            height,
            depth,
        })
        .into_iter()
        .collect();
    Ok(LoadedKernel {
        cpu: InitialCpuState::protected_flat32(u64::from(image.entry), registers, gdt),
        placements,
        notices,
    })
}

/// A Multiboot header, checked: its checksum adds up, its requirements are
/// known, and the fields its flags announce are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MultibootHeader {
    offset: usize,
    aout: Option<AoutAddresses>,
    /// mode_type, width, height, depth, if flag 2 asks for a video mode.
    video: Option<[u32; 4]>,
}

/// The a.out kludge's physical addresses (header flag 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AoutAddresses {
    /// Where the header's magic lands; fixes the file-to-memory offset.
    header_addr: u32,
    load_addr: u32,
    /// The end of text and data; 0: the whole rest of the file.
    load_end_addr: u32,
    /// The end of bss; 0: no bss.
    bss_end_addr: u32,
    entry_addr: u32,
}

fn find_header(kernel: &[u8]) -> Result<MultibootHeader, LoadProblem> {
    let searched = kernel.len().min(HEADER_SEARCH_LIMIT);
    let window = &kernel[..searched];
    let mut first_bad_checksum = None;
    let mut offset = 0;
    while offset + HEADER_BASE_BYTES <= searched {
        let field = |index: usize| u32_at(window, offset + 4 * index).unwrap_or_default();
        if field(0) == MULTIBOOT_HEADER_MAGIC {
            let (flags, checksum) = (field(1), field(2));
            if MULTIBOOT_HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) == 0 {
                return parse_header(window, offset, flags);
            }
            // The magic may be a stray constant in code; keep looking.
            first_bad_checksum.get_or_insert(LoadProblem::MultibootBadChecksum { offset, flags, checksum });
        }
        offset += HEADER_ALIGNMENT;
    }
    Err(first_bad_checksum.unwrap_or(LoadProblem::MultibootHeaderMissing { searched }))
}

fn parse_header(window: &[u8], offset: usize, flags: u32) -> Result<MultibootHeader, LoadProblem> {
    let unknown = flags & HEADER_REQUIREMENTS & !KNOWN_REQUIREMENTS;
    if unknown != 0 {
        return Err(LoadProblem::MultibootUnsupportedRequirements { flags, unknown });
    }
    let has_aout = flags & HEADER_AOUT_KLUDGE != 0;
    let has_video = flags & HEADER_VIDEO_MODE != 0;
    let needed = if has_video {
        HEADER_WITH_VIDEO_BYTES
    } else if has_aout {
        HEADER_WITH_AOUT_BYTES
    } else {
        HEADER_BASE_BYTES
    };
    let available = window.len() - offset;
    if needed > available {
        return Err(LoadProblem::MultibootHeaderTruncated { offset, needed, available });
    }
    let field = |at: usize| u32_at(window, offset + at).unwrap_or_default();
    let aout = has_aout.then(|| AoutAddresses {
        header_addr: field(HEADER_AOUT_OFFSET),
        load_addr: field(HEADER_AOUT_OFFSET + 4),
        load_end_addr: field(HEADER_AOUT_OFFSET + 8),
        bss_end_addr: field(HEADER_AOUT_OFFSET + 12),
        entry_addr: field(HEADER_AOUT_OFFSET + 16),
    });
    let video = has_video.then(|| core::array::from_fn(|index| field(HEADER_VIDEO_OFFSET + 4 * index)));
    Ok(MultibootHeader { offset, aout, video })
}

/// What goes where from the kernel file, checked against guest RAM.
struct KernelImage<'k> {
    pieces: Vec<KernelPiece<'k>>,
    entry: u32,
    /// The end of the highest piece, bss included.
    end: u64,
}

/// File bytes copied to `address`, followed by `zeroed` bytes of bss.
struct KernelPiece<'k> {
    what: Contents,
    address: u64,
    bytes: &'k [u8],
    zeroed: u64,
}

fn plan_elf<'k>(kernel: &'k [u8], map: &GuestMemoryMap) -> Result<KernelImage<'k>, LoadProblem> {
    let executable = elf::parse(kernel)?;
    let segments = &executable.segments;
    for segment in segments {
        map.check_loadable(
            Contents::ElfSegment { index: segment.index },
            segment.physical_address,
            segment.memory_size,
        )?;
    }
    check_segments_disjoint(segments)?;

    // A higher-half kernel's e_entry is virtual; with paging off it must be
    // the physical address of the same instruction.
    let entry = executable
        .segments
        .iter()
        .find(|segment| segment.contains_virtual(executable.entry))
        .map_or(executable.entry, |segment| executable.entry - segment.virtual_address + segment.physical_address);
    if entry >= FOUR_GIB {
        return Err(LoadProblem::EntryAbove4G { entry });
    }
    if !segments.iter().any(|segment| segment.contains_physical(entry)) {
        return Err(LoadProblem::EntryOutsideImage { entry });
    }

    let pieces = segments
        .iter()
        .map(|segment| KernelPiece {
            what: Contents::ElfSegment { index: segment.index },
            address: segment.physical_address,
            // Checked by `elf::parse`.
            bytes: elf::file_range(kernel, segment.file_offset, segment.file_size).unwrap_or_default(),
            zeroed: segment.memory_size - segment.file_size,
        })
        .collect();
    // Each end was checked against guest RAM above.
    let end = segments.iter().map(|segment| segment.physical_address + segment.memory_size).max().unwrap_or(0);
    Ok(KernelImage { pieces, entry: entry as u32, end })
}

/// Refuses segments that share bytes: which one wins would depend on load
/// order, and a linker never produces that for a kernel on purpose.
fn check_segments_disjoint(segments: &[LoadSegment]) -> Result<(), LoadProblem> {
    let mut by_address: Vec<&LoadSegment> = segments.iter().collect();
    by_address.sort_unstable_by_key(|segment| segment.physical_address);
    // Sorted by start, any overlap shows between neighbours.
    for pair in by_address.windows(2) {
        let (lower, upper) = (pair[0], pair[1]);
        if lower.physical_address + lower.memory_size > upper.physical_address {
            let (first, second) = if lower.index < upper.index { (lower, upper) } else { (upper, lower) };
            return Err(LoadProblem::Overlap {
                first: Contents::ElfSegment { index: first.index },
                first_start: first.physical_address,
                first_length: first.memory_size,
                second: Contents::ElfSegment { index: second.index },
                second_start: second.physical_address,
                second_length: second.memory_size,
            });
        }
    }
    Ok(())
}

fn plan_aout<'k>(
    kernel: &'k [u8],
    header_offset: usize,
    addresses: AoutAddresses,
    map: &GuestMemoryMap,
) -> Result<KernelImage<'k>, LoadProblem> {
    let AoutAddresses { header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr } = addresses;
    // The header sits (header_addr - load_addr) bytes into what is loaded,
    // which fixes where in the file loading starts.
    let header_into_image =
        header_addr.checked_sub(load_addr).ok_or(LoadProblem::AoutLoadAfterHeader { load_addr, header_addr })?;
    let file_offset = (header_offset as u64)
        .checked_sub(u64::from(header_into_image))
        .ok_or(LoadProblem::AoutLoadBeforeFileStart { header_offset, header_addr, load_addr })?;
    let length = if load_end_addr == 0 {
        // `file_offset` <= `header_offset` < the file's length.
        kernel.len() as u64 - file_offset
    } else {
        u64::from(
            load_end_addr
                .checked_sub(load_addr)
                .ok_or(LoadProblem::AoutLoadEndBeforeLoad { load_addr, load_end_addr })?,
        )
    };
    let bytes = elf::file_range(kernel, file_offset, length).ok_or(LoadProblem::AoutImageBeyondFile {
        file_offset,
        length,
        file_length: kernel.len(),
    })?;
    let load_end = u64::from(load_addr) + length;
    let zeroed = if bss_end_addr == 0 {
        0
    } else {
        u64::from(bss_end_addr)
            .checked_sub(load_end)
            .ok_or(LoadProblem::AoutBssEndBeforeLoadEnd { load_end, bss_end_addr })?
    };
    map.check_loadable(Contents::AoutImage, u64::from(load_addr), length + zeroed)?;
    let entry = u64::from(entry_addr);
    if !(u64::from(load_addr)..load_end).contains(&entry) {
        return Err(LoadProblem::EntryOutsideImage { entry });
    }
    let piece = KernelPiece { what: Contents::AoutImage, address: u64::from(load_addr), bytes, zeroed };
    Ok(KernelImage { pieces: vec![piece], entry: entry_addr, end: load_end + zeroed })
}

/// The kernel's name, then the user's command line.
fn command_line(kernel_name: &str, cmdline: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(kernel_name.len() + 1 + cmdline.len());
    line.extend_from_slice(kernel_name.as_bytes());
    if !kernel_name.is_empty() && !cmdline.is_empty() {
        line.push(b' ');
    }
    line.extend_from_slice(cmdline.as_bytes());
    line
}

fn memory_map_entries(map: &GuestMemoryMap) -> Vec<u8> {
    let mut entries = Vec::with_capacity(map.regions().len() * MMAP_ENTRY_BYTES as usize);
    for region in map.regions() {
        entries.extend_from_slice(&MMAP_ENTRY_SIZE_FIELD.to_le_bytes());
        entries.extend_from_slice(&region.start.to_le_bytes());
        entries.extend_from_slice(&region.length.to_le_bytes());
        entries.extend_from_slice(&region.kind.e820_type().to_le_bytes());
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use crate::loader::cpu_state::{CpuMode, DescriptorTable, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR};
    use crate::loader::error::ProtectedArea;
    use crate::loader::test_images::*;
    use alloc::string::ToString;

    const MIB: u64 = 1 << 20;
    const RAM: usize = 64 << 20;

    /// Guest memory full of 0xaa, so that zeroing and untouched bytes show.
    fn dirty_memory() -> VecMemory {
        let mut memory = VecMemory::new(RAM);
        memory.fill(0, RAM as u64, 0xaa).unwrap();
        memory
    }

    /// Text at 1 MiB, data (with bss) after a gap, and a bss-only segment.
    fn three_segments() -> Vec<TestSegment> {
        vec![
            TestSegment { physical: 0x10_0000, virtual_: 0x10_0000, data: pattern(0x1234, 1), memory_size: 0x1234 },
            TestSegment { physical: 0x10_3000, virtual_: 0x10_3000, data: pattern(0x100, 2), memory_size: 0x2100 },
            TestSegment { physical: 0x10_6000, virtual_: 0x10_6000, data: Vec::new(), memory_size: 0x800 },
        ]
    }

    fn load_image(memory: &mut VecMemory, image: &[u8]) -> Result<LoadedKernel, LoadProblem> {
        load_multiboot(memory, image, "test.elf", "", &[]).map_err(|error| error.problem)
    }

    fn info_field(memory: &VecMemory, info: u64, offset: usize) -> u32 {
        memory.read_u32(info + offset as u64).unwrap()
    }

    #[test]
    fn elf32_segments_land_at_their_physical_addresses_with_bss_zeroed() {
        let image = elf_image(ElfClass::Elf32, 0x10_0040, &three_segments(), Some(0));
        let mut memory = dirty_memory();
        let loaded = load_multiboot(&mut memory, &image, "test.elf", "console=ttyS0 -v", &[]).unwrap();
        let ram = memory.as_slice();
        assert_eq!(&ram[0x10_0000..0x10_1234], pattern(0x1234, 1).as_slice());
        assert_eq!(ram[0x10_1234], 0xaa, "the gap between segments is not the loader's");
        assert_eq!(&ram[0x10_3000..0x10_3100], pattern(0x100, 2).as_slice());
        assert!(ram[0x10_3100..0x10_5100].iter().all(|&byte| byte == 0), "bss zeroed");
        assert_eq!(ram[0x10_5100], 0xaa);
        assert!(ram[0x10_6000..0x10_6800].iter().all(|&byte| byte == 0));
        assert_eq!(ram[0x10_6800], 0xaa);
        assert!(ram[..0x10_0000].iter().all(|&byte| byte == 0xaa), "the first MiB is untouched");

        let info = loaded.cpu.registers.rbx;
        assert_eq!(
            loaded.cpu,
            InitialCpuState {
                mode: CpuMode::ProtectedFlat32 { code_selector: 0x10, data_selector: 0x18 },
                rip: 0x10_0040,
                registers: GeneralRegisters { rax: 0x2bad_b002, rbx: info, ..GeneralRegisters::default() },
                rflags: 0x2,
                gdt: Some(DescriptorTable { base: 0x10_7000, limit: 31 }),
            }
        );
        // The kernel ends at 0x106800: the GDT opens the next page, the info follows.
        assert_eq!(info, 0x10_7020);
        assert_eq!(memory.read_u64(0x10_7010).unwrap(), FLAT_CODE_DESCRIPTOR);
        assert_eq!(memory.read_u64(0x10_7018).unwrap(), FLAT_DATA_DESCRIPTOR);
        assert_eq!(info_field(&memory, info, INFO_FLAGS), 0b10_0100_1101);
        assert_eq!(info_field(&memory, info, INFO_MEM_LOWER), 639);
        assert_eq!(info_field(&memory, info, INFO_MEM_UPPER), 63 * 1024);
        assert_eq!(info_field(&memory, info, 12), 0, "no boot_device");
        let cmdline = info_field(&memory, info, INFO_CMDLINE_ADDR);
        assert_eq!(read_c_string(&memory, cmdline.into()), b"test.elf console=ttyS0 -v");
        let name = info_field(&memory, info, INFO_BOOT_LOADER_NAME);
        assert_eq!(read_c_string(&memory, name.into()), b"Matryoshka");
        assert_eq!(info_field(&memory, info, INFO_MODS_COUNT), 0);
        // Everything else in the structure (syms, drives, config, APM, VBE, framebuffer) is zero.
        let rest = read_bytes(&memory, info, INFO_BYTES);
        for (offset, byte) in rest.iter().enumerate() {
            let given = [0..12, 16..28, 44..52, 64..68].iter().any(|range| range.contains(&offset));
            assert!(given || *byte == 0, "info byte {offset} is {byte:#x}");
        }

        let mmap = u64::from(info_field(&memory, info, INFO_MMAP_ADDR));
        assert_eq!(info_field(&memory, info, INFO_MMAP_LENGTH), 4 * 24);
        let expected: [(u64, u64, u32); 4] =
            [(0, 0x9_fc00, 1), (0x9_fc00, 0x400, 2), (0xf_0000, 0x1_0000, 2), (MIB, 63 * MIB, 1)];
        for (index, (base, length, kind)) in expected.into_iter().enumerate() {
            let entry = mmap + 24 * index as u64;
            assert_eq!(memory.read_u32(entry).unwrap(), 20, "size of entry {index}");
            assert_eq!(memory.read_u64(entry + 4).unwrap(), base);
            assert_eq!(memory.read_u64(entry + 12).unwrap(), length);
            assert_eq!(memory.read_u32(entry + 20).unwrap(), kind);
        }

        assert_eq!(
            &loaded.placements[..3],
            &[
                Placement { contents: Contents::ElfSegment { index: 0 }, start: 0x10_0000, length: 0x1234 },
                Placement { contents: Contents::ElfSegment { index: 1 }, start: 0x10_3000, length: 0x2100 },
                Placement { contents: Contents::ElfSegment { index: 2 }, start: 0x10_6000, length: 0x800 },
            ]
        );
        assert!(loaded.notices.is_empty());
    }

    #[test]
    fn elf64_higher_half_kernel_loads_at_physical_addresses_and_enters_physically() {
        const BASE: u64 = 0xffff_ffff_8000_0000;
        let segments = vec![
            TestSegment {
                physical: 0x20_0000,
                virtual_: BASE + 0x20_0000,
                data: pattern(0x800, 3),
                memory_size: 0x800,
            },
            TestSegment {
                physical: 0x20_1000,
                virtual_: BASE + 0x20_1000,
                data: pattern(0x10, 4),
                memory_size: 0x1000,
            },
        ];
        let image = elf_image(ElfClass::Elf64, BASE + 0x20_0123, &segments, Some(0));
        let mut memory = dirty_memory();
        let loaded = load_image(&mut memory, &image).unwrap();
        assert_eq!(loaded.cpu.rip, 0x20_0123);
        assert_eq!(&memory.as_slice()[0x20_0000..0x20_0800], pattern(0x800, 3).as_slice());
        assert_eq!(&memory.as_slice()[0x20_1000..0x20_1010], pattern(0x10, 4).as_slice());
        assert!(memory.as_slice()[0x20_1010..0x20_2000].iter().all(|&byte| byte == 0));
        assert_eq!(loaded.cpu.gdt.unwrap().base, 0x20_2000);
    }

    #[test]
    fn elf64_identity_mapped_kernel_enters_at_e_entry() {
        let image = elf_image(ElfClass::Elf64, 0x10_1000, &three_segments(), Some(0));
        let loaded = load_image(&mut VecMemory::new(RAM), &image).unwrap();
        assert_eq!(loaded.cpu.rip, 0x10_1000);
    }

    #[test]
    fn kernel_in_low_memory_gets_its_structures_right_after_it() {
        let segments =
            vec![TestSegment { physical: 0x8000, virtual_: 0x8000, data: pattern(0x100, 5), memory_size: 0x100 }];
        let image = elf_image(ElfClass::Elf32, 0x8000, &segments, Some(0));
        let loaded = load_image(&mut VecMemory::new(RAM), &image).unwrap();
        assert_eq!(loaded.cpu.gdt.unwrap().base, 0x9000);
        assert_eq!(loaded.cpu.registers.rbx, 0x9020);
    }

    #[test]
    fn modules_are_page_aligned_with_their_strings() {
        let image = elf_image(ElfClass::Elf32, 0x10_0000, &three_segments(), Some(HEADER_PAGE_ALIGN_MODULES));
        let first = pattern(0x1801, 6);
        let second = pattern(0x10, 7);
        let modules = [
            Module { bytes: &first, cmdline: "initrd.img root=/dev/ram" },
            Module { bytes: &[], cmdline: "" },
            Module { bytes: &second, cmdline: "data" },
        ];
        let mut memory = dirty_memory();
        let loaded = load_multiboot(&mut memory, &image, "k", "", &modules).unwrap();
        let info = loaded.cpu.registers.rbx;
        assert_eq!(info_field(&memory, info, INFO_MODS_COUNT), 3);
        let list = u64::from(info_field(&memory, info, INFO_MODS_ADDR));
        let entry = |index: u64, field: u64| memory.read_u32(list + 16 * index + 4 * field).unwrap();
        // The kernel ends at 0x106800; the modules start on the next page.
        assert_eq!((entry(0, 0), entry(0, 1)), (0x10_7000, 0x10_8801));
        assert_eq!((entry(1, 0), entry(1, 1)), (0x10_9000, 0x10_9000));
        assert_eq!((entry(2, 0), entry(2, 1)), (0x10_9000, 0x10_9010));
        assert_eq!(&memory.as_slice()[0x10_7000..0x10_8801], first.as_slice());
        assert_eq!(&memory.as_slice()[0x10_9000..0x10_9010], second.as_slice());
        for (index, string) in [&b"initrd.img root=/dev/ram"[..], b"", b"data"].into_iter().enumerate() {
            assert_eq!(read_c_string(&memory, entry(index as u64, 2).into()), string);
            assert_eq!(entry(index as u64, 3), 0, "reserved");
        }
        assert_eq!(read_c_string(&memory, info_field(&memory, info, INFO_CMDLINE_ADDR).into()), b"k");
        assert_eq!(info, 0x10_9030, "the GDT and the info follow the last module");
    }

    #[test]
    fn aout_kludge_image_loads_at_load_addr() {
        let image = aout_image(0x20_0000, 0x1000, 0x3000, 0x30, 0);
        let mut memory = dirty_memory();
        let loaded = load_image(&mut memory, &image).unwrap();
        assert_eq!(&memory.as_slice()[0x20_0000..0x20_1000], image.as_slice());
        assert!(memory.as_slice()[0x20_1000..0x20_4000].iter().all(|&byte| byte == 0));
        assert_eq!(loaded.cpu.rip, 0x20_0030);
        assert_eq!(loaded.cpu.registers.rax, 0x2bad_b002);
        assert_eq!(loaded.placements[0], Placement { contents: Contents::AoutImage, start: 0x20_0000, length: 0x4000 });
        assert_eq!(loaded.cpu.gdt.unwrap().base, 0x20_4000);
    }

    #[test]
    fn aout_kludge_with_load_end_zero_takes_the_rest_of_the_file_and_the_header_may_sit_later() {
        // Loading starts 8 bytes into the file: header_addr - load_addr = 8, the header is at 16.
        let mut image = aout_image(0x30_0000, 0x800, 0, 0x20, 0);
        let h = AOUT_HEADER_OFFSET;
        put_u32(&mut image, h + 12, 0x30_0008); // header_addr
        put_u32(&mut image, h + 20, 0); // load_end_addr: the rest of the file
        let mut memory = dirty_memory();
        let loaded = load_image(&mut memory, &image).unwrap();
        assert_eq!(&memory.as_slice()[0x30_0000..0x30_07f8], &image[8..]);
        assert_eq!(memory.as_slice()[0x30_07f8], 0xaa);
        assert_eq!(loaded.placements[0].length, 0x7f8);
        assert_eq!(loaded.cpu.rip, 0x30_0020);
    }

    #[test]
    fn a_video_request_is_recorded_not_honored() {
        let image =
            elf_image(ElfClass::Elf32, 0x10_0000, &three_segments(), Some(HEADER_VIDEO_MODE | HEADER_MEMORY_INFO));
        let mut memory = dirty_memory();
        let loaded = load_image(&mut memory, &image).unwrap();
        assert_eq!(
            loaded.notices,
            [LoadNotice::MultibootVideoModeIgnored { mode_type: 0, width: 1024, height: 768, depth: 32 }]
        );
        assert_eq!(info_field(&memory, loaded.cpu.registers.rbx, INFO_FLAGS) & (1 << 11 | 1 << 12), 0);
        assert_eq!(
            loaded.notices[0].to_string(),
            "the kernel asks for a video mode (type 0, 1024x768x32); it gets no video information"
        );
    }

    #[test]
    fn the_first_valid_header_wins_over_a_stray_magic() {
        let mut image = elf_image(ElfClass::Elf32, 0x10_0000, &three_segments(), Some(0));
        let header = elf_multiboot_header_offset(ElfClass::Elf32, 3);
        // A stray magic in the ELF header's padding, before the real header.
        put_u32(&mut image, 8, MULTIBOOT_HEADER_MAGIC);
        assert!(load_image(&mut VecMemory::new(RAM), &image).is_ok());
        // Without the real one, the stray magic's bad checksum is the error.
        put_u32(&mut image, header + 8, 0);
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &image),
            // Flags from e_ident's padding, checksum from e_type (2) and e_machine (3).
            Err(LoadProblem::MultibootBadChecksum { offset: 8, flags: 0, checksum: 0x0003_0002 })
        );
    }

    #[test]
    fn header_errors() {
        let segments = three_segments();
        let image = elf_image(ElfClass::Elf32, 0x10_0000, &segments, Some(0));
        let header = elf_multiboot_header_offset(ElfClass::Elf32, 3);
        let plain_elf = elf_image(ElfClass::Elf32, 0x10_0000, &segments, None);
        assert_eq!(plain_elf.len(), 0x1400);
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &plain_elf),
            Err(LoadProblem::MultibootHeaderMissing { searched: 0x1400 })
        );
        assert_eq!(load_image(&mut VecMemory::new(RAM), &[]), Err(LoadProblem::MultibootHeaderMissing { searched: 0 }));
        let mut bad_checksum = image.clone();
        put_u32(&mut bad_checksum, header + 8, 0x1234);
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &bad_checksum),
            Err(LoadProblem::MultibootBadChecksum { offset: header, flags: 0, checksum: 0x1234 })
        );
        // A header beyond the first 8192 bytes does not count.
        let mut late = vec![0u8; 8192];
        late.extend_from_slice(&multiboot_header(0));
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &late),
            Err(LoadProblem::MultibootHeaderMissing { searched: 8192 })
        );
        // Nor does a misaligned one.
        let mut misaligned = vec![0u8; 2];
        misaligned.extend_from_slice(&multiboot_header(0));
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &misaligned),
            Err(LoadProblem::MultibootHeaderMissing { searched: 50 })
        );
        let mut unknown = image.clone();
        set_multiboot_flags(&mut unknown, header, 0x8008);
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &unknown),
            Err(LoadProblem::MultibootUnsupportedRequirements { flags: 0x8008, unknown: 0x8008 })
        );
        // Optional bits the loader does not know are fine.
        let mut optional = image.clone();
        set_multiboot_flags(&mut optional, header, 0x8000_0000);
        assert!(load_image(&mut VecMemory::new(RAM), &optional).is_ok());
        // The a.out fields announced by flag 16, cut off by the 8192-byte limit.
        let mut cut = vec![0u8; 8192 - 16];
        cut.extend_from_slice(&multiboot_header(HEADER_AOUT_KLUDGE));
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &cut),
            Err(LoadProblem::MultibootHeaderTruncated { offset: 8176, needed: 32, available: 16 })
        );
        // And the video fields, cut off by the end of the file.
        let short = multiboot_header(HEADER_VIDEO_MODE)[..40].to_vec();
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &short),
            Err(LoadProblem::MultibootHeaderTruncated { offset: 0, needed: 48, available: 40 })
        );
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &multiboot_header(0)),
            Err(LoadProblem::NotElf { found: [0x02, 0xb0, 0xad, 0x1b] })
        );
    }

    #[test]
    fn elf_placement_errors() {
        let segment = |physical: u64, memory_size: u64| TestSegment {
            physical,
            virtual_: physical,
            data: pattern(0x10, 9),
            memory_size,
        };
        let try_segments = |segments: &[TestSegment], entry: u64| {
            load_image(&mut VecMemory::new(RAM), &elf_image(ElfClass::Elf32, entry, segments, Some(0)))
        };
        assert_eq!(
            try_segments(&[segment(MIB, 0x100), segment(0x1000_0000, 0x2000)], MIB),
            Err(LoadProblem::OutsideRam {
                what: Contents::ElfSegment { index: 1 },
                start: 0x1000_0000,
                length: 0x2000,
                usable_end: RAM as u64,
                ram_bytes: RAM as u64
            })
        );
        assert_eq!(
            try_segments(&[segment(0x800, 0x100)], 0x800),
            Err(LoadProblem::InProtectedArea {
                what: Contents::ElfSegment { index: 0 },
                start: 0x800,
                length: 0x100,
                area: ProtectedArea::FirstPage
            })
        );
        assert_eq!(
            try_segments(&[segment(0xf_0000, 0x100)], 0xf_0000),
            Err(LoadProblem::InProtectedArea {
                what: Contents::ElfSegment { index: 0 },
                start: 0xf_0000,
                length: 0x100,
                area: ProtectedArea::LegacyBiosArea
            })
        );
        assert_eq!(
            try_segments(&[segment(MIB + 0x1000, 0x1000), segment(MIB, 0x1001)], MIB),
            Err(LoadProblem::Overlap {
                first: Contents::ElfSegment { index: 0 },
                first_start: MIB + 0x1000,
                first_length: 0x1000,
                second: Contents::ElfSegment { index: 1 },
                second_start: MIB,
                second_length: 0x1001
            })
        );
        // Touching is fine.
        assert!(try_segments(&[segment(MIB + 0x1000, 0x1000), segment(MIB, 0x1000)], MIB).is_ok());
        assert_eq!(
            try_segments(&[segment(MIB, 0x100)], MIB + 0x100),
            Err(LoadProblem::EntryOutsideImage { entry: MIB + 0x100 })
        );
        let entry_high = elf_image(ElfClass::Elf64, 0x1_0010_0000, &[segment(MIB, 0x100)], Some(0));
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &entry_high),
            Err(LoadProblem::EntryAbove4G { entry: 0x1_0010_0000 })
        );
        // A 64-bit address that wraps when the size is added.
        let wrapping = elf_image(ElfClass::Elf64, MIB, &[segment(u64::MAX - 0x10, 0x100)], Some(0));
        assert!(matches!(load_image(&mut VecMemory::new(RAM), &wrapping), Err(LoadProblem::OutsideRam { .. })));
    }

    #[test]
    fn aout_errors() {
        let h = AOUT_HEADER_OFFSET;
        let patched = |field: usize, value: u32| {
            let mut image = aout_image(0x20_0000, 0x1000, 0x100, 0x20, 0);
            put_u32(&mut image, h + field, value);
            load_image(&mut VecMemory::new(RAM), &image)
        };
        assert_eq!(
            patched(16, 0x20_0020),
            Err(LoadProblem::AoutLoadAfterHeader { load_addr: 0x20_0020, header_addr: 0x20_0010 })
        );
        assert_eq!(
            patched(12, 0x20_0020),
            Err(LoadProblem::AoutLoadBeforeFileStart {
                header_offset: 16,
                header_addr: 0x20_0020,
                load_addr: 0x20_0000
            })
        );
        assert_eq!(
            patched(20, 0x1f_0000),
            Err(LoadProblem::AoutLoadEndBeforeLoad { load_addr: 0x20_0000, load_end_addr: 0x1f_0000 })
        );
        assert_eq!(
            patched(20, 0x20_1001),
            Err(LoadProblem::AoutImageBeyondFile { file_offset: 0, length: 0x1001, file_length: 0x1000 })
        );
        assert_eq!(
            patched(24, 0x20_0fff),
            Err(LoadProblem::AoutBssEndBeforeLoadEnd { load_end: 0x20_1000, bss_end_addr: 0x20_0fff })
        );
        assert_eq!(patched(28, 0x20_1000), Err(LoadProblem::EntryOutsideImage { entry: 0x20_1000 }));
        assert_eq!(
            patched(24, 0xf000_0000),
            Err(LoadProblem::OutsideRam {
                what: Contents::AoutImage,
                start: 0x20_0000,
                length: 0xefe0_0000,
                usable_end: RAM as u64,
                ram_bytes: RAM as u64
            })
        );
        let mut in_bios = aout_image(0xf_0000, 0x100, 0, 0x20, 0);
        put_u32(&mut in_bios, h + 28, 0xf_0020);
        assert!(matches!(
            load_image(&mut VecMemory::new(RAM), &in_bios),
            Err(LoadProblem::InProtectedArea { area: ProtectedArea::LegacyBiosArea, .. })
        ));
    }

    #[test]
    fn strings_and_room_errors() {
        let image = elf_image(ElfClass::Elf32, 0x10_0000, &three_segments(), Some(0));
        let mut memory = dirty_memory();
        let error = load_multiboot(&mut memory, &image, "k", "a\0b", &[]).unwrap_err();
        assert_eq!(error.problem, LoadProblem::NulInString { what: Contents::CommandLine, offset: 3 });
        assert_eq!(error.to_string(), "kernel 'k': the command line holds a NUL byte at offset 3");
        let module = Module { bytes: b"x", cmdline: "x\0" };
        assert_eq!(
            load_multiboot(&mut memory, &image, "k", "", &[module]).unwrap_err().problem,
            LoadProblem::NulInString { what: Contents::ModuleString { index: 0 }, offset: 1 }
        );
        let big = vec![0u8; RAM];
        let error =
            load_multiboot(&mut memory, &image, "k", "", &[Module { bytes: &big, cmdline: "big" }]).unwrap_err();
        assert_eq!(
            error.problem,
            LoadProblem::NoRoom {
                what: Contents::Module { index: 0 },
                length: RAM as u64,
                from: 0x10_7000,
                usable_end: RAM as u64
            }
        );
        assert_eq!(
            error.to_string(),
            "kernel 'k': no room for module 0 (0x4000000 bytes) between 0x107000 and the end of usable RAM at 0x4000000"
        );
        // A kernel ending exactly at the top of RAM leaves no room for the info.
        let top = vec![TestSegment { physical: MIB, virtual_: MIB, data: Vec::new(), memory_size: RAM as u64 - MIB }];
        assert_eq!(
            load_image(&mut VecMemory::new(RAM), &elf_image(ElfClass::Elf32, MIB, &top, Some(0))),
            Err(LoadProblem::NoRoom { what: Contents::Gdt, length: 32, from: RAM as u64, usable_end: RAM as u64 })
        );
        let mut tiny = VecMemory::new(0x8_0000);
        assert_eq!(
            load_multiboot(&mut tiny, &image, "k", "", &[]).unwrap_err().problem,
            LoadProblem::GuestRamTooSmall { ram_bytes: 0x8_0000 }
        );
    }

    #[test]
    fn nothing_is_written_when_loading_fails() {
        let image = elf_image(ElfClass::Elf32, 0x10_0000, &three_segments(), Some(0));
        let big = vec![0u8; RAM];
        let mut memory = dirty_memory();
        let before = memory.clone();
        assert!(load_multiboot(&mut memory, &image, "k", "", &[Module { bytes: &big, cmdline: "" }]).is_err());
        assert!(memory == before);
    }
}
