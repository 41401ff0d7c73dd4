//! Linux bzImages through the 32-bit entry of the x86 boot protocol
//! (Documentation/x86/boot.rst): linux-loader puts the protected-mode
//! kernel at its code32_start; this module writes the command line, the
//! initrd (as high as the kernel allows) and the boot_params with the e820
//! map, and enters at code32_start with ESI pointing at boot_params.

use std::fmt;
use std::io::{Read, Seek};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use crate::layout::{
    self, BootCpu, RegionKind, HIGH_MEMORY, LINUX_BOOT_PARAMS, LINUX_CMDLINE, LINUX_CMDLINE_MAX, PAGE_SIZE,
};

/// "HdrS" at offset 0x202: the boot protocol's signature.
pub const HEADER_SIGNATURE: u32 = 0x5372_6448;
const HEADER_SIGNATURE_OFFSET: usize = 0x202;
/// 2.06 gives cmdline_size; everything older is long gone.
const MIN_PROTOCOL: u16 = 0x0206;
/// type_of_loader: "undefined" boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Loader(String),
    OldProtocol(u16),
    CommandLineTooLong { length: usize, limit: usize },
    NulInCommandLine,
    KernelTooBig { end: u64, ram_bytes: u64 },
    InitrdDoesNotFit { size: u64, lowest: u64, highest_end: u64 },
    Write(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loader(error) => write!(f, "not a loadable bzImage: {error}"),
            Self::OldProtocol(version) => write!(
                f,
                "boot protocol {}.{:02} is too old (2.06 or later needed)",
                version >> 8,
                version & 0xff
            ),
            Self::CommandLineTooLong { length, limit } => {
                write!(f, "the command line has {length} bytes, the kernel takes at most {limit}")
            }
            Self::NulInCommandLine => write!(f, "the command line contains a NUL byte"),
            Self::KernelTooBig { end, ram_bytes } => write!(
                f,
                "the kernel and its decompression area (init_size) end at {end:#x}, beyond guest RAM ({ram_bytes:#x}): raise --mem"
            ),
            Self::InitrdDoesNotFit { size, lowest, highest_end } => write!(
                f,
                "the initrd ({size} bytes) does not fit between the kernel's end ({lowest:#x}) and {highest_end:#x}: raise --mem"
            ),
            Self::Write(error) => write!(f, "writing guest memory: {error}"),
        }
    }
}

/// Whether `image` starts like a bzImage (the "HdrS" signature).
pub fn is_bzimage(image: &[u8]) -> bool {
    image
        .get(HEADER_SIGNATURE_OFFSET..HEADER_SIGNATURE_OFFSET + 4)
        .is_some_and(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == HEADER_SIGNATURE)
}

/// Loads the bzImage `kernel` with `initrd` and `cmdline`.
pub fn load<F: Read + ReadVolatile + Seek>(
    memory: &GuestMemoryMmap,
    ram_bytes: u64,
    kernel: &mut F,
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<BootCpu, Error> {
    let loaded = BzImage::load(memory, None, kernel, Some(GuestAddress(HIGH_MEMORY)))
        .map_err(|error| Error::Loader(error.to_string()))?;
    let mut header = loaded.setup_header.ok_or_else(|| Error::Loader("no setup header".into()))?;
    let version = header.version;
    if version < MIN_PROTOCOL {
        return Err(Error::OldProtocol(version));
    }
    let kernel_start = loaded.kernel_load.0;
    let kernel_end = kernel_start + u64::from(header.init_size).max(loaded.kernel_end - kernel_start);
    if kernel_end > ram_bytes {
        return Err(Error::KernelTooBig { end: kernel_end, ram_bytes });
    }

    let limit = (header.cmdline_size as usize).min(LINUX_CMDLINE_MAX - 1);
    if cmdline.len() > limit {
        return Err(Error::CommandLineTooLong { length: cmdline.len(), limit });
    }
    if cmdline.contains('\0') {
        return Err(Error::NulInCommandLine);
    }
    let write = |bytes: &[u8], address: u64| {
        memory.write_slice(bytes, GuestAddress(address)).map_err(|error| Error::Write(error.to_string()))
    };
    let mut cmdline_bytes = cmdline.as_bytes().to_vec();
    cmdline_bytes.push(0);
    write(&cmdline_bytes, LINUX_CMDLINE)?;

    header.type_of_loader = LOADER_TYPE_UNDEFINED;
    header.cmd_line_ptr = LINUX_CMDLINE as u32;
    if let Some(initrd) = initrd {
        let start = place_initrd(initrd.len() as u64, kernel_end, ram_bytes, header.initrd_addr_max)?;
        write(initrd, start)?;
        header.ramdisk_image = start as u32;
        header.ramdisk_size = initrd.len() as u32;
    }

    let mut params = boot_params { hdr: header, ..boot_params::default() };
    let map = layout::memory_map(ram_bytes);
    for (entry, region) in params.e820_table.iter_mut().zip(&map) {
        let kind = match region.kind {
            RegionKind::Ram => E820_RAM,
            RegionKind::Reserved => E820_RESERVED,
        };
        *entry = boot_e820_entry { addr: region.start, size: region.length, r#type: kind };
    }
    params.e820_entries = map.len() as u8;
    memory.write_obj(params, GuestAddress(LINUX_BOOT_PARAMS)).map_err(|error| Error::Write(error.to_string()))?;

    Ok(BootCpu { entry: kernel_start, rsi: LINUX_BOOT_PARAMS, ..BootCpu::default() })
}

/// The initrd goes as high as RAM and the kernel's `initrd_addr_max`
/// allow, page-aligned, above the kernel's decompression area.
fn place_initrd(size: u64, kernel_end: u64, ram_bytes: u64, initrd_addr_max: u32) -> Result<u64, Error> {
    let highest_end = ram_bytes.min(u64::from(initrd_addr_max) + 1);
    let lowest = layout::align_up(kernel_end, PAGE_SIZE).unwrap_or(u64::MAX);
    highest_end
        .checked_sub(size)
        .map(|start| start & !(PAGE_SIZE - 1))
        .filter(|&start| start >= lowest)
        .ok_or(Error::InitrdDoesNotFit { size, lowest, highest_end })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use linux_loader::loader::bootparam::setup_header;
    use vm_memory::ByteValued;

    use super::*;
    use crate::layout::MIB;
    use crate::multiboot::tests::memory;

    const SETUP_SECTS: u8 = 1;

    /// A bzImage with one setup sector after the boot sector and `payload`
    /// as its protected-mode kernel.
    fn bzimage(version: u16, init_size: u32, payload: &[u8]) -> Vec<u8> {
        let header = setup_header {
            setup_sects: SETUP_SECTS,
            boot_flag: 0xaa55,
            header: HEADER_SIGNATURE,
            version,
            loadflags: 0x01, // LOADED_HIGH
            code32_start: 0x100000,
            initrd_addr_max: 0x37ff_ffff,
            cmdline_size: 2047,
            init_size,
            ..setup_header::default()
        };
        let mut image = vec![0u8; (usize::from(SETUP_SECTS) + 1) * 512];
        image[0x1f1..0x1f1 + std::mem::size_of::<setup_header>()].copy_from_slice(header.as_slice());
        image.extend_from_slice(payload);
        image
    }

    fn params(memory: &GuestMemoryMmap) -> boot_params {
        memory.read_obj(GuestAddress(LINUX_BOOT_PARAMS)).unwrap()
    }

    #[test]
    fn the_kernel_enters_at_code32_start_with_boot_params_in_esi() {
        let ram = 32 * MIB;
        let memory = memory(ram);
        let image = bzimage(0x020f, 0x20_0000, &[0x90; 1000]);
        assert!(is_bzimage(&image));
        let cpu = load(&memory, ram, &mut Cursor::new(image), None, "console=ttyS0 quiet").unwrap();
        assert_eq!(cpu, BootCpu { entry: 0x100000, rsi: LINUX_BOOT_PARAMS, rax: 0, rbx: 0 });
        let mut kernel = [0u8; 16];
        memory.read_slice(&mut kernel, GuestAddress(0x100000)).unwrap();
        assert_eq!(kernel, [0x90; 16], "the protected-mode kernel is at 1 MiB");
        let params = params(&memory);
        let header = params.hdr;
        assert_eq!(header.type_of_loader, LOADER_TYPE_UNDEFINED);
        assert_eq!({ header.cmd_line_ptr }, LINUX_CMDLINE as u32);
        assert_eq!({ header.ramdisk_size }, 0);
        let mut cmdline = [0u8; 20];
        memory.read_slice(&mut cmdline, GuestAddress(LINUX_CMDLINE)).unwrap();
        assert_eq!(&cmdline, b"console=ttyS0 quiet\0");
    }

    #[test]
    fn e820_describes_the_same_map_as_multiboot() {
        let ram = 64 * MIB;
        let memory = memory(ram);
        load(&memory, ram, &mut Cursor::new(bzimage(0x020f, 0x10_0000, &[0; 64])), None, "").unwrap();
        let params = params(&memory);
        assert_eq!(params.e820_entries, 3);
        let table: Vec<(u64, u64, u32)> =
            params.e820_table[..3].iter().map(|entry| (entry.addr, entry.size, entry.r#type)).collect();
        assert_eq!(table, [(0, 0x9fc00, E820_RAM), (0x9fc00, 0x400, E820_RESERVED), (MIB, 63 * MIB, E820_RAM)]);
    }

    #[test]
    fn the_initrd_goes_to_the_top_of_ram_page_aligned() {
        let ram = 32 * MIB;
        let memory = memory(ram);
        let initrd = vec![0x5a; 10_000];
        load(&memory, ram, &mut Cursor::new(bzimage(0x020f, 0x40_0000, &[0; 64])), Some(&initrd), "").unwrap();
        let header = params(&memory).hdr;
        let (start, size) = (u64::from(header.ramdisk_image), header.ramdisk_size);
        assert_eq!(size, 10_000);
        assert_eq!(start % PAGE_SIZE, 0);
        assert!(start + 10_000 <= ram && start + 10_000 + PAGE_SIZE > ram, "as high as it goes: {start:#x}");
        let mut bytes = vec![0; 10_000];
        memory.read_slice(&mut bytes, GuestAddress(start)).unwrap();
        assert_eq!(bytes, initrd);
    }

    #[test]
    fn the_initrd_respects_initrd_addr_max_and_the_decompression_area() {
        assert_eq!(place_initrd(0x1000, 0x50_0000, 0x4000_0000, 0x0fff_ffff), Ok(0x0fff_f000));
        assert_eq!(
            place_initrd(0x80_0000, 0x50_0000, 0xa0_0000, u32::MAX),
            Err(Error::InitrdDoesNotFit { size: 0x80_0000, lowest: 0x50_0000, highest_end: 0xa0_0000 })
        );
    }

    #[test]
    fn bad_images_and_command_lines_are_refused_with_the_reason() {
        let ram = 16 * MIB;
        let memory = memory(ram);
        let mut not_linux = bzimage(0x020f, 0x1000, &[0; 64]);
        not_linux[HEADER_SIGNATURE_OFFSET] = b'X';
        assert!(!is_bzimage(&not_linux));
        let error = load(&memory, ram, &mut Cursor::new(not_linux), None, "").unwrap_err();
        assert!(matches!(error, Error::Loader(_)), "{error:?}");
        let error = load(&memory, ram, &mut Cursor::new(bzimage(0x0205, 0x1000, &[0; 64])), None, "").unwrap_err();
        assert_eq!(error.to_string(), "boot protocol 2.05 is too old (2.06 or later needed)");
        let long = "x".repeat(3000);
        let error = load(&memory, ram, &mut Cursor::new(bzimage(0x020f, 0x1000, &[0; 64])), None, &long).unwrap_err();
        assert_eq!(error, Error::CommandLineTooLong { length: 3000, limit: 2047 });
        let error = load(&memory, ram, &mut Cursor::new(bzimage(0x020f, 0x200_0000, &[0; 64])), None, "").unwrap_err();
        assert_eq!(error, Error::KernelTooBig { end: 0x210_0000, ram_bytes: ram });
    }
}
