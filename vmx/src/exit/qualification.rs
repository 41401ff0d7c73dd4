//! Exit qualifications of the exits a hypervisor handles most (SDM 28.2.1):
//! control-register accesses (table 28-3), I/O instructions (table 28-5)
//! and EPT violations (table 28-7).

/// A general-purpose register as exit qualifications and VM-exit
/// instruction information number them (0 = RAX ... 15 = R15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum GeneralRegister {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl GeneralRegister {
    const IN_NUMBER_ORDER: [Self; 16] = [
        Self::Rax,
        Self::Rcx,
        Self::Rdx,
        Self::Rbx,
        Self::Rsp,
        Self::Rbp,
        Self::Rsi,
        Self::Rdi,
        Self::R8,
        Self::R9,
        Self::R10,
        Self::R11,
        Self::R12,
        Self::R13,
        Self::R14,
        Self::R15,
    ];

    /// The register numbered by the low four bits of `number`.
    pub const fn from_number(number: u8) -> Self {
        Self::IN_NUMBER_ORDER[(number & 0xf) as usize]
    }

    /// The register's number.
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// The exit qualification of a control-register access (table 28-3).
///
/// | bits  | meaning                                                     |
/// |-------|-------------------------------------------------------------|
/// | 3:0   | control register (0 for CLTS and LMSW)                      |
/// | 5:4   | access type: 0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW     |
/// | 6     | LMSW operand: 0 register, 1 memory                          |
/// | 11:8  | general-purpose register of MOV CR                          |
/// | 31:16 | LMSW source data                                            |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrAccess {
    /// MOV to CRn from a general-purpose register.
    MovToCr {
        /// The control register written.
        cr: u8,
        /// The register holding the new value.
        source: GeneralRegister,
    },
    /// MOV from CRn to a general-purpose register.
    MovFromCr {
        /// The control register read.
        cr: u8,
        /// The register receiving the value.
        destination: GeneralRegister,
    },
    /// CLTS, which clears CR0.TS.
    Clts,
    /// LMSW, which loads CR0 bits 3:0.
    Lmsw {
        /// The 16-bit operand.
        source_data: u16,
        /// Whether the operand came from memory; its linear address is then
        /// in the guest-linear address field.
        memory_operand: bool,
    },
}

impl CrAccess {
    /// Decodes the exit qualification.
    pub const fn decode(qualification: u64) -> Self {
        let cr = (qualification & 0xf) as u8;
        let register = GeneralRegister::from_number((qualification >> 8) as u8);
        match (qualification >> 4) & 0b11 {
            0 => Self::MovToCr { cr, source: register },
            1 => Self::MovFromCr { cr, destination: register },
            2 => Self::Clts,
            _ => {
                Self::Lmsw { source_data: (qualification >> 16) as u16, memory_operand: qualification & (1 << 6) != 0 }
            }
        }
    }

    /// Encodes the exit qualification, e.g. to reflect the exit to a guest
    /// hypervisor.
    pub const fn encode(self) -> u64 {
        match self {
            Self::MovToCr { cr, source } => (cr as u64 & 0xf) | (source.number() as u64) << 8,
            Self::MovFromCr { cr, destination } => (cr as u64 & 0xf) | 1 << 4 | (destination.number() as u64) << 8,
            Self::Clts => 2 << 4,
            Self::Lmsw { source_data, memory_operand } => {
                3 << 4 | (memory_operand as u64) << 6 | (source_data as u64) << 16
            }
        }
    }
}

/// Which way an I/O instruction moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDirection {
    /// OUT or OUTS: to the port.
    Out,
    /// IN or INS: from the port.
    In,
}

/// The exit qualification of an I/O instruction (table 28-5).
///
/// | bits  | meaning                                      |
/// |-------|----------------------------------------------|
/// | 2:0   | size: 0 one byte, 1 two bytes, 3 four bytes  |
/// | 3     | direction: 0 OUT, 1 IN                       |
/// | 4     | string instruction (INS, OUTS)               |
/// | 5     | REP prefix                                   |
/// | 6     | operand: 0 DX, 1 immediate                   |
/// | 31:16 | port number                                  |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoInstruction {
    /// Access size in bytes: 1, 2 or 4.
    pub size: u8,
    /// IN or OUT.
    pub direction: IoDirection,
    /// INS or OUTS rather than IN or OUT.
    pub string: bool,
    /// REP-prefixed (string instructions only).
    pub rep: bool,
    /// The port was an immediate operand rather than DX.
    pub immediate_port: bool,
    /// The port number.
    pub port: u16,
}

impl IoInstruction {
    /// Decodes the exit qualification, or `None` for a size encoding the
    /// SDM does not define (2, 4–7).
    pub const fn decode(qualification: u64) -> Option<Self> {
        let size = match qualification & 0b111 {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => return None,
        };
        Some(Self {
            size,
            direction: if qualification & (1 << 3) != 0 { IoDirection::In } else { IoDirection::Out },
            string: qualification & (1 << 4) != 0,
            rep: qualification & (1 << 5) != 0,
            immediate_port: qualification & (1 << 6) != 0,
            port: (qualification >> 16) as u16,
        })
    }

    /// Encodes the exit qualification. A size other than 1, 2 or 4 encodes
    /// as 4 bytes.
    pub const fn encode(self) -> u64 {
        let size = match self.size {
            1 => 0,
            2 => 1,
            _ => 3,
        };
        size | (matches!(self.direction, IoDirection::In) as u64) << 3
            | (self.string as u64) << 4
            | (self.rep as u64) << 5
            | (self.immediate_port as u64) << 6
            | (self.port as u64) << 16
    }
}

/// The exit qualification of an EPT violation (table 28-7).
///
/// Bits 2:0 say what the access was, bits 6:3 what the EPT entries
/// allowed: their permissions ANDed across the walk. Bits 11:9 are only
/// meaningful when bits 7 and 8 are set and the CPU reports advanced
/// EPT-violation information (`IA32_VMX_EPT_VPID_CAP` bit 22).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EptViolation {
    /// Bit 0: the access was a data read.
    pub read: bool,
    /// Bit 1: the access was a data write.
    pub write: bool,
    /// Bit 2: the access was an instruction fetch.
    pub instruction_fetch: bool,
    /// Bit 3: the translation allowed reads.
    pub readable: bool,
    /// Bit 4: the translation allowed writes.
    pub writable: bool,
    /// Bit 5: the translation allowed execution (supervisor-mode execution
    /// with mode-based execute control).
    pub executable: bool,
    /// Bit 6: the translation allowed user-mode execution (mode-based
    /// execute control only).
    pub user_executable: bool,
    /// Bit 7: the guest-linear address field is valid.
    pub guest_linear_address_valid: bool,
    /// Bit 8: the access was to the translated linear address itself; clear
    /// when it was to a guest paging-structure entry.
    pub translated_access: bool,
    /// Bit 9: the linear address is a user-mode address.
    pub user_mode_address: bool,
    /// Bit 10: the linear address is writable in the guest's paging.
    pub writable_address: bool,
    /// Bit 11: the linear address is execute-disabled in the guest's paging.
    pub execute_disabled_address: bool,
    /// Bit 12: the fault occurred during an IRET that unblocked NMIs, so
    /// NMI blocking must be restored before re-entering the guest.
    pub nmi_unblocking_due_to_iret: bool,
    /// Bit 13: the access was a shadow-stack access.
    pub shadow_stack_access: bool,
}

impl EptViolation {
    /// Decodes the exit qualification.
    pub const fn decode(qualification: u64) -> Self {
        const fn bit(qualification: u64, n: u32) -> bool {
            qualification & (1 << n) != 0
        }
        Self {
            read: bit(qualification, 0),
            write: bit(qualification, 1),
            instruction_fetch: bit(qualification, 2),
            readable: bit(qualification, 3),
            writable: bit(qualification, 4),
            executable: bit(qualification, 5),
            user_executable: bit(qualification, 6),
            guest_linear_address_valid: bit(qualification, 7),
            translated_access: bit(qualification, 8),
            user_mode_address: bit(qualification, 9),
            writable_address: bit(qualification, 10),
            execute_disabled_address: bit(qualification, 11),
            nmi_unblocking_due_to_iret: bit(qualification, 12),
            shadow_stack_access: bit(qualification, 13),
        }
    }

    /// Encodes the exit qualification, e.g. to reflect a violation of a
    /// guest hypervisor's EPT.
    pub const fn encode(self) -> u64 {
        let bits = [
            self.read,
            self.write,
            self.instruction_fetch,
            self.readable,
            self.writable,
            self.executable,
            self.user_executable,
            self.guest_linear_address_valid,
            self.translated_access,
            self.user_mode_address,
            self.writable_address,
            self.execute_disabled_address,
            self.nmi_unblocking_due_to_iret,
            self.shadow_stack_access,
        ];
        let mut encoded = 0;
        let mut n = 0;
        while n < bits.len() {
            encoded |= (bits[n] as u64) << n;
            n += 1;
        }
        encoded
    }

    /// Whether the translation existed at all: an entry with none of read,
    /// write and execute permission is "not present".
    pub const fn was_present(self) -> bool {
        self.readable || self.writable || self.executable || self.user_executable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn general_registers_follow_table_28_3_numbering() {
        assert_eq!(GeneralRegister::from_number(0), GeneralRegister::Rax);
        assert_eq!(GeneralRegister::from_number(4), GeneralRegister::Rsp);
        assert_eq!(GeneralRegister::from_number(7), GeneralRegister::Rdi);
        assert_eq!(GeneralRegister::from_number(15), GeneralRegister::R15);
        for number in 0..16 {
            assert_eq!(GeneralRegister::from_number(number).number(), number);
        }
    }

    #[test]
    fn cr_access_decodes_table_28_3() {
        // mov cr3, rax: CR 3, type 0, register 0.
        assert_eq!(CrAccess::decode(0x0003), CrAccess::MovToCr { cr: 3, source: GeneralRegister::Rax });
        // mov rbx, cr8: CR 8, type 1, register 3.
        assert_eq!(CrAccess::decode(0x0318), CrAccess::MovFromCr { cr: 8, destination: GeneralRegister::Rbx });
        // mov cr4, r12.
        assert_eq!(CrAccess::decode(0x0c04), CrAccess::MovToCr { cr: 4, source: GeneralRegister::R12 });
        assert_eq!(CrAccess::decode(0x0020), CrAccess::Clts);
        // lmsw [mem] with source 0x0001.
        assert_eq!(CrAccess::decode(0x0001_0070), CrAccess::Lmsw { source_data: 1, memory_operand: true });
        // lmsw ax with source 0xfff0: register operand.
        assert_eq!(CrAccess::decode(0xfff0_0030), CrAccess::Lmsw { source_data: 0xfff0, memory_operand: false });
    }

    #[test]
    fn io_instruction_decodes_table_28_5() {
        // out 0x80, al: one byte, OUT, immediate port 0x80.
        assert_eq!(
            IoInstruction::decode(0x0080_0040),
            Some(IoInstruction {
                size: 1,
                direction: IoDirection::Out,
                string: false,
                rep: false,
                immediate_port: true,
                port: 0x80,
            })
        );
        // in eax, dx with DX = 0xcfc.
        assert_eq!(
            IoInstruction::decode(0x0cfc_000b),
            Some(IoInstruction {
                size: 4,
                direction: IoDirection::In,
                string: false,
                rep: false,
                immediate_port: false,
                port: 0xcfc,
            })
        );
        // rep outsw to port 0x1f0.
        assert_eq!(
            IoInstruction::decode(0x01f0_0031),
            Some(IoInstruction {
                size: 2,
                direction: IoDirection::Out,
                string: true,
                rep: true,
                immediate_port: false,
                port: 0x1f0,
            })
        );
        for undefined_size in [2, 4, 5, 6, 7] {
            assert_eq!(IoInstruction::decode(undefined_size), None);
        }
    }

    #[test]
    fn ept_violation_decodes_table_28_7() {
        // A write to a read-only page through a linear address: bits 1, 3,
        // 5, 7, 8.
        let violation = EptViolation::decode(0x1aa);
        assert!(violation.write && !violation.read && !violation.instruction_fetch);
        assert!(violation.readable && !violation.writable && violation.executable);
        assert!(violation.guest_linear_address_valid && violation.translated_access);
        assert!(violation.was_present());

        // An instruction fetch from a non-present page, during guest paging
        // (bit 8 clear), after an IRET that unblocked NMIs.
        let violation = EptViolation::decode(0x1084);
        assert!(violation.instruction_fetch);
        assert!(!violation.was_present());
        assert!(violation.guest_linear_address_valid && !violation.translated_access);
        assert!(violation.nmi_unblocking_due_to_iret);

        // Advanced information: user-mode, writable, execute-disabled, and
        // a shadow-stack access.
        let violation = EptViolation::decode(0x2e00);
        assert!(violation.user_mode_address);
        assert!(violation.writable_address);
        assert!(violation.execute_disabled_address);
        assert!(violation.shadow_stack_access);
        assert!(!violation.user_executable);

        assert!(EptViolation::decode(0x40).user_executable);
        assert_eq!(EptViolation::decode(0), EptViolation::default());
    }

    proptest! {
        #[test]
        fn cr_access_round_trips(qualification in any::<u64>()) {
            let access = CrAccess::decode(qualification);
            prop_assert_eq!(CrAccess::decode(access.encode()), access);
        }

        #[test]
        fn io_instruction_round_trips(qualification in any::<u64>()) {
            if let Some(io) = IoInstruction::decode(qualification) {
                // Only the defined bits survive.
                prop_assert_eq!(io.encode(), qualification & 0xffff_007f);
            }
        }

        #[test]
        fn ept_violation_round_trips(qualification in 0u64..(1 << 14)) {
            prop_assert_eq!(EptViolation::decode(qualification).encode(), qualification);
        }
    }
}
