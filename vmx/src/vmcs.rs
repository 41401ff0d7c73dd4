//! VMCS field encodings (SDM 25.11.2 and appendix B).
//!
//! Every field of appendix B is a variant of one of fifteen enums, one per
//! appendix section ([`Control16`] is B.1.1, [`ReadOnly32`] is B.3.2, ...).
//! Each enum carries its section's width and access in the type system: all
//! implement [`VmcsReadable`], only the groups a VMWRITE may target
//! implement [`VmcsWritable`], and [`VmcsField::Value`] is the integer type
//! VMREAD returns. A wrapper written as
//!
//! ```
//! use vmx::vmcs::{Control32, Guest64, VmcsField, VmcsWritable};
//!
//! fn vmwrite<F: VmcsWritable>(field: F, value: F::Value) -> (u32, F::Value) {
//!     (field.encoding(), value)
//! }
//!
//! assert_eq!(vmwrite(Guest64::Ia32Efer, 0x500), (0x2806, 0x500));
//! assert_eq!(vmwrite(Control32::PinBasedControls, 0x16), (0x4000, 0x16));
//! ```
//!
//! cannot write an exit-information field:
//!
//! ```compile_fail
//! use vmx::vmcs::{ReadOnly32, VmcsField, VmcsWritable};
//!
//! fn vmwrite<F: VmcsWritable>(field: F, value: F::Value) {}
//!
//! vmwrite(ReadOnly32::ExitReason, 0);
//! ```
//!
//! For code that handles encodings it did not choose, such as a guest
//! hypervisor's VMREAD, [`Encoding`] decodes any 32-bit value and
//! [`ALL_FIELDS`] lists every field with its name.

mod fields;

use core::fmt;

pub use fields::{
    Control16, Control32, Control64, ControlNatural, Guest16, Guest32, Guest64, GuestNatural, Host16, Host32, Host64,
    HostNatural, ReadOnly32, ReadOnly64, ReadOnlyNatural,
};

/// Keeps the access traits closed: only this crate decides which fields
/// are writable.
mod sealed {
    pub trait Sealed {}
}

/// The width of a VMCS field, bits 14:13 of its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldWidth {
    /// 0: 16-bit.
    Bits16,
    /// 1: 64-bit, accessible whole or, through the "high" encoding, as the
    /// upper 32 bits.
    Bits64,
    /// 2: 32-bit.
    Bits32,
    /// 3: natural width, 64 bits on processors that support Intel 64.
    Natural,
}

impl FieldWidth {
    /// Decodes the two-bit width number.
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 0b11 {
            0 => Self::Bits16,
            1 => Self::Bits64,
            2 => Self::Bits32,
            _ => Self::Natural,
        }
    }

    /// The two-bit width number.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Bits16 => 0,
            Self::Bits64 => 1,
            Self::Bits32 => 2,
            Self::Natural => 3,
        }
    }
}

/// What a VMCS field holds, bits 11:10 of its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    /// 0: a VM-execution, VM-exit or VM-entry control.
    Control,
    /// 1: VM-exit information, read-only unless the CPU supports VMWRITE to
    /// any field (`IA32_VMX_MISC` bit 29).
    ReadOnlyData,
    /// 2: guest state.
    GuestState,
    /// 3: host state.
    HostState,
}

impl FieldType {
    /// Decodes the two-bit type number.
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 0b11 {
            0 => Self::Control,
            1 => Self::ReadOnlyData,
            2 => Self::GuestState,
            _ => Self::HostState,
        }
    }

    /// The two-bit type number.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Control => 0,
            Self::ReadOnlyData => 1,
            Self::GuestState => 2,
            Self::HostState => 3,
        }
    }
}

/// A 32-bit VMCS field encoding as VMREAD and VMWRITE take it (SDM 25.11.2):
///
/// | bits  | meaning                                         |
/// |-------|-------------------------------------------------|
/// | 0     | access type: 0 full, 1 high (64-bit fields only) |
/// | 9:1   | index                                           |
/// | 11:10 | type ([`FieldType`])                            |
/// | 12    | reserved, 0                                     |
/// | 14:13 | width ([`FieldWidth`])                          |
/// | 31:15 | reserved, 0                                     |
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Encoding(pub u32);

impl Encoding {
    /// Bits that are not reserved: 11:0 and 14:13.
    const DEFINED_BITS: u32 = 0x6fff;

    /// Builds the encoding of a field's full access.
    pub const fn new(width: FieldWidth, field_type: FieldType, index: u16) -> Self {
        Self(width.bits() << 13 | field_type.bits() << 10 | (index as u32 & 0x1ff) << 1)
    }

    /// Whether bit 0 selects the upper 32 bits of a 64-bit field.
    pub const fn is_high_access(self) -> bool {
        self.0 & 1 != 0
    }

    /// The index, bits 9:1.
    pub const fn index(self) -> u16 {
        ((self.0 >> 1) & 0x1ff) as u16
    }

    /// The field type, bits 11:10.
    pub const fn field_type(self) -> FieldType {
        FieldType::from_bits(self.0 >> 10)
    }

    /// The field's width, bits 14:13.
    pub const fn width(self) -> FieldWidth {
        FieldWidth::from_bits(self.0 >> 13)
    }

    /// How many bits this access reads or writes: a high access to a 64-bit
    /// field moves 32 bits.
    pub const fn access_width(self) -> FieldWidth {
        match (self.width(), self.is_high_access()) {
            (FieldWidth::Bits64, true) => FieldWidth::Bits32,
            (width, _) => width,
        }
    }

    /// Whether the field is VM-exit information.
    pub const fn is_read_only(self) -> bool {
        matches!(self.field_type(), FieldType::ReadOnlyData)
    }

    /// Whether the field is a control.
    pub const fn is_control(self) -> bool {
        matches!(self.field_type(), FieldType::Control)
    }

    /// Whether the field is guest state.
    pub const fn is_guest_state(self) -> bool {
        matches!(self.field_type(), FieldType::GuestState)
    }

    /// Whether the field is host state.
    pub const fn is_host_state(self) -> bool {
        matches!(self.field_type(), FieldType::HostState)
    }

    /// Whether a reserved bit (12, or 31:15) is set. VMREAD and VMWRITE
    /// fail such encodings as unsupported components.
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::DEFINED_BITS != 0
    }

    /// Whether the encoding is well formed: no reserved bit, and high access
    /// only to a 64-bit field. A well-formed encoding may still name a field
    /// this CPU or the SDM does not define.
    pub const fn is_well_formed(self) -> bool {
        !self.has_reserved_bits() && (!self.is_high_access() || matches!(self.width(), FieldWidth::Bits64))
    }

    /// The encoding of the full field, bit 0 cleared.
    pub const fn full(self) -> Self {
        Self(self.0 & !1)
    }

    /// The high-access encoding of a 64-bit field, or `None` for other widths.
    pub const fn high(self) -> Option<Self> {
        match self.width() {
            FieldWidth::Bits64 => Some(Self(self.0 | 1)),
            _ => None,
        }
    }

    /// The bit that stands for this encoding in the VMREAD and VMWRITE
    /// bitmaps (SDM 25.6.15): bits 14:0. `None` when bits 31:15 are not
    /// zero, in which case VMREAD and VMWRITE in the guest always exit.
    pub const fn shadow_bitmap_bit(self) -> Option<u16> {
        if self.0 >> 15 == 0 {
            Some(self.0 as u16)
        } else {
            None
        }
    }

    /// The field an access refers to, high accesses included, if the SDM
    /// defines it.
    pub fn field(self) -> Option<FieldInfo> {
        if !self.is_well_formed() {
            return None;
        }
        let full = self.full();
        ALL_FIELDS.binary_search_by_key(&full, |field| field.encoding).ok().map(|position| ALL_FIELDS[position])
    }
}

impl From<u32> for Encoding {
    fn from(encoding: u32) -> Self {
        Self(encoding)
    }
}

impl fmt::Debug for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encoding({:#06x}", self.0)?;
        if let Some(field) = self.field() {
            write!(f, " {}", field.name)?;
            if self.is_high_access() {
                f.write_str(" (high)")?;
            }
        }
        f.write_str(")")
    }
}

/// An encoding with the field's name from appendix B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldInfo {
    /// The encoding of the full field.
    pub encoding: Encoding,
    /// The name appendix B gives the field, e.g. "Guest IA32_EFER".
    pub name: &'static str,
}

impl FieldInfo {
    const fn new(encoding: u32, name: &'static str) -> Self {
        Self { encoding: Encoding(encoding), name }
    }
}

/// Integer types a VMCS field's value can have.
pub trait FieldValue: sealed::Sealed + Copy {
    /// Truncates a value VMREAD returned in a 64-bit register.
    fn from_u64(raw: u64) -> Self;
    /// Widens to the 64-bit register VMWRITE takes.
    fn to_u64(self) -> u64;
}

macro_rules! field_value {
    ($($type:ty),*) => {$(
        impl sealed::Sealed for $type {}
        impl FieldValue for $type {
            fn from_u64(raw: u64) -> Self {
                raw as $type
            }
            fn to_u64(self) -> u64 {
                self.into()
            }
        }
    )*};
}

field_value!(u16, u32, u64);

/// A VMCS field known at compile time, with the width and access of its
/// appendix B section.
pub trait VmcsField: sealed::Sealed + Copy {
    /// The appendix B section, e.g. "B.3.2 32-bit read-only data fields".
    const SECTION: &'static str;
    /// The width of every field of the section.
    const WIDTH: FieldWidth;
    /// The type of every field of the section.
    const TYPE: FieldType;
    /// The integer type of the field's value (natural width is `u64`).
    type Value: FieldValue;

    /// The encoding VMREAD and VMWRITE take.
    fn encoding(self) -> u32;

    /// The name appendix B gives the field.
    fn name(self) -> &'static str;
}

/// A field VMREAD may read: every field.
pub trait VmcsReadable: VmcsField {}

/// A field VMWRITE may write: every field except the read-only VM-exit
/// information.
pub trait VmcsWritable: VmcsField {}

/// The number of fields appendix B defines.
pub const FIELD_COUNT: usize = GROUPS_IN_APPENDIX_ORDER_LEN;

/// The guest-state fields of each segment register (selector, base,
/// limit, access rights), in the order ES, CS, SS, DS, FS, GS, LDTR, TR
/// (the x86 segment-register numbering, then LDTR and TR).
pub const SEGMENT_FIELDS: [(Guest16, GuestNatural, Guest32, Guest32); 8] = [
    (Guest16::EsSelector, GuestNatural::EsBase, Guest32::EsLimit, Guest32::EsAccessRights),
    (Guest16::CsSelector, GuestNatural::CsBase, Guest32::CsLimit, Guest32::CsAccessRights),
    (Guest16::SsSelector, GuestNatural::SsBase, Guest32::SsLimit, Guest32::SsAccessRights),
    (Guest16::DsSelector, GuestNatural::DsBase, Guest32::DsLimit, Guest32::DsAccessRights),
    (Guest16::FsSelector, GuestNatural::FsBase, Guest32::FsLimit, Guest32::FsAccessRights),
    (Guest16::GsSelector, GuestNatural::GsBase, Guest32::GsLimit, Guest32::GsAccessRights),
    (Guest16::LdtrSelector, GuestNatural::LdtrBase, Guest32::LdtrLimit, Guest32::LdtrAccessRights),
    (Guest16::TrSelector, GuestNatural::TrBase, Guest32::TrLimit, Guest32::TrAccessRights),
];

const GROUPS_IN_APPENDIX_ORDER: [&[FieldInfo]; 15] = [
    Control16::FIELDS,
    Guest16::FIELDS,
    Host16::FIELDS,
    Control64::FIELDS,
    ReadOnly64::FIELDS,
    Guest64::FIELDS,
    Host64::FIELDS,
    Control32::FIELDS,
    ReadOnly32::FIELDS,
    Guest32::FIELDS,
    Host32::FIELDS,
    ControlNatural::FIELDS,
    ReadOnlyNatural::FIELDS,
    GuestNatural::FIELDS,
    HostNatural::FIELDS,
];

const GROUPS_IN_APPENDIX_ORDER_LEN: usize = {
    let mut total = 0;
    let mut group = 0;
    while group < GROUPS_IN_APPENDIX_ORDER.len() {
        total += GROUPS_IN_APPENDIX_ORDER[group].len();
        group += 1;
    }
    total
};

/// Every field of appendix B in appendix order, which is also ascending
/// encoding order. Used to build VMREAD/VMWRITE bitmaps and to lay out the
/// in-memory copy of a guest hypervisor's VMCS.
pub static ALL_FIELDS: [FieldInfo; FIELD_COUNT] = {
    let mut all = [FieldInfo::new(0, ""); FIELD_COUNT];
    let mut next = 0;
    let mut group = 0;
    while group < GROUPS_IN_APPENDIX_ORDER.len() {
        let fields = GROUPS_IN_APPENDIX_ORDER[group];
        let mut field = 0;
        while field < fields.len() {
            all[next] = fields[field];
            next += 1;
            field += 1;
        }
        group += 1;
    }
    all
};

#[cfg(test)]
mod tests;
