//! How an application processor starts: the vCPU state a start-up IPI
//! leaves behind (SDM vol. 3A 9.1.1, table 9-1, and 10.6.1).
//!
//! After INIT the AP waits for a SIPI; the SIPI's vector V starts it in real
//! mode at CS:IP = (V << 8):0, so at physical address V << 12. Everything
//! else is the INIT state: caches on paper (CD/NW set), no paging, no
//! interrupts, flat 64 KiB segments, RDX holding the processor signature.
//! The shim's VMCS for the AP already exists; these are the guest-state
//! writes that put it there, checked by the shim like any others.

use alloc::vec::Vec;

use monitor_abi::{Action, GPR_COUNT, RDX};
use vmx::vmcs::{Control32, ControlNatural, Guest16, Guest32, Guest64, GuestNatural};

/// CR0 after INIT: CD | NW | ET. The shim keeps NE set underneath (VMX
/// needs it); the guest reads what INIT leaves through the read shadow.
pub const INIT_CR0: u64 = 0x6000_0010;
const CR0_NE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
/// Present, DPL 0, execute/read code, accessed; 16-bit, byte granular.
const REAL_MODE_CODE_ACCESS: u32 = 0x9b;
/// Present, DPL 0, read/write data, accessed.
const REAL_MODE_DATA_ACCESS: u32 = 0x93;
/// A present, busy 32-bit TSS, as the shim's first state has it. (VM
/// entry may take a busy 16-bit TSS outside IA-32e mode too, SDM 26.3.1.2,
/// but Bochs 2.7 refuses it: "VMCS guest incorrect TR type".)
const BUSY_TSS32_ACCESS: u32 = 0x8b;
const UNUSABLE: u32 = 1 << 16;
const SEGMENT_LIMIT: u64 = 0xffff;
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;
const DR7_INIT: u64 = 0x400;
const XCR0_X87: u64 = 1;

/// The actions that start a vCPU at SIPI vector `vector`, as INIT and the
/// SIPI leave it. `signature` is CPUID.1:EAX, which RDX holds after INIT.
pub fn sipi_start(vector: u8, signature: u32) -> Vec<Action> {
    let write = |encoding: u32, value: u64| Action::WriteField { encoding, value };
    let mut actions = Vec::with_capacity(56);
    for index in 0..GPR_COUNT as u8 {
        let value = if index == RDX { u64::from(signature) } else { 0 };
        actions.push(Action::SetGpr { index, value });
    }
    actions.extend([
        write(GuestNatural::Cr0.encoding(), INIT_CR0 | CR0_NE),
        write(ControlNatural::Cr0ReadShadow.encoding(), INIT_CR0),
        write(GuestNatural::Cr3.encoding(), 0),
        write(GuestNatural::Cr4.encoding(), CR4_VMXE),
        write(ControlNatural::Cr4ReadShadow.encoding(), 0),
        // The shim clears "IA-32e mode guest" to match.
        write(Guest64::Ia32Efer.encoding(), 0),
        write(Guest16::CsSelector.encoding(), u64::from(vector) << 8),
        write(GuestNatural::CsBase.encoding(), u64::from(vector) << 12),
        write(Guest32::CsLimit.encoding(), SEGMENT_LIMIT),
        write(Guest32::CsAccessRights.encoding(), REAL_MODE_CODE_ACCESS.into()),
    ]);
    for (selector, base, limit, access) in [
        (Guest16::DsSelector, GuestNatural::DsBase, Guest32::DsLimit, Guest32::DsAccessRights),
        (Guest16::EsSelector, GuestNatural::EsBase, Guest32::EsLimit, Guest32::EsAccessRights),
        (Guest16::FsSelector, GuestNatural::FsBase, Guest32::FsLimit, Guest32::FsAccessRights),
        (Guest16::GsSelector, GuestNatural::GsBase, Guest32::GsLimit, Guest32::GsAccessRights),
        (Guest16::SsSelector, GuestNatural::SsBase, Guest32::SsLimit, Guest32::SsAccessRights),
    ] {
        actions.extend([
            write(selector.encoding(), 0),
            write(base.encoding(), 0),
            write(limit.encoding(), SEGMENT_LIMIT),
            write(access.encoding(), REAL_MODE_DATA_ACCESS.into()),
        ]);
    }
    actions.extend([
        write(Guest16::TrSelector.encoding(), 0),
        write(GuestNatural::TrBase.encoding(), 0),
        write(Guest32::TrLimit.encoding(), SEGMENT_LIMIT),
        write(Guest32::TrAccessRights.encoding(), BUSY_TSS32_ACCESS.into()),
        write(Guest16::LdtrSelector.encoding(), 0),
        write(Guest32::LdtrAccessRights.encoding(), UNUSABLE.into()),
        write(GuestNatural::GdtrBase.encoding(), 0),
        write(Guest32::GdtrLimit.encoding(), SEGMENT_LIMIT),
        write(GuestNatural::IdtrBase.encoding(), 0),
        write(Guest32::IdtrLimit.encoding(), SEGMENT_LIMIT),
        write(GuestNatural::Rip.encoding(), 0),
        write(GuestNatural::Rflags.encoding(), RFLAGS_RESERVED_ONE),
        write(GuestNatural::Dr7.encoding(), DR7_INIT),
        write(Guest64::Ia32Debugctl.encoding(), 0),
        write(GuestNatural::PendingDebugExceptions.encoding(), 0),
        write(Guest32::InterruptibilityState.encoding(), 0),
        write(Guest32::ActivityState.encoding(), 0),
        // An event injection the shim still holds for the old context
        // would be delivered into the new one.
        write(Control32::EntryInterruptionInfo.encoding(), 0),
        Action::SetXcr0 { value: XCR0_X87 },
    ]);
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(actions: &[Action], encoding: u32) -> Option<u64> {
        actions.iter().rev().find_map(|action| match action {
            Action::WriteField { encoding: written, value } if *written == encoding => Some(*value),
            _ => None,
        })
    }

    #[test]
    fn a_sipi_starts_the_ap_in_real_mode_at_its_vector() {
        let actions = sipi_start(0x9a, 0x0005_0654);
        assert_eq!(field(&actions, Guest16::CsSelector.encoding()), Some(0x9a00));
        assert_eq!(field(&actions, GuestNatural::CsBase.encoding()), Some(0x9a000));
        assert_eq!(field(&actions, GuestNatural::Rip.encoding()), Some(0));
        assert_eq!(field(&actions, Guest32::CsAccessRights.encoding()), Some(0x9b), "16-bit code");
        assert_eq!(field(&actions, ControlNatural::Cr0ReadShadow.encoding()), Some(0x6000_0010));
        let cr0 = field(&actions, GuestNatural::Cr0.encoding()).unwrap();
        assert_eq!(cr0 & 1, 0, "no protected mode");
        assert_ne!(cr0 & CR0_NE, 0, "VMX operation needs NE");
        assert_eq!(field(&actions, Guest64::Ia32Efer.encoding()), Some(0), "no long mode");
        assert_eq!(field(&actions, GuestNatural::Rflags.encoding()), Some(2), "interrupts off");
        assert!(actions.contains(&Action::SetGpr { index: RDX, value: 0x0005_0654 }));
        assert!(actions.contains(&Action::SetGpr { index: monitor_abi::RSP, value: 0 }));
        assert!(actions.contains(&Action::SetXcr0 { value: 1 }));
    }

    #[test]
    fn every_data_segment_is_a_flat_64k_real_mode_segment() {
        let actions = sipi_start(0x10, 0);
        for (base, limit, access) in [
            (GuestNatural::DsBase, Guest32::DsLimit, Guest32::DsAccessRights),
            (GuestNatural::SsBase, Guest32::SsLimit, Guest32::SsAccessRights),
            (GuestNatural::GsBase, Guest32::GsLimit, Guest32::GsAccessRights),
        ] {
            assert_eq!(field(&actions, base.encoding()), Some(0));
            assert_eq!(field(&actions, limit.encoding()), Some(0xffff));
            assert_eq!(field(&actions, access.encoding()), Some(0x93));
        }
    }

    #[test]
    fn the_start_fits_one_response_with_room_to_spare() {
        assert!(sipi_start(0, 0).len() + 8 <= monitor_abi::MAX_ACTIONS);
    }
}
