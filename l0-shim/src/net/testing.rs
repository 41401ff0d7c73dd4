//! Test doubles for the network drivers: memory that a fake device and the driver share,
//! and a model of an e1000 detailed enough to drive the real driver through its protocol.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{DmaRegion, Registers};

/// Physical memory as both the driver and the fake device see it.
#[derive(Clone)]
pub struct Bus(Rc<RefCell<BusState>>);

struct BusState {
    base: u64,
    bytes: Vec<u8>,
    next_free: u64,
    /// Every buffer access the driver made through a region: (bus address, length, write).
    driver_accesses: Vec<(u64, usize, bool)>,
}

impl Bus {
    pub fn new(base: u64, len: usize) -> Bus {
        Bus(Rc::new(RefCell::new(BusState { base, bytes: vec![0; len], next_free: base, driver_accesses: Vec::new() })))
    }

    /// A fresh region of `len` bytes, aligned to `align`.
    pub fn region(&self, len: usize, align: u64) -> FakeDma {
        let mut state = self.0.borrow_mut();
        let start = state.next_free.next_multiple_of(align);
        state.next_free = start + len as u64;
        assert!(state.next_free <= state.base + state.bytes.len() as u64, "the fake bus is full");
        FakeDma { bus: self.clone(), start, len }
    }

    fn index(&self, address: u64, len: usize) -> core::ops::Range<usize> {
        let state = self.0.borrow();
        let start = address.checked_sub(state.base).expect("DMA below the fake bus") as usize;
        assert!(start + len <= state.bytes.len(), "DMA beyond the fake bus at {address:#x}+{len}");
        start..start + len
    }

    pub fn read(&self, address: u64, len: usize) -> Vec<u8> {
        let range = self.index(address, len);
        self.0.borrow().bytes[range].to_vec()
    }

    pub fn write(&self, address: u64, bytes: &[u8]) {
        let range = self.index(address, bytes.len());
        self.0.borrow_mut().bytes[range].copy_from_slice(bytes);
    }

    pub fn read_u64(&self, address: u64) -> u64 {
        u64::from_le_bytes(self.read(address, 8).try_into().unwrap())
    }

    pub fn write_u64(&self, address: u64, value: u64) {
        self.write(address, &value.to_le_bytes());
    }

    pub fn driver_accesses(&self) -> Vec<(u64, usize, bool)> {
        self.0.borrow().driver_accesses.clone()
    }

    pub fn forget_driver_accesses(&self) {
        self.0.borrow_mut().driver_accesses.clear();
    }
}

/// A DMA region on a [`Bus`], checked like the kernel's: nothing outside it is reachable.
pub struct FakeDma {
    bus: Bus,
    start: u64,
    len: usize,
}

impl FakeDma {
    fn address(&self, offset: usize, len: usize) -> u64 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "access {offset:#x}+{len} outside the region"
        );
        self.start + offset as u64
    }
}

impl DmaRegion for FakeDma {
    fn bus_address(&self) -> u64 {
        self.start
    }

    fn len(&self) -> usize {
        self.len
    }

    fn read_u64(&self, offset: usize) -> u64 {
        self.bus.read_u64(self.address(offset, 8))
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        self.bus.write_u64(self.address(offset, 8), value);
    }

    fn with_bytes<T>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        let address = self.address(offset, len);
        self.bus.0.borrow_mut().driver_accesses.push((address, len, false));
        f(&self.bus.read(address, len))
    }

    fn with_bytes_mut<T>(&mut self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        let address = self.address(offset, len);
        self.bus.0.borrow_mut().driver_accesses.push((address, len, true));
        let mut bytes = self.bus.read(address, len);
        let result = f(&mut bytes);
        self.bus.write(address, &bytes);
        result
    }
}

/// The model's own reading of the register map, kept apart from the driver's on purpose:
/// a wrong offset in the driver must not be matched by the model it is tested against.
pub mod e1000_regs {
    pub const CTRL: u32 = 0x0000;
    pub const STATUS: u32 = 0x0008;
    pub const EERD: u32 = 0x0014;
    pub const ICR: u32 = 0x00c0;
    pub const IMS: u32 = 0x00d0;
    pub const IMC: u32 = 0x00d8;
    pub const RCTL: u32 = 0x0100;
    pub const TCTL: u32 = 0x0400;
    pub const RDBAL: u32 = 0x2800;
    pub const RDBAH: u32 = 0x2804;
    pub const RDLEN: u32 = 0x2808;
    pub const RDH: u32 = 0x2810;
    pub const RDT: u32 = 0x2818;
    pub const TDBAL: u32 = 0x3800;
    pub const TDBAH: u32 = 0x3804;
    pub const TDLEN: u32 = 0x3808;
    pub const TDH: u32 = 0x3810;
    pub const TDT: u32 = 0x3818;
    pub const MTA: u32 = 0x5200;
    pub const RAL0: u32 = 0x5400;
    pub const RAH0: u32 = 0x5404;

    pub const CTRL_SLU: u32 = 1 << 6;
    pub const CTRL_RST: u32 = 1 << 26;
    pub const RCTL_EN: u32 = 1 << 1;
    pub const TCTL_EN: u32 = 1 << 1;
}

use e1000_regs::*;

/// A model of an 82540EM: its registers with their side effects, its EEPROM, and the DMA
/// it does on its rings. It checks the driver as it goes (panics on what hardware would
/// misbehave on), and it can be told to misbehave itself.
pub struct FakeE1000 {
    bus: Bus,
    state: RefCell<DeviceState>,
}

pub struct DeviceState {
    registers: BTreeMap<u32, u32>,
    pub eeprom: [u16; 64],
    /// What RAL0/RAH0 get at reset; `None`: the EEPROM has to be read.
    pub preset_mac: Option<[u8; 6]>,
    /// Reads of CTRL for which RST still shows after a reset; `None`: it never clears.
    pub reset_reads: Option<u32>,
    reset_reads_left: u32,
    /// Whether EERD reads complete.
    pub eeprom_answers: bool,
    /// While set, transmit descriptors are queued but not processed (a stalled link).
    pub tx_stalled: bool,
    pub cable_connected: bool,
    /// Every register write, in order.
    pub writes: Vec<(u32, u32)>,
    pub transmitted: Vec<Vec<u8>>,
    /// Transmit descriptors the device finished, with their command byte.
    pub tx_commands: Vec<u8>,
    /// Frames the device had no descriptor for.
    pub missed: u32,
}

impl FakeE1000 {
    pub fn new(bus: &Bus, mac: [u8; 6]) -> Rc<FakeE1000> {
        let mut eeprom = [0u16; 64];
        for word in 0..3 {
            eeprom[word] = u16::from_le_bytes([mac[2 * word], mac[2 * word + 1]]);
        }
        let state = DeviceState {
            registers: BTreeMap::new(),
            eeprom,
            preset_mac: Some(mac),
            reset_reads: Some(3),
            reset_reads_left: 0,
            eeprom_answers: true,
            tx_stalled: false,
            cable_connected: true,
            writes: Vec::new(),
            transmitted: Vec::new(),
            tx_commands: Vec::new(),
            missed: 0,
        };
        let device = Rc::new(FakeE1000 { bus: bus.clone(), state: RefCell::new(state) });
        device.power_on();
        device
    }

    fn power_on(&self) {
        let mut state = self.state.borrow_mut();
        state.registers.clear();
        // Firmware left interrupts enabled and a stale tail behind.
        state.registers.insert(IMS, 0x9d);
        state.registers.insert(RDT, 5);
        if let Some(mac) = state.preset_mac {
            state.registers.insert(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
            state.registers.insert(RAH0, u32::from(u16::from_le_bytes([mac[4], mac[5]])) | 1 << 31);
        }
    }

    pub fn state(&self) -> core::cell::RefMut<'_, DeviceState> {
        self.state.borrow_mut()
    }

    pub fn register(&self, offset: u32) -> u32 {
        self.state.borrow().registers.get(&offset).copied().unwrap_or(0)
    }

    fn ring(&self, base_low: u32, base_high: u32, length: u32) -> (u64, u32) {
        let base = u64::from(self.register(base_low)) | (u64::from(self.register(base_high)) << 32);
        let bytes = self.register(length);
        assert!(bytes.is_multiple_of(128) && bytes > 0, "ring length {bytes} is not a multiple of 128");
        assert!(base.is_multiple_of(16), "ring base {base:#x} is not 16-byte aligned");
        (base, bytes / 16)
    }

    /// Delivers a frame as the device does: into the buffer of the descriptor at RDH,
    /// status DD|EOP, RDH advanced. Returns false when the ring had no room (RDH == RDT).
    pub fn deliver(&self, frame: &[u8]) -> bool {
        assert!(frame.len() <= 2048);
        self.deliver_raw(frame, frame.len() as u16, 0b11, 0)
    }

    /// Fills the descriptor at RDH with anything: `length`, `status` and `errors` as given,
    /// `data` written to its buffer.
    pub fn deliver_raw(&self, data: &[u8], length: u16, status: u8, errors: u8) -> bool {
        if self.register(RCTL) & RCTL_EN == 0 {
            return false;
        }
        let (base, count) = self.ring(RDBAL, RDBAH, RDLEN);
        let head = self.register(RDH);
        if head == self.register(RDT) {
            self.state.borrow_mut().missed += 1;
            return false;
        }
        let descriptor = base + u64::from(head) * 16;
        let buffer = self.bus.read_u64(descriptor);
        self.bus.write(buffer, data);
        let status_word = u64::from(length) | (u64::from(status) << 32) | (u64::from(errors) << 40);
        self.bus.write_u64(descriptor + 8, status_word);
        self.state.borrow_mut().registers.insert(RDH, (head + 1) % count);
        true
    }

    fn process_transmit(&self) {
        if self.state.borrow().tx_stalled || self.register(TCTL) & TCTL_EN == 0 {
            return;
        }
        let (base, count) = self.ring(TDBAL, TDBAH, TDLEN);
        let tail = self.register(TDT);
        assert!(tail < count, "TDT {tail} beyond the ring of {count}");
        let mut head = self.register(TDH);
        while head != tail {
            let descriptor = base + u64::from(head) * 16;
            let buffer = self.bus.read_u64(descriptor);
            let word = self.bus.read_u64(descriptor + 8);
            let length = (word & 0xffff) as usize;
            let command = (word >> 24) as u8;
            let frame = self.bus.read(buffer, length);
            {
                let mut state = self.state.borrow_mut();
                state.transmitted.push(frame);
                state.tx_commands.push(command);
            }
            if command & (1 << 3) != 0 {
                self.bus.write_u64(descriptor + 8, word | (1 << 32));
            }
            head = (head + 1) % count;
        }
        self.state.borrow_mut().registers.insert(TDH, head);
    }

    /// Lets a stalled transmitter go on.
    pub fn resume_transmit(&self) {
        self.state.borrow_mut().tx_stalled = false;
        self.process_transmit();
    }
}

impl Registers for Rc<FakeE1000> {
    fn read(&self, offset: u32) -> u32 {
        assert!(offset.is_multiple_of(4), "unaligned register read at {offset:#x}");
        let mut state = self.state.borrow_mut();
        match offset {
            CTRL if state.reset_reads_left > 0 => {
                state.reset_reads_left -= 1;
                state.registers.get(&CTRL).copied().unwrap_or(0) | CTRL_RST
            }
            CTRL if state.reset_reads.is_none() && state.registers.get(&CTRL).is_some_and(|c| c & CTRL_RST != 0) => {
                CTRL_RST
            }
            ICR => state.registers.insert(ICR, 0).unwrap_or(0),
            _ => state.registers.get(&offset).copied().unwrap_or(0),
        }
    }

    fn write(&self, offset: u32, value: u32) {
        assert!(offset.is_multiple_of(4), "unaligned register write at {offset:#x}");
        self.state.borrow_mut().writes.push((offset, value));
        match offset {
            CTRL if value & CTRL_RST != 0 => {
                self.power_on();
                let mut state = self.state.borrow_mut();
                match state.reset_reads {
                    Some(reads) => state.reset_reads_left = reads,
                    None => {
                        state.registers.insert(CTRL, CTRL_RST);
                    }
                }
            }
            CTRL => {
                let mut state = self.state.borrow_mut();
                state.registers.insert(CTRL, value);
                let link = value & CTRL_SLU != 0 && state.cable_connected;
                state.registers.insert(STATUS, if link { 0b11 } else { 0b01 });
            }
            EERD if value & 1 != 0 => {
                let mut state = self.state.borrow_mut();
                let word = usize::from((value >> 8) as u8);
                let answer = if state.eeprom_answers {
                    (u32::from(state.eeprom.get(word).copied().unwrap_or(0xffff)) << 16) | 1 << 4 | (value & 0xff00)
                } else {
                    value & !1
                };
                state.registers.insert(EERD, answer);
            }
            IMC => {
                let mut state = self.state.borrow_mut();
                let mask = state.registers.get(&IMS).copied().unwrap_or(0) & !value;
                state.registers.insert(IMS, mask);
            }
            TDT => {
                self.state.borrow_mut().registers.insert(TDT, value);
                self.process_transmit();
            }
            STATUS | ICR => {} // read-only
            _ => {
                self.state.borrow_mut().registers.insert(offset, value);
            }
        }
    }
}
