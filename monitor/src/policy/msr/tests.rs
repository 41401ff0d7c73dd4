use super::*;
use crate::policy::cpuid::{CpuidConfig, NativeSupport, DEFAULT_APIC_TIMER_KHZ};
use crate::policy::test_hosts::skylake_x;
use matryoshka_config::{CpuidMask, CpuidPolicy};
use proptest::prelude::*;

const HOST_TSC: u64 = 1_000_000;
const TSC_OFFSET: u64 = 500;

/// RDCL_NO, MDS_NO, TAA_NO, SKIP_L1DFL_VMENTRY and TSX_CTRL: the last two must not pass.
const HOST_ARCH_CAPABILITIES: u64 = arch_capabilities::RDCL_NO
    | arch_capabilities::MDS_NO
    | arch_capabilities::TAA_NO
    | arch_capabilities::SKIP_L1DFL_VMENTRY
    | arch_capabilities::TSX_CTRL;

struct Setup<'a> {
    nested_hvm: bool,
    unknown: UnknownMsrAction,
    masks: &'a [&'a str],
    native: NativeSupport,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self { nested_hvm: false, unknown: UnknownMsrAction::InjectGp, masks: &[], native: NativeSupport::ALL }
    }
}

impl Setup<'_> {
    fn policy(&self) -> MsrPolicy {
        let mut masks = CpuidPolicy::default();
        for entry in self.masks {
            assert!(masks.add(CpuidMask::parse_xend(entry).unwrap()));
        }
        let config = CpuidConfig {
            vcpus: 2,
            nested_hvm: self.nested_hvm,
            masks: &masks,
            tsc_khz: 3_500_000,
            apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
            native: self.native,
        };
        MsrPolicy::new(self.unknown, &GuestCpuid::new(skylake_x, &config), Some(HOST_ARCH_CAPABILITIES))
    }
}

fn default_policy() -> MsrPolicy {
    Setup::default().policy()
}

fn ctx(policy: &MsrPolicy) -> MsrContext<'_> {
    MsrContext { policy, host_tsc: HOST_TSC, tsc_offset: TSC_OFFSET, vmx_capabilities: None }
}

fn gp(reason: GpReason) -> MsrOutcome {
    MsrOutcome::InjectGp { reason }
}

fn reserved_bits(bits: u64) -> MsrOutcome {
    gp(GpReason::ReservedBits { bits })
}

/// A 32-character xend mask with `character` for `bit` and `x` elsewhere.
fn mask_bit(bit: u32, character: char) -> String {
    (0..32).rev().map(|b| if b == bit { character } else { 'x' }).collect()
}

// ---- time-stamp counter ----

#[test]
fn the_tsc_reads_host_plus_offset_and_a_write_moves_the_offset() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_TSC, &ctx(&policy)), MsrOutcome::Read(HOST_TSC + TSC_OFFSET));
    assert_eq!(state.wrmsr(IA32_TSC, HOST_TSC + 42, &ctx(&policy)), MsrOutcome::SetTscOffset { offset: 42 });
    // Back in time: the offset wraps, as the VMCS's 64-bit addition does.
    let MsrOutcome::SetTscOffset { offset } = state.wrmsr(IA32_TSC, 0, &ctx(&policy)) else { panic!() };
    assert_eq!(HOST_TSC.wrapping_add(offset), 0);
}

// ---- identification ----

#[test]
fn platform_id_reads_zero_and_is_read_only() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_PLATFORM_ID, &ctx(&policy)), MsrOutcome::Read(0));
    assert_eq!(state.wrmsr(IA32_PLATFORM_ID, 0, &ctx(&policy)), gp(GpReason::WriteToReadOnly));
}

#[test]
fn microcode_msrs_read_revision_zero_and_ignore_updates() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    // Linux's sequence: write 0, CPUID(1), read the revision.
    assert_eq!(state.wrmsr(IA32_BIOS_SIGN_ID, 0, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_BIOS_SIGN_ID, &ctx(&policy)), MsrOutcome::Read(0));
    assert_eq!(state.wrmsr(IA32_BIOS_SIGN_ID, 0x1234 << 32, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_BIOS_SIGN_ID, &ctx(&policy)), MsrOutcome::Read(0));
    assert_eq!(state.wrmsr(IA32_BIOS_UPDT_TRIG, 0x10_0000, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_BIOS_UPDT_TRIG, &ctx(&policy)), gp(GpReason::ReadOfWriteOnly));
}

#[test]
fn platform_info_gives_the_tsc_ratio_to_the_bus() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    // 3.5 GHz / 100 MHz.
    assert_eq!(state.rdmsr(MSR_PLATFORM_INFO, &ctx(&policy)), MsrOutcome::Read(35 << 8));
    assert_eq!(state.wrmsr(MSR_PLATFORM_INFO, 35 << 8, &ctx(&policy)), gp(GpReason::WriteToReadOnly));
}

// ---- APIC base ----

#[test]
fn apic_base_has_the_bsp_flag_on_vcpu_0_only() {
    let policy = default_policy();
    assert_eq!(MsrState::new(0).rdmsr(IA32_APIC_BASE, &ctx(&policy)), MsrOutcome::Read(0xfee0_0900));
    assert_eq!(MsrState::new(1).rdmsr(IA32_APIC_BASE, &ctx(&policy)), MsrOutcome::Read(0xfee0_0800));
}

#[test]
fn apic_base_keeps_the_enable_bit_per_vcpu() {
    let policy = default_policy();
    let mut bsp = MsrState::new(0);
    let mut ap = MsrState::new(1);
    assert_eq!(ap.wrmsr(IA32_APIC_BASE, 0xfee0_0000, &ctx(&policy)), MsrOutcome::Written);
    assert!(!ap.apic_enabled());
    assert_eq!(ap.rdmsr(IA32_APIC_BASE, &ctx(&policy)), MsrOutcome::Read(0xfee0_0000));
    assert!(bsp.apic_enabled());
    // The BSP flag is the vCPU's, whatever is written.
    assert_eq!(bsp.wrmsr(IA32_APIC_BASE, 0xfee0_0800, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(bsp.rdmsr(IA32_APIC_BASE, &ctx(&policy)), MsrOutcome::Read(0xfee0_0900));
    assert_eq!(ap.wrmsr(IA32_APIC_BASE, 0xfee0_0900, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(ap.apic_base(), 0xfee0_0800);
}

#[test]
fn apic_base_refuses_relocation_x2apic_and_reserved_bits() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(
        state.wrmsr(IA32_APIC_BASE, 0xfec0_0900, &ctx(&policy)),
        gp(GpReason::ApicRelocation { base: 0xfec0_0000 })
    );
    assert_eq!(state.wrmsr(IA32_APIC_BASE, 0xfee0_0d00, &ctx(&policy)), gp(GpReason::X2apicMode));
    assert_eq!(state.wrmsr(IA32_APIC_BASE, 0xfee0_0901, &ctx(&policy)), reserved_bits(1));
    assert_eq!(state.wrmsr(IA32_APIC_BASE, 0xfee0_0b00, &ctx(&policy)), reserved_bits(1 << 9));
    // MAXPHYADDR is 46.
    assert_eq!(state.wrmsr(IA32_APIC_BASE, 1 << 46 | 0xfee0_0900, &ctx(&policy)), reserved_bits(1 << 46));
    assert_eq!(state.apic_base(), 0xfee0_0900, "unchanged");
    assert_eq!(state.metrics().injected_gp, 5);
}

// ---- feature control and VMX ----

#[test]
fn feature_control_is_locked_with_vmx_only_for_nested_guests() {
    for (nested_hvm, expected) in [(false, 0b001), (true, 0b101)] {
        let policy = Setup { nested_hvm, ..Setup::default() }.policy();
        let mut state = MsrState::new(0);
        assert_eq!(state.rdmsr(IA32_FEATURE_CONTROL, &ctx(&policy)), MsrOutcome::Read(expected));
        assert_eq!(state.wrmsr(IA32_FEATURE_CONTROL, expected, &ctx(&policy)), gp(GpReason::Locked));
        assert_eq!(FeatureControl(expected).check().is_ok(), nested_hvm);
    }
}

#[test]
fn vmx_capability_msrs_need_nested_hvm_and_come_from_the_table() {
    let table = [(IA32_VMX_BASIC, 0x00da_0400_0000_0004), (vmx::msr::IA32_VMX_PINBASED_CTLS, 0x3f_0000_0016)];
    let plain = default_policy();
    let nested = Setup { nested_hvm: true, ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    let with_table = |policy| MsrContext { vmx_capabilities: Some(&table), ..ctx(policy) };

    for msr in IA32_VMX_BASIC..=IA32_VMX_LAST {
        assert_eq!(state.rdmsr(msr, &with_table(&plain)), gp(GpReason::NotExposed), "{msr:#x}");
        assert_eq!(state.wrmsr(msr, 0, &with_table(&plain)), gp(GpReason::NotExposed), "{msr:#x}");
    }
    assert_eq!(state.rdmsr(IA32_VMX_BASIC, &with_table(&nested)), MsrOutcome::Read(0x00da_0400_0000_0004));
    assert_eq!(state.rdmsr(0x481, &with_table(&nested)), MsrOutcome::Read(0x3f_0000_0016));
    assert_eq!(state.rdmsr(0x491, &with_table(&nested)), gp(GpReason::MissingVmxCapability));
    assert_eq!(state.rdmsr(IA32_VMX_BASIC, &ctx(&nested)), gp(GpReason::MissingVmxCapability));
    assert_eq!(state.wrmsr(IA32_VMX_BASIC, 0, &with_table(&nested)), gp(GpReason::WriteToReadOnly));
    // Past the VMX range: unknown.
    assert_eq!(state.rdmsr(IA32_VMX_LAST + 1, &with_table(&nested)), gp(GpReason::UnknownMsr));
}

// ---- speculation controls ----

#[test]
fn spec_ctrl_takes_the_bits_cpuid_shows_and_goes_to_the_hardware() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    let all = spec_ctrl::IBRS | spec_ctrl::STIBP | spec_ctrl::SSBD;
    assert_eq!(state.rdmsr(IA32_SPEC_CTRL, &ctx(&policy)), MsrOutcome::Read(0));
    assert_eq!(
        state.wrmsr(IA32_SPEC_CTRL, all, &ctx(&policy)),
        MsrOutcome::LoadGuestMsr { msr: IA32_SPEC_CTRL, value: all }
    );
    assert_eq!(state.rdmsr(IA32_SPEC_CTRL, &ctx(&policy)), MsrOutcome::Read(all));
    assert_eq!(state.spec_ctrl(), all);
    assert_eq!(state.wrmsr(IA32_SPEC_CTRL, 1 << 3, &ctx(&policy)), reserved_bits(1 << 3));
    assert_eq!(MsrState::new(1).spec_ctrl(), 0, "per vCPU");

    // STIBP hidden by a mask: its bit becomes reserved.
    let masks = [format!("0x7,0:edx={}", mask_bit(27, '0'))];
    let policy = Setup { masks: &[&masks[0]], ..Setup::default() }.policy();
    assert_eq!(state.wrmsr(IA32_SPEC_CTRL, spec_ctrl::STIBP, &ctx(&policy)), reserved_bits(spec_ctrl::STIBP));
}

#[test]
fn spec_ctrl_is_absent_when_cpuid_hides_all_its_bits() {
    // SSBD (31), ARCH_CAPABILITIES (29), L1D_FLUSH (28), STIBP (27), IBRS/IBPB (26).
    let masks = "0x7,0:edx=0x0000xxxxxxxxxxxxxxxxxxxxxxxxxx";
    let policy = Setup { masks: &[masks], ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_SPEC_CTRL, &ctx(&policy)), gp(GpReason::NotExposed));
    assert_eq!(state.wrmsr(IA32_SPEC_CTRL, 0, &ctx(&policy)), gp(GpReason::NotExposed));
    assert_eq!(state.wrmsr(IA32_PRED_CMD, 1, &ctx(&policy)), gp(GpReason::NotExposed));
    assert_eq!(state.wrmsr(IA32_FLUSH_CMD, 1, &ctx(&policy)), gp(GpReason::NotExposed));
    assert_eq!(state.rdmsr(IA32_ARCH_CAPABILITIES, &ctx(&policy)), gp(GpReason::NotExposed));
}

#[test]
fn the_command_msrs_run_their_command_and_are_write_only() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    for (msr, command) in [(IA32_PRED_CMD, HardwareCommand::Ibpb), (IA32_FLUSH_CMD, HardwareCommand::FlushL1d)] {
        assert_eq!(state.wrmsr(msr, 1, &ctx(&policy)), MsrOutcome::Execute(command));
        assert_eq!(state.wrmsr(msr, 0, &ctx(&policy)), MsrOutcome::Written);
        assert_eq!(state.wrmsr(msr, 3, &ctx(&policy)), reserved_bits(2));
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), gp(GpReason::ReadOfWriteOnly));
    }
}

#[test]
fn arch_capabilities_reads_the_hosts_facts_only() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    let expected = arch_capabilities::RDCL_NO | arch_capabilities::MDS_NO | arch_capabilities::TAA_NO;
    assert_eq!(state.rdmsr(IA32_ARCH_CAPABILITIES, &ctx(&policy)), MsrOutcome::Read(expected));
    assert_eq!(state.wrmsr(IA32_ARCH_CAPABILITIES, 0, &ctx(&policy)), gp(GpReason::WriteToReadOnly));

    // Without the host's value the guest is promised nothing.
    let cpuid = GuestCpuid::new(
        skylake_x,
        &CpuidConfig {
            vcpus: 1,
            nested_hvm: false,
            masks: &CpuidPolicy::default(),
            tsc_khz: 0,
            apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
            native: NativeSupport::ALL,
        },
    );
    let policy = MsrPolicy::new(UnknownMsrAction::InjectGp, &cpuid, None);
    assert_eq!(state.rdmsr(IA32_ARCH_CAPABILITIES, &ctx(&policy)), MsrOutcome::Read(0));
    assert_eq!(state.rdmsr(MSR_PLATFORM_INFO, &ctx(&policy)), MsrOutcome::Read(0), "unknown TSC rate");
}

// ---- misc enable, debugctl ----

#[test]
fn misc_enable_reads_a_safe_value_and_keeps_only_fast_strings() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    let reset = misc_enable::FAST_STRINGS | misc_enable::BTS_UNAVAILABLE | misc_enable::PEBS_UNAVAILABLE;
    assert_eq!(state.rdmsr(IA32_MISC_ENABLE, &ctx(&policy)), MsrOutcome::Read(reset));
    // Clearing fast strings is kept.
    let without_fast_strings = reset & !misc_enable::FAST_STRINGS;
    assert_eq!(state.wrmsr(IA32_MISC_ENABLE, without_fast_strings, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_MISC_ENABLE, &ctx(&policy)), MsrOutcome::Read(without_fast_strings));
    // Other defined bits are ignored: MONITOR, the CPUID limit, XD disable stay off.
    let ignored = misc_enable::MONITOR_FSM | misc_enable::LIMIT_CPUID_MAXVAL | misc_enable::XD_DISABLE;
    assert_eq!(state.wrmsr(IA32_MISC_ENABLE, reset | ignored, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.misc_enable(), reset);
    // Undefined bits (here turbo disable, bit 38) raise #GP.
    assert_eq!(state.wrmsr(IA32_MISC_ENABLE, reset | 1 << 38, &ctx(&policy)), reserved_bits(1 << 38));
    assert_eq!(MsrState::new(1).misc_enable(), reset, "per vCPU");
}

#[test]
fn debugctl_lives_in_the_vmcs_and_allows_btf_only() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_DEBUGCTL, &ctx(&policy)), MsrOutcome::ReadVmcsField(GuestMsrField::Debugctl));
    assert_eq!(
        state.wrmsr(IA32_DEBUGCTL, debugctl::BTF, &ctx(&policy)),
        MsrOutcome::WriteVmcsField { field: GuestMsrField::Debugctl, value: debugctl::BTF }
    );
    // LBR (bit 0) needs LBR virtualization, which there is not.
    assert_eq!(state.wrmsr(IA32_DEBUGCTL, 1, &ctx(&policy)), reserved_bits(1));
}

// ---- MTRRs and PAT ----

#[test]
fn mtrrcap_offers_eight_variable_ranges_fixed_ranges_and_wc() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_MTRRCAP, &ctx(&policy)), MsrOutcome::Read(0x508));
    assert_eq!(state.wrmsr(IA32_MTRRCAP, 0x508, &ctx(&policy)), gp(GpReason::WriteToReadOnly));
}

#[test]
fn mtrr_def_type_starts_write_back_and_checks_its_type() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_MTRR_DEF_TYPE, &ctx(&policy)), MsrOutcome::Read(0x806));
    assert_eq!(state.wrmsr(IA32_MTRR_DEF_TYPE, 0xc00, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_MTRR_DEF_TYPE, &ctx(&policy)), MsrOutcome::Read(0xc00));
    for memory_type in [2, 3, 7, 0xff] {
        assert_eq!(
            state.wrmsr(IA32_MTRR_DEF_TYPE, 0x800 | memory_type, &ctx(&policy)),
            gp(GpReason::InvalidMemoryType { memory_type: memory_type as u8 })
        );
    }
    assert_eq!(state.wrmsr(IA32_MTRR_DEF_TYPE, 0x806 | 1 << 9, &ctx(&policy)), reserved_bits(1 << 9));
    assert_eq!(MsrState::new(1).mtrrs().def_type, 0x806, "per vCPU");
}

#[test]
fn fixed_range_mtrrs_check_each_bytes_type() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(FIXED_RANGE_MSRS.len(), 11);
    for (index, &msr) in FIXED_RANGE_MSRS.iter().enumerate() {
        let value = 0x0605_0401_0006_0504u64.rotate_left(8 * index as u32);
        assert_eq!(state.wrmsr(msr, value, &ctx(&policy)), MsrOutcome::Written, "{msr:#x}");
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), MsrOutcome::Read(value), "{msr:#x}");
        assert_eq!(
            state.wrmsr(msr, 0x0606_0606_0206_0606, &ctx(&policy)),
            gp(GpReason::InvalidMemoryType { memory_type: 2 })
        );
    }
    // Numbers between the fixed ranges are not MTRRs.
    assert_eq!(state.rdmsr(0x251, &ctx(&policy)), gp(GpReason::UnknownMsr));
}

#[test]
fn variable_range_mtrrs_check_type_and_address_bits() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    for range in 0..VARIABLE_RANGES as u32 {
        let base = IA32_MTRR_PHYSBASE0 + 2 * range;
        let mask = base + 1;
        // 0xC0000000-0xFFFFFFFF uncacheable, with MAXPHYADDR 46.
        let mask_value = (((1u64 << 46) - 1) & !0x3fff_ffff) | 1 << 11;
        assert_eq!(state.wrmsr(base, 0xc000_0000, &ctx(&policy)), MsrOutcome::Written);
        assert_eq!(state.wrmsr(mask, mask_value, &ctx(&policy)), MsrOutcome::Written);
        assert_eq!(state.rdmsr(base, &ctx(&policy)), MsrOutcome::Read(0xc000_0000));
        assert_eq!(state.rdmsr(mask, &ctx(&policy)), MsrOutcome::Read(mask_value));
        assert_eq!(state.mtrrs().variable[range as usize], VariableRange { base: 0xc000_0000, mask: mask_value });
        assert_eq!(state.wrmsr(base, 0xc000_0007, &ctx(&policy)), gp(GpReason::InvalidMemoryType { memory_type: 7 }));
        assert_eq!(state.wrmsr(base, 0xc000_0100, &ctx(&policy)), reserved_bits(0x100));
        assert_eq!(state.wrmsr(base, 1 << 46, &ctx(&policy)), reserved_bits(1 << 46));
        assert_eq!(state.wrmsr(mask, mask_value | 1, &ctx(&policy)), reserved_bits(1));
        assert_eq!(state.wrmsr(mask, mask_value | 1 << 50, &ctx(&policy)), reserved_bits(1 << 50));
    }
    assert_eq!(MsrState::new(1).mtrrs().variable[0], VariableRange::default(), "per vCPU");
    // Past the eighth range.
    let past = IA32_MTRR_PHYSBASE0 + 2 * VARIABLE_RANGES as u32;
    assert_eq!(state.rdmsr(past, &ctx(&policy)), gp(GpReason::UnknownMsr));
}

#[test]
fn mtrrs_need_the_mtrr_feature() {
    let masks = [format!("0x1:edx={}", mask_bit(12, '0'))];
    let policy = Setup { masks: &[&masks[0]], ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    for msr in [IA32_MTRRCAP, IA32_MTRR_DEF_TYPE, IA32_MTRR_PHYSBASE0, IA32_MTRR_FIX64K_00000] {
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), gp(GpReason::NotExposed), "{msr:#x}");
        assert_eq!(state.wrmsr(msr, 0, &ctx(&policy)), gp(GpReason::NotExposed), "{msr:#x}");
    }
}

#[test]
fn pat_is_a_vmcs_field_with_checked_memory_types() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_PAT, &ctx(&policy)), MsrOutcome::ReadVmcsField(GuestMsrField::Pat));
    // Linux's PAT: WB, WC, UC-, UC, WB, WP, UC-, WT.
    let linux = 0x0407_0506_0007_0106;
    assert_eq!(
        state.wrmsr(IA32_PAT, linux, &ctx(&policy)),
        MsrOutcome::WriteVmcsField { field: GuestMsrField::Pat, value: linux }
    );
    assert_eq!(
        state.wrmsr(IA32_PAT, 0x0007_0406_0007_0402, &ctx(&policy)),
        gp(GpReason::InvalidMemoryType { memory_type: 2 })
    );
    assert_eq!(
        state.wrmsr(IA32_PAT, 0x0007_0406_0807_0406, &ctx(&policy)),
        gp(GpReason::InvalidMemoryType { memory_type: 8 })
    );

    let masks = [format!("0x1:edx={}", mask_bit(16, '0'))];
    let without_pat = Setup { masks: &[&masks[0]], ..Setup::default() }.policy();
    assert_eq!(state.rdmsr(IA32_PAT, &ctx(&without_pat)), gp(GpReason::NotExposed));
    assert_eq!(state.wrmsr(IA32_PAT, PAT_AT_RESET, &ctx(&without_pat)), gp(GpReason::NotExposed));
}

// ---- VMCS-held MSRs ----

#[test]
fn efer_takes_the_bits_cpuid_allows() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    let long_mode = efer::SCE | efer::LME | efer::LMA | efer::NXE;
    assert_eq!(policy.efer_bits(), long_mode);
    assert_eq!(state.rdmsr(IA32_EFER, &ctx(&policy)), MsrOutcome::ReadVmcsField(GuestMsrField::Efer));
    assert_eq!(
        state.wrmsr(IA32_EFER, long_mode, &ctx(&policy)),
        MsrOutcome::WriteVmcsField { field: GuestMsrField::Efer, value: long_mode }
    );
    // SVME (12) and FFXSR (14) are AMD's.
    assert_eq!(state.wrmsr(IA32_EFER, efer::LME | 1 << 12, &ctx(&policy)), reserved_bits(1 << 12));
    assert_eq!(state.wrmsr(IA32_EFER, 1 << 14, &ctx(&policy)), reserved_bits(1 << 14));

    let masks = [format!("0x80000001:edx={}", mask_bit(20, '0'))];
    let without_nx = Setup { masks: &[&masks[0]], ..Setup::default() }.policy();
    assert_eq!(state.wrmsr(IA32_EFER, long_mode, &ctx(&without_nx)), reserved_bits(efer::NXE));
}

#[test]
fn sysenter_msrs_are_vmcs_fields() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    for (msr, field) in [
        (IA32_SYSENTER_CS, GuestMsrField::SysenterCs),
        (IA32_SYSENTER_ESP, GuestMsrField::SysenterEsp),
        (IA32_SYSENTER_EIP, GuestMsrField::SysenterEip),
    ] {
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), MsrOutcome::ReadVmcsField(field));
        assert_eq!(state.wrmsr(msr, 0x10, &ctx(&policy)), MsrOutcome::WriteVmcsField { field, value: 0x10 });
    }
    // CS: bits 63:32 are dropped. ESP/EIP: canonical only.
    assert_eq!(
        state.wrmsr(IA32_SYSENTER_CS, 0xdead_0000_0010, &ctx(&policy)),
        MsrOutcome::WriteVmcsField { field: GuestMsrField::SysenterCs, value: 0x10 }
    );
    assert_eq!(state.wrmsr(IA32_SYSENTER_ESP, 0x0000_8000_0000_0000, &ctx(&policy)), gp(GpReason::NonCanonical));
    assert_eq!(
        state.wrmsr(IA32_SYSENTER_EIP, 0xffff_8000_0000_0000, &ctx(&policy)),
        MsrOutcome::WriteVmcsField { field: GuestMsrField::SysenterEip, value: 0xffff_8000_0000_0000 }
    );
}

#[test]
fn fs_and_gs_bases_are_canonical_vmcs_fields() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    for (msr, field) in [(IA32_FS_BASE, GuestMsrField::FsBase), (IA32_GS_BASE, GuestMsrField::GsBase)] {
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), MsrOutcome::ReadVmcsField(field));
        let value = 0x0000_7fff_ffff_f000;
        assert_eq!(state.wrmsr(msr, value, &ctx(&policy)), MsrOutcome::WriteVmcsField { field, value });
        assert_eq!(state.wrmsr(msr, 0x0001_0000_0000_0000, &ctx(&policy)), gp(GpReason::NonCanonical));
        assert_eq!(state.wrmsr(msr, 0xfff0_0000_0000_0000, &ctx(&policy)), gp(GpReason::NonCanonical));
    }
}

#[test]
fn vmcs_field_encodings_match_the_vmx_crate() {
    assert_eq!(GuestMsrField::Efer.encoding(), 0x2806);
    assert_eq!(GuestMsrField::Pat.encoding(), 0x2804);
    assert_eq!(GuestMsrField::Debugctl.encoding(), 0x2802);
    assert_eq!(GuestMsrField::SysenterCs.encoding(), 0x482a);
    assert_eq!(GuestMsrField::SysenterEsp.encoding(), 0x6824);
    assert_eq!(GuestMsrField::SysenterEip.encoding(), 0x6826);
    assert_eq!(GuestMsrField::FsBase.encoding(), 0x680e);
    assert_eq!(GuestMsrField::GsBase.encoding(), 0x6810);
    // The reset values are what a write of them would accept.
    let policy = default_policy();
    let mut state = MsrState::new(0);
    for (field, value) in VMCS_FIELDS_AT_RESET {
        assert_eq!(state.wrmsr(field.msr(), value, &ctx(&policy)), MsrOutcome::WriteVmcsField { field, value });
    }
}

// ---- kept MSRs ----

#[test]
fn syscall_msrs_are_kept_per_vcpu_and_checked() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    let kernel = 0xffff_ffff_8100_0000;
    for (msr, value) in [
        (IA32_STAR, 0x0023_0010_0000_0000),
        (IA32_LSTAR, kernel),
        (IA32_CSTAR, kernel + 0x40),
        (IA32_FMASK, 0x4_7700),
        (IA32_KERNEL_GS_BASE, 0xffff_8880_0000_0000),
    ] {
        assert_eq!(state.wrmsr(msr, value, &ctx(&policy)), MsrOutcome::Written, "{msr:#x}");
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), MsrOutcome::Read(value), "{msr:#x}");
    }
    assert_eq!(
        state.syscall_msrs(),
        SyscallMsrs {
            star: 0x0023_0010_0000_0000,
            lstar: kernel,
            cstar: kernel + 0x40,
            fmask: 0x4_7700,
            kernel_gs_base: 0xffff_8880_0000_0000,
        }
    );
    assert_eq!(MsrState::new(1).syscall_msrs(), SyscallMsrs::default(), "per vCPU");
    for msr in [IA32_LSTAR, IA32_CSTAR, IA32_KERNEL_GS_BASE] {
        assert_eq!(state.wrmsr(msr, 0x8000_0000_0000_0000, &ctx(&policy)), gp(GpReason::NonCanonical), "{msr:#x}");
    }
    assert_eq!(state.wrmsr(IA32_FMASK, 1 << 32, &ctx(&policy)), reserved_bits(1 << 32));
    assert_eq!(state.syscall_msrs().lstar, kernel, "unchanged by refused writes");
}

#[test]
fn tsc_aux_needs_rdtscp_or_rdpid() {
    let policy = default_policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.wrmsr(IA32_TSC_AUX, 3, &ctx(&policy)), MsrOutcome::Written);
    assert_eq!(state.rdmsr(IA32_TSC_AUX, &ctx(&policy)), MsrOutcome::Read(3));
    assert_eq!(state.tsc_aux(), 3);
    assert_eq!(state.wrmsr(IA32_TSC_AUX, 1 << 32, &ctx(&policy)), reserved_bits(1 << 32));

    let native = NativeSupport { rdtscp: false, ..NativeSupport::ALL };
    let without = Setup { native, ..Setup::default() }.policy();
    assert_eq!(state.rdmsr(IA32_TSC_AUX, &ctx(&without)), gp(GpReason::NotExposed));
    assert_eq!(state.wrmsr(IA32_TSC_AUX, 0, &ctx(&without)), gp(GpReason::NotExposed));
}

// ---- hidden features ----

#[test]
fn msrs_of_hidden_features_raise_gp_whatever_the_unknown_action() {
    let policy = Setup { unknown: UnknownMsrAction::IgnoreAndLog, ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    for msr in [IA32_TSC_DEADLINE, IA32_TSC_ADJUST, IA32_XSS, X2APIC_FIRST, 0x802, X2APIC_LAST] {
        assert_eq!(state.rdmsr(msr, &ctx(&policy)), gp(GpReason::NotExposed), "{msr:#x}");
        assert_eq!(state.wrmsr(msr, 0, &ctx(&policy)), gp(GpReason::NotExposed), "{msr:#x}");
    }
    assert_eq!(state.metrics().unknown_accesses(), 0, "known MSRs");
    assert_eq!(state.metrics().injected_gp, 12);
}

#[test]
fn msrs_shown_by_a_mask_but_not_emulated_raise_gp() {
    let masks =
        [format!("0x1:ecx={}", (0..32).rev().map(|b| if b == 24 || b == 21 { 'k' } else { 'x' }).collect::<String>())];
    let policy = Setup { masks: &[&masks[0]], ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(IA32_TSC_DEADLINE, &ctx(&policy)), gp(GpReason::NotEmulated));
    assert_eq!(state.wrmsr(0x808, 0, &ctx(&policy)), gp(GpReason::NotEmulated));
}

// ---- unknown MSRs ----

#[test]
fn unknown_msrs_inject_gp_and_are_counted() {
    let policy = default_policy();
    assert_eq!(policy.unknown, UnknownMsrAction::InjectGp, "the default");
    let mut state = MsrState::new(0);
    assert_eq!(state.rdmsr(0x1234, &ctx(&policy)), gp(GpReason::UnknownMsr));
    assert_eq!(state.wrmsr(0xc001_0015, 1, &ctx(&policy)), gp(GpReason::UnknownMsr));
    assert_eq!(state.rdmsr(0x34, &ctx(&policy)), gp(GpReason::UnknownMsr));
    let metrics = state.metrics();
    assert_eq!((metrics.unknown_reads, metrics.unknown_writes), (2, 1));
    assert_eq!(metrics.last_unknown_msr, Some(0x34));
    assert_eq!(metrics.injected_gp, 3);
}

#[test]
fn unknown_msrs_can_be_ignored_and_logged() {
    let policy = Setup { unknown: UnknownMsrAction::IgnoreAndLog, ..Setup::default() }.policy();
    let mut state = MsrState::new(0);
    for round in 0..LOGGED_UNKNOWN_ACCESSES * 2 {
        assert_eq!(state.wrmsr(0x33, round, &ctx(&policy)), MsrOutcome::Written);
        assert_eq!(state.rdmsr(0x33, &ctx(&policy)), MsrOutcome::Read(0), "writes are dropped");
    }
    assert_eq!(state.rdmsr(0x1a4, &ctx(&policy)), MsrOutcome::Read(0));
    let metrics = state.metrics();
    assert_eq!(metrics.unknown_reads, LOGGED_UNKNOWN_ACCESSES * 2 + 1);
    assert_eq!(metrics.unknown_writes, LOGGED_UNKNOWN_ACCESSES * 2);
    assert_eq!(metrics.last_unknown_msr, Some(0x1a4));
    assert_eq!(metrics.injected_gp, 0);
}

#[test]
fn gp_reasons_read_well_in_the_log() {
    assert_eq!(GpReason::ReservedBits { bits: 0x100 }.to_string(), "reserved bits 0x100 set");
    assert_eq!(GpReason::ApicRelocation { base: 0xfec0_0000 }.to_string(), "APIC relocation to 0xfec00000 refused");
    assert_eq!(GpReason::InvalidMemoryType { memory_type: 2 }.to_string(), "reserved memory type 2");
}

// ---- properties ----

/// MSR numbers worth trying: every known one, its neighbours, and any.
fn any_msr() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            IA32_TSC,
            IA32_PLATFORM_ID,
            IA32_APIC_BASE,
            IA32_FEATURE_CONTROL,
            IA32_TSC_ADJUST,
            IA32_SPEC_CTRL,
            IA32_PRED_CMD,
            IA32_BIOS_UPDT_TRIG,
            IA32_BIOS_SIGN_ID,
            MSR_PLATFORM_INFO,
            IA32_MTRRCAP,
            IA32_ARCH_CAPABILITIES,
            IA32_FLUSH_CMD,
            IA32_SYSENTER_CS,
            IA32_SYSENTER_ESP,
            IA32_SYSENTER_EIP,
            IA32_MISC_ENABLE,
            IA32_DEBUGCTL,
            IA32_PAT,
            IA32_MTRR_DEF_TYPE,
            IA32_TSC_DEADLINE,
            IA32_XSS,
            IA32_EFER,
            IA32_STAR,
            IA32_LSTAR,
            IA32_CSTAR,
            IA32_FMASK,
            IA32_FS_BASE,
            IA32_GS_BASE,
            IA32_KERNEL_GS_BASE,
            IA32_TSC_AUX,
        ]),
        0x1f0u32..0x300,
        0x470u32..0x4a0,
        0x7f0u32..0x900,
        0xc000_0078u32..0xc000_0110,
        any::<u32>(),
    ]
}

/// Values worth trying: small, single bits, canonical-looking, and any.
fn any_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        (0u32..64).prop_map(|bit| 1u64 << bit),
        Just(0xfee0_0900),
        Just(0xffff_8000_0000_0000),
        any::<u64>()
    ]
}

proptest! {
    #[test]
    fn no_access_sequence_panics(
        accesses in prop::collection::vec((any_msr(), proptest::option::of(any_value())), 1..64),
        nested_hvm in any::<bool>(),
        ignore_unknown in any::<bool>(),
        vcpu in 0u32..4,
    ) {
        let unknown = if ignore_unknown { UnknownMsrAction::IgnoreAndLog } else { UnknownMsrAction::InjectGp };
        let policy = Setup { nested_hvm, unknown, ..Setup::default() }.policy();
        let table = [(IA32_VMX_BASIC, 1u64)];
        let ctx = MsrContext { vmx_capabilities: Some(&table), ..ctx(&policy) };
        let mut state = MsrState::new(vcpu);
        let mut gp_count = 0;
        for (msr, write) in accesses {
            let outcome = match write {
                None => state.rdmsr(msr, &ctx),
                Some(value) => state.wrmsr(msr, value, &ctx),
            };
            if matches!(outcome, MsrOutcome::InjectGp { .. }) {
                gp_count += 1;
            }
            if ignore_unknown {
                prop_assert_ne!(outcome, gp(GpReason::UnknownMsr));
            }
        }
        prop_assert_eq!(state.metrics().injected_gp, gp_count);
    }

    /// Guests read, change a bit and write back: whatever they did before,
    /// writing back what an MSR the monitor keeps reads is accepted.
    #[test]
    fn what_a_kept_msr_reads_can_be_written_back(
        accesses in prop::collection::vec((any_msr(), any_value()), 0..64),
        vcpu in 0u32..4,
    ) {
        let policy = default_policy();
        let ctx = ctx(&policy);
        let mut state = MsrState::new(vcpu);
        for (msr, value) in accesses {
            let _ = state.wrmsr(msr, value, &ctx);
        }
        let kept = [IA32_APIC_BASE, IA32_SPEC_CTRL, IA32_MISC_ENABLE, IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK,
            IA32_KERNEL_GS_BASE, IA32_TSC_AUX, IA32_MTRR_DEF_TYPE];
        let mtrrs = (0..2 * VARIABLE_RANGES as u32).map(|n| IA32_MTRR_PHYSBASE0 + n).chain(FIXED_RANGE_MSRS);
        for msr in kept.into_iter().chain(mtrrs) {
            let MsrOutcome::Read(value) = state.rdmsr(msr, &ctx) else {
                return Err(TestCaseError::fail(format!("{msr:#x} is not readable")));
            };
            let written = state.wrmsr(msr, value, &ctx);
            prop_assert!(!matches!(written, MsrOutcome::InjectGp { .. }), "{:#x} <- {:#x}: {:?}", msr, value, written);
            prop_assert_eq!(state.rdmsr(msr, &ctx), MsrOutcome::Read(value));
        }
    }
}
