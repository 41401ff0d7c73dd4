//! The guest's CPUID.
//!
//! [`GuestCpuid::new`] reads the host's CPUID once, filters it through
//! Matryoshka's default policy (what an `x` in a user mask means) and keeps
//! the result; [`GuestCpuid::query`] answers each CPUID exit from that
//! table, adding the parts that depend on the vCPU (APIC IDs) and on its
//! current state ([`DynamicState`]), then applying the user's masks.
//!
//! Every feature register goes through an allow list: a bit the host gains
//! with a new CPU generation stays hidden until someone decides it is safe.
//! Hiding a bit does not stop a guest from executing the instruction (only
//! the controls that CR4, XCR0 and the VMCS hold do); it tells a
//! well-behaved guest not to rely on it.
//!
//! # The default policy
//!
//! | leaf | the guest sees |
//! |------|----------------|
//! | 0 | max basic leaf [`MAX_BASIC_LEAF`]; the host's vendor string |
//! | 1 | the host's family/model/stepping and CLFLUSH size; APIC ID = vCPU index, logical-processor count for the topology below; hypervisor bit set; VMX only with `nested_hvm`; hidden: DTES64, MONITOR, DS-CPL, SMX, EST, TM2, CNXT-ID, SDBG, xTPR, PDCM, DCA, x2APIC, TSC-deadline, MCE, MCA, PSN, DS, ACPI, TM, PBE; HTT only with more than one vCPU; OSXSAVE and APIC dynamic |
//! | 2 | the host's cache descriptors |
//! | 4 | the host's caches, shared per core (levels 1-2) or per package (level 3+) in our topology |
//! | 5, 6 | zero (no MONITOR/MWAIT, no power management), except ARAT in 6 |
//! | 7.0 | an allow list (see [`LEAF7_EBX_ALLOWED`] and below), max subleaf 1; OSPKE dynamic |
//! | 7.1 | AVX-VNNI, AVX512-BF16 and the fast-string bits |
//! | 0xA | zero: no PMU |
//! | 0xB, 0x1F | one package, one core per vCPU, one thread per core; x2APIC ID = vCPU index |
//! | 0xD | the host's XSAVE layout for x87, SSE, AVX, AVX-512 and PKRU; no XSAVES; sizes follow XCR0 |
//! | 0x15, 0x16 | the TSC's real rate ([`CpuidConfig::tsc_khz`]), see [`GuestCpuid::new`] |
//! | others ≤ 0x1F | zero (SGX, PT, RDT, PCONFIG, LBR, AMX, key locker...) |
//! | 0x40000000 | max hypervisor leaf 0x40000010, signature "MatryoshkaVM" |
//! | 0x40000010 | TSC and APIC timer rates in kHz (the VMware/KVM timing leaf) |
//! | 0x80000000-8 | max [`MAX_EXTENDED_LEAF`]; LAHF, LZCNT, PREFETCHW, SYSCALL, NX, LM, RDTSCP, 1 GiB pages; brand string, caches; invariant TSC as the host; address sizes with linear ≤ 48 bits |
//! | anything else | the highest basic leaf, as Intel CPUs answer |
//!
//! Leaf 7 hides: TSC_ADJUST, SGX, TSX (HLE, RTM: the TAA erratum, and no
//! IA32_TSX_CTRL to offer), RDT, MPX (IA32_BNDCFGS is not switched), PT,
//! WAITPKG, CET, TME, LA57 (nothing in the monitor handles 57-bit linear
//! addresses yet),
//! key locker, bus-lock detection, ENQCMD, SGX-LC, PKS, UINTR, SRBDS_CTRL,
//! TSX_FORCE_ABORT, HYBRID, PCONFIG, arch LBR, AMX, CORE_CAPABILITIES. It
//! keeps the speculation controls (IBRS/IBPB, STIBP, SSBD, L1D_FLUSH,
//! ARCH_CAPABILITIES, MD_CLEAR) as the host has them: the MSR policy
//! ([`super::msr`]) passes them to the hardware, so a guest can protect its
//! own processes.
//!
//! Leaf 1 hides x2APIC because the monitor emulates an xAPIC (MMIO at
//! 0xFEE00000), not the x2APIC MSRs, and TSC-deadline because the emulated
//! APIC timer has the one-shot and periodic modes only (IA32_TSC_DEADLINE
//! is not emulated; Linux then uses the one-shot timer, whose rate it takes
//! from leaf 0x15). MCE and MCA are hidden because the machine-check banks
//! are not emulated and Linux reads them without a fallback. Leaf 6 keeps
//! ARAT alone: the emulated APIC timer is a software timer that runs on
//! while the vCPU halts, and without ARAT Linux wants a broadcast timer.
//!
//! # Masks and dynamic bits
//!
//! The user's masks (`cpuid = [...]`) apply to the default policy's value
//! for the vCPU, APIC IDs included. Bits that mirror the vCPU's state
//! (CPUID.1:ECX.OSXSAVE, CPUID.1:EDX.APIC, CPUID.7.0:ECX.OSPKE and the XSAVE
//! sizes in CPUID.0xD) are applied after the masks: they are facts about
//! CR4, IA32_APIC_BASE and XCR0, not choices, and each is shown only if the
//! feature it depends on survived the masks.
//!
//! A mask's `k` reads the host's leaf; leaves beyond the host's maximum
//! count as zero rather than as the host's highest basic leaf.

mod bits;
mod xsave;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use matryoshka_config::{CpuidPolicy, CpuidRegister, GuestConfig, MAX_VCPUS};
use vmx::capabilities::VmxCapabilities;
use vmx::controls::SecondaryControls;

pub use bits::*;
use xsave::XsaveLayout;

/// The highest basic leaf the guest is told about. Every basic leaf up to
/// it is described by the policy (most as zero), so the guest gets the
/// TSC leaves 0x15/0x16 and the V2 topology leaf even on older hosts.
pub const MAX_BASIC_LEAF: u32 = 0x1f;
/// The first hypervisor leaf: highest hypervisor leaf and signature.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The timing leaf that VMware defined and KVM and others follow:
/// EAX = TSC kHz, EBX = APIC timer kHz.
pub const HYPERVISOR_TIMING_LEAF: u32 = 0x4000_0010;
/// The first extended leaf.
pub const EXTENDED_LEAF: u32 = 0x8000_0000;
/// The highest extended leaf the guest is told about (address sizes).
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
/// Returned in EBX, ECX, EDX of leaf 0x40000000, like "KVMKVMKVM\0\0\0".
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"MatryoshkaVM";
/// The rate the monitor's APIC timer counts at before its divider, unless
/// the caller says otherwise: 1 GHz, one tick per nanosecond, as KVM does.
pub const DEFAULT_APIC_TIMER_KHZ: u32 = 1_000_000;
/// The bus (reference) clock of leaf 0x16 and of MSR_PLATFORM_INFO's ratio.
pub const BUS_MHZ: u32 = 100;
/// The widest linear address the guest is told about: LA57 is hidden.
pub const MAX_LINEAR_ADDRESS_BITS: u32 = 48;
/// MAXPHYADDR when CPUID.0x80000008 is absent (SDM 4.1.4).
const DEFAULT_PHYSICAL_ADDRESS_BITS: u8 = 36;

/// Leaf 1 ECX bits passed through from the host; VMX, OSXSAVE and the
/// hypervisor bit are decided separately.
pub const LEAF1_ECX_ALLOWED: u32 = leaf1_ecx::SSE3
    | leaf1_ecx::PCLMULQDQ
    | leaf1_ecx::SSSE3
    | leaf1_ecx::FMA
    | leaf1_ecx::CMPXCHG16B
    | leaf1_ecx::PCID
    | leaf1_ecx::SSE4_1
    | leaf1_ecx::SSE4_2
    | leaf1_ecx::MOVBE
    | leaf1_ecx::POPCNT
    | leaf1_ecx::AES
    | leaf1_ecx::XSAVE
    | leaf1_ecx::AVX
    | leaf1_ecx::F16C
    | leaf1_ecx::RDRAND;

/// Leaf 1 EDX bits passed through from the host; HTT is decided
/// separately and APIC is then made dynamic.
pub const LEAF1_EDX_ALLOWED: u32 = leaf1_edx::FPU
    | leaf1_edx::VME
    | leaf1_edx::DE
    | leaf1_edx::PSE
    | leaf1_edx::TSC
    | leaf1_edx::MSR
    | leaf1_edx::PAE
    | leaf1_edx::CX8
    | leaf1_edx::APIC
    | leaf1_edx::SEP
    | leaf1_edx::MTRR
    | leaf1_edx::PGE
    | leaf1_edx::CMOV
    | leaf1_edx::PAT
    | leaf1_edx::PSE36
    | leaf1_edx::CLFSH
    | leaf1_edx::MMX
    | leaf1_edx::FXSR
    | leaf1_edx::SSE
    | leaf1_edx::SSE2
    | leaf1_edx::SS;

/// Leaf 7.0 EBX bits passed through from the host; INVPCID also needs
/// [`NativeSupport::invpcid`].
pub const LEAF7_EBX_ALLOWED: u32 = leaf7_ebx::FSGSBASE
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
    | leaf7_ebx::AVX512_IFMA
    | leaf7_ebx::CLFLUSHOPT
    | leaf7_ebx::CLWB
    | leaf7_ebx::AVX512PF
    | leaf7_ebx::AVX512ER
    | leaf7_ebx::AVX512CD
    | leaf7_ebx::SHA
    | leaf7_ebx::AVX512BW
    | leaf7_ebx::AVX512VL;

/// Leaf 7.0 ECX bits passed through from the host; RDPID also needs
/// [`NativeSupport::rdtscp`], OSPKE is dynamic.
pub const LEAF7_ECX_ALLOWED: u32 = leaf7_ecx::PREFETCHWT1
    | leaf7_ecx::AVX512_VBMI
    | leaf7_ecx::UMIP
    | leaf7_ecx::PKU
    | leaf7_ecx::AVX512_VBMI2
    | leaf7_ecx::GFNI
    | leaf7_ecx::VAES
    | leaf7_ecx::VPCLMULQDQ
    | leaf7_ecx::AVX512_VNNI
    | leaf7_ecx::AVX512_BITALG
    | leaf7_ecx::AVX512_VPOPCNTDQ
    | leaf7_ecx::RDPID
    | leaf7_ecx::CLDEMOTE
    | leaf7_ecx::MOVDIRI
    | leaf7_ecx::MOVDIR64B;

/// Leaf 7.0 EDX bits passed through from the host.
pub const LEAF7_EDX_ALLOWED: u32 = leaf7_edx::AVX512_4VNNIW
    | leaf7_edx::AVX512_4FMAPS
    | leaf7_edx::FSRM
    | leaf7_edx::AVX512_VP2INTERSECT
    | leaf7_edx::MD_CLEAR
    | leaf7_edx::SERIALIZE
    | leaf7_edx::AVX512_FP16
    | leaf7_edx::IBRS_IBPB
    | leaf7_edx::STIBP
    | leaf7_edx::L1D_FLUSH
    | leaf7_edx::ARCH_CAPABILITIES
    | leaf7_edx::SSBD;

/// Leaf 7.1 EAX bits passed through from the host.
pub const LEAF7_1_EAX_ALLOWED: u32 =
    leaf7_1_eax::AVX_VNNI | leaf7_1_eax::AVX512_BF16 | leaf7_1_eax::FZLRM | leaf7_1_eax::FSRS | leaf7_1_eax::FSRCS;

/// The XSAVE state components offered: no MPX (hidden), no AMX, no
/// supervisor state.
pub const XCR0_ALLOWED: u64 = xstate::X87 | xstate::SSE | xstate::AVX | xstate::AVX512 | xstate::PKRU;

/// Leaf 0xD.1 EAX bits passed through: no XSAVES (IA32_XSS is not
/// emulated), no XFD.
pub const LEAF_D_1_EAX_ALLOWED: u32 = leaf_d_1_eax::XSAVEOPT | leaf_d_1_eax::XSAVEC | leaf_d_1_eax::XGETBV1;

/// Leaf 0x80000001 ECX bits passed through from the host.
pub const EXT1_ECX_ALLOWED: u32 = ext1_ecx::LAHF_LM | ext1_ecx::LZCNT | ext1_ecx::PREFETCHW;

/// Leaf 0x80000001 EDX bits passed through from the host; 1 GiB pages and
/// RDTSCP also need [`NativeSupport`].
pub const EXT1_EDX_ALLOWED: u32 =
    ext1_edx::SYSCALL | ext1_edx::NX | ext1_edx::PAGE_1GB | ext1_edx::RDTSCP | ext1_edx::LM;

/// Leaf 0x80000007 EDX bits passed through: the guest's TSC is the host's
/// plus a fixed offset, so it is exactly as invariant as the host's.
pub const EXT7_EDX_ALLOWED: u32 = ext7_edx::INVARIANT_TSC;

/// Leaves whose answer depends on ECX. For the others the subleaf is
/// ignored, for the lookup and for the user's masks alike.
const LEAVES_WITH_SUBLEAVES: [u32; 12] = [0x4, 0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1f];

/// Hardware behind features the guest executes without the monitor: the
/// VMCS controls the shim sets, and EPT's page sizes. A feature is shown
/// only if the guest can really use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NativeSupport {
    /// EPT maps 1 GiB pages, so the guest's 1 GiB pages work under it
    /// (CPUID.0x80000001:EDX.Page1GB).
    pub ept_1gb_pages: bool,
    /// The shim sets the "enable RDTSCP" control: without it RDTSCP and
    /// RDPID raise #UD in the guest.
    pub rdtscp: bool,
    /// The shim sets the "enable INVPCID" control: without it INVPCID
    /// raises #UD in the guest.
    pub invpcid: bool,
}

impl NativeSupport {
    /// Everything available.
    pub const ALL: Self = Self { ept_1gb_pages: true, rdtscp: true, invpcid: true };

    /// What the CPU allows, for a shim that enables every allowed control
    /// among these.
    pub fn from_capabilities(capabilities: &VmxCapabilities) -> Self {
        Self {
            ept_1gb_pages: capabilities.ept_vpid.pages_1g(),
            rdtscp: capabilities.secondary.supports(SecondaryControls::RDTSCP.bits()),
            invpcid: capabilities.secondary.supports(SecondaryControls::INVPCID.bits()),
        }
    }
}

/// What a guest's CPUID is built from, besides the host's.
#[derive(Clone, Copy, Debug)]
pub struct CpuidConfig<'a> {
    /// vCPUs of the guest, 1 to [`MAX_VCPUS`] (other values are clamped).
    pub vcpus: u32,
    /// `nestedhvm`: show VMX, which the monitor emulates.
    pub nested_hvm: bool,
    /// The user's `cpuid` masks.
    pub masks: &'a CpuidPolicy,
    /// The rate the guest's TSC really runs at. 0 means unknown: the TSC
    /// leaves then read as zero and the guest calibrates by itself.
    pub tsc_khz: u32,
    /// The rate of the monitor's APIC timer before its divider
    /// ([`DEFAULT_APIC_TIMER_KHZ`] unless the APIC emulation says otherwise).
    pub apic_timer_khz: u32,
    pub native: NativeSupport,
}

impl<'a> CpuidConfig<'a> {
    /// The configuration of `guest` (vCPUs, `nestedhvm`, `cpuid` masks) with
    /// the default APIC timer rate.
    pub fn for_guest(guest: &'a GuestConfig, tsc_khz: u32, native: NativeSupport) -> Self {
        Self {
            vcpus: guest.vcpus,
            nested_hvm: guest.nested_hvm,
            masks: &guest.cpuid,
            tsc_khz,
            apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
            native,
        }
    }
}

/// The parts of a vCPU's state that CPUID reports back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DynamicState {
    /// CR4.OSXSAVE, shown as CPUID.1:ECX.OSXSAVE.
    pub osxsave: bool,
    /// CR4.PKE, shown as CPUID.7.0:ECX.OSPKE.
    pub pke: bool,
    /// IA32_APIC_BASE.EN: a disabled APIC makes CPUID.1:EDX.APIC read 0.
    pub apic_enabled: bool,
    /// XCR0, which sets the XSAVE area size in CPUID.0xD.0:EBX (and .1:EBX).
    pub xcr0: u64,
}

impl DynamicState {
    /// After reset or INIT: CR4 clear, APIC enabled, XCR0 = x87 only.
    pub const AT_RESET: Self = Self { osxsave: false, pke: false, apic_enabled: true, xcr0: xstate::X87 };

    /// CR4.OSXSAVE is bit 18 and CR4.PKE bit 22; IA32_APIC_BASE.EN is bit 11.
    pub const fn from_registers(cr4: u64, xcr0: u64, apic_base: u64) -> Self {
        Self { osxsave: cr4 & 1 << 18 != 0, pke: cr4 & 1 << 22 != 0, apic_enabled: apic_base & 1 << 11 != 0, xcr0 }
    }
}

impl Default for DynamicState {
    fn default() -> Self {
        Self::AT_RESET
    }
}

/// A feature other parts of the monitor must agree with CPUID about (the
/// MSR policy exposes an MSR only if the guest was told of its feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    Vmx,
    X2apic,
    TscDeadline,
    Xsave,
    Apic,
    Mtrr,
    Pat,
    Mce,
    Mca,
    TscAdjust,
    Pku,
    Rdpid,
    IbrsIbpb,
    Stibp,
    L1dFlush,
    ArchCapabilities,
    Ssbd,
    Xsaves,
    Syscall,
    Nx,
    Page1Gb,
    Rdtscp,
    LongMode,
    InvariantTsc,
}

impl Feature {
    /// Leaf, subleaf, register and bit mask.
    pub const fn location(self) -> (u32, u32, CpuidRegister, u32) {
        use CpuidRegister::{Eax, Ebx, Ecx, Edx};
        match self {
            Self::Vmx => (1, 0, Ecx, leaf1_ecx::VMX),
            Self::X2apic => (1, 0, Ecx, leaf1_ecx::X2APIC),
            Self::TscDeadline => (1, 0, Ecx, leaf1_ecx::TSC_DEADLINE),
            Self::Xsave => (1, 0, Ecx, leaf1_ecx::XSAVE),
            Self::Apic => (1, 0, Edx, leaf1_edx::APIC),
            Self::Mtrr => (1, 0, Edx, leaf1_edx::MTRR),
            Self::Pat => (1, 0, Edx, leaf1_edx::PAT),
            Self::Mce => (1, 0, Edx, leaf1_edx::MCE),
            Self::Mca => (1, 0, Edx, leaf1_edx::MCA),
            Self::TscAdjust => (7, 0, Ebx, leaf7_ebx::TSC_ADJUST),
            Self::Pku => (7, 0, Ecx, leaf7_ecx::PKU),
            Self::Rdpid => (7, 0, Ecx, leaf7_ecx::RDPID),
            Self::IbrsIbpb => (7, 0, Edx, leaf7_edx::IBRS_IBPB),
            Self::Stibp => (7, 0, Edx, leaf7_edx::STIBP),
            Self::L1dFlush => (7, 0, Edx, leaf7_edx::L1D_FLUSH),
            Self::ArchCapabilities => (7, 0, Edx, leaf7_edx::ARCH_CAPABILITIES),
            Self::Ssbd => (7, 0, Edx, leaf7_edx::SSBD),
            Self::Xsaves => (0xd, 1, Eax, leaf_d_1_eax::XSAVES),
            Self::Syscall => (0x8000_0001, 0, Edx, ext1_edx::SYSCALL),
            Self::Nx => (0x8000_0001, 0, Edx, ext1_edx::NX),
            Self::Page1Gb => (0x8000_0001, 0, Edx, ext1_edx::PAGE_1GB),
            Self::Rdtscp => (0x8000_0001, 0, Edx, ext1_edx::RDTSCP),
            Self::LongMode => (0x8000_0001, 0, Edx, ext1_edx::LM),
            Self::InvariantTsc => (0x8000_0007, 0, Edx, ext7_edx::INVARIANT_TSC),
        }
    }
}

/// One (leaf, subleaf): the host's values and the default policy's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Leaf {
    host: [u32; 4],
    policy: [u32; 4],
}

/// The guest's CPUID, built once per guest.
#[derive(Clone, Debug)]
pub struct GuestCpuid {
    /// Every (leaf, subleaf) the policy describes, before the per-vCPU and
    /// dynamic parts. A subleaf missing here reads as zero.
    leaves: BTreeMap<(u32, u32), Leaf>,
    masks: CpuidPolicy,
    topology: Topology,
    /// `None` when the host has no XSAVE: leaf 0xD is then all zero.
    xsave: Option<XsaveLayout>,
    max_extended_leaf: u32,
    nested_hvm: bool,
    tsc_khz: u32,
    apic_timer_khz: u32,
}

impl GuestCpuid {
    /// Builds the guest's CPUID from the host's, read through
    /// `host_cpuid(leaf, subleaf) -> [eax, ebx, ecx, edx]`.
    ///
    /// The TSC leaves describe the rate the guest's TSC really runs at,
    /// whatever the CPU model claims (an emulator's model may say 3.5 GHz
    /// while its TSC counts at another rate, and a guest that believes the
    /// model mis-calibrates every timer). They also tell Linux the APIC
    /// timer's rate: Linux takes CPUID.0x15's crystal as the APIC timer's
    /// clock and skips calibrating it. So:
    ///
    /// - 0x15: ECX = the crystal = the APIC timer's rate in Hz, and
    ///   EBX/EAX = TSC / crystal, reduced (TSC = ECX * EBX / EAX);
    /// - 0x16: base = max = TSC MHz (rounded), bus = [`BUS_MHZ`];
    /// - 0x40000010: EAX = TSC kHz, EBX = APIC timer kHz.
    pub fn new(host_cpuid: impl Fn(u32, u32) -> [u32; 4], config: &CpuidConfig) -> Self {
        let host = HostView::new(host_cpuid);
        let topology = Topology::new(config.vcpus);
        let [host_xcr0_low, _, _, host_xcr0_high] = host.get(0xd, 0);
        let host_components = u64::from(host_xcr0_high) << 32 | u64::from(host_xcr0_low);
        let host_has_xsave = host.get(1, 0)[2] & leaf1_ecx::XSAVE != 0;
        let xsave = host_has_xsave.then(|| XsaveLayout::from_host(host_components, |subleaf| host.get(0xd, subleaf)));
        let mut builder = Builder { host: &host, leaves: BTreeMap::new() };
        build_basic_leaves(&mut builder, config, &topology, xsave.as_ref());
        build_hypervisor_leaves(&mut builder, config);
        let max_extended_leaf = build_extended_leaves(&mut builder, config);
        Self {
            leaves: builder.leaves,
            masks: config.masks.clone(),
            topology,
            xsave,
            max_extended_leaf,
            nested_hvm: config.nested_hvm,
            tsc_khz: config.tsc_khz,
            apic_timer_khz: config.apic_timer_khz,
        }
    }

    /// What CPUID(`leaf`, `subleaf`) returns on `vcpu` in state `dynamic`,
    /// as `[eax, ebx, ecx, edx]`.
    ///
    /// A leaf above the maximum of its range (basic, hypervisor, extended)
    /// or in no range returns the highest basic leaf, as Intel CPUs do (SDM
    /// vol. 2A, CPUID): guests probing for other hypervisors' signatures
    /// find none. A `vcpu` beyond the guest's count is answered as if it
    /// existed.
    pub fn query(&self, leaf: u32, subleaf: u32, vcpu: u32, dynamic: DynamicState) -> [u32; 4] {
        let (leaf, subleaf) = self.resolve(leaf, subleaf);
        let stored = self.leaves.get(&(leaf, subleaf)).copied().unwrap_or_default();
        let mut default_policy = stored.policy;
        match leaf {
            0x1 => default_policy[1] |= (vcpu & 0xff) << 24,
            0xb | 0x1f => default_policy = self.topology.extended_leaf(subleaf, vcpu),
            _ => {}
        }
        let mut seen = self.masks.apply(leaf, subleaf, stored.host, default_policy);
        self.apply_dynamic(leaf, subleaf, dynamic, &mut seen);
        seen
    }

    /// Whether the guest is told it has `feature` (on vCPU 0, after reset).
    pub fn has(&self, feature: Feature) -> bool {
        let (leaf, subleaf, register, mask) = feature.location();
        self.query(leaf, subleaf, 0, DynamicState::AT_RESET)[register.index()] & mask != 0
    }

    /// The XCR0 bits the guest may set (CPUID.0xD.0 EDX:EAX), for checking
    /// its XSETBV.
    pub fn supported_xcr0(&self) -> u64 {
        if !self.has(Feature::Xsave) {
            return 0;
        }
        let [low, _, _, high] = self.query(0xd, 0, 0, DynamicState::AT_RESET);
        u64::from(high) << 32 | u64::from(low)
    }

    /// MAXPHYADDR as the guest sees it.
    pub fn physical_address_bits(&self) -> u8 {
        match self.address_sizes() as u8 {
            0 => DEFAULT_PHYSICAL_ADDRESS_BITS,
            bits => bits.min(52),
        }
    }

    /// The linear-address width (48 unless a mask says otherwise), which
    /// sets what a canonical address is.
    pub fn linear_address_bits(&self) -> u8 {
        match (self.address_sizes() >> 8) as u8 {
            bits @ 32..=64 => bits,
            _ => MAX_LINEAR_ADDRESS_BITS as u8,
        }
    }

    /// CPUID.0x80000008:EAX, or 0 if the guest has no such leaf.
    fn address_sizes(&self) -> u32 {
        if self.query(EXTENDED_LEAF, 0, 0, DynamicState::AT_RESET)[0] < 0x8000_0008 {
            return 0;
        }
        self.query(0x8000_0008, 0, 0, DynamicState::AT_RESET)[0]
    }

    pub fn nested_hvm(&self) -> bool {
        self.nested_hvm
    }

    pub fn vcpus(&self) -> u32 {
        self.topology.vcpus
    }

    pub fn tsc_khz(&self) -> u32 {
        self.tsc_khz
    }

    pub fn apic_timer_khz(&self) -> u32 {
        self.apic_timer_khz
    }

    /// The (leaf, subleaf) whose data answers CPUID(`leaf`, `subleaf`).
    fn resolve(&self, leaf: u32, subleaf: u32) -> (u32, u32) {
        let described = leaf <= MAX_BASIC_LEAF
            || (HYPERVISOR_LEAF..=HYPERVISOR_TIMING_LEAF).contains(&leaf)
            || (EXTENDED_LEAF..=self.max_extended_leaf).contains(&leaf);
        let leaf = if described { leaf } else { MAX_BASIC_LEAF };
        let subleaf = if LEAVES_WITH_SUBLEAVES.contains(&leaf) { subleaf } else { 0 };
        (leaf, subleaf)
    }

    /// Overrides the bits that mirror the vCPU's state; see the module docs.
    fn apply_dynamic(&self, leaf: u32, subleaf: u32, dynamic: DynamicState, seen: &mut [u32; 4]) {
        let set = |register: &mut u32, bit: u32, on: bool| *register = (*register & !bit) | if on { bit } else { 0 };
        match (leaf, subleaf) {
            (0x1, _) => {
                let xsave = seen[2] & leaf1_ecx::XSAVE != 0;
                set(&mut seen[2], leaf1_ecx::OSXSAVE, xsave && dynamic.osxsave);
                let apic = seen[3] & leaf1_edx::APIC != 0;
                set(&mut seen[3], leaf1_edx::APIC, apic && dynamic.apic_enabled);
            }
            (0x7, 0) => {
                let pku = seen[2] & leaf7_ecx::PKU != 0;
                set(&mut seen[2], leaf7_ecx::OSPKE, pku && dynamic.pke);
            }
            (0xd, 0) => seen[1] = self.xsave.as_ref().map_or(0, |layout| layout.standard_size(dynamic.xcr0)),
            // No IA32_XSS: the compacted area holds the XCR0 components only.
            (0xd, 1) => seen[1] = self.xsave.as_ref().map_or(0, |layout| layout.compacted_size(dynamic.xcr0)),
            _ => {}
        }
    }
}

/// The host's CPUID, with every leaf beyond the host's maximum of its
/// range read as zero instead of as the host's highest basic leaf.
struct HostView<F> {
    cpuid: F,
    max_basic: u32,
    max_hypervisor: Option<u32>,
    max_extended: Option<u32>,
}

impl<F: Fn(u32, u32) -> [u32; 4]> HostView<F> {
    fn new(cpuid: F) -> Self {
        let max_basic = cpuid(0, 0)[0];
        let under_hypervisor = max_basic >= 1 && cpuid(1, 0)[2] & leaf1_ecx::HYPERVISOR != 0;
        let max_hypervisor = match cpuid(HYPERVISOR_LEAF, 0)[0] {
            max @ HYPERVISOR_LEAF..=0x4fff_ffff if under_hypervisor => Some(max),
            _ => None,
        };
        let max_extended = match cpuid(EXTENDED_LEAF, 0)[0] {
            max @ EXTENDED_LEAF..=0x8fff_ffff => Some(max),
            _ => None,
        };
        Self { cpuid, max_basic, max_hypervisor, max_extended }
    }

    fn get(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let present = match leaf {
            0..HYPERVISOR_LEAF => leaf <= self.max_basic,
            HYPERVISOR_LEAF..EXTENDED_LEAF => self.max_hypervisor.is_some_and(|max| leaf <= max),
            EXTENDED_LEAF.. => self.max_extended.is_some_and(|max| leaf <= max),
        };
        if present {
            (self.cpuid)(leaf, subleaf)
        } else {
            [0; 4]
        }
    }
}

/// Collects the table, pairing each policy value with the host's.
struct Builder<'h, F> {
    host: &'h HostView<F>,
    leaves: BTreeMap<(u32, u32), Leaf>,
}

impl<F: Fn(u32, u32) -> [u32; 4]> Builder<'_, F> {
    fn host(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.host.get(leaf, subleaf)
    }

    fn put(&mut self, leaf: u32, subleaf: u32, policy: [u32; 4]) {
        let host = self.host.get(leaf, subleaf);
        self.leaves.insert((leaf, subleaf), Leaf { host, policy });
    }
}

fn build_basic_leaves<F: Fn(u32, u32) -> [u32; 4]>(
    builder: &mut Builder<'_, F>,
    config: &CpuidConfig,
    topology: &Topology,
    xsave: Option<&XsaveLayout>,
) {
    for leaf in 0..=MAX_BASIC_LEAF {
        let host = builder.host(leaf, 0);
        match leaf {
            0x0 => builder.put(leaf, 0, [MAX_BASIC_LEAF, host[1], host[2], host[3]]),
            0x1 => builder.put(leaf, 0, leaf_1(host, config, topology)),
            0x2 => builder.put(leaf, 0, host),
            0x4 => {
                // Subleaves run until the first with cache type 0 ("no more caches").
                for subleaf in 0..64 {
                    let cache = builder.host(leaf, subleaf);
                    builder.put(leaf, subleaf, cache_leaf(cache, topology));
                    if cache[0] & 0x1f == 0 {
                        break;
                    }
                }
            }
            0x6 => builder.put(leaf, 0, [leaf6_eax::ARAT, 0, 0, 0]),
            0x7 => {
                builder.put(leaf, 0, leaf_7_0(host, config.native));
                let host_1 = builder.host(leaf, 1);
                let subleaf_1 = if host[0] >= 1 { [host_1[0] & LEAF7_1_EAX_ALLOWED, 0, 0, 0] } else { [0; 4] };
                builder.put(leaf, 1, subleaf_1);
            }
            0xb | 0x1f => {
                for subleaf in 0..4 {
                    builder.put(leaf, subleaf, topology.extended_leaf(subleaf, 0));
                }
            }
            0xd => match xsave {
                Some(layout) => build_xsave_leaves(builder, host, layout),
                None => (0..64).for_each(|subleaf| builder.put(leaf, subleaf, [0; 4])),
            },
            0x15 => builder.put(leaf, 0, tsc_crystal_leaf(config.tsc_khz, config.apic_timer_khz)),
            0x16 => builder.put(leaf, 0, frequency_leaf(config.tsc_khz)),
            // 3 (serial number), 5 (MONITOR), 8, 9 (DCA), 0xA (PMU), 0xC,
            // 0xE, 0xF/0x10 (RDT), 0x11, 0x12 (SGX), 0x13, 0x14 (PT), 0x17
            // (SoC vendor), 0x18 (TLBs: optional), 0x19 (key locker), 0x1A
            // (hybrid), 0x1B (PCONFIG), 0x1C (LBR), 0x1D/0x1E (AMX).
            _ => builder.put(leaf, 0, [0; 4]),
        }
    }
}

fn leaf_1(host: [u32; 4], config: &CpuidConfig, topology: &Topology) -> [u32; 4] {
    // EBX: brand index (7:0) and CLFLUSH size (15:8) from the host; 23:16
    // the package's addressable logical-processor IDs; 31:24 the APIC ID,
    // added per vCPU by `query`.
    let ebx = host[1] & 0xffff | topology.addressable_ids() << 16;
    let vmx = if config.nested_hvm { leaf1_ecx::VMX } else { 0 };
    let ecx = host[2] & LEAF1_ECX_ALLOWED | vmx | leaf1_ecx::HYPERVISOR;
    let htt = if topology.vcpus > 1 { leaf1_edx::HTT } else { 0 };
    let edx = host[3] & LEAF1_EDX_ALLOWED | htt;
    [host[0], ebx, ecx, edx]
}

/// Leaf 4: the host's cache, sized for the guest's topology. Levels 1
/// and 2 are private to a core (one vCPU), level 3 and beyond shared by
/// the whole package.
fn cache_leaf(host: [u32; 4], topology: &Topology) -> [u32; 4] {
    if host[0] & 0x1f == 0 {
        return [0; 4];
    }
    let level = (host[0] >> 5) & 0x7;
    let sharing_ids = if level >= 3 { topology.addressable_ids() } else { 1 };
    // EAX 9:0: type, level, self-initializing, fully associative;
    // 25:14: IDs sharing the cache - 1; 31:26: core IDs in the package - 1.
    let eax = host[0] & 0x3ff | (sharing_ids - 1) << 14 | (topology.addressable_ids() - 1) << 26;
    // EDX 2:0: WBINVD scope, inclusiveness, complex indexing.
    [eax, host[1], host[2], host[3] & 0x7]
}

fn leaf_7_0(host: [u32; 4], native: NativeSupport) -> [u32; 4] {
    let mut ebx = host[1] & LEAF7_EBX_ALLOWED;
    if !native.invpcid {
        ebx &= !leaf7_ebx::INVPCID;
    }
    let mut ecx = host[2] & LEAF7_ECX_ALLOWED;
    if !native.rdtscp {
        ecx &= !leaf7_ecx::RDPID;
    }
    [host[0].min(1), ebx, ecx, host[3] & LEAF7_EDX_ALLOWED]
}

/// Leaf 0xD: the host's layout for the offered components.
fn build_xsave_leaves<F: Fn(u32, u32) -> [u32; 4]>(builder: &mut Builder<'_, F>, host: [u32; 4], xsave: &XsaveLayout) {
    let host_components = u64::from(host[3]) << 32 | u64::from(host[0]);
    let mut offered = host_components & XCR0_ALLOWED;
    // AVX-512 and PKRU state only come with the features that use them.
    let host_leaf_7 = builder.host(0x7, 0);
    if host_leaf_7[1] & leaf7_ebx::AVX512F == 0 {
        offered &= !xstate::AVX512;
    }
    if host_leaf_7[2] & leaf7_ecx::PKU == 0 {
        offered &= !xstate::PKRU;
    }
    let reset_size = xsave.standard_size(xstate::X87);
    builder.put(0xd, 0, [offered as u32, reset_size, xsave.standard_size(offered), (offered >> 32) as u32]);
    let host_1 = builder.host(0xd, 1);
    builder.put(0xd, 1, [host_1[0] & LEAF_D_1_EAX_ALLOWED, xsave.compacted_size(xstate::X87), 0, 0]);
    for component in 2..64 {
        let policy = if offered & (1 << component) != 0 {
            let [size, offset, flags, _] = builder.host(0xd, component);
            // ECX bit 0 (supervisor) stays 0 for user components; bit 1 is the alignment.
            [size, offset, flags & 0b10, 0]
        } else {
            [0; 4]
        };
        builder.put(0xd, component, policy);
    }
}

/// Leaf 0x15, see [`GuestCpuid::new`].
fn tsc_crystal_leaf(tsc_khz: u32, apic_timer_khz: u32) -> [u32; 4] {
    if tsc_khz == 0 || apic_timer_khz == 0 {
        return [0; 4];
    }
    let divisor = greatest_common_divisor(tsc_khz, apic_timer_khz);
    // A crystal that does not fit in ECX is left unknown (0): Linux then
    // derives it from leaf 0x16 and the ratio, which gives the same rate.
    let crystal_hz = apic_timer_khz.checked_mul(1000).unwrap_or(0);
    [apic_timer_khz / divisor, tsc_khz / divisor, crystal_hz, 0]
}

/// Leaf 0x16: the nominal frequency is the TSC's; there is no turbo.
fn frequency_leaf(tsc_khz: u32) -> [u32; 4] {
    if tsc_khz == 0 {
        return [0; 4];
    }
    // Rounded to the nearest MHz; the registers hold 16 bits.
    let mhz = ((u64::from(tsc_khz) + 500) / 1000).min(0xffff) as u32;
    [mhz, mhz, BUS_MHZ, 0]
}

fn greatest_common_divisor(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn build_hypervisor_leaves<F: Fn(u32, u32) -> [u32; 4]>(builder: &mut Builder<'_, F>, config: &CpuidConfig) {
    let word = |index: usize| {
        let bytes = &HYPERVISOR_SIGNATURE[index * 4..index * 4 + 4];
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    };
    builder.put(HYPERVISOR_LEAF, 0, [HYPERVISOR_TIMING_LEAF, word(0), word(1), word(2)]);
    for leaf in HYPERVISOR_LEAF + 1..HYPERVISOR_TIMING_LEAF {
        builder.put(leaf, 0, [0; 4]);
    }
    builder.put(HYPERVISOR_TIMING_LEAF, 0, [config.tsc_khz, config.apic_timer_khz, 0, 0]);
}

/// Returns the highest extended leaf.
fn build_extended_leaves<F: Fn(u32, u32) -> [u32; 4]>(builder: &mut Builder<'_, F>, config: &CpuidConfig) -> u32 {
    let max_extended_leaf = builder.host(EXTENDED_LEAF, 0)[0].clamp(EXTENDED_LEAF, MAX_EXTENDED_LEAF);
    builder.put(EXTENDED_LEAF, 0, [max_extended_leaf, 0, 0, 0]);
    for leaf in EXTENDED_LEAF + 1..=max_extended_leaf {
        let host = builder.host(leaf, 0);
        let policy = match leaf {
            0x8000_0001 => {
                let mut edx = host[3] & EXT1_EDX_ALLOWED;
                if !config.native.ept_1gb_pages {
                    edx &= !ext1_edx::PAGE_1GB;
                }
                if !config.native.rdtscp {
                    edx &= !ext1_edx::RDTSCP;
                }
                [host[0], 0, host[2] & EXT1_ECX_ALLOWED, edx]
            }
            // The brand string and the L2 cache.
            0x8000_0002..=0x8000_0004 | 0x8000_0006 => host,
            0x8000_0007 => [0, 0, 0, host[3] & EXT7_EDX_ALLOWED],
            0x8000_0008 => {
                let physical = host[0] & 0xff;
                let linear = ((host[0] >> 8) & 0xff).min(MAX_LINEAR_ADDRESS_BITS);
                [physical | linear << 8, 0, 0, 0]
            }
            _ => [0; 4],
        };
        builder.put(leaf, 0, policy);
    }
    max_extended_leaf
}

/// The guest's topology: one package, one core per vCPU, one thread per
/// core. The x2APIC ID is the vCPU index; its low `core_id_bits` bits are
/// the core ID and there are no thread bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Topology {
    vcpus: u32,
    core_id_bits: u32,
}

/// Level types of leaves 0xB and 0x1F (`ECX[15:8]`).
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

impl Topology {
    fn new(vcpus: u32) -> Self {
        let vcpus = vcpus.clamp(1, MAX_VCPUS);
        // The bits that number `vcpus` cores: ceil(log2(vcpus)).
        let core_id_bits = u32::BITS - (vcpus - 1).leading_zeros();
        Self { vcpus, core_id_bits }
    }

    /// IDs the core field can hold: leaf 1 `EBX[23:16]`, leaf 4 `EAX[31:26]` + 1.
    fn addressable_ids(&self) -> u32 {
        1 << self.core_id_bits
    }

    /// Leaves 0xB and 0x1F (the two agree: there are no module or die levels).
    fn extended_leaf(&self, subleaf: u32, vcpu: u32) -> [u32; 4] {
        // EAX: bits to shift the x2APIC ID right to reach the next level's
        // ID; EBX: logical processors at this level; ECX: level number and
        // type; EDX: this vCPU's x2APIC ID.
        match subleaf {
            0 => [0, 1, LEVEL_TYPE_SMT << 8, vcpu],
            1 => [self.core_id_bits, self.vcpus, 1 | LEVEL_TYPE_CORE << 8, vcpu],
            _ => [0, 0, subleaf & 0xff, vcpu],
        }
    }
}
