//! The part of ELF a kernel loader needs: the file header and the loadable
//! segments of the program header table (ELF32 and ELF64, little-endian,
//! x86). Sections, symbols and relocations are none of a loader's business.

use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at};
use super::error::LoadProblem;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_OFFSET: usize = 4; // e_ident[EI_CLASS]
const DATA_OFFSET: usize = 5; // e_ident[EI_DATA]
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const DATA_LITTLE_ENDIAN: u8 = 1;
const TYPE_OFFSET: usize = 16; // e_type
const MACHINE_OFFSET: usize = 18; // e_machine
const VERSION_OFFSET: usize = 20; // e_version
const ENTRY_OFFSET: usize = 24; // e_entry, 4 or 8 bytes
const TYPE_EXECUTABLE: u16 = 2; // ET_EXEC
const TYPE_SHARED: u16 = 3; // ET_DYN: a position-independent executable, loaded where its headers say
const VERSION_CURRENT: u32 = 1; // EV_CURRENT
const MACHINE_386: u16 = 3; // EM_386
const MACHINE_X86_64: u16 = 62; // EM_X86_64
const SEGMENT_LOAD: u32 = 1; // PT_LOAD

/// Where the fields that differ between ELF32 and ELF64 live.
#[derive(Clone, Copy)]
struct Layout {
    /// Bytes in an address-sized field (`Elf32_Addr` or `Elf64_Addr`).
    word: usize,
    header_size: usize,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    program_header_size: u16,
    p_offset: usize,
    p_vaddr: usize,
    p_paddr: usize,
    p_filesz: usize,
    p_memsz: usize,
}

const ELF32: Layout = Layout {
    word: 4,
    header_size: 52,
    phoff: 28,
    phentsize: 42,
    phnum: 44,
    program_header_size: 32,
    p_offset: 4,
    p_vaddr: 8,
    p_paddr: 12,
    p_filesz: 16,
    p_memsz: 20,
};

const ELF64: Layout = Layout {
    word: 8,
    header_size: 64,
    phoff: 32,
    phentsize: 54,
    phnum: 56,
    program_header_size: 56,
    p_offset: 8,
    p_vaddr: 16,
    p_paddr: 24,
    p_filesz: 32,
    p_memsz: 40,
};

impl Layout {
    fn word_at(&self, bytes: &[u8], offset: usize) -> Option<u64> {
        if self.word == 4 {
            u32_at(bytes, offset).map(u64::from)
        } else {
            u64_at(bytes, offset)
        }
    }
}

/// An executable's entry point and loadable segments, as the file states
/// them: checked to be inside the file, not yet against guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfExecutable {
    pub entry: u64,
    pub segments: Vec<LoadSegment>,
}

/// A `PT_LOAD` segment that occupies memory (`p_memsz > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    /// The index of its program header, as `readelf -l` counts.
    pub index: usize,
    pub file_offset: u64,
    pub file_size: u64,
    pub virtual_address: u64,
    pub physical_address: u64,
    pub memory_size: u64,
}

impl LoadSegment {
    /// Whether `address` falls in the segment's virtual range.
    pub(crate) fn contains_virtual(&self, address: u64) -> bool {
        address.checked_sub(self.virtual_address).is_some_and(|offset| offset < self.memory_size)
    }

    pub(crate) fn contains_physical(&self, address: u64) -> bool {
        address.checked_sub(self.physical_address).is_some_and(|offset| offset < self.memory_size)
    }
}

pub(crate) fn starts_with_magic(image: &[u8]) -> bool {
    image.starts_with(&ELF_MAGIC)
}

pub(crate) fn parse(image: &[u8]) -> Result<ElfExecutable, LoadProblem> {
    if !starts_with_magic(image) {
        let mut found = [0; 4];
        for (slot, byte) in found.iter_mut().zip(image) {
            *slot = *byte;
        }
        return Err(LoadProblem::NotElf { found });
    }
    let truncated_header = |length: usize| LoadProblem::ElfTruncated {
        what: "the ELF header",
        index: None,
        offset: 0,
        length: length as u64,
        file_length: image.len(),
    };
    let class = u8_at(image, CLASS_OFFSET).ok_or_else(|| truncated_header(CLASS_OFFSET + 1))?;
    let layout = match class {
        CLASS_32 => ELF32,
        CLASS_64 => ELF64,
        _ => return Err(LoadProblem::ElfBadClass { class }),
    };
    if image.len() < layout.header_size {
        return Err(truncated_header(layout.header_size));
    }
    // The header is all there; the reads below cannot fail.
    let field16 = |offset| u16_at(image, offset).unwrap_or_default();
    let word = |offset| layout.word_at(image, offset).unwrap_or_default();

    let encoding = u8_at(image, DATA_OFFSET).unwrap_or_default();
    if encoding != DATA_LITTLE_ENDIAN {
        return Err(LoadProblem::ElfNotLittleEndian { encoding });
    }
    let version = u32_at(image, VERSION_OFFSET).unwrap_or_default();
    if version != VERSION_CURRENT {
        return Err(LoadProblem::ElfBadVersion { version });
    }
    let elf_type = field16(TYPE_OFFSET);
    if elf_type != TYPE_EXECUTABLE && elf_type != TYPE_SHARED {
        return Err(LoadProblem::ElfNotExecutable { elf_type });
    }
    // Either machine in either class: `objcopy -O elf32-i386` of a 64-bit
    // kernel, or an ELF64 that starts in 32-bit code, are both common.
    let machine = field16(MACHINE_OFFSET);
    if machine != MACHINE_386 && machine != MACHINE_X86_64 {
        return Err(LoadProblem::ElfBadMachine { machine });
    }
    let entry = word(ENTRY_OFFSET);
    let table_offset = word(layout.phoff);
    let entry_size = field16(layout.phentsize);
    let entry_count = field16(layout.phnum);
    if entry_count > 0 && entry_size < layout.program_header_size {
        return Err(LoadProblem::ElfBadProgramHeaderSize { size: entry_size, expected: layout.program_header_size });
    }

    let mut segments = Vec::new();
    for index in 0..usize::from(entry_count) {
        let header = program_header(image, table_offset, entry_size, index, layout)?;
        if u32_at(header, 0) != Some(SEGMENT_LOAD) {
            continue;
        }
        let field = |offset| layout.word_at(header, offset).unwrap_or_default();
        let segment = LoadSegment {
            index,
            file_offset: field(layout.p_offset),
            file_size: field(layout.p_filesz),
            virtual_address: field(layout.p_vaddr),
            physical_address: field(layout.p_paddr),
            memory_size: field(layout.p_memsz),
        };
        if segment.file_size > segment.memory_size {
            return Err(LoadProblem::ElfSegmentFileSizeExceedsMemorySize {
                index,
                file_size: segment.file_size,
                memory_size: segment.memory_size,
            });
        }
        if file_range(image, segment.file_offset, segment.file_size).is_none() {
            return Err(LoadProblem::ElfSegmentBeyondFile {
                index,
                offset: segment.file_offset,
                file_size: segment.file_size,
                file_length: image.len(),
            });
        }
        if segment.memory_size > 0 {
            segments.push(segment);
        }
    }
    if segments.is_empty() {
        return Err(LoadProblem::ElfNoLoadableSegments);
    }
    Ok(ElfExecutable { entry, segments })
}

/// The bytes of program header `index`, at least the class's size.
fn program_header(
    image: &[u8],
    table_offset: u64,
    entry_size: u16,
    index: usize,
    layout: Layout,
) -> Result<&[u8], LoadProblem> {
    let length = u64::from(layout.program_header_size);
    let offset = (index as u64).checked_mul(u64::from(entry_size)).and_then(|offset| offset.checked_add(table_offset));
    offset.and_then(|offset| file_range(image, offset, length)).ok_or(LoadProblem::ElfTruncated {
        what: "ELF program header",
        index: Some(index),
        offset: offset.unwrap_or(u64::MAX),
        length,
        file_length: image.len(),
    })
}

/// `image[offset..offset + length]`, if the file has all of it.
pub(crate) fn file_range(image: &[u8], offset: u64, length: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    image.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::test_images::{elf_image, ElfClass, TestSegment};

    fn two_segments() -> Vec<TestSegment> {
        alloc::vec![
            TestSegment { physical: 0x10_0000, virtual_: 0x10_0000, data: alloc::vec![1; 0x100], memory_size: 0x100 },
            TestSegment { physical: 0x20_0000, virtual_: 0x8020_0000, data: alloc::vec![2; 0x10], memory_size: 0x3000 },
        ]
    }

    #[test]
    fn reads_both_classes() {
        for class in [ElfClass::Elf32, ElfClass::Elf64] {
            let image = elf_image(class, 0x10_0010, &two_segments(), None);
            let executable = parse(&image).unwrap();
            assert_eq!(executable.entry, 0x10_0010);
            assert_eq!(executable.segments.len(), 2, "the PT_GNU_STACK header is skipped");
            let second = executable.segments[1];
            assert_eq!(
                (second.index, second.file_size, second.virtual_address, second.physical_address, second.memory_size),
                (1, 0x10, 0x8020_0000, 0x20_0000, 0x3000)
            );
            assert_eq!(file_range(&image, second.file_offset, second.file_size), Some(&[2u8; 0x10][..]));
        }
    }

    #[test]
    fn segment_ranges() {
        let segment = LoadSegment {
            index: 0,
            file_offset: 0,
            file_size: 0,
            virtual_address: 0xffff_ffff_8000_0000,
            physical_address: 0x10_0000,
            memory_size: 0x1000,
        };
        assert!(segment.contains_virtual(0xffff_ffff_8000_0fff));
        assert!(!segment.contains_virtual(0xffff_ffff_8000_1000));
        assert!(!segment.contains_virtual(0x10_0000));
        assert!(segment.contains_physical(0x10_0000));
        assert!(!segment.contains_physical(0xf_ffff));
    }

    #[test]
    fn refuses_what_is_not_an_x86_executable() {
        let good = elf_image(ElfClass::Elf32, 0x10_0000, &two_segments(), None);
        let patched = |offset: usize, bytes: &[u8]| {
            let mut image = good.clone();
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
            parse(&image)
        };
        assert_eq!(parse(b"MZ"), Err(LoadProblem::NotElf { found: [b'M', b'Z', 0, 0] }));
        assert_eq!(
            parse(&good[..4]),
            Err(LoadProblem::ElfTruncated {
                what: "the ELF header",
                index: None,
                offset: 0,
                length: 5,
                file_length: 4
            })
        );
        assert_eq!(
            parse(&good[..40]),
            Err(LoadProblem::ElfTruncated {
                what: "the ELF header",
                index: None,
                offset: 0,
                length: 52,
                file_length: 40
            })
        );
        assert_eq!(patched(4, &[3]), Err(LoadProblem::ElfBadClass { class: 3 }));
        assert_eq!(patched(5, &[2]), Err(LoadProblem::ElfNotLittleEndian { encoding: 2 }));
        assert_eq!(patched(20, &[0]), Err(LoadProblem::ElfBadVersion { version: 0 }));
        assert_eq!(patched(16, &[1]), Err(LoadProblem::ElfNotExecutable { elf_type: 1 }));
        assert!(patched(16, &[3]).is_ok(), "a PIE loads at its stated addresses");
        assert_eq!(patched(18, &[40]), Err(LoadProblem::ElfBadMachine { machine: 40 }));
        assert_eq!(patched(42, &[31]), Err(LoadProblem::ElfBadProgramHeaderSize { size: 31, expected: 32 }));
        assert_eq!(patched(44, &[0]), Err(LoadProblem::ElfNoLoadableSegments));
        // Program header table moved past the end of the file.
        assert_eq!(
            patched(28, &0xffff_fff0u32.to_le_bytes()),
            Err(LoadProblem::ElfTruncated {
                what: "ELF program header",
                index: Some(0),
                offset: 0xffff_fff0,
                length: 32,
                file_length: good.len()
            })
        );
        // Segment 1's p_filesz (at 52 + 32 + 16) beyond its p_memsz, then beyond the file.
        assert_eq!(
            patched(52 + 32 + 16, &0x4000u32.to_le_bytes()),
            Err(LoadProblem::ElfSegmentFileSizeExceedsMemorySize { index: 1, file_size: 0x4000, memory_size: 0x3000 })
        );
        let segment_1_offset = u64::from(u32_at(&good, 52 + 32 + 4).unwrap());
        assert_eq!(
            patched(52 + 32 + 16, &0x2000u32.to_le_bytes()),
            Err(LoadProblem::ElfSegmentBeyondFile {
                index: 1,
                offset: segment_1_offset,
                file_size: 0x2000,
                file_length: good.len()
            })
        );
        assert_eq!(
            parse(&good[..good.len() - 1]).map(|_| ()),
            Err(LoadProblem::ElfSegmentBeyondFile {
                index: 1,
                offset: segment_1_offset,
                file_size: 0x10,
                file_length: good.len() - 1
            })
        );
    }
}
