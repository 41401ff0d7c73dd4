//! The guest's memory-type range registers (SDM vol. 3A, 13.11).
//!
//! Under EPT the hardware never looks at them: the EPT memory type takes
//! the MTRRs' place. They only tell the guest what its memory is, so they
//! are kept per vCPU, validated as a CPU would and otherwise inert.

use super::numbers::*;
use super::GpReason;

/// Variable ranges offered (IA32_MTRRCAP.VCNT), as most Intel CPUs have.
pub const VARIABLE_RANGES: usize = 8;
/// The fixed-range MTRRs, in the order of [`FIXED_RANGE_MSRS`].
pub const FIXED_RANGES: usize = 11;

/// The fixed-range MTRRs covering the first MiB.
pub const FIXED_RANGE_MSRS: [u32; FIXED_RANGES] = [
    IA32_MTRR_FIX64K_00000,
    IA32_MTRR_FIX16K_80000,
    IA32_MTRR_FIX16K_A0000,
    IA32_MTRR_FIX4K_C0000,
    IA32_MTRR_FIX4K_C0000 + 1,
    IA32_MTRR_FIX4K_C0000 + 2,
    IA32_MTRR_FIX4K_C0000 + 3,
    IA32_MTRR_FIX4K_C0000 + 4,
    IA32_MTRR_FIX4K_C0000 + 5,
    IA32_MTRR_FIX4K_C0000 + 6,
    IA32_MTRR_FIX4K_F8000,
];

/// IA32_MTRRCAP bits.
pub mod cap {
    /// Bits 7:0: the number of variable ranges.
    pub const VCNT_MASK: u64 = 0xff;
    /// The fixed-range MTRRs exist.
    pub const FIX: u64 = 1 << 8;
    /// The write-combining type is supported.
    pub const WC: u64 = 1 << 10;
    /// System-management range registers (not offered).
    pub const SMRR: u64 = 1 << 11;
}

/// IA32_MTRR_DEF_TYPE bits.
pub mod def_type {
    /// Bits 7:0: the type of memory no range covers.
    pub const TYPE_MASK: u64 = 0xff;
    /// The fixed ranges are enabled.
    pub const FE: u64 = 1 << 10;
    /// The MTRRs are enabled.
    pub const E: u64 = 1 << 11;
}

/// IA32_MTRR_PHYSMASKn bit 11: the range is valid.
pub const PHYSMASK_VALID: u64 = 1 << 11;

/// What IA32_MTRRCAP reads.
pub const MTRRCAP: u64 = VARIABLE_RANGES as u64 | cap::FIX | cap::WC;

/// The memory types of the MTRRs and the PAT (SDM 13.3).
pub mod memory_type {
    pub const UC: u8 = 0;
    pub const WC: u8 = 1;
    pub const WT: u8 = 4;
    pub const WP: u8 = 5;
    pub const WB: u8 = 6;
    /// PAT only: UC that MTRRs may turn into WC.
    pub const UC_MINUS: u8 = 7;
}

/// Whether an MTRR may hold `memory_type` (2, 3 and 7 are reserved there).
pub const fn is_mtrr_type(memory_type: u64) -> bool {
    matches!(memory_type, 0 | 1 | 4 | 5 | 6)
}

/// Whether a PAT entry may hold `memory_type` (2 and 3 are reserved).
pub const fn is_pat_type(memory_type: u64) -> bool {
    matches!(memory_type, 0 | 1 | 4 | 5 | 6 | 7)
}

/// Checks the eight one-byte memory types of a fixed-range MTRR or of the PAT.
pub fn check_byte_types(value: u64, valid: fn(u64) -> bool) -> Result<(), GpReason> {
    match value.to_le_bytes().into_iter().find(|&memory_type| !valid(u64::from(memory_type))) {
        Some(memory_type) => Err(GpReason::InvalidMemoryType { memory_type }),
        None => Ok(()),
    }
}

/// One variable range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VariableRange {
    /// IA32_MTRR_PHYSBASEn: base address and memory type.
    pub base: u64,
    /// IA32_MTRR_PHYSMASKn: address mask and valid bit.
    pub mask: u64,
}

/// Which MTRR an MSR number names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtrrRegister {
    DefType,
    Fixed(usize),
    Base(usize),
    Mask(usize),
}

impl MtrrRegister {
    /// The read-write MTRR `msr` names (IA32_MTRRCAP is read-only and apart).
    pub fn from_msr(msr: u32) -> Option<Self> {
        let variable_end = IA32_MTRR_PHYSBASE0 + 2 * VARIABLE_RANGES as u32;
        match msr {
            IA32_MTRR_DEF_TYPE => Some(Self::DefType),
            _ if (IA32_MTRR_PHYSBASE0..variable_end).contains(&msr) => {
                let index = ((msr - IA32_MTRR_PHYSBASE0) / 2) as usize;
                Some(if msr.is_multiple_of(2) { Self::Base(index) } else { Self::Mask(index) })
            }
            _ => FIXED_RANGE_MSRS.iter().position(|&fixed| fixed == msr).map(Self::Fixed),
        }
    }
}

/// One vCPU's MTRRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mtrrs {
    pub def_type: u64,
    pub fixed: [u64; FIXED_RANGES],
    pub variable: [VariableRange; VARIABLE_RANGES],
}

impl Mtrrs {
    /// A CPU resets its MTRRs to 0 (disabled) and the firmware programs
    /// them. Matryoshka boots kernels without firmware, so the guest starts
    /// with what a firmware would leave for all-RAM memory: MTRRs enabled,
    /// default type write-back, no ranges. (The APIC and device pages get
    /// their real memory type from EPT, whatever these say.)
    pub const AT_BOOT: Self = Self {
        def_type: def_type::E | memory_type::WB as u64,
        fixed: [0; FIXED_RANGES],
        variable: [VariableRange { base: 0, mask: 0 }; VARIABLE_RANGES],
    };

    pub fn read(&self, register: MtrrRegister) -> u64 {
        match register {
            MtrrRegister::DefType => self.def_type,
            MtrrRegister::Fixed(index) => self.fixed[index],
            MtrrRegister::Base(index) => self.variable[index].base,
            MtrrRegister::Mask(index) => self.variable[index].mask,
        }
    }

    /// Stores `value` if a CPU whose MAXPHYADDR is `physical_address_bits`
    /// would accept it.
    pub fn write(&mut self, register: MtrrRegister, value: u64, physical_address_bits: u8) -> Result<(), GpReason> {
        // Address bits at and above MAXPHYADDR are reserved.
        let above_maxphyaddr = u64::MAX.checked_shl(u32::from(physical_address_bits)).unwrap_or(0);
        match register {
            MtrrRegister::DefType => {
                reserved(value, !(def_type::TYPE_MASK | def_type::FE | def_type::E))?;
                mtrr_type(value & def_type::TYPE_MASK)?;
                self.def_type = value;
            }
            MtrrRegister::Fixed(index) => {
                check_byte_types(value, is_mtrr_type)?;
                self.fixed[index] = value;
            }
            MtrrRegister::Base(index) => {
                // Bits 7:0 type, 11:8 reserved, 12..MAXPHYADDR the base.
                reserved(value, 0xf00 | above_maxphyaddr)?;
                mtrr_type(value & 0xff)?;
                self.variable[index].base = value;
            }
            MtrrRegister::Mask(index) => {
                // Bits 10:0 reserved, 11 valid, 12..MAXPHYADDR the mask.
                reserved(value, 0x7ff | above_maxphyaddr)?;
                self.variable[index].mask = value;
            }
        }
        Ok(())
    }
}

fn reserved(value: u64, reserved_bits: u64) -> Result<(), GpReason> {
    match value & reserved_bits {
        0 => Ok(()),
        bits => Err(GpReason::ReservedBits { bits }),
    }
}

fn mtrr_type(memory_type: u64) -> Result<(), GpReason> {
    if is_mtrr_type(memory_type) {
        Ok(())
    } else {
        Err(GpReason::InvalidMemoryType { memory_type: memory_type as u8 })
    }
}
