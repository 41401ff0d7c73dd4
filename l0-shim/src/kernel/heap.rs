//! The shim's heap: one contiguous region of RAM chosen at boot, reached
//! through the direct map.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// # Safety
/// `start..start + size` must be mapped, writable, unused memory that stays
/// reserved for the heap forever. Called once.
pub unsafe fn init(start: *mut u8, size: usize) {
    // Safe because the caller upholds this function's contract.
    unsafe { HEAP.lock().init(start, size) };
}

pub fn used_and_free() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.used(), heap.free())
}
