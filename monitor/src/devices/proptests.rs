//! Random guest behaviour against the whole platform: any sequence of port
//! accesses, time steps, acknowledges and console input must not panic and
//! must keep the platform's invariants.

use proptest::prelude::*;

use super::{all_ones, LegacyPlatform, PlatformConfig};

#[derive(Debug, Clone)]
enum Step {
    Read { port: u16, size: u8 },
    Write { port: u16, size: u8, value: u32 },
    Wait { ns: u64 },
    Acknowledge,
    Input(Vec<u8>),
    MmioRead { gpa: u64, size: u8 },
    MmioWrite { gpa: u64, size: u8, value: u32 },
}

/// Addresses in the APIC pages: registers and the gaps between them.
fn mmio_address() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..0x400).prop_map(|offset| 0xfee0_0000 + (offset & !3)),
        1 => (0u64..0x1000).prop_map(|offset| 0xfee0_0000 + offset),
        3 => proptest::sample::select(&[0xfec0_0000u64, 0xfec0_0010, 0xfec0_0020, 0xfec0_0040][..]),
    ]
}

/// The ports the devices decode, and their neighbours.
const PORTS: &[u16] = &[
    0x1f, 0x20, 0x21, 0x22, 0x40, 0x41, 0x42, 0x43, 0x44, 0x61, 0x70, 0x71, 0x72, 0x80, 0x9f, 0xa0, 0xa1, 0xf4, 0x3f7,
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x4d0, 0x4d1, 0x600, 0x602, 0x604, 0x605, 0x606,
];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![8 => proptest::sample::select(PORTS), 1 => any::<u16>()]
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![8 => Just(1u8), 1 => Just(2u8), 1 => Just(4u8), 1 => 0u8..=8]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        // Bytes that mean something to these devices.
        4 => proptest::sample::select(&[
            0x00u32, 0x01, 0x02, 0x04, 0x0b, 0x0c, 0x10, 0x11, 0x20, 0x30, 0x34, 0x36, 0x38, 0x42, 0x60, 0x80, 0x82,
            0xb0, 0xc2, 0xd8, 0xff,
        ][..]),
        4 => any::<u8>().prop_map(u32::from),
        1 => any::<u32>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (port(), size()).prop_map(|(port, size)| Step::Read { port, size }),
        8 => (port(), size(), value()).prop_map(|(port, size, value)| Step::Write { port, size, value }),
        3 => prop_oneof![4 => 0u64..20_000, 2 => 0u64..5_000_000, 1 => 0u64..100_000_000_000]
            .prop_map(|ns| Step::Wait { ns }),
        2 => Just(Step::Acknowledge),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Input),
        3 => (mmio_address(), size()).prop_map(|(gpa, size)| Step::MmioRead { gpa, size }),
        6 => (mmio_address(), size(), any::<u32>()).prop_map(|(gpa, size, value)| Step::MmioWrite { gpa, size, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_guest_keeps_the_platform_sane(steps in proptest::collection::vec(step(), 1..300)) {
        let config = PlatformConfig {
            ram_bytes: 512 << 20,
            wall_clock_unix_secs: 1_700_000_000,
            console_capacity: 32,
            console_input_capacity: 16,
            ..PlatformConfig::new(0, 0)
        };
        let mut platform = LegacyPlatform::new(&config);
        let mut now = 0u64;
        let (mut reads, mut writes) = (0, 0);
        let (mut console_start, mut console_end) = (0, 0);
        let mut exit_status = None;
        for step in steps {
            match step {
                Step::Read { port, size } => {
                    let value = platform.io_read(port, size, now);
                    reads += 1;
                    prop_assert!(value <= all_ones(size), "{value:#x} from a {size}-byte read of {port:#x}");
                }
                Step::Write { port, size, value } => {
                    platform.io_write(port, size, value, now);
                    writes += 1;
                }
                Step::Wait { ns } => {
                    now += ns;
                    platform.advance(now);
                }
                Step::MmioRead { gpa, size } => {
                    prop_assert!(platform.mmio_read(0, gpa, size, now).is_some());
                }
                Step::MmioWrite { gpa, size, value } => {
                    prop_assert!(platform.mmio_write(0, gpa, size, value, now));
                }
                Step::Acknowledge => {
                    let pending = platform.pending_interrupt_vector(0);
                    let vector = platform.acknowledge_interrupt(0);
                    if let Some(pending) = pending {
                        prop_assert_eq!(vector, pending);
                    }
                }
                Step::Input(bytes) => {
                    let taken = platform.push_console_input(&bytes, now);
                    prop_assert!(taken <= bytes.len());
                }
            }

            if let Some(next) = platform.next_event_ns(now) {
                prop_assert!(next >= now);
            }
            // The console ring's offsets only grow, and it holds at most
            // its capacity.
            let console = platform.console();
            prop_assert!(console.start_offset() >= console_start);
            prop_assert!(console.end_offset() >= console_end);
            prop_assert!(console.end_offset() - console.start_offset() <= config.console_capacity as u64);
            prop_assert_eq!(console.len() as u64, console.end_offset() - console.start_offset());
            console_start = console.start_offset();
            console_end = console.end_offset();
            // The exit status, once reported, stays.
            if exit_status.is_some() {
                prop_assert_eq!(platform.exit_status(), exit_status);
            }
            exit_status = platform.exit_status();
            prop_assert!(platform.com1().pending_input() <= config.console_input_capacity + 16);
            prop_assert_eq!(platform.metrics().reads, reads);
            prop_assert_eq!(platform.metrics().writes, writes);
        }
        // Waking at the next event always finds the timers caught up.
        if let Some(next) = platform.next_event_ns(now) {
            platform.advance(next);
            prop_assert!(platform.next_event_ns(next).is_none_or(|after| after >= next));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage in every x2APIC MSR and the TSC deadline, with time going
    /// by: no panic, and the timer never asks for a time in the past.
    #[test]
    fn garbage_x2apic_msrs_keep_the_apic_sane(
        steps in proptest::collection::vec((0x800u32..=0x8ff, any::<u64>(), 0u64..10_000_000, any::<bool>()), 1..200)
    ) {
        use super::local_apic::{ApicMode, LocalApic};
        let mut apic = LocalApic::new(0, true, 2_000_000, 1_000_000);
        apic.set_mode(ApicMode::X2Apic);
        let mut now = 0u64;
        for (msr, value, wait, read) in steps {
            now += wait;
            if read {
                let _ = apic.msr_read(msr, now);
            } else {
                let _ = apic.msr_write(msr, value, now);
                apic.write_tsc_deadline(value >> 20, now);
            }
            apic.advance(now);
            if let Some(deadline) = apic.next_deadline() {
                prop_assert!(deadline > now);
            }
            if let Some(vector) = apic.pending_vector() {
                prop_assert!(vector >= 16);
                prop_assert!(u32::from(vector) >> 4 > apic.ppr() >> 4);
            }
            let _ = apic.acknowledge();
        }
    }
}
