//! The shim's own NIC: found on PCI, its registers mapped uncached, its rings in DMA
//! frames, brought up by the driver in `l0_shim::net`.
//!
//! Another kind of NIC (virtio-net) comes in here: a driver implementing
//! `l0_shim::net::Nic`, probed after the e1000, with [`ShimNic`] becoming an enum of the two.

use alloc::format;
use alloc::string::String;

use l0_shim::memory::PhysRange;
use l0_shim::net::e1000::{self, Model, E1000};
use l0_shim::net::pci::{self, Bar, PciFunction};

use crate::arch::mmio::MmioRegisters;
use crate::arch::pci::PortConfigSpace;
use crate::kernel::dma::DmaFrames;
use crate::kernel::{memory, tsc};

pub type ShimNic = E1000<MmioRegisters, DmaFrames>;

/// The NIC and where it was found.
pub struct Found {
    pub nic: ShimNic,
    pub function: PciFunction,
    pub registers_phys: u64,
}

/// Finds the first supported NIC and brings it up; the error says why there is none.
pub fn probe() -> Result<Found, String> {
    let mut config = PortConfigSpace::take().ok_or("the PCI configuration ports are already in use")?;
    let functions = pci::scan(&mut config);
    let (function, model) = functions
        .iter()
        .find_map(|function| Some((*function, Model::from_pci_id(function.vendor_id, function.device_id)?)))
        .ok_or_else(|| {
            format!(
                "no supported NIC among {} PCI function(s) (the shim drives the e1000: 8086:100e, 100f, 10d3)",
                functions.len()
            )
        })?;
    let at = function.address;
    let name = model.name();
    let (address, size) = match pci::read_bar(&mut config, at, 0) {
        Ok(Bar::Memory { address, size, .. }) => (address, size),
        Ok(Bar::Io { .. }) => return Err(format!("{name} at {at}: BAR0 is an I/O BAR, not its registers")),
        Err(error) => return Err(format!("{name} at {at}: BAR0: {error}")),
    };
    if size < e1000::REGISTER_SPAN {
        return Err(format!("{name} at {at}: BAR0 has {size:#x} bytes, fewer than its registers need"));
    }
    let range = PhysRange::from_start_len(address, size).ok_or_else(|| format!("{name} at {at}: BAR0 wraps"))?;
    let virt = memory::map_mmio(range).map_err(|error| format!("{name} at {at}: {error}"))?;
    pci::enable_memory_and_dma(&mut config, at);
    // Safe because map_mmio just mapped the BAR uncached at `virt`, for good, and this is
    // the one value that reaches it: the device was found once, with the only
    // configuration-space handle.
    let registers = unsafe { MmioRegisters::new(virt, size) };
    let ring = |what| {
        DmaFrames::allocate(e1000::DMA_REGION_BYTES).ok_or_else(|| {
            format!("{name} at {at}: no {} KiB of contiguous RAM for its {what} ring", e1000::DMA_REGION_BYTES >> 10)
        })
    };
    let (rx, tx) = (ring("receive")?, ring("transmit")?);
    match E1000::new(registers, model, rx, tx, &mut tsc::wait_us) {
        Ok(nic) => Ok(Found { nic, function, registers_phys: address }),
        Err(error) => {
            // The rings' frames go back to the allocator: the device must not reach them.
            pci::disable_memory_and_dma(&mut config, at);
            Err(format!("{name} at {at}: bring-up failed: {error}"))
        }
    }
}
