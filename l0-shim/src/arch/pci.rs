//! PCI configuration mechanism #1: a function and dword address written to port 0xcf8
//! selects the register that port 0xcfc then reads or writes.

use core::sync::atomic::{AtomicBool, Ordering};

use l0_shim::net::pci::{ConfigSpace, PciAddress};

use crate::arch::cpu::{inl, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
const ENABLE: u32 = 1 << 31;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The configuration ports. There is one: the address/data pair is a two-step protocol
/// that two users would interleave.
pub struct PortConfigSpace {
    _only_through_take: (),
}

impl PortConfigSpace {
    /// The ports, the first time; `None` afterwards.
    pub fn take() -> Option<PortConfigSpace> {
        (!TAKEN.swap(true, Ordering::AcqRel)).then_some(PortConfigSpace { _only_through_take: () })
    }

    fn select(&mut self, function: PciAddress, offset: u8) {
        let address = ENABLE
            | u32::from(function.bus) << 16
            | u32::from(function.device & 0x1f) << 11
            | u32::from(function.function & 0x7) << 8
            | u32::from(offset & 0xfc);
        // Safe because the shim owns the configuration ports (guests reach ports only
        // through their monitors' emulation) and this is their only user (`take`).
        unsafe { outl(CONFIG_ADDRESS, address) };
    }
}

impl ConfigSpace for PortConfigSpace {
    fn read_u32(&mut self, function: PciAddress, offset: u8) -> u32 {
        self.select(function, offset);
        // Safe for the reason given in `select`; reading configuration data has no side
        // effect on any device.
        unsafe { inl(CONFIG_DATA) }
    }

    fn write_u32(&mut self, function: PciAddress, offset: u8, value: u32) {
        self.select(function, offset);
        // Safe for the reason given in `select`; the callers (net::pci) write only the
        // command register and BARs of the function they drive, and restore BARs.
        unsafe { outl(CONFIG_DATA, value) };
    }
}
