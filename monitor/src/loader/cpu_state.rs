//! The vCPU state a loader hands to the shim, and the boot GDT behind it.

use super::error::LoadProblem;
use super::Contents;
use crate::guest_memory::GuestMemory;

/// The selector of the flat code segment, Linux's `__BOOT_CS`. Multiboot
/// leaves the selectors undefined, so both loaders use Linux's values.
pub const BOOT_CODE_SELECTOR: u16 = 0x10;
/// The selector of the flat data segment, Linux's `__BOOT_DS`.
pub const BOOT_DATA_SELECTOR: u16 = 0x18;

/// Base 0, limit 0xfffff in 4 KiB pages (G=1), 32-bit (D=1), present, DPL 0,
/// code execute/read, accessed. The accessed bit is set so that neither the
/// CPU (on a segment load) nor VM entry (which requires it for CS) needs to
/// write or see anything different from what is in the table.
pub const FLAT_CODE_DESCRIPTOR: u64 = 0x00cf_9b00_0000_ffff;
/// As [`FLAT_CODE_DESCRIPTOR`], but data read/write, accessed.
pub const FLAT_DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;

/// [`FLAT_CODE_DESCRIPTOR`] in the VMCS guest access-rights format
/// (descriptor bits 40..=55, without the limit's high nibble).
pub const FLAT_CODE_ACCESS_RIGHTS: u32 = 0xc09b;
/// [`FLAT_DATA_DESCRIPTOR`] in the VMCS guest access-rights format.
pub const FLAT_DATA_ACCESS_RIGHTS: u32 = 0xc093;

/// RFLAGS at entry: only the always-one bit 1; IF (bit 9) clear, because
/// both protocols start the kernel with interrupts off.
pub const RFLAGS_INTERRUPTS_OFF: u64 = 0x2;

/// The boot GDT: two null entries (so that the selectors match Linux's
/// `__BOOT_CS`/`__BOOT_DS`), then code and data.
const BOOT_GDT: [u64; 4] = [0, 0, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR];
pub(crate) const BOOT_GDT_BYTES: u64 = 8 * BOOT_GDT.len() as u64;

/// How the guest's vCPU starts, whatever loaded the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialCpuState {
    pub mode: CpuMode,
    pub rip: u64,
    pub registers: GeneralRegisters,
    pub rflags: u64,
    /// The GDT the loader wrote into guest memory for the selectors in
    /// `mode`; `None` if the loader wrote none (GDTR then undefined).
    pub gdt: Option<DescriptorTable>,
}

/// The processor mode at entry, with what it implies for the control and
/// segment registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// 32-bit protected mode with paging off: CR0.PE set, CR0.PG clear,
    /// EFER zero, no IDT (the kernel must not take interrupts before it
    /// loads its own). CS is `code_selector` with the hidden part of
    /// [`FLAT_CODE_DESCRIPTOR`] (base 0, limit 4 GiB, 32-bit, execute/read);
    /// DS, ES, FS, GS and SS are `data_selector` with the hidden part of
    /// [`FLAT_DATA_DESCRIPTOR`] (base 0, limit 4 GiB, read/write).
    ProtectedFlat32 { code_selector: u16, data_selector: u16 },
}

/// The general registers at entry, by name; the 32-bit protocols only give
/// meaning to the low halves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneralRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
}

/// A descriptor table's location, as GDTR holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    /// The offset of the table's last byte.
    pub limit: u16,
}

impl InitialCpuState {
    /// Flat 32-bit protected mode on the boot GDT's selectors, interrupts off.
    pub(crate) fn protected_flat32(rip: u64, registers: GeneralRegisters, gdt: DescriptorTable) -> Self {
        Self {
            mode: CpuMode::ProtectedFlat32 { code_selector: BOOT_CODE_SELECTOR, data_selector: BOOT_DATA_SELECTOR },
            rip,
            registers,
            rflags: RFLAGS_INTERRUPTS_OFF,
            gdt: Some(gdt),
        }
    }
}

/// Writes the boot GDT at `base`, which the caller has placed in guest RAM.
pub(crate) fn write_boot_gdt(memory: &mut impl GuestMemory, base: u64) -> Result<DescriptorTable, LoadProblem> {
    let mut bytes = [0u8; BOOT_GDT_BYTES as usize];
    for (slot, descriptor) in bytes.chunks_exact_mut(8).zip(BOOT_GDT) {
        slot.copy_from_slice(&descriptor.to_le_bytes());
    }
    memory.write(base, &bytes).map_err(|error| LoadProblem::WriteRefused { what: Contents::Gdt, error })?;
    Ok(DescriptorTable { base, limit: (BOOT_GDT_BYTES - 1) as u16 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;

    /// Builds a segment descriptor from its fields, the way the SDM draws
    /// it, to check the hand-encoded constants against.
    fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
        let base = u64::from(base);
        let limit = u64::from(limit);
        (limit & 0xffff)
            | (base & 0xff_ffff) << 16
            | u64::from(access) << 40
            | (limit >> 16 & 0xf) << 48
            | u64::from(flags & 0xf) << 52
            | (base >> 24) << 56
    }

    #[test]
    fn flat_descriptors_are_what_the_boot_protocols_ask_for() {
        // Present, DPL 0, S=1; type 0xb = code execute/read accessed, 0x3 = data read/write accessed.
        // Flags 0xc: G=1 (4 KiB granularity), D/B=1 (32-bit), L=0.
        assert_eq!(FLAT_CODE_DESCRIPTOR, descriptor(0, 0xfffff, 0x9b, 0xc));
        assert_eq!(FLAT_DATA_DESCRIPTOR, descriptor(0, 0xfffff, 0x93, 0xc));
        assert_eq!(FLAT_CODE_ACCESS_RIGHTS, ((FLAT_CODE_DESCRIPTOR >> 40) & 0xf0ff) as u32);
        assert_eq!(FLAT_DATA_ACCESS_RIGHTS, ((FLAT_DATA_DESCRIPTOR >> 40) & 0xf0ff) as u32);
    }

    #[test]
    fn boot_gdt_lands_byte_for_byte() {
        let mut memory = VecMemory::new(0x2000);
        let gdt = write_boot_gdt(&mut memory, 0x1000).unwrap();
        assert_eq!(gdt, DescriptorTable { base: 0x1000, limit: 31 });
        assert_eq!(
            &memory.as_slice()[0x1000..0x1020],
            &[
                0, 0, 0, 0, 0, 0, 0, 0, // null
                0, 0, 0, 0, 0, 0, 0, 0, // unused, so that code is 0x10
                0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0, // 0x10: flat code
                0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0, // 0x18: flat data
            ]
        );
        assert_eq!(
            write_boot_gdt(&mut memory, 0x1ff0),
            Err(LoadProblem::WriteRefused {
                what: Contents::Gdt,
                error: crate::guest_memory::OutOfRange { gpa: 0x1ff0, len: 32 }
            })
        );
    }
}
