//! Minimal ACPI tables, so that a guest finds its local APICs, its IOAPIC
//! and a way to power off without probing for them (ACPI 6.5 chapter 5).
//!
//! The tables sit in the reserved BIOS area below 1 MiB, where a PC's
//! firmware leaves them and where an OS scans for the RSDP on 16-byte
//! boundaries (ACPI 5.2.5.1: 0xE0000-0xFFFFF):
//!
//! ```text
//! RSDP (v2) -> RSDT (32-bit pointers) -> FADT -> FACS, DSDT
//!           -> XSDT (64-bit pointers) -> MADT
//! ```
//!
//! - The MADT lists one local APIC per vCPU (APIC ID = vCPU index), the
//!   IOAPIC at 0xFEC00000 with GSIs 0-23, the override that routes ISA
//!   IRQ0 (the PIT) to GSI 2 and the SCI's IRQ 9 as level/active-high, and
//!   LINT1 as every processor's NMI input. Its PCAT_COMPAT flag says the
//!   8259s are there too.
//! - The FADT is not "hardware-reduced": the guest keeps its PIC, PIT and
//!   RTC. It names PM1a event and control blocks at I/O ports 0x600 and
//!   0x604 (where QEMU's PIIX4 has them) and no SMI command port, which
//!   tells the OS the machine is already in ACPI mode. No PM timer, no GPE
//!   blocks, no C2/C3 states, no 8042 and no VGA (IAPC_BOOT_ARCH), so
//!   Linux skips those probes. The power button is the fixed-feature one
//!   (PWR_BUTTON clear), the host's way to ask for a shutdown; there is no
//!   sleep button.
//! - The DSDT holds one object, `\_S5` (sleep type 5 for the PM1a control
//!   block), which is what Linux needs to power off through ACPI.

use alloc::vec::Vec;

use crate::guest_memory::{GuestMemory, OutOfRange};

use super::memory_map::BIOS_AREA_START;

/// Where the RSDP goes: the first paragraph of the BIOS area.
pub const RSDP_ADDRESS: u64 = BIOS_AREA_START;
/// The IOAPIC's address and GSI range, as the platform emulates it.
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;
pub const IOAPIC_ID: u8 = 0;
pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
/// ACPI fixed-hardware I/O ports (PM1a event block: status and enable,
/// 2 bytes each; PM1a control block: 2 bytes).
pub const PM1A_EVENT_PORT: u16 = 0x600;
pub const PM1A_CONTROL_PORT: u16 = 0x604;
/// The SCI's ISA IRQ.
pub const SCI_IRQ: u8 = 9;
/// The sleep type `\_S5` gives for PM1a_CNT.SLP_TYP.
pub const S5_SLEEP_TYPE: u16 = 5;
/// The most vCPUs the tables describe: the xAPIC's 8-bit IDs, less the
/// broadcast ID and the IOAPIC's.
pub const MAX_VCPUS: u32 = 254;

const OEM_ID: &[u8; 6] = b"MTRYSK";
const OEM_TABLE_ID: &[u8; 8] = b"MATRYOSK";
const CREATOR_ID: &[u8; 4] = b"MTRY";
const HEADER_LEN: usize = 36;

// Offsets of the tables from the RSDP. Each is 16-byte aligned, the FACS
// 64-byte aligned as ACPI 5.2.10 requires; the MADT comes last, since its
// length grows with the vCPUs.
const RSDT_OFFSET: u64 = 0x40;
const XSDT_OFFSET: u64 = 0x80;
const FACS_OFFSET: u64 = 0xc0;
const FADT_OFFSET: u64 = 0x100;
const DSDT_OFFSET: u64 = 0x240;
const MADT_OFFSET: u64 = 0x280;

const FADT_LENGTH: usize = 276; // ACPI 6.x
const FACS_LENGTH: usize = 64;

// FADT flags (ACPI table 5.10).
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
// FADT_PWR_BUTTON (bit 4) stays clear: the power button is the fixed
// feature in PM1 (acpi_pm.rs), which the host presses to ask for a shutdown.
const FADT_SLP_BUTTON: u32 = 1 << 5; // 1: no fixed-feature sleep button
                                     // IA-PC boot architecture flags (ACPI table 5.11).
const BOOT_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_VGA_NOT_PRESENT: u16 = 1 << 2;
// MADT.
const MADT_PCAT_COMPAT: u32 = 1 << 0;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
const LOCAL_APIC_ENABLED: u32 = 1 << 0;
/// MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2.
const INTI_CONFORMS: u16 = 0;
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0b01 | (0b11 << 2);

/// `Name (_S5, Package (4) { 5, 5, 0, 0 })` in AML (ACPI 20.2.5):
/// NameOp, "_S5_", PackageOp, PkgLength (8: itself, the count and six
/// bytes of elements), NumElements 4, BytePrefix 5, BytePrefix 5, Zero,
/// Zero.
const S5_AML: [u8; 14] = [0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00];

/// What [`write_acpi_tables`] put where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub rsdp: u64,
    /// The first byte after the last table.
    pub end: u64,
}

/// Builds the tables for a guest with `vcpus` vCPUs (clamped to 1..=
/// [`MAX_VCPUS`]) into guest memory at [`RSDP_ADDRESS`].
pub fn write_acpi_tables(memory: &mut impl GuestMemory, vcpus: u32) -> Result<AcpiTables, OutOfRange> {
    let vcpus = vcpus.clamp(1, MAX_VCPUS);
    let base = RSDP_ADDRESS;
    let (rsdt, xsdt, facs, fadt, dsdt, madt) = (
        base + RSDT_OFFSET,
        base + XSDT_OFFSET,
        base + FACS_OFFSET,
        base + FADT_OFFSET,
        base + DSDT_OFFSET,
        base + MADT_OFFSET,
    );
    let madt_bytes = build_madt(vcpus);
    let end = madt + madt_bytes.len() as u64;
    let pointers = [fadt, madt];
    memory.write(base, &build_rsdp(rsdt as u32, xsdt))?;
    memory.write(rsdt, &table(b"RSDT", 1, &pointers.map(|p| (p as u32).to_le_bytes()).concat()))?;
    memory.write(xsdt, &table(b"XSDT", 1, &pointers.map(u64::to_le_bytes).concat()))?;
    memory.write(facs, &build_facs())?;
    memory.write(fadt, &build_fadt(facs as u32, dsdt as u32))?;
    memory.write(dsdt, &table(b"DSDT", 2, &S5_AML))?;
    memory.write(madt, &madt_bytes)?;
    Ok(AcpiTables { rsdp: base, end })
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)))
}

/// RSDP revision 2 (ACPI 5.2.5.3): 36 bytes, with the ACPI 1.0 checksum
/// over the first 20 and the extended one over all of them.
fn build_rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0); // checksum
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0 and later
    rsdp.extend_from_slice(&rsdt.to_le_bytes());
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&xsdt.to_le_bytes());
    rsdp.extend_from_slice(&[0; 4]); // extended checksum, reserved
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    rsdp
}

/// A system description table: the 36-byte header, then `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let length = (HEADER_LEN + body.len()) as u32;
    let mut bytes = Vec::with_capacity(length as usize);
    bytes.extend_from_slice(signature);
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.push(revision);
    bytes.push(0); // checksum
    bytes.extend_from_slice(OEM_ID);
    bytes.extend_from_slice(OEM_TABLE_ID);
    bytes.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    bytes.extend_from_slice(CREATOR_ID);
    bytes.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    bytes.extend_from_slice(body);
    bytes[9] = checksum(&bytes);
    bytes
}

/// FACS (ACPI 5.2.10): no checksum; version 2; no waking vector yet.
fn build_facs() -> Vec<u8> {
    let mut facs = alloc::vec![0u8; FACS_LENGTH];
    facs[0..4].copy_from_slice(b"FACS");
    facs[4..8].copy_from_slice(&(FACS_LENGTH as u32).to_le_bytes());
    facs[32] = 2; // version
    facs
}

/// FADT revision 6 (ACPI table 5.9). Only the 32-bit block addresses are
/// filled in: an OS takes the X_ fields from them when those are zero.
fn build_fadt(facs: u32, dsdt: u32) -> Vec<u8> {
    let mut body = alloc::vec![0u8; FADT_LENGTH - HEADER_LEN];
    let mut put = |offset: usize, bytes: &[u8]| {
        body[offset - HEADER_LEN..offset - HEADER_LEN + bytes.len()].copy_from_slice(bytes);
    };
    put(36, &facs.to_le_bytes()); // FIRMWARE_CTRL
    put(40, &dsdt.to_le_bytes()); // DSDT
    put(46, &u16::from(SCI_IRQ).to_le_bytes()); // SCI_INT
                                                // SMI_CMD (48) stays 0: no transition to ACPI mode is needed.
    put(56, &u32::from(PM1A_EVENT_PORT).to_le_bytes()); // PM1a_EVT_BLK
    put(64, &u32::from(PM1A_CONTROL_PORT).to_le_bytes()); // PM1a_CNT_BLK
    put(88, &[4]); // PM1_EVT_LEN
    put(89, &[2]); // PM1_CNT_LEN
    put(96, &101u16.to_le_bytes()); // P_LVL2_LAT > 100: no C2
    put(98, &1001u16.to_le_bytes()); // P_LVL3_LAT > 1000: no C3
    put(108, &[0x32]); // CENTURY: the CMOS byte the RTC keeps it in
    put(109, &(BOOT_LEGACY_DEVICES | BOOT_VGA_NOT_PRESENT).to_le_bytes()); // IAPC_BOOT_ARCH: no 8042
    put(112, &(FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON).to_le_bytes());
    put(131, &[5]); // FADT minor version: ACPI 6.5
    table(b"FACP", 6, &body)
}

/// MADT (ACPI 5.2.12), revision 5.
fn build_madt(vcpus: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + 8 * vcpus as usize + 12 + 2 * 10 + 6);
    body.extend_from_slice(&LOCAL_APIC_ADDRESS.to_le_bytes());
    body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for vcpu in 0..vcpus {
        body.extend_from_slice(&[MADT_LOCAL_APIC, 8, vcpu as u8, vcpu as u8]);
        body.extend_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
    }
    body.extend_from_slice(&[MADT_IO_APIC, 12, IOAPIC_ID, 0]);
    body.extend_from_slice(&IOAPIC_ADDRESS.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    for (irq, gsi, flags) in [(0u8, 2u32, INTI_CONFORMS), (SCI_IRQ, u32::from(SCI_IRQ), INTI_ACTIVE_HIGH_LEVEL)] {
        body.extend_from_slice(&[MADT_SOURCE_OVERRIDE, 10, 0, irq]); // bus 0: ISA
        body.extend_from_slice(&gsi.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
    }
    // Every processor (UID 0xFF) has its NMI on LINT1.
    body.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, 0xff]);
    body.extend_from_slice(&INTI_CONFORMS.to_le_bytes());
    body.push(1);
    table(b"APIC", 5, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use crate::loader::{GuestMemoryMap, MemoryKind};

    fn bytes(memory: &VecMemory, address: u64, length: usize) -> &[u8] {
        &memory.as_slice()[address as usize..address as usize + length]
    }

    fn u16_at(bytes: &[u8], offset: usize) -> u16 {
        u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
    }

    fn u32_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
    }

    /// A table found through a pointer: its signature, a checksum over its
    /// whole length, and the bytes.
    fn sdt<'a>(memory: &'a VecMemory, address: u64, signature: &[u8; 4]) -> &'a [u8] {
        let header = bytes(memory, address, 36);
        assert_eq!(&header[0..4], signature);
        let table = bytes(memory, address, u32_at(header, 4) as usize);
        assert!(sums_to_zero(table), "{} checksum", core::str::from_utf8(signature).unwrap());
        assert_eq!(&table[10..16], OEM_ID);
        table
    }

    /// Scans the BIOS area for the RSDP as an OS does (ACPI 5.2.5.1).
    fn find_rsdp(memory: &VecMemory) -> u64 {
        (0xe_0000u64..0x10_0000)
            .step_by(16)
            .find(|&a| bytes(memory, a, 8) == b"RSD PTR " && sums_to_zero(bytes(memory, a, 20)))
            .expect("an RSDP in 0xE0000-0xFFFFF")
    }

    fn tables(vcpus: u32) -> (VecMemory, AcpiTables) {
        let mut memory = VecMemory::new(2 << 20);
        let tables = write_acpi_tables(&mut memory, vcpus).unwrap();
        (memory, tables)
    }

    #[test]
    fn the_rsdp_is_found_by_a_scan_and_points_to_both_root_tables() {
        let (memory, tables) = tables(1);
        let rsdp_address = find_rsdp(&memory);
        assert_eq!(rsdp_address, tables.rsdp);
        let rsdp = bytes(&memory, rsdp_address, 36);
        assert_eq!(rsdp[15], 2, "revision 2: XSDT present");
        assert_eq!(u32_at(rsdp, 20), 36, "length");
        assert!(sums_to_zero(rsdp), "extended checksum");
        let rsdt = sdt(&memory, u64::from(u32_at(rsdp, 16)), b"RSDT");
        let xsdt = sdt(&memory, u64_at(rsdp, 24), b"XSDT");
        assert_eq!(rsdt.len(), 36 + 2 * 4);
        assert_eq!(xsdt.len(), 36 + 2 * 8);
        let from_rsdt: Vec<u64> = rsdt[36..].chunks(4).map(|c| u64::from(u32_at(c, 0))).collect();
        let from_xsdt: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
        assert_eq!(from_rsdt, from_xsdt);
        let signatures: Vec<&[u8]> = from_xsdt.iter().map(|&a| bytes(&memory, a, 4)).collect();
        assert_eq!(signatures, [b"FACP", b"APIC"]);
    }

    #[test]
    fn the_fadt_describes_a_legacy_pc_already_in_acpi_mode() {
        let (memory, tables) = tables(1);
        let xsdt = u64_at(bytes(&memory, tables.rsdp, 36), 24);
        let fadt = sdt(&memory, u64_at(bytes(&memory, xsdt, 44), 36), b"FACP");
        assert_eq!(fadt.len(), 276);
        assert_eq!(fadt[8], 6, "revision");
        let flags = u32_at(fadt, 112);
        assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED_ACPI: PIC, PIT and RTC stay");
        assert_eq!(flags & (1 << 4), 0, "PWR_BUTTON clear: a fixed-feature power button");
        assert_ne!(flags & (1 << 5), 0, "SLP_BUTTON set: no fixed-feature sleep button");
        assert_eq!(u16_at(fadt, 46), 9, "SCI on IRQ 9");
        assert_eq!(u32_at(fadt, 48), 0, "no SMI_CMD: already in ACPI mode");
        assert_eq!(u32_at(fadt, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(fadt, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!((fadt[88], fadt[89]), (4, 2), "PM1_EVT_LEN, PM1_CNT_LEN");
        assert_eq!(u32_at(fadt, 76), 0, "no PM timer");
        assert_eq!(u16_at(fadt, 109) & 0b10, 0, "no 8042");
        let facs = bytes(&memory, u64::from(u32_at(fadt, 36)), 64);
        assert_eq!(&facs[0..4], b"FACS");
        assert_eq!(u32_at(facs, 4), 64);
        assert_eq!(u32_at(fadt, 36) % 64, 0, "FACS 64-byte aligned");
        let dsdt = sdt(&memory, u64::from(u32_at(fadt, 40)), b"DSDT");
        // Name (_S5, Package (4) { 5, 5, 0, 0 }) per the AML grammar.
        assert_eq!(&dsdt[36..], &[0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, 5, 0x0a, 5, 0, 0]);
    }

    /// MADT entries as (type, bytes).
    fn madt_entries(madt: &[u8]) -> Vec<(u8, &[u8])> {
        let mut entries = Vec::new();
        let mut offset = 44;
        while offset < madt.len() {
            let length = madt[offset + 1] as usize;
            assert!(length >= 2 && offset + length <= madt.len(), "entry at {offset}");
            entries.push((madt[offset], &madt[offset..offset + length]));
            offset += length;
        }
        entries
    }

    #[test]
    fn the_madt_lists_every_vcpu_the_ioapic_and_the_overrides() {
        let (memory, tables) = tables(4);
        let xsdt = u64_at(bytes(&memory, tables.rsdp, 36), 24);
        let madt = sdt(&memory, u64_at(bytes(&memory, xsdt, 52), 44), b"APIC");
        assert_eq!(u32_at(madt, 36), 0xfee0_0000, "local APIC address");
        assert_eq!(u32_at(madt, 40) & 1, 1, "PCAT_COMPAT: 8259s present");
        let entries = madt_entries(madt);
        let apics: Vec<(u8, u8, u32)> =
            entries.iter().filter(|(t, _)| *t == 0).map(|(_, e)| (e[2], e[3], u32_at(e, 4))).collect();
        assert_eq!(apics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)], "UID, APIC ID, enabled");
        let ioapics: Vec<&[u8]> = entries.iter().filter(|(t, _)| *t == 1).map(|(_, e)| *e).collect();
        assert_eq!(ioapics.len(), 1);
        assert_eq!(ioapics[0].len(), 12);
        assert_eq!((u32_at(ioapics[0], 4), u32_at(ioapics[0], 8)), (0xfec0_0000, 0));
        let overrides: Vec<(u8, u8, u32, u16)> =
            entries.iter().filter(|(t, _)| *t == 2).map(|(_, e)| (e[2], e[3], u32_at(e, 4), u16_at(e, 8))).collect();
        assert_eq!(overrides, [(0, 0, 2, 0), (0, 9, 9, 0x000d)], "IRQ0 -> GSI2; SCI level, active high");
        let nmis: Vec<&[u8]> = entries.iter().filter(|(t, _)| *t == 4).map(|(_, e)| *e).collect();
        assert_eq!(nmis, [&[4u8, 6, 0xff, 0, 0, 1][..]], "all processors, LINT1");
        assert!(tables.end <= 0x10_0000);
    }

    #[test]
    fn the_tables_lie_in_reserved_memory_below_1_mib_for_the_most_vcpus() {
        let (_, tables) = tables(u32::MAX);
        let map = GuestMemoryMap::new(64 << 20).unwrap();
        assert!(map
            .regions()
            .iter()
            .any(|r| r.kind == MemoryKind::Reserved && r.start <= tables.rsdp && tables.end <= r.start + r.length));
        assert_eq!(tables.end, RSDP_ADDRESS + MADT_OFFSET + 36 + 8 + 254 * 8 + 12 + 20 + 6);
    }

    #[test]
    fn checksums_are_what_makes_a_table_sum_to_zero() {
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[1, 2, 3]), 0xfa);
        assert_eq!(checksum(&[0x80, 0x80]), 0);
    }
}
