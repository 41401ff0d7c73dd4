//! The driver against a model of the device (`net::testing`): bring-up, both rings through
//! several wraps, back-pressure, and descriptors a hostile or broken device fills wrongly.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{Device, RxToken as _, TxToken as _};
use smoltcp::time::Instant;

use super::*;
use crate::net::testing::{e1000_regs as regs, Bus, FakeDma, FakeE1000};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

type Driver = E1000<Rc<FakeE1000>, FakeDma>;

struct Rig {
    bus: Bus,
    device: Rc<FakeE1000>,
    /// Microseconds the driver asked to wait.
    waited_us: u64,
}

impl Rig {
    fn new() -> Rig {
        let bus = Bus::new(0x10_0000, 1 << 20);
        let device = FakeE1000::new(&bus, MAC);
        Rig { bus, device, waited_us: 0 }
    }

    fn try_driver(&mut self) -> Result<Driver, InitError> {
        let rx = self.bus.region(DMA_REGION_BYTES, 4096);
        let tx = self.bus.region(DMA_REGION_BYTES, 4096);
        let waited = &mut self.waited_us;
        E1000::new(self.device.clone(), Model::I82540Em, rx, tx, &mut |us| *waited += u64::from(us))
    }

    fn driver(&mut self) -> Driver {
        self.try_driver().expect("bring-up")
    }
}

fn frame(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed * 31 + i) as u8).collect()
}

/// Receives one frame through smoltcp's token interface.
fn receive(driver: &mut Driver) -> Option<Vec<u8>> {
    let (rx, _tx) = driver.receive(Instant::ZERO)?;
    Some(rx.consume(|bytes| bytes.to_vec()))
}

fn transmit(driver: &mut Driver, bytes: &[u8]) -> bool {
    match driver.transmit(Instant::ZERO) {
        Some(token) => {
            token.consume(bytes.len(), |buffer| buffer.copy_from_slice(bytes));
            true
        }
        None => false,
    }
}

#[test]
fn bring_up_resets_masks_interrupts_and_starts_both_rings() {
    let mut rig = Rig::new();
    let driver = rig.driver();
    let device = &rig.device;
    let writes = device.state().writes.clone();
    let position = |offset: u32, check: &dyn Fn(u32) -> bool| {
        writes.iter().position(|&(o, v)| o == offset && check(v)).unwrap_or_else(|| panic!("no write to {offset:#x}"))
    };

    // Interrupts are masked before the reset, and again after it (a reset does not
    // promise a masked state), and nothing ever unmasks them: the driver is polled.
    let reset = position(regs::CTRL, &|v| v & regs::CTRL_RST != 0);
    assert!(writes[..reset].contains(&(regs::IMC, u32::MAX)));
    assert!(writes[reset..].contains(&(regs::IMC, u32::MAX)));
    assert!(writes.iter().all(|&(o, _)| o != regs::IMS));
    assert_eq!(device.register(regs::IMS), 0);
    assert!(rig.waited_us >= 1, "no pause after setting CTRL.RST");

    // Link set up, and the PHY says so.
    assert_ne!(device.register(regs::CTRL) & regs::CTRL_SLU, 0);
    assert!(driver.link_up());
    assert_eq!(driver.mac_address(), MAC);
    assert_eq!(device.register(regs::RAH0) >> 31, 1);
    assert!((0..128).all(|i| writes.iter().any(|&w| w == (regs::MTA + 4 * i, 0))));

    // Receive: the whole ring but one descriptor is the device's, each pointing at its own
    // buffer inside the region; enabled only after the ring is described.
    let rx_base = u64::from(device.register(regs::RDBAL)) | u64::from(device.register(regs::RDBAH)) << 32;
    assert_eq!(device.register(regs::RDLEN), (RING_LEN * 16) as u32);
    assert_eq!(device.register(regs::RDH), 0);
    assert_eq!(device.register(regs::RDT), RING_LEN as u32 - 1);
    for index in 0..RING_LEN as u64 {
        let buffer = rig.bus.read_u64(rx_base + index * 16);
        assert_eq!(buffer, rx_base + 4096 + index * 2048);
        assert_eq!(rig.bus.read_u64(rx_base + index * 16 + 8), 0, "status of descriptor {index}");
    }
    let rctl = device.register(regs::RCTL);
    assert_eq!(rctl, regs::RCTL_EN | 1 << 15 | 1 << 26, "EN, broadcast, strip CRC; 2 KiB buffers; no long frames");
    let enable_rx = position(regs::RCTL, &|v| v & regs::RCTL_EN != 0);
    for register in [regs::RDBAL, regs::RDBAH, regs::RDLEN, regs::RDH, regs::RDT] {
        assert!(writes.iter().rposition(|&(o, _)| o == register).unwrap() < enable_rx, "{register:#x} after RCTL.EN");
    }

    // Transmit: empty ring, enabled after it is described, padding short frames.
    assert_eq!(device.register(regs::TDLEN), (RING_LEN * 16) as u32);
    assert_eq!((device.register(regs::TDH), device.register(regs::TDT)), (0, 0));
    let tctl = device.register(regs::TCTL);
    assert_eq!(tctl & (regs::TCTL_EN | 1 << 3), regs::TCTL_EN | 1 << 3);
    let enable_tx = position(regs::TCTL, &|v| v & regs::TCTL_EN != 0);
    for register in [regs::TDBAL, regs::TDBAH, regs::TDLEN, regs::TDH, regs::TDT] {
        assert!(writes.iter().rposition(|&(o, _)| o == register).unwrap() < enable_tx, "{register:#x} after TCTL.EN");
    }
    assert_eq!(driver.counters(), NicCounters::default());
    assert_eq!(driver.model_name(), "Intel 82540EM");
}

#[test]
fn the_mac_comes_from_the_eeprom_when_the_address_registers_hold_none() {
    let mut rig = Rig::new();
    rig.device.state().preset_mac = None;
    let driver = rig.driver();
    assert_eq!(driver.mac_address(), MAC);
    // And the driver programmed it, so the device filters on it.
    assert_eq!(rig.device.register(regs::RAL0), u32::from_le_bytes([0x52, 0x54, 0x00, 0x12]));
    assert_eq!(rig.device.register(regs::RAH0), 0x5634 | 1 << 31);
}

#[test]
fn bring_up_failures_are_reported() {
    let mut rig = Rig::new();
    rig.device.state().reset_reads = None;
    assert_eq!(rig.try_driver().err(), Some(InitError::ResetTimeout));
    assert!(rig.waited_us >= u64::from(RESET_TIMEOUT_US), "gave up after {} us", rig.waited_us);

    let mut rig = Rig::new();
    rig.device.state().preset_mac = None;
    rig.device.state().eeprom_answers = false;
    assert_eq!(rig.try_driver().err(), Some(InitError::EepromTimeout));

    let mut rig = Rig::new();
    rig.device.state().preset_mac = Some([0xff; 6]);
    rig.device.state().eeprom = [0xffff; 64];
    assert_eq!(rig.try_driver().err(), Some(InitError::NoMacAddress));

    let rig = Rig::new();
    let small = rig.bus.region(DMA_REGION_BYTES - 1, 4096);
    let good = rig.bus.region(DMA_REGION_BYTES, 4096);
    let result = E1000::new(rig.device.clone(), Model::I82540Em, small, good, &mut |_| {});
    assert_eq!(result.err(), Some(InitError::RegionTooSmall { len: DMA_REGION_BYTES - 1 }));
    let misaligned = rig.bus.region(DMA_REGION_BYTES + 64, 4096);
    let misaligned = FakeDmaOffset::new(misaligned, 64);
    let good = FakeDmaOffset::new(rig.bus.region(DMA_REGION_BYTES, 4096), 0);
    let result = E1000::new(rig.device.clone(), Model::I82540Em, misaligned, good, &mut |_| {});
    assert!(matches!(result.err(), Some(InitError::RegionMisaligned { .. })));
    assert!(InitError::NoMacAddress.to_string().contains("no valid MAC address"));
}

/// A region that starts `skip` bytes into another, to get a misaligned one.
struct FakeDmaOffset {
    inner: FakeDma,
    skip: usize,
}

impl FakeDmaOffset {
    fn new(inner: FakeDma, skip: usize) -> Self {
        FakeDmaOffset { inner, skip }
    }
}

impl DmaRegion for FakeDmaOffset {
    fn bus_address(&self) -> u64 {
        self.inner.bus_address() + self.skip as u64
    }
    fn len(&self) -> usize {
        self.inner.len() - self.skip
    }
    fn read_u64(&self, offset: usize) -> u64 {
        self.inner.read_u64(offset + self.skip)
    }
    fn write_u64(&mut self, offset: usize, value: u64) {
        self.inner.write_u64(offset + self.skip, value)
    }
    fn with_bytes<T>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        self.inner.with_bytes(offset + self.skip, len, f)
    }
    fn with_bytes_mut<T>(&mut self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        self.inner.with_bytes_mut(offset + self.skip, len, f)
    }
}

#[test]
fn received_frames_come_out_in_order_through_several_wraps_of_the_ring() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    assert_eq!(receive(&mut driver), None);
    let mut seed = 0;
    // Batches of odd sizes, so that the ring wraps at every possible place.
    for batch in [1, 7, RING_LEN - 1, 3, RING_LEN - 1, 13, 30, 2, 31, 5] {
        let sent: Vec<Vec<u8>> = (0..batch).map(|i| frame(seed + i, 60 + (seed + i) * 37 % 1455)).collect();
        seed += batch;
        for bytes in &sent {
            assert!(rig.device.deliver(bytes), "the device found no free descriptor");
        }
        for bytes in &sent {
            assert_eq!(receive(&mut driver).as_ref(), Some(bytes));
            // Each consumed descriptor goes straight back to the device.
            assert_eq!(rig.device.register(regs::RDT) as usize, (driver.rx.next + RING_LEN - 1) % RING_LEN);
        }
        assert_eq!(receive(&mut driver), None);
    }
    let counters = driver.counters();
    assert_eq!(counters.rx_frames, seed as u64);
    assert_eq!(counters.rx_malformed + counters.rx_errors, 0);
    assert_eq!(rig.device.state().missed, 0);
}

#[test]
fn a_full_receive_ring_holds_one_descriptor_back_and_recovers() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    for i in 0..RING_LEN {
        rig.device.deliver(&frame(i, 64));
    }
    // RDH caught up with RDT: the last frame was missed, none was overwritten.
    assert_eq!(rig.device.state().missed, 1);
    for i in 0..RING_LEN - 1 {
        assert_eq!(receive(&mut driver), Some(frame(i, 64)));
    }
    assert_eq!(receive(&mut driver), None);
    assert!(rig.device.deliver(&frame(99, 64)));
    assert_eq!(receive(&mut driver), Some(frame(99, 64)));
}

#[test]
fn transmitted_frames_reach_the_wire_with_the_right_descriptor_commands() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    let mut sent = Vec::new();
    for i in 0..3 * RING_LEN + 5 {
        let bytes = frame(i, 42 + i * 13 % 1472);
        assert!(transmit(&mut driver, &bytes));
        sent.push(bytes);
    }
    let state = rig.device.state();
    assert_eq!(state.transmitted, sent);
    // End of packet, insert the CRC, report status.
    assert!(state.tx_commands.iter().all(|&command| command == 0b1011));
    assert_eq!(state.tx_commands.len(), sent.len());
    drop(state);
    let counters = driver.counters();
    assert_eq!(counters.tx_frames, sent.len() as u64);
    assert_eq!(counters.tx_bytes, sent.iter().map(|f| f.len() as u64).sum::<u64>());
}

#[test]
fn a_full_transmit_ring_pushes_back_until_the_device_catches_up() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    rig.device.state().tx_stalled = true;
    for i in 0..RING_LEN - 1 {
        assert!(transmit(&mut driver, &frame(i, 100)), "frame {i} refused early");
    }
    assert!(!transmit(&mut driver, &frame(1000, 100)));
    assert_eq!(driver.counters().tx_ring_full, 1);
    // Nothing was overwritten while the device held every descriptor.
    assert!(rig.device.state().transmitted.is_empty());

    // A received frame waits too: there would be no room to answer it.
    rig.device.deliver(&frame(7, 80));
    assert_eq!(receive(&mut driver), None);

    rig.device.resume_transmit();
    assert_eq!(rig.device.state().transmitted, (0..RING_LEN - 1).map(|i| frame(i, 100)).collect::<Vec<_>>());
    assert_eq!(receive(&mut driver), Some(frame(7, 80)));
    assert!(transmit(&mut driver, &frame(2000, 100)));
    assert_eq!(rig.device.state().transmitted.last(), Some(&frame(2000, 100)));
}

#[test]
fn a_frame_longer_than_a_buffer_is_dropped_without_touching_the_ring() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    let token = driver.transmit(Instant::ZERO).unwrap();
    let filled = token.consume(BUFFER_SIZE + 1, |buffer| {
        buffer.fill(0xee);
        buffer.len()
    });
    assert_eq!(filled, BUFFER_SIZE + 1);
    assert_eq!(driver.counters().tx_oversized, 1);
    assert_eq!(rig.device.register(regs::TDT), 0);
    assert!(rig.device.state().transmitted.is_empty());
    assert!(transmit(&mut driver, &frame(1, 60)));
}

#[test]
fn malformed_descriptors_are_dropped_and_never_read_outside_their_buffer() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    let rx_base = u64::from(rig.device.register(regs::RDBAL));
    let buffer_of = |index: u64| rx_base + 4096 + index * 2048;
    let (dd_eop, dd_only) = (0b11, 0b01);
    let junk = [0xa5; 64];
    rig.bus.forget_driver_accesses();

    let mut delivered = 0u64;
    let mut deliver_raw = |data: &[u8], length: u16, status: u8, errors: u8| {
        assert!(rig.device.deliver_raw(data, length, status, errors));
        delivered += 1;
    };
    deliver_raw(&junk, u16::MAX, dd_eop, 0); // longer than any buffer
    deliver_raw(&junk, 2049, dd_eop, 0); // one byte too long
    deliver_raw(&junk, 0, dd_eop, 0); // empty
    deliver_raw(&junk, 1000, dd_only, 0); // a frame split over buffers: start,
    deliver_raw(&junk, 1000, dd_only, 0); // middle,
    deliver_raw(&junk, 500, dd_eop, 0); // and end
    deliver_raw(&junk, 64, dd_eop, 0b0000_0001); // CRC error
    deliver_raw(&junk, 64, dd_eop, 0b1000_0000); // RX data error
    let good = frame(5, 2048);
    deliver_raw(&good, 2048, dd_eop, 0); // a full buffer is fine
    let checksum_flagged = frame(6, 90);
    deliver_raw(&checksum_flagged, 90, dd_eop, 0b0110_0000); // smoltcp judges checksums

    assert_eq!(receive(&mut driver), Some(good));
    assert_eq!(receive(&mut driver), Some(checksum_flagged));
    assert_eq!(receive(&mut driver), None);
    let counters = driver.counters();
    assert_eq!((counters.rx_malformed, counters.rx_errors, counters.rx_frames), (6, 2, 2));

    // Every byte the driver read lay inside the buffer of the descriptor it came from.
    let accesses = rig.bus.driver_accesses();
    assert_eq!(accesses.len(), 2, "{accesses:x?}");
    for (address, len, _) in accesses {
        let index = (address - buffer_of(0)) / 2048;
        assert!(index < delivered && address + len as u64 <= buffer_of(index) + 2048, "{address:#x}+{len}");
    }
    // Every descriptor went back to the device, and the ring still works all the way round.
    assert_eq!(u64::from(rig.device.register(regs::RDT)), delivered - 1);
    for i in 0..2 * RING_LEN {
        rig.device.deliver(&frame(i, 70));
        assert_eq!(receive(&mut driver), Some(frame(i, 70)));
    }
}

#[test]
fn a_device_that_keeps_refilling_bad_descriptors_cannot_hold_the_driver() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    // The whole ring is junk: one receive call looks at most one ring's worth.
    for _ in 0..RING_LEN - 1 {
        rig.device.deliver_raw(&[], 0, 0b11, 0);
    }
    assert_eq!(receive(&mut driver), None);
    assert_eq!(driver.counters().rx_malformed, RING_LEN as u64 - 1);
}

#[test]
fn a_scribbled_buffer_address_is_repaired_when_the_descriptor_is_handed_back() {
    let mut rig = Rig::new();
    let mut driver = rig.driver();
    let rx_base = u64::from(rig.device.register(regs::RDBAL));
    rig.device.deliver(&frame(1, 64));
    rig.bus.write_u64(rx_base, 0xdead_0000);
    assert_eq!(receive(&mut driver), Some(frame(1, 64)));
    assert_eq!(rig.bus.read_u64(rx_base), rx_base + 4096);
}

#[test]
fn the_82574_reads_its_eeprom_with_its_own_register_layout() {
    assert_eq!(Model::from_pci_id(0x8086, 0x100e), Some(Model::I82540Em));
    assert_eq!(Model::from_pci_id(0x8086, 0x100f), Some(Model::I82545Em));
    assert_eq!(Model::from_pci_id(0x8086, 0x10d3), Some(Model::I82574L));
    assert_eq!(Model::from_pci_id(0x8086, 0x1234), None);
    assert_eq!(Model::from_pci_id(0x10ec, 0x100e), None);
    assert_eq!(Model::I82574L.eerd_layout(), (1, 2, 2));
    assert_eq!(Model::I82540Em.eerd_layout(), (1, 16, 8));
}

/// smoltcp on the driver answers an ARP request for its address: the tokens work together.
#[test]
fn smoltcp_answers_arp_through_the_driver() {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpCidr,
        Ipv4Address,
    };

    let mut rig = Rig::new();
    let mut driver = rig.driver();
    let ours = Ipv4Address::new(10, 0, 2, 15);
    let mut iface = Interface::new(Config::new(EthernetAddress(MAC).into()), &mut driver, Instant::ZERO);
    iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(ours.into(), 24)).unwrap());
    let mut sockets = SocketSet::new(vec![]);

    let peer = EthernetAddress([0x52, 0x55, 10, 0, 2, 2]);
    let request = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: peer,
        source_protocol_addr: Ipv4Address::new(10, 0, 2, 2),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ours,
    };
    let ethernet =
        EthernetRepr { src_addr: peer, dst_addr: EthernetAddress::BROADCAST, ethertype: EthernetProtocol::Arp };
    let mut bytes = vec![0; ethernet.buffer_len() + request.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut bytes);
    ethernet.emit(&mut frame);
    request.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    assert!(rig.device.deliver(&bytes));

    iface.poll(Instant::from_millis(1), &mut driver, &mut sockets);
    let transmitted = rig.device.state().transmitted.clone();
    assert_eq!(transmitted.len(), 1);
    let reply = EthernetFrame::new_checked(&transmitted[0][..]).unwrap();
    assert_eq!(reply.dst_addr(), peer);
    assert_eq!(reply.src_addr(), EthernetAddress(MAC));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(reply.payload()).unwrap()).unwrap();
    assert!(matches!(arp, ArpRepr::EthernetIpv4 { operation: ArpOperation::Reply, source_protocol_addr, .. }
        if source_protocol_addr == ours));
}
