//! Basic exit reasons (SDM appendix C) and the 32-bit exit-reason field
//! (SDM 25.9.1).

use core::fmt;

/// Declares the exit reasons, their numbers and their appendix C names
/// from one table.
macro_rules! exit_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $name:literal; )*) => {
        /// A basic exit reason, bits 15:0 of the exit-reason field. Variants
        /// map 1:1 to the numbers of SDM appendix C; numbers the appendix
        /// leaves unused (35, 38, 42, 71, ...) have no variant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum ExitReason {
            $(
                $(#[$doc])*
                $variant = $number,
            )*
        }

        impl ExitReason {
            /// Every exit reason, in number order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The exit reason with this number, if appendix C defines one.
            pub const fn from_number(number: u16) -> Option<Self> {
                match number {
                    $($number => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The appendix C name, e.g. "EPT violation".
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

exit_reasons! {
    /// An exception or NMI arrived and the exception bitmap or NMI exiting
    /// asked for an exit.
    ExceptionOrNmi = 0, "exception or non-maskable interrupt (NMI)";
    /// An external interrupt arrived with external-interrupt exiting set.
    ExternalInterrupt = 1, "external interrupt";
    /// The guest triple-faulted.
    TripleFault = 2, "triple fault";
    /// An INIT signal arrived.
    InitSignal = 3, "INIT signal";
    /// A start-up IPI arrived while the guest waited for one.
    StartupIpi = 4, "start-up IPI (SIPI)";
    /// An SMI arrived right after an I/O instruction (dual-monitor SMM).
    IoSmi = 5, "I/O system-management interrupt (SMI)";
    /// Any other SMI arrived (dual-monitor SMM).
    OtherSmi = 6, "other SMI";
    /// Interrupt-window exiting: the guest can now take an interrupt.
    InterruptWindow = 7, "interrupt window";
    /// NMI-window exiting: the guest can now take an NMI.
    NmiWindow = 8, "NMI window";
    /// The guest attempted a task switch.
    TaskSwitch = 9, "task switch";
    /// CPUID, which always exits.
    Cpuid = 10, "CPUID";
    /// GETSEC, which always exits.
    Getsec = 11, "GETSEC";
    /// HLT with HLT exiting set.
    Hlt = 12, "HLT";
    /// INVD, which always exits.
    Invd = 13, "INVD";
    /// INVLPG with INVLPG exiting set.
    Invlpg = 14, "INVLPG";
    /// RDPMC with RDPMC exiting set.
    Rdpmc = 15, "RDPMC";
    /// RDTSC with RDTSC exiting set.
    Rdtsc = 16, "RDTSC";
    /// RSM in SMM (dual-monitor SMM).
    Rsm = 17, "RSM";
    /// VMCALL, which always exits from non-root operation.
    Vmcall = 18, "VMCALL";
    /// VMCLEAR in the guest.
    Vmclear = 19, "VMCLEAR";
    /// VMLAUNCH in the guest.
    Vmlaunch = 20, "VMLAUNCH";
    /// VMPTRLD in the guest.
    Vmptrld = 21, "VMPTRLD";
    /// VMPTRST in the guest.
    Vmptrst = 22, "VMPTRST";
    /// VMREAD in the guest (not satisfied by a shadow VMCS).
    Vmread = 23, "VMREAD";
    /// VMRESUME in the guest.
    Vmresume = 24, "VMRESUME";
    /// VMWRITE in the guest (not satisfied by a shadow VMCS).
    Vmwrite = 25, "VMWRITE";
    /// VMXOFF in the guest.
    Vmxoff = 26, "VMXOFF";
    /// VMXON in the guest.
    Vmxon = 27, "VMXON";
    /// MOV to/from CR0, CR3, CR4 or CR8, CLTS or LMSW ([`CrAccess`](super::CrAccess)).
    ControlRegisterAccess = 28, "control-register access";
    /// MOV DR with MOV-DR exiting set.
    MovDr = 29, "MOV DR";
    /// IN, OUT, INS or OUTS ([`IoInstruction`](super::IoInstruction)).
    IoInstruction = 30, "I/O instruction";
    /// RDMSR of an intercepted MSR.
    Rdmsr = 31, "RDMSR";
    /// WRMSR of an intercepted MSR.
    Wrmsr = 32, "WRMSR";
    /// VM entry failed its checks on the guest-state area.
    EntryFailureInvalidGuestState = 33, "VM-entry failure due to invalid guest state";
    /// VM entry failed while loading an MSR from the MSR-load list.
    EntryFailureMsrLoading = 34, "VM-entry failure due to MSR loading";
    /// MWAIT with MWAIT exiting set.
    Mwait = 36, "MWAIT";
    /// The monitor trap flag fired after a guest instruction.
    MonitorTrapFlag = 37, "monitor trap flag";
    /// MONITOR with MONITOR exiting set.
    Monitor = 39, "MONITOR";
    /// PAUSE with PAUSE exiting, or a PAUSE loop with PAUSE-loop exiting.
    Pause = 40, "PAUSE";
    /// A machine-check event during VM entry.
    EntryFailureMachineCheck = 41, "VM-entry failure due to machine-check event";
    /// The virtual TPR dropped below the TPR threshold.
    TprBelowThreshold = 43, "TPR below threshold";
    /// An access to the APIC-access page.
    ApicAccess = 44, "APIC access";
    /// EOI virtualization of a vector in the EOI-exit bitmap.
    VirtualizedEoi = 45, "virtualized EOI";
    /// LGDT, LIDT, SGDT or SIDT with descriptor-table exiting set.
    GdtrOrIdtrAccess = 46, "access to GDTR or IDTR";
    /// LLDT, LTR, SLDT or STR with descriptor-table exiting set.
    LdtrOrTrAccess = 47, "access to LDTR or TR";
    /// An access EPT does not permit ([`EptViolation`](super::EptViolation)).
    EptViolation = 48, "EPT violation";
    /// An EPT entry is misconfigured.
    EptMisconfiguration = 49, "EPT misconfiguration";
    /// INVEPT in the guest.
    Invept = 50, "INVEPT";
    /// RDTSCP with RDTSC exiting set.
    Rdtscp = 51, "RDTSCP";
    /// The VMX-preemption timer counted down to zero.
    PreemptionTimerExpired = 52, "VMX-preemption timer expired";
    /// INVVPID in the guest.
    Invvpid = 53, "INVVPID";
    /// WBINVD or WBNOINVD with WBINVD exiting set.
    WbinvdOrWbnoinvd = 54, "WBINVD or WBNOINVD";
    /// XSETBV, which always exits.
    Xsetbv = 55, "XSETBV";
    /// A write to the virtual-APIC page that needs emulation.
    ApicWrite = 56, "APIC write";
    /// RDRAND with RDRAND exiting set.
    Rdrand = 57, "RDRAND";
    /// INVPCID with INVLPG exiting set.
    Invpcid = 58, "INVPCID";
    /// VMFUNC of a disabled function or with invalid input.
    Vmfunc = 59, "VMFUNC";
    /// ENCLS of a leaf in the ENCLS-exiting bitmap.
    Encls = 60, "ENCLS";
    /// RDSEED with RDSEED exiting set.
    Rdseed = 61, "RDSEED";
    /// The page-modification log is full.
    PageModificationLogFull = 62, "page-modification log full";
    /// XSAVES of a component in the XSS-exiting bitmap.
    Xsaves = 63, "XSAVES";
    /// XRSTORS of a component in the XSS-exiting bitmap.
    Xrstors = 64, "XRSTORS";
    /// PCONFIG of a leaf in the PCONFIG-exiting bitmap.
    Pconfig = 65, "PCONFIG";
    /// An SPP miss or misconfiguration.
    SppRelatedEvent = 66, "SPP-related event";
    /// UMWAIT with RDTSC exiting set.
    Umwait = 67, "UMWAIT";
    /// TPAUSE with RDTSC exiting set.
    Tpause = 68, "TPAUSE";
    /// LOADIWKEY with LOADIWKEY exiting set.
    Loadiwkey = 69, "LOADIWKEY";
    /// ENCLV of a leaf in the ENCLV-exiting bitmap.
    Enclv = 70, "ENCLV";
    /// ENQCMD could not translate its PASID.
    EnqcmdPasidTranslationFailure = 72, "ENQCMD PASID translation failure";
    /// ENQCMDS could not translate its PASID.
    EnqcmdsPasidTranslationFailure = 73, "ENQCMDS PASID translation failure";
    /// The guest acquired a bus lock.
    BusLock = 74, "bus lock";
    /// An instruction ran past the instruction timeout.
    InstructionTimeout = 75, "instruction timeout";
    /// SEAMCALL in the guest.
    Seamcall = 76, "SEAMCALL";
    /// TDCALL in the guest.
    Tdcall = 77, "TDCALL";
    /// RDMSRLIST in the guest.
    Rdmsrlist = 78, "RDMSRLIST";
    /// WRMSRLIST in the guest.
    Wrmsrlist = 79, "WRMSRLIST";
}

impl ExitReason {
    /// The basic-exit-reason number.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// An exit for one of the VMX instructions (VMCALL, VMCLEAR, VMLAUNCH,
    /// VMPTRLD, VMPTRST, VMREAD, VMRESUME, VMWRITE, VMXOFF, VMXON, INVEPT,
    /// INVVPID, VMFUNC): in VMX non-root operation they always exit.
    pub const fn is_vmx_instruction(self) -> bool {
        matches!(
            self,
            Self::Vmcall
                | Self::Vmclear
                | Self::Vmlaunch
                | Self::Vmptrld
                | Self::Vmptrst
                | Self::Vmread
                | Self::Vmresume
                | Self::Vmwrite
                | Self::Vmxoff
                | Self::Vmxon
                | Self::Invept
                | Self::Invvpid
                | Self::Vmfunc
        )
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A basic exit reason that appendix C does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownExitReason(pub u16);

impl fmt::Display for UnknownExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown exit reason {}", self.0)
    }
}

impl TryFrom<u16> for ExitReason {
    type Error = UnknownExitReason;

    fn try_from(number: u16) -> Result<Self, Self::Error> {
        Self::from_number(number).ok_or(UnknownExitReason(number))
    }
}

impl From<ExitReason> for u16 {
    fn from(reason: ExitReason) -> u16 {
        reason.number()
    }
}

/// The 32-bit exit-reason VMCS field (SDM 25.9.1, table 25-18).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitReasonField(pub u32);

impl ExitReasonField {
    /// Bit 26: a bus lock was asserted while the guest ran (bus-lock detection).
    pub const BUS_LOCK_DETECTED: u32 = 1 << 26;
    /// Bit 27: the exit was incident to enclave mode.
    pub const ENCLAVE_MODE: u32 = 1 << 27;
    /// Bit 28: an MTF exit was pending (SMM exits only).
    pub const PENDING_MTF: u32 = 1 << 28;
    /// Bit 29: the exit came from VMX root operation (SMM exits only).
    pub const FROM_VMX_ROOT: u32 = 1 << 29;
    /// Bit 31: VM entry failed; the basic reason says why.
    pub const ENTRY_FAILURE: u32 = 1 << 31;

    /// The field for a plain exit with `reason`, e.g. to report an exit to
    /// a guest hypervisor.
    pub const fn from_reason(reason: ExitReason) -> Self {
        Self(reason as u32)
    }

    /// The field for a failed VM entry with `reason` (33, 34 or 41).
    pub const fn entry_failure(reason: ExitReason) -> Self {
        Self(reason as u32 | Self::ENTRY_FAILURE)
    }

    /// The basic exit reason number, bits 15:0.
    pub const fn basic(self) -> u16 {
        self.0 as u16
    }

    /// The basic exit reason, if appendix C defines it.
    pub fn reason(self) -> Result<ExitReason, UnknownExitReason> {
        ExitReason::try_from(self.basic())
    }

    /// Whether a bus lock was detected (bit 26).
    pub const fn bus_lock_detected(self) -> bool {
        self.0 & Self::BUS_LOCK_DETECTED != 0
    }

    /// Whether the exit was incident to enclave mode (bit 27).
    pub const fn enclave_mode(self) -> bool {
        self.0 & Self::ENCLAVE_MODE != 0
    }

    /// Whether an MTF VM exit was pending (bit 28).
    pub const fn pending_mtf(self) -> bool {
        self.0 & Self::PENDING_MTF != 0
    }

    /// Whether the exit came from VMX root operation (bit 29).
    pub const fn from_vmx_root(self) -> bool {
        self.0 & Self::FROM_VMX_ROOT != 0
    }

    /// Whether this reports a failed VM entry (bit 31).
    pub const fn is_entry_failure(self) -> bool {
        self.0 & Self::ENTRY_FAILURE != 0
    }
}

impl fmt::Debug for ExitReasonField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExitReasonField({:#010x}: ", self.0)?;
        match self.reason() {
            Ok(reason) => f.write_str(reason.name())?,
            Err(unknown) => write!(f, "{unknown}")?,
        }
        let flags = [
            (self.is_entry_failure(), ", entry failure"),
            (self.bus_lock_detected(), ", bus lock"),
            (self.enclave_mode(), ", enclave mode"),
            (self.pending_mtf(), ", pending MTF"),
            (self.from_vmx_root(), ", from VMX root"),
        ];
        for (_, text) in flags.iter().filter(|(set, _)| *set) {
            f.write_str(text)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::format;
    use std::string::ToString;

    #[test]
    fn numbers_match_appendix_c() {
        let expected = [
            (ExitReason::ExceptionOrNmi, 0),
            (ExitReason::ExternalInterrupt, 1),
            (ExitReason::TripleFault, 2),
            (ExitReason::Cpuid, 10),
            (ExitReason::Hlt, 12),
            (ExitReason::Vmcall, 18),
            (ExitReason::Vmclear, 19),
            (ExitReason::Vmlaunch, 20),
            (ExitReason::Vmptrld, 21),
            (ExitReason::Vmptrst, 22),
            (ExitReason::Vmread, 23),
            (ExitReason::Vmresume, 24),
            (ExitReason::Vmwrite, 25),
            (ExitReason::Vmxoff, 26),
            (ExitReason::Vmxon, 27),
            (ExitReason::ControlRegisterAccess, 28),
            (ExitReason::IoInstruction, 30),
            (ExitReason::Rdmsr, 31),
            (ExitReason::Wrmsr, 32),
            (ExitReason::EntryFailureInvalidGuestState, 33),
            (ExitReason::EntryFailureMsrLoading, 34),
            (ExitReason::MonitorTrapFlag, 37),
            (ExitReason::EntryFailureMachineCheck, 41),
            (ExitReason::EptViolation, 48),
            (ExitReason::EptMisconfiguration, 49),
            (ExitReason::Invept, 50),
            (ExitReason::Rdtscp, 51),
            (ExitReason::PreemptionTimerExpired, 52),
            (ExitReason::Invvpid, 53),
            (ExitReason::WbinvdOrWbnoinvd, 54),
            (ExitReason::Xsetbv, 55),
            (ExitReason::ApicWrite, 56),
            (ExitReason::Rdrand, 57),
            (ExitReason::Invpcid, 58),
            (ExitReason::Vmfunc, 59),
            (ExitReason::Encls, 60),
            (ExitReason::Rdseed, 61),
            (ExitReason::PageModificationLogFull, 62),
            (ExitReason::Xsaves, 63),
            (ExitReason::Xrstors, 64),
            (ExitReason::SppRelatedEvent, 66),
            (ExitReason::Umwait, 67),
            (ExitReason::Tpause, 68),
            (ExitReason::Loadiwkey, 69),
        ];
        for (reason, number) in expected {
            assert_eq!(reason.number(), number, "{reason:?}");
            assert_eq!(ExitReason::try_from(number), Ok(reason));
        }
    }

    #[test]
    fn every_number_up_to_79_is_defined_except_the_unused_ones() {
        let unused = [35u16, 38, 42, 71];
        for number in 0..=79u16 {
            let decoded = ExitReason::try_from(number);
            if unused.contains(&number) {
                assert_eq!(decoded, Err(UnknownExitReason(number)));
            } else {
                assert_eq!(decoded.unwrap().number(), number);
            }
        }
        assert_eq!(ExitReason::ALL.len(), 80 - unused.len());
        assert!(ExitReason::try_from(80).is_err());
        assert!(ExitReason::try_from(u16::MAX).is_err());
    }

    #[test]
    fn names_are_unique() {
        let names: BTreeSet<&str> = ExitReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), ExitReason::ALL.len());
        assert_eq!(ExitReason::EptViolation.to_string(), "EPT violation");
        assert_eq!(ExitReason::PreemptionTimerExpired.name(), "VMX-preemption timer expired");
        assert_eq!(UnknownExitReason(35).to_string(), "unknown exit reason 35");
    }

    #[test]
    fn exit_reason_field_decodes_table_25_18() {
        // An EPT violation: basic reason 48, no flags.
        let ept = ExitReasonField(48);
        assert_eq!(ept.basic(), 48);
        assert_eq!(ept.reason(), Ok(ExitReason::EptViolation));
        assert!(!ept.is_entry_failure());

        // VM entry failed on invalid guest state: 0x8000_0021.
        let failed = ExitReasonField(0x8000_0021);
        assert!(failed.is_entry_failure());
        assert_eq!(failed.reason(), Ok(ExitReason::EntryFailureInvalidGuestState));
        assert_eq!(ExitReasonField::entry_failure(ExitReason::EntryFailureInvalidGuestState), failed);

        // Bits 26-29 are independent flags above the basic reason.
        let flagged = ExitReasonField(0x3c00_0001);
        assert_eq!(flagged.reason(), Ok(ExitReason::ExternalInterrupt));
        assert!(flagged.bus_lock_detected());
        assert!(flagged.enclave_mode());
        assert!(flagged.pending_mtf());
        assert!(flagged.from_vmx_root());
        assert!(!flagged.is_entry_failure());

        assert_eq!(ExitReasonField(0xffff).reason(), Err(UnknownExitReason(0xffff)));
        assert_eq!(ExitReasonField::from_reason(ExitReason::Vmcall).0, 18);
    }

    #[test]
    fn exit_reason_field_debug_names_the_reason() {
        assert_eq!(
            format!("{:?}", ExitReasonField(0x8000_0022)),
            "ExitReasonField(0x80000022: VM-entry failure due to MSR loading, entry failure)"
        );
        assert_eq!(format!("{:?}", ExitReasonField(71)), "ExitReasonField(0x00000047: unknown exit reason 71)");
    }
}
