//! A polled driver for Intel's 8254x gigabit controllers ("e1000"), the NIC that both Bochs
//! and QEMU emulate (82540EM), as a smoltcp [`phy::Device`].
//!
//! Legacy descriptors, one 2 KiB buffer per descriptor, interrupts masked. Receive and
//! transmit each own a [`DmaRegion`]: a ring of descriptors in its first page, the buffers
//! after it. The driver never trusts what the device wrote beyond one descriptor's status:
//! it finds finished descriptors by their DD bit (never by reading the head registers), and a
//! received length that does not fit the buffer drops the frame instead of being used.
//!
//! Register and bit names follow the PCI/PCI-X Family of Gigabit Ethernet Controllers
//! Software Developer's Manual (8254x), chapter 13 for registers and chapter 3 for
//! descriptors.

use alloc::vec;
use core::fmt;
use core::sync::atomic::{fence, Ordering};

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::{is_unicast_mac, DmaRegion, Nic, NicCounters, Registers};

/// Register offsets in BAR0.
mod reg {
    pub const CTRL: u32 = 0x0000; // device control
    pub const STATUS: u32 = 0x0008; // device status
    pub const EERD: u32 = 0x0014; // EEPROM read
    pub const ICR: u32 = 0x00c0; // interrupt cause, cleared by reading
    pub const IMC: u32 = 0x00d8; // interrupt mask clear
    pub const RCTL: u32 = 0x0100; // receive control
    pub const TCTL: u32 = 0x0400; // transmit control
    pub const TIPG: u32 = 0x0410; // transmit inter-packet gap
    pub const RDBAL: u32 = 0x2800; // receive ring base, low 32 bits
    pub const RDBAH: u32 = 0x2804; // receive ring base, high 32 bits
    pub const RDLEN: u32 = 0x2808; // receive ring length in bytes
    pub const RDH: u32 = 0x2810; // receive head (the device's next descriptor)
    pub const RDT: u32 = 0x2818; // receive tail (first descriptor the device may not use)
    pub const TDBAL: u32 = 0x3800;
    pub const TDBAH: u32 = 0x3804;
    pub const TDLEN: u32 = 0x3808;
    pub const TDH: u32 = 0x3810;
    pub const TDT: u32 = 0x3818;
    pub const MTA: u32 = 0x5200; // multicast table, 128 registers
    pub const RAL0: u32 = 0x5400; // receive address 0, low
    pub const RAH0: u32 = 0x5404; // receive address 0, high
}

/// Bytes of BAR0 the driver touches: the mapping must cover at least this much.
pub const REGISTER_SPAN: u64 = reg::RAH0 as u64 + 4;

const MTA_ENTRIES: u32 = 128;

const CTRL_LRST: u32 = 1 << 3; // link reset
const CTRL_ASDE: u32 = 1 << 5; // auto-speed detection
const CTRL_SLU: u32 = 1 << 6; // set link up
const CTRL_ILOS: u32 = 1 << 7; // invert loss-of-signal
const CTRL_RST: u32 = 1 << 26; // device reset, self-clearing
const CTRL_VME: u32 = 1 << 30; // VLAN mode
const CTRL_PHY_RST: u32 = 1 << 31;

const STATUS_LU: u32 = 1 << 1; // link up

// Receive control. Left at zero: BSIZE (bits 17:16) with BSEX, for 2048-byte buffers, and
// LPE, so that the device drops frames longer than 1522 bytes and none needs two buffers.
const RCTL_EN: u32 = 1 << 1;
const RCTL_BAM: u32 = 1 << 15; // accept broadcast (ARP and DHCP need it)
const RCTL_SECRC: u32 = 1 << 26; // strip the Ethernet CRC

const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3; // pad short packets to 64 bytes
const TCTL_CT: u32 = 0x0f << 4; // collision threshold (the manual's recommended value)
const TCTL_COLD_FULL_DUPLEX: u32 = 0x40 << 12; // collision distance
const TCTL_RTLC: u32 = 1 << 24; // retransmit on late collision

/// IPGT 10, IPGR1 8, IPGR2 6: the manual's values for the copper 82540EM/82545EM.
const TIPG_COPPER: u32 = 10 | (8 << 10) | (6 << 20);

const RAH_AV: u32 = 1 << 31; // address valid

const RX_STATUS_DD: u8 = 1 << 0; // descriptor done
const RX_STATUS_EOP: u8 = 1 << 1; // end of packet
/// CRC, symbol, sequence, carrier-extension and RX-data errors. The checksum-offload error
/// bits are left out: smoltcp checks checksums itself.
const RX_FRAME_ERRORS: u8 = 0b1001_0111;

const TX_CMD_EOP: u8 = 1 << 0;
const TX_CMD_IFCS: u8 = 1 << 1; // append the CRC
const TX_CMD_RS: u8 = 1 << 3; // report status (set DD when done)
const TX_STATUS_DD: u8 = 1 << 0;
const TX_STATUS_EC: u8 = 1 << 1; // excess collisions
const TX_STATUS_LC: u8 = 1 << 2; // late collision

/// Descriptors per ring: a multiple of 8 (the ring length must be a multiple of 128 bytes).
pub const RING_LEN: usize = 32;
const DESCRIPTOR_BYTES: usize = 16;
pub const BUFFER_SIZE: usize = 2048;
/// Buffers start on the page after the ring.
const BUFFERS_OFFSET: usize = 4096;
/// What each of the two DMA regions must hold.
pub const DMA_REGION_BYTES: usize = BUFFERS_OFFSET + RING_LEN * BUFFER_SIZE;
/// Ring bases must be 16-byte aligned; 128 (a cache-line group) is what the manual advises.
const RING_ALIGN: u64 = 128;
/// The largest Ethernet frame without its CRC and without a VLAN tag.
const MAX_FRAME: usize = 1514;

const RESET_TIMEOUT_US: u32 = 100_000;
const EEPROM_TIMEOUT_US: u32 = 10_000;
const POLL_STEP_US: u32 = 10;

/// Which member of the family: they differ in the EEPROM read register's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    I82540Em,
    I82545Em,
    I82574L,
}

impl Model {
    pub const VENDOR_INTEL: u16 = 0x8086;

    pub fn from_pci_id(vendor_id: u16, device_id: u16) -> Option<Model> {
        match (vendor_id, device_id) {
            (Self::VENDOR_INTEL, 0x100e) => Some(Model::I82540Em),
            (Self::VENDOR_INTEL, 0x100f) => Some(Model::I82545Em),
            (Self::VENDOR_INTEL, 0x10d3) => Some(Model::I82574L),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::I82540Em => "Intel 82540EM",
            Model::I82545Em => "Intel 82545EM",
            Model::I82574L => "Intel 82574L",
        }
    }

    /// EERD: (start bit, done bit, shift of the word address). The 8254x parts put the
    /// address at bit 8 and DONE at bit 4; the 82574 at bit 2 and bit 1. Data is bits 31:16.
    fn eerd_layout(self) -> (u32, u32, u32) {
        match self {
            Model::I82540Em | Model::I82545Em => (1 << 0, 1 << 4, 8),
            Model::I82574L => (1 << 0, 1 << 1, 2),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// A DMA region is smaller than [`DMA_REGION_BYTES`].
    RegionTooSmall { len: usize },
    /// A DMA region's bus address is not aligned for a descriptor ring.
    RegionMisaligned { bus_address: u64 },
    /// CTRL.RST did not clear.
    ResetTimeout,
    /// An EEPROM read did not complete.
    EepromTimeout,
    /// Neither the receive-address registers nor the EEPROM hold a unicast address.
    NoMacAddress,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::RegionTooSmall { len } => {
                write!(f, "a DMA region of {len} bytes is smaller than the {DMA_REGION_BYTES} needed")
            }
            InitError::RegionMisaligned { bus_address } => {
                write!(f, "a DMA region at {bus_address:#x} is not {RING_ALIGN}-byte aligned")
            }
            InitError::ResetTimeout => {
                write!(f, "the device did not finish its reset in {} ms", RESET_TIMEOUT_US / 1000)
            }
            InitError::EepromTimeout => write!(f, "the EEPROM did not answer in {} ms", EEPROM_TIMEOUT_US / 1000),
            InitError::NoMacAddress => write!(f, "no valid MAC address in the receive-address registers or the EEPROM"),
        }
    }
}

fn descriptor_offset(index: usize) -> usize {
    index * DESCRIPTOR_BYTES
}

fn buffer_offset(index: usize) -> usize {
    BUFFERS_OFFSET + index * BUFFER_SIZE
}

fn check_region(region: &impl DmaRegion) -> Result<(), InitError> {
    if region.len() < DMA_REGION_BYTES {
        return Err(InitError::RegionTooSmall { len: region.len() });
    }
    if !region.bus_address().is_multiple_of(RING_ALIGN) {
        return Err(InitError::RegionMisaligned { bus_address: region.bus_address() });
    }
    Ok(())
}

/// The driver: the device's registers and its two rings.
pub struct E1000<R: Registers, M: DmaRegion> {
    registers: R,
    model: Model,
    mac: [u8; 6],
    rx: RxRing<M>,
    tx: TxRing<M>,
}

impl<R: Registers, M: DmaRegion> E1000<R, M> {
    /// Resets the device and brings it up: interrupts masked, link set up, the station
    /// address programmed, both rings live. `wait_us` busy-waits that many microseconds.
    /// Does not wait for the link: it comes up in the background (see [`Nic::link_up`]).
    pub fn new(
        registers: R,
        model: Model,
        rx_memory: M,
        tx_memory: M,
        wait_us: &mut dyn FnMut(u32),
    ) -> Result<Self, InitError> {
        check_region(&rx_memory)?;
        check_region(&tx_memory)?;

        // Masked before the reset too: the reset takes a while and must not be interrupted
        // by whatever state the firmware left behind.
        registers.write(reg::IMC, u32::MAX);
        registers.write(reg::CTRL, registers.read(reg::CTRL) | CTRL_RST);
        // The manual asks for at least 1 us before looking at the bit again.
        wait_us(POLL_STEP_US);
        poll_until(wait_us, RESET_TIMEOUT_US, || registers.read(reg::CTRL) & CTRL_RST == 0)
            .ok_or(InitError::ResetTimeout)?;
        registers.write(reg::IMC, u32::MAX);
        let _ = registers.read(reg::ICR);

        let ctrl = registers.read(reg::CTRL);
        registers.write(reg::CTRL, (ctrl | CTRL_SLU | CTRL_ASDE) & !(CTRL_LRST | CTRL_PHY_RST | CTRL_ILOS | CTRL_VME));

        let mac = read_mac(&registers, model, wait_us)?;
        let [a, b, c, d, e, g] = mac;
        registers.write(reg::RAL0, u32::from_le_bytes([a, b, c, d]));
        registers.write(reg::RAH0, u32::from(u16::from_le_bytes([e, g])) | RAH_AV);
        for entry in 0..MTA_ENTRIES {
            registers.write(reg::MTA + 4 * entry, 0);
        }

        let rx = RxRing::start(rx_memory, &registers);
        let tx = TxRing::start(tx_memory, &registers);
        Ok(E1000 { registers, model, mac, rx, tx })
    }
}

/// Calls `done` every few microseconds until it says yes or `timeout_us` have passed.
fn poll_until(wait_us: &mut dyn FnMut(u32), timeout_us: u32, mut done: impl FnMut() -> bool) -> Option<()> {
    let mut waited = 0;
    loop {
        if done() {
            return Some(());
        }
        if waited >= timeout_us {
            return None;
        }
        wait_us(POLL_STEP_US);
        waited += POLL_STEP_US;
    }
}

/// The address the EEPROM loaded into RAL0/RAH0 at reset (QEMU and Bochs preset it the
/// same way); the EEPROM's first three words if those registers hold none.
fn read_mac(registers: &impl Registers, model: Model, wait_us: &mut dyn FnMut(u32)) -> Result<[u8; 6], InitError> {
    let high = registers.read(reg::RAH0);
    if high & RAH_AV != 0 {
        let [a, b, c, d] = registers.read(reg::RAL0).to_le_bytes();
        let [e, g, _, _] = high.to_le_bytes();
        let mac = [a, b, c, d, e, g];
        if is_unicast_mac(mac) {
            return Ok(mac);
        }
    }
    let mut mac = [0; 6];
    for word in 0..3 {
        let value = read_eeprom(registers, model, word, wait_us)?;
        mac[2 * usize::from(word)..][..2].copy_from_slice(&value.to_le_bytes());
    }
    if is_unicast_mac(mac) {
        Ok(mac)
    } else {
        Err(InitError::NoMacAddress)
    }
}

fn read_eeprom(
    registers: &impl Registers,
    model: Model,
    word: u8,
    wait_us: &mut dyn FnMut(u32),
) -> Result<u16, InitError> {
    let (start, done, address_shift) = model.eerd_layout();
    registers.write(reg::EERD, start | (u32::from(word) << address_shift));
    let mut value = 0;
    poll_until(wait_us, EEPROM_TIMEOUT_US, || {
        value = registers.read(reg::EERD);
        value & done != 0
    })
    .ok_or(InitError::EepromTimeout)?;
    Ok((value >> 16) as u16)
}

/// The receive ring. The device owns the descriptors from RDH up to RDT (exclusive); the
/// driver owns the rest. One descriptor is always the driver's, so that a full ring
/// (RDH == RDT) cannot look like an empty one.
struct RxRing<M: DmaRegion> {
    memory: M,
    /// The next descriptor the device will finish.
    next: usize,
    /// Length of the validated frame waiting at `next`, if any.
    ready: Option<usize>,
    /// Dropping the buffers of a frame that started in an earlier descriptor.
    in_fragmented_frame: bool,
    counters: NicCounters,
}

impl<M: DmaRegion> RxRing<M> {
    fn start(mut memory: M, registers: &impl Registers) -> Self {
        for index in 0..RING_LEN {
            give_rx_descriptor(&mut memory, index);
        }
        let base = memory.bus_address();
        registers.write(reg::RDBAL, base as u32);
        registers.write(reg::RDBAH, (base >> 32) as u32);
        registers.write(reg::RDLEN, (RING_LEN * DESCRIPTOR_BYTES) as u32);
        registers.write(reg::RDH, 0);
        registers.write(reg::RDT, (RING_LEN - 1) as u32);
        registers.write(reg::RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);
        RxRing { memory, next: 0, ready: None, in_fragmented_frame: false, counters: NicCounters::default() }
    }

    /// Whether a good frame waits at `next`. Finished descriptors that hold no acceptable
    /// frame are counted and handed back on the way. Looks at most one ring's worth, so a
    /// device that keeps refilling bad descriptors cannot hold the caller here.
    fn frame_ready(&mut self, registers: &impl Registers) -> bool {
        if self.ready.is_some() {
            return true;
        }
        for _ in 0..RING_LEN {
            let status_word = self.memory.read_u64(descriptor_offset(self.next) + 8);
            let [length_low, length_high, _, _, status, errors, _, _] = status_word.to_le_bytes();
            if status & RX_STATUS_DD == 0 {
                return false;
            }
            // The buffer was written before the status: read it only after the status.
            fence(Ordering::Acquire);
            let length = usize::from(u16::from_le_bytes([length_low, length_high]));
            let end_of_packet = status & RX_STATUS_EOP != 0;
            let continues_a_frame = core::mem::replace(&mut self.in_fragmented_frame, !end_of_packet);
            if continues_a_frame || !end_of_packet || length == 0 || length > BUFFER_SIZE {
                self.counters.rx_malformed += 1;
            } else if errors & RX_FRAME_ERRORS != 0 {
                self.counters.rx_errors += 1;
            } else {
                self.ready = Some(length);
                return true;
            }
            self.recycle(registers);
        }
        false
    }

    /// Returns the descriptor at `next` to the device and moves on.
    fn recycle(&mut self, registers: &impl Registers) {
        let index = self.next;
        give_rx_descriptor(&mut self.memory, index);
        // The cleared descriptor must be in memory before the device may fetch it.
        fence(Ordering::Release);
        registers.write(reg::RDT, index as u32);
        self.next = (index + 1) % RING_LEN;
        self.ready = None;
    }
}

/// Points descriptor `index` at its own buffer with a clear status. The address is
/// rewritten every time, so a descriptor the device scribbled on cannot send the next
/// frame elsewhere.
fn give_rx_descriptor(memory: &mut impl DmaRegion, index: usize) {
    let buffer = memory.bus_address() + buffer_offset(index) as u64;
    memory.write_u64(descriptor_offset(index), buffer);
    memory.write_u64(descriptor_offset(index) + 8, 0);
}

/// The transmit ring: the driver fills descriptors at `tail` and the device finishes them
/// in order; `oldest` is the first one not known to be finished.
struct TxRing<M: DmaRegion> {
    memory: M,
    tail: usize,
    oldest: usize,
    counters: NicCounters,
}

impl<M: DmaRegion> TxRing<M> {
    fn start(mut memory: M, registers: &impl Registers) -> Self {
        for index in 0..RING_LEN {
            memory.write_u64(descriptor_offset(index), 0);
            memory.write_u64(descriptor_offset(index) + 8, 0);
        }
        let base = memory.bus_address();
        registers.write(reg::TDBAL, base as u32);
        registers.write(reg::TDBAH, (base >> 32) as u32);
        registers.write(reg::TDLEN, (RING_LEN * DESCRIPTOR_BYTES) as u32);
        registers.write(reg::TDH, 0);
        registers.write(reg::TDT, 0);
        registers.write(reg::TIPG, TIPG_COPPER);
        registers.write(reg::TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD_FULL_DUPLEX | TCTL_RTLC);
        TxRing { memory, tail: 0, oldest: 0, counters: NicCounters::default() }
    }

    /// Takes back the descriptors the device has finished.
    fn reclaim(&mut self) {
        while self.oldest != self.tail {
            let status = self.memory.read_u64(descriptor_offset(self.oldest) + 8).to_le_bytes()[4];
            if status & TX_STATUS_DD == 0 {
                break;
            }
            if status & (TX_STATUS_EC | TX_STATUS_LC) != 0 {
                self.counters.tx_errors += 1;
            }
            self.oldest = (self.oldest + 1) % RING_LEN;
        }
    }

    /// One descriptor stays unused: with TDT == TDH the device sees an empty ring.
    fn has_room(&self) -> bool {
        (self.tail + 1) % RING_LEN != self.oldest
    }

    fn send<T>(&mut self, registers: &impl Registers, len: usize, fill: impl FnOnce(&mut [u8]) -> T) -> T {
        if len > BUFFER_SIZE || !self.has_room() {
            // smoltcp never asks for more than the MTU, and only asks with a token that
            // saw room; should it anyway, the frame is built in a scratch buffer and lost.
            if len > BUFFER_SIZE {
                self.counters.tx_oversized += 1;
            } else {
                self.counters.tx_ring_full += 1;
            }
            return fill(&mut vec![0; len]);
        }
        let index = self.tail;
        let result = self.memory.with_bytes_mut(buffer_offset(index), len, fill);
        let buffer = self.memory.bus_address() + buffer_offset(index) as u64;
        let command = TX_CMD_EOP | TX_CMD_IFCS | TX_CMD_RS;
        self.memory.write_u64(descriptor_offset(index), buffer);
        self.memory.write_u64(descriptor_offset(index) + 8, len as u64 | (u64::from(command) << 24));
        // The frame and its descriptor must be in memory before the device sees the tail.
        fence(Ordering::Release);
        self.tail = (index + 1) % RING_LEN;
        registers.write(reg::TDT, self.tail as u32);
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
        result
    }
}

pub struct RxToken<'a, R: Registers, M: DmaRegion> {
    rx: &'a mut RxRing<M>,
    registers: &'a R,
}

pub struct TxToken<'a, R: Registers, M: DmaRegion> {
    tx: &'a mut TxRing<M>,
    registers: &'a R,
}

impl<R: Registers, M: DmaRegion> phy::RxToken for RxToken<'_, R, M> {
    fn consume<T, F: FnOnce(&[u8]) -> T>(self, f: F) -> T {
        let len = self.rx.ready.expect("an RxToken exists only for a validated frame");
        let result = self.rx.memory.with_bytes(buffer_offset(self.rx.next), len, f);
        self.rx.counters.rx_frames += 1;
        self.rx.counters.rx_bytes += len as u64;
        self.rx.recycle(self.registers);
        result
    }
}

impl<R: Registers, M: DmaRegion> phy::TxToken for TxToken<'_, R, M> {
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, len: usize, f: F) -> T {
        self.tx.send(self.registers, len, f)
    }
}

impl<R: Registers, M: DmaRegion> phy::Device for E1000<R, M> {
    type RxToken<'a>
        = RxToken<'a, R, M>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, R, M>
    where
        Self: 'a;

    /// A received frame comes with room to answer it; while the transmit ring is full,
    /// received frames wait in the receive ring (and the device drops what does not fit),
    /// which slows the peer down instead of losing replies.
    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.tx.reclaim();
        if !self.tx.has_room() || !self.rx.frame_ready(&self.registers) {
            return None;
        }
        Some((
            RxToken { rx: &mut self.rx, registers: &self.registers },
            TxToken { tx: &mut self.tx, registers: &self.registers },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.tx.reclaim();
        if !self.tx.has_room() {
            self.tx.counters.tx_ring_full += 1;
            return None;
        }
        Some(TxToken { tx: &mut self.tx, registers: &self.registers })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities.max_burst_size = Some(RING_LEN - 1);
        capabilities
    }
}

impl<R: Registers, M: DmaRegion> Nic for E1000<R, M> {
    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.registers.read(reg::STATUS) & STATUS_LU != 0
    }

    fn counters(&self) -> NicCounters {
        let (rx, tx) = (self.rx.counters, self.tx.counters);
        NicCounters {
            rx_frames: rx.rx_frames,
            rx_bytes: rx.rx_bytes,
            rx_errors: rx.rx_errors,
            rx_malformed: rx.rx_malformed,
            tx_frames: tx.tx_frames,
            tx_bytes: tx.tx_bytes,
            tx_ring_full: tx.tx_ring_full,
            tx_oversized: tx.tx_oversized,
            tx_errors: tx.tx_errors,
        }
    }

    fn model_name(&self) -> &'static str {
        self.model.name()
    }
}

#[cfg(test)]
mod tests;
