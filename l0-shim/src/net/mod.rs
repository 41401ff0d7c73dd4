//! The shim's network device: PCI discovery and a polled NIC driver that the control
//! server's smoltcp stack runs on.
//!
//! Everything here is safe Rust over three small traits, so the whole driver runs on the
//! host against fakes: [`pci::ConfigSpace`] (configuration space, ports 0xcf8/0xcfc in the
//! kernel), [`Registers`] (a device's memory-mapped registers) and [`DmaRegion`] (memory
//! the device reads and writes by itself). The kernel implements them in `arch` and
//! `kernel::dma`.
//!
//! [`Nic`] is the seam for other devices: a virtio-net driver written over the same traits
//! plugs into the control plane by implementing it.

pub mod control_setup;
pub mod e1000;
pub mod pci;
#[cfg(test)]
pub(crate) mod testing;

use smoltcp::phy::Device;

/// A device's memory-mapped registers, 32 bits wide. Register reads and writes can have
/// side effects in the device, which is why the methods take `&self`: the hardware is
/// shared state whatever Rust thinks, and both halves of a smoltcp token pair reach it.
pub trait Registers {
    fn read(&self, offset: u32) -> u32;
    fn write(&self, offset: u32, value: u32);
}

/// Memory shared with a device that does DMA: descriptor rings and packet buffers.
///
/// Offsets are from the region's start; an implementation must refuse (panic on) any
/// access that does not fit in the region, so that a driver bug cannot reach other memory.
pub trait DmaRegion {
    /// The address the device uses for the region's first byte (its physical address:
    /// the shim programs no IOMMU).
    fn bus_address(&self) -> u64;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A volatile 64-bit load, for descriptors the device may rewrite at any time.
    fn read_u64(&self, offset: usize) -> u64;
    /// A volatile 64-bit store.
    fn write_u64(&mut self, offset: usize, value: u64);
    /// Lends `len` bytes at `offset` that the device does not own at the moment.
    fn with_bytes<T>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> T) -> T;
    fn with_bytes_mut<T>(&mut self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T;
}

/// What a NIC driver tells the control plane beside moving frames (which is smoltcp's
/// [`Device`]).
pub trait Nic: Device {
    /// The station address the device filters on.
    fn mac_address(&self) -> [u8; 6];
    /// Whether the PHY reports a link; frames sent without one are lost.
    fn link_up(&self) -> bool;
    fn counters(&self) -> NicCounters;
    /// The device's name for logs, e.g. "Intel 82540EM".
    fn model_name(&self) -> &'static str;
}

/// Frames moved and frames refused, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames the device flagged as bad (CRC, symbol, sequence or carrier errors).
    pub rx_errors: u64,
    /// Descriptors the device filled in a way the driver does not accept: a length of zero
    /// or beyond the buffer, or a frame split over several buffers.
    pub rx_malformed: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Times a frame could not be queued because every transmit descriptor was in flight.
    pub tx_ring_full: u64,
    /// Frames longer than a transmit buffer, dropped.
    pub tx_oversized: u64,
    /// Frames the device reported as not sent (excess or late collisions).
    pub tx_errors: u64,
}

/// Whether `mac` can be a station's own address: not all zeroes, not a group address.
pub fn is_unicast_mac(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 1 == 0
}

/// `aa:bb:cc:dd:ee:ff`.
pub struct MacDisplay(pub [u8; 6]);

impl core::fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn unicast_and_display() {
        assert!(is_unicast_mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(!is_unicast_mac([0; 6]));
        assert!(!is_unicast_mac([0xff; 6]));
        assert!(!is_unicast_mac([0x01, 0, 0x5e, 0, 0, 1]));
        assert_eq!(MacDisplay([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(), "52:54:00:12:34:56");
    }
}
