//! Each rule of SDM 27.2-27.4, broken one at a time on a vmcs12 that
//! otherwise passes.

use vmx::vmcs::{
    Control16, Control32, Control64, Guest16, Guest32, Guest64, GuestNatural, Host16, Host64, HostNatural,
};

use super::*;
use crate::guest_memory::VecMemory;
use crate::nested::test_support::*;

fn snapshot(memory: &VecMemory) -> Vmcs12 {
    Vmcs12::load(memory, VMCS_A).unwrap()
}

fn valid() -> VecMemory {
    let mut memory = memory();
    valid_vmcs12(&mut memory, VMCS_A);
    memory
}

/// The control check's verdict after `change`.
fn controls_after(change: impl FnOnce(&mut VecMemory)) -> Result<(), CheckFailure> {
    let mut memory = valid();
    change(&mut memory);
    check_controls(&caps(), &snapshot(&memory))
}

fn host_after(change: impl FnOnce(&mut VecMemory)) -> Result<(), CheckFailure> {
    let mut memory = valid();
    change(&mut memory);
    check_host_state(&caps(), &snapshot(&memory), true)
}

fn guest_after(change: impl FnOnce(&mut VecMemory)) -> Result<(), GuestStateFailure> {
    let mut memory = valid();
    change(&mut memory);
    check_guest_state(&caps(), &snapshot(&memory), &memory).map(|_| ())
}

fn set(memory: &mut VecMemory, field: u32, value: u64) {
    write(memory, VMCS_A, field, value);
}

fn get(memory: &VecMemory, field: u32) -> u64 {
    read(memory, VMCS_A, field)
}

#[test]
fn the_fixture_passes_every_check() {
    let memory = valid();
    let vmcs12 = snapshot(&memory);
    assert_eq!(check_controls(&caps(), &vmcs12), Ok(()));
    assert_eq!(check_host_state(&caps(), &vmcs12, true), Ok(()));
    let guest = check_guest_state(&caps(), &vmcs12, &memory).unwrap();
    assert_eq!(guest.rip, 0x1000);
}

#[test]
fn control_rules_of_27_2_1() {
    let pin = Control32::PinBasedControls as u32;
    let primary = Control32::PrimaryProcessorBasedControls as u32;
    let secondary = Control32::SecondaryProcessorBasedControls as u32;
    let exit = Control32::ExitControls as u32;
    let entry = Control32::EntryControls as u32;
    // Posted interrupts (pin bit 7) are not offered.
    assert!(controls_after(|m| set(m, pin, get(m, pin) | 1 << 7)).is_err());
    // A must-be-one pin bit (bit 1) cleared.
    assert!(controls_after(|m| set(m, pin, get(m, pin) & !2)).is_err());
    // TPR shadow (primary bit 21) is not offered.
    assert!(controls_after(|m| set(m, primary, get(m, primary) | 1 << 21)).is_err());
    // VMCS shadowing (secondary bit 14) is not offered...
    assert!(controls_after(|m| set(m, secondary, get(m, secondary) | 1 << 14)).is_err());
    // ...but the secondary controls are ignored when not activated.
    assert_eq!(
        controls_after(|m| {
            set(m, secondary, get(m, secondary) | 1 << 14);
            set(m, primary, get(m, primary) & !(1 << 31));
        }),
        Ok(())
    );
    assert_eq!(
        controls_after(|m| set(m, Control32::Cr3TargetCount as u32, 5)),
        Err("CR3-target count greater than IA32_VMX_MISC[24:16]")
    );
    // I/O bitmaps at an unaligned address.
    assert!(controls_after(|m| {
        set(m, primary, get(m, primary) | 1 << 25);
        set(m, Control64::IoBitmapA as u32, 0x1000);
        set(m, Control64::IoBitmapB as u32, 0x2800);
    })
    .is_err());
    // MSR bitmap beyond MAXPHYADDR.
    assert!(controls_after(|m| {
        set(m, primary, get(m, primary) | 1 << 28);
        set(m, Control64::MsrBitmaps as u32, 1 << 40);
    })
    .is_err());
    assert_eq!(controls_after(|m| set(m, pin, get(m, pin) | 1 << 5)), Err("virtual NMIs without NMI exiting"));
    assert_eq!(
        controls_after(|m| set(m, primary, get(m, primary) | 1 << 22)),
        Err("NMI-window exiting without virtual NMIs")
    );
    assert_eq!(controls_after(|m| set(m, Control16::VirtualProcessorId as u32, 0)), Err("enable VPID with VPID 0"));
    // EPTP: memory type 1 (WC), walk length 5, A/D fine, bit 7 reserved.
    for eptp in [EPTP12 & !7 | 1, EPTP12 & !0x38 | 4 << 3, EPTP12 | 1 << 7, EPTP12 | 1 << 45] {
        assert_eq!(
            controls_after(|m| set(m, Control64::EptPointer as u32, eptp)),
            Err("invalid EPT pointer"),
            "{eptp:#x}"
        );
    }
    assert_eq!(controls_after(|m| set(m, Control64::EptPointer as u32, EPTP12 | 1 << 6)), Ok(()));
    assert_eq!(controls_after(|m| set(m, secondary, 1 << 7)), Err("unrestricted guest without EPT"));
    assert_eq!(
        controls_after(|m| set(m, exit, get(m, exit) | 1 << 22)),
        Err("save VMX-preemption timer without activating it")
    );
    assert_eq!(
        controls_after(|m| {
            set(m, Control32::ExitMsrStoreCount as u32, 1);
            set(m, Control64::ExitMsrStoreAddress as u32, 0x9008);
        }),
        Err("VM-exit MSR-store address")
    );
    // The last byte of the list must lie within the physical-address width.
    assert_eq!(
        controls_after(|m| {
            set(m, Control32::EntryMsrLoadCount as u32, 2);
            set(m, Control64::EntryMsrLoadAddress as u32, (1 << WIDTH) - 16);
        }),
        Err("VM-entry MSR-load address")
    );
    // Entry to SMM (bit 10) is not allowed.
    assert!(controls_after(|m| set(m, entry, get(m, entry) | 1 << 10)).is_err());
}

#[test]
fn event_injection_rules_of_27_2_1_3() {
    let info = Control32::EntryInterruptionInfo as u32;
    let valid = 1u64 << 31;
    let hardware = 3 << 8;
    let cases: [(u64, Option<CheckFailure>); 9] = [
        // #GP with its error code: fine.
        (valid | hardware | 1 << 11 | 13, None),
        // #GP without an error code, #UD with one.
        (
            valid | hardware | 13,
            Some("deliver-error-code must be 1 exactly for exceptions with an error code in protected mode"),
        ),
        (
            valid | hardware | 1 << 11 | 6,
            Some("deliver-error-code must be 1 exactly for exceptions with an error code in protected mode"),
        ),
        (valid | 1 << 8 | 32, Some("injection type 1 is reserved")),
        (valid | 2 << 8 | 3, Some("injection vector does not fit its type")),
        (valid | hardware | 32, Some("injection vector does not fit its type")),
        (valid | 7 << 8 | 1, Some("injection vector does not fit its type")),
        (valid | 1 << 20 | 0x20, Some("injection: reserved bits 30:12")),
        // INT 0x80 with instruction length 0.
        (valid | 4 << 8 | 0x80, Some("software event injection with an instruction length outside 1..15")),
    ];
    for (value, expected) in cases {
        let result = controls_after(|m| {
            set(m, info, value);
            set(m, GuestNatural::Rflags as u32, 0x202);
        });
        assert_eq!(result, expected.map_or(Ok(()), Err), "injection {value:#x}");
    }
    assert_eq!(
        controls_after(|m| {
            set(m, info, valid | hardware | 1 << 11 | 14);
            set(m, Control32::EntryExceptionErrorCode as u32, 0x1_0000);
        }),
        Err("injected error code: bits 31:16 must be 0")
    );
    assert_eq!(
        controls_after(|m| {
            set(m, info, valid | 4 << 8 | 0x80);
            set(m, Control32::EntryInstructionLength as u32, 2);
        }),
        Ok(())
    );
}

#[test]
fn host_state_rules_of_27_2_2_to_27_2_4() {
    assert_eq!(host_after(|m| set(m, HostNatural::Cr0 as u32, 0x8001_0001)), Err("host CR0 against the fixed bits"));
    assert_eq!(host_after(|m| set(m, HostNatural::Cr4 as u32, 0x20)), Err("host CR4 against the fixed bits"));
    assert_eq!(
        host_after(|m| set(m, HostNatural::Cr3 as u32, 1 << 40)),
        Err("host CR3 beyond the physical-address width")
    );
    assert_eq!(
        host_after(|m| set(m, HostNatural::Ia32SysenterEip as u32, 0x8000_0000_0000)),
        Err("host IA32_SYSENTER_ESP/EIP not canonical")
    );
    assert_eq!(
        host_after(|m| {
            set(m, Control32::ExitControls as u32, get(m, Control32::ExitControls as u32) | 1 << 19);
            set(m, Host64::Ia32Pat as u32, 0x0000_0000_0000_0002);
        }),
        Err("host IA32_PAT has an invalid memory type")
    );
    assert_eq!(
        host_after(|m| set(m, Host64::Ia32Efer as u32, 0x101)),
        Err("host IA32_EFER.LMA/LME differ from host address-space size")
    );
    assert_eq!(host_after(|m| set(m, Host64::Ia32Efer as u32, 0x1d01)), Err("host IA32_EFER reserved bits"));
    assert_eq!(host_after(|m| set(m, Host16::SsSelector as u32, 0x13)), Err("host selector with RPL or TI set"));
    assert_eq!(host_after(|m| set(m, Host16::TrSelector as u32, 0)), Err("host TR selector is null"));
    assert_eq!(
        host_after(|m| set(m, HostNatural::GsBase as u32, 0x8000_0000_0000)),
        Err("host base address not canonical")
    );
    assert_eq!(host_after(|m| set(m, HostNatural::Rip as u32, 0x8000_0000_0000)), Err("host RIP not canonical"));
    assert_eq!(
        host_after(|m| {
            let exit = get(m, Control32::ExitControls as u32) & !(1 << 9);
            set(m, Control32::ExitControls as u32, exit & !(1 << 21));
        }),
        Err("host address-space size 0 in IA-32e mode")
    );
    // An L1 outside IA-32e mode cannot enter an IA-32e guest nor host.
    let memory = valid();
    assert_eq!(
        check_host_state(&caps(), &snapshot(&memory), false),
        Err("IA-32e mode guest or host outside IA-32e mode")
    );
}

#[test]
fn guest_state_rules_of_27_3_1() {
    let rule = |result: Result<(), GuestStateFailure>| result.map_err(|failure| failure.rule);
    assert_eq!(
        rule(guest_after(|m| set(m, GuestNatural::Cr0 as u32, 0x8001_0001))),
        Err("guest CR0 against the fixed bits")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, GuestNatural::Cr4 as u32, 0x2000))),
        Err("IA-32e mode guest without CR0.PG and CR4.PAE")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Guest64::Ia32Efer as u32, 0x101))),
        Err("guest IA32_EFER.LMA differs from IA-32e mode guest")
    );
    assert_eq!(rule(guest_after(|m| set(m, Guest16::SsSelector as u32, 0x13))), Err("guest SS.RPL != CS.RPL"));
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::CsAccessRights as u32, 0xa093))),
        Err("guest CS type not accessed code (or 3 for an unrestricted guest)")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::CsAccessRights as u32, 0xe09b))),
        Err("guest CS with both L and D/B")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::DsLimit as u32, 0xffff_f000))),
        Err("guest data segment granularity inconsistent")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::TrAccessRights as u32, 0x89))),
        Err("guest TR type not a busy TSS")
    );
    assert_eq!(rule(guest_after(|m| set(m, Guest32::LdtrAccessRights as u32, 0x82))), Ok(()));
    assert_eq!(rule(guest_after(|m| set(m, Guest32::LdtrAccessRights as u32, 0x83))), Err("guest LDTR type not LDT"));
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::GdtrLimit as u32, 0x1_0000))),
        Err("guest GDTR/IDTR limit above 0xffff")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, GuestNatural::Rip as u32, 0x8000_0000_0000))),
        Err("guest RIP not canonical")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, GuestNatural::Rflags as u32, 0x2 | 1 << 15))),
        Err("guest RFLAGS reserved bits")
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::ActivityState as u32, 2))),
        Err("guest activity state not supported")
    );
    assert_eq!(rule(guest_after(|m| set(m, Guest32::ActivityState as u32, 1))), Ok(()));
    assert_eq!(
        rule(guest_after(|m| set(m, Guest32::InterruptibilityState as u32, 1))),
        Err("guest blocking by STI with RFLAGS.IF = 0")
    );
    assert_eq!(
        rule(guest_after(|m| {
            set(m, GuestNatural::Rflags as u32, 0x202);
            set(m, Guest32::InterruptibilityState as u32, 3);
        })),
        Err("guest blocking by both STI and MOV SS")
    );
    assert_eq!(
        rule(guest_after(|m| {
            set(m, GuestNatural::Rflags as u32, 0x302);
            set(m, Guest32::InterruptibilityState as u32, 1);
        })),
        Err("guest pending BS differs from RFLAGS.TF and BTF")
    );
    assert_eq!(
        rule(guest_after(|m| {
            set(m, GuestNatural::Rflags as u32, 0x302);
            set(m, Guest32::InterruptibilityState as u32, 1);
            set(m, GuestNatural::PendingDebugExceptions as u32, 1 << 14);
        })),
        Ok(())
    );
    assert_eq!(
        rule(guest_after(|m| set(m, Control32::EntryInterruptionInfo as u32, 1 << 31 | 0x20))),
        Err("injecting an external interrupt with RFLAGS.IF = 0")
    );
}

#[test]
fn link_pointer_and_pdpte_failures_have_their_qualifications() {
    let failure = guest_after(|m| set(m, Guest64::VmcsLinkPointer as u32, VMCS_B + 8)).unwrap_err();
    assert_eq!(failure.qualification, QUALIFICATION_LINK_POINTER);
    let failure = guest_after(|m| set(m, Guest64::VmcsLinkPointer as u32, 0x20_0000)).unwrap_err();
    assert_eq!((failure.qualification, failure.rule), (4, "VMCS link pointer: wrong revision"));
    assert_eq!(guest_after(|m| set(m, Guest64::VmcsLinkPointer as u32, VMCS_B)), Ok(()));

    // A 32-bit PAE guest without EPT: PDPTEs come from memory at CR3.
    let pae = |m: &mut VecMemory, pdpte0: u64| {
        let secondary = Control32::SecondaryProcessorBasedControls as u32;
        set(m, secondary, 1 << 5);
        let entry = get(m, Control32::EntryControls as u32) & !(1 << 9) & !(1 << 15);
        set(m, Control32::EntryControls as u32, entry);
        set(m, GuestNatural::Cr3 as u32, 0x7000);
        set(m, Guest32::CsAccessRights as u32, 0xc09b);
        m.write_u64(0x7000, pdpte0).unwrap();
    };
    let memory = {
        let mut memory = valid();
        pae(&mut memory, 0xa000 | 1);
        memory
    };
    let guest = check_guest_state(&caps(), &snapshot(&memory), &memory).unwrap();
    assert_eq!(guest.pdptes[0], 0xa001);
    let failure = guest_after(|m| pae(m, 0xa000 | 1 | 1 << 1)).unwrap_err();
    assert_eq!((failure.qualification, failure.rule), (QUALIFICATION_PDPTE, "guest PDPTE reserved bits"));
}

#[test]
fn unrestricted_guests_may_run_in_real_mode() {
    let real_mode = |m: &mut VecMemory| {
        set(m, Control32::SecondaryProcessorBasedControls as u32, (1 << 1 | 1 << 5 | 1 << 7) as u64);
        let entry = get(m, Control32::EntryControls as u32) & !(1 << 9);
        set(m, Control32::EntryControls as u32, entry);
        set(m, Guest64::Ia32Efer as u32, 0);
        set(m, GuestNatural::Cr0 as u32, 0x20);
        set(m, GuestNatural::Cr4 as u32, 0x2000);
        set(m, Guest32::CsAccessRights as u32, 0x93);
        set(m, Guest32::CsLimit as u32, 0xffff);
        for rights in [
            Guest32::SsAccessRights,
            Guest32::DsAccessRights,
            Guest32::EsAccessRights,
            Guest32::FsAccessRights,
            Guest32::GsAccessRights,
        ] {
            set(m, rights as u32, 0x93);
        }
        for limit in [Guest32::SsLimit, Guest32::DsLimit, Guest32::EsLimit, Guest32::FsLimit, Guest32::GsLimit] {
            set(m, limit as u32, 0xffff);
        }
        set(m, Guest32::TrAccessRights as u32, 0x83);
    };
    assert_eq!(guest_after(real_mode), Ok(()));
    // Without "unrestricted guest" the same state fails CR0's fixed bits.
    let result = guest_after(|m| {
        real_mode(m);
        set(m, Control32::SecondaryProcessorBasedControls as u32, (1 << 1 | 1 << 5) as u64);
    });
    assert_eq!(result.unwrap_err().rule, "guest CR0 against the fixed bits");
}

#[test]
fn msr_load_lists_of_27_4() {
    let mut memory = memory();
    let list = 0x9000;
    let entries = [(0x174u64, 8u64), (0xc000_0081, 0x23_0010_0000_0000), (0x277, 0x0007_0406_0007_0406)];
    for (index, (msr, value)) in entries.iter().enumerate() {
        memory.write_u64(list + index as u64 * 16, *msr).unwrap();
        memory.write_u64(list + index as u64 * 16 + 8, *value).unwrap();
    }
    assert_eq!(
        read_msr_load_list(&memory, list, 3, |_, _| true),
        Ok(vec![(0x174, 8), (0xc000_0081, 0x23_0010_0000_0000), (0x277, 0x0007_0406_0007_0406)])
    );
    // The MSR policy refuses the third entry.
    assert_eq!(read_msr_load_list(&memory, list, 3, |msr, _| msr != 0x277), Err(3));
    // Reserved bits 63:32 of the first quadword, an x2APIC MSR, GS base.
    for (header, expected) in [(0x1_0000_0174u64, 1), (0x808, 1), (0xc000_0101, 1)] {
        memory.write_u64(list, header).unwrap();
        assert_eq!(read_msr_load_list(&memory, list, 3, |_, _| true), Err(expected), "{header:#x}");
    }
    // A list running off the end of RAM fails at the first entry outside.
    assert_eq!(read_msr_load_list(&memory, RAM as u64 - 16, 2, |_, _| true), Err(2));
    // More entries than the 512 L1 is told to use fail at the 513th.
    memory.write_u64(0, 0x10).unwrap();
    assert_eq!(read_msr_load_list(&memory, 0, 513, |_, _| true), Err(513));
}
