//! The monitor image as the shim reads it: an ELF64 executable whose
//! loadable segments lie in the monitor's image window.
//!
//! The image is a boot module the administrator supplies, not guest input,
//! but it is read with the same care: every offset and size is checked, and
//! a segment that is both writable and executable is refused (W^X holds in
//! every monitor's address space).

use alloc::vec::Vec;
use core::fmt;

use monitor_abi::address_space::{IMAGE_BASE, IMAGE_LIMIT};

use crate::memory::FRAME_SIZE;

/// One loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Page-aligned start in the monitor's address space.
    pub virt: u64,
    /// Bytes from the file; the rest up to `memory_bytes` is zero.
    pub file_bytes: &'a [u8],
    pub memory_bytes: u64,
    pub writable: bool,
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorImage<'a> {
    pub entry: u64,
    pub segments: Vec<Segment<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    NotElf64,
    NotExecutable,
    NotX86_64,
    Truncated(&'static str),
    BadProgramHeaderSize(u16),
    Misaligned { virt: u64 },
    OutsideWindow { virt: u64, end: u64 },
    FileSizeOverMemorySize { virt: u64 },
    WritableAndExecutable { virt: u64 },
    Overlap { virt: u64 },
    NoSegments,
    EntryNotInCode(u64),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf64 => write!(f, "not a little-endian ELF64 file"),
            Self::NotExecutable => write!(f, "not an executable (ELF type EXEC)"),
            Self::NotX86_64 => write!(f, "not an x86-64 program"),
            Self::Truncated(what) => write!(f, "the file ends inside its {what}"),
            Self::BadProgramHeaderSize(size) => write!(f, "program headers of {size} bytes (expected 56)"),
            Self::Misaligned { virt } => write!(f, "segment at {virt:#x} is not page-aligned"),
            Self::OutsideWindow { virt, end } => write!(
                f,
                "segment {virt:#x}..{end:#x} lies outside the monitor image window {IMAGE_BASE:#x}..{IMAGE_LIMIT:#x}"
            ),
            Self::FileSizeOverMemorySize { virt } => {
                write!(f, "segment at {virt:#x} has more file bytes than memory bytes")
            }
            Self::WritableAndExecutable { virt } => write!(f, "segment at {virt:#x} is writable and executable"),
            Self::Overlap { virt } => write!(f, "segment at {virt:#x} overlaps another"),
            Self::NoSegments => write!(f, "no loadable segments"),
            Self::EntryNotInCode(entry) => write!(f, "entry point {entry:#x} is not in an executable segment"),
        }
    }
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PROGRAM_HEADER_SIZE: u16 = 56;

fn field<const N: usize>(bytes: &[u8], offset: usize, what: &'static str) -> Result<[u8; N], ImageError> {
    offset
        .checked_add(N)
        .and_then(|end| bytes.get(offset..end))
        .map(|slice| slice.try_into().expect("N bytes"))
        .ok_or(ImageError::Truncated(what))
}

fn u16_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u16, ImageError> {
    field::<2>(bytes, offset, what).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u32, ImageError> {
    field::<4>(bytes, offset, what).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u64, ImageError> {
    field::<8>(bytes, offset, what).map(u64::from_le_bytes)
}

/// Reads the loadable segments of a monitor image.
pub fn parse(elf: &[u8]) -> Result<MonitorImage<'_>, ImageError> {
    if elf.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return Err(ImageError::NotElf64);
    }
    if u16_at(elf, 16, "header")? != ET_EXEC {
        return Err(ImageError::NotExecutable);
    }
    if u16_at(elf, 18, "header")? != EM_X86_64 {
        return Err(ImageError::NotX86_64);
    }
    let entry = u64_at(elf, 24, "header")?;
    let table = usize::try_from(u64_at(elf, 32, "header")?).map_err(|_| ImageError::Truncated("program headers"))?;
    let entry_size = u16_at(elf, 54, "header")?;
    if entry_size != PROGRAM_HEADER_SIZE {
        return Err(ImageError::BadProgramHeaderSize(entry_size));
    }
    let count = usize::from(u16_at(elf, 56, "header")?);
    let mut segments: Vec<Segment> = Vec::new();
    for index in 0..count {
        let header = table
            .checked_add(index * usize::from(PROGRAM_HEADER_SIZE))
            .ok_or(ImageError::Truncated("program headers"))?;
        if u32_at(elf, header, "program headers")? != PT_LOAD {
            continue;
        }
        let flags = u32_at(elf, header + 4, "program headers")?;
        let offset = u64_at(elf, header + 8, "program headers")?;
        let virt = u64_at(elf, header + 16, "program headers")?;
        let file_size = u64_at(elf, header + 32, "program headers")?;
        let memory_bytes = u64_at(elf, header + 40, "program headers")?;
        if memory_bytes == 0 {
            continue;
        }
        if virt % FRAME_SIZE != 0 {
            return Err(ImageError::Misaligned { virt });
        }
        let end = virt.checked_add(memory_bytes).ok_or(ImageError::OutsideWindow { virt, end: u64::MAX })?;
        if virt < IMAGE_BASE || end > IMAGE_LIMIT {
            return Err(ImageError::OutsideWindow { virt, end });
        }
        if file_size > memory_bytes {
            return Err(ImageError::FileSizeOverMemorySize { virt });
        }
        let file_bytes = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(file_size).ok())
            .and_then(|(start, len)| elf.get(start..start.checked_add(len)?))
            .ok_or(ImageError::Truncated("segment data"))?;
        let writable = flags & PF_W != 0;
        let executable = flags & PF_X != 0;
        if writable && executable {
            return Err(ImageError::WritableAndExecutable { virt });
        }
        let pages_end = end.next_multiple_of(FRAME_SIZE);
        if segments
            .iter()
            .any(|other| virt < other.virt + other.memory_bytes.next_multiple_of(FRAME_SIZE) && other.virt < pages_end)
        {
            return Err(ImageError::Overlap { virt });
        }
        segments.push(Segment { virt, file_bytes, memory_bytes, writable, executable });
    }
    if segments.is_empty() {
        return Err(ImageError::NoSegments);
    }
    let in_code = segments
        .iter()
        .any(|segment| segment.executable && (segment.virt..segment.virt + segment.memory_bytes).contains(&entry));
    if !in_code {
        return Err(ImageError::EntryNotInCode(entry));
    }
    Ok(MonitorImage { entry, segments })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec;

    /// (flags, virt, file bytes, memory size) -> an ELF64 file.
    pub(crate) fn elf(entry: u64, segments: &[(u32, u64, Vec<u8>, u64)]) -> Vec<u8> {
        let mut file = vec![0u8; 64 + 56 * segments.len()];
        file[0..6].copy_from_slice(b"\x7fELF\x02\x01");
        file[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        file[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        file[24..32].copy_from_slice(&entry.to_le_bytes());
        file[32..40].copy_from_slice(&64u64.to_le_bytes());
        file[54..56].copy_from_slice(&56u16.to_le_bytes());
        file[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (index, (flags, virt, data, memory)) in segments.iter().enumerate() {
            let offset = file.len() as u64;
            file.extend_from_slice(data);
            let header = 64 + 56 * index;
            file[header..header + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            file[header + 4..header + 8].copy_from_slice(&flags.to_le_bytes());
            file[header + 8..header + 16].copy_from_slice(&offset.to_le_bytes());
            file[header + 16..header + 24].copy_from_slice(&virt.to_le_bytes());
            file[header + 32..header + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            file[header + 40..header + 48].copy_from_slice(&memory.to_le_bytes());
        }
        file
    }

    pub(crate) fn sample() -> Vec<u8> {
        elf(
            IMAGE_BASE + 0x10,
            &[
                (PF_X | 4, IMAGE_BASE, vec![0x90; 0x1800], 0x1800),
                (4, IMAGE_BASE + 0x2000, vec![1, 2, 3], 3),
                (PF_W | 4, IMAGE_BASE + 0x3000, vec![7; 0x10], 0x2100),
            ],
        )
    }

    #[test]
    fn reads_the_loadable_segments() {
        let file = sample();
        let image = parse(&file).unwrap();
        assert_eq!(image.entry, IMAGE_BASE + 0x10);
        assert_eq!(image.segments.len(), 3);
        assert!(image.segments[0].executable && !image.segments[0].writable);
        assert_eq!(image.segments[1].file_bytes, &[1, 2, 3]);
        assert_eq!(image.segments[2].memory_bytes, 0x2100);
        assert!(image.segments[2].writable && !image.segments[2].executable);
    }

    #[test]
    fn refuses_what_would_break_the_address_space() {
        let code = |virt: u64| (PF_X | 4, virt, vec![0x90; 16], 16);
        let cases: Vec<(Vec<u8>, ImageError)> = vec![
            (b"MZ".to_vec(), ImageError::NotElf64),
            (
                elf(IMAGE_BASE, &[(PF_X | PF_W | 4, IMAGE_BASE, vec![0; 16], 16)]),
                ImageError::WritableAndExecutable { virt: IMAGE_BASE },
            ),
            (elf(0x1000, &[code(0x1000)]), ImageError::OutsideWindow { virt: 0x1000, end: 0x1010 }),
            (
                elf(IMAGE_LIMIT, &[code(IMAGE_LIMIT)]),
                ImageError::OutsideWindow { virt: IMAGE_LIMIT, end: IMAGE_LIMIT + 16 },
            ),
            (elf(IMAGE_BASE + 8, &[code(IMAGE_BASE + 8)]), ImageError::Misaligned { virt: IMAGE_BASE + 8 }),
            (
                elf(IMAGE_BASE, &[code(IMAGE_BASE), (4, IMAGE_BASE, vec![], 8)]),
                ImageError::Overlap { virt: IMAGE_BASE },
            ),
            (elf(IMAGE_BASE + 0x5000, &[code(IMAGE_BASE)]), ImageError::EntryNotInCode(IMAGE_BASE + 0x5000)),
            (
                elf(IMAGE_BASE, &[(4, IMAGE_BASE, vec![0; 32], 16)]),
                ImageError::FileSizeOverMemorySize { virt: IMAGE_BASE },
            ),
            (elf(IMAGE_BASE, &[]), ImageError::NoSegments),
        ];
        for (file, expected) in cases {
            assert_eq!(parse(&file), Err(expected));
        }
        let full = sample();
        assert!(matches!(parse(&full[..full.len() - 1]), Err(ImageError::Truncated(_))));
        assert!(matches!(parse(&full[..100]), Err(ImageError::Truncated(_))));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), flip in 0usize..400) {
            let _ = parse(&bytes);
            let mut file = sample();
            if flip < file.len() {
                file[flip] ^= 0xff;
            }
            let _ = parse(&file);
        }
    }
}
