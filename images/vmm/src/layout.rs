//! Where things go in guest-physical memory, for both boot protocols.
//!
//! RAM is one block from 0, below the 3 GiB line so that it never meets
//! the IOAPIC and local APIC windows at 0xfec00000 and 0xfee00000.

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const PAGE_SIZE: u64 = 4 * KIB;

/// The flat boot GDT (null, null, code 0x10, data 0x18): selectors 0x10
/// and 0x18 are what the Linux boot protocol names __BOOT_CS/__BOOT_DS.
pub const BOOT_GDT: u64 = 0x500;
pub const BOOT_CODE_SELECTOR: u16 = 0x10;
pub const BOOT_DATA_SELECTOR: u16 = 0x18;
pub const BOOT_GDT_ENTRIES: [u64; 4] = [0, 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// Linux's boot_params ("zero page") and command line.
pub const LINUX_BOOT_PARAMS: u64 = 0x7000;
pub const LINUX_CMDLINE: u64 = 0x20000;
/// COMMAND_LINE_SIZE on x86, the terminating NUL included.
pub const LINUX_CMDLINE_MAX: usize = 2048;

/// The last KiB of base memory: one of the places Linux scans for the MP
/// floating pointer, and reserved in the memory map.
pub const MP_TABLE: u64 = 0x9fc00;
pub const BASE_MEMORY_END: u64 = 0xa0000;
/// Where kernels load (Linux's code32_start, multiboot's convention).
pub const HIGH_MEMORY: u64 = MIB;

pub const MIN_RAM_MIB: u64 = 4;
pub const MAX_RAM_MIB: u64 = 3072;

/// CR0.PE | CR0.ET: 32-bit protected mode, paging off, as both boot
/// protocols enter.
pub const BOOT_CR0: u64 = 0x11;
/// RFLAGS with only the reserved bit 1: interrupts off.
pub const BOOT_RFLAGS: u64 = 0x2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Ram,
    Reserved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub length: u64,
    pub kind: RegionKind,
}

/// The memory map both protocols hand the guest (e820 for Linux, the
/// multiboot `mmap` for the others): base memory up to the MP table, the
/// MP table's KiB, and RAM from 1 MiB to the end. 640 KiB to 1 MiB (VGA
/// and BIOS in a PC) is left out, so the guest uses none of it.
pub fn memory_map(ram_bytes: u64) -> [Region; 3] {
    [
        Region { start: 0, length: MP_TABLE, kind: RegionKind::Ram },
        Region { start: MP_TABLE, length: BASE_MEMORY_END - MP_TABLE, kind: RegionKind::Reserved },
        Region { start: HIGH_MEMORY, length: ram_bytes - HIGH_MEMORY, kind: RegionKind::Ram },
    ]
}

/// How the boot vCPU starts: flat 32-bit protected mode at `entry`, with
/// the registers each protocol defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootCpu {
    pub entry: u64,
    pub rax: u64,
    pub rbx: u64,
    pub rsi: u64,
}

pub fn align_up(value: u64, alignment: u64) -> Option<u64> {
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_map_covers_ram_except_the_mp_table_and_the_pc_hole() {
        let map = memory_map(64 * MIB);
        assert_eq!(map[0], Region { start: 0, length: 0x9fc00, kind: RegionKind::Ram });
        assert_eq!(map[1], Region { start: 0x9fc00, length: 0x400, kind: RegionKind::Reserved });
        assert_eq!(map[2], Region { start: MIB, length: 63 * MIB, kind: RegionKind::Ram });
        assert_eq!(map[2].start + map[2].length, 64 * MIB);
        assert!(map.windows(2).all(|pair| pair[0].start + pair[0].length <= pair[1].start), "sorted, no overlap");
    }

    #[test]
    fn the_boot_gdt_has_flat_4_gib_code_and_data_at_the_boot_selectors() {
        let code = BOOT_GDT_ENTRIES[usize::from(BOOT_CODE_SELECTOR / 8)];
        let data = BOOT_GDT_ENTRIES[usize::from(BOOT_DATA_SELECTOR / 8)];
        // Access byte: present, DPL 0, code execute/read or data read/write.
        assert_eq!((code >> 40) & 0xff, 0x9b);
        assert_eq!((data >> 40) & 0xff, 0x93);
        for descriptor in [code, data] {
            // Base 0, limit 0xfffff in 4 KiB units (G), 32-bit (D/B).
            assert_eq!(descriptor & 0xffff, 0xffff);
            assert_eq!((descriptor >> 48) & 0xf, 0xf);
            assert_eq!((descriptor >> 52) & 0xc, 0xc);
            assert_eq!((descriptor >> 16) & 0xff_ffff, 0);
            assert_eq!(descriptor >> 56, 0);
        }
    }

    #[test]
    fn align_up_rounds_to_the_next_multiple_and_refuses_overflow() {
        assert_eq!(align_up(0x1001, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(0x2000, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(u64::MAX - 1, PAGE_SIZE), None);
    }
}
