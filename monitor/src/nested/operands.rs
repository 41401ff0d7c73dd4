//! Operands of the VMX instructions L1 executes: decoded from the VM-exit
//! instruction-information field (SDM 28.2.5, tables 28-13 and 28-14) and
//! the exit qualification (the displacement, SDM 28.2.1), made linear with
//! L1's segments (SDM 3.4, 5.3) and physical with L1's paging (SDM 4.5).
//!
//! A bad operand becomes the exception the CPU would raise (#GP, #SS or
//! #PF with CR2), never an error of the monitor.

use crate::guest_memory::GuestMemory;

use super::state::{
    is_canonical, CpuState, SegmentRegister, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, CR4_SMAP, EFER_NXE, RFLAGS_AC,
};
use super::Exception;

/// The instruction-information field of an exit caused by a VMX
/// instruction with a memory or register operand.
///
/// | bits | meaning |
/// |---|---|
/// | 1:0 | scaling: index × 1, 2, 4, 8 |
/// | 6:3 | reg1 (VMREAD/VMWRITE register operand) |
/// | 9:7 | address size: 0 16-bit, 1 32-bit, 2 64-bit |
/// | 10 | 1: register operand (VMREAD/VMWRITE); 0: memory |
/// | 17:15 | segment register |
/// | 21:18 | index register, 22 index invalid |
/// | 26:23 | base register, 27 base invalid |
/// | 31:28 | reg2 (VMREAD/VMWRITE field encoding, INVEPT/INVVPID type) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionInfo(pub u32);

impl InstructionInfo {
    pub const fn scaling(self) -> u32 {
        self.0 & 3
    }

    pub const fn reg1(self) -> u8 {
        ((self.0 >> 3) & 0xf) as u8
    }

    /// Address size in bytes: 2, 4 or 8 (reserved encodings count as 8).
    pub const fn address_bytes(self) -> u8 {
        match (self.0 >> 7) & 7 {
            0 => 2,
            1 => 4,
            _ => 8,
        }
    }

    pub const fn is_register(self) -> bool {
        self.0 & (1 << 10) != 0
    }

    pub const fn segment(self) -> u32 {
        (self.0 >> 15) & 7
    }

    pub const fn index(self) -> Option<u8> {
        if self.0 & (1 << 22) != 0 {
            None
        } else {
            Some(((self.0 >> 18) & 0xf) as u8)
        }
    }

    pub const fn base(self) -> Option<u8> {
        if self.0 & (1 << 27) != 0 {
            None
        } else {
            Some(((self.0 >> 23) & 0xf) as u8)
        }
    }

    pub const fn reg2(self) -> u8 {
        ((self.0 >> 28) & 0xf) as u8
    }
}

/// What an operand access does, for segment and page checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A memory operand made linear: its segment and address, checked for
/// `len` bytes against the segment (or canonicality in 64-bit mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearOperand {
    pub address: u64,
    pub len: u8,
}

const fn gp0() -> Exception {
    Exception::with_error_code(13, 0)
}

const fn ss0() -> Exception {
    Exception::with_error_code(12, 0)
}

/// The linear address of the memory operand of an instruction whose exit
/// reported `info` and `displacement` (the exit qualification), checked for
/// an access of `len` bytes (SDM 3.4.5, 5.3, 3.3.7.1).
pub fn linear_operand(
    state: &CpuState,
    info: InstructionInfo,
    displacement: u64,
    len: u8,
    access: Access,
) -> Result<LinearOperand, Exception> {
    let register = SegmentRegister::from_number(info.segment()).ok_or(Exception::UD)?;
    let mut offset = displacement;
    if let Some(base) = info.base() {
        offset = offset.wrapping_add(state.gpr(base));
    }
    if let Some(index) = info.index() {
        offset = offset.wrapping_add(state.gpr(index) << info.scaling());
    }
    let address_mask = match info.address_bytes() {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    offset &= address_mask;
    let segment = state.segment(register);
    let fault = if register == SegmentRegister::Ss { ss0() } else { gp0() };

    if state.in_64bit_mode() {
        // Only FS and GS keep their bases in 64-bit mode; limits are not
        // checked, canonicality is (SDM 3.4.4, 5.3.1).
        let base = if matches!(register, SegmentRegister::Fs | SegmentRegister::Gs) { segment.base } else { 0 };
        let address = base.wrapping_add(offset);
        let last = address.wrapping_add(u64::from(len) - 1);
        if !is_canonical(address) || !is_canonical(last) {
            return Err(fault);
        }
        return Ok(LinearOperand { address, len });
    }

    if segment.unusable() {
        return Err(fault);
    }
    // Type checks (SDM 5.4.1): no writes to code or read-only data, no
    // reads of execute-only code.
    let segment_type = segment.segment_type();
    let code = segment_type & 0b1000 != 0;
    let allowed = match access {
        Access::Write => !code && segment_type & 0b0010 != 0,
        Access::Read => !code || segment_type & 0b0010 != 0,
    };
    if !allowed {
        return Err(fault);
    }
    let last = offset + u64::from(len) - 1;
    let limit = u64::from(segment.limit);
    let expand_down = !code && segment_type & 0b0100 != 0;
    let within = if expand_down {
        let upper = if segment.default_big() { 0xffff_ffff } else { 0xffff };
        offset > limit && last <= upper
    } else {
        last <= limit
    };
    if !within {
        return Err(fault);
    }
    Ok(LinearOperand { address: segment.base.wrapping_add(offset) & 0xffff_ffff, len })
}

/// #PF error-code bits (SDM 4.7).
const PF_PRESENT: u32 = 1 << 0;
const PF_WRITE: u32 = 1 << 1;
const PF_RESERVED: u32 = 1 << 3;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const PAGE_SIZE: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// Translates a linear address of L1 with L1's paging, as a supervisor
/// data access (VMX instructions run at CPL 0), setting accessed and dirty
/// flags as the CPU would (SDM 4.8). SMAP applies: a user page faults
/// unless RFLAGS.AC = 1 (SDM 4.6.1).
pub fn translate(
    state: &CpuState,
    memory: &mut impl GuestMemory,
    physical_width: u8,
    linear: u64,
    access: Access,
) -> Result<u64, Exception> {
    let (physical, user) = walk(state, memory, physical_width, linear, access)?;
    if user && state.cr4 & CR4_SMAP != 0 && state.rflags & RFLAGS_AC == 0 {
        let write = if access == Access::Write { PF_WRITE } else { 0 };
        return Err(Exception { vector: 14, error_code: Some(PF_PRESENT | write), cr2: Some(linear) });
    }
    Ok(physical)
}

/// The page walk: the physical address and whether every level allowed
/// user-mode accesses.
fn walk(
    state: &CpuState,
    memory: &mut impl GuestMemory,
    physical_width: u8,
    linear: u64,
    access: Access,
) -> Result<(u64, bool), Exception> {
    if state.cr0 & CR0_PG == 0 {
        return Ok((linear & 0xffff_ffff, false));
    }
    let write = access == Access::Write;
    let write_bit = if write { PF_WRITE } else { 0 };
    let page_fault = |code: u32| Exception { vector: 14, error_code: Some(code | write_bit), cr2: Some(linear) };
    let reserved_above =
        !0u64 << physical_width & !NX & ((1 << 52) - 1) | if state.efer & EFER_NXE == 0 { NX } else { 0 };
    let frame_mask = ((1u64 << physical_width) - 1) & !0xfff;

    let mut writable = true;
    let mut user = true;
    if state.cr4 & CR4_PAE == 0 {
        // 32-bit paging: two levels of 4-byte entries.
        let mut table = state.cr3 & 0xffff_f000;
        for (level, shift) in [(2, 22u32), (1, 12)] {
            let entry_address = table + ((linear >> shift) & 0x3ff) * 4;
            let entry = u64::from(memory.read_u32(entry_address).map_err(|_| page_fault(PF_RESERVED))?);
            if entry & PRESENT == 0 {
                return Err(page_fault(0));
            }
            writable &= entry & WRITABLE != 0;
            user &= entry & USER != 0;
            let leaf = level == 1 || (entry & PAGE_SIZE != 0 && state.cr4 & CR4_PSE != 0);
            check_write(state, write, writable).map_err(|()| page_fault(PF_PRESENT))?;
            set_flags32(memory, entry_address, entry, leaf && write);
            if leaf {
                let (frame, offset_mask) = if level == 2 {
                    // PSE-36: bits 20:13 give physical bits 39:32.
                    ((entry & 0xffc0_0000) | ((entry >> 13) & 0xff) << 32, 0x3f_ffff)
                } else {
                    (entry & 0xffff_f000, 0xfff)
                };
                return Ok((frame | (linear & offset_mask), user));
            }
            table = entry & 0xffff_f000;
        }
        unreachable!("the 4 KiB level is always a leaf");
    }

    let (mut table, shifts): (u64, &[u32]) = if state.long_mode_active() {
        let shifts: &[u32] = if state.cr4 & CR4_LA57 != 0 { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        (state.cr3 & frame_mask, shifts)
    } else {
        // PAE: the PDPTE comes from the 32-byte-aligned table at CR3.
        let pdpte_address = (state.cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8;
        let pdpte = memory.read_u64(pdpte_address).map_err(|_| page_fault(PF_RESERVED))?;
        if pdpte & PRESENT == 0 {
            return Err(page_fault(0));
        }
        if pdpte & (reserved_above | 0x1e6) != 0 {
            return Err(page_fault(PF_PRESENT | PF_RESERVED));
        }
        (pdpte & frame_mask, &[21, 12])
    };
    for (position, &shift) in shifts.iter().enumerate() {
        let entry_address = table + ((linear >> shift) & 0x1ff) * 8;
        let entry = memory.read_u64(entry_address).map_err(|_| page_fault(PF_RESERVED))?;
        if entry & PRESENT == 0 {
            return Err(page_fault(0));
        }
        let top_level = position == 0 && state.long_mode_active();
        let large = entry & PAGE_SIZE != 0;
        // PS is reserved in PML4Es (and PML5Es); 1 GiB and 2 MiB pages
        // have reserved bits below their frame (SDM 4.5.4).
        let large_reserved = match shift {
            30 => 0x3fff_e000,
            21 => 0x1f_e000,
            _ => 0,
        };
        if entry & reserved_above != 0 || (top_level && shift > 30 && large) || (large && entry & large_reserved != 0) {
            return Err(page_fault(PF_PRESENT | PF_RESERVED));
        }
        writable &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        let leaf = shift == 12 || (large && shift <= 30);
        check_write(state, write, writable).map_err(|()| page_fault(PF_PRESENT))?;
        set_flags64(memory, entry_address, entry, leaf && write);
        if leaf {
            let offset_mask = (1u64 << shift) - 1;
            return Ok(((entry & frame_mask & !offset_mask) | (linear & offset_mask), user));
        }
        table = entry & frame_mask;
    }
    Err(page_fault(PF_RESERVED))
}

/// Supervisor writes need W at every level unless CR0.WP = 0 (SDM
/// 4.6.1). The AND of the levels only shrinks, so failing early is
/// failing at the leaf.
fn check_write(state: &CpuState, write: bool, writable: bool) -> Result<(), ()> {
    if write && !writable && state.cr0 & CR0_WP != 0 {
        return Err(());
    }
    Ok(())
}

fn set_flags32(memory: &mut impl GuestMemory, address: u64, entry: u64, dirty: bool) {
    let wanted = entry | ACCESSED | if dirty { DIRTY } else { 0 };
    if wanted != entry {
        // A failed write leaves the flags clear, as on a bus error.
        let _ = memory.write_u32(address, wanted as u32);
    }
}

fn set_flags64(memory: &mut impl GuestMemory, address: u64, entry: u64, dirty: bool) {
    let wanted = entry | ACCESSED | if dirty { DIRTY } else { 0 };
    if wanted != entry {
        let _ = memory.write_u64(address, wanted);
    }
}

/// Reads `buffer.len()` bytes (at most 16) at a linear address, page by
/// page.
pub fn read_linear(
    state: &CpuState,
    memory: &mut impl GuestMemory,
    physical_width: u8,
    linear: u64,
    buffer: &mut [u8],
) -> Result<(), Exception> {
    let mut done = 0;
    // Translate every page first so that a fault on the second page
    // leaves nothing half-read (and nothing half-written for writes).
    let mut pieces = [(0u64, 0usize, 0usize); 2];
    let mut count = 0;
    while done < buffer.len() && count < pieces.len() {
        let address = linear.wrapping_add(done as u64);
        let in_page = (4096 - (address & 0xfff)) as usize;
        let n = in_page.min(buffer.len() - done);
        let physical = translate(state, memory, physical_width, address, Access::Read)?;
        pieces[count] = (physical, done, n);
        count += 1;
        done += n;
    }
    for &(physical, start, n) in &pieces[..count] {
        // Unbacked guest-physical memory reads as all ones, like a bus
        // with nothing on it.
        if memory.read(physical, &mut buffer[start..start + n]).is_err() {
            buffer[start..start + n].fill(0xff);
        }
    }
    Ok(())
}

/// Writes `data` (at most 16 bytes) to a linear address.
pub fn write_linear(
    state: &CpuState,
    memory: &mut impl GuestMemory,
    physical_width: u8,
    linear: u64,
    data: &[u8],
) -> Result<(), Exception> {
    let mut done = 0;
    let mut pieces = [(0u64, 0usize, 0usize); 2];
    let mut count = 0;
    while done < data.len() && count < pieces.len() {
        let address = linear.wrapping_add(done as u64);
        let in_page = (4096 - (address & 0xfff)) as usize;
        let n = in_page.min(data.len() - done);
        let physical = translate(state, memory, physical_width, address, Access::Write)?;
        pieces[count] = (physical, done, n);
        count += 1;
        done += n;
    }
    for &(physical, start, n) in &pieces[..count] {
        // Writes to unbacked memory are dropped, as on real hardware.
        let _ = memory.write(physical, &data[start..start + n]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use crate::nested::state::{Segment, CR0_PE, EFER_LMA, EFER_LME};

    /// A 64-bit L1 with 4-level paging: PML4 at 0x1000, PDPT 0x2000, PD
    /// 0x3000, PT 0x4000; linear 0x40_0000.. maps 4 KiB pages to 0x10000..,
    /// and linear 0x8000_0000 is a 2 MiB page at 0x20_0000.
    pub(crate) fn long_mode_l1(memory: &mut VecMemory) -> CpuState {
        memory.write_u64(0x1000, 0x2000 | 3).unwrap();
        memory.write_u64(0x2000, 0x3000 | 3).unwrap();
        memory.write_u64(0x2000 + 2 * 8, 0x5000 | 3).unwrap();
        memory.write_u64(0x3000 + 2 * 8, 0x4000 | 3).unwrap();
        memory.write_u64(0x4000, 0x10000 | 3).unwrap();
        memory.write_u64(0x4008, 0x11000 | 1).unwrap(); // read-only
        memory.write_u64(0x5000, 0x20_0000 | 3 | PAGE_SIZE).unwrap();
        let mut state = CpuState {
            cr0: CR0_PE | CR0_PG | CR0_WP | 0x20,
            cr3: 0x1000,
            cr4: CR4_PAE | 0x2000,
            efer: EFER_LMA | EFER_LME,
            ..Default::default()
        };
        state.segments[1] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, access_rights: 0xa09b };
        for register in [0, 2, 3, 4, 5] {
            state.segments[register] = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, access_rights: 0xc093 };
        }
        state
    }

    #[test]
    fn instruction_info_decodes_table_28_14() {
        // vmptrld [rax + rbx*8 + disp], 64-bit address, DS.
        let info = InstructionInfo(3 | 2 << 7 | 3 << 15 | 3 << 18);
        assert_eq!(info.scaling(), 3);
        assert_eq!(info.address_bytes(), 8);
        assert_eq!(info.segment(), 3);
        assert_eq!(info.index(), Some(3));
        assert_eq!(info.base(), Some(0));
        assert!(!info.is_register());
        let none = InstructionInfo(1 << 22 | 1 << 27 | 1 << 10 | 5 << 3 | 9 << 28);
        assert_eq!((none.index(), none.base()), (None, None));
        assert!(none.is_register());
        assert_eq!((none.reg1(), none.reg2()), (5, 9));
    }

    #[test]
    fn effective_address_adds_base_index_scale_and_displacement() {
        let mut memory = VecMemory::new(0x30_0000);
        let mut state = long_mode_l1(&mut memory);
        state.gprs[0] = 0x40_0000;
        state.gprs[3] = 2;
        let info = InstructionInfo(3 | 2 << 7 | 3 << 15 | 3 << 18);
        let operand = linear_operand(&state, info, 0x10, 8, Access::Read).unwrap();
        assert_eq!(operand.address, 0x40_0000 + 16 + 0x10);
        // Negative displacement, sign-extended in the qualification.
        let operand = linear_operand(&state, info, (-16i64) as u64, 8, Access::Read).unwrap();
        assert_eq!(operand.address, 0x40_0000);
        // 32-bit address size wraps.
        state.gprs[0] = 0xffff_fff0;
        state.gprs[3] = 0;
        let info32 = InstructionInfo(1 << 7 | 3 << 15 | 3 << 18);
        assert_eq!(linear_operand(&state, info32, 0x20, 8, Access::Read).unwrap().address, 0x10);
    }

    #[test]
    fn non_canonical_operands_fault_with_gp_or_ss() {
        let mut memory = VecMemory::new(0x30_0000);
        let mut state = long_mode_l1(&mut memory);
        state.gprs[0] = 0x0000_8000_0000_0000;
        let ds = InstructionInfo(2 << 7 | 3 << 15 | 1 << 22);
        assert_eq!(linear_operand(&state, ds, 0, 8, Access::Read), Err(Exception::with_error_code(13, 0)));
        let ss = InstructionInfo(2 << 7 | 2 << 15 | 1 << 22);
        assert_eq!(linear_operand(&state, ss, 0, 8, Access::Read), Err(Exception::with_error_code(12, 0)));
        // Crossing into non-canonical space faults too.
        state.gprs[0] = 0x0000_7fff_ffff_fffc;
        assert!(linear_operand(&state, ds, 0, 8, Access::Read).is_err());
        // FS keeps its base in 64-bit mode.
        state.gprs[0] = 0x100;
        state.segments[4].base = 0x40_0000;
        let fs = InstructionInfo(2 << 7 | 4 << 15 | 1 << 22);
        assert_eq!(linear_operand(&state, fs, 0, 8, Access::Read).unwrap().address, 0x40_0100);
    }

    #[test]
    fn legacy_mode_checks_limits_and_types() {
        let mut state = CpuState { cr0: CR0_PE, ..Default::default() };
        state.segments[1] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, access_rights: 0xc09b };
        state.segments[3] = Segment { selector: 0x10, base: 0x1000, limit: 0xfff, access_rights: 0x4093 };
        let ds = InstructionInfo(1 << 7 | 3 << 15 | 1 << 22);
        state.gprs[0] = 0;
        assert_eq!(linear_operand(&state, ds, 0xff8, 8, Access::Read).unwrap().address, 0x1ff8);
        assert_eq!(linear_operand(&state, ds, 0xffc, 8, Access::Read), Err(Exception::with_error_code(13, 0)));
        // Read-only data cannot be written; code cannot be written.
        state.segments[3].access_rights = 0x4091;
        assert!(linear_operand(&state, ds, 0, 8, Access::Write).is_err());
        assert!(linear_operand(&state, ds, 0, 8, Access::Read).is_ok());
        state.segments[3].access_rights = Segment::UNUSABLE;
        assert!(linear_operand(&state, ds, 0, 8, Access::Read).is_err());
        // Invalid segment number 6 is #UD (the encoding cannot occur).
        assert_eq!(linear_operand(&state, InstructionInfo(6 << 15), 0, 8, Access::Read), Err(Exception::UD));
    }

    #[test]
    fn four_level_walk_translates_and_sets_accessed_and_dirty() {
        let mut memory = VecMemory::new(0x30_0000);
        let state = long_mode_l1(&mut memory);
        assert_eq!(translate(&state, &mut memory, 39, 0x40_0123, Access::Read), Ok(0x10123));
        assert_eq!(memory.read_u64(0x4000).unwrap() & (ACCESSED | DIRTY), ACCESSED);
        assert_eq!(translate(&state, &mut memory, 39, 0x40_0123, Access::Write), Ok(0x10123));
        assert_eq!(memory.read_u64(0x4000).unwrap() & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        assert_eq!(memory.read_u64(0x1000).unwrap() & DIRTY, 0, "only leaves get D");
        // 2 MiB page.
        assert_eq!(translate(&state, &mut memory, 39, 0x8012_3456, Access::Read), Ok(0x32_3456));
    }

    #[test]
    fn page_faults_carry_the_error_code_and_cr2() {
        let mut memory = VecMemory::new(0x30_0000);
        let mut state = long_mode_l1(&mut memory);
        // Not present: P = 0, W = 1 for a write.
        assert_eq!(
            translate(&state, &mut memory, 39, 0x40_2000, Access::Write),
            Err(Exception { vector: 14, error_code: Some(2), cr2: Some(0x40_2000) })
        );
        // Read-only page with CR0.WP: protection violation.
        assert_eq!(
            translate(&state, &mut memory, 39, 0x40_1000, Access::Write),
            Err(Exception { vector: 14, error_code: Some(3), cr2: Some(0x40_1000) })
        );
        state.cr0 &= !CR0_WP;
        assert_eq!(translate(&state, &mut memory, 39, 0x40_1000, Access::Write), Ok(0x11000));
        // A frame bit above MAXPHYADDR is a reserved-bit fault.
        memory.write_u64(0x4010, (1 << 40) | 3).unwrap();
        assert_eq!(
            translate(&state, &mut memory, 39, 0x40_2000, Access::Read),
            Err(Exception { vector: 14, error_code: Some(PF_PRESENT | PF_RESERVED), cr2: Some(0x40_2000) })
        );
    }

    #[test]
    fn linear_accesses_split_at_page_boundaries() {
        let mut memory = VecMemory::new(0x30_0000);
        let state = long_mode_l1(&mut memory);
        memory.write_u64(0x4008, 0x13000 | 3).unwrap();
        write_linear(&state, &mut memory, 39, 0x40_0ffc, &0x1122_3344_5566_7788u64.to_le_bytes()).unwrap();
        assert_eq!(memory.read_u32(0x10ffc).unwrap(), 0x5566_7788);
        assert_eq!(memory.read_u32(0x13000).unwrap(), 0x1122_3344);
        let mut back = [0; 8];
        read_linear(&state, &mut memory, 39, 0x40_0ffc, &mut back).unwrap();
        assert_eq!(u64::from_le_bytes(back), 0x1122_3344_5566_7788);
        // A fault on the second page writes nothing.
        memory.write_u64(0x4008, 0).unwrap();
        let before = memory.read_u32(0x10ffc).unwrap();
        assert!(write_linear(&state, &mut memory, 39, 0x40_0ffc, &[0; 8]).is_err());
        assert_eq!(memory.read_u32(0x10ffc).unwrap(), before);
    }

    #[test]
    fn pae_and_32_bit_paging_walk() {
        let mut memory = VecMemory::new(0x30_0000);
        // PAE: PDPT at 0x1000, PD at 0x2000, PT at 0x3000.
        memory.write_u64(0x1000, 0x2000 | 1).unwrap();
        memory.write_u64(0x2000, 0x3000 | 3).unwrap();
        memory.write_u64(0x3000 + 5 * 8, 0x7000 | 3).unwrap();
        let state = CpuState { cr0: CR0_PE | CR0_PG, cr3: 0x1000, cr4: CR4_PAE, efer: 0, ..Default::default() };
        assert_eq!(translate(&state, &mut memory, 36, 0x5abc, Access::Read), Ok(0x7abc));
        // 32-bit paging with a 4 MiB page.
        memory.write_u32(0x8000 + 4, 0x0040_0000 | 0x83).unwrap();
        let state = CpuState { cr0: CR0_PE | CR0_PG, cr3: 0x8000, cr4: CR4_PSE, ..Default::default() };
        assert_eq!(translate(&state, &mut memory, 36, 0x0041_2345, Access::Read), Ok(0x0041_2345));
    }
}
