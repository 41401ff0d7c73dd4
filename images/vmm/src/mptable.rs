//! An Intel MultiProcessor Specification 1.4 table: how a guest without
//! ACPI learns that it has a local APIC and an IOAPIC, and how the ISA
//! interrupts reach them. Linux then uses its local APIC timer, which
//! matters for a nested guest (PLATFORM.md: the PIT through the 8259 costs
//! several nested exits per tick).
//!
//! ISA IRQ n goes to IOAPIC pin n, which is how KVM's default interrupt
//! routing connects KVM_IRQ_LINE and its in-kernel PIT.

pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
pub const IO_APIC_ADDRESS: u32 = 0xfec0_0000;
const ISA_IRQS: u8 = 16;

const FLOATING_POINTER_BYTES: usize = 16;
const HEADER_BYTES: usize = 44;
const PROCESSOR_ENTRY: u8 = 0;
const BUS_ENTRY: u8 = 1;
const IO_APIC_ENTRY: u8 = 2;
const IO_INTERRUPT_ENTRY: u8 = 3;
const LOCAL_INTERRUPT_ENTRY: u8 = 4;
const INTERRUPT_INT: u8 = 0;
const INTERRUPT_NMI: u8 = 1;
const INTERRUPT_EXTINT: u8 = 3;
/// Polarity and trigger "conform to the bus": edge, active high on ISA.
const CONFORMING: u16 = 0;
const SPEC_REVISION: u8 = 4;
const CPU_ENABLED: u8 = 0x01;
const CPU_BOOTSTRAP: u8 = 0x02;
/// Local APIC version of an integrated (xAPIC) APIC, as KVM reports it.
const LOCAL_APIC_VERSION: u8 = 0x14;
const IO_APIC_VERSION: u8 = 0x11;
const IO_APIC_ENABLED: u8 = 0x01;
/// Family 6; features FPU (bit 0) and APIC (bit 9).
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
/// All local APICs, for the NMI entry.
const ALL_LOCAL_APICS: u8 = 0xff;

/// The floating pointer at `address`, followed by the configuration table,
/// for `cpus` processors with APIC IDs 0..cpus and the IOAPIC after them.
pub fn build(address: u32, cpus: u8) -> Vec<u8> {
    let io_apic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    let mut entry = |bytes: &[u8]| {
        entries.extend_from_slice(bytes);
        count += 1;
    };
    for apic_id in 0..cpus {
        let flags = CPU_ENABLED | if apic_id == 0 { CPU_BOOTSTRAP } else { 0 };
        let mut processor = vec![PROCESSOR_ENTRY, apic_id, LOCAL_APIC_VERSION, flags];
        processor.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        processor.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        processor.extend_from_slice(&[0; 8]);
        entry(&processor);
    }
    entry(&[BUS_ENTRY, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut io_apic = vec![IO_APIC_ENTRY, io_apic_id, IO_APIC_VERSION, IO_APIC_ENABLED];
    io_apic.extend_from_slice(&IO_APIC_ADDRESS.to_le_bytes());
    entry(&io_apic);
    for irq in 0..ISA_IRQS {
        entry(&interrupt(IO_INTERRUPT_ENTRY, INTERRUPT_INT, irq, io_apic_id, irq));
    }
    // The 8259s reach the BSP's LINT0 as ExtINT; NMIs reach every LINT1.
    entry(&interrupt(LOCAL_INTERRUPT_ENTRY, INTERRUPT_EXTINT, 0, 0, 0));
    entry(&interrupt(LOCAL_INTERRUPT_ENTRY, INTERRUPT_NMI, 0, ALL_LOCAL_APICS, 1));

    let table_address = address + FLOATING_POINTER_BYTES as u32;
    let table_length = (HEADER_BYTES + entries.len()) as u16;
    let mut table = Vec::with_capacity(usize::from(table_length));
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&table_length.to_le_bytes());
    table.push(SPEC_REVISION);
    table.push(0); // checksum, below
    table.extend_from_slice(b"MATRYOSH");
    table.extend_from_slice(b"VMM         ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LOCAL_APIC_ADDRESS.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut pointer = Vec::with_capacity(FLOATING_POINTER_BYTES);
    pointer.extend_from_slice(b"_MP_");
    pointer.extend_from_slice(&table_address.to_le_bytes());
    pointer.push(1); // length in 16-byte units
    pointer.push(SPEC_REVISION);
    pointer.push(0); // checksum, below
    pointer.extend_from_slice(&[0; 5]); // feature bytes: 0 = the table is present
    pointer[10] = checksum(&pointer);

    pointer.extend_from_slice(&table);
    pointer
}

fn interrupt(kind: u8, interrupt_type: u8, source_irq: u8, destination: u8, destination_pin: u8) -> [u8; 8] {
    let [flags_low, flags_high] = CONFORMING.to_le_bytes();
    [kind, interrupt_type, flags_low, flags_high, 0, source_irq, destination, destination_pin]
}

/// The byte that makes the sum of all bytes zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte))
    }

    #[test]
    fn the_floating_pointer_points_at_a_table_right_behind_it_and_both_sum_to_zero() {
        let bytes = build(0x9fc00, 1);
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 0x9fc10);
        assert_eq!(sum(&bytes[..16]), 0);
        let table = &bytes[16..];
        assert_eq!(&table[..4], b"PCMP");
        let length = usize::from(u16::from_le_bytes([table[4], table[5]]));
        assert_eq!(length, table.len());
        assert_eq!(sum(table), 0);
        assert!(bytes.len() <= 1024, "fits the reserved KiB");
    }

    /// The entries as (type, bytes), walked the way a guest walks them.
    fn entries(table: &[u8]) -> Vec<&[u8]> {
        let count = u16::from_le_bytes([table[34], table[35]]);
        let mut offset = HEADER_BYTES;
        let mut found = Vec::new();
        for _ in 0..count {
            let length = if table[offset] == PROCESSOR_ENTRY { 20 } else { 8 };
            found.push(&table[offset..offset + length]);
            offset += length;
        }
        assert_eq!(offset, table.len(), "the count matches the bytes");
        found
    }

    #[test]
    fn one_bsp_an_ioapic_and_isa_irqs_to_identical_pins() {
        let bytes = build(0x9fc00, 1);
        let table = &bytes[16..];
        assert_eq!(u32::from_le_bytes(table[36..40].try_into().unwrap()), LOCAL_APIC_ADDRESS);
        let entries = entries(table);
        let processors: Vec<_> = entries.iter().filter(|e| e[0] == PROCESSOR_ENTRY).collect();
        assert_eq!(processors.len(), 1);
        assert_eq!(processors[0][1], 0, "APIC ID 0");
        assert_eq!(processors[0][3], CPU_ENABLED | CPU_BOOTSTRAP);
        let io_apic = entries.iter().find(|e| e[0] == IO_APIC_ENTRY).unwrap();
        assert_eq!(io_apic[1], 1, "the IOAPIC's ID follows the CPUs'");
        assert_eq!(u32::from_le_bytes(io_apic[4..8].try_into().unwrap()), IO_APIC_ADDRESS);
        let routes: Vec<(u8, u8)> =
            entries.iter().filter(|e| e[0] == IO_INTERRUPT_ENTRY).map(|e| (e[5], e[7])).collect();
        assert_eq!(routes, (0..16).map(|irq| (irq, irq)).collect::<Vec<_>>());
        let local: Vec<(u8, u8)> =
            entries.iter().filter(|e| e[0] == LOCAL_INTERRUPT_ENTRY).map(|e| (e[1], e[7])).collect();
        assert_eq!(local, [(INTERRUPT_EXTINT, 0), (INTERRUPT_NMI, 1)]);
    }
}
