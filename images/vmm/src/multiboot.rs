//! Multiboot (version 1) kernels, as GRUB's `multiboot` and QEMU's
//! `-kernel` load them: the project's L1 test kernel and test hypervisor.
//!
//! The kernel is an ELF file (ELF32 or ELF64) with a multiboot header in
//! its first 8 KiB; its PT_LOAD segments go to their physical addresses.
//! Above the kernel come the modules (page-aligned), then the
//! `multiboot_info` with the memory map, the loader's name, the command
//! line (the kernel's name first, as GRUB passes it) and the module strings.

use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{self, align_up, BootCpu, RegionKind, HIGH_MEMORY, KIB, PAGE_SIZE};

pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// What the kernel finds in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
const HEADER_SEARCH_BYTES: usize = 8192;

// Header flags 0..=15 are requirements a loader must refuse when it does
// not know them.
const HEADER_PAGE_ALIGN_MODULES: u32 = 1 << 0; // always done
const HEADER_MEMORY_INFO: u32 = 1 << 1; // always given
const HEADER_VIDEO_MODE: u32 = 1 << 2; // no display: the info says no video
const HEADER_AOUT_KLUDGE: u32 = 1 << 16;
const KNOWN_REQUIREMENTS: u32 = HEADER_PAGE_ALIGN_MODULES | HEADER_MEMORY_INFO | HEADER_VIDEO_MODE;

// multiboot_info flags and field offsets.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODULES: u32 = 1 << 3;
const INFO_MEMORY_MAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;
const INFO_FLAGS: usize = 0;
const INFO_MEM_LOWER: usize = 4;
const INFO_MEM_UPPER: usize = 8;
const INFO_CMDLINE_ADDR: usize = 16;
const INFO_MODS_COUNT: usize = 20;
const INFO_MODS_ADDR: usize = 24;
const INFO_MMAP_LENGTH: usize = 44;
const INFO_MMAP_ADDR: usize = 48;
const INFO_LOADER_NAME_ADDR: usize = 64;
/// Through the framebuffer fields, which stay zero.
const INFO_BYTES: usize = 116;
const MODULE_ENTRY_BYTES: usize = 16;
/// `size` (20: the bytes after it), base, length, type.
const MMAP_ENTRY_BYTES: usize = 24;
const MMAP_ENTRY_SIZE: u32 = 20;
const MMAP_RAM: u32 = 1;
const MMAP_RESERVED: u32 = 2;
const LOADER_NAME: &str = "matryoshka-vmm";

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELF_CLASS_32: u8 = 1;
const ELF_CLASS_64: u8 = 2;
const ELF_LITTLE_ENDIAN: u8 = 1;
const ELF_MACHINE_386: u16 = 3;
const ELF_MACHINE_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NoHeader,
    BadHeaderChecksum { offset: usize },
    UnknownRequirements { flags: u32 },
    AoutKludge,
    NotElf,
    UnsupportedElf(&'static str),
    Truncated(&'static str),
    NoLoadableSegment,
    SegmentPlacement { index: usize, start: u64, end: u64, ram_bytes: u64 },
    OutOfMemory { what: &'static str, needed_end: u64, ram_bytes: u64 },
    NulInString(&'static str),
    Write(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHeader => write!(f, "no multiboot header (magic {HEADER_MAGIC:#x}) in its first 8 KiB"),
            Self::BadHeaderChecksum { offset } => {
                write!(f, "the multiboot header at offset {offset:#x} has a bad checksum")
            }
            Self::UnknownRequirements { flags } => write!(
                f,
                "the multiboot header requires features this loader does not know (flags {flags:#x}, known {KNOWN_REQUIREMENTS:#x})"
            ),
            Self::AoutKludge => write!(f, "it uses the multiboot a.out kludge (header flag 16): only ELF kernels are loaded"),
            Self::NotElf => write!(f, "it has a multiboot header but is not an ELF file"),
            Self::UnsupportedElf(what) => write!(f, "unsupported ELF file: {what}"),
            Self::Truncated(what) => write!(f, "the file ends inside {what}"),
            Self::NoLoadableSegment => write!(f, "the ELF file has no PT_LOAD segment"),
            Self::SegmentPlacement { index, start, end, ram_bytes } => write!(
                f,
                "ELF segment {index} ({start:#x}-{end:#x}) is not inside guest RAM above 1 MiB (RAM ends at {ram_bytes:#x}; raise --mem?)"
            ),
            Self::OutOfMemory { what, needed_end, ram_bytes } => {
                write!(f, "{what} would end at {needed_end:#x}, beyond guest RAM ({ram_bytes:#x}): raise --mem")
            }
            Self::NulInString(what) => write!(f, "{what} contains a NUL byte"),
            Self::Write(error) => write!(f, "writing guest memory: {error}"),
        }
    }
}

/// Whether `image` carries a multiboot header (valid or not).
pub fn has_header(image: &[u8]) -> bool {
    header_offsets(image).next().is_some()
}

fn header_offsets(image: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let searched = &image[..image.len().min(HEADER_SEARCH_BYTES)];
    (0..searched.len().saturating_sub(11))
        .step_by(4)
        .filter(move |&offset| u32_at(searched, offset) == Some(HEADER_MAGIC))
}

/// The flags of the first multiboot header whose checksum holds.
fn header_flags(image: &[u8]) -> Result<u32, Error> {
    let mut first_bad = None;
    for offset in header_offsets(image) {
        let (Some(flags), Some(checksum)) = (u32_at(image, offset + 4), u32_at(image, offset + 8)) else {
            continue;
        };
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) == 0 {
            return Ok(flags);
        }
        first_bad.get_or_insert(offset);
    }
    Err(first_bad.map_or(Error::NoHeader, |offset| Error::BadHeaderChecksum { offset }))
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(offset..offset + 8)?.try_into().ok()?))
}

/// A PT_LOAD segment: `bytes` at `address`, then zeros up to `memory_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub address: u64,
    pub bytes: &'a [u8],
    pub memory_size: u64,
}

/// The entry point and PT_LOAD segments of an ELF32 or ELF64 x86 file,
/// by physical address.
pub fn elf_segments(image: &[u8]) -> Result<(u64, Vec<Segment<'_>>), Error> {
    if image.get(..4) != Some(ELF_MAGIC.as_slice()) {
        return Err(Error::NotElf);
    }
    let class = *image.get(4).ok_or(Error::Truncated("the ELF header"))?;
    if image.get(5) != Some(&ELF_LITTLE_ENDIAN) {
        return Err(Error::UnsupportedElf("not little-endian"));
    }
    let machine = u16_at(image, 18).ok_or(Error::Truncated("the ELF header"))?;
    if machine != ELF_MACHINE_386 && machine != ELF_MACHINE_X86_64 {
        return Err(Error::UnsupportedElf("not an x86 executable"));
    }
    let header = Error::Truncated("the ELF header");
    // (entry, program header offset, entry size, count) and where each
    // program header keeps (type, offset, paddr, filesz, memsz).
    let (entry, ph_offset, ph_size, ph_count, fields): (u64, u64, u16, u16, [usize; 5]) = match class {
        ELF_CLASS_32 => (
            u64::from(u32_at(image, 24).ok_or(header.clone())?),
            u64::from(u32_at(image, 28).ok_or(header.clone())?),
            u16_at(image, 42).ok_or(header.clone())?,
            u16_at(image, 44).ok_or(header)?,
            [0, 4, 12, 16, 20],
        ),
        ELF_CLASS_64 => (
            u64_at(image, 24).ok_or(header.clone())?,
            u64_at(image, 32).ok_or(header.clone())?,
            u16_at(image, 54).ok_or(header.clone())?,
            u16_at(image, 56).ok_or(header)?,
            [0, 8, 24, 32, 40],
        ),
        _ => return Err(Error::UnsupportedElf("neither ELF32 nor ELF64")),
    };
    let wide = class == ELF_CLASS_64;
    let field = |entry: &[u8], index: usize| -> Option<u64> {
        if wide && index > 0 {
            u64_at(entry, fields[index])
        } else {
            u32_at(entry, fields[index]).map(u64::from)
        }
    };
    let mut segments = Vec::new();
    for index in 0..usize::from(ph_count) {
        let start = usize::try_from(ph_offset).ok().and_then(|o| o.checked_add(index * usize::from(ph_size)));
        let entry_bytes = start
            .and_then(|start| image.get(start..start.checked_add(usize::from(ph_size))?))
            .ok_or(Error::Truncated("the program headers"))?;
        let program = |i| field(entry_bytes, i).ok_or(Error::Truncated("a program header"));
        if program(0)? as u32 != PT_LOAD {
            continue;
        }
        let (offset, address, file_size, memory_size) = (program(1)?, program(2)?, program(3)?, program(4)?);
        let bytes = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(file_size).ok())
            .and_then(|(offset, size)| image.get(offset..offset.checked_add(size)?))
            .ok_or(Error::Truncated("a PT_LOAD segment's data"))?;
        if memory_size < file_size {
            return Err(Error::UnsupportedElf("a PT_LOAD segment's memory size is below its file size"));
        }
        segments.push(Segment { address, bytes, memory_size });
    }
    if segments.is_empty() {
        return Err(Error::NoLoadableSegment);
    }
    Ok((entry, segments))
}

/// A boot module: a file for the kernel, with its string (name, arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub bytes: Vec<u8>,
    pub string: String,
}

/// Bump allocation above the kernel, inside RAM.
struct Placer {
    next: u64,
    ram_bytes: u64,
}

impl Placer {
    fn place(&mut self, what: &'static str, length: u64, alignment: u64) -> Result<u64, Error> {
        let start = align_up(self.next, alignment).ok_or(Error::OutOfMemory {
            what,
            needed_end: u64::MAX,
            ram_bytes: self.ram_bytes,
        })?;
        let end = start.saturating_add(length);
        if end > self.ram_bytes {
            return Err(Error::OutOfMemory { what, needed_end: end, ram_bytes: self.ram_bytes });
        }
        self.next = end;
        Ok(start)
    }
}

/// Loads the multiboot kernel `image` called `name`, with `cmdline` and
/// `modules`, and returns how its vCPU starts.
pub fn load(
    memory: &GuestMemoryMmap,
    ram_bytes: u64,
    image: &[u8],
    name: &str,
    cmdline: &str,
    modules: &[Module],
) -> Result<BootCpu, Error> {
    let flags = header_flags(image)?;
    if flags & HEADER_AOUT_KLUDGE != 0 {
        return Err(Error::AoutKludge);
    }
    if flags & 0xffff & !KNOWN_REQUIREMENTS != 0 {
        return Err(Error::UnknownRequirements { flags });
    }
    let (entry, segments) = elf_segments(image)?;
    let mut kernel_end = HIGH_MEMORY;
    for (index, segment) in segments.iter().enumerate() {
        let end = segment.address.saturating_add(segment.memory_size);
        if segment.address < HIGH_MEMORY || end > ram_bytes {
            return Err(Error::SegmentPlacement { index, start: segment.address, end, ram_bytes });
        }
        kernel_end = kernel_end.max(end);
    }
    let command_line = if cmdline.is_empty() { name.to_string() } else { format!("{name} {cmdline}") };
    if command_line.contains('\0') {
        return Err(Error::NulInString("the command line"));
    }
    if modules.iter().any(|module| module.string.contains('\0')) {
        return Err(Error::NulInString("a module string"));
    }
    let map = layout::memory_map(ram_bytes);

    let mut placer = Placer { next: kernel_end, ram_bytes };
    let module_addresses = modules
        .iter()
        .map(|module| placer.place("a module", module.bytes.len() as u64, PAGE_SIZE))
        .collect::<Result<Vec<_>, _>>()?;
    let info_address = placer.place("the multiboot information", INFO_BYTES as u64, 8)?;
    let module_list_address = placer.place("the module list", (modules.len() * MODULE_ENTRY_BYTES) as u64, 8)?;
    let mmap_bytes = map.len() * MMAP_ENTRY_BYTES;
    let mmap_address = placer.place("the memory map", mmap_bytes as u64, 8)?;
    let name_address = placer.place("the loader name", LOADER_NAME.len() as u64 + 1, 1)?;
    let cmdline_address = placer.place("the command line", command_line.len() as u64 + 1, 1)?;
    let string_addresses = modules
        .iter()
        .map(|module| placer.place("a module string", module.string.len() as u64 + 1, 1))
        .collect::<Result<Vec<_>, _>>()?;

    // Everything fits: write it.
    let write = |bytes: &[u8], address: u64| {
        memory.write_slice(bytes, GuestAddress(address)).map_err(|error| Error::Write(error.to_string()))
    };
    for segment in &segments {
        write(segment.bytes, segment.address)?;
        let zeros = vec![0u8; (segment.memory_size - segment.bytes.len() as u64) as usize];
        write(&zeros, segment.address + segment.bytes.len() as u64)?;
    }
    let mut module_list = Vec::with_capacity(modules.len() * MODULE_ENTRY_BYTES);
    for ((module, &start), &string) in modules.iter().zip(&module_addresses).zip(&string_addresses) {
        write(&module.bytes, start)?;
        write(&c_string(&module.string), string)?;
        // Below 3 GiB, so 32 bits hold every address.
        let end = start + module.bytes.len() as u64;
        for field in [start as u32, end as u32, string as u32, 0] {
            module_list.extend_from_slice(&field.to_le_bytes());
        }
    }
    write(&module_list, module_list_address)?;
    write(&memory_map_entries(&map), mmap_address)?;
    write(&c_string(LOADER_NAME), name_address)?;
    write(&c_string(&command_line), cmdline_address)?;

    let mut info = [0u8; INFO_BYTES];
    let mut put = |offset: usize, value: u32| info[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    put(INFO_FLAGS, INFO_MEMORY | INFO_CMDLINE | INFO_MODULES | INFO_MEMORY_MAP | INFO_LOADER_NAME);
    put(INFO_MEM_LOWER, (map[0].length / KIB) as u32);
    put(INFO_MEM_UPPER, ((ram_bytes - HIGH_MEMORY) / KIB) as u32);
    put(INFO_CMDLINE_ADDR, cmdline_address as u32);
    put(INFO_MODS_COUNT, modules.len() as u32);
    put(INFO_MODS_ADDR, module_list_address as u32);
    put(INFO_MMAP_LENGTH, mmap_bytes as u32);
    put(INFO_MMAP_ADDR, mmap_address as u32);
    put(INFO_LOADER_NAME_ADDR, name_address as u32);
    write(&info, info_address)?;

    Ok(BootCpu { entry, rax: u64::from(BOOTLOADER_MAGIC), rbx: info_address, rsi: 0 })
}

fn c_string(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn memory_map_entries(map: &[layout::Region]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(map.len() * MMAP_ENTRY_BYTES);
    for region in map {
        let kind = match region.kind {
            RegionKind::Ram => MMAP_RAM,
            RegionKind::Reserved => MMAP_RESERVED,
        };
        bytes.extend_from_slice(&MMAP_ENTRY_SIZE.to_le_bytes());
        bytes.extend_from_slice(&region.start.to_le_bytes());
        bytes.extend_from_slice(&region.length.to_le_bytes());
        bytes.extend_from_slice(&kind.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layout::MIB;

    /// A minimal ELF32 multiboot kernel: one PT_LOAD segment of `code`
    /// at 1 MiB with `bss` zeroed bytes after it, the header at offset
    /// 0x100 (inside the segment), entry at 1 MiB + 0x100.
    pub(crate) fn elf32_kernel(flags: u32, code_bytes: usize, bss: u32) -> Vec<u8> {
        let mut image = vec![0u8; 0x100 + code_bytes.max(12)];
        image[..4].copy_from_slice(ELF_MAGIC);
        image[4] = ELF_CLASS_32;
        image[5] = ELF_LITTLE_ENDIAN;
        image[6] = 1;
        image[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        image[18..20].copy_from_slice(&ELF_MACHINE_386.to_le_bytes());
        image[24..28].copy_from_slice(&(0x100100u32).to_le_bytes()); // entry
        image[28..32].copy_from_slice(&52u32.to_le_bytes()); // phoff
        image[42..44].copy_from_slice(&32u16.to_le_bytes()); // phentsize
        image[44..46].copy_from_slice(&1u16.to_le_bytes()); // phnum
        let file_size = image.len() as u32;
        let program = [PT_LOAD, 0, 0x100000, 0x100000, file_size, file_size + bss, 7, 0x1000];
        for (index, value) in program.iter().enumerate() {
            image[52 + index * 4..56 + index * 4].copy_from_slice(&value.to_le_bytes());
        }
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
        for (index, value) in [HEADER_MAGIC, flags, checksum].iter().enumerate() {
            image[0x100 + index * 4..0x104 + index * 4].copy_from_slice(&value.to_le_bytes());
        }
        image
    }

    pub(crate) fn memory(ram_bytes: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), ram_bytes as usize)]).unwrap()
    }

    fn read_u32(memory: &GuestMemoryMmap, address: u64) -> u32 {
        memory.read_obj(GuestAddress(address)).unwrap()
    }

    fn read_u64(memory: &GuestMemoryMmap, address: u64) -> u64 {
        memory.read_obj(GuestAddress(address)).unwrap()
    }

    fn read_c_string(memory: &GuestMemoryMmap, address: u64) -> String {
        let mut bytes = Vec::new();
        for offset in 0.. {
            let byte: u8 = memory.read_obj(GuestAddress(address + offset)).unwrap();
            if byte == 0 {
                break;
            }
            bytes.push(byte);
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_kernel_gets_the_magic_its_segments_and_zeroed_bss() {
        let ram = 16 * MIB;
        let memory = memory(ram);
        let image = elf32_kernel(0x3, 0x200, 0x40);
        // Stale bytes where the bss goes: the loader must clear them.
        memory.write_slice(&[0xaa; 0x40], GuestAddress(0x100000 + image.len() as u64)).unwrap();
        let cpu = load(&memory, ram, &image, "l1-test", "tests=all", &[]).unwrap();
        assert_eq!(cpu.entry, 0x100100);
        assert_eq!(cpu.rax, u64::from(BOOTLOADER_MAGIC));
        assert_eq!(read_u32(&memory, 0x100100), HEADER_MAGIC, "the segment is in place");
        let mut bss = [0xffu8; 0x40];
        memory.read_slice(&mut bss, GuestAddress(0x100000 + image.len() as u64)).unwrap();
        assert_eq!(bss, [0; 0x40]);
        // The information lies above the kernel and its bss.
        assert!(cpu.rbx >= 0x100000 + image.len() as u64 + 0x40);
    }

    #[test]
    fn the_information_holds_memory_sizes_the_map_the_command_line_and_the_loader() {
        let ram = 32 * MIB;
        let memory = memory(ram);
        let cpu = load(&memory, ram, &elf32_kernel(0x3, 0x80, 0), "kernel", "tests=all exit=1", &[]).unwrap();
        let info = cpu.rbx;
        assert_eq!(info % 8, 0);
        let flags = read_u32(&memory, info);
        assert_eq!(flags, INFO_MEMORY | INFO_CMDLINE | INFO_MODULES | INFO_MEMORY_MAP | INFO_LOADER_NAME);
        assert_eq!(read_u32(&memory, info + 4), 639, "mem_lower: KiB below the MP table");
        assert_eq!(read_u32(&memory, info + 8), 31 * 1024, "mem_upper: KiB above 1 MiB");
        let cmdline = read_u32(&memory, info + 16) as u64;
        assert_eq!(read_c_string(&memory, cmdline), "kernel tests=all exit=1");
        assert_eq!(read_c_string(&memory, read_u32(&memory, info + 64) as u64), LOADER_NAME);
        assert_eq!(read_u32(&memory, info + 20), 0, "no modules");

        let (length, address) = (read_u32(&memory, info + 44) as u64, read_u32(&memory, info + 48) as u64);
        assert_eq!(length, 3 * 24);
        let entries: Vec<(u32, u64, u64, u32)> = (0..3)
            .map(|i| {
                let entry = address + i * 24;
                (
                    read_u32(&memory, entry),
                    read_u64(&memory, entry + 4),
                    read_u64(&memory, entry + 12),
                    read_u32(&memory, entry + 20),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [(20, 0, 0x9fc00, MMAP_RAM), (20, 0x9fc00, 0x400, MMAP_RESERVED), (20, MIB, 31 * MIB, MMAP_RAM)]
        );
    }

    #[test]
    fn modules_are_page_aligned_with_their_strings() {
        let ram = 16 * MIB;
        let memory = memory(ram);
        let modules = [
            Module { bytes: vec![1; 5000], string: "first arg=1".into() },
            Module { bytes: vec![2; 10], string: "second".into() },
        ];
        let cpu = load(&memory, ram, &elf32_kernel(0x3, 0x80, 0), "k", "", &modules).unwrap();
        assert_eq!(read_c_string(&memory, read_u32(&memory, cpu.rbx + 16) as u64), "k");
        assert_eq!(read_u32(&memory, cpu.rbx + 20), 2);
        let list = read_u32(&memory, cpu.rbx + 24) as u64;
        for (index, module) in modules.iter().enumerate() {
            let entry = list + index as u64 * 16;
            let (start, end) = (read_u32(&memory, entry) as u64, read_u32(&memory, entry + 4) as u64);
            assert_eq!(start % PAGE_SIZE, 0);
            assert_eq!(end - start, module.bytes.len() as u64);
            let mut bytes = vec![0; module.bytes.len()];
            memory.read_slice(&mut bytes, GuestAddress(start)).unwrap();
            assert_eq!(bytes, module.bytes);
            assert_eq!(read_c_string(&memory, read_u32(&memory, entry + 8) as u64), module.string);
        }
    }

    #[test]
    fn bad_kernels_are_refused_with_the_reason() {
        let ram = 8 * MIB;
        let memory = memory(ram);
        let load = |image: &[u8]| load(&memory, ram, image, "k", "", &[]).unwrap_err();
        assert_eq!(load(&[0u8; 4096]), Error::NoHeader);
        let mut bad_checksum = elf32_kernel(0x3, 0x80, 0);
        bad_checksum[0x108] ^= 1;
        assert_eq!(load(&bad_checksum), Error::BadHeaderChecksum { offset: 0x100 });
        assert_eq!(load(&elf32_kernel(0x3 | (1 << 5), 0x80, 0)), Error::UnknownRequirements { flags: 0x23 });
        assert_eq!(load(&elf32_kernel(0x10003, 0x80, 0)), Error::AoutKludge);
        let mut not_elf = elf32_kernel(0x3, 0x80, 0);
        not_elf[1] = b'X';
        assert_eq!(load(&not_elf), Error::NotElf);
        let mut truncated = elf32_kernel(0x3, 0x80, 0);
        truncated[52 + 4..52 + 8].copy_from_slice(&0x10_0000u32.to_le_bytes()); // p_offset far beyond the file
        assert_eq!(load(&truncated), Error::Truncated("a PT_LOAD segment's data"));
        // A bss that runs past the end of RAM.
        let huge_bss = elf32_kernel(0x3, 0x80, 64 << 20);
        assert!(matches!(load(&huge_bss), Error::SegmentPlacement { index: 0, .. }), "{:?}", load(&huge_bss));
        let big_module = [Module { bytes: vec![0; 8 << 20], string: "m".into() }];
        assert!(matches!(
            super::load(&memory, ram, &elf32_kernel(0x3, 0x80, 0), "k", "", &big_module),
            Err(Error::OutOfMemory { what: "a module", .. })
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Error::NoHeader.to_string().contains("no multiboot header"));
        let placement = Error::SegmentPlacement { index: 1, start: 0x1000, end: 0x2000, ram_bytes: 0x80_0000 };
        assert!(placement.to_string().contains("ELF segment 1 (0x1000-0x2000)"), "{placement}");
    }

    #[test]
    fn elf64_segments_are_read_by_physical_address() {
        let mut image = vec![0u8; 0x200];
        image[..4].copy_from_slice(ELF_MAGIC);
        image[4] = ELF_CLASS_64;
        image[5] = ELF_LITTLE_ENDIAN;
        image[18..20].copy_from_slice(&ELF_MACHINE_X86_64.to_le_bytes());
        image[24..32].copy_from_slice(&0x100040u64.to_le_bytes());
        image[32..40].copy_from_slice(&64u64.to_le_bytes());
        image[54..56].copy_from_slice(&56u16.to_le_bytes());
        image[56..58].copy_from_slice(&1u16.to_le_bytes());
        let header = 64;
        image[header..header + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        image[header + 8..header + 16].copy_from_slice(&0x100u64.to_le_bytes()); // offset
        image[header + 16..header + 24].copy_from_slice(&0xffff_ffff_8010_0000u64.to_le_bytes()); // vaddr
        image[header + 24..header + 32].copy_from_slice(&0x100000u64.to_le_bytes()); // paddr
        image[header + 32..header + 40].copy_from_slice(&0x100u64.to_le_bytes()); // filesz
        image[header + 40..header + 48].copy_from_slice(&0x180u64.to_le_bytes()); // memsz
        let (entry, segments) = elf_segments(&image).unwrap();
        assert_eq!(entry, 0x100040);
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].address, segments[0].bytes.len(), segments[0].memory_size), (0x100000, 0x100, 0x180));
    }
}
