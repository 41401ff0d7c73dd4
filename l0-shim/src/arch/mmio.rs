//! Memory-mapped device registers.

use l0_shim::net::Registers;

/// A device's registers, mapped uncached in the shim's MMIO window.
pub struct MmioRegisters {
    base: u64,
    len: u64,
}

impl MmioRegisters {
    /// # Safety
    /// `base..base + len` must be mapped uncached to one device's registers, for as long
    /// as the value lives, and nothing else may access those registers meanwhile.
    pub unsafe fn new(base: u64, len: u64) -> MmioRegisters {
        MmioRegisters { base, len }
    }

    /// The register's address; an access outside the window is a driver bug that must not
    /// reach whatever is mapped next to it.
    fn address(&self, offset: u32) -> *mut u32 {
        let offset = u64::from(offset);
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len,
            "register {offset:#x} outside a {:#x}-byte window",
            self.len
        );
        (self.base + offset) as *mut u32
    }
}

impl Registers for MmioRegisters {
    fn read(&self, offset: u32) -> u32 {
        let register = self.address(offset);
        // Safe because `new`'s contract makes the aligned, bounds-checked address a
        // register of the device this value owns.
        unsafe { core::ptr::read_volatile(register) }
    }

    fn write(&self, offset: u32, value: u32) {
        let register = self.address(offset);
        // Safe for the reason given in `read`.
        unsafe { core::ptr::write_volatile(register, value) }
    }
}
