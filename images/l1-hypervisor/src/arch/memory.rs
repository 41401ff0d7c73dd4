//! L1's access to the work region (layout.rs): physical memory that the
//! boot page tables map 1:1 and that nothing else in the image uses. It is
//! only touched after `layout::check` has found it to be available RAM
//! above the image ([`claim`]), and every access is bounds-checked against
//! it, so no access can reach the image, the loader's data or a device.

use core::sync::atomic::{AtomicBool, Ordering};

use l1_hypervisor::ept::TableMemory;
use l1_hypervisor::layout::{PAGE_SIZE, WORK_BASE, WORK_END};

static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Records that `layout::check` passed: from now on the region is ours.
pub fn claim() {
    CLAIMED.store(true, Ordering::SeqCst);
}

fn checked(address: u64, size: u64) -> *mut u8 {
    assert!(CLAIMED.load(Ordering::SeqCst), "the work region was used before it was checked");
    assert!(
        address >= WORK_BASE
            && address.checked_add(size).is_some_and(|end| end <= WORK_END)
            && address.is_multiple_of(size),
        "{address:#x} (+{size}) is not an aligned address in the work region"
    );
    address as *mut u8
}

/// The work region, as the EPT builder and L1's other writers see it.
#[derive(Clone, Copy)]
pub struct WorkRegion;

impl TableMemory for WorkRegion {
    fn read(&self, address: u64) -> u64 {
        read_u64(address)
    }

    fn write(&mut self, address: u64, value: u64) {
        write_u64(address, value);
    }
}

pub fn read_u64(address: u64) -> u64 {
    let pointer = checked(address, 8) as *const u64;
    // Safe because `checked` proved the address aligned, inside the claimed
    // work region (identity-mapped RAM nothing else uses); volatile because
    // L2 and the processor's VMX and EPT walks also access it.
    unsafe { pointer.read_volatile() }
}

pub fn write_u64(address: u64, value: u64) {
    let pointer = checked(address, 8) as *mut u64;
    // Safe as in `read_u64`.
    unsafe { pointer.write_volatile(value) }
}

pub fn write_u32(address: u64, value: u32) {
    let pointer = checked(address, 4) as *mut u32;
    // Safe as in `read_u64`.
    unsafe { pointer.write_volatile(value) }
}

pub fn zero_page(address: u64) {
    checked(address, PAGE_SIZE);
    for offset in (0..PAGE_SIZE).step_by(8) {
        write_u64(address + offset, 0);
    }
}
