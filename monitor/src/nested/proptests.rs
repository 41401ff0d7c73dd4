//! Hostile inputs: whatever L1 puts in vmcs12, in VMCS pointers, in
//! INVEPT/INVVPID operands or in its EPT12, it gets the architectural
//! answer and the monitor never panics.

use proptest::prelude::*;

use vmx::vmcs::Encoding;

use super::ept02::{Ept01, Ept01Mapping, Ept02, Ept02Outcome, ShadowTables, EPT_RWX};
use super::instructions::{InstructionExit, VmxInstruction, VmxOutcome};
use super::reflection::{L2Exit, L2ExitOutcome};
use super::state::CpuState;
use super::test_support::*;
use super::vmcs12::{self, SLOT_COUNT};
use crate::guest_memory::{GuestMemory, VecMemory};

fn vm_instruction_error(memory: &VecMemory) -> u64 {
    read(memory, VMCS_A, 0x4400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random vmcs12 contents: VMLAUNCH ends in VMfailValid 7 or 8, a
    /// failed entry exit to L1 (reason 33 or 34 with bit 31), or L2; never
    /// anything else.
    #[test]
    fn vmlaunch_of_random_vmcs12_is_architectural(
        slots in proptest::collection::vec((0..SLOT_COUNT, any::<u64>()), 0..64),
        keep_valid in any::<bool>(),
    ) {
        let mut memory = memory();
        let mut nested = with_current_vmcs(&mut memory);
        if keep_valid {
            valid_vmcs12(&mut memory, VMCS_A);
        }
        for (slot, value) in slots {
            memory.write_u64(VMCS_A + vmcs12::FIELDS_OFFSET + 8 * slot as u64, value).unwrap();
        }
        let outcome = run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory);
        match outcome {
            VmxOutcome::Retire { rflags, .. } => {
                prop_assert_eq!(rflags, FAIL_VALID);
                prop_assert!(matches!(vm_instruction_error(&memory), 7 | 8));
                prop_assert!(!nested.in_l2());
            }
            VmxOutcome::ExitToL1(_) | VmxOutcome::Abort { .. } => {
                let reason = read(&memory, VMCS_A, 0x4402);
                prop_assert!(reason == 0x8000_0021 || reason == 0x8000_0022, "reason {:#x}", reason);
                prop_assert!(!nested.in_l2());
            }
            VmxOutcome::EnterL2(entry) => {
                prop_assert!(nested.in_l2());
                // What reaches vmcs02 passed the checks: re-checking the
                // same snapshot accepts it.
                let snapshot = vmcs12::Vmcs12::load(&memory, VMCS_A).unwrap();
                prop_assert!(super::entry_checks::check_guest_state(&caps(), &snapshot, &memory).is_ok());
                prop_assert_eq!(entry.vmcs02.guest.rip, snapshot.get(vmx::vmcs::GuestNatural::Rip));
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }

    /// VMPTRLD and VMCLEAR of any address: success exactly when the SDM
    /// allows it, otherwise the right error number.
    #[test]
    fn vmptrld_and_vmclear_of_any_address(pointer in prop_oneof![
        any::<u64>(),
        (0u64..(RAM as u64 / 4096 + 16)).prop_map(|page| page * 4096),
        Just(VMXON), Just(VMCS_B),
    ]) {
        let mut memory = memory();
        let mut nested = with_current_vmcs(&mut memory);
        let valid = pointer & 0xfff == 0 && pointer >> WIDTH == 0;
        let outcome = run_with_pointer(&mut nested, VmxInstruction::Vmptrld, pointer, &mut memory);
        let revision_ok = memory.contains(pointer, 4096) && memory.read_u32(pointer).ok() == Some(super::capabilities::VMCS12_REVISION);
        let expected_error = if !valid { 9 } else if pointer == VMXON { 10 } else if !revision_ok { 11 } else { 0 };
        if expected_error == 0 {
            prop_assert_eq!(retired_flags(&outcome), SUCCEED);
            prop_assert_eq!(nested.current_vmcs(), Some(pointer));
        } else {
            prop_assert_eq!(retired_flags(&outcome), FAIL_VALID);
            prop_assert_eq!(vm_instruction_error(&memory), expected_error);
            prop_assert_eq!(nested.current_vmcs(), Some(VMCS_A));
        }

        let mut nested = with_current_vmcs(&mut memory);
        let outcome = run_with_pointer(&mut nested, VmxInstruction::Vmclear, pointer, &mut memory);
        let expected_error = if !valid { 2 } else if pointer == VMXON { 3 } else { 0 };
        if expected_error == 0 {
            prop_assert_eq!(retired_flags(&outcome), SUCCEED);
        } else {
            prop_assert_eq!(retired_flags(&outcome), FAIL_VALID);
            prop_assert_eq!(vm_instruction_error(&memory), expected_error);
        }
    }

    /// INVEPT and INVVPID with any type and descriptor either succeed or
    /// fail with error 28.
    #[test]
    fn invept_and_invvpid_operands(kind in prop_oneof![0u64..6, any::<u64>()], low in any::<u64>(), high in any::<u64>()) {
        let mut memory = memory();
        let mut nested = with_current_vmcs(&mut memory);
        memory.write_u64(SCRATCH, low).unwrap();
        memory.write_u64(SCRATCH + 8, high).unwrap();
        let mut state = l1();
        state.gprs[0] = SCRATCH;
        state.gprs[2] = kind;
        for instruction in [VmxInstruction::Invept, VmxInstruction::Invvpid] {
            write(&mut memory, VMCS_A, 0x4400, 0);
            let outcome = run(&mut nested, instruction, memory_operand(2), &state, &mut memory);
            match retired_flags(&outcome) {
                SUCCEED => {
                    let VmxOutcome::Retire { invalidation, .. } = outcome else { unreachable!() };
                    prop_assert!(invalidation.is_some());
                }
                FAIL_VALID => prop_assert_eq!(vm_instruction_error(&memory), 28),
                flags => prop_assert!(false, "flags {:#x}", flags),
            }
        }
        // INVVPID's rule is simple enough to model whole.
        let vpid_ok = low >> 16 == 0 && match kind {
            0 => low != 0 && super::state::is_canonical(high),
            1 | 3 => low != 0,
            2 => true,
            _ => false,
        };
        write(&mut memory, VMCS_A, 0x4400, 0);
        let outcome = run(&mut nested, VmxInstruction::Invvpid, memory_operand(2), &state, &mut memory);
        prop_assert_eq!(retired_flags(&outcome) == SUCCEED, vpid_ok);
    }

    /// VMREAD of any encoding succeeds exactly for the supported fields.
    #[test]
    fn vmread_of_any_encoding(encoding in prop_oneof![any::<u64>(), 0u64..0x8000]) {
        let mut memory = memory();
        let mut nested = with_current_vmcs(&mut memory);
        let mut state = l1();
        state.gprs[1] = encoding;
        let outcome = run(&mut nested, VmxInstruction::Vmread, register_operand(2, 1), &state, &mut memory);
        let supported = u32::try_from(encoding).is_ok_and(|e| vmcs12::is_supported(Encoding(e)));
        prop_assert_eq!(retired_flags(&outcome) == SUCCEED, supported);
    }

    /// Any exit of L2 is either L0's or reflected; a reflected one puts
    /// L1 back at its host RIP.
    #[test]
    fn any_l2_exit_is_decided(reason in 0u32..80, qualification in any::<u64>(), info in any::<u32>(), rcx in any::<u64>()) {
        let mut memory = memory();
        let mut nested = with_current_vmcs(&mut memory);
        valid_vmcs12(&mut memory, VMCS_A);
        let entered = run(&mut nested, VmxInstruction::Vmlaunch, InstructionExit::default(), &l1(), &mut memory);
        prop_assert!(matches!(entered, VmxOutcome::EnterL2(_)));
        let mut l2 = CpuState::default();
        l2.gprs[1] = rcx;
        let exit = L2Exit { reason, qualification, interruption_info: info, ..Default::default() };
        match nested.l2_exit(&exit, &l2, &mut memory, |_| Some(0)) {
            L2ExitOutcome::L0(_) => prop_assert!(nested.in_l2()),
            L2ExitOutcome::ReflectToL1(resume) => {
                prop_assert!(!nested.in_l2());
                prop_assert_eq!(resume.l1.rip, 0x40_0000);
                prop_assert_eq!(u32::try_from(read(&memory, VMCS_A, 0x4402)).unwrap(), reason);
            }
            L2ExitOutcome::Abort { .. } => prop_assert!(false, "no MSR lists, no abort"),
        }
    }

    /// A random EPT12: the builder never panics, and whatever it installs
    /// maps only to host memory EPT01 gave it.
    #[test]
    fn random_ept12_never_escapes_ept01(
        entries in proptest::collection::vec((0u64..512, any::<u64>()), 1..24),
        gpa in any::<u64>(),
        access in 1u64..8,
    ) {
        let mut memory = VecMemory::new(1 << 20);
        // Four table pages at 0x1000.. with random entries, half of them
        // steered to point at the next table.
        for (n, (index, value)) in entries.iter().enumerate() {
            let table = 0x1000 * (1 + (n as u64 % 4));
            let value = if n % 2 == 0 { (table + 0x1000) | (value & 0x7) } else { *value };
            memory.write_u64(table + index * 8, value).unwrap();
        }
        let mut tables = Pages::default();
        let mut ept02 = Ept02::new(vmx::capabilities::EptVpidCapabilities(0x3_0000), caps().ept_vpid, WIDTH, 64);
        let eptp02 = ept02.eptp02(0x1000 | 3 << 3 | 6, &mut tables).unwrap();
        let gpa = gpa & ((1 << 48) - 1);
        let outcome = ept02.handle_violation(gpa, access, &mut memory, &Window, &mut tables);
        if outcome == Ept02Outcome::Installed {
            let (hpa, permissions) = super::ept02::translate_ept02(&tables, eptp02, gpa).unwrap();
            prop_assert!((WINDOW_BASE..WINDOW_BASE + (1 << 20)).contains(&hpa), "hpa {:#x}", hpa);
            prop_assert_eq!(permissions & !EPT_RWX, 0);
        }
    }
}

const WINDOW_BASE: u64 = 0x4000_0000;

/// EPT01 backing only L1's first MiB.
struct Window;

impl Ept01 for Window {
    fn translate(&self, l1_gpa: u64) -> Option<Ept01Mapping> {
        (l1_gpa < 1 << 20).then_some(Ept01Mapping {
            hpa: WINDOW_BASE + l1_gpa,
            size_log2: 12,
            permissions: EPT_RWX,
            memory_type: 6 << 3,
        })
    }
}

#[derive(Default)]
struct Pages {
    pages: std::collections::BTreeMap<u64, [u64; 512]>,
}

impl ShadowTables for Pages {
    fn allocate(&mut self) -> Option<u64> {
        let page = 0x10_0000_0000 + self.pages.len() as u64 * 0x1000;
        self.pages.insert(page, [0; 512]);
        Some(page)
    }
    fn free(&mut self, table: u64) {
        self.pages.remove(&table);
    }
    fn read(&self, table: u64, index: usize) -> u64 {
        self.pages.get(&table).map_or(0, |page| page[index])
    }
    fn write(&mut self, table: u64, index: usize, value: u64) {
        if let Some(page) = self.pages.get_mut(&table) {
            page[index] = value;
        }
    }
}
