//! Why a kernel could not be loaded, in words the user can act on.

use alloc::string::String;
use core::fmt;

use super::memory_map::{EBDA_START, FIRST_LOADABLE_ADDRESS, HIGH_MEMORY_START};
use super::Contents;
use crate::guest_memory::OutOfRange;

/// A kernel that could not be loaded: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The kernel's name as the user gave it (its boot module's name).
    pub kernel: String,
    pub problem: LoadProblem,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel '{}': {}", self.kernel, self.problem)
    }
}

/// Guest memory the loaders never write, although the guest has RAM there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectedArea {
    /// `[0, 0x1000)`: the real-mode interrupt table and BIOS data area; a
    /// kernel loaded there is almost certainly a wrong link address.
    FirstPage,
    /// `[0x9fc00, 0x100000)`: EBDA, VGA window, option and BIOS ROMs, where
    /// the firmware tables will go.
    LegacyBiosArea,
}

impl fmt::Display for ProtectedArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FirstPage => {
                write!(f, "the first page [0x0, {FIRST_LOADABLE_ADDRESS:#x}), which the loader keeps free")
            }
            Self::LegacyBiosArea => {
                write!(f, "the legacy BIOS area [{EBDA_START:#x}, {HIGH_MEMORY_START:#x}) (EBDA, VGA, ROMs)")
            }
        }
    }
}

/// Everything that can be wrong with a kernel, its headers, or where its
/// pieces would have to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProblem {
    // Guest memory.
    /// The guest has less RAM than the PC memory map's first MiB.
    GuestRamTooSmall {
        ram_bytes: u64,
    },
    /// A piece would reach past the RAM the loaders may use: all of RAM, or
    /// for a guest of more than 3 GiB the part below the MMIO hole.
    OutsideRam {
        what: Contents,
        start: u64,
        length: u64,
        usable_end: u64,
        ram_bytes: u64,
    },
    /// A piece would cover memory the loader keeps free.
    InProtectedArea {
        what: Contents,
        start: u64,
        length: u64,
        area: ProtectedArea,
    },
    /// Two pieces of the kernel would land on the same bytes.
    Overlap {
        first: Contents,
        first_start: u64,
        first_length: u64,
        second: Contents,
        second_start: u64,
        second_length: u64,
    },
    /// No free RAM left above `from` for a piece the loader places itself.
    NoRoom {
        what: Contents,
        length: u64,
        from: u64,
        usable_end: u64,
    },
    /// Guest memory refused a write the loader had checked; a loader bug.
    WriteRefused {
        what: Contents,
        error: OutOfRange,
    },
    /// A string for the guest holds a NUL byte, which would cut it short.
    NulInString {
        what: Contents,
        offset: usize,
    },

    // Multiboot header.
    /// No magic with a valid checksum in the first 8192 bytes.
    MultibootHeaderMissing {
        searched: usize,
    },
    /// A magic whose checksum does not add up (and no valid header after it).
    MultibootBadChecksum {
        offset: usize,
        flags: u32,
        checksum: u32,
    },
    /// The header's flags promise fields beyond the file or the first 8192 bytes.
    MultibootHeaderTruncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// Required-feature bits (0..=15) this loader does not know.
    MultibootUnsupportedRequirements {
        flags: u32,
        unknown: u32,
    },

    // ELF (Multiboot without the a.out kludge).
    NotElf {
        found: [u8; 4],
    },
    ElfTruncated {
        what: &'static str,
        index: Option<usize>,
        offset: u64,
        length: u64,
        file_length: usize,
    },
    ElfBadClass {
        class: u8,
    },
    ElfNotLittleEndian {
        encoding: u8,
    },
    ElfBadVersion {
        version: u32,
    },
    ElfNotExecutable {
        elf_type: u16,
    },
    ElfBadMachine {
        machine: u16,
    },
    ElfBadProgramHeaderSize {
        size: u16,
        expected: u16,
    },
    ElfNoLoadableSegments,
    ElfSegmentBeyondFile {
        index: usize,
        offset: u64,
        file_size: u64,
        file_length: usize,
    },
    ElfSegmentFileSizeExceedsMemorySize {
        index: usize,
        file_size: u64,
        memory_size: u64,
    },
    /// The entry point, after translating a virtual `e_entry`, is not below 4 GiB.
    EntryAbove4G {
        entry: u64,
    },
    /// The entry point is not in anything the loader loads.
    EntryOutsideImage {
        entry: u64,
    },

    // Multiboot a.out kludge (header flag 16).
    AoutLoadAfterHeader {
        load_addr: u32,
        header_addr: u32,
    },
    AoutLoadBeforeFileStart {
        header_offset: usize,
        header_addr: u32,
        load_addr: u32,
    },
    AoutLoadEndBeforeLoad {
        load_addr: u32,
        load_end_addr: u32,
    },
    AoutBssEndBeforeLoadEnd {
        load_end: u64,
        bss_end_addr: u32,
    },
    AoutImageBeyondFile {
        file_offset: u64,
        length: u64,
        file_length: usize,
    },

    // Linux boot protocol.
    LinuxTooShort {
        file_length: usize,
        needed: usize,
    },
    LinuxNoHeader {
        found: [u8; 4],
    },
    LinuxProtocolTooOld {
        version: u16,
    },
    LinuxHeaderTooShort {
        header_end: usize,
        needed: usize,
    },
    LinuxHeaderTooLong {
        header_end: usize,
        limit: usize,
    },
    LinuxNotBzImage {
        loadflags: u8,
    },
    LinuxNoProtectedModeKernel {
        setup_bytes: usize,
        file_length: usize,
    },
    LinuxBadKernelAlignment {
        kernel_alignment: u32,
    },
    LinuxFixedAddress {
        code32_start: u32,
    },
    CommandLineTooLong {
        length: usize,
        limit: u64,
        limited_by: &'static str,
    },
    InitrdDoesNotFit {
        length: u64,
        lowest: u64,
        highest: u64,
    },
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GuestRamTooSmall { ram_bytes } => {
                write!(f, "the guest has {} of RAM; a PC guest needs at least 1 MiB", ByteSize(*ram_bytes))
            }
            Self::OutsideRam { what, start, length, usable_end, ram_bytes } => {
                write!(f, "{what} at {start:#x}+{length:#x} lies outside the guest's ")?;
                if usable_end == ram_bytes {
                    write!(f, "{} of RAM", ByteSize(*ram_bytes))
                } else {
                    write!(f, "RAM below the MMIO hole (which starts at {usable_end:#x})")
                }
            }
            Self::InProtectedArea { what, start, length, area } => {
                write!(f, "{what} at {start:#x}+{length:#x} overlaps {area}")
            }
            Self::Overlap { first, first_start, first_length, second, second_start, second_length } => write!(
                f,
                "{first} at {first_start:#x}+{first_length:#x} and {second} at \
                 {second_start:#x}+{second_length:#x} overlap"
            ),
            Self::NoRoom { what, length, from, usable_end } => write!(
                f,
                "no room for {what} ({length:#x} bytes) between {from:#x} and the end of usable RAM at {usable_end:#x}"
            ),
            Self::WriteRefused { what, error } => write!(f, "writing {what} failed: {error}"),
            Self::NulInString { what, offset } => write!(f, "{what} holds a NUL byte at offset {offset}"),

            Self::MultibootHeaderMissing { searched } => write!(
                f,
                "no Multiboot header (magic 0x1badb002 with a valid checksum, 4-byte aligned) in its first \
                 {searched} bytes"
            ),
            Self::MultibootBadChecksum { offset, flags, checksum } => write!(
                f,
                "the Multiboot header at offset {offset:#x} has a bad checksum: magic + flags {flags:#x} + \
                 checksum {checksum:#x} is not 0"
            ),
            Self::MultibootHeaderTruncated { offset, needed, available } => write!(
                f,
                "the Multiboot header at offset {offset:#x} needs {needed} bytes for the fields its flags \
                 announce, but only {available} are in the file's first 8192 bytes"
            ),
            Self::MultibootUnsupportedRequirements { flags, unknown } => write!(
                f,
                "the Multiboot header's flags {flags:#x} require features this loader does not provide \
                 (bits {unknown:#x})"
            ),

            Self::NotElf { found } => write!(
                f,
                "its Multiboot header has no a.out kludge (flag 16), so it must be an ELF file, but it starts \
                 with {found:02x?} instead of 7f 45 4c 46"
            ),
            Self::ElfTruncated { what, index, offset, length, file_length } => {
                write!(f, "{what}")?;
                if let Some(index) = index {
                    write!(f, " {index}")?;
                }
                write!(
                    f,
                    " at offset {offset:#x} ({length} bytes) extends past the end of the file ({file_length} bytes)"
                )
            }
            Self::ElfBadClass { class } => write!(f, "ELF class {class} is neither 1 (ELF32) nor 2 (ELF64)"),
            Self::ElfNotLittleEndian { encoding } => {
                write!(f, "ELF data encoding {encoding} is not 1 (little-endian, as x86 needs)")
            }
            Self::ElfBadVersion { version } => write!(f, "ELF version {version} is not 1"),
            Self::ElfNotExecutable { elf_type } => {
                write!(f, "ELF type {elf_type} is neither 2 (executable) nor 3 (position-independent executable)")
            }
            Self::ElfBadMachine { machine } => {
                write!(f, "ELF machine {machine} is neither 3 (i386) nor 62 (x86-64)")
            }
            Self::ElfBadProgramHeaderSize { size, expected } => {
                write!(f, "ELF program headers of {size} bytes are smaller than the {expected} this class needs")
            }
            Self::ElfNoLoadableSegments => write!(f, "the ELF file has no loadable (PT_LOAD) segment"),
            Self::ElfSegmentBeyondFile { index, offset, file_size, file_length } => write!(
                f,
                "ELF segment {index}'s data at offset {offset:#x}+{file_size:#x} extends past the end of the file \
                 ({file_length} bytes)"
            ),
            Self::ElfSegmentFileSizeExceedsMemorySize { index, file_size, memory_size } => write!(
                f,
                "ELF segment {index} has more bytes in the file ({file_size:#x}) than in memory ({memory_size:#x})"
            ),
            Self::EntryAbove4G { entry } => {
                write!(f, "the entry point {entry:#x} is not below 4 GiB, where a 32-bit kernel starts")
            }
            Self::EntryOutsideImage { entry } => {
                write!(f, "the entry point {entry:#x} is not inside anything the loader loads")
            }

            Self::AoutLoadAfterHeader { load_addr, header_addr } => {
                write!(f, "the a.out kludge's load_addr {load_addr:#x} is above its header_addr {header_addr:#x}")
            }
            Self::AoutLoadBeforeFileStart { header_offset, header_addr, load_addr } => write!(
                f,
                "the a.out kludge's load_addr {load_addr:#x} is {:#x} bytes before header_addr {header_addr:#x}, \
                 but the header is only {header_offset:#x} bytes into the file",
                header_addr.wrapping_sub(*load_addr)
            ),
            Self::AoutLoadEndBeforeLoad { load_addr, load_end_addr } => {
                write!(f, "the a.out kludge's load_end_addr {load_end_addr:#x} is below its load_addr {load_addr:#x}")
            }
            Self::AoutBssEndBeforeLoadEnd { load_end, bss_end_addr } => write!(
                f,
                "the a.out kludge's bss_end_addr {bss_end_addr:#x} is below the end of the loaded image {load_end:#x}"
            ),
            Self::AoutImageBeyondFile { file_offset, length, file_length } => write!(
                f,
                "the a.out kludge loads {length:#x} bytes from offset {file_offset:#x}, past the end of the file \
                 ({file_length} bytes)"
            ),

            Self::LinuxTooShort { file_length, needed } => {
                write!(f, "at {file_length} bytes it is too short for a Linux setup header, which needs {needed}")
            }
            Self::LinuxNoHeader { found } => write!(
                f,
                "not a Linux kernel for the x86 boot protocol: no \"HdrS\" at offset 0x202 (found {found:02x?})"
            ),
            Self::LinuxProtocolTooOld { version } => write!(
                f,
                "boot protocol {}.{:02} is too old; the loader needs 2.10 or later (Linux 2.6.31+) for init_size \
                 and pref_address",
                version >> 8,
                version & 0xff
            ),
            Self::LinuxHeaderTooShort { header_end, needed } => write!(
                f,
                "the setup header ends at {header_end:#x} (0x202 + the byte at 0x201), before the end of the \
                 fields its protocol version has ({needed:#x})"
            ),
            Self::LinuxHeaderTooLong { header_end, limit } => write!(
                f,
                "the setup header claims to end at {header_end:#x}, past the end of boot_params' setup_header \
                 ({limit:#x})"
            ),
            Self::LinuxNotBzImage { loadflags } => write!(
                f,
                "loadflags {loadflags:#x} lack LOADED_HIGH: a zImage, which runs below 1 MiB, is not supported"
            ),
            Self::LinuxNoProtectedModeKernel { setup_bytes, file_length } => write!(
                f,
                "the real-mode setup takes {setup_bytes:#x} bytes (setup_sects), leaving nothing of the \
                 {file_length}-byte file for the protected-mode kernel"
            ),
            Self::LinuxBadKernelAlignment { kernel_alignment } => {
                write!(f, "the relocatable kernel's kernel_alignment {kernel_alignment:#x} is not a power of two")
            }
            Self::LinuxFixedAddress { code32_start } => write!(
                f,
                "the kernel is not relocatable and wants to be loaded at {code32_start:#x} (code32_start); the \
                 loader loads bzImages at 0x100000"
            ),
            Self::CommandLineTooLong { length, limit, limited_by } => {
                write!(f, "the command line is {length} bytes long; at most {limit} fit ({limited_by})")
            }
            Self::InitrdDoesNotFit { length, lowest, highest } => write!(
                f,
                "the initrd ({length:#x} bytes) does not fit between the kernel's end at {lowest:#x} and \
                 {highest:#x} (the lower of initrd_addr_max + 1 and the end of usable RAM)"
            ),
        }
    }
}

/// A size in the largest binary unit that divides it exactly.
pub(crate) struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (unit, name) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(unit) {
                return write!(f, "{} {name}", self.0 / unit);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(3 << 30).to_string(), "3 GiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536 KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
        assert_eq!(ByteSize(0).to_string(), "0 bytes");
    }

    #[test]
    fn errors_name_the_kernel_and_the_piece() {
        let error = LoadError {
            kernel: "vmlinuz".to_string(),
            problem: LoadProblem::OutsideRam {
                what: Contents::ElfSegment { index: 2 },
                start: 0x1000_0000,
                length: 0x2000,
                usable_end: 64 << 20,
                ram_bytes: 64 << 20,
            },
        };
        assert_eq!(
            error.to_string(),
            "kernel 'vmlinuz': ELF segment 2 at 0x10000000+0x2000 lies outside the guest's 64 MiB of RAM"
        );
        let above_hole = LoadProblem::OutsideRam {
            what: Contents::Initrd,
            start: 0xbfff_f000,
            length: 0x2000,
            usable_end: 0xc000_0000,
            ram_bytes: 4 << 30,
        };
        assert_eq!(
            above_hole.to_string(),
            "the initrd at 0xbffff000+0x2000 lies outside the guest's RAM below the MMIO hole (which starts at \
             0xc0000000)"
        );
    }
}
