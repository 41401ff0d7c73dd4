use super::*;
use crate::policy::test_hosts::{every_bit, skylake_x, SKYLAKE_X_BRAND};
use matryoshka_config::CpuidMask;
use proptest::prelude::*;

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// 3.5 GHz, like the emulator's CPU model, so that the numbers are easy to check.
const TSC_KHZ: u32 = 3_500_000;

fn config(masks: &CpuidPolicy) -> CpuidConfig<'_> {
    CpuidConfig {
        vcpus: 4,
        nested_hvm: false,
        masks,
        tsc_khz: TSC_KHZ,
        apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
        native: NativeSupport::ALL,
    }
}

fn masks(entries: &[&str]) -> CpuidPolicy {
    let mut policy = CpuidPolicy::default();
    for entry in entries {
        let mask = CpuidMask::parse_xend(entry).unwrap_or_else(|error| panic!("{entry}: {error}"));
        assert!(policy.add(mask), "{entry} given twice");
    }
    policy
}

fn skylake_guest(adjust: impl FnOnce(&mut CpuidConfig)) -> GuestCpuid {
    let no_masks = CpuidPolicy::default();
    let mut config = config(&no_masks);
    adjust(&mut config);
    GuestCpuid::new(skylake_x, &config)
}

fn at_reset(cpuid: &GuestCpuid, leaf: u32, subleaf: u32) -> [u32; 4] {
    cpuid.query(leaf, subleaf, 0, DynamicState::AT_RESET)
}

/// A 32-character xend mask: the character given for each listed bit, `rest` elsewhere.
fn mask_of(rest: char, bits: &[(u32, char)]) -> String {
    (0..32).rev().map(|bit| bits.iter().find(|(b, _)| *b == bit).map_or(rest, |(_, character)| *character)).collect()
}

#[test]
fn a_guests_configuration_gives_vcpus_nested_hvm_and_masks() {
    let text = "name = 'l1'\nmemory = 64\nkernel = 'k'\nvcpus = 3\nnestedhvm = 1\n\
                cpuid = ['0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']\n";
    let parsed = matryoshka_config::parse("guest.cfg", text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let guest = &parsed.config.guests[0];
    let config = CpuidConfig::for_guest(guest, TSC_KHZ, NativeSupport::ALL);
    assert_eq!(config.apic_timer_khz, DEFAULT_APIC_TIMER_KHZ);
    let cpuid = GuestCpuid::new(skylake_x, &config);
    assert_eq!(cpuid.vcpus(), 3);
    assert!(cpuid.has(Feature::Vmx));
    assert_eq!(at_reset(&cpuid, 1, 0)[ECX] & leaf1_ecx::HYPERVISOR, 0, "the mask applies");
}

// ---- leaf 0, leaf 1 ----

#[test]
fn leaf_0_gives_the_policy_maximum_and_the_host_vendor() {
    let cpuid = skylake_guest(|_| {});
    let [max, ebx, ecx, edx] = at_reset(&cpuid, 0, 0);
    assert_eq!(max, MAX_BASIC_LEAF);
    let mut vendor = Vec::new();
    for word in [ebx, edx, ecx] {
        vendor.extend_from_slice(&word.to_le_bytes());
    }
    assert_eq!(vendor, b"GenuineIntel");
}

#[test]
fn leaf_1_passes_family_model_stepping_and_clflush_size() {
    let cpuid = skylake_guest(|_| {});
    let [eax, ebx, _, _] = at_reset(&cpuid, 1, 0);
    assert_eq!(eax, 0x0005_0654);
    assert_eq!((ebx >> 8) & 0xff, 8, "CLFLUSH line size in 8-byte units");
}

#[test]
fn vmx_is_shown_only_with_nested_hvm() {
    let without = skylake_guest(|config| config.nested_hvm = false);
    assert_eq!(at_reset(&without, 1, 0)[ECX] & leaf1_ecx::VMX, 0);
    assert!(!without.has(Feature::Vmx));
    assert!(!without.nested_hvm());
    let with = skylake_guest(|config| config.nested_hvm = true);
    assert_ne!(at_reset(&with, 1, 0)[ECX] & leaf1_ecx::VMX, 0);
    assert!(with.has(Feature::Vmx));
}

#[test]
fn the_hypervisor_bit_is_set() {
    let cpuid = skylake_guest(|_| {});
    // The host (bare metal) does not have it.
    assert_eq!(skylake_x(1, 0)[ECX] & leaf1_ecx::HYPERVISOR, 0);
    assert_ne!(at_reset(&cpuid, 1, 0)[ECX] & leaf1_ecx::HYPERVISOR, 0);
}

#[test]
fn leaf_1_hides_what_the_monitor_does_not_emulate() {
    let cpuid = skylake_guest(|config| config.nested_hvm = true);
    let [_, _, ecx, edx] = at_reset(&cpuid, 1, 0);
    for (name, bit) in [
        ("DTES64", leaf1_ecx::DTES64),
        ("MONITOR", leaf1_ecx::MONITOR),
        ("DS-CPL", leaf1_ecx::DS_CPL),
        ("SMX", leaf1_ecx::SMX),
        ("EST", leaf1_ecx::EST),
        ("TM2", leaf1_ecx::TM2),
        ("SDBG", leaf1_ecx::SDBG),
        ("xTPR", leaf1_ecx::XTPR_UPDATE),
        ("PDCM", leaf1_ecx::PDCM),
        ("DCA", leaf1_ecx::DCA),
        ("x2APIC", leaf1_ecx::X2APIC),
        ("TSC-deadline", leaf1_ecx::TSC_DEADLINE),
    ] {
        assert_ne!(skylake_x(1, 0)[ECX] & bit, 0, "the host has {name}");
        assert_eq!(ecx & bit, 0, "{name} is shown");
    }
    for (name, bit) in [
        ("MCE", leaf1_edx::MCE),
        ("MCA", leaf1_edx::MCA),
        ("DS", leaf1_edx::DS),
        ("ACPI", leaf1_edx::ACPI),
        ("TM", leaf1_edx::TM),
        ("PBE", leaf1_edx::PBE),
    ] {
        assert_ne!(skylake_x(1, 0)[EDX] & bit, 0, "the host has {name}");
        assert_eq!(edx & bit, 0, "{name} is shown");
    }
    for (name, bit) in [("SSE4.2", leaf1_ecx::SSE4_2), ("AVX", leaf1_ecx::AVX), ("XSAVE", leaf1_ecx::XSAVE)] {
        assert_ne!(ecx & bit, 0, "{name} is hidden");
    }
    for (name, bit) in [("MTRR", leaf1_edx::MTRR), ("PAT", leaf1_edx::PAT), ("APIC", leaf1_edx::APIC)] {
        assert_ne!(edx & bit, 0, "{name} is hidden");
    }
}

#[test]
fn a_host_with_every_bit_shows_exactly_the_allow_lists() {
    let no_masks = CpuidPolicy::default();
    let cpuid = GuestCpuid::new(every_bit, &config(&no_masks));
    let leaf_1 = at_reset(&cpuid, 1, 0);
    // OSXSAVE is dynamic (CR4 clear at reset); HTT because of 4 vCPUs.
    assert_eq!(leaf_1[ECX], LEAF1_ECX_ALLOWED | leaf1_ecx::HYPERVISOR);
    assert_eq!(leaf_1[EDX], LEAF1_EDX_ALLOWED | leaf1_edx::HTT);
    assert_eq!(at_reset(&cpuid, 7, 0), [1, LEAF7_EBX_ALLOWED, LEAF7_ECX_ALLOWED, LEAF7_EDX_ALLOWED]);
    assert_eq!(at_reset(&cpuid, 7, 1), [LEAF7_1_EAX_ALLOWED, 0, 0, 0]);
    assert_eq!(at_reset(&cpuid, 7, 2), [0; 4]);
    assert_eq!(at_reset(&cpuid, 0x8000_0001, 0), [u32::MAX, 0, EXT1_ECX_ALLOWED, EXT1_EDX_ALLOWED]);
    assert_eq!(at_reset(&cpuid, 0x8000_0007, 0), [0, 0, 0, EXT7_EDX_ALLOWED]);
    assert_eq!(at_reset(&cpuid, 0xd, 1)[EAX], LEAF_D_1_EAX_ALLOWED);
    assert_eq!(at_reset(&cpuid, 0xd, 0)[EAX], XCR0_ALLOWED as u32);
    // Some of what must never pass, by name.
    assert_eq!(at_reset(&cpuid, 0x8000_0001, 0)[ECX] & ext1_ecx::SVM, 0);
    let [_, ebx, ecx, edx] = at_reset(&cpuid, 7, 0);
    for hidden in [leaf7_ebx::SGX, leaf7_ebx::PT, leaf7_ebx::HLE, leaf7_ebx::RTM, leaf7_ebx::MPX, leaf7_ebx::TSC_ADJUST]
    {
        assert_eq!(ebx & hidden, 0, "{hidden:#x}");
    }
    for hidden in [leaf7_ecx::LA57, leaf7_ecx::WAITPKG, leaf7_ecx::CET_SS, leaf7_ecx::SGX_LC, leaf7_ecx::PKS] {
        assert_eq!(ecx & hidden, 0, "{hidden:#x}");
    }
    for hidden in [leaf7_edx::HYBRID, leaf7_edx::AMX_TILE, leaf7_edx::CET_IBT, leaf7_edx::CORE_CAPABILITIES] {
        assert_eq!(edx & hidden, 0, "{hidden:#x}");
    }
    // The address sizes: linear capped at 48 (no LA57), physical as the host's.
    assert_eq!(at_reset(&cpuid, 0x8000_0008, 0), [0x3039, 0, 0, 0]);
    assert_eq!(cpuid.physical_address_bits(), 52);
    assert_eq!(cpuid.linear_address_bits(), 48);
}

// ---- topology ----

#[test]
fn apic_ids_are_the_vcpu_index() {
    let cpuid = skylake_guest(|config| config.vcpus = 4);
    for vcpu in 0..4 {
        let leaf_1 = cpuid.query(1, 0, vcpu, DynamicState::AT_RESET);
        assert_eq!(leaf_1[EBX] >> 24, vcpu, "initial APIC ID");
        for leaf in [0xb, 0x1f] {
            for subleaf in 0..4 {
                assert_eq!(cpuid.query(leaf, subleaf, vcpu, DynamicState::AT_RESET)[EDX], vcpu, "x2APIC ID");
            }
        }
    }
}

#[test]
fn htt_and_the_logical_processor_count_follow_the_vcpus() {
    for (vcpus, htt, addressable) in
        [(1, false, 1), (2, true, 2), (3, true, 4), (4, true, 4), (5, true, 8), (64, true, 64)]
    {
        let cpuid = skylake_guest(|config| config.vcpus = vcpus);
        let [_, ebx, _, edx] = at_reset(&cpuid, 1, 0);
        assert_eq!(edx & leaf1_edx::HTT != 0, htt, "{vcpus} vCPUs");
        assert_eq!((ebx >> 16) & 0xff, addressable, "{vcpus} vCPUs");
        assert_eq!(cpuid.vcpus(), vcpus);
    }
}

#[test]
fn leaves_0xb_and_0x1f_describe_one_thread_per_core() {
    for (vcpus, core_bits) in [(1, 0), (2, 1), (3, 2), (4, 2), (6, 3), (64, 6)] {
        let cpuid = skylake_guest(|config| config.vcpus = vcpus);
        for leaf in [0xb, 0x1f] {
            let vcpu = vcpus - 1;
            // SMT level: no thread bits, one logical processor per core.
            assert_eq!(cpuid.query(leaf, 0, vcpu, DynamicState::AT_RESET), [0, 1, 0x100, vcpu]);
            // Core level: shifting out the core bits leaves the package ID (0).
            assert_eq!(cpuid.query(leaf, 1, vcpu, DynamicState::AT_RESET), [core_bits, vcpus, 0x201, vcpu]);
            assert_eq!(vcpu >> core_bits, 0, "every vCPU is in package 0");
            // Any further level is invalid, echoing the subleaf in ECX[7:0].
            assert_eq!(cpuid.query(leaf, 2, vcpu, DynamicState::AT_RESET), [0, 0, 2, vcpu]);
            assert_eq!(cpuid.query(leaf, 0x1234, vcpu, DynamicState::AT_RESET), [0, 0, 0x34, vcpu]);
        }
    }
}

#[test]
fn vcpu_counts_out_of_range_are_clamped() {
    assert_eq!(skylake_guest(|config| config.vcpus = 0).vcpus(), 1);
    assert_eq!(skylake_guest(|config| config.vcpus = 1000).vcpus(), MAX_VCPUS);
}

#[test]
fn leaf_4_shares_level_1_and_2_per_core_and_level_3_per_package() {
    let cpuid = skylake_guest(|config| config.vcpus = 3);
    let sharing = |eax: u32| ((eax >> 14) & 0xfff) + 1;
    let cores = |eax: u32| (eax >> 26) + 1;
    for subleaf in 0..3 {
        let leaf = at_reset(&cpuid, 4, subleaf);
        let host = skylake_x(4, subleaf);
        assert_eq!(leaf[EAX] & 0x3ff, host[EAX] & 0x3ff, "type and level");
        assert_eq!(&leaf[1..3], &host[1..3], "ways, partitions, line size, sets");
        assert_eq!(sharing(leaf[EAX]), 1);
        assert_eq!(cores(leaf[EAX]), 4);
    }
    let l3 = at_reset(&cpuid, 4, 3);
    assert_eq!((l3[EAX] >> 5) & 7, 3);
    assert_eq!(sharing(l3[EAX]), 4);
    assert_eq!(cores(l3[EAX]), 4);
    assert_eq!(l3[EDX], 0x4, "complex indexing");
    assert_eq!(at_reset(&cpuid, 4, 4), [0; 4], "no more caches");
    assert_eq!(at_reset(&cpuid, 4, 100), [0; 4]);
}

// ---- leaves that read as zero ----

#[test]
fn power_pmu_and_unemulated_leaves_are_zero() {
    let cpuid = skylake_guest(|_| {});
    assert_eq!(at_reset(&cpuid, 6, 0), [leaf6_eax::ARAT, 0, 0, 0], "only ARAT: the emulated timer never stops");
    // MONITOR/MWAIT, PMU, RDT, PT; 0x17 and up are beyond the host's maximum,
    // where it echoes its leaf 0x16.
    for leaf in [0x5, 0xa, 0xf, 0x10, 0x14, 0x17, 0x1a, 0x1d] {
        assert_ne!(skylake_x(leaf, 0), [0; 4], "the host answers leaf {leaf:#x}");
        for subleaf in [0, 1] {
            assert_eq!(at_reset(&cpuid, leaf, subleaf), [0; 4], "leaf {leaf:#x}.{subleaf}");
        }
    }
}

// ---- leaf 7 ----

#[test]
fn leaf_7_passes_safe_features_and_hides_tsx_mpx_pt() {
    let cpuid = skylake_guest(|_| {});
    let [max_subleaf, ebx, ecx, edx] = at_reset(&cpuid, 7, 0);
    assert_eq!(max_subleaf, 0, "the host has no subleaf 1");
    let kept = leaf7_ebx::FSGSBASE
        | leaf7_ebx::BMI1
        | leaf7_ebx::AVX2
        | leaf7_ebx::FDP_EXCPTN_ONLY
        | leaf7_ebx::SMEP
        | leaf7_ebx::BMI2
        | leaf7_ebx::ERMS
        | leaf7_ebx::INVPCID
        | leaf7_ebx::FPU_CS_DS_DEPRECATED
        | leaf7_ebx::AVX512F
        | leaf7_ebx::AVX512DQ
        | leaf7_ebx::RDSEED
        | leaf7_ebx::ADX
        | leaf7_ebx::SMAP
        | leaf7_ebx::CLFLUSHOPT
        | leaf7_ebx::CLWB
        | leaf7_ebx::AVX512CD
        | leaf7_ebx::AVX512BW
        | leaf7_ebx::AVX512VL;
    assert_eq!(ebx, kept, "hidden: TSC_ADJUST, HLE, RTM, RDT, MPX, PT");
    // PKU; OSPKE is dynamic (CR4.PKE is clear at reset, whatever the host's CR4).
    assert_eq!(ecx, leaf7_ecx::PKU);
    assert_eq!(edx, skylake_x(7, 0)[EDX], "speculation controls as the host");
}

#[test]
fn features_the_vmcs_must_enable_need_native_support() {
    let native = NativeSupport { ept_1gb_pages: false, rdtscp: false, invpcid: false };
    let no_masks = CpuidPolicy::default();
    let cpuid = GuestCpuid::new(every_bit, &CpuidConfig { native, ..config(&no_masks) });
    assert_eq!(at_reset(&cpuid, 7, 0)[EBX] & leaf7_ebx::INVPCID, 0);
    assert_eq!(at_reset(&cpuid, 7, 0)[ECX] & leaf7_ecx::RDPID, 0);
    let edx = at_reset(&cpuid, 0x8000_0001, 0)[EDX];
    assert_eq!(edx & (ext1_edx::PAGE_1GB | ext1_edx::RDTSCP), 0);
    assert_ne!(edx & ext1_edx::LM, 0);
    assert!(!cpuid.has(Feature::Page1Gb) && !cpuid.has(Feature::Rdtscp) && !cpuid.has(Feature::Rdpid));

    let all = GuestCpuid::new(every_bit, &config(&no_masks));
    assert!(all.has(Feature::Page1Gb) && all.has(Feature::Rdtscp) && all.has(Feature::Rdpid));
}

#[test]
fn native_support_comes_from_the_vmx_capabilities() {
    let mut capabilities = VmxCapabilities::default();
    assert_eq!(
        NativeSupport::from_capabilities(&capabilities),
        NativeSupport { ept_1gb_pages: false, rdtscp: false, invpcid: false }
    );
    capabilities.secondary.allowed1 = (SecondaryControls::RDTSCP | SecondaryControls::INVPCID).bits();
    capabilities.ept_vpid = vmx::capabilities::EptVpidCapabilities(vmx::capabilities::EptVpidCapabilities::PAGES_1G);
    assert_eq!(NativeSupport::from_capabilities(&capabilities), NativeSupport::ALL);
}

// ---- XSAVE ----

#[test]
fn leaf_0xd_offers_the_host_layout_without_mpx_and_supervisor_state() {
    let cpuid = skylake_guest(|_| {});
    let offered = xstate::X87 | xstate::SSE | xstate::AVX | xstate::AVX512 | xstate::PKRU;
    let [eax, ebx, ecx, edx] = at_reset(&cpuid, 0xd, 0);
    assert_eq!(eax, offered as u32);
    assert_eq!(edx, 0);
    assert_eq!(ebx, 576, "XCR0 = x87 at reset");
    assert_eq!(ecx, 2696, "PKRU ends last, at 2688 + 8");
    assert_eq!(cpuid.supported_xcr0(), offered);
    // XSAVEOPT, XSAVEC, XGETBV1; no XSAVES and no IA32_XSS components.
    assert_eq!(at_reset(&cpuid, 0xd, 1)[EAX], 0x7);
    assert_eq!(at_reset(&cpuid, 0xd, 1)[ECX..], [0, 0]);
    assert!(!cpuid.has(Feature::Xsaves));
    for component in [2, 5, 6, 7, 9] {
        assert_eq!(at_reset(&cpuid, 0xd, component), skylake_x(0xd, component), "component {component}");
    }
    for component in [3, 4, 8, 10, 62, 63, 64, 1000] {
        assert_eq!(at_reset(&cpuid, 0xd, component), [0; 4], "component {component}");
    }
}

#[test]
fn the_xsave_sizes_follow_xcr0() {
    let cpuid = skylake_guest(|_| {});
    let with_xcr0 = |xcr0| DynamicState { xcr0, ..DynamicState::AT_RESET };
    let size = |xcr0| cpuid.query(0xd, 0, 0, with_xcr0(xcr0))[EBX];
    let compacted = |xcr0| cpuid.query(0xd, 1, 0, with_xcr0(xcr0))[EBX];
    assert_eq!(size(0b11), 576);
    assert_eq!(size(0b111), 832);
    assert_eq!(size(0b111 | xstate::AVX512), 2688);
    assert_eq!(size(0b111 | xstate::AVX512 | xstate::PKRU), 2696);
    assert_eq!(compacted(0b111), 832);
    assert_eq!(compacted(0b111 | xstate::AVX512 | xstate::PKRU), 832 + 64 + 512 + 1024 + 8);
    // The max size (ECX) does not move.
    assert_eq!(cpuid.query(0xd, 0, 0, with_xcr0(0b111))[ECX], 2696);
}

#[test]
fn a_host_without_xsave_gets_an_empty_leaf_0xd() {
    let no_masks = CpuidPolicy::default();
    let without_xsave = |leaf, subleaf| match leaf {
        1 => {
            let [eax, ebx, ecx, edx] = skylake_x(1, 0);
            [eax, ebx, ecx & !(leaf1_ecx::XSAVE | leaf1_ecx::OSXSAVE | leaf1_ecx::AVX), edx]
        }
        _ => skylake_x(leaf, subleaf),
    };
    let cpuid = GuestCpuid::new(without_xsave, &config(&no_masks));
    let dynamic = DynamicState { osxsave: true, xcr0: 0b111, ..DynamicState::AT_RESET };
    for subleaf in [0, 1, 2] {
        assert_eq!(cpuid.query(0xd, subleaf, 0, dynamic), [0; 4], "subleaf {subleaf}");
    }
    assert_eq!(cpuid.query(1, 0, 0, dynamic)[ECX] & leaf1_ecx::OSXSAVE, 0);
    assert_eq!(cpuid.supported_xcr0(), 0);
}

// ---- TSC and timing leaves ----

#[test]
fn the_tsc_leaves_describe_the_real_tsc_rate() {
    let cpuid = skylake_guest(|_| {});
    // The crystal is the 1 GHz APIC timer clock; TSC = 1 GHz * 7 / 2 = 3.5 GHz.
    assert_eq!(at_reset(&cpuid, 0x15, 0), [2, 7, 1_000_000_000, 0]);
    assert_eq!(at_reset(&cpuid, 0x16, 0), [3500, 3500, 100, 0]);
    assert_eq!(at_reset(&cpuid, HYPERVISOR_TIMING_LEAF, 0), [3_500_000, 1_000_000, 0, 0]);
    assert_eq!(cpuid.tsc_khz(), TSC_KHZ);
    assert_eq!(cpuid.apic_timer_khz(), DEFAULT_APIC_TIMER_KHZ);
}

#[test]
fn leaf_0x15_gives_the_exact_tsc_rate_for_any_rate() {
    for (tsc_khz, apic_timer_khz) in [(50_000, 1_000_000), (2_893_442, 1_000_000), (1_000_000, 25_000), (4_294_967, 3)]
    {
        let cpuid = skylake_guest(|config| {
            config.tsc_khz = tsc_khz;
            config.apic_timer_khz = apic_timer_khz;
        });
        let [denominator, numerator, crystal_hz, _] = at_reset(&cpuid, 0x15, 0);
        assert_eq!(u64::from(crystal_hz), u64::from(apic_timer_khz) * 1000);
        assert_eq!(
            u64::from(crystal_hz) * u64::from(numerator),
            u64::from(tsc_khz) * 1000 * u64::from(denominator),
            "{tsc_khz} kHz"
        );
        // The base frequency, rounded to the MHz.
        assert_eq!(at_reset(&cpuid, 0x16, 0)[EAX], (tsc_khz + 500) / 1000);
    }
}

#[test]
fn an_apic_clock_beyond_ecx_leaves_the_crystal_unknown() {
    let cpuid = skylake_guest(|config| config.apic_timer_khz = 5_000_000);
    assert_eq!(at_reset(&cpuid, 0x15, 0), [10, 7, 0, 0]);
}

#[test]
fn an_unknown_tsc_rate_leaves_the_frequency_leaves_zero() {
    let cpuid = skylake_guest(|config| config.tsc_khz = 0);
    assert_eq!(at_reset(&cpuid, 0x15, 0), [0; 4]);
    assert_eq!(at_reset(&cpuid, 0x16, 0), [0; 4]);
    assert_eq!(at_reset(&cpuid, HYPERVISOR_TIMING_LEAF, 0), [0, DEFAULT_APIC_TIMER_KHZ, 0, 0]);
}

// ---- hypervisor and extended leaves ----

#[test]
fn the_hypervisor_leaf_gives_the_signature() {
    let cpuid = skylake_guest(|_| {});
    let [max, ebx, ecx, edx] = at_reset(&cpuid, HYPERVISOR_LEAF, 0);
    assert_eq!(max, HYPERVISOR_TIMING_LEAF);
    let mut signature = Vec::new();
    for word in [ebx, ecx, edx] {
        signature.extend_from_slice(&word.to_le_bytes());
    }
    assert_eq!(signature, b"MatryoshkaVM");
    for leaf in HYPERVISOR_LEAF + 1..HYPERVISOR_TIMING_LEAF {
        assert_eq!(at_reset(&cpuid, leaf, 0), [0; 4], "{leaf:#x}");
    }
}

#[test]
fn extended_leaves_pass_the_brand_string_and_address_sizes() {
    let cpuid = skylake_guest(|_| {});
    assert_eq!(at_reset(&cpuid, EXTENDED_LEAF, 0), [MAX_EXTENDED_LEAF, 0, 0, 0]);
    let mut brand = Vec::new();
    for leaf in 0x8000_0002..=0x8000_0004 {
        for word in at_reset(&cpuid, leaf, 0) {
            brand.extend_from_slice(&word.to_le_bytes());
        }
    }
    assert_eq!(brand, SKYLAKE_X_BRAND);
    assert_eq!(at_reset(&cpuid, 0x8000_0001, 0), [0, 0, 0x121, 0x2c10_0800]);
    assert_eq!(at_reset(&cpuid, 0x8000_0006, 0), skylake_x(0x8000_0006, 0));
    assert_eq!(at_reset(&cpuid, 0x8000_0007, 0), [0, 0, 0, ext7_edx::INVARIANT_TSC]);
    assert_eq!(at_reset(&cpuid, 0x8000_0008, 0), [0x302e, 0, 0, 0]);
    assert_eq!(cpuid.physical_address_bits(), 46);
    assert_eq!(cpuid.linear_address_bits(), 48);
    for feature in [Feature::Syscall, Feature::Nx, Feature::LongMode, Feature::Page1Gb, Feature::InvariantTsc] {
        assert!(cpuid.has(feature), "{feature:?}");
    }
}

#[test]
fn out_of_range_leaves_return_the_highest_basic_leaf() {
    let cpuid = skylake_guest(|_| {});
    for leaf in [0x20, 0x3fff_ffff, 0x4000_0011, 0x4000_0100, 0x8000_0009, 0xc000_0000, u32::MAX] {
        for subleaf in [0, 1, 7] {
            assert_eq!(
                cpuid.query(leaf, subleaf, 3, DynamicState::AT_RESET),
                cpuid.query(MAX_BASIC_LEAF, subleaf, 3, DynamicState::AT_RESET),
                "{leaf:#x}.{subleaf}"
            );
        }
    }
}

#[test]
fn leaves_without_subleaves_ignore_ecx() {
    let cpuid = skylake_guest(|_| {});
    for leaf in [0x0, 0x1, 0x2, 0x6, 0x15, 0x16, HYPERVISOR_LEAF, 0x8000_0001, 0x8000_0008] {
        assert_eq!(at_reset(&cpuid, leaf, 5), at_reset(&cpuid, leaf, 0), "{leaf:#x}");
    }
}

// ---- dynamic bits ----

#[test]
fn osxsave_follows_cr4() {
    let cpuid = skylake_guest(|_| {});
    let osxsave =
        |cr4| cpuid.query(1, 0, 0, DynamicState::from_registers(cr4, 1, 0xfee0_0900))[ECX] & leaf1_ecx::OSXSAVE;
    assert_eq!(osxsave(0), 0);
    assert_eq!(osxsave(1 << 18), leaf1_ecx::OSXSAVE);
}

#[test]
fn ospke_follows_cr4() {
    let cpuid = skylake_guest(|_| {});
    let ospke = |cr4| cpuid.query(7, 0, 0, DynamicState::from_registers(cr4, 1, 0xfee0_0900))[ECX] & leaf7_ecx::OSPKE;
    assert_eq!(ospke(0), 0);
    assert_eq!(ospke(1 << 22), leaf7_ecx::OSPKE);
}

#[test]
fn the_apic_bit_follows_the_apic_enable() {
    let cpuid = skylake_guest(|_| {});
    let apic = |apic_base| cpuid.query(1, 0, 0, DynamicState::from_registers(0, 1, apic_base))[EDX] & leaf1_edx::APIC;
    assert_eq!(apic(0xfee0_0900), leaf1_edx::APIC);
    assert_eq!(apic(0xfee0_0100), 0);
    assert!(cpuid.has(Feature::Apic), "enabled at reset");
}

#[test]
fn dynamic_bits_need_their_feature_and_ignore_masks() {
    // XSAVE and PKU hidden by masks; OSXSAVE forced to 1 by a mask.
    let masks = masks(&[
        &format!("0x1:ecx={}", mask_of('x', &[(26, '0'), (27, '1')])),
        &format!("0x7,0:ecx={}", mask_of('x', &[(3, '0')])),
    ]);
    let cpuid = GuestCpuid::new(skylake_x, &config(&masks));
    let all_on = DynamicState { osxsave: true, pke: true, apic_enabled: true, xcr0: 0b111 };
    assert_eq!(cpuid.query(1, 0, 0, all_on)[ECX] & (leaf1_ecx::XSAVE | leaf1_ecx::OSXSAVE), 0);
    assert_eq!(cpuid.query(7, 0, 0, all_on)[ECX] & (leaf7_ecx::PKU | leaf7_ecx::OSPKE), 0);
    assert_eq!(cpuid.query(1, 0, 0, DynamicState::AT_RESET)[ECX] & leaf1_ecx::OSXSAVE, 0);
    assert_eq!(cpuid.supported_xcr0(), 0, "no XSAVE, no XCR0");
}

// ---- user masks ----

#[test]
fn the_xen_wiki_mask_clears_the_hypervisor_bit_only() {
    let masks = masks(&["0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]);
    let masked = GuestCpuid::new(skylake_x, &config(&masks));
    let default = skylake_guest(|_| {});
    let dynamic = DynamicState { osxsave: true, ..DynamicState::AT_RESET };
    let [eax, ebx, ecx, edx] = masked.query(1, 0, 2, dynamic);
    let expected = default.query(1, 0, 2, dynamic);
    assert_eq!(ecx, expected[ECX] & !leaf1_ecx::HYPERVISOR);
    assert_eq!([eax, ebx, edx], [expected[EAX], expected[EBX], expected[EDX]]);
    // Other leaves are untouched.
    assert_eq!(masked.query(7, 0, 0, dynamic), default.query(7, 0, 0, dynamic));
}

#[test]
fn a_k_mask_exposes_a_host_bit_the_default_hides() {
    // x2APIC (bit 21) and SMX (bit 6) from the host.
    let ecx_mask = mask_of('x', &[(21, 'k'), (6, 'k')]);
    let masks = masks(&[&format!("0x1:ecx={ecx_mask}"), &format!("0x7:ebx={}", mask_of('x', &[(11, 'k')]))]);
    let cpuid = GuestCpuid::new(skylake_x, &config(&masks));
    let ecx = at_reset(&cpuid, 1, 0)[ECX];
    assert_ne!(ecx & leaf1_ecx::X2APIC, 0);
    assert_ne!(ecx & leaf1_ecx::SMX, 0);
    assert!(cpuid.has(Feature::X2apic));
    // Bit 11 of leaf 7 EBX: RTM, which the host has.
    assert_ne!(at_reset(&cpuid, 7, 0)[EBX] & leaf7_ebx::RTM, 0);
    // The mask has no subleaf, so it applies to every subleaf of leaf 7.
    assert_eq!(at_reset(&cpuid, 7, 1)[EBX], 0, "the host's subleaf 1 is zero");
}

#[test]
fn a_mask_can_force_bits_and_apic_ids() {
    // Force TSC-deadline on; give every vCPU APIC ID 0x80 (at the user's risk).
    let masks = masks(&[
        &format!("0x1:ecx={},ebx=10000000xxxxxxxxxxxxxxxxxxxxxxxx", mask_of('x', &[(24, '1')])),
        "0x40000010:eax=00000000000000000000000000000001",
    ]);
    let cpuid = GuestCpuid::new(skylake_x, &config(&masks));
    let leaf_1 = cpuid.query(1, 0, 3, DynamicState::AT_RESET);
    assert_ne!(leaf_1[ECX] & leaf1_ecx::TSC_DEADLINE, 0);
    assert_eq!(leaf_1[EBX] >> 24, 0x80);
    assert_eq!(at_reset(&cpuid, HYPERVISOR_TIMING_LEAF, 0)[EAX], 1);
}

#[test]
fn a_mask_on_a_subleafless_leaf_applies_whatever_ecx() {
    let masks = masks(&["0x1,0x0:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]);
    let cpuid = GuestCpuid::new(skylake_x, &config(&masks));
    for subleaf in [0, 1, 0xffff_ffff] {
        assert_eq!(at_reset(&cpuid, 1, subleaf)[ECX] & leaf1_ecx::HYPERVISOR, 0);
    }
}

#[test]
fn k_reads_zero_for_leaves_beyond_the_hosts_maximum() {
    // The host's max basic leaf is 0x16; its leaf 0x17 would echo leaf 0x16.
    let all_k = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
    let masks = masks(&[&format!("0x17:eax={all_k}"), &format!("0x4000000a:eax={all_k}")]);
    let cpuid = GuestCpuid::new(skylake_x, &config(&masks));
    assert_eq!(at_reset(&cpuid, 0x17, 0), [0; 4]);
    assert_eq!(at_reset(&cpuid, 0x4000_000a, 0), [0; 4]);
}

// ---- properties ----

fn any_dynamic_state() -> impl Strategy<Value = DynamicState> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>())
        .prop_map(|(osxsave, pke, apic_enabled, xcr0)| DynamicState { osxsave, pke, apic_enabled, xcr0 })
}

fn interesting_leaf() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..0x30, HYPERVISOR_LEAF..HYPERVISOR_LEAF + 0x20, EXTENDED_LEAF..EXTENDED_LEAF + 0x20, any::<u32>(),]
}

proptest! {
    #[test]
    fn query_never_panics(
        leaf in interesting_leaf(),
        subleaf in any::<u32>(),
        vcpu in any::<u32>(),
        dynamic in any_dynamic_state(),
        vcpus in any::<u32>(),
        tsc_khz in any::<u32>(),
        apic_timer_khz in any::<u32>(),
        every_bit_host in any::<bool>(),
        nested_hvm in any::<bool>(),
    ) {
        let masks = masks(&["0x1:ecx=kkkkxxxxxxxxxxxxxxxxxxxxxxxx0000", "0xd:ebx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"]);
        let config = CpuidConfig { vcpus, tsc_khz, apic_timer_khz, nested_hvm, ..config(&masks) };
        let cpuid = if every_bit_host { GuestCpuid::new(every_bit, &config) } else { GuestCpuid::new(skylake_x, &config) };
        let seen = cpuid.query(leaf, subleaf, vcpu, dynamic);
        let again = cpuid.query(leaf, subleaf, vcpu, dynamic);
        prop_assert_eq!(seen, again, "answers are stable");
        let _ = (cpuid.supported_xcr0(), cpuid.physical_address_bits(), cpuid.linear_address_bits());
    }

    #[test]
    fn every_vcpu_sees_the_same_features(vcpu in 0u32..64, dynamic in any_dynamic_state()) {
        let cpuid = skylake_guest(|config| config.vcpus = 64);
        for (leaf, subleaf) in [(1, 0), (7, 0), (0xd, 0), (0xd, 1), (0x8000_0001, 0)] {
            let mut mine = cpuid.query(leaf, subleaf, vcpu, dynamic);
            let mut first = cpuid.query(leaf, subleaf, 0, dynamic);
            if leaf == 1 {
                // Only the initial APIC ID differs.
                prop_assert_eq!(mine[EBX] >> 24, vcpu);
                mine[EBX] &= 0x00ff_ffff;
                first[EBX] &= 0x00ff_ffff;
            }
            prop_assert_eq!(mine, first);
        }
    }
}
