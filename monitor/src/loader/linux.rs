//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst) for a
//! bzImage, through its 32-bit protected-mode entry point: no real-mode
//! setup code runs, so the loader does what the setup code would have done
//! with BIOS calls (chiefly the e820 memory map) and fills `boot_params`.
//!
//! Guest memory layout:
//!
//! | address              | contents                                            |
//! |----------------------|-----------------------------------------------------|
//! | `0x1000`             | the boot GDT (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18) |
//! | `0x2000`             | `boot_params`, the "zero page"                      |
//! | `0x3000`             | the command line, up to the EBDA                    |
//! | `0x100000`           | the protected-mode kernel, always: the classic bzImage address, which suits relocatable and fixed kernels alike |
//! | up to the kernel's end | the kernel's decompression area (see `kernel_end`) |
//! | as high as allowed   | the initrd, page-aligned                            |
//!
//! Protocol 2.10 (Linux 2.6.31) or later is required: before it the header
//! has no `init_size` and `pref_address`, so where the kernel will
//! decompress itself, and so where the initrd is safe, is unknown.

use alloc::vec;
use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at, StructWriter};
use super::cpu_state::{write_boot_gdt, GeneralRegisters, InitialCpuState, BOOT_GDT_BYTES};
use super::error::{LoadError, LoadProblem};
use super::memory_map::{GuestMemoryMap, EBDA_START};
use super::placement::{align_down, align_up, check_no_nul, write, write_c_string, PAGE_SIZE};
use super::{Contents, LoadedKernel, Placement};
use crate::guest_memory::GuestMemory;

/// Where the protected-mode kernel goes, and where the vCPU starts.
pub const LINUX_LOAD_ADDRESS: u64 = 0x10_0000;
pub const LINUX_GDT_ADDRESS: u64 = 0x1000;
/// What ESI points to at entry.
pub const LINUX_BOOT_PARAMS_ADDRESS: u64 = 0x2000;
pub const LINUX_CMDLINE_ADDRESS: u64 = 0x3000;
/// The command line may use the rest of conventional memory, NUL included.
const CMDLINE_ROOM: u64 = EBDA_START - LINUX_CMDLINE_ADDRESS;

const BOOT_PARAMS_BYTES: usize = 4096;
const SECTOR_BYTES: usize = 512;
/// `setup_sects` of 0 means 4, for ancient compatibility.
const DEFAULT_SETUP_SECTS: usize = 4;
const MIN_PROTOCOL_VERSION: u16 = 0x020a;

// Setup header fields: the same offsets in the image and in boot_params.
const SETUP_SECTS: usize = 0x1f1;
const SETUP_HEADER_START: usize = 0x1f1;
/// The displacement of the jump at 0x200: the header ends at 0x202 + it.
const HEADER_LENGTH: usize = 0x201;
const HEADER_MAGIC_OFFSET: usize = 0x202;
const HEADER_MAGIC: [u8; 4] = *b"HdrS";
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const HEAP_END_PTR: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const KERNEL_ALIGNMENT: usize = 0x230;
const RELOCATABLE_KERNEL: usize = 0x234;
const CMDLINE_SIZE: usize = 0x238;
const HARDWARE_SUBARCH: usize = 0x23c;
const HARDWARE_SUBARCH_DATA: usize = 0x240;
const SETUP_DATA: usize = 0x250;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
/// The end of the last field protocol 2.10 needs.
const INIT_SIZE_END: usize = 0x264;
/// boot_params' setup_header ends here (edd_mbr_sig_buffer follows).
const SETUP_HEADER_LIMIT: usize = 0x290;

// boot_params fields outside the setup header.
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
const E820_TABLE_CAPACITY: usize = 128;
const E820_ENTRY_BYTES: usize = 20; // addr, size (u64 each), type (u32)

const LOADED_HIGH: u8 = 1 << 0; // loadflags: the protected-mode code runs at 0x100000
const CAN_USE_HEAP: u8 = 1 << 7; // loadflags: heap_end_ptr is valid
/// "Undefined" boot loader: Matryoshka has no assigned ID.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// heap_end_ptr, as the protocol's sample loader sets it: the end of the
/// setup stack and heap (0xe000 into the real-mode segment) minus 0x200.
/// The 32-bit entry never runs the real-mode code, but the field is expected.
const HEAP_END_PTR_VALUE: u16 = 0xe000 - 0x200;
/// hardware_subarch: a plain PC.
const SUBARCH_PC: u32 = 0;

/// Loads a bzImage, its command line and its initrd into guest memory, and
/// returns the vCPU state for the 32-bit boot protocol: flat protected mode
/// on the boot GDT, ESI = `boot_params`, EBP = EDI = EBX = 0, EIP = 0x100000.
pub fn load_linux(
    memory: &mut impl GuestMemory,
    bzimage: &[u8],
    kernel_name: &str,
    cmdline: &str,
    initrd: Option<&[u8]>,
) -> Result<LoadedKernel, LoadError> {
    load(memory, bzimage, cmdline, initrd).map_err(|problem| LoadError { kernel: kernel_name.into(), problem })
}

fn load(
    memory: &mut impl GuestMemory,
    bzimage: &[u8],
    cmdline: &str,
    initrd: Option<&[u8]>,
) -> Result<LoadedKernel, LoadProblem> {
    let map = GuestMemoryMap::new(memory.size())?;
    let header = SetupHeader::parse(bzimage)?;
    let kernel = &bzimage[header.setup_bytes..];
    let kernel_end = kernel_end(&header, kernel.len() as u64);
    map.check_loadable(Contents::LinuxKernel, LINUX_LOAD_ADDRESS, kernel_end - LINUX_LOAD_ADDRESS)?;

    let cmdline = cmdline.as_bytes();
    check_no_nul(Contents::CommandLine, cmdline)?;
    let length = cmdline.len();
    if length as u64 > u64::from(header.cmdline_size) {
        return Err(LoadProblem::CommandLineTooLong {
            length,
            limit: header.cmdline_size.into(),
            limited_by: "the kernel's cmdline_size",
        });
    }
    if length as u64 >= CMDLINE_ROOM {
        return Err(LoadProblem::CommandLineTooLong {
            length,
            limit: CMDLINE_ROOM - 1,
            limited_by: "the room the loader sets aside below the EBDA",
        });
    }

    let initrd = initrd.filter(|bytes| !bytes.is_empty());
    let initrd_address = match initrd {
        Some(bytes) => Some(place_initrd(&map, &header, kernel_end, bytes.len() as u64)?),
        None => None,
    };

    let boot_params = boot_params(bzimage, &header, &map, initrd_address.zip(initrd.map(<[u8]>::len)));

    // Everything is checked; now write.
    let gdt = write_boot_gdt(memory, LINUX_GDT_ADDRESS)?;
    write(memory, Contents::BootParams, LINUX_BOOT_PARAMS_ADDRESS, &boot_params)?;
    write_c_string(memory, Contents::CommandLine, LINUX_CMDLINE_ADDRESS, cmdline)?;
    write(memory, Contents::LinuxKernel, LINUX_LOAD_ADDRESS, kernel)?;
    let mut placements = vec![
        Placement { contents: Contents::Gdt, start: LINUX_GDT_ADDRESS, length: BOOT_GDT_BYTES },
        Placement {
            contents: Contents::BootParams,
            start: LINUX_BOOT_PARAMS_ADDRESS,
            length: BOOT_PARAMS_BYTES as u64,
        },
        Placement { contents: Contents::CommandLine, start: LINUX_CMDLINE_ADDRESS, length: length as u64 + 1 },
        Placement {
            contents: Contents::LinuxKernel,
            start: LINUX_LOAD_ADDRESS,
            length: kernel_end - LINUX_LOAD_ADDRESS,
        },
    ];
    if let (Some(address), Some(bytes)) = (initrd_address, initrd) {
        write(memory, Contents::Initrd, address, bytes)?;
        placements.push(Placement { contents: Contents::Initrd, start: address, length: bytes.len() as u64 });
    }

    // The protocol wants EBP, EDI and EBX zero; the default zeroes them all.
    let registers = GeneralRegisters { rsi: LINUX_BOOT_PARAMS_ADDRESS, ..GeneralRegisters::default() };
    Ok(LoadedKernel {
        cpu: InitialCpuState::protected_flat32(LINUX_LOAD_ADDRESS, registers, gdt),
        placements,
        notices: Vec::new(),
    })
}

/// The setup header fields the loader acts on, checked.
struct SetupHeader {
    /// 0x202 + the byte at 0x201, within the file and boot_params' header.
    header_end: usize,
    /// The real-mode part of the file; the protected-mode kernel follows.
    setup_bytes: usize,
    loadflags: u8,
    relocatable: bool,
    kernel_alignment: u32,
    initrd_addr_max: u32,
    cmdline_size: u32,
    pref_address: u64,
    init_size: u32,
}

impl SetupHeader {
    fn parse(image: &[u8]) -> Result<Self, LoadProblem> {
        let file_length = image.len();
        let too_short = |needed| LoadProblem::LinuxTooShort { file_length, needed };
        let magic_end = HEADER_MAGIC_OFFSET + HEADER_MAGIC.len();
        let magic = image.get(HEADER_MAGIC_OFFSET..magic_end).ok_or(too_short(magic_end))?;
        if magic != HEADER_MAGIC {
            let mut found = [0; 4];
            found.copy_from_slice(magic);
            return Err(LoadProblem::LinuxNoHeader { found });
        }
        let version = u16_at(image, VERSION).ok_or(too_short(VERSION + 2))?;
        if version < MIN_PROTOCOL_VERSION {
            return Err(LoadProblem::LinuxProtocolTooOld { version });
        }
        // HEADER_LENGTH is below the magic, so present.
        let header_end = HEADER_MAGIC_OFFSET + usize::from(u8_at(image, HEADER_LENGTH).unwrap_or_default());
        if header_end < INIT_SIZE_END {
            return Err(LoadProblem::LinuxHeaderTooShort { header_end, needed: INIT_SIZE_END });
        }
        if header_end > SETUP_HEADER_LIMIT {
            return Err(LoadProblem::LinuxHeaderTooLong { header_end, limit: SETUP_HEADER_LIMIT });
        }
        if file_length < header_end {
            return Err(too_short(header_end));
        }
        // The whole header is in the file: the reads below cannot fail.
        let byte = |offset| u8_at(image, offset).unwrap_or_default();
        let word = |offset| u32_at(image, offset).unwrap_or_default();

        let loadflags = byte(LOADFLAGS);
        if loadflags & LOADED_HIGH == 0 {
            return Err(LoadProblem::LinuxNotBzImage { loadflags });
        }
        let setup_sects = match usize::from(byte(SETUP_SECTS)) {
            0 => DEFAULT_SETUP_SECTS,
            sectors => sectors,
        };
        // The boot sector, then the setup sectors.
        let setup_bytes = (setup_sects + 1) * SECTOR_BYTES;
        if file_length <= setup_bytes {
            return Err(LoadProblem::LinuxNoProtectedModeKernel { setup_bytes, file_length });
        }
        let relocatable = byte(RELOCATABLE_KERNEL) != 0;
        let kernel_alignment = word(KERNEL_ALIGNMENT);
        if relocatable && !kernel_alignment.is_power_of_two() {
            return Err(LoadProblem::LinuxBadKernelAlignment { kernel_alignment });
        }
        let code32_start = word(CODE32_START);
        if !relocatable && u64::from(code32_start) != LINUX_LOAD_ADDRESS {
            return Err(LoadProblem::LinuxFixedAddress { code32_start });
        }
        Ok(Self {
            header_end,
            setup_bytes,
            loadflags,
            relocatable,
            kernel_alignment,
            initrd_addr_max: word(INITRD_ADDR_MAX),
            cmdline_size: word(CMDLINE_SIZE),
            pref_address: u64_at(image, PREF_ADDRESS).unwrap_or_default(),
            init_size: word(INIT_SIZE),
        })
    }
}

/// The end of the memory the kernel uses from [`LINUX_LOAD_ADDRESS`] on,
/// before it sets up its own allocator.
///
/// The compressed kernel's 32-bit entry picks an extraction address: for a
/// relocatable kernel its load address rounded up to `kernel_alignment`,
/// but not below `pref_address` (its link-time LOAD_PHYSICAL_ADDR); for a
/// fixed kernel `pref_address` itself. It then uses `init_size` bytes from
/// there (moving itself to their top to decompress). The loader treats all
/// of `[0x100000, that end)` as the kernel's, gap included: simpler, and the
/// initrd, placed as high as possible, rarely needs the gap. Saturates for
/// absurd headers, which the RAM check then refuses.
fn kernel_end(header: &SetupHeader, kernel_length: u64) -> u64 {
    let extraction_start = if header.relocatable {
        align_up(LINUX_LOAD_ADDRESS, header.kernel_alignment.into()).unwrap_or(u64::MAX).max(header.pref_address)
    } else {
        header.pref_address
    }
    .max(LINUX_LOAD_ADDRESS);
    let image_end = LINUX_LOAD_ADDRESS.saturating_add(kernel_length);
    extraction_start.saturating_add(header.init_size.into()).max(image_end)
}

/// The initrd's address: as high as allowed (below `initrd_addr_max` and
/// the end of usable RAM), page-aligned, above the kernel's end, the way
/// boot loaders traditionally place it.
fn place_initrd(map: &GuestMemoryMap, header: &SetupHeader, kernel_end: u64, length: u64) -> Result<u64, LoadProblem> {
    // initrd_addr_max is the address of the initrd's last byte.
    let highest = map.usable_end().min(u64::from(header.initrd_addr_max) + 1);
    highest
        .checked_sub(length)
        .map(|start| align_down(start, PAGE_SIZE))
        .filter(|&start| start >= kernel_end)
        .ok_or(LoadProblem::InitrdDoesNotFit { length, lowest: kernel_end, highest })
}

/// The zero page: zeroed, the image's setup header copied in, then the
/// loader's fields and the e820 map.
fn boot_params(
    image: &[u8],
    header: &SetupHeader,
    map: &GuestMemoryMap,
    initrd: Option<(u64, usize)>,
) -> [u8; BOOT_PARAMS_BYTES] {
    let mut params = [0u8; BOOT_PARAMS_BYTES];
    let setup_header = SETUP_HEADER_START..header.header_end;
    params[setup_header.clone()].copy_from_slice(&image[setup_header]);
    let mut fields = StructWriter::new(&mut params);
    fields.put_u8(TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
    fields.put_u8(LOADFLAGS, header.loadflags | CAN_USE_HEAP);
    fields.put_u16(HEAP_END_PTR, HEAP_END_PTR_VALUE);
    fields.put_u32(CODE32_START, LINUX_LOAD_ADDRESS as u32);
    fields.put_u32(CMD_LINE_PTR, LINUX_CMDLINE_ADDRESS as u32);
    // Both below 3 GiB, so ext_ramdisk_* and ext_cmd_line_ptr stay zero.
    let (ramdisk_image, ramdisk_size) = initrd.map_or((0, 0), |(address, length)| (address as u32, length as u32));
    fields.put_u32(RAMDISK_IMAGE, ramdisk_image);
    fields.put_u32(RAMDISK_SIZE, ramdisk_size);
    // Fields the loader owns: whatever the image held, a plain PC with no
    // setup_data list is what the kernel gets.
    fields.put_u32(HARDWARE_SUBARCH, SUBARCH_PC);
    fields.put_u64(HARDWARE_SUBARCH_DATA, 0);
    fields.put_u64(SETUP_DATA, 0);

    let regions = &map.regions()[..map.regions().len().min(E820_TABLE_CAPACITY)];
    fields.put_u8(E820_ENTRIES, regions.len() as u8);
    for (index, region) in regions.iter().enumerate() {
        let entry = E820_TABLE + index * E820_ENTRY_BYTES;
        fields.put_u64(entry, region.start);
        fields.put_u64(entry + 8, region.length);
        fields.put_u32(entry + 16, region.kind.e820_type());
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use crate::loader::cpu_state::{CpuMode, DescriptorTable};
    use crate::loader::test_images::*;
    use alloc::string::ToString;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const RAM: usize = 64 << 20;

    fn dirty_memory() -> VecMemory {
        let mut memory = VecMemory::new(RAM);
        memory.fill(0, RAM as u64, 0xaa).unwrap();
        memory
    }

    fn load_fake(
        memory: &mut impl GuestMemory,
        image: &FakeBzImage,
        cmdline: &str,
        initrd: Option<&[u8]>,
    ) -> Result<LoadedKernel, LoadProblem> {
        load_linux(memory, &image.build(), "bzImage", cmdline, initrd).map_err(|error| error.problem)
    }

    fn e820(memory: &impl GuestMemory, index: u64) -> (u64, u64, u32) {
        let entry = LINUX_BOOT_PARAMS_ADDRESS + E820_TABLE as u64 + 20 * index;
        (memory.read_u64(entry).unwrap(), memory.read_u64(entry + 8).unwrap(), memory.read_u32(entry + 16).unwrap())
    }

    #[test]
    fn bzimage_boots_through_the_32_bit_protocol() {
        let fake = FakeBzImage::default();
        let image = fake.build();
        let initrd = pattern(10_000, 0x33);
        let mut memory = dirty_memory();
        let loaded = load_linux(&mut memory, &image, "bzImage", "console=ttyS0 root=/dev/vda", Some(&initrd)).unwrap();

        assert_eq!(
            loaded.cpu,
            InitialCpuState {
                mode: CpuMode::ProtectedFlat32 { code_selector: 0x10, data_selector: 0x18 },
                rip: 0x10_0000,
                registers: GeneralRegisters { rsi: 0x2000, ..GeneralRegisters::default() },
                rflags: 0x2,
                gdt: Some(DescriptorTable { base: 0x1000, limit: 31 }),
            }
        );
        let ram = memory.as_slice();
        assert_eq!(
            &ram[0x1000..0x1020],
            &[
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
                0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0, // __BOOT_CS
                0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0, // __BOOT_DS
            ]
        );
        assert_eq!(&ram[0x10_0000..0x10_3000], fake.payload.as_slice());
        assert_eq!(ram[0x10_3000], 0xaa, "nothing past the payload");
        assert_eq!(read_c_string(&memory, 0x3000), b"console=ttyS0 root=/dev/vda");

        // The initrd: the kernel reserves up to 16 MiB + init_size (4 MiB);
        // the initrd goes to the top of RAM, page-aligned.
        let initrd_address = 0x3ff_d000;
        assert_eq!(&ram[initrd_address..initrd_address + 10_000], initrd.as_slice());

        let params = read_bytes(&memory, LINUX_BOOT_PARAMS_ADDRESS, 4096);
        let field32 = |offset: usize| u32::from_le_bytes(params[offset..offset + 4].try_into().unwrap());
        assert_eq!(params[TYPE_OF_LOADER], 0xff);
        assert_eq!(params[LOADFLAGS], 0x81, "LOADED_HIGH kept, CAN_USE_HEAP added");
        assert_eq!(u16::from_le_bytes([params[HEAP_END_PTR], params[HEAP_END_PTR + 1]]), 0xde00);
        assert_eq!(field32(CMD_LINE_PTR), 0x3000);
        assert_eq!(field32(CODE32_START), 0x10_0000);
        assert_eq!(field32(RAMDISK_IMAGE), initrd_address as u32);
        assert_eq!(field32(RAMDISK_SIZE), 10_000);
        // Every other header byte is the image's.
        let written = [
            TYPE_OF_LOADER..TYPE_OF_LOADER + 2,
            RAMDISK_IMAGE..RAMDISK_SIZE + 4,
            HEAP_END_PTR..HEAP_END_PTR + 2,
            CMD_LINE_PTR..CMD_LINE_PTR + 4,
        ];
        for offset in 0x1f1..0x26c {
            if !written.iter().any(|range| range.contains(&offset)) {
                assert_eq!(params[offset], image[offset], "setup header byte {offset:#x}");
            }
        }
        // Outside the header and the e820 map, the page is zero.
        assert_eq!(params[E820_ENTRIES], 4);
        for (offset, byte) in params.iter().enumerate() {
            let filled =
                offset == E820_ENTRIES || (0x1f1..0x26c).contains(&offset) || (0x2d0..0x2d0 + 80).contains(&offset);
            assert!(filled || *byte == 0, "boot_params byte {offset:#x} is {byte:#x}");
        }
        assert_eq!(e820(&memory, 0), (0, 0x9_fc00, 1));
        assert_eq!(e820(&memory, 1), (0x9_fc00, 0x400, 2));
        assert_eq!(e820(&memory, 2), (0xf_0000, 0x1_0000, 2));
        assert_eq!(e820(&memory, 3), (MIB, 63 * MIB, 1));

        assert_eq!(
            loaded.placements,
            [
                Placement { contents: Contents::Gdt, start: 0x1000, length: 32 },
                Placement { contents: Contents::BootParams, start: 0x2000, length: 4096 },
                Placement { contents: Contents::CommandLine, start: 0x3000, length: 28 },
                Placement { contents: Contents::LinuxKernel, start: MIB, length: 19 * MIB },
                Placement { contents: Contents::Initrd, start: initrd_address as u64, length: 10_000 },
            ]
        );
    }

    #[test]
    fn loader_owned_fields_are_overwritten_whatever_the_image_says() {
        let mut image = FakeBzImage::default().build();
        put_u32(&mut image, HARDWARE_SUBARCH, 2); // Xen PV
        put_u64(&mut image, SETUP_DATA, 0xdead_0000);
        put_u32(&mut image, RAMDISK_IMAGE, 0x1234);
        put_u32(&mut image, RAMDISK_SIZE, 0x5678);
        let mut memory = dirty_memory();
        load_linux(&mut memory, &image, "k", "", None).unwrap();
        let params = LINUX_BOOT_PARAMS_ADDRESS;
        assert_eq!(memory.read_u32(params + HARDWARE_SUBARCH as u64).unwrap(), 0);
        assert_eq!(memory.read_u64(params + SETUP_DATA as u64).unwrap(), 0);
        assert_eq!(memory.read_u32(params + RAMDISK_IMAGE as u64).unwrap(), 0, "no initrd");
        assert_eq!(memory.read_u32(params + RAMDISK_SIZE as u64).unwrap(), 0);
        assert_eq!(read_c_string(&memory, 0x3000), b"", "an empty command line is still a string");
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let fake = FakeBzImage { setup_sects: 0, ..FakeBzImage::default() };
        let mut memory = dirty_memory();
        load_fake(&mut memory, &fake, "", None).unwrap();
        assert_eq!(&memory.as_slice()[0x10_0000..0x10_3000], fake.payload.as_slice());
        assert_eq!(memory.as_slice()[0x10_3000], 0xaa);
    }

    #[test]
    fn the_kernel_reserves_up_to_its_extraction_area_end() {
        let reserved = |fake: FakeBzImage| {
            let loaded = load_fake(&mut VecMemory::new(RAM), &fake, "", None).unwrap();
            loaded.placements[3].end()
        };
        // Relocatable, pref_address below the aligned load address: extracts at 0x100000 rounded up.
        assert_eq!(
            reserved(FakeBzImage { pref_address: MIB, kernel_alignment: 0x40_0000, ..FakeBzImage::default() }),
            0x40_0000 + 0x40_0000
        );
        // Fixed kernel: extracts at pref_address.
        assert_eq!(
            reserved(FakeBzImage {
                relocatable_kernel: 0,
                pref_address: 0x80_0000,
                kernel_alignment: 3,
                ..FakeBzImage::default()
            }),
            0x80_0000 + 0x40_0000
        );
        // A payload longer than the extraction area's end.
        assert_eq!(
            reserved(FakeBzImage {
                pref_address: MIB,
                kernel_alignment: 0x1000,
                init_size: 0x100,
                ..FakeBzImage::default()
            }),
            MIB + 0x3000
        );
    }

    #[test]
    fn initrd_respects_initrd_addr_max_and_the_mmio_hole() {
        let initrd = pattern(0x1_0001, 0x44);
        // 1 GiB guest, initrd_addr_max at 512 MiB - 1.
        let mut memory = SparseMemory::new(GIB);
        let fake = FakeBzImage { initrd_addr_max: 0x1fff_ffff, ..FakeBzImage::default() };
        let loaded = load_fake(&mut memory, &fake, "", Some(&initrd)).unwrap();
        let expected = 0x1ffe_f000; // 512 MiB - 0x10001, rounded down to a page
        assert_eq!(loaded.placements[4], Placement { contents: Contents::Initrd, start: expected, length: 0x1_0001 });
        assert_eq!(read_bytes(&memory, expected, 0x1_0001), initrd);
        assert_eq!(memory.read_u32(LINUX_BOOT_PARAMS_ADDRESS + RAMDISK_IMAGE as u64).unwrap(), expected as u32);

        // 5 GiB guest, initrd_addr_max at 4 GiB - 1: the hole at 3 GiB limits it.
        let mut memory = SparseMemory::new(5 * GIB);
        let fake = FakeBzImage { initrd_addr_max: 0xffff_ffff, ..FakeBzImage::default() };
        let loaded = load_fake(&mut memory, &fake, "", Some(&initrd)).unwrap();
        assert_eq!(loaded.placements[4].start, 3 * GIB - 0x1_1000);
        assert_eq!(read_bytes(&memory, LINUX_BOOT_PARAMS_ADDRESS + E820_ENTRIES as u64, 1), [5]);
        assert_eq!(e820(&memory, 3), (MIB, 3 * GIB - MIB, 1));
        assert_eq!(e820(&memory, 4), (4 * GIB, 2 * GIB, 1));
    }

    #[test]
    fn header_errors() {
        let image = FakeBzImage::default().build();
        let try_image = |image: &[u8]| {
            load_linux(&mut VecMemory::new(RAM), image, "bzImage", "", None).map_err(|error| error.problem)
        };
        let patched = |offset: usize, bytes: &[u8]| {
            let mut image = image.clone();
            put(&mut image, offset, bytes);
            try_image(&image)
        };
        assert_eq!(try_image(&image[..0x205]), Err(LoadProblem::LinuxTooShort { file_length: 0x205, needed: 0x206 }));
        assert_eq!(try_image(&image[..0x207]), Err(LoadProblem::LinuxTooShort { file_length: 0x207, needed: 0x208 }));
        assert_eq!(try_image(&image[..0x26b]), Err(LoadProblem::LinuxTooShort { file_length: 0x26b, needed: 0x26c }));
        assert_eq!(patched(0x202, b"HdrZ"), Err(LoadProblem::LinuxNoHeader { found: *b"HdrZ" }));
        assert_eq!(try_image(&vec![0; 0x1000]), Err(LoadProblem::LinuxNoHeader { found: [0; 4] }));
        assert_eq!(
            patched(VERSION, &0x0209u16.to_le_bytes()),
            Err(LoadProblem::LinuxProtocolTooOld { version: 0x0209 })
        );
        assert_eq!(
            patched(HEADER_LENGTH, &[0x61]),
            Err(LoadProblem::LinuxHeaderTooShort { header_end: 0x263, needed: 0x264 })
        );
        assert_eq!(patched(HEADER_LENGTH, &[0x62]).map(|_| ()), Ok(()), "exactly through init_size is enough");
        assert_eq!(
            patched(HEADER_LENGTH, &[0x8f]),
            Err(LoadProblem::LinuxHeaderTooLong { header_end: 0x291, limit: 0x290 })
        );
        assert_eq!(patched(LOADFLAGS, &[0x80]), Err(LoadProblem::LinuxNotBzImage { loadflags: 0x80 }));
        assert_eq!(
            try_image(&image[..0xa00]),
            Err(LoadProblem::LinuxNoProtectedModeKernel { setup_bytes: 0xa00, file_length: 0xa00 })
        );
        assert_eq!(
            patched(SETUP_SECTS, &[0xff]),
            Err(LoadProblem::LinuxNoProtectedModeKernel { setup_bytes: 0x2_0000, file_length: image.len() })
        );
        assert_eq!(
            patched(KERNEL_ALIGNMENT, &0x30_0000u32.to_le_bytes()),
            Err(LoadProblem::LinuxBadKernelAlignment { kernel_alignment: 0x30_0000 })
        );
        assert_eq!(
            patched(KERNEL_ALIGNMENT, &[0, 0, 0, 0]),
            Err(LoadProblem::LinuxBadKernelAlignment { kernel_alignment: 0 })
        );
        let mut fixed = image.clone();
        fixed[RELOCATABLE_KERNEL] = 0;
        put_u32(&mut fixed, CODE32_START, 0x20_0000);
        assert_eq!(try_image(&fixed), Err(LoadProblem::LinuxFixedAddress { code32_start: 0x20_0000 }));
        assert_eq!(
            LoadError { kernel: "bzImage".to_string(), problem: LoadProblem::LinuxProtocolTooOld { version: 0x0206 } }.to_string(),
            "kernel 'bzImage': boot protocol 2.06 is too old; the loader needs 2.10 or later (Linux 2.6.31+) for init_size and pref_address"
        );
    }

    #[test]
    fn placement_errors() {
        let default = FakeBzImage::default();
        // init_size beyond RAM.
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &FakeBzImage { init_size: 0x300_0001, ..default.clone() }, "", None),
            Err(LoadProblem::OutsideRam {
                what: Contents::LinuxKernel,
                start: MIB,
                length: 15 * MIB + 0x300_0001,
                usable_end: RAM as u64,
                ram_bytes: RAM as u64
            })
        );
        // An absurd pref_address saturates instead of wrapping.
        assert!(matches!(
            load_fake(&mut VecMemory::new(RAM), &FakeBzImage { pref_address: u64::MAX - 1, ..default.clone() }, "", None),
            Err(LoadProblem::OutsideRam { what: Contents::LinuxKernel, length, .. }) if length == u64::MAX - MIB
        ));
        // The command line against cmdline_size, then against the loader's room.
        let short = FakeBzImage { cmdline_size: 16, ..default.clone() };
        assert!(load_fake(&mut VecMemory::new(RAM), &short, "0123456789abcdef", None).is_ok());
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &short, "0123456789abcdefg", None),
            Err(LoadProblem::CommandLineTooLong { length: 17, limit: 16, limited_by: "the kernel's cmdline_size" })
        );
        let unlimited = FakeBzImage { cmdline_size: u32::MAX, ..default.clone() };
        let room = (EBDA_START - 0x3000) as usize;
        let mut memory = dirty_memory();
        assert!(load_fake(&mut memory, &unlimited, &"x".repeat(room - 1), None).is_ok());
        assert_eq!(memory.as_slice()[0x9_fbff], 0, "the NUL is the last byte before the EBDA");
        assert_eq!(memory.as_slice()[0x9_fc00], 0xaa);
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &unlimited, &"x".repeat(room), None),
            Err(LoadProblem::CommandLineTooLong {
                length: room,
                limit: room as u64 - 1,
                limited_by: "the room the loader sets aside below the EBDA"
            })
        );
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &default, "a\0", None),
            Err(LoadProblem::NulInString { what: Contents::CommandLine, offset: 1 })
        );
        // The kernel reserves [1 MiB, 20 MiB); 44 MiB + 1 does not fit above it in 64 MiB.
        let initrd = vec![0u8; 44 << 20];
        assert!(load_fake(&mut VecMemory::new(RAM), &default, "", Some(&initrd)).is_ok());
        let initrd = vec![0u8; (44 << 20) + 1];
        let error = load_linux(&mut VecMemory::new(RAM), &default.build(), "bzImage", "", Some(&initrd)).unwrap_err();
        assert_eq!(
            error.problem,
            LoadProblem::InitrdDoesNotFit { length: (44 << 20) + 1, lowest: 20 * MIB, highest: RAM as u64 }
        );
        assert_eq!(
            error.to_string(),
            "kernel 'bzImage': the initrd (0x2c00001 bytes) does not fit between the kernel's end at 0x1400000 and \
             0x4000000 (the lower of initrd_addr_max + 1 and the end of usable RAM)"
        );
        // A kernel end one byte into a page pushes the same initrd out.
        let ragged = FakeBzImage { init_size: 0x40_0001, ..default.clone() };
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &ragged, "", Some(&vec![0u8; 44 << 20])),
            Err(LoadProblem::InitrdDoesNotFit { length: 44 << 20, lowest: 20 * MIB + 1, highest: RAM as u64 })
        );
        // initrd_addr_max below the kernel's end.
        let low_max = FakeBzImage { initrd_addr_max: 0xff_ffff, ..default.clone() };
        assert_eq!(
            load_fake(&mut VecMemory::new(RAM), &low_max, "", Some(&[1])),
            Err(LoadProblem::InitrdDoesNotFit { length: 1, lowest: 20 * MIB, highest: 16 * MIB })
        );
        // An empty initrd is no initrd.
        let loaded = load_fake(&mut VecMemory::new(RAM), &low_max, "", Some(&[])).unwrap();
        assert_eq!(loaded.placements.len(), 4);
    }

    #[test]
    fn nothing_is_written_when_loading_fails() {
        let mut memory = dirty_memory();
        let before = memory.clone();
        let initrd = vec![0u8; 60 << 20];
        assert!(load_fake(&mut memory, &FakeBzImage::default(), "", Some(&initrd)).is_err());
        assert!(memory == before);
    }
}
