//! The MSR numbers the policy knows (SDM vol. 4, chapter 2), and the bits
//! of those it decodes.

pub use vmx::msr::{
    IA32_DEBUGCTL, IA32_EFER, IA32_FEATURE_CONTROL, IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE, IA32_PAT,
    IA32_SYSENTER_CS, IA32_SYSENTER_EIP, IA32_SYSENTER_ESP, IA32_VMX_BASIC, IA32_VMX_EXIT_CTLS2,
};

/// Time-stamp counter.
pub const IA32_TSC: u32 = 0x10;
/// Platform ID (bits 52:50), for matching microcode updates.
pub const IA32_PLATFORM_ID: u32 = 0x17;
/// Local APIC base address and enables.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// Per-thread TSC adjustment (CPUID.7.0:EBX.TSC_ADJUST).
pub const IA32_TSC_ADJUST: u32 = 0x3b;
/// Speculation controls: IBRS, STIBP, SSBD.
pub const IA32_SPEC_CTRL: u32 = 0x48;
/// Prediction command: write-only, bit 0 is IBPB.
pub const IA32_PRED_CMD: u32 = 0x49;
/// Microcode update trigger: write-only.
pub const IA32_BIOS_UPDT_TRIG: u32 = 0x79;
/// Microcode revision, in bits 63:32 after a write of 0 and a CPUID(1).
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
/// Non-turbo ratio and platform capabilities (not architectural, present
/// since Nehalem).
pub const MSR_PLATFORM_INFO: u32 = 0xce;
/// MTRR capabilities: variable-range count, fixed ranges, WC.
pub const IA32_MTRRCAP: u32 = 0xfe;
/// What the CPU is not vulnerable to (CPUID.7.0:EDX.ARCH_CAPABILITIES).
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
/// Flush command: write-only, bit 0 flushes the L1 data cache.
pub const IA32_FLUSH_CMD: u32 = 0x10b;
/// Miscellaneous enables: fast strings, BTS/PEBS availability, ...
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
/// The first variable-range MTRR base; masks are at odd numbers after each base.
pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
/// Fixed-range MTRR for 0x00000-0x7FFFF (8 x 64 KiB).
pub const IA32_MTRR_FIX64K_00000: u32 = 0x250;
/// Fixed-range MTRR for 0x80000-0x9FFFF (8 x 16 KiB).
pub const IA32_MTRR_FIX16K_80000: u32 = 0x258;
/// Fixed-range MTRR for 0xA0000-0xBFFFF (8 x 16 KiB).
pub const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
/// The first of eight fixed-range MTRRs for 0xC0000-0xFFFFF (8 x 4 KiB each).
pub const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
/// The last 4 KiB fixed-range MTRR (0xF8000-0xFFFFF).
pub const IA32_MTRR_FIX4K_F8000: u32 = 0x26f;
/// Default memory type and MTRR enables.
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
/// The highest VMX capability MSR there is (secondary exit controls).
pub const IA32_VMX_LAST: u32 = IA32_VMX_EXIT_CTLS2;
/// TSC-deadline timer target (CPUID.1:ECX.TSC_DEADLINE).
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC registers (0x800 + MMIO offset / 16).
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;
/// Supervisor state components for XSAVES (CPUID.0xD.1:EAX.XSAVES).
pub const IA32_XSS: u32 = 0xda0;
/// SYSCALL/SYSRET segment selectors.
pub const IA32_STAR: u32 = 0xc000_0081;
/// SYSCALL target in 64-bit mode.
pub const IA32_LSTAR: u32 = 0xc000_0082;
/// SYSCALL target in compatibility mode (never used by Intel CPUs, but kept).
pub const IA32_CSTAR: u32 = 0xc000_0083;
/// RFLAGS bits SYSCALL clears.
pub const IA32_FMASK: u32 = 0xc000_0084;
/// The value RDTSCP and RDPID return.
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// IA32_APIC_BASE bits.
pub mod apic_base {
    /// This is the bootstrap processor.
    pub const BSP: u64 = 1 << 8;
    /// x2APIC mode.
    pub const EXTD: u64 = 1 << 10;
    /// The APIC is enabled.
    pub const EN: u64 = 1 << 11;
    /// Bits 12 and up (to MAXPHYADDR): the APIC page.
    pub const BASE_MASK: u64 = !0xfff;
    /// The one place the xAPIC lives for Matryoshka's guests.
    pub const DEFAULT_BASE: u64 = 0xfee0_0000;
}

/// IA32_SPEC_CTRL bits, each present with its CPUID.7.0:EDX bit.
pub mod spec_ctrl {
    /// Indirect branch restricted speculation.
    pub const IBRS: u64 = 1 << 0;
    /// Single thread indirect branch predictors.
    pub const STIBP: u64 = 1 << 1;
    /// Speculative store bypass disable.
    pub const SSBD: u64 = 1 << 2;
}

/// IA32_PRED_CMD and IA32_FLUSH_CMD: bit 0 is the one command of each.
pub const COMMAND_BIT: u64 = 1 << 0;

/// IA32_ARCH_CAPABILITIES bits.
pub mod arch_capabilities {
    /// Not vulnerable to rogue data cache load (Meltdown).
    pub const RDCL_NO: u64 = 1 << 0;
    /// Enhanced IBRS.
    pub const IBRS_ALL: u64 = 1 << 1;
    /// RSB underflow may use other predictors (a "vulnerable" fact).
    pub const RSBA: u64 = 1 << 2;
    /// A hypervisor need not flush L1D on VM entry.
    pub const SKIP_L1DFL_VMENTRY: u64 = 1 << 3;
    /// Not vulnerable to speculative store bypass.
    pub const SSB_NO: u64 = 1 << 4;
    /// Not vulnerable to microarchitectural data sampling.
    pub const MDS_NO: u64 = 1 << 5;
    /// No machine check on an instruction-fetch page-size change.
    pub const IF_PSCHANGE_MC_NO: u64 = 1 << 6;
    /// IA32_TSX_CTRL exists.
    pub const TSX_CTRL: u64 = 1 << 7;
    /// Not vulnerable to TSX asynchronous abort.
    pub const TAA_NO: u64 = 1 << 8;
    /// Not vulnerable to shared-buffers data read.
    pub const SBDR_SSDP_NO: u64 = 1 << 13;
    /// Not vulnerable to fill-buffer stale data propagation.
    pub const FBSDP_NO: u64 = 1 << 14;
    /// Not vulnerable to primary stale data propagation.
    pub const PSDP_NO: u64 = 1 << 15;
    /// VERW clears the fill buffers.
    pub const FB_CLEAR: u64 = 1 << 17;
    /// IA32_MCU_OPT_CTRL.FB_CLEAR_DIS exists.
    pub const FB_CLEAR_CTRL: u64 = 1 << 18;
    /// Restricted RSB alternate (a "vulnerable" fact).
    pub const RRSBA: u64 = 1 << 19;
    /// Not vulnerable to branch history injection.
    pub const BHI_NO: u64 = 1 << 20;
    /// Not vulnerable to post-barrier RSB predictions.
    pub const PBRSB_NO: u64 = 1 << 24;
    /// Not vulnerable to gather data sampling.
    pub const GDS_NO: u64 = 1 << 26;
    /// Not vulnerable to register file data sampling.
    pub const RFDS_NO: u64 = 1 << 27;
    /// VERW clears the register file.
    pub const RFDS_CLEAR: u64 = 1 << 28;
}

/// IA32_MISC_ENABLE bits the SDM defines architecturally.
pub mod misc_enable {
    /// Fast-string operations (REP MOVS/STOS) enabled.
    pub const FAST_STRINGS: u64 = 1 << 0;
    /// Automatic thermal control circuit.
    pub const AUTOMATIC_TCC: u64 = 1 << 3;
    /// Performance monitoring available.
    pub const PERFMON_AVAILABLE: u64 = 1 << 7;
    /// Branch trace storage unavailable.
    pub const BTS_UNAVAILABLE: u64 = 1 << 11;
    /// Processor event-based sampling unavailable.
    pub const PEBS_UNAVAILABLE: u64 = 1 << 12;
    /// Enhanced SpeedStep enabled.
    pub const EIST: u64 = 1 << 16;
    /// MONITOR/MWAIT enabled (mirrored in CPUID.1:ECX.MONITOR).
    pub const MONITOR_FSM: u64 = 1 << 18;
    /// Limit CPUID's max basic leaf to 2.
    pub const LIMIT_CPUID_MAXVAL: u64 = 1 << 22;
    /// xTPR messages disabled.
    pub const XTPR_DISABLE: u64 = 1 << 23;
    /// Execute-disable disabled (hides CPUID.0x80000001:EDX.NX).
    pub const XD_DISABLE: u64 = 1 << 34;
    /// Every bit above.
    pub const DEFINED: u64 = FAST_STRINGS
        | AUTOMATIC_TCC
        | PERFMON_AVAILABLE
        | BTS_UNAVAILABLE
        | PEBS_UNAVAILABLE
        | EIST
        | MONITOR_FSM
        | LIMIT_CPUID_MAXVAL
        | XTPR_DISABLE
        | XD_DISABLE;
}

/// IA32_DEBUGCTL bits.
pub mod debugctl {
    /// Single-step on branches: hardware does it, with "load debug controls".
    pub const BTF: u64 = 1 << 1;
}

/// IA32_EFER bits.
pub mod efer {
    /// SYSCALL/SYSRET enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
}

/// MSR_PLATFORM_INFO bits 15:8: the maximum non-turbo ratio of the bus clock.
pub const PLATFORM_INFO_RATIO_SHIFT: u32 = 8;
