//! What the shim tells a monitor about its guest before the first event.
//!
//! The shim writes it read-only at
//! [`BOOT_INFO_BASE`](crate::address_space::BOOT_INFO_BASE). It carries what
//! a monitor in ring 3 cannot find out for itself (the TSC rate the shim
//! measured, what VMX lets the guest use) and where its inputs are mapped:
//! its guest's configuration, as the `[guest]` section the shim accepted,
//! and its boot modules. The monitor parses all of them itself.
//!
//! # Layout (version 1, little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"MTBI"` |
//! | 4 | 2 | version ([`BOOT_INFO_VERSION`]) |
//! | 6 | 2 | number of modules |
//! | 8 | 8 | guest RAM bytes |
//! | 16 | 8 | heap bytes |
//! | 24 | 8 | the guest's RTC time at start, Unix seconds |
//! | 32 | 4 | the guest's TSC rate in kHz |
//! | 36 | 4 | flags ([`flags`]) |
//! | 40 | 4 | test hook ([`TestHook`]) |
//! | 44 | 4 | configuration text length |
//! | 48 | .. | configuration text (UTF-8) |
//! | .. | .. | per module: name (u16 length, UTF-8), address (u64), length (u64) |
//!
//! Decoding checks every length and that each module lies inside the
//! modules window, so a monitor never trusts an address it was not given.

use alloc::string::String;
use alloc::vec::Vec;

use crate::address_space::{BOOT_INFO_MAX_BYTES, GUEST_RAM_LIMIT, MODULES_BASE, USER_LIMIT};
use crate::codec::{Reader, Writer};
use crate::DecodeError;

pub const BOOT_INFO_MAGIC: [u8; 4] = *b"MTBI";
pub const BOOT_INFO_VERSION: u16 = 2;
/// Most VMX capability MSRs boot information carries.
pub const MAX_VMX_MSRS: usize = 32;
pub const MAX_MODULES: usize = 16;
pub const MAX_MODULE_NAME: usize = 255;

/// Bits of the flags word.
pub mod flags {
    /// EPT maps 1 GiB pages.
    pub const EPT_1GB_PAGES: u32 = 1 << 0;
    /// The guest may use RDTSCP/RDPID.
    pub const RDTSCP: u32 = 1 << 1;
    /// The guest may use INVPCID.
    pub const INVPCID: u32 = 1 << 2;
    /// Unknown MSRs read 0 and ignore writes (KVM's `ignore_msrs`) instead
    /// of raising #GP.
    pub const IGNORE_UNKNOWN_MSRS: u32 = 1 << 3;
    pub const ALL: u32 = EPT_1GB_PAGES | RDTSCP | INVPCID | IGNORE_UNKNOWN_MSRS;
}

/// Faults a monitor provokes on purpose, so that tests can prove the shim
/// contains them. Never set outside tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TestHook {
    None = 0,
    /// Read an unmapped address while handling the first VM exit.
    PageFaultOnExit = 1,
    /// Spin forever while handling the first VM exit.
    HangOnExit = 2,
    /// Panic while handling the first VM exit.
    PanicOnExit = 3,
    /// Answer the first VM exit by entering L2 and mapping a page beyond
    /// the guest's RAM into EPT02 (a monitor reaching for foreign frames).
    MapForeignOnExit = 4,
    /// Answer the first VM exit by entering L2 with posted interrupts in
    /// vmcs02 (a control that would make the CPU use an address).
    ForbiddenControlOnExit = 5,
}

impl TestHook {
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::None,
            1 => Self::PageFaultOnExit,
            2 => Self::HangOnExit,
            3 => Self::PanicOnExit,
            4 => Self::MapForeignOnExit,
            5 => Self::ForbiddenControlOnExit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PageFaultOnExit => "page-fault",
            Self::HangOnExit => "hang",
            Self::PanicOnExit => "panic",
            Self::MapForeignOnExit => "map-foreign",
            Self::ForbiddenControlOnExit => "forbidden-control",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::PageFaultOnExit,
            Self::HangOnExit,
            Self::PanicOnExit,
            Self::MapForeignOnExit,
            Self::ForbiddenControlOnExit,
        ]
        .into_iter()
        .find(|hook| hook.name() == name)
    }
}

/// A boot module as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    /// Its address in the monitor's address space.
    pub address: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub ram_bytes: u64,
    pub heap_bytes: u64,
    pub wall_clock_unix_secs: u64,
    pub tsc_khz: u32,
    pub flags: u32,
    pub test_hook: TestHook,
    /// The guest's `[guest]` section, as the shim accepted it.
    pub config_text: String,
    pub modules: Vec<ModuleInfo>,
    /// The host's VMX capability MSRs (number, value), from which the
    /// monitor derives what it offers a guest with `nestedhvm=1`; empty
    /// for a guest without it.
    pub vmx_msrs: Vec<(u32, u64)>,
    /// The host's physical-address width (CPUID 0x80000008:EAX[7:0]).
    pub physical_address_width: u8,
}

/// Boot information that cannot be written within its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootInfoTooLarge {
    Modules(usize),
    ModuleName(usize),
    VmxMsrs(usize),
    Total(usize),
}

impl core::fmt::Display for BootInfoTooLarge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Modules(count) => write!(f, "{count} modules exceed the limit of {MAX_MODULES}"),
            Self::ModuleName(length) => write!(f, "a module name of {length} bytes exceeds {MAX_MODULE_NAME}"),
            Self::VmxMsrs(count) => write!(f, "{count} VMX capability MSRs exceed the limit of {MAX_VMX_MSRS}"),
            Self::Total(length) => write!(f, "{length} bytes of boot information exceed {BOOT_INFO_MAX_BYTES}"),
        }
    }
}

impl BootInfo {
    pub fn encode(&self) -> Result<Vec<u8>, BootInfoTooLarge> {
        if self.modules.len() > MAX_MODULES {
            return Err(BootInfoTooLarge::Modules(self.modules.len()));
        }
        let mut bytes = Vec::with_capacity(256 + self.config_text.len());
        bytes.extend_from_slice(&BOOT_INFO_MAGIC);
        let mut writer = Writer::new(&mut bytes);
        writer.u16(BOOT_INFO_VERSION);
        writer.u16(self.modules.len() as u16);
        writer.u64(self.ram_bytes);
        writer.u64(self.heap_bytes);
        writer.u64(self.wall_clock_unix_secs);
        writer.u32(self.tsc_khz);
        writer.u32(self.flags);
        writer.u32(self.test_hook as u32);
        writer.u32(self.config_text.len() as u32);
        writer.raw(self.config_text.as_bytes());
        for module in &self.modules {
            if module.name.len() > MAX_MODULE_NAME {
                return Err(BootInfoTooLarge::ModuleName(module.name.len()));
            }
            writer.bytes(module.name.as_bytes());
            writer.u64(module.address);
            writer.u64(module.length);
        }
        if self.vmx_msrs.len() > MAX_VMX_MSRS {
            return Err(BootInfoTooLarge::VmxMsrs(self.vmx_msrs.len()));
        }
        writer.u8(self.physical_address_width);
        writer.u16(self.vmx_msrs.len() as u16);
        for (number, value) in &self.vmx_msrs {
            writer.u32(*number);
            writer.u64(*value);
        }
        if bytes.len() > BOOT_INFO_MAX_BYTES {
            return Err(BootInfoTooLarge::Total(bytes.len()));
        }
        Ok(bytes)
    }

    /// Reads boot information; `bytes` may run on past its end (the rest of
    /// its pages).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let magic = [reader.u8()?, reader.u8()?, reader.u8()?, reader.u8()?];
        if magic != BOOT_INFO_MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = reader.u16()?;
        if version != BOOT_INFO_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let module_count = usize::from(reader.u16()?);
        if module_count > MAX_MODULES {
            return Err(DecodeError::TooMany { what: "modules", count: module_count, limit: MAX_MODULES });
        }
        let ram_bytes = reader.u64()?;
        if ram_bytes == 0 || ram_bytes > GUEST_RAM_LIMIT {
            return Err(DecodeError::Invalid { what: "guest RAM size", value: ram_bytes });
        }
        let heap_bytes = reader.u64()?;
        let wall_clock_unix_secs = reader.u64()?;
        let tsc_khz = reader.u32()?;
        let flags = reader.u32()?;
        if flags & !flags::ALL != 0 {
            return Err(DecodeError::Invalid { what: "boot flags", value: u64::from(flags) });
        }
        let hook = reader.u32()?;
        let test_hook =
            TestHook::from_u32(hook).ok_or(DecodeError::Invalid { what: "test hook", value: hook.into() })?;
        let config_length = reader.u32()? as usize;
        if config_length > BOOT_INFO_MAX_BYTES {
            return Err(DecodeError::TooMany {
                what: "configuration bytes",
                count: config_length,
                limit: BOOT_INFO_MAX_BYTES,
            });
        }
        let config_text = String::from_utf8(reader.raw(config_length)?.to_vec())
            .map_err(|_| DecodeError::NotUtf8 { what: "configuration text" })?;
        let mut modules = Vec::with_capacity(module_count);
        for _ in 0..module_count {
            let name = reader.text("module name", MAX_MODULE_NAME)?;
            let address = reader.u64()?;
            let length = reader.u64()?;
            let inside = address >= MODULES_BASE && address.checked_add(length).is_some_and(|end| end <= USER_LIMIT);
            if !inside {
                return Err(DecodeError::Invalid { what: "module address", value: address });
            }
            modules.push(ModuleInfo { name, address, length });
        }
        let physical_address_width = reader.u8()?;
        if !(32..=52).contains(&physical_address_width) {
            return Err(DecodeError::Invalid { what: "physical-address width", value: physical_address_width.into() });
        }
        let msr_count = usize::from(reader.u16()?);
        if msr_count > MAX_VMX_MSRS {
            return Err(DecodeError::TooMany { what: "VMX capability MSRs", count: msr_count, limit: MAX_VMX_MSRS });
        }
        let mut vmx_msrs = Vec::with_capacity(msr_count);
        for _ in 0..msr_count {
            vmx_msrs.push((reader.u32()?, reader.u64()?));
        }
        Ok(Self {
            ram_bytes,
            heap_bytes,
            wall_clock_unix_secs,
            tsc_khz,
            flags,
            test_hook,
            config_text,
            modules,
            vmx_msrs,
            physical_address_width,
        })
    }

    pub fn module(&self, name: &str) -> Option<&ModuleInfo> {
        self.modules.iter().find(|module| module.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BootInfo {
        BootInfo {
            ram_bytes: 16 << 20,
            heap_bytes: 4 << 20,
            wall_clock_unix_secs: 1_767_225_600,
            tsc_khz: 50_005,
            flags: flags::RDTSCP | flags::INVPCID,
            test_hook: TestHook::None,
            config_text: "[guest]\nname = \"a\"\n".into(),
            modules: alloc::vec![
                ModuleInfo { name: "l1-test".into(), address: MODULES_BASE, length: 12_345 },
                ModuleInfo { name: "initrd".into(), address: MODULES_BASE + 0x4000, length: 1 },
            ],
            vmx_msrs: alloc::vec![(0x480, 0x00da_0400_0000_0001), (0x48c, 0xf0106334141)],
            physical_address_width: 39,
        }
    }

    #[test]
    fn round_trips_and_starts_with_the_documented_header() {
        let info = sample();
        let bytes = info.encode().unwrap();
        assert_eq!(&bytes[0..4], b"MTBI");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), BOOT_INFO_VERSION);
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 2);
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 16 << 20);
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 50_005);
        assert_eq!(u32::from_le_bytes(bytes[44..48].try_into().unwrap()) as usize, info.config_text.len());
        assert_eq!(&bytes[48..48 + info.config_text.len()], info.config_text.as_bytes());
        // The rest of the page after the information is ignored.
        let mut page = bytes.clone();
        page.resize(4096, 0xcc);
        assert_eq!(BootInfo::decode(&page).unwrap(), info);
        assert_eq!(info.module("initrd").unwrap().length, 1);
        assert!(info.module("nope").is_none());
    }

    #[test]
    fn rejects_what_it_cannot_trust() {
        let good = sample().encode().unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(BootInfo::decode(&bad_magic), Err(DecodeError::BadMagic(_))));
        let mut bad_version = good.clone();
        bad_version[4] = 9;
        assert_eq!(BootInfo::decode(&bad_version), Err(DecodeError::UnsupportedVersion(9)));
        let mut bad_flags = good.clone();
        bad_flags[36] = 0x80;
        assert!(matches!(BootInfo::decode(&bad_flags), Err(DecodeError::Invalid { what: "boot flags", .. })));
        let mut bad_hook = good.clone();
        bad_hook[40] = 7;
        assert!(matches!(BootInfo::decode(&bad_hook), Err(DecodeError::Invalid { what: "test hook", .. })));
        let mut zero_ram = good.clone();
        zero_ram[8..16].fill(0);
        assert!(matches!(BootInfo::decode(&zero_ram), Err(DecodeError::Invalid { what: "guest RAM size", .. })));
        assert!(matches!(BootInfo::decode(&good[..good.len() - 1]), Err(DecodeError::Truncated { .. })));
        let mut narrow = sample();
        narrow.physical_address_width = 12;
        let bytes = narrow.encode().unwrap();
        assert!(matches!(
            BootInfo::decode(&bytes),
            Err(DecodeError::Invalid { what: "physical-address width", value: 12 })
        ));
        let mut many = sample();
        many.vmx_msrs = alloc::vec![(0x480, 0); MAX_VMX_MSRS + 1];
        assert_eq!(many.encode(), Err(BootInfoTooLarge::VmxMsrs(MAX_VMX_MSRS + 1)));

        let mut low_module = sample();
        low_module.modules[0].address = 0x1000;
        let bytes = low_module.encode().unwrap();
        assert!(matches!(BootInfo::decode(&bytes), Err(DecodeError::Invalid { what: "module address", .. })));
        let mut wrapping_module = sample();
        wrapping_module.modules[0].length = u64::MAX;
        let bytes = wrapping_module.encode().unwrap();
        assert!(matches!(BootInfo::decode(&bytes), Err(DecodeError::Invalid { what: "module address", .. })));
    }

    #[test]
    fn refuses_to_encode_past_its_limits() {
        let mut too_long = sample();
        too_long.config_text = "x".repeat(BOOT_INFO_MAX_BYTES);
        assert!(matches!(too_long.encode(), Err(BootInfoTooLarge::Total(_))));
        let mut too_many = sample();
        too_many.modules = alloc::vec![too_many.modules[0].clone(); MAX_MODULES + 1];
        assert_eq!(too_many.encode(), Err(BootInfoTooLarge::Modules(MAX_MODULES + 1)));
    }

    #[test]
    fn test_hooks_have_names_that_round_trip() {
        for hook in [TestHook::PageFaultOnExit, TestHook::HangOnExit, TestHook::PanicOnExit] {
            assert_eq!(TestHook::from_name(hook.name()), Some(hook));
            assert_eq!(TestHook::from_u32(hook as u32), Some(hook));
        }
        assert_eq!(TestHook::from_name("none"), None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BootInfo::decode(&bytes);
        }

        #[test]
        fn mutated_boot_info_never_panics(index in 0usize..120, value in any::<u8>()) {
            let mut bytes = sample().encode().unwrap();
            if index < bytes.len() {
                bytes[index] = value;
            }
            let _ = BootInfo::decode(&bytes);
        }
    }
}
