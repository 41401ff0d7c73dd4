//! Fake hosts' CPUID for the policy tests.

use super::cpuid::*;

/// CPUID of a Core i9-7900X (Skylake-X, family 6 model 0x55 stepping 4)
/// as seen by the shim on bare metal: max basic leaf 0x16, no hypervisor
/// range, host APIC ID 2, CR4.OSXSAVE and CR4.PKE set by the shim.
///
/// Like the real CPU, a leaf beyond the maximum of its range returns the
/// highest basic leaf (0x16).
pub fn skylake_x(leaf: u32, subleaf: u32) -> [u32; 4] {
    match (leaf, subleaf) {
        // "GenuineIntel".
        (0x0, _) => [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        (0x1, _) => [
            0x0005_0654,
            // APIC ID 2, 16 logical processors, CLFLUSH 8 * 8 bytes.
            0x0210_0800,
            // Everything but CNXT-ID (10), bit 16 and the hypervisor bit.
            0x7ffe_fbff,
            0xbfeb_fbff,
        ],
        (0x2, _) => [0x0076_0036, 0x00ff_0000, 0, 0x00c3_0000],
        (0x4, 0) => [0x7c00_4121, 0x01c0_003f, 0x0000_003f, 0],
        (0x4, 1) => [0x7c00_4122, 0x01c0_003f, 0x0000_003f, 0],
        (0x4, 2) => [0x7c00_4143, 0x03c0_003f, 0x0000_03ff, 0],
        (0x4, 3) => [0x7c0f_c163, 0x0280_003f, 0x0000_37ff, 0x0000_0004],
        (0x4, _) => [0; 4],
        (0x5, _) => [0x40, 0x40, 0x3, 0x0000_2020],
        (0x6, _) => [0x0000_0077, 0x2, 0x9, 0],
        (0x7, 0) => [
            0,
            leaf7_ebx::FSGSBASE
                | leaf7_ebx::TSC_ADJUST
                | leaf7_ebx::BMI1
                | leaf7_ebx::HLE
                | leaf7_ebx::AVX2
                | leaf7_ebx::FDP_EXCPTN_ONLY
                | leaf7_ebx::SMEP
                | leaf7_ebx::BMI2
                | leaf7_ebx::ERMS
                | leaf7_ebx::INVPCID
                | leaf7_ebx::RTM
                | leaf7_ebx::RDT_M
                | leaf7_ebx::FPU_CS_DS_DEPRECATED
                | leaf7_ebx::MPX
                | leaf7_ebx::RDT_A
                | leaf7_ebx::AVX512F
                | leaf7_ebx::AVX512DQ
                | leaf7_ebx::RDSEED
                | leaf7_ebx::ADX
                | leaf7_ebx::SMAP
                | leaf7_ebx::CLFLUSHOPT
                | leaf7_ebx::CLWB
                | leaf7_ebx::PT
                | leaf7_ebx::AVX512CD
                | leaf7_ebx::AVX512BW
                | leaf7_ebx::AVX512VL,
            leaf7_ecx::PKU | leaf7_ecx::OSPKE,
            leaf7_edx::MD_CLEAR
                | leaf7_edx::IBRS_IBPB
                | leaf7_edx::STIBP
                | leaf7_edx::L1D_FLUSH
                | leaf7_edx::ARCH_CAPABILITIES
                | leaf7_edx::SSBD,
        ],
        (0x7, _) => [0; 4],
        (0x9, _) => [0; 4],
        (0xa, _) => [0x0730_0404, 0, 0, 0x0000_0603],
        // Two threads per core, 20 logical processors, host x2APIC ID 2.
        (0xb, 0) => [1, 2, 0x100, 2],
        (0xb, 1) => [5, 20, 0x201, 2],
        (0xb, n) => [0, 0, n & 0xff, 2],
        // x87, SSE, AVX, MPX (2), AVX-512 (3), PKRU; the current XCR0 takes 2696 bytes.
        (0xd, 0) => [0x2ff, 2696, 2696, 0],
        // XSAVEOPT, XSAVEC, XGETBV1, XSAVES; IA32_XSS may hold PT (bit 8).
        (0xd, 1) => [0xf, 2440, 0x100, 0],
        (0xd, 2) => [256, 576, 0, 0],
        (0xd, 3) => [64, 960, 0, 0],
        (0xd, 4) => [64, 1024, 0, 0],
        (0xd, 5) => [64, 1088, 0, 0],
        (0xd, 6) => [512, 1152, 0, 0],
        (0xd, 7) => [1024, 1664, 0, 0],
        // PT: supervisor state, no standard-format offset.
        (0xd, 8) => [128, 0, 1, 0],
        (0xd, 9) => [8, 2688, 0, 0],
        (0xd, _) => [0; 4],
        (0xf, 0) => [0, 0xff, 0, 0x2],
        (0x10, 0) => [0, 0xa, 0, 0],
        (0x14, 0) => [1, 0xf, 0x7, 0],
        // Skylake does not report its crystal.
        (0x15, _) => [2, 0x11c, 0, 0],
        (0x16, _) => [3300, 4500, 100, 0],
        (0x3 | 0x8 | 0xc | 0xe | 0x11..=0x13, _) => [0; 4],
        (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
        // LAHF, LZCNT, PREFETCHW; SYSCALL, NX, 1 GiB pages, RDTSCP, LM.
        (0x8000_0001, _) => [0, 0, 0x121, 0x2c10_0800],
        (0x8000_0002..=0x8000_0004, _) => brand_string(leaf - 0x8000_0002),
        (0x8000_0005, _) => [0; 4],
        (0x8000_0006, _) => [0, 0, 0x0400_8040, 0],
        (0x8000_0007, _) => [0, 0, 0, 0x100],
        // 46 physical, 48 linear address bits.
        (0x8000_0008, _) => [0x302e, 0, 0, 0],
        // Out of range: the highest basic leaf.
        _ => skylake_x(0x16, subleaf),
    }
}

pub const SKYLAKE_X_BRAND: &[u8; 48] = b"Intel(R) Core(TM) i9-7900X CPU @ 3.30GHz\0\0\0\0\0\0\0\0";

/// Leaf 0x80000002 + `part` of the brand string.
fn brand_string(part: u32) -> [u32; 4] {
    let bytes = &SKYLAKE_X_BRAND[part as usize * 16..][..16];
    let word = |i: usize| u32::from_le_bytes([bytes[i * 4], bytes[i * 4 + 1], bytes[i * 4 + 2], bytes[i * 4 + 3]]);
    [word(0), word(1), word(2), word(3)]
}

/// A host that sets every bit of every leaf, with sane maxima: whatever
/// the guest sees of it is exactly what the policy lets through.
pub fn every_bit(leaf: u32, subleaf: u32) -> [u32; 4] {
    match leaf {
        0x0 => [0x20, u32::MAX, u32::MAX, u32::MAX],
        // Type 3 (unified), level 3: a real-looking cache for every subleaf up to 8.
        0x4 if subleaf < 8 => [0xffff_ff63, u32::MAX, u32::MAX, u32::MAX],
        0x4 => [0; 4],
        0xd if subleaf >= 2 => [64, 576 + 64 * subleaf, 0, 0],
        0x8000_0000 => [0x8000_0021, u32::MAX, u32::MAX, u32::MAX],
        0x8000_0008 => [0x3939, u32::MAX, u32::MAX, u32::MAX],
        _ => [u32::MAX; 4],
    }
}
