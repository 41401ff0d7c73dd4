//! Which processors the platform has, as its ACPI MADT lists them: the
//! RSDP in the BIOS area, the XSDT (or RSDT) it points at, and the
//! processor local APIC entries of the "APIC" table (ACPI 6.5, 5.2.5 and
//! 5.2.12). Physical memory is read through a callback, so that the parser
//! runs on the host against hand-built tables.

/// Where the RSDP may be on a PC without EFI: the BIOS read-only area.
pub const BIOS_AREA: core::ops::Range<u64> = 0xe_0000..0x10_0000;
/// Most processors this kernel keeps track of.
pub const MAX_CPUS: usize = 16;

const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
const MADT_SIGNATURE: &[u8; 4] = b"APIC";
const HEADER_LEN: u64 = 36;
/// The MADT's fixed part: the header, the local APIC address and flags.
const MADT_ENTRIES_OFFSET: u64 = 44;
const PROCESSOR_LOCAL_APIC: u8 = 0;
const PROCESSOR_LOCAL_X2APIC: u8 = 9;
const ENABLED: u32 = 1;
/// Tables longer than this are not believed.
const MAX_TABLE_LEN: u32 = 64 * 1024;

/// The enabled processors' APIC IDs, in MADT order (the BSP first, by
/// convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processors {
    ids: [u32; MAX_CPUS],
    count: usize,
}

impl Processors {
    pub fn apic_ids(&self) -> &[u32] {
        &self.ids[..self.count]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadtError {
    NoRsdp,
    NoMadt,
    BadTable { signature: [u8; 4], address: u64 },
    TooManyProcessors,
}

impl core::fmt::Display for MadtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRsdp => write!(f, "no RSDP with a valid checksum in the BIOS area"),
            Self::NoMadt => write!(f, "the root table lists no MADT (\"APIC\")"),
            Self::BadTable { signature, address } => {
                let name = core::str::from_utf8(signature).unwrap_or("????");
                write!(f, "table '{name}' at {address:#x} has a bad length, checksum or entry")
            }
            Self::TooManyProcessors => write!(f, "more than {MAX_CPUS} processors"),
        }
    }
}

/// Reads physical memory: fills the buffer from the address.
pub trait PhysicalMemory {
    fn read(&self, address: u64, buffer: &mut [u8]);

    fn u8(&self, address: u64) -> u8 {
        let mut byte = [0];
        self.read(address, &mut byte);
        byte[0]
    }

    fn u32(&self, address: u64) -> u32 {
        let mut bytes = [0; 4];
        self.read(address, &mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn u64(&self, address: u64) -> u64 {
        let mut bytes = [0; 8];
        self.read(address, &mut bytes);
        u64::from_le_bytes(bytes)
    }
}

/// The enabled processors the MADT lists.
pub fn processors(memory: &impl PhysicalMemory) -> Result<Processors, MadtError> {
    let rsdp = find_rsdp(memory).ok_or(MadtError::NoRsdp)?;
    let madt = find_table(memory, rsdp, MADT_SIGNATURE)?.ok_or(MadtError::NoMadt)?;
    let length = u64::from(memory.u32(madt + 4));
    let mut processors = Processors { ids: [0; MAX_CPUS], count: 0 };
    let mut offset = MADT_ENTRIES_OFFSET;
    while offset + 2 <= length {
        let kind = memory.u8(madt + offset);
        let entry_len = u64::from(memory.u8(madt + offset + 1));
        if entry_len < 2 || offset + entry_len > length {
            return Err(MadtError::BadTable { signature: *MADT_SIGNATURE, address: madt });
        }
        let enabled_id = match (kind, entry_len) {
            (PROCESSOR_LOCAL_APIC, 8) => {
                let flags = memory.u32(madt + offset + 4);
                (flags & ENABLED != 0).then(|| u32::from(memory.u8(madt + offset + 3)))
            }
            (PROCESSOR_LOCAL_X2APIC, 16) => {
                let flags = memory.u32(madt + offset + 8);
                (flags & ENABLED != 0).then(|| memory.u32(madt + offset + 4))
            }
            (PROCESSOR_LOCAL_APIC | PROCESSOR_LOCAL_X2APIC, _) => {
                return Err(MadtError::BadTable { signature: *MADT_SIGNATURE, address: madt })
            }
            _ => None,
        };
        if let Some(id) = enabled_id {
            let slot = processors.ids.get_mut(processors.count).ok_or(MadtError::TooManyProcessors)?;
            *slot = id;
            processors.count += 1;
        }
        offset += entry_len;
    }
    Ok(processors)
}

fn checksum_ok(memory: &impl PhysicalMemory, address: u64, length: u64) -> bool {
    (0..length).fold(0u8, |sum, offset| sum.wrapping_add(memory.u8(address + offset))) == 0
}

fn find_rsdp(memory: &impl PhysicalMemory) -> Option<u64> {
    BIOS_AREA.step_by(16).find(|&address| {
        let mut signature = [0; 8];
        memory.read(address, &mut signature);
        &signature == RSDP_SIGNATURE && checksum_ok(memory, address, 20)
    })
}

/// The address of the table with `signature` that the RSDP's root table
/// (the XSDT from revision 2 on, else the RSDT) lists.
fn find_table(memory: &impl PhysicalMemory, rsdp: u64, signature: &[u8; 4]) -> Result<Option<u64>, MadtError> {
    let (root, entry_size) =
        if memory.u8(rsdp + 15) >= 2 { (memory.u64(rsdp + 24), 8) } else { (u64::from(memory.u32(rsdp + 16)), 4) };
    let root_length = checked_table(memory, root)?;
    let entries = (root_length - HEADER_LEN) / entry_size;
    for index in 0..entries {
        let at = root + HEADER_LEN + index * entry_size;
        let table = if entry_size == 8 { memory.u64(at) } else { u64::from(memory.u32(at)) };
        let mut found = [0; 4];
        memory.read(table, &mut found);
        if &found == signature {
            checked_table(memory, table)?;
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// A table's length, after checking it and the checksum.
fn checked_table(memory: &impl PhysicalMemory, address: u64) -> Result<u64, MadtError> {
    let length = memory.u32(address + 4);
    let mut signature = [0; 4];
    memory.read(address, &mut signature);
    let bad = MadtError::BadTable { signature, address };
    if !(HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&length) || !checksum_ok(memory, address, length.into()) {
        return Err(bad);
    }
    Ok(length.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 MiB of fake physical memory.
    struct Fake(std::vec::Vec<u8>);

    impl PhysicalMemory for Fake {
        fn read(&self, address: u64, buffer: &mut [u8]) {
            let start = address as usize;
            buffer.copy_from_slice(&self.0[start..start + buffer.len()]);
        }
    }

    fn fix_checksum(bytes: &mut [u8], checksum_at: usize) {
        bytes[checksum_at] = 0;
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        bytes[checksum_at] = 0u8.wrapping_sub(sum);
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> std::vec::Vec<u8> {
        let mut bytes = std::vec![0u8; 36];
        bytes[..4].copy_from_slice(signature);
        bytes.extend_from_slice(body);
        let length = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&length.to_le_bytes());
        fix_checksum(&mut bytes, 9);
        bytes
    }

    /// RSDP at 0xf0000 (revision 2), XSDT at 0xf0100, MADT at 0xf0200 with
    /// the given entries.
    fn platform(entries: &[u8]) -> Fake {
        let mut memory = std::vec![0u8; 1 << 20];
        let mut rsdp = std::vec![0u8; 36];
        rsdp[..8].copy_from_slice(RSDP_SIGNATURE);
        rsdp[15] = 2;
        rsdp[24..32].copy_from_slice(&0xf0100u64.to_le_bytes());
        fix_checksum(&mut rsdp[..20], 8);
        memory[0xf0000..0xf0024].copy_from_slice(&rsdp);
        let xsdt = table(b"XSDT", &0xf0200u64.to_le_bytes());
        memory[0xf0100..0xf0100 + xsdt.len()].copy_from_slice(&xsdt);
        let mut body = std::vec![0u8; 8];
        body.extend_from_slice(entries);
        let madt = table(b"APIC", &body);
        memory[0xf0200..0xf0200 + madt.len()].copy_from_slice(&madt);
        Fake(memory)
    }

    #[test]
    fn enabled_processors_are_listed_in_order() {
        let entries = [
            0, 8, 0, 0, 1, 0, 0, 0, // APIC ID 0, enabled
            1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0, // an IOAPIC: skipped
            0, 8, 1, 1, 1, 0, 0, 0, // APIC ID 1, enabled
            0, 8, 2, 7, 0, 0, 0, 0, // APIC ID 7, disabled
            9, 16, 0, 0, 0x20, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // x2APIC ID 0x120
        ];
        let found = processors(&platform(&entries)).unwrap();
        assert_eq!(found.apic_ids(), &[0, 1, 0x120]);
    }

    #[test]
    fn broken_tables_are_reported_not_believed() {
        let mut bad_checksum = platform(&[0, 8, 0, 0, 1, 0, 0, 0]);
        bad_checksum.0[0xf0200 + 40] ^= 1;
        assert!(
            matches!(processors(&bad_checksum), Err(MadtError::BadTable { signature, .. }) if &signature == b"APIC")
        );
        // An entry that claims to run past the table.
        let overlong = platform(&[0, 200, 0, 0, 1, 0, 0, 0]);
        assert!(matches!(processors(&overlong), Err(MadtError::BadTable { .. })));
        let mut no_rsdp = platform(&[]);
        no_rsdp.0[0xf0000] = b'X';
        assert_eq!(processors(&no_rsdp), Err(MadtError::NoRsdp));
    }
}
