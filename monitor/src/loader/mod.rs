//! Loading guest kernels into guest memory.
//!
//! The monitor, not the shim, loads its guest's kernel: the kernel file, its
//! command line and its modules are user-supplied and the kernel's headers
//! are whatever its author (or an attacker) wrote, so all of that parsing
//! belongs in the deprivileged monitor, where a bug stays inside one tenant.
//!
//! Two boot protocols, both entered in 32-bit protected mode with paging off:
//!
//! - [`load_multiboot`]: Multiboot version 1 (ELF32, ELF64 or the a.out
//!   kludge), as kvm-unit-tests and many test kernels use;
//! - [`load_linux`]: a Linux bzImage through the 32-bit entry of the x86 boot
//!   protocol (2.10 or later).
//!
//! Both validate everything first and only then write guest memory, place
//! their data in the RAM that [`GuestMemoryMap`] describes, and return a
//! [`LoadedKernel`]: the [`InitialCpuState`] the shim turns into VMCS guest
//! state, plus a list of what went where (for the log, and for the tests).
//! Every failure is a [`LoadError`] naming the kernel and what was wrong.

pub mod acpi;
mod bytes;
mod cpu_state;
mod elf;
mod error;
mod linux;
mod memory_map;
mod multiboot;
mod placement;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod test_images;

use alloc::vec::Vec;
use core::fmt;

pub use cpu_state::{
    CpuMode, DescriptorTable, GeneralRegisters, InitialCpuState, BOOT_CODE_SELECTOR, BOOT_DATA_SELECTOR,
    FLAT_CODE_ACCESS_RIGHTS, FLAT_CODE_DESCRIPTOR, FLAT_DATA_ACCESS_RIGHTS, FLAT_DATA_DESCRIPTOR,
    RFLAGS_INTERRUPTS_OFF,
};
pub use error::{LoadError, LoadProblem, ProtectedArea};
pub use linux::{load_linux, LINUX_BOOT_PARAMS_ADDRESS, LINUX_CMDLINE_ADDRESS, LINUX_GDT_ADDRESS, LINUX_LOAD_ADDRESS};
pub use memory_map::{
    GuestMemoryMap, MemoryKind, MemoryRegion, RamMapping, BIOS_AREA_START, EBDA_END, EBDA_START,
    FIRST_LOADABLE_ADDRESS, FOUR_GIB, HIGH_MEMORY_START, MMIO_HOLE_START,
};
pub use multiboot::{load_multiboot, Module, MULTIBOOT_BOOTLOADER_MAGIC, MULTIBOOT_HEADER_MAGIC};

/// A kernel in guest memory, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedKernel {
    /// How the vCPU starts.
    pub cpu: InitialCpuState,
    /// Every range of guest memory the loader wrote or set aside, in the
    /// order it planned them; no two overlap.
    pub placements: Vec<Placement>,
    /// Requests in the kernel's headers that the loader saw but does not
    /// honor; the kernel boots without them, the shim should log them.
    pub notices: Vec<LoadNotice>,
}

/// One range of guest memory and what the loader put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub contents: Contents,
    pub start: u64,
    pub length: u64,
}

impl Placement {
    pub fn end(&self) -> u64 {
        // Cannot overflow: placements are checked against guest RAM.
        self.start.saturating_add(self.length)
    }
}

/// What a loader puts into guest memory; also names the culprit in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// An ELF program header's segment, by its index in the program header table.
    ElfSegment { index: usize },
    /// The text and data of a Multiboot a.out-kludge image, with its bss.
    AoutImage,
    /// A Multiboot module's bytes, by its index in the caller's list.
    Module { index: usize },
    /// A Multiboot module's string (its name and arguments).
    ModuleString { index: usize },
    /// The Multiboot module list (`mods_addr`).
    ModuleList,
    /// The Multiboot memory map (`mmap_addr`).
    MultibootMemoryMap,
    /// The `multiboot_info` structure itself.
    MultibootInfo,
    /// The boot loader's name (`boot_loader_name`).
    LoaderName,
    /// The kernel command line.
    CommandLine,
    /// The GDT holding the flat boot segments.
    Gdt,
    /// The Linux protected-mode kernel and the area it decompresses into
    /// (up to `init_size` past its extraction address).
    LinuxKernel,
    /// Linux's `boot_params` ("zero page").
    BootParams,
    /// The Linux initial ramdisk.
    Initrd,
}

impl fmt::Display for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ElfSegment { index } => write!(f, "ELF segment {index}"),
            Self::AoutImage => write!(f, "the a.out-kludge image"),
            Self::Module { index } => write!(f, "module {index}"),
            Self::ModuleString { index } => write!(f, "the string of module {index}"),
            Self::ModuleList => write!(f, "the Multiboot module list"),
            Self::MultibootMemoryMap => write!(f, "the Multiboot memory map"),
            Self::MultibootInfo => write!(f, "the Multiboot information structure"),
            Self::LoaderName => write!(f, "the boot loader name"),
            Self::CommandLine => write!(f, "the command line"),
            Self::Gdt => write!(f, "the boot GDT"),
            Self::LinuxKernel => write!(f, "the kernel with its decompression area (init_size)"),
            Self::BootParams => write!(f, "boot_params"),
            Self::Initrd => write!(f, "the initrd"),
        }
    }
}

/// A header request the loader does not honor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadNotice {
    /// Multiboot header flag 2: the kernel wants a video mode and the
    /// `vbe_*`/`framebuffer_*` information. The monitor has no display, so
    /// the information flags stay clear and the kernel sees no video.
    MultibootVideoModeIgnored { mode_type: u32, width: u32, height: u32, depth: u32 },
}

impl fmt::Display for LoadNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MultibootVideoModeIgnored { mode_type, width, height, depth } => write!(
                f,
                "the kernel asks for a video mode (type {mode_type}, {width}x{height}x{depth}); \
                 it gets no video information"
            ),
        }
    }
}
