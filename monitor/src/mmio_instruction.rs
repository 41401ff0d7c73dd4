//! Decoding the instruction behind an MMIO exit.
//!
//! An EPT violation on an emulated device page says which guest-physical
//! address was touched and whether it was a read or a write, but not the
//! value or the register: those are in the instruction, which the monitor
//! reads from guest memory and decodes here. Only the moves that drivers
//! use on device registers are accepted (Intel SDM vol. 2, "MOV" and
//! "MOVZX"):
//!
//! | bytes | form |
//! |---|---|
//! | 88 /r, 89 /r | `mov [mem], r8` / `r16/32/64` |
//! | 8A /r, 8B /r | `mov r8, [mem]` / `r16/32/64, [mem]` |
//! | C6 /0 ib, C7 /0 iw/id | `mov [mem], imm8` / `imm16/32` (sign-extended for 64) |
//! | A0-A3 | `mov al/eax, [moffs]`, `mov [moffs], al/eax` |
//! | 0F B6 /r, 0F B7 /r | `movzx r, byte/word [mem]` |
//!
//! with operand-size (66), address-size (67), segment and LOCK prefixes
//! and REX. The memory operand's address need not be computed (the exit
//! gives it), only skipped over to find the length and any immediate.
//! Anything else is refused with its bytes, for the guest's stop message.

use core::fmt;

/// What the guest's code segment says about operand and address sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// 16-bit code (real mode, or a 16-bit protected-mode segment).
    Bits16,
    Bits32,
    /// 64-bit code (IA-32e mode with CS.L).
    Bits64,
}

/// A general register as an instruction names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// RAX..R15 in encoding order, at the access's width.
    Gpr(u8),
    /// AH, CH, DH, BH: bits 15:8 of RAX..RBX (byte forms without REX).
    HighByte(u8),
}

/// What the instruction does with the device register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioOperation {
    /// Reads `size` bytes into `register`, which is written `width` bytes
    /// wide (a 32-bit write clears bits 63:32; 8- and 16-bit ones keep
    /// the rest; a MOVZX zero-extends the value up to `width`).
    Load { register: Register, width: u8 },
    /// Writes `size` bytes of a register.
    StoreRegister(Register),
    /// Writes `size` bytes of an immediate.
    StoreImmediate(u64),
}

/// A decoded MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInstruction {
    /// Bytes of the instruction, for advancing RIP.
    pub length: u8,
    /// Bytes of device memory accessed: 1, 2, 4 or 8.
    pub size: u8,
    pub operation: MmioOperation,
}

/// Why the bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes ran out before the instruction did.
    Truncated,
    /// Not one of the forms above (the opcode, after prefixes).
    Unsupported { opcode: u8 },
    /// A register operand where the device access must be memory.
    RegisterOperand,
    /// 16-bit addressing, which no MMIO driver uses.
    Addressing16,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("the instruction is cut short"),
            Self::Unsupported { opcode } => write!(f, "opcode {opcode:#04x} is not an emulated MMIO move"),
            Self::RegisterOperand => f.write_str("the ModRM byte names a register, not memory"),
            Self::Addressing16 => f.write_str("16-bit addressing is not emulated for MMIO"),
        }
    }
}

/// The longest x86 instruction.
pub const MAX_INSTRUCTION_LENGTH: usize = 15;

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.position).ok_or(DecodeError::Truncated)?;
        self.position += 1;
        Ok(byte)
    }

    fn skip(&mut self, count: usize) -> Result<(), DecodeError> {
        if self.position + count > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        self.position += count;
        Ok(())
    }

    fn immediate(&mut self, size: usize) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..size {
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(value)
    }
}

/// Decodes the instruction at the start of `bytes`.
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<MmioInstruction, DecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_INSTRUCTION_LENGTH)];
    let mut cursor = Cursor { bytes, position: 0 };
    let mut operand_override = false;
    let mut address_override = false;
    let mut rex = 0u8;
    let opcode = loop {
        match cursor.byte()? {
            0x66 => operand_override = true,
            0x67 => address_override = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0xf0 => {}
            byte @ 0x40..=0x4f if mode == CpuMode::Bits64 => {
                rex = byte;
                // REX must come last: the opcode follows.
                break cursor.byte()?;
            }
            byte => break byte,
        }
    };
    let rex_w = rex & 0x8 != 0;
    let operand_size: u8 = match (mode, rex_w, operand_override) {
        (CpuMode::Bits64, true, _) => 8,
        (CpuMode::Bits16, _, false) | (CpuMode::Bits32 | CpuMode::Bits64, _, true) => 2,
        _ => 4,
    };
    let address_size: u8 = match (mode, address_override) {
        (CpuMode::Bits64, false) => 8,
        (CpuMode::Bits64, true) | (CpuMode::Bits32, false) | (CpuMode::Bits16, true) => 4,
        _ => 2,
    };
    let byte_register = |index: u8| {
        if rex == 0 && (4..8).contains(&index) {
            Register::HighByte(index - 4)
        } else {
            Register::Gpr(index)
        }
    };
    let (size, operation) = match opcode {
        0x88 | 0x89 | 0x8a | 0x8b | 0xc6 | 0xc7 => {
            let reg = modrm(&mut cursor, address_size)? | ((rex & 0x4) << 1);
            let size = if opcode & 1 == 0 { 1 } else { operand_size };
            let register = if size == 1 { byte_register(reg) } else { Register::Gpr(reg) };
            let operation = match opcode {
                0x88 | 0x89 => MmioOperation::StoreRegister(register),
                0x8a | 0x8b => MmioOperation::Load { register, width: size },
                _ if reg & 7 != 0 => return Err(DecodeError::Unsupported { opcode }),
                _ => {
                    let immediate_size = usize::from(size.min(4));
                    let raw = cursor.immediate(immediate_size)?;
                    // A 64-bit store takes a sign-extended imm32.
                    let value = if size == 8 { raw as u32 as i32 as i64 as u64 } else { raw };
                    MmioOperation::StoreImmediate(value)
                }
            };
            (size, operation)
        }
        0xa0..=0xa3 => {
            cursor.skip(usize::from(address_size))?;
            let size = if opcode & 1 == 0 { 1 } else { operand_size };
            let operation = if opcode & 2 == 0 {
                MmioOperation::Load { register: Register::Gpr(0), width: size }
            } else {
                MmioOperation::StoreRegister(Register::Gpr(0))
            };
            (size, operation)
        }
        0x0f => match cursor.byte()? {
            second @ (0xb6 | 0xb7) => {
                let reg = modrm(&mut cursor, address_size)? | ((rex & 0x4) << 1);
                let size = if second == 0xb6 { 1 } else { 2 };
                (size, MmioOperation::Load { register: Register::Gpr(reg), width: operand_size })
            }
            second => return Err(DecodeError::Unsupported { opcode: second }),
        },
        _ => return Err(DecodeError::Unsupported { opcode }),
    };
    Ok(MmioInstruction { length: cursor.position as u8, size, operation })
}

/// Skips a ModRM memory operand (SIB and displacement); returns ModRM.reg.
fn modrm(cursor: &mut Cursor, address_size: u8) -> Result<u8, DecodeError> {
    if address_size == 2 {
        return Err(DecodeError::Addressing16);
    }
    let modrm = cursor.byte()?;
    let (mode, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if mode == 3 {
        return Err(DecodeError::RegisterOperand);
    }
    let mut displacement = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = cursor.byte()?;
        if sib & 7 == 5 && mode == 0 {
            displacement = 4; // no base: disp32
        }
    } else if rm == 5 && mode == 0 {
        displacement = 4; // disp32, or RIP-relative in 64-bit mode
    }
    cursor.skip(displacement)?;
    Ok(reg)
}

/// The register file after a load of `value` (already `size` bytes wide)
/// into `register` at `width` bytes: the new full value of the GPR.
pub fn merge_load(old: u64, register: Register, width: u8, value: u64) -> u64 {
    match (register, width) {
        (Register::HighByte(_), _) => (old & !0xff00) | ((value & 0xff) << 8),
        (_, 8) => value,
        (_, 4) => value & 0xffff_ffff,
        (_, 2) => (old & !0xffff) | (value & 0xffff),
        _ => (old & !0xff) | (value & 0xff),
    }
}

/// The value a store of `register` writes (before narrowing to the size).
pub fn register_value(gprs: &[u64; 16], register: Register) -> u64 {
    match register {
        Register::Gpr(index) => gprs[usize::from(index & 15)],
        Register::HighByte(index) => gprs[usize::from(index & 3)] >> 8,
    }
}

/// The GPR a load writes.
pub fn register_index(register: Register) -> u8 {
    match register {
        Register::Gpr(index) => index & 15,
        Register::HighByte(index) => index & 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8], mode: CpuMode) -> MmioInstruction {
        decode(bytes, mode).unwrap_or_else(|error| panic!("{bytes:02x?}: {error}"))
    }

    /// Encodings as GNU as produces them for what Linux's APIC and IOAPIC
    /// accessors compile to.
    #[test]
    fn linux_apic_accessors() {
        // mov %eax,(%rdx)          89 02
        assert_eq!(
            ok(&[0x89, 0x02], CpuMode::Bits64),
            MmioInstruction { length: 2, size: 4, operation: MmioOperation::StoreRegister(Register::Gpr(0)) }
        );
        // mov 0xffffffffff5fc0b0,%eax   8b 04 25 b0 c0 5f ff (SIB, no base: disp32)
        assert_eq!(
            ok(&[0x8b, 0x04, 0x25, 0xb0, 0xc0, 0x5f, 0xff, 0x90], CpuMode::Bits64),
            MmioInstruction {
                length: 7,
                size: 4,
                operation: MmioOperation::Load { register: Register::Gpr(0), width: 4 }
            }
        );
        // mov %r12d,0x10(%rbx)      44 89 63 10
        assert_eq!(
            ok(&[0x44, 0x89, 0x63, 0x10], CpuMode::Bits64),
            MmioInstruction { length: 4, size: 4, operation: MmioOperation::StoreRegister(Register::Gpr(12)) }
        );
        // mov 0x10(%r13),%r9d       45 8b 4d 10
        assert_eq!(
            ok(&[0x45, 0x8b, 0x4d, 0x10], CpuMode::Bits64),
            MmioInstruction {
                length: 4,
                size: 4,
                operation: MmioOperation::Load { register: Register::Gpr(9), width: 4 }
            }
        );
        // movl $0x0,0xb0(%rax)      c7 80 b0 00 00 00 00 00 00 00
        assert_eq!(
            ok(&[0xc7, 0x80, 0xb0, 0, 0, 0, 0, 0, 0, 0], CpuMode::Bits64),
            MmioInstruction { length: 10, size: 4, operation: MmioOperation::StoreImmediate(0) }
        );
        // mov %eax,-0xa04f50(%rip)  89 05 b0 f0 5f ff: RIP-relative disp32
        assert_eq!(ok(&[0x89, 0x05, 0xb0, 0xf0, 0x5f, 0xff], CpuMode::Bits64).length, 6);
    }

    #[test]
    fn sizes_prefixes_and_byte_registers() {
        // 66 89 08: mov %cx,(%rax)
        assert_eq!(ok(&[0x66, 0x89, 0x08], CpuMode::Bits64).size, 2);
        // 48 8b 00: mov (%rax),%rax
        assert_eq!(
            ok(&[0x48, 0x8b, 0x00], CpuMode::Bits64).operation,
            MmioOperation::Load { register: Register::Gpr(0), width: 8 }
        );
        // 48 c7 00 ff ff ff ff: movq $-1,(%rax): imm32 sign-extended
        let store = ok(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], CpuMode::Bits64);
        assert_eq!((store.size, store.operation), (8, MmioOperation::StoreImmediate(u64::MAX)));
        // 88 20: mov %ah,(%rax); with REX (40 88 20) it is %spl.
        assert_eq!(ok(&[0x88, 0x20], CpuMode::Bits64).operation, MmioOperation::StoreRegister(Register::HighByte(0)));
        assert_eq!(ok(&[0x40, 0x88, 0x20], CpuMode::Bits64).operation, MmioOperation::StoreRegister(Register::Gpr(4)));
        // c6 00 2a: movb $0x2a,(%rax)
        assert_eq!(ok(&[0xc6, 0x00, 0x2a], CpuMode::Bits64).operation, MmioOperation::StoreImmediate(0x2a));
        // 0f b6 08: movzbl (%rax),%ecx; 0f b7 08: movzwl.
        let movzx = ok(&[0x0f, 0xb6, 0x08], CpuMode::Bits64);
        assert_eq!((movzx.size, movzx.operation), (1, MmioOperation::Load { register: Register::Gpr(1), width: 4 }));
        assert_eq!(ok(&[0x0f, 0xb7, 0x08], CpuMode::Bits64).size, 2);
        // a1 + 8-byte moffs in 64-bit mode; + 4 bytes in 32-bit mode.
        assert_eq!(ok(&[0xa1, 0, 0, 0xe0, 0xfe, 0, 0, 0, 0], CpuMode::Bits64).length, 9);
        assert_eq!(ok(&[0xa3, 0x20, 0, 0xe0, 0xfe], CpuMode::Bits32).length, 5);
        // In 32-bit mode 0x40-0x4f are INC/DEC, not REX.
        assert_eq!(decode(&[0x44, 0x89, 0x02], CpuMode::Bits32), Err(DecodeError::Unsupported { opcode: 0x44 }));
        // Segment override and 32-bit SIB with base: 3e 89 44 24 08.
        assert_eq!(ok(&[0x3e, 0x89, 0x44, 0x24, 0x08], CpuMode::Bits32).length, 5);
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(decode(&[0x01, 0x02], CpuMode::Bits64), Err(DecodeError::Unsupported { opcode: 0x01 }));
        assert_eq!(decode(&[0x89, 0xc0], CpuMode::Bits64), Err(DecodeError::RegisterOperand));
        assert_eq!(decode(&[0xc7, 0x08, 0, 0, 0, 0], CpuMode::Bits64), Err(DecodeError::Unsupported { opcode: 0xc7 }));
        assert_eq!(decode(&[0x8b, 0x80, 0x00], CpuMode::Bits64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x89, 0x07], CpuMode::Bits16), Err(DecodeError::Addressing16));
        assert_eq!(decode(&[0x66; 20], CpuMode::Bits64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[], CpuMode::Bits64), Err(DecodeError::Truncated));
    }

    #[test]
    fn loads_merge_as_the_architecture_writes_registers() {
        let old = 0x1122_3344_5566_7788;
        assert_eq!(merge_load(old, Register::Gpr(0), 4, 0xdead_beef), 0xdead_beef, "32-bit clears 63:32");
        assert_eq!(merge_load(old, Register::Gpr(0), 2, 0xbeef), 0x1122_3344_5566_beef);
        assert_eq!(merge_load(old, Register::Gpr(0), 1, 0xef), 0x1122_3344_5566_77ef);
        assert_eq!(merge_load(old, Register::HighByte(0), 1, 0xef), 0x1122_3344_5566_ef88);
        assert_eq!(merge_load(old, Register::Gpr(0), 8, 1), 1);
        let mut gprs = [0u64; 16];
        gprs[2] = 0xabcd;
        assert_eq!(register_value(&gprs, Register::HighByte(2)) as u8, 0xab, "DH");
        assert_eq!(register_index(Register::HighByte(3)), 3);
    }
}
