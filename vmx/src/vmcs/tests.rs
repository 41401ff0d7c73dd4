use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::format;

/// Checks that every field of group `G` decodes to the group's width and
/// type, is a full access without reserved bits, and carries its name.
fn check_group<G: VmcsField + fmt::Debug>(all: &[G], fields: &[FieldInfo]) {
    assert_eq!(all.len(), fields.len());
    for (field, info) in all.iter().zip(fields) {
        let encoding = Encoding(field.encoding());
        assert_eq!(encoding, info.encoding);
        assert_eq!(field.name(), info.name);
        assert_eq!(encoding.width(), G::WIDTH, "{field:?} in {}", G::SECTION);
        assert_eq!(encoding.field_type(), G::TYPE, "{field:?} in {}", G::SECTION);
        assert!(!encoding.is_high_access(), "{field:?}");
        assert!(encoding.is_well_formed(), "{field:?}");
        assert_eq!(encoding.field(), Some(*info));
    }
}

#[test]
fn every_field_decodes_to_the_width_and_type_of_its_section() {
    check_group(Control16::ALL, Control16::FIELDS);
    check_group(Guest16::ALL, Guest16::FIELDS);
    check_group(Host16::ALL, Host16::FIELDS);
    check_group(Control64::ALL, Control64::FIELDS);
    check_group(ReadOnly64::ALL, ReadOnly64::FIELDS);
    check_group(Guest64::ALL, Guest64::FIELDS);
    check_group(Host64::ALL, Host64::FIELDS);
    check_group(Control32::ALL, Control32::FIELDS);
    check_group(ReadOnly32::ALL, ReadOnly32::FIELDS);
    check_group(Guest32::ALL, Guest32::FIELDS);
    check_group(Host32::ALL, Host32::FIELDS);
    check_group(ControlNatural::ALL, ControlNatural::FIELDS);
    check_group(ReadOnlyNatural::ALL, ReadOnlyNatural::FIELDS);
    check_group(GuestNatural::ALL, GuestNatural::FIELDS);
    check_group(HostNatural::ALL, HostNatural::FIELDS);
}

#[test]
fn sections_carry_the_width_and_type_of_appendix_b() {
    assert_eq!((Control16::WIDTH, Control16::TYPE), (FieldWidth::Bits16, FieldType::Control));
    assert_eq!((ReadOnly64::WIDTH, ReadOnly64::TYPE), (FieldWidth::Bits64, FieldType::ReadOnlyData));
    assert_eq!((Guest32::WIDTH, Guest32::TYPE), (FieldWidth::Bits32, FieldType::GuestState));
    assert_eq!((HostNatural::WIDTH, HostNatural::TYPE), (FieldWidth::Natural, FieldType::HostState));
    assert_eq!(ReadOnly32::SECTION, "B.3.2 32-bit read-only data fields");
}

#[test]
fn all_fields_is_sorted_without_duplicates() {
    // Strictly ascending encodings rule out duplicates and let lookups
    // binary-search.
    for pair in ALL_FIELDS.windows(2) {
        assert!(pair[0].encoding < pair[1].encoding, "{:?} then {:?}", pair[0], pair[1]);
    }
    let names: BTreeSet<&str> = ALL_FIELDS.iter().map(|field| field.name).collect();
    assert_eq!(names.len(), ALL_FIELDS.len(), "duplicate name");
    assert!(ALL_FIELDS.iter().all(|field| !field.name.is_empty()));
}

#[test]
fn all_fields_counts_every_section_of_appendix_b() {
    let per_section = [5, 11, 7, 38, 3, 21, 12, 20, 8, 23, 1, 8, 6, 23, 15];
    let counted: std::vec::Vec<usize> = GROUPS_IN_APPENDIX_ORDER.iter().map(|group| group.len()).collect();
    assert_eq!(counted, per_section);
    assert_eq!(FIELD_COUNT, 201);
    assert_eq!(ALL_FIELDS.first().unwrap().name, "Virtual-processor identifier (VPID)");
    assert_eq!(ALL_FIELDS.last().unwrap().name, "Host IA32_INTERRUPT_SSP_TABLE_ADDR");
}

#[test]
fn high_halves_of_64_bit_fields_are_32_bit_accesses() {
    for field in ALL_FIELDS.iter() {
        let full = field.encoding;
        match full.width() {
            FieldWidth::Bits64 => {
                let high = full.high().unwrap();
                assert_eq!(high.0, full.0 | 1);
                assert!(high.is_high_access());
                assert!(high.is_well_formed());
                assert_eq!(high.width(), FieldWidth::Bits64);
                assert_eq!(high.access_width(), FieldWidth::Bits32);
                assert_eq!(high.full(), full);
                assert_eq!(high.field(), Some(*field));
                assert_eq!(full.access_width(), FieldWidth::Bits64);
            }
            _ => {
                assert_eq!(full.high(), None);
                // Bit 0 set on a non-64-bit field is not a valid encoding.
                let bogus = Encoding(full.0 | 1);
                assert!(!bogus.is_well_formed());
                assert_eq!(bogus.field(), None);
            }
        }
    }
}

#[test]
fn encoding_decodes_sdm_examples() {
    // Exit reason: 32-bit, read-only data, index 1.
    let exit_reason = Encoding(0x4402);
    assert_eq!(exit_reason.width(), FieldWidth::Bits32);
    assert_eq!(exit_reason.field_type(), FieldType::ReadOnlyData);
    assert_eq!(exit_reason.index(), 1);
    assert!(exit_reason.is_read_only());
    assert!(!exit_reason.is_host_state());

    // Address of I/O bitmap A (high): 64-bit control, index 0, high access.
    let io_bitmap_a_high = Encoding(0x2001);
    assert_eq!(io_bitmap_a_high.width(), FieldWidth::Bits64);
    assert!(io_bitmap_a_high.is_control());
    assert_eq!(io_bitmap_a_high.index(), 0);
    assert!(io_bitmap_a_high.is_high_access());

    // Host RIP: natural-width host state, index 11.
    let host_rip = Encoding(0x6c16);
    assert_eq!(host_rip.width(), FieldWidth::Natural);
    assert!(host_rip.is_host_state());
    assert_eq!(host_rip.index(), 11);

    // Guest interrupt status: 16-bit guest state, index 8.
    let interrupt_status = Encoding(0x0810);
    assert_eq!(interrupt_status.width(), FieldWidth::Bits16);
    assert!(interrupt_status.is_guest_state());
    assert_eq!(interrupt_status.index(), 8);

    // VMX-preemption timer value: index 23 (index 22 is not defined).
    assert_eq!(Encoding(0x482e).index(), 23);
    assert_eq!(Encoding(0x482c).field(), None);
}

#[test]
fn new_builds_the_sdm_encodings() {
    assert_eq!(Encoding::new(FieldWidth::Bits32, FieldType::ReadOnlyData, 1), Encoding(0x4402));
    assert_eq!(Encoding::new(FieldWidth::Bits64, FieldType::Control, 0x0d), Encoding(Control64::EptPointer.encoding()));
    assert_eq!(Encoding::new(FieldWidth::Natural, FieldType::GuestState, 15), Encoding(GuestNatural::Rip.encoding()));
}

#[test]
fn reserved_bits_make_an_encoding_unsupported() {
    assert!(Encoding(0x1000).has_reserved_bits());
    assert!(Encoding(0x8000).has_reserved_bits());
    assert!(Encoding(0x8000_4402).has_reserved_bits());
    assert!(!Encoding(0x6fff).has_reserved_bits());
    assert_eq!(Encoding(0x1000 | 0x4402).field(), None);
}

#[test]
fn shadow_bitmap_bit_is_bits_14_to_0() {
    assert_eq!(Encoding(0x4402).shadow_bitmap_bit(), Some(0x4402));
    assert_eq!(Encoding(0x2001).shadow_bitmap_bit(), Some(0x2001));
    assert_eq!(Encoding(0x7fff).shadow_bitmap_bit(), Some(0x7fff));
    assert_eq!(Encoding(0x8000).shadow_bitmap_bit(), None);
}

#[test]
fn from_encoding_finds_fields_only_in_their_own_section() {
    assert_eq!(Guest64::from_encoding(0x2806), Some(Guest64::Ia32Efer));
    assert_eq!(Host64::from_encoding(0x2806), None);
    assert_eq!(ReadOnly32::from_encoding(0x4402), Some(ReadOnly32::ExitReason));
    assert_eq!(Control32::from_encoding(0x4024), Some(Control32::InstructionTimeoutControl));
    assert_eq!(ReadOnlyNatural::from_encoding(0x6400), Some(ReadOnlyNatural::ExitQualification));
}

#[test]
fn debug_names_the_field() {
    assert_eq!(format!("{:?}", Encoding(0x4402)), "Encoding(0x4402 Exit reason)");
    assert_eq!(format!("{:?}", Encoding(0x2807)), "Encoding(0x2807 Guest IA32_EFER (high))");
    assert_eq!(format!("{:?}", Encoding(0x482c)), "Encoding(0x482c)");
}

#[test]
fn field_values_truncate_and_widen() {
    assert_eq!(<u16 as FieldValue>::from_u64(0x1_2345), 0x2345);
    assert_eq!(<u32 as FieldValue>::from_u64(0x1_0000_0002), 2);
    assert_eq!(0xffffu16.to_u64(), 0xffff);
    assert_eq!(u64::MAX.to_u64(), u64::MAX);
}

proptest! {
    #[test]
    fn encoding_fields_round_trip(width in 0u32..4, field_type in 0u32..4, index in 0u16..512) {
        let width = FieldWidth::from_bits(width);
        let field_type = FieldType::from_bits(field_type);
        let encoding = Encoding::new(width, field_type, index);
        prop_assert_eq!(encoding.width(), width);
        prop_assert_eq!(encoding.field_type(), field_type);
        prop_assert_eq!(encoding.index(), index);
        prop_assert!(!encoding.is_high_access());
        prop_assert!(encoding.is_well_formed());
    }

    #[test]
    fn lookup_agrees_with_the_list(raw in prop_oneof![0u32..0x8000, any::<u32>()]) {
        let encoding = Encoding(raw);
        let listed = ALL_FIELDS
            .iter()
            .find(|field| field.encoding == encoding.full())
            .copied();
        let expected = if encoding.is_well_formed() { listed } else { None };
        prop_assert_eq!(encoding.field(), expected);
    }
}
