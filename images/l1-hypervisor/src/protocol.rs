//! What L1 and the L2 payload agree on: the VMCALL commands L2 issues (in
//! RAX), the values each side plants for the other to check, and the
//! layout of the mailbox L2's event handlers write. The payload's assembly
//! gets these numbers as `const` operands, so both sides use one definition.

/// VMCALL commands, in RAX.
pub mod command {
    /// The routine checked everything it could see and ends.
    pub const DONE: u64 = 1;
    /// A check inside L2 failed: RBX holds the step number, RCX the
    /// expected value, RDX the value L2 saw.
    pub const FAIL: u64 = 2;
    /// Every general register holds `REGISTER_PATTERN + n` (n below); L1
    /// checks them and answers with their complements.
    pub const REPORT_REGISTERS: u64 = 3;
    /// Inject #GP with error code `GP_ERROR_CODE` after this VMCALL.
    pub const INJECT_GP: u64 = 4;
    /// Inject external interrupt `INTERRUPT_VECTOR` after this VMCALL.
    pub const INJECT_INTERRUPT: u64 = 5;
    /// Point `L2_REMAPPED` at the other remap page and invalidate with INVEPT.
    pub const REMAP: u64 = 6;
}

/// The register-passing check: register n holds `REGISTER_PATTERN + n`,
/// with n = 1 RBX, 2 RCX, 3 RDX, 4 RSI, 5 RDI, 6 RBP, 8..15 R8..R15, and
/// CR2 holds `REGISTER_PATTERN + 16`.
pub const REGISTER_PATTERN: u64 = 0x4c32_5245_4700_0000;
pub const CR2_INDEX: u64 = 16;

/// The CPUID leaf and subleaf L2 asks for, and L1's distinctive answer
/// (EAX, EBX, ECX, EDX): "L1hv" "test" "case" "L2".
pub const CPUID_LEAF: u32 = 0x4c31_4856;
pub const CPUID_SUBLEAF: u32 = 7;
pub const CPUID_ANSWER: [u32; 4] = [0x7668_314c, 0x7473_6574, 0x6573_6163, 0x0000_324c];
/// CPUIDs the `cpuid-loop` check runs in L2, each answered by L1.
pub const CPUID_LOOP_COUNT: u32 = 500;

/// The I/O the `io` check performs, and L1's answers to the reads.
pub const OUT_BYTE_PORT: u16 = 0x80; // OUT imm8, AL
pub const OUT_BYTE_VALUE: u8 = 0x5a;
pub const IN_WORD_PORT: u16 = 0x1234; // IN AX, DX
pub const IN_WORD_ANSWER: u16 = 0xbeef;
pub const OUT_DWORD_PORT: u16 = 0x0510; // OUT DX, EAX
pub const OUT_DWORD_VALUE: u32 = 0xdead_c0de;
pub const IN_DWORD_PORT: u16 = 0x99; // IN EAX, imm8
pub const IN_DWORD_ANSWER: u32 = 0x1122_3344;

// IN EAX, imm8 and OUT imm8, AL take an 8-bit port.
const _: () = assert!(IN_DWORD_PORT <= 0xff && OUT_BYTE_PORT <= 0xff);

/// The events L1 injects.
pub const GP_ERROR_CODE: u32 = 0x2a8;
pub const INTERRUPT_VECTOR: u8 = 0x40;
/// L2's IDT has gates for vectors 0 to this one.
pub const LAST_VECTOR: u8 = INTERRUPT_VECTOR;
// A #GP error code is selector-shaped: 16 bits.
const _: () = assert!(GP_ERROR_CODE <= 0xffff);

/// What the EPT checks read and write.
pub const HOLE_OFFSET: u64 = 0x120; // L2 reads L2_EPT_HOLE + this
pub const FILL_PATTERN: u64 = 0x4c31_4649_4c4c_4544; // in FILL_PAGE at HOLE_OFFSET
pub const READ_ONLY_OFFSET: u64 = 0x80; // L2 writes L2_READ_ONLY + this
pub const WRITE_PATTERN: u64 = 0x4c32_5752_4954_5445;
pub const REMAP_PATTERN_A: u64 = 0x4c31_5041_4745_5f41; // first quadword of REMAP_PAGE_A
pub const REMAP_PATTERN_B: u64 = 0x4c31_5041_4745_5f42; // first quadword of REMAP_PAGE_B

/// Mailbox quadwords (offsets from L2_MAILBOX). L2's handlers count the
/// events they take and record the last one; L1 sets the timer flag.
pub mod mailbox {
    pub const EVENT_COUNT: u64 = 0x00;
    pub const EVENT_VECTOR: u64 = 0x08;
    pub const EVENT_ERROR_CODE: u64 = 0x10;
    pub const EVENT_RIP: u64 = 0x18;
    /// Nonzero: leave the preemption-timer spin loop.
    pub const STOP_SPINNING: u64 = 0x20;
}

/// The preemption-timer value for the spinning part of the timer check.
pub const TIMER_VALUE: u32 = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpuid_answer_spells_its_name() {
        let bytes: std::vec::Vec<u8> = CPUID_ANSWER.iter().flat_map(|word| word.to_le_bytes()).collect();
        assert_eq!(&bytes, b"L1hvtestcaseL2\0\0");
    }

    #[test]
    fn commands_are_distinct_and_patterns_fit_their_operands() {
        let commands = [
            command::DONE,
            command::FAIL,
            command::REPORT_REGISTERS,
            command::INJECT_GP,
            command::INJECT_INTERRUPT,
            command::REMAP,
        ];
        for (i, a) in commands.iter().enumerate() {
            assert!(commands[i + 1..].iter().all(|b| a != b));
        }
        // The patterns differ, so a stale read cannot pass for a fresh one.
        let patterns = [FILL_PATTERN, WRITE_PATTERN, REMAP_PATTERN_A, REMAP_PATTERN_B];
        for (i, a) in patterns.iter().enumerate() {
            assert!(patterns[i + 1..].iter().all(|b| a != b));
        }
    }
}
