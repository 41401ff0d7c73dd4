//! The guest's MSRs: what each RDMSR and WRMSR that exits to the monitor
//! does.
//!
//! [`MsrState::rdmsr`] and [`MsrState::wrmsr`] decide, from an explicit
//! allow list, and return an [`MsrOutcome`] for the exit handler to carry
//! out: a value to return, a VMCS guest field to read or write, a TSC
//! offset, a hardware MSR or command for the shim, or a #GP to inject.
//! Everything else is an unknown MSR, handled as [`UnknownMsrAction`] says
//! and counted in [`MsrMetrics`].
//!
//! An MSR whose feature the guest's CPUID hides raises #GP, as on a CPU
//! without the feature, whatever [`UnknownMsrAction`] says: guests probe
//! those on purpose. The exposure follows the guest's final CPUID (after
//! the user's masks), so the two always agree.
//!
//! # The allow list
//!
//! | MSR | number | RDMSR | WRMSR |
//! |-----|--------|-------|-------|
//! | IA32_TSC | 0x10 | the guest's TSC: host TSC + offset | [`MsrOutcome::SetTscOffset`] so the TSC reads the value now |
//! | IA32_PLATFORM_ID | 0x17 | 0 | #GP: read-only |
//! | IA32_APIC_BASE | 0x1B | 0xFEE00000, EN, BSP on vCPU 0 | EN kept, BSP ignored; relocation, x2APIC mode and reserved bits #GP |
//! | IA32_FEATURE_CONTROL | 0x3A | locked; VMXON outside SMX with `nested_hvm` | #GP: locked |
//! | IA32_TSC_ADJUST | 0x3B | #GP (hidden) | #GP |
//! | IA32_SPEC_CTRL | 0x48 | the guest's value | the bits CPUID shows (IBRS, STIBP, SSBD): [`MsrOutcome::LoadGuestMsr`] |
//! | IA32_PRED_CMD | 0x49 | #GP: write-only | IBPB: [`MsrOutcome::Execute`] |
//! | IA32_BIOS_UPDT_TRIG | 0x79 | #GP: write-only | ignored: no microcode updates in a guest |
//! | IA32_BIOS_SIGN_ID | 0x8B | 0 (microcode revision 0) | ignored |
//! | MSR_PLATFORM_INFO | 0xCE | non-turbo ratio = TSC / 100 MHz | #GP: read-only |
//! | IA32_MTRRCAP | 0xFE | 8 variable ranges, fixed ranges, WC | #GP: read-only |
//! | IA32_ARCH_CAPABILITIES | 0x10A | the host's "not vulnerable" facts, filtered | #GP: read-only |
//! | IA32_FLUSH_CMD | 0x10B | #GP: write-only | L1D flush: [`MsrOutcome::Execute`] |
//! | IA32_SYSENTER_CS/ESP/EIP | 0x174-0x176 | VMCS guest field | VMCS guest field; ESP/EIP canonical |
//! | IA32_MISC_ENABLE | 0x1A0 | fast strings, BTS and PEBS unavailable | fast strings kept; other defined bits ignored; undefined bits #GP |
//! | IA32_DEBUGCTL | 0x1D9 | VMCS guest field | BTF only (no LBR, BTS or PMU freezing) |
//! | IA32_MTRR_PHYSBASE/MASK0-7 | 0x200-0x20F | kept | type and reserved bits checked |
//! | IA32_MTRR_FIX* | 0x250, 0x258, 0x259, 0x268-0x26F | kept | memory types checked |
//! | IA32_PAT | 0x277 | VMCS guest field | memory types checked, then VMCS |
//! | IA32_MTRR_DEF_TYPE | 0x2FF | kept (at boot: enabled, write-back) | type and reserved bits checked |
//! | IA32_VMX_* | 0x480-0x493 | with `nested_hvm`: the caller's table | #GP: read-only |
//! | IA32_TSC_DEADLINE | 0x6E0 | #GP (hidden) | #GP |
//! | x2APIC registers | 0x800-0x8FF | #GP (xAPIC mode) | #GP |
//! | IA32_XSS | 0xDA0 | #GP (no XSAVES) | #GP |
//! | IA32_EFER | 0xC0000080 | VMCS guest field | SCE/LME/LMA/NXE as CPUID allows, then VMCS |
//! | IA32_STAR | 0xC0000081 | kept | kept |
//! | IA32_LSTAR, IA32_CSTAR | 0xC0000082-3 | kept | canonical |
//! | IA32_FMASK | 0xC0000084 | kept | bits 63:32 reserved |
//! | IA32_FS_BASE, IA32_GS_BASE | 0xC0000100-1 | VMCS guest field | canonical |
//! | IA32_KERNEL_GS_BASE | 0xC0000102 | kept | canonical |
//! | IA32_TSC_AUX | 0xC0000103 | kept (with RDTSCP or RDPID) | bits 63:32 reserved |
//!
//! "Kept" MSRs live in [`MsrState`]; the shim loads STAR, LSTAR, CSTAR,
//! FMASK, KERNEL_GS_BASE and TSC_AUX into the hardware around the guest's
//! runs ([`MsrState::syscall_msrs`], [`MsrState::tsc_aux`]).
//!
//! EFER: the policy checks the bits CPUID allows; how LME, LMA, CR0.PG and
//! the "IA-32e mode guest" entry control fit together is the shim's, as it
//! owns the VMCS.
//!
//! The speculation MSRs are offered as the host has them, because hiding
//! them leaves the guest unable to protect its own processes: SPEC_CTRL
//! reaches the hardware through the shim, IBPB and L1D flushes are run by
//! the shim, and ARCH_CAPABILITIES reports the host's value limited to
//! facts about the CPU (no bit that promises another MSR, and no
//! SKIP_L1DFL_VMENTRY, which would excuse a guest hypervisor from flushing).

pub mod mtrr;
mod numbers;

#[cfg(test)]
mod tests;

use core::fmt;

use super::cpuid::{Feature, GuestCpuid, BUS_MHZ};
use vmx::msr::FeatureControl;
use vmx::vmcs::{Guest32, Guest64, GuestNatural};

pub use mtrr::{MtrrRegister, Mtrrs, VariableRange, FIXED_RANGE_MSRS, MTRRCAP, VARIABLE_RANGES};
pub use numbers::*;

/// How many unknown accesses per vCPU [`UnknownMsrAction::IgnoreAndLog`]
/// logs as warnings before it goes quiet (the counters go on).
pub const LOGGED_UNKNOWN_ACCESSES: u64 = 16;

/// The ARCH_CAPABILITIES bits passed from the host: facts about the CPU,
/// "not vulnerable" and "vulnerable" alike.
pub const ARCH_CAPABILITIES_PASSED: u64 = arch_capabilities::RDCL_NO
    | arch_capabilities::IBRS_ALL
    | arch_capabilities::RSBA
    | arch_capabilities::SSB_NO
    | arch_capabilities::MDS_NO
    | arch_capabilities::IF_PSCHANGE_MC_NO
    | arch_capabilities::TAA_NO
    | arch_capabilities::SBDR_SSDP_NO
    | arch_capabilities::FBSDP_NO
    | arch_capabilities::PSDP_NO
    | arch_capabilities::FB_CLEAR
    | arch_capabilities::RRSBA
    | arch_capabilities::BHI_NO
    | arch_capabilities::PBRSB_NO
    | arch_capabilities::GDS_NO
    | arch_capabilities::RFDS_NO
    | arch_capabilities::RFDS_CLEAR;

/// IA32_MISC_ENABLE at reset: fast strings on, and no BTS or PEBS (there
/// is no debug store and no PMU).
pub const MISC_ENABLE_AT_RESET: u64 =
    misc_enable::FAST_STRINGS | misc_enable::BTS_UNAVAILABLE | misc_enable::PEBS_UNAVAILABLE;
/// The IA32_MISC_ENABLE bits a write changes. Writes to the other defined
/// bits are ignored: they describe hardware the guest does not control.
pub const MISC_ENABLE_WRITABLE: u64 = misc_enable::FAST_STRINGS;

/// IA32_PAT at reset: WB, WT, UC-, UC, twice (SDM 13.12.4).
pub const PAT_AT_RESET: u64 = 0x0007_0406_0007_0406;

/// What to do with an MSR the policy does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnknownMsrAction {
    /// Raise #GP, as a CPU does for an MSR it lacks (and as KVM does).
    #[default]
    InjectGp,
    /// Read 0, drop writes, log: for guests that touch model-specific MSRs
    /// without a fallback (KVM's `ignore_msrs`).
    IgnoreAndLog,
}

/// The MSRs the VMCS holds for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestMsrField {
    Efer,
    Pat,
    Debugctl,
    SysenterCs,
    SysenterEsp,
    SysenterEip,
    FsBase,
    GsBase,
}

impl GuestMsrField {
    /// The guest-state field's VMCS encoding.
    pub const fn encoding(self) -> u32 {
        match self {
            Self::Efer => Guest64::Ia32Efer.encoding(),
            Self::Pat => Guest64::Ia32Pat.encoding(),
            Self::Debugctl => Guest64::Ia32Debugctl.encoding(),
            Self::SysenterCs => Guest32::Ia32SysenterCs.encoding(),
            Self::SysenterEsp => GuestNatural::Ia32SysenterEsp.encoding(),
            Self::SysenterEip => GuestNatural::Ia32SysenterEip.encoding(),
            Self::FsBase => GuestNatural::FsBase.encoding(),
            Self::GsBase => GuestNatural::GsBase.encoding(),
        }
    }

    /// The MSR the field holds.
    pub const fn msr(self) -> u32 {
        match self {
            Self::Efer => IA32_EFER,
            Self::Pat => IA32_PAT,
            Self::Debugctl => IA32_DEBUGCTL,
            Self::SysenterCs => IA32_SYSENTER_CS,
            Self::SysenterEsp => IA32_SYSENTER_ESP,
            Self::SysenterEip => IA32_SYSENTER_EIP,
            Self::FsBase => IA32_FS_BASE,
            Self::GsBase => IA32_GS_BASE,
        }
    }
}

/// The values the shim writes into the guest's VMCS fields at reset and INIT.
pub const VMCS_FIELDS_AT_RESET: [(GuestMsrField, u64); 8] = [
    (GuestMsrField::Efer, 0),
    (GuestMsrField::Pat, PAT_AT_RESET),
    (GuestMsrField::Debugctl, 0),
    (GuestMsrField::SysenterCs, 0),
    (GuestMsrField::SysenterEsp, 0),
    (GuestMsrField::SysenterEip, 0),
    (GuestMsrField::FsBase, 0),
    (GuestMsrField::GsBase, 0),
];

/// A command the shim runs on the physical CPU for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HardwareCommand {
    /// Write IA32_PRED_CMD.IBPB: an indirect branch prediction barrier.
    Ibpb,
    /// Write IA32_FLUSH_CMD.L1D_FLUSH: write back and invalidate the L1 data cache.
    FlushL1d,
}

/// Why an access raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpReason {
    /// Not in the allow list (with [`UnknownMsrAction::InjectGp`]).
    UnknownMsr,
    /// The guest's CPUID hides the MSR's feature.
    NotExposed,
    /// A user mask shows the feature, but the monitor does not emulate the MSR.
    NotEmulated,
    ReadOfWriteOnly,
    WriteToReadOnly,
    /// IA32_FEATURE_CONTROL is locked.
    Locked,
    /// The value sets these reserved bits.
    ReservedBits {
        bits: u64,
    },
    /// A memory type field holds a reserved type.
    InvalidMemoryType {
        memory_type: u8,
    },
    /// An address MSR was given a non-canonical address.
    NonCanonical,
    /// IA32_APIC_BASE would move the APIC away from 0xFEE00000.
    ApicRelocation {
        base: u64,
    },
    /// IA32_APIC_BASE would enter x2APIC mode, which is not emulated.
    X2apicMode,
    /// A VMX capability MSR missing from the caller's table.
    MissingVmxCapability,
}

impl fmt::Display for GpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMsr => f.write_str("unknown MSR"),
            Self::NotExposed => f.write_str("the guest's CPUID does not show this MSR's feature"),
            Self::NotEmulated => f.write_str("shown by a cpuid mask but not emulated"),
            Self::ReadOfWriteOnly => f.write_str("read of a write-only MSR"),
            Self::WriteToReadOnly => f.write_str("write to a read-only MSR"),
            Self::Locked => f.write_str("the MSR is locked"),
            Self::ReservedBits { bits } => write!(f, "reserved bits {bits:#x} set"),
            Self::InvalidMemoryType { memory_type } => write!(f, "reserved memory type {memory_type}"),
            Self::NonCanonical => f.write_str("non-canonical address"),
            Self::ApicRelocation { base } => write!(f, "APIC relocation to {base:#x} refused"),
            Self::X2apicMode => f.write_str("x2APIC mode is not emulated"),
            Self::MissingVmxCapability => f.write_str("no value for this VMX capability MSR"),
        }
    }
}

/// What the exit handler does for one RDMSR or WRMSR. Except for
/// [`InjectGp`](Self::InjectGp), the instruction completes: RIP moves past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrOutcome {
    /// RDMSR: return this in EDX:EAX.
    Read(u64),
    /// WRMSR: done (the value is in [`MsrState`], or was dropped by design).
    Written,
    /// RDMSR of an MSR the VMCS holds: return the guest field's value.
    ReadVmcsField(GuestMsrField),
    /// WRMSR of an MSR the VMCS holds: the value is valid; VMWRITE it.
    WriteVmcsField { field: GuestMsrField, value: u64 },
    /// WRMSR of IA32_TSC: set the VMCS TSC offset to `offset`, so that the
    /// guest's TSC reads the written value at this exit and runs on from it.
    SetTscOffset { offset: u64 },
    /// WRMSR of a hardware MSR the guest owns while it runs (IA32_SPEC_CTRL):
    /// the shim loads `value` at VM entry (MSR-load list) and restores its
    /// own at exit. The value is also kept in [`MsrState`].
    LoadGuestMsr { msr: u32, value: u64 },
    /// WRMSR of a command MSR: the shim runs the command before resuming.
    Execute(HardwareCommand),
    /// Inject #GP(0); the instruction does not complete.
    InjectGp { reason: GpReason },
}

/// The guest-wide MSR decisions, derived from the guest's CPUID so that the
/// two agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrPolicy {
    pub unknown: UnknownMsrAction,
    nested_hvm: bool,
    mtrr: bool,
    pat: bool,
    tsc_aux: bool,
    /// Shown but not emulated: #GP with [`GpReason::NotEmulated`].
    tsc_adjust: bool,
    tsc_deadline: bool,
    x2apic: bool,
    xsaves: bool,
    /// The IA32_SPEC_CTRL bits CPUID shows; 0 hides the MSR.
    spec_ctrl_bits: u64,
    ibpb: bool,
    l1d_flush: bool,
    /// Present when CPUID shows ARCH_CAPABILITIES.
    arch_capabilities: Option<u64>,
    /// The IA32_EFER bits CPUID allows.
    efer_bits: u64,
    physical_address_bits: u8,
    linear_address_bits: u8,
    platform_info: u64,
}

impl MsrPolicy {
    /// The policy for a guest with this CPUID. `host_arch_capabilities` is
    /// the host's IA32_ARCH_CAPABILITIES (if it has one); without it a
    /// guest shown the MSR reads 0, which claims no immunity.
    pub fn new(unknown: UnknownMsrAction, cpuid: &GuestCpuid, host_arch_capabilities: Option<u64>) -> Self {
        let has = |feature| cpuid.has(feature);
        let spec_ctrl_bits = [
            (Feature::IbrsIbpb, spec_ctrl::IBRS),
            (Feature::Stibp, spec_ctrl::STIBP),
            (Feature::Ssbd, spec_ctrl::SSBD),
        ]
        .into_iter()
        .filter(|&(feature, _)| has(feature))
        .fold(0, |bits, (_, bit)| bits | bit);
        let efer_bits =
            [(Feature::Syscall, efer::SCE), (Feature::LongMode, efer::LME | efer::LMA), (Feature::Nx, efer::NXE)]
                .into_iter()
                .filter(|&(feature, _)| has(feature))
                .fold(0, |bits, (_, bit)| bits | bit);
        // The ratio of the nominal (= TSC) frequency to the 100 MHz bus, rounded.
        let bus_khz = u64::from(BUS_MHZ) * 1000;
        let ratio = ((u64::from(cpuid.tsc_khz()) + bus_khz / 2) / bus_khz).min(0xff);
        Self {
            unknown,
            nested_hvm: has(Feature::Vmx),
            mtrr: has(Feature::Mtrr),
            pat: has(Feature::Pat),
            tsc_aux: has(Feature::Rdtscp) || has(Feature::Rdpid),
            tsc_adjust: has(Feature::TscAdjust),
            tsc_deadline: has(Feature::TscDeadline),
            x2apic: has(Feature::X2apic),
            xsaves: has(Feature::Xsaves),
            spec_ctrl_bits,
            ibpb: has(Feature::IbrsIbpb),
            l1d_flush: has(Feature::L1dFlush),
            arch_capabilities: has(Feature::ArchCapabilities)
                .then(|| host_arch_capabilities.unwrap_or(0) & ARCH_CAPABILITIES_PASSED),
            efer_bits,
            physical_address_bits: cpuid.physical_address_bits(),
            linear_address_bits: cpuid.linear_address_bits(),
            platform_info: ratio << PLATFORM_INFO_RATIO_SHIFT,
        }
    }

    /// What IA32_FEATURE_CONTROL reads: locked, as a firmware leaves it, with
    /// VMXON allowed outside SMX only for a guest shown VMX.
    pub fn feature_control(&self) -> u64 {
        let vmxon = if self.nested_hvm { FeatureControl::VMXON_OUTSIDE_SMX } else { 0 };
        FeatureControl::LOCK | vmxon
    }

    /// The bits IA32_EFER may hold.
    pub fn efer_bits(&self) -> u64 {
        self.efer_bits
    }

    fn is_canonical(&self, address: u64) -> bool {
        let unused_bits = 64 - u32::from(self.linear_address_bits.clamp(32, 64));
        ((address << unused_bits) as i64 >> unused_bits) as u64 == address
    }
}

/// What the exit handler knows at this exit.
#[derive(Clone, Copy, Debug)]
pub struct MsrContext<'a> {
    pub policy: &'a MsrPolicy,
    /// The host's TSC now.
    pub host_tsc: u64,
    /// The VMCS TSC offset: the guest's TSC is `host_tsc + tsc_offset`.
    pub tsc_offset: u64,
    /// With `nested_hvm`, the `IA32_VMX_*` values the monitor's VMX
    /// emulation offers, as (MSR, value).
    pub vmx_capabilities: Option<&'a [(u32, u64)]>,
}

/// Odd guest accesses, per vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrMetrics {
    pub unknown_reads: u64,
    pub unknown_writes: u64,
    /// The last unknown MSR accessed, for the log.
    pub last_unknown_msr: Option<u32>,
    /// Every #GP injected, unknown MSRs included.
    pub injected_gp: u64,
}

impl MsrMetrics {
    pub fn unknown_accesses(&self) -> u64 {
        self.unknown_reads + self.unknown_writes
    }
}

/// The SYSCALL MSRs and KERNEL_GS_BASE, which VMX does not switch: the
/// shim loads them for the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallMsrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub kernel_gs_base: u64,
}

/// The MSRs the monitor recognizes, by what it does with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KnownMsr {
    Tsc,
    PlatformId,
    ApicBase,
    FeatureControl,
    TscAdjust,
    SpecCtrl,
    PredCmd,
    BiosUpdateTrigger,
    BiosSignId,
    PlatformInfo,
    MtrrCap,
    ArchCapabilities,
    FlushCmd,
    MiscEnable,
    Mtrr(MtrrRegister),
    VmcsField(GuestMsrField),
    VmxCapability,
    TscDeadline,
    X2apic,
    Xss,
    Star,
    Lstar,
    Cstar,
    Fmask,
    KernelGsBase,
    TscAux,
}

impl KnownMsr {
    fn from_msr(msr: u32) -> Option<Self> {
        let known = match msr {
            IA32_TSC => Self::Tsc,
            IA32_PLATFORM_ID => Self::PlatformId,
            IA32_APIC_BASE => Self::ApicBase,
            IA32_FEATURE_CONTROL => Self::FeatureControl,
            IA32_TSC_ADJUST => Self::TscAdjust,
            IA32_SPEC_CTRL => Self::SpecCtrl,
            IA32_PRED_CMD => Self::PredCmd,
            IA32_BIOS_UPDT_TRIG => Self::BiosUpdateTrigger,
            IA32_BIOS_SIGN_ID => Self::BiosSignId,
            MSR_PLATFORM_INFO => Self::PlatformInfo,
            IA32_MTRRCAP => Self::MtrrCap,
            IA32_ARCH_CAPABILITIES => Self::ArchCapabilities,
            IA32_FLUSH_CMD => Self::FlushCmd,
            IA32_SYSENTER_CS => Self::VmcsField(GuestMsrField::SysenterCs),
            IA32_SYSENTER_ESP => Self::VmcsField(GuestMsrField::SysenterEsp),
            IA32_SYSENTER_EIP => Self::VmcsField(GuestMsrField::SysenterEip),
            IA32_MISC_ENABLE => Self::MiscEnable,
            IA32_DEBUGCTL => Self::VmcsField(GuestMsrField::Debugctl),
            IA32_PAT => Self::VmcsField(GuestMsrField::Pat),
            IA32_VMX_BASIC..=IA32_VMX_LAST => Self::VmxCapability,
            IA32_TSC_DEADLINE => Self::TscDeadline,
            X2APIC_FIRST..=X2APIC_LAST => Self::X2apic,
            IA32_XSS => Self::Xss,
            IA32_EFER => Self::VmcsField(GuestMsrField::Efer),
            IA32_STAR => Self::Star,
            IA32_LSTAR => Self::Lstar,
            IA32_CSTAR => Self::Cstar,
            IA32_FMASK => Self::Fmask,
            IA32_FS_BASE => Self::VmcsField(GuestMsrField::FsBase),
            IA32_GS_BASE => Self::VmcsField(GuestMsrField::GsBase),
            IA32_KERNEL_GS_BASE => Self::KernelGsBase,
            IA32_TSC_AUX => Self::TscAux,
            _ => return MtrrRegister::from_msr(msr).map(Self::Mtrr),
        };
        Some(known)
    }
}

/// One vCPU's MSRs: those the monitor keeps, and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrState {
    vcpu: u32,
    apic_base: u64,
    misc_enable: u64,
    spec_ctrl: u64,
    syscall: SyscallMsrs,
    tsc_aux: u64,
    mtrrs: Mtrrs,
    metrics: MsrMetrics,
}

impl MsrState {
    /// vCPU `vcpu` after reset; vCPU 0 is the bootstrap processor.
    pub fn new(vcpu: u32) -> Self {
        let bsp = if vcpu == 0 { apic_base::BSP } else { 0 };
        Self {
            vcpu,
            apic_base: apic_base::DEFAULT_BASE | apic_base::EN | bsp,
            misc_enable: MISC_ENABLE_AT_RESET,
            spec_ctrl: 0,
            syscall: SyscallMsrs::default(),
            tsc_aux: 0,
            mtrrs: Mtrrs::AT_BOOT,
            metrics: MsrMetrics::default(),
        }
    }

    /// RDMSR of `msr`.
    pub fn rdmsr(&mut self, msr: u32, ctx: &MsrContext) -> MsrOutcome {
        let Some(known) = KnownMsr::from_msr(msr) else {
            return self.unknown(msr, None, ctx.policy.unknown);
        };
        let outcome = self.read_known(known, msr, ctx).unwrap_or_else(|reason| MsrOutcome::InjectGp { reason });
        self.count(msr, None, outcome)
    }

    /// WRMSR of `value` to `msr`.
    pub fn wrmsr(&mut self, msr: u32, value: u64, ctx: &MsrContext) -> MsrOutcome {
        let Some(known) = KnownMsr::from_msr(msr) else {
            return self.unknown(msr, Some(value), ctx.policy.unknown);
        };
        let outcome = self.write_known(known, msr, value, ctx).unwrap_or_else(|reason| MsrOutcome::InjectGp { reason });
        self.count(msr, Some(value), outcome)
    }

    pub fn vcpu(&self) -> u32 {
        self.vcpu
    }

    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// IA32_APIC_BASE.EN, for [`DynamicState`](super::cpuid::DynamicState).
    pub fn apic_enabled(&self) -> bool {
        self.apic_base & apic_base::EN != 0
    }

    pub fn misc_enable(&self) -> u64 {
        self.misc_enable
    }

    /// The guest's IA32_SPEC_CTRL, for the shim's MSR-load list.
    pub fn spec_ctrl(&self) -> u64 {
        self.spec_ctrl
    }

    pub fn syscall_msrs(&self) -> SyscallMsrs {
        self.syscall
    }

    pub fn tsc_aux(&self) -> u64 {
        self.tsc_aux
    }

    pub fn mtrrs(&self) -> &Mtrrs {
        &self.mtrrs
    }

    pub fn metrics(&self) -> &MsrMetrics {
        &self.metrics
    }

    fn read_known(&mut self, known: KnownMsr, msr: u32, ctx: &MsrContext) -> Result<MsrOutcome, GpReason> {
        let policy = ctx.policy;
        let value = match known {
            KnownMsr::Tsc => ctx.host_tsc.wrapping_add(ctx.tsc_offset),
            KnownMsr::PlatformId | KnownMsr::BiosSignId => 0,
            KnownMsr::ApicBase => self.apic_base,
            KnownMsr::FeatureControl => policy.feature_control(),
            KnownMsr::TscAdjust => return Err(hidden_or_not_emulated(policy.tsc_adjust)),
            KnownMsr::SpecCtrl => {
                exposed(policy.spec_ctrl_bits != 0)?;
                self.spec_ctrl
            }
            KnownMsr::PredCmd => {
                exposed(policy.ibpb)?;
                return Err(GpReason::ReadOfWriteOnly);
            }
            KnownMsr::FlushCmd => {
                exposed(policy.l1d_flush)?;
                return Err(GpReason::ReadOfWriteOnly);
            }
            KnownMsr::BiosUpdateTrigger => return Err(GpReason::ReadOfWriteOnly),
            KnownMsr::PlatformInfo => policy.platform_info,
            KnownMsr::MtrrCap => {
                exposed(policy.mtrr)?;
                MTRRCAP
            }
            KnownMsr::ArchCapabilities => policy.arch_capabilities.ok_or(GpReason::NotExposed)?,
            KnownMsr::MiscEnable => self.misc_enable,
            KnownMsr::Mtrr(register) => {
                exposed(policy.mtrr)?;
                self.mtrrs.read(register)
            }
            KnownMsr::VmcsField(field) => {
                if field == GuestMsrField::Pat {
                    exposed(policy.pat)?;
                }
                return Ok(MsrOutcome::ReadVmcsField(field));
            }
            KnownMsr::VmxCapability => vmx_capability(msr, ctx)?,
            KnownMsr::TscDeadline => return Err(hidden_or_not_emulated(policy.tsc_deadline)),
            KnownMsr::X2apic => return Err(hidden_or_not_emulated(policy.x2apic)),
            KnownMsr::Xss => return Err(hidden_or_not_emulated(policy.xsaves)),
            KnownMsr::Star => self.syscall.star,
            KnownMsr::Lstar => self.syscall.lstar,
            KnownMsr::Cstar => self.syscall.cstar,
            KnownMsr::Fmask => self.syscall.fmask,
            KnownMsr::KernelGsBase => self.syscall.kernel_gs_base,
            KnownMsr::TscAux => {
                exposed(policy.tsc_aux)?;
                self.tsc_aux
            }
        };
        Ok(MsrOutcome::Read(value))
    }

    fn write_known(&mut self, known: KnownMsr, msr: u32, value: u64, ctx: &MsrContext) -> Result<MsrOutcome, GpReason> {
        let policy = ctx.policy;
        match known {
            KnownMsr::Tsc => return Ok(MsrOutcome::SetTscOffset { offset: value.wrapping_sub(ctx.host_tsc) }),
            KnownMsr::PlatformId | KnownMsr::PlatformInfo => return Err(GpReason::WriteToReadOnly),
            KnownMsr::ApicBase => self.apic_base = self.checked_apic_base(value, policy)?,
            KnownMsr::FeatureControl => return Err(GpReason::Locked),
            KnownMsr::TscAdjust => return Err(hidden_or_not_emulated(policy.tsc_adjust)),
            KnownMsr::SpecCtrl => {
                exposed(policy.spec_ctrl_bits != 0)?;
                reserved(value, !policy.spec_ctrl_bits)?;
                self.spec_ctrl = value;
                return Ok(MsrOutcome::LoadGuestMsr { msr, value });
            }
            KnownMsr::PredCmd => {
                exposed(policy.ibpb)?;
                return command(value, HardwareCommand::Ibpb);
            }
            KnownMsr::FlushCmd => {
                exposed(policy.l1d_flush)?;
                return command(value, HardwareCommand::FlushL1d);
            }
            // A guest cannot load microcode; writing the trigger does nothing,
            // and IA32_BIOS_SIGN_ID keeps reading 0.
            KnownMsr::BiosUpdateTrigger | KnownMsr::BiosSignId => {}
            KnownMsr::MtrrCap => {
                exposed(policy.mtrr)?;
                return Err(GpReason::WriteToReadOnly);
            }
            KnownMsr::ArchCapabilities => {
                policy.arch_capabilities.ok_or(GpReason::NotExposed)?;
                return Err(GpReason::WriteToReadOnly);
            }
            KnownMsr::MiscEnable => {
                reserved(value, !misc_enable::DEFINED)?;
                self.misc_enable = (self.misc_enable & !MISC_ENABLE_WRITABLE) | (value & MISC_ENABLE_WRITABLE);
            }
            KnownMsr::Mtrr(register) => {
                exposed(policy.mtrr)?;
                self.mtrrs.write(register, value, policy.physical_address_bits)?;
            }
            KnownMsr::VmcsField(field) => return self.checked_vmcs_write(field, value, policy),
            KnownMsr::VmxCapability => {
                vmx_capability(msr, ctx)?;
                return Err(GpReason::WriteToReadOnly);
            }
            KnownMsr::TscDeadline => return Err(hidden_or_not_emulated(policy.tsc_deadline)),
            KnownMsr::X2apic => return Err(hidden_or_not_emulated(policy.x2apic)),
            KnownMsr::Xss => return Err(hidden_or_not_emulated(policy.xsaves)),
            KnownMsr::Star => self.syscall.star = value,
            KnownMsr::Lstar => self.syscall.lstar = canonical(value, policy)?,
            KnownMsr::Cstar => self.syscall.cstar = canonical(value, policy)?,
            KnownMsr::Fmask => {
                reserved(value, !0xffff_ffff)?;
                self.syscall.fmask = value;
            }
            KnownMsr::KernelGsBase => self.syscall.kernel_gs_base = canonical(value, policy)?,
            KnownMsr::TscAux => {
                exposed(policy.tsc_aux)?;
                reserved(value, !0xffff_ffff)?;
                self.tsc_aux = value;
            }
        }
        Ok(MsrOutcome::Written)
    }

    /// IA32_APIC_BASE: only the enable bit changes. The BSP flag is the
    /// vCPU's and writes leave it.
    fn checked_apic_base(&self, value: u64, policy: &MsrPolicy) -> Result<u64, GpReason> {
        let address_bits = u64::MAX.checked_shl(u32::from(policy.physical_address_bits)).map_or(u64::MAX, |high| !high);
        let defined = apic_base::BSP | apic_base::EXTD | apic_base::EN | (apic_base::BASE_MASK & address_bits);
        reserved(value, !defined)?;
        if value & apic_base::EXTD != 0 {
            return Err(GpReason::X2apicMode);
        }
        let base = value & apic_base::BASE_MASK;
        if base != apic_base::DEFAULT_BASE {
            return Err(GpReason::ApicRelocation { base });
        }
        Ok((self.apic_base & !apic_base::EN) | (value & apic_base::EN))
    }

    fn checked_vmcs_write(&self, field: GuestMsrField, value: u64, policy: &MsrPolicy) -> Result<MsrOutcome, GpReason> {
        let value = match field {
            GuestMsrField::Efer => {
                reserved(value, !policy.efer_bits)?;
                value
            }
            GuestMsrField::Pat => {
                exposed(policy.pat)?;
                mtrr::check_byte_types(value, mtrr::is_pat_type)?;
                value
            }
            GuestMsrField::Debugctl => {
                reserved(value, !debugctl::BTF)?;
                value
            }
            // Bits 63:32 of SYSENTER_CS are ignored on write and read as 0.
            GuestMsrField::SysenterCs => value & 0xffff_ffff,
            GuestMsrField::SysenterEsp | GuestMsrField::SysenterEip | GuestMsrField::FsBase | GuestMsrField::GsBase => {
                canonical(value, policy)?
            }
        };
        Ok(MsrOutcome::WriteVmcsField { field, value })
    }

    /// An MSR outside the allow list.
    fn unknown(&mut self, msr: u32, write: Option<u64>, action: UnknownMsrAction) -> MsrOutcome {
        match write {
            None => self.metrics.unknown_reads += 1,
            Some(_) => self.metrics.unknown_writes += 1,
        }
        self.metrics.last_unknown_msr = Some(msr);
        let vcpu = self.vcpu;
        match action {
            UnknownMsrAction::InjectGp => {
                match write {
                    None => log::debug!("vCPU {vcpu}: rdmsr {msr:#x}: unknown MSR, #GP"),
                    Some(value) => log::debug!("vCPU {vcpu}: wrmsr {msr:#x} <- {value:#x}: unknown MSR, #GP"),
                }
                self.count(msr, write, MsrOutcome::InjectGp { reason: GpReason::UnknownMsr })
            }
            UnknownMsrAction::IgnoreAndLog => {
                let loud = self.metrics.unknown_accesses() <= LOGGED_UNKNOWN_ACCESSES;
                let level = if loud { log::Level::Warn } else { log::Level::Debug };
                match write {
                    None => {
                        log::log!(level, "vCPU {vcpu}: rdmsr {msr:#x}: unknown MSR, read as 0");
                        MsrOutcome::Read(0)
                    }
                    Some(value) => {
                        log::log!(level, "vCPU {vcpu}: wrmsr {msr:#x} <- {value:#x}: unknown MSR, ignored");
                        MsrOutcome::Written
                    }
                }
            }
        }
    }

    /// Counts an injected #GP and logs why.
    fn count(&mut self, msr: u32, write: Option<u64>, outcome: MsrOutcome) -> MsrOutcome {
        if let MsrOutcome::InjectGp { reason } = outcome {
            self.metrics.injected_gp += 1;
            if reason != GpReason::UnknownMsr {
                let vcpu = self.vcpu;
                match write {
                    None => log::debug!("vCPU {vcpu}: rdmsr {msr:#x}: #GP, {reason}"),
                    Some(value) => log::debug!("vCPU {vcpu}: wrmsr {msr:#x} <- {value:#x}: #GP, {reason}"),
                }
            }
        }
        outcome
    }
}

/// #GP unless the guest's CPUID shows the MSR's feature.
fn exposed(shown: bool) -> Result<(), GpReason> {
    if shown {
        Ok(())
    } else {
        Err(GpReason::NotExposed)
    }
}

/// For MSRs the monitor never emulates: a CPU without the feature raises
/// #GP; so does the monitor when a mask shows the feature anyway.
fn hidden_or_not_emulated(shown: bool) -> GpReason {
    if shown {
        GpReason::NotEmulated
    } else {
        GpReason::NotExposed
    }
}

fn reserved(value: u64, reserved_bits: u64) -> Result<(), GpReason> {
    match value & reserved_bits {
        0 => Ok(()),
        bits => Err(GpReason::ReservedBits { bits }),
    }
}

fn canonical(address: u64, policy: &MsrPolicy) -> Result<u64, GpReason> {
    if policy.is_canonical(address) {
        Ok(address)
    } else {
        Err(GpReason::NonCanonical)
    }
}

/// IA32_PRED_CMD and IA32_FLUSH_CMD: bit 0 runs the command, 0 does nothing.
fn command(value: u64, command: HardwareCommand) -> Result<MsrOutcome, GpReason> {
    reserved(value, !COMMAND_BIT)?;
    Ok(if value & COMMAND_BIT != 0 { MsrOutcome::Execute(command) } else { MsrOutcome::Written })
}

/// A VMX capability MSR's value, for a guest shown VMX.
fn vmx_capability(msr: u32, ctx: &MsrContext) -> Result<u64, GpReason> {
    exposed(ctx.policy.nested_hvm)?;
    let table = ctx.vmx_capabilities.ok_or(GpReason::MissingVmxCapability)?;
    table.iter().find(|(number, _)| *number == msr).map(|&(_, value)| value).ok_or(GpReason::MissingVmxCapability)
}
