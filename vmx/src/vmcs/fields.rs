//! The fields of SDM appendix B, one enum per appendix section.
//!
//! Variant names follow the field names of the SDM. Newer editions renamed
//! a few event fields ("VM-entry interruption-information" became
//! "injected-event identification", "IDT-vectoring information" became
//! "original-event identification"); the variants keep the long-established
//! names and the docs give both.

use super::{sealed, FieldInfo, FieldType, FieldWidth, VmcsField, VmcsReadable, VmcsWritable};

/// Declares one appendix B section: the enum, its name table, and its
/// width, type and access.
macro_rules! vmcs_group {
    (
        $(#[$group_doc:meta])*
        $group:ident: $section:literal, $width:ident, $field_type:ident, $value:ty, $access:ident;
        $(
            $(#[$field_doc:meta])*
            $field:ident = $encoding:literal, $name:literal;
        )*
    ) => {
        $(#[$group_doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum $group {
            $(
                $(#[$field_doc])*
                $field = $encoding,
            )*
        }

        impl $group {
            /// Every field of the section, in encoding order.
            pub const ALL: &'static [Self] = &[$(Self::$field),*];

            /// Every field of the section with its appendix B name.
            pub const FIELDS: &'static [FieldInfo] = &[$(FieldInfo::new($encoding, $name)),*];

            /// The encoding VMREAD and VMWRITE take.
            pub const fn encoding(self) -> u32 {
                self as u32
            }

            /// The name appendix B gives the field.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$field => $name,)*
                }
            }

            /// The field with this encoding, if the section has one.
            pub const fn from_encoding(encoding: u32) -> Option<Self> {
                match encoding {
                    $($encoding => Some(Self::$field),)*
                    _ => None,
                }
            }
        }

        impl sealed::Sealed for $group {}

        impl VmcsField for $group {
            const SECTION: &'static str = $section;
            const WIDTH: FieldWidth = FieldWidth::$width;
            const TYPE: FieldType = FieldType::$field_type;
            type Value = $value;

            fn encoding(self) -> u32 {
                self as u32
            }

            fn name(self) -> &'static str {
                $group::name(self)
            }
        }

        impl VmcsReadable for $group {}

        vmcs_group!(@access $access $group);
    };
    (@access writable $group:ident) => {
        impl VmcsWritable for $group {}
    };
    (@access read_only $group:ident) => {};
}

vmcs_group! {
    /// B.1.1 16-bit control fields.
    Control16: "B.1.1 16-bit control fields", Bits16, Control, u16, writable;
    /// Virtual-processor identifier (VPID); 0 is the host's.
    VirtualProcessorId = 0x0000, "Virtual-processor identifier (VPID)";
    /// Vector whose arrival posts interrupts instead of exiting.
    PostedInterruptNotificationVector = 0x0002, "Posted-interrupt notification vector";
    /// Index of the current EPTP in the EPTP list (for #VE and EPTP switching).
    EptpIndex = 0x0004, "EPTP index";
    /// HLAT prefix size.
    HlatPrefixSize = 0x0006, "HLAT prefix size";
    /// Last index of the PID-pointer table (IPI virtualization).
    LastPidPointerIndex = 0x0008, "Last PID-pointer index";
}

vmcs_group! {
    /// B.1.2 16-bit guest-state fields.
    Guest16: "B.1.2 16-bit guest-state fields", Bits16, GuestState, u16, writable;
    /// Guest ES selector.
    EsSelector = 0x0800, "Guest ES selector";
    /// Guest CS selector.
    CsSelector = 0x0802, "Guest CS selector";
    /// Guest SS selector.
    SsSelector = 0x0804, "Guest SS selector";
    /// Guest DS selector.
    DsSelector = 0x0806, "Guest DS selector";
    /// Guest FS selector.
    FsSelector = 0x0808, "Guest FS selector";
    /// Guest GS selector.
    GsSelector = 0x080a, "Guest GS selector";
    /// Guest LDTR selector.
    LdtrSelector = 0x080c, "Guest LDTR selector";
    /// Guest TR selector.
    TrSelector = 0x080e, "Guest TR selector";
    /// Guest interrupt status: RVI and SVI for virtual-interrupt delivery.
    InterruptStatus = 0x0810, "Guest interrupt status";
    /// Next entry of the page-modification log to fill.
    PmlIndex = 0x0812, "PML index";
    /// Guest user-interrupt notification vector.
    Uinv = 0x0814, "Guest UINV";
}

vmcs_group! {
    /// B.1.3 16-bit host-state fields.
    Host16: "B.1.3 16-bit host-state fields", Bits16, HostState, u16, writable;
    /// Host ES selector.
    EsSelector = 0x0c00, "Host ES selector";
    /// Host CS selector.
    CsSelector = 0x0c02, "Host CS selector";
    /// Host SS selector.
    SsSelector = 0x0c04, "Host SS selector";
    /// Host DS selector.
    DsSelector = 0x0c06, "Host DS selector";
    /// Host FS selector.
    FsSelector = 0x0c08, "Host FS selector";
    /// Host GS selector.
    GsSelector = 0x0c0a, "Host GS selector";
    /// Host TR selector.
    TrSelector = 0x0c0c, "Host TR selector";
}

vmcs_group! {
    /// B.2.1 64-bit control fields.
    Control64: "B.2.1 64-bit control fields", Bits64, Control, u64, writable;
    /// Physical address of I/O bitmap A (ports 0000–7FFF).
    IoBitmapA = 0x2000, "Address of I/O bitmap A";
    /// Physical address of I/O bitmap B (ports 8000–FFFF).
    IoBitmapB = 0x2002, "Address of I/O bitmap B";
    /// Physical address of the MSR bitmaps.
    MsrBitmaps = 0x2004, "Address of MSR bitmaps";
    /// Physical address of the MSRs a VM exit stores.
    ExitMsrStoreAddress = 0x2006, "VM-exit MSR-store address";
    /// Physical address of the MSRs a VM exit loads.
    ExitMsrLoadAddress = 0x2008, "VM-exit MSR-load address";
    /// Physical address of the MSRs a VM entry loads.
    EntryMsrLoadAddress = 0x200a, "VM-entry MSR-load address";
    /// Executive-VMCS pointer (dual-monitor treatment of SMM).
    ExecutiveVmcsPointer = 0x200c, "Executive-VMCS pointer";
    /// Physical address of the page-modification log.
    PmlAddress = 0x200e, "PML address";
    /// Added to the TSC the guest reads.
    TscOffset = 0x2010, "TSC offset";
    /// Physical address of the virtual-APIC page.
    VirtualApicAddress = 0x2012, "Virtual-APIC address";
    /// Physical address of the APIC-access page.
    ApicAccessAddress = 0x2014, "APIC-access address";
    /// Physical address of the posted-interrupt descriptor.
    PostedInterruptDescriptorAddress = 0x2016, "Posted-interrupt descriptor address";
    /// Which VM functions VMFUNC may invoke.
    VmFunctionControls = 0x2018, "VM-function controls";
    /// EPT pointer: root table, walk length, memory type, A/D enable.
    EptPointer = 0x201a, "EPT pointer (EPTP)";
    /// EOI-exit bitmap for vectors 0–63.
    EoiExitBitmap0 = 0x201c, "EOI-exit bitmap 0 (EOI_EXIT0)";
    /// EOI-exit bitmap for vectors 64–127.
    EoiExitBitmap1 = 0x201e, "EOI-exit bitmap 1 (EOI_EXIT1)";
    /// EOI-exit bitmap for vectors 128–191.
    EoiExitBitmap2 = 0x2020, "EOI-exit bitmap 2 (EOI_EXIT2)";
    /// EOI-exit bitmap for vectors 192–255.
    EoiExitBitmap3 = 0x2022, "EOI-exit bitmap 3 (EOI_EXIT3)";
    /// Physical address of the EPTP list for EPTP switching.
    EptpListAddress = 0x2024, "EPTP-list address";
    /// Physical address of the VMREAD bitmap (VMCS shadowing).
    VmreadBitmapAddress = 0x2026, "VMREAD-bitmap address";
    /// Physical address of the VMWRITE bitmap (VMCS shadowing).
    VmwriteBitmapAddress = 0x2028, "VMWRITE-bitmap address";
    /// Physical address of the #VE information area.
    VirtualizationExceptionInfoAddress = 0x202a, "Virtualization-exception information address";
    /// IA32_XSS bits whose XSAVES/XRSTORS exit.
    XssExitingBitmap = 0x202c, "XSS-exiting bitmap";
    /// ENCLS leaves that exit.
    EnclsExitingBitmap = 0x202e, "ENCLS-exiting bitmap";
    /// Sub-page-permission-table pointer (SPPTP).
    SubPagePermissionTablePointer = 0x2030, "Sub-page-permission-table pointer";
    /// Multiplier applied to the TSC the guest reads (TSC scaling).
    TscMultiplier = 0x2032, "TSC multiplier";
    /// Tertiary processor-based VM-execution controls.
    TertiaryControls = 0x2034, "Tertiary processor-based VM-execution controls";
    /// ENCLV leaves that exit.
    EnclvExitingBitmap = 0x2036, "ENCLV-exiting bitmap";
    /// Low PASID directory address (PASID translation).
    LowPasidDirectoryAddress = 0x2038, "Low PASID directory address";
    /// High PASID directory address (PASID translation).
    HighPasidDirectoryAddress = 0x203a, "High PASID directory address";
    /// SEAM shared EPT pointer.
    SeamSharedEptPointer = 0x203c, "SEAM shared EPT pointer";
    /// PCONFIG leaves that exit.
    PconfigExitingBitmap = 0x203e, "PCONFIG-exiting bitmap";
    /// Hypervisor-managed linear-address translation pointer (HLATP).
    HlatPointer = 0x2040, "Hypervisor-managed linear-address translation pointer (HLATP)";
    /// Physical address of the PID-pointer table (IPI virtualization).
    PidPointerTableAddress = 0x2042, "PID-pointer table address";
    /// Secondary VM-exit controls.
    SecondaryExitControls = 0x2044, "Secondary VM-exit controls";
    /// IA32_SPEC_CTRL bits the guest cannot change.
    Ia32SpecCtrlMask = 0x204a, "IA32_SPEC_CTRL mask";
    /// The IA32_SPEC_CTRL value the guest reads.
    Ia32SpecCtrlShadow = 0x204c, "IA32_SPEC_CTRL shadow";
    /// Event data delivered with an injected event (FRED).
    InjectedEventData = 0x2052, "Injected-event data";
}

vmcs_group! {
    /// B.2.2 64-bit read-only data fields.
    ReadOnly64: "B.2.2 64-bit read-only data fields", Bits64, ReadOnlyData, u64, read_only;
    /// The guest-physical address of an EPT violation or misconfiguration.
    GuestPhysicalAddress = 0x2400, "Guest-physical address";
    /// MSR data of an MSR-list instruction exit.
    MsrData = 0x2402, "MSR data";
    /// Event data of the event whose delivery was interrupted (FRED).
    OriginalEventData = 0x2404, "Original-event data";
}

vmcs_group! {
    /// B.2.3 64-bit guest-state fields.
    Guest64: "B.2.3 64-bit guest-state fields", Bits64, GuestState, u64, writable;
    /// VMCS link pointer: the shadow VMCS, or all ones.
    VmcsLinkPointer = 0x2800, "VMCS link pointer";
    /// Guest IA32_DEBUGCTL.
    Ia32Debugctl = 0x2802, "Guest IA32_DEBUGCTL";
    /// Guest IA32_PAT.
    Ia32Pat = 0x2804, "Guest IA32_PAT";
    /// Guest IA32_EFER.
    Ia32Efer = 0x2806, "Guest IA32_EFER";
    /// Guest IA32_PERF_GLOBAL_CTRL.
    Ia32PerfGlobalCtrl = 0x2808, "Guest IA32_PERF_GLOBAL_CTRL";
    /// Guest PDPTE0, used with EPT and PAE paging.
    Pdpte0 = 0x280a, "Guest PDPTE0";
    /// Guest PDPTE1.
    Pdpte1 = 0x280c, "Guest PDPTE1";
    /// Guest PDPTE2.
    Pdpte2 = 0x280e, "Guest PDPTE2";
    /// Guest PDPTE3.
    Pdpte3 = 0x2810, "Guest PDPTE3";
    /// Guest IA32_BNDCFGS.
    Ia32Bndcfgs = 0x2812, "Guest IA32_BNDCFGS";
    /// Guest IA32_RTIT_CTL.
    Ia32RtitCtl = 0x2814, "Guest IA32_RTIT_CTL";
    /// Guest IA32_LBR_CTL.
    Ia32LbrCtl = 0x2816, "Guest IA32_LBR_CTL";
    /// Guest IA32_PKRS.
    Ia32Pkrs = 0x2818, "Guest IA32_PKRS";
    /// Guest IA32_FRED_CONFIG.
    Ia32FredConfig = 0x281a, "Guest IA32_FRED_CONFIG";
    /// Guest IA32_FRED_RSP1.
    Ia32FredRsp1 = 0x281c, "Guest IA32_FRED_RSP1";
    /// Guest IA32_FRED_RSP2.
    Ia32FredRsp2 = 0x281e, "Guest IA32_FRED_RSP2";
    /// Guest IA32_FRED_RSP3.
    Ia32FredRsp3 = 0x2820, "Guest IA32_FRED_RSP3";
    /// Guest IA32_FRED_STKLVLS.
    Ia32FredStklvls = 0x2822, "Guest IA32_FRED_STKLVLS";
    /// Guest IA32_FRED_SSP1.
    Ia32FredSsp1 = 0x2824, "Guest IA32_FRED_SSP1";
    /// Guest IA32_FRED_SSP2.
    Ia32FredSsp2 = 0x2826, "Guest IA32_FRED_SSP2";
    /// Guest IA32_FRED_SSP3.
    Ia32FredSsp3 = 0x2828, "Guest IA32_FRED_SSP3";
}

vmcs_group! {
    /// B.2.4 64-bit host-state fields.
    Host64: "B.2.4 64-bit host-state fields", Bits64, HostState, u64, writable;
    /// Host IA32_PAT.
    Ia32Pat = 0x2c00, "Host IA32_PAT";
    /// Host IA32_EFER.
    Ia32Efer = 0x2c02, "Host IA32_EFER";
    /// Host IA32_PERF_GLOBAL_CTRL.
    Ia32PerfGlobalCtrl = 0x2c04, "Host IA32_PERF_GLOBAL_CTRL";
    /// Host IA32_PKRS.
    Ia32Pkrs = 0x2c06, "Host IA32_PKRS";
    /// Host IA32_FRED_CONFIG.
    Ia32FredConfig = 0x2c08, "Host IA32_FRED_CONFIG";
    /// Host IA32_FRED_RSP1.
    Ia32FredRsp1 = 0x2c0a, "Host IA32_FRED_RSP1";
    /// Host IA32_FRED_RSP2.
    Ia32FredRsp2 = 0x2c0c, "Host IA32_FRED_RSP2";
    /// Host IA32_FRED_RSP3.
    Ia32FredRsp3 = 0x2c0e, "Host IA32_FRED_RSP3";
    /// Host IA32_FRED_STKLVLS.
    Ia32FredStklvls = 0x2c10, "Host IA32_FRED_STKLVLS";
    /// Host IA32_FRED_SSP1.
    Ia32FredSsp1 = 0x2c12, "Host IA32_FRED_SSP1";
    /// Host IA32_FRED_SSP2.
    Ia32FredSsp2 = 0x2c14, "Host IA32_FRED_SSP2";
    /// Host IA32_FRED_SSP3.
    Ia32FredSsp3 = 0x2c16, "Host IA32_FRED_SSP3";
}

vmcs_group! {
    /// B.3.1 32-bit control fields.
    Control32: "B.3.1 32-bit control fields", Bits32, Control, u32, writable;
    /// Pin-based VM-execution controls ([`PinBasedControls`](crate::controls::PinBasedControls)).
    PinBasedControls = 0x4000, "Pin-based VM-execution controls";
    /// Primary processor-based VM-execution controls ([`PrimaryControls`](crate::controls::PrimaryControls)).
    PrimaryProcessorBasedControls = 0x4002, "Primary processor-based VM-execution controls";
    /// Exceptions that exit, one bit per vector.
    ExceptionBitmap = 0x4004, "Exception bitmap";
    /// Page-fault error-code mask.
    PageFaultErrorCodeMask = 0x4006, "Page-fault error-code mask";
    /// Page-fault error-code match.
    PageFaultErrorCodeMatch = 0x4008, "Page-fault error-code match";
    /// Number of CR3-target values in use.
    Cr3TargetCount = 0x400a, "CR3-target count";
    /// Primary VM-exit controls ([`ExitControls`](crate::controls::ExitControls)).
    ExitControls = 0x400c, "Primary VM-exit controls";
    /// Number of MSRs a VM exit stores.
    ExitMsrStoreCount = 0x400e, "VM-exit MSR-store count";
    /// Number of MSRs a VM exit loads.
    ExitMsrLoadCount = 0x4010, "VM-exit MSR-load count";
    /// VM-entry controls ([`EntryControls`](crate::controls::EntryControls)).
    EntryControls = 0x4012, "VM-entry controls";
    /// Number of MSRs a VM entry loads.
    EntryMsrLoadCount = 0x4014, "VM-entry MSR-load count";
    /// The event a VM entry injects; newer SDMs call it "injected-event
    /// identification".
    EntryInterruptionInfo = 0x4016, "VM-entry interruption-information field";
    /// Error code of the injected exception; newer SDMs call it
    /// "injected-event error code".
    EntryExceptionErrorCode = 0x4018, "VM-entry exception error code";
    /// Length of the instruction a software event injection skips.
    EntryInstructionLength = 0x401a, "VM-entry instruction length";
    /// TPR threshold for TPR-below-threshold exits.
    TprThreshold = 0x401c, "TPR threshold";
    /// Secondary processor-based VM-execution controls ([`SecondaryControls`](crate::controls::SecondaryControls)).
    SecondaryProcessorBasedControls = 0x401e, "Secondary processor-based VM-execution controls";
    /// Most TSC cycles between two PAUSEs of one loop.
    PleGap = 0x4020, "PLE_Gap";
    /// TSC cycles a PAUSE loop may run before it exits.
    PleWindow = 0x4022, "PLE_Window";
    /// Instruction-timeout control (notify window).
    InstructionTimeoutControl = 0x4024, "Instruction-timeout control";
    /// SEAM-guest KeyID.
    SeamGuestKeyId = 0x4026, "SEAM-guest KeyID";
}

vmcs_group! {
    /// B.3.2 32-bit read-only data fields.
    ReadOnly32: "B.3.2 32-bit read-only data fields", Bits32, ReadOnlyData, u32, read_only;
    /// Why the last VMX instruction failed ([`VmInstructionError`](crate::exit::VmInstructionError)).
    VmInstructionError = 0x4400, "VM-instruction error";
    /// Exit reason ([`ExitReasonField`](crate::exit::ExitReasonField)).
    ExitReason = 0x4402, "Exit reason";
    /// The event that caused the exit; newer SDMs call it "exiting-event
    /// identification".
    ExitInterruptionInfo = 0x4404, "VM-exit interruption information";
    /// Its error code; newer SDMs call it "exiting-event error code".
    ExitInterruptionErrorCode = 0x4406, "VM-exit interruption error code";
    /// The event whose delivery the exit interrupted; newer SDMs call it
    /// "original-event identification".
    IdtVectoringInfo = 0x4408, "IDT-vectoring information field";
    /// Its error code; newer SDMs call it "original-event error code".
    IdtVectoringErrorCode = 0x440a, "IDT-vectoring error code";
    /// Length of the instruction that caused the exit.
    ExitInstructionLength = 0x440c, "VM-exit instruction length";
    /// Operands of the instruction that caused the exit.
    ExitInstructionInfo = 0x440e, "VM-exit instruction information";
}

vmcs_group! {
    /// B.3.3 32-bit guest-state fields.
    Guest32: "B.3.3 32-bit guest-state fields", Bits32, GuestState, u32, writable;
    /// Guest ES limit.
    EsLimit = 0x4800, "Guest ES limit";
    /// Guest CS limit.
    CsLimit = 0x4802, "Guest CS limit";
    /// Guest SS limit.
    SsLimit = 0x4804, "Guest SS limit";
    /// Guest DS limit.
    DsLimit = 0x4806, "Guest DS limit";
    /// Guest FS limit.
    FsLimit = 0x4808, "Guest FS limit";
    /// Guest GS limit.
    GsLimit = 0x480a, "Guest GS limit";
    /// Guest LDTR limit.
    LdtrLimit = 0x480c, "Guest LDTR limit";
    /// Guest TR limit.
    TrLimit = 0x480e, "Guest TR limit";
    /// Guest GDTR limit.
    GdtrLimit = 0x4810, "Guest GDTR limit";
    /// Guest IDTR limit.
    IdtrLimit = 0x4812, "Guest IDTR limit";
    /// Guest ES access rights.
    EsAccessRights = 0x4814, "Guest ES access rights";
    /// Guest CS access rights.
    CsAccessRights = 0x4816, "Guest CS access rights";
    /// Guest SS access rights.
    SsAccessRights = 0x4818, "Guest SS access rights";
    /// Guest DS access rights.
    DsAccessRights = 0x481a, "Guest DS access rights";
    /// Guest FS access rights.
    FsAccessRights = 0x481c, "Guest FS access rights";
    /// Guest GS access rights.
    GsAccessRights = 0x481e, "Guest GS access rights";
    /// Guest LDTR access rights.
    LdtrAccessRights = 0x4820, "Guest LDTR access rights";
    /// Guest TR access rights.
    TrAccessRights = 0x4822, "Guest TR access rights";
    /// Blocking by STI, MOV SS, SMI and NMI.
    InterruptibilityState = 0x4824, "Guest interruptibility state";
    /// Active, HLT, shutdown or wait-for-SIPI.
    ActivityState = 0x4826, "Guest activity state";
    /// Guest SMBASE.
    Smbase = 0x4828, "Guest SMBASE";
    /// Guest IA32_SYSENTER_CS.
    Ia32SysenterCs = 0x482a, "Guest IA32_SYSENTER_CS";
    /// Remaining VMX-preemption timer value.
    PreemptionTimerValue = 0x482e, "VMX-preemption timer value";
}

vmcs_group! {
    /// B.3.4 32-bit host-state field.
    Host32: "B.3.4 32-bit host-state field", Bits32, HostState, u32, writable;
    /// Host IA32_SYSENTER_CS.
    Ia32SysenterCs = 0x4c00, "Host IA32_SYSENTER_CS";
}

vmcs_group! {
    /// B.4.1 natural-width control fields.
    ControlNatural: "B.4.1 natural-width control fields", Natural, Control, u64, writable;
    /// CR0 bits owned by the host: guest writes that change them exit.
    Cr0GuestHostMask = 0x6000, "CR0 guest/host mask";
    /// CR4 bits owned by the host.
    Cr4GuestHostMask = 0x6002, "CR4 guest/host mask";
    /// What the guest reads in host-owned CR0 bits.
    Cr0ReadShadow = 0x6004, "CR0 read shadow";
    /// What the guest reads in host-owned CR4 bits.
    Cr4ReadShadow = 0x6006, "CR4 read shadow";
    /// CR3-target value 0.
    Cr3TargetValue0 = 0x6008, "CR3-target value 0";
    /// CR3-target value 1.
    Cr3TargetValue1 = 0x600a, "CR3-target value 1";
    /// CR3-target value 2.
    Cr3TargetValue2 = 0x600c, "CR3-target value 2";
    /// CR3-target value 3.
    Cr3TargetValue3 = 0x600e, "CR3-target value 3";
}

vmcs_group! {
    /// B.4.2 natural-width read-only data fields.
    ReadOnlyNatural: "B.4.2 natural-width read-only data fields", Natural, ReadOnlyData, u64, read_only;
    /// Exit qualification: details of the exit, per exit reason.
    ExitQualification = 0x6400, "Exit qualification";
    /// RCX of an SMI that arrived right after an I/O instruction.
    IoRcx = 0x6402, "I/O RCX";
    /// RSI of an SMI that arrived right after an I/O instruction.
    IoRsi = 0x6404, "I/O RSI";
    /// RDI of an SMI that arrived right after an I/O instruction.
    IoRdi = 0x6406, "I/O RDI";
    /// RIP of an SMI that arrived right after an I/O instruction.
    IoRip = 0x6408, "I/O RIP";
    /// The guest-linear address of the access that caused the exit.
    GuestLinearAddress = 0x640a, "Guest-linear address";
}

vmcs_group! {
    /// B.4.3 natural-width guest-state fields.
    GuestNatural: "B.4.3 natural-width guest-state fields", Natural, GuestState, u64, writable;
    /// Guest CR0.
    Cr0 = 0x6800, "Guest CR0";
    /// Guest CR3.
    Cr3 = 0x6802, "Guest CR3";
    /// Guest CR4.
    Cr4 = 0x6804, "Guest CR4";
    /// Guest ES base.
    EsBase = 0x6806, "Guest ES base";
    /// Guest CS base.
    CsBase = 0x6808, "Guest CS base";
    /// Guest SS base.
    SsBase = 0x680a, "Guest SS base";
    /// Guest DS base.
    DsBase = 0x680c, "Guest DS base";
    /// Guest FS base.
    FsBase = 0x680e, "Guest FS base";
    /// Guest GS base.
    GsBase = 0x6810, "Guest GS base";
    /// Guest LDTR base.
    LdtrBase = 0x6812, "Guest LDTR base";
    /// Guest TR base.
    TrBase = 0x6814, "Guest TR base";
    /// Guest GDTR base.
    GdtrBase = 0x6816, "Guest GDTR base";
    /// Guest IDTR base.
    IdtrBase = 0x6818, "Guest IDTR base";
    /// Guest DR7.
    Dr7 = 0x681a, "Guest DR7";
    /// Guest RSP.
    Rsp = 0x681c, "Guest RSP";
    /// Guest RIP.
    Rip = 0x681e, "Guest RIP";
    /// Guest RFLAGS.
    Rflags = 0x6820, "Guest RFLAGS";
    /// Debug exceptions pending at the next instruction boundary.
    PendingDebugExceptions = 0x6822, "Guest pending debug exceptions";
    /// Guest IA32_SYSENTER_ESP.
    Ia32SysenterEsp = 0x6824, "Guest IA32_SYSENTER_ESP";
    /// Guest IA32_SYSENTER_EIP.
    Ia32SysenterEip = 0x6826, "Guest IA32_SYSENTER_EIP";
    /// Guest IA32_S_CET.
    Ia32SCet = 0x6828, "Guest IA32_S_CET";
    /// Guest shadow-stack pointer.
    Ssp = 0x682a, "Guest SSP";
    /// Guest IA32_INTERRUPT_SSP_TABLE_ADDR.
    Ia32InterruptSspTableAddr = 0x682c, "Guest IA32_INTERRUPT_SSP_TABLE_ADDR";
}

vmcs_group! {
    /// B.4.4 natural-width host-state fields.
    HostNatural: "B.4.4 natural-width host-state fields", Natural, HostState, u64, writable;
    /// Host CR0.
    Cr0 = 0x6c00, "Host CR0";
    /// Host CR3.
    Cr3 = 0x6c02, "Host CR3";
    /// Host CR4.
    Cr4 = 0x6c04, "Host CR4";
    /// Host FS base.
    FsBase = 0x6c06, "Host FS base";
    /// Host GS base.
    GsBase = 0x6c08, "Host GS base";
    /// Host TR base.
    TrBase = 0x6c0a, "Host TR base";
    /// Host GDTR base.
    GdtrBase = 0x6c0c, "Host GDTR base";
    /// Host IDTR base.
    IdtrBase = 0x6c0e, "Host IDTR base";
    /// Host IA32_SYSENTER_ESP.
    Ia32SysenterEsp = 0x6c10, "Host IA32_SYSENTER_ESP";
    /// Host IA32_SYSENTER_EIP.
    Ia32SysenterEip = 0x6c12, "Host IA32_SYSENTER_EIP";
    /// Host RSP.
    Rsp = 0x6c14, "Host RSP";
    /// Host RIP.
    Rip = 0x6c16, "Host RIP";
    /// Host IA32_S_CET.
    Ia32SCet = 0x6c18, "Host IA32_S_CET";
    /// Host shadow-stack pointer.
    Ssp = 0x6c1a, "Host SSP";
    /// Host IA32_INTERRUPT_SSP_TABLE_ADDR.
    Ia32InterruptSspTableAddr = 0x6c1c, "Host IA32_INTERRUPT_SSP_TABLE_ADDR";
}
