//! PCI configuration space: finding functions, switching on their decoding and DMA, and
//! reading their base address registers.

use alloc::vec::Vec;
use core::fmt;

/// Configuration-space access to one function's registers, 32 bits at a time
/// (mechanism #1 in the kernel: ports 0xcf8/0xcfc).
pub trait ConfigSpace {
    /// `offset` is a multiple of 4 below 256.
    fn read_u32(&mut self, function: PciAddress, offset: u8) -> u32;
    fn write_u32(&mut self, function: PciAddress, offset: u8, value: u32);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddress {
    pub bus: u8,
    /// 0 to 31.
    pub device: u8,
    /// 0 to 7.
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

// Type-0 header offsets.
const ID: u8 = 0x00; // vendor (low 16 bits), device (high 16 bits)
const COMMAND_STATUS: u8 = 0x04; // command (low 16 bits), status (high 16 bits)
const CLASS: u8 = 0x08; // revision, prog-if, subclass, class (from low to high byte)
const HEADER_TYPE_DWORD: u8 = 0x0c; // header type in bits 23:16
const BAR0: u8 = 0x10;

const NO_DEVICE: u16 = 0xffff; // what an empty slot answers for the vendor ID
const MULTI_FUNCTION: u8 = 0x80; // header type bit 7

const COMMAND_IO_SPACE: u16 = 1 << 0;
const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Masks the function's INTx line: the shim's drivers are polled.
const COMMAND_INTX_DISABLE: u16 = 1 << 10;

const BAR_IO: u32 = 1 << 0;
const BAR_TYPE_MASK: u32 = 0b110;
const BAR_TYPE_64: u32 = 0b100;
const BAR_PREFETCHABLE: u32 = 1 << 3;
const BAR_MEMORY_FLAGS: u32 = 0xf;
const BAR_IO_FLAGS: u32 = 0x3;

/// One function found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    pub address: PciAddress,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: u8,
    pub subclass: u8,
}

/// Every function on every bus. Brute force over all 256 buses rather than a walk through
/// the bridges: it needs no bridge programming, finds devices behind bridges the firmware
/// configured, and its 8192 probes of function 0 cost little.
pub fn scan(config: &mut impl ConfigSpace) -> Vec<PciFunction> {
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let first = PciAddress { bus, device, function: 0 };
            let Some(function) = probe(config, first) else { continue };
            found.push(function);
            let header_type = (config.read_u32(first, HEADER_TYPE_DWORD) >> 16) as u8;
            // A single-function device may answer for functions 1-7 with copies of
            // function 0: only the multi-function bit says that they exist.
            if header_type & MULTI_FUNCTION != 0 {
                found.extend((1..8).filter_map(|function| probe(config, PciAddress { bus, device, function })));
            }
        }
    }
    found
}

fn probe(config: &mut impl ConfigSpace, address: PciAddress) -> Option<PciFunction> {
    let id = config.read_u32(address, ID);
    let vendor_id = id as u16;
    if vendor_id == NO_DEVICE {
        return None;
    }
    let class = config.read_u32(address, CLASS);
    Some(PciFunction {
        address,
        vendor_id,
        device_id: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
    })
}

/// Lets the function answer memory accesses and master DMA, with its INTx line masked.
pub fn enable_memory_and_dma(config: &mut impl ConfigSpace, function: PciAddress) {
    let command = command(config, function) | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
    set_command(config, function, command);
}

/// Stops the function's memory decoding and DMA, e.g. after its driver failed to take
/// it over: whatever the firmware left it doing must not go on writing memory.
pub fn disable_memory_and_dma(config: &mut impl ConfigSpace, function: PciAddress) {
    let command = command(config, function) & !(COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER);
    set_command(config, function, command);
}

fn command(config: &mut impl ConfigSpace, function: PciAddress) -> u16 {
    config.read_u32(function, COMMAND_STATUS) as u16
}

/// Writes the command register. The status register shares its dword and its error bits
/// clear when written with 1, so the status half is written as zeroes, which changes nothing.
fn set_command(config: &mut impl ConfigSpace, function: PciAddress, command: u16) {
    config.write_u32(function, COMMAND_STATUS, u32::from(command));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Memory { address: u64, size: u64, prefetchable: bool },
    Io { port: u32, size: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarError {
    /// Beyond BAR5, or a 64-bit BAR starting in BAR5.
    NoSuchBar,
    /// The register is hard-wired to zero: the function has no such BAR.
    NotImplemented,
    /// The firmware left it at address zero: the shim assigns no addresses itself.
    Unassigned,
    /// A memory BAR type the PCI specification reserves.
    ReservedType,
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarError::NoSuchBar => "there is no such BAR",
            BarError::NotImplemented => "the function does not implement it",
            BarError::Unassigned => "the firmware assigned it no address",
            BarError::ReservedType => "its memory type is reserved",
        })
    }
}

/// Reads BAR `index` (0 to 5) with its size, found the standard way: write all ones, read
/// back which address bits stick, restore. Decoding is off meanwhile, so the device never
/// answers at the all-ones address.
pub fn read_bar(config: &mut impl ConfigSpace, function: PciAddress, index: u8) -> Result<Bar, BarError> {
    if index > 5 {
        return Err(BarError::NoSuchBar);
    }
    let offset = BAR0 + 4 * index;
    let original = config.read_u32(function, offset);
    let is_64 = original & BAR_IO == 0 && original & BAR_TYPE_MASK == BAR_TYPE_64;
    if original & BAR_IO == 0 && original & BAR_TYPE_MASK == 0b110 {
        return Err(BarError::ReservedType);
    }
    if is_64 && index == 5 {
        return Err(BarError::NoSuchBar);
    }
    let original_high = if is_64 { config.read_u32(function, offset + 4) } else { 0 };

    let saved_command = command(config, function);
    set_command(config, function, saved_command & !(COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE));
    config.write_u32(function, offset, u32::MAX);
    let low_mask = config.read_u32(function, offset);
    config.write_u32(function, offset, original);
    let high_mask = if is_64 {
        config.write_u32(function, offset + 4, u32::MAX);
        let mask = config.read_u32(function, offset + 4);
        config.write_u32(function, offset + 4, original_high);
        mask
    } else {
        0
    };
    set_command(config, function, saved_command);

    if original & BAR_IO != 0 {
        let mask = low_mask & !BAR_IO_FLAGS;
        if mask == 0 {
            return Err(BarError::NotImplemented);
        }
        let port = original & !BAR_IO_FLAGS;
        // I/O BARs may implement only the low 16 address bits; the rest read as zero.
        let size = (!mask).wrapping_add(1) & if mask >> 16 == 0 { 0xffff } else { u32::MAX };
        return if port == 0 { Err(BarError::Unassigned) } else { Ok(Bar::Io { port, size }) };
    }
    let mask = (u64::from(high_mask) << 32) | u64::from(low_mask & !BAR_MEMORY_FLAGS);
    let mask = if is_64 { mask } else { mask | 0xffff_ffff_0000_0000 };
    if mask == 0xffff_ffff_0000_0000 || mask == 0 {
        return Err(BarError::NotImplemented);
    }
    let address = (u64::from(original_high) << 32) | u64::from(original & !BAR_MEMORY_FLAGS);
    if address == 0 {
        return Err(BarError::Unassigned);
    }
    Ok(Bar::Memory { address, size: (!mask).wrapping_add(1), prefetchable: original & BAR_PREFETCHABLE != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    /// A configuration space with a few functions. BARs behave like hardware: the bits
    /// below the BAR's size read as zero whatever was written, the type bits are fixed.
    #[derive(Default)]
    struct FakeConfigSpace {
        functions: BTreeMap<PciAddress, FakeFunction>,
        /// Devices that answer for functions 1-7 with function 0's registers.
        aliasing: Vec<(u8, u8)>,
        writes: Vec<(PciAddress, u8, u32)>,
    }

    #[derive(Clone)]
    struct FakeFunction {
        registers: [u32; 64],
        /// Per BAR, the writable address bits (0: not implemented).
        bar_masks: [u32; 6],
    }

    impl FakeFunction {
        fn new(vendor: u16, device: u16, class: u8, subclass: u8, header_type: u8) -> Self {
            let mut registers = [0; 64];
            registers[0] = u32::from(vendor) | (u32::from(device) << 16);
            registers[1] = 0x0290_0000; // status: capabilities list, and a latched error bit (bit 25)
            registers[2] = (u32::from(class) << 24) | (u32::from(subclass) << 16);
            registers[3] = u32::from(header_type) << 16;
            FakeFunction { registers, bar_masks: [0; 6] }
        }

        /// BARs as (index, initial value, writable address bits).
        fn with_bars(mut self, bars: &[(usize, u32, u32)]) -> Self {
            for &(index, value, mask) in bars {
                self.registers[4 + index] = value;
                self.bar_masks[index] = mask;
            }
            self
        }
    }

    fn at(bus: u8, device: u8, function: u8) -> PciAddress {
        PciAddress { bus, device, function }
    }

    impl FakeConfigSpace {
        fn lookup(&self, address: PciAddress) -> Option<&FakeFunction> {
            let aliased = self.aliasing.contains(&(address.bus, address.device));
            let key = if aliased { at(address.bus, address.device, 0) } else { address };
            self.functions.get(&key)
        }

        fn command(&self, address: PciAddress) -> u16 {
            self.functions[&address].registers[1] as u16
        }
    }

    impl ConfigSpace for FakeConfigSpace {
        fn read_u32(&mut self, function: PciAddress, offset: u8) -> u32 {
            assert!(offset.is_multiple_of(4), "unaligned configuration read at {offset:#x}");
            self.lookup(function).map_or(u32::MAX, |f| f.registers[usize::from(offset / 4)])
        }

        fn write_u32(&mut self, function: PciAddress, offset: u8, value: u32) {
            assert!(offset.is_multiple_of(4), "unaligned configuration write at {offset:#x}");
            self.writes.push((function, offset, value));
            let Some(f) = self.functions.get_mut(&function) else { return };
            let index = usize::from(offset / 4);
            match offset {
                COMMAND_STATUS => {
                    let status = (f.registers[1] >> 16) & !(value >> 16); // write 1 to clear
                    f.registers[1] = (status << 16) | (value & 0xffff);
                }
                0x10..=0x24 => {
                    let mask = f.bar_masks[index - 4];
                    let fixed = if mask == 0 { 0 } else { f.registers[index] & !mask };
                    f.registers[index] = (value & mask) | fixed;
                }
                _ => f.registers[index] = value,
            }
        }
    }

    fn machine() -> FakeConfigSpace {
        let mut config = FakeConfigSpace::default();
        config.functions.insert(at(0, 0, 0), FakeFunction::new(0x8086, 0x1237, 0x06, 0x00, 0));
        // A multi-function device with a hole at function 1.
        config.functions.insert(at(0, 1, 0), FakeFunction::new(0x8086, 0x7000, 0x06, 0x01, MULTI_FUNCTION));
        config.functions.insert(at(0, 1, 3), FakeFunction::new(0x8086, 0x7113, 0x06, 0x80, 0));
        // An 82540EM: 128 KiB memory BAR0, I/O BAR2 of 64 ports.
        let nic = FakeFunction::new(0x8086, 0x100e, 0x02, 0x00, 0)
            .with_bars(&[(0, 0xfebc_0000, 0xfffe_0000), (2, 0xc001, 0xffff_ffc0)]);
        config.functions.insert(at(0, 3, 0), nic);
        config.aliasing.push((0, 3));
        // Behind a bridge: a device with a 64-bit prefetchable BAR above 4 GiB.
        let wide =
            FakeFunction::new(0x1af4, 0x1041, 0x02, 0x00, 0).with_bars(&[(0, 0xc, 0xffff_c000), (1, 0, 0xffff_ffff)]);
        config.functions.insert(at(2, 0, 0), wide);
        config
    }

    #[test]
    fn scan_finds_every_function_and_only_real_ones() {
        let mut config = machine();
        let found: Vec<(PciAddress, u16, u16)> =
            scan(&mut config).iter().map(|f| (f.address, f.vendor_id, f.device_id)).collect();
        assert_eq!(
            found,
            vec![
                (at(0, 0, 0), 0x8086, 0x1237),
                (at(0, 1, 0), 0x8086, 0x7000),
                (at(0, 1, 3), 0x8086, 0x7113),
                // Not 0:3.1-7: the NIC answers for them but is single-function.
                (at(0, 3, 0), 0x8086, 0x100e),
                (at(2, 0, 0), 0x1af4, 0x1041),
            ]
        );
        let nic = scan(&mut config).into_iter().find(|f| f.device_id == 0x100e).unwrap();
        assert_eq!((nic.class, nic.subclass), (0x02, 0x00));
        assert!(config.writes.is_empty(), "scanning must not write: {:?}", config.writes);
        assert_eq!(at(0, 3, 1).to_string(), "00:03.1");
    }

    #[test]
    fn enabling_and_disabling_change_only_their_command_bits_and_keep_the_status_bits() {
        let mut config = machine();
        let nic = at(0, 3, 0);
        config.functions.get_mut(&nic).unwrap().registers[1] |= 1; // I/O space already on
        enable_memory_and_dma(&mut config, nic);
        assert_eq!(config.command(nic), 0b100_0000_0111);
        // The latched status error bit survives: the write carried zeroes in the status half.
        assert_eq!(config.functions[&nic].registers[1] >> 16, 0x0290);
        disable_memory_and_dma(&mut config, nic);
        assert_eq!(config.command(nic), 0b100_0000_0001);
        assert_eq!(config.functions[&nic].registers[1] >> 16, 0x0290);
    }

    #[test]
    fn a_32_bit_memory_bar_is_sized_and_restored() {
        let mut config = machine();
        let nic = at(0, 3, 0);
        enable_memory_and_dma(&mut config, nic);
        let command_before = config.command(nic);
        assert_eq!(
            read_bar(&mut config, nic, 0),
            Ok(Bar::Memory { address: 0xfebc_0000, size: 128 << 10, prefetchable: false })
        );
        assert_eq!(config.functions[&nic].registers[4], 0xfebc_0000);
        assert_eq!(config.command(nic), command_before);
        // Memory decoding was off while the BAR held all ones.
        let sizing = config.writes.iter().position(|w| w.1 == BAR0 && w.2 == u32::MAX).unwrap();
        let decode_off = config.writes[..sizing].iter().rposition(|w| w.1 == COMMAND_STATUS).unwrap();
        assert_eq!(config.writes[decode_off].2 & u32::from(COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE), 0);
        assert_eq!(read_bar(&mut config, nic, 2), Ok(Bar::Io { port: 0xc000, size: 64 }));
        assert_eq!(read_bar(&mut config, nic, 1), Err(BarError::NotImplemented));
        assert_eq!(read_bar(&mut config, nic, 6), Err(BarError::NoSuchBar));
    }

    #[test]
    fn a_64_bit_bar_spans_two_registers() {
        let mut config = machine();
        let wide = at(2, 0, 0);
        config.functions.get_mut(&wide).unwrap().registers[4] = 0x8000_000c;
        config.functions.get_mut(&wide).unwrap().registers[5] = 0x2;
        assert_eq!(
            read_bar(&mut config, wide, 0),
            Ok(Bar::Memory { address: 0x2_8000_0000, size: 16 << 10, prefetchable: true })
        );
        assert_eq!(config.functions[&wide].registers[4..6], [0x8000_000c, 0x2]);
    }

    #[test]
    fn unassigned_and_reserved_bars_are_refused() {
        let mut config = machine();
        let wide = at(2, 0, 0);
        assert_eq!(read_bar(&mut config, wide, 0), Err(BarError::Unassigned));
        config.functions.get_mut(&wide).unwrap().registers[4] = 0x8000_0006;
        assert_eq!(read_bar(&mut config, wide, 0), Err(BarError::ReservedType));
        assert_eq!(BarError::Unassigned.to_string(), "the firmware assigned it no address");
    }
}
