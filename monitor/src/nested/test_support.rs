//! Fixtures shared by the nested tests: a host CPU, an L1 in 64-bit mode
//! with identity-mapped memory, and a vmcs12 that a VM entry accepts.

use std::collections::BTreeMap;

use vmx::capabilities::VmxCapabilities;
use vmx::controls::{EntryControls, ExitControls, PrimaryControls, SecondaryControls};
use vmx::vmcs::{
    Control16, Control32, Control64, Encoding, Guest16, Guest32, Guest64, GuestNatural, Host16, Host64, HostNatural,
};

use crate::guest_memory::{GuestMemory, VecMemory};

use super::capabilities::{L1VmxCapabilities, VMCS12_REVISION};
use super::instructions::{EntryEnvironment, InstructionExit, NestedVmx, VmxInstruction, VmxOutcome};
use super::state::{CpuState, Segment};
use super::vmcs02::L0Settings;
use super::vmcs12;

/// The Skylake-class capability MSRs of the vmx crate's tests (revision 4,
/// true controls, EPT with 2 MiB and 1 GiB pages, VPID, VMCS shadowing).
pub fn skylake() -> VmxCapabilities {
    let msrs = BTreeMap::from([
        (0x480u32, 0x00da_0400_0000_0004u64),
        (0x481, 0x0000_007f_0000_0016),
        (0x482, 0xfff9_fffe_0401_e172),
        (0x483, 0x01ff_ffff_0003_6dff),
        (0x484, 0x0003_ffff_0000_11ff),
        (0x485, 0x0000_0000_7004_c1e7),
        (0x486, 0x0000_0000_8000_0021),
        (0x487, 0x0000_0000_ffff_ffff),
        (0x488, 0x0000_0000_0000_2000),
        (0x489, 0x0000_0000_0037_27ff),
        (0x48a, 0x0000_0000_0000_002e),
        (0x48b, 0x005f_f7ff_0000_0000),
        (0x48c, 0x0000_0f01_0673_4141),
        (0x48d, 0x0000_007f_0000_0016),
        (0x48e, 0xfff9_fffe_0400_6172),
        (0x48f, 0x01ff_ffff_0003_6dfb),
        (0x490, 0x0003_ffff_0000_11fb),
        (0x491, 0x0000_0000_0000_0001),
    ]);
    VmxCapabilities::read(|index| msrs[&index])
}

/// L1's MAXPHYADDR in the fixtures.
pub const WIDTH: u8 = 39;
/// Bytes of L1 RAM in the fixtures.
pub const RAM: usize = 4 << 20;
/// Where the fixtures put the VMXON region and two VMCS regions.
pub const VMXON: u64 = 0x10_0000;
pub const VMCS_A: u64 = 0x11_0000;
pub const VMCS_B: u64 = 0x12_0000;
/// A scratch page for memory operands.
pub const SCRATCH: u64 = 0x8000;

pub fn caps() -> L1VmxCapabilities {
    L1VmxCapabilities::from_host(&skylake(), WIDTH)
}

/// 4 MiB of L1 RAM, identity-mapped by 2 MiB pages (PML4 0x1000, PDPT
/// 0x2000, PD 0x3000), with revision ids in the VMXON and VMCS regions.
pub fn memory() -> VecMemory {
    let mut memory = VecMemory::new(RAM);
    memory.write_u64(0x1000, 0x2000 | 3).unwrap();
    memory.write_u64(0x2000, 0x3000 | 3).unwrap();
    memory.write_u64(0x3000, 0x83).unwrap();
    memory.write_u64(0x3008, 0x20_0000 | 0x83).unwrap();
    for region in [VMXON, VMCS_A, VMCS_B] {
        memory.write_u32(region, VMCS12_REVISION).unwrap();
    }
    memory
}

/// L1 in 64-bit mode at CPL 0 with CR4.VMXE, as a hypervisor runs.
pub fn l1() -> CpuState {
    let mut state = CpuState {
        rflags: 0x2 | 0x8d5, // CF, PF, AF, ZF, SF, OF all set: VMX results must clear them
        cr0: 0x8001_0021,
        cr3: 0x1000,
        cr4: 0x2020,
        efer: 0xd01,
        pat: 0x0007_0406_0007_0406,
        ..Default::default()
    };
    state.segments[1] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, access_rights: 0xa09b };
    for register in [0, 2, 3, 4, 5] {
        state.segments[register] = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, access_rights: 0xc093 };
    }
    state.tr = Segment { selector: 0x18, base: 0x4000, limit: 0x67, access_rights: 0x8b };
    state.ldtr = Segment { access_rights: Segment::UNUSABLE, ..Default::default() };
    state
}

/// Instruction information of a memory operand `[rax]` with a 64-bit
/// address in DS; `reg2` in bits 31:28.
pub fn memory_operand(reg2: u8) -> InstructionExit {
    InstructionExit { qualification: 0, instruction_info: 2 << 7 | 3 << 15 | 1 << 22 | u32::from(reg2) << 28 }
}

/// Instruction information of a register operand `reg1` with field in
/// `reg2` (VMREAD/VMWRITE).
pub fn register_operand(reg1: u8, reg2: u8) -> InstructionExit {
    InstructionExit {
        qualification: 0,
        instruction_info: u32::from(reg1) << 3 | 1 << 10 | 1 << 22 | 1 << 27 | u32::from(reg2) << 28,
    }
}

pub fn l0() -> L0Settings {
    L0Settings::typical(0x1000, 7)
}

/// Runs one instruction with the fixtures' entry environment.
pub fn run(
    nested: &mut NestedVmx,
    instruction: VmxInstruction,
    exit: InstructionExit,
    l1: &CpuState,
    memory: &mut VecMemory,
) -> VmxOutcome {
    let l0 = l0();
    let environment = EntryEnvironment { l0: &l0, wrmsr_ok: &|_, _| true };
    nested.execute(instruction, &exit, l1, memory, &environment)
}

/// Runs an instruction whose memory operand is the 64-bit `pointer`
/// (placed at [`SCRATCH`], addressed by RAX).
pub fn run_with_pointer(
    nested: &mut NestedVmx,
    instruction: VmxInstruction,
    pointer: u64,
    memory: &mut VecMemory,
) -> VmxOutcome {
    memory.write_u64(SCRATCH, pointer).unwrap();
    let mut state = l1();
    state.gprs[0] = SCRATCH;
    run(nested, instruction, memory_operand(0), &state, memory)
}

/// The RFLAGS of VMsucceed, VMfailInvalid and VMfailValid for [`l1`].
pub const SUCCEED: u64 = 0x2;
pub const FAIL_INVALID: u64 = 0x3;
pub const FAIL_VALID: u64 = 0x42;

pub fn retired_flags(outcome: &VmxOutcome) -> u64 {
    match outcome {
        VmxOutcome::Retire { rflags, .. } => *rflags,
        other => panic!("expected the instruction to retire, got {other:?}"),
    }
}

/// A nested vCPU after VMXON and VMPTRLD of [`VMCS_A`].
pub fn with_current_vmcs(memory: &mut VecMemory) -> NestedVmx {
    let mut nested = NestedVmx::new(caps());
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmxon, VMXON, memory)), SUCCEED);
    assert_eq!(retired_flags(&run_with_pointer(&mut nested, VmxInstruction::Vmptrld, VMCS_A, memory)), SUCCEED);
    nested
}

pub fn write(memory: &mut VecMemory, region: u64, field: u32, value: u64) {
    vmcs12::write_field(memory, region, Encoding(field), value).unwrap();
}

pub fn read(memory: &VecMemory, region: u64, field: u32) -> u64 {
    vmcs12::read_field(memory, region, Encoding(field)).unwrap()
}

/// The EPT12 pointer of [`valid_vmcs12`]: write-back, 4-level, tables at
/// 0x30_0000.
pub const EPTP12: u64 = 0x30_0000 | 3 << 3 | 6;

/// Fills the vmcs12 at `region` with a 64-bit L2 under EPT and VPID that
/// every entry check accepts: L2 runs at RIP 0x1000 in its own address
/// space, L1's host state is the fixture's L1 with RIP 0x40_0000.
pub fn valid_vmcs12(memory: &mut VecMemory, region: u64) {
    let caps = caps();
    let mut set = |field: u32, value: u64| write(memory, region, field, value);
    set(Control32::PinBasedControls as u32, u64::from(caps.pin_based.allowed0));
    set(
        Control32::PrimaryProcessorBasedControls as u32,
        u64::from(caps.primary.allowed0 | (PrimaryControls::HLT_EXITING | PrimaryControls::SECONDARY_CONTROLS).bits()),
    );
    set(
        Control32::SecondaryProcessorBasedControls as u32,
        u64::from((SecondaryControls::EPT | SecondaryControls::VPID).bits()),
    );
    set(
        Control32::ExitControls as u32,
        u64::from(
            caps.exit.allowed0
                | (ExitControls::HOST_ADDRESS_SPACE_SIZE | ExitControls::SAVE_EFER | ExitControls::LOAD_EFER).bits(),
        ),
    );
    set(
        Control32::EntryControls as u32,
        u64::from(caps.entry.allowed0 | (EntryControls::IA32E_MODE_GUEST | EntryControls::LOAD_EFER).bits()),
    );
    set(Control16::VirtualProcessorId as u32, 1);
    set(Control64::EptPointer as u32, EPTP12);

    // Host state: L1 as the fixture has it.
    set(HostNatural::Cr0 as u32, 0x8001_0021);
    set(HostNatural::Cr3 as u32, 0x1000);
    set(HostNatural::Cr4 as u32, 0x2020);
    set(Host64::Ia32Efer as u32, 0xd01);
    set(Host16::CsSelector as u32, 8);
    for selector in [Host16::EsSelector, Host16::SsSelector, Host16::DsSelector, Host16::FsSelector, Host16::GsSelector]
    {
        set(selector as u32, 0x10);
    }
    set(Host16::TrSelector as u32, 0x18);
    set(HostNatural::TrBase as u32, 0x4000);
    set(HostNatural::GdtrBase as u32, 0x5000);
    set(HostNatural::IdtrBase as u32, 0x6000);
    set(HostNatural::Rip as u32, 0x40_0000);
    set(HostNatural::Rsp as u32, 0x50_0000);

    // Guest state: 64-bit, CPL 0.
    set(GuestNatural::Cr0 as u32, 0x8001_0021);
    set(GuestNatural::Cr3 as u32, 0x20_0000);
    set(GuestNatural::Cr4 as u32, 0x2020);
    set(Guest64::Ia32Efer as u32, 0xd01);
    set(Guest64::Ia32Pat as u32, 0x0007_0406_0007_0406);
    set(Guest64::VmcsLinkPointer as u32, u64::MAX);
    set(Guest16::CsSelector as u32, 8);
    set(Guest32::CsLimit as u32, 0xffff_ffff);
    set(Guest32::CsAccessRights as u32, 0xa09b);
    for (selector, limit, rights) in [
        (Guest16::EsSelector, Guest32::EsLimit, Guest32::EsAccessRights),
        (Guest16::SsSelector, Guest32::SsLimit, Guest32::SsAccessRights),
        (Guest16::DsSelector, Guest32::DsLimit, Guest32::DsAccessRights),
        (Guest16::FsSelector, Guest32::FsLimit, Guest32::FsAccessRights),
        (Guest16::GsSelector, Guest32::GsLimit, Guest32::GsAccessRights),
    ] {
        set(selector as u32, 0x10);
        set(limit as u32, 0xffff_ffff);
        set(rights as u32, 0xc093);
    }
    set(Guest32::LdtrAccessRights as u32, 0x1_0000);
    set(Guest16::TrSelector as u32, 0x18);
    set(Guest32::TrLimit as u32, 0x67);
    set(Guest32::TrAccessRights as u32, 0x8b);
    set(Guest32::GdtrLimit as u32, 0xfff);
    set(Guest32::IdtrLimit as u32, 0xfff);
    set(GuestNatural::Rip as u32, 0x1000);
    set(GuestNatural::Rsp as u32, 0x2000);
    set(GuestNatural::Rflags as u32, 0x2);
}
