//! Synthetic kernels and fake guest memories for the loader tests.
//!
//! The images are built field by field from the specifications, so a test
//! says exactly which header value it exercises.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::guest_memory::{GuestMemory, OutOfRange};

pub const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
/// Where `elf_image` puts the Multiboot header's video fields.
pub const VIDEO_REQUEST: [u32; 4] = [0, 1024, 768, 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSegment {
    pub physical: u64,
    pub virtual_: u64,
    pub data: Vec<u8>,
    pub memory_size: u64,
}

pub fn put(image: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if image.len() < offset + bytes.len() {
        image.resize(offset + bytes.len(), 0);
    }
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
}

pub fn put_u16(image: &mut Vec<u8>, offset: usize, value: u16) {
    put(image, offset, &value.to_le_bytes());
}

pub fn put_u32(image: &mut Vec<u8>, offset: usize, value: u32) {
    put(image, offset, &value.to_le_bytes());
}

pub fn put_u64(image: &mut Vec<u8>, offset: usize, value: u64) {
    put(image, offset, &value.to_le_bytes());
}

fn multiboot_checksum(flags: u32) -> u32 {
    0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags))
}

/// A 48-byte Multiboot header: magic, flags, checksum, the five a.out
/// addresses (zero) and the video request.
pub fn multiboot_header(flags: u32) -> Vec<u8> {
    let mut header = Vec::new();
    for value in [MULTIBOOT_MAGIC, flags, multiboot_checksum(flags), 0, 0, 0, 0, 0] {
        header.extend_from_slice(&value.to_le_bytes());
    }
    for value in VIDEO_REQUEST {
        header.extend_from_slice(&value.to_le_bytes());
    }
    header
}

/// Rewrites the flags of the Multiboot header at `offset`, with a matching checksum.
pub fn set_multiboot_flags(image: &mut Vec<u8>, offset: usize, flags: u32) {
    put_u32(image, offset + 4, flags);
    put_u32(image, offset + 8, multiboot_checksum(flags));
}

/// Offset of the Multiboot header in an `elf_image` with `segments` load segments.
pub fn elf_multiboot_header_offset(class: ElfClass, segments: usize) -> usize {
    let (header, program_header) = match class {
        ElfClass::Elf32 => (52, 32),
        ElfClass::Elf64 => (64, 56),
    };
    header + program_header * (segments + 1)
}

/// An x86 ELF executable: the file header, one PT_LOAD program header per
/// segment and a PT_GNU_STACK one, a Multiboot header if `multiboot_flags`
/// is given, then each segment's file bytes (16-aligned), the last at the
/// very end of the file.
pub fn elf_image(class: ElfClass, entry: u64, segments: &[TestSegment], multiboot_flags: Option<u32>) -> Vec<u8> {
    let (header_size, program_header_size, machine, class_byte) = match class {
        ElfClass::Elf32 => (52usize, 32usize, 3u16, 1u8),
        ElfClass::Elf64 => (64, 56, 62, 2),
    };
    let table_offset = header_size;
    let mut offset = elf_multiboot_header_offset(class, segments.len());
    let mut image = Vec::new();
    put(&mut image, 0, &[0x7f, b'E', b'L', b'F', class_byte, 1, 1, 0]);
    put_u16(&mut image, 16, 2); // ET_EXEC
    put_u16(&mut image, 18, machine);
    put_u32(&mut image, 20, 1);
    match class {
        ElfClass::Elf32 => {
            put_u32(&mut image, 24, entry as u32);
            put_u32(&mut image, 28, table_offset as u32);
            put_u16(&mut image, 40, header_size as u16);
            put_u16(&mut image, 42, program_header_size as u16);
            put_u16(&mut image, 44, segments.len() as u16 + 1);
        }
        ElfClass::Elf64 => {
            put_u64(&mut image, 24, entry);
            put_u64(&mut image, 32, table_offset as u64);
            put_u16(&mut image, 52, header_size as u16);
            put_u16(&mut image, 54, program_header_size as u16);
            put_u16(&mut image, 56, segments.len() as u16 + 1);
        }
    }
    if let Some(flags) = multiboot_flags {
        put(&mut image, offset, &multiboot_header(flags));
        offset += 48;
    }
    for (index, segment) in segments.iter().enumerate() {
        offset = offset.next_multiple_of(16);
        let header = table_offset + index * program_header_size;
        let fields =
            [offset as u64, segment.virtual_, segment.physical, segment.data.len() as u64, segment.memory_size];
        put_u32(&mut image, header, 1); // PT_LOAD
        match class {
            ElfClass::Elf32 => {
                for (slot, value) in fields.iter().enumerate() {
                    put_u32(&mut image, header + 4 + 4 * slot, *value as u32);
                }
            }
            ElfClass::Elf64 => {
                put_u32(&mut image, header + 4, 7); // p_flags: RWX
                for (slot, value) in fields.iter().enumerate() {
                    put_u64(&mut image, header + 8 + 8 * slot, *value);
                }
            }
        }
        put(&mut image, offset, &segment.data);
        offset += segment.data.len();
    }
    let stack_header = table_offset + segments.len() * program_header_size;
    put_u32(&mut image, stack_header, 0x6474_e551); // PT_GNU_STACK: not loaded
    if image.len() < offset {
        image.resize(offset, 0);
    }
    image
}

/// Bytes that differ from position to position, so that a misplaced copy
/// shows: a 251-byte cycle (prime, so it never lines up with pages), copied
/// in bulk to keep megabyte-sized test files fast in debug builds.
pub fn pattern(length: usize, seed: u8) -> Vec<u8> {
    const CYCLE: usize = 251;
    let cycle: Vec<u8> = (0..CYCLE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let mut bytes = Vec::with_capacity(length);
    while bytes.len() < length {
        let chunk = (length - bytes.len()).min(CYCLE);
        bytes.extend_from_slice(&cycle[..chunk]);
    }
    bytes
}

pub const AOUT_HEADER_OFFSET: usize = 16;

/// A Multiboot a.out-kludge image loaded at `load_addr`: 16 bytes of code,
/// the 48-byte header (flags 0x10000 | `extra_flags`), then patterned bytes
/// up to `length`; `bss` bytes of bss follow, the entry is `entry_offset`
/// into the image.
pub fn aout_image(load_addr: u32, length: usize, bss: u32, entry_offset: u32, extra_flags: u32) -> Vec<u8> {
    let mut image = pattern(length.max(AOUT_HEADER_OFFSET + 48), 0x40);
    let mut header = multiboot_header(0x1_0000 | extra_flags);
    let load_end = load_addr + image.len() as u32;
    for (slot, value) in
        [load_addr + AOUT_HEADER_OFFSET as u32, load_addr, load_end, load_end + bss, load_addr + entry_offset]
            .iter()
            .enumerate()
    {
        header[12 + 4 * slot..16 + 4 * slot].copy_from_slice(&value.to_le_bytes());
    }
    if bss == 0 {
        header[24..28].copy_from_slice(&0u32.to_le_bytes());
    }
    put(&mut image, AOUT_HEADER_OFFSET, &header);
    image
}

/// The setup-header fields of a fake bzImage, named as in boot.rst.
#[derive(Debug, Clone)]
pub struct FakeBzImage {
    pub setup_sects: u8,
    /// The byte at 0x201: the setup header ends at 0x202 + this.
    pub header_length: u8,
    pub version: u16,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable_kernel: u8,
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub payload: Vec<u8>,
}

impl Default for FakeBzImage {
    fn default() -> Self {
        Self {
            setup_sects: 4,
            header_length: 0x6a, // protocol 2.15: ends at 0x26c
            version: 0x020f,
            loadflags: 0x01, // LOADED_HIGH
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            relocatable_kernel: 1,
            cmdline_size: 2047,
            pref_address: 0x100_0000,
            init_size: 0x40_0000,
            payload: pattern(0x3000, 0x80),
        }
    }
}

impl FakeBzImage {
    pub fn setup_bytes(&self) -> usize {
        let sectors = if self.setup_sects == 0 { 4 } else { usize::from(self.setup_sects) };
        (sectors + 1) * 512
    }

    pub fn build(&self) -> Vec<u8> {
        // The real-mode part is patterned too, so that copying more than the
        // header into boot_params would show.
        let mut image = pattern(self.setup_bytes(), 0x11);
        image[0x1f1] = self.setup_sects;
        put_u16(&mut image, 0x1f2, 1); // root_flags
        put_u32(&mut image, 0x1f4, (self.payload.len() / 16) as u32); // syssize
        put_u16(&mut image, 0x1f8, 0); // ram_size
        put_u16(&mut image, 0x1fa, 0xffff); // vid_mode: "normal"
        put_u16(&mut image, 0x1fc, 0); // root_dev
        put_u16(&mut image, 0x1fe, 0xaa55); // boot_flag
        image[0x200] = 0xeb; // jump
        image[0x201] = self.header_length;
        put(&mut image, 0x202, b"HdrS");
        put_u16(&mut image, 0x206, self.version);
        put_u32(&mut image, 0x208, 0); // realmode_swtch
        put_u16(&mut image, 0x20c, 0x1000); // start_sys_seg
        put_u16(&mut image, 0x20e, 0x3a0); // kernel_version string offset
        image[0x210] = 0; // type_of_loader
        image[0x211] = self.loadflags;
        put_u16(&mut image, 0x212, 0x8000); // setup_move_size
        put_u32(&mut image, 0x214, self.code32_start);
        put_u32(&mut image, 0x218, 0); // ramdisk_image
        put_u32(&mut image, 0x21c, 0); // ramdisk_size
        put_u32(&mut image, 0x220, 0); // bootsect_kludge
        put_u16(&mut image, 0x224, 0); // heap_end_ptr
        image[0x226] = 0; // ext_loader_ver
        image[0x227] = 0; // ext_loader_type
        put_u32(&mut image, 0x228, 0); // cmd_line_ptr
        put_u32(&mut image, 0x22c, self.initrd_addr_max);
        put_u32(&mut image, 0x230, self.kernel_alignment);
        image[0x234] = self.relocatable_kernel;
        image[0x235] = 21; // min_alignment: 2 MiB
        put_u16(&mut image, 0x236, 0x7f); // xloadflags
        put_u32(&mut image, 0x238, self.cmdline_size);
        put_u32(&mut image, 0x23c, 0); // hardware_subarch
        put_u64(&mut image, 0x240, 0); // hardware_subarch_data
        put_u32(&mut image, 0x248, 0x2c0); // payload_offset
        put_u32(&mut image, 0x24c, 0x1000); // payload_length
        put_u64(&mut image, 0x250, 0); // setup_data
        put_u64(&mut image, 0x258, self.pref_address);
        put_u32(&mut image, 0x260, self.init_size);
        put_u32(&mut image, 0x264, 0x1_2340); // handover_offset
        put_u32(&mut image, 0x268, 0x5_6780); // kernel_info_offset
        image.extend_from_slice(&self.payload);
        image
    }
}

/// Guest memory that stores only the pages written, so that tests can give
/// a guest 4 GiB and more.
#[derive(Debug, Default)]
pub struct SparseMemory {
    size: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl SparseMemory {
    pub fn new(size: u64) -> Self {
        Self { size, pages: BTreeMap::new() }
    }
}

impl GuestMemory for SparseMemory {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        if !self.contains(gpa, buffer.len() as u64) {
            return Err(OutOfRange { gpa, len: buffer.len() as u64 });
        }
        for (i, byte) in buffer.iter_mut().enumerate() {
            let address = gpa + i as u64;
            *byte = self.pages.get(&(address >> 12)).map_or(0, |page| page[(address & 0xfff) as usize]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        if !self.contains(gpa, data.len() as u64) {
            return Err(OutOfRange { gpa, len: data.len() as u64 });
        }
        for (i, byte) in data.iter().enumerate() {
            let address = gpa + i as u64;
            self.pages.entry(address >> 12).or_insert_with(|| vec![0; 4096])[(address & 0xfff) as usize] = *byte;
        }
        Ok(())
    }
}

/// Guest memory that records every write, to prove where a loader wrote.
#[derive(Debug)]
pub struct RecordingMemory<M> {
    pub inner: M,
    /// `(gpa, length)` of every write attempted, refused or not.
    pub writes: Vec<(u64, u64)>,
}

impl<M> RecordingMemory<M> {
    pub fn new(inner: M) -> Self {
        Self { inner, writes: Vec::new() }
    }
}

impl<M: GuestMemory> GuestMemory for RecordingMemory<M> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        self.inner.read(gpa, buffer)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.writes.push((gpa, data.len() as u64));
        self.inner.write(gpa, data)
    }
}

/// Reads `length` bytes of guest memory.
pub fn read_bytes(memory: &impl GuestMemory, gpa: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    memory.read(gpa, &mut bytes).unwrap();
    bytes
}

/// Reads the NUL-terminated string at `gpa`.
pub fn read_c_string(memory: &impl GuestMemory, gpa: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut address = gpa;
    loop {
        let mut byte = [0];
        memory.read(address, &mut byte).unwrap();
        if byte[0] == 0 {
            return bytes;
        }
        bytes.push(byte[0]);
        address += 1;
    }
}
