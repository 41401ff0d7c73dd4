//! vmcs12: the VMCS that L1 manages, kept in L1's own memory.
//!
//! # Layout (version 1)
//!
//! A vmcs12 region is the 4 KiB page L1 gave to VMCLEAR/VMPTRLD. All
//! values are little-endian. This layout is also the save/restore format of
//! a nested guest, so it only ever grows: a slot, once assigned, keeps its
//! offset.
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 4 | VMCS revision identifier, bits 30:0 = [`VMCS12_REVISION`]; bit 31, shadow-VMCS indicator, always 0 (SDM 25.2) |
//! | 4 | 4 | VMX-abort indicator (SDM 25.2, 28.7) |
//! | 8 | 4 | launch state: 0 clear, 1 launched ([`LaunchState`]) |
//! | 12 | 4 | layout version, [`LAYOUT_VERSION`] |
//! | 16 | 48 | reserved, 0 |
//! | 64 | 3072 | field slots, 8 bytes each |
//! | 3136 | 960 | reserved, 0 |
//!
//! A field's slot follows from its encoding alone (SDM 25.11.2): the group
//! of its type and width gives a first slot, its index (encoding bits 9:1)
//! is added, and
//!
//! `offset = 64 + 8 × (first slot of the group + index)`
//!
//! | group (appendix B) | type | width | first slot | slots |
//! |---|---|---|---|---|
//! | B.1.1 16-bit control | 0 | 0 | 0 | 16 |
//! | B.1.2 16-bit guest state | 2 | 0 | 16 | 16 |
//! | B.1.3 16-bit host state | 3 | 0 | 32 | 16 |
//! | B.2.1 64-bit control | 0 | 1 | 48 | 64 |
//! | B.2.2 64-bit read-only data | 1 | 1 | 112 | 16 |
//! | B.2.3 64-bit guest state | 2 | 1 | 128 | 32 |
//! | B.2.4 64-bit host state | 3 | 1 | 160 | 32 |
//! | B.3.1 32-bit control | 0 | 2 | 192 | 32 |
//! | B.3.2 32-bit read-only data | 1 | 2 | 224 | 16 |
//! | B.3.3 32-bit guest state | 2 | 2 | 240 | 32 |
//! | B.3.4 32-bit host state | 3 | 2 | 272 | 16 |
//! | B.4.1 natural-width control | 0 | 3 | 288 | 16 |
//! | B.4.2 natural-width read-only data | 1 | 3 | 304 | 16 |
//! | B.4.3 natural-width guest state | 2 | 3 | 320 | 32 |
//! | B.4.4 natural-width host state | 3 | 3 | 352 | 32 |
//!
//! (16-bit read-only data has no field and no slots.) Every slot holds the
//! field's value zero-extended to 64 bits; the "high" access of a 64-bit
//! field (encoding bit 0) reads and writes bytes 4..8 of the same slot.
//! Every field of appendix B has a slot, but VMREAD and VMWRITE reach only
//! the fields of [`SUPPORTED_FIELDS`], those of the features L1 is offered
//! (see [`capabilities`](super::capabilities)); the others fail as
//! unsupported components, as on a CPU without the feature.
//!
//! L1 must not touch the region directly (SDM 25.11.1); when it does, the
//! worst it gets is its own garbage, because a VM entry copies the region
//! once into a [`Vmcs12`] snapshot and checks and uses only that copy.

use alloc::boxed::Box;

use vmx::vmcs::{Encoding, FieldType, FieldWidth, VmcsField};

use crate::guest_memory::{GuestMemory, OutOfRange};

pub use super::capabilities::VMCS12_REVISION;

/// Offset of the revision identifier.
pub const REVISION_OFFSET: u64 = 0;
/// Offset of the VMX-abort indicator.
pub const ABORT_OFFSET: u64 = 4;
/// Offset of the launch state.
pub const LAUNCH_STATE_OFFSET: u64 = 8;
/// Offset of the layout version.
pub const LAYOUT_VERSION_OFFSET: u64 = 12;
/// The layout version this module writes.
pub const LAYOUT_VERSION: u32 = 1;
/// Offset of the first field slot.
pub const FIELDS_OFFSET: u64 = 64;
/// Number of field slots.
pub const SLOT_COUNT: usize = 384;

/// First slot and slot count of each group, indexed by `type * 4 + width`
/// (the two-bit numbers of [`FieldType`] and [`FieldWidth`]).
const GROUPS: [(u16, u16); 16] = [
    // Control: 16-bit, 64-bit, 32-bit, natural.
    (0, 16),
    (48, 64),
    (192, 32),
    (288, 16),
    // Read-only data: no 16-bit fields.
    (0, 0),
    (112, 16),
    (224, 16),
    (304, 16),
    // Guest state.
    (16, 16),
    (128, 32),
    (240, 32),
    (320, 32),
    // Host state.
    (32, 16),
    (160, 32),
    (272, 16),
    (352, 32),
];

/// The launch state of a VMCS (SDM 25.1): VMLAUNCH needs "clear",
/// VMRESUME "launched".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchState {
    Clear,
    Launched,
}

/// The slot of a full-field encoding, if it is well formed and its index
/// fits its group.
pub fn slot(encoding: Encoding) -> Option<usize> {
    if !encoding.is_well_formed() {
        return None;
    }
    let (first, count) = GROUPS[(encoding.field_type().bits() * 4 + encoding.width().bits()) as usize];
    let index = encoding.index();
    (index < count).then_some(usize::from(first + index))
}

/// Byte offset of a field's slot in the region.
pub fn slot_offset(encoding: Encoding) -> Option<u64> {
    slot(encoding).map(|slot| FIELDS_OFFSET + 8 * slot as u64)
}

/// Every field L1's VMREAD and VMWRITE may use, in ascending encoding
/// order: the fields of the features L1 is offered.
pub const SUPPORTED_FIELDS: &[u32] = &[
    // B.1.1: VPID.
    0x0000, // B.1.2: guest selectors.
    0x0800, 0x0802, 0x0804, 0x0806, 0x0808, 0x080a, 0x080c, 0x080e, // B.1.3: host selectors.
    0x0c00, 0x0c02, 0x0c04, 0x0c06, 0x0c08, 0x0c0a, 0x0c0c,
    // B.2.1: I/O and MSR bitmaps, MSR lists, executive-VMCS pointer, TSC offset, EPTP.
    0x2000, 0x2002, 0x2004, 0x2006, 0x2008, 0x200a, 0x200c, 0x2010, 0x201a,
    // B.2.2: guest-physical address.
    0x2400, // B.2.3: link pointer, DEBUGCTL, PAT, EFER, PDPTEs.
    0x2800, 0x2802, 0x2804, 0x2806, 0x280a, 0x280c, 0x280e, 0x2810, // B.2.4: host PAT and EFER.
    0x2c00, 0x2c02, // B.3.1: controls, without TPR threshold and pause-loop exiting.
    0x4000, 0x4002, 0x4004, 0x4006, 0x4008, 0x400a, 0x400c, 0x400e, 0x4010, 0x4012, 0x4014, 0x4016, 0x4018, 0x401a,
    0x401e, // B.3.2: exit information.
    0x4400, 0x4402, 0x4404, 0x4406, 0x4408, 0x440a, 0x440c, 0x440e,
    // B.3.3: limits, access rights, interruptibility, activity, SMBASE, SYSENTER_CS, preemption timer.
    0x4800, 0x4802, 0x4804, 0x4806, 0x4808, 0x480a, 0x480c, 0x480e, 0x4810, 0x4812, 0x4814, 0x4816, 0x4818, 0x481a,
    0x481c, 0x481e, 0x4820, 0x4822, 0x4824, 0x4826, 0x4828, 0x482a, 0x482e, // B.3.4: host SYSENTER_CS.
    0x4c00, // B.4.1: CR masks and read shadows, CR3 targets.
    0x6000, 0x6002, 0x6004, 0x6006, 0x6008, 0x600a, 0x600c, 0x600e,
    // B.4.2: qualification, I/O RCX/RSI/RDI/RIP, guest-linear address.
    0x6400, 0x6402, 0x6404, 0x6406, 0x6408, 0x640a, // B.4.3: guest state without CET.
    0x6800, 0x6802, 0x6804, 0x6806, 0x6808, 0x680a, 0x680c, 0x680e, 0x6810, 0x6812, 0x6814, 0x6816, 0x6818, 0x681a,
    0x681c, 0x681e, 0x6820, 0x6822, 0x6824, 0x6826, // B.4.4: host state without CET.
    0x6c00, 0x6c02, 0x6c04, 0x6c06, 0x6c08, 0x6c0a, 0x6c0c, 0x6c0e, 0x6c10, 0x6c12, 0x6c14, 0x6c16,
];

/// Whether VMREAD/VMWRITE may access `encoding` (high accesses included).
pub fn is_supported(encoding: Encoding) -> bool {
    encoding.is_well_formed() && SUPPORTED_FIELDS.binary_search(&encoding.full().0).is_ok()
}

/// The highest index (encoding bits 9:1) of any supported field, for
/// `IA32_VMX_VMCS_ENUM` (SDM A.9).
pub fn highest_supported_index() -> u16 {
    SUPPORTED_FIELDS.iter().map(|&encoding| Encoding(encoding).index()).max().unwrap_or(0)
}

/// Truncates `value` to what a field of `encoding`'s access width holds.
pub fn truncate(encoding: Encoding, value: u64) -> u64 {
    match encoding.access_width() {
        FieldWidth::Bits16 => value & 0xffff,
        FieldWidth::Bits32 => value & 0xffff_ffff,
        FieldWidth::Bits64 | FieldWidth::Natural => value,
    }
}

/// Reads one field of the vmcs12 at `region` from L1's memory.
/// `encoding` must be supported (or at least have a slot).
pub fn read_field(memory: &impl GuestMemory, region: u64, encoding: Encoding) -> Result<u64, OutOfRange> {
    let offset = slot_offset(encoding.full()).ok_or(OutOfRange { gpa: region, len: 0 })?;
    let value = memory.read_u64(region + offset)?;
    Ok(if encoding.is_high_access() { value >> 32 } else { truncate(encoding, value) })
}

/// Writes one field, truncated to its width; a high access replaces the
/// upper half of the slot only.
pub fn write_field(
    memory: &mut impl GuestMemory,
    region: u64,
    encoding: Encoding,
    value: u64,
) -> Result<(), OutOfRange> {
    let offset = slot_offset(encoding.full()).ok_or(OutOfRange { gpa: region, len: 0 })?;
    if encoding.is_high_access() {
        memory.write_u32(region + offset + 4, value as u32)
    } else {
        memory.write_u64(region + offset, truncate(encoding, value))
    }
}

/// Reads the launch state: anything but 1 counts as clear.
pub fn read_launch_state(memory: &impl GuestMemory, region: u64) -> Result<LaunchState, OutOfRange> {
    Ok(match memory.read_u32(region + LAUNCH_STATE_OFFSET)? {
        1 => LaunchState::Launched,
        _ => LaunchState::Clear,
    })
}

pub fn write_launch_state(memory: &mut impl GuestMemory, region: u64, state: LaunchState) -> Result<(), OutOfRange> {
    let value = match state {
        LaunchState::Clear => 0,
        LaunchState::Launched => 1,
    };
    memory.write_u32(region + LAUNCH_STATE_OFFSET, value)?;
    memory.write_u32(region + LAYOUT_VERSION_OFFSET, LAYOUT_VERSION)
}

/// A copy of a whole vmcs12, taken once per VM entry so that everything
/// checked is what is used (L1's other vCPUs could rewrite the region
/// meanwhile).
#[derive(Clone, PartialEq, Eq)]
pub struct Vmcs12 {
    slots: Box<[u64; SLOT_COUNT]>,
}

impl core::fmt::Debug for Vmcs12 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let set = self.slots.iter().filter(|&&value| value != 0).count();
        write!(f, "Vmcs12({set} non-zero fields)")
    }
}

impl Default for Vmcs12 {
    fn default() -> Self {
        Self { slots: Box::new([0; SLOT_COUNT]) }
    }
}

impl Vmcs12 {
    /// Copies the fields of the region at `region`.
    pub fn load(memory: &impl GuestMemory, region: u64) -> Result<Self, OutOfRange> {
        let mut bytes = [0u8; SLOT_COUNT * 8];
        memory.read(region + FIELDS_OFFSET, &mut bytes)?;
        let mut snapshot = Self::default();
        for (slot, chunk) in snapshot.slots.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut value = [0; 8];
            value.copy_from_slice(chunk);
            *slot = u64::from_le_bytes(value);
        }
        Ok(snapshot)
    }

    /// A field's value by typed field, truncated to its width.
    pub fn get<F: VmcsField>(&self, field: F) -> u64 {
        self.get_raw(Encoding(field.encoding()))
    }

    /// A field's value by encoding; 0 for an encoding without a slot.
    pub fn get_raw(&self, encoding: Encoding) -> u64 {
        match slot(encoding.full()) {
            Some(slot) if encoding.is_high_access() => self.slots[slot] >> 32,
            Some(slot) => truncate(encoding, self.slots[slot]),
            None => 0,
        }
    }

    /// Sets a field, truncated to its width.
    pub fn set<F: VmcsField>(&mut self, field: F, value: u64) {
        self.set_raw(Encoding(field.encoding()), value);
    }

    pub fn set_raw(&mut self, encoding: Encoding, value: u64) {
        if let Some(slot) = slot(encoding.full()) {
            if encoding.is_high_access() {
                self.slots[slot] = (self.slots[slot] & 0xffff_ffff) | (value << 32);
            } else {
                self.slots[slot] = truncate(encoding, value);
            }
        }
    }

    /// Writes back the fields of `types` to the region, one 8-byte write
    /// per supported field.
    pub fn store(&self, memory: &mut impl GuestMemory, region: u64, types: &[FieldType]) -> Result<(), OutOfRange> {
        for &encoding in SUPPORTED_FIELDS {
            let encoding = Encoding(encoding);
            if types.contains(&encoding.field_type()) {
                write_field(memory, region, encoding, self.get_raw(encoding))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use std::collections::BTreeSet;
    use vmx::vmcs::{Control32, Control64, Guest16, Guest32, GuestNatural, ReadOnly32, ALL_FIELDS};

    #[test]
    fn every_appendix_b_field_has_a_distinct_slot_inside_the_page() {
        let mut seen = BTreeSet::new();
        for field in ALL_FIELDS.iter() {
            let slot = slot(field.encoding).unwrap_or_else(|| panic!("{} has no slot", field.name));
            assert!(seen.insert(slot), "{} shares slot {slot}", field.name);
            let offset = slot_offset(field.encoding).unwrap();
            assert!(offset >= FIELDS_OFFSET && offset + 8 <= FIELDS_OFFSET + 8 * SLOT_COUNT as u64);
        }
        assert!(FIELDS_OFFSET + 8 * SLOT_COUNT as u64 <= 4096);
        // The groups tile the slots without overlap.
        let mut covered = [false; SLOT_COUNT];
        for (first, count) in GROUPS {
            for slot in first..first + count {
                assert!(!covered[slot as usize], "slot {slot} is in two groups");
                covered[slot as usize] = true;
            }
        }
        assert!(covered.iter().all(|&c| c));
    }

    #[test]
    fn documented_offsets_of_well_known_fields() {
        // Values from the layout table in the module docs.
        assert_eq!(slot_offset(Encoding(0x0000)), Some(64)); // VPID
        assert_eq!(slot_offset(Encoding(0x0802)), Some(64 + 8 * 17)); // guest CS selector
        assert_eq!(slot_offset(Encoding(0x201a)), Some(64 + 8 * (48 + 13))); // EPTP
        assert_eq!(slot_offset(Encoding(0x4402)), Some(64 + 8 * (224 + 1))); // exit reason
        assert_eq!(slot_offset(Encoding(0x681e)), Some(64 + 8 * (320 + 15))); // guest RIP
        assert_eq!(slot_offset(Encoding(0x6c16)), Some(64 + 8 * (352 + 11))); // host RIP
                                                                              // Malformed encodings and out-of-group indexes have no slot.
        assert_eq!(slot(Encoding(0x0400)), None); // 16-bit read-only: none
        assert_eq!(slot(Encoding(0x1000)), None); // reserved bit 12
        assert_eq!(slot(Encoding(0x4001)), None); // high access to a 32-bit field
        assert_eq!(slot(Encoding(0x0020)), None); // index 16 of B.1.1
    }

    #[test]
    fn supported_fields_are_sorted_defined_and_read_only_ones_are_exit_information() {
        assert!(SUPPORTED_FIELDS.windows(2).all(|pair| pair[0] < pair[1]));
        for &encoding in SUPPORTED_FIELDS {
            let encoding = Encoding(encoding);
            assert!(encoding.field().is_some(), "{encoding:?} is not in appendix B");
        }
        let read_only: BTreeSet<u32> =
            SUPPORTED_FIELDS.iter().copied().filter(|&e| Encoding(e).is_read_only()).collect();
        // B.2.2 guest-physical address, B.3.2 (8 fields), B.4.2 (6 fields).
        assert_eq!(read_only.len(), 15);
        assert!(read_only.contains(&ReadOnly32::ExitReason.encoding()));
        assert!(is_supported(Encoding(0x2001))); // high access to I/O bitmap A
        assert!(is_supported(Encoding(Guest32::PreemptionTimerValue.encoding())));
        assert!(!is_supported(Encoding(Control64::PmlAddress.encoding())));
        assert!(!is_supported(Encoding(Control32::TprThreshold.encoding())));
        assert!(!is_supported(Encoding(GuestNatural::Ssp.encoding())));
        assert!(!is_supported(Encoding(0x0800 | 1 << 15)));
        assert_eq!(highest_supported_index(), 0x17);
    }

    #[test]
    fn widths_truncate_and_high_accesses_use_the_upper_half() {
        let mut memory = VecMemory::new(0x3000);
        let region = 0x1000;
        write_field(&mut memory, region, Encoding(Guest16::CsSelector as u32), 0x1234_5678).unwrap();
        assert_eq!(read_field(&memory, region, Encoding(0x0802)).unwrap(), 0x5678);
        write_field(&mut memory, region, Encoding(0x4000), u64::MAX).unwrap();
        assert_eq!(read_field(&memory, region, Encoding(0x4000)).unwrap(), 0xffff_ffff);
        // EPTP full, then its high half.
        write_field(&mut memory, region, Encoding(0x201a), 0x1111_2222_3333_4444).unwrap();
        assert_eq!(read_field(&memory, region, Encoding(0x201b)).unwrap(), 0x1111_2222);
        write_field(&mut memory, region, Encoding(0x201b), 0xaaaa_bbbb_cccc).unwrap();
        assert_eq!(read_field(&memory, region, Encoding(0x201a)).unwrap(), 0xbbbb_cccc_3333_4444);
        // The slot is where the docs say.
        assert_eq!(memory.read_u64(region + 64 + 8 * 61).unwrap(), 0xbbbb_cccc_3333_4444);

        let snapshot = Vmcs12::load(&memory, region).unwrap();
        assert_eq!(snapshot.get(Control64::EptPointer), 0xbbbb_cccc_3333_4444);
        assert_eq!(snapshot.get_raw(Encoding(0x201b)), 0xbbbb_cccc);
        assert_eq!(snapshot.get(Guest16::CsSelector), 0x5678);
    }

    #[test]
    fn launch_state_and_store_round_trip() {
        let mut memory = VecMemory::new(0x3000);
        assert_eq!(read_launch_state(&memory, 0x2000).unwrap(), LaunchState::Clear);
        write_launch_state(&mut memory, 0x2000, LaunchState::Launched).unwrap();
        assert_eq!(memory.read_u32(0x2008).unwrap(), 1);
        assert_eq!(memory.read_u32(0x200c).unwrap(), LAYOUT_VERSION);
        assert_eq!(read_launch_state(&memory, 0x2000).unwrap(), LaunchState::Launched);

        let mut snapshot = Vmcs12::default();
        snapshot.set(GuestNatural::Rip, 0xffff_8000_0000_1000);
        snapshot.set(ReadOnly32::ExitReason, 0x8000_0021);
        snapshot.set(Control32::PinBasedControls, 0x16);
        snapshot.store(&mut memory, 0x2000, &[FieldType::GuestState, FieldType::ReadOnlyData]).unwrap();
        assert_eq!(read_field(&memory, 0x2000, Encoding(0x681e)).unwrap(), 0xffff_8000_0000_1000);
        assert_eq!(read_field(&memory, 0x2000, Encoding(0x4402)).unwrap(), 0x8000_0021);
        // Controls were not among the types stored.
        assert_eq!(read_field(&memory, 0x2000, Encoding(0x4000)).unwrap(), 0);
        assert!(Vmcs12::load(&memory, 0x2800).is_err());
    }
}
