//! XSAVE for guests: the host enables it so that guests may use AVX and
//! the rest, and each vCPU's extended state is saved and restored around
//! its turns so that no guest sees another's registers.
//!
//! The shim itself only uses x87 and SSE (XCR0 = 3); a guest's XCR0 is
//! loaded right before VM entry and the host's right after the exit.

use alloc::vec;
use alloc::vec::Vec;

use spin::Once;

use crate::arch::cpu::{cpuid, read_cr4, write_cr4, xrstor, xsave, xsetbv0};

const CPUID_XSAVE: u32 = 1 << 26;
const CR4_OSXSAVE: u64 = 1 << 18;
/// x87 and SSE: what the shim's own code uses.
pub const HOST_XCR0: u64 = 0b11;
const AVX: u64 = 1 << 2;
const SSE: u64 = 1 << 1;
const X87: u64 = 1 << 0;
/// AVX-512's opmask, ZMM_Hi256 and Hi16_ZMM: all three or none (SDM 13.3).
const AVX512: u64 = 0b111 << 5;
/// MPX's two components go together too.
const MPX: u64 = 0b11 << 3;

struct XsaveSupport {
    /// XCR0 bits the CPU supports (CPUID.0DH.0:EDX:EAX).
    supported: u64,
    /// Bytes of an XSAVE area holding every supported component.
    area_size: usize,
}

static SUPPORT: Once<Option<XsaveSupport>> = Once::new();

/// Turns XSAVE on (CR4.OSXSAVE, XCR0 = x87|SSE) if the CPU has it.
pub fn enable() -> bool {
    SUPPORT
        .call_once(|| {
            if cpuid(1, 0).ecx & CPUID_XSAVE == 0 {
                return None;
            }
            // Safe because the CPU supports XSAVE (CPUID) and x87|SSE is
            // always a valid XCR0 on such a CPU.
            unsafe {
                write_cr4(read_cr4() | CR4_OSXSAVE);
                xsetbv0(HOST_XCR0);
            }
            let leaf = cpuid(0xd, 0);
            Some(XsaveSupport {
                supported: (u64::from(leaf.edx) << 32) | u64::from(leaf.eax),
                area_size: leaf.ecx as usize,
            })
        })
        .is_some()
}

/// Why a guest's XCR0 value cannot be loaded, or `None` if it can
/// (SDM vol. 1, 13.3: the XSETBV rules).
pub fn invalid_xcr0(value: u64) -> Option<&'static str> {
    let Some(Some(support)) = SUPPORT.get() else { return Some("the CPU has no XSAVE") };
    if value & !support.supported != 0 {
        Some("it enables components this CPU does not have")
    } else if value & X87 == 0 {
        Some("x87 state must stay enabled")
    } else if value & AVX != 0 && value & SSE == 0 {
        Some("AVX needs SSE")
    } else if value & AVX512 != 0 && (value & AVX512 != AVX512 || value & AVX == 0) {
        Some("AVX-512 needs all three of its components and AVX")
    } else if value & MPX != 0 && value & MPX != MPX {
        Some("MPX needs both of its components")
    } else {
        None
    }
}

/// Components beyond x87 and SSE. The guest's x87/SSE registers go through
/// FXSAVE instead: XSAVE skips components XCR0 does not enable, and a guest
/// may use SSE with XCR0 = x87 only (or before it ever writes XCR0).
const EXTENDED: u64 = !HOST_XCR0;

/// One vCPU's extended state and XCR0.
pub struct GuestXstate {
    pub xcr0: u64,
    /// 64 bytes more than the area, so that a 64-byte aligned area fits.
    buffer: Vec<u8>,
}

impl GuestXstate {
    /// The state a CPU has after reset (an all-zero XSAVE image restores
    /// every component to its initial state).
    pub fn new() -> Self {
        let size = match SUPPORT.get() {
            Some(Some(support)) => support.area_size + 64,
            _ => 0,
        };
        Self { xcr0: X87, buffer: vec![0; size] }
    }

    fn area(&mut self) -> *mut u8 {
        let start = self.buffer.as_mut_ptr();
        start.wrapping_add(start.align_offset(64))
    }

    /// Before VM entry, after the host's own x87/SSE state was saved and
    /// before the guest's is restored.
    pub fn load(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let (area, xcr0) = (self.area(), self.xcr0);
        // Safe because XSAVE is enabled (the buffer exists only then), the
        // guest's XCR0 was validated by `invalid_xcr0` (or is the reset
        // value), and the aligned area has the CPU's full XSAVE size and
        // holds either zeroes or what XSAVE wrote.
        unsafe {
            if xcr0 != HOST_XCR0 {
                xsetbv0(xcr0);
            }
            if xcr0 & EXTENDED != 0 {
                xrstor(area, xcr0 & EXTENDED);
            }
        }
    }

    /// After the VM exit, once the guest's x87/SSE state was saved and
    /// before the host's comes back.
    pub fn save(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let (area, xcr0) = (self.area(), self.xcr0);
        // Safe for the same reasons as `load`; the guest's XCR0 is still
        // loaded, so XSAVE writes exactly the guest's components.
        unsafe {
            if xcr0 & EXTENDED != 0 {
                xsave(area, xcr0 & EXTENDED);
            }
            if xcr0 != HOST_XCR0 {
                xsetbv0(HOST_XCR0);
            }
        }
    }
}
