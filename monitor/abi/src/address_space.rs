//! Where things are in a monitor's address space.
//!
//! Every monitor runs in ring 3 with its own page tables, built by the shim
//! from this layout; the monitor image is linked for it. The lower half is
//! the monitor's; the upper half holds the shim, mapped supervisor-only.
//!
//! | start | what | rights |
//! |---|---|---|
//! | [`IMAGE_BASE`] | the monitor image (its ELF segments) | code R+X, data RW NX |
//! | [`STACK_TOP`] − [`STACK_BYTES`] | the stack, an unmapped guard page below | RW NX |
//! | [`HEAP_BASE`] | the heap, [`BootInfo::heap_bytes`](crate::boot_info::BootInfo) long | RW NX |
//! | [`MESSAGE_PAGE`] | the message page (events in, responses out) | RW NX |
//! | [`GUEST_RAM_BASE`] | the guest's RAM at its guest-physical offsets | RW NX |
//! | [`BOOT_INFO_BASE`] | the boot information ([`crate::boot_info`]) | RO NX |
//! | [`MODULES_BASE`] | the guest's boot modules (kernel, ramdisk), each page-aligned | RO NX |
//!
//! Nothing else is mapped: not another guest's memory, not the shim's.

/// Where the monitor image is linked (its linker script says the same).
pub const IMAGE_BASE: u64 = 0x40_0000;
/// The image may not reach the stack's guard page.
pub const IMAGE_LIMIT: u64 = 0x4000_0000;
/// The stack grows down from here; the page below its bottom stays unmapped.
pub const STACK_TOP: u64 = 0x8000_0000;
pub const STACK_BYTES: u64 = 256 << 10;
pub const HEAP_BASE: u64 = 0x10_0000_0000;
pub const MESSAGE_PAGE: u64 = 0x20_0000_0000;
pub const GUEST_RAM_BASE: u64 = 0x40_0000_0000;
/// Guest RAM may be at most this large (the window up to the boot info).
pub const GUEST_RAM_LIMIT: u64 = BOOT_INFO_BASE - GUEST_RAM_BASE;
pub const BOOT_INFO_BASE: u64 = 0x80_0000_0000;
/// The boot information may be at most this long.
pub const BOOT_INFO_MAX_BYTES: usize = 16 << 10;
pub const MODULES_BASE: u64 = 0x80_1000_0000;
/// The end of the lower half: nothing of the monitor's lies above.
pub const USER_LIMIT: u64 = 0x0000_8000_0000_0000;
