//! Success and failure paths of every VMX instruction, against the
//! pseudocode of SDM chapter 31 and the error numbers of table 31-1.

use vmx::exit::VmInstructionError as E;
use vmx::vmcs::{Control32, Guest64, GuestNatural, ReadOnly32, ReadOnlyNatural};

use super::*;
use crate::guest_memory::VecMemory;
use crate::nested::state::{Segment, RFLAGS_VM};
use crate::nested::test_support::*;

const VM_INSTRUCTION_ERROR: u32 = 0x4400;

fn error_number(memory: &VecMemory, region: u64) -> u64 {
    read(memory, region, VM_INSTRUCTION_ERROR)
}

fn expect_fault(outcome: VmxOutcome, exception: Exception) {
    assert_eq!(outcome, VmxOutcome::Fault(exception));
}

fn after_vmxon(memory: &mut VecMemory) -> NestedVmx {
    let mut nested = NestedVmx::new(caps());
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, memory)), SUCCEED);
    nested
}

#[test]
fn vmxon_enters_vmx_operation_with_no_current_vmcs() {
    let mut memory = memory();
    let mut nested = NestedVmx::new(caps());
    let outcome = run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory);
    // VMsucceed clears CF, PF, AF, ZF, SF and OF and leaves the rest.
    assert_eq!(outcome, VmxOutcome::Retire { rflags: 0x2, gpr: None, invalidation: None });
    assert!(nested.in_vmx_operation());
    assert_eq!(nested.current_vmcs(), None);
}

#[test]
fn vmxon_raises_ud_in_the_modes_the_sdm_lists() {
    let mut memory = memory();
    let mut nested = NestedVmx::new(caps());
    let exit = memory_operand(0);
    let mut no_vmxe = l1();
    no_vmxe.cr4 &= !0x2000;
    let mut v86 = l1();
    v86.rflags |= RFLAGS_VM;
    let mut compatibility = l1();
    compatibility.segments[1].access_rights = 0xc09b;
    let mut real = l1();
    real.cr0 &= !1;
    for state in [no_vmxe, v86, compatibility, real] {
        expect_fault(run(&mut nested, VmxInstruction::Vmxon, exit, &state, &mut memory), Exception::UD);
    }
    // A register operand is another instruction: #UD.
    expect_fault(run(&mut nested, VmxInstruction::Vmxon, register_operand(0, 0), &l1(), &mut memory), Exception::UD);
    assert!(!nested.in_vmx_operation());
}

#[test]
fn vmxon_raises_gp_at_cpl_3_and_with_unsupported_cr0() {
    let mut memory = memory();
    let mut nested = NestedVmx::new(caps());
    let mut user = l1();
    user.segments[2].access_rights |= 3 << 5;
    let mut no_ne = l1();
    no_ne.cr0 &= !(1 << 5);
    for state in [user, no_ne] {
        expect_fault(run(&mut nested, VmxInstruction::Vmxon, memory_operand(0), &state, &mut memory), Exception::GP0);
    }
}

#[test]
fn vmxon_fails_invalid_on_bad_regions() {
    let mut memory = memory();
    memory.write_u32(VMCS_B, VMCS12_REVISION | 1 << 31).unwrap();
    // Unaligned, beyond MAXPHYADDR, outside RAM, wrong revision, shadow bit.
    for pointer in [VMXON + 8, 1 << WIDTH, (RAM as u64) + 0x1000, 0x20_0000, VMCS_B] {
        let mut nested = NestedVmx::new(caps());
        let outcome = run_with_pointer(&mut nested, VmxInstruction::Vmxon, pointer, &mut memory);
        assert_eq!(retired_flags(&outcome), FAIL_INVALID, "pointer {pointer:#x}");
        assert!(!nested.in_vmx_operation());
    }
}

#[test]
fn vmxon_in_vmx_operation_fails_with_error_15() {
    let mut memory = memory();
    let mut nested = after_vmxon(&mut memory);
    // No current VMCS: VMfailInvalid.
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory)), FAIL_INVALID);
    let mut nested = with_current_vmcs(&mut memory);
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory)), FAIL_VALID);
    assert_eq!(error_number(&memory, VMCS_A), 15);
    let mut user = l1();
    user.segments[2].access_rights |= 3 << 5;
    expect_fault(run(&mut nested, VmxInstruction::Vmxon, memory_operand(0), &user, &mut memory), Exception::GP0);
}

#[test]
fn other_instructions_raise_ud_outside_vmx_operation() {
    let mut memory = memory();
    let mut nested = NestedVmx::new(caps());
    for instruction in [
        VmxInstruction::Vmxoff,
        VmxInstruction::Vmclear,
        VmxInstruction::Vmptrld,
        VmxInstruction::Vmptrst,
        VmxInstruction::Vmread,
        VmxInstruction::Vmwrite,
        VmxInstruction::Vmlaunch,
        VmxInstruction::Vmresume,
        VmxInstruction::Invept,
        VmxInstruction::Invvpid,
    ] {
        expect_fault(run(&mut nested, instruction, memory_operand(0), &l1(), &mut memory), Exception::UD);
    }
    assert_eq!(nested.metrics.faults, 10);
}

#[test]
fn instructions_in_vmx_operation_raise_gp_above_cpl_0_and_ud_in_compatibility_mode() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let mut user = l1();
    user.segments[2].access_rights |= 3 << 5;
    let mut compatibility = l1();
    compatibility.segments[1].access_rights = 0xc09b;
    for instruction in [VmxInstruction::Vmptrld, VmxInstruction::Vmread, VmxInstruction::Vmlaunch] {
        expect_fault(run(&mut nested, instruction, memory_operand(0), &user, &mut memory), Exception::GP0);
        expect_fault(run(&mut nested, instruction, memory_operand(0), &compatibility, &mut memory), Exception::UD);
    }
}

#[test]
fn vmclear_checks_the_address_and_clears_launch_state_and_current_pointer() {
    let mut memory = memory();
    let mut nested = after_vmxon(&mut memory);
    // Without a current VMCS, failures are VMfailInvalid.
    assert_eq!(
        retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, 0x123, &mut memory)),
        FAIL_INVALID
    );
    let mut nested = with_current_vmcs(&mut memory);
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, 0x123, &mut memory)), FAIL_VALID);
    assert_eq!(error_number(&memory, VMCS_A), E::VmclearInvalidAddress as u64);
    assert_eq!(
        retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, 1 << 45, &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), 2);
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, VMXON, &mut memory)), FAIL_VALID);
    assert_eq!(error_number(&memory, VMCS_A), E::VmclearVmxonPointer as u64);

    // VMCLEAR of another VMCS keeps the current one; of the current one
    // makes the pointer invalid. Both clear the launch state.
    memory.write_u32(VMCS_B + 8, 1).unwrap();
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, VMCS_B, &mut memory)), SUCCEED);
    assert_eq!(memory.read_u32(VMCS_B + 8).unwrap(), 0);
    assert_eq!(nested.current_vmcs(), Some(VMCS_A));
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmclear, VMCS_A, &mut memory)), SUCCEED);
    assert_eq!(nested.current_vmcs(), None);
}

#[test]
fn vmptrld_errors_9_10_11_and_success() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let cases = [
        (VMCS_B + 0x800, E::VmptrldInvalidAddress),
        (1 << 40, E::VmptrldInvalidAddress),
        (VMXON, E::VmptrldVmxonPointer),
        (0x20_0000, E::VmptrldWrongRevision),
        ((RAM as u64) + 0x1000, E::VmptrldWrongRevision),
    ];
    for (pointer, error) in cases {
        assert_eq!(
            retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmptrld, pointer, &mut memory)),
            FAIL_VALID
        );
        assert_eq!(error_number(&memory, VMCS_A), error as u64, "pointer {pointer:#x}");
        assert_eq!(nested.current_vmcs(), Some(VMCS_A));
    }
    // A shadow-VMCS indicator without VMCS shadowing is a wrong revision.
    memory.write_u32(VMCS_B, VMCS12_REVISION | 1 << 31).unwrap();
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmptrld, VMCS_B, &mut memory)), FAIL_VALID);
    assert_eq!(error_number(&memory, VMCS_A), 11);
    memory.write_u32(VMCS_B, VMCS12_REVISION).unwrap();
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmptrld, VMCS_B, &mut memory)), SUCCEED);
    assert_eq!(nested.current_vmcs(), Some(VMCS_B));
}

#[test]
fn vmptrst_stores_the_current_pointer_or_all_ones() {
    let mut memory = memory();
    let mut nested = after_vmxon(&mut memory);
    let mut state = l1();
    state.gprs[0] = SCRATCH;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmptrst, memory_operand(0), &state, &mut memory)),
        SUCCEED
    );
    assert_eq!(memory.read_u64(SCRATCH).unwrap(), u64::MAX);
    let mut nested = with_current_vmcs(&mut memory);
    run(&mut nested, VmxInstruction::Vmptrst, memory_operand(0), &state, &mut memory);
    assert_eq!(memory.read_u64(SCRATCH).unwrap(), VMCS_A);
    // An unmapped operand is a #PF with CR2, not a monitor error.
    state.gprs[0] = 0x4000_0000;
    let outcome = run(&mut nested, VmxInstruction::Vmptrst, memory_operand(0), &state, &mut memory);
    assert_eq!(outcome, VmxOutcome::Fault(Exception { vector: 14, error_code: Some(2), cr2: Some(0x4000_0000) }));
}

#[test]
fn vmread_and_vmwrite_through_registers_and_memory() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let mut state = l1();
    // vmwrite rbx (guest RIP field in rcx).
    state.gprs[1] = GuestNatural::Rip as u64;
    state.gprs[3] = 0xffff_8000_1234_5678;
    let outcome = run(&mut nested, VmxInstruction::Vmwrite, register_operand(3, 1), &state, &mut memory);
    assert_eq!(retired_flags(&outcome), SUCCEED);
    assert_eq!(read(&memory, VMCS_A, GuestNatural::Rip as u32), 0xffff_8000_1234_5678);
    // vmread rdx, rcx.
    let outcome = run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory);
    assert_eq!(
        outcome,
        VmxOutcome::Retire { rflags: SUCCEED, gpr: Some((2, 0xffff_8000_1234_5678)), invalidation: None }
    );
    // A 16-bit field is truncated on write and zero-extended on read.
    state.gprs[1] = 0x0802;
    state.gprs[3] = 0xdead_beef;
    run(&mut nested, VmxInstruction::Vmwrite, register_operand(3, 1), &state, &mut memory);
    let outcome = run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory);
    assert_eq!(outcome, VmxOutcome::Retire { rflags: SUCCEED, gpr: Some((2, 0xbeef)), invalidation: None });
    // Memory forms: vmwrite [rax], vmread [rax] of the EPTP's high half.
    state.gprs[0] = SCRATCH;
    state.gprs[1] = 0x201a;
    memory.write_u64(SCRATCH, 0x1_0000_305e).unwrap();
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmwrite, memory_operand(1), &state, &mut memory)),
        SUCCEED
    );
    state.gprs[1] = 0x201b;
    run(&mut nested, VmxInstruction::Vmread, memory_operand(1), &state, &mut memory);
    assert_eq!(memory.read_u64(SCRATCH).unwrap(), 1);
}

#[test]
fn vmread_and_vmwrite_failures() {
    let mut memory = memory();
    let mut nested = after_vmxon(&mut memory);
    let mut state = l1();
    state.gprs[1] = GuestNatural::Rip as u64;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory)),
        FAIL_INVALID
    );
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmwrite, register_operand(2, 1), &state, &mut memory)),
        FAIL_INVALID
    );

    let mut nested = with_current_vmcs(&mut memory);
    // PML address (not offered), a reserved encoding, bits 63:32 set.
    for field in [0x200e, 0x1000_0000, (1 << 32) | GuestNatural::Rip as u64, 0x6001] {
        state.gprs[1] = field;
        assert_eq!(
            retired_flags(&run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory)),
            FAIL_VALID
        );
        assert_eq!(error_number(&memory, VMCS_A), E::UnsupportedVmcsComponent as u64, "field {field:#x}");
        write(&mut memory, VMCS_A, VM_INSTRUCTION_ERROR, 0);
        assert_eq!(
            retired_flags(&run(&mut nested, VmxInstruction::Vmwrite, register_operand(2, 1), &state, &mut memory)),
            FAIL_VALID
        );
        assert_eq!(error_number(&memory, VMCS_A), 12);
    }

    // Exit-information fields: writable with VMWRITE-any-field (offered),
    // error 13 without it.
    state.gprs[1] = ReadOnly32::ExitReason as u64;
    state.gprs[2] = 48;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmwrite, register_operand(2, 1), &state, &mut memory)),
        SUCCEED
    );
    assert_eq!(read(&memory, VMCS_A, ReadOnly32::ExitReason as u32), 48);
    let mut strict = caps();
    strict.misc = vmx::capabilities::VmxMisc(strict.misc.0 & !vmx::capabilities::VmxMisc::VMWRITE_ANY_FIELD);
    let mut nested = NestedVmx::new(strict);
    run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory);
    run_with_pointer(&mut nested, VmxInstruction::Vmptrld, VMCS_A, &mut memory);
    state.gprs[2] = 49;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmwrite, register_operand(2, 1), &state, &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::VmwriteReadOnlyComponent as u64);
    assert_eq!(read(&memory, VMCS_A, ReadOnly32::ExitReason as u32), 48);
    state.gprs[1] = ReadOnlyNatural::ExitQualification as u64;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory)),
        SUCCEED
    );
}

#[test]
fn vmread_outside_64_bit_mode_uses_32_bit_operands() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    write(&mut memory, VMCS_A, Guest64::Ia32Efer as u32, 0x1_0000_0d01);
    // Protected mode without paging, flat 32-bit segments.
    let mut state = l1();
    state.efer = 0;
    state.cr0 = 0x21;
    state.cr4 = 0x2000;
    state.segments[1].access_rights = 0xc09b;
    state.gprs[1] = 0xffff_ffff_0000_2806; // upper half ignored outside 64-bit mode
    state.gprs[0] = SCRATCH;
    memory.write_u64(SCRATCH, u64::MAX).unwrap();
    let exit = InstructionExit { qualification: 0, instruction_info: 1 << 7 | 3 << 15 | 1 << 22 | 1 << 28 };
    assert_eq!(retired_flags(&run(&mut nested, VmxInstruction::Vmread, exit, &state, &mut memory)), SUCCEED);
    // Four bytes written, truncated; the next four untouched.
    assert_eq!(memory.read_u64(SCRATCH).unwrap(), 0xffff_ffff_0000_0d01);
}

#[test]
fn vm_entry_failures_before_the_entry_are_vmfail() {
    let mut memory = memory();
    let mut nested = after_vmxon(&mut memory);
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_INVALID
    );

    let mut nested = with_current_vmcs(&mut memory);
    valid_vmcs12(&mut memory, VMCS_A);
    let mut mov_ss = l1();
    mov_ss.interruptibility = 2;
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &mov_ss, &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::EntryEventsBlockedByMovSs as u64);

    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmresume, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::VmresumeNonLaunchedVmcs as u64);
    memory.write_u32(VMCS_A + 8, 1).unwrap();
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::VmlaunchNonClearVmcs as u64);
    memory.write_u32(VMCS_A + 8, 0).unwrap();

    // A VPID of 0 with "enable VPID" is an invalid control: error 7.
    write(&mut memory, VMCS_A, 0x0000, 0);
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::EntryInvalidControlFields as u64);
    write(&mut memory, VMCS_A, 0x0000, 1);
    // A null host CS selector is invalid host state: error 8.
    write(&mut memory, VMCS_A, 0x0c02, 0);
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::EntryInvalidHostStateFields as u64);
    assert!(!nested.in_l2());
    assert_eq!(memory.read_u32(VMCS_A + 8).unwrap(), 0, "a failed VMLAUNCH leaves the VMCS clear");
}

#[test]
fn vmlaunch_enters_l2_and_marks_the_vmcs_launched() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    valid_vmcs12(&mut memory, VMCS_A);
    let VmxOutcome::EnterL2(entry) =
        run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)
    else {
        panic!("VMLAUNCH of a valid vmcs12 must enter L2");
    };
    assert!(nested.in_l2());
    assert_eq!(memory.read_u32(VMCS_A + 8).unwrap(), 1);
    assert_eq!(entry.vmcs02.guest.rip, 0x1000);
    assert_eq!(entry.vmcs02.paging, crate::nested::vmcs02::NestedPaging::ShadowEpt { eptp12: EPTP12 });
    assert!(entry.vmcs02.flush_vpid02, "the first entry with a VPID is a new TLB context");
    assert_eq!(nested.metrics.entries, 1);
}

#[test]
fn invalid_guest_state_exits_to_l1_with_reason_33() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    valid_vmcs12(&mut memory, VMCS_A);
    // RFLAGS bit 1 must be 1 (SDM 27.3.1.4).
    write(&mut memory, VMCS_A, GuestNatural::Rflags as u32, 0);
    write(&mut memory, VMCS_A, ReadOnlyNatural::ExitQualification as u32, 0x55);
    let outcome = run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory);
    let VmxOutcome::ExitToL1(resume) = outcome else { panic!("expected an exit to L1, got {outcome:?}") };
    assert_eq!(read(&memory, VMCS_A, ReadOnly32::ExitReason as u32), 0x8000_0021);
    assert_eq!(read(&memory, VMCS_A, ReadOnlyNatural::ExitQualification as u32), 0);
    // L1 continues at its host RIP with RFLAGS = 2.
    assert_eq!(resume.l1.rip, 0x40_0000);
    assert_eq!(resume.l1.rsp, 0x50_0000);
    assert_eq!(resume.l1.rflags, 2);
    assert!(!nested.in_l2());
    assert_eq!(memory.read_u32(VMCS_A + 8).unwrap(), 0, "the launch state stays clear");
}

#[test]
fn msr_load_failure_exits_with_reason_34_and_the_entry_index() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    valid_vmcs12(&mut memory, VMCS_A);
    // Two entries: STAR (fine), then IA32_FS_BASE (never loadable).
    memory.write_u64(0x9000, 0xc000_0081).unwrap();
    memory.write_u64(0x9010, 0xc000_0100).unwrap();
    write(&mut memory, VMCS_A, 0x200a, 0x9000);
    write(&mut memory, VMCS_A, Control32::EntryMsrLoadCount as u32, 2);
    let outcome = run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory);
    assert!(matches!(outcome, VmxOutcome::ExitToL1(_)), "{outcome:?}");
    assert_eq!(read(&memory, VMCS_A, ReadOnly32::ExitReason as u32), 0x8000_0022);
    assert_eq!(read(&memory, VMCS_A, ReadOnlyNatural::ExitQualification as u32), 2);

    // With a valid list, the loads reach vmcs02 in order.
    memory.write_u64(0x9010, 0xc000_0082).unwrap();
    memory.write_u64(0x9018, 0xffff_8000_0000_0000).unwrap();
    let VmxOutcome::EnterL2(entry) =
        run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory)
    else {
        panic!("valid MSR list must enter");
    };
    assert_eq!(entry.vmcs02.msr_loads, [(0xc000_0081, 0), (0xc000_0082, 0xffff_8000_0000_0000)]);
}

fn descriptor(memory: &mut VecMemory, low: u64, high: u64) -> CpuState {
    memory.write_u64(SCRATCH, low).unwrap();
    memory.write_u64(SCRATCH + 8, high).unwrap();
    let mut state = l1();
    state.gprs[0] = SCRATCH;
    state
}

#[test]
fn invept_types_and_operand_checks() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let mut state = descriptor(&mut memory, EPTP12, 0);
    state.gprs[2] = 1;
    let outcome = run(&mut nested, VmxInstruction::Invept, memory_operand(2), &state, &mut memory);
    assert_eq!(
        outcome,
        VmxOutcome::Retire {
            rflags: SUCCEED,
            gpr: None,
            invalidation: Some(Invalidation::Ept { eptp12: Some(EPTP12) })
        }
    );
    state.gprs[2] = 2;
    let outcome = run(&mut nested, VmxInstruction::Invept, memory_operand(2), &state, &mut memory);
    assert_eq!(
        outcome,
        VmxOutcome::Retire { rflags: SUCCEED, gpr: None, invalidation: Some(Invalidation::Ept { eptp12: None }) }
    );

    // Unsupported types, and a single-context EPTP with a 5-level walk.
    for (kind, eptp) in [(0, EPTP12), (3, EPTP12), (1 << 32 | 1, EPTP12), (1, 0x30_0000 | 4 << 3 | 6)] {
        let mut state = descriptor(&mut memory, eptp, 0);
        state.gprs[2] = kind;
        assert_eq!(
            retired_flags(&run(&mut nested, VmxInstruction::Invept, memory_operand(2), &state, &mut memory)),
            FAIL_VALID
        );
        assert_eq!(error_number(&memory, VMCS_A), E::InvalidInveptInvvpidOperand as u64);
    }
    // Without EPT offered, INVEPT does not exist.
    let mut no_ept = caps();
    no_ept.ept_vpid = vmx::capabilities::EptVpidCapabilities(0);
    let mut nested = NestedVmx::new(no_ept);
    run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory);
    expect_fault(run(&mut nested, VmxInstruction::Invept, memory_operand(2), &state, &mut memory), Exception::UD);
}

#[test]
fn invvpid_types_and_descriptor_checks() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let ok = [
        (0, 5, 0x7fff_ffff_f000, Some(0x7fff_ffff_f000)),
        (1, 5, 0, None),
        (2, 0, 0, None),
        (3, 5, 0xdead_0000_0000_0000, None),
    ];
    for (kind, vpid, address, flushed) in ok {
        let mut state = descriptor(&mut memory, vpid, address);
        state.gprs[2] = kind;
        let outcome = run(&mut nested, VmxInstruction::Invvpid, memory_operand(2), &state, &mut memory);
        assert_eq!(
            outcome,
            VmxOutcome::Retire {
                rflags: SUCCEED,
                gpr: None,
                invalidation: Some(Invalidation::Vpid { address: flushed })
            },
            "type {kind}"
        );
    }
    let bad = [
        (0, 0, 0x1000),           // individual address with VPID 0
        (0, 5, 0x8000_0000_0000), // non-canonical address
        (1, 0, 0),                // single context with VPID 0
        (3, 0, 0),                // retaining globals with VPID 0
        (2, 1 << 16, 0),          // descriptor bits 63:16 set
        (4, 5, 0),                // no such type
    ];
    for (kind, low, high) in bad {
        let mut state = descriptor(&mut memory, low, high);
        state.gprs[2] = kind;
        write(&mut memory, VMCS_A, VM_INSTRUCTION_ERROR, 0);
        assert_eq!(
            retired_flags(&run(&mut nested, VmxInstruction::Invvpid, memory_operand(2), &state, &mut memory)),
            FAIL_VALID
        );
        assert_eq!(error_number(&memory, VMCS_A), 28, "type {kind} descriptor {low:#x}");
    }
    // The descriptor is read first: an unmapped one faults.
    let mut state = l1();
    state.gprs[0] = 0x4000_0000;
    let outcome = run(&mut nested, VmxInstruction::Invvpid, memory_operand(2), &state, &mut memory);
    assert!(matches!(outcome, VmxOutcome::Fault(Exception { vector: 14, .. })));
}

#[test]
fn vmcall_vmxoff_and_cr_writes() {
    let mut memory = memory();
    let mut nested = NestedVmx::new(caps());
    assert_eq!(
        run(&mut nested, VmxInstruction::Vmcall, InstructionExit::default(), &l1(), &mut memory),
        VmxOutcome::NotNested
    );
    let mut nested = with_current_vmcs(&mut memory);
    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmcall, InstructionExit::default(), &l1(), &mut memory)),
        FAIL_VALID
    );
    assert_eq!(error_number(&memory, VMCS_A), E::VmcallInVmxRoot as u64);

    // In VMX operation CR4.VMXE cannot be cleared nor CR0.PG.
    assert_eq!(nested.check_cr_write(4, 0x20), Err(Exception::GP0));
    assert_eq!(nested.check_cr_write(0, 0x21), Err(Exception::GP0));
    assert_eq!(nested.check_cr_write(4, 0x2020), Ok(()));

    assert_eq!(
        retired_flags(&run(&mut nested, VmxInstruction::Vmxoff, InstructionExit::default(), &l1(), &mut memory)),
        SUCCEED
    );
    assert!(!nested.in_vmx_operation());
    assert_eq!(nested.check_cr_write(4, 0x20), Ok(()));
    expect_fault(run_with_pointer(&mut nested, VmxInstruction::Vmptrld, VMCS_A, &mut memory), Exception::UD);
    // VMXON again starts with no current VMCS.
    run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, &mut memory);
    assert_eq!(nested.current_vmcs(), None);
}

#[test]
fn exit_reasons_map_to_instructions() {
    assert_eq!(VmxInstruction::from_exit_reason(ExitReason::Vmxon), Some(VmxInstruction::Vmxon));
    assert_eq!(VmxInstruction::from_exit_reason(ExitReason::Invvpid), Some(VmxInstruction::Invvpid));
    assert_eq!(VmxInstruction::from_exit_reason(ExitReason::Cpuid), None);
    assert_eq!(VmxInstruction::from_exit_reason(ExitReason::Vmfunc), None);
}

#[test]
fn segments_with_unusable_ds_fault_in_legacy_mode() {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    let mut state = l1();
    state.efer = 0;
    state.cr0 = 0x21;
    state.segments[1].access_rights = 0xc09b;
    state.segments[3] = Segment { access_rights: Segment::UNUSABLE, ..Default::default() };
    let exit = InstructionExit { qualification: SCRATCH, instruction_info: 1 << 7 | 3 << 15 | 1 << 22 | 1 << 27 };
    expect_fault(run(&mut nested, VmxInstruction::Vmptrld, exit, &state, &mut memory), Exception::GP0);
}
