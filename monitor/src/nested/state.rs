//! A vCPU's architectural state as the nested code needs it: L1's at an
//! exit from L1 (to decode operands and check modes), L2's at an exit from
//! L2 (to save into vmcs12), and the host state of vmcs12 that becomes L1's
//! on a reflected exit.
//!
//! The state is plain data; [`CpuState::from_guest_fields`] fills it from
//! any VMCS reader and [`CpuState::guest_fields`] lists it as VMCS
//! guest-state writes, so the monitor and the shim speak VMCS fields.

use alloc::vec::Vec;

use vmx::vmcs::{Guest32, Guest64, GuestNatural, SEGMENT_FIELDS};

pub const RFLAGS_CF: u64 = 1 << 0;
pub const RFLAGS_FIXED1: u64 = 1 << 1;
pub const RFLAGS_PF: u64 = 1 << 2;
pub const RFLAGS_AF: u64 = 1 << 4;
pub const RFLAGS_ZF: u64 = 1 << 6;
pub const RFLAGS_SF: u64 = 1 << 7;
pub const RFLAGS_TF: u64 = 1 << 8;
pub const RFLAGS_IF: u64 = 1 << 9;
pub const RFLAGS_OF: u64 = 1 << 11;
pub const RFLAGS_VM: u64 = 1 << 17;
pub const RFLAGS_AC: u64 = 1 << 18;

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_TS: u64 = 1 << 3;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PSE: u64 = 1 << 4;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_LA57: u64 = 1 << 12;
pub const CR4_VMXE: u64 = 1 << 13;
pub const CR4_PCIDE: u64 = 1 << 17;
pub const CR4_SMAP: u64 = 1 << 21;
pub const EFER_SCE: u64 = 1 << 0;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

/// Interruptibility state bits (SDM 25.4.2, table 25-3).
pub const BLOCKING_BY_STI: u32 = 1 << 0;
pub const BLOCKING_BY_MOV_SS: u32 = 1 << 1;
pub const BLOCKING_BY_SMI: u32 = 1 << 2;
pub const BLOCKING_BY_NMI: u32 = 1 << 3;

/// Activity states (SDM 25.4.2).
pub const ACTIVITY_ACTIVE: u32 = 0;
pub const ACTIVITY_HLT: u32 = 1;
pub const ACTIVITY_SHUTDOWN: u32 = 2;
pub const ACTIVITY_WAIT_FOR_SIPI: u32 = 3;

/// A segment register in VMCS form: selector, base, limit and the access
/// rights of SDM 25.4.1, table 25-2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub access_rights: u32,
}

impl Segment {
    /// Access-rights bit 16: the segment is unusable (loaded with a null
    /// selector, or never loaded).
    pub const UNUSABLE: u32 = 1 << 16;

    pub const fn segment_type(self) -> u32 {
        self.access_rights & 0xf
    }

    /// Bit 4: code or data (1) rather than system (0).
    pub const fn code_or_data(self) -> bool {
        self.access_rights & (1 << 4) != 0
    }

    pub const fn dpl(self) -> u8 {
        ((self.access_rights >> 5) & 3) as u8
    }

    pub const fn present(self) -> bool {
        self.access_rights & (1 << 7) != 0
    }

    /// Bit 13: 64-bit code segment.
    pub const fn long(self) -> bool {
        self.access_rights & (1 << 13) != 0
    }

    /// Bit 14: default operation size / big.
    pub const fn default_big(self) -> bool {
        self.access_rights & (1 << 14) != 0
    }

    pub const fn granularity(self) -> bool {
        self.access_rights & (1 << 15) != 0
    }

    pub const fn unusable(self) -> bool {
        self.access_rights & Self::UNUSABLE != 0
    }

    /// A code segment (type bit 3 with S = 1).
    pub const fn is_code(self) -> bool {
        self.code_or_data() && self.access_rights & (1 << 3) != 0
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u32,
}

/// The segment registers in the order the SDM numbers them (instruction
/// information bits 17:15, VMCS field order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentRegister {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl SegmentRegister {
    /// The register numbered `number`, or `None` for 6 and 7.
    pub const fn from_number(number: u32) -> Option<Self> {
        Some(match number {
            0 => Self::Es,
            1 => Self::Cs,
            2 => Self::Ss,
            3 => Self::Ds,
            4 => Self::Fs,
            5 => Self::Gs,
            _ => return None,
        })
    }
}

/// The architectural state of one vCPU at an exit, as the VMCS guest-state
/// area holds it, plus the general registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// RAX..R15 in x86 order. RSP is also in its VMCS field; `gprs[4]` is
    /// ignored in favour of [`rsp`](Self::rsp).
    pub gprs: [u64; 16],
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
    /// Control registers as the vCPU itself sees them (read shadows
    /// applied), e.g. CR4.VMXE as L1 set it.
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub dr7: u64,
    pub efer: u64,
    pub pat: u64,
    pub debugctl: u64,
    /// ES, CS, SS, DS, FS, GS.
    pub segments: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub sysenter_cs: u32,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub smbase: u32,
    pub interruptibility: u32,
    pub activity_state: u32,
    pub pending_debug_exceptions: u64,
    /// PDPTE0-3, meaningful with PAE paging under EPT.
    pub pdptes: [u64; 4],
    /// The VMX-preemption timer's remaining value.
    pub preemption_timer: u32,
}

const PDPTE_FIELDS: [Guest64; 4] = [Guest64::Pdpte0, Guest64::Pdpte1, Guest64::Pdpte2, Guest64::Pdpte3];

impl CpuState {
    pub fn segment(&self, register: SegmentRegister) -> Segment {
        self.segments[register as usize]
    }

    pub fn cs(&self) -> Segment {
        self.segments[SegmentRegister::Cs as usize]
    }

    pub fn ss(&self) -> Segment {
        self.segments[SegmentRegister::Ss as usize]
    }

    /// The current privilege level: SS.DPL (SDM 25.4.1).
    pub fn cpl(&self) -> u8 {
        self.ss().dpl()
    }

    /// IA-32e mode is active (EFER.LMA).
    pub fn long_mode_active(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    /// 64-bit mode: IA-32e mode with a 64-bit code segment.
    pub fn in_64bit_mode(&self) -> bool {
        self.long_mode_active() && self.cs().long()
    }

    /// IA-32e compatibility mode: the mode in which VMX instructions #UD.
    pub fn in_compatibility_mode(&self) -> bool {
        self.long_mode_active() && !self.cs().long()
    }

    pub fn virtual_8086(&self) -> bool {
        self.rflags & RFLAGS_VM != 0
    }

    /// A general register by its x86 number; RSP comes from its own field.
    pub fn gpr(&self, number: u8) -> u64 {
        match number & 0xf {
            4 => self.rsp,
            n => self.gprs[usize::from(n)],
        }
    }

    pub fn set_gpr(&mut self, number: u8, value: u64) {
        match number & 0xf {
            4 => self.rsp = value,
            n => self.gprs[usize::from(n)] = value,
        }
    }

    /// Reads the guest-state area through `read` (a VMREAD of vmcs01 or
    /// vmcs02, or a vmcs12 snapshot); GPRs other than RSP stay 0.
    pub fn from_guest_fields(read: impl Fn(u32) -> u64) -> Self {
        let mut state = Self::default();
        let mut segments = [Segment::default(); 8];
        for (segment, (selector, base, limit, rights)) in segments.iter_mut().zip(SEGMENT_FIELDS) {
            *segment = Segment {
                selector: read(selector.encoding()) as u16,
                base: read(base.encoding()),
                limit: read(limit.encoding()) as u32,
                access_rights: read(rights.encoding()) as u32,
            };
        }
        state.segments.copy_from_slice(&segments[..6]);
        state.ldtr = segments[6];
        state.tr = segments[7];
        state.rsp = read(GuestNatural::Rsp.encoding());
        state.rip = read(GuestNatural::Rip.encoding());
        state.rflags = read(GuestNatural::Rflags.encoding());
        state.cr0 = read(GuestNatural::Cr0.encoding());
        state.cr3 = read(GuestNatural::Cr3.encoding());
        state.cr4 = read(GuestNatural::Cr4.encoding());
        state.dr7 = read(GuestNatural::Dr7.encoding());
        state.efer = read(Guest64::Ia32Efer.encoding());
        state.pat = read(Guest64::Ia32Pat.encoding());
        state.debugctl = read(Guest64::Ia32Debugctl.encoding());
        state.gdtr = DescriptorTable {
            base: read(GuestNatural::GdtrBase.encoding()),
            limit: read(Guest32::GdtrLimit.encoding()) as u32,
        };
        state.idtr = DescriptorTable {
            base: read(GuestNatural::IdtrBase.encoding()),
            limit: read(Guest32::IdtrLimit.encoding()) as u32,
        };
        state.sysenter_cs = read(Guest32::Ia32SysenterCs.encoding()) as u32;
        state.sysenter_esp = read(GuestNatural::Ia32SysenterEsp.encoding());
        state.sysenter_eip = read(GuestNatural::Ia32SysenterEip.encoding());
        state.smbase = read(Guest32::Smbase.encoding()) as u32;
        state.interruptibility = read(Guest32::InterruptibilityState.encoding()) as u32;
        state.activity_state = read(Guest32::ActivityState.encoding()) as u32;
        state.pending_debug_exceptions = read(GuestNatural::PendingDebugExceptions.encoding());
        for (pdpte, field) in state.pdptes.iter_mut().zip(PDPTE_FIELDS) {
            *pdpte = read(field.encoding());
        }
        state.preemption_timer = read(Guest32::PreemptionTimerValue.encoding()) as u32;
        state
    }

    /// The state as guest-state field writes (encoding, value), every
    /// field [`from_guest_fields`](Self::from_guest_fields) reads.
    pub fn guest_fields(&self) -> Vec<(u32, u64)> {
        let mut fields = Vec::with_capacity(64);
        let segments = self.segments.iter().chain([&self.ldtr, &self.tr]);
        for (segment, (selector, base, limit, rights)) in segments.zip(SEGMENT_FIELDS) {
            fields.push((selector.encoding(), u64::from(segment.selector)));
            fields.push((base.encoding(), segment.base));
            fields.push((limit.encoding(), u64::from(segment.limit)));
            fields.push((rights.encoding(), u64::from(segment.access_rights)));
        }
        let mut push = |field: u32, value: u64| fields.push((field, value));
        push(GuestNatural::Rsp.encoding(), self.rsp);
        push(GuestNatural::Rip.encoding(), self.rip);
        push(GuestNatural::Rflags.encoding(), self.rflags);
        push(GuestNatural::Cr0.encoding(), self.cr0);
        push(GuestNatural::Cr3.encoding(), self.cr3);
        push(GuestNatural::Cr4.encoding(), self.cr4);
        push(GuestNatural::Dr7.encoding(), self.dr7);
        push(Guest64::Ia32Efer.encoding(), self.efer);
        push(Guest64::Ia32Pat.encoding(), self.pat);
        push(Guest64::Ia32Debugctl.encoding(), self.debugctl);
        push(GuestNatural::GdtrBase.encoding(), self.gdtr.base);
        push(Guest32::GdtrLimit.encoding(), u64::from(self.gdtr.limit));
        push(GuestNatural::IdtrBase.encoding(), self.idtr.base);
        push(Guest32::IdtrLimit.encoding(), u64::from(self.idtr.limit));
        push(Guest32::Ia32SysenterCs.encoding(), u64::from(self.sysenter_cs));
        push(GuestNatural::Ia32SysenterEsp.encoding(), self.sysenter_esp);
        push(GuestNatural::Ia32SysenterEip.encoding(), self.sysenter_eip);
        push(Guest32::Smbase.encoding(), u64::from(self.smbase));
        push(Guest32::InterruptibilityState.encoding(), u64::from(self.interruptibility));
        push(Guest32::ActivityState.encoding(), u64::from(self.activity_state));
        push(GuestNatural::PendingDebugExceptions.encoding(), self.pending_debug_exceptions);
        for (pdpte, field) in self.pdptes.iter().zip(PDPTE_FIELDS) {
            push(field.encoding(), *pdpte);
        }
        push(Guest32::PreemptionTimerValue.encoding(), u64::from(self.preemption_timer));
        fields
    }
}

/// Whether `address` is canonical for 48-bit linear addresses (bits 63:47
/// all equal). Used where the SDM says "canonical" for a processor without
/// 5-level paging, which is what L1 is offered.
pub const fn is_canonical(address: u64) -> bool {
    let upper = address >> 47;
    upper == 0 || upper == (1 << 17) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn fields_round_trip_through_a_vmcs() {
        let mut state = CpuState {
            rsp: 0x7000,
            rip: 0xffff_ffff_8100_0000,
            rflags: 0x202,
            cr0: 0x8005_0033,
            cr3: 0x1000,
            cr4: 0x2020,
            efer: 0xd01,
            interruptibility: BLOCKING_BY_STI,
            pdptes: [1, 2, 3, 4],
            preemption_timer: 77,
            ..Default::default()
        };
        state.segments[1] = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, access_rights: 0xa09b };
        state.tr = Segment { selector: 0x40, base: 0x5000, limit: 0x67, access_rights: 0x8b };
        let vmcs: BTreeMap<u32, u64> = state.guest_fields().into_iter().collect();
        assert_eq!(vmcs[&0x681e], 0xffff_ffff_8100_0000);
        assert_eq!(vmcs[&0x4816], 0xa09b);
        assert_eq!(vmcs[&0x080e], 0x40);
        let back = CpuState::from_guest_fields(|field| vmcs.get(&field).copied().unwrap_or(0));
        assert_eq!(back, state);
        assert_eq!(back.cpl(), 0);
        assert!(back.in_64bit_mode());
    }

    #[test]
    fn canonical_addresses_have_bits_63_to_47_equal() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xfff0_0000_0000_0000));
    }

    #[test]
    fn access_rights_decode_table_25_2() {
        // 64-bit ring-3 code: type 11, S, DPL 3, P, L, G.
        let cs = Segment { access_rights: 0xa0fb, ..Default::default() };
        assert_eq!(cs.segment_type(), 11);
        assert!(cs.code_or_data() && cs.is_code() && cs.present() && cs.long() && cs.granularity());
        assert_eq!(cs.dpl(), 3);
        assert!(!cs.default_big() && !cs.unusable());
        assert!(Segment { access_rights: 0x1_0000, ..Default::default() }.unusable());
    }
}
