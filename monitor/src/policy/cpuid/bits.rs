//! CPUID feature bits, named as the SDM (vol. 2A, CPUID) names them, one
//! module per leaf and register.
//!
//! Only the bits the policy decides about are named: a bit that is neither
//! here nor in a leaf's allow list never reaches the guest.

/// CPUID.1:ECX.
pub mod leaf1_ecx {
    pub const SSE3: u32 = 1 << 0;
    pub const PCLMULQDQ: u32 = 1 << 1;
    /// 64-bit debug store: needs the DS area, not emulated.
    pub const DTES64: u32 = 1 << 2;
    /// MONITOR/MWAIT: would need the monitor to emulate address monitoring.
    pub const MONITOR: u32 = 1 << 3;
    /// CPL-qualified debug store.
    pub const DS_CPL: u32 = 1 << 4;
    pub const VMX: u32 = 1 << 5;
    /// Safer mode extensions (GETSEC): TXT is the host's business.
    pub const SMX: u32 = 1 << 6;
    /// Enhanced SpeedStep: the guest has no P-states.
    pub const EST: u32 = 1 << 7;
    /// Thermal monitor 2.
    pub const TM2: u32 = 1 << 8;
    pub const SSSE3: u32 = 1 << 9;
    /// L1 context ID.
    pub const CNXT_ID: u32 = 1 << 10;
    /// Silicon debug (IA32_DEBUG_INTERFACE).
    pub const SDBG: u32 = 1 << 11;
    pub const FMA: u32 = 1 << 12;
    pub const CMPXCHG16B: u32 = 1 << 13;
    /// xTPR update control (IA32_MISC_ENABLE bit 23).
    pub const XTPR_UPDATE: u32 = 1 << 14;
    /// Perfmon and debug capability (IA32_PERF_CAPABILITIES).
    pub const PDCM: u32 = 1 << 15;
    pub const PCID: u32 = 1 << 17;
    /// Direct cache access for DMA writes.
    pub const DCA: u32 = 1 << 18;
    pub const SSE4_1: u32 = 1 << 19;
    pub const SSE4_2: u32 = 1 << 20;
    pub const X2APIC: u32 = 1 << 21;
    pub const MOVBE: u32 = 1 << 22;
    pub const POPCNT: u32 = 1 << 23;
    /// The APIC timer's TSC-deadline mode (IA32_TSC_DEADLINE).
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const AES: u32 = 1 << 25;
    pub const XSAVE: u32 = 1 << 26;
    /// CR4.OSXSAVE, read back: dynamic.
    pub const OSXSAVE: u32 = 1 << 27;
    pub const AVX: u32 = 1 << 28;
    pub const F16C: u32 = 1 << 29;
    pub const RDRAND: u32 = 1 << 30;
    /// Reserved for hypervisors to say "you are a guest".
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// CPUID.1:EDX.
pub mod leaf1_edx {
    pub const FPU: u32 = 1 << 0;
    /// Virtual-8086 mode enhancements.
    pub const VME: u32 = 1 << 1;
    /// Debugging extensions (CR4.DE).
    pub const DE: u32 = 1 << 2;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    /// Machine-check exception: the machine-check architecture is not emulated.
    pub const MCE: u32 = 1 << 7;
    pub const CX8: u32 = 1 << 8;
    /// A local APIC that is enabled: dynamic (IA32_APIC_BASE.EN).
    pub const APIC: u32 = 1 << 9;
    /// SYSENTER/SYSEXIT.
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    /// Machine-check architecture (the MCi banks).
    pub const MCA: u32 = 1 << 14;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const PSE36: u32 = 1 << 17;
    /// Processor serial number.
    pub const PSN: u32 = 1 << 18;
    pub const CLFSH: u32 = 1 << 19;
    /// Debug store (BTS/PEBS buffers).
    pub const DS: u32 = 1 << 21;
    /// Thermal monitor and software-controlled clock (ACPI).
    pub const ACPI: u32 = 1 << 22;
    pub const MMX: u32 = 1 << 23;
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
    /// Self snoop.
    pub const SS: u32 = 1 << 27;
    /// More than one logical processor per package (leaf 1 `EBX[23:16]` valid).
    pub const HTT: u32 = 1 << 28;
    /// Thermal monitor.
    pub const TM: u32 = 1 << 29;
    /// Pending break enable.
    pub const PBE: u32 = 1 << 31;
}

/// CPUID.6:EAX.
pub mod leaf6_eax {
    /// The APIC timer keeps running in deep C-states.
    pub const ARAT: u32 = 1 << 2;
}

/// CPUID.(7,0):EBX.
pub mod leaf7_ebx {
    pub const FSGSBASE: u32 = 1 << 0;
    /// IA32_TSC_ADJUST: not emulated.
    pub const TSC_ADJUST: u32 = 1 << 1;
    pub const SGX: u32 = 1 << 2;
    pub const BMI1: u32 = 1 << 3;
    /// TSX hardware lock elision.
    pub const HLE: u32 = 1 << 4;
    pub const AVX2: u32 = 1 << 5;
    /// The x87 FDP is updated only on exceptions.
    pub const FDP_EXCPTN_ONLY: u32 = 1 << 6;
    pub const SMEP: u32 = 1 << 7;
    pub const BMI2: u32 = 1 << 8;
    /// Enhanced REP MOVSB/STOSB.
    pub const ERMS: u32 = 1 << 9;
    pub const INVPCID: u32 = 1 << 10;
    /// TSX restricted transactional memory.
    pub const RTM: u32 = 1 << 11;
    /// Resource director technology monitoring (cache QoS).
    pub const RDT_M: u32 = 1 << 12;
    /// The x87 CS and DS are deprecated (saved as 0).
    pub const FPU_CS_DS_DEPRECATED: u32 = 1 << 13;
    pub const MPX: u32 = 1 << 14;
    /// Resource director technology allocation.
    pub const RDT_A: u32 = 1 << 15;
    pub const AVX512F: u32 = 1 << 16;
    pub const AVX512DQ: u32 = 1 << 17;
    pub const RDSEED: u32 = 1 << 18;
    pub const ADX: u32 = 1 << 19;
    pub const SMAP: u32 = 1 << 20;
    pub const AVX512_IFMA: u32 = 1 << 21;
    pub const CLFLUSHOPT: u32 = 1 << 23;
    pub const CLWB: u32 = 1 << 24;
    /// Intel processor trace.
    pub const PT: u32 = 1 << 25;
    pub const AVX512PF: u32 = 1 << 26;
    pub const AVX512ER: u32 = 1 << 27;
    pub const AVX512CD: u32 = 1 << 28;
    pub const SHA: u32 = 1 << 29;
    pub const AVX512BW: u32 = 1 << 30;
    pub const AVX512VL: u32 = 1 << 31;
}

/// CPUID.(7,0):ECX.
pub mod leaf7_ecx {
    pub const PREFETCHWT1: u32 = 1 << 0;
    pub const AVX512_VBMI: u32 = 1 << 1;
    /// User-mode instruction prevention (CR4.UMIP).
    pub const UMIP: u32 = 1 << 2;
    /// Protection keys for user pages.
    pub const PKU: u32 = 1 << 3;
    /// CR4.PKE, read back: dynamic.
    pub const OSPKE: u32 = 1 << 4;
    /// TPAUSE/UMONITOR/UMWAIT (IA32_UMWAIT_CONTROL).
    pub const WAITPKG: u32 = 1 << 5;
    pub const AVX512_VBMI2: u32 = 1 << 6;
    /// CET shadow stacks.
    pub const CET_SS: u32 = 1 << 7;
    pub const GFNI: u32 = 1 << 8;
    pub const VAES: u32 = 1 << 9;
    pub const VPCLMULQDQ: u32 = 1 << 10;
    pub const AVX512_VNNI: u32 = 1 << 11;
    pub const AVX512_BITALG: u32 = 1 << 12;
    /// Total memory encryption.
    pub const TME: u32 = 1 << 13;
    pub const AVX512_VPOPCNTDQ: u32 = 1 << 14;
    /// 5-level paging.
    pub const LA57: u32 = 1 << 16;
    pub const RDPID: u32 = 1 << 22;
    /// Key locker.
    pub const KEY_LOCKER: u32 = 1 << 23;
    pub const BUS_LOCK_DETECT: u32 = 1 << 24;
    pub const CLDEMOTE: u32 = 1 << 25;
    pub const MOVDIRI: u32 = 1 << 27;
    pub const MOVDIR64B: u32 = 1 << 28;
    /// ENQCMD (IA32_PASID).
    pub const ENQCMD: u32 = 1 << 29;
    /// SGX launch configuration.
    pub const SGX_LC: u32 = 1 << 30;
    /// Protection keys for supervisor pages (IA32_PKRS).
    pub const PKS: u32 = 1 << 31;
}

/// CPUID.(7,0):EDX.
pub mod leaf7_edx {
    pub const AVX512_4VNNIW: u32 = 1 << 2;
    pub const AVX512_4FMAPS: u32 = 1 << 3;
    /// Fast short REP MOV.
    pub const FSRM: u32 = 1 << 4;
    /// User interrupts.
    pub const UINTR: u32 = 1 << 5;
    pub const AVX512_VP2INTERSECT: u32 = 1 << 8;
    /// IA32_MCU_OPT_CTRL.
    pub const SRBDS_CTRL: u32 = 1 << 9;
    /// VERW clears the CPU buffers (MDS mitigation).
    pub const MD_CLEAR: u32 = 1 << 10;
    /// IA32_TSX_FORCE_ABORT.
    pub const TSX_FORCE_ABORT: u32 = 1 << 13;
    pub const SERIALIZE: u32 = 1 << 14;
    /// Hybrid part: would contradict the uniform topology the guest sees.
    pub const HYBRID: u32 = 1 << 15;
    pub const PCONFIG: u32 = 1 << 18;
    pub const ARCH_LBR: u32 = 1 << 19;
    /// CET indirect-branch tracking.
    pub const CET_IBT: u32 = 1 << 20;
    pub const AMX_BF16: u32 = 1 << 22;
    pub const AVX512_FP16: u32 = 1 << 23;
    pub const AMX_TILE: u32 = 1 << 24;
    pub const AMX_INT8: u32 = 1 << 25;
    /// IA32_SPEC_CTRL.IBRS and IA32_PRED_CMD.IBPB.
    pub const IBRS_IBPB: u32 = 1 << 26;
    /// IA32_SPEC_CTRL.STIBP.
    pub const STIBP: u32 = 1 << 27;
    /// IA32_FLUSH_CMD.L1D_FLUSH.
    pub const L1D_FLUSH: u32 = 1 << 28;
    /// IA32_ARCH_CAPABILITIES.
    pub const ARCH_CAPABILITIES: u32 = 1 << 29;
    /// IA32_CORE_CAPABILITIES.
    pub const CORE_CAPABILITIES: u32 = 1 << 30;
    /// IA32_SPEC_CTRL.SSBD.
    pub const SSBD: u32 = 1 << 31;
}

/// CPUID.(7,1):EAX.
pub mod leaf7_1_eax {
    pub const AVX_VNNI: u32 = 1 << 4;
    pub const AVX512_BF16: u32 = 1 << 5;
    /// Fast zero-length REP MOVSB.
    pub const FZLRM: u32 = 1 << 10;
    /// Fast short REP STOSB.
    pub const FSRS: u32 = 1 << 11;
    /// Fast short REP CMPSB/SCASB.
    pub const FSRCS: u32 = 1 << 12;
}

/// CPUID.(0xD,1):EAX.
pub mod leaf_d_1_eax {
    pub const XSAVEOPT: u32 = 1 << 0;
    pub const XSAVEC: u32 = 1 << 1;
    /// XGETBV with ECX = 1 (XINUSE).
    pub const XGETBV1: u32 = 1 << 2;
    /// XSAVES/XRSTORS and IA32_XSS: supervisor state is not offered.
    pub const XSAVES: u32 = 1 << 3;
    /// Extended feature disable (IA32_XFD).
    pub const XFD: u32 = 1 << 4;
}

/// The XSAVE state components (bit numbers of XCR0 and IA32_XSS).
pub mod xstate {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    /// The upper halves of YMM0-15.
    pub const AVX: u64 = 1 << 2;
    pub const MPX_BNDREGS: u64 = 1 << 3;
    pub const MPX_BNDCSR: u64 = 1 << 4;
    /// AVX-512 opmask registers k0-7.
    pub const OPMASK: u64 = 1 << 5;
    /// The upper halves of ZMM0-15.
    pub const ZMM_HI256: u64 = 1 << 6;
    /// ZMM16-31.
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const PKRU: u64 = 1 << 9;
    /// Every AVX-512 component: XCR0 enables them together or not at all.
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// CPUID.0x80000001:ECX.
pub mod ext1_ecx {
    /// LAHF/SAHF in 64-bit mode.
    pub const LAHF_LM: u32 = 1 << 0;
    /// AMD's secure virtual machine: never on an Intel guest.
    pub const SVM: u32 = 1 << 2;
    pub const LZCNT: u32 = 1 << 5;
    pub const PREFETCHW: u32 = 1 << 8;
}

/// CPUID.0x80000001:EDX.
pub mod ext1_edx {
    pub const SYSCALL: u32 = 1 << 11;
    /// Execute disable (EFER.NXE).
    pub const NX: u32 = 1 << 20;
    pub const PAGE_1GB: u32 = 1 << 26;
    pub const RDTSCP: u32 = 1 << 27;
    /// Intel 64 (EFER.LME).
    pub const LM: u32 = 1 << 29;
}

/// CPUID.0x80000007:EDX.
pub mod ext7_edx {
    /// The TSC runs at a constant rate in every P-, C- and T-state.
    pub const INVARIANT_TSC: u32 = 1 << 8;
}
