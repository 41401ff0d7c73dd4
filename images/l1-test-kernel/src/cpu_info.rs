//! Decoding CPUID results: strings packed into registers, and the TSC
//! frequency that leaves 0x15 and 0x16 describe.

use core::fmt;

/// CPUID.1:ECX bits.
pub const ECX_VMX: u32 = 1 << 5;
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bits the kernel itself relies on.
pub const EDX_TSC: u32 = 1 << 4;
pub const EDX_MSR: u32 = 1 << 5;
pub const EDX_APIC: u32 = 1 << 9;
/// CPUID.80000001h:EDX bits.
pub const EXT_EDX_NX: u32 = 1 << 20;
pub const EXT_EDX_LONG_MODE: u32 = 1 << 29;

/// An MSR index in no architectural, vendor or hypervisor range: RDMSR and
/// WRMSR of it must raise #GP(0).
pub const UNKNOWN_MSR: u32 = 0x1234_5678;

/// Unknown MSRs that `hostile=msrs` reads and writes: a run of consecutive
/// indexes in an unused range, and single ones in every other gap
/// (avoiding 0x4000_00xx, Hyper-V's, and 0x4b56_4dxx, KVM's).
pub fn hostile_msrs() -> impl Iterator<Item = u32> {
    (0x2000_0000..0x2000_0010).chain([
        0x0001_0000,
        UNKNOWN_MSR,
        0x4000_1000,
        0x8000_0000,
        0x8765_4321,
        0xbfff_ffff,
        0xc000_3000,
        0xdead_beef,
        0xffff_ffff,
    ])
}

/// Twelve bytes from three registers, in the order given (the vendor string
/// is EBX, EDX, ECX; a hypervisor signature is EBX, ECX, EDX).
pub fn register_string(registers: [u32; 3]) -> [u8; 12] {
    let mut bytes = [0; 12];
    for (chunk, register) in bytes.chunks_exact_mut(4).zip(registers) {
        chunk.copy_from_slice(&register.to_le_bytes());
    }
    bytes
}

/// Shows bytes as text, with anything unprintable as `\xNN`.
pub struct Printable<'a>(pub &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            if byte.is_ascii_graphic() || byte == b' ' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// The initial APIC id in CPUID.1:EBX[31:24].
pub fn initial_apic_id(leaf1_ebx: u32) -> u32 {
    leaf1_ebx >> 24
}

/// What CPUID says about the TSC frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscLeaves {
    /// Leaf 0x15 (EAX denominator, EBX numerator, ECX crystal Hz), if the
    /// maximum basic leaf reaches it.
    pub leaf_15: Option<[u32; 3]>,
    /// Leaf 0x16 EAX (processor base frequency in MHz), if reachable.
    pub leaf_16_base_mhz: Option<u32>,
}

/// How the TSC frequency described by CPUID disagrees with the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscMismatch {
    /// The maximum basic leaf is below 0x15.
    NoLeaf15,
    /// Leaf 0x15 does not enumerate the TSC/crystal ratio (EAX or EBX is 0).
    NoRatio { denominator: u32, numerator: u32 },
    /// Leaf 0x15 gives no crystal frequency and leaf 0x16 no base frequency.
    NoFrequency,
    /// Leaf 0x15's crystal and ratio give another frequency.
    Leaf15 { khz: u64 },
    /// Leaf 0x16's base frequency is another one.
    Leaf16 { mhz: u32 },
}

impl fmt::Display for TscMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TscMismatch::NoLeaf15 => write!(f, "max basic leaf is below 0x15"),
            TscMismatch::NoRatio { denominator, numerator } => {
                write!(f, "leaf 0x15 has no TSC/crystal ratio ({numerator}/{denominator})")
            }
            TscMismatch::NoFrequency => write!(f, "leaf 0x15 has no crystal frequency and leaf 0x16 no base frequency"),
            TscMismatch::Leaf15 { khz } => write!(f, "leaf 0x15 describes {khz} kHz"),
            TscMismatch::Leaf16 { mhz } => write!(f, "leaf 0x16 base frequency is {mhz} MHz"),
        }
    }
}

impl TscLeaves {
    /// The TSC frequency from leaf 0x15 alone: crystal × numerator / denominator.
    pub fn leaf_15_khz(&self) -> Option<u64> {
        let [denominator, numerator, crystal_hz] = self.leaf_15?;
        (denominator != 0 && numerator != 0 && crystal_hz != 0)
            .then(|| u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator) / 1000)
    }

    /// Checks that these leaves describe `expected_khz`, as Linux reads
    /// them: leaf 0x15's ratio must be there; its crystal frequency must give
    /// the frequency to 0.1 %, or, when it is 0, leaf 0x16's base frequency
    /// must be the frequency in whole MHz. A non-zero leaf 0x16 must agree too.
    pub fn check(&self, expected_khz: u64) -> Result<(), TscMismatch> {
        let [denominator, numerator, crystal_hz] = self.leaf_15.ok_or(TscMismatch::NoLeaf15)?;
        if denominator == 0 || numerator == 0 {
            return Err(TscMismatch::NoRatio { denominator, numerator });
        }
        let base_mhz = self.leaf_16_base_mhz.filter(|&mhz| mhz != 0);
        if crystal_hz == 0 && base_mhz.is_none() {
            return Err(TscMismatch::NoFrequency);
        }
        if let Some(khz) = self.leaf_15_khz() {
            if khz.abs_diff(expected_khz) > (expected_khz / 1000).max(1) {
                return Err(TscMismatch::Leaf15 { khz });
            }
        }
        if let Some(mhz) = base_mhz {
            if (u64::from(mhz) * 1000).abs_diff(expected_khz) >= 1000 {
                return Err(TscMismatch::Leaf16 { mhz });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_strings() {
        // "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel".
        let bytes = register_string([0x756e_6547, 0x4965_6e69, 0x6c65_746e]);
        assert_eq!(&bytes, b"GenuineIntel");
        assert_eq!(Printable(&bytes).to_string(), "GenuineIntel");
        assert_eq!(Printable(&[b'a', 0, b'b']).to_string(), "a\\x00b");
    }

    #[test]
    fn apic_id() {
        assert_eq!(initial_apic_id(0x0300_0800), 3);
    }

    #[test]
    fn tsc_from_crystal_and_ratio() {
        // A 25 MHz crystal with ratio 96/2 gives 1.2 GHz.
        let leaves = TscLeaves { leaf_15: Some([2, 96, 25_000_000]), leaf_16_base_mhz: Some(1200) };
        assert_eq!(leaves.leaf_15_khz(), Some(1_200_000));
        assert_eq!(leaves.check(1_200_000), Ok(()));
        assert_eq!(leaves.check(1_210_000), Err(TscMismatch::Leaf15 { khz: 1_200_000 }));
    }

    #[test]
    fn tsc_from_base_frequency_when_the_crystal_is_unknown() {
        let leaves = TscLeaves { leaf_15: Some([2, 200, 0]), leaf_16_base_mhz: Some(3500) };
        assert_eq!(leaves.leaf_15_khz(), None);
        assert_eq!(leaves.check(3_500_000), Ok(()));
        assert_eq!(leaves.check(3_500_999), Ok(()));
        assert_eq!(leaves.check(3_400_000), Err(TscMismatch::Leaf16 { mhz: 3500 }));
    }

    #[test]
    fn missing_descriptions() {
        assert_eq!(TscLeaves::default().check(1000), Err(TscMismatch::NoLeaf15));
        let no_ratio = TscLeaves { leaf_15: Some([0, 0, 0]), leaf_16_base_mhz: None };
        assert_eq!(no_ratio.check(1000), Err(TscMismatch::NoRatio { denominator: 0, numerator: 0 }));
        let no_frequency = TscLeaves { leaf_15: Some([1, 2, 0]), leaf_16_base_mhz: Some(0) };
        assert_eq!(no_frequency.check(1000), Err(TscMismatch::NoFrequency));
    }

    #[test]
    fn leaf_16_must_agree_with_leaf_15() {
        let leaves = TscLeaves { leaf_15: Some([1, 100, 24_000_000]), leaf_16_base_mhz: Some(2000) };
        assert_eq!(leaves.check(2_400_000), Err(TscMismatch::Leaf16 { mhz: 2000 }));
    }
}
