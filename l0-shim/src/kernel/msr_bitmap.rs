//! The MSR bitmap all vCPUs share (SDM 25.6.9): which RDMSR/WRMSR exit.
//!
//! Everything exits, so the monitor's MSR policy sees it, except the MSRs
//! whose guest values the VMCS itself loads and saves on every entry and
//! exit (PAT, DEBUGCTL, SYSENTER, FS/GS base): for those the hardware keeps
//! guest and host apart, and an exit would only cost time.

use l0_shim::memory::PhysAddr;
use spin::Once;

use crate::kernel::memory;

const PASSED_THROUGH: [u32; 7] = [
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x1d9,       // IA32_DEBUGCTL
    0x277,       // IA32_PAT
    0xc000_0100, // IA32_FS_BASE
    0xc000_0101, // IA32_GS_BASE
];

/// Offsets of the four 1 KiB bitmaps in the page.
const READ_LOW: usize = 0;
const READ_HIGH: usize = 1024;
const WRITE_LOW: usize = 2048;
const WRITE_HIGH: usize = 3072;
const HIGH_BASE: u32 = 0xc000_0000;

static BITMAP: Once<PhysAddr> = Once::new();

/// The bitmap's physical address (built on first use).
pub fn address() -> PhysAddr {
    *BITMAP.call_once(|| {
        let frame = memory::with_frames(|frames| frames.alloc_frame()).expect("a frame for the MSR bitmap");
        let mut page = [0xffu8; 4096];
        for msr in PASSED_THROUGH {
            let (read, write, bit) =
                if msr >= HIGH_BASE { (READ_HIGH, WRITE_HIGH, msr - HIGH_BASE) } else { (READ_LOW, WRITE_LOW, msr) };
            let (byte, mask) = ((bit / 8) as usize, !(1u8 << (bit % 8)));
            page[read + byte] &= mask;
            page[write + byte] &= mask;
        }
        memory::write_frame(frame, &page);
        frame
    })
}
