//! Which exits of L2 go to L1 (SDM 26.1-26.2 from L1's controls), and
//! what a reflected exit leaves in vmcs12 and in L1 (SDM 28.2-28.6).

use vmx::vmcs::{Control32, Control64, ControlNatural, Guest32, GuestNatural, ReadOnly32, ReadOnlyNatural};

use super::*;
use crate::guest_memory::VecMemory;
use crate::nested::instructions::{InstructionExit, VmxInstruction, VmxOutcome};
use crate::nested::test_support::*;

fn set(memory: &mut VecMemory, field: u32, value: u64) {
    write(memory, VMCS_A, field, value);
}

fn get(memory: &VecMemory, field: u32) -> u64 {
    read(memory, VMCS_A, field)
}

fn add_primary(memory: &mut VecMemory, bits: u32) {
    let field = Control32::PrimaryProcessorBasedControls as u32;
    let value = get(memory, field) | u64::from(bits);
    set(memory, field, value);
}

/// Whether L1 wants `exit`, for the fixture vmcs12 after `change`.
fn wants(change: impl FnOnce(&mut VecMemory), exit: L2Exit, l2: &CpuState) -> bool {
    let mut memory = memory();
    valid_vmcs12(&mut memory, VMCS_A);
    change(&mut memory);
    let vmcs12 = Vmcs12::load(&memory, VMCS_A).unwrap();
    l1_wants_exit(&vmcs12, &exit, l2, &memory)
}

fn reason(reason: ExitReason) -> L2Exit {
    L2Exit { reason: u32::from(reason.number()), ..Default::default() }
}

fn exception(vector: u8, error_code: u32) -> L2Exit {
    L2Exit {
        reason: 0,
        interruption_info: InterruptionInfo::new(vector, InterruptionType::HardwareException, vector == 14).0,
        interruption_error_code: error_code,
        ..Default::default()
    }
}

#[test]
fn unconditional_exits_always_reach_l1_and_host_events_never() {
    let l2 = CpuState::default();
    for always in [
        ExitReason::Cpuid,
        ExitReason::TripleFault,
        ExitReason::Vmcall,
        ExitReason::Vmxon,
        ExitReason::Invept,
        ExitReason::Xsetbv,
        ExitReason::TaskSwitch,
        ExitReason::Getsec,
    ] {
        assert!(wants(|_| {}, reason(always), &l2), "{always:?}");
    }
    for never in
        [ExitReason::ExternalInterrupt, ExitReason::InitSignal, ExitReason::EptViolation, ExitReason::ApicAccess]
    {
        assert!(!wants(|_| {}, reason(never), &l2), "{never:?}");
    }
    // An NMI is L1's only with NMI exiting.
    let nmi = L2Exit { reason: 0, interruption_info: 0x8000_0202, ..Default::default() };
    assert!(!wants(|_| {}, nmi, &l2));
    assert!(wants(|m| set(m, Control32::PinBasedControls as u32, 0x16 | 1 << 3), nmi, &l2));
}

#[test]
fn conditional_exits_follow_l1s_controls() {
    let l2 = CpuState::default();
    // The fixture sets HLT exiting and nothing else optional.
    assert!(wants(|_| {}, reason(ExitReason::Hlt), &l2));
    let cases = [
        (ExitReason::Rdtsc, PrimaryControls::RDTSC_EXITING),
        (ExitReason::Pause, PrimaryControls::PAUSE_EXITING),
        (ExitReason::Invlpg, PrimaryControls::INVLPG_EXITING),
        (ExitReason::MovDr, PrimaryControls::MOV_DR_EXITING),
        (ExitReason::InterruptWindow, PrimaryControls::INTERRUPT_WINDOW_EXITING),
        (ExitReason::MonitorTrapFlag, PrimaryControls::MONITOR_TRAP_FLAG),
        (ExitReason::Mwait, PrimaryControls::MWAIT_EXITING),
    ];
    for (exit, control) in cases {
        assert!(!wants(|_| {}, reason(exit), &l2), "{exit:?} without its control");
        assert!(wants(|m| add_primary(m, control.bits()), reason(exit), &l2), "{exit:?} with its control");
    }
    assert!(!wants(|_| {}, reason(ExitReason::PreemptionTimerExpired), &l2));
    assert!(wants(
        |m| set(m, Control32::PinBasedControls as u32, 0x16 | 1 << 6),
        reason(ExitReason::PreemptionTimerExpired),
        &l2
    ));
    // L0's own time slice ended before L1's timer: not L1's exit.
    let running = CpuState { preemption_timer: 5, ..l2 };
    assert!(!wants(
        |m| set(m, Control32::PinBasedControls as u32, 0x16 | 1 << 6),
        reason(ExitReason::PreemptionTimerExpired),
        &running
    ));
    assert!(!wants(|_| {}, reason(ExitReason::Rdrand), &l2));
    assert!(wants(
        |m| set(m, Control32::SecondaryProcessorBasedControls as u32, 0x22 | 1 << 11),
        reason(ExitReason::Rdrand),
        &l2
    ));
}

#[test]
fn exception_bitmap_and_page_fault_error_code_filter() {
    let l2 = CpuState::default();
    let bitmap = Control32::ExceptionBitmap as u32;
    assert!(!wants(|_| {}, exception(6, 0), &l2));
    assert!(wants(|m| set(m, bitmap, 1 << 6), exception(6, 0), &l2));
    // Bit 14 set, mask P (1), match 0: only not-present faults exit.
    let pf_not_present = |m: &mut VecMemory| {
        set(m, bitmap, 1 << 14);
        set(m, Control32::PageFaultErrorCodeMask as u32, 1);
        set(m, Control32::PageFaultErrorCodeMatch as u32, 0);
    };
    assert!(wants(pf_not_present, exception(14, 2), &l2));
    assert!(!wants(pf_not_present, exception(14, 3), &l2));
    // Bit 14 clear inverts: only faults with PFEC & mask != match exit.
    let inverted = |m: &mut VecMemory| {
        set(m, Control32::PageFaultErrorCodeMask as u32, 1);
        set(m, Control32::PageFaultErrorCodeMatch as u32, 1);
    };
    assert!(wants(inverted, exception(14, 2), &l2));
    assert!(!wants(inverted, exception(14, 3), &l2));
    // Mask = match = 0 with bit 14 clear: no #PF exits.
    assert!(!wants(|_| {}, exception(14, 3), &l2));
}

#[test]
fn control_register_accesses_against_masks_shadows_and_targets() {
    let mut l2 = CpuState::default();
    l2.gprs[0] = 0x8001_0029; // CR0 with TS
    let mov_to_cr0 = L2Exit { reason: 28, qualification: 0, ..Default::default() };
    let own_ts = |m: &mut VecMemory| {
        set(m, ControlNatural::Cr0GuestHostMask as u32, 1 << 3);
        set(m, ControlNatural::Cr0ReadShadow as u32, 0);
    };
    assert!(wants(own_ts, mov_to_cr0, &l2), "TS differs from the shadow");
    l2.gprs[0] = 0x8001_0021;
    assert!(!wants(own_ts, mov_to_cr0, &l2), "owned bit equals the shadow");
    assert!(!wants(|_| {}, mov_to_cr0, &l2));
    // CLTS exits when L1 owns TS and its shadow has TS set.
    let clts = L2Exit { reason: 28, qualification: 2 << 4, ..Default::default() };
    assert!(!wants(own_ts, clts, &l2));
    assert!(wants(
        |m| {
            own_ts(m);
            set(m, ControlNatural::Cr0ReadShadow as u32, 1 << 3);
        },
        clts,
        &l2
    ));
    // LMSW setting PE while L1 owns it with shadow PE = 0.
    let lmsw = L2Exit { reason: 28, qualification: 3 << 4 | 1 << 16, ..Default::default() };
    assert!(wants(|m| set(m, ControlNatural::Cr0GuestHostMask as u32, 1), lmsw, &l2));
    assert!(!wants(
        |m| {
            set(m, ControlNatural::Cr0GuestHostMask as u32, 1);
            set(m, ControlNatural::Cr0ReadShadow as u32, 1);
        },
        lmsw,
        &l2
    ));
    // MOV to CR3 with CR3-load exiting: targets let matching values run.
    l2.gprs[3] = 0x5000;
    let mov_to_cr3 = L2Exit { reason: 28, qualification: 3 | 3 << 8, ..Default::default() };
    assert!(!wants(|_| {}, mov_to_cr3, &l2));
    let cr3_exiting = |m: &mut VecMemory| add_primary(m, PrimaryControls::CR3_LOAD_EXITING.bits());
    assert!(wants(cr3_exiting, mov_to_cr3, &l2));
    assert!(!wants(
        |m| {
            cr3_exiting(m);
            set(m, Control32::Cr3TargetCount as u32, 2);
            set(m, ControlNatural::Cr3TargetValue1 as u32, 0x5000);
        },
        mov_to_cr3,
        &l2
    ));
    // A matching target beyond the count does not count.
    assert!(wants(
        |m| {
            cr3_exiting(m);
            set(m, Control32::Cr3TargetCount as u32, 1);
            set(m, ControlNatural::Cr3TargetValue1 as u32, 0x5000);
        },
        mov_to_cr3,
        &l2
    ));
    // MOV to CR4 with an owned VMXE changed.
    l2.gprs[0] = 0x20;
    let mov_to_cr4 = L2Exit { reason: 28, qualification: 4, ..Default::default() };
    assert!(wants(
        |m| {
            set(m, ControlNatural::Cr4GuestHostMask as u32, 0x2000);
            set(m, ControlNatural::Cr4ReadShadow as u32, 0x2000);
        },
        mov_to_cr4,
        &l2
    ));
    // MOV from CR8 with CR8-store exiting.
    let mov_from_cr8 = L2Exit { reason: 28, qualification: 8 | 1 << 4, ..Default::default() };
    assert!(!wants(|_| {}, mov_from_cr8, &l2));
    assert!(wants(|m| add_primary(m, PrimaryControls::CR8_STORE_EXITING.bits()), mov_from_cr8, &l2));
}

#[test]
fn io_bitmaps_and_unconditional_io_exiting() {
    let l2 = CpuState::default();
    let out_80 = L2Exit { reason: 30, qualification: 0x80 << 16, ..Default::default() };
    let out_81 = L2Exit { reason: 30, qualification: 0x81 << 16, ..Default::default() };
    let out_8000_word = L2Exit { reason: 30, qualification: 0x7fff << 16 | 1, ..Default::default() };
    let wraps = L2Exit { reason: 30, qualification: 0xffff << 16 | 1, ..Default::default() };
    assert!(!wants(|_| {}, out_80, &l2));
    assert!(wants(|m| add_primary(m, PrimaryControls::UNCONDITIONAL_IO_EXITING.bits()), out_80, &l2));
    let bitmaps = |m: &mut VecMemory| {
        add_primary(m, (PrimaryControls::IO_BITMAPS | PrimaryControls::UNCONDITIONAL_IO_EXITING).bits());
        set(m, Control64::IoBitmapA as u32, 0x9000);
        set(m, Control64::IoBitmapB as u32, 0xa000);
        m.write(0x9000 + 0x80 / 8, &[1]).unwrap();
        m.write(0xa000, &[1]).unwrap();
    };
    assert!(wants(bitmaps, out_80, &l2));
    // With bitmaps, unconditional I/O exiting is ignored.
    assert!(!wants(bitmaps, out_81, &l2));
    // A word at 0x7fff touches 0x8000, whose bit is in bitmap B.
    assert!(wants(bitmaps, out_8000_word, &l2));
    assert!(wants(bitmaps, wraps, &l2));
}

#[test]
fn msr_bitmaps_by_quarter() {
    let mut l2 = CpuState::default();
    let rdmsr = reason(ExitReason::Rdmsr);
    let wrmsr = reason(ExitReason::Wrmsr);
    l2.gprs[1] = 0x10;
    // Without MSR bitmaps every RDMSR exits.
    assert!(wants(|_| {}, rdmsr, &l2));
    let bitmaps = |m: &mut VecMemory| {
        add_primary(m, PrimaryControls::MSR_BITMAPS.bits());
        set(m, Control64::MsrBitmaps as u32, 0x9000);
        m.write(0x9000 + 0x10 / 8, &[1]).unwrap(); // read low: MSR 0x10
        m.write(0x9000 + 3072 + 0x80 / 8, &[1]).unwrap(); // write high: EFER
    };
    assert!(wants(bitmaps, rdmsr, &l2));
    assert!(!wants(bitmaps, wrmsr, &l2));
    l2.gprs[1] = 0xc000_0080;
    assert!(wants(bitmaps, wrmsr, &l2));
    assert!(!wants(bitmaps, rdmsr, &l2));
    // Outside both ranges: always.
    l2.gprs[1] = 0x4000_0000;
    assert!(wants(bitmaps, rdmsr, &l2));
}

#[test]
fn l0_exits_say_what_l0_must_do() {
    assert_eq!(l0_exit(&reason(ExitReason::ExternalInterrupt)), L0Exit::Host);
    assert_eq!(l0_exit(&reason(ExitReason::Hlt)), L0Exit::Hlt);
    assert_eq!(l0_exit(&reason(ExitReason::Wrmsr)), L0Exit::Msr { write: true });
    let io = L2Exit { reason: 30, qualification: 0x3f8 << 16 | 8, ..Default::default() };
    assert!(matches!(l0_exit(&io), L0Exit::Io(IoInstruction { port: 0x3f8, .. })));
    let ept = L2Exit { reason: 48, qualification: 0x181, guest_physical_address: 0x1234, ..Default::default() };
    assert_eq!(l0_exit(&ept), L0Exit::EptViolation { gpa: 0x1234, qualification: 0x181 });
    assert_eq!(l0_exit(&L2Exit { reason: 0x8000_0021, ..Default::default() }), L0Exit::Unexpected(0x8000_0021));
}

fn launched() -> (NestedVmx, VecMemory) {
    launched_with(|_| {})
}

fn launched_with(change: impl FnOnce(&mut VecMemory)) -> (NestedVmx, VecMemory) {
    let mut memory = memory();
    let mut nested = with_current_vmcs(&mut memory);
    valid_vmcs12(&mut memory, VMCS_A);
    change(&mut memory);
    let outcome = run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory);
    assert!(matches!(outcome, VmxOutcome::EnterL2(_)), "{outcome:?}");
    (nested, memory)
}

fn l2_at_exit() -> CpuState {
    let mut memory = memory();
    valid_vmcs12(&mut memory, VMCS_A);
    let vmcs12 = Vmcs12::load(&memory, VMCS_A).unwrap();
    let mut l2 = CpuState::from_guest_fields(|field| vmcs12.get_raw(Encoding(field)));
    l2.rip = 0x1234;
    l2.rsp = 0x1ff0;
    l2.gprs[0] = 7;
    l2
}

#[test]
fn a_reflected_exit_writes_vmcs12_and_loads_l1s_host_state() {
    // L2 is entered with a #PF to deliver.
    let (mut nested, mut memory) = launched_with(|m| set(m, Control32::EntryInterruptionInfo as u32, 0x8000_0b0e));
    let exit = L2Exit { reason: 10, instruction_length: 2, idt_vectoring_info: 0x8000_0020, ..Default::default() };
    let outcome = nested.l2_exit(&exit, &l2_at_exit(), &mut memory, |_| None);
    let L2ExitOutcome::ReflectToL1(resume) = outcome else { panic!("CPUID must reach L1, got {outcome:?}") };
    assert!(!nested.in_l2());
    // Exit information and L2's state in vmcs12.
    assert_eq!(get(&memory, ReadOnly32::ExitReason as u32), 10);
    assert_eq!(get(&memory, ReadOnly32::ExitInstructionLength as u32), 2);
    assert_eq!(get(&memory, ReadOnly32::IdtVectoringInfo as u32), 0x8000_0020);
    assert_eq!(get(&memory, GuestNatural::Rip as u32), 0x1234);
    assert_eq!(get(&memory, GuestNatural::Rsp as u32), 0x1ff0);
    // The entry's event is consumed: valid bit cleared, the rest kept.
    assert_eq!(get(&memory, Control32::EntryInterruptionInfo as u32), 0xb0e);
    // EFER.LMA = 1 keeps "IA-32e mode guest".
    assert_ne!(get(&memory, Control32::EntryControls as u32) & 1 << 9, 0);
    // L1: SDM 28.5 host-state loading.
    let l1 = resume.l1;
    assert_eq!((l1.rip, l1.rsp, l1.rflags), (0x40_0000, 0x50_0000, 2));
    assert_eq!(l1.cs().access_rights, 0xa09b);
    assert_eq!(l1.cs().selector, 8);
    assert_eq!((l1.ss().selector, l1.ss().access_rights), (0x10, 0xc093));
    assert_eq!((l1.tr.selector, l1.tr.base, l1.tr.limit, l1.tr.access_rights), (0x18, 0x4000, 0x67, 0x8b));
    assert!(l1.ldtr.unusable());
    assert_eq!((l1.gdtr.base, l1.gdtr.limit, l1.idtr.base, l1.idtr.limit), (0x5000, 0xffff, 0x6000, 0xffff));
    assert_eq!((l1.dr7, l1.debugctl), (0x400, 0));
    assert_eq!(l1.efer, 0xd01);
    assert_eq!(l1.cr3, 0x1000);
    assert!(!resume.flush_vpid02, "L1 runs L2 with a VPID");
}

#[test]
fn an_exit_l1_did_not_ask_for_stays_in_l0_and_l2_keeps_running() {
    let (mut nested, mut memory) = launched();
    let exit = reason(ExitReason::ExternalInterrupt);
    assert_eq!(nested.l2_exit(&exit, &l2_at_exit(), &mut memory, |_| None), L2ExitOutcome::L0(L0Exit::Host));
    assert!(nested.in_l2());
    assert_eq!(get(&memory, ReadOnly32::ExitReason as u32), 0);
}

#[test]
fn exit_msr_lists_store_l2s_and_load_l1s_msrs() {
    let (mut nested, mut memory) = launched();
    // Lists are read at exit time from the snapshot taken at entry, so
    // set them up and re-launch.
    memory.write_u64(0x9000, 0xc000_0102).unwrap();
    memory.write_u64(0xa000, 0xc000_0081).unwrap();
    memory.write_u64(0xa008, 0x1234).unwrap();
    set(&mut memory, Control64::ExitMsrStoreAddress as u32, 0x9000);
    set(&mut memory, Control32::ExitMsrStoreCount as u32, 1);
    set(&mut memory, Control64::ExitMsrLoadAddress as u32, 0xa000);
    set(&mut memory, Control32::ExitMsrLoadCount as u32, 1);
    nested.reflect(&reason(ExitReason::Cpuid), &l2_at_exit(), &mut memory, |_| Some(0));
    let outcome = run(&mut nested, VmxInstruction::Vmresume, InstructionExit::default(), &l1(), &mut memory);
    assert!(matches!(outcome, VmxOutcome::EnterL2(_)), "{outcome:?}");
    let outcome = nested
        .l2_exit(&reason(ExitReason::Cpuid), &l2_at_exit(), &mut memory, |msr| (msr == 0xc000_0102).then_some(0x5555));
    let L2ExitOutcome::ReflectToL1(resume) = outcome else { panic!("{outcome:?}") };
    assert_eq!(memory.read_u64(0x9008).unwrap(), 0x5555);
    assert_eq!(resume.msr_loads, [(0xc000_0081, 0x1234)]);

    // An MSR that cannot be loaded on exit is a VMX abort with indicator 4.
    memory.write_u64(0xa000, 0xc000_0100).unwrap();
    run(&mut nested, VmxInstruction::Vmresume, InstructionExit::default(), &l1(), &mut memory);
    let outcome = nested.l2_exit(&reason(ExitReason::Cpuid), &l2_at_exit(), &mut memory, |_| Some(0));
    assert_eq!(outcome, L2ExitOutcome::Abort { indicator: ABORT_LOADING_HOST_MSRS });
    assert_eq!(memory.read_u32(VMCS_A + 4).unwrap(), 4);
    // A store that cannot read the MSR aborts with indicator 1.
    memory.write_u64(0xa000, 0xc000_0081).unwrap();
    run(&mut nested, VmxInstruction::Vmresume, InstructionExit::default(), &l1(), &mut memory);
    let outcome = nested.l2_exit(&reason(ExitReason::Cpuid), &l2_at_exit(), &mut memory, |_| None);
    assert_eq!(outcome, L2ExitOutcome::Abort { indicator: ABORT_SAVING_GUEST_MSRS });
}

#[test]
fn save_controls_decide_what_l2_state_reaches_vmcs12() {
    let (mut nested, mut memory) = launched();
    let mut l2 = l2_at_exit();
    l2.pat = 0x0606_0606_0606_0606;
    l2.efer = 0x501;
    l2.preemption_timer = 99;
    nested.l2_exit(&reason(ExitReason::Cpuid), &l2, &mut memory, |_| None);
    // The fixture saves EFER but neither PAT nor the preemption timer.
    assert_eq!(get(&memory, vmx::vmcs::Guest64::Ia32Efer as u32), 0x501);
    assert_eq!(get(&memory, vmx::vmcs::Guest64::Ia32Pat as u32), 0x0007_0406_0007_0406);
    assert_eq!(get(&memory, Guest32::PreemptionTimerValue as u32), 0);
    assert_eq!(get(&memory, ReadOnlyNatural::ExitQualification as u32), 0);
}
