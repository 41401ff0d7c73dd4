//! What the multiboot2 loader tells the shim: the memory map, the boot
//! modules (the boot configuration and the guests' kernels and initrds) and
//! the shim's command line, copied out of the loader's structure into plain
//! data so that nothing later depends on the loader's memory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use multiboot2::{BootInformation, MemoryAreaType};

use crate::memory::{PhysAddr, PhysRange, FRAME_SIZE, LOW_MEMORY_END};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: PhysRange,
    pub kind: RegionKind,
}

/// A file the loader placed in memory, e.g. from GRUB's
/// `module2 /boot/vmlinuz-l1 vmlinuz-l1 extra words`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootModule {
    /// The first word of the module's string (`vmlinuz-l1`): what the boot
    /// configuration's `kernel =` and `ramdisk =` refer to.
    pub name: String,
    /// The rest of the module's string.
    pub arguments: String,
    pub range: PhysRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub command_line: String,
    pub loader_name: Option<String>,
    pub memory_map: Vec<MemoryRegion>,
    pub modules: Vec<BootModule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootInfoError {
    NoMemoryMap,
    BadModule { index: usize, start: u32, end: u32 },
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemoryMap => write!(f, "the boot loader gave no memory map"),
            Self::BadModule { index, start, end } => {
                write!(f, "boot module {index} ends ({end:#x}) before it starts ({start:#x})")
            }
        }
    }
}

fn region_kind(kind: MemoryAreaType) -> RegionKind {
    match kind {
        MemoryAreaType::Available => RegionKind::Usable,
        MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
        MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
        MemoryAreaType::Defective => RegionKind::Defective,
        _ => RegionKind::Reserved,
    }
}

/// RAM the shim may use, straight from the loader's map. Allocation-free:
/// the heap is carved out of it.
pub fn usable_ram<'a>(info: &'a BootInformation<'a>) -> impl Iterator<Item = PhysRange> + 'a {
    info.memory_map_tag()
        .into_iter()
        .flat_map(|tag| tag.memory_areas().iter())
        .filter(|area| region_kind(area.typ()) == RegionKind::Usable)
        .map(|area| PhysRange::new(area.start_address(), area.start_address().saturating_add(area.size())))
}

/// Memory that is in use when the shim starts and must never be handed
/// out: the first MiB, the shim's image, the loader's structure and every
/// module. Allocation-free (the heap does not exist yet): fills `out` and
/// returns how many entries it used, or `None` if `out` is too small.
pub fn reserved_at_boot(
    info: &BootInformation,
    info_range: PhysRange,
    kernel_image: PhysRange,
    out: &mut [PhysRange],
) -> Option<usize> {
    let fixed = [PhysRange::new(0, LOW_MEMORY_END), kernel_image, info_range];
    let modules = info
        .module_tags()
        .map(|module| PhysRange::new(u64::from(module.start_address()), u64::from(module.end_address())));
    let mut count = 0;
    for range in fixed.into_iter().chain(modules) {
        *out.get_mut(count)? = range.grow_to(FRAME_SIZE);
        count += 1;
    }
    Some(count)
}

impl BootInfo {
    pub fn from_multiboot2(info: &BootInformation) -> Result<Self, BootInfoError> {
        let memory_map = info
            .memory_map_tag()
            .ok_or(BootInfoError::NoMemoryMap)?
            .memory_areas()
            .iter()
            .map(|area| MemoryRegion {
                range: PhysRange::new(area.start_address(), area.start_address().saturating_add(area.size())),
                kind: region_kind(area.typ()),
            })
            .collect();
        let mut modules = Vec::new();
        for (index, module) in info.module_tags().enumerate() {
            let (start, end) = (module.start_address(), module.end_address());
            if end < start {
                return Err(BootInfoError::BadModule { index, start, end });
            }
            let text = module.cmdline().unwrap_or("").trim();
            let (name, arguments) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            modules.push(BootModule {
                name: name.to_string(),
                arguments: arguments.trim().to_string(),
                range: PhysRange::new(u64::from(start), u64::from(end)),
            });
        }
        Ok(Self {
            command_line: info.command_line_tag().and_then(|tag| tag.cmdline().ok()).unwrap_or("").to_string(),
            loader_name: info.boot_loader_name_tag().and_then(|tag| tag.name().ok()).map(str::to_string),
            memory_map,
            modules,
        })
    }

    pub fn module(&self, name: &str) -> Option<&BootModule> {
        self.modules.iter().find(|module| module.name == name)
    }

    pub fn usable_bytes(&self) -> u64 {
        self.memory_map.iter().filter(|region| region.kind == RegionKind::Usable).map(|region| region.range.len()).sum()
    }

    /// The highest physical address of any region, i.e. how much the
    /// direct map must cover.
    pub fn highest_address(&self) -> PhysAddr {
        self.memory_map.iter().map(|region| region.range.end).max().unwrap_or(PhysAddr::new(0))
    }

    /// What the shim's direct map covers: every region of the map except
    /// defective RAM, in whole frames, sorted, with overlapping or adjacent
    /// regions merged (firmware maps are not always tidy, and a page must be
    /// mapped only once).
    pub fn direct_map_ranges(&self) -> Vec<PhysRange> {
        let mut ranges: Vec<PhysRange> = self
            .memory_map
            .iter()
            .filter(|region| region.kind != RegionKind::Defective)
            .map(|region| region.range.grow_to(FRAME_SIZE))
            .filter(|range| !range.is_empty())
            .collect();
        ranges.sort_by_key(|range| range.start);
        let mut merged: Vec<PhysRange> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiboot2::{
        BootInformationHeader, BootLoaderNameTag, Builder, CommandLineTag, MemoryArea, MemoryMapTag, ModuleTag,
    };

    fn with_boot_info<R>(build: Builder, check: impl FnOnce(&BootInformation) -> R) -> R {
        let structure = build.build();
        let pointer: *const BootInformationHeader = core::ptr::addr_of!(*structure).cast();
        // Safe because the builder produced a complete, 8-byte-aligned
        // structure that outlives `info`.
        let info = unsafe { BootInformation::load(pointer) }.expect("builder output is a valid structure");
        check(&info)
    }

    fn sample() -> Builder {
        Builder::new()
            .cmdline(CommandLineTag::new("log=debug exit=bochs"))
            .bootloader(BootLoaderNameTag::new("GRUB 2.06"))
            .mmap(MemoryMapTag::new(&[
                MemoryArea::new(0, 0x9fc00, MemoryAreaType::Available),
                MemoryArea::new(0xf0000, 0x10000, MemoryAreaType::Reserved),
                MemoryArea::new(0x10_0000, 0xff0_0000, MemoryAreaType::Available),
                MemoryArea::new(0xfff_0000, 0x1_0000, MemoryAreaType::AcpiAvailable),
            ]))
            .add_module(ModuleTag::new(0x80_0000, 0x80_0123, "lab.cfg"))
            .add_module(ModuleTag::new(0x90_0000, 0xa0_0000, "vmlinuz-l1  quiet words "))
    }

    #[test]
    fn copies_command_line_map_and_modules() {
        let boot = with_boot_info(sample(), BootInfo::from_multiboot2).unwrap();
        assert_eq!(boot.command_line, "log=debug exit=bochs");
        assert_eq!(boot.loader_name.as_deref(), Some("GRUB 2.06"));
        assert_eq!(boot.memory_map.len(), 4);
        assert_eq!(boot.memory_map[1].kind, RegionKind::Reserved);
        assert_eq!(boot.memory_map[3].kind, RegionKind::AcpiReclaimable);
        assert_eq!(boot.usable_bytes(), 0x9fc00 + 0xff0_0000);
        assert_eq!(boot.highest_address(), PhysAddr::new(0x1000_0000));
        let kernel = boot.module("vmlinuz-l1").unwrap();
        assert_eq!(kernel.arguments, "quiet words");
        assert_eq!(kernel.range, PhysRange::new(0x90_0000, 0xa0_0000));
        assert_eq!(boot.module("lab.cfg").unwrap().range.len(), 0x123);
        assert!(boot.module("missing").is_none());
    }

    #[test]
    fn reserved_ranges_cover_low_memory_image_info_and_modules() {
        let image = PhysRange::new(0x20_0000, 0x23_4567);
        let info_range = PhysRange::new(0x10_1000, 0x10_1800);
        let mut out = [PhysRange::default(); 8];
        let count = with_boot_info(sample(), |info| reserved_at_boot(info, info_range, image, &mut out)).unwrap();
        assert_eq!(
            &out[..count],
            &[
                PhysRange::new(0, 0x10_0000),
                PhysRange::new(0x20_0000, 0x23_5000),
                PhysRange::new(0x10_1000, 0x10_2000),
                PhysRange::new(0x80_0000, 0x80_1000),
                PhysRange::new(0x90_0000, 0xa0_0000),
            ]
        );
        let mut too_small = [PhysRange::default(); 4];
        assert_eq!(with_boot_info(sample(), |info| reserved_at_boot(info, info_range, image, &mut too_small)), None);
    }

    #[test]
    fn usable_ram_lists_only_available_areas() {
        let ranges: Vec<_> = with_boot_info(sample(), |info| usable_ram(info).collect());
        assert_eq!(ranges, [PhysRange::new(0, 0x9fc00), PhysRange::new(0x10_0000, 0x1000_0000)]);
    }

    #[test]
    fn direct_map_ranges_are_sorted_merged_and_skip_defective_ram() {
        let region = |start, end, kind| MemoryRegion { range: PhysRange::new(start, end), kind };
        let boot = BootInfo {
            command_line: String::new(),
            loader_name: None,
            memory_map: alloc::vec![
                region(0x10_0000, 0x800_0000, RegionKind::Usable),
                region(0, 0x9fc00, RegionKind::Usable),
                region(0x9fc00, 0xa0000, RegionKind::Reserved),
                region(0x7ff_f800, 0x801_0000, RegionKind::AcpiReclaimable),
                region(0x900_0000, 0xa00_0000, RegionKind::Defective),
                region(0xfffc_0000, 0x1_0000_0000, RegionKind::Reserved),
            ],
            modules: Vec::new(),
        };
        assert_eq!(
            boot.direct_map_ranges(),
            [
                PhysRange::new(0, 0xa0000),
                PhysRange::new(0x10_0000, 0x801_0000),
                PhysRange::new(0xfffc_0000, 0x1_0000_0000),
            ]
        );
    }

    #[test]
    fn missing_memory_map_is_an_error() {
        let result = with_boot_info(Builder::new().cmdline(CommandLineTag::new("")), BootInfo::from_multiboot2);
        assert_eq!(result, Err(BootInfoError::NoMemoryMap));
        assert!(BootInfoError::NoMemoryMap.to_string().contains("memory map"));
    }
}
