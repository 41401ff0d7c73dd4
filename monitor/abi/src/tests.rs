use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::*;

fn sample_exit() -> ExitEvent {
    let mut gprs = [0u64; GPR_COUNT];
    for (index, value) in gprs.iter_mut().enumerate() {
        *value = 0x1111_1111_1111_1111 * index as u64;
    }
    ExitEvent {
        vcpu: 1,
        exit_reason: 10,
        qualification: 0xdead_beef,
        guest_linear_address: 0x7fff_0000,
        guest_physical_address: 0x1000,
        instruction_length: 2,
        instruction_info: 0x40,
        interruption_info: 0x8000_0b0e,
        interruption_error_code: 4,
        idt_vectoring_info: 0,
        idt_vectoring_error_code: 0,
        guest: GuestSnapshot {
            gprs,
            rip: 0x10_0000,
            rflags: 0x202,
            cr0: 0x8000_0011,
            cr3: 0x9000,
            cr4: 0x20,
            efer: 0x500,
            tsc: 123_456_789,
            cs_selector: 0x10,
            cs_access_rights: 0xa09b,
            interruptibility: 1,
            activity_state: 0,
        },
        full: None,
    }
}

fn every_action() -> Vec<Action> {
    vec![
        Action::SetGpr { index: RBX, value: u64::MAX },
        Action::WriteField { encoding: 0x681e, value: 0x10_0002 },
        Action::InjectEvent { vector: 14, kind: InjectionKind::HardwareException, error_code: Some(2) },
        Action::InjectEvent { vector: 32, kind: InjectionKind::ExternalInterrupt, error_code: None },
        Action::SkipInstruction,
        Action::Halt { wake_at_ns: Some(1_000_000) },
        Action::Halt { wake_at_ns: None },
        Action::SetTimer { at_ns: Some(5) },
        Action::SetTimer { at_ns: None },
        Action::InterruptWindow { enable: true },
        Action::ConsoleOutput { bytes: b"hello\n".to_vec() },
        Action::Log { level: LOG_WARN, text: "unknown MSR 0x1234".to_string() },
        Action::Stop { reason: StopReason::DebugExit { status: 85 }, detail: "exit port".to_string() },
        Action::Stop { reason: StopReason::TripleFault, detail: String::new() },
        Action::SetXcr0 { value: 0x7 },
        Action::Kick { vcpu: 3 },
        Action::EnterL2 { ept02: true },
        Action::ExitL2,
        Action::MapL2 { l2_gpa: 0x20_0000, l1_gpa: 0x60_0000, size_log2: 21, permissions: 7 },
        Action::FlushEpt02,
        Action::FlushVpid02,
    ]
}

use alloc::string::String;

#[test]
fn every_event_round_trips() {
    for event in [
        Event::Start { vcpu: 0, ram_bytes: 64 << 20, now_ns: 42 },
        Event::Exit(sample_exit()),
        Event::Exit(ExitEvent { full: Some(sample_full_state()), ..sample_exit() }),
        Event::Timer { vcpu: 3, now_ns: u64::MAX },
        Event::PowerButton { vcpu: 1, now_ns: 7 },
    ] {
        let bytes = encode_event(7, &event).unwrap();
        assert_eq!(&bytes[..4], b"MTRY");
        assert_eq!(decode_event(&bytes), Ok((7, event)));
    }
}

fn sample_full_state() -> FullState {
    let mut full = FullState { from_l2: true, ..FullState::default() };
    for (index, value) in full.fields.iter_mut().enumerate() {
        *value = 0x0101_0101 * index as u64;
    }
    full
}

#[test]
fn the_full_state_names_each_guest_field_once_and_fits_the_page() {
    let full = sample_full_state();
    // CS access rights and RIP, by their SDM encodings.
    assert_eq!(full.field(0x4816), 7 * 0x0101_0101);
    assert_eq!(full.field(0x681e), 33 * 0x0101_0101);
    assert_eq!(full.field(0x6c00), 0, "host CR0 is not carried");
    assert_eq!(FULL_STATE_FIELDS[FULL_STATE_TIMER_INDEX], 0x482e, "the preemption timer's encoding");
    let mut seen = FULL_STATE_FIELDS.to_vec();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), FULL_STATE_LEN);
    let bytes = encode_event(1, &Event::Exit(ExitEvent { full: Some(full), ..sample_exit() })).unwrap();
    assert!(bytes.len() < MESSAGE_PAGE_SIZE / 2, "{} bytes", bytes.len());
    let mut bad = bytes.clone();
    let flag_at = bytes.len() - FULL_STATE_LEN * 8 - 1;
    bad[flag_at] = 2;
    assert_eq!(decode_event(&bad), Err(DecodeError::Invalid { what: "from-L2 flag", value: 2 }));
}

#[test]
fn every_action_round_trips() {
    let response = Response { actions: every_action() };
    let bytes = encode_response(9, &response).unwrap();
    assert!(bytes.len() <= MESSAGE_PAGE_SIZE);
    assert_eq!(decode_response(&bytes), Ok((9, response)));
}

#[test]
fn header_layout_is_as_documented() {
    let bytes = encode_event(0x0102_0304, &Event::Timer { vcpu: 5, now_ns: 6 }).unwrap();
    assert_eq!(&bytes[0..4], b"MTRY");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), ABI_VERSION);
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), MessageKind::Event as u16);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1 + 4 + 8);
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 0x0102_0304);
    assert_eq!(bytes.len(), HEADER_LEN + 13);
}

#[test]
fn the_power_button_event_is_tag_4_with_a_vcpu_and_a_time() {
    let bytes = encode_event(3, &Event::PowerButton { vcpu: 2, now_ns: 0x1122_3344_5566_7788 }).unwrap();
    let payload = &bytes[HEADER_LEN..];
    assert_eq!(payload[0], 4);
    assert_eq!(u32::from_le_bytes(payload[1..5].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(payload[5..13].try_into().unwrap()), 0x1122_3344_5566_7788);
    assert_eq!(payload.len(), 13);
}

#[test]
fn stale_bytes_after_a_message_are_ignored() {
    let response = Response { actions: vec![Action::SkipInstruction] };
    let mut page = encode_response(1, &response).unwrap();
    page.resize(MESSAGE_PAGE_SIZE, 0xcc);
    assert_eq!(decode_response(&page), Ok((1, response)));
}

fn response_bytes(actions: Vec<Action>) -> Vec<u8> {
    encode_response(1, &Response { actions }).unwrap()
}

/// Rewrites the payload of an encoded message and fixes up its length.
fn with_payload(mut message: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    message.truncate(HEADER_LEN);
    message.extend_from_slice(payload);
    message[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    message
}

#[test]
fn malformed_messages_are_rejected_with_what_was_wrong() {
    let good = response_bytes(vec![Action::SkipInstruction]);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(decode_response(&bad_magic), Err(DecodeError::BadMagic(_))));
    let mut bad_version = good.clone();
    bad_version[4] = 99;
    assert_eq!(decode_response(&bad_version), Err(DecodeError::UnsupportedVersion(99)));
    let mut bad_kind = good.clone();
    bad_kind[6] = 7;
    assert_eq!(decode_response(&bad_kind), Err(DecodeError::UnknownKind(7)));
    assert_eq!(
        decode_event(&good),
        Err(DecodeError::WrongKind { expected: "event", found: MessageKind::Response as u16 })
    );
    let mut too_long = good.clone();
    too_long[8..12].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(decode_response(&too_long), Err(DecodeError::PayloadTooLong(5000)));
    let mut short = good.clone();
    short[8..12].copy_from_slice(&100u32.to_le_bytes());
    assert_eq!(decode_response(&short), Err(DecodeError::LengthMismatch { header: 100, actual: 2 }));
    assert!(matches!(decode_response(&good[..10]), Err(DecodeError::Truncated { .. })));

    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![1, 42], DecodeError::UnknownTag { what: "action", tag: 42 }),
        (vec![161], DecodeError::TooMany { what: "actions", count: 161, limit: MAX_ACTIONS }),
        (vec![1, 1, 16, 0, 0, 0, 0, 0, 0, 0, 0], DecodeError::Invalid { what: "register index", value: 16 }),
        (vec![1, 3, 14, 1, 0, 0, 0, 0, 0], DecodeError::Invalid { what: "injection kind", value: 1 }),
        (vec![1, 3, 14, 3, 2, 0, 0, 0, 0], DecodeError::Invalid { what: "error-code flag", value: 2 }),
        (vec![1, 7, 3], DecodeError::Invalid { what: "interrupt-window flag", value: 3 }),
        (vec![1, 9, 0, 0, 0], DecodeError::Invalid { what: "log level", value: 0 }),
        (vec![1, 9, LOG_INFO, 2, 0, 0xff, 0xfe], DecodeError::NotUtf8 { what: "log line" }),
        (vec![1, 10, 9, 0, 0, 0, 0, 0, 0], DecodeError::Invalid { what: "stop reason", value: 9 }),
        (vec![1, 8, 0x01, 0x10], DecodeError::TooMany { what: "console output bytes", count: 4097, limit: MAX_TEXT }),
        (vec![1, 4, 0], DecodeError::TrailingBytes(1)),
        (vec![2, 4], DecodeError::Truncated { needed: 1, available: 0 }),
    ];
    for (payload, expected) in cases {
        let message = with_payload(good.clone(), &payload);
        assert_eq!(decode_response(&message), Err(expected.clone()), "payload {payload:?}");
        assert!(!expected.to_string().is_empty());
    }
    let event = encode_event(1, &Event::Timer { vcpu: 0, now_ns: 0 }).unwrap();
    assert_eq!(decode_event(&with_payload(event, &[9])), Err(DecodeError::UnknownTag { what: "event", tag: 9 }));
}

#[test]
fn oversized_responses_are_refused_when_encoding() {
    let many = Response { actions: vec![Action::SkipInstruction; MAX_ACTIONS + 1] };
    assert_eq!(encode_response(0, &many), Err(EncodeError::TooManyActions(MAX_ACTIONS + 1)));
    let long = Response { actions: vec![Action::ConsoleOutput { bytes: vec![b'x'; MAX_TEXT + 1] }] };
    assert!(matches!(encode_response(0, &long), Err(EncodeError::TextTooLong { .. })));
    let page_filling = Response { actions: vec![Action::ConsoleOutput { bytes: vec![b'x'; MAX_TEXT] }; 4] };
    assert!(matches!(encode_response(0, &page_filling), Err(EncodeError::TooLarge(_))));
}

fn arbitrary_action() -> impl Strategy<Value = Action> {
    let text = proptest::collection::vec(any::<char>(), 0..40).prop_map(|chars| chars.into_iter().collect::<String>());
    prop_oneof![
        (0u8..16, any::<u64>()).prop_map(|(index, value)| Action::SetGpr { index, value }),
        (any::<u32>(), any::<u64>()).prop_map(|(encoding, value)| Action::WriteField { encoding, value }),
        (any::<u8>(), prop::sample::select(vec![0u8, 2, 3, 4, 5, 6]), any::<Option<u32>>()).prop_map(
            |(vector, kind, error_code)| Action::InjectEvent {
                vector,
                kind: InjectionKind::from_u8(kind).unwrap(),
                error_code
            }
        ),
        Just(Action::SkipInstruction),
        any::<Option<u64>>().prop_map(|wake_at_ns| Action::Halt { wake_at_ns }),
        any::<Option<u64>>().prop_map(|at_ns| Action::SetTimer { at_ns }),
        any::<bool>().prop_map(|enable| Action::InterruptWindow { enable }),
        any::<u64>().prop_map(|value| Action::SetXcr0 { value }),
        any::<u32>().prop_map(|vcpu| Action::Kick { vcpu }),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|bytes| Action::ConsoleOutput { bytes }),
        (1u8..=5, text.clone()).prop_map(|(level, text)| Action::Log { level, text }),
        (any::<u32>(), text)
            .prop_map(|(status, detail)| Action::Stop { reason: StopReason::DebugExit { status }, detail }),
    ]
}

proptest! {
    #[test]
    fn random_responses_round_trip(actions in proptest::collection::vec(arbitrary_action(), 0..20), sequence in any::<u32>()) {
        let response = Response { actions };
        let bytes = encode_response(sequence, &response).unwrap();
        prop_assert_eq!(decode_response(&bytes), Ok((sequence, response)));
    }

    #[test]
    fn random_exits_round_trip(reason in any::<u32>(), qualification in any::<u64>(), gprs in any::<[u64; 16]>(), rip in any::<u64>()) {
        let mut exit = sample_exit();
        exit.exit_reason = reason;
        exit.qualification = qualification;
        exit.guest.gprs = gprs;
        exit.guest.rip = rip;
        let bytes = encode_event(1, &Event::Exit(exit)).unwrap();
        prop_assert_eq!(decode_event(&bytes), Ok((1, Event::Exit(exit))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_response(&bytes);
        let _ = decode_event(&bytes);
        // And with a valid header in front, so the payload decoders run.
        let framed = with_payload(response_bytes(Vec::new()), &bytes);
        let _ = decode_response(&framed);
        let _ = decode_event(&with_payload(encode_event(0, &Event::Timer { vcpu: 0, now_ns: 0 }).unwrap(), &bytes));
    }

    #[test]
    fn mutated_messages_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = response_bytes(every_action());
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = decode_response(&bytes);
    }
}

#[test]
fn fit_text_cuts_long_text_at_a_character_boundary() {
    use alloc::string::String;
    let mut short = String::from("short");
    crate::fit_text(&mut short);
    assert_eq!(short, "short");
    let mut long = "é".repeat(crate::MAX_TEXT);
    crate::fit_text(&mut long);
    assert_eq!(long.len(), crate::MAX_TEXT);
    let mut odd = alloc::format!("x{}", "é".repeat(crate::MAX_TEXT));
    crate::fit_text(&mut odd);
    assert_eq!(odd.len(), crate::MAX_TEXT - 1);
}
