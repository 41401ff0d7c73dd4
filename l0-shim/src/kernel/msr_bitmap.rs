//! The MSR bitmap all vCPUs share (SDM 25.6.9): which RDMSR/WRMSR exit.
//!
//! Everything exits, so the monitor's MSR policy sees it, except the MSRs
//! whose guest values the VMCS itself loads and saves on every entry and
//! exit (PAT, DEBUGCTL, SYSENTER, FS/GS base): for those the hardware keeps
//! guest and host apart, and an exit would only cost time. The same goes for
//! the SYSCALL/SWAPGS/TSC_AUX MSRs, which the scheduler switches itself.

use l0_shim::memory::PhysAddr;
use spin::Once;

use crate::kernel::memory;

const PASSED_THROUGH: [u32; 7 + SWITCHED_MSRS.len()] = [
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x1d9,       // IA32_DEBUGCTL
    0x277,       // IA32_PAT
    0xc000_0100, // IA32_FS_BASE
    0xc000_0101, // IA32_GS_BASE
    SWITCHED_MSRS[0],
    SWITCHED_MSRS[1],
    SWITCHED_MSRS[2],
    SWITCHED_MSRS[3],
    SWITCHED_MSRS[4],
    SWITCHED_MSRS[5],
];

/// MSRs the VMCS does not switch but a guest owns while it runs (SYSCALL
/// targets, SWAPGS base, RDTSCP's aux value). The shim does not use them,
/// so the guest may access them directly; the scheduler swaps them when
/// another vCPU takes the CPU (see `Vcpu::switch_msrs_from`).
pub const SWITCHED_MSRS: [u32; 6] = [
    0xc000_0081, // IA32_STAR
    0xc000_0082, // IA32_LSTAR
    0xc000_0083, // IA32_CSTAR
    0xc000_0084, // IA32_FMASK
    0xc000_0102, // IA32_KERNEL_GS_BASE
    0xc000_0103, // IA32_TSC_AUX
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
